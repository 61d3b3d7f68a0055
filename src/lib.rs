//! Switchyard: an OpenAI-compatible LLM gateway on Pingora.
//!
//! - [`config`]: file and runtime configuration, validation
//! - [`state`]: the immutable snapshot the hot path reads, and the hub that swaps it
//! - [`proxy`]: the `ProxyHttp` implementation (the request's path through the phases)
//! - [`providers`]: how providers are reached (HTTP upstreams, the in-process mock)
//! - [`admin`]: health, readiness, in-flight counts, metrics, inference stats
//! - [`background`]: model discovery and DNS refresh
//! - [`metrics`], [`accesslog`]: observability
//! - [`mockgen`]: OpenAI wire-format documents for mocks
//! - [`mockgen_anthropic`]: Anthropic Messages wire-format documents for mocks
//! - [`server`]: assembly and shutdown policy
//! - [`store`]: shared state (in-memory or Redis): limits, quotas, cache, keys, runtime config
//! - [`tenancy`]: API keys, rate limits, quotas, outage policy
//! - [`cache`]: cache entries and request coalescing
//!
//! The pure request decisions live in the `switchyard-filters` crate.

pub mod accesslog;
pub mod admin;
pub mod background;
pub mod cache;
pub mod config;
pub mod control;
pub mod metrics;
pub mod mockgen;
pub mod mockgen_anthropic;
pub mod providers;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod state;
pub mod store;
pub mod tenancy;
