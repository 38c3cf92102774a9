//! `commit_linger_us`: sends arriving within the linger share one durable
//! write, and none is acknowledged before its commit.
#![allow(clippy::unwrap_used)]
mod common;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn sends_within_the_linger_share_one_commit_and_are_acked_after_it() {
    let tg = start_with(1, |c| c.commit_linger_us = 100_000);
    let addr = tg.addr();
    let mut c = Client::connect(addr, "alice", "phone");
    let before = metric(addr, "gateway_commits_total");
    // 20 sends in one write: they reach the owner within the 100 ms linger.
    let sends = (0..20).map(|i| {
        json!({"id": i, "type": "send", "channel": "room:linger",
               "client_msg_id": format!("m-{i}"), "text": format!("t{i}")})
    });
    let t0 = Instant::now();
    c.write_raw(&pipelined(sends));
    let first = c.reply_to(0);
    let waited = t0.elapsed();
    assert_eq!(first["type"], "ack", "{first}");
    assert!(
        waited >= Duration::from_millis(90),
        "acked after {waited:?}, before the linger ran out"
    );
    for i in 1..20 {
        let ack = c.reply_to(i);
        assert_eq!(ack["seq"], i + 1, "{ack}");
    }
    let commits = metric(addr, "gateway_commits_total") - before;
    assert_eq!(
        commits, 1.0,
        "20 sends within the linger took {commits} commits"
    );

    // Durable as ever: history has all 20, in order.
    let page = c.request(json!({"type": "history", "channel": "room:linger", "limit": 50}));
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "{page}");
}
