//! Sends and commits: dedup of sends in flight (a retry waits for the
//! original's answer), the group commit (everything ready, one store call,
//! at most one per shard in flight), and what a finished commit does —
//! acks first, then one shared batch per subscribed shard (store before
//! deliver); a failed commit answers `unavailable` and reloads the head.

use std::sync::Arc;

use chat_model::{
    AppendOutcome, Channel, ChannelAppend, ChannelOutcome, RejectReason, Seq, StoredMessage,
};
use chat_proto::{response, ErrorCode};

use super::state::{
    dedup_key, fingerprint, flush_join_waiters, notify_members, subscriber_shards, Gated, InFlight,
    InFlightCommit, MessageMeta, Owner, Pending,
};
use crate::batch::Batch;
use crate::error::JobError;
use crate::vocab::{Effects, IoJob, SendReq, ShardMsg};

impl Owner {
    fn mark_ready(&mut self, name: &Channel, fx: &mut Effects) {
        let oc = self.channel(name);
        if !oc.queued && !oc.committing && !oc.pending.is_empty() {
            oc.queued = true;
            self.ready.push(name.clone());
            if self.committing.is_none() {
                fx.commit_ready = true;
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

    /// Takes everything ready into one commit: at most `max` messages, `ts`
    /// set to `now_ms`. None when a commit is in flight or nothing is ready.
    pub(crate) fn take_commit(
        &mut self,
        max: usize,
        max_bytes: usize,
        now_ms: u64,
    ) -> Option<Vec<ChannelAppend>> {
        if self.committing.is_some() || self.ready.is_empty() {
            return None;
        }
        let mut job = InFlightCommit {
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
        self.committing = Some(job);
        Some(appends)
    }

    /// The store answered a commit. Acks go out before the batch, on the same
    /// queues, so a sender sees its `ack` before its own `msg`.
    pub(crate) fn on_committed(
        &mut self,
        appends: Vec<ChannelAppend>,
        result: Result<Vec<ChannelOutcome>, JobError>,
        fx: &mut Effects,
    ) {
        let Some(job) = self.committing.take() else {
            return;
        };
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
            fx.commit_ready = true;
        }
    }

    fn channel_committed(
        &mut self,
        name: Channel,
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
                    fx.ack(&reply, &name, &msg.client_msg_id, seq, ts, false);
                    for w in &waiters {
                        fx.ack(w, &name, &msg.client_msg_id, seq, ts, true);
                    }
                    if self.push {
                        notify_members(&name, &oc.membership, &msg, seq, fx);
                    }
                    crate::discovery::announce(
                        fx,
                        crate::discovery::first_dm_users(&name, seq),
                        &name,
                    );
                    let b = batch.get_or_insert_with(|| Batch::new(name.clone(), seq));
                    debug_assert_eq!(
                        b.first_seq.0 + b.len() as u64,
                        seq.0,
                        "store seqs are dense"
                    );
                    if let Some(t) = msg.target {
                        b.note_target(Seq(t));
                    }
                    let stored = StoredMessage::from_new(seq, &msg);
                    b.push_frame(|out| {
                        response::msg(out, &name, &response::MsgView::from_stored(&stored));
                    });
                }
                AppendOutcome::Duplicate { seq, ts } => {
                    fx.ack(&reply, &name, &msg.client_msg_id, seq, ts, true);
                    for w in &waiters {
                        fx.ack(w, &name, &msg.client_msg_id, seq, ts, true);
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
        // Another node's commit may have moved the head further already.
        let before = oc.head;
        oc.head = Some(before.map_or(outcome.head, |h| h.max(outcome.head)));
        if batch.is_none() && before.is_some_and(|h| h < outcome.head) {
            // Nothing of ours was stored, yet the head moved: another node
            // committed (a retry that raced its original there answers
            // `duplicate` here). Its inbox notice will find the head already
            // moved and skip, so the members page the gap from the store
            // now, as after a dropped batch.
            for shard in subscriber_shards(oc.subscribers) {
                fx.send(
                    shard,
                    ShardMsg::Advanced {
                        channel: name.clone(),
                        head: outcome.head,
                    },
                );
            }
        }
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
        name: Channel,
        metas: Vec<MessageMeta>,
        failure: &JobError,
        fx: &mut Effects,
    ) {
        let Some(oc) = self.channels.get_mut(&name) else {
            return;
        };
        oc.committing = false;
        if !failure.is_retryable() {
            tracing::error!(channel = %name, error = %failure, "commit failed for good");
        }
        let message = format!("message not stored, retry later: {failure}");
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chat_model::{AppendOutcome, ChannelOutcome, Seq};
    use chat_proto::auth::Identity;

    use crate::config::Config;
    use crate::stats::Stats;
    use crate::vocab::{ConnId, IoJob, JobDone, ShardId, ShardMsg};
    use crate::ShardState;

    const ROOM: &str = "room:r";

    /// Runs the shard's own messages and answers head loads with `head`
    /// until nothing is left; returns the other jobs it asked for.
    fn pump(st: &mut ShardState, head: u64, now: u64) -> Vec<IoJob> {
        let mut jobs = Vec::new();
        loop {
            let fx = st.take_effects();
            if fx.out.is_empty() && fx.io.is_empty() {
                return jobs;
            }
            for (_, msg) in fx.out {
                st.on_msg(ShardId(0), msg, now);
            }
            for job in fx.io {
                match job {
                    IoJob::LoadHead(channel) => st.on_job_done(
                        JobDone::HeadLoaded {
                            channel,
                            result: Ok(Seq(head)),
                        },
                        now,
                    ),
                    other => jobs.push(other),
                }
            }
        }
    }

    fn conn(st: &mut ShardState, user: &str) -> ConnId {
        let id = Identity {
            user: user.into(),
            device: "d".into(),
            expires_ms: None,
        };
        st.open_conn(&id, 1_000)
    }

    /// A retry racing its original on another node: the store answers
    /// `duplicate` with a head this owner has not fanned out. The members
    /// here page the gap from the store at once (the other node's inbox
    /// notice finds the head moved and is skipped): without it, a member
    /// waited for the channel's next message.
    #[test]
    fn a_duplicate_answer_that_moves_the_head_sends_members_to_the_store() {
        let cfg = Config::default();
        let mut st = ShardState::new(ShardId(0), 1, Arc::new(cfg), Arc::new(Stats::default()));
        let reader = conn(&mut st, "reader");
        st.on_text(
            reader,
            &format!(r#"{{"type":"join","channel":"{ROOM}","id":1}}"#),
        );
        pump(&mut st, 5, 1_000);
        let joined = String::from_utf8_lossy(&st.output_bytes(reader)).into_owned();
        assert!(joined.contains(r#""head":5"#), "{joined}");
        let n = st.output_bytes(reader).len();
        st.wrote(reader, n, 1_000);

        let sender = conn(&mut st, "alice");
        st.on_text(
            sender,
            &format!(
                r#"{{"type":"send","channel":"{ROOM}","client_msg_id":"m1","text":"hi","id":2}}"#
            ),
        );
        pump(&mut st, 5, 1_000);
        let Some(IoJob::Append(appends)) = st.take_commit(1_000) else {
            panic!("a commit");
        };
        // Another node stored "m1" as seq 6 meanwhile.
        st.on_job_done(
            JobDone::Appended {
                appends,
                result: Ok(vec![ChannelOutcome {
                    outcomes: vec![AppendOutcome::Duplicate { seq: Seq(6), ts: 7 }],
                    head: Seq(6),
                }]),
            },
            1_000,
        );
        let fx = st.take_effects();
        assert!(
            fx.out.iter().any(|(_, m)| matches!(
                m,
                ShardMsg::Advanced { head, .. } if *head == Seq(6)
            )),
            "{:?}",
            fx.out
        );
        for (_, msg) in fx.out {
            st.on_msg(ShardId(0), msg, 1_000);
        }
        let jobs = pump(&mut st, 6, 1_000);
        assert!(
            jobs.iter()
                .any(|j| matches!(j, IoJob::CatchUp { channel, .. } if channel.as_ref() == ROOM)),
            "the reader pages seq 6 from the store: {jobs:?}"
        );
        let ack = String::from_utf8_lossy(&st.output_bytes(sender)).into_owned();
        assert!(
            ack.contains(r#""duplicate":true"#) && ack.contains(r#""seq":6"#),
            "{ack}"
        );
    }
}
