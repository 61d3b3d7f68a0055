//! Where the client's dialect and the upstream's differ: which way a request goes to
//! each candidate ([`Relay`]), its body for that candidate, and the answer translated
//! back on its way out. The mappings themselves are pure, in
//! `switchyard_filters::dialect`; this file only holds them to a request.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use pingora_http::{RequestHeader, ResponseHeader};
use switchyard_filters::dialect::{
    anthropic_error_to_openai, anthropic_request_to_openai, anthropic_response_to_openai,
    openai_error_to_anthropic, openai_request_to_anthropic, openai_response_to_anthropic, A2OState,
    AnthropicSseToOpenAi, AnthropicToOpenAi, Backend, O2AState, OpenAiSseToAnthropic,
    OpenAiToAnthropic, StreamEnd, TranslateError,
};
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::error::GatewayError;
use switchyard_filters::rewrite::{rewrite_body, Rewrite};
use switchyard_filters::usage::Usage;

use super::ctx::Ctx;
use crate::providers::http::{Upstream, ANTHROPIC_VERSION};
use crate::providers::presets::{MessagesMode, Wire};
use crate::state::Provider;

static ANTHROPIC_VERSION_H: HeaderName = HeaderName::from_static("anthropic-version");
static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// `max_tokens` sent to an Anthropic upstream when an OpenAI client gave none
/// (Anthropic requires it).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;

/// How a request goes to the current candidate.
#[derive(Default)]
pub(super) enum Relay {
    /// The upstream speaks the client's dialect: bytes pass (the model rewritten).
    #[default]
    Pass,
    /// Client on OpenAI chat, upstream on Anthropic Messages.
    ToAnthropic(Box<O2AState>),
    /// Client on Anthropic Messages, upstream on OpenAI chat.
    ToOpenAi(Box<A2OState>),
}

impl Relay {
    /// A bounded label for logs and metrics.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::ToAnthropic(_) => "openai_to_anthropic",
            Self::ToOpenAi(_) => "anthropic_to_openai",
        }
    }
}

/// What the current candidate gets.
pub(super) enum Plan {
    /// Send `body` to `endpoint`, relayed so.
    Go {
        relay: Relay,
        endpoint: Endpoint,
        body: Bytes,
    },
    /// This candidate cannot serve the request at all; try the next.
    Skip,
    /// The request cannot be translated for this candidate: a 400.
    Refuse(GatewayError),
}

fn refuse(e: TranslateError) -> Plan {
    Plan::Refuse(GatewayError::Invalid {
        message: e.message,
        param: e.param,
        code: e.code,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The flavour of an OpenAI-compatible provider, from its kind.
fn backend(kind: &str) -> Backend {
    match kind {
        "openai" => Backend::OpenAi,
        "vllm" => Backend::Vllm,
        "llamacpp" => Backend::LlamaCpp,
        "ollama" => Backend::Ollama,
        _ => Backend::Generic,
    }
}

/// Whether a provider answers `/v1/messages` (and `count_tokens`) itself.
pub(super) fn speaks_messages(up: &Upstream) -> bool {
    up.wire == Wire::Anthropic || up.messages == MessagesMode::Native
}

/// The body and the way for candidate `p`.
pub(super) fn plan(ctx: &Ctx, p: &Provider, up: &Upstream) -> Plan {
    let Some(client) = ctx.endpoint else {
        return Plan::Skip;
    };
    let r = &ctx.req;
    let model_changes = r.upstream_model != r.model;
    let rewrite = |rw: Rewrite<'_>| match rewrite_body(&r.body, rw) {
        Some(v) => Bytes::from(v),
        None => r.body.clone(),
    };
    match (client, up.wire) {
        (Endpoint::Messages | Endpoint::CountTokens, _) if speaks_messages(up) => Plan::Go {
            relay: Relay::Pass,
            endpoint: client,
            body: rewrite(Rewrite {
                model: model_changes.then_some(r.upstream_model.as_str()),
                include_usage: false,
                drop: &[],
            }),
        },
        (Endpoint::Messages, Wire::OpenAi) => {
            let opts = AnthropicToOpenAi {
                backend: backend(p.kind),
                created: now_secs(),
                message_id: format!("msg_{}", ctx.request_id.to_str().unwrap_or("0")),
                thinking_signature: format!("sig_{}", ctx.request_id.to_str().unwrap_or("0")),
                ..AnthropicToOpenAi::default()
            };
            let translated = match &r.anthropic {
                Some(checked) => checked.to_openai(&r.upstream_model, &opts),
                None => anthropic_request_to_openai(&r.body, &r.upstream_model, &opts),
            };
            match translated {
                Ok((body, st)) => Plan::Go {
                    relay: Relay::ToOpenAi(Box::new(st)),
                    endpoint: Endpoint::Chat,
                    body: Bytes::from(body),
                },
                Err(e) => refuse(e),
            }
        }
        (Endpoint::Chat, Wire::Anthropic) => {
            let opts = OpenAiToAnthropic {
                default_max_tokens: DEFAULT_ANTHROPIC_MAX_TOKENS,
                created: now_secs(),
                ..OpenAiToAnthropic::default()
            };
            match openai_request_to_anthropic(&r.body, &r.upstream_model, &opts) {
                Ok((body, st)) => Plan::Go {
                    relay: Relay::ToAnthropic(Box::new(st)),
                    endpoint: Endpoint::Messages,
                    body: Bytes::from(body),
                },
                Err(e) => refuse(e),
            }
        }
        // Completions and embeddings have no Anthropic form; count_tokens goes only to
        // providers that have it (the others are answered with an estimate).
        (_, Wire::Anthropic) | (Endpoint::CountTokens, _) => Plan::Skip,
        (_, Wire::OpenAi) => Plan::Go {
            relay: Relay::Pass,
            endpoint: client,
            body: rewrite(Rewrite {
                model: model_changes.then_some(r.upstream_model.as_str()),
                include_usage: r.inject_usage,
                drop: up.drop_params,
            }),
        },
    }
}

/// The Anthropic headers of the upstream request: on the Messages surface the client's
/// `anthropic-version` and `anthropic-beta` go on unchanged (the default version when
/// it sent none); a translated request carries the version its body was written for,
/// and to an OpenAI upstream neither.
pub(super) fn anthropic_headers(req: &mut RequestHeader, ctx: &Ctx, up: &Upstream) {
    match &ctx.req.relay {
        Relay::ToAnthropic(_) => {
            req.remove_header(&ANTHROPIC_BETA);
            req.insert_parsed_header(
                &ANTHROPIC_VERSION_H,
                "anthropic-version",
                http::HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
        Relay::ToOpenAi(_) => {
            req.remove_header(&ANTHROPIC_BETA);
            req.remove_header(&ANTHROPIC_VERSION_H);
        }
        Relay::Pass => {
            if up.wire == Wire::Anthropic && !req.headers.contains_key(&ANTHROPIC_VERSION_H) {
                req.insert_parsed_header(
                    &ANTHROPIC_VERSION_H,
                    "anthropic-version",
                    http::HeaderValue::from_static(ANTHROPIC_VERSION),
                );
            }
        }
    }
}

/// Translates a stream as it passes.
pub(super) enum Transcoder {
    /// Anthropic events in, OpenAI chunks out.
    ToOpenAi(AnthropicSseToOpenAi),
    /// OpenAI chunks in, Anthropic events out.
    ToAnthropic(OpenAiSseToAnthropic),
}

impl Transcoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match self {
            Self::ToOpenAi(t) => t.feed(chunk, out),
            Self::ToAnthropic(t) => t.feed(chunk, out),
        }
    }

    /// Ends the output: the end marker, or an error frame when the upstream broke off.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> StreamEnd {
        match self {
            Self::ToOpenAi(t) => t.finish(out),
            Self::ToAnthropic(t) => t.finish(out),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Self::ToOpenAi(t) => t.usage(),
            Self::ToAnthropic(t) => t.usage(),
        }
    }
}

/// A whole body translated at its end: a response, or an upstream's error.
pub(super) struct Collect {
    buf: BytesMut,
    /// The upstream's status when it is an error body.
    error: Option<u16>,
}

/// The upstream's response header, for a translated request: status (errors mapped to
/// the client's dialect), headers for a body whose length changes, and the translator
/// for the body that follows.
pub(super) fn on_header(resp: &mut ResponseHeader, ctx: &mut Ctx) {
    let status = resp.status.as_u16();
    let sse = resp
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let tap = &mut ctx.tap;
    match (&ctx.req.relay, (200..300).contains(&status)) {
        (Relay::Pass, _) => return,
        (Relay::ToOpenAi(st), true) if sse => {
            tap.transcoder = Some(Transcoder::ToAnthropic(OpenAiSseToAnthropic::new(st)))
        }
        (Relay::ToAnthropic(st), true) if sse => {
            tap.transcoder = Some(Transcoder::ToOpenAi(AnthropicSseToOpenAi::new(st)))
        }
        (_, ok) => {
            tap.collect = Some(Collect {
                buf: BytesMut::new(),
                error: (!ok).then_some(status),
            });
            if !ok {
                let mapped = match &ctx.req.relay {
                    Relay::ToAnthropic(_) => anthropic_error_to_openai(status, b"").0,
                    _ => openai_error_to_anthropic(status, b"").0,
                };
                let _ = resp.set_status(mapped);
                // The upstream's phrase belonged to its status (and 529 has none).
                let _ = resp.set_reason_phrase(None);
                ctx.outcome.status = mapped;
            }
            let _ = resp.insert_header(header::CONTENT_TYPE, "application/json");
        }
    }
    resp.remove_header(&header::CONTENT_LENGTH);
    let _ = resp.insert_header(header::TRANSFER_ENCODING, "chunked");
}

/// Translates one body chunk for the client. Returns `false` when the request is not
/// translated (the chunk passes as it is).
pub(super) fn on_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> bool {
    let tap = &mut ctx.tap;
    if let Some(t) = tap.transcoder.as_mut() {
        let mut out = Vec::new();
        if let Some(b) = body.as_ref() {
            t.feed(b, &mut out);
        }
        if end_of_stream {
            if t.finish(&mut out) != StreamEnd::Complete {
                ctx.outcome.mid_stream_error = true;
            }
            tap.usage = t.usage();
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
        return true;
    }
    let Some(c) = tap.collect.as_mut() else {
        return false;
    };
    if let Some(b) = body.take() {
        c.buf.extend_from_slice(&b);
    }
    if !end_of_stream {
        return true;
    }
    let whole = std::mem::take(&mut c.buf);
    let out = match (&ctx.req.relay, c.error) {
        (Relay::ToAnthropic(_), Some(s)) => anthropic_error_to_openai(s, &whole).1,
        (Relay::ToOpenAi(_), Some(s)) => openai_error_to_anthropic(s, &whole).1,
        (Relay::ToAnthropic(st), None) => match anthropic_response_to_openai(&whole, st) {
            Ok((b, u)) => {
                tap.usage = Some(u);
                b
            }
            Err(e) => {
                ctx.outcome.mid_stream_error = true;
                e.openai_body()
            }
        },
        (Relay::ToOpenAi(st), None) => match openai_response_to_anthropic(&whole, st) {
            Ok((b, u)) => {
                tap.usage = Some(u);
                b
            }
            Err(e) => {
                ctx.outcome.mid_stream_error = true;
                e.anthropic_body()
            }
        },
        (Relay::Pass, _) => whole.to_vec(),
    };
    *body = Some(Bytes::from(out));
    true
}

/// The SSE event that ends a stream in error, in the client's dialect: `data: {"error":…}`
/// for OpenAI clients, `event: error` with an Anthropic error for Anthropic ones.
pub(crate) fn stream_error_event(e: &GatewayError, anthropic: bool) -> Bytes {
    let mut ev = Vec::with_capacity(256);
    if anthropic {
        ev.extend_from_slice(b"event: error\ndata: ");
        ev.extend_from_slice(&e.anthropic_body());
    } else {
        ev.extend_from_slice(b"data: ");
        ev.extend_from_slice(&e.body());
    }
    ev.extend_from_slice(b"\n\n");
    Bytes::from(ev)
}
