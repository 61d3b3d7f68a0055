//! `[routing]`: the default strategy, model aliases, and whether providers are
//! registered from credential variables (that part runs in `providers`, which owns the
//! presets).

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_filters::route::Strategy;

use super::common::{cerr, ConfigError};

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

impl RoutingFile {
    /// Validates the section: every alias needs a target. Targets are not checked
    /// against the providers' models (those are partly discovered at run time).
    pub fn validate(&self) -> Result<RoutingSettings, ConfigError> {
        for (alias, target) in &self.aliases {
            if target.is_empty() {
                return Err(cerr(
                    format!("routing.aliases.{alias}"),
                    "",
                    "alias target is empty",
                ));
            }
        }
        Ok(RoutingSettings {
            strategy: self.strategy.into(),
            aliases: self.aliases.clone(),
            inject_stream_usage: self.inject_stream_usage,
        })
    }
}
