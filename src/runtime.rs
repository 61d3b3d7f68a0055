//! The one owner of runtime overrides (`config:inference.*`, `config:routing.strategy`):
//! the admin API, the refresher and the controller all change them through [`set`],
//! which validates the result before anything is written, writes, and applies it to
//! this replica's snapshot at once. Other replicas pick the values up at their next
//! refresh. The hot path only ever reads the snapshot.

use crate::state::Hub;
use crate::store::{RuntimeField, StoreError};

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The values would not make a valid configuration (names the key and value).
    #[error("{0}")]
    Invalid(String),
    /// The store could not be read or written.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Sets each `(field, value)` (an empty value clears it), after checking that the
/// result is valid as a whole; then applies it here.
pub async fn set(hub: &Hub, changes: &[(RuntimeField, &str)]) -> Result<(), RuntimeError> {
    let store = hub.tenancy.store();
    let mut probe = store.runtime_get().await?;
    for (field, value) in changes {
        let slot = match field {
            RuntimeField::Backend => &mut probe.backend,
            RuntimeField::State => &mut probe.state,
            RuntimeField::Url => &mut probe.url,
            RuntimeField::Auth => &mut probe.auth,
            RuntimeField::Strategy => &mut probe.strategy,
        };
        *slot = (!value.is_empty()).then(|| value.to_string());
    }
    crate::state::runtime_overrides(&probe).map_err(RuntimeError::Invalid)?;
    for (field, value) in changes {
        store.runtime_set(*field, value).await?;
    }
    refresh(hub).await
}

/// Reads the stored values and applies them (the refresher's periodic call).
pub async fn refresh(hub: &Hub) -> Result<(), RuntimeError> {
    hub.apply_runtime()
        .await
        .map(|_| ())
        .map_err(RuntimeError::Invalid)
}
