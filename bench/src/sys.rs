//! The only libc calls of the bench: clock ticks per second and SIGTERM.
#![allow(unsafe_code)]

/// Clock ticks per second, the unit of `/proc/<pid>/stat` CPU times.
#[must_use]
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf takes an integer name, touches no memory of ours and
    // is thread-safe; it returns -1 on error, handled below.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory; `pid` is
    // a child we spawned and have not yet reaped, so it cannot name another
    // process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
