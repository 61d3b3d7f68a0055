//! API keys and quotas.

use serde_json::json;

use super::error::AdminError;
use super::reply::{json, Reply};
use super::Call;

/// `GET /admin/keys`: key records (never the keys).
pub async fn list(c: Call<'_>) -> Result<Reply, AdminError> {
    let hub = &c.admin.hub;
    let mut data: Vec<serde_json::Value> = hub
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
    let list = hub.tenancy.store().key_list().await?;
    data.extend(list.into_iter().map(|(_, r)| {
        json!({"id": r.id, "tenant": r.tenant, "requests_per_minute": r.requests_per_minute,
               "tokens_per_minute": r.tokens_per_minute, "models": r.models,
               "created_ms": r.created_ms, "source": "api"})
    }));
    Ok(json(200, &json!({"object": "list", "data": data})))
}

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

/// `POST /admin/keys`: creates a key; the answer holds it, once.
pub async fn create(c: Call<'_>) -> Result<Reply, AdminError> {
    if c.body.is_empty() {
        return Err(AdminError::BadRequest(
            "expected {\"tenant\", \"requests_per_minute\", \"tokens_per_minute\", \"models\"}"
                .into(),
        ));
    }
    let req: NewKey =
        c.json("{\"tenant\", \"requests_per_minute\", \"tokens_per_minute\", \"models\"}")?;
    if req.tenant.is_empty() || req.tenant.contains(['{', '}', ' ', '\n']) {
        return Err(AdminError::BadRequest(
            "`tenant` must be non-empty without braces or spaces".into(),
        ));
    }
    let (key, rec) = c
        .admin
        .hub
        .tenancy
        .create_key(
            &req.tenant,
            req.requests_per_minute,
            req.tokens_per_minute,
            req.models,
        )
        .await?;
    Ok(json(
        201,
        &json!({"key": key, "id": rec.id, "tenant": rec.tenant,
                "requests_per_minute": rec.requests_per_minute,
                "tokens_per_minute": rec.tokens_per_minute, "models": rec.models,
                "created_ms": rec.created_ms}),
    ))
}

/// `DELETE /admin/keys/{id}`
pub async fn revoke(c: Call<'_>) -> Result<Reply, AdminError> {
    let id = c.params.first().cloned().unwrap_or_default();
    if c.admin.hub.tenancy.revoke_key(&id).await? {
        Ok(json(200, &json!({"id": id, "revoked": true})))
    } else {
        Err(AdminError::NotFound("id", "no such key".into()))
    }
}

/// `GET /admin/quotas`
pub async fn quotas(c: Call<'_>) -> Result<Reply, AdminError> {
    Ok(json(200, &c.admin.hub.tenancy.quota_report().await))
}
