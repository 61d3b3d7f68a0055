//! The console in a real headless Chromium, driven over WebDriver (chromedriver),
//! against the real gateway with the control plane on the Docker engine; and the
//! session cookie, CSRF and sign-out at the API level.
//!
//! Screenshots of each page go to `$CARGO_TARGET_DIR/console-screenshots/` (and to
//! `$SWITCHYARD_SCREENSHOTS` when set, e.g. `docs/console`). Without chromedriver or
//! a Docker engine the browser test says so loudly and passes without running.
// Test tasks end with the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::docker::{docker, image};
use common::{Gateway, Mock};
use serde_json::{json, Value};

const SECRET: &str = "console-test-secret";

/// A chromedriver process and one browser session.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    client: reqwest::Client,
    shots: Vec<std::path::PathBuf>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the WebDriver session first: chromedriver then quits the browser, which a
        // killed chromedriver would leave running. Blocking and raw, as `drop` cannot
        // await; bounded by a timeout.
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Option<Self> {
        let driver = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|d| Command::new(d).arg("--version").output().is_ok());
        let Some(driver) = driver else {
            eprintln!("\n*** NO CHROMEDRIVER: the console browser test is SKIPPED (apt-get install chromium chromium-driver) ***\n");
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        common::wait_for("chromedriver", Duration::from_secs(20), || {
            let c = client.clone();
            let u = format!("{base}/status");
            async move {
                let v: Value = c.get(u).send().await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r).map(|_| ())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())]}}}});
        let r: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Some(Self {
            driver: child,
            base,
            session,
            client,
            shots: Vec::new(),
        })
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `script` (a JS expression) is truthy; returns its value.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .js(&format!(
                    "try {{ return ({script}); }} catch (e) {{ return null; }}"
                ))
                .await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn shot(&mut self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let mut dirs = vec![std::path::PathBuf::from(
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
        )
        .join("console-screenshots")];
        if let Ok(d) = std::env::var("SWITCHYARD_SCREENSHOTS") {
            dirs.push(d.into());
        }
        for d in dirs {
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(format!("{name}.png"));
            std::fs::write(&p, &png).unwrap();
            self.shots.push(p);
        }
        assert!(png.len() > 5000, "a blank screenshot of {name}");
    }
}

fn control_config(scope: &str, img: &str, cloud: &Mock) -> String {
    format!(
        r#"
[local]
kind = "vllm"

[routing]
strategy = "local-first"

[auth]
admin_secret_env = "CONSOLE_SECRET"

[[providers]]
name = "cloud"
kind = "openai-compatible"
base_url = "{cloud}/v1"
api_key = "sk-cloud"
models = ["m-*"]

[control]
enabled = true
instance = "{scope}"
health_interval = "500ms"
start_timeout = "30s"
drain_timeout = "5s"
stop_grace = "3s"

[control.backends.vllm]
image = "{img}"
container_name = "sy-{scope}-vllm"
args = ["--listen", "0.0.0.0:8000", "--model", "{{model}}", "--itl-ms", "5", "--startup-ms", "700"]
port = 8000
gpus = "none"
"#,
        cloud = cloud.url()
    )
}

fn cleanup(scope: &str) {
    let (_, ids) = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=switchyard.instance={scope}"),
    ]);
    for id in ids.split_whitespace() {
        docker(&["rm", "-f", id]);
    }
}

#[tokio::test]
async fn the_console_runs_the_backend_in_a_real_browser() {
    let Some(img) = image() else { return };
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let scope = format!("ui{}", std::process::id());
    cleanup(&scope);
    let cloud = Mock::start(&["--model", "m-1", "--model", "m-2"]);
    let gw = Gateway::start_with_env(
        &control_config(&scope, img, &cloud),
        &[("CONSOLE_SECRET", SECRET)],
    )
    .await;
    let ui = gw.admin_url("/ui/");

    // Sign-in; a wrong secret is refused in words.
    b.go(&ui).await;
    b.until(
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    )
    .await;
    b.shot("01-sign-in").await;
    b.type_in("#secret", "wrong").await;
    b.click("#signin-form button").await;
    let err = b
        .until(
            "the refusal",
            "document.getElementById('signin-error').textContent",
        )
        .await;
    assert!(
        err.as_str().unwrap().contains("not the admin secret"),
        "{err}"
    );
    b.type_in("#secret", SECRET).await;
    b.click("#signin-form button").await;

    // First sign-in: the wizard, its six steps, to a running backend.
    b.until(
        "the wizard",
        "document.getElementById('wizard-title').textContent.includes('Welcome')",
    )
    .await;
    b.shot("02-wizard-welcome").await;
    b.click("#wizard-next").await;
    b.until(
        "hardware detected",
        "document.getElementById('hw').textContent.includes('CPU cores')",
    )
    .await;
    b.shot("03-wizard-hardware").await;
    b.click("#wizard-next").await;
    b.until(
        "the engines",
        "document.querySelector('input[name=engine][value=vllm]')",
    )
    .await;
    b.click("input[name=engine][value=vllm]").await;
    b.shot("04-wizard-engine").await;
    b.click("#wizard-next").await;
    b.until("the model step", "document.getElementById('wizard-model')")
        .await;
    b.type_in("#wizard-model", "m-1").await;
    b.shot("05-wizard-model").await;
    b.click("#wizard-next").await;
    b.until(
        "the download step",
        "document.getElementById('wizard-progress')",
    )
    .await;
    b.shot("06-wizard-download").await;
    b.until(
        "ready",
        "document.getElementById('wizard-title').textContent.includes('Ready')",
    )
    .await;
    b.click("#wizard-finish").await;
    b.until(
        "the overview",
        "location.hash === '#/overview' && document.getElementById('status-card')",
    )
    .await;
    let s: Value = reqwest::Client::new()
        .get(gw.admin_url("/admin/inference"))
        .header("x-admin-secret", SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s["state"].as_str(), s["model"].as_str()),
        (Some("ready"), Some("m-1")),
        "{s}"
    );
    // Traffic for the charts, until they have a few points of it.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let traffic = tokio::spawn({
        let url = gw.url("/v1/chat/completions");
        async move {
            while !*stopped.borrow_and_update() {
                common::post(&url, &common::chat("m-1", true)).await;
                common::post(&url, &common::chat("m-1", false)).await;
            }
        }
    });
    b.until(
        "charts with data",
        "(() => { const p = document.querySelector('#charts svg polyline'); return p && p.getAttribute('points').split(' ').length >= 4 && !document.querySelector('#charts svg').getAttribute('aria-label').endsWith(' 0.0'); })()",
    )
    .await;
    stop.send(true).unwrap();
    traffic.await.unwrap();
    b.shot("07-overview").await;

    // The wizard does not come back once completed.
    b.go(&ui).await;
    b.until(
        "the overview again",
        "location.hash === '#/overview' && document.getElementById('status-card')",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('wizard-title')").await,
        Value::Null
    );

    // Models: switch the model and watch the progress reach ready.
    b.go(&format!("{ui}#/models")).await;
    b.until("the models page", "document.getElementById('switch-model')")
        .await;
    b.until(
        "the recommendation banner",
        "document.getElementById('rec-banner')",
    )
    .await;
    b.type_in("#switch-model", "m-2").await;
    b.click("#do-switch").await;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = b.js("const e = document.querySelector('#status-card [data-state]'); return e ? e.dataset.state + '|' + document.getElementById('backend-name').textContent : null").await;
        if let Some(st) = st.as_str() {
            let (state, name) = st.split_once('|').unwrap();
            seen.insert(state.to_string());
            if state == "ready" && name.contains("m-2") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the switch never showed ready; saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter()
            .any(|s| ["draining", "stopping", "pulling", "starting"].contains(&s.as_str())),
        "no progress shown: {seen:?}"
    );
    b.shot("08-models").await;

    // Settings: a key shown once, listed, revoked.
    b.go(&format!("{ui}#/settings")).await;
    b.until("the key form", "document.getElementById('key-tenant')")
        .await;
    b.type_in("#key-tenant", "alice").await;
    b.click("#key-create").await;
    let key = b.until("the new key", "document.getElementById('key-value') && document.getElementById('key-value').textContent").await;
    assert!(key.as_str().unwrap().len() > 20, "{key}");
    b.until(
        "alice listed",
        "document.querySelector('#keys-table tr[data-tenant=alice]')",
    )
    .await;
    b.shot("09-settings").await;
    b.go(&format!("{ui}#/overview")).await;
    b.go(&format!("{ui}#/settings")).await;
    b.until(
        "the settings again",
        "document.querySelector('#keys-table tr[data-tenant=alice]')",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('key-value')").await,
        Value::Null,
        "the key is shown once"
    );
    b.click("#keys-table tr[data-tenant=alice] button").await;
    b.until("alice revoked", "document.getElementById('keys-table') && !document.querySelector('#keys-table tr[data-tenant=alice]')").await;

    // Phone width.
    b.cmd("POST", "/window/rect", json!({"width": 390, "height": 844}))
        .await;
    b.go(&format!("{ui}#/models")).await;
    b.until("the models page", "document.getElementById('status-card')")
        .await;
    b.shot("10-models-phone").await;
    b.cmd(
        "POST",
        "/window/rect",
        json!({"width": 1280, "height": 1000}),
    )
    .await;

    // Sign out.
    b.click("#signout").await;
    b.until(
        "the sign-in form again",
        "!document.getElementById('signin').hidden",
    )
    .await;
    assert!(b.shots.len() >= 10);
    drop(gw);
    cleanup(&scope);
}

async fn session_cookie(gw: &Gateway) -> (String, String) {
    let r = reqwest::Client::new()
        .post(gw.admin_url("/ui/api/session"))
        .json(&json!({"secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Max-Age="),
        "{cookie}"
    );
    let v: Value = r.json().await.unwrap();
    (
        cookie.split(';').next().unwrap().to_string(),
        v["csrf"].as_str().unwrap().to_string(),
    )
}

/// One admin call with a session cookie and (optionally) a CSRF token: (status, headers, JSON).
async fn call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new()
        .request(method, gw.admin_url(path))
        .header("cookie", cookie);
    if let Some(t) = csrf {
        r = r.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sessions_cookies_csrf_and_sign_out() {
    use reqwest::Method;
    let gw = Gateway::start_with_env(
        "[auth]\nadmin_secret_env = \"CONSOLE_SECRET\"\n",
        &[("CONSOLE_SECRET", SECRET)],
    )
    .await;
    // The page and its headers.
    let r = reqwest::get(gw.admin_url("/ui/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(html.contains("type=\"password\"") && !html.contains("<script>"));
    assert_eq!(
        reqwest::get(gw.admin_url("/ui/app.js"))
            .await
            .unwrap()
            .status(),
        200
    );
    // A wrong secret: 401, no cookie.
    let (code, headers, _) = call(
        &gw,
        Method::POST,
        "/ui/api/session",
        "",
        None,
        Some(json!({"secret": "nope"})),
    )
    .await;
    assert_eq!(code, 401);
    assert!(headers.get("set-cookie").is_none());
    let (cookie, csrf) = session_cookie(&gw).await;
    let csrf = csrf.as_str();
    // Reads with the cookie alone; writes need the CSRF token too.
    let (code, headers, _) = call(&gw, Method::GET, "/admin/keys", &cookie, None, None).await;
    assert_eq!(code, 200);
    assert_eq!(headers["cache-control"], "no-store");
    let key = || Some(json!({"tenant": "t1"}));
    let wrong = "0".repeat(64);
    for (token, want) in [(None, 403), (Some(wrong.as_str()), 403), (Some(csrf), 201)] {
        let (code, _, v) = call(&gw, Method::POST, "/admin/keys", &cookie, token, key()).await;
        assert_eq!(code, want, "CSRF token {token:?}: {v}");
    }
    // The session state gives the CSRF token back to the page (same origin only).
    let (_, _, v) = call(&gw, Method::GET, "/ui/api/session", &cookie, None, None).await;
    assert_eq!(
        (v["signed_in"].clone(), v["csrf"].clone()),
        (json!(true), json!(csrf))
    );
    assert_eq!(
        v["api_keys_required"], false,
        "the console warns that API keys are off"
    );
    // Sign out: the cookie no longer works.
    let (code, headers, _) = call(
        &gw,
        Method::DELETE,
        "/ui/api/session",
        &cookie,
        Some(csrf),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        call(&gw, Method::GET, "/admin/keys", &cookie, None, None)
            .await
            .0,
        401
    );
    // A forged cookie is nothing.
    let forged = format!("sy_session={}", "a".repeat(64));
    assert_eq!(
        call(&gw, Method::GET, "/admin/keys", &forged, None, None)
            .await
            .0,
        401
    );
    // History and the wizard state.
    let (cookie, csrf) = session_cookie(&gw).await;
    let csrf = Some(csrf.as_str());
    let (_, _, h) = call(&gw, Method::GET, "/admin/history", &cookie, None, None).await;
    assert_eq!(h["period_ms"], 2000);
    let (_, _, w) = call(&gw, Method::GET, "/admin/ui/wizard", &cookie, None, None).await;
    assert_eq!(w["completed"], false);
    let done = Some(json!({"completed": true, "step": 5}));
    assert_eq!(
        call(&gw, Method::PUT, "/admin/ui/wizard", &cookie, csrf, done)
            .await
            .0,
        200
    );
    let (_, _, w) = call(&gw, Method::GET, "/admin/ui/wizard", &cookie, None, None).await;
    assert_eq!(w["completed"], true);
    let bad = Some(json!({"completed": true, "step": 9}));
    assert_eq!(
        call(&gw, Method::PUT, "/admin/ui/wizard", &cookie, csrf, bad)
            .await
            .0,
        400
    );
    // Providers never show a key.
    let (_, _, p) = call(&gw, Method::GET, "/admin/providers", &cookie, None, None).await;
    assert!(!p.to_string().contains("sk-"), "{p}");
}
