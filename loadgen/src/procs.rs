//! Several worker processes, one result.
//!
//! One process may open only so many files (20,000 here), so `--procs P`
//! runs P copies of this executable as workers (the hidden `worker`
//! subcommand), each with the whole configuration plus its slot; each plans
//! the same scenario and runs its own contiguous slice of the connections
//! ([`crate::scenario::Plan::slice`]). Parent and workers talk in JSON
//! lines, workers on their standard output, the parent on their standard
//! input ([`WorkerMsg`], [`ParentMsg`]); workers' standard error goes to the
//! terminal.
//!
//! The one point where workers need each other is the end: a member in
//! worker A must receive what senders in worker B had acked. So after the
//! drain every worker sends its highest acked seq per channel
//! ([`WorkerMsg::Acked`]); when all have, the parent answers each with the
//! element-wise maximum ([`ParentMsg::Targets`]) and the workers wait for
//! their members to reach it. If a worker fails, the parent closes every
//! worker's input: they stop waiting, finish and report what they have.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{RunConfig, WorkerSlot, TOKEN_SECRET_ENV};
use crate::progress::ProgressSnapshot;
use crate::run::{run, Hooks, RunError, RunResult, RunResultData};
use crate::session::Phase;

/// A line from a worker to the parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// A progress sample.
    Progress {
        /// The worker's phase.
        phase: Phase,
        /// Its counters.
        snapshot: ProgressSnapshot,
    },
    /// Sending and its acks are over: the highest acked seq per channel.
    Acked {
        /// Indexed by channel id.
        max_acked: Vec<u64>,
    },
    /// The worker's measurements; its last line.
    Result {
        /// The measurements.
        result: Box<RunResultData>,
    },
    /// The worker could not run; its last line.
    Failed {
        /// Why.
        message: String,
    },
}

/// A line from the parent to a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParentMsg {
    /// The run's highest acked seq per channel.
    Targets {
        /// Indexed by channel id.
        targets: Vec<u64>,
    },
}

/// Runs `cfg` in `cfg.procs` worker processes of `exe` (this executable)
/// and merges their results. `on_progress` gets the summed progress.
pub fn run_procs(
    cfg: &RunConfig,
    exe: &Path,
    on_progress: &mut dyn FnMut(Phase, &ProgressSnapshot),
) -> Result<RunResult, RunError> {
    let p = cfg.procs.max(1);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Option<String>)>();
    let mut children = Vec::with_capacity(p);
    let mut stdins = Vec::with_capacity(p);
    for index in 0..p {
        let mut wcfg = cfg.clone();
        wcfg.worker = Some(WorkerSlot { index, count: p });
        wcfg.procs = 1;
        let json = serde_json::to_string(&wcfg).map_err(|e| RunError::Worker {
            index,
            reason: e.to_string(),
        })?;
        let mut command = Command::new(exe);
        command.arg("worker").arg("--config").arg(json);
        // The secret goes by environment, not on the (visible) command line.
        match &cfg.token_secret {
            Some(secret) => command.env(TOKEN_SECRET_ENV, secret),
            None => command.env_remove(TOKEN_SECRET_ENV),
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| RunError::Worker {
            index,
            reason: "no stdout".into(),
        })?;
        stdins.push(child.stdin.take());
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("loadgen-worker-{index}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((index, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((index, None));
            })?;
        children.push(child);
    }
    drop(tx);

    let mut snapshots = vec![ProgressSnapshot::default(); p];
    let mut phases = vec![Phase::Ramp; p];
    let mut acked: Vec<Option<Vec<u64>>> = vec![None; p];
    let mut results: Vec<Option<RunResult>> = (0..p).map(|_| None).collect();
    let mut error: Option<RunError> = None;
    let mut open = p;
    let mut last_progress = Instant::now();
    let mut report = |phases: &[Phase], snapshots: &[ProgressSnapshot]| {
        let mut sum = ProgressSnapshot::default();
        for s in snapshots {
            sum.add(s);
        }
        let phase = phases.iter().copied().min().unwrap_or(Phase::Ramp);
        on_progress(phase, &sum);
    };
    while open > 0 {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok((i, Some(line))) => match serde_json::from_str::<WorkerMsg>(&line) {
                Ok(WorkerMsg::Progress { phase, snapshot }) => {
                    phases[i] = phase;
                    snapshots[i] = snapshot;
                }
                Ok(WorkerMsg::Acked { max_acked }) => {
                    acked[i] = Some(max_acked);
                    if acked.iter().all(Option::is_some) {
                        let targets = element_max(acked.iter().flatten());
                        let line = serde_json::to_string(&ParentMsg::Targets { targets })
                            .unwrap_or_default();
                        for stdin in stdins.iter_mut().flatten() {
                            let _ = writeln!(stdin, "{line}");
                            let _ = stdin.flush();
                        }
                    }
                }
                Ok(WorkerMsg::Result { result }) => {
                    results[i] = Some(RunResult::from_data(&result));
                }
                Ok(WorkerMsg::Failed { message }) => {
                    error.get_or_insert(RunError::Worker {
                        index: i,
                        reason: message,
                    });
                    stdins.clear();
                }
                Err(e) => {
                    error.get_or_insert(RunError::Worker {
                        index: i,
                        reason: format!("unreadable line ({e}): {line}"),
                    });
                    stdins.clear();
                }
            },
            Ok((i, None)) => {
                open -= 1;
                if results[i].is_none() {
                    error.get_or_insert(RunError::Worker {
                        index: i,
                        reason: "exited without a result".into(),
                    });
                    // Unblock the others: they stop waiting for targets.
                    stdins.clear();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if last_progress.elapsed() >= Duration::from_millis(250) {
            report(&phases, &snapshots);
            last_progress = Instant::now();
        }
    }
    report(&phases, &snapshots);
    drop(stdins);
    for (index, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() && results[index].is_none() {
            error.get_or_insert(RunError::Worker {
                index,
                reason: format!("exited with {status}"),
            });
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let mut merged: Option<RunResult> = None;
    for r in results.into_iter().flatten() {
        match &mut merged {
            None => merged = Some(r),
            Some(m) => m.merge(&r),
        }
    }
    merged.ok_or_else(|| RunError::Worker {
        index: 0,
        reason: "no results".into(),
    })
}

/// Element-wise maximum of equally long vectors.
fn element_max<'a>(vs: impl Iterator<Item = &'a Vec<u64>>) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for v in vs {
        if out.len() < v.len() {
            out.resize(v.len(), 0);
        }
        for (o, x) in out.iter_mut().zip(v) {
            *o = (*o).max(*x);
        }
    }
    out
}

/// Runs as worker `cfg.worker`: JSON lines to standard output, targets from
/// standard input. The caller exits with a non-zero status on `Err`.
pub fn run_worker(cfg: &RunConfig) -> Result<(), RunError> {
    let mut hooks = WorkerHooks {
        last_progress: None,
    };
    match run(cfg, &mut hooks) {
        Ok(result) => {
            emit(&WorkerMsg::Result {
                result: Box::new(result.to_data()),
            });
            Ok(())
        }
        Err(e) => {
            emit(&WorkerMsg::Failed {
                message: e.to_string(),
            });
            Err(e)
        }
    }
}

fn emit(msg: &WorkerMsg) {
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

struct WorkerHooks {
    last_progress: Option<Instant>,
}

impl Hooks for WorkerHooks {
    fn progress(&mut self, phase: Phase, snapshot: &ProgressSnapshot) {
        if self
            .last_progress
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last_progress = Some(Instant::now());
        emit(&WorkerMsg::Progress {
            phase,
            snapshot: *snapshot,
        });
    }

    fn exchange(&mut self, max_acked: Vec<u64>) -> Result<Vec<u64>, RunError> {
        emit(&WorkerMsg::Acked { max_acked });
        let mut line = String::new();
        let worker_error = |reason: String| RunError::Worker { index: 0, reason };
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| worker_error(format!("reading targets: {e}")))?;
        if line.is_empty() {
            return Err(worker_error("the parent closed our input".into()));
        }
        match serde_json::from_str::<ParentMsg>(&line) {
            Ok(ParentMsg::Targets { targets }) => Ok(targets),
            Err(e) => Err(worker_error(format!("bad targets line: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_element_wise_maximum() {
        let a = vec![1, 5, 0];
        let b = vec![3, 2, 0];
        assert_eq!(element_max([&a, &b].into_iter()), vec![3, 5, 0]);
    }
}
