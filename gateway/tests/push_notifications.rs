//! Push for offline members: a DM or group message to a member with no
//! online device goes to the webhook as JSON, coalesced per user, retried,
//! and recorded as a dead letter after the last attempt.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A real local HTTP receiver answering every POST with `status`.
fn receiver(status: u16) -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = tx.send(serde_json::from_slice(&body).unwrap());
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, rx)
}

#[test]
fn an_offline_member_is_pushed_once_for_a_burst_and_online_ones_are_not() {
    let (url, rx) = receiver(200);
    let tg = start_with(2, |c| {
        c.push_webhook = Some(url);
        c.push_coalesce_ms = 300;
    });
    let mut alice = Client::connect(tg.addr(), "alice", "d");
    for i in 0..3 {
        alice.send_msg("dm:alice:bob", &format!("m{i}"), &format!("hello {i}"));
    }
    let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(job["user"], "bob");
    let n = job["notifications"].as_array().unwrap();
    assert_eq!(n.len(), 3, "coalesced: {job}");
    assert_eq!(n[0]["channel"], "dm:alice:bob");
    assert_eq!(n[0]["from"], "alice");
    assert_eq!(n[2]["preview"], "hello 2");
    // Bob online: no push for him.
    let _bob = Client::connect(tg.addr(), "bob", "d");
    std::thread::sleep(Duration::from_millis(200));
    alice.send_msg("dm:alice:bob", "m9", "while online");
    assert!(rx.recv_timeout(Duration::from_millis(2500)).is_err());
    assert_eq!(tg.gw().stats().push_sent, 1);
}

#[test]
fn a_failing_webhook_is_retried_then_dead_lettered() {
    let (url, rx) = receiver(500);
    let tg = start_with(1, |c| {
        c.push_webhook = Some(url);
        c.push_coalesce_ms = 100;
        c.push_max_attempts = 2;
    });
    let mut alice = Client::connect(tg.addr(), "alice", "d");
    alice.send_msg("dm:alice:carol", "m1", "are you there");
    for _ in 0..2 {
        let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(job["user"], "carol");
    }
    let path = tg.dir.path().join("push-dead-letter.jsonl");
    let t0 = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no dead letter written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&path).unwrap();
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(rec["job"]["user"], "carol");
    assert_eq!(rec["job"]["attempts"], 2);
    assert_eq!(tg.gw().stats().push_dead, 1);
}
