//! Each scenario against a real gateway at small scale: zero violations,
//! every send acked, every connection up at the end.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use common::{
    assert_clean, run_against_fresh_gateway, run_against_fresh_gateway_with, serial, small,
};
use loadgen::ScenarioKind;

fn addr() -> std::net::SocketAddr {
    // Rewritten by run_against_fresh_gateway.
    "127.0.0.1:1".parse().unwrap()
}

#[test]
fn dm_pairs() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Dm, addr(), 40));
    assert_clean(&r);
    // Every message reaches both members of its pair.
    assert_eq!(r.delivered, 2 * r.acked);
    assert!(r.sent >= 500, "{}", r.table());
}

/// `buffered` durability, where the owner's shard makes its commits itself
/// (`Store::append_waits_for_io` is false; the flag is checked in the
/// storage tests): still every message to every member, in order, once.
#[test]
fn groups_of_five_with_buffered_durability() {
    let _serial = serial();
    let r = run_against_fresh_gateway_with(small(ScenarioKind::Groups, addr(), 40), |c| {
        c.durability = chat_core::config::DurabilitySetting::Buffered;
    });
    assert_clean(&r);
    assert_eq!(r.delivered, 5 * r.acked);
}

#[test]
fn groups_of_five() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Groups, addr(), 40));
    assert_clean(&r);
    assert_eq!(r.delivered, 5 * r.acked);
}

#[test]
fn one_room_with_four_senders() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Room, addr(), 30));
    assert_clean(&r);
    assert_eq!(r.delivered, 30 * r.acked);
    // Deliveries to the 26 non-senders and the 3 other senders are timed.
    assert_eq!(r.latency_us.count, 29 * r.acked);
    // The server's own segments, counted on each connection as it closed:
    // at least the hello and one segment per delivered frame batch, and no
    // more data segments than frames sent (hello, joined, acks, msgs,
    // close).
    let c = &r.counters;
    assert!(
        c.server_data_segments >= 30 && c.server_segments >= c.server_data_segments,
        "{c:?}"
    );
    assert!(
        c.server_data_segments <= 30 * 4 + r.acked + r.delivered,
        "{c:?}"
    );
}

#[test]
fn one_room_whose_receivers_are_digest_members() {
    let _serial = serial();
    let mut cfg = small(ScenarioKind::Room, addr(), 30);
    cfg.scenario.mode = loadgen::scenario::Tier::Digest;
    let r = run_against_fresh_gateway(cfg);
    // Every message still reaches every member, once and in order.
    assert_clean(&r);
    assert_eq!(r.delivered, 30 * r.acked);
}

#[test]
fn one_room_read_with_permessage_deflate_gets_everything_in_fewer_bytes() {
    let _serial = serial();
    let plain = run_against_fresh_gateway(small(ScenarioKind::Room, addr(), 30));
    let mut cfg = small(ScenarioKind::Room, addr(), 30);
    cfg.compress = true;
    let compressed = run_against_fresh_gateway(cfg);
    // Compressed messages are inflated and checked like plain ones.
    assert_clean(&compressed);
    assert_eq!(compressed.delivered, 30 * compressed.acked);
    // The gateway accepted the offer and sent them compressed: fewer bytes
    // per delivery than the same room read plain.
    let per_delivery =
        |r: &loadgen::Report| r.counters.server_bytes as f64 / r.delivered.max(1) as f64;
    let (p, c) = (per_delivery(&plain), per_delivery(&compressed));
    assert!(
        p > 0.0 && c < 0.9 * p,
        "bytes per delivery: plain {p:.1}, compressed {c:.1}"
    );
}

#[test]
fn one_room_whose_receivers_are_counts_members() {
    let _serial = serial();
    let mut cfg = small(ScenarioKind::Room, addr(), 30);
    cfg.scenario.mode = loadgen::scenario::Tier::Counts;
    let r = run_against_fresh_gateway(cfg);
    // No message reaches the 26 counts members (that would be a violation),
    // and each saw a head event reach the last acked seq.
    assert_clean(&r);
    assert_eq!(r.delivered, 4 * r.acked);
}

#[test]
fn mixed() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Mixed, addr(), 40));
    assert_clean(&r);
    assert!(r.delivered > r.acked, "{}", r.table());
}

#[test]
fn idle_connections_hold() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Idle, addr(), 30));
    assert_clean(&r);
    assert_eq!(r.counters.connects, 30);
    assert_eq!(r.counters.disconnects, 0);
    assert_eq!(r.sent, 0);
}

#[test]
fn churn_rejoins_with_since() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Churn, addr(), 30));
    assert_clean(&r);
    // 15 drops/s for 2 s: every drop reconnects and rejoins.
    assert!(r.counters.churn_drops >= 10, "{}", r.table());
    assert_eq!(r.counters.connects, 30 + r.counters.churn_drops);
    assert_eq!(r.delivered, 5 * r.acked);
}

#[test]
fn resumers_rejoin_with_since_and_replay_exactly_what_they_missed() {
    let _serial = serial();
    let r = run_against_fresh_gateway(small(ScenarioKind::Resume, addr(), 30));
    assert_clean(&r);
    // 26 receivers were away for the whole send phase: each rejoined once,
    // and replayed every acked message (the 4 senders stayed).
    assert_eq!(r.counters.resumes, 26, "{}", r.table());
    assert_eq!(r.counters.resumes_caught_up, 26);
    // Each replays what was acked after it left: all of it, unless a send
    // was delivered before its close took effect (on a loaded host the
    // first sends can race the resumers' departure).
    assert!(r.counters.resume_replayed <= 26 * r.acked, "{}", r.table());
    assert!(
        r.counters.resume_replayed >= 26 * (r.acked / 2),
        "{}",
        r.table()
    );
    assert_eq!(r.rejoin_latency_us.count, 26);
    assert_eq!(r.catch_up_latency_us.count, 26);
    assert_eq!(r.counters.connects, 30 + 26);
    assert_eq!(r.counters.churn_drops, 0);
}

#[test]
fn slow_readers_still_get_everything_in_order() {
    let _serial = serial();
    let mut cfg = small(ScenarioKind::Room, addr(), 30);
    cfg.scenario.slow_fraction = 0.2;
    // Half the live rate (300 msgs/s × ~1.1 KB): they fall behind while
    // sending lasts and drain within the catch-up window.
    cfg.scenario.slow_read_bps = 160_000;
    cfg.message_bytes = 1024;
    let r = run_against_fresh_gateway(cfg);
    assert_clean(&r);
    assert_eq!(r.counters.slow_connections, 5, "{}", r.table());
    assert!(r.counters.slow_bytes_read > 0);
    assert_eq!(r.delivered, 30 * r.acked);
    assert_eq!(r.handshake_latency_us.count, 30);
}
