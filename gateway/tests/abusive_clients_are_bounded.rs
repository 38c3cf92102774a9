//! Clients that try to make the gateway do or hold too much: each one is
//! slowed or cut off, its cost stays bounded (measured from `/proc` with
//! generous bounds), and other clients on the same shard are not delayed.
//! Every case here was demonstrated against an earlier build (issue 11).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Fills `channel` with `n` messages of `chars` characters each.
fn fill(addr: std::net::SocketAddr, channel: &str, n: usize, chars: usize) {
    let mut w = Client::connect(addr, "writer", "w");
    let text = "x".repeat(chars);
    for i in 0..n {
        w.send_msg_async(channel, &format!("f{i}"), &text);
    }
    for _ in 0..n {
        assert_eq!(w.recv_type("ack")["type"], "ack");
    }
}

/// Pipelined `history` requests wait their turn at dispatch: a client that
/// sends a thousand in one write and reads nothing holds about one page,
/// not a thousand; another client's `join` on the shard is not delayed; and
/// once the client sent more than it takes replies for, trickling its
/// replies out does not keep it connected.
#[test]
fn pipelined_history_waits_its_turn_and_a_trickling_reader_is_cut_off() {
    let gw = ConfiguredChild::start("shards = 1\nheartbeat_ms = 1000\n");
    let addr = gw.addr();
    // ~2.4 MB of history: every latest page is ~1 MiB.
    fill(addr, "room:h", 24, 100_000);
    let pid = gw.child.pid();
    let before = proc_kib(pid, "VmRSS");

    // A small receive buffer, so every few KiB it reads lets the gateway
    // write more (with a large one, TCP holds the window shut until half of
    // it is free and the gateway sees a reader that takes nothing).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = sock.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (ws, _) = tungstenite::client(ws_url(addr, "mallory", "m"), stream).unwrap();
    let mut attacker = Client::from_ws(ws);
    let requests =
        (0..1_140).map(|i| json!({"type":"history","channel":"room:h","limit":200,"id":i}));
    let bytes = pipelined(requests);
    assert!(bytes.len() > 60_000, "{} bytes", bytes.len());
    attacker.write_raw(&bytes);
    // From now on it trickles its replies out — 8 KiB every 20 ms, enough
    // that the gateway's writes keep moving (no write stall) — and sends
    // nothing else, until the gateway drops it.
    let mut sock = attacker.ws.get_ref().try_clone().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let trickler = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 8192];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => return,
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    return
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });

    // Another client on the only shard is served at once.
    let mut other = Client::connect(addr, "alice", "a");
    let t = Instant::now();
    other.join("room:other", None);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "join took {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let grown_mib = proc_kib(pid, "VmHWM").saturating_sub(before) / 1024;
    assert!(
        grown_mib < 120,
        "the gateway grew by {grown_mib} MiB for one pipelining client (a page is ~1 MiB)"
    );
    // The requests still waiting keep its socket unread, so trickling the
    // replies out does not keep it alive: 4008 after 2 × heartbeat, then
    // dropped when the close cannot be flushed.
    let cut_off = eventually(Duration::from_secs(20), || {
        // `other` keeps its own heartbeat.
        assert!(other.ping_ms() < 2_000);
        std::thread::sleep(Duration::from_millis(100));
        // `other` and this /metrics call.
        metric(addr, "gateway_connections") <= 2.0
    });
    // (Whether the idle rule or, on a loaded machine, the write-stall rule
    // cuts it first, it is cut off; the unit test
    // `a_connection_that_sends_more_than_it_reads_is_idle` pins the rule.)
    assert!(cut_off, "the trickling reader still holds its connection");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    trickler.join().unwrap();
}

/// `presence` of a big room costs O(100) per query, not O(members), and a
/// connection has at most a few queries in flight: 3,000 pipelined queries
/// on a 5,000-member room do not freeze the shards.
#[test]
fn presence_floods_on_a_big_room_do_not_freeze_the_shards() {
    let gw = ConfiguredChild::start("shards = 2\n");
    let addr = gw.addr();
    let mut members = Vec::new();
    for i in 0..5_000 {
        let mut c = Client::connect(addr, &format!("m{i}"), "d");
        c.send_json(json!({"type":"join","channel":"room:big"}));
        members.push(c);
    }
    for c in &mut members {
        assert_eq!(c.recv_type("joined")["channel"], "room:big");
    }
    let mut probes: Vec<Client> = (0..2)
        .map(|s| Client::connect_on_shard(addr, &format!("probe{s}"), s))
        .collect();
    let p = probes[0].request(json!({"type":"presence","channel":"room:big"}));
    assert_eq!(p["count"], 5_000, "{p}");
    assert_eq!(p["online"].as_array().unwrap().len(), 100);

    let mut attacker = Client::connect(addr, "mallory", "m");
    let queries = (0..3_000).map(|i| json!({"type":"presence","channel":"room:big","id":i}));
    attacker.write_raw(&pipelined(queries));
    std::thread::sleep(Duration::from_millis(200));
    for probe in &mut probes {
        let ms = probe.ping_ms();
        assert!(ms < 1_000, "a ping took {ms} ms during the presence flood");
    }
    // Every query is answered, in order, with the exact count.
    for i in 0..3_000u64 {
        let r = attacker.reply_to(i);
        assert_eq!(r["count"], 5_000, "{r}");
    }
}

/// HTTP responses are written with a timeout: calls whose clients never
/// read do not hold their connection (or their memory) for good.
#[test]
fn http_calls_whose_clients_never_read_are_cut_off() {
    // A small send buffer per socket, and clients with a small receive
    // window: a ~1 MiB response cannot hide in the kernel's buffers.
    let gw = ConfiguredChild::start(
        "shards = 1\nhttp_timeout_ms = 1000\nsocket_send_buffer_bytes = 16384\n",
    );
    let addr = gw.addr();
    fill(addr, "room:big-pages", 12, 100_000);
    let mut stuck = Vec::new();
    for i in 0..30 {
        use std::io::Write;
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        write!(
            s,
            "GET /v1/channels/room:big-pages/messages?user=u{i}&limit=200 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        stuck.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(metric(addr, "gateway_connections") >= 30.0);
    let released = eventually(Duration::from_secs(8), || {
        metric(addr, "gateway_connections") <= 1.0
    });
    assert!(
        released,
        "{} connections still held",
        metric(addr, "gateway_connections")
    );
    drop(stuck);
}

/// A flood of `read` frames costs one store write per flush, not one each:
/// another client's `history` on the same shard is not delayed; the cursor
/// counts for unread at once and is durable after the flush interval.
#[test]
fn read_floods_are_coalesced_and_durable_within_the_flush_interval() {
    let toml = "shards = 1\ncursor_flush_ms = 200\n";
    let gw = ConfiguredChild::start(toml);
    let addr = gw.addr();
    let mut alice = Client::connect(addr, "alice", "a");
    for i in 0..5 {
        alice.send_msg("dm:alice:bob", &format!("m{i}"), "hi bob");
    }
    let mut bob = Client::connect(addr, "bob", "b");
    let reads =
        (0..10_000u64).map(|i| json!({"type":"read","channel":"dm:alice:bob","seq": 1 + i % 3}));
    bob.write_raw(&pipelined(reads));
    let t = Instant::now();
    let h = alice.request(json!({"type":"history","channel":"dm:alice:bob"}));
    assert_eq!(h["messages"].as_array().unwrap().len(), 5);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "history took {:?} behind 10,000 reads",
        t.elapsed()
    );
    // bob read up to 3 of 5: 2 unread, at once.
    assert!(eventually(Duration::from_secs(5), || {
        let (_, u) = http(addr, "GET", "/v1/me/unread?user=bob", None);
        u["unread"]["dm:alice:bob"] == 2
    }));
    // alice hears bob's read once per flush, not 10,000 times.
    let mut reads_seen = 0;
    while alice
        .recv_matching_now(|v| v["type"] == "read" && v["user"] == "bob")
        .is_some()
    {
        reads_seen += 1;
    }
    assert!(
        (1..=5).contains(&reads_seen),
        "{reads_seen} read pushes for one flood"
    );
    // Durable after the flush: a SIGKILL and restart keep it.
    std::thread::sleep(Duration::from_millis(600));
    let ConfiguredChild { child, dir } = gw;
    child.kill9();
    let gw = ConfiguredChild::start_in(dir, toml);
    let (_, u) = http(gw.addr(), "GET", "/v1/me/unread?user=bob", None);
    assert_eq!(u["unread"]["dm:alice:bob"], 2, "{u}");
}

/// Channels joined per connection are capped (`forbidden`, the limit named),
/// and joins in flight are limited: 20,000 pipelined joins cost at most the
/// cap's worth of memory.
#[test]
fn joins_past_the_channel_cap_are_refused_with_the_limit_named() {
    let gw = ConfiguredChild::start("shards = 2\nmax_channels_per_connection = 500\n");
    let addr = gw.addr();
    let pid = gw.child.pid();
    let before = proc_kib(pid, "VmRSS");
    let mut c = Client::connect(addr, "joiner", "j");
    let joins = (0..20_000).map(|i| json!({"type":"join","channel": format!("room:j{i}"),"id":i}));
    c.write_raw(&pipelined(joins));
    let mut refused = 0;
    for i in 0..20_000u64 {
        let r = c.reply_to(i);
        if r["type"] == "error" {
            assert_eq!(r["code"], "forbidden", "{r}");
            assert!(r["message"]
                .as_str()
                .unwrap()
                .contains("max_channels_per_connection"));
            refused += 1;
        }
    }
    assert_eq!(refused, 19_500);
    let grown_mib = proc_kib(pid, "VmHWM").saturating_sub(before) / 1024;
    assert!(grown_mib < 60, "grew by {grown_mib} MiB");
    // Leaving one makes room for another.
    assert_eq!(
        c.request(json!({"type":"leave","channel":"room:j0"}))["type"],
        "left"
    );
    c.join("room:another", None);
}

/// A close for sustained rate limiting (1008) comes after the acks of the
/// sends already taken: nothing stored goes unacknowledged.
#[test]
fn a_rate_limit_close_flushes_the_acks_already_owed() {
    let toml =
        "shards = 2\nrate_limit_per_sec = 1.0\nrate_limit_burst = 5\nrate_limit_close_after = 5\n";
    let gw = ConfiguredChild::start(toml);
    let mut c = Client::connect(gw.addr(), "spammer", "s");
    let sends = (0..30).map(|i| {
        json!({"type":"send","channel":"room:spam","client_msg_id": format!("s{i}"),"text":"x","id":i})
    });
    c.write_raw(&pipelined(sends));
    let mut acks = 0;
    let mut code = None;
    loop {
        match c.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ack" {
                    acks += 1;
                }
            }
            Ok(tungstenite::Message::Close(f)) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1008));
    let mut reader = Client::connect(gw.addr(), "reader", "r");
    let h = reader.request(json!({"type":"history","channel":"room:spam"}));
    let stored = h["messages"].as_array().unwrap().len();
    assert_eq!(stored, 5, "the burst was stored");
    assert_eq!(acks, stored, "every stored send was acked before the close");
}
