//! The CLI's NDJSON protocol, in pure functions: the user frame a request becomes, and
//! what each line the CLI prints means for the answer (Anthropic stream events, ready
//! to be written as SSE frames or translated).

use serde_json::{json, Value};

/// The user frame for a request: the whole conversation flattened into one message
/// (system text first as `<system>…</system>`, then `User:`/`Assistant:` turns), since
/// a fresh process has no history. A lone user message goes as it is.
pub fn user_frame(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut system: Vec<String> = Vec::new();
    // Anthropic requests carry the system prompt apart.
    match v.get("system") {
        Some(Value::String(s)) if !s.trim().is_empty() => system.push(s.clone()),
        Some(Value::Array(blocks)) => system.extend(blocks.iter().filter_map(text_of)),
        _ => {}
    }
    let mut turns: Vec<(String, String)> = Vec::new();
    for m in v.get("messages")?.as_array()? {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = content_text(m.get("content").unwrap_or(&Value::Null));
        match role {
            "system" | "developer" => {
                if !text.trim().is_empty() {
                    system.push(text);
                }
            }
            "assistant" => turns.push(("Assistant".into(), text)),
            _ => turns.push(("User".into(), text)),
        }
    }
    let content = if system.is_empty() && turns.len() == 1 && turns[0].0 == "User" {
        turns.remove(0).1
    } else {
        let mut out = String::new();
        for s in &system {
            out.push_str("<system>");
            out.push_str(s);
            out.push_str("</system>\n\n");
        }
        for (who, text) in &turns {
            out.push_str(who);
            out.push_str(": ");
            out.push_str(text);
            out.push_str("\n\n");
        }
        out.trim_end().to_string()
    };
    let frame = json!({
        "type": "user",
        "message": {"role": "user", "content": content},
        "parent_tool_use_id": null,
        "session_id": "",
    });
    let mut line = serde_json::to_vec(&frame).ok()?;
    line.push(b'\n');
    Some(line)
}

fn text_of(block: &Value) -> Option<String> {
    block
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") | None => text_of(p),
                Some("tool_result") => p.get("content").map(content_text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What one line the CLI printed means.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// An Anthropic stream event (`stream_event`), as an SSE frame.
    Event(Vec<u8>),
    /// A whole assistant message (without partial messages this is all there is of the
    /// answer): its text.
    Assistant(String),
    /// The turn ended: whether in error, the error text, the stop reason and the usage.
    Result {
        /// The CLI reported an error.
        is_error: bool,
        /// Its text (the answer, or the error).
        text: String,
        /// Why the model stopped.
        stop_reason: Option<String>,
        /// Anthropic-shaped usage.
        usage: Value,
    },
    /// Anything else (init, control responses, rate-limit notes, user echoes).
    Other,
    /// A line that starts like JSON and is not: the process is broken.
    Garbage,
}

/// Reads one line. Lines that do not start with `{` (debug output some builds print)
/// are [`Line::Other`].
pub fn parse_line(line: &[u8]) -> Line {
    let trimmed = line.trim_ascii();
    if !trimmed.starts_with(b"{") {
        return Line::Other;
    }
    let Ok(v) = serde_json::from_slice::<Value>(trimmed) else {
        return Line::Garbage;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("stream_event") => match v.get("event") {
            Some(ev) => Line::Event(sse_frame(ev)),
            None => Line::Other,
        },
        Some("assistant") => {
            let content = v.pointer("/message/content").unwrap_or(&Value::Null);
            Line::Assistant(content_text(content))
        }
        Some("result") => Line::Result {
            is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            text: v
                .get("result")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            stop_reason: v
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            usage: v.get("usage").cloned().unwrap_or(Value::Null),
        },
        _ => Line::Other,
    }
}

/// An Anthropic event as an SSE frame: `event: <type>\ndata: <json>\n\n`.
pub fn sse_frame(ev: &Value) -> Vec<u8> {
    let kind = ev.get("type").and_then(Value::as_str).unwrap_or("message");
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, ev);
    out.extend_from_slice(b"\n\n");
    out
}

/// The events of an answer the CLI gave without partial messages: one text block.
pub fn message_start(id: &str, model: &str) -> Vec<u8> {
    sse_frame(&json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}}}))
}

/// A whole text block's events, at block `index`.
pub fn text_block(index: usize, text: &str) -> Vec<u8> {
    let mut out = sse_frame(&json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "text", "text": ""}}));
    out.extend(sse_frame(
        &json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "text_delta", "text": text}}),
    ));
    out.extend(sse_frame(
        &json!({"type": "content_block_stop", "index": index}),
    ));
    out
}

/// The end of a message: its stop reason and usage, then `message_stop`.
pub fn message_end(stop_reason: Option<&str>, usage: &Value) -> Vec<u8> {
    let mut out = sse_frame(&json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
        "usage": usage}));
    out.extend(sse_frame(&json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_user_message_goes_as_it_is() {
        let f = user_frame(br#"{"messages":[{"role":"user","content":"hi there"}]}"#).unwrap();
        assert!(f.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["type"], "user");
        assert_eq!(v["message"]["content"], "hi there");
    }

    #[test]
    fn a_conversation_is_flattened() {
        let f = user_frame(
            br#"{"system":"be brief","messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"text","text":"b"}]},{"role":"user","content":"c"}]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(
            v["message"]["content"],
            "<system>be brief</system>\n\nUser: a\n\nAssistant: b\n\nUser: c"
        );
        let f = user_frame(
            br#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["message"]["content"], "<system>s</system>\n\nUser: u");
        assert!(user_frame(b"{}").is_none());
    }

    #[test]
    fn lines_are_read() {
        assert_eq!(parse_line(b"[SandboxDebug] hello"), Line::Other);
        assert_eq!(parse_line(b"{not json"), Line::Garbage);
        assert_eq!(
            parse_line(br#"{"type":"system","subtype":"init"}"#),
            Line::Other
        );
        let Line::Event(f) =
            parse_line(br#"{"type":"stream_event","event":{"type":"message_stop"}}"#)
        else {
            panic!()
        };
        assert_eq!(
            f,
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        assert_eq!(
            parse_line(
                br#"{"type":"assistant","message":{"content":[{"type":"text","text":"x"}]}}"#
            ),
            Line::Assistant("x".into())
        );
        let Line::Result { is_error, text, .. } =
            parse_line(br#"{"type":"result","is_error":true,"result":"boom"}"#)
        else {
            panic!()
        };
        assert!(is_error);
        assert_eq!(text, "boom");
    }

    #[test]
    fn synthesized_events_are_whole_frames() {
        let mut all = message_start("msg_1", "m");
        all.extend(text_block(0, "hi"));
        all.extend(message_end(Some("end_turn"), &json!({"output_tokens": 1})));
        let frames = String::from_utf8(all).unwrap();
        assert_eq!(frames.matches("\n\n").count(), 6);
        assert!(frames.starts_with("event: message_start\n"));
        assert!(frames.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }
}
