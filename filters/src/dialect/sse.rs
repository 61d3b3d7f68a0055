//! An incremental server-sent-events parser and the small writers both transcoders use.
//!
//! The parser follows the event-stream interpretation of the HTML standard: a byte-order
//! mark is skipped once at the start; lines end in CRLF, LF or a lone CR; a line starting
//! with `:` is a comment; `field: value` lines set the event type (`event`) or append to
//! the data buffer (`data`, joined with `\n`); `id` and `retry` are read and ignored; a
//! blank line dispatches the event, unless its data buffer is empty. Only the line being
//! read and the event being built are held: a complete event is handed out at once.
//!
//! One departure from the standard, chosen for upstreams that omit the final blank line:
//! [`SseParser::finish`] dispatches a pending event (and a last unterminated line) instead
//! of discarding it. A cut-off event is then still incomplete JSON and is ignored by the
//! transcoders, so the leniency cannot turn a truncated stream into a complete one.

use serde::Serialize;

/// The largest event (data plus the current line) the parser holds. A bigger one is an
/// upstream fault, not a reason to grow without bound.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event: its type (`message` when no `event:` line) and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, or `message`.
    pub event: &'a str,
    /// The `data:` lines joined with `\n`, without the final newline.
    pub data: &'a [u8],
}

/// Incremental event-stream parser. Feed it bytes split anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    event: String,
    /// Bytes of a possible BOM seen so far at the very start (0..=3), or `None` once the
    /// start is past.
    bom: Option<usize>,
    /// The previous chunk ended with CR: an LF that starts this one belongs to it.
    after_cr: bool,
    overflow: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self {
            bom: Some(0),
            ..Self::default()
        }
    }

    /// Whether an event grew past [`MAX_EVENT_BYTES`]; the parser then ignores all input.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Reads `chunk` and calls `on_event` for every event it completes, in order.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.overflow {
            return;
        }
        if let Some(seen) = self.bom {
            // Match the BOM a byte at a time: it may itself arrive split.
            let mut seen = seen;
            while seen < BOM.len() {
                match chunk.first() {
                    None => {
                        self.bom = Some(seen);
                        return;
                    }
                    Some(&b) if b == BOM[seen] => {
                        seen += 1;
                        chunk = &chunk[1..];
                    }
                    Some(_) => {
                        // Not a BOM after all: the bytes matched so far are content.
                        self.line.extend_from_slice(&BOM[..seen]);
                        break;
                    }
                }
            }
            self.bom = None;
        }
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', chunk) {
                Some(p) => {
                    self.line.extend_from_slice(&chunk[..p]);
                    if chunk[p] == b'\r' {
                        if chunk.get(p + 1) == Some(&b'\n') {
                            chunk = &chunk[p + 2..];
                        } else {
                            self.after_cr = p + 1 == chunk.len();
                            chunk = &chunk[p + 1..];
                        }
                    } else {
                        chunk = &chunk[p + 1..];
                    }
                    self.end_line(&mut on_event);
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
            if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                self.overflow = true;
                self.line = Vec::new();
                self.data = Vec::new();
                return;
            }
        }
    }

    /// The end of the stream: an unterminated last line counts as a line, and a pending
    /// event is dispatched (see the module doc).
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.overflow {
            return;
        }
        if !self.line.is_empty() {
            self.end_line(&mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line[0] != b':' {
            let (name, value) = match memchr::memchr(b':', &line) {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &b""[..]),
            };
            match name {
                b"data" => {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                }
                b"event" => {
                    self.event.clear();
                    self.event.push_str(&String::from_utf8_lossy(value));
                }
                // `id`, `retry` and unknown fields carry nothing the transcoders use.
                _ => {}
            }
        }
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.data.is_empty() {
            self.event.clear();
            return;
        }
        self.data.pop();
        let event = if self.event.is_empty() {
            "message"
        } else {
            self.event.as_str()
        };
        on_event(SseEvent {
            event,
            data: &self.data,
        });
        self.data.clear();
        self.event.clear();
    }
}

/// Appends `data: <json>\n\n`.
pub fn write_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // Serialising a `Value` or a plain struct into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n`, the framing of Anthropic streams.
pub fn write_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, value);
}

/// Appends the end marker of an OpenAI stream, `data: [DONE]\n\n`.
pub fn write_done(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                got.push((e.event.to_string(), String::from_utf8_lossy(e.data).into()))
            });
        }
        p.finish(|e| got.push((e.event.to_string(), String::from_utf8_lossy(e.data).into())));
        got
    }

    fn bytewise(s: &[u8]) -> Vec<(String, String)> {
        let parts: Vec<&[u8]> = s.chunks(1).collect();
        events(&parts)
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let s = b": comment\nevent: a\ndata: one\ndata:two\nid: 7\nretry: 10\n\ndata: x\n\n";
        let want = vec![
            ("a".to_string(), "one\ntwo".to_string()),
            ("message".to_string(), "x".to_string()),
        ];
        assert_eq!(events(&[s]), want);
        assert_eq!(bytewise(s), want);
    }

    #[test]
    fn line_endings_and_bom() {
        let want = vec![("e".to_string(), "d".to_string())];
        for s in [
            &b"event: e\r\ndata: d\r\n\r\n"[..],
            b"event: e\rdata: d\r\r",
            b"\xEF\xBB\xBFevent: e\ndata: d\n\n",
            b"\xEF\xBB\xBFevent: e\r\ndata: d\r\n\r\n",
        ] {
            assert_eq!(events(&[s]), want, "{s:?}");
            assert_eq!(bytewise(s), want, "{s:?}");
        }
        // CR at the end of one chunk, LF at the start of the next: one line end.
        assert_eq!(
            events(&[b"event: e\r", b"\ndata: d\r", b"\n\r", b"\n"]),
            want
        );
    }

    #[test]
    fn a_partial_bom_is_content() {
        // 0xEF starts a BOM but the next byte does not continue it.
        let got = events(&[b"\xEF", b"data: x\n\n"]);
        assert_eq!(
            got.len(),
            0,
            "the line became `\\xEFdata: x`, not a data field"
        );
        assert_eq!(events(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]).len(), 1);
    }

    #[test]
    fn empty_data_does_not_dispatch_and_resets_the_type() {
        assert_eq!(
            events(&[b"event: a\n\ndata: x\n\n"]),
            vec![("message".to_string(), "x".to_string())]
        );
        assert_eq!(
            events(&[b"data\n\n"]),
            vec![("message".to_string(), String::new())],
            "a bare `data` line is an empty data line, which still dispatches"
        );
    }

    #[test]
    fn finish_dispatches_a_pending_event() {
        assert_eq!(
            events(&[b"data: [DONE]"]),
            vec![("message".to_string(), "[DONE]".to_string())]
        );
        assert_eq!(
            events(&[b"data: a\n"]),
            vec![("message".to_string(), "a".to_string())]
        );
        assert!(events(&[b": only a comment"]).is_empty());
    }

    #[test]
    fn oversized_events_stop_the_parser() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        let mut n = 0;
        p.feed(b"data: ", |_| n += 1);
        p.feed(&big, |_| n += 1);
        p.feed(b"\n\ndata: x\n\n", |_| n += 1);
        p.finish(|_| n += 1);
        assert!(p.overflowed());
        assert_eq!(n, 0);
    }

    #[test]
    fn writers() {
        let mut out = Vec::new();
        write_event(&mut out, "ping", &serde_json::json!({"type": "ping"}));
        write_data(&mut out, &serde_json::json!({"a": 1}));
        write_done(&mut out);
        assert_eq!(
            out,
            b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata: {\"a\":1}\n\ndata: [DONE]\n\n"
        );
    }
}
