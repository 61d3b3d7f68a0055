//! OpenAI Chat Completions ⇄ Anthropic Messages translation (WIP).

mod common;
pub mod errors;
pub mod o2a;
pub mod o2a_messages;
pub mod o2a_response;
pub mod o2a_stream;
pub mod sse;

pub use common::{Dialect, StreamEnd, TranslateError};
