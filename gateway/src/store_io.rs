//! Getting store calls off the shard executors.
//!
//! Store calls block on disk or network, so a shard makes none on its own
//! thread that waits for either:
//!
//! - **Commits are made on the owner's shard** when the store's append
//!   does not wait for a disk ([`Store::append_waits_for_io`] is false:
//!   the embedded store with `buffered` durability, whose append only hands
//!   the write to the OS). The shard then commits and answers in the turn
//!   that read the message: no hop to another thread and back, no park in
//!   between. Why and when: `docs/architecture.md`, "Commits on the shard".
//! - **Every other commit** goes to one committer thread per process. It drains every
//!   commit request queued by all shards and makes them one `Store::append`
//!   call: one durable write (one fsync) for everything the shards produced
//!   while the previous commit was on disk. Owners are disjoint, so requests
//!   from different shards never name the same channel. Each shard keeps at
//!   most one request in flight (the owner's commit loop), hence at most one
//!   commit per channel.
//! - **Reads** (heads, history, catch-up pages) run on the runtime's
//!   blocking pool (`rt::spawn_blocking`: up to `store_read_threads` per
//!   shard in all, shared by the shards, on the process's allowed CPUs).

use std::sync::Arc;
use std::thread::JoinHandle;

use chat_core::jobs::{guarded, run_store_job};
use chat_core::{IoJob, JobDone, JobError};
use storage::{ChannelAppend, ChannelOutcome, Health, Store};

use crate::util::{oneshot, OneshotSender};

type CommitResult = Result<Vec<ChannelOutcome>, JobError>;

/// The batch comes back with its result, so the owner can encode the
/// committed messages without having kept a copy.
type CommitReply = (Vec<ChannelAppend>, CommitResult);

struct CommitRequest {
    batch: Vec<ChannelAppend>,
    reply: OneshotSender<CommitReply>,
}

enum ToCommitter {
    Commit(CommitRequest),
    /// Sent by [`Committer::join`]: finish what is queued, then exit.
    Stop,
}

/// Handle to the store for one shard.
#[derive(Clone)]
pub(crate) struct StoreIo {
    store: Arc<dyn Store>,
    commits: crossbeam_channel::Sender<ToCommitter>,
    /// Make appends on the calling shard (see [`Committer::start`]).
    on_shard: bool,
}

/// The committer thread; joined at shutdown after every `StoreIo` is dropped.
pub(crate) struct Committer {
    thread: Option<JoinHandle<()>>,
    stop: crossbeam_channel::Sender<ToCommitter>,
}

impl Committer {
    /// Starts the committer thread for `store`. When the store's append
    /// does not wait for I/O ([`Store::append_waits_for_io`]), commits are
    /// made on the calling shard instead and the thread stays idle.
    pub(crate) fn start(store: Arc<dyn Store>) -> std::io::Result<(Committer, StoreIo)> {
        let on_shard = !store.append_waits_for_io();
        let (tx, rx) = crossbeam_channel::unbounded::<ToCommitter>();
        let thread_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("gateway-committer".into())
            .spawn(move || committer_thread(&*thread_store, &rx))?;
        Ok((
            Committer {
                thread: Some(thread),
                stop: tx.clone(),
            },
            StoreIo {
                store,
                commits: tx,
                on_shard,
            },
        ))
    }

    /// Lets the thread finish what is queued, then waits for it. Call after
    /// the shards stopped.
    pub(crate) fn join(mut self) {
        let _ = self.stop.send(ToCommitter::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn committer_thread(store: &dyn Store, rx: &crossbeam_channel::Receiver<ToCommitter>) {
    let mut stop = false;
    while !stop {
        let mut requests = Vec::new();
        match rx.recv() {
            Ok(ToCommitter::Commit(r)) => requests.push(r),
            Ok(ToCommitter::Stop) | Err(_) => stop = true,
        }
        while let Ok(job) = rx.try_recv() {
            match job {
                ToCommitter::Commit(r) => requests.push(r),
                ToCommitter::Stop => stop = true,
            }
        }
        if requests.is_empty() {
            continue;
        }
        if requests.len() == 1 {
            if let Some(req) = requests.pop() {
                let result = guarded(|| store.append(&req.batch));
                req.reply.send((req.batch, result));
            }
            continue;
        }
        let mut merged = Vec::new();
        let mut counts = Vec::with_capacity(requests.len());
        for r in &mut requests {
            counts.push(r.batch.len());
            merged.append(&mut r.batch);
        }
        let result = guarded(|| store.append(&merged));
        let mut batches = merged.into_iter();
        let mut outcomes = result.map(Vec::into_iter);
        for (req, n) in requests.into_iter().zip(counts) {
            let batch: Vec<ChannelAppend> = batches.by_ref().take(n).collect();
            let reply = match &mut outcomes {
                Ok(it) => Ok(it.by_ref().take(n).collect()),
                Err(f) => Err(f.clone()),
            };
            req.reply.send((batch, reply));
        }
    }
}

impl StoreIo {
    /// Commits `batch` durably: on this shard when the store's append does
    /// not wait for I/O, else through the committer.
    pub(crate) async fn commit(&self, batch: Vec<ChannelAppend>) -> CommitReply {
        if self.on_shard {
            let result = guarded(|| self.store.append(&batch));
            return (batch, result);
        }
        self.commit_through_committer(batch).await
    }

    /// Commits `batch` durably through the committer thread (merged with
    /// other shards' concurrent commits).
    async fn commit_through_committer(&self, batch: Vec<ChannelAppend>) -> CommitReply {
        let (tx, rx) = oneshot();
        if let Err(e) = self
            .commits
            .send(ToCommitter::Commit(CommitRequest { batch, reply: tx }))
        {
            let failure = JobError::Stopped;
            let batch = match e.into_inner() {
                ToCommitter::Commit(r) => r.batch,
                ToCommitter::Stop => Vec::new(),
            };
            return (batch, Err(failure));
        }
        // The committer always answers; a dropped sender means it died
        // mid-call, and the batch is gone with it.
        rx.await
            .unwrap_or_else(|| (Vec::new(), Err(JobError::Stopped)))
    }

    /// Runs a store job on the runtime's blocking pool (`store_read_threads`
    /// per shard, shared by the shards) and returns its result.
    pub(crate) async fn run(&self, job: IoJob) -> JobDone {
        let store = self.store.clone();
        crate::rt::spawn_blocking(move || run_store_job(&*store, job)).await
    }

    /// Hands store jobs to the runtime's blocking pool as one call that runs
    /// them one after another (one hop there and back for all of them);
    /// the future is their results, in order. The call is handed over now,
    /// not when the future is first polled, so several run side by side.
    pub(crate) fn start_all(
        &self,
        jobs: Vec<IoJob>,
    ) -> impl std::future::Future<Output = Vec<JobDone>> {
        let store = self.store.clone();
        crate::rt::spawn_blocking(move || {
            jobs.into_iter()
                .map(|job| run_store_job(&*store, job))
                .collect()
        })
    }

    /// The store itself (for calls the runtime makes on the blocking pool).
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Whether the store accepts writes (cheap; no I/O for the embedded store).
    pub(crate) fn health(&self) -> Health {
        self.store.health()
    }
}
