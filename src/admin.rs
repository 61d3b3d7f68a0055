//! The admin listener: health, readiness, in-flight counts, Prometheus metrics and the
//! local backend's inference statistics.
//!
//! | path | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` while the process runs |
//! | `GET /health/ready` | 200 while serving; 503 once shutdown began |
//! | `GET /health/inflight` | `{"total", "local", "providers":{name:n}}` |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/inference/stats` | local backend: requests, errors, latency, TTFT, tokens/s |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use switchyard_filters::error::GatewayError;

use crate::state::Hub;

/// The admin HTTP application.
pub struct Admin {
    hub: Arc<Hub>,
}

impl Admin {
    /// Serves admin requests from `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// `{"total", "local", "providers"}` for this replica.
    pub fn inflight(&self) -> serde_json::Value {
        let snap = self.hub.snapshot();
        let mut providers = serde_json::Map::new();
        let mut total = 0;
        for p in &snap.providers {
            let n = p.counters.inflight();
            total += n;
            providers.insert(p.name.clone(), json!(n));
        }
        let local = snap
            .local
            .as_ref()
            .map_or(0, |l| snap.providers[l.index].counters.inflight());
        json!({"total": total, "local": local, "providers": providers})
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
}

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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        // Admin bodies are small; read and drop what a GET may carry so the connection
        // stays reusable.
        let _ = session.drain_request_body().await;
        if method != http::Method::GET && method != http::Method::HEAD {
            let e = GatewayError::MethodNotAllowed {
                method: method.to_string(),
                allowed: "GET",
            };
            return reply(e.status(), "application/json", e.body());
        }
        match path.as_str() {
            "/health" => json_reply(200, &json!({"status": "ok"})),
            "/health/ready" => {
                if self.hub.shutting_down.load(Ordering::Relaxed) {
                    json_reply(503, &json!({"ready": false, "reason": "shutting down"}))
                } else {
                    json_reply(200, &json!({"ready": true}))
                }
            }
            "/health/inflight" => json_reply(200, &self.inflight()),
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.hub.metrics.render()),
            "/v1/inference/stats" => json_reply(200, &self.stats()),
            _ => {
                let e = GatewayError::UnknownPath {
                    method: method.to_string(),
                    path: path.chars().take(200).collect(),
                };
                reply(e.status(), "application/json", e.body())
            }
        }
    }
}
