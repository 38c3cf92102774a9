//! Scenarios: who connects, which channels each connection joins, who sends
//! where and how fast. Pure planning, no I/O.
//!
//! [`plan`] turns [`ScenarioParams`] into a [`Plan`]: the channel names and
//! one [`ConnSpec`] per connection. The plan is a deterministic function of
//! the parameters, so every worker process computes the same plan and takes
//! its own contiguous slice of connections ([`Plan::slice`]).
//!
//! | scenario | topology | senders |
//! |---|---|---|
//! | `dm` | connections in pairs, each pair on `dm:<a>:<b>` (an odd last connection only holds its connection) | every paired connection |
//! | `groups` | groups of `--group-size` members, each on `room:lg<run>-g<i>` | every member |
//! | `room` | rooms of `--room-size` members (default: one room of all connections) on `room:lg<run>-room<i>` | the first `--senders` members of each room |
//! | `mixed` | 50 % of connections in DM pairs, 30 % in groups, 20 % in one room | as in the parts |
//! | `idle` | connections hold (heartbeat pings only), join nothing | none |
//! | `churn` | as `groups`, and connections drop and rejoin with `since` at `--churn-rate` drops per second in total | every member |
//! | `resume` | as `room`; every non-sender leaves when sending starts and rejoins with `since` (all at once) when it ends | the first `--senders` members of each room |
//! | `soak` | as `mixed`, and every connection drops and rejoins with `since` at its share of `--churn-rate`; slow readers' latency is kept apart | as in `mixed` |
//!
//! **Slow consumers** (any scenario): `--slow-fraction f --slow-read-rate B`
//! makes a fraction `f` of the connections that only receive read at most
//! `B` bytes per second ([`ConnSpec::read_bps`]), spread evenly over them.
//! In `soak` their delivery latency goes to a histogram of its own
//! ([`ConnSpec::latency_apart`]): a throttled reader's lag is its own doing,
//! and would otherwise be most of the run's p99.
//!
//! **Audience tiers** (`room`, `resume` and the room of `mixed`/`soak`):
//! `--mode digest|counts` makes the members of rooms that do not send join
//! with that `mode` ([`ConnSpec::mode`]; senders stay `live`). The checker
//! holds `digest` members to every live promise; `counts` members must get
//! no message and `head` events up to the last acked seq.
//!
//! **Abusers** (any scenario): `--abusers N` adds N connections of their
//! own users that break the rules at `--abuse-rate` acts per second in total
//! ([`crate::abuse`]); [`Plan::abusers`]. They target the plan's largest
//! room (their own room when the plan has none) and are run by the first
//! worker process.
//!
//! **Groups are real groups.** Before a run, [`crate::groups`] creates one
//! `group:` channel per planned group over the gateway's HTTP API (members
//! only, checked by the group's owner shard) and puts their names in
//! [`ScenarioParams::group_names`]; the plan then uses them. Planned without
//! names (unit tests, `--room-groups`), groups are `room:` channels whose
//! members are exactly the group.
//!
//! The total message rate `--rate` is split evenly over all senders. User ids
//! carry the run id (`lg<run>u<i>`), so runs against the same gateway never
//! share channels, idempotency keys or devices; every connection has its own
//! user and device, so no connection replaces another (close 4009).

use serde::{Deserialize, Serialize};

use crate::abuse::AbuserSpec;

/// A named scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioKind {
    /// Direct messages between pairs.
    Dm,
    /// Groups of `group_size` members.
    Groups,
    /// Rooms of `room_size` members with `senders` senders each.
    Room,
    /// DM pairs, groups and a room together.
    Mixed,
    /// Connect and hold.
    Idle,
    /// `mixed`, with churn over every connection (a long run's load).
    Soak,
    /// Groups whose members drop and rejoin with `since`.
    Churn,
    /// A room whose non-senders are away for the whole send phase and all
    /// rejoin with `since` when it ends (a resume storm).
    Resume,
}

impl ScenarioKind {
    /// The scenario's command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Dm => "dm",
            ScenarioKind::Groups => "groups",
            ScenarioKind::Room => "room",
            ScenarioKind::Mixed => "mixed",
            ScenarioKind::Idle => "idle",
            ScenarioKind::Churn => "churn",
            ScenarioKind::Resume => "resume",
            ScenarioKind::Soak => "soak",
        }
    }
}

/// What a scenario is planned from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioParams {
    /// The scenario.
    pub kind: ScenarioKind,
    /// Total connections (over all worker processes).
    pub connections: usize,
    /// Total messages per second over all senders.
    pub rate: f64,
    /// Members per group (`groups`, `churn`, the groups of `mixed`); ≥ 2.
    pub group_size: usize,
    /// Members per room (`room`); `None` = one room of every connection.
    pub room_size: Option<usize>,
    /// Senders per room (`room`, the room of `mixed`); ≥ 1.
    pub senders: usize,
    /// Connection drops per second over all connections (`churn`).
    pub churn_rate: f64,
    /// Fraction (0–1) of the connections that receive but do not send
    /// whose reads are limited to `slow_read_bps` (slow consumers).
    #[serde(default)]
    pub slow_fraction: f64,
    /// Read rate of a slow consumer, bytes per second.
    #[serde(default)]
    pub slow_read_bps: u64,
    /// Distinguishes this run's users and channels from other runs'
    /// (`[A-Za-z0-9]`, a few characters).
    pub run_id: String,
    /// The gateway's names of the planned groups, in plan order (`group:<id>`
    /// channels created over the HTTP API before the run, see
    /// [`crate::groups`]); empty = plan groups as `room:` channels (a gateway
    /// without groups, or before they were created).
    #[serde(default)]
    pub group_names: Vec<String>,
    /// Abusive connections ([`crate::abuse`]), beside `connections`.
    #[serde(default)]
    pub abusers: usize,
    /// Abusive acts per second over all abusers.
    #[serde(default)]
    pub abuse_rate: f64,
    /// The audience tier of the rooms' members that do not send.
    #[serde(default)]
    pub mode: Tier,
}

/// A member's audience tier (`join`'s `mode`), as planned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Every message at once (the protocol's default).
    #[default]
    Live,
    /// Every message, in one write per digest interval.
    Digest,
    /// No messages; `head` events.
    Counts,
}

impl Tier {
    /// The tier named `name` (`live`, `digest`, `counts`).
    pub fn parse(name: &str) -> Result<Tier, String> {
        match chat_proto::JoinMode::from_wire(name) {
            Some(chat_proto::JoinMode::Live) => Ok(Tier::Live),
            Some(chat_proto::JoinMode::Digest) => Ok(Tier::Digest),
            Some(chat_proto::JoinMode::Counts) => Ok(Tier::Counts),
            None => Err(format!(
                "unknown mode `{name}`: one of live, digest, counts"
            )),
        }
    }

    /// The `mode` sent with `join`.
    #[must_use]
    pub fn join_mode(self) -> chat_proto::JoinMode {
        match self {
            Tier::Live => chat_proto::JoinMode::Live,
            Tier::Digest => chat_proto::JoinMode::Digest,
            Tier::Counts => chat_proto::JoinMode::Counts,
        }
    }
}

/// Why a scenario cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A parameter is out of range; the text says which and why.
    #[error("{0}")]
    Invalid(String),
}

/// One connection of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnSpec {
    /// Index of the connection in the plan.
    pub index: u32,
    /// User id (dev auth `user`).
    pub user: String,
    /// Device id (dev auth `device`), unique per connection.
    pub device: String,
    /// Channels to join (indices into [`Plan::channels`]).
    pub joins: Vec<u32>,
    /// Channels to send to, round-robin (indices into [`Plan::channels`]).
    pub sends: Vec<u32>,
    /// Messages per second this connection sends (0: none).
    pub send_rate: f64,
    /// Drops per second of this connection (0: none).
    pub churn_rate: f64,
    /// Away for the send phase, back with `since` when it ends (`resume`).
    pub resume: bool,
    /// Reads limited to this many bytes per second (0: unlimited).
    pub read_bps: u64,
    /// A slow reader whose delivery latency is recorded apart (`soak`).
    pub latency_apart: bool,
    /// The `mode` of its joins.
    pub mode: Tier,
}

/// The planned run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Channel names, indexed by channel id.
    pub channels: Vec<String>,
    /// Every connection, by index.
    pub conns: Vec<ConnSpec>,
    /// The abusive connections (not in `conns`: nothing about them is
    /// checked).
    pub abusers: Vec<AbuserSpec>,
}

impl Plan {
    /// Number of senders.
    #[must_use]
    pub fn nr_senders(&self) -> usize {
        self.conns.iter().filter(|c| c.send_rate > 0.0).count()
    }

    /// The connections worker `index` of `count` runs: a contiguous slice,
    /// so members of small channels mostly share a process.
    #[must_use]
    pub fn slice(&self, index: usize, count: usize) -> &[ConnSpec] {
        let n = self.conns.len();
        let count = count.max(1);
        let start = n * index / count;
        let end = n * (index + 1) / count;
        &self.conns[start.min(n)..end.min(n)]
    }
}

/// Plans a scenario. See the module docs for each topology.
pub fn plan(p: &ScenarioParams) -> Result<Plan, PlanError> {
    if p.connections == 0 {
        return Err(PlanError::Invalid(
            "--connections must be at least 1".into(),
        ));
    }
    if !(p.rate.is_finite() && p.rate >= 0.0) {
        return Err(PlanError::Invalid("--rate must be ≥ 0".into()));
    }
    if !(p.churn_rate.is_finite() && p.churn_rate >= 0.0) {
        return Err(PlanError::Invalid("--churn-rate must be ≥ 0".into()));
    }
    if p.run_id.is_empty()
        || p.run_id.len() > 16
        || !p.run_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(PlanError::Invalid(
            "the run id must be 1 to 16 ASCII letters and digits".into(),
        ));
    }
    let mut b = Builder::new(p);
    let n = p.connections;
    match p.kind {
        ScenarioKind::Dm => {
            need(n >= 2, "dm needs at least 2 connections")?;
            b.dm(n);
        }
        ScenarioKind::Groups | ScenarioKind::Churn => {
            need(p.group_size >= 2, "--group-size must be at least 2")?;
            need(
                n >= p.group_size,
                "--connections must be at least --group-size",
            )?;
            b.groups(n, p.group_size);
        }
        ScenarioKind::Room | ScenarioKind::Resume => {
            let size = p.room_size.unwrap_or(n);
            need(size >= 1, "--room-size must be at least 1")?;
            need(n >= size, "--connections must be at least --room-size")?;
            need(p.senders >= 1, "--senders must be at least 1")?;
            b.rooms(n, size, p.senders);
        }
        ScenarioKind::Mixed | ScenarioKind::Soak => {
            need(p.group_size >= 2, "--group-size must be at least 2")?;
            need(p.senders >= 1, "--senders must be at least 1")?;
            let dm = (n / 2) & !1; // an even half
            let groups = n * 3 / 10;
            let room = n - dm - groups;
            need(
                dm >= 2 && groups >= p.group_size && room >= 1,
                "mixed needs enough connections for DM pairs, one group and a room \
                 (at least 10 × --group-size / 3 + 4)",
            )?;
            b.dm(dm);
            b.groups(groups, p.group_size);
            b.rooms(room, room, p.senders);
        }
        ScenarioKind::Idle => b.idle(n),
    }
    let mut plan = b.plan;
    let senders = plan.nr_senders();
    if senders > 0 && p.rate > 0.0 {
        let per_sender = p.rate / senders as f64;
        for c in plan.conns.iter_mut().filter(|c| c.send_rate > 0.0) {
            c.send_rate = per_sender;
        }
    } else {
        for c in &mut plan.conns {
            c.send_rate = 0.0;
        }
    }
    if p.kind == ScenarioKind::Resume {
        for c in plan.conns.iter_mut().filter(|c| c.send_rate == 0.0) {
            c.resume = true;
        }
    }
    if !(p.slow_fraction.is_finite() && (0.0..=1.0).contains(&p.slow_fraction)) {
        return Err(PlanError::Invalid("--slow-fraction must be 0–1".into()));
    }
    if p.slow_fraction > 0.0 {
        need(
            p.slow_read_bps > 0,
            "--slow-fraction needs --slow-read-rate (bytes/s)",
        )?;
        // Receivers only (a slow sender would also delay its own acks);
        // spread evenly: the j-th receiver is slow when ⌊(j+1)·f⌋ > ⌊j·f⌋.
        let mut j = 0.0f64;
        for c in plan
            .conns
            .iter_mut()
            .filter(|c| c.send_rate == 0.0 && !c.joins.is_empty())
        {
            if ((j + 1.0) * p.slow_fraction).floor() > (j * p.slow_fraction).floor() {
                c.read_bps = p.slow_read_bps;
                c.latency_apart = p.kind == ScenarioKind::Soak;
            }
            j += 1.0;
        }
    }
    if matches!(p.kind, ScenarioKind::Churn | ScenarioKind::Soak) && p.churn_rate > 0.0 {
        let per_conn = p.churn_rate / n as f64;
        for c in &mut plan.conns {
            c.churn_rate = per_conn;
        }
    }
    if !(p.abuse_rate.is_finite() && p.abuse_rate >= 0.0) {
        return Err(PlanError::Invalid("--abuse-rate must be ≥ 0".into()));
    }
    need(p.abusers <= 1000, "--abusers must be at most 1,000")?;
    need(
        p.abusers == 0 || p.abuse_rate > 0.0,
        "--abusers needs a positive --abuse-rate (acts per second)",
    )?;
    // The room with the most members: full history pages, a real presence.
    let mut members = vec![0usize; plan.channels.len()];
    for c in &plan.conns {
        for &ch in &c.joins {
            members[ch as usize] += 1;
        }
    }
    let big_room = (0..plan.channels.len())
        .filter(|&i| plan.channels[i].starts_with("room:") && plan.channels[i].contains("-room"))
        .max_by_key(|&i| (members[i], std::cmp::Reverse(i)));
    for i in 0..p.abusers {
        let own = format!("room:lg{}-abuse{i}", p.run_id);
        plan.abusers.push(AbuserSpec {
            index: i as u32,
            user: format!("lg{}x{i}", p.run_id),
            device: format!("x{i}"),
            room: big_room.map_or_else(|| own.clone(), |r| plan.channels[r].clone()),
            own,
            rate: p.abuse_rate / p.abusers as f64,
        });
    }
    Ok(plan)
}

fn need(ok: bool, why: &str) -> Result<(), PlanError> {
    if ok {
        Ok(())
    } else {
        Err(PlanError::Invalid(why.to_string()))
    }
}

/// Appends connections and channels; senders get rate 1 as a marker and the
/// real rate at the end.
struct Builder<'a> {
    p: &'a ScenarioParams,
    plan: Plan,
    groups: usize,
    rooms: usize,
}

impl<'a> Builder<'a> {
    fn new(p: &'a ScenarioParams) -> Builder<'a> {
        Builder {
            p,
            plan: Plan::default(),
            groups: 0,
            rooms: 0,
        }
    }

    fn user(&self, index: usize) -> String {
        format!("lg{}u{index}", self.p.run_id)
    }

    fn conn(&mut self, joins: Vec<u32>, sends: bool) {
        let index = self.plan.conns.len();
        let sends_to = if sends { joins.clone() } else { Vec::new() };
        self.plan.conns.push(ConnSpec {
            index: index as u32,
            user: self.user(index),
            device: format!("d{index}"),
            joins,
            sends: sends_to,
            send_rate: if sends { 1.0 } else { 0.0 },
            churn_rate: 0.0,
            resume: false,
            read_bps: 0,
            latency_apart: false,
            mode: Tier::Live,
        });
    }

    fn channel(&mut self, name: String) -> u32 {
        self.plan.channels.push(name);
        (self.plan.channels.len() - 1) as u32
    }

    fn dm(&mut self, n: usize) {
        for _ in 0..n / 2 {
            let first = self.plan.conns.len();
            let name = chat_proto::dm_channel(&self.user(first), &self.user(first + 1));
            let ch = self.channel(name);
            self.conn(vec![ch], true);
            self.conn(vec![ch], true);
        }
        if n % 2 == 1 {
            self.conn(Vec::new(), false);
        }
    }

    /// `n` connections in `max(1, n / k)` groups; the remainder is spread
    /// over the groups (so groups have k or k + 1 members).
    fn groups(&mut self, n: usize, k: usize) {
        let nr = (n / k).max(1);
        let first = self.groups;
        self.groups += nr;
        let ids: Vec<u32> = (first..first + nr)
            .map(|g| {
                let name = self
                    .p
                    .group_names
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| format!("room:lg{}-g{g}", self.p.run_id));
                self.channel(name)
            })
            .collect();
        for i in 0..n {
            self.conn(vec![ids[i % nr]], true);
        }
    }

    /// `n` connections in `max(1, n / size)` rooms; the first `senders`
    /// members of each room send.
    fn rooms(&mut self, n: usize, size: usize, senders: usize) {
        let nr = (n / size.max(1)).max(1);
        let first = self.rooms;
        self.rooms += nr;
        let ids: Vec<u32> = (first..first + nr)
            .map(|r| self.channel(format!("room:lg{}-room{r}", self.p.run_id)))
            .collect();
        let mode = self.p.mode;
        for i in 0..n {
            let member_no = i / nr; // position within its room
            self.conn(vec![ids[i % nr]], member_no < senders);
            if member_no >= senders {
                if let Some(c) = self.plan.conns.last_mut() {
                    c.mode = mode;
                }
            }
        }
    }

    fn idle(&mut self, n: usize) {
        for _ in 0..n {
            self.conn(Vec::new(), false);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(kind: ScenarioKind, connections: usize) -> ScenarioParams {
        ScenarioParams {
            kind,
            connections,
            rate: 1000.0,
            group_size: 4,
            room_size: None,
            senders: 3,
            churn_rate: 10.0,
            slow_fraction: 0.0,
            slow_read_bps: 0,
            run_id: "t1".into(),
            group_names: Vec::new(),
            abusers: 0,
            abuse_rate: 0.0,
            mode: Tier::Live,
        }
    }

    fn members(plan: &Plan) -> HashMap<u32, usize> {
        let mut m = HashMap::new();
        for c in &plan.conns {
            for &ch in &c.joins {
                *m.entry(ch).or_default() += 1;
            }
        }
        m
    }

    fn total_rate(plan: &Plan) -> f64 {
        plan.conns.iter().map(|c| c.send_rate).sum()
    }

    fn assert_valid_names(plan: &Plan) {
        for name in &plan.channels {
            chat_proto::parse_channel(name).unwrap();
        }
        for c in &plan.conns {
            assert!(chat_proto::is_valid_id(&c.user), "{}", c.user);
            assert!(chat_proto::is_valid_id(&c.device), "{}", c.device);
        }
    }

    #[test]
    fn a_run_id_must_be_short_letters_and_digits() {
        for bad in ["", "a-b", "x y", "abcdefghijklmnopq"] {
            let p = ScenarioParams {
                run_id: bad.into(),
                ..params(ScenarioKind::Dm, 4)
            };
            assert!(plan(&p).is_err(), "{bad:?}");
        }
        let p = ScenarioParams {
            run_id: "abcdefghijklmnop".into(),
            ..params(ScenarioKind::Dm, 4)
        };
        assert!(plan(&p).is_ok());
    }

    #[test]
    fn dm_pairs_everyone_and_splits_the_rate() {
        let plan = plan(&params(ScenarioKind::Dm, 11)).unwrap();
        assert_eq!(plan.conns.len(), 11);
        assert_eq!(plan.channels.len(), 5);
        assert!(members(&plan).values().all(|&n| n == 2));
        assert!(plan.channels.iter().all(|c| c.starts_with("dm:")));
        assert_eq!(plan.nr_senders(), 10);
        assert!((total_rate(&plan) - 1000.0).abs() < 1e-6);
        assert!(plan.conns[10].joins.is_empty());
        assert_valid_names(&plan);
    }

    #[test]
    fn groups_have_k_or_k_plus_one_members() {
        let plan = plan(&params(ScenarioKind::Groups, 18)).unwrap();
        assert_eq!(plan.channels.len(), 4);
        let sizes = members(&plan);
        assert!(sizes.values().all(|&n| n == 4 || n == 5));
        assert_eq!(sizes.values().sum::<usize>(), 18);
        assert_eq!(plan.nr_senders(), 18);
        assert_valid_names(&plan);
    }

    #[test]
    fn one_room_with_s_senders() {
        let plan = plan(&params(ScenarioKind::Room, 20)).unwrap();
        assert_eq!(plan.channels.len(), 1);
        assert_eq!(members(&plan)[&0], 20);
        assert_eq!(plan.nr_senders(), 3);
        assert!((total_rate(&plan) - 1000.0).abs() < 1e-6);
        assert_valid_names(&plan);
    }

    #[test]
    fn a_mode_applies_to_the_members_of_rooms_that_do_not_send() {
        let mut p = params(ScenarioKind::Room, 20);
        p.mode = Tier::Counts;
        let plan = plan(&p).unwrap();
        for c in &plan.conns {
            let want = if c.send_rate > 0.0 {
                Tier::Live
            } else {
                Tier::Counts
            };
            assert_eq!(c.mode, want, "{c:?}");
        }
        assert_eq!(Tier::parse("digest"), Ok(Tier::Digest));
        assert!(Tier::parse("firehose").is_err());
    }

    #[test]
    fn several_rooms_when_room_size_is_given() {
        let mut p = params(ScenarioKind::Room, 20);
        p.room_size = Some(10);
        let plan = plan(&p).unwrap();
        assert_eq!(plan.channels.len(), 2);
        assert_eq!(plan.nr_senders(), 6);
    }

    #[test]
    fn mixed_has_every_kind() {
        let plan = plan(&params(ScenarioKind::Mixed, 40)).unwrap();
        assert_eq!(plan.conns.len(), 40);
        let dms = plan
            .channels
            .iter()
            .filter(|c| c.starts_with("dm:"))
            .count();
        let groups = plan.channels.iter().filter(|c| c.contains("-g")).count();
        let rooms = plan.channels.iter().filter(|c| c.contains("-room")).count();
        assert_eq!((dms, groups, rooms), (10, 3, 1));
        assert!((total_rate(&plan) - 1000.0).abs() < 1e-6);
        assert_valid_names(&plan);
    }

    #[test]
    fn idle_joins_nothing_and_sends_nothing() {
        let plan = plan(&params(ScenarioKind::Idle, 5)).unwrap();
        assert!(plan.conns.iter().all(|c| c.joins.is_empty()));
        assert_eq!(plan.nr_senders(), 0);
    }

    #[test]
    fn churn_spreads_the_drop_rate() {
        let plan = plan(&params(ScenarioKind::Churn, 20)).unwrap();
        let total: f64 = plan.conns.iter().map(|c| c.churn_rate).sum();
        assert!((total - 10.0).abs() < 1e-9);
    }

    #[test]
    fn resume_is_a_room_whose_receivers_are_away() {
        let plan = plan(&params(ScenarioKind::Resume, 20)).unwrap();
        assert_eq!(plan.channels.len(), 1);
        assert_eq!(plan.nr_senders(), 3);
        let resumers = plan.conns.iter().filter(|c| c.resume).count();
        assert_eq!(resumers, 17);
        assert!(plan.conns.iter().all(|c| c.resume == (c.send_rate == 0.0)));
    }

    #[test]
    fn slow_consumers_are_an_even_fraction_of_the_receivers() {
        let mut p = params(ScenarioKind::Room, 103);
        p.slow_fraction = 0.1;
        assert!(plan(&p).is_err(), "a fraction needs a read rate");
        p.slow_read_bps = 4096;
        let plan = plan(&p).unwrap();
        let slow: Vec<_> = plan.conns.iter().filter(|c| c.read_bps > 0).collect();
        // 100 receivers (3 senders) → 10 slow ones, never a sender.
        assert_eq!(slow.len(), 10);
        assert!(slow
            .iter()
            .all(|c| c.send_rate == 0.0 && c.read_bps == 4096));
        let mut p = params(ScenarioKind::Room, 10);
        p.slow_fraction = 1.5;
        p.slow_read_bps = 1;
        assert!(super::plan(&p).is_err());
    }

    #[test]
    fn slices_cover_every_connection_once() {
        let plan = plan(&params(ScenarioKind::Groups, 103)).unwrap();
        let mut seen = Vec::new();
        for i in 0..4 {
            seen.extend(plan.slice(i, 4).iter().map(|c| c.index));
        }
        assert_eq!(seen, (0..103).collect::<Vec<u32>>());
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(plan(&params(ScenarioKind::Dm, 1)).is_err());
        let mut p = params(ScenarioKind::Groups, 3);
        assert!(plan(&p).is_err());
        p.connections = 10;
        p.group_size = 1;
        assert!(plan(&p).is_err());
        let mut p = params(ScenarioKind::Idle, 3);
        p.run_id = "a-b".into();
        assert!(plan(&p).is_err());
    }

    #[test]
    fn soak_is_mixed_with_churn_everywhere_and_slow_latency_apart() {
        let mut p = params(ScenarioKind::Soak, 100);
        p.slow_fraction = 0.5;
        p.slow_read_bps = 1000;
        let soak = plan(&p).unwrap();
        p.kind = ScenarioKind::Mixed;
        let mixed = plan(&p).unwrap();
        assert_eq!(soak.channels, mixed.channels);
        let total: f64 = soak.conns.iter().map(|c| c.churn_rate).sum();
        assert!((total - 10.0).abs() < 1e-9);
        assert!(mixed.conns.iter().all(|c| c.churn_rate == 0.0));
        let slow: Vec<_> = soak.conns.iter().filter(|c| c.read_bps > 0).collect();
        assert!(!slow.is_empty() && slow.iter().all(|c| c.latency_apart));
        assert!(mixed.conns.iter().all(|c| !c.latency_apart));
    }

    #[test]
    fn abusers_have_their_own_users_and_target_the_biggest_room() {
        let mut p = params(ScenarioKind::Mixed, 40);
        p.abusers = 3;
        assert!(plan(&p).is_err(), "abusers need a rate");
        p.abuse_rate = 6.0;
        let plan = plan(&p).unwrap();
        assert_eq!(
            plan.conns.len(),
            40,
            "abusers are not connections of the plan"
        );
        assert_eq!(plan.abusers.len(), 3);
        let room = plan.channels.iter().find(|c| c.contains("-room")).unwrap();
        for (i, a) in plan.abusers.iter().enumerate() {
            assert_eq!(&a.room, room);
            assert_eq!(a.own, format!("room:lgt1-abuse{i}"));
            assert!((a.rate - 2.0).abs() < 1e-9);
            assert!(plan.conns.iter().all(|c| c.user != a.user));
            assert!(chat_proto::is_valid_id(&a.user) && chat_proto::is_valid_id(&a.device));
            chat_proto::parse_channel(&a.own).unwrap();
        }
        let mut dm = params(ScenarioKind::Dm, 4);
        dm.abusers = 1;
        dm.abuse_rate = 1.0;
        let a = &super::plan(&dm).unwrap().abusers[0];
        assert_eq!(a.room, a.own, "no room in the plan: their own");
    }

    #[test]
    fn plans_are_deterministic() {
        let p = params(ScenarioKind::Mixed, 50);
        assert_eq!(plan(&p).unwrap(), plan(&p).unwrap());
    }
}
