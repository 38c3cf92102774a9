//! The executor: tasks, their wakers, the run loop and the park.
//!
//! One `Inner` per thread, reachable through a thread-local while
//! [`block_on`] runs. State that only this thread touches is in `RefCell`s
//! borrowed for a few lines at a time and never across a task's poll, a
//! waker's `wake` or a future's drop (each of which may come back here);
//! what other threads reach — the foreign-wake list, the sleeping flag, the
//! eventfd — is in `Shared`, behind an `Arc` every waker holds.
//!
//! **A foreign wake costs a write only while the executor sleeps.** The
//! waker pushes the task's key to `remote`, sets `has_remote` (`SeqCst`),
//! then reads `sleeping` (`SeqCst`); the executor sets `sleeping`
//! (`SeqCst`), then reads `has_remote` (`SeqCst`) before it enters the
//! kernel. In the single total order of `SeqCst` operations one of the two
//! sees the other's store (Dekker): either the executor finds the key and
//! does not sleep, or the waker finds it asleep and writes its eventfd,
//! which completes the read the executor keeps pending in its ring. A wake
//! to a running executor is a mutex push and two atomics — no syscall;
//! glommio writes the eventfd of a sleeping executor too, but reaches it
//! through three rings, two timers re-armed per park and a `membarrier`
//! (`docs/benchmarks.md`, "What a wake costs").
//!
//! The `unsafe` here: io_uring submissions (a pending eventfd read into a
//! buffer this executor owns and drains before it is freed; polls and
//! cancellations that reference no memory) and `write` on the eventfd.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::timer::{TimerKey, Timers};

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Which queue a task runs on. Every pass runs the control tasks that are
/// ready before the default ones, and [`yield_if_needed`] yields a default
/// task when a control task is waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Short, latency-sensitive work (commit completions, mesh input).
    Control,
    /// Everything else.
    Default,
}

/// Ring entries: the eventfd's read, polls and cancellations. The gateway's
/// sockets have their own ring today (`ring.rs`).
const RING_ENTRIES: u32 = 256;

/// Completion entries (16 bytes each: 32 KiB per shard): room for every
/// pending poll of the runtime's streams and their cancellations.
const CQ_ENTRIES: u32 = 2048;

/// How long a pass over the ready tasks may run: after it the pass ends
/// (the rest run in the next one) and [`yield_if_needed`] says yield even
/// when nothing else waits — how late a timer, a completion or a foreign
/// wake that arrives during a long pass is seen, unless one task keeps the
/// thread longer without yielding. (glommio's control queue, the shards'
/// executor before 2026-12-05, was preempted for after 2 ms.)
pub const PASS_BUDGET: Duration = Duration::from_millis(1);

/// The key of the future `block_on` runs (never a slot: slots are `u32`).
const MAIN: u64 = u64::MAX;
/// The `user_data` of the eventfd read; ops use their slot index (< 2³²).
const UD_EVENTFD: u64 = u64::MAX;
/// The `user_data` of a cancellation (its own completion is ignored).
const UD_CANCEL: u64 = u64::MAX - 1;

/// Executor ids, so a waker can tell it runs on its executor's thread.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The id of the executor running on this thread (0: none).
    static CURRENT_ID: Cell<u64> = const { Cell::new(0) };
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// What other threads reach: the foreign-wake list and how to wake the
/// thread.
struct Shared {
    id: u64,
    remote: Mutex<Vec<u64>>,
    has_remote: AtomicBool,
    sleeping: AtomicBool,
    event_fd: OwnedFd,
    /// Eventfd writes made (a foreign wake that found the executor asleep).
    eventfd_writes: AtomicU64,
}

impl Shared {
    fn wake_remote(&self, key: u64) {
        self.remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key);
        self.has_remote.store(true, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.eventfd_writes.fetch_add(1, Ordering::Relaxed);
            let one: u64 = 1;
            // SAFETY: an 8-byte write from a live `u64` to an eventfd this
            // `Shared` owns. It can fail only if the counter would overflow
            // (it is read at every wake), and then the executor is awake.
            unsafe { libc::write(self.event_fd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }
}

/// A task's waker: its key and the way to its executor.
struct WakeHandle {
    key: u64,
    shared: Arc<Shared>,
}

impl Wake for WakeHandle {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if CURRENT_ID.with(Cell::get) == self.shared.id {
            let woke = CURRENT.with(|c| {
                c.borrow()
                    .as_ref()
                    .map(|ex| ex.schedule(self.key))
                    .is_some()
            });
            if woke {
                return;
            }
        }
        self.shared.wake_remote(self.key);
    }
}

struct Slot {
    gen: u32,
    live: bool,
    queued: bool,
    running: bool,
    cancelled: bool,
    prio: Priority,
    fut: Option<BoxFuture>,
    waker: Option<Waker>,
}

/// The tasks: a slab whose keys carry a generation, so a stale wake (for a
/// task that finished and whose slot was reused) finds nothing.
#[derive(Default)]
struct Tasks {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

fn key_of(index: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(index)
}

impl Tasks {
    fn get_mut(&mut self, key: u64) -> Option<&mut Slot> {
        let (index, gen) = (key as u32, (key >> 32) as u32);
        self.slots
            .get_mut(index as usize)
            .filter(|s| s.live && s.gen == gen)
    }

    fn insert(&mut self, fut: BoxFuture, prio: Priority, shared: &Arc<Shared>) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2³² tasks");
                self.slots.push(Slot {
                    gen: 0,
                    live: false,
                    queued: false,
                    running: false,
                    cancelled: false,
                    prio,
                    fut: None,
                    waker: None,
                });
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        let key = key_of(index, slot.gen);
        *slot = Slot {
            gen: slot.gen,
            live: true,
            queued: false,
            running: false,
            cancelled: false,
            prio,
            fut: Some(fut),
            waker: Some(Waker::from(Arc::new(WakeHandle {
                key,
                shared: shared.clone(),
            }))),
        };
        self.live += 1;
        key
    }

    /// Frees a live slot; returns what it held for the caller to drop
    /// outside the borrow.
    fn free(&mut self, key: u64) -> (Option<BoxFuture>, Option<Waker>) {
        let index = key as u32;
        let slot = &mut self.slots[index as usize];
        slot.live = false;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        (slot.fut.take(), slot.waker.take())
    }
}

/// An I/O operation's slot: waiting (with its task's waker), done (with
/// the kernel's result), or orphaned (its future was dropped; the slot is
/// freed when the completion arrives).
enum OpState {
    Waiting(Option<Waker>),
    Done(i32),
    Orphaned,
    Free,
}

#[derive(Default)]
struct Ops {
    slots: Vec<OpState>,
    free: Vec<u32>,
    in_flight: usize,
}

impl Ops {
    fn insert(&mut self) -> u32 {
        self.in_flight += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = OpState::Waiting(None);
                i
            }
            None => {
                self.slots.push(OpState::Waiting(None));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2³² ops")
            }
        }
    }

    /// The kernel's answer for op `index`; the waker to wake, if any.
    fn complete(&mut self, index: u32, result: i32) -> Option<Waker> {
        let slot = self.slots.get_mut(index as usize)?;
        match std::mem::replace(slot, OpState::Done(result)) {
            OpState::Waiting(w) => {
                self.in_flight -= 1;
                w
            }
            OpState::Orphaned => {
                *slot = OpState::Free;
                self.free.push(index);
                self.in_flight -= 1;
                None
            }
            // Not an op's first completion: keep what was there.
            other => {
                *slot = other;
                None
            }
        }
    }
}

/// Counters, for tests and `bench wake`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Times the executor entered the kernel to wait.
    pub parks: u64,
    /// Task polls.
    pub polls: u64,
    /// Eventfd writes made by foreign wakes (the executor was asleep).
    pub eventfd_writes: u64,
    /// Timers registered now.
    pub timers: usize,
    /// Operations submitted and not completed (a dropped one until its
    /// cancellation completes).
    pub ops_in_flight: usize,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: RefCell<Tasks>,
    control: RefCell<VecDeque<u64>>,
    default: RefCell<VecDeque<u64>>,
    main_woken: Cell<bool>,
    timers: RefCell<Timers>,
    ring: RefCell<IoUring>,
    ops: RefCell<Ops>,
    /// The eventfd read's target, on the heap (a stable address): the
    /// kernel writes it while the read is pending. Freed with `Inner`, or
    /// leaked (8 bytes) if the read never completed.
    eventfd_buf: *mut u64,
    eventfd_armed: Cell<bool>,
    pass_start: Cell<Instant>,
    parks: Cell<u64>,
    polls: Cell<u64>,
}

impl Inner {
    fn new() -> std::io::Result<Inner> {
        // SAFETY: plain syscall; the fd is owned below.
        // Blocking: io_uring's read of a non-blocking eventfd may fail at
        // once with EAGAIN instead of waiting (the park would then spin).
        // A write never blocks: the counter is read at every wake.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `efd` is a new descriptor nothing else owns.
        let event_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(RING_ENTRIES)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the shard runtime needs io_uring waits with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11 or newer)",
            ));
        }
        Ok(Inner {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                remote: Mutex::new(Vec::new()),
                has_remote: AtomicBool::new(false),
                sleeping: AtomicBool::new(false),
                event_fd,
                eventfd_writes: AtomicU64::new(0),
            }),
            tasks: RefCell::default(),
            control: RefCell::default(),
            default: RefCell::default(),
            main_woken: Cell::new(true),
            timers: RefCell::default(),
            ring: RefCell::new(ring),
            ops: RefCell::default(),
            eventfd_buf: Box::into_raw(Box::new(0u64)),
            eventfd_armed: Cell::new(false),
            pass_start: Cell::new(Instant::now()),
            parks: Cell::new(0),
            polls: Cell::new(0),
        })
    }

    /// Queues task `key` (once, however often it is woken).
    fn schedule(&self, key: u64) {
        if key == MAIN {
            self.main_woken.set(true);
            return;
        }
        let prio = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(key) else {
                return;
            };
            if slot.queued {
                return;
            }
            slot.queued = true;
            slot.prio
        };
        match prio {
            Priority::Control => self.control.borrow_mut().push_back(key),
            Priority::Default => self.default.borrow_mut().push_back(key),
        }
    }

    fn spawn<T: 'static>(
        self: &Rc<Self>,
        prio: Priority,
        fut: impl Future<Output = T> + 'static,
    ) -> Task<T> {
        let join = Rc::new(Join {
            value: RefCell::new(None),
            done: Cell::new(false),
            waiter: RefCell::new(None),
        });
        let finish = join.clone();
        let wrapped: BoxFuture = Box::pin(async move {
            let value = fut.await;
            finish.finish(value);
        });
        let key = self.tasks.borrow_mut().insert(wrapped, prio, &self.shared);
        self.schedule(key);
        Task {
            key,
            join,
            exec: Rc::downgrade(self),
            detached: false,
        }
    }

    fn poll_task(&self, key: u64) {
        let (mut fut, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(key) else {
                return;
            };
            slot.queued = false;
            let Some(fut) = slot.fut.take() else { return };
            slot.running = true;
            (fut, slot.waker.clone().expect("a live task has a waker"))
        };
        self.polls.set(self.polls.get() + 1);
        let done = fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let dead = {
            let mut tasks = self.tasks.borrow_mut();
            let slot = tasks.get_mut(key).expect("a running task keeps its slot");
            slot.running = false;
            if done || slot.cancelled {
                let (_, w) = tasks.free(key);
                Some((fut, w))
            } else {
                slot.fut = Some(fut);
                None
            }
        };
        drop(dead);
    }

    /// Drops task `key`'s future (now, or after its poll if it is running).
    fn cancel(&self, key: u64) {
        let dead = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(key) else {
                return;
            };
            if slot.running {
                slot.cancelled = true;
                None
            } else {
                Some(tasks.free(key))
            }
        };
        drop(dead);
    }

    /// Polls the tasks ready when the pass starts: control first.
    ///
    /// A control task woken during the pass runs before the next default
    /// task; the pass ends after [`PASS_BUDGET`] (checked every few polls),
    /// so that completions, foreign wakes and due timers are taken at
    /// least that often — the default tasks not reached stay at the front
    /// of their queue for the next pass.
    fn run_pass(&self) {
        let start = Instant::now();
        self.pass_start.set(start);
        self.run_control();
        let n = self.default.borrow().len();
        for i in 0..n {
            if !self.control.borrow().is_empty() {
                self.run_control();
            }
            if i % 4 == 3 && start.elapsed() >= PASS_BUDGET {
                break;
            }
            let Some(key) = self.default.borrow_mut().pop_front() else {
                break;
            };
            self.poll_task(key);
        }
    }

    /// Polls the control tasks queued now (one that wakes itself again
    /// runs in a later round, so this ends).
    fn run_control(&self) {
        let n = self.control.borrow().len();
        for _ in 0..n {
            let Some(key) = self.control.borrow_mut().pop_front() else {
                break;
            };
            self.poll_task(key);
        }
    }

    /// Foreign wakes, completions and due timers, then what was queued for
    /// the kernel: the work between two passes.
    fn turn(&self) {
        if self.shared.has_remote.load(Ordering::Relaxed) {
            self.shared.has_remote.store(false, Ordering::SeqCst);
            let keys = std::mem::take(
                &mut *self
                    .shared
                    .remote
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for key in keys {
                self.schedule(key);
            }
        }
        self.reap();
        if self.timers.borrow().len() > 0 {
            let mut due = Vec::new();
            self.timers.borrow_mut().take_due(Instant::now(), &mut due);
            due.into_iter().for_each(Waker::wake);
        }
        let ring = self.ring.borrow();
        // SAFETY: only the length is read; no other submission queue
        // handle is alive (every borrow of the ring is this thread's).
        if !unsafe { ring.submission_shared() }.is_empty() {
            submit_result(ring.submit());
        }
    }

    fn reap(&self) {
        let mut woken: Vec<Waker> = Vec::new();
        {
            let mut ring = self.ring.borrow_mut();
            let mut ops = self.ops.borrow_mut();
            for cqe in ring.completion() {
                match cqe.user_data() {
                    UD_EVENTFD => {
                        self.eventfd_armed.set(false);
                        let r = cqe.result();
                        assert!(
                            r >= 0 || r == -libc::ECANCELED || r == -libc::EINTR,
                            "shard runtime: reading the wake-up eventfd failed ({}); the shard could not sleep",
                            std::io::Error::from_raw_os_error(-r)
                        );
                    }
                    UD_CANCEL => {}
                    ud => {
                        if let Some(w) = ops.complete(ud as u32, cqe.result()) {
                            woken.push(w);
                        }
                    }
                }
            }
        }
        woken.into_iter().for_each(Waker::wake);
    }

    fn idle(&self) -> bool {
        !self.main_woken.get()
            && self.control.borrow().is_empty()
            && self.default.borrow().is_empty()
    }

    /// Pushes an entry, submitting first when the queue is full.
    ///
    /// # Safety
    ///
    /// Whatever `entry` references must stay valid until its completion.
    unsafe fn push(&self, entry: &squeue::Entry) {
        loop {
            {
                let mut ring = self.ring.borrow_mut();
                // SAFETY: the caller's promise.
                if unsafe { ring.submission().push(entry) }.is_ok() {
                    return;
                }
                match ring.submit() {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                    r => {
                        submit_result(r);
                        continue;
                    }
                }
            }
            // The kernel takes no more while completions it could not post
            // wait (its queue overflowed): take them first.
            self.reap();
        }
    }

    fn arm_eventfd(&self) {
        if self.eventfd_armed.replace(true) {
            return;
        }
        let read = opcode::Read::new(
            types::Fd(self.shared.event_fd.as_raw_fd()),
            self.eventfd_buf.cast(),
            8,
        )
        .build()
        .user_data(UD_EVENTFD);
        // SAFETY: the buffer is boxed in `self` and outlives the read:
        // `teardown` completes it before `self` is dropped.
        unsafe { self.push(&read) };
    }

    /// Sleeps in the kernel until a completion (an op's, or the eventfd's
    /// read after a foreign wake) or the next timer.
    fn park(&self) {
        let shared = &self.shared;
        shared.sleeping.store(true, Ordering::SeqCst);
        if shared.has_remote.load(Ordering::SeqCst) {
            shared.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        self.arm_eventfd();
        if !self.idle() {
            // Arming found the submission queue full and took completions,
            // which woke tasks: run them instead.
            shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        let deadline = self.timers.borrow().next_deadline();
        let ring = self.ring.borrow();
        let result = match deadline {
            None => ring.submit_and_wait(1),
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    ring.submit()
                } else {
                    let ts = types::Timespec::new()
                        .sec(wait.as_secs())
                        .nsec(wait.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&ts);
                    ring.submitter().submit_with_args(1, &args)
                }
            }
        };
        submit_result(result);
        shared.sleeping.store(false, Ordering::SeqCst);
        self.parks.set(self.parks.get() + 1);
    }

    fn run<F: Future>(self: &Rc<Self>, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let main_waker = Waker::from(Arc::new(WakeHandle {
            key: MAIN,
            shared: self.shared.clone(),
        }));
        loop {
            if self.main_woken.replace(false) {
                if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    return out;
                }
            }
            self.run_pass();
            self.turn();
            if self.idle() {
                self.park();
                self.turn();
            }
        }
    }

    /// Drops every task (while this executor is still current: their drops
    /// may cancel other tasks or ops), then waits out the ring's pending
    /// operations so nothing the kernel may still write is freed.
    fn teardown(&self) {
        loop {
            let futs: Vec<_> = {
                let mut tasks = self.tasks.borrow_mut();
                let keys: Vec<u64> = tasks
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.live)
                    .map(|(i, s)| key_of(i as u32, s.gen))
                    .collect();
                keys.into_iter().map(|k| tasks.free(k)).collect()
            };
            if futs.is_empty() {
                break;
            }
            drop(futs);
        }
        self.control.borrow_mut().clear();
        self.default.borrow_mut().clear();
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        drop(timers);
        if self.eventfd_armed.get() {
            let one: u64 = 1;
            // SAFETY: as in `wake_remote`: completes the pending read.
            unsafe { libc::write(self.shared.event_fd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
        // Orphaned ops were cancelled when their futures dropped; their
        // completions (and the eventfd read's) arrive promptly.
        let give_up = Instant::now() + Duration::from_secs(5);
        while (self.eventfd_armed.get() || self.ops.borrow().in_flight > 0)
            && Instant::now() < give_up
        {
            {
                let ring = self.ring.borrow();
                let ts = types::Timespec::new().nsec(10_000_000);
                let args = types::SubmitArgs::new().timespec(&ts);
                submit_result(ring.submitter().submit_with_args(1, &args));
            }
            self.reap();
        }
        if self.eventfd_armed.get() || self.ops.borrow().in_flight > 0 {
            tracing::warn!(
                ops = self.ops.borrow().in_flight,
                "shard runtime: the kernel did not answer every pending operation within 5 s of the stop"
            );
        }
    }

    fn stats(&self) -> ExecStats {
        ExecStats {
            parks: self.parks.get(),
            polls: self.polls.get(),
            eventfd_writes: self.shared.eventfd_writes.load(Ordering::Relaxed),
            timers: self.timers.borrow().len(),
            ops_in_flight: self.ops.borrow().in_flight,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.eventfd_armed.get() {
            // SAFETY: from `Box::into_raw` in `new`, freed once, and no read
            // into it is pending (`teardown` waited for it); if one still
            // were, the 8 bytes are leaked instead.
            drop(unsafe { Box::from_raw(self.eventfd_buf) });
        }
    }
}

/// `io_uring_enter`'s result: interrupted waits and timeouts are normal.
fn submit_result(r: std::io::Result<usize>) {
    if let Err(e) = r {
        match e.raw_os_error() {
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
            _ => panic!("shard runtime: io_uring_enter failed: {e}"),
        }
    }
}

fn with_current<R>(f: impl FnOnce(&Rc<Inner>) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

fn current() -> Rc<Inner> {
    with_current(Rc::clone).expect("called outside the shard runtime (rt::block_on)")
}

/// Runs `fut` on a new executor on this thread until it completes, with
/// every task it spawns; tasks still running then are dropped.
///
/// # Errors
///
/// When the eventfd or the io_uring cannot be created.
///
/// # Panics
///
/// When this thread already runs an executor.
pub fn block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let inner = Rc::new(Inner::new()?);
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        assert!(c.is_none(), "rt::block_on inside rt::block_on");
        *c = Some(inner.clone());
    });
    CURRENT_ID.with(|id| id.set(inner.shared.id));
    struct Uninstall(Rc<Inner>);
    impl Drop for Uninstall {
        fn drop(&mut self) {
            self.0.teardown();
            CURRENT_ID.with(|id| id.set(0));
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    let guard = Uninstall(inner);
    let out = guard.0.run(fut);
    drop(guard);
    Ok(out)
}

/// Spawns a task on this thread's executor (the default queue).
///
/// # Panics
///
/// Outside [`block_on`].
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    current().spawn(Priority::Default, fut)
}

/// Spawns a task on the given queue.
///
/// # Panics
///
/// Outside [`block_on`].
pub fn spawn_with<T: 'static>(prio: Priority, fut: impl Future<Output = T> + 'static) -> Task<T> {
    current().spawn(prio, fut)
}

/// This thread's executor's counters (zeros outside [`block_on`]).
#[must_use]
pub fn stats() -> ExecStats {
    with_current(|ex| ex.stats()).unwrap_or_default()
}

/// Whether the running task should yield: a control task or a foreign
/// wake waits, a completion arrived, or the pass has run [`PASS_BUDGET`].
#[must_use]
pub fn need_yield() -> bool {
    with_current(|ex| {
        ex.shared.has_remote.load(Ordering::Relaxed)
            || !ex.control.borrow().is_empty()
            // SAFETY: only the length is read; no other completion queue
            // handle is alive (every borrow of the ring is this thread's).
            || !unsafe { ex.ring.borrow().completion_shared() }.is_empty()
            || ex.pass_start.get().elapsed() >= PASS_BUDGET
    })
    .unwrap_or(false)
}

/// Lets the executor's other tasks, completions and timers run, then
/// continues.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// [`yield_now`] when [`need_yield`].
pub async fn yield_if_needed() {
    if need_yield() {
        yield_now().await;
    }
}

/// A spawned task: await it for its output; dropping it cancels the task
/// (its future is dropped), [`Task::detach`] lets it run to its end.
#[must_use = "dropping a Task cancels it; call .detach() to let it run"]
pub struct Task<T> {
    key: u64,
    join: Rc<Join<T>>,
    exec: Weak<Inner>,
    detached: bool,
}

struct Join<T> {
    value: RefCell<Option<T>>,
    done: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl<T> Join<T> {
    fn finish(&self, value: T) {
        *self.value.borrow_mut() = Some(value);
        self.done.set(true);
        let waiter = self.waiter.borrow_mut().take();
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

impl<T> Task<T> {
    /// Lets the task run to its end without anyone awaiting it.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Cancels the task (its future is dropped now); its output if it had
    /// already finished.
    pub async fn cancel(mut self) -> Option<T> {
        let value = self.join.value.borrow_mut().take();
        if value.is_none() && !self.join.done.get() {
            if let Some(ex) = self.exec.upgrade() {
                ex.cancel(self.key);
            }
        }
        self.detached = true;
        value
    }

    /// Whether the task has finished.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.join.done.get()
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(v) = self.join.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        assert!(
            !self.join.done.get(),
            "a Task polled after it returned its output"
        );
        let mut waiter = self.join.waiter.borrow_mut();
        match &mut *waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if !self.detached && !self.join.done.get() {
            if let Some(ex) = self.exec.upgrade() {
                ex.cancel(self.key);
            }
        }
    }
}

/// A future done at a deadline (the executor's timers).
pub struct Sleep {
    deadline: Instant,
    key: Option<TimerKey>,
}

/// Sleeps for `d`.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

/// Sleeps until `deadline`.
#[must_use]
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                let w = with_current(|ex| ex.timers.borrow_mut().remove(key));
                drop(w);
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = self.key;
        self.key = Some(
            with_current(|ex| {
                let mut timers = ex.timers.borrow_mut();
                match key {
                    Some(k) if timers.update(k, cx.waker()) => k,
                    _ => timers.insert(deadline, cx.waker().clone()),
                }
            })
            .expect("rt::sleep polled outside the shard runtime"),
        );
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let w = with_current(|ex| ex.timers.borrow_mut().remove(key));
            drop(w);
        }
    }
}

/// `fut` did not finish within its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

/// `fut`'s output, or [`TimedOut`] after `d` (then `fut` is dropped).
///
/// # Errors
///
/// [`TimedOut`] when `d` passes first.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Result<T, TimedOut> {
    let mut fut = pin!(fut);
    let mut timer = pin!(sleep(d));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(TimedOut));
        }
        Poll::Pending
    })
    .await
}

/// A submitted operation's completion: the kernel's result (≥ 0, or a
/// negated errno). Dropped before it completes, it is cancelled.
pub struct Op {
    index: Option<u32>,
    /// The id of the executor whose ring and op table it is in.
    exec: u64,
    /// An op belongs to the executor of the thread that submitted it: its
    /// index means nothing to another one.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op").field("slot", &self.index).finish()
    }
}

impl Op {
    /// Submits `entry` on this thread's executor's ring.
    ///
    /// # Safety
    ///
    /// Whatever `entry` references (buffers, iovecs, addresses) must stay
    /// valid until the completion — even if the `Op` is dropped first (its
    /// cancellation is asynchronous). Entries that reference no memory
    /// (polls, timeouts, no-ops) are always safe.
    unsafe fn submit(entry: squeue::Entry) -> Op {
        let ex = current();
        let index = ex.ops.borrow_mut().insert();
        // SAFETY: the caller's promise.
        unsafe { ex.push(&entry.user_data(u64::from(index))) };
        Op {
            index: Some(index),
            exec: ex.shared.id,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Future for Op {
    type Output = i32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let Some(index) = self.index else {
            panic!("an Op polled after it completed")
        };
        let ex = current();
        assert_eq!(
            ex.shared.id, self.exec,
            "an Op polled on an executor other than the one it was submitted on"
        );
        let mut ops = ex.ops.borrow_mut();
        let slot = &mut ops.slots[index as usize];
        match slot {
            OpState::Done(r) => {
                let r = *r;
                *slot = OpState::Free;
                ops.free.push(index);
                drop(ops);
                self.index = None;
                Poll::Ready(r)
            }
            OpState::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            OpState::Orphaned | OpState::Free => unreachable!("a live Op's slot"),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let Some(index) = self.index.take() else {
            return;
        };
        // Outside its executor (it ended, or another runs on this thread)
        // there is nothing to cancel: that ring is gone with it.
        let Some(ex) = with_current(Rc::clone).filter(|ex| ex.shared.id == self.exec) else {
            return;
        };
        let waiting = {
            let mut ops = ex.ops.borrow_mut();
            let slot = &mut ops.slots[index as usize];
            match slot {
                OpState::Done(_) => {
                    *slot = OpState::Free;
                    ops.free.push(index);
                    None
                }
                OpState::Waiting(w) => {
                    let w = w.take();
                    *slot = OpState::Orphaned;
                    Some(w)
                }
                OpState::Orphaned | OpState::Free => None,
            }
        };
        if let Some(w) = waiting {
            drop(w);
            let cancel = opcode::AsyncCancel::new(u64::from(index))
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancellation references no memory.
            unsafe { ex.push(&cancel) };
        }
    }
}

/// Completes when `fd` is readable (`POLLIN`, or an error or hang-up);
/// the result is the `poll` event mask or a negated errno.
#[must_use]
pub fn readable(fd: RawFd) -> Op {
    poll_fd(fd, libc::POLLIN as u32)
}

/// Completes when `fd` is writable (`POLLOUT`, or an error or hang-up).
#[must_use]
pub fn writable(fd: RawFd) -> Op {
    poll_fd(fd, libc::POLLOUT as u32)
}

fn poll_fd(fd: RawFd, events: u32) -> Op {
    let entry = opcode::PollAdd::new(types::Fd(fd), events).build();
    // SAFETY: a poll references no memory.
    unsafe { Op::submit(entry) }
}
