//! The connection driver: the only code that touches sockets.
//!
//! One glommio task per connection ([`drive`]) owns the socket and the
//! connection's [`Session`]; everything the connection *decides* is in the
//! session, everything it *does* is here:
//!
//! 1. **Connect** ([`connect_ws`]): a `socket2` socket, bound to the
//!    connection's loopback source address if the run spreads over several,
//!    connected non-blocking and handed to glommio (`TcpStream:
//!    From<socket2::Socket>`). The upgrade request is written at once: while
//!    the TCP handshake is in progress `send` says `EAGAIN` and glommio waits
//!    for writability, so no blocking connect is needed. The `101` response
//!    is checked (status and `Sec-WebSocket-Accept`); bytes after its head
//!    are already WebSocket frames.
//! 2. **Run**: one `poll_fn` waits for whichever comes first — the socket
//!    accepting more of the outgoing buffer, bytes to read, the session's
//!    next deadline (send schedule, ping, churn) or a phase change from the
//!    coordinator. Reads and writes are never waited on in sequence, so a
//!    gateway that stops reading our requests while it writes to us cannot
//!    deadlock the connection. Reads go through the shard's read ring
//!    (`crate::ready`: plain `recv` while the socket is marked readable, a
//!    multishot poll that marks it, no interrupt per segment) where the
//!    kernel can set one up, else through glommio; writes through glommio.
//!    Both try the syscall first and only register readiness interest, so
//!    dropping the pending poll loses nothing.
//! 3. **Close**: on the last phase the session writes a close frame; the
//!    driver flushes it (1 s at most) and drops the socket. Any other end —
//!    close frame, EOF, error, churn — goes back to the session, which
//!    schedules the reconnect.
//!
//! ## Memory per connection
//!
//! Reads go into one 64 KiB buffer per shard ([`ShardCtx::rbuf`]): a read's
//! bytes are decoded before the task awaits again, so connections never
//! hold read buffers. The decoder keeps only an incomplete trailing frame.
//! The outgoing buffer holds what the session wrote and the socket has not
//! taken yet, and shrinks back when drained.
//!
//! ## Slow consumers
//!
//! A connection with a read rate ([`Session::read_bps`]) reads no more than
//! its [`ReadThrottle`] allows and otherwise waits for it (writes are not
//! limited, so it still answers pings and sends).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chat_proto::{encode_frame, Role, WsDecoder, WsEvent, WsOpcode};
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::abuse::Abuser;
use crate::clock::Clock;
use crate::config::Target;
use crate::session::{Action, Closed, Ctx, Milestones, Phase, PhaseView, Session};
use crate::shared::Shared;
use crate::stats::ShardStats;
use crate::throttle::ReadThrottle;

/// Time allowed for TCP connect plus the HTTP upgrade.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest upgrade response head accepted, bytes.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Largest WebSocket message accepted from the server, bytes (the
/// protocol's 2 MiB plus headroom).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The shard-wide read buffer size, bytes.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// An outgoing buffer larger than this is released once drained, bytes.
const RETAINED_OUT_BYTES: usize = 64 * 1024;

/// How long the final close frame may take to flush.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Why a connection attempt failed. All are retried by the session (with
/// backoff); [`ConnectError::is_retryable`] says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be created, bound or connected, or broke during
    /// the upgrade (refused, reset, out of ports or files). Retryable.
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    /// Connect plus upgrade took longer than [`UPGRADE_TIMEOUT`]. Retryable.
    #[error("connect and upgrade timed out")]
    Timeout,
    /// The server answered the upgrade with another status (401 for bad
    /// credentials, 503 when it is full). Retryable only for 5xx.
    #[error("upgrade refused with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The response was not a valid WebSocket upgrade. Not retryable.
    #[error("bad upgrade response: {0}")]
    Handshake(String),
    /// The run ended while connecting. Not retryable (and not an error).
    #[error("the run ended while connecting")]
    Cancelled,
}

impl ConnectError {
    /// Whether trying again later can succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Io(_) | ConnectError::Timeout => true,
            ConnectError::Refused { status, .. } => *status >= 500,
            ConnectError::Handshake(_) | ConnectError::Cancelled => false,
        }
    }
}

/// How long a token signed for a connection is valid. A session outliving
/// it is closed with 4001 and reconnects with a fresh token.
pub const TOKEN_TTL_S: u64 = 24 * 3600;

/// Opens a WebSocket connection to `target` as `user`/`device` — with a
/// token signed with `token_secret` if given, else with dev auth — from
/// `source` if given. Returns the stream and the bytes already read past the
/// upgrade response (WebSocket frames). Must run on a glommio executor.
pub async fn connect_ws(
    target: &Target,
    user: &str,
    device: &str,
    token_secret: Option<&[u8]>,
    source: Option<IpAddr>,
    compress: bool,
) -> Result<Upgraded, ConnectError> {
    let domain = if target.addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    if let Some(ip) = source {
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match socket.connect(&SockAddr::from(target.addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let mut stream = TcpStream::from(socket);
    let key = tungstenite::handshake::client::generate_key();
    let token = token_secret.map(|secret| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + TOKEN_TTL_S;
        chat_proto::auth::sign(secret, user, Some(device), exp)
    });
    let request = target.upgrade_request(user, device, token.as_deref(), &key, compress);
    let handshake = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = vec![0u8; 1024];
        let mut len = 0;
        loop {
            if len == buf.len() {
                if buf.len() >= MAX_RESPONSE_HEAD {
                    return Err(ConnectError::Handshake("response head too large".into()));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(ConnectError::Handshake(
                    "connection closed during the upgrade".into(),
                ));
            }
            len += n;
            if let Some(end) = find(&buf[..len], b"\r\n\r\n") {
                let deflate =
                    check_upgrade_response(&buf[..end], &buf[end + 4..len], &key, compress)?;
                return Ok((buf[end + 4..len].to_vec(), deflate));
            }
        }
    };
    let timeout = async {
        Timer::new(UPGRADE_TIMEOUT).await;
        Err(ConnectError::Timeout)
    };
    let (leftover, deflate) = futures_lite::future::or(handshake, timeout).await?;
    Ok(Upgraded {
        stream,
        leftover,
        deflate,
    })
}

/// An upgraded connection, as [`connect_ws`] returns it.
pub struct Upgraded {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read past the upgrade response (WebSocket frames).
    pub leftover: Vec<u8>,
    /// The server accepted permessage-deflate: its messages may come
    /// compressed (RSV1), each on its own (no context takeover).
    pub deflate: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks a response head (without the final blank line) for a valid 101;
/// returns whether the server accepted permessage-deflate (an extension in
/// the answer that was not offered, or one with context takeover, is a bad
/// response: the messages could not be read).
fn check_upgrade_response(
    head: &[u8],
    after: &[u8],
    key: &str,
    offered: bool,
) -> Result<bool, ConnectError> {
    let head = std::str::from_utf8(head)
        .map_err(|_| ConnectError::Handshake("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ConnectError::Handshake(format!("bad status line {status_line:?}")))?;
    if status != 101 {
        let body = String::from_utf8_lossy(&after[..after.len().min(200)]).into_owned();
        return Err(ConnectError::Refused { status, body });
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| *v)
    };
    if header("sec-websocket-accept") != Some(expected.as_str()) {
        return Err(ConnectError::Handshake(
            "missing or wrong Sec-WebSocket-Accept".into(),
        ));
    }
    let Some(extensions) = header("sec-websocket-extensions") else {
        return Ok(false);
    };
    let params: Vec<&str> = extensions.split(';').map(str::trim).collect();
    if !offered || params.first() != Some(&"permessage-deflate") {
        return Err(ConnectError::Handshake(format!(
            "unexpected Sec-WebSocket-Extensions {extensions:?}"
        )));
    }
    if !params.contains(&"server_no_context_takeover") {
        return Err(ConnectError::Handshake(
            "permessage-deflate without server_no_context_takeover: loadgen inflates each \
             message on its own"
                .into(),
        ));
    }
    Ok(true)
}

/// What a shard's connection tasks share. Lives on one executor thread.
pub(crate) struct ShardCtx {
    /// The run clock.
    pub(crate) clock: Clock,
    /// Process-wide coordination (phase, acked heads, milestones).
    pub(crate) shared: Arc<Shared>,
    /// Where to connect: one gateway, or the nodes of a cluster (see
    /// [`drive`]).
    pub(crate) targets: Vec<Target>,
    /// Offer permessage-deflate on every connection (`--compress`).
    pub(crate) compress: bool,
    /// The shard's one decompressor for compressed server messages (each
    /// inflates on its own: no context takeover), shared by its
    /// connections.
    pub(crate) inflater: RefCell<chat_proto::deflate::Inflater>,
    /// The token secret, if the gateway wants tokens.
    pub(crate) token_secret: Option<Vec<u8>>,
    /// The shard's one read buffer (see the module docs).
    pub(crate) rbuf: RefCell<Vec<u8>>,
    /// The shard's measurements.
    pub(crate) stats: RefCell<ShardStats>,
    /// The phase epoch last copied from `shared`.
    pub(crate) epoch: Cell<u64>,
    /// The phase as of `epoch`.
    pub(crate) phase: Cell<PhaseView>,
    /// One slot per connection task: its waker, woken on a phase change.
    pub(crate) wakers: RefCell<Vec<Option<Waker>>>,
    /// Read readiness without an interrupt per segment (`crate::ready`);
    /// `None` where the kernel cannot set it up: glommio's reads then.
    pub(crate) read_ring: Option<Rc<crate::ready::ReadRing>>,
}

impl ShardCtx {
    /// Registers `slot`'s waker for phase changes (cheap when unchanged).
    fn register(&self, slot: usize, cx: &Context<'_>) {
        let mut wakers = self.wakers.borrow_mut();
        if let Some(w) = wakers.get_mut(slot) {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
    }

    /// Wakes every connection task (after a phase change).
    pub(crate) fn wake_all(&self) {
        for w in self.wakers.borrow_mut().iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    /// Calls `f` with a session context over this shard's state.
    fn with<R>(&self, out: &mut Vec<u8>, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let mut stats = self.stats.borrow_mut();
        let mut ctx = Ctx {
            now_us: self.clock.now_us(),
            phase: self.phase.get(),
            max_acked: &self.shared.max_acked,
            targets: &self.shared.targets,
            stats: &mut stats,
            out,
        };
        f(&mut ctx)
    }

    /// Polls the session and reports new milestones.
    fn poll_session(&self, session: &mut Session, out: &mut Vec<u8>) -> crate::session::Step {
        self.with(out, |ctx| {
            let step = session.poll(ctx);
            let m = session.take_milestones(ctx);
            self.report(m);
            step
        })
    }

    fn report(&self, m: Milestones) {
        if m.ready {
            self.shared.ready.fetch_add(1, Ordering::Relaxed);
        }
        if m.acked {
            self.shared.acked.fetch_add(1, Ordering::Relaxed);
        }
        if m.caught_up {
            self.shared.caught_up.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A timer re-created only when its deadline changes.
#[derive(Default)]
struct Deadline {
    timer: Option<(u64, Timer)>,
}

impl Deadline {
    fn set(&mut self, at: Option<u64>, now: u64) {
        match (at, &self.timer) {
            (Some(at), Some((current, _))) if *current == at => {}
            (Some(at), _) => {
                // At least 100 µs: a deadline in the past must not spin.
                let wait = at.saturating_sub(now).max(100);
                self.timer = Some((at, Timer::new(Duration::from_micros(wait))));
            }
            (None, _) => self.timer = None,
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|(_, t)| Pin::new(t).poll(cx).is_ready());
        if expired {
            self.timer = None;
        }
        expired
    }
}

/// Drives one connection until the run ends: connect, run, reconnect.
pub(crate) async fn drive(
    ctx: Rc<ShardCtx>,
    slot: usize,
    mut session: Session,
    source: Option<IpAddr>,
    first_target: usize,
) {
    let mut out = Vec::new();
    // Several targets (nodes of one cluster): this connection starts at
    // `first_target` and each reconnect goes to the next node, so a dead
    // node's clients move on and resume (`since`) elsewhere.
    let mut next_target = first_target;
    let mut deadline = Deadline::default();
    if session.read_bps() > 0 {
        ctx.stats.borrow_mut().counters.slow_connections += 1;
    }
    loop {
        let step = ctx.poll_session(&mut session, &mut out);
        match step.action {
            Action::Finished => {
                ctx.with(&mut out, |c| session.finish(c));
                break;
            }
            Action::Connect => {
                out.clear();
                let started_us = ctx.clock.now_us();
                let target = &ctx.targets[next_target % ctx.targets.len()];
                next_target = next_target.wrapping_add(1);
                let connect = connect_ws(
                    target,
                    session.user(),
                    session.device(),
                    ctx.token_secret.as_deref(),
                    source,
                    ctx.compress,
                );
                // A connect can take up to UPGRADE_TIMEOUT: do not hold up
                // the end of the run for it.
                let stopped = poll_fn(|cx| {
                    if ctx.phase.get().phase == Phase::Stop {
                        return Poll::Ready(Err(ConnectError::Cancelled));
                    }
                    ctx.register(slot, cx);
                    Poll::Pending
                });
                match futures_lite::future::or(connect, stopped).await {
                    Err(ConnectError::Cancelled) => {}
                    Ok(up) => {
                        ctx.with(&mut out, |c| {
                            c.stats
                                .handshake
                                .record(c.now_us.saturating_sub(started_us));
                            session.on_connected(c);
                        });
                        if run_connection(&ctx, slot, &mut session, up).await {
                            break;
                        }
                    }
                    Err(e) => ctx.with(&mut out, |c| {
                        c.stats.note_error(|| e.to_string());
                        session.on_connect_failed(c);
                    }),
                }
            }
            Action::Continue | Action::Drop | Action::Close => {
                // Down: wait for the retry time, a send to schedule or a
                // phase change.
                deadline.set(step.wake_at, ctx.clock.now_us());
                let seen = ctx.epoch.get();
                poll_fn(|cx| {
                    if ctx.epoch.get() != seen || deadline.poll_expired(cx) {
                        return Poll::Ready(());
                    }
                    ctx.register(slot, cx);
                    Poll::Pending
                })
                .await;
            }
        }
    }
    ctx.shared.finished.fetch_add(1, Ordering::Relaxed);
}

enum IoEvent {
    Wrote(usize),
    Read(usize),
    Failed,
    Wake,
}

/// Adds what the server sent on `stream` (its TCP segments) to the
/// counters, just before the connection is dropped.
fn count_segments(ctx: &ShardCtx, stream: &TcpStream) {
    use std::os::fd::AsRawFd as _;
    if let Some(t) = crate::sys::tcp_received(stream.as_raw_fd()) {
        let c = &mut ctx.stats.borrow_mut().counters;
        c.server_segments += t.segments;
        c.server_data_segments += t.data_segments;
        c.server_bytes += t.bytes;
    }
}

/// Runs one upgraded connection until it ends. Returns `true` when the run
/// is over (the session finished), `false` to reconnect.
async fn run_connection(ctx: &ShardCtx, slot: usize, session: &mut Session, up: Upgraded) -> bool {
    let Upgraded {
        mut stream,
        leftover,
        deflate,
    } = up;
    let mut decoder = WsDecoder::new(Role::Client, MAX_MESSAGE_BYTES);
    if deflate {
        decoder = decoder.with_permessage_deflate();
    }
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0usize;
    let mut deadline = Deadline::default();
    let mut throttle =
        (session.read_bps() > 0).then(|| ReadThrottle::new(session.read_bps(), ctx.clock.now_us()));
    if let Some(why) = feed(ctx, session, &mut decoder, &leftover, &mut out) {
        ctx.with(&mut out, |c| session.on_closed(c, why));
        return false;
    }
    let reads = {
        use std::os::fd::AsRawFd as _;
        ctx.read_ring
            .as_ref()
            .map(|r| r.register(slot, stream.as_raw_fd()))
    };
    loop {
        let step = ctx.poll_session(session, &mut out);
        match step.action {
            Action::Continue | Action::Connect | Action::Finished => {}
            Action::Drop => {
                let why = if session.hello_timed_out(ctx.clock.now_us()) {
                    Closed::ProtocolError
                } else {
                    Closed::Churn
                };
                count_segments(ctx, &stream);
                drop(stream);
                ctx.with(&mut out, |c| session.on_closed(c, why));
                return false;
            }
            Action::Close => {
                ctx.with(&mut Vec::new(), |c| session.finish(c));
                let flush = async {
                    let _ = stream.write_all(&out[written..]).await;
                };
                let timeout = async {
                    Timer::new(CLOSE_FLUSH).await;
                };
                futures_lite::future::or(flush, timeout).await;
                count_segments(ctx, &stream);
                drop(stream);
                ctx.with(&mut Vec::new(), |c| session.on_closed(c, Closed::Finished));
                return true;
            }
        }
        let now = ctx.clock.now_us();
        // A throttled connection reads only what its bucket allows, and
        // sleeps until it allows a useful amount.
        let read_max = match throttle.as_mut() {
            None => READ_BUFFER_BYTES,
            Some(t) => {
                let n = t.allowance(now);
                if n >= t.min_read() {
                    n.min(READ_BUFFER_BYTES)
                } else {
                    0
                }
            }
        };
        let read_wake = match &throttle {
            Some(t) if read_max == 0 => Some(t.ready_at(now)),
            _ => None,
        };
        let wake = match (step.wake_at, read_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        deadline.set(wake, now);
        let seen = ctx.epoch.get();
        let event = poll_fn(|cx| {
            if written < out.len() {
                match Pin::new(&mut stream).poll_write(cx, &out[written..]) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(IoEvent::Wrote(n)),
                    Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Failed),
                    Poll::Pending => {}
                }
            }
            if read_max > 0 {
                let mut rbuf = ctx.rbuf.borrow_mut();
                let len = read_max.min(rbuf.len());
                let read = match &reads {
                    Some(r) => r.poll_read(cx, &mut rbuf[..len]),
                    None => Pin::new(&mut stream).poll_read(cx, &mut rbuf[..len]),
                };
                match read {
                    Poll::Ready(Ok(n)) => return Poll::Ready(IoEvent::Read(n)),
                    Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Failed),
                    Poll::Pending => {}
                }
            }
            if ctx.epoch.get() != seen || deadline.poll_expired(cx) {
                return Poll::Ready(IoEvent::Wake);
            }
            ctx.register(slot, cx);
            Poll::Pending
        })
        .await;
        match event {
            IoEvent::Wrote(n) => {
                written += n;
                if written == out.len() {
                    out.clear();
                    written = 0;
                    if out.capacity() > RETAINED_OUT_BYTES {
                        out = Vec::new();
                    }
                } else if written > RETAINED_OUT_BYTES {
                    out.drain(..written);
                    written = 0;
                }
            }
            IoEvent::Read(0) | IoEvent::Failed => {
                count_segments(ctx, &stream);
                drop(stream);
                ctx.with(&mut out, |c| session.on_closed(c, Closed::Lost));
                return false;
            }
            IoEvent::Read(n) => {
                if let Some(t) = throttle.as_mut() {
                    t.consume(n);
                    ctx.stats.borrow_mut().counters.slow_bytes_read += n as u64;
                }
                let closed = {
                    let rbuf = ctx.rbuf.borrow();
                    feed(ctx, session, &mut decoder, &rbuf[..n], &mut out)
                };
                if let Some(why) = closed {
                    count_segments(ctx, &stream);
                    drop(stream);
                    ctx.with(&mut out, |c| session.on_closed(c, why));
                    return false;
                }
                // Many busy connections share the thread: let others run.
                glommio::yield_if_needed().await;
            }
            IoEvent::Wake => {}
        }
    }
}

/// Decodes `bytes` and hands each event to the session. Returns why the
/// connection ends, if it does (close frame or a decoding error).
fn feed(
    ctx: &ShardCtx,
    session: &mut Session,
    decoder: &mut WsDecoder,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Option<Closed> {
    if bytes.is_empty() {
        return None;
    }
    let mut inflater = ctx.inflater.borrow_mut();
    ctx.with(out, |c| {
        let mut closed = None;
        let result = decoder.feed_with(bytes, &mut inflater, &mut |event| {
            if closed.is_some() {
                return;
            }
            match event {
                WsEvent::Text(text) => session.on_text(c, text),
                WsEvent::Ping(payload) => {
                    let mask = session.mask();
                    encode_frame(c.out, WsOpcode::Pong, payload, Some(mask));
                }
                WsEvent::Pong(_) => {}
                WsEvent::Binary(_) => c.stats.counters.protocol_errors += 1,
                WsEvent::Close(code) => closed = Some(Closed::ByServer(code.map(|(c, _)| c))),
            }
        });
        if let Err(e) = result {
            c.stats.note_error(|| format!("websocket: {e}"));
            if closed.is_none() {
                closed = Some(Closed::ProtocolError);
            }
        }
        let m = session.take_milestones(c);
        ctx.report(m);
        closed
    })
}

/// Drives one abusive connection ([`crate::abuse`]) until the send phase
/// is over: connect, act, reconnect when the gateway closes it. Nothing of
/// it reaches the run's milestones, checks or error counts; its numbers go
/// to the shard's [`crate::abuse::AbuseStats`].
pub(crate) async fn drive_abuser(ctx: Rc<ShardCtx>, slot: usize, mut abuser: Abuser) {
    let mut deadline = Deadline::default();
    let mut out = Vec::new();
    loop {
        let now = ctx.clock.now_us();
        let step = abuser.poll(
            now,
            &ctx.phase.get(),
            &mut out,
            &mut ctx.stats.borrow_mut().abuse,
        );
        match step.action {
            Action::Finished | Action::Close => break,
            Action::Connect => {
                let connect = connect_ws(
                    &ctx.targets[slot % ctx.targets.len()],
                    abuser.user(),
                    abuser.device(),
                    ctx.token_secret.as_deref(),
                    None,
                    false,
                );
                let stopped = poll_fn(|cx| {
                    if ctx.phase.get().phase >= Phase::Drain {
                        return Poll::Ready(Err(ConnectError::Cancelled));
                    }
                    ctx.register(slot, cx);
                    Poll::Pending
                });
                match futures_lite::future::or(connect, stopped).await {
                    Err(ConnectError::Cancelled) => break,
                    Ok(up) => {
                        abuser.on_connected(ctx.clock.now_us(), &mut ctx.stats.borrow_mut().abuse);
                        if abuse_connection(&ctx, slot, &mut abuser, up.stream, &up.leftover).await
                        {
                            break;
                        }
                    }
                    Err(_) => abuser
                        .on_connect_failed(ctx.clock.now_us(), &mut ctx.stats.borrow_mut().abuse),
                }
            }
            Action::Continue | Action::Drop => {
                deadline.set(step.wake_at, now);
                let seen = ctx.epoch.get();
                poll_fn(|cx| {
                    if ctx.epoch.get() != seen || deadline.poll_expired(cx) {
                        return Poll::Ready(());
                    }
                    ctx.register(slot, cx);
                    Poll::Pending
                })
                .await;
            }
        }
    }
}

/// One connection of an abuser. Returns `true` when the abuser is done
/// (sending is over), `false` to reconnect.
async fn abuse_connection(
    ctx: &ShardCtx,
    slot: usize,
    abuser: &mut Abuser,
    mut stream: TcpStream,
    leftover: &[u8],
) -> bool {
    let mut decoder = WsDecoder::new(Role::Client, MAX_MESSAGE_BYTES);
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0usize;
    let mut deadline = Deadline::default();
    let mut pending = leftover.to_vec();
    loop {
        if !pending.is_empty() {
            let closed = abuse_feed(ctx, abuser, &mut decoder, &pending, &mut out);
            pending.clear();
            if let Some(why) = closed {
                abuser.on_closed(ctx.clock.now_us(), why, &mut ctx.stats.borrow_mut().abuse);
                return false;
            }
        }
        let now = ctx.clock.now_us();
        let step = abuser.poll(
            now,
            &ctx.phase.get(),
            &mut out,
            &mut ctx.stats.borrow_mut().abuse,
        );
        match step.action {
            Action::Close => {
                let flush = async {
                    let _ = stream.write_all(&out[written..]).await;
                };
                let timeout = async {
                    Timer::new(CLOSE_FLUSH).await;
                };
                futures_lite::future::or(flush, timeout).await;
                return true;
            }
            Action::Drop => {
                abuser.on_closed(now, Closed::Churn, &mut ctx.stats.borrow_mut().abuse);
                return false;
            }
            Action::Continue | Action::Connect | Action::Finished => {}
        }
        deadline.set(step.wake_at, now);
        let seen = ctx.epoch.get();
        let event = poll_fn(|cx| {
            if written < out.len() {
                match Pin::new(&mut stream).poll_write(cx, &out[written..]) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(IoEvent::Wrote(n)),
                    Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Failed),
                    Poll::Pending => {}
                }
            }
            let mut rbuf = ctx.rbuf.borrow_mut();
            match Pin::new(&mut stream).poll_read(cx, &mut rbuf[..]) {
                Poll::Ready(Ok(n)) => return Poll::Ready(IoEvent::Read(n)),
                Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Failed),
                Poll::Pending => {}
            }
            if ctx.epoch.get() != seen || deadline.poll_expired(cx) {
                return Poll::Ready(IoEvent::Wake);
            }
            ctx.register(slot, cx);
            Poll::Pending
        })
        .await;
        match event {
            IoEvent::Wrote(n) => {
                written += n;
                if written == out.len() {
                    out.clear();
                    written = 0;
                    if out.capacity() > RETAINED_OUT_BYTES {
                        out = Vec::new();
                    }
                }
            }
            IoEvent::Read(0) | IoEvent::Failed => {
                abuser.on_closed(
                    ctx.clock.now_us(),
                    Closed::Lost,
                    &mut ctx.stats.borrow_mut().abuse,
                );
                return false;
            }
            IoEvent::Read(n) => {
                pending.extend_from_slice(&ctx.rbuf.borrow()[..n]);
                glommio::yield_if_needed().await;
            }
            IoEvent::Wake => {}
        }
    }
}

/// Decodes `bytes` for an abuser; returns why the connection ends, if it
/// does. Pings are answered (a close would otherwise wait on them).
fn abuse_feed(
    ctx: &ShardCtx,
    abuser: &mut Abuser,
    decoder: &mut WsDecoder,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Option<Closed> {
    let mut stats = ctx.stats.borrow_mut();
    let mut closed = None;
    let result = decoder.feed(bytes, &mut |event| {
        if closed.is_some() {
            return;
        }
        match event {
            WsEvent::Text(text) => abuser.on_text(text, &mut stats.abuse),
            WsEvent::Ping(payload) => {
                let mask = abuser.mask();
                encode_frame(out, WsOpcode::Pong, payload, Some(mask));
            }
            WsEvent::Pong(_) | WsEvent::Binary(_) => {}
            WsEvent::Close(code) => closed = Some(Closed::ByServer(code.map(|(c, _)| c))),
        }
    });
    if result.is_err() && closed.is_none() {
        closed = Some(Closed::ProtocolError);
    }
    closed
}
