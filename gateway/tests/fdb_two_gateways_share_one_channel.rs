//! Two gateway processes on one FoundationDB namespace (`--store fdb`):
//! clients of both append to the same channel at once, and every message
//! gets a seq that is dense and unique across both nodes — the loser of each
//! race on the channel head retries on FDB's 1020. Run by `scripts/test-fdb`
//! against an `fdb-double-server` (`FDB_CLUSTER_FILE`), or starts one on a
//! free port itself when none is given.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Child, Client};
use serde_json::json;

/// A double server of this test's own, killed when dropped.
struct DoubleServer(std::process::Child);

impl Drop for DoubleServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cluster file: `FDB_CLUSTER_FILE`, or a double server started here
/// (`FDB_DOUBLE_SERVER`, else `fdb-double-server` next to the gateway
/// binary: `cargo build -p fdb-double` puts it there).
fn shared_cluster(dir: &std::path::Path) -> (String, Option<DoubleServer>) {
    if let Ok(p) = std::env::var("FDB_CLUSTER_FILE") {
        return (p, None);
    }
    let bin = std::env::var_os("FDB_DOUBLE_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("fdb-double-server")
        });
    let file = dir.join("fdb.cluster");
    let mut child = Command::new(&bin)
        .args(["--port", "0", "--cluster-file"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {} ({e}): cargo build -p fdb-double",
                bin.display()
            )
        });
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "{line}");
    (
        file.to_string_lossy().into_owned(),
        Some(DoubleServer(child)),
    )
}

fn gateway(cluster: &str, namespace: &str, data: &std::path::Path) -> Child {
    Child::spawn(
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
            cluster,
            "--fdb-namespace",
            namespace,
        ],
    )
    .unwrap()
}

#[test]
fn two_gateways_on_one_namespace_give_dense_unique_seqs_on_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let namespace = format!("two-gateways-{}", std::process::id());
    let gw1 = gateway(&cluster, &namespace, &dir.path().join("gw1"));
    let gw2 = gateway(&cluster, &namespace, &dir.path().join("gw2"));
    const PER_CLIENT: u64 = 60;

    // Two senders on each node, all on one channel, all at once.
    let senders = [
        (gw1.addr, "alice"),
        (gw2.addr, "bob"),
        (gw1.addr, "carol"),
        (gw2.addr, "dave"),
    ];
    let per_sender: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = senders
            .iter()
            .map(|(addr, user)| {
                s.spawn(move || {
                    let mut c = Client::connect(*addr, user, "d1");
                    c.join("room:shared", None);
                    (0..PER_CLIENT)
                        .map(|i| {
                            let ack =
                                c.send_msg("room:shared", &format!("{user}-{i}"), &format!("{i}"));
                            ack["seq"]
                                .as_u64()
                                .unwrap_or_else(|| panic!("no seq in {ack}"))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for seqs in &per_sender {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let mut all: Vec<u64> = per_sender.concat();
    all.sort_unstable();
    let total = PER_CLIENT * senders.len() as u64;
    assert_eq!(all, (1..=total).collect::<Vec<u64>>(), "dense and unique");

    // Either node's history shows the same 240 messages, in seq order.
    for addr in [gw1.addr, gw2.addr] {
        let mut reader = Client::connect(addr, "erin", "d1");
        let mut seen = Vec::new();
        let mut after = 0;
        while (seen.len() as u64) < total {
            let h = reader.request(
                json!({"type": "history", "channel": "room:shared", "after": after, "limit": 200}),
            );
            let msgs = h["messages"].as_array().unwrap();
            assert!(!msgs.is_empty(), "history ended early at {after}: {h}");
            for m in msgs {
                seen.push(m["seq"].as_u64().unwrap());
            }
            after = *seen.last().unwrap();
        }
        assert_eq!(seen, (1..=total).collect::<Vec<u64>>());
    }
}
