//! A connection's joined channels ([`SubMap`]): a short vector while the
//! connection has joined few channels, a hash map past [`FEW`].
//!
//! Why not a hash map always: nearly every connection joins one channel or
//! a handful, and the map is looked up once per delivery — every member of
//! a 10,000-member room, every batch. A core map hashes the channel name
//! with SipHash keyed per map (the keys must stay unknown to clients, so
//! the hash cannot be computed once per batch and shared), then probes and
//! compares: ~4 % of a shard's CPU in the big room's profile. Scanning a
//! few entries compares the name directly, and usually its pointer: a
//! member's key is the replica's shared `Channel`, the same allocation the
//! batch names. A connection with many channels (up to
//! `max_channels_per_connection`) moves to the hash map once it passes
//! [`FEW`], so a lookup never scans more than [`FEW`] entries.
//!
//! Memory: an idle connection with one channel holds one entry (the vector
//! grows from capacity 1), not a hash table's minimum of four buckets and
//! their control bytes.

use chat_model::Channel;

use crate::conn::Sub;
use crate::maps::Map;

/// Entries kept in the vector; one more moves them to a hash map.
pub(crate) const FEW: usize = 8;

/// A connection's joined channels. Iterates in join order while few, in
/// the map's order after (both deterministic under a seeded simulation).
#[derive(Debug)]
pub(crate) enum SubMap {
    /// At most [`FEW`] entries.
    Few(Vec<(Channel, Sub)>),
    /// More than [`FEW`] at some point (it does not move back).
    Many(Box<Map<Channel, Sub>>),
}

impl Default for SubMap {
    fn default() -> SubMap {
        SubMap::Few(Vec::new())
    }
}

/// The same name: the same allocation, or equal bytes.
fn same(key: &Channel, name: &str) -> bool {
    let k = key.as_str();
    (k.len() == name.len() && std::ptr::eq(k.as_ptr(), name.as_ptr())) || k == name
}

impl SubMap {
    /// Starts loading the joined channels' entries into the cache
    /// (`maps::prefetch_bytes`).
    pub(crate) fn prefetch(&self) {
        match self {
            SubMap::Few(v) => {
                crate::maps::prefetch_bytes(v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()))
            }
            SubMap::Many(m) => crate::maps::prefetch(&**m),
        }
    }

    /// Joined channels.
    pub(crate) fn len(&self) -> usize {
        match self {
            SubMap::Few(v) => v.len(),
            SubMap::Many(m) => m.len(),
        }
    }

    /// The cursor of `channel`, if joined.
    pub(crate) fn get(&self, channel: &str) -> Option<&Sub> {
        match self {
            SubMap::Few(v) => v.iter().find(|(k, _)| same(k, channel)).map(|(_, s)| s),
            SubMap::Many(m) => m.get(channel),
        }
    }

    /// The cursor of `channel`, if joined, to change.
    pub(crate) fn get_mut(&mut self, channel: &str) -> Option<&mut Sub> {
        match self {
            SubMap::Few(v) => v.iter_mut().find(|(k, _)| same(k, channel)).map(|(_, s)| s),
            SubMap::Many(m) => m.get_mut(channel),
        }
    }

    /// Joins `channel` (replacing and returning its cursor if joined).
    pub(crate) fn insert(&mut self, channel: Channel, sub: Sub) -> Option<Sub> {
        match self {
            SubMap::Few(v) => {
                if let Some((_, s)) = v.iter_mut().find(|(k, _)| same(k, &channel)) {
                    return Some(std::mem::replace(s, sub));
                }
                if v.len() < FEW {
                    if v.capacity() == 0 {
                        v.reserve_exact(1);
                    }
                    v.push((channel, sub));
                    return None;
                }
                let mut m: Map<Channel, Sub> = Map::default();
                m.reserve(FEW * 2);
                m.extend(v.drain(..));
                m.insert(channel, sub);
                *self = SubMap::Many(Box::new(m));
                None
            }
            SubMap::Many(m) => m.insert(channel, sub),
        }
    }

    /// Leaves `channel`: its key and cursor, if joined.
    pub(crate) fn remove_entry(&mut self, channel: &str) -> Option<(Channel, Sub)> {
        match self {
            SubMap::Few(v) => {
                let at = v.iter().position(|(k, _)| same(k, channel))?;
                let entry = v.remove(at);
                if v.is_empty() {
                    // An idle connection that left everything holds nothing.
                    *v = Vec::new();
                }
                Some(entry)
            }
            SubMap::Many(m) => m.remove_entry(channel),
        }
    }

    /// Leaves `channel`: its cursor, if joined.
    pub(crate) fn remove(&mut self, channel: &str) -> Option<Sub> {
        self.remove_entry(channel).map(|(_, s)| s)
    }

    /// Every joined channel and its cursor.
    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            SubMap::Few(v) => Iter::Few(v.iter()),
            SubMap::Many(m) => Iter::Many(m.iter()),
        }
    }
}

/// [`SubMap::iter`].
pub(crate) enum Iter<'a> {
    Few(std::slice::Iter<'a, (Channel, Sub)>),
    Many(std::collections::hash_map::Iter<'a, Channel, Sub>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Channel, &'a Sub);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(i) => i.next().map(|(k, s)| (k, s)),
            Iter::Many(i) => i.next(),
        }
    }
}

impl<'a> IntoIterator for &'a SubMap {
    type Item = (&'a Channel, &'a Sub);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&str> for SubMap {
    type Output = Sub;

    fn index(&self, channel: &str) -> &Sub {
        self.get(channel).expect("channel joined")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chat_model::Seq;
    use chat_proto::JoinMode;

    fn channel(i: usize) -> Channel {
        Channel::parse(&format!("room:r{i}")).unwrap()
    }

    fn sub(gen: u64) -> Sub {
        Sub::joining(gen, JoinMode::Live)
    }

    #[test]
    fn a_few_channels_stay_in_a_vector_and_many_move_to_a_map() {
        let mut m = SubMap::default();
        for i in 0..FEW {
            assert!(m.insert(channel(i), sub(i as u64)).is_none());
        }
        assert!(matches!(m, SubMap::Few(_)));
        assert_eq!(m.len(), FEW);
        // Joined again: replaced, not added.
        assert_eq!(m.insert(channel(3), sub(99)).unwrap().gen, 3);
        assert_eq!(m.len(), FEW);
        m.insert(channel(FEW), sub(FEW as u64));
        assert!(matches!(m, SubMap::Many(_)));
        assert_eq!(m.len(), FEW + 1);
        // Every entry moved, found by name (a different allocation).
        for i in 0..=FEW {
            let want = if i == 3 { 99 } else { i as u64 };
            assert_eq!(m.get(&format!("room:r{i}")).unwrap().gen, want);
        }
        assert_eq!(m.iter().count(), FEW + 1);
    }

    #[test]
    fn lookups_find_by_name_and_leaving_removes_exactly_that_channel() {
        let mut m = SubMap::default();
        m.insert(channel(1), sub(1));
        m.insert(channel(2), sub(2));
        m.get_mut("room:r2").unwrap().cursor = Seq(7);
        assert_eq!(m["room:r2"].cursor, Seq(7));
        assert!(m.get("room:r3").is_none());
        let (k, s) = m.remove_entry("room:r1").unwrap();
        assert_eq!((k.as_str(), s.gen), ("room:r1", 1));
        assert!(m.remove("room:r1").is_none());
        assert_eq!(m.len(), 1);
        assert!(m.remove("room:r2").is_some());
        let SubMap::Few(v) = &m else { panic!("moved") };
        assert_eq!(v.capacity(), 0, "nothing held once everything is left");
    }

    #[test]
    fn one_channel_holds_one_entry() {
        let mut m = SubMap::default();
        m.insert(channel(1), sub(1));
        let SubMap::Few(v) = &m else { panic!("moved") };
        assert_eq!(v.capacity(), 1);
    }
}
