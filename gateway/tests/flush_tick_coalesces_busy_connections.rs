//! `flush_tick_us`: a busy connection writes at most once per tick, and
//! nothing about what it receives changes — every seq once, in order, acks
//! before the sender's own message, slow members still catch up from
//! history. (How many segments the tick saves is measured by `bench run
//! room-fanout`, never asserted here.)
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn members_of_a_busy_room_receive_every_seq_in_order_with_the_tick_on() {
    // 2 shards, so members on both sides of the mesh; a 20 ms tick.
    let tg = start_with(2, |c| c.flush_tick_us = 20_000);
    let addr = tg.addr();
    let mut members: Vec<Client> = (0..12)
        .map(|i| Client::connect_on_shard(addr, &format!("m{i}"), i % 2))
        .collect();
    for m in &mut members {
        m.join("room:busy", None);
    }
    let mut senders: Vec<Client> = (0..2)
        .map(|i| Client::connect_on_shard(addr, &format!("s{i}"), i))
        .collect();
    let n = 400u64;
    for i in 0..n {
        let s = &mut senders[(i % 2) as usize];
        s.send_msg_async("room:busy", &format!("c{i}"), &format!("text {i}"));
    }
    for s in &mut senders {
        for _ in 0..n / 2 {
            let ack = s.recv_type("ack");
            assert!(ack["seq"].as_u64().unwrap() <= n, "{ack}");
        }
    }
    for m in &mut members {
        let got = m.msgs("room:busy", n as usize);
        assert_seqs(&got, 1, n);
    }
    // The tick holds output only until its next epoch: a message sent
    // after the burst arrives too.
    senders[0].send_msg("room:busy", "last", "after the burst");
    for m in &mut members {
        let got = m.msgs("room:busy", 1);
        assert_eq!(got[0]["seq"], n + 1);
    }
}

#[test]
fn a_sender_sees_its_ack_before_its_own_message_with_the_tick_on() {
    let tg = start_with(1, |c| c.flush_tick_us = 50_000);
    let mut a = Client::connect(tg.addr(), "alice", "d");
    a.join("room:order", None);
    for i in 0..50 {
        let id = a.send_msg_async("room:order", &format!("c{i}"), "hi");
        let first = a.recv_matching(|v| v["type"] == "ack" || v["type"] == "msg");
        assert_eq!(first["type"], "ack", "ack first: {first}");
        assert_eq!(first["id"], id, "{first}");
        let own = a.msgs("room:order", 1);
        assert_eq!(own[0]["seq"], i + 1);
    }
}

#[test]
fn a_slow_member_with_the_tick_on_catches_up_from_history_without_loss() {
    const BUDGET: usize = 64 * 1024;
    let tg = start_with(1, |c| {
        c.flush_tick_us = 10_000;
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
    let n = 2000u64;
    let mut acked = 0;
    for i in 0..n {
        sender.send_msg_async("room:big", &format!("m{i}"), &text);
        if i >= 200 {
            sender.recv_type("ack");
            acked += 1;
        }
    }
    while acked < n {
        sender.recv_type("ack");
        acked += 1;
    }
    assert_seqs(&fast.msgs("room:big", n as usize), 1, n);
    let stats = tg.gw().stats();
    assert!(
        stats.slow_consumer_events > 0,
        "the slow member went into catch-up: {stats:?}"
    );
    assert_seqs(&slow.msgs("room:big", n as usize), 1, n);
}

#[test]
fn a_close_after_a_write_in_the_same_tick_still_reaches_the_client() {
    // A one-second tick: the connection has just written (its ack and its
    // message), so the close frame is held until the next epoch — and then
    // written, not lost.
    let tg = start_with(1, |c| {
        c.flush_tick_us = 1_000_000;
        c.max_frame_bytes = 64 * 1024;
    });
    let mut a = Client::connect(tg.addr(), "alice", "d");
    a.join("room:c", None);
    a.send_msg("room:c", "c1", "one");
    let _ =
        a.ws.send(tungstenite::Message::text("a".repeat(64 * 1024 + 1)));
    assert_eq!(a.close_code(), Some(1009));
    // Other connections are unaffected.
    let mut b = Client::connect(tg.addr(), "bob", "d");
    b.join("room:c", Some(0));
    assert_seqs(&b.msgs("room:c", 1), 1, 1);
}
