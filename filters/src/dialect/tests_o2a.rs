//! Spec §8 cases 1–13: client on OpenAI chat, upstream Anthropic — the request and the
//! non-streamed response — and the helpers of the stream cases.

use serde_json::{json, Value};

use super::*;
use crate::usage::Usage;

pub(super) fn opts() -> OpenAiToAnthropic {
    OpenAiToAnthropic {
        default_max_tokens: 8192,
        created: 1_700_000_000,
        ..OpenAiToAnthropic::default()
    }
}

pub(super) fn translate(req: Value) -> (Value, O2AState) {
    let (body, st) =
        openai_request_to_anthropic(req.to_string().as_bytes(), "claude-x", &opts()).unwrap();
    (serde_json::from_slice(&body).unwrap(), st)
}

pub(super) fn refuse(req: Value) -> TranslateError {
    openai_request_to_anthropic(req.to_string().as_bytes(), "claude-x", &opts()).unwrap_err()
}

pub(super) fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

/// An Anthropic SSE body from `(event, data)` pairs.
pub(super) fn anthropic_sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e))
        .collect()
}

pub(super) fn run(st: &O2AState, body: &[u8]) -> (Vec<u8>, StreamEnd, Option<Usage>) {
    let mut t = AnthropicSseToOpenAi::new(st);
    let mut out = Vec::new();
    t.feed(body, &mut out);
    let end = t.finish(&mut out);
    (out, end, t.usage())
}

/// The JSON payloads of an OpenAI stream, and whether it ended with `[DONE]`.
pub(super) fn chunks(out: &[u8]) -> (Vec<Value>, bool) {
    let s = std::str::from_utf8(out).unwrap();
    assert!(
        s.is_empty() || s.ends_with("\n\n"),
        "frames are complete: {s}"
    );
    let mut done = false;
    let mut v = Vec::new();
    for frame in s.split("\n\n").filter(|f| !f.is_empty()) {
        let data = frame.strip_prefix("data: ").expect("data frame");
        assert!(!done, "nothing after [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            v.push(serde_json::from_str(data).unwrap());
        }
    }
    (v, done)
}

pub(super) fn start(input: u64, cache_read: u64) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "content": [], "model": "claude-x-2", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "cache_read_input_tokens": cache_read, "output_tokens": 1}}})
}

pub(super) fn text_stream() -> Vec<Value> {
    vec![
        start(50, 10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 41}}),
        json!({"type": "message_stop"}),
    ]
}

pub(super) fn streaming(include_usage: bool) -> O2AState {
    let mut req =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    if include_usage {
        req["stream_options"] = json!({"include_usage": true});
    }
    translate(req).1
}

#[test]
fn case_1_system_hoisting() {
    let (a, _) = translate(json!({"model": "m", "messages": [
        {"role": "system", "content": "A"},
        {"role": "user", "content": "u1"},
        {"role": "developer", "content": [{"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "system", "content": "  "},
    ]}));
    assert_eq!(
        a["system"],
        json!([text("A"), {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        a["messages"],
        json!([
            {"role": "user", "content": [text("u1")]},
            {"role": "assistant", "content": [text("a1")]},
            {"role": "user", "content": [text("u2")]},
        ])
    );
    // The alternative placement keeps a late system message where it was.
    let o = OpenAiToAnthropic {
        mid_conversation_system: MidConversationSystem::AsUserText,
        ..opts()
    };
    let req = json!({"model": "m", "messages": [
        {"role": "system", "content": "A"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": "B"},
        {"role": "user", "content": "u2"},
    ]});
    let (b, _) = openai_request_to_anthropic(req.to_string().as_bytes(), "c", &o).unwrap();
    let b: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(b["system"], json!([text("A")]));
    assert_eq!(
        b["messages"][2],
        json!({"role": "user", "content": [text("<system>\nB\n</system>"), text("u2")]})
    );
}

pub(super) fn two_calls() -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "id1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
        {"id": "id2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]})
}

#[test]
fn case_2_parallel_tool_results_merged() {
    let (a, _) = translate(json!({"model": "m", "tools": [
        {"type": "function", "function": {"name": "f"}},
        {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}},
    ], "messages": [
        {"role": "user", "content": "go"},
        two_calls(),
        {"role": "tool", "tool_call_id": "id1", "content": "r1"},
        {"role": "tool", "tool_call_id": "id2", "content": "r2"},
    ]}));
    let msgs = a["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[1]["content"],
        json!([
            {"type": "tool_use", "id": "id1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "id2", "name": "g", "input": {}},
        ])
    );
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "id1", "content": "r1"},
            {"type": "tool_result", "tool_use_id": "id2", "content": "r2"},
        ]})
    );
    assert_eq!(
        a["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
}

#[test]
fn case_3_tool_results_then_user_text() {
    let (a, _) = translate(
        json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "id1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "and now?"},
            {"role": "tool", "tool_call_id": "id1", "content": [{"type": "text", "text": "r1"}]},
        ]}),
    );
    assert_eq!(
        a["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "id1", "content": [text("r1")]},
            text("and now?"),
        ])
    );
}

#[test]
fn case_4_empty_assistant_text_with_tool_call() {
    let (a, _) = translate(
        json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "id1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "id1", "content": ""},
        ]}),
    );
    assert_eq!(
        a["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "id1", "name": "f", "input": {}}])
    );
    // An empty tool result is accepted by Anthropic and kept as "".
    assert_eq!(a["messages"][2]["content"][0]["content"], "");
    let (b, _) = translate(
        json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "text", "text": " \n"}], "tool_calls": [{"id": "id1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        ]}),
    );
    assert_eq!(b["messages"][1]["content"].as_array().unwrap().len(), 1);
}

#[test]
fn case_5_empty_user_message() {
    let (a, _) = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "   "},
    ]}));
    let msgs = a["messages"].as_array().unwrap();
    assert_eq!(msgs[2], json!({"role": "user", "content": [text(".")]}));
    assert_eq!(msgs[4], json!({"role": "user", "content": [text(".")]}));
    // An assistant-first conversation gets a user turn first; an empty assistant
    // message disappears and its neighbours merge.
    let (b, _) = translate(json!({"model": "m", "messages": [
        {"role": "assistant", "content": "I start"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "u2"},
    ]}));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [text(".")]},
            {"role": "assistant", "content": [text("I start")]},
            {"role": "user", "content": [text("u1"), text("u2")]},
        ])
    );
    let e = refuse(json!({"model": "m", "messages": [{"role": "system", "content": "s"}]}));
    assert_eq!(e.param.as_deref(), Some("messages"));
}

#[test]
fn case_6_no_arg_tool_history() {
    let (a, _) = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "functions.now:0", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "functions.now:0", "content": "noon"},
    ]}));
    let tu = &a["messages"][1]["content"][0];
    assert_eq!(tu["input"], json!({}));
    // Invalid id characters are rewritten the same way on both sides.
    assert_eq!(tu["id"], "functions_now_0");
    assert_eq!(
        a["messages"][2]["content"][0]["tool_use_id"],
        "functions_now_0"
    );
    // Tool history without `tools`: a minimal definition and tool_choice none.
    assert_eq!(
        a["tools"],
        json!([{"name": "now", "input_schema": {"type": "object", "properties": {}}}])
    );
    assert_eq!(a["tool_choice"], json!({"type": "none"}));
}

#[test]
fn case_7_bad_tool_arguments() {
    for args in ["{oops", "[1]", "3"] {
        let e = refuse(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                                                 {"id": "b", "type": "function", "function": {"name": "f", "arguments": args}}]},
        ]}));
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[1].function.arguments"),
            "{args}"
        );
        let body: Value = serde_json::from_slice(&e.openai_body()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["param"],
            "messages[1].tool_calls[1].function.arguments"
        );
    }
}

#[test]
fn case_8_images() {
    let (a, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
            {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBE"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBF", "filename": "a.pdf"}},
        ]}]}),
    );
    assert_eq!(
        a["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBF"}},
        ])
    );
    for (part, param) in [
        (
            json!({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}),
            "messages[0].content[0]",
        ),
        (
            json!({"type": "file", "file": {"file_id": "file-1"}}),
            "messages[0].content[0].file",
        ),
    ] {
        let e = refuse(json!({"model": "m", "messages": [{"role": "user", "content": [part]}]}));
        assert_eq!(e.param.as_deref(), Some(param));
    }
}

#[test]
fn case_9_tool_choice_matrix() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}]);
    let user = json!([{"role": "user", "content": "x"}]);
    for (choice, want) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let (a, _) = translate(
            json!({"model": "m", "tools": tools, "tool_choice": choice, "messages": user}),
        );
        assert_eq!(a["tool_choice"], want);
        assert!(a["tools"][0].get("strict").is_none());
        let (b, _) = translate(
            json!({"model": "m", "tools": tools, "tool_choice": choice, "parallel_tool_calls": false, "messages": user}),
        );
        let none = want["type"] == "none";
        assert_eq!(
            b["tool_choice"]["disable_parallel_tool_use"] == json!(true),
            !none
        );
    }
    let (a, _) = translate(
        json!({"model": "m", "tools": tools, "parallel_tool_calls": false, "messages": user}),
    );
    assert_eq!(
        a["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    for empty in [json!([]), Value::Null] {
        let (a, _) = translate(
            json!({"model": "m", "tools": empty, "tool_choice": "required", "messages": user}),
        );
        assert!(a.get("tool_choice").is_none());
        assert!(a.get("tools").is_none());
    }
    let e =
        refuse(json!({"model": "m", "tools": tools, "tool_choice": "sometimes", "messages": user}));
    assert_eq!(e.param.as_deref(), Some("tool_choice"));
    let e = refuse(
        json!({"model": "m", "tools": tools, "tool_choice": "required", "reasoning_effort": "low", "messages": user}),
    );
    assert_eq!(e.code, "unsupported_parameter");
}

#[test]
fn case_10_params() {
    let (a, st) = translate(
        json!({"model": "m", "stop": "\n", "temperature": 1.7, "n": 1, "seed": 3,
        "top_p": 0.5, "user": "u-123", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert!(a.get("stop_sequences").is_none());
    assert_eq!(a["temperature"], 1.0);
    assert_eq!(a["top_p"], 0.5);
    assert_eq!(a["max_tokens"], 8192);
    assert_eq!(a["metadata"], json!({"user_id": "u-123"}));
    assert!(a.get("seed").is_none() && a.get("n").is_none());
    assert!(st.default_max_tokens_applied);
    assert_eq!(st.dropped_params, vec!["seed"]);
    let (b, st) = translate(
        json!({"model": "m", "stop": ["END", " "], "max_tokens": 10, "max_completion_tokens": 20,
        "user": "a@b.com", "frequency_penalty": 1, "x_custom": 1, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert_eq!(b["max_tokens"], 20);
    assert!(b.get("metadata").is_none(), "an e-mail is not an opaque id");
    assert_eq!(st.dropped_params, vec!["frequency_penalty", "unknown"]);
    // Thinking: budget on top of the answer, no temperature.
    let (c, st) = translate(
        json!({"model": "m", "reasoning_effort": "medium", "max_tokens": 1000,
        "temperature": 0.2, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        c["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(c["max_tokens"], 3048);
    assert!(c.get("temperature").is_none());
    assert!(st.thinking && st.dropped_params.contains(&"temperature"));
    let e = refuse(
        json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
    let e = refuse(
        json!({"model": "m", "reasoning_effort": "extreme", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn case_11_unsupported() {
    let user = json!([{"role": "user", "content": "x"}]);
    let e = refuse(json!({"model": "m", "n": 2, "messages": user}));
    assert_eq!(e.param.as_deref(), Some("n"));
    assert_eq!(e.code, "unsupported_parameter");
    let body: Value = serde_json::from_slice(&e.openai_body()).unwrap();
    assert_eq!(body["error"]["param"], "n");
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    let e = refuse(json!({"model": "m", "logprobs": true, "messages": user}));
    assert_eq!(e.param.as_deref(), Some("logprobs"));
    let e = refuse(json!({"model": "m", "top_logprobs": 2, "messages": user}));
    assert_eq!(e.param.as_deref(), Some("top_logprobs"));
    let e = refuse(json!({"model": "m", "functions": [{"name": "f"}], "messages": user}));
    assert_eq!(e.param.as_deref(), Some("functions"));
    let o = OpenAiToAnthropic {
        drop_unsupported_params: true,
        ..opts()
    };
    let req = json!({"model": "m", "logprobs": true, "top_logprobs": 2, "messages": user});
    let (_, st) = openai_request_to_anthropic(req.to_string().as_bytes(), "c", &o).unwrap();
    assert_eq!(st.dropped_params, vec!["logprobs", "top_logprobs"]);
    assert_eq!(refuse(json!([1])).code, "invalid_request_body");
    assert_eq!(
        openai_request_to_anthropic(b"{", "c", &opts())
            .unwrap_err()
            .code,
        "invalid_json"
    );
}

#[test]
fn case_12_json_schema_emulation() {
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "$defs": {"x": {}}});
    let (a, st) = translate(
        json!({"model": "m", "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(a["tools"][0]["name"], JSON_TOOL);
    assert_eq!(a["tools"][0]["input_schema"], schema);
    assert_eq!(a["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    let reply = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}});
    let (body, _) = anthropic_response_to_openai(reply.to_string().as_bytes(), &st).unwrap();
    let o: Value = serde_json::from_slice(&body).unwrap();
    let c = &o["choices"][0];
    assert_eq!(c["message"]["content"], "{\"a\":1}");
    assert!(c["message"].get("tool_calls").is_none());
    assert_eq!(c["finish_reason"], "stop");
    // Streamed: the tool's argument fragments become content.
    let mut st = st;
    st.stream = true;
    let sse = anthropic_sse(&[
        start(1, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        json!({"type": "message_stop"}),
    ]);
    let (out, end, _) = run(&st, sse.as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let (cs, _) = chunks(&out);
    let content: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "{\"a\":1}");
    assert!(cs
        .iter()
        .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
    assert_eq!(cs.last().unwrap()["choices"][0]["finish_reason"], "stop");
    // A non-object schema travels as the `values` property and is unwrapped.
    let (a, st) = translate(
        json!({"model": "m", "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "array"}}},
        "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        a["tools"][0]["input_schema"]["properties"]["values"],
        json!({"type": "array"})
    );
    let reply = json!({"id": "m", "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"values": [1, 2]}}], "stop_reason": "tool_use"});
    let (body, _) = anthropic_response_to_openai(reply.to_string().as_bytes(), &st).unwrap();
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(o["choices"][0]["message"]["content"], "[1,2]");
    let e = refuse(
        json!({"model": "m", "response_format": {"type": "json_object"}, "tools": [{"type": "function", "function": {"name": JSON_TOOL}}],
        "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(e.param.as_deref(), Some("tools"));
    // Tool history without client tools in JSON mode: stand-in definitions, and the JSON
    // tool stays forced.
    let (a, _) = translate(
        json!({"model": "m", "response_format": {"type": "json_object"}, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "noon"},
        ]}),
    );
    let names: Vec<&str> = a["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [JSON_TOOL, "now"]);
    assert_eq!(a["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
}

#[test]
fn case_13_non_stream_response() {
    let st = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).1;
    let reply = json!({"id": "msg_9", "type": "message", "role": "assistant", "model": "claude-x-2",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "A", "name": "fa", "input": {"x": 1}},
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            {"type": "tool_use", "id": "B", "name": "fb", "input": {}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 100, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5, "output_tokens": 7}});
    let (body, usage) = anthropic_response_to_openai(reply.to_string().as_bytes(), &st).unwrap();
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(o["object"], "chat.completion");
    assert_eq!(o["id"], "msg_9");
    assert_eq!(o["created"], 1_700_000_000);
    assert_eq!(o["model"], "claude-x-2");
    let m = &o["choices"][0]["message"];
    assert_eq!(m["content"], "Hi");
    assert_eq!(m["reasoning_content"], "hmm");
    assert_eq!(m["thinking_blocks"][0]["signature"], "sig");
    assert_eq!(
        m["tool_calls"],
        json!([
            {"id": "A", "type": "function", "function": {"name": "fa", "arguments": "{\"x\":1}"}},
            {"id": "B", "type": "function", "function": {"name": "fb", "arguments": "{}"}},
        ])
    );
    assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(o["usage"]["prompt_tokens"], 125);
    assert_eq!(o["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
    assert_eq!(o["usage"]["completion_tokens"], 7);
    assert_eq!(o["usage"]["total_tokens"], 132);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 125,
            completion_tokens: 7,
            total_tokens: 132
        }
    );
    // Tool calls only: content null. Prefill: the prefix leads the text.
    let reply = json!({"id": "m", "content": [{"type": "tool_use", "id": "A", "name": "f", "input": {}}], "stop_reason": "tool_use"});
    let (body, _) = anthropic_response_to_openai(reply.to_string().as_bytes(), &st).unwrap();
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert!(o["choices"][0]["message"]["content"].is_null());
    let (_, st) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "content": "The answer is ", "prefix": true}]}),
    );
    assert_eq!(st.prefix.as_deref(), Some("The answer is"));
    let reply = json!({"id": "m", "content": [text(" 42")], "stop_reason": "end_turn"});
    let (body, _) = anthropic_response_to_openai(reply.to_string().as_bytes(), &st).unwrap();
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(o["choices"][0]["message"]["content"], "The answer is 42");
    for bad in [
        &b"nope"[..],
        b"[]",
        b"{\"type\":\"error\",\"error\":{}}",
        b"{\"id\":\"x\"}",
    ] {
        let e = anthropic_response_to_openai(bad, &st).unwrap_err();
        assert_eq!(e.status(), 502);
        assert_eq!(e.code, INVALID_UPSTREAM_RESPONSE);
    }
}

#[test]
fn case_13b_prefill_strips_trailing_whitespace() {
    let (a, st) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "content": "Sure: \n"}]}),
    );
    assert_eq!(a["messages"][1]["content"], json!([text("Sure:")]));
    assert!(st.prefix.is_none(), "no prefix without `prefix: true`");
}
