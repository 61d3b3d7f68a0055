//! The response cache's in-process side: entries (what is stored), flights (identical
//! cacheable requests in flight at once share one upstream call), and replay (answering
//! from an entry or a flight, as a stream or as a whole response).
//!
//! An entry is the upstream's complete 200 answer as it came: one kind byte (`J` JSON,
//! `S` SSE) then the body. A stream is stored with its usage chunk (the gateway asks for
//! it); replay removes it for clients that did not ask for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// How a stored answer is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole JSON response.
    Json,
    /// An SSE stream.
    Sse,
}

/// Encodes an entry.
pub fn encode(kind: Kind, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 1);
    b.put_u8(match kind {
        Kind::Json => b'J',
        Kind::Sse => b'S',
    });
    b.put_slice(body);
    b.freeze()
}

/// Decodes an entry.
pub fn decode(entry: &Bytes) -> Option<(Kind, Bytes)> {
    let kind = match entry.first()? {
        b'J' => Kind::Json,
        b'S' => Kind::Sse,
        _ => return None,
    };
    Some((kind, entry.slice(1..)))
}

/// What a flight holds: the leader's response as it arrives, for its followers and for
/// the cache entry.
///
/// While the response fits the cache's entry limit every chunk is kept (it becomes the
/// entry). Past the limit the flight stops being cacheable but keeps feeding the
/// followers already on it: a chunk is dropped once every follower has taken it, so a
/// stream of any size is shared whole while memory stays bounded by the slowest
/// follower's lag. A follower that falls more than [`MAX_LAG_BYTES`] behind is cut off
/// (it ends with an error event); a request arriving after chunks were dropped does not
/// join (it goes upstream itself).
#[derive(Debug, Default)]
pub struct FlightState {
    /// The leader's response started: (status, streamed).
    pub started: Option<(u16, bool)>,
    /// Chunks kept, the first being chunk number `base` of the response.
    chunks: VecDeque<Bytes>,
    /// Number of the first chunk kept.
    base: usize,
    /// Bytes in `chunks`.
    kept: usize,
    /// Bytes of the whole response so far.
    total: usize,
    /// Every chunk since the start is kept and within the entry limit.
    cacheable: bool,
    /// Each follower's next chunk number, by follower id.
    cursors: Vec<Cursor>,
    /// Followers cut off for lagging.
    lagged: Vec<u64>,
    next_id: u64,
    /// Set once the flight ended: `true` when the answer is complete and usable.
    pub done: Option<bool>,
}

/// A follower's id and the number of the next chunk it reads.
type Cursor = (u64, usize);

/// How far (bytes kept for it) a follower may fall behind the leader before it is cut
/// off.
pub const MAX_LAG_BYTES: usize = 64 * 1024 * 1024;

/// What a follower reads from its flight.
#[derive(Debug)]
pub enum Read {
    /// New chunks (maybe none) and whether the flight ended (`Some(true)`: complete).
    Chunks(Vec<Bytes>, Option<bool>),
    /// This follower fell too far behind and was cut off.
    Lagged,
}

/// One cacheable request in flight, which identical requests wait on.
#[derive(Debug, Default)]
pub struct Flight {
    /// The shared state.
    pub state: Mutex<FlightState>,
    /// Wakes followers on every change.
    pub changed: Notify,
    limit: usize,
}

/// A follower's place in a flight; leaving it (drop) lets the flight drop what only this
/// follower still needed.
pub struct Follower {
    flight: Arc<Flight>,
    id: u64,
}

impl Follower {
    /// The flight followed.
    pub fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// Takes the chunks that arrived since the last read.
    pub fn read(&self) -> Read {
        let mut st = self.flight.state.lock();
        if st.lagged.contains(&self.id) {
            return Read::Lagged;
        }
        let base = st.base;
        let end = base + st.chunks.len();
        let Some(pos) = st.cursors.iter().position(|c| c.0 == self.id) else {
            return Read::Lagged;
        };
        let from = st.cursors[pos].1.max(base);
        let fresh: Vec<Bytes> = st.chunks.range(from - base..).cloned().collect();
        st.cursors[pos].1 = end;
        let done = st.done;
        st.trim();
        Read::Chunks(fresh, done)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut st = self.flight.state.lock();
        st.cursors.retain(|c| c.0 != self.id);
        st.lagged.retain(|id| *id != self.id);
        st.trim();
    }
}

impl FlightState {
    /// Drops the chunks every follower has taken, once the flight is not cacheable.
    fn trim(&mut self) {
        if self.cacheable {
            return;
        }
        let end = self.base + self.chunks.len();
        let needed = self.cursors.iter().map(|c| c.1).min().unwrap_or(end);
        while self.base < needed {
            let Some(c) = self.chunks.pop_front() else {
                break;
            };
            self.kept -= c.len();
            self.base += 1;
        }
    }

    /// Cuts off the followers that hold the oldest kept chunk while too much is kept.
    fn shed_laggards(&mut self) {
        while self.kept > MAX_LAG_BYTES && !self.cacheable {
            let oldest = self.base;
            let (lag, keep): (Vec<Cursor>, Vec<Cursor>) =
                self.cursors.iter().partition(|c| c.1 <= oldest);
            if lag.is_empty() {
                break;
            }
            self.lagged.extend(lag.iter().map(|c| c.0));
            self.cursors = keep;
            self.trim();
        }
    }
}

impl Flight {
    /// A flight whose answer becomes a cache entry while it stays within `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(FlightState {
                cacheable: true,
                ..FlightState::default()
            }),
            changed: Notify::new(),
            limit,
        }
    }

    /// Records the response start.
    pub fn start(&self, status: u16, streamed: bool) {
        self.state.lock().started = Some((status, streamed));
        self.changed.notify_waiters();
    }

    /// Joins as a follower, from the first chunk. `None` once chunks were dropped: the
    /// beginning of the answer is gone.
    pub fn follow(self: &Arc<Self>) -> Option<Follower> {
        let mut st = self.state.lock();
        if st.base > 0 || st.done == Some(false) {
            return None;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.cursors.push((id, 0));
        Some(Follower {
            flight: self.clone(),
            id,
        })
    }

    /// Records a body chunk. Past the entry limit the flight is no longer cacheable, but
    /// its followers still get every chunk.
    pub fn push(&self, chunk: &Bytes) {
        {
            let mut st = self.state.lock();
            if st.done.is_some() {
                return;
            }
            st.total += chunk.len();
            st.kept += chunk.len();
            st.chunks.push_back(chunk.clone());
            if st.cacheable && st.total > self.limit {
                st.cacheable = false;
            }
            st.trim();
            st.shed_laggards();
        }
        self.changed.notify_waiters();
    }

    /// Ends the flight.
    pub fn finish(&self, ok: bool) {
        {
            let mut st = self.state.lock();
            if st.done.is_none() {
                st.done = Some(ok);
            }
        }
        self.changed.notify_waiters();
    }

    /// The whole answer for the cache entry, when the flight stayed cacheable:
    /// (streamed, body).
    pub fn collect(&self) -> Option<(bool, Bytes)> {
        let st = self.state.lock();
        if st.done == Some(false) || !st.cacheable {
            return None;
        }
        let mut b = BytesMut::with_capacity(st.total);
        for c in &st.chunks {
            b.put_slice(c);
        }
        Some((st.started.is_some_and(|s| s.1), b.freeze()))
    }

    /// Whether the flight ended without a usable answer.
    pub fn failed(&self) -> bool {
        self.state.lock().done == Some(false)
    }
}

/// Who a request is in its flight.
pub enum Role {
    /// Goes upstream and records the answer for the others.
    Leader(Arc<Flight>),
    /// Waits for the leader's answer.
    Follower(Follower),
}

/// The flights of this process, by cache key.
#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<String, Arc<Flight>, foldhash::fast::RandomState>>,
}

impl Coalescer {
    /// Joins the flight for `key`, leading it if there is none. `limit` bounds the bytes
    /// a new flight records.
    pub fn join(&self, key: &str, limit: usize) -> Role {
        let mut f = self.flights.lock();
        if let Some(existing) = f.get(key) {
            // A failed flight, or one that already dropped its beginning, is not joined:
            // start a new one.
            if let Some(follower) = existing.follow() {
                return Role::Follower(follower);
            }
        }
        let flight = Arc::new(Flight::new(limit));
        f.insert(key.to_string(), flight.clone());
        Role::Leader(flight)
    }

    /// Removes a finished flight (only if it is still the one for `key`).
    pub fn leave(&self, key: &str, flight: &Arc<Flight>) {
        let mut f = self.flights.lock();
        if f.get(key).is_some_and(|x| Arc::ptr_eq(x, flight)) {
            f.remove(key);
        }
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.flights.lock().len()
    }

    /// Whether no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = encode(Kind::Sse, b"data: x\n\n");
        assert_eq!(
            decode(&e),
            Some((Kind::Sse, Bytes::from_static(b"data: x\n\n")))
        );
        assert_eq!(decode(&Bytes::from_static(b"X")), None);
        assert_eq!(decode(&Bytes::new()), None);
    }

    fn chunks(r: Read) -> (Vec<Bytes>, Option<bool>) {
        match r {
            Read::Chunks(c, d) => (c, d),
            Read::Lagged => panic!("lagged"),
        }
    }

    #[test]
    fn flights_lead_follow_and_fail() {
        let c = Coalescer::default();
        let Role::Leader(l) = c.join("k", 10) else {
            panic!("first leads")
        };
        let Role::Follower(f) = c.join("k", 10) else {
            panic!("second follows")
        };
        assert!(Arc::ptr_eq(&l, f.flight()));
        l.start(200, false);
        l.push(&Bytes::from_static(b"12345"));
        assert_eq!(chunks(f.read()), (vec![Bytes::from_static(b"12345")], None));
        l.finish(true);
        assert_eq!(chunks(f.read()), (vec![], Some(true)));
        assert_eq!(l.collect().unwrap().1, Bytes::from_static(b"12345"));
        c.leave("k", &l);
        assert!(c.is_empty());

        let Role::Leader(bad) = c.join("b", 4) else {
            panic!()
        };
        bad.finish(false);
        assert!(bad.failed());
        assert!(
            matches!(c.join("b", 4), Role::Leader(_)),
            "a failed flight is not joined"
        );
    }

    #[test]
    fn followers_get_a_stream_larger_than_the_entry_limit() {
        let c = Coalescer::default();
        let Role::Leader(l) = c.join("k", 4) else {
            panic!()
        };
        let Role::Follower(a) = c.join("k", 4) else {
            panic!()
        };
        let Role::Follower(b) = c.join("k", 4) else {
            panic!()
        };
        l.start(200, true);
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        for i in 0..100u8 {
            l.push(&Bytes::from(vec![i; 10]));
            got_a.extend(chunks(a.read()).0);
            if i % 10 == 9 {
                got_b.extend(chunks(b.read()).0);
            }
        }
        l.finish(true);
        let (rest, done) = chunks(b.read());
        got_b.extend(rest);
        assert_eq!(done, Some(true));
        assert_eq!(got_a.len(), 100);
        assert_eq!(got_b, got_a, "both followers got every chunk in order");
        assert!(l.collect().is_none(), "too large for the cache");
        let st = l.state.lock();
        assert_eq!(st.kept, 0, "chunks everyone took are dropped");
        drop(st);
        assert!(
            matches!(c.join("k", 4), Role::Leader(_)),
            "a request arriving after chunks were dropped goes upstream itself"
        );
    }

    #[test]
    fn a_follower_too_far_behind_is_cut_off() {
        let l = Arc::new(Flight::new(1));
        let slow = l.follow().unwrap();
        let fast = l.follow().unwrap();
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..(MAX_LAG_BYTES / chunk.len() + 2) {
            l.push(&chunk);
            chunks(fast.read());
        }
        assert!(matches!(slow.read(), Read::Lagged));
        assert!(l.state.lock().kept <= MAX_LAG_BYTES);
        drop(slow);
        assert!(matches!(fast.read(), Read::Chunks(..)));
    }
}
