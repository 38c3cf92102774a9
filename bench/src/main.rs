//! `bench run <scenario> [...]` and `bench compare a.json b.json`; see the
//! library docs (`bench/src/lib.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bench::peers::{self, ServerKind};
use bench::report::{self, ResultFile};
use bench::scenario::{self, Options};
use clap::{Parser, Subcommand};

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
    /// Run a scenario: dm-latency, room-fanout, groups-durable, idle, shards.
    Run {
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
        /// Override the scenario's total send rate, messages/s.
        #[arg(long)]
        rate: Option<f64>,
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
    },
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

fn load(p: &PathBuf) -> anyhow::Result<ResultFile> {
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

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
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
        Cmd::Run {
            scenario: name,
            shards,
            durability,
            out,
            quick,
            connections,
            rate,
            duration,
            server,
            gateway_bin,
            loadgen_bin,
        } => {
            let server = ServerKind::parse(&server)?;
            let opts = Options {
                server,
                quick,
                shards,
                durability,
                connections,
                rate,
                duration,
            };
            let specs = scenario::plan(&name, &opts)?;
            let (gw, lg) = bench::run::locate_binaries(gateway_bin, loadgen_bin)?;
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut runs = Vec::new();
            for spec in &specs {
                runs.push(bench::run::run_one(&gw, &lg, spec)?);
            }
            let file = ResultFile {
                scenario: name.clone(),
                timestamp,
                quick,
                server,
                machine: bench::run::machine(),
                binaries: vec![server_binary(server, &gw), lg.display().to_string()],
                runs,
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let path = out.join(peers::result_file_name(&name, server, timestamp));
            std::fs::write(&path, serde_json::to_string_pretty(&file)?)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("bench: wrote {}", path.display());
            print!("{}", report::markdown_header());
            for r in &file.runs {
                print!("{}", report::markdown_row(&name, r));
            }
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
