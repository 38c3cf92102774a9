//! One client connection's state machine, without I/O.
//!
//! A [`Session`] is everything a connection knows across its whole life —
//! including reconnects: its channels and their [`DeliveryChecker`]s, its
//! send schedule, the sends not acked yet, its backoff. The driver
//! ([`crate::client`]) owns the socket and calls in with the current time
//! and a [`Ctx`]:
//!
//! | driver calls | when | the session |
//! |---|---|---|
//! | [`Session::poll`] | every turn | generates due sends, pings, churn drops; says what to do next ([`Action`]) and when to call again |
//! | [`Session::on_connected`] | the upgrade succeeded | waits for `hello` |
//! | [`Session::on_connect_failed`] | connect or upgrade failed | schedules a retry with backoff |
//! | [`Session::on_text`] | a text frame arrived | handles `hello`, `joined`, `ack`, `msg`, `error`, … |
//! | [`Session::on_closed`] | the socket is gone | schedules a reconnect; unacked sends will be retried |
//! | [`Session::finish`] | the run is over | adds its final verdict to the stats |
//!
//! Frames to send are appended to `ctx.out` (masked, ready to write).
//!
//! ## Sending, open loop
//!
//! A sender's k-th message is *scheduled* at `send_start + offset + k /
//! rate` (offset uniform in one interval, so senders do not fire together).
//! At each poll every message whose time has come is written, whatever
//! happened to earlier ones: if the connection is down they wait in a
//! backlog (bounded; beyond it they are counted as skipped) and go out on
//! reconnect. The text of each message starts with its scheduled time in
//! microseconds, so receivers measure latency from the schedule, not from
//! when the sender managed to write.
//!
//! ## Reconnects
//!
//! When the connection ends (server close, restart, error, or a churn drop)
//! every channel's checker is told; on the next `hello` each channel is
//! joined again with `since` = the last seq seen, and every send not acked
//! is written again with the same `client_msg_id` — the gateway's
//! idempotency answers a send it already committed with its original ack
//! (`duplicate: true`). Reconnect delays back off exponentially from 50 ms
//! to 1 s with ±50 % jitter (a server going away with 1001 asks for a random
//! delay); a churn drop reconnects after 0–20 ms.
//!
//! ## Resumers (`resume` scenario)
//!
//! A resumer ([`ConnSpec::resume`]) drops its connection as soon as the
//! send phase begins and stays away until it ends; then every resumer
//! reconnects at once and rejoins with `since` = the last seq it saw. The
//! checker holds it to receiving exactly the missed messages, in order.
//! It records the time from its reconnect attempt to the `joined`
//! (`rejoin`) and to the last missed message — the `head` of that
//! `joined` — received (`catch_up`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use chat_proto::client::{encode_ping, encode_request, encode_send};
use chat_proto::{decode_msg_ref, decode_server_event, encode_close, ServerEvent};
use chat_proto::{JoinMode, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checker::{Delivery, DeliveryChecker, JoinOutcome};
use crate::rng::Rng;
use crate::scenario::ConnSpec;
use crate::stats::ShardStats;

/// Most scheduled sends kept while a connection is down; further ones are
/// counted in `send_skipped`. 32 bytes each.
pub const MAX_BACKLOG: usize = 10_000;

/// First reconnect delay (µs); doubles per failed attempt up to
/// [`MAX_BACKOFF_US`], with ±50 % jitter.
pub const BASE_BACKOFF_US: u64 = 50_000;

/// Longest reconnect delay before jitter (µs).
pub const MAX_BACKOFF_US: u64 = 1_000_000;

/// How long to wait for `hello` after the upgrade (µs).
pub const HELLO_TIMEOUT_US: u64 = 10_000_000;

/// Heartbeat assumed until `hello` says otherwise (ms).
const DEFAULT_HEARTBEAT_MS: u64 = 30_000;

/// The phases of a run, in order. The coordinator moves every connection
/// forward together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Connect at the ramp rate and join; nothing is sent.
    Ramp,
    /// Send on schedule between `send_start_us` and `send_end_us`.
    Send,
    /// No new sends; wait for the acks of those written.
    Drain,
    /// Wait until every member has every acked message (`targets`).
    CatchUp,
    /// Close and report.
    Stop,
}

/// The run's phase as sessions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseView {
    /// The current phase.
    pub phase: Phase,
    /// When sending starts (µs, run clock); meaningful from [`Phase::Send`].
    pub send_start_us: u64,
    /// When sending ends (µs, run clock).
    pub send_end_us: u64,
}

/// What a session is given on every call.
pub struct Ctx<'a> {
    /// The run clock, µs (Unix epoch based, monotonic; see
    /// [`crate::clock`]).
    pub now_us: u64,
    /// The run's phase.
    pub phase: PhaseView,
    /// Per channel: the highest seq acked to any sender of this process.
    pub max_acked: &'a [AtomicU64],
    /// Per channel: the highest acked seq over the whole run, known from
    /// [`Phase::CatchUp`] on (0 before).
    pub targets: &'a [AtomicU64],
    /// The shard's measurements.
    pub stats: &'a mut ShardStats,
    /// Frames to write, appended.
    pub out: &'a mut Vec<u8>,
}

/// What the driver should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep doing what it does (reading, writing `out`) until `wake_at`.
    Continue,
    /// Down: open a connection now.
    Connect,
    /// Up: drop the connection without a close frame (churn); then call
    /// [`Session::on_closed`] with [`Closed::Churn`].
    Drop,
    /// Up, run over: write `out` (a close frame is in it), close, call
    /// [`Session::on_closed`] with [`Closed::Finished`].
    Close,
    /// Down and the run is over: stop driving.
    Finished,
}

/// The result of [`Session::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// When to poll again at the latest (µs); `None`: only on an event.
    pub wake_at: Option<u64>,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The server sent a close frame with this code (`None`: no code).
    ByServer(Option<u16>),
    /// The socket failed or reached EOF without a close frame.
    Lost,
    /// A frame did not decode, or `hello` did not come in time.
    ProtocolError,
    /// We dropped it on purpose (churn).
    Churn,
    /// We closed it because the run is over.
    Finished,
}

/// Progress points the coordinator counts (each reported once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Milestones {
    /// Every channel joined once (or none to join, and `hello` seen).
    pub ready: bool,
    /// Sending is over and every send is acked (or failed).
    pub acked: bool,
    /// Up, joined, and every channel's checker is at its target.
    pub caught_up: bool,
}

/// Where a resumer stands (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    /// Not a resumer, or done.
    No,
    /// Leaves when the send phase begins.
    Waiting,
    /// Asked the driver to drop the connection.
    Leaving,
    /// Away until the send phase ends.
    Away,
    /// Reconnecting since `started_us`; `head` of the resume `joined` once
    /// it came.
    Back { started_us: u64, head: Option<u64> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Down { retry_at: u64 },
    AwaitHello { deadline: u64 },
    Up,
}

/// A channel the connection joins.
#[derive(Debug)]
struct Sub {
    id: u32,
    name: String,
    /// The `mode` of its joins.
    mode: JoinMode,
    checker: DeliveryChecker,
}

/// A send, from schedule to ack.
#[derive(Clone, Copy, Debug)]
struct Outgoing {
    /// The number in `client_msg_id` (`m<n>`).
    cmid: u64,
    /// Index into `Sender::targets`.
    target: usize,
    /// Scheduled time, µs.
    sched_us: u64,
    /// Written before (this is a retry).
    retry: bool,
}

#[derive(Debug)]
struct Sender {
    /// (channel id, name) to send to, round-robin.
    targets: Vec<(u32, String)>,
    /// µs between sends (0: not a sender).
    interval_us: f64,
    /// Offset of the first send within the first interval, µs.
    offset_us: f64,
    /// Index of the next scheduled send.
    k: u64,
    next_cmid: u64,
    /// Scheduled, not written (connection down).
    backlog: VecDeque<Outgoing>,
    /// Written, not acked: (request id, send).
    inflight: VecDeque<(u64, Outgoing)>,
}

impl Sender {
    fn next_sched(&self, view: &PhaseView) -> Option<u64> {
        if self.interval_us <= 0.0 || view.phase < Phase::Send {
            return None;
        }
        let at = view.send_start_us as f64 + self.offset_us + self.k as f64 * self.interval_us;
        let at = at as u64;
        (at < view.send_end_us).then_some(at)
    }
}

/// One connection's state across its life. See the module docs.
#[derive(Debug)]
pub struct Session {
    index: u32,
    user: String,
    device: String,
    subs: Vec<Sub>,
    sender: Sender,
    churn_rate: f64,
    churn_at: Option<u64>,
    message_bytes: usize,
    state: State,
    attempts: u32,
    next_id: u64,
    /// Joins in flight: (request id, index into `subs`, since sent).
    pending_joins: Vec<(u64, usize, Option<u64>)>,
    heartbeat_us: u64,
    last_tx_us: u64,
    rng: Rng,
    reported: Milestones,
    text: String,
    resume: Resume,
    read_bps: u64,
    latency_apart: bool,
}

impl Session {
    /// A session for `spec`, first connecting at `start_at_us` (its ramp
    /// slot). `channels` are the plan's channel names; `seed` seeds its
    /// randomness (masks, jitter, offsets).
    #[must_use]
    pub fn new(
        spec: &ConnSpec,
        channels: &[String],
        message_bytes: usize,
        start_at_us: u64,
        seed: u64,
    ) -> Session {
        let name = |id: u32| channels.get(id as usize).cloned().unwrap_or_default();
        let mut rng = Rng::new(seed ^ (u64::from(spec.index) << 20));
        let interval_us = if spec.send_rate > 0.0 && !spec.sends.is_empty() {
            1e6 / spec.send_rate
        } else {
            0.0
        };
        let offset_us = rng.next_f64() * interval_us;
        Session {
            index: spec.index,
            user: spec.user.clone(),
            device: spec.device.clone(),
            subs: spec
                .joins
                .iter()
                .map(|&id| Sub {
                    id,
                    name: name(id),
                    mode: spec.mode.join_mode(),
                    checker: if spec.mode == crate::scenario::Tier::Counts {
                        DeliveryChecker::counts()
                    } else {
                        DeliveryChecker::new()
                    },
                })
                .collect(),
            sender: Sender {
                targets: spec.sends.iter().map(|&id| (id, name(id))).collect(),
                interval_us,
                offset_us,
                k: 0,
                next_cmid: 1,
                backlog: VecDeque::new(),
                inflight: VecDeque::new(),
            },
            churn_rate: spec.churn_rate,
            churn_at: None,
            message_bytes,
            state: State::Down {
                retry_at: start_at_us,
            },
            attempts: 0,
            next_id: 0,
            pending_joins: Vec::new(),
            heartbeat_us: DEFAULT_HEARTBEAT_MS * 1000,
            last_tx_us: 0,
            rng,
            reported: Milestones::default(),
            text: String::new(),
            resume: if spec.resume {
                Resume::Waiting
            } else {
                Resume::No
            },
            read_bps: spec.read_bps,
            latency_apart: spec.latency_apart,
        }
    }

    /// Read rate limit of this connection, bytes/s (0: unlimited).
    #[must_use]
    pub fn read_bps(&self) -> u64 {
        self.read_bps
    }

    /// The user id.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The device id.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether the connection is up (upgraded; `hello` may be pending).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        !matches!(self.state, State::Down { .. })
    }

    /// A fresh WebSocket mask.
    pub fn mask(&mut self) -> [u8; 4] {
        self.rng.mask()
    }

    /// Sends written and not acked, plus those waiting to be written.
    #[must_use]
    pub fn outstanding_sends(&self) -> usize {
        self.sender.inflight.len() + self.sender.backlog.len()
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Reconnect delay for the current attempt, µs, with jitter.
    fn backoff(&mut self) -> u64 {
        let base = (BASE_BACKOFF_US << self.attempts.min(8)).min(MAX_BACKOFF_US);
        self.attempts = self.attempts.saturating_add(1);
        base / 2 + self.rng.below(base)
    }

    /// The upgrade succeeded; `hello` is next.
    pub fn on_connected(&mut self, ctx: &mut Ctx<'_>) {
        self.state = State::AwaitHello {
            deadline: ctx.now_us + HELLO_TIMEOUT_US,
        };
        self.last_tx_us = ctx.now_us;
        ctx.stats.counters.connects += 1;
        ctx.stats.conns_up += 1;
    }

    /// Connecting or the upgrade failed.
    pub fn on_connect_failed(&mut self, ctx: &mut Ctx<'_>) {
        ctx.stats.counters.connect_errors += 1;
        let delay = self.backoff();
        self.state = State::Down {
            retry_at: ctx.now_us + delay,
        };
    }

    /// The connection is gone.
    pub fn on_closed(&mut self, ctx: &mut Ctx<'_>, why: Closed) {
        if matches!(self.state, State::Down { .. }) {
            return;
        }
        ctx.stats.conns_up = ctx.stats.conns_up.saturating_sub(1);
        for sub in &mut self.subs {
            sub.checker.on_disconnect();
        }
        self.pending_joins.clear();
        self.churn_at = None;
        if self.resume == Resume::Leaving {
            // Away on purpose until the send phase ends (see `poll`); the
            // sends of a resumer (none) need no retry.
            self.resume = Resume::Away;
            self.state = State::Down { retry_at: u64::MAX };
            return;
        }
        // Unacked sends go first, in their original order, as retries.
        while let Some((_, mut o)) = self.sender.inflight.pop_back() {
            o.retry = true;
            self.sender.backlog.push_front(o);
        }
        let delay = match why {
            Closed::Churn => {
                ctx.stats.counters.churn_drops += 1;
                self.rng.below(20_000)
            }
            Closed::Finished => 0,
            Closed::ByServer(code) => {
                ctx.stats.counters.disconnects += 1;
                if code == Some(1001) {
                    ctx.stats.counters.going_away += 1;
                }
                self.backoff()
            }
            Closed::Lost | Closed::ProtocolError => {
                ctx.stats.counters.disconnects += 1;
                if why == Closed::ProtocolError {
                    ctx.stats.counters.protocol_errors += 1;
                }
                self.backoff()
            }
        };
        self.state = State::Down {
            retry_at: ctx.now_us + delay,
        };
    }

    /// Milestones reached since the last call (each reported once).
    pub fn take_milestones(&mut self, ctx: &Ctx<'_>) -> Milestones {
        let mut new = Milestones::default();
        if !self.reported.ready && self.is_ready() {
            self.reported.ready = true;
            new.ready = true;
        }
        if !self.reported.acked && ctx.phase.phase >= Phase::Drain && self.outstanding_sends() == 0
        {
            self.reported.acked = true;
            new.acked = true;
        }
        if !self.reported.caught_up
            && ctx.phase.phase >= Phase::CatchUp
            && self.is_caught_up(ctx.targets)
        {
            self.reported.caught_up = true;
            new.caught_up = true;
        }
        new
    }

    fn is_ready(&self) -> bool {
        match self.state {
            State::Up => self.subs.iter().all(|s| s.checker.has_joined_once()),
            _ => false,
        }
    }

    /// Up, every channel joined, and each checker at its target.
    fn is_caught_up(&self, targets: &[AtomicU64]) -> bool {
        self.state == State::Up
            && self.subs.iter().all(|s| {
                let target = targets
                    .get(s.id as usize)
                    .map_or(0, |t| t.load(Ordering::Relaxed));
                s.checker.is_joined() && s.checker.is_caught_up(target)
            })
    }

    /// Advances the session to `ctx.now_us`. See [`Action`].
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let now = ctx.now_us;
        self.schedule_due(ctx);
        let next_send = self.sender.next_sched(&ctx.phase);
        match self.state {
            State::Down { retry_at } => {
                if ctx.phase.phase == Phase::Stop {
                    return Step {
                        action: Action::Finished,
                        wake_at: None,
                    };
                }
                if self.resume == Resume::Away {
                    if ctx.phase.phase < Phase::Drain {
                        // The phase change wakes the driver.
                        return Step {
                            action: Action::Continue,
                            wake_at: None,
                        };
                    }
                    self.resume = Resume::Back {
                        started_us: now,
                        head: None,
                    };
                    return Step {
                        action: Action::Connect,
                        wake_at: None,
                    };
                }
                if now >= retry_at {
                    return Step {
                        action: Action::Connect,
                        wake_at: None,
                    };
                }
                Step {
                    action: Action::Continue,
                    wake_at: min_opt(Some(retry_at), next_send),
                }
            }
            State::AwaitHello { deadline } => {
                if ctx.phase.phase == Phase::Stop {
                    return self.close(ctx);
                }
                if now >= deadline {
                    // Treated as a protocol error by the driver's close.
                    return Step {
                        action: Action::Drop,
                        wake_at: None,
                    };
                }
                Step {
                    action: Action::Continue,
                    wake_at: min_opt(Some(deadline), next_send),
                }
            }
            State::Up => {
                if ctx.phase.phase == Phase::Stop {
                    return self.close(ctx);
                }
                self.flush_backlog(ctx);
                let sending = ctx.phase.phase == Phase::Send;
                if sending && self.resume == Resume::Waiting {
                    self.resume = Resume::Leaving;
                    return Step {
                        action: Action::Drop,
                        wake_at: None,
                    };
                }
                if sending && self.churn_rate > 0.0 {
                    // Armed in the send phase only: nothing drops while the
                    // run ramps up or drains.
                    let at = match self.churn_at {
                        Some(at) => at,
                        None => {
                            let at = now + self.rng.exponential(1e6 / self.churn_rate) as u64;
                            self.churn_at = Some(at);
                            at
                        }
                    };
                    if now >= at {
                        return Step {
                            action: Action::Drop,
                            wake_at: None,
                        };
                    }
                }
                let ping_at = self.last_tx_us + self.heartbeat_us / 2;
                if now >= ping_at {
                    let mask = self.rng.mask();
                    encode_ping(ctx.out, None, mask);
                    self.last_tx_us = now;
                }
                let ping_at = self.last_tx_us + self.heartbeat_us / 2;
                let churn = self.churn_at.filter(|_| sending);
                Step {
                    action: Action::Continue,
                    wake_at: min_opt(min_opt(Some(ping_at), next_send), churn),
                }
            }
        }
    }

    /// Whether the current state waits for `hello` past its deadline (the
    /// driver reports such a drop as a protocol error).
    #[must_use]
    pub fn hello_timed_out(&self, now_us: u64) -> bool {
        matches!(self.state, State::AwaitHello { deadline } if now_us >= deadline)
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let mask = self.rng.mask();
        encode_close(ctx.out, 1000, "", Some(mask));
        Step {
            action: Action::Close,
            wake_at: None,
        }
    }

    /// Moves every send whose scheduled time has come to the backlog.
    fn schedule_due(&mut self, ctx: &mut Ctx<'_>) {
        let targets = self.sender.targets.len();
        while let Some(at) = self.sender.next_sched(&ctx.phase) {
            if at > ctx.now_us {
                break;
            }
            let k = self.sender.k;
            self.sender.k += 1;
            if self.sender.backlog.len() >= MAX_BACKLOG {
                ctx.stats.counters.send_skipped += 1;
                continue;
            }
            let cmid = self.sender.next_cmid;
            self.sender.next_cmid += 1;
            self.sender.backlog.push_back(Outgoing {
                cmid,
                target: (k % targets.max(1) as u64) as usize,
                sched_us: at,
                retry: false,
            });
        }
    }

    /// Writes every waiting send (only when up and `hello` came).
    fn flush_backlog(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(o) = self.sender.backlog.pop_front() {
            let id = self.next_id();
            self.text.clear();
            // "<scheduled µs> <conn>.<cmid> xxxx…" padded to message_bytes.
            let _ = write!(self.text, "{} {}.{} ", o.sched_us, self.index, o.cmid);
            while self.text.len() < self.message_bytes {
                self.text.push('x');
            }
            let mut cmid = String::with_capacity(12);
            let _ = write!(cmid, "m{}", o.cmid);
            let mask = self.rng.mask();
            let channel = &self.sender.targets[o.target].1;
            encode_send(ctx.out, Some(id), channel, &cmid, &self.text, mask);
            self.last_tx_us = ctx.now_us;
            if o.retry {
                ctx.stats.counters.retries += 1;
            } else {
                ctx.stats.counters.sent += 1;
            }
            self.sender.inflight.push_back((id, o));
        }
    }

    /// Handles one text frame from the server.
    pub fn on_text(&mut self, ctx: &mut Ctx<'_>, text: &str) {
        // Nearly every frame of a run is a `msg`: decoded borrowed, without
        // allocating (a third of loadgen's CPU in a big room was the owned
        // decode); anything else takes the full decoder.
        match decode_msg_ref(text) {
            Some(Ok(msg)) => {
                let own = *msg.from == *self.user && *msg.device == *self.device;
                let body = msg.text.as_deref().unwrap_or("");
                self.on_msg(ctx, &msg.channel, msg.seq, own, body);
                return;
            }
            Some(Err(e)) => {
                ctx.stats.counters.protocol_errors += 1;
                ctx.stats
                    .note_error(|| format!("undecodable server event ({e})"));
                return;
            }
            None => {}
        }
        let event = match decode_server_event(text) {
            Ok(e) => e,
            Err(e) => {
                ctx.stats.counters.protocol_errors += 1;
                ctx.stats
                    .note_error(|| format!("undecodable server event ({e})"));
                return;
            }
        };
        match event {
            ServerEvent::Hello { heartbeat_ms, .. } => self.on_hello(ctx, heartbeat_ms),
            ServerEvent::Joined { id, channel, head } => self.on_joined(ctx, id, &channel, head),
            ServerEvent::Ack {
                id,
                channel: _,
                client_msg_id: _,
                seq,
                ts: _,
                duplicate,
            } => self.on_ack(ctx, id, seq, duplicate),
            ServerEvent::Msg(msg) => {
                let own = msg.from == self.user && msg.device == self.device;
                let text = msg.text.as_deref().unwrap_or("");
                self.on_msg(ctx, &msg.channel, msg.seq, own, text);
            }
            ServerEvent::Head { channel, head } => {
                if let Some(sub) = self.subs.iter_mut().find(|s| s.name == channel) {
                    sub.checker.on_head(head);
                }
            }
            ServerEvent::Error { id, code, message } => {
                ctx.stats
                    .note_error(|| format!("server error {code}: {message}"));
                self.on_error(ctx, id);
            }
            // pong, left, typing, history, presence…: nothing to do.
            _ => {}
        }
    }

    fn on_hello(&mut self, ctx: &mut Ctx<'_>, heartbeat_ms: u64) {
        if !matches!(self.state, State::AwaitHello { .. }) {
            ctx.stats.counters.protocol_errors += 1;
            return;
        }
        self.state = State::Up;
        self.attempts = 0;
        self.heartbeat_us = heartbeat_ms.max(1) * 1000;
        for i in 0..self.subs.len() {
            let id = self.next_id();
            let since = self.subs[i].checker.resume_from();
            let mask = self.rng.mask();
            let request = Request::Join {
                channel: &self.subs[i].name,
                since,
                mode: self.subs[i].mode,
            };
            encode_request(ctx.out, Some(&id.to_string()), &request, mask);
            self.pending_joins.push((id, i, since));
        }
        self.last_tx_us = ctx.now_us;
        self.flush_backlog(ctx);
    }

    fn on_joined(&mut self, ctx: &mut Ctx<'_>, id: Option<Value>, channel: &str, head: u64) {
        let id = id.and_then(|v| v.as_u64());
        let Some(pos) = self.pending_joins.iter().position(|p| Some(p.0) == id) else {
            // A joined we did not ask for (or for a join of an earlier
            // connection): the server is confused.
            ctx.stats.counters.protocol_errors += 1;
            return;
        };
        let (_, i, since) = self.pending_joins.swap_remove(pos);
        let sub = &mut self.subs[i];
        if sub.name != channel {
            ctx.stats.counters.protocol_errors += 1;
        }
        if sub.checker.on_joined(since, head) == JoinOutcome::HeadRegressed {
            ctx.stats.violations.head_regressed += 1;
        }
        if let Resume::Back {
            started_us,
            head: None,
        } = self.resume
        {
            ctx.stats
                .rejoin
                .record(ctx.now_us.saturating_sub(started_us));
            ctx.stats.counters.resumes += 1;
            ctx.stats.counters.resume_replayed += head.saturating_sub(since.unwrap_or(head));
            self.resume = Resume::Back {
                started_us,
                head: Some(head),
            };
            self.check_resumed(ctx);
        }
    }

    /// A resumer that has every message up to its rejoin `head` is done.
    fn check_resumed(&mut self, ctx: &mut Ctx<'_>) {
        let Resume::Back {
            started_us,
            head: Some(head),
        } = self.resume
        else {
            return;
        };
        if self
            .subs
            .iter()
            .all(|s| s.checker.is_joined() && s.checker.is_caught_up(head))
        {
            ctx.stats
                .catch_up
                .record(ctx.now_us.saturating_sub(started_us));
            ctx.stats.counters.resumes_caught_up += 1;
            self.resume = Resume::No;
        }
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_>, id: Option<Value>, seq: u64, duplicate: bool) {
        let id = id.and_then(|v| v.as_u64());
        let Some(pos) = self.sender.inflight.iter().position(|p| Some(p.0) == id) else {
            ctx.stats.counters.protocol_errors += 1;
            return;
        };
        let Some((_, o)) = self.sender.inflight.remove(pos) else {
            return;
        };
        ctx.stats.counters.acked += 1;
        if duplicate && !o.retry {
            ctx.stats.counters.unexpected_duplicate_acks += 1;
        }
        ctx.stats.ack.record(ctx.now_us.saturating_sub(o.sched_us));
        let channel = self.sender.targets[o.target].0;
        if let Some(max) = ctx.max_acked.get(channel as usize) {
            max.fetch_max(seq, Ordering::Relaxed);
        }
    }

    fn on_msg(&mut self, ctx: &mut Ctx<'_>, channel: &str, seq: u64, own: bool, text: &str) {
        ctx.stats.counters.delivered += 1;
        let Some(sub) = self.subs.iter_mut().find(|s| s.name == channel) else {
            ctx.stats.violations.before_join += 1;
            return;
        };
        match sub.checker.on_msg(seq) {
            Delivery::InOrder | Delivery::Gap { .. } => {
                if !own {
                    if let Some(sched) = scheduled_time(text) {
                        let latency = ctx.now_us.saturating_sub(sched);
                        if self.latency_apart {
                            ctx.stats.slow_delivery.record(latency);
                        } else {
                            ctx.stats.delivery.record(latency);
                            ctx.stats
                                .windows
                                .record(sched.saturating_sub(ctx.phase.send_start_us), latency);
                        }
                    }
                }
            }
            Delivery::Duplicate => ctx.stats.violations.duplicated += 1,
            Delivery::Reordered => ctx.stats.violations.reordered += 1,
            Delivery::BeforeJoin => ctx.stats.violations.before_join += 1,
            Delivery::Unwanted => ctx.stats.violations.counts_msgs += 1,
        }
        if matches!(self.resume, Resume::Back { head: Some(_), .. }) {
            self.check_resumed(ctx);
        }
    }

    fn on_error(&mut self, ctx: &mut Ctx<'_>, id: Option<Value>) {
        let id = id.and_then(|v| v.as_u64());
        if let Some(pos) = self.sender.inflight.iter().position(|p| Some(p.0) == id) {
            self.sender.inflight.remove(pos);
            ctx.stats.counters.send_errors += 1;
        } else if let Some(pos) = self.pending_joins.iter().position(|p| Some(p.0) == id) {
            self.pending_joins.swap_remove(pos);
            ctx.stats.counters.join_errors += 1;
        } else {
            ctx.stats.counters.other_errors += 1;
        }
    }

    /// The run is over: adds this connection's final verdict (lost messages
    /// against `ctx.targets`, unacked sends, down at the end) to the stats.
    /// Call it once, when [`Session::poll`] returns [`Action::Close`] (before
    /// [`Session::on_closed`]) or [`Action::Finished`].
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) {
        let up = self.state == State::Up;
        let mut all_joined = up;
        for sub in &self.subs {
            let target = ctx
                .targets
                .get(sub.id as usize)
                .map_or(0, |t| t.load(Ordering::Relaxed));
            let stayed = up && sub.checker.is_joined();
            all_joined &= stayed;
            let v = sub.checker.finish(target, stayed);
            // Duplicates, reorders, early messages, head regressions and
            // messages to counts members were counted live; add what only
            // the end knows.
            ctx.stats.violations.lost += v.lost;
            ctx.stats.violations.counts_behind += v.counts_behind;
        }
        if !all_joined {
            ctx.stats.counters.down_at_end += 1;
        }
        ctx.stats.counters.unacked += self.outstanding_sends() as u64;
        if !self.reported.ready {
            ctx.stats.counters.not_ready += 1;
        }
    }

    /// Whether every channel has been joined once (the ramp is done for this
    /// connection).
    #[must_use]
    pub fn ready_reported(&self) -> bool {
        self.reported.ready
    }
}

/// The scheduled send time a payload starts with.
#[must_use]
pub fn scheduled_time(text: &str) -> Option<u64> {
    // Read per delivery. The usual text starts with sixteen digits (µs since
    // the epoch) and a space: two words of eight digits, converted without a
    // loop (the loop below was 8 % of loadgen's CPU in a big room).
    let b = text.as_bytes();
    if let (Some(hi), Some(lo), Some(b' ')) = (
        b.get(..8).and_then(eight_digits),
        b.get(8..16).and_then(eight_digits),
        b.get(16),
    ) {
        return Some(hi * 100_000_000 + lo);
    }
    // Otherwise the digits by hand (a `split` and `parse` were ~5 % of
    // loadgen's CPU in a big room); anything unusual goes to `parse`.
    let mut v: u64 = 0;
    for (i, &c) in text.as_bytes().iter().enumerate() {
        match c {
            b'0'..=b'9' => v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?,
            b' ' if i > 0 => return Some(v),
            _ => return text.split(' ').next().and_then(|t| t.parse().ok()),
        }
    }
    if text.is_empty() {
        None
    } else {
        Some(v)
    }
}

/// The value of eight ASCII digits (the first the most significant), or
/// `None` if any byte is not a digit: three multiplications instead of
/// eight steps of a loop.
fn eight_digits(b: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut w = [0u8; 8];
    w.copy_from_slice(b.get(..8)?);
    let d = u64::from_le_bytes(w).wrapping_sub(ONES * u64::from(b'0'));
    // A byte below '0' borrows into its top bit; one above '9' carries into
    // it when 0x76 is added.
    if (d | d.wrapping_add(ONES * 0x76)) & (ONES * 0x80) != 0 {
        return None;
    }
    // Pairs, then fours, then all eight: each step multiplies the upper
    // half of a lane by its weight and adds the lower.
    let v = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF)
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Drives a session with virtual time against scripted server frames.
    use super::*;
    use crate::checker::Violations;
    use chat_model::{MessageKind, StoredMessage};
    use chat_proto::response::{self, HelloLimits, MsgView};
    use chat_proto::{decode_request, Limits, Request, Role, WsDecoder, WsEvent};

    struct World {
        stats: ShardStats,
        max_acked: Vec<AtomicU64>,
        targets: Vec<AtomicU64>,
        out: Vec<u8>,
        phase: PhaseView,
        now: u64,
    }

    impl World {
        fn new() -> World {
            World {
                stats: ShardStats::default(),
                max_acked: (0..1).map(|_| AtomicU64::new(0)).collect(),
                targets: (0..1).map(|_| AtomicU64::new(0)).collect(),
                out: Vec::new(),
                phase: PhaseView {
                    phase: Phase::Ramp,
                    send_start_us: 0,
                    send_end_us: 0,
                },
                now: 1_000_000,
            }
        }
        fn ctx(&mut self) -> Ctx<'_> {
            Ctx {
                now_us: self.now,
                phase: self.phase,
                max_acked: &self.max_acked,
                targets: &self.targets,
                stats: &mut self.stats,
                out: &mut self.out,
            }
        }
        /// The requests written so far, as the server decodes them (JSON).
        fn take_requests(&mut self) -> Vec<serde_json::Value> {
            let mut dec = WsDecoder::new(Role::Server, usize::MAX);
            let mut texts = Vec::new();
            dec.feed(&self.out, &mut |e| {
                if let WsEvent::Text(t) = e {
                    texts.push(t.to_string());
                }
            })
            .unwrap();
            self.out.clear();
            for t in &texts {
                decode_request(t, &Limits::default()).unwrap();
            }
            texts
                .iter()
                .map(|t| serde_json::from_str(t).unwrap())
                .collect()
        }
    }

    /// The text of a server frame written by the gateway's encoders.
    fn frame_text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        write(&mut buf);
        let mut dec = WsDecoder::new(Role::Client, usize::MAX);
        let mut text = String::new();
        dec.feed(&buf, &mut |e| {
            if let WsEvent::Text(t) = e {
                text = t.to_string();
            }
        })
        .unwrap();
        text
    }

    fn hello() -> String {
        let limits = HelloLimits {
            max_text_chars: 100,
            max_frame_bytes: 1000,
            history_max_limit: 200,
        };
        frame_text(|b| response::hello(b, "u", "d", "s", 0, 30_000, &limits, None))
    }

    fn msg(seq: u64, from: &str, text: &str) -> String {
        let stored = StoredMessage {
            seq,
            from: from.into(),
            device: "d0".into(),
            client_msg_id: format!("x{seq}"),
            kind: MessageKind::Text,
            text: text.into(),
            target: None,
            media: None,
            ts: 1,
            edited: false,
            deleted: false,
        };
        frame_text(|b| response::msg(b, "room:r", &MsgView::from_stored(&stored)))
    }

    fn spec(rate: f64) -> ConnSpec {
        ConnSpec {
            index: 0,
            user: "me".into(),
            device: "d0".into(),
            joins: vec![0],
            sends: vec![0],
            send_rate: rate,
            churn_rate: 0.0,
            resume: false,
            read_bps: 0,
            latency_apart: false,
            mode: crate::scenario::Tier::Live,
        }
    }

    #[test]
    fn scheduled_time_reads_the_leading_number_as_parse_would() {
        for t in [
            "123 xx",
            "123",
            "",
            " 1",
            "12a 3",
            "+5 x",
            "0 x",
            "18446744073709551615 x",
            "18446744073709551616 x",
            "1764860000123456 x",
            "0000000000000000 x",
            "9999999999999999 x",
            "1764860000123456",
            "17648600001234567 x",
            "176486000012345 x",
            "1764860000123a56 x",
            "1764:60000123456 x",
            "1764860/00123456 x",
            "176486000012345\u{e9} x",
        ] {
            let parsed: Option<u64> = t.split(' ').next().and_then(|t| t.parse().ok());
            assert_eq!(scheduled_time(t), parsed, "{t:?}");
        }
        // Every digit in every place of the sixteen-digit form.
        for place in 0..16 {
            for digit in b'0'..=b'9' {
                let mut t = *b"1234567890123456 x";
                t[place] = digit;
                let t = std::str::from_utf8(&t).expect("ASCII");
                assert_eq!(scheduled_time(t), t[..16].parse().ok(), "{t:?}");
            }
        }
    }

    #[test]
    fn connects_joins_sends_on_schedule_and_resumes_with_since() {
        let mut w = World::new();
        let channels = vec!["room:r".to_string()];
        let mut s = Session::new(&spec(10.0), &channels, 32, 1_500_000, 1);

        // Before its ramp slot: wait; at it: connect.
        let step = s.poll(&mut w.ctx());
        assert_eq!(step.action, Action::Continue);
        assert_eq!(step.wake_at, Some(1_500_000));
        w.now = 1_500_000;
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let reqs = w.take_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0]["type"], "join");
        assert!(reqs[0].get("since").is_none());
        let join_id = reqs[0]["id"].as_u64().unwrap();
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| response::joined(b, Some(&join_id.to_string()), "room:r", 7)),
        );
        assert!(s.take_milestones(&w.ctx()).ready);

        // Sending: 10/s from t = 2 s for 1 s → 10 sends.
        w.phase = PhaseView {
            phase: Phase::Send,
            send_start_us: 2_000_000,
            send_end_us: 3_000_000,
        };
        w.now = 2_550_000;
        s.poll(&mut w.ctx());
        let sends = w.take_requests();
        assert!((5..=6).contains(&sends.len()), "{}", sends.len());
        for (i, r) in sends.iter().enumerate() {
            assert_eq!(r["type"], "send");
            assert_eq!(r["client_msg_id"], format!("m{}", i + 1));
            let sched = scheduled_time(r["text"].as_str().unwrap()).unwrap();
            assert!((2_000_000..2_550_000).contains(&sched));
            assert_eq!(r["text"].as_str().unwrap().len(), 32);
        }
        // Ack the first: 8 is the next seq.
        let first_id = sends[0]["id"].as_u64().unwrap();
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| {
                response::ack(b, Some(&first_id.to_string()), "room:r", "m1", 8, 1, false)
            }),
        );
        assert_eq!(w.stats.counters.acked, 1);
        assert_eq!(w.max_acked[0].load(Ordering::Relaxed), 8);
        assert_eq!(w.stats.ack.len(), 1);
        // Deliveries 8 (own) and 9 (another's).
        s.on_text(&mut w.ctx(), &msg(8, "me", "2000000 own"));
        s.on_text(&mut w.ctx(), &msg(9, "other", "2500000 theirs"));
        assert_eq!(w.stats.delivery.len(), 1, "own messages are not timed");
        // 50 ms, within the histogram's 0.1 % precision.
        let max = w.stats.delivery.percentiles().max;
        assert!((49_950..=50_050).contains(&max), "{max}");

        // Sending ends now (nothing more is scheduled). The server goes
        // away; the sends not acked are retried after the reconnect, and the
        // join resumes from 9.
        w.phase = PhaseView {
            phase: Phase::Drain,
            send_start_us: 2_000_000,
            send_end_us: 2_550_000,
        };
        s.on_closed(&mut w.ctx(), Closed::ByServer(Some(1001)));
        assert_eq!(w.stats.counters.going_away, 1);
        let step = s.poll(&mut w.ctx());
        let retry_at = step.wake_at.unwrap();
        assert!(retry_at > w.now && retry_at <= w.now + 75_000);
        w.now = retry_at;
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let reqs = w.take_requests();
        assert_eq!(reqs[0]["type"], "join");
        assert_eq!(reqs[0]["since"], 9);
        let retried: Vec<_> = reqs[1..]
            .iter()
            .map(|r| r["client_msg_id"].clone())
            .collect();
        let expected: Vec<_> = sends[1..]
            .iter()
            .map(|r| r["client_msg_id"].clone())
            .collect();
        assert_eq!(&retried[..expected.len()], &expected[..]);
        assert_eq!(w.stats.counters.retries as usize, expected.len());
        let join_id = reqs[0]["id"].as_u64().unwrap();
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| response::joined(b, Some(&join_id.to_string()), "room:r", 10)),
        );
        s.on_text(&mut w.ctx(), &msg(10, "other", "2600000 x"));
        assert_eq!(w.stats.violations, Default::default());
        assert_eq!(w.stats.counters.delivered, 3);

        // End: targets say 12 was acked: two lost for this member, and the
        // retried sends were never acked.
        w.targets[0].store(12, Ordering::Relaxed);
        w.phase.phase = Phase::Stop;
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Close);
        s.finish(&mut w.ctx());
        assert_eq!(w.stats.violations.lost, 2);
        assert_eq!(w.stats.counters.unacked as usize, expected.len());
        assert_eq!(w.stats.counters.down_at_end, 0);
    }

    #[test]
    fn duplicates_and_reorders_are_counted_live() {
        let mut w = World::new();
        let channels = vec!["room:r".to_string()];
        let mut s = Session::new(&spec(0.0), &channels, 16, 0, 1);
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let id = w.take_requests()[0]["id"].as_u64().unwrap();
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| response::joined(b, Some(&id.to_string()), "room:r", 0)),
        );
        for seq in [1, 3, 2, 2] {
            s.on_text(&mut w.ctx(), &msg(seq, "other", "1 x"));
        }
        assert_eq!(w.stats.violations.reordered, 1);
        assert_eq!(w.stats.violations.duplicated, 1);
        assert_eq!(w.stats.counters.delivered, 4);
    }

    #[test]
    fn pings_when_idle_and_drops_on_churn() {
        let mut w = World::new();
        let mut sp = spec(0.0);
        sp.joins.clear();
        sp.sends.clear();
        sp.churn_rate = 1.0;
        let mut s = Session::new(&sp, &[], 16, 0, 3);
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        assert!(s.take_milestones(&w.ctx()).ready);
        // Heartbeat 30 s: a ping after 15 s of silence (no churn in Ramp).
        let step = s.poll(&mut w.ctx());
        assert_eq!(step.wake_at, Some(w.now + 15_000_000));
        w.now += 15_000_000;
        s.poll(&mut w.ctx());
        let reqs = w.take_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0]["type"], "ping");
        // In the send phase the churn timer fires.
        w.phase = PhaseView {
            phase: Phase::Send,
            send_start_us: w.now,
            send_end_us: w.now + 100_000_000,
        };
        let mut dropped = false;
        for _ in 0..1000 {
            w.now += 100_000;
            if s.poll(&mut w.ctx()).action == Action::Drop {
                dropped = true;
                break;
            }
        }
        assert!(dropped);
        s.on_closed(&mut w.ctx(), Closed::Churn);
        assert_eq!(w.stats.counters.churn_drops, 1);
        assert!(!s.is_connected());
    }

    #[test]
    fn a_resumer_leaves_for_the_send_phase_and_replays_what_it_missed() {
        let mut w = World::new();
        let channels = vec!["room:r".to_string()];
        let mut sp = spec(0.0);
        sp.sends.clear();
        sp.resume = true;
        let mut s = Session::new(&sp, &channels, 16, 0, 1);
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let id = w.take_requests()[0]["id"].as_u64().unwrap();
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| response::joined(b, Some(&id.to_string()), "room:r", 2)),
        );
        s.on_text(&mut w.ctx(), &msg(3, "other", "1 x"));
        // Ramp: stays. Send: leaves, and is not a churn drop.
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Continue);
        w.phase = PhaseView {
            phase: Phase::Send,
            send_start_us: w.now,
            send_end_us: w.now + 1_000_000,
        };
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Drop);
        s.on_closed(&mut w.ctx(), Closed::Churn);
        assert_eq!(w.stats.counters.churn_drops, 0);
        w.now += 500_000;
        let step = s.poll(&mut w.ctx());
        assert_eq!((step.action, step.wake_at), (Action::Continue, None));
        // Drain: back at once, rejoining with since = 3.
        w.phase.phase = Phase::Drain;
        w.now += 600_000;
        assert_eq!(s.poll(&mut w.ctx()).action, Action::Connect);
        w.now += 1_000;
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let reqs = w.take_requests();
        assert_eq!(reqs[0]["since"], 3);
        let id = reqs[0]["id"].as_u64().unwrap();
        w.now += 1_000;
        s.on_text(
            &mut w.ctx(),
            &frame_text(|b| response::joined(b, Some(&id.to_string()), "room:r", 6)),
        );
        assert_eq!(w.stats.counters.resumes, 1);
        assert_eq!(w.stats.counters.resume_replayed, 3);
        assert_eq!(w.stats.rejoin.len(), 1);
        for seq in 4..=5 {
            s.on_text(&mut w.ctx(), &msg(seq, "other", "1 x"));
        }
        assert_eq!(w.stats.catch_up.len(), 0, "not yet: 6 is missing");
        w.now += 3_000;
        s.on_text(&mut w.ctx(), &msg(6, "other", "1 x"));
        assert_eq!(w.stats.counters.resumes_caught_up, 1);
        let p = w.stats.catch_up.percentiles();
        assert!((4_990..=5_010).contains(&p.max), "{}", p.max);
        assert_eq!(w.stats.violations, Violations::default());
    }

    #[test]
    fn join_requests_decode_on_the_gateway() {
        // The frames the session writes are valid requests for the gateway's
        // own decoder (checked in take_requests); spot-check the shapes.
        let mut w = World::new();
        let channels = vec!["room:r".to_string()];
        let mut s = Session::new(&spec(0.0), &channels, 16, 0, 1);
        s.poll(&mut w.ctx());
        s.on_connected(&mut w.ctx());
        s.on_text(&mut w.ctx(), &hello());
        let mut dec = WsDecoder::new(Role::Server, usize::MAX);
        let mut n = 0;
        dec.feed(&w.out, &mut |e| {
            if let WsEvent::Text(t) = e {
                let env = decode_request(t, &Limits::default()).unwrap();
                assert!(matches!(env.request, Request::Join { .. }));
                n += 1;
            }
        })
        .unwrap();
        assert_eq!(n, 1);
    }
}
