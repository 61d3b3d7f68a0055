//! `[cache]`: the response cache of temperature-0 answers.

use std::time::Duration;

use serde::Deserialize;

use super::common::DurationFile;

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

impl CacheFile {
    /// The validated section. It cannot fail: every value the file's types accept is
    /// valid.
    pub fn validate(&self) -> CacheSettings {
        CacheSettings {
            enabled: self.enabled,
            ttl: self.ttl.0,
            scope: self.scope,
            max_entry_bytes: self.max_entry_bytes,
            max_memory_bytes: self.max_memory_bytes,
        }
    }
}
