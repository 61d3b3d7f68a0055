//! The control plane's API: status and its event stream, select, switch model, stop,
//! retry, Ollama models, hardware, GPU stats, recommendations, model search; also
//! under the seed's `/api/v1/recovery/...` paths. Every action answers at once with the
//! state it started; progress is read from the status.

use serde::Deserialize;
use serde_json::json;

use super::error::AdminError;
use super::reply::{json, json_of, reply, Reply};
use super::Call;
use crate::control::driver::Command;
use crate::control::{recommend, search};

async fn act(c: &Call<'_>, command: Command) -> Result<Reply, AdminError> {
    let status = c.admin.control.command(command).await?;
    Ok(json_of(202, &status))
}

/// `GET /admin/inference`
pub async fn status(c: Call<'_>) -> Result<Reply, AdminError> {
    Ok(json_of(200, &c.admin.control.status().await))
}

/// `GET /admin/inference/events`: every status change as a server-sent event, until
/// `?limit=N` changes were sent (default 1: the current status and the next change).
pub async fn events(c: Call<'_>) -> Result<Reply, AdminError> {
    let limit: usize = c
        .query("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .min(100);
    let wait = std::time::Duration::from_secs(
        c.query("timeout")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30u64)
            .min(300),
    );
    let mut rx = c.admin.control.subscribe();
    let mut out = String::new();
    let first = rx.borrow_and_update().clone();
    out.push_str(&format!(
        "event: status\ndata: {}\n\n",
        serde_json::to_string(&first).unwrap_or_default()
    ));
    for _ in 0..limit {
        match tokio::time::timeout(wait, rx.changed()).await {
            Ok(Ok(())) => {
                let s = rx.borrow_and_update().clone();
                out.push_str(&format!(
                    "event: status\ndata: {}\n\n",
                    serde_json::to_string(&s).unwrap_or_default()
                ));
            }
            _ => break,
        }
    }
    Ok(reply(200, "text/event-stream", out.into_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Select {
    backend: String,
    model: String,
}

/// `POST /admin/inference/select` `{"backend","model"}`
pub async fn select(c: Call<'_>) -> Result<Reply, AdminError> {
    let s: Select = c.json("{\"backend\": \"vllm|sglang|ollama\", \"model\": \"...\"}")?;
    act(
        &c,
        Command::Select {
            backend: s.backend,
            model: s.model,
        },
    )
    .await
}

#[derive(Deserialize)]
struct Model {
    #[serde(alias = "model_id", alias = "modelId")]
    model: String,
}

/// `POST /admin/inference/switch-model` `{"model"}`
pub async fn switch_model(c: Call<'_>) -> Result<Reply, AdminError> {
    let m: Model = c.json("{\"model\": \"...\"}")?;
    act(&c, Command::SwitchModel { model: m.model }).await
}

/// `POST /admin/inference/stop`
pub async fn stop(c: Call<'_>) -> Result<Reply, AdminError> {
    act(&c, Command::Stop).await
}

/// `POST /admin/inference/retry`
pub async fn retry(c: Call<'_>) -> Result<Reply, AdminError> {
    act(&c, Command::Retry).await
}

/// `POST /admin/inference/ollama/pull` `{"model"}`
pub async fn ollama_pull(c: Call<'_>) -> Result<Reply, AdminError> {
    let m: Model = c.json("{\"model\": \"...\"}")?;
    act(&c, Command::OllamaPull { model: m.model }).await
}

/// `DELETE /admin/inference/ollama/models/{model}`
pub async fn ollama_remove(c: Call<'_>) -> Result<Reply, AdminError> {
    let model = c.params.first().cloned().unwrap_or_default();
    act(&c, Command::OllamaRemove { model }).await
}

/// The seed's `POST .../backend/{backend}/select` `{"model"}`.
pub async fn seed_select(c: Call<'_>) -> Result<Reply, AdminError> {
    let m: Model = c.json("{\"model\": \"...\"}")?;
    let backend = c.params.first().cloned().unwrap_or_default();
    act(
        &c,
        Command::Select {
            backend,
            model: m.model,
        },
    )
    .await
}

/// The seed's `POST .../backend/{backend}/switch-model` `{"model"}`: a model switch on
/// the running backend, or a backend switch when `{backend}` is another one.
pub async fn seed_switch_model(c: Call<'_>) -> Result<Reply, AdminError> {
    let m: Model = c.json("{\"model\": \"...\"}")?;
    let backend = c.params.first().cloned().unwrap_or_default();
    let current = c.admin.control.status().await.backend;
    if current == backend {
        act(&c, Command::SwitchModel { model: m.model }).await
    } else {
        act(
            &c,
            Command::Select {
                backend,
                model: m.model,
            },
        )
        .await
    }
}

/// `GET /admin/hardware`
pub async fn hardware(c: Call<'_>) -> Result<Reply, AdminError> {
    hardware_reply(&c, false).await
}

/// `POST /admin/hardware/detect`: detects again.
pub async fn hardware_detect(c: Call<'_>) -> Result<Reply, AdminError> {
    hardware_reply(&c, true).await
}

async fn hardware_reply(c: &Call<'_>, refresh: bool) -> Result<Reply, AdminError> {
    let hw = c
        .admin
        .control
        .hardware(refresh)
        .await
        .map_err(AdminError::Unavailable)?;
    Ok(json_of(200, &hw))
}

/// `GET /admin/hardware/gpu-stats`: 404 with why when there is no GPU.
pub async fn gpu_stats(c: Call<'_>) -> Result<Reply, AdminError> {
    match c.admin.control.gpu_stats().await {
        Ok(g) => Ok(json(200, &json!({"gpus": g}))),
        Err(why) => Ok(json(
            404,
            &json!({"gpus": [], "error": {"message": why, "type": "invalid_request_error", "param": null, "code": "no_gpu"}}),
        )),
    }
}

fn curated(c: &Call<'_>) -> Result<Vec<recommend::Curated>, AdminError> {
    let text = match &c.admin.control.settings().recommended_models {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| AdminError::Unavailable(format!("cannot read {path}: {e}")))?,
        None => recommend::BUILTIN_MODELS.to_string(),
    };
    recommend::parse_list(&text).map_err(AdminError::Unavailable)
}

/// `GET /admin/inference/recommendation`
pub async fn recommendation(c: Call<'_>) -> Result<Reply, AdminError> {
    let hw = c
        .admin
        .control
        .hardware(false)
        .await
        .map_err(AdminError::Unavailable)?;
    let list = curated(&c)?;
    let mut r = recommend::recommend(&hw, &list);
    r["hardware"] = serde_json::to_value(&hw).unwrap_or_default();
    Ok(json(200, &r))
}

/// `GET /admin/inference/models/recommended?backend=vllm`: the curated list filtered by
/// the VRAM (or, without a GPU, the RAM) available.
pub async fn recommended(c: Call<'_>) -> Result<Reply, AdminError> {
    let hw = c
        .admin
        .control
        .hardware(false)
        .await
        .map_err(AdminError::Unavailable)?;
    let list = curated(&c)?;
    let backend = c.query("backend").unwrap_or_else(|| {
        recommend::backend_for(&hw)
            .0
            .unwrap_or("ollama")
            .to_string()
    });
    let fits = recommend::fitting(&hw, &list, &backend);
    let mut by: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for cat in ["general", "coding", "small"] {
        by.insert(
            cat.into(),
            fits.iter()
                .filter(|m| m["category"] == cat)
                .cloned()
                .collect(),
        );
    }
    Ok(json(
        200,
        &json!({"backend": backend, "vram_mib": hw.max_vram_mib(), "categories": by}),
    ))
}

/// `GET /admin/inference/models/search?q=llama&backend=vllm&limit=20&context=8192`
pub async fn search(c: Call<'_>) -> Result<Reply, AdminError> {
    let text = c
        .query("q")
        .or_else(|| c.query("query"))
        .unwrap_or_default();
    if text.trim().is_empty() {
        return Err(AdminError::BadRequest(
            "`q` (the search text) is required".into(),
        ));
    }
    let q = search::Query {
        text,
        backend: c.query("backend").unwrap_or_else(|| "vllm".into()),
        limit: c.query("limit").and_then(|v| v.parse().ok()).unwrap_or(20),
        context: c
            .query("context")
            .and_then(|v| v.parse().ok())
            .unwrap_or(8192),
    };
    let client = reqwest::Client::new();
    let hub = c.admin.control.settings().hub_url.clone();
    let v = search::search(&client, &hub, &q)
        .await
        .map_err(AdminError::Unavailable)?;
    Ok(json(200, &v))
}
