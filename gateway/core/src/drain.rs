//! The drain window: when each open session of a shard is closed with 1001
//! while the gateway drains, so that clients come back spread over the
//! window instead of all at once.
//!
//! A rolling deploy that closes every connection in the same second makes
//! every client reconnect in the same second — to the replacement, which
//! then pays for all their resumes at once. Here each session gets its own
//! close time: the sessions are put in a random order and the window is cut
//! into as many equal slots, each session closing at a random point of its
//! slot (stratified jitter: random per session, yet the closes per second
//! stay even across the window). Clients add their own random reconnect
//! delay on top (the protocol asks them to after 1001).
//!
//! Sans-IO: [`DrainSchedule::new`] takes the sessions, `now` and a seed;
//! [`DrainSchedule::due`] says which to close at a later `now`.
//! `ShardState::start_drain_window` and `ShardState::drain_step` apply it;
//! a session's close waits, like every close, for the acks owed to it and
//! for its outbox to flush.

use crate::vocab::ConnId;

/// SplitMix64: a small, well-mixed generator; the seed fixes the schedule.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 2⁻³² here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When each session closes: `(at_ms, conn)` in time order.
#[derive(Clone, Debug)]
pub struct DrainSchedule {
    closes: Vec<(u64, ConnId)>,
    next: usize,
}

impl DrainSchedule {
    /// A schedule closing `sessions` between `now` and `now + window_ms`
    /// (all at `now` when the window is 0).
    #[must_use]
    pub fn new(mut sessions: Vec<ConnId>, now: u64, window_ms: u64, seed: u64) -> DrainSchedule {
        let mut rng = SplitMix(seed);
        // Fisher–Yates: the order in which sessions get their slots.
        for i in (1..sessions.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            sessions.swap(i, j);
        }
        let n = sessions.len() as u64;
        let closes = sessions
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let at = if window_ms == 0 {
                    now
                } else {
                    // Slot i is [i·w/n, (i+1)·w/n); a random point in it.
                    let start = (i as u64).saturating_mul(window_ms) / n;
                    let end = (i as u64 + 1).saturating_mul(window_ms) / n;
                    now + start + rng.below((end - start).max(1))
                };
                (at, conn)
            })
            .collect();
        DrainSchedule { closes, next: 0 }
    }

    /// The sessions whose time has come by `now` and were not returned
    /// before.
    pub fn due(&mut self, now: u64) -> &[(u64, ConnId)] {
        let from = self.next;
        while self.next < self.closes.len() && self.closes[self.next].0 <= now {
            self.next += 1;
        }
        &self.closes[from..self.next]
    }

    /// Sessions not due yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.closes.len() - self.next
    }

    /// Sessions in the schedule.
    #[must_use]
    pub fn len(&self) -> usize {
        self.closes.len()
    }

    /// No session to close.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.closes.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn conns(n: u64) -> Vec<ConnId> {
        (1..=n).map(ConnId).collect()
    }

    #[test]
    fn closes_are_spread_evenly_over_the_window() {
        let mut s = DrainSchedule::new(conns(1000), 10_000, 2_000, 7);
        assert_eq!(s.len(), 1000);
        assert!(s.due(9_999).is_empty());
        // Every tenth of the window closes a tenth of the sessions.
        let mut seen = 0;
        for step in 1..=10u64 {
            let n = s.due(10_000 + step * 200 - 1).len();
            seen += n;
            assert!((95..=105).contains(&n), "step {step}: {n}");
        }
        assert_eq!(seen, 1000);
        assert_eq!(s.remaining(), 0);
        assert!(s.due(u64::MAX).is_empty(), "each session is returned once");
    }

    #[test]
    fn the_order_is_random_and_the_seed_replays_it() {
        let order = |seed| {
            let mut s = DrainSchedule::new(conns(50), 0, 5_000, seed);
            s.due(u64::MAX).iter().map(|(_, c)| c.0).collect::<Vec<_>>()
        };
        let a = order(1);
        assert_eq!(a, order(1));
        assert_ne!(a, order(2));
        assert_ne!(a, (1..=50).collect::<Vec<_>>(), "not in connection order");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=50).collect::<Vec<_>>(), "every session once");
    }

    #[test]
    fn times_are_jittered_within_their_slots() {
        let mut s = DrainSchedule::new(conns(4), 0, 4_000, 3);
        let times: Vec<u64> = s.due(u64::MAX).iter().map(|(t, _)| *t).collect();
        for (i, t) in times.iter().enumerate() {
            let slot = i as u64 * 1000;
            assert!((slot..slot + 1000).contains(t), "{times:?}");
        }
        assert!(times.iter().any(|t| t % 1000 != 0), "{times:?}");
    }

    #[test]
    fn a_zero_window_closes_everything_at_once() {
        let mut s = DrainSchedule::new(conns(3), 500, 0, 1);
        assert_eq!(s.due(500).len(), 3);
        let mut empty = DrainSchedule::new(Vec::new(), 0, 1_000, 1);
        assert!(empty.is_empty());
        assert!(empty.due(u64::MAX).is_empty());
    }

    #[test]
    fn a_shard_closes_its_sessions_with_1001_over_the_window_and_not_http_calls() {
        use std::sync::Arc;
        let mut st = crate::ShardState::new(
            crate::ShardId(0),
            1,
            Arc::new(crate::Config::default()),
            Arc::new(crate::Stats::default()),
        );
        let who = |u: &str| chat_proto::auth::Identity {
            user: u.into(),
            device: "d".into(),
            expires_ms: None,
        };
        let sessions: Vec<ConnId> = (0..10)
            .map(|i| st.open_conn(&who(&format!("u{i}")), 1_000))
            .collect();
        let http = st.open_http(&who("h"), 1_000);
        assert_eq!(st.start_drain_window(2_000, 1_000, 42), 10);
        assert_eq!(st.drain_remaining(), 10);
        let closing = |st: &crate::ShardState| {
            sessions
                .iter()
                .filter(|c| st.session(**c).is_some_and(|s| s.closing.is_some()))
                .count()
        };
        assert_eq!(st.drain_step(1_999), 0);
        assert_eq!(st.drain_step(2_499), closing(&st));
        let half = closing(&st);
        assert!((4..=6).contains(&half), "{half} of 10 by half the window");
        st.close_conn(sessions[9], 2_600);
        st.drain_step(3_000);
        assert_eq!(st.drain_remaining(), 0);
        assert_eq!(closing(&st), 9, "the session already gone is skipped");
        let s = st.session(sessions[0]).unwrap();
        assert_eq!(s.closing.map(|c| c.code), Some(1001));
        assert!(
            st.session(http).unwrap().closing.is_none(),
            "HTTP calls end by themselves"
        );
    }

    #[test]
    fn a_due_session_stops_being_read_and_closes_only_once_its_sends_are_acked() {
        use std::sync::Arc;
        let mut st = crate::ShardState::new(
            crate::ShardId(0),
            1,
            Arc::new(crate::Config::default()),
            Arc::new(crate::Stats::default()),
        );
        let who = chat_proto::auth::Identity {
            user: "alice".into(),
            device: "d".into(),
            expires_ms: None,
        };
        let c = st.open_conn(&who, 1_000);
        st.on_request(
            c,
            r#"{"type":"send","id":1,"channel":"room:a","client_msg_id":"m1","text":"hi"}"#,
            1_000,
        );
        st.start_drain_window(2_000, 0, 1);
        assert_eq!(st.drain_step(2_000), 0, "its send is in flight");
        let s = st.session(c).unwrap();
        assert!(s.reads_paused, "a due session is not read any more");
        assert!(s.closing.is_none());
        assert_eq!(st.drain_remaining(), 1);
    }
}
