//! Abusive clients (`--abusers N --abuse-rate R`): connections that break
//! the rules at a steady rate, so a run shows the gateway *refusing* them
//! while the normal connections keep every promise. No I/O: the driver is
//! [`crate::client::drive_abuser`].
//!
//! An abuser is not a member of the plan's connections: it has its own user
//! (`lg<run>x<i>`), joins nothing, is not checked for deliveries, and none
//! of its outcomes count as violations or errors of the run. What it sends
//! and what the gateway answered go to [`AbuseStats`] instead, reported
//! apart (`abuse` in the JSON report).
//!
//! During the send phase each abuser performs one **act** every
//! `abusers / R` seconds (the run's `R` acts per second spread evenly), the
//! acts in turn, each abuser starting at a different one:
//!
//! | act | frames | what the gateway should do |
//! |---|---|---|
//! | `bad_json` | [`BAD_JSON`]: truncated JSON, an array, an unknown type, missing fields, an out-of-range limit | `error` `bad_request` / `unknown_type` each, connection kept |
//! | `history_pipeline` | [`PIPELINE`] `history` requests (latest page, the largest limit) on the plan's big room, pipelined | admits them one page at a time; past the user's rate, `rate_limited` |
//! | `bad_utf8` | a text frame that is not UTF-8 | close 1007 |
//! | `presence_pipeline` | [`PIPELINE`] `presence` requests on the big room, pipelined | a few in flight at a time; past the user's rate, `rate_limited` |
//! | `send_flood` | [`FLOOD`] `send`s to the abuser's own room, pipelined | acks up to the rate limit's burst, then `rate_limited`; after `rate_limit_close_after` refusals in a row, close 1008 |
//! | `read_flood` | [`FLOOD`] `read` cursor reports on the big room | `rate_limited`, then close 1008 |
//! | `oversized` | the header of a text frame one byte over the `max_frame_bytes` of `hello` (the payload is never sent) | close 1009, from the header alone |
//!
//! A closed abuser reconnects after [`RECONNECT_US`] and goes on with its
//! next act at its time; acts that fell due while it was down are skipped
//! (counted), so the rate stays steady. Abusers reply to nothing (no
//! pongs, no heartbeats): the acts are frequent enough.

use std::collections::BTreeMap;

use chat_proto::client::encode_request;
use chat_proto::{
    decode_server_event, encode_close, encode_frame, HistoryRange, Request, ServerEvent, WsOpcode,
};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::session::{Action, Closed, Phase, PhaseView, Step};

/// `history` / `presence` requests per pipelined act.
pub const PIPELINE: usize = 64;

/// `send` / `read` requests per flood.
pub const FLOOD: usize = 200;

/// The frames of a `bad_json` act: each is refused with an `error`.
pub const BAD_JSON: &[&str] = &[
    "{\"type\":",
    "[1,2,3]",
    "not json at all",
    "{\"type\":\"no_such_request\"}",
    "{\"type\":\"send\"}",
    "{\"type\":\"history\",\"channel\":\"room:x\",\"limit\":1000000}",
    "{\"type\":\"join\",\"channel\":\"nowhere\"}",
    "{\"type\":\"read\",\"channel\":\"room:x\",\"seq\":-1}",
];

/// Delay before an abuser reconnects after its connection ended, µs.
pub const RECONNECT_US: u64 = 100_000;

/// How long an abuser waits for `hello` after the upgrade, µs.
const HELLO_TIMEOUT_US: u64 = 10_000_000;

/// One abusive act (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Malformed requests.
    BadJson,
    /// Pipelined `history` requests.
    HistoryPipeline,
    /// A text frame that is not UTF-8.
    BadUtf8,
    /// Pipelined `presence` requests.
    PresencePipeline,
    /// Sends past the rate limit.
    SendFlood,
    /// `read` reports past the rate limit.
    ReadFlood,
    /// A frame header over `max_frame_bytes`.
    Oversized,
}

/// The acts, in the order each abuser goes through them.
pub const ACTS: [Act; 7] = [
    Act::BadJson,
    Act::HistoryPipeline,
    Act::BadUtf8,
    Act::PresencePipeline,
    Act::SendFlood,
    Act::ReadFlood,
    Act::Oversized,
];

impl Act {
    /// The act's name in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Act::BadJson => "bad_json",
            Act::HistoryPipeline => "history_pipeline",
            Act::BadUtf8 => "bad_utf8",
            Act::PresencePipeline => "presence_pipeline",
            Act::SendFlood => "send_flood",
            Act::ReadFlood => "read_flood",
            Act::Oversized => "oversized",
        }
    }
}

/// What the abusers did and what the gateway answered, over all abusers.
/// Never part of the run's violations or errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AbuseStats {
    /// Abusive connections run.
    pub abusers: u64,
    /// Acts performed, by act name.
    pub acts: BTreeMap<String, u64>,
    /// Acts skipped because the abuser was not connected when they fell due.
    pub acts_skipped: u64,
    /// Frames written by the acts.
    pub frames: u64,
    /// Successful upgrades.
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// `error` replies, by code (`rate_limited`, `bad_request`, …): the
    /// requests the gateway refused.
    pub refusals: BTreeMap<String, u64>,
    /// How abusers' connections ended, by the server's close code (`1008`,
    /// `1009`, …; `no_code` for a close frame without one, `dropped` for a
    /// reset or EOF without a close frame, `hello_timeout`, `protocol_error`
    /// for a frame the abuser could not decode).
    pub closes: BTreeMap<String, u64>,
    /// Replies of work the gateway did for abusers, by event type (`ack`,
    /// `history`, `presence`, …).
    pub served: BTreeMap<String, u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    if n > 0 {
        *map.entry(key.to_string()).or_default() += n;
    }
}

impl AbuseStats {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &AbuseStats) {
        self.abusers += o.abusers;
        self.acts_skipped += o.acts_skipped;
        self.frames += o.frames;
        self.connects += o.connects;
        self.connect_errors += o.connect_errors;
        for (dst, src) in [
            (&mut self.acts, &o.acts),
            (&mut self.refusals, &o.refusals),
            (&mut self.closes, &o.closes),
            (&mut self.served, &o.served),
        ] {
            for (k, v) in src {
                bump(dst, k, *v);
            }
        }
    }

    /// Requests refused with an `error`.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }

    /// Connections the gateway ended (every close but the abusers' own).
    #[must_use]
    pub fn disconnects(&self) -> u64 {
        self.closes.values().sum()
    }
}

/// One abusive connection of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct AbuserSpec {
    /// Index among the abusers.
    pub index: u32,
    /// User id (its own: its rate limit is not a normal user's).
    pub user: String,
    /// Device id.
    pub device: String,
    /// The channel of `history`, `presence` and `read` acts (the plan's
    /// largest room, so pages are full).
    pub room: String,
    /// The abuser's own room, target of its send floods (so no normal
    /// member receives them).
    pub own: String,
    /// Acts per second of this abuser.
    pub rate: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Down { retry_at: u64 },
    AwaitHello { deadline: u64 },
    Up,
}

/// An abuser's state across its connections. See the module docs.
#[derive(Debug)]
pub struct Abuser {
    spec: AbuserSpec,
    interval_us: f64,
    offset_us: f64,
    /// Index of the next act.
    k: u64,
    state: State,
    max_frame_bytes: usize,
    history_limit: usize,
    next_cmid: u64,
    rng: Rng,
}

impl Abuser {
    /// An abuser for `spec`; `seed` seeds its masks and its offset.
    #[must_use]
    pub fn new(spec: AbuserSpec, seed: u64) -> Abuser {
        let mut rng = Rng::new(seed ^ 0xab05e ^ (u64::from(spec.index) << 24));
        let interval_us = if spec.rate > 0.0 {
            1e6 / spec.rate
        } else {
            0.0
        };
        let offset_us = rng.next_f64() * interval_us;
        Abuser {
            spec,
            interval_us,
            offset_us,
            k: 0,
            state: State::Down { retry_at: 0 },
            max_frame_bytes: 2 * 1024 * 1024,
            history_limit: 200,
            next_cmid: 1,
            rng,
        }
    }

    /// The user id.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.spec.user
    }

    /// The device id.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.spec.device
    }

    /// A fresh WebSocket mask.
    pub fn mask(&mut self) -> [u8; 4] {
        self.rng.mask()
    }

    fn act_at(&self, k: u64, view: &PhaseView) -> u64 {
        (view.send_start_us as f64 + self.offset_us + k as f64 * self.interval_us) as u64
    }

    /// Advances to `now`: connects in the send phase, performs due acts
    /// (frames appended to `out`), closes when sending is over.
    pub fn poll(
        &mut self,
        now: u64,
        view: &PhaseView,
        out: &mut Vec<u8>,
        stats: &mut AbuseStats,
    ) -> Step {
        let step = |action, wake_at| Step { action, wake_at };
        if view.phase >= Phase::Drain {
            return match self.state {
                State::Down { .. } => step(Action::Finished, None),
                _ => {
                    let mask = self.rng.mask();
                    encode_close(out, 1000, "", Some(mask));
                    step(Action::Close, None)
                }
            };
        }
        if view.phase < Phase::Send || self.interval_us <= 0.0 {
            // A phase change wakes the driver.
            return step(Action::Continue, None);
        }
        match self.state {
            State::Down { retry_at } if now >= retry_at => step(Action::Connect, None),
            State::Down { retry_at } => step(Action::Continue, Some(retry_at)),
            State::AwaitHello { deadline } if now >= deadline => step(Action::Drop, None),
            State::AwaitHello { deadline } => step(Action::Continue, Some(deadline)),
            State::Up => {
                let due = self.act_at(self.k, view);
                if now >= due {
                    // Acts missed while down are skipped, not caught up.
                    let missed = ((now - due) as f64 / self.interval_us) as u64;
                    stats.acts_skipped += missed;
                    self.k += missed;
                    let act =
                        ACTS[((self.k + u64::from(self.spec.index)) % ACTS.len() as u64) as usize];
                    self.k += 1;
                    self.act(act, out, stats);
                }
                let next = self.act_at(self.k, view);
                step(Action::Continue, (next < view.send_end_us).then_some(next))
            }
        }
    }

    /// Appends the frames of `act` to `out`.
    pub fn act(&mut self, act: Act, out: &mut Vec<u8>, stats: &mut AbuseStats) {
        bump(&mut stats.acts, act.name(), 1);
        let room = self.spec.room.clone();
        let frames = match act {
            Act::BadJson => {
                for text in BAD_JSON {
                    let mask = self.rng.mask();
                    encode_frame(out, WsOpcode::Text, text.as_bytes(), Some(mask));
                }
                BAD_JSON.len()
            }
            Act::HistoryPipeline => {
                let request = Request::History {
                    channel: &room,
                    range: HistoryRange::Latest,
                    limit: self.history_limit,
                };
                self.repeat(out, &request, PIPELINE)
            }
            Act::PresencePipeline => {
                let request = Request::Presence { channel: &room };
                self.repeat(out, &request, PIPELINE)
            }
            Act::ReadFlood => {
                let request = Request::Read {
                    channel: &room,
                    seq: 1,
                };
                self.repeat(out, &request, FLOOD)
            }
            Act::SendFlood => {
                for _ in 0..FLOOD {
                    let cmid = format!("f{}", self.next_cmid);
                    self.next_cmid += 1;
                    let mask = self.rng.mask();
                    chat_proto::client::encode_send(
                        out,
                        None,
                        &self.spec.own,
                        &cmid,
                        "flood",
                        mask,
                    );
                }
                FLOOD
            }
            Act::BadUtf8 => {
                let mask = self.rng.mask();
                encode_frame(
                    out,
                    WsOpcode::Text,
                    b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}",
                    Some(mask),
                );
                1
            }
            Act::Oversized => {
                // FIN + text, masked, 64-bit length: the header alone
                // announces a frame the gateway must refuse.
                let len = self.max_frame_bytes as u64 + 1;
                out.extend_from_slice(&[0x81, 0x80 | 127]);
                out.extend_from_slice(&len.to_be_bytes());
                let mask = self.rng.mask();
                out.extend_from_slice(&mask);
                1
            }
        };
        stats.frames += frames as u64;
    }

    fn repeat(&mut self, out: &mut Vec<u8>, request: &Request<'_>, n: usize) -> usize {
        for _ in 0..n {
            let mask = self.rng.mask();
            encode_request(out, None, request, mask);
        }
        n
    }

    /// The upgrade succeeded.
    pub fn on_connected(&mut self, now: u64, stats: &mut AbuseStats) {
        stats.connects += 1;
        self.state = State::AwaitHello {
            deadline: now + HELLO_TIMEOUT_US,
        };
    }

    /// Connecting failed.
    pub fn on_connect_failed(&mut self, now: u64, stats: &mut AbuseStats) {
        stats.connect_errors += 1;
        self.state = State::Down {
            retry_at: now + RECONNECT_US,
        };
    }

    /// A text frame from the server: `hello`, a refusal or a reply.
    pub fn on_text(&mut self, text: &str, stats: &mut AbuseStats) {
        // Replies put `type` first; only hello and errors need decoding
        // (history pages are large and of no interest here).
        let ty = text
            .strip_prefix("{\"type\":\"")
            .and_then(|r| r.split('"').next());
        match ty {
            Some("hello") | Some("error") | None => match decode_server_event(text) {
                Ok(ServerEvent::Hello { limits, .. }) => {
                    self.max_frame_bytes = limits.max_frame_bytes;
                    self.history_limit = limits.history_max_limit.max(1);
                    self.state = State::Up;
                }
                Ok(ServerEvent::Error { code, .. }) => bump(&mut stats.refusals, &code, 1),
                Ok(_) => {}
                Err(_) => bump(&mut stats.served, "undecodable", 1),
            },
            Some(t @ ("ack" | "history" | "presence" | "pong" | "joined" | "left")) => {
                bump(&mut stats.served, t, 1);
            }
            // Pushes (presence updates, typing, …): not replies.
            Some(_) => {}
        }
    }

    /// The connection ended (`Closed::Churn` here means `hello` never came).
    pub fn on_closed(&mut self, now: u64, why: Closed, stats: &mut AbuseStats) {
        let key = match why {
            Closed::ByServer(Some(code)) => code.to_string(),
            Closed::ByServer(None) => "no_code".into(),
            Closed::Lost => "dropped".into(),
            Closed::ProtocolError => "protocol_error".into(),
            Closed::Churn => "hello_timeout".into(),
            Closed::Finished => String::new(),
        };
        if !key.is_empty() {
            bump(&mut stats.closes, &key, 1);
        }
        self.state = State::Down {
            retry_at: now + RECONNECT_US,
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chat_proto::{decode_request, Limits, Role, WsDecoder, WsError, WsEvent};

    fn spec() -> AbuserSpec {
        AbuserSpec {
            index: 0,
            user: "lgtx0".into(),
            device: "x0".into(),
            room: "room:big".into(),
            own: "room:own".into(),
            rate: 1.0,
        }
    }

    fn sending(start: u64) -> PhaseView {
        PhaseView {
            phase: Phase::Send,
            send_start_us: start,
            send_end_us: start + 100_000_000,
        }
    }

    /// What the gateway's decoder makes of `out`: texts, or the error.
    fn decode(out: &[u8], max: usize) -> (Vec<String>, Option<WsError>) {
        let mut dec = WsDecoder::new(Role::Server, max);
        let mut texts = Vec::new();
        let r = dec.feed(out, &mut |e| {
            if let WsEvent::Text(t) = e {
                texts.push(t.to_string());
            }
        });
        (texts, r.err())
    }

    #[test]
    fn each_act_is_refused_the_way_the_gateway_documents() {
        let mut a = Abuser::new(spec(), 1);
        let mut stats = AbuseStats::default();
        let mut out = Vec::new();
        a.act(Act::BadUtf8, &mut out, &mut stats);
        assert_eq!(decode(&out, 1 << 20).1.unwrap().close_code(), 1007);
        out.clear();
        a.act(Act::Oversized, &mut out, &mut stats);
        let err = decode(&out, a.max_frame_bytes).1.unwrap();
        assert_eq!(err.close_code(), 1009, "refused from the header alone");
        out.clear();
        a.act(Act::BadJson, &mut out, &mut stats);
        let (texts, err) = decode(&out, 1 << 20);
        assert!(err.is_none());
        assert_eq!(texts.len(), BAD_JSON.len());
        assert!(texts
            .iter()
            .all(|t| decode_request(t, &Limits::default()).is_err()));
        for act in [
            Act::HistoryPipeline,
            Act::PresencePipeline,
            Act::SendFlood,
            Act::ReadFlood,
        ] {
            out.clear();
            a.act(act, &mut out, &mut stats);
            let (texts, err) = decode(&out, 1 << 20);
            assert!(err.is_none());
            assert!(texts.len() >= PIPELINE, "{act:?}");
            for t in &texts {
                let req = decode_request(t, &Limits::default()).unwrap().request;
                let channel = req.channel().unwrap();
                let own = matches!(act, Act::SendFlood);
                assert_eq!(channel, if own { "room:own" } else { "room:big" });
            }
        }
        assert_eq!(stats.acts.len(), 7);
        assert_eq!(
            stats.frames,
            (1 + 1 + BAD_JSON.len() + 2 * PIPELINE + 2 * FLOOD) as u64
        );
    }

    #[test]
    fn acts_come_at_a_steady_rate_and_missed_ones_are_skipped() {
        let mut a = Abuser::new(spec(), 7);
        let mut stats = AbuseStats::default();
        let mut out = Vec::new();
        let ramp = PhaseView {
            phase: Phase::Ramp,
            send_start_us: 0,
            send_end_us: 0,
        };
        // Nothing before the send phase.
        assert_eq!(
            a.poll(0, &ramp, &mut out, &mut stats).action,
            Action::Continue
        );
        let view = sending(1_000_000);
        let mut now = 1_000_000;
        assert_eq!(
            a.poll(now, &view, &mut out, &mut stats).action,
            Action::Connect
        );
        a.on_connected(now, &mut stats);
        let hello = r#"{"type":"hello","user":"lgtx0","device":"x0","session":"s","shard":0,"heartbeat_ms":30000,"limits":{"max_text_chars":100,"max_frame_bytes":4096,"history_max_limit":50}}"#;
        a.on_text(hello, &mut stats);
        assert_eq!(a.max_frame_bytes, 4096);
        // One act per second for 5 s.
        for _ in 0..50 {
            now += 100_000;
            a.poll(now, &view, &mut out, &mut stats);
        }
        let acts: u64 = stats.acts.values().sum();
        assert!((4..=6).contains(&acts), "{acts}");
        // Down for 3 s: the acts of that time are skipped, not bunched.
        a.on_closed(now, Closed::ByServer(Some(1008)), &mut stats);
        now += 3_000_000;
        assert_eq!(
            a.poll(now, &view, &mut out, &mut stats).action,
            Action::Connect
        );
        a.on_connected(now, &mut stats);
        a.on_text(hello, &mut stats);
        a.poll(now, &view, &mut out, &mut stats);
        assert_eq!(stats.acts.values().sum::<u64>(), acts + 1);
        assert!(stats.acts_skipped >= 2, "{}", stats.acts_skipped);
        // Sending over: close.
        let drain = PhaseView {
            phase: Phase::Drain,
            ..view
        };
        assert_eq!(
            a.poll(now, &drain, &mut out, &mut stats).action,
            Action::Close
        );
    }

    #[test]
    fn refusals_closes_and_served_replies_are_counted_apart() {
        let mut a = Abuser::new(spec(), 1);
        let mut s = AbuseStats::default();
        a.on_text(
            r#"{"type":"error","code":"rate_limited","message":"slow down"}"#,
            &mut s,
        );
        a.on_text(
            r#"{"type":"error","code":"bad_request","message":"x"}"#,
            &mut s,
        );
        a.on_text(
            r#"{"type":"history","channel":"room:big","messages":[],"has_more":false}"#,
            &mut s,
        );
        a.on_text(
            r#"{"type":"presence_update","channel":"dm:a:b","user":"a","status":"online"}"#,
            &mut s,
        );
        a.on_closed(0, Closed::ByServer(Some(1009)), &mut s);
        a.on_closed(0, Closed::Lost, &mut s);
        a.on_closed(0, Closed::Finished, &mut s);
        assert_eq!(s.refused(), 2);
        assert_eq!(s.refusals["rate_limited"], 1);
        assert_eq!(s.served["history"], 1);
        assert_eq!(s.served.len(), 1, "pushes are not replies");
        assert_eq!(s.disconnects(), 2, "our own close is not counted");
        assert_eq!(s.closes["1009"], 1);
        let mut total = AbuseStats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.closes["dropped"], 2);
        assert_eq!(total.refused(), 4);
    }
}
