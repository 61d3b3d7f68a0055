//! Prometheus metrics and the local backend's inference statistics.
//!
//! Labels are bounded: `provider` comes from configuration, `model` is a configured or
//! discovered model name (anything else is counted as `other`), `status` is a class
//! (`2xx`…`5xx`), error kinds are fixed strings.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use switchyard_filters::endpoint::PerEndpoint;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005,
    0.01, 0.05,
];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by provider, model, endpoint, status class.
    pub requests: IntCounterVec,
    /// End-to-end request duration by provider and endpoint.
    pub duration: HistogramVec,
    /// Upstream time to the response header, by provider.
    pub upstream_ttfb: HistogramVec,
    /// Time from the request to the first streamed body byte, by provider.
    pub ttft: HistogramVec,
    /// Time spent inside the gateway before the request was handed to the upstream.
    pub overhead: Histogram,
    /// Tokens by provider and kind (`prompt` | `completion`).
    pub tokens: IntCounterVec,
    /// In-flight requests by provider.
    pub inflight: IntGaugeVec,
    /// Upstream failures by provider and kind.
    pub upstream_errors: IntCounterVec,
    /// Requests that moved to the next candidate, by the provider that failed.
    pub fallbacks: IntCounterVec,
    /// Errors the gateway answered itself, by code.
    pub gateway_errors: IntCounterVec,
    /// Config snapshots built, by result (`ok` | `invalid`).
    pub config_reloads: IntCounterVec,
    /// Models the local backend reports.
    pub local_models: IntGauge,
    /// 1 while the local backend is ready.
    pub local_ready: IntGauge,
    /// Local model discoveries that failed.
    pub discovery_failures: IntCounter,
    /// Access log lines dropped because the writer fell behind.
    pub log_dropped: IntCounter,
    /// 1 while the shared store (Redis) is reachable; always 1 for the in-memory store.
    pub redis_up: IntGauge,
    /// `switchyard_redis_calls_total{call}`: commands (and script calls) the gateway sent
    /// to Redis, by what for.
    pub redis_calls: IntCounterVec,
    /// `switchyard_cache_mirror_keys`: cache keys this replica knows exist in Redis.
    pub cache_mirror_keys: IntGauge,
    /// `switchyard_cache_mirror_synced`: 1 while this replica's cache mirror follows every
    /// store (a key it does not know is absent).
    pub cache_mirror_synced: IntGauge,
    /// `switchyard_ratelimit_slices_held`: tenants with a rate-limit slice held by this
    /// replica (given back after a second idle).
    pub ratelimit_slices_held: IntGauge,
    /// Cache outcomes: `hit`, `miss`, `coalesced`, `stored`, `bypass` (counted through
    /// [`Metrics::count_cache`]).
    pub cache: IntCounterVec,
    /// `cache`'s series, resolved once (a label lookup hashes under a lock).
    cache_outcomes: [IntCounter; 5],
    /// Requests refused by rate limits, by limit (`requests` | `tokens`).
    pub rate_limited: IntCounterVec,
    /// Candidates skipped because their daily quota was used up, by provider.
    pub quota_exhausted: IntCounterVec,
    /// Requests refused for a missing or unknown key.
    pub auth_failures: IntCounter,
    /// Runtime configuration values rejected by validation.
    pub runtime_config_invalid: IntCounter,
    /// 1 for a provider left out, by provider and reason (`key_env_unset` |
    /// `invalid_credential`).
    pub provider_disabled: IntGaugeVec,
    /// Requests sent again after an upstream may have received them, by reason
    /// (`stale_connection` | `status` | `transport` | `timeout`).
    pub resends: IntCounterVec,
    /// Clients dropped for being too slow, by what they were slow at (`header` | `body`
    /// | `write`).
    pub client_timeouts: IntCounterVec,
    /// Upstream requests cancelled before their answer was complete, by reason
    /// (`client_write_timeout` | `client_gone` | `shutdown`).
    pub upstream_cancelled: IntCounterVec,
    /// Client connections open now.
    pub client_connections: IntGauge,
    /// The cap on open client connections.
    pub client_connections_max: IntGauge,
    /// Client connections refused at the cap.
    pub client_connections_refused: IntCounter,
    /// Requests translated between dialects, by direction (`openai_to_anthropic` |
    /// `anthropic_to_openai`).
    pub translations: IntCounterVec,
    /// CLI processes started for a request because none was idle, by provider.
    pub cli_cold_starts: IntCounterVec,
    /// CLI processes that died and were replaced, by provider.
    pub cli_restarts: IntCounterVec,
    /// Time a request waited for a CLI process, by provider.
    pub cli_wait: HistogramVec,
    /// CLI processes by provider and state.
    pub cli_sessions: IntGaugeVec,
    declared: Declared,
}

/// The exposition type of a metric, for the metadata of families without samples yet.
pub trait Kind {
    /// `counter`, `gauge` or `histogram`.
    const KIND: &'static str;
}
impl Kind for IntCounter {
    const KIND: &'static str = "counter";
}
impl Kind for IntCounterVec {
    const KIND: &'static str = "counter";
}
impl Kind for IntGauge {
    const KIND: &'static str = "gauge";
}
impl Kind for IntGaugeVec {
    const KIND: &'static str = "gauge";
}
impl Kind for Histogram {
    const KIND: &'static str = "histogram";
}
impl Kind for HistogramVec {
    const KIND: &'static str = "histogram";
}

/// (name, help, type) of every registered family.
type Declared = Mutex<Vec<(String, String, &'static str)>>;

fn reg<T: prometheus::core::Collector + Clone + Kind + 'static>(
    r: &Registry,
    d: &Declared,
    m: T,
) -> T {
    // Registration only fails on duplicate names, which are fixed here.
    let _ = r.register(Box::new(m.clone()));
    for desc in m.desc() {
        d.lock()
            .push((desc.fq_name.clone(), desc.help.clone(), T::KIND));
    }
    m
}

/// What the response cache did with a request (`switchyard_cache_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Answered from the cache.
    Hit,
    /// Not in the cache: the upstream answers.
    Miss,
    /// Shared the answer of an identical request in flight.
    Coalesced,
    /// An answer was stored.
    Stored,
    /// The cache was skipped (the store is down).
    Bypass,
}

impl CacheOutcome {
    /// Every outcome, in discriminant order.
    pub const ALL: [CacheOutcome; 5] = [
        CacheOutcome::Hit,
        CacheOutcome::Miss,
        CacheOutcome::Coalesced,
        CacheOutcome::Stored,
        CacheOutcome::Bypass,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Coalesced => "coalesced",
            CacheOutcome::Stored => "stored",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

impl Metrics {
    /// Creates and registers all metrics in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let hist_vec = |name: &str, help: &str, labels: &[&str], b: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(b.to_vec()), labels)
        };
        let d: Declared = Mutex::new(Vec::new());
        // Constructors only fail on invalid names/labels, which are constants here.
        #[allow(clippy::unwrap_used)]
        let cache = reg(
            &r,
            &d,
            counter_vec(
                "switchyard_cache_total",
                "Response cache outcomes.",
                &["result"],
            )
            .unwrap(),
        );
        // Series a dashboard reads exist from the start (at 0), so a panel shows "none
        // yet" rather than "no data".
        let cache_outcomes = CacheOutcome::ALL.map(|o| cache.with_label_values(&[o.label()]));
        // Constructors only fail on invalid names/labels, which are constants here.
        #[allow(clippy::unwrap_used)]
        let m = Self {
            requests: reg(&r, &d, counter_vec("switchyard_requests_total", "Requests by provider, model, endpoint and status class.", &["provider", "model", "endpoint", "status"]).unwrap()),
            duration: reg(&r, &d, hist_vec("switchyard_request_duration_seconds", "Request duration from the first byte read to the last byte written.", &["provider", "endpoint"], LATENCY_BUCKETS).unwrap()),
            upstream_ttfb: reg(&r, &d, hist_vec("switchyard_upstream_ttfb_seconds", "Time from sending the request upstream to its response header.", &["provider"], LATENCY_BUCKETS).unwrap()),
            ttft: reg(&r, &d, hist_vec("switchyard_time_to_first_token_seconds", "Time from the request to the first streamed body chunk.", &["provider"], LATENCY_BUCKETS).unwrap()),
            overhead: reg(&r, &d, Histogram::with_opts(HistogramOpts::new("switchyard_gateway_overhead_seconds", "Time inside the gateway before the request is handed to the upstream (parse, filters, routing).").buckets(OVERHEAD_BUCKETS.to_vec())).unwrap()),
            tokens: reg(&r, &d, counter_vec("switchyard_tokens_total", "Tokens by provider and kind.", &["provider", "kind"]).unwrap()),
            inflight: reg(&r, &d, IntGaugeVec::new(Opts::new("switchyard_inflight_requests", "Requests in flight by provider."), &["provider"]).unwrap()),
            upstream_errors: reg(&r, &d, counter_vec("switchyard_upstream_errors_total", "Upstream failures by provider and kind.", &["provider", "kind"]).unwrap()),
            fallbacks: reg(&r, &d, counter_vec("switchyard_fallbacks_total", "Requests moved to the next candidate, by the provider that failed.", &["provider"]).unwrap()),
            gateway_errors: reg(&r, &d, counter_vec("switchyard_gateway_errors_total", "Errors answered by the gateway itself, by code.", &["code"]).unwrap()),
            config_reloads: reg(&r, &d, counter_vec("switchyard_config_reloads_total", "Configuration snapshots built, by result.", &["result"]).unwrap()),
            local_models: reg(&r, &d, IntGauge::new("switchyard_local_models", "Models the local backend reports.").unwrap()),
            local_ready: reg(&r, &d, IntGauge::new("switchyard_local_backend_ready", "1 while the local backend is ready.").unwrap()),
            discovery_failures: reg(&r, &d, IntCounter::new("switchyard_discovery_failures_total", "Local model discoveries that failed.").unwrap()),
            log_dropped: reg(&r, &d, IntCounter::new("switchyard_access_log_dropped_total", "Access log lines dropped because the writer fell behind.").unwrap()),
            redis_up: reg(&r, &d, IntGauge::new("switchyard_redis_up", "1 while the shared store is reachable.").unwrap()),
            redis_calls: reg(&r, &d, counter_vec("switchyard_redis_calls_total", "Calls the gateway sent to Redis (a script call counts once), by purpose.", &["call"]).unwrap()),
            cache_mirror_keys: reg(&r, &d, IntGauge::new("switchyard_cache_mirror_keys", "Cache keys this replica knows exist in Redis (its mirror of the cache).").unwrap()),
            cache_mirror_synced: reg(&r, &d, IntGauge::new("switchyard_cache_mirror_synced", "1 while this replica's cache mirror follows every store, so a miss needs no lookup.").unwrap()),
            ratelimit_slices_held: reg(&r, &d, IntGauge::new("switchyard_ratelimit_slices_held", "Tenants with a slice of their shared rate limit held by this replica.").unwrap()),
            cache,
            cache_outcomes,
            rate_limited: reg(&r, &d, counter_vec("switchyard_rate_limited_total", "Requests refused by a rate limit.", &["limit"]).unwrap()),
            quota_exhausted: reg(&r, &d, counter_vec("switchyard_quota_exhausted_total", "Candidates skipped for a used-up daily quota.", &["provider"]).unwrap()),
            auth_failures: reg(&r, &d, IntCounter::new("switchyard_auth_failures_total", "Requests refused for a missing or unknown API key.").unwrap()),
            runtime_config_invalid: reg(&r, &d, IntCounter::new("switchyard_runtime_config_invalid_total", "Runtime configuration values rejected by validation.").unwrap()),
            provider_disabled: reg(&r, &d, IntGaugeVec::new(Opts::new("switchyard_provider_disabled", "1 for a provider left out (takes no requests), by reason."), &["provider", "reason"]).unwrap()),
            resends: reg(&r, &d, counter_vec("switchyard_upstream_resends_total", "Requests sent again after an upstream may have received them, by reason.", &["reason"]).unwrap()),
            client_timeouts: reg(&r, &d, counter_vec("switchyard_client_timeouts_total", "Clients dropped for being too slow, by what they were slow at.", &["kind"]).unwrap()),
            upstream_cancelled: reg(&r, &d, counter_vec("switchyard_upstream_cancelled_total", "Upstream requests cancelled before their answer was complete, by reason.", &["reason"]).unwrap()),
            client_connections: reg(&r, &d, IntGauge::new("switchyard_client_connections", "Client connections open on the proxy listener.").unwrap()),
            client_connections_max: reg(&r, &d, IntGauge::new("switchyard_client_connections_max", "The cap on open client connections (server.max_client_connections).").unwrap()),
            client_connections_refused: reg(&r, &d, IntCounter::new("switchyard_client_connections_refused_total", "Client connections refused because the cap was reached.").unwrap()),
            translations: reg(&r, &d, counter_vec("switchyard_translations_total", "Requests translated between API dialects, by direction.", &["direction"]).unwrap()),
            cli_cold_starts: reg(&r, &d, counter_vec("switchyard_cli_cold_starts_total", "CLI processes started for a request because none was idle.", &["provider"]).unwrap()),
            cli_restarts: reg(&r, &d, counter_vec("switchyard_cli_restarts_total", "CLI processes that died and were replaced.", &["provider"]).unwrap()),
            cli_wait: reg(&r, &d, hist_vec("switchyard_cli_wait_seconds", "Time a request waited for a CLI process.", &["provider"], LATENCY_BUCKETS).unwrap()),
            cli_sessions: reg(&r, &d, IntGaugeVec::new(Opts::new("switchyard_cli_sessions", "CLI processes by state."), &["provider", "state"]).unwrap()),
            registry: r,
            declared: Mutex::new(Vec::new()),
        };
        *m.declared.lock() = d.into_inner();
        for limit in ["requests", "tokens"] {
            m.rate_limited.with_label_values(&[limit]);
        }
        m
    }

    /// Counts one cache outcome.
    pub fn count_cache(&self, o: CacheOutcome) {
        self.cache_outcomes[o as usize].inc();
    }

    /// The registry these metrics live in (for metrics added by other modules).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers `m` here, so it is rendered, with its metadata even before it has a
    /// sample (for metrics added by other modules).
    pub fn add<T: prometheus::core::Collector + Clone + Kind + 'static>(&self, m: T) -> T {
        reg(&self.registry, &self.declared, m)
    }

    /// Prometheus text exposition of these metrics and Pingora's own.
    pub fn render(&self) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&families, &mut out);
        // A labelled family has no samples until its first event; its metadata says it
        // exists, so dashboards and alerts naming it are not mistaken for broken.
        for (name, help, kind) in self.declared.lock().iter() {
            if !families.iter().any(|f| f.get_name() == name) {
                out.extend_from_slice(
                    format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").as_bytes(),
                );
            }
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A status code's class label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Per-provider counters and metric handles that outlive configuration snapshots.
/// The handles are resolved once, so the hot path does no label lookups for them.
pub struct ProviderCounters {
    /// Requests currently routed to this provider.
    pub inflight: AtomicI64,
    /// `switchyard_inflight_requests{provider}`
    pub inflight_gauge: IntGauge,
    /// `switchyard_upstream_ttfb_seconds{provider}`
    pub ttfb: Histogram,
    /// `switchyard_time_to_first_token_seconds{provider}`
    pub ttft: Histogram,
    /// `switchyard_tokens_total{provider,kind="prompt"}`
    pub prompt_tokens: IntCounter,
    /// `switchyard_tokens_total{provider,kind="completion"}`
    pub completion_tokens: IntCounter,
    /// `switchyard_fallbacks_total{provider}`
    pub fallbacks: IntCounter,
    /// `switchyard_request_duration_seconds{provider,endpoint}`.
    pub duration: PerEndpoint<Histogram>,
}

impl ProviderCounters {
    /// Resolves the handles for provider `name`.
    pub fn new(m: &Metrics, name: &str) -> Self {
        Self {
            inflight: AtomicI64::new(0),
            inflight_gauge: m.inflight.with_label_values(&[name]),
            ttfb: m.upstream_ttfb.with_label_values(&[name]),
            ttft: m.ttft.with_label_values(&[name]),
            prompt_tokens: m.tokens.with_label_values(&[name, "prompt"]),
            completion_tokens: m.tokens.with_label_values(&[name, "completion"]),
            fallbacks: m.fallbacks.with_label_values(&[name]),
            duration: PerEndpoint::new(|e| m.duration.with_label_values(&[name, e.label()])),
        }
    }

    /// Current in-flight count (never negative).
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed).max(0)
    }

    /// One more request in flight.
    pub fn enter(&self) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.inflight_gauge.inc();
    }

    /// One request less in flight.
    pub fn leave(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.inflight_gauge.dec();
    }
}

/// How many seconds of history `/v1/inference/stats` reports.
pub const STATS_WINDOW_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    errors: u64,
    latency: Duration,
    ttft: Duration,
    ttft_count: u64,
    completion_tokens: u64,
    prompt_tokens: u64,
    generation: Duration,
}

/// One finished request to the local backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Ended in an error (status >= 500, or a transport failure).
    pub error: bool,
    /// Whole request latency.
    pub latency: Duration,
    /// Time to the first streamed chunk, for streams.
    pub ttft: Option<Duration>,
    /// Completion tokens reported.
    pub completion_tokens: u64,
    /// Prompt tokens reported.
    pub prompt_tokens: u64,
    /// Time from the first to the last chunk (the decode phase) for streams, else the
    /// upstream time.
    pub generation: Duration,
    /// When the request ended, so the second it is counted in needs no clock read
    /// (`None`: now).
    pub at: Option<Instant>,
}

/// Rolling per-second statistics of the active local backend.
pub struct InferenceStats {
    started: Instant,
    buckets: Mutex<[Bucket; STATS_WINDOW_SECS as usize]>,
    totals: Mutex<(u64, u64)>,
}

impl Default for InferenceStats {
    fn default() -> Self {
        Self::new()
    }
}

impl InferenceStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            buckets: Mutex::new([Bucket::default(); STATS_WINDOW_SECS as usize]),
            totals: Mutex::new((0, 0)),
        }
    }

    fn now_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Records one request.
    pub fn record(&self, s: Sample) {
        let sec = s.at.map_or_else(
            || self.now_sec(),
            |at| at.saturating_duration_since(self.started).as_secs(),
        );
        {
            let mut b = self.buckets.lock();
            let slot = &mut b[(sec % STATS_WINDOW_SECS) as usize];
            if slot.second != sec || slot.requests == 0 {
                *slot = Bucket {
                    second: sec,
                    ..Bucket::default()
                };
            }
            slot.requests += 1;
            slot.errors += u64::from(s.error);
            slot.latency += s.latency;
            if let Some(t) = s.ttft {
                slot.ttft += t;
                slot.ttft_count += 1;
            }
            slot.completion_tokens += s.completion_tokens;
            slot.prompt_tokens += s.prompt_tokens;
            slot.generation += s.generation;
        }
        let mut t = self.totals.lock();
        t.0 += 1;
        t.1 += u64::from(s.error);
    }

    /// The JSON document `/v1/inference/stats` serves.
    pub fn report(&self, backend: serde_json::Value) -> serde_json::Value {
        let sec = self.now_sec();
        let mut sum = Bucket::default();
        for b in self.buckets.lock().iter() {
            if b.requests > 0 && sec.saturating_sub(b.second) < STATS_WINDOW_SECS {
                sum.requests += b.requests;
                sum.errors += b.errors;
                sum.latency += b.latency;
                sum.ttft += b.ttft;
                sum.ttft_count += b.ttft_count;
                sum.completion_tokens += b.completion_tokens;
                sum.prompt_tokens += b.prompt_tokens;
                sum.generation += b.generation;
            }
        }
        let (total, total_errors) = *self.totals.lock();
        let ms = |d: Duration, n: u64| {
            if n == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!((d.as_secs_f64() * 1000.0 / n as f64 * 100.0).round() / 100.0)
            }
        };
        let window = sec.clamp(1, STATS_WINDOW_SECS) as f64;
        let decode_tps = if sum.generation.is_zero() {
            serde_json::Value::Null
        } else {
            serde_json::json!(
                (sum.completion_tokens as f64 / sum.generation.as_secs_f64() * 100.0).round()
                    / 100.0
            )
        };
        serde_json::json!({
            "backend": backend,
            "window_seconds": STATS_WINDOW_SECS,
            "requests": sum.requests,
            "errors": sum.errors,
            "avg_latency_ms": ms(sum.latency, sum.requests),
            "avg_ttft_ms": ms(sum.ttft, sum.ttft_count),
            "prompt_tokens": sum.prompt_tokens,
            "completion_tokens": sum.completion_tokens,
            "tokens_per_second": decode_tps,
            "throughput_tokens_per_second": ((sum.completion_tokens as f64 / window) * 100.0).round() / 100.0,
            "total_requests": total,
            "total_errors": total_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_window_sums() {
        let s = InferenceStats::new();
        s.record(Sample {
            latency: Duration::from_millis(100),
            ttft: Some(Duration::from_millis(20)),
            completion_tokens: 50,
            generation: Duration::from_millis(80),
            ..Sample::default()
        });
        s.record(Sample {
            error: true,
            latency: Duration::from_millis(300),
            ..Sample::default()
        });
        let r = s.report(serde_json::Value::Null);
        assert_eq!(r["requests"], 2);
        assert_eq!(r["errors"], 1);
        assert_eq!(r["avg_latency_ms"], 200.0);
        assert_eq!(r["avg_ttft_ms"], 20.0);
        assert_eq!(r["tokens_per_second"], 625.0);
    }

    #[test]
    fn render_has_our_metrics() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["p", "m", "chat", "2xx"])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("switchyard_requests_total"));
        assert_eq!(status_class(503), "5xx");
    }

    #[test]
    fn families_without_samples_still_have_their_metadata() {
        let m = Metrics::new();
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "# TYPE switchyard_requests_total counter",
            "# TYPE switchyard_request_duration_seconds histogram",
            "# TYPE switchyard_inflight_requests gauge",
        ] {
            assert!(text.contains(line), "{line} missing");
        }
        // Once it has samples it is rendered once, by the encoder.
        m.requests
            .with_label_values(&["p", "m", "chat", "2xx"])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert_eq!(
            text.matches("# TYPE switchyard_requests_total counter")
                .count(),
            1
        );
    }
}
