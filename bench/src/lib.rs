//! # bench — end-to-end scenarios and reports
//!
//! Not built yet (see the bench issue). What it will be: `bench run
//! <scenario>` starts a release gateway on a temporary data directory, drives
//! it with `loadgen`, samples the server's CPU time, RSS and TCP segments, and
//! writes JSON, Markdown and plots, side by side with peer servers (Bun, Node
//! `ws`) driven by the same load generator. Figures live in
//! `docs/benchmarks.md` with the command that produced each.
