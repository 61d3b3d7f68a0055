//! Reading the request body in full before routing, bounded by size and by pace, and
//! draining a small unread body so a connection can be reused after an early answer.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header;
use pingora_error::ErrorType;
use pingora_proxy::Session;
use switchyard_filters::error::GatewayError;

/// How long a request body may take: `base` plus its size at `min_rate` bytes per
/// second (the declared size, or for a chunked body what arrived so far plus one more
/// 64 KiB), so a body trickled in byte by byte cannot hold the connection. Each read
/// is also bounded by `read_timeout`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyPace {
    pub(super) start: Instant,
    pub(super) base: Duration,
    pub(super) min_rate: u64,
    pub(super) read_timeout: Duration,
}

impl BodyPace {
    fn allowed(&self, bytes: usize) -> Duration {
        let micros = (bytes as u64).saturating_mul(1_000_000) / self.min_rate.max(1);
        self.base + Duration::from_micros(micros)
    }
}

/// Reads the whole request body, bounded by `limit` and by `pace`.
pub(super) async fn read_body(
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
pub(super) async fn drain_small_body(session: &mut Session) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
