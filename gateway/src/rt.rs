//! The shard runtime: a single-threaded executor that sleeps in an io_uring
//! of its own — the first piece of the shard loop that is to replace
//! glommio (issue 14; `docs/architecture.md`, "The executor").
//!
//! **Why.** A shard spends its park and wake-up in glommio's reactor: every
//! time it goes to sleep glommio flushes three rings, cancels and re-arms
//! two timers, links its rings with a poll and calls `membarrier`, ~10
//! `io_uring_enter`s per park. `bench wake` measured 18.2 µs of CPU per
//! wake-up with both sides on one CPU (a queue and the gateway's
//! `Doorbell`) against 4.2 µs for two bare io_uring loops woken through an
//! eventfd, and 56 against 26 µs on two CPUs. A durable DM parks its shard
//! about twice, a message crossing shards once more per hop: that park is
//! the largest cost left that Bun does not pay (`docs/benchmarks.md`).
//!
//! **What is here.** [`block_on`] runs a future with the tasks it
//! [`spawn`]s on the calling thread; two queues ([`Priority`]), control
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
//! **What is not here yet.** The gateway still runs on glommio: this
//! runtime is measured (`bench wake --cases rt-doorbell,rt-thread`) and
//! tested on its own. Moving the shards onto it needs the socket ring's
//! completions reaped by this loop (one ring, not two), an async TCP stream
//! for the HTTP, SSE and push paths, and the glommio calls replaced one
//! module at a time (`docs/architecture.md` lists them).

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
