//! Token usage from responses, found without parsing (or buffering) the whole response.
//!
//! [`UsageScanner`] is fed every response chunk as it passes through. It looks for a
//! `"usage":{…}` member anywhere (a JSON response, or any SSE event of a stream) and keeps
//! the last complete one. Only the usage object itself is ever copied.
//!
//! [`UsageChunkStripper`] removes the usage-only SSE event (`"choices":[]` with a usage
//! object) from a stream, for clients that did not ask for it when the gateway asked the
//! upstream for it on their behalf.

use std::sync::LazyLock;

use arrayvec::ArrayVec;
use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use serde::Deserialize;

// Searchers built once: building one per call costs more than the search.
static KEY_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(KEY));
static USAGE_OBJECT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\":{"));

/// Token counts reported by an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum, as reported.
    #[serde(default)]
    pub total_tokens: u64,
}

const KEY: &[u8] = b"\"usage\"";
/// Largest usage object kept; anything bigger is not a usage object we understand.
const MAX_CAPTURE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the key.
    Search,
    /// After the key, before the value (whitespace and the colon).
    BeforeValue { colon: bool },
    /// Inside the object.
    Capture,
}

/// Incremental finder of the last `"usage":{…}` object in a byte stream.
#[derive(Debug)]
pub struct UsageScanner {
    state: State,
    /// The last bytes of the previous chunk, to find a key split across chunks.
    tail: ArrayVec<u8, 8>,
    capture: Vec<u8>,
    depth: u32,
    /// Where the object being captured starts in the current chunk.
    obj_start: usize,
    in_string: bool,
    escaped: bool,
    last: Option<Usage>,
}

impl Default for UsageScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageScanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self {
            state: State::Search,
            tail: ArrayVec::new(),
            capture: Vec::new(),
            depth: 0,
            obj_start: 0,
            in_string: false,
            escaped: false,
            last: None,
        }
    }

    /// The last complete usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.last
    }

    /// Feeds the next chunk of the response.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            // Nothing to see; in particular, keep the tail of a key split across chunks.
            return;
        }
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Search => {
                    let prev = std::mem::take(&mut self.tail);
                    // A key split across earlier chunks and this one.
                    if !prev.is_empty() {
                        let mut joined: ArrayVec<u8, 16> = ArrayVec::new();
                        joined.extend(prev.iter().copied());
                        let take = (chunk.len() - i).min(KEY.len() - 1);
                        joined.extend(chunk[i..i + take].iter().copied());
                        if let Some(p) = memchr::memmem::find(&joined, KEY) {
                            i += p + KEY.len() - prev.len();
                            self.state = State::BeforeValue { colon: false };
                            continue;
                        }
                    }
                    match KEY_FINDER.find(&chunk[i..]) {
                        Some(p) => {
                            i += p + KEY.len();
                            self.state = State::BeforeValue { colon: false };
                        }
                        None => {
                            // Keep the last KEY.len()-1 bytes seen, across chunks.
                            let rest = &chunk[i..];
                            let keep = KEY.len() - 1;
                            let mut t: ArrayVec<u8, 16> = ArrayVec::new();
                            t.extend(prev.iter().copied());
                            t.extend(rest[rest.len().saturating_sub(keep)..].iter().copied());
                            let from = t.len().saturating_sub(keep);
                            self.tail.extend(t[from..].iter().copied());
                            return;
                        }
                    }
                }
                State::BeforeValue { colon } => {
                    let b = chunk[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b':' if !colon => self.state = State::BeforeValue { colon: true },
                        b'{' if colon => {
                            self.capture.clear();
                            self.obj_start = i - 1;
                            self.depth = 1;
                            self.in_string = false;
                            self.escaped = false;
                            self.state = State::Capture;
                        }
                        _ => self.state = State::Search, // null, or not a member key
                    }
                }
                State::Capture => {
                    let start = i;
                    let mut done = false;
                    while i < chunk.len() {
                        if self.in_string {
                            match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                                None => i = chunk.len(),
                                Some(p) => {
                                    i += p;
                                    if chunk[i] == b'\\' {
                                        // Skip the escaped byte (it may be in the next chunk).
                                        i += 2;
                                        if i > chunk.len() {
                                            self.escaped = true;
                                            i = chunk.len();
                                        }
                                    } else {
                                        self.in_string = false;
                                        i += 1;
                                    }
                                }
                            }
                            continue;
                        }
                        if std::mem::take(&mut self.escaped) {
                            i += 1;
                            self.in_string = true;
                            continue;
                        }
                        match memchr::memchr3(b'"', b'{', b'}', &chunk[i..]) {
                            None => i = chunk.len(),
                            Some(p) => {
                                i += p;
                                match chunk[i] {
                                    b'"' => self.in_string = true,
                                    b'{' => self.depth += 1,
                                    _ => self.depth -= 1,
                                }
                                i += 1;
                                if self.depth == 0 {
                                    done = true;
                                    break;
                                }
                            }
                        }
                    }
                    let i_end = i.min(chunk.len());
                    if done && self.capture.is_empty() {
                        // The whole object is in this chunk: parse it in place.
                        if let Some(u) = parse_usage(&chunk[self.obj_start..i_end]) {
                            self.last = Some(u);
                        }
                        self.state = State::Search;
                        continue;
                    }
                    let from = if self.capture.is_empty() {
                        self.obj_start
                    } else {
                        start
                    };
                    if self.capture.len() + (i_end - from) > MAX_CAPTURE {
                        self.capture.clear();
                        self.state = State::Search;
                        continue;
                    }
                    self.capture.extend_from_slice(&chunk[from..i_end]);
                    if done {
                        if let Some(u) = parse_usage(&self.capture) {
                            self.last = Some(u);
                        }
                        self.capture.clear();
                        self.state = State::Search;
                    }
                }
            }
        }
        if self.state == State::Search {
            self.tail.clear();
        }
        if self.state == State::Capture && self.capture.is_empty() {
            // The object opened on this chunk's last byte.
            self.capture
                .extend_from_slice(&chunk[self.obj_start.min(chunk.len())..]);
        }
    }
}

/// Reads the three counters from a usage object, without a JSON parser. `obj` starts at
/// the object's `{`; reading stops at its matching `}`, and an object that does not close
/// within `obj` gives `None`. Every `"key": <integer>` pair is looked at, at any depth
/// (the nested `*_details` objects use other key names). Jumps between structural
/// characters with `memchr` rather than visiting every byte.
///
/// Anthropic's usage object is read too: `input_tokens` plus the cache reads and writes
/// (which Anthropic counts apart) are the prompt, `output_tokens` the completion.
pub fn parse_usage(obj: &[u8]) -> Option<Usage> {
    let (mut prompt, mut completion, mut total) = (None, None, None);
    let (mut input, mut output, mut cache_read, mut cache_write) = (None, None, None, None);
    let n = obj.len();
    let mut depth = 0usize;
    let mut i = 0;
    loop {
        i += memchr::memchr3(b'"', b'{', b'}', &obj[i..])?;
        match obj[i] {
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {
                let ks = i + 1;
                let mut ke = ks + memchr::memchr2(b'"', b'\\', &obj[ks..])?;
                while obj[ke] == b'\\' {
                    ke += 2;
                    ke += memchr::memchr2(b'"', b'\\', obj.get(ke..)?)?;
                }
                let key = &obj[ks..ke];
                i = ke + 1;
                while i < n && matches!(obj[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                if i >= n || obj[i] != b':' {
                    continue; // a string value, not a key
                }
                i += 1;
                while i < n && matches!(obj[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                let slot = match key {
                    b"prompt_tokens" => &mut prompt,
                    b"completion_tokens" => &mut completion,
                    b"total_tokens" => &mut total,
                    b"input_tokens" => &mut input,
                    b"output_tokens" => &mut output,
                    b"cache_read_input_tokens" => &mut cache_read,
                    b"cache_creation_input_tokens" => &mut cache_write,
                    _ => continue,
                };
                let mut v: u64 = 0;
                let mut digits = 0;
                while i < n && obj[i].is_ascii_digit() {
                    v = v.checked_mul(10)?.checked_add(u64::from(obj[i] - b'0'))?;
                    digits += 1;
                    i += 1;
                }
                if digits > 0 {
                    *slot = Some(v);
                }
            }
        }
    }
    if prompt.is_none() && completion.is_none() {
        if input.is_none() && output.is_none() {
            return None;
        }
        prompt = Some(input.unwrap_or(0) + cache_read.unwrap_or(0) + cache_write.unwrap_or(0));
        completion = output;
    }
    let (p, c) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: total.unwrap_or(p + c),
    })
}

/// The usage object of a complete JSON response, looked for from the end, where
/// OpenAI-shaped responses put it: `tail` is the end of the response (its last chunk, or
/// the last bytes of it). Cheaper than scanning the whole response.
pub fn usage_from_tail(tail: &[u8]) -> Option<Usage> {
    // The key, found backwards by its `u` (cheap when the object is near the end).
    for p in memchr::memrchr_iter(b'u', tail) {
        if p == 0 || tail[p - 1] != b'"' || !tail[p..].starts_with(b"usage\"") {
            continue;
        }
        let mut i = p + 6;
        while i < tail.len() && matches!(tail[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        if tail.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while i < tail.len() && matches!(tail[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        if tail.get(i) != Some(&b'{') {
            return None; // "usage": null
        }
        return parse_usage(&tail[i..]);
    }
    None
}

/// Removes the usage-only event from an SSE stream, passing every other byte through.
///
/// Chunks that hold whole events are passed through without copying when nothing in them
/// is removed; a partial event is held back until its end arrives.
#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    pending: BytesMut,
    usage: Option<Usage>,
}

impl UsageChunkStripper {
    /// A stripper with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usage read from the event it removed, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether `chunk` can be sent as it is: nothing is pending, it ends on an event
    /// boundary, and it holds no usage-only event. The common case; checks only the
    /// chunk's end and its few `[`.
    pub fn passes(&self, chunk: &[u8]) -> bool {
        self.pending.is_empty() && ends_with_event_boundary(chunk) && !has_usage_only(chunk)
    }

    /// Filters the next chunk; `end` flushes anything pending. Returns what to send.
    pub fn filter(&mut self, chunk: Bytes, end: bool) -> Bytes {
        if self.passes(&chunk) {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::with_capacity(self.pending.len());
        let mut consumed = 0;
        while let Some((event_end, next)) = find_event_end(&self.pending[consumed..]) {
            let event = &self.pending[consumed..consumed + event_end];
            if is_usage_only_event(event) {
                self.usage = usage_from_tail(event).or(self.usage);
            } else {
                out.extend_from_slice(&self.pending[consumed..consumed + next]);
            }
            consumed += next;
        }
        let _ = self.pending.split_to(consumed);
        if end && !self.pending.is_empty() {
            let rest = self.pending.split();
            if is_usage_only_event(&rest) {
                self.usage = usage_from_tail(&rest).or(self.usage);
            } else {
                out.extend_from_slice(&rest);
            }
        }
        out.freeze()
    }
}

fn ends_with_event_boundary(b: &[u8]) -> bool {
    b.ends_with(b"\n\n") || b.ends_with(b"\r\n\r\n")
}

/// Whether `b` holds `"choices":[]`. Looks only at the few `[` of a chunk instead of
/// running a substring search over every byte.
fn has_usage_only(b: &[u8]) -> bool {
    const KEY: &[u8] = b"\"choices\":";
    memchr::memchr_iter(b'[', b)
        .any(|p| b.get(p + 1) == Some(&b']') && p >= KEY.len() && &b[p - KEY.len()..p] == KEY)
}

/// (end of the event's content, start of the next event).
fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(b, b"\n\n").map(|p| (p, p + 2));
    let crlf = memchr::memmem::find(b, b"\r\n\r\n").map(|p| (p, p + 4));
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(if a.0 <= c.0 { a } else { c }),
        (a, c) => a.or(c),
    }
}

fn is_usage_only_event(event: &[u8]) -> bool {
    has_usage_only(event) && USAGE_OBJECT.find(event).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = r#""usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}}"#;

    fn scan_split(doc: &str, at: usize) -> Option<Usage> {
        let mut s = UsageScanner::new();
        s.feed(&doc.as_bytes()[..at]);
        s.feed(&doc.as_bytes()[at..]);
        s.usage()
    }

    #[test]
    fn finds_usage_at_every_split_point() {
        let doc = format!(r#"{{"id":"x","choices":[{{"text":"say \"usage\": no"}}],{U}}}"#);
        let want = Some(Usage {
            prompt_tokens: 5,
            completion_tokens: 7,
            total_tokens: 12,
        });
        for at in 0..=doc.len() {
            assert_eq!(scan_split(&doc, at), want, "split at {at}");
        }
    }

    /// Found by the property tests: an empty chunk between the two halves of a split
    /// key made the scanner forget the first half.
    #[test]
    fn an_empty_chunk_keeps_a_split_key() {
        let doc = format!(r#"{{"choices":[],{U}}}"#);
        let at = doc.find("usage").unwrap();
        let mut s = UsageScanner::new();
        s.feed(&doc.as_bytes()[..at]);
        s.feed(b"");
        s.feed(&doc.as_bytes()[at..]);
        assert_eq!(s.usage().map(|u| u.total_tokens), Some(12));
    }

    #[test]
    fn anthropic_usage_objects_are_read() {
        let u = parse_usage(
            br#"{"input_tokens":100,"cache_read_input_tokens":20,"cache_creation_input_tokens":5,"output_tokens":7}"#,
        )
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (125, 7, 132)
        );
        let u = parse_usage(br#"{"output_tokens":41}"#).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (0, 41));
        assert_eq!(parse_usage(br#"{"x":1}"#), None);
    }

    #[test]
    fn byte_by_byte() {
        let doc = format!("data: {{\"usage\":null}}\n\ndata: {{\"choices\":[],{U}}}\n\n");
        let mut s = UsageScanner::new();
        for b in doc.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.usage().map(|u| u.completion_tokens), Some(7));
    }

    #[test]
    fn null_and_missing_usage() {
        let mut s = UsageScanner::new();
        s.feed(br#"{"usage":null,"x":1}"#);
        assert_eq!(s.usage(), None);
        s.feed(br#"{"a":"usage"}"#);
        assert_eq!(s.usage(), None);
    }

    #[test]
    fn keeps_last_usage() {
        let mut s = UsageScanner::new();
        s.feed(br#"data: {"usage":{"completion_tokens":1}}"#);
        s.feed(br#"data: {"usage":{"completion_tokens":9}}"#);
        assert_eq!(s.usage().map(|u| u.completion_tokens), Some(9));
    }

    #[test]
    fn usage_from_the_end() {
        let doc = format!(r#"{{"id":"x","choices":[{{"text":"\"usage\": {{}}"}}],{U}}}"#);
        assert_eq!(
            usage_from_tail(doc.as_bytes()).map(|u| u.completion_tokens),
            Some(7)
        );
        let pretty =
            "{\n  \"usage\" : {\n    \"prompt_tokens\": 3,\n    \"completion_tokens\": 4\n  }\n}\n";
        assert_eq!(
            usage_from_tail(pretty.as_bytes()).map(|u| u.total_tokens),
            Some(7)
        );
        assert_eq!(usage_from_tail(br#"{"usage":null}"#), None);
        assert_eq!(usage_from_tail(br#"{"usage":{"prompt_tokens":1"#), None);
        assert_eq!(usage_from_tail(br#"{"x":1}"#), None);
    }

    #[test]
    fn usage_parse_by_hand() {
        let u = parse_usage(br#"{"prompt_tokens": 5, "completion_tokens_details":{"reasoning_tokens":3},"completion_tokens":7}"#);
        assert_eq!(
            u,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7,
                total_tokens: 12
            })
        );
        assert_eq!(parse_usage(br#"{"x":1}"#), None);
        assert_eq!(parse_usage(br#"{"prompt_tokens":"a"}"#), None);
        assert_eq!(
            parse_usage(br#"{"prompt_tokens":99999999999999999999999}"#),
            None
        );
    }

    #[test]
    fn oversized_object_is_dropped() {
        let big = format!(r#"{{"usage":{{"x":"{}"}}}}"#, "a".repeat(5000));
        let mut s = UsageScanner::new();
        s.feed(big.as_bytes());
        assert_eq!(s.usage(), None);
    }

    #[test]
    fn strips_only_the_usage_event() {
        let a = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let u = format!("data: {{\"choices\":[],{U}}}\n\n");
        let d = "data: [DONE]\n\n";
        let mut st = UsageChunkStripper::new();
        let c1 = Bytes::from(a);
        let out1 = st.filter(c1.clone(), false);
        assert_eq!(
            out1.as_ptr(),
            c1.as_ptr(),
            "whole events pass without copying"
        );
        assert_eq!(st.filter(Bytes::from(u.clone()), false), Bytes::new());
        assert_eq!(st.usage().map(|u| u.completion_tokens), Some(7));
        assert_eq!(st.filter(Bytes::from(d), true), Bytes::from(d));

        // the same stream cut at arbitrary points
        let all = format!("{a}{u}{d}");
        for cut in 1..all.len() {
            let mut st = UsageChunkStripper::new();
            let mut got = Vec::new();
            got.extend_from_slice(
                &st.filter(Bytes::copy_from_slice(&all.as_bytes()[..cut]), false),
            );
            got.extend_from_slice(&st.filter(Bytes::copy_from_slice(&all.as_bytes()[cut..]), true));
            assert_eq!(
                String::from_utf8(got).unwrap(),
                format!("{a}{d}"),
                "cut {cut}"
            );
        }
    }
}
