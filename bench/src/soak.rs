//! `bench run soak`: what a long run says — memory drift, fds, CPU, the
//! abusers' refusals, and normal clients' p99 with vs without abusers. No
//! I/O: result runs in, a [`SoakSummary`] and chart specs out.
//!
//! The scenario ([`crate::scenario`]) runs the gateway twice on the same
//! config, one after the other: `no-abusers`, then `abusers` (loadgen
//! `--abusers 4`). Each run samples the gateway every 5 s
//! ([`crate::figures::TimePoint`]) and loadgen keeps delivery latency per
//! window of the send phase.
//!
//! **RSS slope.** A least-squares line through the RSS samples of the send
//! phase after its first 20 % (warm-up: connections, caches and the
//! allocator's arenas settle), in MiB per minute. Samples are placed on
//! loadgen's clock: the send phase starts `ramp_s` after loadgen did.
//!
//! **Refused or cut off.** Every abusive act was answered the documented
//! way: malformed requests with `error`s, floods with `rate_limited` and
//! 1008, invalid UTF-8 with 1007, an oversized frame with 1009
//! ([`SoakRun::abusers_refused`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plot::{PlotSpec, Series};
use crate::report::{ResultFile, RunResult};

/// The share of the send phase treated as warm-up.
pub const WARMUP_FRACTION: f64 = 0.2;

/// The close codes the abusers must have been cut off with.
pub const EXPECTED_CLOSES: &[&str] = &["1007", "1008", "1009"];

/// The slope of the least-squares line through `points` (`(x, y)`), or
/// `None` with fewer than two distinct x.
#[must_use]
pub fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// What the abusers did and how they were answered (from loadgen's
/// `abuse` report).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AbuseFigures {
    /// Abusive connections.
    pub abusers: u64,
    /// Acts performed.
    pub acts: u64,
    /// Requests refused with an `error`, and by code.
    pub refused: u64,
    /// By error code.
    pub refusals: BTreeMap<String, u64>,
    /// Connections the gateway closed, and by close code.
    pub disconnects: u64,
    /// By close code.
    pub closes: BTreeMap<String, u64>,
    /// Work done for them, by reply type.
    pub served: BTreeMap<String, u64>,
}

impl AbuseFigures {
    /// Reads loadgen's `abuse` object.
    #[must_use]
    pub fn from_json(v: &serde_json::Value) -> AbuseFigures {
        let map = |k: &str| -> BTreeMap<String, u64> {
            v.get(k)
                .and_then(serde_json::Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (refusals, closes, served, acts) =
            (map("refusals"), map("closes"), map("served"), map("acts"));
        AbuseFigures {
            abusers: v
                .get("abusers")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            acts: acts.values().sum(),
            refused: refusals.values().sum(),
            disconnects: closes.values().sum(),
            refusals,
            closes,
            served,
        }
    }

    /// Whether the abusers were refused or cut off the documented way:
    /// `rate_limited` and `bad_request` errors, and closes 1007, 1008, 1009.
    #[must_use]
    pub fn refused_as_documented(&self) -> bool {
        ["rate_limited", "bad_request"]
            .iter()
            .all(|c| self.refusals.get(*c).copied().unwrap_or(0) > 0)
            && EXPECTED_CLOSES
                .iter()
                .all(|c| self.closes.get(*c).copied().unwrap_or(0) > 0)
    }
}

/// The figures of one soak run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakRun {
    /// `no-abusers` or `abusers`.
    pub label: String,
    /// Send phase, s.
    pub send_s: f64,
    /// The slope's window on loadgen's clock, s: `[warm-up end, send end]`.
    pub slope_window_s: [f64; 2],
    /// RSS at the first and last sample and the largest, MiB.
    pub rss_first_mib: f64,
    /// See `rss_first_mib`.
    pub rss_last_mib: f64,
    /// See `rss_first_mib`.
    pub rss_max_mib: f64,
    /// RSS at the start and end of the slope's window, MiB.
    pub rss_window_mib: [f64; 2],
    /// Least-squares RSS slope over the window, MiB per minute.
    pub rss_slope_mib_per_min: Option<f64>,
    /// Open fds: first sample, largest, last sample (after loadgen exited
    /// and the gateway settled: fds back to the first sample's, or 30 s).
    pub fds: [u64; 3],
    /// Gateway CPU over the whole loadgen run, s.
    pub cpu_s: f64,
    /// `cpu_s` ÷ loadgen's wall time, % of one core.
    pub cpu_pct: f64,
    /// Sum of loadgen's violation counters (normal clients only).
    pub violations: u64,
    /// loadgen's verdict (0 lost, duplicated, reordered; all verified).
    pub ok: bool,
    /// Normal clients' delivery p50 / p99 / p99.9 / max, µs.
    pub latency_us: [u64; 4],
    /// The slow readers' delivery p99, µs (kept apart).
    pub slow_p99_us: u64,
    /// Connection drops (churn) and reconnects of normal clients.
    pub churn_drops: u64,
    /// Successful upgrades of normal clients (ramp and reconnects).
    pub connects: u64,
    /// The abusers (`None` in the run without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse: Option<AbuseFigures>,
    /// With abusers: refused or cut off the documented way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abusers_refused: Option<bool>,
}

/// Both runs and their comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakSummary {
    /// One per run, in run order.
    pub runs: Vec<SoakRun>,
    /// Normal clients' delivery p99 with abusers ÷ without.
    pub p99_ratio: Option<f64>,
}

fn f64_at(v: &serde_json::Value, k: &str) -> f64 {
    v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl SoakRun {
    /// The figures of one run.
    #[must_use]
    pub fn from_run(r: &RunResult) -> SoakRun {
        let lg = &r.loadgen;
        let ramp_s = f64_at(lg, "ramp_s");
        let send_s = f64_at(lg, "duration_s");
        let window = [ramp_s + WARMUP_FRACTION * send_s, ramp_s + send_s];
        let t = &r.timeline;
        let in_window: Vec<(f64, f64)> = t
            .iter()
            .filter(|p| p.t_s >= window[0] && p.t_s <= window[1])
            .map(|p| (p.t_s / 60.0, mib(p.rss_kib)))
            .collect();
        let counter = |k: &str| {
            lg.get("counters")
                .and_then(|c| c.get(k))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let abuse = lg.get("abuse").map(AbuseFigures::from_json);
        let f = &r.figures;
        SoakRun {
            label: r.spec.label.clone(),
            send_s,
            slope_window_s: window,
            rss_first_mib: t.first().map_or(0.0, |p| mib(p.rss_kib)),
            rss_last_mib: t.last().map_or(0.0, |p| mib(p.rss_kib)),
            rss_max_mib: mib(t.iter().map(|p| p.rss_kib).max().unwrap_or(0)),
            rss_window_mib: [
                in_window.first().map_or(0.0, |p| p.1),
                in_window.last().map_or(0.0, |p| p.1),
            ],
            rss_slope_mib_per_min: least_squares_slope(&in_window),
            fds: [
                t.first().map_or(0, |p| p.fds),
                t.iter().map(|p| p.fds).max().unwrap_or(0),
                t.last().map_or(0, |p| p.fds),
            ],
            cpu_s: f.server_cpu_s,
            cpu_pct: if r.server.wall_s > 0.0 {
                f.server_cpu_s / r.server.wall_s * 100.0
            } else {
                0.0
            },
            violations: f.violations,
            ok: f.ok && r.loadgen_exit == 0,
            latency_us: f.latency_us,
            slow_p99_us: lg
                .get("slow_latency_us")
                .and_then(|p| p.get("p99"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            churn_drops: counter("churn_drops"),
            connects: counter("connects"),
            abusers_refused: abuse.as_ref().map(AbuseFigures::refused_as_documented),
            abuse,
        }
    }
}

/// The summary of a soak's runs.
#[must_use]
pub fn summarize(runs: &[RunResult]) -> SoakSummary {
    let runs: Vec<SoakRun> = runs.iter().map(SoakRun::from_run).collect();
    let p99 = |with: bool| {
        runs.iter()
            .find(|r| r.abuse.is_some() == with)
            .map(|r| r.latency_us[1])
    };
    let p99_ratio = match (p99(true), p99(false)) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    };
    SoakSummary { runs, p99_ratio }
}

/// Delivery p99 per latency window, at the window's middle on loadgen's
/// clock (minutes), in ms.
fn p99_points(r: &RunResult) -> Vec<[f64; 2]> {
    let lg = &r.loadgen;
    let ramp_s = f64_at(lg, "ramp_s");
    let half = f64_at(lg, "latency_window_s") / 2.0;
    lg.get("latency_windows")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| {
            let p = w.get("latency_us")?;
            if p.get("count")?.as_u64()? == 0 {
                return None;
            }
            let start = w.get("start_s")?.as_f64()?;
            let p99 = p.get("p99")?.as_u64()?;
            Some([(ramp_s + start + half) / 60.0, p99 as f64 / 1000.0])
        })
        .collect()
}

/// The soak's charts, one series per run: `rss` (MiB), `p99` (normal
/// clients' delivery p99 per window, ms) and `fds`, against minutes since
/// loadgen started.
#[must_use]
pub fn plots(file: &ResultFile) -> Vec<(&'static str, PlotSpec)> {
    let quick = if file.quick { " (quick run)" } else { "" };
    let series = |y: &dyn Fn(&RunResult) -> Vec<[f64; 2]>| -> Vec<Series> {
        file.runs
            .iter()
            .map(|r| Series {
                name: r.spec.label.clone(),
                points: y(r),
            })
            .collect()
    };
    let timeline =
        |r: &RunResult, f: &dyn Fn(&crate::figures::TimePoint) -> f64| -> Vec<[f64; 2]> {
            r.timeline.iter().map(|p| [p.t_s / 60.0, f(p)]).collect()
        };
    vec![
        (
            "rss",
            PlotSpec {
                title: format!("soak{quick}: gateway RSS over time"),
                x_label: "minutes since loadgen started".into(),
                y_label: "gateway RSS (MiB)".into(),
                log_y: false,
                series: series(&|r| timeline(r, &|p| mib(p.rss_kib))),
            },
        ),
        (
            "p99",
            PlotSpec {
                title: format!("soak{quick}: normal clients' delivery p99 over time"),
                x_label: "minutes since loadgen started".into(),
                y_label: "delivery p99 per window (ms)".into(),
                log_y: true,
                series: series(&p99_points),
            },
        ),
        (
            "fds",
            PlotSpec {
                title: format!("soak{quick}: gateway open fds over time"),
                x_label: "minutes since loadgen started".into(),
                y_label: "open file descriptors".into(),
                log_y: false,
                series: series(&|r| timeline(r, &|p| p.fds as f64)),
            },
        ),
    ]
}

/// The summary as Markdown (what `bench run soak` prints).
#[must_use]
pub fn markdown(s: &SoakSummary) -> String {
    use std::fmt::Write as _;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut o = String::from(
        "| run | send | RSS first → last (max) MiB | RSS slope after warm-up MiB/min | fds first / max / last | gateway CPU s (% of a core) | violations | ok | delivery p50 / p99 / p99.9 ms | slow readers p99 ms | churn drops |\n\
         |---|---:|---|---:|---|---|---:|---|---|---:|---:|\n",
    );
    for r in &s.runs {
        let _ = writeln!(
            o,
            "| {} | {:.0} s | {:.1} → {:.1} ({:.1}) | {} | {} / {} / {} | {:.1} ({:.0} %) | {} | {} | {:.1} / {:.1} / {:.1} | {:.0} | {} |",
            r.label,
            r.send_s,
            r.rss_first_mib,
            r.rss_last_mib,
            r.rss_max_mib,
            r.rss_slope_mib_per_min
                .map_or_else(|| "-".into(), |v| format!("{v:+.3}")),
            r.fds[0],
            r.fds[1],
            r.fds[2],
            r.cpu_s,
            r.cpu_pct,
            r.violations,
            if r.ok { "yes" } else { "NO" },
            ms(r.latency_us[0]),
            ms(r.latency_us[1]),
            ms(r.latency_us[2]),
            ms(r.slow_p99_us),
            r.churn_drops,
        );
    }
    let list = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in &s.runs {
        if let Some(a) = &r.abuse {
            let _ = writeln!(
                o,
                "\nabusers ({}): {} connections, {} acts; refused {} ({}); closed {} ({}); served {}; refused or cut off as documented: {}.",
                r.label,
                a.abusers,
                a.acts,
                a.refused,
                list(&a.refusals),
                a.disconnects,
                list(&a.closes),
                list(&a.served),
                if r.abusers_refused == Some(true) { "yes" } else { "NO" },
            );
        }
    }
    if let Some(ratio) = s.p99_ratio {
        let _ = writeln!(
            o,
            "\nnormal clients' delivery p99 with abusers ÷ without: {ratio:.2}×"
        );
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::figures::{Figures, TimePoint};
    use crate::scenario::{plan, Options};

    #[test]
    fn the_slope_of_a_line_is_its_gradient_and_noise_averages_out() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        assert!((least_squares_slope(&line).unwrap() - 0.5).abs() < 1e-12);
        let flat: Vec<(f64, f64)> = (0..100)
            .map(|i| (i as f64, 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        assert!(least_squares_slope(&flat).unwrap().abs() < 1e-3);
        assert_eq!(least_squares_slope(&[(1.0, 2.0)]), None);
        assert_eq!(least_squares_slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    fn run(label: &str, p99: u64, abuse: Option<serde_json::Value>) -> RunResult {
        let spec = plan(
            "soak",
            &Options {
                quick: true,
                ..Options::default()
            },
        )
        .unwrap()
        .into_iter()
        .find(|s| s.label == label)
        .unwrap();
        let mut loadgen = serde_json::json!({
            "ramp_s": 10.0, "duration_s": 100.0, "latency_window_s": 5.0,
            "latency_windows": [
                {"start_s": 0.0, "latency_us": {"count": 10, "p99": 2000}},
                {"start_s": 5.0, "latency_us": {"count": 0, "p99": 0}},
            ],
            "slow_latency_us": {"p99": 90_000},
            "counters": {"churn_drops": 7, "connects": 1007},
        });
        if let Some(a) = abuse {
            loadgen["abuse"] = a;
        }
        // Warm-up spikes RSS; after it, 1 MiB per minute (t in s).
        let timeline = (0..=30)
            .map(|i| {
                let t_s = i as f64 * 5.0;
                TimePoint {
                    t_s,
                    rss_kib: if t_s < 30.0 {
                        400 * 1024
                    } else {
                        (100.0 * 1024.0 + t_s / 60.0 * 1024.0) as u64
                    },
                    fds: 100 + i,
                    cpu_ticks: i * 10,
                }
            })
            .collect();
        RunResult {
            spec,
            loadgen,
            loadgen_exit: 0,
            server: crate::figures::ServerSamples {
                wall_s: 150.0,
                ..Default::default()
            },
            figures: Figures {
                latency_us: [500, p99, p99 * 2, p99 * 3],
                server_cpu_s: 75.0,
                ok: true,
                ..Figures::default()
            },
            server_cpus: vec![],
            pin_method: None,
            server_metrics: Default::default(),
            timeline,
        }
    }

    #[test]
    fn the_summary_measures_the_slope_after_warm_up_and_compares_p99() {
        let abuse = serde_json::json!({
            "abusers": 4, "acts": {"bad_json": 3, "send_flood": 2},
            "refusals": {"rate_limited": 300, "bad_request": 20},
            "closes": {"1007": 2, "1008": 5, "1009": 1},
            "served": {"ack": 80, "history": 60},
        });
        let s = summarize(&[
            run("no-abusers", 10_000, None),
            run("abusers", 12_000, Some(abuse)),
        ]);
        let (a, b) = (&s.runs[0], &s.runs[1]);
        assert_eq!(a.slope_window_s, [30.0, 110.0]);
        let slope = a.rss_slope_mib_per_min.unwrap();
        assert!((slope - 1.0).abs() < 0.01, "{slope}");
        assert_eq!(a.rss_max_mib, 400.0, "the warm-up still shows in the max");
        assert_eq!(a.fds, [100, 130, 130]);
        assert!((a.cpu_pct - 50.0).abs() < 1e-9);
        assert_eq!((a.churn_drops, a.slow_p99_us), (7, 90_000));
        assert!(a.abuse.is_none() && a.abusers_refused.is_none());
        let abuse = b.abuse.as_ref().unwrap();
        assert_eq!((abuse.acts, abuse.refused, abuse.disconnects), (5, 320, 8));
        assert_eq!(b.abusers_refused, Some(true));
        assert!((s.p99_ratio.unwrap() - 1.2).abs() < 1e-9);
        let md = markdown(&s);
        assert!(
            md.contains("| no-abusers |") && md.contains("1.20×"),
            "{md}"
        );
        assert!(md.contains("as documented: yes"));
    }

    #[test]
    fn abusers_that_were_never_cut_off_are_not_refused_as_documented() {
        let a = AbuseFigures::from_json(&serde_json::json!({
            "refusals": {"rate_limited": 3, "bad_request": 1},
            "closes": {"1008": 2, "dropped": 1},
        }));
        assert!(!a.refused_as_documented(), "no 1007 or 1009");
        assert_eq!(a.disconnects, 3);
    }

    #[test]
    fn charts_have_one_series_per_run_on_loadgen_minutes() {
        let runs = vec![
            run("no-abusers", 10_000, None),
            run("abusers", 12_000, None),
        ];
        let file = ResultFile {
            scenario: "soak".into(),
            timestamp: 1,
            quick: true,
            server: Default::default(),
            machine: Default::default(),
            binaries: vec![],
            settings: Default::default(),
            pinned: false,
            stepped: None,
            soak: None,
            runs,
        };
        let p = plots(&file);
        let names: Vec<_> = p.iter().map(|c| c.0).collect();
        assert_eq!(names, ["rss", "p99", "fds"]);
        assert!(p[0].1.title.contains("quick run"));
        assert_eq!(p[0].1.series.len(), 2);
        assert_eq!(p[0].1.series[0].points[6], [0.5, 100.5]);
        // The empty window is left out; the other sits mid-window after the ramp.
        assert_eq!(p[1].1.series[1].points, vec![[12.5 / 60.0, 2.0]]);
    }
}
