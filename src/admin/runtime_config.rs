//! Runtime configuration (`config:inference.*`, `config:routing.strategy`), changed
//! through [`crate::runtime::set`], the one owner of these values.

use serde_json::json;

use super::error::AdminError;
use super::reply::{json, Reply};
use super::Call;
use crate::store::RuntimeField;

/// `GET /admin/config`: stored values and what is in effect.
pub async fn view(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let v = hub.tenancy.store().runtime_get().await?;
    let snap = hub.snapshot();
    let local = snap.local.as_ref().map(|l| {
        json!({"kind": l.kind.as_str(), "url": l.url, "state": l.state.as_str(), "models": l.models})
    });
    Ok(json(
        200,
        &json!({
            "stored": {
                "inference.backend": v.backend, "inference.state": v.state,
                "inference.url": v.url, "inference.auth": v.auth.map(|_| "*****"),
                "routing.strategy": v.strategy,
            },
            "effective": {"local": local, "routing.strategy": snap.route.strategy.as_str()},
            "store": hub.tenancy.store().kind(),
        }),
    ))
}

fn field(c: &Call<'_>) -> Result<RuntimeField, AdminError> {
    let key = c.params.first().map(String::as_str).unwrap_or("");
    RuntimeField::parse(key).ok_or_else(|| {
        AdminError::BadRequest("unknown key: use inference.backend, inference.state, inference.url, inference.auth or routing.strategy".into())
    })
}

/// `PUT /admin/config/{key}`: sets one (body: the value, bare or a JSON string).
pub async fn set(c: Call<'_>) -> Result<Reply, AdminError> {
    let f = field(&c)?;
    let raw = String::from_utf8_lossy(&c.body).trim().to_string();
    let value = serde_json::from_str::<String>(&raw).unwrap_or(raw);
    crate::runtime::set(&c.admin.hub, &[(f, value.as_str())]).await?;
    view(c).await
}

/// `DELETE /admin/config/{key}`: clears one (back to the file's value).
pub async fn clear(c: Call<'_>) -> Result<Reply, AdminError> {
    let f = field(&c)?;
    crate::runtime::set(&c.admin.hub, &[(f, "")]).await?;
    view(c).await
}
