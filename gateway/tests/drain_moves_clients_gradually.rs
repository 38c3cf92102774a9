//! A graceful drain (SIGTERM): `/readyz` turns 503 at once while the
//! listener keeps serving for the notice period; then the listener closes
//! and sessions are closed with 1001 spread over the window, each after the
//! acks of its sends; with no connection the drain is over at once.
#![allow(clippy::unwrap_used)]
mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use gateway::Gateway;
use serde_json::{json, Value};
use tungstenite::Message;

/// Reads until the server's close frame; returns its code and when it came.
fn wait_close(c: &mut Client) -> (Option<u16>, Instant) {
    let code = c.close_code();
    (code, Instant::now())
}

#[test]
fn a_drain_keeps_serving_during_the_notice_then_closes_sessions_with_1001_spread_over_the_window() {
    let tg = start_with(2, |c| {
        c.drain_notice_ms = 600;
        c.drain_window_ms = 1_500;
    });
    let addr = tg.addr();
    let mut clients: Vec<Client> = (0..30)
        .map(|i| Client::connect(addr, &format!("u{i}"), "d"))
        .collect();
    let mut tg = tg;
    let gw = tg.gw.take().unwrap();
    gw.begin_drain();
    let t0 = Instant::now();
    let drain = std::thread::spawn(move || {
        gw.shutdown();
        Instant::now()
    });

    // The notice: not ready, yet still serving new clients.
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (status, _) = http_get(addr, "/healthz");
    assert_eq!(status, 200, "alive while draining");
    let mut late = Client::connect(addr, "late", "d");
    assert_eq!(late.send_msg("room:late", "l1", "still served")["seq"], 1);
    assert!(t0.elapsed() < Duration::from_millis(600), "test too slow");
    clients.push(late);

    // Each client waits on its own thread: read one after the other, a late
    // close of the first would hide the early closes of the others.
    let closes: Vec<(Option<u16>, Instant)> = clients
        .into_iter()
        .map(|mut c| std::thread::spawn(move || wait_close(&mut c)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        closes.iter().all(|(code, _)| *code == Some(1001)),
        "{:?}",
        closes.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    let first = closes.iter().map(|c| c.1).min().unwrap();
    let last = closes.iter().map(|c| c.1).max().unwrap();
    assert!(
        first - t0 >= Duration::from_millis(550),
        "no close before the notice is over ({:?})",
        first - t0
    );
    assert!(
        last - first >= Duration::from_millis(700),
        "closes spread over the window, not all at once ({:?})",
        last - first
    );
    assert!(
        last - t0 <= Duration::from_millis(600 + 1_500 + 1_000),
        "{:?}",
        last - t0
    );
    // The listener closed before the window began.
    assert!(std::net::TcpStream::connect(addr).is_err());
    let done = drain.join().unwrap();
    assert!(
        done.saturating_duration_since(last) < Duration::from_millis(1_500),
        "with no connection left the drain is over ({:?} after the last close)",
        done.saturating_duration_since(last)
    );
}

#[test]
fn a_drain_with_no_connection_is_over_at_once() {
    let tg = start_with(2, |c| {
        c.drain_notice_ms = 5_000;
        c.drain_window_ms = 20_000;
    });
    let mut tg = tg;
    let gw = tg.gw.take().unwrap();
    let t0 = Instant::now();
    gw.drain();
    assert!(
        t0.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t0.elapsed()
    );
}

/// One client sending as fast as it can until the server closes it: the
/// `client_msg_id`s it got acks for, the ones it sent without an ack, and
/// the close code.
fn send_until_closed(mut c: Client, user: &str) -> (BTreeSet<String>, Vec<String>, Option<u16>) {
    c.ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let mut can_send = true;
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        assert!(Instant::now() < deadline, "no close frame");
        if can_send && pending.len() < 64 {
            for _ in 0..8 {
                next += 1;
                let cmid = format!("{user}-{next}");
                let req = json!({"id": next, "type": "send", "channel": "room:drain",
                                 "client_msg_id": cmid, "text": "x"});
                if c.ws.send(Message::text(req.to_string())).is_err() {
                    can_send = false;
                    break;
                }
                pending.insert(next, cmid);
            }
        }
        match c.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ack" {
                    let id = v["id"].as_u64().unwrap();
                    acked.insert(pending.remove(&id).unwrap());
                } else if v["type"] == "error" {
                    panic!("{v}");
                }
            }
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed before the close: {e}"),
        }
    };
    (acked, pending.into_values().collect(), code)
}

/// Every message of `room:drain` by `client_msg_id`, read through the HTTP
/// API.
fn history(addr: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = http(
            addr,
            "GET",
            &format!("/v1/channels/room:drain/messages?user=reader&after={after}&limit=100"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        let msgs = page["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            return out;
        }
        for m in &msgs {
            after = after.max(m["seq"].as_u64().unwrap());
            out.push(m["client_msg_id"].as_str().unwrap().to_string());
        }
    }
}

#[test]
fn sends_read_before_the_close_are_acked_first_and_a_replacement_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 2);
    cfg.drain_notice_ms = 0;
    cfg.drain_window_ms = 400;
    let gw = Gateway::start(cfg.clone()).unwrap();
    let addr = gw.local_addr();
    let senders: Vec<_> = (0..6)
        .map(|i| {
            let user = format!("u{i}");
            let c = Client::connect(addr, &user, "d");
            std::thread::spawn(move || send_until_closed(c, &user))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    gw.drain();
    let results: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let mut acked = BTreeSet::new();
    let mut unacked = Vec::new();
    for (a, u, code) in results {
        assert_eq!(code, Some(1001));
        acked.extend(a);
        unacked.extend(u);
    }
    assert!(acked.len() > 100, "the clients were busy: {}", acked.len());

    // The replacement: same data directory, same address.
    cfg.listen = addr;
    let gw = Gateway::start(cfg).unwrap();
    let stored = history(addr);
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "no message stored twice");
    assert_eq!(
        stored_set, acked,
        "every acked send is stored, and nothing was stored without its ack"
    );
    // The clients resume: their unacked sends are retried, once each.
    let mut c = Client::connect(addr, "u0", "retry");
    for cmid in &unacked {
        let user = cmid.split('-').next().unwrap();
        let (status, ack) = http(
            addr,
            "POST",
            &format!("/v1/channels/room:drain/messages?user={user}&device=d"),
            Some(&json!({"client_msg_id": cmid, "text": "x"})),
        );
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["duplicate"], false, "{cmid} was not stored before");
    }
    let after = history(addr);
    assert_eq!(after.len(), acked.len() + unacked.len());
    assert_eq!(
        after.iter().collect::<BTreeSet<_>>().len(),
        after.len(),
        "no duplicate after the retries"
    );
    c.send_msg("room:drain", "after", "bye");
    gw.shutdown();
}
