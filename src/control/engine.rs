//! The container engine as the controller needs it: a small trait, so the driver does
//! not depend on Docker's types. `control::docker` implements it over the Docker Engine
//! API.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{GpuVendor, Gpus};

/// The label every container the controller creates carries.
pub const MANAGED_LABEL: &str = "switchyard.managed";
/// The backend kind label.
pub const BACKEND_LABEL: &str = "switchyard.backend";
/// The model label.
pub const MODEL_LABEL: &str = "switchyard.model";
/// The cluster label (`[control] instance`).
pub const INSTANCE_LABEL: &str = "switchyard.instance";

/// An engine failure, with a message an operator can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct EngineError(pub String);

/// What to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments.
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Bind mounts.
    pub volumes: Vec<String>,
    /// The server's port inside.
    pub port: u16,
    /// Published port (0: engine-assigned).
    pub host_port: u16,
    /// Address it is published on.
    pub host_ip: String,
    /// GPUs.
    pub gpus: Gpus,
    /// How GPUs are passed.
    pub vendor: GpuVendor,
    /// Shared memory (`None`: `ipc = host`).
    pub shm_bytes: Option<i64>,
    /// Labels (the managed label among them).
    pub labels: Vec<(String, String)>,
    /// Seconds `docker stop` waits by default.
    pub stop_timeout_secs: i64,
}

/// A container as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    /// Id.
    pub id: String,
    /// Name (without the leading `/`).
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Running now.
    pub running: bool,
    /// `created`, `running`, `exited`, …
    pub status: String,
    /// Exit code once it stopped.
    pub exit_code: Option<i64>,
    /// Killed for memory.
    pub oom_killed: bool,
    /// The host port its server port is published on.
    pub host_port: Option<u16>,
}

impl Container {
    /// Whether the controller created it.
    pub fn managed(&self) -> bool {
        self.labels.get(MANAGED_LABEL).map(String::as_str) == Some("true")
    }

    /// Why it is not running, for the log and `last_error`.
    pub fn down_reason(&self) -> String {
        if self.oom_killed {
            "the container was killed for lack of memory (OOM)".into()
        } else {
            match self.exit_code {
                Some(c) => format!("the container is {} (exit code {c})", self.status),
                None => format!("the container is {}", self.status),
            }
        }
    }
}

/// Image pull progress.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The last status line.
    pub status: String,
    /// Bytes done over every layer seen so far.
    pub completed: u64,
    /// Bytes in every layer seen so far.
    pub total: u64,
}

/// A container's death as the engine's event stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The container's id.
    pub id: String,
    /// `die` or `oom`.
    pub action: String,
    /// The exit code (`die`).
    pub exit_code: Option<String>,
}

/// A progress callback.
pub type OnProgress<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// What the controller asks of a container engine.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Whether the engine answers.
    async fn ping(&self) -> Result<(), EngineError>;
    /// Whether the engine has a GPU runtime (`nvidia` among its runtimes).
    async fn gpu_runtime(&self) -> Result<bool, EngineError>;
    /// Whether `image` is present locally.
    async fn image_present(&self, image: &str) -> Result<bool, EngineError>;
    /// Pulls `image`, reporting progress.
    async fn pull(&self, image: &str, progress: OnProgress<'_>) -> Result<(), EngineError>;
    /// The container with this name or id, if any.
    async fn inspect(&self, name: &str) -> Result<Option<Container>, EngineError>;
    /// Every container (running or not) with the managed label and this instance label.
    async fn list_managed(&self, instance: &str) -> Result<Vec<Container>, EngineError>;
    /// Creates and starts a container; answers it as inspected after the start.
    async fn create_start(&self, spec: &ContainerSpec) -> Result<Container, EngineError>;
    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes it. A missing one is fine.
    async fn stop_remove(&self, id: &str, grace: Duration) -> Result<(), EngineError>;
    /// Deaths (`die`, `oom`) of this instance's managed containers, as they happen.
    fn deaths(
        &self,
        instance: &str,
    ) -> futures_util::stream::BoxStream<'static, Result<Death, EngineError>>;
    /// Runs `cmd` inside the container; (exit code, stdout).
    async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<(i64, String), EngineError>;
}
