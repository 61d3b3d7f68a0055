//! OpenAI tools, `tool_choice` / `parallel_tool_calls` and `response_format` as their
//! Anthropic counterparts (spec §1.4, §1.5).

use serde_json::{json, Map, Value};

use super::common::{echo, TranslateError};
use super::o2a::JsonMode;

/// OpenAI `tools` as Anthropic tools (§1.4).
pub(crate) fn map_tools(tools: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(TranslateError::invalid("must be an array", "tools")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("tools[{i}]");
        match t["type"].as_str() {
            Some("function") | None => {}
            Some(other) => {
                return Err(TranslateError::unsupported(
                    format!(
                        "tool type '{}' is not supported by provider anthropic",
                        echo(other)
                    ),
                    format!("{path}.type"),
                ))
            }
        }
        let f = &t["function"];
        let Some(name) = f["name"].as_str().filter(|n| !n.is_empty()) else {
            return Err(TranslateError::invalid(
                "a function tool needs a name",
                format!("{path}.function.name"),
            ));
        };
        let schema = match &f["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            Value::Object(p) => {
                // Passed unchanged ($defs, anyOf, additionalProperties included); Anthropic
                // only insists on an object schema.
                let mut p = p.clone();
                match p.get("type") {
                    None => {
                        p.insert("type".into(), json!("object"));
                    }
                    Some(ty) if ty == "object" => {}
                    Some(_) => {
                        return Err(TranslateError::invalid(
                            "tool parameters must be an object schema",
                            format!("{path}.function.parameters"),
                        ))
                    }
                }
                Value::Object(p)
            }
            _ => {
                return Err(TranslateError::invalid(
                    "must be a JSON schema object",
                    format!("{path}.function.parameters"),
                ))
            }
        };
        let mut tool = Map::new();
        tool.insert("name".into(), json!(name));
        if let Some(d) = f["description"].as_str() {
            tool.insert("description".into(), json!(d));
        }
        tool.insert("input_schema".into(), schema);
        if let Some(cc) = t.get("cache_control").or_else(|| f.get("cache_control")) {
            tool.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(tool));
    }
    Ok(out)
}

/// `tool_choice` and `parallel_tool_calls` as one Anthropic `tool_choice` (§1.4).
pub(crate) fn tool_choice(
    req: &Map<String, Value>,
    thinking: bool,
) -> Result<Option<Value>, TranslateError> {
    let mut choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => {
                return Err(TranslateError::invalid(
                    format!("'{}' is not one of auto, none, required", echo(other)),
                    "tool_choice",
                ))
            }
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) if v["type"] == "function" => Some(json!({"type": "tool", "name": name})),
            _ => {
                return Err(TranslateError::unsupported(
                    "tool_choice must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":…}}",
                    "tool_choice",
                ))
            }
        },
    };
    if thinking
        && choice
            .as_ref()
            .is_some_and(|c| c["type"] == "any" || c["type"] == "tool")
    {
        return Err(TranslateError::unsupported(
            "forcing a tool is not supported by provider anthropic while thinking is enabled",
            "tool_choice",
        ));
    }
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(choice)
}

/// The input schema of the JSON-mode tool, when `response_format` asks for JSON.
pub(crate) fn json_mode(rf: Option<&Value>) -> Result<Option<(Value, JsonMode)>, TranslateError> {
    let any_object = || json!({"type": "object", "additionalProperties": true, "properties": {}});
    let Some(rf) = rf.filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    match rf["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some((
            any_object(),
            JsonMode {
                unwrap_values: false,
            },
        ))),
        Some("json_schema") => {
            let schema = &rf["json_schema"]["schema"];
            let is_object = schema["type"] == "object"
                || (schema.get("type").is_none() && schema["properties"].is_object());
            if schema.is_null() {
                Ok(Some((
                    any_object(),
                    JsonMode {
                        unwrap_values: false,
                    },
                )))
            } else if !schema.is_object() {
                Err(TranslateError::invalid(
                    "must be a JSON schema object",
                    "response_format.json_schema.schema",
                ))
            } else if is_object {
                let mut s = schema.clone();
                s["type"] = json!("object");
                Ok(Some((
                    s,
                    JsonMode {
                        unwrap_values: false,
                    },
                )))
            } else {
                // Tool inputs must be objects: carry any other schema as one property.
                Ok(Some((
                    json!({"type": "object", "properties": {"values": schema}, "required": ["values"]}),
                    JsonMode {
                        unwrap_values: true,
                    },
                )))
            }
        }
        _ => Err(TranslateError::invalid(
            "must be text, json_object or json_schema",
            "response_format.type",
        )),
    }
}
