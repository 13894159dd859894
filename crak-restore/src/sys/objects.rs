//! memfds, inotify instances and file handles: the kernel objects of FD kinds 15 and 16.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ret` is a new descriptor just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// `F_ADD_SEALS`.
const F_ADD_SEALS: libc::c_int = 1033;
/// `F_GET_SEALS`.
const F_GET_SEALS: libc::c_int = 1034;

/// `memfd_create(name, flags | MFD_CLOEXEC)` (memfd_create(2)).
pub fn memfd_create(name: &[u8], flags: u32) -> io::Result<OwnedFd> {
    let mut z = name.to_vec();
    if z.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    z.push(0);
    // SAFETY: `z` is a NUL-terminated string that outlives the call.
    owned(unsafe { libc::memfd_create(z.as_ptr().cast(), flags | libc::MFD_CLOEXEC) })
}

/// `fcntl(fd, F_GET_SEALS)`: the seals of a memfd (0 for a file that cannot be sealed).
pub fn get_seals(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: F_GET_SEALS takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GET_SEALS) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINVAL) {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(r as u32)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: u32) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_ADD_SEALS, seals as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `inotify_init1(flags | IN_CLOEXEC)` (inotify_init1(2)).
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes an integer.
    owned(unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) })
}

/// `inotify_add_watch(fd, path, mask)` (inotify_add_watch(2)); returns the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &[u8], mask: u32) -> io::Result<i32> {
    let mut z = path.to_vec();
    if z.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    z.push(0);
    // SAFETY: `z` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), z.as_ptr().cast(), mask) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// `inotify_rm_watch(fd, wd)` (inotify_rm_watch(2)).
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: two integers.
    if unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `open_by_handle_at(mount_fd, handle, O_PATH)` (open_by_handle_at(2), needs
/// `CAP_DAC_READ_SEARCH`): the inode a file handle names, as an `O_PATH` descriptor.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> io::Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; int handle_type; unsigned char f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: `buf` holds a complete `struct file_handle` of `handle.len()` handle bytes and
    // outlives the call; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    owned(r as libc::c_int)
}

/// Queues a signal held back during remote calls in thread `tid` of `pid` again, to that
/// thread: with its `siginfo_t` (`rt_tgsigqueueinfo(2)`, allowed for the negative `si_code`s of
/// timers and queued signals), else as a plain `tgkill`. Best effort: the process may be gone.
pub fn requeue_signal(pid: i32, tid: i32, signo: i32, siginfo: &super::ptrace::SigInfo) {
    let bytes: &[u8] = siginfo;
    // SAFETY: `bytes` is a complete 128-byte siginfo_t that outlives the call; the kernel only
    // reads it.
    let r = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, signo, bytes.as_ptr()) };
    if r < 0 {
        let _ = super::process::tgkill(pid, tid, signo);
    }
}
