//! `[server]`: listeners, threads, buffers, limits and timeouts. The section validates
//! itself; it needs nothing from the others.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::common::{cerr, ConfigError, IpNet};

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    /// Proxy listener (`host:port`; port 0 picks a free port, printed at start).
    pub listen: String,
    /// Admin listener: health, metrics, stats.
    pub admin_listen: String,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones.
    pub work_stealing: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// PEM certificate for TLS on the proxy listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the proxy listener.
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of CAs trusted for upstream TLS instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Upstream TCP (and TLS) connect timeout, ms.
    pub connect_timeout_ms: u64,
    /// Longest wait for any read from an upstream (time to first token included), s.
    pub upstream_read_timeout_secs: u64,
    /// Longest wait for the client to send the next part of its request, s.
    pub client_read_timeout_secs: u64,
    /// Idle upstream connections kept for reuse.
    pub upstream_keepalive_pool: usize,
    /// How long an idle pooled upstream connection is kept, s.
    pub upstream_idle_timeout_secs: u64,
    /// On SIGTERM, how long in-flight requests may take to finish, s.
    pub shutdown_grace_secs: u64,
    /// Pingora's upgrade socket for zero-downtime restarts (`switchyard --upgrade`).
    pub upgrade_sock: String,
    /// Write-buffer size of client connections, bytes.
    pub write_buffer_bytes: usize,
    /// Read-buffer size of client connections, bytes (request headers; bodies are read
    /// into their own buffer).
    pub read_buffer_bytes: usize,
    /// How long a client connection may wait without sending a byte of a request (a new
    /// connection, or between kept-alive requests) before it is closed, s.
    pub client_idle_timeout_secs: u64,
    /// The whole request header must arrive within this time of its first byte, s.
    pub client_header_timeout_secs: u64,
    /// The request body must arrive within this time plus its size at
    /// `client_body_min_rate_bytes_per_sec`, s.
    pub client_body_timeout_secs: u64,
    /// The slowest average rate a request body may arrive at, bytes per second.
    pub client_body_min_rate_bytes_per_sec: u64,
    /// The longest a write to the client may wait (a client that stops reading a stream
    /// is dropped after it, and the upstream request cancelled), s.
    pub client_write_timeout_secs: u64,
    /// Client connections open at once; more are answered 503 and closed.
    pub max_client_connections: usize,
    /// The largest request header block accepted, bytes (431 beyond).
    pub max_request_header_bytes: usize,
    /// The longest model name accepted, bytes (400 beyond).
    pub max_model_name_bytes: usize,
    /// Keep the spelling of header names as the client (toward the upstream) and the
    /// upstream (toward the client) wrote them. Off: names go out in the canonical case
    /// (`Content-Type`, lowercase for uncommon names), which HTTP says is the same, and
    /// each message needs one header map instead of two.
    pub preserve_header_case: bool,
    /// Client addresses (IPs or CIDR ranges) whose `X-Forwarded-For` is kept and appended
    /// to; from anyone else it is replaced by the client's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            threads: 1,
            work_stealing: false,
            max_body_bytes: 32 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            connect_timeout_ms: 2000,
            upstream_read_timeout_secs: 600,
            client_read_timeout_secs: 60,
            upstream_keepalive_pool: 1024,
            upstream_idle_timeout_secs: 60,
            shutdown_grace_secs: 30,
            upgrade_sock: "/tmp/switchyard_upgrade.sock".into(),
            write_buffer_bytes: 16 * 1024,
            read_buffer_bytes: 4096,
            client_idle_timeout_secs: 60,
            client_header_timeout_secs: 10,
            client_body_timeout_secs: 10,
            client_body_min_rate_bytes_per_sec: 16 * 1024,
            client_write_timeout_secs: 30,
            max_client_connections: 10_000,
            max_request_header_bytes: 64 * 1024,
            max_model_name_bytes: 256,
            preserve_header_case: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Proxy listener address (port 0 allowed).
    pub listen: SocketAddr,
    /// Admin listener address (port 0 allowed).
    pub admin_listen: SocketAddr,
    /// Proxy worker threads (>= 1).
    pub threads: usize,
    /// Work stealing between proxy threads.
    pub work_stealing: bool,
    /// Body limit, bytes.
    pub max_body_bytes: usize,
    /// TLS certificate and key for the proxy listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA bundle for upstream TLS.
    pub ca_file: Option<PathBuf>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout.
    pub upstream_read_timeout: Duration,
    /// Client read timeout.
    pub client_read_timeout: Duration,
    /// Upstream keep-alive pool size.
    pub upstream_keepalive_pool: usize,
    /// Pooled connection idle timeout.
    pub upstream_idle_timeout: Duration,
    /// SIGTERM grace period.
    pub shutdown_grace: Duration,
    /// Upgrade socket path.
    pub upgrade_sock: String,
    /// Client connection write buffer, bytes.
    pub write_buffer_bytes: usize,
    /// Client connection read buffer, bytes.
    pub read_buffer_bytes: usize,
    /// Wait for the first byte of a request.
    pub client_idle_timeout: Duration,
    /// Time from a request header's first byte to its end.
    pub client_header_timeout: Duration,
    /// Base time a request body may take.
    pub client_body_timeout: Duration,
    /// Slowest average body rate, bytes per second (>= 1).
    pub client_body_min_rate: u64,
    /// Longest wait of one write to the client.
    pub client_write_timeout: Duration,
    /// Client connections open at once.
    pub max_client_connections: usize,
    /// Largest request header block.
    pub max_request_header_bytes: usize,
    /// Longest model name.
    pub max_model_name_bytes: usize,
    /// Header names keep their spelling.
    pub preserve_header_case: bool,
    /// Proxies whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<IpNet>,
}

impl ServerFile {
    /// Validates the section. The TLS certificate and key and the CA bundle must exist;
    /// the listener addresses are resolved (a host name is looked up).
    pub fn validate(&self) -> Result<ServerSettings, ConfigError> {
        if self.threads == 0 || self.threads > 256 {
            return Err(cerr(
                "server.threads",
                self.threads.to_string(),
                "must be between 1 and 256",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(cerr("server.max_body_bytes", "0", "must be positive"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(cerr("server.connect_timeout_ms", "0", "must be positive"));
        }
        if self.upstream_read_timeout_secs == 0 {
            return Err(cerr(
                "server.upstream_read_timeout_secs",
                "0",
                "must be positive",
            ));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                for (p, name) in [(c, "server.tls_cert"), (k, "server.tls_key")] {
                    if !p.exists() {
                        return Err(cerr(name, p.display().to_string(), "file does not exist"));
                    }
                }
                Some((c.clone(), k.clone()))
            }
            (None, None) => None,
            (Some(c), None) => {
                return Err(cerr(
                    "server.tls_key",
                    "",
                    format!("required with tls_cert {}", c.display()),
                ))
            }
            (None, Some(_)) => return Err(cerr("server.tls_cert", "", "required with tls_key")),
        };
        let secs = |v: u64, name: &str, min: u64, max: u64| -> Result<Duration, ConfigError> {
            if v < min || v > max {
                return Err(cerr(
                    format!("server.{name}"),
                    v.to_string(),
                    format!("must be between {min} and {max}"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
        let client_idle_timeout = secs(
            self.client_idle_timeout_secs,
            "client_idle_timeout_secs",
            1,
            86_400,
        )?;
        let client_header_timeout = secs(
            self.client_header_timeout_secs,
            "client_header_timeout_secs",
            1,
            3_600,
        )?;
        let client_body_timeout = secs(
            self.client_body_timeout_secs,
            "client_body_timeout_secs",
            1,
            3_600,
        )?;
        let client_write_timeout = secs(
            self.client_write_timeout_secs,
            "client_write_timeout_secs",
            1,
            3_600,
        )?;
        if self.client_body_min_rate_bytes_per_sec == 0 {
            return Err(cerr(
                "server.client_body_min_rate_bytes_per_sec",
                "0",
                "must be positive",
            ));
        }
        if self.max_client_connections == 0 {
            return Err(cerr(
                "server.max_client_connections",
                "0",
                "must be positive",
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.max_request_header_bytes) {
            return Err(cerr(
                "server.max_request_header_bytes",
                self.max_request_header_bytes.to_string(),
                "must be between 1024 and 1048576",
            ));
        }
        if !(1..=65_536).contains(&self.max_model_name_bytes) {
            return Err(cerr(
                "server.max_model_name_bytes",
                self.max_model_name_bytes.to_string(),
                "must be between 1 and 65536",
            ));
        }
        let mut trusted_proxies = Vec::with_capacity(self.trusted_proxies.len());
        for (i, t) in self.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(IpNet::parse(t).ok_or_else(|| {
                cerr(
                    format!("server.trusted_proxies[{i}]"),
                    t.as_str(),
                    "not an IP address or CIDR range",
                )
            })?);
        }
        if let Some(ca) = &self.ca_file {
            if !ca.exists() {
                return Err(cerr(
                    "server.ca_file",
                    ca.display().to_string(),
                    "file does not exist",
                ));
            }
        }
        // Out of range is an error naming the field, never a silent clamp.
        if self.client_read_timeout_secs == 0 {
            return Err(cerr(
                "server.client_read_timeout_secs",
                "0",
                "must be at least 1",
            ));
        }
        if !(1460..=1 << 20).contains(&self.write_buffer_bytes) {
            return Err(cerr(
                "server.write_buffer_bytes",
                self.write_buffer_bytes.to_string(),
                "must be between 1460 and 1048576",
            ));
        }
        if self.read_buffer_bytes > 1 << 20 {
            return Err(cerr(
                "server.read_buffer_bytes",
                self.read_buffer_bytes.to_string(),
                "must be at most 1048576",
            ));
        }
        let server = ServerSettings {
            listen: parse_addr(&self.listen, "server.listen")?,
            admin_listen: parse_addr(&self.admin_listen, "server.admin_listen")?,
            threads: self.threads,
            work_stealing: self.work_stealing,
            max_body_bytes: self.max_body_bytes,
            tls,
            ca_file: self.ca_file.clone(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            upstream_read_timeout: Duration::from_secs(self.upstream_read_timeout_secs),
            client_read_timeout: Duration::from_secs(self.client_read_timeout_secs),
            upstream_keepalive_pool: self.upstream_keepalive_pool,
            upstream_idle_timeout: Duration::from_secs(self.upstream_idle_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            upgrade_sock: self.upgrade_sock.clone(),
            write_buffer_bytes: self.write_buffer_bytes,
            read_buffer_bytes: self.read_buffer_bytes,
            client_idle_timeout,
            client_header_timeout,
            client_body_timeout,
            client_body_min_rate: self.client_body_min_rate_bytes_per_sec,
            client_write_timeout,
            max_client_connections: self.max_client_connections,
            max_request_header_bytes: self.max_request_header_bytes,
            max_model_name_bytes: self.max_model_name_bytes,
            preserve_header_case: self.preserve_header_case,
            trusted_proxies,
        };
        if server.listen == server.admin_listen && server.listen.port() != 0 {
            return Err(cerr(
                "server.admin_listen",
                self.admin_listen.as_str(),
                "must differ from server.listen",
            ));
        }
        Ok(server)
    }
}

/// `s` resolved as `host:port` (the first address it resolves to).
fn parse_addr(s: &str, path: &str) -> Result<SocketAddr, ConfigError> {
    s.to_socket_addrs()
        .map_err(|e| cerr(path, s, format!("not a host:port address: {e}")))?
        .next()
        .ok_or_else(|| cerr(path, s, "resolves to no address"))
}
