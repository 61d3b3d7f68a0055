//! Which requests the response cache takes, and the key of each.
//!
//! Cacheable: chat and text completions, and Anthropic messages, with `temperature`
//! exactly 0. `Cache-Control: no-cache` skips the lookup (and waiting on an identical
//! request in flight); `no-store` skips storing. The key is the SHA-256 of the endpoint
//! (so each dialect has its own entries), the model the request resolves to, and the
//! canonical body: the JSON with object keys sorted and `metadata`, `user`, `stream` and
//! `stream_options` removed, so that a streamed and a non-streamed OpenAI request share
//! an entry and key order or whitespace never matter. (The gateway keeps a streamed and
//! a whole Anthropic answer apart: it adds the shape to the model part of the key.)

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::endpoint::Endpoint;
use crate::head::RequestHead;

/// What the cache does for one request. The default is [`CachePolicy::OFF`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    /// Look the answer up (and wait on an identical request in flight).
    pub lookup: bool,
    /// Store a complete 200 answer.
    pub store: bool,
}

impl CachePolicy {
    /// Neither lookup nor store.
    pub const OFF: CachePolicy = CachePolicy {
        lookup: false,
        store: false,
    };

    /// Whether the cache is involved at all.
    pub fn active(self) -> bool {
        self.lookup || self.store
    }
}

/// The policy for a request, from its endpoint, body head and `Cache-Control` header.
pub fn policy(
    endpoint: Endpoint,
    head: &RequestHead<'_>,
    cache_control: Option<&[u8]>,
) -> CachePolicy {
    let cacheable = matches!(
        endpoint,
        Endpoint::Chat | Endpoint::Completions | Endpoint::Messages
    ) && head.temperature == Some(0.0);
    if !cacheable {
        return CachePolicy::OFF;
    }
    let has = |directive: &[u8]| {
        cache_control.is_some_and(|v| {
            v.split(|b| *b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(directive))
        })
    };
    CachePolicy {
        lookup: !has(b"no-cache"),
        store: !has(b"no-store"),
    }
}

const IGNORED: [&str; 5] = ["metadata", "user", "stream", "stream_options", "model"];

/// Writes `v` with object keys sorted, no whitespace.
fn canonical(v: &Value, out: &mut Vec<u8>, top: bool) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m
                .keys()
                .filter(|k| !(top && IGNORED.contains(&k.as_str())))
                .collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical(&m[k], out, false);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out, false);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Writes the JSON value `raw` canonically, like [`canonical`] but from borrowed text:
/// objects are read into maps of borrowed keys and raw values (no `Value` tree, no
/// copies of the strings), strings without escapes are copied as they are (serde_json
/// would write them the same), numbers are parsed and written back (so `1e2` and `100.0`
/// agree, as they do through a `Value`). `None` when a key has escapes (it cannot be
/// borrowed): the caller then takes the `Value` path, which gives the same bytes.
fn canonical_raw(raw: &str, out: &mut Vec<u8>, top: bool) -> Option<()> {
    use serde_json::value::RawValue;
    match raw.as_bytes().first()? {
        b'{' => {
            let m: std::collections::BTreeMap<&str, &RawValue> = serde_json::from_str(raw).ok()?;
            out.push(b'{');
            let mut first = true;
            for (k, v) in m {
                if top && IGNORED.contains(&k) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut *out, k).ok()?;
                out.push(b':');
                canonical_raw(v.get(), out, false)?;
            }
            out.push(b'}');
        }
        b'[' => {
            let a: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_raw(v.get(), out, false)?;
            }
            out.push(b']');
        }
        b'"' if !raw.as_bytes().contains(&b'\\') => out.extend_from_slice(raw.as_bytes()),
        b'"' => {
            let s: String = serde_json::from_str(raw).ok()?;
            serde_json::to_writer(&mut *out, &s).ok()?;
        }
        b't' | b'f' | b'n' => out.extend_from_slice(raw.as_bytes()),
        _ => {
            let n: serde_json::Number = serde_json::from_str(raw).ok()?;
            serde_json::to_writer(&mut *out, &n).ok()?;
        }
    }
    Some(())
}

/// The cache key (64 hex digits) of a request body, or `None` if it is not a JSON
/// object. `model` is the model the request resolves to (after aliases), so aliases of
/// one model share entries.
pub fn key(endpoint: Endpoint, model: &str, body: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &digest(endpoint, model, body)?);
    Some(out)
}

/// [`key`] in a scope, as the store names it: `{scope}:<64 hex digits>`, built in one
/// allocation.
pub fn scoped_key(scope: &str, endpoint: Endpoint, model: &str, body: &[u8]) -> Option<String> {
    let d = digest(endpoint, model, body)?;
    let mut out = String::with_capacity(scope.len() + 67);
    out.push('{');
    out.push_str(scope);
    out.push_str("}:");
    push_hex(&mut out, &d);
    Some(out)
}

/// Appends `bytes` as lowercase hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

fn digest(endpoint: Endpoint, model: &str, body: &[u8]) -> Option<[u8; 32]> {
    let mut material = Vec::with_capacity(body.len() + 64);
    material.extend_from_slice(b"switchyard-cache-v1\n");
    material.extend_from_slice(endpoint.label().as_bytes());
    material.push(b'\n');
    material.extend_from_slice(model.as_bytes());
    material.push(b'\n');
    let prefix = material.len();
    let raw = std::str::from_utf8(body)
        .ok()
        .and_then(|b| serde_json::from_str::<&serde_json::value::RawValue>(b).ok());
    let done = raw.is_some_and(|r| {
        r.get().starts_with('{') && canonical_raw(r.get(), &mut material, true).is_some()
    });
    if !done {
        material.truncate(prefix);
        let v: Value = serde_json::from_slice(body).ok()?;
        if !v.is_object() {
            return None;
        }
        canonical(&v, &mut material, true);
    }
    Some(Sha256::digest(&material).into())
}

/// The same key through a `serde_json::Value` tree, as [`key`] computed it before the
/// borrowed path: the reference the tests hold [`key`] to, and the benchmark's
/// baseline. Slower; not for the request path.
pub fn key_reference(endpoint: Endpoint, model: &str, body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if !v.is_object() {
        return None;
    }
    let mut material = Vec::new();
    material.extend_from_slice(b"switchyard-cache-v1\n");
    material.extend_from_slice(endpoint.label().as_bytes());
    material.push(b'\n');
    material.extend_from_slice(model.as_bytes());
    material.push(b'\n');
    canonical(&v, &mut material, true);
    Some(hex::encode(Sha256::digest(&material)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[ -~é\u{2028}\n\t\"\\\\]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(("[a-z_\"\\\\é]{1,6}", inner), 0..5)
                    .prop_map(|kv| { Value::Object(kv.into_iter().collect()) }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The borrowed path gives the same key as the `Value` path, for any JSON
        /// (escaped keys and strings, numbers in any spelling serde_json writes).
        #[test]
        fn borrowed_canonical_form_matches_the_value_tree(
            fields in proptest::collection::vec(("[a-z_\"\\\\]{1,8}", json_value()), 0..6),
        ) {
            let body: Value = Value::Object(fields.into_iter().collect());
            let bytes = serde_json::to_vec(&body).unwrap();
            proptest::prop_assert_eq!(
                key(Endpoint::Chat, "m", &bytes),
                key_reference(Endpoint::Chat, "m", &bytes)
            );
        }
    }

    #[test]
    fn number_spellings_and_escapes_agree_with_the_value_tree() {
        for body in [
            &br#"{"temperature":0,"x":1e2,"y":0.0,"z":-0,"w":12345678901234567890}"#[..],
            br#"{"a":"\u0041\n","b\"q":1,"messages":[{"content":"caf\u00e9"}]}"#,
            br#"{"n":1.5E-3,"deep":[[[{"b":1,"a":2}]]],"s":"plain"}"#,
            br#"  {"padded" : [ 1 , 2 ] }  "#,
        ] {
            assert_eq!(
                key(Endpoint::Chat, "m", body),
                key_reference(Endpoint::Chat, "m", body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn head(b: &[u8]) -> RequestHead<'_> {
        RequestHead::parse(b).unwrap()
    }

    #[test]
    fn only_temperature_zero_completions() {
        let b = br#"{"model":"m","temperature":0}"#;
        assert_eq!(
            policy(Endpoint::Chat, &head(b), None),
            CachePolicy {
                lookup: true,
                store: true
            }
        );
        assert_eq!(
            policy(Endpoint::Embeddings, &head(b), None),
            CachePolicy::OFF
        );
        assert_eq!(
            policy(Endpoint::Chat, &head(br#"{"temperature":0.2}"#), None),
            CachePolicy::OFF
        );
        assert_eq!(
            policy(Endpoint::Chat, &head(br#"{"model":"m"}"#), None),
            CachePolicy::OFF
        );
        assert_eq!(
            policy(Endpoint::Chat, &head(b), Some(b"No-Cache")),
            CachePolicy {
                lookup: false,
                store: true
            }
        );
        assert_eq!(
            policy(Endpoint::Chat, &head(b), Some(b"max-age=0, no-store")),
            CachePolicy {
                lookup: true,
                store: false
            }
        );
    }

    #[test]
    fn the_scoped_key_is_the_scope_in_braces_then_the_key() {
        let body = br#"{"model":"x","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
        let k = key(Endpoint::Chat, "m", body).unwrap();
        assert_eq!(
            scoped_key("team-a", Endpoint::Chat, "m", body),
            Some(format!("{{team-a}}:{k}"))
        );
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(scoped_key("t", Endpoint::Chat, "m", b"[1]"), None);
    }

    #[test]
    fn key_ignores_order_whitespace_metadata_user_and_stream() {
        let a = key(
            Endpoint::Chat,
            "m",
            br#"{"model":"x","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        let b = key(
            Endpoint::Chat,
            "m",
            br#"{ "messages" : [ {"content":"hi","role":"user"} ], "temperature":0, "user":"u1",
                 "metadata":{"a":1}, "stream":true, "stream_options":{"include_usage":true}, "model":"alias"}"#,
        );
        assert_eq!(a, b);
        assert_eq!(a.as_ref().unwrap().len(), 64);
    }

    #[test]
    fn key_separates_what_matters() {
        let base = br#"{"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
        let k = key(Endpoint::Chat, "m", base);
        assert_ne!(k, key(Endpoint::Chat, "other", base));
        assert_ne!(k, key(Endpoint::Completions, "m", base));
        assert_ne!(
            k,
            key(
                Endpoint::Chat,
                "m",
                br#"{"temperature":0,"messages":[{"role":"user","content":"ho"}]}"#
            )
        );
        assert_ne!(
            k,
            key(
                Endpoint::Chat,
                "m",
                br#"{"temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#
            )
        );
        assert_eq!(key(Endpoint::Chat, "m", b"[1]"), None);
    }
}
