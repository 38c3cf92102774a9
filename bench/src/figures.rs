//! Server samples and the figures derived from them and from loadgen's
//! report. No I/O.

use serde::{Deserialize, Serialize};

/// One sample of the gateway process and the host's TCP counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Gateway CPU time (user + system), clock ticks.
    pub cpu_ticks: u64,
    /// Gateway resident set size, KiB.
    pub rss_kib: u64,
    /// Host-wide `Tcp: OutSegs`.
    pub tcp_out_segs: u64,
}

/// One sample of the server's timeline (`RunSpec::sample_every_s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// Seconds since loadgen started.
    pub t_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors (`/proc/<pid>/fd`).
    pub fds: u64,
    /// CPU time used so far (user + system), clock ticks.
    pub cpu_ticks: u64,
}

/// What the bench measured around one loadgen run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSamples {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub clk_tck: u64,
    /// Just before loadgen started (gateway up, no connections).
    pub before: Sample,
    /// Just after loadgen exited.
    pub after: Sample,
    /// Largest RSS seen while loadgen ran (polled every 50 ms), KiB.
    pub peak_rss_kib: u64,
    /// Wall time from loadgen start to exit, s.
    pub wall_s: f64,
    /// loadgen's CPU time over its run (user + system, its worker
    /// processes included), s: when it nears `wall_s` × loadgen's CPUs,
    /// loadgen — not the server — bounds the latencies measured.
    #[serde(default)]
    pub loadgen_cpu_s: f64,
}

/// The numbers bench reads from loadgen's `--json` report (a contract:
/// see `loadgen/src/report.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadgenSummary {
    /// Connections run.
    pub connections: u64,
    /// Sends acked.
    pub acked: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Deliveries per second over the send phase.
    pub deliveries_per_s: f64,
    /// Connects per second over the ramp.
    pub connects_per_s: f64,
    /// Sum of every violation counter.
    pub violations: u64,
    /// Delivery latency p50 / p99 / p99.9 / max, µs.
    pub latency_us: [u64; 4],
    /// Ack latency p50 / p99 / p99.9 / max, µs.
    pub ack_latency_us: [u64; 4],
    /// Connect + upgrade p50 / p99 / p99.9 / max, µs (0 from an older
    /// loadgen).
    pub handshake_us: [u64; 4],
    /// Resumers: reconnect → `joined`, p50 / p99 / p99.9 / max, µs.
    pub rejoin_us: [u64; 4],
    /// Resumers: reconnect → last missed message, p50 / p99 / p99.9 / max, µs.
    pub catch_up_us: [u64; 4],
    /// Resumers that rejoined with `since`.
    pub resumes: u64,
    /// Messages their rejoins replayed.
    pub resume_replayed: u64,
    /// Resumers that received every message they missed.
    pub resumes_caught_up: u64,
    /// Connections reading at a limited rate.
    pub slow_connections: u64,
    /// TCP segments the server sent to loadgen's connections (each
    /// socket's `tcpi_segs_in`; 0 from an older loadgen).
    pub server_segments: u64,
    /// Of those, the ones that carried data.
    pub server_data_segments: u64,
    /// Payload bytes the server sent on those sockets (0 from an older
    /// loadgen).
    pub server_bytes: u64,
    /// loadgen's own verdict.
    pub ok: bool,
}

impl LoadgenSummary {
    /// Reads the summary out of loadgen's JSON report.
    pub fn from_json(v: &serde_json::Value) -> anyhow::Result<LoadgenSummary> {
        let u = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| anyhow::anyhow!("loadgen JSON: no unsigned `{k}`"))
        };
        let pct = |k: &str| -> anyhow::Result<[u64; 4]> {
            let p = v
                .get(k)
                .ok_or_else(|| anyhow::anyhow!("loadgen JSON: no `{k}`"))?;
            let g = |f: &str| p.get(f).and_then(serde_json::Value::as_u64).unwrap_or(0);
            Ok([g("p50"), g("p99"), g("p999"), g("max")])
        };
        // Keys newer loadgens add: zero when absent.
        let opt_pct = |k: &str| pct(k).unwrap_or_default();
        let counter = |k: &str| {
            v.get("counters")
                .and_then(|c| c.get(k))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let violations = v
            .get("violations")
            .and_then(serde_json::Value::as_object)
            .map_or(0, |o| {
                o.values().filter_map(serde_json::Value::as_u64).sum()
            });
        Ok(LoadgenSummary {
            connections: u("connections")?,
            acked: u("acked")?,
            delivered: u("delivered")?,
            deliveries_per_s: v
                .get("deliveries_per_s")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0),
            connects_per_s: v
                .get("connects_per_s")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0),
            violations,
            latency_us: pct("latency_us")?,
            ack_latency_us: pct("ack_latency_us")?,
            handshake_us: opt_pct("handshake_latency_us"),
            rejoin_us: opt_pct("rejoin_latency_us"),
            catch_up_us: opt_pct("catch_up_latency_us"),
            resumes: counter("resumes"),
            resume_replayed: counter("resume_replayed"),
            resumes_caught_up: counter("resumes_caught_up"),
            slow_connections: counter("slow_connections"),
            server_segments: counter("server_segments"),
            server_data_segments: counter("server_data_segments"),
            server_bytes: counter("server_bytes"),
            ok: v
                .get("ok")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The headline figures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Connections run.
    pub connections: u64,
    /// Deliveries per second over loadgen's send phase.
    pub deliveries_per_s: f64,
    /// Connects per second over loadgen's ramp.
    pub connects_per_s: f64,
    /// Gateway CPU time over the whole loadgen run (ramp, send, drain,
    /// close), s.
    pub server_cpu_s: f64,
    /// Deliveries ÷ gateway CPU-seconds (whole run, so ramp and close are
    /// charged too: a lower bound on the send phase's efficiency).
    pub deliveries_per_cpu_s: f64,
    /// (deliveries + acks) ÷ the data segments the server sent (loadgen's
    /// count of its sockets' received segments: the server's own). With an
    /// older loadgen, ÷ the host-wide TCP OutSegs delta instead: on
    /// loopback OutSegs counts both directions and every process, so
    /// this is a lower bound on the gateway's frames per segment.
    pub frames_per_segment: f64,
    /// Server CPU time ÷ every segment the server sent (data and pure
    /// ACKs), µs: what a segment costs all told (0 without loadgen's count).
    #[serde(default)]
    pub cpu_us_per_segment: f64,
    /// The server's payload bytes (frames, compressed or not) ÷
    /// deliveries (0 without loadgen's count).
    #[serde(default)]
    pub bytes_per_delivery: f64,
    /// loadgen's CPU time ÷ the run's wall time, % of one CPU (100 = one
    /// CPU busy throughout: loadgen pinned to one CPU is then saturated).
    #[serde(default)]
    pub loadgen_cpu_pct: f64,
    /// Delivery latency p50 / p99 / p99.9 / max, µs.
    pub latency_us: [u64; 4],
    /// Ack latency p50 / p99 / p99.9 / max, µs.
    pub ack_latency_us: [u64; 4],
    /// (peak RSS − RSS before) ÷ connections, bytes.
    pub mem_per_conn_bytes: f64,
    /// Peak RSS − RSS before, KiB.
    #[serde(default)]
    pub rss_growth_kib: u64,
    /// Connect + upgrade p50 / p99 / p99.9 / max, µs.
    #[serde(default)]
    pub handshake_us: [u64; 4],
    /// Resumers: reconnect → `joined`, p50 / p99 / p99.9 / max, µs.
    #[serde(default)]
    pub rejoin_us: [u64; 4],
    /// Resumers: reconnect → last missed message, p50 / p99 / p99.9 / max, µs.
    #[serde(default)]
    pub catch_up_us: [u64; 4],
    /// Resumers that rejoined with `since`.
    #[serde(default)]
    pub resumes: u64,
    /// Messages their rejoins replayed.
    #[serde(default)]
    pub resume_replayed: u64,
    /// Resumers that received every message they missed.
    #[serde(default)]
    pub resumes_caught_up: u64,
    /// Connections reading at a limited rate (slow consumers).
    #[serde(default)]
    pub slow_connections: u64,
    /// Sum of loadgen's violation counters.
    pub violations: u64,
    /// loadgen's verdict (no violation, nothing unverified).
    pub ok: bool,
}

fn ratio(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        n / d
    } else {
        0.0
    }
}

impl Figures {
    /// Derives the figures of a run.
    #[must_use]
    pub fn compute(lg: &LoadgenSummary, s: &ServerSamples) -> Figures {
        let ticks = s.after.cpu_ticks.saturating_sub(s.before.cpu_ticks);
        let server_cpu_s = ratio(ticks as f64, s.clk_tck as f64);
        let segs = s.after.tcp_out_segs.saturating_sub(s.before.tcp_out_segs);
        let rss_growth_kib = s.peak_rss_kib.saturating_sub(s.before.rss_kib);
        Figures {
            connections: lg.connections,
            deliveries_per_s: lg.deliveries_per_s,
            connects_per_s: lg.connects_per_s,
            server_cpu_s,
            deliveries_per_cpu_s: ratio(lg.delivered as f64, server_cpu_s),
            frames_per_segment: ratio(
                (lg.delivered + lg.acked) as f64,
                if lg.server_data_segments > 0 {
                    lg.server_data_segments as f64
                } else {
                    segs as f64
                },
            ),
            cpu_us_per_segment: ratio(server_cpu_s * 1e6, lg.server_segments as f64),
            bytes_per_delivery: ratio(lg.server_bytes as f64, lg.delivered as f64),
            loadgen_cpu_pct: ratio(s.loadgen_cpu_s * 100.0, s.wall_s),
            latency_us: lg.latency_us,
            ack_latency_us: lg.ack_latency_us,
            mem_per_conn_bytes: ratio(rss_growth_kib as f64 * 1024.0, lg.connections as f64),
            rss_growth_kib,
            handshake_us: lg.handshake_us,
            rejoin_us: lg.rejoin_us,
            catch_up_us: lg.catch_up_us,
            resumes: lg.resumes,
            resume_replayed: lg.resume_replayed,
            resumes_caught_up: lg.resumes_caught_up,
            slow_connections: lg.slow_connections,
            violations: lg.violations,
            ok: lg.ok,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn loadgen_json() -> serde_json::Value {
        serde_json::json!({
            "scenario": "dm", "connections": 100, "sent": 1000, "acked": 1000,
            "delivered": 1000, "deliveries_per_s": 500.0, "connects_per_s": 900.0,
            "violations": {"lost": 0, "duplicated": 1, "reordered": 2, "before_join": 0},
            "latency_us": {"count": 1000, "p50": 100, "p90": 200, "p99": 300, "p999": 400, "max": 500, "mean": 120.0},
            "ack_latency_us": {"count": 1000, "p50": 90, "p90": 190, "p99": 290, "p999": 390, "max": 490, "mean": 110.0},
            "ok": false
        })
    }

    #[test]
    fn summary_reads_the_contract_keys() {
        let s = LoadgenSummary::from_json(&loadgen_json()).unwrap();
        assert_eq!(s.connections, 100);
        assert_eq!(s.delivered, 1000);
        assert_eq!(s.violations, 3);
        assert_eq!(s.latency_us, [100, 300, 400, 500]);
        assert_eq!(s.ack_latency_us, [90, 290, 390, 490]);
        assert!(!s.ok);
        assert_eq!(s.handshake_us, [0; 4], "absent in older reports");
        assert!(LoadgenSummary::from_json(&serde_json::json!({})).is_err());
        let mut v = loadgen_json();
        v["handshake_latency_us"] =
            serde_json::json!({"p50": 700, "p99": 9000, "p999": 9900, "max": 10000});
        v["counters"] =
            serde_json::json!({"resumes": 4, "resume_replayed": 40, "slow_connections": 2});
        let s = LoadgenSummary::from_json(&v).unwrap();
        assert_eq!(s.handshake_us, [700, 9000, 9900, 10000]);
        assert_eq!(
            (s.resumes, s.resume_replayed, s.slow_connections),
            (4, 40, 2)
        );
    }

    #[test]
    fn figures_from_samples() {
        let lg = LoadgenSummary::from_json(&loadgen_json()).unwrap();
        let s = ServerSamples {
            clk_tck: 100,
            before: Sample {
                cpu_ticks: 1000,
                rss_kib: 10_000,
                tcp_out_segs: 5_000,
            },
            after: Sample {
                cpu_ticks: 1050,
                rss_kib: 10_500,
                tcp_out_segs: 6_000,
            },
            peak_rss_kib: 10_800,
            wall_s: 3.0,
            loadgen_cpu_s: 1.5,
        };
        let f = Figures::compute(&lg, &s);
        assert!((f.server_cpu_s - 0.5).abs() < 1e-9);
        assert!((f.deliveries_per_cpu_s - 2000.0).abs() < 1e-9);
        assert!(
            (f.frames_per_segment - 2.0).abs() < 1e-9,
            "host-wide without loadgen's count"
        );
        assert_eq!(f.cpu_us_per_segment, 0.0);
        assert_eq!(f.bytes_per_delivery, 0.0);
        assert!((f.loadgen_cpu_pct - 50.0).abs() < 1e-9);
        let own = LoadgenSummary {
            server_segments: 2_500,
            server_data_segments: 500,
            server_bytes: 150_000,
            ..lg.clone()
        };
        let f2 = Figures::compute(&own, &s);
        assert!(
            (f2.frames_per_segment - 4.0).abs() < 1e-9,
            "the server's own data segments"
        );
        assert!((f2.cpu_us_per_segment - 200.0).abs() < 1e-9);
        assert!((f2.bytes_per_delivery - 150.0).abs() < 1e-9);
        assert!((f.mem_per_conn_bytes - 800.0 * 1024.0 / 100.0).abs() < 1e-9);
        assert_eq!(f.rss_growth_kib, 800);
        assert_eq!(f.violations, 3);
    }

    #[test]
    fn figures_never_divide_by_zero() {
        let f = Figures::compute(&LoadgenSummary::default(), &ServerSamples::default());
        assert_eq!(f.deliveries_per_cpu_s, 0.0);
        assert_eq!(f.frames_per_segment, 0.0);
        assert_eq!(f.mem_per_conn_bytes, 0.0);
    }
}
