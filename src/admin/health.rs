//! The public (no secret) routes: health, readiness, in-flight counts, metrics, the
//! local backend's statistics, CLI sessions.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::error::AdminError;
use super::reply::{json, reply, Reply};
use super::Call;

/// `GET /health`
pub async fn health(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let mut v = json!({"status": "ok"});
    if !hub.cli_pools.is_empty() {
        let pools: serde_json::Map<String, serde_json::Value> = hub
            .cli_pools
            .iter()
            .map(|p| (p.name().to_string(), p.summary()))
            .collect();
        v["cli"] = serde_json::Value::Object(pools);
    }
    Ok(json(200, &v))
}

/// `GET /sessions`
pub async fn sessions(c: Call<'_>) -> Result<Reply, AdminError> {
    let all: Vec<serde_json::Value> = c
        .admin
        .hub
        .cli_pools
        .iter()
        .flat_map(|p| p.describe())
        .collect();
    Ok(json(200, &serde_json::Value::Array(all)))
}

/// `GET /health/ready`
pub async fn ready(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let snap = hub.snapshot_guard();
    let disabled: Vec<serde_json::Value> = snap
        .providers
        .iter()
        .filter_map(|p| Some(json!({"provider": p.name, "reason": p.disabled?})))
        .collect();
    Ok(if hub.shutting_down.load(Ordering::Relaxed) {
        json(503, &json!({"ready": false, "reason": "shutting down"}))
    } else if snap.generation == 0 {
        json(
            503,
            &json!({"ready": false, "reason": "no configuration snapshot"}),
        )
    } else {
        let store = hub.tenancy.store();
        json(
            200,
            &json!({"ready": true, "store": store.kind(), "store_up": store.is_up(), "disabled_providers": disabled}),
        )
    })
}

/// `GET /health/inflight`: this replica's requests in flight (total, local backend, per
/// provider) and the cluster's local-backend total from every replica's published count.
pub async fn inflight(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let snap = hub.snapshot();
    let mut providers = serde_json::Map::new();
    let mut total = 0;
    for p in &snap.providers {
        let n = p.counters.inflight();
        total += n;
        providers.insert(p.name.clone(), json!(n));
    }
    let local = hub.local_inflight();
    let mut replicas = serde_json::Map::new();
    let mut cluster = local;
    let mut shared = false;
    if let Ok(list) = hub.tenancy.store().inflight_cluster().await {
        shared = true;
        for (r, n) in list {
            if r != hub.replica_id {
                cluster += n;
                replicas.insert(r, json!(n));
            }
        }
    }
    replicas.insert(hub.replica_id.clone(), json!(local));
    Ok(json(
        200,
        &json!({
            "total": total,
            "local": local,
            "providers": providers,
            "replica": hub.replica_id,
            "cluster": {"local": cluster, "replicas": replicas, "shared": shared},
        }),
    ))
}

/// `GET /metrics`
pub async fn metrics(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    hub.sample_connections();
    Ok(reply(
        200,
        "text/plain; version=0.0.4",
        hub.metrics.render(),
    ))
}

/// `GET /v1/inference/stats`
pub async fn stats(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let snap = hub.snapshot();
    let backend = match &snap.local {
        Some(l) => {
            json!({"kind": l.kind.as_str(), "url": l.url, "state": l.state.as_str(), "models": l.models})
        }
        None => json!({"kind": "none"}),
    };
    Ok(json(200, &hub.inference.report(backend)))
}
