//! Assembles the Pingora server: the proxy service, the admin service, the background
//! services, and the shutdown policy.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::accesslog::AccessLog;
use crate::admin::Admin;
use crate::background::{Discovery, Refresher};
use crate::config::Settings;
use crate::proxy::Gateway;
use crate::state::Hub;

/// Warns when the process may run out of file descriptors before it reaches
/// `max_client_connections` (each proxied request also holds an upstream connection).
fn warn_if_few_descriptors(max_conns: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        let want = max_conns.saturating_mul(2).saturating_add(256);
        if soft < want {
            log::warn!(
                "the open-file limit is {soft}; server.max_client_connections = {max_conns} may need up to {want} (raise it with `ulimit -n` or LimitNOFILE)"
            );
        }
    }
}

/// Resolves port 0 to a free port now, so the address can be announced before Pingora
/// binds it.
fn concrete(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = TcpListener::bind(addr)?;
    l.local_addr()
}

/// On SIGTERM: fail readiness, let in-flight requests finish (bounded by the grace
/// period), then stop. SIGINT stops at once. SIGQUIT hands the sockets over to a new
/// process (`--upgrade`).
struct DrainingSignal {
    hub: Arc<Hub>,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignal {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            log::error!("cannot install signal handlers; waiting forever");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {
                log::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = quit.recv() => {
                log::info!("SIGQUIT: handing the listening sockets to the new process");
                self.hub.shutting_down.store(true, Ordering::Relaxed);
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                self.hub.shutting_down.store(true, Ordering::Relaxed);
                let deadline = Instant::now() + self.grace;
                log::info!("SIGTERM: draining in-flight requests (at most {:?})", self.grace);
                loop {
                    let inflight = self.hub.inflight_total();
                    if inflight == 0 {
                        log::info!("drained; stopping");
                        break;
                    }
                    if Instant::now() >= deadline {
                        log::warn!("grace period over with {inflight} request(s) in flight; ending them with an error and stopping");
                        self.abandon_inflight().await;
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        _ = int.recv() => return ShutdownSignal::FastShutdown,
                    }
                }
                self.hub.access_log.flush();
                ShutdownSignal::FastShutdown
            }
        }
    }
}

impl DrainingSignal {
    /// Tells the requests still in flight to end (streams with an SSE error event), and
    /// waits a moment for them to write it.
    async fn abandon_inflight(&self) {
        let _ = self.hub.abandon.send(true);
        let until = Instant::now() + ABANDON_WAIT;
        while Instant::now() < until && self.hub.inflight_total() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How long requests abandoned at the end of the grace period get to write their error.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// Builds and runs the server until it is told to stop.
pub fn run(settings: Settings, upgrade: bool, daemon: bool) -> Result<(), String> {
    let level = settings.log.level.clone();
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .try_init();

    let listen = concrete(settings.server.listen)
        .map_err(|e| format!("cannot bind {}: {e}", settings.server.listen))?;
    let admin_listen = concrete(settings.server.admin_listen)
        .map_err(|e| format!("cannot bind {}: {e}", settings.server.admin_listen))?;

    let access = AccessLog::stdout(settings.log.access);
    for env in &settings.detected {
        if let Some(p) = settings.providers.iter().find(|p| {
            p.auto_detected
                && crate::providers::presets::PRESETS.iter().any(|k| {
                    k.kind == p.kind && (k.env == Some(*env) || k.env_fallback == Some(*env))
                })
        }) {
            log::info!("provider {} registered from {env}", p.name);
        }
    }
    for w in &settings.warnings {
        log::warn!("{w}");
    }
    for p in &settings.problems {
        log::error!("configuration: {p}");
    }
    if settings.detected.is_empty() {
        log::info!("no cloud provider credentials found in the environment");
    }

    let threads = settings.server.threads;
    let mut conf = ServerConf {
        threads,
        work_stealing: settings.server.work_stealing,
        // SIGTERM drains in DrainingSignal; this is the old process's time after a
        // SIGQUIT upgrade for its in-flight requests.
        grace_period_seconds: Some(settings.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: settings.server.upstream_keepalive_pool,
        // Pingora's own timeouts (the header and body reads, the upstream reads) of a
        // second or more run on tokio's timer wheel rather than its 10 ms "fast" timer:
        // registering one of those took a clock read, u128 arithmetic and a lock on a
        // tree per read, more than tokio's wheel costs (docs/benchmarks.md).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        upgrade_sock: settings.server.upgrade_sock.clone(),
        daemon,
        ..ServerConf::default()
    };
    conf.ca_file = settings
        .server
        .ca_file
        .as_ref()
        .map(|p| p.display().to_string());
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let hub = Hub::new(settings, access)?;
    let grace = hub.settings.server.shutdown_grace;

    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &conf,
        Gateway::new(hub.clone()),
        "switchyard-proxy",
    );
    let buffers = L4BufferSettings::new(
        hub.settings.server.read_buffer_bytes,
        hub.settings.server.write_buffer_bytes,
    );
    if let Some(app) = proxy.app_logic_mut() {
        let s = &hub.settings.server;
        let mut o = HttpServerOptions::default();
        o.h1_idle_timeout = Some(s.client_idle_timeout);
        o.h1_header_timeout = Some(s.client_header_timeout);
        o.h1_max_header_bytes = Some(s.max_request_header_bytes);
        o.h1_preserve_header_case = Some(s.preserve_header_case);
        app.server_options = Some(o);
    }
    proxy.set_connection_limit(hub.connections.clone());
    warn_if_few_descriptors(hub.settings.server.max_client_connections);
    let mut listener = ListenerConfig::tcp(listen.to_string()).l4_buffer(buffers);
    if let Some((cert, key)) = &hub.settings.server.tls {
        let tls =
            TlsSettings::intermediate(&cert.display().to_string(), &key.display().to_string())
                .map_err(|e| format!("cannot load the TLS certificate or key: {e}"))?;
        listener = listener.tls(tls);
    }
    proxy.add_listener(listener);

    let control = crate::control::Control::new(hub.clone(), hub.settings.control.clone());
    let history = crate::admin::history::History::new();
    let mut admin = Service::new(
        "switchyard-admin".to_string(),
        Admin::new(hub.clone(), control.clone(), history.clone()),
    );
    admin.add_tcp(&admin_listen.to_string());
    let discovery = background_service("switchyard-discovery", Discovery::new(hub.clone()));
    let refresher = background_service("switchyard-refresher", Refresher::new(hub.clone()));
    let cli = background_service(
        "switchyard-cli-pools",
        crate::providers::cli::maintainer::Maintainer::new(hub.cli_pools.clone()),
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(discovery);
    server.add_service(refresher);
    server.add_service(background_service(
        "switchyard-store-upkeep",
        crate::background::StoreUpkeep::new(hub.clone()),
    ));
    server.add_service(cli);
    server.add_service(background_service("switchyard-control", control.service()));
    server.add_service(background_service(
        "switchyard-history",
        crate::admin::history::Sampler::new(hub.clone(), history),
    ));

    let scheme = if hub.settings.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let announce = serde_json::json!({
        "event": "listening",
        "proxy": listen.to_string(),
        "admin": admin_listen.to_string(),
        "scheme": scheme,
        "version": env!("CARGO_PKG_VERSION"),
    });
    log::info!("proxy on {scheme}://{listen}, admin on http://{admin_listen}");
    #[allow(clippy::print_stdout)]
    {
        println!("{announce}");
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignal { hub, grace }),
    });
    Ok(())
}
