//! Shared state behind one interface with two implementations: in-memory (one process,
//! the embedded default) and Redis (any number of replicas). Rate limits, quotas, the
//! response cache, API keys, runtime configuration and in-flight counts all go through
//! [`Store`]; the same tests run against both.
//!
//! Redis keys (prefix configurable, default `switchyard:`; `{…}` are hash tags so that
//! one tenant's keys share a cluster slot):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `rl:{tenant}:req`, `rl:{tenant}:tok` | hash `l`,`t` | token buckets (TTL: until full), taken in slices |
//! | `cache:{tenant}:<sha256>` / `cache:{global}:<sha256>` | string | cached answers (TTL) |
//! | `cache:announce` | Pub/Sub channel | `<ttl ms> <key>` for every answer stored |
//! | `quota:{provider}:<yyyymmdd>` | hash `req`,`tok` | daily quota counters (TTL 2 days) |
//! | `keys:<sha256 of key>` | string (JSON) | tenant record of an API key |
//! | `keys:index` | set | hashes of all API keys |
//! | `keys:version` | counter | bumped on every key change |
//! | `config:inference.backend`, `.state`, `.url`, `.auth`, `config:routing.strategy` | string | runtime config |
//! | `inflight:<replica>` | string | a replica's local-backend in-flight count (TTL) |
//! | `inflight:replicas` | set | replicas that published a count |

pub mod lease;
pub mod memory;
pub mod mirror;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchyard_filters::bucket::{Admission, Limit};

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store is unreachable (or known to be down).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something unexpected.
    #[error("store error: {0}")]
    Protocol(String),
}

/// An API key's tenant record. Stored without the key (keys are stored hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Short public id of the key (the first 16 hex digits of its SHA-256).
    pub id: String,
    /// Tenant name: rate limits, cache scope and logs use it.
    pub tenant: String,
    /// Requests per minute (0 = unlimited).
    #[serde(default)]
    pub requests_per_minute: u64,
    /// Tokens per minute (0 = unlimited).
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Allowed models (globs); empty = all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Unix ms of creation.
    #[serde(default)]
    pub created_ms: u64,
}

/// What `admit` is asked.
#[derive(Debug, Clone, Copy)]
pub struct AdmitArgs<'a> {
    /// Tenant (hash tag of the bucket keys).
    pub tenant: &'a str,
    /// Request limit.
    pub requests: Limit,
    /// Token limit.
    pub tokens: Limit,
    /// Tokens reserved for this request.
    pub token_cost: u64,
    /// Cache entry to read in the same round trip (`{scope}:<hash>`), if any.
    pub cache_key: Option<&'a str>,
}

/// The answer of `admit`.
#[derive(Debug, Clone, Default)]
pub struct AdmitResult {
    /// The rate-limit decision.
    pub admission: Admission,
    /// The cached answer, when asked for, allowed, and present.
    pub cached: Option<Bytes>,
    /// Tokens taken from the token bucket (0 on a cache hit: it costs no upstream
    /// tokens and needs no settlement).
    pub reserved: u64,
    /// Whether the decision came from this replica's fallback buckets (the store was
    /// down): the settlement then goes there too.
    pub fallback: bool,
}

/// What happens after a response, in one round trip.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// Tenant (hash tag).
    pub tenant: &'a str,
    /// Its token limit.
    pub tokens: Limit,
    /// Tokens reserved by `admit` (0: nothing to settle).
    pub reserved: u64,
    /// Tokens really used.
    pub used: u64,
    /// An answer to store: (`{scope}:<hash>`, entry, TTL).
    pub store: Option<(&'a str, Bytes, Duration)>,
    /// The reservation came from the fallback buckets ([`AdmitResult::fallback`]).
    pub fallback: bool,
}

/// The runtime configuration values as stored (strings; validated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeValues {
    /// `config:inference.backend`
    pub backend: Option<String>,
    /// `config:inference.state`
    pub state: Option<String>,
    /// `config:inference.url`
    pub url: Option<String>,
    /// `config:inference.auth` (a secret)
    pub auth: Option<String>,
    /// `config:routing.strategy`
    pub strategy: Option<String>,
}

/// The runtime configuration keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeField {
    /// `config:inference.backend`
    Backend,
    /// `config:inference.state`
    State,
    /// `config:inference.url`
    Url,
    /// `config:inference.auth`
    Auth,
    /// `config:routing.strategy`
    Strategy,
}

impl RuntimeField {
    /// Parses the name used in the admin API path (`inference.backend`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inference.backend" => Self::Backend,
            "inference.state" => Self::State,
            "inference.url" => Self::Url,
            "inference.auth" => Self::Auth,
            "routing.strategy" => Self::Strategy,
            _ => return None,
        })
    }

    /// The key below the prefix.
    pub fn key(self) -> &'static str {
        match self {
            Self::Backend => "config:inference.backend",
            Self::State => "config:inference.state",
            Self::Url => "config:inference.url",
            Self::Auth => "config:inference.auth",
            Self::Strategy => "config:routing.strategy",
        }
    }

    /// All fields.
    pub const ALL: [RuntimeField; 5] = [
        Self::Backend,
        Self::State,
        Self::Url,
        Self::Auth,
        Self::Strategy,
    ];
}

/// How long quota counters live.
pub const QUOTA_TTL: Duration = Duration::from_secs(2 * 86_400);

/// Shared state. Every call is at most one round trip to Redis (or a short lock in
/// memory); `admit` and `finish` need none for most requests (see [`redis`]).
#[async_trait]
pub trait Store: Send + Sync {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;

    /// Whether the store is believed reachable (no call needed).
    fn is_up(&self) -> bool;

    /// Takes a request (and its token reservation) from the tenant's buckets, both or
    /// neither, and reads the cache entry when asked, atomically.
    async fn admit(&self, args: &AdmitArgs<'_>) -> Result<AdmitResult, StoreError>;

    /// After a response: settles the token reservation with the real usage and stores
    /// the answer in the cache, in one round trip (atomically when both share the
    /// tenant's hash tag).
    async fn finish(&self, f: &Finish<'_>) -> Result<(), StoreError>;

    /// Reads a cache entry (`{scope}:<hash>`).
    async fn cache_get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Writes a cache entry with a TTL.
    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError>;

    /// Takes one request from a provider's daily quota if it is not used up. Returns
    /// whether it was taken.
    async fn quota_take(
        &self,
        provider: &str,
        day: u32,
        requests: u64,
        tokens: u64,
    ) -> Result<bool, StoreError>;

    /// Adds tokens to a provider's daily count.
    async fn quota_add_tokens(
        &self,
        provider: &str,
        day: u32,
        tokens: u64,
    ) -> Result<(), StoreError>;

    /// A provider's (requests, tokens) used on `day`.
    async fn quota_get(&self, provider: &str, day: u32) -> Result<(u64, u64), StoreError>;

    /// The record of an API key by the hex SHA-256 of the key.
    async fn key_get(&self, hash: &str) -> Result<Option<TenantRecord>, StoreError>;

    /// Stores an API key's record under its hash.
    async fn key_put(&self, hash: &str, rec: &TenantRecord) -> Result<(), StoreError>;

    /// Revokes the key with this public id. Returns whether one existed.
    async fn key_delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Every stored key: (hash, record).
    async fn key_list(&self) -> Result<Vec<(String, TenantRecord)>, StoreError>;

    /// A number that changes whenever a key is added or revoked.
    async fn keys_version(&self) -> Result<u64, StoreError>;

    /// The runtime configuration values.
    async fn runtime_get(&self) -> Result<RuntimeValues, StoreError>;

    /// Sets (or, with an empty value, clears) one runtime configuration value.
    async fn runtime_set(&self, field: RuntimeField, value: &str) -> Result<(), StoreError>;

    /// Publishes this replica's local-backend in-flight count, expiring after `ttl`.
    async fn inflight_publish(
        &self,
        replica: &str,
        n: i64,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Every replica's published count.
    async fn inflight_cluster(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Background upkeep, until `shutdown` says stop (the Redis store follows the cache
    /// announcements and gives back unused rate-limit slices; at shutdown it gives back
    /// every slice). The default has nothing to do.
    async fn maintain(&self, _shutdown: pingora_core::server::ShutdownWatch) {}

    /// Checks reachability (and updates `is_up`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// A record of the control plane by key (`control:status`, `control:desired`,
    /// `control:target`, `system:hardware`), JSON text.
    async fn record_get(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes a control-plane record.
    async fn record_set(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Takes or renews the controller lease (`control:lease`) for `holder` for `ttl`.
    /// True while `holder` holds it. The in-memory store has one process: always true.
    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Who holds the controller lease now.
    async fn lease_holder(&self) -> Result<Option<String>, StoreError>;
}

/// Today's UTC date as `yyyymmdd`.
pub fn utc_day(unix_secs: u64) -> u32 {
    // Civil-from-days (Howard Hinnant), valid for the whole u64 range we care about.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y as u32) * 10_000 + (m as u32) * 100 + d as u32
}

/// The current Unix time in ms.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), 19_700_101);
        assert_eq!(utc_day(951_782_400), 20_000_229);
        assert_eq!(utc_day(1_795_323_094), 20_261_122);
        assert_eq!(utc_day(1_795_391_999), 20_261_122);
        assert_eq!(utc_day(1_795_392_000), 20_261_123);
    }

    #[test]
    fn runtime_fields() {
        assert_eq!(
            RuntimeField::parse("inference.state"),
            Some(RuntimeField::State)
        );
        assert_eq!(RuntimeField::parse("nope"), None);
        assert_eq!(RuntimeField::Strategy.key(), "config:routing.strategy");
    }
}
