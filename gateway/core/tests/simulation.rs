//! The deterministic simulator: several shards of the core in one thread,
//! their queues and jobs under the simulator's control, virtual time, and a
//! seeded random schedule of client actions — and, after every event, the
//! product's ordering invariants checked.
//!
//! What it drives: `N` [`ShardState`]s; a FIFO queue per (from, to) pair of
//! shards (delivered in random interleavings); every job a shard asks for
//! (store calls against an in-memory store wrapped in a fault injector,
//! completed after random delays, sometimes failing; commits taken at
//! random moments after a shard says it has some ready); a handful of
//! clients that connect to random shards, join (with and without `since`),
//! leave, send, retry, read their socket slowly or not at all, disconnect
//! and resume.
//!
//! What it checks (a violation panics with the seed and the last events):
//!
//! - per (client, channel): every seq exactly once, in order, from the join
//!   position, across leaves, rejoins, reconnects with `since`, and
//!   slow-consumer catch-up; no `msg` outside a join;
//! - nothing delivered before it is stored (the store holds every `msg`
//!   delivered, with the same sender and text);
//! - a sender's `ack` comes before its own `msg` on the same connection;
//! - a retry gets the original seq (`duplicate: true` once one was acked);
//! - seqs are dense per channel and every message is stored once; a failed
//!   commit leaves no hole; at the end, every live member has every
//!   committed message.
//!
//! `SIM_SEEDS=N` runs seeds `0..N` (default 2,000), `SIM_STEPS` the events per
//! seed (default 1,500), `SIM_SEED=n` one seed with its whole trace printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim;

use sim::{Counts, Sim};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn ordering_invariants_hold_across_random_interleavings_of_shards_store_and_clients() {
    let steps = env("SIM_STEPS").unwrap_or(1_500);
    if let Some(seed) = env("SIM_SEED") {
        Sim::new(seed, true).run(steps);
        return;
    }
    let seeds = env("SIM_SEEDS").unwrap_or(2_000);
    let start = std::time::Instant::now();
    let mut total = Counts::default();
    for seed in 0..seeds {
        let mut sim = Sim::new(seed, false);
        sim.run(steps);
        total += sim.counts;
    }
    println!(
        "{seeds} seeds × {steps} events in {:.1} s: {total:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(total.delivered > seeds * 50, "the runs deliver: {total:?}");
    assert!(
        total.catchup_reads > 0 && total.resumes > 0 && total.failed_commits > 0,
        "the runs reach catch-up, resume and failed commits: {total:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let run = |seed| {
        let mut sim = Sim::new(seed, false);
        sim.run(400);
        (sim.steps, sim.trace.iter().cloned().collect::<Vec<_>>())
    };
    assert_eq!(run(42), run(42));
}
