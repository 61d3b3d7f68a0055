//! The console: its files (embedded: plain HTML, CSS and JavaScript modules, no build
//! step), the session calls, and the admin API additions it needs (history, wizard
//! state, providers). `docs/console.md` is the user's guide.

use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::AdminError;
use super::reply::{json, json_of, reply, Reply};
use super::session;
use super::Call;

/// The console's Content-Security-Policy: only its own files, no inline script or
/// style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// (path, content type, body) of every console file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/ui/",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "/ui/index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "/ui/style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/style.css"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "/ui/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/api.js"),
    ),
    (
        "/ui/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/charts.js"),
    ),
    (
        "/ui/pages.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/pages.js"),
    ),
    (
        "/ui/wizard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/wizard.js"),
    ),
    (
        "/ui/favicon.svg",
        "image/svg+xml",
        include_str!("../../console/favicon.svg"),
    ),
];

/// A console file, or `None`.
pub fn file(path: &str) -> Option<Reply> {
    let path = if path == "/ui" { "/ui/" } else { path };
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ctype, body)| {
            let mut r = reply(200, ctype, body.as_bytes().to_vec());
            let h = r.headers_mut();
            h.insert(
                "content-security-policy",
                http::HeaderValue::from_static(CSP),
            );
            h.insert("cache-control", http::HeaderValue::from_static("no-cache"));
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
        })
}

/// `GET /` and `GET /ui`: to the console.
pub async fn to_console(_c: Call<'_>) -> Result<Reply, AdminError> {
    let mut r = reply(302, "text/plain", b"/ui/".to_vec());
    r.headers_mut()
        .insert("location", http::HeaderValue::from_static("/ui/"));
    Ok(r)
}

#[derive(Deserialize)]
struct SignIn {
    secret: String,
}

/// `POST /ui/api/session` `{"secret"}`: a session cookie and its CSRF token; 401 for a
/// wrong secret (after a pause, so guessing is slow).
pub async fn sign_in(c: Call<'_>) -> Result<Reply, AdminError> {
    let s: SignIn = c.json("{\"secret\": \"...\"}")?;
    let Some(secret) = c.admin.hub.tenancy.admin_secret() else {
        return Err(AdminError::Conflict(
            "The admin API is off: set the admin secret variable ([auth] admin_secret_env, default SWITCHYARD_ADMIN_SECRET) and restart.".into(),
        ));
    };
    let a = crate::tenancy::hash_key(s.secret.as_bytes());
    let b = crate::tenancy::hash_key(secret.expose().as_bytes());
    if s.secret.is_empty() || !bool::from(a.ct_eq(&b)) {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        return Err(AdminError::Gateway(
            switchyard_filters::error::GatewayError::AdminUnauthorized,
        ));
    }
    let (token, csrf) = c.admin.sessions.open();
    let mut r = json(
        200,
        &json!({"signed_in": true, "csrf": csrf, "expires_in": session::TTL.as_secs()}),
    );
    if let Ok(v) = http::HeaderValue::from_str(&session::set_cookie(&token)) {
        r.headers_mut().insert("set-cookie", v);
    }
    Ok(r)
}

/// `GET /ui/api/session`: whether this browser is signed in (then its CSRF token, which
/// only a same-origin page can read), and what the console must warn about.
pub async fn session_state(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let csrf = c.token.as_deref().and_then(|t| c.admin.sessions.csrf(t));
    Ok(json(
        200,
        &json!({
            "signed_in": csrf.is_some(),
            "csrf": csrf,
            "admin_api": hub.tenancy.admin_secret().is_some(),
            "api_keys_required": hub.settings.auth.enabled,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    ))
}

/// `DELETE /ui/api/session`: signs out.
pub async fn sign_out(c: Call<'_>) -> Result<Reply, AdminError> {
    if let Some(t) = &c.token {
        c.admin.sessions.close(t);
    }
    let mut r = json(200, &json!({"signed_in": false}));
    if let Ok(v) = http::HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert("set-cookie", v);
    }
    Ok(r)
}

/// `GET /admin/history`: the charts' points (every 2 s, 15 minutes).
pub async fn history(c: Call<'_>) -> Result<Reply, AdminError> {
    Ok(json(
        200,
        &json!({"period_ms": super::history::PERIOD.as_millis() as u64, "points": c.admin.history.points()}),
    ))
}

/// `GET /admin/ui/wizard`: the first-run wizard's state (`completed`, `step`).
pub async fn wizard(c: Call<'_>) -> Result<Reply, AdminError> {
    let v = c.admin.hub.tenancy.store().record_get("ui:wizard").await?;
    let v: serde_json::Value = v
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"completed": false, "step": 0}));
    Ok(json(200, &v))
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Wizard {
    completed: bool,
    #[serde(default)]
    step: u32,
}

/// `PUT /admin/ui/wizard` `{"completed", "step"}`.
pub async fn wizard_set(c: Call<'_>) -> Result<Reply, AdminError> {
    let w: Wizard = c.json("{\"completed\": true|false, \"step\": 0-5}")?;
    if w.step > 5 {
        return Err(AdminError::BadRequest("`step` is 0 to 5".into()));
    }
    let text = serde_json::to_string(&w).unwrap_or_default();
    c.admin
        .hub
        .tenancy
        .store()
        .record_set("ui:wizard", &text)
        .await?;
    Ok(json_of(200, &w))
}

/// `GET /admin/providers`: every provider with its kind, whether its key is present
/// (never the key), why it is left out if it is, and its models; and the local backend.
pub async fn providers(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let snap = hub.snapshot();
    let list: Vec<serde_json::Value> = hub
        .settings
        .providers
        .iter()
        .map(|p| {
            let live = snap.providers.iter().find(|s| s.name == p.name);
            json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "key_present": p.api_key.as_ref().is_some_and(|k| !k.expose().is_empty()),
                "missing_key_env": p.missing_key_env,
                "auto_detected": p.auto_detected,
                "disabled": live.and_then(|l| l.disabled),
                "models": live.map(|l| l.listed_models.clone()).unwrap_or_else(|| p.models.clone()),
            })
        })
        .collect();
    let local = snap.local.as_ref().map(|l| {
        json!({"kind": l.kind.as_str(), "url": l.url, "state": l.state.as_str(), "models": l.models})
    });
    Ok(json(
        200,
        &json!({"providers": list, "local": local, "strategy": snap.route.strategy.as_str()}),
    ))
}
