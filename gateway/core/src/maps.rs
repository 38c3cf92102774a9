//! The hash maps of the core: SipHash with keys chosen per process (as
//! `std`'s `RandomState`: map keys are channel names and user ids a client
//! chooses, so the keys must be unknown to it), except that a simulation
//! can fix them per thread ([`set_thread_seed`]). Iteration order of these
//! maps decides the order of some effects (which channel's catch-up reads
//! first, the order of pushes), so a run of the deterministic simulator
//! replays exactly from its seed only when the hashing is seeded too.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// A hash map of the core.
pub type Map<K, V> = HashMap<K, V, Seeded>;
/// A hash set of the core.
pub type Set<K> = HashSet<K, Seeded>;

thread_local! {
    static SEED: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Fixes the SipHash keys of every core map created on this thread from
/// now on (`None`: random again). For the deterministic simulator.
pub fn set_thread_seed(seed: Option<u64>) {
    SEED.with(|s| {
        s.set(seed.map(|x| {
            (
                x ^ 0x9e37_79b9_7f4a_7c15,
                x.rotate_left(32) ^ 0xbf58_476d_1ce4_e5b9,
            )
        }));
    });
}

/// The hasher builder of [`Map`] and [`Set`].
#[derive(Clone, Copy, Debug)]
pub struct Seeded {
    k0: u64,
    k1: u64,
}

impl Default for Seeded {
    fn default() -> Seeded {
        let (k0, k1) = SEED.with(Cell::get).unwrap_or_else(random_keys);
        Seeded { k0, k1 }
    }
}

/// Two keys from `std`'s per-process random state.
fn random_keys() -> (u64, u64) {
    let r = std::hash::RandomState::new();
    (r.hash_one(0x5eed_u64), r.hash_one(0xface_u64))
}

impl BuildHasher for Seeded {
    type Hasher = Sip;

    fn build_hasher(&self) -> Sip {
        #[allow(deprecated)]
        Sip(std::hash::SipHasher::new_with_keys(self.k0, self.k1))
    }
}

/// SipHash-2-4 with this map's keys.
#[allow(deprecated)]
#[derive(Clone, Debug)]
pub struct Sip(std::hash::SipHasher);

impl Hasher for Sip {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// The hasher builder of [`DenseMap`]'s index: a keyed integer mix
/// (splitmix64's finalizer over the key xor a per-map key), a few
/// multiplications instead of SipHash-2-4's rounds. Only for keys the
/// server assigns — connection ids — never for names a client chooses
/// (those stay on [`Seeded`]): a client cannot pick its ids to collide.
/// Per-map keys come from [`Seeded`]'s, so a seeded simulation iterates
/// the same way every time.
#[derive(Clone, Copy, Debug)]
pub struct IdKeyed {
    key: u64,
}

impl Default for IdKeyed {
    fn default() -> IdKeyed {
        let s = Seeded::default();
        IdKeyed { key: s.k0 ^ s.k1 }
    }
}

impl BuildHasher for IdKeyed {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.key)
    }
}

/// [`IdKeyed`]'s hasher: integers are mixed in whole; other bytes fold in
/// eight at a time (not used by the core's id keys, but correct).
#[derive(Clone, Copy, Debug)]
pub struct IdHasher(u64);

/// splitmix64's finalizer: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }
}

/// A map whose values live in one dense vector (a slab) and whose hash
/// table holds only `key → slot`: for many large values — a shard's
/// connections — the hash table's slack (a table is 1.14–2.3× its entries)
/// then costs a few bytes per entry instead of a whole value, and growing
/// copies small entries. Freed slots are reused, most recent first. A slot
/// is written only when used, so the vector's reserve beyond its length is
/// not resident. Iteration is in slot order (deterministic, like the
/// seeded maps).
/// Its index hashes with [`IdKeyed`]: for server-assigned keys only.
#[derive(Debug)]
pub struct DenseMap<K, V> {
    index: HashMap<K, u32, IdKeyed>,
    slots: Vec<Option<V>>,
    free: Vec<u32>,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V> DenseMap<K, V> {
    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(&i) = self.index.get(&key) {
            return self.slots[i as usize].replace(value);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                // More than 4 billion live entries is beyond any shard.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, i);
        None
    }

    /// Removes and returns the value of `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        let v = self.slots[i as usize].take();
        self.free.push(i);
        v
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        let &i = self.index.get(key)?;
        self.slots[i as usize].as_ref()
    }

    /// Asks the CPU to bring `key`'s value into the cache, without
    /// waiting for it (the index is read; the slot is not touched): for a
    /// loop that will need the value a little later.
    pub fn prefetch(&self, key: &K) {
        if let Some(&i) = self.index.get(key) {
            let slot = self.slots.as_ptr().wrapping_add(i as usize);
            prefetch_bytes(slot.cast(), std::mem::size_of::<Option<V>>());
        }
    }

    /// The value of `key`, mutably.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let &i = self.index.get(key)?;
        self.slots[i as usize].as_mut()
    }

    /// Takes `key`'s value out of its slot while the key keeps the slot:
    /// until [`DenseMap::put_back`] the key has no value (`get` finds
    /// nothing), and [`DenseMap::remove`] frees the key and its slot. For
    /// a value worked on outside the map and usually returned — a session
    /// being serviced — at one hash lookup instead of a remove and an
    /// insert.
    pub fn take(&mut self, key: &K) -> Option<(TakenSlot, V)> {
        let &i = self.index.get(key)?;
        let v = self.slots[i as usize].take()?;
        Some((TakenSlot(i), v))
    }

    /// Returns a value [`DenseMap::take`] took to its slot. The key must
    /// still hold it: not removed (or removed and inserted again) since.
    pub fn put_back(&mut self, slot: TakenSlot, value: V) {
        let s = &mut self.slots[slot.0 as usize];
        debug_assert!(s.is_none(), "DenseMap::put_back into a used slot");
        *s = Some(value);
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Every value, mutably, in slot order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().filter_map(Option::as_mut)
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.index.keys()
    }

    /// Every entry, in the index's (keyed hash) order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.index
            .iter()
            .filter_map(|(k, &i)| self.slots[i as usize].as_ref().map(|v| (k, v)))
    }
}

/// The slot of a value [`DenseMap::take`] took out, for
/// [`DenseMap::put_back`].
#[derive(Debug)]
#[must_use = "a taken value is put back or its key removed"]
pub struct TakenSlot(u32);

impl<K: std::hash::Hash + Eq, V> std::ops::Index<&K> for DenseMap<K, V> {
    type Output = V;

    /// The value of `key`; panics when there is none (as `HashMap`'s).
    fn index(&self, key: &K) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("DenseMap: no entry for the key"),
        }
    }
}

/// Cache lines [`prefetch_bytes`] asks for at most.
const PREFETCH_LINES: usize = 4;

/// Asks the CPU to start loading the cache lines of `len` bytes at `at`
/// (at most [`PREFETCH_LINES`]) and returns at once. A hint only: it
/// never faults, whatever the address, and does nothing on other
/// architectures.
#[allow(unsafe_code)]
pub fn prefetch_bytes(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        // The lines the bytes touch, from the one `at` is in.
        let offset = at.addr() % 64;
        let first = at.wrapping_sub(offset);
        for line in 0..(offset + len).div_ceil(64).min(PREFETCH_LINES) {
            // SAFETY: a prefetch reads nothing into the program and cannot
            // fault (any address is allowed); SSE is part of every x86_64.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    first.wrapping_add(line * 64).cast(),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// [`prefetch_bytes`] of a value.
pub fn prefetch<T>(value: &T) {
    prefetch_bytes(std::ptr::from_ref(value).cast(), std::mem::size_of::<T>());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_iterates_in_the_same_order_every_time() {
        let order = |seed| {
            set_thread_seed(Some(seed));
            let mut m: Map<String, u32> = Map::default();
            for i in 0..50 {
                m.insert(format!("room:{i}"), i);
            }
            set_thread_seed(None);
            m.into_values().collect::<Vec<_>>()
        };
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8), "another seed, another order");
    }

    #[test]
    fn a_dense_map_reuses_freed_slots_and_keeps_values_by_key() {
        let mut m: DenseMap<u64, String> = DenseMap::default();
        for k in 0..10u64 {
            assert!(m.insert(k, format!("v{k}")).is_none());
        }
        assert_eq!(m.insert(3, "three".into()).as_deref(), Some("v3"));
        assert_eq!(m.remove(&4).as_deref(), Some("v4"));
        assert_eq!(m.remove(&4), None);
        assert!(!m.contains_key(&4));
        m.insert(100, "hundred".into());
        // The freed slot was reused: the vector did not grow.
        assert_eq!(m.slots.len(), 10);
        assert_eq!(m.len(), 10);
        assert_eq!(m.get(&100).map(String::as_str), Some("hundred"));
        assert_eq!(m.get(&3).map(String::as_str), Some("three"));
        if let Some(v) = m.get_mut(&0) {
            v.push('!');
        }
        assert_eq!(m.get(&0).map(String::as_str), Some("v0!"));
        assert_eq!(m.values_mut().count(), 10);
    }

    #[test]
    fn a_taken_value_is_absent_until_put_back_and_its_key_can_still_be_removed() {
        let mut m: DenseMap<u64, String> = DenseMap::default();
        m.insert(1, "one".into());
        m.insert(2, "two".into());
        let (slot, v) = m.take(&1).expect("present");
        assert_eq!(v, "one");
        assert!(m.get(&1).is_none() && m.take(&1).is_none());
        assert_eq!(m.len(), 2, "the key keeps its place");
        m.put_back(slot, "one!".into());
        assert_eq!(m.get(&1).map(String::as_str), Some("one!"));
        // Taken and then ended: removing the key frees the slot for reuse.
        let (_slot, _v) = m.take(&2).expect("present");
        assert_eq!(m.remove(&2), None);
        assert!(!m.contains_key(&2));
        m.insert(3, "three".into());
        assert_eq!(m.slots.len(), 2, "the freed slot was reused");
        assert_eq!(m.get(&3).map(String::as_str), Some("three"));
    }

    #[test]
    fn id_keys_spread_over_the_table_and_replay_under_a_seed() {
        // Sequential ids (as a shard assigns them) land in distinct low
        // bits and distinct top-7-bit tags about as often as random ones.
        let b = IdKeyed::default();
        let hashes: Vec<u64> = (1..=4096u64).map(|i| b.hash_one(i)).collect();
        let buckets: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        assert!(buckets.len() > 2400, "{} of 4096 buckets", buckets.len());
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tags.len(), 128);
        let order = |seed| {
            set_thread_seed(Some(seed));
            let mut m: DenseMap<u64, u32> = DenseMap::default();
            for i in 0..50 {
                m.insert(i, 0);
            }
            set_thread_seed(None);
            m.keys().copied().collect::<Vec<_>>()
        };
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8), "another seed, another order");
    }
}
