//! # bench — end-to-end scenarios and reports
//!
//! `bench run <scenario>` starts a gateway (release by default) on a
//! temporary data directory, drives it with `loadgen --json --quiet`,
//! samples the gateway's CPU time (`/proc/<pid>/stat`), RSS
//! (`/proc/<pid>/status`) and the host's TCP segments sent
//! (`/proc/net/snmp`), and writes `results/<scenario>-<timestamp>.json` and
//! a Markdown row per run. `bench compare a.json b.json` prints ratios of the
//! headline figures. Figures live in `docs/benchmarks.md`.
//!
//! | module | what | I/O |
//! |---|---|---|
//! | [`procfs`] | parsers for the `/proc` files sampled and the gateway's `/metrics` | none |
//! | [`figures`] | samples → deliveries/CPU-s, frames/segment, memory/connection | none |
//! | [`peers`] | `--server gateway\|node\|bun`, peer commands, `bench peers setup` | `npm install` |
//! | [`scenario`] | named scenarios → gateway settings and loadgen arguments; the rate ladder | none |
//! | [`settings`] | `--set KEY=VALUE` → the gateway's `--config` TOML | none |
//! | [`report`] | result files, Markdown rows and notes, `compare` | none |
//! | [`curves`] | when a ladder stops; charts of one result's steps or of several systems | none |
//! | [`plot`] | chart spec → SVG line chart (`bench plot`) | none |
//! | [`soak`] | a soak's runs → RSS slope, fds, CPU, abusers' refusals, p99 with vs without abusers; its charts | none |
//! | [`run`] | binaries, server process, pinning, sampling, loadgen | processes, files |
//! | [`micro`] | `bench micro`: hot-path micro-benchmarks (median ns/op) | a temporary store |
//! | [`wake`] | `bench wake`: CPU and wall time of a park/wake round trip — glommio, threads, bare io_uring | threads, io_uring |
//! | [`sys`] | `sysconf(_SC_CLK_TCK)`, `getrusage`, SIGTERM, CPU affinity (with `wake`, the only `unsafe`) | syscalls |
//!
//! `bench run <scenario> --server node|bun` drives one of the in-memory peer
//! servers of `bench/peers/` (installed by `bench peers setup`) with the same
//! loadgen parameters and the same sampling, for ours ÷ peer ratios with
//! `bench compare`.
//!
//! ## Options that shape a run
//!
//! - `--set KEY=VALUE` (repeatable, gateway only): config overrides written
//!   to a TOML file in the run's temporary directory and passed as
//!   `--config`; recorded as `settings` in the result file and each run's
//!   spec, and in the Markdown row (`tuning sweep` relies on both names).
//! - `--mode live|digest|counts` (gateway only): the audience tier the
//!   rooms' receivers join with (loadgen `--mode`; senders stay `live`),
//!   recorded as `mode` in each run's spec. The checker still holds
//!   `digest` receivers to every message once in order, and `counts`
//!   receivers to no message and `head` events reaching the last acked seq.
//! - `--pin`: server on CPU 0, loadgen on CPU 1 (`taskset -c`, or
//!   `sched_setaffinity` without it); the result records the method and the
//!   CPUs the server's threads were allowed on.
//! - `room-fanout` is **stepped**: it runs its ladder of publish rates (or
//!   `--steps R1,R2,…`), one fresh server per step, stops after the first
//!   step whose delivery p99 passes 50 ms (`--stop-p99-ms` for big rooms),
//!   writes one result file with every
//!   step and two SVGs next to it (`…-latency.svg`: p50/p99/p99.9 vs offered
//!   rate; `…-deliveries.svg`). `--rate R` alone runs one step.
//!   `small-rooms --steps R1,R2,…` runs the same kind of ladder (its
//!   highest rate within `--stop-p99-ms 10` is issue 14's figure).
//!   `bench plot-results a.json b.json … --out DIR` draws several systems'
//!   curves on one chart each (p99, deliveries/s, memory per connection).
//! - `bench plot SPEC.json --out FILE.svg` renders any chart spec (the
//!   format is in [`plot`]).
//! - `soak` runs twice (without, then with abusers; 30 min each, `--quick`
//!   2, `--duration` overrides), samples the gateway every 5 s (RSS, fds,
//!   CPU: each run's `timeline`), adds a `soak` summary to the result file
//!   ([`soak`]) and draws `…-rss.svg`, `…-p99.svg` and `…-fds.svg`.
//!
//! `bench/suite.sh` runs the whole set behind `docs/benchmarks.md`.
//!
//! Not built yet: repeated runs and variance.

pub mod curves;
pub mod figures;
pub mod micro;
pub mod peers;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod run;
pub mod scenario;
pub mod settings;
pub mod soak;
pub mod sys;
pub mod wake;
