//! The socket ring's front door: accepting connections and answering the
//! WebSocket upgrade on the ring itself, so that a WebSocket connection
//! never becomes a stream or a task of its own (`rt::net::TcpStream`).
//!
//! Why: when glommio (the shards' executor before 2026-12-05) accepted and
//! served the handshake, every connection cost an accept through glommio's
//! ring, a task and a `TcpStream` (its readiness source and timers), the
//! request read through glommio (often retried from io_uring task work
//! with a reschedule IPI), the 101 written through it, and a `dup` and a
//! `close` to move the socket to the socket ring — 1.5× Bun's CPU per
//! connection in the connect-and-join phase of the 10,000-member room
//! (`docs/benchmarks.md`).
//!
//! How it runs:
//! - **Accept.** One multishot accept on the shard's listener (its fd stays
//!   owned by the listener's task, [`Listening`]). Each accepted socket is
//!   counted against the connection maximum (past it, or while the shard no
//!   longer accepts, it is answered 503 and closed, as before) and becomes
//!   a *handshake* (its socket options it inherited from the listener,
//!   `sys::bind_listener`): an entry in a slab with a
//!   generation in its id (`ConnSlab`, as sessions) and a one-shot poll for
//!   its first bytes. An accept error is counted and logged as the
//!   listener's accept loop does (`listener::accept_failed`); when it ends
//!   the multishot accept (EMFILE, ENFILE), the ring accepts again after
//!   the same pause (50 ms for fd exhaustion, 5 ms otherwise), so it never
//!   spins. A kernel without multishot accept (before 5.19) refuses it:
//!   the listener's task then accepts itself (`rt::net::TcpListener`).
//! - **The request head.** Read with `recv` into the shard's read buffer
//!   when the poll fires, parsed in place (copied to the handshake's own
//!   buffer only while it is incomplete), within `max_request_head_bytes`
//!   (431 past it, 400 when malformed) and `handshake_timeout_ms` (closed
//!   at the deadline, as before).
//! - **Routing.** `GET /ws` is answered here: the origin check, then the
//!   same decision as the listener's (`driver::decide_upgrade`: checks,
//!   authentication, drain, permessage-deflate, the connection opened in
//!   the core), the 101 and the `hello` in one `send`, and the socket
//!   becomes a session of the ring ([`Ring::adopt`]). Any other request —
//!   the HTTP API, the event stream, the demo, health, metrics — is handed
//!   over to the listener's HTTP path (a task with an
//!   `rt::net::TcpStream`) with the bytes read so far
//!   (`listener::serve_handed_over`), where it is served exactly as a
//!   connection the listener accepted.
//!
//! A handshake's id is its own (handshakes and sessions have separate
//! slabs); a completion names which by its kind (`KIND_HEAD`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use chat_core::slots::ConnSlab;
use chat_core::ConnId;
use chat_proto::http::{self, RequestHead};
use io_uring::{opcode, types};

use super::{recv, send, user_data, Ring, KIND_ACCEPT, KIND_HEAD, KIND_SHIFT};
use crate::listener::{self, Slot};
use crate::shard_task::Shard;
use crate::util::{now_ms, Notify};

/// The `user_data` of the listener's multishot accept.
const ACCEPT: u64 = KIND_ACCEPT << KIND_SHIFT;
/// Accepted sockets, and handshakes, taken per call of `take_new` (each
/// costs a `recv`, a parse and usually the upgrade's `send`: ~64 of them
/// are a few milliseconds, as the ring's 64 sessions between yields).
const FRONT_DOOR_BATCH: usize = 64;

/// An accepted connection whose request head is being read.
struct Handshake {
    fd: RawFd,
    /// The bytes read so far while the head is incomplete (empty for a
    /// head that arrives in one read, the common case).
    head: Vec<u8>,
    /// A one-shot poll for its bytes is armed.
    armed: bool,
    /// Counts the connection from the accept.
    slot: Slot,
}

/// The ring's accepting state (`Ring::accept`).
#[derive(Default)]
pub(super) struct Acceptor {
    /// The listener's fd while the ring accepts on it.
    listener: Cell<Option<RawFd>>,
    /// The multishot accept is armed.
    armed: Cell<bool>,
    /// When to arm it again after an error ended it.
    retry_at: Cell<Option<Instant>>,
    /// When an accept error was last logged (ms).
    warned_at: Cell<u64>,
    /// The kernel refused a multishot accept: the listener's task accepts.
    unsupported: Cell<bool>,
    /// Wakes the listener's task when `unsupported` is set.
    gave_up: Notify,
    /// Accept results not yet taken (an fd, or `-errno`).
    results: RefCell<VecDeque<i32>>,
    handshakes: RefCell<ConnSlab<Handshake>>,
    /// Handshakes whose socket became readable.
    heads: RefCell<VecDeque<ConnId>>,
    /// Handshake deadlines, oldest first (one timeout for all, so pushing
    /// keeps the order); on the monotonic clock, so a step of the wall
    /// clock neither suspends nor fires the timeout.
    deadlines: RefCell<VecDeque<(Instant, ConnId)>>,
}

impl Acceptor {
    /// A completion of the multishot accept (from `reap`).
    pub(super) fn completed(&self, result: i32, more: bool) {
        if !more {
            self.armed.set(false);
        }
        self.results.borrow_mut().push_back(result);
    }

    /// A handshake's socket became readable (from `reap`).
    pub(super) fn head_readable(&self, id: ConnId) {
        self.heads.borrow_mut().push_back(id);
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        for h in self.handshakes.get_mut().values_mut() {
            unsafe { libc::close(h.fd) };
        }
        // Accepted but not yet taken.
        for &fd in self.results.get_mut().iter().filter(|&&r| r >= 0) {
            unsafe { libc::close(fd) };
        }
    }
}

/// The ring accepting on a shard's listener, for as long as this lives:
/// dropping it (the listener's task is cancelled when the shard stops
/// accepting) cancels the accept, so that closing the listener's fd
/// afterwards closes the port.
pub(crate) struct Listening {
    ring: Rc<Ring>,
}

impl Listening {
    /// Starts accepting on `fd` (a listening socket that outlives this).
    pub(crate) fn start(ring: &Rc<Ring>, fd: RawFd) -> Listening {
        ring.accept.listener.set(Some(fd));
        ring.arm_accept();
        // The ring task submits it.
        ring.wake.notify();
        Listening { ring: ring.clone() }
    }

    /// Returns when the kernel refused the ring's multishot accept (the
    /// caller then accepts itself, `rt::net::TcpListener`); never otherwise.
    pub(crate) async fn until_refused(&self) {
        loop {
            self.ring.accept.gave_up.notified().await;
            if self.ring.accept.unsupported.get() {
                return;
            }
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let accept = &self.ring.accept;
        accept.listener.set(None);
        accept.retry_at.set(None);
        if accept.armed.replace(false) {
            self.ring.cancel(ACCEPT);
            self.ring.submit();
        }
    }
}

/// What reading a handshake's socket came to.
enum Outcome {
    /// The head is incomplete and the socket drained: wait for more.
    Wait,
    /// The client closed, or the socket failed.
    Gone,
    /// Answer this and close (431, 400).
    Refuse(Vec<u8>),
    /// A WebSocket upgrade, and the bytes that followed its head.
    Upgrade(Box<RequestHead>, Vec<u8>),
    /// Any other request: the listener's HTTP path serves it from these
    /// bytes (the head and whatever followed).
    HandOver(Vec<u8>),
}

impl Ring {
    fn arm_accept(&self) {
        let Some(fd) = self.accept.listener.get() else {
            return;
        };
        if self.accept.armed.replace(true) {
            return;
        }
        // Blocking sockets (as glommio, the executor before 2026-12-05,
        // accepted them): every call on them here passes MSG_DONTWAIT, and
        // one handed over is made non-blocking by
        // `rt::net::TcpStream::from_raw_fd`.
        self.push(
            opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ACCEPT),
        );
    }

    fn arm_head(&self, id: ConnId, fd: RawFd) {
        let flags = (libc::POLLIN | libc::POLLRDHUP) as u32;
        self.push(
            opcode::PollAdd::new(types::Fd(fd), flags)
                .build()
                .user_data(user_data(KIND_HEAD, id)),
        );
    }

    /// Takes what the reaped completions brought to the front door: the
    /// accepted sockets, then the handshakes whose bytes arrived — at most
    /// [`FRONT_DOOR_BATCH`] of each, so that a connect storm cannot hold
    /// the shard for long without a yield (the rest waits in the queues,
    /// [`Ring::front_door_busy`]).
    pub(super) fn take_new(&self, shard: &Rc<Shard>) {
        for _ in 0..FRONT_DOOR_BATCH {
            let next = self.accept.results.borrow_mut().pop_front();
            let Some(result) = next else { break };
            if result >= 0 {
                self.accepted(shard, result);
            } else if result == -libc::ECANCELED {
                // Our own cancel (the listener closes).
            } else if result == -libc::EINVAL && self.accept.listener.get().is_some() {
                // No multishot accept on this kernel: the listener's task
                // accepts.
                tracing::info!(
                    "the kernel refused a multishot accept; accepting on the listener's task"
                );
                self.accept.listener.set(None);
                self.accept.unsupported.set(true);
                self.accept.gave_up.notify();
            } else {
                let e = std::io::Error::from_raw_os_error(-result);
                let mut warned_at = self.accept.warned_at.get();
                let pause = listener::accept_failed(shard, &e, &mut warned_at);
                self.accept.warned_at.set(warned_at);
                if !self.accept.armed.get() {
                    self.accept.retry_at.set(Some(Instant::now() + pause));
                }
            }
        }
        if !self.accept.armed.get()
            && self.accept.retry_at.get().is_none()
            && self.accept.results.borrow().is_empty()
        {
            // Ended without an error (the completion queue was full):
            // accept again at once. Not while results wait: the one that
            // ended it may be an error whose pause is still to be taken.
            // Nothing happens when not listening.
            self.arm_accept();
        }
        for _ in 0..FRONT_DOOR_BATCH {
            let next = self.accept.heads.borrow_mut().pop_front();
            let Some(id) = next else { break };
            self.read_head(shard, id);
        }
    }

    /// Accepted sockets or readable handshakes wait to be taken.
    pub(super) fn front_door_busy(&self) -> bool {
        !self.accept.results.borrow().is_empty() || !self.accept.heads.borrow().is_empty()
    }

    /// A socket the multishot accept returned.
    fn accepted(&self, shard: &Rc<Shard>, fd: RawFd) {
        let slot = match listener::admit_connection(shard) {
            Ok(slot) => slot,
            Err(_slot) => return answer_and_close(fd, &listener::limit_reached()),
        };
        let id = self.accept.handshakes.borrow_mut().insert_new(Handshake {
            fd,
            head: Vec::new(),
            armed: false,
            slot,
        });
        let deadline = Instant::now() + Duration::from_millis(shard.cfg.handshake_timeout_ms);
        self.accept.deadlines.borrow_mut().push_back((deadline, id));
        // The request is often there already (the accept completion reached
        // us after a wake-up of the shard): read it now, and poll only when
        // it is not.
        self.read_head(shard, id);
    }

    /// Reads a handshake's socket and acts on what came.
    fn read_head(&self, shard: &Rc<Shard>, id: ConnId) {
        let max = shard.cfg.max_request_head_bytes;
        let outcome = {
            let mut handshakes = self.accept.handshakes.borrow_mut();
            let Some(h) = handshakes.get_mut(&id) else {
                return;
            };
            h.armed = false;
            let mut buf = shard.read_buf.borrow_mut();
            loop {
                let n = match recv(h.fd, &mut buf[..]) {
                    Ok(0) => break Outcome::Gone,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Outcome::Wait,
                    Err(_) => break Outcome::Gone,
                };
                let first = h.head.is_empty();
                let bytes: &[u8] = if first {
                    &buf[..n]
                } else {
                    h.head.extend_from_slice(&buf[..n]);
                    &h.head
                };
                // Parsed when it may be complete (or too large), and once
                // at the first read so that garbage is answered at once.
                let fresh = bytes.len() - n;
                let parse = first || bytes.len() >= max || http::head_may_have_ended(bytes, fresh);
                let parsed = if parse {
                    http::parse_request_head(bytes, max)
                } else {
                    Ok(None)
                };
                match parsed {
                    Ok(Some((head, used))) => {
                        break if head.path == "/ws" {
                            Outcome::Upgrade(Box::new(head), bytes[used..].to_vec())
                        } else {
                            Outcome::HandOver(bytes.to_vec())
                        };
                    }
                    Ok(None) => {
                        if h.head.is_empty() {
                            h.head.extend_from_slice(&buf[..n]);
                        }
                        if n < buf.len() {
                            break Outcome::Wait;
                        }
                    }
                    Err(e) => break Outcome::Refuse(listener::head_error(e)),
                }
            }
        };
        if let Outcome::Wait = outcome {
            let mut handshakes = self.accept.handshakes.borrow_mut();
            if let Some(h) = handshakes.get_mut(&id) {
                h.armed = true;
                let fd = h.fd;
                drop(handshakes);
                self.arm_head(id, fd);
            }
            return;
        }
        let Some(Handshake { fd, slot, .. }) = self.accept.handshakes.borrow_mut().remove(&id)
        else {
            return;
        };
        match outcome {
            Outcome::Wait => unreachable!("handled above"),
            Outcome::Gone => unsafe {
                libc::close(fd);
            },
            Outcome::Refuse(answer) => answer_and_close(fd, &answer),
            Outcome::HandOver(bytes) => {
                // SAFETY: the accepted socket, owned by the stream from now
                // on (no poll of ours is armed on it).
                let stream = unsafe { crate::rt::net::TcpStream::from_raw_fd(fd) };
                listener::serve_handed_over(shard.clone(), stream, slot, bytes);
            }
            Outcome::Upgrade(head, rest) => self.upgrade(shard, fd, slot, &head, &rest),
        }
    }

    /// Answers a WebSocket upgrade on the ring and makes the socket a
    /// session.
    fn upgrade(&self, shard: &Rc<Shard>, fd: RawFd, slot: Slot, head: &RequestHead, rest: &[u8]) {
        if let Err(refusal) = listener::check_origin(shard, head) {
            return answer_and_close(fd, &refusal);
        }
        let up = match crate::driver::decide_upgrade(shard, head) {
            Ok(up) => up,
            Err(refusal) => return answer_and_close(fd, &refusal),
        };
        let handshake_len = up.reply.len() - up.greeting_len;
        match send(fd, &[std::io::IoSlice::new(&up.reply)]) {
            Ok(n) if n >= handshake_len => {
                // What of the `hello` did not fit is the session's to write.
                if n > handshake_len {
                    shard.with(|st| st.wrote(up.conn, n - handshake_len, now_ms()));
                }
                shard
                    .global
                    .stats
                    .ring_upgrades
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.adopt(shard, fd, up.conn, up.decoder, rest, slot);
            }
            _ => {
                // A fresh socket that cannot take a few hundred bytes: the
                // client is gone or hopeless; it may connect again.
                shard.with(|st| st.close_conn(up.conn, now_ms()));
                unsafe { libc::close(fd) };
            }
        }
    }

    /// Closes handshakes past their deadline and arms an accept whose
    /// pause is over; returns the next deadline (wall-clock ms, from
    /// `now`), if any. Deadlines of handshakes that already ended are
    /// dropped on the way, so they never wake the ring.
    pub(super) fn sweep_front_door(&self, now: u64) -> Option<u64> {
        let mono = Instant::now();
        if let Some(at) = self.accept.retry_at.get() {
            if at <= mono {
                self.accept.retry_at.set(None);
                self.arm_accept();
            }
        }
        let next = loop {
            let front = self.accept.deadlines.borrow().front().copied();
            let Some((deadline, id)) = front else {
                break None;
            };
            let live = self.accept.handshakes.borrow().contains_key(&id);
            if live && deadline > mono {
                break Some(deadline);
            }
            self.accept.deadlines.borrow_mut().pop_front();
            if !live {
                continue;
            }
            let h = self.accept.handshakes.borrow_mut().remove(&id);
            if let Some(h) = h {
                if h.armed {
                    self.cancel(user_data(KIND_HEAD, id));
                }
                // The kernel keeps the socket until the cancel completes.
                unsafe { libc::close(h.fd) };
            }
        };
        let mut deadlines = self.accept.deadlines.borrow_mut();
        if deadlines.is_empty() && deadlines.capacity() > 1024 {
            // After a connect storm: give the queue's memory back.
            *deadlines = VecDeque::new();
        }
        let soonest = match (next, self.accept.retry_at.get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        soonest.map(|at| now + at.saturating_duration_since(mono).as_millis() as u64)
    }
}

/// Writes a short answer (an error response) and closes the socket. A
/// fresh socket takes a few hundred bytes at once; if it does not, the
/// client only misses why it was closed.
fn answer_and_close(fd: RawFd, answer: &[u8]) {
    let _ = send(fd, &[std::io::IoSlice::new(answer)]);
    unsafe { libc::close(fd) };
}
