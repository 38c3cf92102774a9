//! The shard runtime: the single-threaded executor each shard runs on,
//! sleeping in an io_uring of its own (issue 14; `docs/architecture.md`,
//! "The executor").
//!
//! **Why not glommio** (the shards' executor until 2026-12-05). A shard
//! spent its park and wake-up in glommio's reactor: every time it went to
//! sleep glommio flushed three rings, cancelled and re-armed two timers,
//! linked its rings with a poll and called `membarrier`, ~10
//! `io_uring_enter`s per park. `bench wake` measured 15–18 µs of CPU per
//! wake-up with both sides on one CPU (a queue and the gateway's
//! `Doorbell`) against 4.2–4.4 µs for this executor (and for two bare
//! io_uring loops woken through an eventfd), and 52–56 against 28–32 µs on
//! two CPUs. A durable DM parks its shard about twice, a message crossing
//! shards once more per hop: that park was the largest cost left that Bun
//! does not pay (`docs/benchmarks.md`, "The shards on their own runtime").
//!
//! **What is here.** [`block_on`] runs a future with the tasks it
//! [`spawn`]s on the calling thread (tasks still running when the future
//! completes are dropped, and the kernel's pending operations on the ring
//! are waited out, at most 5 s); two queues ([`Priority`]), control
//! before default. Between two passes over the ready tasks the executor
//! takes foreign wake-ups, reaps its ring and fires due timers; with
//! nothing ready it sleeps in one `io_uring_enter` that waits for a
//! completion or the next timer. Wakers are `Send`: a waker used on its
//! executor's thread queues the task (no syscall); from another thread it
//! pushes the task to a list and writes the executor's eventfd only if the
//! executor sleeps (`exec.rs` has the protocol). [`sleep`] and [`timeout`]
//! are the executor's timers (`timer.rs`, sans-IO), [`readable`] and
//! [`writable`] one-shot polls on its ring, [`net`] TCP streams and
//! listeners on those polls, [`spawn_blocking`] a pool for calls that
//! block (`blocking.rs`).
//!
//! **What is not here yet.** The socket ring (`ring.rs`) keeps an io_uring
//! of its own whose eventfd this runtime polls (`ring::forward_completions`):
//! a wake-up by a socket completion costs that poll's completion and an
//! eventfd read more than one ring for both would. A wake-up from another
//! shard is an eventfd `write`, not `IORING_OP_MSG_RING` from the waker's
//! ring (`bench wake`: 3.4 against 4.3 µs per wake on one CPU). Both are
//! the next steps; the executor needs Linux 5.11 (waits with a timeout,
//! `IORING_FEAT_EXT_ARG`).

mod blocking;
mod exec;
pub mod net;
mod timer;

pub use blocking::{allow_blocking_threads, spawn_blocking, Blocking, MAX_THREADS};
pub use exec::{
    block_on, need_yield, readable, sleep, sleep_until, spawn, spawn_with, stats, timeout,
    writable, yield_if_needed, yield_now, ExecStats, Op, Priority, Sleep, Task, TimedOut,
    PASS_BUDGET,
};

#[cfg(test)]
mod tests;
