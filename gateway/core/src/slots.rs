//! Tables addressed by connection id: a [`ConnId`] carries the slot its
//! connection occupies (the low [`SLOT_BITS`] bits) and the slot's
//! generation (the next [`GEN_BITS`]), so finding a connection is an index
//! into a vector and one comparison — no hash, no index table beside the
//! values. A big room's fan-out and its writes look up every member's
//! connection and session once per batch, 10,000 apart in memory; with
//! the slot in the id the address of the next one is known without
//! touching memory, so it can be prefetched for free
//! (`docs/benchmarks.md`, "Connections by slot").
//!
//! Two kinds of table share the layout:
//!
//! - [`ConnSlab`] **assigns** ids: the shard's connections. A freed slot
//!   is reused (most recent first, warm in the cache) under the next
//!   generation, so an id of a closed connection never finds the
//!   connection that took its slot: a late reply, completion or wake-up
//!   for it finds nothing, as before.
//! - [`ConnTable`] **follows** a slab: a runtime's per-connection state
//!   (the socket ring's sessions) kept at the slots the slab assigned.
//!   Its owner removes an entry before the slab can give the slot away
//!   again: the ring removes a session in the same step that closes its
//!   connection, or — a session lingering after its close frame — closes
//!   the connection with its slot held ([`ConnSlab::remove_held`]) and
//!   releases the slot when the session ends. Inserting over another live
//!   id is that rule broken, and panics.
//!
//! An entry is the id and the value, `8 + size_of::<Option<V>>()` bytes;
//! a slot freed in a slab holds the id its next occupant will get (with
//! the top bit set, which no id has). The vector's reserve past its length
//! is not resident. Iteration is in slot order.
//!
//! Generations wrap after 2^34 uses of one slot (ids stay below 2^62: the
//! top two bits are free for a runtime's tags, as the ring's completion
//! data uses them). An id is therefore unique among the ids alive at once
//! and is not reused before its slot has served 2^34 connections: 20 days
//! even if a shard opened 10,000 connections a second and every one took
//! the same slot, where a stale id — a reply or a completion in flight —
//! lives for seconds at most.

use crate::maps::prefetch_bytes;
use crate::vocab::ConnId;

/// Bits of a [`ConnId`] that are its slot: 2^28 (268 million) slots per
/// table, beyond any shard's connections (each holds a file descriptor).
pub const SLOT_BITS: u32 = 28;
/// Bits of a [`ConnId`] above the slot that are the slot's generation.
pub const GEN_BITS: u32 = 34;
/// Slots a table can hold.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
/// Set in the stored id of a free slot; no id has it.
const VACANT: u64 = 1 << 63;
/// Set, with `VACANT`, in the stored id of a slot removed with
/// [`ConnSlab::remove_held`] and not released yet; no id has it.
const HELD: u64 = 1 << 62;

impl ConnId {
    /// The id of `slot`'s connection of generation `generation` (taken
    /// modulo 2^[`GEN_BITS`]).
    #[must_use]
    pub fn from_parts(slot: usize, generation: u64) -> ConnId {
        debug_assert!(slot < MAX_SLOTS, "slot {slot} past the table");
        ConnId(((generation & GEN_MASK) << SLOT_BITS) | (slot as u64 & SLOT_MASK))
    }

    /// The slot this connection occupies in its shard's tables.
    #[must_use]
    pub fn slot(self) -> usize {
        (self.0 & SLOT_MASK) as usize
    }

    /// The slot's generation this id belongs to.
    #[must_use]
    pub fn generation(self) -> u64 {
        (self.0 >> SLOT_BITS) & GEN_MASK
    }

    /// The id the slot's next connection gets: the next generation,
    /// skipping 0 (no slab issues generation 0, so `ConnId(0)` — a
    /// placeholder for "no connection" — never names one).
    fn successor(self) -> ConnId {
        let next = (self.generation() + 1) & GEN_MASK;
        ConnId::from_parts(self.slot(), next.max(1))
    }
}

/// One slot: the id it holds (or, [`VACANT`] set, the id it gives next)
/// and the value. The id stays while the value is taken out.
#[derive(Debug)]
struct Entry<V> {
    id: u64,
    value: Option<V>,
}

/// What [`ConnSlab`] and [`ConnTable`] share: the entries by slot.
#[derive(Debug)]
pub struct Slots<V> {
    entries: Vec<Entry<V>>,
    len: usize,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            len: 0,
        }
    }
}

impl<V> Slots<V> {
    /// `id`'s entry, if `id` holds its slot.
    fn entry(&self, id: ConnId) -> Option<&Entry<V>> {
        self.entries.get(id.slot()).filter(|e| e.id == id.0)
    }

    fn entry_mut(&mut self, id: ConnId) -> Option<&mut Entry<V>> {
        self.entries.get_mut(id.slot()).filter(|e| e.id == id.0)
    }

    /// The value of `id`.
    pub fn get(&self, id: &ConnId) -> Option<&V> {
        self.entry(*id)?.value.as_ref()
    }

    /// The value of `id`, mutably.
    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut V> {
        self.entry_mut(*id)?.value.as_mut()
    }

    /// Whether `id` holds its slot (its value may be taken out).
    pub fn contains_key(&self, id: &ConnId) -> bool {
        self.entry(*id).is_some()
    }

    /// Asks the CPU to bring `id`'s entry into the cache, without waiting
    /// for it and without reading memory (the address is the slot's): for
    /// a loop that will need the value a little later. A hint: an id that
    /// holds no slot prefetches a harmless line.
    pub fn prefetch(&self, id: &ConnId) {
        let at = self.entries.as_ptr().wrapping_add(id.slot());
        prefetch_bytes(at.cast(), std::mem::size_of::<Entry<V>>());
    }

    /// Takes `id`'s value out while `id` keeps the slot: until
    /// [`Slots::put_back`] `get` finds nothing, and removing `id` frees
    /// the slot. For a value worked on outside the table and usually
    /// returned (a session being serviced).
    pub fn take(&mut self, id: &ConnId) -> Option<V> {
        self.entry_mut(*id)?.value.take()
    }

    /// Returns a value [`Slots::take`] took. `id` must still hold the slot
    /// (not removed since); otherwise the value is dropped.
    pub fn put_back(&mut self, id: &ConnId, value: V) {
        if let Some(e) = self.entry_mut(*id) {
            debug_assert!(e.value.is_none(), "put_back into a full slot");
            e.value = Some(value);
        } else {
            debug_assert!(false, "put_back for an id that no longer holds its slot");
        }
    }

    /// Ids holding their slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every id holding its slot (values taken out included), in slot
    /// order.
    pub fn keys(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.entries
            .iter()
            .filter(|e| e.id & VACANT == 0)
            .map(|e| ConnId(e.id))
    }

    /// Every id and value, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &V)> {
        self.entries
            .iter()
            .filter_map(|e| e.value.as_ref().map(|v| (ConnId(e.id), v)))
    }

    /// Every value, mutably, in slot order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().filter_map(|e| e.value.as_mut())
    }

    /// Frees `id`'s slot (marking it with `next`, the id it gives next)
    /// and returns its value.
    fn vacate(&mut self, id: ConnId) -> Option<Option<V>> {
        let e = self.entry_mut(id)?;
        e.id = VACANT | id.successor().0;
        let v = e.value.take();
        self.len -= 1;
        Some(v)
    }
}

impl<V> std::ops::Index<&ConnId> for Slots<V> {
    type Output = V;

    /// The value of `id`; panics when there is none (as `HashMap`'s).
    fn index(&self, id: &ConnId) -> &V {
        match self.get(id) {
            Some(v) => v,
            None => panic!("no connection {id:?}"),
        }
    }
}

/// The shard's connections: assigns each new one its id (a free slot,
/// most recently freed first, under its next generation).
#[derive(Debug)]
pub struct ConnSlab<V> {
    slots: Slots<V>,
    free: Vec<u32>,
}

impl<V> Default for ConnSlab<V> {
    fn default() -> Self {
        ConnSlab {
            slots: Slots::default(),
            free: Vec::new(),
        }
    }
}

impl<V> std::ops::Deref for ConnSlab<V> {
    type Target = Slots<V>;

    fn deref(&self) -> &Slots<V> {
        &self.slots
    }
}

impl<V> std::ops::DerefMut for ConnSlab<V> {
    fn deref_mut(&mut self) -> &mut Slots<V> {
        &mut self.slots
    }
}

impl<V> ConnSlab<V> {
    /// The id the next [`ConnSlab::insert_new`] assigns.
    ///
    /// # Panics
    /// When every one of [`MAX_SLOTS`] slots is taken (the gateway's
    /// connection maximum is far below).
    #[must_use]
    pub fn next_id(&self) -> ConnId {
        match self.free.last() {
            Some(&slot) => ConnId(self.slots.entries[slot as usize].id & !VACANT),
            None => {
                let slot = self.slots.entries.len();
                assert!(
                    slot < MAX_SLOTS,
                    "a shard holds at most {MAX_SLOTS} connections"
                );
                ConnId::from_parts(slot, 1)
            }
        }
    }

    /// Stores `value` under [`ConnSlab::next_id`] and returns that id.
    pub fn insert_new(&mut self, value: V) -> ConnId {
        let id = self.next_id();
        match self.free.pop() {
            Some(slot) => {
                let e = &mut self.slots.entries[slot as usize];
                e.id = id.0;
                e.value = Some(value);
            }
            None => self.slots.entries.push(Entry {
                id: id.0,
                value: Some(value),
            }),
        }
        self.slots.len += 1;
        id
    }

    /// Removes `id` and returns its value (none when it was taken out);
    /// its slot goes to a later connection under the next generation.
    pub fn remove(&mut self, id: &ConnId) -> Option<V> {
        let v = self.slots.vacate(*id)?;
        // Below 2^28 by `next_id`'s bound.
        self.free.push(id.slot() as u32);
        v
    }

    /// Removes `id` as [`ConnSlab::remove`] does, but keeps its slot from
    /// any other connection until [`ConnSlab::release`]: for a runtime
    /// whose table still holds the slot (a session lingering after its
    /// connection closed, in the ring's table). `id` finds nothing from
    /// now on.
    pub fn remove_held(&mut self, id: &ConnId) -> Option<V> {
        let v = self.slots.vacate(*id)?;
        self.slots.entries[id.slot()].id |= HELD;
        v
    }

    /// Lets the slot [`ConnSlab::remove_held`] kept for `id` go to a later
    /// connection. Releasing anything else (an id never held, or released
    /// already) does nothing.
    pub fn release(&mut self, id: &ConnId) {
        let held = VACANT | HELD | id.successor().0;
        if let Some(e) = self.slots.entries.get_mut(id.slot()) {
            if e.id == held {
                e.id &= !HELD;
                self.free.push(id.slot() as u32);
            }
        }
    }
}

/// A runtime's per-connection state at the slots a [`ConnSlab`] assigned
/// (the ring's sessions).
#[derive(Debug)]
pub struct ConnTable<V> {
    slots: Slots<V>,
}

impl<V> Default for ConnTable<V> {
    fn default() -> Self {
        ConnTable {
            slots: Slots::default(),
        }
    }
}

impl<V> std::ops::Deref for ConnTable<V> {
    type Target = Slots<V>;

    fn deref(&self) -> &Slots<V> {
        &self.slots
    }
}

impl<V> std::ops::DerefMut for ConnTable<V> {
    fn deref_mut(&mut self) -> &mut Slots<V> {
        &mut self.slots
    }
}

impl<V> ConnTable<V> {
    /// Stores `value` at `id`'s slot; returns the value `id` held.
    ///
    /// # Panics
    /// When another id still holds the slot: its entry should have been
    /// removed when its connection closed, before the slab could assign
    /// the slot again.
    pub fn insert(&mut self, id: ConnId, value: V) -> Option<V> {
        let slot = id.slot();
        let entries = &mut self.slots.entries;
        if entries.len() <= slot {
            entries.resize_with(slot + 1, || Entry {
                id: VACANT,
                value: None,
            });
        }
        let e = &mut entries[slot];
        if e.id == id.0 {
            return e.value.replace(value);
        }
        assert!(
            e.id & VACANT != 0,
            "slot {slot} is still held by {:?}, not freed before {id:?} was inserted",
            ConnId(e.id)
        );
        e.id = id.0;
        e.value = Some(value);
        self.slots.len += 1;
        None
    }

    /// Removes `id` and returns its value (none when it was taken out).
    pub fn remove(&mut self, id: &ConnId) -> Option<V> {
        self.slots.vacate(*id)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slab_reuses_a_freed_slot_under_a_new_id_and_the_old_id_finds_nothing() {
        let mut m: ConnSlab<String> = ConnSlab::default();
        let a = m.insert_new("a".into());
        let b = m.insert_new("b".into());
        assert_ne!(a, b);
        assert_eq!((a.slot(), b.slot()), (0, 1));
        assert_ne!(a, ConnId(0), "no slab issues the placeholder id");
        assert_eq!(m.remove(&a).as_deref(), Some("a"));
        assert_eq!(m.remove(&a), None, "removed once");
        let c = m.insert_new("c".into());
        assert_eq!(c.slot(), a.slot(), "the freed slot was reused");
        assert_ne!(c, a, "under another generation");
        assert_eq!(m.get(&a), None);
        assert!(!m.contains_key(&a));
        assert_eq!(m.remove(&a), None, "a stale id frees nothing");
        assert_eq!(m.get(&c).map(String::as_str), Some("c"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![c, b]);
        if let Some(v) = m.get_mut(&b) {
            v.push('!');
        }
        assert_eq!(
            m.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            ["c", "b!"]
        );
        assert_eq!(m.next_id().slot(), 2, "no slot free: a new one");
    }

    #[test]
    fn ids_stay_unique_while_a_slot_is_reused_many_times() {
        let mut m: ConnSlab<u32> = ConnSlab::default();
        let keep = m.insert_new(0);
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let id = m.insert_new(i);
            assert!(seen.insert(id), "{id:?} issued twice");
            assert!(id.0 < 1 << 62, "the top two bits stay free");
            m.remove(&id);
        }
        assert_eq!(m.get(&keep), Some(&0));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_held_slot_waits_for_its_release_and_is_released_once() {
        let mut m: ConnSlab<&str> = ConnSlab::default();
        let a = m.insert_new("a");
        assert_eq!(m.remove_held(&a), Some("a"));
        assert_eq!(m.get(&a), None);
        assert!(!m.contains_key(&a));
        assert_eq!(m.len(), 0);
        let b = m.insert_new("b");
        assert_ne!(b.slot(), a.slot(), "a held slot is not given away");
        m.release(&b); // b was never held: nothing happens
        m.release(&a);
        m.release(&a); // once only
        let c = m.insert_new("c");
        assert_eq!(c.slot(), a.slot(), "released: reused");
        assert_ne!(c, a);
        let d = m.insert_new("d");
        assert_eq!(d.slot(), 2, "the slot went to one connection only");
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![c, b, d]);
    }

    #[test]
    fn generations_wrap_past_zero() {
        let last = ConnId::from_parts(5, GEN_MASK);
        let next = last.successor();
        assert_eq!((next.slot(), next.generation()), (5, 1));
        assert_eq!(ConnId::from_parts(5, 7).successor().generation(), 8);
    }

    #[test]
    fn a_taken_value_is_absent_until_put_back_and_its_id_can_still_be_removed() {
        let mut m: ConnSlab<String> = ConnSlab::default();
        let one = m.insert_new("one".into());
        let two = m.insert_new("two".into());
        let v = m.take(&one).expect("present");
        assert_eq!(v, "one");
        assert!(m.get(&one).is_none() && m.take(&one).is_none());
        assert!(m.contains_key(&one), "the id keeps its slot");
        assert_eq!(m.len(), 2);
        m.put_back(&one, "one!".into());
        assert_eq!(m.get(&one).map(String::as_str), Some("one!"));
        let _v = m.take(&two).expect("present");
        assert_eq!(m.remove(&two), None, "taken: nothing to return");
        assert!(!m.contains_key(&two));
        assert_eq!(m.len(), 1);
        let three = m.insert_new("three".into());
        assert_eq!(three.slot(), two.slot(), "the freed slot was reused");
    }

    #[test]
    fn a_table_follows_the_slabs_ids_and_refuses_a_slot_still_held() {
        let mut slab: ConnSlab<()> = ConnSlab::default();
        let mut t: ConnTable<&str> = ConnTable::default();
        let a = slab.insert_new(());
        let b = slab.insert_new(());
        assert_eq!(t.insert(b, "b"), None);
        assert_eq!(t.insert(a, "a"), None);
        assert_eq!(t.insert(a, "a2"), Some("a"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&a), Some(&"a2"));
        // a closes: removed from both, then its slot goes to c.
        slab.remove(&a);
        assert_eq!(t.remove(&a), Some("a2"));
        let c = slab.insert_new(());
        assert_eq!(t.get(&c), None);
        assert_eq!(t.insert(c, "c"), None);
        assert_eq!(t.get(&a), None, "the old id finds nothing");
        assert_eq!(t.keys().collect::<Vec<_>>(), vec![c, b]);
        let held = std::panic::catch_unwind(move || {
            let mut t = t;
            // b was never removed from the table: a new id in its slot is
            // a bug of the table's owner.
            t.insert(ConnId::from_parts(b.slot(), b.generation() + 1), "x");
        });
        assert!(held.is_err());
    }

    #[test]
    fn a_table_grows_to_the_slot_it_is_given() {
        let mut t: ConnTable<u8> = ConnTable::default();
        let far = ConnId::from_parts(1000, 3);
        t.insert(far, 7);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&far), Some(&7));
        assert_eq!(t.get(&ConnId::from_parts(999, 3)), None);
        assert_eq!(t.keys().collect::<Vec<_>>(), vec![far]);
        assert_eq!(t.remove(&far), Some(7));
        assert!(t.is_empty());
        assert_eq!(t.keys().count(), 0);
        // Prefetching any id is harmless, in range or not.
        t.prefetch(&ConnId::from_parts(MAX_SLOTS - 1, 1));
    }
}
