//! Browser origins (`allowed_origins`): a page of an origin that is not
//! allowed is refused (403, upgrades included); an allowed one gets CORS
//! headers and its preflights answered; clients that send no `Origin` are
//! not affected.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-origins";

/// One raw HTTP/1.1 request (`Connection: close`); returns the status, the
/// head's lines and the body.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    // A WebSocket (101) or SSE (200) stays open: the head is enough.
    let mut chunk = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut body = body.to_string();
    if !head.starts_with("HTTP/1.1 101") && !head.contains("text/event-stream") {
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        body.push_str(&rest);
    }
    Response {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body,
    }
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

const UPGRADE: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn upgrade(addr: SocketAddr, path: &str, origin: Option<&str>, host: Option<&str>) -> Response {
    let mut h: Vec<(&str, &str)> = UPGRADE.to_vec();
    if let Some(o) = origin {
        h.push(("Origin", o));
    }
    if let Some(host) = host {
        h.push(("Host", host));
    }
    raw(addr, "GET", path, &h)
}

#[test]
fn clients_without_origin_are_not_affected() {
    let tg = start_with(1, |c| {
        c.allowed_origins = vec!["https://app.example.com".into()]
    });
    let addr = tg.addr();
    assert_eq!(upgrade(addr, "/ws?user=a", None, None).status, 101);
    let r = raw(addr, "GET", "/v1/me/unread?user=a", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn an_origin_not_allowed_is_refused_with_403_for_upgrades_api_calls_and_event_streams() {
    let tg = start_with(1, |c| {
        c.allowed_origins = vec!["https://app.example.com".into()]
    });
    let addr = tg.addr();
    let evil = "https://evil.example.com";
    let r = upgrade(addr, "/ws?user=a", Some(evil), None);
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(r.body.contains("allowed_origins"), "{}", r.body);
    let r = raw(addr, "GET", "/v1/me/unread?user=a", &[("Origin", evil)]);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    let r = raw(
        addr,
        "GET",
        "/v1/events?user=a&channels=room:x",
        &[("Origin", evil)],
    );
    assert_eq!(r.status, 403);
    // A sandboxed frame's opaque origin is not allowed unless listed.
    assert_eq!(upgrade(addr, "/ws?user=a", Some("null"), None).status, 403);
    assert_eq!(metric(addr, "gateway_origin_refused_total"), 4.0);
}

#[test]
fn a_listed_origin_gets_cors_headers_and_its_preflights_answered() {
    let app = "https://app.example.com";
    let tg = start_with(1, |c| c.allowed_origins = vec![app.into()]);
    let addr = tg.addr();
    assert_eq!(upgrade(addr, "/ws?user=a", Some(app), None).status, 101);

    let pre = raw(
        addr,
        "OPTIONS",
        "/v1/channels/room:x/messages",
        &[
            ("Origin", app),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
    );
    assert_eq!(pre.status, 204, "{}", pre.head);
    assert_eq!(pre.header("Access-Control-Allow-Origin"), Some(app));
    assert!(pre
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("POST"));
    let allowed_headers = pre.header("Access-Control-Allow-Headers").unwrap();
    assert!(
        allowed_headers.contains("Authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("Content-Type"),
        "{allowed_headers}"
    );
    assert!(pre.header("Access-Control-Max-Age").is_some());

    let r = raw(addr, "GET", "/v1/me/unread?user=a", &[("Origin", app)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(app));
    assert_eq!(r.header("Vary"), Some("Origin"));
    // Errors too, so that the page can read why.
    let r = raw(addr, "GET", "/v1/me/nothing?user=a", &[("Origin", app)]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(app));
    let r = raw(addr, "GET", "/v1/me/unread?user=", &[("Origin", app)]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(app));
    // An EventSource of the page.
    let r = raw(
        addr,
        "GET",
        "/v1/events?user=a&channels=room:x",
        &[("Origin", app)],
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(app));
}

#[test]
fn with_an_empty_list_same_origin_pages_pass_and_loopback_pages_only_in_dev_auth() {
    let dev = start(1);
    let addr = dev.addr();
    let own = format!("http://{addr}");
    assert_eq!(upgrade(addr, "/ws?user=a", Some(&own), None).status, 101);
    assert_eq!(
        upgrade(addr, "/ws?user=a", Some("http://localhost:5173"), None).status,
        101,
        "dev auth: a page on a loopback dev server may connect"
    );
    assert_eq!(
        upgrade(addr, "/ws?user=a", Some("https://elsewhere.example"), None).status,
        403
    );

    let prod = start_with(1, |c| c.auth_secret = Some(SECRET.into()));
    let addr = prod.addr();
    // Same origin passes the origin check and meets the token check.
    let own = format!("http://{addr}");
    assert_eq!(upgrade(addr, "/ws", Some(&own), None).status, 401);
    // Behind a proxy: the page's origin is the public name the proxy
    // forwards as Host.
    assert_eq!(
        upgrade(
            addr,
            "/ws",
            Some("https://chat.example.com"),
            Some("chat.example.com")
        )
        .status,
        401
    );
    assert_eq!(
        upgrade(addr, "/ws", Some("http://localhost:5173"), None).status,
        403,
        "with tokens, loopback pages are like any other"
    );
}

#[test]
fn a_bad_allowed_origins_entry_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 1);
    cfg.allowed_origins = vec!["app.example.com".into()];
    let err = gateway::Gateway::start(cfg).err().unwrap().to_string();
    assert!(err.contains("allowed_origins"), "{err}");
    assert!(err.contains("app.example.com"), "{err}");
}
