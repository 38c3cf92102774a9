//! HTTP/1.1 keep-alive on the `/v1` API: several calls (pipelined too) on
//! one connection, `Connection: close` honoured, idle connections closed
//! after `http_idle_timeout_ms`, 0 turns keep-alive off.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn request(method: &str, path: &str, extra: &str, body: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn write(&mut self, bytes: &str) {
        self.s.write_all(bytes.as_bytes()).unwrap();
    }

    /// One response (head, then `Content-Length` bytes of body).
    fn response(&mut self) -> Resp {
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before a response");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let mut r = Resp {
            status: head[9..12].parse().unwrap(),
            head,
            body: String::new(),
        };
        let len: usize = r.header("Content-Length").map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < end + len {
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed inside a body");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        r.body = String::from_utf8(self.buf[end..end + len].to_vec()).unwrap();
        self.buf.drain(..end + len);
        r
    }

    /// Whether the server closed the connection (EOF) within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}

#[test]
fn several_calls_share_one_connection_pipelined_ones_in_order() {
    let tg = start(2);
    let mut c = Conn::open(tg.addr());
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    assert_eq!(r.header("Keep-Alive"), Some("timeout=30"));
    // Two sends and a read in one write: three answers, in order.
    let send = |cmid: &str| {
        Conn::request(
            "POST",
            "/v1/channels/room:ka/messages?user=alice&device=api",
            "",
            &format!(r#"{{"client_msg_id":"{cmid}","text":"hi"}}"#),
        )
    };
    c.write(&format!(
        "{}{}{}",
        send("k1"),
        send("k2"),
        Conn::request("GET", "/v1/channels/room:ka/messages?user=alice", "", "")
    ));
    let a1: serde_json::Value = serde_json::from_str(&c.response().body).unwrap();
    let a2: serde_json::Value = serde_json::from_str(&c.response().body).unwrap();
    assert_eq!((a1["seq"].as_u64(), a2["seq"].as_u64()), (Some(1), Some(2)));
    let page: serde_json::Value = serde_json::from_str(&c.response().body).unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    // Errors keep the connection too.
    c.write(&Conn::request("GET", "/v1/nothing?user=alice", "", ""));
    assert_eq!(c.response().status, 404);
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    assert_eq!(c.response().status, 200);
}

#[test]
fn connection_close_is_honoured_and_http_1_0_closes_by_default() {
    let tg = start(1);
    let mut c = Conn::open(tg.addr());
    c.write(&Conn::request(
        "GET",
        "/v1/me/unread?user=alice",
        "Connection: close\r\n",
        "",
    ));
    let r = c.response();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));

    let mut c = Conn::open(tg.addr());
    c.write("GET /v1/me/unread?user=alice HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().header("Connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let tg = start_with(1, |c| c.http_idle_timeout_ms = 300);
    let mut c = Conn::open(tg.addr());
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    assert_eq!(c.response().header("Keep-Alive"), Some("timeout=1"));
    let t0 = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)));
    let idle = t0.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
}

#[test]
fn a_zero_idle_timeout_turns_keep_alive_off() {
    let tg = start_with(1, |c| c.http_idle_timeout_ms = 0);
    let mut c = Conn::open(tg.addr());
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    assert_eq!(c.response().header("Connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn answers_once_a_drain_began_close_the_connection() {
    let mut tg = start_with(1, |c| {
        c.drain_notice_ms = 2_000;
        c.drain_window_ms = 0;
    });
    let addr = tg.addr();
    let mut c = Conn::open(addr);
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    assert_eq!(c.response().header("Connection"), Some("keep-alive"));
    let gw = tg.gw.take().unwrap();
    gw.begin_drain();
    let stop = std::thread::spawn(move || gw.shutdown());
    c.write(&Conn::request("GET", "/v1/me/unread?user=alice", "", ""));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));
    stop.join().unwrap();
}
