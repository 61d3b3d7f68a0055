//! The part of an OpenAI request body that routing needs, parsed without copying.
//!
//! The whole body is validated as JSON (RFC 8259: malformed input is rejected before
//! anything is forwarded), but only a handful of top-level fields are read. The scanner
//! jumps through string contents with `memchr`, so a long chat history costs little more
//! than a memory scan; string values are borrowed from the body unless they contain
//! escapes.

use std::borrow::Cow;

/// What the gateway reads from a request body. Borrowed from the body.
#[derive(Debug, Default, PartialEq)]
pub struct RequestHead<'a> {
    /// The requested model, as the client wrote it (`null` reads as absent).
    pub model: Option<Cow<'a, str>>,
    /// `stream: true` asks for server-sent events.
    pub stream: Option<bool>,
    /// Sampling temperature; `0` makes a request cacheable.
    pub temperature: Option<f64>,
    /// Upper bound of generated tokens (`max_tokens`).
    pub max_tokens: Option<u64>,
    /// Upper bound of generated tokens (`max_completion_tokens`, newer clients).
    pub max_completion_tokens: Option<u64>,
    /// `stream_options` as sent by the client.
    pub stream_options: Option<StreamOptions>,
}

/// The `stream_options` object of a chat or completion request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Whether the client asked for the final usage-only chunk.
    pub include_usage: Option<bool>,
}

/// Why a body could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The body is not valid JSON; the message says where.
    Malformed(String),
    /// The body is JSON but not an object.
    NotAnObject,
    /// A field the gateway reads appears more than once (JSON parsers disagree on which
    /// one wins, so the gateway and the upstream could read different values).
    Duplicate(&'static str),
}

/// The fields the gateway reads (or that the cache key drops), each of which may appear
/// only once at the top level.
const READ_KEYS: [&str; 8] = [
    "model",
    "stream",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "stream_options",
    "metadata",
    "user",
];

/// Nesting deeper than this is rejected (as serde_json does).
const MAX_DEPTH: usize = 128;

const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const CONTROL: u8 = 3;
const HIGH: u8 = 4;

/// What a byte means inside a string: 0 for an ordinary ASCII byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 0x20 {
            CONTROL
        } else if i == b'"' as usize {
            QUOTE
        } else if i == b'\\' as usize {
            BACKSLASH
        } else if i >= 0x80 {
            HIGH
        } else {
            0
        };
        i += 1;
    }
    t
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

type R<T> = Result<T, String>;

impl<'a> Scanner<'a> {
    fn msg(&self, what: &str) -> String {
        let upto = &self.b[..self.i.min(self.b.len())];
        let line = upto.iter().filter(|c| **c == b'\n').count() + 1;
        let col = upto.len() - upto.iter().rposition(|c| *c == b'\n').map_or(0, |p| p + 1) + 1;
        format!("{what} at line {line} column {col}")
    }

    fn err<T>(&self, what: &str) -> R<T> {
        Err(self.msg(what))
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8, what: &str) -> R<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else if self.i >= self.b.len() {
            self.err("EOF while parsing")
        } else {
            self.err(what)
        }
    }

    /// A string at `self.i` (the opening quote). Returns the raw contents and whether
    /// they contain escapes. Non-ASCII contents are checked to be UTF-8.
    fn string(&mut self) -> R<(&'a [u8], bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        let mut non_ascii = false;
        let b = self.b;
        loop {
            // Table-driven: one load and one branch per ordinary byte.
            while self.i < b.len() && CLASS[b[self.i] as usize] == 0 {
                self.i += 1;
            }
            let Some(&c) = b.get(self.i) else {
                return self.err("EOF while parsing a string");
            };
            match CLASS[c as usize] {
                QUOTE => {
                    let raw = &b[start..self.i];
                    self.i += 1;
                    if non_ascii && std::str::from_utf8(raw).is_err() {
                        return self.err("invalid unicode in a string");
                    }
                    return Ok((raw, escaped));
                }
                HIGH => {
                    non_ascii = true;
                    self.i += 1;
                }
                BACKSLASH => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let Some(unit) = hex4(b, self.i + 1) else {
                                return self.err("invalid escape");
                            };
                            self.i += 5;
                            // UTF-16 surrogates must come in pairs: a lone one is not a
                            // character, and parsers disagree on what to make of it.
                            match unit {
                                0xD800..=0xDBFF => {
                                    let low = (b.get(self.i..self.i + 2) == Some(&b"\\u"[..]))
                                        .then(|| hex4(b, self.i + 2))
                                        .flatten();
                                    if !low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                                        return self.err("lone leading surrogate in a \\u escape");
                                    }
                                    self.i += 6;
                                }
                                0xDC00..=0xDFFF => {
                                    return self.err("lone trailing surrogate in a \\u escape")
                                }
                                _ => {}
                            }
                        }
                        None => return self.err("EOF while parsing a string"),
                        _ => return self.err("invalid escape"),
                    }
                }
                _ => {
                    return self
                        .err("control character (\\u0000-\\u001F) found while parsing a string")
                }
            }
        }
    }

    fn number(&mut self) -> R<&'a [u8]> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return self.err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return self.err("invalid number");
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return self.err("invalid number");
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        Ok(&self.b[start..self.i])
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("expected value")
        }
    }

    /// Validates one value, whatever it is.
    fn skip_value(&mut self, depth: usize) -> R<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return self.err("recursion limit exceeded");
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return self.err("key must be a string");
                    }
                    self.string()?;
                    self.expect(b':', "expected `:`")?;
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        None => return self.err("EOF while parsing an object"),
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return self.err("recursion limit exceeded");
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        None => return self.err("EOF while parsing a list"),
                        _ => return self.err("expected `,` or `]`"),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            None => self.err("EOF while parsing a value"),
            Some(_) => self.err("expected value"),
        }
    }

    /// A value that should be a boolean: `Some(b)` if it is one (validated either way).
    fn bool_value(&mut self) -> R<Option<bool>> {
        self.ws();
        match self.peek() {
            Some(b't') if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Some(true))
            }
            Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Some(false))
            }
            _ => self.skip_value(1).map(|_| None),
        }
    }

    /// A value that should be a number: its text if it is one.
    fn number_value(&mut self) -> R<Option<&'a [u8]>> {
        self.ws();
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number().map(Some),
            _ => self.skip_value(1).map(|_| None),
        }
    }
}

/// The value of four hex digits at `b[at..at + 4]`.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let h = b.get(at..at + 4)?;
    let mut v: u16 = 0;
    for &c in h {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d as u16;
    }
    Some(v)
}

fn unescape(raw: &[u8]) -> R<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).map_err(|e| e.to_string())
}

fn key_is(raw: &[u8], escaped: bool, name: &str) -> bool {
    if escaped {
        unescape(raw).is_ok_and(|k| k == name)
    } else {
        raw == name.as_bytes()
    }
}

fn as_str(raw: &[u8]) -> R<&str> {
    std::str::from_utf8(raw).map_err(|_| "invalid unicode in a string".to_string())
}

impl<'a> RequestHead<'a> {
    /// Parses `body`, which must be one JSON object. Unknown fields are skipped (but
    /// validated); fields of an unexpected type are treated as absent rather than
    /// rejected, so the upstream gets to give its own answer on them, except `model`,
    /// which must be a string (or null).
    pub fn parse(body: &'a [u8]) -> Result<Self, HeadError> {
        // Outside strings only ASCII is valid JSON, and strings check their own UTF-8.
        let mut s = Scanner { b: body, i: 0 };
        s.ws();
        if s.peek() != Some(b'{') {
            if s.peek().is_none() {
                return Err(HeadError::Malformed(
                    "EOF while parsing a value at line 1 column 0".into(),
                ));
            }
            // Validate first so `[1,` reports malformed rather than "not an object".
            s.skip_value(0).map_err(HeadError::Malformed)?;
            s.ws();
            if s.i != body.len() {
                return Err(HeadError::Malformed(s.msg("trailing characters")));
            }
            return Err(HeadError::NotAnObject);
        }
        let mut dup = None;
        let head = Self::object(&mut s, &mut dup).map_err(|e| match dup {
            Some(k) => HeadError::Duplicate(k),
            None => HeadError::Malformed(e),
        })?;
        s.ws();
        if s.i != body.len() {
            return Err(HeadError::Malformed(s.msg("trailing characters")));
        }
        Ok(head)
    }

    fn object(s: &mut Scanner<'a>, dup: &mut Option<&'static str>) -> R<Self> {
        let mut h = RequestHead::default();
        let mut seen = 0u8;
        s.i += 1;
        s.ws();
        if s.peek() == Some(b'}') {
            s.i += 1;
            return Ok(h);
        }
        loop {
            s.ws();
            if s.peek() != Some(b'"') {
                return if s.peek().is_none() {
                    s.err("EOF while parsing an object")
                } else {
                    s.err("key must be a string")
                };
            }
            let (key, esc) = s.string()?;
            s.expect(b':', "expected `:`")?;
            s.ws();
            let unescaped;
            let key: &[u8] = if esc {
                unescaped = unescape(key)?;
                unescaped.as_bytes()
            } else {
                key
            };
            if let Some(k) = READ_KEYS.iter().position(|k| k.as_bytes() == key) {
                if seen & (1 << k) != 0 {
                    *dup = Some(READ_KEYS[k]);
                    return s.err("duplicate key");
                }
                seen |= 1 << k;
            }
            match key {
                b"model" => match s.peek() {
                    Some(b'"') => {
                        let (raw, escaped) = s.string()?;
                        h.model = Some(if escaped {
                            Cow::Owned(unescape(raw)?)
                        } else {
                            Cow::Borrowed(as_str(raw)?)
                        });
                    }
                    Some(b'n') => {
                        s.literal(b"null")?;
                        h.model = None;
                    }
                    _ => {
                        s.skip_value(1)?;
                        return s.err("invalid type: `model` must be a string");
                    }
                },
                b"stream" => h.stream = s.bool_value()?,
                b"temperature" => {
                    h.temperature = s
                        .number_value()?
                        .and_then(|n| as_str(n).ok()?.parse::<f64>().ok())
                }
                b"max_tokens" => {
                    h.max_tokens = s.number_value()?.and_then(|n| as_str(n).ok()?.parse().ok())
                }
                b"max_completion_tokens" => {
                    h.max_completion_tokens =
                        s.number_value()?.and_then(|n| as_str(n).ok()?.parse().ok())
                }
                b"stream_options" if s.peek() == Some(b'{') => {
                    h.stream_options = Some(Self::stream_options(s, dup)?)
                }
                _ => s.skip_value(1)?,
            }
            s.ws();
            match s.peek() {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    s.i += 1;
                    return Ok(h);
                }
                None => return s.err("EOF while parsing an object"),
                _ => return s.err("expected `,` or `}`"),
            }
        }
    }

    fn stream_options(s: &mut Scanner<'a>, dup: &mut Option<&'static str>) -> R<StreamOptions> {
        let mut o = StreamOptions::default();
        let mut seen = false;
        s.i += 1;
        s.ws();
        if s.peek() == Some(b'}') {
            s.i += 1;
            return Ok(o);
        }
        loop {
            s.ws();
            if s.peek() != Some(b'"') {
                return s.err("key must be a string");
            }
            let (key, esc) = s.string()?;
            s.expect(b':', "expected `:`")?;
            if key_is(key, esc, "include_usage") {
                if std::mem::replace(&mut seen, true) {
                    *dup = Some("stream_options.include_usage");
                    return s.err("duplicate key");
                }
                o.include_usage = s.bool_value()?;
            } else {
                s.skip_value(2)?;
            }
            s.ws();
            match s.peek() {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    s.i += 1;
                    return Ok(o);
                }
                None => return s.err("EOF while parsing an object"),
                _ => return s.err("expected `,` or `}`"),
            }
        }
    }

    /// Whether the client wants a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client itself asked for the usage chunk of a stream.
    pub fn client_wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The token budget the client declared, if any.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_routing_fields() {
        let b = br#"{"model":"m1","stream":true,"temperature":0,"max_tokens":7,
            "messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#;
        let h = RequestHead::parse(b).unwrap();
        assert_eq!(h.model.as_deref(), Some("m1"));
        assert!(h.is_stream());
        assert_eq!(h.temperature, Some(0.0));
        assert_eq!(h.max_output_tokens(), Some(7));
        assert!(h.client_wants_usage());
        assert!(matches!(h.model, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn escaped_model_is_unescaped() {
        let h = RequestHead::parse(br#"{"model":"a\/b\u00e9"}"#).unwrap();
        assert_eq!(h.model.as_deref(), Some("a/bé"));
        let h = RequestHead::parse(br#"{"mo\u0064el":"x"}"#).unwrap();
        assert_eq!(h.model.as_deref(), Some("x"));
    }

    #[test]
    fn missing_or_null_model_is_none() {
        assert_eq!(
            RequestHead::parse(br#"{"messages":[]}"#).unwrap().model,
            None
        );
        assert_eq!(
            RequestHead::parse(br#"{"model":null}"#).unwrap().model,
            None
        );
        assert!(matches!(
            RequestHead::parse(br#"{"model":5}"#),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_json_is_rejected() {
        for bad in [
            &br#"{"model": "#[..],
            br#"{"model":"x",}"#,
            b"",
            b"   ",
            br#"{"a":1} x"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":"\x"}"#,
            b"{\"a\":\"\x01\"}",
            br#"{"a":tru}"#,
            br#"{a:1}"#,
            br#"{"a" 1}"#,
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(
                matches!(RequestHead::parse(bad), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn non_object_is_rejected() {
        assert_eq!(RequestHead::parse(b"[1,2]"), Err(HeadError::NotAnObject));
        assert_eq!(RequestHead::parse(b" 3 "), Err(HeadError::NotAnObject));
        assert!(matches!(
            RequestHead::parse(b"[1,"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_types_are_ignored_not_fatal() {
        let h = RequestHead::parse(br#"{"model":"m","stream":"yes","max_tokens":-1}"#).unwrap();
        assert_eq!(h.stream, None);
        assert_eq!(h.max_tokens, None);
    }

    #[test]
    fn duplicate_read_keys_are_refused() {
        for (body, key) in [
            (&br#"{"model":"a","model":"b"}"#[..], "model"),
            (br#"{"model":"a","mo\u0064el":"b"}"#, "model"),
            (br#"{"stream":true,"model":"a","stream":false}"#, "stream"),
            (br#"{"temperature":0,"temperature":1}"#, "temperature"),
            (br#"{"max_tokens":1,"max_tokens":2}"#, "max_tokens"),
            (br#"{"user":"a","user":"b"}"#, "user"),
            (br#"{"metadata":{},"metadata":{}}"#, "metadata"),
            (
                br#"{"stream_options":{},"stream_options":{}}"#,
                "stream_options",
            ),
            (
                br#"{"stream_options":{"include_usage":true,"include_usage":false}}"#,
                "stream_options.include_usage",
            ),
        ] {
            assert_eq!(
                RequestHead::parse(body),
                Err(HeadError::Duplicate(key)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Keys the gateway does not read may repeat (the upstream decides), and the
        // same name nested deeper is another object's key.
        assert!(RequestHead::parse(br#"{"model":"a","x":1,"x":2}"#).is_ok());
        assert!(
            RequestHead::parse(br#"{"model":"a","messages":[{"model":1},{"model":2}]}"#).is_ok()
        );
    }

    #[test]
    fn lone_surrogates_are_refused() {
        for bad in [
            &br#"{"model":"\ud800"}"#[..],
            br#"{"model":"a","x":"\udc00"}"#,
            br#"{"x":["\ud83d\u0041"]}"#,
            br#"{"x":"\ud83d"}"#,
        ] {
            assert!(
                matches!(RequestHead::parse(bad), Err(HeadError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let h = RequestHead::parse(br#"{"model":"\ud83d\ude00"}"#).unwrap();
        assert_eq!(h.model.as_deref(), Some("😀"));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            RequestHead::parse(deep.as_bytes()),
            Err(HeadError::Malformed(_))
        ));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(RequestHead::parse(ok.as_bytes()).is_ok());
    }

    /// Differential check against serde_json on many mutations of real bodies.
    #[test]
    fn agrees_with_serde_json() {
        let seeds: &[&[u8]] = &[
            br#"{"model":"m","messages":[{"role":"user","content":"hi \"there\" \u00e9"}],"temperature":0.5,"stream":true,"stream_options":{"include_usage":false},"max_tokens":10,"x":[1,-2.5e3,true,false,null,{}]}"#,
            br#"{ "model" : "a\/b" , "n" : [ ] , "o" : { "p" : [ { } ] } }"#,
            br#"[1,2,{"a":"b"}]"#,
        ];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet = b"{}[]:,\"\\ 0123456789.eE+-truefalsnu\x01\xc3\xa9x";
        for seed in seeds {
            for _ in 0..4000 {
                let mut b = seed.to_vec();
                for _ in 0..(next() % 3 + 1) {
                    let pos = (next() as usize) % (b.len() + 1);
                    match next() % 3 {
                        0 if pos < b.len() => {
                            b.remove(pos);
                        }
                        1 if pos < b.len() => b[pos] = alphabet[(next() as usize) % alphabet.len()],
                        _ => b.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                    }
                }
                let ours = RequestHead::parse(&b);
                let theirs = serde_json::from_slice::<serde_json::Value>(&b);
                match (&ours, &theirs) {
                    (Ok(h), Ok(v)) => {
                        assert!(v.is_object());
                        assert_eq!(
                            h.model.as_deref(),
                            v["model"].as_str(),
                            "{}",
                            String::from_utf8_lossy(&b)
                        );
                        assert_eq!(h.stream, v["stream"].as_bool());
                    }
                    (Err(HeadError::NotAnObject), Ok(v)) => assert!(!v.is_object()),
                    (Err(HeadError::Duplicate(_)), Ok(v)) => assert!(v.is_object()),
                    (Err(HeadError::Malformed(_)), Err(_)) => {}
                    (Err(HeadError::Malformed(_)), Ok(v))
                        if !v["model"].is_string() && !v["model"].is_null() => {}
                    _ => panic!(
                        "disagree on {:?}: ours {:?}, serde_json {:?}",
                        String::from_utf8_lossy(&b),
                        ours,
                        theirs.map(|_| ())
                    ),
                }
            }
        }
    }
}
