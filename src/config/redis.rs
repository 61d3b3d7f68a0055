//! `[redis]`: shared state in Redis. Without the section state is in memory, for one
//! process.

use std::time::Duration;

use serde::Deserialize;

use super::common::{cerr, ConfigError, DurationFile, Secret};

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
    /// How long a cache write waits for others to share its store call (0: written at
    /// once). The writing replica serves the answer from memory meanwhile; only the
    /// other replicas see it this much later.
    #[serde(default = "default_write_window")]
    pub write_window: DurationFile,
}

fn default_write_window() -> DurationFile {
    DurationFile(Duration::from_millis(2))
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
    /// How long a cache write waits for others to share its store call.
    pub write_window: Duration,
}

impl RedisFile {
    /// Validates the section. `env` looks up `url_env`; an unset variable is an error
    /// (not a warning, as an unset provider key is). A `timeout` under 10 ms is raised
    /// to 10 ms.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RedisSettings, ConfigError> {
        let url = match (&self.url, &self.url_env) {
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
        if self.key_prefix.contains(['{', '}']) {
            return Err(cerr(
                "redis.key_prefix",
                self.key_prefix.as_str(),
                "must not contain braces (they are hash tags)",
            ));
        }
        if self.refresh_interval.0 < Duration::from_millis(50) {
            return Err(cerr(
                "redis.refresh_interval",
                format!("{:?}", self.refresh_interval.0),
                "must be at least 50 ms",
            ));
        }
        if self.write_window.0 > Duration::from_millis(100) {
            return Err(cerr(
                "redis.write_window",
                format!("{:?}", self.write_window.0),
                "must be at most 100 ms",
            ));
        }
        Ok(RedisSettings {
            url: Secret::new(url),
            key_prefix: self.key_prefix.clone(),
            refresh_interval: self.refresh_interval.0,
            on_outage: self.on_outage,
            timeout: self.timeout.0.max(Duration::from_millis(10)),
            replica_id: self.replica_id.clone(),
            write_window: self.write_window.0,
        })
    }
}
