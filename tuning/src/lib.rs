//! # tuning — can this host hold N connections, and with which settings?
//!
//! Not built yet (see the tuning issue). What it will be: `tuning check
//! --connections N` reads the host's limits (open files, memlock, sysctls,
//! memory, cores, io_uring) and prints found vs required with the exact fix;
//! `plan`/`apply` (dry run unless `--yes`); a preflight the gateway calls at
//! start; and `sweep`, which runs a bench scenario over a grid of gateway
//! tunables and recommends settings.
