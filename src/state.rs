//! The running state: one immutable [`Snapshot`] of everything the hot path reads,
//! behind an `ArcSwap`, and the [`Hub`] that builds and swaps it.
//!
//! A request loads the snapshot once (in `request_filter`) and keeps the `Arc` in its
//! context, so it finishes on the configuration it started with: a backend change never
//! breaks a request in flight. Snapshots are built off the hot path (at start, after a
//! discovery, after a runtime config change) from the file [`Settings`] plus the dynamic
//! parts (local backend overrides, discovered models, resolved addresses); a candidate
//! that fails validation is counted and the last good snapshot stays.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;
use parking_lot::Mutex;
use pingora_core::services::connection_limit::ConnectionLimit;
use switchyard_filters::glob::Pattern;
use switchyard_filters::route::{Class, RouteProvider, RouteTable, Strategy};

use crate::accesslog::AccessLog;
use crate::cache::Coalescer;
use crate::config::{BaseUrl, LocalKind, LocalSettings, ProviderKind, Secret, Settings};
use crate::metrics::{InferenceStats, Metrics, ProviderCounters};
use crate::providers::cli::CliPool;
use crate::providers::http::{
    build_upstream, up_disabled, Credential, PeerSettings, UpstreamSpec, DISABLED_REASONS,
};
pub use crate::providers::http::{Target, Upstream, CREDENTIAL_INVALID, KEY_ENV_UNSET};
use crate::providers::presets::{preset, Wire};
use crate::store::memory::MemoryStore;
use crate::store::redis::{MirrorSettings, RedisStore, StoreMetrics};
use crate::store::{RuntimeValues, Store};
use crate::tenancy::Tenancy;

/// Lifecycle state of the local backend (`config:inference.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalState {
    /// Serving; the only state in which it is routed to.
    #[default]
    Ready,
    /// Being started.
    Starting,
    /// Finishing in-flight requests before a stop or switch.
    Draining,
    /// Failed health checks or failed to start.
    Error,
    /// Stopped.
    Stopped,
}

impl LocalState {
    /// Parses the Redis/admin spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Self::Ready,
            "starting" => Self::Starting,
            "draining" => Self::Draining,
            "error" => Self::Error,
            "stopped" => Self::Stopped,
            _ => return None,
        })
    }

    /// The Redis/admin spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Starting => "starting",
            Self::Draining => "draining",
            Self::Error => "error",
            Self::Stopped => "stopped",
        }
    }
}

/// An in-process mock provider's behaviour.
#[derive(Debug, Clone)]
pub struct MockSpec {
    /// `echo` or fixed reply text.
    pub reply: String,
    /// Delay between streamed tokens.
    pub itl: Duration,
}

/// One provider in a snapshot.
pub struct Provider {
    /// Unique name (`local` for the local backend).
    pub name: String,
    /// `vllm`, `openai`, `mock`, …
    pub kind: &'static str,
    /// Local, cloud or in-process.
    pub class: Class,
    /// How to reach it (`None` for in-process providers).
    pub upstream: Option<Upstream>,
    /// In-process behaviour (mock providers).
    pub mock: Option<MockSpec>,
    /// The process pool of a CLI provider.
    pub cli: Option<Arc<CliPool>>,
    /// Counters shared by every snapshot that has this provider.
    pub counters: Arc<ProviderCounters>,
    /// Exact model names to list on `/v1/models`.
    pub listed_models: Vec<String>,
    /// The provider's name as a response header value.
    pub name_header: HeaderValue,
    /// Ask for `stream_options.include_usage` on streams.
    pub inject_usage: bool,
    /// Why this provider takes no requests at all (its credential is missing).
    pub disabled: Option<&'static str>,
}

/// The local backend as the current snapshot sees it.
#[derive(Debug, Clone)]
pub struct LocalView {
    /// Index in [`Snapshot::providers`].
    pub index: usize,
    /// Backend kind.
    pub kind: LocalKind,
    /// Server root URL (no credentials).
    pub url: String,
    /// Lifecycle state.
    pub state: LocalState,
    /// Discovered models, sorted.
    pub models: Vec<String>,
}

/// Everything the hot path reads. Immutable; replaced whole.
pub struct Snapshot {
    /// Increments with every swap.
    pub generation: u64,
    /// Providers; indices match `route.providers`.
    pub providers: Vec<Provider>,
    /// The routing table.
    pub route: RouteTable,
    /// The local backend, if one is configured.
    pub local: Option<LocalView>,
    /// Request body limit.
    pub max_body: usize,
    /// Model names that get their own metric label.
    pub metric_models: HashSet<String, switchyard_filters::route::NameHasher>,
}

impl Snapshot {
    /// Why provider `i` cannot take requests now, if it cannot.
    pub fn unavailable(&self, i: usize) -> Option<&'static str> {
        if let Some(l) = &self.local {
            if l.index == i && l.state != LocalState::Ready {
                return Some(match l.state {
                    LocalState::Starting => "local backend is starting",
                    LocalState::Draining => "local backend is draining",
                    LocalState::Error => "local backend is in error",
                    LocalState::Stopped => "local backend is stopped",
                    LocalState::Ready => "",
                });
            }
        }
        let p = &self.providers[i];
        if p.disabled.is_some() {
            return p.disabled;
        }
        match &p.upstream {
            Some(u) if u.peer.is_none() => Some("host does not resolve"),
            _ => None,
        }
    }

    /// The label a model gets in metrics.
    pub fn metric_model<'a>(&self, model: &'a str) -> &'a str {
        if self.metric_models.contains(model) {
            model
        } else {
            "other"
        }
    }
}

/// Runtime overrides of the local backend and strategy (from Redis or the admin API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeOverrides {
    /// `config:inference.backend`
    pub kind: Option<LocalKind>,
    /// `config:inference.url` (empty = the kind's default)
    pub url: Option<String>,
    /// `config:inference.auth`
    pub auth: Option<Secret>,
    /// `config:inference.state`
    pub state: Option<LocalState>,
    /// `config:routing.strategy`
    pub strategy: Option<Strategy>,
}

#[derive(Default)]
struct Dynamic {
    overrides: RuntimeOverrides,
    discovered: Vec<String>,
    /// Models read from each discovering provider's model list.
    provider_models: HashMap<String, Vec<String>>,
    /// (host, port) -> address.
    resolved: HashMap<(String, u16), SocketAddr>,
}

/// Owner of the snapshot and of everything shared across requests.
pub struct Hub {
    /// The validated file configuration.
    pub settings: Settings,
    current: ArcSwap<Snapshot>,
    dynamic: Mutex<Dynamic>,
    counters: Mutex<HashMap<String, Arc<ProviderCounters>>>,
    generation: AtomicU64,
    /// Metrics.
    pub metrics: Metrics,
    /// Local backend statistics.
    pub inference: InferenceStats,
    /// Set once SIGTERM arrived: readiness fails, responses close their connections.
    pub shutting_down: AtomicBool,
    /// Access log writer.
    pub access_log: AccessLog,
    /// Wakes model discovery at once (after a local backend change).
    pub discovery_kick: tokio::sync::Notify,
    /// Keys, rate limits, quotas over the store.
    pub tenancy: Tenancy,
    /// Identical cacheable requests in flight.
    pub coalescer: Coalescer,
    /// This replica's id (`inflight:<replica>`).
    pub replica_id: String,
    /// The cap on the proxy listener's open connections (`server.max_client_connections`).
    pub connections: Arc<ConnectionLimit>,
    /// Set when the shutdown grace period ends: streams still open end with an error
    /// event.
    pub abandon: tokio::sync::watch::Sender<bool>,
    /// The process pools of the CLI providers (they outlive snapshots).
    pub cli_pools: Vec<Arc<CliPool>>,
    last_runtime_error: Mutex<Option<String>>,
}

/// Validates stored runtime values into overrides. Names the key and the bad value.
pub fn runtime_overrides(v: &RuntimeValues) -> Result<RuntimeOverrides, String> {
    let kind = match v.backend.as_deref() {
        None => None,
        Some(b) => Some(LocalKind::parse(b).ok_or_else(|| {
            format!(
                "config:inference.backend = {b:?}: expected ollama, vllm, sglang, custom or none"
            )
        })?),
    };
    let state = match v.state.as_deref() {
        None => None,
        Some(s) => Some(LocalState::parse(s).ok_or_else(|| {
            format!("config:inference.state = {s:?}: expected ready, starting, draining, error or stopped")
        })?),
    };
    let strategy = match v.strategy.as_deref() {
        None => None,
        Some(s) => Some(Strategy::parse(s).ok_or_else(|| {
            format!("config:routing.strategy = {s:?}: expected local-first, cloud-first, local-only or cloud-only")
        })?),
    };
    if let Some(u) = v.url.as_deref().filter(|u| !u.is_empty()) {
        BaseUrl::parse(u, "config:inference.url").map_err(|e| e.to_string())?;
    }
    Ok(RuntimeOverrides {
        kind,
        url: v.url.clone(),
        auth: v.auth.clone().map(Secret::new),
        state,
        strategy,
    })
}

/// The address of `url`: an IP literal as is, a host name as last resolved.
fn address(resolved: &HashMap<(String, u16), SocketAddr>, url: &BaseUrl) -> Option<SocketAddr> {
    match url.host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, url.port)),
        Err(_) => resolved.get(&(url.host.clone(), url.port)).copied(),
    }
}

/// `<host name>-<pid>`, the default replica id.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

/// The most cache keys a replica's mirror of the Redis cache records (about 50 bytes
/// each; beyond, lookups of unknown keys go to Redis).
pub const MIRROR_MAX_KEYS: usize = 1 << 20;

/// Prefers an IPv4 address: local servers often listen on 0.0.0.0 only.
fn pick_addr(addrs: impl Iterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = addrs.collect();
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

impl Hub {
    /// Builds the hub and its first snapshot. Resolves upstream hosts (blocking: call at
    /// start-up only).
    pub fn new(settings: Settings, access_log: AccessLog) -> Result<Arc<Self>, String> {
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = match &settings.redis {
            None => Arc::new(MemoryStore::new(settings.cache.max_memory_bytes)),
            Some(r) => Arc::new(RedisStore::new(
                r.url.expose(),
                &r.key_prefix,
                r.timeout,
                StoreMetrics {
                    up: metrics.redis_up.clone(),
                    calls: metrics.redis_calls.clone(),
                    mirror_keys: metrics.cache_mirror_keys.clone(),
                    mirror_synced: metrics.cache_mirror_synced.clone(),
                    slices_held: metrics.ratelimit_slices_held.clone(),
                },
                settings.cache.enabled.then_some(MirrorSettings {
                    max_ttl: settings.cache.ttl,
                    max_bytes: settings.cache.max_memory_bytes,
                    max_keys: MIRROR_MAX_KEYS,
                    write_window: r.write_window,
                }),
            )?),
        };
        if settings.redis.is_none() {
            metrics.redis_up.set(1);
        }
        let on_outage = settings
            .redis
            .as_ref()
            .map(|r| r.on_outage)
            .unwrap_or_default();
        let tenancy = Tenancy::new(store, on_outage, settings.auth.clone(), &settings.quotas);
        let connections = ConnectionLimit::new(
            settings.server.max_client_connections,
            Bytes::from(switchyard_filters::error::overloaded_response()),
        );
        metrics
            .client_connections_max
            .set(settings.server.max_client_connections as i64);
        let cli_pools: Vec<Arc<CliPool>> = settings
            .providers
            .iter()
            .filter_map(|p| Some(CliPool::new(&p.name, p.cli.clone()?, &metrics)))
            .collect();
        let replica_id = settings
            .redis
            .as_ref()
            .and_then(|r| r.replica_id.clone())
            .unwrap_or_else(default_replica_id);
        let hub = Arc::new(Self {
            settings,
            current: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                providers: Vec::new(),
                route: RouteTable::default(),
                local: None,
                max_body: 0,
                metric_models: HashSet::default(),
            }),
            dynamic: Mutex::new(Dynamic::default()),
            counters: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            metrics,
            inference: InferenceStats::new(),
            shutting_down: AtomicBool::new(false),
            access_log,
            discovery_kick: tokio::sync::Notify::new(),
            tenancy,
            coalescer: Coalescer::default(),
            replica_id,
            connections,
            abandon: tokio::sync::watch::channel(false).0,
            cli_pools,
            last_runtime_error: Mutex::new(None),
        });
        for (host, port) in hub.hosts() {
            if let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)) {
                if let Some(a) = pick_addr(addrs) {
                    hub.dynamic.lock().resolved.insert((host, port), a);
                }
            }
        }
        // Never serve on the empty placeholder: a configuration that cannot make a first
        // snapshot does not start.
        hub.rebuild()
            .map_err(|e| format!("the configuration cannot be served: {e}"))?;
        Ok(hub)
    }

    /// Reads the runtime configuration from the store, validates it, and applies it
    /// (a new snapshot when it changed; discovery at once when the local backend
    /// changed). An invalid value is logged and counted, and nothing is applied.
    pub async fn apply_runtime(&self) -> Result<bool, String> {
        let v = self
            .tenancy
            .store()
            .runtime_get()
            .await
            .map_err(|e| e.to_string())?;
        let o = match runtime_overrides(&v) {
            Ok(o) => o,
            Err(e) => {
                self.metrics.runtime_config_invalid.inc();
                self.metrics
                    .config_reloads
                    .with_label_values(&["invalid"])
                    .inc();
                let mut last = self.last_runtime_error.lock();
                if last.as_deref() != Some(e.as_str()) {
                    log::warn!("runtime configuration rejected, keeping the last good one: {e}");
                    *last = Some(e.clone());
                }
                return Err(e);
            }
        };
        *self.last_runtime_error.lock() = None;
        let before = self.overrides();
        let became_ready = before.state != o.state && o.state == Some(LocalState::Ready);
        if became_ready {
            // A backend coming back may serve other models than before (a model
            // switch): learn its list before routing to it again.
            self.discover_before_ready(&o).await;
        }
        let backend_changed = self.set_overrides(o.clone()).map_err(|e| {
            self.metrics.runtime_config_invalid.inc();
            log::warn!("runtime configuration rejected, keeping the last good one: {e}");
            e
        })?;
        if before != o {
            log::info!(
                "runtime configuration: backend {}, state {}, strategy {}",
                o.kind.map_or("(file)", |k| k.as_str()),
                o.state.map_or("(ready)", |s| s.as_str()),
                o.strategy.map_or("(file)", |s| s.as_str())
            );
        }
        if backend_changed || became_ready {
            // A new host name is resolved now (off the hot path), not at the next
            // periodic refresh.
            self.resolve_all().await;
            self.discovery_kick.notify_one();
        }
        Ok(before != o)
    }

    /// Applies `o` with the state it had before, asks the backend for its models, and
    /// records them, so the snapshot that says `ready` already has the right list.
    async fn discover_before_ready(&self, o: &RuntimeOverrides) {
        let mut pre = o.clone();
        pre.state = self.overrides().state.or(Some(LocalState::Starting));
        if self.set_overrides(pre).is_err() {
            return;
        }
        let Ok(Some(l)) = self.local_settings() else {
            return;
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        if let Ok(models) = crate::background::discover(&client, &l).await {
            let _ = self.set_discovered(models);
        }
    }

    /// Copies the connection cap's counters into their metrics (at scrape time).
    pub fn sample_connections(&self) {
        let m = &self.metrics;
        m.client_connections.set(self.connections.open() as i64);
        let refused = self.connections.refused();
        let seen = m.client_connections_refused.get();
        if refused > seen {
            m.client_connections_refused.inc_by(refused - seen);
        }
    }

    /// Requests in flight on every provider of the current snapshot.
    pub fn inflight_total(&self) -> i64 {
        self.snapshot_guard()
            .providers
            .iter()
            .map(|p| p.counters.inflight())
            .sum()
    }

    /// In-flight requests on this replica's local backend.
    pub fn local_inflight(&self) -> i64 {
        let snap = self.snapshot_guard();
        snap.local
            .as_ref()
            .map_or(0, |l| snap.providers[l.index].counters.inflight())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A cheap guard to the current snapshot (no refcount change).
    pub fn snapshot_guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Every upstream (host, port) the current settings and overrides name.
    pub fn hosts(&self) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        if let Ok(Some(l)) = self.local_settings() {
            out.push((l.url.host.clone(), l.url.port));
        }
        for p in &self.settings.providers {
            if let Some(u) = &p.base_url {
                out.push((u.host.clone(), u.port));
            }
        }
        out
    }

    /// Records a resolved address; returns whether it changed.
    pub fn set_resolved(&self, host: String, port: u16, addr: SocketAddr) -> bool {
        let mut d = self.dynamic.lock();
        d.resolved.insert((host, port), addr) != Some(addr)
    }

    /// Resolves every upstream host without blocking the runtime; rebuilds the snapshot
    /// when an address changed.
    pub async fn resolve_all(&self) {
        let mut changed = false;
        for (host, port) in self.hosts() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                    changed |= self.set_resolved(host, port, SocketAddr::new(ip, port));
                }
                continue;
            }
            let found = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(pick_addr);
            match found {
                Ok(Some(a)) => changed |= self.set_resolved(host, port, a),
                Ok(None) => {}
                Err(e) => log::warn!("cannot resolve {host}: {e}"),
            }
        }
        if changed {
            if let Err(e) = self.rebuild() {
                log::error!("snapshot rebuild after DNS change failed: {e}");
            }
        }
    }

    /// The current runtime overrides.
    pub fn overrides(&self) -> RuntimeOverrides {
        self.dynamic.lock().overrides.clone()
    }

    /// Replaces the runtime overrides and rebuilds. If the local backend's kind or URL
    /// changed, the discovered models are forgotten (the caller re-discovers). On an
    /// invalid result the previous overrides and snapshot stay.
    pub fn set_overrides(&self, o: RuntimeOverrides) -> Result<bool, String> {
        let (old, backend_changed) = {
            let mut d = self.dynamic.lock();
            if d.overrides == o {
                return Ok(false);
            }
            let changed = d.overrides.kind != o.kind || d.overrides.url != o.url;
            let old = std::mem::replace(&mut d.overrides, o);
            (old, changed)
        };
        match self.local_settings() {
            Ok(_) => {}
            Err(e) => {
                self.dynamic.lock().overrides = old;
                self.metrics
                    .config_reloads
                    .with_label_values(&["invalid"])
                    .inc();
                return Err(e);
            }
        }
        if backend_changed {
            self.dynamic.lock().discovered.clear();
        }
        self.rebuild()?;
        Ok(backend_changed)
    }

    /// Records the local backend's discovered models; rebuilds when they changed.
    pub fn set_discovered(&self, mut models: Vec<String>) -> Result<bool, String> {
        models.sort();
        models.dedup();
        {
            let mut d = self.dynamic.lock();
            if d.discovered == models {
                return Ok(false);
            }
            d.discovered = models;
        }
        self.rebuild()?;
        Ok(true)
    }

    /// Records the models a provider's list named; rebuilds when they changed.
    pub fn set_provider_models(&self, name: &str, mut models: Vec<String>) -> Result<bool, String> {
        models.sort();
        models.dedup();
        {
            let mut d = self.dynamic.lock();
            if d.provider_models.get(name) == Some(&models) {
                return Ok(false);
            }
            d.provider_models.insert(name.to_string(), models);
        }
        self.rebuild()?;
        Ok(true)
    }

    /// The effective local backend: file settings with runtime overrides applied.
    pub fn local_settings(&self) -> Result<Option<LocalSettings>, String> {
        let o = self.dynamic.lock().overrides.clone();
        let base = self.settings.local.clone();
        let kind = o
            .kind
            .or(base.as_ref().map(|l| l.kind))
            .unwrap_or(LocalKind::None);
        if kind == LocalKind::None {
            return Ok(None);
        }
        let url = match o.url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => BaseUrl::parse(u, "config:inference.url").map_err(|e| e.to_string())?,
            None => match (&base, o.kind) {
                // The file's URL belongs to the file's kind.
                (Some(b), None) => b.url.clone(),
                (Some(b), Some(k)) if k == b.kind => b.url.clone(),
                _ => BaseUrl::parse(
                    kind.default_url().ok_or_else(|| {
                        "config:inference.url is required for backend `custom`".to_string()
                    })?,
                    "config:inference.url",
                )
                .map_err(|e| e.to_string())?,
            },
        };
        let mut l = base.unwrap_or(LocalSettings {
            kind,
            url: url.clone(),
            auth: None,
            extra_headers: Vec::new(),
            models: Vec::new(),
            discovery_interval: Duration::from_secs(30),
            forward_query: Vec::new(),
            messages: crate::config::MessagesMode::Translate,
        });
        l.kind = kind;
        l.url = url;
        if let Some(a) = o.auth.filter(|a| !a.expose().is_empty()) {
            l.auth = Some(a);
        }
        Ok(Some(l))
    }

    fn counters_for(&self, name: &str) -> Arc<ProviderCounters> {
        self.counters
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(ProviderCounters::new(&self.metrics, name)))
            .clone()
    }

    /// Builds a snapshot from the settings and dynamic state and swaps it in.
    pub fn rebuild(&self) -> Result<(), String> {
        match self.build() {
            Ok(mut snap) => {
                snap.generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let ready = snap
                    .local
                    .as_ref()
                    .is_some_and(|l| l.state == LocalState::Ready);
                self.metrics.local_ready.set(i64::from(ready));
                self.metrics
                    .local_models
                    .set(snap.local.as_ref().map_or(0, |l| l.models.len() as i64));
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.report_disabled(&snap);
                self.current.store(Arc::new(snap));
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["invalid"])
                    .inc();
                Err(e)
            }
        }
    }

    /// Sets `switchyard_provider_disabled` for every provider of a new snapshot and logs
    /// each one newly left out for its credential.
    fn report_disabled(&self, snap: &Snapshot) {
        for p in &snap.providers {
            for (reason, why) in DISABLED_REASONS {
                let on = p.disabled == Some(why);
                let g = self
                    .metrics
                    .provider_disabled
                    .with_label_values(&[p.name.as_str(), reason]);
                if on && g.get() == 0 && why == CREDENTIAL_INVALID {
                    log::error!(
                        "provider {} is left out: {why}; every other provider keeps serving",
                        p.name
                    );
                }
                g.set(i64::from(on));
            }
        }
    }

    fn build(&self) -> Result<Snapshot, String> {
        let s = &self.settings;
        let local = self.local_settings()?;
        let (overrides, discovered, resolved, provider_models) = {
            let d = self.dynamic.lock();
            (
                d.overrides.clone(),
                d.discovered.clone(),
                d.resolved.clone(),
                d.provider_models.clone(),
            )
        };
        let timeouts = PeerSettings {
            connect: s.server.connect_timeout,
            read: s.server.upstream_read_timeout,
            idle: s.server.upstream_idle_timeout,
            preserve_header_case: s.server.preserve_header_case,
        };
        let mut providers = Vec::new();
        let mut route_providers = Vec::new();
        let mut local_view = None;
        let mut metric_models: HashSet<String, switchyard_filters::route::NameHasher> =
            HashSet::default();

        if let Some(l) = &local {
            let auth = l.auth.as_ref().map(|a| a.expose().to_string());
            let spec = UpstreamSpec {
                url: &l.url,
                api_root: format!("{}/v1", l.url.path),
                credential: auth.as_deref().map(Credential::Header),
                extra: &l.extra_headers,
                forward_query: &l.forward_query,
                wire: Wire::OpenAi,
                messages: l.messages,
                drop_params: &[],
                preset_headers: &[],
            };
            let up = build_upstream(&spec, address(&resolved, &l.url), &timeouts)?;
            let mut listed: Vec<String> = discovered.clone();
            listed.extend(
                l.models
                    .iter()
                    .filter(|m| Pattern::new(m).is_exact())
                    .cloned(),
            );
            listed.sort();
            listed.dedup();
            metric_models.extend(listed.iter().cloned());
            local_view = Some(LocalView {
                index: providers.len(),
                kind: l.kind,
                url: up.display.clone(),
                // A backend the controller runs is not ready until it says so.
                state: overrides.state.unwrap_or(if s.control.manages(l.kind) {
                    LocalState::Stopped
                } else {
                    LocalState::Ready
                }),
                models: discovered.clone(),
            });
            route_providers.push(RouteProvider {
                name: "local".into(),
                class: Class::Local,
                patterns: l.models.iter().map(|m| Pattern::new(m)).collect(),
            });
            providers.push(Provider {
                name: "local".into(),
                kind: l.kind.as_str(),
                class: Class::Local,
                mock: None,
                cli: None,
                counters: self.counters_for("local"),
                name_header: HeaderValue::from_static("local"),
                listed_models: listed,
                inject_usage: s.routing.inject_stream_usage,
                disabled: up_disabled(&up),
                upstream: Some(up),
            });
        }

        for p in &s.providers {
            let found = provider_models.get(&p.name).map_or(&[][..], Vec::as_slice);
            let models = p.models.iter().chain(found.iter());
            let patterns: Vec<Pattern> = models.clone().map(|m| Pattern::new(m)).collect();
            let mut listed: Vec<String> = models
                .filter(|m| Pattern::new(m).is_exact())
                .cloned()
                .collect();
            listed.dedup();
            metric_models.extend(listed.iter().cloned());
            let (class, upstream, mock) = match (&p.kind, &p.base_url) {
                (ProviderKind::Mock | ProviderKind::Cli, _) => (
                    Class::InProcess,
                    None,
                    (p.kind == ProviderKind::Mock).then(|| MockSpec {
                        reply: p.mock_reply.clone(),
                        itl: p.mock_itl,
                    }),
                ),
                (_, Some(u)) => {
                    let preset = preset(p.kind);
                    let api_root = match preset.wire {
                        Wire::Anthropic => format!("{}/v1", u.path),
                        Wire::OpenAi => u.path.clone(),
                    };
                    let spec = UpstreamSpec {
                        url: u,
                        api_root,
                        credential: p
                            .api_key
                            .as_ref()
                            .map(|k| Credential::Key(k.expose(), preset.auth)),
                        extra: &p.extra_headers,
                        forward_query: &p.forward_query,
                        wire: preset.wire,
                        messages: p.messages,
                        drop_params: preset.drop_params,
                        preset_headers: preset.headers,
                    };
                    let up = build_upstream(&spec, address(&resolved, u), &timeouts)?;
                    (Class::Cloud, Some(up), None)
                }
                (_, None) => return Err(format!("provider {} has no base_url", p.name)),
            };
            let disabled = match (&p.missing_key_env, &upstream) {
                (Some(_), _) => Some(KEY_ENV_UNSET),
                (None, Some(up)) => up_disabled(up),
                (None, None) => None,
            };
            route_providers.push(RouteProvider {
                name: p.name.clone(),
                class,
                patterns,
            });
            providers.push(Provider {
                name: p.name.clone(),
                kind: p.kind.as_str(),
                class,
                upstream,
                mock,
                cli: self.cli_pools.iter().find(|c| c.name() == p.name).cloned(),
                counters: self.counters_for(&p.name),
                name_header: HeaderValue::from_str(&p.name)
                    .map_err(|_| format!("bad provider name {}", p.name))?,
                listed_models: listed,
                inject_usage: s.routing.inject_stream_usage,
                disabled,
            });
        }
        if providers.len() > u16::MAX as usize {
            return Err("too many providers".into());
        }
        metric_models.extend(s.routing.aliases.keys().cloned());
        let route = RouteTable {
            providers: route_providers,
            aliases: s.routing.aliases.clone().into_iter().collect(),
            local_models: discovered.into_iter().collect(),
            local: local_view.as_ref().map(|l| l.index),
            strategy: overrides.strategy.unwrap_or(s.routing.strategy),
        };
        if let Some(l) = local_view.as_mut() {
            l.models = route.local_models.iter().cloned().collect();
            l.models.sort();
        }
        Ok(Snapshot {
            generation: 0,
            providers,
            route,
            local: local_view,
            max_body: s.server.max_body_bytes,
            metric_models,
        })
    }
}
