//! The only libc calls of the bench: clock ticks per second, SIGTERM, CPU
//! affinity (`--pin` without `taskset`) and the CPU time of reaped children.
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

/// CPU time (user + system) of every child process this process has
/// reaped so far, and of their reaped descendants, in seconds
/// (`getrusage(RUSAGE_CHILDREN)`). The difference around one child's
/// `wait` is that child's CPU when no other child is reaped meanwhile.
#[must_use]
pub fn reaped_children_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_CHILDREN)
}

/// CPU seconds (user + system) of this whole process so far, every thread
/// included (`getrusage(RUSAGE_SELF)`).
#[must_use]
pub fn process_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_SELF)
}

/// User + system seconds from `getrusage(who)` (0 if it fails).
fn rusage_cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: a zeroed rusage is valid plain data; getrusage writes only
    // into it.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut u) != 0 {
            return 0.0;
        }
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
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

/// Pins the calling thread to `cpu`; processes it spawns afterwards inherit
/// the mask. Used for `--pin` when `taskset` is not installed.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "cpu out of range",
        ));
    }
    // SAFETY: cpu_set_t is plain data for which all-zeroes is the empty set;
    // CPU_SET writes inside it (cpu < CPU_SETSIZE was checked), and
    // sched_setaffinity(0, …) reads `size_of::<cpu_set_t>()` bytes of it for
    // the calling thread only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
