//! The client's network thread: `fdb_run_network` runs [`run`] until
//! `fdb_stop_network`. It completes pending futures — answers from the
//! server, fired watches, versionstamps, `on_error` backoffs — so their
//! callbacks run on this thread, as libfdb_c runs them on its network
//! thread. Other threads hand it work with [`post`] and [`post_after`];
//! work posted before the thread runs waits for it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::c_int;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::future::{Future, Value};
use crate::kv::code;

enum Event {
    Complete(Arc<Future>, Result<Value, c_int>),
    After(Instant, Arc<Future>, Result<Value, c_int>),
    Stop,
}

#[derive(Default)]
struct State {
    api_version: Option<c_int>,
    setup: bool,
    stopped: bool,
}

struct Net {
    tx: Sender<Event>,
    rx: Mutex<Option<Receiver<Event>>>,
    state: Mutex<State>,
}

fn net() -> &'static Net {
    static NET: OnceLock<Net> = OnceLock::new();
    NET.get_or_init(|| {
        let (tx, rx) = channel();
        Net {
            tx,
            rx: Mutex::new(Some(rx)),
            state: Mutex::new(State::default()),
        }
    })
}

fn state() -> MutexGuard<'static, State> {
    net()
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Completes `f` with `r` on the network thread.
pub fn post(f: Arc<Future>, r: Result<Value, c_int>) {
    // A send fails only when the receiver is gone (never: it lives in a
    // static), so there is nothing to handle.
    let _ = net().tx.send(Event::Complete(f, r));
}

/// Completes `f` with `r` on the network thread, `delay` from now.
pub fn post_after(delay: Duration, f: Arc<Future>, r: Result<Value, c_int>) {
    let _ = net().tx.send(Event::After(Instant::now() + delay, f, r));
}

pub fn select_api_version(v: c_int) {
    state().api_version = Some(v);
}

pub fn setup() -> c_int {
    let mut st = state();
    if st.setup {
        return code::NETWORK_ALREADY_SETUP;
    }
    st.setup = true;
    0
}

pub fn stop() -> c_int {
    let mut st = state();
    if !st.setup {
        return code::NETWORK_NOT_SETUP;
    }
    st.stopped = true;
    drop(st);
    let _ = net().tx.send(Event::Stop);
    0
}

/// A timer: fires at `at`; `seq` keeps equal deadlines in posting order.
struct Timer {
    at: Instant,
    seq: u64,
    future: Arc<Future>,
    result: Result<Value, c_int>,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Timer) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Timer) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timer {
    fn cmp(&self, o: &Timer) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The network loop; returns after [`stop`].
pub fn run() -> c_int {
    {
        let st = state();
        if !st.setup {
            return code::NETWORK_NOT_SETUP;
        }
        if st.stopped {
            return 0;
        }
    }
    let Some(rx) = net()
        .rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        // Already running on another thread.
        return code::NETWORK_ALREADY_SETUP;
    };
    let mut timers: BinaryHeap<Reverse<Timer>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while timers.peek().is_some_and(|t| t.0.at <= now) {
            if let Some(Reverse(t)) = timers.pop() {
                t.future.complete(t.result);
            }
        }
        let ev = match timers.peek() {
            Some(t) => match rx.recv_timeout(t.0.at.saturating_duration_since(now)) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(ev) => ev,
                Err(_) => break,
            },
        };
        match ev {
            Event::Complete(f, r) => {
                f.complete(r);
            }
            Event::After(at, future, result) => {
                seq += 1;
                timers.push(Reverse(Timer {
                    at,
                    seq,
                    future,
                    result,
                }));
            }
            Event::Stop => break,
        }
    }
    0
}
