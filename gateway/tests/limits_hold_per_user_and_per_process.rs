//! Limits that hold per user (across connections, reconnects and HTTP
//! calls), caps on groups, the start-up refusals (a short auth secret, an
//! address already served). Every case here was demonstrated against an
//! earlier build (issue 11).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

/// The rate limit is the user's: HTTP calls and reconnects draw from the
/// same bucket instead of starting full.
#[test]
fn rate_limits_are_per_user_across_connections_and_http_calls() {
    let gw = ConfiguredChild::start(
        "shards = 1\nrate_limit_per_sec = 1.0\nrate_limit_burst = 3\nrate_limit_close_after = 1000\n",
    );
    let addr = gw.addr();
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..100 {
        let (s, b) = http(
            addr,
            "POST",
            "/v1/channels/room:r/messages?user=alice",
            Some(&json!({"client_msg_id": format!("h{i}"), "text": "hi"})),
        );
        match s {
            200 => ok += 1,
            429 => {
                assert_eq!(b["code"], "rate_limited");
                limited += 1;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert!(
        ok <= 5,
        "{ok} of 100 HTTP sends passed a 1/s limit (burst 3)"
    );
    assert_eq!(ok + limited, 100);
    // A new WebSocket connection of the same user does not get a new bucket.
    let mut c = Client::connect(addr, "alice", "phone");
    let r = c.send_msg("room:r", "w1", "hi");
    assert_eq!(r["code"], "rate_limited", "{r}");
    // Another user is not affected.
    let mut bob = Client::connect(addr, "bob", "phone");
    assert_eq!(bob.send_msg("room:r", "b1", "hi")["type"], "ack");
}

/// `max_group_members` holds on every add, not only at creation (403
/// `forbidden`, the limit named), and concurrent adds cannot pass it.
#[test]
fn group_size_cap_holds_on_every_add() {
    let gw = ConfiguredChild::start("shards = 2\nmax_group_members = 3\n");
    let addr = gw.addr();
    let (s, b) = http(
        addr,
        "POST",
        "/v1/groups?user=alice",
        Some(&json!({"members": ["bob", "carol"]})),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["channel"]
        .as_str()
        .unwrap()
        .strip_prefix("group:")
        .unwrap()
        .to_string();
    let (s, b) = http(
        addr,
        "POST",
        &format!("/v1/groups/{id}/members?user=alice"),
        Some(&json!({"user": "dave"})),
    );
    assert_eq!((s, b["code"].as_str().unwrap()), (403, "forbidden"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("max_group_members"));
    // Room for one after a removal; concurrent adds take it once.
    let (s, _) = http(
        addr,
        "DELETE",
        &format!("/v1/groups/{id}/members/carol?user=alice"),
        None,
    );
    assert_eq!(s, 204);
    let adds: Vec<_> = (0..8)
        .map(|i| {
            let path = format!("/v1/groups/{id}/members?user=alice");
            std::thread::spawn(move || {
                http(addr, "POST", &path, Some(&json!({"user": format!("u{i}")}))).0
            })
        })
        .collect();
    let statuses: Vec<u16> = adds.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        7,
        "{statuses:?}"
    );
}

/// Group creation is limited per user per hour (429 `rate_limited`), so one
/// user cannot put a victim in thousands of groups.
#[test]
fn group_creation_is_limited_per_user_per_hour() {
    let gw = ConfiguredChild::start("shards = 1\nmax_groups_created_per_hour = 5\n");
    let addr = gw.addr();
    let mut created = 0;
    for _ in 0..20 {
        let (s, b) = http(
            addr,
            "POST",
            "/v1/groups?user=mallory",
            Some(&json!({"members": ["victim"]})),
        );
        match s {
            201 => created += 1,
            429 => {
                assert_eq!(b["code"], "rate_limited");
                assert!(b["message"]
                    .as_str()
                    .unwrap()
                    .contains("max_groups_created_per_hour"));
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!(created, 5);
    let (s, _) = http(
        addr,
        "POST",
        "/v1/groups?user=someone-else",
        Some(&json!({"members": ["victim"]})),
    );
    assert_eq!(s, 201, "another user may still create groups");
}

/// HTTP calls of one user in progress at once are capped (429).
#[test]
fn concurrent_http_calls_of_one_user_are_capped() {
    let gw = ConfiguredChild::start("shards = 1\nmax_http_calls_per_user = 2\n");
    let addr = gw.addr();
    // Two calls whose bodies never finish arriving hold the user's slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /v1/channels/room:x/messages?user=carol HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"
        )
        .unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (s, b) = http(
        addr,
        "POST",
        "/v1/channels/room:x/messages?user=carol",
        Some(&json!({"client_msg_id": "c1", "text": "hi"})),
    );
    assert_eq!(
        (s, b["code"].as_str().unwrap()),
        (429, "rate_limited"),
        "{b}"
    );
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("max_http_calls_per_user"));
    drop(held);
    assert!(eventually(Duration::from_secs(5), || {
        http(
            addr,
            "POST",
            "/v1/channels/room:x/messages?user=carol",
            Some(&json!({"client_msg_id": "c2", "text": "hi"})),
        )
        .0 == 200
    }));
}

/// An auth secret shorter than 32 bytes is refused at start, and says why.
#[test]
fn a_short_auth_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--auth-secret",
            "x",
        ],
    )
    .err()
    .expect("refused");
    assert!(err.contains("at least 32 bytes"), "{err}");
    let ok = Child::spawn(
        "",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--auth-secret",
            "0123456789abcdef0123456789abcdef",
        ],
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
}

/// A second gateway on an address already served refuses to start with a
/// clear error (whoever holds it), and the first keeps serving alone.
#[test]
fn a_second_process_on_the_same_address_refuses_to_start() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |i: usize| {
        let data = dirs[i].path().join("data");
        Child::spawn(
            "",
            &[
                "--listen",
                &addr,
                "--data-dir",
                data.to_str().unwrap(),
                "--shards",
                "2",
            ],
        )
    };
    let first = start(0).unwrap();
    let err = start(1).err().expect("the second gateway is refused");
    assert!(
        err.contains(&addr) && err.contains("another gateway"),
        "{err}"
    );
    // Every connection reaches the first: sequences never fork.
    let mut c = Client::connect(first.addr, "alice", "a");
    for i in 1..=20u64 {
        let mut fresh = Client::connect(first.addr, "bob", &format!("d{i}"));
        assert_eq!(fresh.send_msg("room:one", &format!("m{i}"), "x")["seq"], i);
    }
    c.join("room:one", None);
    drop(c);
    drop(first);

    // Any other process holding the address counts too.
    let mut holder = None;
    assert!(eventually(Duration::from_secs(10), || {
        holder = std::net::TcpListener::bind(&addr).ok();
        holder.is_some()
    }));
    let err = start(1)
        .err()
        .expect("refused while another process listens");
    assert!(err.contains("another process"), "{err}");
    drop(holder);
}
