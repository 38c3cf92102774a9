//! Requests from clients: admission, then dispatch.
//!
//! Every text frame of a WebSocket connection (and the one request of an
//! HTTP call) comes here. A request is **admitted** only while its kind is
//! under its in-flight limit for the connection and the connection's outbox
//! is within its budget; otherwise it waits in the connection's queue, and
//! every later request waits behind it (first in, first out), however many
//! arrived in the same read. The driver offers the queue again whenever it
//! runs ([`ShardState::pump_queue`]): replies, acks and drained outboxes are
//! what free a limit, and each of them wakes the driver. So a client that
//! pipelines a thousand `history` requests has one (or a few) in flight and
//! the rest wait as bytes, counted against `max_queued_request_bytes`; past
//! that its socket is no longer read.
//!
//! An admitted request then takes a token from its user's rate bucket
//! (`limits.rs`; refused with `rate_limited`, and closed with 1008 after
//! `rate_limit_close_after` refusals in a row) and is dispatched: checked
//! for access and forwarded to the owner, the store, or answered here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_model::{names::ChannelName, Channel, NewMessage, ReadLimit, ReadRange, Seq};
use chat_proto::{self as protocol, request::HistoryRange, response, ErrorCode, JoinMode, Request};

use crate::conn::{Phase, Sub};
use crate::hash::owner_of;

use crate::replica::Replica;
use crate::state::ShardState;
use crate::vocab::{Ask, ConnId, IoJob, QueryRef, Reply, SendReq, ShardId, ShardMsg};

/// What became of a request offered for admission.
enum Dispatch {
    /// Answered, refused or forwarded.
    Done,
    /// Not admitted now: it waits in the connection's queue.
    Wait,
}

/// Who may use a channel, as far as the connection's shard can tell: DMs
/// only their two users; groups are checked by the group's owner
/// (authoritative); rooms are open.
pub(crate) fn access(user: &str, channel: &str) -> Result<(), (ErrorCode, &'static str)> {
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
        Ok(ChannelName::Group(_)) => Ok(()),
        Ok(ChannelName::Room(_)) => Ok(()),
        Err(_) => Err((ErrorCode::InvalidChannel, "invalid channel name")),
    }
}

/// The channel of a decoded request (`decode_request` validated it).
fn validated(channel: &str) -> Channel {
    Channel::from_validated(Arc::from(channel))
}

impl ShardState {
    /// A text frame from a connection: admitted now, or queued behind the
    /// requests already waiting.
    pub(crate) fn on_text(&mut self, id: ConnId, text: &str) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.queued.is_empty() {
            conn.enqueue(text);
            return;
        }
        if let Dispatch::Wait = self.dispatch(id, text) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.enqueue(text);
            }
        }
    }

    /// Offers the connection's waiting requests again, oldest first, until
    /// one still has to wait. The driver calls it before it reads.
    pub(crate) fn pump_queue(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if conn.outbox.close.is_some() {
                // Closing: what waits is never served.
                while conn.dequeue().is_some() {}
                return;
            }
            let Some(text) = conn.dequeue() else {
                return;
            };
            if let Dispatch::Wait = self.dispatch(id, &text) {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.requeue_front(text);
                }
                return;
            }
        }
    }

    /// Whether the connection has requests waiting for admission.
    #[must_use]
    pub fn has_queued(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.queued.is_empty())
    }

    /// Whether `req` may start now on connection `id`: its kind is under its
    /// in-flight limit and its reply fits the outbox budget.
    fn admits(&self, id: ConnId, req: &Request<'_>) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        let cfg = &self.cfg;
        let budget = cfg.outbox_budget_bytes;
        let pending = conn.outbox.pending();
        let f = &conn.in_flight;
        if pending > budget {
            return false;
        }
        match req {
            Request::Send(_) => f.sends < cfg.max_sends_in_flight,
            Request::History { .. } => {
                let page = cfg.history_page_bytes;
                f.histories < cfg.max_history_in_flight
                    && (f.histories == 0 || pending + (f.histories as usize + 1) * page <= budget)
            }
            Request::Presence { .. } => f.presence < cfg.max_presence_in_flight,
            Request::Join { .. } => f.joins < cfg.max_joins_in_flight,
            Request::Read { .. } | Request::Delivered { .. } => {
                !self.cursors.is_full(cfg.max_pending_cursors)
            }
            Request::Leave { .. } | Request::Typing { .. } | Request::Ping => true,
        }
    }

    /// Decodes, admits, rate-limits and runs one request.
    fn dispatch(&mut self, id: ConnId, text: &str) -> Dispatch {
        let env = match protocol::decode_request(text, &self.limits) {
            Ok(env) => env,
            Err((req_id, e)) => {
                self.reply_err(id, req_id, e.code, &e.message);
                return Dispatch::Done;
            }
        };
        if !self.admits(id, &env.request) {
            return Dispatch::Wait;
        }
        let req_id = env.id;
        let per_sec = self.cfg.rate_limit_per_sec;
        if per_sec > 0.0 && !matches!(env.request, Request::Ping) {
            let now = self.now();
            let Some(conn) = self.conns.get_mut(&id) else {
                return Dispatch::Done;
            };
            if self
                .user_limits
                .take_request(&conn.user, now, per_sec, self.cfg.rate_limit_burst)
            {
                conn.strikes = 0;
            } else {
                conn.strikes += 1;
                if !conn.http && conn.strikes >= self.cfg.rate_limit_close_after {
                    // Whatever was already queued (acks, errors) goes first.
                    conn.outbox
                        .request_close(1008, "sustained rate limit violation");
                    return Dispatch::Done;
                }
                self.reply_err(
                    id,
                    req_id,
                    ErrorCode::RateLimited,
                    "too many requests: slow down (rate_limit_per_sec, per user)",
                );
                return Dispatch::Done;
            }
        }
        self.execute(id, req_id, env.request);
        Dispatch::Done
    }

    /// Runs an admitted request.
    fn execute(&mut self, id: ConnId, req_id: Option<&str>, request: Request<'_>) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let user = conn.user.clone();
        // `leave` needs no access: it only ever removes this connection.
        if let (Some(channel), false) =
            (request.channel(), matches!(request, Request::Leave { .. }))
        {
            if let Err((code, msg)) = access(&user, channel) {
                return self.reply_err(id, req_id, code, msg);
            }
        }
        match request {
            Request::Ping => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.outbox.push_reply(|out| response::pong(out, req_id));
                }
            }
            Request::Join {
                channel,
                since,
                mode,
            } => self.join(id, req_id, channel, since.map(Seq), mode),
            Request::Leave { channel } => self.leave(id, req_id, channel),
            Request::Send(s) => {
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
                conn.in_flight.sends += 1;
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
                let channel = validated(s.channel);
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
                let range = match range {
                    HistoryRange::Latest => ReadRange::Latest,
                    HistoryRange::Before(s) => ReadRange::Before(Seq(s)),
                    HistoryRange::After(s) => ReadRange::After(Seq(s)),
                };
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.in_flight.histories += 1;
                }
                let member_check = channel
                    .starts_with(chat_model::GROUP_PREFIX)
                    .then(|| user.clone());
                self.fx.io.push(IoJob::History {
                    conn: id,
                    channel: validated(channel),
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
                let from = Reply {
                    to: self.me(id),
                    id: req_id.map(Box::from),
                };
                self.fx.send(
                    owner_of(channel, self.nr_shards),
                    ShardMsg::Typing {
                        channel: validated(channel),
                        user,
                        from,
                    },
                );
            }
            Request::Read { channel, seq } => {
                let http = self.conns.get(&id).is_some_and(|c| c.http);
                let channel = validated(channel);
                let seq = Seq(seq);
                if http && channel.starts_with(chat_model::GROUP_PREFIX) {
                    // The HTTP API answers a read (204 or an error): check
                    // membership first. (A WebSocket read has no reply; a
                    // non-member's report is dropped when it is written.)
                    self.fx.io.push(IoJob::ReadCheck {
                        conn: id,
                        user,
                        channel,
                        seq,
                        id: req_id.map(Box::from),
                    });
                    return;
                }
                self.report_read(user, channel, seq);
                if http {
                    self.answer(id, req_id, crate::vocab::Answer::Done);
                }
            }
            Request::Delivered { channel, seq } => {
                if let Some(conn) = self.conns.get(&id) {
                    let device = conn.device.clone();
                    self.cursors
                        .report_delivered(user, device, validated(channel), Seq(seq));
                    self.maybe_flush_cursors();
                }
            }
            Request::Presence { channel } => {
                self.start_presence(id, validated(channel), req_id.map(Box::from), user);
            }
        }
    }

    /// Records a read cursor (coalesced; written at the next flush).
    pub(crate) fn report_read(&mut self, user: Arc<str>, channel: Channel, seq: Seq) {
        self.cursors.report_read(user, channel, seq);
        self.maybe_flush_cursors();
    }

    /// Starts a `presence` query: a room's owner knows its members' users;
    /// DMs and groups ask every shard about their (at most 100) members —
    /// groups through the group's owner, which checks membership from its
    /// cache.
    fn start_presence(
        &mut self,
        id: ConnId,
        channel: Channel,
        rid: Option<Box<str>>,
        user: Arc<str>,
    ) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.in_flight.presence += 1;
        let owner = owner_of(&channel, self.nr_shards);
        // Cluster mode: one more answer, the users online on other nodes
        // (the store's node-level presence).
        let cluster = self.owner.node.is_some();
        let answers = self.nr_shards + usize::from(cluster);
        match protocol::names::parse_channel(&channel) {
            Ok(ChannelName::Dm { a, b }) => {
                let users = Arc::new(vec![a.to_string(), b.to_string()]);
                let query = self.queries.start(id, channel.clone(), rid, answers);
                let reply = QueryRef {
                    shard: self.id,
                    query,
                };
                if cluster {
                    self.fx.io.push(IoJob::PresenceOnline {
                        reply,
                        users: users.clone(),
                    });
                }
                for shard in 0..self.nr_shards {
                    self.fx.send(
                        ShardId(shard),
                        ShardMsg::PresenceAsk {
                            reply,
                            ask: Ask::Users(users.clone()),
                        },
                    );
                }
            }
            Ok(ChannelName::Group(_)) => {
                let query = self.queries.start(id, channel.clone(), rid, answers);
                let reply = QueryRef {
                    shard: self.id,
                    query,
                };
                self.fx.send(
                    owner,
                    ShardMsg::PresenceGroup {
                        reply,
                        channel,
                        user,
                    },
                );
            }
            _ => {
                let query = self.queries.start(id, channel.clone(), rid, 1);
                let reply = QueryRef {
                    shard: self.id,
                    query,
                };
                self.fx
                    .send(owner, ShardMsg::PresenceRoom { reply, channel });
            }
        }
    }

    /// `channel` as decoded: a `Channel` is made only for a new join (or
    /// shared with the replica's key). Joining a joined channel again
    /// changes nothing (it is answered with the head), except that a
    /// different `mode` switches the member's tier (`tiers.rs`).
    fn join(
        &mut self,
        id: ConnId,
        req_id: Option<&str>,
        channel: &str,
        since: Option<Seq>,
        mode: JoinMode,
    ) {
        let max_channels = self.cfg.max_channels_per_connection;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(sub) = conn.subs.get_mut(channel) {
            match &mut sub.phase {
                Phase::Joining { ids } => {
                    // Answered with the first; the latest mode asked wins.
                    ids.push(req_id.map(Box::from));
                    sub.mode = mode;
                }
                _ => {
                    let head = self
                        .replicas
                        .get(channel)
                        .map_or(sub.cursor, |r| r.last_seq.max(sub.cursor));
                    conn.outbox
                        .push_reply(|out| response::joined(out, req_id, channel, head.0));
                    if sub.mode != mode {
                        let channel = validated(channel);
                        self.switch_mode(id, &channel, mode, head);
                    }
                }
            }
            return;
        }
        if conn.subs.len() >= max_channels {
            let message = format!(
                "at most {max_channels} channels joined per connection \
                 (max_channels_per_connection): leave one first"
            );
            return self.reply_err(id, req_id, ErrorCode::Forbidden, &message);
        }
        let channel = match self.replicas.get_key_value(channel) {
            Some((k, _)) => k.clone(),
            None => validated(channel),
        };
        let gen = self.next_join_gen;
        self.next_join_gen += 1;
        conn.in_flight.joins += 1;
        conn.subs.insert(channel.clone(), Sub::joining(gen, mode));
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
        if let Some((key, sub)) = removed {
            let user = conn.user.clone();
            self.drop_member(&key, id);
            if !matches!(sub.phase, Phase::Joining { .. }) {
                self.member_gone(&key, &user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;
    use crate::stats::Stats;
    use chat_proto::auth::Identity;

    fn shard(cfg: Config) -> ShardState {
        ShardState::new(ShardId(0), 1, Arc::new(cfg), Arc::new(Stats::default()))
    }

    fn open(st: &mut ShardState, user: &str) -> ConnId {
        let id = Identity {
            user: user.into(),
            device: "d".into(),
            expires_ms: None,
        };
        let c = st.open_conn(&id, 1_000);
        st.fx = Default::default();
        c
    }

    fn history(i: u64) -> String {
        format!(r#"{{"type":"history","channel":"room:h","id":{i}}}"#)
    }

    #[test]
    fn pipelined_requests_wait_their_turn_and_keep_their_order() {
        let mut st = shard(Config::default());
        let c = open(&mut st, "alice");
        for i in 0..10 {
            st.on_text(c, &history(i));
        }
        let jobs = std::mem::take(&mut st.fx.io);
        assert_eq!(
            jobs.len(),
            1,
            "one history read in flight (a page > the budget)"
        );
        let conn = &st.conns[&c];
        assert_eq!(conn.queued.len(), 9, "the rest wait, in order");
        // A ping behind them waits too (first in, first out).
        st.on_text(c, r#"{"type":"ping","id":"p"}"#);
        assert_eq!(st.conns[&c].queued.len(), 10);
        // The read completes: the next one goes.
        st.on_history(
            c,
            &validated("room:h"),
            Some(Box::from("0")),
            true,
            Ok(chat_model::Page::default()),
        );
        st.pump_queue(c);
        assert_eq!(std::mem::take(&mut st.fx.io).len(), 1);
        assert_eq!(st.conns[&c].queued.len(), 9);
    }

    #[test]
    fn a_connection_that_sends_more_than_it_reads_is_idle() {
        let cfg = Config {
            heartbeat_ms: 1_000,
            max_queued_request_bytes: 1024,
            ..Config::default()
        };
        let mut st = shard(cfg);
        let waiting_on_us = open(&mut st, "a");
        let not_reading = open(&mut st, "b");
        for c in [waiting_on_us, not_reading] {
            // The hello was taken; requests fill the queue past its bound.
            let pending = st.conns[&c].outbox.pending();
            st.conns.get_mut(&c).unwrap().outbox.wrote(pending);
            for i in 0..40 {
                st.on_text(c, &history(i));
            }
            assert!(st.conns[&c].reads_paused(1024));
        }
        // b also has replies it does not take: over its outbox budget.
        st.conns
            .get_mut(&not_reading)
            .unwrap()
            .outbox
            .push_bytes(&vec![0; 300 * 1024]);
        st.conns.get_mut(&not_reading).unwrap().outbox.progress_ms = u64::MAX / 2;
        st.check_conns(10_000);
        assert!(
            st.conns[&waiting_on_us].outbox.close.is_none(),
            "waiting for work in flight here is not idleness"
        );
        assert_eq!(
            st.conns[&not_reading].outbox.close.map(|c| c.code),
            Some(4008)
        );
    }

    #[test]
    fn joins_past_the_cap_are_forbidden_and_name_the_limit() {
        let cfg = Config {
            max_channels_per_connection: 2,
            ..Config::default()
        };
        let mut st = shard(cfg);
        let c = open(&mut st, "alice");
        for i in 0..3 {
            st.on_text(
                c,
                &format!(r#"{{"type":"join","channel":"room:{i}","id":{i}}}"#),
            );
        }
        let out = String::from_utf8_lossy(&st.output_bytes(c)).to_string();
        assert!(out.contains("max_channels_per_connection"), "{out}");
        assert_eq!(st.conns[&c].subs.len(), 2);
    }
}
