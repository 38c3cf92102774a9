//! The run's configuration: what the command line says, validated once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::{ScenarioKind, ScenarioParams};

/// Why a configuration is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The `--target` URL is not a usable `ws://` URL.
    #[error("--target {url:?}: {reason}")]
    Target {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration does not parse (`30s`, `500ms`, `2m`, `1h`, or seconds).
    #[error("invalid duration {0:?} (use e.g. 30s, 500ms, 2m)")]
    Duration(String),
    /// Another parameter is out of range; the text says which.
    #[error("{0}")]
    Invalid(String),
}

/// Which slice of the plan a worker process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSlot {
    /// This worker's index, `0..count`.
    pub index: usize,
    /// Number of worker processes.
    pub count: usize,
}

/// Everything a run needs. Serialisable: the parent process hands it to its
/// workers as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The scenario and its parameters (connections are the run's total).
    pub scenario: ScenarioParams,
    /// `ws://HOST:PORT/PATH` of the gateway.
    pub target: String,
    /// How long senders send, ms (`idle`: how long connections are held).
    pub duration_ms: u64,
    /// New connections per second over the whole run; 0 = all at once.
    pub ramp: f64,
    /// Client shards (glommio executors, one thread each) per process.
    pub shards: usize,
    /// Worker processes (1: this process does the work itself).
    pub procs: usize,
    /// Bytes of text per message (at least the ~25-byte header).
    pub message_bytes: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2,
    /// 127.0.0.3, …; connection `i` of the plan uses address `i mod n`, in
    /// whichever process runs it); `None` = automatic: one per 20,000
    /// connections when the target is loopback and the run has more than
    /// 20,000 connections, else 0 (the kernel picks the source).
    pub source_addrs: Option<usize>,
    /// How long to wait for acks after sending, and again for every member
    /// to receive every acked message, ms.
    pub drain_timeout_ms: u64,
    /// How long past the expected ramp time to wait for every connection to
    /// join before sending anyway, ms.
    pub ready_grace_ms: u64,
    /// Pin shards to CPUs (glommio `MaxSpread`); default off, so the
    /// load generator does not fight a gateway on the same host for cores.
    pub pin: bool,
    /// Set in worker processes: which slice of the plan to run.
    pub worker: Option<WorkerSlot>,
    /// Keep delivery latency per window of this many ms of the send phase
    /// (0: not kept); see [`crate::stats::LatencyWindows`].
    #[serde(default)]
    pub latency_window_ms: u64,
    /// The gateway's token secret: with it, every connection authenticates
    /// with its own HS256 token (`sub` = user, `device`) in an
    /// `Authorization: Bearer` header; without it, with dev auth
    /// (`?user=&device=`). Never serialised: worker processes get it in
    /// their environment ([`TOKEN_SECRET_ENV`]), not on their command line.
    #[serde(skip)]
    pub token_secret: Option<String>,
    /// Offer permessage-deflate on every connection (`--compress`); the
    /// server may accept it (the gateway does by default) and then send
    /// compressed messages, which loadgen inflates and checks as any.
    #[serde(default)]
    pub compress: bool,
}

/// The environment variable that carries the token secret (the gateway
/// reads the same one).
pub const TOKEN_SECRET_ENV: &str = "GATEWAY_AUTH_SECRET";

impl RunConfig {
    /// Defaults for everything but the scenario and target.
    #[must_use]
    pub fn new(kind: ScenarioKind, target: &str) -> RunConfig {
        RunConfig {
            scenario: ScenarioParams {
                kind,
                connections: 100,
                rate: 1000.0,
                group_size: 8,
                room_size: None,
                senders: 10,
                churn_rate: 10.0,
                slow_fraction: 0.0,
                slow_read_bps: 0,
                run_id: new_run_id(),
                group_names: Vec::new(),
                abusers: 0,
                abuse_rate: 0.0,
                mode: crate::scenario::Tier::Live,
            },
            target: target.to_string(),
            duration_ms: 10_000,
            ramp: 1000.0,
            shards: 1,
            procs: 1,
            message_bytes: 64,
            source_addrs: None,
            drain_timeout_ms: 10_000,
            ready_grace_ms: 30_000,
            pin: false,
            worker: None,
            latency_window_ms: 0,
            token_secret: None,
            compress: false,
        }
    }

    /// Checks ranges and the target; returns the parsed targets (one per
    /// comma-separated URL of `target`, in order).
    pub fn validate(&self) -> Result<Vec<Target>, ConfigError> {
        let targets = Target::parse_list(&self.target)?;
        if self.shards == 0 || self.shards > 256 {
            return Err(ConfigError::Invalid("--shards must be 1–256".into()));
        }
        if self.procs == 0 || self.procs > 256 {
            return Err(ConfigError::Invalid("--procs must be 1–256".into()));
        }
        if !(self.ramp.is_finite() && self.ramp >= 0.0) {
            return Err(ConfigError::Invalid("--ramp must be ≥ 0".into()));
        }
        if self.token_secret.as_deref() == Some("") {
            return Err(ConfigError::Invalid("the token secret is empty".into()));
        }
        if self.message_bytes > 1_000_000 {
            return Err(ConfigError::Invalid(
                "--message-bytes must be at most 1,000,000".into(),
            ));
        }
        if let Some(n) = self.source_addrs {
            if n > 0 && !targets.iter().all(|t| t.addr.ip().is_loopback()) {
                return Err(ConfigError::Invalid(
                    "--source-addrs spreads over loopback addresses: the target must be loopback"
                        .into(),
                ));
            }
            if n > 65_000 {
                return Err(ConfigError::Invalid(
                    "--source-addrs must be ≤ 65,000".into(),
                ));
            }
        }
        crate::scenario::plan(&self.scenario).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(targets)
    }

    /// Connections this process runs.
    #[must_use]
    pub fn local_connections(&self) -> usize {
        match self.worker {
            Some(w) => {
                let n = self.scenario.connections;
                n * (w.index + 1) / w.count - n * w.index / w.count
            }
            None => self.scenario.connections,
        }
    }

    /// The source addresses of the run, in order (empty: none); connection
    /// `i` of the plan binds `ips[i % ips.len()]`.
    #[must_use]
    pub fn source_ips(&self, targets: &[Target]) -> Vec<IpAddr> {
        let loopback_v4 = !targets.is_empty()
            && targets
                .iter()
                .all(|t| t.addr.ip().is_loopback() && t.addr.is_ipv4());
        let n = match self.source_addrs {
            Some(n) => n,
            None if loopback_v4 => {
                let total = self.scenario.connections;
                if total > PORTS_PER_SOURCE {
                    total.div_ceil(PORTS_PER_SOURCE)
                } else {
                    0
                }
            }
            None => 0,
        };
        let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
        (0..n as u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
            .collect()
    }
}

/// Connections planned per source address by the automatic choice (the
/// kernel offers ~28,000 ephemeral ports per address).
pub const PORTS_PER_SOURCE: usize = 20_000;

/// A new run id: 6 base-36 characters from the clock and the process id.
#[must_use]
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = crate::rng::Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..6)
        .map(|_| DIGITS[rng.below(36) as usize] as char)
        .collect()
}

/// A parsed `ws://` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Resolved address (the first the name resolves to).
    pub addr: SocketAddr,
    /// `Host` header value (`host:port` as written).
    pub host: String,
    /// Path and query as written (`/ws`, or `/ws?x=y`).
    pub path: String,
}

impl Target {
    /// Parses and resolves `ws://HOST[:PORT][/PATH]` (default port 80,
    /// default path `/ws`). `wss://` is not supported.
    pub fn parse(url: &str) -> Result<Target, ConfigError> {
        let err = |reason: &str| ConfigError::Target {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = if let Some(rest) = url.strip_prefix("ws://") {
            rest
        } else if url.starts_with("wss://") {
            return Err(err("wss:// (TLS) is not supported; use ws://"));
        } else {
            return Err(err("must start with ws://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        if authority.is_empty() {
            return Err(err("no host"));
        }
        let with_port = if authority.starts_with('[') {
            if authority.contains("]:") {
                authority.to_string()
            } else {
                format!("{authority}:80")
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| err(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| err("resolves to no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// Parses `urls`: one URL, or several separated by commas (gateway
    /// nodes of one cluster: connections spread over them and reconnect to
    /// the next). Blanks around a comma are ignored.
    pub fn parse_list(urls: &str) -> Result<Vec<Target>, ConfigError> {
        urls.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Target::parse)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|v| {
                if v.is_empty() {
                    Err(ConfigError::Target {
                        url: urls.to_string(),
                        reason: "no URL".into(),
                    })
                } else {
                    Ok(v)
                }
            })
    }

    /// The request target for a dev-auth upgrade as `user` / `device`.
    #[must_use]
    pub fn request_path(&self, user: &str, device: &str) -> String {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{sep}user={user}&device={device}", self.path)
    }

    /// The upgrade request for `user`/`device`: dev auth in the query, or a
    /// bearer `token`; with `compress`, an offer of permessage-deflate with
    /// no context takeover either way (loadgen inflates each message on its
    /// own, with one decompressor per client shard, and sends plain frames).
    #[must_use]
    pub fn upgrade_request(
        &self,
        user: &str,
        device: &str,
        token: Option<&str>,
        key: &str,
        compress: bool,
    ) -> String {
        let (path, auth) = match token {
            Some(t) => (self.path.clone(), format!("Authorization: Bearer {t}\r\n")),
            None => (self.request_path(user, device), String::new()),
        };
        let extensions = if compress {
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        } else {
            ""
        };
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}{extensions}\r\n",
            self.host
        )
    }
}

/// Parses a duration: `30s`, `500ms`, `2m`, `1h`, `250us`, or plain
/// (fractional) seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Duration(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("ws://127.0.0.1:9000/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(t.host, "127.0.0.1:9000");
        assert_eq!(t.request_path("u", "d"), "/ws?user=u&device=d");
        let t = Target::parse("ws://127.0.0.1:9000/ws?x=1").unwrap();
        assert_eq!(t.request_path("u", "d"), "/ws?x=1&user=u&device=d");
        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path, "/ws");
        let req = t.upgrade_request("u", "d", None, "k", false);
        assert!(req.starts_with("GET /ws?user=u&device=d HTTP/1.1\r\n"));
        assert!(req.ends_with("\r\n\r\n") && !req.contains("Authorization"));
        assert!(!req.contains("Sec-WebSocket-Extensions"));
        let req = t.upgrade_request("u", "d", None, "k", true);
        assert!(req.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n\r\n"
        ));
        let req = t.upgrade_request("u", "d", Some("tok"), "k", false);
        assert!(req.starts_with("GET /ws HTTP/1.1\r\n"));
        assert!(req.contains("\r\nAuthorization: Bearer tok\r\n\r\n"));
        assert!(Target::parse("wss://127.0.0.1/ws").is_err());
        assert!(Target::parse("http://127.0.0.1/ws").is_err());
        assert!(Target::parse("ws:///ws").is_err());
    }

    #[test]
    fn several_targets_parse_in_order() {
        let v = Target::parse_list("ws://127.0.0.1:9001/ws, ws://127.0.0.1:9002/ws,").unwrap();
        let ports: Vec<u16> = v.iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [9001, 9002]);
        assert_eq!(Target::parse_list("ws://127.0.0.1:9001").unwrap().len(), 1);
        assert!(Target::parse_list("").is_err());
        assert!(Target::parse_list(" , ").is_err());
        assert!(Target::parse_list("ws://127.0.0.1:9001/ws,http://x/ws").is_err());
        let cfg = RunConfig::new(
            ScenarioKind::Idle,
            "ws://127.0.0.1:9001/ws,ws://127.0.0.1:9002/ws",
        );
        assert_eq!(cfg.validate().unwrap().len(), 2);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn source_addresses_are_automatic_past_20k() {
        let mut cfg = RunConfig::new(ScenarioKind::Idle, "ws://127.0.0.1:1/ws");
        let target = cfg.validate().unwrap();
        assert!(cfg.source_ips(&target).is_empty());
        cfg.scenario.connections = 50_000;
        let ips = cfg.source_ips(&target);
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        // The same set in every worker process.
        cfg.worker = Some(WorkerSlot { index: 0, count: 5 });
        assert_eq!(cfg.source_ips(&target), ips);
        cfg.source_addrs = Some(2);
        assert_eq!(cfg.source_ips(&target).len(), 2);
    }

    #[test]
    fn local_connections_split_evenly() {
        let mut cfg = RunConfig::new(ScenarioKind::Idle, "ws://127.0.0.1:1/ws");
        cfg.scenario.connections = 10;
        let total: usize = (0..3)
            .map(|i| {
                cfg.worker = Some(WorkerSlot { index: i, count: 3 });
                cfg.local_connections()
            })
            .sum();
        assert_eq!(total, 10);
    }
}
