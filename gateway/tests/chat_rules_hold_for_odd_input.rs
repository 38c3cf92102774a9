//! Chat rules that held for ordinary input and not for odd input: history
//! pages made of escaped characters, typing from a non-member, guessable
//! group ids, unread counts that counted edits. Every case here was
//! demonstrated against an earlier build (issue 11).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

/// A history page is bounded by its encoded frame, not its text: a client
/// that accepts the protocol's 2 MiB server frames can always load the
/// latest page, even of messages that JSON escapes six times over.
#[test]
fn history_pages_of_escaped_text_fit_a_server_frame() {
    let gw = ConfiguredChild::start("shards = 1\n");
    let addr = gw.addr();
    let mut w = Client::connect(addr, "writer", "w");
    // 100,000 control characters: each is escaped as \u0001 (6 bytes).
    let text = "\u{1}".repeat(100_000);
    for i in 0..12 {
        w.send_msg_async("room:esc", &format!("e{i}"), &text);
    }
    for _ in 0..12 {
        assert_eq!(w.recv_type("ack")["type"], "ack");
    }
    // A client that honours the 2 MiB server-frame maximum.
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let cfg = tungstenite::protocol::WebSocketConfig::default()
        .max_frame_size(Some(2 << 20))
        .max_message_size(Some(2 << 20));
    let (ws, _) =
        tungstenite::client::client_with_config(ws_url(addr, "reader", "r"), stream, Some(cfg))
            .unwrap();
    let mut r = Client::from_ws(ws);
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut req = json!({"type":"history","channel":"room:esc","limit":200});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        let page = r.request(req);
        assert_eq!(page["type"], "history", "{page}");
        let msgs = page["messages"].as_array().unwrap();
        assert!(!msgs.is_empty(), "at least one message per page");
        for m in msgs.iter().rev() {
            seen.push(m["seq"].as_u64().unwrap());
            assert_eq!(m["text"].as_str().unwrap().chars().count(), 100_000);
        }
        before = msgs.first().and_then(|m| m["seq"].as_u64());
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(
        seen,
        (1..=12).rev().collect::<Vec<u64>>(),
        "every message once"
    );
}

/// `typing` in a group reaches the members only from members; a
/// non-member gets `not_member`.
#[test]
fn typing_in_a_group_needs_membership() {
    let gw = ConfiguredChild::start("shards = 2\ntyping_window_ms = 100\n");
    let addr = gw.addr();
    let (s, b) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bob"]})),
    );
    assert_eq!(s, 201);
    let group = b["channel"].as_str().unwrap().to_string();
    let mut bob = Client::connect(addr, "bob", "b");
    bob.join(&group, None);
    let mut mallory = Client::connect(addr, "mallory", "m");
    let r = mallory.request(json!({"type":"typing","channel": group}));
    assert_eq!(r["code"], "not_member", "{r}");
    assert!(
        bob.recv_matching_now(|v| v["type"] == "typing").is_none(),
        "a non-member's typing reached a member"
    );
    let mut alice = Client::connect(addr, "alice", "a");
    alice.send_json(json!({"type":"typing","channel": group}));
    let t = bob.recv_type("typing");
    assert_eq!(t["user"], "alice");
}

/// Group ids are 128 random bits (22 base64url characters): nothing about
/// one id tells another.
#[test]
fn group_ids_are_random_and_unguessable() {
    let gw = ConfiguredChild::start("shards = 1\n");
    let addr = gw.addr();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let (s, b) = http(
            addr,
            "POST",
            "/v1/groups?user=alice",
            Some(&json!({"members": []})),
        );
        assert_eq!(s, 201, "{b}");
        let id = b["channel"]
            .as_str()
            .unwrap()
            .strip_prefix("group:")
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 22, "{id}");
        assert!(id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 20);
    // Consecutive ids share no structure: no common prefix longer than
    // chance allows (2 characters is already 1 in 4096).
    let ids: Vec<String> = ids.into_iter().collect();
    for pair in ids.windows(2) {
        let common = pair[0]
            .bytes()
            .zip(pair[1].bytes())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(common < 4, "{pair:?}");
    }
}

/// Unread counts messages (text and media), not the `edit` and `delete`
/// events that change them.
#[test]
fn unread_counts_messages_not_edit_and_delete_events() {
    let gw = ConfiguredChild::start("shards = 2\n");
    let addr = gw.addr();
    let mut alice = Client::connect(addr, "alice", "a");
    alice.send_msg("dm:alice:bob", "m1", "hello");
    for (i, text) in ["hello!", "hello!!"].iter().enumerate() {
        let r = alice.request(json!({"type":"edit","channel":"dm:alice:bob","target":1,
            "client_msg_id": format!("e{i}"),"text": text}));
        assert_eq!(r["type"], "ack", "{r}");
    }
    alice.send_msg("dm:alice:bob", "m2", "typo");
    let r = alice
        .request(json!({"type":"delete","channel":"dm:alice:bob","target":4,"client_msg_id":"d1"}));
    assert_eq!(r["type"], "ack", "{r}");
    alice.send_msg("dm:alice:bob", "m3", "again");
    // seqs: 1 text, 2-3 edits, 4 text (deleted later), 5 delete, 6 text.
    let (_, u) = http(addr, "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(u["unread"]["dm:alice:bob"], 3, "{u}");
    let (s, _) = http(
        addr,
        "POST",
        "/v1/channels/dm:alice:bob/read?user=bob",
        Some(&json!({"seq": 4})),
    );
    assert_eq!(s, 204);
    let (_, u) = http(addr, "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(u["unread"]["dm:alice:bob"], 1, "only seq 6 is unread: {u}");
}
