//! `bench micro`: micro-benchmarks of the hot path, with `std::time::Instant`
//! and no benchmark framework.
//!
//! Each case runs a closure `iters` times per *run*, several runs in a row
//! after one warm-up run, and reports the **median** ns per operation over
//! the runs (plus the fastest and slowest run, to show the spread).
//!
//! | case | what one operation is |
//! |---|---|
//! | `decode-send` | `gateway::protocol::decode_request` of a 64-byte-text `send` |
//! | `encode-msg-frame` | `gateway::protocol::response::msg`: one `msg` event as a WebSocket frame |
//! | `fanout-10k` | one committed batch (8 messages) queued to 10,000 live local outboxes, as a shard's `on_batch` does (`gateway::bench_support`) |
//! | `store-append-{fsync,buffered}` | one `Store::append` of 64 messages to one channel of a fresh `EmbeddedStore` |
//!
//! The store cases write to a temporary directory (`$TMPDIR`): their figures
//! are those of that file system.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use storage::{
    ChannelAppend, Durability, EmbeddedConfig, EmbeddedStore, MessageKind, NewMessage, Store,
};

/// One case's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MicroResult {
    /// Case name.
    pub name: String,
    /// What one operation is.
    pub what: String,
    /// Operations per run.
    pub iters: u64,
    /// Runs measured (after one warm-up run).
    pub runs: usize,
    /// Median over the runs, ns per operation.
    pub median_ns: f64,
    /// Fastest run, ns per operation.
    pub min_ns: f64,
    /// Slowest run, ns per operation.
    pub max_ns: f64,
    /// Units of work per operation (deliveries for fan-out, messages for
    /// an append), to give a per-unit cost.
    pub units_per_op: u64,
}

impl MicroResult {
    /// Median ns per unit of work.
    #[must_use]
    pub fn ns_per_unit(&self) -> f64 {
        self.median_ns / self.units_per_op.max(1) as f64
    }
}

/// `results/micro-<timestamp>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MicroFile {
    /// Unix time, s.
    pub timestamp: u64,
    /// `--quick`.
    pub quick: bool,
    /// Where it ran.
    pub machine: crate::report::Machine,
    /// Built with debug assertions (a debug build: not representative).
    pub debug_build: bool,
    /// One entry per case.
    pub results: Vec<MicroResult>,
}

/// The median of `xs` (mean of the middle two for an even count; 0 when
/// empty).
#[must_use]
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Summarises per-run ns/op figures.
#[must_use]
pub fn summarise(
    name: &str,
    what: &str,
    iters: u64,
    units_per_op: u64,
    per_run_ns: &[f64],
) -> MicroResult {
    MicroResult {
        name: name.into(),
        what: what.into(),
        iters,
        runs: per_run_ns.len(),
        median_ns: median(per_run_ns),
        min_ns: per_run_ns.iter().copied().fold(f64::INFINITY, f64::min),
        max_ns: per_run_ns.iter().copied().fold(0.0, f64::max),
        units_per_op,
    }
}

/// Times `op` over `runs` runs of `iters` calls (after one warm-up run);
/// `setup` runs before each run, outside the timing. Returns ns/op per run.
fn time_runs<S>(
    runs: usize,
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(&mut S, u64),
) -> Vec<f64> {
    let mut out = Vec::with_capacity(runs);
    for r in 0..=runs {
        let mut state = setup();
        let t = Instant::now();
        for i in 0..iters {
            op(&mut state, i);
        }
        let ns = t.elapsed().as_nanos() as f64 / iters.max(1) as f64;
        if r > 0 {
            out.push(ns);
        }
    }
    out
}

/// [`time_runs`] of a call that needs no state.
fn time_calls(runs: usize, iters: u64, mut op: impl FnMut()) -> Vec<f64> {
    time_runs(runs, iters, || (), |(), _| op())
}

/// The text of a `send` as a client writes it (64 bytes of text).
fn send_text() -> String {
    format!(
        r#"{{"type":"send","id":17,"channel":"room:lobby","client_msg_id":"m12345","text":"{}"}}"#,
        "x".repeat(64)
    )
}

/// The text of one server frame, read by the protocol's own decoder in the
/// client role.
fn msg_frame_text(frame: &[u8]) -> anyhow::Result<String> {
    use gateway::protocol::{Role, WsDecoder, WsEvent};
    let mut text = None;
    WsDecoder::new(Role::Client, usize::MAX)
        .feed(frame, &mut |e| {
            if let WsEvent::Text(t) = e {
                text = Some(t.to_owned());
            }
        })
        .map_err(|e| anyhow::anyhow!("the benchmark's msg frame does not decode: {e:?}"))?;
    text.ok_or_else(|| anyhow::anyhow!("the benchmark's msg frame is not a text frame"))
}

/// Runs every case. `quick`: fewer iterations and runs (seconds in all).
pub fn run_all(quick: bool) -> anyhow::Result<Vec<MicroResult>> {
    let runs = if quick { 3 } else { 7 };
    let scale = |full: u64, q: u64| if quick { q } else { full };
    let mut out = Vec::new();

    // decode-send
    let text = send_text();
    let limits = gateway::protocol::Limits::default();
    gateway::protocol::decode_request(&text, &limits)
        .map_err(|e| anyhow::anyhow!("the benchmark's send does not decode: {}", e.1))?;
    let iters = scale(1_000_000, 100_000);
    let ns = time_calls(runs, iters, || {
        let _ = black_box(gateway::protocol::decode_request(black_box(&text), &limits));
    });
    out.push(summarise(
        "decode-send",
        "decode_request of a send with 64 bytes of text",
        iters,
        1,
        &ns,
    ));

    // encode-msg-frame
    let stored = storage::StoredMessage {
        seq: 123_456,
        from: "alice".into(),
        device: "laptop".into(),
        client_msg_id: "m12345".into(),
        kind: MessageKind::Text,
        text: "x".repeat(64),
        target: None,
        media: None,
        ts: 1_700_000_000_000,
        edited: false,
        deleted: false,
    };
    let view = gateway::protocol::MsgView::from_stored(&stored);
    let iters = scale(1_000_000, 100_000);
    let ns = time_runs(
        runs,
        iters,
        || Vec::with_capacity(512),
        |buf: &mut Vec<u8>, _| {
            buf.clear();
            gateway::protocol::response::msg(buf, black_box("room:lobby"), &view);
            black_box(&buf);
        },
    );
    out.push(summarise(
        "encode-msg-frame",
        "one msg event (64 bytes of text) encoded as a WebSocket frame",
        iters,
        1,
        &ns,
    ));

    // decode-msg-{scan,serde}: what loadgen does with every frame it reads
    let mut frame = Vec::new();
    gateway::protocol::response::msg(&mut frame, "room:lobby", &view);
    let text = msg_frame_text(&frame)?;
    for (name, what, serde_only) in [
        (
            "decode-msg-scan",
            "decode_msg_ref of one msg event (64 bytes of text): the client's fast path",
            false,
        ),
        (
            "decode-msg-serde",
            "the same decode by serde alone (decode_msg_ref_serde)",
            true,
        ),
    ] {
        let iters = scale(1_000_000, 100_000);
        let ns = time_calls(runs, iters, || {
            let t = black_box(text.as_str());
            let m = if serde_only {
                gateway::protocol::client::decode_msg_ref_serde(t)
            } else {
                gateway::protocol::decode_msg_ref(t)
            };
            black_box(m.map(|r| r.map(|m| m.seq)));
        });
        out.push(summarise(name, what, iters, 1, &ns));
    }

    // ws-read-frames: a client's WebSocket decoding of one write of a big
    // room (20 msg frames back to back), as loadgen reads every socket
    let burst: Vec<u8> = frame.repeat(20);
    let mut texts = 0;
    gateway::protocol::WsDecoder::new(gateway::protocol::Role::Client, 1 << 20)
        .feed(&burst, &mut |e| {
            texts += usize::from(matches!(e, gateway::protocol::WsEvent::Text(_)));
        })
        .map_err(|e| anyhow::anyhow!("the benchmark's burst does not decode: {e:?}"))?;
    anyhow::ensure!(
        texts == 20,
        "the benchmark's burst gave {texts} texts, not 20"
    );
    let iters = scale(200_000, 20_000);
    let ns = time_runs(
        runs,
        iters,
        || gateway::protocol::WsDecoder::new(gateway::protocol::Role::Client, 1 << 20),
        |dec, _| {
            let mut n = 0usize;
            let r = dec.feed(black_box(&burst), &mut |e| {
                if let gateway::protocol::WsEvent::Text(t) = e {
                    n += t.len();
                }
            });
            black_box((r.is_ok(), n));
        },
    );
    out.push(summarise(
        "ws-read-frames",
        "WsDecoder (client role) reading 20 msg frames of one write",
        iters,
        20,
        &ns,
    ));

    // fanout-10k
    let members = 10_000;
    let mut fixture = gateway::bench_support::FanoutFixture::new(members, 8, 64);
    let iters = scale(50, 10);
    let mut per_run = Vec::with_capacity(runs);
    for r in 0..=runs {
        let mut total = 0u128;
        for _ in 0..iters {
            fixture.reset();
            let t = Instant::now();
            let n = fixture.fan_out();
            total += t.elapsed().as_nanos();
            if n != members as u64 * 8 {
                anyhow::bail!("fan-out queued {n} deliveries, not {}", members * 8);
            }
        }
        if r > 0 {
            per_run.push(total as f64 / iters as f64);
        }
    }
    out.push(summarise(
        "fanout-10k",
        "a batch of 8 msg frames (64-byte texts) queued to 10,000 live outboxes",
        iters,
        members as u64 * 8,
        &per_run,
    ));

    // store-append-{fsync,buffered}
    for (durability, name, iters) in [
        (Durability::Fsync, "store-append-fsync", scale(100, 20)),
        (
            Durability::Buffered,
            "store-append-buffered",
            scale(1000, 100),
        ),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("bench-micro-store-")
            .tempdir()
            .context("creating a temporary directory for the store")?;
        let mut cfg = EmbeddedConfig::new(dir.path().join("data"));
        cfg.durability = durability;
        let store = EmbeddedStore::open(&cfg).context("opening the embedded store")?;
        let mut per_run = Vec::with_capacity(runs);
        let mut next_id = 0u64;
        for r in 0..=runs {
            // Build every batch of the run first: only the appends are timed.
            let batches: Vec<Vec<ChannelAppend>> = (0..iters)
                .map(|_| {
                    vec![ChannelAppend {
                        channel: "room:bench".into(),
                        messages: (0..64)
                            .map(|_| {
                                next_id += 1;
                                NewMessage {
                                    from: "alice".into(),
                                    device: "laptop".into(),
                                    client_msg_id: format!("m{next_id}"),
                                    kind: MessageKind::Text,
                                    text: "x".repeat(64),
                                    target: None,
                                    media: None,
                                    ts: 1_700_000_000_000,
                                }
                            })
                            .collect(),
                    }]
                })
                .collect();
            let t = Instant::now();
            for b in &batches {
                store.append(b).context("append")?;
            }
            let ns = t.elapsed().as_nanos() as f64 / iters as f64;
            if r > 0 {
                per_run.push(ns);
            }
        }
        out.push(summarise(
            name,
            "Store::append of 64 messages (64-byte texts) to one channel",
            iters,
            64,
            &per_run,
        ));
    }
    Ok(out)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The Markdown table of a micro run.
#[must_use]
pub fn markdown(results: &[MicroResult]) -> String {
    let mut t = String::from(
        "| case | median / op | fastest run | slowest run | units / op | median / unit | runs × iterations | what |\n\
         |---|---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in results {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} × {} | {} |",
            r.name,
            fmt_ns(r.median_ns),
            fmt_ns(r.min_ns),
            fmt_ns(r.max_ns),
            r.units_per_op,
            fmt_ns(r.ns_per_unit()),
            r.runs,
            r.iters,
            r.what
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn summaries_keep_the_spread_and_the_unit_cost() {
        let r = summarise("x", "y", 10, 4, &[100.0, 300.0, 200.0]);
        assert_eq!((r.median_ns, r.min_ns, r.max_ns), (200.0, 100.0, 300.0));
        assert_eq!(r.runs, 3);
        assert_eq!(r.ns_per_unit(), 50.0);
        let t = markdown(&[r]);
        assert!(
            t.contains("| x | 200.0 ns | 100.0 ns | 300.0 ns | 4 | 50.0 ns | 3 × 10 | y |"),
            "{t}"
        );
    }

    #[test]
    fn timing_skips_the_warm_up_run() {
        let mut calls = 0;
        let ns = time_runs(3, 5, || (), |_, _| calls += 1);
        assert_eq!(ns.len(), 3);
        assert_eq!(calls, 20);
    }

    #[test]
    fn the_benchmarked_send_is_a_valid_request() {
        let text = send_text();
        let env = gateway::protocol::decode_request(&text, &gateway::protocol::Limits::default())
            .expect("decodes");
        assert!(matches!(env.request, gateway::protocol::Request::Send(_)));
    }
}
