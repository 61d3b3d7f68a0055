//! Reading upstream answers into borrowed, typed fields. Upstreams disagree on the types
//! of some fields (vLLM's `stop_reason` is a string or a token id; `content` a string, a
//! list or null), so those are kept as raw JSON and read only when they are strings.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A string that keeps the body's bytes when they need no unescaping.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A field whose type upstreams disagree on.
pub(crate) type Loose<'a> = Option<&'a RawValue>;

/// The string in a loose field (`None` when absent, `null` or not a string).
pub(crate) fn text(v: Loose<'_>) -> Option<Cow<'_, str>> {
    let raw = v?.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Str<'_>>(raw).ok().map(|s| s.0)
}
