//! `[auth]` and `[[auth.keys]]`: API keys on the proxy listener, their tenants and
//! per-minute limits, and the admin secret.

use std::time::Duration;

use serde::Deserialize;

use super::common::{cerr, check_patterns, ConfigError, DurationFile, Secret};

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

impl AuthFile {
    /// Validates the section. `env` looks up each `key_env` and `admin_secret_env`. A key
    /// whose variable is unset is skipped; that, and an enabled `[auth]` with no key and
    /// no admin secret, each add a line to `warnings`.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<AuthSettings, ConfigError> {
        let mut keys = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
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
        let admin_secret = env(&self.admin_secret_env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        let auth = AuthSettings {
            enabled: self.enabled,
            admin_secret,
            key_cache_ttl: self.key_cache_ttl.0,
            negative_cache_ttl: self.negative_cache_ttl.0,
            default_max_tokens: self.default_max_tokens,
            keys,
        };
        if auth.enabled && auth.keys.is_empty() && auth.admin_secret.is_none() {
            warnings.push("auth is enabled but there are no keys and no admin secret to create some: every request gets 401".into());
        }
        Ok(auth)
    }
}
