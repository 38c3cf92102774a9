//! Read cursors: monotonic, clamped to the head, advanced by own sends,
//! pushed as `read` to the other members of DMs; unread = head − read.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

#[test]
fn reads_are_pushed_to_the_other_member_and_unread_follows_the_cursor() {
    let tg = start(2);
    let addr = tg.addr();
    let dm = "dm:alice:bob";
    let mut alice = Client::connect(addr, "alice", "phone");
    let mut alice2 = Client::connect(addr, "alice", "laptop");
    let mut bob = Client::connect(addr, "bob", "d");
    for i in 0..3 {
        alice.send_msg(dm, &format!("m{i}"), "hi");
    }
    // Own sends advanced alice's cursor: nothing unread for her.
    let (s, u) = http(addr, "GET", "/v1/me/unread?user=alice", None);
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["unread"], json!({}));
    // Bob has not read anything yet but never wrote in the DM either; after
    // reading seq 2 he has 1 unread.
    bob.send_json(json!({"type": "read", "channel": dm, "seq": 2}));
    for c in [&mut alice, &mut alice2] {
        let r = c.recv_type("read");
        assert_eq!(
            r,
            json!({"type": "read", "channel": dm, "user": "bob", "seq": 2})
        );
    }
    let (_, u) = http(addr, "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(u["unread"], json!({ dm: 1 }));
    // Backwards: no move, no push.
    bob.send_json(json!({"type": "read", "channel": dm, "seq": 1}));
    // Past the head: clamped to 3, pushed.
    let (s, _) = http(
        addr,
        "POST",
        &format!("/v1/channels/{dm}/read?user=bob"),
        Some(&json!({"seq": 99})),
    );
    assert_eq!(s, 204);
    let r = alice.recv_type("read");
    assert_eq!(
        r["seq"], 3,
        "the backwards read was not pushed; the clamped one was"
    );
    let (_, u) = http(addr, "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(u["unread"], json!({}));
    // Bob's own connection is not told about his own read.
    assert!(bob.recv_matching_now(|v| v["type"] == "read").is_none());
    // delivered has no reply and is accepted.
    bob.send_json(json!({"type": "delivered", "channel": dm, "seq": 3}));
    assert_eq!(bob.request(json!({"type": "ping"}))["type"], "pong");
}

#[test]
fn reading_a_dm_of_others_is_not_member() {
    let tg = start(1);
    let mut eve = Client::connect(tg.addr(), "eve", "d");
    let r = eve.request(json!({"type": "read", "channel": "dm:alice:bob", "seq": 1}));
    assert_eq!(r["code"], "not_member");
}
