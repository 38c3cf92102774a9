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
//! | [`procfs`] | parsers for the `/proc` files sampled | none |
//! | [`figures`] | samples → deliveries/CPU-s, frames/segment, memory/connection | none |
//! | [`peers`] | `--server gateway\|node\|bun`, peer commands, `bench peers setup` | `npm install` |
//! | [`scenario`] | named scenarios → gateway settings and loadgen arguments | none |
//! | [`report`] | result files, Markdown rows, `compare` | none |
//! | [`run`] | binaries, gateway process, sampling, loadgen | processes, files |
//! | [`sys`] | `sysconf(_SC_CLK_TCK)` and SIGTERM (the only `unsafe`) | syscalls |
//!
//! `bench run <scenario> --server node|bun` drives one of the in-memory peer
//! servers of `bench/peers/` (installed by `bench peers setup`) with the same
//! loadgen parameters and the same sampling, for ours ÷ peer ratios with
//! `bench compare`.
//!
//! Not built yet (issue 4): plots, connect-storm,
//! resume-storm, slow-consumers, stepped rates, CPU pinning, micro-benchmarks.

pub mod figures;
pub mod peers;
pub mod procfs;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sys;
