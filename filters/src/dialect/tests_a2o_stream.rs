//! Spec §8 cases 24–30: the OpenAI SSE → Anthropic stream transcoder.

use serde_json::{json, Value};

use super::tests_a2o::*;
use super::*;

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
