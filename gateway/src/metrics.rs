//! Prometheus text exposition of the gateway's counters and of the process
//! (`GET /metrics`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use chat_core::stats::{Detail, StatsSnapshot};

/// Renders the histograms and per-shard gauges.
pub(crate) fn render_detail(d: &Detail, nr_shards: usize, out: &mut String) {
    d.commit_ms.render(
        out,
        "gateway_commit_latency_ms",
        "Store commit latency per owner commit, milliseconds.",
    );
    d.batch_messages.render(
        out,
        "gateway_commit_batch_messages",
        "Messages per owner commit (group commit size).",
    );
    let _ = writeln!(
        out,
        "# HELP gateway_shard_connections Open WebSocket connections per shard."
    );
    let _ = writeln!(out, "# TYPE gateway_shard_connections gauge");
    for (i, c) in d.shard_connections.iter().take(nr_shards).enumerate() {
        let _ = writeln!(
            out,
            "gateway_shard_connections{{shard=\"{i}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
}

/// Renders the process figures (resident memory, CPU time, file
/// descriptors, start time) under the names Prometheus clients use.
pub(crate) fn render_process(p: &crate::sys::ProcessStats, out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    };
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.rss_bytes.map(|v| v.to_string()),
    );
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.map(|v| format!("{v:.2}")),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.map(|v| v.to_string()),
    );
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors (the soft limit).",
        p.max_fds.map(|v| v.to_string()),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        p.start_time_seconds.map(|v| format!("{v:.2}")),
    );
}

/// Renders the counters in the Prometheus text format (version 0.0.4).
pub(crate) fn render(s: &StatsSnapshot) -> String {
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "gateway_connections",
        "gauge",
        "Open connections (WebSocket and HTTP).",
        s.connections.to_string(),
    );
    metric(
        "gateway_connections_refused_total",
        "counter",
        "Connections refused at the connection maximum.",
        s.refused.to_string(),
    );
    metric(
        "gateway_accept_errors_total",
        "counter",
        "Failed accepts (EMFILE/ENFILE and others).",
        s.accept_errors.to_string(),
    );
    metric(
        "gateway_ring_upgrades_total",
        "counter",
        "WebSocket upgrades accepted and answered on a shard's socket ring (not through the listener's HTTP path).",
        s.ring_upgrades.to_string(),
    );
    metric(
        "gateway_presence_fanouts_total",
        "counter",
        "Presence transitions whose contacts were looked up in the store.",
        s.presence_fanouts.to_string(),
    );
    metric(
        "gateway_presence_trips_total",
        "counter",
        "Trips to the store threads for presence fan-outs (each carries several of those gathered in 5 ms).",
        s.presence_trips.to_string(),
    );
    metric(
        "gateway_messages_received_total",
        "counter",
        "Sends, edits and deletes received from clients (before checks at the owner).",
        s.received.to_string(),
    );
    metric(
        "gateway_messages_committed_total",
        "counter",
        "Messages durably committed.",
        s.committed.to_string(),
    );
    metric(
        "gateway_commits_total",
        "counter",
        "Group commits issued by owner shards.",
        s.commits.to_string(),
    );
    metric(
        "gateway_deliveries_total",
        "counter",
        "Message frames queued to connections (live and catch-up).",
        s.deliveries.to_string(),
    );
    metric(
        "gateway_auth_failures_total",
        "counter",
        "Upgrades refused for a missing, bad or expired token.",
        s.auth_failures.to_string(),
    );
    metric(
        "gateway_origin_refused_total",
        "counter",
        "Browser requests and upgrades refused for their Origin (allowed_origins).",
        s.origin_refused.to_string(),
    );
    metric(
        "gateway_write_stalls_total",
        "counter",
        "Connections cut off because the peer took no bytes for 2 x heartbeat.",
        s.write_stalls.to_string(),
    );
    metric(
        "gateway_push_sent_total",
        "counter",
        "Push jobs delivered to the webhook.",
        s.push_sent.to_string(),
    );
    metric(
        "gateway_push_dead_letters_total",
        "counter",
        "Push jobs written to the dead-letter file after the last retry.",
        s.push_dead.to_string(),
    );
    metric(
        "gateway_slow_consumer_events_total",
        "counter",
        "Times a connection passed its outbox budget and switched to catch-up.",
        s.slow_consumer_events.to_string(),
    );
    metric(
        "gateway_outbox_max_bytes",
        "gauge",
        "Largest outbox seen on any connection.",
        s.max_outbox_bytes.to_string(),
    );
    metric(
        "gateway_mesh_overflows_total",
        "counter",
        "Batches replaced by head notices because a shard queue was full.",
        s.mesh_overflows.to_string(),
    );
    metric(
        "gateway_digest_deliveries_total",
        "counter",
        "Deliveries to members that joined with mode digest (each carries all that accumulated).",
        s.digest_deliveries.to_string(),
    );
    metric(
        "gateway_head_events_total",
        "counter",
        "head events sent to members that joined with mode counts.",
        s.head_events.to_string(),
    );
    out
}
