//! A send retried with the same client_msg_id gets the same seq with
//! duplicate: true and is stored once; different text gets conflict.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

#[test]
fn retry_gets_the_original_seq_and_is_stored_once() {
    let tg = start(2);
    let addr = tg.addr();
    let mut c = Client::connect(addr, "alice", "phone");
    let first = c.send_msg("room:dedup", "m-1", "hello");
    assert_eq!(first["duplicate"], false);
    let again = c.send_msg("room:dedup", "m-1", "hello");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["ts"], first["ts"]);

    // Also after reconnecting (same device), on whatever shard.
    c.close();
    let mut c2 = Client::connect(addr, "alice", "phone");
    let third = c2.send_msg("room:dedup", "m-1", "hello");
    assert_eq!(third["duplicate"], true);
    assert_eq!(third["seq"], first["seq"]);

    // Stored once: history has exactly one message.
    let h = c2.request(json!({"type": "history", "channel": "room:dedup"}));
    assert_eq!(h["type"], "history");
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    assert_eq!(h["has_more"], false);

    // The next message continues densely.
    let next = c2.send_msg("room:dedup", "m-2", "next");
    assert_eq!(next["seq"], 2);
}

#[test]
fn retry_with_different_text_is_a_conflict() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "phone");
    c.send_msg("room:dedup", "m-1", "hello");
    let r = c.send_msg("room:dedup", "m-1", "changed");
    assert_eq!(r["type"], "error");
    assert_eq!(r["code"], "conflict");
}

#[test]
fn retries_in_flight_wait_for_the_original() {
    let tg = start(2);
    let mut c = Client::connect(tg.addr(), "alice", "phone");
    let ids: Vec<u64> = (0..5)
        .map(|_| c.send_msg_async("room:race", "same", "x"))
        .collect();
    let replies: Vec<_> = ids.iter().map(|&id| c.reply_to(id)).collect();
    let seqs: Vec<_> = replies.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.iter().all(|&s| s == 1),
        "all five got seq 1: {replies:?}"
    );
    let originals = replies.iter().filter(|r| r["duplicate"] == false).count();
    assert_eq!(originals, 1, "exactly one is the original");
    // Another device using the same client_msg_id is a different message.
    let mut other = Client::connect(tg.addr(), "alice", "laptop");
    let r = other.send_msg("room:race", "same", "x");
    assert_eq!(r["seq"], 2);
    assert_eq!(r["duplicate"], false);
}
