//! [`HostReadings`]: everything read from the host, as plain data.
//!
//! The checks take this struct and nothing else, so they run on synthetic
//! readings in tests. `read.rs` fills it from the live host. A reading that
//! could not be taken is `None` and the check for it says so (a warning, not
//! a failure: an unknown value is not proof of a short one).

use serde::Serialize;

/// `RLIM_INFINITY` as this crate stores it: `u64::MAX` (the Linux value).
pub const UNLIMITED: u64 = u64::MAX;

/// A resource limit's soft and hard values ([`UNLIMITED`] for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// The limit in force; a process may raise it up to `hard` by itself.
    pub soft: u64,
    /// The ceiling; raising it needs `CAP_SYS_RESOURCE`.
    pub hard: u64,
}

/// The three values of `tcp_mem` / `tcp_rmem` / `tcp_wmem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Triple {
    /// First value: `tcp_mem` low mark (pages); buffer minimum (bytes).
    pub min: u64,
    /// Second value: `tcp_mem` pressure mark (pages); default buffer (bytes).
    pub mid: u64,
    /// Third value: `tcp_mem` hard limit (pages); buffer maximum (bytes).
    pub max: u64,
}

impl Triple {
    /// The sysctl value as written to `/proc/sys`: `"min mid max"`.
    #[must_use]
    pub fn sysctl_value(&self) -> String {
        format!("{} {} {}", self.min, self.mid, self.max)
    }
}

/// What the io_uring probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IoUring {
    /// `io_uring_setup` returned a ring (closed again at once).
    Available,
    /// `io_uring_setup` failed with this errno.
    Unavailable {
        /// The raw errno (`ENOSYS`, `EPERM`, `ENOMEM`, ...).
        errno: i32,
        /// The operating system's text for it.
        message: String,
    },
}

/// Who the reading process is, for what `apply` can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Privileges {
    /// Effective user id (`Uid:` in `/proc/self/status`).
    pub euid: Option<u32>,
    /// `CAP_SYS_RESOURCE` is in the effective set (`CapEff:`, bit 24):
    /// needed to raise a hard resource limit.
    pub cap_sys_resource: Option<bool>,
}

impl Privileges {
    /// The effective user is root (writes to `/proc/sys` are allowed unless
    /// the mount or a namespace forbids them).
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.euid == Some(0)
    }
}

/// Everything the checks need to know about the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostReadings {
    /// `RLIMIT_NOFILE` of the reading process.
    pub nofile: Option<Rlimit>,
    /// `RLIMIT_MEMLOCK` of the reading process, bytes.
    pub memlock: Option<Rlimit>,
    /// `fs.nr_open`: the largest `RLIMIT_NOFILE` any process may have.
    pub nr_open: Option<u64>,
    /// `fs.file-max`: open files allowed on the whole host.
    pub file_max: Option<u64>,
    /// `net.core.somaxconn`: the cap on every listen backlog.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.tcp_mem`, in pages.
    pub tcp_mem: Option<Triple>,
    /// `net.ipv4.tcp_rmem`, in bytes.
    pub tcp_rmem: Option<Triple>,
    /// `net.ipv4.tcp_wmem`, in bytes.
    pub tcp_wmem: Option<Triple>,
    /// `net.ipv4.ip_local_port_range`: first and last ephemeral port.
    pub ip_local_port_range: Option<(u32, u32)>,
    /// `MemTotal` from `/proc/meminfo`, bytes.
    pub mem_total_bytes: Option<u64>,
    /// `MemAvailable` from `/proc/meminfo`, bytes.
    pub mem_available_bytes: Option<u64>,
    /// Online CPUs by id (`/sys/devices/system/cpu/online`).
    pub online_cpus: Vec<usize>,
    /// `std::thread::available_parallelism()`: CPUs this process may use
    /// (affinity and cgroup quota applied).
    pub available_parallelism: usize,
    /// Page size in bytes (`tcp_mem` is counted in pages).
    pub page_size: u64,
    /// The io_uring probe.
    pub io_uring: IoUring,
    /// `kernel.io_uring_disabled` (kernels ≥ 6.6): 0 allowed, 1 only for
    /// root and `kernel.io_uring_group`, 2 disabled.
    pub io_uring_disabled: Option<u64>,
    /// The reading process's user and capabilities.
    pub privileges: Privileges,
    /// The kernel's version, major and minor (`kernel.osrelease`).
    pub kernel: Option<(u32, u32)>,
}

/// This host as measured (kernel 6.18, 2 cores, 23 GiB): 20,000 open files
/// (soft and hard), 8 MiB memlock, root without `CAP_SYS_RESOURCE`.
#[cfg(test)]
pub(crate) fn this_host() -> HostReadings {
    HostReadings {
        nofile: Some(Rlimit {
            soft: 20_000,
            hard: 20_000,
        }),
        memlock: Some(Rlimit {
            soft: 8 << 20,
            hard: 8 << 20,
        }),
        nr_open: Some(1_048_576),
        file_max: Some(2_466_174),
        somaxconn: Some(4096),
        tcp_mem: Some(Triple {
            min: 287_898,
            mid: 383_866,
            max: 575_796,
        }),
        tcp_rmem: Some(Triple {
            min: 4096,
            mid: 131_072,
            max: 33_554_432,
        }),
        tcp_wmem: Some(Triple {
            min: 4096,
            mid: 16_384,
            max: 4_194_304,
        }),
        ip_local_port_range: Some((32_768, 60_999)),
        mem_total_bytes: Some(23 << 30),
        mem_available_bytes: Some(22 << 30),
        online_cpus: vec![0, 1],
        available_parallelism: 2,
        page_size: 4096,
        io_uring: IoUring::Available,
        io_uring_disabled: Some(0),
        privileges: Privileges {
            euid: Some(0),
            cap_sys_resource: Some(false),
        },
        kernel: Some((6, 18)),
    }
}
