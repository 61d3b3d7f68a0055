//! The admin listener: health, readiness, in-flight counts, Prometheus metrics, the
//! local backend's inference statistics, and the admin API.
//!
//! | path | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` while the process runs (with each CLI pool's sessions by state) |
//! | `GET /health/ready` | 200 while serving; 503 once shutdown began |
//! | `GET /health/inflight` | this replica's and the cluster's in-flight requests |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/inference/stats` | local backend: requests, errors, latency, TTFT, tokens/s |
//! | `GET /sessions` | every CLI provider's processes (a JSON list; empty without one) |
//!
//! Admin API (every call needs `X-Admin-Secret`, compared in constant time; without a
//! configured secret the API is off):
//!
//! | call | effect |
//! |---|---|
//! | `POST /admin/keys` `{"tenant", "requests_per_minute", "tokens_per_minute", "models"}` | creates a key; the answer holds it, once |
//! | `GET /admin/keys` | key records (never the keys) |
//! | `DELETE /admin/keys/{id}` | revokes a key |
//! | `GET /admin/quotas` | today's quota use per provider |
//! | `GET /admin/config` | runtime configuration values and what is in effect |
//! | `PUT /admin/config/{inference.backend,inference.state,inference.url,inference.auth,routing.strategy}` | sets one (body: the value) |
//! | `DELETE /admin/config/{…}` | clears one (back to the file's value) |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use subtle::ConstantTimeEq;
use switchyard_filters::error::GatewayError;

use crate::state::Hub;
use crate::store::RuntimeField;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The admin HTTP application.
pub struct Admin {
    hub: Arc<Hub>,
}

/// An admin answer.
type Reply = Response<Vec<u8>>;

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

fn json_reply(status: u16, v: &serde_json::Value) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error_reply(e: &GatewayError) -> Response<Vec<u8>> {
    reply(e.status(), "application/json", e.body())
}

fn bad_request(msg: &str) -> Response<Vec<u8>> {
    reply(
        400,
        "application/json",
        switchyard_filters::error::error_json(
            msg,
            "invalid_request_error",
            None,
            Some("invalid_admin_request"),
        ),
    )
}

async fn read_body(session: &mut ServerSession) -> Result<BytesMut, Box<Reply>> {
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > MAX_ADMIN_BODY {
                    return Err(Box::new(error_reply(&GatewayError::BodyTooLarge(
                        MAX_ADMIN_BODY,
                    ))));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(_) => return Err(Box::new(bad_request("the request body could not be read"))),
        }
    }
}

impl Admin {
    /// Serves admin requests from `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// In-flight requests: this replica's (total, local backend, per provider) and the
    /// cluster's local-backend total from every replica's published count.
    pub async fn inflight(&self) -> serde_json::Value {
        let snap = self.hub.snapshot();
        let mut providers = serde_json::Map::new();
        let mut total = 0;
        for p in &snap.providers {
            let n = p.counters.inflight();
            total += n;
            providers.insert(p.name.clone(), json!(n));
        }
        let local = self.hub.local_inflight();
        let mut replicas = serde_json::Map::new();
        let mut cluster = local;
        let mut shared = false;
        if let Ok(list) = self.hub.tenancy.store().inflight_cluster().await {
            shared = true;
            for (r, n) in list {
                if r != self.hub.replica_id {
                    cluster += n;
                    replicas.insert(r, json!(n));
                }
            }
        }
        replicas.insert(self.hub.replica_id.clone(), json!(local));
        json!({
            "total": total,
            "local": local,
            "providers": providers,
            "replica": self.hub.replica_id,
            "cluster": {"local": cluster, "replicas": replicas, "shared": shared},
        })
    }

    fn stats(&self) -> serde_json::Value {
        let snap = self.hub.snapshot();
        let backend = match &snap.local {
            Some(l) => {
                json!({"kind": l.kind.as_str(), "url": l.url, "state": l.state.as_str(), "models": l.models})
            }
            None => json!({"kind": "none"}),
        };
        self.hub.inference.report(backend)
    }

    /// Whether the request carries the admin secret (constant-time comparison of
    /// SHA-256 digests, so neither content nor length leaks through timing).
    fn authorized(&self, session: &ServerSession) -> Result<(), Box<Reply>> {
        let Some(secret) = self.hub.tenancy.admin_secret() else {
            return Err(Box::new(reply(
                403,
                "application/json",
                switchyard_filters::error::error_json(
                    "The admin API is off: set the admin secret variable ([auth] admin_secret_env, default SWITCHYARD_ADMIN_SECRET).",
                    "permission_error",
                    None,
                    Some("admin_disabled"),
                ),
            )));
        };
        let given = session
            .req_header()
            .headers
            .get("x-admin-secret")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let a = crate::tenancy::hash_key(given);
        let b = crate::tenancy::hash_key(secret.expose().as_bytes());
        if bool::from(a.ct_eq(&b)) && !given.is_empty() {
            Ok(())
        } else {
            Err(Box::new(error_reply(&GatewayError::AdminUnauthorized)))
        }
    }

    async fn admin(
        &self,
        session: &mut ServerSession,
        method: &http::Method,
        path: &str,
    ) -> Response<Vec<u8>> {
        if let Err(r) = self.authorized(session) {
            let _ = session.drain_request_body().await;
            return *r;
        }
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let t = &self.hub.tenancy;
        match (method.as_str(), path) {
            ("GET", "/admin/keys") => {
                let mut data: Vec<serde_json::Value> = self
                    .hub
                    .settings
                    .auth
                    .keys
                    .iter()
                    .map(|k| {
                        let id = hex::encode(crate::tenancy::hash_key(k.key.expose().as_bytes()));
                        json!({"id": &id[..16], "tenant": k.tenant, "requests_per_minute": k.requests_per_minute,
                               "tokens_per_minute": k.tokens_per_minute, "models": k.models, "source": "config"})
                    })
                    .collect();
                match t.store().key_list().await {
                    Ok(list) => data.extend(list.into_iter().map(|(_, r)| {
                        json!({"id": r.id, "tenant": r.tenant, "requests_per_minute": r.requests_per_minute,
                               "tokens_per_minute": r.tokens_per_minute, "models": r.models,
                               "created_ms": r.created_ms, "source": "api"})
                    })),
                    Err(e) => return store_error(&e),
                }
                json_reply(200, &json!({"object": "list", "data": data}))
            }
            ("POST", "/admin/keys") => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewKey {
                    tenant: String,
                    #[serde(default)]
                    requests_per_minute: u64,
                    #[serde(default)]
                    tokens_per_minute: u64,
                    #[serde(default)]
                    models: Vec<String>,
                }
                let req: NewKey = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return bad_request(&format!("expected {{\"tenant\", \"requests_per_minute\", \"tokens_per_minute\", \"models\"}}: {e}")),
                };
                if req.tenant.is_empty() || req.tenant.contains(['{', '}', ' ', '\n']) {
                    return bad_request("`tenant` must be non-empty without braces or spaces");
                }
                match t
                    .create_key(
                        &req.tenant,
                        req.requests_per_minute,
                        req.tokens_per_minute,
                        req.models,
                    )
                    .await
                {
                    Ok((key, rec)) => json_reply(
                        201,
                        &json!({"key": key, "id": rec.id, "tenant": rec.tenant,
                                "requests_per_minute": rec.requests_per_minute,
                                "tokens_per_minute": rec.tokens_per_minute, "models": rec.models,
                                "created_ms": rec.created_ms}),
                    ),
                    Err(e) => store_error(&e),
                }
            }
            ("DELETE", p) if p.starts_with("/admin/keys/") => {
                let id = &p["/admin/keys/".len()..];
                match t.revoke_key(id).await {
                    Ok(true) => json_reply(200, &json!({"id": id, "revoked": true})),
                    Ok(false) => json_reply(
                        404,
                        &json!({"error": {"message": "no such key", "type": "invalid_request_error", "param": "id", "code": "key_not_found"}}),
                    ),
                    Err(e) => store_error(&e),
                }
            }
            ("GET", "/admin/quotas") => json_reply(200, &t.quota_report().await),
            ("GET", "/admin/config") => self.config_view().await,
            ("PUT" | "DELETE", p) if p.starts_with("/admin/config/") => {
                let Some(field) = RuntimeField::parse(&p["/admin/config/".len()..]) else {
                    return bad_request("unknown key: use inference.backend, inference.state, inference.url, inference.auth or routing.strategy");
                };
                let value = if method == http::Method::DELETE {
                    String::new()
                } else {
                    let raw = String::from_utf8_lossy(&body).trim().to_string();
                    // A JSON string or the bare value.
                    serde_json::from_str::<String>(&raw).unwrap_or(raw)
                };
                // Validate before writing: the store only ever holds good values from here.
                let mut probe = t.store().runtime_get().await.unwrap_or_default();
                let slot = match field {
                    RuntimeField::Backend => &mut probe.backend,
                    RuntimeField::State => &mut probe.state,
                    RuntimeField::Url => &mut probe.url,
                    RuntimeField::Auth => &mut probe.auth,
                    RuntimeField::Strategy => &mut probe.strategy,
                };
                *slot = (!value.is_empty()).then(|| value.clone());
                if let Err(e) = crate::state::runtime_overrides(&probe) {
                    return bad_request(&e);
                }
                if let Err(e) = t.store().runtime_set(field, &value).await {
                    return store_error(&e);
                }
                if let Err(e) = self.hub.apply_runtime().await {
                    return bad_request(&e);
                }
                self.config_view().await
            }
            _ => error_reply(&GatewayError::UnknownPath {
                method: method.to_string(),
                path: path.chars().take(200).collect(),
            }),
        }
    }

    async fn config_view(&self) -> Response<Vec<u8>> {
        let v = match self.hub.tenancy.store().runtime_get().await {
            Ok(v) => v,
            Err(e) => return store_error(&e),
        };
        let snap = self.hub.snapshot();
        let local = snap.local.as_ref().map(|l| {
            json!({"kind": l.kind.as_str(), "url": l.url, "state": l.state.as_str(), "models": l.models})
        });
        json_reply(
            200,
            &json!({
                "stored": {
                    "inference.backend": v.backend, "inference.state": v.state,
                    "inference.url": v.url, "inference.auth": v.auth.map(|_| "*****"),
                    "routing.strategy": v.strategy,
                },
                "effective": {"local": local, "routing.strategy": snap.route.strategy.as_str()},
                "store": self.hub.tenancy.store().kind(),
            }),
        )
    }
}

fn store_error(e: &crate::store::StoreError) -> Response<Vec<u8>> {
    reply(
        503,
        "application/json",
        switchyard_filters::error::error_json(
            &e.to_string(),
            "service_unavailable",
            None,
            Some("state_unavailable"),
        ),
    )
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        if path.starts_with("/admin/") {
            return self.admin(session, &method, &path).await;
        }
        // Read and drop what a GET may carry so the connection stays reusable.
        let _ = session.drain_request_body().await;
        if method != http::Method::GET && method != http::Method::HEAD {
            let e = GatewayError::MethodNotAllowed {
                method: method.to_string(),
                allowed: "GET",
            };
            return error_reply(&e);
        }
        match path.as_str() {
            "/health" => {
                let mut v = json!({"status": "ok"});
                if !self.hub.cli_pools.is_empty() {
                    let pools: serde_json::Map<String, serde_json::Value> = self
                        .hub
                        .cli_pools
                        .iter()
                        .map(|p| (p.name().to_string(), p.summary()))
                        .collect();
                    v["cli"] = serde_json::Value::Object(pools);
                }
                json_reply(200, &v)
            }
            "/sessions" => {
                let all: Vec<serde_json::Value> = self
                    .hub
                    .cli_pools
                    .iter()
                    .flat_map(|p| p.describe())
                    .collect();
                json_reply(200, &serde_json::Value::Array(all))
            }
            "/health/ready" => {
                let snap = self.hub.snapshot_guard();
                let disabled: Vec<serde_json::Value> = snap
                    .providers
                    .iter()
                    .filter_map(|p| Some(json!({"provider": p.name, "reason": p.disabled?})))
                    .collect();
                if self.hub.shutting_down.load(Ordering::Relaxed) {
                    json_reply(503, &json!({"ready": false, "reason": "shutting down"}))
                } else if snap.generation == 0 {
                    json_reply(
                        503,
                        &json!({"ready": false, "reason": "no configuration snapshot"}),
                    )
                } else {
                    json_reply(
                        200,
                        &json!({"ready": true, "store": self.hub.tenancy.store().kind(), "store_up": self.hub.tenancy.store().is_up(), "disabled_providers": disabled}),
                    )
                }
            }
            "/health/inflight" => json_reply(200, &self.inflight().await),
            "/metrics" => {
                self.hub.sample_connections();
                reply(200, "text/plain; version=0.0.4", self.hub.metrics.render())
            }
            "/v1/inference/stats" => json_reply(200, &self.stats()),
            _ => error_reply(&GatewayError::UnknownPath {
                method: method.to_string(),
                path: path.chars().take(200).collect(),
            }),
        }
    }
}
