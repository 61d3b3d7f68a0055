//! Background work, run as Pingora background services so that shutdown waits for it:
//! local model discovery (at start, periodically, and at once when the local backend
//! changes) and re-resolution of upstream host names.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::Value;

use crate::config::{LocalKind, LocalSettings, ProviderSettings};
use crate::providers::presets::{preset, AuthStyle, ModelList, Wire, GITHUB_CATALOG};
use crate::state::Hub;

/// Discovers the local backend's models and keeps upstream addresses fresh.
pub struct Discovery {
    hub: Arc<Hub>,
}

impl Discovery {
    /// A discovery task for `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

/// Asks the backend for its models: `GET /api/tags` (Ollama) or `GET /v1/models`.
pub async fn discover(client: &reqwest::Client, l: &LocalSettings) -> Result<Vec<String>, String> {
    let root = format!(
        "{}://{}{}",
        if l.url.tls { "https" } else { "http" },
        l.url.authority(),
        l.url.path
    );
    let url = if l.kind == LocalKind::Ollama {
        format!("{root}/api/tags")
    } else {
        format!("{root}/v1/models")
    };
    let mut req = client.get(&url);
    if let Some(a) = &l.auth {
        req = req.header(http::header::AUTHORIZATION, a.expose());
    }
    for (k, v) in &l.extra_headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url}: {}", without_url(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: status {}", resp.status()));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url}: {}", without_url(&e)))?;
    let (list, key) = if l.kind == LocalKind::Ollama {
        (v.get("models"), "name")
    } else {
        (v.get("data"), "id")
    };
    let list = list
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{url}: not a model list"))?;
    Ok(list
        .iter()
        .filter_map(|m| m.get(key).and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// Describes a client error without its URL (which could carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_decode() {
        "invalid JSON".to_string()
    } else {
        "request failed".to_string()
    };
    if let Some(src) = std::error::Error::source(e) {
        s.push_str(": ");
        s.push_str(&src.to_string());
    }
    s
}

impl Discovery {
    async fn discover_once(&self, client: &reqwest::Client, last_error: &mut Option<String>) {
        let local = match self.hub.local_settings() {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                log::warn!("local backend settings invalid: {e}");
                return;
            }
        };
        if self.hub.settings.control.manages(local.kind)
            && self
                .hub
                .snapshot_guard()
                .local
                .as_ref()
                .is_none_or(|l| l.state != crate::state::LocalState::Ready)
        {
            // The controller's backend has no server to ask until it is ready (and
            // then the controller's probe has just read the list).
            return;
        }
        match discover(client, &local).await {
            Ok(models) => {
                if last_error.take().is_some() {
                    log::info!("local backend reachable again");
                }
                match self.hub.set_discovered(models.clone()) {
                    Ok(true) => log::info!(
                        "local backend {} at {} serves: {}",
                        local.kind.as_str(),
                        local.url.authority(),
                        models.join(", ")
                    ),
                    Ok(false) => {}
                    Err(e) => log::error!("snapshot rebuild after discovery failed: {e}"),
                }
            }
            Err(e) => {
                self.hub.metrics.discovery_failures.inc();
                if last_error.as_deref() != Some(e.as_str()) {
                    log::warn!("model discovery failed (keeping the last known models): {e}");
                }
                *last_error = Some(e);
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot build the discovery HTTP client: {e}");
                return;
            }
        };
        let mut last_error = None;
        let mut dns_tick = tokio::time::interval(Duration::from_secs(60));
        dns_tick.tick().await;
        let mut remote = RemoteLists::new(&self.hub);
        loop {
            self.discover_once(&client, &mut last_error).await;
            let next_remote = remote.round(&self.hub, &client).await;
            let period = self
                .hub
                .local_settings()
                .ok()
                .flatten()
                .map_or(Duration::from_secs(30), |l| l.discovery_interval);
            // Retry quickly while the backend has not answered yet.
            let wait = if last_error.is_some() {
                period.min(Duration::from_secs(2))
            } else {
                period
            };
            let wait = next_remote.map_or(wait, |d| wait.min(d));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.hub.discovery_kick.notified() => {}
                _ = dns_tick.tick() => self.hub.resolve_all().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The model lists of providers that discover theirs (OpenRouter, GitHub Models, remote
/// inference servers): when each is due, and its last error.
struct RemoteLists {
    due: Vec<(usize, tokio::time::Instant, Option<String>)>,
}

impl RemoteLists {
    fn new(hub: &Hub) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            due: hub
                .settings
                .providers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.discover.is_some())
                .map(|(i, _)| (i, now, None))
                .collect(),
        }
    }

    /// Reads the lists that are due; returns how long until the next one is.
    async fn round(&mut self, hub: &Hub, client: &reqwest::Client) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        for (i, at, last_error) in &mut self.due {
            if *at > now {
                continue;
            }
            let p = &hub.settings.providers[*i];
            let period = p.discover.unwrap_or(Duration::from_secs(300));
            match discover_provider(client, p).await {
                Ok(models) => {
                    if last_error.take().is_some() {
                        log::info!("model list of provider {} readable again", p.name);
                    }
                    match hub.set_provider_models(&p.name, models.clone()) {
                        Ok(true) => {
                            log::info!("provider {} lists {} model(s)", p.name, models.len())
                        }
                        Ok(false) => {}
                        Err(e) => log::error!("snapshot rebuild after a model list failed: {e}"),
                    }
                    *at = now + period;
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        log::warn!(
                            "model list of provider {} not read (keeping the last one): {e}",
                            p.name
                        );
                    }
                    *last_error = Some(e);
                    *at = now + period.min(Duration::from_secs(30));
                }
            }
        }
        self.due
            .iter()
            .map(|(_, at, _)| at.saturating_duration_since(now))
            .min()
    }
}

/// Reads a provider's model list the way its kind publishes it.
pub async fn discover_provider(
    client: &reqwest::Client,
    p: &ProviderSettings,
) -> Result<Vec<String>, String> {
    let Some(u) = &p.base_url else {
        return Err("no base URL".into());
    };
    let preset = preset(p.kind);
    let scheme = if u.tls { "https" } else { "http" };
    let api_root = match preset.wire {
        Wire::Anthropic => format!("{}/v1", u.path),
        Wire::OpenAi => u.path.clone(),
    };
    let url = match preset.list {
        ModelList::Data => format!("{scheme}://{}{api_root}/models", u.authority()),
        ModelList::OllamaTags => format!(
            "{scheme}://{}{}/api/tags",
            u.authority(),
            u.path.strip_suffix("/v1").unwrap_or(&u.path)
        ),
        ModelList::GithubCatalog => GITHUB_CATALOG.to_string(),
    };
    let mut req = client.get(&url);
    if let Some(k) = &p.api_key {
        req = match preset.auth {
            AuthStyle::Bearer => req.bearer_auth(k.expose()),
            AuthStyle::XApiKey => req.header("x-api-key", k.expose()).header(
                "anthropic-version",
                crate::providers::http::ANTHROPIC_VERSION,
            ),
        };
    }
    for (k, v) in preset.headers {
        req = req.header(*k, *v);
    }
    for (k, v) in &p.extra_headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.map_err(|e| without_url(&e))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let doc: Value = resp.json().await.map_err(|e| without_url(&e))?;
    preset
        .list
        .parse(&doc)
        .ok_or_else(|| "not a model list".to_string())
}

/// Keeps shared state in step: reads the runtime configuration and the API key index
/// every refresh interval, publishes this replica's local in-flight count every second
/// (with a short TTL), and while the store is unreachable pings it every second so that
/// it is used again as soon as it is back.
pub struct Refresher {
    hub: Arc<Hub>,
}

impl Refresher {
    /// A refresher for `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The period of runtime configuration reads.
    pub fn interval(&self) -> Duration {
        self.hub
            .settings
            .redis
            .as_ref()
            .map_or(Duration::from_secs(1), |r| r.refresh_interval)
    }

    /// One round of configuration and key refresh.
    pub async fn refresh(&self) {
        let _ = self.hub.apply_runtime().await;
        if let Err(e) = self.hub.tenancy.refresh_keys().await {
            log::debug!("key index not refreshed: {e}");
        }
    }
}

/// How long a published in-flight count stays valid.
pub const INFLIGHT_TTL: Duration = Duration::from_secs(5);

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let store = self.hub.tenancy.store().clone();
        let _ = store.ping().await;
        self.refresh().await;
        let period = self.interval();
        let mut next_refresh = tokio::time::Instant::now() + period;
        let mut next_publish = tokio::time::Instant::now();
        let tick = period.min(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
            if !store.is_up() && store.ping().await.is_ok() {
                // Back: catch up at once.
                next_refresh = tokio::time::Instant::now();
            }
            if tokio::time::Instant::now() >= next_publish {
                let _ = store
                    .inflight_publish(
                        &self.hub.replica_id,
                        self.hub.local_inflight(),
                        INFLIGHT_TTL,
                    )
                    .await;
                next_publish = tokio::time::Instant::now() + Duration::from_secs(1);
            }
            if tokio::time::Instant::now() >= next_refresh {
                self.refresh().await;
                next_refresh = tokio::time::Instant::now() + period;
            }
        }
    }
}

/// Runs the store's upkeep ([`crate::store::Store::maintain`]) as a background service,
/// so that shutdown waits for the slices it gives back.
pub struct StoreUpkeep {
    hub: Arc<Hub>,
}

impl StoreUpkeep {
    /// The upkeep of `hub`'s store.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl BackgroundService for StoreUpkeep {
    async fn start(&self, shutdown: ShutdownWatch) {
        let store = self.hub.tenancy.store().clone();
        store.maintain(shutdown).await;
    }
}
