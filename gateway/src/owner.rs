//! The owner of a channel: the only writer of its sequence.
//!
//! Every channel has one owner shard (`hash::owner_of`). The owner
//! deduplicates sends that are still in flight, groups everything that
//! arrived for its channels into one store commit (group commit; at most one
//! commit per shard — hence per channel — in flight), and only once the store
//! says the commit is durable does it ack the senders and hand each shard
//! with subscribers one shared batch (store before deliver). The store is the
//! authority on the head and assigns seqs, so a failed commit leaves no hole:
//! its senders get `unavailable`, the head is reloaded, and nothing was built
//! on the failed seqs.
//!
//! This module does no I/O: it consumes requests and store results and
//! pushes messages and I/O jobs into [`Effects`].

use std::collections::HashMap;
use std::sync::Arc;

use storage::{
    AppendOutcome, ChannelAppend, ChannelOutcome, NewMessage, RejectReason, Seq, StoredMessage,
};

use crate::batch::Batch;
use crate::conn::ConnId;
use crate::hash::{fnv1a_64, ShardId};
use crate::presence::{Ask, QueryRef, RoomUsers};
use crate::protocol::{response, ErrorCode};
use crate::shard::{ConnRef, Effects, IoJob, ShardMsg};
use crate::store_io::StoreFailure;

/// Where the answer to a request goes.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// The requesting connection.
    pub(crate) to: ConnRef,
    /// The request's `id`, raw JSON, echoed in the reply.
    pub(crate) id: Option<Box<str>>,
}

/// A send (or edit/delete) forwarded to the owner.
#[derive(Debug)]
pub(crate) struct SendReq {
    /// Channel (validated, membership checked).
    pub(crate) channel: Arc<str>,
    /// Who gets the ack.
    pub(crate) reply: Reply,
    /// The message; `ts` is set at commit.
    pub(crate) msg: NewMessage,
}

/// A change of a group's membership, requested by `actor`.
#[derive(Clone, Debug)]
pub(crate) enum GroupOp {
    /// Create the group with these members (the creator included).
    Create(Vec<String>),
    /// Add a member (by a member).
    Add(String),
    /// Remove a member (by a member; members may remove themselves).
    Remove(String),
}

/// What the owner knows of a group channel's members.
#[derive(Debug)]
enum Membership {
    /// Not loaded yet (requests wait in `gated`).
    Unknown,
    /// Loaded: the group does not exist.
    NoGroup,
    /// Loaded: its members.
    Members(std::collections::HashSet<Arc<str>>),
}

/// A request that waits for a group's members to load.
#[derive(Debug)]
enum Gated {
    Send(SendReq),
    Subscribe(JoinWaiter, Arc<str>),
    Group(Arc<str>, GroupOp, Reply),
    /// A `presence` query by this user.
    Presence(QueryRef, Arc<str>),
}

/// A join waiting for the head.
#[derive(Debug)]
pub(crate) struct JoinWaiter {
    pub(crate) shard: ShardId,
    pub(crate) conn: ConnId,
    pub(crate) gen: u64,
    pub(crate) user: Arc<str>,
    pub(crate) since: Option<u64>,
    pub(crate) id: Option<Box<str>>,
}

/// A dedup key in flight: its content fingerprint and the retries waiting
/// for the original's answer.
struct InFlight {
    fingerprint: u64,
    waiters: Vec<Reply>,
}

struct Pending {
    msg: NewMessage,
    reply: Reply,
    key: String,
}

struct OwnedChannel {
    /// Group channels only: the members, authoritative for this process.
    membership: Membership,
    /// Requests waiting for `membership` to load.
    gated: Vec<Gated>,
    /// Last committed seq, once known (loaded from the store or learned from
    /// a commit).
    head: Option<u64>,
    loading: bool,
    pending: Vec<Pending>,
    committing: bool,
    queued: bool,
    in_flight: HashMap<String, InFlight>,
    /// Bit i set: shard i has a replica with members.
    subscribers: u64,
    /// When each user's last `typing` was forwarded (ms).
    typing: HashMap<Arc<str>, u64>,
    /// Timestamp of the last message taken into a commit: `ts` never goes
    /// backwards within a channel, even if the clock does.
    last_ts: u64,
    join_waiters: Vec<JoinWaiter>,
    /// Membership adds written to the store and not answered yet (they
    /// count against `max_group_members` before they land).
    adds_in_flight: usize,
    /// Rooms only: the users with a joined connection (presence queries).
    room_users: RoomUsers,
}

impl OwnedChannel {
    fn new(name: &str) -> OwnedChannel {
        let is_group = name.starts_with(storage::GROUP_PREFIX);
        OwnedChannel {
            membership: if is_group {
                Membership::Unknown
            } else {
                Membership::NoGroup
            },
            gated: Vec::new(),
            head: None,
            loading: false,
            pending: Vec::new(),
            committing: false,
            queued: false,
            in_flight: HashMap::new(),
            subscribers: 0,
            join_waiters: Vec::new(),
            typing: HashMap::new(),
            last_ts: 0,
            adds_in_flight: 0,
            room_users: RoomUsers::default(),
        }
    }

    fn idle(&self) -> bool {
        self.gated.is_empty()
            && self.subscribers == 0
            && self.pending.is_empty()
            && !self.committing
            && !self.loading
            && self.join_waiters.is_empty()
            && self.in_flight.is_empty()
            && self.adds_in_flight == 0
            && self.room_users.is_empty()
    }
}

/// Who waits for one message of a commit: the sender and the dedup key.
type MessageMeta = (Reply, String);

/// The metadata of one commit in flight, matching its `ChannelAppend`s.
pub(crate) struct CommitJob {
    channels: Vec<(Arc<str>, Vec<MessageMeta>)>,
}

/// All channels this shard owns.
pub(crate) struct Owner {
    push: bool,
    /// Most members of a group (`max_group_members`), checked on every add.
    max_group_members: usize,
    channels: HashMap<Arc<str>, OwnedChannel>,
    ready: Vec<Arc<str>>,
    committing: bool,
}

fn dedup_key(m: &NewMessage) -> String {
    let mut k = String::with_capacity(m.from.len() + m.device.len() + m.client_msg_id.len() + 2);
    k.push_str(&m.from);
    k.push('\0');
    k.push_str(&m.device);
    k.push('\0');
    k.push_str(&m.client_msg_id);
    k
}

/// A stable fingerprint of what a retry must repeat exactly.
fn fingerprint(m: &NewMessage) -> u64 {
    let mut bytes = Vec::with_capacity(m.text.len() + 32);
    bytes.extend_from_slice(m.kind.as_str().as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&(m.text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(m.text.as_bytes());
    bytes.extend_from_slice(&m.target.map_or(u64::MAX, |t| t).to_le_bytes());
    if let Some(media) = &m.media {
        bytes.extend_from_slice(media.url.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(media.mime.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&media.size.to_le_bytes());
    }
    fnv1a_64(&bytes)
}

impl Owner {
    /// `push`: tell members' owners about committed DM and group messages
    /// (a push webhook is configured).
    pub(crate) fn new(push: bool, max_group_members: usize) -> Owner {
        Owner {
            channels: HashMap::new(),
            ready: Vec::new(),
            committing: false,
            push,
            max_group_members,
        }
    }

    /// Whether nothing is pending or being committed (for shutdown).
    pub(crate) fn is_quiet(&self) -> bool {
        !self.committing && self.ready.is_empty()
    }

    fn channel(&mut self, name: &Arc<str>) -> &mut OwnedChannel {
        self.channels
            .entry(name.clone())
            .or_insert_with(|| OwnedChannel::new(name))
    }

    /// For a group channel: whether `user` may use it now (Ok), must wait
    /// for the members to load (the request is kept), or is refused.
    fn gate(
        &mut self,
        name: &Arc<str>,
        user: &str,
        item: Gated,
        fx: &mut Effects,
    ) -> Option<Gated> {
        if !name.starts_with(storage::GROUP_PREFIX) {
            return Some(item);
        }
        let oc = self.channel(name);
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
        channel: Arc<str>,
        result: Result<Option<Vec<String>>, StoreFailure>,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return;
        };
        let gated = std::mem::take(&mut oc.gated);
        match result {
            Ok(members) => {
                oc.membership = match members {
                    None => Membership::NoGroup,
                    Some(m) => Membership::Members(m.into_iter().map(Arc::from).collect()),
                };
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
            Err(f) => {
                let msg = format!("store unavailable: {}", f.message);
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
        if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
            self.channels.remove(&channel);
        }
    }

    /// A membership change (HTTP API) for a group this shard owns.
    pub(crate) fn on_group(
        &mut self,
        channel: Arc<str>,
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
        channel: Arc<str>,
        op: GroupOp,
        reply: Reply,
        result: Result<bool, StoreFailure>,
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
            Err(f) => {
                fx.reply_error(&reply, f.code, &f.message);
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
                for shard in subscriber_shards(oc.subscribers) {
                    fx.send(
                        shard,
                        ShardMsg::Kick {
                            channel: channel.clone(),
                            user: user.clone(),
                        },
                    );
                }
            }
        }
        crate::discovery::announce(fx, added, &channel);
        let mut frame = Vec::new();
        response::group_done(&mut frame, reply.id.as_deref(), &channel);
        fx.send(
            reply.to.shard,
            ShardMsg::ToConn {
                conn: reply.to.conn,
                frame,
                send_done: false,
            },
        );
        if self.channels.get(&channel).is_some_and(OwnedChannel::idle) {
            self.channels.remove(&channel);
        }
    }

    fn mark_ready(&mut self, name: &Arc<str>, fx: &mut Effects) {
        let oc = self.channel(name);
        if !oc.queued && !oc.committing && !oc.pending.is_empty() {
            oc.queued = true;
            self.ready.push(name.clone());
            if !self.committing {
                fx.io.push(IoJob::Commit);
            }
        }
    }

    /// A send arrived (from any shard).
    pub(crate) fn on_send(&mut self, req: SendReq, fx: &mut Effects) {
        let channel = req.channel.clone();
        let user = req.msg.from.clone();
        let Some(Gated::Send(req)) = self.gate(&channel, &user, Gated::Send(req), fx) else {
            return;
        };
        let key = dedup_key(&req.msg);
        let fp = fingerprint(&req.msg);
        let oc = self.channel(&req.channel);
        if let Some(inflight) = oc.in_flight.get_mut(&key) {
            if inflight.fingerprint == fp {
                inflight.waiters.push(req.reply);
            } else {
                fx.send_error(
                    &req.reply,
                    ErrorCode::Conflict,
                    "client_msg_id was already used for a different message",
                );
            }
            return;
        }
        oc.in_flight.insert(
            key.clone(),
            InFlight {
                fingerprint: fp,
                waiters: Vec::new(),
            },
        );
        oc.pending.push(Pending {
            msg: req.msg,
            reply: req.reply,
            key,
        });
        self.mark_ready(&req.channel, fx);
    }

    /// A user is typing: forwards one `typing` to every shard with members,
    /// at most one per user and channel per `window_ms`. Never stored.
    pub(crate) fn on_typing(
        &mut self,
        channel: Arc<str>,
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
        if channel.starts_with(storage::GROUP_PREFIX) {
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
        let mut frame = Vec::new();
        response::typing(&mut frame, &channel, user);
        let frame: Arc<[u8]> = Arc::from(frame);
        for shard in subscriber_shards(oc.subscribers) {
            fx.send(
                shard,
                ShardMsg::TypingNotice {
                    channel: channel.clone(),
                    except: from.to,
                    frame: frame.clone(),
                },
            );
        }
    }

    /// A shard registers its replica for `conn`'s join and wants the head.
    pub(crate) fn on_subscribe(&mut self, waiter: JoinWaiter, channel: Arc<str>, fx: &mut Effects) {
        let user = waiter.user.clone();
        let Some(Gated::Subscribe(waiter, channel)) = self.gate(
            &channel.clone(),
            &user,
            Gated::Subscribe(waiter, channel),
            fx,
        ) else {
            return;
        };
        let oc = self.channel(&channel);
        oc.subscribers |= 1 << waiter.shard.0;
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
    pub(crate) fn on_member_gone(&mut self, channel: &Arc<str>, user: &str) {
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
        channel: &Arc<str>,
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

    /// `presence` of a group by `user`: members only (checked here, from the
    /// loaded members); every shard is then asked which members it holds.
    pub(crate) fn on_presence_group(
        &mut self,
        reply: QueryRef,
        channel: Arc<str>,
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
        let ask = Ask::Users(Arc::new(members));
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

    /// A shard has no more members of `channel`.
    pub(crate) fn on_unsubscribe(&mut self, from: ShardId, channel: &Arc<str>) {
        if let Some(oc) = self.channels.get_mut(channel) {
            oc.subscribers &= !(1 << from.0);
            if oc.idle() {
                self.channels.remove(channel);
            }
        }
    }

    /// The store answered a head load.
    pub(crate) fn on_head_loaded(
        &mut self,
        channel: Arc<str>,
        result: Result<Seq, StoreFailure>,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&channel) else {
            return;
        };
        oc.loading = false;
        match result {
            Ok(head) => {
                // A commit that completed meanwhile is at least as new.
                let head = oc.head.map_or(head.0, |h| h.max(head.0));
                oc.head = Some(head);
                // While a commit is in flight the loaded head may already
                // include it: answering now could put `joined` (and a replay)
                // ahead of that commit's acks. Its completion answers them.
                if !oc.committing {
                    flush_join_waiters(&channel, oc, fx);
                }
            }
            Err(f) => {
                let message = format!("store unavailable: {}", f.message);
                for w in oc.join_waiters.drain(..) {
                    fail_join(fx, w, channel.clone(), ErrorCode::Unavailable, &message);
                }
            }
        }
        if oc.idle() {
            self.channels.remove(&channel);
        }
    }

    /// Takes everything ready into one commit: at most `max` messages, `ts`
    /// set to `now_ms`. None when a commit is in flight or nothing is ready.
    pub(crate) fn take_commit(
        &mut self,
        max: usize,
        max_bytes: usize,
        now_ms: u64,
    ) -> Option<(CommitJob, Vec<ChannelAppend>)> {
        if self.committing || self.ready.is_empty() {
            return None;
        }
        let mut job = CommitJob {
            channels: Vec::new(),
        };
        let mut appends = Vec::new();
        let mut room = max;
        let mut bytes_room = max_bytes;
        let mut rest = Vec::new();
        for name in std::mem::take(&mut self.ready) {
            let Some(oc) = self.channels.get_mut(&name) else {
                continue;
            };
            if room == 0 || bytes_room == 0 {
                rest.push(name);
                continue;
            }
            oc.queued = false;
            // Whole messages within both limits; always at least one per
            // commit so that one large message cannot stall a channel.
            let mut take = 0;
            for p in oc.pending.iter().take(room) {
                let size = p.msg.text.len() + 256;
                if take > 0 && size > bytes_room {
                    break;
                }
                bytes_room = bytes_room.saturating_sub(size);
                take += 1;
            }
            room -= take;
            let ts = now_ms.max(oc.last_ts);
            oc.last_ts = ts;
            let mut metas = Vec::with_capacity(take);
            let mut messages = Vec::with_capacity(take);
            for p in oc.pending.drain(..take) {
                let mut msg = p.msg;
                msg.ts = ts;
                messages.push(msg);
                metas.push((p.reply, p.key));
            }
            oc.committing = true;
            job.channels.push((name.clone(), metas));
            appends.push(ChannelAppend {
                channel: name.to_string(),
                messages,
            });
        }
        for name in &rest {
            if let Some(oc) = self.channels.get_mut(name) {
                oc.queued = true;
            }
        }
        self.ready = rest;
        if appends.is_empty() {
            return None;
        }
        self.committing = true;
        Some((job, appends))
    }

    /// The store answered a commit. Acks go out before the batch, on the same
    /// queues, so a sender sees its `ack` before its own `msg`.
    pub(crate) fn on_committed(
        &mut self,
        job: CommitJob,
        appends: Vec<ChannelAppend>,
        result: Result<Vec<ChannelOutcome>, StoreFailure>,
        fx: &mut Effects,
    ) {
        self.committing = false;
        match result {
            Ok(outcomes) => {
                for (((name, metas), append), outcome) in
                    job.channels.into_iter().zip(appends).zip(outcomes)
                {
                    self.channel_committed(name, metas, append, outcome, fx);
                }
            }
            Err(failure) => {
                for (name, metas) in job.channels {
                    self.channel_failed(name, metas, &failure, fx);
                }
            }
        }
        if !self.ready.is_empty() {
            fx.io.push(IoJob::Commit);
        }
    }

    fn channel_committed(
        &mut self,
        name: Arc<str>,
        metas: Vec<MessageMeta>,
        append: ChannelAppend,
        outcome: ChannelOutcome,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&name) else {
            return;
        };
        oc.committing = false;
        let mut batch: Option<Batch> = None;
        for (((reply, key), msg), result) in
            metas.into_iter().zip(append.messages).zip(outcome.outcomes)
        {
            let waiters = oc
                .in_flight
                .remove(&key)
                .map(|f| f.waiters)
                .unwrap_or_default();
            match result {
                AppendOutcome::Stored { seq, ts } => {
                    fx.ack(&reply, &name, &msg.client_msg_id, seq.0, ts, false);
                    for w in &waiters {
                        fx.ack(w, &name, &msg.client_msg_id, seq.0, ts, true);
                    }
                    if self.push {
                        notify_members(&name, &oc.membership, &msg, seq.0, fx);
                    }
                    crate::discovery::announce(
                        fx,
                        crate::discovery::first_dm_users(&name, seq.0),
                        &name,
                    );
                    let b = batch.get_or_insert_with(|| Batch::new(name.clone(), seq.0));
                    debug_assert_eq!(b.first_seq + b.len() as u64, seq.0, "store seqs are dense");
                    if let Some(t) = msg.target {
                        b.note_target(t);
                    }
                    let stored = StoredMessage::from_new(seq, &msg);
                    b.push_frame(|out| {
                        response::msg(out, &name, &response::MsgView::from_stored(&stored));
                    });
                }
                AppendOutcome::Duplicate { seq, ts } => {
                    fx.ack(&reply, &name, &msg.client_msg_id, seq.0, ts, true);
                    for w in &waiters {
                        fx.ack(w, &name, &msg.client_msg_id, seq.0, ts, true);
                    }
                }
                AppendOutcome::Rejected { reason } => {
                    let code = match reason {
                        RejectReason::NotAuthor => ErrorCode::Forbidden,
                        RejectReason::TargetMissing | RejectReason::TargetDeleted => {
                            ErrorCode::NotFound
                        }
                        RejectReason::TargetIsEvent => ErrorCode::BadRequest,
                    };
                    let text = reason.to_string();
                    for r in std::iter::once(&reply).chain(&waiters) {
                        fx.send_error(r, code, &text);
                    }
                }
                AppendOutcome::Conflict { .. } => {
                    for r in std::iter::once(&reply).chain(&waiters) {
                        fx.send_error(
                            r,
                            ErrorCode::Conflict,
                            "client_msg_id was already used for a different message",
                        );
                    }
                }
            }
        }
        oc.head = Some(outcome.head.0);
        fx.stats_committed += batch.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(b) = batch {
            let b = Arc::new(b);
            for shard in subscriber_shards(oc.subscribers) {
                fx.send(shard, ShardMsg::Batch(b.clone()));
            }
        }
        flush_join_waiters(&name, oc, fx);
        let more = !oc.pending.is_empty();
        let idle = oc.idle();
        if more {
            self.mark_ready(&name, fx);
        } else if idle {
            self.channels.remove(&name);
        }
    }

    fn channel_failed(
        &mut self,
        name: Arc<str>,
        metas: Vec<MessageMeta>,
        failure: &StoreFailure,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&name) else {
            return;
        };
        oc.committing = false;
        if !failure.retryable {
            tracing::error!(channel = %name, error = %failure.message, "commit failed for good");
        }
        let message = format!("message not stored, retry later: {}", failure.message);
        for (reply, key) in metas {
            let waiters = oc
                .in_flight
                .remove(&key)
                .map(|f| f.waiters)
                .unwrap_or_default();
            for r in std::iter::once(&reply).chain(&waiters) {
                fx.send_error(r, ErrorCode::Unavailable, &message);
            }
        }
        // The store is the authority: reload the head before anyone relies
        // on it again.
        oc.head = None;
        if !oc.loading {
            oc.loading = true;
            fx.io.push(IoJob::LoadHead(name.clone()));
        }
        if !oc.pending.is_empty() {
            self.mark_ready(&name, fx);
        }
    }
}

/// Tells the owner shard of every other member of a DM or group about a
/// committed message (it pushes to members with no online device).
fn notify_members(
    channel: &Arc<str>,
    membership: &Membership,
    msg: &NewMessage,
    seq: u64,
    fx: &mut Effects,
) {
    let others: Vec<Arc<str>> = match (crate::protocol::names::parse_channel(channel), membership) {
        (Ok(crate::protocol::names::ChannelName::Dm { a, b }), _) => {
            vec![Arc::from(if a == msg.from { b } else { a })]
        }
        (_, Membership::Members(m)) => m.iter().filter(|u| ***u != *msg.from).cloned().collect(),
        _ => return,
    };
    let notice = crate::push::Notice {
        channel: channel.clone(),
        seq,
        from: Arc::from(msg.from.as_str()),
        preview: crate::push::preview(&msg.text, 200),
    };
    for user in others {
        let to = crate::hash::owner_of(&user, fx.nr_shards);
        fx.send(
            to,
            ShardMsg::Notify {
                user,
                notice: notice.clone(),
            },
        );
    }
}

/// The shards whose bits are set in a subscriber mask.
fn subscriber_shards(mut mask: u64) -> impl Iterator<Item = ShardId> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let shard = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(ShardId(shard))
    })
}

/// Refuses a waiting join: its shard forgets the join, its request gets the
/// error.
fn fail_join(fx: &mut Effects, w: JoinWaiter, channel: Arc<str>, code: ErrorCode, msg: &str) {
    let reply = Reply {
        to: ConnRef {
            shard: w.shard,
            conn: w.conn,
        },
        id: w.id,
    };
    fx.send(
        w.shard,
        ShardMsg::JoinFailed {
            channel,
            conn: w.conn,
            gen: w.gen,
        },
    );
    fx.reply_error(&reply, code, msg);
}

fn flush_join_waiters(channel: &Arc<str>, oc: &mut OwnedChannel, fx: &mut Effects) {
    let Some(head) = oc.head else {
        return;
    };
    for w in std::mem::take(&mut oc.join_waiters) {
        send_joined(channel, oc, w, head, fx);
    }
}

/// Answers a join with the head (on the queue that carries the channel's
/// batches); a room counts the user's connection for presence until the
/// connection's shard says `MemberGone`.
fn send_joined(
    channel: &Arc<str>,
    oc: &mut OwnedChannel,
    w: JoinWaiter,
    head: u64,
    fx: &mut Effects,
) {
    if channel.starts_with(ROOM_PREFIX) {
        oc.room_users.add(&w.user);
    }
    fx.send(
        w.shard,
        ShardMsg::Joined {
            channel: channel.clone(),
            conn: w.conn,
            gen: w.gen,
            head,
            since: w.since,
            id: w.id,
            user: w.user,
        },
    );
}

/// Channels whose joined users the owner counts for presence.
pub(crate) const ROOM_PREFIX: &str = "room:";

/// A presence query the owner refuses (not a member, no such group).
fn presence_failed(fx: &mut Effects, reply: QueryRef, code: ErrorCode, msg: &str) {
    fx.send(
        reply.shard,
        ShardMsg::PresenceFailed {
            query: reply.query,
            code,
            message: msg.into(),
        },
    );
}
