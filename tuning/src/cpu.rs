//! The CPU plan: which cores run shards and which are left to interrupts.
//!
//! Rule (after Seastar's `perftune.py`): on hosts with up to
//! [`MANY_CORES`] online cores every core runs a shard; on larger hosts the
//! first online core is left to interrupts and the kernel's network
//! processing (softirqs), and shards run on the rest. Shards are numbered in
//! core order: shard *i* on the *i*-th planned core.
//!
//! The gateway does not take this plan yet: it spreads its shards over
//! every CPU the process may use, one per physical core first
//! (`gateway/src/server.rs`, `shard_cpus`; `sys::spread_cpus`). Following
//! it means filtering those CPUs to the planned cores (see the crate
//! docs).

use serde::Serialize;

use crate::costs::MANY_CORES;

/// Which cores run shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuPlan {
    /// Online cores found.
    pub online: Vec<usize>,
    /// Cores left to interrupts and the kernel (empty on small hosts).
    pub reserved: Vec<usize>,
    /// Cores that may run shards, in order.
    pub shard_cores: Vec<usize>,
    /// Shards asked for.
    pub shards: usize,
    /// Why the plan looks like this, in one sentence.
    pub reason: String,
}

impl CpuPlan {
    /// Plans `shards` shards (`None`: one per core the plan allows) on the
    /// `online` cores.
    #[must_use]
    pub fn new(online: &[usize], shards: Option<usize>) -> CpuPlan {
        let (reserved, shard_cores, reason) = if online.len() <= MANY_CORES {
            (
                Vec::new(),
                online.to_vec(),
                format!(
                    "{} online cores (at most {MANY_CORES}): every core runs a shard",
                    online.len()
                ),
            )
        } else {
            let (first, rest) = online.split_at(1);
            (
                first.to_vec(),
                rest.to_vec(),
                format!(
                    "{} online cores: core {} is left to interrupts and the kernel's network work",
                    online.len(),
                    first.first().copied().unwrap_or(0)
                ),
            )
        };
        let shards = shards.unwrap_or(shard_cores.len()).max(1);
        CpuPlan {
            online: online.to_vec(),
            reserved,
            shard_cores,
            shards,
            reason,
        }
    }

    /// Cores that would run the asked shards: the first `shards` planned
    /// cores (all of them when there are more shards than cores).
    #[must_use]
    pub fn cores_in_use(&self) -> &[usize] {
        let n = self.shards.min(self.shard_cores.len());
        &self.shard_cores[..n]
    }

    /// More shards than planned cores: some cores would run two.
    #[must_use]
    pub fn oversubscribed(&self) -> bool {
        self.shards > self.shard_cores.len()
    }

    /// The plan in one line, e.g. `2 shards on cores 0-1`.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} shard{} on cores {}",
            self.shards,
            if self.shards == 1 { "" } else { "s" },
            format_cpu_list(self.cores_in_use())
        );
        if !self.reserved.is_empty() {
            s.push_str(&format!(
                "; core {} left to interrupts",
                format_cpu_list(&self.reserved)
            ));
        }
        s
    }
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`). Returns `None` on
/// malformed input.
#[must_use]
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Formats cores in the kernel's list format, ranges collapsed.
#[must_use]
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "(none)".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-2,4,6-7"), Some(vec![0, 1, 2, 4, 6, 7]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 4, 6, 7]), "0-2,4,6-7");
    }

    #[test]
    fn small_hosts_use_every_core() {
        let plan = CpuPlan::new(&[0, 1], None);
        assert_eq!(plan.shards, 2);
        assert!(plan.reserved.is_empty());
        assert_eq!(plan.summary(), "2 shards on cores 0-1");
    }

    #[test]
    fn large_hosts_leave_core_zero_to_interrupts() {
        let online: Vec<usize> = (0..16).collect();
        let plan = CpuPlan::new(&online, None);
        assert_eq!(plan.reserved, vec![0]);
        assert_eq!(plan.shards, 15);
        assert_eq!(
            plan.summary(),
            "15 shards on cores 1-15; core 0 left to interrupts"
        );
        let four = CpuPlan::new(&online, Some(4));
        assert_eq!(four.cores_in_use(), &[1, 2, 3, 4]);
    }

    #[test]
    fn more_shards_than_cores_is_oversubscribed() {
        let plan = CpuPlan::new(&[0, 1], Some(3));
        assert!(plan.oversubscribed());
        assert_eq!(plan.cores_in_use(), &[0, 1]);
    }
}
