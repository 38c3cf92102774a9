//! [`Report`]: the checks of one host against one target, with the CPU plan
//! and how many connections the host holds as it is.

use std::fmt;

use serde::Serialize;

use crate::check::{check, cpu_plan, CheckItem, Status};
use crate::costs::{Requirements, FDS_PER_CONNECTION};
use crate::cpu::CpuPlan;
use crate::readings::HostReadings;
use crate::units::{bytes, count};

/// How many connections the host holds as it is, and which setting bounds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Connections that fit (`u64::MAX` when nothing bounding was read).
    pub connections: u64,
    /// The setting that bounds them (`RLIMIT_NOFILE`, `fs.nr_open`,
    /// `fs.file-max`, `memory`), or `none known`.
    pub bound: &'static str,
}

impl Capacity {
    /// The smallest bound among the open-file limits and memory (all of
    /// `MemAvailable`), each after the fixed costs in `req`.
    #[must_use]
    pub fn of(r: &HostReadings, req: &Requirements) -> Capacity {
        let per_fd = |limit: u64| limit.saturating_sub(req.reserved_fds) / FDS_PER_CONNECTION;
        let candidates = [
            ("RLIMIT_NOFILE", r.nofile.map(|l| per_fd(l.hard))),
            ("fs.nr_open", r.nr_open.map(per_fd)),
            ("fs.file-max", r.file_max.map(per_fd)),
            (
                "memory",
                r.mem_available_bytes.map(|a| {
                    a.saturating_sub(req.fixed_bytes()) / req.bytes_per_connection().max(1)
                }),
            ),
        ];
        candidates
            .into_iter()
            .filter_map(|(bound, n)| n.map(|connections| Capacity { connections, bound }))
            .min_by_key(|c| c.connections)
            .unwrap_or(Capacity {
                connections: u64::MAX,
                bound: "none known",
            })
    }
}

/// The host checked against one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// What was asked.
    pub requirements: Requirements,
    /// No item is [`Status::Short`]: the host can hold the connections.
    pub passed: bool,
    /// One item per setting (see [`check`]).
    pub items: Vec<CheckItem>,
    /// Which cores would run the shards.
    pub cpu_plan: CpuPlan,
    /// How many connections the host holds as it is.
    pub capacity: Capacity,
}

impl Report {
    /// Checks `readings` against `req`.
    #[must_use]
    pub fn new(readings: &HostReadings, req: &Requirements) -> Report {
        let items = check(readings, req);
        Report {
            requirements: req.clone(),
            passed: items.iter().all(|i| i.status != Status::Short),
            items,
            cpu_plan: cpu_plan(readings, Some(req.shards)),
            capacity: Capacity::of(readings, req),
        }
    }

    /// Items that block the target.
    pub fn short_items(&self) -> impl Iterator<Item = &CheckItem> {
        self.items.iter().filter(|i| i.status == Status::Short)
    }

    /// Items worth a warning at start (degrade under load, or unread).
    pub fn warnings(&self) -> impl Iterator<Item = &CheckItem> {
        self.items.iter().filter(|i| i.status == Status::Warn)
    }

    /// The item with this name, if checked.
    #[must_use]
    pub fn item(&self, name: &str) -> Option<&CheckItem> {
        self.items.iter().find(|i| i.name == name)
    }

    /// The closing line: pass, or which items block the target.
    #[must_use]
    pub fn verdict(&self) -> String {
        let req = &self.requirements;
        let target = format!(
            "{} connections on {} shard{}",
            count(req.connections),
            req.shards,
            if req.shards == 1 { "" } else { "s" }
        );
        let warnings = self.warnings().count();
        let warned = if warnings == 0 {
            String::new()
        } else {
            format!(
                " ({warnings} warning{})",
                if warnings == 1 { "" } else { "s" }
            )
        };
        if self.passed {
            format!("PASS: this host can hold {target}{warned}")
        } else {
            let names: Vec<&str> = self.short_items().map(|i| i.name).collect();
            format!(
                "SHORT: this host cannot hold {target}; blocked by {}{warned}",
                names.join(", ")
            )
        }
    }
}

impl fmt::Display for Report {
    /// The target, one block per item, then the CPU plan, the capacity and
    /// the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = &self.requirements;
        writeln!(
            f,
            "check: {} connections on {} shards ({} open files, {} of memory)",
            count(req.connections),
            req.shards,
            count(req.fds()),
            bytes(req.memory_bytes())
        )?;
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        writeln!(
            f,
            "cpu plan: {} ({})",
            self.cpu_plan.summary(),
            self.cpu_plan.reason
        )?;
        writeln!(
            f,
            "capacity as the host is now: {} connections (bound by {})",
            count(self.capacity.connections),
            self.capacity.bound
        )?;
        write!(f, "{}", self.verdict())
    }
}
