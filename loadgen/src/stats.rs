//! Measurements: latency histograms and counters, kept per shard (worker
//! thread) without sharing, merged at the end.
//!
//! * [`LatencyHistogram`] wraps an HdrHistogram of microseconds (1 µs to one
//!   hour, 3 significant digits: ~0.1 % error, ~200 KiB each). Values above
//!   an hour are clamped, not dropped.
//! * [`Percentiles`] is what the report prints: p50, p90, p99, p99.9, max.
//! * [`HistogramData`] is the histogram as (value, count) pairs, the form a
//!   worker process sends to the parent in JSON (a few hundred pairs).
//! * [`Counters`] count events; [`ShardStats`] is one shard's everything.
//!
//! Two latencies are measured, both from the *scheduled* send time that the
//! payload carries (open loop: a stalled server or client shows up as latency,
//! it does not just slow the sender down):
//!
//! * **delivery** — for every `msg` a connection receives from another
//!   connection: receive time − scheduled send time;
//! * **ack** — for every `ack` a sender receives: receive time − scheduled
//!   send time.
//!
//! With `--latency-window W`, delivery latency is also kept per window of
//! W of the send phase (by scheduled time), in coarser histograms (2
//! significant digits, ~25 KiB each): [`LatencyWindows`], p99 over time.
//! In `soak`, throttled readers' deliveries go to `slow_delivery` instead
//! of `delivery` (and not into the windows).
//!
//! And three about connections:
//!
//! * **handshake** — TCP connect + WebSocket upgrade, start of the attempt →
//!   `101` checked (every successful attempt, reconnects included);
//! * **rejoin** and **catch-up** (`resume` scenario) — from a resumer's
//!   reconnect attempt to its `joined`, and to the last message it missed
//!   (the `head` of that `joined`) received.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::checker::Violations;

/// Highest value a histogram tracks: one hour in microseconds.
pub const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    h: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram of 2 significant digits (~1 % error, an eighth
    /// of the memory), for the per-window histograms.
    #[must_use]
    pub fn coarse() -> LatencyHistogram {
        let h = Histogram::new_with_bounds(1, MAX_TRACKED_US, 2)
            .or_else(|_| Histogram::new(2))
            .unwrap_or_else(|_| unreachable_histogram());
        LatencyHistogram { h }
    }

    /// An empty histogram (1 µs – 1 h, 3 significant digits).
    #[must_use]
    pub fn new() -> LatencyHistogram {
        // The bounds are constants that satisfy the constructor's rules
        // (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5); fall back to an
        // auto-resizing histogram should that ever change.
        let h = Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable_histogram());
        LatencyHistogram { h }
    }

    /// Records one latency (clamped to [1 µs, 1 h]).
    pub fn record(&mut self, us: u64) {
        self.h.saturating_record(us.clamp(1, MAX_TRACKED_US));
    }

    /// Records `count` latencies of `us`.
    pub fn record_n(&mut self, us: u64, count: u64) {
        // `record_n` only fails for values out of range; clamped, they are not.
        let _ = self.h.record_n(us.clamp(1, MAX_TRACKED_US), count);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides: `add` cannot fail. Fall back to
        // re-recording if it somehow does.
        if self.h.add(&other.h).is_err() {
            for v in other.h.iter_recorded() {
                self.record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Values recorded.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The summary the report prints (all zero when empty).
    #[must_use]
    pub fn percentiles(&self) -> Percentiles {
        if self.h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: self.h.len(),
            p50: self.h.value_at_quantile(0.50),
            p90: self.h.value_at_quantile(0.90),
            p99: self.h.value_at_quantile(0.99),
            p999: self.h.value_at_quantile(0.999),
            max: self.h.max(),
            mean: self.h.mean(),
        }
    }

    /// The histogram as (value, count) pairs, for sending between processes.
    #[must_use]
    pub fn to_data(&self) -> HistogramData {
        HistogramData(
            self.h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Rebuilds a histogram from [`LatencyHistogram::to_data`] pairs.
    #[must_use]
    pub fn from_data(data: &HistogramData) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for &(v, n) in &data.0 {
            h.record_n(v, n);
        }
        h
    }
}

/// Never reached: `Histogram::new(3)` only fails for sigfig > 5.
#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    panic!("hdrhistogram refused 3 significant digits")
}

/// Delivery latency per window of the send phase (window `i` holds the
/// messages *scheduled* in `[i·W, (i+1)·W)` after sending started).
#[derive(Clone, Debug, Default)]
pub struct LatencyWindows {
    /// The window, µs (0: not kept).
    pub window_us: u64,
    /// One histogram per window, grown as messages arrive.
    pub hists: Vec<LatencyHistogram>,
}

/// At most this many windows are kept (later messages go to the last).
pub const MAX_WINDOWS: usize = 2_000;

impl LatencyWindows {
    /// Windows of `window_us` (0: none kept).
    #[must_use]
    pub fn new(window_us: u64) -> LatencyWindows {
        LatencyWindows {
            window_us,
            hists: Vec::new(),
        }
    }

    /// Records `latency_us` of a message scheduled `since_start_us` after
    /// sending started.
    pub fn record(&mut self, since_start_us: u64, latency_us: u64) {
        if self.window_us == 0 {
            return;
        }
        let i = ((since_start_us / self.window_us) as usize).min(MAX_WINDOWS - 1);
        while self.hists.len() <= i {
            self.hists.push(LatencyHistogram::coarse());
        }
        self.hists[i].record(latency_us);
    }

    /// Adds `other`'s windows, window by window.
    pub fn merge(&mut self, other: &LatencyWindows) {
        if self.window_us == 0 {
            self.window_us = other.window_us;
        }
        for (i, h) in other.hists.iter().enumerate() {
            if i >= self.hists.len() {
                self.hists.push(LatencyHistogram::coarse());
            }
            self.hists[i].merge(h);
        }
    }

    /// Percentiles per window, with the window's start in seconds after
    /// sending started.
    #[must_use]
    pub fn percentiles(&self) -> Vec<WindowPercentiles> {
        self.hists
            .iter()
            .enumerate()
            .map(|(i, h)| WindowPercentiles {
                start_s: (i as u64 * self.window_us) as f64 / 1e6,
                latency_us: h.percentiles(),
            })
            .collect()
    }

    /// The serialisable form: (window, its histogram's pairs).
    #[must_use]
    pub fn to_data(&self) -> WindowsData {
        WindowsData {
            window_us: self.window_us,
            hists: self.hists.iter().map(LatencyHistogram::to_data).collect(),
        }
    }

    /// Back from [`LatencyWindows::to_data`].
    #[must_use]
    pub fn from_data(d: &WindowsData) -> LatencyWindows {
        LatencyWindows {
            window_us: d.window_us,
            hists: d
                .hists
                .iter()
                .map(|data| {
                    let mut h = LatencyHistogram::coarse();
                    for &(v, n) in &data.0 {
                        h.record_n(v, n);
                    }
                    h
                })
                .collect(),
        }
    }
}

/// [`LatencyWindows`] as a worker process sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsData {
    /// The window, µs.
    pub window_us: u64,
    /// Each window's histogram.
    pub hists: Vec<HistogramData>,
}

/// The delivery latency of one window of the send phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowPercentiles {
    /// Start of the window, s after sending started.
    pub start_s: f64,
    /// Its percentiles, µs.
    pub latency_us: Percentiles,
}

/// A histogram as (value in µs, count) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramData(pub Vec<(u64, u64)>);

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Event counts of a shard, a process or the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Sends written (first attempts).
    pub sent: u64,
    /// Sends written again after a reconnect (same `client_msg_id`).
    pub retries: u64,
    /// Sends acked (each counted once).
    pub acked: u64,
    /// Acks with `duplicate: true` for a first attempt (an idempotency key
    /// collision: should be zero).
    pub unexpected_duplicate_acks: u64,
    /// `msg` events received (all channels, duplicates included).
    pub delivered: u64,
    /// Sends answered with `error`.
    pub send_errors: u64,
    /// Joins answered with `error`.
    pub join_errors: u64,
    /// Other `error` events.
    pub other_errors: u64,
    /// Successful WebSocket upgrades.
    pub connects: u64,
    /// Failed connection attempts (TCP, HTTP status, timeout).
    pub connect_errors: u64,
    /// Connections the server closed or that failed while up (not counting
    /// churn drops and the final close).
    pub disconnects: u64,
    /// Server close frames with code 1001 (going away: server restarting).
    pub going_away: u64,
    /// Frames that did not decode (WebSocket or JSON).
    pub protocol_errors: u64,
    /// Connections dropped on purpose (churn).
    pub churn_drops: u64,
    /// Scheduled sends skipped because too many were waiting while the
    /// connection was down.
    pub send_skipped: u64,
    /// Sends without an ack at the end.
    pub unacked: u64,
    /// Connections that were not up (or not rejoined) at the end.
    pub down_at_end: u64,
    /// Connections that never got `hello` and every `joined` of their
    /// first connection.
    pub not_ready: u64,
    /// Resumers (`resume` scenario) that rejoined with `since` after being
    /// away for the send phase.
    pub resumes: u64,
    /// Messages those rejoins had to replay: Σ (`head` of the resume
    /// `joined` − `since`).
    pub resume_replayed: u64,
    /// Resumers that received every message they missed.
    pub resumes_caught_up: u64,
    /// Connections whose reads were rate-limited (slow consumers).
    pub slow_connections: u64,
    /// Bytes the slow connections read.
    pub slow_bytes_read: u64,
    /// TCP segments the server sent to these connections, pure ACKs
    /// included: each socket's `tcpi_segs_in`, read as it closes (abusers'
    /// connections not counted). Unlike the host's `OutSegs` this is the
    /// server's own count, not loadgen's segments too.
    pub server_segments: u64,
    /// Of those, the segments that carried data (`tcpi_data_segs_in`):
    /// what frames per segment divides by.
    pub server_data_segments: u64,
    /// Payload bytes the server sent on the run's connections
    /// (`tcpi_bytes_received`, read with the segments): WebSocket frames,
    /// compressed or not, and the upgrade response.
    pub server_bytes: u64,
}

impl Counters {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Counters) {
        self.sent += o.sent;
        self.retries += o.retries;
        self.acked += o.acked;
        self.unexpected_duplicate_acks += o.unexpected_duplicate_acks;
        self.delivered += o.delivered;
        self.send_errors += o.send_errors;
        self.join_errors += o.join_errors;
        self.other_errors += o.other_errors;
        self.connects += o.connects;
        self.connect_errors += o.connect_errors;
        self.disconnects += o.disconnects;
        self.going_away += o.going_away;
        self.protocol_errors += o.protocol_errors;
        self.churn_drops += o.churn_drops;
        self.send_skipped += o.send_skipped;
        self.unacked += o.unacked;
        self.down_at_end += o.down_at_end;
        self.not_ready += o.not_ready;
        self.resumes += o.resumes;
        self.resume_replayed += o.resume_replayed;
        self.resumes_caught_up += o.resumes_caught_up;
        self.slow_connections += o.slow_connections;
        self.slow_bytes_read += o.slow_bytes_read;
        self.server_segments += o.server_segments;
        self.server_data_segments += o.server_data_segments;
        self.server_bytes += o.server_bytes;
    }

    /// Errors of every kind (what the progress line and the table call
    /// "errors").
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.send_errors
            + self.join_errors
            + self.other_errors
            + self.connect_errors
            + self.protocol_errors
            + self.unexpected_duplicate_acks
    }
}

/// Everything one shard measures. Owned by the shard (no locks); the
/// connection drivers borrow it between awaits.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Delivery latency (µs) of messages from other connections.
    pub delivery: LatencyHistogram,
    /// Delivery latency (µs) of throttled readers kept apart (`soak`).
    pub slow_delivery: LatencyHistogram,
    /// Delivery latency per window of the send phase (`--latency-window`).
    pub windows: LatencyWindows,
    /// What the abusive connections did and were answered.
    pub abuse: crate::abuse::AbuseStats,
    /// Ack latency (µs).
    pub ack: LatencyHistogram,
    /// Connect + upgrade time of successful attempts (µs).
    pub handshake: LatencyHistogram,
    /// Resumers: reconnect attempt → `joined` (µs).
    pub rejoin: LatencyHistogram,
    /// Resumers: reconnect attempt → every missed message received (µs).
    pub catch_up: LatencyHistogram,
    /// Event counts.
    pub counters: Counters,
    /// Invariant violations seen live (duplicates, reorders, …); lost
    /// messages are added when connections finish.
    pub violations: Violations,
    /// Connections currently up (upgraded).
    pub conns_up: u64,
    /// The first few distinct error descriptions (at most
    /// [`MAX_ERROR_SAMPLES`]), to say *why* errors were counted.
    pub error_samples: Vec<String>,
}

/// How many distinct error descriptions are kept.
pub const MAX_ERROR_SAMPLES: usize = 5;

impl ShardStats {
    /// Adds `other` into `self` (the gauge `conns_up` too).
    pub fn merge(&mut self, other: &ShardStats) {
        self.delivery.merge(&other.delivery);
        self.slow_delivery.merge(&other.slow_delivery);
        self.windows.merge(&other.windows);
        self.abuse.merge(&other.abuse);
        self.ack.merge(&other.ack);
        self.handshake.merge(&other.handshake);
        self.rejoin.merge(&other.rejoin);
        self.catch_up.merge(&other.catch_up);
        self.counters.add(&other.counters);
        self.violations.add(&other.violations);
        self.conns_up += other.conns_up;
        for e in &other.error_samples {
            self.note_error(|| e.clone());
        }
    }

    /// Keeps an error description if fewer than [`MAX_ERROR_SAMPLES`]
    /// distinct ones are kept (`describe` is only called then).
    pub fn note_error(&mut self, describe: impl FnOnce() -> String) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES {
            let e = describe();
            if !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.p90, 900);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
    }

    #[test]
    fn merge_and_round_trip_through_data() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record(100);
        b.record(200_000);
        b.record(0); // clamped to 1
        b.record(u64::MAX); // clamped to an hour
        a.merge(&b);
        assert_eq!(a.len(), 4);
        let back = LatencyHistogram::from_data(&a.to_data());
        assert_eq!(back.percentiles(), a.percentiles());
        assert!(back.percentiles().max >= MAX_TRACKED_US);
    }

    #[test]
    fn windows_split_by_scheduled_time_and_merge_window_by_window() {
        let mut a = LatencyWindows::new(10_000_000);
        a.record(1_000_000, 100);
        a.record(25_000_000, 5_000);
        let mut b = LatencyWindows::new(10_000_000);
        b.record(9_999_999, 300);
        a.merge(&b);
        let p = a.percentiles();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].start_s, p[0].latency_us.count), (0.0, 2));
        assert_eq!(p[1].latency_us.count, 0, "an empty window stays");
        assert_eq!(p[2].start_s, 20.0);
        let back = LatencyWindows::from_data(&a.to_data());
        assert_eq!(back.percentiles(), p);
        let mut off = LatencyWindows::default();
        off.record(1, 1);
        assert!(off.hists.is_empty());
    }

    #[test]
    fn empty_histograms_summarise_to_zero() {
        assert_eq!(
            LatencyHistogram::new().percentiles(),
            Percentiles::default()
        );
    }
}
