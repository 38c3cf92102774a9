//! `/readyz` (listening, store healthy, not draining) beside `/healthz`,
//! and the process figures in `/metrics`.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::sync::Arc;
use storage::{EmbeddedConfig, EmbeddedStore, FaultyStore};

#[test]
fn a_running_gateway_is_ready() {
    let tg = start(2);
    let (status, body) = http_get(tg.addr(), "/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"status":"ready"}"#);
}

#[test]
fn a_poisoned_store_makes_the_gateway_unready() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(
        EmbeddedStore::open(&EmbeddedConfig::new(dir.path().join("store"))).unwrap(),
    ));
    let tg = start_with_store(1, store.clone());
    let mut c = Client::connect(tg.addr(), "alice", "d");
    store.faults().poison_next_append();
    assert_eq!(c.send_msg("room:p", "m1", "one")["code"], "unavailable");
    let (status, body) = http_get(tg.addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unhealthy"), "{body}");
}

#[test]
fn metrics_report_memory_cpu_file_descriptors_and_start_time() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let tg = start(1);
    let addr = tg.addr();
    // This test process is the gateway's process.
    let rss = metric(addr, "process_resident_memory_bytes");
    assert!(rss > 1e6, "{rss}");
    assert!(metric(addr, "process_cpu_seconds_total") >= 0.0);
    let fds = metric(addr, "process_open_fds");
    let clients: Vec<Client> = (0..20)
        .map(|i| Client::connect(addr, &format!("u{i}"), "d"))
        .collect();
    let more = metric(addr, "process_open_fds");
    // 20 sockets on each side of the connections, both in this process.
    assert!(more >= fds + 40.0, "{fds} → {more}");
    drop(clients);
    assert!(metric(addr, "process_max_fds") >= more);
    let started = metric(addr, "process_start_time_seconds");
    assert!(
        started <= before + 1.0,
        "the process started before the test body"
    );
    assert!(started > before - 3600.0, "{started} vs {before}");
}
