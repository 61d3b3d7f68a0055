//! The structural checks of an Anthropic Messages request, shared by the translation and
//! the native passthrough (which must not forward what Anthropic's API would refuse
//! anyway, nor what the gateway cannot route).
//!
//! Checked: a JSON object with a non-empty string `model`, `max_tokens` a positive
//! integer (not for `count_tokens`), `messages` a non-empty array of `user`/`assistant`
//! messages whose content is a string or an array of typed blocks, `text` blocks with a
//! string `text`, `tool_use` blocks with an id, a name and an object `input`,
//! `tool_result` blocks with a `tool_use_id`, a string or text-block `system`, named
//! `tools`, a known `tool_choice` type, and well-typed sampling fields. Block types this
//! does not know pass (new ones appear over time).

use serde_json::{Map, Value};

use super::common::{echo, parse_object, TranslateError};

fn bad(message: impl Into<String>, param: impl Into<String>) -> TranslateError {
    TranslateError::invalid(message, param)
}

/// Checks an Anthropic Messages request body (`POST /v1/messages`). The error's `param`
/// is Anthropic's dotted path (`messages.0.content.1.input`); its Anthropic body is
/// [`TranslateError::anthropic_body`].
pub fn validate_anthropic_request(body: &[u8]) -> Result<(), TranslateError> {
    validate_object(&parse_object(body)?, true)
}

/// Checks a `POST /v1/messages/count_tokens` body: as
/// [`validate_anthropic_request`] but without `max_tokens`.
pub fn validate_anthropic_count_tokens(body: &[u8]) -> Result<(), TranslateError> {
    validate_object(&parse_object(body)?, false)
}

pub(crate) fn validate_object(
    req: &Map<String, Value>,
    need_max_tokens: bool,
) -> Result<(), TranslateError> {
    match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(_) => return Err(bad("model must be a non-empty string", "model")),
        None => {
            return Err(TranslateError::new(
                "model: Field required",
                Some("model".into()),
                "missing_required_parameter",
            ))
        }
    }
    if need_max_tokens {
        match req.get("max_tokens") {
            None => {
                return Err(TranslateError::new(
                    "max_tokens: Field required",
                    Some("max_tokens".into()),
                    "missing_required_parameter",
                ))
            }
            Some(v) if v.as_u64().is_some_and(|n| n > 0) => {}
            Some(_) => return Err(bad("max_tokens must be a positive integer", "max_tokens")),
        }
    }
    let Some(messages) = req.get("messages") else {
        return Err(TranslateError::new(
            "messages: Field required",
            Some("messages".into()),
            "missing_required_parameter",
        ));
    };
    let Some(messages) = messages.as_array() else {
        return Err(bad("messages must be an array", "messages"));
    };
    if messages.is_empty() {
        return Err(bad("at least one message is required", "messages"));
    }
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages.{i}");
        let Some(m) = m.as_object() else {
            return Err(bad("each message must be an object", path));
        };
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            Some(r) => {
                return Err(bad(
                    format!("role '{}' is not one of user, assistant", echo(r)),
                    format!("{path}.role"),
                ))
            }
            None => return Err(bad("role must be a string", format!("{path}.role"))),
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    block(b, &format!("{path}.content.{j}"))?;
                }
            }
            _ => {
                return Err(bad(
                    "content must be a string or an array of content blocks",
                    format!("{path}.content"),
                ))
            }
        }
    }
    match req.get("system") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                if b["type"] != "text" || !b["text"].is_string() {
                    return Err(bad(
                        "system blocks must be text blocks",
                        format!("system.{j}"),
                    ));
                }
            }
        }
        Some(_) => return Err(bad("system must be a string or text blocks", "system")),
    }
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (j, t) in tools.iter().enumerate() {
                if t["name"].as_str().is_none_or(|n| n.is_empty()) {
                    return Err(bad("each tool needs a name", format!("tools.{j}.name")));
                }
                if let Some(s) = t.get("input_schema") {
                    if !s.is_object() {
                        return Err(bad(
                            "input_schema must be an object",
                            format!("tools.{j}.input_schema"),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(bad("tools must be an array", "tools")),
    }
    if let Some(tc) = req.get("tool_choice").filter(|t| !t.is_null()) {
        match tc["type"].as_str() {
            Some("auto" | "any" | "none") => {}
            Some("tool") if tc["name"].is_string() => {}
            Some("tool") => {
                return Err(bad(
                    "tool_choice of type tool needs a name",
                    "tool_choice.name",
                ))
            }
            _ => {
                return Err(bad(
                    "tool_choice.type must be one of auto, any, tool, none",
                    "tool_choice.type",
                ))
            }
        }
    }
    if let Some(s) = req.get("stream") {
        if !s.is_boolean() && !s.is_null() {
            return Err(bad("stream must be a boolean", "stream"));
        }
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(bad(format!("{key} must be a number"), key));
            }
        }
    }
    if let Some(v) = req.get("top_k").filter(|v| !v.is_null()) {
        if v.as_u64().is_none() {
            return Err(bad("top_k must be a non-negative integer", "top_k"));
        }
    }
    if let Some(v) = req.get("stop_sequences").filter(|v| !v.is_null()) {
        if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err(bad(
                "stop_sequences must be an array of strings",
                "stop_sequences",
            ));
        }
    }
    Ok(())
}

fn block(b: &Value, path: &str) -> Result<(), TranslateError> {
    let Some(t) = b["type"].as_str() else {
        return Err(bad(
            "each content block must be an object with a string type",
            format!("{path}.type"),
        ));
    };
    match t {
        "text" if !b["text"].is_string() => {
            Err(bad("text must be a string", format!("{path}.text")))
        }
        "tool_use" => {
            if b["id"].as_str().is_none_or(|s| s.is_empty()) {
                return Err(bad("tool_use needs an id", format!("{path}.id")));
            }
            if b["name"].as_str().is_none_or(|s| s.is_empty()) {
                return Err(bad("tool_use needs a name", format!("{path}.name")));
            }
            if !b["input"].is_object() {
                return Err(bad(
                    "tool_use input must be an object",
                    format!("{path}.input"),
                ));
            }
            Ok(())
        }
        "tool_result" => {
            if b["tool_use_id"].as_str().is_none_or(|s| s.is_empty()) {
                return Err(bad(
                    "tool_result needs a tool_use_id",
                    format!("{path}.tool_use_id"),
                ));
            }
            match &b["content"] {
                Value::Null | Value::String(_) => Ok(()),
                Value::Array(parts) => {
                    for (k, p) in parts.iter().enumerate() {
                        block(p, &format!("{path}.content.{k}"))?;
                    }
                    Ok(())
                }
                _ => Err(bad(
                    "tool_result content must be a string or content blocks",
                    format!("{path}.content"),
                )),
            }
        }
        "image" | "document" if !b["source"].is_object() => {
            Err(bad("source must be an object", format!("{path}.source")))
        }
        _ => Ok(()),
    }
}
