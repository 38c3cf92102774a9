//! `tuning sweep <scenario>`: a bench scenario run over a grid of gateway
//! tunables, a table, a plot and a recommendation.
//!
//! Each point is one `bench run <scenario>` with its tunables passed as
//! `--shards N`, `--durability D` and `--set KEY=VALUE` (any other gateway
//! config field). The sweep runs bench as a program and reads its result
//! files: it cannot link the bench crate, because the gateway depends on
//! this crate and bench on the gateway.
//!
//! By default the grid is varied **one tunable at a time** around the
//! gateway's defaults ([`Mode::OneAtATime`]): the defaults first, then each
//! value alone, 11 runs on a 2-core host ([`default_grid`]). Tunables on a
//! host like this one interact less than run-to-run noise, and the full
//! product of the default grid is 288 runs; `--full` runs it
//! ([`Mode::Full`]) for the grids where interactions matter.
//!
//! | module | what | I/O |
//! |---|---|---|
//! | [`grid`] | `--grid KEY=V1,V2` parsing, the default grid, points, `bench run` arguments | none |
//! | [`outcome`] | bench's result JSON → the figures of one point | none |
//! | [`recommend`](mod@recommend) | which point qualifies and which is best | none |
//! | [`table`] | the table, the verdict, TOML lines, the plot spec, the sweep file | none |
//! | [`run`] | spawns `bench run` and `bench plot`, writes the files | processes, files |
//!
//! The recommendation rule is in [`recommend`](mod@recommend): no violation,
//! p99 within the budget, then the most deliveries per CPU-second, then the
//! most deliveries per second; the defaults stay unless the best beats them
//! by more than the minimum gain. A stepped scenario (`room-fanout`'s ladder
//! of rates) counts as the highest step a point sustained
//! ([`outcome`]); `--repeat N` runs each point N times and keeps the median
//! run ([`outcome::combine`]).

pub mod grid;
pub mod outcome;
pub mod recommend;
pub mod run;
pub mod table;

use std::path::PathBuf;

pub use grid::{default_grid, BenchOptions, Grid, Mode, Point, Setting};
pub use outcome::{Measured, Outcome};
pub use recommend::{recommend, Criteria, Objective, Recommendation, Row};
pub use run::{default_bench_bin, Sweep};
pub use table::SweepFile;

/// Why a sweep could not run. Failures of single points are not errors:
/// they become rows ([`Outcome::Failed`]) and the sweep goes on.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A `--grid` argument does not parse.
    #[error("--grid {arg:?}: {reason}")]
    Grid {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The scenario or the options cannot be swept.
    #[error("{0}")]
    Scenario(String),
    /// The bench binary is not there.
    #[error(
        "no bench binary at {}: build it with `cargo build --release -p bench` \
         or pass --bench-bin",
        .0.display()
    )]
    BenchMissing(PathBuf),
    /// A sweep file or directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A sweep file could not be encoded.
    #[error("cannot encode JSON: {0}")]
    Encode(String),
}
