//! `[local]`: the local inference backend (vLLM, SGLang, Ollama or any OpenAI-compatible
//! server). A credential that cannot be sent is a problem, not an error, so the rest of
//! the gateway still serves.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::common::{
    bad_credential, cerr, check_headers, check_patterns, check_query_names, BaseUrl, ConfigError,
    Secret,
};
use crate::providers::presets::MessagesMode;

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

impl LocalFile {
    /// Validates the section: `None` when `kind = "none"`. `env` looks up
    /// `auth_header_env`; an unset variable is pushed to `warnings`, a value that cannot
    /// be sent as a header to `problems`.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
        problems: &mut Vec<ConfigError>,
    ) -> Result<Option<LocalSettings>, ConfigError> {
        if self.kind == LocalKind::None {
            return Ok(None);
        }
        let raw = match self.url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => self
                .kind
                .default_url()
                .ok_or_else(|| cerr("local.url", "", "required for kind = \"custom\""))?
                .to_string(),
        };
        let url = BaseUrl::parse(&raw, "local.url")?;
        let auth = match (&self.auth_header, &self.auth_header_env) {
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
                let field = if self.auth_header.is_some() {
                    "local.auth_header"
                } else {
                    "local.auth_header_env"
                };
                problems.push(bad_credential(field, "the auth header"));
            }
        }
        if self.discovery_interval_secs == 0 {
            return Err(cerr(
                "local.discovery_interval_secs",
                "0",
                "must be at least 1",
            ));
        }
        check_patterns(&self.models, "local.models")?;
        check_query_names(&self.forward_query, "local.forward_query")?;
        let messages = self.messages.unwrap_or(match self.kind {
            LocalKind::Vllm | LocalKind::Ollama => MessagesMode::Native,
            _ => MessagesMode::Translate,
        });
        Ok(Some(LocalSettings {
            kind: self.kind,
            url,
            auth,
            extra_headers: check_headers(&self.extra_headers, "local.extra_headers")?,
            models: self.models.clone(),
            discovery_interval: Duration::from_secs(self.discovery_interval_secs),
            forward_query: self.forward_query.clone(),
            messages,
        }))
    }
}
