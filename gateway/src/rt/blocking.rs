//! Blocking calls (the store's reads) off the shard's thread: a process-wide
//! pool of threads, its result handed back through the calling task's
//! waker (a foreign wake: one eventfd write if the shard sleeps by then).
//!
//! Threads are started as calls need them, up to [`MAX_THREADS`], and kept
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

/// Most threads the pool starts (each ~8 MiB of reserved stack, little of
/// it touched). Calls beyond that many at once wait in the queue.
pub const MAX_THREADS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    threads: AtomicUsize,
    idle: AtomicUsize,
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
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        // Infallible: the pool holds a receiver for as long as the process.
        let _ = self.tx.send(job);
        // A thread for every call in the queue beyond the idle ones (an
        // idle count read as 0 while one is about to take the call starts
        // a thread too many: at most `MAX_THREADS`).
        if self.idle.load(Ordering::SeqCst) < self.rx.len() {
            let started = self
                .threads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < MAX_THREADS).then_some(n + 1)
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
