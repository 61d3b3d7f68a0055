//! `request_filter` as a fixed list of stages. Each either goes on (with what the next
//! stages need) or decides an [`Answer`]; the first answer stops the list.
//!
//! ```text
//! local endpoints  request id; method and path (405/404); /health, /v1/models answered
//! auth             the tenant (401) — before the body is read
//! body             read in full, bounded (413, 408)
//! head             the fields routing needs (400), the model (400, 403)
//! route            the candidates (404)
//! cache            cacheable? its key
//! admit            rate limits and the cache lookup, at most one store round trip (429)
//! candidates       none left: 503
//! cache hit        the stored answer
//! coalesce         lead the identical requests in flight, or follow one
//! in process       the built-in mock answers here
//! ```
//!
//! Whatever remains goes upstream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use compact_str::CompactString;
use http::header;
use pingora_proxy::Session;
use switchyard_filters::cachekey::{self, CachePolicy};
use switchyard_filters::dialect::{
    estimate_input_tokens, validate_anthropic_count_tokens, AnthropicRequest,
};
use switchyard_filters::endpoint::{classify, Endpoint, Unrouted};
use switchyard_filters::error::GatewayError;
use switchyard_filters::head::{HeadError, RequestHead};
use switchyard_filters::route::{Class, Hint, RouteError};

use super::answers::{models_list, Answer};
use super::body::{read_body, BodyPace};
use super::ctx::{CacheStatus, Ctx};
use super::failure::no_backend_detail;
use super::translate::speaks_messages;
use super::{Gateway, X_REQUEST_ID, X_ROUTE};
use crate::cache::{self, Role};
use crate::config::CacheScope;
use crate::metrics::CacheOutcome;
use crate::state::{Provider, Snapshot};
use crate::store::AdmitArgs;
use crate::tenancy::Tenant;

/// Whether `count_tokens` can go to this provider (it answers it itself).
fn counts_tokens(p: &Provider) -> bool {
    p.upstream.as_ref().is_some_and(speaks_messages)
}

/// A stage's outcome: go on with `T`, or answer.
pub(super) enum Step<T> {
    /// The next stage runs.
    Next(T),
    /// The request is answered here.
    Answer(Answer),
}

/// Unwraps a [`Step`], returning its answer from the enclosing function.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Step::Next(v) => v,
            Step::Answer(a) => return Some(a),
        }
    };
}

fn answer<T>(e: GatewayError) -> Step<T> {
    Step::Answer(Answer::Error(e))
}

impl Gateway {
    /// Runs the stages. `None`: the request goes upstream (its body is in `ctx`).
    pub(super) async fn stages(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Arc<Snapshot>,
    ) -> Option<Answer> {
        let endpoint = step!(self.local_endpoints(session, ctx, snap));
        let tenant = step!(self.auth(session, ctx).await);
        let body = step!(self.body(session, ctx, snap).await);
        let head = step!(self.head(ctx, endpoint, &body, &tenant));
        let resolved = step!(self.route(session, ctx, snap, &head));
        self.cache_policy(
            session, ctx, snap, endpoint, &head, &body, &tenant, resolved,
        );
        ctx.tenancy.reserved = head
            .max_output_tokens()
            .unwrap_or(self.hub.tenancy.default_max_tokens());
        drop(head);
        let cached = step!(self.admit(ctx, &tenant).await);
        ctx.routed = true;
        let Some(&first) = ctx.route.candidates.first() else {
            let e = GatewayError::NoBackend {
                model: ctx.req.model.to_string(),
                detail: no_backend_detail(snap, ctx),
            };
            return Some(Answer::Error(e));
        };
        if let Some((kind, entry)) = cached.as_ref().and_then(cache::decode) {
            return Some(Answer::Replay(kind, entry));
        }
        ctx.req.body = body;
        if let Some(follower) = self.coalesce(ctx) {
            return Some(Answer::Follow(follower));
        }
        let first_provider = &snap.providers[first as usize];
        if endpoint == Endpoint::CountTokens && !counts_tokens(first_provider) {
            return Some(Answer::Estimate(estimate_input_tokens(&ctx.req.body)));
        }
        if let Some(pool) = &first_provider.cli {
            return Some(Answer::Cli(first, pool.clone()));
        }
        first_provider
            .mock
            .clone()
            .map(|spec| Answer::Mock(first, spec))
    }

    /// The request id; the endpoint (405, 404); the endpoints answered here.
    fn local_endpoints(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Step<Endpoint> {
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
                return answer(GatewayError::MethodNotAllowed {
                    method: req.method.to_string(),
                    allowed,
                })
            }
            Err(Unrouted::Path) => {
                return answer(GatewayError::UnknownPath {
                    method: req.method.to_string(),
                    path: req.uri.path().chars().take(200).collect(),
                })
            }
        };
        ctx.endpoint = Some(endpoint);
        match endpoint {
            Endpoint::Health => {
                Step::Answer(Answer::Json(Bytes::from_static(b"{\"status\":\"ok\"}")))
            }
            Endpoint::Models => {
                let list = models_list(snap);
                let doc = crate::mockgen::model_list(
                    list.iter().map(|(m, o)| (m.as_str(), o.as_str())),
                    0,
                );
                Step::Answer(Answer::Json(Bytes::from(doc)))
            }
            Endpoint::Model => {
                let id = req.uri.path()["/v1/models/".len()..].trim_end_matches('/');
                let list = models_list(snap);
                match list.iter().find(|(m, _)| m == id) {
                    Some((m, o)) => {
                        let doc = serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": o});
                        Step::Answer(Answer::Json(Bytes::from(
                            serde_json::to_vec(&doc).unwrap_or_default(),
                        )))
                    }
                    None => answer(GatewayError::ModelNotFound(id.to_string())),
                }
            }
            Endpoint::Chat
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Messages
            | Endpoint::CountTokens => Step::Next(endpoint),
        }
    }

    /// The tenant. An unauthenticated request is refused before its body is read.
    async fn auth(&self, session: &Session, ctx: &mut Ctx) -> Step<Arc<Tenant>> {
        match self
            .hub
            .tenancy
            .authenticate(&session.req_header().headers)
            .await
        {
            Ok(t) => {
                ctx.tenancy.tenant = Some(t.clone());
                Step::Next(t)
            }
            Err(e) => {
                self.hub.metrics.auth_failures.inc();
                answer(e)
            }
        }
    }

    /// The whole body, bounded by size and pace.
    async fn body(&self, session: &mut Session, ctx: &mut Ctx, snap: &Snapshot) -> Step<Bytes> {
        let server = &self.hub.settings.server;
        let read_start = Instant::now();
        let pace = BodyPace {
            start: read_start,
            base: server.client_body_timeout,
            min_rate: server.client_body_min_rate,
            read_timeout: server.client_read_timeout,
        };
        let body = read_body(session, snap.max_body, pace).await;
        ctx.time.body_read = read_start.elapsed();
        match body {
            Ok(b) => Step::Next(b),
            Err(e) => answer(e),
        }
    }

    /// The fields routing needs; the model checked against the limits and the tenant.
    fn head<'b>(
        &self,
        ctx: &mut Ctx,
        endpoint: Endpoint,
        body: &'b Bytes,
        tenant: &Tenant,
    ) -> Step<RequestHead<'b>> {
        let head = match RequestHead::parse(body) {
            Ok(h) => h,
            Err(HeadError::Malformed(m)) => return answer(GatewayError::MalformedJson(m)),
            Err(HeadError::NotAnObject) => return answer(GatewayError::BodyNotObject),
            Err(HeadError::Duplicate(k)) => return answer(GatewayError::DuplicateKey(k)),
        };
        // The Messages API's own rules (`max_tokens` required, tool inputs objects, …),
        // before anything is forwarded, whichever way the request goes.
        let checked = match endpoint {
            Endpoint::Messages => AnthropicRequest::parse(body).map(|r| {
                ctx.req.anthropic = Some(r);
            }),
            Endpoint::CountTokens => validate_anthropic_count_tokens(body),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            return answer(GatewayError::Invalid {
                message: e.message,
                param: e.param,
                code: e.code,
            });
        }
        let Some(model) = head.model.as_deref().filter(|m| !m.is_empty()) else {
            return answer(GatewayError::MissingModel);
        };
        let max_model = self.hub.settings.server.max_model_name_bytes;
        if model.len() > max_model {
            return answer(GatewayError::ModelNameTooLong(max_model));
        }
        ctx.req.model = CompactString::from(model);
        ctx.req.stream =
            head.is_stream() && !matches!(endpoint, Endpoint::Embeddings | Endpoint::CountTokens);
        ctx.req.client_wants_usage = head.client_wants_usage();
        if !tenant.allows(model) {
            return answer(GatewayError::ModelNotAllowed(model.to_string()));
        }
        Step::Next(head)
    }

    /// The candidates for the model. Goes on with the name the model resolves to when
    /// the request may be cached (its cache key needs it).
    fn route(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        head: &RequestHead<'_>,
    ) -> Step<Option<String>> {
        let model = ctx.req.model.as_str();
        let hint = session
            .req_header()
            .headers
            .get(&X_ROUTE)
            .map_or(Hint::None, |v| Hint::parse(v.as_bytes()));
        let route = match snap.route.decide(model, hint, |i| snap.unavailable(i)) {
            Ok(r) => r,
            Err(RouteError::NotFound) => {
                return answer(GatewayError::ModelNotFound(model.to_string()))
            }
        };
        ctx.req.upstream_model = CompactString::from(route.upstream_model());
        ctx.route.candidates = route.candidates.clone();
        ctx.route.skipped = route.skipped.clone();
        let cacheable = self.hub.settings.cache.enabled && head.temperature == Some(0.0);
        Step::Next(cacheable.then(|| route.resolved.to_string()))
    }

    /// Whether the cache takes this request, and its key.
    #[allow(clippy::too_many_arguments)]
    fn cache_policy(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        endpoint: Endpoint,
        head: &RequestHead<'_>,
        body: &[u8],
        tenant: &Tenant,
        resolved: Option<String>,
    ) {
        let cache = &self.hub.settings.cache;
        let candidates = &ctx.route.candidates;
        let in_process = candidates
            .first()
            .is_some_and(|&i| snap.providers[i as usize].class == Class::InProcess);
        ctx.cache.policy = if cache.enabled && !in_process && !candidates.is_empty() {
            let cc = session.req_header().headers.get(header::CACHE_CONTROL);
            cachekey::policy(endpoint, head, cc.map(|v| v.as_bytes()))
        } else {
            CachePolicy::OFF
        };
        let (true, Some(mut resolved)) = (ctx.cache.policy.active(), resolved) else {
            return;
        };
        if endpoint.is_anthropic() {
            // A streamed and a whole Anthropic answer are kept apart (the replay of one
            // as the other is an OpenAI-only conversion).
            resolved.push_str(if ctx.req.stream { "#sse" } else { "#json" });
        }
        let scope = match cache.scope {
            CacheScope::Tenant => tenant.name.as_str(),
            CacheScope::Global => "global",
        };
        ctx.cache.key = cachekey::scoped_key(scope, endpoint, &resolved, body);
    }

    /// Rate limits and the cache lookup (at most one store round trip, usually none).
    /// Goes on with the stored answer, if there is one.
    async fn admit(&self, ctx: &mut Ctx, tenant: &Arc<Tenant>) -> Step<Option<Bytes>> {
        let lookup_key = ctx.cache.key.as_deref().filter(|_| ctx.cache.policy.lookup);
        let args = AdmitArgs {
            tenant: &tenant.name,
            requests: tenant.requests,
            tokens: tenant.tokens,
            token_cost: ctx.tenancy.reserved,
            cache_key: lookup_key,
        };
        let admitted = match self.hub.tenancy.admit(&args, tenant).await {
            Ok(a) => a,
            Err(e) => return answer(e),
        };
        ctx.tenancy.admission = Some(admitted.admission);
        ctx.tenancy.reserved = admitted.reserved;
        ctx.tenancy.fallback = admitted.fallback;
        if !admitted.admission.allowed {
            let limit = admitted.admission.refused_by.unwrap_or("requests");
            self.hub
                .metrics
                .rate_limited
                .with_label_values(&[limit])
                .inc();
            // Nothing was taken: nothing to settle.
            ctx.tenancy.reserved = 0;
            return answer(GatewayError::RateLimited {
                limit,
                retry_after_secs: admitted.admission.retry_after_ms.div_ceil(1000).max(1),
            });
        }
        if !self.hub.tenancy.store().is_up() && ctx.cache.policy.active() {
            // Redis is down: the cache is bypassed (a local flight still coalesces).
            self.hub.metrics.count_cache(CacheOutcome::Bypass);
        }
        Step::Next(admitted.cached)
    }

    /// Leads the flight of identical cacheable requests, or follows the one in flight.
    fn coalesce(&self, ctx: &mut Ctx) -> Option<cache::Follower> {
        let key = ctx
            .cache
            .key
            .as_deref()
            .filter(|_| ctx.cache.policy.active())?;
        match self
            .hub
            .coalescer
            .join(key, self.hub.settings.cache.max_entry_bytes)
        {
            Role::Leader(f) => {
                ctx.cache.flight = Some(f);
                ctx.cache.status = CacheStatus::Miss;
                self.hub.metrics.count_cache(CacheOutcome::Miss);
                None
            }
            Role::Follower(f) if ctx.cache.policy.lookup => Some(f),
            Role::Follower(_) => {
                ctx.cache.status = CacheStatus::Miss;
                None
            }
        }
    }
}
