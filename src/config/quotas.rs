//! `[[quotas]]`: daily request and token budgets per provider. Validating them needs
//! another section's result: a quota must name a configured provider.

use serde::Deserialize;

use super::common::{cerr, ConfigError};
use super::providers::ProviderSettings;

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

/// Validates `[[quotas]]`: each names `local` or one of `providers` (those of the file
/// and the auto-detected ones), at most once.
pub(super) fn validate(
    files: &[QuotaFile],
    providers: &[ProviderSettings],
) -> Result<Vec<QuotaSettings>, ConfigError> {
    let mut quotas: Vec<QuotaSettings> = Vec::new();
    for (i, q) in files.iter().enumerate() {
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
    Ok(quotas)
}
