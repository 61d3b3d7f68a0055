//! Tenancy and shared state: API keys, rate limits, quotas, the response cache with
//! coalescing, live configuration, in-flight counts, and the Redis outage policy. Every
//! behaviour runs against both stores (in-memory, and a real `redis-server` started on
//! a free port) with the same test body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret-for-tests-0123";

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn memory() {
                $body(StoreKind::Memory).await
            }
            #[tokio::test]
            async fn redis() {
                let r = RedisServer::start().await;
                $body(StoreKind::Redis(&r)).await
            }
        }
    };
}

fn local(mock: &Mock) -> String {
    format!("[local]\nkind = \"vllm\"\nurl = \"{}\"\n\n[routing]\nstrategy = \"local-first\"\nauto_detect = false\n", mock.url())
}

async fn start(cfg: &str, store: &StoreKind<'_>) -> Gateway {
    Gateway::start_with_env(
        &format!("{cfg}{}", store.section("")),
        &[("SWITCHYARD_ADMIN_SECRET", ADMIN)],
    )
    .await
}

async fn send(gw: &Gateway, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(body);
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    r.send().await.unwrap()
}

fn cached_chat(content: &str) -> Value {
    json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": content}], "max_tokens": 16})
}

async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, gw.admin_url(path))
        .header("x-admin-secret", ADMIN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------

async fn auth_body(store: StoreKind<'_>) {
    let mock = Mock::start(&["--model", "m", "--model", "secret-model"]);
    let cfg = format!(
        "{}\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"sk-test-alpha-0001\"\ntenant = \"alpha\"\nmodels = [\"m\"]\n",
        local(&mock)
    );
    let gw = start(&cfg, &store).await;
    gw.wait_model("m").await;

    let r = send(&gw, None, &chat("m", false)).await;
    assert_eq!(r.status(), 401, "{}", store.name());
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "invalid_api_key"
    );
    let r = send(&gw, Some("sk-wrong-0000000"), &chat("m", false)).await;
    assert_eq!(r.status(), 401);
    let r = send(&gw, Some("sk-test-alpha-0001"), &chat("m", false)).await;
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "sk-test-alpha-0001")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "X-API-Key works too");
    let r = send(
        &gw,
        Some("sk-test-alpha-0001"),
        &chat("secret-model", false),
    )
    .await;
    assert_eq!(r.status(), 403);
    let e = error_of(&r.text().await.unwrap());
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("model_not_allowed"), Some("model"))
    );

    // Keys through the admin API: shown once, stored hashed, revocable.
    let r = reqwest::Client::new()
        .post(gw.admin_url("/admin/keys"))
        .json(&json!({"tenant": "beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin API needs the secret");
    let r = reqwest::Client::new()
        .get(gw.admin_url("/admin/keys"))
        .header("x-admin-secret", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, created) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"tenant": "beta", "requests_per_minute": 100})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-sy-"));
    let r = send(&gw, Some(&key), &chat("m", false)).await;
    assert_eq!(r.status(), 200);
    let (_, list) = admin(&gw, reqwest::Method::GET, "/admin/keys", None).await;
    let listed = list.to_string();
    assert!(listed.contains("\"beta\"") && listed.contains(&id));
    assert!(
        !listed.contains(&key) && !listed.contains("sk-test-alpha-0001"),
        "keys are never listed"
    );
    if let StoreKind::Redis(redis) = &store {
        let mut c = redis.con().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(keys.iter().any(|k| k.starts_with("switchyard:keys:")));
        let dump: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        assert!(
            !format!("{keys:?}{dump:?}").contains(&key),
            "keys are stored hashed"
        );
    }
    let (s, _) = admin(
        &gw,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let r = send(&gw, Some(&key), &chat("m", false)).await;
    assert_eq!(r.status(), 401, "revoked");

    let out = gw.proc.output();
    for secret in [&key, "sk-test-alpha-0001", ADMIN, "sk-wrong-0000000"] {
        assert!(!out.contains(secret), "a key or secret reached the logs");
    }
    assert!(!gw.metrics().await.contains("sk-"));
}
both!(auth, auth_body);

// ---------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------

async fn rate_limit_body(store: StoreKind<'_>) {
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"sk-test-limited-1\"\ntenant = \"limited\"\nrequests_per_minute = 3\n\n[[auth.keys]]\nkey = \"sk-test-tokens-1\"\ntenant = \"tokens\"\ntokens_per_minute = 100\n",
        local(&mock)
    );
    let gw = start(&cfg, &store).await;
    gw.wait_model("m").await;

    for i in 0..3u64 {
        let r = send(&gw, Some("sk-test-limited-1"), &chat("m", false)).await;
        assert_eq!(r.status(), 200, "request {i} ({})", store.name());
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            h["x-ratelimit-remaining-requests"],
            (2 - i).to_string().as_str()
        );
        assert!(h.contains_key("x-ratelimit-reset-requests"));
    }
    let r = send(&gw, Some("sk-test-limited-1"), &chat("m", false)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "one request refills in 20 s, got {retry}"
    );
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "rate_limit_exceeded"
    );
    assert_eq!(
        mock.requests().await,
        3,
        "the refused request was not forwarded"
    );

    // Tokens: 60 reserved per request out of 100/min; each answer really uses
    // 16 completion + a few prompt tokens, and the settlement gives the rest back.
    let body =
        json!({"model": "m", "max_tokens": 60, "messages": [{"role": "user", "content": "x"}]});
    let r = send(&gw, Some("sk-test-tokens-1"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "40");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    r.text().await.unwrap();
    wait_for(
        "the first request to be settled",
        Duration::from_secs(5),
        || {
            let found = gw
                .proc
                .stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&id));
            async move { found.then_some(()) }
        },
    )
    .await;
    let r = send(&gw, Some("sk-test-tokens-1"), &body).await;
    assert_eq!(
        r.status(),
        200,
        "without the refund only 40 tokens would be left"
    );
    r.text().await.unwrap();
    let mut refused = false;
    for _ in 0..3 {
        let r = send(&gw, Some("sk-test-tokens-1"), &body).await;
        if r.status() == 429 {
            let left: u64 = r.headers()["x-ratelimit-remaining-tokens"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(left < 60, "{left}");
            refused = true;
            break;
        }
    }
    assert!(refused, "the token bucket ran out");
    assert!(
        gw.metric_sum("switchyard_rate_limited_total", &[("limit", "tokens")])
            .await
            >= 1.0
    );
}
both!(rate_limits, rate_limit_body);

#[tokio::test]
async fn two_replicas_share_one_limit_exactly() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"sk-test-shared-1\"\ntenant = \"shared\"\nrequests_per_minute = 10\n",
        local(&mock)
    );
    let store = StoreKind::Redis(&redis);
    let a = start(&cfg, &store).await;
    let b = start(&cfg, &store).await;
    a.wait_model("m").await;
    b.wait_model("m").await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let url = if i % 2 == 0 {
            a.url("/v1/chat/completions")
        } else {
            b.url("/v1/chat/completions")
        };
        tasks.push(async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", "Bearer sk-test-shared-1")
                .json(&json!({"model": "m", "temperature": 0.7, "messages": [{"role": "user", "content": format!("n{i}")}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let codes = futures_util::future::join_all(tasks).await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 20, "{codes:?}");
}

// ---------------------------------------------------------------------------------
// Quotas
// ---------------------------------------------------------------------------------

async fn quota_body(store: StoreKind<'_>) {
    let a = Mock::start(&["--model", "m"]);
    let b = Mock::start(&["--model", "m"]);
    let providers = format!(
        "[routing]\nstrategy = \"cloud-first\"\nauto_detect = false\n\n[[providers]]\nname = \"first\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"m\"]\n\n[[providers]]\nname = \"second\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"m\"]\n\n[[quotas]]\nprovider = \"first\"\nrequests_per_day = 2\n\n[[quotas]]\nprovider = \"second\"\nrequests_per_day = 1\n",
        a.url(),
        b.url()
    );
    let gw = start(&providers, &store).await;
    let mut served = Vec::new();
    for _ in 0..3 {
        let r = send(&gw, None, &chat("m", false)).await;
        assert_eq!(r.status(), 200, "{}", store.name());
        served.push(
            r.headers()["x-switchyard-provider"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        served,
        ["first", "first", "second"],
        "an exhausted provider drops out"
    );
    let r = send(&gw, None, &chat("m", false)).await;
    assert_eq!(r.status(), 429);
    let e = error_of(&r.text().await.unwrap());
    assert_eq!(e["code"], "quota_exhausted");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("first failed (daily quota exhausted)"),
        "{e}"
    );
    let (s, q) = admin(&gw, reqwest::Method::GET, "/admin/quotas", None).await;
    assert_eq!(s, 200);
    assert_eq!(q["first"]["requests"], 2, "{q}");
    assert_eq!(q["first"]["exhausted"], true);
    assert_eq!(q["second"]["requests"], 1);
    assert_eq!(a.requests().await + b.requests().await, 3);
}
both!(quotas, quota_body);

// ---------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------

fn sse_content(text: &str) -> (String, bool, bool) {
    let mut content = String::new();
    let mut done = false;
    let mut usage = false;
    for line in text.lines() {
        let Some(d) = line.strip_prefix("data: ") else {
            continue;
        };
        if d == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(d).expect("every event is JSON");
        if v["choices"].as_array().is_some_and(Vec::is_empty) {
            usage = true;
        }
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    (content, done, usage)
}

async fn cache_body(store: StoreKind<'_>) {
    let mock = Mock::start(&["--model", "m"]);
    let gw = start(&local(&mock), &store).await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/chat/completions");
    let c = reqwest::Client::new();

    let r = c
        .post(&url)
        .json(&cached_chat("cache me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS", "{}", store.name());
    let first: Value = r.json().await.unwrap();
    let stored = gw
        .wait_metric("switchyard_cache_total", &[("result", "stored")], 1.0)
        .await;
    assert_eq!(stored, 1.0);
    // Same request, other key order, extra metadata and user: a hit.
    let same = json!({"messages": [{"content": "cache me", "role": "user"}], "max_tokens": 16, "model": "m",
                      "temperature": 0, "metadata": {"trace": "x"}, "user": "u-1"});
    let r = c.post(&url).json(&same).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    let second: Value = r.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(mock.requests().await, 1);

    // A streamed request from the non-streamed entry: a proper SSE stream.
    let mut streamed = same.clone();
    streamed["stream"] = json!(true);
    let r = c.post(&url).json(&streamed).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let (content, done, usage) = sse_content(&r.text().await.unwrap());
    assert!(done && !usage);
    assert_eq!(
        content,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(mock.requests().await, 1);

    // Stream first, then whole from the streamed entry.
    let mut s2 = cached_chat("stream first");
    s2["stream"] = json!(true);
    let r = c.post(&url).json(&s2).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    let (live, _, usage) = sse_content(&r.text().await.unwrap());
    assert!(
        !usage,
        "the gateway's usage chunk is not shown to a client that did not ask"
    );
    gw.wait_metric("switchyard_cache_total", &[("result", "stored")], 2.0)
        .await;
    let r = c.post(&url).json(&s2).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    let (replayed, done, _) = sse_content(&r.text().await.unwrap());
    assert!(done);
    assert_eq!(replayed, live);
    let mut asked = s2.clone();
    asked["stream_options"] = json!({"include_usage": true});
    let r = c.post(&url).json(&asked).send().await.unwrap();
    let (_, _, usage) = sse_content(&r.text().await.unwrap());
    assert!(usage, "a client that asks for usage gets it from the entry");
    let whole: Value = c
        .post(&url)
        .json(&cached_chat("stream first"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["content"], live.as_str());
    assert_eq!(mock.requests().await, 2);

    // no-cache skips the lookup; no-store skips storing; errors are never stored.
    let r = c
        .post(&url)
        .header("cache-control", "no-cache")
        .json(&cached_chat("cache me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(mock.requests().await, 3);
    c.post(&url)
        .header("cache-control", "no-store")
        .json(&cached_chat("never stored"))
        .send()
        .await
        .unwrap();
    c.post(&url)
        .json(&cached_chat("never stored"))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.requests().await, 5);
    let r = c
        .post(&url)
        .header("x-mock-status", "500")
        .json(&cached_chat("fails once"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = c
        .post(&url)
        .json(&cached_chat("fails once"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    // Not cacheable: temperature above 0.
    let warm =
        json!({"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": "w"}]});
    let r = c.post(&url).json(&warm).send().await.unwrap();
    assert!(r.headers().get("x-cache").is_none());
}
both!(cache, cache_body);

async fn coalescing_body(store: StoreKind<'_>) {
    let mock = Mock::start(&[
        "--model",
        "m",
        "--ttft-ms",
        "300",
        "--itl-ms",
        "20",
        "--tokens",
        "10",
    ]);
    let gw = start(&local(&mock), &store).await;
    gw.wait_model("m").await;
    let url = gw.url("/v1/chat/completions");
    let body = cached_chat("coalesce me");
    let tasks = (0..20).map(|_| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    });
    let answers = futures_util::future::join_all(tasks).await;
    assert_eq!(
        mock.requests().await,
        1,
        "20 identical requests, one upstream call ({})",
        store.name()
    );
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "identical answers"
    );

    // Streaming followers receive the stream as it arrives.
    let mut s = cached_chat("coalesce a stream");
    s["stream"] = json!(true);
    let tasks = (0..5).map(|_| {
        let (url, s) = (url.clone(), s.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&s)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["content-type"], "text/event-stream");
            let mut stream = r.bytes_stream();
            let mut text = String::new();
            let mut first_at = None;
            while let Some(c) = stream.next().await {
                let c = c.unwrap();
                if first_at.is_none() && String::from_utf8_lossy(&c).contains("content") {
                    first_at = Some(Instant::now());
                }
                text.push_str(&String::from_utf8_lossy(&c));
            }
            (text, first_at.unwrap(), Instant::now())
        }
    });
    let streams = futures_util::future::join_all(tasks).await;
    assert_eq!(
        mock.requests().await,
        2,
        "one upstream call for five streams"
    );
    let reference = sse_content(&streams[0].0);
    for (text, first, end) in &streams {
        let got = sse_content(text);
        assert_eq!(got, reference);
        assert!(got.1, "ends with [DONE]");
        assert!(
            end.duration_since(*first) >= Duration::from_millis(100),
            "tokens arrived over time, not all at the end"
        );
    }
}
both!(coalescing, coalescing_body);

// ---------------------------------------------------------------------------------
// Live configuration
// ---------------------------------------------------------------------------------

async fn live_config_body(store: StoreKind<'_>) {
    let local_mock = Mock::start(&["--model", "m", "--itl-ms", "100", "--tokens", "40"]);
    let cloud = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}\n[[providers]]\nname = \"cloud\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"m\"]\n",
        local(&local_mock),
        cloud.url()
    );
    let gw = start(&cfg, &store).await;
    gw.wait_model("m").await;
    let provider = |gw: &Gateway| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("x-mock-tokens", "1")
                .json(&chat("m", false))
                .send()
                .await
                .unwrap();
            r.headers()["x-switchyard-provider"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(provider(&gw).await, "local");

    // A stream in progress on the local backend...
    let mut stream = gw.open_stream("m").await;

    // ...then the backend is set to draining.
    let set_at = Instant::now();
    match &store {
        StoreKind::Redis(r) => {
            let mut c = r.con().await;
            let _: () = redis::cmd("SET")
                .arg("switchyard:config:inference.state")
                .arg("draining")
                .query_async(&mut c)
                .await
                .unwrap();
        }
        StoreKind::Memory => {
            let (s, v) = admin(
                &gw,
                reqwest::Method::PUT,
                "/admin/config/inference.state",
                Some(json!("draining")),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        }
    }
    wait_for(
        "new requests to move to the cloud",
        Duration::from_secs(5),
        || {
            let p = provider(&gw);
            async move { (p.await == "cloud").then_some(()) }
        },
    )
    .await;
    assert!(
        set_at.elapsed() < Duration::from_secs(3),
        "within a few refresh intervals (200 ms each; slack for a loaded machine)"
    );
    let inflight = gw.admin_json("/health/inflight").await;
    assert_eq!(
        inflight["local"], 1,
        "the local stream is still running: {inflight}"
    );
    let mut rest = String::new();
    while let Some(c) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    assert!(
        rest.contains("[DONE]"),
        "the stream already on the local backend completed"
    );

    // An invalid value is refused and counted; the last good configuration stays.
    match &store {
        StoreKind::Redis(r) => {
            let mut c = r.con().await;
            let _: () = redis::cmd("SET")
                .arg("switchyard:config:inference.state")
                .arg("sideways")
                .query_async(&mut c)
                .await
                .unwrap();
            gw.wait_metric("switchyard_runtime_config_invalid_total", &[], 1.0)
                .await;
        }
        StoreKind::Memory => {
            let (s, _) = admin(
                &gw,
                reqwest::Method::PUT,
                "/admin/config/inference.state",
                Some(json!("sideways")),
            )
            .await;
            assert_eq!(s, 400);
        }
    }
    assert_eq!(provider(&gw).await, "cloud");

    // Back to ready; then the strategy changed at run time.
    match &store {
        StoreKind::Redis(r) => {
            let mut c = r.con().await;
            let _: () = redis::cmd("SET")
                .arg("switchyard:config:inference.state")
                .arg("ready")
                .query_async(&mut c)
                .await
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg("switchyard:config:routing.strategy")
                .arg("cloud-only")
                .query_async(&mut c)
                .await
                .unwrap();
        }
        StoreKind::Memory => {
            admin(
                &gw,
                reqwest::Method::PUT,
                "/admin/config/inference.state",
                Some(json!("ready")),
            )
            .await;
            admin(
                &gw,
                reqwest::Method::PUT,
                "/admin/config/routing.strategy",
                Some(json!("cloud-only")),
            )
            .await;
        }
    }
    wait_for("cloud-only to apply", Duration::from_secs(5), || {
        let gw = &gw;
        async move {
            let (_, view) = admin(gw, reqwest::Method::GET, "/admin/config", None).await;
            (view["effective"]["routing.strategy"] == "cloud-only"
                && view["effective"]["local"]["state"] == "ready")
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        provider(&gw).await,
        "cloud",
        "cloud-only while the local backend is ready"
    );
}
both!(live_config, live_config_body);

async fn backend_switch_body(store: StoreKind<'_>) {
    let old = Mock::start(&["--model", "old-model"]);
    let new = Mock::start(&["--model", "new-model"]);
    let gw = start(&local(&old), &store).await;
    gw.wait_model("old-model").await;
    let url = new.url();
    match &store {
        StoreKind::Redis(r) => {
            let mut c = r.con().await;
            let _: () = redis::cmd("SET")
                .arg("switchyard:config:inference.url")
                .arg(&url)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        StoreKind::Memory => {
            let (s, v) = admin(
                &gw,
                reqwest::Method::PUT,
                "/admin/config/inference.url",
                Some(json!(url)),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        }
    }
    gw.wait_model("new-model").await;
    let (s, _, t) = post(&gw.url("/v1/chat/completions"), &chat("new-model", false)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(new.requests().await, 1);
}
both!(backend_switch, backend_switch_body);

// ---------------------------------------------------------------------------------
// In-flight counts across replicas
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn inflight_is_published_for_the_cluster() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m", "--itl-ms", "200", "--tokens", "20"]);
    let store = StoreKind::Redis(&redis);
    let a = start(&local(&mock), &store).await;
    let b = start(&local(&mock), &store).await;
    a.wait_model("m").await;
    let stream = a.open_stream("m").await;
    let v = wait_for(
        "replica b to see a's stream",
        Duration::from_secs(5),
        || {
            let url = b.admin_url("/health/inflight");
            async move {
                let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                (v["cluster"]["local"] == 1).then_some(v)
            }
        },
    )
    .await;
    assert_eq!(v["local"], 0, "b itself serves nothing: {v}");
    assert_eq!(
        v["cluster"]["replicas"].as_object().unwrap().len(),
        2,
        "{v}"
    );
    drop(stream);
}

// ---------------------------------------------------------------------------------
// Redis outage
// ---------------------------------------------------------------------------------

async fn outage(policy: &str) {
    let mut redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"sk-test-outage-1\"\ntenant = \"o\"\nrequests_per_minute = 1000\n\n[redis]\nurl = \"{}\"\nrefresh_interval = \"200ms\"\non_outage = \"{policy}\"\ntimeout = \"200ms\"\n",
        local(&mock),
        redis.url()
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    wait_for("redis up", Duration::from_secs(5), || {
        let gw = &gw;
        async move { (gw.metric_sum("switchyard_redis_up", &[]).await == 1.0).then_some(()) }
    })
    .await;
    let r = send(&gw, Some("sk-test-outage-1"), &cached_chat("before")).await;
    assert_eq!(r.status(), 200);

    redis.kill();
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = send(
            &gw,
            Some("sk-test-outage-1"),
            &cached_chat(&format!("during {i}")),
        )
        .await;
        codes.push(r.status().as_u16());
    }
    wait_for(
        "the gauge to say redis is down",
        Duration::from_secs(5),
        || {
            let gw = &gw;
            async move { (gw.metric_sum("switchyard_redis_up", &[]).await == 0.0).then_some(()) }
        },
    )
    .await;
    let r = send(&gw, Some("sk-test-outage-1"), &chat("m", false)).await;
    let during = r.status().as_u16();
    match policy {
        "fail-open" => {
            assert_eq!(during, 200);
            assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
        }
        _ => {
            assert_eq!(during, 503);
            assert_eq!(
                error_of(&r.text().await.unwrap())["code"],
                "state_unavailable"
            );
        }
    }
    assert!(gw.proc.output().contains("redis is unreachable"));

    redis.restart().await;
    wait_for(
        "recovery without a restart",
        Duration::from_secs(10),
        || {
            let gw = &gw;
            async move { (gw.metric_sum("switchyard_redis_up", &[]).await == 1.0).then_some(()) }
        },
    )
    .await;
    let r = send(&gw, Some("sk-test-outage-1"), &cached_chat("after")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    gw.wait_metric("switchyard_cache_total", &[("result", "stored")], 2.0)
        .await;
    // The first calls after a restart may still meet a connection the restart broke
    // (the store is then marked down again for a moment): the cache works again once
    // every connection has reconnected.
    wait_for("the cache to work again", Duration::from_secs(10), || {
        let gw = &gw;
        async move {
            let r = send(gw, Some("sk-test-outage-1"), &cached_chat("after")).await;
            (r.headers()["x-cache"] == "HIT").then_some(())
        }
    })
    .await;
    assert!(
        !gw.proc.output().contains(&redis.url()),
        "the redis URL is not logged"
    );
}

#[tokio::test]
async fn redis_outage_fail_open() {
    outage("fail-open").await;
}

#[tokio::test]
async fn redis_outage_fail_closed() {
    outage("fail-closed").await;
}

// ---------------------------------------------------------------------------------
// Bad-key flood
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn bad_key_flood_barely_touches_redis() {
    let redis = RedisServer::start_with(Some("redis-pass-for-tests-1")).await;
    let mock = Mock::start(&["--model", "m"]);
    let cfg = format!(
        "{}\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"sk-test-good-0001\"\ntenant = \"good\"\n",
        local(&mock)
    );
    // A long refresh interval: the only background traffic is the in-flight count,
    // two commands a second.
    let cfg = format!(
        "{cfg}\n[redis]\nurl = \"{}\"\nrefresh_interval = \"60s\"\n",
        redis.url()
    );
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    let before = redis.commands_processed().await;
    let started = Instant::now();
    let url = gw.url("/v1/chat/completions");
    let client = reqwest::Client::new();
    let mut bad = 0;
    let keys: Vec<String> = (0..10_000).map(|i| format!("sk-bad-{i:08}")).collect();
    for chunk in keys.chunks(100) {
        let tasks = chunk.iter().map(|k| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .post(url)
                    .header("authorization", format!("Bearer {k}"))
                    .json(&chat("m", false))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        bad += futures_util::future::join_all(tasks)
            .await
            .iter()
            .filter(|c| **c == 401)
            .count();
    }
    let calls = redis.commands_processed().await - before;
    assert_eq!(bad, 10_000);
    assert_eq!(mock.requests().await, 0);
    let background = (started.elapsed().as_secs_f64() + 1.0) * 2.0;
    assert!(
        (calls as f64) < 100.0 + background,
        "{calls} redis commands for 10,000 bad keys in {:?}",
        started.elapsed()
    );
    let out = gw.proc.output();
    assert!(
        !out.contains("redis-pass-for-tests-1"),
        "the redis password is not logged"
    );
    assert!(!out.contains("sk-test-good-0001"));
}
