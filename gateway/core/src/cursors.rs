//! Read and delivered cursors reported by clients, coalesced per shard.
//!
//! A `read` or `delivered` report costs a map update: the highest seq per
//! (user, channel) — (user, device, channel) for delivered — since the last
//! flush. Once per `cursor_flush_ms` the shard writes everything gathered
//! in one store call (one durable write), and pushes `read` events for the
//! cursors that moved: a flood of reports costs one write per flush, and
//! the other members hear at most one `read` per (user, channel) per flush.
//! The map is bounded (`max_pending_cursors`): at the bound a flush starts
//! at once, and reports wait while it runs.
//!
//! While a cursor is pending it is already what unread counts see:
//! [`PendingCursors::reads_of`] overlays the pending (and flushing) read
//! cursors of a user on the store's.

use std::sync::Arc;

use chat_model::{Channel, DeliveredUpdate, ReadUpdate, Seq};

use crate::maps::Map;
use crate::vocab::ConnId;

/// (user, channel).
type ReadKey = (Arc<str>, Channel);
/// (user, device, channel).
type DeliveredKey = (Arc<str>, Arc<str>, Channel);

/// Cursors reported since the last flush, and those being written.
#[derive(Debug, Default)]
pub(crate) struct PendingCursors {
    reads: Map<ReadKey, Seq>,
    delivered: Map<DeliveredKey, Seq>,
    /// The reads of the flush in flight (still pending for unread counts).
    flushing_reads: Map<ReadKey, Seq>,
    /// A flush is in flight.
    flushing: bool,
}

impl PendingCursors {
    /// Cursors held (pending and flushing).
    pub(crate) fn len(&self) -> usize {
        self.reads.len() + self.delivered.len() + self.flushing_reads.len()
    }

    /// Whether a new report must wait: at the bound with a flush in flight.
    pub(crate) fn is_full(&self, max: usize) -> bool {
        self.flushing && self.len() >= max
    }

    /// Whether the bound is reached and no flush runs (flush now).
    pub(crate) fn wants_flush(&self, max: usize) -> bool {
        !self.flushing && self.reads.len() + self.delivered.len() >= max
    }

    /// `user` read `channel` up to `seq`.
    pub(crate) fn report_read(&mut self, user: Arc<str>, channel: Channel, seq: Seq) {
        let e = self.reads.entry((user, channel)).or_insert(Seq::ZERO);
        *e = (*e).max(seq);
    }

    /// `user`'s `device` received `channel` up to `seq`.
    pub(crate) fn report_delivered(
        &mut self,
        user: Arc<str>,
        device: Arc<str>,
        channel: Channel,
        seq: Seq,
    ) {
        let e = self
            .delivered
            .entry((user, device, channel))
            .or_insert(Seq::ZERO);
        *e = (*e).max(seq);
    }

    /// Takes everything pending for one write; `None` when nothing is
    /// pending or a flush is already in flight.
    pub(crate) fn take(&mut self) -> Option<(Vec<ReadUpdate>, Vec<DeliveredUpdate>)> {
        if self.flushing || (self.reads.is_empty() && self.delivered.is_empty()) {
            return None;
        }
        self.flushing = true;
        let reads: Vec<ReadUpdate> = self
            .reads
            .iter()
            .map(|((u, c), &s)| (u.to_string(), c.to_string(), s))
            .collect();
        self.flushing_reads = std::mem::take(&mut self.reads);
        let delivered = self
            .delivered
            .drain()
            .map(|((u, d, c), s)| (u.to_string(), d.to_string(), c.to_string(), s))
            .collect();
        Some((reads, delivered))
    }

    /// The flush in flight finished (written or failed: a failed write is
    /// logged and its cursors are reported again by the clients' next
    /// reads; the store's cursors stay monotonic either way).
    pub(crate) fn flushed(&mut self) {
        self.flushing = false;
        self.flushing_reads.clear();
        if self.flushing_reads.capacity() > 1024 {
            self.flushing_reads = Map::default();
        }
    }

    /// The read cursors of `user` not yet in the store: channel → seq.
    pub(crate) fn reads_of(&self, user: &str) -> Vec<(Channel, Seq)> {
        let mut out: Map<Channel, Seq> = Map::default();
        for ((u, c), &s) in self.reads.iter().chain(&self.flushing_reads) {
            if &**u == user {
                let e = out.entry(c.clone()).or_insert(Seq::ZERO);
                *e = (*e).max(s);
            }
        }
        out.into_iter().collect()
    }
}

/// Unread queries started on this shard, gathering every shard's cursors
/// not yet written.
#[derive(Default)]
pub(crate) struct UnreadQueries {
    pub(crate) next: u64,
    pub(crate) open: Map<u64, UnreadQuery>,
}

pub(crate) struct UnreadQuery {
    pub(crate) conn: ConnId,
    pub(crate) user: Arc<str>,
    pub(crate) remaining: usize,
    pub(crate) pending: std::collections::HashMap<Channel, Seq>,
    /// For `GET /v1/me/channels` (`discovery.rs`), not `/v1/me/unread`.
    pub(crate) channels: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn ch(s: &str) -> Channel {
        Channel::from_validated(Arc::from(s))
    }

    #[test]
    fn reports_coalesce_to_the_highest_and_flush_once() {
        let mut p = PendingCursors::default();
        for seq in [3, 9, 4] {
            p.report_read(a("alice"), ch("dm:alice:bob"), Seq(seq));
        }
        p.report_delivered(a("alice"), a("d1"), ch("room:x"), Seq(2));
        p.report_delivered(a("alice"), a("d1"), ch("room:x"), Seq(5));
        assert_eq!(p.len(), 2);
        let (reads, delivered) = p.take().unwrap();
        assert_eq!(reads, vec![("alice".into(), "dm:alice:bob".into(), Seq(9))]);
        assert_eq!(
            delivered,
            vec![("alice".into(), "d1".into(), "room:x".into(), Seq(5))]
        );
        assert!(p.take().is_none(), "one flush at a time");
        p.report_read(a("alice"), ch("room:y"), Seq(1));
        let mut seen = p.reads_of("alice");
        seen.sort();
        assert_eq!(
            seen,
            vec![(ch("dm:alice:bob"), Seq(9)), (ch("room:y"), Seq(1))],
            "pending and flushing cursors both count for unread"
        );
        p.flushed();
        assert_eq!(p.reads_of("alice"), vec![(ch("room:y"), Seq(1))]);
        assert!(p.take().is_some());
    }

    #[test]
    fn the_bound_starts_a_flush_then_holds_reports() {
        let mut p = PendingCursors::default();
        for i in 0..4 {
            p.report_read(a("u"), ch(&format!("room:{i}")), Seq(1));
        }
        assert!(p.wants_flush(4));
        assert!(!p.is_full(4), "no flush in flight yet: it starts now");
        p.take();
        assert!(!p.wants_flush(4));
        assert!(p.is_full(4), "reports wait for the flush in flight");
        p.flushed();
        assert!(!p.is_full(4));
    }
}
