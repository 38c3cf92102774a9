//! The hash maps of the core: SipHash with keys chosen per process (as
//! `std`'s `RandomState`: map keys are channel names and user ids a client
//! chooses, so the keys must be unknown to it), except that a simulation
//! can fix them per thread ([`set_thread_seed`]). Iteration order of these
//! maps decides the order of some effects (which channel's catch-up reads
//! first, the order of pushes), so a run of the deterministic simulator
//! replays exactly from its seed only when the hashing is seeded too.
//! (Connections are not in a hash map: their ids name their slots,
//! `slots.rs`.) Also here: [`prefetch_bytes`], the cache hint the hot
//! loops use.

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
}
