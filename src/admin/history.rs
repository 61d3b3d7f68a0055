//! The small history the console's charts draw: every 2 s the gateway's own counters
//! are read and the rates over that interval kept, 15 minutes of them. Read from the
//! metrics registry, off the request path.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::proto::MetricFamily;
use serde::Serialize;

use crate::state::Hub;

/// Time between samples.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Samples kept (15 minutes).
pub const KEEP: usize = 450;

/// One interval's rates.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Point {
    /// End of the interval (unix ms).
    pub t: u64,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests answered 5xx (0–1).
    pub error_rate: f64,
    /// Median request duration, ms (`null`: no request finished).
    pub p50_ms: Option<f64>,
    /// 99th percentile request duration, ms.
    pub p99_ms: Option<f64>,
    /// Median time to the first streamed token, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Completion tokens per second.
    pub tokens_per_s: f64,
    /// Share of cache lookups that hit (`null`: none).
    pub cache_hit_rate: Option<f64>,
    /// Requests in flight at the sample.
    pub inflight: i64,
}

/// Cumulative values at one sample.
#[derive(Debug, Clone, Default)]
struct Totals {
    requests: f64,
    errors: f64,
    duration: Vec<(f64, f64)>,
    ttft: Vec<(f64, f64)>,
    tokens: f64,
    hits: f64,
    lookups: f64,
}

fn family<'a>(fams: &'a [MetricFamily], name: &str) -> Option<&'a MetricFamily> {
    fams.iter().find(|f| f.get_name() == name)
}

fn counter_sum(
    fams: &[MetricFamily],
    name: &str,
    keep: impl Fn(&prometheus::proto::Metric) -> bool,
) -> f64 {
    family(fams, name).map_or(0.0, |f| {
        f.get_metric()
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.get_counter().get_value())
            .sum()
    })
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.get_name() == name)
        .map_or("", |l| l.get_value())
}

/// A histogram's cumulative buckets summed over every label set: (upper bound, count).
fn buckets(fams: &[MetricFamily], name: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    if let Some(f) = family(fams, name) {
        for m in f.get_metric() {
            for (i, b) in m.get_histogram().get_bucket().iter().enumerate() {
                if out.len() <= i {
                    out.push((b.get_upper_bound(), 0.0));
                }
                out[i].1 += b.get_cumulative_count() as f64;
            }
        }
    }
    out
}

/// The `q` quantile in ms from the difference of two cumulative bucket lists
/// (linear within the bucket, as Prometheus' `histogram_quantile`).
pub fn quantile_ms(now: &[(f64, f64)], before: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = now
        .iter()
        .enumerate()
        .map(|(i, (ub, c))| (*ub, c - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (ub, c) in &delta {
        if *c >= rank {
            let width = ub - prev.0;
            let within = if c - prev.1 > 0.0 {
                (rank - prev.1) / (c - prev.1)
            } else {
                1.0
            };
            return Some((prev.0 + width * within) * 1000.0);
        }
        prev = (*ub, *c);
    }
    Some(prev.0 * 1000.0)
}

fn totals(hub: &Hub) -> Totals {
    let fams = hub.metrics.registry().gather();
    let requests = counter_sum(&fams, "switchyard_requests_total", |_| true);
    let errors = counter_sum(&fams, "switchyard_requests_total", |m| {
        label(m, "status") == "5xx"
    });
    let tokens = counter_sum(&fams, "switchyard_tokens_total", |m| {
        label(m, "kind") == "completion"
    });
    let hits = counter_sum(&fams, "switchyard_cache_total", |m| {
        label(m, "result") == "hit"
    });
    let lookups = counter_sum(&fams, "switchyard_cache_total", |m| {
        matches!(label(m, "result"), "hit" | "miss")
    });
    Totals {
        requests,
        errors,
        duration: buckets(&fams, "switchyard_request_duration_seconds"),
        ttft: buckets(&fams, "switchyard_time_to_first_token_seconds"),
        tokens,
        hits,
        lookups,
    }
}

/// The kept points.
#[derive(Default)]
pub struct History {
    points: Mutex<VecDeque<Point>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every kept point, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points.lock().iter().cloned().collect()
    }

    fn push(&self, p: Point) {
        let mut v = self.points.lock();
        if v.len() == KEEP {
            v.pop_front();
        }
        v.push_back(p);
    }
}

/// The sampler, as a background service.
pub struct Sampler {
    hub: Arc<Hub>,
    history: Arc<History>,
}

impl Sampler {
    /// Samples `hub` into `history`.
    pub fn new(hub: Arc<Hub>, history: Arc<History>) -> Self {
        Self { hub, history }
    }
}

fn point(now: &Totals, before: &Totals, secs: f64, inflight: i64) -> Point {
    let d = |a: f64, b: f64| (a - b).max(0.0);
    let reqs = d(now.requests, before.requests);
    let lookups = d(now.lookups, before.lookups);
    Point {
        t: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as u64),
        rps: reqs / secs,
        error_rate: if reqs > 0.0 {
            d(now.errors, before.errors) / reqs
        } else {
            0.0
        },
        p50_ms: quantile_ms(&now.duration, &before.duration, 0.5),
        p99_ms: quantile_ms(&now.duration, &before.duration, 0.99),
        ttft_p50_ms: quantile_ms(&now.ttft, &before.ttft, 0.5),
        tokens_per_s: d(now.tokens, before.tokens) / secs,
        cache_hit_rate: (lookups > 0.0).then(|| d(now.hits, before.hits) / lookups),
        inflight,
    }
}

#[async_trait]
impl BackgroundService for Sampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut before = totals(&self.hub);
        let mut at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PERIOD) => {}
                _ = shutdown.changed() => return,
            }
            let now = totals(&self.hub);
            let secs = at.elapsed().as_secs_f64().max(0.001);
            at = tokio::time::Instant::now();
            self.history
                .push(point(&now, &before, secs, self.hub.inflight_total()));
            before = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_bucket_deltas() {
        let before = vec![(0.1, 10.0), (0.5, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)];
        // 100 new requests: 50 under 0.1 s, 49 more under 0.5 s, 1 under 1 s.
        let now = vec![
            (0.1, 60.0),
            (0.5, 109.0),
            (1.0, 110.0),
            (f64::INFINITY, 110.0),
        ];
        assert_eq!(quantile_ms(&now, &before, 0.5), Some(100.0));
        let p99 = quantile_ms(&now, &before, 0.99).unwrap();
        assert!((p99 - 500.0).abs() < 1e-6, "{p99}");
        assert_eq!(quantile_ms(&before, &before, 0.5), None, "no new requests");
    }

    #[test]
    fn rates_per_interval() {
        let before = Totals {
            requests: 10.0,
            hits: 1.0,
            lookups: 2.0,
            ..Default::default()
        };
        let now = Totals {
            requests: 30.0,
            errors: 5.0,
            tokens: 200.0,
            hits: 4.0,
            lookups: 8.0,
            ..Default::default()
        };
        let p = point(&now, &before, 2.0, 3);
        assert_eq!(p.rps, 10.0);
        assert_eq!(p.error_rate, 0.25);
        assert_eq!(p.tokens_per_s, 100.0);
        assert_eq!(p.cache_hit_rate, Some(0.5));
        assert_eq!(p.inflight, 3);
        assert_eq!(p.p50_ms, None);
    }
}
