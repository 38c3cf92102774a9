//! Named scenarios → gateway settings and loadgen arguments. No I/O.

use serde::{Deserialize, Serialize};

use crate::peers::ServerKind;

/// The scenarios of this step.
pub const NAMES: &[&str] = &[
    "dm-latency",
    "room-fanout",
    "groups-durable",
    "idle",
    "shards",
];

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
        "room-fanout" => vec![room("room")],
        "groups-durable" => vec![RunSpec {
            group_size: Some(10),
            ..if q {
                base("groups", "groups", 200, 500.0, "3s")
            } else {
                base("groups", "groups", 2000, 2000.0, "10s")
            }
        }],
        "idle" => vec![if q {
            base("idle", "idle", 500, 1.0, "2s")
        } else {
            base("idle", "idle", 5000, 1.0, "5s")
        }],
        "shards" => [1, 2]
            .into_iter()
            .map(|n| RunSpec {
                gateway_shards: Some(n),
                ..room(&format!("shards={n}"))
            })
            .collect(),
        other => anyhow::bail!("unknown scenario {other:?}; known: {}", NAMES.join(", ")),
    };
    for r in &mut runs {
        if let Some(c) = o.connections {
            r.connections = c;
        }
        if let Some(x) = o.rate {
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
    fn old_specs_without_server_read_as_gateway() {
        let mut v =
            serde_json::to_value(&plan("dm-latency", &Options::default()).unwrap()[0]).unwrap();
        v.as_object_mut().unwrap().remove("server");
        let spec: RunSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.server, ServerKind::Gateway);
    }
}
