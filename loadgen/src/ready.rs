//! Read readiness for a shard's connections without an interrupt per
//! segment: one io_uring of the shard's own with cooperative task running.
//!
//! Why: glommio learns that a socket is readable from a one-shot poll on
//! its ring, armed again after every short read; its ring is set up without
//! `IORING_SETUP_COOP_TASKRUN`, so each poll that fires while loadgen's
//! thread runs is finished by an inter-processor interrupt to loadgen's
//! CPU — one per TCP segment the server sends. On a virtual machine an IPI
//! is a VM exit on both sides: profiled in the 10,000-member room
//! (2026-12-04, `docs/benchmarks.md`, "Load generator interrupts"), the
//! *server* spent 24–28 % of its CPU inside `sock_def_readable` sending
//! them (whichever server it was: the cost is the reader's design) and
//! loadgen 24 % receiving them. A real client on another host costs its
//! server nothing of the kind, so the bench measured loadgen there.
//!
//! Here each connection has one multishot `POLL_ADD` (`POLLIN|POLLRDHUP`)
//! on a ring set up with `COOP_TASKRUN`: a completion produced on the other
//! CPU waits for loadgen's next entry into the kernel (it makes one every
//! few microseconds while busy; a sleeping thread is still woken) instead
//! of interrupting it. The ring signals an eventfd that one task per shard
//! reads through glommio ([`run`]), then marks the connections readable
//! and wakes their tasks. A connection reads with plain `recv` while marked
//! readable; a short read or `EAGAIN` clears the mark, and any byte that
//! arrives later fires the poll again, so nothing is missed (the gateway's
//! socket ring reads the same way).
//!
//! Ending a connection cancels its poll (io_uring holds a reference to the
//! socket while a poll is armed). A completion's `user_data` carries the
//! connection's slot and a generation, so a late completion of an earlier
//! connection in the same slot finds nothing. Kernels without the flag
//! (before 5.19) get `None` from [`ReadRing::new`] and glommio's reads.
//!
//! Each `unsafe` block is a plain libc call on an fd this module owns, or
//! an io_uring submission whose entries reference no memory (polls and
//! cancels carry only an fd and flags).

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Submission entries.
const SQ_ENTRIES: u32 = 1024;
/// The completion queue holds at least this many, and at least two per
/// connection (a busy room posts one per segment; the kernel keeps
/// completions past the queue in an overflow list, which [`ReadRing::reap`]
/// flushes).
const MIN_CQ_ENTRIES: u32 = 8192;
/// The kernel's largest completion queue.
const MAX_CQ_ENTRIES: u32 = 65536;
/// `user_data` of cancel completions (ignored).
const CANCEL: u64 = u64::MAX;

/// One slot's state.
#[derive(Default)]
struct Entry {
    /// Bumped at every registration; in the top half of `user_data`.
    generation: u32,
    /// The registered socket, while registered.
    fd: Option<RawFd>,
    /// The poll fired since the last read that came up short.
    readable: bool,
    /// The connection task waiting for it.
    waker: Option<Waker>,
}

/// A shard's read-readiness ring (see the module docs). Lives on one
/// executor thread.
pub(crate) struct ReadRing {
    uring: RefCell<IoUring>,
    entries: RefCell<Vec<Entry>>,
    event_fd: RawFd,
    /// A duplicate of `event_fd` for the task that reads it ([`run`]),
    /// taken here so that failing to get one means no ring, not a ring
    /// nobody reaps.
    reader_fd: Cell<Option<RawFd>>,
    unsubmitted: Cell<u32>,
    /// Multishot polls the kernel ended, to arm again: slot and the
    /// `user_data` they had (armed again only if that registration is
    /// still the slot's: an ended one's fd may be closed or reused).
    rearm: RefCell<Vec<(usize, u64)>>,
}

/// A registration: cancels the poll when dropped.
pub(crate) struct Registration {
    ring: Rc<ReadRing>,
    slot: usize,
    fd: RawFd,
}

fn user_data(slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | slot as u64
}

impl ReadRing {
    /// A ring for `slots` connections, or `None` when the kernel cannot set
    /// one up with cooperative task running (loadgen then reads through
    /// glommio).
    pub(crate) fn new(slots: usize) -> Option<Rc<ReadRing>> {
        let cq = u32::try_from(slots.saturating_mul(2).next_power_of_two())
            .unwrap_or(MAX_CQ_ENTRIES)
            .clamp(MIN_CQ_ENTRIES, MAX_CQ_ENTRIES);
        ReadRing::with_sizes(slots, SQ_ENTRIES, cq)
    }

    /// [`ReadRing::new`] with the queues' sizes given (the tests make the
    /// completion queue tiny to overflow it).
    fn with_sizes(slots: usize, sq: u32, cq: u32) -> Option<Rc<ReadRing>> {
        let uring = IoUring::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .build(sq)
            .ok()?;
        // Safety: a plain eventfd of our own.
        let event_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if event_fd < 0 {
            return None;
        }
        // Safety: a duplicate of our own eventfd.
        let reader_fd = unsafe { libc::dup(event_fd) };
        if reader_fd < 0 || uring.submitter().register_eventfd(event_fd).is_err() {
            unsafe { libc::close(event_fd) };
            if reader_fd >= 0 {
                unsafe { libc::close(reader_fd) };
            }
            return None;
        }
        Some(Rc::new(ReadRing {
            uring: RefCell::new(uring),
            entries: RefCell::new((0..slots).map(|_| Entry::default()).collect()),
            event_fd,
            reader_fd: Cell::new(Some(reader_fd)),
            unsubmitted: Cell::new(0),
            rearm: RefCell::new(Vec::new()),
        }))
    }

    /// Watches `fd` for `slot` until the registration is dropped. The
    /// connection starts readable (bytes may be waiting already).
    pub(crate) fn register(self: &Rc<Self>, slot: usize, fd: RawFd) -> Registration {
        let generation = {
            let mut entries = self.entries.borrow_mut();
            let e = &mut entries[slot];
            e.generation = e.generation.wrapping_add(1);
            e.fd = Some(fd);
            e.readable = true;
            e.waker = None;
            e.generation
        };
        self.arm(fd, user_data(slot, generation));
        self.submit();
        Registration {
            ring: self.clone(),
            slot,
            fd,
        }
    }

    fn arm(&self, fd: RawFd, ud: u64) {
        let flags = (libc::POLLIN | libc::POLLRDHUP) as u32;
        self.push(
            opcode::PollAdd::new(types::Fd(fd), flags)
                .multi(true)
                .build()
                .user_data(ud),
        );
    }

    /// Queues a submission. When the queue is full it is handed to the
    /// kernel; if the kernel takes nothing (it holds completions the
    /// completion queue has no room for, and refuses submissions until
    /// they fit: `EBUSY`), the completion queue is drained to make room.
    fn push(&self, entry: squeue::Entry) {
        loop {
            {
                let mut uring = self.uring.borrow_mut();
                // Safety: the entry references no memory (a poll or a cancel).
                if unsafe { uring.submission().push(&entry) }.is_ok() {
                    self.unsubmitted.set(self.unsubmitted.get() + 1);
                    return;
                }
                if uring.submit().is_ok() {
                    self.unsubmitted.set(0);
                    continue;
                }
            }
            self.take_completions();
        }
    }

    fn submit(&self) {
        if self.unsubmitted.get() > 0 && self.uring.borrow_mut().submit().is_ok() {
            self.unsubmitted.set(0);
        }
    }

    /// Takes the completions the kernel posted: marks slots readable and
    /// wakes their tasks; arms a poll again that the kernel ended. When the
    /// completion queue overflowed, the kernel holds the rest (among them
    /// the last completion of each multishot poll it ended for lack of
    /// room) until the ring is entered asking for events: it is, and
    /// reaped again, or those connections would never be woken.
    fn reap(&self) {
        loop {
            self.take_completions();
            if self.uring.borrow_mut().submission().cq_overflow() {
                // `submit` asks for events (GETEVENTS) when the overflow
                // flag is set, which moves held completions into the queue.
                if self.uring.borrow_mut().submit().is_ok() {
                    self.unsubmitted.set(0);
                }
                continue;
            }
            let rearm = std::mem::take(&mut *self.rearm.borrow_mut());
            if rearm.is_empty() {
                break;
            }
            for (slot, ud) in rearm {
                let fd = {
                    let entries = self.entries.borrow();
                    entries
                        .get(slot)
                        .filter(|e| u64::from(e.generation) == ud >> 32)
                        .and_then(|e| e.fd)
                };
                if let Some(fd) = fd {
                    self.arm(fd, ud);
                }
            }
        }
        self.submit();
    }

    /// Drains the completion queue; polls the kernel ended go on `rearm`.
    fn take_completions(&self) {
        let mut uring = self.uring.borrow_mut();
        let mut entries = self.entries.borrow_mut();
        let mut rearm = self.rearm.borrow_mut();
        for cqe in uring.completion() {
            let ud = cqe.user_data();
            if ud == CANCEL {
                continue;
            }
            let slot = (ud & 0xFFFF_FFFF) as usize;
            let Some(e) = entries.get_mut(slot) else {
                continue;
            };
            if u64::from(e.generation) != ud >> 32 {
                continue;
            }
            if e.fd.is_none() {
                continue;
            }
            e.readable = true;
            if let Some(w) = e.waker.take() {
                w.wake();
            }
            if !cqueue::more(cqe.flags()) {
                rearm.push((slot, ud));
            }
        }
    }
}

impl Registration {
    /// Reads what `fd` has into `buf`, or registers the task to be woken
    /// when it has more. `Ready(Ok(0))` is the end of the stream.
    pub(crate) fn poll_read(
        &self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut entries = self.ring.entries.borrow_mut();
        let e = &mut entries[self.slot];
        if e.readable && !buf.is_empty() {
            // Safety: a read into a buffer we own, on the socket of this
            // registration (its owner keeps it open while registered).
            let n = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > 0 && n < buf.len() {
                    // Drained at this instant: the next byte fires the poll.
                    e.readable = false;
                }
                return Poll::Ready(Ok(n));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => e.readable = false,
                Some(libc::EINTR) => e.readable = true,
                _ => return Poll::Ready(Err(err)),
            }
        }
        if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            e.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ud = {
            let mut entries = self.ring.entries.borrow_mut();
            let e = &mut entries[self.slot];
            e.fd = None;
            e.waker = None;
            e.readable = false;
            user_data(self.slot, e.generation)
        };
        self.ring
            .push(opcode::AsyncCancel::new(ud).build().user_data(CANCEL));
        // Submitted now: the kernel keeps the socket until the cancel runs.
        self.ring.submit();
    }
}

impl Drop for ReadRing {
    fn drop(&mut self) {
        // Safety: our own eventfd, and its duplicate if no task took it.
        unsafe { libc::close(self.event_fd) };
        if let Some(fd) = self.reader_fd.take() {
            unsafe { libc::close(fd) };
        }
    }
}

/// The shard's task that forwards the ring's completions: reads the
/// eventfd through glommio (so the executor sleeps on one thing), then
/// reaps. Call it once per ring.
///
/// # Panics
///
/// When called twice for one ring, or when the eventfd cannot be read: a
/// ring nobody reaps would stall every connection of the shard, which is
/// worse than a loud end.
pub(crate) fn run(ring: &Rc<ReadRing>) -> glommio::Task<()> {
    let efd = ring
        .reader_fd
        .take()
        .expect("the read ring's completions are forwarded by one task");
    // Safety: the duplicate taken in `with_sizes`, owned by the file now.
    let events = unsafe { glommio::io::BufferedFile::from_raw_fd(efd) };
    let ring = ring.clone();
    glommio::spawn_local(async move {
        loop {
            ring.reap();
            if let Err(e) = events.read_at(0, 8).await {
                panic!("loadgen's read ring: reading its eventfd failed ({e}); its connections would stall");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;

    /// Reads from `reg` until `want` bytes came (or the end), awaiting
    /// readiness like a connection task.
    async fn read_all(reg: &Registration, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        while got.len() < want {
            let n = futures_lite::future::poll_fn(|cx| reg.poll_read(cx, &mut buf))
                .await
                .expect("a read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn a_registered_socket_reads_every_byte_as_it_arrives_and_then_the_end() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor")
            .run(async {
                let ring = ReadRing::new(2).expect("a read ring (COOP_TASKRUN: Linux 5.19+)");
                let _forward = run(&ring);
                let listener =
                    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback socket");
                let mut peer =
                    std::net::TcpStream::connect(listener.local_addr().expect("a loopback socket"))
                        .expect("a loopback socket");
                let (ours, _) = listener.accept().expect("a loopback socket");
                ours.set_nonblocking(true).expect("a loopback socket");

                // Slot 1 held an earlier connection: its late completions
                // must not mark the new one (generation check).
                drop(ring.register(1, ours.as_raw_fd()));
                let reg = ring.register(1, ours.as_raw_fd());

                // Nothing there yet: the first read waits, then bytes
                // written in pieces (each a short read) all arrive.
                let reader = glommio::spawn_local({
                    let reg = reg;
                    async move {
                        let first = read_all(&reg, 10).await;
                        let rest = read_all(&reg, usize::MAX).await;
                        (first, rest)
                    }
                });
                for piece in [&b"01234"[..], b"56789", b"abc"] {
                    glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                    peer.write_all(piece).expect("a loopback socket");
                }
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                drop(peer);
                let (first, rest) = reader.await;
                assert_eq!(first, b"0123456789");
                assert_eq!(rest, b"abc", "then the last piece and the end");
            });
    }

    #[test]
    fn completions_past_a_full_queue_still_wake_their_connections() {
        // Eight sockets become readable at once on a ring whose completion
        // queue holds two: the kernel keeps the rest back until the ring is
        // entered for events, and reaping must do that.
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor")
            .run(async {
                let ring =
                    ReadRing::with_sizes(8, 1, 2).expect("a read ring (COOP_TASKRUN: Linux 5.19+)");
                let _forward = run(&ring);
                let listener =
                    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback socket");
                let mut pairs = Vec::new();
                for slot in 0..8 {
                    let peer = std::net::TcpStream::connect(
                        listener.local_addr().expect("a loopback socket"),
                    )
                    .expect("a loopback socket");
                    let (ours, _) = listener.accept().expect("a loopback socket");
                    ours.set_nonblocking(true).expect("a loopback socket");
                    let reg = ring.register(slot, ours.as_raw_fd());
                    pairs.push((peer, ours, reg));
                }
                // Every reader drains what is there (nothing) and waits.
                let mut readers = Vec::new();
                let mut peers = Vec::new();
                for (peer, ours, reg) in pairs {
                    peers.push(peer);
                    // The registration and socket are kept until all have
                    // read: dropping one enters the ring (its cancel), which
                    // would flush the held completions by the way.
                    readers.push(glommio::spawn_local(async move {
                        let got = read_all(&reg, 5).await;
                        (got, reg, ours)
                    }));
                }
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                for p in &mut peers {
                    p.write_all(b"hello").expect("a loopback socket");
                }
                let all = async {
                    let mut got = Vec::new();
                    for r in readers {
                        got.push(r.await);
                    }
                    Some(got)
                };
                let timeout = async {
                    glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
                    None
                };
                let got = futures_lite::future::or(all, timeout)
                    .await
                    .expect("every connection woken within 5 s");
                assert!(got.iter().all(|(g, _, _)| g == b"hello"));
            });
    }
}
