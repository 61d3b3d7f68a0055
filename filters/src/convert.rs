//! Converting a cached answer between its two shapes: a streamed one (SSE events of
//! `chat.completion.chunk` / `text_completion`) and a whole one (`chat.completion` /
//! `text_completion`), so that a streamed request can be answered from a non-streamed
//! entry and the other way round.

use serde_json::{json, Map, Value};

/// The `data:` payloads of an SSE body, in order (`[DONE]` included).
pub fn sse_payloads(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(d) = line.strip_prefix(b"data:") {
            let d = d.strip_prefix(b" ").unwrap_or(d);
            if !d.is_empty() {
                out.push(d);
            }
        }
    }
    out
}

/// The SSE events of a body, each with its terminating blank line, for replay one event
/// per chunk.
pub fn sse_events(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let end = memchr::memmem::find(rest, b"\n\n").map_or(rest.len(), |p| p + 2);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// Whether an SSE event is the usage-only chunk (`"choices": []` with a usage object).
pub fn is_usage_event(payload: &[u8]) -> bool {
    serde_json::from_slice::<Value>(payload)
        .is_ok_and(|v| v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object())
}

/// Assembles a whole response from a stream's events: content and tool-call argument
/// fragments concatenated per choice, the last `finish_reason`, the usage chunk's
/// usage. `None` when the stream holds no chunk.
pub fn sse_to_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut id = Value::Null;
    let mut model = Value::Null;
    let mut created = Value::Null;
    let mut fingerprint = Value::Null;
    let mut text_mode = false;
    let mut usage = Value::Null;
    // index -> (role, content, tool calls by index, finish_reason, text)
    let mut choices: Vec<(Value, String, Vec<Value>, Value)> = Vec::new();
    let mut seen = false;
    for p in sse_payloads(body) {
        if p == b"[DONE]" {
            break;
        }
        let Ok(v) = serde_json::from_slice::<Value>(p) else {
            continue;
        };
        seen = true;
        id = v.get("id").cloned().unwrap_or(id);
        model = v.get("model").cloned().unwrap_or(model);
        created = v.get("created").cloned().unwrap_or(created);
        if let Some(f) = v.get("system_fingerprint") {
            fingerprint = f.clone();
        }
        if v["object"] == "text_completion" {
            text_mode = true;
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap_or(0) as usize;
            if i > 1024 {
                continue;
            }
            while choices.len() <= i {
                choices.push((Value::Null, String::new(), Vec::new(), Value::Null));
            }
            let slot = &mut choices[i];
            if let Some(t) = c["text"].as_str() {
                slot.1.push_str(t);
            }
            let d = &c["delta"];
            if let Some(r) = d.get("role").filter(|r| r.is_string()) {
                slot.0 = r.clone();
            }
            if let Some(t) = d["content"].as_str() {
                slot.1.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let ti = tc["index"].as_u64().unwrap_or(0) as usize;
                if ti > 1024 {
                    continue;
                }
                while slot.2.len() <= ti {
                    slot.2.push(json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
                }
                let acc = &mut slot.2[ti];
                if let Some(x) = tc.get("id").filter(|x| x.is_string()) {
                    acc["id"] = x.clone();
                }
                if let Some(x) = tc.get("type").filter(|x| x.is_string()) {
                    acc["type"] = x.clone();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    let cur = acc["function"]["name"].as_str().unwrap_or("").to_string();
                    acc["function"]["name"] = Value::String(cur + n);
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    let cur = acc["function"]["arguments"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    acc["function"]["arguments"] = Value::String(cur + a);
                }
            }
            if !c["finish_reason"].is_null() {
                slot.3 = c["finish_reason"].clone();
            }
        }
    }
    if !seen {
        return None;
    }
    let out_choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, (role, content, tools, finish))| {
            if text_mode {
                json!({"index": i, "text": content, "logprobs": null, "finish_reason": finish})
            } else {
                let mut msg = Map::new();
                msg.insert(
                    "role".into(),
                    if role.is_null() {
                        json!("assistant")
                    } else {
                        role
                    },
                );
                msg.insert(
                    "content".into(),
                    if content.is_empty() && !tools.is_empty() {
                        Value::Null
                    } else {
                        Value::String(content)
                    },
                );
                if !tools.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(tools));
                }
                json!({"index": i, "message": msg, "logprobs": null, "finish_reason": finish})
            }
        })
        .collect();
    let mut doc = json!({
        "id": id,
        "object": if text_mode { "text_completion" } else { "chat.completion" },
        "created": created,
        "model": model,
        "choices": out_choices,
    });
    if !fingerprint.is_null() {
        doc["system_fingerprint"] = fingerprint;
    }
    if !usage.is_null() {
        doc["usage"] = usage;
    }
    serde_json::to_vec(&doc).ok()
}

/// Splits a whole response into the events of a stream: a role chunk (chat), content in
/// word-sized chunks, tool calls, a chunk with the finish reason per choice, the
/// usage-only chunk when `include_usage` and the response has usage, and `[DONE]`.
/// Each event is complete (`data: …\n\n`). `None` if `json` is not a completion.
pub fn json_to_sse(json: &[u8], include_usage: bool) -> Option<Vec<Vec<u8>>> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let text_mode = v["object"] == "text_completion";
    if !text_mode && v["object"] != "chat.completion" {
        return None;
    }
    let object = if text_mode {
        "text_completion"
    } else {
        "chat.completion.chunk"
    };
    let base = |choices: Value| {
        let mut c = json!({"id": v["id"], "object": object, "created": v["created"], "model": v["model"], "choices": choices});
        if let Some(f) = v.get("system_fingerprint") {
            c["system_fingerprint"] = f.clone();
        }
        c
    };
    let ev = |c: Value| {
        let mut out = b"data: ".to_vec();
        let _ = serde_json::to_writer(&mut out, &c);
        out.extend_from_slice(b"\n\n");
        out
    };
    let mut events = Vec::new();
    for c in v["choices"].as_array()? {
        let i = c["index"].clone();
        if text_mode {
            for piece in pieces(c["text"].as_str().unwrap_or("")) {
                events.push(ev(base(
                    json!([{"index": i, "text": piece, "logprobs": null, "finish_reason": null}]),
                )));
            }
        } else {
            let m = &c["message"];
            let role = m.get("role").cloned().unwrap_or(json!("assistant"));
            events.push(ev(base(json!([{"index": i, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}]))));
            for piece in pieces(m["content"].as_str().unwrap_or("")) {
                events.push(ev(base(json!([{"index": i, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]))));
            }
            if let Some(tools) = m["tool_calls"].as_array() {
                let deltas: Vec<Value> = tools
                    .iter()
                    .enumerate()
                    .map(|(ti, t)| {
                        let mut d = t.clone();
                        d["index"] = json!(ti);
                        d
                    })
                    .collect();
                events.push(ev(base(json!([{"index": i, "delta": {"tool_calls": deltas}, "logprobs": null, "finish_reason": null}]))));
            }
        }
        let fin = if text_mode {
            json!([{"index": i, "text": "", "logprobs": null, "finish_reason": c["finish_reason"]}])
        } else {
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": c["finish_reason"]}])
        };
        events.push(ev(base(fin)));
    }
    if include_usage && v["usage"].is_object() {
        let mut u = base(json!([]));
        u["usage"] = v["usage"].clone();
        events.push(ev(u));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    Some(events)
}

/// Word-sized pieces that concatenate back to `s` (a word with its trailing space).
fn pieces(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == ' ' {
            out.push(&s[start..=i]);
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn stream_to_whole() {
        let j: Value = serde_json::from_slice(&sse_to_json(STREAM.as_bytes()).unwrap()).unwrap();
        assert_eq!(j["object"], "chat.completion");
        assert_eq!(j["choices"][0]["message"]["content"], "Hello world");
        assert_eq!(j["choices"][0]["message"]["role"], "assistant");
        assert_eq!(j["choices"][0]["finish_reason"], "stop");
        assert_eq!(j["usage"]["total_tokens"], 5);
        assert_eq!(j["id"], "c1");
        assert!(sse_to_json(b"data: [DONE]\n\n").is_none());
    }

    #[test]
    fn tool_calls_are_assembled() {
        let s = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        );
        let j: Value = serde_json::from_slice(&sse_to_json(s.as_bytes()).unwrap()).unwrap();
        let tc = &j["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(tc["id"], "t1");
        assert_eq!(tc["function"]["name"], "get");
        assert_eq!(tc["function"]["arguments"], "{\"a\":1}");
        assert!(j["choices"][0]["message"]["content"].is_null());
    }

    #[test]
    fn whole_to_stream_and_back() {
        let whole = sse_to_json(STREAM.as_bytes()).unwrap();
        let events = json_to_sse(&whole, true).unwrap();
        assert_eq!(events.last().unwrap(), b"data: [DONE]\n\n");
        assert!(events
            .iter()
            .all(|e| e.starts_with(b"data: ") && e.ends_with(b"\n\n")));
        let joined: Vec<u8> = events.concat();
        assert!(is_usage_event(sse_payloads(&joined)[events.len() - 2]));
        let again: Value = serde_json::from_slice(&sse_to_json(&joined).unwrap()).unwrap();
        let first: Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(again, first, "round trip");
        let without = json_to_sse(&whole, false).unwrap();
        assert_eq!(without.len(), events.len() - 1);
        assert!(json_to_sse(b"{\"object\":\"list\"}", true).is_none());
    }

    #[test]
    fn text_completions() {
        let whole = br#"{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"a b","finish_reason":"length"}]}"#;
        let ev = json_to_sse(whole, false).unwrap();
        let back: Value = serde_json::from_slice(&sse_to_json(&ev.concat()).unwrap()).unwrap();
        assert_eq!(back["choices"][0]["text"], "a b");
        assert_eq!(back["object"], "text_completion");
    }

    #[test]
    fn events_split() {
        let e = sse_events(STREAM.as_bytes());
        assert_eq!(e.len(), 6);
        assert_eq!(e.concat(), STREAM.as_bytes());
    }
}
