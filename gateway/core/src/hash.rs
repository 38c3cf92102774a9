//! The owner hash: which shard owns a channel or a user.
//!
//! **Fixed forever**: `owner = fnv1a_64(name bytes) % nr_shards`, where
//! `fnv1a_64` is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime
//! `0x100000001b3`) over the UTF-8 bytes of the channel name (for channels) or
//! the user id (for users). It must not change between versions or restarts:
//! later it also spreads channels over nodes. Tests pin known values.

/// Index of a shard (an executor pinned to one core).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// 64-bit FNV-1a.
#[must_use]
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard that owns `name` (a channel name or a user id).
#[must_use]
pub fn owner_of(name: &str, nr_shards: usize) -> ShardId {
    debug_assert!(nr_shards > 0);
    ShardId((fnv1a_64(name.as_bytes()) % nr_shards.max(1) as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn owner_of_is_pinned_for_known_channels() {
        // If this test changes, data placement changes: never edit the values.
        assert_eq!(
            owner_of("room:lobby", 2),
            ShardId((fnv1a_64(b"room:lobby") % 2) as usize)
        );
        assert_eq!(owner_of("anything", 1), ShardId(0));
        let spread: std::collections::HashSet<_> =
            (0..64).map(|i| owner_of(&format!("room:{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "64 channels should hit all 4 shards");
    }
}
