//! # loadgen — the load generator that checks every delivery
//!
//! Chat load tools count messages per second. This one also proves that the
//! gateway kept its promises while it was loaded: every message a sender got
//! an `ack` for reached every member of the channel that stayed joined,
//! exactly once and in seq order — across reconnects, churn and gateway
//! restarts — and it exits non-zero, saying which promise broke, when one
//! did not hold.
//!
//! ```text
//! loadgen groups --target ws://127.0.0.1:8080/ws --connections 2000 --group-size 8 \
//!         --rate 5000 --duration 30s --ramp 1000 --shards 2 [--procs 2] [--json]
//! ```
//!
//! `--target` may list several gateway nodes of one cluster,
//! comma-separated: connection `i` starts at node `i mod n` and each
//! reconnect goes to the next node (`client::drive`); the checks do not care
//! which node delivered.
//!
//! ## Processes, threads, connections
//!
//! ```text
//!  parent (--procs P)          worker process i (or the only process)
//!  ┌───────────────┐  JSON   ┌────────────────────────────────────────────┐
//!  │ run_procs     │◄───────►│ coordinator thread: phases, progress       │
//!  │ merges results│  lines  │   │ Shared: phase + epoch, acked heads,    │
//!  └───────────────┘         │   ▼ milestone counters                     │
//!                            │ shard 0 (glommio)   …   shard S-1          │
//!                            │  ├ watcher task (phase → wake-ups)         │
//!                            │  ├ read ring task (readiness → wake-ups)   │
//!                            │  ├ connection task ─ Session ─ checkers    │
//!                            │  └ connection task …                       │
//!                            └────────────────────────────────────────────┘
//! ```
//!
//! * A **worker process** runs a contiguous slice of the planned connections
//!   (one process may hold ~20,000 files here; [`procs`] spreads the rest).
//! * In a process, `--shards` **glommio executors** (threads, thread per
//!   core) share the connections round-robin. Each connection is one task
//!   that owns its socket ([`client`]) and its [`session::Session`].
//! * A connection learns that its socket is readable from the shard's
//!   **read ring** (`ready`): one multishot poll per socket on an io_uring
//!   set up with cooperative task running, so a segment from the server
//!   costs neither side an interrupt (glommio's own readiness polls did:
//!   a quarter of the *server's* CPU in a big room on this host's virtual
//!   machine went to interrupting loadgen).
//! * Connections bind loopback **source addresses** 127.0.0.2, 127.0.0.3, …
//!   (`--source-addrs`, automatic past 20,000 connections) so a run is not
//!   capped by one address's ~28,000 ephemeral ports.
//! * Shards share nothing but a few atomics in `run::Shared`: the phase, the
//!   highest acked seq per channel, milestone counts, and progress counters
//!   each shard publishes ten times a second. Measurements stay in the
//!   shard ([`stats::ShardStats`]) and are merged once at the end — then
//!   over processes, the same way.
//!
//! ## A run, phase by phase ([`run`])
//!
//! 1. **Ramp.** Connections start at `--ramp` per second: TCP connect,
//!    WebSocket upgrade (one user and device per connection; dev auth
//!    `?user=&device=`, or with `--token-secret` a bearer HS256 token each
//!    connection signs with `chat_proto::auth::sign`; with `--compress` an
//!    offer of permessage-deflate without context takeover, whose
//!    compressed messages one inflater per client shard reads), `hello`, a
//!    `join` per channel. The `head` of each
//!    `joined` is the member's position: it must receive every seq after it.
//! 2. **Send.** Open loop: each sender has a fixed schedule at its share of
//!    `--rate`; a message is written when its time comes whether or not
//!    earlier ones were acked, and carries its *scheduled* time, so latency
//!    (receive − scheduled, for each recipient; ack − scheduled for the
//!    sender) includes any stall on either side instead of hiding it.
//! 3. **Drain.** Sending stops; every send waits for its ack.
//! 4. **Exchange and catch-up.** The highest acked seq per channel (over all
//!    processes) becomes each channel's *target*; each member waits until
//!    it has every seq up to it.
//! 5. **Stop.** Connections close; each checker gives its verdict; the
//!    shards' numbers are merged into a [`run::RunResult`] and a
//!    [`report::Report`] (table or `--json`).
//!
//! ## What is checked ([`checker`])
//!
//! Per (connection, channel), a [`checker::DeliveryChecker`] sees every
//! `msg` seq: contiguous after the join position, never twice, never after a
//! higher one. When the connection drops (server close, 1001 on restart,
//! reset, or a deliberate churn drop) the session reconnects with jittered
//! backoff, rejoins with `since` = the last seq seen, and resends unacked
//! messages under the same `client_msg_id` (the gateway's idempotency turns
//! a resend of a committed message into its original ack). The checker
//! continues across that, so "nothing missed, nothing repeated" is checked
//! across reconnects too. At the end, seqs are dense, so a member whose
//! highest seq is `h` in a channel whose highest acked seq is `t` lost
//! exactly `t − h` messages (plus any gaps it saw).
//!
//! ## Output and exit codes
//!
//! A table of delivery and ack latency percentiles (p50, p90, p99, p99.9,
//! max), messages and deliveries per second, connects per second, errors
//! and violations — or, with `--json`, one object ([`report::Report`]).
//! Exit 0: every check passed; 1: an invariant broke (the report names it);
//! 2: the run could not be carried out; 3: the run ended without being able
//! to verify everything (connections down or sends unacked at the end).
//!
//! ## Layout
//!
//! | module | concept | I/O |
//! |---|---|---|
//! | [`scenario`] | named topologies → a plan of connections and channels | none |
//! | [`checker`] | the delivery invariants of one member of one channel | none |
//! | [`session`] | one connection's state machine: joins, schedule, acks, reconnects | none |
//! | [`stats`] | HdrHistograms and counters per shard, merged | none |
//! | [`report`] | the final table and JSON, and the verdict | none |
//! | [`client`] | the glommio driver: connect, upgrade, read/write loop | sockets |
//! | `ready` | read readiness of a shard's sockets on its own io_uring, without interrupts | io_uring |
//! | [`run`] | one process: shards, phases, merging | threads |
//! | [`procs`] | many processes: spawn workers, exchange targets, merge | processes |
//! | [`progress`] | the live progress line | terminal |
//! | [`config`] | the validated run configuration, target URL, durations | none |
//! | [`throttle`] | the read-rate limit of slow-consumer connections | none |
//! | [`abuse`] | abusive connections (`--abusers`): bad frames, pipelines, floods; their refusals and closes, counted apart | none |
//! | [`clock`], [`rng`], [`sys`] | time base, randomness, file limit | |
//!
//! The wire protocol is the gateway's own I/O-free crate, `chat-proto`
//! (loadgen depends on it, not on the gateway or the store): the frame codec
//! ([`chat_proto::WsDecoder`]
//! in the client role, `encode_frame`/`encode_close`; its
//! `chat_proto::deflate::Inflater` for `--compress`), the request encoders
//! (`encode_join`, `encode_send`, `encode_ping`) and the event decoder
//! (`decode_msg_ref` for `msg` frames, borrowed — a one-pass scanner for
//! plain frames, serde for the rest; `decode_server_event` for the other
//! events). Nothing about the protocol is re-implemented here.
//!
//! ## Limits and future work
//!
//! * **Groups are rooms.** `group:` channels are not implemented by the
//!   gateway yet; the `groups` scenario uses `room:` channels whose members
//!   are exactly the group ([`scenario`]).
//! * One host: latency compares clocks of processes on the same host
//!   ([`clock`]).

pub mod abuse;
pub mod checker;
pub mod client;
pub mod clock;
pub mod config;
pub mod groups;
pub mod procs;
pub mod progress;
pub(crate) mod ready;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod session;
pub(crate) mod shared;
pub mod stats;
pub mod sys;
pub mod throttle;

pub use checker::{DeliveryChecker, Violations};
pub use config::{RunConfig, Target};
pub use report::Report;
pub use run::{run, Hooks, LocalHooks, RunError, RunResult};
pub use scenario::{ScenarioKind, ScenarioParams};
