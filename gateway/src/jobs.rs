//! Where a shard's jobs run. The core says what to do ([`IoJob`]) and how
//! to take the result ([`ShardState::on_job_done`](chat_core::ShardState));
//! this module only decides where: store calls on the runtime's blocking
//! pool (`store_io.rs`), the owner's commits through the process's committer
//! thread, push deliveries as tasks on the executor, catch-up retries as
//! timers. No domain rule lives here.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_core::push::Webhook;
use chat_core::{IoJob, JobDone};

use crate::shard_task::Shard;
use crate::util::now_ms;

impl Shard {
    /// Starts one job; its result goes back to the core.
    pub(crate) fn start_job(self: &Rc<Self>, job: IoJob) {
        let shard = self.clone();
        match job {
            IoJob::Append(appends) => {
                // Appends come from the commit loop itself (take_commit);
                // one that arrives here is committed on its own.
                crate::rt::spawn(async move {
                    let done = shard.commit(appends).await;
                    shard.with(|st| st.on_job_done(done, now_ms()));
                })
                .detach();
            }
            IoJob::CatchUpLater {
                conn,
                channel,
                gen,
                after_ms,
            } => {
                crate::rt::spawn(async move {
                    crate::rt::sleep(Duration::from_millis(after_ms)).await;
                    let done = JobDone::CatchUpRetry { conn, channel, gen };
                    shard.with(|st| st.on_job_done(done, now_ms()));
                })
                .detach();
            }
            IoJob::TierTimer { after_ms, slot } => {
                crate::rt::spawn(async move {
                    crate::rt::sleep(Duration::from_millis(after_ms)).await;
                    shard.with(|st| st.on_job_done(JobDone::TiersDue { slot }, now_ms()));
                })
                .detach();
            }
            IoJob::Push(job) => {
                let Some(hook) = self
                    .cfg
                    .push_webhook
                    .as_deref()
                    .and_then(|u| Webhook::parse(u).ok())
                else {
                    return;
                };
                let max = self.cfg.push_max_attempts;
                let dead_path = self.cfg.data_dir.join("push-dead-letter.jsonl");
                crate::rt::spawn(async move {
                    match crate::push::deliver(&hook, job, max).await {
                        None => {
                            shard.global.stats.push_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(job) => {
                            shard.global.stats.push_dead.fetch_add(1, Ordering::Relaxed);
                            let user = job.user.clone();
                            let written = crate::rt::spawn_blocking(move || {
                                    crate::push::dead_letter(
                                        &dead_path,
                                        &job,
                                        "all delivery attempts failed",
                                    )
                                })
                                .await;
                            if let Err(e) = written {
                                tracing::error!(user = %user, error = %e, "push dead letter not written");
                            }
                        }
                    }
                })
                .detach();
            }
            presence @ IoJob::PresenceFanout { .. } => self.queue_presence(presence),
            store_job => {
                crate::rt::spawn(async move {
                    let done = shard.store.run(store_job).await;
                    shard.with(|st| st.on_job_done(done, now_ms()));
                })
                .detach();
            }
        }
    }

    /// Queues a presence fan-out for the next batch; starts the task that
    /// runs the batches unless it runs.
    fn queue_presence(self: &Rc<Self>, job: IoJob) {
        self.presence.borrow_mut().push_back(job);
        if !self.presence_running.replace(true) {
            crate::rt::spawn(presence_batches(self.clone())).detach();
        }
    }

    /// The owner has messages ready: runs the commit loop unless it runs.
    pub(crate) fn start_commits(self: &Rc<Self>) {
        if !self.commit_running.replace(true) {
            self.spawn_control(group_commit(self.clone())).detach();
        }
    }

    /// One commit through the committer, timed.
    async fn commit(&self, appends: Vec<chat_model::ChannelAppend>) -> JobDone {
        let stats = &self.global.stats;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        let n: usize = appends.iter().map(|a| a.messages.len()).sum();
        stats.detail.batch_messages.observe(n as f64);
        let t0 = std::time::Instant::now();
        let (appends, result) = self.store.commit(appends).await;
        stats
            .detail
            .commit_ms
            .observe(t0.elapsed().as_secs_f64() * 1000.0);
        JobDone::Appended { appends, result }
    }
}

/// How long a presence fan-out waits for others to share its trip to the
/// store threads. A user coming online or going offline needs a store read
/// (whom to tell: the other members of their DMs and groups); made one by
/// one, each is a wake-up of a store thread and of the shard — ~4 % of a
/// connection's set-up CPU (`docs/benchmarks.md`, "Presence in batches").
/// Batched, a connect or reconnect storm pays that once per trip instead of
/// once per user. Presence is told this much later, plus the store's time
/// for the fan-outs queued ahead.
pub(crate) const PRESENCE_BATCH_WINDOW: Duration = Duration::from_millis(5);
/// At most this many fan-outs per batch (the rest go in the next batch,
/// without waiting again).
const PRESENCE_BATCH_MAX: usize = 256;
/// A batch is split over the store threads: one trip per this many
/// fan-outs (rounded up), at most `store_read_threads` trips, all side by
/// side and of nearly equal size, so a big batch keeps the concurrency
/// that one job per fan-out had (on several nodes a fan-out is a
/// FoundationDB transaction, which a trip would otherwise make one after
/// another) and a small one is one trip.
const PRESENCE_PER_TRIP: usize = 8;

/// Runs the shard's presence fan-outs in batches: waits the window after
/// the first, then takes up to [`PRESENCE_BATCH_MAX`], runs them in trips
/// to the store threads side by side, and hands each result to the core
/// (a user's transitions are one at a time already: the core starts the
/// next when the previous is done), yielding between results when the
/// executor asks. Ends when nothing is queued.
async fn presence_batches(shard: Rc<Shard>) {
    crate::rt::sleep(PRESENCE_BATCH_WINDOW).await;
    loop {
        let jobs: Vec<IoJob> = {
            let mut queued = shard.presence.borrow_mut();
            let n = queued.len().min(PRESENCE_BATCH_MAX);
            queued.drain(..n).collect()
        };
        if jobs.is_empty() {
            shard.presence_running.set(false);
            return;
        }
        let trips = jobs
            .len()
            .div_ceil(PRESENCE_PER_TRIP)
            .clamp(1, shard.cfg.store_read_threads.max(1));
        let per_trip = jobs.len().div_ceil(trips);
        let stats = &shard.global.stats;
        stats
            .presence_fanouts
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        // Every trip is handed to the store threads before the first is
        // awaited, so they run side by side.
        let mut jobs = jobs.into_iter();
        let mut running = Vec::with_capacity(trips);
        loop {
            let trip: Vec<IoJob> = jobs.by_ref().take(per_trip).collect();
            if trip.is_empty() {
                break;
            }
            stats.presence_trips.fetch_add(1, Ordering::Relaxed);
            running.push(shard.store.start_all(trip));
        }
        for trip in running {
            for done in trip.await {
                shard.with(|st| st.on_job_done(done, now_ms()));
                crate::rt::yield_if_needed().await;
            }
        }
    }
}

/// The owner's group commit: takes everything ready, commits it, answers,
/// repeats while anything is ready. One commit in flight per shard.
///
/// With `commit_linger_us` > 0, commits start at least that far apart: the
/// first message after idle waits that long, and a commit that took less
/// waits out the rest before the next, so a low-rate stream shares durable
/// writes. Under load a commit takes longer than the linger and nothing waits.
async fn group_commit(shard: Rc<Shard>) {
    let linger = Duration::from_micros(shard.cfg.commit_linger_us);
    let mut last_start: Option<std::time::Instant> = None;
    loop {
        // Let every task already woken this turn add its sends first.
        let waited = last_start.map_or(Duration::ZERO, |t| t.elapsed());
        match linger.checked_sub(waited) {
            Some(rest) if !rest.is_zero() => crate::rt::sleep(rest).await,
            _ if last_start.is_none() => futures_lite::future::yield_now().await,
            _ => {}
        }
        let Some(IoJob::Append(appends)) = shard.with(|st| st.take_commit(now_ms())) else {
            shard.commit_running.set(false);
            return;
        };
        last_start = Some(std::time::Instant::now());
        let done = shard.commit(appends).await;
        shard.with(|st| st.on_job_done(done, now_ms()));
    }
}
