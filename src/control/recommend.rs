//! Backend and model recommendation from the hardware (the seed's two tables), the
//! curated model list filtered by VRAM, and the VRAM estimate used for both and for
//! search results: weights × 1.2 + 2 GiB, plus the KV cache for a context length
//! (`specs/control-plane.md` §5).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::hardware::Hardware;

/// The built-in curated list (`conf/recommended_models.json`).
pub const BUILTIN_MODELS: &str = include_str!("../../conf/recommended_models.json");

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One curated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curated {
    /// Hugging Face id (vLLM, SGLang).
    pub id: String,
    /// Ollama library name.
    pub ollama: Option<String>,
    /// `general`, `coding` or `small`.
    pub category: String,
    /// Billions of parameters.
    pub params_b: f64,
    /// VRAM to serve the safetensors weights with vLLM, GiB.
    pub vram_gb: f64,
    /// VRAM for the Ollama (Q4_K_M) build, GiB.
    pub ollama_vram_gb: Option<f64>,
    /// Context length.
    pub context: Option<u64>,
}

#[derive(Deserialize)]
struct List {
    models: Vec<Curated>,
}

/// Parses a curated list file.
pub fn parse_list(text: &str) -> Result<Vec<Curated>, String> {
    serde_json::from_str::<List>(text)
        .map(|l| l.models)
        .map_err(|e| format!("the recommended model list is not valid: {e}"))
}

/// Bytes per stored element of a safetensors dtype.
pub fn dtype_bytes(dtype: &str) -> f64 {
    match dtype.to_ascii_uppercase().as_str() {
        "F64" | "I64" | "U64" => 8.0,
        "F32" | "I32" | "U32" => 4.0,
        "F16" | "BF16" | "I16" | "U16" => 2.0,
        "F8_E4M3" | "F8_E5M2" | "I8" | "U8" | "BOOL" => 1.0,
        "F4" | "I4" | "U4" => 0.5,
        _ => 2.0,
    }
}

/// Weights in bytes from a safetensors `parameters` map (`{"BF16": n, "U8": m}`).
pub fn weight_bytes(params: &serde_json::Map<String, Value>) -> f64 {
    params
        .iter()
        .filter_map(|(d, n)| Some(n.as_f64()? * dtype_bytes(d)))
        .sum()
}

/// The KV-cache bytes: `2 × layers × kv_heads × head_dim × context × bytes`.
pub fn kv_bytes(layers: u64, kv_heads: u64, head_dim: u64, context: u64, bytes: f64) -> f64 {
    2.0 * layers as f64 * kv_heads as f64 * head_dim as f64 * context as f64 * bytes
}

/// VRAM to serve weights of `weights` bytes, in GiB: × 1.2 + 2 GiB, plus `kv` bytes.
pub fn estimate_gib(weights: f64, kv: f64) -> f64 {
    (weights * 1.2 + 2.0 * GIB + kv) / GIB
}

/// The seed's backend table: (backend, why). `None` backend: cloud providers only.
pub fn backend_for(hw: &Hardware) -> (Option<&'static str>, String) {
    let vram_gib = hw.max_vram_mib() as f64 / 1024.0;
    match hw.vendor() {
        Some("nvidia") if vram_gib >= 8.0 => (
            Some("vllm"),
            format!("NVIDIA GPU with {vram_gib:.0} GiB of VRAM: vLLM (or SGLang)"),
        ),
        Some("nvidia") => (
            Some("ollama"),
            format!("NVIDIA GPU with {vram_gib:.0} GiB of VRAM (under 8): Ollama with a quantized model"),
        ),
        Some("amd") => (Some("vllm"), "AMD GPU (ROCm): vLLM's ROCm build".into()),
        _ if hw.cpu_cores.unwrap_or(0.0) >= 2.0 && hw.ram_mib.unwrap_or(0) >= 4096 => (
            Some("ollama"),
            "no GPU: Ollama with a small quantized model on the CPU".into(),
        ),
        _ => (
            None,
            "no local hardware to run a model: use cloud providers".into(),
        ),
    }
}

/// Usable memory for models in GiB: VRAM (90%, vLLM's default utilization) on a GPU,
/// half the RAM on a CPU-only machine.
fn budget_gib(hw: &Hardware) -> f64 {
    if hw.gpus.is_empty() {
        hw.ram_mib.unwrap_or(0) as f64 / 1024.0 / 2.0
    } else {
        hw.max_vram_mib() as f64 / 1024.0 * 0.9
    }
}

/// The curated list filtered by what fits, with the need per model for `backend`.
pub fn fitting(hw: &Hardware, list: &[Curated], backend: &str) -> Vec<Value> {
    let budget = budget_gib(hw);
    list.iter()
        .filter_map(|m| {
            let need = if backend == "ollama" {
                m.ollama_vram_gb?
            } else {
                m.vram_gb
            };
            (need <= budget).then(|| {
                json!({
                    "id": if backend == "ollama" { m.ollama.clone().unwrap_or_else(|| m.id.clone()) } else { m.id.clone() },
                    "category": m.category,
                    "params_b": m.params_b,
                    "vram_gb": need,
                    "context": m.context,
                })
            })
        })
        .collect()
}

/// The recommendation: a backend and the largest curated model that fits it.
pub fn recommend(hw: &Hardware, list: &[Curated]) -> Value {
    let (backend, why) = backend_for(hw);
    let Some(backend) = backend else {
        return json!({"backend": null, "model": null, "reason": why, "budget_gb": 0.0});
    };
    let mut fits = fitting(hw, list, backend);
    fits.sort_by(|a, b| {
        b["vram_gb"]
            .as_f64()
            .partial_cmp(&a["vram_gb"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // The seed: CPU only gets a small model (the RAM would hold more, the speed would not).
    let model = if hw.gpus.is_empty() {
        fits.iter().find(|m| m["category"] == "small").cloned()
    } else {
        fits.iter().find(|m| m["category"] != "coding").cloned()
    };
    json!({
        "backend": backend,
        "model": model,
        "reason": why,
        "budget_gb": (budget_gib(hw) * 10.0).round() / 10.0,
        "alternatives": fits.into_iter().take(5).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::hardware::Gpu;

    fn hw(vendor: Option<&str>, vram_mib: u64) -> Hardware {
        Hardware {
            schema: 1,
            source: "test".into(),
            gpus: vendor
                .map(|v| Gpu {
                    index: 0,
                    vendor: v.into(),
                    name: "gpu".into(),
                    vram_mib: Some(vram_mib),
                    vram_used_mib: None,
                    utilization_pct: None,
                    temperature_c: None,
                    power_w: None,
                })
                .into_iter()
                .collect(),
            docker_gpu_runtime: None,
            cpu_cores: Some(8.0),
            ram_mib: Some(32768),
            disk_free_mib: None,
        }
    }

    #[test]
    fn the_seeds_backend_table() {
        assert_eq!(backend_for(&hw(Some("nvidia"), 24576)).0, Some("vllm"));
        assert_eq!(backend_for(&hw(Some("nvidia"), 6144)).0, Some("ollama"));
        assert_eq!(backend_for(&hw(Some("amd"), 24576)).0, Some("vllm"));
        assert_eq!(backend_for(&hw(None, 0)).0, Some("ollama"));
        let mut none = hw(None, 0);
        none.cpu_cores = Some(1.0);
        none.ram_mib = Some(1024);
        assert_eq!(backend_for(&none).0, None);
    }

    #[test]
    fn the_largest_general_model_that_fits() {
        let list = parse_list(BUILTIN_MODELS).unwrap();
        let r = recommend(&hw(Some("nvidia"), 24576), &list);
        assert_eq!(r["backend"], "vllm");
        // 24 GiB × 0.9 = 21.6: the 8B (21 GiB) fits, the 32B AWQ (24) does not.
        assert_eq!(r["model"]["id"], "meta-llama/Llama-3.1-8B-Instruct");
        let r = recommend(&hw(Some("nvidia"), 6144), &list);
        assert_eq!(r["backend"], "ollama");
        assert!(r["model"]["vram_gb"].as_f64().unwrap() <= 6.0 * 0.9);
        let r = recommend(&hw(None, 0), &list);
        assert_eq!(r["backend"], "ollama");
        assert_eq!(r["model"]["category"], "small", "CPU only: a small model");
        for m in fitting(&hw(Some("nvidia"), 8192), &list, "vllm") {
            assert!(m["vram_gb"].as_f64().unwrap() <= 7.2);
        }
    }

    #[test]
    fn vram_estimates() {
        // Llama-3.1-8B at bf16: 8.03e9 × 2 bytes → ×1.2 + 2 GiB ≈ 19.95 GiB.
        let mut p = serde_json::Map::new();
        p.insert("BF16".into(), json!(8_030_261_248u64));
        let w = weight_bytes(&p);
        assert!((estimate_gib(w, 0.0) - 19.95).abs() < 0.05);
        // Its KV cache at bf16 is 128 KiB per token: 1 GiB at 8192.
        let kv = kv_bytes(32, 8, 128, 8192, 2.0);
        assert_eq!(kv, GIB);
        // Packed formats count storage elements.
        let mut q = serde_json::Map::new();
        q.insert("BF16".into(), json!(1000));
        q.insert("U8".into(), json!(1000));
        assert_eq!(weight_bytes(&q), 3000.0);
    }
}
