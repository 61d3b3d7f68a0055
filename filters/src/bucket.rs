//! Token buckets for per-tenant rate limits, as pure functions of (state, now).
//!
//! A bucket holds up to `capacity` units and refills continuously at `capacity` per
//! minute. A request takes 1 unit from the request bucket and its token estimate from the
//! token bucket, both or neither. After the response the token bucket is settled with
//! the real usage (refund or extra charge). The in-memory store runs these functions; the
//! Redis store runs `src/store/ratelimit.lua`, which implements the same arithmetic with
//! the server's clock (and the shared tests check both agree).

/// One bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Units available (may be negative after a settlement charged more than reserved).
    pub level: f64,
    /// When `level` was computed, ms.
    pub at_ms: u64,
}

/// A limit: capacity per minute (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// Units per minute; also the burst size.
    pub per_minute: u64,
}

impl Limit {
    /// Whether this limit is off.
    pub fn is_unlimited(self) -> bool {
        self.per_minute == 0
    }

    fn rate_per_ms(self) -> f64 {
        self.per_minute as f64 / 60_000.0
    }
}

impl Bucket {
    /// A full bucket.
    pub fn full(limit: Limit, now_ms: u64) -> Self {
        Self {
            level: limit.per_minute as f64,
            at_ms: now_ms,
        }
    }

    /// The level now, after refilling since `at_ms`.
    pub fn refilled(self, limit: Limit, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        (self.level + dt * limit.rate_per_ms()).min(limit.per_minute as f64)
    }

    /// Milliseconds until `cost` units are available from `level` (0 if they are).
    pub fn wait_ms(level: f64, cost: f64, limit: Limit) -> u64 {
        if level >= cost || limit.is_unlimited() {
            0
        } else {
            ((cost - level) / limit.rate_per_ms()).ceil() as u64
        }
    }

    /// Milliseconds until the bucket is full again.
    pub fn reset_ms(level: f64, limit: Limit) -> u64 {
        Self::wait_ms(level, limit.per_minute as f64, limit)
    }
}

/// The outcome for one bucket, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketStatus {
    /// The limit per minute.
    pub limit: u64,
    /// Whole units left after this request.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// The decision on a request against both buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Whether the request may proceed (both buckets had room).
    pub allowed: bool,
    /// Which bucket refused: `requests` or `tokens`.
    pub refused_by: Option<&'static str>,
    /// Milliseconds until a retry can succeed (when refused).
    pub retry_after_ms: u64,
    /// The request bucket (absent when unlimited).
    pub requests: Option<BucketStatus>,
    /// The token bucket (absent when unlimited).
    pub tokens: Option<BucketStatus>,
}

/// Takes 1 from the request bucket and `token_cost` from the token bucket, both or
/// neither. Missing buckets start full. The token cost is capped at the token capacity
/// so that one large `max_tokens` can still pass an empty-enough bucket. Returns the new
/// states (unchanged levels, refreshed, when refused) and the decision.
pub fn admit(
    req: (Option<Bucket>, Limit),
    tok: (Option<Bucket>, Limit, u64),
    now_ms: u64,
) -> (Option<Bucket>, Option<Bucket>, Admission) {
    let (rb, rl) = req;
    let (tb, tl, cost) = tok;
    let r_level =
        (!rl.is_unlimited()).then(|| rb.unwrap_or(Bucket::full(rl, now_ms)).refilled(rl, now_ms));
    let t_cost = cost.min(tl.per_minute) as f64;
    let t_level =
        (!tl.is_unlimited()).then(|| tb.unwrap_or(Bucket::full(tl, now_ms)).refilled(tl, now_ms));
    let r_wait = r_level.map_or(0, |l| Bucket::wait_ms(l, 1.0, rl));
    let t_wait = t_level.map_or(0, |l| Bucket::wait_ms(l, t_cost, tl));
    let allowed = r_wait == 0 && t_wait == 0;
    let (r_after, t_after) = if allowed {
        (r_level.map(|l| l - 1.0), t_level.map(|l| l - t_cost))
    } else {
        (r_level, t_level)
    };
    let status = |level: f64, limit: Limit| BucketStatus {
        limit: limit.per_minute,
        remaining: level.max(0.0).floor() as u64,
        reset_ms: Bucket::reset_ms(level, limit),
    };
    let adm = Admission {
        allowed,
        refused_by: if allowed {
            None
        } else if r_wait > 0 {
            Some("requests")
        } else {
            Some("tokens")
        },
        retry_after_ms: r_wait.max(t_wait),
        requests: r_after.map(|l| status(l, rl)),
        tokens: t_after.map(|l| status(l, tl)),
    };
    let nb = |l: Option<f64>| {
        l.map(|level| Bucket {
            level,
            at_ms: now_ms,
        })
    };
    (nb(r_after), nb(t_after), adm)
}

/// Settles the token bucket once the real usage is known: gives back what was reserved
/// and charges what was used (`level += reserved - used`, capped at the capacity).
pub fn settle(
    b: Option<Bucket>,
    limit: Limit,
    reserved: u64,
    used: u64,
    now_ms: u64,
) -> Option<Bucket> {
    if limit.is_unlimited() {
        return None;
    }
    let level = b
        .unwrap_or(Bucket::full(limit, now_ms))
        .refilled(limit, now_ms);
    let reserved = reserved.min(limit.per_minute) as f64;
    Some(Bucket {
        level: (level + reserved - used as f64).min(limit.per_minute as f64),
        at_ms: now_ms,
    })
}

/// OpenAI's reset format: `250ms`, `1s`, `1.5s` (tenths rounded half up), `6m0s`. On
/// the stack: it goes out in two headers of every limited response.
pub fn format_reset(ms: u64) -> arrayvec::ArrayString<48> {
    let mut out = arrayvec::ArrayString::new();
    let mut num = |n: u64, unit: &str| {
        // At most 20 digits and a unit: never more than the capacity.
        let _ = out.try_push_str(itoa::Buffer::new().format(n));
        let _ = out.try_push_str(unit);
    };
    if ms < 1000 {
        num(ms, "ms");
    } else if ms < 60_000 {
        if ms % 1000 == 0 {
            num(ms / 1000, "s");
        } else {
            let tenths = (ms + 50) / 100;
            num(tenths / 10, ".");
            num(tenths % 10, "s");
        }
    } else {
        let secs = ms.div_ceil(1000);
        num(secs / 60, "m");
        num(secs % 60, "s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RL: Limit = Limit { per_minute: 3 };
    const TL: Limit = Limit { per_minute: 100 };

    #[test]
    fn takes_until_empty_then_refuses_with_retry_after() {
        let (mut r, mut t) = (None, None);
        for i in 0..3 {
            let (nr, nt, a) = admit((r, RL), (t, TL, 10), 1_000);
            assert!(a.allowed, "request {i}");
            assert_eq!(a.requests.unwrap().remaining, 2 - i);
            (r, t) = (nr, nt);
        }
        let (nr, _, a) = admit((r, RL), (t, TL, 10), 1_000);
        assert!(!a.allowed);
        assert_eq!(a.refused_by, Some("requests"));
        assert_eq!(a.retry_after_ms, 20_000, "one request per 20 s");
        // refilled after the wait
        let (_, _, a) = admit((nr, RL), (t, TL, 10), 21_000);
        assert!(a.allowed);
    }

    #[test]
    fn both_or_neither() {
        let (r, t, a) = admit((None, RL), (None, TL, 95), 0);
        assert!(a.allowed);
        let (r2, t2, a) = admit((r, RL), (t, TL, 10), 0);
        assert!(!a.allowed);
        assert_eq!(a.refused_by, Some("tokens"));
        assert_eq!(
            r2.unwrap().level,
            2.0,
            "the request unit is not taken when tokens refuse"
        );
        assert_eq!(t2.unwrap().level, 5.0);
    }

    #[test]
    fn settle_refunds_and_charges() {
        let (_, t, _) = admit((None, Limit::default()), (None, TL, 50), 0);
        assert_eq!(t.unwrap().level, 50.0);
        let t2 = settle(t, TL, 50, 20, 0).unwrap();
        assert_eq!(t2.level, 80.0);
        let t3 = settle(t, TL, 50, 120, 0).unwrap();
        assert_eq!(t3.level, -20.0, "over-use goes into debt");
        assert_eq!(settle(t, TL, 0, 0, 0).unwrap().level, 50.0);
        assert_eq!(settle(None, Limit::default(), 1, 1, 0), None);
    }

    #[test]
    fn unlimited_buckets_are_absent() {
        let (r, t, a) = admit(
            (None, Limit::default()),
            (None, Limit::default(), 1_000_000),
            0,
        );
        assert!(a.allowed);
        assert!(r.is_none() && t.is_none() && a.requests.is_none() && a.tokens.is_none());
    }

    #[test]
    fn big_cost_is_capped() {
        let (_, _, a) = admit((None, RL), (None, TL, 10_000), 0);
        assert!(a.allowed);
        assert_eq!(a.tokens.unwrap().remaining, 0);
    }

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(250).as_str(), "250ms");
        assert_eq!(format_reset(1000).as_str(), "1s");
        assert_eq!(format_reset(1500).as_str(), "1.5s");
        assert_eq!(format_reset(1449).as_str(), "1.4s");
        assert_eq!(format_reset(1999).as_str(), "2.0s");
        assert_eq!(format_reset(59_999).as_str(), "60.0s");
        assert_eq!(format_reset(360_000).as_str(), "6m0s");
        assert_eq!(format_reset(60_001).as_str(), "1m1s");
        assert_eq!(format_reset(u64::MAX).as_str(), "307445734561825m52s");
    }
}
