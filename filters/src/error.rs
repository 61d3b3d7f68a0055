//! Every error the gateway answers by itself, with its status, OpenAI error type and code,
//! and a bounded metric label. [`GatewayError::body`] is the one place that writes the
//! OpenAI-style error JSON `{"error":{"message","type","param","code"}}`.

use std::fmt::Write as _;

/// An error the gateway answers itself. Messages never contain credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    /// The body is not valid JSON.
    MalformedJson(String),
    /// The body is JSON but not an object.
    BodyNotObject,
    /// The request has no `model`.
    MissingModel,
    /// No provider or local backend serves this model.
    ModelNotFound(String),
    /// The request body is larger than the configured limit (bytes).
    BodyTooLarge(usize),
    /// The request body could not be read (client went away, bad framing, timeout).
    BodyRead(String),
    /// The path exists but not for this method.
    MethodNotAllowed {
        /// The method the client used.
        method: String,
        /// What the path allows.
        allowed: &'static str,
    },
    /// No such endpoint.
    UnknownPath {
        /// The method the client used.
        method: String,
        /// The path the client asked for.
        path: String,
    },
    /// Every candidate backend for the model was unavailable or failed before answering.
    NoBackend {
        /// The model asked for.
        model: String,
        /// What was tried or skipped, and why (human readable).
        detail: String,
    },
    /// The upstream failed after the response started or with no usable answer.
    Upstream(String),
    /// The upstream took too long.
    UpstreamTimeout(String),
    /// No or unknown API key.
    Unauthorized(&'static str),
    /// The key may not use this model.
    ModelNotAllowed(String),
    /// The tenant is over its request or token rate.
    RateLimited {
        /// Which limit: `requests` or `tokens`.
        limit: &'static str,
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// Every provider for the model is out of its daily quota.
    QuotaExhausted(String),
    /// Shared state (Redis) is unavailable and the policy is to refuse.
    StateUnavailable,
    /// The admin secret is missing or wrong.
    AdminUnauthorized,
    /// A bug or an unexpected condition inside the gateway.
    Internal(String),
    /// The model name is longer than the limit (bytes).
    ModelNameTooLong(usize),
    /// A field the gateway reads appears twice in the body.
    DuplicateKey(&'static str),
    /// The request header block is larger than the limit (bytes).
    HeaderTooLarge(usize),
    /// The client was too slow sending its request: `header` or `body`.
    ClientTimeout(&'static str),
    /// The request is not valid HTTP (Pingora's parser refused it).
    BadHttp,
    /// Every candidate answered 429.
    UpstreamRateLimited {
        /// The smallest `Retry-After` any candidate gave, in seconds.
        retry_after_secs: Option<u64>,
        /// Which candidates answered 429.
        detail: String,
    },
    /// The gateway has too many connections open.
    Overloaded,
    /// The gateway is shutting down and cut the response.
    ShuttingDown,
    /// A request the gateway cannot take as it is (a field missing or not supported
    /// by the provider it would go to).
    Invalid {
        /// What is wrong.
        message: String,
        /// The field at fault.
        param: Option<String>,
        /// A stable reason (`unsupported_parameter`, `invalid_request_error`, …).
        code: &'static str,
    },
}

/// Echoed values (model names, paths) are cut to this many bytes in messages.
pub const ECHO_LIMIT: usize = 200;

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}

/// The whole HTTP/1.1 answer to a connection over the cap: 503, `Connection: close`,
/// `Retry-After: 1`, and the OpenAI-style error body.
pub fn overloaded_response() -> Vec<u8> {
    let e = GatewayError::Overloaded;
    let body = e.body();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl GatewayError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson(_)
            | Self::BodyNotObject
            | Self::MissingModel
            | Self::BodyRead(_)
            | Self::ModelNameTooLong(_)
            | Self::DuplicateKey(_)
            | Self::BadHttp
            | Self::Invalid { .. } => 400,
            Self::ClientTimeout(_) => 408,
            Self::HeaderTooLarge(_) => 431,
            Self::UpstreamRateLimited { .. } => 429,
            Self::Overloaded | Self::ShuttingDown => 503,
            Self::Unauthorized(_) | Self::AdminUnauthorized => 401,
            Self::ModelNotAllowed(_) => 403,
            Self::ModelNotFound(_) | Self::UnknownPath { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge(_) => 413,
            Self::RateLimited { .. } | Self::QuotaExhausted(_) => 429,
            Self::Internal(_) => 500,
            Self::Upstream(_) => 502,
            Self::NoBackend { .. } | Self::StateUnavailable => 503,
            Self::UpstreamTimeout(_) => 504,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) | Self::AdminUnauthorized => "authentication_error",
            Self::ModelNotAllowed(_) => "permission_error",
            Self::RateLimited { .. } | Self::UpstreamRateLimited { .. } => "rate_limit_error",
            Self::Overloaded | Self::ShuttingDown => "service_unavailable",
            Self::QuotaExhausted(_) => "insufficient_quota",
            Self::NoBackend { .. } | Self::StateUnavailable => "service_unavailable",
            Self::Upstream(_) | Self::UpstreamTimeout(_) | Self::Internal(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `error.code`: a stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "invalid_json",
            Self::BodyNotObject => "invalid_request_body",
            Self::MissingModel => "missing_model",
            Self::ModelNotFound(_) => "model_not_found",
            Self::BodyTooLarge(_) => "request_too_large",
            Self::BodyRead(_) => "invalid_request_body",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UnknownPath { .. } => "unknown_url",
            Self::NoBackend { .. } => "no_backend_available",
            Self::Upstream(_) => "upstream_error",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::Unauthorized(_) => "invalid_api_key",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::QuotaExhausted(_) => "quota_exhausted",
            Self::StateUnavailable => "state_unavailable",
            Self::AdminUnauthorized => "invalid_admin_secret",
            Self::Internal(_) => "internal_error",
            Self::ModelNameTooLong(_) => "model_too_long",
            Self::DuplicateKey(_) => "duplicate_key",
            Self::HeaderTooLarge(_) => "request_header_too_large",
            Self::ClientTimeout(_) => "request_timeout",
            Self::BadHttp => "invalid_http_request",
            Self::UpstreamRateLimited { .. } => "upstream_rate_limited",
            Self::Overloaded => "too_many_connections",
            Self::ShuttingDown => "shutting_down",
            Self::Invalid { code, .. } => code,
        }
    }

    /// OpenAI's `error.param`: the request field at fault, if one is.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::MissingModel
            | Self::ModelNotFound(_)
            | Self::ModelNotAllowed(_)
            | Self::ModelNameTooLong(_) => Some("model"),
            Self::DuplicateKey(k) => Some(k),
            Self::Invalid { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// A bounded label for metrics (the code; never a model name or a message).
    pub fn metric_label(&self) -> &'static str {
        self.code()
    }

    /// Whether a client may succeed by sending the same request again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::NoBackend { .. }
                | Self::Upstream(_)
                | Self::UpstreamTimeout(_)
                | Self::RateLimited { .. }
                | Self::StateUnavailable
                | Self::UpstreamRateLimited { .. }
                | Self::Overloaded
                | Self::ShuttingDown
                | Self::ClientTimeout(_)
        )
    }

    /// A human-readable message for `error.message`.
    pub fn message(&self) -> String {
        let mut m = String::new();
        let _ = match self {
            Self::MalformedJson(d) => write!(m, "The request body is not valid JSON: {d}"),
            Self::BodyNotObject => write!(m, "The request body must be a JSON object."),
            Self::MissingModel => write!(m, "You must provide a model parameter."),
            Self::ModelNotFound(model) => write!(
                m,
                "The model `{}` does not exist or no configured backend serves it.",
                clip(model, ECHO_LIMIT)
            ),
            Self::BodyTooLarge(limit) => write!(
                m,
                "The request body is larger than the limit of {limit} bytes."
            ),
            Self::BodyRead(d) => write!(m, "The request body could not be read: {d}"),
            Self::MethodNotAllowed { method, allowed } => write!(
                m,
                "Method {} is not allowed here; use {allowed}.",
                clip(method, 32)
            ),
            Self::UnknownPath { method, path } => write!(
                m,
                "Invalid URL ({} {})",
                clip(method, 32),
                clip(path, ECHO_LIMIT)
            ),
            Self::NoBackend { model, detail } => write!(
                m,
                "No backend is available for model `{}`: {detail}",
                clip(model, ECHO_LIMIT)
            ),
            Self::Upstream(d) => write!(m, "The upstream failed: {d}"),
            Self::UpstreamTimeout(d) => write!(m, "The upstream timed out: {d}"),
            Self::Unauthorized(why) => write!(m, "{why}"),
            Self::ModelNotAllowed(model) => write!(
                m,
                "This API key may not use the model `{}`.",
                clip(model, ECHO_LIMIT)
            ),
            Self::RateLimited {
                limit,
                retry_after_secs,
            } => write!(
                m,
                "Rate limit reached for {limit}; retry after {retry_after_secs} s."
            ),
            Self::QuotaExhausted(d) => write!(m, "Daily quota exhausted: {d}"),
            Self::StateUnavailable => write!(
                m,
                "Shared state is unavailable and the gateway is configured to fail closed."
            ),
            Self::AdminUnauthorized => write!(m, "Missing or wrong X-Admin-Secret."),
            Self::Internal(d) => write!(m, "Internal gateway error: {d}"),
            Self::ModelNameTooLong(limit) => write!(
                m,
                "The model name is longer than the limit of {limit} bytes."
            ),
            Self::DuplicateKey(k) => write!(
                m,
                "The request body has the field `{k}` more than once; send it once."
            ),
            Self::HeaderTooLarge(limit) => write!(
                m,
                "The request header is larger than the limit of {limit} bytes."
            ),
            Self::ClientTimeout(what) => {
                write!(m, "The request {what} did not arrive in time.")
            }
            Self::BadHttp => write!(m, "The request is not valid HTTP/1.1."),
            Self::UpstreamRateLimited {
                retry_after_secs,
                detail,
            } => match retry_after_secs {
                Some(s) => write!(
                    m,
                    "Every backend is rate limited ({detail}); retry after {s} s."
                ),
                None => write!(m, "Every backend is rate limited ({detail})."),
            },
            Self::Overloaded => write!(
                m,
                "The gateway has too many open connections; retry shortly."
            ),
            Self::ShuttingDown => write!(
                m,
                "The gateway is shutting down; the response was cut before it ended."
            ),
            Self::Invalid { message, .. } => write!(m, "{message}"),
        };
        m
    }

    /// The OpenAI-style error body.
    pub fn body(&self) -> Vec<u8> {
        error_json(
            &self.message(),
            self.error_type(),
            self.param(),
            Some(self.code()),
        )
    }

    /// The status on the Anthropic Messages surface: the same as [`Self::status`] but
    /// 503, which is 529 there (clients back off on `overloaded_error`).
    pub fn anthropic_status(&self) -> u16 {
        match self.status() {
            503 => 529,
            s => s,
        }
    }

    /// Anthropic's `error.type` for this error.
    pub fn anthropic_type(&self) -> &'static str {
        anthropic_error_type(self.anthropic_status())
    }

    /// The Anthropic-style error body: `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_body(&self) -> Vec<u8> {
        anthropic_error_json(self.anthropic_type(), &self.message())
    }
}

/// Anthropic's error type for a status: 400 `invalid_request_error` (and every other
/// 4xx without its own), 401 `authentication_error`, 403 `permission_error`, 404
/// `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`, 529
/// `overloaded_error`, any other 5xx `api_error`.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Writes `{"type":"error","error":{"type":…,"message":…}}`.
pub fn anthropic_error_json(etype: &str, message: &str) -> Vec<u8> {
    let v = serde_json::json!({"type": "error", "error": {"type": etype, "message": message}});
    serde_json::to_vec(&v).unwrap_or_default()
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for GatewayError {}

/// Writes `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
pub fn error_json(message: &str, etype: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    let v = serde_json::json!({
        "error": { "message": message, "type": etype, "param": param, "code": code }
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_pinned() {
        let cases: Vec<(GatewayError, u16)> = vec![
            (GatewayError::MalformedJson("x".into()), 400),
            (GatewayError::MissingModel, 400),
            (GatewayError::ModelNotFound("m".into()), 404),
            (GatewayError::BodyTooLarge(1), 413),
            (
                GatewayError::MethodNotAllowed {
                    method: "GET".into(),
                    allowed: "POST",
                },
                405,
            ),
            (
                GatewayError::UnknownPath {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                404,
            ),
            (
                GatewayError::NoBackend {
                    model: "m".into(),
                    detail: "d".into(),
                },
                503,
            ),
            (GatewayError::Unauthorized("no key"), 401),
            (GatewayError::ModelNotAllowed("m".into()), 403),
            (
                GatewayError::RateLimited {
                    limit: "requests",
                    retry_after_secs: 1,
                },
                429,
            ),
            (GatewayError::QuotaExhausted("p".into()), 429),
            (GatewayError::StateUnavailable, 503),
            (GatewayError::ModelNameTooLong(256), 400),
            (GatewayError::DuplicateKey("model"), 400),
            (GatewayError::HeaderTooLarge(65536), 431),
            (GatewayError::ClientTimeout("header"), 408),
            (GatewayError::BadHttp, 400),
            (
                GatewayError::UpstreamRateLimited {
                    retry_after_secs: Some(3),
                    detail: "a".into(),
                },
                429,
            ),
            (GatewayError::Overloaded, 503),
            (GatewayError::ShuttingDown, 503),
        ];
        for (e, s) in cases {
            assert_eq!(e.status(), s, "{e:?}");
        }
    }

    #[test]
    fn body_is_openai_shaped() {
        let b = GatewayError::ModelNotFound("nope".into()).body();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
        let b = GatewayError::BodyTooLarge(5).body();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn anthropic_shape_and_statuses() {
        let e = GatewayError::NoBackend {
            model: "m".into(),
            detail: "d".into(),
        };
        assert_eq!(e.anthropic_status(), 529);
        assert_eq!(e.anthropic_type(), "overloaded_error");
        let v: serde_json::Value = serde_json::from_slice(&e.anthropic_body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "overloaded_error");
        for (e, t) in [
            (GatewayError::MissingModel, "invalid_request_error"),
            (GatewayError::Unauthorized("x"), "authentication_error"),
            (
                GatewayError::ModelNotAllowed("m".into()),
                "permission_error",
            ),
            (GatewayError::ModelNotFound("m".into()), "not_found_error"),
            (GatewayError::BodyTooLarge(1), "request_too_large"),
            (
                GatewayError::RateLimited {
                    limit: "requests",
                    retry_after_secs: 1,
                },
                "rate_limit_error",
            ),
            (GatewayError::Internal("x".into()), "api_error"),
            (GatewayError::HeaderTooLarge(1), "invalid_request_error"),
        ] {
            assert_eq!(e.anthropic_type(), t, "{e:?}");
        }
    }

    #[test]
    fn echoed_values_are_clipped() {
        let long = "é".repeat(5000);
        for e in [
            GatewayError::ModelNotFound(long.clone()),
            GatewayError::ModelNotAllowed(long.clone()),
            GatewayError::NoBackend {
                model: long.clone(),
                detail: "d".into(),
            },
            GatewayError::UnknownPath {
                method: long.clone(),
                path: long.clone(),
            },
        ] {
            let m = e.message();
            assert!(m.len() < 2 * ECHO_LIMIT + 100, "{} bytes", m.len());
            assert!(m.contains('…'));
        }
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("aé", 2), "a…", "cut at a character boundary");
    }

    #[test]
    fn overloaded_answer_is_a_whole_http_response() {
        let r = String::from_utf8(overloaded_response()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("connection: close"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
