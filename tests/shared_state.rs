//! What the multi-tenant path asks Redis: rate limits taken in slices and a mirror of
//! the response cache, so that a steady load needs almost no round trips, against a
//! real `redis-server` and real gateways. The calls are the gateway's own counter
//! (`switchyard_redis_calls_total`); the limits' promise is checked across replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-test-slices-01";

fn config(mock: &Mock, redis: &RedisServer, rpm: u64, tpm: u64) -> String {
    format!(
        "[local]\nkind = \"vllm\"\nurl = \"{}\"\n\n[routing]\nstrategy = \"local-first\"\nauto_detect = false\n\n[auth]\nenabled = true\n\n[[auth.keys]]\nkey = \"{KEY}\"\ntenant = \"s\"\nrequests_per_minute = {rpm}\ntokens_per_minute = {tpm}\n\n[redis]\nurl = \"{}\"\nrefresh_interval = \"200ms\"\n",
        mock.url(),
        redis.url()
    )
}

fn chat(content: &str) -> Value {
    json!({"model": "m", "temperature": 0, "max_tokens": 16,
           "messages": [{"role": "user", "content": content}]})
}

async fn send(c: &reqwest::Client, gw: &Gateway, body: &Value) -> (u16, Option<String>) {
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string());
    r.bytes().await.unwrap();
    (status, cache)
}

async fn calls(gw: &Gateway, call: &str) -> f64 {
    gw.metric_sum("switchyard_redis_calls_total", &[("call", call)])
        .await
}

/// The calls a request may make on its way in (not the store of an answer behind it).
async fn request_path_calls(gw: &Gateway) -> f64 {
    calls(gw, "lease").await + calls(gw, "lookup").await + calls(gw, "give_back").await
}

async fn synced(gw: &Gateway) {
    wait_for(
        "the cache mirror to sync",
        Duration::from_secs(10),
        || async {
            (gw.metric_sum("switchyard_cache_mirror_synced", &[]).await == 1.0).then_some(())
        },
    )
    .await;
}

/// Waits until Redis holds `n` cache entries.
async fn written(redis: &RedisServer, n: usize) {
    let con = redis.con().await;
    wait_for("the answers to be written", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("switchyard:cache:*")
                .query_async(&mut con)
                .await
                .unwrap();
            (keys.len() == n).then_some(())
        }
    })
    .await;
}

/// Sends `n` requests from 8 concurrent clients; `body(i)` makes the i-th.
async fn load(
    gw: &Gateway,
    n: usize,
    body: impl Fn(usize) -> Value + Sync,
) -> Vec<(u16, Option<String>)> {
    let c = reqwest::Client::new();
    let body = &body;
    let per = n / 8;
    let clients = (0..8).map(|w| {
        let c = c.clone();
        async move {
            let mut out = Vec::new();
            for i in 0..per {
                out.push(send(&c, gw, &body(w * per + i)).await);
            }
            out
        }
    });
    futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_steady_load_needs_almost_no_redis_calls() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let gw = Gateway::start(&config(&mock, &redis, 1_000_000, 1_000_000_000)).await;
    gw.wait_model("m").await;
    synced(&gw).await;

    // All misses: the limits come from slices, the lookups from the mirror; each
    // answer is stored once, behind its response.
    let before = request_path_calls(&gw).await;
    let seed = std::process::id();
    let out = load(&gw, 400, |i| chat(&format!("miss {seed} {i}"))).await;
    assert!(
        out.iter()
            .all(|(s, c)| *s == 200 && c.as_deref() == Some("MISS")),
        "{out:?}"
    );
    let misses = request_path_calls(&gw).await - before;
    assert!(
        misses <= 0.2 * 400.0,
        "{misses} calls on the way in for 400 misses"
    );
    let stored = gw
        .wait_metric("switchyard_cache_total", &[("result", "stored")], 400.0)
        .await;
    assert_eq!(stored, 400.0);
    written(&redis, 400).await;
    let stores = calls(&gw, "store").await;
    assert!(
        (1.0..=400.0).contains(&stores),
        "answers are written in batches behind the responses: {stores} calls"
    );

    // All hits: answered from the answers this replica holds.
    let before = request_path_calls(&gw).await;
    let out = load(&gw, 400, |i| chat(&format!("miss {seed} {}", i % 50))).await;
    assert!(
        out.iter()
            .all(|(s, c)| *s == 200 && c.as_deref() == Some("HIT")),
        "{out:?}"
    );
    let hits = request_path_calls(&gw).await - before;
    assert!(hits <= 0.2 * 400.0, "{hits} calls for 400 hits");
    assert_eq!(calls(&gw, "store").await, stores, "hits store nothing");
    assert_eq!(mock.requests().await, 400, "hits reach no upstream");
}

#[tokio::test]
async fn answers_stored_within_a_write_window_share_a_store_call() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let cfg = config(&mock, &redis, 0, 0) + "write_window = \"100ms\"\n";
    let gw = Gateway::start(&cfg).await;
    gw.wait_model("m").await;
    synced(&gw).await;

    let before = calls(&gw, "store").await;
    let started = Instant::now();
    let seed = std::process::id();
    let out = load(&gw, 400, |i| chat(&format!("window {seed} {i}"))).await;
    assert!(out.iter().all(|(s, _)| *s == 200), "{out:?}");
    written(&redis, 400).await;
    // Every store call is preceded by a window, so there are at most as many calls as
    // windows fit in the time it took (plus one: the first), whatever the rate; one
    // more if a window held more than one call's worth (256 answers).
    let windows = (started.elapsed().as_millis() / 100) as f64 + 1.0;
    let stores = calls(&gw, "store").await - before;
    assert!(
        stores <= windows + 1.0,
        "{stores} store calls for 400 answers in {windows} windows of 100 ms"
    );
}

#[tokio::test]
async fn a_replica_learns_what_another_stored() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let cfg = config(&mock, &redis, 0, 0);
    let a = Gateway::start(&cfg).await;
    let b = Gateway::start(&cfg).await;
    a.wait_model("m").await;
    b.wait_model("m").await;
    synced(&a).await;
    synced(&b).await;
    let c = reqwest::Client::new();

    assert_eq!(
        send(&c, &a, &chat("shared")).await,
        (200, Some("MISS".into()))
    );
    a.wait_metric("switchyard_cache_total", &[("result", "stored")], 1.0)
        .await;
    wait_for("b to hear of the key", Duration::from_secs(10), || async {
        (b.metric_sum("switchyard_cache_mirror_keys", &[]).await >= 1.0).then_some(())
    })
    .await;
    let lookups = calls(&b, "lookup").await;
    assert_eq!(
        send(&c, &b, &chat("shared")).await,
        (200, Some("HIT".into()))
    );
    assert_eq!(
        send(&c, &b, &chat("shared")).await,
        (200, Some("HIT".into()))
    );
    assert_eq!(
        calls(&b, "lookup").await - lookups,
        1.0,
        "one fetch of the answer, then it is held"
    );
    assert_eq!(
        send(&c, &b, &chat("b only")).await,
        (200, Some("MISS".into()))
    );
    assert_eq!(
        calls(&b, "lookup").await - lookups,
        1.0,
        "a key nobody stored is known absent without a call"
    );
    assert_eq!(mock.requests().await, 2);

    // A replica that starts later finds the keys stored before it subscribed.
    let late = Gateway::start(&cfg).await;
    late.wait_model("m").await;
    synced(&late).await;
    assert_eq!(
        send(&c, &late, &chat("shared")).await,
        (200, Some("HIT".into()))
    );
    assert_eq!(
        send(&c, &late, &chat("late only")).await,
        (200, Some("MISS".into()))
    );
    assert_eq!(calls(&late, "lookup").await, 1.0);
    assert_eq!(mock.requests().await, 3);
}

#[tokio::test]
async fn slices_keep_the_shared_limit_across_replicas_and_idle_ones_go_back() {
    let redis = RedisServer::start().await;
    let mock = Mock::start(&["--model", "m"]);
    let rpm = 240u64;
    let cfg = config(&mock, &redis, rpm, 0);
    let a = Gateway::start(&cfg).await;
    let b = Gateway::start(&cfg).await;
    a.wait_model("m").await;
    b.wait_model("m").await;
    let started = Instant::now();
    // The bucket refills at 4 requests per second while the test runs.
    let refill = |t: Instant| {
        (t.duration_since(started).as_secs_f64() * rpm as f64 / 60.0).ceil() as usize + 1
    };

    // 400 requests for a limit of 240, alternating between the replicas.
    let body = |i: usize| json!({"model": "m", "temperature": 0.7, "messages": [{"role": "user", "content": format!("n{i}")}]});
    let (ra, rb) = tokio::join!(load(&a, 200, body), load(&b, 200, body));
    let ok = |v: &[(u16, Option<String>)]| v.iter().filter(|(s, _)| *s == 200).count();
    let admitted = ok(&ra) + ok(&rb);
    assert!(
        admitted <= rpm as usize + refill(Instant::now()),
        "{admitted} admitted for a limit of {rpm}"
    );
    assert!(ra.iter().chain(&rb).all(|(s, _)| *s == 200 || *s == 429));
    assert!(
        calls(&a, "lease").await + calls(&b, "lease").await < admitted as f64,
        "slices: fewer calls than requests"
    );

    // Idle slices go back; then the rest of the limit is there for the other replica.
    wait_for(
        "idle slices to go back",
        Duration::from_secs(10),
        || async {
            let held = a.metric_sum("switchyard_ratelimit_slices_held", &[]).await
                + b.metric_sum("switchyard_ratelimit_slices_held", &[]).await;
            (held == 0.0).then_some(())
        },
    )
    .await;
    let c = reqwest::Client::new();
    let mut more = 0;
    while send(&c, &b, &body(10_000 + more)).await.0 == 200 {
        more += 1;
        assert!(more < 1000, "the limit holds");
    }
    let total = admitted + more;
    assert!(
        total >= rpm as usize,
        "the whole limit was granted: {admitted} + {more}"
    );
    assert!(
        total <= rpm as usize + refill(Instant::now()),
        "never more than the limit: {admitted} + {more}"
    );
}
