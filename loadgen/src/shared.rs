//! [`Shared`]: what the coordinator thread and the client shards of one
//! loadgen process share (phase, per-channel acked seqs, readiness counts,
//! progress slots), all atomics or short locks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::progress::{ProgressSlot, ProgressSnapshot};
use crate::session::{Phase, PhaseView};

/// Process-wide coordination between the coordinator and the shards.
pub(crate) struct Shared {
    /// Bumped after every phase change.
    pub(crate) epoch: AtomicU64,
    /// The current phase.
    pub(crate) phase: Mutex<PhaseView>,
    /// Per channel: highest seq acked to a sender of this process.
    pub(crate) max_acked: Vec<AtomicU64>,
    /// Per channel: highest seq acked in the whole run (set before
    /// catch-up).
    pub(crate) targets: Vec<AtomicU64>,
    /// Connections that joined all their channels.
    pub(crate) ready: AtomicUsize,
    /// Connections with every send acked after sending ended.
    pub(crate) acked: AtomicUsize,
    /// Connections that received every acked message.
    pub(crate) caught_up: AtomicUsize,
    /// Connection tasks that ended.
    pub(crate) finished: AtomicUsize,
    /// Per shard: counters for the progress line.
    pub(crate) progress: Vec<ProgressSlot>,
}

impl Shared {
    pub(crate) fn new(nr_channels: usize, nr_shards: usize) -> Shared {
        Shared {
            epoch: AtomicU64::new(0),
            phase: Mutex::new(PhaseView {
                phase: Phase::Ramp,
                send_start_us: 0,
                send_end_us: 0,
            }),
            max_acked: (0..nr_channels).map(|_| AtomicU64::new(0)).collect(),
            targets: (0..nr_channels).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            caught_up: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            progress: (0..nr_shards).map(|_| ProgressSlot::default()).collect(),
        }
    }

    pub(crate) fn phase(&self) -> PhaseView {
        match self.phase.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub(crate) fn set_phase(&self, view: PhaseView) {
        match self.phase.lock() {
            Ok(mut g) => *g = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Nothing connected and connection attempts failed.
    pub(crate) fn nothing_connects(&self) -> bool {
        let s = self.snapshot();
        self.ready.load(Ordering::Relaxed) == 0 && s.connects == 0 && s.errors > 0
    }

    pub(crate) fn snapshot(&self) -> ProgressSnapshot {
        let mut s = ProgressSnapshot::default();
        for slot in &self.progress {
            s.add(&slot.snapshot());
        }
        s
    }
}
