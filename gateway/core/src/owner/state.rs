//! The channel owner's state: one [`OwnedChannel`] per channel this shard
//! owns (while it has anything: subscribers, sends pending or committing,
//! joins waiting, a group's loaded members), the commit in flight, and the
//! small helpers every part of the owner uses.

use std::sync::Arc;

use chat_model::{Channel, NewMessage, Seq};
use chat_proto::ErrorCode;

use crate::hash::fnv1a_64;
use crate::maps::{Map, Set};
use crate::presence::RoomUsers;
use crate::vocab::{
    ConnId, ConnRef, Effects, GroupOp, QueryRef, Reply, SendReq, ShardId, ShardMsg,
};

/// What the owner knows of a group channel's members.
#[derive(Debug)]
pub(super) enum Membership {
    /// Not loaded yet (requests wait in `gated`).
    Unknown,
    /// Loaded: the group does not exist.
    NoGroup,
    /// Loaded: its members.
    Members(Set<Arc<str>>),
}

/// A request that waits for a group's members to load.
#[derive(Debug)]
pub(super) enum Gated {
    Send(SendReq),
    Subscribe(JoinWaiter, Channel),
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
    pub(crate) since: Option<Seq>,
    pub(crate) id: Option<Box<str>>,
}

/// A dedup key in flight: its content fingerprint and the retries waiting
/// for the original's answer.
pub(super) struct InFlight {
    pub(super) fingerprint: u64,
    pub(super) waiters: Vec<Reply>,
}

pub(super) struct Pending {
    pub(super) msg: NewMessage,
    pub(super) reply: Reply,
    pub(super) key: String,
}

/// Whether this node's subscription to a channel is recorded in the
/// cluster (cluster mode only; see `docs/architecture.md`, "Many nodes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NodeSub {
    /// Not recorded (or not cluster mode).
    Off,
    /// Being recorded: joins wait.
    Pending,
    /// Recorded with this token: commits of other nodes leave notices.
    On(u64),
}

pub(super) struct OwnedChannel {
    /// Group channels only: the members, authoritative for this process.
    pub(super) membership: Membership,
    /// Requests waiting for `membership` to load.
    pub(super) gated: Vec<Gated>,
    /// Set while the requests that waited for a load are checked: a miss
    /// then is refused, not reloaded again (cluster mode).
    pub(super) members_fresh: bool,
    /// Last committed seq, once known (loaded from the store or learned from
    /// a commit).
    pub(super) head: Option<Seq>,
    pub(super) loading: bool,
    pub(super) pending: Vec<Pending>,
    pub(super) committing: bool,
    pub(super) queued: bool,
    pub(super) in_flight: Map<String, InFlight>,
    /// Bit i set: shard i has a replica with members.
    pub(super) subscribers: u64,
    /// When each user's last `typing` was forwarded (ms).
    pub(super) typing: Map<Arc<str>, u64>,
    /// Timestamp of the last message taken into a commit: `ts` never goes
    /// backwards within a channel, even if the clock does.
    pub(super) last_ts: u64,
    pub(super) join_waiters: Vec<JoinWaiter>,
    /// Membership adds written to the store and not answered yet (they
    /// count against `max_group_members` before they land).
    pub(super) adds_in_flight: usize,
    /// Rooms only: the users with a joined connection (presence queries).
    pub(super) room_users: RoomUsers,
    /// This node's subscription in the cluster.
    pub(super) node_sub: NodeSub,
}

impl OwnedChannel {
    pub(super) fn new(name: &Channel) -> OwnedChannel {
        let is_group = name.starts_with(chat_model::GROUP_PREFIX);
        OwnedChannel {
            membership: if is_group {
                Membership::Unknown
            } else {
                Membership::NoGroup
            },
            gated: Vec::new(),
            members_fresh: false,
            head: None,
            loading: false,
            pending: Vec::new(),
            committing: false,
            queued: false,
            in_flight: Map::default(),
            subscribers: 0,
            join_waiters: Vec::new(),
            typing: Map::default(),
            last_ts: 0,
            adds_in_flight: 0,
            room_users: RoomUsers::default(),
            node_sub: NodeSub::Off,
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.gated.is_empty()
            && self.subscribers == 0
            && self.pending.is_empty()
            && !self.committing
            && !self.loading
            && self.join_waiters.is_empty()
            && self.in_flight.is_empty()
            && self.adds_in_flight == 0
            && self.room_users.is_empty()
            && self.node_sub != NodeSub::Pending
    }
}

/// Who waits for one message of a commit: the sender and the dedup key.
pub(super) type MessageMeta = (Reply, String);

/// The metadata of the commit in flight, matching its `ChannelAppend`s.
pub(super) struct InFlightCommit {
    pub(super) channels: Vec<(Channel, Vec<MessageMeta>)>,
}

/// All channels this shard owns.
pub(crate) struct Owner {
    pub(super) push: bool,
    /// Most members of a group (`max_group_members`), checked on every add.
    pub(super) max_group_members: usize,
    pub(super) channels: Map<Channel, OwnedChannel>,
    pub(super) ready: Vec<Channel>,
    /// The commit in flight (one per shard, hence per channel).
    pub(super) committing: Option<InFlightCommit>,
    /// Cluster mode: this node's id (channels with subscribers are
    /// subscribed in the cluster, other nodes' commits arrive as
    /// `RemoteCommit`). `None`: the only gateway on its store.
    pub(crate) node: Option<Arc<str>>,
    /// The last subscription token handed out.
    pub(super) last_token: u64,
}

pub(super) fn dedup_key(m: &NewMessage) -> String {
    let mut k = String::with_capacity(m.from.len() + m.device.len() + m.client_msg_id.len() + 2);
    k.push_str(&m.from);
    k.push('\0');
    k.push_str(&m.device);
    k.push('\0');
    k.push_str(&m.client_msg_id);
    k
}

/// A stable fingerprint of what a retry must repeat exactly.
pub(super) fn fingerprint(m: &NewMessage) -> u64 {
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
            channels: Map::default(),
            ready: Vec::new(),
            committing: None,
            push,
            max_group_members,
            node: None,
            last_token: 0,
        }
    }

    /// Whether nothing is pending or being committed (for shutdown).
    pub(crate) fn is_quiet(&self) -> bool {
        self.committing.is_none() && self.ready.is_empty()
    }

    pub(super) fn channel(&mut self, name: &Channel) -> &mut OwnedChannel {
        self.channels
            .entry(name.clone())
            .or_insert_with(|| OwnedChannel::new(name))
    }
}

/// Tells the owner shard of every other member of a DM or group about a
/// committed message (it pushes to members with no online device).
pub(super) fn notify_members(
    channel: &Channel,
    membership: &Membership,
    msg: &NewMessage,
    seq: Seq,
    fx: &mut Effects,
) {
    let others: Vec<Arc<str>> = match (chat_model::names::parse_channel(channel), membership) {
        (Ok(chat_model::names::ChannelName::Dm { a, b }), _) => {
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
pub(super) fn subscriber_shards(mut mask: u64) -> impl Iterator<Item = ShardId> {
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
pub(super) fn fail_join(
    fx: &mut Effects,
    w: JoinWaiter,
    channel: Channel,
    code: ErrorCode,
    msg: &str,
) {
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

pub(super) fn flush_join_waiters(channel: &Channel, oc: &mut OwnedChannel, fx: &mut Effects) {
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
pub(super) fn send_joined(
    channel: &Channel,
    oc: &mut OwnedChannel,
    w: JoinWaiter,
    head: Seq,
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
pub(super) fn presence_failed(fx: &mut Effects, reply: QueryRef, code: ErrorCode, msg: &str) {
    fx.send(
        reply.shard,
        ShardMsg::PresenceFailed {
            query: reply.query,
            code,
            message: msg.into(),
        },
    );
}
