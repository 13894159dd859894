//! File-level calls the standard library lacks: pipes (`pipe2(2)`, `tee(2)`,
//! `F_GETPIPE_SZ`/`F_SETPIPE_SZ` of `fcntl(2)`, `FIONREAD` of `ioctl(2)`).

use super::{check, Result};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `pipe2(2)` with `O_CLOEXEC` (plus `extra` flags such as `O_NONBLOCK`): `(read end, write end)`.
pub fn pipe(extra: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1i32; 2];
    // SAFETY: pipe2 writes two ints into the array.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | extra) };
    check(ret.into(), || "pipe2".to_string())?;
    // SAFETY: the kernel just returned these two fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `tee(2)`: duplicates up to `len` bytes from pipe `from` into pipe `to` without consuming them.
/// Returns the bytes duplicated (0 when `from` is empty and has no writer).
pub fn tee(from: impl AsFd, to: impl AsFd, len: usize, flags: u32) -> Result<usize> {
    let (f, t) = (from.as_fd().as_raw_fd(), to.as_fd().as_raw_fd());
    // SAFETY: tee takes two fds, a length and flags; it touches no user memory.
    let ret = unsafe { libc::tee(f, t, len, flags) };
    check(ret as libc::c_long, || format!("tee({f}, {t}, {len})")).map(|n| n as usize)
}

/// `fcntl(fd, F_GETPIPE_SZ)`: the pipe's capacity in bytes.
pub fn pipe_size(fd: impl AsFd) -> Result<u32> {
    let f = fd.as_fd().as_raw_fd();
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let ret = unsafe { libc::fcntl(f, libc::F_GETPIPE_SZ) };
    check(ret.into(), || format!("fcntl({f}, F_GETPIPE_SZ)")).map(|n| n as u32)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`: sets the pipe's capacity; returns the capacity granted.
pub fn set_pipe_size(fd: impl AsFd, size: u32) -> Result<u32> {
    let f = fd.as_fd().as_raw_fd();
    // SAFETY: F_SETPIPE_SZ takes an int argument.
    let ret = unsafe { libc::fcntl(f, libc::F_SETPIPE_SZ, size as libc::c_int) };
    check(ret.into(), || format!("fcntl({f}, F_SETPIPE_SZ, {size})")).map(|n| n as u32)
}

/// `ioctl(fd, FIONREAD)`: bytes ready to read (for a pipe: bytes buffered).
pub fn fionread(fd: impl AsFd) -> Result<usize> {
    let f = fd.as_fd().as_raw_fd();
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to a live local.
    let ret = unsafe { libc::ioctl(f, libc::FIONREAD, &mut n as *mut libc::c_int) };
    check(ret.into(), || format!("ioctl({f}, FIONREAD)"))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `fcntl(fd, F_GETFL)`: the open-file status flags.
pub fn get_fl(fd: impl AsFd) -> Result<i32> {
    let f = fd.as_fd().as_raw_fd();
    // SAFETY: F_GETFL takes no argument.
    let ret = unsafe { libc::fcntl(f, libc::F_GETFL) };
    check(ret.into(), || format!("fcntl({f}, F_GETFL)")).map(|n| n as i32)
}

/// `fcntl(fd, F_SETFL, flags)`.
pub fn set_fl(fd: impl AsFd, flags: i32) -> Result<()> {
    let f = fd.as_fd().as_raw_fd();
    // SAFETY: F_SETFL takes an int argument.
    let ret = unsafe { libc::fcntl(f, libc::F_SETFL, flags) };
    check(ret.into(), || format!("fcntl({f}, F_SETFL)")).map(drop)
}
