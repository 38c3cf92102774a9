//! The final report: a human table and one JSON object.
//!
//! [`Report::new`] turns a merged [`RunResult`] into numbers and a verdict:
//!
//! * **violations** — a delivery invariant broke (lost, duplicated,
//!   reordered, early, or history that went backwards): the run failed;
//! * **incomplete** — the run could not verify everything: connections down
//!   or not rejoined at the end, or sends never acked. Also a failure, with
//!   its own exit code, because "nothing was found" would not be true.
//!
//! The JSON keys `scenario`, `connections`, `sent`, `acked`, `delivered`,
//! `violations` {`lost`, `duplicated`, `reordered`}, `latency_us` and
//! `ack_latency_us` {`p50`, `p90`, `p99`, `p999`, `max`} are a contract with
//! the benchmark suite; others may be added.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::abuse::AbuseStats;
use crate::checker::Violations;
use crate::config::RunConfig;
use crate::progress::group;
use crate::run::RunResult;
use crate::stats::{Counters, Percentiles, WindowPercentiles};

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The result of a run, as printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The run id (part of every user and channel name).
    pub run_id: String,
    /// Connections run.
    pub connections: usize,
    /// Worker processes.
    pub procs: usize,
    /// Client shards per process.
    pub shards: usize,
    /// Target total send rate, messages/s.
    pub rate_target: f64,
    /// Length of the send phase, s.
    pub duration_s: f64,
    /// Length of the ramp, s.
    pub ramp_s: f64,
    /// Sends written (first attempts).
    pub sent: u64,
    /// Sends acked.
    pub acked: u64,
    /// Messages received.
    pub delivered: u64,
    /// Sends per second over the send phase.
    pub messages_per_s: f64,
    /// Deliveries per second over the send phase.
    pub deliveries_per_s: f64,
    /// Connections that joined during the ramp, per second of ramp.
    pub connects_per_s: f64,
    /// Errors of every kind (details in `counters`).
    pub errors: u64,
    /// Broken delivery invariants.
    pub violations: Violations,
    /// Delivery latency, µs (scheduled send → received, other members).
    pub latency_us: Percentiles,
    /// Ack latency, µs (scheduled send → ack).
    pub ack_latency_us: Percentiles,
    /// Connect + WebSocket upgrade of successful attempts, µs.
    #[serde(default)]
    pub handshake_latency_us: Percentiles,
    /// Resumers (`resume`): reconnect attempt → `joined`, µs.
    #[serde(default)]
    pub rejoin_latency_us: Percentiles,
    /// Resumers (`resume`): reconnect attempt → last missed message, µs.
    #[serde(default)]
    pub catch_up_latency_us: Percentiles,
    /// Throttled readers' delivery latency when kept apart (`soak`), µs.
    #[serde(default)]
    pub slow_latency_us: Percentiles,
    /// Delivery latency per window of the send phase (`--latency-window`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_windows: Vec<WindowPercentiles>,
    /// The window of `latency_windows`, s.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latency_window_s: f64,
    /// What the abusive connections did and how the gateway answered
    /// (`--abusers`); never part of the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse: Option<AbuseStats>,
    /// Every counter.
    pub counters: Counters,
    /// Whether every send was acked before the drain timeout.
    pub drained: bool,
    /// Whether every member caught up before the timeout.
    pub caught_up: bool,
    /// No violation and nothing left unverified.
    pub ok: bool,
    /// One sentence per broken invariant.
    pub failures: Vec<String>,
    /// One sentence per thing that could not be verified.
    pub incomplete: Vec<String>,
    /// The first few distinct error descriptions.
    pub error_samples: Vec<String>,
}

impl Report {
    /// Builds the report of a run of `cfg` that produced `r`.
    #[must_use]
    pub fn new(cfg: &RunConfig, r: &RunResult) -> Report {
        let c = r.stats.counters;
        let send_s = r.send_us as f64 / 1e6;
        let ramp_s = r.ramp_us as f64 / 1e6;
        let per_s = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let failures = r.stats.violations.describe();
        let mut incomplete = Vec::new();
        if c.down_at_end > 0 {
            incomplete.push(format!(
                "{} connections were not up and joined at the end: their deliveries are unverified",
                c.down_at_end
            ));
        }
        if c.unacked > 0 {
            incomplete.push(format!("{} sends were never acked", c.unacked));
        }
        Report {
            scenario: cfg.scenario.kind.name().to_string(),
            run_id: cfg.scenario.run_id.clone(),
            connections: r.connections,
            procs: cfg.procs,
            shards: cfg.shards,
            rate_target: cfg.scenario.rate,
            duration_s: send_s,
            ramp_s,
            sent: c.sent,
            acked: c.acked,
            delivered: c.delivered,
            messages_per_s: per_s(c.sent, send_s),
            deliveries_per_s: per_s(c.delivered, send_s),
            connects_per_s: per_s(r.ramp_connects, ramp_s),
            errors: c.errors(),
            violations: r.stats.violations,
            latency_us: r.stats.delivery.percentiles(),
            ack_latency_us: r.stats.ack.percentiles(),
            handshake_latency_us: r.stats.handshake.percentiles(),
            rejoin_latency_us: r.stats.rejoin.percentiles(),
            catch_up_latency_us: r.stats.catch_up.percentiles(),
            slow_latency_us: r.stats.slow_delivery.percentiles(),
            latency_windows: r.stats.windows.percentiles(),
            latency_window_s: r.stats.windows.window_us as f64 / 1e6,
            abuse: (cfg.scenario.abusers > 0).then(|| r.stats.abuse.clone()),
            counters: c,
            drained: r.drained,
            caught_up: r.caught_up,
            ok: failures.is_empty() && incomplete.is_empty(),
            failures,
            incomplete,
            error_samples: r.stats.error_samples.clone(),
        }
    }

    /// The process exit code for this report: 0 ok, 1 violations, 3
    /// incomplete (2 is left for usage and setup errors).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if !self.failures.is_empty() {
            1
        } else if !self.incomplete.is_empty() {
            3
        } else {
            0
        }
    }

    /// The report as one line of JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut t = String::new();
        let c = &self.counters;
        let _ = writeln!(
            t,
            "loadgen {} — {} connections ({} procs × {} shards), run {}",
            self.scenario,
            group(self.connections as u64),
            self.procs,
            self.shards,
            self.run_id
        );
        let _ = writeln!(
            t,
            "ramp {:.2} s ({} connects/s), send {:.1} s at {} msgs/s target",
            self.ramp_s,
            group(self.connects_per_s as u64),
            self.duration_s,
            group(self.rate_target as u64),
        );
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>12}",
            "latency (µs)", "p50", "p90", "p99", "p99.9", "max", "mean", "count"
        );
        for (name, p) in [
            ("delivery", &self.latency_us),
            ("ack", &self.ack_latency_us),
            ("handshake", &self.handshake_latency_us),
            ("rejoin", &self.rejoin_latency_us),
            ("catch-up", &self.catch_up_latency_us),
            ("slow readers", &self.slow_latency_us),
        ] {
            if p.count == 0 && !matches!(name, "delivery" | "ack") {
                continue;
            }
            let _ = writeln!(
                t,
                "{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10.0}{:>12}",
                name,
                group(p.p50),
                group(p.p90),
                group(p.p99),
                group(p.p999),
                group(p.max),
                p.mean,
                group(p.count),
            );
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "messages      sent {} ({}/s), acked {}, retried {}, unacked {}, skipped {}",
            group(self.sent),
            group(self.messages_per_s as u64),
            group(self.acked),
            group(c.retries),
            group(c.unacked),
            group(c.send_skipped),
        );
        let _ = writeln!(
            t,
            "deliveries    {} ({}/s)",
            group(self.delivered),
            group(self.deliveries_per_s as u64),
        );
        let _ = writeln!(
            t,
            "connections   connects {}, server closes {} (1001: {}), churn drops {}, down at end {}",
            group(c.connects),
            group(c.disconnects),
            group(c.going_away),
            group(c.churn_drops),
            group(c.down_at_end),
        );
        if c.resumes > 0 {
            let _ = writeln!(
                t,
                "resumes       {} rejoined with since, {} messages replayed, {} caught up",
                group(c.resumes),
                group(c.resume_replayed),
                group(c.resumes_caught_up),
            );
        }
        if c.slow_connections > 0 {
            let _ = writeln!(
                t,
                "slow readers  {} connections read {} bytes",
                group(c.slow_connections),
                group(c.slow_bytes_read),
            );
        }
        if let Some(a) = &self.abuse {
            let list = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", group(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                t,
                "abusers       {} connections, {} acts ({} skipped), {} frames, {} connects",
                a.abusers,
                group(a.acts.values().sum()),
                group(a.acts_skipped),
                group(a.frames),
                group(a.connects),
            );
            let _ = writeln!(
                t,
                "  refused     {} ({})",
                group(a.refused()),
                list(&a.refusals)
            );
            let _ = writeln!(
                t,
                "  closed      {} ({})",
                group(a.disconnects()),
                list(&a.closes)
            );
            let _ = writeln!(t, "  served      {}", list(&a.served));
        }
        let _ = writeln!(
            t,
            "errors        {} (connect {}, send {}, join {}, other {}, protocol {})",
            group(self.errors),
            group(c.connect_errors),
            group(c.send_errors),
            group(c.join_errors),
            group(c.other_errors),
            group(c.protocol_errors),
        );
        for e in &self.error_samples {
            let _ = writeln!(t, "  e.g.        {e}");
        }
        let v = &self.violations;
        let _ = writeln!(
            t,
            "violations    lost {}, duplicated {}, reordered {}, before join {}, head regressed {}",
            group(v.lost),
            group(v.duplicated),
            group(v.reordered),
            group(v.before_join),
            group(v.head_regressed),
        );
        if v.counts_msgs + v.counts_behind > 0 {
            let _ = writeln!(
                t,
                "              msgs to counts members {}, counts members behind {}",
                group(v.counts_msgs),
                group(v.counts_behind),
            );
        }
        let _ = writeln!(t);
        if self.ok {
            let _ = writeln!(
                t,
                "OK: every acked message reached every member, once and in order"
            );
        }
        for f in &self.failures {
            let _ = writeln!(t, "FAILED: {f}");
        }
        for f in &self.incomplete {
            let _ = writeln!(t, "INCOMPLETE: {f}");
        }
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioKind;

    fn report(edit: impl FnOnce(&mut RunResult)) -> Report {
        let cfg = RunConfig::new(ScenarioKind::Groups, "ws://127.0.0.1:1/ws");
        let mut r = RunResult {
            connections: 10,
            send_us: 2_000_000,
            ramp_us: 500_000,
            ramp_connects: 10,
            drained: true,
            caught_up: true,
            ..RunResult::default()
        };
        r.stats.counters.sent = 100;
        r.stats.counters.acked = 100;
        r.stats.counters.delivered = 400;
        r.stats.delivery.record(1000);
        r.stats.ack.record(500);
        edit(&mut r);
        Report::new(&cfg, &r)
    }

    #[test]
    fn the_json_has_the_contract_keys() {
        let r = report(|_| {});
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "scenario",
            "connections",
            "sent",
            "acked",
            "delivered",
            "violations",
            "latency_us",
            "ack_latency_us",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        for key in ["lost", "duplicated", "reordered"] {
            assert_eq!(v["violations"][key], 0);
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][key].as_u64().unwrap() > 0);
            assert!(v["ack_latency_us"][key].as_u64().unwrap() > 0);
        }
        assert_eq!(v["messages_per_s"], 50.0);
        assert_eq!(r.exit_code(), 0);
        assert!(r.table().contains("OK:"));
    }

    #[test]
    fn violations_fail_and_say_which() {
        let r = report(|r| {
            r.stats.violations.lost = 3;
            r.stats.violations.reordered = 1;
        });
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.failures.len(), 2);
        let table = r.table();
        assert!(table.contains("FAILED: 3 acked message deliveries never arrived"));
        assert!(table.contains("reordered"));
    }

    #[test]
    fn abusers_are_reported_apart_and_never_fail_the_run() {
        let mut cfg = RunConfig::new(ScenarioKind::Groups, "ws://127.0.0.1:1/ws");
        cfg.scenario.abusers = 2;
        cfg.scenario.abuse_rate = 1.0;
        let mut r = RunResult {
            connections: 10,
            send_us: 1_000_000,
            drained: true,
            caught_up: true,
            ..RunResult::default()
        };
        r.stats.abuse.abusers = 2;
        r.stats.abuse.refusals.insert("rate_limited".into(), 40);
        r.stats.abuse.closes.insert("1008".into(), 3);
        let rep = Report::new(&cfg, &r);
        assert!(rep.ok);
        assert_eq!(rep.errors, 0);
        let a = rep.abuse.as_ref().unwrap();
        assert_eq!((a.refused(), a.disconnects()), (40, 3));
        let v: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
        assert_eq!(v["abuse"]["closes"]["1008"], 3);
        assert!(rep.table().contains("closed      3 (1008 3)"));
        assert!(report(|_| {}).abuse.is_none(), "no abusers, no section");
    }

    #[test]
    fn unverifiable_runs_are_incomplete() {
        let r = report(|r| r.stats.counters.down_at_end = 2);
        assert_eq!(r.exit_code(), 3);
        assert!(r.table().contains("INCOMPLETE: 2 connections"));
    }
}
