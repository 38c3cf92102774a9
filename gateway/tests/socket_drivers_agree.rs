//! The two ways a shard drives its WebSocket sessions — its own io_uring
//! (`socket_ring = true`, the default, `gateway/src/ring.rs`) and one
//! task per session (`socket_ring = false`, `driver.rs`) — behave
//! the same from the client's side: delivery across shards, a slow reader
//! whose socket fills up, a close with lingering after an oversized frame,
//! a client that vanishes, and the graceful shutdown's 1001.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tungstenite::Message;

fn both(check: impl Fn(bool)) {
    for ring in [true, false] {
        check(ring);
    }
}

fn start_driver(
    ring: bool,
    shards: usize,
    tweak: impl FnOnce(&mut gateway::Config),
) -> TestGateway {
    start_with(shards, |c| {
        c.socket_ring = ring;
        tweak(c);
    })
}

#[test]
fn members_on_two_shards_get_every_message_in_order_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, 2, |_| {});
        let addr = tg.addr();
        let mut a = Client::connect_on_shard(addr, "alice", 0);
        let mut b = Client::connect_on_shard(addr, "bob", 1);
        a.join("room:agree", None);
        b.join("room:agree", None);
        for i in 0..50 {
            a.send_msg_async("room:agree", &format!("m{i}"), &format!("hello {i}"));
        }
        assert_seqs(&b.msgs("room:agree", 50), 1, 50);
        assert_seqs(&a.msgs("room:agree", 50), 1, 50);
    });
}

#[test]
fn a_reader_that_stops_then_resumes_gets_everything_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, 1, |c| {
            c.outbox_budget_bytes = 64 * 1024;
            c.socket_send_buffer_bytes = 16 * 1024;
        });
        let addr = tg.addr();
        let mut slow = Client::connect(addr, "slow", "d");
        let mut sender = Client::connect(addr, "sender", "d");
        slow.join("room:full", None);
        let text = "y".repeat(1000);
        let n = 1000u64;
        for i in 0..n {
            sender.send_msg_async("room:full", &format!("m{i}"), &text);
            if i >= 100 {
                sender.recv_type("ack");
            }
        }
        for _ in 0..100 {
            sender.recv_type("ack");
        }
        // The slow member's socket filled up (the driver waited for it to
        // drain); reading now gets every message once, in order.
        assert_seqs(&slow.msgs("room:full", n as usize), 1, n);
    });
}

#[test]
fn an_oversized_frame_closes_with_1009_and_others_continue_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, 1, |_| {});
        let mut c = Client::connect(tg.addr(), "alice", "d");
        let _ = c.ws.send(Message::text("a".repeat(2 * 1024 * 1024 + 1)));
        assert_eq!(c.close_code(), Some(1009), "ring={ring}");
        // `c` is still open, so its session lingers while `d` gets the
        // slot its connection freed (the ring keeps the two apart).
        let mut d = Client::connect(tg.addr(), "bob", "d");
        d.join("room:after", None);
        d.send_msg("room:after", "x", "still here");
    });
}

#[test]
fn a_vanished_client_frees_its_slot_on_both_drivers() {
    both(|ring| {
        let tg = start_driver(ring, 1, |_| {});
        let addr = tg.addr();
        for i in 0..20 {
            let c = Client::connect(addr, &format!("u{i}"), "d");
            drop(c); // no close frame: the socket just goes away
        }
        let deadline = std::time::Instant::now() + TIMEOUT;
        while tg.gw().stats().connections > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "connections were not freed (ring={ring})"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
}

#[test]
fn shutdown_closes_sessions_with_1001_on_both_drivers() {
    both(|ring| {
        let mut tg = start_driver(ring, 2, |_| {});
        let addr = tg.addr();
        let mut a = Client::connect_on_shard(addr, "alice", 0);
        let mut b = Client::connect_on_shard(addr, "bob", 1);
        a.join("room:bye", None);
        b.join("room:bye", None);
        let gw = tg.gw.take().unwrap();
        let stopper = std::thread::spawn(move || gw.shutdown());
        assert_eq!(a.close_code(), Some(1001), "ring={ring}");
        assert_eq!(b.close_code(), Some(1001), "ring={ring}");
        stopper.join().unwrap();
    });
}
