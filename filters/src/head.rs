//! The part of an OpenAI request body that routing needs, parsed without copying.
//!
//! The whole body is validated as JSON (so malformed input is rejected before anything is
//! forwarded), but only a handful of top-level fields are materialised, borrowed from the
//! body where possible.

use std::borrow::Cow;

use serde::Deserialize;

/// What the gateway reads from a request body. Borrowed from the body.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct RequestHead<'a> {
    /// The requested model, as the client wrote it.
    #[serde(borrow, default, deserialize_with = "cow_str")]
    pub model: Option<Cow<'a, str>>,
    /// `stream: true` asks for server-sent events.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub stream: Option<bool>,
    /// Sampling temperature; `0` makes a request cacheable.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub temperature: Option<f64>,
    /// Upper bound of generated tokens (`max_tokens`).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_tokens: Option<u64>,
    /// Upper bound of generated tokens (`max_completion_tokens`, newer clients).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_completion_tokens: Option<u64>,
    /// `stream_options` as sent by the client.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// The `stream_options` object of a chat or completion request.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct StreamOptions {
    /// Whether the client asked for the final usage-only chunk.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub include_usage: Option<bool>,
}

/// Why a body could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The body is not valid JSON; the message says where.
    Malformed(String),
    /// The body is JSON but not an object.
    NotAnObject,
}

impl<'a> RequestHead<'a> {
    /// Parses `body`, which must be one JSON object. Unknown fields are skipped (but
    /// validated); fields of an unexpected type are treated as absent rather than
    /// rejected, so the upstream gets to give its own answer on them.
    pub fn parse(body: &'a [u8]) -> Result<Self, HeadError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') {
            // Validate first so `[1,` reports malformed rather than "not an object".
            return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(HeadError::NotAnObject),
                Err(e) => Err(HeadError::Malformed(e.to_string())),
            };
        }
        serde_json::from_slice(body).map_err(|e| HeadError::Malformed(e.to_string()))
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

/// Borrows the string from the body when it has no escapes; copies it otherwise.
fn cow_str<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        _ => None,
    })
}

fn lenient_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    })
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    })
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
        let h = RequestHead::parse(br#"{"model":"a\/b"}"#).unwrap();
        assert_eq!(h.model.as_deref(), Some("a/b"));
    }

    #[test]
    fn missing_model_is_none() {
        let h = RequestHead::parse(br#"{"messages":[]}"#).unwrap();
        assert_eq!(h.model, None);
    }

    #[test]
    fn malformed_json_is_rejected() {
        assert!(matches!(
            RequestHead::parse(br#"{"model": "#),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            RequestHead::parse(br#"{"model":"x",}"#),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            RequestHead::parse(b""),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn non_object_is_rejected() {
        assert_eq!(RequestHead::parse(b"[1,2]"), Err(HeadError::NotAnObject));
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
}
