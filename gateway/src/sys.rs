//! The few operating-system calls the standard library does not offer:
//! resource limits, signal masks, CPU affinity, the listening socket and
//! the process figures of `/metrics`. Each `unsafe` block is a plain libc
//! call on values owned by the caller.
#![allow(unsafe_code)]

/// The CPUs the calling thread may run on (its affinity mask: `taskset`,
/// a container's cpuset), ascending; `None` when it cannot be read.
pub(crate) fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into the set we own, and
    // CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect(),
        )
    }
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    set_current_thread_cpus(&[cpu])
}

/// Lets the calling thread run on `cpus` only.
pub(crate) fn set_current_thread_cpus(cpus: &[usize]) -> std::io::Result<()> {
    if let Some(cpu) = cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond the CPU set's size"),
        ));
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes bits
    // of the set we own (checked in range above); sched_setaffinity reads
    // it and affects only this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `cpus` ordered for spreading threads out: one CPU of every physical
/// core first (alternating packages), then the cores' second hardware
/// threads, and so on — so two shards do not share a core while another
/// core is idle. Where `/sys` has no topology, in the given order.
pub(crate) fn spread_cpus(cpus: &[usize]) -> Vec<usize> {
    let topo = |cpu: usize, what: &str| -> Option<i64> {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/topology/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let placed: Vec<(usize, i64, i64)> = cpus
        .iter()
        .map(|&c| {
            (
                c,
                topo(c, "physical_package_id").unwrap_or(0),
                topo(c, "core_id").unwrap_or(c as i64),
            )
        })
        .collect();
    spread_by_topology(&placed)
}

/// [`spread_cpus`] given each CPU's (cpu, package, core).
fn spread_by_topology(placed: &[(usize, i64, i64)]) -> Vec<usize> {
    use std::collections::BTreeMap;
    // Per package, its cores in order; per core, its CPUs in order.
    let mut packages: BTreeMap<i64, BTreeMap<i64, Vec<usize>>> = BTreeMap::new();
    for &(cpu, package, core) in placed {
        packages
            .entry(package)
            .or_default()
            .entry(core)
            .or_default()
            .push(cpu);
    }
    // Rank every CPU by (its index within its core, its core's index within
    // its package, its package): sorting by that rank spreads.
    let mut ranked = Vec::with_capacity(placed.len());
    for (p_index, cores) in packages.values().enumerate() {
        for (c_index, cpus) in cores.values().enumerate() {
            for (t_index, &cpu) in cpus.iter().enumerate() {
                ranked.push(((t_index, c_index, p_index), cpu));
            }
        }
    }
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, cpu)| cpu).collect()
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`).
pub(crate) fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Raises the soft open-file limit to the hard limit (allowed without
/// privileges). Returns the soft limit in force afterwards.
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(lim.rlim_max);
        }
    }
    Some(lim.rlim_cur)
}

/// Binds one shard's listening socket (`SO_REUSEPORT`: every shard binds
/// the same address and the kernel spreads connections) with our
/// `backlog` (the kernel caps it at `net.core.somaxconn`), and with the options
/// every connection gets — `TCP_NODELAY` and `send_buffer_bytes` of
/// `SO_SNDBUF` (0: the kernel's autotuning) — set once here, since accepted
/// sockets inherit them.
pub(crate) fn bind_listener(
    addr: std::net::SocketAddr,
    backlog: u32,
    send_buffer_bytes: usize,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_port(true)?;
    // Every accepted socket inherits these (Linux clones the listener's
    // socket into each connection it accepts): no `setsockopt` per
    // connection.
    sk.set_nodelay(true)?;
    if send_buffer_bytes > 0 {
        sk.set_send_buffer_size(send_buffer_bytes)?;
    }
    sk.bind(&addr.into())?;
    sk.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(sk.into())
}

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it
/// spawns afterwards), so that [`wait_for_termination`] can receive them.
pub(crate) fn block_termination_signals() -> std::io::Result<()> {
    // SAFETY: sigset operations on a set we own; pthread_sigmask changes only
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Waits until SIGINT or SIGTERM arrives (they must be blocked first) and
/// returns its number.
pub(crate) fn wait_for_termination() -> i32 {
    // SAFETY: sigwait reads our set and writes the signal number we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig: libc::c_int = 0;
        loop {
            if libc::sigwait(&set, &mut sig) == 0 {
                return sig;
            }
        }
    }
}

/// Whether some socket of this host is listening on `addr`'s port at
/// `addr`'s IP or a wildcard address (`/proc/net/tcp`, `/proc/net/tcp6`;
/// state `0A` is LISTEN).
pub(crate) fn listening_on(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    let mut found = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => continue,
            Err(e) => return Err(e),
        };
        found |=
            text.lines()
                .skip(1)
                .filter_map(parse_proc_net_line)
                .any(|(ip, port, listening)| {
                    listening && port == addr.port() && overlaps(ip, addr.ip())
                });
    }
    Ok(found)
}

/// (local IP, local port, is LISTEN) of one `/proc/net/tcp*` line.
fn parse_proc_net_line(line: &str) -> Option<(std::net::IpAddr, u16, bool)> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The kernel prints each 32-bit word of the address in host order.
    let words: Vec<u32> = (0..ip_hex.len() / 8)
        .map(|i| u32::from_str_radix(&ip_hex[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] => std::net::IpAddr::V4(std::net::Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port, state == "0A"))
}

/// Whether a listener on `held` takes connections meant for `wanted`.
fn overlaps(held: std::net::IpAddr, wanted: std::net::IpAddr) -> bool {
    let v4 = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let (held, wanted) = (v4(held), v4(wanted));
    held == wanted || held.is_unspecified() || wanted.is_unspecified()
}

/// What `/metrics` reports about the process, under Prometheus' standard
/// `process_*` names. A value the system does not give is `None` (and left
/// out).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// Resident memory, bytes (`/proc/self/statm`).
    pub(crate) rss_bytes: Option<u64>,
    /// User and system CPU time, seconds (`/proc/self/stat`).
    pub(crate) cpu_seconds: Option<f64>,
    /// Open file descriptors (entries of `/proc/self/fd`). Counting costs
    /// O(open fds): about 0.1 s per million connections, once per scrape.
    pub(crate) open_fds: Option<u64>,
    /// The soft open-file limit.
    pub(crate) max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub(crate) start_time_seconds: Option<f64>,
}

/// `(utime, stime, starttime)` in clock ticks from the text of
/// `/proc/<pid>/stat` (fields 14, 15 and 22; the command name in field 2
/// may hold spaces and parentheses, so fields are counted after its last
/// `)`).
fn parse_proc_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?))
}

/// The boot time, seconds since the Unix epoch (`btime` of `/proc/stat`).
fn boot_time_seconds(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the process figures (Linux procfs; elsewhere all `None`).
pub(crate) fn process_stats() -> ProcessStats {
    // SAFETY: sysconf reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_proc_stat(&s));
    let ticks = (ticks > 0).then_some(ticks as f64);
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .filter(|_| page > 0)
        .map(|pages| pages * page as u64);
    let cpu_seconds = stat
        .zip(ticks)
        .map(|((utime, stime, _), t)| (utime + stime) as f64 / t);
    let start_time_seconds = stat.zip(ticks).and_then(|((_, _, start), t)| {
        let boot = boot_time_seconds(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(boot as f64 + start as f64 / t)
    });
    // The directory handle read_dir opens is itself one of the entries.
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| (d.count() as u64).saturating_sub(1));
    ProcessStats {
        rss_bytes,
        cpu_seconds,
        open_fds,
        max_fds: open_file_limit(),
        start_time_seconds,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Starts `n` non-blocking connects to `addr` and returns how many are
    /// established after `wait` (a SYN the full accept queue dropped
    /// leaves its socket connecting until its 1 s retransmit).
    fn established(addr: std::net::SocketAddr, n: usize, wait: std::time::Duration) -> usize {
        let socks: Vec<socket2::Socket> = (0..n)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        std::thread::sleep(wait);
        socks.iter().filter(|s| s.peer_addr().is_ok()).count()
    }

    #[test]
    fn threads_spread_over_cores_and_packages_before_sharing_a_core() {
        // Two packages of two cores, two hardware threads each: CPUs 0–3 on
        // package 0 (cores 0, 1), 4–7 on package 1; siblings are n and n+2.
        let placed = [
            (0, 0, 0),
            (1, 0, 1),
            (2, 0, 0),
            (3, 0, 1),
            (4, 1, 0),
            (5, 1, 1),
            (6, 1, 0),
            (7, 1, 1),
        ];
        assert_eq!(spread_by_topology(&placed), vec![0, 4, 1, 5, 2, 6, 3, 7]);
        assert_eq!(spread_cpus(&[]), Vec::<usize>::new());
    }

    #[test]
    fn the_host_check_asks_somaxconn_for_the_default_listen_backlog() {
        assert_eq!(
            tuning::costs::DEFAULT_LISTEN_BACKLOG,
            u64::from(chat_core::Config::default().listen_backlog)
        );
    }

    #[test]
    fn the_listen_backlog_is_the_configured_one_not_a_fixed_1024() {
        // 1,100 client sockets: past a soft limit of 1,024 if it is one.
        raise_open_file_limit();
        {
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
            // Nothing accepts: the kernel completes at most backlog + 1
            // handshakes and drops the other SYNs.
            let small = bind_listener(any, 4, 0).unwrap();
            let wait = std::time::Duration::from_millis(300);
            let n = established(small.local_addr().unwrap(), 40, wait);
            assert!(n <= 6, "{n} of 40 established with a backlog of 4");
            let large = bind_listener(any, 2_048, 0).unwrap();
            let n = established(large.local_addr().unwrap(), 1_100, wait);
            assert_eq!(n, 1_100, "past 1,024");
        }
    }

    #[test]
    fn accepted_sockets_inherit_no_delay_and_the_send_buffer_from_the_listener() {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        for send_buffer in [0, 16 * 1024] {
            let l = bind_listener(any, 16, send_buffer).unwrap();
            let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (accepted, _) = l.accept().unwrap();
            assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
            let size = socket2::SockRef::from(&accepted)
                .send_buffer_size()
                .unwrap();
            if send_buffer > 0 {
                // The kernel doubles what it is asked for (bookkeeping).
                assert_eq!(size, 2 * send_buffer, "SO_SNDBUF not inherited");
            }
            // With 0 the kernel's default stands (its size depends on the
            // host's `tcp_wmem`, so nothing to compare it with here).
        }
    }

    #[test]
    fn proc_net_lines_parse_to_address_port_and_state() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0";
        let (ip, port, listening) = parse_proc_net_line(v4).unwrap();
        assert_eq!(ip, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(port, 8080);
        assert!(listening);
        let v6 = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 01 0";
        let (ip, port, listening) = parse_proc_net_line(v6).unwrap();
        assert!(ip.is_unspecified());
        assert_eq!(port, 8080);
        assert!(!listening);
        assert!(overlaps(
            "0.0.0.0".parse().unwrap(),
            "127.0.0.1".parse().unwrap()
        ));
        assert!(!overlaps(
            "127.0.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (shard (1) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 1000 50";
        assert_eq!(parse_proc_stat(stat), Some((250, 75, 123456)));
        assert_eq!(parse_proc_stat("1 (x) S 1"), None);
        assert_eq!(
            boot_time_seconds("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn process_stats_of_this_process_are_plausible() {
        let p = process_stats();
        assert!(p.rss_bytes.unwrap() > 1024 * 1024);
        assert!(p.cpu_seconds.unwrap() >= 0.0);
        // Other tests of this binary open and close fds concurrently: one
        // of a few tries sees exactly the file opened here.
        let counted = (0..50).any(|_| {
            let before = process_stats().open_fds.unwrap();
            let f = std::fs::File::open("/proc/self/stat").unwrap();
            let after = process_stats().open_fds.unwrap();
            drop(f);
            after == before + 1
        });
        assert!(counted, "open_fds never counted one more open file");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = p.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }

    #[test]
    fn a_listening_socket_is_found_and_a_free_port_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(listening_on(addr).unwrap());
        drop(l);
        assert!(!listening_on(addr).unwrap());
    }
}
