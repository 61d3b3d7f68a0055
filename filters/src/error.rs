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
}

impl GatewayError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson(_)
            | Self::BodyNotObject
            | Self::MissingModel
            | Self::BodyRead(_) => 400,
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
            Self::RateLimited { .. } => "rate_limit_error",
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
        }
    }

    /// OpenAI's `error.param`: the request field at fault, if one is.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::MissingModel | Self::ModelNotFound(_) | Self::ModelNotAllowed(_) => Some("model"),
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
                "The model `{model}` does not exist or no configured backend serves it."
            ),
            Self::BodyTooLarge(limit) => write!(
                m,
                "The request body is larger than the limit of {limit} bytes."
            ),
            Self::BodyRead(d) => write!(m, "The request body could not be read: {d}"),
            Self::MethodNotAllowed { method, allowed } => {
                write!(m, "Method {method} is not allowed here; use {allowed}.")
            }
            Self::UnknownPath { method, path } => write!(m, "Invalid URL ({method} {path})"),
            Self::NoBackend { model, detail } => {
                write!(m, "No backend is available for model `{model}`: {detail}")
            }
            Self::Upstream(d) => write!(m, "The upstream failed: {d}"),
            Self::UpstreamTimeout(d) => write!(m, "The upstream timed out: {d}"),
            Self::Unauthorized(why) => write!(m, "{why}"),
            Self::ModelNotAllowed(model) => {
                write!(m, "This API key may not use the model `{model}`.")
            }
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
}
