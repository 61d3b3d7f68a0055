//! The control plane against the real Docker engine: the suite builds a FROM-scratch
//! image of the project's own `mock-llm` (which plays vLLM, SGLang and Ollama and their
//! faults) and lets the real gateway run it. Every test has its own instance label and
//! container names, and removes its containers when done.
//!
//! Without an engine these tests say so loudly and pass without running; where the
//! engine answers (as on CI) they run.
// Test tasks (load clients, a fake hub) end with the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::docker::{docker, image};
use common::{chat, post, wait_for, Gateway, Mock, RedisServer};
use serde_json::{json, Value};

const SECRET: &str = "adm-control-tests";

/// A test's containers: removed (by its instance label) when dropped.
struct Scope {
    instance: String,
}

impl Scope {
    fn new(name: &str) -> Self {
        let instance = format!("t{}-{name}", std::process::id());
        let s = Self { instance };
        s.cleanup();
        s
    }

    fn filter(&self) -> String {
        format!("label=switchyard.instance={}", self.instance)
    }

    fn containers(&self, all: bool) -> Vec<String> {
        let f = self.filter();
        let mut args = vec!["ps", "-q", "--filter", f.as_str()];
        if all {
            args.push("-a");
        }
        docker(&args)
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn name(&self, kind: &str) -> String {
        format!("sy-{}-{kind}", self.instance)
    }

    fn cleanup(&self) {
        for id in self.containers(true) {
            docker(&["rm", "-f", &id]);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A `[control]` section for `scope` with scaled-down timings; `extra_args` go to
/// every profile's mock-llm.
fn control_section(scope: &Scope, image: &str, drain: &str, extra_args: &str) -> String {
    let profile = |kind: &str, mode: &str| {
        format!(
            r#"
[control.backends.{kind}]
image = "{image}"
container_name = "{name}"
args = ["--listen", "0.0.0.0:8000", "--mode", "{mode}", "--model", "{{model}}", "--itl-ms", "5"{extra_args}]
port = 8000
health_path = "{health}"
gpus = "none"
"#,
            name = scope.name(kind),
            health = if kind == "ollama" { "/" } else { "/health" },
        )
    };
    format!(
        r#"
[control]
enabled = true
instance = "{instance}"
health_interval = "300ms"
failures_before_restart = 2
backoff = ["200ms", "400ms"]
start_timeout = "20s"
drain_timeout = "{drain}"
stop_grace = "3s"
vram_free_timeout = "1s"
{vllm}{sglang}{ollama}"#,
        instance = scope.instance,
        vllm = profile("vllm", "vllm"),
        sglang = profile("sglang", "sglang"),
        ollama = profile("ollama", "ollama"),
    )
}

fn cloud_section(cloud: &Mock) -> String {
    format!(
        r#"
[[providers]]
name = "cloud"
kind = "openai-compatible"
base_url = "{}/v1"
api_key = "sk-cloud"
models = ["m-*", "llama*", "qwen*"]
"#,
        cloud.url()
    )
}

async fn gateway(body: &str) -> Gateway {
    let config = format!(
        "[local]\nkind = \"vllm\"\n\n[routing]\nstrategy = \"local-first\"\n\n[auth]\nadmin_secret_env = \"CTL_SECRET\"\n{body}"
    );
    Gateway::start_with_env(&config, &[("CTL_SECRET", SECRET)]).await
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = c
        .request(method.parse().unwrap(), gw.admin_url(path))
        .header("x-admin-secret", SECRET);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn status(gw: &Gateway) -> Value {
    admin(gw, "GET", "/admin/inference", None).await.1
}

async fn wait_state(gw: &Gateway, state: &str, model: Option<&str>, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(gw).await;
        if s["state"] == state && model.is_none_or(|m| s["model"] == m) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {state} {model:?}: {s}\n{}",
            gw.proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn provider_of(gw: &Gateway, model: &str) -> (u16, String) {
    let (code, headers, _) = post(&gw.url("/v1/chat/completions"), &chat(model, false)).await;
    let p = headers
        .get("x-switchyard-provider")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (code, p)
}

async fn select(gw: &Gateway, backend: &str, model: &str) -> Value {
    let (code, s) = admin(
        gw,
        "POST",
        "/admin/inference/select",
        Some(json!({"backend": backend, "model": model})),
    )
    .await;
    assert_eq!(code, 202, "select answered {code}: {s}");
    s
}

#[tokio::test]
async fn start_ready_route_and_stop_leave_nothing() {
    let Some(img) = image() else { return };
    let scope = Scope::new("ready");
    let cloud = Mock::start(&["--model", "m-1"]);
    let gw = gateway(&(cloud_section(&cloud) + &control_section(&scope, img, "5s", ""))).await;
    assert_eq!(status(&gw).await["state"], "none");
    // Without the secret the API refuses.
    let r = reqwest::Client::new()
        .post(gw.admin_url("/admin/inference/select"))
        .json(&json!({"backend":"vllm","model":"m-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Before anything runs, the model is served by the cloud.
    assert_eq!(provider_of(&gw, "m-1").await, (200, "cloud".into()));
    let started = select(&gw, "vllm", "m-1").await;
    assert!(
        ["pulling", "starting"].contains(&started["state"].as_str().unwrap()),
        "{started}"
    );
    let s = wait_state(&gw, "ready", Some("m-1"), 60).await;
    assert_eq!(s["backend"], "vllm");
    assert!(s["container_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(s["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    // Routing starts at once.
    assert_eq!(provider_of(&gw, "m-1").await, (200, "local".into()));
    let ids = scope.containers(false);
    assert_eq!(ids.len(), 1);
    let (_, labels) = docker(&["inspect", "--format", "{{json .Config.Labels}}", &ids[0]]);
    let labels: Value = serde_json::from_str(labels.trim()).unwrap();
    assert_eq!(labels["switchyard.managed"], "true");
    assert_eq!(labels["switchyard.model"], "m-1");
    // Published on loopback only.
    let (_, ports) = docker(&["port", &ids[0]]);
    assert!(ports.contains("127.0.0.1:"), "{ports}");
    // Hardware as detected at start: this engine has no GPU runtime, and says so.
    let (code, hw) = admin(&gw, "GET", "/admin/hardware", None).await;
    assert_eq!(code, 200);
    assert_eq!(hw["docker_gpu_runtime"], false, "{hw}");
    assert!(hw["cpu_cores"].as_f64().unwrap() >= 1.0, "{hw}");
    assert!(hw["ram_mib"].as_u64().unwrap() > 0, "{hw}");
    assert_eq!(
        gw.metric_sum("switchyard_control_state", &[("state", "ready")])
            .await,
        1.0
    );
    assert!(
        gw.metric_sum("switchyard_control_start_seconds_count", &[])
            .await
            >= 1.0
    );
    // Selecting what runs changes nothing.
    let again = select(&gw, "vllm", "m-1").await;
    assert_eq!(again["state"], "ready");
    let (code, _) = admin(&gw, "POST", "/admin/inference/stop", None).await;
    assert_eq!(code, 202);
    wait_state(&gw, "none", None, 30).await;
    assert!(
        scope.containers(true).is_empty(),
        "a container of ours is left after stop"
    );
    assert_eq!(provider_of(&gw, "m-1").await, (200, "cloud".into()));
    let logs = gw.proc.output();
    assert!(
        logs.contains("control: ready -> draining"),
        "a log line per transition"
    );
}

#[tokio::test]
async fn start_timeout_is_an_error_with_the_cloud_serving_then_retry() {
    let Some(img) = image() else { return };
    let scope = Scope::new("timeout");
    let cloud = Mock::start(&["--model", "m-1"]);
    let section = control_section(&scope, img, "5s", r#", "--startup-ms", "600000""#)
        .replace("start_timeout = \"20s\"", "start_timeout = \"1500ms\"");
    let gw = gateway(&(cloud_section(&cloud) + &section)).await;
    select(&gw, "vllm", "m-1").await;
    let s = wait_state(&gw, "error", None, 60).await;
    assert!(
        s["last_error"].as_str().unwrap().contains("start timeout"),
        "{s}"
    );
    assert!(s["last_health"].as_str().unwrap().contains("503"), "{s}");
    assert_eq!(
        provider_of(&gw, "m-1").await,
        (200, "cloud".into()),
        "cloud fallback keeps serving"
    );
    // The failed container is not left running.
    wait_for(
        "the timed-out container to go",
        Duration::from_secs(20),
        || async { scope.containers(false).is_empty().then_some(()) },
    )
    .await;
    let (code, s) = admin(&gw, "POST", "/admin/inference/retry", None).await;
    assert_eq!(code, 202, "{s}");
    assert_ne!(s["state"], "error");
    wait_state(&gw, "error", None, 60).await;
    // Retry is only for the error state.
    admin(&gw, "POST", "/admin/inference/stop", None).await;
    wait_state(&gw, "none", None, 30).await;
    let (code, e) = admin(&gw, "POST", "/admin/inference/retry", None).await;
    assert_eq!(code, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("retry"));
}

#[tokio::test]
async fn a_killed_container_is_detected_and_restarted() {
    let Some(img) = image() else { return };
    let scope = Scope::new("kill");
    let gw = gateway(&control_section(&scope, img, "5s", "")).await;
    select(&gw, "vllm", "m-1").await;
    let s = wait_state(&gw, "ready", Some("m-1"), 60).await;
    assert_eq!(s["restarts"], 0);
    let id = scope.containers(false).pop().unwrap();
    assert!(docker(&["kill", &id]).0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = status(&gw).await;
        if s["state"] == "ready" && s["restarts"] == 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after docker kill: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(s["container_id"].as_str().unwrap(), id);
    assert_eq!(scope.containers(false).len(), 1);
    assert!(
        gw.metric_sum("switchyard_control_restarts_total", &[])
            .await
            >= 1.0
    );
    assert!(gw.proc.output().contains("exit code 137") || gw.proc.output().contains("exited"));
}

#[tokio::test]
async fn failing_restarts_walk_the_backoff_to_error_and_retry_recovers() {
    let Some(img) = image() else { return };
    let scope = Scope::new("backoff");
    // Our own tag of the image, so removing it breaks only this test's restarts.
    let tag = format!("switchyard-test/mock-llm:{}", scope.instance);
    assert!(docker(&["tag", img, &tag]).0);
    let gw = gateway(&control_section(&scope, &tag, "5s", "")).await;
    select(&gw, "vllm", "m-1").await;
    wait_state(&gw, "ready", None, 60).await;
    // The image goes first, so every restart fails.
    assert!(docker(&["rmi", &tag]).0, "untag");
    let id = scope.containers(false).pop().unwrap();
    docker(&["kill", &id]);
    let s = wait_state(&gw, "error", None, 60).await;
    assert_eq!(s["restarts"], 1, "one restart series: {s}");
    assert!(
        s["last_error"].as_str().unwrap().contains("not present"),
        "{s}"
    );
    let logs = gw.proc.output();
    assert!(
        logs.contains("restart 2 in 200ms") && logs.contains("restart 3 in 400ms"),
        "the backoff steps:\n{logs}"
    );
    // Retry without the image: error again (the engine cannot pull), with why.
    admin(&gw, "POST", "/admin/inference/retry", None).await;
    let s = wait_state(&gw, "error", None, 60).await;
    assert!(s["last_error"].as_str().unwrap().contains("pull"), "{s}");
    // The image is back: retry recovers.
    assert!(docker(&["tag", img, &tag]).0);
    admin(&gw, "POST", "/admin/inference/retry", None).await;
    wait_state(&gw, "ready", Some("m-1"), 60).await;
    drop(gw);
    scope.cleanup();
    docker(&["rmi", &tag]);
}

/// Streams (and whole requests) in a loop until told to stop: (ok, failed, truncated).
async fn load(
    gw_url: String,
    models: Vec<&'static str>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, u64, u64, Vec<String>) {
    let client = reqwest::Client::new();
    let (mut ok, mut failed, mut truncated) = (0, 0, 0);
    let mut errors = Vec::new();
    let mut n = 0usize;
    while !*stop.borrow() {
        let model = models[n % models.len()];
        let stream = n % 3 != 0;
        n += 1;
        let r = client
            .post(format!("{gw_url}/v1/chat/completions"))
            .json(&chat(model, stream))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                let text = r.text().await.unwrap_or_default();
                let good = if stream {
                    text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\"")
                } else {
                    text.contains("\"choices\"")
                };
                if good {
                    ok += 1
                } else {
                    truncated += 1;
                    errors.push(
                        text.chars()
                            .rev()
                            .take(200)
                            .collect::<String>()
                            .chars()
                            .rev()
                            .collect(),
                    )
                }
            }
            Ok(r) => {
                failed += 1;
                errors.push(format!(
                    "{} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
            Err(e) => {
                failed += 1;
                errors.push(e.to_string());
            }
        }
    }
    (ok, failed, truncated, errors)
}

#[tokio::test]
async fn switching_model_and_backend_under_load_loses_nothing_with_a_fallback() {
    let Some(img) = image() else { return };
    let scope = Scope::new("switch");
    let cloud = Mock::start(&["--model", "m-1", "--model", "m-2", "--itl-ms", "5"]);
    let gw = gateway(&(cloud_section(&cloud) + &control_section(&scope, img, "5s", ""))).await;
    select(&gw, "vllm", "m-1").await;
    wait_state(&gw, "ready", Some("m-1"), 60).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(gw.proxy.clone(), vec!["m-1", "m-2"], rx.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, s) = admin(
        &gw,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "m-2"})),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(s["state"], "draining", "{s}");
    wait_state(&gw, "ready", Some("m-2"), 60).await;
    assert_eq!(provider_of(&gw, "m-2").await.1, "local");
    assert_eq!(provider_of(&gw, "m-1").await.1, "cloud");
    // Switch backend: vllm -> sglang.
    select(&gw, "sglang", "m-1").await;
    let s = wait_state(&gw, "ready", Some("m-1"), 60).await;
    assert_eq!(s["backend"], "sglang");
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    let (mut ok, mut failed, mut truncated, mut errors) = (0, 0, 0, Vec::new());
    for w in workers {
        let (o, f, t, e) = w.await.unwrap();
        ok += o;
        failed += f;
        truncated += t;
        errors.extend(e);
    }
    assert!(ok > 20, "too little load: {ok}");
    assert_eq!((failed, truncated), (0, 0), "lost requests: {errors:?}");
    assert_eq!(scope.containers(true).len(), 1, "one container of ours");
    let (_, names) = docker(&["ps", "--format", "{{.Names}}", "--filter", &scope.filter()]);
    assert_eq!(names.trim(), scope.name("sglang"));
    assert!(
        gw.metric_sum("switchyard_control_drain_seconds_count", &[])
            .await
            >= 2.0
    );
}

/// Starts a stream of `body` on the local backend and waits until it is in flight;
/// the task answers the whole response text (what arrived, if it was cut).
async fn stream_in_flight(gw: &Gateway, body: Value) -> tokio::task::JoinHandle<String> {
    let url = gw.url("/v1/chat/completions");
    let stream = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap_or_default()
    });
    wait_for("the stream in flight", Duration::from_secs(10), || async {
        (gw.admin_json("/health/inflight").await["local"].as_i64() == Some(1)).then_some(())
    })
    .await;
    stream
}

#[tokio::test]
async fn without_fallback_in_flight_finish_and_new_requests_get_a_prompt_503() {
    let Some(img) = image() else { return };
    let scope = Scope::new("nofallback");
    let section = control_section(&scope, img, "20s", "")
        .replace("\"--itl-ms\", \"5\"", "\"--itl-ms\", \"40\"");
    let gw = gateway(&section).await;
    select(&gw, "vllm", "m-1").await;
    wait_state(&gw, "ready", Some("m-1"), 60).await;
    // A stream of 16 tokens × 40 ms in flight across the switch.
    let stream = stream_in_flight(&gw, chat("m-1", true)).await;
    admin(
        &gw,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "m-2"})),
    )
    .await;
    let t0 = Instant::now();
    let (code, _, body) = post(&gw.url("/v1/chat/completions"), &chat("m-1", false)).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "not prompt: {:?}",
        t0.elapsed()
    );
    assert!(
        body.contains("draining") || body.contains("starting"),
        "says why: {body}"
    );
    let text = stream.await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the in-flight stream finished: {text}"
    );
    wait_state(&gw, "ready", Some("m-2"), 60).await;
    assert_eq!(
        gw.metric_sum("switchyard_control_drain_cut_total", &[])
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_stream_longer_than_the_drain_timeout_ends_with_an_error_event_and_is_counted() {
    let Some(img) = image() else { return };
    let scope = Scope::new("cut");
    let section = control_section(&scope, img, "1s", "").replace(
        "\"--itl-ms\", \"5\"",
        "\"--itl-ms\", \"100\", \"--tokens\", \"200\"",
    );
    let gw = gateway(&section).await;
    select(&gw, "vllm", "m-1").await;
    wait_state(&gw, "ready", Some("m-1"), 60).await;
    let mut body = chat("m-1", true);
    body["max_tokens"] = json!(200);
    let stream = stream_in_flight(&gw, body).await;
    admin(&gw, "POST", "/admin/inference/stop", None).await;
    let text = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream hung")
        .unwrap();
    assert!(
        text.contains("\"error\""),
        "ends with an error event: …{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(
        !text.trim_end().ends_with("data: [DONE]"),
        "not a clean end"
    );
    assert_eq!(
        gw.wait_metric("switchyard_control_drain_cut_total", &[], 1.0)
            .await,
        1.0
    );
    wait_state(&gw, "none", None, 30).await;
}

#[tokio::test]
async fn a_foreign_container_with_our_name_is_a_clear_error_and_left_alone() {
    let Some(img) = image() else { return };
    let scope = Scope::new("clash");
    let name = scope.name("vllm");
    let (ok, out) = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        img,
        "--listen",
        "0.0.0.0:8000",
    ]);
    assert!(ok, "{out}");
    let gw = gateway(&control_section(&scope, img, "5s", "")).await;
    select(&gw, "vllm", "m-1").await;
    let s = wait_state(&gw, "error", None, 60).await;
    assert!(
        s["last_error"].as_str().unwrap().contains("did not create"),
        "{s}"
    );
    let (_, running) = docker(&["inspect", "--format", "{{.State.Running}}", &name]);
    assert_eq!(
        running.trim(),
        "true",
        "the foreign container is left alone"
    );
    drop(gw);
    docker(&["rm", "-f", &name]);
}

#[tokio::test]
async fn ollama_switches_models_in_place_and_pulls_and_removes_models() {
    let Some(img) = image() else { return };
    let scope = Scope::new("ollama");
    let gw = gateway(&control_section(&scope, img, "5s", "")).await;
    select(&gw, "ollama", "llama3.2").await;
    let s = wait_state(&gw, "ready", Some("llama3.2"), 60).await;
    let id = s["container_id"].clone();
    assert_eq!(provider_of(&gw, "llama3.2").await, (200, "local".into()));
    // A model it does not have: pulled (streamed progress), loaded, no restart.
    admin(
        &gw,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "qwen3"})),
    )
    .await;
    let s = wait_state(&gw, "ready", Some("qwen3"), 60).await;
    assert_eq!(
        s["container_id"], id,
        "no restart for an Ollama model switch"
    );
    wait_for("qwen3 routed locally", Duration::from_secs(10), || async {
        (provider_of(&gw, "qwen3").await.1 == "local").then_some(())
    })
    .await;
    // Pull and remove.
    let (code, _) = admin(
        &gw,
        "POST",
        "/admin/inference/ollama/pull",
        Some(json!({"model": "phi3"})),
    )
    .await;
    assert_eq!(code, 202);
    wait_for("phi3 discovered", Duration::from_secs(20), || async {
        let m: Value = reqwest::get(gw.url("/v1/models"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        m.to_string().contains("phi3").then_some(())
    })
    .await;
    let (code, _) = admin(&gw, "DELETE", "/admin/inference/ollama/models/phi3", None).await;
    assert_eq!(code, 202);
    let (code, e) = admin(&gw, "DELETE", "/admin/inference/ollama/models/phi3", None).await;
    assert_eq!(code, 409, "{e}");
    // A model the registry does not have: an error with why.
    admin(
        &gw,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "missing-model"})),
    )
    .await;
    let s = wait_state(&gw, "error", None, 30).await;
    assert!(
        s["last_error"].as_str().unwrap().contains("does not exist"),
        "{s}"
    );
}

#[tokio::test]
async fn a_controller_killed_mid_switch_reconciles_without_orphans() {
    let Some(img) = image() else { return };
    let scope = Scope::new("reconcile");
    let redis = RedisServer::start().await;
    let section = control_section(&scope, img, "5s", r#", "--startup-ms", "1500""#);
    let config = format!(
        "\n[redis]\nurl = \"{}\"\nrefresh_interval = \"100ms\"\n{section}",
        redis.url()
    );
    let gw = gateway(&config).await;
    select(&gw, "vllm", "m-1").await;
    wait_state(&gw, "ready", Some("m-1"), 60).await;
    admin(
        &gw,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "m-2"})),
    )
    .await;
    wait_state(&gw, "starting", Some("m-2"), 60).await;
    let mut gw = gw;
    gw.proc.signal("KILL");
    gw.proc.wait_exit(Duration::from_secs(10)).await;
    let gw = gateway(&config).await;
    let s = wait_state(&gw, "ready", Some("m-2"), 60).await;
    assert!(
        gw.proc.output().contains("adopting") || s["restarts"] == 0,
        "{s}"
    );
    assert_eq!(scope.containers(true).len(), 1, "no orphan, no duplicate");
    assert_eq!(provider_of(&gw, "m-2").await.1, "local");
}

#[tokio::test]
async fn two_replicas_on_one_redis_only_the_lease_holder_acts() {
    let Some(img) = image() else { return };
    let scope = Scope::new("lease");
    let redis = RedisServer::start().await;
    let cloud = Mock::start(&["--model", "m-1", "--model", "m-2", "--itl-ms", "5"]);
    let config = format!(
        "\n[redis]\nurl = \"{}\"\nrefresh_interval = \"100ms\"\n{}\n{}",
        redis.url(),
        cloud_section(&cloud),
        control_section(&scope, img, "5s", r#", "--startup-ms", "500""#)
    );
    let a = gateway(&config).await;
    let b = gateway(&config).await;
    // The command goes to either; the holder carries it out.
    let (code, _) = admin(
        &b,
        "POST",
        "/admin/inference/select",
        Some(json!({"backend": "vllm", "model": "m-1"})),
    )
    .await;
    assert_eq!(code, 202);
    wait_state(&a, "ready", Some("m-1"), 60).await;
    wait_state(&b, "ready", Some("m-1"), 60).await;
    assert_eq!(
        scope.containers(true).len(),
        1,
        "only the holder created one"
    );
    for gw in [&a, &b] {
        wait_for(
            "local routing on both replicas",
            Duration::from_secs(10),
            || async { (provider_of(gw, "m-1").await.1 == "local").then_some(()) },
        )
        .await;
    }
    let leaders = a.metric_sum("switchyard_control_leader", &[]).await
        + b.metric_sum("switchyard_control_leader", &[]).await;
    assert_eq!(leaders, 1.0);
    // During the drain both stop routing local.
    admin(
        &a,
        "POST",
        "/admin/inference/switch-model",
        Some(json!({"model": "m-2"})),
    )
    .await;
    for gw in [&a, &b] {
        wait_for(
            "both replicas off local during the switch",
            Duration::from_secs(10),
            || async {
                let s = status(gw).await;
                (s["state"] != "ready" && provider_of(gw, "m-2").await.1 == "cloud").then_some(())
            },
        )
        .await;
    }
    wait_state(&a, "ready", Some("m-2"), 60).await;
    assert_eq!(scope.containers(true).len(), 1);
}

#[tokio::test]
async fn without_an_engine_the_gateway_serves_and_says_why() {
    let cloud = Mock::start(&["--model", "m-1"]);
    let gw = gateway(&format!(
        "{}\n[control]\nenabled = true\ndocker_host = \"unix:///nonexistent/docker.sock\"\n",
        cloud_section(&cloud)
    ))
    .await;
    let s = wait_for("the engine error", Duration::from_secs(10), || async {
        let s = status(&gw).await;
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no container engine"))
            .then_some(s)
    })
    .await;
    assert_eq!(s["state"], "error");
    let (code, e) = admin(
        &gw,
        "POST",
        "/admin/inference/select",
        Some(json!({"backend": "vllm", "model": "m-1"})),
    )
    .await;
    assert_eq!(code, 503, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/docker.sock"));
    assert_eq!(provider_of(&gw, "m-1").await, (200, "cloud".into()));
    // The seed's paths answer JSON; without a GPU gpu-stats says so.
    let (code, g) = admin(&gw, "GET", "/api/v1/recovery/hardware/gpu-stats", None).await;
    assert_eq!(code, 404);
    assert!(g["error"]["message"].as_str().unwrap().contains("no GPU"));
    let (code, r) = admin(
        &gw,
        "GET",
        "/recovery-api/api/v1/recovery/inference/recommendation",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(r["reason"].is_string(), "{r}");
    let (code, r) = admin(
        &gw,
        "GET",
        "/api/v1/recovery/inference/models/recommended",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(r["categories"]["small"].is_array(), "{r}");
}

#[tokio::test]
async fn the_embedded_default_has_the_controller_off() {
    let gw = Gateway::start_with_env("", &[("SWITCHYARD_ADMIN_SECRET", SECRET)]).await;
    let s = status(&gw).await;
    assert_eq!(s["enabled"], false);
    let (code, e) = admin(
        &gw,
        "POST",
        "/admin/inference/select",
        Some(json!({"backend": "vllm", "model": "x"})),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(e["error"]["code"], "control_disabled");
}

/// A stand-in for the Hugging Face Hub's `/api/models` (its wire format): answers
/// `body` to every request and records the request lines.
async fn fake_hub(body: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = c.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            s2.lock().unwrap().push(req);
            let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = c.write_all(resp.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn model_search_estimates_vram_and_names_an_unreachable_hub() {
    const HUB: &str = r#"[{"_id":"1","id":"meta-llama/Llama-3.1-8B-Instruct","downloads":100,"likes":5,"gated":"manual",
        "safetensors":{"parameters":{"BF16":8030261248},"total":8030261248},
        "config":{"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"hidden_size":4096}},
        {"_id":"2","id":"someone/no-sizes","downloads":1}]"#;
    let (hub, seen) = fake_hub(HUB).await;
    let gw = gateway(&format!("\n[control]\nhub_url = \"{hub}\"\n")).await;
    let (code, r) = admin(
        &gw,
        "GET",
        "/admin/inference/models/search?q=llama+3.1&limit=5",
        None,
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["data"][0]["id"], "meta-llama/Llama-3.1-8B-Instruct");
    let v = r["data"][0]["vram_gb"].as_f64().unwrap();
    assert!(
        (20.5..21.5).contains(&v),
        "weights ×1.2 + 2 GiB + 1 GiB of KV at 8192: {v}"
    );
    assert_eq!(
        r["data"][1]["vram_gb"],
        Value::Null,
        "no sizes, no made-up estimate"
    );
    let req = seen.lock().unwrap()[0].clone();
    assert!(
        req.contains("search=llama%203.1") && req.contains("expand[]=safetensors"),
        "{req}"
    );
    // Ollama: GGUF repos.
    let (code, _) = admin(
        &gw,
        "GET",
        "/api/v1/recovery/inference/models/search?q=qwen&backend=ollama",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(seen.lock().unwrap()[1].contains("filter=gguf"));
    let (code, e) = admin(&gw, "GET", "/admin/inference/models/search", None).await;
    assert_eq!(code, 400, "{e}");
    // Offline: a clear error naming the URL.
    let gw2 = gateway("\n[control]\nhub_url = \"http://127.0.0.1:9\"\n").await;
    let (code, e) = admin(&gw2, "GET", "/admin/inference/models/search?q=x", None).await;
    assert_eq!(code, 503);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:9"),
        "{e}"
    );
}
