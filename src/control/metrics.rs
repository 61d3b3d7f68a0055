//! The controller's metrics, registered in the gateway's registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use super::machine::State;
use crate::metrics::Metrics;

const SECONDS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Controller metrics.
pub struct ControlMetrics {
    /// 1 for the current state, by state.
    pub state: IntGaugeVec,
    /// Transitions by from and to.
    pub transitions: IntCounterVec,
    /// Container restarts after failures.
    pub restarts: IntCounter,
    /// Failed health checks.
    pub health_failures: IntCounter,
    /// Drain durations.
    pub drain_seconds: Histogram,
    /// Requests still in flight when a drain timed out.
    pub drain_cut: IntCounter,
    /// Time from a start to healthy.
    pub start_seconds: Histogram,
    /// Bytes of the running pull: done and total.
    pub pull_bytes: IntGaugeVec,
    /// 1 while this replica holds the controller lease.
    pub leader: IntGauge,
}

impl ControlMetrics {
    /// Creates and registers them in `m`'s registry.
    pub fn new(m: &Metrics) -> Self {
        // Constructors only fail on invalid names, which are constants here.
        #[allow(clippy::unwrap_used)]
        let s = Self {
            state: m.add(IntGaugeVec::new(Opts::new("switchyard_control_state", "1 for the local backend's current controller state."), &["state"]).unwrap()),
            transitions: m.add(IntCounterVec::new(Opts::new("switchyard_control_transitions_total", "Controller state transitions."), &["from", "to"]).unwrap()),
            restarts: m.add(IntCounter::new("switchyard_control_restarts_total", "Container restarts after failed health checks or a dead container.").unwrap()),
            health_failures: m.add(IntCounter::new("switchyard_control_health_failures_total", "Failed health checks of a ready backend.").unwrap()),
            drain_seconds: m.add(Histogram::with_opts(HistogramOpts::new("switchyard_control_drain_seconds", "Time from draining to stopping.").buckets(SECONDS.to_vec())).unwrap()),
            drain_cut: m.add(IntCounter::new("switchyard_control_drain_cut_total", "Local requests still in flight when a drain timed out (ended with an error event).").unwrap()),
            start_seconds: m.add(Histogram::with_opts(HistogramOpts::new("switchyard_control_start_seconds", "Time from creating the container to healthy.").buckets(SECONDS.to_vec())).unwrap()),
            pull_bytes: m.add(IntGaugeVec::new(Opts::new("switchyard_control_pull_bytes", "Bytes of the running image or model pull."), &["kind"]).unwrap()),
            leader: m.add(IntGauge::new("switchyard_control_leader", "1 while this replica holds the controller lease.").unwrap()),
        };
        s.set_state(State::None);
        s
    }

    /// Marks `now` as the current state.
    pub fn set_state(&self, now: State) {
        for st in State::ALL {
            self.state
                .with_label_values(&[st.as_str()])
                .set(i64::from(st == now));
        }
    }
}
