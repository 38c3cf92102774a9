//! A doorbell: how one thread tells a task on another shard that there is
//! work for it, waking that shard **only if the task is waiting**.
//!
//! Why not glommio's shared channels: a glommio `ConnectedReceiver` that
//! takes an item notifies the *producer's* executor (so a producer waiting
//! for room can retry), and a shard that sent a message to a peer is
//! usually asleep waiting for the answer. Every hop between two shards then
//! woke the sender's shard once for nothing — a glommio park and wake, ~14
//! `io_uring_enter`s and a `membarrier`, measured at ~41 µs of CPU per wake
//! on this host (`bench wake`, `docs/benchmarks.md`, "What a wake costs").
//! The gateway's mesh (`mesh.rs`) is therefore plain bounded queues and two
//! doorbells per queue: the receiver's (rung by every send) and the room
//! bell (rung by the receiver after it drains, heard only by a producer
//! that is actually waiting for room).
//!
//! The protocol is Dekker's, with a `SeqCst` fence on each side: the ringer
//! publishes its work, fences, then checks `armed`; the waiter stores its
//! waker, sets `armed`, fences, then checks for work. At least one of the
//! two sees the other's write, so no wake-up is lost; a ring that finds the
//! bell unarmed costs a fence and a load. The waker is a glommio task's; a
//! ring from another thread wakes it through glommio's foreign-wake queue,
//! which writes the shard's eventfd only when the shard sleeps.

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
    /// a glommio waker dropped on another thread after its executor ended
    /// would be handed back to that executor's queue.
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
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn a_waiter_sees_every_ring_from_another_thread_and_none_is_lost() {
        // A thread pushes 20,000 items, ringing after each; a glommio task
        // waits for each one. A lost wake-up would hang the task (the test
        // times out); an early wake would show as an item seen twice.
        const N: u64 = 20_000;
        let bell = Arc::new(Doorbell::new());
        let pushed = Arc::new(AtomicU64::new(0));
        let (b2, p2) = (bell.clone(), pushed.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let seen = glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let producer = std::thread::spawn(move || {
                        for i in 1..=N {
                            p2.store(i, Ordering::Release);
                            b2.ring();
                            if i % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    });
                    let mut taken = 0;
                    let mut waits = 0u64;
                    while taken < N {
                        bell.wait(|| pushed.load(Ordering::Acquire) > taken).await;
                        waits += 1;
                        taken = pushed.load(Ordering::Acquire);
                    }
                    producer.join().expect("producer");
                    (taken, waits)
                })
                .expect("executor")
                .join()
                .expect("join");
            let _ = tx.send(seen);
        });
        let seen = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("timed out: a wake-up was lost");
        assert_eq!(seen.0, N);
        assert!(seen.1 >= 1);
    }

    #[test]
    fn a_ring_with_nobody_waiting_wakes_nothing_later() {
        // Rung before anyone waits: the next wait must still check `ready`
        // itself and, when nothing is there, stay pending until a new ring.
        let bell = Doorbell::new();
        bell.ring();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let flag = AtomicBool::new(false);
        let mut fut = std::pin::pin!(bell.wait(|| flag.load(Ordering::Acquire)));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        flag.store(true, Ordering::Release);
        bell.ring();
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    }
}
