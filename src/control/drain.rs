//! The drain's wait: after `draining` is published, give every replica one refresh
//! interval to see it, then wait until the cluster's local in-flight count is 0 or the
//! deadline passes. Answers how many requests were still in flight at the deadline
//! (the stop that follows cuts them; each gets an error event, not a hang).

use std::time::Duration;

use tokio::time::Instant;

use crate::state::Hub;

/// Local-backend requests in flight on every replica: this one's live count plus the
/// others' published counts (only this one's while the store is down).
pub async fn cluster_local_inflight(hub: &Hub) -> i64 {
    let mut n = hub.local_inflight();
    if let Ok(list) = hub.tenancy.store().inflight_cluster().await {
        n += list
            .iter()
            .filter(|(r, _)| *r != hub.replica_id)
            .map(|(_, c)| *c)
            .sum::<i64>();
    }
    n
}

/// Waits `settle`, then until nothing is in flight or `deadline`. Returns the count
/// left at the deadline (0 when drained).
pub async fn wait(hub: &Hub, settle: Duration, deadline: Instant) -> u64 {
    let settle_until = (Instant::now() + settle).min(deadline);
    tokio::time::sleep_until(settle_until).await;
    loop {
        let n = cluster_local_inflight(hub).await;
        if n <= 0 {
            return 0;
        }
        if Instant::now() >= deadline {
            return n as u64;
        }
        let next = (Instant::now() + Duration::from_millis(50)).min(deadline);
        tokio::time::sleep_until(next).await;
    }
}
