//! Spec §8 cases 24–34: client on Anthropic Messages, upstream OpenAI-compatible (and the
//! error mapping of both directions).

use serde_json::{json, Value};

use super::*;
use crate::usage::Usage;

fn opts(backend: Backend) -> AnthropicToOpenAi {
    AnthropicToOpenAi {
        backend,
        created: 5,
        message_id: "msg_gw".into(),
        thinking_signature: "sig_gw".into(),
        ..AnthropicToOpenAi::default()
    }
}

fn translate_for(req: Value, backend: Backend) -> (Value, A2OState) {
    let (body, st) =
        anthropic_request_to_openai(req.to_string().as_bytes(), "gpt-x", &opts(backend)).unwrap();
    (serde_json::from_slice(&body).unwrap(), st)
}

fn translate(req: Value) -> (Value, A2OState) {
    translate_for(req, Backend::Vllm)
}

fn stream_state() -> A2OState {
    translate(json!({"model": "claude", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}))
    .1
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x-1", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached}}})
}

pub(super) fn openai_sse(chunks: &[Value], done: bool) -> String {
    let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

fn run(st: &A2OState, body: &[u8]) -> (Vec<u8>, StreamEnd, Option<Usage>) {
    let mut t = OpenAiSseToAnthropic::new(st);
    let mut out = Vec::new();
    t.feed(body, &mut out);
    let end = t.finish(&mut out);
    (out, end, t.usage())
}

/// The events of an Anthropic stream; each frame's `event:` matches its data's `type`.
fn events(out: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(out).unwrap();
    assert!(s.is_empty() || s.ends_with("\n\n"));
    s.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (ev, data) = f.split_once('\n').unwrap();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(
                ev.strip_prefix("event: ").unwrap(),
                v["type"].as_str().unwrap()
            );
            v
        })
        .collect()
}

/// A block as a client assembles it.
#[derive(Debug, Default, PartialEq)]
struct Block {
    kind: String,
    text: String,
    signed: bool,
    id: String,
    name: String,
}

/// Checks the stream invariants (one `message_start` first; blocks numbered 0, 1, 2…;
/// deltas and stops only for the open block, of its type; a thinking block signed
/// before its stop; `message_delta` then `message_stop` last) and assembles the blocks.
fn blocks(evs: &[Value]) -> Vec<Block> {
    assert_eq!(evs[0]["type"], "message_start");
    assert_eq!(
        evs.iter().filter(|e| e["type"] == "message_start").count(),
        1
    );
    let mut out: Vec<Block> = Vec::new();
    let mut open: Option<u64> = None;
    for e in &evs[1..] {
        match e["type"].as_str().unwrap() {
            "content_block_start" => {
                assert!(open.is_none(), "a block starts while another is open: {e}");
                let i = e["index"].as_u64().unwrap();
                assert_eq!(i as usize, out.len(), "indices in order");
                let cb = &e["content_block"];
                out.push(Block {
                    kind: cb["type"].as_str().unwrap().into(),
                    id: cb["id"].as_str().unwrap_or("").into(),
                    name: cb["name"].as_str().unwrap_or("").into(),
                    ..Block::default()
                });
                open = Some(i);
            }
            "content_block_delta" => {
                let i = e["index"].as_u64().unwrap();
                assert_eq!(open, Some(i), "delta for a block that is not open: {e}");
                let b = &mut out[i as usize];
                let d = &e["delta"];
                match (b.kind.as_str(), d["type"].as_str().unwrap()) {
                    ("text", "text_delta") => b.text.push_str(d["text"].as_str().unwrap()),
                    ("thinking", "thinking_delta") => {
                        assert!(!b.signed);
                        b.text.push_str(d["thinking"].as_str().unwrap())
                    }
                    ("thinking", "signature_delta") => b.signed = true,
                    ("tool_use", "input_json_delta") => {
                        b.text.push_str(d["partial_json"].as_str().unwrap())
                    }
                    other => panic!("delta of the wrong type: {other:?}"),
                }
            }
            "content_block_stop" => {
                let i = e["index"].as_u64().unwrap();
                assert_eq!(open, Some(i), "stop for a block that is not open: {e}");
                if out[i as usize].kind == "thinking" {
                    assert!(out[i as usize].signed, "thinking signed before its stop");
                }
                open = None;
            }
            "message_delta" | "message_stop" | "error" => assert!(open.is_none()),
            other => panic!("unexpected event {other}"),
        }
    }
    out
}

fn tail(evs: &[Value]) -> (&Value, &Value) {
    let n = evs.len();
    assert_eq!(evs[n - 1]["type"], "message_stop");
    assert_eq!(evs[n - 2]["type"], "message_delta");
    (&evs[n - 2]["delta"], &evs[n - 2]["usage"])
}

#[test]
fn case_24_plain_text() {
    let st = stream_state();
    let (req, _) = translate(json!({"model": "claude", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(req["stream_options"], json!({"include_usage": true}));
    let body = openai_sse(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(12, 2, 0),
        ],
        true,
    );
    let (out, end, usage) = run(&st, body.as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let m = &evs[0]["message"];
    assert_eq!(m["id"], "msg_gw");
    assert_eq!(m["model"], "gpt-x-1");
    assert_eq!(m["content"], json!([]));
    assert_eq!(m["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(evs[1]["content_block"], json!({"type": "text", "text": ""}));
    let b = blocks(&evs);
    assert_eq!(b[0].text, "Hello");
    let (delta, u) = tail(&evs);
    assert_eq!(delta["stop_reason"], "end_turn");
    assert_eq!(u["input_tokens"], 12);
    assert_eq!(u["output_tokens"], 2);
    assert_eq!(usage.unwrap().total_tokens, 14);
}

#[test]
fn case_25_reasoning_then_text() {
    let mut cs = vec![chunk(json!({"role": "assistant"}), None)];
    for r in ["I ", "think", "."] {
        cs.push(chunk(
            json!({"reasoning_content": r, "content": null}),
            None,
        ));
    }
    for t in ["The", " answer", "!"] {
        cs.push(chunk(json!({"content": t, "reasoning_content": ""}), None));
    }
    cs.push(chunk(json!({}), Some("stop")));
    cs.push(usage_chunk(3, 6, 0));
    let (out, end, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    let b = blocks(&evs);
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].kind.as_str(), b[0].text.as_str()),
        ("thinking", "I think.")
    );
    assert!(b[0].signed);
    assert_eq!(
        (b[1].kind.as_str(), b[1].text.as_str()),
        ("text", "The answer!")
    );
    let first_text = evs
        .iter()
        .find(|e| e["delta"]["type"] == "text_delta")
        .unwrap();
    assert_eq!(
        first_text["delta"]["text"], "The",
        "the trigger chunk's text is kept"
    );
    let sig = evs
        .iter()
        .find(|e| e["delta"]["type"] == "signature_delta")
        .unwrap();
    assert_eq!(sig["delta"]["signature"], "sig_gw");
    assert_eq!(
        evs[1]["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    // vLLM's field name works the same.
    let cs = vec![
        chunk(json!({"reasoning": "r"}), None),
        chunk(json!({"content": "t"}), Some("stop")),
    ];
    let (out, _, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    let b = blocks(&events(&out));
    assert_eq!(
        (b[0].kind.as_str(), b[1].kind.as_str()),
        ("thinking", "text")
    );
}

#[test]
fn case_26_empty_tool_calls() {
    let cs = vec![
        chunk(
            json!({"role": "assistant", "content": "", "tool_calls": []}),
            None,
        ),
        chunk(json!({"content": "Hi", "tool_calls": []}), None),
        chunk(json!({}), Some("stop")),
    ];
    let (out, _, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    let evs = events(&out);
    assert!(evs.iter().all(|e| e["delta"]["type"] != "input_json_delta"));
    let b = blocks(&evs);
    assert_eq!(
        b,
        vec![Block {
            kind: "text".into(),
            text: "Hi".into(),
            ..Block::default()
        }]
    );
    assert_eq!(tail(&evs).0["stop_reason"], "end_turn");
}

fn tc(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut t = json!({"index": index, "function": {"arguments": args}});
    if let Some(id) = id {
        t["id"] = json!(id);
        t["type"] = json!("function");
    }
    if let Some(n) = name {
        t["function"]["name"] = json!(n);
    }
    t
}

#[test]
fn case_27_interleaved_tool_args() {
    let cs = vec![
        chunk(
            json!({"tool_calls": [tc(0, Some("u0"), Some("f"), "")]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [tc(1, Some("u1"), Some("g"), "")]}),
            None,
        ),
        chunk(json!({"tool_calls": [tc(0, None, None, "{\"a\":")]}), None),
        chunk(json!({"tool_calls": [tc(1, None, None, "{\"b\":")]}), None),
        chunk(json!({"tool_calls": [tc(0, None, None, "1}")]}), None),
        chunk(json!({"tool_calls": [tc(1, None, None, "[2]}")]}), None),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(1, 1, 0),
    ];
    let (out, end, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    let b = blocks(&evs);
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].id.as_str(), b[0].name.as_str(), b[0].text.as_str()),
        ("u0", "f", "{\"a\":1}")
    );
    assert_eq!(
        (b[1].id.as_str(), b[1].name.as_str(), b[1].text.as_str()),
        ("u1", "g", "{\"b\":[2]}")
    );
    assert_eq!(tail(&evs).0["stop_reason"], "tool_use");
    // Sequential calls stream live: the second starts as soon as its first fragment comes.
    let cs = vec![
        chunk(json!({"content": "Let me look."}), None),
        chunk(
            json!({"tool_calls": [tc(0, Some("u0"), Some("f"), "{\"a\"")]}),
            None,
        ),
        chunk(json!({"tool_calls": [tc(0, None, None, ":1}")]}), None),
        chunk(
            json!({"tool_calls": [tc(1, Some("u1"), Some("g"), "{}")]}),
            None,
        ),
    ];
    let mut t = OpenAiSseToAnthropic::new(&stream_state());
    let mut out = Vec::new();
    t.feed(openai_sse(&cs, false).as_bytes(), &mut out);
    let evs = events(&out);
    let starts: Vec<&Value> = evs
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .collect();
    assert_eq!(
        starts.len(),
        3,
        "text, u0, u1 all started before the finish"
    );
    assert_eq!(starts[2]["content_block"]["name"], "g");
    // Some backends reuse index 0 with a new id for every call.
    let cs = vec![
        chunk(
            json!({"tool_calls": [tc(0, Some("a"), Some("f"), "{}")]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [tc(0, Some("b"), Some("f"), "{\"x\":1}")]}),
            None,
        ),
        chunk(json!({}), Some("stop")),
    ];
    let (out, _, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    let evs = events(&out);
    let b = blocks(&evs);
    assert_eq!(
        b.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        tail(&evs).0["stop_reason"],
        "tool_use",
        "a `stop` with tool calls is tool_use"
    );
}

#[test]
fn case_28_combined_final_chunk() {
    let cs = vec![
        chunk(json!({"role": "assistant", "content": "all"}), Some("stop")),
        usage_chunk(4, 1, 0),
    ];
    let (out, end, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    let b = blocks(&evs);
    assert_eq!(b[0].text, "all");
    let pos_text = evs
        .iter()
        .position(|e| e["delta"]["type"] == "text_delta")
        .unwrap();
    let pos_md = evs
        .iter()
        .position(|e| e["type"] == "message_delta")
        .unwrap();
    assert!(pos_text < pos_md);
}

#[test]
fn case_29_usage_only_chunk() {
    let mut last = usage_chunk(100, 5, 30);
    last["choices"] = Value::Null;
    let cs = [
        chunk(json!({"content": "x"}), None),
        chunk(json!({}), Some("length")),
        last,
    ];
    let st = stream_state();
    let mut t = OpenAiSseToAnthropic::new(&st);
    let mut out = Vec::new();
    t.feed(openai_sse(&cs[..2], false).as_bytes(), &mut out);
    assert!(
        events(&out).iter().all(|e| e["type"] != "message_delta"),
        "message_delta waits for the usage chunk"
    );
    t.feed(openai_sse(&cs[2..], false).as_bytes(), &mut out);
    let evs = events(&out);
    let (delta, u) = tail(&evs);
    assert_eq!(delta["stop_reason"], "max_tokens");
    assert_eq!(u["input_tokens"], 70);
    assert_eq!(u["output_tokens"], 5);
    assert_eq!(u["cache_read_input_tokens"], 30);
    // Whatever follows the final message_delta is dropped; [DONE] changes nothing.
    let n = out.len();
    t.feed(
        openai_sse(&[chunk(json!({"content": "late"}), None)], true).as_bytes(),
        &mut out,
    );
    assert_eq!(out.len(), n);
    assert_eq!(t.finish(&mut out), StreamEnd::Complete);
    assert_eq!(out.len(), n);
    assert_eq!(t.usage().unwrap().prompt_tokens, 100);
    // No usage chunk at all: [DONE] releases the held message_delta.
    let (out, end, _) = run(&st, openai_sse(&cs[..2], true).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    assert_eq!(tail(&events(&out)).1["output_tokens"], 0);
    // Nor [DONE]: end of input after the finish completes the message too.
    let (out, end, _) = run(&st, openai_sse(&cs[..2], false).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    tail(&events(&out));
}

#[test]
fn case_30_block_invariant() {
    // Reasoning, text and two tools interleaved in the worst order.
    let cs = vec![
        chunk(json!({"reasoning_content": "r1"}), None),
        chunk(
            json!({"tool_calls": [tc(0, Some("t0"), Some("f"), "{\"q\":")]}),
            None,
        ),
        chunk(json!({"content": "c1"}), None),
        chunk(
            json!({"tool_calls": [tc(1, Some("t1"), Some("g"), "{")]}),
            None,
        ),
        chunk(json!({"reasoning_content": "r2"}), None),
        chunk(json!({"tool_calls": [tc(0, None, None, "\"}\"}")]}), None),
        chunk(json!({"content": "c2"}), None),
        chunk(json!({"tool_calls": [tc(1, None, None, "}")]}), None),
        chunk(json!({"content": "c3"}), Some("tool_calls")),
    ];
    let (out, end, _) = run(&stream_state(), openai_sse(&cs, true).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let b = blocks(&events(&out));
    let tools: Vec<(&str, &str)> = b
        .iter()
        .filter(|b| b.kind == "tool_use")
        .map(|b| (b.id.as_str(), b.text.as_str()))
        .collect();
    assert_eq!(tools, [("t0", "{\"q\":\"}\"}"), ("t1", "{}")]);
    let text: String = b
        .iter()
        .filter(|b| b.kind == "text")
        .map(|b| b.text.as_str())
        .collect();
    assert_eq!(text, "c1c2c3");
    let thinking: String = b
        .iter()
        .filter(|b| b.kind == "thinking")
        .map(|b| b.text.as_str())
        .collect();
    assert_eq!(thinking, "r1r2");
}

#[test]
fn case_31_tool_result_ordering() {
    let (req, _) = translate(json!({"model": "claude", "max_tokens": 100, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"type": "tool_result", "tool_use_id": "t2", "content": "bad", "is_error": true, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "next"},
        ]},
    ]}));
    assert_eq!(
        req["messages"],
        json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "t2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": "one\ntwo"},
            {"role": "tool", "tool_call_id": "t2", "content": "Error: bad"},
            {"role": "user", "content": "next"},
        ])
    );
    // An image returned by a tool follows in a user message.
    let (req, _) = translate(json!({"model": "claude", "max_tokens": 100, "messages": [
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
        ]},
    ]}));
    assert_eq!(
        req["messages"][0],
        json!({"role": "tool", "tool_call_id": "t1", "content": ""})
    );
    assert_eq!(
        req["messages"][1]["content"],
        json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    );
}

#[test]
fn case_32_billing_header() {
    let req = json!({"model": "claude", "max_tokens": 100, "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.1.abc; cc_entrypoint=cli; cch=1a2b3;"},
        {"type": "text", "text": "You are…", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ], "messages": [{"role": "user", "content": "hi"}]});
    for backend in [Backend::LlamaCpp, Backend::Vllm, Backend::OpenAi] {
        let (o, st) = translate_for(req.clone(), backend);
        assert_eq!(
            o["messages"][0],
            json!({"role": "system", "content": "You are…\nBe brief."})
        );
        assert!(st.billing_header_stripped);
    }
    // The native passthrough does not translate: validation leaves the body alone.
    assert!(validate_anthropic_request(req.to_string().as_bytes()).is_ok());
}

#[test]
fn case_33_long_tool_name() {
    let long = "t".repeat(80);
    let (req, st) = translate(json!({"model": "claude", "max_tokens": 100, "stream": true,
        "tools": [{"name": long, "description": "d", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
                  {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "tool", "name": long, "disable_parallel_tool_use": true},
        "messages": [{"role": "user", "content": "hi"}]}));
    let sent = req["tools"][0]["function"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(long.as_bytes()));
    assert_eq!(sent, format!("{}_{}", &long[..55], &digest[..8]));
    assert_eq!(sent.len(), 64);
    assert_eq!(
        req["tools"].as_array().unwrap().len(),
        1,
        "the server tool is dropped"
    );
    assert_eq!(st.dropped_tools, ["web_search"]);
    assert_eq!(
        req["tool_choice"],
        json!({"type": "function", "function": {"name": sent}})
    );
    assert_eq!(req["parallel_tool_calls"], false);
    assert_eq!(
        req["tools"][0]["function"]["parameters"],
        json!({"type": "object", "properties": {"a": {"type": "string"}}})
    );
    // Streamed and whole responses give the client its own name back.
    let cs = vec![
        chunk(
            json!({"tool_calls": [tc(0, Some("c"), Some(&sent), "{}")]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    let (out, _, _) = run(&st, openai_sse(&cs, true).as_bytes());
    assert_eq!(blocks(&events(&out))[0].name, long);
    let whole = json!({"id": "x", "model": "gpt-x-1", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": sent, "arguments": "{\"a\":\"b\"}"}}]}}]});
    let (body, _) = openai_response_to_anthropic(whole.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["content"][0]["name"], long.as_str());
}

#[test]
fn case_34_error_mapping() {
    // Anthropic 529 → OpenAI client 503 (the caller copies retry-after: 7).
    let (s, b) = anthropic_error_to_openai(
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
    );
    assert_eq!(s, 503);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert_eq!(v["error"]["message"], "anthropic: Overloaded");
    let (s, _) = anthropic_error_to_openai(
        500,
        br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#,
    );
    assert_eq!(s, 502);
    // OpenAI 503 → /v1/messages client 529 overloaded_error.
    let (s, b) = openai_error_to_anthropic(
        503,
        br#"{"error":{"message":"busy","type":"server_error"}}"#,
    );
    assert_eq!(s, 529);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    );
    let (s, b) = openai_error_to_anthropic(
        429,
        br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!(s, 429);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // An upstream that already speaks Anthropic errors passes unchanged.
    let native = br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: bad"},"request_id":"r"}"#;
    assert_eq!(
        openai_error_to_anthropic(400, native),
        (400, native.to_vec())
    );
    assert_eq!(
        anthropic_error_body("permission_error", "no"),
        br#"{"error":{"message":"no","type":"permission_error"},"type":"error"}"#.to_vec()
    );
    assert_eq!(anthropic_error_type(429), "rate_limit_error");
    // A refused request in each dialect's shape.
    let e = validate_anthropic_request(br#"{"model":"m","messages":[]}"#).unwrap_err();
    let a: Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
    assert_eq!(a["type"], "error");
    assert_eq!(a["error"]["type"], "invalid_request_error");
    assert!(a["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("max_tokens"));
    let o: Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
    assert_eq!(o["error"]["param"], "max_tokens");
    assert_eq!(Dialect::Anthropic.label(), "anthropic");
    assert_eq!(Dialect::OpenAi.label(), "openai");
}

#[test]
fn stream_errors_and_truncation() {
    let st = stream_state();
    // Cut before any finish.
    let body = openai_sse(
        &[
            chunk(json!({"content": "a"}), None),
            chunk(json!({"content": "b"}), None),
        ],
        false,
    );
    let mut t = OpenAiSseToAnthropic::new(&st);
    let mut out = Vec::new();
    t.feed(body.as_bytes(), &mut out);
    t.feed(b"data: {\"choices\":[{\"delta\":{\"cont", &mut out);
    assert_eq!(t.finish(&mut out), StreamEnd::Truncated);
    let evs = events(&out);
    assert_eq!(evs.last().unwrap()["type"], "error");
    assert_eq!(evs.last().unwrap()["error"]["type"], "api_error");
    assert!(evs.iter().all(|e| e["type"] != "message_stop"));
    blocks(&evs[..evs.len() - 1]);
    let n = out.len();
    assert_eq!(t.finish(&mut out), StreamEnd::Truncated);
    assert_eq!(out.len(), n);
    // An error chunk mid-stream (OpenRouter, vLLM).
    let body = format!(
        "{}data: {{\"error\":{{\"message\":\"too many\",\"code\":429}}}}\n\n",
        openai_sse(&[chunk(json!({"content": "a"}), None)], false)
    );
    let (out, end, _) = run(&st, body.as_bytes());
    assert_eq!(end, StreamEnd::UpstreamError);
    let evs = events(&out);
    assert_eq!(
        evs.last().unwrap(),
        &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "too many"}})
    );
    let (out, end, _) = run(
        &st,
        openai_sse(&[chunk(json!({"content": "a"}), Some("error"))], true).as_bytes(),
    );
    assert_eq!(end, StreamEnd::UpstreamError);
    assert_eq!(events(&out).last().unwrap()["type"], "error");
    // An error before anything: no message_start.
    let (out, end, _) = run(
        &st,
        b"data: {\"error\":{\"message\":\"m\",\"type\":\"server_overloaded\"}}\n\n",
    );
    assert_eq!(end, StreamEnd::UpstreamError);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["error"]["type"], "overloaded_error");
}

#[test]
fn stream_empty_completion_and_done_without_finish() {
    let st = stream_state();
    let (out, end, _) = run(
        &st,
        openai_sse(&[chunk(json!({"role": "assistant"}), Some("stop"))], true).as_bytes(),
    );
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    assert_eq!(
        evs.len(),
        3,
        "message_start, message_delta, message_stop: content []"
    );
    assert!(blocks(&evs).is_empty());
    let (out, end, _) = run(
        &st,
        openai_sse(&[chunk(json!({"content": "x"}), None)], true).as_bytes(),
    );
    assert_eq!(end, StreamEnd::Complete);
    let evs = events(&out);
    assert_eq!(tail(&evs).0["stop_reason"], "end_turn");
    // vLLM names the stop string that matched.
    let mut c = chunk(json!({"content": "x"}), Some("stop"));
    c["choices"][0]["stop_reason"] = json!("END");
    let (out, _, _) = run(&st, openai_sse(&[c], true).as_bytes());
    let evs = events(&out);
    assert_eq!(
        tail(&evs).0,
        &json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
}

#[test]
fn non_stream_response() {
    let (_, st) = translate(
        json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let whole = json!({"id": "chatcmpl-1", "model": "gpt-x-1", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Sure.", "reasoning_content": "hm", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "", "type": "function", "function": {"name": "", "arguments": "not json"}},
            {"id": "c3", "type": "function", "function": {"name": "h", "arguments": ""}}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59, "prompt_tokens_details": {"cached_tokens": 20}}});
    let (body, usage) = openai_response_to_anthropic(whole.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["id"], "msg_gw");
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "gpt-x-1");
    assert_eq!(
        m["content"][0],
        json!({"type": "thinking", "thinking": "hm", "signature": "sig_gw"})
    );
    assert_eq!(m["content"][1], json!({"type": "text", "text": "Sure."}));
    assert_eq!(
        m["content"][2],
        json!({"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}})
    );
    assert_eq!(
        m["content"][3],
        json!({"type": "tool_use", "id": "toolu_msg_gw_1", "name": "unnamed_tool_1", "input": {"_raw": "not json"}})
    );
    assert_eq!(m["content"][4]["input"], json!({}));
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["usage"]["input_tokens"], 30);
    assert_eq!(m["usage"]["cache_read_input_tokens"], 20);
    assert_eq!(m["usage"]["output_tokens"], 9);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 50,
            completion_tokens: 9,
            total_tokens: 59
        }
    );
    let empty = json!({"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "length"}]});
    let (body, _) = openai_response_to_anthropic(empty.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["content"], json!([]));
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(
        m["model"], "gpt-x",
        "the upstream model asked for when the answer names none"
    );
    for bad in [&b"{"[..], b"{\"choices\":[]}", b"3"] {
        assert_eq!(
            openai_response_to_anthropic(bad, &st).unwrap_err().status(),
            502
        );
    }
    for (f, tools, want) in [
        (Some("stop"), false, "end_turn"),
        (Some("length"), false, "max_tokens"),
        (Some("tool_calls"), false, "tool_use"),
        (Some("function_call"), false, "tool_use"),
        (Some("content_filter"), false, "end_turn"),
        (Some("content_filter"), true, "end_turn"),
        (Some("weird"), false, "end_turn"),
        (None, true, "tool_use"),
    ] {
        assert_eq!(stop_reason_for(f, tools), want, "{f:?}");
    }
}

#[test]
fn backend_flavours() {
    let req = json!({"model": "claude", "max_tokens": 300, "top_k": 5, "temperature": 0.3, "stop_sequences": ["X"],
    "metadata": {"user_id": "u1"}, "thinking": {"type": "enabled", "budget_tokens": 3000},
    "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "plan", "signature": "s"},
            {"type": "redacted_thinking", "data": "zz"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
    ]});
    let (o, _) = translate_for(req.clone(), Backend::OpenAi);
    assert_eq!(o["max_completion_tokens"], 300);
    assert!(o.get("max_tokens").is_none() && o.get("top_k").is_none());
    assert!(o["messages"][1]["content"].is_null());
    assert!(
        o["messages"][1].get("reasoning").is_none()
            && o["messages"][1].get("reasoning_content").is_none()
    );
    assert_eq!(o["reasoning_effort"], "high");
    assert_eq!(
        (&o["temperature"], &o["stop"], &o["user"]),
        (&json!(0.3), &json!(["X"]), &json!("u1"))
    );
    let (v, _) = translate_for(req.clone(), Backend::Vllm);
    assert_eq!((&v["max_tokens"], &v["top_k"]), (&json!(300), &json!(5)));
    assert_eq!(v["messages"][1]["reasoning"], "plan");
    let (l, _) = translate_for(req.clone(), Backend::LlamaCpp);
    assert_eq!(l["messages"][1]["content"], "");
    assert_eq!(l["messages"][1]["reasoning_content"], "plan");
    assert_eq!(l["thinking_budget_tokens"], 3000);
    let (g, _) = translate_for(req.clone(), Backend::Generic);
    assert!(g.get("top_k").is_none());
    assert_eq!(g["max_tokens"], 300);
    let no_reasoning = AnthropicToOpenAi {
        reasoning: false,
        ..opts(Backend::OpenAi)
    };
    let (b, _) =
        anthropic_request_to_openai(req.to_string().as_bytes(), "m", &no_reasoning).unwrap();
    assert!(!String::from_utf8(b).unwrap().contains("reasoning_effort"));
    // Structured output: strict on OpenAI, plain elsewhere.
    let req = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "q"}],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}}}}}});
    let (o, _) = translate_for(req.clone(), Backend::OpenAi);
    let js = &o["response_format"]["json_schema"];
    assert_eq!(js["strict"], true);
    assert_eq!(js["schema"]["required"], json!(["a"]));
    assert_eq!(
        js["schema"]["properties"]["a"]["additionalProperties"],
        false
    );
    let (v, _) = translate_for(req, Backend::Vllm);
    assert!(v["response_format"]["json_schema"].get("strict").is_none());
    // Documents: PDF only where the backend takes files.
    let pdf = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}}]}]});
    let (o, _) = translate_for(pdf.clone(), Backend::OpenAi);
    assert_eq!(
        o["messages"][0]["content"][0]["file"]["file_data"],
        "data:application/pdf;base64,JVBE"
    );
    assert_eq!(
        o["messages"][0]["content"][1],
        json!({"type": "text", "text": "plain"})
    );
    let e = anthropic_request_to_openai(pdf.to_string().as_bytes(), "m", &opts(Backend::Vllm))
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages.0.content.0.source"));
    let e = anthropic_request_to_openai(
        br#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"search_result","source":"s"}]}]}"#,
        "m",
        &opts(Backend::Vllm),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages.0.content.0.type"));
}

#[test]
fn validation() {
    let ok = |b: &str| validate_anthropic_request(b.as_bytes());
    assert!(ok(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f"}],"tool_choice":{"type":"auto"}}"#).is_ok());
    assert!(ok(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"new_thing"}]}]}"#).is_ok());
    for (body, param) in [
        (
            r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            "model",
        ),
        (
            r#"{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            "model",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens",
        ),
        (r#"{"model":"m","max_tokens":1}"#, "messages"),
        (r#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
            "messages.0.role",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}"#,
            "messages.0.content",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#,
            "messages.0.content.0.type",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":"{}"}]}]}"#,
            "messages.0.content.0.input",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}"#,
            "messages.0.content.0.tool_use_id",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"system":[{"type":"image"}]}"#,
            "system.0",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{}]}"#,
            "tools.0.name",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"maybe"}}"#,
            "tool_choice.type",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stop_sequences":"x"}"#,
            "stop_sequences",
        ),
    ] {
        assert_eq!(
            ok(body).unwrap_err().param.as_deref(),
            Some(param),
            "{body}"
        );
    }
    assert_eq!(ok("[]").unwrap_err().code, "invalid_request_body");
    assert_eq!(ok("{").unwrap_err().code, "invalid_json");
    assert!(validate_anthropic_count_tokens(
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#
    )
    .is_ok());
    assert!(validate_anthropic_count_tokens(br#"{"model":"m"}"#).is_err());
    // The translation validates too.
    assert!(anthropic_request_to_openai(
        br#"{"model":"m","messages":[]}"#,
        "x",
        &opts(Backend::Vllm)
    )
    .is_err());
}

#[test]
fn token_estimate() {
    let body = json!({"model": "m", "system": "abcd", "messages": [
        {"role": "user", "content": "efgh"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "ijk"}]},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAAAAAA"}}]},
    ], "tools": [{"name": "f", "description": "dd", "input_schema": {}}]});
    // 4 + 4 + (1 + 7) + 3 + (1 + 2 + 2) = 24 characters.
    assert_eq!(estimate_input_tokens(body.to_string().as_bytes()), 6);
    assert_eq!(
        estimate_input_tokens(r#"{"messages":[{"role":"user","content":"é"}]}"#.as_bytes()),
        1
    );
    assert_eq!(estimate_input_tokens(b"not json"), 0);
    assert_eq!(estimate_input_tokens(b"{}"), 0);
}
