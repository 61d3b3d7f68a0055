//! Answers from a CLI provider's process pool: the conversation goes to a warm process
//! as one user line; the Anthropic events it prints (or, without partial messages, its
//! whole assistant messages) become the client's answer in the client's dialect,
//! streamed as they arrive or whole.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;
use switchyard_filters::convert;
use switchyard_filters::dialect::{
    openai_response_to_anthropic, A2OState, AnthropicSseToOpenAi, O2AState,
};
use switchyard_filters::error::GatewayError;

use super::ctx::Ctx;
use super::Gateway;
use crate::providers::cli::frames::{self, Line};
use crate::providers::cli::{CliError, CliPool, Lease};

/// Where a turn's Anthropic events go.
struct Sink {
    /// The client gets a stream (else the answer is gathered and sent whole).
    stream: bool,
    /// The client speaks OpenAI: events are translated.
    to_openai: Option<AnthropicSseToOpenAi>,
    /// What was gathered for a whole answer (OpenAI chunks, translated).
    whole: Vec<u8>,
    /// The response header went out.
    started: bool,
}

impl Gateway {
    /// Answers from `pool` (candidate `index`).
    pub(super) async fn answer_cli(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        index: u16,
        pool: Arc<CliPool>,
    ) -> Result<()> {
        let Some(snap) = ctx.snap.clone() else {
            return Ok(());
        };
        Self::enter_provider(ctx, &snap, index);
        ctx.route.attempts = 1;
        ctx.route.next = 1;
        let Some(frame) = frames::user_frame(&ctx.req.body) else {
            let e = GatewayError::Invalid {
                message: "the request has no messages to send".into(),
                param: Some("messages".into()),
                code: "invalid_request_error",
            };
            self.respond_error(session, ctx, &e).await?;
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + pool.settings().request_timeout;
        // A process that dies before any byte reached the client gets one more try on
        // another.
        for attempt in 0..2 {
            let lease = match pool.acquire(deadline).await {
                Ok(l) => l,
                Err(e) => {
                    let e = GatewayError::NoBackend {
                        model: ctx.req.model.to_string(),
                        detail: format!("{} failed ({e})", pool.name()),
                    };
                    self.respond_error(session, ctx, &e).await?;
                    return Ok(());
                }
            };
            let mut sink = Sink {
                stream: ctx.req.stream,
                to_openai: (!ctx.anthropic_client()).then(|| {
                    let mut st = O2AState::new(&ctx.req.upstream_model, now_secs());
                    st.stream = true;
                    st.include_usage = ctx.req.client_wants_usage || !ctx.req.stream;
                    AnthropicSseToOpenAi::new(&st)
                }),
                whole: Vec::new(),
                started: false,
            };
            match self
                .cli_turn(session, ctx, &lease, &frame, deadline, &mut sink)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    lease.broken();
                    if sink.started {
                        let ge = GatewayError::Upstream(e.to_string());
                        self.end_stream_with(session, ctx, &ge).await?;
                        return Ok(());
                    }
                    if attempt == 1 || e == CliError::Timeout {
                        let ge = match e {
                            CliError::Timeout => {
                                GatewayError::UpstreamTimeout(pool.name().to_string())
                            }
                            e => GatewayError::Upstream(e.to_string()),
                        };
                        self.respond_error(session, ctx, &ge).await?;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// One turn: the user line out, the answer's lines in until the `result`.
    async fn cli_turn(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        lease: &Lease,
        frame: &[u8],
        deadline: tokio::time::Instant,
        sink: &mut Sink,
    ) -> std::result::Result<(), CliError> {
        lease.send(frame).await?;
        let id = format!("msg_{}", ctx.request_id.to_str().unwrap_or("0"));
        let model = ctx.req.upstream_model.to_string();
        let mut saw_events = false;
        let mut blocks = 0usize;
        loop {
            let line = lease.next_line(deadline).await?;
            match frames::parse_line(line.as_bytes()) {
                Line::Event(f) => {
                    saw_events = true;
                    self.emit(session, ctx, sink, &f).await?;
                }
                Line::Assistant(text) if !saw_events => {
                    // Without partial messages the answer comes whole, message by message.
                    let mut f = Vec::new();
                    if blocks == 0 {
                        f.extend(frames::message_start(&id, &model));
                    }
                    f.extend(frames::text_block(blocks, &text));
                    blocks += 1;
                    self.emit(session, ctx, sink, &f).await?;
                }
                Line::Result {
                    is_error,
                    text,
                    stop_reason,
                    usage,
                } => {
                    if is_error {
                        log::warn!("cli provider answered an error: {}", clip(&text));
                        return Err(CliError::Died);
                    }
                    if !saw_events {
                        let mut f = Vec::new();
                        if blocks == 0 {
                            f.extend(frames::message_start(&id, &model));
                        }
                        f.extend(frames::message_end(stop_reason.as_deref(), &usage));
                        self.emit(session, ctx, sink, &f).await?;
                    }
                    self.end(session, ctx, sink, &id).await?;
                    return Ok(());
                }
                Line::Garbage => return Err(CliError::Protocol),
                Line::Assistant(_) | Line::Other => {}
            }
        }
    }

    /// Passes Anthropic event frames on to the client (translated for OpenAI clients).
    async fn emit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        sink: &mut Sink,
        frames: &[u8],
    ) -> std::result::Result<(), CliError> {
        let bytes = match sink.to_openai.as_mut() {
            Some(t) => {
                let mut out = Vec::new();
                t.feed(frames, &mut out);
                out
            }
            None => frames.to_vec(),
        };
        if !sink.stream {
            sink.whole.extend_from_slice(&bytes);
            return Ok(());
        }
        if !sink.started {
            let resp = self
                .local_header(session, ctx, 200, "text/event-stream", None)
                .map_err(|_| CliError::Died)?;
            session
                .write_response_header(Box::new(resp), false)
                .await
                .map_err(|_| CliError::Died)?;
            sink.started = true;
        }
        if ctx.time.first_chunk.is_none() {
            ctx.time.first_chunk = Some(std::time::Instant::now());
        }
        if !bytes.is_empty() {
            session
                .write_response_body(Some(Bytes::from(bytes)), false)
                .await
                .map_err(|_| CliError::Died)?;
        }
        Ok(())
    }

    /// The end of the answer: the stream's end, or the whole answer.
    async fn end(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        sink: &mut Sink,
        id: &str,
    ) -> std::result::Result<(), CliError> {
        let mut tail = Vec::new();
        if let Some(t) = sink.to_openai.as_mut() {
            t.finish(&mut tail);
            ctx.tap.usage = t.usage();
        }
        ctx.tap.complete = true;
        ctx.time.last_chunk = Some(std::time::Instant::now());
        if sink.stream {
            session
                .write_response_body(Some(Bytes::from(tail)), true)
                .await
                .map_err(|_| CliError::Died)?;
            return Ok(());
        }
        sink.whole.extend_from_slice(&tail);
        let whole = if ctx.anthropic_client() {
            // Anthropic events are gathered through the OpenAI shape: one assembler.
            let mut st = O2AState::new(&ctx.req.upstream_model, now_secs());
            st.stream = true;
            st.include_usage = true;
            let mut t = AnthropicSseToOpenAi::new(&st);
            let mut oai = Vec::new();
            t.feed(&sink.whole, &mut oai);
            t.finish(&mut oai);
            ctx.tap.usage = t.usage();
            let json = convert::sse_to_json(&oai).unwrap_or_default();
            let a = A2OState::new(&ctx.req.upstream_model, id);
            openai_response_to_anthropic(&json, &a)
                .map(|(b, _)| b)
                .unwrap_or_default()
        } else {
            convert::sse_to_json(&sink.whole).unwrap_or_default()
        };
        self.respond(
            session,
            ctx,
            200,
            "application/json",
            Bytes::from(whole),
            &[],
        )
        .await
        .map_err(|_| CliError::Died)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    switchyard_filters::error::clip(s, 200)
}
