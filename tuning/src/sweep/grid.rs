//! The grid: which tunables take which values, the points to run, and the
//! `bench run` arguments of each point. No I/O.

use std::fmt;

use serde::Serialize;

use super::SweepError;

/// The value written for "leave this tunable at the gateway's default" in
/// `--grid KEY=default,V2,...`.
pub const DEFAULT_TOKEN: &str = "default";

/// Scenarios a sweep refuses: `shards` runs two gateways itself (sweep
/// `room-fanout` with `--grid shards=1,2` instead).
const REFUSED_SCENARIOS: &[&str] = &["shards"];

/// One value of an axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// Not passed: the gateway's own default.
    Default,
    /// Passed verbatim (`--set KEY=VALUE`, `--shards N`, `--durability D`).
    Value(String),
}

/// One tunable and the values a sweep gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Axis {
    /// Gateway config field (`commit_max_messages`, `shards`, ...).
    pub key: String,
    /// Values in the order given, without duplicates.
    pub values: Vec<Setting>,
}

/// The tunables swept, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grid {
    /// One axis per tunable.
    pub axes: Vec<Axis>,
}

/// How points are formed from the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The gateway's defaults, then each axis's non-default values one at a
    /// time with every other tunable at its default: 1 + Σ values runs.
    OneAtATime,
    /// Every combination (Π values runs; `default` is one value of each axis
    /// in the default grid).
    Full,
}

/// One grid point: the tunables it sets, in axis order; every other tunable
/// is at the gateway's default. Serialized as a JSON object in that order
/// (`{}` for the defaults), the shape of bench's own `settings`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// `(key, value)` pairs set at this point. Empty: the defaults.
    pub settings: Vec<(String, String)>,
}

impl Point {
    /// The value of `key` at this point, if set.
    #[must_use]
    pub fn value(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for the point that sets nothing (the gateway's defaults).
    #[must_use]
    pub fn is_defaults(&self) -> bool {
        self.settings.is_empty()
    }
}

impl Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(self.settings.len()))?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl fmt::Display for Point {
    /// `defaults`, or `key=value key=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.settings.is_empty() {
            return f.write_str("defaults");
        }
        for (i, (k, v)) in self.settings.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// The default grid, around the gateway's defaults (`gateway/core/src/config.rs`;
/// each default is named beside its axis). `cores` is this host's core count
/// (the gateway's default shard count). One value at a time this is 11 runs
/// on a 2-core host; [`Mode::Full`] adds `default` to every axis.
#[must_use]
pub fn default_grid(cores: usize) -> Grid {
    // shards (default: one per core): one shard, and half the cores.
    let mut shards: Vec<usize> = vec![1, cores / 2];
    shards.retain(|&n| n >= 1 && n < cores);
    shards.dedup();
    let axes: [(&str, Vec<String>); 6] = [
        ("shards", shards.iter().map(ToString::to_string).collect()),
        // default 4,096 messages per store commit
        ("commit_max_messages", strings(&["64", "1024", "16384"])),
        // default 8 MiB per store commit
        ("commit_max_bytes", strings(&["262144"])),
        // default 256 KiB per connection
        ("outbox_budget_bytes", strings(&["65536", "1048576"])),
        // default 0: the kernel's autotuning
        ("socket_send_buffer_bytes", strings(&["65536", "262144"])),
        // default 64 KiB per shard
        ("read_chunk_bytes", strings(&["16384"])),
    ];
    Grid {
        axes: axes
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(key, values)| Axis {
                key: key.to_string(),
                values: values.into_iter().map(Setting::Value).collect(),
            })
            .collect(),
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

impl Grid {
    /// Parses `--grid KEY=V1,V2,...` arguments (at least one). Values are
    /// taken verbatim except `default` (leave the gateway's default) and
    /// sizes with a binary suffix (`64KiB`, `1MiB`, `2GiB`: bytes).
    pub fn parse(args: &[String]) -> Result<Grid, SweepError> {
        let mut axes: Vec<Axis> = Vec::new();
        for arg in args {
            let bad = |reason: &str| SweepError::Grid {
                arg: arg.clone(),
                reason: reason.to_string(),
            };
            let (key, values) = arg
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=V1,V2,..."))?;
            let key = key.trim();
            let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                return Err(bad(
                    "KEY must be a gateway config field (lowercase, digits, _)",
                ));
            }
            if axes.iter().any(|a| a.key == key) {
                return Err(bad("KEY given twice; list all its values in one --grid"));
            }
            let mut settings: Vec<Setting> = Vec::new();
            for raw in values.split(',') {
                let raw = raw.trim();
                if raw.is_empty() || raw.contains(char::is_whitespace) || raw.contains('=') {
                    return Err(bad("every value must be non-empty, without spaces or `=`"));
                }
                let setting = if raw == DEFAULT_TOKEN {
                    Setting::Default
                } else {
                    let value = expand_size(raw);
                    check_value(key, &value).map_err(|reason| bad(&reason))?;
                    Setting::Value(value)
                };
                if !settings.contains(&setting) {
                    settings.push(setting);
                }
            }
            axes.push(Axis {
                key: key.to_string(),
                values: settings,
            });
        }
        if axes.is_empty() {
            return Err(SweepError::Grid {
                arg: String::new(),
                reason: "no axis".to_string(),
            });
        }
        Ok(Grid { axes })
    }

    /// The grid for [`Mode::Full`] when no `--grid` was given: the default
    /// grid with `default` first on every axis.
    #[must_use]
    pub fn with_defaults_included(mut self) -> Grid {
        for axis in &mut self.axes {
            if !axis.values.contains(&Setting::Default) {
                axis.values.insert(0, Setting::Default);
            }
        }
        self
    }

    /// The points to run. [`Mode::OneAtATime`]: the defaults first, then
    /// each non-default value of each axis alone. [`Mode::Full`]: the
    /// cartesian product, first axis slowest.
    #[must_use]
    pub fn points(&self, mode: Mode) -> Vec<Point> {
        match mode {
            Mode::OneAtATime => {
                let mut points = vec![Point::default()];
                for axis in &self.axes {
                    for setting in &axis.values {
                        if let Setting::Value(v) = setting {
                            points.push(Point {
                                settings: vec![(axis.key.clone(), v.clone())],
                            });
                        }
                    }
                }
                points
            }
            Mode::Full => {
                let mut points = vec![Point::default()];
                for axis in &self.axes {
                    let mut next = Vec::with_capacity(points.len() * axis.values.len());
                    for point in &points {
                        for setting in &axis.values {
                            let mut p = point.clone();
                            if let Setting::Value(v) = setting {
                                p.settings.push((axis.key.clone(), v.clone()));
                            }
                            next.push(p);
                        }
                    }
                    points = next;
                }
                points
            }
        }
    }

    /// True when an axis sets `key`.
    #[must_use]
    pub fn has(&self, key: &str) -> bool {
        self.axes.iter().any(|a| a.key == key)
    }
}

/// `64KiB` → `65536`; anything else unchanged.
fn expand_size(raw: &str) -> String {
    for (suffix, scale) in [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)] {
        if let Some(n) = raw.strip_suffix(suffix).and_then(|n| n.parse::<u64>().ok()) {
            if let Some(bytes) = n.checked_mul(scale) {
                return bytes.to_string();
            }
        }
    }
    raw.to_string()
}

/// The checks the sweep can make itself; the gateway validates the rest
/// (an unknown field or a value out of range fails that point's run).
fn check_value(key: &str, value: &str) -> Result<(), String> {
    match key {
        "shards" if !value.parse::<usize>().is_ok_and(|n| n >= 1) => {
            Err(format!("shards must be a positive integer, not {value:?}"))
        }
        "durability" if !matches!(value, "fsync" | "buffered") => Err(format!(
            "durability must be fsync or buffered, not {value:?}"
        )),
        _ => Ok(()),
    }
}

/// Options passed to every `bench run` of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BenchOptions {
    /// `--quick`: CI-sized runs.
    pub quick: bool,
    /// `--durability` for every point (not with a `durability` axis).
    pub durability: Option<String>,
    /// `--connections` override.
    pub connections: Option<usize>,
    /// `--rate` override, messages/s.
    pub rate: Option<f64>,
    /// `--duration` override (`5s`).
    pub duration: Option<String>,
    /// `--steps` (`room-fanout`: the ladder of rates, `25,100,400`).
    pub steps: Option<String>,
}

/// Refuses scenarios and option combinations a sweep cannot run.
pub fn check_plan(scenario: &str, grid: &Grid, opts: &BenchOptions) -> Result<(), SweepError> {
    if REFUSED_SCENARIOS.contains(&scenario) {
        return Err(SweepError::Scenario(format!(
            "`{scenario}` runs two gateways itself; sweep `room-fanout` with --grid shards=1,2"
        )));
    }
    if opts.durability.is_some() && grid.has("durability") {
        return Err(SweepError::Scenario(
            "--durability and a durability axis both given; use one".to_string(),
        ));
    }
    Ok(())
}

/// `bench run` arguments for one point, results into `out_dir`. `shards`
/// and `durability` map to bench's own flags, every other key to `--set`.
#[must_use]
pub fn bench_args(
    scenario: &str,
    point: &Point,
    opts: &BenchOptions,
    out_dir: &str,
) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        scenario.to_string(),
        "--out".to_string(),
        out_dir.to_string(),
    ];
    if opts.quick {
        a.push("--quick".to_string());
    }
    if let Some(d) = &opts.durability {
        a.extend(["--durability".to_string(), d.clone()]);
    }
    if let Some(c) = opts.connections {
        a.extend(["--connections".to_string(), c.to_string()]);
    }
    if let Some(r) = opts.rate {
        a.extend(["--rate".to_string(), r.to_string()]);
    }
    if let Some(d) = &opts.duration {
        a.extend(["--duration".to_string(), d.clone()]);
    }
    if let Some(s) = &opts.steps {
        a.extend(["--steps".to_string(), s.clone()]);
    }
    for (k, v) in &point.settings {
        match k.as_str() {
            "shards" => a.extend(["--shards".to_string(), v.clone()]),
            "durability" => a.extend(["--durability".to_string(), v.clone()]),
            _ => a.extend(["--set".to_string(), format!("{k}={v}")]),
        }
    }
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn grid(args: &[&str]) -> Result<Grid, SweepError> {
        Grid::parse(&args.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    fn labels(points: &[Point]) -> Vec<String> {
        points.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn grid_values_keep_order_drop_duplicates_and_expand_sizes() {
        let g = grid(&["outbox_budget_bytes=64KiB,default,1MiB,65536", "shards=1,2"]).unwrap();
        assert_eq!(g.axes.len(), 2);
        assert_eq!(
            g.axes[0].values,
            [
                Setting::Value("65536".into()),
                Setting::Default,
                Setting::Value("1048576".into())
            ]
        );
        assert_eq!(g.axes[1].key, "shards");
    }

    #[test]
    fn malformed_grid_arguments_are_refused_with_a_reason() {
        for bad in [
            "commit_max_messages",
            "Commit=1",
            "commit_max_messages=",
            "commit_max_messages=1,,2",
            "shards=0",
            "shards=two",
            "durability=sometimes",
            "log=a b",
        ] {
            let e = grid(&[bad]).unwrap_err();
            assert!(matches!(e, SweepError::Grid { .. }), "{bad}: {e}");
        }
        let e = grid(&["shards=1", "shards=2"]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(grid(&[]).is_err());
    }

    #[test]
    fn one_at_a_time_runs_defaults_then_each_value_alone() {
        let g = grid(&["shards=1,2", "commit_max_messages=default,64"]).unwrap();
        assert_eq!(
            labels(&g.points(Mode::OneAtATime)),
            ["defaults", "shards=1", "shards=2", "commit_max_messages=64"]
        );
    }

    #[test]
    fn full_mode_runs_the_product_with_default_as_a_value() {
        let g = grid(&["shards=1,2", "commit_max_messages=default,64"]).unwrap();
        assert_eq!(
            labels(&g.points(Mode::Full)),
            [
                "shards=1",
                "shards=1 commit_max_messages=64",
                "shards=2",
                "shards=2 commit_max_messages=64"
            ]
        );
    }

    #[test]
    fn default_grid_stays_small_one_at_a_time_and_omits_the_default_shard_count() {
        let g = default_grid(2);
        assert_eq!(g.axes[0].key, "shards");
        assert_eq!(g.axes[0].values, [Setting::Value("1".into())]);
        assert_eq!(g.points(Mode::OneAtATime).len(), 11);
        assert!(!default_grid(1).has("shards"));
        let eight = default_grid(8);
        assert_eq!(
            eight.axes[0].values,
            [Setting::Value("1".into()), Setting::Value("4".into())]
        );
        let full = default_grid(2).with_defaults_included();
        assert_eq!(full.points(Mode::Full).len(), 2 * 4 * 2 * 3 * 3 * 2);
        assert!(full.points(Mode::Full).contains(&Point::default()));
    }

    #[test]
    fn a_point_serializes_as_an_object_in_axis_order() {
        let p = Point {
            settings: vec![("shards".into(), "1".into()), ("a".into(), "2".into())],
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"shards":"1","a":"2"}"#
        );
        assert_eq!(serde_json::to_string(&Point::default()).unwrap(), "{}");
    }

    #[test]
    fn shards_and_durability_use_bench_flags_and_the_rest_use_set() {
        let point = Point {
            settings: vec![
                ("shards".into(), "1".into()),
                ("durability".into(), "buffered".into()),
                ("commit_max_messages".into(), "64".into()),
            ],
        };
        let opts = BenchOptions {
            quick: true,
            rate: Some(100.0),
            ..BenchOptions::default()
        };
        assert_eq!(
            bench_args("dm-latency", &point, &opts, "out/p01").join(" "),
            "run dm-latency --out out/p01 --quick --rate 100 --shards 1 \
             --durability buffered --set commit_max_messages=64"
        );
    }

    #[test]
    fn sweeping_the_shards_scenario_or_durability_twice_is_refused() {
        let g = grid(&["durability=fsync,buffered"]).unwrap();
        let opts = BenchOptions {
            durability: Some("fsync".into()),
            ..BenchOptions::default()
        };
        assert!(check_plan("room-fanout", &g, &opts).is_err());
        assert!(check_plan("shards", &default_grid(2), &BenchOptions::default()).is_err());
        assert!(check_plan("room-fanout", &default_grid(2), &BenchOptions::default()).is_ok());
    }
}
