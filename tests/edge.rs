//! The edge holds: shutdown always ends the process, a bad credential leaves only its
//! provider out, a POST reaches an upstream at most once, slow and idle clients are
//! reclaimed, inputs are bounded where they enter, and every answer tells the truth
//! about the connection. Small timeouts in each test's config keep these to seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `[server]` section on free ports with `extra` settings.
fn server(extra: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}\n")
}

fn local(mock: &Mock) -> String {
    format!("[local]\nkind = \"vllm\"\nurl = \"{}\"\n", mock.url())
}

fn provider(name: &str, mock: &Mock, models: &[&str], extra: &str) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "\n[[providers]]\nname = \"{name}\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test-{name}\"\nmodels = [{}]\n{extra}\n",
        mock.url(),
        models.join(", ")
    )
}

fn addr(gw: &Gateway) -> String {
    gw.proxy.trim_start_matches("http://").to_string()
}

/// Reads from `s` until the peer closes or `within` passes; returns what arrived and
/// whether the peer closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status, head, body).
async fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("response header in time")
            .unwrap();
        assert!(
            n > 0,
            "closed while reading the header: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len = header_of(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body))
        .await
        .expect("response body in time")
        .unwrap();
    (status, head, body)
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn chat_req(model: &str, stream: bool, extra_headers: &str) -> Vec<u8> {
    let body = json!({"model": model, "stream": stream, "temperature": 0.7,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn check(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(config.as_bytes()).unwrap();
    let mut cmd = std::process::Command::new(SWITCHYARD);
    cmd.args(["check", "--config"]).arg(f.path());
    for v in ["OPENAI_API_KEY", "GROQ_API_KEY", "ANTHROPIC_API_KEY"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

// 0. SIGTERM always ends the process in time.
#[tokio::test]
async fn sigterm_ends_the_process_every_time() {
    let mock = Mock::start(&["--model", "m", "--itl-ms", "5", "--tokens", "50"]);
    for threads in [1, 2] {
        for cycle in 0..8 {
            let cfg = format!(
                "{}{}",
                server(&format!("threads = {threads}")),
                local(&mock)
            );
            let mut gw = Gateway::start(&cfg).await;
            gw.wait_model("m").await;
            let (s, _, _) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
            assert_eq!(s, 200);
            // An aborted stream and a malformed body.
            drop(gw.open_stream("m").await);
            let (s, _) = post_raw(&gw.url("/v1/chat/completions"), b"{\"model\": ".to_vec()).await;
            assert_eq!(s, 400);
            let started = Instant::now();
            gw.proc.signal("TERM");
            let exit = gw.proc.wait_exit(Duration::from_secs(5)).await;
            assert!(
                exit.is_some(),
                "threads = {threads}, cycle {cycle}: still running 5 s after SIGTERM:\n{}",
                gw.proc
                    .output()
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
            );
            assert!(started.elapsed() < Duration::from_secs(5));
            let log = gw.proc.output();
            assert!(
                log.matches("Accept() failed").count() < 5,
                "accept errors are not rate-limited:\n{log}"
            );
        }
    }
}

// 12. Streams still open when the grace period ends get an error event.
#[tokio::test]
async fn streams_cut_at_the_end_of_the_grace_period_end_with_an_error_event() {
    let mock = Mock::start(&["--model", "slow", "--itl-ms", "200", "--tokens", "200"]);
    let cfg = format!(
        "{}{}\n[[providers]]\nname = \"builtin\"\nkind = \"mock\"\nmodels = [\"builtin-slow\"]\nmock_reply = \"{}\"\nmock_itl_ms = 200\n",
        server("shutdown_grace_secs = 1"),
        local(&mock),
        "word ".repeat(100)
    );
    let mut gw = Gateway::start(&cfg).await;
    gw.wait_model("slow").await;
    let proxied = gw.open_stream("slow").await;
    let builtin = gw.open_stream("builtin-slow").await;
    gw.proc.signal("TERM");
    for (what, mut stream) in [("proxied", proxied), ("built-in", builtin)] {
        let mut body = String::new();
        while let Some(c) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what} stream hung after the grace period"))
        {
            match c {
                Ok(c) => body.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => break,
            }
        }
        assert!(!body.contains("[DONE]"), "{what}: the stream was not cut");
        let last = body
            .trim_end()
            .rsplit("\n\n")
            .next()
            .unwrap()
            .trim_start_matches("data: ");
        let v: Value = serde_json::from_str(last)
            .unwrap_or_else(|_| panic!("{what} stream did not end with an error event: {last}"));
        assert_eq!(v["error"]["code"], "shutting_down", "{what}: {last}");
    }
    assert!(
        gw.proc.wait_exit(Duration::from_secs(8)).await.is_some(),
        "the gateway did not exit after the grace period"
    );
}

// 1. A credential that is not a valid header value: `check` refuses it by name, a
//    running gateway leaves only that provider out.
#[tokio::test]
async fn a_bad_credential_is_refused_by_check_and_leaves_the_rest_serving() {
    let lm = Mock::start(&["--model", "local-m"]);
    let cm = Mock::start(&["--model", "cloud-m"]);
    let cfg = format!(
        "{}{}\n[[providers]]\nname = \"cloud\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\napi_key_env = \"EDGE_KEY\"\nmodels = [\"cloud-m\"]\n",
        server(""),
        local(&lm),
        cm.url()
    );
    let (code, out) = check(&cfg, &[("EDGE_KEY", "sk-edge-secret\n")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("providers[0].api_key_env") && out.contains("EDGE_KEY"),
        "{out}"
    );
    assert!(
        !out.contains("sk-edge-secret"),
        "check printed the credential: {out}"
    );
    let (code, out) = check(&cfg, &[("EDGE_KEY", "sk-edge-secret")]);
    assert_eq!(code, Some(0), "{out}");

    let gw = Gateway::start_with_env(&cfg, &[("EDGE_KEY", "sk-edge-secret\n")]).await;
    gw.wait_model("local-m").await;
    let (s, _, body) = post(&gw.url("/v1/chat/completions"), &chat("local-m", false)).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = post(&gw.url("/v1/chat/completions"), &chat("cloud-m", false)).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("credential"),
        "{body}"
    );
    assert_eq!(cm.requests().await, 0);
    let ready = reqwest::get(gw.admin_url("/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        ready["disabled_providers"][0]["provider"], "cloud",
        "{ready}"
    );
    let m = gw
        .metric_sum(
            "switchyard_provider_disabled",
            &[("provider", "cloud"), ("reason", "invalid_credential")],
        )
        .await;
    assert_eq!(m, 1.0);
    let log = gw.proc.output();
    assert!(log.contains("left out"), "{log}");
    assert!(
        !log.contains("sk-edge-secret"),
        "the credential reached the log"
    );
}

// 2. A POST reaches an upstream at most once; a fallback to another candidate before
//    the first byte is counted as a resend.
#[tokio::test]
async fn a_post_reaches_the_upstream_once_when_it_drops_mid_answer() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&format!("{}{}", server(""), local(&mock))).await;
    gw.wait_model("m").await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(&chat_req("m", false, "")).await.unwrap();
    let (status, _, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    for stream in [false, true] {
        let before = mock.requests().await;
        let mut c = TcpStream::connect(addr(&gw)).await.unwrap();
        // Warm the pooled upstream connection, then drop mid-answer on it.
        c.write_all(&chat_req("m", false, "")).await.unwrap();
        read_response(&mut c).await;
        c.write_all(&chat_req("m", stream, "x-mock-drop-after: 1\r\n"))
            .await
            .unwrap();
        let (got, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
        let got = String::from_utf8_lossy(&got);
        if stream {
            assert!(got.contains("\"error\""), "no error event: {got}");
            assert!(!got.contains("[DONE]"));
        } else {
            assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        }
        assert_eq!(
            mock.requests().await - before,
            2,
            "stream = {stream}: the dropped request was sent more than once"
        );
    }
    assert_eq!(
        gw.metric_sum("switchyard_upstream_resends_total", &[])
            .await,
        0.0
    );

    // With a second candidate, the failure before the first byte falls back (once).
    let dropper = Mock::start(&["--model", "m", "--drop-after", "1"]);
    let backup = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}\n[routing]\nstrategy = \"local-first\"\n{}",
        server(""),
        local(&dropper),
        provider("backup", &backup, &["m"], "")
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let (s, h, body) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["x-switchyard-provider"], "backup");
    assert_eq!(dropper.requests().await, 1);
    assert_eq!(backup.requests().await, 1);
    let n = gw
        .wait_metric(
            "switchyard_upstream_resends_total",
            &[("reason", "transport")],
            1.0,
        )
        .await;
    assert_eq!(n, 1.0);
}

// 3. Idle keep-alive connections (and connections that never send) are closed.
#[tokio::test]
async fn idle_client_connections_are_closed() {
    let gw = Gateway::start(&server("client_idle_timeout_secs = 1")).await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&head, "connection"), Some("keep-alive"));
    let t = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(
        closed,
        "an idle keep-alive connection outlived the 1 s idle timeout"
    );
    assert!(t.elapsed() >= Duration::from_millis(900));
    let mut silent = TcpStream::connect(addr(&gw)).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(4)).await;
    assert!(closed, "a connection that never sent a byte was kept");
}

// 4. Slowloris: a trickled header or body is cut; connections are capped.
#[tokio::test]
async fn trickled_headers_and_bodies_are_cut() {
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}",
        server(
            "client_header_timeout_secs = 1\nclient_body_timeout_secs = 1\nclient_body_min_rate_bytes_per_sec = 1000000"
        ),
        local(&mock)
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;

    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let header = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let t = Instant::now();
    let mut closed = false;
    for b in header.iter().cycle().take(60) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                let got = String::from_utf8_lossy(&buf[..n]);
                assert!(got.starts_with("HTTP/1.1 408"), "{got}");
                assert!(got.contains("request_timeout"), "{got}");
            }
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "a header trickled for 6 s was still being read (timeout 1 s)"
    );
    assert!(t.elapsed() < Duration::from_secs(4));

    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":\"m\",\"x\":\"",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    while t.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"aaaaaaaaaa").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.ends_with(b"}}") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body was not cut: {answer}"
    );
    assert_eq!(header_of(&answer, "connection"), Some("close"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(mock.requests().await, 0, "a half-read body was forwarded");
    assert!(
        gw.wait_metric("switchyard_client_timeouts_total", &[("kind", "body")], 1.0)
            .await
            >= 1.0
    );
    assert!(
        gw.wait_metric(
            "switchyard_client_timeouts_total",
            &[("kind", "header")],
            1.0
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503() {
    let gw = Gateway::start(&server("max_client_connections = 4")).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&gw)).await.unwrap());
    }
    // Give the gateway a moment to accept all four; the fifth is refused.
    let mut refused = None;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        let (got, closed) = read_until_closed(&mut s, Duration::from_millis(500)).await;
        if closed && !got.is_empty() {
            refused = Some(String::from_utf8_lossy(&got).to_string());
            break;
        }
    }
    let refused = refused.expect("a connection over the cap was not refused");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("connection: close"));
    held.pop();
    let url = gw.url("/health");
    wait_for("a freed slot to be usable", Duration::from_secs(5), || {
        let url = url.clone();
        async move {
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    assert!(
        gw.metric_sum("switchyard_client_connections_refused_total", &[])
            .await
            >= 1.0
    );
    assert_eq!(
        gw.metric_sum("switchyard_client_connections_max", &[])
            .await,
        4.0
    );
}

// 5. A client that stops reading a stream is dropped, and its upstream request with it.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}",
        server("client_write_timeout_secs = 1"),
        local(&mock)
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(&chat_req(
        "m",
        true,
        "x-mock-tokens: 2000000\r\nx-mock-itl-ms: 0\r\n",
    ))
    .await
    .unwrap();
    // Never read: the socket buffers fill, writes stall, the timeout drops the client.
    let n = gw
        .wait_metric(
            "switchyard_client_timeouts_total",
            &[("kind", "write")],
            1.0,
        )
        .await;
    assert_eq!(n, 1.0, "the stalled client was not dropped");
    let n = gw
        .wait_metric(
            "switchyard_upstream_cancelled_total",
            &[("reason", "client_write_timeout")],
            1.0,
        )
        .await;
    assert_eq!(n, 1.0);
    let inflight = gw.admin_url("/health/inflight");
    wait_for(
        "the upstream slot to be released",
        Duration::from_secs(5),
        || {
            let inflight = inflight.clone();
            async move {
                let v: Value = reqwest::get(&inflight).await.ok()?.json().await.ok()?;
                (v["total"].as_i64()? == 0).then_some(())
            }
        },
    )
    .await;
    drop(s);
}

// 6. Coalesced followers get the whole stream, whatever the cache's entry limit.
#[tokio::test]
async fn coalesced_followers_of_a_large_stream_get_all_of_it() {
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}{}\n[cache]\nenabled = true\nmax_entry_bytes = 20000\n",
        server(""),
        local(&mock)
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let body = json!({"model": "m", "stream": true, "temperature": 0,
        "messages": [{"role": "user", "content": "big shared stream"}]});
    let tasks = (0..3).map(|_| {
        let url = gw.url("/v1/chat/completions");
        let body = body.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-mock-tokens", "5000")
                .header("x-mock-ttft-ms", "500")
                .json(&body)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    });
    let bodies = futures_util::future::join_all(tasks).await;
    for b in &bodies {
        assert!(b.len() > 200_000, "{} bytes", b.len());
        assert!(
            String::from_utf8_lossy(b)
                .trim_end()
                .ends_with("data: [DONE]"),
            "a stream was cut at {} bytes",
            b.len()
        );
        assert_eq!(b, &bodies[0], "followers got a different stream");
    }
    assert_eq!(
        mock.requests().await,
        1,
        "the identical requests were not coalesced"
    );
}

// 7. Every answer's `Connection` header tells what happens to the connection.
#[tokio::test]
async fn answers_say_close_exactly_when_the_connection_closes() {
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!("{}{}", server("max_body_bytes = 1000"), local(&mock));
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    // An upstream that drops before answering: 503, and the connection stays usable.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(&chat_req("m", false, "x-mock-drop-after: 1\r\n"))
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 503);
    assert_eq!(header_of(&head, "connection"), Some("keep-alive"), "{head}");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut s).await;
    assert_eq!(status, 200, "the connection announced as kept was closed");
    // A body over the limit is not read: 413 with `Connection: close`, then closed,
    // including for a request pipelined behind it.
    let big = "x".repeat(5000);
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        big.len()
    );
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 413);
    assert_eq!(header_of(&head, "connection"), Some("close"), "{head}");
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(closed);
}

// 8. Inputs are bounded where they enter.
#[tokio::test]
async fn inputs_are_bounded_where_they_enter() {
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&format!("{}{}", server(""), local(&mock))).await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/chat/completions");
    let big = "m".repeat(10_000);
    let (s, text) = post_raw(
        &url,
        format!("{{\"model\":\"{big}\",\"messages\":[]}}").into_bytes(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(error_of(&text)["code"], "model_too_long");
    assert!(
        text.len() < 2048,
        "the error echoes the input ({} bytes)",
        text.len()
    );
    let near = "n".repeat(250);
    let (s, text) = post_raw(
        &url,
        format!("{{\"model\":\"{near}\",\"messages\":[]}}").into_bytes(),
    )
    .await;
    assert_eq!(s, 404);
    assert!(text.len() < 700, "{text}");
    for (body, code) in [
        (
            &br#"{"model":"m","model":"cloud/m","messages":[]}"#[..],
            "duplicate_key",
        ),
        (
            br#"{"model":"m","stream":false,"stream":true,"messages":[]}"#,
            "duplicate_key",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#,
            "invalid_json",
        ),
    ] {
        let (s, text) = post_raw(&url, body.to_vec()).await;
        assert_eq!(s, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(error_of(&text)["code"], code, "{text}");
    }
    assert_eq!(mock.requests().await, 0, "a refused body was forwarded");
    let (s, text) = {
        let r = reqwest::Client::new()
            .get(gw.url("/v1/models"))
            .header("x-big", "a".repeat(70_000))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(s, 431);
    assert_eq!(error_of(&text)["code"], "request_header_too_large");
    // A long path is cut in the access log line.
    let long = format!("/v1/{}", "p".repeat(30_000));
    let r = reqwest::get(gw.url(&long)).await.unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.len() < 1000, "{} bytes", body.len());
    let out = gw.proc.stdout.clone();
    wait_for("the access log line", Duration::from_secs(5), || {
        let out = out.clone();
        async move {
            let lines = out.lock().unwrap();
            lines
                .iter()
                .any(|l| l.contains("\"status\":404") && l.contains("pppp"))
                .then_some(())
        }
    })
    .await;
    let lines = gw.proc.stdout.lock().unwrap().clone();
    for l in lines.iter().filter(|l| l.contains("pppp")) {
        assert!(l.len() < 2048, "an access log line of {} bytes", l.len());
    }
}

// 9. Errors the HTTP parser produces are OpenAI-shaped, with a request id.
#[tokio::test]
async fn malformed_http_gets_a_json_error_with_a_request_id() {
    let gw = Gateway::start(&server("")).await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        (
            "bad Content-Length",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
                .to_vec(),
            400,
        ),
        (
            "bare CR",
            b"GET /v1/models HTTP/1.1\r\nHost: x\rX: y\r\n\r\n".to_vec(),
            400,
        ),
        (
            "obs-fold",
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "absolute-form",
            b"GET http://other.example/v1/models HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "100 KB path",
            [
                &b"GET /v1/"[..],
                &vec![b'a'; 100_000],
                b" HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            431,
        ),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
            405,
        ),
    ];
    for (what, req, want) in cases {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        s.write_all(&req).await.unwrap();
        let (status, head, body) = read_response(&mut s).await;
        assert_eq!(status, want, "{what}: {head}");
        assert!(
            header_of(&head, "x-request-id").is_some_and(|v| !v.is_empty()),
            "{what}: {head}"
        );
        assert_eq!(
            header_of(&head, "connection"),
            Some("close"),
            "{what}: {head}"
        );
        error_of(&String::from_utf8_lossy(&body));
    }
}

// 10. What leaves for the upstream: no query string (but allowed parameters), no
//     cookies, an X-Forwarded-For the gateway set.
#[tokio::test]
async fn queries_cookies_and_forwarded_for_are_the_gateways_choice() {
    let lm = Mock::start(&["--model", "m"]);
    let cm = Mock::start(&["--model", "az"]);
    let cfg = format!(
        "{}{}{}",
        server(""),
        local(&lm),
        provider("azure", &cm, &["az"], "forward_query = [\"api-version\"]")
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions?api_key=sk-query-secret&x=1"))
        .header("cookie", "session=sk-cookie-secret")
        .header("x-forwarded-for", "6.6.6.6")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = lm.stats().await;
    assert_eq!(st["last_uri"], "/v1/chat/completions", "{st}");
    assert!(st["last_headers"].get("cookie").is_none(), "{st}");
    assert_eq!(st["last_headers"]["x-forwarded-for"], "127.0.0.1", "{st}");
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions?api-version=2024-10-21&api_key=sk-query-secret"))
        .json(&chat("az", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        cm.stats().await["last_uri"],
        "/v1/chat/completions?api-version=2024-10-21"
    );
    let log = gw.proc.output();
    assert!(
        !log.contains("sk-query-secret") && !log.contains("sk-cookie-secret"),
        "{log}"
    );

    // Behind a trusted proxy, the client's X-Forwarded-For is kept and appended to.
    let cfg = format!(
        "{}{}",
        server("trusted_proxies = [\"127.0.0.0/8\"]"),
        local(&lm)
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("x-forwarded-for", "6.6.6.6")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        lm.stats().await["last_headers"]["x-forwarded-for"],
        "6.6.6.6, 127.0.0.1"
    );
}

// 11. `check` names secret fields, never their values.
#[test]
fn check_never_prints_a_secret() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key = 98765432109876\n",
            "98765432109876",
            "providers[0].api_key",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"https://user:hunter2@api.example.com/v1\"\n",
            "hunter2",
            "providers[0].base_url",
        ),
        ("[redis]\nurl = 31415926535\n", "31415926535", "redis.url"),
        (
            "[local]\nkind = \"custom\"\nurl = \"http://127.0.0.1:9\"\nauth_header = \"Bearer sk-local\\u0001secret\"\n",
            "sk-local",
            "local.auth_header",
        ),
    ];
    for (cfg, secret, field) in cases {
        let (code, out) = check(cfg, &[]);
        assert_eq!(code, Some(2), "{cfg}: {out}");
        assert!(out.contains(field), "{cfg}: the field is not named: {out}");
        assert!(
            !out.contains(secret),
            "{cfg}: check printed the secret: {out}"
        );
    }
}

// 13. 429 from every candidate is a 429 with the smallest Retry-After.
#[tokio::test]
async fn rate_limited_everywhere_is_a_429_with_the_smallest_retry_after() {
    let a = Mock::start(&["--model", "m", "--fail-status", "429", "--retry-after", "7"]);
    let b = Mock::start(&["--model", "m", "--fail-status", "429", "--retry-after", "3"]);
    let cfg = format!(
        "{}\n[routing]\nstrategy = \"cloud-first\"\n{}{}",
        server(""),
        provider("a", &a, &["m"], ""),
        provider("b", &b, &["m"], "")
    );
    let gw = Gateway::start(&cfg).await;
    let (s, h, body) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(h["retry-after"], "3");
    assert_eq!(error_of(&body)["code"], "upstream_rate_limited");
    assert_eq!(a.requests().await + b.requests().await, 2);
}

/// The connection cap itself (vendored pingora-core patch): slots free on drop, and
/// refusals being written at once are bounded.
#[test]
fn connection_cap_admits_refuses_and_bounds_refusals() {
    use pingora_core::services::connection_limit::{Admission, ConnectionLimit, MAX_REFUSING};
    let l = ConnectionLimit::new(2, bytes::Bytes::from_static(b"no"));
    let a = l.admit();
    let b = l.admit();
    assert!(matches!(a, Admission::Serve(_)) && matches!(b, Admission::Serve(_)));
    assert_eq!(l.open(), 2);
    let mut refusing = Vec::new();
    for _ in 0..MAX_REFUSING {
        let r = l.admit();
        assert!(matches!(&r, Admission::Refuse(p) if p.refusal() == "no"));
        refusing.push(r);
    }
    assert!(
        matches!(l.admit(), Admission::Drop),
        "too many refusals at once"
    );
    assert_eq!(l.refused(), MAX_REFUSING as u64 + 1);
    refusing.clear();
    assert!(matches!(l.admit(), Admission::Refuse(_)));
    drop(a);
    assert_eq!(l.open(), 1);
    assert!(matches!(l.admit(), Admission::Serve(_)));
}

/// An upstream that answers each request on a connection and then closes it a moment
/// later without saying so (as an upstream with a short keep-alive timeout does).
/// Returns its address, the count of requests it received and of connections it closed.
/// Takes one whole request (the header, then Content-Length bytes) off the front of
/// `buf`, returning its header; `None` while it has not all arrived.
fn take_request(buf: &mut Vec<u8>) -> Option<String> {
    let h = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..h]).to_string();
    let len: usize =
        header_of(&head.to_ascii_lowercase(), "content-length").map_or(0, |v| v.parse().unwrap());
    if buf.len() < h + 4 + len {
        return None;
    }
    buf.drain(..h + 4 + len);
    Some(head)
}

async fn closing_upstream() -> (String, Counter, Counter) {
    use std::sync::atomic::Ordering;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let n = Counter::default();
    let closed = Counter::default();
    let count = n.clone();
    let closes = closed.clone();
    let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let serve = async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let count = count.clone();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // One request: the header, then Content-Length bytes.
            let done = loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break false,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
                if take_request(&mut buf).is_some() {
                    break true;
                }
            };
            if !done {
                continue;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(s);
            closes.fetch_add(1, Ordering::SeqCst);
        }
    };
    // The test's runtime ends the task with the test.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve);
    (a, n, closed)
}

type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A pooled connection the upstream closed is noticed when it is taken from the pool:
/// the next request goes out on a fresh connection, once, with no error and no resend.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    use std::sync::atomic::Ordering;
    let (up, n, closed) = closing_upstream().await;
    let gw = Gateway::start(&behind(&up, "")).await;
    for i in 1..=3u64 {
        let (s, _, body) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
        assert_eq!(s, 200, "request {i}: {body}");
        assert_eq!(
            n.load(Ordering::SeqCst),
            i,
            "request {i} reached the upstream twice"
        );
        // The upstream closes the connection the gateway pooled.
        let closed = closed.clone();
        wait_for("the upstream to close", Duration::from_secs(5), || {
            let closed = closed.clone();
            async move { (closed.load(Ordering::SeqCst) >= i).then_some(()) }
        })
        .await;
    }
    assert_eq!(
        gw.metric_sum("switchyard_upstream_resends_total", &[])
            .await,
        0.0
    );
    assert_eq!(
        gw.metric_sum("switchyard_upstream_errors_total", &[]).await,
        0.0,
        "a dead pooled connection surfaced as an error"
    );
}

/// A keep-alive upstream: serves any number of requests per connection; counts the
/// connections it accepted and those the gateway closed.
async fn keepalive_upstream() -> (String, Counter, Counter) {
    use std::sync::atomic::Ordering;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let accepted = Counter::default();
    let closed = Counter::default();
    let (acc, clo) = (accepted.clone(), closed.clone());
    let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let serve = async move {
        while let Ok((mut s, _)) = l.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let clo = clo.clone();
            let conn = async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            clo.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    while take_request(&mut buf).is_some() {
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            };
            // The test's runtime ends the task with the test.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(conn);
        }
    };
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve);
    (a, accepted, closed)
}

/// Pooled upstream connections are reused while fresh, and one idle past
/// `upstream_idle_timeout_secs` is closed by the gateway (no task watches each idle
/// connection: one reaper closes them); the next request opens a new one.
#[tokio::test]
async fn pooled_connections_are_reused_and_closed_when_idle_too_long() {
    use std::sync::atomic::Ordering;
    let (up, accepted, closed) = keepalive_upstream().await;
    let cfg = format!(
        "{}\n[[providers]]\nname = \"up\"\nkind = \"openai-compatible\"\nbase_url = \"http://{up}/v1\"\napi_key = \"sk-test-up\"\nmodels = [\"m\"]\n",
        server("upstream_idle_timeout_secs = 1")
    );
    let gw = Gateway::start(&cfg).await;
    for i in 1..=5 {
        let (s, _, body) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
        assert_eq!(s, 200, "request {i}: {body}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "five sequential requests on one pooled connection"
    );
    assert_eq!(closed.load(Ordering::SeqCst), 0);
    wait_for(
        "the idle connection to be closed by the gateway",
        Duration::from_secs(10),
        || {
            let closed = closed.clone();
            async move { (closed.load(Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;
    let (s, _, body) = post(&gw.url("/v1/chat/completions"), &chat("m", false)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a new connection after the old one was closed"
    );
    assert_eq!(
        gw.metric_sum("switchyard_upstream_errors_total", &[]).await,
        0.0
    );
}

/// An upstream that records each request head and answers with an oddly spelled header.
async fn case_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let serve = async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(k) = s.read(&mut chunk).await {
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
                let Some(head) = take_request(&mut buf) else {
                    continue;
                };
                seen.lock().unwrap().push(head);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nX-UpStream-ODD: y\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        }
    };
    // The test's runtime ends the task with the test.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve);
    (a, heads)
}

/// Hop-by-hop fields (and the ones `Connection` nominates) never reach the upstream;
/// every other field does, with or without hop-by-hop fields beside it.
#[tokio::test]
async fn hop_by_hop_fields_stop_at_the_gateway() {
    let (up, heads) = case_upstream().await;
    let gw = Gateway::start(&behind(&up, "")).await;
    let body = serde_json::to_vec(&chat("m", false)).unwrap();
    let hop = "Connection: keep-alive, X-Hop-Nominated\r\nX-Hop-Nominated: n\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2stcHJveHk=\r\nTE: trailers\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    // All together, each alone (without a `Connection` field beside it, the one that
    // alone sends a request down the full strip), and none.
    let alone = [
        "Keep-Alive: timeout=5\r\n",
        "Proxy-Connection: keep-alive\r\n",
        "Proxy-Authorization: Basic c2stcHJveHk=\r\n",
        "TE: trailers\r\n",
        "Trailer: x-checksum\r\n",
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    ];
    for extra in [hop].into_iter().chain(alone).chain([""]) {
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Kept: k\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let raw = exchange_head(&gw, &req, &body).await;
        assert!(
            raw.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
        let head = heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.contains("x-kept: k"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        for gone in [
            "x-hop-nominated",
            "keep-alive:",
            "proxy-connection",
            "proxy-authorization",
            "\r\nte:",
            "\r\ntrailer:",
            "http2-settings",
        ] {
            assert!(!head.contains(gone), "{gone} reached the upstream: {head}");
        }
    }
}

/// A gateway configuration with one OpenAI-compatible provider at `up` serving `m`.
fn behind(up: &str, server_extra: &str) -> String {
    format!(
        "{}\n[[providers]]\nname = \"up\"\nkind = \"openai-compatible\"\nbase_url = \"http://{up}/v1\"\napi_key = \"sk-test-up\"\nmodels = [\"m\"]\n",
        server(server_extra)
    )
}

/// Sends `head` and `body` on a new connection; the response head as read, byte by byte.
async fn exchange_head(gw: &Gateway, head: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr(gw)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "{head}");
        raw.push(byte[0]);
    }
    raw
}

/// A request body's length is read the one way HTTP allows: identical repeats agree,
/// anything else (conflicting values, a sign, a non-digit) is a 400 before any upstream.
#[tokio::test]
async fn content_length_is_framed_strictly() {
    let (up, heads) = case_upstream().await;
    let gw = Gateway::start(&behind(&up, "")).await;
    let body = serde_json::to_vec(&chat("m", false)).unwrap();
    let n = body.len();
    let cases = [
        (format!("Content-Length: {n}\r\n"), "200"),
        (
            format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"),
            "200",
        ),
        (format!("Content-Length: {n}, {n}\r\n"), "200"),
        (format!("Content-Length: 0{n}\r\n"), "200"),
        (
            format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1),
            "400",
        ),
        (format!("Content-Length: {n}, {}\r\n", n - 1), "400"),
        (format!("Content-Length: +{n}\r\n"), "400"),
        (format!("Content-Length: {n}x\r\n"), "400"),
        (
            "Content-Length: 99999999999999999999999\r\n".to_string(),
            "400",
        ),
    ];
    for (cl, want) in cases {
        let before = heads.lock().unwrap().len();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{cl}\r\n"
        );
        let raw = exchange_head(&gw, &req, &body).await;
        let head = String::from_utf8_lossy(&raw).to_string();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {want}")),
            "{cl:?}: {head}"
        );
        let forwarded = heads.lock().unwrap().len() - before;
        assert_eq!(forwarded, usize::from(want == "200"), "{cl:?}");
    }
}

/// Header names go out in the canonical case by default (one header map per message);
/// `preserve_header_case = true` keeps each side's spelling.
#[tokio::test]
async fn header_name_case_is_canonical_unless_asked_to_preserve() {
    for preserve in [false, true] {
        let (up, heads) = case_upstream().await;
        let gw = Gateway::start(&behind(&up, &format!("preserve_header_case = {preserve}"))).await;
        let body = serde_json::to_vec(&chat("m", false)).unwrap();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-CuStOm-Trace: t1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        // The response head as the client read it, byte by byte.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1);
            raw.push(byte[0]);
        }
        let head = heads.lock().unwrap().last().cloned().unwrap();
        let resp_head = String::from_utf8_lossy(&raw).to_string();
        if preserve {
            assert!(head.contains("X-CuStOm-Trace: t1"), "{head}");
            assert!(resp_head.contains("X-UpStream-ODD: y"), "{resp_head}");
        } else {
            assert!(head.contains("x-custom-trace: t1"), "{head}");
            assert!(resp_head.contains("x-upstream-odd: y"), "{resp_head}");
            assert!(
                resp_head.contains("Content-Type: application/json"),
                "{resp_head}"
            );
        }
    }
}

/// An upstream that streams one SSE event and then holds the stream open; counts the
/// connections it saw closed by the gateway.
async fn holding_stream_upstream() -> (String, Counter) {
    use std::sync::atomic::Ordering;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let closed = Counter::default();
    let clo = closed.clone();
    let serve = async move {
        while let Ok((mut s, _)) = l.accept().await {
            let clo = clo.clone();
            let conn = async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while take_request(&mut buf).is_none() {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let event = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                    event.len()
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Nothing more is sent: only the gateway closing ends this read.
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                clo.fetch_add(1, Ordering::SeqCst);
            };
            // The test's runtime ends the task with the test.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(conn);
        }
    };
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve);
    (a, closed)
}

/// A client that goes away in the middle of a stream is noticed while the gateway waits
/// on the upstream (the request body was read whole, so nothing else reads the client's
/// socket): the upstream request is closed at once, not left to the 600 s read timeout.
#[tokio::test]
async fn a_client_that_leaves_mid_stream_ends_the_upstream_request() {
    use std::sync::atomic::Ordering;
    let (up, closed) = holding_stream_upstream().await;
    let gw = Gateway::start(&behind(&up, "")).await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(&chat_req("m", true, "")).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"hi\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the first event in time")
            .unwrap();
        assert!(n > 0, "closed before the first event");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(closed.load(Ordering::SeqCst), 0);
    drop(s);
    wait_for(
        "the gateway to close the upstream request",
        Duration::from_secs(5),
        || {
            let closed = closed.clone();
            async move { (closed.load(Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;
}

/// An upstream that sends its answer in three writes a moment apart (head, then the body
/// in two halves) on a keep-alive connection.
async fn trickling_upstream(body: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let serve = async move {
        while let Ok((mut s, _)) = l.accept().await {
            let conn = async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while take_request(&mut buf).is_none() {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let (first, second) = body.split_at(body.len() / 2);
                    for part in [head.as_str(), first, second] {
                        if s.write_all(part.as_bytes()).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            };
            // The test's runtime ends the task with the test.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(conn);
        }
    };
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve);
    a
}

/// An answer that arrives from the upstream in pieces reaches the client whole and
/// byte-exact, and the client's connection carries the next request.
#[tokio::test]
async fn an_answer_arriving_in_pieces_is_relayed_whole() {
    let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"in three pieces"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}"#;
    let up = trickling_upstream(body).await;
    let gw = Gateway::start(&behind(&up, "")).await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    for i in 0..3 {
        s.write_all(&chat_req("m", false, "")).await.unwrap();
        let (status, head, got) = read_response(&mut s).await;
        assert_eq!(status, 200, "request {i}: {head}");
        assert_eq!(String::from_utf8_lossy(&got), body, "request {i}");
    }
}
