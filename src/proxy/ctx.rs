//! Per-request state, grouped by the stage that fills it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use bytes::Bytes;
use compact_str::CompactString;
use http::HeaderValue;
use switchyard_filters::bucket::Admission;
use switchyard_filters::cachekey::CachePolicy;
use switchyard_filters::dialect::AnthropicRequest;
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::route::{Class, Skip, MAX_CANDIDATES};
use switchyard_filters::usage::{Usage, UsageChunkStripper};

use super::failure::Failure;
use super::translate::{Collect, Relay, Transcoder};
use crate::cache::Flight;
use crate::metrics::ProviderCounters;
use crate::state::Snapshot;
use crate::tenancy::Tenant;
use switchyard_filters::error::GatewayError;

/// Per-request state. A request finishes on the snapshot it started with.
pub struct Ctx {
    /// When the request's header was read.
    pub(super) start: Instant,
    /// The configuration this request runs on (set once, in `request_filter`).
    pub(super) snap: Option<Arc<Snapshot>>,
    /// The request got past admission to its candidates (it is counted in the metrics).
    pub(super) routed: bool,
    /// The client's `X-Request-Id` or a generated one.
    pub(super) request_id: HeaderValue,
    /// What the client asked for.
    pub(super) endpoint: Option<Endpoint>,
    /// The request as read and as sent.
    pub(super) req: Req,
    /// Candidates and attempts.
    pub(super) route: RouteState,
    /// When things happened.
    pub(super) time: Timing,
    /// What the response tap found.
    pub(super) tap: Tap,
    /// The tenant and its admission.
    pub(super) tenancy: TenantState,
    /// The response cache's part.
    pub(super) cache: CacheState,
    /// How the request ended.
    pub(super) outcome: Outcome,
}

/// The request as the client sent it and as it goes upstream.
#[derive(Default)]
pub(super) struct Req {
    /// The body as read.
    pub(super) body: Bytes,
    /// The body for the current candidate (model rewritten, usage asked for).
    pub(super) send_body: Bytes,
    /// The model the client named.
    pub(super) model: CompactString,
    /// The model name the upstream gets.
    pub(super) upstream_model: CompactString,
    /// A streamed answer.
    pub(super) stream: bool,
    /// The client asked for the usage chunk itself.
    pub(super) client_wants_usage: bool,
    /// The gateway asked the current candidate for the usage chunk.
    pub(super) inject_usage: bool,
    /// How the request goes to the current candidate.
    pub(super) relay: Relay,
    /// The endpoint the current candidate gets (differs when translating).
    pub(super) upstream_endpoint: Option<Endpoint>,
    /// A Messages body as validated, kept for a candidate that needs it translated so
    /// it is not parsed twice; dropped once a candidate takes it as it is.
    pub(super) anthropic: Option<AnthropicRequest>,
}

/// Candidates, attempts and why each one failed.
#[derive(Default)]
pub(super) struct RouteState {
    /// Provider indices to try, in order.
    pub(super) candidates: ArrayVec<u16, MAX_CANDIDATES>,
    /// Providers left out by routing, and why.
    pub(super) skipped: ArrayVec<(u16, Skip), MAX_CANDIDATES>,
    /// The next candidate to try.
    pub(super) next: usize,
    /// The candidate being tried.
    pub(super) current: Option<u16>,
    /// Upstream attempts so far.
    pub(super) attempts: u8,
    /// Candidates that failed, and how.
    pub(super) failures: ArrayVec<(u16, Failure), MAX_CANDIDATES>,
    /// The current candidate's in-flight counter (left in `logging`).
    pub(super) inflight: Option<Arc<ProviderCounters>>,
    /// The upstream answered a retryable status and another candidate is left.
    pub(super) fallback_pending: bool,
    /// Try the current candidate once more (the request could not be written).
    pub(super) same_again: bool,
    /// Why the next attempt sends the request again (counted when it starts).
    pub(super) pending_resend: Option<&'static str>,
    /// The smallest `Retry-After` of the candidates that answered 429.
    pub(super) retry_after: Option<u64>,
    /// The request cannot go to a candidate as it is: the answer.
    pub(super) refused: Option<GatewayError>,
    /// Candidates skipped for a used-up quota.
    pub(super) quota_failures: u8,
}

/// Timestamps of the request's life.
#[derive(Default)]
pub(super) struct Timing {
    /// Time spent reading the body (not the gateway's overhead).
    pub(super) body_read: Duration,
    /// Time inside the gateway before the request was handed on.
    pub(super) overhead: Option<Duration>,
    /// The request header went upstream.
    pub(super) upstream_sent: Option<Instant>,
    /// The upstream's response header arrived.
    pub(super) upstream_header: Option<Instant>,
    /// The first body chunk went to the client.
    pub(super) first_chunk: Option<Instant>,
    /// The last body chunk went to the client.
    pub(super) last_chunk: Option<Instant>,
}

/// What the response tap keeps.
#[derive(Default)]
pub(super) struct Tap {
    /// Look for usage in the response.
    pub(super) scan: bool,
    /// The last three upstream body chunks, to read usage from the end.
    pub(super) tail: [Option<Bytes>; 3],
    /// The usage found.
    pub(super) usage: Option<Usage>,
    /// Removes the usage-only event the client did not ask for.
    pub(super) strip: Option<UsageChunkStripper>,
    /// The response body ended.
    pub(super) complete: bool,
    /// Translates the stream for the client.
    pub(super) transcoder: Option<Transcoder>,
    /// Gathers a body that is translated whole.
    pub(super) collect: Option<Collect>,
    /// A native Anthropic stream's input-side usage (from `message_start`).
    pub(super) head_usage: Option<Usage>,
}

/// The tenant and what admission gave it.
#[derive(Default)]
pub(super) struct TenantState {
    /// Who sent the request.
    pub(super) tenant: Option<Arc<Tenant>>,
    /// The rate-limit decision (for the `x-ratelimit-*` headers).
    pub(super) admission: Option<Admission>,
    /// Tokens reserved, settled in `logging`.
    pub(super) reserved: u64,
    /// The reservation came from this replica's fallback buckets (store down).
    pub(super) fallback: bool,
}

/// The response cache's part of a request.
#[derive(Default)]
pub(super) struct CacheState {
    /// Lookup and store, or neither.
    pub(super) policy: CachePolicy,
    /// `{scope}:<hash>`, for cacheable requests.
    pub(super) key: Option<String>,
    /// What the cache did.
    pub(super) status: CacheStatus,
    /// The flight this request leads.
    pub(super) flight: Option<Arc<Flight>>,
}

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// Not cacheable, or the cache is off.
    #[default]
    Off,
    /// Looked up and not found: the answer came from upstream.
    Miss,
    /// Answered from a stored entry.
    Hit,
    /// Answered from an identical request in flight.
    Coalesced,
}

impl CacheStatus {
    /// The access log's and metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Miss => "miss",
            Self::Hit => "hit",
            Self::Coalesced => "coalesced",
        }
    }

    /// Whether the answer came without an upstream call of this request's own.
    pub fn answered_by_cache(self) -> bool {
        matches!(self, Self::Hit | Self::Coalesced)
    }
}

/// How the request ended.
#[derive(Default)]
pub(super) struct Outcome {
    /// The status sent (0: none).
    pub(super) status: u16,
    /// The code of an error the gateway answered itself.
    pub(super) gateway_error: Option<&'static str>,
    /// The response broke off after it started.
    pub(super) mid_stream_error: bool,
}

impl Ctx {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            snap: None,
            routed: false,
            request_id: HeaderValue::from_static(""),
            endpoint: None,
            req: Req::default(),
            route: RouteState::default(),
            time: Timing::default(),
            tap: Tap::default(),
            tenancy: TenantState::default(),
            cache: CacheState::default(),
            outcome: Outcome::default(),
        }
    }

    /// Whether a candidate after the current one can still be tried.
    pub(super) fn has_more(&self) -> bool {
        let Some(snap) = &self.snap else { return false };
        let r = &self.route;
        r.candidates[r.next.min(r.candidates.len())..]
            .iter()
            .any(|&i| snap.providers[i as usize].class != Class::InProcess)
    }

    /// The name of the candidate being tried.
    pub(super) fn provider_name(&self) -> Option<&str> {
        let snap = self.snap.as_ref()?;
        self.route
            .current
            .map(|i| snap.providers[i as usize].name.as_str())
    }

    /// Records that the current candidate failed.
    pub(super) fn record_failure(&mut self, why: Failure) {
        if let Some(i) = self.route.current {
            let _ = self.route.failures.try_push((i, why));
        }
    }

    /// Whether the client speaks the Anthropic Messages API (its errors are
    /// Anthropic-shaped).
    pub(super) fn anthropic_client(&self) -> bool {
        self.endpoint.is_some_and(Endpoint::is_anthropic)
    }

    /// Marks the hand-off: everything until now was the gateway's own time.
    pub(super) fn mark_overhead(&mut self) {
        self.time.overhead = Some(self.start.elapsed().saturating_sub(self.time.body_read));
    }
}
