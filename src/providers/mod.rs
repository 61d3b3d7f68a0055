//! How providers are reached. Every provider in a snapshot is one of:
//!
//! - an HTTP upstream ([`http`]): a local inference server or a cloud API, with an
//!   auth style and the API dialect it speaks;
//! - the in-process mock ([`mock`]), answering inside the gateway;
//! - a command-line client run as a pool of processes ([`cli`]).

pub mod cli;
pub mod http;
pub mod mock;
pub mod presets;
