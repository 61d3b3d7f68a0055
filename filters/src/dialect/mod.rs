//! OpenAI Chat Completions ⇄ Anthropic Messages translation, both directions: requests,
//! non-streamed responses, incremental stream transcoders and error bodies. Pure: no I/O,
//! no clock, no randomness — `created`, message ids and thinking signatures come from the
//! caller. Bodies are parsed once into `serde_json::Value`; streams are transcoded event
//! by event as bytes arrive.
//!
//! # Client on `/v1/chat/completions`, upstream Anthropic
//!
//! ```text
//! openai_request_to_anthropic(body, model, &opts) -> (anthropic body, O2AState)
//!   200 JSON:  anthropic_response_to_openai(body, &state) -> (openai body, Usage)
//!   200 SSE:   AnthropicSseToOpenAi::new(&state); feed(bytes, out)…; finish(out)
//!   error:     anthropic_error_to_openai(status, body) -> (status, body)
//! ```
//!
//! # Client on `/v1/messages`, upstream OpenAI-compatible
//!
//! ```text
//! anthropic_request_to_openai(body, model, &opts) -> (openai body, A2OState)
//!   200 JSON:  openai_response_to_anthropic(body, &state) -> (anthropic body, Usage)
//!   200 SSE:   OpenAiSseToAnthropic::new(&state); feed(bytes, out)…; finish(out)
//!   error:     openai_error_to_anthropic(status, body) -> (status, body)
//! ```
//!
//! A native passthrough to an Anthropic-speaking upstream translates nothing, but should
//! still run [`validate_anthropic_request`] (or [`validate_anthropic_count_tokens`]).
//!
//! # Stream contract
//!
//! `feed` may be given any split of the upstream body (one byte at a time included) and
//! writes the same bytes as for the whole body: every complete upstream event is
//! translated at once, and only an incomplete event is held. `finish` is called at the
//! upstream's end of body and says how the output ended ([`StreamEnd`]): on an upstream
//! error or a truncated upstream, an error frame in the client's dialect stands where the
//! end marker (`[DONE]` / `message_stop`) would be, so a cut answer never looks complete.
//!
//! # Choices where the reference leaves the behaviour open
//!
//! OpenAI client, Anthropic upstream:
//!
//! - Refused requests: an unsupported-parameter 400 has the code `unsupported_parameter`,
//!   a malformed value `invalid_value`; `param` is the path of the field at fault.
//! - Mid-conversation system messages are hoisted by default
//!   ([`MidConversationSystem`]); a conversation that starts with an assistant turn gets
//!   a `"."` user turn before it (Anthropic wants user first), and so does a user turn
//!   left empty after blank text is dropped. An empty assistant message is dropped.
//! - Tool-call ids outside `[A-Za-z0-9_-]` are rewritten (`_` for each other character)
//!   on both the `tool_use` and `tool_result` side.
//! - A client tool named `json_tool_call` is refused only while `response_format` asks
//!   for JSON (the name is free otherwise). With client tools and JSON mode together,
//!   the JSON tool is added but not forced, so the model may still call the client's. A
//!   non-object schema travels as the `values` property of an object and is unwrapped.
//! - Legacy `functions` / `function_call` / `function` messages are refused with a 400
//!   naming `tools` rather than half-translated.
//! - With thinking on, `temperature` and `top_k` are dropped (Anthropic allows only the
//!   defaults) and listed as dropped; forcing a tool is refused (400).
//! - An Anthropic 401 keeps its status (code `invalid_api_key`); the caller may answer
//!   502 instead, since it is the provider key that failed.
//! - `context_length_exceeded` is recognised from Anthropic's "prompt is too long"
//!   message (and "exceed context limit", "context window").
//! - The finish chunk is written at `message_stop`, not at `message_delta`, so a stream
//!   cut between the two ends with an error and no `finish_reason`.
//!
//! Anthropic client, OpenAI-compatible upstream:
//!
//! - The thinking signature is the caller's opaque value. An answer with no content at
//!   all is a message with `content: []` (as Anthropic itself sends after tool results),
//!   not a made-up empty text block.
//! - Thinking history goes to `reasoning` (vLLM, Ollama) or `reasoning_content`
//!   (llama.cpp) and is dropped for OpenAI and unknown backends, which may refuse an
//!   unknown field. User text blocks are joined with `\n`, assistant text blocks with
//!   nothing (they are pieces of one answer).
//! - Content block types with no OpenAI form are refused (400) rather than silently
//!   lost, except redacted thinking and server-tool history, which no other model can
//!   read. PDFs go as `file` parts to OpenAI and unknown backends and are refused for
//!   vLLM, llama.cpp and Ollama; text documents become text. Images returned by a tool
//!   follow its results in a user message, for every backend.
//! - Unparseable tool-call arguments in a response become `{"_raw": <text>}`; a `stop`
//!   that carries tool calls is `tool_use`; `content_filter` is `end_turn`.
//! - `[DONE]` without any `finish_reason` ends the message normally (`end_turn`):
//!   `[DONE]` is the upstream's explicit end. End of input without either is a
//!   truncation.
//! - An OpenAI-shaped 503 becomes 529 `overloaded_error`; an Anthropic-shaped error body
//!   with a documented type passes unchanged with its status.
//!
//! Both: an upstream body missing its final blank line still counts ([`sse`]).

mod a2o;
mod a2o_content;
mod a2o_response;
mod a2o_stream;
mod a2o_validate;
mod common;
mod errors;
mod loose;
mod o2a;
mod o2a_messages;
mod o2a_response;
mod o2a_stream;
mod o2a_tools;
pub mod sse;

pub use a2o::{
    anthropic_request_to_openai, estimate_input_tokens, A2OState, AnthropicRequest,
    AnthropicToOpenAi, Backend,
};
pub use a2o_response::{openai_response_to_anthropic, stop_reason_for};
pub use a2o_stream::OpenAiSseToAnthropic;
pub use a2o_validate::{validate_anthropic_count_tokens, validate_anthropic_request};
pub use common::{Dialect, StreamEnd, TranslateError, INVALID_UPSTREAM_RESPONSE};
pub use errors::{
    anthropic_error_body, anthropic_error_to_openai, anthropic_error_type,
    openai_error_to_anthropic,
};
pub use o2a::{
    openai_request_to_anthropic, JsonMode, MidConversationSystem, O2AState, OpenAiToAnthropic,
    JSON_TOOL,
};
pub use o2a_response::{anthropic_response_to_openai, finish_reason_for};
pub use o2a_stream::AnthropicSseToOpenAi;

#[cfg(test)]
mod tests_a2o;
#[cfg(test)]
mod tests_a2o_stream;
#[cfg(test)]
mod tests_o2a;
#[cfg(test)]
mod tests_o2a_stream;
