//! # tuning — can this host hold N connections, what must change, which settings fit?
//!
//! The gateway is deployed to hold very many mostly idle WebSocket
//! connections. Whether a host can is decided long before the gateway's own
//! code matters: by the open-file limits, the kernel's TCP memory pool, the
//! accept backlog, memory, locked memory for io_uring and whether io_uring
//! works at all. This crate reads those, compares them with what a target
//! needs, and says — per setting — what it found, what is required, and the
//! exact line that fixes it.
//!
//! It follows the check → plan → apply shape of Seastar's `perftune.py`:
//!
//! 1. **check** ([`check()`], [`Report`]): one [`CheckItem`] per setting with
//!    [`Status`] `ok` / `info` / `warn` / `short`, found, required and fixes.
//!    `short` means the target cannot be held (connections past a file limit
//!    are refused, memory runs out, glommio cannot start); `warn` means it
//!    can, but something degrades under load (accept-queue overflow, TCP
//!    memory pressure).
//! 2. **plan** ([`plan()`], [`Plan`]): the sysctls that would be written and
//!    the steps only an operator can take (hard resource limits, `/etc`).
//! 3. **apply** ([`apply()`]): writes the planned sysctls through
//!    `/proc/sys`, or in a dry run (the CLI's default) says what it would
//!    write. It never edits `/etc` and never changes resource limits: a
//!    limit belongs to each process, and the gateway raises its own soft
//!    open-file limit to the hard one at start.
//!
//! ## Sans-IO core
//!
//! The checks are pure: [`check()`] takes a [`HostReadings`] (a plain struct
//! of every value read) and a [`Requirements`] (the target), and returns
//! items. Tests build synthetic readings and assert every message. Only
//! [`read_host`] touches the host (`/proc`, `/sys`, `getrlimit`, an
//! `io_uring_setup` probe), and the few libc calls live in one small module
//! (`sys.rs`), the crate's only `unsafe`, each block with a `SAFETY` note.
//!
//! ## Costs
//!
//! What one connection needs comes from [`costs`], each constant with its
//! source: one descriptor per connection (the gateway's driver); ~4 KiB of
//! kernel memory per idle TCP socket (measured: slab growth over 16,000
//! loopback sockets); one page of the TCP buffer pool per connection with a
//! message in flight (measured from `/proc/net/sockstat`); 1 KiB of gateway
//! memory per idle connection (measured: the bench's peak RSS growth per
//! idle connection, 0.9 KiB at 10,000 and 19,000); glommio's 512 KiB locked-memory
//! floor (read from glommio's source).
//!
//! ## The gateway's preflight
//!
//! The gateway depends on this crate, never the reverse: it fills a
//! [`Requirements`] from its config and calls [`preflight()`] at start:
//!
//! ```no_run
//! let mut req = tuning::Requirements::new(19_488, 2); // effective_max_connections(), nr_shards()
//! req.reserved_fds = 512;                             // Config::reserved_fds
//! match tuning::preflight(&req) {
//!     Ok(report) => {
//!         for warning in report.warnings() {
//!             eprintln!("host warning: {warning}");
//!         }
//!     }
//!     Err(e) if e.is_overridable() => {
//!         // Refuse to start unless the operator asked to override.
//!         eprintln!("{e}");
//!     }
//!     Err(e) => panic!("{e}"),
//! }
//! ```
//!
//! When the maximum of connections is derived from the open-file limit
//! (limit − reserve), the file check passes by construction, so the default
//! configuration starts wherever the rest of the host is sound.
//!
//! ## CPU plan
//!
//! [`CpuPlan`]: on hosts with up to four online cores every core runs a
//! shard; on larger hosts the first core is left to interrupts and the
//! kernel's network work. The gateway does not follow the plan yet (it
//! spreads shards over every CPU the process may use, `sys::spread_cpus`);
//! following it means filtering those CPUs to the planned cores.
//!
//! ## Sweep
//!
//! The checks say whether a host *can* hold a target; [`sweep`] says which
//! gateway settings serve a workload best on it. `tuning sweep <scenario>`
//! runs one `bench run <scenario>` per point of a grid of tunables (shards,
//! store commit limits, outbox budget, buffer sizes), one tunable at a time
//! around the defaults unless `--full` asks for every combination, and
//! reads each result file. It recommends the point with no violation and a
//! delivery p99 within a budget that has the most deliveries per gateway
//! CPU-second (then the most deliveries per second; a ladder of rates
//! counts as its highest step sustained), keeps the defaults when nothing
//! beats them by more than run-to-run noise (`--repeat N` keeps the median
//! of N runs per point and shows the spread), prints the choice
//! as TOML lines for the gateway's config file, and says so plainly when no
//! point qualifies. It runs bench as a program and reads its JSON rather
//! than linking it — the gateway depends on this crate, bench on the
//! gateway — and, like the checks, decides everything in sans-IO modules
//! tested on synthetic results; only `sweep/run.rs` spawns processes.
//!
//! ## Layout
//!
//! - [`costs`]: per-connection, per-shard and process costs; [`Requirements`].
//! - [`readings`]: [`HostReadings`], the plain data the checks take.
//! - [`check`](mod@check): the checks, [`CheckItem`], [`Status`], [`Fix`].
//! - [`report`](mod@report): [`Report`] and [`Capacity`].
//! - [`cpu`]: the CPU plan.
//! - [`plan`](mod@plan) and [`apply`](mod@apply): the changes, and writing them.
//! - [`read`]: fills [`HostReadings`] from the live host.
//! - [`preflight`](mod@preflight): the gateway's start check.
//! - [`sweep`]: `tuning sweep` — the grid, bench result files, the
//!   ranking, the table and plot spec (no I/O), and the driver (`sweep::run`).
//! - `src/main.rs`: the `tuning` command (`check`, `plan`, `apply`, `sweep`).

pub mod apply;
pub mod check;
pub mod costs;
pub mod cpu;
pub mod plan;
pub mod preflight;
pub mod read;
pub mod readings;
pub mod report;
pub mod sweep;
mod sys;
mod units;

pub use apply::{apply, Applied, ApplyError, Mode};
pub use check::{check, CheckItem, Fix, Status};
pub use costs::Requirements;
pub use cpu::CpuPlan;
pub use plan::{plan, ManualStep, Plan, SysctlChange};
pub use preflight::{preflight, preflight_with, PreflightError};
pub use read::{read_host, read_host_at, HostPaths};
pub use readings::{HostReadings, IoUring, Privileges, Rlimit, Triple};
pub use report::{Capacity, Report};
