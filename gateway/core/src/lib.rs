//! # chat-core — one shard of the gateway, without I/O
//!
//! The gateway runs one shard per core. Everything a shard decides is
//! decided here, by plain state machines that take `now` on every call and
//! return what must happen next; the gateway crate owns the sockets, the
//! executor, the queues between shards and the store threads, and applies
//! what this crate asks for. A deterministic simulator (`tests/`) drives
//! several shards in one thread with virtual time the same way.
//!
//! ## Roles
//!
//! A shard ([`ShardState`]) plays four roles, each its own state:
//!
//! - **Channel owner** (`owner/`): every channel has one owner shard,
//!   `fnv1a_64(name) % nr_shards` ([`hash`], fixed forever). The owner is the
//!   only writer of the channel's sequence: it dedups sends in flight, checks
//!   a group's membership (`owner/groups.rs`), groups everything its channels
//!   received into one commit, and only once the store says it is durable
//!   acks the senders and hands each shard with subscribers one shared batch
//!   (**store before deliver**). It counts a room's present users.
//! - **Replica and fan-out** (`fanout.rs`, `replica.rs`): every shard with
//!   local members of a channel keeps its members and a ring of recent
//!   batches, and one cursor per (connection, channel); batches go to live
//!   members' outboxes, members behind page forward from the ring or the
//!   store. A member's audience tier (`tiers.rs`: `live`, `digest`,
//!   `counts`) decides when it is served.
//! - **User owner** (`users.rs`): every user has an owner shard that keeps
//!   which connection is the live one of each device, presence with its
//!   offline debounce, and push notices for users with no device online.
//! - **Connections** (`conn.rs`, `dispatch.rs`): each connection's outbox,
//!   cursors and request queue; requests are admitted at dispatch under
//!   per-kind in-flight limits and per-user limits (`limits.rs`), then
//!   executed. Receipts (`cursors.rs`, `receipts.rs`) are coalesced per
//!   shard; presence queries (`presence.rs`) cost O(100).
//!
//! A draining gateway closes its sessions over a window, each at a random
//! time of its own ([`drain`]), so clients reconnect spread out.
//!
//! ## The vocabulary
//!
//! [`vocab`] holds what crosses between shards ([`ShardMsg`]), what a shard
//! asks its runtime to do ([`IoJob`]) and what comes back ([`JobDone`]),
//! typed answers to requests ([`Answer`]), and the bag every handler fills
//! ([`Effects`]). Store jobs are plain functions ([`jobs`]); errors of this
//! layer are [`JobError`].
//!
//! ## How a runtime drives a shard
//!
//! 1. Feed it: [`ShardState::on_ws_event`] / [`ShardState::on_request`] for
//!    client input, [`ShardState::on_msg`] for a message from a shard,
//!    [`ShardState::on_job_done`] for a finished job, [`ShardState::tick`]
//!    once a second, [`ShardState::flush_cursors`] every `cursor_flush_ms`.
//! 2. Apply [`ShardState::take_effects`]: route messages (this shard's own
//!    back to [`ShardState::on_msg`] after the current handler), start jobs,
//!    and when [`Effects::commit_ready`] is set call
//!    [`ShardState::take_commit`] once the turn's input is in.
//! 3. Wake the drivers of [`ShardState::take_woken`]: each writes
//!    [`ShardState::output`], reports [`ShardState::wrote`], and checks
//!    [`ShardState::session`] for closes; before waiting it calls
//!    [`ShardState::park`]. A driver woken only to write (its socket has
//!    nothing to read) may instead make one [`ShardState::write_pass`],
//!    which does all of that in one call and says when the general steps
//!    are needed. [`ShardState::prefetch`] lets a driver that knows which
//!    connections it services next start loading their state.

pub mod answers;
pub(crate) mod batch;
#[doc(hidden)]
pub mod bench_support;
pub mod config;
pub mod conn;
pub(crate) mod cursors;
pub mod discovery;
pub(crate) mod dispatch;
pub mod drain;
pub mod error;
pub(crate) mod fanout;
pub mod hash;
pub mod jobs;
pub(crate) mod limits;
pub mod maps;
pub mod moderation;
pub mod owner;
pub mod presence;
pub mod push;
pub mod receipts;
pub(crate) mod replica;
pub mod shard;
pub mod slots;
pub(crate) mod state;
pub mod stats;
pub(crate) mod subs;
pub(crate) mod tiers;
pub(crate) mod users;
pub mod vocab;

#[cfg(test)]
mod deflate_tests;

pub use config::Config;
pub use error::JobError;
pub use shard::{SessionState, ShardState, Soon, WritePass, WRITE_PASS_PIECES};
pub use stats::{Stats, StatsSnapshot};
pub use vocab::{Answer, ConnId, ConnRef, Effects, IoJob, JobDone, Reply, ShardId, ShardMsg};
