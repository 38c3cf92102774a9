//! A user learns about channels that became theirs: `channel_added` when
//! added to a group or on a first DM, and `GET /v1/me/channels`. The demo
//! page is served in dev auth only unless configured.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

#[test]
fn a_first_dm_announces_the_channel_to_both_users_once() {
    let tg = start(2);
    let addr = tg.addr();
    let mut bob = Client::connect(addr, "bob", "d");
    let mut alice = Client::connect(addr, "alice", "d");
    let mut alice2 = Client::connect(addr, "alice", "d2");
    alice.send_msg("dm:alice:bob", "1", "hi bob");
    let added = bob.recv_type("channel_added");
    assert_eq!(
        added,
        json!({"type": "channel_added", "channel": "dm:alice:bob", "kind": "dm"})
    );
    assert_eq!(alice2.recv_type("channel_added")["channel"], "dm:alice:bob");
    alice.send_msg("dm:alice:bob", "2", "again");
    assert!(bob
        .recv_matching_now(|v| v["type"] == "channel_added")
        .is_none());

    let (s, body) = http(addr, "GET", "/v1/me/channels?user=bob", None);
    assert_eq!(s, 200);
    assert_eq!(
        body,
        json!({"channels": [{"channel": "dm:alice:bob", "kind": "dm", "members": ["alice", "bob"],
                             "head": 2, "read": 0, "unread": 2}]})
    );
}

#[test]
fn group_members_are_told_when_added() {
    let tg = start(2);
    let addr = tg.addr();
    let mut bob = Client::connect(addr, "bob", "d");
    let mut carol = Client::connect(addr, "carol", "d");
    let (s, body) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bob"]})),
    );
    assert_eq!(s, 201);
    let channel = body["channel"].as_str().unwrap().to_string();
    let added = bob.recv_type("channel_added");
    assert_eq!(added["channel"], channel.as_str());
    assert_eq!(added["kind"], "group");
    assert!(carol
        .recv_matching_now(|v| v["type"] == "channel_added")
        .is_none());

    let id = channel.strip_prefix("group:").unwrap();
    let (s, _) = http(
        addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=bob"),
        Some(&json!({"user": "carol"})),
    );
    assert_eq!(s, 204);
    assert_eq!(
        carol.recv_type("channel_added")["channel"],
        channel.as_str()
    );
    // Adding an existing member announces nothing.
    let (s, _) = http(
        addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=bob"),
        Some(&json!({"user": "carol"})),
    );
    assert_eq!(s, 204);
    assert!(carol
        .recv_matching_now(|v| v["type"] == "channel_added")
        .is_none());

    carol.send_msg(&channel, "c1", "hello group");
    let (_, body) = http(addr, "GET", "/v1/me/channels?user=bob", None);
    let list = body["channels"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["members"], json!(["alice", "bob", "carol"]));
    assert_eq!(list[0]["unread"], 1);
    let (_, body) = http(addr, "GET", "/v1/me/channels?user=carol", None);
    assert_eq!(
        body["channels"][0]["unread"], 0,
        "own sends move the read cursor"
    );

    // A read just reported (coalesced, maybe not written yet) counts at once.
    bob.send_json(json!({"type": "read", "channel": channel, "seq": 1}));
    bob.request(json!({"type": "ping"})); // the read was taken in
    let (_, body) = http(addr, "GET", "/v1/me/channels?user=bob", None);
    assert_eq!(body["channels"][0]["read"], 1);
    assert_eq!(body["channels"][0]["unread"], 0);
    let (_, unread) = http(addr, "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(unread["unread"], json!({}), "both endpoints agree");
}

#[test]
fn the_demo_page_is_on_in_dev_auth_and_off_with_a_secret_unless_configured() {
    let tg = start(1);
    let (s, body) = http_get(tg.addr(), "/demo/");
    assert_eq!(s, 200);
    assert!(body.contains("<html"), "{body}");
    let (s, body) = http_get(tg.addr(), "/demo/sdk/index.js");
    assert_eq!(s, 200);
    assert!(body.contains("ChatClient"));

    let tg = start_with(1, |c| {
        c.auth_secret = Some("a-secret-of-at-least-32-bytes-long".into())
    });
    assert_eq!(http_get(tg.addr(), "/demo/").0, 404);
    let tg = start_with(1, |c| {
        c.auth_secret = Some("a-secret-of-at-least-32-bytes-long".into());
        c.demo = Some(true);
    });
    assert_eq!(http_get(tg.addr(), "/demo/").0, 200);
}
