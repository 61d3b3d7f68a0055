//! Tenants: API keys, per-tenant rate limits, per-provider daily quotas, and the
//! outage policy around the store.
//!
//! Key lookups never reach the store per request in the steady state: keys from the
//! file are hashed at start, keys created through the admin API are indexed in-process
//! (refreshed when the store's key version changes, every refresh interval), and any
//! other key is looked up at most once per negative-cache TTL, with a global budget of
//! store lookups per second, so a flood of bad keys costs the store almost nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use switchyard_filters::bucket::{Admission, Limit};
use switchyard_filters::error::GatewayError;
use switchyard_filters::glob::Pattern;

use crate::config::{AuthSettings, OnOutage, QuotaSettings, Secret};
use crate::store::memory::MemoryStore;
use crate::store::{
    now_unix_ms, utc_day, AdmitArgs, AdmitResult, Finish, Store, StoreError, TenantRecord,
};

/// Store lookups for unknown keys allowed per second (the rest are refused as unknown).
/// They only serve keys created on another replica since this one's last key-index
/// refresh, so a handful per second is plenty, and a flood of bad keys stays cheap.
const MISS_LOOKUPS_PER_SEC: u32 = 5;

/// A tenant, as requests see it.
#[derive(Debug)]
pub struct Tenant {
    /// Name (rate-limit keys, cache scope, logs).
    pub name: String,
    /// Request limit.
    pub requests: Limit,
    /// Token limit.
    pub tokens: Limit,
    /// Allowed models; empty = all.
    pub models: Vec<Pattern>,
}

impl Tenant {
    fn from_record(r: &TenantRecord) -> Self {
        Self {
            name: r.tenant.clone(),
            requests: Limit {
                per_minute: r.requests_per_minute,
            },
            tokens: Limit {
                per_minute: r.tokens_per_minute,
            },
            models: r.models.iter().map(|m| Pattern::new(m)).collect(),
        }
    }

    /// Whether this tenant may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| p.matches(model))
    }

    /// Whether any limit applies (otherwise rate limiting needs no store call).
    pub fn is_limited(&self) -> bool {
        !self.requests.is_unlimited() || !self.tokens.is_unlimited()
    }
}

/// SHA-256 of an API key.
pub type KeyHash = [u8; 32];

/// A map by key hash. The hash is a SHA-256, so any fast seeded hash of it spreads well.
type KeyMap<V> = HashMap<KeyHash, V, foldhash::fast::RandomState>;

/// Hashes an API key.
pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// Auth, rate limits and quotas over a store.
pub struct Tenancy {
    store: Arc<dyn Store>,
    /// In-memory buckets used when the store is Redis and unreachable (fail-open).
    fallback: MemoryStore,
    on_outage: OnOutage,
    auth: AuthSettings,
    config_keys: KeyMap<Arc<Tenant>>,
    index: ArcSwap<KeyMap<Arc<Tenant>>>,
    index_version: AtomicU64,
    lookups: Mutex<KeyMap<Lookup>>,
    miss_budget: Mutex<(Instant, u32)>,
    quotas: HashMap<String, QuotaSettings>,
    /// The tenant of requests when auth is off.
    pub anonymous: Arc<Tenant>,
    /// Store calls made for key lookups (observability, tests).
    pub key_store_lookups: AtomicU64,
}

/// A remembered key lookup: the tenant (or none) and until when it holds.
type Lookup = (Option<Arc<Tenant>>, Instant);

/// Extracts the API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn presented_key(req: &http::HeaderMap) -> Option<&[u8]> {
    if let Some(v) = req.get(http::header::AUTHORIZATION) {
        let b = v.as_bytes();
        if b.len() > 7 && b[..7].eq_ignore_ascii_case(b"bearer ") {
            let k = b[7..].trim_ascii();
            if !k.is_empty() {
                return Some(k);
            }
        }
    }
    req.get("x-api-key")
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
}

impl Tenancy {
    /// Builds the tenancy layer.
    pub fn new(
        store: Arc<dyn Store>,
        on_outage: OnOutage,
        auth: AuthSettings,
        quotas: &[QuotaSettings],
    ) -> Self {
        let config_keys = auth
            .keys
            .iter()
            .map(|k| {
                let t = Tenant {
                    name: k.tenant.clone(),
                    requests: Limit {
                        per_minute: k.requests_per_minute,
                    },
                    tokens: Limit {
                        per_minute: k.tokens_per_minute,
                    },
                    models: k.models.iter().map(|m| Pattern::new(m)).collect(),
                };
                (hash_key(k.key.expose().as_bytes()), Arc::new(t))
            })
            .collect();
        Self {
            store,
            fallback: MemoryStore::new(0),
            on_outage,
            auth,
            config_keys,
            index: ArcSwap::from_pointee(KeyMap::default()),
            index_version: AtomicU64::new(u64::MAX),
            lookups: Mutex::new(KeyMap::default()),
            miss_budget: Mutex::new((Instant::now(), 0)),
            quotas: quotas
                .iter()
                .map(|q| (q.provider.clone(), q.clone()))
                .collect(),
            anonymous: Arc::new(Tenant {
                name: "anonymous".into(),
                requests: Limit::default(),
                tokens: Limit::default(),
                models: Vec::new(),
            }),
            key_store_lookups: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether keys are required.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled
    }

    /// Reservation for a request without `max_tokens`.
    pub fn default_max_tokens(&self) -> u64 {
        self.auth.default_max_tokens
    }

    /// The admin secret, if configured.
    pub fn admin_secret(&self) -> Option<&Secret> {
        self.auth.admin_secret.as_ref()
    }

    /// Resolves the request's key to a tenant (the anonymous tenant when auth is off).
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Arc<Tenant>, GatewayError> {
        if !self.auth.enabled {
            return Ok(self.anonymous.clone());
        }
        let key = presented_key(headers).ok_or(GatewayError::Unauthorized(
            "Missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
        ))?;
        let h = hash_key(key);
        if let Some(t) = self.config_keys.get(&h) {
            return Ok(t.clone());
        }
        if let Some(t) = self.index.load().get(&h) {
            return Ok(t.clone());
        }
        let now = Instant::now();
        if let Some((t, exp)) = self.lookups.lock().get(&h) {
            if *exp > now {
                return t
                    .clone()
                    .ok_or(GatewayError::Unauthorized("Invalid API key."));
            }
        }
        // A key created on another replica since the last index refresh: ask the
        // store, within a global budget so that bad keys cannot flood it.
        if !self.store.is_up() || !self.take_miss_budget(now) {
            return Err(GatewayError::Unauthorized("Invalid API key."));
        }
        self.key_store_lookups.fetch_add(1, Ordering::Relaxed);
        let found = match self.store.key_get(&hex::encode(h)).await {
            Ok(r) => r.map(|r| Arc::new(Tenant::from_record(&r))),
            Err(_) => return Err(GatewayError::Unauthorized("Invalid API key.")),
        };
        let ttl = if found.is_some() {
            self.auth.key_cache_ttl
        } else {
            self.auth.negative_cache_ttl
        };
        {
            let mut l = self.lookups.lock();
            if l.len() > 100_000 {
                l.retain(|_, (_, exp)| *exp > now);
            }
            l.insert(h, (found.clone(), now + ttl));
        }
        found.ok_or(GatewayError::Unauthorized("Invalid API key."))
    }

    fn take_miss_budget(&self, now: Instant) -> bool {
        let mut b = self.miss_budget.lock();
        if now.duration_since(b.0) >= Duration::from_secs(1) {
            *b = (now, 0);
        }
        if b.1 >= MISS_LOOKUPS_PER_SEC {
            return false;
        }
        b.1 += 1;
        true
    }

    /// Reloads the in-process key index if the store's key version changed.
    pub async fn refresh_keys(&self) -> Result<bool, StoreError> {
        let v = self.store.keys_version().await?;
        if v == self.index_version.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let list = self.store.key_list().await?;
        let mut index = KeyMap::with_capacity_and_hasher(list.len(), Default::default());
        for (hash, rec) in list {
            let Ok(bytes) = hex::decode(&hash) else {
                continue;
            };
            let Ok(h) = <KeyHash>::try_from(bytes.as_slice()) else {
                continue;
            };
            index.insert(h, Arc::new(Tenant::from_record(&rec)));
        }
        self.index.store(Arc::new(index));
        self.lookups.lock().clear();
        self.index_version.store(v, Ordering::Relaxed);
        Ok(true)
    }

    /// Creates an API key for a tenant; returns the key (shown once) and its record.
    pub async fn create_key(
        &self,
        tenant: &str,
        requests_per_minute: u64,
        tokens_per_minute: u64,
        models: Vec<String>,
    ) -> Result<(String, TenantRecord), StoreError> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw)
            .map_err(|e| StoreError::Protocol(format!("no randomness: {e}")))?;
        let key = format!("sk-sy-{}", hex::encode(raw));
        let h = hash_key(key.as_bytes());
        let hash = hex::encode(h);
        let rec = TenantRecord {
            id: hash[..16].to_string(),
            tenant: tenant.to_string(),
            requests_per_minute,
            tokens_per_minute,
            models,
            created_ms: now_unix_ms(),
        };
        self.store.key_put(&hash, &rec).await?;
        let _ = self.refresh_keys().await;
        Ok((key, rec))
    }

    /// Revokes a key by id.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.key_delete(id).await?;
        let _ = self.refresh_keys().await;
        Ok(removed)
    }

    /// Rate-limits a request and reads its cache entry (at most one store round trip,
    /// usually none: see [`crate::store::redis`]). With the
    /// store down: `fail-open` limits in this replica's memory (no cache); `fail-closed`
    /// refuses limited tenants with 503 (unlimited tenants pass, without cache).
    pub async fn admit(
        &self,
        args: &AdmitArgs<'_>,
        tenant: &Tenant,
    ) -> Result<AdmitResult, GatewayError> {
        let needs_store = tenant.is_limited() || args.cache_key.is_some();
        if !needs_store {
            return Ok(AdmitResult {
                admission: Admission {
                    allowed: true,
                    ..Admission::default()
                },
                cached: None,
                reserved: 0,
                fallback: false,
            });
        }
        match self.store.admit(args).await {
            Ok(r) => Ok(r),
            Err(_) if !tenant.is_limited() => Ok(AdmitResult {
                admission: Admission {
                    allowed: true,
                    ..Admission::default()
                },
                cached: None,
                reserved: 0,
                fallback: false,
            }),
            Err(_) => match self.on_outage {
                OnOutage::FailOpen => {
                    let local = AdmitArgs {
                        cache_key: None,
                        ..*args
                    };
                    Ok(AdmitResult {
                        fallback: true,
                        ..self.fallback.admit_local(&local)
                    })
                }
                OnOutage::FailClosed => Err(GatewayError::StateUnavailable),
            },
        }
    }

    /// After a response: settles the token reservation and stores the answer (best
    /// effort: a store that cannot be reached loses the answer, not the settlement,
    /// which happens where the reservation was taken). Returns whether it all happened.
    pub async fn finish(&self, f: &Finish<'_>) -> bool {
        if f.fallback {
            if f.reserved > 0 {
                self.fallback
                    .settle_local(f.tenant, f.tokens, f.reserved, f.used);
            }
            if f.store.is_none() {
                return true;
            }
            let rest = Finish {
                reserved: 0,
                fallback: false,
                ..f.clone()
            };
            return self.store.finish(&rest).await.is_ok();
        }
        self.store.finish(f).await.is_ok()
    }

    /// Whether `provider` has a daily quota.
    pub fn has_quota(&self, provider: &str) -> bool {
        !self.quotas.is_empty() && self.quotas.contains_key(provider)
    }

    /// Takes one request from `provider`'s quota for today. `Ok(false)`: used up.
    pub async fn take_quota(&self, provider: &str) -> Result<bool, GatewayError> {
        let Some(q) = self.quotas.get(provider) else {
            return Ok(true);
        };
        let day = utc_day(now_unix_ms() / 1000);
        match self
            .store
            .quota_take(provider, day, q.requests_per_day, q.tokens_per_day)
            .await
        {
            Ok(ok) => Ok(ok),
            Err(_) => match self.on_outage {
                OnOutage::FailOpen => self
                    .fallback
                    .quota_take(provider, day, q.requests_per_day, q.tokens_per_day)
                    .await
                    .or(Ok(true)),
                OnOutage::FailClosed => Err(GatewayError::StateUnavailable),
            },
        }
    }

    /// Counts tokens against `provider`'s quota for today (best effort).
    pub async fn add_quota_tokens(&self, provider: &str, tokens: u64) {
        if !self.quotas.contains_key(provider) || tokens == 0 {
            return;
        }
        let day = utc_day(now_unix_ms() / 1000);
        if self
            .store
            .quota_add_tokens(provider, day, tokens)
            .await
            .is_err()
        {
            let _ = self.fallback.quota_add_tokens(provider, day, tokens).await;
        }
    }

    /// Today's quota use of every provider with a quota.
    pub async fn quota_report(&self) -> serde_json::Value {
        let day = utc_day(now_unix_ms() / 1000);
        let mut out = serde_json::Map::new();
        for (p, q) in &self.quotas {
            let (req, tok) = self.store.quota_get(p, day).await.unwrap_or_default();
            out.insert(
                p.clone(),
                serde_json::json!({
                    "day": day.to_string(),
                    "requests": req, "requests_per_day": q.requests_per_day,
                    "tokens": tok, "tokens_per_day": q.tokens_per_day,
                    "exhausted": (q.requests_per_day > 0 && req >= q.requests_per_day)
                        || (q.tokens_per_day > 0 && tok >= q.tokens_per_day),
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer  sk-1 "),
        );
        assert_eq!(presented_key(&h), Some(&b"sk-1"[..]));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", http::HeaderValue::from_static("Basic abc"));
        h.insert("x-api-key", http::HeaderValue::from_static("sk-2"));
        assert_eq!(presented_key(&h), Some(&b"sk-2"[..]));
    }
}
