//! `read` pushes across gateway nodes on one FoundationDB namespace
//! (`--store fdb`, the double server): a member's read cursor moving on one
//! node reaches every connection of the other members of the DM or group,
//! on every node — as on one node (docs/protocol.md: the reader's own
//! devices are not told); never stored in history. Run by
//! `scripts/test-fdb` (`FDB_CLUSTER_FILE`), or starts a double server of
//! its own.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
mod nodes_common;

use std::time::Duration;

use common::Client;
use nodes_common::{namespace, node_configured, shared_cluster};
use serde_json::{json, Value};

/// The presence debounce the nodes run with.
const DEBOUNCE: Duration = Duration::from_millis(500);

const DM: &str = "dm:alice:bob";

fn config() -> String {
    format!("[presence]\ndebounce_ms = {}\n", DEBOUNCE.as_millis())
}

fn read_of(c: &mut Client, channel: &str, user: &str, seq: u64) -> Value {
    let (channel, user) = (channel.to_owned(), user.to_owned());
    c.recv_matching(move |v| {
        v["type"] == "read"
            && v["channel"] == channel.as_str()
            && v["user"] == user.as_str()
            && v["seq"] == seq
    })
}

fn no_read_now(c: &mut Client) -> Option<Value> {
    c.recv_matching_now(|v| v["type"] == "read")
}

/// Waits until a `presence` query on `c` lists `users` (sorted): those on
/// other nodes are there once their node recorded them (`Cluster::online`
/// reads the records a read push looks its members up in).
fn until_online(c: &mut Client, channel: &str, users: &[&str]) {
    let want: Vec<Value> = users.iter().map(|&u| json!(u)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.request(json!({"type": "presence", "channel": channel}));
        if r["online"].as_array() == Some(&want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dm_read_on_one_node_reaches_the_other_members_devices_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("read-nodes-dm");
    let a = node_configured(&cluster, &ns, &dir.path().join("a"), "a", &config());
    let b = node_configured(&cluster, &ns, &dir.path().join("b"), "b", &config());

    // The DM holds a message (so it counts for presence); alice's setup
    // device's transitions are over before the test's devices come.
    let mut setup = Client::connect(a.addr, "alice", "setup");
    assert_eq!(setup.send_msg(DM, "m1", "hi bob")["seq"], 1);
    setup.close();
    std::thread::sleep(DEBOUNCE + Duration::from_millis(1_500));

    // Alice has a phone on A and a laptop on B; bob is on B.
    let mut phone = Client::connect(a.addr, "alice", "phone");
    let mut bob = Client::connect(b.addr, "bob", "d");
    until_online(&mut phone, DM, &["alice", "bob"]);
    until_online(&mut bob, DM, &["alice", "bob"]);
    let mut laptop = Client::connect(b.addr, "alice", "laptop");
    assert_eq!(bob.send_msg(DM, "b1", "hello alice")["seq"], 2);

    // Alice reads on A: bob, on B, is told; her own devices are not (the
    // protocol tells the other members only).
    phone.send_json(json!({"type": "read", "channel": DM, "seq": 2}));
    let r = read_of(&mut bob, DM, "alice", 2);
    assert_eq!(
        r,
        json!({"type": "read", "channel": DM, "user": "alice", "seq": 2})
    );
    assert_eq!(no_read_now(&mut laptop), None, "the reader's device on B");
    assert_eq!(no_read_now(&mut phone), None, "the reader's own connection");
    assert_eq!(no_read_now(&mut bob), None, "one push");

    // Bob reads on B: alice's laptop beside him and her phone on A are told.
    assert_eq!(phone.send_msg(DM, "a2", "seen?")["seq"], 3);
    bob.send_json(json!({"type": "read", "channel": DM, "seq": 3}));
    for c in [&mut laptop, &mut phone] {
        let r = read_of(c, DM, "bob", 3);
        assert_eq!(
            r,
            json!({"type": "read", "channel": DM, "user": "bob", "seq": 3})
        );
    }
    assert_eq!(no_read_now(&mut phone), None, "one push");

    // Not stored: the history holds the three messages only.
    let h = bob.request(json!({"type": "history", "channel": DM}));
    assert_eq!(h["messages"].as_array().unwrap().len(), 3, "{h}");
}

#[test]
fn a_group_read_reaches_the_other_members_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("read-nodes-group");
    let a = node_configured(&cluster, &ns, &dir.path().join("a"), "a", &config());
    let b = node_configured(&cluster, &ns, &dir.path().join("b"), "b", &config());
    let (s, body) = common::http(
        a.addr,
        "POST",
        "/v1/groups?user=carol",
        Some(&json!({"members": ["alice", "bob"]})),
    );
    assert_eq!(s, 201, "{body}");
    let group = body["channel"].as_str().unwrap().to_string();

    // Alice and carol's phone on A, bob and carol's laptop on B (B's
    // records seen from A before carol comes to A too).
    let mut alice = Client::connect(a.addr, "alice", "phone");
    let mut bob = Client::connect(b.addr, "bob", "d");
    let mut carol_b = Client::connect(b.addr, "carol", "laptop");
    until_online(&mut alice, &group, &["alice", "bob", "carol"]);
    let mut carol = Client::connect(a.addr, "carol", "phone");
    assert_eq!(bob.send_msg(&group, "b1", "hi all")["seq"], 1);

    // Alice reads on A: carol beside her, bob and carol's laptop on B.
    alice.send_json(json!({"type": "read", "channel": group, "seq": 1}));
    for c in [&mut carol, &mut bob, &mut carol_b] {
        let r = read_of(c, &group, "alice", 1);
        assert_eq!(
            r,
            json!({"type": "read", "channel": group, "user": "alice", "seq": 1})
        );
    }
    assert_eq!(no_read_now(&mut alice), None, "the reader is not told");
    assert_eq!(no_read_now(&mut carol_b), None, "one push");
}
