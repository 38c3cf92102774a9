//! The conformance suite against every backend available in this build.

#![allow(clippy::unwrap_used)]

use storage::{
    ChannelAppend, ChannelOutcome, EmbeddedConfig, EmbeddedStore, FaultyStore, Health, MemStore,
    Page, ReadLimit, ReadRange, Seq, Store, StoreError,
};
use tempfile::TempDir;

/// An `EmbeddedStore` in a fresh temporary directory, which lives exactly as
/// long as the store (the store is dropped first: fields drop in order).
struct TempEmbedded {
    store: EmbeddedStore,
    _dir: TempDir,
}

fn temp_embedded() -> TempEmbedded {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&EmbeddedConfig::new(dir.path())).unwrap();
    TempEmbedded { store, _dir: dir }
}

impl Store for TempEmbedded {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        self.store.append(batch)
    }
    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        self.store.head(channel)
    }
    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        self.store.read(channel, range, limit)
    }
    fn health(&self) -> Health {
        self.store.health()
    }
}

storage::conformance_tests!(mem_store, MemStore::new());
storage::conformance_tests!(embedded_store, temp_embedded());
storage::conformance_tests!(faulty_embedded_store, FaultyStore::new(temp_embedded()));
