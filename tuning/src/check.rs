//! The checks: pure functions from [`HostReadings`] and [`Requirements`] to
//! one [`CheckItem`] per host setting, each with found, required and the
//! exact fix.
//!
//! A status says what happens at the target:
//!
//! - [`Status::Short`]: the host cannot hold the connections (connections
//!   past a file limit are refused, memory runs out, glommio cannot start).
//!   The preflight fails on these.
//! - [`Status::Warn`]: the connections fit, but something degrades under
//!   load (accept-queue overflow, TCP memory pressure) or could not be read.
//! - [`Status::Info`]: informative, nothing to meet.
//! - [`Status::Ok`]: meets the requirement.

use std::fmt;

use serde::Serialize;

use crate::costs::{
    Requirements, FDS_PER_CONNECTION, FILE_MAX_HEADROOM, MEMORY_WARN_PERCENT,
    RING_MEMLOCK_BYTES_PER_SHARD, SOCKET_BUFFER_WARN_PERCENT, TCP_MEM_PAGES_PER_BUSY_CONNECTION,
};
use crate::cpu::{format_cpu_list, CpuPlan};
use crate::readings::{HostReadings, IoUring, Triple};
use crate::units::{bytes, count, div_ceil};

/// File the printed sysctl fixes persist to.
pub const SYSCTL_D_FILE: &str = "/etc/sysctl.d/90-gateway.conf";

/// File the printed resource-limit fixes go to (pam_limits; read at the
/// next login session, not by systemd services).
pub const LIMITS_D_FILE: &str = "/etc/security/limits.d/90-gateway.conf";

/// How an item stands against the requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Meets the requirement.
    Ok,
    /// Informative; nothing to meet.
    Info,
    /// The connections fit, but something degrades under load, or the value
    /// could not be read.
    Warn,
    /// The host cannot hold the connections until this is fixed.
    Short,
}

impl Status {
    /// The label printed at the start of the item's line.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Short => "short",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One way to fix an item, rendered as exact lines by [`Fix::lines`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fix {
    /// Set a sysctl now (`sysctl -w`, what `apply` does through `/proc/sys`)
    /// and persistently (a line in [`SYSCTL_D_FILE`]).
    Sysctl {
        /// Dotted name, e.g. `fs.nr_open`.
        key: String,
        /// Value as written to `/proc/sys`.
        value: String,
    },
    /// A pam_limits line for [`LIMITS_D_FILE`] setting soft and hard (`-`).
    LimitsConf {
        /// `nofile` or `memlock`.
        item: String,
        /// Value in limits.conf's unit (files; KiB for `memlock`).
        value: u64,
    },
    /// A directive for the `[Service]` section of the gateway's systemd unit.
    Systemd {
        /// e.g. `LimitNOFILE`.
        directive: String,
        /// e.g. `1000512`.
        value: String,
    },
    /// A shell command.
    Command {
        /// The command line.
        command: String,
    },
    /// Something only an operator can do.
    Advice {
        /// What to do.
        text: String,
    },
}

impl Fix {
    /// The fix as lines to print or paste.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        match self {
            Fix::Sysctl { key, value } => {
                let arg = if value.contains(' ') {
                    format!("{key}=\"{value}\"")
                } else {
                    format!("{key}={value}")
                };
                vec![
                    format!("sysctl -w {arg}"),
                    format!("persist: `{key} = {value}` in {SYSCTL_D_FILE}"),
                ]
            }
            Fix::LimitsConf { item, value } => vec![format!(
                "{LIMITS_D_FILE}: `* - {item} {value}` and `root - {item} {value}` \
                 (`*` does not match root)"
            )],
            Fix::Systemd { directive, value } => {
                vec![format!("systemd unit [Service]: {directive}={value}")]
            }
            Fix::Command { command } => vec![command.clone()],
            Fix::Advice { text } => vec![text.clone()],
        }
    }
}

/// One checked host setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    /// What was checked: the sysctl or limit name (`fs.nr_open`,
    /// `RLIMIT_NOFILE`), or `memory`, `io_uring`, `cpus`, `privileges`.
    pub name: &'static str,
    /// How it stands.
    pub status: Status,
    /// What was found, for people.
    pub found: String,
    /// What the target needs, for people.
    pub required: String,
    /// The number compared, when there is one (unit as in `found`).
    pub found_value: Option<u64>,
    /// The number it is compared with (same unit).
    pub required_value: Option<u64>,
    /// Why it is short or worth a warning; empty when there is nothing to say.
    pub message: String,
    /// Alternative fixes (any one of the limit fixes; every sysctl fix).
    pub fixes: Vec<Fix>,
}

impl CheckItem {
    fn new(name: &'static str, status: Status, found: String, required: String) -> CheckItem {
        CheckItem {
            name,
            status,
            found,
            required,
            found_value: None,
            required_value: None,
            message: String::new(),
            fixes: Vec::new(),
        }
    }

    fn values(mut self, found: u64, required: u64) -> CheckItem {
        self.found_value = Some(found);
        self.required_value = Some(required);
        self
    }

    fn message(mut self, message: String) -> CheckItem {
        self.message = message;
        self
    }

    fn fix(mut self, fix: Fix) -> CheckItem {
        self.fixes.push(fix);
        self
    }

    fn unknown(name: &'static str, required: String, what: &str) -> CheckItem {
        CheckItem::new(name, Status::Warn, "unknown".to_string(), required)
            .message(format!("could not read {what}"))
    }
}

impl fmt::Display for CheckItem {
    /// `status name  found … · required …`, then the message and each fix
    /// line indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<5}  {:<28}  found {} · required {}",
            self.status.label(),
            self.name,
            self.found,
            self.required
        )?;
        if !self.message.is_empty() {
            write!(f, "\n       {}", self.message)?;
        }
        let label = if self.status == Status::Info {
            "option"
        } else {
            "fix"
        };
        for fix in &self.fixes {
            for line in fix.lines() {
                write!(f, "\n       {label}: {line}")?;
            }
        }
        Ok(())
    }
}

/// Checks the host against the requirements: one item per setting, in a
/// fixed order (blockers first: files, memory, io_uring; then what degrades
/// under load; then information).
#[must_use]
pub fn check(r: &HostReadings, req: &Requirements) -> Vec<CheckItem> {
    vec![
        nofile(r, req),
        nr_open(r, req),
        file_max(r, req),
        memlock(r, req),
        memory(r, req),
        io_uring(r),
        somaxconn(r, req),
        tcp_mem(r, req),
        socket_buffers("net.ipv4.tcp_rmem", "receive", r.tcp_rmem, r, req),
        socket_buffers("net.ipv4.tcp_wmem", "send", r.tcp_wmem, r, req),
        cpus(r, req),
        ports(r, req),
        privileges(r),
    ]
}

/// The CPU plan for these readings and requirements.
#[must_use]
pub fn cpu_plan(r: &HostReadings, shards: Option<usize>) -> CpuPlan {
    CpuPlan::new(&online_cpus(r), shards)
}

/// Online cores, or `0..available_parallelism` when the list was not read.
fn online_cpus(r: &HostReadings) -> Vec<usize> {
    if r.online_cpus.is_empty() {
        (0..r.available_parallelism.max(1)).collect()
    } else {
        r.online_cpus.clone()
    }
}

fn fds_required(req: &Requirements) -> String {
    format!(
        "≥ {} ({} connections + {} reserved)",
        count(req.fds()),
        count(req.connections),
        count(req.reserved_fds)
    )
}

/// Connections that fit under a file limit.
fn connections_under(limit: u64, req: &Requirements) -> u64 {
    limit.saturating_sub(req.reserved_fds) / FDS_PER_CONNECTION
}

fn nofile(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "RLIMIT_NOFILE";
    let need = req.fds();
    let required = fds_required(req);
    let Some(lim) = r.nofile else {
        return CheckItem::unknown(NAME, required, "the open-file limit (getrlimit)");
    };
    let found = format!("hard {}, soft {}", count(lim.hard), count(lim.soft));
    let item = |status| CheckItem::new(NAME, status, found.clone(), required.clone());
    if lim.hard < need {
        let capability = match r.privileges.cap_sys_resource {
            Some(false) => ", which this process lacks",
            Some(true) => " (this process has it, but a limit belongs to each process)",
            None => "",
        };
        let mut message = format!(
            "the hard limit caps the process at {} open files: {} connections fit, {} asked. \
             Raising a hard limit needs CAP_SYS_RESOURCE{capability}: set it where the gateway \
             starts",
            count(lim.hard),
            count(connections_under(lim.hard, req)),
            count(req.connections),
        );
        if r.nr_open.is_some_and(|n| n < need) {
            message.push_str("; fs.nr_open must be raised first (see fs.nr_open)");
        }
        return item(Status::Short)
            .values(lim.hard, need)
            .message(message)
            .fix(Fix::LimitsConf {
                item: "nofile".into(),
                value: need,
            })
            .fix(Fix::Systemd {
                directive: "LimitNOFILE".into(),
                value: need.to_string(),
            })
            .fix(Fix::Command {
                command: format!("prlimit --pid <gateway pid> --nofile={need}:{need}"),
            })
            .fix(Fix::Command {
                command: format!(
                    "ulimit -Hn {need} && ulimit -Sn {need}   # in the shell that starts the gateway"
                ),
            });
    }
    let item = item(Status::Ok).values(lim.hard, need);
    if lim.soft < need {
        item.message(format!(
            "the soft limit is lower, which is fine for the gateway: it raises its soft limit to \
             the hard one at start (other programs: `ulimit -Sn {need}`)"
        ))
    } else {
        item
    }
}

fn nr_open(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "fs.nr_open";
    let need = req.fds();
    let required = fds_required(req);
    let Some(nr_open) = r.nr_open else {
        return CheckItem::unknown(NAME, required, "/proc/sys/fs/nr_open");
    };
    let item = CheckItem::new(NAME, Status::Ok, count(nr_open), required).values(nr_open, need);
    if nr_open >= need {
        return item;
    }
    CheckItem {
        status: Status::Short,
        ..item
    }
    .message(format!(
        "no process may have more than {} open files: RLIMIT_NOFILE cannot be raised past it, \
         so {} connections fit",
        count(nr_open),
        count(connections_under(nr_open, req)),
    ))
    .fix(Fix::Sysctl {
        key: NAME.into(),
        value: need.to_string(),
    })
}

fn file_max(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "fs.file-max";
    let need = req.fds();
    let want = need.saturating_add(FILE_MAX_HEADROOM);
    let required = format!(
        "≥ {} ({} for the gateway + {} for the rest of the host)",
        count(want),
        count(need),
        count(FILE_MAX_HEADROOM)
    );
    let Some(file_max) = r.file_max else {
        return CheckItem::unknown(NAME, required, "/proc/sys/fs/file-max");
    };
    let item = CheckItem::new(NAME, Status::Ok, count(file_max), required).values(file_max, want);
    let fix = Fix::Sysctl {
        key: NAME.into(),
        value: want.to_string(),
    };
    if file_max < need {
        CheckItem {
            status: Status::Short,
            ..item
        }
        .message(format!(
            "the whole host may have only {} open files: {} connections fit, before anything \
             else on the host opens a file",
            count(file_max),
            count(connections_under(file_max, req)),
        ))
        .fix(fix)
    } else if file_max < want {
        CheckItem {
            status: Status::Warn,
            ..item
        }
        .message(format!(
            "the gateway's {} files leave only {} for the rest of the host",
            count(need),
            count(file_max - need),
        ))
        .fix(fix)
    } else {
        item
    }
}

fn memlock(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "RLIMIT_MEMLOCK";
    let need = RING_MEMLOCK_BYTES_PER_SHARD * req.shards as u64;
    if let Some((major, minor)) = r.kernel {
        if (major, minor) >= (5, 12) {
            let found = r.memlock.map_or("unknown".to_string(), |l| {
                format!("soft {}, hard {}", bytes(l.soft), bytes(l.hard))
            });
            return CheckItem::new(
                NAME,
                Status::Info,
                found,
                format!("none on kernel {major}.{minor} (io_uring rings are charged to the memory cgroup from 5.12)"),
            );
        }
    }
    let required = format!(
        "soft ≥ {} (the io_uring rings of {} shards, on kernels before 5.12)",
        bytes(need),
        req.shards
    );
    let Some(lim) = r.memlock else {
        return CheckItem::unknown(NAME, required, "the locked-memory limit (getrlimit)");
    };
    let found = format!("soft {}, hard {}", bytes(lim.soft), bytes(lim.hard));
    let item = CheckItem::new(NAME, Status::Ok, found, required).values(lim.soft, need);
    if lim.soft >= need {
        return item;
    }
    let kib = need / 1024;
    let how = if lim.hard >= need {
        "the hard limit allows it: raise the soft limit where the gateway starts"
    } else {
        "the hard limit is lower too; raising it needs CAP_SYS_RESOURCE"
    };
    CheckItem {
        status: Status::Short,
        ..item
    }
    .message(format!(
        "this kernel charges io_uring rings to the locked-memory limit (before 5.12), and each shard's rings take ~{}: below {} a shard fails to start; {how}",
        bytes(RING_MEMLOCK_BYTES_PER_SHARD),
        bytes(need)
    ))
    .fix(Fix::LimitsConf {
        item: "memlock".into(),
        value: kib,
    })
    .fix(Fix::Systemd {
        directive: "LimitMEMLOCK".into(),
        value: format!("{kib}K"),
    })
}

fn memory(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "memory";
    let need = req.memory_bytes();
    let required = format!(
        "≥ {} ({} connections × ({} gateway + {} kernel) + {} shards × {} + {} base)",
        bytes(need),
        count(req.connections),
        bytes(req.per_connection_bytes),
        bytes(req.kernel_bytes_per_connection),
        req.shards,
        bytes(req.per_shard_bytes),
        bytes(req.base_bytes),
    );
    let Some(available) = r.mem_available_bytes else {
        return CheckItem::unknown(NAME, required, "MemAvailable in /proc/meminfo");
    };
    let found = match r.mem_total_bytes {
        Some(total) => format!("{} available of {}", bytes(available), bytes(total)),
        None => format!("{} available", bytes(available)),
    };
    let item = CheckItem::new(NAME, Status::Ok, found, required).values(available, need);
    let comfortable = percent(available, MEMORY_WARN_PERCENT);
    let fit = comfortable.saturating_sub(req.fixed_bytes()) / req.bytes_per_connection().max(1);
    let fix = Fix::Advice {
        text: format!(
            "add memory, or lower the gateway's max_connections to {} (fits {MEMORY_WARN_PERCENT}% \
             of what is available)",
            count(fit)
        ),
    };
    if need > available {
        CheckItem {
            status: Status::Short,
            ..item
        }
        .message(format!(
            "{} connections need {}, more than the {} available",
            count(req.connections),
            bytes(need),
            bytes(available)
        ))
        .fix(fix)
    } else if need > comfortable {
        CheckItem {
            status: Status::Warn,
            ..item
        }
        .message(format!(
            "{} is more than {MEMORY_WARN_PERCENT}% of the {} available: little is left for \
             bursts (outboxes, socket buffers, catch-up pages)",
            bytes(need),
            bytes(available)
        ))
        .fix(fix)
    } else {
        item
    }
}

fn io_uring(r: &HostReadings) -> CheckItem {
    const NAME: &str = "io_uring";
    let required = "available (the shards run on io_uring)".to_string();
    let (errno, text) = match &r.io_uring {
        IoUring::Available => {
            return CheckItem::new(NAME, Status::Ok, "available".into(), required);
        }
        IoUring::Unavailable { errno, message } => (*errno, message.as_str()),
    };
    let item = CheckItem::new(
        NAME,
        Status::Short,
        format!("unavailable: io_uring_setup failed: {text}"),
        required,
    );
    let allow = Fix::Advice {
        text: "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp/LSM \
               policy the gateway runs under (container runtimes' default profiles often block them)"
            .into(),
    };
    let enable = Fix::Sysctl {
        key: "kernel.io_uring_disabled".into(),
        value: "0".into(),
    };
    match errno {
        libc::ENOSYS => item
            .message(
                "the kernel has no io_uring (CONFIG_IO_URING off), or a seccomp filter answers \
                 ENOSYS"
                    .into(),
            )
            .fix(Fix::Advice {
                text: "run on a kernel built with io_uring (the gateway needs 5.11 or newer)"
                    .into(),
            })
            .fix(allow),
        libc::EPERM | libc::EACCES => match r.io_uring_disabled {
            Some(2) => item
                .message("io_uring is disabled: kernel.io_uring_disabled = 2".into())
                .fix(enable),
            Some(1) => item
                .message(
                    "io_uring is restricted to root and kernel.io_uring_group \
                     (kernel.io_uring_disabled = 1)"
                        .into(),
                )
                .fix(enable)
                .fix(Fix::Advice {
                    text: "or run the gateway in the group named by kernel.io_uring_group".into(),
                }),
            _ => item
                .message("the kernel allows io_uring but a seccomp or LSM policy refused it".into())
                .fix(allow),
        },
        libc::ENOMEM => item
            .message(
                "not enough locked memory for a ring (kernels before 5.12 charge io_uring rings \
                 to RLIMIT_MEMLOCK)"
                    .into(),
            )
            .fix(Fix::LimitsConf {
                item: "memlock".into(),
                value: RING_MEMLOCK_BYTES_PER_SHARD / 1024,
            }),
        _ => item.message(format!("io_uring_setup failed with errno {errno}: {text}")),
    }
}

fn somaxconn(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "net.core.somaxconn";
    let wanted = req.listen_backlog;
    let required = format!("≥ {} (the gateway's listen_backlog)", count(wanted));
    let Some(found) = r.somaxconn else {
        return CheckItem::unknown(NAME, required, "/proc/sys/net/core/somaxconn");
    };
    let item = CheckItem::new(NAME, Status::Ok, count(found), required).values(found, wanted);
    if found >= wanted {
        return item;
    }
    CheckItem {
        status: Status::Warn,
        ..item
    }
    .message(format!(
        "every listen backlog is capped at {}, below the gateway's listen_backlog of {}: a \
         burst of connects overflows the accept queue and those clients retry their SYN after a \
         second or more",
        count(found),
        count(wanted)
    ))
    .fix(Fix::Sysctl {
        key: NAME.into(),
        value: wanted.to_string(),
    })
}

fn tcp_mem(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "net.ipv4.tcp_mem";
    let page = r.page_size.max(1);
    let need = req
        .connections
        .saturating_mul(TCP_MEM_PAGES_PER_BUSY_CONNECTION);
    let required = format!(
        "pressure and max ≥ {} pages ({}: a page per connection with a message in flight)",
        count(need),
        bytes(need.saturating_mul(page))
    );
    let Some(t) = r.tcp_mem else {
        return CheckItem::unknown(NAME, required, "/proc/sys/net/ipv4/tcp_mem");
    };
    let found = format!(
        "{} {} {} pages (pressure {}, max {})",
        t.min,
        t.mid,
        t.max,
        bytes(t.mid.saturating_mul(page)),
        bytes(t.max.saturating_mul(page))
    );
    let item = CheckItem::new(NAME, Status::Ok, found, required).values(t.mid.min(t.max), need);
    if t.mid >= need && t.max >= need {
        return item;
    }
    let new_mid = t.mid.max(need);
    let new_max = t.max.max(need.saturating_add(need / 2)).max(new_mid);
    let fix = Fix::Sysctl {
        key: NAME.into(),
        value: Triple {
            min: t.min,
            mid: new_mid,
            max: new_max,
        }
        .sysctl_value(),
    };
    let burst = bytes(need.saturating_mul(page));
    let message = if t.max < need {
        format!(
            "a message to all {} connections at once holds {burst} of socket buffers until read; \
             past the max ({}) the kernel refuses socket memory (\"TCP: out of memory\"), drops \
             and retransmits",
            count(req.connections),
            bytes(t.max.saturating_mul(page)),
        )
    } else {
        format!(
            "a message to all {} connections at once holds {burst} of socket buffers until read; \
             past the pressure mark ({}) the kernel shrinks every socket's buffers",
            count(req.connections),
            bytes(t.mid.saturating_mul(page)),
        )
    };
    CheckItem {
        status: Status::Warn,
        ..item
    }
    .message(message)
    .fix(fix)
}

fn socket_buffers(
    name: &'static str,
    direction: &str,
    triple: Option<Triple>,
    r: &HostReadings,
    req: &Requirements,
) -> CheckItem {
    let Some(total) = r.mem_total_bytes else {
        return CheckItem::unknown(
            name,
            "connections × default buffer within half the memory".into(),
            "MemTotal in /proc/meminfo",
        );
    };
    let limit = percent(total, SOCKET_BUFFER_WARN_PERCENT);
    let required = format!(
        "{} connections × default ≤ {} ({SOCKET_BUFFER_WARN_PERCENT}% of {})",
        count(req.connections),
        bytes(limit),
        bytes(total)
    );
    let Some(t) = triple else {
        return CheckItem::unknown(name, required, &format!("/proc/sys/{}", sysctl_path(name)));
    };
    let full = req.connections.saturating_mul(t.mid);
    let found = format!(
        "{} {} {} (default {}; all connections full: {})",
        t.min,
        t.mid,
        t.max,
        bytes(t.mid),
        bytes(full)
    );
    let item = CheckItem::new(name, Status::Ok, found, required).values(full, limit);
    if full <= limit {
        return item;
    }
    let fitting = (limit / req.connections.max(1)) / 4096 * 4096;
    let new_mid = fitting.max(4096);
    let fix = Fix::Sysctl {
        key: name.into(),
        value: Triple {
            min: t.min.min(new_mid),
            mid: new_mid,
            max: t.max.max(new_mid),
        }
        .sysctl_value(),
    };
    let mut message = format!(
        "every socket starts with a {} {direction} buffer; if all {} connections filled theirs \
         they would hold {}, more than {SOCKET_BUFFER_WARN_PERCENT}% of memory (tcp_mem caps the \
         total, so busy sockets would starve the rest). A smaller default fits",
        bytes(t.mid),
        count(req.connections),
        bytes(full),
    );
    if direction == "send" {
        message
            .push_str("; the gateway's socket_send_buffer_bytes sets SO_SNDBUF per socket instead");
    }
    CheckItem {
        status: Status::Warn,
        ..item
    }
    .message(message)
    .fix(fix)
}

fn cpus(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "cpus";
    let plan = cpu_plan(r, Some(req.shards));
    let online = plan.online.len();
    let mut found = format!("{online} online ({})", format_cpu_list(&plan.online));
    if r.available_parallelism < online {
        found.push_str(&format!(
            ", {} usable by this process",
            r.available_parallelism
        ));
    }
    let required = format!("≥ {} cores planned for shards (one per shard)", plan.shards);
    let item = CheckItem::new(NAME, Status::Ok, found, required)
        .values(plan.shard_cores.len() as u64, plan.shards as u64);
    if plan.oversubscribed() {
        let cores = plan.shard_cores.len();
        return CheckItem {
            status: Status::Warn,
            ..item
        }
        .message(format!(
            "{} shards on {cores} cores planned for shards ({}): shards would share cores and \
             stall each other's connections",
            plan.shards, plan.reason
        ))
        .fix(Fix::Advice {
            text: format!("run {cores} shards (gateway `shards = {cores}`, `--shards {cores}`)"),
        });
    }
    // The plan itself is printed once, after the items (see `Report`).
    item
}

fn ports(r: &HostReadings, req: &Requirements) -> CheckItem {
    const NAME: &str = "net.ipv4.ip_local_port_range";
    let required = "nothing for the gateway (informative: a load generator on this host)".into();
    let Some((lo, hi)) = r.ip_local_port_range else {
        return CheckItem::unknown(NAME, required, "/proc/sys/net/ipv4/ip_local_port_range");
    };
    let ports = u64::from(hi.saturating_sub(lo)) + 1;
    let addresses = div_ceil(req.connections, ports).max(1);
    CheckItem::new(
        NAME,
        Status::Info,
        format!("{lo}-{hi} ({} ports)", count(ports)),
        required,
    )
    .values(ports, req.connections)
    .message(format!(
        "a load generator on this host opens at most {} connections per source address to one \
         gateway address: {} connections need {addresses} source address{} (127.0.0.1, \
         127.0.0.2, …)",
        count(ports),
        count(req.connections),
        if addresses == 1 { "" } else { "es" },
    ))
    .fix(Fix::Sysctl {
        key: NAME.into(),
        value: "1024 65535".into(),
    })
}

fn privileges(r: &HostReadings) -> CheckItem {
    const NAME: &str = "privileges";
    let p = r.privileges;
    let who = match p.euid {
        Some(0) => "root".to_string(),
        Some(uid) => format!("uid {uid}"),
        None => "unknown user".to_string(),
    };
    let cap = match p.cap_sys_resource {
        Some(true) => "with CAP_SYS_RESOURCE",
        Some(false) => "without CAP_SYS_RESOURCE",
        None => "CAP_SYS_RESOURCE unknown",
    };
    let sysctls = if p.is_root() {
        "apply can write sysctls (unless /proc/sys is read-only here)"
    } else {
        "apply cannot write sysctls (needs root)"
    };
    let limits = match p.cap_sys_resource {
        Some(true) => "hard limits can be raised for processes started from here",
        _ => "hard limits cannot be raised from here",
    };
    CheckItem::new(
        NAME,
        Status::Info,
        format!("{who}, {cap}"),
        "root to write sysctls; CAP_SYS_RESOURCE to raise a hard limit".into(),
    )
    .message(format!("{sysctls}; {limits}"))
}

/// `pct` percent of `n`, without overflow.
fn percent(n: u64, pct: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(pct) / 100).unwrap_or(u64::MAX)
}

/// `/proc/sys`-relative path of a dotted sysctl name.
fn sysctl_path(key: &str) -> String {
    key.replace('.', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::{this_host as host, Rlimit};

    const GIB: u64 = 1024 * 1024 * 1024;

    fn item<'a>(items: &'a [CheckItem], name: &str) -> &'a CheckItem {
        items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no item {name}"))
    }

    fn short_names(items: &[CheckItem]) -> Vec<&'static str> {
        items
            .iter()
            .filter(|i| i.status == Status::Short)
            .map(|i| i.name)
            .collect()
    }

    fn sysctl_fix(item: &CheckItem) -> (String, String) {
        item.fixes
            .iter()
            .find_map(|f| match f {
                Fix::Sysctl { key, value } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{} has no sysctl fix", item.name))
    }

    #[test]
    fn default_maximum_passes_on_this_host() {
        let items = check(&host(), &Requirements::new(20_000 - 512, 2));
        assert!(short_names(&items).is_empty(), "{items:#?}");
        let warns: Vec<_> = items.iter().filter(|i| i.status == Status::Warn).collect();
        assert!(warns.is_empty(), "{warns:#?}");
    }

    #[test]
    fn one_million_is_short_of_file_descriptors_only() {
        let items = check(&host(), &Requirements::new(1_000_000, 2));
        assert_eq!(short_names(&items), vec!["RLIMIT_NOFILE"]);
        let fd = item(&items, "RLIMIT_NOFILE");
        assert_eq!(fd.found, "hard 20,000, soft 20,000");
        assert_eq!(
            fd.required,
            "≥ 1,000,512 (1,000,000 connections + 512 reserved)"
        );
        assert_eq!(
            (fd.found_value, fd.required_value),
            (Some(20_000), Some(1_000_512))
        );
        assert_eq!(
            fd.message,
            "the hard limit caps the process at 20,000 open files: 19,488 connections fit, \
             1,000,000 asked. Raising a hard limit needs CAP_SYS_RESOURCE, which this process \
             lacks: set it where the gateway starts"
        );
        let lines: Vec<String> = fd.fixes.iter().flat_map(Fix::lines).collect();
        assert_eq!(
            lines,
            vec![
                "/etc/security/limits.d/90-gateway.conf: `* - nofile 1000512` and \
                 `root - nofile 1000512` (`*` does not match root)"
                    .to_string(),
                "systemd unit [Service]: LimitNOFILE=1000512".to_string(),
                "prlimit --pid <gateway pid> --nofile=1000512:1000512".to_string(),
                "ulimit -Hn 1000512 && ulimit -Sn 1000512   # in the shell that starts the gateway"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn soft_fd_limit_below_hard_is_fine_for_the_gateway() {
        let mut r = host();
        r.nofile = Some(Rlimit {
            soft: 1024,
            hard: 20_000,
        });
        let items = check(&r, &Requirements::new(10_000, 2));
        let fd = item(&items, "RLIMIT_NOFILE");
        assert_eq!(fd.status, Status::Ok);
        assert_eq!(
            fd.message,
            "the soft limit is lower, which is fine for the gateway: it raises its soft limit to \
             the hard one at start (other programs: `ulimit -Sn 10512`)"
        );
    }

    #[test]
    fn nr_open_below_target_is_short_and_named_in_the_fd_item() {
        let mut r = host();
        r.nofile = Some(Rlimit {
            soft: 4_000_000,
            hard: 4_000_000,
        });
        r.nr_open = Some(1_048_576);
        let mut req = Requirements::new(2_000_000, 2);
        req.per_connection_bytes = 1024;
        req.kernel_bytes_per_connection = 1024;
        let items = check(&r, &req);
        let nr = item(&items, "fs.nr_open");
        assert_eq!(nr.status, Status::Short);
        assert_eq!(nr.found, "1,048,576");
        assert_eq!(
            nr.message,
            "no process may have more than 1,048,576 open files: RLIMIT_NOFILE cannot be raised \
             past it, so 1,048,064 connections fit"
        );
        assert_eq!(sysctl_fix(nr), ("fs.nr_open".into(), "2000512".into()));
        assert_eq!(
            nr.fixes[0].lines(),
            vec![
                "sysctl -w fs.nr_open=2000512".to_string(),
                "persist: `fs.nr_open = 2000512` in /etc/sysctl.d/90-gateway.conf".to_string(),
            ]
        );

        // With the hard limit short as well, the fd item points at nr_open.
        r.nofile = Some(Rlimit {
            soft: 20_000,
            hard: 20_000,
        });
        let items = check(&r, &req);
        assert!(item(&items, "RLIMIT_NOFILE")
            .message
            .ends_with("; fs.nr_open must be raised first (see fs.nr_open)"));
    }

    #[test]
    fn file_max_short_below_the_gateway_and_warn_below_headroom() {
        let mut r = host();
        r.file_max = Some(15_000);
        let items = check(&r, &Requirements::new(19_488, 2));
        let fm = item(&items, "fs.file-max");
        assert_eq!(fm.status, Status::Short);
        assert_eq!(
            fm.required,
            "≥ 85,536 (20,000 for the gateway + 65,536 for the rest of the host)"
        );
        assert_eq!(
            fm.message,
            "the whole host may have only 15,000 open files: 14,488 connections fit, before \
             anything else on the host opens a file"
        );
        assert_eq!(sysctl_fix(fm), ("fs.file-max".into(), "85536".into()));

        r.file_max = Some(30_000);
        let items = check(&r, &Requirements::new(19_488, 2));
        let fm = item(&items, "fs.file-max");
        assert_eq!(fm.status, Status::Warn);
        assert_eq!(
            fm.message,
            "the gateway's 20,000 files leave only 10,000 for the rest of the host"
        );
    }

    #[test]
    fn memlock_is_needed_only_where_the_kernel_charges_rings_to_it() {
        let mut r = host();
        r.kernel = Some((5, 11));
        r.memlock = Some(Rlimit {
            soft: 64 * 1024,
            hard: 64 * 1024,
        });
        let items = check(&r, &Requirements::new(1_000, 2));
        let ml = item(&items, "RLIMIT_MEMLOCK");
        assert_eq!(ml.status, Status::Short);
        assert_eq!(ml.found, "soft 64 KiB, hard 64 KiB");
        assert_eq!(
            ml.required,
            "soft ≥ 2 MiB (the io_uring rings of 2 shards, on kernels before 5.12)"
        );
        assert!(
            ml.message
                .ends_with("the hard limit is lower too; raising it needs CAP_SYS_RESOURCE"),
            "{}",
            ml.message
        );
        let lines: Vec<String> = ml.fixes.iter().flat_map(Fix::lines).collect();
        assert_eq!(lines[1], "systemd unit [Service]: LimitMEMLOCK=2048K");
        assert!(lines[0].contains("`* - memlock 2048`"));

        r.memlock = Some(Rlimit {
            soft: 64 * 1024,
            hard: crate::readings::UNLIMITED,
        });
        let items = check(&r, &Requirements::new(1_000, 2));
        assert!(item(&items, "RLIMIT_MEMLOCK")
            .message
            .ends_with("the hard limit allows it: raise the soft limit where the gateway starts"));

        // 5.12 and newer: the limit plays no part.
        r.kernel = Some((6, 18));
        let items = check(&r, &Requirements::new(1_000, 2));
        let ml = item(&items, "RLIMIT_MEMLOCK");
        assert_eq!(ml.status, Status::Info);
        assert!(
            ml.required.starts_with("none on kernel 6.18"),
            "{}",
            ml.required
        );
    }

    #[test]
    fn memory_short_and_warn() {
        let mut r = host();
        r.mem_available_bytes = Some(GIB);
        r.mem_total_bytes = Some(2 * GIB);
        // The arithmetic, with 8 KiB per connection in user space (the
        // default is the measured 1 KiB).
        let with_8k = |connections| {
            let mut req = Requirements::new(connections, 2);
            req.per_connection_bytes = 8 * 1024;
            req
        };
        let req = with_8k(100_000);
        let items = check(&r, &req);
        let mem = item(&items, "memory");
        assert_eq!(mem.status, Status::Short);
        assert_eq!(mem.found, "1 GiB available of 2 GiB");
        assert_eq!(
            mem.required,
            "≥ 1.2 GiB (100,000 connections × (8 KiB gateway + 4 KiB kernel) + 2 shards × 1 MiB \
             + 64 MiB base)"
        );
        assert_eq!(
            mem.message,
            "100,000 connections need 1.2 GiB, more than the 1 GiB available"
        );
        // 75% of 1 GiB = 768 MiB, minus 66 MiB fixed, over 12 KiB each.
        assert_eq!(
            mem.fixes[0].lines(),
            vec![
                "add memory, or lower the gateway's max_connections to 59,904 (fits 75% of what \
                  is available)"
                    .to_string()
            ]
        );

        let items = check(&r, &with_8k(70_000));
        let mem = item(&items, "memory");
        assert_eq!(mem.status, Status::Warn);
        assert!(mem
            .message
            .starts_with("886.3 MiB is more than 75% of the 1 GiB available"));
    }

    #[test]
    fn io_uring_failures_name_their_cause() {
        let unavailable = |errno: i32| IoUring::Unavailable {
            errno,
            message: std::io::Error::from_raw_os_error(errno).to_string(),
        };
        let req = Requirements::new(1_000, 2);
        let mut r = host();

        r.io_uring = unavailable(libc::ENOSYS);
        let items = check(&r, &req);
        let io = item(&items, "io_uring");
        assert_eq!(io.status, Status::Short);
        assert!(io.found.starts_with("unavailable: io_uring_setup failed: "));
        assert_eq!(
            io.message,
            "the kernel has no io_uring (CONFIG_IO_URING off), or a seccomp filter answers ENOSYS"
        );

        r.io_uring = unavailable(libc::EPERM);
        r.io_uring_disabled = Some(2);
        let items = check(&r, &req);
        let io = item(&items, "io_uring");
        assert_eq!(
            io.message,
            "io_uring is disabled: kernel.io_uring_disabled = 2"
        );
        assert_eq!(
            sysctl_fix(io),
            ("kernel.io_uring_disabled".into(), "0".into())
        );

        r.io_uring_disabled = Some(1);
        let items = check(&r, &req);
        assert_eq!(
            item(&items, "io_uring").message,
            "io_uring is restricted to root and kernel.io_uring_group (kernel.io_uring_disabled = 1)"
        );

        r.io_uring_disabled = Some(0);
        let items = check(&r, &req);
        assert_eq!(
            item(&items, "io_uring").message,
            "the kernel allows io_uring but a seccomp or LSM policy refused it"
        );

        r.io_uring = unavailable(libc::ENOMEM);
        let items = check(&r, &req);
        assert_eq!(
            item(&items, "io_uring").message,
            "not enough locked memory for a ring (kernels before 5.12 charge io_uring rings to \
             RLIMIT_MEMLOCK)"
        );

        r.io_uring = unavailable(libc::EINVAL);
        let items = check(&r, &req);
        assert!(item(&items, "io_uring").message.starts_with(&format!(
            "io_uring_setup failed with errno {}: ",
            libc::EINVAL
        )));
    }

    #[test]
    fn small_somaxconn_warns() {
        let mut r = host();
        r.somaxconn = Some(128);
        let items = check(&r, &Requirements::new(1_000, 2));
        let s = item(&items, "net.core.somaxconn");
        assert_eq!(s.status, Status::Warn);
        assert_eq!(
            s.message,
            "every listen backlog is capped at 128, below the gateway's listen_backlog of 4,096: \
             a burst of connects overflows the accept queue and those clients retry their SYN \
             after a second or more"
        );
        assert_eq!(sysctl_fix(s), ("net.core.somaxconn".into(), "4096".into()));
    }

    #[test]
    fn somaxconn_is_checked_against_the_configured_backlog() {
        let mut r = host();
        r.somaxconn = Some(4096);
        let small = Requirements {
            listen_backlog: 1024,
            ..Requirements::new(1_000, 2)
        };
        assert_eq!(
            item(&check(&r, &small), "net.core.somaxconn").status,
            Status::Ok
        );
        let large = Requirements {
            listen_backlog: 16_384,
            ..Requirements::new(1_000, 2)
        };
        let s = check(&r, &large);
        let s = item(&s, "net.core.somaxconn");
        assert_eq!(s.status, Status::Warn);
        assert_eq!(sysctl_fix(s), ("net.core.somaxconn".into(), "16384".into()));
    }

    #[test]
    fn tcp_mem_below_one_page_per_connection_warns() {
        let items = check(&host(), &Requirements::new(1_000_000, 2));
        let t = item(&items, "net.ipv4.tcp_mem");
        assert_eq!(t.status, Status::Warn);
        assert_eq!(
            t.message,
            "a message to all 1,000,000 connections at once holds 3.8 GiB of socket buffers \
             until read; past the max (2.2 GiB) the kernel refuses socket memory (\"TCP: out of \
             memory\"), drops and retransmits"
        );
        assert_eq!(
            sysctl_fix(t),
            ("net.ipv4.tcp_mem".into(), "287898 1000000 1500000".into())
        );

        let items = check(&host(), &Requirements::new(500_000, 2));
        let t = item(&items, "net.ipv4.tcp_mem");
        assert_eq!(t.status, Status::Warn);
        assert!(t.message.ends_with(
            "past the pressure mark (1.5 GiB) the kernel shrinks every socket's buffers"
        ));
        assert_eq!(
            sysctl_fix(t),
            ("net.ipv4.tcp_mem".into(), "287898 500000 750000".into())
        );
    }

    #[test]
    fn large_default_socket_buffers_warn_with_a_smaller_default() {
        let items = check(&host(), &Requirements::new(1_000_000, 2));
        let rmem = item(&items, "net.ipv4.tcp_rmem");
        assert_eq!(rmem.status, Status::Warn);
        assert!(rmem.message.starts_with(
            "every socket starts with a 128 KiB receive buffer; if all 1,000,000 connections \
             filled theirs they would hold 122.1 GiB, more than 50% of memory"
        ));
        // 50% of 23 GiB over a million connections, rounded down to 4 KiB.
        assert_eq!(
            sysctl_fix(rmem),
            ("net.ipv4.tcp_rmem".into(), "4096 12288 33554432".into())
        );
        let wmem = item(&items, "net.ipv4.tcp_wmem");
        assert_eq!(wmem.status, Status::Warn);
        assert!(wmem
            .message
            .ends_with("the gateway's socket_send_buffer_bytes sets SO_SNDBUF per socket instead"));
    }

    #[test]
    fn more_shards_than_cores_warns() {
        let items = check(&host(), &Requirements::new(1_000, 3));
        let c = item(&items, "cpus");
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.message,
            "3 shards on 2 cores planned for shards (2 online cores (at most 4): every core runs \
             a shard): shards would share cores and stall each other's connections"
        );

        let items = check(&host(), &Requirements::new(1_000, 2));
        assert_eq!(item(&items, "cpus").status, Status::Ok);
    }

    #[test]
    fn port_range_is_informative() {
        let items = check(&host(), &Requirements::new(100_000, 2));
        let p = item(&items, "net.ipv4.ip_local_port_range");
        assert_eq!(p.status, Status::Info);
        assert_eq!(p.found, "32768-60999 (28,232 ports)");
        assert_eq!(
            p.message,
            "a load generator on this host opens at most 28,232 connections per source address \
             to one gateway address: 100,000 connections need 4 source addresses (127.0.0.1, \
             127.0.0.2, …)"
        );
    }

    #[test]
    fn unreadable_values_warn_and_do_not_block() {
        let mut r = host();
        r.nofile = None;
        r.nr_open = None;
        r.tcp_mem = None;
        r.mem_available_bytes = None;
        let items = check(&r, &Requirements::new(1_000, 2));
        assert!(short_names(&items).is_empty());
        let fd = item(&items, "RLIMIT_NOFILE");
        assert_eq!(fd.status, Status::Warn);
        assert_eq!(fd.message, "could not read the open-file limit (getrlimit)");
        assert_eq!(
            item(&items, "fs.nr_open").message,
            "could not read /proc/sys/fs/nr_open"
        );
    }

    #[test]
    fn privileges_say_what_apply_can_do() {
        let items = check(&host(), &Requirements::new(1_000, 2));
        let p = item(&items, "privileges");
        assert_eq!(p.found, "root, without CAP_SYS_RESOURCE");
        assert_eq!(
            p.message,
            "apply can write sysctls (unless /proc/sys is read-only here); hard limits cannot be \
             raised from here"
        );
    }

    #[test]
    fn item_line_shows_status_found_required_and_fixes() {
        let items = check(&host(), &Requirements::new(1_000_000, 2));
        let text = item(&items, "RLIMIT_NOFILE").to_string();
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            "short  RLIMIT_NOFILE                 found hard 20,000, soft 20,000 · required \
             ≥ 1,000,512 (1,000,000 connections + 512 reserved)"
        );
        assert!(text.contains("\n       fix: systemd unit [Service]: LimitNOFILE=1000512"));
    }
}
