//! One JSON line per request on stdout, written by a dedicated thread so that a slow
//! terminal or pipe never blocks a worker. Lines that do not fit in the queue are
//! dropped and counted (`switchyard_access_log_dropped_total`).

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use serde::Serialize;

/// Queue length between workers and the writer thread.
const QUEUE: usize = 8192;

/// Sender side of the access log. Disabled loggers drop everything.
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
}

impl AccessLog {
    /// A logger writing to stdout from its own thread; `enabled = false` logs nothing.
    pub fn stdout(enabled: bool) -> Self {
        if !enabled {
            return Self { tx: None };
        }
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx));
        match spawned {
            Ok(_) => Self { tx: Some(tx) },
            Err(e) => {
                log::error!("cannot start the access log thread: {e}; access log disabled");
                Self { tx: None }
            }
        }
    }

    /// A logger that logs nothing.
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line (a newline is added). Returns false if it was dropped.
    pub fn write<T: Serialize>(&self, line: &T) -> bool {
        let Some(tx) = &self.tx else { return true };
        let mut buf = Vec::with_capacity(384);
        if serde_json::to_writer(&mut buf, line).is_err() {
            return false;
        }
        buf.push(b'\n');
        match tx.try_send(buf) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn writer(rx: Receiver<Vec<u8>>) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(line) = rx.recv() {
        batch.extend_from_slice(&line);
        // Take what else is queued, then write once per burst. The stdout lock is held
        // only for the write, so other output (the start-up line) is never blocked.
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
            if batch.len() > 256 * 1024 {
                break;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&batch);
        let _ = out.flush();
        drop(out);
        batch.clear();
    }
}

/// One access log line. Never holds a credential: only names, numbers and the
/// client-supplied request id.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    /// Always `"request"`.
    pub event: &'static str,
    /// Unix time in milliseconds when the request ended.
    pub ts_ms: u64,
    /// The request id (client's `X-Request-Id` or generated).
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Request path (no query string).
    pub path: &'a str,
    /// Model as requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// Provider that answered (or was last tried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    /// Status sent to the client (0 if none could be sent).
    pub status: u16,
    /// Whole request, ms.
    pub latency_ms: f64,
    /// Time to the first streamed chunk, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Time inside the gateway before the upstream, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_ms: Option<f64>,
    /// Prompt tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Streamed response.
    pub stream: bool,
    /// Served from the response cache.
    pub cache: &'static str,
    /// Moved past at least one failed candidate.
    pub fallback: bool,
    /// Upstream attempts made.
    pub attempts: u8,
    /// Gateway error code, when the gateway answered with an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Tenant, when auth is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
}
