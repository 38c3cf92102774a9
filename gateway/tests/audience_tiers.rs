//! Audience tiers (`join`'s `mode`): a `digest` member gets every seq once,
//! in order, in far fewer writes than a `live` one; a `counts` member gets
//! `head` events and no messages, and switching it to `live` replays
//! exactly the gap; an unknown mode is `bad_request` on a connection that
//! stays usable; a slow `digest` member still catches up from history.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// A socket that counts the reads that returned bytes: on a client that
/// reads as soon as bytes arrive, about one per segment the server wrote.
struct CountingStream {
    inner: TcpStream,
    reads: Arc<AtomicU64>,
}

impl Read for CountingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl Write for CountingStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A member that joins `channel` in `mode`, counting its socket reads.
struct Member {
    ws: WebSocket<CountingStream>,
    reads: Arc<AtomicU64>,
}

impl Member {
    fn join(addr: SocketAddr, user: &str, channel: &str, mode: &str) -> Member {
        let inner = TcpStream::connect(addr).unwrap();
        inner.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reads = Arc::new(AtomicU64::new(0));
        let stream = CountingStream {
            inner,
            reads: reads.clone(),
        };
        let (ws, _) = tungstenite::client(ws_url(addr, user, "d"), stream).unwrap();
        let mut m = Member { ws, reads };
        assert_eq!(m.next()["type"], "hello");
        let join = json!({"type":"join","channel":channel,"mode":mode,"id":1});
        m.ws.send(Message::text(join.to_string())).unwrap();
        let joined = m.next();
        assert_eq!(joined["type"], "joined", "{joined}");
        m
    }

    fn next(&mut self) -> Value {
        loop {
            match self.ws.read().unwrap() {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                _ => continue,
            }
        }
    }

    /// Reads until `n` messages came; returns their seqs and the reads it
    /// took.
    fn receive(mut self, n: usize) -> (Vec<u64>, u64) {
        let before = self.reads.load(Ordering::Relaxed);
        let mut seqs = Vec::with_capacity(n);
        while seqs.len() < n {
            let v = self.next();
            if v["type"] == "msg" {
                seqs.push(v["seq"].as_u64().unwrap());
            }
        }
        (seqs, self.reads.load(Ordering::Relaxed) - before)
    }
}

#[test]
fn a_digest_member_of_a_busy_room_gets_every_seq_once_in_order_in_far_fewer_writes() {
    // Both socket drivers (the shard's io_uring, the default, and a task
    // per session) write a digest in one go.
    for ring in [true, false] {
        digest_in_a_busy_room(ring);
    }
}

fn digest_in_a_busy_room(socket_ring: bool) {
    // The default digest interval (250 ms); two shards, so the room's
    // batches cross the mesh for one of them.
    let tg = start_with(2, |c| c.socket_ring = socket_ring);
    let addr = tg.addr();
    let n = 300usize;
    let live = Member::join(addr, "live", "room:busy", "live");
    let digest = Member::join(addr, "digest", "room:busy", "digest");
    let readers: Vec<_> = [live, digest]
        .into_iter()
        .map(|m| std::thread::spawn(move || m.receive(n)))
        .collect();
    let mut sender = Client::connect(addr, "sender", "d");
    let start = Instant::now();
    for i in 0..n {
        let ack = sender.send_msg("room:busy", &format!("c{i}"), "a busy room");
        assert_eq!(ack["type"], "ack", "{ack}");
        std::thread::sleep(Duration::from_millis(3));
    }
    let took = start.elapsed();
    let mut results = readers.into_iter().map(|r| r.join().unwrap());
    let (live_seqs, live_reads) = results.next().unwrap();
    let (digest_seqs, digest_reads) = results.next().unwrap();
    let want: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(live_seqs, want);
    assert_eq!(digest_seqs, want, "every seq once, in order");
    eprintln!(
        "socket_ring {socket_ring}: {n} messages over {took:?}: live member {live_reads} reads, \
         digest member {digest_reads}"
    );
    assert!(
        digest_reads * 4 < live_reads,
        "far fewer writes: digest {digest_reads} reads, live {live_reads}"
    );
    // At most one delivery per 250 ms (plus the hello, the joined reply and
    // a segment split now and then).
    let intervals = took.as_millis() as u64 / 250 + 2;
    assert!(
        digest_reads <= 3 * intervals + 4,
        "{digest_reads} reads in {intervals} intervals"
    );
    // The gateway's count agrees: one delivery per interval at most.
    let deliveries = metric(addr, "gateway_digest_deliveries_total") as u64;
    assert!(
        (1..=intervals).contains(&deliveries),
        "{deliveries} digest deliveries in {intervals} intervals"
    );
}

#[test]
fn a_counts_member_gets_head_events_and_no_messages_and_switching_to_live_replays_the_gap() {
    let tg = start_with(2, |c| c.counts_interval_ms = 200);
    let addr = tg.addr();
    let mut sender = Client::connect(addr, "sender", "d");
    for i in 0..5 {
        sender.send_msg("room:badge", &format!("before{i}"), "history");
    }
    let mut counts = Client::connect(addr, "badge", "d");
    let joined = counts.request(json!({"type":"join","channel":"room:badge","mode":"counts"}));
    assert_eq!(joined["head"], 5, "{joined}");
    let n = 60u64;
    let start = Instant::now();
    for i in 0..n {
        sender.send_msg("room:badge", &format!("c{i}"), "moves the head");
        std::thread::sleep(Duration::from_millis(10));
    }
    let head = 5 + n;
    // Head events arrive, rising, until the head is reached; no message.
    let mut heads = Vec::new();
    while heads.last() != Some(&head) {
        let v = counts.recv();
        assert_ne!(v["type"], "msg", "a counts member gets no messages: {v}");
        if v["type"] == "head" {
            assert_eq!(v["channel"], "room:badge", "{v}");
            heads.push(v["head"].as_u64().unwrap());
        }
    }
    let took = start.elapsed();
    assert!(heads.windows(2).all(|w| w[0] < w[1]), "rising: {heads:?}");
    assert_eq!(
        metric(addr, "gateway_head_events_total") as usize,
        heads.len()
    );
    let intervals = took.as_millis() as u64 / 200 + 2;
    assert!(
        heads.len() as u64 <= intervals,
        "at most one head per 200 ms: {} in {took:?}",
        heads.len()
    );
    assert!(
        counts
            .recv_matching_now(|v| v["type"] == "msg" || v["type"] == "head")
            .is_none(),
        "nothing more while the head stays"
    );
    // Switching to live: `joined` with the head, then exactly the gap from
    // the cursor the counts join left (5), then live messages.
    let joined = counts.request(json!({"type":"join","channel":"room:badge"}));
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["head"], head);
    assert_seqs(&counts.msgs("room:badge", n as usize), 6, head);
    sender.send_msg("room:badge", "after", "live now");
    assert_seqs(&counts.msgs("room:badge", 1), head + 1, head + 1);
    assert!(
        counts
            .recv_matching_now(|v| v["type"] == "msg" || v["type"] == "head")
            .is_none(),
        "no seq twice, no head event to a live member"
    );
}

#[test]
fn an_unknown_mode_is_a_bad_request_and_the_connection_stays_usable() {
    let tg = start(1);
    let mut c = Client::connect(tg.addr(), "alice", "d");
    let r = c.request(json!({"type":"join","channel":"room:x","mode":"firehose"}));
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = c.request(json!({"type":"join","channel":"room:x","mode":7}));
    assert_eq!(r["code"], "bad_request", "{r}");
    // Not joined by the refused requests; usable for everything else.
    assert_eq!(c.request(json!({"type":"ping"}))["type"], "pong");
    assert_eq!(c.join("room:x", None), 0);
    c.send_msg("room:x", "c1", "still here");
    assert_seqs(&c.msgs("room:x", 1), 1, 1);
}

#[test]
fn a_slow_digest_member_catches_up_from_history_without_loss() {
    let tg = start_with(1, |c| {
        c.outbox_budget_bytes = 64 * 1024;
        c.socket_send_buffer_bytes = 16 * 1024;
        c.replica_ring_bytes = 64 * 1024;
        c.digest_interval_ms = 50;
    });
    let addr = tg.addr();
    let mut slow = Client::connect(addr, "slow", "d");
    let r = slow.request(json!({"type":"join","channel":"room:big","mode":"digest"}));
    assert_eq!(r["type"], "joined", "{r}");
    let mut sender = Client::connect(addr, "sender", "d");
    let text = "x".repeat(1000);
    let n = 2000u64;
    let mut acked = 0;
    for i in 0..n {
        sender.send_msg_async("room:big", &format!("m{i}"), &text);
        if i >= 200 {
            sender.recv_type("ack");
            acked += 1;
        }
    }
    while acked < n {
        sender.recv_type("ack");
        acked += 1;
    }
    // Megabytes behind, far past its budget and the ring: everything comes,
    // once, in order.
    assert_seqs(&slow.msgs("room:big", n as usize), 1, n);
    assert!(slow.recv_matching_now(|v| v["type"] == "msg").is_none());
}

#[test]
fn a_digest_member_resumes_from_since_like_a_live_one() {
    let tg = start(1);
    let addr = tg.addr();
    let mut sender = Client::connect(addr, "sender", "d");
    for i in 0..10 {
        sender.send_msg("room:r", &format!("c{i}"), "hi");
    }
    let mut d = Client::connect(addr, "d", "d");
    let r = d.request(json!({"type":"join","channel":"room:r","since":4,"mode":"digest"}));
    assert_eq!(r["head"], 10, "{r}");
    assert_seqs(&d.msgs("room:r", 6), 5, 10);
    sender.send_msg("room:r", "c10", "hi");
    assert_seqs(&d.msgs("room:r", 1), 11, 11);
}
