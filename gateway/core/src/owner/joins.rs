//! Joins, typing and room presence at the owner: a join registers the
//! shard's replica and is answered with the head on the queue that carries
//! the channel's batches; typing goes to every shard with members (members
//! only in a group), at most once per user per window; a room's present
//! users are counted here.

use std::sync::Arc;

use chat_model::{Channel, Seq};
use chat_proto::{response, ErrorCode};

use super::state::{
    fail_join, flush_join_waiters, send_joined, subscriber_shards, Gated, JoinWaiter, Membership,
    NodeSub, Owner,
};
use crate::error::JobError;
use crate::vocab::{Effects, IoJob, QueryRef, Reply, ShardId, ShardMsg};

impl Owner {
    /// A user is typing: forwards one `typing` to every shard with members,
    /// at most one per user and channel per `window_ms`. Never stored.
    pub(crate) fn on_typing(
        &mut self,
        channel: Channel,
        user: &Arc<str>,
        from: Reply,
        now_ms: u64,
        window_ms: u64,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return; // no state: nobody subscribed
        };
        if oc.subscribers == 0 {
            return;
        }
        // A group with subscribers has its members loaded (they passed the
        // gate): only members' typing reaches them.
        if channel.starts_with(chat_model::GROUP_PREFIX) {
            let refused = match &oc.membership {
                Membership::Members(m) if m.contains(&**user) => None,
                Membership::Members(_) => {
                    Some((ErrorCode::NotMember, "not a member of this group"))
                }
                _ => Some((ErrorCode::NotFound, "no such group")),
            };
            if let Some((code, msg)) = refused {
                fx.reply_error(&from, code, msg);
                return;
            }
        }
        oc.typing
            .retain(|_, t| now_ms.saturating_sub(*t) < window_ms);
        if oc.typing.contains_key(user) {
            return;
        }
        oc.typing.insert(user.clone(), now_ms);
        typing_to_shards(&channel, user, oc.subscribers, from.to, fx);
        if self.node.is_some() {
            // Cluster mode: the other subscribed nodes hear it through the
            // store (one transaction; see `docs/architecture.md`).
            fx.io.push(IoJob::Typing {
                channel,
                user: user.clone(),
            });
        }
    }

    /// A user on another node types in `channel` (rate-limited there): a
    /// `typing` to every local subscriber shard.
    pub(crate) fn on_remote_typing(&mut self, channel: Channel, user: &Arc<str>, fx: &mut Effects) {
        let Some(oc) = self.channels.get(&channel) else {
            return;
        };
        // No connection of this node is the sender's.
        let nobody = crate::vocab::ConnRef {
            shard: ShardId(usize::MAX),
            conn: crate::vocab::ConnId(0),
        };
        typing_to_shards(&channel, user, oc.subscribers, nobody, fx);
    }

    /// A shard registers its replica for `conn`'s join and wants the head.
    pub(crate) fn on_subscribe(&mut self, waiter: JoinWaiter, channel: Channel, fx: &mut Effects) {
        let user = waiter.user.clone();
        let Some(Gated::Subscribe(waiter, channel)) = self.gate(
            &channel.clone(),
            &user,
            Gated::Subscribe(waiter, channel),
            fx,
        ) else {
            return;
        };
        let node = self.node.clone();
        self.last_token += 1;
        let token = self.last_token;
        let oc = self.channel(&channel);
        oc.subscribers |= 1 << waiter.shard.0;
        if let Some(node) = node {
            // Cluster mode: the first join records this node's subscription
            // (and reads the head with it); a join with `since` beyond the
            // head this node knows reloads it (another node may have
            // committed it, its notice still on the way).
            match oc.node_sub {
                NodeSub::Off => {
                    oc.node_sub = NodeSub::Pending;
                    oc.join_waiters.push(waiter);
                    fx.io.push(IoJob::NodeSubscribe {
                        node,
                        channel,
                        token,
                    });
                    return;
                }
                NodeSub::Pending => {
                    oc.join_waiters.push(waiter);
                    return;
                }
                NodeSub::On(_) => {
                    if waiter.since.is_some_and(|s| oc.head.is_none_or(|h| s > h)) {
                        oc.join_waiters.push(waiter);
                        if !oc.loading {
                            oc.loading = true;
                            fx.io.push(IoJob::LoadHead(channel));
                        }
                        return;
                    }
                }
            }
        }
        if let Some(head) = oc.head {
            send_joined(&channel, oc, waiter, head, fx);
            return;
        }
        oc.join_waiters.push(waiter);
        if !oc.loading {
            oc.loading = true;
            fx.io.push(IoJob::LoadHead(channel));
        }
    }

    /// A joined connection of `user` left the room `channel` (counted when
    /// its `Joined` went out).
    pub(crate) fn on_member_gone(&mut self, channel: &Channel, user: &str) {
        if let Some(oc) = self.channels.get_mut(channel) {
            oc.room_users.remove(user);
            if oc.idle() {
                self.channels.remove(channel);
            }
        }
    }

    /// `presence` of a room: the first 100 users with a joined connection
    /// and their number, O(100).
    pub(crate) fn on_presence_room(
        &mut self,
        reply: QueryRef,
        channel: &Channel,
        fx: &mut Effects,
    ) {
        let (users, count) = self
            .channels
            .get(channel)
            .map_or((Vec::new(), 0), |oc| oc.room_users.snapshot());
        fx.send(
            reply.shard,
            ShardMsg::PresenceAnswer {
                query: reply.query,
                users,
                count: Some(count),
            },
        );
    }

    /// A shard has no more members of `channel`.
    pub(crate) fn on_unsubscribe(&mut self, from: ShardId, channel: &Channel, fx: &mut Effects) {
        if let Some(oc) = self.channels.get_mut(channel) {
            oc.subscribers &= !(1 << from.0);
            if let (0, NodeSub::On(token), Some(node)) = (oc.subscribers, oc.node_sub, &self.node) {
                oc.node_sub = NodeSub::Off;
                fx.io.push(IoJob::NodeUnsubscribe {
                    node: node.clone(),
                    channel: channel.clone(),
                    token,
                });
            }
            if oc.idle() {
                self.channels.remove(channel);
            }
        }
    }

    /// The store answered a head load.
    pub(crate) fn on_head_loaded(
        &mut self,
        channel: Channel,
        result: Result<Seq, JobError>,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return;
        };
        oc.loading = false;
        match result {
            Ok(head) => {
                // A commit that completed meanwhile is at least as new.
                let head = oc.head.map_or(head, |h| h.max(head));
                oc.head = Some(head);
                // While a commit is in flight the loaded head may already
                // include it: answering now could put `joined` (and a replay)
                // ahead of that commit's acks. Its completion answers them.
                // A subscription being recorded answers them when it is.
                if !oc.committing && oc.node_sub != NodeSub::Pending {
                    flush_join_waiters(&channel, oc, fx);
                }
            }
            Err(e) => {
                let message = format!("store unavailable: {e}");
                for w in oc.join_waiters.drain(..) {
                    fail_join(fx, w, channel.clone(), ErrorCode::Unavailable, &message);
                }
            }
        }
        if oc.idle() {
            self.channels.remove(&channel);
        }
    }

    /// This node's subscription to `channel` was recorded (or failed).
    pub(crate) fn on_node_subscribed(
        &mut self,
        channel: Channel,
        token: u64,
        result: Result<Seq, JobError>,
        fx: &mut Effects,
    ) {
        let node = self.node.clone();
        let unsubscribe = |fx: &mut Effects, channel: Channel| {
            if let Some(node) = node.clone() {
                fx.io.push(IoJob::NodeUnsubscribe {
                    node,
                    channel,
                    token,
                });
            }
        };
        let Some(oc) = self.channels.get_mut(&channel) else {
            if result.is_ok() {
                unsubscribe(fx, channel);
            }
            return;
        };
        match result {
            Ok(head) => {
                if oc.subscribers == 0 {
                    oc.node_sub = NodeSub::Off;
                    unsubscribe(fx, channel.clone());
                } else {
                    oc.node_sub = NodeSub::On(token);
                    // A group's members were loaded before this
                    // subscription committed: a change committed between
                    // the two left this node no notice. Load them once
                    // more; a member removed meanwhile is kicked then.
                    if matches!(oc.membership, Membership::Members(_)) {
                        fx.io.push(IoJob::LoadMembers(channel.clone()));
                    }
                }
                let head = oc.head.map_or(head, |h| h.max(head));
                oc.head = Some(head);
                if !oc.committing && !oc.loading {
                    flush_join_waiters(&channel, oc, fx);
                }
            }
            Err(e) => {
                oc.node_sub = NodeSub::Off;
                let message = format!("store unavailable: {e}");
                for w in oc.join_waiters.drain(..) {
                    fail_join(fx, w, channel.clone(), ErrorCode::Unavailable, &message);
                }
            }
        }
        if oc.idle() {
            self.channels.remove(&channel);
        }
    }

    /// Another node committed `messages` to `channel`: the part past the
    /// head this node knows goes to every shard with members as one batch,
    /// as a local commit would (members that missed anything page it from
    /// the store, as after any gap).
    pub(crate) fn on_remote_commit(
        &mut self,
        channel: Channel,
        messages: &[chat_model::StoredMessage],
        last: Seq,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return;
        };
        if oc.subscribers == 0 {
            return;
        }
        let known = oc.head.unwrap_or(Seq::ZERO);
        let mut batch: Option<crate::batch::Batch> = None;
        for m in messages.iter().filter(|m| Seq(m.seq) > known) {
            let b =
                batch.get_or_insert_with(|| crate::batch::Batch::new(channel.clone(), Seq(m.seq)));
            if b.first_seq.0 + b.len() as u64 != m.seq {
                break; // not contiguous: the rest comes with a later notice or a catch-up
            }
            if let Some(t) = m.target {
                b.note_target(Seq(t));
            }
            b.push_frame(|out| {
                response::msg(out, &channel, &response::MsgView::from_stored(m));
            });
        }
        if let Some(b) = batch {
            if oc.head.is_some() {
                oc.head = Some(b.last_seq());
            }
            let b = std::sync::Arc::new(b);
            for shard in subscriber_shards(oc.subscribers) {
                fx.send(shard, ShardMsg::Batch(b.clone()));
            }
        }
        if oc.head.is_some_and(|h| h < last) {
            oc.head = Some(last);
            for shard in subscriber_shards(oc.subscribers) {
                fx.send(
                    shard,
                    ShardMsg::Advanced {
                        channel: channel.clone(),
                        head: last,
                    },
                );
            }
        }
    }
}

/// One `typing` frame of `user` in `channel` to every shard in
/// `subscribers`, for every local member but `except`.
fn typing_to_shards(
    channel: &Channel,
    user: &str,
    subscribers: u64,
    except: crate::vocab::ConnRef,
    fx: &mut Effects,
) {
    let mut frame = Vec::new();
    response::typing(&mut frame, channel, user);
    let frame: Arc<[u8]> = Arc::from(frame);
    for shard in subscriber_shards(subscribers) {
        fx.send(
            shard,
            ShardMsg::TypingNotice {
                channel: channel.clone(),
                except,
                frame: frame.clone(),
            },
        );
    }
}
