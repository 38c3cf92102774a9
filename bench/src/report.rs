//! Result files, the Markdown table and `compare`. No I/O.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::figures::{Figures, ServerSamples};
use crate::peers::ServerKind;
use crate::scenario::RunSpec;

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
    /// One entry per run (two for `shards`).
    pub runs: Vec<RunResult>,
}

/// The Markdown table header.
#[must_use]
pub fn markdown_header() -> String {
    "| scenario | server | run | shards | durability | conns | deliveries/s | deliveries/CPU-s | frames/segment | p50 µs | p99 µs | p99.9 µs | ack p99 µs | KiB/conn | connects/s | violations | ok |\n\
     |---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        .to_string()
}

/// One Markdown row.
#[must_use]
pub fn markdown_row(scenario: &str, r: &RunResult) -> String {
    let f = &r.figures;
    format!(
        "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {} |\n",
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
        f.latency_us[0],
        f.latency_us[1],
        f.latency_us[2],
        f.ack_latency_us[1],
        f.mem_per_conn_bytes / 1024.0,
        f.connects_per_s,
        f.violations,
        if f.ok { "yes" } else { "NO" },
    )
}

/// The headline figures compared by `compare`, with whether higher is better.
fn headline(f: &Figures) -> Vec<(&'static str, f64, bool)> {
    vec![
        ("deliveries/s", f.deliveries_per_s, true),
        ("deliveries/CPU-s", f.deliveries_per_cpu_s, true),
        ("frames/segment", f.frames_per_segment, true),
        ("latency p50 µs", f.latency_us[0] as f64, false),
        ("latency p99 µs", f.latency_us[1] as f64, false),
        ("ack p99 µs", f.ack_latency_us[1] as f64, false),
        ("KiB/conn", f.mem_per_conn_bytes / 1024.0, false),
        ("connects/s", f.connects_per_s, true),
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
