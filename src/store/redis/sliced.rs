//! The request path's calls: admission from a slice of the shared limits (a new slice
//! when the one held does not cover the request), the cache answered by the mirror or
//! looked up, and the give-back of idle slices.

use bytes::Bytes;
use redis::Value;
use switchyard_filters::bucket::{Admission, BucketStatus, Limit};

use super::{Call, RedisStore};
use crate::store::lease::{Ask, GiveBack, Grant, Need, SLICE_DIVISOR};
use crate::store::mirror::Lookup;
use crate::store::{AdmitArgs, AdmitResult, Store, StoreError};

/// The hash tag of a cache key (`{scope}`), which picks its cluster slot.
pub(super) fn tag_of(key: &str) -> &str {
    key.find('}').map_or(key, |i| &key[..=i])
}

/// Whether a cache key (`{scope}:<hash>`) shares the tenant's hash tag (one cluster slot
/// with its buckets, so the lookup can join the slice's script).
fn same_slot(key: &str, tenant: &str) -> bool {
    key.strip_prefix('{')
        .and_then(|k| k.strip_prefix(tenant))
        .is_some_and(|k| k.starts_with('}'))
}

fn allowed() -> Admission {
    Admission {
        allowed: true,
        ..Admission::default()
    }
}

impl RedisStore {
    /// Admission from the local slice when it covers the request, from a new slice
    /// otherwise; the cache from the mirror when it knows, from Redis otherwise (in the
    /// slice's call when one is made).
    pub(super) async fn admit_sliced(&self, a: &AdmitArgs<'_>) -> Result<AdmitResult, StoreError> {
        if !self.is_up() {
            // The outage policy decides while Redis is known down, as it would without
            // slices (a slice held is kept, and used or given back once Redis is back).
            return Err(StoreError::Unavailable("redis is down".into()));
        }
        let now = self.now_ms();
        let (mut cached, mut unknown) = (None, None);
        if let Some(k) = a.cache_key {
            match self
                .mirror
                .as_ref()
                .map_or(Lookup::Unknown, |m| m.lookup(k, now))
            {
                Lookup::Hit(v) => cached = Some(v),
                Lookup::Absent => {}
                Lookup::Unknown => unknown = Some(k),
            }
        }
        let limited = !a.requests.is_unlimited() || !a.tokens.is_unlimited();
        if let Some(k) = unknown.filter(|k| !limited || !same_slot(k, a.tenant)) {
            cached = self.lookup_remote(k).await?;
            unknown = None;
        }
        if !limited {
            return Ok(AdmitResult {
                admission: allowed(),
                cached,
                reserved: 0,
                fallback: false,
            });
        }
        let need = Need {
            requests: a.requests,
            tokens: a.tokens,
            token_cost: if cached.is_some() { 0 } else { a.token_cost },
        };
        let local = self.leases.lock().try_local(a.tenant, &need, now);
        match local {
            Ok(admission) => {
                let mut reserved = need.tok();
                if let Some(k) = unknown {
                    // The slice covered the limits; only the lookup is left.
                    cached = match self.lookup_remote(k).await {
                        Ok(v) => v,
                        Err(e) => {
                            self.leases.lock().restore(
                                GiveBack {
                                    tenant: a.tenant.into(),
                                    requests: need.req(),
                                    tokens: reserved as i64,
                                    requests_limit: a.requests,
                                    tokens_limit: a.tokens,
                                },
                                now,
                            );
                            return Err(e);
                        }
                    };
                    if cached.is_some() && reserved > 0 {
                        // A hit costs no tokens.
                        self.leases.lock().settle(a.tenant, reserved, 0, now);
                        reserved = 0;
                    }
                }
                Ok(AdmitResult {
                    admission,
                    cached,
                    reserved,
                    fallback: false,
                })
            }
            Err(ask) => {
                let (grant, hit) = self.take_slice(a, &ask, unknown).await?;
                let (need, ask) = match hit {
                    Some(v) => {
                        cached = Some(v);
                        (
                            Need {
                                token_cost: 0,
                                ..need
                            },
                            Ask {
                                tokens: 0,
                                extra_tokens: 0,
                                ..ask
                            },
                        )
                    }
                    None => (need, ask),
                };
                let admission = {
                    let mut leases = self.leases.lock();
                    let adm = leases.granted(a.tenant, &need, &ask, &grant, self.now_ms());
                    self.slices_held.set(leases.len() as i64);
                    adm
                };
                Ok(AdmitResult {
                    admission,
                    cached: cached.filter(|_| admission.allowed),
                    reserved: if admission.allowed { need.tok() } else { 0 },
                    fallback: false,
                })
            }
        }
    }

    /// One call of `lease.lua`: the need and an extra slice, and the cache entry when
    /// `cache_key` is given (it shares the tenant's slot).
    async fn take_slice(
        &self,
        a: &AdmitArgs<'_>,
        ask: &Ask,
        cache_key: Option<&str>,
    ) -> Result<(Grant, Option<Bytes>), StoreError> {
        let mut c = self.conn(Call::Lease).await?;
        let tag = format!("{{{}}}", a.tenant);
        let out: Vec<Value> = self
            .lease_script
            .key(self.k(&format!("rl:{tag}:req")))
            .key(self.k(&format!("rl:{tag}:tok")))
            .key(cache_key.map_or_else(String::new, |k| self.k(&format!("cache:{k}"))))
            .arg(a.requests.per_minute)
            .arg(a.tokens.per_minute)
            .arg(ask.requests)
            .arg(ask.tokens)
            .arg(ask.debt)
            .arg(ask.extra_requests)
            .arg(ask.extra_tokens)
            .arg(SLICE_DIVISOR)
            .arg("take")
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        if out.len() < 12 {
            return Err(StoreError::Protocol(
                "lease script returned too little".into(),
            ));
        }
        let admission = Admission {
            allowed: int(&out[0]) == 1,
            refused_by: match int(&out[1]) {
                1 => Some("requests"),
                2 => Some("tokens"),
                _ => None,
            },
            retry_after_ms: int(&out[2]).max(0) as u64,
            requests: status(int(&out[3]), int(&out[4]), a.requests),
            tokens: status(int(&out[5]), int(&out[6]), a.tokens),
        };
        let hit = match (&out[7], cache_key) {
            (Value::BulkString(b), Some(k)) => {
                let v = Bytes::from(b.clone());
                self.hold(k, &v, int(&out[8]));
                Some(v)
            }
            _ => None,
        };
        Ok((
            Grant {
                admission,
                extra_requests: int(&out[9]).max(0) as u64,
                extra_tokens: int(&out[10]).max(0) as u64,
                debt_charged: !a.tokens.is_unlimited(),
            },
            hit,
        ))
    }

    /// A cache lookup the mirror could not answer (`lookup.lua`: the entry and its TTL,
    /// so the answer can be held until then).
    async fn lookup_remote(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut c = self.conn(Call::Lookup).await?;
        let (v, pttl): (Option<Vec<u8>>, i64) = self
            .lookup_script
            .key(self.k(&format!("cache:{key}")))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.map(|v| {
            let v = Bytes::from(v);
            self.hold(key, &v, pttl);
            v
        }))
    }

    fn hold(&self, key: &str, value: &Bytes, pttl: i64) {
        if let (Some(m), true) = (&self.mirror, pttl > 0) {
            m.hold(key, value.clone(), pttl as u64, self.now_ms());
        }
    }

    /// Gives back a slice (`lease.lua` in `give` mode).
    async fn give_back(&self, g: &GiveBack) -> Result<(), StoreError> {
        let mut c = self.conn(Call::GiveBack).await?;
        let tag = format!("{{{}}}", g.tenant);
        let _: i64 = self
            .lease_script
            .key(self.k(&format!("rl:{tag}:req")))
            .key(self.k(&format!("rl:{tag}:tok")))
            .key("")
            .arg(g.requests_limit.per_minute)
            .arg(g.tokens_limit.per_minute)
            .arg(g.requests)
            .arg(g.tokens)
            .arg(0)
            .arg(0)
            .arg(0)
            .arg(SLICE_DIVISOR)
            .arg("give")
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Gives back the slices idle for [`crate::store::lease::HOLD`] (all with `all`); what
    /// cannot be sent is kept for the next round, except at shutdown.
    pub(super) async fn sweep(&self, all: bool) {
        let idle = {
            let mut leases = self.leases.lock();
            let idle = leases.take_idle(self.now_ms(), all);
            self.slices_held.set(leases.len() as i64);
            idle
        };
        for g in idle {
            if let Err(e) = self.give_back(&g).await {
                log::debug!("rate-limit slice not given back: {e}");
                if !all {
                    self.leases.lock().restore(g, self.now_ms());
                }
            }
        }
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
