//! The /v1 HTTP API: send and history through the same path as WebSocket
//! requests, with the protocol's statuses.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

#[test]
fn post_message_acks_and_reaches_websocket_members() {
    let tg = start(2);
    let addr = tg.addr();
    let mut ws = Client::connect(addr, "bob", "d");
    ws.join("room:http", None);
    let (status, ack) = http(
        addr,
        "POST",
        "/v1/channels/room:http/messages?user=alice&device=api",
        Some(&json!({"client_msg_id": "h1", "text": "from http"})),
    );
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["channel"], "room:http");
    assert_eq!(ack["duplicate"], false);
    let m = ws.msgs("room:http", 1);
    assert_eq!(m[0]["from"], "alice");
    assert_eq!(m[0]["text"], "from http");
    // Idempotent over HTTP too.
    let (_, again) = http(
        addr,
        "POST",
        "/v1/channels/room:http/messages?user=alice&device=api",
        Some(&json!({"client_msg_id": "h1", "text": "from http"})),
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], 1);
}

#[test]
fn get_messages_pages_history() {
    let tg = start(1);
    let addr = tg.addr();
    let mut c = Client::connect(addr, "alice", "d");
    for i in 0..5 {
        c.send_msg("room:h", &format!("m{i}"), &format!("t{i}"));
    }
    let (status, page) = http(
        addr,
        "GET",
        "/v1/channels/room:h/messages?user=alice&limit=2",
        None,
    );
    assert_eq!(status, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["seq"], 4);
    assert_eq!(page["has_more"], true);
    let (_, page) = http(
        addr,
        "GET",
        "/v1/channels/room:h/messages?user=alice&after=3",
        None,
    );
    let seqs: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(4), json!(5)]);
}

#[test]
fn errors_map_to_the_protocol_statuses() {
    let tg = start(1);
    let addr = tg.addr();
    let (s, e) = http(
        addr,
        "POST",
        "/v1/channels/dm:bob:carol/messages?user=alice",
        Some(&json!({"client_msg_id": "x", "text": "hi"})),
    );
    assert_eq!((s, e["code"].as_str().unwrap()), (403, "not_member"));
    let (s, e) = http(
        addr,
        "POST",
        "/v1/channels/room:a/messages?user=alice",
        Some(&json!({"text": "no id"})),
    );
    assert_eq!((s, e["code"].as_str().unwrap()), (400, "bad_request"));
    let (s, e) = http(addr, "GET", "/v1/channels/nope/messages?user=alice", None);
    assert_eq!((s, e["code"].as_str().unwrap()), (400, "invalid_channel"));
    let (s, _) = http(addr, "GET", "/v1/channels/room:a/messages", None);
    assert_eq!(s, 401, "no identity");
    let (s, _) = http(addr, "GET", "/v1/nothing?user=alice", None);
    assert_eq!(s, 404);
    let big = "x".repeat(100_001);
    let (s, e) = http(
        addr,
        "POST",
        "/v1/channels/room:a/messages?user=alice",
        Some(&json!({"client_msg_id": "big", "text": big})),
    );
    assert_eq!((s, e["code"].as_str().unwrap()), (413, "message_too_large"));
}
