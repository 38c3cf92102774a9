//! The few operating-system calls the standard library does not offer:
//! resource limits and signal masks. Each `unsafe` block is a plain libc call
//! on values owned by the caller.
#![allow(unsafe_code)]

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn a_listening_socket_is_found_and_a_free_port_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(listening_on(addr).unwrap());
        drop(l);
        assert!(!listening_on(addr).unwrap());
    }
}
