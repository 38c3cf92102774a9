//! One shard's state and everything it does in response to a connection's
//! frames, a message from another shard, or a finished store call.
//!
//! [`ShardState`] does no I/O. Handlers push what must happen next into
//! [`Effects`]: messages for shards (this one included: they are handled in
//! order by the runtime, so local and remote paths are the same) and I/O jobs
//! (store reads, the commit loop). `runtime.rs` owns the sockets, the mesh and
//! the tasks, and applies the effects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use storage::{Page, ReadLimit, ReadRange};

use crate::auth::Identity;
use crate::batch::Batch;
use crate::config::Config;
use crate::conn::{Conn, ConnId, Phase};
use crate::cursors::PendingCursors;
use crate::hash::{owner_of, ShardId};
use crate::limits::UserLimitsTable;
use crate::moderation::Blocklist;
use crate::owner::{GroupOp, JoinWaiter, Owner, Reply, SendReq};
use crate::presence::{self as presence_mod, Ask, Debounce, Queries, QueryRef};
use crate::protocol::{self, response, ErrorCode, WsEvent};
use crate::receipts::UnreadQueries;
use crate::room::Replica;
use crate::store_io::StoreFailure;

/// A connection anywhere in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnRef {
    /// Its shard.
    pub(crate) shard: ShardId,
    /// Its id on that shard.
    pub(crate) conn: ConnId,
}

/// Everything that crosses between shards. Queues are FIFO per (from, to)
/// pair, and an owner sends a shard's acks, `joined` heads and batches on the
/// same queue: that order is what makes "ack before own msg" and "no batch
/// slips between the head and the live stream" hold.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// Connection shard → owner: sequence this message.
    Send(Box<SendReq>),
    /// Connection shard → owner: `conn` joins; register the shard's replica
    /// and answer with the head.
    Subscribe {
        channel: Arc<str>,
        conn: ConnId,
        /// Which join of this connection (a leave and rejoin makes a new one).
        gen: u64,
        /// Who joins (group channels check membership at the owner).
        user: Arc<str>,
        since: Option<u64>,
        id: Option<Box<str>>,
    },
    /// Connection shard → owner: the shard has no members of the channel left.
    Unsubscribe { channel: Arc<str> },
    /// Owner → connection shard: the head for a join. For a room the owner
    /// now counts `user` as present until `MemberGone`.
    Joined {
        channel: Arc<str>,
        conn: ConnId,
        gen: u64,
        head: u64,
        since: Option<u64>,
        id: Option<Box<str>>,
        user: Arc<str>,
    },
    /// Connection shard → a room's owner: a connection of `user` that was
    /// answered `Joined` left the room (leave, close, refused `since`).
    MemberGone { channel: Arc<str>, user: Arc<str> },
    /// Owner → connection shard: the join could not be served (its error
    /// reply follows as `ToConn`).
    JoinFailed {
        channel: Arc<str>,
        conn: ConnId,
        gen: u64,
    },
    /// Any shard → connection shard: one ready frame (ack, error) for `conn`;
    /// `send_done` when it answers a `send` (the connection's count of sends
    /// in flight drops).
    ToConn {
        conn: ConnId,
        frame: Vec<u8>,
        send_done: bool,
    },
    /// Owner → replica shard: newly committed messages, encoded once.
    Batch(Arc<Batch>),
    /// Owner → replica shard: the head moved to `head` but the batches were
    /// not delivered (the queue was full); members page from the store.
    Advanced { channel: Arc<str>, head: u64 },
    /// Connection shard → user's owner shard: a device connected.
    DeviceUp {
        user: Arc<str>,
        device: Arc<str>,
        conn: ConnRef,
        /// Process-wide open order: the larger stamp is the newer connection,
        /// whatever order the shards' messages arrive in.
        stamp: u64,
    },
    /// Connection shard → user's owner shard: a device's connection ended.
    DeviceDown {
        user: Arc<str>,
        device: Arc<str>,
        conn: ConnRef,
    },
    /// Connection shard → owner: a user is typing in the channel.
    Typing {
        channel: Arc<str>,
        user: Arc<str>,
        from: ConnRef,
        /// The request id, for an error reply (a non-member of a group).
        id: Option<Box<str>>,
    },
    /// Owner → replica shard: a `typing` frame for every local member of the
    /// channel except `except` (ephemeral: dropped for members over budget).
    TypingNotice {
        channel: Arc<str>,
        except: ConnRef,
        frame: Arc<[u8]>,
    },
    /// Any shard → every shard: which of the asked users have a connection
    /// here.
    PresenceAsk { reply: QueryRef, ask: Ask },
    /// Answer to `PresenceAsk` (count: none) or `PresenceRoom` (count: the
    /// room's total).
    PresenceAnswer {
        query: u64,
        users: Vec<Arc<str>>,
        count: Option<usize>,
    },
    /// A presence query refused by the group's owner.
    PresenceFailed {
        query: u64,
        code: ErrorCode,
        message: String,
    },
    /// Connection shard → a room's owner: `presence` of the room.
    PresenceRoom { reply: QueryRef, channel: Arc<str> },
    /// Connection shard → a group's owner: `presence` of the group by `user`
    /// (members only); the owner asks every shard, answers go to `reply`.
    PresenceGroup {
        reply: QueryRef,
        channel: Arc<str>,
        user: Arc<str>,
    },
    /// Any shard → every shard: `user`'s read cursors not written yet
    /// (`GET /v1/me/unread` counts them at once).
    UnreadAsk { reply: QueryRef, user: Arc<str> },
    /// Answer to `UnreadAsk`: channel → pending read cursor.
    UnreadAnswer {
        query: u64,
        cursors: Vec<(Arc<str>, u64)>,
    },
    /// A channel's owner → a member's owner shard: a message the member
    /// should be pushed if no device of theirs is online.
    Notify {
        user: Arc<str>,
        notice: crate::push::Notice,
    },
    /// Any shard → a user's owner shard: one frame for every connection of
    /// the user (e.g. `read` events).
    ToUser { user: Arc<str>, frame: Arc<[u8]> },
    /// Connection shard → owner of a group: change its membership.
    Group {
        channel: Arc<str>,
        actor: Arc<str>,
        op: GroupOp,
        reply: Reply,
    },
    /// Owner → replica shards: `user` was removed from the group; its
    /// connections leave the channel.
    Kick { channel: Arc<str>, user: Arc<str> },
    /// User's owner shard → connection shard: close `conn` (e.g. 4009 replaced).
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
}

/// Asynchronous work a handler asks the runtime to start.
#[derive(Debug)]
pub(crate) enum IoJob {
    /// Run the owner's commit loop (no-op when it already runs).
    Commit,
    /// Load a channel's head for its owner.
    LoadHead(Arc<str>),
    /// Read the page after `after` for a catching-up (conn, channel).
    CatchUp {
        conn: ConnId,
        channel: Arc<str>,
        gen: u64,
        after: u64,
    },
    /// Retry a catch-up later (after a store error or an empty page).
    CatchUpLater {
        conn: ConnId,
        channel: Arc<str>,
        gen: u64,
    },
    /// Serve a `history` request (for a group: only to a member).
    History {
        conn: ConnId,
        channel: Arc<str>,
        range: ReadRange,
        limit: ReadLimit,
        id: Option<Box<str>>,
        member_check: Option<Arc<str>>,
    },
    /// Check group membership for an HTTP `read`, then record it.
    ReadCheck {
        conn: ConnId,
        user: Arc<str>,
        channel: Arc<str>,
        seq: u64,
        id: Option<Box<str>>,
    },
    /// Push a user's presence change to the other members of their DMs and
    /// groups.
    PresenceFanout { user: Arc<str>, online: bool },
    /// Deliver a push job to the webhook (retries, then dead letter).
    Push(crate::push::Job),
    /// Compute a user's unread counts (`GET /v1/me/unread`), with the read
    /// cursors reported and not written yet.
    Unread {
        conn: ConnId,
        user: Arc<str>,
        pending: HashMap<String, u64>,
        /// List the channels with their counts (`GET /v1/me/channels`).
        channels: bool,
    },
    /// Write the coalesced read and delivered cursors (one store write).
    FlushCursors {
        reads: Vec<storage::ReadUpdate>,
        delivered: Vec<storage::DeliveredUpdate>,
    },
    /// Load a group's members for its owner.
    LoadMembers(Arc<str>),
    /// Write a membership change for the owner.
    GroupWrite {
        channel: Arc<str>,
        op: GroupOp,
        reply: Reply,
    },
}

/// What handlers ask the runtime to do.
#[derive(Default)]
pub(crate) struct Effects {
    /// Messages to shards, in order (this shard's own included).
    pub(crate) out: Vec<(ShardId, ShardMsg)>,
    /// I/O to start.
    pub(crate) io: Vec<IoJob>,
    /// Messages committed (for stats).
    pub(crate) stats_committed: u64,
    /// Number of shards (for owner lookups by handlers that only see these
    /// effects).
    pub(crate) nr_shards: usize,
}

impl Effects {
    pub(crate) fn send(&mut self, to: ShardId, msg: ShardMsg) {
        self.out.push((to, msg));
    }

    /// One shared frame for every connection of each of `users` (through
    /// each user's owner shard).
    pub(crate) fn send_to_users(
        &mut self,
        users: Vec<String>,
        frame: &Arc<[u8]>,
        nr_shards: usize,
    ) {
        for user in users {
            let user: Arc<str> = Arc::from(user.as_str());
            self.send(
                owner_of(&user, nr_shards),
                ShardMsg::ToUser {
                    user,
                    frame: frame.clone(),
                },
            );
        }
    }

    /// An error answering a request that is not a send (a join).
    pub(crate) fn reply_error(&mut self, reply: &Reply, code: ErrorCode, message: &str) {
        self.error_to(reply, code, message, false);
    }

    /// An error answering a send.
    pub(crate) fn send_error(&mut self, reply: &Reply, code: ErrorCode, message: &str) {
        self.error_to(reply, code, message, true);
    }

    fn error_to(&mut self, reply: &Reply, code: ErrorCode, message: &str, send_done: bool) {
        let mut frame = Vec::new();
        response::error(&mut frame, reply.id.as_deref(), code, message);
        self.send(
            reply.to.shard,
            ShardMsg::ToConn {
                conn: reply.to.conn,
                frame,
                send_done,
            },
        );
    }

    pub(crate) fn ack(
        &mut self,
        reply: &Reply,
        channel: &str,
        client_msg_id: &str,
        seq: u64,
        ts: u64,
        duplicate: bool,
    ) {
        let mut frame = Vec::new();
        response::ack(
            &mut frame,
            reply.id.as_deref(),
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        );
        self.send(
            reply.to.shard,
            ShardMsg::ToConn {
                conn: reply.to.conn,
                frame,
                send_done: true,
            },
        );
    }
}

/// Process-wide counters, shared by all shards (relaxed atomics).
#[derive(Default)]
pub(crate) struct Stats {
    /// Open connections (WebSocket and HTTP, including handshakes).
    pub(crate) connections: AtomicUsize,
    /// Connections refused because the maximum was reached.
    pub(crate) refused: AtomicU64,
    /// Accept errors (EMFILE/ENFILE and others).
    pub(crate) accept_errors: AtomicU64,
    /// Sends (edits, deletes) forwarded to owners.
    pub(crate) received: AtomicU64,
    /// Messages committed to the store.
    pub(crate) committed: AtomicU64,
    /// Store commits made by owners.
    pub(crate) commits: AtomicU64,
    /// Message frames queued to connections (live and catch-up).
    pub(crate) deliveries: AtomicU64,
    /// WebSocket sessions opened (also the source of device-replacement order).
    pub(crate) opened: AtomicU64,
    /// Upgrades refused for a missing, bad or expired token (or bad dev ids).
    pub(crate) auth_failures: AtomicU64,
    /// Connections cut off because the peer took no bytes for 2 × heartbeat.
    pub(crate) write_stalls: AtomicU64,
    /// Push jobs delivered to the webhook.
    pub(crate) push_sent: AtomicU64,
    /// Push jobs written to the dead-letter file after the last retry.
    pub(crate) push_dead: AtomicU64,
    /// Times a connection fell behind its outbox budget.
    pub(crate) slow_consumer_events: AtomicU64,
    /// Largest outbox seen on any connection, in bytes.
    pub(crate) max_outbox_bytes: AtomicUsize,
    /// Batches not sent to a shard because its queue was full.
    pub(crate) mesh_overflows: AtomicU64,
    /// Histograms and per-shard gauges.
    pub(crate) detail: crate::metrics::Detail,
}

/// A plain copy of [`Stats`].
#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    /// See [`Stats::connections`].
    pub connections: usize,
    /// See [`Stats::refused`].
    pub refused: u64,
    /// See [`Stats::accept_errors`].
    pub accept_errors: u64,
    /// See [`Stats::received`].
    pub received: u64,
    /// See [`Stats::committed`].
    pub committed: u64,
    /// See [`Stats::commits`].
    pub commits: u64,
    /// See [`Stats::deliveries`].
    pub deliveries: u64,
    /// See [`Stats::auth_failures`].
    pub auth_failures: u64,
    /// See [`Stats::write_stalls`].
    pub write_stalls: u64,
    /// See [`Stats::push_sent`].
    pub push_sent: u64,
    /// See [`Stats::push_dead`].
    pub push_dead: u64,
    /// See [`Stats::slow_consumer_events`].
    pub slow_consumer_events: u64,
    /// See [`Stats::max_outbox_bytes`].
    pub max_outbox_bytes: usize,
    /// See [`Stats::mesh_overflows`].
    pub mesh_overflows: u64,
}

impl Stats {
    /// Reads every counter.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            write_stalls: self.write_stalls.load(Ordering::Relaxed),
            push_sent: self.push_sent.load(Ordering::Relaxed),
            push_dead: self.push_dead.load(Ordering::Relaxed),
            slow_consumer_events: self.slow_consumer_events.load(Ordering::Relaxed),
            max_outbox_bytes: self.max_outbox_bytes.load(Ordering::Relaxed),
            mesh_overflows: self.mesh_overflows.load(Ordering::Relaxed),
        }
    }
}

/// One user's devices: device → (connection, open stamp).
type Devices = HashMap<Arc<str>, (ConnRef, u64)>;

/// Everything one shard owns.
pub(crate) struct ShardState {
    pub(crate) id: ShardId,
    pub(crate) nr_shards: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) limits: protocol::Limits,
    pub(crate) conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    pub(crate) next_join_gen: u64,
    pub(crate) replicas: HashMap<Arc<str>, Replica>,
    pub(crate) owner: Owner,
    /// Devices of the users this shard owns: user → device → (connection,
    /// open stamp).
    users: HashMap<Arc<str>, Devices>,
    pub(crate) blocklist: Blocklist,
    pub(crate) fx: Effects,
    /// Read and delivered cursors reported and not written yet.
    pub(crate) cursors: PendingCursors,
    /// Per-user limits of the users this shard serves.
    pub(crate) user_limits: UserLimitsTable,
    /// Unread queries started here.
    pub(crate) unread: UnreadQueries,
    /// WebSocket connections per user on this shard (presence answers).
    local_users: HashMap<Arc<str>, u32>,
    /// Offline announcements waiting for the debounce (owned users).
    debounce: Debounce,
    /// Presence queries started here.
    pub(crate) queries: Queries,
    /// Push notices per offline owned user, waiting for their window.
    push_pending: crate::push::Pending,
    /// Shutting down: connections stop reading.
    pub(crate) draining: bool,
    pub(crate) stats: Arc<Stats>,
}

impl ShardState {
    pub(crate) fn new(id: ShardId, nr_shards: usize, cfg: Arc<Config>, stats: Arc<Stats>) -> Self {
        let limits = protocol::Limits {
            max_text_chars: cfg.max_text_chars,
            ..protocol::Limits::default()
        };
        let blocklist = Blocklist::new(&cfg.blocklist_words, &cfg.blocklist_patterns)
            .unwrap_or_else(|e| {
                // Validated at start; an empty list is the safe fallback.
                tracing::error!(error = %e, "blocklist invalid");
                Blocklist::empty()
            });
        let owner = Owner::new(cfg.push_webhook.is_some(), cfg.max_group_members);
        ShardState {
            id,
            nr_shards,
            cfg,
            limits,
            conns: HashMap::new(),
            next_conn: 1,
            next_join_gen: 1,
            replicas: HashMap::new(),
            owner,
            users: HashMap::new(),
            blocklist,
            fx: Effects {
                nr_shards,
                ..Effects::default()
            },
            cursors: PendingCursors::default(),
            user_limits: UserLimitsTable::default(),
            unread: UnreadQueries::default(),
            local_users: HashMap::new(),
            debounce: Debounce::default(),
            queries: Queries::default(),
            push_pending: crate::push::Pending::default(),
            draining: false,
            stats,
        }
    }

    pub(crate) fn me(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            shard: self.id,
            conn,
        }
    }

    // ----- connections -----------------------------------------------------

    /// A WebSocket session starts: registers it and queues `hello`.
    pub(crate) fn open_conn(&mut self, identity: &Identity, now_ms: u64) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let user: Arc<str> = Arc::from(identity.user.as_str());
        let device: Arc<str> = Arc::from(identity.device.as_str());
        let mut conn = Conn::new(user.clone(), device.clone(), now_ms);
        conn.expires_ms = identity.expires_ms;
        let session = format!(
            "{:x}-{:x}-{:x}",
            now_ms,
            self.id.0,
            crate::hash::fnv1a_64(&id.0.to_le_bytes()) ^ now_ms.rotate_left(17)
        );
        let limits = response::HelloLimits {
            max_text_chars: self.cfg.max_text_chars,
            max_frame_bytes: self.cfg.max_frame_bytes,
            history_max_limit: self.limits.history_max_limit,
        };
        conn.outbox.push_reply(|out| {
            response::hello(
                out,
                &user,
                &device,
                &session,
                self.id.0,
                self.cfg.heartbeat_ms,
                &limits,
            );
        });
        self.conns.insert(id, conn);
        *self.local_users.entry(user.clone()).or_insert(0) += 1;
        if let Some(g) = self.stats.detail.shard_connections.get(self.id.0) {
            g.fetch_add(1, Ordering::Relaxed);
        }
        let me = self.me(id);
        let stamp = self.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.fx.send(
            owner_of(&user, self.nr_shards),
            ShardMsg::DeviceUp {
                user,
                device,
                conn: me,
                stamp,
            },
        );
        id
    }

    /// An HTTP API call starts: a session without hello or device.
    pub(crate) fn open_http(&mut self, identity: &Identity, now_ms: u64) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let mut conn = Conn::new(
            Arc::from(identity.user.as_str()),
            Arc::from(identity.device.as_str()),
            now_ms,
        );
        conn.http = true;
        self.conns.insert(id, conn);
        id
    }

    /// A connection ended: leaves its channels and tells the user's owner.
    pub(crate) fn close_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for (channel, sub) in &conn.subs {
            self.drop_member(channel, id);
            if !matches!(sub.phase, Phase::Joining { .. }) {
                self.member_gone(channel, &conn.user);
            }
        }
        if conn.http {
            return;
        }
        if let Some(g) = self.stats.detail.shard_connections.get(self.id.0) {
            g.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(n) = self.local_users.get_mut(&conn.user) {
            *n -= 1;
            if *n == 0 {
                self.local_users.remove(&conn.user);
            }
        }
        let me = self.me(id);
        self.fx.send(
            owner_of(&conn.user, self.nr_shards),
            ShardMsg::DeviceDown {
                user: conn.user,
                device: conn.device,
                conn: me,
            },
        );
    }

    /// Tells a room's owner that a joined connection of `user` left (it
    /// counts the room's users for presence).
    pub(crate) fn member_gone(&mut self, channel: &Arc<str>, user: &Arc<str>) {
        if channel.starts_with(crate::owner::ROOM_PREFIX) {
            self.fx.send(
                owner_of(channel, self.nr_shards),
                ShardMsg::MemberGone {
                    channel: channel.clone(),
                    user: user.clone(),
                },
            );
        }
    }

    pub(crate) fn drop_member(&mut self, channel: &Arc<str>, id: ConnId) {
        if let Some(rep) = self.replicas.get_mut(channel) {
            rep.members.remove(&id);
            if rep.members.is_empty() {
                self.replicas.remove(channel);
                self.fx.send(
                    owner_of(channel, self.nr_shards),
                    ShardMsg::Unsubscribe {
                        channel: channel.clone(),
                    },
                );
            }
        }
    }

    /// One WebSocket event from a connection's decoder.
    pub(crate) fn on_ws_event(&mut self, id: ConnId, ev: WsEvent<'_>, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_rx_ms = now_ms;
        match ev {
            // Closing: requests after the close request are not taken.
            WsEvent::Text(_) if conn.outbox.close.is_some() => {}
            WsEvent::Text(text) => self.on_text(id, text),
            WsEvent::Binary(_) => conn.outbox.push_reply(|out| {
                response::error(
                    out,
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported: send JSON text frames",
                );
            }),
            WsEvent::Ping(payload) => conn.outbox.push_reply(|out| {
                protocol::ws::encode_frame(out, protocol::ws::WsOpcode::Pong, payload, None);
            }),
            WsEvent::Pong(_) => {}
            WsEvent::Close(_) => conn.outbox.request_close(1000, ""),
        }
    }

    /// A frame the decoder refused: close with its code.
    pub(crate) fn on_ws_error(&mut self, id: ConnId, code: u16, reason: &'static str) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox.request_close(code, reason);
        }
    }

    /// The once-a-second check of every connection: token expiry (4001),
    /// silence (4008: no frame for 2 × heartbeat while we were reading), a
    /// peer that takes no bytes for 2 × heartbeat (cut off), and a close that
    /// could not be flushed in time (cut off).
    pub(crate) fn check_conns(&mut self, now_ms: u64) {
        let limit = 2 * self.cfg.heartbeat_ms;
        let budget = self.cfg.outbox_budget_bytes;
        let max_queued = self.cfg.max_queued_request_bytes;
        for conn in self.conns.values_mut() {
            let paused = conn.reads_paused(max_queued);
            let ob = &mut conn.outbox;
            if ob.close.is_some() {
                if now_ms.saturating_sub(ob.close_requested_ms) > crate::conn::CLOSE_FLUSH_MS {
                    ob.kill = true;
                    ob.wake();
                }
            } else if ob.pending() > 0 && now_ms.saturating_sub(ob.progress_ms) > limit {
                ob.kill = true;
                ob.wake();
                self.stats.write_stalls.fetch_add(1, Ordering::Relaxed);
            } else if conn.expires_ms.is_some_and(|e| e <= now_ms) {
                ob.request_close(4001, "token expired");
            } else if paused && ob.pending() <= budget {
                // Its socket is not read because its requests wait for work
                // in flight here: the silence is not the client's.
                conn.last_rx_ms = now_ms;
            } else if now_ms.saturating_sub(conn.last_rx_ms) > limit {
                // Also when its socket is not read because it sent more
                // requests than it takes replies for: trickling the replies
                // out does not keep such a connection alive.
                ob.request_close(4008, "idle: no frame within 2 x heartbeat_ms");
            }
        }
    }

    /// Closes every connection with `code` (shutdown).
    pub(crate) fn close_all(&mut self, code: u16, reason: &'static str) {
        for conn in self.conns.values_mut() {
            conn.outbox.request_close(code, reason);
        }
    }

    /// Wakes every connection's driver (so it sees `draining`).
    pub(crate) fn wake_all(&mut self) {
        for conn in self.conns.values_mut() {
            conn.outbox.wake();
        }
    }

    // ----- requests ----------------------------------------------------------

    // ----- messages from shards ---------------------------------------------

    /// Handles one message from shard `from` (possibly this one).
    pub(crate) fn on_msg(&mut self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Send(req) => self.owner.on_send(*req, &mut self.fx),
            ShardMsg::Subscribe {
                channel,
                conn,
                gen,
                user,
                since,
                id,
            } => self.owner.on_subscribe(
                JoinWaiter {
                    shard: from,
                    conn,
                    gen,
                    user,
                    since,
                    id,
                },
                channel,
                &mut self.fx,
            ),
            ShardMsg::Unsubscribe { channel } => self.owner.on_unsubscribe(from, &channel),
            ShardMsg::Joined {
                channel,
                conn,
                gen,
                head,
                since,
                id,
                user,
            } => self.on_joined(&channel, conn, gen, head, since, id, &user),
            ShardMsg::MemberGone { channel, user } => self.owner.on_member_gone(&channel, &user),
            ShardMsg::JoinFailed { channel, conn, gen } => self.on_join_failed(&channel, conn, gen),
            ShardMsg::ToConn {
                conn,
                frame,
                send_done,
            } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if send_done {
                        c.in_flight.sends = c.in_flight.sends.saturating_sub(1);
                    }
                    c.outbox.push_bytes(&frame);
                }
            }
            ShardMsg::Batch(batch) => self.on_batch(&batch),
            ShardMsg::Advanced { channel, head } => self.advance_replica(&channel, head),
            ShardMsg::DeviceUp {
                user,
                device,
                conn,
                stamp,
            } => self.device_up(user, device, conn, stamp),
            ShardMsg::DeviceDown { user, device, conn } => {
                if let Some(devices) = self.users.get_mut(&user) {
                    if devices.get(&device).map(|d| d.0) == Some(conn) {
                        devices.remove(&device);
                    }
                    if devices.is_empty() {
                        self.users.remove(&user);
                        let due = crate::util::now_ms() + self.cfg.presence_debounce_ms;
                        self.debounce.start(user, due);
                    }
                }
            }
            ShardMsg::PresenceAsk { reply, ask } => {
                let users = self.local_presence(&ask);
                self.fx.send(
                    reply.shard,
                    ShardMsg::PresenceAnswer {
                        query: reply.query,
                        users,
                        count: None,
                    },
                );
            }
            ShardMsg::PresenceAnswer {
                query,
                users,
                count,
            } => {
                if let Some(q) = self.queries.answer(query, users, count) {
                    let online: Vec<&str> = q
                        .online
                        .iter()
                        .take(presence_mod::MAX_LISTED)
                        .map(|u| &**u)
                        .collect();
                    if let Some(c) = self.conns.get_mut(&q.conn) {
                        c.in_flight.presence = c.in_flight.presence.saturating_sub(1);
                        let count = q.count.unwrap_or(q.online.len());
                        c.outbox.push_reply(|out| {
                            response::presence(out, q.id.as_deref(), &q.channel, &online, count);
                        });
                    }
                }
            }
            ShardMsg::PresenceFailed {
                query,
                code,
                message,
            } => {
                if let Some(q) = self.queries.fail(query) {
                    if let Some(c) = self.conns.get_mut(&q.conn) {
                        c.in_flight.presence = c.in_flight.presence.saturating_sub(1);
                        c.outbox.push_reply(|out| {
                            response::error(out, q.id.as_deref(), code, &message);
                        });
                    }
                }
            }
            ShardMsg::PresenceRoom { reply, channel } => {
                self.owner.on_presence_room(reply, &channel, &mut self.fx);
            }
            ShardMsg::PresenceGroup {
                reply,
                channel,
                user,
            } => self
                .owner
                .on_presence_group(reply, channel, user, &mut self.fx),
            ShardMsg::UnreadAsk { reply, user } => self.on_unread_ask(reply, &user),
            ShardMsg::UnreadAnswer { query, cursors } => self.on_unread_answer(query, cursors),
            ShardMsg::Typing {
                channel,
                user,
                from,
                id,
            } => {
                let window = self.cfg.typing_window_ms;
                self.owner.on_typing(
                    channel,
                    &user,
                    Reply { to: from, id },
                    crate::util::now_ms(),
                    window,
                    &mut self.fx,
                );
            }
            ShardMsg::TypingNotice {
                channel,
                except,
                frame,
            } => self.on_typing_notice(&channel, except, &frame),
            ShardMsg::Group {
                channel,
                actor,
                op,
                reply,
            } => self.owner.on_group(channel, actor, op, reply, &mut self.fx),
            ShardMsg::Kick { channel, user } => self.kick(&channel, &user),
            ShardMsg::Notify { user, notice } => {
                if !self.users.contains_key(&user) {
                    let at = crate::util::now_ms() + self.cfg.push_coalesce_ms;
                    self.push_pending.add(user, notice, at);
                }
            }
            ShardMsg::ToUser { user, frame } => {
                if let Some(devices) = self.users.get(&user) {
                    for (conn, _) in devices.values() {
                        self.fx.send(
                            conn.shard,
                            ShardMsg::ToConn {
                                conn: conn.conn,
                                frame: frame.to_vec(),
                                send_done: false,
                            },
                        );
                    }
                }
            }
            ShardMsg::Close { conn, code, reason } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outbox.request_close(code, reason);
                }
            }
        }
    }

    /// At the user's owner: a device connected. A newer connection of the
    /// same device replaces the older (4009); past the per-user maximum the
    /// new connection is closed (4029).
    fn device_up(&mut self, user: Arc<str>, device: Arc<str>, conn: ConnRef, stamp: u64) {
        let max = self.cfg.max_connections_per_user;
        if !self.users.contains_key(&user) && !self.debounce.cancel(&user) {
            // First device, and not back within the debounce: online.
            self.fx.io.push(IoJob::PresenceFanout {
                user: user.clone(),
                online: true,
            });
        }
        let devices = self.users.entry(user).or_default();
        let close = |to: ConnRef, code: u16, reason: &'static str| {
            (
                to.shard,
                ShardMsg::Close {
                    conn: to.conn,
                    code,
                    reason,
                },
            )
        };
        const REPLACED: &str = "replaced by a newer connection of the same device";
        if let Some((old, old_stamp)) = devices.get(&device).copied() {
            if old == conn {
                return;
            }
            let (to, msg) = if stamp > old_stamp {
                devices.insert(device, (conn, stamp));
                close(old, 4009, REPLACED)
            } else {
                // The incoming connection is the older one (its DeviceUp
                // came late): it is the one replaced.
                close(conn, 4009, REPLACED)
            };
            self.fx.send(to, msg);
            return;
        }
        if max > 0 && devices.len() >= max {
            let (to, msg) = close(conn, 4029, "too many connections for this user");
            self.fx.send(to, msg);
            return;
        }
        devices.insert(device, (conn, stamp));
    }

    /// A removed member's local connections leave the group channel (each
    /// gets an unsolicited `left`).
    fn kick(&mut self, channel: &Arc<str>, user: &str) {
        let Some(rep) = self.replicas.get(channel) else {
            return;
        };
        let gone: Vec<ConnId> = rep
            .members
            .iter()
            .copied()
            .filter(|c| self.conns.get(c).is_some_and(|c| &*c.user == user))
            .collect();
        for cid in gone {
            if let Some(conn) = self.conns.get_mut(&cid) {
                conn.subs.remove(channel);
                conn.outbox
                    .push_reply(|out| response::left(out, None, channel));
            }
            self.drop_member(channel, cid);
        }
    }

    /// Starts a membership change from an HTTP API call: sent to the group's
    /// owner, answered into the call's outbox.
    pub(crate) fn group_request(&mut self, conn: ConnId, channel: &str, op: GroupOp) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let actor = c.user.clone();
        let reply = Reply {
            to: self.me(conn),
            id: None,
        };
        let channel: Arc<str> = Arc::from(channel);
        self.fx.send(
            owner_of(&channel, self.nr_shards),
            ShardMsg::Group {
                channel,
                actor,
                op,
                reply,
            },
        );
    }

    /// This shard's part of a DM or group presence query: which of the
    /// asked users have a WebSocket connection here.
    fn local_presence(&self, ask: &Ask) -> Vec<Arc<str>> {
        match ask {
            Ask::Users(users) => users
                .iter()
                .filter_map(|u| {
                    self.local_users
                        .get_key_value(u.as_str())
                        .map(|(k, _)| k.clone())
                })
                .collect(),
        }
    }

    /// Push jobs whose coalescing window ended.
    pub(crate) fn push_tick(&mut self, now_ms: u64) {
        for job in self.push_pending.due(now_ms) {
            self.fx.io.push(IoJob::Push(job));
        }
    }

    /// Once a second at each user's owner: announce users whose offline
    /// debounce ran out.
    pub(crate) fn presence_tick(&mut self, now_ms: u64) {
        for user in self.debounce.take_due(now_ms) {
            if !self.users.contains_key(&user) {
                self.fx.io.push(IoJob::PresenceFanout {
                    user,
                    online: false,
                });
            }
        }
    }

    /// The members to tell about a user's presence change were read.
    pub(crate) fn on_presence_fanout(
        &mut self,
        user: &Arc<str>,
        online: bool,
        result: Result<Vec<(String, Vec<String>)>, StoreFailure>,
    ) {
        let Ok(targets) = result else {
            return;
        };
        for (channel, others) in targets {
            let mut frame = Vec::new();
            response::presence_update(&mut frame, &channel, user, online);
            let frame: Arc<[u8]> = Arc::from(frame);
            self.fx.send_to_users(others, &frame, self.nr_shards);
        }
    }

    /// A `typing` frame for the local members of a channel, except its sender.
    fn on_typing_notice(&mut self, channel: &Arc<str>, except: ConnRef, frame: &[u8]) {
        let Some(rep) = self.replicas.get(channel) else {
            return;
        };
        let budget = self.cfg.outbox_budget_bytes;
        for cid in &rep.members {
            if except.shard == self.id && except.conn == *cid {
                continue;
            }
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            let joined = conn
                .subs
                .get(channel)
                .is_some_and(|s| !matches!(s.phase, Phase::Joining { .. }));
            // Ephemeral: a member over its budget does not get it.
            if joined && conn.outbox.pending() + frame.len() <= budget {
                conn.outbox.push_bytes(frame);
            }
        }
    }

    /// The owner could not load the head for a join: its error went to the
    /// first request; answer the joins that waited with it, and forget it.
    fn on_join_failed(&mut self, channel: &Arc<str>, conn_id: ConnId, gen: u64) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.in_flight.joins = conn.in_flight.joins.saturating_sub(1);
        let Some(sub) = conn.subs.get_mut(channel).filter(|s| s.gen == gen) else {
            return;
        };
        if let Phase::Joining { ids } = &mut sub.phase {
            for rid in std::mem::take(ids) {
                conn.outbox.push_reply(|out| {
                    response::error(
                        out,
                        rid.as_deref(),
                        ErrorCode::Unavailable,
                        "store unavailable",
                    );
                });
            }
        }
        conn.subs.remove(channel);
        self.drop_member(channel, conn_id);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_joined(
        &mut self,
        channel: &Arc<str>,
        conn_id: ConnId,
        gen: u64,
        head: u64,
        since: Option<u64>,
        id: Option<Box<str>>,
        user: &Arc<str>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            // Closed meanwhile: the owner counted this join.
            self.member_gone(channel, user);
            return;
        };
        conn.in_flight.joins = conn.in_flight.joins.saturating_sub(1);
        // An answer for an earlier join of this connection (it left and
        // joined again meanwhile) must not be applied to the new one; its
        // request still gets its answer.
        let Some(sub) = conn.subs.get_mut(channel).filter(|s| s.gen == gen) else {
            conn.outbox
                .push_reply(|out| response::joined(out, id.as_deref(), channel, head));
            self.member_gone(channel, user);
            return;
        };
        let Phase::Joining { ids } = &mut sub.phase else {
            return;
        };
        let ids = std::mem::take(ids);
        let all_ids = std::iter::once(id).chain(ids);
        if let Some(s) = since.filter(|&s| s > head) {
            let message = format!("since {s} is beyond the channel head {head}");
            for rid in all_ids {
                conn.outbox.push_reply(|out| {
                    response::error(out, rid.as_deref(), ErrorCode::BadRequest, &message);
                });
            }
            conn.subs.remove(channel);
            self.drop_member(channel, conn_id);
            self.member_gone(channel, user);
            return;
        }
        for rid in all_ids {
            conn.outbox
                .push_reply(|out| response::joined(out, rid.as_deref(), channel, head));
        }
        sub.cursor = since.unwrap_or(head);
        sub.phase = Phase::CatchUp { fetching: false };
        self.advance_replica(channel, head);
        self.pump(conn_id, channel);
    }

    /// The replica learns that `head` is committed; members behind it catch up.
    fn advance_replica(&mut self, channel: &Arc<str>, head: u64) {
        let Some(rep) = self.replicas.get_mut(channel) else {
            return;
        };
        if head <= rep.last_seq {
            return;
        }
        rep.last_seq = head;
        let mut behind = Vec::new();
        for cid in &rep.members {
            if let Some(sub) = self
                .conns
                .get_mut(cid)
                .and_then(|c| c.subs.get_mut(channel))
            {
                if matches!(sub.phase, Phase::Live) && sub.cursor < head {
                    sub.phase = Phase::CatchUp { fetching: false };
                    behind.push(*cid);
                }
            }
        }
        for cid in behind {
            self.pump(cid, channel);
        }
    }

    fn on_batch(&mut self, batch: &Arc<Batch>) {
        let budget = self.cfg.outbox_budget_bytes;
        let Some(rep) = self.replicas.get_mut(&batch.channel) else {
            return;
        };
        rep.remember(batch, self.cfg.replica_ring_bytes);
        rep.last_seq = rep.last_seq.max(batch.last_seq());
        let mut behind = Vec::new();
        let mut delivered = 0u64;
        for cid in &rep.members {
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            match offer_batch(conn, batch, budget) {
                Offer::Skipped => continue,
                Offer::Gap => behind.push(*cid),
                Offer::Queued { messages, complete } => {
                    delivered += messages;
                    if !complete {
                        self.stats
                            .slow_consumer_events
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    note_outbox(&self.stats, conn.outbox.pending());
                }
            }
        }
        self.stats
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        for cid in behind {
            self.pump(cid, &batch.channel);
        }
    }

    // ----- catch-up --------------------------------------------------------

    /// Moves a catching-up (conn, channel) forward from the ring while its
    /// outbox has room; asks the store when the ring does not reach back far
    /// enough; goes live once it meets the replica's head.
    pub(crate) fn pump(&mut self, conn_id: ConnId, channel: &Arc<str>) {
        let budget = self.cfg.outbox_budget_bytes;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let Some(sub) = conn.subs.get_mut(channel) else {
            return;
        };
        let Some(rep) = self.replicas.get(channel) else {
            return;
        };
        let mut delivered = 0;
        loop {
            if !matches!(sub.phase, Phase::CatchUp { fetching: false }) {
                break;
            }
            if sub.cursor >= rep.last_seq {
                sub.phase = Phase::Live;
                break;
            }
            if conn.outbox.pending() >= budget / 2 || conn.outbox.close.is_some() {
                break; // resumes when the outbox drains
            }
            if let Some(b) = rep.ring_batch_with(sub.cursor + 1) {
                let room = budget.saturating_sub(conn.outbox.pending());
                // Ring batches never pass the replica's head.
                let (bytes, upto) = b.frames_fitting(sub.cursor, room, true);
                delivered += upto - sub.cursor;
                conn.outbox.push_bytes(bytes);
                sub.cursor = upto;
                continue;
            }
            if conn.fetching {
                break; // one store read per connection; resumes after it
            }
            conn.fetching = true;
            sub.phase = Phase::CatchUp { fetching: true };
            self.fx.io.push(IoJob::CatchUp {
                conn: conn_id,
                channel: channel.clone(),
                gen: sub.gen,
                after: sub.cursor,
            });
            break;
        }
        note_outbox(&self.stats, conn.outbox.pending());
        self.stats
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// A page for a catch-up arrived from the store. Only what the replica
    /// knows to be committed is queued (a store read may already see a commit
    /// whose acks are still on their way), and only up to the budget; the
    /// rest is read again later.
    pub(crate) fn on_catchup_page(
        &mut self,
        conn_id: ConnId,
        channel: &Arc<str>,
        gen: u64,
        result: Result<Page, StoreFailure>,
    ) {
        let budget = self.cfg.outbox_budget_bytes;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.fetching = false;
        let head = self.replicas.get(channel).map_or(0, |r| r.last_seq);
        let mut retry = false;
        if let Some(sub) = conn
            .subs
            .get_mut(channel)
            .filter(|s| s.gen == gen && matches!(s.phase, Phase::CatchUp { fetching: true }))
        {
            sub.phase = Phase::CatchUp { fetching: false };
            let before = sub.cursor;
            match result {
                Ok(page) => {
                    for m in &page.messages {
                        if m.seq <= sub.cursor {
                            continue;
                        }
                        if m.seq != sub.cursor + 1 || m.seq > head {
                            break;
                        }
                        if conn.outbox.pending() >= budget {
                            break;
                        }
                        conn.outbox.push_reply(|out| {
                            response::msg(out, channel, &response::MsgView::from_stored(m));
                        });
                        sub.cursor = m.seq;
                    }
                }
                Err(f) => {
                    tracing::warn!(channel = %channel, error = %f.message, "catch-up read failed; retrying");
                }
            }
            let progressed = sub.cursor - before;
            self.stats
                .deliveries
                .fetch_add(progressed, Ordering::Relaxed);
            note_outbox(&self.stats, conn.outbox.pending());
            if progressed == 0 && head > sub.cursor && conn.outbox.pending() < budget {
                // The store did not have what the replica knows is committed
                // (or failed): try again shortly rather than spin.
                sub.phase = Phase::CatchUp { fetching: true };
                conn.fetching = true;
                retry = true;
                self.fx.io.push(IoJob::CatchUpLater {
                    conn: conn_id,
                    channel: channel.clone(),
                    gen,
                });
            }
        }
        if !retry {
            // The connection's one store read is free again: every channel
            // that waited for it may continue.
            self.on_drained(conn_id);
        }
    }

    /// The retry timer of a catch-up fired.
    pub(crate) fn on_catchup_retry(&mut self, conn_id: ConnId, channel: &Arc<str>, gen: u64) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.fetching = false;
        if let Some(sub) = conn.subs.get_mut(channel).filter(|s| s.gen == gen) {
            if matches!(sub.phase, Phase::CatchUp { fetching: true }) {
                sub.phase = Phase::CatchUp { fetching: false };
            }
        }
        self.on_drained(conn_id);
    }

    /// A connection's outbox became empty: continue its catch-ups.
    pub(crate) fn on_drained(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let behind: Vec<Arc<str>> = conn
            .subs
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::CatchUp { fetching: false }))
            .map(|(k, _)| k.clone())
            .collect();
        for ch in behind {
            self.pump(conn_id, &ch);
        }
    }

    /// A `history` read finished.
    pub(crate) fn on_history(
        &mut self,
        conn_id: ConnId,
        channel: &str,
        id: Option<&str>,
        keep_newest: bool,
        result: Result<Page, StoreFailure>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.in_flight.histories = conn.in_flight.histories.saturating_sub(1);
        match result {
            Ok(page) => {
                let views: Vec<_> = page
                    .messages
                    .iter()
                    .map(response::MsgView::from_stored)
                    .collect();
                // The store cut the page by text bytes; the frame is cut by
                // its encoded size (escapes can make it 6× the text).
                let max = self
                    .cfg
                    .history_page_bytes
                    .min(response::MAX_SERVER_FRAME_BYTES);
                let fit = response::history_fit(id, channel, &views, keep_newest, max);
                let has_more = page.has_more || fit.len() < views.len();
                conn.outbox.push_reply(|out| {
                    response::history(out, id, channel, &views[fit], has_more);
                });
            }
            Err(f) => conn.outbox.push_reply(|out| {
                let message = if f.code == ErrorCode::Unavailable {
                    format!("history unavailable: {}", f.message)
                } else {
                    f.message.clone()
                };
                response::error(out, id, f.code, &message);
            }),
        }
    }
}

fn note_outbox(stats: &Stats, pending: usize) {
    stats.max_outbox_bytes.fetch_max(pending, Ordering::Relaxed);
}
/// What [`offer_batch`] did with one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not live in the channel, or it already has the batch.
    Skipped,
    /// The batch starts past the subscriber's cursor: it was switched to
    /// catch-up (the caller pumps it from the ring or the store).
    Gap,
    /// `messages` frames were queued; `complete` is false when the outbox
    /// budget stopped it first (a slow consumer, switched to catch-up: it
    /// pages from the ring or the store once its socket drains).
    Queued { messages: u64, complete: bool },
}

/// The per-member step of a batch's fan-out: queues the frames of `batch`
/// that follow `conn`'s cursor in the channel and fit its outbox budget,
/// and moves the cursor. One copy of this step serves the shard and
/// `bench micro` (through `bench_support`).
pub(crate) fn offer_batch(conn: &mut Conn, batch: &Batch, budget: usize) -> Offer {
    let Some(sub) = conn.subs.get_mut(&batch.channel) else {
        return Offer::Skipped;
    };
    if !matches!(sub.phase, Phase::Live) || batch.last_seq() <= sub.cursor {
        return Offer::Skipped;
    }
    if batch.first_seq > sub.cursor + 1 {
        sub.phase = Phase::CatchUp { fetching: false };
        return Offer::Gap;
    }
    let pending = conn.outbox.pending();
    let room = budget.saturating_sub(pending);
    let (bytes, upto) = batch.frames_fitting(sub.cursor, room, pending == 0);
    let messages = upto.saturating_sub(sub.cursor);
    if upto > sub.cursor {
        conn.outbox.push_bytes(bytes);
        sub.cursor = upto;
    }
    let complete = upto >= batch.last_seq();
    if !complete {
        sub.phase = Phase::CatchUp { fetching: false };
    }
    Offer::Queued { messages, complete }
}
