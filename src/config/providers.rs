//! `[[providers]]`: cloud and remote providers, the in-process mock and CLI pools, and
//! the providers registered from credential variables (auto-detection). A credential
//! that cannot be sent is a problem, not an error: that provider is left out and the
//! rest serve.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::common::{
    bad_credential, bearer_ok, cerr, check_headers, check_patterns, check_query_names, BaseUrl,
    ConfigError, Secret,
};
use crate::providers::cli::CliSettings;
use crate::providers::presets::{preset, MessagesMode, Preset, Wire, PRESETS};

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

/// Validates `[[providers]]` in file order. `env` looks up the keys; an unset
/// `api_key_env` is pushed to `warnings`, a key that cannot be sent to `problems`.
pub(super) fn validate(
    files: &[ProviderFile],
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    problems: &mut Vec<ConfigError>,
) -> Result<Vec<ProviderSettings>, ConfigError> {
    let mut providers: Vec<ProviderSettings> = Vec::new();
    for (i, p) in files.iter().enumerate() {
        let provider = p.validate(
            &format!("providers[{i}]"),
            &providers,
            env,
            warnings,
            problems,
        )?;
        providers.push(provider);
    }
    Ok(providers)
}

impl ProviderFile {
    /// Validates the provider at `path`; its name must differ from those of `others`
    /// (the providers before it).
    fn validate(
        &self,
        path: &str,
        others: &[ProviderSettings],
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
        problems: &mut Vec<ConfigError>,
    ) -> Result<ProviderSettings, ConfigError> {
        if self.name.is_empty()
            || self.name.contains('/')
            || self.name.contains(char::is_whitespace)
        {
            return Err(cerr(
                format!("{path}.name"),
                self.name.as_str(),
                "must be non-empty without '/' or spaces",
            ));
        }
        if self.name == "local" {
            return Err(cerr(
                format!("{path}.name"),
                "local",
                "`local` is the local backend's name",
            ));
        }
        if others.iter().any(|q| q.name == self.name) {
            return Err(cerr(
                format!("{path}.name"),
                self.name.as_str(),
                "duplicate provider name",
            ));
        }
        let std = preset(self.kind);
        let cli = cli_settings(self, path)?;
        let base_url = if matches!(self.kind, ProviderKind::Mock | ProviderKind::Cli) {
            None
        } else {
            let raw =
                self.base_url.as_deref().or(std.base_url).ok_or_else(|| {
                    cerr(format!("{path}.base_url"), "", "required for this kind")
                })?;
            Some(provider_url(raw, std, &format!("{path}.base_url"))?)
        };
        let mut missing_key_env = None;
        let api_key = match (&self.api_key, &self.api_key_env) {
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
                        self.name
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
        check_query_names(&self.forward_query, &format!("{path}.forward_query"))?;
        let models = match &self.models {
            Some(m) => m.clone(),
            None => std.models.iter().map(|s| s.to_string()).collect(),
        };
        check_patterns(&models, &format!("{path}.models"))?;
        if models.is_empty() && matches!(self.kind, ProviderKind::Mock | ProviderKind::Cli) {
            return Err(cerr(
                format!("{path}.models"),
                "",
                format!("a {} provider needs at least one model", self.kind.as_str()),
            ));
        }
        let discover = (self
            .discover_models
            .unwrap_or(std.discover && self.models.is_none())
            && base_url.is_some())
        .then(|| Duration::from_secs(self.discovery_interval_secs.unwrap_or(300).max(5)));
        let mut extra_headers =
            check_headers(&self.extra_headers, &format!("{path}.extra_headers"))?;
        add_attribution(&mut extra_headers, self, path)?;
        Ok(ProviderSettings {
            name: self.name.clone(),
            kind: self.kind,
            base_url,
            api_key,
            models,
            extra_headers,
            mock_reply: self.mock_reply.clone().unwrap_or_else(|| "echo".into()),
            mock_itl: Duration::from_millis(self.mock_itl_ms.unwrap_or(15)),
            auto_detected: false,
            missing_key_env,
            forward_query: self.forward_query.clone(),
            messages: self.messages.unwrap_or(std.messages),
            cli,
            discover,
        })
    }
}

/// Registers a provider for each preset whose credential variable is set, unless the
/// file already configures that kind or name; returns the variables, in preset order.
/// A credential that cannot be sent is pushed to `problems`.
pub(super) fn auto_detect(
    providers: &mut Vec<ProviderSettings>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigError>,
) -> Result<Vec<&'static str>, ConfigError> {
    let mut detected = Vec::new();
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
    Ok(detected)
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
