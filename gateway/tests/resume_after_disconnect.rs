//! A client disconnects, 100 messages are sent, it rejoins with `since` and
//! gets exactly those 100, then live ones.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn rejoin_with_since_replays_exactly_the_missed_messages_then_live() {
    let tg = start(2);
    let addr = tg.addr();
    let mut sender = Client::connect(addr, "sender", "d");
    let mut reader = Client::connect(addr, "reader", "d");
    reader.join("room:resume", None);
    for i in 0..10 {
        sender.send_msg("room:resume", &format!("pre{i}"), "before");
    }
    let seen = reader.msgs("room:resume", 10);
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(last, 10);
    reader.close();

    for i in 0..100 {
        sender.send_msg("room:resume", &format!("gap{i}"), &format!("missed {i}"));
    }

    // Rejoin from another shard if possible: resume works on any shard.
    let mut back = Client::connect(addr, "reader", "d2");
    let head = back.join("room:resume", Some(last));
    assert_eq!(head, 110);
    let replay = back.msgs("room:resume", 100);
    assert_seqs(&replay, 11, 110);
    assert_eq!(replay[0]["text"], "missed 0");
    assert_eq!(replay[99]["text"], "missed 99");

    sender.send_msg("room:resume", "live1", "live");
    let live = back.msgs("room:resume", 1);
    assert_eq!(live[0]["seq"], 111);
    assert_eq!(live[0]["text"], "live");
}

#[test]
fn join_without_since_is_live_only() {
    let tg = start(1);
    let mut s = Client::connect(tg.addr(), "s", "d");
    for i in 0..5 {
        s.send_msg("room:live", &format!("m{i}"), "old");
    }
    let mut r = Client::connect(tg.addr(), "r", "d");
    assert_eq!(r.join("room:live", None), 5);
    s.send_msg("room:live", "new", "new");
    let m = r.msgs("room:live", 1);
    assert_eq!(m[0]["seq"], 6);
}

#[test]
fn since_beyond_head_is_a_bad_request_and_the_connection_stays_usable() {
    let tg = start(2);
    let mut c = Client::connect(tg.addr(), "u", "d");
    let r = c.request(serde_json::json!({"type": "join", "channel": "room:x", "since": 5}));
    assert_eq!(r["type"], "error");
    assert_eq!(r["code"], "bad_request");
    assert_eq!(c.join("room:x", Some(0)), 0);
}

#[test]
fn replay_pages_through_a_long_history_from_the_store() {
    let tg = start(2);
    let addr = tg.addr();
    let mut s = Client::connect(addr, "s", "d");
    // Enough to pass the replica ring and several catch-up pages.
    for i in 0..1500 {
        s.send_msg_async("room:long", &format!("m{i}"), &format!("{i:0>200}"));
    }
    for _ in 0..1500 {
        let a = s.recv_type("ack");
        assert_eq!(a["type"], "ack");
    }
    let mut r = Client::connect(addr, "r", "d");
    assert_eq!(r.join("room:long", Some(0)), 1500);
    let all = r.msgs("room:long", 1500);
    assert_seqs(&all, 1, 1500);
}

#[test]
fn join_leave_join_in_one_burst_serves_the_last_join_exactly() {
    use serde_json::json;
    let tg = start(2);
    let mut s = Client::connect(tg.addr(), "s", "d");
    for i in 0..20 {
        s.send_msg("room:jlj", &format!("m{i}"), &format!("{i}"));
    }
    let mut c = Client::connect(tg.addr(), "c", "d");
    c.send_json(json!({"id": 1, "type": "join", "channel": "room:jlj"}));
    c.send_json(json!({"id": 2, "type": "leave", "channel": "room:jlj"}));
    c.send_json(json!({"id": 3, "type": "join", "channel": "room:jlj", "since": 5}));
    let r3 = c.reply_to(3);
    assert_eq!(r3["type"], "joined");
    assert_eq!(r3["head"], 20);
    assert_eq!(c.reply_to(2)["type"], "left");
    assert_eq!(c.reply_to(1)["type"], "joined", "every request is answered");
    let replay = c.msgs("room:jlj", 15);
    assert_seqs(&replay, 6, 20);
    s.send_msg("room:jlj", "live", "live");
    assert_eq!(c.msgs("room:jlj", 1)[0]["seq"], 21);
}
