//! What one point measured, read from bench's result JSON. No I/O.
//!
//! The sweep runs `bench` as a program and reads its files; it does not link
//! the bench crate (the gateway depends on this crate, and bench on the
//! gateway). The fields read are the contract of `bench/src/report.rs`
//! (`ResultFile`) and `bench/src/figures.rs` (`Figures`):
//! `runs[].figures.{deliveries_per_s, deliveries_per_cpu_s, latency_us,
//! mem_per_conn_bytes, violations, ok}`, `runs[].loadgen_exit`,
//! `runs[].spec.{label, gateway_shards, durability, settings}`, `stepped`
//! and `settings` (the `--set` values).
//!
//! A file holds one run, or — for a stepped scenario (`room-fanout`
//! without `--rate`) — one run per rate of a rising ladder. A ladder is
//! summarised by its **highest sustained step**: the last one that was ok
//! with a p99 within the budget, i.e. the most load the settings carried.
//! A violation at any step (loss, duplicate, reorder: loadgen exit 1)
//! disqualifies the point; a step that was only too slow or incomplete ends
//! what it sustained. With no sustained step the first is shown, with the
//! reason it does not qualify.

use serde::Serialize;
use serde_json::Value;

use super::grid::Point;

/// The figures of one run that the sweep ranks and tabulates.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measured {
    /// The run these figures are from (bench's label: `dm`, `rate=400`).
    pub run: String,
    /// Its position among the file's runs, 1-based.
    pub step: usize,
    /// Runs in the file, or the steps a ladder planned (it stops after the
    /// first step past bench's own p99 limit).
    pub steps: usize,
    /// Connections run.
    pub connections: u64,
    /// Deliveries per second over loadgen's send phase.
    pub deliveries_per_s: f64,
    /// Deliveries per gateway CPU-second (whole run).
    pub deliveries_per_cpu_s: f64,
    /// Delivery latency p50, µs.
    pub p50_us: u64,
    /// Delivery latency p99, µs.
    pub p99_us: u64,
    /// Gateway memory growth per connection, KiB.
    pub kib_per_conn: f64,
    /// Repeats of the point combined into these figures (`--repeat`).
    pub repeats: usize,
    /// (max − min) ÷ median of deliveries per CPU-second over the
    /// repeats: the run-to-run noise (0 with one repeat).
    pub spread: f64,
    /// Sum of loadgen's violation counters over every run in the file.
    pub violations: u64,
    /// loadgen found nothing wrong in this run (verdict ok, exit 0) and no
    /// run of the file had a violation.
    pub ok: bool,
}

/// What became of one point.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The run finished and wrote its figures (`ok` may still be false).
    Measured(Measured),
    /// No usable figures: bench failed, wrote no file, or wrote one that
    /// does not match the point.
    Failed {
        /// Why, for the table.
        reason: String,
    },
}

impl Outcome {
    /// A failure with `reason`.
    pub fn failed(reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
        }
    }

    /// The figures, when measured.
    #[must_use]
    pub fn measured(&self) -> Option<&Measured> {
        match self {
            Outcome::Measured(m) => Some(m),
            Outcome::Failed { .. } => None,
        }
    }
}

/// Reads a bench result file for `point`: its settings must be the ones
/// bench recorded (a bench that silently ignored a setting would otherwise
/// be credited with its figures); a ladder is summarised by the highest
/// step sustained within `p99_budget_us` (see the module docs).
#[must_use]
pub fn read_result(text: &str, point: &Point, p99_budget_us: u64) -> Outcome {
    match parse(text, point, p99_budget_us) {
        Ok(m) => Outcome::Measured(m),
        Err(reason) => Outcome::failed(reason),
    }
}

/// One run of a file, as read.
struct Step {
    m: Measured,
    /// loadgen's exit status (0 ok, 1 violation, 3 incomplete).
    exit: i64,
    /// loadgen's own verdict.
    verdict: bool,
}

fn parse(text: &str, point: &Point, p99_budget_us: u64) -> Result<Measured, String> {
    let file: Value =
        serde_json::from_str(text).map_err(|e| format!("result JSON does not parse: {e}"))?;
    let runs = file
        .get("runs")
        .and_then(Value::as_array)
        .ok_or("result JSON has no `runs`")?;
    let stepped = file.get("stepped").is_some_and(|s| !s.is_null());
    match runs.len() {
        0 => return Err("result has no runs".to_string()),
        1 => {}
        n if !stepped => {
            return Err(format!(
                "result has {n} runs and is not a ladder; a sweep point must be one run"
            ))
        }
        _ => {}
    }
    for run in runs {
        check_settings(&file, run, point)?;
    }
    // A ladder that stopped early still counts its planned steps.
    let planned = file
        .get("stepped")
        .and_then(|s| s.get("ladder"))
        .and_then(Value::as_array)
        .map_or(runs.len(), |l| l.len().max(runs.len()));
    let steps = runs
        .iter()
        .enumerate()
        .map(|(i, run)| step(run, i + 1, planned))
        .collect::<Result<Vec<Step>, String>>()?;
    let violations: u64 = steps.iter().map(|s| s.m.violations).sum();
    let broken = steps.iter().find(|s| s.m.violations > 0 || s.exit == 1);
    let sustained = |s: &&Step| s.verdict && s.exit == 0 && s.m.p99_us <= p99_budget_us;
    let (chosen, ok) = match broken {
        Some(s) => (s, false),
        None => match steps.iter().rev().find(sustained) {
            Some(s) => (s, true),
            None => (&steps[0], steps[0].verdict && steps[0].exit == 0),
        },
    };
    Ok(Measured {
        violations,
        ok,
        repeats: 1,
        ..chosen.m.clone()
    })
}

/// Combines the repeats of one point: a failure of any repeat fails the
/// point, a repeat with violations stands for it, otherwise the figures are
/// those of the median repeat by deliveries per CPU-second (the lower one
/// of an even count), `ok` only when every repeat was, with the spread.
#[must_use]
pub fn combine(repeats: Vec<Outcome>) -> Outcome {
    let n = repeats.len();
    let mut measured = Vec::with_capacity(n);
    for (i, o) in repeats.into_iter().enumerate() {
        match o {
            Outcome::Measured(m) => measured.push(m),
            Outcome::Failed { reason } if n > 1 => {
                return Outcome::failed(format!("repeat {}/{n}: {reason}", i + 1))
            }
            failed @ Outcome::Failed { .. } => return failed,
        }
    }
    if measured.is_empty() {
        return Outcome::failed("no run");
    }
    let violations: u64 = measured.iter().map(|m| m.violations).sum();
    let all_ok = measured.iter().all(|m| m.ok);
    measured.sort_by(|a, b| a.deliveries_per_cpu_s.total_cmp(&b.deliveries_per_cpu_s));
    let (lo, hi) = (
        measured[0].deliveries_per_cpu_s,
        measured[n - 1].deliveries_per_cpu_s,
    );
    let pick = measured
        .iter()
        .position(|m| m.violations > 0)
        .unwrap_or((n - 1) / 2);
    let median = measured[(n - 1) / 2].deliveries_per_cpu_s;
    Outcome::Measured(Measured {
        repeats: n,
        spread: if median > 0.0 {
            (hi - lo) / median
        } else {
            0.0
        },
        violations,
        ok: all_ok,
        ..measured[pick].clone()
    })
}

fn step(run: &Value, step: usize, steps: usize) -> Result<Step, String> {
    let f = run.get("figures").ok_or("run has no `figures`")?;
    let num = |k: &str| {
        f.get(k)
            .and_then(Value::as_f64)
            .ok_or(format!("figures has no number `{k}`"))
    };
    let latency = f
        .get("latency_us")
        .and_then(Value::as_array)
        .ok_or("figures has no `latency_us`")?;
    let pct = |i: usize| latency.get(i).and_then(Value::as_u64).unwrap_or(0);
    Ok(Step {
        m: Measured {
            run: run
                .get("spec")
                .and_then(|s| s.get("label"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            step,
            steps,
            connections: f.get("connections").and_then(Value::as_u64).unwrap_or(0),
            deliveries_per_s: num("deliveries_per_s")?,
            deliveries_per_cpu_s: num("deliveries_per_cpu_s")?,
            p50_us: pct(0),
            p99_us: pct(1),
            kib_per_conn: num("mem_per_conn_bytes")? / 1024.0,
            violations: f.get("violations").and_then(Value::as_u64).unwrap_or(0),
            ok: false,
            repeats: 1,
            spread: 0.0,
        },
        exit: run
            .get("loadgen_exit")
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        verdict: f.get("ok").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The point's settings must be the ones bench recorded: `shards` in
/// `spec.gateway_shards`, `durability` in `spec.durability`, the rest in
/// `spec.settings` (else the file's `settings`). A file without settings
/// passes when the point sets nothing through `--set`.
fn check_settings(file: &Value, run: &Value, point: &Point) -> Result<(), String> {
    let spec = run.get("spec");
    let recorded = spec
        .and_then(|s| s.get("settings"))
        .or_else(|| file.get("settings"))
        .and_then(Value::as_object);
    for (key, want) in &point.settings {
        let found: Option<String> = match key.as_str() {
            "shards" => spec
                .and_then(|s| s.get("gateway_shards"))
                .and_then(Value::as_u64)
                .map(|n| n.to_string()),
            "durability" => spec
                .and_then(|s| s.get("durability"))
                .and_then(Value::as_str)
                .map(ToString::to_string),
            _ => recorded.and_then(|m| m.get(key)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        };
        match found {
            Some(found) if found == *want => {}
            Some(found) => {
                return Err(format!(
                    "bench recorded {key}={found}, the point asked for {key}={want}"
                ))
            }
            None => return Err(format!("bench did not record {key} (asked for {want})")),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BUDGET: u64 = 50_000;

    fn point(pairs: &[(&str, &str)]) -> Point {
        Point {
            settings: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// One run: label, deliveries/s, p99 µs, violations, loadgen exit.
    fn run(label: &str, dps: f64, p99: u64, violations: u64, exit: i64) -> serde_json::Value {
        serde_json::json!({
            "spec": {"label": label, "gateway_shards": 1, "durability": "fsync",
                     "settings": {"commit_max_messages": "64"}},
            "loadgen_exit": exit,
            "figures": {
                "connections": 100, "deliveries_per_s": dps,
                "deliveries_per_cpu_s": dps * 20.0, "latency_us": [900, p99, 7000, 9000],
                "mem_per_conn_bytes": 3072.0, "violations": violations,
                "ok": violations == 0 && exit == 0
            }
        })
    }

    fn file(runs: Vec<serde_json::Value>, stepped: bool) -> String {
        let mut f = serde_json::json!({
            "scenario": "room-fanout", "timestamp": 1, "quick": true,
            "settings": {"commit_max_messages": "64"},
            "runs": runs,
        });
        if stepped {
            f["stepped"] = serde_json::json!({"ladder": [25.0, 100.0, 400.0]});
        }
        f.to_string()
    }

    fn measured(text: &str) -> Measured {
        let p = point(&[("commit_max_messages", "64")]);
        match read_result(text, &p, BUDGET) {
            Outcome::Measured(m) => m,
            Outcome::Failed { reason } => panic!("{reason}"),
        }
    }

    #[test]
    fn figures_are_read_from_a_bench_result() {
        let m = measured(&file(vec![run("dm", 2000.0, 4100, 0, 0)], false));
        assert_eq!((m.run.as_str(), m.step, m.steps), ("dm", 1, 1));
        assert_eq!(m.connections, 100);
        assert_eq!((m.p50_us, m.p99_us), (900, 4100));
        assert!((m.kib_per_conn - 3.0).abs() < 1e-9);
        assert!((m.deliveries_per_cpu_s - 40_000.0).abs() < 1e-9);
        assert!(m.ok);
    }

    #[test]
    fn violations_or_a_failed_loadgen_make_a_point_not_ok() {
        let m = measured(&file(vec![run("dm", 2000.0, 4100, 3, 1)], false));
        assert_eq!(m.violations, 3);
        assert!(!m.ok);
        let incomplete = measured(&file(vec![run("dm", 2000.0, 4100, 0, 3)], false));
        assert!(!incomplete.ok);
    }

    #[test]
    fn a_ladder_is_summarised_by_its_highest_sustained_step() {
        let ladder = vec![
            run("rate=25", 25_000.0, 3_000, 0, 0),
            run("rate=100", 100_000.0, 20_000, 0, 0),
            run("rate=400", 300_000.0, 90_000, 0, 0), // past the budget: the ladder stopped
        ];
        let m = measured(&file(ladder, true));
        assert_eq!((m.run.as_str(), m.step, m.steps), ("rate=100", 2, 3));
        assert!(m.ok);
        assert_eq!(m.p99_us, 20_000);
    }

    #[test]
    fn a_violation_at_any_step_disqualifies_the_ladder() {
        let ladder = vec![
            run("rate=25", 25_000.0, 3_000, 0, 0),
            run("rate=100", 100_000.0, 20_000, 1, 1),
            run("rate=400", 300_000.0, 30_000, 0, 0),
        ];
        let m = measured(&file(ladder, true));
        assert_eq!((m.run.as_str(), m.violations, m.ok), ("rate=100", 1, false));
    }

    #[test]
    fn a_ladder_with_no_sustained_step_shows_its_first() {
        let ladder = vec![
            run("rate=25", 25_000.0, 60_000, 0, 0),
            run("rate=100", 100_000.0, 90_000, 0, 0),
        ];
        let m = measured(&file(ladder, true));
        assert_eq!((m.run.as_str(), m.ok, m.steps), ("rate=25", true, 3));
        assert_eq!(m.p99_us, 60_000, "disqualified later, by the budget");
    }

    #[test]
    fn a_setting_bench_did_not_apply_fails_the_point() {
        let text = file(vec![run("dm", 2000.0, 4100, 0, 0)], false);
        let asked = point(&[("commit_max_messages", "128")]);
        let Outcome::Failed { reason } = read_result(&text, &asked, BUDGET) else {
            panic!("credited")
        };
        assert!(
            reason.contains("recorded commit_max_messages=64"),
            "{reason}"
        );
        let unrecorded = point(&[("outbox_budget_bytes", "65536")]);
        assert!(read_result(&text, &unrecorded, BUDGET).measured().is_none());
        let wrong_shards = point(&[("shards", "2")]);
        assert!(read_result(&text, &wrong_shards, BUDGET)
            .measured()
            .is_none());
        let right_shards = point(&[("shards", "1")]);
        assert!(read_result(&text, &right_shards, BUDGET)
            .measured()
            .is_some());
    }

    #[test]
    fn settings_of_the_file_are_read_when_the_run_has_none() {
        let mut v: serde_json::Value =
            serde_json::from_str(&file(vec![run("dm", 1.0, 1, 0, 0)], false)).unwrap();
        v["runs"][0]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("settings");
        v["settings"] = serde_json::json!({"outbox_budget_bytes": 65536});
        let p = point(&[("outbox_budget_bytes", "65536")]);
        assert!(read_result(&v.to_string(), &p, BUDGET).measured().is_some());
    }

    fn with_dpcs(dpcs: f64, violations: u64) -> Outcome {
        Outcome::Measured(Measured {
            deliveries_per_cpu_s: dpcs,
            violations,
            ok: violations == 0,
            repeats: 1,
            ..Measured::default()
        })
    }

    #[test]
    fn repeats_combine_into_the_median_run_with_its_spread() {
        let Outcome::Measured(m) = combine(vec![
            with_dpcs(110.0, 0),
            with_dpcs(90.0, 0),
            with_dpcs(100.0, 0),
        ]) else {
            panic!()
        };
        assert_eq!((m.deliveries_per_cpu_s, m.repeats), (100.0, 3));
        assert!((m.spread - 0.2).abs() < 1e-9);
        assert!(m.ok);
        let Outcome::Measured(even) = combine(vec![with_dpcs(120.0, 0), with_dpcs(100.0, 0)])
        else {
            panic!()
        };
        assert_eq!(even.deliveries_per_cpu_s, 100.0, "the lower of two");
    }

    #[test]
    fn one_bad_repeat_spoils_the_point() {
        let Outcome::Measured(m) = combine(vec![with_dpcs(100.0, 0), with_dpcs(300.0, 2)]) else {
            panic!()
        };
        assert_eq!(
            (m.deliveries_per_cpu_s, m.violations, m.ok),
            (300.0, 2, false)
        );
        let Outcome::Failed { reason } =
            combine(vec![with_dpcs(100.0, 0), Outcome::failed("crashed")])
        else {
            panic!()
        };
        assert_eq!(reason, "repeat 2/2: crashed");
        assert_eq!(
            combine(vec![Outcome::failed("crashed")]),
            Outcome::failed("crashed")
        );
    }

    #[test]
    fn garbage_and_unstepped_multi_run_files_are_failures_not_figures() {
        assert!(read_result("not json", &Point::default(), BUDGET)
            .measured()
            .is_none());
        let two = file(vec![run("a", 1.0, 1, 0, 0), run("b", 1.0, 1, 0, 0)], false);
        let Outcome::Failed { reason } = read_result(&two, &Point::default(), BUDGET) else {
            panic!()
        };
        assert!(reason.contains("2 runs and is not a ladder"), "{reason}");
        let none = file(vec![], false);
        assert!(read_result(&none, &Point::default(), BUDGET)
            .measured()
            .is_none());
    }
}
