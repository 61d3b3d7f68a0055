//! Rate-limit leases: a replica takes a slice of a tenant's shared buckets in one script
//! call and admits from it locally, so a steady load costs a Redis call per slice
//! instead of one per request.
//!
//! The promise of the shared limit holds: every request admitted was taken from the
//! shared bucket (as part of some slice), so across any number of replicas a tenant is
//! never admitted more than its limit. A slice is the request's own need plus an extra
//! that `lease.lua` sizes from what is left (`level / SLICE_DIVISOR`, capped by what the
//! replica asked for): near the limit the extra is 0 and every request is decided by
//! Redis alone, exactly as without leases; far from it the extra grows with this
//! replica's demand (doubling while slices are used up, from 1 up to
//! [`MAX_SLICE`]). What a replica holds and does not use within
//! [`HOLD`] goes back to the shared bucket, so an idle replica keeps nothing another one
//! could use. Token settlement happens on the local balance (a refund adds to it, extra
//! usage makes it negative: a debt charged with the next slice or the give-back).
//!
//! This file is the bookkeeping only (no I/O, the clock passed in); `redis.rs` makes the
//! calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_filters::bucket::{Admission, Bucket, BucketStatus, Limit};

/// The shared bucket's extra slice is at most what is left divided by this: a replica
/// never takes more than 1/16 of the remainder beyond its own need.
pub const SLICE_DIVISOR: u64 = 16;
/// The largest extra slice a replica asks for, in requests' worth (requests, and the
/// tokens as many requests at the current one's cost would reserve).
pub const MAX_SLICE: u64 = 4096;
/// How long an unused balance is kept before it goes back.
pub const HOLD: Duration = Duration::from_secs(1);

/// One tenant's local balances.
#[derive(Debug, Clone, Default)]
struct Balance {
    /// Requests taken and not yet admitted.
    requests: u64,
    /// Tokens taken and not yet reserved (negative: usage above the reservations,
    /// owed to the shared bucket).
    tokens: i64,
    /// The next slice's extra, in requests' worth (0: not asked yet, taken as 1).
    want: u64,
    /// The shared levels after the last call, and when (ms), for the headers.
    shared_requests: Option<f64>,
    shared_tokens: Option<f64>,
    shared_at_ms: u64,
    /// Last use (ms): an idle balance goes back after [`HOLD`].
    used_at_ms: u64,
    /// The limits last seen (a give-back is capped at them).
    limits: (Limit, Limit),
}

/// What a request needs from the buckets.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// The request limit.
    pub requests: Limit,
    /// The token limit.
    pub tokens: Limit,
    /// Tokens to reserve (0 for a cache hit).
    pub token_cost: u64,
}

impl Need {
    /// Requests this need takes (1, or 0 without a request limit).
    pub fn req(&self) -> u64 {
        u64::from(!self.requests.is_unlimited())
    }

    /// Tokens this need reserves (the cost capped at the limit, 0 without one).
    pub fn tok(&self) -> u64 {
        if self.tokens.is_unlimited() {
            0
        } else {
            self.token_cost.min(self.tokens.per_minute)
        }
    }
}

/// What to ask the shared bucket for when the local balance does not cover a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Requests needed now (0 or 1).
    pub requests: u64,
    /// Tokens needed now (the cost; the debt is charged separately).
    pub tokens: u64,
    /// Tokens owed (charged with the slice whether or not it is granted).
    pub debt: u64,
    /// Extra requests wanted for later.
    pub extra_requests: u64,
    /// Extra tokens wanted for later.
    pub extra_tokens: u64,
}

/// What `lease.lua` granted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant {
    /// The decision and the shared levels after it.
    pub admission: Admission,
    /// Extra requests granted beyond the need.
    pub extra_requests: u64,
    /// Extra tokens granted beyond the need.
    pub extra_tokens: u64,
    /// Whether the debt was charged.
    pub debt_charged: bool,
}

/// What goes back to the shared buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveBack {
    /// Tenant.
    pub tenant: Arc<str>,
    /// Requests returned.
    pub requests: u64,
    /// Tokens returned (negative: a debt paid).
    pub tokens: i64,
    /// The request limit.
    pub requests_limit: Limit,
    /// The token limit.
    pub tokens_limit: Limit,
}

/// Every tenant's balances in this replica.
#[derive(Debug, Default)]
pub struct Leases {
    by_tenant: HashMap<Arc<str>, Balance, foldhash::fast::RandomState>,
}

impl Leases {
    /// No balances.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits from the local balance when it covers the request, returning the
    /// admission for the headers; otherwise returns what to ask the shared bucket for.
    pub fn try_local(&mut self, tenant: &str, need: &Need, now_ms: u64) -> Result<Admission, Ask> {
        let (req, tok) = (need.req(), need.tok());
        let b = self.entry(tenant);
        b.used_at_ms = now_ms;
        b.limits = (need.requests, need.tokens);
        let tokens_cover = tok == 0 || b.tokens >= tok as i64;
        if b.requests >= req && tokens_cover {
            b.requests -= req;
            b.tokens -= tok as i64;
            return Ok(admission_of(b, need, now_ms));
        }
        // The slice grows while slices are used up: each holds twice as many requests'
        // worth (requests, and the tokens they would reserve at this request's cost) as
        // the one before.
        let want = b.want.clamp(1, MAX_SLICE);
        let on_hand = b.tokens.max(0) as u64;
        Err(Ask {
            requests: req.saturating_sub(b.requests),
            tokens: tok.saturating_sub(on_hand),
            debt: (-b.tokens).max(0) as u64,
            extra_requests: req * want,
            extra_tokens: tok.saturating_mul(want),
        })
    }

    /// Records a grant: when allowed, the request took its need from the local balance
    /// and the grant, and the extras are kept; the shared levels are kept for the
    /// headers. Returns the admission to answer with.
    pub fn granted(
        &mut self,
        tenant: &str,
        need: &Need,
        ask: &Ask,
        g: &Grant,
        now_ms: u64,
    ) -> Admission {
        let b = self.entry(tenant);
        b.used_at_ms = now_ms;
        if g.debt_charged {
            b.tokens += ask.debt as i64;
        }
        b.shared_requests = g.admission.requests.map(|s| s.remaining as f64);
        b.shared_tokens = g.admission.tokens.map(|s| s.remaining as f64);
        b.shared_at_ms = now_ms;
        if !g.admission.allowed {
            b.want = 1;
            return g.admission;
        }
        let (req, tok) = (need.req(), need.tok());
        // The request's need came partly from the balance and partly from the grant.
        b.requests = b.requests + ask.requests - req;
        b.tokens = b.tokens + ask.tokens as i64 - tok as i64;
        b.requests += g.extra_requests;
        b.tokens += g.extra_tokens as i64;
        let full = g.extra_requests >= ask.extra_requests && g.extra_tokens >= ask.extra_tokens;
        let want = b.want.clamp(1, MAX_SLICE);
        b.want = if full {
            (want * 2).min(MAX_SLICE)
        } else if req > 0 {
            g.extra_requests.clamp(1, MAX_SLICE)
        } else {
            (g.extra_tokens / tok.max(1)).clamp(1, MAX_SLICE)
        };
        admission_of(b, need, now_ms)
    }

    /// Settles a reservation with the real usage on the local balance.
    pub fn settle(&mut self, tenant: &str, reserved: u64, used: u64, now_ms: u64) {
        let b = self.entry(tenant);
        b.tokens += reserved as i64 - used as i64;
        b.used_at_ms = now_ms;
    }

    /// Takes the balances idle for [`HOLD`] (all of them with `all`), to give back.
    pub fn take_idle(&mut self, now_ms: u64, all: bool) -> Vec<GiveBack> {
        let hold = HOLD.as_millis() as u64;
        let idle: Vec<Arc<str>> = self
            .by_tenant
            .iter()
            .filter(|(_, b)| all || now_ms.saturating_sub(b.used_at_ms) >= hold)
            .map(|(t, _)| t.clone())
            .collect();
        idle.into_iter()
            .filter_map(|t| {
                let b = self.by_tenant.remove(&t)?;
                (b.requests > 0 || b.tokens != 0).then_some(GiveBack {
                    tenant: t,
                    requests: b.requests,
                    tokens: b.tokens,
                    requests_limit: b.limits.0,
                    tokens_limit: b.limits.1,
                })
            })
            .collect()
    }

    /// Puts back a give-back that could not be sent (the store was down).
    pub fn restore(&mut self, g: GiveBack, now_ms: u64) {
        let b = self.entry(&g.tenant);
        b.requests += g.requests;
        b.tokens += g.tokens;
        b.used_at_ms = now_ms;
        b.limits = (g.requests_limit, g.tokens_limit);
    }

    /// How many tenants hold a balance.
    pub fn len(&self) -> usize {
        self.by_tenant.len()
    }

    /// Whether no tenant holds a balance.
    pub fn is_empty(&self) -> bool {
        self.by_tenant.is_empty()
    }

    fn entry(&mut self, tenant: &str) -> &mut Balance {
        if !self.by_tenant.contains_key(tenant) {
            self.by_tenant.insert(Arc::from(tenant), Balance::default());
        }
        // Just inserted when missing.
        #[allow(clippy::unwrap_used)]
        self.by_tenant.get_mut(tenant).unwrap()
    }
}

/// The admission of a request served locally: the shared level as last seen, refilled
/// since, plus what this replica holds (other replicas' use since is not known: the
/// headers are exact to within the slices in flight).
fn admission_of(b: &Balance, need: &Need, now_ms: u64) -> Admission {
    let dt = now_ms.saturating_sub(b.shared_at_ms);
    let status = |shared: Option<f64>, local: f64, limit: Limit| {
        (!limit.is_unlimited()).then(|| {
            let refilled = Bucket {
                level: shared.unwrap_or(0.0),
                at_ms: 0,
            }
            .refilled(limit, dt);
            let level = (refilled + local).min(limit.per_minute as f64);
            BucketStatus {
                limit: limit.per_minute,
                remaining: level.max(0.0).floor() as u64,
                reset_ms: Bucket::reset_ms(level, limit),
            }
        })
    };
    Admission {
        allowed: true,
        refused_by: None,
        retry_after_ms: 0,
        requests: status(b.shared_requests, b.requests as f64, need.requests),
        tokens: status(b.shared_tokens, b.tokens as f64, need.tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(rpm: u64, tpm: u64, cost: u64) -> Need {
        Need {
            requests: Limit { per_minute: rpm },
            tokens: Limit { per_minute: tpm },
            token_cost: cost,
        }
    }

    fn grant(
        allowed: bool,
        req_left: u64,
        tok_left: Option<u64>,
        extra_r: u64,
        extra_t: u64,
    ) -> Grant {
        Grant {
            admission: Admission {
                allowed,
                refused_by: (!allowed).then_some("requests"),
                retry_after_ms: if allowed { 0 } else { 500 },
                requests: Some(BucketStatus {
                    limit: 100,
                    remaining: req_left,
                    reset_ms: 0,
                }),
                tokens: tok_left.map(|t| BucketStatus {
                    limit: 1000,
                    remaining: t,
                    reset_ms: 0,
                }),
            },
            extra_requests: extra_r,
            extra_tokens: extra_t,
            debt_charged: true,
        }
    }

    #[test]
    fn a_first_request_asks_and_a_grant_is_served_locally() {
        let mut l = Leases::new();
        let n = need(100, 0, 0);
        let ask = l.try_local("t", &n, 0).unwrap_err();
        assert_eq!((ask.requests, ask.extra_requests), (1, 1));
        // One for the request and 1 extra: 98 left in the shared bucket.
        let a = l.granted("t", &n, &ask, &grant(true, 98, None, 1, 0), 0);
        assert!(a.allowed);
        assert_eq!(a.requests.unwrap().remaining, 99, "98 shared + 1 held");
        let a = l
            .try_local("t", &n, 10)
            .expect("the extra covers the next one");
        assert_eq!(a.requests.unwrap().remaining, 98);
        let ask = l.try_local("t", &n, 20).unwrap_err();
        assert_eq!(ask.extra_requests, 2, "a used-up slice doubles");
    }

    #[test]
    fn slices_double_up_to_the_cap_and_shrink_to_the_grant() {
        let mut l = Leases::new();
        let n = need(1_000_000, 0, 0);
        let mut want = Vec::new();
        for _ in 0..36 {
            match l.try_local("t", &n, 0) {
                Ok(_) => {}
                Err(ask) => {
                    want.push(ask.extra_requests);
                    l.granted(
                        "t",
                        &n,
                        &ask,
                        &grant(true, 1000, None, ask.extra_requests, 0),
                        0,
                    );
                }
            }
        }
        assert_eq!(want, vec![1, 2, 4, 8, 16]);
        for _ in 0..20_000 {
            if let Err(ask) = l.try_local("t", &n, 0) {
                assert!(ask.extra_requests <= MAX_SLICE);
                // The bucket is nearly empty: nothing extra.
                l.granted("t", &n, &ask, &grant(true, 3, None, 0, 0), 0);
                let ask = l.try_local("t", &n, 0).unwrap_err();
                assert_eq!(
                    ask.extra_requests, 1,
                    "the slice shrinks to what was granted"
                );
                return;
            }
        }
        panic!("never asked again");
    }

    #[test]
    fn a_refusal_keeps_the_balance_and_resets_the_slice() {
        let mut l = Leases::new();
        let n = need(10, 0, 0);
        let ask = l.try_local("t", &n, 0).unwrap_err();
        let a = l.granted("t", &n, &ask, &grant(false, 0, None, 0, 0), 0);
        assert!(!a.allowed);
        assert_eq!(a.retry_after_ms, 500);
        let ask = l.try_local("t", &n, 1).unwrap_err();
        assert_eq!((ask.requests, ask.extra_requests), (1, 1));
    }

    #[test]
    fn tokens_come_from_the_balance_and_settle_on_it() {
        let mut l = Leases::new();
        let n = need(0, 1000, 60);
        let ask = l.try_local("t", &n, 0).unwrap_err();
        assert_eq!((ask.requests, ask.tokens, ask.extra_requests), (0, 60, 0));
        assert_eq!(ask.extra_tokens, 60);
        let a = l.granted("t", &n, &ask, &grant(true, 0, Some(880), 0, 60), 0);
        assert_eq!(a.tokens.unwrap().remaining, 940, "880 shared + 60 held");
        // Used 20 of the 60 reserved: 40 back to the balance.
        l.settle("t", 60, 20, 5);
        let a = l.try_local("t", &n, 6).expect("100 held covers 60");
        assert_eq!(a.tokens.unwrap().remaining, 880 + 40);
        // Used 200 of 60: a debt, charged with the next slice.
        l.settle("t", 60, 200, 7);
        let ask = l.try_local("t", &n, 8).unwrap_err();
        assert_eq!(ask.debt, 100);
        assert_eq!(ask.tokens, 60);
        l.granted("t", &n, &ask, &grant(true, 0, Some(700), 0, 0), 8);
        assert!(
            l.take_idle(8, true).is_empty(),
            "nothing held, nothing owed"
        );
    }

    #[test]
    fn idle_balances_go_back_and_come_back_when_the_store_is_down() {
        let mut l = Leases::new();
        let n = need(100, 0, 0);
        let ask = l.try_local("t", &n, 0).unwrap_err();
        l.granted("t", &n, &ask, &grant(true, 90, None, 5, 0), 0);
        assert!(l.take_idle(500, false).is_empty(), "used within the hold");
        let back = l.take_idle(1000, false);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].requests, back[0].tokens), (5, 0));
        assert!(l.is_empty());
        l.restore(back[0].clone(), 1000);
        assert!(l.try_local("t", &n, 1001).is_ok());
    }
}
