//! A group membership change made over HTTP on one gateway node takes
//! effect on every other node at once (`--store fdb`, the double server):
//! the removal's transaction leaves a notice in the inbox of each node
//! subscribed to the group, whose owner reloads the members and kicks the
//! removed member's connections there as a local removal does. Run by
//! `scripts/test-fdb` (`FDB_CLUSTER_FILE`), or starts a double server of
//! its own.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
mod nodes_common;

use std::time::{Duration, Instant};

use common::{http, Client};
use nodes_common::{namespace, node, shared_cluster};
use serde_json::json;

/// How soon a removal on one node must reach the connections on another.
const KICK_WITHIN: Duration = Duration::from_secs(3);

#[test]
fn a_member_removed_on_one_node_is_kicked_and_refused_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("members-elsewhere");
    let a = node(&cluster, &ns, &dir.path().join("a"), "a");
    let b = node(&cluster, &ns, &dir.path().join("b"), "b");
    let c = node(&cluster, &ns, &dir.path().join("c"), "c");

    let (s, body) = http(
        a.addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bob", "carol"]})),
    );
    assert_eq!(s, 201, "{body}");
    let group = body["channel"].as_str().unwrap().to_string();
    let id = group.strip_prefix("group:").unwrap();

    let mut alice = Client::connect(a.addr, "alice", "d");
    // Bob has a joined connection on each of B's two shards; carol is on C.
    // (Devices of their own: a device's newer connection replaces its older.)
    let mut bob0 = Client::connect(b.addr, "bob", "d0");
    let mut bob1 = (1..200)
        .map(|i| Client::connect(b.addr, "bob", &format!("d{i}")))
        .find(|c| c.shard() != bob0.shard())
        .unwrap();
    let mut carol = Client::connect(c.addr, "carol", "d");
    for cl in [&mut alice, &mut bob0, &mut bob1, &mut carol] {
        assert_eq!(cl.join(&group, None), 0);
    }
    // B and C hold the members now: bob's send there is a member's.
    assert_eq!(bob0.send_msg(&group, "b1", "hello")["seq"], 1);
    for cl in [&mut bob0, &mut bob1, &mut carol] {
        assert_eq!(cl.msgs(&group, 1)[0]["text"], "hello");
    }

    let t0 = Instant::now();
    let (s, body) = http(
        a.addr,
        "DELETE",
        &format!("/v1/groups/{id}/members/bob?user=alice"),
        None,
    );
    assert_eq!(s, 204, "{body}");
    for bob in [&mut bob0, &mut bob1] {
        let left = bob.recv_type("left");
        assert_eq!(left["channel"], group.as_str(), "{left}");
    }
    let took = t0.elapsed();
    assert!(took < KICK_WITHIN, "the kick on B took {took:?}");

    // On B, as after a local removal: sends and joins are refused.
    let r = bob0.send_msg(&group, "b2", "still here?");
    assert_eq!(r["code"], "not_member", "{r}");
    let r = bob1.request(json!({"type": "join", "channel": group}));
    assert_eq!(r["code"], "not_member", "{r}");
    // The others go on, and bob gets nothing more.
    assert_eq!(alice.send_msg(&group, "a1", "bob is gone")["seq"], 2);
    assert_eq!(carol.msgs(&group, 1)[0]["seq"], 2);
    for bob in [&mut bob0, &mut bob1] {
        assert!(
            bob.recv_matching_now(|v| v["type"] == "msg").is_none(),
            "no more messages for bob"
        );
    }
    // Carol, still a member on C, is not kicked.
    assert!(carol.recv_matching_now(|v| v["type"] == "left").is_none());
    assert_eq!(carol.send_msg(&group, "c1", "still here")["seq"], 3);
}
