//! Audience tiers: how a channel's messages reach one member, chosen by
//! `join`'s `mode` (Discord's passive sessions are the model).
//!
//! - `live` (the default): every committed batch is queued to the member at
//!   once (`fanout.rs`, [`crate::fanout::offer_batch`]).
//! - `digest`: batches are not queued as they come. The member's first
//!   batch after a quiet interval goes at once; later ones wait until
//!   `digest_interval_ms` has passed since its last delivery, and then
//!   everything that accumulated is queued together — consecutive `msg`
//!   frames copied from the replica's ring (or paged from the store), so one
//!   write. The frames are the same shared bytes live members get: no
//!   per-member encoding, and a client reads them exactly as it reads live
//!   ones. (One `msgs` frame holding them all would have to be encoded per
//!   member — each is behind by a different amount — and split at the
//!   2 MiB frame maximum; consecutive frames in one write save the same
//!   segments without either.)
//! - `counts`: no messages; a `head` event, at most once per
//!   `counts_interval_ms`, while the channel's head moves. The member's
//!   cursor stays where its join put it, so switching to `live` (or
//!   `digest`) later replays exactly the gap from there.
//!
//! A digest delivery *is* a catch-up: the member is switched to
//! [`Phase::CatchUp`] and [`ShardState::catch_up`] moves its cursor from the
//! ring or the store within its outbox budget, as for any member behind.
//! So cursors, resume and the slow-consumer guarantee are the live ones: a
//! digest member whose socket does not keep up pages from history as it
//! drains. Only *when* a member behind is moved changes.
//!
//! Timing is sans-IO like the rest of the core: a member due later is put
//! in [`TierTimers`] under its due time rounded up to [`TIMER_GRAIN_MS`],
//! and the first member of a slot asks the runtime for one wake-up
//! ([`IoJob::TierTimer`]); every member of the slot shares it
//! (pingora-timeout's coarse shared timers). A slot whose member left, or
//! switched tiers, is skipped when it fires (the member's join generation
//! and its `due` flag are checked).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chat_model::{Channel, Seq};
use chat_proto::{response, JoinMode};

use crate::conn::Phase;
use crate::state::ShardState;
use crate::vocab::{ConnId, IoJob};

/// Due times are rounded up to this, in ms: members due within one grain
/// share a wake-up.
pub(crate) const TIMER_GRAIN_MS: u64 = 10;

/// Members of `digest` and `counts` tiers waiting for their next serving,
/// by due time. Owned by the shard ([`ShardState`]).
#[derive(Debug, Default)]
pub(crate) struct TierTimers {
    /// Due time (ms, a multiple of [`TIMER_GRAIN_MS`]) → (connection,
    /// channel, join generation).
    slots: BTreeMap<u64, Vec<(ConnId, Channel, u64)>>,
}

impl TierTimers {
    /// Puts a member in the slot of `at_ms` (rounded up); returns the slot
    /// when it is new (the caller asks the runtime to wake it then).
    pub(crate) fn schedule(
        &mut self,
        at_ms: u64,
        conn: ConnId,
        channel: Channel,
        gen: u64,
    ) -> Option<u64> {
        let slot = at_ms.div_ceil(TIMER_GRAIN_MS) * TIMER_GRAIN_MS;
        let members = self.slots.entry(slot).or_default();
        let new = members.is_empty();
        members.push((conn, channel, gen));
        new.then_some(slot)
    }

    /// Takes every member whose slot is due at `now_ms`, earliest first.
    pub(crate) fn take_due(&mut self, now_ms: u64) -> Vec<(ConnId, Channel, u64)> {
        let later = self.slots.split_off(&(now_ms + 1));
        let due = std::mem::replace(&mut self.slots, later);
        due.into_values().flatten().collect()
    }

    /// Members waiting (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.values().map(Vec::len).sum()
    }
}

impl ShardState {
    /// The channel moved (a batch, a head) for a member that may be in a
    /// `digest` or `counts` tier: serves it now when its interval has
    /// passed since its last serving, else schedules it (once).
    pub(crate) fn tier_moved(&mut self, conn_id: ConnId, channel: &Channel) {
        let now = self.now();
        let head = self.replicas.get(channel).map_or(Seq::ZERO, |r| r.last_seq);
        let (digest_ms, counts_ms) = (self.cfg.digest_interval_ms, self.cfg.counts_interval_ms);
        let Some(sub) = self
            .conns
            .get_mut(&conn_id)
            .and_then(|c| c.subs.get_mut(channel))
        else {
            return;
        };
        // A member catching up continues on its own (and is then at the
        // head); a joining one is not served yet.
        if sub.due || !matches!(sub.phase, Phase::Live) {
            return;
        }
        let moved = match sub.mode {
            JoinMode::Live => false,
            JoinMode::Digest => sub.cursor < head,
            JoinMode::Counts => sub.head_told < head,
        };
        if !moved {
            return;
        }
        let interval = match sub.mode {
            JoinMode::Live => 0,
            JoinMode::Digest => digest_ms,
            JoinMode::Counts => counts_ms,
        };
        let at = sub.served_ms.saturating_add(interval);
        if sub.served_ms == 0 || at <= now {
            self.serve_tier(conn_id, channel);
            return;
        }
        sub.due = true;
        let gen = sub.gen;
        if let Some(slot) = self.tiers.schedule(at, conn_id, channel.clone(), gen) {
            self.fx.io.push(IoJob::TierTimer {
                after_ms: slot.saturating_sub(now),
                slot,
            });
        }
    }

    /// Serves a `digest` or `counts` member now: a digest member gets
    /// everything after its cursor (a catch-up: the ring, else the store,
    /// within its outbox budget); a counts member the head.
    fn serve_tier(&mut self, conn_id: ConnId, channel: &Channel) {
        let now = self.now();
        let head = self.replicas.get(channel).map_or(Seq::ZERO, |r| r.last_seq);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let Some(sub) = conn.subs.get_mut(channel) else {
            return;
        };
        sub.due = false;
        match sub.mode {
            JoinMode::Live => {}
            JoinMode::Digest => {
                if matches!(sub.phase, Phase::Live) && sub.cursor < head {
                    sub.served_ms = now;
                    sub.phase = Phase::CatchUp { fetching: false };
                    self.stats.digest_deliveries.fetch_add(1, Ordering::Relaxed);
                    self.catch_up(conn_id, channel);
                }
            }
            JoinMode::Counts => {
                if sub.head_told < head {
                    sub.served_ms = now;
                    sub.head_told = head;
                    conn.outbox
                        .push_reply(|out| response::head(out, channel, head.0));
                    self.stats.head_events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The tier timer of `slot` fired: serves (or reschedules, when the
    /// clock says it is early) every member due by then.
    pub(crate) fn on_tiers_due(&mut self, slot: u64) {
        let now = self.now();
        for (conn_id, channel, gen) in self.tiers.take_due(now.max(slot)) {
            let Some(sub) = self
                .conns
                .get_mut(&conn_id)
                .and_then(|c| c.subs.get_mut(&channel))
                .filter(|s| s.gen == gen && s.due)
            else {
                continue; // left, closed, or switched tiers meanwhile
            };
            sub.due = false;
            self.tier_moved(conn_id, &channel);
        }
    }

    /// A `join` with a different `mode` on a joined channel (its `joined`,
    /// with `head`, is queued): switches the member's tier. To `live` or
    /// `digest`, the member gets at once what it does not have yet — exactly
    /// the gap after its cursor, as a resume would; to `counts`, its
    /// catch-up stops where it is (a store read in flight is dropped when
    /// it comes back) and its cursor stays.
    pub(crate) fn switch_mode(
        &mut self,
        conn_id: ConnId,
        channel: &Channel,
        mode: JoinMode,
        head: Seq,
    ) {
        let now = self.now();
        let Some(sub) = self
            .conns
            .get_mut(&conn_id)
            .and_then(|c| c.subs.get_mut(channel))
        else {
            return;
        };
        sub.mode = mode;
        sub.due = false;
        match mode {
            JoinMode::Live | JoinMode::Digest => {
                if mode == JoinMode::Digest {
                    sub.served_ms = now;
                }
                if matches!(sub.phase, Phase::Live) {
                    sub.phase = Phase::CatchUp { fetching: false };
                }
                self.catch_up(conn_id, channel);
            }
            JoinMode::Counts => {
                if matches!(sub.phase, Phase::CatchUp { .. }) {
                    sub.phase = Phase::Live;
                }
                sub.head_told = sub.head_told.max(head);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use chat_proto::auth::Identity;

    use super::*;
    use crate::batch::Batch;
    use crate::config::Config;
    use crate::stats::Stats;
    use crate::vocab::{JobDone, ShardId};

    const ROOM: &str = "room:big";

    fn shard() -> ShardState {
        let cfg = Config {
            digest_interval_ms: 250,
            counts_interval_ms: 2_000,
            ..Config::default()
        };
        ShardState::new(ShardId(0), 1, Arc::new(cfg), Arc::new(Stats::default()))
    }

    fn room() -> Channel {
        Channel::from_validated(Arc::from(ROOM))
    }

    /// A connection joined to the room in `mode` at head `head`, its
    /// outbox taken.
    fn member(st: &mut ShardState, user: &str, mode: &str, head: u64, now: u64) -> ConnId {
        let id = Identity {
            user: user.into(),
            device: "d".into(),
            expires_ms: None,
        };
        let c = st.open_conn(&id, now);
        st.on_text(
            c,
            &format!(r#"{{"type":"join","channel":"{ROOM}","mode":"{mode}"}}"#),
        );
        let gen = st.conns[&c].subs[ROOM].gen;
        st.on_joined(&room(), c, gen, Seq(head), None, None, &Arc::from(user));
        take(st, c, now);
        c
    }

    /// What the connection's outbox holds, as text; written out.
    fn take(st: &mut ShardState, c: ConnId, now: u64) -> String {
        let out = String::from_utf8_lossy(&st.output_bytes(c)).into_owned();
        let n = st.output_bytes(c).len();
        st.wrote(c, n, now);
        out
    }

    /// Commits seqs `first..=last` as one batch of frames `[seq]`.
    fn commit(st: &mut ShardState, first: u64, last: u64, now: u64) {
        st.set_now(now);
        let mut b = Batch::new(room(), Seq(first));
        for s in first..=last {
            b.push_frame(|out| out.extend_from_slice(format!("[{s}]").as_bytes()));
        }
        st.on_batch(&Arc::new(b));
    }

    fn timers(st: &mut ShardState) -> Vec<u64> {
        std::mem::take(&mut st.fx.io)
            .into_iter()
            .filter_map(|j| match j {
                IoJob::TierTimer { after_ms, .. } => Some(after_ms),
                _ => None,
            })
            .collect()
    }

    /// The timer of the slot due at `now` fires.
    fn fire(st: &mut ShardState, now: u64) {
        st.on_job_done(JobDone::TiersDue { slot: now }, now);
    }

    #[test]
    fn a_digest_member_gets_what_accumulated_together_once_per_interval() {
        let mut st = shard();
        let live = member(&mut st, "l", "live", 0, 1_000);
        let digest = member(&mut st, "d", "digest", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        assert_eq!(take(&mut st, live, 1_000), "[1]");
        assert_eq!(
            take(&mut st, digest, 1_000),
            "[1]",
            "the first batch after a quiet interval goes at once"
        );
        commit(&mut st, 2, 2, 1_010);
        commit(&mut st, 3, 4, 1_100);
        assert_eq!(take(&mut st, live, 1_100), "[2][3][4]");
        assert_eq!(
            take(&mut st, digest, 1_100),
            "",
            "held until its interval passed"
        );
        assert_eq!(timers(&mut st), vec![240], "one wake-up, at 1,250");
        fire(&mut st, 1_240);
        assert_eq!(take(&mut st, digest, 1_240), "", "not due yet");
        // A timer that fires before the shard's clock reaches its slot
        // reschedules rather than strands the member.
        st.on_job_done(JobDone::TiersDue { slot: 1_250 }, 1_249);
        assert_eq!(take(&mut st, digest, 1_249), "", "never early");
        assert_eq!(timers(&mut st), vec![1], "woken again at 1,250");
        fire(&mut st, 1_250);
        assert_eq!(take(&mut st, digest, 1_250), "[2][3][4]", "all of it, once");
        assert_eq!(st.tiers.len(), 0);
        fire(&mut st, 1_600);
        assert_eq!(take(&mut st, digest, 1_600), "", "nothing twice");
        // Quiet for longer than the interval: the next batch goes at once.
        commit(&mut st, 5, 5, 1_600);
        assert_eq!(take(&mut st, digest, 1_600), "[5]");
    }

    #[test]
    fn members_due_in_the_same_grain_share_one_wake_up() {
        let mut st = shard();
        let a = member(&mut st, "a", "digest", 0, 1_000);
        let b = member(&mut st, "b", "digest", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        take(&mut st, a, 1_000);
        take(&mut st, b, 1_000);
        commit(&mut st, 2, 2, 1_001);
        assert_eq!(timers(&mut st).len(), 1);
        fire(&mut st, 1_250);
        assert_eq!(take(&mut st, a, 1_250), "[2]");
        assert_eq!(take(&mut st, b, 1_250), "[2]");
    }

    #[test]
    fn a_counts_member_gets_the_head_while_it_moves_and_no_messages() {
        let mut st = shard();
        let c = member(&mut st, "c", "counts", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        let first = take(&mut st, c, 1_000);
        assert!(
            first.contains(r#"{"type":"head","channel":"room:big","head":1}"#),
            "{first}"
        );
        assert!(!first.contains("[1]"), "no message: {first}");
        commit(&mut st, 2, 3, 1_500);
        commit(&mut st, 4, 4, 2_000);
        assert_eq!(take(&mut st, c, 2_000), "", "at most one head per interval");
        assert_eq!(timers(&mut st), vec![1_500]);
        fire(&mut st, 3_000);
        let next = take(&mut st, c, 3_000);
        assert!(next.contains(r#""head":4"#), "the latest head: {next}");
        assert!(!next.contains('['), "{next}");
        fire(&mut st, 10_000);
        assert_eq!(
            take(&mut st, c, 10_000),
            "",
            "no event while the head stays"
        );
    }

    #[test]
    fn switching_counts_to_live_replays_exactly_the_gap_from_the_cursor() {
        let mut st = shard();
        let c = member(&mut st, "c", "counts", 2, 1_000);
        commit(&mut st, 3, 5, 1_000);
        commit(&mut st, 6, 6, 1_100);
        take(&mut st, c, 1_100);
        st.on_text(c, r#"{"type":"join","channel":"room:big","id":9}"#);
        let out = take(&mut st, c, 1_100);
        let joined = out.find(r#""type":"joined""#).unwrap();
        let gap = out.find("[3][4][5][6]").unwrap();
        assert!(joined < gap, "the join's answer first: {out}");
        assert!(!out.contains("[2]") && !out.contains("[7]"), "{out}");
        commit(&mut st, 7, 7, 1_200);
        assert_eq!(take(&mut st, c, 1_200), "[7]", "then live");
        // The pending head event is not sent to a live member.
        fire(&mut st, 5_000);
        assert_eq!(take(&mut st, c, 5_000), "");
    }

    #[test]
    fn switching_live_to_counts_stops_messages_and_keeps_the_cursor() {
        let mut st = shard();
        let c = member(&mut st, "c", "live", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        assert_eq!(take(&mut st, c, 1_000), "[1]");
        st.on_text(c, r#"{"type":"join","channel":"room:big","mode":"counts"}"#);
        assert!(take(&mut st, c, 1_000).contains(r#""type":"joined""#));
        commit(&mut st, 2, 3, 1_000);
        let out = take(&mut st, c, 1_000);
        assert!(out.contains(r#""head":3"#) && !out.contains('['), "{out}");
        assert_eq!(st.conns[&c].subs[ROOM].cursor, Seq(1));
        st.on_text(c, r#"{"type":"join","channel":"room:big","mode":"digest"}"#);
        let out = take(&mut st, c, 1_000);
        assert!(out.ends_with("[2][3]"), "the gap at once: {out}");
    }

    #[test]
    fn a_digest_member_that_left_is_not_served_by_its_old_timer() {
        let mut st = shard();
        let c = member(&mut st, "d", "digest", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        commit(&mut st, 2, 2, 1_010);
        take(&mut st, c, 1_010);
        st.on_text(c, r#"{"type":"leave","channel":"room:big"}"#);
        take(&mut st, c, 1_010);
        fire(&mut st, 1_250);
        assert_eq!(take(&mut st, c, 1_250), "");
    }

    #[test]
    fn a_digest_member_behind_the_ring_reads_the_store_like_any_catch_up() {
        let mut st = shard();
        let c = member(&mut st, "d", "digest", 0, 1_000);
        commit(&mut st, 1, 1, 1_000);
        take(&mut st, c, 1_000);
        // The ring restarts (a batch that does not continue it): seq 2 is
        // only in the store.
        commit(&mut st, 3, 3, 1_010);
        st.fx.io.clear();
        fire(&mut st, 1_250);
        let reads: Vec<_> = std::mem::take(&mut st.fx.io)
            .into_iter()
            .filter(|j| matches!(j, IoJob::CatchUp { .. }))
            .collect();
        assert_eq!(reads.len(), 1, "{reads:?}");
        let IoJob::CatchUp { after, .. } = &reads[0] else {
            unreachable!()
        };
        assert_eq!(*after, Seq(1));
    }
}
