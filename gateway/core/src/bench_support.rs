//! Hidden entry points for `bench micro` (the hot-path micro-benchmarks of
//! the `bench` crate). Not part of the gateway's API: nothing else may use
//! them, and they may change with the internals they expose.
//!
//! [`FanoutFixture`] puts one committed `Batch` into the outboxes of many
//! local connections with the shard's own per-member step
//! (`shard::offer_batch`, the body of `Shard::on_batch`'s loop): check the
//! cursor, take the frames that fit the outbox budget, append them, advance
//! the cursor.

use std::rc::Rc;
use std::sync::Arc;

use chat_model::{Channel, MessageKind, Seq, StoredMessage};

use crate::batch::{Batch, Shared};
use crate::conn::{Conn, Phase, Signal, Sub};
use crate::fanout::{offer_batch, Offer};
use crate::maps::Set;
use crate::vocab::ConnId;
use chat_proto::response::{self, MsgView};

/// One batch and `members` live connections joined to its channel, each
/// with an empty outbox and its cursor just before the batch.
pub struct FanoutFixture {
    batch: Shared,
    members: Set<ConnId>,
    conns: crate::slots::ConnSlab<Conn>,
    budget: usize,
    signal: Rc<Signal>,
}

impl FanoutFixture {
    /// A batch of `messages` text messages of `text_bytes` bytes each (encoded
    /// as `msg` frames, as the owner does) for `members` connections, with
    /// the default outbox budget (256 KiB).
    #[must_use]
    pub fn new(members: usize, messages: usize, text_bytes: usize) -> FanoutFixture {
        let channel = Channel::from_validated(Arc::from("room:bench"));
        let mut batch = Batch::new(channel.clone(), Seq(1));
        let text = "x".repeat(text_bytes);
        for seq in 1..=messages as u64 {
            let m = StoredMessage {
                seq,
                from: "alice".into(),
                device: "laptop".into(),
                client_msg_id: format!("m{seq}"),
                kind: MessageKind::Text,
                text: text.clone(),
                target: None,
                media: None,
                ts: 1_700_000_000_000,
                edited: false,
                deleted: false,
            };
            batch.push_frame(|out| response::msg(out, &channel, &MsgView::from_stored(&m)));
        }
        let mut conns = crate::slots::ConnSlab::default();
        let signal = Rc::new(Signal::default());
        let mut set = Set::with_capacity_and_hasher(members, Default::default());
        for i in 0..members as u64 {
            let id = conns.next_id();
            let mut c = Conn::new(
                id,
                Arc::from(format!("u{i}")),
                Arc::from("d"),
                signal.clone(),
                0,
            );
            c.subs.insert(
                channel.clone(),
                Sub {
                    phase: Phase::Live,
                    ..Sub::joining(1, chat_proto::JoinMode::Live)
                },
            );
            conns.insert_new(c);
            set.insert(id);
        }
        FanoutFixture {
            batch: Rc::new(Arc::new(batch)),
            members: set,
            conns,
            budget: 256 * 1024,
            signal,
        }
    }

    /// Bytes of the batch's frames.
    #[must_use]
    pub fn batch_bytes(&self) -> usize {
        self.batch.byte_len()
    }

    /// Fans the batch out to every member (the measured work); returns the
    /// deliveries queued.
    pub fn fan_out(&mut self) -> u64 {
        let mut delivered = 0u64;
        for cid in &self.members {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            if let Offer::Queued { messages, .. } = offer_batch(conn, &self.batch, self.budget) {
                delivered += messages;
            }
        }
        delivered
    }

    /// What the drivers do next, outside the measurement: every outbox is
    /// written out and every cursor goes back before the batch.
    pub fn reset(&mut self) {
        // What the runtime does after a turn: take the woken list.
        drop(self.signal.take_woken());
        for conn in self.conns.values_mut() {
            conn.outbox.unwake();
            let pending = conn.outbox.pending();
            conn.outbox.wrote(pending);
            if let Some(sub) = conn.subs.get_mut(&self.batch.channel) {
                sub.cursor = Seq(self.batch.first_seq.0 - 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_gets_the_whole_batch_once_per_round() {
        let mut f = FanoutFixture::new(10, 4, 16);
        assert_eq!(f.fan_out(), 40);
        assert_eq!(f.fan_out(), 0, "cursors are at the batch's end");
        f.reset();
        assert_eq!(f.fan_out(), 40);
        assert!(f.batch_bytes() > 4 * 16);
    }
}
