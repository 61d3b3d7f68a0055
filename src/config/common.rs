//! What every section shares: the error type and its constructor, secrets, durations,
//! URLs, IP networks, and the checks several sections run on their fields.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use switchyard_filters::glob::Pattern;

/// A configuration error: the field path, the bad value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`providers[1].base_url`).
    pub path: String,
    /// The offending value as written (never a secret).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "`{}`: {}", self.path, self.reason)
        } else {
            write!(f, "`{}` = {:?}: {}", self.path, self.value, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A [`ConfigError`] for the field `path` holding `value` (empty for a secret or an
/// absent value).
pub(crate) fn cerr(
    path: impl Into<String>,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        path: path.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// A secret value (API key, auth header). Its `Debug` and `Display` print `*****`, so it
/// cannot leak through logs or error messages by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself. Call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// A duration written as seconds (`5`, `0.5`) or with a unit (`"500ms"`, `"5s"`, `"2m"`,
/// `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "DurationRepr")]
pub struct DurationFile(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Secs(f64),
    Text(String),
}

impl TryFrom<DurationRepr> for DurationFile {
    type Error = String;
    fn try_from(r: DurationRepr) -> Result<Self, String> {
        let secs = match r {
            DurationRepr::Secs(s) => s,
            DurationRepr::Text(t) => {
                let t = t.trim();
                let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = t.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = t.strip_suffix('m') {
                    (n, 60.0)
                } else if let Some(n) = t.strip_suffix('h') {
                    (n, 3600.0)
                } else if let Some(n) = t.strip_suffix('d') {
                    (n, 86_400.0)
                } else {
                    (t, 1.0)
                };
                num.trim().parse::<f64>().map_err(|_| {
                    format!("`{t}` is not a duration (examples: 5, \"500ms\", \"5s\", \"1h\")")
                })? * mult
            }
        };
        if !(0.0..=1e9).contains(&secs) || secs.is_nan() {
            return Err(format!("duration {secs} s is out of range"));
        }
        Ok(DurationFile(Duration::from_secs_f64(secs)))
    }
}

/// A parsed `http(s)://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https`?
    pub tls: bool,
    /// Host name or address (no brackets for IPv6).
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
    /// Path without a trailing slash (`""` for the root).
    pub path: String,
}

impl BaseUrl {
    /// Parses `s`; `path` names the field for errors.
    pub fn parse(s: &str, path: &str) -> Result<Self, ConfigError> {
        let shown = mask_userinfo(s);
        let s_masked = shown.as_str();
        let uri: http::Uri = s
            .parse()
            .map_err(|e| cerr(path, s_masked, format!("not a URL: {e}")))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(cerr(
                path,
                s_masked,
                "the URL must not carry credentials (use the api key or auth header settings)",
            ));
        }
        let s = s_masked;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(cerr(path, s, "the URL must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| cerr(path, s, "the URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let p = uri.path().trim_end_matches('/').to_string();
        if uri.query().is_some() {
            return Err(cerr(path, s, "the URL must not have a query string"));
        }
        Ok(Self {
            tls,
            host,
            port,
            path: p,
        })
    }

    /// `host:port` for the Host header (port omitted when it is the scheme's default).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves the host (blocking; call at start-up or off the hot path).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d[/n]` or an IPv6 address with an optional prefix.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether a field (by its dotted path) holds or may hold a secret: its value is never
/// printed.
pub fn holds_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    matches!(
        last,
        "api_key" | "key" | "auth_header" | "url" | "admin_secret" | "password"
    ) || path.contains("extra_headers")
        || path.starts_with("redis")
}

/// `msg` without the spans it quotes in backticks or double quotes.
pub(super) fn without_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        match (quote, c) {
            (None, '`' | '"') => {
                quote = Some(c);
                out.push_str("(value not shown)");
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// `url` with any `user:password@` replaced by `***@`, for messages and logs.
pub fn mask_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether `key` can be sent as `Authorization: Bearer <key>` (no control characters
/// such as a trailing newline).
pub fn bearer_ok(key: &str) -> bool {
    http::HeaderValue::from_str(&format!("Bearer {key}")).is_ok()
}

/// The problem recorded for a credential that is not a valid header value. Names the
/// field, never the value.
pub(super) fn bad_credential(path: impl Into<String>, what: &str) -> ConfigError {
    cerr(
        path,
        "",
        format!(
            "{what} is not a valid HTTP header value (it holds a control character, such as \
             a trailing newline); the provider is left out and takes no requests"
        ),
    )
}

/// `h` as lowercased header pairs; an invalid name or value is an error at
/// `path.<name>` (a bad value is not shown: headers often carry credentials).
pub(super) fn check_headers(
    h: &BTreeMap<String, String>,
    path: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(h.len());
    for (k, v) in h {
        http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| cerr(format!("{path}.{k}"), k.as_str(), "not a valid header name"))?;
        http::HeaderValue::from_str(v)
            .map_err(|_| cerr(format!("{path}.{k}"), "", "not a valid header value"))?;
        out.push((k.to_ascii_lowercase(), v.clone()));
    }
    Ok(out)
}

/// Checks that each entry of `names` can be a query parameter name.
pub(super) fn check_query_names(names: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.contains(['&', '=', '#', ' ']) {
            return Err(cerr(
                format!("{path}[{i}]"),
                n.as_str(),
                "not a query parameter name",
            ));
        }
    }
    Ok(())
}

/// Checks that no model name or glob of `models` is empty.
pub(super) fn check_patterns(models: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, m) in models.iter().enumerate() {
        if m.trim().is_empty() {
            return Err(cerr(format!("{path}[{i}]"), m.as_str(), "empty model name"));
        }
        let _ = Pattern::new(m);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        let one = IpNet::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "host", "10.0.0/8"] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn base_url_parsing() {
        let u = BaseUrl::parse("https://api.groq.com/openai/v1/", "x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/openai/v1"));
        assert_eq!(u.authority(), "api.groq.com");
        let u = BaseUrl::parse("http://127.0.0.1:8000", "x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8000, ""));
        assert_eq!(u.authority(), "127.0.0.1:8000");
        assert!(BaseUrl::parse("localhost:8000", "x").is_err());
    }
}
