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

use switchyard_filters::error::clip;

use parking_lot::Mutex;

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
    pub fn write(&self, line: &AccessLine<'_>) -> bool {
        let Some((shared, thread)) = &self.inner else {
            return true;
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            line.encode(&mut scratch);
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
/// client-supplied request id. Encoded by [`AccessLine::encode`]; optional fields are
/// left out when `None`.
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// Unix time in milliseconds when the request ended.
    pub ts_ms: u64,
    /// The request id (client's `X-Request-Id` or generated).
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Request path (no query string).
    pub path: &'a str,
    /// Model as requested.
    pub model: Option<&'a str>,
    /// Provider that answered (or was last tried).
    pub provider: Option<&'a str>,
    /// Status sent to the client (0 if none could be sent).
    pub status: u16,
    /// Whole request, written as `latency_ms` with microsecond precision.
    pub latency: Duration,
    /// Time to the first streamed chunk, written as `ttft_ms`.
    pub ttft: Option<Duration>,
    /// Time inside the gateway before the upstream, written as `overhead_ms`.
    pub overhead: Option<Duration>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Streamed response.
    pub stream: bool,
    /// Cache outcome (`none`, `hit`, `miss`, `coalesced`, ...).
    pub cache: &'static str,
    /// Moved past at least one failed candidate.
    pub fallback: bool,
    /// Upstream attempts made.
    pub attempts: u8,
    /// Gateway error code, when the gateway answered with an error.
    pub error: Option<&'a str>,
    /// Tenant, when auth is on.
    pub tenant: Option<&'a str>,
    /// How the answer was translated (`openai_to_anthropic` | `anthropic_to_openai`),
    /// when it was.
    pub translated: Option<&'static str>,
}

impl AccessLine<'_> {
    /// Appends the line as one JSON object (no newline) to `out`. The object is laid out
    /// by hand rather than by a derived `Serialize`: this runs once per request on the
    /// worker thread, and serialising the struct with float formatting cost about twice
    /// as much. Strings still go through serde_json's escaper.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"event\":\"request\",\"ts_ms\":");
        out.extend_from_slice(n.format(self.ts_ms).as_bytes());
        out.extend_from_slice(b",\"request_id\":");
        json_str(out, self.request_id);
        out.extend_from_slice(b",\"method\":");
        json_str(out, self.method);
        out.extend_from_slice(b",\"path\":");
        json_str(out, &clip(self.path, MAX_ECHO));
        if let Some(m) = self.model {
            out.extend_from_slice(b",\"model\":");
            json_str(out, &clip(m, MAX_ECHO));
        }
        if let Some(p) = self.provider {
            out.extend_from_slice(b",\"provider\":");
            json_str(out, p);
        }
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(n.format(self.status).as_bytes());
        out.extend_from_slice(b",\"latency_ms\":");
        json_ms(out, self.latency);
        if let Some(t) = self.ttft {
            out.extend_from_slice(b",\"ttft_ms\":");
            json_ms(out, t);
        }
        if let Some(o) = self.overhead {
            out.extend_from_slice(b",\"overhead_ms\":");
            json_ms(out, o);
        }
        if let Some(t) = self.prompt_tokens {
            out.extend_from_slice(b",\"prompt_tokens\":");
            out.extend_from_slice(n.format(t).as_bytes());
        }
        if let Some(t) = self.completion_tokens {
            out.extend_from_slice(b",\"completion_tokens\":");
            out.extend_from_slice(n.format(t).as_bytes());
        }
        out.extend_from_slice(if self.stream {
            b",\"stream\":true,\"cache\":"
        } else {
            b",\"stream\":false,\"cache\":"
        });
        json_str(out, self.cache);
        out.extend_from_slice(if self.fallback {
            b",\"fallback\":true,\"attempts\":"
        } else {
            b",\"fallback\":false,\"attempts\":"
        });
        out.extend_from_slice(n.format(self.attempts).as_bytes());
        if let Some(e) = self.error {
            out.extend_from_slice(b",\"error\":");
            json_str(out, e);
        }
        if let Some(t) = self.tenant {
            out.extend_from_slice(b",\"tenant\":");
            json_str(out, t);
        }
        if let Some(t) = self.translated {
            out.extend_from_slice(b",\"translated\":\"");
            out.extend_from_slice(t.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
}

/// A duration in milliseconds with three decimals (microsecond precision), e.g. `1.042`.
fn json_ms(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
    out.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Client-supplied text (path, model) is cut to this many bytes in a line.
pub const MAX_ECHO: usize = 512;

/// A JSON string literal. Client-supplied text (path, model, request id) may hold quotes,
/// backslashes or control characters; serde_json's escaper writes straight into `out`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Most fields (ids, methods, model and provider names, labels) need no escape: one
    // pass tells (the bytes serde_json escapes), and they are copied whole.
    let escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if !escape {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(s: &'a str) -> AccessLine<'a> {
        AccessLine {
            ts_ms: 1_700_000_000_123,
            request_id: s,
            method: "POST",
            path: s,
            model: Some(s),
            provider: None,
            status: 200,
            latency: Duration::from_micros(1_042),
            ttft: Some(Duration::from_nanos(999)),
            overhead: Some(Duration::from_secs(3_601)),
            prompt_tokens: Some(12),
            completion_tokens: None,
            stream: true,
            cache: "miss",
            fallback: false,
            attempts: 1,
            translated: None,
            error: None,
            tenant: Some("team-a"),
        }
    }

    #[test]
    fn encodes_valid_json_with_every_awkward_character() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}i é 😀 </script>";
        let mut out = Vec::new();
        line(nasty).encode(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["request_id"], nasty);
        assert_eq!(v["path"], nasty);
        assert_eq!(v["model"], nasty);
        assert_eq!(v["event"], "request");
        assert_eq!(v["ts_ms"], 1_700_000_000_123u64);
        let long = "x".repeat(100_000);
        let mut out = Vec::new();
        line(&long).encode(&mut out);
        assert!(
            out.len() < 100_000 + 3 * MAX_ECHO,
            "path and model are clipped"
        );
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_ms"].as_f64(), Some(1.042));
        assert_eq!(v["ttft_ms"].as_f64(), Some(0.0));
        assert_eq!(v["overhead_ms"].as_f64(), Some(3_601_000.0));
        assert_eq!(v["prompt_tokens"], 12);
        assert!(v.get("completion_tokens").is_none());
        assert!(v.get("provider").is_none());
        assert!(v.get("error").is_none());
        assert_eq!(v["stream"], true);
        assert_eq!(v["fallback"], false);
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["tenant"], "team-a");
    }

    #[test]
    fn every_character_is_written_as_serde_json_writes_it() {
        let chars = (0u32..0x80)
            .chain([0xe9, 0x2028, 0x1f600])
            .filter_map(char::from_u32);
        for c in chars {
            let mut cases = vec![c.to_string(), format!("{c}{c}x")];
            // At the start, inside and at the end of longer text.
            for at in 0..20 {
                cases.push(format!("{}{c}{}", "a".repeat(at), "é".repeat(5)));
            }
            for s in cases {
                let mut out = Vec::new();
                json_str(&mut out, &s);
                let serde = serde_json::to_vec(&s).expect("a string serialises");
                assert_eq!(out, serde, "{:?}", s);
            }
        }
    }

    #[test]
    fn plain_strings_are_copied_verbatim() {
        let mut out = Vec::new();
        json_str(&mut out, "gpt-4o-mini");
        assert_eq!(out, b"\"gpt-4o-mini\"");
        out.clear();
        json_ms(&mut out, Duration::from_micros(12_345_678));
        assert_eq!(out, b"12345.678");
    }
}
