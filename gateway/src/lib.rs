//! # gateway — a thread-per-core WebSocket chat gateway
//!
//! The gateway holds many WebSocket connections and moves chat messages
//! between them with durable, ordered, per-channel history. This page is
//! the map; `docs/architecture.md` has the long form.
//!
//! ## Shards
//!
//! One glommio executor per core, pinned ([`server`]). Every shard binds the
//! same port with `SO_REUSEPORT` and the kernel spreads connections; a shard
//! owns its connections outright, so nothing on the hot path takes a lock.
//! Shards talk only through a full mesh of bounded queues created at start,
//! carrying one enum ([`shard::ShardMsg`]); a handler never waits for queue
//! space (a backlog per peer is drained by a separate task), so two shards can
//! never wait on each other.
//!
//! ## Owners and replicas
//!
//! Every channel has an **owner shard**, `fnv1a_64(name) % nr_shards`
//! ([`hash`], fixed forever). The owner ([`owner`]) is the only writer of the
//! channel's sequence: it dedups sends in flight, groups everything its
//! channels received into one store commit, and only once the commit is
//! durable acks the senders and fans out (**store before deliver**). Every
//! shard with local members of a channel keeps a **replica** ([`room`]): its
//! members and a ring of recent batches. Every user has an owner shard too,
//! which tracks the user's devices (a newer connection of a device replaces
//! the older with 4009).
//!
//! ## A message's path
//!
//! 1. A connection's driver ([`runtime`]) reads bytes into the shard's one
//!    read buffer; the sans-IO codec ([`protocol::ws`]) yields frames; the
//!    request decoder ([`protocol::request`]) validates them; the shard
//!    ([`shard`]) checks access and forwards a `send` to the owner.
//! 2. The owner's commit loop hands one batch per turn to the committer
//!    thread ([`store_io`]), which merges all shards' batches into one
//!    `Store::append` (one fsync).
//! 3. On success the owner encodes each message **once** as a WebSocket
//!    frame ([`batch`]), acks the senders, and sends one `Arc` of the batch to
//!    each shard with subscribers — acks and batches on the same FIFO queue,
//!    so a sender sees its ack before its own message.
//! 4. Each shard appends the frames to each member's outbox and wakes its
//!    driver; the driver writes everything queued this turn in one write.
//!
//! ## Cursors, resume and slow consumers
//!
//! Each (connection, channel) has one cursor: the last seq queued
//! ([`conn::Sub`]). `joined` is sent only after the owner returned the head
//! through the queue that carries the batches, so nothing slips between the
//! head and the live stream. A join with `since`, a gap, and an outbox past
//! its byte budget are one mechanism: the cursor pages forward — from the
//! replica's ring when it reaches back far enough, else from the store — as
//! the socket drains, then goes live. Nothing is dropped, memory per
//! connection stays bounded.
//!
//! ## Bounded cost
//!
//! Every request is admitted at dispatch, not where the socket is read: a
//! connection has a few requests of each kind in flight, the rest wait in
//! its queue in order, and past a bound its socket is no longer read.
//! Replies count against the outbox budget. `docs/reliability.md` lists
//! every limit and what a client sees at it.
//!
//! ## Layout
//!
//! - [`config`]: every tunable with unit, default and memory cost.
//! - [`protocol`]: I/O-free wire protocol (frames, requests, replies, HTTP head).
//! - [`shard`], [`owner`], [`room`], [`conn`], [`batch`]: the state machines.
//! - [`dispatch`]: admission (in-flight limits, the per-connection queue,
//!   per-user rate buckets in [`limits`]) and the request handlers.
//! - [`cursors`], [`receipts`]: coalesced read/delivered cursors, `read`
//!   pushes, unread counts.
//! - [`runtime`]: sockets, tasks, mesh, timers, shutdown. [`server`]: start/stop.
//! - [`store_io`]: store calls off the executors. [`hash`]: the owner hash.
//! - [`auth`]: tokens and dev auth. `http_api`: the `/v1` endpoints.
//!   `presence`, `push`, `moderation`: presence, offline push, blocklist.
//!   `discovery`: `GET /v1/me/channels` and `channel_added`. `sse`:
//!   `GET /v1/events`, the Server-Sent Events fallback (a session like a
//!   WebSocket one, written as SSE). `demo`: the chat page at `/demo/`.
//! - `bench_support` (hidden): the fan-out entry point of `bench micro`.

/// The hot-path fixtures of `bench micro` (from `chat-core`).
#[doc(hidden)]
pub use chat_core::bench_support;
/// The configuration (the `chat-core` crate's).
pub use chat_core::config;
/// The owner hash (the `chat-core` crate's).
pub use chat_core::hash;
/// The wire protocol (the `chat-proto` crate), under its old path.
pub use chat_proto as protocol;
/// Tokens (`chat_proto::auth`), under their old path.
pub use chat_proto::auth;
pub mod server;

pub(crate) mod demo;
pub(crate) mod driver;
pub(crate) mod http_api;
pub(crate) mod jobs;
pub(crate) mod lifecycle;
pub(crate) mod listener;
pub(crate) mod mesh;
pub(crate) mod metrics;
pub(crate) mod push;
pub(crate) mod shard_task;
pub(crate) mod sse;
pub(crate) mod store_io;
pub(crate) mod sys;
pub(crate) mod util;

pub use chat_core::{Config, StatsSnapshot};
pub use server::{Gateway, StartError};

/// Blocks SIGINT/SIGTERM for the calling thread and the threads it starts
/// later, so [`wait_for_termination`] can take them. Call first in `main`.
pub fn block_termination_signals() -> std::io::Result<()> {
    sys::block_termination_signals()
}

/// Raises the soft open-file limit to the hard limit; returns the limit in
/// force.
pub fn raise_open_file_limit() -> Option<u64> {
    sys::raise_open_file_limit()
}

/// Waits for SIGINT or SIGTERM; returns the signal number.
pub fn wait_for_termination() -> i32 {
    sys::wait_for_termination()
}
