//! One JSON line per request on stdout. Workers append lines to a shared buffer (a
//! short, uncontended lock, no syscall, no thread wake-up); a dedicated thread writes the
//! buffer out every 50 ms, or sooner when it passes 256 KiB. A slow terminal or pipe never
//! blocks a worker: past 8 MiB of unwritten lines new lines are dropped and counted
//! (`switchyard_access_log_dropped_total`).

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const WAKE_AT: usize = 256 * 1024;
const DROP_AT: usize = 8 * 1024 * 1024;

thread_local! {
    // Per-thread scratch space for serialising a line outside the lock.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

struct Shared {
    buf: Mutex<Vec<u8>>,
}

/// The access log. Disabled loggers drop everything.
pub struct AccessLog {
    inner: Option<(Arc<Shared>, Thread)>,
}

impl AccessLog {
    /// A logger writing to stdout from its own thread; `enabled = false` logs nothing.
    pub fn stdout(enabled: bool) -> Self {
        if !enabled {
            return Self { inner: None };
        }
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(WAKE_AT)),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(&s));
        match spawned {
            Ok(h) => Self {
                inner: Some((shared, h.thread().clone())),
            },
            Err(e) => {
                log::error!("cannot start the access log thread: {e}; access log disabled");
                Self { inner: None }
            }
        }
    }

    /// A logger that logs nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Writes out everything buffered now (at shutdown).
    pub fn flush(&self) {
        if let Some((shared, _)) = &self.inner {
            let pending = std::mem::take(&mut *shared.buf.lock());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&pending);
            let _ = out.flush();
        }
    }

    /// Queues one line (a newline is added). Returns false if it was dropped.
    pub fn write<T: Serialize>(&self, line: &T) -> bool {
        let Some((shared, thread)) = &self.inner else {
            return true;
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            if serde_json::to_writer(&mut *scratch, line).is_err() {
                return false;
            }
            scratch.push(b'\n');
            let len = {
                let mut buf = shared.buf.lock();
                if buf.len() + scratch.len() > DROP_AT {
                    return false;
                }
                buf.extend_from_slice(&scratch);
                buf.len()
            };
            if len >= WAKE_AT && len - scratch.len() < WAKE_AT {
                thread.unpark();
            }
            true
        })
    }
}

fn writer(shared: &Shared) {
    let mut out_buf: Vec<u8> = Vec::with_capacity(WAKE_AT);
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        {
            let mut buf = shared.buf.lock();
            if buf.is_empty() {
                continue;
            }
            std::mem::swap(&mut *buf, &mut out_buf);
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&out_buf);
        let _ = out.flush();
        drop(out);
        out_buf.clear();
        if out_buf.capacity() > 4 * WAKE_AT {
            out_buf.shrink_to(WAKE_AT);
        }
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
