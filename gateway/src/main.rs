//! The `gateway` binary: `gateway [serve]` runs the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gateway::config::LogFormat;
use gateway::{Config, Gateway};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tunes mimalloc for a server whose memory is mostly many small,
/// long-lived per-connection states: arenas are committed as they are used
/// rather than up front (`arena_eager_commit` 0; the default commits whole
/// arenas on Linux, which transparent huge pages then make resident), and
/// freed pages go back to the OS at once rather than after a delay
/// (`purge_delay` 0), so a table that grew (its old copy freed) or a
/// burst's buffers do not stay resident. Measured at 10,000 idle
/// connections (`docs/benchmarks.md`, "Idle memory: the socket ring"):
/// 2.3 KB of RSS growth per connection with the defaults, ~1.1 KB with
/// these, and a ~10 MB instead of a ~21 MB process at start.
///
/// It must run before mimalloc's own constructor (priority 101) creates
/// the first arena, hence an `.init_array` entry of priority 100; set in
/// `main` it was too late (the first arena was already committed: 1.5 KB
/// per connection). The environment variables (`MIMALLOC_ARENA_EAGER_COMMIT`,
/// `MIMALLOC_PURGE_DELAY`) still override: mimalloc reads them afterwards.
#[allow(unsafe_code)]
mod allocator_tuning {
    use std::ffi::{c_int, c_long};

    // mimalloc v3's `mi_option_t` (libmimalloc-sys: c_src/mimalloc/v3/include/mimalloc.h).
    const ARENA_EAGER_COMMIT: c_int = 4;
    const PURGE_DELAY: c_int = 15;

    unsafe extern "C" {
        fn mi_option_set_default(option: c_int, value: c_long);
    }

    extern "C" fn tune() {
        // Safety: writes two entries of mimalloc's option table; runs once,
        // single-threaded, before main.
        unsafe {
            mi_option_set_default(ARENA_EAGER_COMMIT, 0);
            mi_option_set_default(PURGE_DELAY, 0);
        }
    }

    #[used]
    #[link_section = ".init_array.00100"]
    static TUNE: extern "C" fn() = tune;
}

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Thread-per-core WebSocket chat gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print a token (HS256 JWT) signed with the auth secret.
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    user: String,
    /// Device id (optional; the gateway uses `default` without one).
    #[arg(long)]
    device: Option<String>,
    /// Lifetime: 90s, 15m, 1h, 7d [default: 1h].
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// HMAC secret for tokens.
    #[arg(long, env = "GATEWAY_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// TOML config file (for its auth_secret).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn token(a: &TokenArgs) -> anyhow::Result<()> {
    let from_file = match &a.config {
        Some(path) => Config::from_file(path)?.auth_secret,
        None => None,
    };
    let secret = a
        .auth_secret
        .clone()
        .or(from_file)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("no secret: pass --auth-secret or set GATEWAY_AUTH_SECRET")
        })?;
    if secret.len() < gateway::config::MIN_AUTH_SECRET_BYTES {
        anyhow::bail!(
            "the secret must be at least {} bytes (found {}): the gateway refuses shorter ones",
            gateway::config::MIN_AUTH_SECRET_BYTES,
            secret.len()
        );
    }
    if !gateway::protocol::names::is_valid_id(&a.user) {
        anyhow::bail!("--user must be 1-64 chars of [A-Za-z0-9_.-]");
    }
    if let Some(d) = &a.device {
        if !gateway::protocol::names::is_valid_id(d) {
            anyhow::bail!("--device must be 1-64 chars of [A-Za-z0-9_.-]");
        }
    }
    let ttl = gateway::auth::parse_ttl(&a.ttl)
        .ok_or_else(|| anyhow::anyhow!("--ttl must look like 90s, 15m, 1h or 7d"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    println!(
        "{}",
        gateway::auth::sign(secret.as_bytes(), &a.user, a.device.as_deref(), now + ttl)
    );
    Ok(())
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory of the embedded store [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of shards [default: one per core].
    #[arg(long)]
    shards: Option<usize>,
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HMAC secret for tokens.
    #[arg(long, env = "GATEWAY_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// Maximum concurrent connections [default: open-file limit minus a reserve].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Durability of acks: fsync (default) or buffered (embedded store).
    #[arg(long)]
    durability: Option<String>,
    /// Storage backend: embedded (default) or fdb (a build with `--features fdb`).
    #[arg(long)]
    store: Option<String>,
    /// FoundationDB cluster file (with `--store fdb`).
    #[arg(long)]
    fdb_cluster_file: Option<PathBuf>,
    /// FoundationDB key namespace (with `--store fdb`) [default: default].
    #[arg(long)]
    fdb_namespace: Option<String>,
    /// This node's id [default: kept in <data-dir>/node-id].
    #[arg(long)]
    node_id: Option<String>,
    /// The WebSocket URL this node advertises in `GET /v1/nodes`
    /// [default: ws://<listen address>/ws].
    #[arg(long)]
    advertise_url: Option<String>,
    /// Log line format: text (default; colours only on a terminal) or json
    /// (one object per line).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Start even when the host cannot hold the configured maximum of
    /// connections (the shortfall is logged as a warning).
    #[arg(long)]
    skip_preflight: bool,
}

/// `--log-format` (mirrors `gateway::config::LogFormat`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn load_config(a: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &a.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = a.shards {
        cfg.shards = Some(v);
    }
    if let Some(v) = &a.auth_secret {
        cfg.auth_secret = Some(v.clone());
    }
    if let Some(v) = a.max_connections {
        cfg.max_connections = Some(v);
    }
    if let Some(v) = &a.durability {
        cfg.durability = match v.as_str() {
            "fsync" => gateway::config::DurabilitySetting::Fsync,
            "buffered" => gateway::config::DurabilitySetting::Buffered,
            other => anyhow::bail!("--durability must be fsync or buffered, not {other}"),
        };
    }
    if let Some(v) = &a.store {
        cfg.store = match v.as_str() {
            "embedded" => gateway::config::StoreKind::Embedded,
            "fdb" => gateway::config::StoreKind::Fdb,
            other => anyhow::bail!("--store must be embedded or fdb, not {other}"),
        };
    }
    if let Some(v) = &a.fdb_cluster_file {
        cfg.fdb_cluster_file = Some(v.clone());
    }
    if let Some(v) = &a.fdb_namespace {
        cfg.fdb_namespace = v.clone();
    }
    if let Some(v) = &a.node_id {
        cfg.node_id = Some(v.clone());
    }
    if let Some(v) = &a.advertise_url {
        cfg.advertise_url = Some(v.clone());
    }
    if let Some(v) = a.log_format {
        cfg.log_format = match v {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Refuses to start when the host cannot hold the configured maximum of
/// connections (found and required values in the error), unless overridden.
fn preflight(cfg: &Config, skip: bool) -> anyhow::Result<()> {
    let limit = gateway::raise_open_file_limit();
    let req = tuning::Requirements {
        reserved_fds: cfg.effective_reserved_fds(limit) as u64,
        listen_backlog: u64::from(cfg.listen_backlog),
        ..tuning::Requirements::new(cfg.effective_max_connections(limit) as u64, cfg.nr_shards())
    };
    match tuning::preflight(&req) {
        Ok(report) => {
            for w in report.warnings() {
                tracing::warn!("preflight: {w}");
            }
            Ok(())
        }
        Err(e) if skip && e.is_overridable() => {
            tracing::warn!("preflight failed, starting anyway (--skip-preflight): {e}");
            Ok(())
        }
        Err(e) => anyhow::bail!("preflight: {e}\n(use --skip-preflight to start anyway)"),
    }
}

/// Logs go to standard error: `text` with ANSI colours only when it is a
/// terminal (and `NO_COLOR` is unset), so files and journals get plain
/// lines; or `json`, one object per line.
fn init_logging(cfg: &Config) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Text => {
            let colours = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colours).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Token(t)) => return token(&t),
        None => cli.serve,
    };
    let cfg = load_config(&args)?;
    init_logging(&cfg);
    gateway::abort_on_panic();
    gateway::block_termination_signals()?;
    if cfg.auth_secret.is_none() {
        tracing::warn!(
            "DEV AUTH: no auth secret configured; ?user=<id>&device=<id> is trusted. \
             Allowed only on loopback. Do not expose this gateway."
        );
    }
    preflight(&cfg, args.skip_preflight)?;
    let shards = cfg.nr_shards();
    let store = match cfg.store {
        gateway::config::StoreKind::Embedded => format!("data in {}", cfg.data_dir.display()),
        gateway::config::StoreKind::Fdb => format!(
            "FoundationDB namespace {:?}, cluster file {}",
            cfg.fdb_namespace,
            cfg.fdb_cluster_file
                .as_ref()
                .map_or_else(|| "(default)".to_string(), |p| p.display().to_string())
        ),
    };
    let demo = cfg.demo_enabled();
    let gw = Gateway::start(cfg)?;
    println!(
        "gateway listening on ws://{}/ws ({} shards, {})",
        gw.local_addr(),
        shards,
        store
    );
    if demo {
        // Not println!: a launcher may have closed the pipe after the first
        // line, and this line must not take the process down.
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "demo chat page: http://{}/demo/",
            gw.local_addr()
        );
    }
    let sig = gateway::wait_for_termination();
    if sig == libc::SIGTERM {
        // A deploy or the service manager: drain (docs/protocol.md).
        tracing::info!(signal = sig, "draining, then shutting down");
        gw.drain();
    } else {
        // Ctrl-C: close at once (graceful: commits finish, acks flush).
        tracing::info!(signal = sig, "shutting down");
        gw.shutdown();
    }
    // FDB's client must be stopped before the process exits.
    #[cfg(feature = "fdb")]
    storage::fdb::stop_network();
    Ok(())
}
