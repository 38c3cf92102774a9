//! [`FaultyStore`]: a wrapper that injects faults into any backend, for
//! tests of the code above the store (failed commits, slow commits, a
//! poisoned disk).
//!
//! Faults are grouped by what they hit: appends, the other writes
//! (membership and cursors), history reads (`read`), heads, and the other
//! reads (`message`, membership and cursor lookups). Each group has its own
//! counter, so arming one never changes which call of another group fails.
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
    ChannelAppend, ChannelOutcome, DeliveredUpdate, Health, Page, ReadLimit, ReadRange, ReadUpdate,
    Seq, Store, StoreError, StoredMessage,
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
    fail_writes: AtomicUsize,
    fail_lookups: AtomicUsize,
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
    /// `StoreError::Unavailable("injected")`. (`head` and the lookups are not
    /// affected: see [`Faults::fail_next_heads`] and
    /// [`Faults::fail_next_lookups`].)
    pub fn fail_next_reads(&self, n: usize) {
        self.fail_reads.store(n, Ordering::Release);
    }

    /// The next `n` calls of [`Store::head`] fail with
    /// `StoreError::Unavailable("injected")`.
    pub fn fail_next_heads(&self, n: usize) {
        self.fail_heads.store(n, Ordering::Release);
    }

    /// The next `n` calls of the writes other than `append` (`create_group`,
    /// `add_member`, `remove_member`, `advance_read`,
    /// `advance_delivered_batch`) fail with
    /// `StoreError::Unavailable("injected")` and write nothing.
    pub fn fail_next_writes(&self, n: usize) {
        self.fail_writes.store(n, Ordering::Release);
    }

    /// The next `n` calls of the reads other than `read` and `head`
    /// (`message`, `members`, `is_member`, `channels_of`, `read_cursor`,
    /// `read_cursors`, `delivered_cursor`) fail with
    /// `StoreError::Unavailable("injected")`.
    pub fn fail_next_lookups(&self, n: usize) {
        self.fail_lookups.store(n, Ordering::Release);
    }

    /// The next append fails as a failed fsync would: it returns
    /// `StoreError::Poisoned`, writes nothing, and from then on every write
    /// (appends, membership and cursor writes) returns `Poisoned` and
    /// `health()` reports `Health::Poisoned`. Reads keep working. There is no
    /// way back, as with a real poisoned store.
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

    /// The faults of a write other than `append`: poisoned, or an armed
    /// failure.
    fn check_write(&self) -> Result<(), StoreError> {
        if let Some(m) = self.poisoned.get() {
            return Err(StoreError::Poisoned(m.clone()));
        }
        if take_one(&self.fail_writes) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        Ok(())
    }

    /// The faults of a lookup.
    fn check_lookup(&self) -> Result<(), StoreError> {
        if take_one(&self.fail_lookups) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        Ok(())
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

    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        self.faults.check_lookup()?;
        self.inner.message(channel, seq)
    }

    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        self.faults.check_lookup()?;
        self.inner.count_messages(channel, after, through)
    }

    fn health(&self) -> Health {
        match self.faults.poisoned.get() {
            Some(m) => Health::Poisoned(m.clone()),
            None => self.inner.health(),
        }
    }

    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        self.faults.check_write()?;
        self.inner.create_group(group_id, members)
    }

    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.faults.check_write()?;
        self.inner.add_member(channel, user)
    }

    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.faults.check_write()?;
        self.inner.remove_member(channel, user)
    }

    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.faults.check_lookup()?;
        self.inner.members(channel)
    }

    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.faults.check_lookup()?;
        self.inner.is_member(channel, user)
    }

    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.faults.check_lookup()?;
        self.inner.channels_of(user)
    }

    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        self.faults.check_write()?;
        self.inner.advance_read(user, channel, seq)
    }

    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        self.faults.check_write()?;
        self.inner.advance_read_batch(updates)
    }

    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        self.faults.check_lookup()?;
        self.inner.read_cursor(user, channel)
    }

    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        self.faults.check_lookup()?;
        self.inner.read_cursors(user)
    }

    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        self.faults.check_write()?;
        self.inner.advance_delivered_batch(updates)
    }

    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        self.faults.check_lookup()?;
        self.inner.delivered_cursor(user, device, channel)
    }

    /// The wrapped store's cluster, without faults.
    fn cluster(&self) -> Option<&dyn crate::Cluster> {
        self.inner.cluster()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::MemStore;

    #[test]
    fn write_and_lookup_faults_are_counted_separately_and_write_nothing() {
        let store = FaultyStore::new(MemStore::new());
        store.faults().fail_next_writes(1);
        let members = ["a".to_string()];
        assert!(matches!(
            store.create_group("g", &members),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(store.members("group:g").unwrap(), None, "nothing written");
        store.create_group("g", &members).unwrap();

        store.faults().fail_next_lookups(2);
        // Appends and history reads are not affected by the other groups.
        assert!(store.append(&[]).is_ok());
        assert!(store
            .read(
                "group:g",
                ReadRange::Latest,
                ReadLimit {
                    messages: 1,
                    bytes: 1
                }
            )
            .is_ok());
        assert!(store.is_member("group:g", "a").is_err());
        assert!(store.channels_of("a").is_err());
        assert!(store.is_member("group:g", "a").unwrap());
    }

    #[test]
    fn poisoning_refuses_every_write_but_not_lookups() {
        let store = FaultyStore::new(MemStore::new());
        store.create_group("g", &[]).unwrap();
        store.faults().poison_next_append();
        assert!(matches!(store.append(&[]), Err(StoreError::Poisoned(_))));
        assert!(matches!(
            store.add_member("group:g", "a"),
            Err(StoreError::Poisoned(_))
        ));
        assert!(matches!(
            store.advance_read("a", "group:g", Seq(1)),
            Err(StoreError::Poisoned(_))
        ));
        assert!(matches!(
            store.advance_delivered_batch(&[]),
            Err(StoreError::Poisoned(_))
        ));
        assert_eq!(store.members("group:g").unwrap(), Some(vec![]));
        assert!(matches!(store.health(), Health::Poisoned(_)));
    }
}
