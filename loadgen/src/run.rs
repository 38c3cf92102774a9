//! One process's run: client shards, phases, and the merged result.
//!
//! [`run`] plans the scenario, takes this process's slice of connections,
//! starts `--shards` glommio executors (threads) and spreads the
//! connections over them round-robin, each as a [`crate::client::drive`]
//! task. The calling thread becomes the coordinator: it moves every
//! connection through the [`Phase`]s by publishing a new phase in
//! [`Shared`], which a small task on each shard copies into the shard and
//! turns into wake-ups. It also samples progress for [`Hooks::progress`].
//!
//! | phase | ends when |
//! |---|---|
//! | ramp | every connection joined all its channels (or the expected ramp time plus `ready_grace_ms` passed) |
//! | send | `duration` after sending started (100 ms after the ramp) |
//! | drain | every send is acked (or `drain_timeout_ms`) |
//! | exchange | [`Hooks::exchange`] turned this process's highest acked seq per channel into the run's (other worker processes' senders count too) |
//! | catch-up | every member has every acked message (or `drain_timeout_ms`) |
//! | stop | every connection closed and reported |
//!
//! The result ([`RunResult`]) holds the merged measurements; a parent
//! process merges its workers' results the same way ([`RunResult::merge`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use serde::{Deserialize, Serialize};

use crate::abuse::{AbuseStats, Abuser};
use crate::checker::Violations;
use crate::client::{self, ShardCtx, READ_BUFFER_BYTES};
use crate::clock::Clock;
use crate::config::{ConfigError, RunConfig, Target};
use crate::progress::ProgressSnapshot;
use crate::scenario::{self, Plan};
use crate::session::{Phase, PhaseView, Session};
use crate::shared::Shared;
use crate::stats::{
    Counters, HistogramData, LatencyHistogram, LatencyWindows, ShardStats, WindowsData,
};

/// Registered I/O memory per client shard: the load generator does no
/// direct file I/O, so the minimum keeps memlock use small.
const IO_MEMORY: usize = 64 * 1024;

/// How often the coordinator samples progress.
const TICK: Duration = Duration::from_millis(250);

/// How often each shard looks for a phase change.
const PHASE_POLL: Duration = Duration::from_millis(5);

/// When no connection at all has succeeded this long after the expected end
/// of the ramp (µs), the run gives up.
const GIVE_UP_AFTER_US: u64 = 5_000_000;

/// How often each shard publishes its counters for the progress line.
const PUBLISH_EVERY_US: u64 = 100_000;

/// Why a run could not be carried out (as opposed to a run that found
/// violations, which is a successful run with a failing report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client shards could not start.
    #[error("starting client shards: {0}")]
    Executor(String),
    /// This process may not open enough files for its connections.
    #[error(
        "{needed} connections need about {needed} open files in one process but the limit \
         is {limit}; use --procs to spread them over processes"
    )]
    FileLimit {
        /// Files needed (connections plus a margin).
        needed: u64,
        /// The process's open-file limit.
        limit: u64,
    },
    /// A worker process failed or said something unexpected.
    #[error("worker process {index}: {reason}")]
    Worker {
        /// The worker's index.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// No connection succeeded during the ramp (and its grace period).
    #[error("no connection to the target succeeded ({attempts} attempts failed); first errors: {errors}")]
    CannotConnect {
        /// Failed attempts.
        attempts: u64,
        /// The first distinct errors, `; `-separated.
        errors: String,
    },
    /// Spawning or talking to worker processes failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What the coordinator reports to and asks of its surroundings: the
/// progress display in a plain run, the parent process in a worker.
pub trait Hooks {
    /// A progress sample (about every 250 ms).
    fn progress(&mut self, phase: Phase, snapshot: &ProgressSnapshot);

    /// Turns this process's highest acked seq per channel into the run's
    /// (element-wise maximum over all processes). A single process returns
    /// its input.
    fn exchange(&mut self, max_acked: Vec<u64>) -> Result<Vec<u64>, RunError>;
}

/// The measurements of one process (or, merged, of a whole run).
#[derive(Debug, Default)]
pub struct RunResult {
    /// Connections run.
    pub connections: usize,
    /// Everything measured, merged over shards (and processes).
    pub stats: ShardStats,
    /// How long the ramp took, µs (the longest over processes).
    pub ramp_us: u64,
    /// How long sending lasted, µs.
    pub send_us: u64,
    /// How long the drain and catch-up took, µs.
    pub drain_us: u64,
    /// Connections established during the ramp.
    pub ramp_connects: u64,
    /// Whether every send was acked before the drain timeout.
    pub drained: bool,
    /// Whether every member caught up before the timeout.
    pub caught_up: bool,
}

/// [`RunResult`] in the form a worker process sends to its parent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResultData {
    /// See [`RunResult::connections`].
    pub connections: usize,
    /// See [`ShardStats::counters`].
    pub counters: Counters,
    /// See [`ShardStats::violations`].
    pub violations: Violations,
    /// See [`ShardStats::delivery`].
    pub latency: HistogramData,
    /// See [`ShardStats::ack`].
    pub ack_latency: HistogramData,
    /// See [`ShardStats::handshake`].
    #[serde(default)]
    pub handshake_latency: HistogramData,
    /// See [`ShardStats::rejoin`].
    #[serde(default)]
    pub rejoin_latency: HistogramData,
    /// See [`ShardStats::catch_up`].
    #[serde(default)]
    pub catch_up_latency: HistogramData,
    /// See [`RunResult::ramp_us`].
    pub ramp_us: u64,
    /// See [`RunResult::send_us`].
    pub send_us: u64,
    /// See [`RunResult::drain_us`].
    pub drain_us: u64,
    /// See [`RunResult::ramp_connects`].
    pub ramp_connects: u64,
    /// See [`RunResult::drained`].
    pub drained: bool,
    /// See [`RunResult::caught_up`].
    pub caught_up: bool,
    /// See [`ShardStats::error_samples`].
    #[serde(default)]
    pub error_samples: Vec<String>,
    /// See [`ShardStats::slow_delivery`].
    #[serde(default)]
    pub slow_latency: HistogramData,
    /// See [`ShardStats::windows`].
    #[serde(default)]
    pub windows: WindowsData,
    /// See [`ShardStats::abuse`].
    #[serde(default)]
    pub abuse: AbuseStats,
}

impl RunResult {
    /// Adds another process's result (times: the longest).
    pub fn merge(&mut self, other: &RunResult) {
        self.connections += other.connections;
        self.stats.merge(&other.stats);
        self.ramp_us = self.ramp_us.max(other.ramp_us);
        self.send_us = self.send_us.max(other.send_us);
        self.drain_us = self.drain_us.max(other.drain_us);
        self.ramp_connects += other.ramp_connects;
        self.drained &= other.drained;
        self.caught_up &= other.caught_up;
    }

    /// The serialisable form.
    #[must_use]
    pub fn to_data(&self) -> RunResultData {
        RunResultData {
            connections: self.connections,
            counters: self.stats.counters,
            violations: self.stats.violations,
            latency: self.stats.delivery.to_data(),
            ack_latency: self.stats.ack.to_data(),
            handshake_latency: self.stats.handshake.to_data(),
            rejoin_latency: self.stats.rejoin.to_data(),
            catch_up_latency: self.stats.catch_up.to_data(),
            ramp_us: self.ramp_us,
            send_us: self.send_us,
            drain_us: self.drain_us,
            ramp_connects: self.ramp_connects,
            drained: self.drained,
            caught_up: self.caught_up,
            error_samples: self.stats.error_samples.clone(),
            slow_latency: self.stats.slow_delivery.to_data(),
            windows: self.stats.windows.to_data(),
            abuse: self.stats.abuse.clone(),
        }
    }

    /// Back from the serialisable form.
    #[must_use]
    pub fn from_data(d: &RunResultData) -> RunResult {
        RunResult {
            connections: d.connections,
            stats: ShardStats {
                delivery: LatencyHistogram::from_data(&d.latency),
                slow_delivery: LatencyHistogram::from_data(&d.slow_latency),
                windows: LatencyWindows::from_data(&d.windows),
                abuse: d.abuse.clone(),
                ack: LatencyHistogram::from_data(&d.ack_latency),
                handshake: LatencyHistogram::from_data(&d.handshake_latency),
                rejoin: LatencyHistogram::from_data(&d.rejoin_latency),
                catch_up: LatencyHistogram::from_data(&d.catch_up_latency),
                counters: d.counters,
                violations: d.violations,
                conns_up: 0,
                error_samples: d.error_samples.clone(),
            },
            ramp_us: d.ramp_us,
            send_us: d.send_us,
            drain_us: d.drain_us,
            ramp_connects: d.ramp_connects,
            drained: d.drained,
            caught_up: d.caught_up,
        }
    }
}

/// Hooks for a single process: no exchange, progress to a callback.
pub struct LocalHooks<F: FnMut(Phase, &ProgressSnapshot)> {
    /// Called with each progress sample.
    pub on_progress: F,
}

impl<F: FnMut(Phase, &ProgressSnapshot)> Hooks for LocalHooks<F> {
    fn progress(&mut self, phase: Phase, snapshot: &ProgressSnapshot) {
        (self.on_progress)(phase, snapshot);
    }

    fn exchange(&mut self, max_acked: Vec<u64>) -> Result<Vec<u64>, RunError> {
        Ok(max_acked)
    }
}

/// What each shard is started with.
struct ShardParams {
    cfg: RunConfig,
    plan: Arc<Plan>,
    /// The gateway(s): connection `i` of the plan starts at
    /// `targets[i % len]` and moves to the next one on each reconnect.
    targets: Vec<Target>,
    sources: Vec<std::net::IpAddr>,
    shared: Arc<Shared>,
    clock: Clock,
    ramp_start_us: u64,
    /// µs between connection starts in this process (0: all at once).
    ramp_interval_us: f64,
    next_shard: AtomicUsize,
    seed: u64,
}

/// Runs this process's part of the scenario in `cfg` and returns its
/// measurements. Blocks until the run is over.
pub fn run(cfg: &RunConfig, hooks: &mut dyn Hooks) -> Result<RunResult, RunError> {
    let targets = cfg.validate()?;
    let plan =
        Arc::new(scenario::plan(&cfg.scenario).map_err(|e| ConfigError::Invalid(e.to_string()))?);
    let (index, count) = cfg.worker.map_or((0, 1), |w| (w.index, w.count));
    let local = plan.slice(index, count).len();
    check_file_limit(local)?;
    let nr_shards = cfg.shards.min(local.max(1));
    let shared = Arc::new(Shared::new(plan.channels.len(), nr_shards));
    let clock = Clock::new();
    let ramp_per_proc = cfg.ramp / count as f64;
    let ramp_interval_us = if ramp_per_proc > 0.0 {
        1e6 / ramp_per_proc
    } else {
        0.0
    };
    let ramp_start_us = clock.now_us() + 50_000;
    let params = Arc::new(ShardParams {
        cfg: cfg.clone(),
        plan: plan.clone(),
        sources: cfg.source_ips(&targets),
        targets,
        shared: shared.clone(),
        clock,
        ramp_start_us,
        ramp_interval_us,
        next_shard: AtomicUsize::new(0),
        seed: seed_of(&cfg.scenario.run_id),
    });
    let placement = if cfg.pin {
        PoolPlacement::MaxSpread(nr_shards, CpuSet::online().ok())
    } else {
        PoolPlacement::Unbound(nr_shards)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("loadgen")
        .io_memory(IO_MEMORY)
        .on_all_shards({
            let params = params.clone();
            move || run_shard(params, nr_shards)
        })
        .map_err(|e| RunError::Executor(e.to_string()))?;

    let mut coord = Coordinator {
        shared: &shared,
        clock,
        hooks,
        phase: Phase::Ramp,
        local,
    };
    // Ramp.
    let expected_ramp_us = (local as f64 * ramp_interval_us) as u64;
    let ready_deadline = ramp_start_us + expected_ramp_us + cfg.ready_grace_ms * 1000;
    // Give up early when nothing connects at all (wrong target, refused).
    let give_up_at = ramp_start_us + expected_ramp_us + GIVE_UP_AFTER_US;
    coord.wait(ready_deadline, |s| {
        s.ready.load(Ordering::Relaxed) >= local
            || (clock.now_us() >= give_up_at && s.nothing_connects())
    });
    if local > 0 && shared.nothing_connects() {
        coord.set(Phase::Stop, 0, 0);
        let mut stats = ShardStats::default();
        for s in handles.join_all().into_iter().flatten() {
            stats.merge(&s);
        }
        return Err(RunError::CannotConnect {
            attempts: stats.counters.connect_errors,
            errors: stats.error_samples.join("; "),
        });
    }
    let ramp_us = clock.now_us().saturating_sub(ramp_start_us);
    // The progress counters lag by up to 100 ms; the ready count does not.
    let ramp_connects = shared.ready.load(Ordering::Relaxed) as u64;
    // Send.
    let send_start_us = clock.now_us() + 100_000;
    let send_end_us = send_start_us + cfg.duration_ms * 1000;
    coord.set(Phase::Send, send_start_us, send_end_us);
    coord.wait(send_end_us, |_| false);
    // Drain: acks.
    let drain_start = clock.now_us();
    coord.set(Phase::Drain, send_start_us, send_end_us);
    let drain_deadline = drain_start + cfg.drain_timeout_ms * 1000;
    let drained = coord.wait(drain_deadline, |s| s.acked.load(Ordering::Relaxed) >= local);
    // Exchange, then catch-up.
    let local_max: Vec<u64> = shared
        .max_acked
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let exchanged = coord.hooks.exchange(local_max);
    let exchange_ok = exchanged.is_ok();
    if let Ok(targets) = &exchanged {
        for (t, v) in shared.targets.iter().zip(targets) {
            t.store(*v, Ordering::Relaxed);
        }
    }
    let caught_up = if exchange_ok {
        coord.set(Phase::CatchUp, send_start_us, send_end_us);
        let deadline = clock.now_us() + cfg.drain_timeout_ms * 1000;
        coord.wait(deadline, |s| s.caught_up.load(Ordering::Relaxed) >= local)
    } else {
        false
    };
    let drain_us = clock.now_us().saturating_sub(drain_start);
    // Stop.
    coord.set(Phase::Stop, send_start_us, send_end_us);
    let mut stats = ShardStats::default();
    let mut shard_error = None;
    for result in handles.join_all() {
        match result {
            Ok(s) => stats.merge(&s),
            Err(e) => shard_error = Some(e.to_string()),
        }
    }
    if let Some(e) = shard_error {
        return Err(RunError::Executor(e));
    }
    exchanged?;
    Ok(RunResult {
        connections: local,
        stats,
        ramp_us,
        send_us: send_end_us.saturating_sub(send_start_us),
        drain_us,
        ramp_connects,
        drained,
        caught_up,
    })
}

/// A stable seed from the run id (FNV-1a).
fn seed_of(run_id: &str) -> u64 {
    run_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Raises the open-file limit and checks it covers `conns` connections.
fn check_file_limit(conns: usize) -> Result<(), RunError> {
    let limit = crate::sys::raise_open_file_limit().unwrap_or(u64::MAX);
    let needed = conns as u64 + 256;
    if needed > limit {
        return Err(RunError::FileLimit { needed, limit });
    }
    Ok(())
}

struct Coordinator<'a> {
    shared: &'a Shared,
    clock: Clock,
    hooks: &'a mut dyn Hooks,
    phase: Phase,
    local: usize,
}

impl Coordinator<'_> {
    fn set(&mut self, phase: Phase, send_start_us: u64, send_end_us: u64) {
        self.phase = phase;
        self.shared.set_phase(PhaseView {
            phase,
            send_start_us,
            send_end_us,
        });
    }

    /// Waits until `done` or `deadline` (µs), reporting progress. Returns
    /// whether `done` became true. Stops early if every connection task
    /// ended (nothing can change any more).
    fn wait(&mut self, deadline: u64, done: impl Fn(&Shared) -> bool) -> bool {
        loop {
            if done(self.shared) {
                self.hooks.progress(self.phase, &self.shared.snapshot());
                return true;
            }
            let now = self.clock.now_us();
            if now >= deadline || self.shared.finished.load(Ordering::Relaxed) >= self.local {
                self.hooks.progress(self.phase, &self.shared.snapshot());
                return false;
            }
            self.hooks.progress(self.phase, &self.shared.snapshot());
            let left = Duration::from_micros(deadline - now);
            let step = left.min(TICK);
            // Check the condition often, report progress every TICK.
            let until = std::time::Instant::now() + step;
            while std::time::Instant::now() < until {
                if done(self.shared) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// One client shard: its connection tasks and its phase watcher.
async fn run_shard(params: Arc<ShardParams>, nr_shards: usize) -> ShardStats {
    let shard_id = params.next_shard.fetch_add(1, Ordering::Relaxed) % nr_shards;
    let (index, count) = params.cfg.worker.map_or((0, 1), |w| (w.index, w.count));
    let conns: Vec<(usize, &scenario::ConnSpec)> = params
        .plan
        .slice(index, count)
        .iter()
        .enumerate()
        .filter(|(j, _)| j % nr_shards == shard_id)
        .collect();
    // Abusers: all in the first worker process, spread over its shards.
    let abusers: Vec<_> = if index == 0 {
        params
            .plan
            .abusers
            .iter()
            .enumerate()
            .filter(|(j, _)| j % nr_shards == shard_id)
            .map(|(_, a)| a.clone())
            .collect()
    } else {
        Vec::new()
    };
    let mut stats = ShardStats {
        windows: LatencyWindows::new(params.cfg.latency_window_ms * 1000),
        ..ShardStats::default()
    };
    stats.abuse.abusers = abusers.len() as u64;
    let ctx = Rc::new(ShardCtx {
        clock: params.clock,
        shared: params.shared.clone(),
        targets: params.targets.clone(),
        token_secret: params
            .cfg
            .token_secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec()),
        compress: params.cfg.compress,
        inflater: RefCell::new(chat_proto::deflate::Inflater::new()),
        rbuf: RefCell::new(vec![0; READ_BUFFER_BYTES]),
        stats: RefCell::new(stats),
        epoch: Cell::new(params.shared.epoch.load(Ordering::Acquire)),
        phase: Cell::new(params.shared.phase()),
        wakers: RefCell::new(vec![None; conns.len() + abusers.len()]),
        read_ring: crate::ready::ReadRing::new(conns.len()),
    });
    if ctx.read_ring.is_none() && shard_id == 0 {
        // Still correct, but every segment the server sends then
        // interrupts loadgen's CPU (and costs the server the interrupt):
        // figures are not comparable with runs that had the ring.
        eprintln!(
            "loadgen: no io_uring with COOP_TASKRUN here (Linux 5.19+); reading through \
             glommio, which interrupts loadgen's CPU per segment received"
        );
    }
    // Forwards the read ring's completions; dropped with the executor.
    let _ready = ctx.read_ring.as_ref().map(crate::ready::run);
    let first_abuser_slot = conns.len();
    let mut tasks = Vec::with_capacity(conns.len());
    for (slot, (j, spec)) in conns.into_iter().enumerate() {
        let start_at = params.ramp_start_us + (j as f64 * params.ramp_interval_us) as u64;
        let session = Session::new(
            spec,
            &params.plan.channels,
            params.cfg.message_bytes,
            start_at,
            params.seed,
        );
        let source = if params.sources.is_empty() {
            None
        } else {
            Some(params.sources[spec.index as usize % params.sources.len()])
        };
        tasks.push(glommio::spawn_local(client::drive(
            ctx.clone(),
            slot,
            session,
            source,
            spec.index as usize,
        )));
    }
    for (j, spec) in abusers.into_iter().enumerate() {
        let abuser = Abuser::new(spec, params.seed);
        tasks.push(glommio::spawn_local(client::drive_abuser(
            ctx.clone(),
            first_abuser_slot + j,
            abuser,
        )));
    }
    let done = Rc::new(Cell::new(false));
    let watcher = glommio::spawn_local(watch(ctx.clone(), shard_id, done.clone()));
    for t in tasks {
        t.await;
    }
    done.set(true);
    watcher.await;
    let stats = std::mem::take(&mut *ctx.stats.borrow_mut());
    stats
}

/// Copies phase changes into the shard (waking every connection) and
/// publishes the shard's counters for the progress line.
async fn watch(ctx: Rc<ShardCtx>, shard_id: usize, done: Rc<Cell<bool>>) {
    let mut last_publish = 0;
    loop {
        let epoch = ctx.shared.epoch.load(Ordering::Acquire);
        if epoch != ctx.epoch.get() {
            ctx.phase.set(ctx.shared.phase());
            ctx.epoch.set(epoch);
            ctx.wake_all();
        }
        let now = ctx.clock.now_us();
        if now >= last_publish + PUBLISH_EVERY_US || done.get() {
            if let Some(slot) = ctx.shared.progress.get(shard_id) {
                slot.publish(&ctx.stats.borrow());
            }
            last_publish = now;
        }
        if done.get() {
            break;
        }
        glommio::timer::sleep(PHASE_POLL).await;
    }
}
