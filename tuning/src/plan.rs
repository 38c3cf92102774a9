//! [`Plan`]: the changes a [`Report`] calls for, split into the sysctls
//! `apply` can write and the steps only an operator can take. Pure: it
//! decides, `apply.rs` writes.

use std::fmt;

use serde::Serialize;

use crate::check::{Fix, Status, SYSCTL_D_FILE};
use crate::costs::Requirements;
use crate::cpu::CpuPlan;
use crate::readings::{HostReadings, Triple};
use crate::report::Report;
use crate::units::count;

/// One sysctl to write through `/proc/sys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SysctlChange {
    /// The check item asking for it.
    pub item: &'static str,
    /// Dotted name, e.g. `net.ipv4.tcp_mem`.
    pub key: String,
    /// Value now (`None` when it could not be read).
    pub from: Option<String>,
    /// Value to write.
    pub to: String,
    /// Why, from the check.
    pub why: String,
}

/// A step this tool cannot take; the options are alternatives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManualStep {
    /// The check item asking for it.
    pub item: &'static str,
    /// Whether the item blocks the target ([`Status::Short`]) or warns.
    pub status: Status,
    /// Why it is needed and why this tool cannot do it.
    pub why: String,
    /// Exact lines, any one of which does it.
    pub options: Vec<String>,
}

/// Everything to change on this host for one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The target.
    pub requirements: Requirements,
    /// The host holds the target already (no short item).
    pub passed: bool,
    /// Sysctls `apply --yes` writes, in check order.
    pub sysctls: Vec<SysctlChange>,
    /// Steps for an operator.
    pub manual: Vec<ManualStep>,
    /// The process may write `/proc/sys` (it is root).
    pub can_write_sysctls: bool,
    /// Which cores would run the shards.
    pub cpu_plan: CpuPlan,
}

/// What apply says about the open-file limit it does not touch.
const OWN_LIMIT_NOTE: &str = "This tool does not change resource limits: a limit belongs to each \
     process (and this one exits); the gateway raises its own soft limit to the hard one at start, \
     so only the hard limit of the process that starts it matters.";

/// Plans the changes for every short or warning item of `report`.
/// Informative items' options are not planned.
#[must_use]
pub fn plan(readings: &HostReadings, report: &Report) -> Plan {
    let mut sysctls: Vec<SysctlChange> = Vec::new();
    let mut manual = Vec::new();
    for item in &report.items {
        if !matches!(item.status, Status::Short | Status::Warn) {
            continue;
        }
        let mut options = Vec::new();
        for fix in &item.fixes {
            match fix {
                Fix::Sysctl { key, value } => {
                    if sysctls.iter().all(|c| &c.key != key) {
                        sysctls.push(SysctlChange {
                            item: item.name,
                            key: key.clone(),
                            from: current(readings, key),
                            to: value.clone(),
                            why: item.message.clone(),
                        });
                    }
                }
                other => options.extend(other.lines()),
            }
        }
        let has_sysctl = item.fixes.iter().any(|f| matches!(f, Fix::Sysctl { .. }));
        if options.is_empty() && has_sysctl {
            continue;
        }
        let mut why = item.message.clone();
        if item.name == "RLIMIT_NOFILE" || item.name == "RLIMIT_MEMLOCK" {
            why.push_str(". ");
            why.push_str(OWN_LIMIT_NOTE);
        }
        manual.push(ManualStep {
            item: item.name,
            status: item.status,
            why,
            options,
        });
    }
    Plan {
        requirements: report.requirements.clone(),
        passed: report.passed,
        sysctls,
        manual,
        can_write_sysctls: readings.privileges.is_root(),
        cpu_plan: report.cpu_plan.clone(),
    }
}

/// The value of a sysctl as read, in `/proc/sys` form.
fn current(r: &HostReadings, key: &str) -> Option<String> {
    let triple = |t: Option<Triple>| t.map(|t| t.sysctl_value());
    match key {
        "fs.nr_open" => r.nr_open.map(|v| v.to_string()),
        "fs.file-max" => r.file_max.map(|v| v.to_string()),
        "net.core.somaxconn" => r.somaxconn.map(|v| v.to_string()),
        "net.ipv4.tcp_mem" => triple(r.tcp_mem),
        "net.ipv4.tcp_rmem" => triple(r.tcp_rmem),
        "net.ipv4.tcp_wmem" => triple(r.tcp_wmem),
        "net.ipv4.ip_local_port_range" => r.ip_local_port_range.map(|(a, b)| format!("{a} {b}")),
        "kernel.io_uring_disabled" => r.io_uring_disabled.map(|v| v.to_string()),
        _ => None,
    }
}

impl Plan {
    /// The lines of [`SYSCTL_D_FILE`] that make the sysctls persistent.
    #[must_use]
    pub fn sysctl_d_lines(&self) -> Vec<String> {
        self.sysctls
            .iter()
            .map(|c| format!("{} = {}", c.key, c.to))
            .collect()
    }

    /// Nothing to change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sysctls.is_empty() && self.manual.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = &self.requirements;
        writeln!(
            f,
            "plan for {} connections on {} shards",
            count(req.connections),
            req.shards
        )?;
        if self.is_empty() {
            writeln!(f, "nothing to change: the host holds this target as it is")?;
        }
        if !self.sysctls.is_empty() {
            writeln!(
                f,
                "sysctls `tuning apply --yes` writes through /proc/sys (in force now, lost at \
                 reboot){}:",
                if self.can_write_sysctls {
                    ""
                } else {
                    " — needs root, which this process is not"
                }
            )?;
            for c in &self.sysctls {
                writeln!(
                    f,
                    "  {}: {} → {}",
                    c.key,
                    c.from.as_deref().unwrap_or("unknown"),
                    c.to
                )?;
                if !c.why.is_empty() {
                    writeln!(f, "      why: {}", c.why)?;
                }
            }
            writeln!(
                f,
                "to keep them across reboots (apply does not write /etc), put in {SYSCTL_D_FILE} \
                 and run `sysctl --system`:"
            )?;
            for line in self.sysctl_d_lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if !self.manual.is_empty() {
            writeln!(f, "what apply cannot do (an operator must):")?;
            for step in &self.manual {
                writeln!(f, "  {} ({}): {}", step.item, step.status, step.why)?;
                if step.options.len() > 1 {
                    writeln!(f, "      any one of:")?;
                }
                for option in &step.options {
                    writeln!(f, "      - {option}")?;
                }
            }
        }
        write!(
            f,
            "cpu plan: {} ({})",
            self.cpu_plan.summary(),
            self.cpu_plan.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::this_host as host;

    #[test]
    fn a_million_plans_sysctls_and_a_manual_fd_limit() {
        let r = host();
        let report = Report::new(&r, &Requirements::new(1_000_000, 2));
        let p = plan(&r, &report);
        let keys: Vec<&str> = p.sysctls.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]
        );
        assert_eq!(p.sysctls[0].from.as_deref(), Some("287898 383866 575796"));
        assert_eq!(p.sysctls[0].to, "287898 1000000 1500000");
        assert_eq!(p.manual.len(), 1);
        assert_eq!(p.manual[0].item, "RLIMIT_NOFILE");
        assert!(p.manual[0]
            .why
            .contains("This tool does not change resource limits"));
        assert!(p
            .sysctl_d_lines()
            .contains(&"net.ipv4.tcp_mem = 287898 1000000 1500000".to_string()));
    }

    #[test]
    fn a_target_that_fits_plans_nothing() {
        let r = host();
        let report = Report::new(&r, &Requirements::new(19_000, 2));
        let p = plan(&r, &report);
        assert!(p.is_empty(), "{p:#?}");
        assert!(p
            .to_string()
            .contains("nothing to change: the host holds this target as it is"));
    }
}
