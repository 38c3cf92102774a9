//! The replica and fan-out role of a shard: each channel some of its
//! connections joined has a replica here (`replica.rs`: the local members
//! and a ring of recent batches), and each (connection, channel) a cursor
//! ([`crate::conn::Sub`]). This module moves the cursors: a `joined` head
//! starts one, a committed batch is appended to every live member's outbox
//! ([`offer_batch`], the one per-member step), and a member behind — a join
//! with `since`, a gap, an outbox past its budget — pages forward from the
//! ring or the store as its socket drains, then goes live. Typing notices
//! and removals from a group (kicks) reach the local members here too.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_model::{Channel, Page, ReadLimit, Seq};
use chat_proto::{response, ErrorCode, JoinMode};

use crate::batch::{Batch, Shared};
use crate::conn::{Conn, Phase};
use crate::error::JobError;
use crate::hash::owner_of;
use crate::state::ShardState;
use crate::stats::Stats;
use crate::vocab::{ConnId, ConnRef, IoJob, ShardMsg};

impl ShardState {
    /// Tells a room's owner that a joined connection of `user` left (it
    /// counts the room's users for presence).
    pub(crate) fn member_gone(&mut self, channel: &Channel, user: &Arc<str>) {
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

    pub(crate) fn drop_member(&mut self, channel: &Channel, id: ConnId) {
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

    /// A removed member's local connections leave the group channel (each
    /// gets an unsolicited `left`).
    pub(crate) fn kick(&mut self, channel: &Channel, user: &str) {
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

    /// A `typing` frame for the local members of a channel, except its sender.
    pub(crate) fn on_typing_notice(&mut self, channel: &Channel, except: ConnRef, frame: &[u8]) {
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
    pub(crate) fn on_join_failed(&mut self, channel: &Channel, conn_id: ConnId, gen: u64) {
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
    pub(crate) fn on_joined(
        &mut self,
        channel: &Channel,
        conn_id: ConnId,
        gen: u64,
        head: Seq,
        since: Option<Seq>,
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
                .push_reply(|out| response::joined(out, id.as_deref(), channel, head.0));
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
                .push_reply(|out| response::joined(out, rid.as_deref(), channel, head.0));
        }
        sub.cursor = since.unwrap_or(head);
        if sub.mode == JoinMode::Counts {
            // No messages: the cursor stays (a switch to `live` replays
            // from it); the head moves on in `head` events.
            sub.phase = Phase::Live;
            sub.head_told = head;
            self.advance_replica(channel, head);
            self.tier_moved(conn_id, channel);
            return;
        }
        sub.phase = Phase::CatchUp { fetching: false };
        self.advance_replica(channel, head);
        self.catch_up(conn_id, channel);
    }

    /// The replica learns that `head` is committed; members behind it catch up.
    pub(crate) fn advance_replica(&mut self, channel: &Channel, head: Seq) {
        let Some(rep) = self.replicas.get_mut(channel) else {
            return;
        };
        if head <= rep.last_seq {
            return;
        }
        rep.last_seq = head;
        let mut behind = Vec::new();
        let mut tiered = Vec::new();
        for cid in &rep.members {
            if let Some(sub) = self
                .conns
                .get_mut(cid)
                .and_then(|c| c.subs.get_mut(channel))
            {
                if !matches!(sub.phase, Phase::Live) {
                    continue;
                }
                if sub.mode != JoinMode::Live {
                    tiered.push(*cid);
                } else if sub.cursor < head {
                    sub.phase = Phase::CatchUp { fetching: false };
                    behind.push(*cid);
                }
            }
        }
        for cid in behind {
            self.catch_up(cid, channel);
        }
        for cid in tiered {
            self.tier_moved(cid, channel);
        }
    }

    pub(crate) fn on_batch(&mut self, batch: &Arc<Batch>) {
        let budget = self.cfg.outbox_budget_bytes;
        let Some(rep) = self.replicas.get_mut(&batch.channel) else {
            return;
        };
        // The shard's own handle: the ring and the members' outboxes share
        // it without touching the cross-shard count.
        let shared: Shared = Rc::new(batch.clone());
        rep.remember(&shared, self.cfg.replica_ring_bytes);
        rep.last_seq = rep.last_seq.max(batch.last_seq());
        let mut behind = Vec::new();
        let mut tiered = Vec::new();
        let mut delivered = 0u64;
        let mut slow = 0u64;
        let mut max_pending = 0;
        // Members' state is scattered over the heap: ask for it a few
        // members ahead (the connection, then — once it is in — its joined
        // channels), so the loop does not wait for memory at every member.
        let mut far = rep.members.iter().skip(PREFETCH_FAR);
        let mut near = rep.members.iter().skip(PREFETCH_NEAR);
        for cid in &rep.members {
            if let Some(ahead) = far.next() {
                self.conns.prefetch(ahead);
            }
            if let Some(c) = near.next().and_then(|id| self.conns.get(id)) {
                c.subs.prefetch();
            }
            let Some(conn) = self.conns.get_mut(cid) else {
                continue;
            };
            // permessage-deflate members share the batch's compressed copy,
            // built for the first of them.
            if conn.deflate {
                batch.deflated(&mut self.deflater);
            }
            match offer_batch(conn, &shared, budget) {
                Offer::Skipped => continue,
                Offer::Tiered => tiered.push(*cid),
                Offer::Gap => behind.push(*cid),
                Offer::Queued { messages, complete } => {
                    delivered += messages;
                    slow += u64::from(!complete);
                    max_pending = max_pending.max(conn.outbox.pending());
                }
            }
        }
        if slow > 0 {
            self.stats
                .slow_consumer_events
                .fetch_add(slow, Ordering::Relaxed);
        }
        note_outbox(&self.stats, max_pending);
        self.stats
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        self.ring_log
            .remembered(batch, self.cfg.replica_rings_bytes, &mut self.replicas);
        for cid in behind {
            self.catch_up(cid, &batch.channel);
        }
        for cid in tiered {
            self.tier_moved(cid, &batch.channel);
        }
    }

    // ----- catch-up --------------------------------------------------------

    /// Moves a catching-up (conn, channel) forward from the ring while its
    /// outbox has room; asks the store when the ring does not reach back far
    /// enough; goes live once it meets the replica's head.
    pub(crate) fn catch_up(&mut self, conn_id: ConnId, channel: &Channel) {
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
            if let Some(b) = rep.ring_batch_with(sub.cursor.next()) {
                let frames = if conn.deflate {
                    b.deflated(&mut self.deflater)
                } else {
                    b
                };
                let room = budget.saturating_sub(conn.outbox.pending());
                // Ring batches never pass the replica's head.
                let (range, upto) = frames.frames_fitting_range(sub.cursor, room, true);
                delivered += upto.0 - sub.cursor.0;
                conn.outbox.push_frames(b, conn.deflate, range);
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
                limit: ReadLimit {
                    messages: self.cfg.catchup_page_messages,
                    bytes: budget,
                },
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
        channel: &Channel,
        gen: u64,
        result: Result<Page, JobError>,
    ) {
        let budget = self.cfg.outbox_budget_bytes;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.fetching = false;
        let head = self.replicas.get(channel).map_or(Seq::ZERO, |r| r.last_seq);
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
                        let seq = Seq(m.seq);
                        if seq <= sub.cursor {
                            continue;
                        }
                        if seq != sub.cursor.next() || seq > head {
                            break;
                        }
                        if conn.outbox.pending() >= budget {
                            break;
                        }
                        conn.outbox.push_reply(|out| {
                            response::msg(out, channel, &response::MsgView::from_stored(m));
                        });
                        sub.cursor = seq;
                    }
                }
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "catch-up read failed; retrying");
                }
            }
            let progressed = sub.cursor.0 - before.0;
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
                    after_ms: self.cfg.catchup_retry_ms,
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
    pub(crate) fn on_catchup_retry(&mut self, conn_id: ConnId, channel: &Channel, gen: u64) {
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
        let waiting = |s: &crate::conn::Sub| matches!(s.phase, Phase::CatchUp { fetching: false });
        // The common case — nothing waits for the drain — allocates nothing.
        if !conn.subs.iter().any(|(_, s)| waiting(s)) {
            return;
        }
        let behind: Vec<Channel> = conn
            .subs
            .iter()
            .filter(|(_, s)| waiting(s))
            .map(|(k, _)| k.clone())
            .collect();
        for ch in behind {
            self.catch_up(conn_id, &ch);
        }
    }

    /// A `history` read finished: the page, cut to one frame, or the error.
    pub(crate) fn on_history(
        &mut self,
        conn_id: ConnId,
        channel: &Channel,
        id: Option<Box<str>>,
        keep_newest: bool,
        result: Result<Page, JobError>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.in_flight.histories = conn.in_flight.histories.saturating_sub(1);
        let answer = match result {
            Ok(mut page) => {
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
                let fit = response::history_fit(id.as_deref(), channel, &views, keep_newest, max);
                if fit.len() < page.messages.len() {
                    page.has_more = true;
                    page.messages.truncate(fit.end);
                    page.messages.drain(..fit.start);
                }
                crate::vocab::Answer::History {
                    channel: channel.clone(),
                    page,
                }
            }
            Err(e) => {
                let code = e.code();
                let message = if code == ErrorCode::Unavailable {
                    format!("history unavailable: {e}")
                } else {
                    e.to_string()
                };
                crate::vocab::Answer::error(code, message)
            }
        };
        self.answer(conn_id, id.as_deref(), answer);
    }
}

/// How many members ahead a batch's fan-out asks for a member's
/// connection, and for its joined channels.
const PREFETCH_FAR: usize = 8;
const PREFETCH_NEAR: usize = 3;

fn note_outbox(stats: &Stats, pending: usize) {
    stats.max_outbox_bytes.fetch_max(pending, Ordering::Relaxed);
}
/// What [`offer_batch`] did with one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not live in the channel, or it already has the batch.
    Skipped,
    /// A `digest` or `counts` member: not queued now (`tiers.rs` serves it
    /// when it is due).
    Tiered,
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
pub(crate) fn offer_batch(conn: &mut Conn, shared: &Shared, budget: usize) -> Offer {
    // A member that negotiated permessage-deflate gets the compressed copy
    // (built by the caller before it offers the batch).
    let batch = shared.view(conn.deflate);
    let Some(sub) = conn.subs.get_mut(&batch.channel) else {
        return Offer::Skipped;
    };
    if !matches!(sub.phase, Phase::Live) || batch.last_seq() <= sub.cursor {
        return Offer::Skipped;
    }
    if sub.mode != JoinMode::Live {
        return Offer::Tiered;
    }
    if batch.first_seq > sub.cursor.next() {
        sub.phase = Phase::CatchUp { fetching: false };
        return Offer::Gap;
    }
    let pending = conn.outbox.pending();
    let room = budget.saturating_sub(pending);
    let (range, upto) = batch.frames_fitting_range(sub.cursor, room, pending == 0);
    let messages = upto.0.saturating_sub(sub.cursor.0);
    if upto > sub.cursor {
        conn.outbox.push_frames(shared, conn.deflate, range);
        sub.cursor = upto;
    }
    let complete = upto >= batch.last_seq();
    if !complete {
        sub.phase = Phase::CatchUp { fetching: false };
    }
    Offer::Queued { messages, complete }
}
