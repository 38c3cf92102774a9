//! The I/O side: binaries, the server process (gateway or peer), sampling
//! `/proc`, loadgen.
//!
//! With `--pin` the server runs on CPU 0 and loadgen on CPU 1: started
//! under `taskset -c` when it is installed, else spawned from a thread
//! pinned with `sched_setaffinity` (children inherit the mask). The result
//! records which, and the CPUs the server's threads were allowed on right
//! after it started — the gateway pins its shard threads itself, so that
//! shows whether the mask held.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::figures::{Figures, LoadgenSummary, Sample, ServerSamples, TimePoint};
use crate::peers;
use crate::procfs;
use crate::report::{Machine, RunResult};
use crate::scenario::RunSpec;
use crate::settings;
use crate::sys;

/// The CPU of the server and the CPU of loadgen with `--pin`.
pub const SERVER_CPU: usize = 0;
/// See [`SERVER_CPU`].
pub const LOADGEN_CPU: usize = 1;

/// The gateway counters read from `/metrics` after each gateway run.
pub const GATEWAY_METRICS: &[&str] = &[
    "gateway_slow_consumer_events_total",
    "gateway_deliveries_total",
    "gateway_connections_refused_total",
    "gateway_write_stalls_total",
];

/// How `--pin` puts a process on a CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinner {
    /// `taskset -c CPU program args…` (util-linux), at this path.
    Taskset(PathBuf),
    /// Spawned from a thread pinned with `sched_setaffinity`.
    Affinity,
}

impl Pinner {
    /// `taskset` if it is on `PATH`, else [`Pinner::Affinity`].
    #[must_use]
    pub fn detect() -> Pinner {
        which("taskset").map_or(Pinner::Affinity, Pinner::Taskset)
    }

    /// How the result names it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Pinner::Taskset(_) => "taskset",
            Pinner::Affinity => "sched_setaffinity",
        }
    }

    /// A command running `program`, on `cpu` when given (under `taskset`;
    /// with [`Pinner::Affinity`] the spawn must go through [`Self::spawn`]).
    fn command(&self, program: &Path, cpu: Option<usize>) -> Command {
        match (self, cpu) {
            (Pinner::Taskset(taskset), Some(cpu)) => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// Runs `f` (which spawns a process) on a thread pinned to `cpu` when
    /// pinning is by affinity; else right here.
    fn spawn<T: Send>(
        &self,
        cpu: Option<usize>,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> std::io::Result<T> {
        match (self, cpu) {
            (Pinner::Affinity, Some(cpu)) => std::thread::scope(|s| {
                s.spawn(|| {
                    sys::pin_current_thread(cpu)?;
                    f()
                })
                .join()
                .map_err(|_| std::io::Error::other("the pinned spawner thread panicked"))?
            }),
            _ => f(),
        }
    }
}

/// `program` on `PATH`, if there.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Each distinct `Cpus_allowed_list` of `pid`'s threads, sorted.
fn thread_cpus(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| procfs::status_cpus_allowed_list(&s))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `GET /metrics` from the gateway serving `ws_target`, and the counters of
/// [`GATEWAY_METRICS`] in it.
fn gateway_metrics(ws_target: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let authority = ws_target
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .context("target is not ws://host:port/…")?;
    let mut sock = std::net::TcpStream::connect(authority)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        sock,
        "GET /metrics HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    sock.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(GATEWAY_METRICS
        .iter()
        .filter_map(|n| procfs::prometheus_value(body, n).map(|v| (n.to_string(), v)))
        .collect())
}

pub use crate::peers::workspace_root;

/// The release gateway and loadgen, built with cargo if either is missing
/// (unless given explicitly).
pub fn locate_binaries(
    gateway: Option<PathBuf>,
    loadgen: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let release = workspace_root().join("target/release");
    let gw = gateway.unwrap_or_else(|| release.join("gateway"));
    let lg = loadgen.unwrap_or_else(|| release.join("loadgen"));
    if !gw.exists() || !lg.exists() {
        eprintln!(
            "bench: {} or {} missing: building them with `cargo build --release -p gateway -p loadgen`",
            gw.display(),
            lg.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--release", "-p", "gateway", "-p", "loadgen"])
            .current_dir(workspace_root())
            .status()
            .context("running cargo build")?;
        if !st.success() {
            bail!("cargo build --release -p gateway -p loadgen failed: {st}");
        }
        if !gw.exists() || !lg.exists() {
            bail!(
                "{} / {} still missing after the build",
                gw.display(),
                lg.display()
            );
        }
    }
    Ok((gw, lg))
}

/// Where the bench runs.
#[must_use]
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model: procfs::cpuinfo_model(&read("/proc/cpuinfo")).unwrap_or_default(),
    }
}

fn sample(pid: u32) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    Ok(Sample {
        cpu_ticks: procfs::stat_cpu_ticks(&stat)?,
        rss_kib: procfs::status_vm_rss_kib(&status)?,
        tcp_out_segs: procfs::snmp_tcp_out_segs(&snmp)?,
    })
}

/// RSS, open fds and CPU time of `pid` now, `t_s` after `t0`.
fn time_point(pid: u32, t0: Instant) -> anyhow::Result<TimePoint> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(TimePoint {
        t_s: t0.elapsed().as_secs_f64(),
        rss_kib: procfs::status_vm_rss_kib(&status)?,
        fds,
        cpu_ticks: procfs::stat_cpu_ticks(&stat)?,
    })
}

/// How long the last sample waits, after loadgen exits, for the server's
/// open fds to fall back to where they were before the first connection
/// (closing connections wait for their acks and outboxes).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Samples `pid` every `every` from `t0` until `done`, then once more when
/// the server has settled: its fds back to the first sample's (a few over
/// are allowed: the store's files come and go) or [`SETTLE_LIMIT`] passed.
fn sample_timeline(pid: u32, t0: Instant, every: Duration, done: &AtomicBool) -> Vec<TimePoint> {
    let mut out: Vec<TimePoint> = Vec::new();
    let mut next = t0;
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            if let Ok(p) = time_point(pid, t0) {
                out.push(p);
            }
            next += every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let baseline = out.first().map(|p| p.fds);
    let settle_by = Instant::now() + SETTLE_LIMIT;
    loop {
        let Ok(p) = time_point(pid, t0) else { break };
        let settled = baseline.is_none_or(|b| p.fds <= b + 4);
        if settled || Instant::now() >= settle_by {
            out.push(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    out
}

/// A running server (gateway or peer); SIGTERM and reaped on drop.
struct Server {
    child: Child,
    target: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
    name: &'static str,
}

impl Server {
    /// Starts the server of `spec.server`: the gateway at `bin` on a temp
    /// data dir (with `spec.settings` in its `--config` file), or a peer
    /// from `bench/peers` (on any free port); on [`SERVER_CPU`] when pinned.
    fn start(bin: &Path, spec: &RunSpec, pinner: &Pinner) -> anyhow::Result<Server> {
        let name = spec.server.name();
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{name}-"))
            .tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let cpu = spec.pinned.then_some(SERVER_CPU);
        let mut cmd = if let Some((program, args)) = spec.server.peer_command(&peers::peers_dir()) {
            peers::check_installed(spec.server, &peers::peers_dir())?;
            let mut c = pinner.command(&program, cpu);
            c.args(&args).current_dir(peers::peers_dir());
            c
        } else {
            let mut c = pinner.command(bin, cpu);
            if !spec.settings.is_empty() {
                let path = dir.path().join("gateway.toml");
                std::fs::write(&path, settings::to_toml(&spec.settings))
                    .with_context(|| format!("writing {}", path.display()))?;
                c.arg("--config").arg(path);
            }
            c.args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--durability", &spec.durability])
                .env_remove("GATEWAY_AUTH_SECRET")
                .env("RUST_LOG", "warn");
            if let Some(n) = spec.gateway_shards {
                c.args(["--shards", &n.to_string()]);
            }
            c
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let mut child = pinner
            .spawn(cpu, || cmd.spawn())
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(target) = peers::parse_listening_line(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{name} did not start (first line {line:?}); its log:\n{err}");
        };
        Ok(Server {
            child,
            target,
            _dir: dir,
            log,
            name,
        })
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        sys::sigterm(self.child.id())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    eprintln!(
                        "bench: {} exited with {st}; log in {}",
                        self.name,
                        self.log.display()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within 20 s of SIGTERM; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one server + loadgen run and samples the server process around it
/// (the gateway, or the peer of `spec.server`; `gateway_bin` is then unused).
pub fn run_one(
    gateway_bin: &Path,
    loadgen_bin: &Path,
    spec: &RunSpec,
) -> anyhow::Result<RunResult> {
    let pinner = Pinner::detect();
    if spec.pinned {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if cpus < 2 {
            bail!("--pin puts the server on CPU 0 and loadgen on CPU 1: this process may use {cpus} CPU");
        }
    }
    let mut gw = Server::start(gateway_bin, spec, &pinner)?;
    let pid = gw.child.id();
    let clk_tck = sys::clk_tck();
    // Let start-up settle so the baseline RSS is the idle server's.
    std::thread::sleep(Duration::from_millis(300));
    let before = sample(pid)?;
    let server_cpus = if spec.pinned {
        let cpus = thread_cpus(pid);
        if cpus.iter().any(|c| c != &SERVER_CPU.to_string()) {
            eprintln!(
                "bench: warning: --pin: {} threads are allowed on CPUs {cpus:?}, not only {SERVER_CPU}",
                gw.name
            );
        }
        cpus
    } else {
        Vec::new()
    };

    let peak = Arc::new(AtomicU64::new(before.rss_kib));
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Ok(kib) = procfs::status_vm_rss_kib(&s) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let args = spec.loadgen_args(&gw.target);
    let lg_cpu = spec.pinned.then_some(LOADGEN_CPU);
    let mut lg = pinner.command(loadgen_bin, lg_cpu);
    lg.args(&args)
        .env_remove("GATEWAY_AUTH_SECRET")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    eprintln!("bench: {lg:?}");
    let t0 = Instant::now();
    let timeline = spec
        .sample_every_s
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|every| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                sample_timeline(pid, t0, Duration::from_secs_f64(every), &done)
            })
        });
    // No other child of the bench is reaped while loadgen runs (the server
    // is reaped after), so this difference is loadgen's CPU.
    let reaped_before = sys::reaped_children_cpu_s();
    let out = pinner
        .spawn(lg_cpu, || lg.output())
        .with_context(|| format!("running {}", loadgen_bin.display()))?;
    let wall_s = t0.elapsed().as_secs_f64();
    let loadgen_cpu_s = sys::reaped_children_cpu_s() - reaped_before;
    let after = sample(pid)?;
    done.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let timeline = timeline.and_then(|t| t.join().ok()).unwrap_or_default();
    let server_metrics = if spec.server.is_peer() {
        BTreeMap::new()
    } else {
        gateway_metrics(&gw.target).unwrap_or_else(|e| {
            eprintln!("bench: warning: reading the gateway's /metrics: {e:#}");
            BTreeMap::new()
        })
    };
    gw.stop()?;

    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json_line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(json_line) = json_line else {
        bail!(
            "loadgen exited with {} and printed no JSON report",
            out.status
        );
    };
    let loadgen: serde_json::Value =
        serde_json::from_str(json_line).context("parsing loadgen's JSON report")?;
    let summary = LoadgenSummary::from_json(&loadgen)?;
    let server = ServerSamples {
        clk_tck,
        before,
        after,
        peak_rss_kib: peak.load(Ordering::Relaxed).max(after.rss_kib),
        wall_s,
        loadgen_cpu_s,
    };
    let figures = Figures::compute(&summary, &server);
    Ok(RunResult {
        spec: spec.clone(),
        loadgen,
        loadgen_exit: code,
        server,
        figures,
        server_cpus,
        pin_method: spec.pinned.then(|| pinner.name().to_string()),
        server_metrics,
        timeline,
    })
}
