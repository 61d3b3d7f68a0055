//! The admin listener's one error type and the one place that turns errors into
//! responses (OpenAI-shaped error bodies, like the proxy listener's).

use switchyard_filters::error::{error_json, GatewayError};

use super::reply::{reply, Reply};
use crate::control::driver::CommandError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// Why an admin call failed.
#[derive(Debug)]
pub enum AdminError {
    /// Bad input (400), with what was expected.
    BadRequest(String),
    /// Not found (404): what, and the parameter that named it.
    NotFound(&'static str, String),
    /// Authenticated, but the call is refused (403).
    Forbidden(String),
    /// Not possible in the current state (409).
    Conflict(String),
    /// A dependency (store, engine, hub) cannot answer (503).
    Unavailable(String),
    /// The controller is off (409, with how to turn it on).
    ControlDisabled,
    /// A gateway error with its own status and body (auth, unknown path, method, size).
    Gateway(GatewayError),
}

impl AdminError {
    /// The response.
    pub fn into_reply(self) -> Reply {
        let (status, msg, kind, param, code) = match self {
            Self::Gateway(e) => return reply(e.status(), "application/json", e.body()),
            Self::BadRequest(m) => (400, m, "invalid_request_error", None, "invalid_admin_request"),
            Self::NotFound(param, m) => (404, m, "invalid_request_error", Some(param), "not_found"),
            Self::Conflict(m) => (409, m, "invalid_request_error", None, "conflict"),
            Self::Forbidden(m) => (403, m, "permission_error", None, "csrf_failed"),
            Self::Unavailable(m) => (503, m, "service_unavailable", None, "state_unavailable"),
            Self::ControlDisabled => (
                409,
                "The controller is off: set [control] enabled = true (and a Docker engine) to let Switchyard run the local backend.".into(),
                "invalid_request_error",
                None,
                "control_disabled",
            ),
        };
        reply(
            status,
            "application/json",
            error_json(&msg, kind, param, Some(code)),
        )
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<RuntimeError> for AdminError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Invalid(m) => Self::BadRequest(m),
            RuntimeError::Store(s) => s.into(),
        }
    }
}

impl From<CommandError> for AdminError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Disabled => Self::ControlDisabled,
            CommandError::Refused(m) => Self::Conflict(m),
            CommandError::Invalid(m) => Self::BadRequest(m),
            CommandError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl From<GatewayError> for AdminError {
    fn from(e: GatewayError) -> Self {
        Self::Gateway(e)
    }
}
