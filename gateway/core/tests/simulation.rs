//! The deterministic simulator: several shards of the core in one thread,
//! their queues and jobs under the simulator's control, virtual time, and a
//! seeded random schedule of client actions — and, after every event, the
//! product's ordering invariants checked.
//!
//! What it drives: `N` [`ShardState`]s; a FIFO queue per (from, to) pair of
//! shards (delivered in random interleavings); every job a shard asks for
//! (store calls against an in-memory store wrapped in a fault injector,
//! completed after random delays, sometimes failing; commits taken at
//! random moments after a shard says it has some ready); a handful of
//! clients that connect to random shards, join (with and without `since`),
//! leave, send, retry, read their socket slowly or not at all, disconnect
//! and resume.
//!
//! What it checks (a violation panics with the seed and the last events):
//!
//! - per (client, channel): every seq exactly once, in order, from the join
//!   position, across leaves, rejoins, reconnects with `since`, and
//!   slow-consumer catch-up; no `msg` outside a join;
//! - nothing delivered before it is stored (the store holds every `msg`
//!   delivered, with the same sender and text);
//! - a sender's `ack` comes before its own `msg` on the same connection;
//! - a retry gets the original seq (`duplicate: true` once one was acked);
//! - seqs are dense per channel and every message is stored once; a failed
//!   commit leaves no hole; at the end, every live member has every
//!   committed message.
//!
//! `SIM_SEEDS=N` runs seeds `0..N` (default 600), `SIM_STEPS` the events per
//! seed (default 1,500), `SIM_SEED=n` one seed with its whole trace printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chat_core::jobs::{is_store_job, run_store_job};
use chat_core::{Config, ConnId, IoJob, JobDone, ShardId, ShardMsg, ShardState, Stats};
use chat_proto::auth::Identity;
use chat_proto::client::{decode_server_event, ServerEvent};
use chat_proto::ws::{Role, WsDecoder, WsEvent};
use storage::{FaultyStore, MemStore, ReadLimit, ReadRange, Seq, Store};

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

struct Sim {
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
    trace: VecDeque<String>,
    keep_trace: bool,
    steps: u64,
    counts: Counts,
}

/// What a run exercised (summed over seeds and printed, so a change that
/// makes the simulator stop reaching a path shows).
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    delivered: u64,
    acks: u64,
    duplicate_acks: u64,
    failed_commits: u64,
    catchup_reads: u64,
    resumes: u64,
    stale_joins: u64,
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
        ..Config::default()
    }
}

impl Sim {
    fn new(seed: u64, keep_trace: bool) -> Sim {
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
                IoJob::CatchUpLater { after_ms, .. } => *after_ms,
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

    fn request(&mut self, c: usize, req: Req, json: serde_json::Value) {
        let Some((s, conn)) = self.clients[c].conn else {
            return;
        };
        let id = self.clients[c].next_id;
        self.clients[c].next_id += 1;
        let mut json = json;
        json["id"] = serde_json::json!(id);
        self.clients[c].pending.insert(id, req);
        let text = json.to_string();
        self.log(format!("client {c} (shard {s}): {text}"));
        self.shards[s].on_ws_event(conn, WsEvent::Text(&text), self.now);
        self.apply(s);
    }

    fn connect(&mut self, c: usize) {
        let s = self.rng.below(NR_SHARDS);
        let identity = Identity {
            user: self.clients[c].user.clone(),
            device: self.clients[c].device.clone(),
            expires_ms: None,
        };
        let conn = self.shards[s].open_conn(&identity, self.now);
        self.apply(s);
        self.log(format!("client {c} connects to shard {s} as {conn:?}"));
        let cl = &mut self.clients[c];
        cl.conn = Some((s, conn));
        cl.dec = WsDecoder::new(Role::Client, usize::MAX / 2);
        cl.pending.clear();
        cl.sent_here.clear();
        cl.acked_here.clear();
        // Resume: rejoin what it was in, from what it has.
        let rejoin: Vec<(String, Option<u64>)> = cl
            .chans
            .iter()
            .filter(|(_, ch)| ch.state == ChanState::Wanted)
            .map(|(name, ch)| (name.clone(), ch.last_seen))
            .collect();
        for ch in cl.chans.values_mut() {
            ch.state = ChanState::Out;
        }
        for (channel, since) in rejoin {
            self.counts.resumes += u64::from(since.is_some());
            self.join(c, &channel, since);
        }
        // Retry every send not acked yet.
        let retries: Vec<(String, String, String)> = self.clients[c]
            .unacked
            .iter()
            .map(|(cmid, (ch, text))| (cmid.clone(), ch.clone(), text.clone()))
            .collect();
        for (cmid, channel, text) in retries {
            self.send(c, &channel, cmid, text);
        }
    }

    fn disconnect(&mut self, c: usize) {
        let Some((s, conn)) = self.clients[c].conn.take() else {
            return;
        };
        self.log(format!("client {c} disconnects from shard {s}"));
        self.shards[s].close_conn(conn, self.now);
        self.apply(s);
        // Joins stay wanted: resumed at the next connect.
        for ch in self.clients[c].chans.values_mut() {
            ch.state = match ch.state {
                ChanState::Joining { .. } | ChanState::Live { .. } | ChanState::Wanted => {
                    ChanState::Wanted
                }
                ChanState::Leaving { .. } | ChanState::Out => ChanState::Out,
            };
        }
    }

    fn join(&mut self, c: usize, channel: &str, since: Option<u64>) {
        let req = self.clients[c].next_id;
        let ch = self.clients[c].chans.get_mut(channel).unwrap();
        ch.state = match ch.state {
            ChanState::Leaving { join, next, .. } => ChanState::Leaving {
                join,
                next,
                rejoin: Some(req),
            },
            _ => ChanState::Joining { req },
        };
        let mut json = serde_json::json!({"type": "join", "channel": channel});
        if let Some(s) = since {
            json["since"] = serde_json::json!(s);
        }
        let req = Req::Join {
            channel: channel.to_string(),
            since,
        };
        self.request(c, req, json);
    }

    fn send(&mut self, c: usize, channel: &str, cmid: String, text: String) {
        if !self.clients[c].unacked.contains_key(&cmid) {
            self.clients[c].sent_here.insert(cmid.clone());
        }
        self.clients[c]
            .unacked
            .insert(cmid.clone(), (channel.to_string(), text.clone()));
        let json = serde_json::json!({"type": "send", "channel": channel, "client_msg_id": cmid, "text": text});
        let req = Req::Send {
            channel: channel.to_string(),
            cmid,
        };
        self.request(c, req, json);
    }

    fn may_use(&self, c: usize, channel: &str) -> bool {
        match channel.strip_prefix("dm:") {
            Some(pair) => pair.split(':').any(|u| u == self.clients[c].user),
            None => true,
        }
    }

    fn client_action(&mut self) {
        let c = self.rng.below(CLIENTS);
        if self.clients[c].conn.is_none() {
            if self.rng.chance(40) {
                self.connect(c);
            }
            return;
        }
        let channel = CHANNELS[self.rng.below(CHANNELS.len())].to_string();
        match self.rng.below(100) {
            0..=14 => {
                // Also while a leave is on its way: join, leave and join
                // again in one burst.
                let state = self.clients[c].chans[&channel].state;
                if self.may_use(c, &channel)
                    && matches!(
                        state,
                        ChanState::Out | ChanState::Leaving { rejoin: None, .. }
                    )
                {
                    let since = if self.rng.chance(50) {
                        self.clients[c].chans[&channel].last_seen
                    } else {
                        None
                    };
                    self.join(c, &channel, since);
                }
            }
            15..=19 => {
                let leaving = match self.clients[c].chans[&channel].state {
                    ChanState::Live { next } => Some(ChanState::Leaving {
                        join: None,
                        next: Some(next),
                        rejoin: None,
                    }),
                    // Leave before the join is answered (then maybe join
                    // again at once: the old join's answer comes late).
                    ChanState::Joining { req } => Some(ChanState::Leaving {
                        join: Some(req),
                        next: None,
                        rejoin: None,
                    }),
                    _ => None,
                };
                if let Some(state) = leaving {
                    self.clients[c].chans.get_mut(&channel).unwrap().state = state;
                    let json = serde_json::json!({"type": "leave", "channel": channel});
                    self.request(c, Req::Leave, json);
                }
            }
            20..=49 => {
                if self.may_use(c, &channel) {
                    let cl = &mut self.clients[c];
                    cl.counter += 1;
                    let cmid = format!("{}-{}", cl.device, cl.counter);
                    let len = 20 + self.rng.below(300);
                    let text = format!("{cmid}:{}", "x".repeat(len));
                    self.send(c, &channel, cmid, text);
                }
            }
            50..=54 => {
                // A retry of the oldest send not acked yet.
                if let Some((cmid, (ch, text))) = self.clients[c]
                    .unacked
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                {
                    self.send(c, &ch, cmid, text);
                }
            }
            55..=89 => self.read(c),
            90..=92 => self.request(c, Req::Ping, serde_json::json!({"type": "ping"})),
            _ => self.disconnect(c),
        }
    }

    /// Reads some (or all) of what the client's socket would give it.
    fn read(&mut self, c: usize) {
        let Some((s, conn)) = self.clients[c].conn else {
            return;
        };
        let avail = self.shards[s].output(conn).len();
        if avail == 0 {
            return;
        }
        let n = if self.rng.chance(50) {
            avail
        } else {
            1 + self.rng.below(avail)
        };
        let bytes = self.shards[s].output(conn)[..n].to_vec();
        self.shards[s].wrote(conn, n, self.now);
        self.apply(s);
        let mut events = Vec::new();
        let result = self.clients[c].dec.feed(&bytes, &mut |ev| {
            if let WsEvent::Text(t) = ev {
                events.push(t.to_string());
            } else if let WsEvent::Close(_) = ev {
                events.push("<close>".into());
            }
        });
        if let Err(e) = result {
            self.fail(&format!("client {c}: bad frame from the server: {e:?}"));
        }
        for text in events {
            if text == "<close>" {
                self.log(format!("client {c} got a close"));
                self.disconnect(c);
                return;
            }
            self.on_event(c, &text);
        }
    }

    fn on_event(&mut self, c: usize, text: &str) {
        let ev = decode_server_event(text).unwrap_or_else(|e| self.fail(&format!("{e}: {text}")));
        let short: String = text.chars().take(120).collect();
        self.log(format!("client {c} <- {short}"));
        let id_of =
            |id: &Option<serde_json::Value>| id.as_ref().and_then(serde_json::Value::as_u64);
        match ev {
            ServerEvent::Hello { .. } | ServerEvent::Pong { .. } | ServerEvent::Typing { .. } => {
                if let ServerEvent::Pong { id } = ev {
                    self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                }
            }
            ServerEvent::Joined { id, channel, head } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                let Some(Req::Join {
                    channel: asked,
                    since,
                }) = req
                else {
                    self.fail(&format!("client {c}: joined without a join: {text}"));
                };
                if asked != channel {
                    self.fail(&format!(
                        "client {c}: joined answers another channel: {text}"
                    ));
                }
                let req_id = id_of(&id).unwrap_or(0);
                let state = self.clients[c].chans[&channel].state;
                let live = match state {
                    ChanState::Joining { req } if req == req_id => true,
                    ChanState::Leaving {
                        join: Some(req), ..
                    } if req == req_id => false,
                    _ => {
                        // The answer to an earlier join of this channel
                        // (left, maybe joined again, meanwhile): it must
                        // not start a stream.
                        self.counts.stale_joins += 1;
                        return;
                    }
                };
                if let Some(s) = since {
                    if s > head {
                        self.fail(&format!("client {c}: since {s} beyond head {head}"));
                    }
                }
                let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                let from = since.unwrap_or(head);
                ch.state = match (live, ch.state) {
                    (true, _) => ChanState::Live { next: from + 1 },
                    (false, ChanState::Leaving { rejoin, .. }) => ChanState::Leaving {
                        join: None,
                        next: Some(from + 1),
                        rejoin,
                    },
                    (false, other) => other,
                };
                if ch.last_seen.is_none_or(|l| l < from) {
                    ch.last_seen = Some(from);
                }
            }
            ServerEvent::Left { id, channel } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                if !matches!(req, Some(Req::Leave)) {
                    self.fail(&format!("client {c}: an unasked left: {text}"));
                }
                let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                if let ChanState::Leaving { rejoin, .. } = ch.state {
                    ch.state = match rejoin {
                        Some(req) => ChanState::Joining { req },
                        None => ChanState::Out,
                    };
                }
            }
            ServerEvent::Msg(m) => self.on_msg(c, &m),
            ServerEvent::Ack {
                id,
                channel,
                client_msg_id,
                seq,
                duplicate,
                ..
            } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                let Some(Req::Send { channel: ch, cmid }) = req else {
                    self.fail(&format!("client {c}: an ack without a send: {text}"));
                };
                if ch != channel || cmid != client_msg_id {
                    self.fail(&format!("client {c}: an ack for another send: {text}"));
                }
                let key = (
                    self.clients[c].user.clone(),
                    self.clients[c].device.clone(),
                    cmid.clone(),
                );
                match self.acked.get(&key) {
                    Some(&first) if first != seq => {
                        self.fail(&format!("a retry got seq {seq}, the original {first}"))
                    }
                    Some(_) if !duplicate => {
                        self.fail(&format!("a retry's ack says duplicate false: {text}"))
                    }
                    Some(_) => {}
                    None => {
                        self.acked.insert(key, seq);
                    }
                }
                self.check_stored(&channel, seq, &self.clients[c].user.clone(), &cmid);
                self.counts.acks += 1;
                self.counts.duplicate_acks += u64::from(duplicate);
                self.clients[c].acked_here.insert(cmid.clone());
                self.clients[c].unacked.remove(&cmid);
            }
            ServerEvent::Error { id, code, .. } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                match (req, code.as_str()) {
                    // A failed commit: the client retries later.
                    (Some(Req::Send { .. }), "unavailable") => {}
                    // A head that could not be loaded: joined again later.
                    (Some(Req::Join { channel, .. }), "unavailable") => {
                        let req_id = id_of(&id).unwrap_or(0);
                        let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                        ch.state = match ch.state {
                            ChanState::Joining { req } if req == req_id => ChanState::Out,
                            ChanState::Leaving {
                                join: Some(req),
                                rejoin,
                                ..
                            } if req == req_id => ChanState::Leaving {
                                join: None,
                                next: None,
                                rejoin,
                            },
                            ChanState::Leaving {
                                rejoin: Some(req),
                                join,
                                next,
                            } if req == req_id => ChanState::Leaving {
                                join,
                                next,
                                rejoin: None,
                            },
                            other => other,
                        };
                    }
                    // A repeated join answered when the channel was left
                    // before the first was answered.
                    (Some(Req::Join { .. }), "bad_request") => {}
                    (req, _) => {
                        self.fail(&format!("client {c}: unexpected error for {req:?}: {text}"))
                    }
                }
            }
            ServerEvent::History { .. } | ServerEvent::Other(_) => {}
        }
    }

    fn on_msg(&mut self, c: usize, m: &chat_proto::ClientMsg) {
        let me_user = self.clients[c].user.clone();
        let me_device = self.clients[c].device.clone();
        let state = self.clients[c].chans[&m.channel].state;
        let next = match state {
            ChanState::Live { next }
            | ChanState::Leaving {
                next: Some(next), ..
            } => next,
            other => self.fail(&format!(
                "client {c}: msg {} of {} while {other:?}",
                m.seq, m.channel
            )),
        };
        if m.seq != next {
            self.fail(&format!(
                "client {c}: {} seq {} where {next} was next (a gap or a duplicate)",
                m.channel, m.seq
            ));
        }
        let ch = self.clients[c].chans.get_mut(&m.channel).unwrap();
        ch.state = match ch.state {
            ChanState::Leaving { join, rejoin, .. } => ChanState::Leaving {
                join,
                next: Some(next + 1),
                rejoin,
            },
            _ => ChanState::Live { next: next + 1 },
        };
        ch.last_seen = Some(m.seq);
        self.counts.delivered += 1;
        if m.from == me_user
            && m.device == me_device
            && self.clients[c].sent_here.contains(&m.client_msg_id)
            && !self.clients[c].acked_here.contains(&m.client_msg_id)
        {
            self.fail(&format!(
                "client {c}: its own msg {} came before its ack",
                m.client_msg_id
            ));
        }
        self.check_stored(&m.channel, m.seq, &m.from, &m.client_msg_id);
        let stored = self.store.message(&m.channel, Seq(m.seq)).unwrap().unwrap();
        if m.text.as_deref() != Some(stored.text.as_str()) {
            self.fail(&format!(
                "{} seq {}: delivered text differs from the store",
                m.channel, m.seq
            ));
        }
    }

    /// The store holds `seq` of `channel`, sent by `from` as `cmid`: nothing
    /// is delivered or acked before it is stored.
    fn check_stored(&self, channel: &str, seq: u64, from: &str, cmid: &str) {
        match self.store.message(channel, Seq(seq)) {
            Ok(Some(m)) if m.from == from && m.client_msg_id == cmid => {}
            other => self.fail(&format!(
                "{channel} seq {seq} ({from}/{cmid}) delivered or acked but the store has {other:?}"
            )),
        }
    }

    // ----- a run ---------------------------------------------------------------

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
                        if !self.shards[s].output(conn).is_empty() {
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

    /// The end state: dense channels, every message stored once, every live
    /// member caught up.
    fn check_end(&mut self) {
        for channel in CHANNELS {
            let head = self.store.head(channel).unwrap().0;
            let all = self
                .store
                .read(
                    channel,
                    ReadRange::After(Seq(0)),
                    ReadLimit {
                        messages: 1_000_000,
                        bytes: usize::MAX,
                    },
                )
                .unwrap()
                .messages;
            let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
            if seqs != (1..=head).collect::<Vec<_>>() {
                self.fail(&format!(
                    "{channel}: stored seqs are not 1..={head}: {seqs:?}"
                ));
            }
            let mut keys = HashSet::new();
            for m in &all {
                if !keys.insert((m.from.clone(), m.device.clone(), m.client_msg_id.clone())) {
                    self.fail(&format!("{channel}: {} stored twice", m.client_msg_id));
                }
            }
            for c in 0..CLIENTS {
                if self.clients[c].conn.is_none() {
                    continue;
                }
                if let ChanState::Live { next } = self.clients[c].chans[channel].state {
                    if next != head + 1 {
                        self.fail(&format!(
                            "client {c} in {channel} stopped at {} of head {head}",
                            next - 1
                        ));
                    }
                }
            }
        }
        for ((user, device, cmid), seq) in &self.acked {
            let ok = CHANNELS.iter().any(|ch| {
                self.store
                    .message(ch, Seq(*seq))
                    .ok()
                    .flatten()
                    .is_some_and(|m| {
                        &m.from == user && &m.device == device && &m.client_msg_id == cmid
                    })
            });
            if !ok {
                self.fail(&format!(
                    "acked {user}/{device}/{cmid} at {seq} is not stored"
                ));
            }
        }
    }

    fn run(&mut self, steps: u64) {
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

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn ordering_invariants_hold_across_random_interleavings_of_shards_store_and_clients() {
    let steps = env("SIM_STEPS").unwrap_or(1_500);
    if let Some(seed) = env("SIM_SEED") {
        Sim::new(seed, true).run(steps);
        return;
    }
    let seeds = env("SIM_SEEDS").unwrap_or(2_000);
    let start = std::time::Instant::now();
    let mut total = Counts::default();
    for seed in 0..seeds {
        let mut sim = Sim::new(seed, false);
        sim.run(steps);
        total += sim.counts;
    }
    println!(
        "{seeds} seeds × {steps} events in {:.1} s: {total:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(total.delivered > seeds * 50, "the runs deliver: {total:?}");
    assert!(
        total.catchup_reads > 0 && total.resumes > 0 && total.failed_commits > 0,
        "the runs reach catch-up, resume and failed commits: {total:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let run = |seed| {
        let mut sim = Sim::new(seed, false);
        sim.run(400);
        (sim.steps, sim.trace.iter().cloned().collect::<Vec<_>>())
    };
    assert_eq!(run(42), run(42));
}
