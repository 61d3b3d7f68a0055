//! The store's background work: following the cache announcements (subscription,
//! resync, backoff), writing answers in batches behind the responses, giving back idle
//! slices and purging expired keys.

use std::time::Duration;

use futures_util::StreamExt;
use pingora_core::server::ShutdownWatch;

use super::sliced::tag_of;
use super::{Call, PendingWrite, RedisStore, MAX_BATCH};
use crate::store::mirror::CacheMirror;
use crate::store::{Store, StoreError};

impl RedisStore {
    /// Subscribes to the announcements, then scans the keys that existed before, and
    /// marks the mirror synced (unless knowledge was lost meanwhile).
    async fn follow(&self, m: &CacheMirror) -> Result<redis::aio::PubSubStream, StoreError> {
        let losses = m.desync();
        self.calls[Call::Mirror as usize].inc();
        let mut ps = tokio::time::timeout(self.timeout * 4, self.client.get_async_pubsub())
            .await
            .map_err(|_| StoreError::Unavailable("subscribe timed out".into()))?
            .map_err(|e| self.fail(e))?;
        ps.subscribe(&self.channel)
            .await
            .map_err(|e| self.fail(e))?;
        let stream = ps.into_on_message();
        let pattern = self.k("cache:*");
        let strip = self.prefix.len() + "cache:".len();
        let max_ttl = self.mirror_ttl_ms;
        let mut c = self.conn_any(Call::Mirror).await?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(|e| self.fail(e))?;
            let now = self.now_ms();
            for k in &keys {
                if let Some(key) = k.get(strip..) {
                    m.announce(key, max_ttl, now);
                }
            }
            if next == 0 {
                break;
            }
            self.calls[Call::Mirror as usize].inc();
            cursor = next;
        }
        m.mark_synced(losses);
        self.mirror_keys.set(m.len() as i64);
        self.mirror_synced.set(i64::from(m.is_synced()));
        Ok(stream)
    }

    fn on_announcement(&self, m: &CacheMirror, msg: &redis::Msg) {
        let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
            return;
        };
        let mut lines = text.lines();
        if lines.next() == Some(self.origin.as_str()) {
            // Our own stores: already held.
            return;
        }
        let now = self.now_ms();
        for line in lines {
            if let Some((ttl, key)) = line.split_once(' ') {
                if let Ok(ttl) = ttl.parse::<u64>() {
                    m.announce(key, ttl, now);
                }
            }
        }
    }

    /// Writes the queued answers in batches (one `store.lua` call per batch and hash
    /// tag): the first answer queued waits `write_window` for others, then everything
    /// queued is written; what is queued during the calls waits for the next window
    /// (its notification is kept). At shutdown what is queued is written at once.
    pub(super) async fn write_behind(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = self.writes_ready.notified() => {}
                _ = shutdown.changed() => break,
            }
            if !self.write_window.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.write_window) => {}
                    _ = shutdown.changed() => break,
                }
            }
            self.flush().await;
        }
        while self.flush().await {}
    }

    /// Writes what is queued now; false if nothing was.
    async fn flush(&self) -> bool {
        let mut batch = std::mem::take(&mut *self.writes.lock());
        if batch.is_empty() {
            return false;
        }
        // One call per hash tag (cluster slot), at most MAX_BATCH answers each.
        batch.sort_by(|a, b| tag_of(&a.key).cmp(tag_of(&b.key)));
        for group in batch.chunk_by(|a, b| tag_of(&a.key) == tag_of(&b.key)) {
            for chunk in group.chunks(MAX_BATCH) {
                if let Err(e) = self.store_batch(chunk).await {
                    log::debug!("{} cache entries not stored: {e}", chunk.len());
                }
            }
        }
        true
    }

    async fn store_batch(&self, batch: &[PendingWrite]) -> Result<(), StoreError> {
        let mut c = self.conn(Call::Store).await?;
        let mut note = String::with_capacity(17 + batch.len() * 96);
        note.push_str(&self.origin);
        let mut inv = self.store_script.prepare_invoke();
        for w in batch {
            inv.key(self.k(&format!("cache:{}", w.key)));
            note.push('\n');
            note.push_str(&w.ttl_ms.to_string());
            note.push(' ');
            note.push_str(&w.key);
        }
        inv.arg(&self.channel).arg(&note);
        for w in batch {
            inv.arg(w.value.as_ref()).arg(w.ttl_ms);
        }
        let _: i64 = inv.invoke_async(&mut c).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// The background upkeep: follows the cache announcements (resubscribing with
    /// backoff), gives back idle slices every 250 ms, purges expired keys every second;
    /// at shutdown gives back every slice.
    pub(super) async fn upkeep(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut ticks: u64 = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut stream = match &self.mirror {
                Some(m) if self.is_up() => match self.follow(m).await {
                    Ok(s) => {
                        backoff = Duration::from_millis(100);
                        Some(s)
                    }
                    Err(e) => {
                        log::debug!("cache mirror not following: {e}");
                        None
                    }
                },
                _ => None,
            };
            let retry = tokio::time::sleep(backoff);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => {
                        self.sweep(true).await;
                        return;
                    }
                    _ = tick.tick() => {
                        self.sweep(false).await;
                        ticks += 1;
                        if let (Some(m), 0) = (&self.mirror, ticks % 4) {
                            m.purge(self.now_ms());
                            self.mirror_keys.set(m.len() as i64);
                            self.mirror_synced.set(i64::from(m.is_synced()));
                        }
                    }
                    msg = async { stream.as_mut()?.next().await }, if stream.is_some() => {
                        match (msg, &self.mirror) {
                            (Some(msg), Some(m)) => self.on_announcement(m, &msg),
                            _ => {
                                if let Some(m) = &self.mirror {
                                    m.desync();
                                    self.mirror_synced.set(0);
                                }
                                break;
                            }
                        }
                    }
                    _ = &mut retry, if stream.is_none() && self.mirror.is_some() => {
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                }
            }
        }
    }
}
