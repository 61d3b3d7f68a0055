//! Client speaks Anthropic Messages, upstream speaks OpenAI chat: the non-streamed
//! response (spec §3.3) and the finish-reason map both response paths use.

use serde_json::{json, Value};

use super::a2o::A2OState;
use super::common::{parse_upstream, OpenAiUsage, TranslateError};
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

/// The tool input of a call's `arguments`: the parsed object, `{}` for no arguments, and
/// `{"_raw": <text>}` for text that is not a JSON object, so the client still sees it.
pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "_raw": arguments }),
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

/// The text of a content field: a string, or the text parts of a list.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect(),
        _ => String::new(),
    }
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
pub fn openai_response_to_anthropic(
    body: &[u8],
    st: &A2OState,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let r = parse_upstream(body)?;
    let Some(choice) = r
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Err(TranslateError::upstream("upstream response has no choices"));
    };
    let m = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = reasoning_of(m) {
        content
            .push(json!({"type": "thinking", "thinking": t, "signature": st.thinking_signature}));
    }
    let mut text = text_of(&m["content"]);
    if text.is_empty() {
        text = m["refusal"].as_str().unwrap_or("").to_string();
    }
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = m["tool_calls"].as_array().map_or(&[][..], Vec::as_slice);
    for (k, tc) in calls.iter().enumerate() {
        let f = &tc["function"];
        let name = match f["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => st.original_tool_name(n).to_string(),
            None => format!("unnamed_tool_{k}"),
        };
        let id = match tc["id"].as_str().filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => format!("toolu_{}_{k}", st.message_id),
        };
        let input = match &f["arguments"] {
            Value::String(s) => tool_input(s),
            v @ Value::Object(_) => v.clone(),
            _ => json!({}),
        };
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    let finish = choice["finish_reason"].as_str();
    let mut stop_reason = stop_reason_for(finish, !calls.is_empty());
    let mut stop_sequence = Value::Null;
    // vLLM names the stop string that matched.
    if let (Some("stop"), Some(s)) = (finish, choice["stop_reason"].as_str()) {
        if calls.is_empty() {
            stop_reason = "stop_sequence";
            stop_sequence = json!(s);
        }
    }
    let usage = r
        .get("usage")
        .map(OpenAiUsage::from_json)
        .unwrap_or_default();
    let doc = json!({
        "id": st.message_id,
        "type": "message",
        "role": "assistant",
        "model": st.model(r.get("model").and_then(Value::as_str)),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage.anthropic_json(),
    });
    Ok((serde_json::to_vec(&doc).unwrap_or_default(), usage.usage()))
}
