//! Clients on both shards in one room see the same order; acks carry seqs;
//! the sender gets its own msg after its ack.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn clients_on_both_shards_see_one_order_and_ack_before_own_msg() {
    let tg = start(2);
    let addr = tg.addr();
    let mut a = Client::connect_on_shard(addr, "alice", 0);
    let mut b = Client::connect_on_shard(addr, "bob", 1);
    assert_eq!(a.join("room:lobby", None), 0);
    assert_eq!(b.join("room:lobby", None), 0);

    // The sender sees its ack, then its own msg.
    let ack = a.send_msg("room:lobby", "a1", "hello from shard 0");
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);
    assert!(ack["ts"].as_u64().unwrap() > 0);
    let own = a.recv();
    assert_eq!(
        own["type"], "msg",
        "the frame after the ack is the sender's own msg"
    );
    assert_eq!(own["seq"], 1);
    assert_eq!(own["from"], "alice");
    assert_eq!(own["client_msg_id"], "a1");
    assert_eq!(own["text"], "hello from shard 0");

    // Interleaved senders on both shards: both see the same order.
    for i in 0..20 {
        a.send_msg_async("room:lobby", &format!("a-{i}"), &format!("a{i}"));
        b.send_msg_async("room:lobby", &format!("b-{i}"), &format!("b{i}"));
    }
    let ma = a.msgs("room:lobby", 40);
    let mb = b.msgs("room:lobby", 41);
    assert_eq!(mb[0]["seq"], 1);
    assert_seqs(&ma, 2, 41);
    assert_seqs(&mb, 1, 41);
    let texts_a: Vec<_> = ma.iter().map(|m| m["text"].clone()).collect();
    let texts_b: Vec<_> = mb[1..].iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts_a, texts_b, "every member sees the same order");

    // Acks carried the seqs the messages arrived with.
    for i in 0..20 {
        let ack = a.recv_matching(|v| v["type"] == "ack" && v["client_msg_id"] == format!("a-{i}"));
        let seq = ack["seq"].as_u64().unwrap();
        assert_eq!(ma[(seq - 2) as usize]["client_msg_id"], format!("a-{i}"));
    }
}
