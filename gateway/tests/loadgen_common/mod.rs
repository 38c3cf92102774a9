//! Test helpers: a real gateway in this process on a temporary data
//! directory, and a quiet loadgen run against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gateway::{Config, Gateway};
use loadgen::{LocalHooks, Report, RunConfig, ScenarioKind};

/// Scenario tests run one at a time: the machine has two cores and each
/// test runs a two-shard gateway beside the load generator.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn start_gateway(dir: &Path, listen: SocketAddr) -> Gateway {
    start_gateway_with(dir, listen, |_| {})
}

pub fn start_gateway_with(
    dir: &Path,
    listen: SocketAddr,
    tweak: impl FnOnce(&mut Config),
) -> Gateway {
    let mut cfg = Config {
        listen,
        data_dir: dir.to_path_buf(),
        shards: Some(2),
        ..Config::default()
    };
    tweak(&mut cfg);
    Gateway::start(cfg).expect("gateway starts")
}

/// A small, quick configuration of `kind` against `addr`.
pub fn small(kind: ScenarioKind, addr: SocketAddr, connections: usize) -> RunConfig {
    let mut cfg = RunConfig::new(kind, &format!("ws://{addr}/ws"));
    cfg.scenario.connections = connections;
    cfg.scenario.rate = 300.0;
    cfg.scenario.group_size = 5;
    cfg.scenario.senders = 4;
    cfg.scenario.churn_rate = 15.0;
    cfg.duration_ms = 2_000;
    cfg.ramp = 2_000.0;
    cfg.shards = 2;
    cfg.drain_timeout_ms = 15_000;
    cfg
}

/// Runs `cfg` in this process, without a progress line.
pub fn run(cfg: &RunConfig) -> Report {
    let mut hooks = LocalHooks {
        on_progress: |_, _: &_| {},
    };
    let result = loadgen::run(cfg, &mut hooks).expect("the run completes");
    Report::new(cfg, &result)
}

/// Starts a fresh gateway, runs `cfg` (its target rewritten) against it and
/// returns the report.
pub fn run_against_fresh_gateway(cfg: RunConfig) -> Report {
    run_against_fresh_gateway_with(cfg, |_| {})
}

/// [`run_against_fresh_gateway`] with the gateway's config changed by `tweak`.
#[allow(dead_code)]
pub fn run_against_fresh_gateway_with(
    mut cfg: RunConfig,
    tweak: impl FnOnce(&mut Config),
) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway_with(dir.path(), "127.0.0.1:0".parse().unwrap(), tweak);
    cfg.target = format!("ws://{}/ws", gw.local_addr());
    // Scenarios with groups run on real `group:` channels, as the CLI does.
    loadgen::groups::prepare(&mut cfg).expect("groups created");
    assert!(
        cfg.scenario
            .group_names
            .iter()
            .all(|n| n.starts_with("group:")),
        "{:?}",
        cfg.scenario.group_names
    );
    let started = Instant::now();
    let report = run(&cfg);
    eprintln!(
        "{} took {:.1} s\n{}",
        report.scenario,
        started.elapsed().as_secs_f64(),
        report.table()
    );
    gw.shutdown();
    report
}

/// Asserts the report proves complete delivery: no violation, every send
/// acked, every connection up and joined at the end.
pub fn assert_delivered(report: &Report) {
    assert_eq!(report.violations.total(), 0, "{}", report.table());
    assert!(report.ok, "{}", report.table());
    assert_eq!(report.counters.unacked, 0, "{}", report.table());
    assert_eq!(report.counters.down_at_end, 0, "{}", report.table());
    assert_eq!(report.acked, report.sent, "{}", report.table());
}

/// [`assert_delivered`], and no error of any kind.
pub fn assert_clean(report: &Report) {
    assert_delivered(report);
    assert_eq!(report.errors, 0, "{}", report.table());
}

/// Retries `f` until it returns `Some` or `timeout` passes.
pub fn retry<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `loadgen` binary of this build: next to the test executable's
/// `deps/` folder. Built with `cargo build -p loadgen` (same profile) when
/// it is not there yet — `cargo test` builds a package's binaries only for
/// that package's own tests.
pub fn loadgen_bin() -> std::path::PathBuf {
    static BUILT: Mutex<()> = Mutex::new(());
    let _once = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("loadgen");
    if !bin.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "loadgen", "--bin", "loadgen"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p loadgen failed");
    }
    bin
}
