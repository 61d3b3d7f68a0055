//! Client speaks Anthropic Messages, upstream speaks OpenAI chat: the request (spec §1R)
//! and the token estimate for `count_tokens` on backends without one.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::a2o_content::{assistant_message, user_messages};
use super::a2o_validate::validate_object;
use super::common::{parse_object, TranslateError};

/// OpenAI's limit on function names.
const MAX_TOOL_NAME: usize = 64;

/// The start of Claude Code's attribution block in `system`. Its `cch` value changes on
/// every request, which defeats an OpenAI backend's prefix cache.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

/// The flavour of an OpenAI-compatible upstream, where they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// OpenAI proper: `max_completion_tokens`, `content: null` beside tool calls, no
    /// thinking field in requests, no `top_k`, PDF `file` parts.
    OpenAi,
    /// vLLM: `max_tokens`, thinking history as `reasoning`, `top_k`.
    Vllm,
    /// llama.cpp's server: `max_tokens`, thinking history as `reasoning_content`, `top_k`,
    /// `content: ""` beside tool calls, thinking budget as `thinking_budget_tokens`.
    LlamaCpp,
    /// Ollama's OpenAI surface: `max_tokens`, thinking history as `reasoning`.
    Ollama,
    /// Anything else OpenAI-compatible: the most widely accepted subset (`max_tokens`,
    /// no thinking history, no `top_k`).
    #[default]
    Generic,
}

impl Backend {
    /// A bounded label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Vllm => "vllm",
            Self::LlamaCpp => "llamacpp",
            Self::Ollama => "ollama",
            Self::Generic => "generic",
        }
    }

    /// The field an assistant message's thinking travels in, if the backend takes one.
    pub(crate) fn reasoning_field(self) -> Option<&'static str> {
        match self {
            Self::Vllm | Self::Ollama => Some("reasoning"),
            Self::LlamaCpp => Some("reasoning_content"),
            Self::OpenAi | Self::Generic => None,
        }
    }
}

/// Options of the Anthropic → OpenAI request translation. The ids are the caller's to
/// make (this module has no randomness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicToOpenAi {
    /// Which OpenAI-compatible flavour the upstream is.
    pub backend: Backend,
    /// Request time (unix seconds), kept in the state for logs: Anthropic responses
    /// carry no timestamp.
    pub created: u64,
    /// The `id` of the Anthropic message returned (e.g. `msg_` + random), streamed or not.
    pub message_id: String,
    /// The opaque `signature` put on thinking blocks (OpenAI backends have none; Claude
    /// Code expects the field).
    pub thinking_signature: String,
    /// Map `thinking` to the backend's reasoning knob (`reasoning_effort`, or
    /// `thinking_budget_tokens` on llama.cpp); default `true`. `false` drops it, for
    /// models that refuse reasoning parameters.
    pub reasoning: bool,
    /// The model name responses report; `None` (default) reports the upstream's own.
    pub report_model: Option<String>,
}

impl Default for AnthropicToOpenAi {
    fn default() -> Self {
        Self {
            backend: Backend::Generic,
            created: 0,
            message_id: "msg_0".into(),
            thinking_signature: String::new(),
            reasoning: true,
            report_model: None,
        }
    }
}

/// What the response side of an Anthropic → OpenAI exchange needs from its request.
/// Keep it from [`anthropic_request_to_openai`] until the response is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2OState {
    /// The client asked for a stream.
    pub stream: bool,
    /// Tool names shortened to OpenAI's 64-character limit: `(sent, original)`. Responses
    /// and streams restore the original.
    pub tool_names: Vec<(String, String)>,
    /// Anthropic server tools (`web_search_*`, `bash_*`, …) dropped because an OpenAI
    /// backend cannot run them; the caller may say so in a warning header.
    pub dropped_tools: Vec<String>,
    /// The model name to report; `None` reports the upstream's.
    pub report_model: Option<String>,
    /// The model the request was sent for (reported when the upstream names none).
    pub upstream_model: String,
    /// The id of the message returned.
    pub message_id: String,
    /// The signature put on thinking blocks.
    pub thinking_signature: String,
    /// The upstream flavour.
    pub backend: Backend,
    /// [`AnthropicToOpenAi::created`].
    pub created: u64,
    /// Claude Code's attribution block was removed from `system`.
    pub billing_header_stripped: bool,
}

impl A2OState {
    /// The state of a plain request for `upstream_model`, for callers that translate a
    /// response without a request.
    pub fn new(upstream_model: &str, message_id: &str) -> Self {
        Self {
            stream: false,
            tool_names: Vec::new(),
            dropped_tools: Vec::new(),
            report_model: None,
            upstream_model: upstream_model.to_string(),
            message_id: message_id.to_string(),
            thinking_signature: String::new(),
            backend: Backend::Generic,
            created: 0,
            billing_header_stripped: false,
        }
    }

    /// The client's name for a tool the upstream called `sent`.
    pub fn original_tool_name<'a>(&'a self, sent: &'a str) -> &'a str {
        self.tool_names
            .iter()
            .find(|(s, _)| s == sent)
            .map_or(sent, |(_, o)| o.as_str())
    }

    pub(crate) fn model<'a>(&'a self, upstream: Option<&'a str>) -> &'a str {
        self.report_model
            .as_deref()
            .or(upstream.filter(|m| !m.is_empty()))
            .unwrap_or(&self.upstream_model)
    }

    pub(crate) fn sent_name(&mut self, name: &str) -> String {
        if name.len() <= MAX_TOOL_NAME {
            return name.to_string();
        }
        let mut cut = 55;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        let sent = format!("{}_{}", &name[..cut], &digest[..8]);
        if !self.tool_names.iter().any(|(s, _)| *s == sent) {
            self.tool_names.push((sent.clone(), name.to_string()));
        }
        sent
    }
}

/// Translates an Anthropic Messages request into an OpenAI chat request for
/// `upstream_model`, after [`super::validate_anthropic_request`]'s checks.
///
/// `system` becomes one leading system message (blocks joined with `\n`, Claude Code's
/// billing-header block removed, `cache_control` dropped). In each user turn the
/// `tool_result` blocks become `tool` messages placed before the turn's other content
/// (`is_error` results start with `Error: `; images in a result follow in the user
/// message). Assistant text is joined, `tool_use` becomes `tool_calls`, thinking goes to
/// the backend's reasoning field or is dropped. Tool names longer than 64 characters are
/// shortened (and restored in responses); server tools are dropped. A streamed request
/// always asks for `stream_options.include_usage`, so usage arrives at the end.
///
/// Refuses (400, Anthropic shape via [`TranslateError::anthropic_body`]): what the
/// validation refuses, documents an OpenAI backend cannot take (PDF except on
/// [`Backend::OpenAi`] / [`Backend::Generic`], URL documents), image sources other than
/// base64 and URL, and content block types with no OpenAI counterpart.
pub fn anthropic_request_to_openai(
    body: &[u8],
    upstream_model: &str,
    opts: &AnthropicToOpenAi,
) -> Result<(Vec<u8>, A2OState), TranslateError> {
    translate_checked(&AnthropicRequest::parse(body)?, upstream_model, opts)
}

/// A `POST /v1/messages` body parsed and passed through
/// [`super::validate_anthropic_request`]'s checks, so a gateway that validates every
/// Messages request before routing it can translate it without reading it again.
#[derive(Debug, Clone)]
pub struct AnthropicRequest(Map<String, Value>);

impl AnthropicRequest {
    /// Parses and checks a Messages body; the error is what
    /// [`super::validate_anthropic_request`] gives.
    pub fn parse(body: &[u8]) -> Result<Self, TranslateError> {
        let req = parse_object(body)?;
        validate_object(&req, true)?;
        Ok(Self(req))
    }

    /// As [`anthropic_request_to_openai`], for a request already checked.
    pub fn to_openai(
        &self,
        upstream_model: &str,
        opts: &AnthropicToOpenAi,
    ) -> Result<(Vec<u8>, A2OState), TranslateError> {
        translate_checked(self, upstream_model, opts)
    }
}

fn translate_checked(
    req: &AnthropicRequest,
    upstream_model: &str,
    opts: &AnthropicToOpenAi,
) -> Result<(Vec<u8>, A2OState), TranslateError> {
    let req = &req.0;
    let backend = opts.backend;
    let mut st = A2OState::new(upstream_model, &opts.message_id);
    st.thinking_signature = opts.thinking_signature.clone();
    st.report_model = opts.report_model.clone();
    st.backend = backend;
    st.created = opts.created;

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));

    // Tools first: history and tool_choice use the shortened names.
    let mut tools = Vec::new();
    for t in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = t["name"].as_str().unwrap_or("");
        if t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|ty| ty != "custom")
        {
            st.dropped_tools.push(name.to_string());
            continue;
        }
        let mut f = Map::new();
        f.insert("name".into(), json!(st.sent_name(name)));
        if let Some(d) = t["description"].as_str() {
            f.insert("description".into(), json!(d));
        }
        let schema = match t.get("input_schema") {
            Some(s @ Value::Object(_)) => s.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        f.insert("parameters".into(), schema);
        tools.push(json!({"type": "function", "function": Value::Object(f)}));
    }

    let mut messages = Vec::new();
    if let Some(system) = system_text(req.get("system"), &mut st) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (i, m) in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("messages.{i}");
        if m["role"] == "assistant" {
            messages.push(assistant_message(m, &path, &mut st)?);
        } else {
            user_messages(m, &path, backend, &mut messages)?;
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    let max = req.get("max_tokens").cloned().unwrap_or(Value::Null);
    let max_key = if backend == Backend::OpenAi {
        // OpenAI's reasoning models refuse `max_tokens`.
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    out.insert(max_key.into(), max);
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(k) = req.get("top_k").filter(|v| !v.is_null()) {
        if matches!(backend, Backend::Vllm | Backend::LlamaCpp) {
            out.insert("top_k".into(), k.clone());
        }
    }
    if let Some(s) = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        out.insert("stop".into(), Value::Array(s.clone()));
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        st.stream = true;
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(u) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(u));
    }
    if opts.reasoning {
        reasoning(req, backend, &mut out);
    }
    if let Some(rf) = response_format(req, backend) {
        out.insert("response_format".into(), rf);
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = req.get("tool_choice").filter(|t| !t.is_null()) {
            let mapped = match tc["type"].as_str() {
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => {
                    let name = st.sent_name(tc["name"].as_str().unwrap_or(""));
                    json!({"type": "function", "function": {"name": name}})
                }
                _ => json!("auto"),
            };
            let none = mapped == "none";
            out.insert("tool_choice".into(), mapped);
            if tc["disable_parallel_tool_use"] == true && !none {
                out.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    Ok((body, st))
}

fn is_billing_header(text: &str) -> bool {
    text.trim_start().starts_with(BILLING_HEADER)
}

/// `system` as one string, without Claude Code's attribution block.
fn system_text(system: Option<&Value>, st: &mut A2OState) -> Option<String> {
    let texts: Vec<&str> = match system {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(blocks)) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => Vec::new(),
    };
    let kept: Vec<&str> = texts
        .into_iter()
        .filter(|t| {
            let header = is_billing_header(t);
            st.billing_header_stripped |= header;
            !header && !t.is_empty()
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("\n"))
}

/// `thinking` / `output_config.effort` as the backend's reasoning knob.
fn reasoning(req: &Map<String, Value>, backend: Backend, out: &mut Map<String, Value>) {
    let t = req.get("thinking").unwrap_or(&Value::Null);
    let effort_cfg = req
        .get("output_config")
        .and_then(|o| o.get("effort"))
        .and_then(Value::as_str);
    match t["type"].as_str() {
        Some("enabled") => {
            let budget = t["budget_tokens"].as_u64().unwrap_or(1024);
            if backend == Backend::LlamaCpp {
                out.insert("thinking_budget_tokens".into(), json!(budget));
            } else {
                out.insert("reasoning_effort".into(), json!(effort_for_budget(budget)));
            }
        }
        Some("adaptive") => {
            let effort = match effort_cfg {
                Some("low") => "low",
                Some("medium") => "medium",
                _ => "high",
            };
            out.insert("reasoning_effort".into(), json!(effort));
        }
        _ => {
            if let Some(e @ ("low" | "medium" | "high")) = effort_cfg {
                out.insert("reasoning_effort".into(), json!(e));
            }
        }
    }
}

/// The `reasoning_effort` bucket of a thinking budget (the inverse of the OpenAI →
/// Anthropic budgets 1024 / 2048 / 4096).
pub(crate) fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..=1024 => "low",
        1025..=2048 => "medium",
        _ => "high",
    }
}

/// `output_config.format` / `output_format` as `response_format`.
fn response_format(req: &Map<String, Value>, backend: Backend) -> Option<Value> {
    let f = req
        .get("output_config")
        .and_then(|o| o.get("format"))
        .filter(|f| !f.is_null())
        .or_else(|| req.get("output_format").filter(|f| !f.is_null()))?;
    if f["type"] != "json_schema" {
        return None;
    }
    let mut schema = f["schema"].clone();
    let mut js = json!({"name": "structured_output", "schema": Value::Null});
    if backend == Backend::OpenAi {
        // OpenAI's strict mode wants every object closed and every key required.
        strictify(&mut schema);
        js["strict"] = json!(true);
    }
    js["schema"] = schema;
    Some(json!({"type": "json_schema", "json_schema": js}))
}

fn strictify(s: &mut Value) {
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        let keys: Vec<Value> = props.keys().map(|k| json!(k)).collect();
        for p in props.values_mut() {
            strictify(p);
        }
        obj.insert("required".into(), Value::Array(keys));
        obj.insert("additionalProperties".into(), json!(false));
    }
    if let Some(items) = obj.get_mut("items") {
        strictify(items);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(a)) = obj.get_mut(key) {
            a.iter_mut().for_each(strictify);
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(d)) = obj.get_mut(key) {
            d.values_mut().for_each(strictify);
        }
    }
}

/// An estimate of a Messages (or `count_tokens`) request's input tokens for backends that
/// cannot count them: a quarter of the characters of its text, rounded up. Counted:
/// `system`, text blocks, thinking, tool-use inputs and tool-result text (as JSON or
/// text), and tool definitions (name, description, schema). Images and documents are not
/// counted. An unreadable body counts 0. An estimate, not a tokenizer: the caller should
/// mark the answer as estimated.
pub fn estimate_input_tokens(body: &[u8]) -> u64 {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let mut chars: u64 = 0;
    let mut add = |s: &str| chars += s.chars().count() as u64;
    fn blocks(v: &Value, add: &mut dyn FnMut(&str)) {
        match v {
            Value::String(s) => add(s),
            Value::Array(items) => {
                for b in items {
                    match b["type"].as_str() {
                        Some("text") => add(b["text"].as_str().unwrap_or("")),
                        Some("thinking") => add(b["thinking"].as_str().unwrap_or("")),
                        Some("tool_use") => {
                            add(b["name"].as_str().unwrap_or(""));
                            add(&super::common::compact(&b["input"]));
                        }
                        Some("tool_result") => blocks(&b["content"], add),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(s) = req.get("system") {
        blocks(s, &mut add);
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks(&m["content"], &mut add);
    }
    for t in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(t["name"].as_str().unwrap_or(""));
        add(t["description"].as_str().unwrap_or(""));
        if let Some(s) = t.get("input_schema") {
            add(&super::common::compact(s));
        }
    }
    chars.div_ceil(4)
}
