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

/// What a TCP socket has received, from `TCP_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpReceived {
    /// Segments received (`tcpi_segs_in`), pure ACKs included.
    pub segments: u64,
    /// Of those, the segments that carried data (`tcpi_data_segs_in`).
    pub data_segments: u64,
    /// Payload bytes received (`tcpi_bytes_received`).
    pub bytes: u64,
}

/// What this TCP socket has received; `None` when the kernel does not
/// answer. On a connection to the server: the segments and bytes the
/// server sent on it.
#[allow(unsafe_code)]
pub fn tcp_received(fd: std::os::fd::RawFd) -> Option<TcpReceived> {
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
        (rc == 0).then(|| TcpReceived {
            segments: u64::from(info.tcpi_segs_in),
            data_segments: u64::from(info.tcpi_data_segs_in),
            bytes: info.tcpi_bytes_received,
        })
    }
}
