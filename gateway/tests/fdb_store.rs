//! The gateway binary on the FoundationDB store (`--store fdb`): built with
//! the `fdb` feature and run by `scripts/test-fdb` against the libfdb_c test
//! double (or a real cluster with `FDB_CLUSTER_FILE`).

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_seqs, http, Child, Client};
use serde_json::json;

/// The cluster file: `FDB_CLUSTER_FILE` (a real cluster or a double server),
/// or an in-process database of the double (no coordinator named).
fn cluster_file(dir: &std::path::Path) -> String {
    match std::env::var("FDB_CLUSTER_FILE") {
        Ok(p) => p,
        Err(_) => {
            let p = dir.join("fdb.cluster");
            std::fs::write(&p, "double:in-process\n").unwrap();
            p.to_string_lossy().into_owned()
        }
    }
}

#[test]
fn the_gateway_runs_on_foundationdb_store_before_deliver_history_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_file(dir.path());
    let data = dir.path().join("data");
    let namespace = format!("gw-test-{}", std::process::id());
    let gw = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--shards",
            "2",
            "--store",
            "fdb",
            "--fdb-cluster-file",
            &cluster,
            "--fdb-namespace",
            &namespace,
        ],
    )
    .unwrap();

    let mut alice = Client::connect(gw.addr, "alice", "d1");
    let mut bob = Client::connect(gw.addr, "bob", "d1");
    alice.join("room:fdb", None);
    bob.join("room:fdb", None);
    for i in 0..50 {
        let ack = alice.send_msg("room:fdb", &format!("m{i}"), &format!("hello {i}"));
        assert_eq!(ack["seq"], i + 1, "{ack}");
    }
    let got = bob.msgs("room:fdb", 50);
    assert_seqs(&got, 1, 50);

    // A retry of an acked message is a duplicate with the original seq.
    let retry = alice.send_msg("room:fdb", "m7", "hello 7");
    assert_eq!(
        (retry["seq"].as_u64(), retry["duplicate"].as_bool()),
        (Some(8), Some(true))
    );

    // History pages come from FoundationDB.
    let h =
        bob.request(json!({"type": "history", "channel": "room:fdb", "after": 40, "limit": 100}));
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 10, "{h}");
    assert_eq!(msgs[0]["seq"], 41);
    assert_eq!(msgs[9]["text"], "hello 49");

    // Groups are created and gated through the store too.
    let (status, g) = http(
        gw.addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bob"]})),
    );
    assert_eq!(status, 201, "{g}");
    let channel = g["channel"].as_str().unwrap().to_string();
    alice.join(&channel, None);
    bob.join(&channel, None);
    let mut carol = Client::connect(gw.addr, "carol", "d1");
    let refused = carol.request(json!({"type": "join", "channel": channel}));
    assert_eq!(refused["code"], "not_member", "{refused}");
    let ack = alice.send_msg(&channel, "g1", "to the group");
    assert_eq!(ack["seq"], 1, "{ack}");
    assert_eq!(bob.msgs(&channel, 1)[0]["text"], "to the group");
}
