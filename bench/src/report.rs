//! Result files, the Markdown table and `compare`. No I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::figures::{Figures, ServerSamples, TimePoint};
use crate::peers::ServerKind;
use crate::scenario::RunSpec;
use crate::settings::{self, Settings};

/// The machine a result came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs available (`nproc`).
    pub nproc: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
}

/// One gateway + loadgen run in a result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// What was run.
    pub spec: RunSpec,
    /// loadgen's `--json` report, verbatim.
    pub loadgen: serde_json::Value,
    /// loadgen's exit code (0 ok, 1 violation, 3 incomplete).
    pub loadgen_exit: i32,
    /// Server samples.
    pub server: ServerSamples,
    /// Derived figures.
    pub figures: Figures,
    /// With `--pin`: each distinct `Cpus_allowed_list` of the server's
    /// threads, as seen just after it started (`["0"]` when pinning held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_cpus: Vec<String>,
    /// With `--pin`: `taskset` or `sched_setaffinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_method: Option<String>,
    /// A few counters of the gateway's `/metrics` read after loadgen
    /// exited (e.g. `gateway_slow_consumer_events_total`); empty for peers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_metrics: BTreeMap<String, f64>,
    /// The server sampled every `spec.sample_every_s` while loadgen ran
    /// (`soak`): RSS, open fds, CPU time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimePoint>,
}

/// How a stepped scenario went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stepped {
    /// The publish rates planned, messages/s.
    pub ladder: Vec<f64>,
    /// The delivery p99 that ends the ladder, µs.
    pub p99_limit_us: u64,
    /// The label of the step that ended it (`None`: every step ran).
    pub stopped_after: Option<String>,
    /// Why it ended there.
    pub reason: Option<String>,
}

/// `results/<scenario>-<timestamp>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// Scenario name.
    pub scenario: String,
    /// Unix time the scenario started, s.
    pub timestamp: u64,
    /// `--quick`.
    pub quick: bool,
    /// The server driven (`gateway` in files older than the peers).
    #[serde(default)]
    pub server: ServerKind,
    /// Where it ran.
    pub machine: Machine,
    /// The server (gateway binary or peer command) and loadgen binary used.
    pub binaries: Vec<String>,
    /// Gateway config overrides (`--set KEY=VALUE`), as given. A contract
    /// with `tuning sweep`, which reads it back.
    #[serde(default)]
    pub settings: Settings,
    /// `--pin`: server on CPU 0, loadgen on CPU 1.
    #[serde(default)]
    pub pinned: bool,
    /// For a stepped scenario (`room-fanout`): the ladder and where it
    /// stopped; each step is one entry of `runs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepped: Option<Stepped>,
    /// One entry per run (two for `shards`, one per step when stepped).
    pub runs: Vec<RunResult>,
    /// `soak`: RSS slope, fds, CPU, abusers' refusals, p99 with vs without
    /// abusers (computed from `runs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<crate::soak::SoakSummary>,
}

/// The Markdown table header.
#[must_use]
pub fn markdown_header() -> String {
    "| scenario | server | run | shards | durability | conns | deliveries/s | deliveries/CPU-s | frames/segment | CPU µs/segment | B/delivery | p50 µs | p99 µs | p99.9 µs | ack p99 µs | KiB/conn | connects/s | handshake p99 µs | loadgen CPU % | violations | ok | pin | settings |\n\
     |---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n"
        .to_string()
}

/// One Markdown row.
#[must_use]
pub fn markdown_row(scenario: &str, r: &RunResult) -> String {
    let f = &r.figures;
    format!(
        "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {:.0} | {} | {} | {} | {} |\n",
        scenario,
        r.spec.server,
        r.spec.label,
        if r.spec.server.is_peer() {
            "-".to_string()
        } else {
            r.spec
                .gateway_shards
                .map_or_else(|| "default".to_string(), |n| n.to_string())
        },
        r.spec.durability,
        f.connections,
        f.deliveries_per_s,
        f.deliveries_per_cpu_s,
        f.frames_per_segment,
        f.cpu_us_per_segment,
        f.bytes_per_delivery,
        f.latency_us[0],
        f.latency_us[1],
        f.latency_us[2],
        f.ack_latency_us[1],
        f.mem_per_conn_bytes / 1024.0,
        f.connects_per_s,
        f.handshake_us[1],
        f.loadgen_cpu_pct,
        f.violations,
        if f.ok { "yes" } else { "NO" },
        if r.spec.pinned { "yes" } else { "no" },
        settings::describe(&r.spec.settings),
    )
}

/// A scenario's own figures, in a sentence after its rows (`None` when it
/// has none beyond the table).
#[must_use]
pub fn notes(scenario: &str, r: &RunResult) -> Option<String> {
    let f = &r.figures;
    let ms = |us: u64| us as f64 / 1000.0;
    match scenario {
        "connect-storm" => Some(format!(
            "connect-storm ({}): {} connections at once, {:.0} upgrades/s; handshake p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms.",
            r.spec.server,
            f.connections,
            f.connects_per_s,
            ms(f.handshake_us[0]),
            ms(f.handshake_us[1]),
            ms(f.handshake_us[3]),
        )),
        "resume-storm" => {
            Some(format!(
            "resume-storm ({}): {} rejoined with `since`, {} messages replayed ({} per resumer), \
             {} caught up; rejoin p99 {:.1} ms; catch-up p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             violations {} ({}).",
            r.spec.server,
            f.resumes,
            f.resume_replayed,
            f.resume_replayed.checked_div(f.resumes).unwrap_or(0),
            f.resumes_caught_up,
            ms(f.rejoin_us[1]),
            ms(f.catch_up_us[0]),
            ms(f.catch_up_us[1]),
            ms(f.catch_up_us[3]),
            f.violations,
            if f.ok { "nothing lost, duplicated or reordered" } else { "NOT ok" },
        ))
        }
        "slow-consumers" => {
            let events = r
                .server_metrics
                .get("gateway_slow_consumer_events_total")
                .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
            let budget: Option<u64> = r
                .spec
                .settings
                .get("outbox_budget_bytes")
                .and_then(|b| b.parse().ok());
            let bound = budget.unwrap_or(256 * 1024) * f.slow_connections;
            Some(format!(
                "slow-consumers ({}): {} of {} connections read at {} B/s; server peak RSS growth \
                 {:.1} MiB ({:.1} KiB/conn); slow readers' outboxes are bounded by {} × {} = {:.1} MiB; \
                 slow-consumer events {}; violations {} ({}).",
                r.spec.server,
                f.slow_connections,
                f.connections,
                r.spec.slow_read_bps.unwrap_or(0),
                f.rss_growth_kib as f64 / 1024.0,
                f.mem_per_conn_bytes / 1024.0,
                f.slow_connections,
                budget.map_or("256 KiB (default budget)".to_string(), |b| format!("{b} B (budget)")),
                bound as f64 / (1024.0 * 1024.0),
                events,
                f.violations,
                if f.ok {
                    "every member, the slow ones included, got everything in order"
                } else {
                    "NOT ok"
                },
            ))
        }
        _ => None,
    }
}

/// The headline figures compared by `compare`, with whether higher is better.
fn headline(f: &Figures) -> Vec<(&'static str, f64, bool)> {
    vec![
        ("deliveries/s", f.deliveries_per_s, true),
        ("deliveries/CPU-s", f.deliveries_per_cpu_s, true),
        ("frames/segment", f.frames_per_segment, true),
        ("CPU µs/segment", f.cpu_us_per_segment, false),
        ("bytes/delivery", f.bytes_per_delivery, false),
        ("latency p50 µs", f.latency_us[0] as f64, false),
        ("latency p99 µs", f.latency_us[1] as f64, false),
        ("ack p99 µs", f.ack_latency_us[1] as f64, false),
        ("KiB/conn", f.mem_per_conn_bytes / 1024.0, false),
        ("connects/s", f.connects_per_s, true),
        ("handshake p99 µs", f.handshake_us[1] as f64, false),
    ]
}

/// `compare a b`: per run present in both (matched by label, else by
/// position), b ÷ a for each headline figure. With a peer's run as `a` and
/// the gateway's as `b` this is ours ÷ peer.
#[must_use]
pub fn compare(a: &ResultFile, b: &ResultFile) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "a: {} ({}) @ {}   b: {} ({}) @ {}",
        a.scenario, a.server, a.timestamp, b.scenario, b.server, b.timestamp
    );
    for (i, ra) in a.runs.iter().enumerate() {
        let rb = b
            .runs
            .iter()
            .find(|r| r.spec.label == ra.spec.label)
            .or_else(|| b.runs.get(i));
        let Some(rb) = rb else { continue };
        let _ = writeln!(
            t,
            "\nrun {} ({}, {}) vs {} ({}, {})",
            ra.spec.label,
            ra.spec.server,
            ra.spec.durability,
            rb.spec.label,
            rb.spec.server,
            rb.spec.durability
        );
        let _ = writeln!(
            t,
            "| figure | a | b | b ÷ a | better |\n|---|---:|---:|---:|---|"
        );
        for ((name, va, higher), (_, vb, _)) in
            headline(&ra.figures).into_iter().zip(headline(&rb.figures))
        {
            let (ratio, better) = if va > 0.0 {
                let r = vb / va;
                let better = if (r - 1.0).abs() < 0.02 {
                    "same"
                } else if (r > 1.0) == higher {
                    "b"
                } else {
                    "a"
                };
                (format!("{r:.2}"), better)
            } else {
                ("-".to_string(), "-")
            };
            let _ = writeln!(t, "| {name} | {va:.1} | {vb:.1} | {ratio} | {better} |");
        }
    }
    t
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scenario::{plan, Options};

    fn file(dps: f64, p99: u64) -> ResultFile {
        let spec = plan("dm-latency", &Options::default()).unwrap().remove(0);
        ResultFile {
            scenario: "dm-latency".into(),
            timestamp: 1,
            quick: false,
            server: ServerKind::Gateway,
            machine: Machine::default(),
            binaries: vec![],
            settings: Settings::new(),
            pinned: false,
            stepped: None,
            soak: None,
            runs: vec![RunResult {
                spec,
                loadgen: serde_json::json!({}),
                loadgen_exit: 0,
                server: ServerSamples::default(),
                figures: Figures {
                    connections: 10,
                    deliveries_per_s: dps,
                    latency_us: [1, p99, 3, 4],
                    ok: true,
                    ..Figures::default()
                },
                server_cpus: vec![],
                pin_method: None,
                server_metrics: BTreeMap::new(),
                timeline: Vec::new(),
            }],
        }
    }

    #[test]
    fn row_has_every_column() {
        let f = file(1234.4, 99);
        let row = markdown_row("dm-latency", &f.runs[0]);
        let cols = |s: &str| s.lines().next().unwrap().matches('|').count();
        assert_eq!(cols(&row), cols(&markdown_header()));
        assert!(row.contains("| 1234 |") && row.contains("| yes |"));
        assert!(
            row.starts_with("| dm-latency | gateway | dm | default |"),
            "{row}"
        );
        let mut peer = f.runs[0].clone();
        peer.spec.server = ServerKind::Node;
        peer.spec.durability = "memory".into();
        let row = markdown_row("dm-latency", &peer);
        assert!(
            row.starts_with("| dm-latency | node | dm | - | memory |"),
            "{row}"
        );
    }

    #[test]
    fn old_files_without_server_read_as_gateway() {
        let mut v = serde_json::to_value(file(1.0, 2)).unwrap();
        v.as_object_mut().unwrap().remove("server");
        let f: ResultFile = serde_json::from_value(v).unwrap();
        assert_eq!(f.server, ServerKind::Gateway);
    }

    #[test]
    fn the_committed_result_files_still_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).unwrap();
                let f: ResultFile =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(f.settings.is_empty() && !f.pinned && f.stepped.is_none());
            }
        }
    }

    #[test]
    fn settings_are_in_the_file_and_the_row() {
        let mut f = file(1.0, 2);
        f.settings
            .insert("commit_max_messages".into(), "128".into());
        f.runs[0].spec.settings = f.settings.clone();
        f.runs[0].spec.pinned = true;
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["settings"]["commit_max_messages"], "128");
        let row = markdown_row("dm-latency", &f.runs[0]);
        assert!(
            row.ends_with("| yes | commit_max_messages=128 |\n"),
            "{row}"
        );
    }

    #[test]
    fn scenario_notes_name_their_figures() {
        let mut r = file(1.0, 2).runs.remove(0);
        assert!(notes("dm-latency", &r).is_none());
        r.figures.resumes = 10;
        r.figures.resume_replayed = 1000;
        r.figures.catch_up_us = [1000, 25_000, 30_000, 40_000];
        let n = notes("resume-storm", &r).unwrap();
        assert!(
            n.contains("1000 messages replayed (100 per resumer)"),
            "{n}"
        );
        assert!(n.contains("p99 25.0 ms"), "{n}");
        r.figures.slow_connections = 4;
        r.figures.rss_growth_kib = 4096;
        r.server_metrics
            .insert("gateway_slow_consumer_events_total".into(), 12.0);
        let n = notes("slow-consumers", &r).unwrap();
        assert!(n.contains("4.0 MiB"), "{n}");
        assert!(
            n.contains("bounded by 4 × 256 KiB (default budget) = 1.0 MiB"),
            "{n}"
        );
        assert!(n.contains("slow-consumer events 12"), "{n}");
    }

    #[test]
    fn compare_prints_ratios() {
        let out = compare(&file(1000.0, 100), &file(2000.0, 50));
        assert!(
            out.contains("| deliveries/s | 1000.0 | 2000.0 | 2.00 | b |"),
            "{out}"
        );
        assert!(
            out.contains("| latency p99 µs | 100.0 | 50.0 | 0.50 | b |"),
            "{out}"
        );
        assert!(
            out.contains("| frames/segment | 0.0 | 0.0 | - | - |"),
            "{out}"
        );
    }

    #[test]
    fn result_file_round_trips() {
        let f = file(1.0, 2);
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<ResultFile>(&s).unwrap(), f);
    }
}
