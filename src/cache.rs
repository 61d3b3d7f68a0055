//! The response cache's in-process side: entries (what is stored), flights (identical
//! cacheable requests in flight at once share one upstream call), and replay (answering
//! from an entry or a flight, as a stream or as a whole response).
//!
//! An entry is the upstream's complete 200 answer as it came: one kind byte (`J` JSON,
//! `S` SSE) then the body. A stream is stored with its usage chunk (the gateway asks for
//! it); replay removes it for clients that did not ask for it.

use std::collections::HashMap;
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

/// What a follower sees of a flight.
#[derive(Debug, Default)]
pub struct FlightState {
    /// The leader's response started: (status, streamed).
    pub started: Option<(u16, bool)>,
    /// Body chunks so far (the upstream's bytes, before any usage stripping).
    pub chunks: Vec<Bytes>,
    /// Bytes so far.
    pub bytes: usize,
    /// Set once the flight ended: `true` when the answer is complete and usable.
    pub done: Option<bool>,
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

impl Flight {
    /// Records the response start.
    pub fn start(&self, status: u16, streamed: bool) {
        self.state.lock().started = Some((status, streamed));
        self.changed.notify_waiters();
    }

    /// Records a body chunk; past the size limit the flight is abandoned.
    pub fn push(&self, chunk: &Bytes) {
        let over = {
            let mut st = self.state.lock();
            if st.done.is_some() {
                return;
            }
            st.bytes += chunk.len();
            if st.bytes > self.limit {
                st.done = Some(false);
                st.chunks.clear();
                true
            } else {
                st.chunks.push(chunk.clone());
                false
            }
        };
        let _ = over;
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

    /// Everything recorded so far, unless the flight was abandoned: (streamed, body).
    pub fn collect(&self) -> Option<(bool, Bytes)> {
        let st = self.state.lock();
        if st.done == Some(false) {
            return None;
        }
        let mut b = BytesMut::with_capacity(st.bytes);
        for c in &st.chunks {
            b.put_slice(c);
        }
        Some((st.started.is_some_and(|s| s.1), b.freeze()))
    }

    /// The whole body, once complete.
    pub fn body(&self) -> Option<(bool, Bytes)> {
        let st = self.state.lock();
        if st.done != Some(true) {
            return None;
        }
        let mut b = BytesMut::with_capacity(st.bytes);
        for c in &st.chunks {
            b.put_slice(c);
        }
        Some((st.started.is_some_and(|s| s.1), b.freeze()))
    }
}

/// Who a request is in its flight.
pub enum Role {
    /// Goes upstream and records the answer for the others.
    Leader(Arc<Flight>),
    /// Waits for the leader's answer.
    Follower(Arc<Flight>),
}

/// The flights of this process, by cache key.
#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Coalescer {
    /// Joins the flight for `key`, leading it if there is none. `limit` bounds the bytes
    /// a new flight records.
    pub fn join(&self, key: &str, limit: usize) -> Role {
        let mut f = self.flights.lock();
        if let Some(existing) = f.get(key) {
            // An abandoned or failed flight is not joined: start a new one.
            if existing.state.lock().done != Some(false) {
                return Role::Follower(existing.clone());
            }
        }
        let flight = Arc::new(Flight {
            limit,
            ..Flight::default()
        });
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

    #[test]
    fn flights_lead_follow_and_abandon() {
        let c = Coalescer::default();
        let Role::Leader(l) = c.join("k", 10) else {
            panic!("first leads")
        };
        let Role::Follower(f) = c.join("k", 10) else {
            panic!("second follows")
        };
        assert!(Arc::ptr_eq(&l, &f));
        l.start(200, false);
        l.push(&Bytes::from_static(b"12345"));
        assert!(l.body().is_none(), "not complete yet");
        l.finish(true);
        assert_eq!(l.body().unwrap().1, Bytes::from_static(b"12345"));
        c.leave("k", &l);
        assert!(c.is_empty());

        let Role::Leader(big) = c.join("b", 4) else {
            panic!()
        };
        big.push(&Bytes::from_static(b"12345"));
        assert_eq!(
            big.state.lock().done,
            Some(false),
            "over the limit: abandoned"
        );
        assert!(
            matches!(c.join("b", 4), Role::Leader(_)),
            "an abandoned flight is not joined"
        );
    }
}
