//! # loadgen — the load generator that checks every delivery
//!
//! Not built yet (see the loadgen issue). What it will be: a thread-per-core
//! (glommio) client that opens many WebSocket connections to a gateway,
//! spreading them over loopback source addresses and worker processes, drives
//! named scenarios (`dm`, `groups`, `room`, `mixed`, `idle`, `churn`) at an
//! open-loop rate, records per-recipient end-to-end latency in HdrHistograms,
//! and verifies per (connection, channel) that seqs arrive contiguous, once
//! and in order — failing loudly when an invariant breaks.
//!
//! It will reuse the gateway's I/O-free wire protocol module,
//! `gateway::protocol` (frame codec, request encoders, server-event decoder).
