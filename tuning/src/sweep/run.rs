//! The I/O side of a sweep: runs `bench` once per point, reads its result
//! files, writes the sweep's files and calls `bench plot`. Everything it
//! decides is in the sans-IO modules beside it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::grid::{bench_args, check_plan, BenchOptions, Grid, Mode, Point};
use super::outcome::{combine, read_result, Outcome};
use super::recommend::{ms, recommend, Criteria, Recommendation, Row};
use super::table::{markdown, markdown_file, plot_spec, toml, verdict, SweepFile, QUICK_NOTE};
use super::SweepError;

/// What `tuning sweep` was asked to do.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Bench scenario (`dm-latency`, `room-fanout`, ...).
    pub scenario: String,
    /// Tunables and values.
    pub grid: Grid,
    /// One at a time or every combination.
    pub mode: Mode,
    /// Passed to every `bench run`.
    pub options: BenchOptions,
    /// What a recommendation must meet.
    pub criteria: Criteria,
    /// Runs per point (at least 1); the median is kept.
    pub repeat: usize,
    /// Directory for the sweep's files (and one sub-directory of bench
    /// results per sweep).
    pub out: PathBuf,
    /// The `bench` binary.
    pub bench_bin: PathBuf,
}

/// The bench binary beside this one (same cargo profile), else the other
/// profile's; the first candidate when none exists (the run then says how to
/// build it).
#[must_use]
pub fn default_bench_bin() -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let candidates = [
        dir.join("bench"),
        dir.join("../release/bench"),
        dir.join("../debug/bench"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

impl Sweep {
    /// The command line of each point, results under the directory a sweep
    /// started at `timestamp` would use; nothing runs.
    pub fn dry_run(&self, timestamp: u64) -> Result<Vec<String>, SweepError> {
        check_plan(&self.scenario, &self.grid, &self.options)?;
        let dir = self.points_dir(timestamp);
        let mut lines = Vec::new();
        for (i, p) in self.grid.points(self.mode).iter().enumerate() {
            for out in self.repeat_dirs(&dir.join(point_dir_name(i + 1))) {
                lines.push(
                    std::iter::once(self.bench_bin.display().to_string())
                        .chain(bench_args(
                            &self.scenario,
                            p,
                            &self.options,
                            &out.display().to_string(),
                        ))
                        .map(|a| shell_quote(&a))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
        Ok(lines)
    }

    /// Runs every point, prints the table, the verdict and the TOML lines,
    /// and writes `sweep-<scenario>-<timestamp>.{json,md,plot.json,svg}`.
    pub fn run(&self) -> Result<SweepFile, SweepError> {
        check_plan(&self.scenario, &self.grid, &self.options)?;
        if !self.bench_bin.is_file() {
            return Err(SweepError::BenchMissing(self.bench_bin.clone()));
        }
        let timestamp = unix_now();
        let points = self.grid.points(self.mode);
        let dir = self.points_dir(timestamp);
        create_dir(&dir)?;
        eprintln!(
            "tuning sweep {}: {} points × {} ({}), bench results under {}",
            self.scenario,
            points.len(),
            self.repeat.max(1),
            match self.mode {
                Mode::OneAtATime => "one tunable at a time",
                Mode::Full => "every combination",
            },
            dir.display()
        );
        let started = Instant::now();
        let mut rows = Vec::with_capacity(points.len());
        for (i, point) in points.iter().enumerate() {
            let number = i + 1;
            eprint!("[{number}/{}] {point} ... ", points.len());
            let t = Instant::now();
            let mut outcomes = Vec::new();
            let mut result_files = Vec::new();
            for out in self.repeat_dirs(&dir.join(point_dir_name(number))) {
                let (outcome, file) = self.run_point(point, &out);
                outcomes.push(outcome);
                result_files.extend(file);
            }
            let outcome = combine(outcomes);
            eprintln!(
                "{} in {:.0} s{}",
                progress(&outcome),
                t.elapsed().as_secs_f64(),
                eta(started.elapsed(), number, points.len())
            );
            rows.push(Row {
                number,
                point: point.clone(),
                outcome,
                result_files,
            });
        }
        let recommendation = recommend(&rows, &self.criteria);
        let file = SweepFile {
            scenario: self.scenario.clone(),
            timestamp,
            mode: self.mode,
            grid: self.grid.clone(),
            bench_options: self.options.clone(),
            bench_bin: self.bench_bin.display().to_string(),
            criteria: self.criteria,
            repeat: self.repeat.max(1),
            verdict: verdict(&rows, &self.criteria, &recommendation),
            toml: toml(&rows, &recommendation),
            recommendation,
            rows,
        };
        self.write_and_print(&file)?;
        Ok(file)
    }

    /// `<out>/sweep-<scenario>-<timestamp>/`: one sub-directory per point.
    fn points_dir(&self, timestamp: u64) -> PathBuf {
        self.out.join(self.stem(timestamp))
    }

    fn stem(&self, timestamp: u64) -> String {
        format!("sweep-{}-{timestamp}", self.scenario)
    }

    /// The directories of a point's repeats: the point's own for one run,
    /// `r1`, `r2`, ... inside it for more.
    fn repeat_dirs(&self, point_dir: &Path) -> Vec<PathBuf> {
        match self.repeat {
            0 | 1 => vec![point_dir.to_path_buf()],
            n => (1..=n).map(|k| point_dir.join(format!("r{k}"))).collect(),
        }
    }

    /// One `bench run` into its own directory (bench names result files by
    /// the second, so points never share one), its output to `bench.log`.
    fn run_point(&self, point: &Point, dir: &Path) -> (Outcome, Option<String>) {
        if let Err(e) = create_dir(dir) {
            return (Outcome::failed(e.to_string()), None);
        }
        let log_path = dir.join("bench.log");
        let log = match File::create(&log_path) {
            Ok(f) => f,
            Err(e) => {
                return (
                    Outcome::failed(format!("{}: {e}", log_path.display())),
                    None,
                )
            }
        };
        let stderr = match log.try_clone() {
            Ok(f) => f,
            Err(e) => {
                return (
                    Outcome::failed(format!("{}: {e}", log_path.display())),
                    None,
                )
            }
        };
        let args = bench_args(
            &self.scenario,
            point,
            &self.options,
            &dir.display().to_string(),
        );
        let status = Command::new(&self.bench_bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .status();
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return (
                    Outcome::failed(format!("cannot run {}: {e}", self.bench_bin.display())),
                    None,
                )
            }
        };
        // bench exits 1 when a run was not ok, and still writes its file; on
        // an error (2) it may have written the steps before it, but a point
        // whose gateway or bench failed midway is not one to recommend.
        let result = newest_result(dir, &self.scenario);
        if !matches!(status.code(), Some(0 | 1)) {
            return (
                Outcome::failed(format!(
                    "bench failed ({status}): {} (see {})",
                    last_line(&log_path),
                    log_path.display()
                )),
                result.map(|p| p.display().to_string()),
            );
        }
        let Some(result) = result else {
            return (
                Outcome::failed(format!(
                    "bench failed ({status}) and wrote no result: {} (see {})",
                    last_line(&log_path),
                    log_path.display()
                )),
                None,
            );
        };
        let outcome = match std::fs::read_to_string(&result) {
            Ok(text) => read_result(&text, point, self.criteria.p99_budget_us),
            Err(e) => Outcome::failed(format!("{}: {e}", result.display())),
        };
        (outcome, Some(result.display().to_string()))
    }

    fn write_and_print(&self, f: &SweepFile) -> Result<(), SweepError> {
        let stem = self.out.join(self.stem(f.timestamp));
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
        let json_path = with("json");
        write(&json_path, &to_json(f)?)?;
        let spec_path = with("plot.json");
        write(
            &spec_path,
            &to_json(&plot_spec(&f.scenario, &f.rows, &f.criteria))?,
        )?;
        let svg_path = with("svg");
        let plot = self.plot(&spec_path, &svg_path);
        let svg_name = svg_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let md_path = with("md");
        write(
            &md_path,
            &markdown_file(f, plot.is_ok().then_some(svg_name.as_deref()).flatten()),
        )?;

        println!();
        print!("{}", markdown(&f.rows, &f.criteria, &f.recommendation));
        println!();
        println!("{}", f.verdict);
        if f.bench_options.quick {
            println!("{QUICK_NOTE}");
        }
        if let Some(toml) = &f.toml {
            println!();
            println!("# gateway config (--config FILE):");
            print!("{toml}");
        }
        println!();
        println!("wrote {}", json_path.display());
        println!("wrote {}", md_path.display());
        match plot {
            Ok(()) => println!("wrote {}", svg_path.display()),
            Err(why) => println!(
                "plot: not drawn ({why}); the table stands, the spec is {}",
                spec_path.display()
            ),
        }
        Ok(())
    }

    /// `bench plot SPEC --out SVG`; the reason when it did not work.
    fn plot(&self, spec: &Path, svg: &Path) -> Result<(), String> {
        let out = Command::new(&self.bench_bin)
            .arg("plot")
            .arg(spec)
            .arg("--out")
            .arg(svg)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bench_bin.display()))?;
        if out.status.success() && svg.is_file() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(format!("bench plot {}: {first}", out.status))
        }
    }
}

/// Seconds since the epoch (names the sweep's files, as bench names its own).
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `01`, `02`, ... (sorts in order).
fn point_dir_name(number: usize) -> String {
    format!("{number:02}")
}

fn progress(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Measured(m) => format!(
            "{:.0} deliveries/s, {:.0} /CPU-s{}, p99 {:.1} ms, {}",
            m.deliveries_per_s,
            m.deliveries_per_cpu_s,
            if m.repeats > 1 {
                format!(
                    " (median of {}, spread {:.0} %)",
                    m.repeats,
                    m.spread * 100.0
                )
            } else {
                String::new()
            },
            ms(m.p99_us),
            if m.ok { "ok" } else { "NOT ok" }
        ),
        Outcome::Failed { reason } => format!("failed ({reason})"),
    }
}

fn eta(elapsed: Duration, done: usize, total: usize) -> String {
    if done >= total || done == 0 {
        return String::new();
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    format!(", about {:.0} s to go", left)
}

/// The most recently modified `<scenario>-*.json` in `dir` (bench's result
/// file, not one of its plots).
fn newest_result(dir: &Path, scenario: &str) -> Option<PathBuf> {
    let prefix = format!("{scenario}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .max_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH)
        })
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().replace('|', "/"))
        })
        .unwrap_or_else(|| "no output".to_string())
}

fn create_dir(dir: &Path) -> Result<(), SweepError> {
    std::fs::create_dir_all(dir).map_err(|source| SweepError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), SweepError> {
    std::fs::write(path, text).map_err(|source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, SweepError> {
    serde_json::to_string_pretty(v).map_err(|e| SweepError::Encode(e.to_string()))
}

/// Single quotes around an argument a shell would split or expand.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// True when the recommendation names a point (the CLI's exit status).
#[must_use]
pub fn recommended(f: &SweepFile) -> bool {
    !matches!(f.recommendation, Recommendation::NoneQualifies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_commands_put_each_point_in_its_own_directory() {
        let sweep = Sweep {
            scenario: "dm-latency".into(),
            grid: Grid::parse(&["commit_max_messages=64".to_string()]).unwrap_or_else(|e| {
                panic!("{e}");
            }),
            mode: Mode::OneAtATime,
            options: BenchOptions {
                quick: true,
                ..BenchOptions::default()
            },
            criteria: Criteria {
                p99_budget_us: 50_000,
                min_gain: 0.05,
            },
            repeat: 1,
            out: PathBuf::from("results"),
            bench_bin: PathBuf::from("target/release/bench"),
        };
        let lines = sweep.dry_run(7).unwrap_or_default();
        assert_eq!(
            lines,
            [
                "target/release/bench run dm-latency --out results/sweep-dm-latency-7/01 --quick",
                "target/release/bench run dm-latency --out results/sweep-dm-latency-7/02 --quick \
                 --set commit_max_messages=64"
            ]
        );
    }

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("--set"), "--set");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
