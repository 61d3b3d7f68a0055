//! What Switchyard knows about each kind of provider: its standard URL, how it
//! authenticates, which API dialect it speaks, whether it serves the Anthropic Messages
//! API natively, the headers it expects, and the request fields it rejects.

use crate::config::ProviderKind;

/// How a provider takes its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>` (and `anthropic-version`), the Anthropic API's way.
    XApiKey,
}

/// The API a provider's chat surface speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

/// How a provider serves requests that arrive on `/v1/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessagesMode {
    /// It speaks the Messages API itself: the body is passed through (model rewritten).
    Native,
    /// It speaks OpenAI only: the request is translated, and the answer back.
    Translate,
}

impl MessagesMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Translate => "translate",
        }
    }
}

/// One kind of provider.
#[derive(Debug)]
pub struct Preset {
    /// The configuration kind.
    pub kind: ProviderKind,
    /// The credential variable that registers it automatically (cloud providers).
    pub env: Option<&'static str>,
    /// A second credential variable tried when `env` is not set.
    pub env_fallback: Option<&'static str>,
    /// Its standard URL: the API root with `/v1` for OpenAI-dialect providers, the server
    /// root for Anthropic's.
    pub base_url: Option<&'static str>,
    /// The variable that overrides `base_url` (proxies, tests).
    pub base_url_env: Option<&'static str>,
    /// Models it serves when the configuration names none.
    pub models: &'static [&'static str],
    /// How it takes its credential.
    pub auth: AuthStyle,
    /// What its chat surface speaks.
    pub wire: Wire,
    /// How it serves `/v1/messages` unless the configuration says otherwise.
    pub messages: MessagesMode,
    /// Headers it gets on every request.
    pub headers: &'static [(&'static str, &'static str)],
    /// Top-level request fields it rejects; they are dropped before the request leaves.
    pub drop_params: &'static [&'static str],
    /// How its model list is read.
    pub list: ModelList,
    /// Whether its models are discovered by default (when no static list names them).
    pub discover: bool,
}

/// Where and in which shape a provider lists its models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelList {
    /// `GET <api root>/models`, `{"data":[{"id":…}]}` (OpenAI's and Anthropic's shape).
    Data,
    /// Ollama's `GET /api/tags` at the server root: `{"models":[{"name":…}]}`.
    OllamaTags,
    /// GitHub Models' catalog, `GET https://models.github.ai/catalog/models`: `[{"id":…}]`.
    GithubCatalog,
}

/// The URL of GitHub Models' catalog.
pub const GITHUB_CATALOG: &str = "https://models.github.ai/catalog/models";

impl ModelList {
    /// The model ids in a list document; Gemini's `models/` prefix dropped.
    pub fn parse(self, doc: &serde_json::Value) -> Option<Vec<String>> {
        let (items, key) = match self {
            Self::Data => (doc.get("data")?, "id"),
            Self::OllamaTags => (doc.get("models")?, "name"),
            Self::GithubCatalog => (doc, "id"),
        };
        Some(
            items
                .as_array()?
                .iter()
                .filter_map(|m| m.get(key)?.as_str())
                .map(|id| id.strip_prefix("models/").unwrap_or(id).to_string())
                .collect(),
        )
    }
}

const OPENAI_MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "gpt-4*",
    "gpt-5*",
    "gpt-3.5*",
    "o1*",
    "o3*",
    "o4*",
    "chatgpt-*",
    "text-embedding-*",
];

const fn openai_like(kind: ProviderKind) -> Preset {
    Preset {
        kind,
        env: None,
        env_fallback: None,
        base_url: None,
        base_url_env: None,
        models: &[],
        auth: AuthStyle::Bearer,
        wire: Wire::OpenAi,
        messages: MessagesMode::Translate,
        headers: &[],
        drop_params: &[],
        list: ModelList::Data,
        discover: false,
    }
}

/// Every preset; the ones with an `env` are registered automatically when it is set.
pub const PRESETS: &[Preset] = &[
    Preset {
        env: Some("OPENAI_API_KEY"),
        base_url: Some("https://api.openai.com/v1"),
        base_url_env: Some("OPENAI_BASE_URL"),
        models: OPENAI_MODELS,
        ..openai_like(ProviderKind::Openai)
    },
    Preset {
        env: Some("ANTHROPIC_API_KEY"),
        base_url: Some("https://api.anthropic.com"),
        base_url_env: Some("ANTHROPIC_BASE_URL"),
        models: &[
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-opus-4-1",
            "claude-*",
        ],
        auth: AuthStyle::XApiKey,
        wire: Wire::Anthropic,
        messages: MessagesMode::Native,
        ..openai_like(ProviderKind::Anthropic)
    },
    Preset {
        env: Some("GEMINI_API_KEY"),
        env_fallback: Some("GOOGLE_API_KEY"),
        base_url: Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        base_url_env: Some("GEMINI_BASE_URL"),
        models: &[
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "gemini-*",
            "text-embedding-004",
        ],
        ..openai_like(ProviderKind::Gemini)
    },
    Preset {
        env: Some("GROQ_API_KEY"),
        base_url: Some("https://api.groq.com/openai/v1"),
        base_url_env: Some("GROQ_BASE_URL"),
        models: &[
            "llama-3.3-70b-versatile",
            "llama-3.1-8b-instant",
            "llama-*",
            "gemma*",
            "mixtral-*",
        ],
        // Groq answers 400 to these (console.groq.com/docs/openai).
        drop_params: &["logprobs", "logit_bias", "top_logprobs"],
        ..openai_like(ProviderKind::Groq)
    },
    Preset {
        env: Some("CEREBRAS_API_KEY"),
        base_url: Some("https://api.cerebras.ai/v1"),
        base_url_env: Some("CEREBRAS_BASE_URL"),
        models: &["llama3.1-8b", "llama-3.3-70b", "qwen-3-32b", "gpt-oss-120b"],
        drop_params: &[
            "frequency_penalty",
            "logit_bias",
            "presence_penalty",
            "parallel_tool_calls",
            "service_tier",
        ],
        ..openai_like(ProviderKind::Cerebras)
    },
    Preset {
        env: Some("OPENROUTER_API_KEY"),
        base_url: Some("https://openrouter.ai/api/v1"),
        base_url_env: Some("OPENROUTER_BASE_URL"),
        discover: true,
        ..openai_like(ProviderKind::Openrouter)
    },
    Preset {
        env: Some("GITHUB_TOKEN"),
        base_url: Some("https://models.github.ai/inference"),
        base_url_env: Some("GITHUB_MODELS_BASE_URL"),
        headers: &[
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
        ],
        list: ModelList::GithubCatalog,
        discover: true,
        ..openai_like(ProviderKind::Github)
    },
    Preset {
        base_url: Some("http://127.0.0.1:11434/v1"),
        messages: MessagesMode::Native,
        list: ModelList::OllamaTags,
        discover: true,
        ..openai_like(ProviderKind::Ollama)
    },
    Preset {
        base_url: Some("http://127.0.0.1:8080/v1"),
        messages: MessagesMode::Native,
        discover: true,
        ..openai_like(ProviderKind::Llamacpp)
    },
    Preset {
        base_url: Some("http://127.0.0.1:8000/v1"),
        messages: MessagesMode::Native,
        discover: true,
        ..openai_like(ProviderKind::Vllm)
    },
    Preset {
        base_url: Some("http://127.0.0.1:8000/v1"),
        discover: true,
        ..openai_like(ProviderKind::Sglang)
    },
    openai_like(ProviderKind::OpenaiCompatible),
    openai_like(ProviderKind::Cli),
    openai_like(ProviderKind::Mock),
];

/// The preset of a kind.
pub fn preset(kind: ProviderKind) -> &'static Preset {
    PRESETS
        .iter()
        .find(|p| p.kind == kind)
        .unwrap_or(&PRESETS[PRESETS.len() - 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_preset() {
        for p in PRESETS {
            assert_eq!(preset(p.kind).kind, p.kind);
        }
        assert_eq!(preset(ProviderKind::Anthropic).wire, Wire::Anthropic);
        assert_eq!(preset(ProviderKind::Anthropic).auth, AuthStyle::XApiKey);
        assert_eq!(preset(ProviderKind::Vllm).messages, MessagesMode::Native);
        assert_eq!(
            preset(ProviderKind::Openai).messages,
            MessagesMode::Translate
        );
    }

    #[test]
    fn model_lists_are_read_in_each_shape() {
        let data = serde_json::json!({"data":[{"id":"a"},{"id":"models/gemini-2.5-pro"}]});
        assert_eq!(
            ModelList::Data.parse(&data).unwrap(),
            ["a", "gemini-2.5-pro"]
        );
        let tags = serde_json::json!({"models":[{"name":"llama3.1:8b","model":"llama3.1:8b"}]});
        assert_eq!(ModelList::OllamaTags.parse(&tags).unwrap(), ["llama3.1:8b"]);
        let cat = serde_json::json!([{"id":"openai/gpt-4.1","publisher":"OpenAI"}]);
        assert_eq!(
            ModelList::GithubCatalog.parse(&cat).unwrap(),
            ["openai/gpt-4.1"]
        );
        assert!(ModelList::Data.parse(&serde_json::json!({})).is_none());
    }
}
