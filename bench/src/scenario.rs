//! Named scenarios → gateway settings and loadgen arguments. No I/O.
//!
//! | scenario | loadgen | what it shows |
//! |---|---|---|
//! | `dm-latency` | `dm` | latency at a fixed moderate load |
//! | `room-fanout` | `room`, one room, 5 senders, rate stepped ([`ladder`]) | the saturation curve: stops after the first step whose delivery p99 passes 50 ms |
//! | `groups-durable` | `groups` of 10 | acked messages/s with fsync |
//! | `small-rooms` | `room`: rooms of 10, 2 senders each; with `--steps`, a ladder of rates | the groups workload in a form the peers run too (rooms need no group API); the highest rate within a p99 bound |
//! | `idle` | `idle` | memory per connection |
//! | `connect-storm` | `idle`, every connection at once (`--ramp 0`) | upgrades/s, handshake p99 |
//! | `resume-storm` | `resume`: receivers away while 5 senders send, then all rejoin with `since` | rejoin and catch-up p99, nothing lost |
//! | `slow-consumers` | `room` with 10 % of the receivers reading slowly | gateway peak RSS stays bounded, nothing lost |
//! | `shards` | `room-fanout` at one rate with 1, then 2 shards | the second shard's cost or gain |
//! | `soak` | `soak` (mixed DMs, groups of 8 and a room of 200; churn; 2 % of the room's receivers read at 4 kB/s) for 30 min (quick 2), without then with 4 abusers ([`soak`](crate::soak)) | RSS flat after warm-up, fds, CPU, 0 violations, abusers refused or cut off, normal p99 with vs without abusers |

use serde::{Deserialize, Serialize};

use crate::peers::ServerKind;
use crate::settings::Settings;

/// The scenarios.
pub const NAMES: &[&str] = &[
    "dm-latency",
    "room-fanout",
    "groups-durable",
    "small-rooms",
    "idle",
    "connect-storm",
    "resume-storm",
    "slow-consumers",
    "shards",
    "soak",
];

/// `soak`'s per-user rate limit (requests/s) unless `--set` says otherwise.
pub const SOAK_RATE_LIMIT_PER_SEC: &str = "20";
/// `soak`'s rate-limit burst.
pub const SOAK_RATE_LIMIT_BURST: &str = "40";

/// A stepped run stops after the first step whose delivery p99 passes
/// this, µs (50 ms).
pub const STEP_P99_LIMIT_US: u64 = 50_000;

/// The publish rates (messages/s over all senders) `room-fanout` steps
/// through by default: one room of 10,000 (quick: 1,000) members, so each
/// message is that many deliveries.
#[must_use]
pub fn ladder(quick: bool) -> Vec<f64> {
    if quick {
        vec![25.0, 100.0, 400.0]
    } else {
        vec![5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0]
    }
}

/// Parses `--steps R1,R2,…` (messages/s, positive, increasing).
pub fn parse_steps(s: &str) -> anyhow::Result<Vec<f64>> {
    let mut out: Vec<f64> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let r: f64 = part
            .parse()
            .map_err(|_| anyhow::anyhow!("--steps: {part:?} is not a rate (messages/s)"))?;
        if !(r.is_finite() && r > 0.0) {
            anyhow::bail!("--steps: rates must be positive, not {part}");
        }
        if out.last().is_some_and(|&last| r <= last) {
            anyhow::bail!(
                "--steps: rates must increase ({part} after {:?})",
                out.last()
            );
        }
        out.push(r);
    }
    if out.is_empty() {
        anyhow::bail!("--steps: no rate given");
    }
    Ok(out)
}

/// One gateway + loadgen run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Label of the run within its scenario (e.g. `shards=1`).
    pub label: String,
    /// The server driven (`gateway` in result files older than the peers).
    #[serde(default)]
    pub server: ServerKind,
    /// Gateway shards (`None`: the gateway's default, one per core).
    pub gateway_shards: Option<usize>,
    /// Gateway durability (`fsync` or `buffered`); `memory` for a peer
    /// (nothing on disk).
    pub durability: String,
    /// loadgen subcommand (`dm`, `room`, `groups`, `idle`).
    pub loadgen_kind: String,
    /// Connections.
    pub connections: usize,
    /// Total messages per second.
    pub rate: f64,
    /// Send phase (idle: hold time), loadgen duration syntax.
    pub duration: String,
    /// Connections per second during the ramp.
    pub ramp: f64,
    /// Members per group (groups).
    pub group_size: Option<usize>,
    /// Senders (room).
    pub senders: Option<usize>,
    /// Members per room (room; `None`: one room of every connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_size: Option<usize>,
    /// Gateway config overrides (`--set`), written to its `--config` file.
    #[serde(default)]
    pub settings: Settings,
    /// Server on CPU 0, loadgen on CPU 1 (`--pin`).
    #[serde(default)]
    pub pinned: bool,
    /// Bytes of text per message (loadgen's default, 64, when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_bytes: Option<usize>,
    /// loadgen's wait for acks, then for deliveries, after sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// Fraction of the receivers that read slowly (`slow-consumers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_fraction: Option<f64>,
    /// Read rate of a slow receiver, bytes/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_read_bps: Option<u64>,
    /// loadgen worker processes (`--procs`): one process holds at most
    /// ~19,900 sockets here (20,000 open files), so large runs spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procs: Option<usize>,
    /// Connection drops per second over all connections (`churn`, `soak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn_rate: Option<f64>,
    /// Abusive connections beside `connections` (loadgen `--abusers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abusers: Option<usize>,
    /// Abusive acts per second over all abusers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse_rate: Option<f64>,
    /// loadgen's delivery-latency window (`--latency-window`, e.g. `5s`):
    /// p99 over time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_window: Option<String>,
    /// Sample the server's RSS, open fds and CPU time every this many
    /// seconds while loadgen runs (the run's `timeline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_every_s: Option<f64>,
    /// The audience tier of the rooms' receivers (loadgen `--mode`:
    /// `live`, `digest`, `counts`); `None`: loadgen's default, `live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// loadgen offers permessage-deflate on every connection
    /// (`--compress`; the gateway accepts it by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// loadgen's `--run-id`: the same id gives the same send schedule
    /// (an A/B of servers under identical load); `None`: random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl RunSpec {
    /// loadgen's arguments for this run against `target`.
    #[must_use]
    pub fn loadgen_args(&self, target: &str) -> Vec<String> {
        let mut a = vec![
            self.loadgen_kind.clone(),
            "--target".into(),
            target.into(),
            "--connections".into(),
            self.connections.to_string(),
            "--rate".into(),
            self.rate.to_string(),
            "--duration".into(),
            self.duration.clone(),
            "--ramp".into(),
            self.ramp.to_string(),
            "--json".into(),
            "--quiet".into(),
        ];
        if let Some(g) = self.group_size {
            a.extend(["--group-size".into(), g.to_string()]);
        }
        if let Some(s) = self.senders {
            a.extend(["--senders".into(), s.to_string()]);
        }
        if let Some(r) = self.room_size {
            a.extend(["--room-size".into(), r.to_string()]);
        }
        if let Some(b) = self.message_bytes {
            a.extend(["--message-bytes".into(), b.to_string()]);
        }
        if let Some(d) = &self.drain_timeout {
            a.extend(["--drain-timeout".into(), d.clone()]);
        }
        if let Some(f) = self.slow_fraction {
            a.extend(["--slow-fraction".into(), f.to_string()]);
        }
        if let Some(b) = self.slow_read_bps {
            a.extend(["--slow-read-rate".into(), b.to_string()]);
        }
        if let Some(p) = self.procs {
            a.extend(["--procs".into(), p.to_string()]);
        }
        if let Some(c) = self.churn_rate {
            a.extend(["--churn-rate".into(), c.to_string()]);
        }
        if let Some(n) = self.abusers {
            a.extend(["--abusers".into(), n.to_string()]);
        }
        if let Some(r) = self.abuse_rate {
            a.extend(["--abuse-rate".into(), r.to_string()]);
        }
        if let Some(w) = &self.latency_window {
            a.extend(["--latency-window".into(), w.clone()]);
        }
        if let Some(m) = &self.mode {
            a.extend(["--mode".into(), m.clone()]);
        }
        if self.compress {
            a.push("--compress".into());
        }
        if let Some(id) = &self.run_id {
            a.extend(["--run-id".into(), id.clone()]);
        }
        a
    }
}

/// Options of `bench run` that shape the runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// CI-sized run.
    pub quick: bool,
    /// Gateway shards (ignored by `shards`, which runs 1 and 2).
    pub shards: Option<usize>,
    /// `fsync` (default) or `buffered`.
    pub durability: Option<String>,
    /// Override: connections.
    pub connections: Option<usize>,
    /// Override: total rate.
    pub rate: Option<f64>,
    /// Override: duration.
    pub duration: Option<String>,
    /// The server to drive (default: the gateway).
    pub server: ServerKind,
    /// Gateway config overrides (`--set`).
    pub settings: Settings,
    /// `--pin`: server on CPU 0, loadgen on CPU 1.
    pub pin: bool,
    /// `--steps`: the publish rates of a stepped scenario (`room-fanout`).
    pub steps: Option<Vec<f64>>,
    /// `--mode`: the audience tier of the rooms' receivers (gateway only).
    pub mode: Option<String>,
    /// `--compress`: clients offer permessage-deflate (gateway only).
    pub compress: bool,
    /// `--run-id`: loadgen's run id, with the run's index appended (each
    /// run of a scenario its own schedule; the same across servers).
    pub run_id: Option<String>,
}

/// Whether scenario `name` with these options runs a ladder of rates (and
/// stops after the first step past [`STEP_P99_LIMIT_US`]): `room-fanout`
/// unless a single `--rate` is given without `--steps`; `small-rooms` when
/// `--steps` is given (its highest rate within a p99 bound is issue 14's
/// figure).
#[must_use]
pub fn is_stepped(name: &str, o: &Options) -> bool {
    match name {
        "room-fanout" => o.steps.is_some() || o.rate.is_none(),
        "small-rooms" => o.steps.is_some(),
        _ => false,
    }
}

/// The runs of scenario `name`, or an error naming the known scenarios.
pub fn plan(name: &str, o: &Options) -> anyhow::Result<Vec<RunSpec>> {
    let q = o.quick;
    if o.server.is_peer() && (name == "shards" || o.shards.is_some() || o.durability.is_some()) {
        anyhow::bail!(
            "--server {}: shards and durability are gateway settings (the peers are one \
             in-memory process)",
            o.server
        );
    }
    if o.server.is_peer() && !o.settings.is_empty() {
        anyhow::bail!(
            "--server {}: --set overrides gateway config fields; a peer has none",
            o.server
        );
    }
    if o.server.is_peer() && name == "soak" {
        anyhow::bail!(
            "--server {}: soak drives the gateway only (its rate limits refuse the abusers)",
            o.server
        );
    }
    if o.server.is_peer() && o.mode.as_deref().is_some_and(|m| m != "live") {
        anyhow::bail!(
            "--server {}: --mode (audience tiers) is a gateway feature",
            o.server
        );
    }
    if o.server.is_peer() && o.compress {
        anyhow::bail!(
            "--server {}: --compress is measured on the gateway only (the peers run without \
             permessage-deflate)",
            o.server
        );
    }
    if o.steps.is_some() && !matches!(name, "room-fanout" | "small-rooms") {
        anyhow::bail!("--steps: only room-fanout and small-rooms run a ladder of rates");
    }
    let durability = if o.server.is_peer() {
        "memory".to_string()
    } else {
        o.durability.clone().unwrap_or_else(|| "fsync".into())
    };
    let base = |label: &str, kind: &str, conns: usize, rate: f64, dur: &str| RunSpec {
        label: label.into(),
        server: o.server,
        gateway_shards: o.shards,
        durability: durability.clone(),
        loadgen_kind: kind.into(),
        connections: conns,
        rate,
        duration: dur.into(),
        ramp: 5000.0,
        group_size: None,
        senders: None,
        room_size: None,
        settings: o.settings.clone(),
        pinned: o.pin,
        message_bytes: None,
        drain_timeout: None,
        slow_fraction: None,
        slow_read_bps: None,
        procs: None,
        churn_rate: None,
        abusers: None,
        abuse_rate: None,
        latency_window: None,
        sample_every_s: None,
        mode: o.mode.clone(),
        compress: o.compress,
        run_id: None,
    };
    // room-fanout: a few senders; ~100k deliveries/s offered either way.
    let room = |label: &str| RunSpec {
        senders: Some(5),
        ..if q {
            base(label, "room", 2000, 50.0, "5s")
        } else {
            base(label, "room", 10_000, 10.0, "10s")
        }
    };
    let mut runs = match name {
        "dm-latency" => vec![if q {
            base("dm", "dm", 100, 200.0, "3s")
        } else {
            base("dm", "dm", 1000, 2000.0, "10s")
        }],
        "room-fanout" if is_stepped(name, o) => {
            let rates = o.steps.clone().unwrap_or_else(|| ladder(q));
            let conns = if q { 1000 } else { 10_000 };
            let dur = if q { "2s" } else { "10s" };
            rates
                .into_iter()
                .map(|r| RunSpec {
                    senders: Some(5),
                    ..base(&format!("rate={r}"), "room", conns, r, dur)
                })
                .collect()
        }
        "room-fanout" => vec![room("room")],
        "connect-storm" => vec![RunSpec {
            ramp: 0.0,
            ..if q {
                base("storm", "idle", 1000, 1.0, "1s")
            } else {
                base("storm", "idle", 10_000, 1.0, "2s")
            }
        }],
        // Receivers miss rate × duration messages (quick 100, full 100) and
        // all rejoin at once.
        "resume-storm" => vec![RunSpec {
            senders: Some(5),
            drain_timeout: Some(if q { "20s" } else { "60s" }.into()),
            ..if q {
                base("resume", "resume", 500, 50.0, "2s")
            } else {
                base("resume", "resume", 10_000, 20.0, "5s")
            }
        }],
        // 4 KiB messages so a slow reader falls far behind (quick: 500 KB
        // each, ~3× the 64 kB/s it reads in the 3 s; full: 1.7 MB at 40 kB/s)
        // — past the gateway's outbox budget (256 KiB) and the kernel's
        // socket buffers — then drains. The quick run is too short for that
        // with the defaults: it shrinks the budget (64 KiB) and the send
        // buffer (32 KiB) so the gateway pages slow readers from history
        // within seconds (unless --set says otherwise).
        "slow-consumers" => vec![RunSpec {
            settings: if q && !o.server.is_peer() {
                let mut s = o.settings.clone();
                s.entry("outbox_budget_bytes".into())
                    .or_insert_with(|| "65536".into());
                s.entry("socket_send_buffer_bytes".into())
                    .or_insert_with(|| "32768".into());
                s
            } else {
                o.settings.clone()
            },
            senders: Some(5),
            message_bytes: Some(4096),
            slow_fraction: Some(0.1),
            slow_read_bps: Some(if q { 64_000 } else { 40_000 }),
            drain_timeout: Some(if q { "20s" } else { "60s" }.into()),
            ..if q {
                base("slow", "room", 500, 40.0, "3s")
            } else {
                base("slow", "room", 2000, 20.0, "20s")
            }
        }],
        "groups-durable" => vec![RunSpec {
            group_size: Some(10),
            ..if q {
                base("groups", "groups", 200, 500.0, "3s")
            } else {
                base("groups", "groups", 2000, 2000.0, "10s")
            }
        }],
        // groups-durable's load (2,000 connections, 10 members, 2 senders
        // each, 2,000 msgs/s) as rooms: the peers have no group API, rooms
        // they have; on the gateway a room message takes the same path as a
        // group's (owner, commit, fan-out) without the membership check.
        "small-rooms" => {
            let rooms = |label: &str, rate: f64| RunSpec {
                room_size: Some(10),
                senders: Some(2),
                ..if q {
                    base(label, "room", 200, rate, "3s")
                } else {
                    base(label, "room", 2000, rate, "10s")
                }
            };
            match o.steps.clone().filter(|_| is_stepped(name, o)) {
                Some(rates) => rates
                    .into_iter()
                    .map(|r| rooms(&format!("rate={r}"), r))
                    .collect(),
                None => vec![rooms("rooms", if q { 500.0 } else { 2000.0 })],
            }
        }
        // As many connections as one gateway process holds here (~19,500 of
        // the 20,000 open files), from two loadgen processes.
        "idle" => vec![if q {
            base("idle", "idle", 500, 1.0, "2s")
        } else {
            RunSpec {
                procs: Some(2),
                ..base("idle", "idle", 19_000, 1.0, "10s")
            }
        }],
        // A long run at a moderate load (~3,000 deliveries/s), once without
        // and once with abusers, on the same config: a per-user rate limit
        // (20 requests/s, burst 40: a normal connection sends ~0.6/s) so
        // floods are refused and sustained ones closed (1008).
        "soak" => {
            let mut settings = o.settings.clone();
            settings
                .entry("rate_limit_per_sec".into())
                .or_insert_with(|| SOAK_RATE_LIMIT_PER_SEC.into());
            settings
                .entry("rate_limit_burst".into())
                .or_insert_with(|| SOAK_RATE_LIMIT_BURST.into());
            let soak = |label: &str, abusers: Option<usize>| RunSpec {
                settings: settings.clone(),
                senders: Some(10),
                group_size: Some(8),
                churn_rate: Some(2.0),
                slow_fraction: Some(0.02),
                slow_read_bps: Some(4000),
                abusers,
                abuse_rate: abusers.map(|_| 2.0),
                latency_window: Some(if q { "5s" } else { "15s" }.into()),
                sample_every_s: Some(5.0),
                drain_timeout: Some("30s".into()),
                ramp: 500.0,
                ..base(label, "soak", 1000, 500.0, if q { "2m" } else { "30m" })
            };
            vec![soak("no-abusers", None), soak("abusers", Some(4))]
        }
        "shards" => [1, 2]
            .into_iter()
            .map(|n| RunSpec {
                gateway_shards: Some(n),
                ..room(&format!("shards={n}"))
            })
            .collect(),
        other => anyhow::bail!("unknown scenario {other:?}; known: {}", NAMES.join(", ")),
    };
    if let Some(id) = &o.run_id {
        if id.is_empty() || id.len() > 12 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            anyhow::bail!("--run-id: 1 to 12 ASCII letters and digits (got {id:?})");
        }
    }
    for (i, r) in runs.iter_mut().enumerate() {
        r.run_id = o.run_id.as_ref().map(|id| format!("{id}r{i}"));
        if let Some(c) = o.connections {
            r.connections = c;
        }
        if let Some(x) = o.rate.filter(|_| !is_stepped(name, o)) {
            r.rate = x;
        }
        if let Some(d) = &o.duration {
            r.duration.clone_from(d);
        }
    }
    Ok(runs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_named_scenario_plans() {
        for n in NAMES {
            for quick in [false, true] {
                let runs = plan(
                    n,
                    &Options {
                        quick,
                        ..Options::default()
                    },
                )
                .unwrap();
                assert!(!runs.is_empty(), "{n}");
                assert!(runs.iter().all(|r| r.durability == "fsync"));
            }
        }
        assert!(plan("nope", &Options::default()).is_err());
    }

    #[test]
    fn a_mode_reaches_loadgen_and_is_refused_for_peers() {
        let o = Options {
            quick: true,
            mode: Some("digest".into()),
            steps: Some(vec![10.0]),
            ..Options::default()
        };
        let runs = plan("room-fanout", &o).unwrap();
        let args = runs[0].loadgen_args("ws://127.0.0.1:1/ws");
        let at = args.iter().position(|a| a == "--mode").unwrap();
        assert_eq!(args[at + 1], "digest");
        let peer = Options {
            server: ServerKind::Bun,
            ..o
        };
        assert!(plan("room-fanout", &peer).is_err());
    }

    #[test]
    fn a_run_id_gives_each_run_its_own_schedule_and_every_server_the_same() {
        let o = Options {
            quick: true,
            run_id: Some("ab1".into()),
            steps: Some(vec![10.0, 20.0]),
            ..Options::default()
        };
        let id_of = |o: &Options| -> Vec<String> {
            plan("room-fanout", o)
                .unwrap()
                .iter()
                .map(|r| {
                    let args = r.loadgen_args("ws://x/ws");
                    let at = args.iter().position(|a| a == "--run-id").unwrap();
                    args[at + 1].clone()
                })
                .collect()
        };
        assert_eq!(id_of(&o), ["ab1r0", "ab1r1"]);
        let bun = Options {
            server: ServerKind::Bun,
            ..o.clone()
        };
        assert_eq!(id_of(&bun), id_of(&o));
        for bad in ["", "a-b", "abcdefghijklm"] {
            let o = Options {
                run_id: Some(bad.into()),
                ..o.clone()
            };
            assert!(plan("room-fanout", &o).is_err(), "{bad:?}");
        }
        let none = plan("room-fanout", &Options::default()).unwrap();
        assert!(!none[0]
            .loadgen_args("ws://x/ws")
            .contains(&"--run-id".to_string()));
    }

    #[test]
    fn compress_reaches_loadgen_and_is_refused_for_peers() {
        let o = Options {
            quick: true,
            compress: true,
            ..Options::default()
        };
        let runs = plan("room-fanout", &o).unwrap();
        assert!(runs[0]
            .loadgen_args("ws://127.0.0.1:1/ws")
            .contains(&"--compress".to_string()));
        let plain = plan("room-fanout", &Options::default()).unwrap();
        assert!(!plain[0]
            .loadgen_args("ws://127.0.0.1:1/ws")
            .contains(&"--compress".to_string()));
        let peer = Options {
            server: ServerKind::Bun,
            ..o
        };
        assert!(plan("room-fanout", &peer).is_err());
    }

    #[test]
    fn shards_runs_one_and_two() {
        let runs = plan(
            "shards",
            &Options {
                shards: Some(7),
                ..Options::default()
            },
        )
        .unwrap();
        let s: Vec<_> = runs.iter().map(|r| r.gateway_shards).collect();
        assert_eq!(s, [Some(1), Some(2)]);
        assert_eq!(runs[0].connections, 10_000);
    }

    #[test]
    fn overrides_and_args() {
        let o = Options {
            quick: true,
            connections: Some(20),
            duration: Some("1s".into()),
            durability: Some("buffered".into()),
            ..Options::default()
        };
        let r = &plan("groups-durable", &o).unwrap()[0];
        assert_eq!(r.durability, "buffered");
        let a = r.loadgen_args("ws://x/ws");
        assert_eq!(a[0], "groups");
        let pos = |k: &str| a.iter().position(|x| x == k).unwrap();
        assert_eq!(a[pos("--connections") + 1], "20");
        assert_eq!(a[pos("--duration") + 1], "1s");
        assert_eq!(a[pos("--group-size") + 1], "10");
        assert!(a.contains(&"--json".to_string()) && a.contains(&"--quiet".to_string()));
    }

    #[test]
    fn small_rooms_are_rooms_of_ten_with_two_senders_for_every_server() {
        for server in [ServerKind::Gateway, ServerKind::Bun, ServerKind::Node] {
            let o = Options {
                server,
                ..Options::default()
            };
            let r = &plan("small-rooms", &o).unwrap()[0];
            let a = r.loadgen_args("ws://x/ws");
            let pos = |k: &str| a.iter().position(|x| x == k).unwrap();
            assert_eq!(a[0], "room");
            assert_eq!(a[pos("--connections") + 1], "2000");
            assert_eq!(a[pos("--rate") + 1], "2000");
            assert_eq!(a[pos("--room-size") + 1], "10");
            assert_eq!(a[pos("--senders") + 1], "2");
        }
    }

    #[test]
    fn peers_get_the_same_load_and_no_gateway_settings() {
        let gw = plan(
            "room-fanout",
            &Options {
                quick: true,
                ..Options::default()
            },
        )
        .unwrap();
        let o = Options {
            quick: true,
            server: ServerKind::Bun,
            ..Options::default()
        };
        let bun = plan("room-fanout", &o).unwrap();
        assert_eq!(bun[0].server, ServerKind::Bun);
        assert_eq!(bun[0].durability, "memory");
        assert_eq!(gw[0].server, ServerKind::Gateway);
        assert_eq!(
            bun[0].loadgen_args("ws://x/ws"),
            gw[0].loadgen_args("ws://x/ws")
        );
        assert!(plan("shards", &o).is_err());
        let with_shards = Options {
            shards: Some(1),
            ..o.clone()
        };
        assert!(plan("dm-latency", &with_shards).is_err());
    }

    #[test]
    fn room_fanout_steps_through_its_ladder_unless_one_rate_is_given() {
        let q = Options {
            quick: true,
            ..Options::default()
        };
        assert!(is_stepped("room-fanout", &q));
        let runs = plan("room-fanout", &q).unwrap();
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        assert_eq!(rates, ladder(true));
        assert_eq!(runs[0].label, "rate=25");
        assert!(runs
            .iter()
            .all(|r| r.senders == Some(5) && r.connections == 1000));

        let one = Options {
            rate: Some(30.0),
            ..q.clone()
        };
        assert!(!is_stepped("room-fanout", &one));
        let runs = plan("room-fanout", &one).unwrap();
        assert_eq!((runs.len(), runs[0].rate), (1, 30.0));

        let steps = Options {
            steps: Some(parse_steps("5, 10,40").unwrap()),
            rate: Some(30.0),
            ..Options::default()
        };
        let runs = plan("room-fanout", &steps).unwrap();
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        assert_eq!(rates, [5.0, 10.0, 40.0], "--steps wins over --rate");
        assert_eq!(runs[0].connections, 10_000);
        assert!(
            plan("dm-latency", &steps).is_err(),
            "only room-fanout and small-rooms step"
        );
        assert!(!is_stepped("shards", &q));
    }

    #[test]
    fn small_rooms_steps_through_the_given_rates_and_runs_once_without_them() {
        let once = plan("small-rooms", &Options::default()).unwrap();
        assert!(!is_stepped("small-rooms", &Options::default()));
        assert_eq!(once.len(), 1);
        assert_eq!(once[0].rate, 2000.0);
        let o = Options {
            steps: Some(parse_steps("2000,3000,4000").unwrap()),
            ..Options::default()
        };
        assert!(is_stepped("small-rooms", &o));
        let runs = plan("small-rooms", &o).unwrap();
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        assert_eq!(rates, [2000.0, 3000.0, 4000.0]);
        assert!(runs
            .iter()
            .all(|r| r.room_size == Some(10) && r.senders == Some(2) && r.connections == 2000));
        assert_eq!(runs[1].label, "rate=3000");
    }

    #[test]
    fn steps_must_be_positive_and_increasing() {
        assert_eq!(parse_steps("1,2.5").unwrap(), [1.0, 2.5]);
        assert!(parse_steps("").is_err());
        assert!(parse_steps("2,1").is_err());
        assert!(parse_steps("0,1").is_err());
        assert!(parse_steps("a").is_err());
    }

    #[test]
    fn settings_and_pinning_reach_every_run_and_not_the_peers() {
        let mut settings = Settings::new();
        settings.insert("commit_max_messages".into(), "64".into());
        let o = Options {
            quick: true,
            settings: settings.clone(),
            pin: true,
            ..Options::default()
        };
        for r in plan("shards", &o).unwrap() {
            assert_eq!(r.settings, settings);
            assert!(r.pinned);
        }
        let peer = Options {
            server: ServerKind::Node,
            ..o
        };
        let e = plan("dm-latency", &peer).unwrap_err();
        assert!(format!("{e}").contains("--set"), "{e}");
    }

    #[test]
    fn new_scenarios_pass_their_loadgen_options() {
        let q = Options {
            quick: true,
            ..Options::default()
        };
        let storm = &plan("connect-storm", &q).unwrap()[0];
        let a = storm.loadgen_args("ws://x/ws");
        assert_eq!(a[0], "idle");
        let pos = |a: &[String], k: &str| a.iter().position(|x| x == k).unwrap();
        assert_eq!(a[pos(&a, "--ramp") + 1], "0");
        let resume = &plan("resume-storm", &q).unwrap()[0];
        let a = resume.loadgen_args("ws://x/ws");
        assert_eq!(a[0], "resume");
        assert_eq!(a[pos(&a, "--drain-timeout") + 1], "20s");
        let full = &plan("resume-storm", &Options::default()).unwrap()[0];
        assert_eq!(full.connections, 10_000);
        let slow = &plan("slow-consumers", &q).unwrap()[0];
        let a = slow.loadgen_args("ws://x/ws");
        assert_eq!(a[0], "room");
        assert_eq!(a[pos(&a, "--slow-fraction") + 1], "0.1");
        assert_eq!(a[pos(&a, "--slow-read-rate") + 1], "64000");
        assert_eq!(a[pos(&a, "--message-bytes") + 1], "4096");
    }

    #[test]
    fn soak_runs_without_then_with_abusers_on_one_rate_limited_config() {
        let q = Options {
            quick: true,
            ..Options::default()
        };
        let runs = plan("soak", &q).unwrap();
        let labels: Vec<_> = runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["no-abusers", "abusers"]);
        assert_eq!(runs[0].settings, runs[1].settings);
        assert_eq!(runs[0].settings["rate_limit_per_sec"], "20");
        let pos = |a: &[String], k: &str| a.iter().position(|x| x == k);
        let without = runs[0].loadgen_args("ws://x/ws");
        let with = runs[1].loadgen_args("ws://x/ws");
        assert_eq!(without[0], "soak");
        assert_eq!(without[pos(&without, "--duration").unwrap() + 1], "2m");
        assert!(pos(&without, "--abusers").is_none());
        assert_eq!(with[pos(&with, "--abusers").unwrap() + 1], "4");
        assert!(pos(&with, "--latency-window").is_some());
        assert!(runs.iter().all(|r| r.sample_every_s == Some(5.0)));
        let full = plan("soak", &Options::default()).unwrap();
        assert_eq!(full[1].duration, "30m");
        let mine = Options {
            duration: Some("10m".into()),
            settings: [("rate_limit_per_sec".to_string(), "5".to_string())].into(),
            ..Options::default()
        };
        let runs = plan("soak", &mine).unwrap();
        assert_eq!(runs[0].duration, "10m");
        assert_eq!(runs[1].settings["rate_limit_per_sec"], "5", "--set wins");
        let peer = Options {
            server: ServerKind::Bun,
            ..Options::default()
        };
        assert!(plan("soak", &peer).is_err());
    }

    #[test]
    fn old_specs_without_server_read_as_gateway() {
        let mut v =
            serde_json::to_value(&plan("dm-latency", &Options::default()).unwrap()[0]).unwrap();
        v.as_object_mut().unwrap().remove("server");
        let spec: RunSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.server, ServerKind::Gateway);
    }
}
