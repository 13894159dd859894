//! File descriptor plumbing for a restore child placing descriptors at exact numbers:
//! `dup3(2)`, `fcntl(2)` (`F_DUPFD_CLOEXEC`, `F_SETFL`, `F_SETPIPE_SZ`) and `close(2)` of
//! inherited descriptors by number.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Duplicates `fd` onto the lowest free number `>= min`, close-on-exec:
/// `fcntl(F_DUPFD_CLOEXEC)`.
pub fn dup_at_least(fd: BorrowedFd<'_>, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a valid borrowed fd; the new fd is owned by the returned OwnedFd.
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `n` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// [`dup_at_least`] of a descriptor known by number only (one inherited from the restorer).
pub fn dup_raw_at_least(fd: RawFd, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: fcntl validates `fd` itself (EBADF); the new fd is owned by the returned OwnedFd.
    let n = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `n` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Whether descriptor `fd` of this process is open and refers to a pipe or FIFO.
pub fn is_pipe(fd: RawFd) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes a `struct stat` into the live, properly sized buffer; an invalid fd
    // is reported as EBADF.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return false;
    }
    // SAFETY: fstat succeeded and filled the buffer.
    let st = unsafe { st.assume_init() };
    st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// Places a duplicate of `fd` at exactly `target` (`dup3(2)`), closing whatever was there,
/// with `FD_CLOEXEC` as given. The new descriptor is handed over to the program being restored,
/// so it is returned as a plain number and never closed by this process.
pub fn place_at(fd: BorrowedFd<'_>, target: RawFd, cloexec: bool) -> io::Result<RawFd> {
    if fd.as_raw_fd() == target {
        set_cloexec(fd, cloexec)?;
        return Ok(target);
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 on a valid fd; `target` is a number the caller means to (re)define; the
    // caller owns no Rust object for `target` (it has moved its own fds out of the way).
    check(unsafe { libc::dup3(fd.as_raw_fd(), target, flags) })
}

/// Sets or clears `FD_CLOEXEC`: `fcntl(F_SETFD)`.
pub fn set_cloexec(fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<()> {
    let v = if cloexec { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl on a valid fd with integer arguments.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, v) })?;
    Ok(())
}

/// Sets the open file description's status flags (`O_APPEND`, `O_NONBLOCK`, ...):
/// `fcntl(F_SETFL)`.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd with integer arguments.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Sets a pipe's capacity in bytes: `fcntl(F_SETPIPE_SZ)`. Returns the capacity set.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: i32) -> io::Result<i32> {
    // SAFETY: fcntl on a valid fd with integer arguments.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })
}

/// Closes descriptor number `fd` of the calling process: `close(2)`. For descriptors inherited
/// across `clone3` that no Rust object in this process owns.
pub fn close_inherited(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller guarantees no live Rust object owns `fd` (it is a number listed in
    // /proc/self/fd that this process's code never wrapped).
    check(unsafe { libc::close(fd) })?;
    Ok(())
}

/// Opens `path` with exactly the raw `open(2)` `flags` and `mode` (access mode included, no
/// flags added), returning an owned descriptor. `O_CLOEXEC` is always added; callers place the
/// result with [`place_at`], which sets the final `FD_CLOEXEC`.
pub fn open_raw(path: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string; the new fd is owned by the OwnedFd.
    let n = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: `n` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Moves the file offset: `lseek(2)` with `SEEK_SET`.
pub fn seek_to(fd: BorrowedFd<'_>, pos: u64) -> io::Result<()> {
    let off = i64::try_from(pos).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek on a valid fd with integer arguments.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, libc::SEEK_SET) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process group of the calling process: `getpgrp(2)`.
pub fn process_group() -> i32 {
    // SAFETY: getpgrp has no preconditions.
    unsafe { libc::getpgrp() }
}

/// Whether `fd` is a terminal: `isatty(3)`.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only queries the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}
