//! Configuration: the file types (what users write, `deny_unknown_fields`, explicit
//! defaults) and the validated runtime [`Settings`] made from them. Only
//! [`Settings::from_toml`] makes runtime settings, and every error it returns names the
//! field path and the bad value.
//!
//! Each section has its own module holding its file type, its settings and the
//! validation between them (`server`, `local`, `providers`, `routing`, `redis`, `auth`,
//! `quotas`, `cache`, `control`); `common` holds what they share. Everything public is
//! re-exported here, so the modules are an internal layout, not part of the paths.
//!
//! The embedded default (`conf/switchyard.toml`) is compiled in: `switchyard` with no
//! arguments runs it.

use std::path::Path;

use serde::Deserialize;

pub use crate::providers::cli::CliSettings;
pub use crate::providers::presets::MessagesMode;

mod auth;
mod cache;
mod common;
mod control;
mod local;
mod providers;
mod quotas;
mod redis;
mod routing;
mod server;

pub use auth::{AuthFile, AuthSettings, KeyFile, KeySettings};
pub use cache::{CacheFile, CacheScope, CacheSettings};
pub(crate) use common::cerr;
use common::without_quoted;
pub use common::{
    bearer_ok, holds_secret, mask_userinfo, BaseUrl, ConfigError, DurationFile, IpNet, Secret,
};
pub use control::{ControlFile, ControlSettings, GpuVendor, Gpus, Profile};
pub use local::{LocalFile, LocalKind, LocalSettings};
pub use providers::{ProviderFile, ProviderKind, ProviderSettings};
pub use quotas::{QuotaFile, QuotaSettings};
pub use redis::{OnOutage, RedisFile, RedisSettings};
pub use routing::{RoutingFile, RoutingSettings, StrategyFile};
pub use server::{ServerFile, ServerSettings};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/switchyard.toml");

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

    /// Validates a parsed file, one section after the other. The order is part of the
    /// behaviour: of several mistakes, the same one is always reported first. A section
    /// that depends on an earlier one is handed its result (quotas get the providers).
    pub fn from_file(
        f: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let server = f.server.validate()?;
        let mut warnings = Vec::new();
        let mut problems = Vec::new();
        let local = f.local.validate(env, &mut warnings, &mut problems)?;
        let mut providers = providers::validate(&f.providers, env, &mut warnings, &mut problems)?;
        let detected = if f.routing.auto_detect {
            providers::auto_detect(&mut providers, env, &mut problems)?
        } else {
            Vec::new()
        };
        let routing = f.routing.validate()?;
        let redis = f.redis.as_ref().map(|r| r.validate(env)).transpose()?;
        let auth = f.auth.validate(env, &mut warnings)?;
        let quotas = quotas::validate(&f.quotas, &providers)?;
        let cache = f.cache.validate();
        let control = f.control.validate()?;
        Ok(Settings {
            server,
            local,
            providers,
            routing,
            log: f.log,
            detected,
            warnings,
            problems,
            redis,
            auth,
            quotas,
            cache,
            control,
        })
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
    fn the_redis_write_window_defaults_to_2ms_and_is_bounded() {
        let s = Settings::from_toml("[redis]\nurl = \"redis://127.0.0.1:1\"\n", &no_env).unwrap();
        let r = s.redis.unwrap();
        assert_eq!(r.write_window, std::time::Duration::from_millis(2));
        let s = Settings::from_toml(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\nwrite_window = \"0ms\"\n",
            &no_env,
        )
        .unwrap();
        assert!(s.redis.unwrap().write_window.is_zero());
        let e = Settings::from_toml(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\nwrite_window = \"1s\"\n",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.path, "redis.write_window");
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
}
