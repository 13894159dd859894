//! pidfds: `pidfd_open(2)`, `pidfd_getfd(2)`, `pidfd_send_signal(2)`.

use super::{check, Pid, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `pidfd_open(2)`: a file descriptor referring to process `pid`.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes (pid, flags) by value and returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            libc::c_long::from(pid),
            0 as libc::c_long,
        )
    };
    let fd = check(ret, || format!("pidfd_open({pid})"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_getfd(2)`: a duplicate, in this process, of file descriptor `target_fd` of the process
/// behind `pidfd` (needs `PTRACE_MODE_ATTACH_REALCREDS` over it). The new fd is close-on-exec.
pub fn pidfd_getfd(pidfd: &OwnedFd, target_fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes (pidfd, targetfd, flags) by value and returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(target_fd),
            0 as libc::c_long,
        )
    };
    let fd = check(ret, || format!("pidfd_getfd(fd {target_fd})"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_send_signal(2)` with no `siginfo` (like `kill(2)`).
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> Result<()> {
    // SAFETY: the info pointer is NULL, which the call accepts; the other arguments are values.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(sig),
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    check(ret, || format!("pidfd_send_signal({sig})")).map(drop)
}
