//! The `Store` trait: the one boundary between the gateway and durable state.

use crate::{ChannelAppend, ChannelOutcome, Health, Page, ReadLimit, ReadRange, Seq, StoreError};

/// Durable, ordered, per-channel message history.
///
/// # Contract (every backend; checked by [`crate::conformance`])
///
/// **Blocking.** Every method may block on disk or network I/O. Callers run
/// them on dedicated threads, never on a shard's executor. Implementations are
/// `Send + Sync` and may be called from several threads at once.
///
/// **Sequencing.** `append` assigns each newly stored message of a channel the
/// next seq after the channel's head, densely, in the order given: the first
/// message of an empty channel gets seq 1. The head is the highest stored seq
/// (0 for an empty channel). A failed `append` stores nothing and moves no
/// head: seqs are never skipped or reused.
///
/// **Atomicity and durability.** One `append` call is all-or-nothing across
/// all its channels. When it returns `Ok`, everything it stored is durable to
/// the backend's configured level (embedded: fsync by default).
///
/// **Idempotency.** A message is identified by (channel, from, device,
/// client_msg_id). If that key is already stored (by an earlier call or
/// earlier in the same call) the message is not stored again: its outcome is
/// `Duplicate` with the original seq and ts when kind, text, target and media
/// equal the original's, else `Conflict`.
///
/// **Callers.** Each channel appears at most once per `append` (else
/// `StoreError::Invalid`). Concurrent appends to the same channel are allowed
/// and serialize (the gateway never issues them: one commit per channel is in
/// flight, issued by the channel's owner shard).
///
/// **Reads** see every append that returned `Ok` before the read began.
pub trait Store: Send + Sync + 'static {
    /// Appends messages to one or more channels atomically; see the contract.
    /// Returns one `ChannelOutcome` per `ChannelAppend`, in order.
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError>;

    /// The channel's head: its highest stored seq, `Seq(0)` when empty.
    fn head(&self, channel: &str) -> Result<Seq, StoreError>;

    /// Reads a page of a channel, ascending by seq. `Before`/`After` bounds are
    /// exclusive. `has_more` tells whether messages exist beyond the page in the
    /// direction read (older for `Latest`/`Before`, newer for `After`).
    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError>;

    /// Whether the store accepts writes.
    fn health(&self) -> Health;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        (**self).append(batch)
    }
    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        (**self).head(channel)
    }
    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        (**self).read(channel, range, limit)
    }
    fn health(&self) -> Health {
        (**self).health()
    }
}
