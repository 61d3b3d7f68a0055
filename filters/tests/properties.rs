//! Property tests of the parsers that read client and upstream bytes: the request-head
//! scanner, the SSE usage parser and stripper, the cache-key canonicaliser and the body
//! rewrite. Each runs a bounded number of generated cases in `cargo test`; any failing
//! case proptest finds is saved under `proptest-regressions/` and replayed first on every
//! later run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use switchyard_filters::cachekey;
use switchyard_filters::endpoint::Endpoint;
use switchyard_filters::head::{HeadError, RequestHead};
use switchyard_filters::rewrite::{rewrite_body, Rewrite};
use switchyard_filters::usage::{usage_from_tail, Usage, UsageChunkStripper, UsageScanner};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1500,
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON values, strings included with escapes and non-ASCII text.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[ -~é😀\"\\\\\n\t\u{1}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A request body: an object with some of the fields the gateway reads, and others.
fn request_body() -> impl Strategy<Value = Value> {
    (
        prop::option::of("[ -~é]{0,20}"),
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![Just(0.0f64), 0.0f64..2.0]),
        prop::option::of(0u64..100_000),
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4),
    )
        .prop_map(|(model, stream, temperature, max_tokens, rest)| {
            let mut m: Map<String, Value> = rest.into_iter().collect();
            for k in ["model", "stream", "temperature", "max_tokens"] {
                m.remove(k);
            }
            if let Some(v) = model {
                m.insert("model".into(), Value::String(v));
            }
            if let Some(v) = stream {
                m.insert("stream".into(), Value::Bool(v));
            }
            if let Some(v) = temperature {
                m.insert("temperature".into(), Value::from(v));
            }
            if let Some(v) = max_tokens {
                m.insert("max_tokens".into(), Value::from(v));
            }
            m.insert(
                "messages".into(),
                serde_json::json!([{"role": "user", "content": "hi"}]),
            );
            Value::Object(m)
        })
}

/// `v` serialised with arbitrary whitespace between tokens.
fn with_whitespace(v: &Value, ws: &[u8]) -> Vec<u8> {
    let compact = serde_json::to_vec(v).unwrap();
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut in_str = false;
    let mut esc = false;
    let mut k = 0;
    for &c in &compact {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        if c == b'"' {
            in_str = true;
        }
        out.push(c);
        if matches!(c, b'{' | b'[' | b',' | b':') {
            if let Some(w) = ws.get(k % ws.len().max(1)) {
                out.extend(std::iter::repeat_n(
                    b" \t\n\r"[(*w % 4) as usize],
                    (*w % 3) as usize,
                ));
            }
            k += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: the scanner never panics, and accepts exactly what serde_json accepts
    /// (minus its own stricter refusals: duplicate read keys, a non-string model).
    #[test]
    fn head_scanner_agrees_with_serde_json_on_any_bytes(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let ours = RequestHead::parse(&b);
        let theirs = serde_json::from_slice::<Value>(&b);
        match (&ours, &theirs) {
            (Ok(h), Ok(v)) => {
                prop_assert!(v.is_object());
                prop_assert_eq!(h.model.as_deref(), v["model"].as_str());
            }
            (Err(HeadError::NotAnObject), Ok(v)) => prop_assert!(!v.is_object()),
            (Err(HeadError::Malformed(_)), Err(_)) => {}
            (Err(HeadError::Malformed(_)), Ok(v)) => {
                prop_assert!(!v["model"].is_string() && !v["model"].is_null())
            }
            (Err(HeadError::Duplicate(_)), Ok(v)) => prop_assert!(v.is_object()),
            _ => prop_assert!(false, "disagree: ours {:?}, serde_json {:?}", ours, theirs.map(|_| ())),
        }
    }

    /// Real-shaped bodies with any whitespace: the fields read are the fields sent.
    #[test]
    fn head_scanner_reads_the_fields_sent(v in request_body(), ws in prop::collection::vec(any::<u8>(), 1..16)) {
        let b = with_whitespace(&v, &ws);
        let h = RequestHead::parse(&b).unwrap();
        prop_assert_eq!(h.model.as_deref(), v["model"].as_str());
        prop_assert_eq!(h.stream, v["stream"].as_bool());
        prop_assert_eq!(h.temperature, v["temperature"].as_f64());
        prop_assert_eq!(h.max_tokens, v["max_tokens"].as_u64());
    }

    /// The cache key ignores key order and whitespace, and sees any change of content.
    #[test]
    fn cache_key_is_canonical(v in request_body(), ws in prop::collection::vec(any::<u8>(), 1..16), other in "[a-z]{1,8}") {
        let a = serde_json::to_vec(&v).unwrap();
        let b = with_whitespace(&v, &ws);
        let ka = cachekey::key(Endpoint::Chat, "m", &a).unwrap();
        prop_assert_eq!(&ka, &cachekey::key(Endpoint::Chat, "m", &b).unwrap());
        prop_assert_ne!(&ka, &cachekey::key(Endpoint::Chat, "other-model", &a).unwrap());
        let mut changed = v.clone();
        changed["messages"][0]["content"] = Value::String(format!("hi {other}"));
        let kc = cachekey::key(Endpoint::Chat, "m", &serde_json::to_vec(&changed).unwrap()).unwrap();
        prop_assert_ne!(&ka, &kc);
        // Fields the key drops do not change it.
        let mut meta = v.clone();
        meta["metadata"] = serde_json::json!({"trace": other});
        meta["user"] = Value::String("someone".into());
        let km = cachekey::key(Endpoint::Chat, "m", &serde_json::to_vec(&meta).unwrap()).unwrap();
        prop_assert_eq!(&ka, &km);
    }

    /// Any bytes: the cache key never panics.
    #[test]
    fn cache_key_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = cachekey::key(Endpoint::Chat, "m", &b);
    }

    /// The rewrite changes the model (and adds include_usage) and nothing else.
    #[test]
    fn rewrite_changes_only_what_it_says(v in request_body(), ws in prop::collection::vec(any::<u8>(), 1..16), model in "[ -~é]{1,16}", usage in any::<bool>()) {
        let mut v = v;
        if v.get("model").is_none() {
            v["model"] = Value::String("client-model".into());
        }
        let b = with_whitespace(&v, &ws);
        // `None`: nothing needed to change (the model was already this one), and the
        // caller forwards the body as it is.
        let out = rewrite_body(&b, Rewrite { model: Some(&model), include_usage: usage, drop: &[] })
            .unwrap_or_else(|| b.clone());
        let mut got: Value = serde_json::from_slice(&out).unwrap();
        // Compared with the body as serde_json reads it (its float parsing is not exact,
        // so the generated value itself would not compare equal).
        let v: Value = serde_json::from_slice(&b).unwrap();
        prop_assert_eq!(got["model"].as_str(), Some(model.as_str()));
        if usage {
            prop_assert_eq!(&got["stream_options"]["include_usage"], &Value::Bool(true));
        }
        let mut want = v.clone();
        let g = got.as_object_mut().unwrap();
        let w = want.as_object_mut().unwrap();
        for m in [&mut *g, &mut *w] {
            m.remove("model");
            m.remove("stream_options");
        }
        prop_assert_eq!(got, want);
    }

    /// Any bytes, cut anywhere: the usage scanner never panics, and the usage it finds
    /// does not depend on where the chunks were cut.
    #[test]
    fn usage_scanner_is_split_invariant(events in prop::collection::vec("[ -~]{0,30}", 0..6), prompt in 0u64..1_000_000, completion in 0u64..1_000_000, cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let mut stream = Vec::new();
        for e in &events {
            stream.extend_from_slice(format!("data: {{\"x\":{}}}\n\n", serde_json::to_string(e).unwrap()).as_bytes());
        }
        stream.extend_from_slice(format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
            prompt + completion
        ).as_bytes());
        let want = Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
        let mut whole = UsageScanner::new();
        whole.feed(&stream);
        prop_assert_eq!(whole.usage(), Some(want));
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut split = UsageScanner::new();
        let mut last = 0;
        for p in points.into_iter().chain([stream.len()]) {
            split.feed(&stream[last..p]);
            last = p;
        }
        prop_assert_eq!(split.usage(), Some(want));
        prop_assert_eq!(usage_from_tail(&stream), Some(want));
    }

    /// Any bytes: the usage parsers never panic.
    #[test]
    fn usage_parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut s = UsageScanner::new();
        s.feed(&b);
        let _ = usage_from_tail(&b);
        let mut st = UsageChunkStripper::new();
        let _ = st.filter(Bytes::from(b), true);
    }

    /// The stripper removes exactly the usage-only event, wherever the chunks were cut.
    #[test]
    fn stripper_removes_only_the_usage_event(events in prop::collection::vec("[ -~]{0,30}", 1..6), cuts in prop::collection::vec(any::<usize>(), 0..6), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n\r\n" } else { "\n\n" };
        let mut kept = Vec::new();
        for e in &events {
            kept.extend_from_slice(format!("data: {{\"choices\":[{{\"x\":{}}}]}}{sep}", serde_json::to_string(e).unwrap()).as_bytes());
        }
        let usage_ev = format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}}}{sep}");
        let done = format!("data: [DONE]{sep}");
        let mut stream = kept.clone();
        stream.extend_from_slice(usage_ev.as_bytes());
        stream.extend_from_slice(done.as_bytes());
        let mut want = kept;
        want.extend_from_slice(done.as_bytes());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut st = UsageChunkStripper::new();
        let mut out = Vec::new();
        let mut last = 0;
        let ends: Vec<usize> = points.into_iter().chain([stream.len()]).collect();
        for (i, p) in ends.iter().enumerate() {
            let chunk = Bytes::copy_from_slice(&stream[last..*p]);
            out.extend_from_slice(&st.filter(chunk, i + 1 == ends.len()));
            last = *p;
        }
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
        prop_assert_eq!(st.usage().map(|u| u.total_tokens), Some(7));
    }
}
