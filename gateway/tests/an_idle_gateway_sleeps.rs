//! An idle gateway's shards sleep until something happens: no flag is
//! polled on a short timer. Until 2026-12-05 each shard's supervisor polled
//! the shutdown flag every 25 ms (and shard 0 the cluster flag as well):
//! ~120 wake-ups a second and ~1 % of a core for a gateway with nothing to
//! do. They now sleep on a doorbell rung when the flag is set; what is left
//! is the once-a-second tick and cursor flush of each shard.
//!
//! One test in this file, so no other gateway's shards run in the process
//! while the shards' context switches are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

/// Context switches so far of this process's threads whose name starts
/// with `shard` (the shards' executors), from `/proc/self/task/*/status`.
fn shard_context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("shard") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn an_idle_gateway_s_shards_wake_only_for_their_timers_and_still_stop_at_once() {
    let mut gw = common::start(2);
    // Let start-up settle (the shards' first ticks, the listener).
    std::thread::sleep(Duration::from_millis(1500));
    let before = shard_context_switches();
    std::thread::sleep(Duration::from_secs(3));
    let woke = shard_context_switches() - before;
    // Two shards × (tick + cursor flush) × 3 s ≈ 12, with room for the
    // odd store or timer wake; polling a flag every 25 ms made ~360.
    assert!(
        woke < 60,
        "idle shards switched {woke} times in 3 s: something polls on a short timer"
    );
    // The shutdown still reaches sleeping shards at once.
    let t = Instant::now();
    gw.gw.take().expect("running").shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}
