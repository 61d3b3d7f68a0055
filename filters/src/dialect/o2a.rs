//! Client speaks OpenAI chat, upstream speaks Anthropic Messages: the request.
//!
//! [`openai_request_to_anthropic`] builds the Anthropic body from scratch, so a field it
//! does not know never reaches Anthropic (which refuses unknown fields); what it drops is
//! listed in [`O2AState::dropped_params`] for logs and metrics.

use serde_json::{json, Map, Value};

use super::common::{blank, echo, parse_object, TranslateError};
use super::o2a_messages::map_messages;
use super::o2a_tools::{json_mode, map_tools, tool_choice};

/// The tool name that carries a JSON-mode answer when `response_format` asks for JSON.
/// Reserved: a client tool of this name is refused while JSON mode is on.
pub const JSON_TOOL: &str = "json_tool_call";

/// Thinking budgets for `reasoning_effort` (`low`, `medium`, `high`).
const BUDGETS: [(&str, u64); 3] = [("low", 1024), ("medium", 2048), ("high", 4096)];

/// Request fields Anthropic has no counterpart for, dropped without an error.
const DROPPED: [&str; 10] = [
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "service_tier",
    "store",
    "prediction",
    "modalities",
    "web_search_options",
    "metadata",
];

/// Request fields read by the translation (everything else is dropped as `unknown`).
const READ: [&str; 20] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "reasoning_effort",
    "thinking",
    "n",
    "logprobs",
    "top_logprobs",
];

/// Where `system`/`developer` messages that follow the first conversation message go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MidConversationSystem {
    /// Into Anthropic's top-level `system`, in order with the others (their position in
    /// the conversation is lost).
    #[default]
    Hoist,
    /// Kept in place as a `<system>…</system>` text block of the user side.
    AsUserText,
}

/// Options of the OpenAI → Anthropic request translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiToAnthropic {
    /// `max_tokens` sent when the client gives neither `max_completion_tokens` nor
    /// `max_tokens` (Anthropic requires it). The gateway passes the model catalog's value;
    /// default 4096.
    pub default_max_tokens: u64,
    /// `created` (unix seconds) of every response object and chunk.
    pub created: u64,
    /// `false` (default): `logprobs: true` or `top_logprobs` is refused with a 400.
    /// `true`: they are dropped and listed in [`O2AState::dropped_params`].
    pub drop_unsupported_params: bool,
    /// Where mid-conversation system messages go; default [`MidConversationSystem::Hoist`].
    pub mid_conversation_system: MidConversationSystem,
    /// The model takes adaptive thinking: `reasoning_effort` becomes
    /// `thinking: {"type":"adaptive"}` + `output_config.effort` instead of a budget.
    pub adaptive_thinking: bool,
    /// Return thinking as `reasoning_content` (and `thinking_blocks`); default `true`.
    pub emit_reasoning: bool,
    /// The model name responses report; `None` (default) reports the upstream's own.
    pub report_model: Option<String>,
}

impl Default for OpenAiToAnthropic {
    fn default() -> Self {
        Self {
            default_max_tokens: 4096,
            created: 0,
            drop_unsupported_params: false,
            mid_conversation_system: MidConversationSystem::Hoist,
            adaptive_thinking: false,
            emit_reasoning: true,
            report_model: None,
        }
    }
}

/// JSON mode emulated with the [`JSON_TOOL`] tool: the response side turns that tool's
/// input into the message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonMode {
    /// The client's schema is not an object schema, so it was wrapped as the `values`
    /// property of one; the answer is unwrapped again.
    pub unwrap_values: bool,
}

/// What the response side of an OpenAI → Anthropic exchange needs from its request.
/// Keep it from [`openai_request_to_anthropic`] until the response is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct O2AState {
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// JSON mode emulation, when `response_format` asked for JSON.
    pub json_mode: Option<JsonMode>,
    /// Text to put before the answer: the final assistant message sent with
    /// `"prefix": true` (a prefill the model continues).
    pub prefix: Option<String>,
    /// Client tool-call ids Anthropic would refuse, and what was sent instead (the same
    /// rewrite on `tool_use` and `tool_result`). For logs: responses carry Anthropic's
    /// own new ids, so nothing is restored.
    pub tool_id_rewrites: Vec<(String, String)>,
    /// The model name to report; `None` reports the upstream's.
    pub report_model: Option<String>,
    /// The model the request was sent for (reported when the upstream names none).
    pub upstream_model: String,
    /// `created` of the response objects.
    pub created: u64,
    /// Return thinking as `reasoning_content`.
    pub emit_reasoning: bool,
    /// Thinking was enabled on the request.
    pub thinking: bool,
    /// `max_tokens` came from [`OpenAiToAnthropic::default_max_tokens`].
    pub default_max_tokens_applied: bool,
    /// Names of client fields dropped (bounded: fields the translation knows, plus
    /// `unknown` for any other).
    pub dropped_params: Vec<&'static str>,
}

impl O2AState {
    /// The state of a plain (non-stream, no JSON mode) request for `upstream_model`,
    /// for callers that build a response translation without a request.
    pub fn new(upstream_model: &str, created: u64) -> Self {
        Self {
            stream: false,
            include_usage: false,
            json_mode: None,
            prefix: None,
            tool_id_rewrites: Vec::new(),
            report_model: None,
            upstream_model: upstream_model.to_string(),
            created,
            emit_reasoning: true,
            thinking: false,
            default_max_tokens_applied: false,
            dropped_params: Vec::new(),
        }
    }

    /// The model to report for an upstream that named `upstream`.
    pub(crate) fn model<'a>(&'a self, upstream: Option<&'a str>) -> &'a str {
        self.report_model
            .as_deref()
            .or(upstream.filter(|m| !m.is_empty()))
            .unwrap_or(&self.upstream_model)
    }

    fn drop_param(&mut self, name: &'static str) {
        if !self.dropped_params.contains(&name) {
            self.dropped_params.push(name);
        }
    }
}

/// Translates an OpenAI chat request into an Anthropic Messages request for
/// `upstream_model`. Returns the body and the state its response translation needs.
///
/// Messages: `system`/`developer` messages go to `system` (blank ones skipped); runs of
/// user-side (`user`, `tool`) and assistant messages merge into single turns, with every
/// `tool_result` first in its user turn; blank text blocks are dropped and a user turn
/// left empty gets a `"."`; a final assistant message is a prefill without trailing
/// whitespace (and [`O2AState::prefix`] with `"prefix": true`); tool history without
/// `tools` gets minimal definitions and `tool_choice: none`.
///
/// Refuses (400, OpenAI shape via [`TranslateError::openai_body`]): `n` other than 1,
/// `logprobs`/`top_logprobs` (unless dropping is configured), audio, legacy `functions`,
/// tool-call arguments that are not a JSON object, unsupported content parts or image
/// types, a forced tool together with thinking, and a conversation without a
/// non-system message.
pub fn openai_request_to_anthropic(
    body: &[u8],
    upstream_model: &str,
    opts: &OpenAiToAnthropic,
) -> Result<(Vec<u8>, O2AState), TranslateError> {
    let req = parse_object(body)?;
    let mut st = O2AState::new(upstream_model, opts.created);
    st.report_model = opts.report_model.clone();
    st.emit_reasoning = opts.emit_reasoning;
    refuse_unsupported(&req, opts, &mut st)?;
    for (k, _) in req.iter() {
        if let Some(d) = DROPPED.iter().find(|d| **d == k) {
            st.drop_param(d);
        } else if !READ.contains(&k.as_str()) {
            st.drop_param("unknown");
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));

    let (thinking, budget, effort) = thinking(&req, opts)?;
    st.thinking = thinking
        .as_ref()
        .is_some_and(|t| matches!(t["type"].as_str(), Some("enabled" | "adaptive")));
    let requested = max_tokens(&req)?;
    st.default_max_tokens_applied = requested.is_none();
    let mut max = requested.unwrap_or(opts.default_max_tokens).max(1);
    if let Some(b) = budget {
        // Anthropic requires max_tokens > budget_tokens: the budget comes on top of the
        // answer the client asked room for.
        if max <= b {
            max = max.saturating_add(b);
        }
    }
    out.insert("max_tokens".into(), json!(max));

    let mapped = map_messages(&req, opts.mid_conversation_system, &mut st)?;
    if !mapped.system.is_empty() {
        out.insert("system".into(), Value::Array(mapped.system));
    }
    out.insert("messages".into(), Value::Array(mapped.messages));

    if let Some(t) = thinking {
        out.insert("thinking".into(), t);
    }
    if let Some(e) = effort {
        out.insert("output_config".into(), json!({ "effort": e }));
    }
    sampling(&req, st.thinking, &mut out, &mut st)?;
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        st.stream = true;
        out.insert("stream".into(), json!(true));
        st.include_usage = req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        if !u.is_empty() && !looks_personal(u) {
            out.insert("metadata".into(), json!({ "user_id": u }));
        }
    }

    let mut tools = map_tools(req.get("tools"))?;
    let client_tools = !tools.is_empty();
    let json_mode = json_mode(req.get("response_format"))?;
    if let Some((schema, mode)) = json_mode {
        if tools.iter().any(|t| t["name"] == JSON_TOOL) {
            return Err(TranslateError::invalid(
                format!(
                    "The tool name `{JSON_TOOL}` is reserved while response_format asks for JSON."
                ),
                "tools",
            ));
        }
        tools.push(json!({
            "name": JSON_TOOL,
            "description": "Respond with a JSON value that matches this schema.",
            "input_schema": schema,
        }));
        st.json_mode = Some(mode);
    }
    let mut choice = tool_choice(&req, st.thinking)?;
    if st.json_mode.is_some() && !client_tools && !st.thinking {
        // The only tool is the answer itself; thinking forbids forcing it.
        choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
    }
    if !client_tools && !mapped.history_tools.is_empty() {
        // Anthropic refuses tool_use/tool_result history without tool definitions; the
        // model must not call these stand-ins (unless JSON mode already forces its tool).
        for name in &mapped.history_tools {
            if name != JSON_TOOL {
                tools.push(json!({
                    "name": name,
                    "input_schema": {"type": "object", "properties": {}},
                }));
            }
        }
        if st.json_mode.is_none() {
            choice = Some(json!({"type": "none"}));
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
    }

    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    Ok((body, st))
}

fn refuse_unsupported(
    req: &Map<String, Value>,
    opts: &OpenAiToAnthropic,
    st: &mut O2AState,
) -> Result<(), TranslateError> {
    match req.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(TranslateError::unsupported(
                "'n' other than 1 is not supported by provider anthropic",
                "n",
            ))
        }
    }
    let logprobs = req.get("logprobs").and_then(Value::as_bool) == Some(true);
    let top = req.get("top_logprobs").is_some_and(|v| !v.is_null());
    for (set, name) in [(logprobs, "logprobs"), (top, "top_logprobs")] {
        if set {
            if opts.drop_unsupported_params {
                st.drop_param(name);
            } else {
                return Err(TranslateError::unsupported(
                    format!("'{name}' is not supported by provider anthropic"),
                    name,
                ));
            }
        }
    }
    if req.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(TranslateError::unsupported(
            "audio output is not supported by provider anthropic",
            "audio",
        ));
    }
    for legacy in ["functions", "function_call"] {
        if req.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::unsupported(
                format!("legacy '{legacy}' is not supported by provider anthropic; use 'tools'"),
                legacy,
            ));
        }
    }
    Ok(())
}

/// `(thinking, budget_tokens, output_config.effort)` from `thinking` (passed verbatim)
/// or `reasoning_effort`.
#[allow(clippy::type_complexity)]
fn thinking(
    req: &Map<String, Value>,
    opts: &OpenAiToAnthropic,
) -> Result<(Option<Value>, Option<u64>, Option<String>), TranslateError> {
    if let Some(t) = req.get("thinking").filter(|t| !t.is_null()) {
        if !t.is_object() {
            return Err(TranslateError::invalid("must be an object", "thinking"));
        }
        let budget = t["budget_tokens"]
            .as_u64()
            .filter(|_| t["type"] == "enabled");
        return Ok((Some(t.clone()), budget, None));
    }
    let Some(effort) = req.get("reasoning_effort").filter(|e| !e.is_null()) else {
        return Ok((None, None, None));
    };
    let Some(effort) = effort.as_str() else {
        return Err(TranslateError::invalid(
            "must be a string",
            "reasoning_effort",
        ));
    };
    if matches!(effort, "minimal" | "none") {
        return Ok((None, None, None));
    }
    let Some((_, budget)) = BUDGETS.iter().find(|(n, _)| *n == effort) else {
        return Err(TranslateError::invalid(
            format!(
                "'{}' is not one of none, minimal, low, medium, high",
                echo(effort)
            ),
            "reasoning_effort",
        ));
    };
    if opts.adaptive_thinking {
        return Ok((
            Some(json!({"type": "adaptive"})),
            None,
            Some(effort.to_string()),
        ));
    }
    Ok((
        Some(json!({"type": "enabled", "budget_tokens": budget})),
        Some(*budget),
        None,
    ))
}

fn max_tokens(req: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => return Ok(Some(n)),
                _ => return Err(TranslateError::invalid("must be a positive integer", key)),
            },
        }
    }
    Ok(None)
}

fn sampling(
    req: &Map<String, Value>,
    thinking: bool,
    out: &mut Map<String, Value>,
    st: &mut O2AState,
) -> Result<(), TranslateError> {
    let number = |key: &str| -> Result<Option<f64>, TranslateError> {
        match req.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| TranslateError::invalid("must be a number", key)),
        }
    };
    if let Some(t) = number("temperature")? {
        if thinking {
            // Anthropic accepts no temperature but 1 with thinking on.
            st.drop_param("temperature");
        } else {
            // OpenAI's range is 0..2, Anthropic's 0..1.
            out.insert("temperature".into(), json!(t.min(1.0)));
        }
    }
    if let Some(p) = number("top_p")? {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.get("top_k").filter(|k| !k.is_null()) {
        if thinking {
            st.drop_param("top_k");
        } else {
            let k = k.as_u64().ok_or_else(|| {
                TranslateError::invalid("must be a non-negative integer", "top_k")
            })?;
            out.insert("top_k".into(), json!(k));
        }
    }
    let stops: Vec<String> = match req.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str().map(str::to_string).ok_or_else(|| {
                    TranslateError::invalid("must be a string or a list of strings", "stop")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(TranslateError::invalid(
                "must be a string or a list of strings",
                "stop",
            ))
        }
    };
    // Anthropic refuses whitespace-only stop sequences.
    let stops: Vec<String> = stops.into_iter().filter(|s| !blank(s)).collect();
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), json!(stops));
    }
    Ok(())
}

/// A `user` that looks like an e-mail address or a phone number is personal data, not
/// the opaque id Anthropic's `metadata.user_id` asks for.
fn looks_personal(u: &str) -> bool {
    if let Some((local, domain)) = u.split_once('@') {
        if !local.is_empty() && domain.contains('.') {
            return true;
        }
    }
    let digits = u.chars().filter(char::is_ascii_digit).count();
    digits >= 7
        && u.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.'))
}
