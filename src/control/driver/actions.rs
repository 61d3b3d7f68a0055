//! The actions the machine asks for, each carried out against the engine and answered
//! with the [`Event`] its outcome is.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{url_of, Inner};
use crate::config::{GpuVendor, Gpus, Profile};
use crate::control::engine::{
    ContainerSpec, Engine, Progress, BACKEND_LABEL, INSTANCE_LABEL, MANAGED_LABEL, MODEL_LABEL,
};
use crate::control::hardware;
use crate::control::health;
use crate::control::machine::{Action, Event, Target};

/// What an action needs.
pub(super) struct Ctx {
    pub(super) inner: Arc<Inner>,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) target: Option<Target>,
}

impl Ctx {
    fn profile(&self) -> Option<&Profile> {
        self.inner.cfg.profile(self.target.as_ref()?.backend)
    }

    pub(super) async fn run(self, a: Action) -> Event {
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
                let cut = crate::control::drain::wait(&self.inner.hub, settle, deadline).await;
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
