// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Switchyard patch (see vendor/PATCHES.md): a cap on the open connections of a
//! listening service.
//!
//! Every accepted connection holds a [`ConnectionPermit`] for as long as it is open. When
//! the cap is reached, a new connection is answered with the configured refusal (for
//! example an HTTP 503 with `Connection: close`) and closed, and counted; at most
//! [`MAX_REFUSING`] refusals are written at a time, beyond that a connection is closed
//! at once. No client can exhaust file descriptors or memory by opening connections.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Refusals being written at once; more connections over the cap are closed unanswered.
pub const MAX_REFUSING: usize = 64;

/// The cap on a service's open connections, and its counters.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    refused: AtomicU64,
    refusal: Bytes,
}

/// Held by an open connection; releases its slot when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionLimit>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Held while a refusal is being written.
#[derive(Debug)]
pub struct RefusalPermit(Arc<ConnectionLimit>);

impl Drop for RefusalPermit {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RefusalPermit {
    /// The bytes to write to the refused connection before closing it.
    pub fn refusal(&self) -> &Bytes {
        &self.0.refusal
    }
}

/// What to do with a connection just accepted.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; the permit travels with the connection.
    Serve(ConnectionPermit),
    /// Over the cap: write the refusal, then close.
    Refuse(RefusalPermit),
    /// Over the cap and too many refusals in progress: close at once.
    Drop,
}

impl ConnectionLimit {
    /// A cap of `max` open connections (at least 1). `refusal` is written verbatim to a
    /// connection over the cap (empty: close without writing).
    pub fn new(max: usize, refusal: Bytes) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            refusal,
        })
    }

    /// Decides about one accepted connection.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut cur = self.open.load(Ordering::Acquire);
        while cur < self.max {
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Admission::Serve(ConnectionPermit(self.clone())),
                Err(now) => cur = now,
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        if self.refusal.is_empty() || self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING
        {
            if !self.refusal.is_empty() {
                self.refusing.fetch_sub(1, Ordering::AcqRel);
            }
            return Admission::Drop;
        }
        Admission::Refuse(RefusalPermit(self.clone()))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_frees_on_drop() {
        let l = ConnectionLimit::new(2, Bytes::from_static(b"no"));
        let a = l.admit();
        let b = l.admit();
        assert!(matches!(a, Admission::Serve(_)));
        assert!(matches!(b, Admission::Serve(_)));
        assert_eq!(l.open(), 2);
        let c = l.admit();
        assert!(matches!(&c, Admission::Refuse(r) if r.refusal() == "no"));
        assert_eq!(l.refused(), 1);
        drop(a);
        assert_eq!(l.open(), 1);
        assert!(matches!(l.admit(), Admission::Serve(_)));
        drop(c);
        assert_eq!(l.refusing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn refusals_are_bounded() {
        let l = ConnectionLimit::new(1, Bytes::from_static(b"no"));
        let _held = l.admit();
        let mut refusing = Vec::new();
        for _ in 0..MAX_REFUSING {
            let a = l.admit();
            assert!(matches!(a, Admission::Refuse(_)));
            refusing.push(a);
        }
        assert!(matches!(l.admit(), Admission::Drop));
        assert_eq!(l.refused(), MAX_REFUSING as u64 + 1);
        refusing.clear();
        assert!(matches!(l.admit(), Admission::Refuse(_)));
    }

    #[test]
    fn empty_refusal_drops() {
        let l = ConnectionLimit::new(1, Bytes::new());
        let _held = l.admit();
        assert!(matches!(l.admit(), Admission::Drop));
        assert_eq!(l.refusing.load(Ordering::Acquire), 0);
    }
}
