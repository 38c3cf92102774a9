//! Typing (ephemeral, deduplicated per window), per-connection rate limits
//! (rate_limited, then 1008), the per-user connection limit (4029) and the
//! blocklist (forbidden, not stored).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn typing_reaches_other_members_once_per_window_and_never_the_sender() {
    let tg = start_with(2, |c| c.typing_window_ms = 400);
    let mut a = Client::connect_on_shard(tg.addr(), "alice", 0);
    let mut b = Client::connect_on_shard(tg.addr(), "bob", 1);
    a.join("room:t", None);
    b.join("room:t", None);
    a.send_json(json!({"type": "typing", "channel": "room:t"}));
    let t = b.recv_type("typing");
    assert_eq!(t["channel"], "room:t");
    assert_eq!(t["user"], "alice");
    // Within the window: dropped. A message sent after shows nothing in between.
    a.send_json(json!({"type": "typing", "channel": "room:t"}));
    a.send_msg("room:t", "m1", "hi");
    let next = b.recv();
    assert_eq!(
        next["type"], "msg",
        "second typing within the window was dropped: {next}"
    );
    std::thread::sleep(Duration::from_millis(450));
    a.send_json(json!({"type": "typing", "channel": "room:t"}));
    assert_eq!(b.recv_type("typing")["user"], "alice");
    // The sender never gets its own typing; typing is not stored.
    let p = a.request(json!({"type": "ping"}));
    assert_eq!(p["type"], "pong");
    let h = a.request(json!({"type": "history", "channel": "room:t"}));
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    assert!(a.recv_matching_now(|v| v["type"] == "typing").is_none());
}

#[test]
fn rate_limit_answers_rate_limited_then_closes_with_1008_when_sustained() {
    let tg = start_with(1, |c| {
        c.rate_limit_per_sec = 1.0;
        c.rate_limit_burst = 3;
        c.rate_limit_close_after = 5;
    });
    let mut c = Client::connect(tg.addr(), "alice", "d");
    for _ in 0..3 {
        assert_eq!(c.join("room:r", None), 0);
    }
    let r = c.request(json!({"type": "join", "channel": "room:r"}));
    assert_eq!(r["code"], "rate_limited");
    // Pings are not counted.
    assert_eq!(c.request(json!({"type": "ping"}))["type"], "pong");
    for _ in 0..5 {
        c.send_json(json!({"type": "join", "channel": "room:r"}));
    }
    assert_eq!(c.close_code(), Some(1008));
}

#[test]
fn connections_past_the_per_user_maximum_are_closed_with_4029() {
    let tg = start_with(2, |c| c.max_connections_per_user = 2);
    let mut a = Client::connect(tg.addr(), "alice", "d1");
    let mut b = Client::connect(tg.addr(), "alice", "d2");
    // Make sure both are registered before the third arrives.
    a.request(json!({"type": "ping"}));
    b.request(json!({"type": "ping"}));
    std::thread::sleep(Duration::from_millis(100));
    let mut c = Client::connect(tg.addr(), "alice", "d3");
    assert_eq!(c.close_code(), Some(4029));
    // Another user is unaffected, and a replaced device does not count twice.
    Client::connect(tg.addr(), "bob", "d1");
    let mut a2 = Client::connect(tg.addr(), "alice", "d1");
    assert_eq!(a.close_code(), Some(4009));
    assert_eq!(a2.request(json!({"type": "ping"}))["type"], "pong");
}

#[test]
fn blocked_words_and_patterns_are_forbidden_and_not_stored() {
    let tg = start_with(2, |c| {
        c.blocklist_words = vec!["spam".into()];
        c.blocklist_patterns = vec![r"buy\s+now".into()];
    });
    let mut c = Client::connect(tg.addr(), "alice", "d");
    let r = c.send_msg("room:m", "m1", "this is SPAM");
    assert_eq!(r["code"], "forbidden");
    let r = c.send_msg("room:m", "m2", "buy   now!");
    assert_eq!(r["code"], "forbidden");
    let ok = c.send_msg("room:m", "m3", "spammer is a different word");
    assert_eq!(ok["seq"], 1, "nothing blocked took a seq");
    let h = c.request(json!({"type": "history", "channel": "room:m"}));
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
}
