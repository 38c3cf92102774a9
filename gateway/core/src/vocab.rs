//! The vocabulary the shards speak: who is addressed ([`ShardId`],
//! [`ConnId`], [`ConnRef`], [`Reply`]), what crosses between shards
//! ([`ShardMsg`]), what a shard asks its runtime to do ([`IoJob`], and the
//! answer it gets back, [`JobDone`]), a reply to one request ([`Answer`]),
//! and the bag a handler fills ([`Effects`]).
//!
//! Queues between shards are FIFO per (from, to) pair, and an owner sends a
//! shard's acks, `joined` heads and batches on the same queue: that order is
//! what makes "ack before own msg" and "no batch slips between the head and
//! the live stream" hold.

use std::collections::HashMap;
use std::sync::Arc;

use chat_model::{Channel, ChannelAppend, ChannelOutcome, Page, ReadLimit, ReadRange, Seq};
use chat_proto::ErrorCode;

use chat_model::NewMessage;
use serde::Serialize;

use crate::batch::Batch;
use crate::error::JobError;

pub use crate::hash::ShardId;

/// A connection's id, unique within its shard for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A connection anywhere in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// Its shard.
    pub shard: ShardId,
    /// Its id on that shard.
    pub conn: ConnId,
}

/// Where the answer to a request goes.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The requesting connection.
    pub to: ConnRef,
    /// The request's `id`, raw JSON, echoed in the reply.
    pub id: Option<Box<str>>,
}

/// The answer to one request, typed. The connection's shard turns it into
/// what the connection speaks: a WebSocket frame (or SSE event) in its
/// outbox, or, for an HTTP call, a value the HTTP API maps to a response.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// A send, edit or delete was stored (or was already).
    Ack {
        /// The channel.
        channel: Channel,
        /// The client's id of the message.
        client_msg_id: String,
        /// Its seq.
        seq: Seq,
        /// Its commit time (ms since the epoch).
        ts: u64,
        /// A retry of a message stored earlier.
        duplicate: bool,
    },
    /// The request failed.
    Error {
        /// What the client is told.
        code: ErrorCode,
        /// A plain explanation.
        message: String,
    },
    /// A page of history; the messages are already cut to fit one frame.
    History {
        /// The channel.
        channel: Channel,
        /// The messages, ascending.
        page: Page,
    },
    /// Who is online in a channel.
    Presence {
        /// The channel.
        channel: Channel,
        /// The first 100, sorted.
        online: Vec<Arc<str>>,
        /// How many.
        count: usize,
    },
    /// A membership change was stored.
    GroupDone {
        /// The group.
        channel: Channel,
    },
    /// Done, nothing to say (an HTTP `read`: 204).
    Done,
    /// Unread counts per channel.
    Unread(Vec<(Channel, u64)>),
    /// The user's channels (`GET /v1/me/channels`).
    Channels(Vec<ChannelInfo>),
}

impl Answer {
    /// An error answer.
    #[must_use]
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Answer {
        Answer::Error {
            code,
            message: message.into(),
        }
    }
}

/// A send (or edit/delete) forwarded to the channel's owner.
#[derive(Debug)]
pub struct SendReq {
    /// Channel (validated; DMs checked; a group's membership is checked by
    /// its owner).
    pub channel: Channel,
    /// Who gets the ack.
    pub reply: Reply,
    /// The message; `ts` is set at commit.
    pub msg: NewMessage,
}

/// A change of a group's membership, requested by a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOp {
    /// Create the group with these members (the creator included).
    Create(Vec<String>),
    /// Add a member (by a member).
    Add(String),
    /// Remove a member (by a member; members may remove themselves).
    Remove(String),
}

/// What a presence query asks each shard.
#[derive(Clone, Debug)]
pub enum Ask {
    /// Which of these users (at most a group's size) have a connection.
    Users(Arc<Vec<String>>),
}

/// Where a query's answer goes.
#[derive(Clone, Copy, Debug)]
pub struct QueryRef {
    /// The querying shard.
    pub shard: ShardId,
    /// Its query id there.
    pub query: u64,
}

/// One entry of `GET /v1/me/channels`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel name.
    pub channel: Channel,
    /// `dm` or `group`.
    pub kind: &'static str,
    /// The members, sorted (a DM: its two users).
    pub members: Vec<String>,
    /// Last committed seq.
    pub head: Seq,
    /// The user's read cursor (reports not written yet included).
    pub read: Seq,
    /// Messages above `read` (`edit`/`delete` events not counted), as in
    /// `GET /v1/me/unread`.
    pub unread: u64,
}

/// A `read` cursor that moved, and whom to tell: (channel, user, seq, the
/// other members of the DM or group).
pub type ReadMoved = (Channel, String, Seq, Vec<String>);

/// Everything that crosses between shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// Connection shard → owner: sequence this message.
    Send(Box<SendReq>),
    /// Connection shard → owner: `conn` joins; register the shard's replica
    /// and answer with the head.
    Subscribe {
        /// The channel.
        channel: Channel,
        /// The joining connection (on the sending shard).
        conn: ConnId,
        /// Which join of this connection (a leave and rejoin makes a new one).
        gen: u64,
        /// Who joins (group channels check membership at the owner).
        user: Arc<str>,
        /// The last seq the client has.
        since: Option<Seq>,
        /// The request id.
        id: Option<Box<str>>,
    },
    /// Connection shard → owner: the shard has no members of the channel left.
    Unsubscribe {
        /// The channel.
        channel: Channel,
    },
    /// Owner → connection shard: the head for a join. For a room the owner
    /// now counts `user` as present until `MemberGone`.
    Joined {
        /// The channel.
        channel: Channel,
        /// The joining connection.
        conn: ConnId,
        /// Its join generation.
        gen: u64,
        /// The channel's head when the join was registered.
        head: Seq,
        /// As asked.
        since: Option<Seq>,
        /// The request id.
        id: Option<Box<str>>,
        /// Who joined.
        user: Arc<str>,
    },
    /// Connection shard → a room's owner: a connection of `user` that was
    /// answered `Joined` left the room (leave, close, refused `since`).
    MemberGone {
        /// The room.
        channel: Channel,
        /// Whose connection.
        user: Arc<str>,
    },
    /// Owner → connection shard: the join could not be served (its error
    /// answer follows).
    JoinFailed {
        /// The channel.
        channel: Channel,
        /// The connection.
        conn: ConnId,
        /// Its join generation.
        gen: u64,
    },
    /// Any shard → connection shard: the answer to a request of `conn`;
    /// `send_done` when it answers a `send` (the connection's count of sends
    /// in flight drops).
    Answer {
        /// The connection.
        conn: ConnId,
        /// The request id to echo.
        id: Option<Box<str>>,
        /// The answer.
        answer: Answer,
        /// It answers a send.
        send_done: bool,
    },
    /// Any shard → connection shard: one ready event frame (`read`,
    /// `presence_update`, `channel_added`), shared by every recipient.
    ToConn {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Arc<[u8]>,
    },
    /// Owner → replica shard: newly committed messages, encoded once.
    Batch(Arc<Batch>),
    /// Runtime → owner shard: messages another gateway node committed to a
    /// channel this node subscribes to (read once from the store after its
    /// inbox notice), in seq order. The owner fans them out as a batch.
    RemoteCommit {
        /// The channel.
        channel: Channel,
        /// The messages, as stored (possibly fewer than were committed).
        messages: Vec<chat_model::StoredMessage>,
        /// The last seq the notices named: members page anything past
        /// `messages` up to it from the store.
        last: Seq,
    },
    /// Runtime → owner shard: another gateway node added or removed a
    /// member of this group (an inbox notice). The owner reloads the
    /// members, if it holds them, and kicks the removed as a local removal
    /// does.
    MembersChanged {
        /// The group channel.
        channel: Channel,
    },
    /// Owner → replica shard: the head moved to `head` but the batches were
    /// not delivered (the queue was full); members page from the store.
    Advanced {
        /// The channel.
        channel: Channel,
        /// Its head.
        head: Seq,
    },
    /// Connection shard → user's owner shard: a device connected.
    DeviceUp {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// The connection.
        conn: ConnRef,
        /// Process-wide open order: the larger stamp is the newer connection,
        /// whatever order the shards' messages arrive in.
        stamp: u64,
    },
    /// Connection shard → user's owner shard: a device's connection ended.
    DeviceDown {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// The connection that ended.
        conn: ConnRef,
    },
    /// Connection shard → owner: a user is typing in the channel.
    Typing {
        /// The channel.
        channel: Channel,
        /// Who types.
        user: Arc<str>,
        /// The typing connection, and the request id for an error answer
        /// (a non-member of a group).
        from: Reply,
    },
    /// Owner → replica shard: a `typing` frame for every local member of the
    /// channel except `except` (ephemeral: dropped for members over budget).
    TypingNotice {
        /// The channel.
        channel: Channel,
        /// The sender's connection.
        except: ConnRef,
        /// The frame.
        frame: Arc<[u8]>,
    },
    /// Inbox loop → the user's owner shard: another node changed the
    /// user's cluster-wide presence (cluster mode).
    RemotePresence {
        /// The user.
        user: Arc<str>,
        /// Online or offline.
        online: bool,
    },
    /// Inbox loop → the channel's owner shard: a user on another node types
    /// in the channel (cluster mode; already rate-limited there).
    RemoteTyping {
        /// The channel.
        channel: Channel,
        /// Who types.
        user: Arc<str>,
    },
    /// Any shard → every shard: which of the asked users have a connection
    /// here.
    PresenceAsk {
        /// Where the answer goes.
        reply: QueryRef,
        /// What is asked.
        ask: Ask,
    },
    /// Answer to `PresenceAsk` (count: none) or `PresenceRoom` (count: the
    /// room's total).
    PresenceAnswer {
        /// The query.
        query: u64,
        /// Users online (a room: the first 100).
        users: Vec<Arc<str>>,
        /// A room's total.
        count: Option<usize>,
    },
    /// A presence query refused by the group's owner.
    PresenceFailed {
        /// The query.
        query: u64,
        /// What the client is told.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// Connection shard → a room's owner: `presence` of the room.
    PresenceRoom {
        /// Where the answer goes.
        reply: QueryRef,
        /// The room.
        channel: Channel,
    },
    /// Connection shard → a group's owner: `presence` of the group by `user`
    /// (members only); the owner asks every shard, answers go to `reply`.
    PresenceGroup {
        /// Where the answers go.
        reply: QueryRef,
        /// The group.
        channel: Channel,
        /// Who asks.
        user: Arc<str>,
    },
    /// Any shard → every shard: `user`'s read cursors not written yet
    /// (unread counts see them at once).
    UnreadAsk {
        /// Where the answer goes.
        reply: QueryRef,
        /// Whose cursors.
        user: Arc<str>,
    },
    /// Answer to `UnreadAsk`: channel → pending read cursor.
    UnreadAnswer {
        /// The query.
        query: u64,
        /// The cursors.
        cursors: Vec<(Channel, Seq)>,
    },
    /// A channel's owner → a member's owner shard: a message the member
    /// should be pushed if no device of theirs is online.
    Notify {
        /// The member.
        user: Arc<str>,
        /// The message.
        notice: crate::push::Notice,
    },
    /// Any shard → a user's owner shard: one frame for every connection of
    /// the user (e.g. `read` events).
    ToUser {
        /// The user.
        user: Arc<str>,
        /// The frame.
        frame: Arc<[u8]>,
    },
    /// Connection shard → owner of a group: change its membership.
    Group {
        /// The group.
        channel: Channel,
        /// Who asks.
        actor: Arc<str>,
        /// The change.
        op: GroupOp,
        /// Where the answer goes.
        reply: Reply,
    },
    /// Owner → replica shards: `user` was removed from the group; its
    /// connections leave the channel.
    Kick {
        /// The group.
        channel: Channel,
        /// The removed member.
        user: Arc<str>,
    },
    /// User's owner shard → connection shard: close `conn` (e.g. 4009 replaced).
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The reason sent with it.
        reason: &'static str,
    },
}

/// Whose presence change an [`IoJob::PresenceFanout`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceScope {
    /// One node alone: the change is the user's; fan it out.
    Alone,
    /// Cluster mode, this node's devices: record the node-level transition
    /// in the store and fan out only when it changed the cluster-wide state.
    Node,
    /// Cluster mode, another node changed the cluster-wide state: fan out
    /// to this node's connections.
    Remote,
}

/// Blocking work a handler asks the runtime to do off the shard's thread:
/// store calls ([`crate::jobs::run_job`] runs them), a commit (the runtime's
/// committer), a push delivery (HTTP), a timer. Each is answered by one
/// [`JobDone`] given to [`crate::ShardState::on_job_done`].
#[derive(Debug)]
pub enum IoJob {
    /// The owner's group commit: append these channels' messages in one
    /// store call. At most one per shard is in flight.
    Append(Vec<ChannelAppend>),
    /// Load a channel's head for its owner.
    LoadHead(Channel),
    /// Record in the cluster that this node has subscribers of `channel`
    /// (with `token`) and load its head in the same transaction.
    NodeSubscribe {
        /// This node.
        node: Arc<str>,
        /// The channel.
        channel: Channel,
        /// Identifies this subscription (a later unsubscribe names it).
        token: u64,
    },
    /// Remove this node's subscription `token` to `channel`.
    NodeUnsubscribe {
        /// This node.
        node: Arc<str>,
        /// The channel.
        channel: Channel,
        /// The subscription.
        token: u64,
    },
    /// Read the page after `after` for a catching-up (conn, channel).
    CatchUp {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// Its join generation.
        gen: u64,
        /// The cursor.
        after: Seq,
        /// The read's limit.
        limit: ReadLimit,
    },
    /// Retry a catch-up after `after_ms` (a store error or an empty page).
    CatchUpLater {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// Its join generation.
        gen: u64,
        /// How long to wait, ms.
        after_ms: u64,
    },
    /// Wake the shard's tier timers after `after_ms` (members of `digest`
    /// and `counts` tiers are due then; `tiers.rs`). Answered by
    /// [`JobDone::TiersDue`].
    TierTimer {
        /// How long to wait, ms.
        after_ms: u64,
        /// The slot it wakes (a due time, ms), handed back.
        slot: u64,
    },
    /// Serve a `history` request (for a group: only to a member).
    History {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// Which page.
        range: ReadRange,
        /// Its limit.
        limit: ReadLimit,
        /// The request id.
        id: Option<Box<str>>,
        /// A group's member to check.
        member_check: Option<Arc<str>>,
    },
    /// Check group membership for an HTTP `read`, then record it.
    ReadCheck {
        /// The connection.
        conn: ConnId,
        /// The reader.
        user: Arc<str>,
        /// The group.
        channel: Channel,
        /// The cursor reported.
        seq: Seq,
        /// The request id.
        id: Option<Box<str>>,
    },
    /// Find whom to tell about a user's presence change (the other members
    /// of their DMs and groups); in a cluster, first record it (`scope`).
    PresenceFanout {
        /// The user.
        user: Arc<str>,
        /// The change.
        online: bool,
        /// Whose change it is.
        scope: PresenceScope,
    },
    /// Cluster mode: tell the other nodes subscribed to the channel that
    /// `user` types (ephemeral: inbox events, never history).
    Typing {
        /// The channel.
        channel: Channel,
        /// Who types.
        user: Arc<str>,
    },
    /// Cluster mode: tell the other nodes where the members to tell have
    /// devices that read cursors moved (ephemeral: inbox events, never
    /// history).
    ReadsToNodes {
        /// The cursors that moved, each with every member to tell.
        reads: Vec<storage::ReadPush>,
    },
    /// Cluster mode: which of a presence query's users are online on any
    /// node (the store's node-level presence); answered to `reply`.
    PresenceOnline {
        /// The query.
        reply: QueryRef,
        /// The users asked.
        users: Arc<Vec<String>>,
    },
    /// Deliver a push job to the webhook (retries, then dead letter).
    Push(crate::push::PushBatch),
    /// Count a user's unread messages (`GET /v1/me/unread`), or list their
    /// channels (`GET /v1/me/channels`), with the read cursors reported and
    /// not written yet.
    Unread {
        /// The HTTP call.
        conn: ConnId,
        /// The user.
        user: Arc<str>,
        /// Cursors not written yet.
        pending: HashMap<Channel, Seq>,
        /// List the channels with their counts.
        channels: bool,
    },
    /// Write the coalesced read and delivered cursors (one store write).
    FlushCursors {
        /// Read cursors.
        reads: Vec<chat_model::ReadUpdate>,
        /// Delivered cursors.
        delivered: Vec<chat_model::DeliveredUpdate>,
    },
    /// Load a group's members for its owner.
    LoadMembers(Channel),
    /// Write a membership change for the owner.
    GroupWrite {
        /// The group.
        channel: Channel,
        /// The change.
        op: GroupOp,
        /// Where the answer goes.
        reply: Reply,
    },
}

/// The result of an [`IoJob`].
#[derive(Debug)]
pub enum JobDone {
    /// The commit finished (the appends come back so the owner can encode
    /// what was stored without having kept a copy).
    Appended {
        /// The appends as given.
        appends: Vec<ChannelAppend>,
        /// One outcome per append.
        result: Result<Vec<ChannelOutcome>, JobError>,
    },
    /// This node's subscription to a channel was recorded; the head read
    /// with it.
    NodeSubscribed {
        /// The channel.
        channel: Channel,
        /// The subscription.
        token: u64,
        /// The head.
        result: Result<Seq, JobError>,
    },
    /// A subscription was removed (or the removal failed: the cluster
    /// forgets it when the node stops).
    NodeUnsubscribed {
        /// The channel.
        channel: Channel,
        /// Whether it was removed.
        result: Result<(), JobError>,
    },
    /// A head was loaded.
    HeadLoaded {
        /// The channel.
        channel: Channel,
        /// The head.
        result: Result<Seq, JobError>,
    },
    /// A catch-up page was read.
    CatchUpPage {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// Its join generation.
        gen: u64,
        /// The page.
        result: Result<Page, JobError>,
    },
    /// A catch-up's retry timer fired.
    CatchUpRetry {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// Its join generation.
        gen: u64,
    },
    /// A [`IoJob::TierTimer`] fired.
    TiersDue {
        /// Its slot: due now, whatever the clock says (a timer that fires
        /// a little before the shard's clock reaches the slot must not
        /// leave it waiting with no timer).
        slot: u64,
    },
    /// A `history` page was read.
    History {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: Channel,
        /// The request id.
        id: Option<Box<str>>,
        /// Read backwards (the latest page, `before`): keep the newest when
        /// cutting it to a frame.
        keep_newest: bool,
        /// The page.
        result: Result<Page, JobError>,
    },
    /// An HTTP `read`'s membership check finished.
    ReadChecked {
        /// The connection.
        conn: ConnId,
        /// The reader.
        user: Arc<str>,
        /// The group.
        channel: Channel,
        /// The cursor reported.
        seq: Seq,
        /// The request id.
        id: Option<Box<str>>,
        /// Member or not.
        result: Result<(), JobError>,
    },
    /// The members to tell about a presence change were found: (channel,
    /// the other members).
    PresenceTargets {
        /// The user.
        user: Arc<str>,
        /// The change.
        online: bool,
        /// Whose change it was.
        scope: PresenceScope,
        /// Whom to tell.
        result: Result<Vec<(Channel, Vec<String>)>, JobError>,
    },
    /// A push job finished (delivered or dead-lettered).
    Pushed,
    /// A typing event went to the other nodes (or failed: it is ephemeral).
    TypingSent,
    /// Read pushes went to the other nodes (or failed: they are ephemeral).
    ReadsSent,
    /// The cluster's answer to a presence query (empty when it failed:
    /// the query then shows this node's users only).
    PresenceOnline {
        /// The query.
        reply: QueryRef,
        /// Those online on some node.
        users: Vec<Arc<str>>,
    },
    /// Unread counts were read.
    Unread {
        /// The HTTP call.
        conn: ConnId,
        /// The counts.
        result: Result<Vec<(Channel, u64)>, JobError>,
    },
    /// The channel list was read.
    Channels {
        /// The HTTP call.
        conn: ConnId,
        /// The list.
        result: Result<Vec<ChannelInfo>, JobError>,
    },
    /// The coalesced cursors were written (or not: they are retried).
    CursorsFlushed {
        /// The `read` cursors that moved, with whom to tell.
        result: Result<Vec<ReadMoved>, JobError>,
        /// What was written, for a retry after a failure.
        retry: (
            Vec<chat_model::ReadUpdate>,
            Vec<chat_model::DeliveredUpdate>,
        ),
    },
    /// A group's members were loaded.
    MembersLoaded {
        /// The group.
        channel: Channel,
        /// Its members (`None`: no such group).
        result: Result<Option<Vec<String>>, JobError>,
    },
    /// A membership change was written.
    GroupWritten {
        /// The group.
        channel: Channel,
        /// The change.
        op: GroupOp,
        /// Where the answer goes.
        reply: Reply,
        /// Written (`true`: the store changed; `false`: it already was so).
        result: Result<bool, JobError>,
    },
}

/// What a handler asks the runtime to do.
#[derive(Default)]
pub struct Effects {
    /// Messages to shards, in order (this shard's own included: the runtime
    /// hands them back to this shard after the current handler, so local and
    /// remote paths are the same).
    pub out: Vec<(ShardId, ShardMsg)>,
    /// Blocking work to start.
    pub io: Vec<IoJob>,
    /// The owner has messages ready to commit: the runtime calls
    /// [`crate::ShardState::take_commit`] once the current turn's work is in
    /// (so everything that arrived in the turn joins one commit).
    pub commit_ready: bool,
    /// Messages committed (for stats).
    pub stats_committed: u64,
    /// Number of shards (for owner lookups by handlers that only see these
    /// effects).
    pub nr_shards: usize,
}

impl Effects {
    /// Sends `msg` to shard `to`.
    pub fn send(&mut self, to: ShardId, msg: ShardMsg) {
        self.out.push((to, msg));
    }

    /// One shared frame for every connection of each of `users` (through
    /// each user's owner shard).
    pub fn send_to_users(&mut self, users: Vec<String>, frame: &Arc<[u8]>) {
        for user in users {
            let user: Arc<str> = Arc::from(user.as_str());
            self.send(
                crate::hash::owner_of(&user, self.nr_shards),
                ShardMsg::ToUser {
                    user,
                    frame: frame.clone(),
                },
            );
        }
    }

    /// Answers a request (not a send).
    pub fn answer(&mut self, reply: &Reply, answer: Answer) {
        self.answer_to(reply, answer, false);
    }

    /// An error answering a request that is not a send (a join).
    pub fn reply_error(&mut self, reply: &Reply, code: ErrorCode, message: &str) {
        self.answer_to(reply, Answer::error(code, message), false);
    }

    /// An error answering a send.
    pub fn send_error(&mut self, reply: &Reply, code: ErrorCode, message: &str) {
        self.answer_to(reply, Answer::error(code, message), true);
    }

    /// The ack of a send.
    pub fn ack(
        &mut self,
        reply: &Reply,
        channel: &Channel,
        client_msg_id: &str,
        seq: Seq,
        ts: u64,
        duplicate: bool,
    ) {
        let answer = Answer::Ack {
            channel: channel.clone(),
            client_msg_id: client_msg_id.to_string(),
            seq,
            ts,
            duplicate,
        };
        self.answer_to(reply, answer, true);
    }

    fn answer_to(&mut self, reply: &Reply, answer: Answer, send_done: bool) {
        self.send(
            reply.to.shard,
            ShardMsg::Answer {
                conn: reply.to.conn,
                id: reply.id.clone(),
                answer,
                send_done,
            },
        );
    }
}
