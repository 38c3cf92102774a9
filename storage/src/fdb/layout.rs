//! The FoundationDB key layout: every subspace the backend writes.
//!
//! All keys live under one root subspace, the tuple `("chatgw", namespace)`
//! (`namespace` from [`FdbConfig`](super::FdbConfig), default `"default"`),
//! so several deployments (or test runs) can share a cluster. Keys are FDB
//! tuples (the `foundationdb` crate's `Subspace::pack`): strings and
//! integers keep their natural order, so a channel's messages are one
//! contiguous range sorted by seq, and one channel's range never interleaves
//! with another's. Integers in **values** are 8-byte little-endian, so FDB's
//! atomic `MAX` can move cursors without reading them.
//!
//! ```text
//! root = ("chatgw", namespace)
//! root + ("v",)                                   -> u32 LE store-format version (FORMAT_VERSION)
//! root + ("m", channel, seq, chunk)               -> bytes chunk of one message record
//! root + ("h", channel)                           -> u64 LE head (highest stored seq)
//! root + ("d", channel, from, device, client_msg_id)
//!                                                 -> seq | ts | content hash | token (4 × u64 LE)
//! root + ("g", channel)                           -> token (u64 LE) of the create_group call
//! root + ("gm", channel, user)                    -> token (u64 LE) of the call that added the member
//! root + ("um", user, channel)                    -> empty: the by-user index (groups and DMs with a message)
//! root + ("r", user, channel)                     -> u64 LE read cursor
//! root + ("dl", user, device, channel)            -> u64 LE delivered cursor
//! root + ("e", channel, seq)                      -> empty: an edit/delete event (unread counts)
//! root + ("n", node)                              -> u64 LE lease end (wall-clock ms) | advertised URL
//! root + ("ns", channel, node)                    -> u64 LE token: node has subscribers of channel
//! root + ("nx", node, channel)                    -> empty: the by-node index of "ns"
//! root + ("ni", node, versionstamp)               -> notices of one commit (cluster::encode_notices)
//! root + ("nw", node)                             -> u64 LE counter, bumped with every inbox write (watched)
//! root + ("pd", user, node)                       -> empty: user has a device on node (presence)
//! root + ("pn", node, user)                       -> empty: the by-node index of "pd" (reaping)
//! root + ("pr", node)                             -> empty: a removed node whose presence is still being swept
//! ```
//!
//! - **Messages** (`m`) hold the same record as the embedded backend (one
//!   value-version byte, then the rkyv archive of the message's current
//!   view) split into chunks of at most [`CHUNK_BYTES`] under
//!   `(channel, seq, 0)`, `(channel, seq, 1)`, …: FDB refuses values over
//!   100,000 bytes and a 100,000-character message can be ~400 KB. A read
//!   of one message is a range read of its `(channel, seq)` prefix; an edit
//!   or delete clears that prefix and writes the new view's chunks.
//! - **Dedup** (`d`) values carry the *token* of the append transaction that
//!   wrote them (a random u64 per transaction, kept across its retries): a
//!   retry after `commit_unknown_result` that finds its own token knows its
//!   earlier attempt committed and reports `Stored`, not `Duplicate`.
//! - **Events** (`e`): one key per stored `edit`/`delete`, written by the
//!   append that stores it, so `count_messages` (unread) subtracts the
//!   events of a range without reading its messages.
//! - **Nodes** (`n`, `ns`, `nx`, `ni`, `nw`): the cluster of gateway nodes
//!   (`crate::cluster`). An append reads `("ns", channel)` of every channel
//!   it stores into (a conflicting read: a subscription racing the commit
//!   conflicts with it) and writes one versionstamped `ni` entry per other
//!   subscribed node, so inbox keys sort in commit order.
//! - **Presence** (`pd`, `pn`): which nodes a user has devices on, written
//!   only at node-level transitions (`Cluster::set_presence`); a transaction
//!   that changes whether the user has any node writes an event into every
//!   other node's inbox (`ni`, `cluster::encode_events`). A removed node's
//!   keys go through `pn`, a page of users per transaction; `pr` marks a
//!   sweep not finished (any node's heartbeat finishes it).
//! - **Groups** (`g`, `gm`) carry tokens for the same reason:
//!   `create_group` retried after an unknown result recognises its own group
//!   instead of reporting a conflict; `add_member` recognises its own add.

use foundationdb::tuple::Subspace;

/// The store-format version under `root + ("v",)`. 1 had no `e` index; it
/// is refused, not migrated (no namespace of version 1 was ever deployed:
/// the backend had only run against the test double).
pub const FORMAT_VERSION: u32 = 2;

/// Bytes per message chunk: under FDB's 100,000-byte value limit.
pub const CHUNK_BYTES: usize = 90_000;

/// The subspaces of one namespace.
#[derive(Clone, Debug)]
pub struct Layout {
    root: Subspace,
}

impl Layout {
    /// The layout under `("chatgw", namespace)`.
    #[must_use]
    pub fn new(namespace: &str) -> Layout {
        Layout {
            root: Subspace::all().subspace(&("chatgw", namespace)),
        }
    }

    /// Every key of the namespace, as a range.
    #[must_use]
    pub fn all(&self) -> (Vec<u8>, Vec<u8>) {
        self.root.range()
    }

    #[must_use]
    pub fn format(&self) -> Vec<u8> {
        self.root.pack(&("v",))
    }

    /// The subspace of one channel's messages: `(seq, chunk)` below it.
    #[must_use]
    pub fn messages(&self, channel: &str) -> Subspace {
        self.root.subspace(&("m", channel))
    }

    /// The subspace of one message's chunks.
    #[must_use]
    pub fn message(&self, channel: &str, seq: u64) -> Subspace {
        self.root.subspace(&("m", channel, seq))
    }

    #[must_use]
    pub fn head(&self, channel: &str) -> Vec<u8> {
        self.root.pack(&("h", channel))
    }

    #[must_use]
    pub fn dedup(&self, channel: &str, from: &str, device: &str, client_msg_id: &str) -> Vec<u8> {
        self.root.pack(&("d", channel, from, device, client_msg_id))
    }

    #[must_use]
    pub fn group(&self, channel: &str) -> Vec<u8> {
        self.root.pack(&("g", channel))
    }

    #[must_use]
    pub fn members(&self, channel: &str) -> Subspace {
        self.root.subspace(&("gm", channel))
    }

    #[must_use]
    pub fn member_of(&self, user: &str) -> Subspace {
        self.root.subspace(&("um", user))
    }

    #[must_use]
    pub fn reads(&self, user: &str) -> Subspace {
        self.root.subspace(&("r", user))
    }

    /// The subspace of one channel's event index: `(seq,)` below it.
    #[must_use]
    pub fn events(&self, channel: &str) -> Subspace {
        self.root.subspace(&("e", channel))
    }

    #[must_use]
    pub fn node(&self, node: &str) -> Vec<u8> {
        self.root.pack(&("n", node))
    }

    /// Which life of `node` holds its record: a random id written by
    /// `register`, checked by every heartbeat (a second process with the
    /// same node id fences the first).
    #[must_use]
    pub fn node_life(&self, node: &str) -> Vec<u8> {
        self.root.pack(&("nl", node))
    }

    /// Every node record.
    #[must_use]
    pub fn nodes(&self) -> Subspace {
        self.root.subspace(&("n",))
    }

    /// The nodes subscribed to `channel`: `(node,)` below it.
    #[must_use]
    pub fn subscribed(&self, channel: &str) -> Subspace {
        self.root.subspace(&("ns", channel))
    }

    /// The channels `node` subscribes to: `(channel,)` below it.
    #[must_use]
    pub fn subscriptions_of(&self, node: &str) -> Subspace {
        self.root.subspace(&("nx", node))
    }

    /// `node`'s inbox: `(versionstamp,)` below it.
    #[must_use]
    pub fn inbox(&self, node: &str) -> Subspace {
        self.root.subspace(&("ni", node))
    }

    /// The key `node` watches for inbox writes.
    #[must_use]
    pub fn inbox_bell(&self, node: &str) -> Vec<u8> {
        self.root.pack(&("nw", node))
    }

    /// The nodes `user` has devices on: `(node,)` below it.
    #[must_use]
    pub fn presence_of(&self, user: &str) -> Subspace {
        self.root.subspace(&("pd", user))
    }

    /// The marker of removed `node`'s unfinished presence sweep.
    #[must_use]
    pub fn presence_sweep(&self, node: &str) -> Vec<u8> {
        self.root.pack(&("pr", node))
    }

    /// Every unfinished presence sweep: `(node,)` below it.
    #[must_use]
    pub fn presence_sweeps(&self) -> Subspace {
        self.root.subspace(&("pr",))
    }

    /// The users with devices on `node`: `(user,)` below it.
    #[must_use]
    pub fn present_on(&self, node: &str) -> Subspace {
        self.root.subspace(&("pn", node))
    }

    #[must_use]
    pub fn delivered(&self, user: &str, device: &str, channel: &str) -> Vec<u8> {
        self.root.pack(&("dl", user, device, channel))
    }
}

/// A u64 value (little-endian, as FDB's atomic ops read it).
#[must_use]
pub fn u64_value(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

/// Reads a u64 value; `None` when it is not 8 bytes.
#[must_use]
pub fn read_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_le_bytes)
}

/// A dedup record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dedup {
    pub seq: u64,
    pub ts: u64,
    pub hash: u64,
    pub token: u64,
}

impl Dedup {
    #[must_use]
    pub fn encode(&self) -> [u8; 32] {
        let mut v = [0u8; 32];
        for (i, n) in [self.seq, self.ts, self.hash, self.token]
            .into_iter()
            .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
        }
        v
    }

    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Dedup> {
        if v.len() != 32 {
            return None;
        }
        let f = |i: usize| read_u64(&v[i * 8..i * 8 + 8]);
        Some(Dedup {
            seq: f(0)?,
            ts: f(1)?,
            hash: f(2)?,
            token: f(3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_seq_then_chunk_within_a_channel() {
        let l = Layout::new("t");
        let k = |seq: u64, chunk: u64| l.message("room:a", seq).pack(&(chunk,));
        assert!(k(1, 0) < k(1, 1));
        assert!(k(1, 9) < k(2, 0));
        assert!(k(255, 0) < k(256, 0));
        assert!(k(u64::MAX - 1, 0) < k(u64::MAX, 0));
        let (lo, hi) = l.messages("room:a").range();
        assert!(lo < k(1, 0) && k(u64::MAX, 3) < hi);
    }

    #[test]
    fn channel_ranges_do_not_interleave() {
        let l = Layout::new("t");
        let (a_lo, a_hi) = l.messages("room:a").range();
        let (ab_lo, ab_hi) = l.messages("room:ab").range();
        assert!(a_hi <= ab_lo || ab_hi <= a_lo);
    }

    #[test]
    fn namespaces_do_not_overlap() {
        let (a_lo, a_hi) = Layout::new("a").all();
        let (b_lo, b_hi) = Layout::new("ab").all();
        assert!(a_hi <= b_lo || b_hi <= a_lo);
    }

    #[test]
    fn dedup_records_round_trip() {
        let d = Dedup {
            seq: 7,
            ts: 1_700_000_000_000,
            hash: u64::MAX,
            token: 42,
        };
        assert_eq!(Dedup::decode(&d.encode()), Some(d));
        assert_eq!(Dedup::decode(&[0u8; 31]), None);
    }
}
