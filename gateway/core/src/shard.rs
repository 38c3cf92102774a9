//! [`ShardState`]: everything one shard owns, and the one door into it.
//!
//! A shard plays four roles, each its own piece of state: the **channel
//! owner** of the channels that hash to it ([`crate::owner::Owner`]), the
//! **replicas** of the channels its connections joined (`fanout.rs`), the
//! **user owner** of the users that hash to it ([`crate::users::UserOwner`]),
//! and the **connections** it accepted (`conn.rs`, `dispatch.rs`). This file
//! holds them together: the connection lifecycle, the routing of every
//! [`ShardMsg`] and [`JobDone`] to its role, and what the runtime's drivers
//! may do with a connection's outbox.
//!
//! Every entry point takes `now` (ms since the epoch) and does no I/O: what
//! must happen next goes into [`Effects`] ([`ShardState::take_effects`]), and
//! the connections whose outbox changed into the woken list
//! ([`ShardState::take_woken`]). The runtime applies both; the
//! deterministic simulator (`tests/simulation.rs`) does the same in one
//! thread with virtual time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_model::Channel;
use chat_proto::auth::Identity;
use chat_proto::{self as protocol, response, ErrorCode, WsEvent};

use crate::conn::{CloseRequest, Conn, Phase};
use crate::hash::owner_of;
use crate::presence::{self as presence_mod, Ask};
pub use crate::state::ShardState;
use crate::users::UserOwner;
use crate::vocab::{
    Answer, ConnId, Effects, IoJob, JobDone, PresenceScope, Reply, ShardId, ShardMsg,
};

/// What a driver needs to know about its connection's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// Bytes waiting to be written.
    pub pending: usize,
    /// Drop the socket now (the peer took nothing for too long, or a close
    /// could not be flushed).
    pub kill: bool,
    /// A close was requested (the close frame is not queued yet).
    pub closing: Option<CloseRequest>,
    /// The close frame is queued (nothing more is accepted).
    pub close_queued: bool,
    /// Stop reading the socket: the waiting requests reached their bound,
    /// or a close was requested.
    pub reads_paused: bool,
    /// Requests wait for admission.
    pub has_queued: bool,
}

/// What [`ShardState::write_pass`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePass {
    /// Everything queued went out and nothing else waits: the connection
    /// is parked (its outbox's next change wakes it).
    Parked,
    /// The socket took less than was queued: parked too, the rest waits
    /// for the socket to become writable.
    Blocked,
    /// More than writing is due (a kill, a close, requests waiting for
    /// admission, a write error, or more rounds of catch-up than one pass
    /// makes): the driver's general loop takes over.
    Busy,
}

/// How soon a connection given to [`ShardState::prefetch`] is serviced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Soon {
    /// After a few others.
    Far,
    /// Next.
    Near,
}

/// Slices one [`ShardState::write_pass`] call hands to `write` (64
/// `IoSlice`s are 1 KiB of stack; more pieces go in the next call).
pub const WRITE_PASS_PIECES: usize = 64;

/// Rounds of write, drain and catch-up one pass makes before it leaves the
/// rest to the driver's loop (which yields between connections).
const WRITE_PASS_ROUNDS: usize = 8;

impl ShardState {
    // ----- what the runtime takes ----------------------------------------

    /// What the handlers since the last call asked for.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::replace(
            &mut self.fx,
            Effects {
                nr_shards: self.nr_shards,
                ..Effects::default()
            },
        )
    }

    /// Whether the handlers asked for nothing yet.
    #[must_use]
    pub fn effects_pending(&self) -> bool {
        !self.fx.out.is_empty() || !self.fx.io.is_empty() || self.fx.commit_ready
    }

    /// The connections whose outbox changed (bytes queued, a close asked)
    /// since the last call: their drivers have work.
    pub fn take_woken(&mut self) -> Vec<ConnId> {
        self.signal.take_woken()
    }

    /// Like [`ShardState::take_woken`], into `into` (cleared first): the
    /// runtime hands the same buffer back every turn, so a big room's
    /// 10,000 wake-ups per batch do not grow a fresh list each time.
    pub fn take_woken_into(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(&mut *self.signal.woken.borrow_mut(), into);
    }

    /// Whether the runtime has anything to apply: effects, committed
    /// messages to count, or woken connections.
    #[must_use]
    pub fn has_work(&self) -> bool {
        self.effects_pending()
            || self.fx.stats_committed > 0
            || !self.signal.woken.borrow().is_empty()
    }

    // ----- connections ---------------------------------------------------

    fn new_conn(&mut self, identity: &Identity, now: u64) -> (ConnId, Conn) {
        let id = self.conns.next_id();
        let conn = Conn::new(
            id,
            Arc::from(identity.user.as_str()),
            Arc::from(identity.device.as_str()),
            self.signal.clone(),
            now,
        );
        (id, conn)
    }

    /// A WebSocket (or SSE) session starts: registers it, queues `hello`,
    /// and tells the user's owner a device connected.
    pub fn open_conn(&mut self, identity: &Identity, now: u64) -> ConnId {
        self.set_now(now);
        let (id, mut conn) = self.new_conn(identity, now);
        conn.expires_ms = identity.expires_ms;
        let user = conn.user.clone();
        let device = conn.device.clone();
        let session = format!(
            "{:x}-{:x}-{:x}",
            now,
            self.id.0,
            crate::hash::fnv1a_64(&id.0.to_le_bytes()) ^ now.rotate_left(17)
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
                self.cfg.node_id.as_deref(),
            );
        });
        let placed = self.conns.insert_new(conn);
        debug_assert_eq!(placed, id);
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

    /// An HTTP API call starts: a session without hello or device, whose
    /// answer is kept typed ([`ShardState::take_http_answer`]).
    pub fn open_http(&mut self, identity: &Identity, now: u64) -> ConnId {
        self.set_now(now);
        let (id, mut conn) = self.new_conn(identity, now);
        conn.http = true;
        let placed = self.conns.insert_new(conn);
        debug_assert_eq!(placed, id);
        id
    }

    /// The connection negotiated permessage-deflate in its upgrade: from now
    /// on committed messages reach it as the batches' shared compressed
    /// frames (replies and other events stay plain, which RFC 7692 allows
    /// per message).
    pub fn use_permessage_deflate(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.deflate = true;
        }
    }

    /// A connection ended: leaves its channels and tells the user's owner.
    pub fn close_conn(&mut self, id: ConnId, now: u64) {
        self.set_now(now);
        let conn = self.conns.remove(&id);
        self.connection_closed(id, conn);
    }

    /// As [`ShardState::close_conn`], but the connection's slot — its id's
    /// place in the driver's own per-connection table — goes to no other
    /// connection until [`ShardState::release_slot`]: for a driver that
    /// keeps the socket after the connection closed (the ring's lingering
    /// session).
    pub fn close_conn_held(&mut self, id: ConnId, now: u64) {
        self.set_now(now);
        let conn = self.conns.remove_held(&id);
        self.connection_closed(id, conn);
    }

    /// Lets the slot [`ShardState::close_conn_held`] kept go to a later
    /// connection (once; later calls do nothing).
    pub fn release_slot(&mut self, id: ConnId) {
        self.conns.release(&id);
    }

    fn connection_closed(&mut self, id: ConnId, conn: Option<Conn>) {
        let Some(conn) = conn else {
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

    /// Whether the connection is open.
    #[must_use]
    pub fn is_open(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// Open connections (WebSocket, SSE and HTTP calls).
    #[must_use]
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// One WebSocket event from a connection's decoder.
    pub fn on_ws_event(&mut self, id: ConnId, ev: WsEvent<'_>, now: u64) {
        self.set_now(now);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_rx_ms = now;
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
    pub fn on_ws_error(&mut self, id: ConnId, code: u16, reason: &'static str, now: u64) {
        self.set_now(now);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox.request_close(code, reason);
        }
    }

    /// A JSON request of an HTTP API call (or an SSE stream's join).
    pub fn on_request(&mut self, id: ConnId, text: &str, now: u64) {
        self.set_now(now);
        self.on_text(id, text);
    }

    /// Offers the connection's waiting requests again (the driver calls it
    /// before it reads).
    pub fn admit_queued(&mut self, id: ConnId, now: u64) {
        self.set_now(now);
        self.pump_queue(id);
    }

    /// The SSE stream of `id` is alive (its client cannot send frames).
    pub fn keep_alive(&mut self, id: ConnId, now: u64) -> bool {
        self.set_now(now);
        match self.conns.get_mut(&id) {
            Some(c) => {
                c.last_rx_ms = now;
                c.outbox.wake();
                true
            }
            None => false,
        }
    }

    // ----- the outbox, as the driver sees it ------------------------------

    /// The state of a connection's outbox and close; `None` once it is gone.
    #[must_use]
    pub fn session(&self, id: ConnId) -> Option<SessionState> {
        let c = self.conns.get(&id)?;
        let ob = &c.outbox;
        Some(SessionState {
            pending: ob.pending(),
            kill: ob.kill,
            closing: if ob.close_queued { None } else { ob.close },
            close_queued: ob.close_queued,
            reads_paused: self.draining
                || c.drain_due
                || ob.close.is_some()
                || c.reads_paused(self.cfg.max_queued_request_bytes),
            has_queued: !c.queued.is_empty(),
        })
    }

    /// The bytes waiting for the socket, in order, as at most `out.len()`
    /// slices (the connection's own bytes and the shared frames it queued
    /// by reference, `conn.rs`); returns how many it filled (0 when
    /// nothing waits or the connection is gone). One `sendmsg` of them is
    /// one write of everything queued.
    pub fn output<'a>(&'a self, id: ConnId, out: &mut [std::io::IoSlice<'a>]) -> usize {
        self.conns.get(&id).map_or(0, |c| c.outbox.output(out))
    }

    /// The first contiguous piece of what waits for the socket (empty when
    /// nothing does or the connection is gone). Pieces hold whole frames.
    #[must_use]
    pub fn output_front(&self, id: ConnId) -> &[u8] {
        self.conns.get(&id).map_or(&[], |c| c.outbox.output_front())
    }

    /// Everything that waits for the socket, copied (for tests and for
    /// writers that take one buffer).
    #[must_use]
    pub fn output_bytes(&self, id: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(c) = self.conns.get(&id) {
            c.outbox.output_to(&mut out);
        }
        out
    }

    /// The driver wrote `n` bytes of [`ShardState::output`]; when that
    /// emptied the outbox, catch-ups continue.
    pub fn wrote(&mut self, id: ConnId, n: usize, now: u64) {
        self.set_now(now);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.outbox.wrote(n) {
            self.on_drained(id);
        }
    }

    /// Starts loading connection `id`'s state into the cache for a driver
    /// that will service it soon: `Far` (a few connections ahead) the
    /// connection itself; `Near` (next), its queued runs and joined
    /// channels, whose addresses the connection — loaded by then — holds.
    /// A hint: it changes nothing.
    pub fn prefetch(&self, id: ConnId, when: Soon) {
        match when {
            Soon::Far => self.conns.prefetch(&id),
            Soon::Near => {
                if let Some(c) = self.conns.get(&id) {
                    c.outbox.prefetch();
                    c.subs.prefetch();
                }
            }
        }
    }

    /// The write-only service of a woken connection whose socket has
    /// nothing to read (the common case of a member of a busy room): writes
    /// everything queued through `write` (at most [`WRITE_PASS_PIECES`]
    /// slices per call, as [`ShardState::output`] gives them), accounts
    /// for it as [`ShardState::wrote`] does, continues the catch-ups a
    /// drained outbox unblocks and writes what they queued, and parks the
    /// connection when nothing else waits — with one lookup of the
    /// connection per round where the driver's general loop makes several
    /// per step. `write` returns what one `sendmsg` would.
    ///
    /// Anything beyond writing — a kill, a requested close, requests
    /// waiting for admission, a write error — is left to the driver's loop
    /// ([`WritePass::Busy`]); what was written by then is accounted for.
    pub fn write_pass(
        &mut self,
        id: ConnId,
        now: u64,
        mut write: impl FnMut(&[std::io::IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> WritePass {
        self.set_now(now);
        for _ in 0..WRITE_PASS_ROUNDS {
            let Some(c) = self.conns.get_mut(&id) else {
                return WritePass::Busy;
            };
            if c.outbox.kill || c.outbox.close.is_some() || !c.queued.is_empty() {
                return WritePass::Busy;
            }
            let mut drained = false;
            loop {
                let mut iov = [std::io::IoSlice::new(&[]); WRITE_PASS_PIECES];
                let pieces = c.outbox.output(&mut iov);
                if pieces == 0 {
                    break;
                }
                match write(&iov[..pieces]) {
                    Ok(0) => return WritePass::Busy,
                    Ok(n) => drained = c.outbox.wrote(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        c.outbox.unwake();
                        return WritePass::Blocked;
                    }
                    Err(_) => return WritePass::Busy,
                }
            }
            if !drained {
                // Nothing was queued this round: done.
                c.outbox.unwake();
                return WritePass::Parked;
            }
            self.on_drained(id);
        }
        WritePass::Busy
    }

    /// The driver is about to wait: the next change of this outbox wakes
    /// it again.
    pub fn park(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.outbox.unwake();
        }
    }

    /// A close was requested and everything owed went out (the outbox is
    /// empty, no send waits for its ack): queues the WebSocket close frame
    /// and returns its code. After it nothing more is queued.
    pub fn queue_close_frame(&mut self, id: ConnId) -> Option<u16> {
        let req = self.ready_to_close(id)?;
        let c = self.conns.get_mut(&id)?;
        let mut frame = Vec::new();
        protocol::ws::encode_close(&mut frame, req.code, req.reason, None);
        c.outbox.set_only(frame);
        Some(req.code)
    }

    /// Like [`ShardState::queue_close_frame`] for a transport that writes
    /// its own close (SSE): marks the close as queued and returns it.
    pub fn take_close(&mut self, id: ConnId) -> Option<CloseRequest> {
        self.ready_to_close(id)
    }

    fn ready_to_close(&mut self, id: ConnId) -> Option<CloseRequest> {
        let c = self.conns.get_mut(&id)?;
        let req = c.outbox.close?;
        if c.outbox.close_queued || c.outbox.pending() > 0 || c.in_flight.sends > 0 {
            // Acks of sends already taken go out before the close (the
            // periodic check cuts a close that waits past its deadline).
            return None;
        }
        c.outbox.close_queued = true;
        Some(req)
    }

    /// The typed answer of an HTTP call, once it came.
    pub fn take_http_answer(&mut self, id: ConnId) -> Option<Answer> {
        self.conns.get_mut(&id)?.http_answer.take().map(|a| *a)
    }

    // ----- answers ---------------------------------------------------------

    /// Answers request `req_id` of connection `id` the way it speaks: a
    /// WebSocket frame in its outbox, or a typed answer for an HTTP call.
    pub(crate) fn answer(&mut self, id: ConnId, req_id: Option<&str>, answer: Answer) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.http {
            conn.http_answer = Some(Box::new(answer));
            conn.outbox.wake();
            return;
        }
        conn.outbox
            .push_reply(|out| crate::answers::encode(out, req_id, &answer));
    }

    pub(crate) fn reply_err(
        &mut self,
        id: ConnId,
        req_id: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) {
        self.answer(id, req_id, Answer::error(code, message));
    }

    // ----- time ------------------------------------------------------------

    /// The once-a-second work: every connection's checks, presence
    /// debounce and push windows of the users owned here, and forgetting
    /// per-user limits at rest.
    pub fn tick(&mut self, now: u64) {
        self.set_now(now);
        self.check_conns(now);
        self.users.tick(now, &mut self.fx);
        self.user_limits
            .sweep(now, self.cfg.rate_limit_per_sec, self.cfg.rate_limit_burst);
    }

    /// Token expiry (4001), silence (4008: no frame for 2 × heartbeat,
    /// unless its socket is unread because its requests wait for work in
    /// flight here), a peer that takes no bytes for 2 × heartbeat (cut off),
    /// and a close that could not be flushed in time (cut off).
    pub(crate) fn check_conns(&mut self, now_ms: u64) {
        let limit = 2 * self.cfg.heartbeat_ms;
        let budget = self.cfg.outbox_budget_bytes;
        let max_queued = self.cfg.max_queued_request_bytes;
        let close_flush = self.cfg.close_flush_ms;
        for conn in self.conns.values_mut() {
            let paused = conn.reads_paused(max_queued);
            let ob = &mut conn.outbox;
            if ob.close.is_some() {
                if now_ms.saturating_sub(ob.close_requested_ms) > close_flush {
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

    // ----- shutdown --------------------------------------------------------

    /// Shutting down: connections stop reading (their drivers are woken to
    /// see it).
    pub fn begin_drain(&mut self) {
        self.draining = true;
        for conn in self.conns.values_mut() {
            conn.outbox.wake();
        }
    }

    /// Whether shutting down.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The drain window begins: every open WebSocket and SSE session (not
    /// HTTP calls, which end by themselves) gets a close time in `now ..
    /// now + window_ms` ([`crate::drain::DrainSchedule`]). Returns how many.
    pub fn start_drain_window(&mut self, now: u64, window_ms: u64, seed: u64) -> usize {
        self.set_now(now);
        let mut sessions: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.http)
            .map(|(id, _)| id)
            .collect();
        // The map's order is not the connections' order; sorting first makes
        // the schedule depend on the seed alone.
        sessions.sort_unstable_by_key(|c| c.0);
        let schedule = crate::drain::DrainSchedule::new(sessions, now, window_ms, seed);
        let n = schedule.len();
        self.drain_schedule = Some(schedule);
        n
    }

    /// Closes with 1001 the sessions whose drain time came by `now`. A
    /// session whose time came stops being read at once, and is closed as
    /// soon as it has no send in flight and no request waiting — so every
    /// send it made is acked before its close frame, and a client never has
    /// to guess whether a send it made just before the close went through.
    /// Returns how many were asked to close now; sessions already gone are
    /// skipped.
    pub fn drain_step(&mut self, now: u64) -> usize {
        self.set_now(now);
        if let Some(schedule) = self.drain_schedule.as_mut() {
            for (_, id) in schedule.due(now) {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.drain_due = true;
                    conn.outbox.wake();
                    self.drain_waiting.push(*id);
                }
            }
        }
        let mut closed = 0;
        let conns = &mut self.conns;
        self.drain_waiting.retain(|id| {
            let Some(conn) = conns.get_mut(id) else {
                return false;
            };
            if conn.in_flight.sends > 0 || !conn.queued.is_empty() {
                return true;
            }
            conn.outbox
                .request_close(1001, "server draining: reconnect after a random delay");
            closed += 1;
            false
        });
        closed
    }

    /// Sessions of the drain window not asked to close yet (not due, or
    /// due and waiting for their acks).
    #[must_use]
    pub fn drain_remaining(&self) -> usize {
        self.drain_schedule
            .as_ref()
            .map_or(0, crate::drain::DrainSchedule::remaining)
            + self.drain_waiting.len()
    }

    /// Closes every connection with `code` (after what is queued).
    pub fn close_all(&mut self, code: u16, reason: &'static str, now: u64) {
        self.set_now(now);
        for conn in self.conns.values_mut() {
            conn.outbox.request_close(code, reason);
        }
    }

    /// Whether the owner has nothing pending or being committed.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.owner.is_quiet()
    }

    // ----- commits -------------------------------------------------------

    /// Takes everything ready into one commit (at most one in flight): the
    /// job for the committer. The runtime calls it once a turn's work is in
    /// after [`Effects::commit_ready`].
    pub fn take_commit(&mut self, now: u64) -> Option<IoJob> {
        self.set_now(now);
        let max = self.cfg.commit_max_messages;
        let max_bytes = self.cfg.commit_max_bytes;
        self.owner
            .take_commit(max, max_bytes, now)
            .map(IoJob::Append)
    }

    // ----- messages from shards --------------------------------------------

    /// Handles one message from shard `from` (possibly this one).
    pub fn on_msg(&mut self, from: ShardId, msg: ShardMsg, now: u64) {
        self.set_now(now);
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
                crate::owner::JoinWaiter {
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
            ShardMsg::Unsubscribe { channel } => {
                self.owner.on_unsubscribe(from, &channel, &mut self.fx);
            }
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
            ShardMsg::Answer {
                conn,
                id,
                answer,
                send_done,
            } => {
                if send_done {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.in_flight.sends = c.in_flight.sends.saturating_sub(1);
                    }
                }
                self.answer(conn, id.as_deref(), answer);
            }
            ShardMsg::ToConn { conn, frame } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outbox.push_bytes(&frame);
                }
            }
            ShardMsg::Batch(batch) => self.on_batch(&batch),
            ShardMsg::Advanced { channel, head } => self.advance_replica(&channel, head),
            ShardMsg::RemoteCommit {
                channel,
                messages,
                last,
            } => {
                self.owner
                    .on_remote_commit(channel, &messages, last, &mut self.fx);
            }
            ShardMsg::DeviceUp {
                user,
                device,
                conn,
                stamp,
            } => self
                .users
                .device_up(user, device, conn, stamp, &mut self.fx),
            ShardMsg::DeviceDown { user, device, conn } => {
                self.users.device_down(user, &device, conn, now);
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
                    if let Some(c) = self.conns.get_mut(&q.conn) {
                        c.in_flight.presence = c.in_flight.presence.saturating_sub(1);
                    }
                    let count = q.count.unwrap_or(q.online.len());
                    let online = q
                        .online
                        .into_iter()
                        .take(presence_mod::MAX_LISTED)
                        .collect();
                    let answer = Answer::Presence {
                        channel: q.channel,
                        online,
                        count,
                    };
                    self.answer(q.conn, q.id.as_deref(), answer);
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
                    }
                    self.answer(q.conn, q.id.as_deref(), Answer::error(code, message));
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
            } => {
                let window = self.cfg.typing_window_ms;
                self.owner
                    .on_typing(channel, &user, from, now, window, &mut self.fx);
            }
            ShardMsg::TypingNotice {
                channel,
                except,
                frame,
            } => self.on_typing_notice(&channel, except, &frame),
            ShardMsg::RemoteTyping { channel, user } => {
                self.owner.on_remote_typing(channel, &user, &mut self.fx);
            }
            ShardMsg::RemotePresence { user, online } => {
                self.users.remote_presence(user, online, &mut self.fx);
            }
            ShardMsg::Group {
                channel,
                actor,
                op,
                reply,
            } => self.owner.on_group(channel, actor, op, reply, &mut self.fx),
            ShardMsg::Kick { channel, user } => self.kick(&channel, &user),
            ShardMsg::MembersChanged { channel } => {
                self.owner.on_members_changed(channel, &mut self.fx);
            }
            ShardMsg::Notify { user, notice } => self.users.notify(user, notice, now),
            ShardMsg::ToUser { user, frame } => self.users.to_user(&user, &frame, &mut self.fx),
            ShardMsg::Close { conn, code, reason } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outbox.request_close(code, reason);
                }
            }
        }
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

    // ----- finished jobs -----------------------------------------------------

    /// A job this shard asked for finished.
    pub fn on_job_done(&mut self, done: JobDone, now: u64) {
        self.set_now(now);
        match done {
            JobDone::Appended { appends, result } => {
                self.owner.on_committed(appends, result, &mut self.fx);
            }
            JobDone::HeadLoaded { channel, result } => {
                self.owner.on_head_loaded(channel, result, &mut self.fx);
            }
            JobDone::NodeSubscribed {
                channel,
                token,
                result,
            } => {
                self.owner
                    .on_node_subscribed(channel, token, result, &mut self.fx);
            }
            JobDone::NodeUnsubscribed { channel, result } => {
                if let Err(e) = result {
                    tracing::warn!(channel = %channel, error = %e, "node unsubscribe failed; the cluster keeps sending notices until this node stops");
                }
            }
            JobDone::CatchUpPage {
                conn,
                channel,
                gen,
                result,
            } => self.on_catchup_page(conn, &channel, gen, result),
            JobDone::CatchUpRetry { conn, channel, gen } => {
                self.on_catchup_retry(conn, &channel, gen);
            }
            JobDone::TiersDue { slot } => self.on_tiers_due(slot),
            JobDone::History {
                conn,
                channel,
                id,
                keep_newest,
                result,
            } => self.on_history(conn, &channel, id, keep_newest, result),
            JobDone::ReadChecked {
                conn,
                user,
                channel,
                seq,
                id,
                result,
            } => self.on_read_checked(conn, user, channel, seq, id, result),
            JobDone::PresenceTargets {
                user,
                online,
                scope,
                result,
            } => {
                match result {
                    Ok(targets) => {
                        UserOwner::on_presence_targets(&user, online, targets, &mut self.fx);
                    }
                    // This node's state is written again at the next tick
                    // (idempotent); an announcement alone is not retried.
                    Err(e) => {
                        tracing::warn!(user = %user, online, error = %e, "presence change not recorded or announced");
                        if scope == PresenceScope::Node {
                            self.users.presence_unrecorded(user.clone());
                        }
                    }
                }
                self.users.presence_done(&user, scope, &mut self.fx);
            }
            JobDone::Pushed | JobDone::TypingSent | JobDone::ReadsSent => {}
            JobDone::PresenceOnline { reply, users } => self.fx.send(
                reply.shard,
                ShardMsg::PresenceAnswer {
                    query: reply.query,
                    users,
                    count: None,
                },
            ),
            JobDone::Unread { conn, result } => {
                let answer = match result {
                    Ok(counts) => Answer::Unread(counts),
                    Err(e) => Answer::error(e.code(), e.to_string()),
                };
                self.answer(conn, None, answer);
            }
            JobDone::Channels { conn, result } => {
                let answer = match result {
                    Ok(list) => Answer::Channels(list),
                    Err(e) => Answer::error(e.code(), e.to_string()),
                };
                self.answer(conn, None, answer);
            }
            JobDone::CursorsFlushed { result, retry } => self.on_cursors_flushed(result, retry),
            JobDone::MembersLoaded { channel, result } => {
                self.owner.on_members_loaded(channel, result, &mut self.fx);
            }
            JobDone::GroupWritten {
                channel,
                op,
                reply,
                result,
            } => self
                .owner
                .on_group_written(channel, op, reply, result, &mut self.fx),
        }
    }

    // ----- HTTP calls that are not requests ---------------------------------

    /// Starts a membership change of an HTTP call: sent to the group's
    /// owner, answered typed.
    pub fn group_request(
        &mut self,
        conn: ConnId,
        channel: Channel,
        op: crate::vocab::GroupOp,
        now: u64,
    ) {
        self.set_now(now);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let actor = c.user.clone();
        let reply = Reply {
            to: self.me(conn),
            id: None,
        };
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

    // ----- per-user limits of HTTP calls ------------------------------------

    /// Starts an HTTP call of `user` (`max_http_calls_per_user` on this
    /// shard): false when the user is at the limit.
    pub fn start_http_call(&mut self, user: &Arc<str>) -> bool {
        let max = self.cfg.max_http_calls_per_user;
        self.user_limits.start_http_call(user, max)
    }

    /// An HTTP call of `user` ended.
    pub fn end_http_call(&mut self, user: &str) {
        self.user_limits.end_http_call(user);
    }

    /// Counts a group creation of `user` at `now` against
    /// `max_groups_created_per_hour`; false when over.
    pub fn take_group_creation(&mut self, user: &Arc<str>, now: u64) -> bool {
        let max = self.cfg.max_groups_created_per_hour;
        self.user_limits.take_group_creation(user, now, max)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;
    use crate::stats::Stats;
    use std::io::{ErrorKind, IoSlice};

    fn shard_with_conn() -> (ShardState, ConnId) {
        let mut st = ShardState::new(
            ShardId(0),
            1,
            Arc::new(Config::default()),
            Arc::new(Stats::default()),
        );
        let id = Identity {
            user: "alice".into(),
            device: "d".into(),
            expires_ms: None,
        };
        let c = st.open_conn(&id, 1_000);
        st.fx = Effects::default();
        (st, c)
    }

    /// A socket that takes at most `room` bytes, then would block.
    fn socket(
        room: usize,
        got: &mut Vec<u8>,
    ) -> impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize> + '_ {
        let mut room = room;
        move |iov| {
            if room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let before = got.len();
            for piece in iov {
                let k = piece.len().min(room - (got.len() - before));
                got.extend_from_slice(&piece[..k]);
            }
            let k = got.len() - before;
            room -= k;
            Ok(k)
        }
    }

    #[test]
    fn a_connection_closed_with_its_slot_held_gives_the_slot_away_only_when_released() {
        let (mut st, c) = shard_with_conn();
        let bob = Identity {
            user: "bob".into(),
            device: "d".into(),
            expires_ms: None,
        };
        st.close_conn_held(c, 2_000);
        assert!(!st.is_open(c));
        assert_eq!(st.conn_count(), 0);
        let d = st.open_conn(&bob, 2_000);
        assert_ne!(d.slot(), c.slot(), "held: not given to the next connection");
        st.release_slot(c);
        st.release_slot(c);
        let e = st.open_conn(&bob, 2_000);
        let f = st.open_conn(&bob, 2_000);
        assert_eq!(e.slot(), c.slot(), "released: reused");
        assert!(
            f.slot() != c.slot() && f.slot() != d.slot(),
            "and only once"
        );
        // A plain close frees the slot at once.
        st.close_conn(d, 3_000);
        assert_eq!(st.open_conn(&bob, 3_000).slot(), d.slot());
    }

    #[test]
    fn a_write_pass_writes_everything_queued_in_order_and_parks_the_connection() {
        let (mut st, c) = shard_with_conn();
        st.conns
            .get_mut(&c)
            .unwrap()
            .outbox
            .push_bytes(b"-and-more");
        let queued = st.output_bytes(c);
        assert_eq!(st.take_woken(), vec![c]);
        let mut got = Vec::new();
        let pass = st.write_pass(c, 2_000, socket(usize::MAX, &mut got));
        assert_eq!(pass, WritePass::Parked);
        assert_eq!(got, queued, "everything, in order");
        assert_eq!(st.session(c).unwrap().pending, 0);
        assert_eq!(
            st.conns[&c].outbox.progress_ms, 2_000,
            "the write counts as progress"
        );
        // Parked: the next change wakes the connection again.
        st.conns.get_mut(&c).unwrap().outbox.push_bytes(b"next");
        assert_eq!(st.take_woken(), vec![c]);
    }

    #[test]
    fn a_full_socket_keeps_the_rest_queued_for_when_it_drains() {
        let (mut st, c) = shard_with_conn();
        let queued = st.output_bytes(c);
        assert!(queued.len() > 10);
        let mut got = Vec::new();
        let pass = st.write_pass(c, 2_000, socket(10, &mut got));
        assert_eq!(pass, WritePass::Blocked);
        assert_eq!(got, queued[..10]);
        assert_eq!(
            st.output_bytes(c),
            queued[10..],
            "the rest waits, nothing lost"
        );
    }

    #[test]
    fn a_requested_close_or_waiting_requests_are_left_to_the_driver() {
        let (mut st, c) = shard_with_conn();
        st.conns
            .get_mut(&c)
            .unwrap()
            .outbox
            .request_close(1000, "bye");
        let queued = st.output_bytes(c);
        let mut got = Vec::new();
        assert_eq!(
            st.write_pass(c, 2_000, socket(usize::MAX, &mut got)),
            WritePass::Busy
        );
        assert!(got.is_empty(), "nothing written behind the driver's back");
        assert_eq!(st.output_bytes(c), queued);
        // Requests waiting for admission: the driver admits them first.
        let (mut st, c) = shard_with_conn();
        st.conns
            .get_mut(&c)
            .unwrap()
            .enqueue(r#"{"type":"ping","id":"p"}"#);
        let queued = st.output_bytes(c);
        assert_eq!(
            st.write_pass(c, 2_000, socket(usize::MAX, &mut got)),
            WritePass::Busy
        );
        assert!(got.is_empty());
        assert_eq!(st.output_bytes(c), queued);
        // A connection that is gone is the driver's to end.
        assert_eq!(
            st.write_pass(ConnId(999), 2_000, socket(usize::MAX, &mut got)),
            WritePass::Busy
        );
    }
}
