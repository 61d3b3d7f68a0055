//! The controller task: the lease, reconciling with what runs, commands, timers, and
//! publishing every transition.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt;
use pingora_core::server::ShutdownWatch;
use tokio::sync::mpsc;

use super::actions::Ctx;
use super::Control;
use super::{
    unix_ms, url_of, Command, CommandError, Desired, Inner, Intent, Request, Status, DESIRED_EVERY,
    LEASE_EVERY, LEASE_TTL,
};
use crate::config::LocalKind;
use crate::control::docker::DockerEngine;
use crate::control::engine::{Engine, Progress, BACKEND_LABEL, MODEL_LABEL};
use crate::control::health;
use crate::control::machine::{
    Action, Event, Machine, Next, Refused, State, Step, Target, Timings,
};
use crate::store::RuntimeField;

/// The controller task's state.
pub(super) struct Driver {
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
    pub(super) fn new(inner: Arc<Inner>, rx: mpsc::Receiver<Request>) -> Self {
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

    pub(super) async fn run(mut self, mut shutdown: ShutdownWatch) {
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
    async fn on_death(&mut self, d: crate::control::engine::Death) {
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
