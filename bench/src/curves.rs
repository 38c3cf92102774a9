//! Stepped runs: when a ladder stops, and the charts drawn from result
//! files — one system's steps (`bench run room-fanout`) or several systems
//! side by side (`bench plot-results`). No I/O: result files in,
//! [`PlotSpec`]s out.
//!
//! The x axis is always the **offered publish rate** (messages/s over all
//! senders, the `rate` of each run's spec); peers run the same ladder, so
//! their curves share it.

use crate::plot::{PlotSpec, Series};
use crate::report::{ResultFile, RunResult};

/// Why a ladder stops after `run`: its delivery p99 passed `limit_us`, or
/// loadgen did not verify it. `None`: go on.
#[must_use]
pub fn stop_reason(run: &RunResult, limit_us: u64) -> Option<String> {
    let p99 = run.figures.latency_us[1];
    if p99 > limit_us {
        Some(format!(
            "delivery p99 {:.1} ms passed {:.0} ms",
            p99 as f64 / 1000.0,
            limit_us as f64 / 1000.0
        ))
    } else if !run.figures.ok || run.loadgen_exit != 0 {
        Some(format!(
            "loadgen did not verify the step (exit {}, {} violations)",
            run.loadgen_exit, run.figures.violations
        ))
    } else {
        None
    }
}

/// The name of the system a result file measured, for legends:
/// `gateway (1 shard, fsync, pinned)`, `bun (pinned)`, `node`.
#[must_use]
pub fn system_name(file: &ResultFile) -> String {
    let mut parts = Vec::new();
    if let Some(r) = file.runs.first() {
        if !file.server.is_peer() {
            parts.push(match r.spec.gateway_shards {
                Some(1) => "1 shard".to_string(),
                Some(n) => format!("{n} shards"),
                None => "default shards".to_string(),
            });
            parts.push(r.spec.durability.clone());
        }
    }
    if file.pinned {
        parts.push("pinned".into());
    }
    if !file.settings.is_empty() {
        parts.push(crate::settings::describe(&file.settings));
    }
    if parts.is_empty() {
        file.server.to_string()
    } else {
        format!("{} ({})", file.server, parts.join(", "))
    }
}

fn points(file: &ResultFile, y: impl Fn(&RunResult) -> f64) -> Vec<[f64; 2]> {
    file.runs.iter().map(|r| [r.spec.rate, y(r)]).collect()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The charts of one result file's steps: `latency` (delivery p50, p99,
/// p99.9 in ms, log scale) and `deliveries` (delivered and offered
/// deliveries/s), both against the offered publish rate.
#[must_use]
pub fn step_plots(file: &ResultFile) -> Vec<(&'static str, PlotSpec)> {
    let system = system_name(file);
    let latency = PlotSpec {
        title: format!(
            "{}: delivery latency vs offered rate — {system}",
            file.scenario
        ),
        x_label: "offered publish rate (messages/s)".into(),
        y_label: "delivery latency (ms)".into(),
        log_y: true,
        series: [("p50", 0), ("p99", 1), ("p99.9", 2)]
            .into_iter()
            .map(|(name, i)| Series {
                name: name.into(),
                points: points(file, |r| ms(r.figures.latency_us[i])),
            })
            .collect(),
    };
    let deliveries = PlotSpec {
        title: format!("{}: deliveries/s vs offered rate — {system}", file.scenario),
        x_label: "offered publish rate (messages/s)".into(),
        y_label: "deliveries/s".into(),
        log_y: false,
        series: vec![
            Series {
                name: "delivered".into(),
                points: points(file, |r| r.figures.deliveries_per_s),
            },
            Series {
                name: "offered (rate × members)".into(),
                points: points(file, |r| r.spec.rate * r.spec.connections as f64),
            },
        ],
    };
    vec![("latency", latency), ("deliveries", deliveries)]
}

/// The charts comparing systems, one series per result file:
/// `latency-p99` (ms, log scale), `deliveries` (deliveries/s) and `memory`
/// (server KiB per connection), each against the offered publish rate.
#[must_use]
pub fn compare_plots(files: &[ResultFile]) -> Vec<(&'static str, PlotSpec)> {
    let scenario = files
        .first()
        .map_or_else(String::new, |f| f.scenario.clone());
    let per_system = |y: &dyn Fn(&RunResult) -> f64| -> Vec<Series> {
        files
            .iter()
            .map(|f| Series {
                name: system_name(f),
                points: points(f, y),
            })
            .collect()
    };
    vec![
        (
            "latency-p99",
            PlotSpec {
                title: format!("{scenario}: delivery p99 vs offered rate"),
                x_label: "offered publish rate (messages/s)".into(),
                y_label: "delivery p99 (ms)".into(),
                log_y: true,
                series: per_system(&|r| ms(r.figures.latency_us[1])),
            },
        ),
        (
            "deliveries",
            PlotSpec {
                title: format!("{scenario}: deliveries/s vs offered rate"),
                x_label: "offered publish rate (messages/s)".into(),
                y_label: "deliveries/s".into(),
                log_y: false,
                series: per_system(&|r| r.figures.deliveries_per_s),
            },
        ),
        (
            "memory",
            PlotSpec {
                title: format!("{scenario}: server memory per connection"),
                x_label: "offered publish rate (messages/s)".into(),
                y_label: "server RSS growth per connection (KiB)".into(),
                log_y: false,
                series: per_system(&|r| r.figures.mem_per_conn_bytes / 1024.0),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::Figures;
    use crate::peers::ServerKind;
    use crate::report::Machine;
    use crate::scenario::{plan, Options};

    fn stepped(server: ServerKind, p99s: &[u64]) -> ResultFile {
        let o = Options {
            quick: true,
            server,
            ..Options::default()
        };
        let specs = plan("room-fanout", &o).expect("plans");
        ResultFile {
            scenario: "room-fanout".into(),
            timestamp: 1,
            quick: true,
            server,
            machine: Machine::default(),
            binaries: vec![],
            settings: Default::default(),
            pinned: true,
            stepped: None,
            soak: None,
            runs: specs
                .into_iter()
                .zip(p99s)
                .map(|(spec, &p99)| RunResult {
                    figures: Figures {
                        connections: spec.connections as u64,
                        deliveries_per_s: spec.rate * spec.connections as f64,
                        latency_us: [p99 / 2, p99, p99 * 2, p99 * 3],
                        mem_per_conn_bytes: 10_240.0,
                        ok: true,
                        ..Figures::default()
                    },
                    spec,
                    loadgen: serde_json::json!({}),
                    loadgen_exit: 0,
                    server: Default::default(),
                    server_cpus: vec![],
                    pin_method: None,
                    server_metrics: Default::default(),
                    timeline: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_ladder_stops_past_the_p99_limit_or_an_unverified_step() {
        let f = stepped(ServerKind::Gateway, &[10_000, 60_000]);
        assert_eq!(stop_reason(&f.runs[0], 50_000), None);
        let why = stop_reason(&f.runs[1], 50_000).expect("stops");
        assert!(why.contains("60.0 ms passed 50 ms"), "{why}");
        let mut bad = f.runs[0].clone();
        bad.figures.ok = false;
        assert!(stop_reason(&bad, 50_000).is_some());
    }

    #[test]
    fn step_charts_plot_each_step_against_its_offered_rate() {
        let f = stepped(ServerKind::Gateway, &[10_000, 20_000, 60_000]);
        let plots = step_plots(&f);
        assert_eq!(plots[0].0, "latency");
        let lat = &plots[0].1;
        assert!(lat.log_y);
        assert_eq!(lat.series.len(), 3);
        assert_eq!(lat.series[1].name, "p99");
        assert_eq!(
            lat.series[1].points,
            vec![[25.0, 10.0], [100.0, 20.0], [400.0, 60.0]]
        );
        let del = &plots[1].1;
        assert_eq!(del.series[1].points[2], [400.0, 400_000.0]);
        assert!(lat
            .title
            .contains("gateway (default shards, fsync, pinned)"));
    }

    #[test]
    fn comparison_charts_have_one_series_per_system() {
        let files = [
            stepped(ServerKind::Gateway, &[10_000, 20_000, 60_000]),
            stepped(ServerKind::Bun, &[10_000, 70_000]),
        ];
        let plots = compare_plots(&files);
        let names: Vec<_> = plots.iter().map(|p| p.0).collect();
        assert_eq!(names, ["latency-p99", "deliveries", "memory"]);
        let lat = &plots[0].1;
        assert_eq!(lat.series[1].name, "bun (pinned)");
        assert_eq!(lat.series[1].points.len(), 2);
        assert_eq!(plots[2].1.series[0].points[0], [25.0, 10.0]);
        let svg = crate::plot::render_svg(lat);
        assert!(svg.contains("bun (pinned)"));
    }
}
