//! The `Store` trait: the one boundary between the gateway and durable state.

use crate::{
    ChannelAppend, ChannelOutcome, Cluster, DeliveredUpdate, Health, Page, ReadLimit, ReadRange,
    ReadUpdate, Seq, StoreError, StoredMessage,
};

/// Durable, ordered, per-channel message history, group membership and
/// per-user cursors.
///
/// # Contract (every backend; checked by [`crate::conformance`])
///
/// **Blocking.** Every method may block on disk or network I/O. Callers run
/// them on dedicated threads, never on a shard's executor — except `append`
/// of a backend whose [`Store::append_waits_for_io`] is `false`. Implementations are
/// `Send + Sync` and may be called from several threads at once.
///
/// **Sequencing.** `append` assigns each newly stored message of a channel the
/// next seq after the channel's head, densely, in the order given: the first
/// message of an empty channel gets seq 1. The head is the highest stored seq
/// (0 for an empty channel). A failed `append` stores nothing and moves no
/// head: seqs are never skipped or reused.
///
/// **Atomicity and durability.** One `append` call is all-or-nothing across
/// all its channels, including everything it changes besides the new
/// messages (edited and deleted targets, the senders' read cursors). When any
/// write method returns `Ok`, everything it changed is durable to the
/// backend's configured level (embedded: fsync by default); when it returns
/// an error, it changed nothing.
///
/// **Idempotency.** A message is identified by (channel, from, device,
/// client_msg_id). If that key is already stored (by an earlier call or
/// earlier in the same call) the message is not stored again: its outcome is
/// `Duplicate` with the original seq and ts when kind, text, target and media
/// equal the original's *as sent* (a later edit of the original does not
/// matter), else `Conflict`. The dedup check comes before every other check,
/// so the retry of an accepted edit or delete is a `Duplicate`.
///
/// **Edits and deletes.** A message of kind `Edit` or `Delete` names another
/// message of the same channel in `target`. `append` checks it inside its
/// atomic write (so the check is authoritative) and refuses it with
/// [`AppendOutcome::Rejected`](crate::AppendOutcome::Rejected) when the target
/// does not exist, is itself an edit or delete, is not by the same `from`, or
/// was already deleted ([`RejectReason`](crate::RejectReason), in that order).
/// Messages stored earlier in the same call count, so "send then edit" in one
/// call works. A rejected message takes no seq and leaves no dedup key. An
/// accepted one is stored as an event at the next seq, unchanged, and in the
/// same write changes the target's current view (see [`StoredMessage`]): an
/// edit replaces its text and sets `edited`; a delete empties its text, drops
/// its media and sets `deleted`. `text` and `media` of other kinds are stored
/// as given (a `target` on them means nothing).
///
/// **Read cursors** (one per (user, channel)) and **delivered cursors** (one
/// per (user, device, channel)) never move backwards and never pass the
/// channel's head at the time of the update: an update to a lower seq changes
/// nothing, one beyond the head moves the cursor to the head. A cursor that
/// never moved is `Seq(0)` and is not listed by `read_cursors`. `append`
/// moves the sender's read cursor to every message it stores for them
/// (sends, edits and deletes), in the same atomic write.
///
/// **Groups.** A group `group:<id>` is created once, with its first members,
/// by `create_group`, and exists for good (even with no members left).
/// Members are user ids; a set, listed sorted. The store keeps an index by
/// user (`channels_of`). The store records membership only: it does not check
/// it on `append` or reads, and limits (a maximum size, who may add whom) are
/// the caller's policy. DM membership is implied by the channel name and
/// rooms are open; neither is recorded here.
///
/// **Names.** The store does not validate channel, user or device names
/// (the caller does); a backend may refuse names too long for its keys with
/// `StoreError::Invalid` (embedded: user and device ids over 255 bytes).
///
/// **Callers.** Each channel appears at most once per `append` (else
/// `StoreError::Invalid`). Concurrent writes of any kind are allowed and
/// serialize (the gateway never issues concurrent appends to one channel: one
/// commit per channel is in flight, issued by the channel's owner shard).
///
/// **Reads** see every write that returned `Ok` before the read began.
pub trait Store: Send + Sync + 'static {
    /// Appends messages to one or more channels atomically; see the contract.
    /// Returns one `ChannelOutcome` per `ChannelAppend`, in order.
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError>;

    /// Whether `append` waits for a disk or the network before it returns.
    /// `false` means it only hands the write to the OS (memory, a `write`;
    /// it may still wait for the backend's own locks and write
    /// backpressure), so a caller whose thread must not block for long may
    /// make it there — the gateway's shards then commit without a thread
    /// hop. Default `true`; the embedded store with `buffered` durability
    /// says `false`.
    fn append_waits_for_io(&self) -> bool {
        true
    }

    /// The channel's head: its highest stored seq, `Seq(0)` when empty.
    fn head(&self, channel: &str) -> Result<Seq, StoreError>;

    /// Reads a page of a channel, ascending by seq. `Before`/`After` bounds are
    /// exclusive. `has_more` tells whether messages exist beyond the page in the
    /// direction read (older for `Latest`/`Before`, newer for `After`).
    /// Messages come in their current view (edits and deletes applied; see
    /// [`StoredMessage`]).
    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError>;

    /// The message at `seq` of `channel` in its current view, `None` when
    /// there is none (seq 0, beyond the head, an unknown channel). The owner
    /// checks authorship with it before committing an edit or delete (and
    /// `append` checks again, authoritatively).
    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError>;

    /// The number of messages of kind `text` or `media` in `channel` with a
    /// seq in `(after, through]` — `edit` and `delete` events are not
    /// counted (they are changes of other messages, not new ones). `through`
    /// beyond the head counts up to the head; `through <= after` is 0. This
    /// is what an unread count is: `count_messages(channel, read_cursor,
    /// head)`. Backends keep an index of events so the cost is proportional
    /// to the events in the range, not to the messages.
    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError>;

    /// Whether the store accepts writes.
    fn health(&self) -> Health;

    // ------------------------------------------------------------ groups --

    /// Creates the group `group:<group_id>` with `members` (duplicates are
    /// ignored; an empty list makes an empty group). Durable when it returns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the group already exists (nothing is
    /// changed); the usual write errors otherwise.
    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError>;

    /// Adds `user` to the group `channel` (`group:<id>`). Returns whether it
    /// was added (`false`: already a member; nothing written). Durable when
    /// it returns.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no such group was created.
    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError>;

    /// Removes `user` from the group `channel`. Returns whether it was removed
    /// (`false`: not a member; nothing written). The group stays, even when
    /// empty. Durable when it returns. Cursors are kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no such group was created.
    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError>;

    /// The members of the group `channel`, sorted (by bytes), or `None` when
    /// no such group was created.
    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Whether `user` is a member of the group `channel` (`false` when there
    /// is no such group).
    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError>;

    /// The groups `user` is a member of and the DMs (`dm:a:b`) of `user`
    /// that hold at least one message (an `append` that stores a message in
    /// a DM indexes it for both users in the same write), as channel names,
    /// sorted.
    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError>;

    // ----------------------------------------------------------- cursors --

    /// Moves `user`'s read cursor in `channel` to `seq`, if that is forward,
    /// clamped to the channel's head. Returns the cursor after the call.
    /// Durable when it returns (nothing is written when it does not move).
    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError>;

    /// Applies many read-cursor updates (user, channel, seq) in one durable
    /// write: each moves its cursor forward only, clamped to the channel's
    /// head (the same rules as [`Store::advance_read`]); repeats of one
    /// cursor coalesce to the highest. Returns, per update in order, the
    /// cursor before the call and after it (equal when it did not move;
    /// repeats of one cursor all report the same pair). All or nothing;
    /// nothing is written when no cursor moves.
    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError>;

    /// `user`'s read cursor in `channel` (`Seq(0)` when none).
    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError>;

    /// Every channel where `user` has a read cursor (one that moved past 0),
    /// sorted by channel.
    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError>;

    /// Applies many delivered-cursor updates (user, device, channel, seq) in
    /// one durable write: each moves its cursor forward only, clamped to the
    /// channel's head; repeats of one cursor coalesce to the highest. All or
    /// nothing; nothing is written when no cursor moves.
    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError>;

    /// The delivered cursor of (`user`, `device`) in `channel` (`Seq(0)` when
    /// none).
    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError>;

    // ----------------------------------------------------------- cluster --

    /// What gateway nodes sharing this store know of each other (nodes,
    /// subscriptions, inboxes; [`crate::cluster`]), or `None` for a backend
    /// only one gateway process can use (the default: embedded, memory).
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        (**self).append(batch)
    }
    fn append_waits_for_io(&self) -> bool {
        (**self).append_waits_for_io()
    }
    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        (**self).head(channel)
    }
    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        (**self).read(channel, range, limit)
    }
    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        (**self).message(channel, seq)
    }
    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        (**self).count_messages(channel, after, through)
    }
    fn health(&self) -> Health {
        (**self).health()
    }
    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        (**self).create_group(group_id, members)
    }
    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        (**self).add_member(channel, user)
    }
    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        (**self).remove_member(channel, user)
    }
    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        (**self).members(channel)
    }
    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        (**self).is_member(channel, user)
    }
    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        (**self).channels_of(user)
    }
    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        (**self).advance_read(user, channel, seq)
    }
    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        (**self).advance_read_batch(updates)
    }
    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        (**self).read_cursor(user, channel)
    }
    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        (**self).read_cursors(user)
    }
    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        (**self).advance_delivered_batch(updates)
    }
    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        (**self).delivered_cursor(user, device, channel)
    }
    fn cluster(&self) -> Option<&dyn Cluster> {
        (**self).cluster()
    }
}
