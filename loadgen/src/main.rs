//! `loadgen <scenario> --target ws://HOST:PORT/ws [options]` — see the
//! library docs (`loadgen/src/lib.rs`) for what it does and how.
//!
//! Exit codes: 0 every check passed; 1 a delivery invariant broke (the
//! report says which); 2 the run could not be carried out (bad options,
//! cannot connect at all, worker failure); 3 the run finished but could not
//! verify everything (connections down at the end, sends never acked).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use loadgen::config::{parse_duration, RunConfig};
use loadgen::progress::ProgressDisplay;
use loadgen::{Report, ScenarioKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load a chat gateway and verify that every acked message reached every member, \
             once and in order"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Direct messages: connections in pairs, both send.
    Dm(Common),
    /// Groups of --group-size members (group: channels created over the HTTP API), all send.
    Groups(Common),
    /// Rooms of --room-size members (default: one room of all), --senders send.
    Room(Common),
    /// 50% DM pairs, 30% groups, 20% one room.
    Mixed(Common),
    /// Connect and hold (heartbeat pings only).
    Idle(Common),
    /// Groups whose connections drop and rejoin with `since` at --churn-rate.
    Churn(Common),
    /// A room (as `room`) whose non-senders leave when sending starts and all
    /// rejoin with `since` when it ends; reports rejoin and catch-up times.
    Resume(Common),
    /// `mixed` with every connection dropping and rejoining at its share of
    /// --churn-rate; slow readers' latency reported apart (bench's soak).
    Soak(Common),
    /// Internal: run as a worker process of `--procs` (JSON on stdio).
    #[command(hide = true)]
    Worker {
        /// The worker's configuration, JSON.
        #[arg(long)]
        config: String,
    },
}

#[derive(Args)]
struct Common {
    /// The gateway's WebSocket URL, e.g. ws://127.0.0.1:8080/ws; or several,
    /// comma-separated (the nodes of one cluster): connections spread over
    /// them, and a reconnect goes to the next.
    #[arg(long)]
    target: String,
    /// Total connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Total messages per second over all senders (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to send (30s, 500ms, 2m); for idle, how long to hold.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// New connections per second (0: all at once).
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Client shards (threads) per process [default: one per CPU].
    #[arg(long)]
    shards: Option<usize>,
    /// Worker processes (for more connections than one process may open).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Members per group (groups, churn, mixed).
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// Members per room (room) [default: all connections in one room].
    #[arg(long)]
    room_size: Option<usize>,
    /// Senders per room (room, mixed).
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Connection drops per second over all connections (churn, soak).
    #[arg(long, default_value_t = 10.0)]
    churn_rate: f64,
    /// Abusive connections besides --connections: bad frames, pipelined
    /// history/presence, send and read floods (reported apart, never
    /// violations).
    #[arg(long, default_value_t = 0)]
    abusers: usize,
    /// Abusive acts per second over all abusers.
    #[arg(long, default_value_t = 1.0)]
    abuse_rate: f64,
    /// The audience tier (`join`'s `mode`) of the rooms' members that do
    /// not send: live, digest (every message, in fewer writes) or counts
    /// (no messages; `head` events are checked instead).
    #[arg(long, default_value = "live", value_parser = loadgen::scenario::Tier::parse)]
    mode: loadgen::scenario::Tier,
    /// Offer permessage-deflate (RFC 7692, no context takeover) on every
    /// connection; messages the server sends compressed are inflated and
    /// checked like plain ones. `server_bytes` in the report shows the
    /// saving.
    #[arg(long)]
    compress: bool,
    /// Also report delivery latency per window of the send phase (e.g.
    /// 10s; p99 over time). Off by default.
    #[arg(long)]
    latency_window: Option<String>,
    /// Fraction (0–1) of the receiving connections that read slowly.
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    /// Read rate of a slow connection, bytes per second.
    #[arg(long, default_value_t = 0)]
    slow_read_rate: u64,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 64)]
    message_bytes: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2, …)
    /// [default: one per 20,000 connections past 20,000].
    #[arg(long)]
    source_addrs: Option<usize>,
    /// How long to wait for acks, and then for deliveries, after sending.
    #[arg(long, default_value = "10s")]
    drain_timeout: String,
    /// The gateway's token secret: each connection then signs its own
    /// HS256 token; without it, dev auth (?user=&device=).
    #[arg(long, env = "GATEWAY_AUTH_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Pin client shards to CPUs.
    #[arg(long)]
    pin: bool,
    /// The run's id (letters and digits): it names the run's users and
    /// channels and seeds its randomness — the senders' phases, masks,
    /// reconnect jitter. Two runs with the same id against fresh servers
    /// send on the same schedule (an A/B whose only difference is the
    /// server). [default: random]
    #[arg(long)]
    run_id: Option<String>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line (for scripts).
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn to_config(&self, kind: ScenarioKind) -> anyhow::Result<RunConfig> {
        let mut cfg = RunConfig::new(kind, &self.target);
        cfg.scenario.connections = self.connections;
        cfg.scenario.rate = self.rate;
        cfg.scenario.group_size = self.group_size;
        cfg.scenario.room_size = self.room_size;
        cfg.scenario.senders = self.senders;
        cfg.scenario.churn_rate = self.churn_rate;
        cfg.scenario.slow_fraction = self.slow_fraction;
        cfg.scenario.slow_read_bps = self.slow_read_rate;
        cfg.scenario.abusers = self.abusers;
        cfg.scenario.abuse_rate = self.abuse_rate;
        cfg.scenario.mode = self.mode;
        if let Some(id) = &self.run_id {
            cfg.scenario.run_id.clone_from(id);
        }
        cfg.compress = self.compress;
        if let Some(w) = &self.latency_window {
            cfg.latency_window_ms = parse_duration(w)?.as_millis() as u64;
        }
        cfg.duration_ms = parse_duration(&self.duration)?.as_millis() as u64;
        cfg.drain_timeout_ms = parse_duration(&self.drain_timeout)?.as_millis() as u64;
        cfg.ramp = self.ramp;
        cfg.shards = self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        cfg.procs = self.procs;
        cfg.message_bytes = self.message_bytes;
        cfg.source_addrs = self.source_addrs;
        cfg.pin = self.pin;
        cfg.token_secret = self.token_secret.clone();
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (kind, common) = match cli.command {
        Command::Worker { config } => return worker(&config),
        Command::Dm(c) => (ScenarioKind::Dm, c),
        Command::Groups(c) => (ScenarioKind::Groups, c),
        Command::Room(c) => (ScenarioKind::Room, c),
        Command::Mixed(c) => (ScenarioKind::Mixed, c),
        Command::Idle(c) => (ScenarioKind::Idle, c),
        Command::Churn(c) => (ScenarioKind::Churn, c),
        Command::Resume(c) => (ScenarioKind::Resume, c),
        Command::Soak(c) => (ScenarioKind::Soak, c),
    };
    match run(kind, &common) {
        Ok(report) => {
            if common.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            for f in report.failures.iter().chain(&report.incomplete) {
                if common.json {
                    eprintln!("loadgen: {f}");
                }
            }
            ExitCode::from(report.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(kind: ScenarioKind, common: &Common) -> anyhow::Result<Report> {
    let mut cfg = common.to_config(kind)?;
    loadgen::groups::prepare(&mut cfg).context("creating the run's groups on the gateway")?;
    let mut display = ProgressDisplay::new(cfg.scenario.connections, common.quiet);
    let result = if cfg.procs > 1 {
        let exe = std::env::current_exe().context("finding this executable for --procs")?;
        loadgen::procs::run_procs(&cfg, &exe, &mut |phase, s| display.update(phase, s))
    } else {
        let mut hooks = loadgen::LocalHooks {
            on_progress: |phase, s: &_| display.update(phase, s),
        };
        loadgen::run(&cfg, &mut hooks)
    };
    display.finish();
    let result = result?;
    if result.stats.counters.connects == 0 {
        anyhow::bail!(
            "no connection to {} succeeded ({} attempts failed)",
            cfg.target,
            result.stats.counters.connect_errors
        );
    }
    Ok(Report::new(&cfg, &result))
}

fn worker(config: &str) -> ExitCode {
    let cfg: RunConfig = match serde_json::from_str::<RunConfig>(config) {
        Ok(mut c) => {
            c.token_secret = std::env::var(loadgen::config::TOKEN_SECRET_ENV).ok();
            c
        }
        Err(e) => {
            eprintln!("loadgen worker: bad --config: {e}");
            return ExitCode::from(2);
        }
    };
    match loadgen::procs::run_worker(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen worker: {e}");
            ExitCode::from(2)
        }
    }
}
