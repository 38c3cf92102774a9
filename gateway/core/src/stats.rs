//! Process-wide counters and histograms, shared by all shards (relaxed
//! atomics). The gateway renders them for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Process-wide counters, shared by all shards (relaxed atomics).
#[derive(Default)]
pub struct Stats {
    /// Open connections (WebSocket and HTTP, including handshakes).
    pub connections: AtomicUsize,
    /// Connections refused because the maximum was reached.
    pub refused: AtomicU64,
    /// Accept errors (EMFILE/ENFILE and others).
    pub accept_errors: AtomicU64,
    /// WebSocket upgrades answered on a shard's socket ring (accepted and
    /// upgraded on the ring; the others went through the listener's HTTP
    /// path, a task with an `rt::net::TcpStream`).
    pub ring_upgrades: AtomicU64,
    /// Presence fan-outs looked up in the store (a user's transition:
    /// whom to tell).
    pub presence_fanouts: AtomicU64,
    /// Trips to the store threads those took (a shard gathers the fan-outs
    /// of 5 ms and makes them in one trip per 8, rounded up, side by side).
    pub presence_trips: AtomicU64,
    /// Sends (edits, deletes) forwarded to owners.
    pub received: AtomicU64,
    /// Messages committed to the store.
    pub committed: AtomicU64,
    /// Store commits made by owners.
    pub commits: AtomicU64,
    /// Message frames queued to connections (live and catch-up).
    pub deliveries: AtomicU64,
    /// WebSocket sessions opened (also the source of device-replacement order).
    pub opened: AtomicU64,
    /// Upgrades refused for a missing, bad or expired token (or bad dev ids).
    pub auth_failures: AtomicU64,
    /// Browser requests and upgrades refused for their `Origin`
    /// (`allowed_origins`).
    pub origin_refused: AtomicU64,
    /// Connections cut off because the peer took no bytes for 2 × heartbeat.
    pub write_stalls: AtomicU64,
    /// Push jobs delivered to the webhook.
    pub push_sent: AtomicU64,
    /// Push jobs written to the dead-letter file after the last retry.
    pub push_dead: AtomicU64,
    /// Times a connection fell behind its outbox budget.
    pub slow_consumer_events: AtomicU64,
    /// Largest outbox seen on any connection, in bytes.
    pub max_outbox_bytes: AtomicUsize,
    /// Batches not sent to a shard because its queue was full.
    pub mesh_overflows: AtomicU64,
    /// Deliveries to `digest` members (each queues everything that
    /// accumulated since the member's last one: one write, or a catch-up
    /// when it is far behind).
    pub digest_deliveries: AtomicU64,
    /// `head` events queued to `counts` members.
    pub head_events: AtomicU64,
    /// Histograms and per-shard gauges.
    pub detail: Detail,
}

/// A plain copy of [`Stats`].
#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    /// See [`Stats::connections`].
    pub connections: usize,
    /// See [`Stats::refused`].
    pub refused: u64,
    /// See [`Stats::accept_errors`].
    pub accept_errors: u64,
    /// See [`Stats::ring_upgrades`].
    pub ring_upgrades: u64,
    /// See [`Stats::presence_fanouts`].
    pub presence_fanouts: u64,
    /// See [`Stats::presence_trips`].
    pub presence_trips: u64,
    /// See [`Stats::received`].
    pub received: u64,
    /// See [`Stats::committed`].
    pub committed: u64,
    /// See [`Stats::commits`].
    pub commits: u64,
    /// See [`Stats::deliveries`].
    pub deliveries: u64,
    /// See [`Stats::auth_failures`].
    pub auth_failures: u64,
    /// See [`Stats::origin_refused`].
    pub origin_refused: u64,
    /// See [`Stats::write_stalls`].
    pub write_stalls: u64,
    /// See [`Stats::push_sent`].
    pub push_sent: u64,
    /// See [`Stats::push_dead`].
    pub push_dead: u64,
    /// See [`Stats::slow_consumer_events`].
    pub slow_consumer_events: u64,
    /// See [`Stats::max_outbox_bytes`].
    pub max_outbox_bytes: usize,
    /// See [`Stats::mesh_overflows`].
    pub mesh_overflows: u64,
    /// See [`Stats::digest_deliveries`].
    pub digest_deliveries: u64,
    /// See [`Stats::head_events`].
    pub head_events: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            ring_upgrades: self.ring_upgrades.load(Ordering::Relaxed),
            presence_fanouts: self.presence_fanouts.load(Ordering::Relaxed),
            presence_trips: self.presence_trips.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            origin_refused: self.origin_refused.load(Ordering::Relaxed),
            write_stalls: self.write_stalls.load(Ordering::Relaxed),
            push_sent: self.push_sent.load(Ordering::Relaxed),
            push_dead: self.push_dead.load(Ordering::Relaxed),
            slow_consumer_events: self.slow_consumer_events.load(Ordering::Relaxed),
            max_outbox_bytes: self.max_outbox_bytes.load(Ordering::Relaxed),
            mesh_overflows: self.mesh_overflows.load(Ordering::Relaxed),
            digest_deliveries: self.digest_deliveries.load(Ordering::Relaxed),
            head_events: self.head_events.load(Ordering::Relaxed),
        }
    }
}

/// A fixed-bucket histogram updated with relaxed atomics.
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, plus +Inf.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value (in the histogram's unit; the sum keeps integers).
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // The sum is kept in thousandths of the unit.
        self.sum
            .fetch_add((v.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Appends the histogram in the Prometheus text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let sum = self.sum.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// Histograms and per-shard gauges next to the plain counters.
pub struct Detail {
    /// Store commit latency in milliseconds (one per owner commit).
    pub commit_ms: Histogram,
    /// Messages per owner commit.
    pub batch_messages: Histogram,
    /// Open WebSocket connections per shard (64 = the shard maximum).
    pub shard_connections: Vec<AtomicUsize>,
}

impl Default for Detail {
    fn default() -> Detail {
        Detail {
            commit_ms: Histogram::new(&[
                0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
            ]),
            batch_messages: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
            ]),
            shard_connections: (0..64).map(|_| AtomicUsize::new(0)).collect(),
        }
    }
}
