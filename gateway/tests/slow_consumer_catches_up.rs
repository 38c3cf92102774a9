//! One member stops reading while 5,000 messages of 1 KB flow: the
//! gateway's memory for it stays within the outbox budget, the other members
//! are not slowed, and when it reads again it gets all 5,000 in order.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

const BUDGET: usize = 64 * 1024;

#[test]
fn slow_member_gets_everything_in_order_with_bounded_memory() {
    let tg = start_with(2, |c| {
        c.outbox_budget_bytes = BUDGET;
        c.socket_send_buffer_bytes = 16 * 1024;
        c.replica_ring_bytes = 64 * 1024;
    });
    let addr = tg.addr();
    let mut slow = Client::connect(addr, "slow", "d");
    let mut fast = Client::connect(addr, "fast", "d");
    let mut sender = Client::connect(addr, "sender", "d");
    slow.join("room:big", None);
    fast.join("room:big", None);

    let text = "x".repeat(1000);
    let n = 5000u64;
    let mut acked = 0;
    for i in 0..n {
        sender.send_msg_async("room:big", &format!("m{i}"), &text);
        // Keep a bounded window in flight.
        if i >= 200 {
            sender.recv_type("ack");
            acked += 1;
        }
    }
    while acked < n {
        sender.recv_type("ack");
        acked += 1;
    }
    // The fast member got everything while the slow one was not reading.
    let got = fast.msgs("room:big", n as usize);
    assert_seqs(&got, 1, n);

    let stats = tg.gw().stats();
    assert!(
        stats.slow_consumer_events > 0,
        "the slow member went into catch-up: {stats:?}"
    );
    assert!(
        stats.max_outbox_bytes <= 2 * BUDGET,
        "outbox stayed bounded: {} > {}",
        stats.max_outbox_bytes,
        2 * BUDGET
    );

    // Now it reads: every message, in order, once.
    let all = slow.msgs("room:big", n as usize);
    assert_seqs(&all, 1, n);
    assert_eq!(all[4999]["text"].as_str().unwrap().len(), 1000);
    // And it is live again.
    sender.send_msg("room:big", "after", "live again");
    let live = slow.msgs("room:big", 1);
    assert_eq!(live[0]["seq"], n + 1);
}

#[test]
fn a_reader_of_many_channels_replaying_from_zero_stays_within_budget() {
    let tg = start_with(2, |c| {
        c.outbox_budget_bytes = BUDGET;
        c.socket_send_buffer_bytes = 16 * 1024;
    });
    let addr = tg.addr();
    let mut sender = Client::connect(addr, "sender", "d");
    let text = "y".repeat(1000);
    let channels: Vec<String> = (0..12).map(|i| format!("room:many{i}")).collect();
    for ch in &channels {
        for i in 0..200 {
            sender.send_msg_async(ch, &format!("{ch}-{i}"), &text);
        }
    }
    for _ in 0..channels.len() * 200 {
        sender.recv_type("ack");
    }
    // Join all with since=0 without reading anything yet.
    let mut reader = Client::connect(addr, "reader", "d");
    for ch in &channels {
        reader.send_json(serde_json::json!({"type": "join", "channel": ch, "since": 0}));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stats = tg.gw().stats();
    assert!(
        stats.max_outbox_bytes <= 2 * BUDGET,
        "catch-up of 12 channels stayed within the budget: {} > {}",
        stats.max_outbox_bytes,
        2 * BUDGET
    );
    for ch in &channels {
        let msgs = reader.msgs(ch, 200);
        assert_seqs(&msgs, 1, 200);
    }
}

#[test]
fn a_peer_that_stops_reading_is_cut_off() {
    let tg = start_with(1, |c| {
        c.outbox_budget_bytes = BUDGET;
        c.socket_send_buffer_bytes = 16 * 1024;
        c.heartbeat_ms = 500;
    });
    let addr = tg.addr();
    let mut stuck = Client::connect(addr, "stuck", "d");
    stuck.join("room:stuck", None);
    let mut sender = Client::connect(addr, "sender", "d");
    let text = "z".repeat(1000);
    let t0 = std::time::Instant::now();
    let mut i = 0;
    // Keep the room busy (and the sender alive) until the gateway gives up
    // on the connection that reads nothing.
    while tg.gw().stats().write_stalls == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "never cut off"
        );
        sender.send_msg("room:stuck", &format!("m{i}"), &text);
        i += 1;
    }
    drop(stuck);
}
