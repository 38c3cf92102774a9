//! [`FaultyStore`]: a wrapper that injects faults into any backend, for
//! tests of the code above the store (failed commits, slow commits, a
//! poisoned disk).
//!
//! ```
//! use storage::{FaultyStore, MemStore, Store, StoreError};
//!
//! let store = FaultyStore::new(MemStore::new());
//! store.faults().fail_next_appends(1);
//! assert!(matches!(store.append(&[]), Err(StoreError::Unavailable(_))));
//! assert!(store.append(&[]).is_ok());
//! assert_eq!(store.faults().appends_attempted(), 2);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::{
    ChannelAppend, ChannelOutcome, Health, Page, ReadLimit, ReadRange, Seq, Store, StoreError,
};

/// The message of injected errors.
pub const INJECTED: &str = "injected";

/// The fault switches of a [`FaultyStore`]. Every method takes `&self`, so a
/// test can flip faults while other threads use the store.
#[derive(Debug, Default)]
pub struct Faults {
    fail_appends: AtomicUsize,
    fail_reads: AtomicUsize,
    fail_heads: AtomicUsize,
    append_delay: Mutex<Duration>,
    poison_next: AtomicBool,
    poisoned: OnceLock<String>,
    appends_attempted: AtomicU64,
}

/// Consumes one unit of `counter` if it is positive.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// The next `n` appends fail with `StoreError::Unavailable("injected")`
    /// and write nothing. Replaces any count still pending.
    pub fn fail_next_appends(&self, n: usize) {
        self.fail_appends.store(n, Ordering::Release);
    }

    /// Sleep this long before each append (before any other fault is
    /// applied). `Duration::ZERO` turns it off.
    pub fn set_append_delay(&self, delay: Duration) {
        *self
            .append_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// The next `n` calls of [`Store::read`] fail with
    /// `StoreError::Unavailable("injected")`. (`head` is not affected: see
    /// [`Faults::fail_next_heads`].)
    pub fn fail_next_reads(&self, n: usize) {
        self.fail_reads.store(n, Ordering::Release);
    }

    /// The next `n` calls of [`Store::head`] fail with
    /// `StoreError::Unavailable("injected")`.
    pub fn fail_next_heads(&self, n: usize) {
        self.fail_heads.store(n, Ordering::Release);
    }

    /// The next append fails as a failed fsync would: it returns
    /// `StoreError::Poisoned`, writes nothing, and from then on every append
    /// returns `Poisoned` and `health()` reports `Health::Poisoned`. Reads
    /// keep working. There is no way back, as with a real poisoned store.
    pub fn poison_next_append(&self) {
        self.poison_next.store(true, Ordering::Release);
    }

    /// How many times `append` was called (failed or not).
    #[must_use]
    pub fn appends_attempted(&self) -> u64 {
        self.appends_attempted.load(Ordering::Acquire)
    }

    /// Whether the wrapper has been poisoned (by [`Faults::poison_next_append`]).
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get().is_some()
    }

    fn append_delay(&self) -> Duration {
        *self
            .append_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Store`] that delegates to `S` unless a fault is armed in its
/// [`Faults`]. With no faults armed it behaves exactly like `S` (and passes
/// the conformance suite). For tests only.
#[derive(Debug)]
pub struct FaultyStore<S: Store> {
    inner: S,
    faults: Faults,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner` with no faults armed.
    #[must_use]
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            faults: Faults::default(),
        }
    }

    /// The fault switches.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The wrapped store (bypasses every fault).
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    #[must_use]
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        let f = &self.faults;
        f.appends_attempted.fetch_add(1, Ordering::AcqRel);
        let delay = f.append_delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(m) = f.poisoned.get() {
            return Err(StoreError::Poisoned(m.clone()));
        }
        if f.poison_next.swap(false, Ordering::AcqRel) {
            let m = f
                .poisoned
                .get_or_init(|| format!("{INJECTED}: commit failed"))
                .clone();
            return Err(StoreError::Poisoned(m));
        }
        if take_one(&f.fail_appends) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        self.inner.append(batch)
    }

    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        if take_one(&self.faults.fail_heads) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        self.inner.head(channel)
    }

    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        if take_one(&self.faults.fail_reads) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        self.inner.read(channel, range, limit)
    }

    fn health(&self) -> Health {
        match self.faults.poisoned.get() {
            Some(m) => Health::Poisoned(m.clone()),
            None => self.inner.health(),
        }
    }
}
