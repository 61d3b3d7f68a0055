//! Anthropic Messages wire-format documents for the mock model: the non-streamed
//! `message`, the SSE events of a streamed one in the API's order, error bodies, the
//! model list and `count_tokens`. Used by `mock-llm` (its `/v1/messages` surface) and by
//! `fake-cli` (whose `stream_event` lines carry these events).
//!
//! A stream is `message_start`, then per content block `content_block_start`, its
//! `content_block_delta`s and `content_block_stop`, then `message_delta` (stop reason
//! and the cumulative output count) and `message_stop`; a `ping` follows the first
//! `content_block_start` and every [`PING_EVERY`] deltas, as the real API sends them
//! "anywhere" in a stream.

use serde_json::{json, Value};

use crate::mockgen;

/// Deltas between two `ping` events of a stream.
pub const PING_EVERY: usize = 25;

/// Usage in Anthropic's split: `input` excludes the cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens`.
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
    /// `cache_creation_input_tokens`.
    pub cache_creation: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
}

impl Usage {
    /// The `usage` object with all four counts.
    pub fn to_value(&self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
}

/// The tokens of a text block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    /// `n` canned words, made as they are streamed (long answers cost nothing up front).
    Canned(usize),
    /// Given pieces, streamed one per delta.
    Given(Vec<String>),
}

impl Tokens {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            Tokens::Canned(n) => *n,
            Tokens::Given(v) => v.len(),
        }
    }

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i` (empty past the end).
    pub fn get(&self, i: usize) -> String {
        match self {
            Tokens::Canned(n) if i < *n => mockgen::canned_token(i, *n),
            Tokens::Given(v) => v.get(i).cloned().unwrap_or_default(),
            Tokens::Canned(_) => String::new(),
        }
    }

    /// All tokens joined.
    pub fn text(&self) -> String {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

/// One content block of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Extended thinking: `deltas` canned `thinking_delta`s, then one `signature_delta`.
    Thinking {
        /// Number of `thinking_delta` events.
        deltas: usize,
        /// The opaque signature sent before the block stops.
        signature: String,
    },
    /// Text, one `text_delta` per token.
    Text(Tokens),
    /// A tool call. Streamed as an empty `input_json_delta` and then the input in
    /// [`mockgen::TOOL_FRAGMENT_BYTES`]-byte pieces cut mid-JSON; an input of `{}`
    /// streams no delta at all (a tool without arguments).
    ToolUse {
        /// `toolu_…` id.
        id: String,
        /// Tool name.
        name: String,
        /// The input object as compact JSON text.
        input: String,
    },
}

impl Block {
    fn fragments(input: &str) -> Vec<String> {
        if input == "{}" {
            return Vec::new();
        }
        let mut f = vec![String::new()];
        f.extend(mockgen::split_fragments(
            input,
            mockgen::TOOL_FRAGMENT_BYTES,
        ));
        f
    }

    /// Number of `content_block_delta` events the block streams.
    pub fn deltas(&self) -> usize {
        match self {
            Block::Thinking { deltas, .. } => deltas + 1,
            Block::Text(t) => t.len(),
            Block::ToolUse { input, .. } => Self::fragments(input).len(),
        }
    }

    /// Output tokens the block counts for: one per thinking or text delta, one per
    /// non-empty tool input fragment.
    pub fn output_tokens(&self) -> u64 {
        let n = match self {
            Block::Thinking { deltas, .. } => *deltas,
            Block::Text(t) => t.len(),
            Block::ToolUse { input, .. } => Self::fragments(input).len().saturating_sub(1),
        };
        n as u64
    }

    /// The `content_block` of its `content_block_start`.
    pub fn start_value(&self) -> Value {
        match self {
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": ""}),
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        }
    }

    /// The `delta` of its delta number `k`.
    pub fn delta_value(&self, k: usize) -> Value {
        match self {
            Block::Thinking { deltas, signature } if k >= *deltas => {
                json!({"type": "signature_delta", "signature": signature})
            }
            Block::Thinking { deltas, .. } => {
                json!({"type": "thinking_delta", "thinking": mockgen::canned_thought(k, *deltas)})
            }
            Block::Text(t) => json!({"type": "text_delta", "text": t.get(k)}),
            Block::ToolUse { input, .. } => {
                let f = Self::fragments(input);
                json!({"type": "input_json_delta", "partial_json": f.get(k).cloned().unwrap_or_default()})
            }
        }
    }

    /// The block as a non-streamed message carries it.
    pub fn final_value(&self) -> Value {
        match self {
            Block::Thinking { deltas, signature } => {
                let text: String = (0..*deltas)
                    .map(|i| mockgen::canned_thought(i, *deltas))
                    .collect();
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            Block::Text(t) => json!({"type": "text", "text": t.text()}),
            Block::ToolUse { id, name, input } => {
                let input: Value = serde_json::from_str(input).unwrap_or_else(|_| json!({}));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

/// A whole answer: what both the non-streamed message and the stream are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `msg_…` id.
    pub id: String,
    /// Model name.
    pub model: String,
    /// Content blocks in order (their position is the stream's `index`).
    pub blocks: Vec<Block>,
    /// `stop_reason` (`end_turn`, `max_tokens`, `tool_use`, or any string).
    pub stop_reason: String,
    /// Usage; `output` is the final (cumulative) count.
    pub usage: Usage,
}

/// What a mock answer should hold, from the request and the mock's knobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Text tokens wanted (0: no text block).
    pub tokens: usize,
    /// The request's `max_tokens`. Wanting more tokens cuts the text there, calls no
    /// tool and stops with `max_tokens`, as the API does.
    pub max_tokens: u64,
    /// `thinking_delta`s of a thinking block before the text (0: none).
    pub thinking: usize,
    /// Tool calls after the text (`stop_reason: tool_use`).
    pub tool_calls: Vec<mockgen::MockToolCall>,
    /// A stop reason sent instead of the natural one (any string).
    pub stop_reason: Option<String>,
    /// The input side of the usage; `output` is counted from the blocks.
    pub usage: Usage,
}

impl Answer {
    /// The answer of `plan`; `seq` makes its ids (`msg_mock…`, `toolu_mock…`) unique.
    pub fn from_plan(plan: Plan, model: String, seq: u64) -> Self {
        let Plan {
            tokens,
            max_tokens,
            thinking,
            mut tool_calls,
            stop_reason,
            mut usage,
        } = plan;
        let (text, natural_stop) = if tokens as u64 > max_tokens {
            tool_calls.clear();
            (max_tokens as usize, "max_tokens")
        } else if tool_calls.is_empty() {
            (tokens, "end_turn")
        } else {
            (tokens, "tool_use")
        };
        let mut blocks = Vec::new();
        if thinking > 0 {
            blocks.push(Block::Thinking {
                deltas: thinking,
                signature: format!("bW9jay1zaWduYXR1cmUt{seq:08}"),
            });
        }
        if text > 0 {
            blocks.push(Block::Text(Tokens::Canned(text)));
        }
        for (i, c) in tool_calls.into_iter().enumerate() {
            blocks.push(Block::ToolUse {
                id: format!("toolu_mock{seq:08}x{i}"),
                name: c.name,
                input: c.arguments,
            });
        }
        usage.output = Self::output_tokens(&blocks);
        Self {
            id: format!("msg_mock{seq:012}"),
            model,
            blocks,
            stop_reason: stop_reason.unwrap_or_else(|| natural_stop.to_string()),
            usage,
        }
    }

    /// Sum of the blocks' [`Block::output_tokens`].
    pub fn output_tokens(blocks: &[Block]) -> u64 {
        blocks.iter().map(Block::output_tokens).sum()
    }

    /// Number of `content_block_delta` events of the stream.
    pub fn deltas(&self) -> usize {
        self.blocks.iter().map(Block::deltas).sum()
    }

    /// The non-streamed `message` document.
    pub fn message(&self) -> Value {
        let content: Vec<Value> = self.blocks.iter().map(Block::final_value).collect();
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": self.stop_reason, "stop_sequence": null,
            "usage": self.usage.to_value(),
        })
    }

    /// The stream's events, one at a time. With `full_delta_usage` the `message_delta`
    /// repeats the input-side counts beside `output_tokens` (as newer API versions
    /// do); without, it carries `output_tokens` only (the documented minimum).
    pub fn events(self, full_delta_usage: bool) -> MessageEvents {
        MessageEvents {
            answer: self,
            pos: Pos::Start,
            sent_deltas: 0,
            ping_due: false,
            full_delta_usage,
        }
    }
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event object (its `type` is the SSE event name).
    pub value: Value,
    /// Whether it is a `content_block_delta`: those carry the tokens, so delays and
    /// fault counts apply to them.
    pub is_delta: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Start,
    BlockStart(usize),
    Delta(usize, usize),
    BlockStop(usize),
    MessageDelta,
    MessageStop,
    Done,
}

/// The events of a streamed [`Answer`], made as they are pulled.
#[derive(Debug, Clone)]
pub struct MessageEvents {
    answer: Answer,
    pos: Pos,
    sent_deltas: usize,
    ping_due: bool,
    full_delta_usage: bool,
}

impl MessageEvents {
    fn after_block(&self, b: usize) -> Pos {
        if b + 1 < self.answer.blocks.len() {
            Pos::BlockStart(b + 1)
        } else {
            Pos::MessageDelta
        }
    }

    fn other(value: Value) -> Option<Event> {
        Some(Event {
            value,
            is_delta: false,
        })
    }
}

impl Iterator for MessageEvents {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.ping_due {
            self.ping_due = false;
            return Self::other(ping());
        }
        match self.pos {
            Pos::Start => {
                self.pos = if self.answer.blocks.is_empty() {
                    Pos::MessageDelta
                } else {
                    Pos::BlockStart(0)
                };
                let mut start = self.answer.usage;
                // The real API reports a token or so of output already at the start.
                start.output = start.output.min(1);
                Self::other(message_start(&self.answer.id, &self.answer.model, &start))
            }
            Pos::BlockStart(b) => {
                let block = self.answer.blocks.get(b)?;
                self.pos = if block.deltas() > 0 {
                    Pos::Delta(b, 0)
                } else {
                    Pos::BlockStop(b)
                };
                self.ping_due = b == 0;
                Self::other(content_block_start(b, block.start_value()))
            }
            Pos::Delta(b, k) => {
                let block = self.answer.blocks.get(b)?;
                let value = content_block_delta(b, block.delta_value(k));
                self.pos = if k + 1 < block.deltas() {
                    Pos::Delta(b, k + 1)
                } else {
                    Pos::BlockStop(b)
                };
                self.sent_deltas += 1;
                self.ping_due = self.sent_deltas % PING_EVERY == 0;
                Some(Event {
                    value,
                    is_delta: true,
                })
            }
            Pos::BlockStop(b) => {
                self.pos = self.after_block(b);
                Self::other(content_block_stop(b))
            }
            Pos::MessageDelta => {
                self.pos = Pos::MessageStop;
                let u = &self.answer.usage;
                let usage = if self.full_delta_usage {
                    u.to_value()
                } else {
                    json!({"output_tokens": u.output})
                };
                Self::other(message_delta(&self.answer.stop_reason, usage))
            }
            Pos::MessageStop => {
                self.pos = Pos::Done;
                Self::other(message_stop())
            }
            Pos::Done => None,
        }
    }
}

/// `message_start`: the message with empty content and the input side of the usage.
pub fn message_start(id: &str, model: &str, usage: &Usage) -> Value {
    json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage.to_value(),
    }})
}

/// `content_block_start` of block `index`.
pub fn content_block_start(index: usize, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

/// `content_block_delta` of block `index`.
pub fn content_block_delta(index: usize, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

/// `content_block_stop` of block `index`.
pub fn content_block_stop(index: usize) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

/// `message_delta` with the stop reason and a usage object.
pub fn message_delta(stop_reason: &str, usage: Value) -> Value {
    json!({"type": "message_delta",
           "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": usage})
}

/// `message_stop`.
pub fn message_stop() -> Value {
    json!({"type": "message_stop"})
}

/// `ping`.
pub fn ping() -> Value {
    json!({"type": "ping"})
}

/// An in-stream `error` event (sent after a 200 when the API fails mid-answer).
pub fn error_event(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

/// One SSE frame: `event: <type>\ndata: <json>\n\n`, the event name taken from the
/// object's `type`.
pub fn frame(event: &Value) -> Vec<u8> {
    let name = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, event);
    out.extend_from_slice(b"\n\n");
    out
}

/// The `error.type` the API uses for an HTTP status: 400 `invalid_request_error`,
/// 401 `authentication_error`, 403 `permission_error`, 404 `not_found_error`, 413
/// `request_too_large`, 429 `rate_limit_error`, 500 `api_error`, 529
/// `overloaded_error`; other 4xx `invalid_request_error`, anything else `api_error`.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An error body: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error_body(error_type: &str, message: &str, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }))
    .unwrap_or_default()
}

/// Checks a Messages request the way the API does for the fields tests depend on:
/// `model` (a string) and `messages` (an array) always, `max_tokens` (an integer ≥ 1)
/// unless it is a `count_tokens` request. The error is the API's message text.
pub fn validate_request(request: &Value, count_tokens: bool) -> Result<(), String> {
    if !request.is_object() {
        return Err("body: Input should be an object".into());
    }
    match request.get("model") {
        None => return Err("model: Field required".into()),
        Some(m) if !m.is_string() => return Err("model: Input should be a valid string".into()),
        Some(_) => {}
    }
    match request.get("messages") {
        None => return Err("messages: Field required".into()),
        Some(m) if !m.is_array() => return Err("messages: Input should be a valid list".into()),
        Some(_) => {}
    }
    if count_tokens {
        return Ok(());
    }
    match request.get("max_tokens") {
        None => Err("max_tokens: Field required".into()),
        Some(v) => match v.as_u64() {
            None => Err("max_tokens: Input should be a valid integer".into()),
            Some(0) => Err("max_tokens: Input should be greater than or equal to 1".into()),
            Some(_) => Ok(()),
        },
    }
}

/// The API's model list: `{"data":[{"type":"model","id","display_name","created_at"}],
/// "has_more":false,"first_id","last_id"}`.
pub fn model_list(models: &[String]) -> Vec<u8> {
    let data: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({"type": "model", "id": m, "display_name": m,
                   "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    serde_json::to_vec(&json!({
        "data": data, "has_more": false,
        "first_id": models.first(), "last_id": models.last(),
    }))
    .unwrap_or_default()
}

/// The `count_tokens` answer.
pub fn count_tokens(input_tokens: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"input_tokens": input_tokens})).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(blocks: Vec<Block>) -> Answer {
        let output = Answer::output_tokens(&blocks);
        Answer {
            id: "msg_1".into(),
            model: "m".into(),
            blocks,
            stop_reason: "tool_use".into(),
            usage: Usage {
                input: 50,
                output,
                cache_creation: 5,
                cache_read: 10,
            },
        }
    }

    #[test]
    fn stream_order_and_tool_json() {
        let a = answer(vec![
            Block::Thinking {
                deltas: 2,
                signature: "sig".into(),
            },
            Block::Text(Tokens::Canned(3)),
            Block::ToolUse {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                input: r#"{"city":"Paris"}"#.into(),
            },
            Block::ToolUse {
                id: "toolu_2".into(),
                name: "now".into(),
                input: "{}".into(),
            },
        ]);
        assert_eq!(a.usage.output, 2 + 3 + 3);
        let deltas = a.deltas();
        let events: Vec<Event> = a.clone().events(false).collect();
        let types: Vec<&str> = events
            .iter()
            .map(|e| e.value["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events.iter().filter(|e| e.is_delta).count(), deltas);
        assert_eq!(events[0].value["message"]["usage"]["output_tokens"], 1);
        assert_eq!(
            events[0].value["message"]["usage"]["cache_read_input_tokens"],
            10
        );
        assert_eq!(events[5].value["delta"]["type"], "signature_delta");
        let args: String = events
            .iter()
            .filter(|e| e.value["index"] == 2 && e.is_delta)
            .map(|e| e.value["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        let md = &events[events.len() - 2].value;
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
        assert_eq!(md["usage"], json!({"output_tokens": 8}));
        let full: Vec<Event> = a.clone().events(true).collect();
        assert_eq!(full[full.len() - 2].value["usage"]["input_tokens"], 50);

        let m = a.message();
        assert_eq!(m["content"][0]["thinking"], "Let me");
        assert_eq!(m["content"][1]["text"], "Hello! This is");
        assert_eq!(m["content"][2]["input"]["city"], "Paris");
        assert_eq!(m["content"][3]["input"], json!({}));
        assert_eq!(m["stop_sequence"], Value::Null);
    }

    #[test]
    fn plans() {
        let call = mockgen::MockToolCall {
            name: "f".into(),
            arguments: r#"{"a":1}"#.into(),
        };
        let plan = Plan {
            tokens: 4,
            max_tokens: 100,
            thinking: 2,
            tool_calls: vec![call.clone(), call],
            ..Plan::default()
        };
        let a = Answer::from_plan(plan.clone(), "m".into(), 7);
        assert_eq!(a.blocks.len(), 4);
        assert_eq!(a.stop_reason, "tool_use");
        assert_eq!(a.usage.output, 2 + 4 + 2 * 2);
        assert!(a.id.starts_with("msg_"));
        let cut = Answer::from_plan(
            Plan {
                max_tokens: 3,
                ..plan.clone()
            },
            "m".into(),
            8,
        );
        assert_eq!(cut.stop_reason, "max_tokens");
        assert_eq!(cut.blocks.len(), 2, "thinking and the cut text, no tool");
        assert_eq!(cut.blocks[1], Block::Text(Tokens::Canned(3)));
        let odd = Answer::from_plan(
            Plan {
                stop_reason: Some("banana".into()),
                tool_calls: vec![],
                ..plan
            },
            "m".into(),
            9,
        );
        assert_eq!(odd.stop_reason, "banana");
        let plain = Answer::from_plan(
            Plan {
                tokens: 1,
                max_tokens: 1,
                ..Plan::default()
            },
            "m".into(),
            1,
        );
        assert_eq!(plain.stop_reason, "end_turn");
    }

    #[test]
    fn empty_answer_and_pings() {
        let types: Vec<String> = answer(vec![])
            .events(false)
            .map(|e| e.value["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["message_start", "message_delta", "message_stop"]);
        let pings = answer(vec![Block::Text(Tokens::Canned(2 * PING_EVERY))])
            .events(false)
            .filter(|e| e.value["type"] == "ping")
            .count();
        assert_eq!(pings, 3);
        assert_eq!(Tokens::Given(vec!["a".into()]).get(5), "");
        assert!(Tokens::Canned(0).is_empty());
    }

    #[test]
    fn frames_and_errors() {
        let f = frame(&message_stop());
        assert_eq!(
            f,
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(418), "invalid_request_error");
        assert_eq!(error_type(503), "api_error");
        let e: Value = serde_json::from_slice(&error_body("api_error", "x", "req_1")).unwrap();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "api_error");
    }

    #[test]
    fn validation() {
        let ok = json!({"model": "m", "max_tokens": 5, "messages": []});
        assert!(validate_request(&ok, false).is_ok());
        let no_max = json!({"model": "m", "messages": []});
        assert_eq!(
            validate_request(&no_max, false).unwrap_err(),
            "max_tokens: Field required"
        );
        assert!(validate_request(&no_max, true).is_ok());
        let no_msgs = json!({"model": "m", "max_tokens": 5});
        assert!(validate_request(&no_msgs, true)
            .unwrap_err()
            .starts_with("messages"));
        let zero = json!({"model": "m", "max_tokens": 0, "messages": []});
        assert!(validate_request(&zero, false).is_err());
        assert!(validate_request(&json!([1]), false).is_err());
        assert!(validate_request(&json!({"messages": []}), true).is_err());
    }

    #[test]
    fn lists() {
        let v: Value = serde_json::from_slice(&model_list(&["a".into(), "b".into()])).unwrap();
        assert_eq!(v["data"][1]["type"], "model");
        assert_eq!(v["has_more"], false);
        assert_eq!(v["last_id"], "b");
        let c: Value = serde_json::from_slice(&count_tokens(7)).unwrap();
        assert_eq!(c, json!({"input_tokens": 7}));
    }
}
