//! loadgen over several gateway nodes of one cluster (`--target` with
//! comma-separated URLs, `--store fdb` through the double server):
//! connections spread over the nodes, reconnect to the next one, and the
//! checker finds every message exactly once and in order — also when a node
//! is SIGKILLed and restarted in the middle of a run with churn. Run by
//! `scripts/test-fdb` (`FDB_CLUSTER_FILE`), or starts a double server of its
//! own.

#![cfg(feature = "fdb")]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "loadgen_common/mod.rs"]
mod lg;
mod nodes_common;

use std::time::{Duration, Instant};

use common::{metric, Child};
use lg::{assert_clean, assert_delivered, retry, serial, small};
use loadgen::{Report, RunConfig, ScenarioKind};
use nodes_common::{namespace, node, node_on, shared_cluster};

/// `--target` for `nodes`: their URLs, comma-separated.
fn targets(nodes: &[&Child]) -> String {
    nodes
        .iter()
        .map(|n| format!("ws://{}/ws", n.addr))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `cfg` with its groups created (on the first node).
fn run(mut cfg: RunConfig) -> Report {
    loadgen::groups::prepare(&mut cfg).expect("groups created");
    let started = Instant::now();
    let report = lg::run(&cfg);
    eprintln!(
        "{} over {} took {:.1} s\n{}",
        report.scenario,
        cfg.target,
        started.elapsed().as_secs_f64(),
        report.table()
    );
    report
}

#[test]
fn loadgen_mixed_over_three_nodes_delivers_everything_once_in_order() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("loadgen-mixed");
    let nodes: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&cluster, &ns, &dir.path().join(id), id))
        .collect();
    let mut cfg = small(ScenarioKind::Mixed, nodes[0].addr, 40);
    cfg.target = targets(&nodes.iter().collect::<Vec<_>>());
    let report = run(cfg);
    assert_clean(&report);
    assert!(report.delivered > report.acked, "{}", report.table());
    // Every node served connections (it delivered messages to them).
    for n in &nodes {
        let delivered = metric(n.addr, "gateway_deliveries_total");
        assert!(delivered > 0.0, "node {} delivered nothing", n.addr);
    }
}

#[test]
fn loadgen_with_churn_survives_a_node_killed_and_restarted_mid_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _server) = shared_cluster(dir.path());
    let ns = namespace("loadgen-kill");
    let a = node(&cluster, &ns, &dir.path().join("a"), "a");
    let b = node(&cluster, &ns, &dir.path().join("b"), "b");
    let c = node(&cluster, &ns, &dir.path().join("c"), "c");
    let mut cfg = small(ScenarioKind::Soak, a.addr, 40);
    cfg.target = targets(&[&a, &b, &c]);
    cfg.duration_ms = 5_000;
    cfg.drain_timeout_ms = 30_000;
    let c_addr = c.addr;
    let run = std::thread::spawn(move || run(cfg));

    // Kill C in the send phase, restart it on its port a little later.
    std::thread::sleep(Duration::from_millis(1_500));
    c.kill9();
    std::thread::sleep(Duration::from_millis(1_000));
    let listen = c_addr.to_string();
    let c: Child = retry(Duration::from_secs(10), || {
        node_on(&listen, &cluster, &ns, &dir.path().join("c"), "c")
            .map_err(|e| eprintln!("restart: {e}"))
            .ok()
    })
    .expect("node c restarts on its port");

    let report = run.join().unwrap();
    assert_delivered(&report);
    // The kill closed C's connections; they came back on the next node.
    // Connect errors (to C while it was down) are the only errors; a wrong
    // ack would be a violation.
    assert!(report.counters.disconnects > 0, "{}", report.table());
    assert_eq!(
        report.errors,
        report.counters.connect_errors,
        "{}",
        report.table()
    );
    // The restarted C serves again.
    common::Client::connect(c.addr, "after", "d");
}
