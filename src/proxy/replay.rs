//! Answers from the cache's side: a stored answer replayed (as a stream or a whole
//! response, whichever the client asked for) and the answer of an identical request in
//! flight, followed as it arrives.

use bytes::{Bytes, BytesMut};
use pingora_error::Result;
use pingora_proxy::Session;
use switchyard_filters::convert;
use switchyard_filters::error::GatewayError;

use super::answers::{abandoned, BoxFuture};
use super::ctx::Ctx;
use super::Gateway;
use crate::cache::{Follower, Kind, Read};

impl Gateway {
    /// Streams SSE events to the client, one event per chunk, removing the usage-only
    /// event when the client did not ask for it.
    async fn write_events<'a>(
        session: &mut Session,
        ctx: &Ctx,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<()> {
        for ev in events {
            if !ctx.req.client_wants_usage {
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
    pub(super) fn replay<'a>(
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
        match (ctx.req.stream, kind) {
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
    pub(super) fn follow<'a>(
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
        if ctx.req.stream && started.1 {
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
}
