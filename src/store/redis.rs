//! The Redis store: any number of replicas share limits, quotas, cache, keys, runtime
//! configuration and in-flight counts. Each decision is one round trip; the rate limit
//! and the cache lookup are one `EVALSHA` of `ratelimit.lua` (versioned in the repo,
//! using the server's `TIME`).
//!
//! Connections: one multiplexed, self-reconnecting connection per worker thread,
//! created on that thread's runtime, so a request never waits on another thread's I/O
//! driver. When a call fails for connectivity, the store is marked down: hot-path calls
//! then fail at once (no timeout per request) until [`Store::ping`] — called by the
//! refresher every second while down — succeeds again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::IntGauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value};
use switchyard_filters::bucket::{Admission, BucketStatus, Limit};

use super::{
    AdmitArgs, AdmitResult, Finish, RuntimeField, RuntimeValues, Store, StoreError, TenantRecord,
    QUOTA_TTL,
};

const RATELIMIT_LUA: &str = include_str!("ratelimit.lua");
const FINISH_LUA: &str = include_str!("finish.lua");
const QUOTA_LUA: &str = include_str!("quota.lua");
/// Takes the controller lease if free, renews it if `holder` has it (one round trip, so
/// two replicas never both believe they hold it).
const LEASE_LUA: &str = r"
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

/// The Redis store.
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conns: Mutex<HashMap<ThreadId, ConnectionManager>>,
    up: AtomicBool,
    up_gauge: IntGauge,
    ratelimit: Script,
    finish: Script,
    quota: Script,
    lease: Script,
}

impl RedisStore {
    /// A store for `url` (`redis://[:password@]host:port[/db]`); keys get `prefix`.
    /// Connects lazily: the gateway starts even when Redis is down.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        up_gauge: IntGauge,
    ) -> Result<Self, String> {
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
            ratelimit: Script::new(RATELIMIT_LUA),
            finish: Script::new(FINISH_LUA),
            quota: Script::new(QUOTA_LUA),
            lease: Script::new(LEASE_LUA),
        })
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
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable("redis is down".into()));
        }
        self.conn_any().await
    }

    async fn conn_any(&self) -> Result<ConnectionManager, StoreError> {
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
    ) -> Result<Vec<(String, Option<T>)>, StoreError> {
        let members: Vec<String> = c.smembers(self.k(set)).await.map_err(|e| self.fail(e))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = members
            .iter()
            .map(|m| self.k(&format!("{value_prefix}{m}")))
            .collect();
        let vals: Vec<Option<T>> = c.mget(&keys).await.map_err(|e| self.fail(e))?;
        Ok(members.into_iter().zip(vals).collect())
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn status(remaining: i64, reset: i64, limit: Limit) -> Option<BucketStatus> {
    (remaining >= 0).then(|| BucketStatus {
        limit: limit.per_minute,
        remaining: remaining as u64,
        reset_ms: reset.max(0) as u64,
    })
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
        let mut c = self.conn().await?;
        let tag = format!("{{{}}}", a.tenant);
        let mut inv = self.ratelimit.prepare_invoke();
        inv.key(self.k(&format!("rl:{tag}:req")))
            .key(self.k(&format!("rl:{tag}:tok")));
        // The cache entry joins the script only when it shares the tenant's hash tag
        // (cluster-safe); a global-scope entry is read with a pipelined GET instead.
        let (in_script, separate) = match a.cache_key {
            Some(k) if k.starts_with(&tag) => (Some(self.k(&format!("cache:{k}"))), None),
            Some(k) => (None, Some(self.k(&format!("cache:{k}")))),
            None => (None, None),
        };
        inv.key(in_script.unwrap_or_default())
            .arg(a.requests.per_minute)
            .arg(a.tokens.per_minute)
            .arg(a.token_cost);
        let out: Vec<Value> = inv.invoke_async(&mut c).await.map_err(|e| self.fail(e))?;
        if out.len() < 9 {
            return Err(StoreError::Protocol(
                "ratelimit script returned too little".into(),
            ));
        }
        let allowed = int(&out[0]) == 1;
        let admission = Admission {
            allowed,
            refused_by: match int(&out[1]) {
                1 => Some("requests"),
                2 => Some("tokens"),
                _ => None,
            },
            retry_after_ms: int(&out[2]).max(0) as u64,
            requests: status(int(&out[3]), int(&out[4]), a.requests),
            tokens: status(int(&out[5]), int(&out[6]), a.tokens),
        };
        let mut cached = match &out[7] {
            Value::BulkString(b) => Some(Bytes::from(b.clone())),
            _ => None,
        };
        if let (true, Some(key)) = (allowed, separate) {
            let v: Option<Vec<u8>> = c.get(key).await.map_err(|e| self.fail(e))?;
            cached = v.map(Bytes::from);
        }
        let reserved = int(&out[8]).max(0) as u64;
        Ok(AdmitResult {
            admission,
            cached,
            reserved,
        })
    }

    async fn finish(&self, f: &Finish<'_>) -> Result<(), StoreError> {
        let settle = f.reserved > 0 && !f.tokens.is_unlimited();
        if !settle && f.store.is_none() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let tag = format!("{{{}}}", f.tenant);
        // Settlement and store in one script when the entry shares the tenant's tag;
        // a global-scope entry goes in the same pipeline as a plain SET.
        let (in_script, separate) = match &f.store {
            Some((k, v, ttl)) if k.starts_with(&tag) => {
                (Some((self.k(&format!("cache:{k}")), v, *ttl)), None)
            }
            Some((k, v, ttl)) => (None, Some((self.k(&format!("cache:{k}")), v, *ttl))),
            None => (None, None),
        };
        let mut pipe = redis::pipe();
        if settle || in_script.is_some() {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.finish.get_hash()).arg(2);
            cmd.arg(if settle {
                self.k(&format!("rl:{tag}:tok"))
            } else {
                String::new()
            });
            cmd.arg(
                in_script
                    .as_ref()
                    .map(|(k, _, _)| k.clone())
                    .unwrap_or_default(),
            );
            cmd.arg(f.tokens.per_minute).arg(f.reserved).arg(f.used);
            match &in_script {
                Some((_, v, ttl)) => cmd.arg(v.as_ref()).arg(ttl.as_millis().max(1) as u64),
                None => cmd.arg("").arg(0),
            };
            pipe.add_command(cmd).ignore();
        }
        if let Some((k, v, ttl)) = &separate {
            pipe.cmd("SET")
                .arg(k)
                .arg(v.as_ref())
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore();
        }
        match pipe.query_async::<()>(&mut c).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                // First use on this server (or after a restart): load and retry once.
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(FINISH_LUA)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| self.fail(e))?;
                pipe.query_async::<()>(&mut c)
                    .await
                    .map_err(|e| self.fail(e))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn cache_get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut c = self.conn().await?;
        let v: Option<Vec<u8>> = c
            .get(self.k(&format!("cache:{key}")))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.map(Bytes::from))
    }

    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
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
        let mut c = self.conn_any().await?;
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
                let mut c = self.conn_any().await?;
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
        let mut c = self.conn_any().await?;
        let pairs: Vec<(String, Option<String>)> =
            self.set_with_values(&mut c, "keys:index", "keys:").await?;
        Ok(pairs
            .into_iter()
            .filter_map(|(h, v)| Some((h, serde_json::from_str(&v?).ok()?)))
            .collect())
    }

    async fn keys_version(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let v: Option<u64> = c
            .get(self.k("keys:version"))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.unwrap_or(0))
    }

    async fn runtime_get(&self) -> Result<RuntimeValues, StoreError> {
        let mut c = self.conn().await?;
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
        let mut c = self.conn_any().await?;
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
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
        let pairs: Vec<(String, Option<i64>)> = self
            .set_with_values(&mut c, "inflight:replicas", "inflight:")
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
        let mut c = self.conn_any().await?;
        c.get(self.k(key)).await.map_err(|e| self.fail(e))
    }

    async fn record_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut c = self.conn_any().await?;
        let _: () = c.set(self.k(key), value).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn_any().await?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .lease
            .key(self.k("control:lease"))
            .arg(holder)
            .arg(ms)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(held == 1)
    }

    async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.conn_any().await?;
        c.get(self.k("control:lease"))
            .await
            .map_err(|e| self.fail(e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn_any().await?;
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
