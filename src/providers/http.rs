//! Providers reached over HTTP: how a provider's upstream is prepared once per
//! snapshot (peer, paths per endpoint, credential, extra headers) and why a provider
//! may be left out.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use switchyard_filters::endpoint::PerEndpoint;

use crate::config::BaseUrl;
use crate::providers::presets::{AuthStyle, MessagesMode, Wire};

/// `anthropic-version` sent to Anthropic-dialect upstreams when the client sent none:
/// the version whose request fields the translator writes.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What an HTTP upstream is, as configured.
pub(crate) struct UpstreamSpec<'a> {
    /// Where it is.
    pub(crate) url: &'a BaseUrl,
    /// Its API root path (the part before `/chat/completions`, `/messages`, …).
    pub(crate) api_root: String,
    /// The credential as configured: a key (sent in the auth style's header) or a whole
    /// `Authorization` value.
    pub(crate) credential: Option<Credential<'a>>,
    /// Headers added to every request.
    pub(crate) extra: &'a [(String, String)],
    /// Query parameters passed on.
    pub(crate) forward_query: &'a [String],
    /// What its chat surface speaks.
    pub(crate) wire: Wire,
    /// How it serves `/v1/messages`.
    pub(crate) messages: MessagesMode,
    /// Fields it rejects.
    pub(crate) drop_params: &'static [&'static str],
    /// Headers its kind always gets.
    pub(crate) preset_headers: &'static [(&'static str, &'static str)],
}

/// A credential as configured.
pub(crate) enum Credential<'a> {
    /// An API key, sent the way the provider takes it.
    Key(&'a str, AuthStyle),
    /// A whole `Authorization` header value (the local backend's `auth_header`).
    Header(&'a str),
}

/// How to reach an HTTP upstream, prepared once per snapshot.
pub struct Upstream {
    /// Peer template, cloned per request. `None` while the host does not resolve.
    pub peer: Option<HttpPeer>,
    /// The `Host` header value.
    pub host: HeaderValue,
    /// The API root path (`/v1`, `/openai/v1`, …).
    pub base_path: String,
    /// Where each endpoint's requests go upstream.
    pub targets: PerEndpoint<Target>,
    /// The credential header (`Authorization` or `x-api-key`), its wire spelling, and
    /// its value (marked sensitive).
    pub auth: Option<(HeaderName, &'static str, HeaderValue)>,
    /// What its chat surface speaks.
    pub wire: Wire,
    /// How it serves `/v1/messages`.
    pub messages: MessagesMode,
    /// Top-level request fields it rejects (dropped before the request leaves).
    pub drop_params: &'static [&'static str],
    /// Headers added to every request.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Human-readable `scheme://host:port/path` (no credentials).
    pub display: String,
    /// The configured credential cannot be sent (not a valid header value): the provider
    /// is left out.
    pub credential_invalid: bool,
    /// Query parameters passed on; every other one is dropped.
    pub forward_query: Vec<String>,
}

/// The upstream path of one endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URI requests go to (`<base path><suffix>`).
    pub uri: Uri,
    /// Whether it equals the client's standard `/v1/...` path (nothing to rewrite).
    pub standard: bool,
}

/// Why a provider takes no requests: its `api_key_env` variable is not set.
pub const KEY_ENV_UNSET: &str = "its API key variable is not set";
/// Why a provider takes no requests: its credential cannot be sent.
pub const CREDENTIAL_INVALID: &str =
    "its credential is not a valid HTTP header value (a control character such as a trailing newline?)";
/// `switchyard_provider_disabled`'s `reason` labels and the reasons they stand for.
pub(crate) const DISABLED_REASONS: [(&str, &str); 2] = [
    ("key_env_unset", KEY_ENV_UNSET),
    ("invalid_credential", CREDENTIAL_INVALID),
];

pub(crate) fn up_disabled(up: &Upstream) -> Option<&'static str> {
    up.credential_invalid.then_some(CREDENTIAL_INVALID)
}

/// How upstream connections are made and kept.
pub(crate) struct PeerSettings {
    pub(crate) connect: Duration,
    pub(crate) read: Duration,
    pub(crate) idle: Duration,
    /// Keep the upstream's spelling of response header names (a second header map per
    /// response).
    pub(crate) preserve_header_case: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_upstream(
    spec: &UpstreamSpec<'_>,
    addr: Option<SocketAddr>,
    t: &PeerSettings,
) -> Result<Upstream, String> {
    let url = spec.url;
    let base_path = spec.api_root.as_str();
    let peer = addr.map(|a| {
        let mut p = HttpPeer::new(
            a,
            url.tls,
            if url.tls {
                url.host.clone()
            } else {
                String::new()
            },
        );
        p.options.connection_timeout = Some(t.connect);
        p.options.total_connection_timeout = Some(t.connect * 2);
        p.options.read_timeout = Some(t.read);
        p.options.write_timeout = Some(t.read);
        p.options.idle_timeout = Some(t.idle);
        p.options.alpn = ALPN::H1;
        p.options.h1_preserve_response_header_case = t.preserve_header_case;
        p
    });
    let host =
        HeaderValue::from_str(&url.authority()).map_err(|_| format!("bad host {}", url.host))?;
    let mut bad = None;
    let targets = PerEndpoint::new(|e| {
        let suffix = e.upstream_suffix();
        let uri = format!("{base_path}{suffix}")
            .parse::<Uri>()
            .unwrap_or_else(|err| {
                bad = Some(format!("bad upstream path {base_path}{suffix}: {err}"));
                Uri::from_static("/")
            });
        let standard = uri.path() == format!("/v1{suffix}");
        Target { uri, standard }
    });
    if let Some(e) = bad {
        return Err(e);
    }
    // A credential that cannot be sent leaves this provider out (see `up_disabled`),
    // never the whole snapshot.
    let mut credential_invalid = false;
    let auth = spec.credential.as_ref().map(|c| match c {
        Credential::Key(k, AuthStyle::Bearer) => (
            http::header::AUTHORIZATION,
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {k}")),
        ),
        Credential::Key(k, AuthStyle::XApiKey) => (
            HeaderName::from_static("x-api-key"),
            "x-api-key",
            HeaderValue::from_str(k),
        ),
        Credential::Header(h) => (
            http::header::AUTHORIZATION,
            "Authorization",
            HeaderValue::from_str(h),
        ),
    });
    let auth = match auth {
        Some((name, case, Ok(mut v))) => {
            v.set_sensitive(true);
            Some((name, case, v))
        }
        Some((_, _, Err(_))) => {
            credential_invalid = true;
            None
        }
        None => None,
    };
    let extra = spec.extra;
    let mut extra_headers = Vec::with_capacity(extra.len() + spec.preset_headers.len() + 1);
    for (k, v) in spec.preset_headers {
        extra_headers.push((HeaderName::from_static(k), HeaderValue::from_static(v)));
    }
    if spec.wire == Wire::Anthropic {
        extra_headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
    }
    for (k, v) in extra {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k}"))?;
        let mut value =
            HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k}"))?;
        if name == http::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        extra_headers.push((name, value));
    }
    Ok(Upstream {
        peer,
        host,
        base_path: base_path.to_string(),
        targets,
        auth,
        extra_headers,
        display: format!(
            "{}://{}{}",
            if url.tls { "https" } else { "http" },
            url.authority(),
            url.path
        ),
        credential_invalid,
        forward_query: spec.forward_query.to_vec(),
        wire: spec.wire,
        messages: spec.messages,
        drop_params: spec.drop_params,
    })
}
