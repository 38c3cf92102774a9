//! Fills [`HostReadings`] from the live host: `/proc/sys`, `/proc/meminfo`,
//! `/proc/self/status`, `/sys/devices/system/cpu/online`, `getrlimit`,
//! `sysconf`, `available_parallelism` and an io_uring probe.
//!
//! The file roots are parameters ([`HostPaths`]) so tests can point them at
//! a fixture; the resource limits, page size and io_uring probe always come
//! from the calling process.

use std::path::{Path, PathBuf};

use crate::cpu::parse_cpu_list;
use crate::readings::{HostReadings, IoUring, Privileges, Triple};
use crate::sys::{self, Resource};

/// `CAP_SYS_RESOURCE`'s bit in the capability sets (linux/capability.h).
const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// Where the host's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    /// procfs root, normally `/proc`.
    pub proc: PathBuf,
    /// sysfs root, normally `/sys`.
    pub sys: PathBuf,
}

impl HostPaths {
    /// `/proc` and `/sys`.
    #[must_use]
    pub fn system() -> HostPaths {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }

    /// The file behind a dotted sysctl name (`fs.nr_open` →
    /// `/proc/sys/fs/nr_open`).
    #[must_use]
    pub fn sysctl(&self, key: &str) -> PathBuf {
        self.proc.join("sys").join(key.replace('.', "/"))
    }
}

impl Default for HostPaths {
    fn default() -> HostPaths {
        HostPaths::system()
    }
}

/// Reads this host (`/proc`, `/sys`, this process's limits).
#[must_use]
pub fn read_host() -> HostReadings {
    read_host_at(&HostPaths::system())
}

/// Reads the host with files under `paths`. Values that cannot be read are
/// `None`.
#[must_use]
pub fn read_host_at(paths: &HostPaths) -> HostReadings {
    let sysctl_u64 = |key: &str| read_text(&paths.sysctl(key)).and_then(|t| parse_u64(&t));
    let sysctl_triple = |key: &str| read_text(&paths.sysctl(key)).and_then(|t| parse_triple(&t));
    let (mem_total_bytes, mem_available_bytes) = read_text(&paths.proc.join("meminfo"))
        .map(|t| parse_meminfo(&t))
        .unwrap_or((None, None));
    let privileges = read_text(&paths.proc.join("self/status"))
        .map(|t| parse_status(&t))
        .unwrap_or_default();
    let online_cpus = read_text(&paths.sys.join("devices/system/cpu/online"))
        .and_then(|t| parse_cpu_list(&t))
        .unwrap_or_default();
    HostReadings {
        nofile: sys::rlimit(Resource::Nofile).ok(),
        memlock: sys::rlimit(Resource::Memlock).ok(),
        nr_open: sysctl_u64("fs.nr_open"),
        file_max: sysctl_u64("fs.file-max"),
        somaxconn: sysctl_u64("net.core.somaxconn"),
        tcp_mem: sysctl_triple("net.ipv4.tcp_mem"),
        tcp_rmem: sysctl_triple("net.ipv4.tcp_rmem"),
        tcp_wmem: sysctl_triple("net.ipv4.tcp_wmem"),
        ip_local_port_range: read_text(&paths.sysctl("net.ipv4.ip_local_port_range"))
            .and_then(|t| parse_pair(&t)),
        mem_total_bytes,
        mem_available_bytes,
        online_cpus,
        available_parallelism: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        page_size: sys::page_size().unwrap_or(4096),
        io_uring: match sys::probe_io_uring() {
            Ok(()) => IoUring::Available,
            Err(e) => IoUring::Unavailable {
                errno: e.raw_os_error().unwrap_or(0),
                message: e.to_string(),
            },
        },
        io_uring_disabled: sysctl_u64("kernel.io_uring_disabled"),
        privileges,
        kernel: read_text(&paths.sysctl("kernel.osrelease")).and_then(|t| parse_kernel_release(&t)),
    }
}

/// A kernel release's major and minor version: `6.18.0-generic` → (6, 18).
#[must_use]
pub fn parse_kernel_release(text: &str) -> Option<(u32, u32)> {
    let mut it = text.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// One unsigned number (a sysctl file).
#[must_use]
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Three whitespace-separated numbers (`tcp_mem`, `tcp_rmem`, `tcp_wmem`).
#[must_use]
pub fn parse_triple(text: &str) -> Option<Triple> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let t = Triple {
        min: it.next()?.ok()?,
        mid: it.next()?.ok()?,
        max: it.next()?.ok()?,
    };
    it.next().is_none().then_some(t)
}

/// Two whitespace-separated numbers (`ip_local_port_range`).
#[must_use]
pub fn parse_pair(text: &str) -> Option<(u32, u32)> {
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    let pair = (it.next()?.ok()?, it.next()?.ok()?);
    it.next().is_none().then_some(pair)
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
#[must_use]
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// Effective uid and `CAP_SYS_RESOURCE` from `/proc/self/status`.
#[must_use]
pub fn parse_status(text: &str) -> Privileges {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    let euid = field("Uid").and_then(|v| v.split_whitespace().nth(1)?.parse().ok());
    let cap_sys_resource = field("CapEff")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .map(|caps| caps & (1 << CAP_SYS_RESOURCE_BIT) != 0);
    Privileges {
        euid,
        cap_sys_resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysctl_values() {
        assert_eq!(parse_u64("1048576\n"), Some(1_048_576));
        assert_eq!(parse_u64("x"), None);
        assert_eq!(
            parse_triple("287898\t383866\t575796\n"),
            Some(Triple {
                min: 287_898,
                mid: 383_866,
                max: 575_796
            })
        );
        assert_eq!(parse_triple("1 2"), None);
        assert_eq!(parse_triple("1 2 3 4"), None);
        assert_eq!(parse_pair("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_kernel_release("6.18.0-1-cloud\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("5.11-rc3"), Some((5, 11)));
        assert_eq!(parse_kernel_release("weird"), None);
    }

    #[test]
    fn parses_meminfo_in_bytes() {
        let text = "MemTotal:       24683656 kB\nMemFree:        21315268 kB\n\
                    MemAvailable:   24220308 kB\n";
        assert_eq!(
            parse_meminfo(text),
            (Some(24_683_656 * 1024), Some(24_220_308 * 1024))
        );
    }

    #[test]
    fn parses_root_without_cap_sys_resource() {
        // This host: root, every capability but CAP_SYS_RESOURCE (bit 24).
        let text = "Name:\tcat\nUid:\t0\t0\t0\t0\nCapEff:\t000001fffeffffff\n";
        assert_eq!(
            parse_status(text),
            Privileges {
                euid: Some(0),
                cap_sys_resource: Some(false)
            }
        );
        let text = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000001000000\n";
        assert_eq!(
            parse_status(text),
            Privileges {
                euid: Some(1000),
                cap_sys_resource: Some(true)
            }
        );
    }
}
