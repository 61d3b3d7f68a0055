//! Client speaks Anthropic Messages, upstream speaks OpenAI chat: the non-streamed
//! response (spec §3.3) and the finish-reason map both response paths use.

use std::borrow::Cow;

use serde_json::Value;

use super::a2o::A2OState;
use super::common::TranslateError;
use crate::usage::Usage;

/// The Anthropic `stop_reason` for an OpenAI `finish_reason`: `stop` → `end_turn`,
/// `length` → `max_tokens`, `tool_calls` / `function_call` → `tool_use`,
/// `content_filter` and anything else → `end_turn`. When the answer holds tool calls a
/// `stop` becomes `tool_use` (some backends finish tool calls with `stop`), since the
/// client must run them.
pub fn stop_reason_for(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("stop") | None if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// The reasoning text of a message or delta (`reasoning_content` on llama.cpp, DeepSeek
/// and others; `reasoning` on vLLM and Ollama).
pub(crate) fn reasoning_of(m: &Value) -> Option<&str> {
    m["reasoning_content"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| m["reasoning"].as_str().filter(|s| !s.is_empty()))
}

/// Translates a non-streamed OpenAI chat completion (status 200) into an Anthropic
/// message, with the usage it reports.
///
/// Content is thinking (with [`A2OState::thinking_signature`]) first, then text (only if
/// non-empty; a refusal counts as text), then one `tool_use` per tool call in order with
/// its original name restored and its arguments parsed. The id is
/// [`A2OState::message_id`]. A response with nothing in it gets `content: []`. Usage:
/// `input_tokens` = prompt − cached, `cache_read_input_tokens` = cached. Fails (code
/// `invalid_upstream_response`, status 502) when the body has no first choice.
///
/// Reads the body into borrowed, typed fields (strings without escapes are not copied;
/// fields it does not use are skipped, not built), since this runs once per answer.
pub fn openai_response_to_anthropic(
    body: &[u8],
    st: &A2OState,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let r: wire::Completion<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) if e.is_data() => {
            return Err(TranslateError::upstream(format!(
                "upstream body is not a chat completion: {e}"
            )))
        }
        Err(e) => {
            return Err(TranslateError::upstream(format!(
                "upstream body is not valid JSON: {e}"
            )))
        }
    };
    let Some(choice) = r.choices.into_iter().flatten().next() else {
        return Err(TranslateError::upstream("upstream response has no choices"));
    };
    let m = choice.message.unwrap_or_default();
    let mut content = Vec::with_capacity(1 + m.tool_calls.as_ref().map_or(0, Vec::len));
    if let Some(t) = wire::text(m.reasoning_content).or_else(|| wire::text(m.reasoning)) {
        content.push(wire::Block::Thinking {
            thinking: t,
            signature: &st.thinking_signature,
        });
    }
    let mut text = wire::content_text(m.content);
    if text.is_empty() {
        text = wire::text(m.refusal).unwrap_or_default();
    }
    if !text.is_empty() {
        content.push(wire::Block::Text { text });
    }
    let calls = m.tool_calls.unwrap_or_default();
    let has_calls = !calls.is_empty();
    for (k, tc) in calls.into_iter().enumerate() {
        let f = tc.function.unwrap_or_default();
        let name = match f.name.filter(|n| !n.is_empty()) {
            Some(n) => Cow::Owned(st.original_tool_name(&n).to_string()),
            None => Cow::Owned(format!("unnamed_tool_{k}")),
        };
        let id = match tc.id.filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => Cow::Owned(format!("toolu_{}_{k}", st.message_id)),
        };
        content.push(wire::Block::ToolUse {
            id,
            name,
            input: wire::Input::of(f.arguments),
        });
    }
    let finish = wire::text(choice.finish_reason);
    let mut stop_reason = stop_reason_for(finish.as_deref(), has_calls);
    let mut stop_sequence = None;
    // vLLM names the stop string that matched (or the stop token's id, a number).
    if let (Some("stop"), Some(s)) = (finish.as_deref(), wire::text(choice.stop_reason)) {
        if !has_calls {
            stop_reason = "stop_sequence";
            stop_sequence = Some(s);
        }
    }
    let usage = r.usage.map(wire::UsageIn::counts).unwrap_or_default();
    let doc = wire::Message {
        id: &st.message_id,
        kind: "message",
        role: "assistant",
        model: st.model(r.model.as_deref()),
        content,
        stop_reason,
        stop_sequence,
        usage: wire::UsageOut::of(&usage),
    };
    Ok((serde_json::to_vec(&doc).unwrap_or_default(), usage.usage()))
}

/// The shapes of a chat completion as far as the translation reads it, and of the
/// Anthropic message it writes.
mod wire {
    use std::borrow::Cow;

    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    use super::super::common::OpenAiUsage;
    pub(super) use super::super::loose::{text, Loose};

    /// The text of a message's `content`: the string, or the text parts of a list.
    pub(super) fn content_text(v: Loose<'_>) -> Cow<'_, str> {
        let Some(raw) = v else {
            return Cow::Borrowed("");
        };
        if let Some(s) = text(Some(raw)) {
            return s;
        }
        #[derive(Deserialize)]
        struct Part<'a> {
            #[serde(borrow, rename = "type", default)]
            kind: Loose<'a>,
            #[serde(borrow, default)]
            text: Loose<'a>,
        }
        let parts: Vec<Part<'_>> = serde_json::from_str(raw.get()).unwrap_or_default();
        let mut out = String::new();
        for p in parts {
            if text(p.kind).as_deref() == Some("text") {
                if let Some(t) = text(p.text) {
                    out.push_str(&t);
                }
            }
        }
        Cow::Owned(out)
    }

    #[derive(Deserialize)]
    pub(super) struct Completion<'a> {
        #[serde(borrow, default)]
        pub model: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub choices: Option<Vec<Choice<'a>>>,
        #[serde(default)]
        pub usage: Option<UsageIn>,
    }

    #[derive(Deserialize)]
    pub(super) struct Choice<'a> {
        #[serde(borrow, default)]
        pub message: Option<ChatMessage<'a>>,
        #[serde(borrow, default)]
        pub finish_reason: Loose<'a>,
        #[serde(borrow, default)]
        pub stop_reason: Loose<'a>,
    }

    #[derive(Deserialize, Default)]
    pub(super) struct ChatMessage<'a> {
        #[serde(borrow, default)]
        pub content: Loose<'a>,
        #[serde(borrow, default)]
        pub refusal: Loose<'a>,
        #[serde(borrow, default)]
        pub reasoning_content: Loose<'a>,
        #[serde(borrow, default)]
        pub reasoning: Loose<'a>,
        #[serde(borrow, default)]
        pub tool_calls: Option<Vec<ToolCall<'a>>>,
    }

    #[derive(Deserialize)]
    pub(super) struct ToolCall<'a> {
        #[serde(borrow, default)]
        pub id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub function: Option<Function<'a>>,
    }

    #[derive(Deserialize, Default)]
    pub(super) struct Function<'a> {
        #[serde(borrow, default)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub arguments: Loose<'a>,
    }

    #[derive(Deserialize, Default)]
    pub(super) struct UsageIn {
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        completion_tokens: Option<u64>,
        #[serde(default)]
        prompt_tokens_details: Option<Details>,
    }

    #[derive(Deserialize, Default)]
    struct Details {
        #[serde(default)]
        cached_tokens: Option<u64>,
    }

    impl UsageIn {
        pub fn counts(self) -> OpenAiUsage {
            OpenAiUsage {
                prompt: self.prompt_tokens.unwrap_or(0),
                completion: self.completion_tokens.unwrap_or(0),
                cached: self
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
            }
        }
    }

    #[derive(Serialize)]
    pub(super) struct Message<'a> {
        pub id: &'a str,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub role: &'static str,
        pub model: &'a str,
        pub content: Vec<Block<'a>>,
        pub stop_reason: &'static str,
        pub stop_sequence: Option<Cow<'a, str>>,
        pub usage: UsageOut,
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub(super) enum Block<'a> {
        Thinking {
            thinking: Cow<'a, str>,
            signature: &'a str,
        },
        Text {
            text: Cow<'a, str>,
        },
        ToolUse {
            id: Cow<'a, str>,
            name: Cow<'a, str>,
            input: Input<'a>,
        },
    }

    /// A tool call's input: its arguments when they are a JSON object (kept as sent),
    /// `{}` for none, `{"_raw": text}` for anything else, so the client still sees it.
    #[derive(Serialize)]
    #[serde(untagged)]
    pub(super) enum Input<'a> {
        Borrowed(&'a RawValue),
        Owned(Box<RawValue>),
        Empty(Empty),
        Raw {
            #[serde(rename = "_raw")]
            raw: Cow<'a, str>,
        },
    }

    /// Serializes as `{}`.
    #[derive(Serialize)]
    pub(super) struct Empty {}

    fn is_object(raw: &RawValue) -> bool {
        raw.get().trim_start().starts_with('{')
    }

    impl<'a> Input<'a> {
        pub fn of(arguments: Loose<'a>) -> Self {
            let empty = || Input::Empty(Empty {});
            let Some(raw) = arguments else {
                return empty();
            };
            if is_object(raw) {
                return Input::Borrowed(raw);
            }
            let Some(s) = text(Some(raw)) else {
                return empty();
            };
            if s.trim().is_empty() {
                return empty();
            }
            match serde_json::from_str::<Box<RawValue>>(&s) {
                Ok(v) if is_object(&v) => Input::Owned(v),
                _ => Input::Raw { raw: s },
            }
        }
    }

    #[derive(Serialize)]
    pub(super) struct UsageOut {
        input_tokens: u64,
        output_tokens: u64,
        cache_read_input_tokens: u64,
        cache_creation_input_tokens: u64,
    }

    impl UsageOut {
        pub fn of(u: &OpenAiUsage) -> Self {
            Self {
                input_tokens: u.prompt.saturating_sub(u.cached),
                output_tokens: u.completion,
                cache_read_input_tokens: u.cached,
                cache_creation_input_tokens: 0,
            }
        }
    }
}
