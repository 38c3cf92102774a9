//! `fdb-double-server`: the libfdb_c test double's server. **Test-only**:
//! one in-memory database, nothing on disk, no authentication; it listens on
//! loopback by default. See `storage/fdb-double/src/lib.rs` and `docs/storage.md`.
//!
//! ```text
//! fdb-double-server [serve] [--bind IP] [--port N] [--cluster-file PATH]
//! fdb-double-server stats (--cluster-file PATH | --address IP:PORT)
//! fdb-double-server stop  (--cluster-file PATH | --address IP:PORT)
//! ```
//!
//! `serve` (the default) binds (`--port 0`, the default, picks a free
//! port), writes a cluster file naming itself when asked, then prints one
//! line — `fdb-double-server listening on IP:PORT …` — once clients can
//! connect (scripts wait for it). `stats` prints the server's counters as
//! JSON; `stop` makes it print them and exit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use fdb_c::client::{self, parse_cluster_file, ClusterFile};
use fdb_c::proto::{Payload, Request};
use fdb_c::server::{cluster_file_line, Server};

const USAGE: &str = "usage:
  fdb-double-server [serve] [--bind IP] [--port N] [--cluster-file PATH]
  fdb-double-server stats (--cluster-file PATH | --address IP:PORT)
  fdb-double-server stop  (--cluster-file PATH | --address IP:PORT)
A test-only stand-in for a FoundationDB cluster: in memory, loopback, no auth.";

#[derive(Default)]
struct Args {
    command: String,
    bind: Option<IpAddr>,
    port: u16,
    cluster_file: Option<PathBuf>,
    address: Option<SocketAddr>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        command: "serve".into(),
        ..Args::default()
    };
    let mut first = true;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "serve" | "stats" | "stop" if first => a.command = arg,
            "--bind" => {
                let v = value("--bind")?;
                a.bind = Some(v.parse().map_err(|e| format!("--bind {v}: {e}"))?);
            }
            "--port" => {
                let v = value("--port")?;
                a.port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--cluster-file" => a.cluster_file = Some(value("--cluster-file")?.into()),
            "--address" => {
                let v = value("--address")?;
                a.address = Some(v.parse().map_err(|e| format!("--address {v}: {e}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
        first = false;
    }
    Ok(a)
}

/// The server a `stats` / `stop` command talks to.
fn target(a: &Args) -> Result<SocketAddr, String> {
    if let Some(addr) = a.address {
        return Ok(addr);
    }
    let path = a
        .cluster_file
        .as_ref()
        .ok_or("give --cluster-file or --address")?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    match parse_cluster_file(&text) {
        Ok(ClusterFile::Server(addr)) => Ok(addr),
        Ok(ClusterFile::InProcess) => Err(format!(
            "{} names no server (an in-process cluster file)",
            path.display()
        )),
        Err(code) => Err(format!("{}: invalid cluster file ({code})", path.display())),
    }
}

fn serve(a: &Args) -> Result<(), String> {
    let ip = a.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = Server::bind(SocketAddr::new(ip, a.port))
        .map_err(|e| format!("binding {ip}:{}: {e}", a.port))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let mut note = String::new();
    if let Some(path) = &a.cluster_file {
        // Written whole, then renamed: a client never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, cluster_file_line(addr))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        note = format!(", cluster file {}", path.display());
    }
    println!("fdb-double-server listening on {addr} (test-only, in memory{note})");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    server.run().map_err(|e| e.to_string())
}

fn ask(a: &Args, make: fn(u64) -> Request) -> Result<Payload, String> {
    let addr = target(a)?;
    client::query(addr, make)
        .map_err(|e| e.to_string())?
        .result
        .map_err(|code| format!("the server answered FDB error {code}"))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fdb-double-server: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match args.command.as_str() {
        "stats" => ask(&args, |req| Request::Stats { req }).map(|p| {
            if let Payload::Text(t) = p {
                println!("{t}");
            }
        }),
        "stop" => ask(&args, |req| Request::Shutdown { req }).map(|_| ()),
        _ => serve(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdb-double-server: {e}");
            ExitCode::FAILURE
        }
    }
}
