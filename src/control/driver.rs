//! The controller task: holds the lease, reconciles with what runs, feeds the
//! [`Machine`] commands, timers and action outcomes, runs its actions one at a time
//! (a transition aborts the running one: its answer would be stale), and publishes
//! every transition: runtime overrides for routing, `control:status` for the API of
//! every replica, metrics and a log line.
//!
//! A replica that does not hold the lease acts on nothing: it mirrors the holder's
//! status and hands commands over through `control:desired`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::docker::DockerEngine;
use super::engine::{
    Container, ContainerSpec, Engine, Progress, BACKEND_LABEL, INSTANCE_LABEL, MANAGED_LABEL,
    MODEL_LABEL,
};
use super::hardware::{self, Hardware};
use super::health;
use super::machine::{Action, Event, Machine, Next, Refused, State, Step, Target, Timings};
use super::metrics::ControlMetrics;
use crate::config::{ControlSettings, GpuVendor, Gpus, LocalKind, Profile};
use crate::state::Hub;
use crate::store::RuntimeField;

/// How long the lease lives without renewal.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews it and the others try to take it.
const LEASE_EVERY: Duration = Duration::from_secs(3);
/// How often the holder reads commands handed over by other replicas.
const DESIRED_EVERY: Duration = Duration::from_millis(500);

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Run `backend` with `model`.
    Select {
        /// vllm, sglang or ollama.
        backend: String,
        /// The model.
        model: String,
    },
    /// Serve another model on the current backend.
    SwitchModel {
        /// The model.
        model: String,
    },
    /// Drain and stop.
    Stop,
    /// Leave `error`.
    Retry,
    /// Pull a model into the running Ollama.
    OllamaPull {
        /// The model.
        model: String,
    },
    /// Remove a model from the running Ollama.
    OllamaRemove {
        /// The model.
        model: String,
    },
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    /// `[control] enabled = false`.
    Disabled,
    /// It makes no sense now (409), with why.
    Refused(String),
    /// Bad input (400).
    Invalid(String),
    /// The engine or store cannot be reached (503).
    Unavailable(String),
}

/// The controller's status (`GET /admin/inference`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Whether the controller runs.
    pub enabled: bool,
    /// The backend kind (`none` when nothing is selected).
    pub backend: String,
    /// The model.
    pub model: Option<String>,
    /// The state (`none`, `pulling`, `starting`, `ready`, `restarting`, `draining`,
    /// `stopping`, `error`).
    pub state: String,
    /// Since when (unix ms).
    pub since_ms: u64,
    /// Why the last transition happened.
    pub reason: String,
    /// The container's id.
    pub container_id: Option<String>,
    /// The container's name.
    pub container: Option<String>,
    /// Where the gateway reaches it.
    pub url: Option<String>,
    /// The last health probe's result (`ok` or why not).
    pub last_health: Option<String>,
    /// Restarts after failures since this controller started.
    pub restarts: u64,
    /// Consecutive failed checks now.
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// The running pull.
    pub pull: Option<Progress>,
    /// What follows the drain (`{"backend","model"}` or `stop`).
    pub next: Option<String>,
    /// The replica holding the controller lease.
    pub holder: Option<String>,
    /// The replica answering.
    pub replica: String,
}

/// A command handed from a replica without the lease to the holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Desired {
    seq: u64,
    #[serde(flatten)]
    command: Command,
}

/// The target the holder works towards (`control:target`), for a new holder or a
/// restarted one to continue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Intent {
    backend: String,
    model: String,
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<Status, CommandError>>,
}

struct Inner {
    hub: Arc<Hub>,
    cfg: ControlSettings,
    tx: mpsc::Sender<Request>,
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
    status: watch::Sender<Status>,
    progress: Mutex<Option<Progress>>,
    container: Mutex<Option<Container>>,
    engine: Mutex<Option<Arc<dyn Engine>>>,
    hardware: Mutex<Option<Hardware>>,
    leader: AtomicBool,
    /// Becomes true once this replica first tried for the lease (and, if it got it,
    /// took it): until then a command cannot tell holder from follower.
    lease_tried: watch::Sender<bool>,
    /// When this controller was made (unix ms).
    started_ms: u64,
    metrics: ControlMetrics,
    http: reqwest::Client,
}

/// The handle the admin API and the background service share.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn url_of(p: &Profile, c: &Container) -> Option<String> {
    let port = c.host_port.filter(|p| *p != 0)?;
    let ip = match p.host_ip.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        ip => ip,
    };
    Some(if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    })
}

impl Control {
    /// A controller for `hub` with `cfg` (it acts once its service starts).
    pub fn new(hub: Arc<Hub>, cfg: ControlSettings) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let metrics = ControlMetrics::new(&hub.metrics);
        let status = Status {
            enabled: cfg.enabled,
            backend: "none".into(),
            state: State::None.as_str().into(),
            since_ms: unix_ms(),
            reason: if cfg.enabled {
                "starting the controller".into()
            } else {
                "the controller is off ([control] enabled = false)".into()
            },
            replica: hub.replica_id.clone(),
            ..Default::default()
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                hub,
                cfg,
                tx,
                rx: Mutex::new(Some(rx)),
                status: watch::channel(status).0,
                progress: Mutex::new(None),
                container: Mutex::new(None),
                engine: Mutex::new(None),
                hardware: Mutex::new(None),
                leader: AtomicBool::new(false),
                lease_tried: watch::channel(false).0,
                started_ms: unix_ms(),
                metrics,
                http,
            }),
        }
    }

    /// Whether the controller runs.
    pub fn enabled(&self) -> bool {
        self.inner.cfg.enabled
    }

    /// The settings.
    pub fn settings(&self) -> &ControlSettings {
        &self.inner.cfg
    }

    /// Carries out `command`: the holder applies it and answers the state it started;
    /// another replica hands it to the holder and answers the holder's last status.
    pub async fn command(&self, command: Command) -> Result<Status, CommandError> {
        if !self.enabled() {
            return Err(CommandError::Disabled);
        }
        if let Command::Select { backend, .. } = &command {
            match LocalKind::parse(backend) {
                Some(k) if self.inner.cfg.profile(k).is_some() => {}
                _ => {
                    return Err(CommandError::Invalid(format!(
                        "backend {backend:?}: the controller runs vllm, sglang or ollama"
                    )))
                }
            }
        }
        if self.inner.engine.lock().is_none() {
            // Just started: give the engine connection (and the lease) a moment.
            let mut rx = self.inner.status.subscribe();
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.inner.engine.lock().is_none()
                && rx.borrow().last_error.is_none()
                && tokio::time::timeout_at(until, rx.changed())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {}
        }
        if self.inner.engine.lock().is_none() {
            let why = self.inner.status.borrow().last_error.clone();
            return Err(CommandError::Unavailable(why.unwrap_or_else(|| {
                "the controller is still connecting to the container engine".into()
            })));
        }
        // Connected, but the first try for the lease may not have been made yet: a
        // command now would be handed to "the holder" and answered with a status from
        // before it, although this replica is about to hold the lease itself.
        let mut tried = self.inner.lease_tried.subscribe();
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let _ = tokio::time::timeout_at(until, tried.wait_for(|t| *t)).await;
        if !self.inner.leader.load(Ordering::Relaxed) {
            let d = Desired {
                seq: unix_ms(),
                command,
            };
            let text = serde_json::to_string(&d).unwrap_or_default();
            self.inner
                .hub
                .tenancy
                .store()
                .record_set("control:desired", &text)
                .await
                .map_err(|e| CommandError::Unavailable(e.to_string()))?;
            return Ok(self.status().await);
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Request { command, reply })
            .await
            .map_err(|_| CommandError::Unavailable("the controller is not running".into()))?;
        rx.await
            .map_err(|_| CommandError::Unavailable("the controller stopped".into()))?
    }

    /// The current status: this replica's when it holds the lease, else the holder's
    /// as published in the store.
    pub async fn status(&self) -> Status {
        let mine = self.inner.status.borrow().clone();
        if !self.enabled() || self.inner.leader.load(Ordering::Relaxed) {
            return mine;
        }
        let store = self.inner.hub.tenancy.store();
        match store.record_get("control:status").await {
            Ok(Some(text)) => match serde_json::from_str::<Status>(&text) {
                Ok(mut s) => {
                    s.replica = self.inner.hub.replica_id.clone();
                    s
                }
                Err(_) => mine,
            },
            _ => mine,
        }
    }

    /// Status changes as they happen (the admin API's event stream).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// The hardware (detected once, again with `refresh`); also written to
    /// `system:hardware`.
    pub async fn hardware(&self, refresh: bool) -> Result<Hardware, String> {
        if !refresh {
            if let Some(h) = self.inner.hardware.lock().clone() {
                return Ok(h);
            }
        }
        let engine = self.inner.engine.lock().clone();
        let runtime = match engine {
            Some(e) => e.gpu_runtime().await.ok(),
            None => None,
        };
        let hw = hardware::detect(self.inner.cfg.hardware_file.as_deref(), runtime).await?;
        let text = serde_json::to_string(&hw).unwrap_or_default();
        let _ = self
            .inner
            .hub
            .tenancy
            .store()
            .record_set("system:hardware", &text)
            .await;
        *self.inner.hardware.lock() = Some(hw.clone());
        Ok(hw)
    }

    /// Live GPU statistics: from `nvidia-smi` inside the running container (the host's
    /// when none runs). An error says why there are none.
    pub async fn gpu_stats(&self) -> Result<Vec<hardware::Gpu>, String> {
        let engine = self.inner.engine.lock().clone();
        let container = self.inner.container.lock().clone();
        if let (Some(e), Some(c)) = (engine, container) {
            let cmd = [
                "nvidia-smi",
                hardware::NVIDIA_QUERY,
                "--format=csv,noheader,nounits",
            ];
            if let Ok((0, out)) = e.exec(&c.id, &cmd, Duration::from_secs(10)).await {
                let g = hardware::parse_nvidia(&out);
                if !g.is_empty() {
                    return Ok(g);
                }
            }
        }
        let g = hardware::host_gpu_stats().await;
        if g.is_empty() {
            Err(
                "no GPU: nvidia-smi found none on this machine or in the backend's container"
                    .into(),
            )
        } else {
            Ok(g)
        }
    }

    /// The background service that runs the controller.
    pub fn service(&self) -> ControlService {
        ControlService(self.clone())
    }
}

/// The controller as a Pingora background service (shutdown waits for it).
pub struct ControlService(Control);

#[async_trait]
impl BackgroundService for ControlService {
    async fn start(&self, shutdown: ShutdownWatch) {
        if !self.0.enabled() {
            return;
        }
        let Some(rx) = self.0.inner.rx.lock().take() else {
            return;
        };
        Driver::new(self.0.inner.clone(), rx).run(shutdown).await;
    }
}

struct Driver {
    inner: Arc<Inner>,
    rx: mpsc::Receiver<Request>,
    machine: Machine,
    /// The running action (at most one; a set so it is tracked and abortable).
    running: tokio::task::JoinSet<Event>,
    queue: VecDeque<Action>,
    seen_desired: u64,
    created_at: Option<Instant>,
    drain_started: Option<Instant>,
    jobs: tokio::task::JoinSet<()>,
}

impl Driver {
    fn new(inner: Arc<Inner>, rx: mpsc::Receiver<Request>) -> Self {
        let c = &inner.cfg;
        let timings = Timings {
            health_interval: c.health_interval,
            failures_before_restart: c.failures_before_restart,
            backoff: c.backoff.clone(),
            start_timeout: c.start_timeout,
            drain_timeout: c.drain_timeout,
            start_poll: Duration::from_millis(250).min(c.health_interval),
        };
        Self {
            inner,
            rx,
            machine: Machine::new(timings, Instant::now()),
            running: tokio::task::JoinSet::new(),
            queue: VecDeque::new(),
            seen_desired: 0,
            created_at: None,
            drain_started: None,
            jobs: tokio::task::JoinSet::new(),
        }
    }

    fn store(&self) -> &Arc<dyn crate::store::Store> {
        self.inner.hub.tenancy.store()
    }

    /// Answers commands with `why` until `until` or shutdown.
    async fn refuse_until(
        &mut self,
        until: Instant,
        why: &str,
        shutdown: &mut ShutdownWatch,
    ) -> bool {
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Some(r) => { let _ = r.reply.send(Err(CommandError::Unavailable(why.to_string()))); }
                    None => return false,
                },
                _ = tokio::time::sleep_until(until) => return true,
                _ = shutdown.changed() => return false,
            }
        }
    }

    async fn run(mut self, mut shutdown: ShutdownWatch) {
        // The engine: keep trying, loudly, without stopping the gateway.
        let timeout = self.inner.cfg.stop_grace + Duration::from_secs(30);
        let engine: Arc<dyn Engine> = loop {
            match DockerEngine::connect(&self.inner.cfg.docker_host, timeout).await {
                Ok(e) => break Arc::new(e),
                Err(e) => {
                    let why = format!("no container engine: {e}");
                    if self.inner.status.borrow().last_error.as_deref() != Some(&why) {
                        log::error!(
                            "control: {why}; retrying every 5 s (cloud providers keep serving)"
                        );
                    }
                    self.inner.status.send_modify(|s| {
                        s.state = State::Error.as_str().into();
                        s.last_error = Some(why.clone());
                        s.reason = why.clone();
                    });
                    if !self
                        .refuse_until(Instant::now() + Duration::from_secs(5), &why, &mut shutdown)
                        .await
                    {
                        return;
                    }
                }
            }
        };
        *self.inner.engine.lock() = Some(engine.clone());
        self.inner.status.send_modify(|s| s.last_error = None);
        // Hardware once at start (the vendor decides GPU flags in `auto`).
        let hw = Control {
            inner: self.inner.clone(),
        }
        .hardware(true)
        .await;
        if let Err(e) = hw {
            log::warn!("control: hardware detection failed: {e}");
        }
        loop {
            if !self.follow(&mut shutdown).await {
                return;
            }
            log::info!(
                "control: this replica ({}) holds the controller lease",
                self.inner.hub.replica_id
            );
            self.inner.leader.store(true, Ordering::Relaxed);
            self.inner.lease_tried.send_replace(true);
            self.inner.metrics.leader.set(1);
            self.reconcile(&engine).await;
            let lost = self.lead(&engine, &mut shutdown).await;
            self.inner.leader.store(false, Ordering::Relaxed);
            self.inner.metrics.leader.set(0);
            self.running.abort_all();
            self.jobs.abort_all();
            if !lost {
                return;
            }
            log::warn!(
                "control: the controller lease was lost; acting on nothing until it is ours again"
            );
        }
    }

    /// Without the lease: mirror the holder's status; hand commands over. Returns true
    /// once the lease is ours, false at shutdown.
    async fn follow(&mut self, shutdown: &mut ShutdownWatch) -> bool {
        loop {
            match self
                .store()
                .lease(&self.inner.hub.replica_id, LEASE_TTL)
                .await
            {
                Ok(true) => {
                    // Commands from before this process started were the previous
                    // holder's to carry out; later ones (sent while this replica was
                    // still taking the lease) are ours.
                    if let Ok(Some(d)) = self.store().record_get("control:desired").await {
                        if let Ok(d) = serde_json::from_str::<Desired>(&d) {
                            if d.seq < self.inner.started_ms {
                                self.seen_desired = d.seq;
                            }
                        }
                    }
                    return true;
                }
                Ok(false) => {}
                Err(e) => log::debug!("control: lease not taken: {e}"),
            }
            // Another replica holds it (or the store is down): commands go to the holder.
            self.inner.lease_tried.send_replace(true);
            let until = Instant::now() + LEASE_EVERY;
            loop {
                tokio::select! {
                    r = self.rx.recv() => match r {
                        // Only reached in a race with the lease flag: hand it over.
                        Some(r) => {
                            let _ = r.reply.send(Err(CommandError::Unavailable("this replica does not hold the controller lease; retry".into())));
                        }
                        None => return false,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.changed() => return false,
                }
            }
        }
    }

    /// Adopts what runs: a container of ours running the intended target is probed and
    /// kept; any other container of ours is removed; then the intent is resumed.
    async fn reconcile(&mut self, engine: &Arc<dyn Engine>) {
        let intent: Option<Intent> = match self.store().record_get("control:target").await {
            Ok(Some(t)) => serde_json::from_str(&t).ok(),
            _ => None,
        };
        let intent = intent.and_then(|i| {
            Some(Target {
                backend: LocalKind::parse(&i.backend)
                    .filter(|k| self.inner.cfg.profile(*k).is_some())?,
                model: i.model,
            })
        });
        let ours = match engine.list_managed(&self.inner.cfg.instance).await {
            Ok(l) => l,
            Err(e) => {
                log::error!("control: cannot list containers: {e}");
                Vec::new()
            }
        };
        let mut adopted = None;
        for c in ours {
            let t = Target {
                backend: c
                    .labels
                    .get(BACKEND_LABEL)
                    .and_then(|b| LocalKind::parse(b))
                    .unwrap_or(LocalKind::None),
                model: c.labels.get(MODEL_LABEL).cloned().unwrap_or_default(),
            };
            if adopted.is_none() && c.running && intent.as_ref() == Some(&t) {
                log::info!(
                    "control: adopting container {} ({} {})",
                    c.name,
                    t.backend.as_str(),
                    t.model
                );
                adopted = Some((c, t));
            } else {
                log::info!(
                    "control: removing container {} of ours left from before ({})",
                    c.name,
                    c.status
                );
                if let Err(e) = engine.stop_remove(&c.id, self.inner.cfg.stop_grace).await {
                    log::error!("control: cannot remove {}: {e}", c.name);
                }
            }
        }
        let now = Instant::now();
        let step = match (adopted, intent) {
            (Some((c, t)), _) => {
                *self.inner.container.lock() = Some(c);
                self.machine.command(Event::Adopt(t), now)
            }
            (None, Some(t)) => self.machine.command(Event::Select(t), now),
            (None, None) => Ok(Step::default()),
        };
        match step {
            Ok(s) => self.apply(s).await,
            Err(Refused(e)) => log::error!("control: cannot resume: {e}"),
        }
        self.publish(true).await;
    }

    /// With the lease: the main loop. Returns true when the lease was lost, false at
    /// shutdown.
    async fn lead(&mut self, engine: &Arc<dyn Engine>, shutdown: &mut ShutdownWatch) -> bool {
        let mut lease = tokio::time::interval(LEASE_EVERY);
        lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut desired = tokio::time::interval(DESIRED_EVERY);
        desired.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Deaths reported by the engine at once; the probes catch them anyway if the
        // stream breaks.
        let mut deaths = engine.deaths(&self.inner.cfg.instance);
        loop {
            self.start_next(engine);
            let wake = self
                .machine
                .wake_at()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.rx.recv() => {
                    let Some(r) = r else { return false };
                    let result = self.handle(r.command, engine).await;
                    let _ = r.reply.send(result);
                }
                Some(ev) = self.running.join_next(), if !self.running.is_empty() => {
                    let Ok(ev) = ev else {
                        // Aborted by a transition: its answer is no longer wanted.
                        continue;
                    };
                    let step = self.machine.outcome(ev, Instant::now());
                    self.apply(step).await;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let step = self.machine.outcome(Event::Tick, Instant::now());
                    self.apply(step).await;
                }
                _ = lease.tick() => {
                    match self.store().lease(&self.inner.hub.replica_id, LEASE_TTL).await {
                        Ok(true) => {}
                        Ok(false) => return true,
                        // The store is down: keep acting (a single store outage must
                        // not stop the backend); the lease expires for others anyway.
                        Err(_) => {}
                    }
                }
                _ = desired.tick() => self.poll_desired(engine).await,
                d = deaths.next() => match d {
                    Some(Ok(d)) => self.on_death(d).await,
                    Some(Err(e)) => {
                        log::warn!("control: {e}; container deaths are found by the health checks");
                        deaths = futures_util::stream::pending().boxed();
                    }
                    None => deaths = futures_util::stream::pending().boxed(),
                },
                Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => {}
                _ = shutdown.changed() => {
                    // The container keeps running; the next start adopts it.
                    return false;
                }
            }
        }
    }

    /// The engine reports a container of ours died: if it is the running one, that is
    /// a failure now, not at the next check.
    async fn on_death(&mut self, d: super::engine::Death) {
        let current = self.inner.container.lock().as_ref().map(|c| c.id.clone());
        if current.as_deref() != Some(d.id.as_str()) {
            return;
        }
        let why = match (d.action.as_str(), d.exit_code) {
            ("oom", _) => "the container ran out of memory (OOM)".to_string(),
            (_, Some(code)) => format!("the container exited (exit code {code})"),
            _ => "the container exited".to_string(),
        };
        let step = self.machine.outcome(Event::Down(why), Instant::now());
        self.apply(step).await;
    }

    async fn poll_desired(&mut self, engine: &Arc<dyn Engine>) {
        let Ok(Some(text)) = self.store().record_get("control:desired").await else {
            return;
        };
        let Ok(d) = serde_json::from_str::<Desired>(&text) else {
            return;
        };
        if d.seq <= self.seen_desired {
            return;
        }
        self.seen_desired = d.seq;
        log::info!("control: a command from another replica: {:?}", d.command);
        if let Err(e) = self.handle(d.command, engine).await {
            log::warn!("control: the handed-over command was not carried out: {e:?}");
        }
    }

    async fn handle(
        &mut self,
        c: Command,
        engine: &Arc<dyn Engine>,
    ) -> Result<Status, CommandError> {
        let now = Instant::now();
        let ev = match c {
            Command::Select { backend, model } => {
                let Some(kind) = LocalKind::parse(&backend) else {
                    return Err(CommandError::Invalid(format!(
                        "unknown backend {backend:?}"
                    )));
                };
                if model.trim().is_empty() {
                    return Err(CommandError::Invalid("`model` is required".into()));
                }
                Event::Select(Target {
                    backend: kind,
                    model,
                })
            }
            Command::SwitchModel { model } => {
                if model.trim().is_empty() {
                    return Err(CommandError::Invalid("`model` is required".into()));
                }
                Event::SwitchModel(model)
            }
            Command::Stop => Event::Stop,
            Command::Retry => Event::Retry,
            Command::OllamaPull { model } | Command::OllamaRemove { model }
                if self.machine.state != State::Ready
                    || self.machine.target.as_ref().map(|t| t.backend)
                        != Some(LocalKind::Ollama) =>
            {
                let _ = model;
                return Err(CommandError::Refused(
                    "Ollama is not the running backend (select it first)".into(),
                ));
            }
            Command::OllamaPull { model } => {
                let base = self.base_url().unwrap_or_default();
                let inner = self.inner.clone();
                self.jobs.spawn(async move {
                    let set = |p: Progress| *inner.progress.lock() = Some(p);
                    match health::ollama_pull(&inner.http, &base, &model, &set).await {
                        Ok(()) => log::info!("control: ollama pulled {model}"),
                        Err(e) => log::error!("control: {e}"),
                    }
                    inner.hub.discovery_kick.notify_one();
                });
                return Ok(self.snapshot_status());
            }
            Command::OllamaRemove { model } => {
                let base = self.base_url().unwrap_or_default();
                health::ollama_delete(&self.inner.http, &base, &model)
                    .await
                    .map_err(CommandError::Refused)?;
                self.inner.hub.discovery_kick.notify_one();
                return Ok(self.snapshot_status());
            }
        };
        let _ = engine;
        let step = self
            .machine
            .command(ev, now)
            .map_err(|Refused(e)| CommandError::Refused(e))?;
        self.apply(step).await;
        // The intent changed even without a transition (a stop queued behind a drain).
        self.write_intent().await;
        Ok(self.snapshot_status())
    }

    fn base_url(&self) -> Option<String> {
        let t = self.machine.target.as_ref()?;
        let p = self.inner.cfg.profile(t.backend)?;
        let c = self.inner.container.lock().clone()?;
        url_of(p, &c)
    }

    /// Applies a step: a transition aborts the running action and replaces the queue.
    async fn apply(&mut self, step: Step) {
        let m = &self.inner.metrics;
        if step.restarted {
            m.restarts.inc();
        }
        if step.health_failed {
            m.health_failures.inc();
        }
        if step.cut > 0 {
            m.drain_cut.inc_by(step.cut);
        }
        if let Some(t) = &step.transition {
            self.running.abort_all();
            self.queue.clear();
            m.transitions
                .with_label_values(&[t.from.as_str(), t.to.as_str()])
                .inc();
            m.set_state(t.to);
            let target = self
                .machine
                .target
                .as_ref()
                .map(|t| format!("{} {}", t.backend.as_str(), t.model))
                .unwrap_or_else(|| "none".into());
            log::info!(
                "control: {} -> {} ({target}): {}",
                t.from.as_str(),
                t.to.as_str(),
                t.reason
            );
            match t.to {
                State::Draining => self.drain_started = Some(Instant::now()),
                State::Ready => {
                    if let Some(c) = self.created_at.take() {
                        m.start_seconds.observe(c.elapsed().as_secs_f64());
                    }
                }
                _ => {}
            }
            if t.from == State::Draining {
                if let Some(d) = self.drain_started.take() {
                    m.drain_seconds.observe(d.elapsed().as_secs_f64());
                }
            }
            if t.to != State::Pulling {
                *self.inner.progress.lock() = None;
                m.pull_bytes.reset();
            }
        }
        self.queue.extend(step.actions);
        if step.transition.is_some() {
            self.publish(true).await;
        } else {
            self.publish(false).await;
        }
    }

    fn start_next(&mut self, engine: &Arc<dyn Engine>) {
        if !self.running.is_empty() {
            return;
        }
        let Some(a) = self.queue.pop_front() else {
            return;
        };
        if matches!(a, Action::Create(_)) {
            self.created_at = Some(Instant::now());
        }
        let ctx = Ctx {
            inner: self.inner.clone(),
            engine: engine.clone(),
            target: self.machine.target.clone(),
        };
        self.running.spawn(ctx.run(a));
    }

    fn snapshot_status(&self) -> Status {
        let m = &self.machine;
        let c = self.inner.container.lock().clone();
        let profile = m
            .target
            .as_ref()
            .and_then(|t| self.inner.cfg.profile(t.backend));
        Status {
            enabled: true,
            backend: m
                .target
                .as_ref()
                .map_or("none", |t| t.backend.as_str())
                .to_string(),
            model: m.target.as_ref().map(|t| t.model.clone()),
            state: m.state.as_str().into(),
            since_ms: unix_ms().saturating_sub(m.since.elapsed().as_millis() as u64),
            reason: m.reason.clone(),
            container_id: c.as_ref().map(|c| c.id.clone()),
            container: c.as_ref().map(|c| c.name.clone()),
            url: match (profile, &c) {
                (Some(p), Some(c)) => url_of(p, c),
                _ => None,
            },
            last_health: m.last_health.clone(),
            restarts: m.restarts,
            failures: m.failures,
            last_error: m.last_error.clone(),
            pull: self.inner.progress.lock().clone(),
            next: m.next.as_ref().map(|n| match n {
                Next::Start(t) => format!("{} {}", t.backend.as_str(), t.model),
                Next::Stop => "stop".into(),
            }),
            holder: Some(self.inner.hub.replica_id.clone()),
            replica: self.inner.hub.replica_id.clone(),
        }
    }

    async fn write_intent(&self) {
        let intent = match &self.machine.next {
            Some(Next::Start(t)) => Some(t.clone()),
            Some(Next::Stop) => None,
            None if self.machine.state == State::None => None,
            None => self.machine.target.clone(),
        };
        let text = match intent {
            Some(t) => serde_json::to_string(&Intent {
                backend: t.backend.as_str().into(),
                model: t.model,
            })
            .unwrap_or_default(),
            None => "null".into(),
        };
        if let Err(e) = self.store().record_set("control:target", &text).await {
            log::warn!("control: the target was not recorded: {e}");
        }
    }

    /// Publishes the status; with `routing`, also the runtime overrides routing reads.
    async fn publish(&self, routing: bool) {
        let status = self.snapshot_status();
        if routing {
            let state = self.machine.state;
            let backend = match (&self.machine.target, state) {
                (Some(t), s) if s != State::None => t.backend.as_str(),
                _ => "none",
            };
            let url = status.url.clone().unwrap_or_default();
            let changes = [
                (RuntimeField::Backend, backend),
                (RuntimeField::State, state.routing().as_str()),
                (RuntimeField::Url, url.as_str()),
            ];
            if let Err(e) = crate::runtime::set(&self.inner.hub, &changes).await {
                log::error!("control: routing was not updated: {e}");
            }
            self.write_intent().await;
        }
        if let Ok(text) = serde_json::to_string(&status) {
            let _ = self.store().record_set("control:status", &text).await;
        }
        self.inner.status.send_replace(status);
    }
}

/// What an action needs.
struct Ctx {
    inner: Arc<Inner>,
    engine: Arc<dyn Engine>,
    target: Option<Target>,
}

impl Ctx {
    fn profile(&self) -> Option<&Profile> {
        self.inner.cfg.profile(self.target.as_ref()?.backend)
    }

    async fn run(self, a: Action) -> Event {
        match a {
            Action::EnsureImage(t) => self.ensure_image(&t).await,
            Action::OllamaLoad(model) => self.ollama_load(&model).await,
            Action::Create(t) => self.create(&t).await,
            Action::Probe { starting } => self.probe(starting).await,
            Action::Drain { deadline } => {
                let settle = self
                    .inner
                    .hub
                    .settings
                    .redis
                    .as_ref()
                    .map_or(Duration::ZERO, |r| r.refresh_interval);
                let cut = super::drain::wait(&self.inner.hub, settle, deadline).await;
                Event::Drained { cut }
            }
            Action::StopContainer => self.stop().await,
        }
    }

    async fn ensure_image(&self, t: &Target) -> Event {
        let Some(p) = self.inner.cfg.profile(t.backend) else {
            return Event::PullFailed(format!("no profile for {}", t.backend.as_str()));
        };
        match self.engine.image_present(&p.image).await {
            Ok(true) => Event::ImageReady,
            Ok(false) => {
                log::info!("control: pulling {}", p.image);
                let inner = self.inner.clone();
                let on = move |pr: Progress| {
                    inner
                        .metrics
                        .pull_bytes
                        .with_label_values(&["completed"])
                        .set(pr.completed as i64);
                    inner
                        .metrics
                        .pull_bytes
                        .with_label_values(&["total"])
                        .set(pr.total as i64);
                    *inner.progress.lock() = Some(pr);
                };
                match self.engine.pull(&p.image, &on).await {
                    Ok(()) => Event::ImageReady,
                    Err(e) => Event::PullFailed(e.0),
                }
            }
            Err(e) => Event::PullFailed(e.0),
        }
    }

    async fn ollama_load(&self, model: &str) -> Event {
        let (Some(p), Some(c)) = (self.profile(), self.inner.container.lock().clone()) else {
            return Event::PullFailed("no Ollama container runs".into());
        };
        let Some(base) = url_of(p, &c) else {
            return Event::PullFailed("the Ollama container publishes no port".into());
        };
        let inner = self.inner.clone();
        let on = move |pr: Progress| *inner.progress.lock() = Some(pr);
        if let Err(e) = health::ollama_pull(&self.inner.http, &base, model, &on).await {
            return Event::PullFailed(e);
        }
        match health::probe(&self.inner.http, p, &base, model, true).await {
            Ok(names) => {
                let _ = self.inner.hub.set_discovered(names);
                Event::Healthy
            }
            Err(e) => Event::PullFailed(e),
        }
    }

    fn spec(&self, p: &Profile, t: &Target) -> ContainerSpec {
        let vendor = match p.gpu_vendor {
            GpuVendor::Auto => {
                let hw = self.inner.hardware.lock();
                match hw.as_ref().and_then(|h| h.vendor()) {
                    Some("amd") => GpuVendor::Amd,
                    _ => GpuVendor::Nvidia,
                }
            }
            v => v,
        };
        ContainerSpec {
            name: p.container_name.clone(),
            image: p.image.clone(),
            entrypoint: p.entrypoint.clone(),
            args: p.args_for(&t.model),
            env: p.env.clone(),
            volumes: p.volumes.clone(),
            port: p.port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
            gpus: p.gpus.clone(),
            vendor,
            shm_bytes: p.shm_bytes,
            labels: vec![
                (MANAGED_LABEL.into(), "true".into()),
                (BACKEND_LABEL.into(), t.backend.as_str().into()),
                (MODEL_LABEL.into(), t.model.clone()),
                (INSTANCE_LABEL.into(), self.inner.cfg.instance.clone()),
                (
                    "switchyard.replica".into(),
                    self.inner.hub.replica_id.clone(),
                ),
            ],
            stop_timeout_secs: self.inner.cfg.stop_grace.as_secs() as i64,
        }
    }

    async fn create(&self, t: &Target) -> Event {
        let Some(p) = self.inner.cfg.profile(t.backend) else {
            return Event::CreateFailed(format!("no profile for {}", t.backend.as_str()));
        };
        match self.engine.inspect(&p.container_name).await {
            Ok(Some(c)) if !c.managed() => {
                return Event::CreateFailed(format!(
                    "a container named {} exists that Switchyard did not create; it is left alone: remove or rename it, or set control.backends.{}.container_name",
                    p.container_name,
                    t.backend.as_str()
                ));
            }
            Ok(Some(c)) => {
                if let Err(e) = self
                    .engine
                    .stop_remove(&c.id, self.inner.cfg.stop_grace)
                    .await
                {
                    return Event::CreateFailed(e.0);
                }
            }
            Ok(None) => {}
            Err(e) => return Event::CreateFailed(e.0),
        }
        *self.inner.container.lock() = None;
        match self.engine.create_start(&self.spec(p, t)).await {
            Ok(c) => {
                log::info!(
                    "control: started container {} ({})",
                    c.name,
                    &c.id[..c.id.len().min(12)]
                );
                *self.inner.container.lock() = Some(c);
                Event::Created
            }
            Err(e) => Event::CreateFailed(e.0),
        }
    }

    async fn probe(&self, starting: bool) -> Event {
        let Some(c) = self.inner.container.lock().clone() else {
            return Event::Down("no container runs".into());
        };
        let (Some(p), Some(t)) = (self.profile(), self.target.as_ref()) else {
            return Event::Down("nothing is selected".into());
        };
        let now = match self.engine.inspect(&c.id).await {
            Ok(Some(now)) => now,
            Ok(None) => {
                return Event::Down("the container is missing (removed outside Switchyard)".into())
            }
            Err(e) => return Event::Unhealthy(e.0),
        };
        if !now.running {
            return Event::Down(now.down_reason());
        }
        let now = if now.host_port.is_some() { now } else { c };
        let Some(base) = url_of(p, &now) else {
            return Event::Unhealthy("the container publishes no port".into());
        };
        *self.inner.container.lock() = Some(now);
        match health::probe(&self.inner.http, p, &base, &t.model, starting).await {
            Ok(names) => {
                if starting {
                    // Routing must know the model before it sees `ready`.
                    let _ = self.inner.hub.set_discovered(names);
                }
                Event::Healthy
            }
            Err(e) => Event::Unhealthy(e),
        }
    }

    async fn stop(&self) -> Event {
        let c = self.inner.container.lock().clone();
        let id = match c {
            Some(c) => Some(c.id),
            None => match self.profile() {
                Some(p) => match self.engine.inspect(&p.container_name).await {
                    Ok(Some(c)) if c.managed() => Some(c.id),
                    _ => None,
                },
                None => None,
            },
        };
        if let Some(id) = id {
            if let Err(e) = self
                .engine
                .stop_remove(&id, self.inner.cfg.stop_grace)
                .await
            {
                return Event::StopFailed(e.0);
            }
        }
        *self.inner.container.lock() = None;
        if self.profile().is_some_and(|p| p.gpus != Gpus::None) {
            self.wait_vram_free().await;
        }
        Event::Stopped
    }

    /// Waits until the GPUs' used memory is below 5% (the next start would fail on
    /// memory the old process still holds), or the timeout. Without NVIDIA GPUs there is
    /// nothing to wait for.
    async fn wait_vram_free(&self) {
        let until = Instant::now() + self.inner.cfg.vram_free_timeout;
        loop {
            let g = hardware::host_gpu_stats().await;
            let busy = g.iter().any(|g| match (g.vram_used_mib, g.vram_mib) {
                (Some(u), Some(t)) if t > 0 => u * 20 > t,
                _ => false,
            });
            if !busy {
                return;
            }
            if Instant::now() >= until {
                log::warn!("control: GPU memory still in use after the stop; starting anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
