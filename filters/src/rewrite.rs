//! Minimal edits of a request body: replace the `model` value, add
//! `stream_options.include_usage`, drop fields a provider rejects. Everything else stays byte for byte as the client
//! sent it, so what an upstream sees differs from the client's body only where the
//! gateway had to change it.

use std::ops::Range;

/// One top-level member of a JSON object: where its key and its value sit in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key's bytes without the quotes (escapes left as written).
    pub key: Range<usize>,
    /// The value's bytes, from its first to its last byte.
    pub value: Range<usize>,
}

/// Lists the top-level members of `body`, which must already be known to be a valid
/// JSON object (see [`crate::head::RequestHead::parse`]). Returns `None` if it is not
/// an object after all.
pub fn top_level_members(body: &[u8]) -> Option<Vec<Member>> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut out = Vec::with_capacity(8);
    loop {
        i = skip_ws(body, i);
        match body.get(i)? {
            b'}' => return Some(out),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = skip_string(body, i)?;
        let key = i + 1..key_end - 1;
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(body, i + 1);
        let value_end = skip_value(body, i)?;
        out.push(Member {
            key,
            value: i..value_end,
        });
        i = value_end;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `i` points at an opening quote; returns the index after the closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = memchr::memchr2(b'"', b'\\', b.get(j..)?)? + j;
        if b[k] == b'\\' {
            j = k + 2;
        } else {
            return Some(k + 1);
        }
    }
}

/// `i` points at the first byte of a value; returns the index after its last byte.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// What to change in a body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite<'a> {
    /// Replace the top-level `model` value with this name.
    pub model: Option<&'a str>,
    /// Make sure `stream_options.include_usage` is `true`.
    pub include_usage: bool,
    /// Remove these top-level fields (ones the provider answers 400 to).
    pub drop: &'a [&'a str],
}

impl Rewrite<'_> {
    /// Whether this rewrite changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.model.is_none() && !self.include_usage && self.drop.is_empty()
    }
}

/// Applies `rw` to `body` (a valid JSON object). Returns `None` when nothing needed to
/// change (the caller forwards the original bytes) or the body is not an object.
pub fn rewrite_body(body: &[u8], rw: Rewrite<'_>) -> Option<Vec<u8>> {
    if rw.is_noop() {
        return None;
    }
    let members = top_level_members(body)?;
    // Edits as (range to replace, replacement), applied in order of position.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    let key_is = |m: &Member, k: &[u8]| &body[m.key.clone()] == k;

    if let Some(model) = rw.model {
        let quoted = json_string(model);
        match members.iter().find(|m| key_is(m, b"model")) {
            Some(m) => {
                if body[m.value.clone()] != quoted[..] {
                    edits.push((m.value.clone(), quoted));
                }
            }
            None => edits.push((
                insert_point(body, &members),
                member(b"model", &quoted, &members),
            )),
        }
    }
    if rw.include_usage {
        match members.iter().find(|m| key_is(m, b"stream_options")) {
            Some(m) if body[m.value.start] == b'{' => {
                let inner = &body[m.value.clone()];
                if let Some(inner_members) = top_level_members(inner) {
                    let usage = inner_members
                        .iter()
                        .find(|im| &inner[im.key.clone()] == b"include_usage");
                    match usage {
                        Some(im) if &inner[im.value.clone()] == b"true" => {}
                        Some(im) => edits.push((
                            m.value.start + im.value.start..m.value.start + im.value.end,
                            b"true".to_vec(),
                        )),
                        None => {
                            let at = m.value.start + insert_point(inner, &inner_members).start;
                            let text = if inner_members.is_empty() {
                                b"\"include_usage\":true".to_vec()
                            } else {
                                b",\"include_usage\":true".to_vec()
                            };
                            edits.push((at..at, text));
                        }
                    }
                }
            }
            Some(m) => edits.push((m.value.clone(), b"{\"include_usage\":true}".to_vec())),
            None => edits.push((
                insert_point(body, &members),
                member(b"stream_options", b"{\"include_usage\":true}", &members),
            )),
        }
    }
    for (i, m) in members.iter().enumerate() {
        if !rw.drop.iter().any(|d| d.as_bytes() == &body[m.key.clone()]) {
            continue;
        }
        if rw.model.is_some() && key_is(m, b"model") {
            continue;
        }
        // The member and the comma that joins it to its neighbours.
        let range = match (i.checked_sub(1), members.get(i + 1)) {
            (_, Some(next)) => m.key.start - 1..next.key.start - 1,
            (Some(prev), None) => members[prev].value.end..m.value.end,
            (None, None) => m.key.start - 1..m.value.end,
        };
        edits.push((range, Vec::new()));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (range, text) in &edits {
        out.extend_from_slice(&body[pos..range.start]);
        out.extend_from_slice(text);
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    Some(out)
}

/// Where a new member goes: just before the object's closing brace.
fn insert_point(body: &[u8], members: &[Member]) -> Range<usize> {
    let from = members.last().map_or_else(
        || body.iter().position(|b| *b == b'{').map_or(0, |p| p + 1),
        |m| m.value.end,
    );
    let close = body[from..]
        .iter()
        .position(|b| *b == b'}')
        .map_or(body.len(), |p| from + p);
    close..close
}

fn member(key: &[u8], value: &[u8], existing: &[Member]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + value.len() + 4);
    if !existing.is_empty() {
        v.push(b',');
    }
    v.push(b'"');
    v.extend_from_slice(key);
    v.extend_from_slice(b"\":");
    v.extend_from_slice(value);
    v
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(body: &str, model: Option<&str>, usage: bool) -> String {
        let out = rewrite_body(
            body.as_bytes(),
            Rewrite {
                model,
                include_usage: usage,
                drop: &[],
            },
        );
        let s = out.map_or_else(|| body.to_string(), |v| String::from_utf8(v).unwrap());
        serde_json::from_str::<serde_json::Value>(&s).expect("rewrite must stay valid JSON");
        s
    }

    #[test]
    fn drops_rejected_fields() {
        let drop = |b: &str, d: &[&str]| -> String {
            let rw = Rewrite {
                model: None,
                include_usage: false,
                drop: d,
            };
            rewrite_body(b.as_bytes(), rw)
                .map(|v| String::from_utf8(v).unwrap())
                .unwrap_or_else(|| b.to_string())
        };
        let b = r#"{"model":"m", "logprobs":true, "n":1, "logit_bias":{"1":2}}"#;
        let out = drop(b, &["logprobs", "logit_bias"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"model":"m","n":1}), "{out}");
        let out = drop(r#"{"logprobs":true}"#, &["logprobs"]);
        assert_eq!(out, "{}");
        let out = drop(r#"{"a":1,"logprobs":true}"#, &["logprobs"]);
        assert_eq!(out, r#"{"a":1}"#);
        assert_eq!(drop(r#"{"a":1}"#, &["logprobs"]), r#"{"a":1}"#);
        let rw = Rewrite {
            model: Some("x"),
            include_usage: true,
            drop: &["seed"],
        };
        let out = rewrite_body(br#"{"seed":3,"model":"m"}"#, rw).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"x","stream_options":{"include_usage":true}})
        );
    }

    #[test]
    fn members_spans() {
        let b = br#" { "a" : 1 , "b":{"x":[1,"]"]}, "c\"d":"e"} "#;
        let m = top_level_members(b).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(&b[m[1].value.clone()], br#"{"x":[1,"]"]}"#);
        assert_eq!(&b[m[2].key.clone()], br#"c\"d"#);
        assert_eq!(&b[m[2].value.clone()], br#""e""#);
    }

    #[test]
    fn not_an_object() {
        assert!(top_level_members(b"[1]").is_none());
        assert!(top_level_members(b"{\"a\":").is_none());
    }

    #[test]
    fn replaces_model_only() {
        let b = r#"{"model": "alias",  "messages":[{"content":"model"}]}"#;
        assert_eq!(
            rw(b, Some("real/x"), false),
            r#"{"model": "real/x",  "messages":[{"content":"model"}]}"#
        );
    }

    #[test]
    fn same_model_is_noop() {
        assert!(rewrite_body(
            br#"{"model":"m"}"#,
            Rewrite {
                model: Some("m"),
                include_usage: false,
                drop: &[],
            }
        )
        .is_none());
    }

    #[test]
    fn adds_stream_options() {
        assert_eq!(
            rw(r#"{"model":"m","stream":true}"#, None, true),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rw(r#"{"stream_options":{}}"#, None, true),
            r#"{"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rw(r#"{"stream_options":{"a":1}}"#, None, true),
            r#"{"stream_options":{"a":1,"include_usage":true}}"#
        );
        assert_eq!(
            rw(r#"{"stream_options":{"include_usage":false}}"#, None, true),
            r#"{"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rw(r#"{"stream_options":null}"#, None, true),
            r#"{"stream_options":{"include_usage":true}}"#
        );
        assert!(rewrite_body(
            br#"{"stream_options":{"include_usage":true}}"#,
            Rewrite {
                model: None,
                include_usage: true,
                drop: &[],
            }
        )
        .is_none());
    }

    #[test]
    fn both_edits_in_order() {
        assert_eq!(
            rw(r#"{"stream":true,"model":"a"}"#, Some("b"), true),
            r#"{"stream":true,"model":"b","stream_options":{"include_usage":true}}"#
        );
        assert_eq!(rw("{}", Some("b"), false), r#"{"model":"b"}"#);
    }

    #[test]
    fn escapes_model() {
        assert_eq!(
            rw(r#"{"model":"a"}"#, Some("q\"x"), false),
            r#"{"model":"q\"x"}"#
        );
    }
}
