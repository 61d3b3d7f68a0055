//! OpenAI wire-format documents for the mock model: chat completions, text completions,
//! embeddings, model lists and their SSE chunk streams, in the shape vLLM produces.
//! Used by `mock-llm` and by the gateway's built-in `mock` provider.

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
        let choice = match self.kind {
            StreamKind::Chat => {
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
            }
            StreamKind::Text => {
                json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop"}])
            }
        };
        sse(&self.base(choice))
    }

    /// The usage-only chunk (`"choices": []`).
    pub fn usage_chunk(&self, prompt: u64, completion: u64) -> Vec<u8> {
        let mut v = self.base(json!([]));
        v["usage"] = usage(prompt, completion);
        sse(&v)
    }
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
    fn user_text() {
        assert_eq!(
            last_user_text(br#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#).as_deref(),
            Some("a")
        );
        assert_eq!(last_user_text(br#"{"prompt":"p"}"#).as_deref(), Some("p"));
        assert_eq!(last_user_text(b"nope"), None);
    }
}
