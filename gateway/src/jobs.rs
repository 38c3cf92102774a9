//! Where a shard's jobs run. The core says what to do ([`IoJob`]) and how
//! to take the result ([`ShardState::on_job_done`](chat_core::ShardState));
//! this module only decides where: store calls on the shard's store threads
//! (`store_io.rs`), the owner's commits through the process's committer
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
                glommio::spawn_local(async move {
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
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(after_ms)).await;
                    let done = JobDone::CatchUpRetry { conn, channel, gen };
                    shard.with(|st| st.on_job_done(done, now_ms()));
                })
                .detach();
            }
            IoJob::TierTimer { after_ms, slot } => {
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(after_ms)).await;
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
                glommio::spawn_local(async move {
                    match crate::push::deliver(&hook, job, max).await {
                        None => {
                            shard.global.stats.push_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(job) => {
                            shard.global.stats.push_dead.fetch_add(1, Ordering::Relaxed);
                            let user = job.user.clone();
                            let written = glommio::executor()
                                .spawn_blocking(move || {
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
            store_job => {
                glommio::spawn_local(async move {
                    let done = shard.store.run(store_job).await;
                    shard.with(|st| st.on_job_done(done, now_ms()));
                })
                .detach();
            }
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
            Some(rest) if !rest.is_zero() => glommio::timer::sleep(rest).await,
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
