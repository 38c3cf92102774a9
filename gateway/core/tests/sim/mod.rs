//! The simulated world: shards, their queues and jobs, virtual time and
//! the schedule. The clients and the invariants they check are in
//! `clients.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chat_core::jobs::{is_store_job, run_store_job};
use chat_core::{Config, ConnId, IoJob, JobDone, ShardId, ShardMsg, ShardState, Stats, WritePass};
use chat_proto::auth::Identity;
use chat_proto::client::{decode_server_event, ServerEvent};
use chat_proto::ws::{Role, WsDecoder, WsEvent};
use storage::{FaultyStore, MemStore, ReadLimit, ReadRange, Seq, Store};

mod clients;

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NR_SHARDS: usize = 3;
const CHANNELS: [&str; 4] = ["room:a", "room:b", "dm:u0:u1", "room:c"];
const CLIENTS: usize = 5;

/// Where a client stands in one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChanState {
    Out,
    /// In the channel when its connection went away: rejoined (with
    /// `since` = what it has) at the next connect.
    Wanted,
    /// Join request `req` sent, `joined` not seen.
    Joining {
        req: u64,
    },
    Live {
        next: u64,
    },
    /// Leave sent. `join`: left before the answer to that join came (its
    /// `joined` may still come, before or after `left`); `next`: what the
    /// stream expects until `left`, once it started; `rejoin`: a join sent
    /// after the leave (its `joined` comes after `left`).
    Leaving {
        join: Option<u64>,
        next: Option<u64>,
        rejoin: Option<u64>,
    },
}

#[derive(Clone, Debug)]
enum Req {
    Join { channel: String, since: Option<u64> },
    Leave,
    Send { channel: String, cmid: String },
    Ping,
}

struct Chan {
    state: ChanState,
    /// The last seq this client has (from its join position on): what it
    /// resumes from.
    last_seen: Option<u64>,
}

struct Client {
    user: String,
    device: String,
    conn: Option<(usize, ConnId)>,
    dec: WsDecoder,
    next_id: u64,
    chans: BTreeMap<String, Chan>,
    pending: HashMap<u64, Req>,
    /// Messages first sent on this connection (not retries of earlier
    /// ones): their `ack` must come before their `msg`.
    sent_here: HashSet<String>,
    acked_here: HashSet<String>,
    /// Sends not acked yet, for retries: cmid → (channel, text).
    unacked: BTreeMap<String, (String, String)>,
    counter: u64,
}

struct ScheduledJob {
    shard: usize,
    due: u64,
    job: IoJob,
}

pub(crate) struct Sim {
    seed: u64,
    rng: Rng,
    now: u64,
    shards: Vec<ShardState>,
    /// `queues[from][to]`.
    queues: Vec<Vec<VecDeque<ShardMsg>>>,
    jobs: Vec<ScheduledJob>,
    commit_ready: Vec<bool>,
    commit_busy: Vec<bool>,
    store: Arc<FaultyStore<MemStore>>,
    clients: Vec<Client>,
    /// (user, device, cmid) → the seq its first ack said.
    acked: HashMap<(String, String, String), u64>,
    pub(crate) trace: VecDeque<String>,
    keep_trace: bool,
    pub(crate) steps: u64,
    pub(crate) counts: Counts,
}

/// What a run exercised (summed over seeds and printed, so a change that
/// makes the simulator stop reaching a path shows).
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) delivered: u64,
    pub(crate) acks: u64,
    pub(crate) duplicate_acks: u64,
    pub(crate) failed_commits: u64,
    pub(crate) catchup_reads: u64,
    pub(crate) resumes: u64,
    pub(crate) stale_joins: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.delivered += o.delivered;
        self.acks += o.acks;
        self.duplicate_acks += o.duplicate_acks;
        self.failed_commits += o.failed_commits;
        self.catchup_reads += o.catchup_reads;
        self.resumes += o.resumes;
        self.stale_joins += o.stale_joins;
    }
}

fn config() -> Config {
    Config {
        shards: Some(NR_SHARDS),
        heartbeat_ms: 1 << 40,
        outbox_budget_bytes: 4096,
        replica_ring_bytes: 1024,
        catchup_page_messages: 3,
        commit_max_messages: 5,
        max_queued_request_bytes: 1024,
        cursor_flush_ms: 100,
        // Digest members (every third client) are held for a few steps.
        digest_interval_ms: 60,
        ..Config::default()
    }
}

impl Sim {
    pub(crate) fn new(seed: u64, keep_trace: bool) -> Sim {
        chat_core::maps::set_thread_seed(Some(seed));
        let cfg = Arc::new(config());
        let stats = Arc::new(Stats::default());
        let shards = (0..NR_SHARDS)
            .map(|i| ShardState::new(ShardId(i), NR_SHARDS, cfg.clone(), stats.clone()))
            .collect();
        let clients = (0..CLIENTS)
            .map(|i| Client {
                user: format!("u{}", i % 3),
                device: format!("d{i}"),
                conn: None,
                dec: WsDecoder::new(Role::Client, usize::MAX / 2),
                next_id: 1,
                chans: CHANNELS
                    .iter()
                    .map(|c| {
                        (
                            c.to_string(),
                            Chan {
                                state: ChanState::Out,
                                last_seen: None,
                            },
                        )
                    })
                    .collect(),
                pending: HashMap::new(),
                sent_here: HashSet::new(),
                acked_here: HashSet::new(),
                unacked: BTreeMap::new(),
                counter: 0,
            })
            .collect();
        Sim {
            seed,
            rng: Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed),
            now: 1_700_000_000_000,
            shards,
            queues: (0..NR_SHARDS)
                .map(|_| (0..NR_SHARDS).map(|_| VecDeque::new()).collect())
                .collect(),
            jobs: Vec::new(),
            commit_ready: vec![false; NR_SHARDS],
            commit_busy: vec![false; NR_SHARDS],
            store: Arc::new(FaultyStore::new(MemStore::new())),
            clients,
            acked: HashMap::new(),
            trace: VecDeque::new(),
            keep_trace,
            steps: 0,
            counts: Counts::default(),
        }
    }

    fn log(&mut self, event: String) {
        if self.keep_trace {
            println!("[{}] {event}", self.steps);
        }
        self.trace.push_back(event);
        if self.trace.len() > 60 {
            self.trace.pop_front();
        }
    }

    fn fail(&self, what: &str) -> ! {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        panic!(
            "simulation seed {} failed at step {}: {what}\nreplay: SIM_SEED={} cargo test -p chat-core --test simulation -- --nocapture\nlast events:\n  {}",
            self.seed,
            self.steps,
            self.seed,
            trace.join("\n  ")
        );
    }

    /// Takes what shard `s` asked for.
    fn apply(&mut self, s: usize) {
        let fx = self.shards[s].take_effects();
        drop(self.shards[s].take_woken());
        for (to, msg) in fx.out {
            self.queues[s][to.0].push_back(msg);
        }
        for job in fx.io {
            let delay = match &job {
                IoJob::CatchUpLater { after_ms, .. } | IoJob::TierTimer { after_ms, .. } => {
                    *after_ms
                }
                _ => self.rng.below(30) as u64,
            };
            self.jobs.push(ScheduledJob {
                shard: s,
                due: self.now + delay,
                job,
            });
        }
        if fx.commit_ready {
            self.commit_ready[s] = true;
        }
    }

    // ----- events ------------------------------------------------------------

    fn deliver(&mut self) -> bool {
        let mut non_empty = Vec::new();
        for from in 0..NR_SHARDS {
            for to in 0..NR_SHARDS {
                if !self.queues[from][to].is_empty() {
                    non_empty.push((from, to));
                }
            }
        }
        if non_empty.is_empty() {
            return false;
        }
        let (from, to) = non_empty[self.rng.below(non_empty.len())];
        let msg = self.queues[from][to].pop_front().unwrap();
        self.log(format!("shard {from} -> {to}: {}", describe(&msg)));
        self.shards[to].on_msg(ShardId(from), msg, self.now);
        self.apply(to);
        true
    }

    fn complete_job(&mut self) -> bool {
        let due: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].due <= self.now)
            .collect();
        if due.is_empty() {
            return false;
        }
        let ScheduledJob { shard, job, .. } = self.jobs.swap_remove(due[self.rng.below(due.len())]);
        let store = self.store.clone();
        let faults = store.faults();
        let done = match job {
            IoJob::Append(appends) => {
                if self.rng.chance(8) {
                    faults.fail_next_appends(1);
                    self.counts.failed_commits += 1;
                    self.log(format!("shard {shard}: the next commit fails"));
                }
                let result = self.store.append(&appends).map_err(Into::into);
                self.commit_busy[shard] = false;
                JobDone::Appended { appends, result }
            }
            IoJob::CatchUpLater {
                conn, channel, gen, ..
            } => JobDone::CatchUpRetry { conn, channel, gen },
            IoJob::TierTimer { slot, .. } => JobDone::TiersDue { slot },
            job => {
                assert!(is_store_job(&job), "{job:?}");
                if let IoJob::CatchUp { .. } = job {
                    self.counts.catchup_reads += 1;
                }
                match &job {
                    IoJob::CatchUp { .. } | IoJob::History { .. } if self.rng.chance(5) => {
                        faults.fail_next_reads(1);
                    }
                    IoJob::LoadHead(_) if self.rng.chance(5) => faults.fail_next_heads(1),
                    _ => {}
                }
                run_store_job(&*self.store, job)
            }
        };
        self.log(format!("shard {shard}: job done {}", describe_done(&done)));
        self.shards[shard].on_job_done(done, self.now);
        self.apply(shard);
        true
    }

    fn take_commit(&mut self) -> bool {
        let ready: Vec<usize> = (0..NR_SHARDS)
            .filter(|&s| self.commit_ready[s] && !self.commit_busy[s])
            .collect();
        if ready.is_empty() {
            return false;
        }
        let s = ready[self.rng.below(ready.len())];
        self.commit_ready[s] = false;
        if let Some(job) = self.shards[s].take_commit(self.now) {
            let n: usize = match &job {
                IoJob::Append(a) => a.iter().map(|c| c.messages.len()).sum(),
                _ => 0,
            };
            self.log(format!("shard {s}: commit of {n} messages taken"));
            self.commit_busy[s] = true;
            self.jobs.push(ScheduledJob {
                shard: s,
                due: self.now + self.rng.below(20) as u64,
                job,
            });
        }
        self.apply(s);
        true
    }

    fn advance_time(&mut self) {
        self.now += 1 + self.rng.below(40) as u64;
        if self.rng.chance(20) {
            for s in 0..NR_SHARDS {
                self.shards[s].tick(self.now);
                self.shards[s].flush_cursors(self.now);
                self.apply(s);
            }
        }
    }

    // ----- clients -------------------------------------------------------------

    fn step(&mut self) {
        self.steps += 1;
        match self.rng.below(100) {
            0..=39 => {
                if !self.deliver() {
                    self.client_action();
                }
            }
            40..=54 => {
                if !self.complete_job() {
                    self.advance_time();
                }
            }
            55..=59 => {
                if !self.take_commit() {
                    self.advance_time();
                }
            }
            60..=89 => self.client_action(),
            _ => self.advance_time(),
        }
    }

    /// Lets everything settle: no more client actions; queues, jobs and
    /// commits run out; connected clients read everything.
    fn quiesce(&mut self) {
        for _ in 0..200_000 {
            self.steps += 1;
            let progressed = self.deliver() || self.take_commit() || self.complete_job() || {
                let mut read = false;
                for c in 0..CLIENTS {
                    if let Some((s, conn)) = self.clients[c].conn {
                        if !self.shards[s].output_front(conn).is_empty() {
                            self.read(c);
                            read = true;
                        }
                    }
                }
                read
            };
            if !progressed {
                if self.jobs.is_empty() && self.commit_ready.iter().all(|r| !r) {
                    return;
                }
                self.now += 50;
            }
        }
        self.fail("the system did not settle");
    }

    /// Runs `steps` random events, lets the system settle, checks the end.
    pub(crate) fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
        self.quiesce();
        self.check_end();
    }
}

fn describe(msg: &ShardMsg) -> String {
    let s = format!("{msg:?}");
    s.chars().take(140).collect()
}

fn describe_done(done: &JobDone) -> String {
    let s = format!("{done:?}");
    s.chars().take(140).collect()
}
