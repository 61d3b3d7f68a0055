//! The proxy: Switchyard's `ProxyHttp` implementation.
//!
//! A request's path through Pingora's phases:
//!
//! ```text
//! request_filter          request id; endpoint (405/404); /health, /v1/models answered
//!                         here; body read in full (bounded: 413), head parsed (400);
//!                         route decided (404 unknown model, 503 nothing available);
//!                         in-process providers answer here. Anything answered here
//!                         stops the request.
//! upstream_peer           next candidate: peer, inflight +1, body for this candidate
//!                         (model rewrite, include_usage) — called again on fallback
//! upstream_request_filter path, Host, provider auth, extra headers; client credentials
//!                         and the route hint removed; Content-Length of the body sent
//! request_body_filter     emits the buffered (possibly rewritten) body
//! upstream_response_filter 5xx/429 with another candidate left -> retry (fallback)
//! response_filter         x-request-id, x-switchyard-provider
//! response_body_filter    chunks pass untouched; usage found as they pass; the
//!                         usage-only SSE chunk removed when only the gateway asked
//! fail_to_connect /       before the first byte reached the client: next candidate;
//! error_while_proxy       after it: no retry
//! fail_to_proxy           nothing sent yet: OpenAI-style error JSON (503 lists what was
//!                         tried); mid-stream: an SSE error event ends the stream
//! logging                 inflight -1, metrics, local stats, one JSON access line
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrayvec::ArrayVec;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use compact_str::CompactString;
use http::header::{self, HeaderName, HeaderValue};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use switchyard_filters::bucket::{format_reset, Admission};
use switchyard_filters::cachekey::{self, CachePolicy};
use switchyard_filters::convert;
use switchyard_filters::endpoint::{classify, Endpoint, Unrouted};
use switchyard_filters::error::GatewayError;
use switchyard_filters::head::{HeadError, RequestHead};
use switchyard_filters::rewrite::{rewrite_body, Rewrite};
use switchyard_filters::route::{Class, Hint, RouteError, Skip, MAX_CANDIDATES};
use switchyard_filters::usage::{usage_from_tail, Usage, UsageChunkStripper};

use crate::accesslog::AccessLine;
use crate::builtin::{self, MockRequest};
use crate::cache::{self, Flight, Follower, Kind, Read, Role};
use crate::config::CacheScope;
use crate::metrics::{status_class, ProviderCounters, Sample};
use crate::state::{endpoint_slot, Hub, Snapshot};
use crate::store::{AdmitArgs, Finish};
use crate::tenancy::Tenant;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static X_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Client headers that are never forwarded: gateway credentials, the routing hint,
/// `Expect` (the body was already read), `Accept-Encoding` (so token usage can be read
/// from the response), cookies, and proxy credentials. `X-Forwarded-For` is set by the
/// gateway itself.
static STRIPPED: [&HeaderName; 7] = [
    &header::AUTHORIZATION,
    &X_API_KEY,
    &X_ROUTE,
    &header::EXPECT,
    &header::ACCEPT_ENCODING,
    &header::COOKIE,
    &header::PROXY_AUTHORIZATION,
];

/// The query string passed to an upstream: only the parameters in `allow`, in their
/// order; `None` when none is left.
fn forwarded_query(query: &str, allow: &[String]) -> Option<String> {
    if allow.is_empty() {
        return None;
    }
    let mut out = String::new();
    for pair in query.split('&') {
        let name = pair.split('=').next().unwrap_or(pair);
        if allow.iter().any(|a| a == name) {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Writes `ip` in its usual text form; IPv4 without the formatting machinery (this runs
/// for every proxied request).
fn write_ip(out: &mut arrayvec::ArrayString<48>, ip: std::net::IpAddr) {
    use std::fmt::Write as _;
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(n.format(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `X-Forwarded-For` for the upstream: the client's address, appended to what the client
/// sent only when the client is a trusted proxy.
fn forwarded_for(
    client: Option<std::net::IpAddr>,
    sent: Option<&HeaderValue>,
    trusted: &[crate::config::IpNet],
) -> Option<HeaderValue> {
    let ip = client?;
    let mut v = arrayvec::ArrayString::<48>::new();
    write_ip(&mut v, ip);
    match sent.filter(|_| trusted.iter().any(|n| n.contains(ip))) {
        Some(prev) if !prev.is_empty() => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + v.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(v.as_bytes());
            HeaderValue::from_bytes(&joined).ok()
        }
        _ => HeaderValue::from_str(&v).ok(),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The failure recorded for a candidate that answered 429.
const STATUS_429: &str = "status 429";

/// A response's `Retry-After` in whole seconds (the delay form; a date counts as 1 s).
fn retry_after_secs(resp: &ResponseHeader) -> Option<u64> {
    let v = resp.headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(s.ceil() as u64),
        Ok(_) => None,
        Err(_) => Some(1),
    }
}

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static RL_LIMIT_REQ: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static RL_REMAINING_REQ: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RL_RESET_REQ: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static RL_LIMIT_TOK: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static RL_REMAINING_TOK: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RL_RESET_TOK: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// Adds the gateway's headers to a response: request id, provider, `x-cache`, and the
/// `x-ratelimit-*` headers of a limited tenant.
fn annotate(resp: &mut ResponseHeader, ctx: &Ctx) {
    resp.insert_parsed_header(&X_REQUEST_ID, "x-request-id", ctx.request_id.clone());
    if let (Some(snap), Some(i)) = (&ctx.snap, ctx.current) {
        resp.insert_parsed_header(
            &X_PROVIDER,
            "x-switchyard-provider",
            snap.providers[i as usize].name_header.clone(),
        );
    }
    if ctx.cache_policy.active() && ctx.cache_key.is_some() {
        let v = match ctx.cache_status {
            "hit" | "coalesced" => "HIT",
            _ => "MISS",
        };
        resp.insert_parsed_header(&X_CACHE, "x-cache", HeaderValue::from_static(v));
    }
    if let Some(a) = &ctx.admission {
        let mut put = |name: &HeaderName, case: &'static str, v: HeaderValue| {
            resp.insert_parsed_header(name, case, v)
        };
        if let Some(r) = a.requests {
            put(
                &RL_LIMIT_REQ,
                "x-ratelimit-limit-requests",
                HeaderValue::from(r.limit),
            );
            put(
                &RL_REMAINING_REQ,
                "x-ratelimit-remaining-requests",
                HeaderValue::from(r.remaining),
            );
            if let Ok(v) = HeaderValue::from_str(&format_reset(r.reset_ms)) {
                put(&RL_RESET_REQ, "x-ratelimit-reset-requests", v);
            }
        }
        if let Some(t) = a.tokens {
            put(
                &RL_LIMIT_TOK,
                "x-ratelimit-limit-tokens",
                HeaderValue::from(t.limit),
            );
            put(
                &RL_REMAINING_TOK,
                "x-ratelimit-remaining-tokens",
                HeaderValue::from(t.remaining),
            );
            if let Ok(v) = HeaderValue::from_str(&format_reset(t.reset_ms)) {
                put(&RL_RESET_TOK, "x-ratelimit-reset-tokens", v);
            }
        }
    }
}

/// The gateway's proxy logic. One per process; shared by all requests.
pub struct Gateway {
    hub: Arc<Hub>,
    id_prefix: u32,
    next_id: AtomicU64,
}

impl Gateway {
    /// A gateway reading its configuration from `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        Self {
            hub,
            id_prefix: seed,
            next_id: AtomicU64::new(1),
        }
    }

    /// 24 hex digits: a per-process random prefix and a counter.
    fn new_request_id(&self) -> HeaderValue {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 24];
        let v = (u128::from(self.id_prefix) << 64) | u128::from(n);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = HEX[((v >> ((23 - i) * 4)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// A boxed future. The answers a hook gives on its rare paths (errors, cache replays,
/// coalesced followers, local answers) are boxed so that their state does not swell the
/// hook's own future, which is allocated for every request.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Per-request state.
pub struct Ctx {
    start: Instant,
    snap: Option<Arc<Snapshot>>,
    request_id: HeaderValue,
    endpoint: Option<Endpoint>,
    body: Bytes,
    send_body: Bytes,
    body_read: Duration,
    overhead: Option<Duration>,
    model: CompactString,
    upstream_model: CompactString,
    stream: bool,
    client_wants_usage: bool,
    inject_usage: bool,
    candidates: ArrayVec<u16, MAX_CANDIDATES>,
    skipped: ArrayVec<(u16, Skip), MAX_CANDIDATES>,
    next: usize,
    current: Option<u16>,
    attempts: u8,
    failures: ArrayVec<(u16, &'static str), MAX_CANDIDATES>,
    inflight: Option<Arc<ProviderCounters>>,
    fallback_pending: bool,
    same_again: bool,
    upstream_sent: Option<Instant>,
    upstream_header: Option<Instant>,
    first_chunk: Option<Instant>,
    last_chunk: Option<Instant>,
    status: u16,
    scan: bool,
    /// The last three upstream body chunks, to read usage from the end.
    tail: [Option<Bytes>; 3],
    usage: Option<Usage>,
    strip: Option<UsageChunkStripper>,
    gateway_error: Option<&'static str>,
    mid_stream_error: bool,
    tenant: Option<Arc<Tenant>>,
    admission: Option<Admission>,
    reserved: u64,
    cache_policy: CachePolicy,
    cache_key: Option<String>,
    cache_status: &'static str,
    flight: Option<Arc<Flight>>,
    complete: bool,
    quota_failures: u8,
    /// The smallest `Retry-After` (seconds) of the candidates that answered 429.
    retry_after: Option<u64>,
    /// Why the next attempt sends the request again after an upstream may have received
    /// it (counted when that attempt starts).
    pending_resend: Option<&'static str>,
}

impl Ctx {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            snap: None,
            request_id: HeaderValue::from_static(""),
            endpoint: None,
            body: Bytes::new(),
            send_body: Bytes::new(),
            body_read: Duration::ZERO,
            overhead: None,
            model: CompactString::default(),
            upstream_model: CompactString::default(),
            stream: false,
            client_wants_usage: false,
            inject_usage: false,
            candidates: ArrayVec::new(),
            skipped: ArrayVec::new(),
            next: 0,
            current: None,
            attempts: 0,
            failures: ArrayVec::new(),
            inflight: None,
            fallback_pending: false,
            same_again: false,
            upstream_sent: None,
            upstream_header: None,
            first_chunk: None,
            last_chunk: None,
            status: 0,
            scan: false,
            tail: [None, None, None],
            usage: None,
            strip: None,
            gateway_error: None,
            mid_stream_error: false,
            tenant: None,
            admission: None,
            reserved: 0,
            cache_policy: CachePolicy::OFF,
            cache_key: None,
            cache_status: "off",
            flight: None,
            complete: false,
            quota_failures: 0,
            retry_after: None,
            pending_resend: None,
        }
    }

    /// Whether a candidate after the current one can still be tried.
    fn has_more(&self) -> bool {
        let Some(snap) = &self.snap else { return false };
        self.candidates[self.next.min(self.candidates.len())..]
            .iter()
            .any(|&i| snap.providers[i as usize].class != Class::InProcess)
    }

    fn provider_name(&self) -> Option<&str> {
        let snap = self.snap.as_ref()?;
        self.current
            .map(|i| snap.providers[i as usize].name.as_str())
    }

    fn record_failure(&mut self, why: &'static str) {
        if let Some(i) = self.current {
            let _ = self.failures.try_push((i, why));
        }
    }
}

/// Resolves once the shutdown grace period is over (streams still open are then ended
/// with an error event).
pub(crate) async fn abandoned(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|a| *a).await.is_err() {
        // The hub is gone: nothing will ever abandon this request.
        std::future::pending::<()>().await;
    }
}

/// The SSE event that ends a stream in error: `data: {"error":{...}}` and a blank line.
pub(crate) fn sse_error_event(e: &GatewayError) -> Bytes {
    let mut ev = b"data: ".to_vec();
    ev.extend_from_slice(&e.body());
    ev.extend_from_slice(b"\n\n");
    Bytes::from(ev)
}

/// Usage from the end of a response or stream: the last chunk, or the last chunks joined
/// when the usage object straddles them (a stream's `[DONE]` often arrives alone).
fn usage_of_tail(tail: &[Option<Bytes>; 3]) -> Option<Usage> {
    let last = tail[2].as_ref()?;
    if let Some(u) = usage_from_tail(last) {
        return Some(u);
    }
    let mut joined: Vec<u8> = Vec::new();
    for prev in tail[..2].iter().rev().flatten() {
        let keep = prev.len().min(8192);
        let mut next = Vec::with_capacity(keep + joined.len().max(last.len()));
        next.extend_from_slice(&prev[prev.len() - keep..]);
        next.extend_from_slice(if joined.is_empty() { last } else { &joined });
        if let Some(u) = usage_from_tail(&next) {
            return Some(u);
        }
        joined = next;
    }
    None
}

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

fn count_request(
    m: &crate::metrics::Metrics,
    provider: &str,
    model: &str,
    ep: &'static str,
    status: &'static str,
) {
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

/// How long a request body may take: `base` plus its size at `min_rate` bytes per
/// second (the declared size, or for a chunked body what arrived so far plus one more
/// 64 KiB), so a body trickled in byte by byte cannot hold the connection. Each read
/// is also bounded by `read_timeout`.
#[derive(Debug, Clone, Copy)]
struct BodyPace {
    start: Instant,
    base: Duration,
    min_rate: u64,
    read_timeout: Duration,
}

impl BodyPace {
    fn allowed(&self, bytes: usize) -> Duration {
        let micros = (bytes as u64).saturating_mul(1_000_000) / self.min_rate.max(1);
        self.base + Duration::from_micros(micros)
    }
}

/// Reads the whole request body, bounded by `limit` and by `pace`.
async fn read_body(
    session: &mut Session,
    limit: usize,
    pace: BodyPace,
) -> std::result::Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::BodyRead(e.etype().as_str().to_string()))?;
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut so_far = 0usize;
    let mut reads = 0u32;
    loop {
        // The read timeout is what is left of the body's time (at most the per-read
        // timeout), so Pingora's one timer per read bounds both. The first read starts
        // with all of it: no clock read on the common path of a body that came with the
        // header.
        let allowed = pace.allowed(declared.unwrap_or(so_far + 64 * 1024));
        let left = if reads == 0 {
            allowed
        } else {
            allowed.saturating_sub(pace.start.elapsed())
        };
        if left.is_zero() {
            return Err(GatewayError::ClientTimeout("body"));
        }
        reads += 1;
        session.set_read_timeout(Some(left.min(pace.read_timeout)));
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| match e.etype() {
                ErrorType::ReadTimedout => GatewayError::ClientTimeout("body"),
                t => GatewayError::BodyRead(t.as_str().to_string()),
            })?;
        let Some(chunk) = chunk else { break };
        if so_far + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge(limit));
        }
        so_far += chunk.len();
        match (&mut buf, first.take()) {
            (Some(b), _) => b.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(f)) => {
                let cap = declared
                    .unwrap_or(f.len() + chunk.len() * 4)
                    .max(f.len() + chunk.len());
                let mut b = BytesMut::with_capacity(cap);
                b.extend_from_slice(&f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
        }
        // A body that arrived whole needs no second read to learn that it ended.
        if session.is_body_done() {
            break;
        }
    }
    session.set_read_timeout(Some(pace.read_timeout));
    Ok(match buf {
        Some(b) => b.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Reads and discards up to 64 KiB of an unread body so the connection can be reused;
/// gives up on the connection if there is more.
async fn drain_small_body(session: &mut Session) {
    if session.is_body_done() || session.is_body_empty() {
        return;
    }
    let mut seen = 0usize;
    loop {
        match session.read_request_body().await {
            Ok(Some(c)) => {
                seen += c.len();
                if seen > 64 * 1024 {
                    session.set_keepalive(None);
                    return;
                }
            }
            Ok(None) => return,
            Err(_) => {
                session.set_keepalive(None);
                return;
            }
        }
    }
}

impl Gateway {
    /// A response header for an answer the gateway gives itself, with the request id,
    /// the rate-limit headers and `x-cache`.
    fn local_header(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        content_type: &str,
        len: Option<usize>,
    ) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(status, Some(12))?;
        resp.insert_header(header::CONTENT_TYPE, content_type)?;
        if let Some(n) = len {
            resp.insert_header(header::CONTENT_LENGTH, n)?;
        }
        annotate(&mut resp, ctx);
        if self.hub.shutting_down.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        ctx.status = status;
        Ok(resp)
    }

    fn respond<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        status: u16,
        content_type: &'a str,
        body: Bytes,
        extra: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.respond_inner(session, ctx, status, content_type, body, extra))
    }

    async fn respond_inner(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        content_type: &str,
        body: Bytes,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        let mut resp = self.local_header(session, ctx, status, content_type, Some(body.len()))?;
        for (k, v) in extra {
            resp.insert_header(*k, v.as_str())?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    /// Streams SSE events to the client, one event per chunk, removing the usage-only
    /// event when the client did not ask for it.
    async fn write_events<'a>(
        session: &mut Session,
        ctx: &Ctx,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<()> {
        for ev in events {
            if !ctx.client_wants_usage {
                let payload = ev.strip_prefix(b"data: ").unwrap_or(ev);
                let payload = payload.strip_suffix(b"\n\n").unwrap_or(payload);
                if convert::is_usage_event(payload) {
                    continue;
                }
            }
            session
                .write_response_body(Some(Bytes::copy_from_slice(ev)), false)
                .await?;
        }
        Ok(())
    }

    /// Answers from a complete cached answer, as a stream or a whole response.
    fn replay<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        kind: Kind,
        body: Bytes,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.replay_inner(session, ctx, kind, body))
    }

    async fn replay_inner(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        kind: Kind,
        body: Bytes,
    ) -> Result<()> {
        match (ctx.stream, kind) {
            (false, Kind::Json) => {
                self.respond(session, ctx, 200, "application/json", body, &[])
                    .await
            }
            (false, Kind::Sse) => {
                let whole = convert::sse_to_json(&body).unwrap_or_default();
                self.respond(
                    session,
                    ctx,
                    200,
                    "application/json",
                    Bytes::from(whole),
                    &[],
                )
                .await
            }
            (true, _) => {
                let resp = self.local_header(session, ctx, 200, "text/event-stream", None)?;
                session.write_response_header(Box::new(resp), false).await?;
                match kind {
                    Kind::Sse => {
                        Self::write_events(session, ctx, convert::sse_events(&body)).await?
                    }
                    Kind::Json => {
                        let events = convert::json_to_sse(&body, true).unwrap_or_default();
                        Self::write_events(session, ctx, events.iter().map(Vec::as_slice)).await?
                    }
                }
                session.write_response_body(None, true).await
            }
        }
    }

    /// Waits on an identical request in flight and answers from it. Streamed clients of a
    /// streamed flight get its events as they arrive, however long the stream. Returns
    /// `false` (nothing written) when the flight failed before answering; the caller then
    /// goes upstream itself.
    fn follow<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        follower: &'a Follower,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.follow_inner(session, ctx, follower))
    }

    async fn follow_inner(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        follower: &Follower,
    ) -> Result<bool> {
        let flight = follower.flight();
        let wait_limit = self.hub.settings.server.upstream_read_timeout;
        // Wait for the leader's response to start.
        let started = loop {
            let notified = flight.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = flight.state.lock();
                if st.done == Some(false) {
                    return Ok(false);
                }
                if let Some(s) = st.started {
                    break s;
                }
            }
            if tokio::time::timeout(wait_limit, notified).await.is_err() {
                return Ok(false);
            }
        };
        if started.0 != 200 {
            return Ok(false);
        }
        if ctx.stream && started.1 {
            // Live: forward the leader's events as they arrive.
            let resp = self.local_header(session, ctx, 200, "text/event-stream", None)?;
            session.write_response_header(Box::new(resp), false).await?;
            let mut pending: Vec<u8> = Vec::new();
            let mut abandon = self.hub.abandon.subscribe();
            loop {
                let notified = flight.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (fresh, done) = match follower.read() {
                    Read::Chunks(c, d) => (c, d),
                    Read::Lagged => {
                        let e = GatewayError::Upstream(
                            "this client fell too far behind the shared stream".into(),
                        );
                        return self.end_stream_with(session, ctx, &e).await.map(|_| true);
                    }
                };
                for c in fresh {
                    pending.extend_from_slice(&c);
                }
                // Forward whole events only, so the usage event can be recognised.
                let cut = memchr::memmem::rfind(&pending, b"\n\n").map_or(0, |p| p + 2);
                if cut > 0 {
                    let whole: Vec<u8> = pending.drain(..cut).collect();
                    Self::write_events(session, ctx, convert::sse_events(&whole)).await?;
                }
                match done {
                    Some(true) => {
                        if !pending.is_empty() {
                            let rest = std::mem::take(&mut pending);
                            Self::write_events(session, ctx, [rest.as_slice()]).await?;
                        }
                        session.write_response_body(None, true).await?;
                        return Ok(true);
                    }
                    Some(false) => {
                        let e =
                            GatewayError::Upstream("the shared upstream stream ended early".into());
                        return self.end_stream_with(session, ctx, &e).await.map(|_| true);
                    }
                    None => {
                        tokio::select! {
                            r = tokio::time::timeout(wait_limit, notified) => {
                                if r.is_err() {
                                    flight.finish(false);
                                }
                            }
                            _ = abandoned(&mut abandon) => {
                                self.hub.metrics.upstream_cancelled.with_label_values(&["shutdown"]).inc();
                                let e = GatewayError::ShuttingDown;
                                return self.end_stream_with(session, ctx, &e).await.map(|_| true);
                            }
                        }
                    }
                }
            }
        }
        // Whole answer wanted, or shapes differ: gather it to the end, then convert.
        let mut body = BytesMut::new();
        loop {
            let notified = flight.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match follower.read() {
                Read::Chunks(fresh, done) => {
                    for c in fresh {
                        body.extend_from_slice(&c);
                    }
                    match done {
                        Some(true) => {
                            let kind = if started.1 { Kind::Sse } else { Kind::Json };
                            self.replay(session, ctx, kind, body.freeze()).await?;
                            return Ok(true);
                        }
                        Some(false) => return Ok(false),
                        None => {}
                    }
                }
                Read::Lagged => return Ok(false),
            }
            if tokio::time::timeout(wait_limit, notified).await.is_err() {
                return Ok(false);
            }
        }
    }

    /// Ends a stream the client is reading with the one SSE error event (and the end of
    /// the body). Marks the request as failed mid-stream.
    async fn end_stream_with(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        e: &GatewayError,
    ) -> Result<()> {
        ctx.mid_stream_error = true;
        session
            .write_response_body(Some(sse_error_event(e)), true)
            .await
    }

    /// Answers with a gateway error. Drains a small unread body to keep the connection.
    fn respond_error<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        e: &'a GatewayError,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.respond_error_inner(session, ctx, e))
    }

    async fn respond_error_inner(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        e: &GatewayError,
    ) -> Result<bool> {
        if matches!(
            e,
            GatewayError::BodyTooLarge(_)
                | GatewayError::BodyRead(_)
                | GatewayError::ClientTimeout(_)
        ) {
            // The rest of the body is not read: the connection cannot be reused, and the
            // answer says so (`Connection: close`).
            session.set_keepalive(None);
        } else {
            drain_small_body(session).await;
        }
        if let GatewayError::ClientTimeout(kind) = e {
            self.hub
                .metrics
                .client_timeouts
                .with_label_values(&[kind])
                .inc();
        }
        ctx.gateway_error = Some(e.code());
        self.hub
            .metrics
            .gateway_errors
            .with_label_values(&[e.metric_label()])
            .inc();
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        if let GatewayError::MethodNotAllowed { allowed, .. } = e {
            extra.push(("allow", (*allowed).to_string()));
        }
        match e {
            GatewayError::RateLimited {
                retry_after_secs, ..
            }
            | GatewayError::UpstreamRateLimited {
                retry_after_secs: Some(retry_after_secs),
                ..
            } => extra.push(("retry-after", retry_after_secs.to_string())),
            GatewayError::ShuttingDown => extra.push(("retry-after", "1".to_string())),
            _ => {}
        }
        self.respond(
            session,
            ctx,
            e.status(),
            "application/json",
            Bytes::from(e.body()),
            &extra,
        )
        .await?;
        Ok(true)
    }

    fn models_list(&self, snap: &Snapshot) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in &snap.providers {
            for m in &p.listed_models {
                if seen.insert(m.clone()) {
                    out.push((m.clone(), p.name.clone()));
                }
            }
        }
        for alias in snap.route.aliases.keys() {
            if seen.insert(alias.clone()) {
                out.push((alias.clone(), "alias".to_string()));
            }
        }
        out
    }

    fn no_backend_detail(snap: &Snapshot, ctx: &Ctx) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (i, why) in &ctx.failures {
            parts.push(format!(
                "{} failed ({why})",
                snap.providers[*i as usize].name
            ));
        }
        for (i, skip) in &ctx.skipped {
            let name = &snap.providers[*i as usize].name;
            parts.push(match skip {
                Skip::Strategy(s) => format!("{name} skipped (strategy {})", s.as_str()),
                Skip::Unavailable(why) => format!("{name} skipped ({why})"),
            });
        }
        for &i in &ctx.candidates[ctx.next.min(ctx.candidates.len())..] {
            let p = &snap.providers[i as usize];
            if p.class == Class::InProcess {
                parts.push(format!(
                    "{} skipped (in-process providers cannot take a fallback)",
                    p.name
                ));
            }
        }
        if parts.is_empty() {
            "no candidate".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// The error answered for a request that failed before its response started;
    /// `None` when the client is the one that failed.
    fn failure_error(&self, e: &Error, ctx: &Ctx) -> Option<GatewayError> {
        let snap = ctx.snap.as_ref();
        let only = |w: &str| !ctx.failures.is_empty() && ctx.failures.iter().all(|(_, f)| *f == w);
        Some(match (e.etype(), snap) {
            (t, _) if *t == pingora_proxy::ABANDONED => GatewayError::ShuttingDown,
            (_, Some(snap)) if ctx.quota_failures > 0 && only("daily quota exhausted") => {
                GatewayError::QuotaExhausted(format!(
                    "every provider for model `{}` is out of its daily quota ({})",
                    switchyard_filters::error::clip(&ctx.model, 200),
                    Self::no_backend_detail(snap, ctx)
                ))
            }
            (_, Some(snap)) if only(STATUS_429) => GatewayError::UpstreamRateLimited {
                retry_after_secs: ctx.retry_after,
                detail: Self::no_backend_detail(snap, ctx),
            },
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, _) if ctx.failures.len() <= 1 => {
                GatewayError::UpstreamTimeout(ctx.provider_name().unwrap_or("upstream").to_string())
            }
            (_, Some(snap)) if ctx.attempts > 0 || !ctx.failures.is_empty() => {
                GatewayError::NoBackend {
                    model: ctx.model.to_string(),
                    detail: Self::no_backend_detail(snap, ctx),
                }
            }
            (ErrorType::HTTPStatus(s), _) if *s >= 400 => {
                GatewayError::Internal(format!("status {s}"))
            }
            _ => match e.esource() {
                ErrorSource::Downstream => return None,
                _ => GatewayError::Upstream(e.etype().as_str().to_string()),
            },
        })
    }

    fn enter_provider(ctx: &mut Ctx, snap: &Snapshot, i: u16) {
        if let Some(c) = ctx.inflight.take() {
            c.leave();
        }
        let p = &snap.providers[i as usize];
        p.counters.enter();
        ctx.inflight = Some(p.counters.clone());
        ctx.current = Some(i);
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Self::CTX {
        Ctx::new()
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // No response compression module: responses pass through as the upstream sent
        // them, and no per-request module work is done.
    }

    fn early_error_response(
        &self,
        status: u16,
        _e: Option<&Error>,
    ) -> Option<(ResponseHeader, Bytes)> {
        let server = &self.hub.settings.server;
        let ge = match status {
            431 => GatewayError::HeaderTooLarge(server.max_request_header_bytes),
            408 => GatewayError::ClientTimeout("header"),
            405 => GatewayError::MethodNotAllowed {
                method: "CONNECT".into(),
                allowed: "GET, POST",
            },
            _ => GatewayError::BadHttp,
        };
        let m = &self.hub.metrics;
        m.gateway_errors
            .with_label_values(&[ge.metric_label()])
            .inc();
        if let GatewayError::ClientTimeout(kind) = ge {
            m.client_timeouts.with_label_values(&[kind]).inc();
        }
        let mut resp = ResponseHeader::build(ge.status(), Some(4)).ok()?;
        resp.insert_header(header::CONTENT_TYPE, "application/json")
            .ok()?;
        resp.insert_parsed_header(&X_REQUEST_ID, "x-request-id", self.new_request_id());
        Some((resp, Bytes::from(ge.body())))
    }

    fn abandon_signal(
        &self,
        ctx: &Self::CTX,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        // Streams only: one cut at the end of the grace period gets an SSE error event;
        // a whole answer cut short is already an unmistakable failure for its client.
        if !ctx.stream {
            return None;
        }
        let mut rx = self.hub.abandon.subscribe();
        Some(Box::pin(async move { abandoned(&mut rx).await }))
    }

    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        // Never the query string (it can carry credentials) nor any header value.
        let req = session.req_header();
        format!(
            "{} {} request {}",
            req.method,
            switchyard_filters::error::clip(req.uri.path(), 200),
            ctx.request_id.to_str().unwrap_or("")
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = match session.req_header().headers.get(&X_REQUEST_ID) {
            Some(v)
                if !v.is_empty()
                    && v.len() <= 128
                    && v.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
            {
                v.clone()
            }
            _ => self.new_request_id(),
        };
        if self.hub.shutting_down.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        // A client that stops reading is dropped after this (and its upstream request
        // cancelled), whatever is being written to it.
        session.set_write_timeout(Some(self.hub.settings.server.client_write_timeout));
        let req = session.req_header();
        let endpoint = match classify(req.method.as_str().as_bytes(), req.uri.path()) {
            Ok(e) => e,
            Err(Unrouted::Method(allowed)) => {
                let e = GatewayError::MethodNotAllowed {
                    method: req.method.to_string(),
                    allowed,
                };
                return self.respond_error(session, ctx, &e).await;
            }
            Err(Unrouted::Path) => {
                let e = GatewayError::UnknownPath {
                    method: req.method.to_string(),
                    path: req.uri.path().chars().take(200).collect(),
                };
                return self.respond_error(session, ctx, &e).await;
            }
        };
        ctx.endpoint = Some(endpoint);
        let snap = self.hub.snapshot();

        match endpoint {
            Endpoint::Health => {
                drain_small_body(session).await;
                self.respond(
                    session,
                    ctx,
                    200,
                    "application/json",
                    Bytes::from_static(b"{\"status\":\"ok\"}"),
                    &[],
                )
                .await?;
                return Ok(true);
            }
            Endpoint::Models => {
                drain_small_body(session).await;
                let list = self.models_list(&snap);
                let doc = crate::mockgen::model_list(
                    list.iter().map(|(m, o)| (m.as_str(), o.as_str())),
                    0,
                );
                self.respond(session, ctx, 200, "application/json", Bytes::from(doc), &[])
                    .await?;
                return Ok(true);
            }
            Endpoint::Model => {
                drain_small_body(session).await;
                let id = session.req_header().uri.path()["/v1/models/".len()..]
                    .trim_end_matches('/')
                    .to_string();
                let list = self.models_list(&snap);
                return match list.iter().find(|(m, _)| *m == id) {
                    Some((m, o)) => {
                        let doc = serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": o});
                        let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                        self.respond(session, ctx, 200, "application/json", body, &[])
                            .await?;
                        Ok(true)
                    }
                    None => {
                        self.respond_error(session, ctx, &GatewayError::ModelNotFound(id))
                            .await
                    }
                };
            }
            Endpoint::Chat | Endpoint::Completions | Endpoint::Embeddings => {}
        }

        // Auth first: an unauthenticated request is refused before its body is read.
        let tenant = match self
            .hub
            .tenancy
            .authenticate(&session.req_header().headers)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                self.hub.metrics.auth_failures.inc();
                return self.respond_error(session, ctx, &e).await;
            }
        };
        ctx.tenant = Some(tenant.clone());

        let server = &self.hub.settings.server;
        let read_start = Instant::now();
        let pace = BodyPace {
            start: read_start,
            base: server.client_body_timeout,
            min_rate: server.client_body_min_rate,
            read_timeout: server.client_read_timeout,
        };
        let body = match read_body(session, snap.max_body, pace).await {
            Ok(b) => b,
            Err(e) => return self.respond_error(session, ctx, &e).await,
        };
        ctx.body_read = read_start.elapsed();
        let head = match RequestHead::parse(&body) {
            Ok(h) => h,
            Err(HeadError::Malformed(m)) => {
                return self
                    .respond_error(session, ctx, &GatewayError::MalformedJson(m))
                    .await
            }
            Err(HeadError::NotAnObject) => {
                return self
                    .respond_error(session, ctx, &GatewayError::BodyNotObject)
                    .await
            }
            Err(HeadError::Duplicate(k)) => {
                return self
                    .respond_error(session, ctx, &GatewayError::DuplicateKey(k))
                    .await
            }
        };
        let Some(model) = head.model.as_deref().filter(|m| !m.is_empty()) else {
            return self
                .respond_error(session, ctx, &GatewayError::MissingModel)
                .await;
        };
        let max_model = self.hub.settings.server.max_model_name_bytes;
        if model.len() > max_model {
            let e = GatewayError::ModelNameTooLong(max_model);
            return self.respond_error(session, ctx, &e).await;
        }
        ctx.model = CompactString::from(model);
        ctx.stream = head.is_stream() && endpoint != Endpoint::Embeddings;
        ctx.client_wants_usage = head.client_wants_usage();
        if !tenant.allows(model) {
            let e = GatewayError::ModelNotAllowed(model.to_string());
            return self.respond_error(session, ctx, &e).await;
        }
        let hint = session
            .req_header()
            .headers
            .get(&X_ROUTE)
            .map_or(Hint::None, |v| Hint::parse(v.as_bytes()));

        let route = match snap.route.decide(model, hint, |i| snap.unavailable(i)) {
            Ok(r) => r,
            Err(RouteError::NotFound) => {
                let e = GatewayError::ModelNotFound(model.to_string());
                return self.respond_error(session, ctx, &e).await;
            }
        };
        ctx.upstream_model = CompactString::from(route.upstream_model());
        ctx.candidates = route.candidates.clone();
        ctx.skipped = route.skipped.clone();
        // Only cacheable requests need the resolved name (for the cache key).
        let resolved = (self.hub.settings.cache.enabled && head.temperature == Some(0.0))
            .then(|| route.resolved.to_string());
        drop(route);

        let in_process = ctx
            .candidates
            .first()
            .is_some_and(|&i| snap.providers[i as usize].class == Class::InProcess);
        let cache = &self.hub.settings.cache;
        ctx.cache_policy = if cache.enabled && !in_process && !ctx.candidates.is_empty() {
            cachekey::policy(
                endpoint,
                &head,
                session
                    .req_header()
                    .headers
                    .get(header::CACHE_CONTROL)
                    .map(|v| v.as_bytes()),
            )
        } else {
            CachePolicy::OFF
        };
        if let (true, Some(resolved)) = (ctx.cache_policy.active(), resolved.as_deref()) {
            if let Some(k) = cachekey::key(endpoint, resolved, &body) {
                let scope = match cache.scope {
                    CacheScope::Tenant => tenant.name.as_str(),
                    CacheScope::Global => "global",
                };
                ctx.cache_key = Some(format!("{{{scope}}}:{k}"));
            }
        }
        ctx.reserved = head
            .max_output_tokens()
            .unwrap_or(self.hub.tenancy.default_max_tokens());
        drop(head);

        // One store round trip: rate limits and the cache entry.
        let lookup_key = ctx.cache_key.as_deref().filter(|_| ctx.cache_policy.lookup);
        let args = AdmitArgs {
            tenant: &tenant.name,
            requests: tenant.requests,
            tokens: tenant.tokens,
            token_cost: ctx.reserved,
            cache_key: lookup_key,
        };
        let admitted = match self.hub.tenancy.admit(&args, &tenant).await {
            Ok(a) => a,
            Err(e) => return self.respond_error(session, ctx, &e).await,
        };
        ctx.admission = Some(admitted.admission);
        ctx.reserved = admitted.reserved;
        if !admitted.admission.allowed {
            let limit = admitted.admission.refused_by.unwrap_or("requests");
            self.hub
                .metrics
                .rate_limited
                .with_label_values(&[limit])
                .inc();
            // Nothing was taken: nothing to settle.
            ctx.reserved = 0;
            let e = GatewayError::RateLimited {
                limit,
                retry_after_secs: admitted.admission.retry_after_ms.div_ceil(1000).max(1),
            };
            return self.respond_error(session, ctx, &e).await;
        }
        if !self.hub.tenancy.store().is_up() && ctx.cache_policy.active() {
            // Redis is down: the cache is bypassed (a local flight still coalesces).
            self.hub.metrics.cache.with_label_values(&["bypass"]).inc();
        }

        let Some(&first) = ctx.candidates.first() else {
            ctx.snap = Some(snap);
            let detail = ctx
                .snap
                .as_ref()
                .map(|s| Self::no_backend_detail(s, ctx))
                .unwrap_or_default();
            let e = GatewayError::NoBackend {
                model: ctx.model.to_string(),
                detail,
            };
            return self.respond_error(session, ctx, &e).await;
        };

        if let Some(entry) = admitted.cached.as_ref().and_then(cache::decode) {
            self.hub.metrics.cache.with_label_values(&["hit"]).inc();
            ctx.cache_status = "hit";
            ctx.snap = Some(snap);
            ctx.overhead = Some(ctx.start.elapsed().saturating_sub(ctx.body_read));
            self.replay(session, ctx, entry.0, entry.1).await?;
            return Ok(true);
        }

        if let (Some(key), true) = (ctx.cache_key.clone(), ctx.cache_policy.active()) {
            let limit = cache.max_entry_bytes;
            match self.hub.coalescer.join(&key, limit) {
                Role::Leader(f) => {
                    ctx.flight = Some(f);
                    ctx.cache_status = "miss";
                    self.hub.metrics.cache.with_label_values(&["miss"]).inc();
                }
                Role::Follower(f) if ctx.cache_policy.lookup => {
                    ctx.snap = Some(snap.clone());
                    ctx.overhead = Some(ctx.start.elapsed().saturating_sub(ctx.body_read));
                    if self.follow(session, ctx, &f).await? {
                        self.hub
                            .metrics
                            .cache
                            .with_label_values(&["coalesced"])
                            .inc();
                        ctx.cache_status = "coalesced";
                        return Ok(true);
                    }
                    // The leader failed before answering: go upstream ourselves.
                    ctx.cache_status = "miss";
                }
                Role::Follower(_) => ctx.cache_status = "miss",
            }
        }

        let first_provider = &snap.providers[first as usize];
        if let Some(spec) = &first_provider.mock {
            let spec = spec.clone();
            Self::enter_provider(ctx, &snap, first);
            ctx.attempts = 1;
            ctx.next = 1;
            ctx.snap = Some(snap);
            ctx.overhead = Some(ctx.start.elapsed().saturating_sub(ctx.body_read));
            ctx.status = 200;
            let req = MockRequest {
                endpoint,
                body: &body,
                model: &ctx.upstream_model,
                stream: ctx.stream,
                include_usage: ctx.client_wants_usage,
                request_id: ctx.request_id.to_str().unwrap_or(""),
                abandon: self.hub.abandon.subscribe(),
            };
            let usage = Box::pin(builtin::answer(session, &spec, req)).await?;
            ctx.usage = Some(usage);
            return Ok(true);
        }

        ctx.body = body;
        ctx.snap = Some(snap);
        ctx.overhead = Some(ctx.start.elapsed().saturating_sub(ctx.body_read));
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(snap) = ctx.snap.clone() else {
            return Err(Error::explain(ErrorType::InternalError, "no snapshot"));
        };
        if ctx.same_again {
            ctx.same_again = false;
            ctx.next = ctx.next.saturating_sub(1);
        }
        while ctx.next < ctx.candidates.len() {
            let i = ctx.candidates[ctx.next];
            ctx.next += 1;
            let p = &snap.providers[i as usize];
            let Some(up) = &p.upstream else { continue };
            let Some(peer) = &up.peer else {
                let _ = ctx.failures.try_push((i, "host does not resolve"));
                continue;
            };
            if self.hub.tenancy.has_quota(&p.name) {
                match self.hub.tenancy.take_quota(&p.name).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.hub
                            .metrics
                            .quota_exhausted
                            .with_label_values(&[p.name.as_str()])
                            .inc();
                        ctx.quota_failures += 1;
                        let _ = ctx.failures.try_push((i, "daily quota exhausted"));
                        continue;
                    }
                    Err(_) => {
                        let _ = ctx.failures.try_push((i, "quota state unavailable"));
                        continue;
                    }
                }
            }
            if let Some(prev) = ctx.current.filter(|&c| c != i) {
                snap.providers[prev as usize].counters.fallbacks.inc();
            }
            if let Some(reason) = ctx.pending_resend.take() {
                self.hub.metrics.resends.with_label_values(&[reason]).inc();
            }
            Self::enter_provider(ctx, &snap, i);
            ctx.attempts = ctx.attempts.saturating_add(1);
            ctx.inject_usage = ctx.stream && p.inject_usage && !ctx.client_wants_usage;
            let model_changes = ctx.upstream_model != ctx.model;
            let rw = Rewrite {
                model: model_changes.then_some(ctx.upstream_model.as_str()),
                include_usage: ctx.inject_usage,
            };
            ctx.send_body = match rewrite_body(&ctx.body, rw) {
                Some(v) => Bytes::from(v),
                None => ctx.body.clone(),
            };
            ctx.upstream_header = None;
            ctx.strip = None;
            return Ok(Box::new(peer.clone()));
        }
        Err(Error::explain(
            ErrorType::HTTPStatus(503),
            "no candidate left",
        ))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let (Some(snap), Some(i), Some(ep)) = (&ctx.snap, ctx.current, ctx.endpoint) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no provider chosen",
            ));
        };
        let Some(up) = &snap.providers[i as usize].upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "provider has no upstream",
            ));
        };
        let slot = endpoint_slot(ep).min(3);
        let target = &up.uris[slot];
        // The client's query string is dropped (it can carry credentials) but for the
        // parameters the provider is configured to receive.
        let query = req
            .uri
            .query()
            .and_then(|q| forwarded_query(q, &up.forward_query));
        if let Some(q) = query {
            let uri: http::Uri = format!("{}?{}", target.path(), q)
                .parse()
                .map_err(|_| Error::explain(ErrorType::InternalError, "bad upstream uri"))?;
            req.set_uri(uri);
        } else if req.uri.query().is_some()
            || !(up.uri_is_standard[slot] && req.uri.path() == target.path())
        {
            req.set_uri(target.clone());
        }
        req.insert_parsed_header(&header::HOST, "Host", up.host.clone());
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let xff = forwarded_for(
            client_ip,
            req.headers.get(&X_FORWARDED_FOR),
            &self.hub.settings.server.trusted_proxies,
        );
        match xff {
            Some(v) => req.insert_parsed_header(&X_FORWARDED_FOR, "X-Forwarded-For", v),
            None => {
                req.remove_header(&X_FORWARDED_FOR);
            }
        }
        // One pass over the (few) request headers instead of a lookup per name.
        let mut strip: ArrayVec<&'static HeaderName, 7> = ArrayVec::new();
        for name in req.headers.keys() {
            if let Some(h) = STRIPPED.iter().find(|h| **h == name) {
                if !strip.contains(h) {
                    strip.push(h);
                }
            }
        }
        for h in strip {
            req.remove_header(h);
        }
        if let Some(a) = &up.auth {
            req.insert_parsed_header(&header::AUTHORIZATION, "Authorization", a.clone());
        }
        for (k, v) in &up.extra_headers {
            req.insert_header(k.clone(), v.clone())?;
        }
        let len = ctx.send_body.len();
        let declared_ok = req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == itoa::Buffer::new().format(len).as_bytes());
        if !declared_ok {
            req.remove_header(&header::TRANSFER_ENCODING);
            req.insert_parsed_header(
                &header::CONTENT_LENGTH,
                "Content-Length",
                HeaderValue::from(len),
            );
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The body was read in request_filter; Pingora calls this once with the end of
        // the (already consumed) stream, and again on every retry.
        *body = if end_of_stream && !ctx.send_body.is_empty() {
            Some(ctx.send_body.clone())
        } else {
            None
        };
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if status < 200 {
            return Ok(());
        }
        ctx.upstream_header = Some(Instant::now());
        // A 5xx or 429 before anything reached the client moves on to the next
        // candidate. When it was the last one and others failed before it, the client
        // gets the gateway's 503 listing every attempt; a lone candidate's own error
        // response is passed through as it is.
        let retryable = status >= 500 || status == 429;
        if retryable
            && session.response_written().is_none()
            && (ctx.has_more() || !ctx.failures.is_empty())
        {
            let why = if status == 429 {
                if let Some(secs) = retry_after_secs(resp) {
                    ctx.retry_after = Some(ctx.retry_after.map_or(secs, |r| r.min(secs)));
                }
                STATUS_429
            } else {
                "status 5xx"
            };
            ctx.record_failure(why);
            if let Some(p) = ctx.provider_name() {
                self.hub
                    .metrics
                    .upstream_errors
                    .with_label_values(&[p, "status"])
                    .inc();
            }
            let more = ctx.has_more();
            ctx.fallback_pending = more;
            if more {
                ctx.pending_resend = Some("status");
            }
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "upstream error status; trying the next candidate",
            );
            e.set_retry(more);
            return Err(e);
        }
        ctx.status = status;
        let ok = (200..300).contains(&status);
        ctx.scan = ok && ctx.endpoint.is_some_and(Endpoint::is_inference);
        if let Some(f) = &ctx.flight {
            let sse = resp
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            f.start(status, sse);
            if status != 200 {
                f.finish(false);
            }
        }
        if ok && ctx.stream && ctx.inject_usage {
            ctx.strip = Some(UsageChunkStripper::new());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        annotate(resp, ctx);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body.as_ref() {
            if ctx.first_chunk.is_none() && !b.is_empty() {
                ctx.first_chunk = Some(Instant::now());
            }
            if let (Some(f), false) = (&ctx.flight, b.is_empty()) {
                f.push(b);
            }
            match ctx.strip.as_mut() {
                // The stripper reads usage from the event it removes.
                Some(st) if !st.passes(b) => {
                    let chunk = body.take().unwrap_or_default();
                    let out = st.filter(chunk, end_of_stream);
                    *body = (!out.is_empty() || end_of_stream).then_some(out);
                }
                Some(_) => {}
                // Otherwise usage is read at the end from the last chunks (an
                // OpenAI-shaped response or stream puts it last), so chunks are not
                // scanned as they pass.
                None if ctx.scan && !b.is_empty() => {
                    ctx.tail.rotate_left(1);
                    ctx.tail[2] = Some(b.clone());
                }
                None => {}
            }
        } else if let (true, Some(st)) = (end_of_stream, ctx.strip.as_mut()) {
            let out = st.filter(Bytes::new(), true);
            *body = (!out.is_empty()).then_some(out);
        }
        if end_of_stream {
            ctx.last_chunk = Some(Instant::now());
            ctx.complete = true;
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let kind = match e.etype() {
            ErrorType::ConnectTimedout => "connect timeout",
            ErrorType::ConnectRefused => "connection refused",
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => "tls handshake failed",
            _ => "connect failed",
        };
        ctx.record_failure(kind);
        if let Some(p) = ctx.provider_name() {
            self.hub
                .metrics
                .upstream_errors
                .with_label_values(&[p, "connect"])
                .inc();
        }
        e.set_retry(ctx.has_more());
        e
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut ctx.fallback_pending) {
            e.set_retry(true);
            return e;
        }
        if matches!(e.etype(), ErrorType::HTTPStatus(_)) {
            // Raised by upstream_response_filter for the last candidate.
            e.set_retry(false);
            return e;
        }
        let nothing_sent = session.response_written().is_none();
        let upstream_side = matches!(e.esource(), ErrorSource::Upstream);
        if !nothing_sent || !upstream_side {
            e.set_retry(false);
            return e;
        }
        // The same candidate again only when the request could not even be written on a
        // pooled connection (the upstream then cannot have received it whole; the pool
        // already checked the connection was alive when it was taken). Once the request
        // was written, a generation may have started: it is never sent there twice.
        if client_reused
            && *e.etype() == ErrorType::WriteError
            && ctx.upstream_header.is_none()
            && ctx.attempts < 3
        {
            ctx.same_again = true;
            ctx.pending_resend = Some("stale_connection");
            e.set_retry(true);
            return e;
        }
        let (kind, reason) = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => ("timeout", "timeout"),
            _ => ("connection error", "transport"),
        };
        ctx.record_failure(kind);
        if let Some(p) = ctx.provider_name() {
            self.hub
                .metrics
                .upstream_errors
                .with_label_values(&[p, "transport"])
                .inc();
        }
        let more = ctx.has_more();
        if more {
            ctx.pending_resend = Some(reason);
        }
        e.set_retry(more);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let abandoned = *e.etype() == pingora_proxy::ABANDONED;
        if abandoned {
            self.hub
                .metrics
                .upstream_cancelled
                .with_label_values(&["shutdown"])
                .inc();
        }
        if session.response_written().is_none() {
            let gerr = match self.failure_error(e, ctx) {
                Some(g) => g,
                None => {
                    // The client went away: nobody to answer.
                    ctx.status = 0;
                    return FailToProxy {
                        error_code: 0,
                        can_reuse_downstream: false,
                    };
                }
            };
            let status = gerr.status();
            // Decide before writing, so that the answer's `Connection` header tells the
            // truth about what happens to the connection next.
            let reuse = session.is_body_done() && !self.hub.shutting_down.load(Ordering::Relaxed);
            if !reuse {
                session.set_keepalive(None);
            }
            return match self.respond_error(session, ctx, &gerr).await {
                Ok(_) => FailToProxy {
                    error_code: status,
                    can_reuse_downstream: reuse,
                },
                Err(_) => FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                },
            };
        }
        // The response had started: end it so the client sees an error, not a hang.
        ctx.mid_stream_error = true;
        let downstream = matches!(e.esource(), ErrorSource::Downstream);
        if downstream {
            // The client stopped reading or went away; the upstream request is dropped
            // with it.
            let reason = if *e.etype() == ErrorType::WriteTimedout {
                self.hub
                    .metrics
                    .client_timeouts
                    .with_label_values(&["write"])
                    .inc();
                "client_write_timeout"
            } else {
                "client_gone"
            };
            if !ctx.complete {
                self.hub
                    .metrics
                    .upstream_cancelled
                    .with_label_values(&[reason])
                    .inc();
            }
        } else if let Some(p) = ctx.provider_name() {
            let kind = if abandoned { "shutdown" } else { "mid_stream" };
            self.hub
                .metrics
                .upstream_errors
                .with_label_values(&[p, kind])
                .inc();
        }
        if ctx.stream && !downstream {
            let gerr = if abandoned {
                GatewayError::ShuttingDown
            } else {
                GatewayError::Upstream(format!(
                    "the stream from {} ended early ({})",
                    ctx.provider_name().unwrap_or("upstream"),
                    e.etype().as_str()
                ))
            };
            let _ = session
                .write_response_body(Some(sse_error_event(&gerr)), true)
                .await;
        }
        FailToProxy {
            error_code: ctx.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let end = Instant::now();
        if ctx.snap.is_none() {
            // Answered before routing (health, models, bad method/path, auth).
            self.write_access(session, ctx, end, None);
            return;
        }
        if ctx.status == 0 {
            if let Some(r) = session.response_written() {
                ctx.status = r.status.as_u16();
            }
        }
        if ctx.usage.is_none() {
            ctx.usage = match &ctx.strip {
                Some(st) => st.usage(),
                None => usage_of_tail(&ctx.tail),
            };
        }
        if let Some(c) = ctx.inflight.take() {
            c.leave();
        }
        self.settle(ctx, e.is_some()).await;
        let Some(snap) = ctx.snap.as_ref() else {
            return;
        };
        let provider = ctx.current.map(|i| &snap.providers[i as usize]);
        let pname = provider.map_or("none", |p| p.name.as_str());
        let ep = ctx.endpoint.map_or("other", Endpoint::label);
        let failed = e.is_some() || ctx.mid_stream_error;
        let status_label = if ctx.status == 0 {
            "error"
        } else {
            status_class(ctx.status)
        };
        count_request(
            &self.hub.metrics,
            pname,
            snap.metric_model(&ctx.model),
            ep,
            status_label,
        );
        let latency = end.duration_since(ctx.start);
        if let Some(o) = ctx.overhead {
            self.hub.metrics.overhead.observe(o.as_secs_f64());
        }
        let ttft = if ctx.stream {
            ctx.first_chunk.map(|f| f.duration_since(ctx.start))
        } else {
            None
        };
        if let Some(p) = provider {
            let c = &p.counters;
            let slot = ctx.endpoint.map_or(4, endpoint_slot);
            c.duration[slot].observe(latency.as_secs_f64());
            if let (Some(sent), Some(h)) = (ctx.upstream_sent, ctx.upstream_header) {
                c.ttfb.observe(h.duration_since(sent).as_secs_f64());
            }
            if let Some(t) = ttft {
                c.ttft.observe(t.as_secs_f64());
            }
            if let Some(u) = ctx.usage {
                if u.prompt_tokens > 0 {
                    c.prompt_tokens.inc_by(u.prompt_tokens);
                }
                if u.completion_tokens > 0 {
                    c.completion_tokens.inc_by(u.completion_tokens);
                }
            }
        }
        if let (Some(p), Some(l)) = (provider, snap.local.as_ref()) {
            if ctx.current == Some(l.index as u16) && p.class == Class::Local {
                let generation = match (
                    ctx.stream,
                    ctx.first_chunk,
                    ctx.last_chunk,
                    ctx.upstream_sent,
                ) {
                    (true, Some(f), Some(l), _) => l.duration_since(f),
                    (false, _, Some(l), Some(s)) => l.duration_since(s),
                    _ => Duration::ZERO,
                };
                self.hub.inference.record(Sample {
                    error: failed || ctx.status >= 500 || ctx.status == 0,
                    latency,
                    ttft,
                    completion_tokens: ctx.usage.map_or(0, |u| u.completion_tokens),
                    prompt_tokens: ctx.usage.map_or(0, |u| u.prompt_tokens),
                    generation,
                });
            }
        }
        self.write_access(session, ctx, end, ttft);
    }
}

impl Gateway {
    /// After the response: settles the tenant's token reservation, counts the provider's
    /// quota tokens, and for the leader of a flight stores the answer and releases the
    /// requests waiting on it (stored first, so that a repeat finds the entry).
    async fn settle(&self, ctx: &mut Ctx, failed: bool) {
        let t = &self.hub.tenancy;
        if let (Some(snap), Some(i), Some(u)) = (&ctx.snap, ctx.current, ctx.usage) {
            let name = &snap.providers[i as usize].name;
            if t.has_quota(name) && !matches!(ctx.cache_status, "hit" | "coalesced") {
                t.add_quota_tokens(name, u.total_tokens).await;
            }
        }
        let flight = ctx.flight.take();
        let ok = ctx.complete && ctx.status == 200 && !failed && !ctx.mid_stream_error;
        let entry = match (&flight, ctx.cache_key.as_deref()) {
            (Some(f), Some(key)) if ok && ctx.cache_policy.store => {
                f.collect().map(|(streamed, body)| {
                    let kind = if streamed { Kind::Sse } else { Kind::Json };
                    (key, cache::encode(kind, &body), self.hub.settings.cache.ttl)
                })
            }
            _ => None,
        };
        if let Some(tenant) = ctx.tenant.clone() {
            let used = match ctx.cache_status {
                "hit" | "coalesced" => 0,
                _ if ctx.status != 200 => 0,
                _ => ctx.usage.map_or(ctx.reserved, |u| u.total_tokens),
            };
            let stored = entry.is_some();
            let f = Finish {
                tenant: &tenant.name,
                tokens: tenant.tokens,
                reserved: if tenant.tokens.is_unlimited() {
                    0
                } else {
                    ctx.reserved
                },
                used,
                store: entry,
            };
            if f.reserved > 0 || stored {
                let done = t.finish(&f).await;
                if done && stored {
                    self.hub.metrics.cache.with_label_values(&["stored"]).inc();
                }
            }
        }
        if let Some(f) = flight {
            f.finish(ok);
            if let Some(key) = ctx.cache_key.as_deref() {
                self.hub.coalescer.leave(key, &f);
            }
        }
    }

    fn write_access(&self, session: &Session, ctx: &Ctx, end: Instant, ttft: Option<Duration>) {
        if !self.hub.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let status = if ctx.status == 0 {
            session.response_written().map_or(0, |r| r.status.as_u16())
        } else {
            ctx.status
        };
        let line = AccessLine {
            ts_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            method: req.method.as_str(),
            path: req.uri.path(),
            model: (!ctx.model.is_empty()).then_some(ctx.model.as_str()),
            provider: ctx.provider_name(),
            status,
            latency: end.duration_since(ctx.start),
            ttft,
            overhead: ctx.overhead,
            prompt_tokens: ctx.usage.map(|u| u.prompt_tokens),
            completion_tokens: ctx.usage.map(|u| u.completion_tokens),
            stream: ctx.stream,
            cache: ctx.cache_status,
            fallback: !ctx.failures.is_empty(),
            attempts: ctx.attempts,
            error: ctx
                .gateway_error
                .or(ctx.mid_stream_error.then_some("mid_stream")),
            tenant: ctx
                .tenant
                .as_ref()
                .map(|t| t.name.as_str())
                .filter(|_| self.hub.tenancy.auth_enabled()),
        };
        if !self.hub.access_log.write(&line) {
            self.hub.metrics.log_dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_keep_only_allowed_parameters() {
        let allow = vec!["api-version".to_string()];
        assert_eq!(forwarded_query("api_key=sk&x=1", &[]), None);
        assert_eq!(forwarded_query("api_key=sk&x=1", &allow), None);
        assert_eq!(
            forwarded_query("api_key=sk&api-version=2024-10-21&x", &allow).as_deref(),
            Some("api-version=2024-10-21")
        );
        assert_eq!(
            forwarded_query("api-version", &allow).as_deref(),
            Some("api-version")
        );
    }

    #[test]
    fn forwarded_for_is_the_gateways_unless_the_client_is_trusted() {
        let client: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let sent = HeaderValue::from_static("6.6.6.6");
        let trusted = vec![crate::config::IpNet::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            forwarded_for(Some(client), Some(&sent), &[]).unwrap(),
            "10.1.2.3"
        );
        assert_eq!(
            forwarded_for(Some(client), Some(&sent), &trusted).unwrap(),
            "6.6.6.6, 10.1.2.3"
        );
        assert_eq!(
            forwarded_for(Some(client), None, &trusted).unwrap(),
            "10.1.2.3"
        );
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_for(Some(v6), None, &[]).unwrap(), "2001:db8::1");
        assert!(forwarded_for(None, Some(&sent), &trusted).is_none());
        let mut s = arrayvec::ArrayString::<48>::new();
        write_ip(&mut s, "255.0.10.1".parse().unwrap());
        assert_eq!(s.as_str(), "255.0.10.1");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut r = ResponseHeader::build(429, None).unwrap();
        assert_eq!(retry_after_secs(&r), None);
        r.insert_header("retry-after", "7").unwrap();
        assert_eq!(retry_after_secs(&r), Some(7));
        r.insert_header("retry-after", "1.2").unwrap();
        assert_eq!(retry_after_secs(&r), Some(2));
        r.insert_header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap();
        assert_eq!(retry_after_secs(&r), Some(1));
    }

    #[test]
    fn body_pace_grows_with_size() {
        let p = BodyPace {
            start: Instant::now(),
            base: Duration::from_secs(10),
            min_rate: 1000,
            read_timeout: Duration::from_secs(60),
        };
        assert_eq!(p.allowed(0), Duration::from_secs(10));
        assert_eq!(p.allowed(5000), Duration::from_secs(15));
    }
}
