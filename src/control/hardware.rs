//! What the machine offers: GPUs (`nvidia-smi`, `rocm-smi`), CPU cores, RAM (capped by
//! the cgroup limit), free disk; or a `hardware.json` file. Unknown facts are `null`,
//! never a made-up number. Also live GPU statistics from `nvidia-smi` output.
//!
//! The parsers take the tools' text, so they are tested against recorded outputs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema version of the hardware snapshot (`system:hardware`).
pub const SCHEMA: u32 = 1;

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// Device index.
    pub index: u32,
    /// `nvidia` or `amd`.
    pub vendor: String,
    /// Model name.
    pub name: String,
    /// Total VRAM in MiB.
    pub vram_mib: Option<u64>,
    /// Used VRAM in MiB.
    #[serde(default)]
    pub vram_used_mib: Option<u64>,
    /// Utilization in percent.
    #[serde(default)]
    pub utilization_pct: Option<f64>,
    /// Temperature in °C.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Power draw in W.
    #[serde(default)]
    pub power_w: Option<f64>,
}

/// The machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Where it came from: `probe` or the file's path.
    pub source: String,
    /// GPUs (empty: none found).
    pub gpus: Vec<Gpu>,
    /// Whether the Docker engine has a GPU runtime (`nvidia` in its runtimes).
    pub docker_gpu_runtime: Option<bool>,
    /// CPU cores usable (cgroup quota honoured).
    pub cpu_cores: Option<f64>,
    /// RAM in MiB (cgroup limit honoured).
    pub ram_mib: Option<u64>,
    /// Free disk in MiB where models are kept.
    pub disk_free_mib: Option<u64>,
}

impl Hardware {
    /// Total VRAM of the largest GPU in MiB (0 without a GPU).
    pub fn max_vram_mib(&self) -> u64 {
        self.gpus
            .iter()
            .filter_map(|g| g.vram_mib)
            .max()
            .unwrap_or(0)
    }

    /// The GPU vendor, if there is a GPU.
    pub fn vendor(&self) -> Option<&str> {
        self.gpus.first().map(|g| g.vendor.as_str())
    }
}

fn num(s: &str) -> Option<f64> {
    let t = s
        .trim()
        .trim_end_matches(" MiB")
        .trim_end_matches(" W")
        .trim_end_matches(" %");
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The `nvidia-smi` query both parsers read.
pub const NVIDIA_QUERY: &str =
    "--query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw";

/// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,
/// temperature.gpu,power.draw --format=csv,noheader,nounits`. `[N/A]` fields are `None`.
pub fn parse_nvidia(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() < 3 {
                return None;
            }
            let at = |i: usize| f.get(i).and_then(|s| num(s));
            Some(Gpu {
                index: f[0].parse().ok()?,
                vendor: "nvidia".into(),
                name: f[1].to_string(),
                vram_mib: at(2).map(|v| v as u64),
                vram_used_mib: at(3).map(|v| v as u64),
                utilization_pct: at(4),
                temperature_c: at(5),
                power_w: at(6),
            })
        })
        .collect()
}

/// Parses `rocm-smi --showproductname --showmeminfo vram --showuse --showtemp --showpower
/// --json` (values are strings, key case varies by version).
pub fn parse_rocm(text: &str) -> Vec<Gpu> {
    let Ok(Value::Object(cards)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut out: Vec<Gpu> = cards
        .iter()
        .filter_map(|(k, v)| {
            let index: u32 = k.strip_prefix("card")?.parse().ok()?;
            let obj = v.as_object()?;
            let find = |pred: &dyn Fn(&str) -> bool| {
                obj.iter()
                    .find(|(k, _)| pred(&k.to_ascii_lowercase()))
                    .and_then(|(_, v)| v.as_str())
            };
            let bytes = |pred: &dyn Fn(&str) -> bool| {
                find(pred).and_then(num).map(|b| (b / 1_048_576.0) as u64)
            };
            let name = find(&|k| k == "card series" || k == "card model" || k == "device name")
                .unwrap_or("AMD GPU")
                .to_string();
            Some(Gpu {
                index,
                vendor: "amd".into(),
                name,
                vram_mib: bytes(&|k| k.starts_with("vram total memory")),
                vram_used_mib: bytes(&|k| k.starts_with("vram total used memory")),
                utilization_pct: find(&|k| k.starts_with("gpu use")).and_then(num),
                temperature_c: find(&|k| k.starts_with("temperature")).and_then(num),
                power_w: find(&|k| k.contains("power") && k.ends_with("(w)")).and_then(num),
            })
        })
        .collect();
    out.sort_by_key(|g| g.index);
    out
}

/// RAM in MiB from `/proc/meminfo` text, capped by a cgroup `memory.max` value.
pub fn parse_ram(meminfo: &str, cgroup_max: Option<&str>) -> Option<u64> {
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut mib = total_kib / 1024;
    if let Some(limit) = cgroup_max
        .map(str::trim)
        .filter(|v| *v != "max")
        .and_then(|v| v.parse::<u64>().ok())
    {
        mib = mib.min(limit / 1_048_576);
    }
    Some(mib)
}

/// CPU cores from the online count and a cgroup `cpu.max` (`quota period` | `max period`).
pub fn parse_cpus(online: usize, cgroup_cpu_max: Option<&str>) -> f64 {
    let quota = cgroup_cpu_max.and_then(|v| {
        let mut it = v.split_whitespace();
        let q = it.next()?.parse::<f64>().ok()?;
        let p = it.next()?.parse::<f64>().ok()?;
        (p > 0.0).then_some(q / p)
    });
    match quota {
        Some(q) => q.min(online as f64),
        None => online as f64,
    }
}

async fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(cmd)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Live NVIDIA GPU stats from the host's `nvidia-smi` (none: empty).
pub async fn host_gpu_stats() -> Vec<Gpu> {
    match run(
        "nvidia-smi",
        &[NVIDIA_QUERY, "--format=csv,noheader,nounits"],
    )
    .await
    {
        Some(t) => parse_nvidia(&t),
        None => Vec::new(),
    }
}

/// Free MiB on the filesystem holding `path` (`df`, so no unsafe statvfs call here).
async fn disk_free_mib(path: &str) -> Option<u64> {
    let t = run("df", &["-Pk", path]).await?;
    let line = t.lines().nth(1)?;
    let avail_kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(avail_kib / 1024)
}

/// Detects the hardware, or reads it from `file`.
pub async fn detect(
    file: Option<&str>,
    docker_gpu_runtime: Option<bool>,
) -> Result<Hardware, String> {
    if let Some(path) = file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let mut hw: Hardware = serde_json::from_str(&text)
            .map_err(|e| format!("{path} is not a hardware description: {e}"))?;
        hw.source = path.to_string();
        return Ok(hw);
    }
    let mut gpus = host_gpu_stats().await;
    if gpus.is_empty() {
        if let Some(t) = run(
            "rocm-smi",
            &[
                "--showproductname",
                "--showmeminfo",
                "vram",
                "--showuse",
                "--showtemp",
                "--json",
            ],
        )
        .await
        {
            gpus = parse_rocm(&t);
        }
    }
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await.ok();
    let mem_max = tokio::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .await
        .ok();
    let cpu_max = tokio::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .await
        .ok();
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Hardware {
        schema: SCHEMA,
        source: "probe".into(),
        gpus,
        docker_gpu_runtime,
        cpu_cores: Some(parse_cpus(online, cpu_max.as_deref())),
        ram_mib: meminfo.and_then(|m| parse_ram(m.as_str(), mem_max.as_deref())),
        disk_free_mib: disk_free_mib("/").await,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines() {
        let text = "0, NVIDIA GeForce RTX 4090, 24564, 1200, 35, 61, 120.50\n1, NVIDIA H200, 143771, [N/A], [Not Supported], 40, [N/A]\n";
        let g = parse_nvidia(text);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "NVIDIA GeForce RTX 4090");
        assert_eq!(g[0].vram_mib, Some(24564));
        assert_eq!(g[0].vram_used_mib, Some(1200));
        assert_eq!(g[0].power_w, Some(120.5));
        assert_eq!(g[1].vram_used_mib, None, "[N/A] is unknown");
        assert_eq!(g[1].utilization_pct, None);
        assert!(parse_nvidia("").is_empty());
        assert!(parse_nvidia(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        )
        .is_empty());
    }

    #[test]
    fn rocm_smi_json() {
        let text = r#"{"card0":{"GPU use (%)":"100","VRAM Total Used Memory (B)":"25677897728","VRAM Total Memory (B)":"25769803776","Temperature (Sensor edge) (C)":"62","Average Graphics Package Power (W)":"323","Card series":"Radeon RX 7900 XTX"},"system":{"Driver version":"6.7"}}"#;
        let g = parse_rocm(text);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].vendor, "amd");
        assert_eq!(g[0].name, "Radeon RX 7900 XTX");
        assert_eq!(g[0].vram_mib, Some(24576));
        assert_eq!(g[0].vram_used_mib, Some(24488));
        assert_eq!(g[0].utilization_pct, Some(100.0));
        assert_eq!(g[0].power_w, Some(323.0));
        assert!(parse_rocm("not json").is_empty());
    }

    #[test]
    fn ram_and_cpus_honour_cgroups() {
        let mi = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_ram(mi, None), Some(24000));
        assert_eq!(parse_ram(mi, Some("max\n")), Some(24000));
        assert_eq!(parse_ram(mi, Some("4294967296\n")), Some(4096));
        assert_eq!(parse_cpus(8, Some("200000 100000")), 2.0);
        assert_eq!(parse_cpus(2, Some("max 100000")), 2.0);
        assert_eq!(parse_cpus(4, None), 4.0);
    }
}
