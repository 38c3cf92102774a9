//! `--procs 2` runs two worker processes of the binary and merges their
//! results, including a room whose members live in both processes.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use std::process::Command;

use common::{serial, start_gateway};

#[test]
fn two_workers_share_one_room() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "127.0.0.1:0".parse().unwrap());
    let target = format!("ws://{}/ws", gw.local_addr());
    let out = Command::new(common::loadgen_bin())
        .args([
            "room",
            "--target",
            &target,
            "--connections",
            "40",
            "--senders",
            "4",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--shards",
            "1",
            "--procs",
            "2",
            "--json",
            "--quiet",
        ])
        .output()
        .unwrap();
    gw.shutdown();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit {:?}: {stdout}", out.status);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["scenario"], "room");
    assert_eq!(v["connections"], 40);
    assert_eq!(v["procs"], 2);
    assert_eq!(v["violations"]["lost"], 0);
    assert_eq!(v["violations"]["duplicated"], 0);
    assert_eq!(v["violations"]["reordered"], 0);
    let acked = v["acked"].as_u64().unwrap();
    assert!(acked > 0);
    assert_eq!(v["sent"].as_u64().unwrap(), acked);
    // Every member, in either process, got every message.
    // (The whole result on failure: a member down at the end or a failed
    // exchange between the workers shows there, not in `lost`.)
    assert_eq!(v["delivered"].as_u64().unwrap(), 40 * acked, "{stdout}");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].as_u64().unwrap() > 0);
        assert!(v["ack_latency_us"][key].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_bad_target_exits_with_code_2() {
    let out = Command::new(common::loadgen_bin())
        .args(["dm", "--target", "http://127.0.0.1:1/ws", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ws://"));
}
