//! Keeps every CLI pool at its size: warms new processes, notices which are ready,
//! retires used ones (stdin closed, then a kill if they linger), replaces dead ones
//! with a backoff, and checks idle ones are alive. A background service, so shutdown
//! waits for it; at shutdown every process is closed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::{CliPool, Session, SessionState};

/// How often the pools are looked after.
const TICK: Duration = Duration::from_millis(200);
/// A process that printed nothing but is still running after this is taken as ready
/// (some CLIs initialise only when the first message arrives).
const READY_AFTER: Duration = Duration::from_secs(1);
/// A retired process gets this long to exit after its stdin closed, then is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// The background service of every CLI pool.
pub struct Maintainer {
    pools: Vec<Arc<CliPool>>,
}

impl Maintainer {
    /// Looks after `pools`.
    pub fn new(pools: Vec<Arc<CliPool>>) -> Self {
        Self { pools }
    }
}

#[async_trait]
impl BackgroundService for Maintainer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.pools.is_empty() {
            return;
        }
        let mut last_ping = Instant::now();
        loop {
            let ping = last_ping.elapsed()
                >= self
                    .pools
                    .iter()
                    .map(|p| p.settings.keep_alive)
                    .min()
                    .unwrap_or(Duration::from_secs(300));
            if ping {
                last_ping = Instant::now();
            }
            for p in &self.pools {
                p.look_after(ping).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => break,
            }
        }
        for p in &self.pools {
            p.close_all().await;
        }
    }
}

impl CliPool {
    /// One round of care.
    async fn look_after(&self, ping: bool) {
        let list: Vec<Arc<Session>> = self.sessions.lock().clone();
        for s in &list {
            match s.state() {
                SessionState::Warming => self.check_ready(s).await,
                SessionState::Retiring => self.reap(s, false).await,
                SessionState::Dead => self.reap(s, true).await,
                SessionState::Idle if ping => self.check_alive(s).await,
                _ => {}
            }
        }
        self.fill();
        self.report();
        self.changed.notify_waiters();
    }

    async fn check_ready(&self, s: &Arc<Session>) {
        let mut guard = s.proc.lock().await;
        let Some(p) = guard.as_mut() else {
            s.set(SessionState::Dead);
            return;
        };
        if !matches!(p.child.try_wait(), Ok(None)) {
            s.set(SessionState::Dead);
            return;
        }
        // The init line (or anything) says the process is up; a quiet one that is still
        // running after a moment is taken as ready too.
        let printed = tokio::time::timeout(Duration::from_millis(5), p.lines.next_line()).await;
        let ready = match printed {
            Ok(Ok(Some(_))) => true,
            Ok(_) => {
                s.set(SessionState::Dead);
                return;
            }
            Err(_) => s.info.lock().spawned.elapsed() >= READY_AFTER,
        };
        if ready {
            s.set(SessionState::Idle);
            self.backoff.lock().0 = 0;
        }
    }

    async fn check_alive(&self, s: &Arc<Session>) {
        let mut guard = s.proc.lock().await;
        let alive = guard
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)));
        s.info.lock().last_ping = Some((SystemTime::now(), alive));
        if !alive {
            s.set(SessionState::Dead);
        }
    }

    /// Closes a retired process (stdin first, so it can finish writing its session),
    /// or a dead one, and forgets it once it has exited.
    async fn reap(&self, s: &Arc<Session>, dead: bool) {
        let mut guard = s.proc.lock().await;
        let gone = match guard.as_mut() {
            None => true,
            Some(p) => {
                p.stdin = None;
                let exited = matches!(p.child.try_wait(), Ok(Some(_)));
                let lingering = s
                    .info
                    .lock()
                    .retired_at
                    .is_some_and(|t| t.elapsed() >= RETIRE_GRACE);
                if !exited && (dead || lingering) {
                    let _ = p.child.start_kill();
                }
                exited || dead || lingering
            }
        };
        if !gone {
            return;
        }
        *guard = None;
        drop(guard);
        if dead {
            self.metrics.restarts.inc();
            let mut b = self.backoff.lock();
            b.0 = b.0.saturating_add(1);
            let wait = Duration::from_secs(1u64 << b.0.saturating_sub(1).min(6))
                .min(Duration::from_secs(60));
            b.1 = Some(Instant::now() + wait);
            log::warn!(
                "cli provider {}: a process died; a new one starts in {wait:?}",
                self.name
            );
        }
        self.sessions.lock().retain(|x| !Arc::ptr_eq(x, s));
    }

    /// Starts processes until the pool has its size (waiting out the backoff).
    fn fill(&self) {
        loop {
            let warm = self
                .sessions
                .lock()
                .iter()
                .filter(|s| {
                    let i = s.info.lock();
                    !i.overflow
                        && matches!(
                            i.state,
                            SessionState::Warming | SessionState::Idle | SessionState::Busy
                        )
                })
                .count();
            if warm >= self.settings.pool_size {
                return;
            }
            if self.backoff.lock().1.is_some_and(|t| Instant::now() < t) {
                return;
            }
            if let Err(e) = self.start_session(false, SessionState::Warming) {
                let mut b = self.backoff.lock();
                b.0 = b.0.saturating_add(1);
                let wait = Duration::from_secs(1u64 << b.0.saturating_sub(1).min(6))
                    .min(Duration::from_secs(60));
                b.1 = Some(Instant::now() + wait);
                log::error!(
                    "cli provider {}: cannot start {:?}: {e}; retrying in {wait:?}",
                    self.name,
                    self.settings.command.first()
                );
                return;
            }
        }
    }

    fn report(&self) {
        let counts = self.summary();
        for st in SessionState::ALL {
            let n = counts[st.as_str()].as_i64().unwrap_or(0);
            self.metrics
                .sessions
                .with_label_values(&[self.name.as_str(), st.as_str()])
                .set(n);
        }
    }

    /// Closes every process (at shutdown).
    async fn close_all(&self) {
        let list: Vec<Arc<Session>> = std::mem::take(&mut *self.sessions.lock());
        for s in list {
            let mut guard = s.proc.lock().await;
            if let Some(mut p) = guard.take() {
                p.stdin = None;
                let _ = tokio::time::timeout(Duration::from_millis(500), p.child.wait()).await;
                let _ = p.child.start_kill();
            }
        }
    }
}
