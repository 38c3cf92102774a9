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

use storage::{NewMessage, Page, ReadLimit, ReadRange, Seq};

use crate::auth::Identity;
use crate::batch::Batch;
use crate::config::Config;
use crate::conn::{Conn, ConnId, Phase, Sub};
use crate::hash::{owner_of, ShardId};
use crate::moderation::Blocklist;
use crate::owner::{GroupOp, JoinWaiter, Owner, Reply, SendReq};
use crate::presence::{self as presence_mod, Ask, Debounce, Queries, QueryRef};
use crate::protocol::{
    self, names::ChannelName, request::HistoryRange, response, ErrorCode, Request, WsEvent,
};
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
    /// Owner → connection shard: the head for a join.
    Joined {
        channel: Arc<str>,
        conn: ConnId,
        gen: u64,
        head: u64,
        since: Option<u64>,
        id: Option<Box<str>>,
    },
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
    },
    /// Owner → replica shard: a `typing` frame for every local member of the
    /// channel except `except` (ephemeral: dropped for members over budget).
    TypingNotice {
        channel: Arc<str>,
        except: ConnRef,
        frame: Arc<[u8]>,
    },
    /// Any shard → every shard: which of the asked users have a connection
    /// here (for a room: which users have a connection that joined it).
    PresenceAsk {
        reply: QueryRef,
        channel: Arc<str>,
        ask: Ask,
    },
    /// Answer to `PresenceAsk`.
    PresenceAnswer { query: u64, users: Vec<Arc<str>> },
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
    /// Advance a read cursor; push `read` to the other members of a DM or
    /// group when it moved. `reply`: answer (HTTP) with this request id.
    AdvanceRead {
        conn: ConnId,
        user: Arc<str>,
        channel: Arc<str>,
        seq: u64,
        reply: Option<Option<Box<str>>>,
    },
    /// Push a user's presence change to the other members of their DMs and
    /// groups.
    PresenceFanout { user: Arc<str>, online: bool },
    /// Load a group's members for a `presence` query (members only).
    PresenceMembers {
        conn: ConnId,
        user: Arc<str>,
        channel: Arc<str>,
        id: Option<Box<str>>,
    },
    /// Deliver a push job to the webhook (retries, then dead letter).
    Push(crate::push::Job),
    /// Compute a user's unread counts (`GET /v1/me/unread`).
    Unread { conn: ConnId, user: Arc<str> },
    /// Write coalesced delivered cursors.
    FlushDelivered(Vec<storage::DeliveredUpdate>),
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

/// (user, device, channel) of a delivered cursor.
type DeliveredKey = (Arc<str>, Arc<str>, Arc<str>);

/// One user's devices: device → (connection, open stamp).
type Devices = HashMap<Arc<str>, (ConnRef, u64)>;

/// Everything one shard owns.
pub(crate) struct ShardState {
    pub(crate) id: ShardId,
    pub(crate) nr_shards: usize,
    pub(crate) cfg: Arc<Config>,
    limits: protocol::Limits,
    pub(crate) conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    next_join_gen: u64,
    replicas: HashMap<Arc<str>, Replica>,
    pub(crate) owner: Owner,
    /// Devices of the users this shard owns: user → device → (connection,
    /// open stamp).
    users: HashMap<Arc<str>, Devices>,
    blocklist: Blocklist,
    pub(crate) fx: Effects,
    /// Delivered cursors reported since the last flush: (user, device,
    /// channel) → highest seq.
    delivered: HashMap<DeliveredKey, u64>,
    /// WebSocket connections per user on this shard (presence answers).
    local_users: HashMap<Arc<str>, u32>,
    /// Offline announcements waiting for the debounce (owned users).
    debounce: Debounce,
    /// Presence queries started here.
    queries: Queries,
    /// Push notices per offline owned user, waiting for their window.
    push_pending: crate::push::Pending,
    /// Shutting down: connections stop reading.
    pub(crate) draining: bool,
    pub(crate) stats: Arc<Stats>,
}

fn access(user: &str, channel: &str) -> Result<(), (ErrorCode, &'static str)> {
    match protocol::names::parse_channel(channel) {
        Ok(ChannelName::Dm { a, b }) => {
            if user == a || user == b {
                Ok(())
            } else {
                Err((
                    ErrorCode::NotMember,
                    "only the two users of a DM may use it",
                ))
            }
        }
        // Membership is checked by the group's owner (authoritative).
        Ok(ChannelName::Group(_)) => Ok(()),
        Ok(ChannelName::Room(_)) => Ok(()),
        Err(_) => Err((ErrorCode::InvalidChannel, "invalid channel name")),
    }
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
        let owner = Owner::new(cfg.push_webhook.is_some());
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
            delivered: HashMap::new(),
            local_users: HashMap::new(),
            debounce: Debounce::default(),
            queries: Queries::default(),
            push_pending: crate::push::Pending::default(),
            draining: false,
            stats,
        }
    }

    fn me(&self, conn: ConnId) -> ConnRef {
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

    /// A JSON request from an HTTP API call.
    pub(crate) fn on_text_request(&mut self, id: ConnId, text: &str) {
        self.on_request(id, text);
    }

    /// A connection ended: leaves its channels and tells the user's owner.
    pub(crate) fn close_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for channel in conn.subs.keys() {
            self.drop_member(channel, id);
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

    fn drop_member(&mut self, channel: &Arc<str>, id: ConnId) {
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
            WsEvent::Text(text) => self.on_request(id, text),
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
        for conn in self.conns.values_mut() {
            let paused = conn.reads_paused(budget);
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
            } else if !paused && now_ms.saturating_sub(conn.last_rx_ms) > limit {
                ob.request_close(4008, "idle: no frame within 2 x heartbeat_ms");
            } else if paused {
                // Silence while we do not read is not the client's fault.
                conn.last_rx_ms = now_ms;
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

    fn reply_err(&mut self, id: ConnId, req_id: Option<&str>, code: ErrorCode, message: &str) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox
                .push_reply(|out| response::error(out, req_id, code, message));
        }
    }

    fn on_request(&mut self, id: ConnId, text: &str) {
        let env = match protocol::decode_request(text, &self.limits) {
            Ok(env) => env,
            Err((req_id, e)) => {
                self.reply_err(id, req_id, e.code, &e.message);
                return;
            }
        };
        let req_id = env.id;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let per_sec = self.cfg.rate_limit_per_sec;
        let counted = per_sec > 0.0 && !matches!(env.request, Request::Ping);
        if counted
            && !conn
                .bucket
                .take(crate::util::now_ms(), per_sec, self.cfg.rate_limit_burst)
        {
            if conn.bucket.strikes >= self.cfg.rate_limit_close_after {
                conn.outbox
                    .request_close(1008, "sustained rate limit violation");
                return;
            }
            return self.reply_err(
                id,
                req_id,
                ErrorCode::RateLimited,
                "too many requests: slow down",
            );
        }
        let user = conn.user.clone();
        match env.request {
            Request::Ping => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.outbox.push_reply(|out| response::pong(out, req_id));
                }
            }
            Request::Join { channel, since } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                self.join(id, req_id, channel, since);
            }
            Request::Leave { channel } => self.leave(id, req_id, channel),
            Request::Send(s) => {
                if let Err((code, msg)) = access(&user, s.channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                if self.blocklist.blocks(&s.text) {
                    return self.reply_err(
                        id,
                        req_id,
                        ErrorCode::Forbidden,
                        "the message contains blocked content",
                    );
                }
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.sends_in_flight += 1;
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let msg = NewMessage {
                    from: conn.user.to_string(),
                    device: conn.device.to_string(),
                    client_msg_id: s.client_msg_id.into_owned(),
                    kind: s.kind,
                    text: s.text.into_owned(),
                    target: s.target,
                    media: s.media,
                    ts: 0,
                };
                let channel: Arc<str> = Arc::from(s.channel);
                let req = SendReq {
                    channel: channel.clone(),
                    reply: Reply {
                        to: self.me(id),
                        id: req_id.map(Box::from),
                    },
                    msg,
                };
                self.fx.send(
                    owner_of(&channel, self.nr_shards),
                    ShardMsg::Send(Box::new(req)),
                );
            }
            Request::History {
                channel,
                range,
                limit,
            } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                let range = match range {
                    HistoryRange::Latest => ReadRange::Latest,
                    HistoryRange::Before(s) => ReadRange::Before(Seq(s)),
                    HistoryRange::After(s) => ReadRange::After(Seq(s)),
                };
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.histories_in_flight += 1;
                }
                let member_check = channel
                    .starts_with(storage::GROUP_PREFIX)
                    .then(|| user.clone());
                self.fx.io.push(IoJob::History {
                    conn: id,
                    channel: Arc::from(channel),
                    range,
                    limit: ReadLimit {
                        messages: limit,
                        bytes: self.cfg.history_page_bytes,
                    },
                    id: req_id.map(Box::from),
                    member_check,
                });
            }
            Request::Typing { channel } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                let from = self.me(id);
                self.fx.send(
                    owner_of(channel, self.nr_shards),
                    ShardMsg::Typing {
                        channel: Arc::from(channel),
                        user,
                        from,
                    },
                );
            }
            Request::Read { channel, seq } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                let http = self.conns.get(&id).is_some_and(|c| c.http);
                self.fx.io.push(IoJob::AdvanceRead {
                    conn: id,
                    user,
                    channel: Arc::from(channel),
                    seq,
                    // Only the HTTP API answers a read (204).
                    reply: http.then(|| req_id.map(Box::from)),
                });
            }
            Request::Delivered { channel, seq } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                // Coalesced: one store write per shard per second for all
                // of them (a big room must not cost a write per member).
                if let Some(conn) = self.conns.get(&id) {
                    let key = (user, conn.device.clone(), Arc::<str>::from(channel));
                    let e = self.delivered.entry(key).or_insert(0);
                    *e = (*e).max(seq);
                }
            }
            Request::Presence { channel } => {
                if let Err((code, msg)) = access(&user, channel) {
                    return self.reply_err(id, req_id, code, msg);
                }
                let channel: Arc<str> = Arc::from(channel);
                let req_id = req_id.map(Box::from);
                match protocol::names::parse_channel(&channel) {
                    Ok(ChannelName::Dm { a, b }) => {
                        let users = Arc::new(vec![a.to_string(), b.to_string()]);
                        self.presence_query(id, channel.clone(), req_id, Ask::Users(users));
                    }
                    Ok(ChannelName::Group(_)) => self.fx.io.push(IoJob::PresenceMembers {
                        conn: id,
                        user,
                        channel,
                        id: req_id,
                    }),
                    _ => self.presence_query(id, channel, req_id, Ask::RoomMembers),
                }
            }
        }
    }

    fn join(&mut self, id: ConnId, req_id: Option<&str>, channel: &str, since: Option<u64>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(sub) = conn.subs.get_mut(channel) {
            match &mut sub.phase {
                Phase::Joining { ids } => ids.push(req_id.map(Box::from)),
                _ => {
                    let head = self
                        .replicas
                        .get(channel)
                        .map_or(sub.cursor, |r| r.last_seq.max(sub.cursor));
                    conn.outbox
                        .push_reply(|out| response::joined(out, req_id, channel, head));
                }
            }
            return;
        }
        let channel: Arc<str> = match self.replicas.get_key_value(channel) {
            Some((k, _)) => k.clone(),
            None => Arc::from(channel),
        };
        let gen = self.next_join_gen;
        self.next_join_gen += 1;
        conn.subs.insert(
            channel.clone(),
            Sub {
                gen,
                cursor: 0,
                phase: Phase::Joining { ids: Vec::new() },
            },
        );
        self.replicas
            .entry(channel.clone())
            .or_insert_with(Replica::new)
            .members
            .insert(id);
        let user = conn.user.clone();
        self.fx.send(
            owner_of(&channel, self.nr_shards),
            ShardMsg::Subscribe {
                channel,
                conn: id,
                gen,
                user,
                since,
                id: req_id.map(Box::from),
            },
        );
    }

    fn leave(&mut self, id: ConnId, req_id: Option<&str>, channel: &str) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let removed = conn.subs.remove_entry(channel);
        if let Some((
            _,
            Sub {
                phase: Phase::Joining { ids },
                ..
            },
        )) = &removed
        {
            // Repeated joins waiting with the first: answered like it will be.
            for rid in ids {
                conn.outbox.push_reply(|out| {
                    response::error(
                        out,
                        rid.as_deref(),
                        ErrorCode::BadRequest,
                        "left the channel before the join completed",
                    );
                });
            }
        }
        conn.outbox
            .push_reply(|out| response::left(out, req_id, channel));
        if let Some((key, _)) = removed {
            self.drop_member(&key, id);
        }
    }

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
            } => self.on_joined(&channel, conn, gen, head, since, id),
            ShardMsg::JoinFailed { channel, conn, gen } => self.on_join_failed(&channel, conn, gen),
            ShardMsg::ToConn {
                conn,
                frame,
                send_done,
            } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if send_done {
                        c.sends_in_flight = c.sends_in_flight.saturating_sub(1);
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
            ShardMsg::PresenceAsk {
                reply,
                channel,
                ask,
            } => {
                let users = self.local_presence(&channel, &ask);
                self.fx.send(
                    reply.shard,
                    ShardMsg::PresenceAnswer {
                        query: reply.query,
                        users,
                    },
                );
            }
            ShardMsg::PresenceAnswer { query, users } => {
                if let Some(q) = self.queries.answer(query, users) {
                    let online: Vec<&str> = q
                        .online
                        .iter()
                        .take(presence_mod::MAX_LISTED)
                        .map(|u| &**u)
                        .collect();
                    if let Some(c) = self.conns.get_mut(&q.conn) {
                        c.outbox.push_reply(|out| {
                            response::presence(
                                out,
                                q.id.as_deref(),
                                &q.channel,
                                &online,
                                q.online.len(),
                            );
                        });
                    }
                }
            }
            ShardMsg::Typing {
                channel,
                user,
                from,
            } => {
                let window = self.cfg.typing_window_ms;
                self.owner.on_typing(
                    channel,
                    &user,
                    from,
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

    /// Asks every shard (this one included) and answers once all replied.
    pub(crate) fn presence_query(
        &mut self,
        conn: ConnId,
        channel: Arc<str>,
        id: Option<Box<str>>,
        ask: Ask,
    ) {
        let query = self
            .queries
            .start(conn, channel.clone(), id, self.nr_shards);
        for shard in 0..self.nr_shards {
            self.fx.send(
                ShardId(shard),
                ShardMsg::PresenceAsk {
                    reply: QueryRef {
                        shard: self.id,
                        query,
                    },
                    channel: channel.clone(),
                    ask: ask.clone(),
                },
            );
        }
    }

    /// A group's members for a `presence` query arrived.
    pub(crate) fn on_presence_members(
        &mut self,
        conn: ConnId,
        channel: Arc<str>,
        id: Option<Box<str>>,
        result: Result<Vec<String>, StoreFailure>,
    ) {
        match result {
            Ok(members) => self.presence_query(conn, channel, id, Ask::Users(Arc::new(members))),
            Err(f) => self.reply_err(conn, id.as_deref(), f.code, &f.message),
        }
    }

    /// This shard's part of a presence query.
    fn local_presence(&self, channel: &Arc<str>, ask: &Ask) -> Vec<Arc<str>> {
        match ask {
            Ask::RoomMembers => {
                let Some(rep) = self.replicas.get(channel) else {
                    return Vec::new();
                };
                let mut users: Vec<Arc<str>> = rep
                    .members
                    .iter()
                    .filter_map(|c| self.conns.get(c))
                    .filter(|c| !c.http)
                    .map(|c| c.user.clone())
                    .collect();
                users.sort();
                users.dedup();
                users
            }
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

    /// Starts `GET /v1/me/unread` for an HTTP call.
    pub(crate) fn unread_request(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            self.fx.io.push(IoJob::Unread {
                conn,
                user: c.user.clone(),
            });
        }
    }

    /// The unread counts were read.
    pub(crate) fn on_unread(
        &mut self,
        conn: ConnId,
        result: Result<Vec<(String, u64)>, StoreFailure>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match result {
            Ok(counts) => {
                let unread: serde_json::Map<String, serde_json::Value> = counts
                    .into_iter()
                    .map(|(ch, n)| (ch, serde_json::Value::from(n)))
                    .collect();
                let body = serde_json::json!({"type": "unread", "unread": unread}).to_string();
                c.outbox.push_reply(|out| {
                    protocol::ws::encode_frame(
                        out,
                        protocol::ws::WsOpcode::Text,
                        body.as_bytes(),
                        None,
                    );
                });
            }
            Err(f) => c
                .outbox
                .push_reply(|out| response::error(out, None, f.code, &f.message)),
        }
    }

    /// Takes the delivered cursors gathered since the last flush.
    pub(crate) fn flush_delivered(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        let updates = self
            .delivered
            .drain()
            .map(|((u, d, c), s)| (u.to_string(), d.to_string(), c.to_string(), Seq(s)))
            .collect();
        self.fx.io.push(IoJob::FlushDelivered(updates));
    }

    /// A read cursor was advanced: answer an HTTP caller, and tell the other
    /// members' connections when it moved.
    pub(crate) fn on_read_advanced(
        &mut self,
        conn: ConnId,
        channel: &str,
        user: &Arc<str>,
        reply: Option<Option<Box<str>>>,
        result: Result<Option<(u64, Vec<String>)>, StoreFailure>,
    ) {
        match result {
            Ok(moved) => {
                if let (Some(rid), Some(c)) = (&reply, self.conns.get_mut(&conn)) {
                    c.outbox
                        .push_reply(|out| response::done(out, rid.as_deref()));
                }
                if let Some((seq, others)) = moved {
                    let mut frame = Vec::new();
                    response::read(&mut frame, channel, user, seq);
                    let frame: Arc<[u8]> = Arc::from(frame);
                    self.fx.send_to_users(others, &frame, self.nr_shards);
                }
            }
            Err(f) => {
                // A WebSocket `read` has no reply; an HTTP one gets the error.
                if let (Some(rid), Some(c)) = (&reply, self.conns.get_mut(&conn)) {
                    c.outbox
                        .push_reply(|out| response::error(out, rid.as_deref(), f.code, &f.message));
                }
            }
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

    fn on_joined(
        &mut self,
        channel: &Arc<str>,
        conn_id: ConnId,
        gen: u64,
        head: u64,
        since: Option<u64>,
        id: Option<Box<str>>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        // An answer for an earlier join of this connection (it left and
        // joined again meanwhile) must not be applied to the new one; its
        // request still gets its answer.
        let Some(sub) = conn.subs.get_mut(channel).filter(|s| s.gen == gen) else {
            conn.outbox
                .push_reply(|out| response::joined(out, id.as_deref(), channel, head));
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
        result: Result<Page, StoreFailure>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.histories_in_flight = conn.histories_in_flight.saturating_sub(1);
        match result {
            Ok(page) => {
                let views: Vec<_> = page
                    .messages
                    .iter()
                    .map(response::MsgView::from_stored)
                    .collect();
                conn.outbox.push_reply(|out| {
                    response::history(out, id, channel, &views, page.has_more);
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
