//! Blocking calls (the store's reads) off the shard's thread: a process-wide
//! pool of threads, its result handed back through the calling task's
//! waker (a foreign wake: one eventfd write if the shard sleeps by then).
//!
//! Threads are started as calls need them, up to a maximum (4 unless
//! [`allow_blocking_threads`] raised it: the gateway allows
//! `store_read_threads` per shard), and kept
//! (an idle one sleeps in a channel receive): a shard's reads come in
//! bursts, and starting a thread per burst would cost more than the read.
//! The call is handed over when [`spawn_blocking`] is called, not when the
//! future is first polled, so several run side by side.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

/// The pool's first maximum of threads.
const DEFAULT_MAX_THREADS: usize = 4;

/// The most threads the pool may ever be allowed.
pub const MAX_THREADS: usize = 1024;

/// Lets the pool start up to `n` threads (each ~8 MiB of reserved stack,
/// little of it touched; none is started before a call needs it), and
/// lets them run on the CPUs the calling thread may use — not only on the
/// CPU of the pinned shard whose call happens to start one. Calls beyond
/// that many at once wait in the queue. The maximum only grows: several
/// gateways in one process (tests) share the pool.
pub fn allow_blocking_threads(n: usize) {
    let pool = pool();
    if let Some(cpus) = crate::sys::allowed_cpus() {
        *pool.cpus.lock().unwrap_or_else(PoisonError::into_inner) = Some(cpus);
    }
    pool.max.fetch_max(n.min(MAX_THREADS), Ordering::SeqCst);
}

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    threads: AtomicUsize,
    idle: AtomicUsize,
    max: AtomicUsize,
    /// Where the threads run (`None`: where the thread that starts one may).
    cpus: Mutex<Option<Vec<usize>>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            max: AtomicUsize::new(DEFAULT_MAX_THREADS),
            cpus: Mutex::new(None),
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        // Infallible: the pool holds a receiver for as long as the process.
        let _ = self.tx.send(job);
        // A thread for every call in the queue beyond the idle ones (an
        // idle count read as 0 while one is about to take the call starts
        // a thread too many, within the maximum).
        if self.idle.load(Ordering::SeqCst) < self.rx.len() {
            let max = self.max.load(Ordering::SeqCst);
            let started = self
                .threads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok();
            if started {
                let spawned = thread::Builder::new()
                    .name("blocking".into())
                    .spawn(move || self.work());
                if spawned.is_err() {
                    // Out of threads: the calls wait for a running one.
                    self.threads.fetch_sub(1, Ordering::SeqCst);
                    assert!(
                        self.threads.load(Ordering::SeqCst) > 0,
                        "rt::spawn_blocking: no thread could be started"
                    );
                }
            }
        }
    }

    fn work(&self) {
        let cpus = self
            .cpus
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(cpus) = cpus {
            if let Err(e) = crate::sys::set_current_thread_cpus(&cpus) {
                tracing::warn!(error = %e, "a blocking-pool thread keeps its starter's CPUs");
            }
        }
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let job = self.rx.recv();
            self.idle.fetch_sub(1, Ordering::SeqCst);
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
        }
    }
}

struct Slot<T> {
    value: Option<thread::Result<T>>,
    waker: Option<Waker>,
}

/// The result of [`spawn_blocking`]'s call.
pub struct Blocking<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// Runs `f` on the blocking pool; the future is its result. A panic in `f`
/// is resumed in the task that awaits it.
pub fn spawn_blocking<T, F>(f: F) -> Blocking<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let theirs = slot.clone();
    pool().submit(Box::new(move || {
        let value = catch_unwind(AssertUnwindSafe(f));
        let waker = {
            let mut s = theirs.lock().unwrap_or_else(PoisonError::into_inner);
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }));
    Blocking { slot }
}

impl<T> Future for Blocking<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match s.value.take() {
            Some(Ok(v)) => Poll::Ready(v),
            Some(Err(panic)) => {
                drop(s);
                resume_unwind(panic)
            }
            None => {
                match &mut s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
