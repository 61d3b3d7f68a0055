//! The local backend's lifecycle as a pure state machine: `state × event × now → state +
//! actions`. No I/O and no clock of its own: the driver (`control::driver`) feeds it
//! events with the time and carries out the actions it returns, feeding their outcomes
//! back as events. Every transition records its reason.
//!
//! ```text
//! none --select--> pulling --image ready--> starting --healthy--> ready
//! ready --N failed checks | container down--> restarting --created--> starting
//! starting (a restart) --timeout | down--> restarting after the next backoff step | error
//! starting (a first start) --timeout | down--> error
//! ready --switch model / switch backend / stop--> draining --drained--> stopping
//! stopping --stopped--> pulling (the next target) | none (stop)
//! error --retry / select--> pulling
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::config::LocalKind;
use crate::state::LocalState;

/// A backend and the model it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// vllm, sglang or ollama.
    pub backend: LocalKind,
    /// The model argument.
    pub model: String,
}

/// The controller's state (`GET /admin/inference` → `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing selected, no container.
    None,
    /// Fetching the image (or, for Ollama, the model).
    Pulling,
    /// The container runs; waiting for it to be healthy.
    Starting,
    /// Healthy and routed to.
    Ready,
    /// Waiting out a backoff step before the container is recreated.
    Restarting,
    /// No new local requests; waiting for in-flight ones.
    Draining,
    /// Stopping the container.
    Stopping,
    /// Gave up; left by retry or a new selection.
    Error,
}

impl State {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pulling => "pulling",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Restarting => "restarting",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
            Self::Error => "error",
        }
    }

    /// What routing sees (`config:inference.state`).
    pub fn routing(self) -> LocalState {
        match self {
            Self::None => LocalState::Stopped,
            Self::Pulling | Self::Starting | Self::Restarting => LocalState::Starting,
            Self::Ready => LocalState::Ready,
            Self::Draining | Self::Stopping => LocalState::Draining,
            Self::Error => LocalState::Error,
        }
    }

    /// Every state, for metrics.
    pub const ALL: [State; 8] = [
        Self::None,
        Self::Pulling,
        Self::Starting,
        Self::Ready,
        Self::Restarting,
        Self::Draining,
        Self::Stopping,
        Self::Error,
    ];
}

/// What comes after a drain and stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start this target.
    Start(Target),
    /// Stay stopped.
    Stop,
}

/// Inputs: operator commands and the outcomes of actions.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Run `target` (a new backend, or the same one with another model).
    Select(Target),
    /// Serve another model on the current backend.
    SwitchModel(String),
    /// Drain and stop; `backend = none`.
    Stop,
    /// Leave `error` by starting the last target again.
    Retry,
    /// At start-up: a container of ours runs `target` (found by label).
    Adopt(Target),
    /// The image is present (pulled if it was not).
    ImageReady,
    /// Image pull or model pull failed.
    PullFailed(String),
    /// The container was created and started.
    Created,
    /// It could not be.
    CreateFailed(String),
    /// A health probe passed.
    Healthy,
    /// A health probe failed.
    Unhealthy(String),
    /// The container exited, was killed, ran out of memory or is missing.
    Down(String),
    /// The drain ended; `cut` requests were still in flight at its deadline.
    Drained {
        /// Requests still in flight when the drain timed out.
        cut: u64,
    },
    /// The container is gone.
    Stopped,
    /// Stopping failed.
    StopFailed(String),
    /// Time passed (timers are due).
    Tick,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make sure the target's image is present (pull with progress) → `ImageReady` |
    /// `PullFailed`. For Ollama switching models: pull and load the model in place.
    EnsureImage(Target),
    /// Pull and load a model in the running Ollama → `Healthy` | `PullFailed`.
    OllamaLoad(String),
    /// Remove a leftover container of ours, create and start the target's →
    /// `Created` | `CreateFailed`.
    Create(Target),
    /// One health probe (container state, then the backend's endpoint) → `Healthy` |
    /// `Unhealthy` | `Down`. `starting` asks for the full readiness check.
    Probe {
        /// The start-up readiness check (model listed, Ollama model loaded).
        starting: bool,
    },
    /// Wait one refresh interval, then until the cluster's local in-flight count is 0
    /// or the deadline → `Drained`.
    Drain {
        /// When to give up waiting.
        deadline: Instant,
    },
    /// Stop and remove the container, wait for the GPU memory → `Stopped` | `StopFailed`.
    StopContainer,
}

/// Why a command was refused (the API answers 409 with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The timings from `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Period of health checks when ready.
    pub health_interval: Duration,
    /// Failed checks before a restart.
    pub failures_before_restart: u32,
    /// Waits between restart attempts.
    pub backoff: Vec<Duration>,
    /// Start budget.
    pub start_timeout: Duration,
    /// Drain budget.
    pub drain_timeout: Duration,
    /// Period of probes while starting.
    pub start_poll: Duration,
}

/// The lifecycle and what it knows.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Current state.
    pub state: State,
    /// Since when.
    pub since: Instant,
    /// What runs or is being started.
    pub target: Option<Target>,
    /// After the drain.
    pub next: Option<Next>,
    /// Consecutive failed checks while ready.
    pub failures: u32,
    /// Restart attempts made in the current restart series (0 = a first start).
    pub attempt: usize,
    /// Restarts since the process started.
    pub restarts: u64,
    /// Why the last failure happened.
    pub last_error: Option<String>,
    /// The last probe's outcome (`ok` or the reason).
    pub last_health: Option<String>,
    /// Why the last transition happened.
    pub reason: String,
    /// Changes with every transition that makes running actions obsolete.
    pub epoch: u64,
    timings: Timings,
    /// Start (or drain) deadline.
    deadline: Option<Instant>,
    /// When the next probe or restart is due.
    due: Option<Instant>,
    /// A probe, drain, pull, create or stop is running.
    busy: bool,
}

/// A transition: from, to, why (for the log line and the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: String,
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Actions to run, in order.
    pub actions: Vec<Action>,
    /// The state change, if any.
    pub transition: Option<Transition>,
    /// A restart began.
    pub restarted: bool,
    /// A failed health probe.
    pub health_failed: bool,
    /// Requests cut by a drain deadline.
    pub cut: u64,
}

impl Machine {
    /// A machine with nothing selected.
    pub fn new(timings: Timings, now: Instant) -> Self {
        Self {
            state: State::None,
            since: now,
            target: None,
            next: None,
            failures: 0,
            attempt: 0,
            restarts: 0,
            last_error: None,
            last_health: None,
            reason: "started".into(),
            epoch: 0,
            timings,
            deadline: None,
            due: None,
            busy: false,
        }
    }

    /// When the machine next wants a `Tick`.
    pub fn wake_at(&self) -> Option<Instant> {
        match (self.deadline, self.due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether an action is outstanding.
    pub fn busy(&self) -> bool {
        self.busy
    }

    fn go(&mut self, step: &mut Step, to: State, now: Instant, reason: impl Into<String>) {
        let reason = reason.into();
        step.transition = Some(Transition {
            from: self.state,
            to,
            reason: reason.clone(),
        });
        self.state = to;
        self.since = now;
        self.reason = reason;
        self.epoch += 1;
        self.deadline = None;
        self.due = None;
        self.busy = false;
    }

    fn act(&mut self, step: &mut Step, a: Action) {
        self.busy = true;
        step.actions.push(a);
    }

    fn begin(&mut self, step: &mut Step, t: Target, now: Instant, why: String) {
        self.target = Some(t.clone());
        self.next = None;
        self.attempt = 0;
        self.failures = 0;
        self.go(step, State::Pulling, now, why);
        self.act(step, Action::EnsureImage(t));
    }

    /// Drain (when serving) or stop at once (when not), then do `next`.
    fn wind_down(&mut self, step: &mut Step, next: Next, now: Instant, why: String) {
        self.next = Some(next);
        if self.state == State::Ready {
            self.go(step, State::Draining, now, why);
            let deadline = now + self.timings.drain_timeout;
            self.act(step, Action::Drain { deadline });
        } else {
            self.go(step, State::Stopping, now, why);
            self.act(step, Action::StopContainer);
        }
    }

    /// A start attempt failed: walk the backoff if this was a restart, else `error`.
    fn start_failed(&mut self, step: &mut Step, now: Instant, why: String) {
        self.last_error = Some(why.clone());
        if self.attempt == 0 || self.attempt > self.timings.backoff.len() {
            self.go(step, State::Error, now, why);
            self.act(step, Action::StopContainer);
            return;
        }
        let wait = self.timings.backoff[self.attempt - 1];
        self.go(
            step,
            State::Restarting,
            now,
            format!("{why}; restart {} in {wait:?}", self.attempt + 1),
        );
        self.attempt += 1;
        self.due = Some(now + wait);
    }

    /// Begin a restart series (from ready).
    fn restart(&mut self, step: &mut Step, now: Instant, why: String) {
        self.last_error = Some(why.clone());
        self.restarts += 1;
        step.restarted = true;
        self.attempt = 1;
        self.failures = 0;
        self.go(step, State::Restarting, now, format!("{why}; restarting"));
        if let Some(t) = self.target.clone() {
            self.act(step, Action::Create(t));
        }
    }

    /// Applies a command; refuses one that makes no sense in this state.
    pub fn command(&mut self, ev: Event, now: Instant) -> Result<Step, Refused> {
        let mut step = Step::default();
        match ev {
            Event::Select(t) => {
                if self.target.as_ref() == Some(&t)
                    && matches!(
                        self.state,
                        State::Ready | State::Starting | State::Pulling | State::Restarting
                    )
                {
                    return Ok(step);
                }
                if self.state == State::Draining || self.state == State::Stopping {
                    // The running stop finishes first; then this target starts.
                    self.next = Some(Next::Start(t));
                    return Ok(step);
                }
                let why = format!("select {} {}", t.backend.as_str(), t.model);
                match self.state {
                    State::None => self.begin(&mut step, t, now, why),
                    _ if self.state == State::Ready
                        && self.target.as_ref().map(|c| c.backend) == Some(LocalKind::Ollama)
                        && t.backend == LocalKind::Ollama =>
                    {
                        self.ollama_switch(&mut step, t.model, now, why)
                    }
                    _ => self.wind_down(&mut step, Next::Start(t), now, why),
                }
            }
            Event::SwitchModel(m) => {
                let Some(cur) = self.target.clone() else {
                    return Err(Refused(
                        "no backend is selected: select one with a model first".into(),
                    ));
                };
                if self.state == State::None {
                    return Err(Refused(
                        "no backend runs: select one with a model first".into(),
                    ));
                }
                return self.command(
                    Event::Select(Target {
                        backend: cur.backend,
                        model: m,
                    }),
                    now,
                );
            }
            Event::Stop => match self.state {
                State::None => {}
                State::Draining | State::Stopping => self.next = Some(Next::Stop),
                _ => self.wind_down(&mut step, Next::Stop, now, "stop".into()),
            },
            Event::Retry => {
                if self.state != State::Error {
                    return Err(Refused(format!(
                        "retry is for the error state; the backend is {}",
                        self.state.as_str()
                    )));
                }
                let Some(t) = self.target.clone() else {
                    return Err(Refused("nothing to retry: select a backend".into()));
                };
                self.begin(&mut step, t, now, "retry".into());
            }
            Event::Adopt(t) => {
                self.target = Some(t);
                self.attempt = 0;
                self.go(
                    &mut step,
                    State::Starting,
                    now,
                    "adopted a running container of ours",
                );
                self.deadline = Some(now + self.timings.start_timeout);
                self.due = Some(now);
            }
            other => return Ok(self.outcome(other, now)),
        }
        Ok(step)
    }

    fn ollama_switch(&mut self, step: &mut Step, model: String, now: Instant, why: String) {
        if let Some(t) = self.target.as_mut() {
            t.model = model.clone();
        }
        self.go(step, State::Pulling, now, why);
        self.act(step, Action::OllamaLoad(model));
    }

    /// Applies an action's outcome or a tick. Outcomes that do not fit the state (a
    /// late answer to a superseded action) change nothing.
    pub fn outcome(&mut self, ev: Event, now: Instant) -> Step {
        let mut step = Step::default();
        match (self.state, ev) {
            (_, Event::Tick) => self.tick(&mut step, now),
            (State::Pulling, Event::ImageReady) => {
                self.busy = false;
                if let Some(t) = self.target.clone() {
                    self.go(&mut step, State::Starting, now, "image present; creating");
                    self.act(&mut step, Action::Create(t));
                }
            }
            (State::Pulling, Event::PullFailed(e)) => {
                self.last_error = Some(e.clone());
                self.go(&mut step, State::Error, now, e);
            }
            (State::Pulling, Event::Healthy) => {
                // Ollama loaded the new model in place.
                self.last_health = Some("ok".into());
                self.go(&mut step, State::Ready, now, "model loaded");
                self.due = Some(now + self.timings.health_interval);
            }
            (State::Starting | State::Restarting, Event::Created) => {
                self.busy = false;
                if self.state == State::Restarting {
                    self.go(&mut step, State::Starting, now, "container recreated");
                }
                self.deadline = Some(now + self.timings.start_timeout);
                self.due = Some(now);
            }
            (State::Starting | State::Restarting, Event::CreateFailed(e)) => {
                self.busy = false;
                self.start_failed(&mut step, now, e);
            }
            (State::Starting, Event::Healthy) => {
                self.last_health = Some("ok".into());
                self.failures = 0;
                self.attempt = 0;
                self.last_error = None;
                self.go(&mut step, State::Ready, now, "healthy");
                self.due = Some(now + self.timings.health_interval);
            }
            (State::Starting, Event::Unhealthy(e)) => {
                self.busy = false;
                self.last_health = Some(e);
                self.due = Some(now + self.timings.start_poll);
            }
            (State::Starting, Event::Down(e)) => {
                self.busy = false;
                self.last_health = Some(e.clone());
                self.start_failed(
                    &mut step,
                    now,
                    format!("the container stopped while starting: {e}"),
                );
            }
            (State::Ready, Event::Healthy) => {
                self.busy = false;
                self.failures = 0;
                self.last_health = Some("ok".into());
                self.due = Some(now + self.timings.health_interval);
            }
            (State::Ready, Event::Unhealthy(e)) => {
                self.busy = false;
                step.health_failed = true;
                self.failures += 1;
                self.last_health = Some(e.clone());
                if self.failures >= self.timings.failures_before_restart {
                    let n = self.failures;
                    self.restart(&mut step, now, format!("{n} failed health checks ({e})"));
                } else {
                    self.due = Some(now + self.timings.health_interval);
                }
            }
            (State::Ready, Event::Down(e)) => {
                step.health_failed = true;
                self.last_health = Some(e.clone());
                self.restart(&mut step, now, e);
            }
            (State::Draining, Event::Drained { cut }) => {
                step.cut = cut;
                let why = if cut > 0 {
                    format!("drain timed out with {cut} requests in flight")
                } else {
                    "drained".into()
                };
                self.go(&mut step, State::Stopping, now, why);
                self.act(&mut step, Action::StopContainer);
            }
            (State::Stopping, Event::Stopped) => match self.next.take() {
                Some(Next::Start(t)) => {
                    let why = format!("stopped; starting {} {}", t.backend.as_str(), t.model);
                    self.begin(&mut step, t, now, why);
                }
                _ => {
                    self.target = None;
                    self.go(&mut step, State::None, now, "stopped");
                }
            },
            (State::Stopping, Event::StopFailed(e)) => {
                self.last_error = Some(e.clone());
                self.go(&mut step, State::Error, now, format!("stop failed: {e}"));
            }
            (State::Error, Event::Stopped | Event::StopFailed(_)) => self.busy = false,
            _ => {}
        }
        step
    }

    fn tick(&mut self, step: &mut Step, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) && self.state == State::Starting {
            let t = self.timings.start_timeout;
            self.start_failed(
                step,
                now,
                format!("not healthy within the start timeout ({t:?})"),
            );
            return;
        }
        if self.busy || self.due.is_none_or(|d| now < d) {
            return;
        }
        self.due = None;
        match self.state {
            State::Starting => self.act(step, Action::Probe { starting: true }),
            State::Ready => self.act(step, Action::Probe { starting: false }),
            State::Restarting => {
                if let Some(t) = self.target.clone() {
                    self.act(step, Action::Create(t));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings() -> Timings {
        Timings {
            health_interval: Duration::from_secs(30),
            failures_before_restart: 3,
            backoff: vec![
                Duration::from_secs(30),
                Duration::from_secs(60),
                Duration::from_secs(120),
            ],
            start_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(15),
            start_poll: Duration::from_millis(500),
        }
    }

    fn vllm(m: &str) -> Target {
        Target {
            backend: LocalKind::Vllm,
            model: m.into(),
        }
    }

    /// Drives a machine to ready with `t`.
    fn ready(t: Target) -> (Machine, Instant) {
        let now = Instant::now();
        let mut m = Machine::new(timings(), now);
        let s = m.command(Event::Select(t.clone()), now).unwrap();
        assert_eq!(s.actions, vec![Action::EnsureImage(t.clone())]);
        let s = m.outcome(Event::ImageReady, now);
        assert_eq!(s.actions, vec![Action::Create(t)]);
        m.outcome(Event::Created, now);
        let s = m.outcome(Event::Tick, now);
        assert_eq!(s.actions, vec![Action::Probe { starting: true }]);
        m.outcome(Event::Healthy, now);
        assert_eq!(m.state, State::Ready);
        (m, now)
    }

    #[test]
    fn select_pull_start_ready() {
        let (m, now) = ready(vllm("a"));
        assert_eq!(m.wake_at(), Some(now + Duration::from_secs(30)));
        assert_eq!(m.state.routing(), LocalState::Ready);
    }

    #[test]
    fn unhealthy_while_starting_polls_until_the_timeout() {
        let now = Instant::now();
        let mut m = Machine::new(timings(), now);
        m.command(Event::Select(vllm("a")), now).unwrap();
        m.outcome(Event::ImageReady, now);
        m.outcome(Event::Created, now);
        let mut t = now;
        for _ in 0..5 {
            assert_eq!(
                m.outcome(Event::Tick, t).actions,
                vec![Action::Probe { starting: true }]
            );
            m.outcome(Event::Unhealthy("503".into()), t);
            assert_eq!(m.wake_at(), Some(t + Duration::from_millis(500)));
            t += Duration::from_millis(500);
        }
        let s = m.outcome(Event::Tick, now + Duration::from_secs(120));
        assert_eq!(m.state, State::Error);
        assert_eq!(s.actions, vec![Action::StopContainer]);
        assert!(m.last_error.as_deref().unwrap().contains("start timeout"));
        // error is left by retry.
        let s = m.command(Event::Retry, t).unwrap();
        assert_eq!(m.state, State::Pulling);
        assert_eq!(s.actions, vec![Action::EnsureImage(vllm("a"))]);
    }

    #[test]
    fn three_failures_restart_and_success_resets() {
        let (mut m, mut now) = ready(vllm("a"));
        for i in 1..=2 {
            now += Duration::from_secs(30);
            assert_eq!(m.outcome(Event::Tick, now).actions.len(), 1);
            let s = m.outcome(Event::Unhealthy("timeout".into()), now);
            assert!(s.health_failed);
            assert_eq!(m.failures, i);
            assert_eq!(m.state, State::Ready);
        }
        now += Duration::from_secs(30);
        m.outcome(Event::Tick, now);
        m.outcome(Event::Healthy, now);
        assert_eq!(m.failures, 0, "success resets the counter");
        for _ in 0..3 {
            now += Duration::from_secs(30);
            m.outcome(Event::Tick, now);
            m.outcome(Event::Unhealthy("timeout".into()), now);
        }
        assert_eq!(m.state, State::Restarting);
        assert_eq!(m.restarts, 1);
    }

    #[test]
    fn a_dead_container_restarts_at_once_then_walks_the_backoff_to_error() {
        let (mut m, mut now) = ready(vllm("a"));
        let s = m.outcome(Event::Down("exited with 137".into()), now);
        assert!(s.restarted);
        assert_eq!(s.actions, vec![Action::Create(vllm("a"))]);
        // Each recreated container dies again: 30, 60, 120 s, then error.
        for wait in [30u64, 60, 120] {
            m.outcome(Event::Created, now);
            assert_eq!(m.state, State::Starting);
            m.outcome(Event::Tick, now);
            m.outcome(Event::Down("exited with 1".into()), now);
            assert_eq!(m.state, State::Restarting, "wait {wait}");
            assert_eq!(m.wake_at(), Some(now + Duration::from_secs(wait)));
            assert!(m.outcome(Event::Tick, now).actions.is_empty(), "not yet");
            now += Duration::from_secs(wait);
            assert_eq!(
                m.outcome(Event::Tick, now).actions,
                vec![Action::Create(vllm("a"))]
            );
        }
        m.outcome(Event::Created, now);
        m.outcome(Event::Tick, now);
        m.outcome(Event::Down("exited with 1".into()), now);
        assert_eq!(m.state, State::Error);
        assert_eq!(m.restarts, 1);
    }

    #[test]
    fn a_restart_that_comes_up_resets_the_series() {
        let (mut m, now) = ready(vllm("a"));
        m.outcome(Event::Down("oom".into()), now);
        m.outcome(Event::Created, now);
        m.outcome(Event::Tick, now);
        m.outcome(Event::Healthy, now);
        assert_eq!(m.state, State::Ready);
        assert_eq!(m.attempt, 0);
        assert_eq!(m.last_error, None);
    }

    #[test]
    fn switch_model_drains_stops_and_starts_the_new_one() {
        let (mut m, now) = ready(vllm("a"));
        let s = m.command(Event::SwitchModel("b".into()), now).unwrap();
        assert_eq!(m.state, State::Draining);
        assert_eq!(m.state.routing(), LocalState::Draining);
        assert_eq!(
            s.actions,
            vec![Action::Drain {
                deadline: now + Duration::from_secs(15)
            }]
        );
        let s = m.outcome(Event::Drained { cut: 2 }, now);
        assert_eq!(s.cut, 2);
        assert_eq!(s.actions, vec![Action::StopContainer]);
        let s = m.outcome(Event::Stopped, now);
        assert_eq!(m.state, State::Pulling);
        assert_eq!(s.actions, vec![Action::EnsureImage(vllm("b"))]);
        assert_eq!(m.target, Some(vllm("b")));
    }

    #[test]
    fn switch_backend_and_stop() {
        let (mut m, now) = ready(vllm("a"));
        let sg = Target {
            backend: LocalKind::Sglang,
            model: "a".into(),
        };
        m.command(Event::Select(sg.clone()), now).unwrap();
        assert_eq!(m.state, State::Draining);
        // A stop while draining replaces what comes next.
        m.command(Event::Stop, now).unwrap();
        m.outcome(Event::Drained { cut: 0 }, now);
        m.outcome(Event::Stopped, now);
        assert_eq!(m.state, State::None);
        assert_eq!(m.target, None);
        assert_eq!(m.state.routing(), LocalState::Stopped);
    }

    #[test]
    fn ollama_switches_models_in_place() {
        let now = Instant::now();
        let (mut m, _) = ready(Target {
            backend: LocalKind::Ollama,
            model: "llama3.2".into(),
        });
        let s = m.command(Event::SwitchModel("qwen3".into()), now).unwrap();
        assert_eq!(s.actions, vec![Action::OllamaLoad("qwen3".into())]);
        m.outcome(Event::Healthy, now);
        assert_eq!(m.state, State::Ready);
        assert_eq!(m.target.as_ref().unwrap().model, "qwen3");
    }

    #[test]
    fn refusals_and_stale_outcomes() {
        let now = Instant::now();
        let mut m = Machine::new(timings(), now);
        assert!(m.command(Event::SwitchModel("x".into()), now).is_err());
        assert!(m.command(Event::Retry, now).is_err());
        // A late probe answer in a state it does not belong to changes nothing.
        let s = m.outcome(Event::Healthy, now);
        assert!(s.transition.is_none());
        assert_eq!(m.state, State::None);
        // Selecting what already runs does nothing.
        let (mut m, now) = ready(vllm("a"));
        let s = m.command(Event::Select(vllm("a")), now).unwrap();
        assert!(s.actions.is_empty() && s.transition.is_none());
    }

    #[test]
    fn adopting_probes_and_a_stop_while_starting_skips_the_drain() {
        let now = Instant::now();
        let mut m = Machine::new(timings(), now);
        m.command(Event::Adopt(vllm("a")), now).unwrap();
        assert_eq!(m.state, State::Starting);
        assert_eq!(
            m.outcome(Event::Tick, now).actions,
            vec![Action::Probe { starting: true }]
        );
        let s = m.command(Event::Stop, now).unwrap();
        assert_eq!(m.state, State::Stopping);
        assert_eq!(s.actions, vec![Action::StopContainer]);
    }

    /// Drives `m` on tokio's clock: sleeps until it wants a tick and answers each probe
    /// with `answer`, until `until` says stop. Returns the probes made.
    async fn drive(m: &mut Machine, answer: Event, until: impl Fn(&Machine) -> bool) -> u32 {
        let mut probes = 0;
        while !until(m) {
            tokio::time::sleep_until(m.wake_at().unwrap()).await;
            let s = m.outcome(Event::Tick, Instant::now());
            for a in s.actions {
                if matches!(a, Action::Probe { .. }) {
                    probes += 1;
                    m.outcome(answer.clone(), Instant::now());
                }
            }
        }
        probes
    }

    #[tokio::test(start_paused = true)]
    async fn the_start_budget_on_the_paused_clock() {
        let t0 = Instant::now();
        let mut m = Machine::new(timings(), t0);
        m.command(Event::Select(vllm("a")), t0).unwrap();
        m.outcome(Event::ImageReady, t0);
        // A slow pull is outside the budget: the clock starts when the container does.
        tokio::time::advance(Duration::from_secs(600)).await;
        let created = Instant::now();
        m.outcome(Event::Created, created);
        let probes = drive(&mut m, Event::Unhealthy("503".into()), |m| {
            m.state != State::Starting
        })
        .await;
        assert_eq!(m.state, State::Error);
        assert_eq!(Instant::now() - created, Duration::from_secs(120));
        // One probe every 500 ms over 120 s.
        assert!((239..=241).contains(&probes), "{probes}");
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_every_interval_restart_after_three_failures() {
        let (mut m, _) = ready(vllm("a"));
        let t0 = Instant::now();
        let probes = drive(&mut m, Event::Unhealthy("timeout".into()), |m| {
            m.state != State::Ready
        })
        .await;
        assert_eq!(probes, 3);
        assert_eq!(m.state, State::Restarting);
        assert_eq!(Instant::now() - t0, Duration::from_secs(90));
    }
}
