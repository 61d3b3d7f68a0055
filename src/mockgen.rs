//! OpenAI wire-format documents for the mock model: chat completions, text completions,
//! embeddings, model lists and their SSE chunk streams, in the shape vLLM produces.
//! Used by `mock-llm` and by the gateway's built-in `mock` provider. The canned words
//! and the tool calls the mock makes are shared with [`crate::mockgen_anthropic`].

use serde_json::{json, Value};

/// Words the canned reply cycles through.
const WORDS: &[&str] = &[
    "Hello!",
    "This",
    "is",
    "a",
    "mock",
    "response",
    "from",
    "the",
    "Switchyard",
    "test",
    "model,",
    "streamed",
    "one",
    "token",
    "at",
    "a",
    "time.",
];

/// `n` canned tokens (each a word followed by a space, the last without).
pub fn canned_tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| canned_token(i, n)).collect()
}

/// Token `i` of `n` canned tokens.
pub fn canned_token(i: usize, n: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    if i + 1 == n {
        w.to_string()
    } else {
        format!("{w} ")
    }
}

/// Splits `text` into word tokens that concatenate back to `text`.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A rough token count of a request (for `prompt_tokens`): one per 4 bytes, at least 1.
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64 / 4).max(1)
}

/// The usage object.
pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A non-streamed `chat.completion`.
pub fn chat_completion(
    id: &str,
    model: &str,
    created: u64,
    content: &str,
    prompt: u64,
    completion: u64,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(prompt, completion),
    }))
    .unwrap_or_default()
}

/// A non-streamed `text_completion`.
pub fn text_completion(
    id: &str,
    model: &str,
    created: u64,
    text: &str,
    prompt: u64,
    completion: u64,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(prompt, completion),
    }))
    .unwrap_or_default()
}

/// One SSE event (`data: …\n\n`).
pub fn sse(v: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    out
}

/// The terminating SSE event.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Which kind of stream to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `chat.completion.chunk` events.
    Chat,
    /// `text_completion` events.
    Text,
}

/// Builds the SSE events of a streamed answer, one per token, in vLLM's shape: a role
/// chunk first (chat), one chunk per token, a chunk with `finish_reason`, then (if
/// `include_usage`) the usage-only chunk with `"choices":[]`. `[DONE]` is not included.
pub struct StreamBuilder<'a> {
    /// Completion id.
    pub id: &'a str,
    /// Model name.
    pub model: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// Chat or text.
    pub kind: StreamKind,
    /// Add `"usage": null` to every chunk when usage was requested (as vLLM does).
    pub include_usage: bool,
}

impl StreamBuilder<'_> {
    fn base(&self, choices: Value) -> Value {
        let object = match self.kind {
            StreamKind::Chat => "chat.completion.chunk",
            StreamKind::Text => "text_completion",
        };
        let mut v = json!({"id": self.id, "object": object, "created": self.created,
                           "model": self.model, "choices": choices});
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The first chunk (chat: the assistant role), if this kind has one.
    pub fn role_chunk(&self) -> Option<Vec<u8>> {
        match self.kind {
            StreamKind::Chat => Some(sse(&self.base(json!([{"index": 0,
                "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])))),
            StreamKind::Text => None,
        }
    }

    /// A chunk carrying `token`.
    pub fn token_chunk(&self, token: &str) -> Vec<u8> {
        let choice = match self.kind {
            StreamKind::Chat => {
                json!([{"index": 0, "delta": {"content": token}, "logprobs": null, "finish_reason": null}])
            }
            StreamKind::Text => {
                json!([{"index": 0, "text": token, "logprobs": null, "finish_reason": null}])
            }
        };
        sse(&self.base(choice))
    }

    /// The chunk with `finish_reason: stop`.
    pub fn finish_chunk(&self) -> Vec<u8> {
        self.finish_chunk_with("stop")
    }

    /// The chunk with the given `finish_reason` (`stop`, `length`, `tool_calls`, …).
    pub fn finish_chunk_with(&self, reason: &str) -> Vec<u8> {
        let choice = match self.kind {
            StreamKind::Chat => {
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}])
            }
            StreamKind::Text => {
                json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": reason}])
            }
        };
        sse(&self.base(choice))
    }

    fn delta_chunk(&self, delta: Value) -> Vec<u8> {
        sse(&self
            .base(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}])))
    }

    /// A chat chunk carrying reasoning text in `delta.reasoning_content` (vLLM's and
    /// DeepSeek's extension field).
    pub fn reasoning_chunk(&self, text: &str) -> Vec<u8> {
        self.delta_chunk(json!({"reasoning_content": text}))
    }

    /// The first fragment of tool call number `index`: id, type, name and empty arguments.
    pub fn tool_call_start_chunk(&self, index: usize, id: &str, name: &str) -> Vec<u8> {
        self.delta_chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
        )
    }

    /// A later fragment of tool call number `index`: a piece of its arguments only.
    pub fn tool_call_args_chunk(&self, index: usize, arguments: &str) -> Vec<u8> {
        self.delta_chunk(
            json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
        )
    }

    /// The usage-only chunk (`"choices": []`).
    pub fn usage_chunk(&self, prompt: u64, completion: u64) -> Vec<u8> {
        let mut v = self.base(json!([]));
        v["usage"] = usage(prompt, completion);
        sse(&v)
    }

    /// The chunks of `calls` (id, name, arguments), in order: each call's first fragment
    /// (id, name, empty arguments) then its arguments in [`TOOL_FRAGMENT_BYTES`]-byte
    /// pieces. With `interleave` the first two calls start together and their pieces
    /// alternate (the case a translator that tracks only "the current tool" gets wrong).
    pub fn tool_call_chunks(
        &self,
        calls: &[(String, String, String)],
        interleave: bool,
    ) -> Vec<Vec<u8>> {
        let pieces: Vec<Vec<String>> = calls
            .iter()
            .map(|(_, _, args)| split_fragments(args, TOOL_FRAGMENT_BYTES))
            .collect();
        let start = |i: usize| {
            let (id, name, _) = &calls[i];
            self.tool_call_start_chunk(i, id, name)
        };
        let mut out = Vec::new();
        let mut sequential_from = 0;
        if interleave && calls.len() >= 2 {
            out.push(start(0));
            out.push(start(1));
            for j in 0..pieces[0].len().max(pieces[1].len()) {
                for (i, p) in pieces.iter().enumerate().take(2) {
                    if let Some(piece) = p.get(j) {
                        out.push(self.tool_call_args_chunk(i, piece));
                    }
                }
            }
            sequential_from = 2;
        }
        for (i, p) in pieces.iter().enumerate().skip(sequential_from) {
            out.push(start(i));
            for piece in p {
                out.push(self.tool_call_args_chunk(i, piece));
            }
        }
        out
    }
}

/// One chunk of a [`ChatStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// For a token chunk (reasoning, text or tool fragment), its position among them
    /// (the first waits for the time to first token, the others for the inter-token
    /// latency); `None` for the role, finish, usage and `[DONE]` chunks.
    pub token: Option<usize>,
    /// The SSE event.
    pub bytes: Vec<u8>,
}

/// The SSE events of one streamed answer, in vLLM's order, made one at a time (long
/// streams cost nothing up front): role (chat), reasoning chunks, one chunk per token,
/// tool-call fragments, the finish chunk, the usage chunk (when asked), `[DONE]`.
#[derive(Debug, Clone)]
pub struct ChatStream {
    /// Completion id.
    pub id: String,
    /// Model name.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// Chat or text.
    pub kind: StreamKind,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Text tokens.
    pub tokens: usize,
    /// Reasoning chunks before the text.
    pub reasoning: usize,
    /// Tool-call chunks after the text ([`StreamBuilder::tool_call_chunks`]).
    pub tools: Vec<Vec<u8>>,
    /// `finish_reason` of the finish chunk.
    pub finish_reason: &'static str,
    /// `usage.prompt_tokens`.
    pub prompt: u64,
    /// `usage.completion_tokens`.
    pub completion: u64,
}

impl ChatStream {
    /// Chunk number `k`; `None` after the last.
    pub fn event(&self, k: usize) -> Option<StreamChunk> {
        let b = StreamBuilder {
            id: &self.id,
            model: &self.model,
            created: self.created,
            kind: self.kind,
            include_usage: self.include_usage,
        };
        let other = |bytes: Vec<u8>| Some(StreamChunk { token: None, bytes });
        let role = usize::from(self.kind == StreamKind::Chat);
        if k < role {
            return b.role_chunk().and_then(other);
        }
        let t = k - role;
        let token = |bytes: Vec<u8>| {
            Some(StreamChunk {
                token: Some(t),
                bytes,
            })
        };
        if t < self.reasoning {
            return token(b.reasoning_chunk(&canned_thought(t, self.reasoning)));
        }
        let r = t - self.reasoning;
        if r < self.tokens {
            return token(b.token_chunk(&canned_token(r, self.tokens)));
        }
        let r = r - self.tokens;
        if let Some(chunk) = self.tools.get(r) {
            return token(chunk.clone());
        }
        let mut rest = r - self.tools.len();
        if rest == 0 {
            return other(b.finish_chunk_with(self.finish_reason));
        }
        rest -= 1;
        if self.include_usage {
            if rest == 0 {
                return other(b.usage_chunk(self.prompt, self.completion));
            }
            rest -= 1;
        }
        (rest == 0).then(|| StreamChunk {
            token: None,
            bytes: SSE_DONE.to_vec(),
        })
    }
}

/// Words the canned reasoning cycles through.
const THOUGHTS: &[&str] = &[
    "Let", "me", "think", "this", "through", "step", "by", "step.",
];

/// Reasoning token `i` of `n` (each a word followed by a space, the last without).
pub fn canned_thought(i: usize, n: usize) -> String {
    let w = THOUGHTS[i % THOUGHTS.len()];
    if i + 1 == n {
        w.to_string()
    } else {
        format!("{w} ")
    }
}

/// A tool a request offers: its name and the JSON schema of its input.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    /// Tool (function) name.
    pub name: String,
    /// JSON schema of the arguments (`Value::Null` when the tool has none).
    pub schema: Value,
}

/// The tools of a request, in order: OpenAI's `tools[].function.{name,parameters}` or
/// Anthropic's `tools[].{name,input_schema}`. Entries without a name are skipped.
pub fn offered_tools(request: &Value) -> Vec<OfferedTool> {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| {
            let (name, schema) = match t.get("function") {
                Some(f) => (f.get("name")?, f.get("parameters")),
                None => (t.get("name")?, t.get("input_schema")),
            };
            Some(OfferedTool {
                name: name.as_str()?.to_string(),
                schema: schema.cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// A tool call the mock makes: which tool, and its arguments as compact JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    /// Tool name.
    pub name: String,
    /// Arguments, a JSON object as compact text (`{}` for a tool without properties).
    pub arguments: String,
}

/// `n` tool calls of the offered tools in turn (call `i` uses tool `i % tools.len()`),
/// each with small arguments that fit the tool's schema: the required properties (or
/// the first one when none is required), at most three, with a value of their type.
/// Empty when no tool is offered.
pub fn mock_tool_calls(tools: &[OfferedTool], n: usize) -> Vec<MockToolCall> {
    if tools.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let tool = &tools[i % tools.len()];
            MockToolCall {
                name: tool.name.clone(),
                arguments: mock_arguments(&tool.schema, i).to_string(),
            }
        })
        .collect()
}

fn mock_arguments(schema: &Value, i: usize) -> Value {
    let mut args = serde_json::Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Value::Object(args);
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<&str> = if required.is_empty() {
        props.keys().take(1).map(String::as_str).collect()
    } else {
        required.into_iter().take(3).collect()
    };
    for name in names {
        let prop = props.get(name).unwrap_or(&Value::Null);
        let value = if let Some(first) = prop.get("enum").and_then(|e| e.get(0)) {
            first.clone()
        } else {
            match prop.get("type").and_then(Value::as_str) {
                Some("integer") => json!(i + 1),
                Some("number") => json!(i as f64 + 1.5),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!(format!("mock-{i}")),
            }
        };
        args.insert(name.to_string(), value);
    }
    Value::Object(args)
}

/// Splits `s` into pieces of at most `size` bytes (cut on char boundaries, so mid-token
/// in JSON) that concatenate back to `s`. A piece is never empty; `""` gives no pieces.
pub fn split_fragments(s: &str, size: usize) -> Vec<String> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if !cur.is_empty() && cur.len() + c.len_utf8() > size {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Bytes per streamed tool-argument fragment: small, so that every call is split mid-JSON.
pub const TOOL_FRAGMENT_BYTES: usize = 6;

/// An assistant message beyond plain text, for [`chat_completion_with`].
#[derive(Debug, Clone, Default)]
pub struct ChatMessage<'a> {
    /// The text; `None` serialises as `"content": null` (as OpenAI does beside tool calls).
    pub content: Option<&'a str>,
    /// Reasoning text in `reasoning_content`, omitted when `None`.
    pub reasoning: Option<&'a str>,
    /// Tool calls, as (id, name, arguments); no `tool_calls` key when empty.
    pub tool_calls: Vec<(String, String, String)>,
}

/// A non-streamed `chat.completion` with reasoning and/or tool calls.
pub fn chat_completion_with(
    id: &str,
    model: &str,
    created: u64,
    message: &ChatMessage<'_>,
    finish_reason: &str,
    prompt: u64,
    completion: u64,
) -> Vec<u8> {
    let mut msg = json!({"role": "assistant", "content": message.content});
    if let Some(r) = message.reasoning {
        msg["reasoning_content"] = json!(r);
    }
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
            })
            .collect();
        msg["tool_calls"] = Value::Array(calls);
    }
    serde_json::to_vec(&json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage(prompt, completion),
    }))
    .unwrap_or_default()
}

/// An embeddings response with `n` vectors of `dim` dimensions, deterministic in `seed`.
pub fn embeddings(model: &str, n: usize, dim: usize, seed: u64, prompt: u64) -> Vec<u8> {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut x = seed
                .wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                | 1;
            let v: Vec<f64> = (0..dim)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 2000) as f64 / 1000.0) - 1.0
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    serde_json::to_vec(&json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }))
    .unwrap_or_default()
}

/// An OpenAI model list.
pub fn model_list<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a str)>,
    created: u64,
) -> Vec<u8> {
    let data: Vec<Value> = models
        .into_iter()
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": created, "owned_by": owner}))
        .collect();
    serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default()
}

/// The text of the last user message of a chat request, or the prompt of a completion.
pub fn last_user_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if let Some(msgs) = v.get("messages").and_then(Value::as_array) {
        let m = msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        return match m.get("content")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        };
    }
    match v.get("prompt")? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Number of inputs of an embeddings request (`input` string or array).
pub fn embedding_inputs(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v.get("input") {
        Some(Value::Array(a)) => a.len().max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip() {
        let t = split_tokens("a bc  d");
        assert_eq!(t.concat(), "a bc  d");
        assert_eq!(canned_tokens(3).concat(), "Hello! This is");
    }

    #[test]
    fn documents_parse() {
        let v: Value = serde_json::from_slice(&chat_completion("id", "m", 1, "hi", 2, 3)).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 5);
        let b = StreamBuilder {
            id: "x",
            model: "m",
            created: 1,
            kind: StreamKind::Chat,
            include_usage: true,
        };
        let u = b.usage_chunk(1, 2);
        assert!(u.starts_with(b"data: {") && u.ends_with(b"\n\n"));
        let v: Value = serde_json::from_slice(&u[6..u.len() - 2]).unwrap();
        assert_eq!(v["choices"], json!([]));
        let e: Value = serde_json::from_slice(&embeddings("m", 2, 4, 7, 3)).unwrap();
        assert_eq!(e["data"][1]["embedding"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn tool_calls_fit_their_schema() {
        let req = json!({"tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"]}}},
            {"type": "function", "function": {"name": "now"}},
            {"type": "function", "function": {"parameters": {}}},
        ]});
        let tools = offered_tools(&req);
        assert_eq!(tools.len(), 2, "the nameless tool is skipped");
        let calls = mock_tool_calls(&tools, 3);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, r#"{"city":"mock-0","days":1}"#);
        assert_eq!(calls[1].arguments, "{}");
        assert_eq!(calls[2].name, "get_weather");
        let anthropic = json!({"tools": [{"name": "pick", "input_schema": {
            "properties": {"color": {"enum": ["red", "blue"]}, "size": {"type": "number"}}}}]});
        let calls = mock_tool_calls(&offered_tools(&anthropic), 1);
        assert_eq!(calls[0].arguments, r#"{"color":"red"}"#);
        assert!(mock_tool_calls(&offered_tools(&json!({})), 2).is_empty());
        assert!(offered_tools(&json!({"tools": "nope"})).is_empty());
    }

    #[test]
    fn fragments_roundtrip() {
        let s = r#"{"city":"Zürich"}"#;
        let f = split_fragments(s, 4);
        assert!(f.len() > 3 && f.iter().all(|p| !p.is_empty() && p.len() <= 4));
        assert_eq!(f.concat(), s);
        assert!(split_fragments("", 4).is_empty());
        assert_eq!(
            split_fragments("ü", 1),
            vec!["ü"],
            "a char wider than the size stays whole"
        );
    }

    #[test]
    fn chat_with_tools_and_reasoning() {
        let m = ChatMessage {
            content: None,
            reasoning: Some("hmm"),
            tool_calls: vec![("call_1".into(), "f".into(), "{}".into())],
        };
        let v: Value =
            serde_json::from_slice(&chat_completion_with("id", "m", 1, &m, "tool_calls", 2, 3))
                .unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert_eq!(msg["reasoning_content"], "hmm");
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let plain: Value = serde_json::from_slice(&chat_completion_with(
            "id",
            "m",
            1,
            &ChatMessage::default(),
            "stop",
            1,
            1,
        ))
        .unwrap();
        assert!(plain["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(canned_thought(1, 2), "me");
    }

    #[test]
    fn chat_stream_order() {
        let b = StreamBuilder {
            id: "x",
            model: "m",
            created: 1,
            kind: StreamKind::Chat,
            include_usage: true,
        };
        let calls = vec![
            (
                "c0".to_string(),
                "f".to_string(),
                r#"{"a":"long value"}"#.to_string(),
            ),
            (
                "c1".to_string(),
                "g".to_string(),
                r#"{"b":"another one"}"#.to_string(),
            ),
        ];
        let tools = b.tool_call_chunks(&calls, true);
        let parse = |c: &[u8]| -> Value { serde_json::from_slice(&c[6..c.len() - 2]).unwrap() };
        let idx: Vec<u64> = tools
            .iter()
            .map(|c| {
                parse(c)["choices"][0]["delta"]["tool_calls"][0]["index"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            &idx[..4],
            &[0, 1, 0, 1],
            "both start, then pieces alternate"
        );
        for (i, (_, _, args)) in calls.iter().enumerate() {
            let joined: String = tools
                .iter()
                .map(|c| parse(c)["choices"][0]["delta"]["tool_calls"][0].clone())
                .filter(|t| t["index"] == i)
                .map(|t| t["function"]["arguments"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(&joined, args);
        }
        let s = ChatStream {
            id: "x".into(),
            model: "m".into(),
            created: 1,
            kind: StreamKind::Chat,
            include_usage: true,
            tokens: 2,
            reasoning: 1,
            tools: b.tool_call_chunks(&calls[..1], false),
            finish_reason: "tool_calls",
            prompt: 1,
            completion: 3,
        };
        let chunks: Vec<StreamChunk> = (0..).map_while(|k| s.event(k)).collect();
        let n_tools = s.tools.len();
        assert_eq!(chunks.len(), 1 + 1 + 2 + n_tools + 3);
        assert_eq!(chunks[0].token, None);
        assert_eq!(chunks[1].token, Some(0));
        assert!(String::from_utf8_lossy(&chunks[1].bytes).contains("reasoning_content"));
        assert_eq!(chunks[3 + n_tools].token, Some(2 + n_tools));
        assert!(String::from_utf8_lossy(&chunks[4 + n_tools].bytes)
            .contains(r#""finish_reason":"tool_calls""#));
        assert_eq!(chunks.last().unwrap().bytes, SSE_DONE);
    }

    #[test]
    fn user_text() {
        assert_eq!(
            last_user_text(br#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#).as_deref(),
            Some("a")
        );
        assert_eq!(last_user_text(br#"{"prompt":"p"}"#).as_deref(), Some("p"));
        assert_eq!(last_user_text(b"nope"), None);
    }
}
