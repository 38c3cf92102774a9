//! Which point to recommend. No I/O.
//!
//! A point qualifies when it was measured, loadgen found nothing wrong
//! (`ok`: no loss, duplicate or reorder, exit 0) and its delivery p99 is
//! within the budget. Among those, the best is the one with the most
//! deliveries per gateway CPU-second, then the most deliveries per second —
//! efficiency first, because throughput on a shared host is bounded by the
//! offered rate while CPU per delivery is what a bigger load pays for. A
//! scenario that delivers nothing (`idle`) is ranked by memory per
//! connection instead.
//!
//! Runs are noisy (quick runs of one configuration differed by 15 % here;
//! `--repeat N` takes the median of N and shows the spread), so the
//! defaults are kept unless the best beats them by more than
//! [`Criteria::min_gain`]: a sweep should not move a setting on noise.

use std::cmp::Ordering;

use serde::Serialize;

use super::grid::Point;
use super::outcome::{Measured, Outcome};

/// One point and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// 1-based, as in the table and the progress lines.
    pub number: usize,
    /// The settings run.
    pub point: Point,
    /// Figures or the failure.
    pub outcome: Outcome,
    /// The bench result files read (one per repeat).
    pub result_files: Vec<String>,
}

impl Row {
    /// Why this row cannot be recommended, or `None` when it qualifies.
    #[must_use]
    pub fn disqualified(&self, criteria: &Criteria) -> Option<String> {
        match &self.outcome {
            Outcome::Failed { reason } => Some(format!("failed: {reason}")),
            Outcome::Measured(m) if m.violations > 0 => Some(format!(
                "{} violation{}",
                m.violations,
                if m.violations == 1 { "" } else { "s" }
            )),
            Outcome::Measured(m) if !m.ok => Some("loadgen not ok".to_string()),
            Outcome::Measured(m) if m.p99_us > criteria.p99_budget_us => Some(format!(
                "p99 {:.1} ms > budget {:.1} ms",
                ms(m.p99_us),
                ms(criteria.p99_budget_us)
            )),
            Outcome::Measured(_) => None,
        }
    }

    fn qualifying(&self, criteria: &Criteria) -> Option<&Measured> {
        self.disqualified(criteria)
            .is_none()
            .then(|| self.outcome.measured())
            .flatten()
    }
}

/// µs → ms.
pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What a recommendation must meet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Criteria {
    /// Largest delivery p99 allowed, µs.
    pub p99_budget_us: u64,
    /// Smallest relative gain over the defaults worth changing a setting
    /// for (0.05: 5 %).
    pub min_gain: f64,
}

/// What the ranking optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Most deliveries per CPU-second, then most deliveries per second.
    Efficiency,
    /// Least memory per connection (nothing was delivered).
    Memory,
}

impl Objective {
    /// The figure ranked, for messages.
    #[must_use]
    pub fn figure(self) -> &'static str {
        match self {
            Objective::Efficiency => "deliveries per CPU-second",
            Objective::Memory => "KiB per connection",
        }
    }

    /// `a` better than `b`: `Ordering::Less`.
    fn rank(self, a: &Measured, b: &Measured) -> Ordering {
        match self {
            Objective::Efficiency => b
                .deliveries_per_cpu_s
                .total_cmp(&a.deliveries_per_cpu_s)
                .then(b.deliveries_per_s.total_cmp(&a.deliveries_per_s)),
            Objective::Memory => a.kib_per_conn.total_cmp(&b.kib_per_conn),
        }
    }

    /// How much better `best` is than `base`, relative (0.1: 10 % better).
    fn gain(self, best: &Measured, base: &Measured) -> f64 {
        let ratio = |better: f64, worse: f64| {
            if worse > 0.0 {
                better / worse - 1.0
            } else if better > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        };
        match self {
            Objective::Efficiency => ratio(best.deliveries_per_cpu_s, base.deliveries_per_cpu_s),
            Objective::Memory => ratio(base.kib_per_conn, best.kib_per_conn),
        }
    }
}

/// The outcome of ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Recommendation {
    /// Row `number` is the best and beats the defaults by `gain` (or the
    /// defaults were not run or did not qualify: `gain` is `None`).
    Change {
        /// Row number of the recommended point.
        number: usize,
        /// What was optimised.
        objective: Objective,
        /// Relative gain over the defaults.
        gain: Option<f64>,
    },
    /// The defaults qualify and nothing beats them by more than the
    /// minimum gain.
    KeepDefaults {
        /// Row number of the defaults.
        number: usize,
        /// What was optimised.
        objective: Objective,
        /// Row number of the best point (may be the defaults).
        best: usize,
        /// The best point's relative gain over the defaults.
        gain: f64,
    },
    /// No point qualifies.
    NoneQualifies,
}

impl Recommendation {
    /// The row number of the recommended point.
    #[must_use]
    pub fn number(&self) -> Option<usize> {
        match self {
            Recommendation::Change { number, .. } | Recommendation::KeepDefaults { number, .. } => {
                Some(*number)
            }
            Recommendation::NoneQualifies => None,
        }
    }
}

/// The objective of these rows: efficiency when a qualifying point
/// delivered anything, else memory.
#[must_use]
pub fn objective(rows: &[Row], criteria: &Criteria) -> Objective {
    if rows
        .iter()
        .filter_map(|r| r.qualifying(criteria))
        .any(|m| m.deliveries_per_s > 0.0)
    {
        Objective::Efficiency
    } else {
        Objective::Memory
    }
}

/// Ranks the rows (see the module docs).
#[must_use]
pub fn recommend(rows: &[Row], criteria: &Criteria) -> Recommendation {
    let objective = objective(rows, criteria);
    let Some((best_row, best)) = rows
        .iter()
        .filter_map(|r| r.qualifying(criteria).map(|m| (r, m)))
        .min_by(|(ra, a), (rb, b)| objective.rank(a, b).then(ra.number.cmp(&rb.number)))
    else {
        return Recommendation::NoneQualifies;
    };
    let defaults = rows
        .iter()
        .find(|r| r.point.is_defaults())
        .and_then(|r| r.qualifying(criteria).map(|m| (r, m)));
    match defaults {
        Some((row, base)) => {
            let gain = objective.gain(best, base);
            if best_row.number == row.number || gain <= criteria.min_gain {
                Recommendation::KeepDefaults {
                    number: row.number,
                    objective,
                    best: best_row.number,
                    gain,
                }
            } else {
                Recommendation::Change {
                    number: best_row.number,
                    objective,
                    gain: Some(gain),
                }
            }
        }
        None => Recommendation::Change {
            number: best_row.number,
            objective,
            gain: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const CRITERIA: Criteria = Criteria {
        p99_budget_us: 50_000,
        min_gain: 0.05,
    };

    /// A measured row: `key=value` (or the defaults when `key` is empty).
    pub(crate) fn row(number: usize, key: &str, dpcs: f64, dps: f64, p99_us: u64) -> Row {
        Row {
            number,
            point: if key.is_empty() {
                Point::default()
            } else {
                Point {
                    settings: vec![(key.to_string(), number.to_string())],
                }
            },
            outcome: Outcome::Measured(Measured {
                run: "r".to_string(),
                step: 1,
                steps: 1,
                repeats: 1,
                spread: 0.0,
                connections: 100,
                deliveries_per_s: dps,
                deliveries_per_cpu_s: dpcs,
                p50_us: p99_us / 4,
                p99_us,
                kib_per_conn: 8.0,
                violations: 0,
                ok: true,
            }),
            result_files: Vec::new(),
        }
    }

    fn broken(mut r: Row, violations: u64) -> Row {
        if let Outcome::Measured(m) = &mut r.outcome {
            m.violations = violations;
            m.ok = false;
        }
        r
    }

    #[test]
    fn the_most_efficient_point_within_budget_wins() {
        let rows = [
            row(1, "", 10_000.0, 2000.0, 5_000),
            row(2, "commit_max_messages", 13_000.0, 2000.0, 6_000),
            row(3, "outbox_budget_bytes", 20_000.0, 2000.0, 80_000), // over budget
            row(4, "shards", 15_000.0, 1900.0, 9_000),
        ];
        let rec = recommend(&rows, &CRITERIA);
        let Recommendation::Change {
            number,
            objective,
            gain,
        } = rec
        else {
            panic!("{rec:?}")
        };
        assert_eq!((number, objective), (4, Objective::Efficiency));
        assert!((gain.unwrap() - 0.5).abs() < 1e-9);
        assert!(rows[2].disqualified(&CRITERIA).unwrap().contains("80.0 ms"));
    }

    #[test]
    fn equal_efficiency_is_broken_by_throughput() {
        let rows = [
            row(1, "a", 10_000.0, 1000.0, 1_000),
            row(2, "b", 10_000.0, 1500.0, 1_000),
        ];
        assert_eq!(recommend(&rows, &CRITERIA).number(), Some(2));
    }

    #[test]
    fn a_point_with_violations_never_wins_however_fast() {
        let rows = [
            row(1, "", 10_000.0, 2000.0, 5_000),
            broken(
                row(2, "socket_send_buffer_bytes", 90_000.0, 9000.0, 1_000),
                2,
            ),
        ];
        assert_eq!(recommend(&rows, &CRITERIA).number(), Some(1));
        assert_eq!(
            rows[1].disqualified(&CRITERIA).as_deref(),
            Some("2 violations")
        );
    }

    #[test]
    fn defaults_are_kept_when_the_best_gain_is_within_noise() {
        let rows = [
            row(1, "", 10_000.0, 2000.0, 5_000),
            row(2, "commit_max_messages", 10_400.0, 2000.0, 5_000),
        ];
        let rec = recommend(&rows, &CRITERIA);
        let Recommendation::KeepDefaults {
            number, best, gain, ..
        } = rec
        else {
            panic!("{rec:?}")
        };
        assert_eq!((number, best), (1, 2));
        assert!((gain - 0.04).abs() < 1e-9);
    }

    #[test]
    fn without_qualifying_defaults_the_best_point_is_recommended_without_a_gain() {
        let rows = [
            row(1, "", 10_000.0, 2000.0, 90_000),
            row(2, "commit_max_messages", 9_000.0, 2000.0, 5_000),
        ];
        assert_eq!(
            recommend(&rows, &CRITERIA),
            Recommendation::Change {
                number: 2,
                objective: Objective::Efficiency,
                gain: None
            }
        );
    }

    #[test]
    fn nothing_is_recommended_when_no_point_qualifies() {
        let rows = [
            broken(row(1, "", 10_000.0, 2000.0, 5_000), 1),
            row(2, "shards", 9_000.0, 2000.0, 60_000),
            Row {
                number: 3,
                point: Point::default(),
                outcome: Outcome::failed("bench exited with status 2"),
                result_files: Vec::new(),
            },
        ];
        assert_eq!(recommend(&rows, &CRITERIA), Recommendation::NoneQualifies);
        assert!(rows[2]
            .disqualified(&CRITERIA)
            .unwrap()
            .starts_with("failed:"));
    }

    #[test]
    fn a_scenario_without_deliveries_is_ranked_by_memory_per_connection() {
        let mut rows = vec![
            row(1, "", 0.0, 0.0, 0),
            row(2, "outbox_budget_bytes", 0.0, 0.0, 0),
        ];
        for (r, kib) in rows.iter_mut().zip([10.0, 6.0]) {
            if let Outcome::Measured(m) = &mut r.outcome {
                m.kib_per_conn = kib;
            }
        }
        let rec = recommend(&rows, &CRITERIA);
        let Recommendation::Change {
            number, objective, ..
        } = rec
        else {
            panic!("{rec:?}")
        };
        assert_eq!((number, objective), (2, Objective::Memory));
    }
}
