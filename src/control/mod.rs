//! The control plane: a task inside the gateway that runs the local inference backend's
//! container (vLLM, SGLang, Ollama) through the Docker Engine API, watches its health,
//! restarts it with backoff, and switches backend or model through a drain that loses
//! no request. `docs/control-plane.md` is the user's guide.
//!
//! | file | concern |
//! |---|---|
//! | `machine.rs` | the lifecycle as a pure state machine |
//! | `driver/` | the task: runs the machine's actions, publishes its state, holds the lease (`run.rs`); the actions themselves (`actions.rs`); the handle the admin API uses (`handle.rs`) |
//! | `engine.rs`, `docker.rs` | the container engine trait and its bollard implementation |
//! | `health.rs` | each backend's readiness and liveness probes, Ollama pulls |
//! | `drain.rs` | waiting for the cluster's local in-flight requests |
//! | `hardware.rs` | GPUs, CPU, RAM, disk; GPU stats |
//! | `recommend.rs` | backend and model recommendation, VRAM estimates |
//! | `search.rs` | model search on the Hugging Face Hub |
//! | `metrics.rs` | the controller's Prometheus metrics |
//!
//! The controller publishes what routing needs as runtime overrides (backend, state,
//! URL) through [`crate::runtime::set`], so every replica routes by the same values; and
//! its status as `control:status` in the store, so any replica can answer for it.

pub mod docker;
pub mod drain;
pub mod driver;
pub mod engine;
pub mod hardware;
pub mod health;
pub mod machine;
pub mod metrics;
pub mod recommend;
pub mod search;

pub use driver::{Command, Control, Status};
