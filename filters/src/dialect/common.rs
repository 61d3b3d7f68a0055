//! What both directions share: the refusal type, the usage arithmetic between the two
//! dialects' counting rules, and small JSON helpers.

use serde_json::{json, Map, Value};

use crate::error::{clip, error_json};
use crate::usage::Usage;

/// Which API a client or an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Dialect {
    /// A bounded label for logs and metrics: `openai` or `anthropic`.
    pub fn label(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

/// A body the translator refuses. For a client request it is a 400 in the client's
/// dialect ([`TranslateError::status`]); for an upstream response that cannot be read it
/// has the code `invalid_upstream_response` and status 502.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// Human-readable reason, safe to show the client (echoed values are clipped).
    pub message: String,
    /// The request field at fault as a path (`messages[2].tool_calls[0].function.arguments`
    /// on the OpenAI side, `messages.2.content.0.input` on the Anthropic side).
    pub param: Option<String>,
    /// A stable machine-readable reason, also fit as a metric label.
    pub code: &'static str,
}

/// The code of a [`TranslateError`] about an upstream body rather than a client request.
pub const INVALID_UPSTREAM_RESPONSE: &str = "invalid_upstream_response";

impl TranslateError {
    pub(crate) fn new(
        message: impl Into<String>,
        param: Option<String>,
        code: &'static str,
    ) -> Self {
        Self {
            message: message.into(),
            param,
            code,
        }
    }

    /// A malformed or contradictory field value.
    pub(crate) fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self::new(message, Some(param.into()), "invalid_value")
    }

    /// A field the other dialect cannot express.
    pub(crate) fn unsupported(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self::new(message, Some(param.into()), "unsupported_parameter")
    }

    /// An upstream body that is not what its dialect promises.
    pub(crate) fn upstream(message: impl Into<String>) -> Self {
        Self::new(message, None, INVALID_UPSTREAM_RESPONSE)
    }

    /// 502 for an unreadable upstream response, 400 for a refused request.
    pub fn status(&self) -> u16 {
        if self.code == INVALID_UPSTREAM_RESPONSE {
            502
        } else {
            400
        }
    }

    /// The OpenAI error body: `{"error":{"message","type","param","code"}}` with type
    /// `invalid_request_error` (or `server_error` for an upstream fault).
    pub fn openai_body(&self) -> Vec<u8> {
        let etype = if self.status() == 400 {
            "invalid_request_error"
        } else {
            "server_error"
        };
        error_json(&self.message, etype, self.param.as_deref(), Some(self.code))
    }

    /// The Anthropic error body: `{"type":"error","error":{"type","message"}}` with type
    /// `invalid_request_error` (or `api_error` for an upstream fault). Anthropic errors have
    /// no `param`, so the path is part of the message.
    pub fn anthropic_body(&self) -> Vec<u8> {
        let etype = if self.status() == 400 {
            "invalid_request_error"
        } else {
            "api_error"
        };
        let message = match &self.param {
            Some(p) => format!("{p}: {}", self.message),
            None => self.message.clone(),
        };
        super::errors::anthropic_error_body(etype, &message)
    }

    /// The body in `dialect`'s shape.
    pub fn body(&self, dialect: Dialect) -> Vec<u8> {
        match dialect {
            Dialect::OpenAi => self.openai_body(),
            Dialect::Anthropic => self.anthropic_body(),
        }
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TranslateError {}

/// How a stream transcoder's output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished properly and the client's end marker (`[DONE]` or
    /// `message_stop`) was written.
    Complete,
    /// The upstream stopped before its end. An error frame in the client's dialect was
    /// written instead of the end marker.
    Truncated,
    /// The upstream reported an error mid-stream (or sent an unreadable event stream). An
    /// error frame in the client's dialect was written instead of the end marker.
    UpstreamError,
}

/// Echoed client values (names, types) are cut to this many bytes in messages.
pub(crate) const ECHO: usize = 120;

pub(crate) fn echo(s: &str) -> std::borrow::Cow<'_, str> {
    clip(s, ECHO)
}

/// Parses a body that must be a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TranslateError::new(
            "The request body must be a JSON object.",
            None,
            "invalid_request_body",
        )),
        Err(e) => Err(TranslateError::new(
            format!("The request body is not valid JSON: {e}"),
            None,
            "invalid_json",
        )),
    }
}

/// A count that may be absent or `null` (some upstreams send explicit nulls).
pub(crate) fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Anthropic usage counters, cumulative over a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AnthropicUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

impl AnthropicUsage {
    /// Reads the counters present (and non-null) in a usage object over the current ones.
    /// With `nonzero_only`, zero values do not overwrite what is known (a `message_delta`
    /// may repeat the input side as 0).
    pub fn update(&mut self, u: &Value, nonzero_only: bool) {
        let set = |field: &mut u64, key: &str| {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                if !(nonzero_only && n == 0) {
                    *field = n;
                }
            }
        };
        set(&mut self.input, "input_tokens");
        set(&mut self.output, "output_tokens");
        set(&mut self.cache_read, "cache_read_input_tokens");
        set(&mut self.cache_creation, "cache_creation_input_tokens");
    }

    /// OpenAI counts cached tokens inside `prompt_tokens`; Anthropic's `input_tokens`
    /// excludes both cache reads and cache writes.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    pub fn usage(&self) -> Usage {
        let prompt = self.prompt_tokens();
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output,
            total_tokens: prompt.saturating_add(self.output),
        }
    }

    /// The OpenAI `usage` object, with the cache counts also as top-level extension
    /// fields so the split survives the translation.
    pub fn openai_json(&self) -> Value {
        let u = self.usage();
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
            "cache_read_input_tokens": self.cache_read,
            "cache_creation_input_tokens": self.cache_creation,
        })
    }
}

/// OpenAI usage counters as an upstream reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpenAiUsage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
}

impl OpenAiUsage {
    pub fn from_json(u: &Value) -> Self {
        Self {
            prompt: count(&u["prompt_tokens"]),
            completion: count(&u["completion_tokens"]),
            cached: count(&u["prompt_tokens_details"]["cached_tokens"]),
        }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: self.completion,
            total_tokens: self.prompt.saturating_add(self.completion),
        }
    }
}

/// A JSON value written compactly, as tool arguments travel.
pub(crate) fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Whether a text is empty or only whitespace (Anthropic refuses such text blocks).
pub(crate) fn blank(s: &str) -> bool {
    s.trim().is_empty()
}
