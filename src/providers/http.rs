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
    /// `Authorization` header value (marked sensitive).
    pub auth: Option<HeaderValue>,
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

pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) read: Duration,
    pub(crate) idle: Duration,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_upstream(
    url: &BaseUrl,
    base_path: &str,
    auth: Option<&str>,
    extra: &[(String, String)],
    forward_query: &[String],
    addr: Option<SocketAddr>,
    t: &Timeouts,
) -> Result<Upstream, String> {
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
    let auth = match auth.map(HeaderValue::from_str) {
        Some(Ok(mut v)) => {
            v.set_sensitive(true);
            Some(v)
        }
        Some(Err(_)) => {
            credential_invalid = true;
            None
        }
        None => None,
    };
    let mut extra_headers = Vec::with_capacity(extra.len());
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
        forward_query: forward_query.to_vec(),
    })
}
