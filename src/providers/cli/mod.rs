//! The CLI backend: a provider answered by a command-line model client (such as the
//! `claude` CLI in stream-json mode) run as a pool of pre-warmed processes.
//!
//! Each request takes an idle process, writes the conversation as one user line, reads
//! the answer's lines until the turn's `result`, and retires the process (a fresh one
//! takes its place, so no request sees another's context). The pool keeps `pool_size`
//! processes warm; when all are busy a request starts one more cold (at most
//! `max_overflow` of them), and beyond that waits for a free one until its timeout (then
//! 503). A process that dies is replaced with a backoff (1 s doubling to 60 s). The
//! keep-alive check every `keep_alive_interval` is a liveness probe that never spends
//! tokens. [`maintainer::Maintainer`] runs all of this as a background service.

pub mod frames;
pub mod maintainer;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter, IntGaugeVec};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// A CLI provider's pool, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct CliSettings {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Environment variables for it (the gateway's own are inherited, `CLAUDECODE`
    /// removed).
    pub env: Vec<(String, String)>,
    /// Processes kept warm.
    pub pool_size: usize,
    /// Extra cold processes started when all are busy.
    pub max_overflow: usize,
    /// Period of the liveness check.
    pub keep_alive: Duration,
    /// The longest a request waits for a process plus its whole answer.
    pub request_timeout: Duration,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Started, not known to be ready yet.
    Warming,
    /// Ready for a request.
    Idle,
    /// Serving a request.
    Busy,
    /// Served its request; being shut down.
    Retiring,
    /// Exited or broke; replaced after a backoff.
    Dead,
}

impl SessionState {
    /// The `/sessions` and metrics spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warming => "warming",
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::Retiring => "retiring",
            Self::Dead => "dead",
        }
    }

    const ALL: [SessionState; 5] = [
        Self::Warming,
        Self::Idle,
        Self::Busy,
        Self::Retiring,
        Self::Dead,
    ];
}

/// What `/sessions` shows of a session.
#[derive(Debug, Clone)]
struct Info {
    state: SessionState,
    pid: Option<u32>,
    started: SystemTime,
    spawned: Instant,
    last_used: Option<SystemTime>,
    requests: u64,
    overflow: bool,
    last_ping: Option<(SystemTime, bool)>,
    retired_at: Option<Instant>,
}

/// The process of a session.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// One process of the pool.
pub struct Session {
    id: u64,
    info: Mutex<Info>,
    proc: tokio::sync::Mutex<Option<Proc>>,
}

impl Session {
    fn set(&self, state: SessionState) {
        let mut i = self.info.lock();
        if state == SessionState::Retiring {
            i.retired_at = Some(Instant::now());
        }
        i.state = state;
    }

    fn state(&self) -> SessionState {
        self.info.lock().state
    }
}

/// Why a request got no answer from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Every process is busy and the overflow is used up, until the request's timeout.
    Exhausted,
    /// The process could not be started.
    Spawn(String),
    /// The process died before the end of its answer.
    Died,
    /// The answer did not end within the request's timeout.
    Timeout,
    /// The process printed a broken line.
    Protocol,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exhausted => f.write_str("cli pool exhausted"),
            Self::Spawn(e) => write!(f, "the cli could not be started: {e}"),
            Self::Died => f.write_str("the cli process died before its answer ended"),
            Self::Timeout => f.write_str("the cli did not answer in time"),
            Self::Protocol => f.write_str("the cli printed a line that is not JSON"),
        }
    }
}

/// Metric handles of one pool.
struct PoolMetrics {
    cold_starts: IntCounter,
    restarts: IntCounter,
    wait: Histogram,
    sessions: IntGaugeVec,
}

/// A CLI provider's process pool.
pub struct CliPool {
    name: String,
    settings: CliSettings,
    sessions: Mutex<Vec<Arc<Session>>>,
    changed: Notify,
    next_id: AtomicU64,
    /// Consecutive spawn failures and when the next spawn may happen.
    backoff: Mutex<(u32, Option<Instant>)>,
    metrics: PoolMetrics,
}

/// A session taken for one request; retired when dropped.
pub struct Lease {
    pool: Arc<CliPool>,
    session: Arc<Session>,
    /// A process started for this request (the pool had none idle).
    pub cold: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // One request per process: a fresh one takes its place.
        if self.session.state() == SessionState::Busy {
            self.session.set(SessionState::Retiring);
        }
        self.pool.changed.notify_waiters();
    }
}

fn spawn(s: &CliSettings) -> Result<(Proc, Option<u32>), String> {
    let (program, args) = s
        .command
        .split_first()
        .ok_or_else(|| "no command".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        // A CLI started from inside another session of itself behaves differently.
        .env_remove("CLAUDECODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or_else(|| "no stdout".to_string())?;
    let lines = BufReader::with_capacity(64 * 1024, stdout).lines();
    Ok((
        Proc {
            child,
            stdin,
            lines,
        },
        pid,
    ))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl CliPool {
    /// A pool for provider `name` (no process started yet: the maintainer warms it).
    pub fn new(name: &str, settings: CliSettings, m: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            settings,
            sessions: Mutex::new(Vec::new()),
            changed: Notify::new(),
            next_id: AtomicU64::new(1),
            backoff: Mutex::new((0, None)),
            metrics: PoolMetrics {
                cold_starts: m.cli_cold_starts.with_label_values(&[name]),
                restarts: m.cli_restarts.with_label_values(&[name]),
                wait: m.cli_wait.with_label_values(&[name]),
                sessions: m.cli_sessions.clone(),
            },
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's settings.
    pub fn settings(&self) -> &CliSettings {
        &self.settings
    }

    fn start_session(&self, overflow: bool, state: SessionState) -> Result<Arc<Session>, String> {
        let (proc, pid) = spawn(&self.settings)?;
        let now = SystemTime::now();
        let s = Arc::new(Session {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            info: Mutex::new(Info {
                state,
                pid,
                started: now,
                spawned: Instant::now(),
                last_used: None,
                requests: 0,
                overflow,
                last_ping: None,
                retired_at: None,
            }),
            proc: tokio::sync::Mutex::new(Some(proc)),
        });
        self.sessions.lock().push(s.clone());
        Ok(s)
    }

    /// Takes an idle process, or starts one more cold while the overflow allows, or
    /// waits for one until `deadline`.
    pub async fn acquire(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Result<Lease, CliError> {
        let waited = Instant::now();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = {
                let list = self.sessions.lock();
                let idle = list
                    .iter()
                    .find(|s| s.state() == SessionState::Idle)
                    .cloned();
                let overflow_open = list
                    .iter()
                    .filter(|s| {
                        let i = s.info.lock();
                        i.overflow && matches!(i.state, SessionState::Busy | SessionState::Warming)
                    })
                    .count();
                (idle, overflow_open)
            };
            if let (Some(s), _) = &taken {
                s.set(SessionState::Busy);
                self.metrics.wait.observe(waited.elapsed().as_secs_f64());
                return Ok(self.lease(s.clone(), false));
            }
            if taken.1 < self.settings.max_overflow {
                let s = self
                    .start_session(true, SessionState::Busy)
                    .map_err(CliError::Spawn)?;
                self.metrics.cold_starts.inc();
                self.metrics.wait.observe(waited.elapsed().as_secs_f64());
                return Ok(self.lease(s, true));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(CliError::Exhausted);
            }
        }
    }

    fn lease(self: &Arc<Self>, session: Arc<Session>, cold: bool) -> Lease {
        {
            let mut i = session.info.lock();
            i.requests += 1;
            i.last_used = Some(SystemTime::now());
        }
        Lease {
            pool: self.clone(),
            session,
            cold,
        }
    }

    /// Every session, for `GET /sessions`.
    pub fn describe(&self) -> Vec<Value> {
        let restarts = self.metrics.restarts.get();
        self.sessions
            .lock()
            .iter()
            .map(|s| {
                let i = s.info.lock();
                json!({
                    "id": format!("{}-{}", self.name, s.id),
                    "provider": self.name,
                    "pid": i.pid,
                    "state": i.state.as_str(),
                    "mode": "A",
                    "overflow": i.overflow,
                    "model": model_of(&self.settings.command),
                    "started_at": unix(i.started),
                    "last_used_at": i.last_used.map(unix),
                    "requests_served": i.requests,
                    "last_ping_at": i.last_ping.map(|p| unix(p.0)),
                    "last_ping_ok": i.last_ping.map(|p| p.1),
                    "restarts": restarts,
                })
            })
            .collect()
    }

    /// Counts of sessions by state: (warming, idle, busy, dead).
    pub fn summary(&self) -> Value {
        let mut counts = [0usize; 5];
        for s in self.sessions.lock().iter() {
            let st = s.state();
            if let Some(k) = SessionState::ALL.iter().position(|x| *x == st) {
                counts[k] += 1;
            }
        }
        let mut m = serde_json::Map::new();
        for (st, n) in SessionState::ALL.iter().zip(counts) {
            m.insert(st.as_str().to_string(), json!(n));
        }
        m.insert("pool_size".into(), json!(self.settings.pool_size));
        Value::Object(m)
    }
}

/// The model a command line asks for (`--model M` or `--model=M`).
fn model_of(cmd: &[String]) -> Option<String> {
    let mut it = cmd.iter();
    while let Some(a) = it.next() {
        if let Some(m) = a.strip_prefix("--model=") {
            return Some(m.to_string());
        }
        if a == "--model" {
            return it.next().cloned();
        }
    }
    None
}

impl Lease {
    /// Writes a user frame.
    pub async fn send(&self, frame: &[u8]) -> Result<(), CliError> {
        let mut p = self.session.proc.lock().await;
        let stdin = p
            .as_mut()
            .and_then(|p| p.stdin.as_mut())
            .ok_or(CliError::Died)?;
        stdin.write_all(frame).await.map_err(|_| CliError::Died)?;
        stdin.flush().await.map_err(|_| CliError::Died)
    }

    /// The next line the process prints, by `deadline`.
    pub async fn next_line(&self, deadline: tokio::time::Instant) -> Result<String, CliError> {
        let mut p = self.session.proc.lock().await;
        let proc = p.as_mut().ok_or(CliError::Died)?;
        match tokio::time::timeout_at(deadline, proc.lines.next_line()).await {
            Err(_) => Err(CliError::Timeout),
            Ok(Ok(Some(line))) => Ok(line),
            Ok(_) => Err(CliError::Died),
        }
    }

    /// Marks the process broken (it is replaced, not reused).
    pub fn broken(&self) {
        self.session.set(SessionState::Dead);
    }
}
