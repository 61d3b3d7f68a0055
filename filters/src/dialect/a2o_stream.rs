//! Client speaks Anthropic Messages, upstream speaks OpenAI chat: the stream (spec §3.2).
//!
//! OpenAI deltas mix reasoning, text and any number of tool calls, each tool call keyed by
//! its upstream `index`; Anthropic content blocks are strictly one at a time, numbered
//! 0, 1, 2… and cannot be reopened. So the transcoder keeps one block open and routes each
//! fragment to a *lane* (thinking, text, or one lane per tool call):
//!
//! - a fragment for the open lane is written at once;
//! - a fragment for another lane closes the open block and opens one for its lane, when
//!   the open block may be closed: a text or thinking block always may, a tool block once
//!   its arguments form a complete JSON object;
//! - otherwise (fragments interleaved with an unfinished tool call) it waits in order, and
//!   the waiting lanes are written, each as one block with everything buffered, as soon as
//!   the tool block completes or the upstream finishes.
//!
//! So every `tool_use` block receives exactly the JSON its fragments spelled, and every
//! delta and stop refers to the open block of its type. A thinking block gets a
//! `signature_delta` (the caller's opaque signature) before it stops.
//!
//! The end: `finish_reason` closes everything; `message_delta` is held until the usage
//! chunk (`choices` empty, `null` or absent) so it carries final usage, then
//! `message_stop` follows at once and anything later is dropped. `[DONE]` or end of input
//! after a finish (or a `[DONE]` without one) ends the message with the usage known. End
//! of input before any finish, an upstream error chunk, or `finish_reason: "error"`
//! writes an `event: error` and no `message_stop`.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde_json::{json, Value};

use super::a2o::A2OState;
use super::a2o_response::{reasoning_of, stop_reason_for};
use super::common::{compact, OpenAiUsage, StreamEnd};
use super::errors::anthropic_error_type;
use super::sse::{write_event, SseEvent, SseParser};
use crate::usage::Usage;

/// Incremental OpenAI SSE → Anthropic SSE transcoder for one response.
///
/// Feed it the upstream body as it arrives, split anywhere; it appends the client's
/// `event: …\ndata: …\n\n` frames to `out`. Output depends only on the bytes, never on
/// how they were split. Exactly one `message_start` is written, on the first upstream
/// chunk. Blank deltas (a role-only chunk, `content: ""`, `tool_calls: []`) open nothing.
#[derive(Debug)]
pub struct OpenAiSseToAnthropic {
    parser: SseParser,
    core: Core,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Text,
    Thinking,
    /// A tool call, by its slot in `Core::tools`.
    Tool(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolState {
    /// Not yet a block: its fragments wait in `buf`.
    Waiting,
    Open,
    /// Its block stopped; late fragments are dropped (a block cannot reopen).
    Closed,
}

#[derive(Debug)]
struct ToolSlot {
    upstream: Option<u64>,
    id: Option<String>,
    name: String,
    buf: String,
    state: ToolState,
    json: JsonEnd,
}

/// Where a tool call's arguments end: the top-level object closes. Tracks strings and
/// nesting incrementally, so a long argument costs one pass, not a parse per fragment.
#[derive(Debug, Clone, Copy, Default)]
struct JsonEnd {
    depth: u32,
    started: bool,
    in_str: bool,
    esc: bool,
    done: bool,
    /// Not an object: never complete until the upstream finishes.
    bad: bool,
}

impl JsonEnd {
    fn feed(&mut self, s: &str) {
        for b in s.bytes() {
            if self.done || self.bad {
                return;
            }
            if self.in_str {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'{' => {
                    self.started = true;
                    self.depth += 1;
                }
                b'[' if self.started => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    self.done = self.depth == 0;
                }
                b'"' if self.started => self.in_str = true,
                _ if self.started => {}
                _ => self.bad = true,
            }
        }
    }
}

#[derive(Debug)]
enum Queued {
    Text(String),
    Thinking(String),
    Tool(usize),
}

#[derive(Debug)]
struct Finish {
    reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string that matched.
    stop_sequence: Option<String>,
}

#[derive(Debug)]
struct Core {
    st: A2OState,
    started: bool,
    next_index: u64,
    open: Option<(Lane, u64)>,
    queue: VecDeque<Queued>,
    tools: Vec<ToolSlot>,
    tool_blocks: usize,
    finish: Option<Finish>,
    usage: OpenAiUsage,
    usage_seen: bool,
    end: Option<StreamEnd>,
}

impl OpenAiSseToAnthropic {
    /// A transcoder for the response to the request that produced `st`.
    pub fn new(st: &A2OState) -> Self {
        Self {
            parser: SseParser::new(),
            core: Core {
                st: st.clone(),
                started: false,
                next_index: 0,
                open: None,
                queue: VecDeque::new(),
                tools: Vec::new(),
                tool_blocks: 0,
                finish: None,
                usage: OpenAiUsage::default(),
                usage_seen: false,
                end: None,
            },
        }
    }

    /// Reads the next upstream bytes and appends what they complete to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.core.end.is_some() {
            return;
        }
        let core = &mut self.core;
        self.parser.feed(chunk, |ev| core.on_event(ev, out));
        if self.parser.overflowed() && self.core.end.is_none() {
            self.core.fail(
                out,
                "api_error",
                "upstream event exceeds the size limit",
                StreamEnd::UpstreamError,
            );
        }
    }

    /// The upstream body ended. Returns how the output ended; when not
    /// [`StreamEnd::Complete`], an `event: error` frame stands in `out` in place of
    /// `message_stop` (written now for a truncation, already for an upstream error).
    /// Calling it again writes nothing and returns the same.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamEnd {
        if let Some(end) = self.core.end {
            return end;
        }
        let core = &mut self.core;
        self.parser.finish(|ev| core.on_event(ev, out));
        if let Some(end) = self.core.end {
            return end;
        }
        if self.core.finish.is_some() {
            self.core.flush(out);
            return StreamEnd::Complete;
        }
        self.core.fail(
            out,
            "api_error",
            "upstream stream ended before the response finished",
            StreamEnd::Truncated,
        );
        StreamEnd::Truncated
    }

    /// Usage reported so far (the upstream's last usage object).
    pub fn usage(&self) -> Option<Usage> {
        self.core.usage_seen.then(|| self.core.usage.usage())
    }
}

impl Core {
    fn on_event(&mut self, ev: SseEvent<'_>, out: &mut Vec<u8>) {
        if self.end.is_some() {
            return;
        }
        if ev.data.trim_ascii() == b"[DONE]" {
            if self.finish.is_none() {
                self.start(&Value::Null, out);
                self.on_finish(None, None, out);
            }
            self.flush(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(ev.data) else {
            return;
        };
        if !v.is_object() {
            return;
        }
        let err = &v["error"];
        if !err.is_null() && v["choices"].is_null() {
            self.upstream_error(err, out);
            return;
        }
        self.start(&v, out);
        if v["usage"].is_object() {
            self.usage = OpenAiUsage::from_json(&v["usage"]);
            self.usage_seen = true;
        }
        let choices = v["choices"].as_array();
        let choice = choices.and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0));
        if let (Some(c), true) = (choice, self.finish.is_none()) {
            let d = &c["delta"];
            if let Some(r) = reasoning_of(d) {
                self.fragment(Lane::Thinking, r, out);
            }
            match &d["content"] {
                Value::String(s) => self.fragment(Lane::Text, s, out),
                Value::Array(parts) => {
                    for p in parts.iter().filter(|p| p["type"] == "text") {
                        self.fragment(Lane::Text, p["text"].as_str().unwrap_or(""), out);
                    }
                }
                _ => {}
            }
            if let Some(r) = d["refusal"].as_str() {
                self.fragment(Lane::Text, r, out);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                self.tool_fragment(tc, out);
            }
            match c["finish_reason"].as_str() {
                Some("error") => {
                    self.upstream_error(
                        &json!({"message": "upstream finished with an error"}),
                        out,
                    );
                    return;
                }
                Some(r) => self.on_finish(Some(r), c["stop_reason"].as_str(), out),
                None => {}
            }
        }
        let usage_chunk = choices.is_none_or(Vec::is_empty) && v["usage"].is_object();
        if usage_chunk && self.finish.is_some() {
            self.flush(out);
        }
    }

    fn event(&self, out: &mut Vec<u8>, value: Value) {
        let name = value["type"].as_str().unwrap_or("").to_string();
        write_event(out, &name, &value);
    }

    fn start(&mut self, v: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let u = OpenAiUsage::from_json(&v["usage"]);
        let model = self.st.model(v["model"].as_str()).to_string();
        self.event(
            out,
            json!({"type": "message_start", "message": {
                "id": self.st.message_id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": null,
                "stop_sequence": null,
                // Zero cache fields tell clients such as Claude Code that the counts exist.
                "usage": {
                    "input_tokens": u.prompt.saturating_sub(u.cached),
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": u.cached,
                },
            }}),
        );
    }

    fn tool_fragment(&mut self, tc: &Value, out: &mut Vec<u8>) {
        let up = tc["index"].as_u64();
        let id = tc["id"].as_str().filter(|s| !s.is_empty());
        let name = tc["function"]["name"].as_str().filter(|s| !s.is_empty());
        let args: Cow<'_, str> = match &tc["function"]["arguments"] {
            Value::String(s) => Cow::Borrowed(s),
            v @ Value::Object(_) => Cow::Owned(compact(v)),
            _ => Cow::Borrowed(""),
        };
        let known = match (up, id) {
            (Some(u), _) => self.tools.iter().rposition(|t| t.upstream == Some(u)),
            (None, Some(id)) => self.tools.iter().rposition(|t| t.id.as_deref() == Some(id)),
            (None, None) => self.tools.len().checked_sub(1),
        };
        // A different id on a known index is a new call (some backends reuse index 0).
        let known = known.filter(|&s| match (&self.tools[s].id, id) {
            (Some(have), Some(new)) => have == new,
            _ => true,
        });
        let slot = match known {
            Some(s) => s,
            None => {
                self.tools.push(ToolSlot {
                    upstream: up,
                    id: None,
                    name: String::new(),
                    buf: String::new(),
                    state: ToolState::Waiting,
                    json: JsonEnd::default(),
                });
                self.tools.len() - 1
            }
        };
        let t = &mut self.tools[slot];
        if t.state == ToolState::Waiting {
            if let (None, Some(id)) = (&t.id, id) {
                t.id = Some(id.to_string());
            }
            if let (true, Some(n)) = (t.name.is_empty(), name) {
                t.name = n.to_string();
            }
        }
        t.json.feed(&args);
        self.fragment(Lane::Tool(slot), &args, out);
    }

    fn fragment(&mut self, lane: Lane, text: &str, out: &mut Vec<u8>) {
        match lane {
            Lane::Tool(s) if self.tools[s].state == ToolState::Closed => return,
            // A blank text or reasoning delta must not open a block.
            Lane::Text | Lane::Thinking if text.is_empty() => return,
            _ => {}
        }
        if self.open.map(|(l, _)| l) == Some(lane) {
            self.delta(lane, text, out);
            if !self.queue.is_empty() && self.closable() {
                self.drain(false, out);
            }
            return;
        }
        // While anything waits, the open block is an unfinished tool call.
        if self.queue.is_empty() && self.closable() {
            self.close_open(out);
            self.open_lane(lane, text, out);
            return;
        }
        match lane {
            Lane::Text => match self.queue.back_mut() {
                Some(Queued::Text(b)) => b.push_str(text),
                _ => self.queue.push_back(Queued::Text(text.to_string())),
            },
            Lane::Thinking => match self.queue.back_mut() {
                Some(Queued::Thinking(b)) => b.push_str(text),
                _ => self.queue.push_back(Queued::Thinking(text.to_string())),
            },
            Lane::Tool(s) => {
                self.tools[s].buf.push_str(text);
                if !self
                    .queue
                    .iter()
                    .any(|q| matches!(q, Queued::Tool(x) if *x == s))
                {
                    self.queue.push_back(Queued::Tool(s));
                }
            }
        }
    }

    fn closable(&self) -> bool {
        match self.open {
            Some((Lane::Tool(s), _)) => self.tools[s].json.done,
            _ => true,
        }
    }

    fn delta(&self, lane: Lane, text: &str, out: &mut Vec<u8>) {
        let Some((_, index)) = self.open else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let delta = match lane {
            Lane::Text => json!({"type": "text_delta", "text": text}),
            Lane::Thinking => json!({"type": "thinking_delta", "thinking": text}),
            Lane::Tool(_) => json!({"type": "input_json_delta", "partial_json": text}),
        };
        self.event(
            out,
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn open_lane(&mut self, lane: Lane, text: &str, out: &mut Vec<u8>) {
        let index = self.next_index;
        self.next_index += 1;
        let (block, text) = match lane {
            Lane::Text => (json!({"type": "text", "text": ""}), Cow::Borrowed(text)),
            Lane::Thinking => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                Cow::Borrowed(text),
            ),
            Lane::Tool(s) => {
                let msg_id = &self.st.message_id;
                let t = &mut self.tools[s];
                t.state = ToolState::Open;
                let id =
                    t.id.clone()
                        .unwrap_or_else(|| format!("toolu_{msg_id}_{s}"));
                let name = if t.name.is_empty() {
                    format!("unnamed_tool_{s}")
                } else {
                    self.st.original_tool_name(&t.name).to_string()
                };
                let mut args = std::mem::take(&mut t.buf);
                args.push_str(text);
                self.tool_blocks += 1;
                (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    Cow::Owned(args),
                )
            }
        };
        self.event(
            out,
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some((lane, index));
        self.delta(lane, &text, out);
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some((lane, index)) = self.open.take() else {
            return;
        };
        match lane {
            Lane::Thinking => self.event(
                out,
                json!({"type": "content_block_delta", "index": index, "delta": {
                    "type": "signature_delta", "signature": self.st.thinking_signature,
                }}),
            ),
            Lane::Tool(s) => self.tools[s].state = ToolState::Closed,
            Lane::Text => {}
        }
        self.event(out, json!({"type": "content_block_stop", "index": index}));
    }

    /// Writes waiting lanes in order; with `force`, all of them (the upstream finished, so
    /// no tool call can grow any more).
    fn drain(&mut self, force: bool, out: &mut Vec<u8>) {
        while !self.queue.is_empty() && (force || self.closable()) {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            self.close_open(out);
            match q {
                Queued::Text(t) => self.open_lane(Lane::Text, &t, out),
                Queued::Thinking(t) => self.open_lane(Lane::Thinking, &t, out),
                Queued::Tool(s) => self.open_lane(Lane::Tool(s), "", out),
            }
        }
    }

    fn on_finish(&mut self, reason: Option<&str>, stop_sequence: Option<&str>, out: &mut Vec<u8>) {
        self.drain(true, out);
        self.close_open(out);
        self.finish = Some(Finish {
            reason: reason.map(str::to_string),
            stop_sequence: stop_sequence.map(str::to_string),
        });
    }

    /// Writes the held `message_delta` and `message_stop`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let Some(f) = &self.finish else {
            return;
        };
        let tools = self.tool_blocks > 0;
        let mut reason = stop_reason_for(f.reason.as_deref(), tools);
        let mut seq = Value::Null;
        if let (Some("stop"), Some(s), false) = (f.reason.as_deref(), &f.stop_sequence, tools) {
            reason = "stop_sequence";
            seq = json!(s);
        }
        let u = self.usage;
        self.event(
            out,
            json!({"type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": seq},
            "usage": {
                "input_tokens": u.prompt.saturating_sub(u.cached),
                "output_tokens": u.completion,
                "cache_read_input_tokens": u.cached,
            }}),
        );
        self.event(out, json!({"type": "message_stop"}));
        self.end = Some(StreamEnd::Complete);
    }

    fn upstream_error(&mut self, e: &Value, out: &mut Vec<u8>) {
        let message = e["message"]
            .as_str()
            .or_else(|| e.as_str())
            .unwrap_or("upstream error")
            .to_string();
        let etype = match e["code"].as_u64().or_else(|| e["status"].as_u64()) {
            Some(n) => anthropic_error_type(u16::try_from(n).unwrap_or(500)),
            None => {
                let s = format!(
                    "{} {}",
                    e["type"].as_str().unwrap_or(""),
                    e["code"].as_str().unwrap_or("")
                )
                .to_ascii_lowercase();
                if s.contains("rate_limit") {
                    "rate_limit_error"
                } else if s.contains("overload") || s.contains("unavailable") {
                    "overloaded_error"
                } else if s.contains("invalid_request") || s.contains("context_length") {
                    "invalid_request_error"
                } else {
                    "api_error"
                }
            }
        };
        self.fail(out, etype, &message, StreamEnd::UpstreamError);
    }

    fn fail(&mut self, out: &mut Vec<u8>, etype: &str, message: &str, end: StreamEnd) {
        self.event(
            out,
            json!({"type": "error", "error": {"type": etype, "message": message}}),
        );
        self.end = Some(end);
    }
}
