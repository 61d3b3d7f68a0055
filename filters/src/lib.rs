//! Switchyard's request decisions as pure functions: no Pingora, no I/O, no clock of
//! their own. The proxy reads headers and bodies, calls these, and writes the result.
//!
//! - [`endpoint`]: method + path -> endpoint
//! - [`head`]: the routing fields of a request body, parsed without copying
//! - [`route`]: model + strategy + hint + availability -> ordered candidates
//! - [`rewrite`]: minimal body edits (model name, `stream_options.include_usage`)
//! - [`usage`]: token usage found in responses and streams as they pass
//! - [`error`]: every error the gateway answers itself, and its JSON body
//! - [`glob`]: model-name patterns
//! - [`bucket`]: token-bucket arithmetic of per-tenant rate limits
//! - [`cachekey`]: which requests are cached, and their keys
//! - [`convert`]: a cached answer as a stream or as a whole response
//! - [`dialect`]: OpenAI chat ⇄ Anthropic Messages: requests, responses, streams, errors

pub mod bucket;
pub mod cachekey;
pub mod convert;
pub mod dialect;
pub mod endpoint;
pub mod error;
pub mod glob;
pub mod head;
pub mod rewrite;
pub mod route;
pub mod usage;
