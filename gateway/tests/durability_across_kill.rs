//! The gateway binary is killed with SIGKILL after acked sends and restarted
//! on the same data dir: every acked message is in history with its seq, and
//! new sends continue at head + 1. A second gateway on the same data dir
//! refuses to start.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;

/// The default: commits through the committer thread, `fsync`.
#[test]
fn every_acked_message_survives_sigkill_and_seqs_continue() {
    acked_messages_survive_sigkill("");
}

/// `buffered`: commits made on the owner's shard, written to the OS before
/// the ack, which is all a process crash needs.
#[test]
fn acked_messages_survive_sigkill_with_buffered_durability() {
    acked_messages_survive_sigkill("[storage]\ndurability = \"buffered\"\n");
}

/// Sends 300 acked and 50 unacked messages, kills the gateway (2 shards,
/// configured by `toml`) with SIGKILL, restarts it on the same directory and
/// checks every acked message is in history at its seq.
fn acked_messages_survive_sigkill(toml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--shards",
        "2",
        "--config",
        config,
    ];
    let gw = Child::spawn("", &args).unwrap();
    let mut c = Client::connect(gw.addr, "alice", "d");
    let mut acked = Vec::new();
    for i in 0..300 {
        c.send_msg_async("room:durable", &format!("m{i}"), &format!("text {i}"));
    }
    for _ in 0..300 {
        let a = c.recv_type("ack");
        acked.push((
            a["seq"].as_u64().unwrap(),
            a["client_msg_id"].as_str().unwrap().to_string(),
        ));
    }
    // Some more in flight when the process dies: unacked ones may or may not survive.
    for i in 300..350 {
        c.send_msg_async("room:durable", &format!("m{i}"), &format!("text {i}"));
    }
    gw.kill9();

    let gw = Child::spawn("", &args).unwrap();
    let mut c = Client::connect(gw.addr, "alice", "d");
    let mut stored = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let h = c.request(
            json!({"type": "history", "channel": "room:durable", "after": after, "limit": 200}),
        );
        let msgs = h["messages"].as_array().unwrap().clone();
        for m in &msgs {
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(seq, after + 1, "history is dense");
            after = seq;
            stored.insert(seq, m["client_msg_id"].as_str().unwrap().to_string());
        }
        if h["has_more"] != true {
            break;
        }
    }
    for (seq, cmid) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(cmid),
            "acked message {cmid} at seq {seq} survived"
        );
    }
    let head = after;
    assert!(head >= 300);
    let next = c.send_msg("room:durable", "fresh", "after restart");
    assert_eq!(next["seq"], head + 1);
    // A retry of an acked message is still recognised after the restart.
    let retry = c.send_msg("room:durable", "m5", "text 5");
    assert_eq!(retry["duplicate"], true);

    // A second gateway on the same data dir refuses to start.
    let second = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--shards",
            "1",
        ],
    );
    let err = second.err().expect("second gateway must not start");
    assert!(err.contains("locked"), "error names the lock: {err}");
}

#[test]
fn sigterm_drains_closes_with_1001_and_exits_cleanly() {
    // SIGTERM drains (the notice and window, shortened here; the defaults
    // are 5 s and 20 s).
    let mut gw = ConfiguredChild::start(
        "[server]\nshards = 1\ndrain_notice_ms = 200\ndrain_window_ms = 500\n",
    );
    let mut c = Client::connect(gw.addr(), "alice", "d");
    c.send_msg("room:bye", "m1", "hi");
    let t0 = std::time::Instant::now();
    gw.child.signal("TERM");
    assert_eq!(c.close_code(), Some(1001));
    let status = gw.child.proc.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}
