//! The shard's socket ring: every upgraded WebSocket session of the shard
//! driven by one io_uring of the shard's own (`socket_ring`, on by default),
//! instead of a task and `TcpStream` per connection
//! (`driver.rs`, kept for `socket_ring = false`).
//!
//! Why: an idle connection then costs what the protocol needs and nothing
//! of the runtime's. A session as a task of its own is a task (its future
//! and header), a stream with its pending readiness poll, and a waker in
//! the shard's map while parked; under glommio (the executor before
//! 2026-12-05) that was a ~0.7 KB future and header and a `TcpStream`
//! with an armed readiness `Source` (~0.45 KB), and measured with
//! heaptrack at 10,000 idle connections ~1.3 KB of the ~2 KB of heap each
//! connection held (`docs/capacity.md`; not measured again on the shard
//! runtime). Here a session is one entry in the shard's session map — its
//! fd, its WebSocket decoder and a few flags — and one multishot
//! `POLL_ADD` in the kernel that stays armed for the connection's life.
//!
//! How it runs:
//! - **Arrival.** The ring accepts the shard's connections itself and
//!   answers the WebSocket upgrade (`accept.rs`); a connection whose first
//!   request is anything else goes to the listener's HTTP path (a task
//!   with an `rt::net::TcpStream`), and one upgraded there later (an HTTP
//!   connection kept alive, then upgraded) is adopted from its stream
//!   (`adopt_stream`).
//! - **Reads.** Each socket has one multishot poll for `POLLIN|POLLRDHUP`.
//!   A readiness completion marks the session readable and queues it ahead
//!   of sessions that only write (up to `READ_BURST` in a row, so writes
//!   still progress under a flood of input); servicing it reads
//!   with plain `recv` calls into the shard's one read buffer
//!   (`read_chunk_bytes`) and decodes in place, as the task driver
//!   (`driver.rs`) does.
//!   A short read means the socket was drained at that instant: any later
//!   byte wakes the poll again, so nothing is missed.
//! - **Writes.** A session whose outbox changed is serviced once per turn
//!   and writes everything queued in one `sendmsg` (the outbox's own bytes
//!   and the shared batches' frames it holds by reference, as one list of
//!   slices; a plain `send` when there is one slice); only when the socket
//!   is full does it arm a one-shot `POLLOUT`. The outbox is the core's (`ShardState::output`), written
//!   synchronously, so no buffer has to outlive a submission. A session
//!   woken only to write (nothing to read, not closing: a member of a busy
//!   room) takes the core's write pass (`ShardState::write_pass`): one
//!   lookup of its connection, the writes, the accounting and the parking
//!   in one call, the session left in place; the general loop (`drive`)
//!   runs only when more is due. While one session is written, the next
//!   ones' state is prefetched (`prefetch_next`; `docs/benchmarks.md`,
//!   "The write pass and prefetching").
//! - **Waking.** The core's woken connections ([`Shard::apply_effects`]) and
//!   the flush tick put sessions on the ring's ready queue; completions do
//!   too. One task per shard (`run`) reaps completions, services the ready
//!   sessions (yielding to the executor when it asks, so the shard's control
//!   queue keeps its latency), submits what it queued with one
//!   `io_uring_enter`, and sleeps until either the ring's eventfd (polled
//!   on the shard runtime's ring and read non-blocking by a task of its
//!   own, `forward_completions`, so the shard's executor sleeps in one
//!   place) or the ready queue wakes it. The ring is set up with
//!   cooperative task running (`IORING_SETUP_COOP_TASKRUN`): a socket
//!   becoming readable while the shard runs does not interrupt it with an
//!   IPI — the kernel posts the completion at the shard's next syscall, and
//!   wakes a sleeping shard as before.
//! - **The rules are the task driver's, step for step** (`service` is
//!   `driver.rs`'s poll loop): admission of queued requests first, then one
//!   write of everything queued, close once everything owed is out, reads
//!   paused while closing, draining or over the queued-request bound,
//!   bounded work per service. After a close frame the session lingers
//!   (write side shut, reads discarded, ≤ `close_linger_ms` and 8 MiB) so a
//!   client in the middle of writing reads the close instead of a reset;
//!   its connection slot is held until the fd is closed.
//! - **Ending.** The poll is cancelled (io_uring holds a file reference
//!   while a poll is armed, so a plain `close` would not release the
//!   socket), then the fd is closed. Completion `user_data` carries the
//!   `ConnId`, whose slot a later connection gets only under another
//!   generation, so a late completion of an ended session finds nothing.
//! - **Where sessions are.** In a table indexed by the slot in their
//!   connection's id (`ConnTable`, following the core's `ConnSlab`), so
//!   a service finds its session — and prefetches the next one's — without
//!   a hash. A session that closed its connection leaves the table in the
//!   same step; one that lingers stays, its connection closed with the slot
//!   held (`close_conn_held`), and releases the slot when it ends
//!   (`finish`), so no new connection is given a slot still in use here.
//!
//! Each `unsafe` block is a plain libc call on an fd this module owns, or
//! an io_uring submission whose entries reference no memory (polls and
//! cancels carry only an fd and flags).

#![allow(unsafe_code)]

mod accept;

pub(crate) use accept::Listening;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::task::{RawWaker, RawWakerVTable, Waker};
use std::time::Duration;

use chat_core::slots::ConnTable;
use chat_core::{ConnId, Soon, WritePass};
use chat_proto::ws::WsDecoder;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::driver::{close_reason, SessionEnd};
use crate::listener::Slot;
use crate::shard_task::Shard;
use crate::util::{now_ms, Notify};

/// Submission queue entries (the completion queue is 4× this; the kernel
/// buffers completions past it rather than dropping them).
const SQ_ENTRIES: u32 = 4096;
/// Readable sessions served in a row while write-only ones wait: reads
/// come first, but a flood of them cannot stop the writes (which then get
/// one service in `READ_BURST + 1`).
const READ_BURST: u32 = 16;
/// Bytes a lingering session may still discard before it is closed.
const LINGER_MAX_BYTES: usize = 8 * 1024 * 1024;

/// What a completion is about (the top two bits of its `user_data`; the
/// rest is the `ConnId` of a session, or the id of a handshake).
const KIND_SHIFT: u32 = 62;
/// A session's socket is readable.
const KIND_READ: u64 = 0;
/// A full session socket takes bytes again.
const KIND_WRITE: u64 = 1;
/// A handshake's socket is readable (`accept.rs`).
const KIND_HEAD: u64 = 2;
/// The listener's multishot accept (`accept.rs`); no id.
const KIND_ACCEPT: u64 = 3;
/// The completions nobody waits for (cancels): no connection or handshake
/// has id 0, so this is `user_data(KIND_READ, ConnId(0))` of no session.
const IGNORED: u64 = 0;
const CONN_MASK: u64 = (1 << KIND_SHIFT) - 1;

fn user_data(kind: u64, conn: ConnId) -> u64 {
    (kind << KIND_SHIFT) | (conn.0 & CONN_MASK)
}

/// One upgraded WebSocket session on the ring.
struct Session {
    fd: RawFd,
    decoder: WsDecoder,
    /// The socket had bytes (or an error or hang-up) when last polled and
    /// has not been read short since.
    readable: bool,
    /// The close frame is queued; finish once it is written.
    closing: bool,
    /// A one-shot `POLLOUT` is armed.
    write_armed: bool,
    /// The last write stopped on a full socket.
    write_blocked: bool,
    /// The last service held output for the flush tick.
    holding: bool,
    /// When the last write was, on the flush clock.
    last_write: u64,
    /// The ticket of a wait on the flush tick.
    flush_ticket: Option<u64>,
    /// Lingering after our close frame: bytes discarded so far.
    lingering: Option<usize>,
    /// Counts the connection until its fd is closed.
    _slot: Slot,
}

/// The shard's ring and its sessions (`Shard::ring`).
pub(crate) struct Ring {
    uring: RefCell<IoUring>,
    /// At the slots of their connections' ids (the core's `ConnSlab`
    /// assigns them): an idle session costs its entry and nothing beside
    /// it, and finding one is an index. A lingering session keeps its
    /// slot held in the core until it ends.
    sessions: RefCell<ConnTable<Session>>,
    /// Sessions to service, in order; duplicates are harmless (a session
    /// with nothing to do parks again).
    ready: RefCell<VecDeque<ConnId>>,
    /// Sessions whose socket became readable, served before `ready` (at
    /// most [`READ_BURST`] in a row while `ready` waits): a request is read
    /// within one batch of services instead of after a whole round of a
    /// big room's writes, so its commit — and the fan-out it starts —
    /// begins that much sooner.
    readable: RefCell<VecDeque<ConnId>>,
    /// Wakes the ring task when the ready queue gains a session.
    wake: Notify,
    /// Lingering sessions by deadline (ms), oldest first (one linger time
    /// for all, so pushing keeps the order).
    lingering: RefCell<VecDeque<(u64, ConnId)>>,
    /// The eventfd the kernel signals on every completion; a task of the
    /// ring's polls it on the shard runtime's ring and reads it
    /// (`forward_completions`).
    event_fd: RawFd,
    /// Submissions queued since the last `io_uring_enter`.
    unsubmitted: Cell<u32>,
    /// Accepting and reading request heads (`accept.rs`).
    accept: accept::Acceptor,
}

impl Ring {
    /// A ring for one shard, or the error that keeps the shard on one task
    /// per session (`driver.rs`; the caller logs it).
    pub(crate) fn new() -> std::io::Result<Ring> {
        // Cooperative task running: a completion (a socket became readable)
        // does not interrupt the shard with an IPI while it runs; the
        // kernel posts it at the shard's next syscall, and wakes the shard
        // as before when it sleeps. Kernels before 5.19 refuse the flag:
        // the ring then interrupts as it did.
        let uring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .setup_coop_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 4)
                    .build(SQ_ENTRIES)
            })?;
        // The ring signals this eventfd per completion; the runtime polls
        // it and a task reads it (`forward_completions`, which makes the
        // shared file non-blocking: the read must not block the shard).
        let event_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if event_fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Err(e) = uring.submitter().register_eventfd(event_fd) {
            unsafe { libc::close(event_fd) };
            return Err(e);
        }
        Ok(Ring {
            uring: RefCell::new(uring),
            sessions: RefCell::new(ConnTable::default()),
            ready: RefCell::new(VecDeque::new()),
            readable: RefCell::new(VecDeque::new()),
            wake: Notify::default(),
            lingering: RefCell::new(VecDeque::new()),
            event_fd,
            unsubmitted: Cell::new(0),
            accept: accept::Acceptor::default(),
        })
    }

    /// Puts a session on the ready queue (the core changed its outbox, the
    /// flush tick passed, or shutdown).
    pub(crate) fn wake(&self, conn: ConnId) {
        self.ready.borrow_mut().push_back(conn);
        self.wake.notify();
    }

    /// Puts sessions on the ready queue, in order (the core's woken list).
    pub(crate) fn wake_many(&self, conns: &[ConnId]) {
        self.ready.borrow_mut().extend(conns.iter().copied());
        self.wake.notify();
    }

    /// The next session to service: a readable one first, unless
    /// [`READ_BURST`] were served in a row while others wait.
    fn next_ready(&self, reads_in_a_row: &mut u32) -> Option<ConnId> {
        if *reads_in_a_row < READ_BURST {
            if let Some(conn) = self.readable.borrow_mut().pop_front() {
                *reads_in_a_row += 1;
                return Some(conn);
            }
        }
        *reads_in_a_row = 0;
        let next = self.ready.borrow_mut().pop_front();
        next.or_else(|| self.readable.borrow_mut().pop_front())
    }

    /// Puts every session on the ready queue (shutdown).
    pub(crate) fn wake_all(&self) {
        let conns: Vec<ConnId> = self.sessions.borrow().keys().collect();
        self.ready.borrow_mut().extend(conns);
        self.wake.notify();
    }

    /// Takes over a connection upgraded on the runtime's stream (a kept-alive
    /// HTTP connection whose next request was the upgrade): the stream's fd
    /// is duplicated, then the stream dropped; see [`Ring::adopt`].
    pub(crate) fn adopt_stream(
        &self,
        shard: &Rc<Shard>,
        stream: crate::rt::net::TcpStream,
        conn: ConnId,
        decoder: WsDecoder,
        rest: &[u8],
        slot: Slot,
    ) {
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        drop(stream);
        self.adopt(shard, fd, conn, decoder, rest, slot);
    }

    /// Takes over an upgraded connection's socket `fd` (its `101` and
    /// `hello` written); `decoder` is the session's (with
    /// permessage-deflate when the upgrade negotiated it); `rest` are
    /// bytes that came with the upgrade request.
    fn adopt(
        &self,
        shard: &Rc<Shard>,
        fd: RawFd,
        conn: ConnId,
        decoder: WsDecoder,
        rest: &[u8],
        slot: Slot,
    ) {
        if fd < 0 {
            // Out of fds: the session cannot continue.
            drop(slot);
            shard.with(|st| st.close_conn(conn, now_ms()));
            return;
        }
        let mut session = Session {
            fd,
            decoder,
            // Not read until the poll says so: a poll armed on a socket
            // that already has bytes (or its EOF) completes at once, so a
            // first `recv` here would only find nothing (the client waits
            // for the `hello` before it sends) — one syscall per
            // connection saved.
            readable: false,
            closing: false,
            write_armed: false,
            write_blocked: false,
            holding: false,
            last_write: crate::flush::NEVER,
            flush_ticket: None,
            lingering: None,
            _slot: slot,
        };
        if !rest.is_empty() {
            let now = now_ms();
            let mut st = shard.state.borrow_mut();
            let mut inflater = shard.inflater.borrow_mut();
            let result = session
                .decoder
                .feed_with(rest, &mut inflater, &mut |ev| st.on_ws_event(conn, ev, now));
            drop(inflater);
            if let Err(e) = result {
                st.on_ws_error(conn, e.close_code(), close_reason(&e), now);
            }
        }
        self.arm_read(conn, fd);
        self.sessions.borrow_mut().insert(conn, session);
        self.wake(conn);
        shard.apply_effects();
    }

    fn push(&self, entry: squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // Safety: the entries pushed here (polls, cancels) reference no
            // memory of ours; their fds stay open until the poll is
            // cancelled or completed.
            if unsafe { uring.submission().push(&entry) }.is_ok() {
                self.unsubmitted.set(self.unsubmitted.get() + 1);
                return;
            }
            // The submission queue is full: hand it to the kernel first.
            let _ = uring.submit();
            self.unsubmitted.set(0);
        }
    }

    fn arm_read(&self, conn: ConnId, fd: RawFd) {
        let flags = (libc::POLLIN | libc::POLLRDHUP) as u32;
        self.push(
            opcode::PollAdd::new(types::Fd(fd), flags)
                .multi(true)
                .build()
                .user_data(user_data(KIND_READ, conn)),
        );
    }

    fn arm_write(&self, conn: ConnId, fd: RawFd) {
        self.push(
            opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
                .build()
                .user_data(user_data(KIND_WRITE, conn)),
        );
    }

    fn cancel(&self, target: u64) {
        self.push(opcode::AsyncCancel::new(target).build().user_data(IGNORED));
    }

    fn submit(&self) {
        if self.unsubmitted.get() > 0 {
            let _ = self.uring.borrow_mut().submit();
            self.unsubmitted.set(0);
        }
    }

    /// Takes the completions the kernel posted: marks sessions readable or
    /// writable and queues them. When the completion queue overflowed (a
    /// burst of more readiness completions than it holds between two
    /// reaps: thousands of clients writing at once), the kernel keeps the
    /// rest — among them the last completion of each multishot poll it
    /// ended for lack of room — until the ring is entered asking for
    /// events; it is, and reaped again, so no session waits for a
    /// completion the kernel is holding back.
    fn reap(&self) {
        loop {
            self.reap_queue();
            if !self.uring.borrow_mut().submission().cq_overflow() {
                break;
            }
            // `submit` asks for events (GETEVENTS) when the overflow flag
            // is set, which moves the held completions into the queue.
            let _ = self.uring.borrow_mut().submit();
            self.unsubmitted.set(0);
        }
    }

    fn reap_queue(&self) {
        let mut rearm = Vec::new();
        {
            let mut uring = self.uring.borrow_mut();
            let mut sessions = self.sessions.borrow_mut();
            let mut ready = self.ready.borrow_mut();
            let mut readable = self.readable.borrow_mut();
            for cqe in uring.completion() {
                let ud = cqe.user_data();
                let conn = ConnId(ud & CONN_MASK);
                match ud >> KIND_SHIFT {
                    _ if ud == IGNORED => continue,
                    KIND_ACCEPT => {
                        self.accept
                            .completed(cqe.result(), cqueue::more(cqe.flags()));
                        continue;
                    }
                    KIND_HEAD => {
                        self.accept.head_readable(conn);
                        continue;
                    }
                    _ => {}
                }
                let Some(s) = sessions.get_mut(&conn) else {
                    continue;
                };
                match ud >> KIND_SHIFT {
                    KIND_READ => {
                        s.readable = true;
                        if !cqueue::more(cqe.flags()) {
                            // The multishot poll ended (an error, or the
                            // kernel's limit): poll again.
                            rearm.push((conn, s.fd));
                        }
                        readable.push_back(conn);
                    }
                    KIND_WRITE => {
                        s.write_armed = false;
                        s.write_blocked = false;
                        ready.push_back(conn);
                    }
                    _ => {}
                }
            }
        }
        for (conn, fd) in rearm {
            self.arm_read(conn, fd);
        }
    }

    /// Ends a session whose core connection is closed: cancels its polls,
    /// closes the socket and releases the connection's slot if the
    /// session held it while lingering.
    fn finish(&self, shard: &Shard, conn: ConnId, s: Session) {
        shard.state.borrow_mut().release_slot(conn);
        self.cancel(user_data(KIND_READ, conn));
        if s.write_armed {
            self.cancel(user_data(KIND_WRITE, conn));
        }
        // The kernel keeps the socket until the cancels complete.
        unsafe { libc::close(s.fd) };
    }

    /// Services one session; returns it unless it ended.
    fn service(&self, shard: &Rc<Shard>, conn: ConnId, mut s: Session) -> Option<Session> {
        if s.lingering.is_some() {
            return self.linger(conn, s, shard);
        }
        match self.drive(shard, conn, &mut s) {
            Ok(()) => Some(s),
            Err(SessionEnd::CloseSent) => {
                // Lingers in the table: the connection is closed, its slot
                // held until `finish`.
                shard.with(|st| st.close_conn_held(conn, now_ms()));
                unsafe { libc::shutdown(s.fd, libc::SHUT_WR) };
                s.lingering = Some(0);
                let deadline = now_ms() + shard.cfg.close_linger_ms;
                self.lingering.borrow_mut().push_back((deadline, conn));
                self.linger(conn, s, shard)
            }
            Err(_) => {
                shard.with(|st| st.close_conn(conn, now_ms()));
                self.finish(shard, conn, s);
                None
            }
        }
    }

    /// Asks the CPU for the state of the next sessions on the ready queue
    /// while this one is serviced (its `send` takes microseconds, a
    /// cache miss a fraction of one): the next session and its
    /// connection's runs and channels, and the connection after it.
    fn prefetch_next(&self, shard: &Shard) {
        let ready = self.ready.borrow();
        let Ok(st) = shard.state.try_borrow() else {
            return;
        };
        if let Some(next) = ready.front() {
            self.sessions.borrow().prefetch(next);
            st.prefetch(*next, Soon::Near);
        }
        if let Some(after) = ready.get(1) {
            st.prefetch(*after, Soon::Far);
        }
    }

    /// Services a session woken only to write — nothing to read, not
    /// closing, not lingering, the socket not known to be full: one pass
    /// of the core's writer (`ShardState::write_pass`), in place. False
    /// when the session needs the general loop (`service`); true when it
    /// was served or is gone.
    fn write_only(&self, shard: &Rc<Shard>, conn: ConnId) -> bool {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.get_mut(&conn) else {
            return true;
        };
        if s.readable
            || s.closing
            || s.write_blocked
            || s.lingering.is_some()
            || shard.flush.holds()
        {
            return false;
        }
        let fd = s.fd;
        let pass = shard
            .state
            .borrow_mut()
            .write_pass(conn, now_ms(), |iov| send(fd, iov));
        let arm = match pass {
            WritePass::Parked => false,
            WritePass::Blocked => {
                s.write_blocked = true;
                !std::mem::replace(&mut s.write_armed, true)
            }
            WritePass::Busy => return false,
        };
        // Nothing below reaches the session map.
        drop(sessions);
        if arm {
            self.arm_write(conn, fd);
        }
        shard.apply_effects();
        true
    }

    /// A lingering session: discards what the client still sends until it
    /// closes, the bound is reached or the deadline passes (`sweep`).
    fn linger(&self, conn: ConnId, mut s: Session, shard: &Rc<Shard>) -> Option<Session> {
        let mut buf = shard.read_buf.borrow_mut();
        let mut total = s.lingering.unwrap_or(0);
        while s.readable {
            match recv(s.fd, &mut buf[..]) {
                // Nothing more for now: keep lingering until the client
                // closes (a socket closed with input unread would answer
                // with a reset, which can destroy the close frame still
                // unread at the client).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.readable = false,
                Ok(0) | Err(_) => {
                    drop(buf);
                    self.finish(shard, conn, s);
                    return None;
                }
                Ok(n) => {
                    total += n;
                    if total >= LINGER_MAX_BYTES {
                        drop(buf);
                        self.finish(shard, conn, s);
                        return None;
                    }
                    if n < buf.len() {
                        s.readable = false;
                    }
                }
            }
        }
        s.lingering = Some(total);
        Some(s)
    }

    /// The task driver's poll loop (`driver.rs`), for a ring session.
    fn drive(&self, shard: &Rc<Shard>, conn: ConnId, s: &mut Session) -> Result<(), SessionEnd> {
        for _ in 0..32 {
            if shard.state.borrow().has_queued(conn) {
                shard.with(|st| st.admit_queued(conn, now_ms()));
            }
            let (mut progressed, write_blocked) = {
                let mut st = shard.state.borrow_mut();
                let Some(state) = st.session(conn) else {
                    return Err(SessionEnd::PeerGone);
                };
                if state.kill {
                    return Err(SessionEnd::PeerGone);
                }
                let (progressed, write_blocked) = self.write(shard, &mut st, conn, s)?;
                let Some(state) = st.session(conn) else {
                    return Err(SessionEnd::PeerGone);
                };
                if state.pending == 0 {
                    if s.closing {
                        return Err(SessionEnd::CloseSent);
                    }
                    if state.closing.is_some() && st.queue_close_frame(conn).is_some() {
                        s.closing = true;
                        drop(st);
                        shard.apply_effects();
                        continue;
                    }
                }
                if s.closing || state.reads_paused {
                    if !progressed {
                        if !s.holding {
                            st.park(conn);
                        }
                        return Ok(());
                    }
                    drop(st);
                    shard.apply_effects();
                    continue;
                }
                (progressed, write_blocked)
            };
            shard.apply_effects();
            if s.readable {
                let mut buf = shard.read_buf.borrow_mut();
                match recv(s.fd, &mut buf[..]) {
                    Ok(0) => return Err(SessionEnd::PeerGone),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.readable = false,
                    Err(_) => return Err(SessionEnd::PeerGone),
                    Ok(n) => {
                        if n < buf.len() {
                            s.readable = false;
                        }
                        let now = now_ms();
                        let mut st = shard.state.borrow_mut();
                        let mut inflater = shard.inflater.borrow_mut();
                        // Unmasks in place: complete frames are never copied
                        // (compressed messages are inflated by the shard's
                        // one inflater, within `max_frame_bytes`).
                        let result =
                            s.decoder
                                .feed_mut_with(&mut buf[..n], &mut inflater, &mut |ev| {
                                    st.on_ws_event(conn, ev, now)
                                });
                        drop(inflater);
                        if let Err(e) = result {
                            st.on_ws_error(conn, e.close_code(), close_reason(&e), now);
                        }
                        drop(st);
                        drop(buf);
                        shard.apply_effects();
                        progressed = true;
                    }
                }
            }
            if !progressed {
                let mut st = shard.state.borrow_mut();
                let Some(state) = st.session(conn) else {
                    return Err(SessionEnd::PeerGone);
                };
                let queued = state.pending > 0 && !write_blocked;
                if queued || (state.closing.is_some() && !s.closing && !write_blocked) {
                    continue;
                }
                if !s.holding {
                    st.park(conn);
                }
                return Ok(());
            }
        }
        // More to do: after the other ready sessions.
        self.ready.borrow_mut().push_back(conn);
        Ok(())
    }

    /// Writes what the outbox holds while the socket takes it. Returns
    /// (progressed, write_blocked), or the end of the session.
    fn write(
        &self,
        shard: &Rc<Shard>,
        st: &mut chat_core::ShardState,
        conn: ConnId,
        s: &mut Session,
    ) -> Result<(bool, bool), SessionEnd> {
        let mut progressed = false;
        s.holding = false;
        loop {
            let mut iov = [std::io::IoSlice::new(&[]); MAX_IOVECS];
            let pieces = st.output(conn, &mut iov);
            if pieces == 0 {
                return Ok((progressed, false));
            }
            if s.write_blocked {
                return Ok((progressed, true));
            }
            let flush = &shard.flush;
            if !progressed {
                if let Some(due) = flush.held_until(s.last_write) {
                    if !s.flush_ticket.is_some_and(|t| flush.still_waiting(t)) {
                        s.flush_ticket = Some(flush.wait(&conn_waker(conn), due));
                    }
                    s.holding = true;
                    return Ok((false, true));
                }
            }
            match send(s.fd, &iov[..pieces]) {
                Ok(0) => return Err(SessionEnd::PeerGone),
                Ok(n) => {
                    progressed = true;
                    s.last_write = flush.now_us();
                    st.wrote(conn, n, now_ms());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    s.write_blocked = true;
                    if !s.write_armed {
                        s.write_armed = true;
                        self.arm_write(conn, s.fd);
                    }
                    return Ok((progressed, true));
                }
                Err(_) => return Err(SessionEnd::PeerGone),
            }
        }
    }

    /// Closes lingering sessions and handshakes whose deadline passed;
    /// returns the next deadline, if any.
    fn sweep(&self, shard: &Shard, now: u64) -> Option<u64> {
        let front_door = self.sweep_front_door(now);
        let lingering = self.sweep_lingering(shard, now);
        match (front_door, lingering) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn sweep_lingering(&self, shard: &Shard, now: u64) -> Option<u64> {
        loop {
            let front = self.lingering.borrow().front().copied();
            let (deadline, conn) = front?;
            if deadline > now {
                return Some(deadline);
            }
            self.lingering.borrow_mut().pop_front();
            let s = self.sessions.borrow_mut().remove(&conn);
            if let Some(s) = s {
                self.finish(shard, conn, s);
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for s in self.sessions.get_mut().values_mut() {
            unsafe { libc::close(s.fd) };
        }
        unsafe { libc::close(self.event_fd) };
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Most pieces one write takes (an outbox's own bytes and the shared
/// frames it queued by reference alternate; more pieces wait for the next
/// write). 64 `iovec`s are 1 KiB of stack.
const MAX_IOVECS: usize = 64;

/// One `sendmsg` of the pieces, in order: one write, one segment's worth
/// of syscall for all of them. One piece — a big room's member writing
/// one batch's frames — goes as a plain `send`, which spares the kernel
/// copying a message header and an `iovec` array in (~1 % of the shard's
/// CPU in the 10,000-member room).
fn send(fd: RawFd, pieces: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
    if let [one] = pieces {
        return crate::rt::net::send(fd, one);
    }
    // SAFETY: an all-zero msghdr is valid; it points at `pieces` (an
    // `IoSlice` is ABI-compatible with `iovec`) for the duration of the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = pieces.as_ptr().cast_mut().cast();
        msg.msg_iovlen = pieces.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

thread_local! {
    /// The ring of the shard on this thread (one shard per executor
    /// thread), for wakers that carry only a `ConnId`.
    static CURRENT: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
}

/// A waker that puts `conn` on this thread's ring's ready queue: no
/// allocation, the `ConnId` is the waker's data. Wakers of this kind are
/// only used on the shard's own thread (the flush tick).
fn conn_waker(conn: ConnId) -> Waker {
    fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    fn wake(data: *const ()) {
        let conn = ConnId(data as usize as u64);
        CURRENT.with(|r| {
            if let Some(ring) = r.borrow().as_ref() {
                ring.wake(conn);
            }
        });
    }
    fn drop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    // Safety: the vtable's functions only read the data as an integer.
    unsafe { Waker::from_raw(RawWaker::new(conn.0 as usize as *const (), &VTABLE)) }
}

/// The ring task of a shard: reaps, services, submits, sleeps.
pub(crate) async fn run(shard: Rc<Shard>, ring: Rc<Ring>) {
    CURRENT.with(|r| *r.borrow_mut() = Some(ring.clone()));
    // Completions reach this loop as a `wake` from their own task; held
    // here, so cancelling the ring task cancels it too.
    let _completions = forward_completions(&ring);
    let mut reads_in_a_row = 0u32;
    loop {
        ring.reap();
        ring.take_new(&shard);
        let mut serviced = 0u32;
        while let Some(conn) = ring.next_ready(&mut reads_in_a_row) {
            ring.prefetch_next(&shard);
            if !ring.write_only(&shard, conn) {
                // Out of the table while serviced (servicing may reach the
                // ring again), its id keeping the slot.
                let taken = ring.sessions.borrow_mut().take(&conn);
                let Some(s) = taken else { continue };
                match ring.service(&shard, conn, s) {
                    Some(s) => ring.sessions.borrow_mut().put_back(&conn, s),
                    None => {
                        ring.sessions.borrow_mut().remove(&conn);
                    }
                }
            }
            serviced += 1;
            if serviced.is_multiple_of(64) {
                ring.submit();
                crate::rt::yield_if_needed().await;
                ring.reap();
                ring.take_new(&shard);
                // A peer's messages wait for no write pass (the mesh
                // receiver shares this task queue, `mesh::receive`).
                if shard.mesh.has_input() {
                    shard.receive_mesh_round();
                }
            }
        }
        let next_deadline = ring.sweep(&shard, now_ms());
        ring.submit();
        // And after every pass: while this task has work it does not return
        // to the executor, which finds a peer's wake-up only when it does.
        if shard.mesh.has_input() {
            shard.receive_mesh_round();
        }
        if ring.front_door_busy() {
            // More accepted sockets or heads than one batch: after the
            // executor's other work.
            crate::rt::yield_if_needed().await;
            continue;
        }
        if !ring.ready.borrow().is_empty() || !ring.readable.borrow().is_empty() {
            continue;
        }
        // Nothing ready: sleep until a completion or a queued session
        // (both `wake`), or the next deadline.
        let timeout = next_deadline
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms()).max(1)))
            .unwrap_or(Duration::from_secs(3600));
        ring.sleep(timeout).await;
    }
}

impl Ring {
    /// Sleeps until `wake` (a completion or a queued session) or `timeout`;
    /// true when woken. Polls nothing but the flag and a timer, each
    /// keeping one waker: the loop may wake any number of times.
    async fn sleep(&self, timeout: Duration) -> bool {
        futures_lite::future::or(
            async {
                self.wake.notified().await;
                true
            },
            async {
                crate::rt::sleep(timeout).await;
                false
            },
        )
        .await
    }
}

/// Starts the task that turns the ring's eventfd into `ring.wake`: it
/// waits for the eventfd to be readable with a poll on the shard runtime's
/// own ring (so the shard sleeps in one place), reads it, and notifies.
/// A task of its own, so the ring loop's `sleep` waits on one flag.
///
/// # Panics
///
/// When the eventfd cannot be duplicated or read: a ring that cannot see
/// its completions would leave every session of the shard hanging, so
/// that is fatal (the binary aborts on it, `gateway::abort_on_panic`) rather
/// than a log line and a shard that answers nothing.
fn forward_completions(ring: &Rc<Ring>) -> crate::rt::Task<()> {
    // Safety: a duplicate of the ring's eventfd, owned by this task. The
    // duplicate shares the file's flags: non-blocking for both, which the
    // kernel's signalling through the ring does not mind.
    let efd = unsafe { libc::dup(ring.event_fd) };
    if efd < 0 || unsafe { libc::fcntl(efd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        let e = std::io::Error::last_os_error();
        panic!("socket ring: duplicating the eventfd failed ({e}); the shard would not see completions");
    }
    // SAFETY: a new descriptor nothing else owns.
    let events = unsafe { std::os::fd::OwnedFd::from_raw_fd(efd) };
    let ring = ring.clone();
    crate::rt::spawn(async move {
        let fd = events.as_raw_fd();
        let mut count = 0u64;
        loop {
            let polled = crate::rt::readable(fd).await;
            if polled < 0 {
                let e = std::io::Error::from_raw_os_error(-polled);
                panic!("socket ring: polling the eventfd failed ({e}); the shard would not see completions");
            }
            // SAFETY: an 8-byte read into a live `u64`.
            let n = unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    panic!("socket ring: reading the eventfd failed ({e}); the shard would not see completions");
                }
            }
            ring.wake.notify();
        }
    })
}

/// Forgets this thread's ring (the shard stopped).
pub(crate) fn clear_current() {
    CURRENT.with(|r| *r.borrow_mut() = None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_sessions_entry_stays_small() {
        // Every idle WebSocket connection holds one `Session` in its
        // shard's map (plus the core's `Conn`); measured 2026-12-02.
        let size = std::mem::size_of::<Session>();
        let decoder = std::mem::size_of::<WsDecoder>();
        assert!(size <= 176, "Session is {size} bytes (decoder {decoder})");
    }

    #[test]
    fn the_ring_task_may_be_woken_any_number_of_times_and_completions_still_wake_it() {
        // Many wake-ups with no completion in between (what a ramp of idle
        // connections does; glommio, the executor before 2026-12-05,
        // counted a task's wakers in an i16 and panicked past 32,767).
        crate::rt::block_on(async {
            let Ok(ring) = Ring::new() else {
                return; // no io_uring here: sessions would be tasks
            };
            let ring = Rc::new(ring);
            let _completions = forward_completions(&ring);
            for _ in 0..40_000 {
                let r = ring.clone();
                crate::rt::spawn(async move { r.wake.notify() }).detach();
                assert!(ring.sleep(Duration::from_secs(3600)).await);
            }
            // A completion (a no-op's) wakes the sleeper through the
            // eventfd.
            {
                let mut uring = ring.uring.borrow_mut();
                let nop = opcode::Nop::new().build().user_data(u64::MAX);
                unsafe { uring.submission().push(&nop).expect("room for a no-op") };
                uring.submit().expect("submitted");
            }
            assert!(
                ring.sleep(Duration::from_secs(60)).await,
                "no wake-up from the completion"
            );
        })
        .expect("an executor");
    }

    #[test]
    fn completion_data_carries_the_kind_and_the_connection() {
        let conn = ConnId(123_456_789);
        for kind in [KIND_READ, KIND_WRITE, KIND_HEAD, KIND_ACCEPT] {
            let ud = user_data(kind, conn);
            assert_eq!(ud >> KIND_SHIFT, kind);
            assert_eq!(ConnId(ud & CONN_MASK), conn);
        }
    }

    #[test]
    fn readable_sessions_are_served_first_but_cannot_starve_writes() {
        let Ok(ring) = Ring::new() else {
            return; // no io_uring here: sessions would be tasks
        };
        for c in 1..=3 {
            ring.ready.borrow_mut().push_back(ConnId(c));
        }
        for c in 100..100 + u64::from(READ_BURST) + 2 {
            ring.readable.borrow_mut().push_back(ConnId(c));
        }
        let mut in_a_row = 0;
        let order: Vec<u64> = std::iter::from_fn(|| ring.next_ready(&mut in_a_row))
            .map(|c| c.0)
            .collect();
        let burst = READ_BURST as usize;
        // A burst of readable sessions, then one write-only session, then
        // the rest of the readable ones, then the writes.
        assert!(order[..burst].iter().all(|&c| c >= 100), "{order:?}");
        assert_eq!(order[burst], 1, "{order:?}");
        let rest = [100 + burst as u64, 101 + burst as u64];
        assert_eq!(&order[burst + 1..burst + 3], &rest, "{order:?}");
        assert_eq!(&order[burst + 3..], &[2, 3], "{order:?}");
    }
}
