//! Receipts and unread counts on a shard: flushing the coalesced read and
//! delivered cursors (`cursors.rs`), the `read` pushes that follow, and
//! `GET /v1/me/unread` with the cursors not yet written overlaid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use storage::{DeliveredUpdate, ReadUpdate, Seq};

use crate::conn::ConnId;
use crate::hash::ShardId;
use crate::presence::QueryRef;
use crate::protocol::{self, names, response, ErrorCode};
use crate::shard::{IoJob, ShardMsg, ShardState};
use crate::store_io::StoreFailure;

/// A `read` cursor that moved, and whom to tell: (channel, user, seq, the
/// other members of the DM or group).
pub(crate) type ReadMoved = (String, String, u64, Vec<String>);

/// Unread queries started on this shard, gathering every shard's cursors
/// not yet written.
#[derive(Default)]
pub(crate) struct UnreadQueries {
    next: u64,
    open: HashMap<u64, UnreadQuery>,
}

struct UnreadQuery {
    conn: ConnId,
    user: Arc<str>,
    remaining: usize,
    pending: HashMap<String, u64>,
    /// For `GET /v1/me/channels` (`discovery.rs`), not `/v1/me/unread`.
    channels: bool,
}

impl ShardState {
    /// Starts a flush when the pending cursors reached their bound.
    pub(crate) fn maybe_flush_cursors(&mut self) {
        if self.cursors.wants_flush(self.cfg.max_pending_cursors) {
            self.flush_cursors();
        }
    }

    /// Writes the coalesced cursors (every `cursor_flush_ms`, or early at
    /// the bound): one store call for all of them.
    pub(crate) fn flush_cursors(&mut self) {
        if let Some((reads, delivered)) = self.cursors.take() {
            self.fx.io.push(IoJob::FlushCursors { reads, delivered });
        }
    }

    /// The flush finished: push `read` to the other members of DMs and
    /// groups whose cursors moved, and let waiting reports in.
    pub(crate) fn on_cursors_flushed(
        &mut self,
        result: Result<Vec<ReadMoved>, StoreFailure>,
        retry: (Vec<ReadUpdate>, Vec<DeliveredUpdate>),
    ) {
        self.cursors.flushed();
        if result.is_err() {
            // Nothing was written: the cursors wait for the next flush.
            let (reads, delivered) = retry;
            for (user, channel, seq) in reads {
                self.cursors
                    .report_read(Arc::from(user), Arc::from(channel), seq.0);
            }
            for (user, device, channel, seq) in delivered {
                self.cursors.report_delivered(
                    Arc::from(user),
                    Arc::from(device),
                    Arc::from(channel),
                    seq.0,
                );
            }
        }
        match result {
            Ok(moved) => {
                for (channel, user, seq, others) in moved {
                    let mut frame = Vec::new();
                    response::read(&mut frame, &channel, &user, seq);
                    let frame: Arc<[u8]> = Arc::from(frame);
                    self.fx.send_to_users(others, &frame, self.nr_shards);
                }
            }
            Err(f) => {
                tracing::warn!(error = %f.message, "read/delivered cursors not stored; retrying at the next flush");
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
        channel: Arc<str>,
        seq: u64,
        id: Option<Box<str>>,
        result: Result<(), StoreFailure>,
    ) {
        match result {
            Ok(()) => {
                self.report_read(user, channel, seq);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outbox
                        .push_reply(|out| response::done(out, id.as_deref()));
                }
            }
            Err(f) => self.reply_err(conn, id.as_deref(), f.code, &f.message),
        }
    }

    /// Starts `GET /v1/me/unread`: every shard reports the user's read
    /// cursors it has not written yet, then the store counts.
    pub(crate) fn unread_request(&mut self, conn: ConnId) {
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
                pending: HashMap::new(),
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
    pub(crate) fn on_unread_answer(&mut self, query: u64, cursors: Vec<(Arc<str>, u64)>) {
        let Some(q) = self.unread.open.get_mut(&query) else {
            return;
        };
        for (channel, seq) in cursors {
            let e = q.pending.entry(channel.to_string()).or_insert(0);
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
}

/// Writes a flush: group reads by non-members are dropped, the rest moved
/// in one write with the delivered cursors; returns the read cursors that
/// moved in DMs and groups with the members to tell.
pub(crate) fn write_cursors(
    s: &dyn storage::Store,
    reads: Vec<ReadUpdate>,
    delivered: &[DeliveredUpdate],
) -> Result<Vec<ReadMoved>, storage::StoreError> {
    let mut members: HashMap<String, Option<Vec<String>>> = HashMap::new();
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
        moved.push((channel, user, after.0, others));
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
    pending: &HashMap<String, u64>,
) -> Result<Vec<(String, u64)>, storage::StoreError> {
    let mut cursors: BTreeMap<String, u64> = s
        .read_cursors(user)?
        .into_iter()
        .map(|(c, seq)| (c, seq.0))
        .collect();
    for g in s.channels_of(user)? {
        cursors.entry(g).or_insert(0);
    }
    for (channel, &seq) in pending {
        let e = cursors.entry(channel.clone()).or_insert(0);
        *e = (*e).max(seq);
    }
    let mut out = Vec::new();
    for (channel, read) in cursors {
        let head = s.head(&channel)?.0;
        if head > read {
            let n = s.count_messages(&channel, Seq(read), Seq(head))?;
            if n > 0 {
                out.push((channel, n));
            }
        }
    }
    Ok(out)
}

/// Membership of a group for an HTTP `read`: Ok for a member.
pub(crate) fn check_member(
    s: &dyn storage::Store,
    channel: &str,
    user: &str,
) -> Result<Result<(), (ErrorCode, &'static str)>, storage::StoreError> {
    Ok(match s.members(channel)? {
        None => Err((ErrorCode::NotFound, "no such group")),
        Some(m) if !m.iter().any(|u| u == user) => {
            Err((ErrorCode::NotMember, "not a member of this group"))
        }
        Some(_) => Ok(()),
    })
}
