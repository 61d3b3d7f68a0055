//! Test harness: starts the real `switchyard` and `mock-llm` binaries on port 0 and
//! waits on conditions with deadlines (never a bare sleep).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod docker;

pub const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");
pub const MOCK_LLM: &str = env!("CARGO_BIN_EXE_mock-llm");

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A child process killed on drop, with its output captured.
pub struct Proc {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(mut cmd: Command) -> (Self, std::sync::mpsc::Receiver<String>) {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let so = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                so.lock().unwrap().push(line);
            }
        });
        let se = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = String::new();
            loop {
                buf.clear();
                match r.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => se.lock().unwrap().push(buf.trim_end().to_string()),
                }
            }
        });
        (
            Self {
                child,
                stdout,
                stderr,
            },
            rx,
        )
    }

    /// Everything the process printed so far (stdout then stderr).
    pub fn output(&self) -> String {
        let mut s = self.stdout.lock().unwrap().join("\n");
        s.push('\n');
        s.push_str(&self.stderr.lock().unwrap().join("\n"));
        s
    }

    /// Sends a signal.
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running `mock-llm`.
pub struct Mock {
    pub proc: Proc,
    pub port: u16,
}

impl Mock {
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(MOCK_LLM);
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let (proc, rx) = Proc::spawn(cmd);
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("mock-llm printed no listening line");
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Self { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/stats", self.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn requests(&self) -> u64 {
        self.stats().await["requests"].as_u64().unwrap()
    }
}

/// A running `switchyard`.
pub struct Gateway {
    pub proc: Proc,
    pub proxy: String,
    pub admin: String,
    pub scheme: String,
    _config: tempfile::NamedTempFile,
}

impl Gateway {
    /// Starts the gateway with `config` (listen addresses are added when absent) and
    /// extra environment variables. The cloud credential variables of the test runner
    /// are removed so that auto-detection sees only what a test sets.
    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let mut text = config.to_string();
        if !text.contains("[server]") {
            text = format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{text}"
            );
        }
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let mut cmd = Command::new(SWITCHYARD);
        cmd.arg("--config").arg(file.path());
        for var in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "GROQ_API_KEY",
            "CEREBRAS_API_KEY",
            "OPENROUTER_API_KEY",
            "GITHUB_TOKEN",
            "SWITCHYARD_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (proc, rx) = Proc::spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        let announce: serde_json::Value = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["event"] == "listening" {
                            break v;
                        }
                    }
                }
                Err(_) => panic!("switchyard did not start:\n{}", proc.output()),
            }
        };
        let scheme = announce["scheme"].as_str().unwrap().to_string();
        let gw = Self {
            proxy: format!("{scheme}://{}", announce["proxy"].as_str().unwrap()),
            admin: format!("http://{}", announce["admin"].as_str().unwrap()),
            scheme,
            proc,
            _config: file,
        };
        let health = format!("{}/health", gw.admin);
        wait_for("the admin listener", Duration::from_secs(30), || {
            let h = health.clone();
            async move {
                reqwest::get(&h)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        if gw.scheme == "http" {
            let ph = format!("{}/health", gw.proxy);
            wait_for("the proxy listener", Duration::from_secs(30), || {
                let h = ph.clone();
                async move {
                    reqwest::get(&h)
                        .await
                        .ok()
                        .filter(|r| r.status() == 200)
                        .map(|_| ())
                }
            })
            .await;
        }
        gw
    }

    pub async fn start(config: &str) -> Self {
        Self::start_with_env(config, &[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    /// Starts a streamed chat for `model` and waits for its first chunk, so the request
    /// is in flight on the gateway when this returns. Returns the rest of the stream.
    pub async fn open_stream(
        &self,
        model: &str,
    ) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
        use futures_util::StreamExt;
        let resp = reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .json(&chat(model, true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        stream.next().await.unwrap().unwrap();
        stream
    }

    /// Waits until `/v1/models` lists `model`.
    pub async fn wait_model(&self, model: &str) {
        let url = self.url("/v1/models");
        let m = model.to_string();
        wait_for(
            &format!("model {model} to be discovered"),
            Duration::from_secs(20),
            || {
                let (url, m) = (url.clone(), m.clone());
                async move {
                    let v: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                    v["data"]
                        .as_array()?
                        .iter()
                        .any(|e| e["id"] == m.as_str())
                        .then_some(())
                }
            },
        )
        .await;
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.admin_url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sum of a metric's samples whose label set contains every `labels` pair.
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Gateway {
    /// Waits until a metric's sum reaches `want` (metrics are recorded just after the
    /// response is sent, so a client can see its answer first).
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric_sum(name, labels).await;
            if v >= want || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A chat request body.
pub fn chat(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
    })
}

/// Posts `body` to `url` and returns (status, headers, text).
pub async fn post(
    url: &str,
    body: &serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// Posts raw bytes.
pub async fn post_raw(url: &str, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The `error` object of an OpenAI-style error body (panics when it is not one).
pub fn error_of(text: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let e = v["error"].clone();
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error body lacks {k}: {text}");
    }
    e
}

/// Reads raw HTTP/1.1 responses from a TCP stream (for keep-alive checks).
pub fn read_http_response(s: &mut std::net::TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(n > 0, "connection closed while reading headers");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A real `redis-server` on a free port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    proc: Option<Proc>,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    pub async fn start_with(password: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self {
            port,
            password: password.map(str::to_string),
            proc: None,
        };
        s.restart().await;
        s
    }

    /// (Re)starts the server on the same port.
    pub async fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let (proc, _rx) = Proc::spawn(cmd);
        self.proc = Some(proc);
        let url = self.url();
        wait_for("redis-server to answer", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                let c = redis::Client::open(url).ok()?;
                let mut con = c.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .ok()
            }
        })
        .await;
    }

    /// Stops the server (the port is reused by `restart`).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub async fn con(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// `INFO stats` total_commands_processed.
    pub async fn commands_processed(&self) -> u64 {
        let mut c = self.con().await;
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut c)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Calls per command from `INFO commandstats` (`evalsha`, `get`, …).
    pub async fn commandstats(&self) -> std::collections::HashMap<String, u64> {
        let mut c = self.con().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_string(), calls.parse().ok()?))
            })
            .collect()
    }
}

/// Which shared-state store a gateway uses in a test.
pub enum StoreKind<'a> {
    Memory,
    Redis(&'a RedisServer),
}

impl StoreKind<'_> {
    /// The `[redis]` section (empty for memory), with a short refresh interval.
    pub fn section(&self, extra: &str) -> String {
        match self {
            StoreKind::Memory => String::new(),
            StoreKind::Redis(r) => format!(
                "\n[redis]\nurl = \"{}\"\nrefresh_interval = \"200ms\"\n{extra}\n",
                r.url()
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis(_) => "redis",
        }
    }
}

pub const FAKE_CLI: &str = env!("CARGO_BIN_EXE_fake-cli");

/// The events of an Anthropic SSE body (`event: <type>\ndata: <json>\n\n` frames), in
/// order. Panics when a frame is not of that shape or its `event:` name differs from
/// its data's `type`.
pub fn anthropic_events(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut name = None;
            let mut data = None;
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                } else {
                    panic!("unexpected SSE line {line:?} in {f:?}");
                }
            }
            let name = name.unwrap_or_else(|| panic!("frame without event: {f:?}"));
            let data = data.unwrap_or_else(|| panic!("frame without data: {f:?}"));
            let v: serde_json::Value =
                serde_json::from_str(&data).unwrap_or_else(|_| panic!("data not JSON: {data}"));
            assert_eq!(
                v["type"],
                name.as_str(),
                "event name and type differ in {f:?}"
            );
            v
        })
        .collect()
}

/// The JSON chunks of an OpenAI SSE body (`data: …` frames), without the final
/// `[DONE]`; the second value says whether `[DONE]` ended the body.
pub fn openai_chunks(body: &str) -> (Vec<serde_json::Value>, bool) {
    let mut done = false;
    let mut chunks = Vec::new();
    for f in body.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let d = f
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data frame: {f:?}"));
        assert!(!done, "a frame after [DONE]: {f:?}");
        if d == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(d).unwrap_or_else(|_| panic!("not JSON: {d}")));
        }
    }
    (chunks, done)
}

/// A running `fake-cli` driven over stdin and stdout (NDJSON), killed on drop.
pub struct FakeCli {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for FakeCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeCli {
    /// The flags a pool passes for stream-json in and out.
    pub const STREAM_JSON: [&'static str; 5] = [
        "--output-format",
        "stream-json",
        "--input-format",
        "stream-json",
        "--verbose",
    ];

    /// Starts `fake-cli` with the stream-json flags, then `args`, and `env` (the test
    /// runner's own `FAKE_CLI_*` variables are removed).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut all: Vec<&str> = Self::STREAM_JSON.to_vec();
        all.extend_from_slice(args);
        Self::start_raw(&all, env)
    }

    /// Starts `fake-cli` with exactly `args`.
    pub fn start_raw(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(FAKE_CLI);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("FAKE_CLI_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn fake-cli");
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let se = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                se.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// Writes one line to its stdin.
    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        std::io::Write::write_all(stdin, format!("{line}\n").as_bytes()).unwrap();
        std::io::Write::flush(stdin).unwrap();
    }

    /// Writes a JSON line.
    pub fn send(&mut self, v: &serde_json::Value) {
        self.send_raw(&v.to_string());
    }

    /// Writes a user message, as a pool does.
    pub fn send_user(&mut self, text: &str) {
        self.send(&serde_json::json!({"type": "user",
            "message": {"role": "user", "content": text},
            "parent_tool_use_id": null, "session_id": ""}));
    }

    /// Writes a control request.
    pub fn send_control(&mut self, request_id: &str, subtype: &str) {
        self.send(
            &serde_json::json!({"type": "control_request", "request_id": request_id,
            "request": {"subtype": subtype}}),
        );
    }

    /// Closes its stdin (the end of the conversation).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, or `None` when none comes within `timeout` (or stdout ended).
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next stdout line as JSON; panics on a timeout or a line that is not JSON.
    pub fn json(&self, timeout: Duration) -> serde_json::Value {
        let line = self.line(timeout).unwrap_or_else(|| {
            panic!(
                "fake-cli printed nothing within {timeout:?}; stderr: {:?}",
                self.stderr.lock().unwrap()
            )
        });
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// The lines up to and including the next `result`, as JSON.
    pub fn until_result(&self, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.json(left);
            let done = v["type"] == "result";
            out.push(v);
            if done {
                return out;
            }
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks the block invariant of an Anthropic stream: one `message_start` first and one
/// `message_stop` last; blocks start at indices 0, 1, 2… in order; every delta and stop
/// is for the open block, with a delta type that fits its kind. Returns the blocks as
/// (kind, the concatenated delta payloads).
pub fn anthropic_blocks(events: &[serde_json::Value]) -> Vec<(String, String)> {
    assert_eq!(events[0]["type"], "message_start");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let starts = events.iter().filter(|e| e["type"] == "message_start");
    assert_eq!(starts.count(), 1);
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut open: Option<usize> = None;
    for e in events {
        match e["type"].as_str().unwrap() {
            "content_block_start" => {
                assert!(open.is_none(), "a block started while another is open");
                let i = e["index"].as_u64().unwrap() as usize;
                assert_eq!(i, blocks.len(), "block indices are 0, 1, 2…");
                let kind = e["content_block"]["type"].as_str().unwrap().to_string();
                blocks.push((kind, String::new()));
                open = Some(i);
            }
            "content_block_delta" => {
                let i = e["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(i), "a delta for a block that is not open");
                let d = &e["delta"];
                let (kind, acc) = &mut blocks[i];
                let piece = match (kind.as_str(), d["type"].as_str().unwrap()) {
                    ("text", "text_delta") => d["text"].as_str().unwrap(),
                    ("thinking", "thinking_delta") => d["thinking"].as_str().unwrap(),
                    ("thinking", "signature_delta") => "",
                    ("tool_use", "input_json_delta") => d["partial_json"].as_str().unwrap(),
                    (k, t) => panic!("a {t} in a {k} block"),
                };
                acc.push_str(piece);
            }
            "content_block_stop" => {
                let i = e["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(i), "a stop for a block that is not open");
                open = None;
            }
            "message_delta" => assert!(open.is_none(), "message_delta inside a block"),
            _ => {}
        }
    }
    blocks
}
