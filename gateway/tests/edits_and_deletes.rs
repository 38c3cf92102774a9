//! Edits and deletes are messages in the same sequence, author only; history
//! and replay show the latest text (`edited`) or hide it (`deleted`).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

#[test]
fn author_edits_and_deletes_take_seqs_and_history_shows_the_result() {
    let tg = start(2);
    let addr = tg.addr();
    let mut alice = Client::connect(addr, "alice", "d");
    let mut bob = Client::connect(addr, "bob", "d");
    bob.join("room:e", None);
    assert_eq!(alice.send_msg("room:e", "m1", "first")["seq"], 1);
    assert_eq!(alice.send_msg("room:e", "m2", "second")["seq"], 2);

    let ack = alice.request(json!({"type":"edit","channel":"room:e","target":1,"client_msg_id":"e1","text":"first (fixed)"}));
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["seq"], 3);
    let ack =
        alice.request(json!({"type":"delete","channel":"room:e","target":2,"client_msg_id":"d1"}));
    assert_eq!(ack["seq"], 4);

    // Live: the events in sequence.
    let live = bob.msgs("room:e", 4);
    assert_seqs(&live, 1, 4);
    assert_eq!(live[2]["kind"], "edit");
    assert_eq!(live[2]["target"], 1);
    assert_eq!(live[2]["text"], "first (fixed)");
    assert_eq!(live[3]["kind"], "delete");
    assert_eq!(live[3]["target"], 2);

    // History: the targets carry the result, the events keep their place.
    let h = bob.request(json!({"type":"history","channel":"room:e"}));
    let m = h["messages"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[0]["text"], "first (fixed)");
    assert_eq!(m[0]["edited"], true);
    assert_eq!(m[1]["deleted"], true);
    assert!(
        m[1].get("text").is_none(),
        "a deleted message has no text: {}",
        m[1]
    );

    // Replay with since shows the same view.
    let mut carol = Client::connect(addr, "carol", "d");
    carol.join("room:e", Some(0));
    let replay = carol.msgs("room:e", 4);
    assert_eq!(replay[0]["edited"], true);
    assert_eq!(replay[1]["deleted"], true);
}

#[test]
fn only_the_author_may_edit_and_the_target_must_exist() {
    let tg = start(1);
    let addr = tg.addr();
    let mut alice = Client::connect(addr, "alice", "d");
    let mut bob = Client::connect(addr, "bob", "d");
    alice.send_msg("room:f", "m1", "mine");
    let r = bob.request(
        json!({"type":"edit","channel":"room:f","target":1,"client_msg_id":"x","text":"hijack"}),
    );
    assert_eq!(r["code"], "forbidden");
    let r = bob.request(json!({"type":"delete","channel":"room:f","target":1,"client_msg_id":"y"}));
    assert_eq!(r["code"], "forbidden");
    let r = alice.request(
        json!({"type":"edit","channel":"room:f","target":9,"client_msg_id":"z","text":"?"}),
    );
    assert_eq!(r["code"], "not_found");
    // Nothing refused took a seq.
    assert_eq!(alice.send_msg("room:f", "m2", "next")["seq"], 2);
}

#[test]
fn replay_on_the_same_shard_as_a_live_member_shows_the_edit() {
    // One shard: the replica's ring holds the original frames.
    let tg = start(1);
    let addr = tg.addr();
    let mut alice = Client::connect(addr, "alice", "d");
    alice.join("room:g", None);
    alice.send_msg("room:g", "m1", "before");
    alice.request(
        json!({"type":"edit","channel":"room:g","target":1,"client_msg_id":"e","text":"after"}),
    );
    let mut late = Client::connect(addr, "late", "d");
    late.join("room:g", Some(0));
    let replay = late.msgs("room:g", 2);
    assert_eq!(replay[0]["text"], "after");
    assert_eq!(replay[0]["edited"], true);
}
