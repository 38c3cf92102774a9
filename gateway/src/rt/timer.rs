//! The shard runtime's timers: a map from deadline to the waker of the task
//! that waits for it. Sans-IO — every call takes `now` — so the executor
//! decides when to look (after each pass, and for how long to sleep).
//!
//! A `BTreeMap` keyed by (deadline, sequence): inserting and removing are
//! O(log n), the next deadline is the first key, and two timers with the
//! same deadline stay apart. The gateway's shards keep few timers in the
//! runtime (its sessions' heartbeats and idle checks are the socket ring's
//! own sweep, not one timer each), so a wheel would buy nothing here.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

/// Identifies one registered timer (its deadline and a sequence number).
pub(crate) type TimerKey = (Instant, u64);

/// The timers of one executor.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    map: BTreeMap<TimerKey, Waker>,
    seq: u64,
}

impl Timers {
    /// Registers `waker` to be woken at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        self.seq += 1;
        let key = (deadline, self.seq);
        self.map.insert(key, waker);
        key
    }

    /// Replaces the waker of a still-registered timer; false when it has
    /// fired or was removed.
    pub(crate) fn update(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.map.get_mut(&key) {
            Some(w) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            None => false,
        }
    }

    /// Forgets a timer (fired or not); returns its waker so the caller can
    /// drop it outside any borrow.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Waker> {
        self.map.remove(&key)
    }

    /// The earliest deadline, if any timer is registered.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|((d, _), _)| *d)
    }

    /// Takes every timer due at `now` (deadline ≤ now), earliest first,
    /// into `due`; the caller wakes them outside any borrow.
    pub(crate) fn take_due(&mut self, now: Instant, due: &mut Vec<Waker>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
    }

    /// Registered timers.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn due_timers_come_out_earliest_first_and_later_ones_stay() {
        let t0 = Instant::now();
        let counts: Vec<Arc<Count>> = (0..3)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let mut timers = Timers::default();
        timers.insert(
            t0 + Duration::from_millis(30),
            Waker::from(counts[2].clone()),
        );
        timers.insert(
            t0 + Duration::from_millis(10),
            Waker::from(counts[0].clone()),
        );
        timers.insert(
            t0 + Duration::from_millis(20),
            Waker::from(counts[1].clone()),
        );
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(10)));
        let mut due = Vec::new();
        timers.take_due(t0 + Duration::from_millis(20), &mut due);
        assert_eq!(due.len(), 2);
        due.into_iter().for_each(Waker::wake);
        assert_eq!(counts[0].0.load(Ordering::Relaxed), 1);
        assert_eq!(counts[1].0.load(Ordering::Relaxed), 1);
        assert_eq!(counts[2].0.load(Ordering::Relaxed), 0);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(30)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn two_timers_with_one_deadline_are_both_kept_and_removed_apart() {
        let t = Instant::now();
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let mut timers = Timers::default();
        let a = timers.insert(t, Waker::from(c.clone()));
        let b = timers.insert(t, Waker::from(c.clone()));
        assert_ne!(a, b);
        assert!(timers.remove(a).is_some());
        assert!(timers.update(b, &Waker::from(c.clone())));
        assert!(!timers.update(a, &Waker::from(c)));
        assert_eq!(timers.len(), 1);
    }
}
