//! Spec §8 cases 14–23: the Anthropic SSE → OpenAI stream transcoder.

use serde_json::{json, Value};

use super::tests_o2a::*;
use super::*;
use crate::usage::Usage;

#[test]
fn case_14_stop_reasons() {
    for (stop, want, known) in [
        ("end_turn", "stop", true),
        ("stop_sequence", "stop", true),
        ("max_tokens", "length", true),
        ("tool_use", "tool_calls", true),
        ("refusal", "content_filter", true),
        ("pause_turn", "stop", true),
        ("model_context_window_exceeded", "length", true),
        ("banana", "stop", false),
    ] {
        assert_eq!(finish_reason_for(Some(stop)), (want, known), "{stop}");
    }
    assert_eq!(finish_reason_for(None), ("stop", false));
    // Streamed, an unknown reason is reported as `stop` and remembered.
    let mut events = text_stream();
    events[6]["delta"]["stop_reason"] = json!("banana");
    let st = streaming(false);
    let mut t = AnthropicSseToOpenAi::new(&st);
    let mut out = Vec::new();
    t.feed(anthropic_sse(&events).as_bytes(), &mut out);
    assert_eq!(t.finish(&mut out), StreamEnd::Complete);
    assert_eq!(t.unknown_stop_reason(), Some("banana"));
    let (cs, _) = chunks(&out);
    assert_eq!(cs.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn case_15_plain_text_stream() {
    let st = streaming(true);
    assert!(st.stream && st.include_usage);
    let (out, end, usage) = run(&st, anthropic_sse(&text_stream()).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let (cs, done) = chunks(&out);
    assert!(done);
    assert_eq!(
        cs[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(cs[1]["choices"][0]["delta"], json!({"content": "Hello"}));
    assert_eq!(cs[2]["choices"][0]["delta"], json!({"content": " world"}));
    assert_eq!(cs[3]["choices"][0]["delta"], json!({}));
    assert_eq!(cs[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(cs[4]["choices"], json!([]));
    assert_eq!(cs[4]["usage"]["prompt_tokens"], 60);
    assert_eq!(cs[4]["usage"]["completion_tokens"], 41);
    assert_eq!(cs.len(), 5);
    for c in &cs {
        assert_eq!(c["id"], "msg_1");
        assert_eq!(c["created"], 1_700_000_000);
        assert_eq!(c["model"], "claude-x-2");
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    for c in &cs[..4] {
        assert_eq!(c["choices"][0]["index"], 0);
    }
    assert_eq!(usage.unwrap().total_tokens, 101);
}

#[test]
fn case_16_no_usage_chunk_unless_asked() {
    let st = streaming(false);
    let (out, end, usage) = run(&st, anthropic_sse(&text_stream()).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let (cs, done) = chunks(&out);
    assert!(done);
    assert_eq!(cs.len(), 4);
    assert!(cs
        .iter()
        .all(|c| c["choices"].as_array().unwrap().len() == 1));
    assert_eq!(
        usage.unwrap().completion_tokens,
        41,
        "the gateway still learns usage"
    );
}

pub(super) fn tool_stream() -> Vec<Value> {
    vec![
        start(50, 10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 41}}),
        json!({"type": "message_stop"}),
    ]
}

pub(super) fn tool_fragments(cs: &[Value]) -> Vec<Value> {
    cs.iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .cloned()
        .collect()
}

#[test]
fn case_17_parallel_tool_streaming() {
    let (out, end, _) = run(&streaming(true), anthropic_sse(&tool_stream()).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let (cs, done) = chunks(&out);
    assert!(done);
    let frags = tool_fragments(&cs);
    assert_eq!(
        frags,
        vec![
            json!({"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": "{\"city\":"}}),
            json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}),
            json!({"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "now", "arguments": ""}}),
            json!({"index": 1, "function": {"arguments": "{}"}}),
        ]
    );
    let finish: Vec<&Value> = cs
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")]);
}

#[test]
fn case_18_no_arg_tool_stream() {
    let (out, _, _) = run(&streaming(false), anthropic_sse(&tool_stream()).as_bytes());
    let (cs, _) = chunks(&out);
    let frags = tool_fragments(&cs);
    let args_of_1: Vec<&str> = frags
        .iter()
        .filter(|f| f["index"] == 1)
        .filter_map(|f| f["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args_of_1.concat(), "{}");
    // The "{}" fragment comes before the finish chunk.
    let pos_args = cs
        .iter()
        .position(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "{}")
        .unwrap();
    let pos_fin = cs
        .iter()
        .position(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert!(pos_args < pos_fin);
}

#[test]
fn case_19_no_empty_object_prefix() {
    let events = vec![
        start(1, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop"}),
    ];
    let (out, _, _) = run(&streaming(false), anthropic_sse(&events).as_bytes());
    let (cs, _) = chunks(&out);
    let args: String = tool_fragments(&cs)
        .iter()
        .filter_map(|f| f["function"]["arguments"].as_str().map(str::to_string))
        .collect();
    assert_eq!(args, "{\"a\":1}");
}

#[test]
fn case_20_stream_usage() {
    let mut events = text_stream();
    events.insert(
        7,
        json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 45, "input_tokens": 0}}),
    );
    let (out, _, usage) = run(&streaming(true), anthropic_sse(&events).as_bytes());
    assert_eq!(
        usage,
        Some(Usage {
            prompt_tokens: 60,
            completion_tokens: 45,
            total_tokens: 105
        })
    );
    let (cs, _) = chunks(&out);
    let u = &cs.last().unwrap()["usage"];
    assert_eq!(
        (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
        (Some(60), Some(45))
    );
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 10);
    assert_eq!(
        cs.iter()
            .filter(|c| !c["choices"][0]["finish_reason"].is_null())
            .count(),
        1
    );
}

#[test]
fn case_21_noise() {
    let clean = anthropic_sse(&text_stream());
    let mut noisy = String::from("\u{feff}: hello\n\n");
    for (k, frame) in clean.split_inclusive("\n\n").enumerate() {
        noisy.push_str(&frame.replace('\n', "\r\n"));
        noisy.push_str(": keep-alive\r\n\r\nevent: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n");
        if k == 2 {
            noisy.push_str(
                "event: foo\r\ndata: {\"type\":\"foo\",\"x\":1}\r\n\r\nid: 3\r\nretry: 5\r\n\r\n",
            );
        }
    }
    let st = streaming(true);
    let (a, ea, _) = run(&st, clean.as_bytes());
    let (b, eb, _) = run(&st, noisy.as_bytes());
    assert_eq!((ea, eb), (StreamEnd::Complete, StreamEnd::Complete));
    assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
}

#[test]
fn case_22_mid_stream_error() {
    let mut events = text_stream()[..4].to_vec();
    events.push(
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    events.extend(text_stream()[5..].iter().cloned());
    let st = streaming(true);
    let mut t = AnthropicSseToOpenAi::new(&st);
    let mut out = Vec::new();
    t.feed(anthropic_sse(&events).as_bytes(), &mut out);
    let (cs, done) = chunks(&out);
    assert!(!done);
    let last = cs.last().unwrap();
    assert_eq!(last["error"]["code"], "overloaded_error");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Overloaded"));
    assert!(cs
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    let before = out.len();
    assert_eq!(t.finish(&mut out), StreamEnd::UpstreamError);
    assert_eq!(t.finish(&mut out), StreamEnd::UpstreamError);
    assert_eq!(
        out.len(),
        before,
        "the error frame was written once, at the event"
    );
}

#[test]
fn case_23_truncated_upstream() {
    let events = &text_stream()[..5];
    let mut t = AnthropicSseToOpenAi::new(&streaming(true));
    let mut out = Vec::new();
    t.feed(anthropic_sse(events).as_bytes(), &mut out);
    // Half an event, then the connection closes.
    t.feed(
        b"event: content_block_delta\ndata: {\"type\":\"content_bl",
        &mut out,
    );
    assert_eq!(t.finish(&mut out), StreamEnd::Truncated);
    let (cs, done) = chunks(&out);
    assert!(!done);
    assert_eq!(cs.last().unwrap()["error"]["code"], "upstream_truncated");
    assert!(cs
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    let n = out.len();
    assert_eq!(t.finish(&mut out), StreamEnd::Truncated);
    assert_eq!(out.len(), n);
    // Cut between message_delta and message_stop: still no finish_reason.
    let events = &text_stream()[..7];
    let (out, end, usage) = run(&streaming(true), anthropic_sse(events).as_bytes());
    assert_eq!(end, StreamEnd::Truncated);
    let (cs, done) = chunks(&out);
    assert!(!done);
    assert!(cs
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(
        usage.unwrap().completion_tokens,
        41,
        "usage so far is still known"
    );
    // Nothing at all from the upstream is a truncation too.
    let (out, end, usage) = run(&streaming(false), b"");
    assert_eq!(end, StreamEnd::Truncated);
    assert_eq!(chunks(&out).0.len(), 1);
    assert!(usage.is_none());
}

#[test]
fn stream_thinking_and_prefix() {
    let (_, mut st) = translate(
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "content": "Well,", "prefix": true}]}),
    );
    st.include_usage = false;
    let events = vec![
        start(1, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "zz"}}),
        json!({"type": "content_block_stop", "index": 1}),
        // A delta for a block that never started, and one of the wrong type: ignored.
        json!({"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "ghost"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ];
    let (out, end, _) = run(&st, anthropic_sse(&events).as_bytes());
    assert_eq!(end, StreamEnd::Complete);
    let (cs, _) = chunks(&out);
    assert_eq!(
        cs[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "Well,"})
    );
    assert_eq!(
        cs[1]["choices"][0]["delta"],
        json!({"reasoning_content": "hm"})
    );
    assert_eq!(cs[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(cs.len(), 3);
}
