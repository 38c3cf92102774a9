//! What a sweep prints and writes: the table, the verdict, the TOML lines,
//! the plot spec and the sweep file. No I/O.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::json;

use super::grid::{BenchOptions, Grid, Mode, Point};
use super::outcome::{Measured, Outcome};
use super::recommend::{ms, objective, Criteria, Objective, Recommendation, Row};

/// The Markdown table: one row per point.
#[must_use]
pub fn markdown(rows: &[Row], criteria: &Criteria, rec: &Recommendation) -> String {
    let mut t = String::from(
        "| # | settings | run | deliveries/s | deliveries/CPU-s | p50 µs | p99 µs | KiB/conn | ok | note |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let note = note(r, criteria, rec);
        let _ = match &r.outcome {
            Outcome::Measured(m) => writeln!(
                t,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {} | {} |",
                r.number,
                r.point,
                run_label(m),
                m.deliveries_per_s,
                efficiency(m),
                m.p50_us,
                m.p99_us,
                m.kib_per_conn,
                if m.ok { "yes" } else { "NO" },
                note
            ),
            Outcome::Failed { .. } => writeln!(
                t,
                "| {} | {} | - | - | - | - | - | - | NO | {} |",
                r.number,
                r.point,
                note.replace('|', "/")
            ),
        };
    }
    t
}

/// Deliveries per CPU-second, with the spread over repeats: `38462 ±4 %`.
fn efficiency(m: &Measured) -> String {
    if m.repeats > 1 {
        format!("{:.0} ±{:.0} %", m.deliveries_per_cpu_s, m.spread * 50.0)
    } else {
        format!("{:.0}", m.deliveries_per_cpu_s)
    }
}

/// bench's run label, with its place in a ladder: `rate=100 (2/3)`.
fn run_label(m: &Measured) -> String {
    if m.steps > 1 {
        format!("{} ({}/{})", m.run, m.step, m.steps)
    } else {
        m.run.clone()
    }
}

fn note(r: &Row, criteria: &Criteria, rec: &Recommendation) -> String {
    if rec.number() == Some(r.number) {
        return "recommended".to_string();
    }
    if let Recommendation::KeepDefaults { best, .. } = rec {
        if *best == r.number {
            return "best, within noise of the defaults".to_string();
        }
    }
    r.disqualified(criteria).unwrap_or_default()
}

/// The recommendation in words.
#[must_use]
pub fn verdict(rows: &[Row], criteria: &Criteria, rec: &Recommendation) -> String {
    let row = |n: usize| rows.iter().find(|r| r.number == n);
    let describe = |n: usize, objective: Objective| -> String {
        let Some(r) = row(n) else {
            return format!("#{n}");
        };
        let Some(m) = r.outcome.measured() else {
            return format!("#{n} {}", r.point);
        };
        let figure = match objective {
            Objective::Efficiency => format!("{:.0} deliveries/CPU-s", m.deliveries_per_cpu_s),
            Objective::Memory => format!("{:.1} KiB/conn", m.kib_per_conn),
        };
        let at = if m.steps > 1 {
            format!(" at {}", m.run)
        } else {
            String::new()
        };
        format!(
            "#{n} {}{at} ({figure}, {:.0} deliveries/s, p99 {:.1} ms)",
            r.point,
            m.deliveries_per_s,
            ms(m.p99_us)
        )
    };
    let more = |objective: Objective, gain: f64| match objective {
        Objective::Efficiency => format!("{:.1} % more deliveries per CPU-second", gain * 100.0),
        Objective::Memory => format!("{:.1} % less memory per connection", gain * 100.0),
    };
    let budget = format!(
        "p99 within {:.1} ms, no violations",
        ms(criteria.p99_budget_us)
    );
    match *rec {
        Recommendation::Change {
            number,
            objective,
            gain: Some(gain),
        } => format!(
            "recommended: {} — {} than the defaults ({budget}).",
            describe(number, objective),
            more(objective, gain)
        ),
        Recommendation::Change {
            number,
            objective,
            gain: None,
        } => format!(
            "recommended: {} — the best by {} ({budget}); the defaults were not run or \
             did not qualify, so there is no gain to state.",
            describe(number, objective),
            objective.figure()
        ),
        Recommendation::KeepDefaults {
            number,
            objective,
            best,
            gain: _,
        } if best == number => format!(
            "recommended: keep the defaults — {} is the best point by {} ({budget}).",
            describe(number, objective),
            objective.figure()
        ),
        Recommendation::KeepDefaults {
            number,
            objective,
            best,
            gain,
        } => format!(
            "recommended: keep the defaults — {}; the best point, {}, has {}, \
             not more than the {:.0} % a change needs to stand out from run-to-run noise.",
            describe(number, objective),
            describe(best, objective),
            more(objective, gain),
            criteria.min_gain * 100.0
        ),
        Recommendation::NoneQualifies => format!(
            "no point qualifies: each one failed, had violations or a p99 over {:.1} ms, \
             so nothing is recommended. See the notes in the table; a lower --rate or a \
             larger --p99-budget-ms may find one.",
            ms(criteria.p99_budget_us)
        ),
    }
}

/// The recommended point as lines for the gateway's TOML config file
/// (`--config FILE`), or `None` when nothing is recommended. Keeping the
/// defaults is a comment alone.
#[must_use]
pub fn toml(rows: &[Row], rec: &Recommendation) -> Option<String> {
    let number = rec.number()?;
    let point = &rows.iter().find(|r| r.number == number)?.point;
    if point.is_defaults() {
        return Some("# the defaults: nothing to add to the gateway config\n".to_string());
    }
    let mut t = String::new();
    for (k, v) in &point.settings {
        let _ = writeln!(t, "{k} = {}", toml_value(v));
    }
    Some(t)
}

/// Numbers and booleans bare, anything else a quoted TOML string: the rule
/// for the config file `bench run --set` hands the gateway (bench re-exports
/// this) and for the lines the sweep recommends.
#[must_use]
pub fn toml_value(v: &str) -> String {
    let numeric = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if v.parse::<i64>().is_ok()
        || (numeric && v.parse::<f64>().is_ok_and(f64::is_finite))
        || v == "true"
        || v == "false"
    {
        return v.to_string();
    }
    let mut q = String::with_capacity(v.len() + 2);
    q.push('"');
    for c in v.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The spec for `bench plot`: deliveries per CPU-second against delivery
/// p99, one series per tunable swept (so each knob's points read as one
/// line), the defaults on their own; with nothing delivered, KiB per
/// connection against the row number.
#[must_use]
pub fn plot_spec(scenario: &str, rows: &[Row], criteria: &Criteria) -> serde_json::Value {
    let objective = objective(rows, criteria);
    let mut series: Vec<(String, Vec<[f64; 2]>)> = Vec::new();
    for r in rows {
        let Some(m) = r.outcome.measured() else {
            continue;
        };
        let xy = match objective {
            Objective::Efficiency => [ms(m.p99_us), m.deliveries_per_cpu_s],
            Objective::Memory => [r.number as f64, m.kib_per_conn],
        };
        let name = series_name(&r.point);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(xy),
            None => series.push((name, vec![xy])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    }
    let budget_ms = ms(criteria.p99_budget_us);
    let over_budget = series
        .iter()
        .flat_map(|(_, p)| p)
        .any(|[x, _]| *x > budget_ms);
    if objective == Objective::Efficiency && over_budget {
        let top = series
            .iter()
            .flat_map(|(_, p)| p)
            .map(|[_, y]| *y)
            .fold(0.0, f64::max);
        series.push((
            "p99 budget".to_string(),
            vec![[budget_ms, 0.0], [budget_ms, top]],
        ));
    }
    let (title, x_label, y_label) = match objective {
        Objective::Efficiency => (
            format!("tuning sweep {scenario}: efficiency vs latency (up and left is better)"),
            "delivery latency p99, ms",
            "deliveries per gateway CPU-second",
        ),
        Objective::Memory => (
            format!("tuning sweep {scenario}: memory per connection (lower is better)"),
            "point #",
            "gateway KiB per connection",
        ),
    };
    json!({
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "series": series
            .into_iter()
            .map(|(name, points)| json!({"name": name, "points": points}))
            .collect::<Vec<_>>(),
    })
}

/// `defaults`, the one key a point sets, or `combinations`.
fn series_name(p: &Point) -> String {
    match p.settings.as_slice() {
        [] => "defaults".to_string(),
        [(k, _)] => k.clone(),
        _ => "combinations".to_string(),
    }
}

/// Said under the verdict of a `--quick` sweep.
pub const QUICK_NOTE: &str = "note: --quick runs are seconds long and lightly loaded, \
     made to check that a sweep works; run without --quick before changing a config.";

/// `sweep-<scenario>-<timestamp>.json`: everything a later reader needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepFile {
    /// Scenario swept.
    pub scenario: String,
    /// Unix time the sweep started, s.
    pub timestamp: u64,
    /// How points were formed.
    pub mode: Mode,
    /// The grid.
    pub grid: Grid,
    /// Options passed to every `bench run`.
    pub bench_options: BenchOptions,
    /// The bench binary run.
    pub bench_bin: String,
    /// What a recommendation had to meet.
    pub criteria: Criteria,
    /// Runs per point (the median kept).
    pub repeat: usize,
    /// One row per point.
    pub rows: Vec<Row>,
    /// The recommendation.
    pub recommendation: Recommendation,
    /// The recommendation in words.
    pub verdict: String,
    /// Lines for the gateway config file, when something is recommended.
    pub toml: Option<String>,
}

/// `sweep-<scenario>-<timestamp>.md`: the table, the verdict and the TOML.
#[must_use]
pub fn markdown_file(f: &SweepFile, plot: Option<&str>) -> String {
    let mut t = format!(
        "# tuning sweep {} ({}, {})\n\nbench: `{}`, options: {}; p99 budget {:.1} ms; \
         minimum gain over the defaults {:.0} %.\n\n",
        f.scenario,
        match f.mode {
            Mode::OneAtATime => "one tunable at a time",
            Mode::Full => "every combination",
        },
        if f.repeat > 1 {
            format!("median of {} runs per point", f.repeat)
        } else {
            "one run per point".to_string()
        },
        f.bench_bin,
        options_text(&f.bench_options),
        ms(f.criteria.p99_budget_us),
        f.criteria.min_gain * 100.0
    );
    t.push_str(&markdown(&f.rows, &f.criteria, &f.recommendation));
    let _ = write!(t, "\n{}\n", f.verdict);
    if f.bench_options.quick {
        let _ = write!(t, "\n{QUICK_NOTE}\n");
    }
    if let Some(toml) = &f.toml {
        let _ = write!(t, "\n```toml\n{toml}```\n");
    }
    if let Some(plot) = plot {
        let _ = write!(t, "\n![sweep plot]({plot})\n");
    }
    t
}

fn options_text(o: &BenchOptions) -> String {
    let mut parts = Vec::new();
    if o.quick {
        parts.push("--quick".to_string());
    }
    if let Some(d) = &o.durability {
        parts.push(format!("--durability {d}"));
    }
    if let Some(c) = o.connections {
        parts.push(format!("--connections {c}"));
    }
    if let Some(r) = o.rate {
        parts.push(format!("--rate {r}"));
    }
    if let Some(d) = &o.duration {
        parts.push(format!("--duration {d}"));
    }
    if let Some(s) = &o.steps {
        parts.push(format!("--steps {s}"));
    }
    if parts.is_empty() {
        "the scenario's own".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sweep::recommend::recommend;
    use crate::sweep::recommend::tests::{row, CRITERIA};

    fn rows() -> Vec<Row> {
        vec![
            row(1, "", 10_000.0, 2000.0, 5_000),
            row(2, "commit_max_messages", 15_000.0, 2000.0, 6_000),
            row(3, "commit_max_messages", 9_000.0, 2000.0, 70_000),
            Row {
                number: 4,
                point: Point {
                    settings: vec![("log".into(), "debug".into())],
                },
                outcome: Outcome::failed("bench exited with status 2 | see log"),
                result_files: Vec::new(),
            },
        ]
    }

    #[test]
    fn table_has_one_row_per_point_with_every_column() {
        let rows = rows();
        let rec = recommend(&rows, &CRITERIA);
        let t = markdown(&rows, &CRITERIA, &rec);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len());
        let cols = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cols(l) == cols(lines[0])), "{t}");
        assert!(
            lines[3].starts_with("| 2 | commit_max_messages=2 | r | 2000 | 15000 | 1500 | 6000 | 8.0 | yes | recommended |"),
            "{t}"
        );
        assert!(lines[4].contains("p99 70.0 ms > budget 50.0 ms"), "{t}");
        assert!(lines[5].contains("| - | NO | failed: bench exited"), "{t}");
        assert_eq!(lines[5].matches('|').count(), cols(lines[0]), "{t}");
    }

    #[test]
    fn verdict_states_the_gain_and_toml_holds_the_point() {
        let rows = rows();
        let rec = recommend(&rows, &CRITERIA);
        let v = verdict(&rows, &CRITERIA, &rec);
        assert!(
            v.starts_with("recommended: #2 commit_max_messages=2"),
            "{v}"
        );
        assert!(v.contains("50.0 % more deliveries per CPU-second"), "{v}");
        assert_eq!(toml(&rows, &rec).unwrap(), "commit_max_messages = 2\n");
    }

    #[test]
    fn keeping_the_defaults_says_so_and_adds_nothing_to_the_config() {
        let rows = vec![
            row(1, "", 10_000.0, 2000.0, 5_000),
            row(2, "shards", 10_200.0, 2000.0, 5_000),
        ];
        let rec = recommend(&rows, &CRITERIA);
        let v = verdict(&rows, &CRITERIA, &rec);
        assert!(v.starts_with("recommended: keep the defaults"), "{v}");
        assert!(v.contains("not more than the 5 %"), "{v}");
        assert!(toml(&rows, &rec).unwrap().starts_with('#'));
        let t = markdown(&rows, &CRITERIA, &rec);
        assert!(t.contains("best, within noise of the defaults"), "{t}");
    }

    #[test]
    fn no_qualifying_point_is_said_plainly_and_gives_no_toml() {
        let rows = vec![row(1, "", 10_000.0, 2000.0, 90_000)];
        let rec = recommend(&rows, &CRITERIA);
        assert!(verdict(&rows, &CRITERIA, &rec).starts_with("no point qualifies"));
        assert_eq!(toml(&rows, &rec), None);
    }

    #[test]
    fn repeated_points_show_their_spread_and_ladders_their_step() {
        let mut rows = rows();
        if let Outcome::Measured(m) = &mut rows[1].outcome {
            m.repeats = 3;
            m.spread = 0.08;
            m.run = "rate=100".into();
            m.step = 2;
            m.steps = 3;
        }
        let rec = recommend(&rows, &CRITERIA);
        let t = markdown(&rows, &CRITERIA, &rec);
        assert!(t.contains("| rate=100 (2/3) | 2000 | 15000 ±4 % |"), "{t}");
        let v = verdict(&rows, &CRITERIA, &rec);
        assert!(v.contains("commit_max_messages=2 at rate=100 ("), "{v}");
    }

    #[test]
    fn toml_quotes_strings_and_leaves_numbers_bare() {
        assert_eq!(toml_value("65536"), "65536");
        assert_eq!(toml_value("0.5"), "0.5");
        assert_eq!(toml_value("buffered"), "\"buffered\"");
        assert_eq!(toml_value("inf"), "\"inf\"");
        assert_eq!(toml_value(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_value("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn plot_has_a_series_per_tunable_and_a_budget_line_when_a_point_exceeds_it() {
        let spec = plot_spec("room-fanout", &rows(), &CRITERIA);
        let names: Vec<&str> = spec["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["defaults", "commit_max_messages", "p99 budget"]);
        assert_eq!(
            spec["series"][1]["points"],
            json!([[6.0, 15000.0], [70.0, 9000.0]])
        );
        assert!(spec["x_label"].as_str().unwrap().contains("p99"));
        let calm = plot_spec("room-fanout", &rows()[..2], &CRITERIA);
        assert_eq!(calm["series"].as_array().unwrap().len(), 2);
    }
}
