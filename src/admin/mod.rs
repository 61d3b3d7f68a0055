//! The admin listener: health, readiness, in-flight counts, Prometheus metrics, the
//! local backend's statistics, and the admin API, dispatched by one route table.
//! Errors become responses in one place ([`error::AdminError::into_reply`]).
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
//! The admin API (every call needs `X-Admin-Secret`, compared in constant time; without
//! a configured secret the API is off) is listed in [`ROUTES`] and in `docs/api.md`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use subtle::ConstantTimeEq;
use switchyard_filters::error::{error_json, GatewayError};

pub mod error;
mod health;
pub mod history;
mod inference;
mod keys;
pub mod reply;
mod runtime_config;
pub mod session;
mod ui;

use crate::control::Control;
use crate::state::Hub;
use error::AdminError;
use reply::{reply, Reply};

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The admin HTTP application.
pub struct Admin {
    hub: Arc<Hub>,
    control: Control,
    sessions: session::Sessions,
    history: Arc<history::History>,
}

/// One call as a handler sees it.
pub struct Call<'a> {
    /// The application.
    pub admin: &'a Admin,
    /// The request body (read in full, at most 64 KiB).
    pub body: Bytes,
    /// The path's `{…}` segments, in order.
    pub params: Vec<String>,
    /// The query string (empty without one).
    pub query: String,
    /// The console session token from the cookie, if any.
    pub token: Option<String>,
}

impl Call<'_> {
    /// The body as JSON of type `T`, or a 400 naming what was expected.
    pub fn json<T: serde::de::DeserializeOwned>(&self, expected: &str) -> Result<T, AdminError> {
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body)
            .map_err(|e| AdminError::BadRequest(format!("expected {expected}: {e}")))
    }

    /// A query parameter (percent-decoded, `+` as space).
    pub fn query(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| decode(v))
        })
    }
}

fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A handler's answer.
pub type Answer<'a> = BoxFuture<'a, Result<Reply, AdminError>>;

/// One route: method, path (`{…}` matches one segment), whether it needs the admin
/// secret, and its handler.
pub struct Route {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: &'static str,
    /// The path pattern.
    pub path: &'static str,
    /// Behind `X-Admin-Secret`.
    pub secret: bool,
    /// The handler.
    pub handler: for<'a> fn(Call<'a>) -> Answer<'a>,
}

macro_rules! route {
    ($method:literal, $path:literal, $secret:literal, $f:path) => {
        Route {
            method: $method,
            path: $path,
            secret: $secret,
            handler: {
                fn h(c: Call<'_>) -> Answer<'_> {
                    Box::pin($f(c))
                }
                h
            },
        }
    };
}

/// Every route of the admin listener. The seed's recovery paths are also served under
/// `/recovery-api` (the prefix a dashboard proxy adds).
pub const ROUTES: &[Route] = &[
    route!("GET", "/", false, ui::to_console),
    route!("GET", "/ui", false, ui::to_console),
    route!("POST", "/ui/api/session", false, ui::sign_in),
    route!("GET", "/ui/api/session", false, ui::session_state),
    route!("DELETE", "/ui/api/session", true, ui::sign_out),
    route!("GET", "/admin/history", true, ui::history),
    route!("GET", "/admin/ui/wizard", true, ui::wizard),
    route!("PUT", "/admin/ui/wizard", true, ui::wizard_set),
    route!("GET", "/admin/providers", true, ui::providers),
    route!("GET", "/health", false, health::health),
    route!("GET", "/health/ready", false, health::ready),
    route!("GET", "/health/inflight", false, health::inflight),
    route!("GET", "/metrics", false, health::metrics),
    route!("GET", "/v1/inference/stats", false, health::stats),
    route!("GET", "/sessions", false, health::sessions),
    route!("GET", "/admin/keys", true, keys::list),
    route!("POST", "/admin/keys", true, keys::create),
    route!("DELETE", "/admin/keys/{id}", true, keys::revoke),
    route!("GET", "/admin/quotas", true, keys::quotas),
    route!("GET", "/admin/config", true, runtime_config::view),
    route!("PUT", "/admin/config/{key}", true, runtime_config::set),
    route!("DELETE", "/admin/config/{key}", true, runtime_config::clear),
    route!("GET", "/admin/inference", true, inference::status),
    route!("GET", "/admin/inference/events", true, inference::events),
    route!("POST", "/admin/inference/select", true, inference::select),
    route!(
        "POST",
        "/admin/inference/switch-model",
        true,
        inference::switch_model
    ),
    route!("POST", "/admin/inference/stop", true, inference::stop),
    route!("POST", "/admin/inference/retry", true, inference::retry),
    route!(
        "POST",
        "/admin/inference/ollama/pull",
        true,
        inference::ollama_pull
    ),
    route!(
        "DELETE",
        "/admin/inference/ollama/models/{model}",
        true,
        inference::ollama_remove
    ),
    route!("GET", "/admin/hardware", true, inference::hardware),
    route!(
        "POST",
        "/admin/hardware/detect",
        true,
        inference::hardware_detect
    ),
    route!(
        "GET",
        "/admin/hardware/gpu-stats",
        true,
        inference::gpu_stats
    ),
    route!(
        "GET",
        "/admin/inference/recommendation",
        true,
        inference::recommendation
    ),
    route!(
        "GET",
        "/admin/inference/models/recommended",
        true,
        inference::recommended
    ),
    route!(
        "GET",
        "/admin/inference/models/search",
        true,
        inference::search
    ),
    route!(
        "GET",
        "/api/v1/recovery/inference/status",
        true,
        inference::status
    ),
    route!(
        "POST",
        "/api/v1/recovery/inference/backend/{backend}/select",
        true,
        inference::seed_select
    ),
    route!(
        "POST",
        "/api/v1/recovery/inference/backend/{backend}/switch-model",
        true,
        inference::seed_switch_model
    ),
    route!(
        "POST",
        "/api/v1/recovery/inference/stop",
        true,
        inference::stop
    ),
    route!(
        "POST",
        "/api/v1/recovery/inference/retry",
        true,
        inference::retry
    ),
    route!(
        "GET",
        "/api/v1/recovery/inference/models/search",
        true,
        inference::search
    ),
    route!(
        "GET",
        "/api/v1/recovery/inference/models/recommended",
        true,
        inference::recommended
    ),
    route!(
        "GET",
        "/api/v1/recovery/inference/recommendation",
        true,
        inference::recommendation
    ),
    route!(
        "GET",
        "/api/v1/recovery/hardware",
        true,
        inference::hardware
    ),
    route!(
        "GET",
        "/api/v1/recovery/hardware/gpu-stats",
        true,
        inference::gpu_stats
    ),
];

/// Matches `path` against a pattern; the `{…}` segments' values.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some(params),
            (Some(a), Some(b)) if a.starts_with('{') && !b.is_empty() => params.push(decode(b)),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// The route for `method` and `path`: `Ok(route, params)`, or the error (404, or 405
/// with the methods the path has).
fn find(method: &str, path: &str) -> Result<(&'static Route, Vec<String>), GatewayError> {
    let path = path
        .strip_prefix("/recovery-api")
        .filter(|p| p.starts_with("/api/"))
        .unwrap_or(path);
    let mut allowed = Vec::new();
    for r in ROUTES {
        if let Some(params) = matches(r.path, path) {
            if r.method == method || (method == "HEAD" && r.method == "GET") {
                return Ok((r, params));
            }
            allowed.push(r.method);
        }
    }
    if allowed.is_empty() {
        Err(GatewayError::UnknownPath {
            method: method.to_string(),
            path: path.chars().take(200).collect(),
        })
    } else {
        // The allowed methods are static strings of the table.
        let allowed: &'static str = match allowed.as_slice() {
            ["GET"] => "GET",
            ["POST"] => "POST",
            ["PUT", "DELETE"] => "PUT, DELETE",
            ["GET", "POST"] => "GET, POST",
            ["POST", "GET", "DELETE"] => "GET, POST, DELETE",
            ["GET", "PUT"] => "GET, PUT",
            ["DELETE"] => "DELETE",
            _ => "GET, POST, PUT, DELETE",
        };
        Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            allowed,
        })
    }
}

impl Admin {
    /// Serves admin requests from `hub`, with the controller `control` and the
    /// console's chart `history`.
    pub fn new(hub: Arc<Hub>, control: Control, history: Arc<history::History>) -> Self {
        Self {
            hub,
            control,
            sessions: session::Sessions::default(),
            history,
        }
    }

    /// Whether the request carries the admin secret (constant-time comparison of
    /// SHA-256 digests, so neither content nor length leaks through timing).
    fn authorized(&self, session: &ServerSession) -> Result<(), Box<Reply>> {
        let Some(secret) = self.hub.tenancy.admin_secret() else {
            return Err(Box::new(reply(
                403,
                "application/json",
                error_json(
                    "The admin API is off: set the admin secret variable ([auth] admin_secret_env, default SWITCHYARD_ADMIN_SECRET).",
                    "permission_error",
                    None,
                    Some("admin_disabled"),
                ),
            )));
        };
        let headers = &session.req_header().headers;
        if !headers.contains_key("x-admin-secret") {
            if let Some(token) = cookie_token(session) {
                // A console session: state-changing calls also carry its CSRF token.
                if let Some(csrf) = self.sessions.csrf(&token) {
                    let method = &session.req_header().method;
                    let safe = method == http::Method::GET || method == http::Method::HEAD;
                    let sent = headers
                        .get("x-csrf-token")
                        .map(|v| v.as_bytes())
                        .unwrap_or_default();
                    if safe || bool::from(sent.ct_eq(csrf.as_bytes())) {
                        return Ok(());
                    }
                    return Err(Box::new(
                        AdminError::Forbidden(
                            "missing or wrong X-CSRF-Token for this session".into(),
                        )
                        .into_reply(),
                    ));
                }
            }
        }
        let given = headers
            .get("x-admin-secret")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let a = crate::tenancy::hash_key(given);
        let b = crate::tenancy::hash_key(secret.expose().as_bytes());
        if bool::from(a.ct_eq(&b)) && !given.is_empty() {
            Ok(())
        } else {
            Err(Box::new(
                AdminError::Gateway(GatewayError::AdminUnauthorized).into_reply(),
            ))
        }
    }

    async fn dispatch(&self, session: &mut ServerSession) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let uri = session.req_header().uri.clone();
        if method == "GET" || method == "HEAD" {
            if let Some(r) = ui::file(uri.path()) {
                let _ = session.drain_request_body().await;
                return r;
            }
        }
        let (route, params) = match find(&method, uri.path()) {
            Ok(r) => r,
            Err(e) => {
                let _ = session.drain_request_body().await;
                return AdminError::Gateway(e).into_reply();
            }
        };
        if route.secret {
            if let Err(r) = self.authorized(session) {
                let _ = session.drain_request_body().await;
                return *r;
            }
        }
        let body = match read_body(session).await {
            Ok(b) => b.freeze(),
            Err(e) => return e.into_reply(),
        };
        let call = Call {
            admin: self,
            body,
            params,
            query: uri.query().unwrap_or("").to_string(),
            token: cookie_token(session),
        };
        let mut r = match (route.handler)(call).await {
            Ok(r) => r,
            Err(e) => e.into_reply(),
        };
        // API answers are never cached (they may name keys and state).
        let h = r.headers_mut();
        h.insert("cache-control", http::HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            http::HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", http::HeaderValue::from_static("DENY"));
        h.insert(
            "referrer-policy",
            http::HeaderValue::from_static("no-referrer"),
        );
        r
    }
}

/// The console session token of the request's cookie.
fn cookie_token(session: &ServerSession) -> Option<String> {
    session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| session::token_of(c).map(str::to_string))
}

async fn read_body(session: &mut ServerSession) -> Result<BytesMut, AdminError> {
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > MAX_ADMIN_BODY {
                    return Err(GatewayError::BodyTooLarge(MAX_ADMIN_BODY).into());
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(_) => {
                return Err(AdminError::BadRequest(
                    "the request body could not be read".into(),
                ))
            }
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Reply {
        self.dispatch(session).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_routes_and_refuses() {
        let (r, p) = find("DELETE", "/admin/keys/abc").unwrap();
        assert_eq!(r.path, "/admin/keys/{id}");
        assert_eq!(p, vec!["abc"]);
        let (r, p) = find(
            "POST",
            "/recovery-api/api/v1/recovery/inference/backend/vllm/switch-model",
        )
        .unwrap();
        assert_eq!(
            r.path,
            "/api/v1/recovery/inference/backend/{backend}/switch-model"
        );
        assert_eq!(p, vec!["vllm"]);
        assert!(find("HEAD", "/health").is_ok());
        assert!(matches!(
            find("POST", "/health"),
            Err(GatewayError::MethodNotAllowed { allowed: "GET", .. })
        ));
        assert!(matches!(
            find("GET", "/nope"),
            Err(GatewayError::UnknownPath { .. })
        ));
        assert!(
            find("GET", "/admin/keys/").is_err(),
            "an empty segment is no id"
        );
        // Every path of the table is reachable with its method.
        for r in ROUTES {
            let path = r
                .path
                .replace("{id}", "x")
                .replace("{key}", "x")
                .replace("{backend}", "vllm")
                .replace("{model}", "m");
            let (found, _) = find(r.method, &path).unwrap();
            assert_eq!(found.path, r.path);
        }
        assert_eq!(decode("a%20b+c%2F"), "a b c/");
    }
}
