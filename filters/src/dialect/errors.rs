//! Upstream error responses in the client's dialect (spec §4.1, §4.2), and the Anthropic
//! error body for errors the gateway makes itself.
//!
//! Statuses matter more than strings: SDKs pick their exception class (and whether to
//! retry) by status. So an Anthropic 529 "overloaded" reaches an OpenAI client as 503,
//! and an OpenAI-compatible 503 reaches an Anthropic client as 529 `overloaded_error`.
//! Headers (`retry-after`, `request-id` → `x-request-id`) are the caller's to copy.

use serde_json::{json, Value};

use crate::error::{clip, error_json};

/// Upstream messages are cut to this many bytes.
const MESSAGE_LIMIT: usize = 2000;

/// Anthropic's documented error types, which pass through unchanged.
const ANTHROPIC_TYPES: [&str; 11] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
    "error",
];

/// `{"type":"error","error":{"type":…,"message":…}}`, the Anthropic error body, for errors
/// the gateway answers itself on `/v1/messages`.
pub fn anthropic_error_body(error_type: &str, message: &str) -> Vec<u8> {
    let v = json!({"type": "error", "error": {"type": error_type, "message": message}});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The Anthropic error type for an HTTP status: 400 `invalid_request_error`, 401
/// `authentication_error`, 403 `permission_error`, 404 `not_found_error`, 413
/// `request_too_large`, 429 `rate_limit_error`, 500 `api_error`, 503 and 529
/// `overloaded_error`; any other 4xx `invalid_request_error`, anything else `api_error`.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

/// The upstream's message: `error.message` (both dialects nest it there), else a
/// top-level `message` or a string `error`, else the body as text.
fn upstream_message(v: Option<&Value>, body: &[u8]) -> String {
    let found = v.and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .or_else(|| v["error"].as_str())
            .or_else(|| v["detail"].as_str())
    });
    let text = match found {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(body).trim().to_string(),
    };
    clip(&text, MESSAGE_LIMIT).into_owned()
}

/// An Anthropic error response as the OpenAI client's `(status, body)` (§4.1).
///
/// Status: 400, 401, 403, 404, 413, 429 and other 4xx keep theirs; 529 (or an
/// `overloaded_error` body) → 503 with code `overloaded`; 500 and other 5xx → 502 (an
/// upstream fault: Bad Gateway). Body: `{"error":{"message":"anthropic: …","type",
/// "param":null,"code"}}` with codes `context_length_exceeded` (400 "prompt is too
/// long"), `invalid_api_key` (401), `model_not_found` (404 about a model),
/// `request_too_large` (413), `rate_limit_exceeded` (429). A 401 here is the gateway's
/// provider key failing; the caller may prefer to answer 502 and alert.
pub fn anthropic_error_to_openai(status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let etype = v
        .as_ref()
        .and_then(|v| v["error"]["type"].as_str())
        .unwrap_or("");
    let message = format!("anthropic: {}", upstream_message(v.as_ref(), body));
    let lower = message.to_ascii_lowercase();
    let status = match etype {
        "overloaded_error" => 529,
        "rate_limit_error" => 429,
        _ => status,
    };
    let (out, otype, code): (u16, &str, Option<&str>) = match status {
        400 => {
            let too_long = lower.contains("prompt is too long")
                || lower.contains("exceed context limit")
                || lower.contains("context window");
            (
                400,
                "invalid_request_error",
                too_long.then_some("context_length_exceeded"),
            )
        }
        401 => (401, "authentication_error", Some("invalid_api_key")),
        403 => (403, "permission_error", None),
        404 => (
            404,
            "not_found_error",
            lower.contains("model").then_some("model_not_found"),
        ),
        413 => (413, "invalid_request_error", Some("request_too_large")),
        429 => (429, "rate_limit_error", Some("rate_limit_exceeded")),
        529 => (503, "server_error", Some("overloaded")),
        s if (400..500).contains(&s) => (s, "invalid_request_error", None),
        _ => (502, "server_error", None),
    };
    (out, error_json(&message, otype, None, code))
}

/// An OpenAI(-compatible) error response as the Anthropic client's `(status, body)`
/// (§4.2).
///
/// A body that is already Anthropic-shaped with a documented Anthropic type passes
/// unchanged, status included. Otherwise: 503 → 529, 422 → 400, other statuses keep
/// theirs; the type follows [`anthropic_error_type`] of the new status and the message
/// is the upstream's `error.message` (else `message`, else the raw text, clipped).
/// Anthropic-shaped bodies with other types (vLLM's `internal_error`) are re-typed the
/// same way.
pub fn openai_error_to_anthropic(status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(v) = &v {
        let t = v["error"]["type"].as_str().unwrap_or("");
        if v["type"] == "error" && ANTHROPIC_TYPES.contains(&t) && t != "error" {
            return (status, body.to_vec());
        }
    }
    let out = match status {
        503 => 529,
        422 => 400,
        // A success or informational status on an error path is still an upstream fault.
        0..=399 => 502,
        s => s,
    };
    let message = upstream_message(v.as_ref(), body);
    let message = if message.is_empty() {
        format!("upstream returned status {status}")
    } else {
        message
    };
    (
        out,
        anthropic_error_body(anthropic_error_type(out), &message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn anthropic_statuses() {
        let body = |t: &str, m: &str| anthropic_error_body(t, m);
        let cases: [(u16, &str, &str, u16, &str, Value); 9] = [
            (
                400,
                "invalid_request_error",
                "prompt is too long: 300000 tokens > 200000 maximum",
                400,
                "invalid_request_error",
                json!("context_length_exceeded"),
            ),
            (
                400,
                "invalid_request_error",
                "bad",
                400,
                "invalid_request_error",
                Value::Null,
            ),
            (
                401,
                "authentication_error",
                "x",
                401,
                "authentication_error",
                json!("invalid_api_key"),
            ),
            (
                403,
                "permission_error",
                "x",
                403,
                "permission_error",
                Value::Null,
            ),
            (
                404,
                "not_found_error",
                "model: nope",
                404,
                "not_found_error",
                json!("model_not_found"),
            ),
            (
                413,
                "request_too_large",
                "x",
                413,
                "invalid_request_error",
                json!("request_too_large"),
            ),
            (
                429,
                "rate_limit_error",
                "x",
                429,
                "rate_limit_error",
                json!("rate_limit_exceeded"),
            ),
            (500, "api_error", "x", 502, "server_error", Value::Null),
            (
                529,
                "overloaded_error",
                "x",
                503,
                "server_error",
                json!("overloaded"),
            ),
        ];
        for (s, t, m, want_s, want_t, want_c) in cases {
            let (got_s, b) = anthropic_error_to_openai(s, &body(t, m));
            let v = parse(&b);
            assert_eq!(got_s, want_s, "{s} {t}");
            assert_eq!(v["error"]["type"], want_t, "{s} {t}");
            assert_eq!(v["error"]["code"], want_c, "{s} {t}");
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("anthropic: "));
            assert!(v["error"]["param"].is_null());
        }
        let (s, b) = anthropic_error_to_openai(504, b"<html>gateway timeout</html>");
        assert_eq!(s, 502);
        assert_eq!(
            parse(&b)["error"]["message"],
            "anthropic: <html>gateway timeout</html>"
        );
        assert_eq!(anthropic_error_to_openai(409, b"{}").0, 409);
    }

    #[test]
    fn openai_statuses() {
        for (s, want_s, want_t) in [
            (400, 400, "invalid_request_error"),
            (401, 401, "authentication_error"),
            (403, 403, "permission_error"),
            (404, 404, "not_found_error"),
            (413, 413, "request_too_large"),
            (422, 400, "invalid_request_error"),
            (429, 429, "rate_limit_error"),
            (500, 500, "api_error"),
            (502, 502, "api_error"),
            (503, 529, "overloaded_error"),
        ] {
            let (got, b) = openai_error_to_anthropic(
                s,
                br#"{"error":{"message":"m","type":"x","param":null,"code":null}}"#,
            );
            let v = parse(&b);
            assert_eq!(got, want_s, "{s}");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], want_t, "{s}");
            assert_eq!(v["error"]["message"], "m");
        }
        let (_, b) = openai_error_to_anthropic(500, br#"{"message":"flat"}"#);
        assert_eq!(parse(&b)["error"]["message"], "flat");
        let (_, b) = openai_error_to_anthropic(500, b"plain text");
        assert_eq!(parse(&b)["error"]["message"], "plain text");
        let (_, b) = openai_error_to_anthropic(500, b"");
        assert_eq!(
            parse(&b)["error"]["message"],
            "upstream returned status 500"
        );
        // vLLM's native endpoint: Anthropic envelope, non-Anthropic type.
        let (s, b) = openai_error_to_anthropic(
            500,
            br#"{"type":"error","error":{"type":"internal_error","message":"boom"}}"#,
        );
        assert_eq!(s, 500);
        assert_eq!(parse(&b)["error"]["type"], "api_error");
        assert_eq!(openai_error_to_anthropic(200, b"{}").0, 502);
    }

    #[test]
    fn error_types_by_status() {
        assert_eq!(anthropic_error_type(529), "overloaded_error");
        assert_eq!(anthropic_error_type(418), "invalid_request_error");
        assert_eq!(anthropic_error_type(504), "api_error");
        assert_eq!(anthropic_error_type(0), "api_error");
    }
}
