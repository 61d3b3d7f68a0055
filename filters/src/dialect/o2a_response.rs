//! Client speaks OpenAI chat, upstream speaks Anthropic Messages: the non-streamed
//! response (spec §2) and the stop-reason map both response paths use.

use serde_json::value::RawValue;
use serde_json::Value;

use super::common::{compact, AnthropicUsage, TranslateError};
use super::loose::text;
use super::o2a::{O2AState, JSON_TOOL};
use crate::usage::Usage;

/// The OpenAI `finish_reason` for an Anthropic `stop_reason`, and whether the stop reason
/// was one Anthropic documents. An unknown or missing one maps to `stop` (a raw Anthropic
/// value would break strict OpenAI clients); the caller may count it as a warning.
///
/// `end_turn`, `stop_sequence`, `pause_turn` → `stop`; `max_tokens`,
/// `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`; `refusal` →
/// `content_filter`.
pub fn finish_reason_for(stop_reason: Option<&str>) -> (&'static str, bool) {
    match stop_reason {
        Some("end_turn" | "stop_sequence" | "pause_turn") => ("stop", true),
        Some("max_tokens" | "model_context_window_exceeded") => ("length", true),
        Some("tool_use") => ("tool_calls", true),
        Some("refusal") => ("content_filter", true),
        _ => ("stop", false),
    }
}

/// The answer of the JSON-mode tool as message content.
pub(crate) fn json_content(input: &Value, st: &O2AState) -> String {
    match (&st.json_mode, input.get("values")) {
        (Some(m), Some(v)) if m.unwrap_values => compact(v),
        _ => compact(input),
    }
}

/// Translates a non-streamed Anthropic Messages response (status 200) into an OpenAI
/// `chat.completion`, with the usage it reports in OpenAI terms (cache reads and writes
/// counted in `prompt_tokens`).
///
/// Text blocks are concatenated (after [`O2AState::prefix`]); `tool_use` blocks become
/// `tool_calls` in order, except the JSON-mode tool, whose input becomes the content (and
/// `tool_use` then finishes as `stop`); thinking becomes `reasoning_content` and
/// `thinking_blocks` (with signatures, for clients that replay them); unknown block types
/// are skipped. Fails (code `invalid_upstream_response`, status 502) when the body is not
/// an Anthropic message.
///
/// Reads the body into borrowed, typed fields (tool inputs, ids and signatures are copied
/// through as sent), since this runs once per answer.
pub fn anthropic_response_to_openai(
    body: &[u8],
    st: &O2AState,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let m: shape::Message<'_> = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(e) if e.is_data() => {
            return Err(TranslateError::upstream(format!(
                "upstream body is not an Anthropic message: {e}"
            )))
        }
        Err(e) => {
            return Err(TranslateError::upstream(format!(
                "upstream body is not valid JSON: {e}"
            )))
        }
    };
    if text(m.kind).as_deref() == Some("error") {
        return Err(TranslateError::upstream(
            "upstream answered an error object with a success status",
        ));
    }
    let Some(blocks) = m.content else {
        return Err(TranslateError::upstream(
            "upstream message has no content array",
        ));
    };
    let mut text_out = st.prefix.clone().unwrap_or_default();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer: Option<String> = None;
    for b in blocks {
        match text(b.kind).as_deref() {
            Some("text") => text_out.push_str(&text(b.text).unwrap_or_default()),
            Some("thinking") => {
                reasoning.push_str(&text(b.thinking).unwrap_or_default());
                thinking_blocks.push(shape::Thinking::Thinking {
                    thinking: b.thinking,
                    signature: b.signature,
                });
            }
            Some("redacted_thinking") => {
                thinking_blocks.push(shape::Thinking::RedactedThinking { data: b.data });
            }
            Some("tool_use") => {
                if st.json_mode.is_some() && text(b.name).as_deref() == Some(JSON_TOOL) {
                    let input = b
                        .input
                        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                        .unwrap_or(Value::Null);
                    json_answer = Some(json_content(&input, st));
                } else {
                    tool_calls.push(shape::ToolCall {
                        id: b.id,
                        kind: "function",
                        function: shape::Function {
                            name: b.name,
                            arguments: b.input.map_or("null", RawValue::get),
                        },
                    });
                }
            }
            // server_tool_use, web_search_tool_result and any future block type: nothing
            // an OpenAI client can read.
            _ => {}
        }
    }
    let content = match json_answer {
        // Text around the JSON answer would make it unparseable.
        Some(j) => Some(j),
        None if text_out.is_empty() && !tool_calls.is_empty() => None,
        None => Some(text_out),
    };
    let (mut finish, _) = finish_reason_for(text(m.stop_reason).as_deref());
    if finish == "tool_calls" && tool_calls.is_empty() {
        finish = "stop";
    }
    let mut usage = AnthropicUsage::default();
    if let Some(u) = m.usage {
        u.apply(&mut usage);
    }
    let with_reasoning = st.emit_reasoning && !thinking_blocks.is_empty();
    let model = text(m.model);
    let doc = shape::Completion {
        id: m.id,
        object: "chat.completion",
        created: st.created,
        model: st.model(model.as_deref()),
        choices: [shape::Choice {
            index: 0,
            message: shape::ChatMessage {
                role: "assistant",
                content,
                tool_calls,
                reasoning_content: (with_reasoning && !reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: if with_reasoning {
                    thinking_blocks
                } else {
                    Vec::new()
                },
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: shape::UsageOut::of(&usage),
    };
    Ok((serde_json::to_vec(&doc).unwrap_or_default(), usage.usage()))
}

/// The shapes of an Anthropic message as far as the translation reads it, and of the
/// chat completion it writes.
mod shape {
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    use super::super::common::AnthropicUsage;
    use super::super::loose::Loose;

    #[derive(Deserialize)]
    pub(super) struct Message<'a> {
        #[serde(borrow, rename = "type", default)]
        pub kind: Loose<'a>,
        #[serde(borrow, default)]
        pub id: Loose<'a>,
        #[serde(borrow, default)]
        pub model: Loose<'a>,
        #[serde(borrow, default)]
        pub content: Option<Vec<Block<'a>>>,
        #[serde(borrow, default)]
        pub stop_reason: Loose<'a>,
        #[serde(default)]
        pub usage: Option<UsageIn>,
    }

    #[derive(Deserialize)]
    pub(super) struct Block<'a> {
        #[serde(borrow, rename = "type", default)]
        pub kind: Loose<'a>,
        #[serde(borrow, default)]
        pub text: Loose<'a>,
        #[serde(borrow, default)]
        pub thinking: Loose<'a>,
        #[serde(borrow, default)]
        pub signature: Loose<'a>,
        #[serde(borrow, default)]
        pub data: Loose<'a>,
        #[serde(borrow, default)]
        pub id: Loose<'a>,
        #[serde(borrow, default)]
        pub name: Loose<'a>,
        #[serde(borrow, default)]
        pub input: Loose<'a>,
    }

    /// Counts that are absent or `null` leave what is known.
    #[derive(Deserialize)]
    pub(super) struct UsageIn {
        #[serde(default)]
        input_tokens: Option<u64>,
        #[serde(default)]
        output_tokens: Option<u64>,
        #[serde(default)]
        cache_read_input_tokens: Option<u64>,
        #[serde(default)]
        cache_creation_input_tokens: Option<u64>,
    }

    impl UsageIn {
        pub fn apply(self, u: &mut AnthropicUsage) {
            for (field, v) in [
                (&mut u.input, self.input_tokens),
                (&mut u.output, self.output_tokens),
                (&mut u.cache_read, self.cache_read_input_tokens),
                (&mut u.cache_creation, self.cache_creation_input_tokens),
            ] {
                if let Some(n) = v {
                    *field = n;
                }
            }
        }
    }

    #[derive(Serialize)]
    pub(super) struct Completion<'a> {
        pub id: Option<&'a RawValue>,
        pub object: &'static str,
        pub created: u64,
        pub model: &'a str,
        pub choices: [Choice<'a>; 1],
        pub usage: UsageOut,
    }

    #[derive(Serialize)]
    pub(super) struct Choice<'a> {
        pub index: u32,
        pub message: ChatMessage<'a>,
        pub logprobs: Option<()>,
        pub finish_reason: &'static str,
    }

    #[derive(Serialize)]
    pub(super) struct ChatMessage<'a> {
        pub role: &'static str,
        pub content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub tool_calls: Vec<ToolCall<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reasoning_content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub thinking_blocks: Vec<Thinking<'a>>,
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(super) enum Thinking<'a> {
        Thinking {
            thinking: Option<&'a RawValue>,
            signature: Option<&'a RawValue>,
        },
        RedactedThinking {
            data: Option<&'a RawValue>,
        },
    }

    #[derive(Serialize)]
    pub(super) struct ToolCall<'a> {
        pub id: Option<&'a RawValue>,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub function: Function<'a>,
    }

    #[derive(Serialize)]
    pub(super) struct Function<'a> {
        pub name: Option<&'a RawValue>,
        pub arguments: &'a str,
    }

    /// The OpenAI `usage` object, with the cache counts also as top-level extension
    /// fields so the split survives the translation.
    #[derive(Serialize)]
    pub(super) struct UsageOut {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        prompt_tokens_details: Details,
        cache_read_input_tokens: u64,
        cache_creation_input_tokens: u64,
    }

    #[derive(Serialize)]
    struct Details {
        cached_tokens: u64,
    }

    impl UsageOut {
        pub fn of(a: &AnthropicUsage) -> Self {
            let u = a.usage();
            Self {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.total_tokens,
                prompt_tokens_details: Details {
                    cached_tokens: a.cache_read,
                },
                cache_read_input_tokens: a.cache_read,
                cache_creation_input_tokens: a.cache_creation,
            }
        }
    }
}
