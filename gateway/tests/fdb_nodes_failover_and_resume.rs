//! Failover across gateway nodes on one FoundationDB namespace (`--store
//! fdb`, the double server): a client of a SIGKILLed node resumes on
//! another node with exactly the messages it missed; a group created over
//! HTTP on one node is usable, with the same membership, from another; read
//! cursors and unread counts set on one node are what another node answers.
//! Run by `scripts/test-fdb` (`FDB_CLUSTER_FILE`), or starts a double server
//! of its own.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
mod nodes_common;

use std::time::Duration;

use common::{assert_seqs, eventually, http, Client};
use nodes_common::{listed, namespace, node, shared_cluster};
use serde_json::{json, Value};

#[test]
fn a_client_of_a_killed_node_resumes_on_another_with_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("failover-resume");
    let a = node(&cluster, &ns, &dir.path().join("a"), "a");
    let b = node(&cluster, &ns, &dir.path().join("b"), "b");
    let c = node(&cluster, &ns, &dir.path().join("c"), "c");
    const ROOM: &str = "room:failover";

    // The reader is on A; messages come from B (through A's inbox) and
    // from A itself.
    let mut reader = Client::connect(a.addr, "reader", "phone");
    assert_eq!(reader.join(ROOM, None), 0);
    let mut on_b = Client::connect(b.addr, "sender-b", "d");
    let mut on_a = Client::connect(a.addr, "sender-a", "d");
    for i in 0..5 {
        on_b.send_msg(ROOM, &format!("b-pre{i}"), &format!("b {i}"));
    }
    for i in 0..3 {
        on_a.send_msg(ROOM, &format!("a-pre{i}"), &format!("a {i}"));
    }
    let seen = reader.msgs(ROOM, 8);
    assert_seqs(&seen, 1, 8);
    let k = 8;

    // A dies without a word; B goes on sending.
    a.kill9();
    for i in 0..20 {
        let ack = on_b.send_msg(ROOM, &format!("gap{i}"), &format!("missed {i}"));
        assert_eq!(ack["seq"].as_u64(), Some(k + 1 + i), "{ack}");
    }

    // The reader reconnects to C and resumes from k.
    let mut back = Client::connect(c.addr, "reader", "phone");
    assert_eq!(back.join(ROOM, Some(k)), k + 20);
    let replay = back.msgs(ROOM, 20);
    assert_seqs(&replay, k + 1, k + 20);
    assert_eq!(replay[0]["text"], "missed 0");
    assert_eq!(replay[19]["text"], "missed 19");
    // Then live messages from B, once each, also after A's lease ran out
    // and the others reaped it.
    on_b.send_msg(ROOM, "live-1", "live 1");
    assert_eq!(back.msgs(ROOM, 1)[0]["seq"].as_u64(), Some(k + 21));
    assert!(
        eventually(Duration::from_secs(10), || listed(b.addr)
            == vec!["b".to_owned(), "c".into()]),
        "{:?}",
        listed(b.addr)
    );
    on_b.send_msg(ROOM, "live-2", "live 2");
    let live = back.msgs(ROOM, 1);
    assert_eq!(live[0]["seq"].as_u64(), Some(k + 22));
    assert_eq!(live[0]["text"], "live 2");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        back.recv_matching_now(|v| v["type"] == "msg").is_none(),
        "no duplicate arrives late"
    );
}

fn create_group(addr: std::net::SocketAddr, creator: &str, members: &[&str]) -> String {
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
fn a_group_created_on_one_node_is_usable_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("group-elsewhere");
    let a = node(&cluster, &ns, &dir.path().join("a"), "a");
    let b = node(&cluster, &ns, &dir.path().join("b"), "b");

    let group = create_group(a.addr, "alice", &["bob"]);
    let mut alice = Client::connect(a.addr, "alice", "d");
    let mut bob = Client::connect(b.addr, "bob", "d");
    let mut eve = Client::connect(b.addr, "eve", "d");
    assert_eq!(alice.join(&group, None), 0);
    assert_eq!(bob.join(&group, None), 0);
    // B knows the members: outsiders are refused there.
    let r = eve.request(json!({"type": "join", "channel": group}));
    assert_eq!(r["code"], "not_member", "{r}");
    let r = eve.send_msg(&group, "e1", "let me in");
    assert_eq!(r["code"], "not_member", "{r}");

    // Sends on B reach A and the other way round (members get their own
    // messages too).
    assert_eq!(bob.send_msg(&group, "b1", "from b")["seq"], 1);
    assert_eq!(alice.msgs(&group, 1)[0]["text"], "from b");
    assert_eq!(alice.send_msg(&group, "a1", "from a")["seq"], 2);
    let got = bob.msgs(&group, 2);
    assert_seqs(&got, 1, 2);
    assert_eq!(got[1]["text"], "from a");
    // History on B.
    let h = bob.request(json!({"type": "history", "channel": group}));
    assert_eq!(h["type"], "history", "{h}");
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["from b", "from a"]);
    let h = eve.request(json!({"type": "history", "channel": group}));
    assert_eq!(h["code"], "not_member", "{h}");

    // A member added over HTTP on A may join on B at once.
    let id = group.strip_prefix("group:").unwrap();
    let (s, _) = http(
        a.addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=alice"),
        Some(&json!({"user": "eve"})),
    );
    assert_eq!(s, 204);
    assert_eq!(eve.join(&group, Some(0)), 2);
    assert_seqs(&eve.msgs(&group, 2), 1, 2);
}

#[test]
fn read_cursors_and_unread_set_on_one_node_are_seen_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("cursors-elsewhere");
    let a = node(&cluster, &ns, &dir.path().join("a"), "a");
    let b = node(&cluster, &ns, &dir.path().join("b"), "b");
    let dm = "dm:alice:bob";

    let mut alice = Client::connect(a.addr, "alice", "phone");
    for i in 0..3 {
        alice.send_msg(dm, &format!("m{i}"), "hi");
    }
    let unread_on = |addr, user: &str| -> Value {
        let (s, u) = http(addr, "GET", &format!("/v1/me/unread?user={user}"), None);
        assert_eq!(s, 200, "{u}");
        u["unread"].clone()
    };
    // Before bob reads anything, B counts all three for him.
    assert!(
        eventually(Duration::from_secs(5), || unread_on(b.addr, "bob")
            == json!({ dm: 3 })),
        "{}",
        unread_on(b.addr, "bob")
    );
    // Bob reads seq 2 on A (over WebSocket); B sees his cursor.
    let mut bob_a = Client::connect(a.addr, "bob", "phone");
    bob_a.send_json(json!({"type": "read", "channel": dm, "seq": 2}));
    assert!(
        eventually(Duration::from_secs(5), || unread_on(b.addr, "bob")
            == json!({ dm: 1 })),
        "{}",
        unread_on(b.addr, "bob")
    );
    // Alice's own sends moved her cursor, wherever asked.
    assert_eq!(unread_on(b.addr, "alice"), json!({}));
    // Read over HTTP on B, seen on A.
    let (s, _) = http(
        b.addr,
        "POST",
        &format!("/v1/channels/{dm}/read?user=bob"),
        Some(&json!({"seq": 3})),
    );
    assert_eq!(s, 204);
    assert!(
        eventually(Duration::from_secs(5), || unread_on(a.addr, "bob")
            == json!({})),
        "{}",
        unread_on(a.addr, "bob")
    );
    // A message sent on B counts as unread for bob on A.
    let mut alice_b = Client::connect(b.addr, "alice", "laptop");
    alice_b.send_msg(dm, "m3", "again");
    assert!(
        eventually(Duration::from_secs(5), || unread_on(a.addr, "bob")
            == json!({ dm: 1 })),
        "{}",
        unread_on(a.addr, "bob")
    );
}

/// Two processes started with one node id (a copied data directory, a
/// mistyped `--node-id`): the newer one takes the id over, the older one
/// finds at its next heartbeat that the id is no longer its own and exits
/// (code 75) instead of serving sessions whose notices now go elsewhere;
/// the cluster lists the id once, at the newer process's URL.
#[test]
fn a_second_process_with_the_same_node_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("node-id-clash");
    let mut first = node(&cluster, &ns, &dir.path().join("first"), "same");
    let second = node(&cluster, &ns, &dir.path().join("second"), "same");
    let status = eventually_exits(&mut first.proc, Duration::from_secs(10))
        .expect("the older process exits within a heartbeat or two");
    assert_eq!(status.code(), Some(75), "{status:?}");
    let (code, body) = http(second.addr, "GET", "/v1/nodes", None);
    assert_eq!(code, 200, "{body}");
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{body}");
    assert_eq!(nodes[0]["id"], "same");
    assert_eq!(
        nodes[0]["url"],
        format!("ws://{}/ws", second.addr),
        "the newer process holds the record"
    );
    // The newer process goes on serving and renewing.
    std::thread::sleep(Duration::from_secs(3));
    let mut c = Client::connect(second.addr, "u", "d");
    assert_eq!(c.join("room:after-clash", None), 0);
}

fn eventually_exits(
    proc: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if let Some(status) = proc.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
