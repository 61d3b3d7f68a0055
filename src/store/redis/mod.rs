//! The Redis store: any number of replicas share limits, quotas, cache, keys, runtime
//! configuration and in-flight counts.
//!
//! The request path is built to need almost no round trips under a steady load:
//! - **Rate limits** are taken in slices ([`super::lease`]): one `EVALSHA` of
//!   `lease.lua` takes the request's need plus an extra that later requests are admitted
//!   from locally; token settlement happens on the local balance; unused slices go back
//!   after a second. Near the limit the slices shrink to the need, so the limit is exact
//!   across replicas.
//! - **Cache lookups** are answered by the mirror ([`super::mirror`]): every store
//!   announces its key on a Pub/Sub channel, so a replica knows which keys exist (a miss
//!   needs no call) and holds the hot answers (a repeated hit needs none either).
//! - **Storing an answer** is one `EVALSHA` of `store.lua` (`SET` + `PUBLISH`), behind
//!   the response.
//!
//! Connections: one multiplexed, self-reconnecting connection per worker thread,
//! created on that thread's runtime, so a request never waits on another thread's I/O
//! driver; the subscription has its own. When a call fails for connectivity, the store
//! is marked down: hot-path calls then fail at once (no timeout per request) until
//! [`Store::ping`] — called by the refresher every second while down — succeeds again.
//! Every call the gateway sends is counted in `switchyard_redis_calls_total{call}`.

mod sliced;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::lease::Leases;
use super::mirror::CacheMirror;
use super::{
    AdmitArgs, AdmitResult, Finish, RuntimeField, RuntimeValues, Store, StoreError, TenantRecord,
    QUOTA_TTL,
};

const LEASE_LUA: &str = include_str!("../lease.lua");
const STORE_LUA: &str = include_str!("../store.lua");
const LOOKUP_LUA: &str = include_str!("../lookup.lua");
const QUOTA_LUA: &str = include_str!("../quota.lua");
/// Takes the controller lease if free, renews it if `holder` has it (one round trip, so
/// two replicas never both believe they hold it).
const CONTROL_LEASE_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// The calls the store sends, for `switchyard_redis_calls_total{call}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A rate-limit slice (`lease.lua`, with the cache lookup when it was unknown).
    Lease,
    /// An unused slice given back.
    GiveBack,
    /// A cache lookup the mirror could not answer.
    Lookup,
    /// An answer stored (`store.lua`).
    Store,
    /// The mirror's subscription and resync (`SUBSCRIBE`, `SCAN`).
    Mirror,
    /// Daily quotas.
    Quota,
    /// API keys.
    Keys,
    /// Runtime configuration.
    Runtime,
    /// In-flight counts.
    Inflight,
    /// Control-plane records and the controller lease.
    Control,
    /// Reachability checks.
    Ping,
}

impl Call {
    /// Every call, in label order.
    pub const ALL: [Call; 11] = [
        Call::Lease,
        Call::GiveBack,
        Call::Lookup,
        Call::Store,
        Call::Mirror,
        Call::Quota,
        Call::Keys,
        Call::Runtime,
        Call::Inflight,
        Call::Control,
        Call::Ping,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Call::Lease => "lease",
            Call::GiveBack => "give_back",
            Call::Lookup => "lookup",
            Call::Store => "store",
            Call::Mirror => "mirror",
            Call::Quota => "quota",
            Call::Keys => "keys",
            Call::Runtime => "runtime",
            Call::Inflight => "inflight",
            Call::Control => "control",
            Call::Ping => "ping",
        }
    }
}

/// Answers waiting to be written beyond this are not stored (Redis is too slow to keep
/// up; the cache is best effort).
const MAX_PENDING_WRITES: usize = 16_384;
/// The most answers one store call writes.
const MAX_BATCH: usize = 256;

/// An answer waiting to be written.
struct PendingWrite {
    /// `{scope}:<hash>`.
    key: String,
    value: Bytes,
    ttl_ms: u64,
}

/// The metrics the store keeps.
#[derive(Clone)]
pub struct StoreMetrics {
    /// `switchyard_redis_up`.
    pub up: IntGauge,
    /// `switchyard_redis_calls_total{call}`.
    pub calls: IntCounterVec,
    /// `switchyard_cache_mirror_keys`: keys the mirror knows.
    pub mirror_keys: IntGauge,
    /// `switchyard_cache_mirror_synced`: 1 while a key the mirror does not know is known
    /// absent.
    pub mirror_synced: IntGauge,
    /// `switchyard_ratelimit_slices_held`: tenants with a rate-limit slice held here.
    pub slices_held: IntGauge,
}

/// How the store keeps its mirror of the response cache.
#[derive(Debug, Clone, Copy)]
pub struct MirrorSettings {
    /// The longest TTL an entry is stored with (keys found by a resync are assumed to
    /// live that long: at worst one lookup that misses).
    pub max_ttl: Duration,
    /// The budget of the answers held in memory.
    pub max_bytes: usize,
    /// The most keys the index records (beyond: lookups go to Redis).
    pub max_keys: usize,
    /// How long the first answer queued waits for others to share its store call: under
    /// load one call then writes tens of answers instead of one or two (each call costs
    /// Redis and both sockets far more than a key in it does).
    pub write_window: Duration,
}

/// The Redis store.
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conns: Mutex<HashMap<ThreadId, ConnectionManager>>,
    up: AtomicBool,
    up_gauge: IntGauge,
    calls: Vec<IntCounter>,
    mirror_keys: IntGauge,
    mirror_synced: IntGauge,
    slices_held: IntGauge,
    started: Instant,
    leases: Mutex<Leases>,
    /// `None` with the cache off: nothing to look up, no subscription.
    mirror: Option<CacheMirror>,
    mirror_ttl_ms: u64,
    channel: String,
    /// This store's id in announcements (its own are skipped).
    origin: String,
    /// Answers to store, written in batches behind the responses.
    writes: Mutex<Vec<PendingWrite>>,
    writes_ready: tokio::sync::Notify,
    write_window: Duration,
    lease_script: Script,
    store_script: Script,
    lookup_script: Script,
    quota: Script,
    control_lease: Script,
}

impl RedisStore {
    /// A store for `url` (`redis://[:password@]host:port[/db]`); keys get `prefix`.
    /// Connects lazily: the gateway starts even when Redis is down. With `mirror`, the
    /// response cache is mirrored locally (the cache is on).
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        metrics: StoreMetrics,
        mirror: Option<MirrorSettings>,
    ) -> Result<Self, String> {
        let up_gauge = metrics.up;
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid redis url ({:?})", e.kind()))?;
        up_gauge.set(0);
        Ok(Self {
            client,
            prefix: prefix.to_string(),
            timeout,
            conns: Mutex::new(HashMap::new()),
            up: AtomicBool::new(false),
            up_gauge,
            calls: Call::ALL
                .iter()
                .map(|c| metrics.calls.with_label_values(&[c.label()]))
                .collect(),
            mirror_keys: metrics.mirror_keys,
            mirror_synced: metrics.mirror_synced,
            slices_held: metrics.slices_held,
            started: Instant::now(),
            leases: Mutex::new(Leases::new()),
            mirror: mirror.map(|m| CacheMirror::new(m.max_keys, m.max_bytes)),
            mirror_ttl_ms: mirror.map_or(0, |m| m.max_ttl.as_millis() as u64),
            channel: format!("{prefix}cache:announce"),
            origin: {
                let mut raw = [0u8; 8];
                let _ = getrandom::fill(&mut raw);
                hex::encode(raw)
            },
            writes: Mutex::new(Vec::new()),
            writes_ready: tokio::sync::Notify::new(),
            write_window: mirror.map_or(Duration::ZERO, |m| m.write_window),
            lease_script: Script::new(LEASE_LUA),
            store_script: Script::new(STORE_LUA),
            lookup_script: Script::new(LOOKUP_LUA),
            quota: Script::new(QUOTA_LUA),
            control_lease: Script::new(CONTROL_LEASE_LUA),
        })
    }

    /// Milliseconds on this process' monotonic clock (leases and the mirror).
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn k(&self, suffix: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + suffix.len());
        s.push_str(&self.prefix);
        s.push_str(suffix);
        s
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.up_gauge.set(i64::from(up));
            if up {
                // Connections from before the outage may be broken without knowing it
                // yet: every thread starts over with a fresh one rather than finding out
                // on a request (which would mark the store down again).
                self.conns.lock().clear();
                log::info!("redis is reachable");
            } else {
                log::warn!("redis is unreachable; serving on the last snapshot (cache bypassed, limits per on_outage)");
            }
        }
    }

    /// Maps a client error; connectivity errors mark the store down. Messages never
    /// carry the URL (it may hold a password).
    fn fail(&self, e: redis::RedisError) -> StoreError {
        let connectivity = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error();
        let msg = format!("{}: {:?}", e.category(), e.kind());
        if connectivity {
            self.set_up(false);
            StoreError::Unavailable(msg)
        } else {
            StoreError::Protocol(msg)
        }
    }

    /// This thread's connection (hot path: fails at once while the store is down).
    async fn conn(&self, call: Call) -> Result<ConnectionManager, StoreError> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable("redis is down".into()));
        }
        self.conn_any(call).await
    }

    /// This thread's connection, also while the store is believed down; counts the call
    /// it is taken for.
    async fn conn_any(&self, call: Call) -> Result<ConnectionManager, StoreError> {
        self.calls[call as usize].inc();
        let tid = std::thread::current().id();
        if let Some(c) = self.conns.lock().get(&tid) {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let made = tokio::time::timeout(
            self.timeout * 4,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await;
        match made {
            Ok(Ok(c)) => {
                self.conns.lock().insert(tid, c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => {
                self.set_up(false);
                Err(StoreError::Unavailable("connect timed out".into()))
            }
        }
    }
}

impl RedisStore {
    /// The members of the set `set` with the values of `<value_prefix><member>`, read in
    /// two round trips (SMEMBERS, MGET).
    async fn set_with_values<T: redis::FromRedisValue>(
        &self,
        c: &mut ConnectionManager,
        set: &str,
        value_prefix: &str,
        call: Call,
    ) -> Result<Vec<(String, Option<T>)>, StoreError> {
        let members: Vec<String> = c.smembers(self.k(set)).await.map_err(|e| self.fail(e))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        self.calls[call as usize].inc();
        let keys: Vec<String> = members
            .iter()
            .map(|m| self.k(&format!("{value_prefix}{m}")))
            .collect();
        let vals: Vec<Option<T>> = c.mget(&keys).await.map_err(|e| self.fail(e))?;
        Ok(members.into_iter().zip(vals).collect())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    async fn admit(&self, a: &AdmitArgs<'_>) -> Result<AdmitResult, StoreError> {
        self.admit_sliced(a).await
    }

    async fn finish(&self, f: &Finish<'_>) -> Result<(), StoreError> {
        if f.reserved > 0 && !f.tokens.is_unlimited() {
            self.leases
                .lock()
                .settle(f.tenant, f.reserved, f.used, self.now_ms());
        }
        let Some((key, value, ttl)) = &f.store else {
            return Ok(());
        };
        if !self.is_up() {
            return Err(StoreError::Unavailable("redis is down".into()));
        }
        let ms = ttl.as_millis().max(1) as u64;
        if let Some(m) = &self.mirror {
            // Served from here at once; the other replicas learn of it once it is written.
            m.hold(key, value.clone(), ms, self.now_ms());
        }
        {
            let mut w = self.writes.lock();
            if w.len() >= MAX_PENDING_WRITES {
                return Err(StoreError::Unavailable(
                    "the cache write queue is full".into(),
                ));
            }
            w.push(PendingWrite {
                key: (*key).to_string(),
                value: value.clone(),
                ttl_ms: ms,
            });
        }
        self.writes_ready.notify_one();
        Ok(())
    }

    async fn maintain(&self, shutdown: ShutdownWatch) {
        tokio::join!(self.upkeep(shutdown.clone()), self.write_behind(shutdown));
    }

    async fn cache_get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut c = self.conn(Call::Lookup).await?;
        let v: Option<Vec<u8>> = c
            .get(self.k(&format!("cache:{key}")))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.map(Bytes::from))
    }

    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn(Call::Store).await?;
        let ms = ttl.as_millis().max(1) as u64;
        let _: () = redis::cmd("SET")
            .arg(self.k(&format!("cache:{key}")))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ms)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn quota_take(
        &self,
        provider: &str,
        day: u32,
        requests: u64,
        tokens: u64,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn(Call::Quota).await?;
        let out: Vec<i64> = self
            .quota
            .key(self.k(&format!("quota:{{{provider}}}:{day}")))
            .arg(requests)
            .arg(tokens)
            .arg(QUOTA_TTL.as_secs())
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(out.first() == Some(&1))
    }

    async fn quota_add_tokens(
        &self,
        provider: &str,
        day: u32,
        tokens: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn(Call::Quota).await?;
        let key = self.k(&format!("quota:{{{provider}}}:{day}"));
        let _: () = redis::pipe()
            .atomic()
            .hincr(&key, "tok", tokens)
            .ignore()
            .expire(&key, QUOTA_TTL.as_secs() as i64)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn quota_get(&self, provider: &str, day: u32) -> Result<(u64, u64), StoreError> {
        let mut c = self.conn(Call::Quota).await?;
        let v: (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.k(&format!("quota:{{{provider}}}:{day}")))
            .arg("req")
            .arg("tok")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok((v.0.unwrap_or(0), v.1.unwrap_or(0)))
    }

    async fn key_get(&self, hash: &str) -> Result<Option<TenantRecord>, StoreError> {
        let mut c = self.conn(Call::Keys).await?;
        let v: Option<String> = c
            .get(self.k(&format!("keys:{hash}")))
            .await
            .map_err(|e| self.fail(e))?;
        match v {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| StoreError::Protocol(format!("bad key record: {e}"))),
        }
    }

    async fn key_put(&self, hash: &str, rec: &TenantRecord) -> Result<(), StoreError> {
        let mut c = self.conn_any(Call::Keys).await?;
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Protocol(e.to_string()))?;
        let _: () = redis::pipe()
            .atomic()
            .set(self.k(&format!("keys:{hash}")), json)
            .ignore()
            .sadd(self.k("keys:index"), hash)
            .ignore()
            .incr(self.k("keys:version"), 1)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn key_delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut removed = false;
        for (hash, rec) in self.key_list().await? {
            if rec.id == id {
                let mut c = self.conn_any(Call::Keys).await?;
                let _: () = redis::pipe()
                    .atomic()
                    .del(self.k(&format!("keys:{hash}")))
                    .ignore()
                    .srem(self.k("keys:index"), &hash)
                    .ignore()
                    .incr(self.k("keys:version"), 1)
                    .ignore()
                    .query_async(&mut c)
                    .await
                    .map_err(|e| self.fail(e))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    async fn key_list(&self) -> Result<Vec<(String, TenantRecord)>, StoreError> {
        let mut c = self.conn_any(Call::Keys).await?;
        let pairs: Vec<(String, Option<String>)> = self
            .set_with_values(&mut c, "keys:index", "keys:", Call::Keys)
            .await?;
        Ok(pairs
            .into_iter()
            .filter_map(|(h, v)| Some((h, serde_json::from_str(&v?).ok()?)))
            .collect())
    }

    async fn keys_version(&self) -> Result<u64, StoreError> {
        let mut c = self.conn(Call::Keys).await?;
        let v: Option<u64> = c
            .get(self.k("keys:version"))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.unwrap_or(0))
    }

    async fn runtime_get(&self) -> Result<RuntimeValues, StoreError> {
        let mut c = self.conn(Call::Runtime).await?;
        let keys: Vec<String> = RuntimeField::ALL.iter().map(|f| self.k(f.key())).collect();
        let v: Vec<Option<String>> = c.mget(&keys).await.map_err(|e| self.fail(e))?;
        let get = |i: usize| v.get(i).cloned().flatten();
        Ok(RuntimeValues {
            backend: get(0),
            state: get(1),
            url: get(2),
            auth: get(3),
            strategy: get(4),
        })
    }

    async fn runtime_set(&self, field: RuntimeField, value: &str) -> Result<(), StoreError> {
        let mut c = self.conn_any(Call::Runtime).await?;
        let key = self.k(field.key());
        let _: () = if value.is_empty() {
            c.del(key).await
        } else {
            c.set(key, value).await
        }
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn inflight_publish(
        &self,
        replica: &str,
        n: i64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn(Call::Inflight).await?;
        let _: () = redis::pipe()
            .set_ex(
                self.k(&format!("inflight:{replica}")),
                n,
                ttl.as_secs().max(1),
            )
            .ignore()
            .sadd(self.k("inflight:replicas"), replica)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn inflight_cluster(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut c = self.conn(Call::Inflight).await?;
        let pairs: Vec<(String, Option<i64>)> = self
            .set_with_values(&mut c, "inflight:replicas", "inflight:", Call::Inflight)
            .await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (r, v) in pairs {
            match v {
                Some(n) => out.push((r, n)),
                None => gone.push(r),
            }
        }
        if !gone.is_empty() {
            let _: Result<(), _> = c.srem(self.k("inflight:replicas"), gone).await;
        }
        Ok(out)
    }

    async fn record_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn_any(Call::Control).await?;
        c.get(self.k(key)).await.map_err(|e| self.fail(e))
    }

    async fn record_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut c = self.conn_any(Call::Control).await?;
        let _: () = c.set(self.k(key), value).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn_any(Call::Control).await?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .control_lease
            .key(self.k("control:lease"))
            .arg(holder)
            .arg(ms)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(held == 1)
    }

    async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.conn_any(Call::Control).await?;
        c.get(self.k("control:lease"))
            .await
            .map_err(|e| self.fail(e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn_any(Call::Ping).await?;
        let r: Result<String, _> =
            tokio::time::timeout(self.timeout * 2, redis::cmd("PING").query_async(&mut c))
                .await
                .map_err(|_| StoreError::Unavailable("ping timed out".into()))?;
        match r {
            Ok(_) => {
                self.set_up(true);
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}
