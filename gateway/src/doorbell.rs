//! A doorbell: how one thread tells a task on another shard that there is
//! work for it, waking that shard **only if the task is waiting**.
//!
//! Why not glommio's shared channels (glommio was the executor before
//! 2026-12-05): a glommio `ConnectedReceiver` that took an item notified
//! the *producer's* executor (so a producer waiting for room could retry),
//! and a shard that sent a message to a peer is usually asleep waiting for
//! the answer. Every hop between two shards then woke the sender's shard
//! once more for nothing: with both on one CPU, glommio's mesh cost 49.8 µs
//! of CPU per wake (13.8 `io_uring_enter`s, two parks) against 18.2 µs
//! through a queue and this bell (two glommio executors in both cases;
//! `bench wake`, `docs/benchmarks.md`, "What a wake costs").
//! The gateway's mesh (`mesh.rs`) is therefore plain queues with a doorbell
//! per receiving shard (rung by every send) and one per queue (the room
//! bell, rung by the receiver after it takes from the queue, heard only by
//! a producer that is actually waiting for room).
//!
//! The protocol is Dekker's, with a `SeqCst` fence on each side: the ringer
//! publishes its work, fences, then checks `armed`; the waiter stores its
//! waker, sets `armed`, fences, then checks for work. At least one of the
//! two sees the other's write, so no wake-up is lost; a ring that finds the
//! bell unarmed costs a fence and a load. The waker is a shard runtime
//! task's (`rt`); a ring from another thread wakes it as a foreign wake:
//! the task's key goes on the executor's foreign-wake list, and the
//! shard's eventfd is written only if the shard sleeps, whatever the
//! task's priority (`rt/exec.rs`).

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};

/// One waiting task's bell (one waiter at a time; any number of ringers).
#[derive(Debug, Default)]
pub struct Doorbell {
    armed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Doorbell {
    /// A bell nobody waits on yet.
    #[must_use]
    pub fn new() -> Doorbell {
        Doorbell::default()
    }

    /// Call after making work visible (a push to a queue the waiter checks):
    /// wakes the waiter if it is waiting.
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Resolves once `ready()` holds: at once if it does, else after a
    /// `ring` (checked again after arming, so a ring in between is not
    /// lost). `ready` must become true only through work whose producer
    /// rings afterwards.
    pub async fn wait(&self, ready: impl Fn() -> bool) {
        poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            {
                let mut w = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
                match &*w {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
            }
            self.armed.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() {
                // Disarm, so a later ring does not wake this task (and its
                // shard) for work it has already seen, and drop the waker
                // here, on the waiter's thread.
                self.clear();
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }

    /// Disarms the bell and drops the stored waker. The waiter calls it on
    /// its own thread when it stops waiting for good (a shard stopping):
    /// a waker left in the bell after its executor ended would be woken for
    /// nothing by a later ring and keep that executor's eventfd open until
    /// the bell is dropped. (With glommio, the executor before 2026-12-05,
    /// a waker dropped on another thread after its executor ended was
    /// handed back to that executor's queue.)
    pub fn clear(&self) {
        self.armed.store(false, Ordering::SeqCst);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    #[test]
    fn a_waiter_is_woken_by_every_ring_it_waits_for() {
        // Ping-pong: a thread publishes item i and rings, then waits until
        // the runtime's task has taken it before publishing i + 1, so every
        // ring is the only one that can wake the task. A lost wake-up hangs
        // the exchange, which fails the test after 30 s.
        const N: u64 = 2_000;
        let bell = Arc::new(Doorbell::new());
        let pushed = Arc::new(AtomicU64::new(0));
        let taken = Arc::new(AtomicU64::new(0));
        let (b2, p2, t2) = (bell.clone(), pushed.clone(), taken.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let producer = std::thread::spawn(move || {
                for i in 1..=N {
                    p2.store(i, Ordering::Release);
                    b2.ring();
                    while t2.load(Ordering::Acquire) < i {
                        std::thread::yield_now();
                    }
                }
            });
            let seen = std::thread::spawn(move || {
                crate::rt::block_on(async move {
                    let mut seen = 0;
                    while seen < N {
                        bell.wait(|| pushed.load(Ordering::Acquire) > seen).await;
                        seen = pushed.load(Ordering::Acquire);
                        taken.store(seen, Ordering::Release);
                    }
                    seen
                })
                .expect("executor")
            })
            .join()
            .expect("join");
            producer.join().expect("producer");
            let _ = tx.send(seen);
        });
        let seen = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("timed out: a wake-up was lost");
        assert_eq!(seen, N);
    }

    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ring_wakes_only_a_waiting_task_and_only_once() {
        let bell = Doorbell::new();
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let flag = AtomicBool::new(false);
        // Rung before anyone waits: nothing to wake, and the next wait
        // still checks for work itself.
        bell.ring();
        let mut fut = std::pin::pin!(bell.wait(|| flag.load(Ordering::Acquire)));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // Work arrives and the bell rings: one wake-up.
        flag.store(true, Ordering::Release);
        bell.ring();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A second ring before the task waits again wakes nothing.
        bell.ring();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        // Work already there when the task waits: ready at once, bell
        // left unarmed, so a later ring wakes nothing.
        let mut again = std::pin::pin!(bell.wait(|| flag.load(Ordering::Acquire)));
        assert!(again.as_mut().poll(&mut cx).is_ready());
        bell.ring();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
