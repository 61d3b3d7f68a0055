//! What a replica knows of the shared response cache without asking Redis: which keys
//! exist (and until when), and the answers of the hot ones. With it a cache miss needs no
//! lookup call, and a repeated hit is answered from memory.
//!
//! Every store of an answer announces its key and TTL on a Pub/Sub channel (`PUBLISH`
//! inside the store script, so writer and announcement are one atomic call); each
//! replica subscribes and records the keys. Only while the subscription is up, and after
//! a `SCAN` of the keys that existed before it, is the index *synced*: then a key that is
//! not in it is not in Redis, and the lookup is answered [`Lookup::Absent`] locally.
//! Otherwise (starting, reconnecting) an unknown key is [`Lookup::Unknown`] and the
//! caller asks Redis, as it would without the mirror.
//!
//! Mistakes stay on the safe side: a key in the index that Redis evicted or expired
//! early makes one lookup that misses; an announcement that arrives after a request
//! looked makes one miss that would have been a hit. An answer held here is served only
//! until the TTL it was stored with.
//!
//! The index holds a 128-bit id per key: the first 128 bits of the key's SHA-256 digest,
//! mixed with a hash of its scope (two keys share an id only if their digests agree in
//! 128 bits, which no one can arrange, so a held answer is never another key's), at
//! most `max_keys` of them: when it is full the oldest key is forgotten, and
//! a request for it is a miss (the upstream answers and the entry is stored again).
//! Expired keys go in order from an expiry queue, a few at a time, never by a scan of
//! the whole index. Answers are held within a byte budget, oldest out first; an evicted
//! answer leaves its key in the index.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

/// What the mirror knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in Redis (the index is synced and does not have it).
    Absent,
    /// In Redis, with this answer, held here.
    Hit(Bytes),
    /// Not known here: ask Redis.
    Unknown,
}

/// A key's id in the index ([`id_of`]).
type Id = u128;

#[derive(Debug)]
struct Entry {
    expires_ms: u64,
    value: Option<Bytes>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    // Ids are digests: a fast seeded hash is enough.
    index: HashMap<Id, Entry, foldhash::fast::RandomState>,
    /// Keys whose answer is held, oldest first, with the sequence number of the insert
    /// (a stale position is skipped).
    held: VecDeque<(Id, u64)>,
    /// (expiry, key) in the order they were recorded: the oldest first. An item whose
    /// key was recorded again since (another expiry) is stale and skipped.
    expiries: VecDeque<(u64, Id)>,
    bytes: usize,
    seq: u64,
    /// Bumped whenever knowledge was lost (the subscription), so a resync that started
    /// before does not mark the index synced.
    losses: u64,
}

/// The cache mirror of one replica.
#[derive(Debug)]
pub struct CacheMirror {
    inner: Mutex<Inner>,
    synced: AtomicBool,
    max_keys: usize,
    max_bytes: usize,
}

/// The index id of a cache key, `{scope}:<64 hex digits>` as `cachekey::scoped_key`
/// builds it: the digest's first 128 bits, with a hash of the scope in the upper half
/// (the digest does not cover the scope). Anything else (not a store key) gets a
/// 128-bit hash of the whole string.
fn id_of(key: &str) -> Id {
    if let Some((scope, hex)) = key.rsplit_once(':') {
        if let (64, Some(d)) = (hex.len(), hex.get(..32).and_then(hex128)) {
            return d ^ (Id::from(sip(0, scope)) << 64);
        }
    }
    (Id::from(sip(1, key)) << 64) | Id::from(sip(2, key))
}

/// 32 lowercase or uppercase hex digits, strictly (no sign, no other byte).
fn hex128(h: &str) -> Option<Id> {
    h.bytes().try_fold(0 as Id, |acc, c| {
        let v = (c as char).to_digit(16)?;
        Some((acc << 4) | Id::from(v))
    })
}

fn sip(domain: u8, s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    domain.hash(&mut h);
    s.hash(&mut h);
    h.finish()
}

impl CacheMirror {
    /// An empty, unsynced mirror of at most `max_keys` keys and `max_bytes` of answers.
    pub fn new(max_keys: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            synced: AtomicBool::new(false),
            max_keys,
            max_bytes,
        }
    }

    /// What is known of `key` at `now_ms`.
    pub fn lookup(&self, key: &str, now_ms: u64) -> Lookup {
        let h = id_of(key);
        let synced = self.synced.load(Ordering::Acquire);
        let inner = self.inner.lock();
        match inner.index.get(&h) {
            Some(e) if e.expires_ms > now_ms => match &e.value {
                Some(v) => Lookup::Hit(v.clone()),
                None => Lookup::Unknown,
            },
            _ if synced => Lookup::Absent,
            _ => Lookup::Unknown,
        }
    }

    /// Records that `key` exists for `ttl_ms` more (an announcement, or a key found by
    /// the resync). An answer already held is kept.
    pub fn announce(&self, key: &str, ttl_ms: u64, now_ms: u64) {
        let h = id_of(key);
        let mut inner = self.inner.lock();
        if !inner.index.contains_key(&h) {
            self.make_room(&mut inner, now_ms);
        }
        let seq = inner.seq;
        let expires = now_ms.saturating_add(ttl_ms);
        let e = inner.index.entry(h).or_insert(Entry {
            expires_ms: 0,
            value: None,
            seq,
        });
        e.expires_ms = expires;
        Self::queue_expiry(&mut inner, expires, h);
    }

    /// Holds `value` as the answer of `key` for `ttl_ms` (stored by this replica, or read
    /// from Redis with its remaining TTL).
    pub fn hold(&self, key: &str, value: Bytes, ttl_ms: u64, now_ms: u64) {
        if value.len() > self.max_bytes {
            self.announce(key, ttl_ms, now_ms);
            return;
        }
        let h = id_of(key);
        let mut inner = self.inner.lock();
        if !inner.index.contains_key(&h) {
            self.make_room(&mut inner, now_ms);
        }
        inner.seq += 1;
        let seq = inner.seq;
        let len = value.len();
        let expires = now_ms.saturating_add(ttl_ms);
        let old = inner.index.insert(
            h,
            Entry {
                expires_ms: expires,
                value: Some(value),
                seq,
            },
        );
        Self::queue_expiry(&mut inner, expires, h);
        if let Some(v) = old.and_then(|e| e.value) {
            inner.bytes -= v.len();
        }
        inner.bytes += len;
        inner.held.push_back((h, seq));
        while inner.bytes > self.max_bytes {
            let Some((k, s)) = inner.held.pop_front() else {
                break;
            };
            if let Some(e) = inner.index.get_mut(&k) {
                if e.seq == s {
                    if let Some(v) = e.value.take() {
                        inner.bytes -= v.len();
                    }
                }
            }
        }
        if inner.held.len() > 2 * inner.index.len() + 1024 {
            let Inner { held, index, .. } = &mut *inner;
            held.retain(|(k, s)| {
                index
                    .get(k)
                    .is_some_and(|e| e.seq == *s && e.value.is_some())
            });
        }
    }

    /// Drops expired keys (and their answers), oldest first, stopping at the first
    /// that has not expired.
    pub fn purge(&self, now_ms: u64) {
        let mut inner = self.inner.lock();
        Self::drop_expired(&mut inner, now_ms);
    }

    fn queue_expiry(inner: &mut Inner, expires: u64, h: Id) {
        inner.expiries.push_back((expires, h));
        if inner.expiries.len() > 2 * inner.index.len() + 1024 {
            let Inner {
                expiries, index, ..
            } = inner;
            expiries.retain(|(exp, k)| index.get(k).is_some_and(|e| e.expires_ms == *exp));
        }
    }

    /// Removes the key of a queue item if the item is its latest record.
    fn remove_if_latest(inner: &mut Inner, exp: u64, h: Id) -> bool {
        if inner.index.get(&h).is_none_or(|e| e.expires_ms != exp) {
            return false;
        }
        if let Some(v) = inner.index.remove(&h).and_then(|e| e.value) {
            inner.bytes -= v.len();
        }
        true
    }

    fn drop_expired(inner: &mut Inner, now_ms: u64) {
        while let Some(&(exp, h)) = inner.expiries.front() {
            if exp > now_ms {
                break;
            }
            inner.expiries.pop_front();
            Self::remove_if_latest(inner, exp, h);
        }
    }

    /// Room for a new key: expired keys go first; if the index is still full, the
    /// oldest key is forgotten (a request for it is then a miss).
    fn make_room(&self, inner: &mut Inner, now_ms: u64) {
        if inner.index.len() < self.max_keys {
            return;
        }
        Self::drop_expired(inner, now_ms);
        while inner.index.len() >= self.max_keys {
            let Some((exp, h)) = inner.expiries.pop_front() else {
                break;
            };
            Self::remove_if_latest(inner, exp, h);
        }
        let Inner { held, index, .. } = inner;
        if held.len() > 2 * index.len() + 1024 {
            held.retain(|(k, s)| index.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// The subscription was lost (or is not up yet): unknown keys must be asked for.
    /// Returns the loss count a later [`Self::mark_synced`] must match.
    pub fn desync(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.losses += 1;
        self.synced.store(false, Ordering::Release);
        inner.losses
    }

    /// A resync that began at loss count `losses` (subscription up, then every key
    /// scanned) is complete: unless knowledge was lost since, the index is synced.
    pub fn mark_synced(&self, losses: u64) -> bool {
        let inner = self.inner.lock();
        let ok = inner.losses == losses;
        if ok {
            self.synced.store(true, Ordering::Release);
        }
        ok
    }

    /// Whether absence in the index means absence in Redis.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many keys the index records.
    pub fn len(&self) -> usize {
        self.inner.lock().index.len()
    }

    /// Whether the index records no key.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().index.is_empty()
    }

    /// (keys, answers held, bytes held). Counts the answers: O(keys), for tests and
    /// diagnostics, not the hot path.
    pub fn stats(&self) -> (usize, usize, usize) {
        let inner = self.inner.lock();
        let held = inner.index.values().filter(|e| e.value.is_some()).count();
        (inner.index.len(), held, inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn ids_are_the_digest_per_scope() {
        let d = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let (a, b2) = (format!("{{t1}}:{d}"), format!("{{t2}}:{d}"));
        assert_ne!(id_of(&a), id_of(&b2), "the scope is part of the id");
        assert_eq!(
            id_of(&a) as u64,
            0x0123456789abcdef,
            "the digest's bits are the id's"
        );
        let other = format!("{{t1}}:f{}", &d[1..]);
        assert_ne!(id_of(&a), id_of(&other));
        // Not a store key (a sign, a short digest): a hash of the whole string.
        let signed = format!("{{t1}}:+{}", &d[1..]);
        assert_ne!(id_of(&signed), id_of(&a));
        assert_ne!(id_of("{t1}:abc"), id_of("{t1}:abd"));
        let m = CacheMirror::new(16, 1 << 20);
        m.hold(&a, b("one"), 1000, 0);
        m.hold(&b2, b("two"), 1000, 0);
        assert_eq!(m.lookup(&a, 1), Lookup::Hit(b("one")));
        assert_eq!(m.lookup(&b2, 1), Lookup::Hit(b("two")));
    }

    #[test]
    fn unknown_until_synced_then_absent() {
        let m = CacheMirror::new(100, 1000);
        assert_eq!(m.lookup("{t}:a", 0), Lookup::Unknown);
        let l = m.desync();
        m.announce("{t}:b", 1000, 0);
        assert!(m.mark_synced(l));
        assert_eq!(m.lookup("{t}:a", 1), Lookup::Absent);
        assert_eq!(
            m.lookup("{t}:b", 1),
            Lookup::Unknown,
            "present, answer not held"
        );
        assert_eq!(m.lookup("{t}:b", 1000), Lookup::Absent, "expired");
    }

    #[test]
    fn held_answers_are_served_until_their_ttl_even_unsynced() {
        let m = CacheMirror::new(100, 1000);
        m.hold("{t}:a", b("answer"), 500, 0);
        assert_eq!(m.lookup("{t}:a", 499), Lookup::Hit(b("answer")));
        assert_eq!(m.lookup("{t}:a", 500), Lookup::Unknown);
        // An announcement of a key whose answer is held keeps it, with the new TTL.
        m.announce("{t}:a", 1000, 100);
        assert_eq!(m.lookup("{t}:a", 900), Lookup::Hit(b("answer")));
    }

    #[test]
    fn a_loss_during_a_resync_keeps_it_unsynced() {
        let m = CacheMirror::new(100, 1000);
        let l = m.desync();
        m.desync();
        assert!(!m.mark_synced(l));
        assert!(!m.is_synced());
    }

    #[test]
    fn answers_beyond_the_budget_go_oldest_first_keys_stay() {
        let m = CacheMirror::new(100, 10);
        let l = m.desync();
        m.mark_synced(l);
        m.hold("{t}:a", b("12345"), 1000, 0);
        m.hold("{t}:b", b("12345"), 1000, 0);
        m.hold("{t}:c", b("123"), 1000, 0);
        assert_eq!(
            m.lookup("{t}:a", 1),
            Lookup::Unknown,
            "answer evicted, key kept"
        );
        assert_eq!(m.lookup("{t}:b", 1), Lookup::Hit(b("12345")));
        assert_eq!(m.stats(), (3, 2, 8));
        m.hold("{t}:big", Bytes::from(vec![0u8; 11]), 1000, 0);
        assert_eq!(
            m.lookup("{t}:big", 1),
            Lookup::Unknown,
            "too big to hold, known"
        );
        m.purge(1000);
        assert_eq!(m.stats(), (0, 0, 0));
    }

    #[test]
    fn a_full_index_drops_expired_keys_then_forgets_the_oldest() {
        let m = CacheMirror::new(2, 1000);
        let l = m.desync();
        m.mark_synced(l);
        m.announce("{t}:a", 10, 0);
        m.announce("{t}:b", 1000, 0);
        m.announce("{t}:c", 1000, 20);
        assert_eq!(m.stats().0, 2, "the expired key made room");
        m.announce("{t}:d", 1000, 30);
        assert!(m.is_synced(), "a full index stays synced");
        assert_eq!(
            m.lookup("{t}:b", 31),
            Lookup::Absent,
            "the oldest key is forgotten"
        );
        assert_eq!(m.lookup("{t}:c", 31), Lookup::Unknown);
        assert_eq!(m.lookup("{t}:d", 31), Lookup::Unknown);
    }

    #[test]
    fn purging_goes_by_the_expiry_queue_and_keeps_re_recorded_keys() {
        let m = CacheMirror::new(100, 1000);
        m.announce("{t}:a", 10, 0);
        m.announce("{t}:b", 10, 0);
        // Recorded again with a later expiry: the first record is stale.
        m.announce("{t}:a", 100, 5);
        m.purge(50);
        assert_eq!(m.stats().0, 1);
        m.hold("{t}:a", b("v"), 10, 60);
        m.purge(200);
        assert_eq!(m.stats(), (0, 0, 0));
        for i in 0..5000 {
            m.announce("{t}:same", 1000, i);
        }
        assert!(
            m.inner.lock().expiries.len() <= 1026,
            "stale records are compacted"
        );
    }

    #[test]
    fn re_held_answers_account_bytes_once() {
        let m = CacheMirror::new(100, 100);
        for _ in 0..10_000 {
            m.hold("{t}:a", b("0123456789"), 1000, 0);
        }
        assert_eq!(m.stats(), (1, 1, 10));
        assert!(m.inner.lock().held.len() <= 1026);
    }
}
