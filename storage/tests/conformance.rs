//! The conformance suite against every backend available in this build.

#![allow(clippy::unwrap_used)]

use storage::{
    ChannelAppend, ChannelOutcome, DeliveredUpdate, EmbeddedConfig, EmbeddedStore, FaultyStore,
    Health, MemStore, Page, ReadLimit, ReadRange, ReadUpdate, Seq, Store, StoreError,
    StoredMessage,
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
    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        self.store.message(channel, seq)
    }
    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        self.store.count_messages(channel, after, through)
    }
    fn health(&self) -> Health {
        self.store.health()
    }
    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        self.store.create_group(group_id, members)
    }
    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.store.add_member(channel, user)
    }
    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.store.remove_member(channel, user)
    }
    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.store.members(channel)
    }
    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.store.is_member(channel, user)
    }
    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.store.channels_of(user)
    }
    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        self.store.advance_read(user, channel, seq)
    }
    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        self.store.advance_read_batch(updates)
    }
    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        self.store.read_cursor(user, channel)
    }
    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        self.store.read_cursors(user)
    }
    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        self.store.advance_delivered_batch(updates)
    }
    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        self.store.delivered_cursor(user, device, channel)
    }
}

storage::conformance_tests!(mem_store, MemStore::new());
storage::conformance_tests!(embedded_store, temp_embedded());
storage::conformance_tests!(faulty_embedded_store, FaultyStore::new(temp_embedded()));
storage::conformance_tests!(faulty_mem_store, FaultyStore::new(MemStore::new()));
