//! Which API endpoint a request is for, from its method and path.

/// Endpoints the proxy listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`
    Models,
    /// `GET /v1/models/{id}`
    Model,
    /// `GET /health`
    Health,
    /// `POST /v1/messages` (the Anthropic Messages API)
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in the order of [`Endpoint::index`].
    pub const ALL: [Endpoint; 8] = [
        Self::Chat,
        Self::Completions,
        Self::Embeddings,
        Self::Models,
        Self::Model,
        Self::Health,
        Self::Messages,
        Self::CountTokens,
    ];

    /// This endpoint's position in [`Endpoint::ALL`] (and in a [`PerEndpoint`] table).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The path below the API root that this endpoint has upstream (after `/v1`).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Self::Chat => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Models | Self::Model => "/models",
            Self::Health => "/health",
            Self::Messages => "/messages",
            Self::CountTokens => "/messages/count_tokens",
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Models | Self::Model => "models",
            Self::Health => "health",
            Self::Messages => "messages",
            Self::CountTokens => "count_tokens",
        }
    }

    /// Whether requests to this endpoint carry a JSON body with a `model` and are
    /// routed to a provider.
    pub fn is_inference(self) -> bool {
        matches!(
            self,
            Self::Chat | Self::Completions | Self::Embeddings | Self::Messages | Self::CountTokens
        )
    }

    /// Whether the client speaks the Anthropic Messages API here (its errors are
    /// Anthropic-shaped).
    pub fn is_anthropic(self) -> bool {
        matches!(self, Self::Messages | Self::CountTokens)
    }
}

/// One value per endpoint: the single table that per-endpoint facts (upstream paths,
/// metric handles) live in, indexed by [`Endpoint`].
#[derive(Debug, Clone)]
pub struct PerEndpoint<T>([T; Endpoint::ALL.len()]);

impl<T> PerEndpoint<T> {
    /// A table with `f(endpoint)` for every endpoint.
    pub fn new(f: impl FnMut(Endpoint) -> T) -> Self {
        Self(Endpoint::ALL.map(f))
    }

    /// Each endpoint with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Endpoint, &T)> {
        Endpoint::ALL.into_iter().zip(self.0.iter())
    }
}

impl<T> std::ops::Index<Endpoint> for PerEndpoint<T> {
    type Output = T;
    fn index(&self, e: Endpoint) -> &T {
        &self.0[e.index()]
    }
}

/// Why a method/path pair is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    /// Known path, wrong method; the allowed method.
    Method(&'static str),
    /// Unknown path.
    Path,
}

/// Classifies a request. `path` is the path without the query string; a trailing slash
/// is ignored.
pub fn classify(method: &[u8], path: &str) -> Result<Endpoint, Unrouted> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (ep, allowed): (Endpoint, &'static str) = match path {
        "/v1/chat/completions" | "/chat/completions" => (Endpoint::Chat, "POST"),
        "/v1/completions" | "/completions" => (Endpoint::Completions, "POST"),
        "/v1/embeddings" | "/embeddings" => (Endpoint::Embeddings, "POST"),
        "/v1/messages" => (Endpoint::Messages, "POST"),
        "/v1/messages/count_tokens" => (Endpoint::CountTokens, "POST"),
        "/v1/models" | "/models" => (Endpoint::Models, "GET"),
        "/health" => (Endpoint::Health, "GET"),
        p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => {
            (Endpoint::Model, "GET")
        }
        _ => return Err(Unrouted::Path),
    };
    let ok = method == allowed.as_bytes() || (allowed == "GET" && method == b"HEAD");
    if ok {
        Ok(ep)
    } else {
        Err(Unrouted::Method(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            classify(b"POST", "/v1/chat/completions"),
            Ok(Endpoint::Chat)
        );
        assert_eq!(
            classify(b"POST", "/v1/chat/completions/"),
            Ok(Endpoint::Chat)
        );
        assert_eq!(classify(b"GET", "/v1/models"), Ok(Endpoint::Models));
        assert_eq!(classify(b"POST", "/v1/messages"), Ok(Endpoint::Messages));
        assert_eq!(
            classify(b"POST", "/v1/messages/count_tokens"),
            Ok(Endpoint::CountTokens)
        );
        assert!(Endpoint::Messages.is_anthropic() && !Endpoint::Chat.is_anthropic());
        assert_eq!(classify(b"GET", "/v1/models/a/b"), Ok(Endpoint::Model));
        assert_eq!(
            classify(b"GET", "/v1/chat/completions"),
            Err(Unrouted::Method("POST"))
        );
        assert_eq!(
            classify(b"POST", "/v1/models"),
            Err(Unrouted::Method("GET"))
        );
        assert_eq!(classify(b"POST", "/v2/x"), Err(Unrouted::Path));
        assert_eq!(classify(b"GET", "/"), Err(Unrouted::Path));
    }

    #[test]
    fn per_endpoint_tables_index_by_endpoint() {
        let t = PerEndpoint::new(Endpoint::label);
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(t[*e], e.label());
        }
        assert_eq!(t.iter().count(), Endpoint::ALL.len());
    }
}
