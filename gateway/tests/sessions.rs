//! Session lifecycle: device replacement (4009), idle close (4008),
//! graceful shutdown (1001).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_newer_connection_of_the_same_device_replaces_the_older_with_4009() {
    let tg = start(2);
    let mut old = Client::connect(tg.addr(), "alice", "phone");
    let mut other_device = Client::connect(tg.addr(), "alice", "laptop");
    let mut new = Client::connect(tg.addr(), "alice", "phone");
    assert_eq!(old.close_code(), Some(4009));
    assert_eq!(
        new.request(serde_json::json!({"type":"ping"}))["type"],
        "pong"
    );
    assert_eq!(
        other_device.request(serde_json::json!({"type":"ping"}))["type"],
        "pong",
        "another device of the same user is not replaced"
    );
}

#[test]
fn a_silent_connection_is_closed_with_4008() {
    let tg = start_with(1, |c| c.heartbeat_ms = 300);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    assert_eq!(c.hello["heartbeat_ms"], 300);
    let t0 = Instant::now();
    assert_eq!(c.close_code(), Some(4008));
    assert!(t0.elapsed() >= Duration::from_millis(600));
}

#[test]
fn shutdown_flushes_acks_and_closes_with_1001() {
    let mut tg = start(2);
    let mut a = Client::connect_on_shard(tg.addr(), "alice", 0);
    let mut b = Client::connect_on_shard(tg.addr(), "bob", 1);
    a.join("room:z", None);
    b.send_msg("room:z", "m1", "x");
    let gw = tg.gw.take().unwrap();
    let t0 = Instant::now();
    let h = std::thread::spawn(move || gw.shutdown());
    assert_eq!(a.close_code(), Some(1001));
    assert_eq!(b.close_code(), Some(1001));
    h.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
}
