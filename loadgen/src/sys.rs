//! The system calls the standard library does not offer.

/// Raises the soft open-file limit to the hard limit; returns the limit now
/// in force. Each connection is one file descriptor.
#[allow(unsafe_code)]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and
    // pass by a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass by a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Segments this TCP socket has received, and how many of them carried
/// data (`TCP_INFO`'s `tcpi_segs_in` and `tcpi_data_segs_in`); `None` when
/// the kernel does not answer. On a connection to the server these are the
/// segments the server sent on it.
#[allow(unsafe_code)]
pub fn tcp_segments_in(fd: std::os::fd::RawFd) -> Option<(u64, u64)> {
    // SAFETY: a zeroed tcp_info is valid plain data; getsockopt writes at
    // most `len` bytes into it and updates `len`, both owned here.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        );
        (rc == 0).then(|| {
            (
                u64::from(info.tcpi_segs_in),
                u64::from(info.tcpi_data_segs_in),
            )
        })
    }
}
