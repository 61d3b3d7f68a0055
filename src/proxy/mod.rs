//! The proxy: Switchyard's `ProxyHttp` implementation. Each hook is short and hands
//! its work to the file that owns it.
//!
//! A request's path through Pingora's phases:
//!
//! ```text
//! request_filter           stages.rs: a fixed list of stages (local endpoints, auth,
//!                          body, head, route, cache, admit, coalesce, in-process),
//!                          each going on or deciding an answer; answers.rs and
//!                          replay.rs give the answers. Anything answered here stops.
//! upstream_peer            upstream.rs: the next candidate's peer and body (model
//!                          rewrite, include_usage) — called again on a fallback
//! upstream_request_filter  upstream.rs: path, Host, provider auth, X-Forwarded-For;
//!                          client credentials, cookies, query string and the route
//!                          hint removed; Content-Length of the body sent
//! request_body_filter      emits the buffered (possibly rewritten) body
//! upstream_response_filter failure.rs: 5xx/429 with another candidate left -> next;
//!                          upstream.rs: the response starts (tap, flight)
//! response_filter          x-request-id, x-switchyard-provider, x-cache, x-ratelimit-*
//! response_body_filter     tap.rs: chunks pass untouched; usage, timing, followers
//! fail_to_connect /        failure.rs: before the first byte reached the client, the
//! error_while_proxy        next candidate; a written request is never sent there again
//! fail_to_proxy            failure.rs: the one answer when nothing is left, or the one
//!                          SSE error event that ends a started stream
//! logging                  finish.rs: settle, cache store, metrics, the access line
//! ```

mod answers;
mod body;
mod cli;
mod ctx;
mod failure;
mod finish;
mod replay;
mod stages;
mod tap;
mod translate;
mod upstream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use switchyard_filters::error::{clip, GatewayError};

pub(crate) use answers::abandoned;
pub use ctx::{CacheStatus, Ctx};
pub use failure::Failure;
pub(crate) use translate::stream_error_event;

use crate::state::Hub;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static X_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");

const HEX: &[u8; 16] = b"0123456789abcdef";

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

impl ProxyHttp for Gateway {
    // Boxed: the context is about 1.6 KB, and Pingora moves it by value into each
    // request's futures (a memcpy per move); a box moves as one pointer.
    type CTX = Box<Ctx>;

    fn new_ctx(&self) -> Self::CTX {
        Box::new(Ctx::new())
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
        if !ctx.req.stream {
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
            clip(req.uri.path(), 200),
            ctx.request_id.to_str().unwrap_or("")
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snap = self.hub.snapshot();
        let answer = self.stages(session, ctx, &snap).await;
        // The one epilogue: the request finishes on this snapshot, and everything until
        // now was the gateway's own time.
        ctx.snap = Some(snap);
        ctx.mark_overhead();
        match answer {
            None => Ok(false),
            Some(a) => self.give(session, ctx, a).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        self.next_peer(ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.prepare_request(session, req, ctx)
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
        let send = &ctx.req.send_body;
        *body = (end_of_stream && !send.is_empty()).then(|| send.clone());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if resp.status.as_u16() < 200 {
            return Ok(());
        }
        ctx.time.upstream_header = Some(std::time::Instant::now());
        self.on_upstream_status(session, resp, ctx)?;
        self.on_response_header(resp, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        answers::annotate(resp, ctx);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        tap::on_body(body, end_of_stream, ctx);
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        self.on_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        self.on_proxy_error(session, e, ctx, client_reused)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        self.fail(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        self.finish(session, e, ctx).await;
    }
}
