//! Presence: who is online, aggregated by each user's owner shard.
//!
//! A user is online while any of their WebSocket devices is connected, on
//! any shard. The user's owner shard already tracks the devices (for 4009 /
//! 4029); presence adds the transitions: online when the first device comes,
//! offline when the last one has been gone for `presence_debounce_ms` (a
//! device that returns within it causes no event at all, so flapping
//! networks do not spam). Each transition is pushed as `presence_update` to
//! every connection of the other members of the user's DMs and groups.
//!
//! A `presence` query asks every shard which of the relevant users have a
//! local connection (for a room: which users have a connection that joined
//! it) and merges the answers: count, and the first 100 in sorted order.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::conn::ConnId;
use crate::hash::ShardId;

/// Answers to show at most, per the protocol.
pub(crate) const MAX_LISTED: usize = 100;

/// Offline transitions waiting for their debounce (at the user's owner).
#[derive(Default)]
pub(crate) struct Debounce {
    /// user → when the offline event is due (ms).
    due: HashMap<Arc<str>, u64>,
}

impl Debounce {
    /// The last device went away at `now_ms`.
    pub(crate) fn start(&mut self, user: Arc<str>, due_ms: u64) {
        self.due.insert(user, due_ms);
    }

    /// A device came back: true when an offline was pending (then nothing
    /// is announced: the user never appeared offline).
    pub(crate) fn cancel(&mut self, user: &str) -> bool {
        self.due.remove(user).is_some()
    }

    /// Users whose offline is due at `now_ms`.
    pub(crate) fn take_due(&mut self, now_ms: u64) -> Vec<Arc<str>> {
        let due: Vec<Arc<str>> = self
            .due
            .iter()
            .filter(|(_, &t)| t <= now_ms)
            .map(|(u, _)| u.clone())
            .collect();
        for u in &due {
            self.due.remove(u);
        }
        due
    }
}

/// What a presence query asks each shard.
#[derive(Clone, Debug)]
pub(crate) enum Ask {
    /// Users with a connection that joined this room.
    RoomMembers,
    /// Which of these users have a connection.
    Users(Arc<Vec<String>>),
}

/// A presence query gathering answers from every shard.
pub(crate) struct Query {
    pub(crate) conn: ConnId,
    pub(crate) channel: Arc<str>,
    pub(crate) id: Option<Box<str>>,
    pub(crate) remaining: usize,
    pub(crate) online: BTreeSet<Arc<str>>,
}

/// Presence queries started on this shard.
#[derive(Default)]
pub(crate) struct Queries {
    next: u64,
    open: HashMap<u64, Query>,
}

impl Queries {
    /// Starts a query expecting `shards` answers; returns its id.
    pub(crate) fn start(
        &mut self,
        conn: ConnId,
        channel: Arc<str>,
        id: Option<Box<str>>,
        shards: usize,
    ) -> u64 {
        self.next += 1;
        self.open.insert(
            self.next,
            Query {
                conn,
                channel,
                id,
                remaining: shards,
                online: BTreeSet::new(),
            },
        );
        self.next
    }

    /// One shard's answer; returns the query when it was the last one.
    pub(crate) fn answer(&mut self, query: u64, users: Vec<Arc<str>>) -> Option<Query> {
        let q = self.open.get_mut(&query)?;
        q.online.extend(users);
        q.remaining -= 1;
        if q.remaining == 0 {
            self.open.remove(&query)
        } else {
            None
        }
    }
}

/// Where a query's answer goes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueryRef {
    pub(crate) shard: ShardId,
    pub(crate) query: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debounce_fires_only_when_due_and_can_be_cancelled() {
        let mut d = Debounce::default();
        d.start(Arc::from("a"), 100);
        d.start(Arc::from("b"), 200);
        assert!(d.take_due(50).is_empty());
        assert!(d.cancel("b"));
        assert_eq!(d.take_due(300), vec![Arc::<str>::from("a")]);
        assert!(d.take_due(400).is_empty());
        assert!(!d.cancel("a"));
    }

    #[test]
    fn queries_complete_after_every_shard_answered() {
        let mut q = Queries::default();
        let id = q.start(ConnId(1), Arc::from("room:x"), None, 2);
        assert!(q.answer(id, vec![Arc::from("b"), Arc::from("a")]).is_none());
        let done = q.answer(id, vec![Arc::from("a")]).unwrap();
        let online: Vec<_> = done.online.iter().map(|u| u.to_string()).collect();
        assert_eq!(online, ["a", "b"]);
        assert!(
            q.answer(id, vec![]).is_none(),
            "answers after completion are ignored"
        );
    }
}
