//! After the response: the tenant's tokens settled, the provider's quota counted, the
//! cache entry stored and the flight's followers released, the metrics, the local
//! backend's statistics, and the one access log line.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrayvec::ArrayVec;
use compact_str::CompactString;
use pingora_error::Error;
use pingora_proxy::Session;
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::route::Class;

use super::ctx::Ctx;
use super::translate::Relay;
use super::{tap, Gateway};
use crate::accesslog::AccessLine;
use crate::cache::{self, Kind};
use crate::metrics::{status_class, CacheOutcome, Metrics, Sample};
use crate::store::Finish;

/// (provider, model, endpoint, status class) and its counter.
type CounterEntry = (
    CompactString,
    CompactString,
    &'static str,
    &'static str,
    prometheus::IntCounter,
);

thread_local! {
    /// `switchyard_requests_total` handles recently used on this thread: label lookups
    /// hash four strings under a lock, and most requests repeat a recent label set.
    static REQUEST_COUNTERS: std::cell::RefCell<ArrayVec<CounterEntry, 8>> =
        const { std::cell::RefCell::new(ArrayVec::new_const()) };
}

fn count_request(m: &Metrics, provider: &str, model: &str, ep: &'static str, status: &'static str) {
    REQUEST_COUNTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(e) = cache
            .iter()
            .find(|e| e.2 == ep && e.3 == status && e.0 == provider && e.1 == model)
        {
            e.4.inc();
            return;
        }
        let c = m.requests.with_label_values(&[provider, model, ep, status]);
        c.inc();
        if cache.is_full() {
            cache.remove(0);
        }
        cache.push((
            CompactString::from(provider),
            CompactString::from(model),
            ep,
            status,
            c,
        ));
    });
}

impl Gateway {
    /// Everything after the response, for every request.
    pub(super) async fn finish(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let end = Instant::now();
        if !ctx.routed {
            // Answered before routing (health, models, bad method/path, auth, limits).
            self.write_access(session, ctx, end, None);
            return;
        }
        if ctx.outcome.status == 0 {
            if let Some(r) = session.response_written() {
                ctx.outcome.status = r.status.as_u16();
            }
        }
        if ctx.tap.usage.is_none() {
            ctx.tap.usage = tap::usage(ctx);
        }
        if let Some(c) = ctx.route.inflight.take() {
            c.leave();
        }
        self.settle(ctx, e.is_some()).await;
        let ttft = self.record(ctx, e.is_some(), end);
        self.write_access(session, ctx, end, ttft);
    }

    /// Metrics and the local backend's statistics; returns the time to first token.
    fn record(&self, ctx: &Ctx, failed: bool, end: Instant) -> Option<Duration> {
        let snap = ctx.snap.as_ref()?;
        let provider = ctx.route.current.map(|i| &snap.providers[i as usize]);
        let pname = provider.map_or("none", |p| p.name.as_str());
        let ep = ctx.endpoint.map_or("other", Endpoint::label);
        let status = ctx.outcome.status;
        let status_label = if status == 0 {
            "error"
        } else {
            status_class(status)
        };
        count_request(
            &self.hub.metrics,
            pname,
            snap.metric_model(&ctx.req.model),
            ep,
            status_label,
        );
        let latency = end.duration_since(ctx.start);
        if let Some(o) = ctx.time.overhead {
            self.hub.metrics.overhead.observe(o.as_secs_f64());
        }
        let t = &ctx.time;
        let ttft = if ctx.req.stream {
            t.first_chunk.map(|f| f.duration_since(ctx.start))
        } else {
            None
        };
        let usage = ctx.tap.usage;
        if let (Some(p), Some(ep)) = (provider, ctx.endpoint) {
            let c = &p.counters;
            c.duration[ep].observe(latency.as_secs_f64());
            if let (Some(sent), Some(h)) = (t.upstream_sent, t.upstream_header) {
                c.ttfb.observe(h.duration_since(sent).as_secs_f64());
            }
            if let Some(t) = ttft {
                c.ttft.observe(t.as_secs_f64());
            }
            if let Some(u) = usage {
                if u.prompt_tokens > 0 {
                    c.prompt_tokens.inc_by(u.prompt_tokens);
                }
                if u.completion_tokens > 0 {
                    c.completion_tokens.inc_by(u.completion_tokens);
                }
            }
        }
        let local = snap.local.as_ref()?;
        let p = provider?;
        if ctx.route.current == Some(local.index as u16) && p.class == Class::Local {
            let generation = match (ctx.req.stream, t.first_chunk, t.last_chunk, t.upstream_sent) {
                (true, Some(f), Some(l), _) => l.duration_since(f),
                (false, _, Some(l), Some(s)) => l.duration_since(s),
                _ => Duration::ZERO,
            };
            let failed = failed || ctx.outcome.mid_stream_error;
            self.hub.inference.record(Sample {
                error: failed || status >= 500 || status == 0,
                latency,
                ttft,
                completion_tokens: usage.map_or(0, |u| u.completion_tokens),
                prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
                generation,
                at: Some(end),
            });
        }
        ttft
    }

    /// Settles the tenant's token reservation, counts the provider's quota tokens, and
    /// for the leader of a flight stores the answer and releases the requests waiting on
    /// it (stored first, so that a repeat finds the entry).
    async fn settle(&self, ctx: &mut Ctx, failed: bool) {
        let t = &self.hub.tenancy;
        let from_cache = ctx.cache.status.answered_by_cache();
        if let (Some(snap), Some(i), Some(u)) = (&ctx.snap, ctx.route.current, ctx.tap.usage) {
            let name = &snap.providers[i as usize].name;
            if t.has_quota(name) && !from_cache {
                t.add_quota_tokens(name, u.total_tokens).await;
            }
        }
        let status = ctx.outcome.status;
        let flight = ctx.cache.flight.take();
        let ok = ctx.tap.complete && status == 200 && !failed && !ctx.outcome.mid_stream_error;
        let entry = match (&flight, ctx.cache.key.as_deref()) {
            (Some(f), Some(key)) if ok && ctx.cache.policy.store => {
                f.collect().map(|(streamed, body)| {
                    let kind = if streamed { Kind::Sse } else { Kind::Json };
                    (key, cache::encode(kind, &body), self.hub.settings.cache.ttl)
                })
            }
            _ => None,
        };
        if let Some(tenant) = ctx.tenancy.tenant.clone() {
            let used = if from_cache || status != 200 {
                0
            } else {
                ctx.tap
                    .usage
                    .map_or(ctx.tenancy.reserved, |u| u.total_tokens)
            };
            let stored = entry.is_some();
            let f = Finish {
                tenant: &tenant.name,
                tokens: tenant.tokens,
                reserved: if tenant.tokens.is_unlimited() {
                    0
                } else {
                    ctx.tenancy.reserved
                },
                used,
                store: entry,
                fallback: ctx.tenancy.fallback,
            };
            if f.reserved > 0 || stored {
                let done = t.finish(&f).await;
                if done && stored {
                    self.hub.metrics.count_cache(CacheOutcome::Stored);
                }
            }
        }
        if let Some(f) = flight {
            f.finish(ok);
            if let Some(key) = ctx.cache.key.as_deref() {
                self.hub.coalescer.leave(key, &f);
            }
        }
    }

    fn write_access(&self, session: &Session, ctx: &Ctx, end: Instant, ttft: Option<Duration>) {
        if !self.hub.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let status = if ctx.outcome.status == 0 {
            session.response_written().map_or(0, |r| r.status.as_u16())
        } else {
            ctx.outcome.status
        };
        let line = AccessLine {
            ts_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            method: req.method.as_str(),
            path: req.uri.path(),
            model: (!ctx.req.model.is_empty()).then_some(ctx.req.model.as_str()),
            provider: ctx.provider_name(),
            status,
            latency: end.duration_since(ctx.start),
            ttft,
            overhead: ctx.time.overhead,
            prompt_tokens: ctx.tap.usage.map(|u| u.prompt_tokens),
            completion_tokens: ctx.tap.usage.map(|u| u.completion_tokens),
            stream: ctx.req.stream,
            cache: ctx.cache.status.label(),
            fallback: !ctx.route.failures.is_empty(),
            attempts: ctx.route.attempts,
            error: ctx
                .outcome
                .gateway_error
                .or(ctx.outcome.mid_stream_error.then_some("mid_stream")),
            tenant: ctx
                .tenancy
                .tenant
                .as_ref()
                .map(|t| t.name.as_str())
                .filter(|_| self.hub.tenancy.auth_enabled()),
            translated: match &ctx.req.relay {
                Relay::Pass => None,
                r => Some(r.label()),
            },
        };
        if !self.hub.access_log.write(&line) {
            self.hub.metrics.log_dropped.inc();
        }
    }
}
