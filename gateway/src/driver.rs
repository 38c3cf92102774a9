//! A WebSocket session: admission (token or dev auth), the upgrade, and the
//! connection driver — the one future per connection (a task of its own
//! once the handshake is done, so that it holds nothing of the handshake)
//! that moves the core's
//! outbox to the socket (one write of everything queued) and the socket's
//! bytes into the core (the shard's one shared read buffer, decoded in
//! place). The driver asks the core what to do ([`ShardState::session`]);
//! it never decides a protocol rule itself.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::rt::net::TcpStream;
use chat_core::{Config, ConnId, ShardState};
use chat_proto::auth::{self, AuthError, Identity};
use chat_proto::deflate;
use chat_proto::http::{self, RequestHead};
use chat_proto::names;
use chat_proto::ws::{Role, WsDecoder, WsError};
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::listener::Slot;
use crate::shard_task::Shard;
use crate::util::{now_ms, write_and_close};

/// Who is connecting: a verified token when a secret is configured, else
/// dev auth (`?user=&device=`, loopback only — enforced at start).
pub(crate) fn authenticate(cfg: &Config, head: &RequestHead) -> Result<Identity, AuthError> {
    match cfg.auth_secret.as_deref() {
        Some(secret) => {
            let token = head
                .bearer_token()
                .or_else(|| head.query_param("token"))
                .ok_or(AuthError::Missing)?;
            auth::verify(secret.as_bytes(), token, now_ms())
        }
        None => {
            let user = head.query_param("user").unwrap_or("");
            let device = head.query_param("device").unwrap_or("default");
            if !names::is_valid_id(user) || !names::is_valid_id(device) {
                return Err(AuthError::DevIds);
            }
            Ok(Identity {
                user: user.to_string(),
                device: device.to_string(),
                expires_ms: None,
            })
        }
    }
}

/// Authenticates a request; on failure counts it, answers 401 (with the
/// CORS headers of an allowed `cors` origin, so the page can read why) and
/// closes.
pub(crate) async fn admit(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    head: &RequestHead,
    cors: Option<&str>,
) -> Option<Identity> {
    match admit_or_refuse(shard, head, cors) {
        Ok(id) => Some(id),
        Err(refusal) => {
            write_and_close(stream, &refusal).await;
            None
        }
    }
}

/// Authenticates a request, or counts the failure and returns the 401 to
/// answer with.
fn admit_or_refuse(
    shard: &Shard,
    head: &RequestHead,
    cors: Option<&str>,
) -> Result<Identity, Vec<u8>> {
    authenticate(&shard.cfg, head).map_err(|e| {
        shard
            .global
            .stats
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
        http::Reply::error(401, "unauthorized", &e.to_string()).encode(http::ConnHeaders {
            persist: http::Persist::Close,
            cors_origin: cors,
        })
    })
}

/// An accepted upgrade: the connection is open in the core and its
/// `hello` queued.
pub(crate) struct Upgraded {
    pub(crate) conn: ConnId,
    /// The 101 with the `hello` appended: one write, one segment.
    pub(crate) reply: Vec<u8>,
    /// How many of `reply`'s bytes are the `hello` (the core's outbox;
    /// report them with `wrote` once written).
    pub(crate) greeting_len: usize,
    /// The session's decoder (with permessage-deflate when negotiated).
    pub(crate) decoder: WsDecoder,
}

/// Decides an upgrade request without any I/O: checks it, authenticates
/// it, refuses it while draining, negotiates permessage-deflate and opens
/// the connection in the core. `Err` is the response to answer with before
/// closing. Both ways of serving sockets use it: a task with an
/// `rt::net::TcpStream` ([`upgrade`]) and the socket ring (`ring.rs`),
/// which answers the upgrade itself.
pub(crate) fn decide_upgrade(shard: &Rc<Shard>, head: &RequestHead) -> Result<Upgraded, Vec<u8>> {
    if head.method != "GET" || !head.upgrade_websocket || head.ws_version.as_deref() != Some("13") {
        return Err(http::json_error_response(
            400,
            "bad_request",
            "expected a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Version: 13)",
        ));
    }
    let Some(key) = head.ws_key.as_deref() else {
        return Err(http::json_error_response(
            400,
            "bad_request",
            "missing Sec-WebSocket-Key",
        ));
    };
    let identity = admit_or_refuse(shard, head, None)?;
    if shard.state.borrow().is_draining() {
        return Err(http::json_error_response(
            503,
            "unavailable",
            "server shutting down",
        ));
    }
    // permessage-deflate: the first offer we can honour, if any (else plain
    // frames, as for a client that offers nothing).
    let deflate = if shard.cfg.permessage_deflate {
        head.ws_extensions.as_deref().and_then(deflate::negotiate)
    } else {
        None
    };
    let extensions = deflate.map(|n| n.response_header());
    let conn = shard.with(|st| {
        let conn = st.open_conn(&identity, now_ms());
        if deflate.is_some() {
            st.use_permessage_deflate(conn);
        }
        conn
    });
    // The `hello` the session starts with goes out with the 101, in one
    // write (one segment; the client reads both at once). Whatever is
    // queued after it is the session's to write.
    let mut reply = http::upgrade_response_with(key, extensions.as_deref());
    let greeting = shard.state.borrow().output_bytes(conn);
    reply.extend_from_slice(&greeting);
    let mut decoder = WsDecoder::new(Role::Server, shard.cfg.max_frame_bytes);
    if deflate.is_some() {
        decoder = decoder.with_permessage_deflate();
    }
    Ok(Upgraded {
        conn,
        reply,
        greeting_len: greeting.len(),
        decoder,
    })
}

/// Upgrades to WebSocket and runs the session until it ends.
pub(crate) async fn upgrade(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    slot: Slot,
) {
    let up = match decide_upgrade(&shard, &head) {
        Ok(up) => up,
        Err(refusal) => return write_and_close(&mut stream, &refusal).await,
    };
    let Upgraded {
        conn,
        reply,
        greeting_len,
        decoder,
    } = up;
    if stream.write_all(&reply).await.is_err() {
        shard.with(|st| st.close_conn(conn, now_ms()));
        return;
    }
    shard.with(|st| st.wrote(conn, greeting_len, now_ms()));
    if let Some(ring) = shard.ring.clone() {
        // The shard's socket ring drives the session (`ring.rs`).
        return ring.adopt_stream(&shard, stream, conn, decoder, &rest, slot);
    }
    let mut driver = Driver {
        shard: shard.clone(),
        conn,
        stream,
        decoder,
        closing: false,
        last_write: crate::flush::NEVER,
        flush_ticket: None,
        holding: false,
    };
    if !rest.is_empty() {
        driver.feed(&rest);
    }
    // The session is a task of its own: what the handshake and the routing
    // held (the request head, their futures) is freed now. An idle
    // connection then costs this small future and the core's state.
    crate::rt::spawn(session(shard, driver, slot)).detach();
}

/// Runs an upgraded WebSocket session until it ends; `_slot` counts it as
/// a connection until then.
async fn session(shard: Rc<Shard>, mut driver: Driver, _slot: Slot) {
    let conn = driver.conn;
    let end = (&mut driver).await;
    shard.forget(conn);
    shard.with(|st| st.close_conn(conn, now_ms()));
    let mut stream = driver.stream;
    if end == SessionEnd::CloseSent {
        // Boxed: its 4 KiB sink exists only while lingering.
        Box::pin(linger(&shard.cfg, &mut stream)).await;
    }
    let _ = stream.close().await;
}

/// After our close frame: half-close and discard what the client still
/// sends (bounded by `close_linger_ms` and 8 MiB), so that a client in the
/// middle of writing reads the close frame instead of a reset.
async fn linger(cfg: &Config, stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = crate::rt::timeout(Duration::from_millis(cfg.close_linger_ms), async {
        let mut sink = vec![0u8; 4096];
        let mut total = 0usize;
        while total < 8 * 1024 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// How a WebSocket session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The peer closed the socket, or it failed, or it was cut off.
    PeerGone,
    /// We wrote a close frame.
    CloseSent,
}

/// The poll-driven half of a WebSocket session.
struct Driver {
    shard: Rc<Shard>,
    conn: ConnId,
    stream: TcpStream,
    decoder: WsDecoder,
    /// The close frame is queued; finish once it is written.
    closing: bool,
    /// When the last write was, on the flush clock ([`crate::flush`]).
    last_write: u64,
    /// Held until the flush tick passes (the ticket of
    /// [`crate::flush::FlushTick::wait`]).
    flush_ticket: Option<u64>,
    /// The last [`Driver::write`] held output for the flush tick: the flush
    /// clock wakes the driver, not the outbox.
    holding: bool,
}

pub(crate) fn close_reason(e: &WsError) -> &'static str {
    match e {
        WsError::TooBig => "frame too big",
        WsError::InvalidUtf8 => "invalid UTF-8",
        WsError::Protocol(m) => m,
    }
}

impl Driver {
    /// Decodes bytes that came with the upgrade request.
    fn feed(&mut self, bytes: &[u8]) {
        let now = now_ms();
        let conn = self.conn;
        let mut st = self.shard.state.borrow_mut();
        let mut inflater = self.shard.inflater.borrow_mut();
        let result = self.decoder.feed_with(bytes, &mut inflater, &mut |ev| {
            st.on_ws_event(conn, ev, now)
        });
        drop(inflater);
        if let Err(e) = result {
            st.on_ws_error(conn, e.close_code(), close_reason(&e), now);
        }
        drop(st);
        self.shard.apply_effects();
    }

    /// Writes what the outbox holds, as long as the socket takes it.
    /// Returns (progressed, write_blocked), or the end of the session.
    fn write(
        &mut self,
        st: &mut ShardState,
        cx: &mut Context<'_>,
    ) -> Result<(bool, bool), SessionEnd> {
        let mut progressed = false;
        self.holding = false;
        loop {
            let mut iov = [std::io::IoSlice::new(&[]); 64];
            let pieces = st.output(self.conn, &mut iov);
            if pieces == 0 {
                return Ok((progressed, false));
            }
            let flush = &self.shard.flush;
            if !progressed {
                if let Some(due) = flush.held_until(self.last_write) {
                    // Wrote less than a flush tick ago: everything queued
                    // goes in one write once the tick has passed.
                    if !self.flush_ticket.is_some_and(|t| flush.still_waiting(t)) {
                        self.flush_ticket = Some(flush.wait(cx.waker(), due));
                    }
                    self.holding = true;
                    return Ok((false, true));
                }
            }
            // The runtime's stream has no vectored write (its
            // `poll_write_vectored` is the default, the first piece only):
            // several pieces (own bytes and shared frames, `conn.rs`) go
            // through the shard's one scratch buffer so that they are still
            // one write.
            let written = if pieces == 1 {
                Pin::new(&mut self.stream).poll_write(cx, &iov[0])
            } else {
                WRITE_SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    for piece in &iov[..pieces] {
                        scratch.extend_from_slice(piece);
                    }
                    let r = Pin::new(&mut self.stream).poll_write(cx, scratch);
                    if scratch.capacity() > 256 * 1024 {
                        *scratch = Vec::new();
                    }
                    r
                })
            };
            match written {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(SessionEnd::PeerGone),
                Poll::Ready(Ok(n)) => {
                    progressed = true;
                    self.last_write = flush.now_us();
                    st.wrote(self.conn, n, now_ms());
                }
                Poll::Pending => return Ok((progressed, true)),
            }
        }
    }
}

thread_local! {
    /// The shard's buffer for gathering an outbox's pieces into one write
    /// (task-per-session driver only; the socket ring uses `sendmsg`).
    static WRITE_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Future for &mut Driver {
    type Output = SessionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = &mut **self.get_mut();
        let conn = this.conn;
        // Bounded work per poll so one busy connection cannot starve others.
        for _ in 0..32 {
            // 0. Requests waiting for admission go before anything else: a
            // reply, an ack or a drained outbox may have made room for them.
            if this.shard.state.borrow().has_queued(conn) {
                this.shard.with(|st| st.admit_queued(conn, now_ms()));
            }
            // 1. Write everything queued, in one write when the socket takes
            // it; close once everything owed is out.
            let (mut progressed, write_blocked) = {
                let shard = this.shard.clone();
                let mut st = shard.state.borrow_mut();
                let Some(s) = st.session(conn) else {
                    return Poll::Ready(SessionEnd::PeerGone);
                };
                if s.kill {
                    // The peer stopped taking bytes: drop the socket.
                    return Poll::Ready(SessionEnd::PeerGone);
                }
                let (progressed, write_blocked) = match this.write(&mut st, cx) {
                    Ok(r) => r,
                    Err(end) => return Poll::Ready(end),
                };
                let Some(s) = st.session(conn) else {
                    return Poll::Ready(SessionEnd::PeerGone);
                };
                if s.pending == 0 {
                    if this.closing {
                        return Poll::Ready(SessionEnd::CloseSent);
                    }
                    if s.closing.is_some() && st.queue_close_frame(conn).is_some() {
                        this.closing = true;
                        drop(st);
                        shard.apply_effects();
                        continue;
                    }
                }
                // 2. Read, unless closing, draining, or the requests waiting
                // for admission reached their bound (then the rest waits in
                // the kernel).
                if this.closing || s.reads_paused {
                    if !progressed {
                        if !this.holding {
                            shard.park(&mut st, conn, cx.waker());
                        }
                        return Poll::Pending;
                    }
                    drop(st);
                    shard.apply_effects();
                    continue;
                }
                (progressed, write_blocked)
            };
            this.shard.apply_effects();
            let read = {
                let mut buf = this.shard.read_buf.borrow_mut();
                match Pin::new(&mut this.stream).poll_read(cx, &mut buf[..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(SessionEnd::PeerGone)
                    }
                    Poll::Ready(Ok(n)) => Some(n),
                    Poll::Pending => None,
                }
            };
            if let Some(n) = read {
                let now = now_ms();
                let mut buf = this.shard.read_buf.borrow_mut();
                let mut st = this.shard.state.borrow_mut();
                let mut inflater = this.shard.inflater.borrow_mut();
                // Unmasks in place: complete frames are never copied
                // (compressed messages are inflated by the shard's one
                // inflater, within `max_frame_bytes`).
                let result = this
                    .decoder
                    .feed_mut_with(&mut buf[..n], &mut inflater, &mut |ev| {
                        st.on_ws_event(conn, ev, now)
                    });
                drop(inflater);
                if let Err(e) = result {
                    st.on_ws_error(conn, e.close_code(), close_reason(&e), now);
                }
                drop(st);
                drop(buf);
                this.shard.apply_effects();
                progressed = true;
            }
            if !progressed {
                let shard = this.shard.clone();
                let mut st = shard.state.borrow_mut();
                let Some(s) = st.session(conn) else {
                    return Poll::Ready(SessionEnd::PeerGone);
                };
                let queued = s.pending > 0 && !write_blocked;
                if queued || (s.closing.is_some() && !this.closing && !write_blocked) {
                    // Something was queued while we read: go round again.
                    continue;
                }
                if !this.holding {
                    // Held output is woken by the flush tick; otherwise the
                    // next change of the outbox wakes us.
                    shard.park(&mut st, conn, cx.waker());
                }
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
