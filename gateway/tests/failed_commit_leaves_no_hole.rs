//! A failed commit answers its senders `unavailable`; later sends get dense
//! seqs with no hole.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::sync::Arc;
use storage::{EmbeddedConfig, EmbeddedStore, FaultyStore};

#[test]
fn failed_commit_answers_unavailable_and_seqs_stay_dense() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(
        EmbeddedStore::open(&EmbeddedConfig::new(dir.path().join("store"))).unwrap(),
    ));
    let tg = start_with_store(2, store.clone());
    let mut c = Client::connect(tg.addr(), "alice", "d");
    let mut r = Client::connect(tg.addr(), "bob", "d");
    r.join("room:faults", None);

    assert_eq!(c.send_msg("room:faults", "m1", "one")["seq"], 1);
    store.faults().fail_next_appends(1);
    let failed = c.send_msg("room:faults", "m2", "two");
    assert_eq!(failed["type"], "error");
    assert_eq!(failed["code"], "unavailable");

    // The retry of the failed message and a new one continue at 2, 3.
    let retry = c.send_msg("room:faults", "m2", "two");
    assert_eq!(retry["seq"], 2);
    assert_eq!(retry["duplicate"], false);
    assert_eq!(c.send_msg("room:faults", "m3", "three")["seq"], 3);

    // The reader saw 1, 2, 3 and nothing of the failed attempt.
    let msgs = r.msgs("room:faults", 3);
    assert_seqs(&msgs, 1, 3);
    assert_eq!(msgs[1]["text"], "two");
}

#[test]
fn poisoned_store_refuses_sends_and_reports_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(
        EmbeddedStore::open(&EmbeddedConfig::new(dir.path().join("store"))).unwrap(),
    ));
    let tg = start_with_store(1, store.clone());
    let mut c = Client::connect(tg.addr(), "alice", "d");
    store.faults().poison_next_append();
    let r = c.send_msg("room:p", "m1", "one");
    assert_eq!(r["code"], "unavailable");
    let r = c.send_msg("room:p", "m2", "two");
    assert_eq!(r["code"], "unavailable", "a poisoned store keeps refusing");
    let (status, body) = http_get(tg.addr(), "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unhealthy"));
}
