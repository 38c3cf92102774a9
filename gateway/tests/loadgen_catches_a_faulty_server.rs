//! End to end, the checker catches a server that breaks its promises: a
//! fake gateway (blocking tungstenite, one thread per connection) that
//! acks every send but loses one message, delivers another twice and
//! swaps two. The run must report exactly those and fail.
#![allow(clippy::unwrap_used)]

#[path = "loadgen_common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{serial, small};
use loadgen::{LocalHooks, Report, ScenarioKind};
use serde_json::{json, Value};
use tungstenite::Message;

/// Seqs whose `msg` the fake server never sends.
const LOST: u64 = 3;
/// Seq whose `msg` it sends twice.
const DUPLICATED: u64 = 5;
/// Seq whose `msg` it holds back until after the next one.
const SWAPPED: u64 = 7;

fn hello() -> Value {
    json!({"type": "hello", "user": "u", "device": "d", "session": "s", "shard": 0,
           "heartbeat_ms": 30000,
           "limits": {"max_text_chars": 100000, "max_frame_bytes": 2097152, "history_max_limit": 200}})
}

/// Serves one connection: one channel, seqs from `next_seq`.
fn serve(stream: std::net::TcpStream, next_seq: Arc<AtomicU64>) {
    let mut ws = tungstenite::accept(stream).unwrap();
    ws.send(Message::text(hello().to_string())).unwrap();
    let mut held: Option<Value> = None;
    loop {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let req: Value = serde_json::from_str(&text).unwrap();
        let id = req["id"].clone();
        let mut out = Vec::new();
        match req["type"].as_str().unwrap() {
            "join" => {
                let head = next_seq.load(Ordering::SeqCst) - 1;
                out.push(
                    json!({"type": "joined", "id": id, "channel": req["channel"], "head": head}),
                );
            }
            "send" => {
                let seq = next_seq.fetch_add(1, Ordering::SeqCst);
                out.push(json!({"type": "ack", "id": id, "channel": req["channel"],
                                "client_msg_id": req["client_msg_id"], "seq": seq, "ts": 1,
                                "duplicate": false}));
                let msg = json!({"type": "msg", "channel": req["channel"], "seq": seq,
                                 "from": "u", "device": "d", "client_msg_id": req["client_msg_id"],
                                 "kind": "text", "text": req["text"], "ts": 1});
                match seq {
                    LOST => {}
                    DUPLICATED => {
                        out.push(msg.clone());
                        out.push(msg);
                    }
                    SWAPPED => held = Some(msg),
                    _ => {
                        out.push(msg);
                        if let Some(m) = held.take() {
                            out.push(m);
                        }
                    }
                }
            }
            "ping" => out.push(json!({"type": "pong"})),
            _ => {}
        }
        for v in out {
            if ws.send(Message::text(v.to_string())).is_err() {
                return;
            }
        }
    }
}

#[test]
fn a_lost_a_duplicated_and_a_swapped_message_fail_the_run() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let next_seq = Arc::new(AtomicU64::new(1));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let next_seq = next_seq.clone();
            std::thread::spawn(move || serve(stream.unwrap(), next_seq));
        }
    });

    // One room, one member who is also the sender: every message it sends
    // comes back to it through the fake server.
    let mut cfg = small(ScenarioKind::Room, addr, 1);
    cfg.scenario.senders = 1;
    cfg.scenario.rate = 20.0;
    cfg.duration_ms = 1_000;
    cfg.shards = 1;
    cfg.drain_timeout_ms = 1_000;
    let mut hooks = LocalHooks {
        on_progress: |_, _: &_| {},
    };
    let result = loadgen::run(&cfg, &mut hooks).unwrap();
    let report = Report::new(&cfg, &result);
    eprintln!("{}", report.table());

    assert!(report.acked > SWAPPED + 1, "{}", report.table());
    assert_eq!(report.violations.lost, 1);
    assert_eq!(report.violations.duplicated, 1);
    assert_eq!(report.violations.reordered, 1);
    assert!(!report.ok);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.failures.len(), 3);
    assert!(report
        .table()
        .contains("FAILED: 1 acked message deliveries never arrived (lost)"));
    // The member never caught up: seq 3 never came.
    assert!(!report.caught_up);
}
