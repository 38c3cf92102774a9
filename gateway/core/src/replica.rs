//! A room replica: one shard's view of one channel that some of its
//! connections joined — the local members and a small ring of recent
//! committed batches (for fast resume and catch-up without the store).

use std::collections::VecDeque;
use std::sync::Arc;

use chat_model::Seq;

use crate::batch::Batch;
use crate::maps::Set;
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
    ring: VecDeque<Arc<Batch>>,
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
    pub(crate) fn remember(&mut self, batch: &Arc<Batch>, max_bytes: usize) {
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

    /// The ring's batch holding `seq`, if the ring still has it.
    pub(crate) fn ring_batch_with(&self, seq: Seq) -> Option<&Arc<Batch>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chat_model::Channel;

    fn room() -> Channel {
        Channel::from_validated(Arc::from("room:t"))
    }

    fn batch(first: u64, n: u64, size: usize) -> Arc<Batch> {
        let mut b = Batch::new(room(), Seq(first));
        for _ in 0..n {
            b.push_frame(|out| out.extend(std::iter::repeat_n(b'x', size)));
        }
        Arc::new(b)
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
        r.remember(&Arc::new(edit), 1000);
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
}
