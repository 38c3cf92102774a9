//! Durable, ordered, per-channel chat history behind one small trait.
//!
//! # What the store is
//!
//! Every channel (a DM, a group, a room) is a dense sequence of messages,
//! numbered from 1. The [`Store`] is the authority on that sequence: the
//! gateway's owner shard of a channel hands it a batch of new messages, the
//! store assigns each the next [`Seq`] after the channel's head *in the same
//! atomic write that stores it*, deduplicates retries by `client_msg_id`, and
//! returns only once the write is durable. Nothing is acked to a sender or
//! fanned out to a subscriber before that. History paging, resume after a
//! disconnect, catch-up of slow consumers and unread counts are all reads of
//! the same sequence.
//!
//! Beside the sequences the store keeps what must survive a restart and be
//! the same whichever shard asks: **group membership** (with an index by
//! user, for unread counts and presence fan-out), **read cursors** per (user,
//! channel) and **delivered cursors** per (user, device, channel). Edits and
//! deletes are messages of the sequence too; the store checks them against
//! their target and keeps each target's *current view* (latest text,
//! `edited`, `deleted`) for reads.
//!
//! # The contract, in short
//!
//! The full text is on [`Store`]; [`conformance`] checks it. In short:
//!
//! - **Sequencing.** Seqs are dense per channel, start at 1, and follow the
//!   order given. A failed append stores nothing and moves no head, so seqs
//!   are never skipped or reused.
//! - **Atomicity.** One [`Store::append`] call is all-or-nothing across all
//!   its channels (this is the gateway's group commit: one shard's turn of
//!   work becomes one write and one fsync).
//! - **Durability.** `Ok` means durable to the backend's configured level.
//! - **Idempotency.** (channel, from, device, client_msg_id) identifies a
//!   message. A retry with the same content gets
//!   [`AppendOutcome::Duplicate`] with the original seq and timestamp; the
//!   same key with different content gets [`AppendOutcome::Conflict`].
//! - **Edits and deletes.** An `edit`/`delete` of a missing target, of
//!   another edit/delete, of someone else's message or of a deleted message
//!   is [`AppendOutcome::Rejected`] (no seq, nothing written); an accepted
//!   one changes its target's view in the same write.
//! - **Cursors** never move backwards and never pass the head; `append`
//!   moves the sender's read cursor to their own new messages.
//! - **Groups** are created once ([`StoreError::Conflict`] after), changed
//!   by [`Store::add_member`] / [`Store::remove_member`]; limits are the
//!   caller's policy.
//! - **Reads** return pages ascending by seq with exclusive bounds, a message
//!   and byte limit, and `has_more` in the direction read.
//! - **Blocking.** Every call may block on I/O: callers run them on dedicated
//!   threads, never on a shard's executor.
//!
//! # Backends
//!
//! - [`EmbeddedStore`] (`embedded.rs`): the default, what `cargo run` uses
//!   with no setup. Data lives in a local directory in
//!   [fjall](https://docs.rs/fjall), an LSM-tree engine with atomic
//!   cross-keyspace write batches and an explicit persist mode per batch.
//!   One append is one fjall batch and (by default) one `fdatasync`.
//! - `FdbStore` (`fdb/`, cargo feature `fdb`): FoundationDB through the
//!   `foundationdb` crate (API 7.3). Tuple-encoded keys under `("chatgw",
//!   namespace)`; an append is one transaction that reads each channel's head
//!   (so two writers of a channel conflict and one retries), looks up dedup
//!   keys, writes messages (chunked under FDB's 100 KB value limit), dedup
//!   keys, cursors and the new head. It lets many gateway nodes share one
//!   history. Tested in CI through the libfdb_c test double (`storage/fdb-double/`,
//!   `scripts/test-fdb`); see `docs/storage.md` for what has and has not run
//!   against a real cluster.
//! - [`MemStore`] (`memory.rs`): a `BTreeMap` under a mutex. For unit tests
//!   of code above the store; it keeps nothing across a restart.
//!
//! # Testing tools
//!
//! - [`FaultyStore`] (`fault.rs`) wraps any backend and injects faults on
//!   command through its [`Faults`] handle: failed appends and other writes
//!   (nothing written), slow appends, failed reads and lookups, and
//!   poisoning (as after a failed fsync).
//! - [`conformance`] is the suite every backend must pass: one public
//!   function per behaviour, and the [`conformance_tests!`] macro that
//!   instantiates all of them as `#[test]`s for a backend in one line. See
//!   `tests/conformance.rs`.
//!
//! # On-disk layout (embedded backend)
//!
//! ```text
//! <dir>/LOCK     exclusive advisory lock, held while the store is open
//! <dir>/fjall/   the fjall database (format 3), with ten keyspaces:
//!   meta      "format"                                -> u32 BE format version
//!   msgs      u16 BE len | channel | u64 BE seq      -> v1 | rkyv(StoredMessage), current view
//!   heads     channel                                 -> v1 | u64 BE head
//!   dedup     u16 BE len | channel | u8 len | from
//!             | u8 len | device | client_msg_id       -> v1 | seq | ts | hash
//!   groups    channel                                 -> v1
//!   members   u16 BE len | channel | user             -> v1
//!   member_of u8 len | user | channel                 -> v1
//!   reads     u8 len | user | channel                 -> v1 | u64 BE read cursor
//!   delivered u8 len | user | u8 len | device | channel -> v1 | u64 BE cursor
//!   events    u16 BE len | channel | u64 BE seq      -> v1 (edit/delete events)
//! ```
//!
//! Big-endian, length-prefixed keys make a channel's messages one contiguous
//! key range sorted by seq, and no channel's range can interleave with
//! another's (`room:a` and `room:ab` differ in their length prefix). Every
//! value starts with a one-byte value-format version, and `meta/format`
//! holds the store-format version: a directory written by an unknown version
//! is refused ([`StoreError::UnsupportedFormat`], [`StoreError::Corrupt`]),
//! never misread. The exact encoding is documented in `embedded.rs`. Edits
//! and deletes rewrite their target's `msgs` record in the same batch as the
//! event, so reads need no merging.
//!
//! # Durability levels (embedded backend)
//!
//! They apply to every write: appends, membership changes and cursor moves.
//!
//! - [`Durability::Fsync`] (default): an acked append has been `fdatasync`ed;
//!   it survives a power cut. A failed commit *poisons* the store: it refuses
//!   every later write ([`StoreError::Poisoned`]) and reports
//!   [`Health::Poisoned`], because after a failed fsync the kernel may have
//!   dropped the dirty pages and retrying would pretend otherwise.
//! - [`Durability::Buffered`]: an acked append has been written to the OS; it
//!   survives a crash of the process but not of the machine. For benchmarks
//!   and development.
//!
//! # Where to go
//!
//! | file | what |
//! |---|---|
//! | (`chat-model`) | values crossing the boundary, re-exported: [`Seq`], [`NewMessage`], [`StoredMessage`], [`AppendOutcome`], [`RejectReason`], [`ReadRange`], [`Page`], … |
//! | `store.rs` | the [`Store`] trait and its contract |
//! | `cluster.rs` | the [`Cluster`] trait (nodes, subscriptions, inboxes of stores several gateways share) and its checks |
//! | `error.rs` | [`StoreError`], retryable or not as data |
//! | `embedded.rs` | [`EmbeddedStore`] on fjall, its key layout and codecs |
//! | `fdb/` | `FdbStore` (feature `fdb`): `mod.rs` the backend, `layout.rs` every subspace, `sys.rs` FDB's network thread |
//! | `memory.rs` | [`MemStore`] |
//! | `fault.rs` | [`FaultyStore`] and [`Faults`] |
//! | `conformance.rs` | the suite and [`conformance_tests!`] |

pub mod cluster;
pub mod conformance;
pub mod embedded;
pub mod error;
pub mod fault;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod memory;
pub mod store;

/// The values crossing the `Store` boundary live in `chat-model` (shared
/// with the wire protocol and the core); re-exported here.
pub use chat_model::{
    group_channel, AppendOutcome, ChannelAppend, ChannelOutcome, DeliveredUpdate, Health, Media,
    MessageKind, NewMessage, Page, ReadLimit, ReadRange, ReadUpdate, RejectReason, Seq,
    StoredMessage, GROUP_PREFIX,
};
pub use cluster::{Cluster, Event, InboxEntry, NodeInfo, Notice, ReadPush};
pub use embedded::{Durability, EmbeddedConfig, EmbeddedStore};
pub use error::StoreError;
pub use fault::{Faults, FaultyStore};
#[cfg(feature = "fdb")]
pub use fdb::{FdbConfig, FdbStore};
pub use memory::MemStore;
pub use store::Store;

/// Whether two messages carry the same content for idempotency: kind, text,
/// target and media equal (sender, device, id and timestamp are not content).
pub(crate) fn same_content(a: &NewMessage, b: &NewMessage) -> bool {
    a.kind == b.kind && a.text == b.text && a.target == b.target && a.media == b.media
}

/// The outcome of a message whose dedup key is already stored at `seq`
/// (timestamp `ts`): `Duplicate` when its content is the same, else
/// `Conflict`.
pub(crate) fn repeat_outcome(seq: u64, ts: u64, same_content: bool) -> AppendOutcome {
    if same_content {
        AppendOutcome::Duplicate { seq: Seq(seq), ts }
    } else {
        AppendOutcome::Conflict { seq: Seq(seq) }
    }
}

/// The number of messages a read may return: `limit.messages`, at least 1.
pub(crate) fn max_messages(limit: ReadLimit) -> usize {
    limit.messages.max(1)
}

/// Whether `m` is an `edit` or `delete`, which `append` checks against its
/// target.
/// The two users of a `dm:<a>:<b>` channel (user ids contain no `:`).
pub(crate) fn dm_pair(channel: &str) -> Option<(&str, &str)> {
    let rest = channel.strip_prefix("dm:")?;
    let (a, b) = rest.split_once(':')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(':')).then_some((a, b))
}

pub(crate) fn is_change(m: &NewMessage) -> bool {
    matches!(m.kind, MessageKind::Edit | MessageKind::Delete)
}

/// The seq an edit or delete targets, if it can name a message of a channel
/// whose head (counting messages stored earlier in the same call) is `head`.
pub(crate) fn target_in_range(m: &NewMessage, head: u64) -> Option<u64> {
    m.target.filter(|&t| t >= 1 && t <= head)
}

/// Checks the edit or delete `m` against the current view of its target
/// (`None`: no such message) and returns the target's new view. The checks
/// run in [`RejectReason`]'s order. Call only for [`is_change`] messages;
/// anything that is not a `Delete` is applied as an edit.
pub(crate) fn apply_change(
    m: &NewMessage,
    target: Option<&StoredMessage>,
) -> Result<StoredMessage, RejectReason> {
    let t = target.ok_or(RejectReason::TargetMissing)?;
    if t.is_event() {
        return Err(RejectReason::TargetIsEvent);
    }
    if t.from != m.from {
        return Err(RejectReason::NotAuthor);
    }
    if t.deleted {
        return Err(RejectReason::TargetDeleted);
    }
    let mut view = t.clone();
    if m.kind == MessageKind::Delete {
        view.text = String::new();
        view.media = None;
        view.deleted = true;
    } else {
        view.text.clone_from(&m.text);
        view.edited = true;
    }
    Ok(view)
}
