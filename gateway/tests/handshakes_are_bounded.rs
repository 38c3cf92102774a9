//! The request head before a WebSocket upgrade, on both ways a shard
//! serves sockets — the socket ring, which accepts and answers the upgrade
//! itself (`socket_ring = true`, the default, `gateway/src/ring/accept.rs`),
//! and the listener's task (`socket_ring = false`, `listener.rs`): a head
//! that arrives in pieces with frames right behind it, a head past the
//! limit (431), a malformed one (400), a head never finished (closed at the
//! handshake timeout, its connection slot freed), and an HTTP call kept
//! alive and then upgraded on the same connection.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn both(check: impl Fn(bool)) {
    for ring in [true, false] {
        check(ring);
    }
}

fn upgrade_request(user: &str) -> String {
    format!(
        "GET /ws?user={user}&device=d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads a response head byte by byte (nothing past it is consumed).
fn response_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed inside a response head: {head:?}");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The status of the response the server writes before closing.
fn status_then_close(mut s: TcpStream) -> (u16, String) {
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.len() >= 12, "no response: {out:?}");
    (out[9..12].parse().unwrap(), out)
}

/// Continues a socket whose 101 was read as a WebSocket client.
fn as_client(s: TcpStream) -> Client {
    let ws = tungstenite::WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    Client::from_ws(ws)
}

fn start_driver(ring: bool, tweak: impl FnOnce(&mut gateway::Config)) -> TestGateway {
    start_with(1, |c| {
        c.socket_ring = ring;
        tweak(c);
    })
}

#[test]
fn an_upgrade_written_in_pieces_with_a_join_right_behind_it_is_answered_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, |_| {});
        let mut s = open(tg.addr());
        let request = upgrade_request("alice");
        let join = pipelined([json!({"type": "join", "channel": "room:pieces", "id": 7})]);
        // Four pieces, the last one carrying the join frame after the head.
        let bytes = request.as_bytes();
        let cuts = [0, 5, 40, bytes.len() - 3, bytes.len()];
        for w in cuts.windows(2) {
            let mut piece = bytes[w[0]..w[1]].to_vec();
            if w[1] == bytes.len() {
                piece.extend_from_slice(&join);
            }
            s.write_all(&piece).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let head = response_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "ring={ring}: {head}");
        let mut c = as_client(s);
        assert_eq!(c.hello["user"], "alice");
        let joined = c.reply_to(7);
        assert_eq!(joined["type"], "joined", "ring={ring}: {joined}");
        c.send_msg("room:pieces", "m1", "after a slow head");
        assert_seqs(&c.msgs("room:pieces", 1), 1, 1);
        // The ring answered it itself (not a fallback through the listener).
        let on_ring = metric(tg.addr(), "gateway_ring_upgrades_total");
        assert_eq!(on_ring, if ring { 1.0 } else { 0.0 }, "ring={ring}");
    });
}

#[test]
fn a_head_past_the_limit_gets_431_and_a_malformed_one_400_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, |c| c.max_request_head_bytes = 1024);
        let addr = tg.addr();
        let mut s = open(addr);
        let long = format!(
            "GET /ws?user=a HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
            "f".repeat(2000)
        );
        s.write_all(long.as_bytes()).unwrap();
        let (status, out) = status_then_close(s);
        assert_eq!(status, 431, "ring={ring}: {out}");
        assert!(out.contains("request head too large"), "{out}");

        let mut s = open(addr);
        s.write_all(b"GET /ws HTTP/1.1\r\nHost x\r\n\r\n").unwrap();
        let (status, out) = status_then_close(s);
        assert_eq!(status, 400, "ring={ring}: {out}");

        // A plain GET of /ws is not an upgrade.
        let mut s = open(addr);
        s.write_all(b"GET /ws?user=a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (status, out) = status_then_close(s);
        assert_eq!(status, 400, "ring={ring}: {out}");
        assert!(out.contains("expected a WebSocket upgrade"), "{out}");

        // And clients that came right still get in.
        let mut c = Client::connect(addr, "bob", "d");
        c.join("room:ok", None);
    });
}

#[test]
fn a_head_never_finished_is_closed_at_the_handshake_timeout_and_frees_its_slot_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, |c| c.handshake_timeout_ms = 300);
        let addr = tg.addr();
        let started = Instant::now();
        let mut half = open(addr);
        half.write_all(b"GET /ws?user=a HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let silent = open(addr);
        for mut s in [half, silent] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(n) => panic!("ring={ring}: expected a close, got {:?}", &b[..n]),
                Err(e) => panic!("ring={ring}: not closed within 5 s ({e})"),
            }
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "ring={ring}: closed before the timeout ({took:?})"
        );
        assert!(
            eventually(TIMEOUT, || tg.gw().stats().connections == 0),
            "ring={ring}: the connections were not freed"
        );
        let mut c = Client::connect(addr, "bob", "d");
        c.join("room:ok", None);
    });
}

#[test]
fn an_http_call_kept_alive_then_upgraded_on_the_same_connection_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, |_| {});
        let mut s = open(tg.addr());
        s.write_all(b"GET /v1/me/unread?user=alice HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let head = response_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "ring={ring}: {head}");
        assert!(head.contains("Connection: keep-alive"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        s.write_all(upgrade_request("alice").as_bytes()).unwrap();
        let head = response_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "ring={ring}: {head}");
        let mut c = as_client(s);
        c.join("room:kept", None);
        c.send_msg("room:kept", "m1", "upgraded after a call");
        assert_seqs(&c.msgs("room:kept", 1), 1, 1);
        // The listener's HTTP path served the call and the upgrade; the
        // ring adopted the session from its stream.
        assert_eq!(tg.gw().stats().ring_upgrades, 0, "ring={ring}");
    });
}
