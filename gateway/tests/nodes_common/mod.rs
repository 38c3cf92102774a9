//! Test helpers for several gateway nodes on one FoundationDB namespace:
//! the double server (or `FDB_CLUSTER_FILE`), gateway processes started
//! with `--store fdb`, and the node list they serve. Used beside
//! `common/mod.rs`, which provides the WebSocket client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{http, Child};

/// A double server of this test's own, killed when dropped.
pub struct DoubleServer(std::process::Child);

impl Drop for DoubleServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `fdb-double-server` binary: `FDB_DOUBLE_SERVER`, else next to the
/// gateway binary (`cargo build -p fdb-double`).
pub fn double_server_bin() -> PathBuf {
    std::env::var_os("FDB_DOUBLE_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("fdb-double-server")
        })
}

/// The cluster file: `FDB_CLUSTER_FILE`, or a double server started here.
pub fn shared_cluster(dir: &Path) -> (String, Option<DoubleServer>) {
    if let Ok(p) = std::env::var("FDB_CLUSTER_FILE") {
        return (p, None);
    }
    let bin = double_server_bin();
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

/// A gateway process with two shards on `--store fdb`, node id `id`.
pub fn node(cluster: &str, namespace: &str, data: &Path, id: &str) -> Child {
    node_on("127.0.0.1:0", cluster, namespace, data, id).unwrap()
}

/// [`node`] on `listen` (a node restarted on its old port); an error when
/// it does not start.
pub fn node_on(
    listen: &str,
    cluster: &str,
    namespace: &str,
    data: &Path,
    id: &str,
) -> Result<Child, String> {
    Child::spawn("", &node_args(listen, cluster, namespace, data, id, &[]))
}

/// A node's command line: two shards on `--store fdb`, then `extra`.
fn node_args<'a>(
    listen: &'a str,
    cluster: &'a str,
    namespace: &'a str,
    data: &'a Path,
    id: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--listen",
        listen,
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
        "--node-id",
        id,
    ];
    args.extend_from_slice(extra);
    args
}

/// The double server's counters (`fdb-double-server stats`): transactions,
/// commits, conflicts, reads, mutations, bytes (`Null` when `cluster` is
/// not a double's).
pub fn double_stats(cluster: &str) -> serde_json::Value {
    let out = Command::new(double_server_bin())
        .args(["stats", "--cluster-file", cluster])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A namespace of this test process's own.
pub fn namespace(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The ids `GET /v1/nodes` lists on `addr`, sorted.
pub fn listed(addr: SocketAddr) -> Vec<String> {
    let (status, body) = http(addr, "GET", "/v1/nodes", None);
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// [`node`] with a config file holding `toml` (e.g. a short presence
/// debounce or lease), written next to the node's data directory.
pub fn node_configured(cluster: &str, namespace: &str, data: &Path, id: &str, toml: &str) -> Child {
    std::fs::create_dir_all(data).unwrap();
    let cfg = data.join("gateway.toml");
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.to_str().unwrap();
    Child::spawn(
        "",
        &node_args(
            "127.0.0.1:0",
            cluster,
            namespace,
            data,
            id,
            &["--config", cfg],
        ),
    )
    .unwrap()
}
