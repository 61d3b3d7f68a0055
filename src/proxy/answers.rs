//! Answers the gateway gives itself: what a stage decided ([`Answer`]), the response
//! headers every answer carries, the one place that writes an error response, and the
//! end of a stream in error.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use switchyard_filters::bucket::format_reset;
use switchyard_filters::dialect::{anthropic_request_to_openai, AnthropicToOpenAi};
use switchyard_filters::error::GatewayError;

use super::body::drain_small_body;
use super::ctx::{CacheStatus, Ctx};
use super::translate::stream_error_event;
use super::{Gateway, X_REQUEST_ID};
use crate::cache::{Follower, Kind};
use crate::metrics::CacheOutcome;
use crate::providers::cli::CliPool;
use crate::providers::mock::{self, MockRequest};
use crate::state::{MockSpec, Snapshot};
use std::sync::Arc;

static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static RL_LIMIT_REQ: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static RL_REMAINING_REQ: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RL_RESET_REQ: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static RL_LIMIT_TOK: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static RL_REMAINING_TOK: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RL_RESET_TOK: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// A boxed future. The answers are boxed so that their state does not swell
/// `request_filter`'s own future, which is allocated for every request.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a request stage decided to answer instead of going upstream.
pub(super) enum Answer {
    /// An error, in the client's dialect.
    Error(GatewayError),
    /// A JSON document the gateway made itself (health, the model list).
    Json(Bytes),
    /// A stored answer from the cache.
    Replay(Kind, Bytes),
    /// The answer of an identical request in flight.
    Follow(Follower),
    /// The in-process mock provider (candidate `index`).
    Mock(u16, MockSpec),
    /// `count_tokens` where no candidate counts itself: an estimate, marked so.
    Estimate(u64),
    /// A CLI provider's process pool (candidate `index`).
    Cli(u16, Arc<CliPool>),
}

/// Resolves once the shutdown grace period is over (streams still open are then ended
/// with an error event).
pub(crate) async fn abandoned(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|a| *a).await.is_err() {
        // The hub is gone: nothing will ever abandon this request.
        std::future::pending::<()>().await;
    }
}

/// Adds the gateway's headers to a response: request id, provider, `x-cache`, and the
/// `x-ratelimit-*` headers of a limited tenant.
pub(super) fn annotate(resp: &mut ResponseHeader, ctx: &Ctx) {
    resp.insert_parsed_header(&X_REQUEST_ID, "x-request-id", ctx.request_id.clone());
    if let (Some(snap), Some(i)) = (&ctx.snap, ctx.route.current) {
        resp.insert_parsed_header(
            &X_PROVIDER,
            "x-switchyard-provider",
            snap.providers[i as usize].name_header.clone(),
        );
    }
    if ctx.cache.policy.active() && ctx.cache.key.is_some() {
        let v = if ctx.cache.status.answered_by_cache() {
            "HIT"
        } else {
            "MISS"
        };
        resp.insert_parsed_header(&X_CACHE, "x-cache", HeaderValue::from_static(v));
    }
    let Some(a) = &ctx.tenancy.admission else {
        return;
    };
    let mut put = |name: &HeaderName, case: &'static str, v: HeaderValue| {
        resp.insert_parsed_header(name, case, v)
    };
    for (limit, names) in [
        (
            a.requests,
            [
                (&RL_LIMIT_REQ, "x-ratelimit-limit-requests"),
                (&RL_REMAINING_REQ, "x-ratelimit-remaining-requests"),
                (&RL_RESET_REQ, "x-ratelimit-reset-requests"),
            ],
        ),
        (
            a.tokens,
            [
                (&RL_LIMIT_TOK, "x-ratelimit-limit-tokens"),
                (&RL_REMAINING_TOK, "x-ratelimit-remaining-tokens"),
                (&RL_RESET_TOK, "x-ratelimit-reset-tokens"),
            ],
        ),
    ] {
        let Some(l) = limit else { continue };
        put(names[0].0, names[0].1, HeaderValue::from(l.limit));
        put(names[1].0, names[1].1, HeaderValue::from(l.remaining));
        if let Ok(v) = HeaderValue::from_str(format_reset(l.reset_ms).as_str()) {
            put(names[2].0, names[2].1, v);
        }
    }
}

/// The model list `/v1/models` shows: every provider's exact model names (first
/// provider wins a name), then the aliases.
pub(super) fn models_list(snap: &Snapshot) -> Vec<(String, String)> {
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

impl Gateway {
    /// Gives the answer a stage decided. `Ok(false)`: nothing was written and the
    /// request goes upstream after all (the request it followed failed first).
    pub(super) async fn give(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        answer: Answer,
    ) -> Result<bool> {
        match answer {
            Answer::Error(e) => self.respond_error(session, ctx, &e).await,
            Answer::Json(doc) => {
                drain_small_body(session).await;
                self.respond(session, ctx, 200, "application/json", doc, &[])
                    .await?;
                Ok(true)
            }
            Answer::Replay(kind, body) => {
                self.hub.metrics.count_cache(CacheOutcome::Hit);
                ctx.cache.status = CacheStatus::Hit;
                self.replay(session, ctx, kind, body).await?;
                Ok(true)
            }
            Answer::Follow(follower) => {
                if self.follow(session, ctx, &follower).await? {
                    self.hub.metrics.count_cache(CacheOutcome::Coalesced);
                    ctx.cache.status = CacheStatus::Coalesced;
                    return Ok(true);
                }
                // The leader failed before answering: go upstream ourselves.
                ctx.cache.status = CacheStatus::Miss;
                Ok(false)
            }
            Answer::Mock(first, spec) => {
                Box::pin(self.answer_in_process(session, ctx, first, spec)).await?;
                Ok(true)
            }
            Answer::Cli(first, pool) => {
                Box::pin(self.answer_cli(session, ctx, first, pool)).await?;
                Ok(true)
            }
            Answer::Estimate(n) => {
                drain_small_body(session).await;
                let doc = Bytes::from(format!("{{\"input_tokens\":{n}}}"));
                let extra = [("x-switchyard-estimated", "true".to_string())];
                self.respond(session, ctx, 200, "application/json", doc, &extra)
                    .await?;
                Ok(true)
            }
        }
    }

    async fn answer_in_process(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        first: u16,
        spec: MockSpec,
    ) -> Result<()> {
        let Some(snap) = ctx.snap.clone() else {
            return Ok(());
        };
        let anthropic = if ctx.anthropic_client() {
            let opts = AnthropicToOpenAi {
                message_id: format!("msg_{}", ctx.request_id.to_str().unwrap_or("0")),
                ..AnthropicToOpenAi::default()
            };
            let translated = match &ctx.req.anthropic {
                Some(checked) => checked.to_openai(&ctx.req.upstream_model, &opts),
                None => anthropic_request_to_openai(&ctx.req.body, &ctx.req.upstream_model, &opts),
            };
            match translated {
                Ok((_, st)) => Some(st),
                Err(e) => {
                    let e = GatewayError::Invalid {
                        message: e.message,
                        param: e.param,
                        code: e.code,
                    };
                    self.respond_error(session, ctx, &e).await?;
                    return Ok(());
                }
            }
        } else {
            None
        };
        Self::enter_provider(ctx, &snap, first);
        ctx.route.attempts = 1;
        ctx.route.next = 1;
        ctx.outcome.status = 200;
        let req = MockRequest {
            endpoint: ctx
                .endpoint
                .unwrap_or(switchyard_filters::endpoint::Endpoint::Chat),
            body: &ctx.req.body,
            model: &ctx.req.upstream_model,
            stream: ctx.req.stream,
            include_usage: ctx.req.client_wants_usage,
            request_id: ctx.request_id.to_str().unwrap_or(""),
            abandon: self.hub.abandon.subscribe(),
            anthropic,
        };
        let usage = mock::answer(session, &spec, req).await?;
        ctx.tap.usage = Some(usage);
        Ok(())
    }

    /// A response header for an answer the gateway gives itself, with the request id,
    /// the rate-limit headers and `x-cache`.
    pub(super) fn local_header(
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
        ctx.outcome.status = status;
        Ok(resp)
    }

    /// Writes a whole answer.
    pub(super) fn respond<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        status: u16,
        content_type: &'a str,
        body: Bytes,
        extra: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut resp =
                self.local_header(session, ctx, status, content_type, Some(body.len()))?;
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
        })
    }

    /// Answers with a gateway error: the one place error responses are written. Drains a
    /// small unread body to keep the connection, except for errors about the body
    /// itself, which close it (and say so).
    pub(super) fn respond_error<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        e: &'a GatewayError,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if matches!(
                e,
                GatewayError::BodyTooLarge(_)
                    | GatewayError::BodyRead(_)
                    | GatewayError::ClientTimeout(_)
            ) {
                session.set_keepalive(None);
            } else {
                drain_small_body(session).await;
            }
            let m = &self.hub.metrics;
            if let GatewayError::ClientTimeout(kind) = e {
                m.client_timeouts.with_label_values(&[kind]).inc();
            }
            ctx.outcome.gateway_error = Some(e.code());
            m.gateway_errors
                .with_label_values(&[e.metric_label()])
                .inc();
            let mut extra: Vec<(&'static str, String)> = Vec::new();
            match e {
                GatewayError::MethodNotAllowed { allowed, .. } => {
                    extra.push(("allow", (*allowed).to_string()))
                }
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
            // In the client's dialect.
            let (status, body) = if ctx.anthropic_client() {
                (e.anthropic_status(), e.anthropic_body())
            } else {
                (e.status(), e.body())
            };
            self.respond(
                session,
                ctx,
                status,
                "application/json",
                Bytes::from(body),
                &extra,
            )
            .await?;
            Ok(true)
        })
    }

    /// Ends a stream the client is reading with the one SSE error event (and the end of
    /// the body). Marks the request as failed mid-stream.
    pub(super) async fn end_stream_with(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        e: &GatewayError,
    ) -> Result<()> {
        ctx.outcome.mid_stream_error = true;
        let event = stream_error_event(e, ctx.anthropic_client());
        session.write_response_body(Some(event), true).await
    }
}
