//! `tuning`: can this host hold N connections, and what must change?
//!
//! - `tuning check --connections N [--shards S] [--json]`: one line per
//!   setting (ok / info / warn / short, found vs required, fix); exit status
//!   0 when nothing is short, 1 otherwise.
//! - `tuning plan --connections N [--json]`: the sysctls `apply` would write
//!   and the steps only an operator can take.
//! - `tuning apply --connections N [--yes]`: a dry run unless `--yes`; with
//!   it, writes the planned sysctls through `/proc/sys`, then checks again.
//!   Exit status 1 when a write failed.
//! - `tuning sweep <scenario> [--grid KEY=V1,V2,...]... [--full] [--quick]
//!   [--repeat N] [--dry-run]`: runs `bench run <scenario>` per grid point, prints a
//!   table, writes `sweep-<scenario>-<timestamp>.{json,md,svg}` and
//!   recommends settings as TOML lines. Exit status 1 when no point
//!   qualifies.
//!
//! Exit status 2: bad arguments (clap, a grid), output that could not be
//! encoded or written, or a missing bench binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tuning::costs::{
    DEFAULT_LISTEN_BACKLOG, DEFAULT_RESERVED_FDS, GATEWAY_BYTES_PER_IDLE_CONNECTION,
};
use tuning::sweep::{self, BenchOptions, Criteria, Grid, Sweep};
use tuning::{apply, plan, read_host, HostPaths, HostReadings, Mode, Report, Requirements};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Check this host against a connection target, plan the changes, apply them.
#[derive(Parser, Debug)]
#[command(name = "tuning", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check whether this host can hold the target; exit 1 when it cannot.
    Check {
        #[command(flatten)]
        target: Target,
        /// Print the report as JSON (readings, items, CPU plan, capacity).
        #[arg(long)]
        json: bool,
    },
    /// Print the changes the target needs: sysctls `apply` can write, and
    /// what an operator must do.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the planned sysctls through /proc/sys (a dry run unless --yes).
    Apply {
        #[command(flatten)]
        target: Target,
        /// Really write; without it nothing is changed.
        #[arg(long)]
        yes: bool,
    },
    /// Run a bench scenario over a grid of gateway tunables; print a table,
    /// write it with a plot, and recommend settings.
    Sweep(SweepArgs),
}

/// `tuning sweep`. Default grid (one tunable at a time around the
/// defaults): shards 1 and half the cores; commit_max_messages 64, 1024,
/// 16384; commit_max_bytes 256 KiB; outbox_budget_bytes 64 KiB, 1 MiB;
/// socket_send_buffer_bytes 64 KiB, 256 KiB; read_chunk_bytes 16 KiB.
#[derive(Args, Debug)]
struct SweepArgs {
    /// Bench scenario: dm-latency, room-fanout (a ladder of rates unless
    /// --rate), groups-durable, idle, connect-storm, resume-storm,
    /// slow-consumers.
    scenario: String,
    /// A gateway config field and its values, e.g.
    /// `commit_max_messages=64,1024` or `outbox_budget_bytes=64KiB,default`
    /// (`default`: the gateway's own). Repeat per field; replaces the
    /// default grid. `shards` and `durability` go to bench's flags, the
    /// rest to `--set`.
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    grid: Vec<String>,
    /// Run every combination of the grid, not one tunable at a time.
    #[arg(long)]
    full: bool,
    /// CI-sized bench runs (seconds each).
    #[arg(long)]
    quick: bool,
    /// Directory for the sweep's files and its bench results.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// The bench binary [default: beside this one, else target/release/bench].
    #[arg(long)]
    bench_bin: Option<PathBuf>,
    /// Runs per point; the median run (by deliveries per CPU-second) is
    /// kept and the spread shown.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=20))]
    repeat: u16,
    /// Print the bench commands; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Largest delivery p99 a recommended point may have, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    p99_budget_ms: f64,
    /// Smallest gain over the defaults, in percent, worth changing a setting
    /// for (one run per point is noisy).
    #[arg(long, default_value_t = 5.0)]
    min_gain_percent: f64,
    /// Gateway durability for every point (or sweep it: --grid durability=fsync,buffered).
    #[arg(long, value_parser = ["fsync", "buffered"])]
    durability: Option<String>,
    /// Override the scenario's connection count.
    #[arg(long)]
    connections: Option<usize>,
    /// Override the scenario's total send rate, messages/s.
    #[arg(long)]
    rate: Option<f64>,
    /// Override the scenario's send duration, e.g. 5s.
    #[arg(long)]
    duration: Option<String>,
    /// room-fanout: the ladder of publish rates, messages/s (`25,100,400`);
    /// each point is summarised by the highest step it sustained.
    #[arg(long)]
    steps: Option<String>,
}

/// What the host should hold.
#[derive(Args, Debug)]
struct Target {
    /// Connections to hold at once.
    #[arg(long)]
    connections: u64,
    /// Shards (one executor per core). Default: one per core of the CPU plan.
    #[arg(long)]
    shards: Option<usize>,
    /// Descriptors needed beyond one per connection (gateway `reserved_fds`).
    #[arg(long, default_value_t = DEFAULT_RESERVED_FDS)]
    reserved_fds: u64,
    /// Gateway memory per idle connection in bytes (default: an estimate;
    /// pass the bench's measured figure).
    #[arg(long, default_value_t = GATEWAY_BYTES_PER_IDLE_CONNECTION)]
    per_connection_bytes: u64,
    /// The gateway's `listen_backlog` (`net.core.somaxconn` must reach it).
    #[arg(long, default_value_t = DEFAULT_LISTEN_BACKLOG)]
    listen_backlog: u64,
}

impl Target {
    fn requirements(&self, readings: &HostReadings) -> Requirements {
        let shards = self
            .shards
            .unwrap_or_else(|| tuning::check::cpu_plan(readings, None).shards);
        Requirements {
            reserved_fds: self.reserved_fds,
            per_connection_bytes: self.per_connection_bytes,
            listen_backlog: self.listen_backlog,
            ..Requirements::new(self.connections, shards.max(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sweep(args) = cli.command {
        return run_sweep(args);
    }
    let readings = read_host();
    match cli.command {
        Command::Check { target, json } => {
            let report = Report::new(&readings, &target.requirements(&readings));
            if json {
                let out = serde_json::json!({ "readings": readings, "report": report });
                if !print_json(&out) {
                    return ExitCode::from(2);
                }
            } else {
                println!("{report}");
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Plan { target, json } => {
            let report = Report::new(&readings, &target.requirements(&readings));
            let plan = plan(&readings, &report);
            if json {
                if !print_json(&plan) {
                    return ExitCode::from(2);
                }
            } else {
                println!("{plan}");
            }
            ExitCode::SUCCESS
        }
        Command::Apply { target, yes } => run_apply(&readings, &target, yes),
        Command::Sweep(_) => ExitCode::from(2), // handled above
    }
}

fn run_sweep(a: SweepArgs) -> ExitCode {
    let budget_ok = a.p99_budget_ms.is_finite() && a.p99_budget_ms > 0.0;
    let gain_ok = a.min_gain_percent.is_finite() && a.min_gain_percent >= 0.0;
    if !budget_ok || !gain_ok {
        eprintln!(
            "tuning sweep: --p99-budget-ms must be positive, --min-gain-percent not negative"
        );
        return ExitCode::from(2);
    }
    let grid = if a.grid.is_empty() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let grid = sweep::default_grid(cores);
        if a.full {
            grid.with_defaults_included()
        } else {
            grid
        }
    } else {
        match Grid::parse(&a.grid) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("tuning sweep: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let sweep = Sweep {
        scenario: a.scenario,
        grid,
        mode: if a.full {
            sweep::Mode::Full
        } else {
            sweep::Mode::OneAtATime
        },
        options: BenchOptions {
            quick: a.quick,
            durability: a.durability,
            connections: a.connections,
            rate: a.rate,
            duration: a.duration,
            steps: a.steps,
        },
        criteria: Criteria {
            p99_budget_us: (a.p99_budget_ms * 1000.0).round() as u64,
            min_gain: a.min_gain_percent / 100.0,
        },
        repeat: usize::from(a.repeat),
        out: a.out,
        bench_bin: a.bench_bin.unwrap_or_else(sweep::default_bench_bin),
    };
    if a.dry_run {
        return match sweep.dry_run(sweep::run::unix_now()) {
            Ok(lines) => {
                println!(
                    "tuning sweep (dry run: nothing runs): {} bench runs",
                    lines.len()
                );
                for line in lines {
                    println!("  {line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tuning sweep: {e}");
                ExitCode::from(2)
            }
        };
    }
    match sweep.run() {
        Ok(file) if sweep::run::recommended(&file) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tuning sweep: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_apply(readings: &HostReadings, target: &Target, yes: bool) -> ExitCode {
    let req = target.requirements(readings);
    let report = Report::new(readings, &req);
    let plan = plan(readings, &report);
    let mode = if yes { Mode::Write } else { Mode::DryRun };
    println!("{plan}");
    println!();
    if plan.sysctls.is_empty() {
        println!("apply: no sysctl to write");
    } else if mode == Mode::DryRun {
        println!("apply (dry run: nothing is written; add --yes to write):");
    } else {
        println!("apply:");
    }
    let outcomes = apply(&plan, &HostPaths::system(), mode);
    let mut failed = false;
    for outcome in &outcomes {
        failed |= outcome.result.is_err();
        println!("  {}", outcome.line());
    }
    if !plan.manual.is_empty() {
        println!(
            "apply leaves {} step{} to an operator (listed above)",
            plan.manual.len(),
            if plan.manual.len() == 1 { "" } else { "s" }
        );
    }
    if mode == Mode::Write && outcomes.iter().any(|o| o.result.is_ok()) {
        let after = Report::new(&read_host(), &req);
        println!("after apply: {}", after.verdict());
    } else {
        println!("{}", report.verdict());
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints pretty JSON; false (with a message) when encoding failed.
fn print_json<T: serde::Serialize>(value: &T) -> bool {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            true
        }
        Err(e) => {
            eprintln!("tuning: cannot encode JSON: {e}");
            false
        }
    }
}
