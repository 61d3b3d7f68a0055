//! `[control]`: the controller that runs the local inference backend's container (see
//! `docs/control-plane.md`). The section validates itself: every value out of range is
//! an error naming its field, never a silent clamp.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{cerr, ConfigError, DurationFile, LocalKind};

/// `[control]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlFile {
    /// Whether the controller runs (off by default, so a machine without Docker starts).
    pub enabled: bool,
    /// The Docker Engine endpoint: `unix:///path/docker.sock` or `tcp://host:port`.
    pub docker_host: String,
    /// Which gateway cluster the containers belong to (label `switchyard.instance`):
    /// replicas sharing one store share it; another cluster on the same engine needs
    /// its own, or each would remove the other's containers as leftovers.
    pub instance: String,
    /// Time between health checks of a ready backend.
    pub health_interval: DurationFile,
    /// Consecutive failed checks before the container is restarted.
    pub failures_before_restart: u32,
    /// Waits between restart attempts; when they run out the state is `error`.
    pub backoff: Vec<DurationFile>,
    /// Time from "container started" to healthy before the start is an error. Pulling
    /// the image is outside it.
    pub start_timeout: DurationFile,
    /// Longest wait for in-flight local requests before a stop or switch.
    pub drain_timeout: DurationFile,
    /// Time `docker stop` gives the container before it is killed.
    pub stop_grace: DurationFile,
    /// Longest wait for GPU memory to be freed after a stop.
    pub vram_free_timeout: DurationFile,
    /// A `hardware.json` to read instead of probing (`nvidia-smi`, `rocm-smi`, /proc).
    pub hardware_file: Option<String>,
    /// The Hugging Face Hub (model search).
    pub hub_url: String,
    /// The curated model list (`conf/recommended_models.json` when unset: the built-in one).
    pub recommended_models: Option<String>,
    /// One profile per managed kind.
    pub backends: BackendsFile,
}

impl Default for ControlFile {
    fn default() -> Self {
        Self {
            enabled: false,
            docker_host: "unix:///var/run/docker.sock".into(),
            instance: "default".into(),
            health_interval: DurationFile(Duration::from_secs(30)),
            failures_before_restart: 3,
            backoff: [30, 60, 120]
                .map(|s| DurationFile(Duration::from_secs(s)))
                .to_vec(),
            start_timeout: DurationFile(Duration::from_secs(120)),
            drain_timeout: DurationFile(Duration::from_secs(15)),
            stop_grace: DurationFile(Duration::from_secs(30)),
            vram_free_timeout: DurationFile(Duration::from_secs(60)),
            hardware_file: None,
            hub_url: "https://huggingface.co".into(),
            recommended_models: None,
            backends: BackendsFile::default(),
        }
    }
}

/// `[control.backends]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsFile {
    /// `[control.backends.vllm]`
    pub vllm: Option<ProfileFile>,
    /// `[control.backends.sglang]`
    pub sglang: Option<ProfileFile>,
    /// `[control.backends.ollama]`
    pub ollama: Option<ProfileFile>,
}

/// Which GPUs a container gets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GpusFile {
    /// `"all"` or `"none"`.
    Word(String),
    /// Device ids (`["0", "1"]`).
    Ids(Vec<String>),
}

/// One backend kind's container profile as written; every field has the kind's default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileFile {
    /// Image reference (`vllm/vllm-openai:v0.11.0`).
    pub image: Option<String>,
    /// Container name (default `switchyard-<kind>`).
    pub container_name: Option<String>,
    /// Entrypoint override (SGLang's image needs one).
    pub entrypoint: Option<Vec<String>>,
    /// Arguments; `{model}` is replaced by the model.
    pub args: Option<Vec<String>>,
    /// Environment of the container.
    pub env: BTreeMap<String, String>,
    /// Bind mounts, `host:container[:ro]` (the model cache).
    pub volumes: Option<Vec<String>>,
    /// The port the server listens on inside the container.
    pub port: Option<u16>,
    /// Port published on 127.0.0.1 (0 or unset: the engine picks a free one).
    pub host_port: Option<u16>,
    /// Address the port is published on.
    pub host_ip: Option<String>,
    /// The health endpoint.
    pub health_path: Option<String>,
    /// Longest single health probe.
    pub probe_timeout: Option<DurationFile>,
    /// `"all"`, `"none"` or a list of device ids.
    pub gpus: Option<GpusFile>,
    /// `nvidia` or `amd` (default: from the detected hardware, else nvidia).
    pub gpu_vendor: Option<String>,
    /// Shared memory (`"16g"`, `"512m"` or bytes); unset: `ipc = host`.
    pub shm_size: Option<String>,
}

/// Which GPUs a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpus {
    /// Every GPU (`docker run --gpus all`).
    All,
    /// None (CPU only).
    None,
    /// These device ids.
    Ids(Vec<String>),
}

/// GPU vendor: decides how GPUs are passed to the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuVendor {
    /// Decide from the detected hardware (NVIDIA when unknown).
    Auto,
    /// A device request for the `nvidia` driver.
    Nvidia,
    /// `/dev/kfd`, `/dev/dri`, group `video`.
    Amd,
}

/// A validated container profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The kind it runs.
    pub kind: LocalKind,
    /// Image reference.
    pub image: String,
    /// Container name.
    pub container_name: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments with `{model}` still in them.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Bind mounts.
    pub volumes: Vec<String>,
    /// Port inside the container.
    pub port: u16,
    /// Published port (0: engine-assigned).
    pub host_port: u16,
    /// Address the port is published on.
    pub host_ip: String,
    /// Health endpoint path.
    pub health_path: String,
    /// Longest single probe.
    pub probe_timeout: Duration,
    /// GPUs.
    pub gpus: Gpus,
    /// GPU vendor.
    pub gpu_vendor: GpuVendor,
    /// Shared memory in bytes (`None`: `ipc = host`).
    pub shm_bytes: Option<i64>,
}

impl Profile {
    /// The arguments for `model`.
    pub fn args_for(&self, model: &str) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.replace("{model}", model))
            .collect()
    }
}

/// Validated `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSettings {
    /// Whether the controller runs.
    pub enabled: bool,
    /// Docker endpoint.
    pub docker_host: String,
    /// The cluster's label value.
    pub instance: String,
    /// Health check period when ready.
    pub health_interval: Duration,
    /// Failed checks before a restart.
    pub failures_before_restart: u32,
    /// Waits between restart attempts.
    pub backoff: Vec<Duration>,
    /// Start budget.
    pub start_timeout: Duration,
    /// Drain budget.
    pub drain_timeout: Duration,
    /// `docker stop` grace.
    pub stop_grace: Duration,
    /// VRAM wait after a stop.
    pub vram_free_timeout: Duration,
    /// Hardware description file.
    pub hardware_file: Option<String>,
    /// Hugging Face Hub base URL.
    pub hub_url: String,
    /// Curated model list path.
    pub recommended_models: Option<String>,
    /// Profiles of vllm, sglang, ollama (always all three).
    pub profiles: Vec<Profile>,
}

impl Default for ControlSettings {
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        ControlFile::default()
            .validate()
            .expect("the default [control] section is valid")
    }
}

impl ControlSettings {
    /// The profile of `kind`, if it is a managed kind.
    pub fn profile(&self, kind: LocalKind) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.kind == kind)
    }

    /// Whether the controller runs `kind` (so its URL and state come from it).
    pub fn manages(&self, kind: LocalKind) -> bool {
        self.enabled && self.profile(kind).is_some()
    }
}

/// A managed kind's defaults: (kind, image, args, port, health path, probe timeout s).
type KindDefaults = (
    LocalKind,
    &'static str,
    &'static [&'static str],
    u16,
    &'static str,
    u64,
);

/// The kinds the controller runs, with their defaults.
const KINDS: [KindDefaults; 3] = [
    (
        LocalKind::Vllm,
        "vllm/vllm-openai",
        &["{model}", "--host", "0.0.0.0", "--port", "8000"],
        8000,
        "/health",
        5,
    ),
    (
        LocalKind::Sglang,
        "lmsysorg/sglang",
        &[
            "--model-path",
            "{model}",
            "--host",
            "0.0.0.0",
            "--port",
            "30000",
        ],
        30000,
        "/health",
        25,
    ),
    (LocalKind::Ollama, "ollama/ollama", &[], 11434, "/", 5),
];

/// Parses `"16g"`, `"512m"`, `"64k"` or a byte count.
fn parse_size(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.trim().parse().ok()?;
    n.checked_mul(mult).filter(|v| *v > 0)
}

impl ControlFile {
    /// Validates the section.
    pub fn validate(&self) -> Result<ControlSettings, ConfigError> {
        let dh = self.docker_host.as_str();
        if !(dh.starts_with("unix://") || dh.starts_with("tcp://") || dh.starts_with("http://")) {
            return Err(cerr(
                "control.docker_host",
                dh,
                "expected unix:///path/to/docker.sock or tcp://host:port",
            ));
        }
        let positive = |d: &DurationFile, path: &str, min: Duration| {
            if d.0 < min {
                Err(cerr(
                    path,
                    format!("{:?}", d.0),
                    format!("must be at least {min:?}"),
                ))
            } else {
                Ok(d.0)
            }
        };
        if self.instance.is_empty()
            || !self
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(cerr(
                "control.instance",
                self.instance.as_str(),
                "letters, digits, `_`, `.` and `-` only",
            ));
        }
        let ms = Duration::from_millis;
        let health_interval = positive(&self.health_interval, "control.health_interval", ms(100))?;
        if self.failures_before_restart == 0 || self.failures_before_restart > 100 {
            return Err(cerr(
                "control.failures_before_restart",
                self.failures_before_restart.to_string(),
                "must be between 1 and 100",
            ));
        }
        if self.backoff.len() > 20 {
            return Err(cerr(
                "control.backoff",
                self.backoff.len().to_string(),
                "at most 20 steps",
            ));
        }
        let mut backoff = Vec::new();
        for (i, d) in self.backoff.iter().enumerate() {
            backoff.push(positive(d, &format!("control.backoff[{i}]"), ms(0))?);
        }
        let start_timeout = positive(&self.start_timeout, "control.start_timeout", ms(100))?;
        let drain_timeout = positive(&self.drain_timeout, "control.drain_timeout", ms(0))?;
        let stop_grace = positive(&self.stop_grace, "control.stop_grace", ms(0))?;
        if stop_grace > Duration::from_secs(3600) {
            return Err(cerr(
                "control.stop_grace",
                format!("{stop_grace:?}"),
                "at most 1h",
            ));
        }
        super::BaseUrl::parse(&self.hub_url, "control.hub_url")?;
        let mut profiles = Vec::new();
        let b = &self.backends;
        for (file, (kind, image, args, port, health, probe)) in
            [&b.vllm, &b.sglang, &b.ollama].into_iter().zip(KINDS)
        {
            let p = file.clone().unwrap_or_default();
            let at = |f: &str| format!("control.backends.{}.{f}", kind.as_str());
            let image = p.image.unwrap_or_else(|| image.to_string());
            if image.trim().is_empty() || image.contains(char::is_whitespace) {
                return Err(cerr(at("image"), image, "must be an image reference"));
            }
            let container_name = p
                .container_name
                .unwrap_or_else(|| format!("switchyard-{}", kind.as_str()));
            if container_name.is_empty()
                || !container_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(cerr(
                    at("container_name"),
                    container_name,
                    "letters, digits, `_`, `.` and `-` only",
                ));
            }
            let port = p.port.unwrap_or(port);
            if port == 0 {
                return Err(cerr(at("port"), "0", "must be a port number"));
            }
            let health_path = p.health_path.unwrap_or_else(|| health.to_string());
            if !health_path.starts_with('/') {
                return Err(cerr(at("health_path"), health_path, "must start with `/`"));
            }
            let probe_timeout = match &p.probe_timeout {
                Some(d) => positive(d, &at("probe_timeout"), ms(10))?,
                None => Duration::from_secs(probe),
            };
            let gpus = match &p.gpus {
                None => Gpus::All,
                Some(GpusFile::Word(w)) if w == "all" => Gpus::All,
                Some(GpusFile::Word(w)) if w == "none" => Gpus::None,
                Some(GpusFile::Word(w)) => {
                    return Err(cerr(
                        at("gpus"),
                        w.as_str(),
                        "expected \"all\", \"none\" or a list of device ids",
                    ))
                }
                Some(GpusFile::Ids(ids)) if ids.is_empty() => {
                    return Err(cerr(
                        at("gpus"),
                        "[]",
                        "an empty list: write \"none\" for no GPU",
                    ))
                }
                Some(GpusFile::Ids(ids)) => Gpus::Ids(ids.clone()),
            };
            let gpu_vendor = match p.gpu_vendor.as_deref() {
                None | Some("auto") => GpuVendor::Auto,
                Some("nvidia") => GpuVendor::Nvidia,
                Some("amd") => GpuVendor::Amd,
                Some(v) => {
                    return Err(cerr(
                        at("gpu_vendor"),
                        v,
                        "expected \"nvidia\", \"amd\" or \"auto\"",
                    ))
                }
            };
            let shm_bytes = match &p.shm_size {
                None => None,
                Some(s) => Some(parse_size(s).ok_or_else(|| {
                    cerr(
                        at("shm_size"),
                        s.as_str(),
                        "expected a size such as \"16g\" or \"512m\"",
                    )
                })?),
            };
            let volumes = p.volumes.unwrap_or_default();
            for v in &volumes {
                if v.split(':').count() < 2 {
                    return Err(cerr(
                        at("volumes"),
                        v.as_str(),
                        "expected host_path:container_path[:ro]",
                    ));
                }
            }
            for k in p.env.keys() {
                if k.is_empty() || k.contains('=') {
                    return Err(cerr(at("env"), k.as_str(), "not a variable name"));
                }
            }
            let host_ip = p.host_ip.unwrap_or_else(|| "127.0.0.1".into());
            if host_ip.parse::<std::net::IpAddr>().is_err() {
                return Err(cerr(at("host_ip"), host_ip, "must be an IP address"));
            }
            profiles.push(Profile {
                kind,
                image,
                container_name,
                entrypoint: p.entrypoint.filter(|e| !e.is_empty()),
                args: p
                    .args
                    .unwrap_or_else(|| args.iter().map(|a| a.to_string()).collect()),
                env: p.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                volumes,
                port,
                host_port: p.host_port.unwrap_or(0),
                host_ip,
                health_path,
                probe_timeout,
                gpus,
                gpu_vendor,
                shm_bytes,
            });
        }
        let mut names: Vec<&str> = profiles.iter().map(|p| p.container_name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(cerr(
                "control.backends",
                "",
                "two profiles share a container name",
            ));
        }
        Ok(ControlSettings {
            enabled: self.enabled,
            docker_host: self.docker_host.clone(),
            instance: self.instance.clone(),
            health_interval,
            failures_before_restart: self.failures_before_restart,
            backoff,
            start_timeout,
            drain_timeout,
            stop_grace,
            vram_free_timeout: self.vram_free_timeout.0,
            hardware_file: self.hardware_file.clone().filter(|f| !f.is_empty()),
            hub_url: self.hub_url.trim_end_matches('/').to_string(),
            recommended_models: self.recommended_models.clone().filter(|f| !f.is_empty()),
            profiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ControlSettings, ConfigError> {
        let f: ControlFile = toml::from_str(text).map_err(|e| cerr("", "", e.to_string()))?;
        f.validate()
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = parse("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.health_interval, Duration::from_secs(30));
        assert_eq!(c.failures_before_restart, 3);
        assert_eq!(c.backoff, [30, 60, 120].map(Duration::from_secs).to_vec());
        assert_eq!(c.start_timeout, Duration::from_secs(120));
        assert_eq!(c.drain_timeout, Duration::from_secs(15));
        let v = c.profile(LocalKind::Vllm).unwrap();
        assert_eq!(v.image, "vllm/vllm-openai");
        assert_eq!(v.container_name, "switchyard-vllm");
        assert_eq!(v.args_for("m/x")[0], "m/x");
        assert_eq!(c.profile(LocalKind::Ollama).unwrap().port, 11434);
        assert_eq!(c.profile(LocalKind::Sglang).unwrap().port, 30000);
        assert!(c.profile(LocalKind::Custom).is_none());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        for (text, field) in [
            ("failures_before_restart = 0", "control.failures_before_restart"),
            ("health_interval = \"1ms\"", "control.health_interval"),
            ("docker_host = \"/var/run/docker.sock\"", "control.docker_host"),
            ("[backends.vllm]\ngpus = \"some\"", "control.backends.vllm.gpus"),
            ("[backends.vllm]\ngpus = []", "control.backends.vllm.gpus"),
            ("[backends.ollama]\nshm_size = \"lots\"", "control.backends.ollama.shm_size"),
            ("[backends.sglang]\nhealth_path = \"health\"", "control.backends.sglang.health_path"),
            ("[backends.sglang]\ncontainer_name = \"a b\"", "control.backends.sglang.container_name"),
            ("[backends.vllm]\ncontainer_name = \"x\"\n[backends.ollama]\ncontainer_name = \"x\"", "control.backends"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.path, field, "{text}: {e}");
        }
    }

    #[test]
    fn gpus_and_sizes() {
        let c = parse("[backends.vllm]\ngpus = [\"0\", \"2\"]\nshm_size = \"16g\"\n[backends.ollama]\ngpus = \"none\"").unwrap();
        let v = c.profile(LocalKind::Vllm).unwrap();
        assert_eq!(v.gpus, Gpus::Ids(vec!["0".into(), "2".into()]));
        assert_eq!(v.shm_bytes, Some(16 << 30));
        assert_eq!(c.profile(LocalKind::Ollama).unwrap().gpus, Gpus::None);
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("0"), None);
    }
}
