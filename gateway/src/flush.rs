//! The flush tick (`flush_tick_us`): a connection writes at most once per
//! tick, with everything queued for it.
//!
//! A member of a 10,000-member room is woken for every batch the room
//! commits. Without a tick its driver writes whatever is queued when it
//! runs, so coalescing only happens as far as the shard happens to be
//! behind: at tens of messages per second that is two or three frames per
//! write, and every write is one TCP segment (~8–11 µs of kernel time on
//! loopback here). The segments, not the bytes, are then what a big room
//! costs.
//!
//! With a tick, a driver records when it last wrote; output queued less than
//! one tick after that is held, and the driver waits here until the tick
//! has passed — then it writes everything queued for it in one write. A
//! connection that writes rarely (a DM, a quiet room) is never held: a
//! write more than a tick after the previous one goes at once.
//!
//! Each connection's tick runs from its own last write, not from a clock
//! shared by the shard: with shared epochs (the first version) every held
//! member of a big room was woken at the same instant, and the burst of
//! 10,000 writes — and the receivers' burst of 10,000 reads — delayed
//! everything queued behind it by more than the tick itself. Held drivers
//! wait in a coarse timer wheel with slots of an eighth of the tick
//! (pingora-timeout's shared coarse timers rather than a timer per
//! connection): a `Waker` per held driver, nothing per connection
//! otherwise, and one timer task that runs only while someone waits.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::util::Notify;

/// A driver's "last write" before it wrote anything.
pub(crate) const NEVER: u64 = u64::MAX;

/// Slots per tick in the wheel: a held driver is woken at most an eighth
/// of a tick late.
const SLOTS_PER_TICK: u64 = 8;

/// The shard's flush clock and the drivers held by it.
pub(crate) struct FlushTick {
    /// The tick in µs, or `None` when `flush_tick_us` is 0 (writes are not
    /// held).
    tick_us: Option<u64>,
    /// The wheel's slot, µs.
    slot_us: u64,
    /// Times are µs since this instant.
    base: Instant,
    /// Held drivers by the slot they are due in (slot `n` ends at
    /// `n × slot_us`).
    slots: RefCell<BTreeMap<u64, Vec<Waker>>>,
    /// Every slot below this one has been woken.
    woken_below: Cell<u64>,
    /// Wakes the timer task when a driver is held while none was.
    first_held: Notify,
}

impl FlushTick {
    /// A clock ticking every `tick_us` µs (0: never holds a write).
    pub(crate) fn new(tick_us: u64) -> FlushTick {
        FlushTick {
            tick_us: (tick_us > 0).then_some(tick_us),
            slot_us: (tick_us / SLOTS_PER_TICK).max(100),
            base: Instant::now(),
            slots: RefCell::new(BTreeMap::new()),
            woken_below: Cell::new(0),
            first_held: Notify::default(),
        }
    }

    /// Now, µs on this clock (0 while the tick is off: nothing is timed).
    pub(crate) fn now_us(&self) -> u64 {
        if self.tick_us.is_none() {
            return 0;
        }
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether writes are ever held (`flush_tick_us` > 0): drivers that
    /// skip the tick's bookkeeping ask this first.
    pub(crate) fn holds(&self) -> bool {
        self.tick_us.is_some()
    }

    /// When output of a driver that last wrote at `last_write` (µs, or
    /// [`NEVER`]) may go: `None` now, else the time it is held until.
    pub(crate) fn held_until(&self, last_write: u64) -> Option<u64> {
        let tick = self.tick_us?;
        if last_write == NEVER {
            return None;
        }
        let due = last_write.saturating_add(tick);
        (self.now_us() < due).then_some(due)
    }

    /// Wakes `waker` once `due` (µs) has passed; returns a ticket for
    /// [`FlushTick::still_waiting`].
    pub(crate) fn wait(&self, waker: &Waker, due: u64) -> u64 {
        let slot = due.div_ceil(self.slot_us).max(self.woken_below.get());
        let mut slots = self.slots.borrow_mut();
        if slots.is_empty() {
            self.first_held.notify();
        }
        slots.entry(slot).or_default().push(waker.clone());
        slot
    }

    /// Whether the waker behind `ticket` is still held (not woken yet).
    pub(crate) fn still_waiting(&self, ticket: u64) -> bool {
        ticket >= self.woken_below.get()
    }

    /// The timer task: while drivers are held, wakes every slot as it
    /// passes. Returns at once when the tick is off.
    pub(crate) async fn run(self: std::rc::Rc<Self>) {
        if self.tick_us.is_none() {
            return;
        }
        let slot_us = self.slot_us;
        loop {
            if self.slots.borrow().is_empty() {
                self.first_held.notified().await;
                continue;
            }
            let now = self.now_us();
            // Sleep to the end of the current slot.
            let next = (now / slot_us + 1) * slot_us;
            crate::rt::sleep(Duration::from_micros(next - now)).await;
            let passed = self.now_us() / slot_us;
            let due: Vec<Waker> = {
                let mut slots = self.slots.borrow_mut();
                let later = slots.split_off(&(passed + 1));
                let due = std::mem::replace(&mut *slots, later);
                due.into_values().flatten().collect()
            };
            self.woken_below.set(passed + 1);
            for w in due {
                w.wake();
            }
        }
    }
}
