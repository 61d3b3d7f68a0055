//! Client speaks OpenAI chat, upstream speaks Anthropic Messages: the non-streamed
//! response (spec §2) and the stop-reason map both response paths use.

use serde_json::{json, Map, Value};

use super::common::{compact, parse_upstream, AnthropicUsage, TranslateError};
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
pub fn anthropic_response_to_openai(
    body: &[u8],
    st: &O2AState,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let m = parse_upstream(body)?;
    if m.get("type").and_then(Value::as_str) == Some("error") {
        return Err(TranslateError::upstream(
            "upstream answered an error object with a success status",
        ));
    }
    let Some(blocks) = m.get("content").and_then(Value::as_array) else {
        return Err(TranslateError::upstream(
            "upstream message has no content array",
        ));
    };
    let mut text = st.prefix.clone().unwrap_or_default();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer: Option<String> = None;
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(b["thinking"].as_str().unwrap_or(""));
                thinking_blocks.push(json!({
                    "type": "thinking",
                    "thinking": b["thinking"],
                    "signature": b["signature"],
                }));
            }
            Some("redacted_thinking") => {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": b["data"]}));
            }
            Some("tool_use") => {
                if st.json_mode.is_some() && b["name"] == JSON_TOOL {
                    json_answer = Some(json_content(&b["input"], st));
                } else {
                    tool_calls.push(json!({
                        "id": b["id"],
                        "type": "function",
                        "function": {"name": b["name"], "arguments": compact(&b["input"])},
                    }));
                }
            }
            // server_tool_use, web_search_tool_result and any future block type: nothing
            // an OpenAI client can read.
            _ => {}
        }
    }
    let content = match json_answer {
        // Text around the JSON answer would make it unparseable.
        Some(j) => json!(j),
        None if text.is_empty() && !tool_calls.is_empty() => Value::Null,
        None => json!(text),
    };
    let (mut finish, _) = finish_reason_for(m.get("stop_reason").and_then(Value::as_str));
    if finish == "tool_calls" && tool_calls.is_empty() {
        finish = "stop";
    }
    let mut usage = AnthropicUsage::default();
    if let Some(u) = m.get("usage") {
        usage.update(u, false);
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), content);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if st.emit_reasoning && !thinking_blocks.is_empty() {
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(reasoning));
        }
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    let doc = json!({
        "id": m.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": st.created,
        "model": st.model(m.get("model").and_then(Value::as_str)),
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.openai_json(),
    });
    Ok((serde_json::to_vec(&doc).unwrap_or_default(), usage.usage()))
}
