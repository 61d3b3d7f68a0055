//! The in-process `mock` provider: answers chat, completion and embedding requests inside
//! the gateway, streaming too, so the embedded default configuration works with no
//! backend at all. Requests on the Anthropic Messages surface get the same answer
//! translated (it speaks OpenAI, like any OpenAI-only backend).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use switchyard_filters::dialect::{openai_response_to_anthropic, A2OState, OpenAiSseToAnthropic};
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::error::GatewayError;
use switchyard_filters::usage::Usage;

use crate::mockgen::{self, StreamBuilder, StreamKind};
use crate::state::MockSpec;

/// What the built-in provider is asked.
pub struct MockRequest<'a> {
    /// Chat, completions or embeddings.
    pub endpoint: Endpoint,
    /// The request body.
    pub body: &'a [u8],
    /// The model name to report.
    pub model: &'a str,
    /// Streamed answer.
    pub stream: bool,
    /// The client asked for the usage chunk.
    pub include_usage: bool,
    /// The request id (used as the completion id).
    pub request_id: &'a str,
    /// Turns true when the shutdown grace period ends: a stream then ends with an error
    /// event.
    pub abandon: tokio::sync::watch::Receiver<bool>,
    /// The request came on `/v1/messages`: the answer goes out in Anthropic's shape.
    pub anthropic: Option<A2OState>,
}

/// Where the answer's body goes: to the client as it is, or through the translator.
struct Out<'s> {
    session: &'s mut Session,
    transcoder: Option<OpenAiSseToAnthropic>,
}

impl Out<'_> {
    async fn chunk(&mut self, bytes: Vec<u8>, end: bool) -> Result<()> {
        let Some(t) = self.transcoder.as_mut() else {
            return self
                .session
                .write_response_body(Some(Bytes::from(bytes)), end)
                .await;
        };
        let mut out = Vec::with_capacity(bytes.len() * 2);
        t.feed(&bytes, &mut out);
        if end {
            t.finish(&mut out);
        }
        self.session
            .write_response_body(Some(Bytes::from(out)), end)
            .await
    }
}

/// Writes the whole answer to `session`. Returns the usage reported.
pub async fn answer(
    session: &mut Session,
    spec: &MockSpec,
    mut req: MockRequest<'_>,
) -> Result<Usage> {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prompt = mockgen::estimate_prompt_tokens(req.body.len());
    let id = format!("chatcmpl-{}", req.request_id);

    if req.endpoint == Endpoint::Embeddings {
        let n = mockgen::embedding_inputs(req.body);
        let seed = req
            .body
            .iter()
            .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
        let doc = mockgen::embeddings(req.model, n, 16, seed, prompt);
        write_whole(
            session,
            req.request_id,
            "application/json",
            Bytes::from(doc),
        )
        .await?;
        return Ok(Usage {
            prompt_tokens: prompt,
            completion_tokens: 0,
            total_tokens: prompt,
        });
    }

    let text = if spec.reply == "echo" {
        let said = mockgen::last_user_text(req.body).unwrap_or_default();
        let said: String = said.chars().take(500).collect();
        if said.is_empty() {
            "Hello from Switchyard's built-in mock model.".to_string()
        } else {
            format!("Hello from Switchyard's built-in mock model. You said: {said}")
        }
    } else {
        spec.reply.clone()
    };
    let tokens = mockgen::split_tokens(&text);
    let completion = tokens.len() as u64;
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    };
    let kind = if matches!(req.endpoint, Endpoint::Chat | Endpoint::Messages) {
        StreamKind::Chat
    } else {
        StreamKind::Text
    };

    if !req.stream {
        let doc = match kind {
            StreamKind::Chat => {
                mockgen::chat_completion(&id, req.model, created, &text, prompt, completion)
            }
            StreamKind::Text => {
                mockgen::text_completion(&id, req.model, created, &text, prompt, completion)
            }
        };
        let doc = match &req.anthropic {
            Some(st) => match openai_response_to_anthropic(&doc, st) {
                Ok((d, _)) => d,
                Err(e) => e.anthropic_body(),
            },
            None => doc,
        };
        write_whole(
            session,
            req.request_id,
            "application/json",
            Bytes::from(doc),
        )
        .await?;
        return Ok(usage);
    }

    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", "text/event-stream")?;
    resp.insert_header("cache-control", "no-cache")?;
    resp.insert_header("x-request-id", req.request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    let anthropic = req.anthropic.is_some();
    // The translator needs the usage chunk; an Anthropic client always gets usage.
    let include_usage = req.include_usage || anthropic;
    let b = StreamBuilder {
        id: &id,
        model: req.model,
        created,
        kind,
        include_usage,
    };
    let mut out = Out {
        session,
        transcoder: req.anthropic.as_ref().map(OpenAiSseToAnthropic::new),
    };
    if let Some(r) = b.role_chunk() {
        out.chunk(r, false).await?;
    }
    for t in &tokens {
        if !spec.itl.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(spec.itl) => {}
                _ = crate::proxy::abandoned(&mut req.abandon) => {
                    let ev = crate::proxy::stream_error_event(&GatewayError::ShuttingDown, anthropic);
                    out.session.write_response_body(Some(ev), true).await?;
                    return Ok(usage);
                }
            }
        }
        out.chunk(b.token_chunk(t), false).await?;
    }
    let mut tail = b.finish_chunk();
    if include_usage {
        tail.extend_from_slice(&b.usage_chunk(prompt, completion));
    }
    tail.extend_from_slice(mockgen::SSE_DONE);
    out.chunk(tail, true).await?;
    Ok(usage)
}

async fn write_whole(
    session: &mut Session,
    request_id: &str,
    ctype: &str,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", ctype)?;
    resp.insert_header("content-length", body.len())?;
    resp.insert_header("x-request-id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
