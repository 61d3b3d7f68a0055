//! Configuration: the file types (what users write, `deny_unknown_fields`, explicit
//! defaults) and the validated runtime [`Settings`] made from them. Only
//! [`Settings::from_toml`] makes runtime settings, and every error it returns names the
//! field path and the bad value.
//!
//! The embedded default (`conf/switchyard.toml`) is compiled in: `switchyard` with no
//! arguments runs it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::providers::cli::CliSettings;
pub use crate::providers::presets::MessagesMode;
use crate::providers::presets::{preset, Preset, Wire, PRESETS};
use switchyard_filters::glob::Pattern;
use switchyard_filters::route::Strategy;

mod control;
pub use control::{ControlFile, ControlSettings, GpuVendor, Gpus, Profile};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/switchyard.toml");

/// A secret value (API key, auth header). Its `Debug` and `Display` print `*****`, so it
/// cannot leak through logs or error messages by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself. Call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

// ---------------------------------------------------------------------------------------
// File types
// ---------------------------------------------------------------------------------------

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listeners, threads, limits and timeouts.
    #[serde(default)]
    pub server: ServerFile,
    /// The local inference backend.
    #[serde(default)]
    pub local: LocalFile,
    /// Cloud and other providers.
    #[serde(default)]
    pub providers: Vec<ProviderFile>,
    /// Strategy, aliases, provider auto-detection.
    #[serde(default)]
    pub routing: RoutingFile,
    /// Logging.
    #[serde(default)]
    pub log: LogFile,
    /// Shared state in Redis (absent: in-memory, one process).
    pub redis: Option<RedisFile>,
    /// API keys, the admin secret.
    #[serde(default)]
    pub auth: AuthFile,
    /// Daily per-provider quotas.
    #[serde(default)]
    pub quotas: Vec<QuotaFile>,
    /// The response cache.
    #[serde(default)]
    pub cache: CacheFile,
    /// The controller of the local backend's container.
    #[serde(default)]
    pub control: ControlFile,
}

/// A duration written as seconds (`5`, `0.5`) or with a unit (`"500ms"`, `"5s"`, `"2m"`,
/// `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "DurationRepr")]
pub struct DurationFile(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Secs(f64),
    Text(String),
}

impl TryFrom<DurationRepr> for DurationFile {
    type Error = String;
    fn try_from(r: DurationRepr) -> Result<Self, String> {
        let secs = match r {
            DurationRepr::Secs(s) => s,
            DurationRepr::Text(t) => {
                let t = t.trim();
                let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = t.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = t.strip_suffix('m') {
                    (n, 60.0)
                } else if let Some(n) = t.strip_suffix('h') {
                    (n, 3600.0)
                } else if let Some(n) = t.strip_suffix('d') {
                    (n, 86_400.0)
                } else {
                    (t, 1.0)
                };
                num.trim().parse::<f64>().map_err(|_| {
                    format!("`{t}` is not a duration (examples: 5, \"500ms\", \"5s\", \"1h\")")
                })? * mult
            }
        };
        if !(0.0..=1e9).contains(&secs) || secs.is_nan() {
            return Err(format!("duration {secs} s is out of range"));
        }
        Ok(DurationFile(Duration::from_secs_f64(secs)))
    }
}

/// What rate limits do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOutage {
    /// Keep serving; each replica limits with its own in-memory buckets.
    #[default]
    FailOpen,
    /// Refuse rate-limited requests with 503.
    FailClosed,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`).
    pub url: Option<String>,
    /// Environment variable holding the URL (keeps a password out of the file).
    pub url_env: Option<String>,
    /// Prefix of every key (`nova:` reads the seed documents' keys).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How often the runtime configuration is read.
    #[serde(default = "default_refresh")]
    pub refresh_interval: DurationFile,
    /// Rate limits during an outage.
    #[serde(default)]
    pub on_outage: OnOutage,
    /// Connect and command timeout.
    #[serde(default = "default_redis_timeout")]
    pub timeout: DurationFile,
    /// This replica's id (`inflight:<replica>`); default host name and pid.
    pub replica_id: Option<String>,
}

fn default_prefix() -> String {
    "switchyard:".into()
}
fn default_refresh() -> DurationFile {
    DurationFile(Duration::from_secs(5))
}
fn default_redis_timeout() -> DurationFile {
    DurationFile(Duration::from_millis(500))
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    /// Require an API key on the proxy listener.
    pub enabled: bool,
    /// Environment variable holding the admin secret (`X-Admin-Secret`).
    pub admin_secret_env: String,
    /// How long a key lookup is remembered in-process.
    pub key_cache_ttl: DurationFile,
    /// How long an unknown key is remembered as unknown.
    pub negative_cache_ttl: DurationFile,
    /// Tokens reserved for a request without `max_tokens`.
    pub default_max_tokens: u64,
    /// Keys defined in the file.
    pub keys: Vec<KeyFile>,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            enabled: false,
            admin_secret_env: "SWITCHYARD_ADMIN_SECRET".into(),
            key_cache_ttl: DurationFile(Duration::from_secs(30)),
            negative_cache_ttl: DurationFile(Duration::from_secs(30)),
            default_max_tokens: 1024,
            keys: Vec::new(),
        }
    }
}

/// `[[auth.keys]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The key itself.
    pub key: Option<Secret>,
    /// Environment variable holding the key.
    pub key_env: Option<String>,
    /// Tenant name.
    pub tenant: String,
    /// Requests per minute (absent or 0: unlimited).
    #[serde(default)]
    pub requests_per_minute: u64,
    /// Tokens per minute (absent or 0: unlimited).
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Allowed models (globs); absent: all.
    #[serde(default)]
    pub models: Vec<String>,
}

/// `[[quotas]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    /// Provider name (`local` for the local backend).
    pub provider: String,
    /// Requests per UTC day (0: unlimited).
    #[serde(default)]
    pub requests_per_day: u64,
    /// Tokens per UTC day (0: unlimited).
    #[serde(default)]
    pub tokens_per_day: u64,
}

/// Cache scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheScope {
    /// Entries are per tenant.
    #[default]
    Tenant,
    /// One entry serves every tenant.
    Global,
}

/// `[cache]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheFile {
    /// Cache temperature-0 answers.
    pub enabled: bool,
    /// How long an answer is kept.
    pub ttl: DurationFile,
    /// `tenant` or `global`.
    pub scope: CacheScope,
    /// Largest answer stored, bytes.
    pub max_entry_bytes: usize,
    /// In-memory store only: total bytes of cached answers.
    pub max_memory_bytes: usize,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: DurationFile(Duration::from_secs(3600)),
            scope: CacheScope::Tenant,
            max_entry_bytes: 1024 * 1024,
            max_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    /// Proxy listener (`host:port`; port 0 picks a free port, printed at start).
    pub listen: String,
    /// Admin listener: health, metrics, stats.
    pub admin_listen: String,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones.
    pub work_stealing: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// PEM certificate for TLS on the proxy listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the proxy listener.
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of CAs trusted for upstream TLS instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Upstream TCP (and TLS) connect timeout, ms.
    pub connect_timeout_ms: u64,
    /// Longest wait for any read from an upstream (time to first token included), s.
    pub upstream_read_timeout_secs: u64,
    /// Longest wait for the client to send the next part of its request, s.
    pub client_read_timeout_secs: u64,
    /// Idle upstream connections kept for reuse.
    pub upstream_keepalive_pool: usize,
    /// How long an idle pooled upstream connection is kept, s.
    pub upstream_idle_timeout_secs: u64,
    /// On SIGTERM, how long in-flight requests may take to finish, s.
    pub shutdown_grace_secs: u64,
    /// Pingora's upgrade socket for zero-downtime restarts (`switchyard --upgrade`).
    pub upgrade_sock: String,
    /// Write-buffer size of client connections, bytes.
    pub write_buffer_bytes: usize,
    /// Read-buffer size of client connections, bytes (request headers; bodies are read
    /// into their own buffer).
    pub read_buffer_bytes: usize,
    /// How long a client connection may wait without sending a byte of a request (a new
    /// connection, or between kept-alive requests) before it is closed, s.
    pub client_idle_timeout_secs: u64,
    /// The whole request header must arrive within this time of its first byte, s.
    pub client_header_timeout_secs: u64,
    /// The request body must arrive within this time plus its size at
    /// `client_body_min_rate_bytes_per_sec`, s.
    pub client_body_timeout_secs: u64,
    /// The slowest average rate a request body may arrive at, bytes per second.
    pub client_body_min_rate_bytes_per_sec: u64,
    /// The longest a write to the client may wait (a client that stops reading a stream
    /// is dropped after it, and the upstream request cancelled), s.
    pub client_write_timeout_secs: u64,
    /// Client connections open at once; more are answered 503 and closed.
    pub max_client_connections: usize,
    /// The largest request header block accepted, bytes (431 beyond).
    pub max_request_header_bytes: usize,
    /// The longest model name accepted, bytes (400 beyond).
    pub max_model_name_bytes: usize,
    /// Client addresses (IPs or CIDR ranges) whose `X-Forwarded-For` is kept and appended
    /// to; from anyone else it is replaced by the client's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            threads: 1,
            work_stealing: false,
            max_body_bytes: 32 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            connect_timeout_ms: 2000,
            upstream_read_timeout_secs: 600,
            client_read_timeout_secs: 60,
            upstream_keepalive_pool: 1024,
            upstream_idle_timeout_secs: 60,
            shutdown_grace_secs: 30,
            upgrade_sock: "/tmp/switchyard_upgrade.sock".into(),
            write_buffer_bytes: 16 * 1024,
            read_buffer_bytes: 4096,
            client_idle_timeout_secs: 60,
            client_header_timeout_secs: 10,
            client_body_timeout_secs: 10,
            client_body_min_rate_bytes_per_sec: 16 * 1024,
            client_write_timeout_secs: 30,
            max_client_connections: 10_000,
            max_request_header_bytes: 64 * 1024,
            max_model_name_bytes: 256,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Kinds of local inference backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalKind {
    /// vLLM's OpenAI server.
    Vllm,
    /// SGLang's OpenAI server.
    Sglang,
    /// Ollama (OpenAI API under `/v1`, models from `/api/tags`).
    Ollama,
    /// Any OpenAI-compatible server (llama.cpp, LM Studio, a remote vLLM).
    Custom,
    /// No local backend.
    #[default]
    None,
}

impl LocalKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
            Self::Ollama => "ollama",
            Self::Custom => "custom",
            Self::None => "none",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "vllm" => Self::Vllm,
            "sglang" => Self::Sglang,
            "ollama" => Self::Ollama,
            "custom" => Self::Custom,
            "none" | "" => Self::None,
            _ => return None,
        })
    }

    /// The URL the backend listens on when none is configured.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            Self::Vllm | Self::Sglang => Some("http://127.0.0.1:8000"),
            Self::Ollama => Some("http://127.0.0.1:11434"),
            Self::Custom | Self::None => None,
        }
    }
}

/// `[local]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalFile {
    /// Backend kind.
    pub kind: LocalKind,
    /// Server root URL (without `/v1`); empty = the kind's default.
    pub url: Option<String>,
    /// Value sent as `Authorization` (e.g. `Bearer sk-…` for `vllm --api-key`).
    pub auth_header: Option<Secret>,
    /// Environment variable holding the `Authorization` value.
    pub auth_header_env: Option<String>,
    /// Headers added to every request to the backend.
    pub extra_headers: BTreeMap<String, String>,
    /// Models served in addition to the discovered ones (names or globs).
    pub models: Vec<String>,
    /// Seconds between model discoveries.
    pub discovery_interval_secs: u64,
    /// Query parameters passed on to the backend; any other is dropped.
    pub forward_query: Vec<String>,
    /// How `/v1/messages` requests are served. Default: `native` for vLLM and Ollama,
    /// `translate` for SGLang and custom servers.
    pub messages: Option<MessagesMode>,
}

impl Default for LocalFile {
    fn default() -> Self {
        Self {
            kind: LocalKind::None,
            url: None,
            auth_header: None,
            auth_header_env: None,
            extra_headers: BTreeMap::new(),
            models: Vec::new(),
            discovery_interval_secs: 30,
            forward_query: Vec::new(),
            messages: None,
        }
    }
}

/// Provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// api.openai.com
    Openai,
    /// Any OpenAI-compatible API (base_url required).
    OpenaiCompatible,
    /// Groq's OpenAI endpoint.
    Groq,
    /// Cerebras' OpenAI endpoint.
    Cerebras,
    /// OpenRouter.
    Openrouter,
    /// GitHub Models.
    Github,
    /// Gemini's OpenAI endpoint.
    Gemini,
    /// The Anthropic Messages API (`base_url` is the server root, `x-api-key` auth).
    Anthropic,
    /// A remote Ollama server (OpenAI API under `/v1`, Messages natively).
    Ollama,
    /// A remote llama.cpp `llama-server` (Messages natively).
    Llamacpp,
    /// A remote vLLM server (Messages natively).
    Vllm,
    /// A remote SGLang server.
    Sglang,
    /// A command-line client (the `claude` CLI in stream-json mode) run as a pool of
    /// pre-warmed processes.
    Cli,
    /// Answered inside the gateway: canned/echo text, streaming too.
    Mock,
}

impl ProviderKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::OpenaiCompatible => "openai-compatible",
            Self::Groq => "groq",
            Self::Cerebras => "cerebras",
            Self::Openrouter => "openrouter",
            Self::Github => "github",
            Self::Gemini => "gemini",
            Self::Anthropic => "anthropic",
            Self::Ollama => "ollama",
            Self::Llamacpp => "llamacpp",
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
            Self::Cli => "cli",
            Self::Mock => "mock",
        }
    }
}

/// `[[providers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// Unique name; `name/model` addresses this provider explicitly.
    pub name: String,
    /// What kind of API this is.
    pub kind: ProviderKind,
    /// API root including `/v1` (default: the kind's standard URL).
    pub base_url: Option<String>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The API key itself (prefer `api_key_env`).
    pub api_key: Option<Secret>,
    /// Models served: names or globs (`gpt-4o*`). Default: the kind's usual models.
    pub models: Option<Vec<String>>,
    /// Headers added to every request to this provider.
    #[serde(default)]
    pub extra_headers: BTreeMap<String, String>,
    /// Mock only: reply text; `"echo"` repeats the last user message.
    pub mock_reply: Option<String>,
    /// Mock only: delay between streamed tokens, ms.
    pub mock_itl_ms: Option<u64>,
    /// Query parameters passed on to the provider (e.g. `["api-version"]`); any other is
    /// dropped.
    #[serde(default)]
    pub forward_query: Vec<String>,
    /// How `/v1/messages` requests are served: passed through (`native`) or translated
    /// to OpenAI chat (`translate`). Default: the kind's.
    pub messages: Option<MessagesMode>,
    /// OpenRouter attribution: the app's URL (`HTTP-Referer`).
    pub app_url: Option<String>,
    /// OpenRouter attribution: the app's name (`X-Title`).
    pub app_name: Option<String>,
    /// Read the provider's model list (at start and every `discovery_interval_secs`);
    /// default: the kind's (on for OpenRouter, GitHub and remote vLLM/SGLang/Ollama/
    /// llama.cpp servers) when `models` is not given.
    pub discover_models: Option<bool>,
    /// Seconds between model list reads (default 300).
    pub discovery_interval_secs: Option<u64>,
    /// CLI only: the program and its arguments.
    pub command: Option<Vec<String>>,
    /// CLI only: environment variables for it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CLI only: processes kept warm (default 2).
    pub pool_size: Option<usize>,
    /// CLI only: extra cold processes when all are busy (default: `pool_size`).
    pub max_overflow: Option<usize>,
    /// CLI only: period of the liveness check, s (default 300).
    pub keep_alive_interval_secs: Option<u64>,
    /// CLI only: the longest a request waits for a process and its answer, s (default 60).
    pub request_timeout_secs: Option<u64>,
}

/// `[routing]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingFile {
    /// `local-first` | `cloud-first` | `local-only` | `cloud-only`
    pub strategy: StrategyFile,
    /// Alias -> real model (may be `provider/model`).
    pub aliases: BTreeMap<String, String>,
    /// Register cloud providers whose credential variable is set.
    pub auto_detect: bool,
    /// Ask streaming upstreams for a usage chunk (hidden from clients that did not ask).
    pub inject_stream_usage: bool,
}

impl Default for RoutingFile {
    fn default() -> Self {
        Self {
            strategy: StrategyFile::LocalFirst,
            aliases: BTreeMap::new(),
            auto_detect: true,
            inject_stream_usage: true,
        }
    }
}

/// Strategy spelling in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyFile {
    /// Local first.
    #[default]
    LocalFirst,
    /// Cloud first.
    CloudFirst,
    /// Local only.
    LocalOnly,
    /// Cloud only.
    CloudOnly,
}

impl From<StrategyFile> for Strategy {
    fn from(s: StrategyFile) -> Self {
        match s {
            StrategyFile::LocalFirst => Strategy::LocalFirst,
            StrategyFile::CloudFirst => Strategy::CloudFirst,
            StrategyFile::LocalOnly => Strategy::LocalOnly,
            StrategyFile::CloudOnly => Strategy::CloudOnly,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    /// One JSON line per request on stdout.
    pub access: bool,
    /// Level of the operational log on stderr (`RUST_LOG` overrides).
    pub level: String,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            access: true,
            level: "info".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runtime types
// ---------------------------------------------------------------------------------------

/// A configuration error: the field path, the bad value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`providers[1].base_url`).
    pub path: String,
    /// The offending value as written (never a secret).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "`{}`: {}", self.path, self.reason)
        } else {
            write!(f, "`{}` = {:?}: {}", self.path, self.value, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn cerr(
    path: impl Into<String>,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        path: path.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// A parsed `http(s)://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https`?
    pub tls: bool,
    /// Host name or address (no brackets for IPv6).
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
    /// Path without a trailing slash (`""` for the root).
    pub path: String,
}

impl BaseUrl {
    /// Parses `s`; `path` names the field for errors.
    pub fn parse(s: &str, path: &str) -> Result<Self, ConfigError> {
        let shown = mask_userinfo(s);
        let s_masked = shown.as_str();
        let uri: http::Uri = s
            .parse()
            .map_err(|e| cerr(path, s_masked, format!("not a URL: {e}")))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(cerr(
                path,
                s_masked,
                "the URL must not carry credentials (use the api key or auth header settings)",
            ));
        }
        let s = s_masked;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(cerr(path, s, "the URL must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| cerr(path, s, "the URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let p = uri.path().trim_end_matches('/').to_string();
        if uri.query().is_some() {
            return Err(cerr(path, s, "the URL must not have a query string"));
        }
        Ok(Self {
            tls,
            host,
            port,
            path: p,
        })
    }

    /// `host:port` for the Host header (port omitted when it is the scheme's default).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves the host (blocking; call at start-up or off the hot path).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))
    }
}

/// Validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Proxy listener address (port 0 allowed).
    pub listen: SocketAddr,
    /// Admin listener address (port 0 allowed).
    pub admin_listen: SocketAddr,
    /// Proxy worker threads (>= 1).
    pub threads: usize,
    /// Work stealing between proxy threads.
    pub work_stealing: bool,
    /// Body limit, bytes.
    pub max_body_bytes: usize,
    /// TLS certificate and key for the proxy listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA bundle for upstream TLS.
    pub ca_file: Option<PathBuf>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout.
    pub upstream_read_timeout: Duration,
    /// Client read timeout.
    pub client_read_timeout: Duration,
    /// Upstream keep-alive pool size.
    pub upstream_keepalive_pool: usize,
    /// Pooled connection idle timeout.
    pub upstream_idle_timeout: Duration,
    /// SIGTERM grace period.
    pub shutdown_grace: Duration,
    /// Upgrade socket path.
    pub upgrade_sock: String,
    /// Client connection write buffer, bytes.
    pub write_buffer_bytes: usize,
    /// Client connection read buffer, bytes.
    pub read_buffer_bytes: usize,
    /// Wait for the first byte of a request.
    pub client_idle_timeout: Duration,
    /// Time from a request header's first byte to its end.
    pub client_header_timeout: Duration,
    /// Base time a request body may take.
    pub client_body_timeout: Duration,
    /// Slowest average body rate, bytes per second (>= 1).
    pub client_body_min_rate: u64,
    /// Longest wait of one write to the client.
    pub client_write_timeout: Duration,
    /// Client connections open at once.
    pub max_client_connections: usize,
    /// Largest request header block.
    pub max_request_header_bytes: usize,
    /// Longest model name.
    pub max_model_name_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<IpNet>,
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d[/n]` or an IPv6 address with an optional prefix.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Validated `[local]`; `None` when `kind = "none"`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// Backend kind.
    pub kind: LocalKind,
    /// Server root.
    pub url: BaseUrl,
    /// `Authorization` value for the backend.
    pub auth: Option<Secret>,
    /// Extra headers.
    pub extra_headers: Vec<(String, String)>,
    /// Static model patterns.
    pub models: Vec<String>,
    /// Discovery period.
    pub discovery_interval: Duration,
    /// Query parameters passed on.
    pub forward_query: Vec<String>,
    /// How `/v1/messages` requests are served.
    pub messages: MessagesMode,
}

/// A validated provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: ProviderKind,
    /// API root (`None` for the in-process mock).
    pub base_url: Option<BaseUrl>,
    /// API key, if any.
    pub api_key: Option<Secret>,
    /// Model patterns.
    pub models: Vec<String>,
    /// Extra headers.
    pub extra_headers: Vec<(String, String)>,
    /// Mock reply (`echo` or text).
    pub mock_reply: String,
    /// Mock inter-token delay.
    pub mock_itl: Duration,
    /// Registered from an environment variable rather than the file.
    pub auto_detected: bool,
    /// The `api_key_env` variable that was not set: the provider stays configured but
    /// takes no requests.
    pub missing_key_env: Option<String>,
    /// Query parameters passed on.
    pub forward_query: Vec<String>,
    /// How `/v1/messages` requests are served.
    pub messages: MessagesMode,
    /// The process pool of a `cli` provider.
    pub cli: Option<CliSettings>,
    /// The period of model list reads, when they are on.
    pub discover: Option<Duration>,
}

/// Validated routing settings.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Default strategy.
    pub strategy: Strategy,
    /// Aliases.
    pub aliases: BTreeMap<String, String>,
    /// Inject `stream_options.include_usage`.
    pub inject_stream_usage: bool,
}

/// Validated `[redis]`.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The connection URL (may hold a password: never log it).
    pub url: Secret,
    /// Key prefix.
    pub key_prefix: String,
    /// Runtime configuration refresh period.
    pub refresh_interval: Duration,
    /// Outage policy.
    pub on_outage: OnOutage,
    /// Connect/command timeout.
    pub timeout: Duration,
    /// This replica's id, if configured.
    pub replica_id: Option<String>,
}

/// A configured API key, validated.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// The key.
    pub key: Secret,
    /// Tenant.
    pub tenant: String,
    /// Requests per minute (0 = unlimited).
    pub requests_per_minute: u64,
    /// Tokens per minute (0 = unlimited).
    pub tokens_per_minute: u64,
    /// Allowed model globs (empty = all).
    pub models: Vec<String>,
}

/// Validated `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Keys required on the proxy listener.
    pub enabled: bool,
    /// The admin secret, if its variable is set.
    pub admin_secret: Option<Secret>,
    /// Positive lookup cache TTL.
    pub key_cache_ttl: Duration,
    /// Negative lookup cache TTL.
    pub negative_cache_ttl: Duration,
    /// Reservation for requests without `max_tokens`.
    pub default_max_tokens: u64,
    /// Keys from the file.
    pub keys: Vec<KeySettings>,
}

/// A validated quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Provider name.
    pub provider: String,
    /// Requests per UTC day (0 = unlimited).
    pub requests_per_day: u64,
    /// Tokens per UTC day (0 = unlimited).
    pub tokens_per_day: u64,
}

/// Validated `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Enabled.
    pub enabled: bool,
    /// Entry TTL.
    pub ttl: Duration,
    /// Scope.
    pub scope: CacheScope,
    /// Largest entry.
    pub max_entry_bytes: usize,
    /// In-memory budget.
    pub max_memory_bytes: usize,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[server]`
    pub server: ServerSettings,
    /// `[local]`
    pub local: Option<LocalSettings>,
    /// Providers (file order, then auto-detected).
    pub providers: Vec<ProviderSettings>,
    /// `[routing]`
    pub routing: RoutingSettings,
    /// `[log]`
    pub log: LogFile,
    /// Environment variables whose providers were auto-registered.
    pub detected: Vec<&'static str>,
    /// Things that are valid but probably not what was meant (printed by `check` and at
    /// start-up).
    pub warnings: Vec<String>,
    /// Errors that leave one part out rather than stop the gateway (a provider whose
    /// credential cannot be sent is left out; everything else serves). `check` fails on
    /// them; at start-up each is logged as an error.
    pub problems: Vec<ConfigError>,
    /// `[redis]`, when shared state is in Redis.
    pub redis: Option<RedisSettings>,
    /// `[auth]`
    pub auth: AuthSettings,
    /// `[[quotas]]`
    pub quotas: Vec<QuotaSettings>,
    /// `[cache]`
    pub cache: CacheSettings,
    /// `[control]`
    pub control: ControlSettings,
}

fn parse_addr(s: &str, path: &str) -> Result<SocketAddr, ConfigError> {
    s.to_socket_addrs()
        .map_err(|e| cerr(path, s, format!("not a host:port address: {e}")))?
        .next()
        .ok_or_else(|| cerr(path, s, "resolves to no address"))
}

/// Whether a field (by its dotted path) holds or may hold a secret: its value is never
/// printed.
pub fn holds_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    matches!(
        last,
        "api_key" | "key" | "auth_header" | "url" | "admin_secret" | "password"
    ) || path.contains("extra_headers")
        || path.starts_with("redis")
}

/// `msg` without the spans it quotes in backticks or double quotes.
fn without_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        match (quote, c) {
            (None, '`' | '"') => {
                quote = Some(c);
                out.push_str("(value not shown)");
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// `url` with any `user:password@` replaced by `***@`, for messages and logs.
pub fn mask_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether `key` can be sent as `Authorization: Bearer <key>` (no control characters
/// such as a trailing newline).
pub fn bearer_ok(key: &str) -> bool {
    http::HeaderValue::from_str(&format!("Bearer {key}")).is_ok()
}

/// The problem recorded for a credential that is not a valid header value. Names the
/// field, never the value.
fn bad_credential(path: impl Into<String>, what: &str) -> ConfigError {
    cerr(
        path,
        "",
        format!(
            "{what} is not a valid HTTP header value (it holds a control character, such as \
             a trailing newline); the provider is left out and takes no requests"
        ),
    )
}

fn check_headers(
    h: &BTreeMap<String, String>,
    path: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(h.len());
    for (k, v) in h {
        http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| cerr(format!("{path}.{k}"), k.as_str(), "not a valid header name"))?;
        http::HeaderValue::from_str(v)
            .map_err(|_| cerr(format!("{path}.{k}"), "", "not a valid header value"))?;
        out.push((k.to_ascii_lowercase(), v.clone()));
    }
    Ok(out)
}

/// A `cli` provider's pool settings (`None` for every other kind; their CLI fields are
/// refused).
fn cli_settings(p: &ProviderFile, path: &str) -> Result<Option<CliSettings>, ConfigError> {
    if p.kind != ProviderKind::Cli {
        if p.command.is_some() || p.pool_size.is_some() {
            return Err(cerr(
                format!("{path}.command"),
                "",
                "only for kind = \"cli\"",
            ));
        }
        return Ok(None);
    }
    let command = p
        .command
        .clone()
        .filter(|c| c.first().is_some_and(|p| !p.is_empty()))
        .ok_or_else(|| cerr(format!("{path}.command"), "", "required for kind = \"cli\""))?;
    let pool_size = p.pool_size.unwrap_or(2);
    if !(1..=64).contains(&pool_size) {
        return Err(cerr(
            format!("{path}.pool_size"),
            pool_size.to_string(),
            "must be between 1 and 64",
        ));
    }
    let max_overflow = p.max_overflow.unwrap_or(pool_size);
    if max_overflow > 64 {
        return Err(cerr(
            format!("{path}.max_overflow"),
            max_overflow.to_string(),
            "must be at most 64",
        ));
    }
    let secs =
        |v: Option<u64>, default: u64, name: &str, max: u64| -> Result<Duration, ConfigError> {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                return Err(cerr(
                    format!("{path}.{name}"),
                    v.to_string(),
                    format!("must be between 1 and {max}"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
    Ok(Some(CliSettings {
        command,
        env: p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        pool_size,
        max_overflow,
        keep_alive: secs(
            p.keep_alive_interval_secs,
            300,
            "keep_alive_interval_secs",
            86_400,
        )?,
        request_timeout: secs(p.request_timeout_secs, 60, "request_timeout_secs", 3_600)?,
    }))
}

/// A provider's base URL. An Anthropic-dialect provider's is the server root: a
/// trailing `/v1` (the OpenAI SDKs' habit) is accepted and dropped.
fn provider_url(raw: &str, p: &Preset, field: &str) -> Result<BaseUrl, ConfigError> {
    let mut u = BaseUrl::parse(raw, field)?;
    if p.wire == Wire::Anthropic {
        if let Some(root) = u.path.strip_suffix("/v1") {
            u.path = root.to_string();
        }
    }
    Ok(u)
}

/// OpenRouter's attribution headers from `app_url` and `app_name` (both spellings of
/// the title header are sent: OpenRouter reads either).
fn add_attribution(
    headers: &mut Vec<(String, String)>,
    p: &ProviderFile,
    path: &str,
) -> Result<(), ConfigError> {
    let mut add = |name: &str, value: &Option<String>, field: &str| -> Result<(), ConfigError> {
        if let Some(v) = value {
            if http::HeaderValue::from_str(v).is_err() {
                return Err(cerr(
                    format!("{path}.{field}"),
                    v.as_str(),
                    "not a valid header value",
                ));
            }
            headers.push((name.to_string(), v.clone()));
        }
        Ok(())
    };
    add("http-referer", &p.app_url, "app_url")?;
    add("x-title", &p.app_name, "app_name")?;
    add("x-openrouter-title", &p.app_name, "app_name")?;
    Ok(())
}

fn check_query_names(names: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.contains(['&', '=', '#', ' ']) {
            return Err(cerr(
                format!("{path}[{i}]"),
                n.as_str(),
                "not a query parameter name",
            ));
        }
    }
    Ok(())
}

fn check_patterns(models: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, m) in models.iter().enumerate() {
        if m.trim().is_empty() {
            return Err(cerr(format!("{path}[{i}]"), m.as_str(), "empty model name"));
        }
        let _ = Pattern::new(m);
    }
    Ok(())
}

impl Settings {
    /// Parses and validates a TOML document. `env` looks up environment variables (so
    /// tests need not touch the process environment).
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let file: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut msg = inner.message().to_string();
            if holds_secret(&path) {
                // The message quotes the value it could not read; for a field that holds
                // a secret, say what was wrong without it.
                msg = without_quoted(&msg);
            }
            let at = inner
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            cerr(
                if path == "." { String::new() } else { path },
                "",
                format!("{msg}{at}"),
            )
        })?;
        Self::from_file(file, env)
    }

    /// Validates a parsed file.
    pub fn from_file(
        f: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let s = &f.server;
        if s.threads == 0 || s.threads > 256 {
            return Err(cerr(
                "server.threads",
                s.threads.to_string(),
                "must be between 1 and 256",
            ));
        }
        if s.max_body_bytes == 0 {
            return Err(cerr("server.max_body_bytes", "0", "must be positive"));
        }
        if s.connect_timeout_ms == 0 {
            return Err(cerr("server.connect_timeout_ms", "0", "must be positive"));
        }
        if s.upstream_read_timeout_secs == 0 {
            return Err(cerr(
                "server.upstream_read_timeout_secs",
                "0",
                "must be positive",
            ));
        }
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(c), Some(k)) => {
                for (p, name) in [(c, "server.tls_cert"), (k, "server.tls_key")] {
                    if !p.exists() {
                        return Err(cerr(name, p.display().to_string(), "file does not exist"));
                    }
                }
                Some((c.clone(), k.clone()))
            }
            (None, None) => None,
            (Some(c), None) => {
                return Err(cerr(
                    "server.tls_key",
                    "",
                    format!("required with tls_cert {}", c.display()),
                ))
            }
            (None, Some(_)) => return Err(cerr("server.tls_cert", "", "required with tls_key")),
        };
        let secs = |v: u64, name: &str, min: u64, max: u64| -> Result<Duration, ConfigError> {
            if v < min || v > max {
                return Err(cerr(
                    format!("server.{name}"),
                    v.to_string(),
                    format!("must be between {min} and {max}"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
        let client_idle_timeout = secs(
            s.client_idle_timeout_secs,
            "client_idle_timeout_secs",
            1,
            86_400,
        )?;
        let client_header_timeout = secs(
            s.client_header_timeout_secs,
            "client_header_timeout_secs",
            1,
            3_600,
        )?;
        let client_body_timeout = secs(
            s.client_body_timeout_secs,
            "client_body_timeout_secs",
            1,
            3_600,
        )?;
        let client_write_timeout = secs(
            s.client_write_timeout_secs,
            "client_write_timeout_secs",
            1,
            3_600,
        )?;
        if s.client_body_min_rate_bytes_per_sec == 0 {
            return Err(cerr(
                "server.client_body_min_rate_bytes_per_sec",
                "0",
                "must be positive",
            ));
        }
        if s.max_client_connections == 0 {
            return Err(cerr(
                "server.max_client_connections",
                "0",
                "must be positive",
            ));
        }
        if !(1024..=1024 * 1024).contains(&s.max_request_header_bytes) {
            return Err(cerr(
                "server.max_request_header_bytes",
                s.max_request_header_bytes.to_string(),
                "must be between 1024 and 1048576",
            ));
        }
        if !(1..=65_536).contains(&s.max_model_name_bytes) {
            return Err(cerr(
                "server.max_model_name_bytes",
                s.max_model_name_bytes.to_string(),
                "must be between 1 and 65536",
            ));
        }
        let mut trusted_proxies = Vec::with_capacity(s.trusted_proxies.len());
        for (i, t) in s.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(IpNet::parse(t).ok_or_else(|| {
                cerr(
                    format!("server.trusted_proxies[{i}]"),
                    t.as_str(),
                    "not an IP address or CIDR range",
                )
            })?);
        }
        if let Some(ca) = &s.ca_file {
            if !ca.exists() {
                return Err(cerr(
                    "server.ca_file",
                    ca.display().to_string(),
                    "file does not exist",
                ));
            }
        }
        // Out of range is an error naming the field, never a silent clamp.
        if s.client_read_timeout_secs == 0 {
            return Err(cerr(
                "server.client_read_timeout_secs",
                "0",
                "must be at least 1",
            ));
        }
        if !(1460..=1 << 20).contains(&s.write_buffer_bytes) {
            return Err(cerr(
                "server.write_buffer_bytes",
                s.write_buffer_bytes.to_string(),
                "must be between 1460 and 1048576",
            ));
        }
        if s.read_buffer_bytes > 1 << 20 {
            return Err(cerr(
                "server.read_buffer_bytes",
                s.read_buffer_bytes.to_string(),
                "must be at most 1048576",
            ));
        }
        let server = ServerSettings {
            listen: parse_addr(&s.listen, "server.listen")?,
            admin_listen: parse_addr(&s.admin_listen, "server.admin_listen")?,
            threads: s.threads,
            work_stealing: s.work_stealing,
            max_body_bytes: s.max_body_bytes,
            tls,
            ca_file: s.ca_file.clone(),
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            upstream_read_timeout: Duration::from_secs(s.upstream_read_timeout_secs),
            client_read_timeout: Duration::from_secs(s.client_read_timeout_secs),
            upstream_keepalive_pool: s.upstream_keepalive_pool,
            upstream_idle_timeout: Duration::from_secs(s.upstream_idle_timeout_secs),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            upgrade_sock: s.upgrade_sock.clone(),
            write_buffer_bytes: s.write_buffer_bytes,
            read_buffer_bytes: s.read_buffer_bytes,
            client_idle_timeout,
            client_header_timeout,
            client_body_timeout,
            client_body_min_rate: s.client_body_min_rate_bytes_per_sec,
            client_write_timeout,
            max_client_connections: s.max_client_connections,
            max_request_header_bytes: s.max_request_header_bytes,
            max_model_name_bytes: s.max_model_name_bytes,
            trusted_proxies,
        };
        if server.listen == server.admin_listen && server.listen.port() != 0 {
            return Err(cerr(
                "server.admin_listen",
                s.admin_listen.as_str(),
                "must differ from server.listen",
            ));
        }

        let mut warnings = Vec::new();
        let mut problems = Vec::new();
        let local = Self::local(&f.local, env, &mut warnings, &mut problems)?;

        let mut providers: Vec<ProviderSettings> = Vec::new();
        for (i, p) in f.providers.iter().enumerate() {
            let path = format!("providers[{i}]");
            if p.name.is_empty() || p.name.contains('/') || p.name.contains(char::is_whitespace) {
                return Err(cerr(
                    format!("{path}.name"),
                    p.name.as_str(),
                    "must be non-empty without '/' or spaces",
                ));
            }
            if p.name == "local" {
                return Err(cerr(
                    format!("{path}.name"),
                    "local",
                    "`local` is the local backend's name",
                ));
            }
            if providers.iter().any(|q| q.name == p.name) {
                return Err(cerr(
                    format!("{path}.name"),
                    p.name.as_str(),
                    "duplicate provider name",
                ));
            }
            let std = preset(p.kind);
            let cli = cli_settings(p, &path)?;
            let base_url = if matches!(p.kind, ProviderKind::Mock | ProviderKind::Cli) {
                None
            } else {
                let raw = p.base_url.as_deref().or(std.base_url).ok_or_else(|| {
                    cerr(format!("{path}.base_url"), "", "required for this kind")
                })?;
                Some(provider_url(raw, std, &format!("{path}.base_url"))?)
            };
            let mut missing_key_env = None;
            let api_key = match (&p.api_key, &p.api_key_env) {
                (Some(k), _) => {
                    if !bearer_ok(k.expose()) {
                        problems.push(bad_credential(format!("{path}.api_key"), "the key"));
                    }
                    Some(k.clone())
                }
                (None, Some(var)) => match env(var).filter(|v| !v.is_empty()) {
                    Some(v) => {
                        if !bearer_ok(&v) {
                            problems.push(bad_credential(
                                format!("{path}.api_key_env"),
                                &format!("the value of {var}"),
                            ));
                        }
                        Some(Secret::new(v))
                    }
                    None => {
                        warnings.push(format!(
                            "{path}.api_key_env: {var} is not set; provider {} takes no requests",
                            p.name
                        ));
                        missing_key_env = Some(var.clone());
                        None
                    }
                },
                (None, None) => {
                    let key = [std.env, std.env_fallback]
                        .into_iter()
                        .flatten()
                        .find_map(|var| Some((var, env(var).filter(|v| !v.is_empty())?)));
                    if let Some((var, v)) = &key {
                        if !bearer_ok(v) {
                            problems.push(bad_credential(
                                format!("{path}.api_key_env"),
                                &format!("the value of {var}"),
                            ));
                        }
                    }
                    key.map(|(_, v)| Secret::new(v))
                }
            };
            check_query_names(&p.forward_query, &format!("{path}.forward_query"))?;
            let models = match &p.models {
                Some(m) => m.clone(),
                None => std.models.iter().map(|s| s.to_string()).collect(),
            };
            check_patterns(&models, &format!("{path}.models"))?;
            if models.is_empty() && matches!(p.kind, ProviderKind::Mock | ProviderKind::Cli) {
                return Err(cerr(
                    format!("{path}.models"),
                    "",
                    format!("a {} provider needs at least one model", p.kind.as_str()),
                ));
            }
            let discover = (p
                .discover_models
                .unwrap_or(std.discover && p.models.is_none())
                && base_url.is_some())
            .then(|| Duration::from_secs(p.discovery_interval_secs.unwrap_or(300).max(5)));
            let mut extra_headers =
                check_headers(&p.extra_headers, &format!("{path}.extra_headers"))?;
            add_attribution(&mut extra_headers, p, &path)?;
            providers.push(ProviderSettings {
                name: p.name.clone(),
                kind: p.kind,
                base_url,
                api_key,
                models,
                extra_headers,
                mock_reply: p.mock_reply.clone().unwrap_or_else(|| "echo".into()),
                mock_itl: Duration::from_millis(p.mock_itl_ms.unwrap_or(15)),
                auto_detected: false,
                missing_key_env,
                forward_query: p.forward_query.clone(),
                messages: p.messages.unwrap_or(std.messages),
                cli,
                discover,
            });
        }

        let mut detected = Vec::new();
        if f.routing.auto_detect {
            for k in PRESETS {
                let (Some(var), Some(url)) = (k.env, k.base_url) else {
                    continue;
                };
                let name = k.kind.as_str();
                if providers.iter().any(|p| p.kind == k.kind || p.name == name) {
                    continue;
                }
                let found = [Some(var), k.env_fallback]
                    .into_iter()
                    .flatten()
                    .find_map(|v| Some((v, env(v).filter(|x| !x.is_empty())?)));
                let Some((var, key)) = found else {
                    continue;
                };
                let url_env = k.base_url_env.unwrap_or(var);
                let raw = k
                    .base_url_env
                    .and_then(env)
                    .unwrap_or_else(|| url.to_string());
                let base = provider_url(&raw, k, url_env)?;
                if !bearer_ok(&key) {
                    problems.push(bad_credential(
                        var,
                        &format!("the value of {var} (provider {name})"),
                    ));
                }
                detected.push(var);
                providers.push(ProviderSettings {
                    name: name.to_string(),
                    kind: k.kind,
                    base_url: Some(base),
                    api_key: Some(Secret::new(key)),
                    models: k.models.iter().map(|s| s.to_string()).collect(),
                    extra_headers: Vec::new(),
                    mock_reply: String::new(),
                    mock_itl: Duration::ZERO,
                    auto_detected: true,
                    missing_key_env: None,
                    forward_query: Vec::new(),
                    messages: k.messages,
                    cli: None,
                    discover: k.discover.then_some(Duration::from_secs(300)),
                });
            }
        }

        for (alias, target) in &f.routing.aliases {
            if target.is_empty() {
                return Err(cerr(
                    format!("routing.aliases.{alias}"),
                    "",
                    "alias target is empty",
                ));
            }
        }

        let redis = match &f.redis {
            None => None,
            Some(r) => {
                let url = match (&r.url, &r.url_env) {
                    (Some(u), _) => u.clone(),
                    (None, Some(var)) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        cerr(
                            "redis.url_env",
                            var.as_str(),
                            "environment variable is not set",
                        )
                    })?,
                    (None, None) => return Err(cerr("redis.url", "", "required in [redis]")),
                };
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://"))
                {
                    return Err(cerr(
                        "redis.url",
                        "",
                        "must start with redis://, rediss:// or unix://",
                    ));
                }
                if r.key_prefix.contains(['{', '}']) {
                    return Err(cerr(
                        "redis.key_prefix",
                        r.key_prefix.as_str(),
                        "must not contain braces (they are hash tags)",
                    ));
                }
                if r.refresh_interval.0 < Duration::from_millis(50) {
                    return Err(cerr(
                        "redis.refresh_interval",
                        format!("{:?}", r.refresh_interval.0),
                        "must be at least 50 ms",
                    ));
                }
                Some(RedisSettings {
                    url: Secret::new(url),
                    key_prefix: r.key_prefix.clone(),
                    refresh_interval: r.refresh_interval.0,
                    on_outage: r.on_outage,
                    timeout: r.timeout.0.max(Duration::from_millis(10)),
                    replica_id: r.replica_id.clone(),
                })
            }
        };

        let a = &f.auth;
        let mut keys = Vec::new();
        for (i, k) in a.keys.iter().enumerate() {
            let path = format!("auth.keys[{i}]");
            let key = match (&k.key, &k.key_env) {
                (Some(v), _) => v.clone(),
                (None, Some(var)) => match env(var).filter(|v| !v.is_empty()) {
                    Some(v) => Secret::new(v),
                    None => {
                        warnings.push(format!(
                            "{path}.key_env: {var} is not set; the key of tenant {} is skipped",
                            k.tenant
                        ));
                        continue;
                    }
                },
                (None, None) => {
                    return Err(cerr(
                        format!("{path}.key"),
                        "",
                        "`key` or `key_env` is required",
                    ))
                }
            };
            if key.expose().len() < 8 {
                return Err(cerr(
                    format!("{path}.key"),
                    "",
                    "too short (at least 8 characters)",
                ));
            }
            if k.tenant.is_empty() || k.tenant.contains(['{', '}', ' ', '\n']) {
                return Err(cerr(
                    format!("{path}.tenant"),
                    k.tenant.as_str(),
                    "must be non-empty without braces or spaces",
                ));
            }
            check_patterns(&k.models, &format!("{path}.models"))?;
            keys.push(KeySettings {
                key,
                tenant: k.tenant.clone(),
                requests_per_minute: k.requests_per_minute,
                tokens_per_minute: k.tokens_per_minute,
                models: k.models.clone(),
            });
        }
        let admin_secret = env(&a.admin_secret_env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        let auth = AuthSettings {
            enabled: a.enabled,
            admin_secret,
            key_cache_ttl: a.key_cache_ttl.0,
            negative_cache_ttl: a.negative_cache_ttl.0,
            default_max_tokens: a.default_max_tokens,
            keys,
        };
        if auth.enabled && auth.keys.is_empty() && auth.admin_secret.is_none() {
            warnings.push("auth is enabled but there are no keys and no admin secret to create some: every request gets 401".into());
        }

        let mut quotas: Vec<QuotaSettings> = Vec::new();
        for (i, q) in f.quotas.iter().enumerate() {
            let known = q.provider == "local" || providers.iter().any(|p| p.name == q.provider);
            if !known {
                return Err(cerr(
                    format!("quotas[{i}].provider"),
                    q.provider.as_str(),
                    "no such provider",
                ));
            }
            if quotas.iter().any(|x| x.provider == q.provider) {
                return Err(cerr(
                    format!("quotas[{i}].provider"),
                    q.provider.as_str(),
                    "duplicate quota",
                ));
            }
            quotas.push(QuotaSettings {
                provider: q.provider.clone(),
                requests_per_day: q.requests_per_day,
                tokens_per_day: q.tokens_per_day,
            });
        }
        let c = &f.cache;
        let cache = CacheSettings {
            enabled: c.enabled,
            ttl: c.ttl.0,
            scope: c.scope,
            max_entry_bytes: c.max_entry_bytes,
            max_memory_bytes: c.max_memory_bytes,
        };

        Ok(Settings {
            redis,
            auth,
            quotas,
            cache,
            control: f.control.validate()?,
            server,
            local,
            providers,
            routing: RoutingSettings {
                strategy: f.routing.strategy.into(),
                aliases: f.routing.aliases.clone(),
                inject_stream_usage: f.routing.inject_stream_usage,
            },
            log: f.log,
            detected,
            warnings,
            problems,
        })
    }

    fn local(
        l: &LocalFile,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
        problems: &mut Vec<ConfigError>,
    ) -> Result<Option<LocalSettings>, ConfigError> {
        if l.kind == LocalKind::None {
            return Ok(None);
        }
        let raw = match l.url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => l
                .kind
                .default_url()
                .ok_or_else(|| cerr("local.url", "", "required for kind = \"custom\""))?
                .to_string(),
        };
        let url = BaseUrl::parse(&raw, "local.url")?;
        let auth = match (&l.auth_header, &l.auth_header_env) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(var)) => match env(var).filter(|v| !v.is_empty()) {
                Some(v) => Some(Secret::new(v)),
                None => {
                    warnings.push(format!(
                        "local.auth_header_env: {var} is not set; requests to the local backend carry no Authorization"
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(a) = &auth {
            if http::HeaderValue::from_str(a.expose()).is_err() {
                let field = if l.auth_header.is_some() {
                    "local.auth_header"
                } else {
                    "local.auth_header_env"
                };
                problems.push(bad_credential(field, "the auth header"));
            }
        }
        if l.discovery_interval_secs == 0 {
            return Err(cerr(
                "local.discovery_interval_secs",
                "0",
                "must be at least 1",
            ));
        }
        check_patterns(&l.models, "local.models")?;
        check_query_names(&l.forward_query, "local.forward_query")?;
        let messages = l.messages.unwrap_or(match l.kind {
            LocalKind::Vllm | LocalKind::Ollama => MessagesMode::Native,
            _ => MessagesMode::Translate,
        });
        Ok(Some(LocalSettings {
            kind: l.kind,
            url,
            auth,
            extra_headers: check_headers(&l.extra_headers, "local.extra_headers")?,
            models: l.models.clone(),
            discovery_interval: Duration::from_secs(l.discovery_interval_secs),
            forward_query: l.forward_query.clone(),
            messages,
        }))
    }

    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        match path {
            None => Self::from_toml(DEFAULT_CONFIG, &env),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    cerr(
                        "",
                        p.display().to_string(),
                        format!("cannot read the file: {e}"),
                    )
                })?;
                Self::from_toml(&text, &env)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = Settings::from_toml(DEFAULT_CONFIG, &no_env).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.server.admin_listen.to_string(), "127.0.0.1:9901");
        assert!(s.local.is_none());
        assert!(s
            .providers
            .iter()
            .any(|p| p.kind == ProviderKind::Mock && p.models.contains(&"mock".to_string())));
    }

    #[test]
    fn unknown_field_names_its_path() {
        let e = Settings::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nthreadz = 2\n", &no_env)
            .unwrap_err();
        assert_eq!(e.path, "server.threadz");
        assert!(e.reason.contains("threadz"), "{e}");
    }

    #[test]
    fn bad_enum_value_names_path_and_value() {
        let e = Settings::from_toml("[routing]\nstrategy = \"fastest\"\n", &no_env).unwrap_err();
        assert_eq!(e.path, "routing.strategy");
        assert!(e.reason.contains("fastest"), "{e}");
        let e =
            Settings::from_toml("[[providers]]\nname=\"a\"\nkind=\"nope\"\n", &no_env).unwrap_err();
        assert_eq!(e.path, "providers[0].kind");
    }

    #[test]
    fn semantic_errors() {
        let e =
            Settings::from_toml("[local]\nkind=\"vllm\"\nurl=\"ftp://x\"\n", &no_env).unwrap_err();
        assert_eq!(e.path, "local.url");
        assert_eq!(e.value, "ftp://x");
        let e = Settings::from_toml("[server]\nthreads = 0\n", &no_env).unwrap_err();
        assert_eq!(e.path, "server.threads");
        let e = Settings::from_toml(
            "[[providers]]\nname=\"x\"\nkind=\"openai-compatible\"\nmodels=[\"m\"]\n",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.path, "providers[0].base_url");
        let s = Settings::from_toml(
            "[[providers]]\nname=\"x\"\nkind=\"openai\"\napi_key_env=\"NOPE_KEY\"\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(s.providers[0].missing_key_env.as_deref(), Some("NOPE_KEY"));
        assert!(s.warnings[0].contains("NOPE_KEY"));
        let e = Settings::from_toml("[local]\nkind=\"custom\"\n", &no_env).unwrap_err();
        assert_eq!(e.path, "local.url");
    }

    #[test]
    fn auto_detects_from_env() {
        let env = |k: &str| match k {
            "GROQ_API_KEY" => Some("gsk-secret".to_string()),
            "OPENAI_API_KEY" => Some("sk-secret".to_string()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1".to_string()),
            _ => None,
        };
        let s = Settings::from_toml("", &env).unwrap();
        assert_eq!(s.detected, vec!["OPENAI_API_KEY", "GROQ_API_KEY"]);
        let openai = s.providers.iter().find(|p| p.name == "openai").unwrap();
        assert_eq!(openai.base_url.as_ref().unwrap().port, 9);
        assert_eq!(openai.api_key.as_ref().unwrap().expose(), "sk-secret");
        assert!(
            !format!("{s:?}").contains("sk-secret"),
            "secrets must not print"
        );
        let s = Settings::from_toml("[routing]\nauto_detect = false\n", &env).unwrap();
        assert!(s.providers.is_empty());
    }

    #[test]
    fn ip_networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        let one = IpNet::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "host", "10.0.0/8"] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_userinfo("redis://user:hunter2@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(mask_userinfo("https://h/v1?a=b@c"), "https://h/v1?a=b@c");
        assert_eq!(mask_userinfo("no-scheme"), "no-scheme");
        assert!(holds_secret("providers[0].api_key"));
        assert!(holds_secret("auth.keys[2].key"));
        assert!(holds_secret("redis.url"));
        assert!(holds_secret("local.extra_headers.x-token"));
        assert!(!holds_secret("server.threads"));
        assert_eq!(
            without_quoted("invalid type: integer `123`, expected a string"),
            "invalid type: integer (value not shown), expected a string"
        );
        let e = Settings::from_toml(
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key = 424242\n",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.path, "providers[0].api_key");
        assert!(!e.to_string().contains("424242"), "{e}");
    }

    #[test]
    fn credentials_that_cannot_be_sent_are_problems_not_errors() {
        let env = |k: &str| (k == "K").then(|| "sk-abc\n".to_string());
        let s = Settings::from_toml(
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].path, "providers[0].api_key_env");
        assert!(!s.problems[0].to_string().contains("sk-abc"));
        let env = |k: &str| (k == "GROQ_API_KEY").then(|| "gsk\r".to_string());
        let s = Settings::from_toml("", &env).unwrap();
        assert_eq!(s.problems[0].path, "GROQ_API_KEY");
    }

    #[test]
    fn edge_limits_out_of_range_name_the_field() {
        for (cfg, field) in [
            (
                "[server]\nclient_idle_timeout_secs = 0\n",
                "server.client_idle_timeout_secs",
            ),
            (
                "[server]\nmax_client_connections = 0\n",
                "server.max_client_connections",
            ),
            (
                "[server]\nmax_request_header_bytes = 10\n",
                "server.max_request_header_bytes",
            ),
            (
                "[server]\nmax_model_name_bytes = 0\n",
                "server.max_model_name_bytes",
            ),
            (
                "[server]\ntrusted_proxies = [\"nope\"]\n",
                "server.trusted_proxies[0]",
            ),
            (
                "[server]\nclient_body_min_rate_bytes_per_sec = 0\n",
                "server.client_body_min_rate_bytes_per_sec",
            ),
        ] {
            let e = Settings::from_toml(cfg, &no_env).unwrap_err();
            assert_eq!(e.path, field, "{cfg}");
        }
    }

    #[test]
    fn base_url_parsing() {
        let u = BaseUrl::parse("https://api.groq.com/openai/v1/", "x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/openai/v1"));
        assert_eq!(u.authority(), "api.groq.com");
        let u = BaseUrl::parse("http://127.0.0.1:8000", "x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8000, ""));
        assert_eq!(u.authority(), "127.0.0.1:8000");
        assert!(BaseUrl::parse("localhost:8000", "x").is_err());
    }
}
