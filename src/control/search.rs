//! Model search on the Hugging Face Hub, with a VRAM estimate per result: safetensors
//! repos for vLLM and SGLang, GGUF repos for Ollama (whose library has no search API;
//! Ollama pulls them as `hf.co/{repo}:{quant}`). The hub's base URL is configurable; an
//! unreachable hub is an error naming the URL.

use std::time::Duration;

use serde_json::{json, Value};

use super::recommend::{estimate_gib, kv_bytes, weight_bytes};

/// One search's parameters.
#[derive(Debug, Clone)]
pub struct Query {
    /// Free text.
    pub text: String,
    /// The backend the results are for (`ollama` searches GGUF repos).
    pub backend: String,
    /// At most this many results.
    pub limit: usize,
    /// Context length for the KV-cache part of the estimate.
    pub context: u64,
}

/// The search URL for `q` on `hub`.
pub fn url(hub: &str, q: &Query) -> String {
    let mut u = format!(
        "{hub}/api/models?search={}&pipeline_tag=text-generation&sort=downloads&direction=-1&limit={}",
        encode(&q.text),
        q.limit.clamp(1, 100)
    );
    if q.backend == "ollama" {
        u.push_str("&filter=gguf&expand[]=gguf&expand[]=downloads&expand[]=likes");
    } else {
        u.push_str("&expand[]=safetensors&expand[]=config&expand[]=downloads&expand[]=likes&expand[]=gated");
    }
    u
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One hub result with its estimate (`vram_gb` null when the hub gave no sizes).
pub fn result(m: &Value, q: &Query) -> Value {
    let id = m
        .get("id")
        .or_else(|| m.get("modelId"))
        .cloned()
        .unwrap_or(Value::Null);
    let estimate = if q.backend == "ollama" {
        m.pointer("/gguf/total")
            .and_then(Value::as_f64)
            .map(|params| {
                // Q4_K_M: about 4.89 bits per weight.
                estimate_gib(params * 4.89 / 8.0, 0.0)
            })
    } else {
        m.pointer("/safetensors/parameters")
            .and_then(Value::as_object)
            .map(|p| {
                let cfg = m.get("config").cloned().unwrap_or(Value::Null);
                let n = |k: &str| cfg.get(k).and_then(Value::as_u64);
                let layers = n("num_hidden_layers").unwrap_or(0);
                let heads = n("num_attention_heads").unwrap_or(0);
                let kv_heads = n("num_key_value_heads").unwrap_or(heads);
                let head_dim =
                    n("head_dim").unwrap_or_else(|| n("hidden_size").unwrap_or(0) / heads.max(1));
                estimate_gib(
                    weight_bytes(p),
                    kv_bytes(layers, kv_heads, head_dim, q.context, 2.0),
                )
            })
    };
    let pull = (q.backend == "ollama")
        .then(|| id.as_str().map(|i| format!("hf.co/{i}:Q4_K_M")))
        .flatten();
    json!({
        "id": id,
        "downloads": m.get("downloads"),
        "likes": m.get("likes"),
        "gated": m.get("gated"),
        "vram_gb": estimate.map(|g| (g * 10.0).round() / 10.0),
        "pull": pull,
    })
}

/// Searches `hub`.
pub async fn search(client: &reqwest::Client, hub: &str, q: &Query) -> Result<Value, String> {
    let u = url(hub, q);
    let r = client
        .get(&u)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| {
            format!(
                "the model hub at {hub} cannot be reached ({})",
                if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                }
            )
        })?;
    if !r.status().is_success() {
        return Err(format!("the model hub at {hub} answered {}", r.status()));
    }
    let v: Value = r
        .json()
        .await
        .map_err(|_| format!("the model hub at {hub} did not answer a model list"))?;
    let list = v.as_array().cloned().unwrap_or_default();
    Ok(json!({
        "object": "list",
        "backend": q.backend,
        "context": q.context,
        "data": list.iter().map(|m| result(m, q)).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(backend: &str) -> Query {
        Query {
            text: "llama 3".into(),
            backend: backend.into(),
            limit: 5,
            context: 8192,
        }
    }

    #[test]
    fn urls_per_backend() {
        let u = url("https://huggingface.co", &q("vllm"));
        assert!(u.starts_with("https://huggingface.co/api/models?search=llama%203&"));
        assert!(u.contains("expand[]=safetensors"));
        assert!(url("http://h", &q("ollama")).contains("filter=gguf"));
    }

    #[test]
    fn estimates_from_hub_fields() {
        let m: Value = serde_json::from_str(r#"{"id":"meta-llama/Llama-3.1-8B-Instruct","downloads":5,
            "safetensors":{"parameters":{"BF16":8030261248},"total":8030261248},
            "config":{"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"hidden_size":4096}}"#).unwrap();
        let r = result(&m, &q("vllm"));
        // 19.95 GiB of weights and overhead + 1 GiB of KV cache at 8192 tokens.
        assert!((r["vram_gb"].as_f64().unwrap() - 20.95).abs() < 0.1, "{r}");
        let g: Value = serde_json::from_str(
            r#"{"id":"bartowski/Llama-3.2-3B-Instruct-GGUF","gguf":{"total":3212749888}}"#,
        )
        .unwrap();
        let r = result(&g, &q("ollama"));
        assert_eq!(
            r["pull"],
            "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"
        );
        assert!(r["vram_gb"].as_f64().unwrap() > 3.0);
        let bare: Value = serde_json::from_str(r#"{"id":"x/y"}"#).unwrap();
        assert_eq!(result(&bare, &q("vllm"))["vram_gb"], Value::Null);
    }
}
