//! Both dialects through the real gateway: OpenAI clients in front of an Anthropic
//! upstream, Anthropic clients in front of OpenAI-only backends (and the built-in mock),
//! native Messages passthrough, count_tokens, errors in the client's shape, the cache
//! and fallback across dialects, and the CLI process pool. Upstreams are mock-llm in
//! its Anthropic or OpenAI mode and fake-cli.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn server() -> &'static str {
    "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"
}

fn anthropic_provider(mock: &Mock, models: &[&str]) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "\n[[providers]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"sk-ant-provider\"\nmodels = [{}]\n",
        mock.url(),
        models.join(", ")
    )
}

fn local(mock: &Mock, kind: &str, extra: &str) -> String {
    format!(
        "\n[local]\nkind = \"{kind}\"\nurl = \"{}\"\n{extra}\n",
        mock.url()
    )
}

async fn post_h(
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.text().await.unwrap())
}

fn msgs(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hello"}]})
}

fn anthropic_error(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(v["type"], "error", "{text}");
    assert!(
        v["error"]["type"].is_string() && v["error"]["message"].is_string(),
        "{text}"
    );
    v["error"].clone()
}

fn tools_openai() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ])
}

// --- OpenAI client, Anthropic upstream --------------------------------------------------

#[tokio::test]
async fn openai_clients_get_openai_answers_from_an_anthropic_upstream() {
    let up = Mock::start(&[
        "--dialect",
        "anthropic",
        "--model",
        "claude-x",
        "--require-api-key",
        "sk-ant-provider",
    ]);
    let gw = Gateway::start(&format!(
        "{}{}",
        server(),
        anthropic_provider(&up, &["claude-x"])
    ))
    .await;
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "claude-x", "max_tokens": 32, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
    let (s, h, text) = post_h(
        &url,
        &body,
        &[("x-mock-cache-read", "20"), ("x-mock-cache-creation", "5")],
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(h["x-switchyard-provider"], "claude");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len()
            > 5
    );
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 20);
    assert_eq!(
        u["prompt_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap() - u["completion_tokens"].as_u64().unwrap()
    );
    // The upstream got a Messages request with the provider's key and the version.
    let st = up.stats().await;
    assert_eq!(st["last_uri"], "/v1/messages");
    assert_eq!(st["last_headers"]["x-api-key"], "sk-ant-provider");
    assert_eq!(st["last_headers"]["anthropic-version"], "2023-06-01");

    // Streamed, with parallel tool calls: indices 0 and 1, id and name only first.
    let body = json!({"model": "claude-x", "stream": true, "tools": tools_openai(),
        "messages": [{"role": "user", "content": "weather?"}]});
    let (s, _, text) = post_h(&url, &body, &[("x-mock-tool-calls", "2")]).await;
    assert_eq!(s, 200);
    let (chunks, done) = openai_chunks(&text);
    assert!(done, "a finished stream ends with [DONE]");
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage chunk unless asked"
    );
    let mut firsts = Vec::new();
    let mut args = vec![String::new(), String::new()];
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if tc.get("id").is_some() {
                firsts.push((i, tc["function"]["name"].as_str().unwrap().to_string()));
            }
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(
        firsts,
        [(0, "get_weather".to_string()), (1, "now".to_string())]
    );
    for a in &args {
        serde_json::from_str::<Value>(a).unwrap_or_else(|_| panic!("arguments {a:?} are not JSON"));
    }
    let finish = chunks
        .iter()
        .rev()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    // The usage chunk when asked for.
    let body = json!({"model": "claude-x", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let (_, _, text) = post_h(&url, &body, &[]).await;
    let (chunks, _) = openai_chunks(&text);
    let last = chunks.last().unwrap();
    assert!(
        last["choices"].as_array().unwrap().is_empty()
            && last["usage"]["completion_tokens"].as_u64().unwrap() > 0
    );
}

#[tokio::test]
async fn anthropic_upstream_errors_reach_openai_clients_as_openai_errors() {
    let up = Mock::start(&["--dialect", "anthropic", "--model", "claude-x"]);
    let gw = Gateway::start(&format!(
        "{}{}",
        server(),
        anthropic_provider(&up, &["claude-x"])
    ))
    .await;
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    let (s, h, text) = post_h(
        &url,
        &body,
        &[("x-mock-status", "529"), ("x-mock-retry-after", "7")],
    )
    .await;
    assert_eq!(s, 503, "overloaded is 503 for OpenAI clients: {text}");
    assert_eq!(h["retry-after"], "7");
    assert_eq!(error_of(&text)["code"], "overloaded");
    let (s, _, text) = post_h(&url, &body, &[("x-mock-status", "429")]).await;
    assert_eq!(s, 429);
    assert_eq!(error_of(&text)["type"], "rate_limit_error");
    // A stream the upstream ends with an error event: an error chunk, no [DONE].
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (s, _, text) = post_h(&url, &body, &[("x-mock-error-after", "2")]).await;
    assert_eq!(s, 200);
    let (chunks, done) = openai_chunks(&text);
    assert!(!done, "a failed stream must not end with [DONE]");
    let last = chunks.last().unwrap();
    assert_eq!(last["error"]["code"], "overloaded_error", "{last}");
    assert!(chunks
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    // A request Anthropic cannot take: a clear 400, nothing sent.
    let before = up.requests().await;
    let bad = json!({"model": "claude-x", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, text) = post_h(&url, &bad, &[]).await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(error_of(&text)["param"], "n");
    assert_eq!(up.requests().await, before);
}

// --- Anthropic client ---------------------------------------------------------------------

#[tokio::test]
async fn anthropic_clients_get_anthropic_answers_from_an_openai_backend() {
    let up = Mock::start(&["--dialect", "openai", "--model", "m"]);
    let gw = Gateway::start(&format!("{}{}", server(), local(&up, "sglang", ""))).await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/messages");
    let (s, _, text) = post_h(&url, &msgs("m", false), &[]).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(up.stats().await["last_uri"], "/v1/chat/completions");

    // Streamed with reasoning and tools: the block invariants hold.
    let body = json!({"model": "m", "max_tokens": 64, "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                  {"name": "now", "input_schema": {"type": "object", "properties": {}}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let (s, _, text) = post_h(
        &url,
        &body,
        &[
            ("x-mock-tool-calls", "2"),
            ("x-mock-reasoning", "3"),
            ("x-mock-interleave", "1"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let events = anthropic_events(&text);
    let blocks = anthropic_blocks(&events);
    let kinds: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"thinking"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "tool_use").count(),
        2,
        "{kinds:?}"
    );
    for (k, input) in &blocks {
        if k == "tool_use" {
            serde_json::from_str::<Value>(input).unwrap_or_else(|_| panic!("tool input {input:?}"));
        }
    }
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // Bad input: a 400 in Anthropic's shape, nothing forwarded.
    let before = up.requests().await;
    for bad in [
        b"{\"model\": ".to_vec(),
        serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).unwrap(),
        serde_json::to_vec(&json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": [1]}]}]})).unwrap(),
    ] {
        let r = reqwest::Client::new().post(&url).header("content-type", "application/json").body(bad.clone()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(&bad));
        assert_eq!(anthropic_error(&r.text().await.unwrap())["type"], "invalid_request_error");
    }
    assert_eq!(
        up.requests().await,
        before,
        "a refused request was forwarded"
    );
    // Gateway errors on this surface are Anthropic-shaped too.
    let (s, _, text) = post_h(&url, &msgs("nope", false), &[]).await;
    assert_eq!(s, 404);
    assert_eq!(anthropic_error(&text)["type"], "not_found_error");
    // An OpenAI backend's 503 is an overload to an Anthropic client.
    let (s, _, text) = post_h(&url, &msgs("m", false), &[("x-mock-status", "503")]).await;
    assert_eq!(s, 529, "{text}");
    assert_eq!(anthropic_error(&text)["type"], "overloaded_error");

    // count_tokens where the backend has none: an estimate, marked so.
    let (s, h, text) = post_h(&gw.url("/v1/messages/count_tokens"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "hello there, how are you"}]}), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-switchyard-estimated"], "true");
    assert!(
        serde_json::from_str::<Value>(&text).unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn the_builtin_mock_answers_on_the_messages_surface() {
    let cfg = format!(
        "{}\n[[providers]]\nname = \"builtin\"\nkind = \"mock\"\nmodels = [\"mock\"]\nmock_itl_ms = 1\n",
        server()
    );
    let gw = Gateway::start(&cfg).await;
    let url = gw.url("/v1/messages");
    let (s, _, text) = post_h(&url, &msgs("mock", false), &[]).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["content"][0]["text"].as_str().unwrap().contains("hello"));
    let (s, _, text) = post_h(&url, &msgs("mock", true), &[]).await;
    assert_eq!(s, 200);
    let blocks = anthropic_blocks(&anthropic_events(&text));
    assert!(blocks[0].1.contains("You said: hello"), "{blocks:?}");
}

#[tokio::test]
async fn native_backends_get_messages_passed_through() {
    let anth = Mock::start(&[
        "--dialect",
        "anthropic",
        "--model",
        "claude-x",
        "--require-api-key",
        "sk-ant-provider",
    ]);
    let vllm = Mock::start(&["--model", "local-m"]);
    let cfg = format!(
        "{}{}{}\n[auth]\nenabled = true\n[[auth.keys]]\nkey = \"sk-client-key-1\"\ntenant = \"t\"\n",
        server(),
        local(&vllm, "vllm", ""),
        anthropic_provider(&anth, &["claude-x"])
    );
    let gw = Gateway::start(&cfg).await;
    let url = gw.url("/v1/messages");
    // Claude Code's way: Authorization: Bearer, plus beta and version headers.
    let body = msgs("claude-x", true);
    let raw = serde_json::to_vec(&body).unwrap();
    let r = reqwest::Client::new()
        .post(&url)
        .header("authorization", "Bearer sk-client-key-1")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "a,b")
        .header("content-type", "application/json")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    anthropic_blocks(&anthropic_events(&text));
    let st = anth.stats().await;
    assert_eq!(st["last_headers"]["x-api-key"], "sk-ant-provider");
    assert_eq!(st["last_headers"]["anthropic-beta"], "a,b");
    assert!(
        st["last_headers"].get("authorization").is_none(),
        "the client's key went upstream"
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw));
    assert_eq!(
        st["bodies"].as_array().unwrap().last().unwrap()["sha256"],
        sha.as_str(),
        "the body was not passed byte-exact"
    );
    // x-api-key works for clients too; vLLM serves /v1/messages natively.
    gw.wait_model("local-m").await;
    let (s, _, text) = post_h(
        &url,
        &msgs("local-m", false),
        &[("x-api-key", "sk-client-key-1")],
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(vllm.stats().await["last_uri"], "/v1/messages");
    let (s, h, _) = post_h(
        &gw.url("/v1/messages/count_tokens"),
        &json!({"model": "local-m", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-api-key", "sk-client-key-1")],
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        h.get("x-switchyard-estimated").is_none(),
        "a native count_tokens is passed through"
    );
    assert_eq!(vllm.stats().await["last_uri"], "/v1/messages/count_tokens");
    // Without a key: 401 in Anthropic's shape.
    let (s, _, text) = post_h(&url, &msgs("claude-x", false), &[]).await;
    assert_eq!(s, 401);
    assert_eq!(anthropic_error(&text)["type"], "authentication_error");
}

#[tokio::test]
async fn fallback_re_translates_for_the_next_candidate_and_tokens_are_counted() {
    let failing = Mock::start(&["--model", "shared", "--fail-status", "503"]);
    let anth = Mock::start(&["--dialect", "anthropic", "--model", "shared"]);
    let cfg = format!(
        "{}{}{}\n[routing]\nstrategy = \"local-first\"\n",
        server(),
        local(&failing, "vllm", ""),
        anthropic_provider(&anth, &["shared"])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("shared").await;
    let (s, h, text) = post_h(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "shared", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(h["x-switchyard-provider"], "claude");
    assert_eq!(failing.requests().await, 1);
    assert_eq!(anth.stats().await["last_uri"], "/v1/messages");
    let n = gw
        .wait_metric(
            "switchyard_tokens_total",
            &[("provider", "claude"), ("kind", "completion")],
            1.0,
        )
        .await;
    assert!(n >= 1.0);
    let n = gw
        .wait_metric(
            "switchyard_translations_total",
            &[("direction", "openai_to_anthropic")],
            1.0,
        )
        .await;
    assert_eq!(n, 1.0);
}

#[tokio::test]
async fn anthropic_answers_are_cached_in_their_own_shape() {
    let up = Mock::start(&["--dialect", "openai", "--model", "m"]);
    let cfg = format!(
        "{}{}\n[cache]\nenabled = true\n",
        server(),
        local(&up, "sglang", "")
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/messages");
    for stream in [false, true] {
        let mut body = msgs("m", stream);
        body["temperature"] = json!(0);
        let (_, h1, t1) = post_h(&url, &body, &[]).await;
        let (_, h2, t2) = post_h(&url, &body, &[]).await;
        assert_eq!(h1["x-cache"], "MISS");
        assert_eq!(h2["x-cache"], "HIT", "stream = {stream}");
        assert_eq!(
            t1, t2,
            "the replay differs from the answer (stream = {stream})"
        );
        if stream {
            anthropic_blocks(&anthropic_events(&t2));
        } else {
            assert_eq!(
                serde_json::from_str::<Value>(&t2).unwrap()["type"],
                "message"
            );
        }
    }
    assert_eq!(up.requests().await, 2, "one upstream call per shape");
}

// --- The CLI pool ------------------------------------------------------------------------

fn cli_provider(pool: usize, env: &[(&str, &str)]) -> String {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
    format!(
        "\n[[providers]]\nname = \"cc\"\nkind = \"cli\"\ncommand = [\"{FAKE_CLI}\", \"--output-format\", \"stream-json\", \"--input-format\", \"stream-json\", \"--verbose\", \"--include-partial-messages\", \"--model\", \"claude-cli\"]\nmodels = [\"claude-cli\"]\npool_size = {pool}\nrequest_timeout_secs = 10\nenv = {{ {} }}\n",
        env.join(", ")
    )
}

async fn sessions(gw: &Gateway) -> Vec<Value> {
    gw.admin_json("/sessions").await.as_array().unwrap().clone()
}

#[tokio::test]
async fn the_cli_pool_serves_from_warm_processes_and_overflows_cold() {
    let gw = Gateway::start(&format!(
        "{}{}",
        server(),
        cli_provider(2, &[("FAKE_CLI_TOKEN_DELAY_MS", "100")])
    ))
    .await;
    wait_for("two warm sessions", Duration::from_secs(10), || {
        let gw = &gw;
        async move {
            let s = sessions(gw).await;
            (s.iter().filter(|x| x["state"] == "idle").count() == 2).then_some(())
        }
    })
    .await;
    let url = gw.url("/v1/chat/completions");
    let tasks = (0..3).map(|i| {
        let url = url.clone();
        async move {
            let body = json!({"model": "claude-cli", "stream": i == 0, "messages": [{"role": "user", "content": format!("hello number {i}")}]});
            post_h(&url, &body, &[]).await
        }
    });
    let answers = futures_util::future::join_all(tasks).await;
    for (i, (s, _, text)) in answers.iter().enumerate() {
        assert_eq!(*s, 200, "{text}");
        if i == 0 {
            let (chunks, done) = openai_chunks(text);
            assert!(done);
            let said: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(said, "hello number 0");
        } else {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                v["choices"][0]["message"]["content"],
                format!("hello number {i}")
            );
        }
    }
    assert_eq!(
        gw.metric_sum("switchyard_cli_cold_starts_total", &[]).await,
        1.0,
        "two warm, one cold"
    );
    // Used processes are replaced: the pool is back at two idle ones.
    wait_for("the pool to refill", Duration::from_secs(10), || {
        let gw = &gw;
        async move {
            let s = sessions(gw).await;
            (s.iter().filter(|x| x["state"] == "idle").count() == 2 && s.len() == 2).then_some(())
        }
    })
    .await;
    // Anthropic clients are served from the pool too.
    let (s, _, text) = post_h(
        &gw.url("/v1/messages"),
        &json!({"model": "claude-cli", "max_tokens": 20, "stream": true,
        "messages": [{"role": "user", "content": "hi pool"}]}),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(anthropic_blocks(&anthropic_events(&text))[0].1, "hi pool");
    let health = gw.admin_json("/health").await;
    assert_eq!(health["cli"]["cc"]["pool_size"], 2);
}

#[tokio::test]
async fn a_cli_process_that_dies_mid_answer_is_replaced() {
    // Every process dies in its first turn after writing two words.
    let gw = Gateway::start(&format!(
        "{}{}",
        server(),
        cli_provider(
            1,
            &[
                ("FAKE_CLI_CRASH_AFTER", "0"),
                ("FAKE_CLI_CRASH_TOKENS", "2")
            ]
        )
    ))
    .await;
    wait_for("a warm session", Duration::from_secs(10), || {
        let gw = &gw;
        async move {
            sessions(gw)
                .await
                .iter()
                .any(|x| x["state"] == "idle")
                .then_some(())
        }
    })
    .await;
    let url = gw.url("/v1/chat/completions");
    // Streamed: bytes already reached the client, so the stream ends with an error.
    let body = json!({"model": "claude-cli", "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
    let (s, _, text) = post_h(&url, &body, &[]).await;
    assert_eq!(s, 200);
    let (chunks, done) = openai_chunks(&text);
    assert!(!done, "a cut answer must not end with [DONE]");
    assert!(chunks.last().unwrap().get("error").is_some(), "{text}");
    // The dead process is replaced (with its backoff) and counted.
    let n = gw
        .wait_metric("switchyard_cli_restarts_total", &[("provider", "cc")], 1.0)
        .await;
    assert!(n >= 1.0);
    wait_for("a replacement", Duration::from_secs(15), || {
        let gw = &gw;
        async move {
            sessions(gw)
                .await
                .iter()
                .any(|x| x["state"] == "idle")
                .then_some(())
        }
    })
    .await;
}

// --- The official SDKs -------------------------------------------------------------------

/// The `openai` and `anthropic` Python SDKs (installed by the test command) as clients,
/// each against an upstream of the other dialect.
#[tokio::test]
async fn the_official_python_sdks_work_as_clients() {
    let anth = Mock::start(&["--dialect", "anthropic", "--model", "claude-x"]);
    let oai = Mock::start(&["--dialect", "openai", "--model", "local-m"]);
    let cfg = format!(
        "{}{}{}",
        server(),
        local(&oai, "sglang", ""),
        anthropic_provider(&anth, &["claude-x"])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("local-m").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/clients.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args([gw.proxy.as_str(), "claude-x", "local-m"])
        .output()
        .await
        .expect("python3");
    assert!(
        out.status.success(),
        "the SDK checks failed:\n{}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.proc
            .output()
            .chars()
            .rev()
            .take(3000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}

/// Providers whose kind publishes a model list get their models from it (here a
/// remote vLLM and an Ollama server, with no `models` in the configuration).
#[tokio::test]
async fn remote_servers_list_their_models() {
    let v = Mock::start(&["--model", "remote-vllm-model"]);
    let o = Mock::start(&["--model", "llama3.1:8b"]);
    let cfg = format!(
        "{}\n[[providers]]\nname = \"gpu-box\"\nkind = \"vllm\"\nbase_url = \"{}/v1\"\n\n[[providers]]\nname = \"ollama-box\"\nkind = \"ollama\"\nbase_url = \"{}/v1\"\n",
        server(),
        v.url(),
        o.url()
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("remote-vllm-model").await;
    gw.wait_model("llama3.1:8b").await;
    let (s, h, _) = post_h(
        &gw.url("/v1/chat/completions"),
        &chat("llama3.1:8b", false),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["x-switchyard-provider"], "ollama-box");
    // vLLM serves /v1/messages natively: passed through.
    let (s, _, text) = post_h(
        &gw.url("/v1/messages"),
        &msgs("remote-vllm-model", false),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(v.stats().await["last_uri"], "/v1/messages");
}
