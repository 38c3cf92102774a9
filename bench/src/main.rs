//! `bench run <scenario> [...]`, `bench compare a.json b.json`, `bench plot`,
//! `bench plot-results`, `bench micro`; see the library docs
//! (`bench/src/lib.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bench::peers::{self, ServerKind};
use bench::plot::PlotSpec;
use bench::report::{self, ResultFile, Stepped};
use bench::scenario::{self, Options};
use clap::{Args, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "End-to-end benchmark scenarios for the gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: dm-latency, room-fanout (stepped), groups-durable,
    /// small-rooms, idle, connect-storm, resume-storm, slow-consumers, shards,
    /// soak (30 min without, then with abusers; --quick: 2 min each).
    Run(Box<RunArgs>),
    /// The peer servers of bench/peers.
    Peers {
        #[command(subcommand)]
        command: PeersCmd,
    },
    /// Ratios (b ÷ a) of the headline figures of two result files
    /// (`compare peer.json gateway.json`: ours ÷ peer).
    Compare {
        /// Baseline result JSON.
        a: PathBuf,
        /// Result JSON to compare with it.
        b: PathBuf,
    },
    /// Render a chart spec (JSON: title, x_label, y_label, log_y, series of
    /// name + [[x, y], …]) as SVG.
    Plot {
        /// The spec file.
        spec: PathBuf,
        /// The SVG to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Per-system curves from several (stepped) result files: delivery p99,
    /// deliveries/s and memory per connection vs offered rate, as SVG (and
    /// their specs) in a directory.
    PlotResults {
        /// Result files, one per system.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Hot-path micro-benchmarks (decode, encode, fan-out, store append):
    /// median ns/op, JSON and Markdown.
    Micro {
        /// Directory for the result JSON.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Fewer iterations and runs (seconds).
        #[arg(long)]
        quick: bool,
    },
    /// What a park/wake round trip between two threads costs: glommio
    /// executors, a glommio executor and a plain thread, plain threads,
    /// bare io_uring (eventfd or MSG_RING): CPU and wall per round trip.
    Wake {
        /// The CPUs of the two sides, `A,B` (`0,0`: one CPU).
        #[arg(long, default_value = "0,1")]
        cpus: String,
        /// Round trips per run.
        #[arg(long, default_value_t = 20_000)]
        round_trips: u64,
        /// Runs per case (after one warm-up run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Only these cases (comma-separated) [default: all].
        #[arg(long)]
        cases: Option<String>,
        /// Directory for the result JSON.
        #[arg(long, default_value = "results")]
        out: PathBuf,
    },
}

/// `bench run`'s arguments.
#[derive(Args)]
struct RunArgs {
    /// The scenario.
    scenario: String,
    /// Gateway shards [default: the gateway's, one per core]; `shards` runs 1 and 2.
    #[arg(long)]
    shards: Option<usize>,
    /// Gateway durability: fsync (acked = on disk) or buffered.
    #[arg(long, value_parser = ["fsync", "buffered"])]
    durability: Option<String>,
    /// Directory for the result JSON.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// CI-sized run (fewer connections, shorter).
    #[arg(long)]
    quick: bool,
    /// Override the scenario's connection count.
    #[arg(long)]
    connections: Option<usize>,
    /// Override the scenario's total send rate, messages/s (room-fanout:
    /// one run at this rate instead of the ladder).
    #[arg(long)]
    rate: Option<f64>,
    /// room-fanout and small-rooms: the publish rates to step through, messages/s
    /// (`5,10,20`); stops after the first step whose delivery p99 passes
    /// 50 ms [default: the scenario's ladder].
    #[arg(long)]
    steps: Option<String>,
    /// room-fanout and small-rooms: the ladder stops after the first step whose delivery
    /// p99 passes this, ms. On a 2-core host that also runs loadgen, one
    /// message to a 10,000-member room already takes ~10,000 socket writes
    /// (~100 ms of kernel time) for any server, so curves of large rooms
    /// need a higher limit.
    #[arg(long, default_value_t = scenario::STEP_P99_LIMIT_US / 1000)]
    stop_p99_ms: u64,
    /// A gateway config override, `KEY=VALUE` (a field of
    /// gateway/core/src/config.rs); repeatable. Gateway only.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Server on CPU 0, loadgen on CPU 1 (taskset, or sched_setaffinity).
    #[arg(long)]
    pin: bool,
    /// The audience tier (`join`'s `mode`) of the rooms' receivers:
    /// live, digest or counts (loadgen `--mode`). Gateway only.
    #[arg(long, value_parser = ["live", "digest", "counts"])]
    mode: Option<String>,
    /// loadgen's clients offer permessage-deflate (loadgen `--compress`;
    /// the gateway accepts it by default): compressed fan-out, its bytes
    /// in the B/delivery column. Gateway only.
    #[arg(long)]
    compress: bool,
    /// loadgen's run id (letters and digits, ≤ 12; the run's index is
    /// appended): runs with the same id send on the same schedule, so an
    /// A/B of two servers differs only in the server. Default: random.
    #[arg(long)]
    run_id: Option<String>,
    /// Override the scenario's send (idle: hold) duration, e.g. 5s.
    #[arg(long)]
    duration: Option<String>,
    /// The server to drive: the gateway, or an in-memory peer from
    /// bench/peers (node: Node `ws`; bun: Bun.serve) after `bench peers setup`.
    #[arg(long, default_value = "gateway", value_parser = ["gateway", "node", "bun"])]
    server: String,
    /// Gateway binary [default: target/release/gateway, built if missing].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// loadgen binary [default: target/release/loadgen, built if missing].
    #[arg(long)]
    loadgen_bin: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PeersCmd {
    /// `npm install` in bench/peers (ws and bun, pinned in its package.json).
    Setup,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(p: &Path) -> anyhow::Result<ResultFile> {
    let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
}

/// What ran as the server, for the result file.
fn server_binary(server: ServerKind, gateway: &std::path::Path) -> String {
    match server.peer_command(&peers::peers_dir()) {
        None => gateway.display().to_string(),
        Some((program, args)) => std::iter::once(program)
            .chain(args)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Writes `value` as `<out>/<prefix>-<timestamp>.json` and says so.
fn write_json(
    out: &Path,
    prefix: &str,
    timestamp: u64,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let path = out.join(format!("{prefix}-{timestamp}.json"));
    write_file(&path, &serde_json::to_string_pretty(value)?)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `<dir>/<stem>-<name>.svg` for each chart; returns the paths.
fn write_plots(
    dir: &Path,
    stem: &str,
    plots: &[(&str, PlotSpec)],
    with_specs: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (name, spec) in plots {
        let file = if stem.is_empty() {
            name.to_string()
        } else {
            format!("{stem}-{name}")
        };
        let svg = dir.join(format!("{file}.svg"));
        write_file(&svg, &bench::plot::render_svg(spec))?;
        if with_specs {
            write_file(
                &dir.join(format!("{file}.json")),
                &serde_json::to_string_pretty(spec)?,
            )?;
        }
        paths.push(svg);
    }
    Ok(paths)
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Plot { spec, out } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec: PlotSpec = serde_json::from_str(&text)
                .with_context(|| format!("parsing {} as a chart spec", spec.display()))?;
            write_file(&out, &bench::plot::render_svg(&spec))?;
            eprintln!("bench: wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::PlotResults { files, out } => {
            let files = files
                .iter()
                .map(|p| load(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for p in write_plots(&out, "", &bench::curves::compare_plots(&files), true)? {
                eprintln!("bench: wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Micro { out, quick } => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "bench: warning: a debug build of bench; for figures use \
                     `cargo run --release -p bench -- micro`"
                );
            }
            let results = bench::micro::run_all(quick)?;
            let file = bench::micro::MicroFile {
                timestamp: now_s(),
                quick,
                machine: bench::run::machine(),
                debug_build: cfg!(debug_assertions),
                results,
            };
            write_json(&out, "micro", file.timestamp, &file)?;
            print!("{}", bench::micro::markdown(&file.results));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Wake {
            cpus,
            round_trips,
            runs,
            cases,
            out,
        } => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "bench: warning: a debug build of bench; for figures use \
                     `cargo run --release -p bench -- wake`"
                );
            }
            let (a, b) = cpus
                .split_once(',')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .with_context(|| format!("--cpus {cpus:?}: expected A,B (CPU numbers)"))?;
            let o = bench::wake::WakeOptions {
                cpus: (a, b),
                round_trips: round_trips.max(1),
                runs: runs.max(1),
            };
            let names: Vec<String> = match cases {
                Some(c) => c.split(',').map(|s| s.trim().to_owned()).collect(),
                None => bench::wake::CASES.iter().map(|s| (*s).to_owned()).collect(),
            };
            let mut results = Vec::new();
            for name in &names {
                let r = bench::wake::run_case(name, &o)?;
                eprint!("{}", bench::wake::markdown(std::slice::from_ref(&r)));
                results.push(r);
            }
            let file = bench::wake::WakeFile {
                timestamp: now_s(),
                machine: bench::run::machine(),
                debug_build: cfg!(debug_assertions),
                results,
            };
            write_json(&out, "wake", file.timestamp, &file)?;
            print!("{}", bench::wake::markdown(&file.results));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Peers {
            command: PeersCmd::Setup,
        } => {
            peers::setup(&peers::peers_dir())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare { a, b } => {
            print!("{}", report::compare(&load(&a)?, &load(&b)?));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => {
            let RunArgs {
                scenario: name,
                shards,
                durability,
                out,
                quick,
                connections,
                rate,
                steps,
                stop_p99_ms,
                set,
                pin,
                mode,
                compress,
                run_id,
                duration,
                server,
                gateway_bin,
                loadgen_bin,
            } = *args;
            let server = ServerKind::parse(&server)?;
            let opts = Options {
                server,
                quick,
                shards,
                durability,
                connections,
                rate,
                duration,
                settings: bench::settings::parse_all(&set)?,
                pin,
                steps: steps.as_deref().map(scenario::parse_steps).transpose()?,
                mode,
                compress,
                run_id,
            };
            let specs = scenario::plan(&name, &opts)?;
            let stepped = scenario::is_stepped(&name, &opts);
            let (gw, lg) = bench::run::locate_binaries(gateway_bin, loadgen_bin)?;
            let timestamp = now_s();
            let mut runs = Vec::new();
            let mut stopped = None;
            let mut failure = None;
            let p99_limit_us = stop_p99_ms.saturating_mul(1000);
            for spec in &specs {
                match bench::run::run_one(&gw, &lg, spec) {
                    Ok(r) => {
                        let reason = stepped
                            .then(|| bench::curves::stop_reason(&r, p99_limit_us))
                            .flatten();
                        runs.push(r);
                        if let Some(reason) = reason {
                            eprintln!("bench: {}: {reason}; the ladder stops here", spec.label);
                            stopped = Some((spec.label.clone(), reason));
                            break;
                        }
                    }
                    // Keep the steps already run: write them, then fail.
                    Err(e) if !runs.is_empty() => {
                        failure = Some(e.context(format!("run {}", spec.label)));
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let file = ResultFile {
                scenario: name.clone(),
                timestamp,
                quick,
                server,
                machine: bench::run::machine(),
                binaries: vec![server_binary(server, &gw), lg.display().to_string()],
                settings: opts.settings.clone(),
                pinned: pin,
                stepped: stepped.then(|| Stepped {
                    ladder: specs.iter().map(|s| s.rate).collect(),
                    p99_limit_us,
                    stopped_after: stopped.as_ref().map(|s| s.0.clone()),
                    reason: stopped.as_ref().map(|s| s.1.clone()),
                }),
                soak: (name == "soak").then(|| bench::soak::summarize(&runs)),
                runs,
            };
            let file_name = peers::result_file_name(&name, server, timestamp);
            let path = out.join(&file_name);
            write_file(&path, &serde_json::to_string_pretty(&file)?)?;
            eprintln!("bench: wrote {}", path.display());
            if stepped {
                let stem = file_name.trim_end_matches(".json");
                for p in write_plots(&out, stem, &bench::curves::step_plots(&file), false)? {
                    eprintln!("bench: wrote {}", p.display());
                }
            }
            if file.soak.is_some() {
                let stem = file_name.trim_end_matches(".json");
                for p in write_plots(&out, stem, &bench::soak::plots(&file), false)? {
                    eprintln!("bench: wrote {}", p.display());
                }
            }
            print!("{}", report::markdown_header());
            for r in &file.runs {
                print!("{}", report::markdown_row(&name, r));
            }
            for r in &file.runs {
                if let Some(n) = report::notes(&name, r) {
                    println!("\n{n}");
                }
            }
            if let Some(s) = &file.soak {
                println!("\n{}", bench::soak::markdown(s));
            }
            if let Some(s) = &file.stepped {
                match (&s.stopped_after, &s.reason) {
                    (Some(label), Some(reason)) => {
                        println!("\nstepped: stopped after {label}: {reason}");
                    }
                    _ => println!(
                        "\nstepped: every step stayed within p99 {} ms",
                        s.p99_limit_us / 1000
                    ),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            // A stepped run is expected to end on a step past the limit;
            // it fails only when a step was not verified.
            let all_ok = file
                .runs
                .iter()
                .all(|r| r.figures.ok && r.loadgen_exit == 0);
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
