//! The delivery checker: one per (connection, channel), no I/O.
//!
//! The gateway promises (protocol.md, *Server → client*): per channel a
//! connection receives every seq exactly once, in increasing order with no
//! gaps, from its join position on; and a connection that rejoins with
//! `since` = the last seq it saw misses nothing and sees nothing twice. A
//! [`DeliveryChecker`] holds a connection to that promise across any number
//! of reconnects:
//!
//! * [`DeliveryChecker::on_joined`] sets the join position: the `head` of
//!   the first `joined`, or the `since` the connection sent when it rejoined
//!   ([`DeliveryChecker::resume_from`] says which `since` to send).
//! * [`DeliveryChecker::on_msg`] classifies each `msg` seq: the next one
//!   ([`Delivery::InOrder`]), one past a gap ([`Delivery::Gap`], the skipped
//!   seqs become *holes*), one that fills a hole ([`Delivery::Reordered`]),
//!   one seen already ([`Delivery::Duplicate`]), or one before any `joined`
//!   ([`Delivery::BeforeJoin`]).
//! * [`DeliveryChecker::finish`] turns what is left into [`Violations`]: holes
//!   never filled are lost, and so is every seq up to the channel's highest
//!   acked seq (`target`) that never arrived — seqs are dense, so a member
//!   whose highest seq is `h` misses exactly `target − h` of them.
//!
//! A member that joined with `mode` `digest` is held to the same promise
//! (its messages come later and in bigger writes, never differently). One
//! that joined with `counts` gets no messages at all: its checker
//! ([`DeliveryChecker::counts`]) counts any `msg` as a violation and
//! instead expects the `head` events ([`DeliveryChecker::on_head`]) to reach
//! the channel's highest acked seq by the end.
//!
//! Memory is constant in the common case: the highest seq, the join
//! position and an empty hole list. Holes are kept as ranges, so even a large
//! gap costs one entry.

use serde::{Deserialize, Serialize};

/// Counts of broken delivery invariants. The run fails when any is non-zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    /// Messages a member should have received (committed, at or below the
    /// channel's highest acked seq, after its join position) and did not.
    pub lost: u64,
    /// Messages received more than once by the same member.
    pub duplicated: u64,
    /// Messages received after a higher seq of the same channel.
    pub reordered: u64,
    /// Messages of a channel received before its `joined` (or for a channel
    /// the connection never joined).
    pub before_join: u64,
    /// Rejoins where the server's head was below the `since` the client
    /// had already seen: acked history went missing.
    pub head_regressed: u64,
    /// Messages received by a member that joined with `mode` `counts`
    /// (which gets none).
    #[serde(default)]
    pub counts_msgs: u64,
    /// Members that joined with `mode` `counts` whose last `head` event was
    /// below the channel's highest acked seq at the end.
    #[serde(default)]
    pub counts_behind: u64,
}

impl Violations {
    /// Sum of all counts.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.lost
            + self.duplicated
            + self.reordered
            + self.before_join
            + self.head_regressed
            + self.counts_msgs
            + self.counts_behind
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Violations) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.before_join += other.before_join;
        self.head_regressed += other.head_regressed;
        self.counts_msgs += other.counts_msgs;
        self.counts_behind += other.counts_behind;
    }

    /// One plain sentence per broken invariant (empty when none broke).
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.lost > 0 {
            out.push(format!(
                "{} acked message deliveries never arrived (lost)",
                self.lost
            ));
        }
        if self.duplicated > 0 {
            out.push(format!(
                "{} messages were delivered twice to the same connection (duplicated)",
                self.duplicated
            ));
        }
        if self.reordered > 0 {
            out.push(format!(
                "{} messages arrived after a higher seq of their channel (reordered)",
                self.reordered
            ));
        }
        if self.before_join > 0 {
            out.push(format!(
                "{} messages arrived for a channel before its `joined`",
                self.before_join
            ));
        }
        if self.head_regressed > 0 {
            out.push(format!(
                "{} rejoins found the channel head below a seq already delivered",
                self.head_regressed
            ));
        }
        if self.counts_msgs > 0 {
            out.push(format!(
                "{} messages reached members that joined with mode counts (they get none)",
                self.counts_msgs
            ));
        }
        if self.counts_behind > 0 {
            out.push(format!(
                "{} counts members never got a head event reaching the channel's last acked seq",
                self.counts_behind
            ));
        }
        out
    }
}

/// How one received seq fits the sequence so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next seq: as it should be.
    InOrder,
    /// Past a gap: `missing` seqs were skipped (they may still arrive late,
    /// then they count as reordered; else they count as lost).
    Gap {
        /// How many seqs were skipped.
        missing: u64,
    },
    /// Filled an earlier gap: arrived out of order.
    Reordered,
    /// Seen before.
    Duplicate,
    /// No `joined` yet for this channel.
    BeforeJoin,
    /// A member that joined with `mode` `counts` got a message.
    Unwanted,
}

/// What a `joined` reply means for the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The join position is set; deliveries continue after it.
    Ok,
    /// The server's head is below the `since` the client sent: messages it
    /// had delivered are gone.
    HeadRegressed,
}

/// Per (connection, channel) delivery state. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct DeliveryChecker {
    /// The first join position (`head` of the first `joined`); `None` until
    /// then.
    base: Option<u64>,
    /// Highest seq received, or the join position if higher.
    last: u64,
    /// Skipped seqs not received yet, as sorted disjoint inclusive ranges.
    holes: Vec<(u64, u64)>,
    /// Seqs received (duplicates included).
    received: u64,
    duplicated: u64,
    reordered: u64,
    before_join: u64,
    head_regressed: u64,
    /// Whether the current connection's `joined` has arrived.
    joined: bool,
    /// Joined with `mode` `counts`: no messages, `head` events instead.
    counts: bool,
    /// `counts`: the highest head told (by `joined` or `head`).
    head_seen: u64,
    /// `counts`: messages received (each a violation).
    counts_msgs: u64,
}

impl DeliveryChecker {
    /// A checker for a channel not joined yet.
    #[must_use]
    pub fn new() -> DeliveryChecker {
        DeliveryChecker::default()
    }

    /// A checker for a channel joined with `mode` `counts`: it expects no
    /// messages, and `head` events up to the channel's last acked seq.
    #[must_use]
    pub fn counts() -> DeliveryChecker {
        DeliveryChecker {
            counts: true,
            ..DeliveryChecker::default()
        }
    }

    /// A `head` event arrived (`counts` members).
    pub fn on_head(&mut self, head: u64) {
        self.head_seen = self.head_seen.max(head);
    }

    /// The `since` to send in a `join`: `None` for the first join (live
    /// only), afterwards the highest seq seen.
    #[must_use]
    pub fn resume_from(&self) -> Option<u64> {
        self.base.map(|_| self.last)
    }

    /// The connection dropped: the next `joined` starts a new join.
    pub fn on_disconnect(&mut self) {
        self.joined = false;
    }

    /// A `joined` arrived for a join sent with `since` (as returned by
    /// [`DeliveryChecker::resume_from`] when the join was sent).
    pub fn on_joined(&mut self, since: Option<u64>, head: u64) -> JoinOutcome {
        self.joined = true;
        self.head_seen = self.head_seen.max(head);
        match (self.base, since) {
            (None, _) => {
                // First join: live messages only, so the next seq is head + 1
                // (a `since` on a first join would also be honoured).
                let position = since.unwrap_or(head);
                self.base = Some(position);
                self.last = position;
                JoinOutcome::Ok
            }
            (Some(_), since) => {
                let since = since.unwrap_or(head);
                if head < since {
                    self.head_regressed += 1;
                    return JoinOutcome::HeadRegressed;
                }
                // Replay covers (since, head]; deliveries continue after
                // `since`. A `since` below `last` (not what resume_from says)
                // makes the replayed seqs duplicates, which is what they are.
                JoinOutcome::Ok
            }
        }
    }

    /// Classifies one received `msg` seq and updates the state.
    pub fn on_msg(&mut self, seq: u64) -> Delivery {
        self.received += 1;
        if self.counts {
            self.counts_msgs += 1;
            return Delivery::Unwanted;
        }
        if !self.joined || self.base.is_none() {
            self.before_join += 1;
            return Delivery::BeforeJoin;
        }
        if seq == self.last + 1 {
            self.last = seq;
            return Delivery::InOrder;
        }
        if seq > self.last + 1 {
            let missing = seq - self.last - 1;
            self.holes.push((self.last + 1, seq - 1));
            self.last = seq;
            return Delivery::Gap { missing };
        }
        // seq <= last: either it fills a hole (late) or it was seen (or was
        // before the join position, which the server must not send either).
        if self.fill_hole(seq) {
            self.reordered += 1;
            Delivery::Reordered
        } else {
            self.duplicated += 1;
            Delivery::Duplicate
        }
    }

    /// Removes `seq` from the holes; whether it was in one.
    fn fill_hole(&mut self, seq: u64) -> bool {
        let Some(i) = self.holes.iter().position(|&(a, b)| a <= seq && seq <= b) else {
            return false;
        };
        let (a, b) = self.holes[i];
        match (seq == a, seq == b) {
            (true, true) => {
                self.holes.remove(i);
            }
            (true, false) => self.holes[i].0 = seq + 1,
            (false, true) => self.holes[i].1 = seq - 1,
            (false, false) => {
                self.holes[i].1 = seq - 1;
                self.holes.insert(i + 1, (seq + 1, b));
            }
        }
        true
    }

    /// Whether the first `joined` has arrived (the member has a position).
    #[must_use]
    pub fn has_joined_once(&self) -> bool {
        self.base.is_some()
    }

    /// Whether the current connection's `joined` has arrived.
    #[must_use]
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Highest seq received (or the join position).
    #[must_use]
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Seqs received, duplicates included.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Skipped seqs not (yet) received.
    #[must_use]
    pub fn holes(&self) -> u64 {
        self.holes.iter().map(|&(a, b)| b - a + 1).sum()
    }

    /// Whether every seq up to `target` that this member should get has
    /// arrived.
    #[must_use]
    pub fn is_caught_up(&self, target: u64) -> bool {
        if self.counts {
            return self.head_seen >= target;
        }
        self.holes.is_empty() && self.last >= target
    }

    /// The final verdict given the channel's highest acked seq `target`.
    /// `stayed_joined` = the member was joined at the end; a member that was
    /// not is not charged for the tail it could not receive (the run reports
    /// it as down instead), only for its holes.
    #[must_use]
    pub fn finish(&self, target: u64, stayed_joined: bool) -> Violations {
        if self.counts {
            return Violations {
                counts_msgs: self.counts_msgs,
                counts_behind: u64::from(stayed_joined && self.head_seen < target),
                before_join: self.before_join,
                head_regressed: self.head_regressed,
                ..Violations::default()
            };
        }
        let tail = if stayed_joined && self.base.is_some() {
            target.saturating_sub(self.last)
        } else {
            0
        };
        Violations {
            lost: self.holes() + tail,
            duplicated: self.duplicated,
            reordered: self.reordered,
            before_join: self.before_join,
            head_regressed: self.head_regressed,
            counts_msgs: 0,
            counts_behind: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins at `head`, feeds `seqs`, finishes at `target`.
    fn run(head: u64, seqs: &[u64], target: u64) -> (Vec<Delivery>, Violations) {
        let mut c = DeliveryChecker::new();
        assert_eq!(c.resume_from(), None);
        assert_eq!(c.on_joined(None, head), JoinOutcome::Ok);
        let d = seqs.iter().map(|&s| c.on_msg(s)).collect();
        (d, c.finish(target, true))
    }

    #[test]
    fn a_counts_member_is_checked_on_its_heads_and_must_get_no_messages() {
        let mut c = DeliveryChecker::counts();
        assert_eq!(c.on_joined(None, 3), JoinOutcome::Ok);
        assert!(!c.is_caught_up(9));
        c.on_head(7);
        c.on_head(5);
        assert!(!c.is_caught_up(9));
        assert_eq!(c.finish(9, true).counts_behind, 1);
        c.on_head(9);
        assert!(c.is_caught_up(9));
        assert_eq!(
            c.finish(9, true),
            Violations::default(),
            "nothing lost: no messages expected"
        );
        assert_eq!(c.on_msg(10), Delivery::Unwanted);
        let v = c.finish(10, true);
        assert_eq!((v.counts_msgs, v.total()), (1, 2));
        assert!(v.describe().iter().any(|d| d.contains("mode counts")));
    }

    #[test]
    fn a_clean_sequence_has_no_violations() {
        let (d, v) = run(3, &[4, 5, 6, 7], 7);
        assert!(d.iter().all(|d| *d == Delivery::InOrder));
        assert_eq!(v, Violations::default());
    }

    #[test]
    fn catches_a_gap() {
        let (d, v) = run(0, &[1, 2, 4, 5], 5);
        assert_eq!(d[2], Delivery::Gap { missing: 1 });
        assert_eq!(v.lost, 1);
        assert_eq!(v.total(), 1);
    }

    #[test]
    fn catches_a_missing_tail() {
        // Acked up to 6, member saw up to 4.
        let (_, v) = run(0, &[1, 2, 3, 4], 6);
        assert_eq!(v.lost, 2);
    }

    #[test]
    fn catches_a_duplicate() {
        let (d, v) = run(0, &[1, 2, 2, 3], 3);
        assert_eq!(d[2], Delivery::Duplicate);
        assert_eq!(
            v,
            Violations {
                duplicated: 1,
                ..Violations::default()
            }
        );
    }

    #[test]
    fn catches_a_reordering() {
        let (d, v) = run(0, &[1, 3, 2, 4], 4);
        assert_eq!(d[1], Delivery::Gap { missing: 1 });
        assert_eq!(d[2], Delivery::Reordered);
        assert_eq!(
            v,
            Violations {
                reordered: 1,
                ..Violations::default()
            }
        );
    }

    #[test]
    fn holes_split_and_fill_in_any_order() {
        let (_, v) = run(0, &[1, 7, 4, 2, 6, 3], 7);
        // Hole 2..=6; 4 splits it, then 2, 6, 3 arrive: only 5 is missing.
        assert_eq!(v.reordered, 4);
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn a_message_before_joined_is_a_violation() {
        let mut c = DeliveryChecker::new();
        assert_eq!(c.on_msg(1), Delivery::BeforeJoin);
        c.on_joined(None, 1);
        c.on_disconnect();
        // After a reconnect, until the new joined arrives.
        assert_eq!(c.on_msg(2), Delivery::BeforeJoin);
        assert_eq!(c.finish(1, true).before_join, 2);
    }

    #[test]
    fn a_resume_with_since_continues_the_sequence() {
        let mut c = DeliveryChecker::new();
        c.on_joined(None, 10);
        assert_eq!(c.on_msg(11), Delivery::InOrder);
        assert_eq!(c.on_msg(12), Delivery::InOrder);
        c.on_disconnect();
        assert_eq!(c.resume_from(), Some(12));
        assert_eq!(c.on_joined(Some(12), 15), JoinOutcome::Ok);
        for s in 13..=16 {
            assert_eq!(c.on_msg(s), Delivery::InOrder);
        }
        assert_eq!(c.finish(16, true), Violations::default());
    }

    #[test]
    fn a_resume_that_replays_too_much_counts_duplicates() {
        let mut c = DeliveryChecker::new();
        c.on_joined(None, 0);
        for s in 1..=3 {
            c.on_msg(s);
        }
        c.on_disconnect();
        c.on_joined(Some(3), 5);
        // The server wrongly replays from 2.
        assert_eq!(c.on_msg(2), Delivery::Duplicate);
        assert_eq!(c.on_msg(3), Delivery::Duplicate);
        assert_eq!(c.on_msg(4), Delivery::InOrder);
        assert_eq!(c.on_msg(5), Delivery::InOrder);
        assert_eq!(c.finish(5, true).duplicated, 2);
    }

    #[test]
    fn a_head_below_since_is_reported() {
        let mut c = DeliveryChecker::new();
        c.on_joined(None, 0);
        c.on_msg(1);
        c.on_msg(2);
        c.on_disconnect();
        assert_eq!(c.on_joined(Some(2), 1), JoinOutcome::HeadRegressed);
        assert_eq!(c.finish(2, true).head_regressed, 1);
    }

    #[test]
    fn a_member_down_at_the_end_is_charged_only_for_holes() {
        let mut c = DeliveryChecker::new();
        c.on_joined(None, 0);
        c.on_msg(1);
        c.on_msg(3);
        c.on_disconnect();
        assert_eq!(c.finish(10, false).lost, 1);
        assert_eq!(c.finish(10, true).lost, 8);
    }

    #[test]
    fn caught_up_needs_no_holes_and_the_target() {
        let mut c = DeliveryChecker::new();
        c.on_joined(None, 0);
        c.on_msg(2);
        assert!(!c.is_caught_up(2));
        c.on_msg(1);
        assert!(c.is_caught_up(2));
        assert!(!c.is_caught_up(3));
    }
}
