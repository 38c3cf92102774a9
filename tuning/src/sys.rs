//! The few operating-system calls the standard library does not offer:
//! resource limits, the page size and the io_uring probe. This is the only
//! module of the crate with `unsafe`; each block is one libc call on memory
//! owned by the caller.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::readings::{Rlimit, UNLIMITED};

/// Which resource limit to read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resource {
    /// `RLIMIT_NOFILE`: open files.
    Nofile,
    /// `RLIMIT_MEMLOCK`: locked memory, bytes.
    Memlock,
}

/// `getrlimit` for this process. `RLIM_INFINITY` becomes [`UNLIMITED`].
pub(crate) fn rlimit(resource: Resource) -> io::Result<Rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let rc = match resource {
        // SAFETY: getrlimit writes into `lim`, which we own; nothing else is touched.
        Resource::Nofile => unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) },
        // SAFETY: as above.
        Resource::Memlock => unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) },
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let value = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            UNLIMITED
        } else {
            v
        }
    };
    Ok(Rlimit {
        soft: value(lim.rlim_cur),
        hard: value(lim.rlim_max),
    })
}

/// The page size in bytes, or `None` if `sysconf` does not say.
pub(crate) fn page_size() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; no memory is passed.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0)
}

/// Size of `struct io_uring_params` (linux/io_uring.h): ten `u32`s
/// (sq_entries … resv[3]) and the two 40-byte offset structs.
const IO_URING_PARAMS_BYTES: usize = 120;

/// Asks the kernel for a one-entry io_uring and closes it at once.
///
/// `Ok(())` when the ring was created; otherwise the errno, e.g. `ENOSYS`
/// (no io_uring or a seccomp filter), `EPERM` (`kernel.io_uring_disabled`
/// or a policy), `ENOMEM` (locked memory on kernels before 5.12).
pub(crate) fn probe_io_uring() -> io::Result<()> {
    // All-zero params: no flags, no SQPOLL, reserved fields zero as the
    // kernel requires. `u64` words give the struct's 8-byte alignment.
    let mut params = [0u64; IO_URING_PARAMS_BYTES / 8];
    let entries: libc::c_long = 1;
    // SAFETY: io_uring_setup(entries, params) reads and writes exactly one
    // struct io_uring_params (120 bytes) at the pointer, which `params`
    // provides (owned, zeroed, aligned, live for the call). It returns a new
    // file descriptor or -1 with errno set, and touches no other memory.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries,
            params.as_mut_ptr().cast::<libc::c_void>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd)
        .map_err(|_| io::Error::other("io_uring_setup returned an out-of-range descriptor"))?;
    // SAFETY: `fd` was just returned by the kernel to us and nothing else
    // holds it; OwnedFd closes it exactly once when dropped.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}
