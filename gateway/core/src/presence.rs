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
//! A `presence` query costs O(100), never O(members): for a room, the
//! room's owner keeps the users with a joined connection in a sorted map
//! (kept up to date by joins and leaves) and answers the first 100 and the
//! count; for a DM or group (at most `max_group_members` users), every shard
//! says which of the members have a connection there, and the answers are
//! merged. A connection has at most `max_presence_in_flight` queries in
//! flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chat_model::Channel;

use crate::maps::Map;
use crate::vocab::ConnId;
pub use crate::vocab::{Ask, QueryRef};

/// Answers to show at most, per the protocol.
pub(crate) const MAX_LISTED: usize = 100;

/// Offline transitions waiting for their debounce (at the user's owner).
#[derive(Default)]
pub(crate) struct Debounce {
    /// user → when the offline event is due (ms).
    due: Map<Arc<str>, u64>,
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

    /// Whether an offline is pending for `user` (then they still count as
    /// online).
    pub(crate) fn is_pending(&self, user: &str) -> bool {
        self.due.contains_key(user)
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

/// A presence query gathering answers.
pub(crate) struct Query {
    pub(crate) conn: ConnId,
    pub(crate) channel: Channel,
    pub(crate) id: Option<Box<str>>,
    pub(crate) remaining: usize,
    pub(crate) online: BTreeSet<Arc<str>>,
    /// The total, when an answer knows it (a room's owner); else the
    /// number of distinct users answered.
    pub(crate) count: Option<usize>,
}

/// Presence queries started on this shard.
#[derive(Default)]
pub(crate) struct Queries {
    next: u64,
    open: Map<u64, Query>,
}

impl Queries {
    /// Starts a query expecting `answers` answers; returns its id.
    pub(crate) fn start(
        &mut self,
        conn: ConnId,
        channel: Channel,
        id: Option<Box<str>>,
        answers: usize,
    ) -> u64 {
        self.next += 1;
        self.open.insert(
            self.next,
            Query {
                conn,
                channel,
                id,
                remaining: answers,
                online: BTreeSet::new(),
                count: None,
            },
        );
        self.next
    }

    /// One answer; returns the query when it was the last one.
    pub(crate) fn answer(
        &mut self,
        query: u64,
        users: Vec<Arc<str>>,
        count: Option<usize>,
    ) -> Option<Query> {
        let q = self.open.get_mut(&query)?;
        q.online.extend(users);
        if count.is_some() {
            q.count = count;
        }
        q.remaining -= 1;
        if q.remaining == 0 {
            self.open.remove(&query)
        } else {
            None
        }
    }

    /// The query failed (e.g. not a member): forget it and return it.
    pub(crate) fn fail(&mut self, query: u64) -> Option<Query> {
        self.open.remove(&query)
    }
}

/// Room presence at the room's owner: the users with a connection that
/// joined, and how many connections each has (across all shards). A sorted
/// map, so a query is O(100): the first [`MAX_LISTED`] and the length.
#[derive(Debug, Default)]
pub(crate) struct RoomUsers {
    users: BTreeMap<Arc<str>, u32>,
}

impl RoomUsers {
    /// One more joined connection of `user`.
    pub(crate) fn add(&mut self, user: &Arc<str>) {
        *self.users.entry(user.clone()).or_insert(0) += 1;
    }

    /// One joined connection of `user` left.
    pub(crate) fn remove(&mut self, user: &str) {
        if let Some(n) = self.users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(user);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The first [`MAX_LISTED`] users (sorted) and how many there are.
    pub(crate) fn snapshot(&self) -> (Vec<Arc<str>>, usize) {
        (
            self.users.keys().take(MAX_LISTED).cloned().collect(),
            self.users.len(),
        )
    }
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
    fn queries_complete_after_every_answer() {
        let mut q = Queries::default();
        let ch = |name: &str| Channel::from_validated(Arc::from(name));
        let id = q.start(ConnId(1), ch("dm:a:b"), None, 2);
        assert!(q
            .answer(id, vec![Arc::from("b"), Arc::from("a")], None)
            .is_none());
        let done = q.answer(id, vec![Arc::from("a")], None).unwrap();
        let online: Vec<_> = done.online.iter().map(|u| u.to_string()).collect();
        assert_eq!(online, ["a", "b"]);
        assert!(
            q.answer(id, vec![], None).is_none(),
            "answers after completion are ignored"
        );
        let id = q.start(ConnId(1), ch("room:r"), None, 1);
        let done = q.answer(id, vec![Arc::from("a")], Some(5000)).unwrap();
        assert_eq!(done.count, Some(5000));
    }

    #[test]
    fn room_users_count_users_not_connections() {
        let mut r = RoomUsers::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        r.add(&b);
        r.add(&a);
        r.add(&a);
        assert_eq!(r.snapshot(), (vec![a.clone(), b.clone()], 2));
        r.remove("a");
        assert_eq!(r.snapshot().1, 2, "a still has a connection");
        r.remove("a");
        r.remove("b");
        assert!(r.is_empty());
        r.remove("nobody");
    }
}
