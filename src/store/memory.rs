//! The in-memory store: one process, no Redis. Every operation is a short critical
//! section under one lock (never held across an await). The cache is bounded by total
//! bytes; expired and oldest entries go first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use switchyard_filters::bucket::{self, Bucket, Limit};

use super::{
    AdmitArgs, AdmitResult, Finish, RuntimeField, RuntimeValues, Store, StoreError, TenantRecord,
};

#[derive(Default)]
struct State {
    buckets: HashMap<(String, bool), Bucket>,
    cache: HashMap<String, (Bytes, Instant)>,
    cache_order: VecDeque<String>,
    cache_bytes: usize,
    quotas: HashMap<(String, u32), (u64, u64)>,
    keys: BTreeMap<String, TenantRecord>,
    keys_version: u64,
    runtime: RuntimeValues,
    inflight: HashMap<String, (i64, Instant)>,
    control: HashMap<String, String>,
    holder: Option<String>,
}

/// The in-memory store.
pub struct MemoryStore {
    started: Instant,
    max_cache_bytes: usize,
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store whose cache holds at most `max_cache_bytes`.
    pub fn new(max_cache_bytes: usize) -> Self {
        Self {
            started: Instant::now(),
            max_cache_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Rate-limits locally (the fail-open fallback when Redis is down uses this).
    pub fn admit_local(&self, a: &AdmitArgs<'_>) -> AdmitResult {
        let now = self.now_ms();
        let mut st = self.state.lock();
        let rk = (a.tenant.to_string(), false);
        let tk = (a.tenant.to_string(), true);
        let cached = a.cache_key.and_then(|k| Self::cache_lookup(&mut st, k));
        // A cache hit costs no upstream tokens.
        let cost = if cached.is_some() { 0 } else { a.token_cost };
        let (r, t, admission) = bucket::admit(
            (st.buckets.get(&rk).copied(), a.requests),
            (st.buckets.get(&tk).copied(), a.tokens, cost),
            now,
        );
        if let Some(b) = r {
            st.buckets.insert(rk, b);
        }
        if let Some(b) = t {
            st.buckets.insert(tk, b);
        }
        let allowed = admission.allowed;
        AdmitResult {
            admission,
            cached: cached.filter(|_| allowed),
            reserved: if allowed && !a.tokens.is_unlimited() {
                cost.min(a.tokens.per_minute)
            } else {
                0
            },
            fallback: false,
        }
    }

    /// Settles locally (the local-bucket half of [`super::Store::finish`]).
    pub fn settle_local(&self, tenant: &str, tokens: Limit, reserved: u64, used: u64) {
        let now = self.now_ms();
        let mut st = self.state.lock();
        let k = (tenant.to_string(), true);
        if let Some(b) = bucket::settle(st.buckets.get(&k).copied(), tokens, reserved, used, now) {
            st.buckets.insert(k, b);
        }
    }

    fn cache_lookup(st: &mut State, key: &str) -> Option<Bytes> {
        match st.cache.get(key) {
            Some((v, exp)) if *exp > Instant::now() => Some(v.clone()),
            Some(_) => {
                if let Some((v, _)) = st.cache.remove(key) {
                    st.cache_bytes -= v.len();
                }
                None
            }
            None => None,
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn is_up(&self) -> bool {
        true
    }

    async fn admit(&self, a: &AdmitArgs<'_>) -> Result<AdmitResult, StoreError> {
        Ok(self.admit_local(a))
    }

    async fn finish(&self, f: &Finish<'_>) -> Result<(), StoreError> {
        if f.reserved > 0 {
            self.settle_local(f.tenant, f.tokens, f.reserved, f.used);
        }
        if let Some((key, value, ttl)) = &f.store {
            self.cache_put(key, value.clone(), *ttl).await?;
        }
        Ok(())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(Self::cache_lookup(&mut self.state.lock(), key))
    }

    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        if value.len() > self.max_cache_bytes {
            return Ok(());
        }
        let mut st = self.state.lock();
        let now = Instant::now();
        if let Some((old, _)) = st.cache.insert(key.to_string(), (value.clone(), now + ttl)) {
            st.cache_bytes -= old.len();
        } else {
            st.cache_order.push_back(key.to_string());
        }
        st.cache_bytes += value.len();
        // Evict from the oldest insertions until the budget holds.
        while st.cache_bytes > self.max_cache_bytes {
            let Some(k) = st.cache_order.pop_front() else {
                break;
            };
            if let Some((v, _)) = st.cache.remove(&k) {
                st.cache_bytes -= v.len();
            }
        }
        // Keep the order queue from growing without bound with overwritten keys.
        if st.cache_order.len() > 2 * st.cache.len() + 64 {
            let State {
                cache, cache_order, ..
            } = &mut *st;
            cache_order.retain(|k| cache.contains_key(k));
        }
        Ok(())
    }

    async fn quota_take(
        &self,
        provider: &str,
        day: u32,
        requests: u64,
        tokens: u64,
    ) -> Result<bool, StoreError> {
        let mut st = self.state.lock();
        let e = st.quotas.entry((provider.to_string(), day)).or_default();
        if (requests > 0 && e.0 >= requests) || (tokens > 0 && e.1 >= tokens) {
            return Ok(false);
        }
        e.0 += 1;
        Ok(true)
    }

    async fn quota_add_tokens(
        &self,
        provider: &str,
        day: u32,
        tokens: u64,
    ) -> Result<(), StoreError> {
        self.state
            .lock()
            .quotas
            .entry((provider.to_string(), day))
            .or_default()
            .1 += tokens;
        Ok(())
    }

    async fn quota_get(&self, provider: &str, day: u32) -> Result<(u64, u64), StoreError> {
        Ok(self
            .state
            .lock()
            .quotas
            .get(&(provider.to_string(), day))
            .copied()
            .unwrap_or_default())
    }

    async fn key_get(&self, hash: &str) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self.state.lock().keys.get(hash).cloned())
    }

    async fn key_put(&self, hash: &str, rec: &TenantRecord) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        st.keys.insert(hash.to_string(), rec.clone());
        st.keys_version += 1;
        Ok(())
    }

    async fn key_delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut st = self.state.lock();
        let before = st.keys.len();
        st.keys.retain(|_, r| r.id != id);
        let removed = st.keys.len() != before;
        if removed {
            st.keys_version += 1;
        }
        Ok(removed)
    }

    async fn key_list(&self) -> Result<Vec<(String, TenantRecord)>, StoreError> {
        Ok(self
            .state
            .lock()
            .keys
            .iter()
            .map(|(h, r)| (h.clone(), r.clone()))
            .collect())
    }

    async fn keys_version(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().keys_version)
    }

    async fn runtime_get(&self) -> Result<RuntimeValues, StoreError> {
        Ok(self.state.lock().runtime.clone())
    }

    async fn runtime_set(&self, field: RuntimeField, value: &str) -> Result<(), StoreError> {
        let v = (!value.is_empty()).then(|| value.to_string());
        let mut st = self.state.lock();
        let slot = match field {
            RuntimeField::Backend => &mut st.runtime.backend,
            RuntimeField::State => &mut st.runtime.state,
            RuntimeField::Url => &mut st.runtime.url,
            RuntimeField::Auth => &mut st.runtime.auth,
            RuntimeField::Strategy => &mut st.runtime.strategy,
        };
        *slot = v;
        Ok(())
    }

    async fn inflight_publish(
        &self,
        replica: &str,
        n: i64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.state
            .lock()
            .inflight
            .insert(replica.to_string(), (n, Instant::now() + ttl));
        Ok(())
    }

    async fn inflight_cluster(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.inflight.retain(|_, (_, exp)| *exp > now);
        Ok(st
            .inflight
            .iter()
            .map(|(k, (n, _))| (k.clone(), *n))
            .collect())
    }

    async fn record_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state.lock().control.get(key).cloned())
    }

    async fn record_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.state
            .lock()
            .control
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn lease(&self, holder: &str, _ttl: Duration) -> Result<bool, StoreError> {
        self.state.lock().holder = Some(holder.to_string());
        Ok(true)
    }

    async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        Ok(self.state.lock().holder.clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cache_is_bounded_and_expires() {
        let s = MemoryStore::new(10);
        s.cache_put("a", Bytes::from_static(b"12345"), Duration::from_secs(60))
            .await
            .unwrap();
        s.cache_put("b", Bytes::from_static(b"12345"), Duration::from_secs(60))
            .await
            .unwrap();
        s.cache_put("c", Bytes::from_static(b"123"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(s.cache_get("a").await.unwrap(), None, "oldest evicted");
        assert!(s.cache_get("b").await.unwrap().is_some());
        s.cache_put("big", Bytes::from(vec![0u8; 11]), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            s.cache_get("big").await.unwrap(),
            None,
            "over the budget: not stored"
        );
        s.cache_put("gone", Bytes::from_static(b"1"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(s.cache_get("gone").await.unwrap(), None, "expired");
    }

    #[tokio::test]
    async fn quotas_stop_at_the_limit() {
        let s = MemoryStore::new(0);
        assert!(s.quota_take("p", 1, 2, 0).await.unwrap());
        assert!(s.quota_take("p", 1, 2, 0).await.unwrap());
        assert!(!s.quota_take("p", 1, 2, 0).await.unwrap());
        assert!(s.quota_take("p", 2, 2, 0).await.unwrap(), "a new day");
        s.quota_add_tokens("q", 1, 10).await.unwrap();
        assert!(!s.quota_take("q", 1, 0, 10).await.unwrap());
        assert_eq!(s.quota_get("p", 1).await.unwrap(), (2, 0));
    }
}
