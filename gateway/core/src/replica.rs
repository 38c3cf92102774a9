//! A room replica: one shard's view of one channel that some of its
//! connections joined — the local members and a small ring of recent
//! committed batches (for fast resume and catch-up without the store).
//!
//! Rings have two budgets: each replica keeps at most
//! `replica_ring_bytes` of its own recent batches, and the shard keeps at
//! most `replica_rings_bytes` over all of them ([`RingLog`]): without the
//! second, memory grew with the number of channels (every DM a shard serves
//! kept up to 256 KiB), which a soak run showed as RSS climbing for as long
//! as new conversations kept filling their rings.

use std::collections::VecDeque;

use chat_model::{Channel, Seq};

use crate::batch::{Batch, Shared};
use crate::maps::{Map, Set};
use crate::vocab::ConnId;

/// One shard's replica of one channel.
pub(crate) struct Replica {
    /// Local connections that joined (or are joining) the channel.
    pub(crate) members: Set<ConnId>,
    /// Highest seq this shard knows to be committed: from batches, `joined`
    /// heads and `Advanced` notices. Members are at or below it; live ones
    /// at it.
    pub(crate) last_seq: Seq,
    /// Recent batches, oldest first, contiguous.
    ring: VecDeque<Shared>,
    ring_bytes: usize,
}

impl Replica {
    pub(crate) fn new() -> Replica {
        Replica {
            members: Set::default(),
            last_seq: Seq::ZERO,
            ring: VecDeque::new(),
            ring_bytes: 0,
        }
    }

    /// Keeps `batch` in the ring (dropping the oldest past `max_bytes`; a
    /// batch that does not continue the ring restarts it).
    pub(crate) fn remember(&mut self, batch: &Shared, max_bytes: usize) {
        if let Some(last) = self.ring.back() {
            // An edit or delete of a message the ring holds makes its frames
            // stale for replay: catch-up then reads the store's view.
            let stale = batch.oldest_target.is_some_and(|t| t <= last.last_seq());
            if stale || batch.first_seq != last.last_seq().next() {
                self.ring.clear();
                self.ring_bytes = 0;
            }
        }
        self.ring_bytes += batch.byte_len();
        self.ring.push_back(batch.clone());
        while self.ring_bytes > max_bytes && self.ring.len() > 1 {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes -= old.byte_len();
            }
        }
    }

    /// Forgets the ring's oldest batch if it is the one starting at
    /// `first_seq` (it may be gone already: evicted by the replica's own
    /// budget, or the ring restarted).
    fn forget_oldest(&mut self, first_seq: Seq) {
        if self.ring.front().is_some_and(|b| b.first_seq == first_seq) {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes -= old.byte_len();
            }
        }
    }

    /// The ring's batch holding `seq`, if the ring still has it.
    pub(crate) fn ring_batch_with(&self, seq: Seq) -> Option<&Shared> {
        let first = self.ring.front()?.first_seq;
        if seq < first {
            return None;
        }
        // Batches are contiguous: binary search on first_seq.
        let idx = self.ring.partition_point(|b| b.first_seq <= seq);
        let b = self.ring.get(idx.checked_sub(1)?)?;
        (seq <= b.last_seq()).then_some(b)
    }
}

/// What one remembered batch costs the shard's budget beyond its frames:
/// the batch's own allocation and this log's entry, rounded up.
const ENTRY_COST: usize = 128;

/// The order in which a shard's replicas remembered batches, oldest first,
/// for the shard-wide ring budget (`replica_rings_bytes`). An entry whose
/// batch is already gone (its replica's own budget evicted it, the ring
/// restarted, the replica was dropped) still counts until it is the
/// oldest: the budget bounds what the last `max` bytes of batches can
/// hold, never less.
#[derive(Default)]
pub(crate) struct RingLog {
    order: VecDeque<(Channel, Seq, usize)>,
    bytes: usize,
}

impl RingLog {
    /// Notes that `batch` was remembered, then forgets the shard's oldest
    /// batches until the log fits `max_bytes`.
    pub(crate) fn remembered(
        &mut self,
        batch: &Batch,
        max_bytes: usize,
        replicas: &mut Map<Channel, Replica>,
    ) {
        let cost = batch.byte_len() + ENTRY_COST;
        self.order
            .push_back((batch.channel.clone(), batch.first_seq, cost));
        self.bytes += cost;
        while self.bytes > max_bytes && self.order.len() > 1 {
            let Some((channel, first_seq, cost)) = self.order.pop_front() else {
                break;
            };
            self.bytes -= cost;
            if let Some(rep) = replicas.get_mut(&channel) {
                rep.forget_oldest(first_seq);
            }
        }
    }

    /// Bytes the log counts (for tests and metrics).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::rc::Rc;
    use std::sync::Arc;

    fn room() -> Channel {
        Channel::from_validated(Arc::from("room:t"))
    }

    fn batch(first: u64, n: u64, size: usize) -> Shared {
        let mut b = Batch::new(room(), Seq(first));
        for _ in 0..n {
            b.push_frame(|out| out.extend(std::iter::repeat_n(b'x', size)));
        }
        Rc::new(Arc::new(b))
    }

    #[test]
    fn ring_finds_the_batch_holding_a_seq_and_forgets_old_ones() {
        let mut r = Replica::new();
        r.remember(&batch(1, 2, 10), 100);
        r.remember(&batch(3, 3, 10), 100);
        r.remember(&batch(6, 1, 10), 100);
        assert_eq!(r.ring_batch_with(Seq(4)).map(|b| b.first_seq), Some(Seq(3)));
        assert_eq!(r.ring_batch_with(Seq(6)).map(|b| b.first_seq), Some(Seq(6)));
        assert!(r.ring_batch_with(Seq(7)).is_none());
        r.remember(&batch(7, 10, 10), 100);
        assert!(
            r.ring_batch_with(Seq(1)).is_none(),
            "oldest batch evicted past the byte budget"
        );
        assert_eq!(r.ring_batch_with(Seq(8)).map(|b| b.first_seq), Some(Seq(7)));
    }

    #[test]
    fn an_edit_of_a_remembered_message_clears_the_ring() {
        let mut r = Replica::new();
        r.remember(&batch(1, 3, 1), 1000);
        let mut edit = Batch::new(room(), Seq(4));
        edit.push_frame(|out| out.push(b'e'));
        edit.note_target(Seq(2));
        r.remember(&Rc::new(Arc::new(edit)), 1000);
        assert!(r.ring_batch_with(Seq(2)).is_none(), "stale frames are gone");
        assert!(r.ring_batch_with(Seq(4)).is_some());
    }

    #[test]
    fn a_gap_restarts_the_ring() {
        let mut r = Replica::new();
        r.remember(&batch(1, 2, 1), 1000);
        r.remember(&batch(10, 1, 1), 1000);
        assert!(r.ring_batch_with(Seq(1)).is_none());
        assert!(r.ring_batch_with(Seq(10)).is_some());
    }

    fn chan(name: &str) -> Channel {
        Channel::from_validated(Arc::from(name))
    }

    fn batch_of(channel: &Channel, first: u64, size: usize) -> Shared {
        let mut b = Batch::new(channel.clone(), Seq(first));
        b.push_frame(|out| out.extend(std::iter::repeat_n(b'x', size)));
        Rc::new(Arc::new(b))
    }

    #[test]
    fn the_shard_budget_forgets_the_oldest_batches_of_any_channel() {
        let (a, b) = (chan("dm:a:b"), chan("dm:c:d"));
        let mut replicas: Map<Channel, Replica> = Map::default();
        replicas.insert(a.clone(), Replica::new());
        replicas.insert(b.clone(), Replica::new());
        let mut log = RingLog::default();
        let max = 3 * (1000 + ENTRY_COST);
        for (ch, seq) in [(&a, 1), (&b, 1), (&a, 2), (&b, 2)] {
            let batch = batch_of(ch, seq, 1000);
            replicas.get_mut(ch).unwrap().remember(&batch, 1 << 20);
            log.remembered(&batch, max, &mut replicas);
        }
        assert!(log.bytes() <= max);
        assert!(
            replicas[&a].ring_batch_with(Seq(1)).is_none(),
            "the shard's oldest batch is forgotten"
        );
        for (ch, seq) in [(&b, 1), (&a, 2), (&b, 2)] {
            assert!(replicas[ch].ring_batch_with(Seq(seq)).is_some());
        }
    }

    #[test]
    fn the_shard_budget_skips_batches_already_gone() {
        let a = chan("room:a");
        let mut replicas: Map<Channel, Replica> = Map::default();
        replicas.insert(a.clone(), Replica::new());
        let mut log = RingLog::default();
        let max = 2 * (100 + ENTRY_COST);
        let first = batch_of(&a, 1, 100);
        replicas.get_mut(&a).unwrap().remember(&first, 1 << 20);
        log.remembered(&first, max, &mut replicas);
        // The replica goes away and comes back: its new ring starts later.
        replicas.insert(a.clone(), Replica::new());
        for seq in [5, 6] {
            let batch = batch_of(&a, seq, 100);
            replicas.get_mut(&a).unwrap().remember(&batch, 1 << 20);
            log.remembered(&batch, max, &mut replicas);
        }
        assert!(
            replicas[&a].ring_batch_with(Seq(5)).is_some(),
            "not evicted for a stale entry"
        );
        assert!(replicas[&a].ring_batch_with(Seq(6)).is_some());
    }
}
