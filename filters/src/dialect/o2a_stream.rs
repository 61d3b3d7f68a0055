//! Client speaks OpenAI chat, upstream speaks Anthropic Messages: the stream (spec §3.1).
//!
//! Every complete upstream event is translated at once into zero or more
//! `chat.completion.chunk`s; nothing is held back. All chunks carry the same `id`
//! (Anthropic's message id), `created` and `model`. Tool calls get a per-response counter
//! as their `index` (the first tool after a text block is index 0, not Anthropic's block
//! index 1); `id` and `name` appear only in a call's first fragment; a call that streams
//! no arguments gets `"{}"` when its block stops. The finish chunk is written at
//! `message_stop` (which follows `message_delta` at once), so a stream cut or failing
//! before its end never carries a `finish_reason`.

use serde_json::{json, Value};

use super::common::{AnthropicUsage, StreamEnd};
use super::o2a::{O2AState, JSON_TOOL};
use super::o2a_response::{finish_reason_for, json_content};
use super::sse::{write_data, write_done, SseEvent, SseParser};
use crate::usage::Usage;

/// Incremental Anthropic SSE → OpenAI SSE transcoder for one response.
///
/// Feed it the upstream body as it arrives, split anywhere; it appends the client's bytes
/// to `out`. Output for a stream depends only on its bytes, never on how they were split.
/// `ping`, comments, unknown events and CRLF line ends change nothing. An upstream
/// `error` event becomes `data: {"error":{…,"code":<anthropic type>}}` and ends the
/// output (no `finish_reason`, no `[DONE]`); so does an upstream that ends before
/// `message_stop` ([`Self::finish`]).
#[derive(Debug)]
pub struct AnthropicSseToOpenAi {
    parser: SseParser,
    core: Core,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// A client tool call with its OpenAI index; `args` once a fragment was sent.
    Tool {
        seq: u64,
        args: bool,
    },
    /// The JSON-mode tool, streamed as content.
    Json {
        any: bool,
    },
    Thinking,
    /// A block the client cannot see (redacted thinking, server tools, future types).
    Other,
}

#[derive(Debug)]
struct Block {
    index: u64,
    kind: Kind,
    open: bool,
}

#[derive(Debug)]
struct Core {
    st: O2AState,
    /// `data: {"id":…,"object":…,"created":…,"model":…,"choices":[` of every chunk.
    envelope: Vec<u8>,
    started: bool,
    blocks: Vec<Block>,
    tools: u64,
    /// Buffered JSON-mode arguments when the answer must be unwrapped at the end.
    json_buf: String,
    usage: AnthropicUsage,
    usage_seen: bool,
    /// The first stop reason a `message_delta` gave.
    stop_reason: Option<String>,
    unknown_stop: Option<String>,
    end: Option<StreamEnd>,
}

impl AnthropicSseToOpenAi {
    /// A transcoder for the response to the request that produced `st`.
    pub fn new(st: &O2AState) -> Self {
        Self {
            parser: SseParser::new(),
            core: Core {
                st: st.clone(),
                envelope: Vec::new(),
                started: false,
                blocks: Vec::new(),
                tools: 0,
                json_buf: String::new(),
                usage: AnthropicUsage::default(),
                usage_seen: false,
                stop_reason: None,
                unknown_stop: None,
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
                "anthropic: upstream event exceeds the size limit",
                "upstream_event_too_large",
                StreamEnd::UpstreamError,
            );
        }
    }

    /// The upstream body ended. Returns how the output ended; when not
    /// [`StreamEnd::Complete`], an error frame stands in `out` in place of `[DONE]`
    /// (written now for a truncation, already for an upstream error). Calling it again
    /// writes nothing and returns the same.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamEnd {
        if let Some(end) = self.core.end {
            return end;
        }
        let core = &mut self.core;
        self.parser.finish(|ev| core.on_event(ev, out));
        if let Some(end) = self.core.end {
            return end;
        }
        self.core.fail(
            out,
            "anthropic: upstream stream ended before message_stop",
            "upstream_truncated",
            StreamEnd::Truncated,
        );
        StreamEnd::Truncated
    }

    /// Usage so far in OpenAI terms (final once the stream is complete): input side from
    /// `message_start`, output from the last `message_delta` (counts are cumulative).
    pub fn usage(&self) -> Option<Usage> {
        self.core.usage_seen.then(|| self.core.usage.usage())
    }

    /// The upstream's stop reason when it was not one Anthropic documents (reported to
    /// the client as `stop`).
    pub fn unknown_stop_reason(&self) -> Option<&str> {
        self.core.unknown_stop.as_deref()
    }
}

impl Core {
    fn on_event(&mut self, ev: SseEvent<'_>, out: &mut Vec<u8>) {
        if self.end.is_some() {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(ev.data) else {
            if ev.event == "error" {
                let raw = String::from_utf8_lossy(ev.data);
                let msg = format!("anthropic: {}", crate::error::clip(&raw, 500));
                self.fail(out, &msg, "api_error", StreamEnd::UpstreamError);
            }
            return;
        };
        // The data's own `type` names the event; proxies may drop `event:` lines.
        let kind = v["type"].as_str().unwrap_or(ev.event);
        match kind {
            "message_start" => self.start(&v["message"], out),
            "content_block_start" => {
                self.start(&Value::Null, out);
                self.block_start(&v, out);
            }
            "content_block_delta" => self.block_delta(&v, out),
            "content_block_stop" => self.block_stop(&v, out),
            "message_delta" => {
                self.start(&Value::Null, out);
                self.message_delta(&v);
            }
            "message_stop" => {
                self.start(&Value::Null, out);
                let stop = self.stop_reason.take();
                self.send_finish(stop.as_deref(), out);
                if self.st.include_usage {
                    out.extend_from_slice(&self.envelope);
                    out.extend_from_slice(b"],\"usage\":");
                    let _ = serde_json::to_writer(&mut *out, &self.usage.openai_json());
                    out.extend_from_slice(b"}\n\n");
                }
                write_done(out);
                self.end = Some(StreamEnd::Complete);
            }
            "error" => {
                let e = &v["error"];
                let etype = e["type"].as_str().unwrap_or("api_error");
                let msg = format!("anthropic: {}", e["message"].as_str().unwrap_or(etype));
                let code = match etype {
                    "overloaded_error"
                    | "rate_limit_error"
                    | "api_error"
                    | "invalid_request_error"
                    | "authentication_error"
                    | "permission_error"
                    | "not_found_error"
                    | "request_too_large"
                    | "timeout_error"
                    | "billing_error" => etype,
                    _ => "api_error",
                };
                self.fail(out, &msg, code, StreamEnd::UpstreamError);
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
    }

    /// Writes the role chunk once. Content before `message_start` (not something
    /// Anthropic sends) starts the message implicitly rather than being lost.
    fn start(&mut self, message: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("chatcmpl-{}", self.st.created));
        let model = self.st.model(message["model"].as_str()).to_string();
        if let Some(u) = message.get("usage") {
            self.usage.update(u, false);
            self.usage_seen = true;
        }
        self.envelope.clear();
        self.envelope.extend_from_slice(b"data: {\"id\":");
        let _ = serde_json::to_writer(&mut self.envelope, &id);
        self.envelope
            .extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        self.envelope
            .extend_from_slice(self.st.created.to_string().as_bytes());
        self.envelope.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut self.envelope, &model);
        self.envelope.extend_from_slice(b",\"choices\":[");
        let prefix = self.st.prefix.clone().unwrap_or_default();
        self.chunk(json!({"role": "assistant", "content": prefix}), None, out);
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.envelope);
        let choice = json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
        let _ = serde_json::to_writer(&mut *out, &choice);
        out.extend_from_slice(b"]}\n\n");
    }

    fn content(&self, text: &str, out: &mut Vec<u8>) {
        if !text.is_empty() {
            self.chunk(json!({ "content": text }), None, out);
        }
    }

    fn open_block(&mut self, v: &Value) -> Option<usize> {
        let index = v["index"].as_u64()?;
        self.blocks.iter().position(|b| b.index == index && b.open)
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<u8>) {
        let Some(index) = v["index"].as_u64() else {
            return;
        };
        if self.blocks.iter().any(|b| b.index == index) {
            // A block index is started once; a repeat is an upstream fault to ignore.
            return;
        }
        let cb = &v["content_block"];
        let kind = match cb["type"].as_str() {
            Some("text") => {
                self.content(cb["text"].as_str().unwrap_or(""), out);
                Kind::Text
            }
            Some("tool_use") if self.st.json_mode.is_some() && cb["name"] == JSON_TOOL => {
                Kind::Json { any: false }
            }
            Some("tool_use") => {
                let seq = self.tools;
                self.tools += 1;
                // The block's `input` is `{}` while arguments stream; sending it would
                // prefix the arguments with "{}".
                let (arguments, args) = match cb["input"].as_object() {
                    Some(m) if !m.is_empty() => (super::common::compact(&cb["input"]), true),
                    _ => (String::new(), false),
                };
                self.chunk(
                    json!({"tool_calls": [{
                        "index": seq,
                        "id": cb["id"],
                        "type": "function",
                        "function": {"name": cb["name"], "arguments": arguments},
                    }]}),
                    None,
                    out,
                );
                Kind::Tool { seq, args }
            }
            Some("thinking") => {
                let t = cb["thinking"].as_str().unwrap_or("");
                if self.st.emit_reasoning && !t.is_empty() {
                    self.chunk(json!({ "reasoning_content": t }), None, out);
                }
                Kind::Thinking
            }
            _ => Kind::Other,
        };
        self.blocks.push(Block {
            index,
            kind,
            open: true,
        });
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<u8>) {
        let Some(i) = self.open_block(v) else {
            return;
        };
        let d = &v["delta"];
        match (self.blocks[i].kind, d["type"].as_str()) {
            (Kind::Text, Some("text_delta")) => self.content(d["text"].as_str().unwrap_or(""), out),
            (Kind::Tool { seq, .. }, Some("input_json_delta")) => {
                let pj = d["partial_json"].as_str().unwrap_or("");
                if !pj.is_empty() {
                    self.chunk(
                        json!({"tool_calls": [{"index": seq, "function": {"arguments": pj}}]}),
                        None,
                        out,
                    );
                    self.blocks[i].kind = Kind::Tool { seq, args: true };
                }
            }
            (Kind::Json { .. }, Some("input_json_delta")) => {
                let pj = d["partial_json"].as_str().unwrap_or("");
                if pj.is_empty() {
                    return;
                }
                self.blocks[i].kind = Kind::Json { any: true };
                if self.unwrapping() {
                    self.json_buf.push_str(pj);
                } else {
                    self.content(pj, out);
                }
            }
            (Kind::Thinking, Some("thinking_delta")) => {
                let t = d["thinking"].as_str().unwrap_or("");
                if self.st.emit_reasoning && !t.is_empty() {
                    self.chunk(json!({ "reasoning_content": t }), None, out);
                }
            }
            // signature_delta, citations_delta, mismatched or future delta types.
            _ => {}
        }
    }

    fn unwrapping(&self) -> bool {
        self.st.json_mode.is_some_and(|m| m.unwrap_values)
    }

    fn block_stop(&mut self, v: &Value, out: &mut Vec<u8>) {
        let Some(i) = self.open_block(v) else {
            return;
        };
        self.blocks[i].open = false;
        match self.blocks[i].kind {
            Kind::Tool { seq, args: false } => self.chunk(
                json!({"tool_calls": [{"index": seq, "function": {"arguments": "{}"}}]}),
                None,
                out,
            ),
            Kind::Json { any } => {
                if self.unwrapping() {
                    let buf = std::mem::take(&mut self.json_buf);
                    let text = match serde_json::from_str::<Value>(&buf) {
                        Ok(v) => json_content(&v, &self.st),
                        // Not JSON after all: the client gets what the model wrote.
                        Err(_) => buf,
                    };
                    self.content(&text, out);
                } else if !any {
                    self.content("{}", out);
                }
            }
            _ => {}
        }
    }

    fn message_delta(&mut self, v: &Value) {
        if let Some(u) = v.get("usage") {
            self.usage.update(u, true);
            self.usage_seen = true;
        }
        if self.stop_reason.is_none() {
            if let Some(r) = v["delta"]["stop_reason"].as_str() {
                self.stop_reason = Some(r.to_string());
            }
        }
    }

    /// The finish chunk, written at `message_stop` rather than at `message_delta`: the two
    /// arrive together, and a stream cut between them must not look finished.
    fn send_finish(&mut self, stop_reason: Option<&str>, out: &mut Vec<u8>) {
        let (mut finish, known) = finish_reason_for(stop_reason);
        if !known {
            self.unknown_stop = Some(stop_reason.unwrap_or("(none)").to_string());
        }
        if finish == "tool_calls" && self.tools == 0 {
            // Only the JSON-mode tool was called: its answer went out as content.
            finish = "stop";
        }
        self.chunk(json!({}), Some(finish), out);
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str, code: &str, end: StreamEnd) {
        write_data(
            out,
            &json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}}),
        );
        self.end = Some(end);
    }
}
