//! The live progress line.
//!
//! Each shard publishes its counters into its own [`ProgressSlot`] (relaxed
//! atomic stores, ten times a second; no contention); the coordinator sums
//! the slots into a [`ProgressSnapshot`] and hands it to a
//! [`ProgressDisplay`], which prints
//!
//! ```text
//! [send    4.2s] conns 200/200 | sent 4,180 (1,000/s) | recv 16,650 (3,990/s) | errors 0 | violations 0
//! ```
//!
//! on standard error: rewritten in place on a terminal (four times a second),
//! one line every five seconds otherwise, nothing with `--quiet`. Worker
//! processes send their snapshots to the parent instead, which sums them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::session::Phase;
use crate::stats::ShardStats;

/// One shard's published counters.
#[derive(Debug, Default)]
pub struct ProgressSlot {
    conns_up: AtomicU64,
    connects: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    violations: AtomicU64,
}

impl ProgressSlot {
    /// Publishes a shard's current counters.
    pub fn publish(&self, s: &ShardStats) {
        let c = &s.counters;
        self.conns_up.store(s.conns_up, Ordering::Relaxed);
        self.connects.store(c.connects, Ordering::Relaxed);
        self.sent.store(c.sent, Ordering::Relaxed);
        self.acked.store(c.acked, Ordering::Relaxed);
        self.delivered.store(c.delivered, Ordering::Relaxed);
        self.errors.store(c.errors(), Ordering::Relaxed);
        self.violations
            .store(s.violations.total(), Ordering::Relaxed);
    }

    /// The last published counters.
    #[must_use]
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            conns_up: self.conns_up.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            violations: self.violations.load(Ordering::Relaxed),
        }
    }
}

/// Counters at one instant, summed over shards (and processes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    /// Connections up now.
    pub conns_up: u64,
    /// Successful upgrades so far.
    pub connects: u64,
    /// Sends written so far.
    pub sent: u64,
    /// Acks received so far.
    pub acked: u64,
    /// Messages received so far.
    pub delivered: u64,
    /// Errors so far.
    pub errors: u64,
    /// Invariant violations seen so far (lost messages are only known at
    /// the end).
    pub violations: u64,
}

impl ProgressSnapshot {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &ProgressSnapshot) {
        self.conns_up += o.conns_up;
        self.connects += o.connects;
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.errors += o.errors;
        self.violations += o.violations;
    }
}

/// Renders progress samples to standard error.
#[derive(Debug)]
pub struct ProgressDisplay {
    quiet: bool,
    tty: bool,
    total_conns: usize,
    start: Instant,
    /// The sample rates are computed against (about a second old).
    base: Option<(Instant, ProgressSnapshot)>,
    rates: (f64, f64, f64),
    last_print: Option<Instant>,
    printed_inline: bool,
}

impl ProgressDisplay {
    /// A display for a run of `total_conns` connections; prints nothing when
    /// `quiet`.
    #[must_use]
    pub fn new(total_conns: usize, quiet: bool) -> ProgressDisplay {
        ProgressDisplay {
            quiet,
            tty: std::io::stderr().is_terminal(),
            total_conns,
            start: Instant::now(),
            base: None,
            rates: (0.0, 0.0, 0.0),
            last_print: None,
            printed_inline: false,
        }
    }

    /// Takes a sample and prints it if due.
    pub fn update(&mut self, phase: Phase, s: &ProgressSnapshot) {
        let now = Instant::now();
        match self.base {
            None => self.base = Some((now, *s)),
            Some((t, b)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt >= 1.0 {
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    self.rates = (
                        rate(s.connects, b.connects),
                        rate(s.sent, b.sent),
                        rate(s.delivered, b.delivered),
                    );
                    self.base = Some((now, *s));
                }
            }
        }
        if self.quiet {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self
            .last_print
            .is_some_and(|t| now.duration_since(t) < every)
        {
            return;
        }
        self.last_print = Some(now);
        let line = self.line(phase, s);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.printed_inline = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// The progress line for a sample.
    #[must_use]
    pub fn line(&self, phase: Phase, s: &ProgressSnapshot) -> String {
        let (connect_rate, send_rate, recv_rate) = self.rates;
        let phase = match phase {
            Phase::Ramp => format!("ramp {}/s", group(connect_rate as u64)),
            Phase::Send => "send".to_string(),
            Phase::Drain => "drain".to_string(),
            Phase::CatchUp => "catch-up".to_string(),
            Phase::Stop => "stop".to_string(),
        };
        format!(
            "[{phase:<8} {:>6.1}s] conns {}/{} | sent {} ({}/s) | recv {} ({}/s) | errors {} | violations {}",
            self.start.elapsed().as_secs_f64(),
            group(s.conns_up),
            group(self.total_conns as u64),
            group(s.sent),
            group(send_rate as u64),
            group(s.delivered),
            group(recv_rate as u64),
            group(s.errors),
            group(s.violations),
        )
    }

    /// Ends the in-place line (call before printing the report).
    pub fn finish(&mut self) {
        if self.printed_inline && !self.quiet {
            let _ = writeln!(std::io::stderr());
            self.printed_inline = false;
        }
    }
}

/// `1234567` → `1,234,567`.
#[must_use]
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn the_line_shows_every_counter() {
        let d = ProgressDisplay::new(200, true);
        let s = ProgressSnapshot {
            conns_up: 150,
            connects: 150,
            sent: 1234,
            acked: 1200,
            delivered: 5000,
            errors: 2,
            violations: 0,
        };
        let line = d.line(Phase::Send, &s);
        for part in [
            "conns 150/200",
            "sent 1,234",
            "recv 5,000",
            "errors 2",
            "violations 0",
        ] {
            assert!(line.contains(part), "{line}");
        }
    }
}
