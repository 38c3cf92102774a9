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
//!
//! Exit status 2: bad arguments (clap) or output that could not be encoded.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tuning::costs::{DEFAULT_RESERVED_FDS, GATEWAY_BYTES_PER_IDLE_CONNECTION};
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
}

impl Target {
    fn requirements(&self, readings: &HostReadings) -> Requirements {
        let shards = self
            .shards
            .unwrap_or_else(|| tuning::check::cpu_plan(readings, None).shards);
        Requirements {
            reserved_fds: self.reserved_fds,
            per_connection_bytes: self.per_connection_bytes,
            ..Requirements::new(self.connections, shards.max(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
