//! The gateway in front of mock-llm: routing, streaming, fallback, errors, bodies,
//! usage, health, metrics. Every test starts its own processes on free ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn local_cfg(mock: &Mock, strategy: &str, extra: &str) -> String {
    format!(
        "[local]\nkind = \"vllm\"\nurl = \"{}\"\n\n[routing]\nstrategy = \"{strategy}\"\n{extra}\n",
        mock.url()
    )
}

fn cloud_provider(name: &str, mock: &Mock, models: &[&str]) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "\n[[providers]]\nname = \"{name}\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\napi_key = \"sk-provider-secret-{name}\"\nmodels = [{}]\n",
        mock.url(),
        models.join(", ")
    )
}

/// Reads an SSE response, returning each `data:` payload with its arrival time.
async fn read_sse(resp: reqwest::Response) -> (Vec<(Instant, String)>, Option<String>) {
    let mut events = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let mut err = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Err(_) => panic!("stream hung"),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                err = Some(e.to_string());
                break;
            }
            Ok(Some(Ok(chunk))) => {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(p) = buf.find("\n\n") {
                    let ev: String = buf.drain(..p + 2).collect();
                    for line in ev.lines() {
                        if let Some(d) = line.strip_prefix("data: ") {
                            events.push((Instant::now(), d.to_string()));
                        }
                    }
                }
            }
        }
    }
    (events, err)
}

#[tokio::test]
async fn chat_non_streaming_and_streaming_arrive_incrementally() {
    let mock = Mock::start(&["--model", "m1", "--itl-ms", "150", "--tokens", "6"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m1").await;

    let (status, headers, text) = post(&gw.url("/v1/chat/completions"), &chat("m1", false)).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello!"));
    assert_eq!(headers["x-switchyard-provider"], "local");
    assert!(!headers["x-request-id"].is_empty());

    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("m1", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (events, err) = read_sse(resp).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let first_token = events
        .iter()
        .find(|(_, d)| d.contains("\"content\":\"Hello! \""))
        .expect("a token chunk")
        .0;
    let done = events.last().unwrap().0;
    // The upstream spends 5 x 150 ms after the first token: a gateway that buffered
    // would deliver the first token together with the rest.
    assert!(
        done.duration_since(first_token) >= Duration::from_millis(500),
        "first token arrived only {:?} before the end",
        done.duration_since(first_token)
    );
}

#[tokio::test]
async fn completions_and_embeddings() {
    let mock = Mock::start(&["--model", "m1"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m1").await;
    let (s, _, t) = post(
        &gw.url("/v1/completions"),
        &json!({"model": "m1", "prompt": "once"}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].as_str().unwrap().len() > 3);

    let resp = reqwest::Client::new()
        .post(gw.url("/v1/completions"))
        .json(&json!({"model": "m1", "prompt": "once", "stream": true}))
        .send()
        .await
        .unwrap();
    let (events, _) = read_sse(resp).await;
    assert!(events.iter().any(|(_, d)| d.contains("\"text\"")));
    assert_eq!(events.last().unwrap().1, "[DONE]");

    let (s, _, t) = post(
        &gw.url("/v1/embeddings"),
        &json!({"model": "m1", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn models_merge_local_cloud_and_aliases() {
    let local = Mock::start(&["--model", "loc-a", "--model", "loc-b"]);
    let cloud = Mock::start(&["--model", "gpt-x"]);
    let cfg = format!(
        "{}{}",
        local_cfg(
            &local,
            "local-first",
            "[routing.aliases]\nbest = \"loc-a\"\n"
        ),
        cloud_provider("cloudy", &cloud, &["gpt-x", "gpt-*"])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("loc-b").await;
    let v: Value = reqwest::get(gw.url("/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let owners: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            (
                m["id"].as_str().unwrap().into(),
                m["owned_by"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("loc-a", "local"),
        ("loc-b", "local"),
        ("gpt-x", "cloudy"),
        ("best", "alias"),
    ] {
        assert!(
            owners.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {owners:?}"
        );
    }
    assert!(
        !owners.iter().any(|(id, _)| id.contains('*')),
        "globs are not listed"
    );
    let r = reqwest::get(gw.url("/v1/models/loc-a")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(gw.url("/v1/models/nope")).await.unwrap();
    assert_eq!(r.status(), 404);
}

async fn provider_for(gw: &Gateway, model: &str, hint: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat(model, false));
    if let Some(h) = hint {
        req = req.header("x-switchyard-route", h);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let p = r
        .headers()
        .get("x-switchyard-provider")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    (status, if status == 200 { p } else { body })
}

#[tokio::test]
async fn routing_strategies_and_hints() {
    let local = Mock::start(&["--model", "shared", "--model", "only-local"]);
    let cloud = Mock::start(&["--model", "shared", "--model", "only-cloud"]);
    let providers = cloud_provider("cloud", &cloud, &["shared", "only-cloud"]);
    for (strategy, shared, only_local, only_cloud) in [
        ("local-first", "local", "local", "cloud"),
        ("cloud-first", "cloud", "local", "cloud"),
        ("local-only", "local", "local", "503"),
        ("cloud-only", "cloud", "503", "cloud"),
    ] {
        let gw = Gateway::start(&format!("{}{providers}", local_cfg(&local, strategy, ""))).await;
        gw.wait_model("only-local").await;
        let show = |(s, p): (u16, String)| if s == 200 { p } else { s.to_string() };
        assert_eq!(
            show(provider_for(&gw, "shared", None).await),
            shared,
            "{strategy} shared"
        );
        assert_eq!(
            show(provider_for(&gw, "only-local", None).await),
            only_local,
            "{strategy} only-local"
        );
        assert_eq!(
            show(provider_for(&gw, "only-cloud", None).await),
            only_cloud,
            "{strategy} only-cloud"
        );
        if strategy == "local-first" {
            assert_eq!(
                show(provider_for(&gw, "shared", Some("fast")).await),
                "cloud"
            );
            assert_eq!(
                show(provider_for(&gw, "only-cloud", Some("secure")).await),
                "503"
            );
        }
        if strategy == "local-only" {
            let (_, body) = provider_for(&gw, "only-cloud", None).await;
            let e = error_of(&body);
            assert_eq!(e["code"], "no_backend_available");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("cloud skipped (strategy local-only)"),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn aliases_and_explicit_provider_rewrite_the_model() {
    let local = Mock::start(&["--model", "real-local"]);
    let cloud = Mock::start(&["--model", "real-cloud"]);
    let cfg = format!(
        "{}{}",
        local_cfg(
            &local,
            "local-first",
            "[routing.aliases]\nnice = \"real-local\"\nviacloud = \"cloud/real-cloud\"\n"
        ),
        cloud_provider("cloud", &cloud, &[])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("real-local").await;
    // The mocks answer 404 for models they do not serve: 200 proves the rewrite.
    let (s, h, t) = post(&gw.url("/v1/chat/completions"), &chat("nice", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "local");
    let (s, h, t) = post(
        &gw.url("/v1/chat/completions"),
        &chat("cloud/real-cloud", false),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "cloud");
    let (s, h, t) = post(&gw.url("/v1/chat/completions"), &chat("viacloud", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "cloud");
    // Only the model value changed: the rest of the body is byte-identical.
    let body = r#"{"model":"nice",  "messages":[{"role":"user","content":"x"}], "z": 1}"#;
    let (s, t) = post_raw(&gw.url("/v1/chat/completions"), body.as_bytes().to_vec()).await;
    assert_eq!(s, 200, "{t}");
    let want = body.replace("\"nice\"", "\"real-local\"");
    let stats = local.stats().await;
    let last = stats["bodies"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["sha256"], hex::encode(Sha256::digest(want.as_bytes())));
}

#[tokio::test]
async fn falls_back_on_503_and_on_refused_connection() {
    let failing = Mock::start(&["--model", "m", "--fail-status", "503"]);
    let good = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}",
        local_cfg(&failing, "local-first", ""),
        cloud_provider("cloud", &good, &["m"])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    for stream in [false, true] {
        let (s, h, t) = post(&gw.url("/v1/chat/completions"), &chat("m", stream)).await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(h["x-switchyard-provider"], "cloud");
        if stream {
            assert!(t.contains("[DONE]"));
        }
    }
    assert_eq!(
        failing.requests().await,
        2,
        "the failing backend was tried first"
    );
    let stats = good.stats().await;
    assert_eq!(stats["requests"], 2);
    assert!(
        gw.wait_metric("switchyard_fallbacks_total", &[("provider", "local")], 2.0)
            .await
            >= 2.0
    );

    // Refused connection: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = format!(
        "[local]\nkind = \"vllm\"\nurl = \"http://127.0.0.1:{port}\"\nmodels = [\"m\"]\n{}",
        cloud_provider("cloud", &good, &["m"])
    );
    let gw = Gateway::start(&cfg).await;
    let (s, h, t) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "cloud");

    // Nothing left: 503 naming what was tried.
    let cfg = format!(
        "[local]\nkind = \"vllm\"\nurl = \"http://127.0.0.1:{port}\"\nmodels = [\"m\"]\n{}",
        cloud_provider("cloud", &failing, &["m"])
    );
    let gw = Gateway::start(&cfg).await;
    let (s, _, t) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 503, "{t}");
    let e = error_of(&t);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("local failed (connection refused)"), "{msg}");
    assert!(msg.contains("cloud failed (status 5xx)"), "{msg}");
}

#[tokio::test]
async fn mid_stream_drop_ends_the_stream_with_an_error() {
    let mock = Mock::start(&["--model", "m", "--itl-ms", "20", "--tokens", "20"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-drop-after", "4")
        .json(&chat("m", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (events, _transport_err) = read_sse(resp).await;
    assert!(events.len() >= 4, "{events:?}");
    assert!(
        !events.iter().any(|(_, d)| d == "[DONE]"),
        "a dropped stream must not end cleanly"
    );
    let last = &events.last().unwrap().1;
    let e = error_of(last);
    assert_eq!(e["code"], "upstream_error");
    let url = gw.admin_url("/health/inflight");
    wait_for("inflight back to 0", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            (v["total"] == 0).then_some(())
        }
    })
    .await;
    assert!(
        gw.wait_metric(
            "switchyard_upstream_errors_total",
            &[("kind", "mid_stream")],
            1.0
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn gateway_errors_are_openai_shaped_and_keep_the_connection() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_body_bytes = 4096\n{}",
        local_cfg(&mock, "local-first", "")
    ))
    .await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/chat/completions");
    let c = reqwest::Client::new();

    let (s, t) = post_raw(&url, br#"{"model": "#.to_vec()).await;
    assert_eq!(s, 400);
    assert_eq!(error_of(&t)["code"], "invalid_json");
    let (s, t) = post_raw(&url, br#"{"messages": []}"#.to_vec()).await;
    assert_eq!(s, 400);
    let e = error_of(&t);
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("missing_model"), Some("model"))
    );
    let (s, t) = post_raw(&url, br#"[1, 2]"#.to_vec()).await;
    assert_eq!(s, 400, "{t}");
    let (s, t) = post_raw(&url, br#"{"model":"nope","messages":[]}"#.to_vec()).await;
    assert_eq!(s, 404);
    assert_eq!(error_of(&t)["code"], "model_not_found");
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(5000)
    );
    let (s, t) = post_raw(&url, big.into_bytes()).await;
    assert_eq!(s, 413);
    assert_eq!(error_of(&t)["code"], "request_too_large");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "method_not_allowed"
    );
    let r = c
        .post(gw.url("/v1/nothing"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_of(&r.text().await.unwrap())["code"], "unknown_url");
    assert_eq!(mock.requests().await, 0, "nothing bad was forwarded");

    // Errors keep the client's connection: three requests on one socket.
    let addr = gw.proxy.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let bad = r#"{"model":"#;
    let good = r#"{"model":"m","messages":[]}"#;
    for (body, want) in [(bad, 400), (good, 200), ("{}", 400)] {
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (status, _) = read_http_response(&mut s);
        assert_eq!(status, want);
    }
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    for _ in 0..2 {
        write!(s, "GET /v1/unknown HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_http_response(&mut s).0, 404);
    }
}

async fn body_arrives_exact(gw: &Gateway, mock: &Mock, size: usize, chunked: bool) {
    let filler = "x".repeat(size);
    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{filler}"}}]}}"#)
        .into_bytes();
    let want = hex::encode(Sha256::digest(&body));
    let req = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json");
    let req = if chunked {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(7919).map(|c| Ok(c.to_vec())).collect();
        req.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
    } else {
        req.body(body.clone())
    };
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "size {size} chunked {chunked}: {text}");
    let stats = mock.stats().await;
    let last = stats["bodies"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["len"], body.len(), "size {size} chunked {chunked}");
    assert_eq!(last["sha256"], want, "size {size} chunked {chunked}");
}

/// Bodies go out with the upstream request header in one send up to 16 KiB and in a
/// write of their own above (vendor/PATCHES.md): both sides of that line, plus bodies
/// past Pingora's 64 KiB retry buffer.
#[tokio::test]
async fn large_bodies_arrive_byte_exact_in_both_framings() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    // 55 bytes of JSON around the filler: 16,384 and 16,385 byte bodies.
    for size in [16_384 - 55, 16_385 - 55, 200_000, 3_000_000] {
        for chunked in [false, true] {
            body_arrives_exact(&gw, &mock, size, chunked).await;
        }
    }
}

/// A client that waits for `100 Continue` gets it from the gateway itself (which reads the
/// whole body before routing, and does not forward `Expect`), then its body reaches the
/// upstream whole.
#[tokio::test]
async fn expect_continue_gets_100_and_the_body_arrives() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let addr = gw.proxy.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed before 100 Continue");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    s.write_all(body.as_bytes()).unwrap();
    let (status, text) = read_http_response(&mut s);
    assert_eq!(status, 200, "{text}");
    let stats = mock.stats().await;
    let last = stats["bodies"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["len"], body.len());
    assert_eq!(last["sha256"], hex::encode(Sha256::digest(body.as_bytes())));
}

#[tokio::test]
async fn large_body_survives_a_fallback() {
    let failing = Mock::start(&["--model", "m", "--fail-status", "502"]);
    let good = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}",
        local_cfg(&failing, "local-first", ""),
        cloud_provider("cloud", &good, &["m"])
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    body_arrives_exact(&gw, &good, 300_000, true).await;
    let s = failing.stats().await;
    assert_eq!(
        s["bodies"][0]["len"],
        good.stats().await["bodies"][0]["len"]
    );
}

#[tokio::test]
async fn usage_chunk_only_for_clients_that_asked() {
    let mock = Mock::start(&["--model", "m", "--tokens", "7"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let before = gw
        .metric_sum("switchyard_tokens_total", &[("kind", "completion")])
        .await;

    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("m", true))
        .send()
        .await
        .unwrap();
    let (events, _) = read_sse(resp).await;
    assert!(
        !events.iter().any(|(_, d)| d.contains("\"choices\":[]")),
        "usage chunk leaked: {events:?}"
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    // The gateway asked upstream for usage on the client's behalf.
    let sent = mock.stats().await["bodies"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_ne!(
        sent["sha256"],
        hex::encode(Sha256::digest(
            serde_json::to_vec(&chat("m", true)).unwrap()
        ))
    );

    let mut asked = chat("m", true);
    asked["stream_options"] = json!({"include_usage": true});
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&asked)
        .send()
        .await
        .unwrap();
    let (events, _) = read_sse(resp).await;
    let usage = events
        .iter()
        .find(|(_, d)| d.contains("\"choices\":[]"))
        .expect("usage chunk");
    let u: Value = serde_json::from_str(&usage.1).unwrap();
    assert_eq!(u["usage"]["completion_tokens"], 7);

    let (s, _, _) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200);
    let after = gw
        .wait_metric(
            "switchyard_tokens_total",
            &[("kind", "completion")],
            before + 21.0,
        )
        .await;
    assert_eq!(
        after - before,
        21.0,
        "7 tokens counted for each of the three requests"
    );
}

#[tokio::test]
async fn inflight_metrics_and_stats_move() {
    let mock = Mock::start(&["--model", "m", "--itl-ms", "100", "--tokens", "10"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let inflight = gw.admin_json("/health/inflight").await;
    assert_eq!(inflight["total"], 0);

    let mut stream = gw.open_stream("m").await;
    let v = gw.admin_json("/health/inflight").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["local"], 1, "{v}");
    assert_eq!(v["providers"]["local"], 1, "{v}");
    while let Some(c) = stream.next().await {
        c.unwrap();
    }
    let url = gw.admin_url("/health/inflight");
    wait_for("inflight 0", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            (v["total"] == 0).then_some(())
        }
    })
    .await;

    let (s, _, _) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200);
    let n = gw
        .wait_metric(
            "switchyard_requests_total",
            &[
                ("provider", "local"),
                ("model", "m"),
                ("endpoint", "chat"),
                ("status", "2xx"),
            ],
            2.0,
        )
        .await;
    assert_eq!(n, 2.0);
    assert!(
        gw.metric_sum("switchyard_gateway_overhead_seconds_count", &[])
            .await
            >= 2.0
    );
    assert!(
        gw.metric_sum(
            "switchyard_time_to_first_token_seconds_count",
            &[("provider", "local")]
        )
        .await
            >= 1.0
    );
    let url = gw.admin_url("/v1/inference/stats");
    let stats: Value = wait_for(
        "stats to count both requests",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move {
                let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                (v["requests"] == 2).then_some(v)
            }
        },
    )
    .await;
    assert_eq!(stats["errors"], 0);
    assert_eq!(stats["backend"]["kind"], "vllm");
    assert_eq!(stats["backend"]["state"], "ready");
    assert!(stats["avg_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(stats["avg_ttft_ms"].as_f64().unwrap() > 0.0);
    assert!(stats["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["completion_tokens"], 20);
}

#[tokio::test]
async fn credentials_are_replaced_and_never_logged() {
    let cloud = Mock::start(&["--model", "gpt-x"]);
    let gw = Gateway::start(&format!(
        "[routing]\nstrategy = \"cloud-only\"\n{}",
        cloud_provider("cloud", &cloud, &["gpt-x"])
    ))
    .await;
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-key-should-not-pass")
        .header("x-api-key", "client-x-api-key")
        .header("x-request-id", "req-abc-123")
        .json(&chat("gpt-x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-abc-123");
    let h = cloud.stats().await["last_headers"].clone();
    assert_eq!(h["authorization"], "Bearer sk-provider-secret-cloud");
    assert!(h.get("x-api-key").is_none());
    assert!(h.get("x-switchyard-route").is_none());
    let url = gw.admin_url("/health");
    let _ = reqwest::get(&url).await;
    let out = gw.proc.output();
    wait_for("the access line", Duration::from_secs(5), || {
        let found = gw.proc.output().contains("req-abc-123");
        async move { found.then_some(()) }
    })
    .await;
    assert!(!out.contains("sk-provider-secret"), "provider key in logs");
    assert!(
        !gw.proc.output().contains("sk-client-key"),
        "client key in logs"
    );
    assert!(!gw.metrics().await.contains("sk-provider-secret"));
}

#[tokio::test]
async fn access_log_line_per_request() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "log-me-1")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = wait_for("access line", Duration::from_secs(5), || {
        let found = gw
            .proc
            .stdout
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("\"log-me-1\""))
            .cloned();
        async move { found }
    })
    .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "request");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/chat/completions");
    assert_eq!(v["model"], "m");
    assert_eq!(v["provider"], "local");
    assert_eq!(v["status"], 200);
    assert_eq!(v["completion_tokens"], 16);
    assert_eq!(v["fallback"], false);
    assert!(v["latency_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn embedded_default_answers_with_the_builtin_mock() {
    let default = include_str!("../conf/switchyard.toml")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0");
    let gw = Gateway::start(&default).await;
    let (s, _, t) = post(&gw.url("/v1/chat/completions"), &chat("mock", false)).await;
    assert_eq!(s, 200, "{t}");
    let v: Value = serde_json::from_str(&t).unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("You said: hello"));
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("mock", true))
        .send()
        .await
        .unwrap();
    let (events, _) = read_sse(resp).await;
    assert!(events.len() > 3);
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn cloud_providers_are_detected_from_the_environment() {
    let cloud = Mock::start(&["--model", "gpt-4o-mini"]);
    let base = format!("{}/v1", cloud.url());
    let gw = Gateway::start_with_env(
        "[routing]\nstrategy = \"cloud-only\"\n",
        &[
            ("OPENAI_API_KEY", "sk-env-secret"),
            ("OPENAI_BASE_URL", &base),
        ],
    )
    .await;
    let (s, h, t) = post(&gw.url("/v1/chat/completions"), &chat("gpt-4o-mini", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(h["x-switchyard-provider"], "openai");
    assert_eq!(
        cloud.stats().await["last_headers"]["authorization"],
        "Bearer sk-env-secret"
    );
    assert!(gw
        .proc
        .output()
        .contains("provider openai registered from OPENAI_API_KEY"));
    assert!(!gw.proc.output().contains("sk-env-secret"));
}

#[tokio::test]
async fn sigterm_lets_a_stream_finish() {
    let mock = Mock::start(&["--model", "m", "--itl-ms", "100", "--tokens", "8"]);
    let mut gw = Gateway::start(&local_cfg(&mock, "local-first", "")).await;
    gw.wait_model("m").await;
    let mut stream = gw.open_stream("m").await;
    gw.proc.signal("TERM");
    let ready = gw.admin_url("/health/ready");
    wait_for(
        "readiness to fail after SIGTERM",
        Duration::from_secs(5),
        || {
            let ready = ready.clone();
            async move {
                let r = reqwest::get(&ready).await.ok()?;
                (r.status() == 503).then_some(())
            }
        },
    )
    .await;
    let mut body = String::new();
    while let Some(c) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        body.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    assert!(body.contains("[DONE]"), "the stream was cut: {body}");
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited after draining");
    assert!(status.success() || status.code().is_none(), "{status:?}");
}

#[test]
fn check_accepts_every_shipped_config_and_rejects_a_bad_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = std::process::Command::new(SWITCHYARD)
            .args(["check", "--config"])
            .arg(&p)
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 4, "conf/ should hold the default and the examples");

    let mut bad = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    write!(bad, "[routing]\nstrategy = \"fastest\"\n").unwrap();
    let out = std::process::Command::new(SWITCHYARD)
        .args(["check", "--config"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routing.strategy") && err.contains("fastest"),
        "{err}"
    );

    let mut bad = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    write!(bad, "[local]\nkind = \"vllm\"\nurl = \"ftp://nowhere\"\n").unwrap();
    let out = std::process::Command::new(SWITCHYARD)
        .args(["check", "--config"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("local.url") && err.contains("ftp://nowhere"),
        "{err}"
    );
}
