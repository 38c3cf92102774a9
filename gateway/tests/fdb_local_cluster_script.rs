//! `scripts/local-cluster` starts a double server and N gateway nodes,
//! prints `node <id> pid <pid> url <url>` per node and `ready`; the ids are
//! what the nodes say, the pids are the gateway processes (killing one
//! fails that node), the nodes share messages, and SIGTERM stops
//! everything. Uses the binaries of this build (`--bin-dir`): the script's
//! own release build is too slow for a test. Run by `scripts/test-fdb`.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
mod nodes_common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Client};
use nodes_common::listed;

fn alive(pid: u32) -> bool {
    // Not a zombie either: the script reaps what it started.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

#[test]
fn local_cluster_prints_its_nodes_then_ready_and_sigterm_stops_everything() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gateway")).parent().unwrap();
    if !bin_dir.join("libfdb_c.so").exists() || !bin_dir.join("fdb-double-server").exists() {
        eprintln!("skipped: no libfdb_c.so / fdb-double-server in {bin_dir:?} (cargo build -p fdb-double)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-cluster");
    let mut cluster = Command::new(script)
        .args(["--nodes", "3", "--dir"])
        .arg(dir.path())
        .arg("--bin-dir")
        .arg(bin_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cluster.stdout.take().unwrap()).lines();
    let mut nodes: Vec<(String, u32, SocketAddr)> = Vec::new();
    loop {
        let line = lines.next().expect("a line before ready").unwrap();
        if line == "ready" {
            break;
        }
        let f: Vec<&str> = line.split(' ').collect();
        assert!(
            f.len() == 6 && f[0] == "node" && f[2] == "pid" && f[4] == "url",
            "{line}"
        );
        let addr = f[5]
            .strip_prefix("ws://")
            .and_then(|r| r.strip_suffix("/ws"))
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        assert!(f[5].starts_with("ws://127.0.0.1:"), "{line}");
        nodes.push((f[1].to_owned(), f[3].parse().unwrap(), addr));
    }
    assert_eq!(nodes.len(), 3);

    // The ids are the nodes' own; the pids are gateway processes.
    let mut ids: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
    ids.sort();
    for (id, pid, addr) in &nodes {
        let hello = Client::connect(*addr, "alice", "d").hello;
        assert_eq!(hello["node"].as_str(), Some(id.as_str()), "{hello}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe.file_name().unwrap(), "gateway", "{exe:?}");
        assert!(
            eventually(Duration::from_secs(5), || listed(*addr) == ids),
            "{:?}",
            listed(*addr)
        );
    }
    // They are one cluster: a message sent on one node reaches another.
    let mut reader = Client::connect(nodes[1].2, "reader", "d");
    reader.join("room:local", None);
    let mut sender = Client::connect(nodes[0].2, "sender", "d");
    sender.send_msg("room:local", "m1", "across");
    assert_eq!(reader.msgs("room:local", 1)[0]["text"], "across");

    // SIGKILL of a node's pid fails that node alone.
    let (dead_id, dead_pid, _) = nodes[2].clone();
    assert!(Command::new("kill")
        .args(["-9", &dead_pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        eventually(Duration::from_secs(10), || !listed(nodes[0].2)
            .contains(&dead_id)),
        "{:?}",
        listed(nodes[0].2)
    );
    assert!(
        cluster.try_wait().unwrap().is_none(),
        "the script keeps running"
    );

    // SIGTERM stops the script and everything it started.
    assert!(Command::new("kill")
        .args(["-TERM", &cluster.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = cluster.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for (id, pid, _) in &nodes {
        assert!(!alive(*pid), "{id} (pid {pid}) still runs");
    }
    let server = std::fs::read_to_string(dir.path().join("double.log")).unwrap();
    assert!(server.contains("listening on"), "{server}");
    assert!(
        std::net::TcpStream::connect(
            std::fs::read_to_string(dir.path().join("fdb.cluster"))
                .unwrap()
                .trim()
                .rsplit('@')
                .next()
                .unwrap()
        )
        .is_err(),
        "the double server is stopped"
    );
}
