//! What happens when an upstream fails: which failures move on to the next candidate,
//! which are never sent again, and the one answer a client gets when nothing is left
//! (before the response started) or the one SSE error event that ends it (after).

use bytes::Bytes;
use http::header;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, Session};
use switchyard_filters::error::{clip, GatewayError, ECHO_LIMIT};
use switchyard_filters::route::{Class, Skip};

use super::ctx::Ctx;
use super::translate::stream_error_event;
use super::Gateway;
use crate::state::Snapshot;

/// Why a candidate failed. Its message goes into the 503 that lists every attempt; its
/// label is bounded for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No TCP (or TLS) connection within the connect timeout.
    ConnectTimeout,
    /// The upstream refused the connection.
    ConnectionRefused,
    /// The TLS handshake failed (or the certificate is invalid).
    TlsHandshake,
    /// Any other connect failure.
    ConnectFailed,
    /// The upstream's host name does not resolve.
    HostUnresolved,
    /// The upstream answered 5xx.
    Status5xx,
    /// The upstream answered 429.
    Status429,
    /// The upstream went silent past the read timeout.
    Timeout,
    /// The connection broke before the answer started.
    ConnectionError,
    /// The provider's daily quota is used up.
    QuotaExhausted,
    /// The quota state (Redis) could not be read.
    QuotaUnavailable,
    /// The provider has no form of this endpoint (embeddings from Anthropic, say).
    Unsupported,
}

impl Failure {
    /// The human-readable reason, as listed in a 503.
    pub fn message(self) -> &'static str {
        match self {
            Self::ConnectTimeout => "connect timeout",
            Self::ConnectionRefused => "connection refused",
            Self::TlsHandshake => "tls handshake failed",
            Self::ConnectFailed => "connect failed",
            Self::HostUnresolved => "host does not resolve",
            Self::Status5xx => "status 5xx",
            Self::Status429 => "status 429",
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection error",
            Self::QuotaExhausted => "daily quota exhausted",
            Self::QuotaUnavailable => "quota state unavailable",
            Self::Unsupported => "does not serve this endpoint",
        }
    }

    /// A bounded label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::TlsHandshake => "tls_handshake",
            Self::ConnectFailed => "connect_failed",
            Self::HostUnresolved => "host_unresolved",
            Self::Status5xx => "status_5xx",
            Self::Status429 => "status_429",
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection_error",
            Self::QuotaExhausted => "quota_exhausted",
            Self::QuotaUnavailable => "quota_unavailable",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A response's `Retry-After` in whole seconds (the delay form; a date counts as 1 s).
pub(super) fn retry_after_secs(resp: &ResponseHeader) -> Option<u64> {
    let v = resp.headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(s.ceil() as u64),
        Ok(_) => None,
        Err(_) => Some(1),
    }
}

/// Every candidate and what became of it, for the 503 a client gets.
pub(super) fn no_backend_detail(snap: &Snapshot, ctx: &Ctx) -> String {
    let r = &ctx.route;
    let mut parts: Vec<String> = Vec::new();
    for (i, why) in &r.failures {
        parts.push(format!(
            "{} failed ({})",
            snap.providers[*i as usize].name,
            why.message()
        ));
    }
    for (i, skip) in &r.skipped {
        let name = &snap.providers[*i as usize].name;
        parts.push(match skip {
            Skip::Strategy(s) => format!("{name} skipped (strategy {})", s.as_str()),
            Skip::Unavailable(why) => format!("{name} skipped ({why})"),
        });
    }
    for &i in &r.candidates[r.next.min(r.candidates.len())..] {
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

impl Gateway {
    fn count_upstream_error(&self, ctx: &Ctx, kind: &str) {
        if let Some(p) = ctx.provider_name() {
            self.hub
                .metrics
                .upstream_errors
                .with_label_values(&[p, kind])
                .inc();
        }
    }

    /// An upstream answered `status` before anything reached the client: a 5xx or 429
    /// moves on to the next candidate. When it was the last one and others failed
    /// before it, the client gets the gateway's answer listing every attempt; a lone
    /// candidate's own error response is passed through as it is. `Err` stops this
    /// attempt.
    pub(super) fn on_upstream_status(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora_error::Result<()> {
        let status = resp.status.as_u16();
        let retryable = status >= 500 || status == 429;
        let another_or_others = ctx.has_more() || !ctx.route.failures.is_empty();
        if !retryable || session.response_written().is_some() || !another_or_others {
            return Ok(());
        }
        let why = if status == 429 {
            if let Some(secs) = retry_after_secs(resp) {
                let r = &mut ctx.route.retry_after;
                *r = Some(r.map_or(secs, |r| r.min(secs)));
            }
            Failure::Status429
        } else {
            Failure::Status5xx
        };
        ctx.record_failure(why);
        self.count_upstream_error(ctx, "status");
        let more = ctx.has_more();
        ctx.route.fallback_pending = more;
        if more {
            ctx.route.pending_resend = Some("status");
        }
        let mut e = Error::explain(
            ErrorType::HTTPStatus(status),
            "upstream error status; trying the next candidate",
        );
        e.set_retry(more);
        Err(e)
    }

    /// No connection to the candidate: the request never left, so the next candidate
    /// may take it.
    pub(super) fn on_connect_failure(&self, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        let why = match e.etype() {
            ErrorType::ConnectTimedout => Failure::ConnectTimeout,
            ErrorType::ConnectRefused => Failure::ConnectionRefused,
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => Failure::TlsHandshake,
            _ => Failure::ConnectFailed,
        };
        ctx.record_failure(why);
        self.count_upstream_error(ctx, "connect");
        e.set_retry(ctx.has_more());
        e
    }

    /// The attempt failed after its connection was made. Decides whether another
    /// attempt may follow.
    pub(super) fn on_proxy_error(
        &self,
        session: &Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut ctx.route.fallback_pending) {
            e.set_retry(true);
            return e;
        }
        if matches!(e.etype(), ErrorType::HTTPStatus(_)) {
            // Raised by on_upstream_status for the last candidate.
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
            && ctx.time.upstream_header.is_none()
            && ctx.route.attempts < 3
        {
            ctx.route.same_again = true;
            ctx.route.pending_resend = Some("stale_connection");
            e.set_retry(true);
            return e;
        }
        let (why, reason) = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => (Failure::Timeout, "timeout"),
            _ => (Failure::ConnectionError, "transport"),
        };
        ctx.record_failure(why);
        self.count_upstream_error(ctx, "transport");
        let more = ctx.has_more();
        if more {
            ctx.route.pending_resend = Some(reason);
        }
        e.set_retry(more);
        e
    }

    /// The request failed for good: answers the client (before the response started) or
    /// ends its stream with an error event (after), and counts why.
    pub(super) async fn fail(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
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
            let Some(gerr) = self.failure_error(e, ctx) else {
                // The client went away: nobody to answer.
                ctx.outcome.status = 0;
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            };
            let status = gerr.status();
            // Decide before writing, so that the answer's `Connection` header tells the
            // truth about what happens to the connection next.
            let reuse = session.is_body_done()
                && !self
                    .hub
                    .shutting_down
                    .load(std::sync::atomic::Ordering::Relaxed);
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
        ctx.outcome.mid_stream_error = true;
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
            if !ctx.tap.complete {
                self.hub
                    .metrics
                    .upstream_cancelled
                    .with_label_values(&[reason])
                    .inc();
            }
        } else {
            self.count_upstream_error(ctx, if abandoned { "shutdown" } else { "mid_stream" });
        }
        if ctx.req.stream && !downstream {
            let gerr = if abandoned {
                GatewayError::ShuttingDown
            } else {
                GatewayError::Upstream(format!(
                    "the stream from {} ended early ({})",
                    ctx.provider_name().unwrap_or("upstream"),
                    e.etype().as_str()
                ))
            };
            // A translated stream ends the way its translator ends a cut stream (an
            // error frame in the client's dialect, no end marker).
            let frame = match ctx.tap.transcoder.as_mut() {
                Some(t) if !abandoned => {
                    let mut out = Vec::new();
                    t.finish(&mut out);
                    Bytes::from(out)
                }
                _ => stream_error_event(&gerr, ctx.anthropic_client()),
            };
            let _ = session.write_response_body(Some(frame), true).await;
        }
        FailToProxy {
            error_code: ctx.outcome.status,
            can_reuse_downstream: false,
        }
    }

    /// The error answered for a request that failed before its response started;
    /// `None` when the client is the one that failed.
    fn failure_error(&self, e: &Error, ctx: &Ctx) -> Option<GatewayError> {
        let snap = ctx.snap.as_ref();
        let failures = &ctx.route.failures;
        let only = |w: Failure| !failures.is_empty() && failures.iter().all(|(_, f)| *f == w);
        if let Some(refused) = &ctx.route.refused {
            return Some(refused.clone());
        }
        Some(match (e.etype(), snap) {
            (t, _) if *t == pingora_proxy::ABANDONED => GatewayError::ShuttingDown,
            (_, Some(snap)) if ctx.route.quota_failures > 0 && only(Failure::QuotaExhausted) => {
                GatewayError::QuotaExhausted(format!(
                    "every provider for model `{}` is out of its daily quota ({})",
                    clip(&ctx.req.model, ECHO_LIMIT),
                    no_backend_detail(snap, ctx)
                ))
            }
            (_, Some(snap)) if only(Failure::Status429) => GatewayError::UpstreamRateLimited {
                retry_after_secs: ctx.route.retry_after,
                detail: no_backend_detail(snap, ctx),
            },
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, _) if failures.len() <= 1 => {
                GatewayError::UpstreamTimeout(ctx.provider_name().unwrap_or("upstream").to_string())
            }
            (_, Some(snap)) if ctx.route.attempts > 0 || !failures.is_empty() => {
                GatewayError::NoBackend {
                    model: ctx.req.model.to_string(),
                    detail: no_backend_detail(snap, ctx),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn failures_have_distinct_labels_and_the_503_messages() {
        let all = [
            Failure::ConnectTimeout,
            Failure::ConnectionRefused,
            Failure::TlsHandshake,
            Failure::ConnectFailed,
            Failure::HostUnresolved,
            Failure::Status5xx,
            Failure::Status429,
            Failure::Timeout,
            Failure::ConnectionError,
            Failure::QuotaExhausted,
            Failure::QuotaUnavailable,
            Failure::Unsupported,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|f| f.label()).collect();
        assert_eq!(labels.len(), all.len());
        assert_eq!(Failure::ConnectionRefused.message(), "connection refused");
        assert_eq!(Failure::Status5xx.message(), "status 5xx");
    }
}
