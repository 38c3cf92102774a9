//! Receipts and unread counts on a shard: flushing the coalesced read and
//! delivered cursors (`cursors.rs`), the `read` pushes that follow (in
//! cluster mode also to the members' devices on other nodes), and
//! `GET /v1/me/unread` with the cursors not yet written overlaid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chat_model::{names, Channel, DeliveredUpdate, ReadUpdate, Seq};
use chat_proto::response;

use crate::cursors::UnreadQuery;
use crate::error::JobError;
use crate::maps::Map;
use crate::presence::QueryRef;
use crate::state::ShardState;
use crate::vocab::{Answer, ConnId, IoJob, ReadMoved, ShardId, ShardMsg};

impl ShardState {
    /// Starts a flush when the pending cursors reached their bound.
    pub(crate) fn maybe_flush_cursors(&mut self) {
        if self.cursors.wants_flush(self.cfg.max_pending_cursors) {
            self.flush_pending_cursors();
        }
    }

    /// Writes the coalesced cursors (every `cursor_flush_ms`, or early at
    /// the bound): one store call for all of them.
    pub fn flush_cursors(&mut self, now: u64) {
        self.signal.set_now(now);
        self.flush_pending_cursors();
    }

    fn flush_pending_cursors(&mut self) {
        if let Some((reads, delivered)) = self.cursors.take() {
            self.fx.io.push(IoJob::FlushCursors { reads, delivered });
        }
    }

    /// The flush finished: push `read` to the other members of DMs and
    /// groups whose cursors moved, and let waiting reports in.
    pub(crate) fn on_cursors_flushed(
        &mut self,
        result: Result<Vec<ReadMoved>, JobError>,
        retry: (Vec<ReadUpdate>, Vec<DeliveredUpdate>),
    ) {
        self.cursors.flushed();
        if result.is_err() {
            // Nothing was written: the cursors wait for the next flush.
            let (reads, delivered) = retry;
            for (user, channel, seq) in reads {
                self.cursors
                    .report_read(Arc::from(user), stored_channel(channel), seq);
            }
            for (user, device, channel, seq) in delivered {
                self.cursors.report_delivered(
                    Arc::from(user),
                    Arc::from(device),
                    stored_channel(channel),
                    seq,
                );
            }
        }
        match result {
            Ok(moved) => {
                // Cluster mode: the members' devices on other nodes hear it
                // through their inboxes (one job per flush; see
                // `docs/architecture.md`, "Read pushes across nodes").
                let mut remote = Vec::new();
                let cluster = self.owner.node.is_some();
                for (channel, user, seq, others) in moved {
                    let mut frame = Vec::new();
                    response::read(&mut frame, &channel, &user, seq.0);
                    let frame: Arc<[u8]> = Arc::from(frame);
                    if cluster && !others.is_empty() {
                        remote.push(storage::ReadPush {
                            channel: channel.to_string(),
                            user: user.clone(),
                            seq,
                            to: others.clone(),
                        });
                    }
                    self.fx.send_to_users(others, &frame);
                }
                if !remote.is_empty() {
                    self.fx.io.push(IoJob::ReadsToNodes { reads: remote });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "read/delivered cursors not stored; retrying at the next flush");
            }
        }
        // Reports that waited for room may go on.
        for conn in self.conns.values_mut() {
            if !conn.queued.is_empty() {
                conn.outbox.wake();
            }
        }
    }

    /// An HTTP `read` of a group: the membership check came back.
    pub(crate) fn on_read_checked(
        &mut self,
        conn: ConnId,
        user: Arc<str>,
        channel: Channel,
        seq: Seq,
        id: Option<Box<str>>,
        result: Result<(), JobError>,
    ) {
        match result {
            Ok(()) => {
                self.report_read(user, channel, seq);
                self.answer(conn, id.as_deref(), Answer::Done);
            }
            Err(e) => self.reply_err(conn, id.as_deref(), e.code(), &e.to_string()),
        }
    }

    /// Starts `GET /v1/me/channels` for an HTTP call.
    pub fn my_channels_request(&mut self, conn: ConnId, now: u64) {
        self.signal.set_now(now);
        self.pending_reads_request(conn, true);
    }

    /// Starts `GET /v1/me/unread`: every shard reports the user's read
    /// cursors it has not written yet, then the store counts.
    pub fn unread_request(&mut self, conn: ConnId, now: u64) {
        self.signal.set_now(now);
        self.pending_reads_request(conn, false);
    }

    /// Gathers the user's read cursors not written yet from every shard,
    /// then counts unread (`channels`: lists the channels, `discovery.rs`).
    pub(crate) fn pending_reads_request(&mut self, conn: ConnId, channels: bool) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let user = c.user.clone();
        self.unread.next += 1;
        let query = self.unread.next;
        self.unread.open.insert(
            query,
            UnreadQuery {
                conn,
                user: user.clone(),
                remaining: self.nr_shards,
                pending: std::collections::HashMap::new(),
                channels,
            },
        );
        let reply = QueryRef {
            shard: self.id,
            query,
        };
        for shard in 0..self.nr_shards {
            self.fx.send(
                ShardId(shard),
                ShardMsg::UnreadAsk {
                    reply,
                    user: user.clone(),
                },
            );
        }
    }

    /// Another shard (or this one) asks for `user`'s pending read cursors.
    pub(crate) fn on_unread_ask(&mut self, reply: QueryRef, user: &str) {
        let cursors = self.cursors.reads_of(user);
        self.fx.send(
            reply.shard,
            ShardMsg::UnreadAnswer {
                query: reply.query,
                cursors,
            },
        );
    }

    /// One shard's pending cursors for an unread query.
    pub(crate) fn on_unread_answer(&mut self, query: u64, cursors: Vec<(Channel, Seq)>) {
        let Some(q) = self.unread.open.get_mut(&query) else {
            return;
        };
        for (channel, seq) in cursors {
            let e = q.pending.entry(channel).or_insert(Seq::ZERO);
            *e = (*e).max(seq);
        }
        q.remaining -= 1;
        if q.remaining > 0 {
            return;
        }
        if let Some(q) = self.unread.open.remove(&query) {
            self.fx.io.push(IoJob::Unread {
                conn: q.conn,
                user: q.user,
                pending: q.pending,
                channels: q.channels,
            });
        }
    }
}

/// Writes a flush: group reads by non-members are dropped, the rest moved
/// in one write with the delivered cursors; returns the read cursors that
/// moved in DMs and groups with the members to tell.
pub(crate) fn write_cursors(
    s: &dyn storage::Store,
    reads: Vec<ReadUpdate>,
    delivered: &[DeliveredUpdate],
) -> Result<Vec<ReadMoved>, storage::StoreError> {
    let mut members: Map<String, Option<Vec<String>>> = Map::default();
    let mut kept = Vec::with_capacity(reads.len());
    for (user, channel, seq) in reads {
        if let Ok(names::ChannelName::Group(_)) = names::parse_channel(&channel) {
            if !members.contains_key(&channel) {
                members.insert(channel.clone(), s.members(&channel)?);
            }
            let is_member = members
                .get(&channel)
                .and_then(Option::as_ref)
                .is_some_and(|m| m.contains(&user));
            if !is_member {
                continue;
            }
        }
        kept.push((user, channel, seq));
    }
    let results = s.advance_read_batch(&kept)?;
    if !delivered.is_empty() {
        s.advance_delivered_batch(delivered)?;
    }
    let mut moved = Vec::new();
    for ((user, channel, _), (before, after)) in kept.into_iter().zip(results) {
        if after <= before {
            continue;
        }
        let others: Vec<String> = match names::parse_channel(&channel) {
            Ok(names::ChannelName::Dm { a, b }) => {
                vec![if a == user { b } else { a }.to_string()]
            }
            Ok(names::ChannelName::Group(_)) => members
                .get(&channel)
                .and_then(Option::as_ref)
                .map(|m| m.iter().filter(|u| **u != user).cloned().collect())
                .unwrap_or_default(),
            _ => continue, // rooms are not pushed
        };
        moved.push((stored_channel(channel), user, after, others));
    }
    Ok(moved)
}

/// Unread per channel — messages (not edit/delete events) above the read
/// cursor, only when positive — for the user's groups and DMs and every
/// channel where the user has a read cursor; `pending` are the cursors
/// reported and not written yet (they count at once).
pub(crate) fn unread(
    s: &dyn storage::Store,
    user: &str,
    pending: &HashMap<Channel, Seq>,
) -> Result<Vec<(Channel, u64)>, storage::StoreError> {
    let mut cursors: BTreeMap<String, Seq> = s.read_cursors(user)?.into_iter().collect();
    for g in s.channels_of(user)? {
        cursors.entry(g).or_insert(Seq::ZERO);
    }
    for (channel, &seq) in pending {
        let e = cursors.entry(channel.to_string()).or_insert(Seq::ZERO);
        *e = (*e).max(seq);
    }
    let mut out = Vec::new();
    for (channel, read) in cursors {
        let head = s.head(&channel)?;
        if head > read {
            let n = s.count_messages(&channel, read, head)?;
            if n > 0 {
                out.push((stored_channel(channel), n));
            }
        }
    }
    Ok(out)
}

/// A channel name the store gave back: every name it holds was validated
/// before it was written.
pub(crate) fn stored_channel(name: String) -> Channel {
    Channel::from_validated(Arc::from(name))
}
