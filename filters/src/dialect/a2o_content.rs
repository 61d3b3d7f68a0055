//! Anthropic message content as OpenAI messages (spec §1R.0 items 2 and 3): tool results
//! placed before the rest of their user turn, media parts, assistant text, tool calls and
//! thinking history.

use serde_json::{json, Map, Value};

use super::a2o::{A2OState, Backend};
use super::common::{echo, TranslateError};

/// An Anthropic image or document block as an OpenAI content part.
fn media_part(b: &Value, path: &str, backend: Backend) -> Result<Value, TranslateError> {
    let src = &b["source"];
    let is_doc = b["type"] == "document";
    match (src["type"].as_str(), is_doc) {
        (Some("base64"), false) => {
            let url = format!(
                "data:{};base64,{}",
                src["media_type"].as_str().unwrap_or("image/png"),
                src["data"].as_str().unwrap_or("")
            );
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        (Some("url"), false) => Ok(json!({"type": "image_url", "image_url": {"url": src["url"]}})),
        (Some("text"), true) => Ok(json!({"type": "text", "text": src["data"]})),
        (Some("base64"), true) if matches!(backend, Backend::OpenAi | Backend::Generic) => {
            let mt = src["media_type"].as_str().unwrap_or("application/pdf");
            let data = format!("data:{mt};base64,{}", src["data"].as_str().unwrap_or(""));
            let filename = b["title"].as_str().unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": filename, "file_data": data}}))
        }
        _ => Err(TranslateError::unsupported(
            format!(
                "{} source '{}' is not supported by backend {}",
                if is_doc { "document" } else { "image" },
                echo(src["type"].as_str().unwrap_or("(none)")),
                backend.label()
            ),
            format!("{path}.source"),
        )),
    }
}

/// A user turn as OpenAI messages: its tool results first (as `tool` messages, which
/// must follow the assistant's `tool_calls`), then one user message with the rest.
pub(crate) fn user_messages(
    m: &Value,
    path: &str,
    backend: Backend,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let blocks = match &m["content"] {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Ok(()),
    };
    let mut parts: Vec<Value> = Vec::new();
    // Images returned by tools: OpenAI tool messages hold text only.
    let mut result_images: Vec<Value> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content.{j}");
        match b["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
            Some("image" | "document") => parts.push(media_part(b, &bpath, backend)?),
            Some("tool_result") => {
                let mut text = match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => {
                        let mut texts = Vec::new();
                        for (k, it) in items.iter().enumerate() {
                            match it["type"].as_str() {
                                Some("text") => texts.push(it["text"].as_str().unwrap_or("")),
                                Some("image") => result_images
                                    .push(media_part(it, &format!("{bpath}.content.{k}"), backend)?),
                                other => {
                                    return Err(TranslateError::unsupported(
                                        format!(
                                            "tool_result content of type '{}' is not supported by an OpenAI backend",
                                            echo(other.unwrap_or("(none)"))
                                        ),
                                        format!("{bpath}.content.{k}"),
                                    ))
                                }
                            }
                        }
                        texts.join("\n")
                    }
                    _ => String::new(),
                };
                if b["is_error"] == true {
                    // Otherwise a failed tool reads like a successful one.
                    text.insert_str(0, "Error: ");
                }
                out.push(
                    json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": text}),
                );
            }
            // Thinking never belongs to a user turn; nothing to carry.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(TranslateError::unsupported(
                    format!(
                        "content block type '{}' is not supported by an OpenAI backend",
                        echo(other.unwrap_or("(none)"))
                    ),
                    format!("{bpath}.type"),
                ))
            }
        }
    }
    result_images.extend(parts);
    let parts = result_images;
    if parts.is_empty() {
        return Ok(());
    }
    let content = if parts.iter().all(|p| p["type"] == "text") {
        // Plain text as one string: every OpenAI-compatible backend takes that.
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        json!(texts.join("\n"))
    } else {
        Value::Array(parts)
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

pub(crate) fn assistant_message(
    m: &Value,
    path: &str,
    st: &mut A2OState,
) -> Result<Value, TranslateError> {
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    let blocks = match &m["content"] {
        Value::String(s) => {
            msg.insert("content".into(), json!(s));
            return Ok(Value::Object(msg));
        }
        Value::Array(b) => b.as_slice(),
        _ => &[],
    };
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            // Blocks of one answer: joined as written, without separators.
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => thinking.push_str(b["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => {
                let name = st.sent_name(b["name"].as_str().unwrap_or(""));
                calls.push(json!({
                    "id": b["id"],
                    "type": "function",
                    "function": {"name": name, "arguments": super::common::compact(&b["input"])},
                }));
            }
            // Opaque to any other model; server-side tool traffic of an earlier Anthropic
            // backend cannot be replayed to an OpenAI one.
            Some(
                "redacted_thinking"
                | "server_tool_use"
                | "web_search_tool_result"
                | "web_fetch_tool_result"
                | "code_execution_tool_result"
                | "bash_code_execution_tool_result"
                | "text_editor_code_execution_tool_result",
            ) => {}
            other => {
                return Err(TranslateError::unsupported(
                    format!(
                        "content block type '{}' is not supported by an OpenAI backend",
                        echo(other.unwrap_or("(none)"))
                    ),
                    format!("{path}.content.{j}.type"),
                ))
            }
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        if st.backend == Backend::LlamaCpp {
            json!("")
        } else {
            Value::Null
        }
    } else {
        json!(text)
    };
    msg.insert("content".into(), content);
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    if let (Some(field), false) = (st.backend.reasoning_field(), thinking.is_empty()) {
        msg.insert(field.into(), json!(thinking));
    }
    Ok(Value::Object(msg))
}
