//! Per-user limits, held by each shard for the users it serves: the request
//! rate bucket, the HTTP calls in progress and the groups created this hour.
//!
//! Every connection and HTTP call of a user on one shard draws from the same
//! entry, so a reconnect or a new HTTP call does not start with a full
//! bucket. Each shard enforces the whole limit for what it serves (an exact
//! process-wide count would need a cross-shard round trip per request): a
//! user spread over k shards gets at most k × each limit, and k ≤ nr_shards.
//! An entry is forgotten once it holds nothing a new entry would not (a
//! full bucket, no call in progress, no creation in the current hour), so
//! memory follows the users active on the shard.

use std::sync::Arc;

use crate::maps::Map;

/// One hour, in milliseconds: the window of `max_groups_created_per_hour`.
const HOUR_MS: u64 = 3_600_000;

/// One user's limits on one shard.
#[derive(Debug, Default)]
struct UserLimits {
    bucket: RateBucket,
    /// HTTP API calls in progress.
    http_calls: u32,
    /// Start of the current group-creation window (ms) and creations in it.
    groups_window_ms: u64,
    groups_created: u32,
}

/// The per-user limits of one shard.
#[derive(Debug, Default)]
pub(crate) struct UserLimitsTable {
    users: Map<Arc<str>, UserLimits>,
}

impl UserLimitsTable {
    /// Takes one request token for `user` at `now_ms`; false when the
    /// user's bucket is empty.
    pub(crate) fn take_request(
        &mut self,
        user: &Arc<str>,
        now_ms: u64,
        per_sec: f64,
        burst: u32,
    ) -> bool {
        self.entry(user).bucket.take(now_ms, per_sec, burst)
    }

    /// Starts an HTTP call of `user`; false when `max` are in progress.
    pub(crate) fn start_http_call(&mut self, user: &Arc<str>, max: u32) -> bool {
        let e = self.entry(user);
        if e.http_calls >= max {
            return false;
        }
        e.http_calls += 1;
        true
    }

    /// An HTTP call of `user` ended.
    pub(crate) fn end_http_call(&mut self, user: &str) {
        if let Some(e) = self.users.get_mut(user) {
            e.http_calls = e.http_calls.saturating_sub(1);
        }
    }

    /// Counts one group creation of `user` at `now_ms`; false when `max`
    /// were created in the current hour (0 = unlimited).
    pub(crate) fn take_group_creation(&mut self, user: &Arc<str>, now_ms: u64, max: u32) -> bool {
        if max == 0 {
            return true;
        }
        let e = self.entry(user);
        if now_ms.saturating_sub(e.groups_window_ms) >= HOUR_MS {
            e.groups_window_ms = now_ms;
            e.groups_created = 0;
        }
        if e.groups_created >= max {
            return false;
        }
        e.groups_created += 1;
        true
    }

    /// Forgets entries that hold nothing a fresh entry would not.
    pub(crate) fn sweep(&mut self, now_ms: u64, per_sec: f64, burst: u32) {
        self.users.retain(|_, e| {
            let bucket_full = per_sec <= 0.0 || e.bucket.is_full(now_ms, per_sec, burst);
            let window_open =
                e.groups_created > 0 && now_ms.saturating_sub(e.groups_window_ms) < HOUR_MS;
            !bucket_full || e.http_calls > 0 || window_open
        });
    }

    /// Users with an entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    fn entry(&mut self, user: &Arc<str>) -> &mut UserLimits {
        self.users.entry(user.clone()).or_default()
    }
}

/// A token bucket (one per user per shard).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateBucket {
    tokens: f64,
    refilled_ms: u64,
}

impl RateBucket {
    /// Takes one token at `now_ms` (`per_sec` tokens a second, at most
    /// `burst`); false when the bucket is empty.
    pub(crate) fn take(&mut self, now_ms: u64, per_sec: f64, burst: u32) -> bool {
        self.refill(now_ms, per_sec, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ms` (then it can be forgotten: a
    /// new bucket starts full).
    pub(crate) fn is_full(&mut self, now_ms: u64, per_sec: f64, burst: u32) -> bool {
        self.refill(now_ms, per_sec, burst);
        self.tokens >= f64::from(burst)
    }

    fn refill(&mut self, now_ms: u64, per_sec: f64, burst: u32) {
        if self.refilled_ms == 0 {
            self.tokens = f64::from(burst);
        } else {
            let elapsed = now_ms.saturating_sub(self.refilled_ms) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        }
        self.refilled_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_bucket_allows_a_burst_then_the_rate() {
        let mut b = RateBucket::default();
        let t = 1_000_000;
        for _ in 0..5 {
            assert!(b.take(t, 2.0, 5));
        }
        assert!(!b.take(t, 2.0, 5));
        assert!(!b.is_full(t, 2.0, 5));
        assert!(b.take(t + 500, 2.0, 5), "one token after 0.5 s at 2/s");
        assert!(!b.take(t + 500, 2.0, 5));
        assert!(b.is_full(t + 10_000, 2.0, 5), "full again after a while");
    }

    #[test]
    fn a_users_connections_share_one_bucket_across_reconnects() {
        let mut t = UserLimitsTable::default();
        let alice: Arc<str> = Arc::from("alice");
        let now = 1_000_000;
        assert!(t.take_request(&alice, now, 1.0, 2));
        assert!(t.take_request(&alice, now, 1.0, 2));
        assert!(
            !t.take_request(&alice, now, 1.0, 2),
            "empty for every connection"
        );
        t.sweep(now, 1.0, 2);
        assert_eq!(t.len(), 1, "a bucket in use is kept");
        assert!(!t.take_request(&alice, now, 1.0, 2));
        t.sweep(now + 60_000, 1.0, 2);
        assert_eq!(t.len(), 0, "a refilled bucket is forgotten");
    }

    #[test]
    fn http_calls_and_group_creations_are_capped() {
        let mut t = UserLimitsTable::default();
        let bob: Arc<str> = Arc::from("bob");
        assert!(t.start_http_call(&bob, 2));
        assert!(t.start_http_call(&bob, 2));
        assert!(!t.start_http_call(&bob, 2));
        t.end_http_call("bob");
        assert!(t.start_http_call(&bob, 2));
        let now = 10 * HOUR_MS;
        assert!(t.take_group_creation(&bob, now, 2));
        assert!(t.take_group_creation(&bob, now + 1, 2));
        assert!(!t.take_group_creation(&bob, now + 2, 2));
        assert!(t.take_group_creation(&bob, now + HOUR_MS, 2), "a new hour");
        assert!(t.take_group_creation(&bob, now, 0), "0 = unlimited");
    }
}
