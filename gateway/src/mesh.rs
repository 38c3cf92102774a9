//! The full mesh of bounded queues between shards, created at start and
//! kept. **No shard waits for another**: a handler's message goes straight
//! into the peer's queue when it has room, else into a per-peer backlog that
//! one task per peer ([`forward_backlog`]) drains in order (waiting for space is fine
//! there: the receivers are separate tasks and keep draining). Past
//! `mesh_backlog_messages`, further batches to that peer are replaced by
//! `Advanced` notices (consecutive notices for one channel coalesce into
//! one): the replica's members see a head beyond their cursor and page the
//! gap from the store. `typing` notices are dropped rather than backlogged.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use chat_core::{ShardId, ShardMsg};
use glommio::{GlommioError, ResourceType};

use crate::shard_task::Shard;

impl Shard {
    /// Sends to a peer without ever waiting.
    pub(crate) fn send_remote(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        let mut backlog = self.backlog[to.0].borrow_mut();
        if backlog.is_empty() && !self.backlog_busy[to.0].get() {
            match self.mesh.try_send_to(to.0, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => {
                    backlog.push_back(msg);
                }
                Err(_) => return, // the peer is gone (shutdown)
            }
        } else {
            let msg = match msg {
                // Ephemeral: not worth queueing behind a backlog.
                ShardMsg::TypingNotice { .. } => return,
                ShardMsg::Batch(b) if backlog.len() >= self.cfg.mesh_backlog_messages => {
                    self.global
                        .stats
                        .mesh_overflows
                        .fetch_add(1, Ordering::Relaxed);
                    // Coalesce with a notice for the same channel at the tail.
                    if let Some(ShardMsg::Advanced { channel, head }) = backlog.back_mut() {
                        if *channel == b.channel {
                            *head = (*head).max(b.last_seq());
                            return;
                        }
                    }
                    ShardMsg::Advanced {
                        channel: b.channel.clone(),
                        head: b.last_seq(),
                    }
                }
                other => other,
            };
            backlog.push_back(msg);
        }
        self.backlog_notify[to.0].notify();
    }
}

/// Sends a peer's backlog in order, waiting for queue space (only this task
/// waits; handlers never do).
pub(crate) async fn forward_backlog(shard: Rc<Shard>, peer: usize) {
    loop {
        shard.backlog_notify[peer].notified().await;
        loop {
            let Some(msg) = shard.backlog[peer].borrow_mut().pop_front() else {
                break;
            };
            shard.backlog_busy[peer].set(true);
            let sent = shard.mesh.send_to(peer, msg).await;
            shard.backlog_busy[peer].set(false);
            if sent.is_err() {
                shard.backlog[peer].borrow_mut().clear();
                break;
            }
        }
    }
}
