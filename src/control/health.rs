//! Backend-specific health and readiness (`specs/control-plane.md` §3.5):
//!
//! | kind | readiness (starting) | liveness (ready) |
//! |---|---|---|
//! | vLLM | `health_path` 200, then `/v1/models` lists the model | `health_path` 200 |
//! | SGLang | `health_path` 200 (it runs a 1-token generation: allow ≥ 5 s) | the same |
//! | Ollama | `/` 200, the model in `/api/tags`, and a load (`/api/generate`) done | `/` 200, the model still in `/api/tags` |
//!
//! Any error (refused, reset, timeout, a non-200) is "not healthy" with its reason.

use std::time::Duration;

use serde_json::Value;

use super::engine::Progress;
use crate::config::{LocalKind, Profile};

/// One probe's result: the models the backend lists, or why it is not healthy.
pub type ProbeResult = Result<Vec<String>, String>;

async fn get(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Value, String> {
    let r = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", short(&e)))?;
    let status = r.status();
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", short(&e)))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else {
        "request failed"
    }
}

/// Model ids from an OpenAI list or Ollama's tags.
fn model_names(v: &Value) -> Vec<String> {
    let list = v
        .get("data")
        .or_else(|| v.get("models"))
        .and_then(Value::as_array);
    list.map(|l| {
        l.iter()
            .filter_map(|m| {
                m.get("id")
                    .or_else(|| m.get("name"))
                    .or_else(|| m.get("model"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Whether Ollama's `name` is `model` (`llama3.2` is `llama3.2:latest`).
fn ollama_has(names: &[String], model: &str) -> bool {
    names.iter().any(|n| {
        n == model
            || n.strip_suffix(":latest") == Some(model)
            || model.strip_suffix(":latest") == Some(n)
    })
}

/// Probes the backend at `base` (`http://127.0.0.1:PORT`) for `model`.
pub async fn probe(
    client: &reqwest::Client,
    p: &Profile,
    base: &str,
    model: &str,
    starting: bool,
) -> ProbeResult {
    let t = p.probe_timeout;
    match p.kind {
        LocalKind::Ollama => {
            get(client, &format!("{base}{}", p.health_path), t)
                .await
                .or_else(|e| {
                    // `/` answers text ("Ollama is running"): only the status counts.
                    if e.ends_with("200 OK") {
                        Ok(Value::Null)
                    } else {
                        Err(e)
                    }
                })?;
            let names = model_names(&get(client, &format!("{base}/api/tags"), t).await?);
            if !ollama_has(&names, model) {
                return Err(format!("ollama does not have {model} (pull it first)"));
            }
            if starting {
                load(client, base, model).await?;
            }
            Ok(names)
        }
        _ => {
            get(client, &format!("{base}{}", p.health_path), t).await?;
            let names = model_names(&get(client, &format!("{base}/v1/models"), t).await?);
            if starting && !names.iter().any(|n| n == model) {
                return Err(format!(
                    "healthy, but /v1/models does not list {model} (it lists {names:?})"
                ));
            }
            Ok(names)
        }
    }
}

/// Loads `model` into Ollama's memory (a generate call without a prompt).
pub async fn load(client: &reqwest::Client, base: &str, model: &str) -> Result<(), String> {
    let url = format!("{base}/api/generate");
    let r = client
        .post(&url)
        .timeout(Duration::from_secs(600))
        .json(&serde_json::json!({"model": model, "keep_alive": -1, "stream": false}))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", short(&e)))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = v.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(format!("loading {model}: {status} {why}"));
    }
    Ok(())
}

/// Pulls `model` into Ollama, reporting its NDJSON progress.
pub async fn ollama_pull(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), String> {
    use futures_util::StreamExt;
    let url = format!("{base}/api/pull");
    let r = client
        .post(&url)
        .json(&serde_json::json!({"model": model, "stream": true}))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", short(&e)))?;
    if !r.status().is_success() {
        return Err(format!("pulling {model}: {}", r.status()));
    }
    let mut body = r.bytes_stream();
    let mut buf = Vec::new();
    let mut ok = false;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("pulling {model}: {}", short(&e)))?;
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                return Err(format!("pulling {model}: {e}"));
            }
            let status = v.get("status").and_then(Value::as_str).unwrap_or("");
            ok |= status == "success";
            progress(Progress {
                status: status.to_string(),
                completed: v.get("completed").and_then(Value::as_u64).unwrap_or(0),
                total: v.get("total").and_then(Value::as_u64).unwrap_or(0),
            });
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "pulling {model}: the stream ended before `success`"
        ))
    }
}

/// Removes `model` from Ollama.
pub async fn ollama_delete(
    client: &reqwest::Client,
    base: &str,
    model: &str,
) -> Result<(), String> {
    let url = format!("{base}/api/delete");
    let r = client
        .delete(&url)
        .json(&serde_json::json!({"model": model}))
        .send()
        .await
        .map_err(|e| format!("DELETE {url}: {}", short(&e)))?;
    match r.status().as_u16() {
        200 => Ok(()),
        404 => Err(format!("ollama does not have {model}")),
        s => Err(format!("removing {model}: {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_both_lists() {
        let v: Value =
            serde_json::from_str(r#"{"object":"list","data":[{"id":"a"},{"id":"b"}]}"#).unwrap();
        assert_eq!(model_names(&v), vec!["a", "b"]);
        let v: Value = serde_json::from_str(r#"{"models":[{"name":"llama3.2:latest"}]}"#).unwrap();
        let n = model_names(&v);
        assert!(ollama_has(&n, "llama3.2"));
        assert!(ollama_has(&n, "llama3.2:latest"));
        assert!(!ollama_has(&n, "llama3"));
    }
}
