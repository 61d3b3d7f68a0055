//! The OpenAI → Anthropic messages algorithm (spec §1.2, §1.3): system hoisting, role
//! merging, tool-result placement, empty-text rules, prefill and content parts.
//!
//! Anthropic wants `system` apart, strictly alternating user/assistant turns, all
//! `tool_result` blocks first in their user turn, and no empty or whitespace-only text
//! blocks. OpenAI clients send none of that reliably, so every rule here repairs a
//! request Anthropic would otherwise refuse with a 400.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::common::{blank, echo, TranslateError};
use super::o2a::{MidConversationSystem, O2AState};

/// Text of a user turn that would otherwise be empty (Anthropic refuses empty content).
const PLACEHOLDER: &str = ".";

/// The translated conversation.
pub(crate) struct Mapped {
    /// `system` text blocks, in their original order.
    pub system: Vec<Value>,
    /// Alternating Anthropic messages, starting with a user turn.
    pub messages: Vec<Value>,
    /// Tool names used in `tool_use` history, in order of first use.
    pub history_tools: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    User,
    Assistant,
}

/// One Anthropic turn being built from a run of same-side OpenAI messages.
struct Turn {
    side: Side,
    /// `tool_result` blocks (user side), which must come first.
    results: Vec<Value>,
    blocks: Vec<Value>,
}

impl Turn {
    fn is_empty(&self) -> bool {
        self.results.is_empty() && self.blocks.is_empty()
    }
}

fn push(turns: &mut Vec<Turn>, side: Side, results: Vec<Value>, blocks: Vec<Value>) {
    match turns.last_mut() {
        Some(t) if t.side == side => {
            t.results.extend(results);
            t.blocks.extend(blocks);
        }
        _ => turns.push(Turn {
            side,
            results,
            blocks,
        }),
    }
}

/// Runs the messages algorithm over the request's `messages`.
pub(crate) fn map_messages(
    req: &Map<String, Value>,
    mid: MidConversationSystem,
    st: &mut O2AState,
) -> Result<Mapped, TranslateError> {
    let Some(list) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::new(
            "'messages' must be an array of messages",
            Some("messages".into()),
            "invalid_value",
        ));
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    let mut history_tools: Vec<String> = Vec::new();
    let mut seen_conversation = false;
    // The final conversation message, when it is an assistant one: how many blocks its
    // turn held before it, and whether it asked to be a prefix of the answer.
    let mut last_assistant: Option<(usize, bool)> = None;

    for (i, m) in list.iter().enumerate() {
        let path = format!("messages[{i}]");
        let Some(role) = m["role"].as_str() else {
            return Err(TranslateError::invalid(
                "each message needs a string role",
                format!("{path}.role"),
            ));
        };
        if role != "system" && role != "developer" {
            last_assistant = None;
        }
        match role {
            "system" | "developer" => {
                let texts = system_texts(&m["content"], &path)?;
                if seen_conversation && mid == MidConversationSystem::AsUserText {
                    let joined: Vec<&str> = texts.iter().map(|(t, _)| t.as_str()).collect();
                    if !joined.is_empty() {
                        last_assistant = None;
                        let text = format!("<system>\n{}\n</system>", joined.join("\n"));
                        push(&mut turns, Side::User, Vec::new(), vec![text_block(&text, None)]);
                    }
                } else {
                    for (t, cc) in texts {
                        system.push(text_block(&t, cc));
                    }
                }
            }
            "user" => {
                seen_conversation = true;
                let blocks = user_blocks(&m["content"], &format!("{path}.content"))?;
                push(&mut turns, Side::User, Vec::new(), blocks);
            }
            "tool" => {
                seen_conversation = true;
                let result = tool_result(m, &path, st)?;
                push(&mut turns, Side::User, vec![result], Vec::new());
            }
            "function" => {
                return Err(TranslateError::unsupported(
                    "legacy 'function' messages are not supported by provider anthropic; use tool messages",
                    format!("{path}.role"),
                ))
            }
            "assistant" => {
                seen_conversation = true;
                let blocks = assistant_blocks(m, &path, st, &mut history_tools)?;
                if blocks.is_empty() {
                    // An empty assistant message carries nothing; dropping it lets the
                    // user messages around it merge.
                    continue;
                }
                let before = match turns.last() {
                    Some(t) if t.side == Side::Assistant => t.blocks.len(),
                    _ => 0,
                };
                let prefix = m.get("prefix").and_then(Value::as_bool) == Some(true);
                push(&mut turns, Side::Assistant, Vec::new(), blocks);
                last_assistant = Some((before, prefix));
            }
            other => {
                return Err(TranslateError::invalid(
                    format!(
                        "'{}' is not one of system, developer, user, assistant, tool",
                        echo(other)
                    ),
                    format!("{path}.role"),
                ))
            }
        }
    }

    // A final assistant message is a prefill: Anthropic refuses trailing whitespace in
    // it, and with `prefix: true` the client wants the answer to start with it.
    if let (Some((from, prefix)), Some(t)) = (last_assistant, turns.last_mut()) {
        if let Some(Value::Object(last)) = t.blocks.last_mut() {
            if last.get("type").and_then(Value::as_str) == Some("text") {
                let trimmed = last["text"].as_str().unwrap_or("").trim_end().to_string();
                if trimmed.is_empty() {
                    t.blocks.pop();
                } else {
                    last.insert("text".into(), json!(trimmed));
                }
                if prefix {
                    let text: String = t.blocks[from.min(t.blocks.len())..]
                        .iter()
                        .filter(|b| b["type"] == "text")
                        .filter_map(|b| b["text"].as_str())
                        .collect();
                    if !text.is_empty() {
                        st.prefix = Some(text);
                    }
                }
            }
        }
        if t.is_empty() {
            turns.pop();
        }
    }

    if turns.is_empty() {
        return Err(TranslateError::invalid(
            "at least one non-system message is required",
            "messages",
        ));
    }
    if turns[0].side == Side::Assistant {
        turns.insert(
            0,
            Turn {
                side: Side::User,
                results: Vec::new(),
                blocks: Vec::new(),
            },
        );
    }
    let messages = turns
        .into_iter()
        .map(|mut t| {
            let role = match t.side {
                Side::User => "user",
                Side::Assistant => "assistant",
            };
            if t.is_empty() {
                t.blocks.push(text_block(PLACEHOLDER, None));
            }
            let mut content = t.results;
            content.extend(t.blocks);
            json!({"role": role, "content": content})
        })
        .collect();
    Ok(Mapped {
        system,
        messages,
        history_tools,
    })
}

fn text_block(text: &str, cache_control: Option<&Value>) -> Value {
    let mut b = json!({"type": "text", "text": text});
    if let Some(cc) = cache_control {
        b["cache_control"] = cc.clone();
    }
    b
}

/// The non-blank texts of a system message, with their `cache_control`.
fn system_texts<'a>(
    content: &'a Value,
    path: &str,
) -> Result<Vec<(String, Option<&'a Value>)>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if blank(s) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![(s.clone(), None)]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => {
                        if !blank(t) {
                            out.push((t.to_string(), p.get("cache_control")));
                        }
                    }
                    _ => {
                        return Err(TranslateError::unsupported(
                            "system messages may only hold text parts",
                            format!("{path}.content[{j}]"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(
            "must be a string or a list of parts",
            format!("{path}.content"),
        )),
    }
}

/// User content (a string or parts) as Anthropic blocks, blank text dropped.
fn user_blocks(content: &Value, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if blank(s) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![text_block(s, None)]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let cc = p.get("cache_control");
                let mut block = match p["type"].as_str() {
                    Some("text") => match p["text"].as_str() {
                        Some(t) if blank(t) => continue,
                        Some(t) => text_block(t, None),
                        None => {
                            return Err(TranslateError::invalid(
                                "a text part needs a string text",
                                format!("{ppath}.text"),
                            ))
                        }
                    },
                    Some("image_url") => {
                        let url = p["image_url"]["url"]
                            .as_str()
                            .or_else(|| p["image_url"].as_str());
                        let Some(url) = url else {
                            return Err(TranslateError::invalid(
                                "an image_url part needs a url",
                                format!("{ppath}.image_url.url"),
                            ));
                        };
                        media_block(url, &format!("{ppath}.image_url.url"))?
                    }
                    Some("file") => {
                        let Some(data) = p["file"]["file_data"].as_str() else {
                            return Err(TranslateError::unsupported(
                                "file parts need inline file_data (a data URL); file ids are not supported by provider anthropic",
                                format!("{ppath}.file"),
                            ));
                        };
                        media_block(data, &format!("{ppath}.file.file_data"))?
                    }
                    Some("input_audio") => {
                        return Err(TranslateError::unsupported(
                            "audio input is not supported by provider anthropic",
                            ppath,
                        ))
                    }
                    other => {
                        return Err(TranslateError::unsupported(
                            format!(
                                "content part type '{}' is not supported by provider anthropic",
                                echo(other.unwrap_or("(none)"))
                            ),
                            format!("{ppath}.type"),
                        ))
                    }
                };
                if let Some(cc) = cc {
                    block["cache_control"] = cc.clone();
                }
                out.push(block);
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(
            "must be a string or a list of parts",
            path.to_string(),
        )),
    }
}

/// An image or PDF given as a data URL or an http(s) URL (§1.3).
fn media_block(url: &str, path: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(TranslateError::invalid("malformed data URL", path));
        };
        let mut params = meta.split(';');
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(TranslateError::unsupported(
                "only base64 data URLs are supported by provider anthropic",
                path,
            ));
        }
        let media = if media == "image/jpg" {
            "image/jpeg".to_string()
        } else {
            media
        };
        return match media.as_str() {
            "image/jpeg" | "image/png" | "image/gif" | "image/webp" => Ok(json!({
                "type": "image",
                "source": {"type": "base64", "media_type": media, "data": data},
            })),
            "application/pdf" => Ok(json!({
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": data},
            })),
            other => Err(TranslateError::unsupported(
                format!(
                    "media type '{}' is not supported by provider anthropic (image/jpeg, image/png, image/gif, image/webp, application/pdf)",
                    echo(other)
                ),
                path,
            )),
        };
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let is_pdf = url
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.to_ascii_lowercase().ends_with(".pdf"));
        let kind = if is_pdf { "document" } else { "image" };
        return Ok(json!({"type": kind, "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid(
        "must be a data URL or an http(s) URL",
        path,
    ))
}

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): other characters become
/// `_`, the same way on the `tool_use` and the `tool_result` side.
fn sanitize_id<'a>(id: &'a str, st: &mut O2AState) -> Cow<'a, str> {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Cow::Borrowed(id);
    }
    let fixed: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !st.tool_id_rewrites.iter().any(|(from, _)| from == id) {
        st.tool_id_rewrites.push((id.to_string(), fixed.clone()));
    }
    Cow::Owned(fixed)
}

fn tool_result(m: &Value, path: &str, st: &mut O2AState) -> Result<Value, TranslateError> {
    let Some(id) = m["tool_call_id"].as_str().filter(|s| !s.is_empty()) else {
        return Err(TranslateError::invalid(
            "a tool message needs a tool_call_id",
            format!("{path}.tool_call_id"),
        ));
    };
    let id = sanitize_id(id, st).into_owned();
    let content = match &m["content"] {
        Value::Null => json!(""),
        // Anthropic accepts an empty tool result; it is not padded.
        Value::String(s) => json!(s),
        c @ Value::Array(_) => {
            let blocks = user_blocks(c, &format!("{path}.content"))?;
            if blocks.is_empty() {
                json!("")
            } else {
                Value::Array(blocks)
            }
        }
        _ => {
            return Err(TranslateError::invalid(
                "must be a string or a list of parts",
                format!("{path}.content"),
            ))
        }
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

/// An assistant message as blocks: echoed thinking, text, then tool calls (§1.2.6).
fn assistant_blocks(
    m: &Value,
    path: &str,
    st: &mut O2AState,
    history_tools: &mut Vec<String>,
) -> Result<Vec<Value>, TranslateError> {
    if m.get("function_call").is_some_and(|f| !f.is_null()) {
        return Err(TranslateError::unsupported(
            "legacy 'function_call' is not supported by provider anthropic; use tool_calls",
            format!("{path}.function_call"),
        ));
    }
    let mut out = Vec::new();
    // Thinking blocks echoed back with their signatures (LiteLLM's extension): Anthropic
    // requires them unchanged when thinking and tools are combined.
    for b in m["thinking_blocks"].as_array().into_iter().flatten() {
        if matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking")) {
            out.push(b.clone());
        }
    }
    match &m["content"] {
        Value::Null => {}
        Value::String(s) => {
            if !blank(s) {
                out.push(text_block(s, None));
            }
        }
        Value::Array(parts) => {
            for (j, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = p["text"].as_str().filter(|t| !blank(t)) {
                            out.push(text_block(t, p.get("cache_control")));
                        }
                    }
                    Some("refusal") => {}
                    _ => {
                        return Err(TranslateError::unsupported(
                            "assistant content may only hold text parts",
                            format!("{path}.content[{j}]"),
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(TranslateError::invalid(
                "must be a string or a list of parts",
                format!("{path}.content"),
            ))
        }
    }
    for (j, tc) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
        let tpath = format!("{path}.tool_calls[{j}]");
        let Some(id) = tc["id"].as_str().filter(|s| !s.is_empty()) else {
            return Err(TranslateError::invalid(
                "a tool call needs an id",
                format!("{tpath}.id"),
            ));
        };
        let Some(name) = tc["function"]["name"].as_str().filter(|s| !s.is_empty()) else {
            return Err(TranslateError::invalid(
                "a tool call needs a function name",
                format!("{tpath}.function.name"),
            ));
        };
        let apath = format!("{tpath}.function.arguments");
        let input = match &tc["function"]["arguments"] {
            // A streamed no-argument call accumulates to "".
            Value::Null => json!({}),
            Value::String(s) if s.trim().is_empty() => json!({}),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return Err(TranslateError::invalid(
                        "tool call arguments must be a JSON object",
                        apath,
                    ))
                }
                Err(e) => {
                    return Err(TranslateError::invalid(
                        format!("tool call arguments are not valid JSON: {e}"),
                        apath,
                    ))
                }
            },
            v @ Value::Object(_) => v.clone(),
            _ => {
                return Err(TranslateError::invalid(
                    "tool call arguments must be a JSON object in a string",
                    apath,
                ))
            }
        };
        let id = sanitize_id(id, st).into_owned();
        if !history_tools.iter().any(|n| n == name) {
            history_tools.push(name.to_string());
        }
        out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(out)
}
