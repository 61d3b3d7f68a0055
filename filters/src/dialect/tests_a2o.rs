//! Spec §8 cases 31–34: client on Anthropic Messages, upstream OpenAI-compatible (and the
//! error mapping of both directions).

use serde_json::{json, Value};

use super::*;
use crate::usage::Usage;

pub(super) fn opts(backend: Backend) -> AnthropicToOpenAi {
    AnthropicToOpenAi {
        backend,
        created: 5,
        message_id: "msg_gw".into(),
        thinking_signature: "sig_gw".into(),
        ..AnthropicToOpenAi::default()
    }
}

pub(super) fn translate_for(req: Value, backend: Backend) -> (Value, A2OState) {
    let (body, st) =
        anthropic_request_to_openai(req.to_string().as_bytes(), "gpt-x", &opts(backend)).unwrap();
    (serde_json::from_slice(&body).unwrap(), st)
}

pub(super) fn translate(req: Value) -> (Value, A2OState) {
    translate_for(req, Backend::Vllm)
}

pub(super) fn stream_state() -> A2OState {
    translate(json!({"model": "claude", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}))
    .1
}

pub(super) fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

pub(super) fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Value {
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

pub(super) fn run(st: &A2OState, body: &[u8]) -> (Vec<u8>, StreamEnd, Option<Usage>) {
    let mut t = OpenAiSseToAnthropic::new(st);
    let mut out = Vec::new();
    t.feed(body, &mut out);
    let end = t.finish(&mut out);
    (out, end, t.usage())
}

/// The events of an Anthropic stream; each frame's `event:` matches its data's `type`.
pub(super) fn events(out: &[u8]) -> Vec<Value> {
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
pub(super) struct Block {
    pub(super) kind: String,
    pub(super) text: String,
    pub(super) signed: bool,
    pub(super) id: String,
    pub(super) name: String,
}

/// Checks the stream invariants (one `message_start` first; blocks numbered 0, 1, 2…;
/// deltas and stops only for the open block, of its type; a thinking block signed
/// before its stop; `message_delta` then `message_stop` last) and assembles the blocks.
pub(super) fn blocks(evs: &[Value]) -> Vec<Block> {
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

pub(super) fn tail(evs: &[Value]) -> (&Value, &Value) {
    let n = evs.len();
    assert_eq!(evs[n - 1]["type"], "message_stop");
    assert_eq!(evs[n - 2]["type"], "message_delta");
    (&evs[n - 2]["delta"], &evs[n - 2]["usage"])
}

pub(super) fn tc(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
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

#[test]
fn whole_responses_of_every_shape_upstreams_send() {
    let (_, st) = translate(
        json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
    );
    // vLLM's stop_reason is the matched string or the stop token's id; content may be a
    // list of parts; arguments may arrive as an object; usage details may be null.
    let whole = json!({"choices": [{"index": 0, "finish_reason": "stop", "stop_reason": 128009,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "a\"b"}, {"type": "image"}, {"type": "text", "text": "c"}],
            "tool_calls": null}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": null, "prompt_tokens_details": null}});
    let (body, usage) = openai_response_to_anthropic(whole.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["content"], json!([{"type": "text", "text": "a\"bc"}]));
    assert_eq!(
        m["stop_reason"], "end_turn",
        "a token id is not a stop sequence"
    );
    assert_eq!(m["stop_sequence"], Value::Null);
    assert_eq!(usage.prompt_tokens, 5);
    assert_eq!(usage.completion_tokens, 0);
    let whole = json!({"choices": [{"finish_reason": "stop", "stop_reason": "\n\n",
        "message": {"content": "x", "refusal": null}}]});
    let (body, _) = openai_response_to_anthropic(whole.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["stop_reason"], "stop_sequence");
    assert_eq!(m["stop_sequence"], "\n\n");
    let whole = json!({"choices": [{"finish_reason": "tool_calls", "message": {"content": null, "refusal": "no",
        "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": {"k": [1, 2]}}},
                       {"id": "u", "function": {"name": "g", "arguments": " [1] "}}]}}]});
    let (body, _) = openai_response_to_anthropic(whole.to_string().as_bytes(), &st).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["content"][0], json!({"type": "text", "text": "no"}));
    assert_eq!(m["content"][1]["input"], json!({"k": [1, 2]}));
    assert_eq!(m["content"][2]["input"], json!({"_raw": " [1] "}));
    assert_eq!(m["stop_reason"], "tool_use");
    // A body of the wrong shape is an unreadable upstream answer, not a panic.
    for bad in [
        &br#"{"choices": 3}"#[..],
        br#"{"choices": [{"message": 1}]}"#,
        br#"{"choices": null}"#,
    ] {
        assert_eq!(
            openai_response_to_anthropic(bad, &st).unwrap_err().status(),
            502
        );
    }
}
