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
