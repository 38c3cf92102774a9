//! FDB's network thread: booted once per process, shared by every
//! [`FdbStore`](super::FdbStore) (and so by every shard of a gateway). The
//! only `unsafe` of the storage crate: `NetworkBuilder::boot` is unsafe
//! because the client library must be stopped before the process exits,
//! which [`stop_network`] does.

use std::sync::{Mutex, OnceLock};

use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};

use crate::StoreError;

static NETWORK: OnceLock<Result<Mutex<Option<NetworkAutoStop>>, String>> = OnceLock::new();

/// Selects the API version and starts the network thread, once per process;
/// later calls return the first call's result.
pub fn boot_network() -> Result<(), StoreError> {
    let state = NETWORK.get_or_init(|| {
        let builder = FdbApiBuilder::default()
            .build()
            .map_err(|e| format!("selecting the FoundationDB API version: {e}"))?;
        // SAFETY: the guard is kept in a static and dropped by
        // `stop_network` (the gateway calls it on exit); a process that
        // exits without it only skips the client's orderly shutdown.
        #[allow(unsafe_code)]
        let guard = unsafe { builder.boot() }
            .map_err(|e| format!("starting the FoundationDB network thread: {e}"))?;
        Ok(Mutex::new(Some(guard)))
    });
    match state {
        Ok(m) => {
            if m.lock().map(|g| g.is_none()).unwrap_or(true) {
                return Err(StoreError::Unavailable(
                    "the FoundationDB network was stopped in this process".into(),
                ));
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Unavailable(e.clone())),
    }
}

/// Stops the network thread (if it was started). Every `FdbStore` of the
/// process stops working; FDB cannot restart it in the same process.
pub fn stop_network() {
    if let Some(Ok(m)) = NETWORK.get() {
        let guard = m.lock().ok().and_then(|mut g| g.take());
        drop(guard);
    }
}
