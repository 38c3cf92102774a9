//! Groups: created over HTTP (creator included), members only on join, send
//! and history, membership changed by members and checked by the group's
//! owner shard, so a removal takes effect at once on every shard.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;

fn create(addr: SocketAddr, creator: &str, members: &[&str]) -> String {
    let (s, b) = http(
        addr,
        "POST",
        &format!("/v1/groups?user={creator}"),
        Some(&json!({"members": members})),
    );
    assert_eq!(s, 201, "{b}");
    b["channel"].as_str().unwrap().to_string()
}

#[test]
fn members_only_and_membership_changes_take_effect_at_once() {
    let tg = start(2);
    let addr = tg.addr();
    let group = create(addr, "alice", &["bob"]);
    assert!(group.starts_with("group:"));
    let id = group.strip_prefix("group:").unwrap().to_string();

    let mut alice = Client::connect(addr, "alice", "d");
    let mut bob = Client::connect(addr, "bob", "d");
    let mut carol = Client::connect(addr, "carol", "d");
    assert_eq!(alice.join(&group, None), 0);
    assert_eq!(bob.join(&group, None), 0);
    let r = carol.request(json!({"type":"join","channel": group}));
    assert_eq!(r["code"], "not_member");
    let r = carol.send_msg(&group, "c1", "let me in");
    assert_eq!(r["code"], "not_member");
    let r = carol.request(json!({"type":"history","channel": group}));
    assert_eq!(r["code"], "not_member");

    assert_eq!(alice.send_msg(&group, "a1", "hi bob")["seq"], 1);
    assert_eq!(bob.msgs(&group, 1)[0]["text"], "hi bob");

    // A non-member cannot change membership.
    let (s, b) = http(
        addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=carol"),
        Some(&json!({"user": "carol"})),
    );
    assert_eq!((s, b["code"].as_str().unwrap()), (403, "not_member"));
    // A member can.
    let (s, _) = http(
        addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=bob"),
        Some(&json!({"user": "carol"})),
    );
    assert_eq!(s, 204);
    assert_eq!(carol.join(&group, Some(0)), 1);
    assert_eq!(carol.msgs(&group, 1)[0]["seq"], 1);

    // Removal: bob's connection leaves the channel at once, sends are refused.
    let (s, _) = http(
        addr,
        "DELETE",
        &format!("/v1/groups/{id}/members/bob?user=alice"),
        None,
    );
    assert_eq!(s, 204);
    let left = bob.recv_type("left");
    assert_eq!(left["channel"], group.as_str());
    let r = bob.send_msg(&group, "b1", "still here?");
    assert_eq!(r["code"], "not_member");
    alice.send_msg(&group, "a2", "bob is gone");
    assert_eq!(carol.msgs(&group, 1)[0]["seq"], 2);
    assert!(
        bob.recv_matching_now(|v| v["type"] == "msg").is_none(),
        "no more messages for bob"
    );
}

#[test]
fn unknown_groups_and_oversized_groups_are_refused() {
    let tg = start_with(1, |c| c.max_group_members = 3);
    let addr = tg.addr();
    let mut c = Client::connect(addr, "alice", "d");
    let r = c.request(json!({"type":"join","channel":"group:nope"}));
    assert_eq!(r["code"], "not_found");
    let (s, b) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["b", "c", "d"]})),
    );
    assert_eq!(
        (s, b["code"].as_str().unwrap()),
        (403, "forbidden"),
        "4 members with the creator is over 3: a hard cap"
    );
    assert!(b["message"].as_str().unwrap().contains("max_group_members"));
    let (s, _) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bad id!"]})),
    );
    assert_eq!(s, 400);
    let (s, b) = http(
        addr,
        "POST",
        "/v1/groups/nope/members?user=alice",
        Some(&json!({"user": "b"})),
    );
    assert_eq!((s, b["code"].as_str().unwrap()), (404, "not_found"));
}

#[test]
fn groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--shards",
        "2",
    ];
    let gw = Child::spawn("", &args).unwrap();
    let group = create(gw.addr, "alice", &["bob"]);
    drop(gw);
    let gw = Child::spawn("", &args).unwrap();
    let mut bob = Client::connect(gw.addr, "bob", "d");
    assert_eq!(bob.join(&group, None), 0);
    let mut eve = Client::connect(gw.addr, "eve", "d");
    assert_eq!(
        eve.request(json!({"type":"join","channel": group}))["code"],
        "not_member"
    );
}
