//! Anonymous-inode file descriptors: eventfd, signalfd, timerfd and epoll.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ret` is a new descriptor just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `eventfd(count, flags)` (eventfd(2)); `count` above `u32::MAX` is written after creation.
pub fn eventfd(count: u64, semaphore: bool) -> io::Result<OwnedFd> {
    let flags = libc::EFD_CLOEXEC | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: eventfd takes two integers.
    let fd = owned(unsafe { libc::eventfd(0, flags) })?;
    if count != 0 {
        let b = count.to_ne_bytes();
        // SAFETY: `b` is 8 readable bytes, the size eventfd expects.
        let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), b.len()) };
        if n != 8 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// `signalfd(-1, mask, SFD_CLOEXEC)` (signalfd(2)); bit n−1 of `mask` is signal n.
pub fn signalfd(mask: u64) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in 1..=64 {
        if mask & (1u64 << (sig - 1)) != 0 {
            // SAFETY: `set` is valid; an invalid number only makes sigaddset fail.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: `set` is a valid, initialised sigset_t that outlives the call.
    owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// `ioctl(TFD_IOC_SET_TICKS)`: `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// A timerfd on `clockid` that expires `value_ns` from now (0: disarmed), then every
/// `interval_ns`, with `ticks` expirations already pending (`TFD_IOC_SET_TICKS`, which needs a
/// kernel built with checkpoint/restore support).
pub fn timerfd(clockid: u32, value_ns: u64, interval_ns: u64, ticks: u64) -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes two integers.
    let fd = owned(unsafe { libc::timerfd_create(clockid as libc::c_int, libc::TFD_CLOEXEC) })?;
    if value_ns != 0 {
        let spec = libc::itimerspec {
            it_interval: timespec(interval_ns),
            it_value: timespec(value_ns),
        };
        // SAFETY: `spec` is a valid itimerspec for the call; the old value is not wanted.
        check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    }
    // After timerfd_settime, which clears the count.
    if ticks != 0 {
        // SAFETY: the ioctl reads one u64 from the pointer, which is valid for the call.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) })?;
    }
    Ok(fd)
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes one integer.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` on descriptor numbers.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid epoll_event for the call; the fds are plain integers (a wrong
    // number only makes the call fail).
    check(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) })
}
