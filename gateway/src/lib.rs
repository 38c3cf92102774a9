//! # gateway — a thread-per-core WebSocket chat gateway: the runtime
//!
//! The gateway holds many WebSocket connections and moves chat messages
//! between them with durable, ordered, per-channel history. It is four
//! crates; this one is the only one that touches sockets, threads, timers
//! and the store's threads. `docs/architecture.md` has the long form.
//!
//! | crate | what it decides |
//! |---|---|
//! | `chat-model` (`gateway/model`) | the values everyone shares: seqs, channel names, messages |
//! | `chat-proto` (`gateway/proto`) | the wire: frames, requests, events, the HTTP head, tokens |
//! | `chat-core` (`gateway/core`) | everything a shard decides, sans-IO, `now` passed in |
//! | `gateway` (this crate) | where it happens: executors, sockets, the mesh, store threads |
//!
//! ## Shards
//!
//! One thread per core, pinned ([`server`]), running the gateway's own
//! executor ([`rt`]). Every shard binds the same port with `SO_REUSEPORT`
//! and the kernel spreads connections; a shard owns its connections
//! outright, so nothing on the hot path takes a lock.
//! A shard's decisions are a `chat_core::ShardState` behind a `RefCell`
//! (`shard_task`); every handler runs to completion without awaiting and
//! returns `Effects`, which this crate applies: messages to shards, jobs to
//! run, connections to wake.
//!
//! ## The runtime, one file per job
//!
//! - `lifecycle`: starts a shard's tasks (the mesh receiver, backlog
//!   forwarders, the accept loop, the once-a-second tick, the cursor flush
//!   timer) and runs its graceful shutdown; [`server`] starts and stops the
//!   whole process (store, committer, executors, the one-gateway-per-address
//!   lock).
//! - `mesh`: the full mesh of bounded queues between shards. A handler never
//!   waits for queue space: a per-peer backlog is drained in order by its own
//!   task (`forward_backlog`), so two shards never wait on each other. One
//!   receiver task per shard takes what peers sent (and the socket ring's
//!   task takes it too, between its passes); [`doorbell`]: how a thread wakes
//!   a waiting task on a shard only while it waits (the mesh, shutdown).
//! - `jobs`: where each `IoJob` runs — store reads on the blocking pool,
//!   the shard's group commit (`group_commit`), push deliveries — and how its
//!   `JobDone` comes back; `store_io`: the committer thread that merges every
//!   shard's commit into one `Store::append` (one fsync).
//! - `listener`: accept, the HTTP head, the upgrade or the HTTP API;
//!   `driver`: one task per WebSocket connection — read into the shard's one
//!   read buffer, hand frames to the core, write what the core queued in one
//!   write per turn (at most once per `flush_tick_us` when set: `flush`),
//!   close as the core says. The shard's own tasks (group commit, flush
//!   timer; the mesh receiver too when sessions are tasks of their own,
//!   `socket_ring = false`) run at the control priority, before the
//!   drivers (`rt::Priority`).
//! - [`rt`]: the shard runtime each shard thread runs — an executor that
//!   sleeps in its own io_uring, two task priorities, timers, TCP streams
//!   on one-shot polls of its ring, and the blocking pool of store reads.
//! - `http_api`: the `/v1` endpoints, each a short-lived session whose typed
//!   `Answer` becomes an HTTP response; `sse`: `GET /v1/events`, a session
//!   written as Server-Sent Events; `demo`: the chat page at `/demo/`.
//! - `nodes`: this node's id and, on a shared (FoundationDB) store, its
//!   lease, its inbox of other nodes' commits and `GET /v1/nodes`
//!   (`docs/architecture.md`, "Many nodes").
//! - `push` (webhook delivery), `metrics` (`/metrics`, `/healthz`), `sys`
//!   (signals, file limits, CPU placement), `util`.
//!
//! ## A message's path
//!
//! 1. `driver` reads bytes; `chat_proto::ws` yields frames,
//!    `chat_proto::request` validates them; the core admits the request and
//!    forwards a `send` to the channel's owner shard (`mesh`).
//! 2. The owner's group commit (`jobs`) hands one batch per turn to the
//!    committer thread (`store_io`): one `Store::append` for all shards.
//! 3. On success the core encodes each message **once** as a WebSocket
//!    frame, acks the senders, and sends one `Arc` of the batch to each shard
//!    with subscribers — acks and batches on the same FIFO queue, so a
//!    sender sees its ack before its own message.
//! 4. Each shard appends the frames to each member's outbox and wakes its
//!    driver; the driver writes everything queued this turn in one write.
//!    Members that joined with `mode` `digest` get the same frames at most
//!    once per `digest_interval_ms`, all that accumulated in one write;
//!    `counts` members get only `head` events (the core's `tiers.rs`; the
//!    runtime only sleeps for its `TierTimer` jobs, in `jobs`).
//!    Members that negotiated permessage-deflate in the upgrade get the
//!    batch's compressed copy instead, built once for all of them
//!    (`chat_proto::deflate`; `docs/protocol.md`, "Compression").
//!
//! Admission, cursors, catch-up and slow consumers are the core's: see the
//! essay of `chat-core`. Every limit is in `docs/reliability.md`; every
//! config key in `docs/configuration.md`.

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
pub mod doorbell;
pub mod rt;
pub mod server;

pub(crate) mod demo;
pub(crate) mod driver;
pub(crate) mod flush;
pub(crate) mod http_api;
pub(crate) mod jobs;
pub(crate) mod lifecycle;
pub(crate) mod listener;
pub(crate) mod mesh;
pub(crate) mod metrics;
pub(crate) mod nodes;
pub(crate) mod push;
pub(crate) mod ring;
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

/// Makes every panic fatal to the process, except a store call's that the
/// shard contains (answered as a store failure). Call first in `main`.
///
/// Why: a panic ends only its own thread. A shard thread gone leaves its
/// listening socket open, so the kernel keeps completing handshakes into an
/// accept queue nobody reads: clients hang instead of failing over, and the
/// process looks alive to its supervisor. Ending the process loses nothing
/// acknowledged (store before deliver); the supervisor restarts it and
/// clients resume from their cursors.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        if !chat_core::jobs::panic_is_contained() {
            eprintln!("gateway: a panic outside a store call is fatal; aborting");
            std::process::abort();
        }
    }));
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
