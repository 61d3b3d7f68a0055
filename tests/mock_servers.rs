//! The test servers themselves: mock-llm's Anthropic Messages surface (frames and their
//! order, tool use, errors, faults), `--dialect`, its OpenAI tool-call and reasoning
//! knobs, and fake-cli's stream-json protocol. Gateway tests build on these shapes, so
//! they are pinned here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn messages_body(stream: bool) -> Value {
    json!({
        "model": "mock-model",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

fn weather_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather of a city", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ])
}

/// Posts `body` to `path` with extra headers; returns (status, headers, text).
async fn post_with(
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.unwrap())
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn anthropic_stream_frames_and_order() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    let (status, h, text) = post_with(
        &url,
        &messages_body(true),
        &[
            ("x-mock-tokens", "5"),
            ("x-mock-cache-read", "7"),
            ("x-mock-cache-creation", "3"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a,b"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(h["request-id"].to_str().unwrap().starts_with("req_"));
    let events = anthropic_events(&text);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0]["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "mock-model");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    let u = &start["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(u["cache_read_input_tokens"], 7);
    assert_eq!(u["cache_creation_input_tokens"], 3);
    assert_eq!(u["output_tokens"], 1);
    let blocks = anthropic_blocks(&events);
    assert_eq!(
        blocks,
        [("text".to_string(), "Hello! This is a mock".to_string())]
    );
    let md = &events[9];
    assert_eq!(md["delta"]["stop_reason"], "end_turn");
    assert_eq!(md["delta"]["stop_sequence"], Value::Null);
    assert_eq!(
        md["usage"],
        json!({"output_tokens": 5}),
        "cumulative output only"
    );

    // The full form repeats the input side in message_delta.
    let (_, _, text) = post_with(
        &url,
        &messages_body(true),
        &[("x-mock-tokens", "2"), ("x-mock-delta-usage", "full")],
    )
    .await;
    let events = anthropic_events(&text);
    let md = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(md["usage"]["output_tokens"], 2);
    assert!(md["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // Pings come now and then in long streams.
    let (_, _, text) = post_with(&url, &messages_body(true), &[("x-mock-tokens", "60")]).await;
    let events = anthropic_events(&text);
    assert!(events.iter().filter(|e| e["type"] == "ping").count() >= 3);
    assert_eq!(anthropic_blocks(&events).len(), 1);

    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["last_uri"], "/v1/messages");
    let (_, _, _) = post_with(
        &url,
        &messages_body(false),
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a,b"),
        ],
    )
    .await;
    let stats = mock.stats().await;
    assert_eq!(stats["last_headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(stats["last_headers"]["anthropic-beta"], "a,b");
}

#[tokio::test]
async fn anthropic_non_stream_message() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    let (status, h, text) = post_with(
        &url,
        &messages_body(false),
        &[("x-mock-tokens", "3"), ("x-mock-cache-read", "20")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/json");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "mock-model");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello! This is"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    let u = &v["usage"];
    for k in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        assert!(u[k].is_u64(), "usage lacks {k}: {text}");
    }
    assert_eq!(u["output_tokens"], 3);
    assert_eq!(u["cache_read_input_tokens"], 20);

    // More tokens than max_tokens: cut there, stop_reason max_tokens.
    let mut body = messages_body(false);
    body["max_tokens"] = json!(2);
    let (_, _, text) = post_with(&url, &body, &[("x-mock-tokens", "10")]).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"][0]["text"], "Hello! This");
    assert_eq!(v["usage"]["output_tokens"], 2);

    let (status, _, text) = post_with(
        &format!("{}/v1/messages/count_tokens", mock.url()),
        &json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "count_tokens needs no max_tokens: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_eq!(mock.requests().await, 3);
}

#[tokio::test]
async fn anthropic_tool_use_and_thinking() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    let mut body = messages_body(true);
    body["tools"] = weather_tools();
    let (status, _, text) = post_with(
        &url,
        &body,
        &[
            ("x-mock-tokens", "2"),
            ("x-mock-tool-calls", "3"),
            ("x-mock-thinking", "4"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let events = anthropic_events(&text);
    let blocks = anthropic_blocks(&events);
    let kinds: Vec<&str> = blocks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["thinking", "text", "tool_use", "tool_use", "tool_use"]
    );
    assert_eq!(blocks[0].1, "Let me think this");
    assert_eq!(blocks[1].1, "Hello! This");

    // The thinking block ends with its signature.
    let thinking: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta" && e["index"] == 0)
        .collect();
    assert_eq!(thinking.len(), 5);
    assert_eq!(thinking[4]["delta"]["type"], "signature_delta");
    assert!(!thinking[4]["delta"]["signature"]
        .as_str()
        .unwrap()
        .is_empty());

    // Tool calls take the offered tools in turn; their fragments, cut mid-JSON, join to
    // the input; a tool without properties streams no delta at all.
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use")
        .collect();
    let names: Vec<&str> = starts
        .iter()
        .map(|e| e["content_block"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "now", "get_weather"]);
    for s in &starts {
        assert!(s["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        assert_eq!(s["content_block"]["input"], json!({}));
    }
    let input: Value = serde_json::from_str(&blocks[2].1).unwrap();
    assert_eq!(input, json!({"city": "mock-0", "days": 1}));
    assert_eq!(blocks[3].1, "", "no-argument tool");
    let input: Value = serde_json::from_str(&blocks[4].1).unwrap();
    assert_eq!(input["city"], "mock-2");
    let fragments: Vec<&str> = events
        .iter()
        .filter(|e| e["index"] == 2 && e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        fragments[0], "",
        "the first fragment is empty, as the API's is"
    );
    assert!(fragments.len() > 3);
    assert!(fragments[1..]
        .iter()
        .all(|f| serde_json::from_str::<Value>(f).is_err()));
    let md = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(md["delta"]["stop_reason"], "tool_use");

    // Non-streamed: the same blocks with parsed inputs.
    body["stream"] = json!(false);
    let (_, _, text) = post_with(
        &url,
        &body,
        &[("x-mock-tool-calls", "2"), ("x-mock-thinking", "1")],
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let content = v["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "thinking");
    assert!(content[0]["signature"].is_string());
    assert_eq!(content[1]["type"], "text");
    assert_eq!(content[2]["type"], "tool_use");
    assert_eq!(content[2]["input"], json!({"city": "mock-0", "days": 1}));
    assert_eq!(content[3]["name"], "now");
    assert_eq!(content[3]["input"], json!({}));
    assert_eq!(v["stop_reason"], "tool_use");

    // Without tools in the request the header asks for nothing.
    let (_, _, text) = post_with(&url, &messages_body(false), &[("x-mock-tool-calls", "2")]).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_stop_reason_override() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    for reason in [
        "refusal",
        "pause_turn",
        "model_context_window_exceeded",
        "banana",
    ] {
        let (_, _, text) = post_with(
            &url,
            &messages_body(false),
            &[("x-mock-stop-reason", reason)],
        )
        .await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["stop_reason"], reason);
        let (_, _, text) = post_with(
            &url,
            &messages_body(true),
            &[("x-mock-stop-reason", reason)],
        )
        .await;
        let events = anthropic_events(&text);
        let md = events
            .iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap();
        assert_eq!(md["delta"]["stop_reason"], reason);
    }
}

#[tokio::test]
async fn anthropic_errors_and_statuses() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    // The `error.type` of an Anthropic error body (panics when it is not one).
    let error_type = |text: &str| -> String {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(v["type"], "error", "{text}");
        assert!(v["error"]["message"].is_string(), "{text}");
        assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
        v["error"]["type"].as_str().unwrap().to_string()
    };
    for (status, etype) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        let s = status.to_string();
        for stream in [false, true] {
            let (got, h, text) =
                post_with(&url, &messages_body(stream), &[("x-mock-status", &s)]).await;
            assert_eq!(got, status);
            assert_eq!(error_type(&text), etype);
            assert!(h.contains_key("request-id"));
            assert!(!h.contains_key("retry-after"));
        }
    }
    let (status, h, text) = post_with(
        &url,
        &messages_body(true),
        &[("x-mock-status", "529"), ("x-mock-retry-after", "7")],
    )
    .await;
    assert_eq!(status, 529);
    assert_eq!(h["retry-after"], "7");
    assert_eq!(error_type(&text), "overloaded_error");

    // What the real API checks.
    for (body, want) in [
        (json!({"model": "mock-model", "messages": []}), "max_tokens"),
        (json!({"model": "mock-model", "max_tokens": 5}), "messages"),
        (
            json!({"model": "mock-model", "max_tokens": "5", "messages": []}),
            "max_tokens",
        ),
    ] {
        let (status, _, text) = post_with(&url, &body, &[]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_type(&text), "invalid_request_error");
        assert!(text.contains(want), "{text}");
    }
    let (status, text) = post_raw(&url, b"{oops".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(error_type(&text), "invalid_request_error");
    let mut unknown = messages_body(false);
    unknown["model"] = json!("claude-nope");
    let (status, _, text) = post_with(&url, &unknown, &[]).await;
    assert_eq!(status, 404);
    assert_eq!(error_type(&text), "not_found_error");
    assert!(text.contains("claude-nope"));

    // A whole server failing, with --retry-after.
    let failing = Mock::start(&["--fail-status", "529", "--retry-after", "3"]);
    let (status, h, text) = post_with(
        &format!("{}/v1/messages", failing.url()),
        &messages_body(false),
        &[],
    )
    .await;
    assert_eq!(status, 529);
    assert_eq!(h["retry-after"], "3");
    assert_eq!(error_type(&text), "overloaded_error");
}

#[tokio::test]
async fn anthropic_api_key_required() {
    let mock = Mock::start(&["--require-api-key", "sk-ant-test"]);
    let url = format!("{}/v1/messages", mock.url());
    for headers in [
        vec![],
        vec![("x-api-key", "wrong")],
        vec![("authorization", "Bearer sk-ant-test")],
    ] {
        let (status, _, text) = post_with(&url, &messages_body(false), &headers).await;
        assert_eq!(status, 401, "{headers:?}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
    }
    let (status, _, _) =
        post_with(&url, &messages_body(false), &[("x-api-key", "sk-ant-test")]).await;
    assert_eq!(status, 200);
    // The OpenAI routes want the key as a bearer token.
    let chat_url = format!("{}/v1/chat/completions", mock.url());
    let (status, _, text) = post_with(&chat_url, &chat("mock-model", false), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&text)["code"], "invalid_api_key");
    let (status, _, _) = post_with(
        &chat_url,
        &chat("mock-model", false),
        &[("authorization", "Bearer sk-ant-test")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.requests().await, 6, "rejected requests count too");
}

#[tokio::test]
async fn anthropic_mid_stream_faults() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());

    // An error event after N deltas of a 200 stream, then the end: no message_stop.
    let (status, _, text) = post_with(
        &url,
        &messages_body(true),
        &[("x-mock-tokens", "8"), ("x-mock-error-after", "3")],
    )
    .await;
    assert_eq!(status, 200);
    let events = anthropic_events(&text);
    let deltas = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .count();
    assert_eq!(deltas, 3);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["type"], "overloaded_error");
    assert!(!events.iter().any(|e| e["type"] == "message_stop"));
    assert!(!events.iter().any(|e| e["type"] == "message_delta"));

    // Zero deltas: the error follows the start of the first block.
    let (_, _, text) = post_with(&url, &messages_body(true), &[("x-mock-error-after", "0")]).await;
    assert_eq!(
        types(&anthropic_events(&text)),
        ["message_start", "content_block_start", "ping", "error"]
    );

    // A dropped connection after N frames: the body fails after those frames.
    let r = reqwest::Client::new()
        .post(&url)
        .header("x-mock-drop-after", "4")
        .json(&messages_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let mut stream = r.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body ended cleanly");
    assert_eq!(anthropic_events(&String::from_utf8(got).unwrap()).len(), 4);

    // Non-streamed: half the body, then the drop.
    let r = reqwest::Client::new()
        .post(&url)
        .header("x-mock-drop-after", "1")
        .json(&messages_body(false))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.is_err());
}

#[tokio::test]
async fn anthropic_timing_headers() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/messages", mock.url());
    let t0 = Instant::now();
    let (status, _, text) = post_with(
        &url,
        &messages_body(true),
        &[
            ("x-mock-tokens", "4"),
            ("x-mock-ttft-ms", "150"),
            ("x-mock-itl-ms", "50"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300), "ttft + 3 itl");
    assert_eq!(
        anthropic_blocks(&anthropic_events(&text))[0].1,
        "Hello! This is a"
    );
    let t0 = Instant::now();
    let (status, _, _) =
        post_with(&url, &messages_body(false), &[("x-mock-delay-ms", "200")]).await;
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn dialects_answer_404_for_the_other_api() {
    let anthropic = Mock::start(&["--dialect", "anthropic", "--model", "claude-mock"]);
    let (status, _, text) = post(
        &format!("{}/v1/chat/completions", anthropic.url()),
        &chat("claude-mock", false),
    )
    .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    let mut body = messages_body(false);
    body["model"] = json!("claude-mock");
    let (status, _, _) = post(&format!("{}/v1/messages", anthropic.url()), &body).await;
    assert_eq!(status, 200);
    let list: Value = reqwest::get(format!("{}/v1/models", anthropic.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["has_more"], false);
    assert_eq!(
        list["data"][0]["type"], "model",
        "Anthropic's list shape: {list}"
    );
    assert_eq!(list["data"][0]["id"], "claude-mock");
    assert!(list["data"][0]["display_name"].is_string());
    assert!(list.get("object").is_none());
    assert_eq!(
        anthropic.requests().await,
        2,
        "the refused request is counted"
    );

    let openai = Mock::start(&["--dialect", "openai"]);
    let (status, _, text) = post(
        &format!("{}/v1/messages", openai.url()),
        &messages_body(false),
    )
    .await;
    assert_eq!(status, 404);
    error_of(&text);
    let (status, _, text) = post(
        &format!("{}/v1/messages/count_tokens", openai.url()),
        &messages_body(false),
    )
    .await;
    assert_eq!(status, 404);
    error_of(&text);
    let (status, _, _) = post(
        &format!("{}/v1/chat/completions", openai.url()),
        &chat("mock-model", false),
    )
    .await;
    assert_eq!(status, 200);
    let list: Value = reqwest::get(format!("{}/v1/models", openai.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");

    let both = Mock::start(&[]);
    let (s1, _, _) = post(
        &format!("{}/v1/messages", both.url()),
        &messages_body(false),
    )
    .await;
    let (s2, _, _) = post(
        &format!("{}/v1/chat/completions", both.url()),
        &chat("mock-model", false),
    )
    .await;
    assert_eq!((s1, s2), (200, 200));
    let list: Value = reqwest::get(format!("{}/v1/models", both.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["object"], "list",
        "OpenAI's list shape unless anthropic-only"
    );
}

fn chat_with_tools(stream: bool) -> Value {
    let mut body = chat("mock-model", stream);
    body["tools"] = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query", "limit"]}}},
    ]);
    body
}

/// The tool calls of OpenAI chunks: per index, (ids seen, names seen, arguments joined).
fn tool_calls_of(chunks: &[Value]) -> Vec<(Vec<String>, Vec<String>, String)> {
    let mut calls: Vec<(Vec<String>, Vec<String>, String)> = Vec::new();
    for c in chunks {
        let Some(tcs) = c["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        assert_eq!(tcs.len(), 1);
        let tc = &tcs[0];
        let i = tc["index"].as_u64().unwrap() as usize;
        if i == calls.len() {
            calls.push(Default::default());
        }
        assert!(i < calls.len(), "tool index {i} skipped one");
        if let Some(id) = tc["id"].as_str() {
            calls[i].0.push(id.to_string());
            assert_eq!(tc["type"], "function");
        }
        if let Some(name) = tc["function"]["name"].as_str() {
            calls[i].1.push(name.to_string());
        }
        calls[i]
            .2
            .push_str(tc["function"]["arguments"].as_str().unwrap());
    }
    calls
}

#[tokio::test]
async fn openai_tool_calls_and_reasoning() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/chat/completions", mock.url());
    let (status, _, text) = post_with(
        &url,
        &chat_with_tools(true),
        &[
            ("x-mock-tokens", "2"),
            ("x-mock-tool-calls", "2"),
            ("x-mock-reasoning", "3"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    let ids: Vec<&Value> = chunks.iter().map(|c| &c["id"]).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one id for all chunks");
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(deltas[0]["role"], "assistant");
    let reasoning: String = deltas[1..4]
        .iter()
        .map(|d| d["reasoning_content"].as_str().unwrap())
        .collect();
    assert_eq!(reasoning, "Let me think");
    assert_eq!(deltas[4]["content"], "Hello! ");
    assert_eq!(deltas[5]["content"], "This");
    let calls = tool_calls_of(&chunks);
    assert_eq!(calls.len(), 2);
    for (i, (ids, names, args)) in calls.iter().enumerate() {
        assert_eq!(ids.len(), 1, "id only in the first fragment");
        assert_eq!(names.len(), 1, "name only in the first fragment");
        assert!(ids[0].starts_with("call_"));
        let v: Value = serde_json::from_str(args).unwrap();
        assert!(v.is_object(), "call {i}: {args}");
    }
    assert_eq!(calls[0].1[0], "get_weather");
    assert_eq!(calls[1].1[0], "lookup");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2).unwrap(),
        json!({"query": "mock-1", "limit": 2})
    );
    let finish = chunks
        .iter()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");

    // Interleaved: both calls start, then their fragments alternate.
    let (_, _, text) = post_with(
        &url,
        &chat_with_tools(true),
        &[
            ("x-mock-tokens", "0"),
            ("x-mock-tool-calls", "2"),
            ("x-mock-interleave", "1"),
        ],
    )
    .await;
    let (chunks, _) = openai_chunks(&text);
    let order: Vec<u64> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64())
        .collect();
    assert_eq!(&order[..4], &[0, 1, 0, 1], "{order:?}");
    let calls = tool_calls_of(&chunks);
    for (_, _, args) in &calls {
        serde_json::from_str::<Value>(args).unwrap();
    }
    assert!(!chunks.iter().any(|c| c["choices"][0]["delta"]["content"]
        .as_str()
        .is_some_and(|s| !s.is_empty())));

    // Non-streamed.
    let (_, _, text) = post_with(
        &url,
        &chat_with_tools(false),
        &[
            ("x-mock-tokens", "0"),
            ("x-mock-tool-calls", "3"),
            ("x-mock-reasoning", "2"),
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], Value::Null, "no text beside the tool calls");
    assert_eq!(m["reasoning_content"], "Let me");
    let tcs = m["tool_calls"].as_array().unwrap();
    assert_eq!(tcs.len(), 3);
    assert_eq!(tcs[2]["function"]["name"], "get_weather");
    serde_json::from_str::<Value>(tcs[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn openai_answers_unchanged_without_the_new_headers() {
    let mock = Mock::start(&[]);
    let url = format!("{}/v1/chat/completions", mock.url());
    // Tools in the request alone do not change the answer.
    let mut body = chat_with_tools(true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, _, text) = post_with(&url, &body, &[("x-mock-tokens", "3")]).await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    assert_eq!(chunks.len(), 1 + 3 + 1 + 1);
    assert!(!text.contains("tool_calls") && !text.contains("reasoning_content"));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    // Reasoning and tool headers are for chat only.
    let (status, _, text) = post_with(
        &format!("{}/v1/completions", mock.url()),
        &json!({"model": "mock-model", "prompt": "hi", "tools": body["tools"]}),
        &[("x-mock-tool-calls", "2"), ("x-mock-reasoning", "2")],
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

// fake-cli

#[tokio::test]
async fn fake_cli_two_turns_with_partial_messages() {
    let mut cli = FakeCli::start(
        &[
            "--include-partial-messages",
            "--model",
            "claude-test",
            "--system-prompt",
            "",
            "--tools",
            "",
            "--max-turns",
            "1",
            "--strict-mcp-config",
        ],
        &[],
    );
    let init = cli.json(T);
    assert_eq!(init["type"], "system");
    assert_eq!(init["subtype"], "init");
    assert_eq!(init["model"], "claude-test");
    let session = init["session_id"].as_str().unwrap().to_string();
    assert!(!session.is_empty());

    cli.send_user("hello there world");
    let turn = cli.until_result(T);
    let kinds: Vec<String> = turn
        .iter()
        .map(|v| {
            let t = v["type"].as_str().unwrap();
            match v["event"]["type"].as_str() {
                Some(e) => format!("{t}:{e}"),
                None => t.to_string(),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "stream_event:message_start",
            "stream_event:content_block_start",
            "stream_event:ping",
            "stream_event:content_block_delta",
            "stream_event:content_block_delta",
            "stream_event:content_block_delta",
            "stream_event:content_block_stop",
            "assistant",
            "stream_event:message_delta",
            "stream_event:message_stop",
            "result",
        ]
    );
    assert!(turn.iter().all(|v| v["session_id"] == session.as_str()));
    let events: Vec<Value> = turn
        .iter()
        .filter(|v| v["type"] == "stream_event")
        .map(|v| v["event"].clone())
        .collect();
    assert_eq!(anthropic_blocks(&events)[0].1, "hello there world");
    let assistant = &turn[7]["message"];
    assert_eq!(assistant["type"], "message");
    assert_eq!(assistant["model"], "claude-test");
    assert_eq!(
        assistant["content"],
        json!([{"type": "text", "text": "hello there world"}])
    );
    let result = turn.last().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "hello there world");
    assert_eq!(result["stop_reason"], "end_turn");
    assert_eq!(result["num_turns"], 1);
    assert_eq!(result["usage"]["output_tokens"], 3);
    assert!(result["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(result["duration_ms"].is_u64());
    assert!(result["total_cost_usd"].as_f64().unwrap() > 0.0);

    // Content blocks work as well as a string; the process keeps its session.
    cli.send(&json!({"type": "user", "message": {"role": "user",
        "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "turn"}]}}));
    let turn = cli.until_result(T);
    let result = turn.last().unwrap();
    assert_eq!(result["result"], "second\nturn");
    assert_eq!(result["num_turns"], 2);
    assert_eq!(result["session_id"], session.as_str());

    cli.close_stdin();
    let status = cli.wait_exit(T).await.expect("exit after stdin's end");
    assert_eq!(status.code(), Some(0));
    assert_eq!(cli.line(Duration::from_millis(200)), None);
}

#[tokio::test]
async fn fake_cli_without_partial_messages_and_session_flags() {
    let mut cli = FakeCli::start(&["--session-id=sess-123", "-p"], &[]);
    assert_eq!(cli.json(T)["session_id"], "sess-123");
    cli.send_user("hi");
    let turn = cli.until_result(T);
    let kinds: Vec<&str> = turn.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["assistant", "result"]);
    assert_eq!(turn[0]["message"]["content"][0]["text"], "hi");
    cli.close_stdin();
    assert_eq!(cli.wait_exit(T).await.unwrap().code(), Some(0));

    // The real CLI's flag checks.
    let mut bad = FakeCli::start_raw(
        &[
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
        ],
        &[],
    );
    assert_eq!(bad.wait_exit(T).await.unwrap().code(), Some(1));
    let stderr = bad.stderr.clone();
    wait_for("the --verbose complaint", T, || {
        let said = stderr.lock().unwrap().join("\n");
        async move { said.contains("--verbose").then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn fake_cli_control_requests_and_interrupt() {
    let mut cli = FakeCli::start(
        &["--include-partial-messages", "--token-delay-ms", "40"],
        &[],
    );
    cli.json(T);
    cli.send_control("init-1", "initialize");
    let r = cli.json(T);
    assert_eq!(r["type"], "control_response");
    assert_eq!(r["response"]["subtype"], "success");
    assert_eq!(r["response"]["request_id"], "init-1");
    cli.send_control("odd-1", "no_such_request");
    let r = cli.json(T);
    assert_eq!(r["response"]["subtype"], "error");
    assert_eq!(r["response"]["request_id"], "odd-1");

    // An interrupt mid-turn: control_response, then an error result; nothing more.
    cli.send_user("one two three four five six seven eight nine ten eleven twelve");
    loop {
        let v = cli.json(T);
        if v["event"]["type"] == "content_block_delta" {
            break;
        }
    }
    cli.send_control("stop-1", "interrupt");
    let mut rest = cli.until_result(T);
    let result = rest.pop().unwrap();
    let response = rest
        .iter()
        .find(|v| v["type"] == "control_response")
        .expect("a control_response to the interrupt");
    assert_eq!(response["response"]["request_id"], "stop-1");
    assert_eq!(response["response"]["subtype"], "success");
    assert!(!rest.iter().any(|v| v["type"] == "assistant"));
    assert_eq!(result["subtype"], "error_during_execution");
    assert_eq!(result["is_error"], true);
    assert!(
        result["usage"]["output_tokens"].as_u64().unwrap() < 12,
        "the turn stopped early"
    );

    // The process is still up and answers the next turn.
    cli.send_user("after");
    let result = cli.until_result(T).pop().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["result"], "after");

    // With interrupts ignored, the turn runs to its end without a response.
    let mut deaf = FakeCli::start(
        &["--token-delay-ms", "20"],
        &[("FAKE_CLI_IGNORE_INTERRUPT", "1")],
    );
    deaf.json(T);
    deaf.send_user("a b c d e f");
    deaf.send_control("stop-2", "interrupt");
    let turn = deaf.until_result(T);
    assert!(!turn.iter().any(|v| v["type"] == "control_response"));
    assert_eq!(turn.last().unwrap()["subtype"], "success");
    assert_eq!(turn.last().unwrap()["result"], "a b c d e f");
    deaf.close_stdin();
    cli.close_stdin();
    assert_eq!(cli.wait_exit(T).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn fake_cli_crash_after_turns() {
    let mut cli = FakeCli::start(&[], &[("FAKE_CLI_CRASH_AFTER", "1")]);
    cli.json(T);
    cli.send_user("first");
    assert_eq!(cli.until_result(T).pop().unwrap()["subtype"], "success");
    cli.send_user("second");
    let status = cli.wait_exit(T).await.expect("the crash");
    assert_eq!(status.code(), Some(1));
    assert_eq!(cli.line(Duration::from_millis(200)), None, "no result");

    // With --crash-tokens the crashing turn writes some deltas first.
    let mut cli = FakeCli::start(
        &[
            "--include-partial-messages",
            "--crash-after",
            "0",
            "--crash-tokens",
            "2",
        ],
        &[],
    );
    cli.json(T);
    cli.send_user("w1 w2 w3 w4");
    assert_eq!(cli.wait_exit(T).await.unwrap().code(), Some(1));
    let mut lines = Vec::new();
    while let Some(l) = cli.line(Duration::from_millis(200)) {
        lines.push(serde_json::from_str::<Value>(&l).unwrap());
    }
    let deltas = lines
        .iter()
        .filter(|v| v["event"]["type"] == "content_block_delta")
        .count();
    assert_eq!(deltas, 2);
    assert!(!lines.iter().any(|v| v["type"] == "result"));
}

#[tokio::test]
async fn fake_cli_garbage_line_and_hang() {
    let mut cli = FakeCli::start(&["--garbage-turn", "2"], &[]);
    cli.json(T);
    cli.send_user("fine");
    assert_eq!(cli.until_result(T).pop().unwrap()["result"], "fine");
    cli.send_user("noisy");
    let garbage = cli.line(T).unwrap();
    assert_eq!(garbage, "{not json");
    assert!(serde_json::from_str::<Value>(&garbage).is_err());
    assert_eq!(cli.until_result(T).pop().unwrap()["result"], "noisy");
    cli.close_stdin();
    assert_eq!(cli.wait_exit(T).await.unwrap().code(), Some(0));

    let mut cli = FakeCli::start(
        &[],
        &[
            ("FAKE_CLI_GARBAGE_TURN", "1"),
            ("FAKE_CLI_GARBAGE_TEXT", "[SandboxDebug] noise"),
        ],
    );
    cli.json(T);
    cli.send_user("x");
    assert_eq!(cli.line(T).unwrap(), "[SandboxDebug] noise");
    cli.until_result(T);

    // Hang after the first result: no answer, and stdin's end does not end it.
    let mut cli = FakeCli::start(&[], &[("FAKE_CLI_HANG_AFTER", "1")]);
    cli.json(T);
    cli.send_user("one");
    assert_eq!(cli.until_result(T).pop().unwrap()["subtype"], "success");
    cli.send_user("two");
    cli.send_control("c", "initialize");
    assert_eq!(cli.line(Duration::from_millis(400)), None);
    cli.close_stdin();
    assert!(cli.wait_exit(Duration::from_millis(400)).await.is_none());
}

#[tokio::test]
async fn fake_cli_startup_delay_and_lazy_init() {
    let t0 = Instant::now();
    let mut cli = FakeCli::start(&["--startup-delay-ms", "300"], &[]);
    // Input sent before it is ready is answered afterwards.
    cli.send_user("early");
    let init = cli.json(T);
    assert_eq!(init["subtype"], "init");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(cli.until_result(T).pop().unwrap()["result"], "early");
    cli.close_stdin();
    assert_eq!(cli.wait_exit(T).await.unwrap().code(), Some(0));

    let mut cli = FakeCli::start(&[], &[("FAKE_CLI_LAZY_INIT", "1")]);
    assert_eq!(
        cli.line(Duration::from_millis(300)),
        None,
        "no init before input"
    );
    cli.send_user("now");
    assert_eq!(cli.json(T)["subtype"], "init");
    assert_eq!(cli.until_result(T).pop().unwrap()["result"], "now");
}
