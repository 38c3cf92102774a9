//! `bench wake`: what it costs one thread to wake another and go back to
//! sleep, in glommio and on bare io_uring — the price of a message's hop to
//! a sleeping shard or to the committer thread, measured apart from the
//! gateway.
//!
//! Issue 14 leaves one decision open: keep glommio as each shard's executor
//! (the socket ring integrated with its reactor, as now) or have the shard's
//! loop drive its own io_uring. The profiles name glommio's park and wake as
//! the gateway's largest cost that Bun does not pay on two workloads: a
//! durable DM (the shard parks about twice per message, once for the
//! committer's answer) and a second shard (a message crosses to a peer that
//! is usually asleep). This measures that cost directly. Two threads pass a
//! token back and forth `round_trips` times; neither has anything else to
//! do, so each parks after it sends and is woken by the other's reply — two
//! park/wake cycles per round trip, the same cycle the gateway pays per hop.
//! The figure is the process's CPU (`getrusage(RUSAGE_SELF)`: both threads,
//! user and system) and the wall time per round trip, the median over
//! `runs` runs after one warm-up run.
//!
//! | case | the two sides | how a side sleeps | how it wakes the other |
//! |---|---|---|---|
//! | `glommio-mesh` | two glommio executors (the gateway's shards) | glommio's park | a `channel_mesh` send (the gateway's mesh) |
//! | `glommio-doorbell` | two glommio executors | glommio's park | a crossbeam queue and the gateway's `Doorbell` (wakes only a waiting receiver; the gateway's mesh since 12-05) |
//! | `glommio-thread` | a glommio executor and a plain thread (a shard and the committer) | glommio's park / crossbeam `recv` | crossbeam `send` / a `Waker` from the thread |
//! | `rt-doorbell` | two executors of the gateway's own runtime (`gateway::rt`, the shard loop to come) | one `io_uring_enter` waiting for its eventfd or a timer | a crossbeam queue and the `Doorbell` (as `glommio-doorbell`) |
//! | `rt-thread` | a `gateway::rt` executor and a plain thread | as `rt-doorbell` / crossbeam `recv` | as `glommio-thread` |
//! | `threads` | two plain threads | crossbeam `recv` (spin, yield, futex) | crossbeam `send` |
//! | `uring-eventfd` | two threads, an io_uring each | `io_uring_enter` waiting for a read of its eventfd | `write` to the other's eventfd |
//! | `uring-msg-ring` | two threads, an io_uring each | `io_uring_enter` | `IORING_OP_MSG_RING` into the other's ring, submitted with the wait (one syscall per side per hop) |
//!
//! `--cpus A,B` places the two sides (`0,0`: one CPU, as the bench's pinned
//! server, where every wake is a context switch; `0,1`: two CPUs, where a
//! wake is an interrupt to the other CPU — on a VM, a VM exit).
//!
//! The `unsafe` here is io_uring submissions (each references only an fd or
//! an 8-byte buffer that outlives the wait for its completion) and plain
//! `eventfd`/`write`/`read` calls on fds this module owns.

#![allow(unsafe_code)]

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};
use io_uring::{opcode, squeue, types, IoUring};
use serde::{Deserialize, Serialize};

use crate::sys::{pin_current_thread, process_cpu_s};

/// The cases, in the order they run.
pub const CASES: &[&str] = &[
    "glommio-mesh",
    "glommio-doorbell",
    "glommio-thread",
    "rt-doorbell",
    "rt-thread",
    "threads",
    "uring-eventfd",
    "uring-msg-ring",
];

/// What to run.
#[derive(Clone, Debug)]
pub struct WakeOptions {
    /// The CPUs of the two sides.
    pub cpus: (usize, usize),
    /// Round trips per run.
    pub round_trips: u64,
    /// Runs measured (after one warm-up run).
    pub runs: usize,
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WakeResult {
    /// Case name (`CASES`).
    pub name: String,
    /// The CPUs of the two sides, `A,B`.
    pub cpus: String,
    /// Round trips per run.
    pub round_trips: u64,
    /// Runs measured.
    pub runs: usize,
    /// Median wall time per round trip over the runs, ns.
    pub median_wall_ns: f64,
    /// Median process CPU (both sides, user + system) per round trip, ns.
    pub median_cpu_ns: f64,
    /// Lowest run's CPU per round trip, ns.
    pub min_cpu_ns: f64,
    /// Highest run's CPU per round trip, ns.
    pub max_cpu_ns: f64,
}

/// `results/wake-<timestamp>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WakeFile {
    /// Unix seconds.
    pub timestamp: u64,
    /// `uname`, CPUs and the like (`run::machine`).
    pub machine: crate::report::Machine,
    /// A debug build's figures are not comparable.
    pub debug_build: bool,
    /// One per case.
    pub results: Vec<WakeResult>,
}

/// One run: wall and CPU per round trip, ns.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall_ns: f64,
    cpu_ns: f64,
}

/// Times one run of `n` round trips from the side that starts them.
struct Timer {
    wall: Instant,
    cpu_s: f64,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu_s: process_cpu_s(),
        }
    }

    fn stop(self, n: u64) -> Sample {
        let cpu_s = process_cpu_s() - self.cpu_s;
        let wall_s = self.wall.elapsed().as_secs_f64();
        Sample {
            wall_ns: wall_s * 1e9 / n as f64,
            cpu_ns: cpu_s * 1e9 / n as f64,
        }
    }
}

/// Runs one case (a name from `CASES`). Both CPUs are checked first: a
/// side that could not be placed would run anywhere, and its figures would
/// be labelled with a layout they did not have.
pub fn run_case(name: &str, o: &WakeOptions) -> anyhow::Result<WakeResult> {
    for cpu in [o.cpus.0, o.cpus.1] {
        std::thread::spawn(move || pin_current_thread(cpu))
            .join()
            .map_err(|_| anyhow!("checking CPU {cpu}: the probe thread panicked"))?
            .with_context(|| format!("CPU {cpu} cannot run this process's threads (--cpus)"))?;
    }
    let samples = match name {
        "glommio-mesh" => glommio_mesh(o),
        "glommio-doorbell" => glommio_doorbell(o),
        "glommio-thread" => glommio_thread(o),
        "rt-doorbell" => rt_doorbell(o),
        "rt-thread" => rt_thread(o),
        "threads" => threads(o),
        "uring-eventfd" => uring_pair(o, Wake::Eventfd),
        "uring-msg-ring" => uring_pair(o, Wake::MsgRing),
        other => Err(anyhow!(
            "unknown case {other:?} (cases: {})",
            CASES.join(", ")
        )),
    }
    .with_context(|| format!("case {name}"))?;
    Ok(summarize(name, o, &samples))
}

fn summarize(name: &str, o: &WakeOptions, samples: &[Sample]) -> WakeResult {
    let mut wall: Vec<f64> = samples.iter().map(|s| s.wall_ns).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu_ns).collect();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    WakeResult {
        name: name.to_owned(),
        cpus: format!("{},{}", o.cpus.0, o.cpus.1),
        round_trips: o.round_trips,
        runs: samples.len(),
        median_wall_ns: median(&wall),
        median_cpu_ns: median(&cpu),
        min_cpu_ns: cpu.first().copied().unwrap_or(0.0),
        max_cpu_ns: cpu.last().copied().unwrap_or(0.0),
    }
}

/// Two glommio executors exchanging a token over a `channel_mesh`, as two
/// shards exchange `ShardMsg`s.
fn glommio_mesh(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    let mesh: MeshBuilder<u64, Full> = MeshBuilder::full(2, 1024);
    let mesh_b = mesh.clone();
    let b = LocalExecutorBuilder::new(Placement::Fixed(o.cpus.1))
        .name("wake-b")
        .spawn(move || async move {
            let Ok((tx, rx)) = mesh_b.join().await else {
                return;
            };
            let peer = 1 - tx.peer_id();
            while let Ok(Some(v)) = rx.recv_from(peer).await {
                if v == u64::MAX || tx.send_to(peer, v).await.is_err() {
                    break;
                }
            }
        })
        .map_err(|e| anyhow!("executor b: {e}"))?;
    let (n, runs) = (o.round_trips, o.runs);
    let a = LocalExecutorBuilder::new(Placement::Fixed(o.cpus.0))
        .name("wake-a")
        .spawn(move || async move {
            let (tx, rx) = mesh.join().await.map_err(|_| "mesh join failed")?;
            let peer = 1 - tx.peer_id();
            let mut samples = Vec::with_capacity(runs);
            for run in 0..=runs {
                let t = Timer::start();
                for i in 0..n {
                    tx.send_to(peer, i).await.map_err(|_| "peer gone")?;
                    match rx.recv_from(peer).await {
                        Ok(Some(v)) if v == i => {}
                        _ => return Err("wrong or no reply"),
                    }
                }
                if run > 0 {
                    samples.push(t.stop(n));
                }
            }
            let _ = tx.send_to(peer, u64::MAX).await;
            Ok(samples)
        })
        .map_err(|e| anyhow!("executor a: {e}"))?;
    let samples = a.join().map_err(|e| anyhow!("executor a: {e}"))?;
    b.join().map_err(|e| anyhow!("executor b: {e}"))?;
    samples.map_err(|e| anyhow!(e))
}

/// Two glommio executors exchanging a token over crossbeam queues, each
/// receiver woken by a `gateway::doorbell::Doorbell` (the gateway's mesh).
fn glommio_doorbell(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    let (side_a, side_b) = bell_pair();
    let b = LocalExecutorBuilder::new(Placement::Fixed(o.cpus.1))
        .name("wake-b")
        .spawn(move || side_b.answer())
        .map_err(|e| anyhow!("executor b: {e}"))?;
    let (n, runs) = (o.round_trips, o.runs);
    let a = LocalExecutorBuilder::new(Placement::Fixed(o.cpus.0))
        .name("wake-a")
        .spawn(move || async move {
            let result = side_a.ping(n, runs).await;
            // Stop b on every path, or its join below would wait forever.
            side_a.stop_peer();
            result
        })
        .map_err(|e| anyhow!("executor a: {e}"))?;
    let samples = a.join().map_err(|e| anyhow!("executor a: {e}"))?;
    b.join().map_err(|e| anyhow!("executor b: {e}"))?;
    samples.map_err(|e| anyhow!(e))
}

/// One side of a token passed over a crossbeam queue and the gateway's
/// `Doorbell` (`glommio-doorbell`, `rt-doorbell`: the same code on either
/// executor).
#[derive(Clone)]
struct BellSide {
    to_peer: crossbeam_channel::Sender<u64>,
    at_me: crossbeam_channel::Receiver<u64>,
    peer_bell: Arc<gateway::doorbell::Doorbell>,
    my_bell: Arc<gateway::doorbell::Doorbell>,
}

/// Two connected sides.
fn bell_pair() -> (BellSide, BellSide) {
    use gateway::doorbell::Doorbell;
    let (to_b, at_b) = crossbeam_channel::bounded::<u64>(1024);
    let (to_a, at_a) = crossbeam_channel::bounded::<u64>(1024);
    let (bell_a, bell_b) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
    (
        BellSide {
            to_peer: to_b,
            at_me: at_a,
            peer_bell: bell_b.clone(),
            my_bell: bell_a.clone(),
        },
        BellSide {
            to_peer: to_a,
            at_me: at_b,
            peer_bell: bell_a,
            my_bell: bell_b,
        },
    )
}

impl BellSide {
    /// Side b: sends every token back until the stop token, or until a is
    /// gone.
    async fn answer(self) {
        loop {
            self.my_bell.wait(|| !self.at_me.is_empty()).await;
            while let Ok(v) = self.at_me.try_recv() {
                if v == u64::MAX || self.to_peer.try_send(v).is_err() {
                    return;
                }
                self.peer_bell.ring();
            }
        }
    }

    /// Side a: `runs` timed runs of `n` round trips after one warm-up run.
    async fn ping(&self, n: u64, runs: usize) -> Result<Vec<Sample>, &'static str> {
        let mut samples = Vec::with_capacity(runs);
        for run in 0..=runs {
            let t = Timer::start();
            for i in 0..n {
                self.to_peer.try_send(i).map_err(|_| "peer gone")?;
                self.peer_bell.ring();
                self.my_bell.wait(|| !self.at_me.is_empty()).await;
                if self.at_me.try_recv() != Ok(i) {
                    return Err("wrong or no reply");
                }
            }
            if run > 0 {
                samples.push(t.stop(n));
            }
        }
        Ok(samples)
    }

    /// Tells the peer to stop (it empties its queue before it waits, so
    /// there is room; a failed send means it has already gone).
    fn stop_peer(&self) {
        let _ = self.to_peer.try_send(u64::MAX);
        self.peer_bell.ring();
    }
}

/// A flag a plain thread sets and a glommio task awaits (the committer's
/// answer to a shard: set, then wake the task's `Waker`).
#[derive(Default)]
struct Flag {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Flag {
    fn raise(&self) {
        self.set.store(true, Ordering::Release);
        let waker = self.waker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Lowered<'a>(&'a Flag);

impl Future for Lowered<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        if let Ok(mut w) = self.0.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        if self.0.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// A glommio executor and a plain thread: the shard hands a job to the
/// committer over crossbeam and awaits its answer.
fn glommio_thread(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    let (tx, b) = flag_thread(o.cpus.1)?;
    let (n, runs) = (o.round_trips, o.runs);
    let a = LocalExecutorBuilder::new(Placement::Fixed(o.cpus.0))
        .name("wake-a")
        .spawn(move || flag_ping(tx, n, runs))
        .map_err(|e| anyhow!("executor a: {e}"))?;
    let samples = a.join().map_err(|e| anyhow!("executor a: {e}"))?;
    b.join().map_err(|_| anyhow!("thread b panicked"))?;
    samples.map_err(|e| anyhow!(e))
}

/// What the executor sends the plain thread: a flag to raise, or `None`
/// to stop.
type FlagSender = crossbeam_channel::Sender<Option<Arc<Flag>>>;

/// The plain thread of `glommio-thread` and `rt-thread`: raises every flag
/// it is sent until it is sent `None` or the sender is gone.
fn flag_thread(cpu: usize) -> anyhow::Result<(FlagSender, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded::<Option<Arc<Flag>>>();
    let b = std::thread::Builder::new()
        .name("wake-b".into())
        .spawn(move || {
            let _ = pin_current_thread(cpu);
            while let Ok(Some(flag)) = rx.recv() {
                flag.raise();
            }
        })?;
    Ok((tx, b))
}

/// The executor's side of `glommio-thread` and `rt-thread`: `runs` timed
/// runs of `n` round trips after one warm-up run, then stops the thread.
async fn flag_ping(tx: FlagSender, n: u64, runs: usize) -> Result<Vec<Sample>, &'static str> {
    let flag = Arc::new(Flag::default());
    let mut samples = Vec::with_capacity(runs);
    for run in 0..=runs {
        let t = Timer::start();
        for _ in 0..n {
            if tx.send(Some(flag.clone())).is_err() {
                return Err("thread gone");
            }
            Lowered(&flag).await;
        }
        if run > 0 {
            samples.push(t.stop(n));
        }
    }
    let _ = tx.send(None);
    Ok(samples)
}

/// Runs `f` on a new thread pinned to `cpu`, inside a `gateway::rt`
/// executor.
fn rt_side<T: Send + 'static>(
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
    Ok(std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            pin_current_thread(cpu)?;
            Ok(f())
        })?)
}

/// Two executors of the gateway's own runtime over a crossbeam queue and a
/// `Doorbell` each: `glommio-doorbell` with the park replaced.
fn rt_doorbell(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    use gateway::rt;
    let (side_a, side_b) = bell_pair();
    let stopper = side_a.clone();
    let b = rt_side("wake-b", o.cpus.1, move || rt::block_on(side_b.answer()))?;
    let (n, runs) = (o.round_trips, o.runs);
    let a = rt_side("wake-a", o.cpus.0, move || {
        rt::block_on(async move { side_a.ping(n, runs).await })
    });
    let samples = a.and_then(|a| a.join().map_err(|_| anyhow!("side a panicked")));
    // Stop b on every path, or its join would wait forever (a may not have
    // started, or not have reached its executor).
    stopper.stop_peer();
    let stopped = b.join().map_err(|_| anyhow!("side b panicked"))?;
    stopped?.map_err(|e| anyhow!("executor b: {e}"))?;
    samples??
        .map_err(|e| anyhow!("executor a: {e}"))?
        .map_err(|e| anyhow!(e))
}

/// A `gateway::rt` executor and a plain thread: `glommio_thread` with the
/// park replaced.
fn rt_thread(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    use gateway::rt;
    let (tx, b) = flag_thread(o.cpus.1)?;
    let (n, runs) = (o.round_trips, o.runs);
    let a = rt_side("wake-a", o.cpus.0, move || {
        rt::block_on(flag_ping(tx, n, runs))
    });
    // Whatever happened to a, its sender is gone by now and b ends.
    let samples = a.and_then(|a| a.join().map_err(|_| anyhow!("side a panicked")));
    b.join().map_err(|_| anyhow!("thread b panicked"))?;
    samples??
        .map_err(|e| anyhow!("executor a: {e}"))?
        .map_err(|e| anyhow!(e))
}

/// Two plain threads over crossbeam channels.
fn threads(o: &WakeOptions) -> anyhow::Result<Vec<Sample>> {
    let (to_b, from_a) = crossbeam_channel::unbounded::<u64>();
    let (to_a, from_b) = crossbeam_channel::unbounded::<u64>();
    let cpu_b = o.cpus.1;
    let b = std::thread::Builder::new()
        .name("wake-b".into())
        .spawn(move || {
            let _ = pin_current_thread(cpu_b);
            while let Ok(v) = from_a.recv() {
                if v == u64::MAX || to_a.send(v).is_err() {
                    break;
                }
            }
        })?;
    pin_current_thread(o.cpus.0).context("pinning side a")?;
    let mut samples = Vec::with_capacity(o.runs);
    for run in 0..=o.runs {
        let t = Timer::start();
        for i in 0..o.round_trips {
            to_b.send(i).map_err(|_| anyhow!("thread b gone"))?;
            if from_b.recv() != Ok(i) {
                return Err(anyhow!("wrong or no reply"));
            }
        }
        if run > 0 {
            samples.push(t.stop(o.round_trips));
        }
    }
    let _ = to_b.send(u64::MAX);
    b.join().map_err(|_| anyhow!("thread b panicked"))?;
    Ok(samples)
}

/// How an io_uring side wakes the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// `write` to the other's eventfd, which its ring has a read armed on.
    Eventfd,
    /// `IORING_OP_MSG_RING` into the other's ring.
    MsgRing,
}

/// One side of an io_uring pair: its ring, its eventfd and the other's.
struct Side {
    ring: IoUring,
    efd: OwnedFd,
    peer_efd: RawFd,
    peer_ring: RawFd,
    how: Wake,
    buf: Box<[u8; 8]>,
    /// A read of `efd` into `buf` was submitted and has not completed.
    read_in_kernel: bool,
}

impl Drop for Side {
    fn drop(&mut self) {
        if self.read_in_kernel {
            // The ring is torn down after this; a read still in the kernel
            // must not land in freed memory: leak its 8 bytes.
            std::mem::forget(std::mem::replace(&mut self.buf, Box::new([0; 8])));
        }
    }
}

const READ_DONE: u64 = 1;
const STOP: u64 = u64::MAX;

impl Side {
    /// Queues what lets this side be woken: a read of its eventfd (the
    /// `MsgRing` side needs nothing armed).
    fn arm(&mut self) -> anyhow::Result<()> {
        if self.how == Wake::Eventfd {
            let read = opcode::Read::new(types::Fd(self.efd.as_raw_fd()), self.buf.as_mut_ptr(), 8)
                .build()
                .user_data(READ_DONE);
            // SAFETY: the buffer is this side's and outlives the read: the
            // read is submitted with the next wait and completes before the
            // next arm; a side dropped with a read still submitted leaks
            // the buffer (`Drop`).
            unsafe { self.ring.submission().push(&read) }.map_err(|_| anyhow!("sq full"))?;
        }
        Ok(())
    }

    /// Wakes the other side with `token`, then sleeps until woken; returns
    /// the token it was woken with (the eventfd case carries none: 0).
    fn wake_then_wait(&mut self, token: Option<u64>) -> anyhow::Result<u64> {
        if let Some(t) = token {
            match self.how {
                Wake::Eventfd => {
                    let one = if t == STOP { 2u64 } else { 1u64 };
                    // SAFETY: an 8-byte write from a local to an eventfd.
                    let n = unsafe { libc::write(self.peer_efd, (&raw const one).cast(), 8) };
                    if n != 8 {
                        return Err(std::io::Error::last_os_error().into());
                    }
                }
                Wake::MsgRing => {
                    let msg = opcode::MsgRingData::new(types::Fd(self.peer_ring), 0, t, None)
                        .build()
                        .flags(squeue::Flags::SKIP_SUCCESS)
                        .user_data(0);
                    // SAFETY: the entry references no memory.
                    unsafe { self.ring.submission().push(&msg) }.map_err(|_| anyhow!("sq full"))?;
                }
            }
        }
        loop {
            if self.how == Wake::Eventfd {
                self.read_in_kernel = true;
            }
            match self.ring.submit_and_wait(1) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            let cqe = self.ring.completion().next();
            let Some(cqe) = cqe else { continue };
            if cqe.result() < 0 {
                return Err(std::io::Error::from_raw_os_error(-cqe.result()).into());
            }
            return Ok(match self.how {
                Wake::Eventfd => {
                    self.read_in_kernel = false;
                    let v = u64::from_ne_bytes(*self.buf);
                    self.arm()?;
                    if v >= 2 {
                        STOP
                    } else {
                        0
                    }
                }
                Wake::MsgRing => cqe.user_data(),
            });
        }
    }
}

impl Side {
    /// Tells the other side to stop (its wait returns `STOP`); errors are
    /// ignored — this runs on the way out.
    fn stop_peer(&mut self) {
        match self.how {
            Wake::Eventfd => {
                let two = 2u64;
                // SAFETY: an 8-byte write from a local to the other side's
                // eventfd (alive until both sides are done).
                let _ = unsafe { libc::write(self.peer_efd, (&raw const two).cast(), 8) };
            }
            Wake::MsgRing => {
                let msg = opcode::MsgRingData::new(types::Fd(self.peer_ring), 0, STOP, None)
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS);
                // SAFETY: the entry references no memory.
                if unsafe { self.ring.submission().push(&msg) }.is_ok() {
                    let _ = self.ring.submit();
                }
            }
        }
    }
}

fn eventfd() -> anyhow::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Two threads, each sleeping in `io_uring_enter` on a ring of its own —
/// the loop a shard would run if it drove its ring itself.
fn uring_pair(o: &WakeOptions, how: Wake) -> anyhow::Result<Vec<Sample>> {
    let (ring_a, ring_b) = (IoUring::new(64)?, IoUring::new(64)?);
    let (efd_a, efd_b) = (eventfd()?, eventfd()?);
    let mut a = Side {
        peer_efd: efd_b.as_raw_fd(),
        peer_ring: ring_b.as_raw_fd(),
        ring: ring_a,
        efd: efd_a,
        how,
        buf: Box::new([0; 8]),
        read_in_kernel: false,
    };
    let mut b = Side {
        peer_efd: a.efd.as_raw_fd(),
        peer_ring: a.ring.as_raw_fd(),
        ring: ring_b,
        efd: efd_b,
        how,
        buf: Box::new([0; 8]),
        read_in_kernel: false,
    };
    a.arm()?;
    b.arm()?;
    // Both rings and eventfds live until both threads are done: b's
    // thread hands its side back, and each side tells the other to stop on
    // every way out, so neither waits for a reply that cannot come.
    let cpu_b = o.cpus.1;
    let b = std::thread::Builder::new().name("wake-b".into()).spawn(
        move || -> (Side, anyhow::Result<()>) {
            let _ = pin_current_thread(cpu_b);
            let mut token = None;
            let result = loop {
                match b.wake_then_wait(token) {
                    Ok(STOP) => break Ok(()),
                    Ok(got) => token = Some(got),
                    Err(e) => break Err(e),
                }
            };
            if result.is_err() {
                b.stop_peer();
            }
            (b, result)
        },
    )?;
    let result = (|| -> anyhow::Result<Vec<Sample>> {
        pin_current_thread(o.cpus.0).context("pinning side a")?;
        let mut samples = Vec::with_capacity(o.runs);
        for run in 0..=o.runs {
            let t = Timer::start();
            for i in 0..o.round_trips {
                let got = a.wake_then_wait(Some(i))?;
                if got == STOP {
                    return Err(anyhow!("side b stopped"));
                }
                if how == Wake::MsgRing && got != i {
                    return Err(anyhow!("wrong reply {got} for {i}"));
                }
            }
            if run > 0 {
                samples.push(t.stop(o.round_trips));
            }
        }
        Ok(samples)
    })();
    a.stop_peer();
    let (b, b_result) = b.join().map_err(|_| anyhow!("thread b panicked"))?;
    drop((a, b));
    b_result.context("side b")?;
    result
}

/// The results as a Markdown table.
#[must_use]
pub fn markdown(results: &[WakeResult]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "| case | CPUs | round trips × runs | wall per round trip | CPU per round trip (min–max) | CPU per wake |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} × {} | {:.1} µs | {:.1} µs ({:.1}–{:.1}) | {:.1} µs |",
            r.name,
            r.cpus,
            r.round_trips,
            r.runs,
            r.median_wall_ns / 1e3,
            r.median_cpu_ns / 1e3,
            r.min_cpu_ns / 1e3,
            r.max_cpu_ns / 1e3,
            r.median_cpu_ns / 2e3,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> WakeOptions {
        WakeOptions {
            cpus: (0, 0),
            round_trips: 1_000,
            runs: 2,
        }
    }

    /// `run_case` on a thread of its own, failing after `secs` (a case
    /// whose sides lose each other hangs).
    fn run_within(name: &'static str, secs: u64) -> anyhow::Result<WakeResult> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run_case(name, &quick()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("{name} did not finish in {secs} s"))
    }

    #[test]
    fn every_case_completes_its_round_trips_and_reports_a_cost() {
        for name in CASES {
            let r = run_within(name, 60).expect(name);
            assert_eq!(r.runs, 2, "{name}");
            assert!(r.median_wall_ns > 0.0, "{name}: {r:?}");
            assert!(r.median_cpu_ns > 0.0, "{name}: {r:?}");
        }
    }

    #[test]
    fn a_cpu_the_process_cannot_use_is_refused_before_anything_runs() {
        let mut o = quick();
        o.cpus = (0, 4000);
        let e = run_case("threads", &o).expect_err("no CPU 4000");
        assert!(format!("{e:#}").contains("CPU 4000"), "{e:#}");
    }

    #[test]
    fn an_unknown_case_is_refused_by_name() {
        let e = run_case("carrier-pigeon", &quick()).expect_err("unknown");
        assert!(format!("{e:#}").contains("carrier-pigeon"));
    }
}
