//! Server-Sent Events: `GET /v1/events?channels=…`, the fallback for
//! networks that block WebSocket (the modern form of long polling).
//!
//! An SSE stream is a session like a WebSocket connection, not an HTTP call:
//! `open_conn` registers it as the caller's device (it replaces an open
//! connection of the same device with 4009, counts towards
//! `max_connections_per_user` and makes the user online), and every listed
//! channel is joined with the ordinary `join` request. So store before
//! deliver, the per-channel cursor (every seq exactly once, in order, from
//! the join position), replay from `since` and slow-consumer catch-up are
//! the very same code as for WebSocket; nothing here sequences or pages.
//!
//! The session's outbox holds what a WebSocket client would get: server
//! frames (unmasked text, encoded once per batch and shared). The driver in
//! this module takes whole frames off the outbox only when the socket has
//! taken the previous ones (so the outbox budget still measures how far
//! behind the reader is and catch-up works unchanged), rewrites each as one
//! SSE event (`event: <type>`, `data: <the same JSON>`), and keeps the
//! stream's position in every channel: the last seq written, or the head a
//! live join started from. `msg`, `joined` and `left` events, and join
//! errors, carry an `id` that lists those positions (`channel=seq,…`, the
//! format of the `channels` parameter). A client that reconnects with
//! `Last-Event-ID` (an `EventSource` does it by itself) is joined with
//! `since` = its position in each channel: nothing is missed, nothing
//! repeats, in any channel.
//!
//! Requests go over the HTTP API (`POST /v1/channels/{channel}/messages`
//! and the rest); the stream only carries events. A comment line every
//! `heartbeat_ms / 2` keeps proxies from closing it and counts as the
//! client's heartbeat (it cannot send frames). When the session is closed
//! (4009 replaced, 4001 token expired, 1001 shutdown, 4029 too many) the
//! stream ends with an `event: close` `{code, reason}`.

use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::rt::net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use serde::Deserialize;

use chat_core::ConnId;
use chat_model::Seq;
use chat_proto::auth::Identity;
use chat_proto::http::{self, RequestHead};
use chat_proto::positions::{self, parse_positions};

use crate::shard_task::Shard;
use crate::util::now_ms;

/// Bytes of outbox frames rewritten per step (the SSE buffer holds about
/// this much plus one frame).
const REFILL_BYTES: usize = 64 * 1024;

/// A channel list as in `channels=` and in event ids (`chat_proto::positions`).
pub(crate) type PositionList = positions::PositionList;

/// The channels to join and where from: `channels=` with the positions of
/// `Last-Event-ID` (which wins: it is where this stream got to).
/// At most `max` channels (`max_sse_channels`).
fn requested(head: &RequestHead, max: usize) -> Result<PositionList, String> {
    let mut list = parse_positions(head.query_param("channels").unwrap_or(""))?;
    if list.len() > max {
        return Err(format!(
            "at most {max} channels per stream (max_sse_channels), not {}",
            list.len()
        ));
    }
    if let Some(last) = head.last_event_id.as_deref() {
        // An id that does not parse (another server's?) is ignored, as an
        // EventSource would send it for any stream at this URL.
        if let Ok(last) = parse_positions(last) {
            for (channel, seq) in last {
                if let Some(entry) = list.iter_mut().find(|(c, _)| *c == channel) {
                    entry.1 = seq.or(entry.1);
                }
            }
        }
    }
    Ok(list)
}

/// The stream's position in each channel it covers: `Some(seq)` once known
/// (the `since` asked for, the head of a live join, the last `msg`).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    list: PositionList,
}

impl Positions {
    /// The event id: `channel=seq` for every channel with a known position.
    pub(crate) fn id(&self) -> String {
        positions::format_positions(&self.list)
    }

    fn entry(&mut self, channel: &str) -> Option<&mut Option<Seq>> {
        self.list
            .iter_mut()
            .find(|(c, _)| c.as_str() == channel)
            .map(|(_, s)| s)
    }

    fn remove(&mut self, channel: &str) {
        self.list.retain(|(c, _)| c.as_str() != channel);
    }
}

/// What the driver needs to know of a server frame.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    r#type: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<Seq>,
    #[serde(default)]
    head: Option<Seq>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

/// One complete server frame at the start of `buf`: (opcode, payload,
/// length in `buf`). Server frames are unmasked and never fragmented.
fn next_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let b1 = *buf.get(1)?;
    let opcode = buf[0] & 0x0f;
    let (len, header) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let end = header + usize::try_from(len).ok()?;
    let payload = buf.get(header..end)?;
    Some((opcode, payload, end))
}

/// Rewrites the whole frames at the start of `frames` as SSE events into
/// `out` (about `max` bytes of frames at most, one frame at least) and
/// updates `positions`. Returns how many bytes of `frames` were used.
pub(crate) fn rewrite(
    frames: &[u8],
    max: usize,
    out: &mut Vec<u8>,
    positions: &mut Positions,
) -> usize {
    let mut used = 0;
    while used < frames.len() && (used == 0 || used < max) {
        let Some((opcode, payload, len)) = next_frame(&frames[used..]) else {
            break;
        };
        used += len;
        if opcode != 0x1 {
            continue; // pongs: nothing for an SSE client
        }
        let Ok(peek) = serde_json::from_slice::<Peek<'_>>(payload) else {
            continue;
        };
        let channel = peek.channel.as_deref();
        let moved = match (&*peek.r#type, channel) {
            ("msg", Some(ch)) => {
                if let (Some(entry), Some(seq)) = (positions.entry(ch), peek.seq) {
                    *entry = Some(seq);
                }
                true
            }
            ("joined", Some(ch)) => {
                if let Some(entry) = positions.entry(ch) {
                    // A live join starts at the head; one with `since` keeps it.
                    if entry.is_none() {
                        *entry = peek.head;
                    }
                }
                true
            }
            ("left", Some(ch)) => {
                positions.remove(ch);
                true
            }
            // A refused join (its id is the channel): no position any more.
            ("error", _) => match peek.id.as_deref() {
                Some(ch) if positions.entry(ch).is_some() => {
                    positions.remove(ch);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if moved {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(positions.id().as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(peek.r#type.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Server JSON never holds a raw line break (serde escapes them).
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
    }
    used
}

/// The `close` event that ends a stream.
fn close_event(out: &mut Vec<u8>, code: u16, reason: &str) {
    if code == 1001 {
        // Shutdown: an EventSource comes back after a random delay, so a
        // restarting server is not hit by every client at once.
        let delay = 1000 + chat_core::hash::fnv1a_64(&now_ms().to_le_bytes()) % 4000;
        out.extend_from_slice(format!("retry: {delay}\n").as_bytes());
    }
    let data = serde_json::json!({"type": "close", "code": code, "reason": reason});
    out.extend_from_slice(format!("event: close\ndata: {data}\n\n").as_bytes());
}

/// Serves one `GET /v1/events` of an authenticated caller.
pub(crate) async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    head: RequestHead,
    identity: Identity,
    cors: Option<String>,
) {
    let conn_headers = http::ConnHeaders {
        persist: http::Persist::Close,
        cors_origin: cors.as_deref(),
    };
    let list = match requested(&head, shard.cfg().max_sse_channels) {
        Ok(l) => l,
        Err(m) => {
            let r = http::Reply::error(400, "bad_request", &m).encode(conn_headers);
            let _ = stream.write_all(&r).await;
            let _ = stream.close().await;
            return;
        }
    };
    if shard.state.borrow().is_draining() {
        let r = http::Reply::error(503, "unavailable", "server shutting down").encode(conn_headers);
        let _ = stream.write_all(&r).await;
        let _ = stream.close().await;
        return;
    }
    let mut start = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n",
    );
    if let Some(origin) = cors.as_deref().filter(|o| !o.contains(['\r', '\n'])) {
        start.push_str("Access-Control-Allow-Origin: ");
        start.push_str(origin);
        start.push_str("\r\nVary: Origin\r\n");
    }
    start.push_str("\r\nretry: 2000\n\n");
    if stream.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    let conn = shard.with(|st| {
        let id = st.open_conn(&identity, now_ms());
        for (channel, since) in &list {
            let mut req = serde_json::json!({"type": "join", "channel": channel, "id": channel});
            if let Some(s) = since {
                req["since"] = s.0.into();
            }
            st.on_request(id, &req.to_string(), now_ms());
        }
        id
    });
    let heartbeat = Rc::new(Cell::new(false));
    let period = Duration::from_millis((shard.cfg().heartbeat_ms / 2).max(50));
    let ticker = {
        let (shard, flag) = (shard.clone(), heartbeat.clone());
        crate::rt::spawn(async move {
            loop {
                crate::rt::sleep(period).await;
                flag.set(true);
                // The client cannot send frames: a stream that takes its
                // bytes is alive (stalls are cut off by the write-stall
                // check and by the driver).
                let alive = shard.with(|st| st.keep_alive(conn, now_ms()));
                if !alive {
                    return;
                }
            }
        })
    };
    let stall_ms = 2 * shard.cfg().heartbeat_ms;
    let mut driver = Driver {
        shard: shard.clone(),
        conn,
        stream,
        out: Vec::with_capacity(4096),
        out_pos: 0,
        out_since_ms: 0,
        stall_ms,
        positions: Positions {
            list: list.into_iter().collect(),
        },
        heartbeat,
        finished: false,
    };
    (&mut driver).await;
    drop(ticker);
    shard.forget(conn);
    shard.with(|st| st.close_conn(conn, now_ms()));
    let _ = driver.stream.close().await;
}

/// The poll-driven half of an SSE stream.
struct Driver {
    shard: Rc<Shard>,
    conn: ConnId,
    stream: TcpStream,
    /// SSE bytes waiting for the socket, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Since when `out` has been waiting (ms), for the stall check.
    out_since_ms: u64,
    stall_ms: u64,
    positions: Positions,
    /// Set by the ticker: write a heartbeat comment.
    heartbeat: Rc<Cell<bool>>,
    /// The close event is in `out`: end once it is written.
    finished: bool,
}

impl Future for &mut Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut **self.get_mut();
        for _ in 0..32 {
            // 0. Joins past `max_joins_in_flight` wait in the session's
            // queue: a `joined` (which woke us) makes room for the next.
            if this.shard.state.borrow().has_queued(this.conn) {
                this.shard.with(|st| st.admit_queued(this.conn, now_ms()));
            }
            // 1. Write what was rewritten.
            let mut write_blocked = false;
            while this.out_pos < this.out.len() {
                match Pin::new(&mut this.stream).poll_write(cx, &this.out[this.out_pos..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        this.out_pos += n;
                        this.out_since_ms = now_ms();
                    }
                    Poll::Pending => {
                        write_blocked = true;
                        break;
                    }
                }
            }
            if write_blocked && now_ms().saturating_sub(this.out_since_ms) > this.stall_ms {
                return Poll::Ready(()); // the peer stopped reading
            }
            // 2. Once written, take more frames off the outbox.
            let mut refilled = false;
            if !write_blocked {
                this.out.clear();
                this.out_pos = 0;
                if this.finished {
                    return Poll::Ready(());
                }
                let mut st = this.shard.state.borrow_mut();
                match st.session(this.conn) {
                    None => return Poll::Ready(()),
                    Some(s) if s.kill => return Poll::Ready(()),
                    Some(_) => {}
                }
                let used = rewrite(
                    st.output_front(this.conn),
                    REFILL_BYTES,
                    &mut this.out,
                    &mut this.positions,
                );
                if used > 0 {
                    // An emptied outbox lets catching-up channels continue.
                    st.wrote(this.conn, used, now_ms());
                }
                if let Some(c) = st.take_close(this.conn) {
                    close_event(&mut this.out, c.code, c.reason);
                    this.finished = true;
                }
                if this.heartbeat.replace(false) {
                    this.out.extend_from_slice(b": hb\n\n");
                }
                refilled = !this.out.is_empty();
                if refilled {
                    this.out_since_ms = now_ms();
                }
                drop(st);
                this.shard.apply_effects();
            }
            // 3. Read only to notice the peer going away.
            let mut sink = [0u8; 512];
            match Pin::new(&mut this.stream).poll_read(cx, &mut sink) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) | Poll::Pending => {}
            }
            if refilled {
                continue;
            }
            // 4. Wait for the socket, the outbox or the ticker.
            let shard = this.shard.clone();
            let mut st = shard.state.borrow_mut();
            let Some(s) = st.session(this.conn) else {
                return Poll::Ready(());
            };
            let more = s.pending > 0 || s.closing.is_some() || this.heartbeat.get();
            if more && !write_blocked {
                continue;
            }
            shard.park(&mut st, this.conn, cx.waker());
            return Poll::Pending;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chat_proto::response;

    fn ch(name: &str) -> chat_model::Channel {
        chat_model::Channel::parse(name).unwrap()
    }

    #[test]
    fn positions_parse_and_print_in_one_format() {
        let list = parse_positions("room:a=5, dm:al:bo ,group:g1=0,room:a=7").unwrap();
        assert_eq!(
            list,
            vec![
                (ch("room:a"), Some(Seq(7))),
                (ch("dm:al:bo"), None),
                (ch("group:g1"), Some(Seq(0))),
            ]
        );
        let p = Positions { list };
        assert_eq!(p.id(), "room:a=7,group:g1=0");
        assert_eq!(parse_positions("").unwrap(), vec![]);
        assert!(parse_positions("room:a=x").is_err());
        assert!(parse_positions("nope").is_err());
    }

    #[test]
    fn last_event_id_wins_for_the_listed_channels() {
        let head = RequestHead {
            query: vec![("channels".into(), "room:a=1,room:b".into())],
            last_event_id: Some("room:a=4,room:b=9,room:c=2".into()),
            ..RequestHead::default()
        };
        assert_eq!(
            requested(&head, 256).unwrap(),
            vec![(ch("room:a"), Some(Seq(4))), (ch("room:b"), Some(Seq(9)))]
        );
    }

    #[test]
    fn frames_become_events_with_positions_as_ids() {
        let mut frames = Vec::new();
        response::joined(&mut frames, Some("\"room:a\""), "room:a", 3);
        let stored = storage::StoredMessage {
            seq: 4,
            from: "u".into(),
            device: "d".into(),
            client_msg_id: "c".into(),
            kind: storage::MessageKind::Text,
            text: "line\nbreak".into(),
            ts: 1,
            target: None,
            media: None,
            edited: false,
            deleted: false,
        };
        response::msg(
            &mut frames,
            "room:a",
            &response::MsgView::from_stored(&stored),
        );
        response::typing(&mut frames, "room:a", "u");
        response::error(
            &mut frames,
            Some("\"group:g\""),
            chat_proto::ErrorCode::NotMember,
            "no",
        );
        let mut positions = Positions {
            list: vec![(ch("room:a"), None), (ch("group:g"), Some(Seq(2)))],
        };
        let mut out = Vec::new();
        let used = rewrite(&frames, usize::MAX, &mut out, &mut positions);
        assert_eq!(used, frames.len());
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4);
        assert!(events[0].starts_with("id: room:a=3,group:g=2\nevent: joined\ndata: {"));
        assert!(events[1].starts_with("id: room:a=4,group:g=2\nevent: msg\ndata: {"));
        assert!(events[1].contains("line\\nbreak"), "{}", events[1]);
        assert!(events[2].starts_with("event: typing\ndata: {"));
        assert!(events[3].starts_with("id: room:a=4\nevent: error\n"));
    }

    #[test]
    fn only_whole_frames_are_taken() {
        let mut frames = Vec::new();
        response::pong(&mut frames, None);
        response::pong(&mut frames, None);
        let one = frames.len() / 2;
        let mut out = Vec::new();
        let mut p = Positions::default();
        assert_eq!(rewrite(&frames[..one + 3], 1 << 20, &mut out, &mut p), one);
        assert_eq!(
            rewrite(&frames, 1, &mut out, &mut p),
            one,
            "max stops after a frame"
        );
        let mut big = Vec::new();
        chat_proto::ws::encode_frame(
            &mut big,
            chat_proto::ws::WsOpcode::Text,
            &vec![b' '; 70_000],
            None,
        );
        assert_eq!(next_frame(&big).unwrap().2, big.len());
        assert!(next_frame(&big[..big.len() - 1]).is_none());
    }
}
