//! The controller task: holds the lease, reconciles with what runs, feeds the
//! [`Machine`](super::machine::Machine) commands, timers and action outcomes, runs its actions one at a time
//! (a transition aborts the running one: its answer would be stale), and publishes
//! every transition: runtime overrides for routing, `control:status` for the API of
//! every replica, metrics and a log line.
//!
//! A replica that does not hold the lease acts on nothing: it mirrors the holder's
//! status and hands commands over through `control:desired`.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the command, status and hand-over types |
//! | `handle.rs` | [`Control`], the handle the admin API and the service share |
//! | `run.rs` | the task: lease, reconcile, commands, timers, publishing |
//! | `actions.rs` | each [`Action`](super::machine::Action) carried out against the engine |

mod actions;
mod handle;
mod run;

pub use handle::{Control, ControlService};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::engine::{Container, Engine, Progress};
use super::hardware::Hardware;
use super::metrics::ControlMetrics;
use crate::config::{ControlSettings, Profile};
use crate::state::Hub;

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
