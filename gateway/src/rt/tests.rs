use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::*;
use crate::doorbell::Doorbell;

/// Runs `f` on a thread and fails the test if it takes longer than `secs`
/// (a lost wake-up hangs instead of failing).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the test hung: a wake-up was lost")
}

async fn own_waker() -> Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

#[test]
fn spawned_tasks_run_and_their_output_is_awaited() {
    let out = block_on(async {
        let a = spawn(async { 20 });
        let b = spawn(async {
            let inner = spawn(async { 1 });
            inner.await + 1
        });
        a.await + b.await
    })
    .expect("an executor");
    assert_eq!(out, 22);
}

#[test]
fn ready_control_tasks_run_before_default_ones() {
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, prio) in [
            Priority::Default,
            Priority::Control,
            Priority::Default,
            Priority::Control,
        ]
        .into_iter()
        .enumerate()
        {
            let o = order.clone();
            tasks.push(spawn_with(prio, async move { o.borrow_mut().push(i) }));
        }
        for t in tasks {
            t.await;
        }
        Rc::try_unwrap(order).expect("tasks done").into_inner()
    })
    .expect("an executor");
    assert_eq!(order, vec![1, 3, 0, 2]);
}

#[test]
fn dropping_a_task_cancels_it_and_detach_lets_it_finish() {
    struct OnDrop(Rc<Cell<bool>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    block_on(async {
        let dropped = Rc::new(Cell::new(false));
        let finished = Rc::new(Cell::new(false));
        let (d, f) = (OnDrop(dropped.clone()), finished.clone());
        let task = spawn(async move {
            let _d = d;
            sleep(Duration::from_millis(50)).await;
            f.set(true);
        });
        yield_now().await; // it starts and waits
        drop(task);
        assert!(
            dropped.get(),
            "the cancelled task's future is dropped at once"
        );
        sleep(Duration::from_millis(80)).await;
        assert!(!finished.get(), "a cancelled task never finishes");

        let finished = Rc::new(Cell::new(false));
        let f = finished.clone();
        spawn(async move {
            sleep(Duration::from_millis(10)).await;
            f.set(true);
        })
        .detach();
        sleep(Duration::from_millis(40)).await;
        assert!(finished.get(), "a detached task runs to its end");
        assert_eq!(stats().timers, 0, "no timer left behind");
    })
    .expect("an executor");
}

#[test]
fn sleep_waits_its_duration_and_timeout_ends_a_slow_future() {
    block_on(async {
        let t = Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(t.elapsed() >= Duration::from_millis(30));

        let slow = timeout(Duration::from_millis(20), sleep(Duration::from_secs(60))).await;
        assert_eq!(slow, Err(TimedOut));
        let fast = timeout(Duration::from_secs(60), async { 7 }).await;
        assert_eq!(fast, Ok(7));
        assert_eq!(stats().timers, 0, "the losers' timers are removed");
        assert!(stats().parks > 0, "the executor slept while it waited");
    })
    .expect("an executor");
}

#[test]
fn a_wake_from_another_thread_wakes_a_sleeping_executor() {
    // Two executors pass a token 2,000 times; each waits in between, so
    // every hop is a foreign wake of a sleeping executor.
    let n = within(30, || {
        let (to_b, at_b) = crossbeam_channel::unbounded::<u64>();
        let (to_a, at_a) = crossbeam_channel::unbounded::<u64>();
        let (bell_a, bell_b) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
        let (bell_a2, bell_b2) = (bell_a.clone(), bell_b.clone());
        let b = std::thread::spawn(move || {
            block_on(async move {
                loop {
                    bell_b2.wait(|| !at_b.is_empty()).await;
                    while let Ok(v) = at_b.try_recv() {
                        if v == u64::MAX {
                            return;
                        }
                        to_a.send(v + 1).expect("a waits");
                        bell_a2.ring();
                    }
                }
            })
            .expect("executor b");
        });
        let n = block_on(async move {
            let mut v = 0;
            for _ in 0..2_000 {
                to_b.send(v).expect("b waits");
                bell_b.ring();
                bell_a.wait(|| !at_a.is_empty()).await;
                v = at_a.try_recv().expect("b's answer") + 1;
            }
            to_b.send(u64::MAX).expect("b waits");
            bell_b.ring();
            v
        })
        .expect("executor a");
        b.join().expect("b ends");
        n
    });
    assert_eq!(n, 4_000);
}

#[test]
fn a_foreign_wake_writes_the_eventfd_only_while_the_executor_sleeps() {
    within(30, || {
        block_on(async {
            let woken = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            // A task that counts its wake-ups, its waker handed to a thread.
            let w = woken.clone();
            let (wtx, wrx) = crossbeam_channel::bounded::<Waker>(1);
            let counter = spawn(async move {
                wtx.send(own_waker().await).expect("the thread waits");
                let mut seen = 0;
                poll_fn(|_| {
                    seen += 1;
                    w.store(seen, Ordering::SeqCst);
                    Poll::<()>::Pending
                })
                .await;
            });
            yield_now().await; // the task runs and hands its waker over
            let waker = wrx.try_recv().expect("the task's waker");
            // A busy executor: a task that yields for 200 ms never lets
            // it sleep; 100 foreign wakes in that time write nothing.
            let (s, wk) = (stop.clone(), waker.clone());
            let thread = std::thread::spawn(move || {
                for _ in 0..100 {
                    wk.wake_by_ref();
                    std::thread::sleep(Duration::from_micros(500));
                }
                s.store(true, Ordering::SeqCst);
            });
            let before = stats();
            while !stop.load(Ordering::SeqCst) {
                yield_now().await;
            }
            let busy = stats();
            assert_eq!(busy.parks, before.parks, "a busy executor does not sleep");
            assert_eq!(busy.eventfd_writes, 0, "no eventfd write while awake");
            assert!(
                woken.load(Ordering::SeqCst) > 1,
                "the wakes reached the task"
            );
            thread.join().expect("the waking thread");
            drop(counter);
            drop(waker);
            // Now asleep with nothing due for 20 s: only the eventfd write
            // of a wake from another thread can end the wait in time.
            let (wtx, wrx) = crossbeam_channel::bounded::<Waker>(1);
            let mut first = true;
            let waiter = spawn(poll_fn(move |cx| {
                if std::mem::take(&mut first) {
                    wtx.send(cx.waker().clone()).expect("the thread waits");
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }));
            std::thread::spawn(move || {
                let w = wrx.recv().expect("the waiter's waker");
                std::thread::sleep(Duration::from_millis(50));
                w.wake();
            });
            let t = Instant::now();
            timeout(Duration::from_secs(20), waiter)
                .await
                .expect("the foreign wake reached a sleeping executor");
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
            assert!(
                stats().eventfd_writes >= 1,
                "a sleeping executor is woken by a write"
            );
        })
        .expect("an executor");
    });
}

#[test]
fn a_sleeping_executor_waits_in_the_kernel_instead_of_spinning() {
    block_on(async {
        let before = stats().parks;
        let t = Instant::now();
        sleep(Duration::from_millis(50)).await;
        assert!(t.elapsed() >= Duration::from_millis(50));
        let parks = stats().parks - before;
        assert!(
            (1..=3).contains(&parks),
            "{parks} parks for one 50 ms sleep"
        );
    })
    .expect("an executor");
}

#[test]
fn a_control_task_woken_during_a_pass_runs_before_the_next_default_task() {
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let (o, slot) = (order.clone(), Rc::new(RefCell::new(None::<Waker>)));
        let s = slot.clone();
        let mut registered = false;
        let control = spawn_with(
            Priority::Control,
            poll_fn(move |cx| {
                if !std::mem::replace(&mut registered, true) {
                    *s.borrow_mut() = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                o.borrow_mut().push("control");
                Poll::Ready(())
            }),
        );
        yield_now().await; // the control task waits
        let tasks: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let (o, slot) = (order.clone(), slot.clone());
                spawn(async move {
                    o.borrow_mut().push(name);
                    if name == "a" {
                        let w = slot.borrow_mut().take();
                        w.expect("the control task's waker").wake();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        control.await;
        Rc::try_unwrap(order).expect("tasks done").into_inner()
    })
    .expect("an executor");
    assert_eq!(order, ["a", "control", "b", "c"]);
}

#[test]
fn a_long_pass_ends_after_its_budget_and_a_due_timer_is_seen() {
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let o = order.clone();
        let timed = spawn_with(Priority::Control, async move {
            sleep(Duration::from_micros(200)).await;
            o.borrow_mut().push(0);
        });
        yield_now().await; // its timer is set
        let tasks: Vec<_> = (1..=10)
            .map(|i| {
                let o = order.clone();
                spawn(async move {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(400) {
                        std::hint::spin_loop();
                    }
                    o.borrow_mut().push(i);
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        timed.await;
        Rc::try_unwrap(order).expect("tasks done").into_inner()
    })
    .expect("an executor");
    let at = order
        .iter()
        .position(|&i| i == 0)
        .expect("the timed task ran");
    // 10 tasks of 0.4 ms: one pass would take 4 ms and the timer would be
    // seen after all of them; with a 1 ms budget it is seen after ~4.
    assert!(at <= 6, "the timer's task ran at {at}: {order:?}");
}

#[test]
fn yield_now_lets_the_other_tasks_run() {
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let o = order.clone();
                spawn(async move {
                    for i in 0..3 {
                        o.borrow_mut().push(format!("{name}{i}"));
                        yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        Rc::try_unwrap(order).expect("tasks done").into_inner()
    })
    .expect("an executor");
    assert_eq!(order, ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[test]
fn a_stale_waker_does_not_poll_the_next_task_in_its_slot() {
    block_on(async {
        let first = spawn(own_waker());
        let stale = first.await;
        let polls = Rc::new(Cell::new(0));
        let p = polls.clone();
        let second = spawn(poll_fn(move |_| {
            p.set(p.get() + 1);
            Poll::<()>::Pending
        }));
        yield_now().await;
        assert_eq!(polls.get(), 1);
        stale.wake();
        yield_now().await;
        yield_now().await;
        assert_eq!(
            polls.get(),
            1,
            "the finished task's waker reached its slot's new task"
        );
        drop(second);
    })
    .expect("an executor");
}

#[test]
fn readable_completes_when_data_arrives_and_a_dropped_poll_is_cancelled() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    within(30, || {
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        block_on(async move {
            let fd = theirs.as_raw_fd();
            let early = timeout(Duration::from_millis(20), readable(fd)).await;
            assert_eq!(early, Err(TimedOut), "nothing to read yet");
            let writer = spawn(async move {
                sleep(Duration::from_millis(10)).await;
                ours.write_all(b"x").expect("a write");
                ours
            });
            let events = readable(fd).await;
            assert!(
                events > 0 && events & i32::from(libc::POLLIN) != 0,
                "{events}"
            );
            drop(writer.await);
            // The poll dropped by the timeout was cancelled, not left in
            // the kernel.
            assert_eq!(stats().ops_in_flight, 0);
            // A poll still pending when the executor ends is cancelled and
            // waited for (the test would hang or crash otherwise).
            spawn(async move {
                let _ = readable(fd).await;
            })
            .detach();
            sleep(Duration::from_millis(5)).await;
        })
        .expect("an executor");
    });
}

#[test]
fn spawn_blocking_runs_off_the_executor_and_returns_its_value() {
    block_on(async {
        let me = std::thread::current().id();
        let (value, there) = spawn_blocking(|| (41 + 1, std::thread::current().id())).await;
        assert_eq!(value, 42);
        assert_ne!(there, me);
        let calls: Vec<_> = (0..8u64)
            .map(|i| {
                spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for c in calls {
            sum += c.await;
        }
        assert_eq!(sum, 28);
    })
    .expect("an executor");
}

#[test]
fn a_panic_in_a_blocking_call_reaches_its_caller() {
    let caught = std::panic::catch_unwind(|| {
        block_on(async { spawn_blocking(|| -> u8 { panic!("in the pool") }).await })
    });
    assert!(caught.is_err());
}
