//! The group side of the channel owner: a group's members, loaded once
//! from the store and kept while the group is active, are the authority for
//! this process. Sends, joins, typing, presence queries and membership
//! changes of a group wait at its owner until they are loaded ([`Gated`]),
//! then are checked here; membership changes are written through the owner
//! so its cache follows, and a removal takes the member's connections out
//! of the channel on every shard. In cluster mode a change made on another
//! node arrives as an inbox notice (`ShardMsg::MembersChanged`): the owner
//! reloads the members, and whoever the reload no longer lists is kicked
//! the same way.

use std::sync::Arc;

use chat_model::Channel;
use chat_proto::ErrorCode;

use super::state::{
    fail_join, presence_failed, subscriber_shards, Gated, Membership, OwnedChannel, Owner,
};
use crate::error::JobError;
use crate::vocab::{Answer, Ask, Effects, GroupOp, IoJob, QueryRef, Reply, ShardId, ShardMsg};

impl Owner {
    /// For a group channel: whether `user` may use it now (Ok), must wait
    /// for the members to load (the request is kept), or is refused.
    pub(super) fn gate(
        &mut self,
        name: &Channel,
        user: &str,
        item: Gated,
        fx: &mut Effects,
    ) -> Option<Gated> {
        if !name.starts_with(chat_model::GROUP_PREFIX) {
            return Some(item);
        }
        let cluster = self.node.is_some();
        let oc = self.channel(name);
        let miss = match &oc.membership {
            Membership::Members(m) => !m.contains(user),
            Membership::NoGroup => true,
            Membership::Unknown => false,
        };
        if cluster && miss && !oc.members_fresh {
            // Cluster mode: another node may have created the group or added
            // `user` since these members were loaded. Reload once before
            // refusing (the refusal then comes from fresh members); members
            // pass meanwhile. A removal made on another node is not seen
            // this way but by a notice: `on_members_changed`.
            if oc.gated.is_empty() {
                fx.io.push(IoJob::LoadMembers(name.clone()));
            }
            oc.gated.push(item);
            return None;
        }
        match &oc.membership {
            Membership::Unknown => {
                if oc.gated.is_empty() {
                    fx.io.push(IoJob::LoadMembers(name.clone()));
                }
                oc.gated.push(item);
                None
            }
            Membership::Members(m) if m.contains(user) => Some(item),
            other => {
                let (code, msg) = if matches!(other, Membership::NoGroup) {
                    (ErrorCode::NotFound, "no such group")
                } else {
                    (ErrorCode::NotMember, "not a member of this group")
                };
                match item {
                    Gated::Send(req) => fx.send_error(&req.reply, code, msg),
                    Gated::Subscribe(w, channel) => fail_join(fx, w, channel, code, msg),
                    Gated::Group(_, _, reply) => fx.reply_error(&reply, code, msg),
                    Gated::Presence(reply, _) => presence_failed(fx, reply, code, msg),
                }
                None
            }
        }
    }

    /// A group's members were loaded: answers what waited for them.
    pub(crate) fn on_members_loaded(
        &mut self,
        channel: Channel,
        result: Result<Option<Vec<String>>, JobError>,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return;
        };
        let gated = std::mem::take(&mut oc.gated);
        match result {
            Ok(members) => {
                let fresh = match members {
                    None => Membership::NoGroup,
                    Some(m) => Membership::Members(m.into_iter().map(Arc::from).collect()),
                };
                let old = std::mem::replace(&mut oc.membership, fresh);
                // Removed elsewhere (another node, cluster mode): out of the
                // channel on every shard, as a local removal.
                if let Membership::Members(old) = old {
                    let now = match &oc.membership {
                        Membership::Members(m) => Some(m),
                        _ => None,
                    };
                    for user in old.iter().filter(|u| now.is_none_or(|m| !m.contains(*u))) {
                        kick_everywhere(&channel, user, oc.subscribers, fx);
                    }
                }
                // What waited is checked against these members, no reload.
                oc.members_fresh = true;
                for item in gated {
                    match item {
                        Gated::Send(req) => self.on_send(req, fx),
                        Gated::Subscribe(w, ch) => self.on_subscribe(w, ch, fx),
                        Gated::Group(actor, op, reply) => {
                            self.on_group(channel.clone(), actor, op, reply, fx)
                        }
                        Gated::Presence(reply, user) => {
                            self.on_presence_group(reply, channel.clone(), user, fx)
                        }
                    }
                }
            }
            Err(e) => {
                let msg = format!("store unavailable: {e}");
                for item in gated {
                    match item {
                        Gated::Send(req) => fx.send_error(&req.reply, ErrorCode::Unavailable, &msg),
                        Gated::Subscribe(w, ch) => {
                            fail_join(fx, w, ch, ErrorCode::Unavailable, &msg);
                        }
                        Gated::Group(_, _, reply) => {
                            fx.reply_error(&reply, ErrorCode::Unavailable, &msg)
                        }
                        Gated::Presence(reply, _) => {
                            presence_failed(fx, reply, ErrorCode::Unavailable, &msg)
                        }
                    }
                }
            }
        }
        if let Some(oc) = self.channels.get_mut(&channel) {
            oc.members_fresh = false;
        }
        if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
            self.channels.remove(&channel);
        }
    }

    /// Another node changed the members of `channel` (cluster mode, an
    /// inbox notice): if this owner holds them, it reloads them;
    /// [`Owner::on_members_loaded`] then kicks whoever was removed. Members
    /// not held are loaded fresh at the group's next use anyway.
    pub(crate) fn on_members_changed(&mut self, channel: Channel, fx: &mut Effects) {
        let Some(oc) = self.channels.get(&channel) else {
            return;
        };
        // `Unknown` with requests gated: a load is in flight, but it may
        // have read before this change committed, so load again.
        if matches!(oc.membership, Membership::Members(_))
            || (matches!(oc.membership, Membership::Unknown) && !oc.gated.is_empty())
        {
            fx.io.push(IoJob::LoadMembers(channel));
        }
    }

    /// A membership change (HTTP API) for a group this shard owns.
    pub(crate) fn on_group(
        &mut self,
        channel: Channel,
        actor: Arc<str>,
        op: GroupOp,
        reply: Reply,
        fx: &mut Effects,
    ) {
        if let GroupOp::Create(_) = op {
            fx.io.push(IoJob::GroupWrite { channel, op, reply });
            return;
        }
        let item = Gated::Group(actor.clone(), op, reply);
        let Some(Gated::Group(_, op, reply)) = self.gate(&channel, &actor, item, fx) else {
            return;
        };
        // The cap holds on every add, not only at creation: the members
        // are loaded (the gate passed) and every write goes through here.
        if let (GroupOp::Add(user), Some(oc)) = (&op, self.channels.get_mut(&channel)) {
            if let Membership::Members(m) = &oc.membership {
                if !m.contains(user.as_str())
                    && m.len() + oc.adds_in_flight >= self.max_group_members
                {
                    let msg = format!(
                        "the group is full: at most {} members (max_group_members)",
                        self.max_group_members
                    );
                    fx.reply_error(&reply, ErrorCode::Forbidden, &msg);
                    return;
                }
            }
            oc.adds_in_flight += 1;
        }
        fx.io.push(IoJob::GroupWrite { channel, op, reply });
    }

    /// A membership write finished: update the members, answer, and take a
    /// removed member's connections out of the channel everywhere.
    pub(crate) fn on_group_written(
        &mut self,
        channel: Channel,
        op: GroupOp,
        reply: Reply,
        result: Result<bool, JobError>,
        fx: &mut Effects,
    ) {
        if let GroupOp::Add(_) = op {
            if let Some(oc) = self.channels.get_mut(&channel) {
                oc.adds_in_flight = oc.adds_in_flight.saturating_sub(1);
            }
        }
        // `changed`: the store added (removed) the member; false when it
        // already was (was not) one.
        let changed = match result {
            Ok(changed) => changed,
            Err(e) => {
                fx.reply_error(&reply, e.code(), &e.to_string());
                if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
                    self.channels.remove(&channel);
                }
                return;
            }
        };
        let oc = self.channel(&channel);
        let mut added = Vec::new();
        match &op {
            GroupOp::Create(members) => {
                oc.membership =
                    Membership::Members(members.iter().map(|m| Arc::from(m.as_str())).collect());
                added.clone_from(members);
            }
            GroupOp::Add(user) => {
                if let Membership::Members(m) = &mut oc.membership {
                    m.insert(Arc::from(user.as_str()));
                }
                if changed {
                    added.push(user.clone());
                }
            }
            GroupOp::Remove(user) => {
                if let Membership::Members(m) = &mut oc.membership {
                    m.remove(user.as_str());
                }
                let user: Arc<str> = Arc::from(user.as_str());
                kick_everywhere(&channel, &user, oc.subscribers, fx);
            }
        }
        crate::discovery::announce(fx, added, &channel);
        fx.answer(
            &reply,
            Answer::GroupDone {
                channel: channel.clone(),
            },
        );
        if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
            self.channels.remove(&channel);
        }
    }

    /// `presence` of a group by `user`: members only (checked here, from the
    /// loaded members); every shard is then asked which members it holds.
    pub(crate) fn on_presence_group(
        &mut self,
        reply: QueryRef,
        channel: Channel,
        user: Arc<str>,
        fx: &mut Effects,
    ) {
        let item = Gated::Presence(reply, user.clone());
        let Some(Gated::Presence(reply, _)) = self.gate(&channel, &user, item, fx) else {
            return;
        };
        let members: Vec<String> = match self.channels.get(&channel).map(|oc| &oc.membership) {
            Some(Membership::Members(m)) => m.iter().map(|u| u.to_string()).collect(),
            _ => Vec::new(),
        };
        let members = Arc::new(members);
        if self.node.is_some() {
            // Cluster mode: the query waits for the store's answer too.
            fx.io.push(IoJob::PresenceOnline {
                reply,
                users: members.clone(),
            });
        }
        let ask = Ask::Users(members);
        for shard in 0..fx.nr_shards {
            fx.send(
                ShardId(shard),
                ShardMsg::PresenceAsk {
                    reply,
                    ask: ask.clone(),
                },
            );
        }
        if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
            self.channels.remove(&channel);
        }
    }
}

/// Tells every shard with local subscribers of `channel` that `user` left
/// it (each shard's connections of that user get an unsolicited `left`).
fn kick_everywhere(channel: &Channel, user: &Arc<str>, subscribers: u64, fx: &mut Effects) {
    for shard in subscriber_shards(subscribers) {
        fx.send(
            shard,
            ShardMsg::Kick {
                channel: channel.clone(),
                user: user.clone(),
            },
        );
    }
}
