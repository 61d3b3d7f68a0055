//! [`Control`]: commands, status, hardware; the background service that runs the task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::{mpsc, oneshot, watch};

use super::run::Driver;
use super::{unix_ms, Command, CommandError, Desired, Inner, Request, Status};
use crate::config::{ControlSettings, LocalKind};
use crate::control::hardware::{self, Hardware};
use crate::control::machine::State;
use crate::control::metrics::ControlMetrics;
use crate::state::Hub;

/// The handle the admin API and the background service share.
#[derive(Clone)]
pub struct Control {
    pub(super) inner: Arc<Inner>,
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
