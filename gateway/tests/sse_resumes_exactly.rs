//! The Server-Sent Events fallback keeps the WebSocket guarantees: every
//! seq once, in order, per channel; a reconnect with `Last-Event-ID`
//! resumes every channel exactly; a slow reader catches up; the stream is a
//! device (replaced with 4009, counted per user); sends go over HTTP.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

/// One SSE event: `id` (None: the field was absent), `event`, `data` (JSON).
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    event: String,
    data: Value,
}

struct Sse {
    reader: BufReader<TcpStream>,
    status: u16,
    last_id: Option<String>,
}

impl Sse {
    fn open(addr: SocketAddr, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let extra = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /v1/events?{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line[9..12].parse().unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Sse {
            reader,
            status,
            last_id: None,
        }
    }

    /// The next event (comments and `retry:` skipped); None at the end.
    fn next(&mut self) -> Option<Event> {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let l = line.trim_end_matches('\n');
            if l.is_empty() {
                if data.is_empty() {
                    continue;
                }
                if id.is_some() {
                    self.last_id.clone_from(&id);
                }
                return Some(Event {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    fn next_of(&mut self, event: &str) -> Event {
        loop {
            let e = self.next().expect("stream ended");
            if e.event == event {
                return e;
            }
        }
    }

    /// The next `n` `msg` events.
    fn msgs(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.next_of("msg")).collect()
    }
}

#[test]
fn events_carry_positions_and_last_event_id_resumes_every_channel_exactly() {
    let tg = start(2);
    let addr = tg.addr();
    let mut w = Client::connect(addr, "writer", "d");
    w.send_msg("room:a", "a0", "before");
    let mut sse = Sse::open(addr, "user=reader&device=r&channels=room:a,room:b", None);
    assert_eq!(sse.status, 200);
    let hello = sse.next_of("hello");
    assert_eq!(hello.data["user"], "reader");
    let mut joined: Vec<Event> = vec![sse.next_of("joined"), sse.next_of("joined")];
    joined.sort_by_key(|e| e.data["channel"].as_str().unwrap().to_string());
    assert_eq!(joined[0].data["head"], 1);
    assert_eq!(joined[1].data["head"], 0);
    // Live joins start at the head; both positions are in the id.
    let id = sse.last_id.clone().unwrap();
    assert_eq!(id, "room:a=1,room:b=0");

    for i in 0..5 {
        w.send_msg("room:a", &format!("a{}", i + 1), &format!("a{i}"));
        w.send_msg("room:b", &format!("b{i}"), &format!("b{i}"));
    }
    let got = sse.msgs(10);
    let seqs = |ch: &str, evs: &[Event]| -> Vec<u64> {
        evs.iter()
            .filter(|e| e.data["channel"] == ch)
            .map(|e| e.data["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs("room:a", &got), vec![2, 3, 4, 5, 6]);
    assert_eq!(seqs("room:b", &got), vec![1, 2, 3, 4, 5]);
    // Stop in the middle: after the 7th event.
    let cut = &got[6];
    let cut_id = cut.id.clone().unwrap();
    let pos = |ch: &str| -> u64 {
        cut_id
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{ch}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (pa, pb) = (pos("room:a"), pos("room:b"));
    assert_eq!(pa + pb, 7 + 1, "the id counts what was delivered: {cut_id}");
    drop(sse);

    for i in 5..8 {
        w.send_msg("room:a", &format!("a{}", i + 1), "later");
        w.send_msg("room:b", &format!("b{i}"), "later");
    }
    // Reconnect as an EventSource would: the same URL and Last-Event-ID.
    let mut back = Sse::open(
        addr,
        "user=reader&device=r&channels=room:a,room:b",
        Some(&cut_id),
    );
    let rest = back.msgs((9 - pa as usize) + (8 - pb as usize));
    assert_eq!(seqs("room:a", &rest), ((pa + 1)..=9).collect::<Vec<_>>());
    assert_eq!(seqs("room:b", &rest), ((pb + 1)..=8).collect::<Vec<_>>());
    // Nothing more until something new.
    w.send_msg("room:b", "b-live", "live");
    let live = back.next_of("msg");
    assert_eq!(live.data["seq"], 9);
    assert_eq!(live.data["channel"], "room:b");
    assert_eq!(live.id.unwrap(), "room:a=9,room:b=9");
}

#[test]
fn a_slow_sse_reader_gets_every_message_once_in_order() {
    let tg = start_with(2, |c| c.outbox_budget_bytes = 8 * 1024);
    let addr = tg.addr();
    let mut sse = Sse::open(addr, "user=slow&device=s&channels=room:slow=0", None);
    sse.next_of("joined");
    let mut w = Client::connect(addr, "writer", "d");
    let text = "x".repeat(900);
    for i in 0..300 {
        w.send_msg_async("room:slow", &format!("m{i}"), &text);
    }
    for _ in 0..300 {
        w.recv_type("ack");
    }
    // Only now read: the outbox went far past its budget meanwhile.
    let got = sse.msgs(300);
    let seqs: Vec<u64> = got
        .iter()
        .map(|e| e.data["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
}

#[test]
fn sends_go_over_http_and_own_messages_come_back_on_the_stream() {
    let tg = start(2);
    let addr = tg.addr();
    let mut sse = Sse::open(addr, "user=al&device=web&channels=dm:al:bo", None);
    sse.next_of("joined");
    let (s, ack) = http(
        addr,
        "POST",
        "/v1/channels/dm:al:bo/messages?user=al&device=web",
        Some(&json!({"client_msg_id": "c1", "text": "hi bo"})),
    );
    assert_eq!(s, 200, "{ack}");
    let m = sse.next_of("msg");
    assert_eq!(m.data["text"], "hi bo");
    assert_eq!(m.data["device"], "web");
    // An edit through the HTTP API: kind edit with a target.
    let (s, ack) = http(
        addr,
        "POST",
        "/v1/channels/dm:al:bo/messages?user=al&device=web",
        Some(&json!({"client_msg_id": "c2", "kind": "edit", "target": 1, "text": "hi bo!"})),
    );
    assert_eq!(s, 200, "{ack}");
    let e = sse.next_of("msg");
    assert_eq!(e.data["kind"], "edit");
    assert_eq!(e.data["target"], 1);
}

#[test]
fn a_refused_join_is_an_error_event_and_leaves_the_position_list() {
    let tg = start(1);
    let mut sse = Sse::open(
        tg.addr(),
        "user=eve&device=e&channels=dm:al:bo,room:ok",
        None,
    );
    let err = sse.next_of("error");
    assert_eq!(err.data["code"], "not_member");
    assert_eq!(err.data["id"], "dm:al:bo");
    let joined = sse.next_of("joined");
    assert_eq!(joined.data["channel"], "room:ok");
    assert_eq!(sse.last_id.as_deref(), Some("room:ok=0"));
}

#[test]
fn bad_channel_lists_are_refused_before_streaming() {
    let tg = start(1);
    let sse = Sse::open(tg.addr(), "user=u&channels=nope", None);
    assert_eq!(sse.status, 400);
    let sse = Sse::open(tg.addr(), "channels=room:a", None);
    assert_eq!(sse.status, 401, "same auth as the HTTP API");
}

#[test]
fn the_stream_is_a_device_replaced_with_4009_and_counted_per_user() {
    let tg = start_with(2, |c| c.max_connections_per_user = 2);
    let addr = tg.addr();
    let mut sse = Sse::open(addr, "user=dup&device=tab&channels=room:x", None);
    sse.next_of("joined");
    // The same device over WebSocket replaces the stream.
    let _ws = Client::connect(addr, "dup", "tab");
    let close = sse.next_of("close");
    assert_eq!(close.data["code"], 4009);
    assert!(sse.next().is_none(), "the stream ends after close");

    // Two devices (one of them a stream) are the user's maximum.
    let mut sse2 = Sse::open(addr, "user=dup&device=tab2", None);
    sse2.next_of("hello");
    let mut third = Client::connect(addr, "dup", "tab3");
    assert_eq!(third.close_code(), Some(4029));
}

#[test]
fn presence_and_read_events_reach_the_stream() {
    let tg = start(2);
    let addr = tg.addr();
    let mut bo = Client::connect(addr, "bo", "d");
    bo.send_msg("dm:al:bo", "1", "hello al");
    let mut sse = Sse::open(addr, "user=al&device=web&channels=dm:al:bo=0", None);
    sse.next_of("joined");
    assert_eq!(sse.next_of("msg").data["seq"], 1);
    // al is online now: bo is told.
    let p = bo.recv_type("presence_update");
    assert_eq!(p["user"], "al");
    assert_eq!(p["status"], "online");
    let (s, _) = http(
        addr,
        "POST",
        "/v1/channels/dm:al:bo/messages?user=al&device=web",
        Some(&json!({"client_msg_id": "a1", "text": "hi bo"})),
    );
    assert_eq!(s, 200);
    assert_eq!(sse.next_of("msg").data["seq"], 2);
    bo.send_json(json!({"type": "read", "channel": "dm:al:bo", "seq": 2}));
    let r = sse.next_of("read");
    assert_eq!(r.data["user"], "bo");
    assert_eq!(r.data["seq"], 2);
    bo.send_msg("dm:al:bo", "2", "again");
    assert_eq!(sse.next_of("msg").data["seq"], 3);
}

#[test]
fn a_stream_of_more_channels_than_joins_in_flight_joins_them_all() {
    let tg = start_with(2, |c| c.max_joins_in_flight = 4);
    let list: Vec<String> = (0..40).map(|i| format!("room:many{i}")).collect();
    let mut sse = Sse::open(
        tg.addr(),
        &format!("user=many&device=d&channels={}", list.join(",")),
        None,
    );
    let mut joined: Vec<String> = (0..40)
        .map(|_| {
            sse.next_of("joined").data["channel"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    joined.sort();
    let mut want = list.clone();
    want.sort();
    assert_eq!(joined, want);
    let mut w = Client::connect(tg.addr(), "w", "d");
    w.send_msg("room:many39", "x", "last one");
    assert_eq!(sse.next_of("msg").data["channel"], "room:many39");
}
