//! Waiting for several things at once: `signalfd(2)` (signals as readable file descriptors) and
//! `poll(2)`. The periodic capture supervisor sleeps until its next capture, the target's exit
//! (its pidfd becomes readable) or a termination signal, whichever comes first.

use super::{check, Result, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A `signalfd(2)` for a set of signals. The signals must be blocked in every thread (see
/// [`super::process::block_signals`]) or they are delivered the usual way instead.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// `signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC)` for `signals`.
    pub fn new(signals: &[i32]) -> Result<SignalFd> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: `set` is initialised; an invalid signal number only makes sigaddset fail.
            if unsafe { libc::sigaddset(&mut set, s) } != 0 {
                return Err(SysError::from_errno(
                    format!("sigaddset({s})"),
                    libc::EINVAL,
                ));
            }
        }
        // SAFETY: signalfd reads the sigset through the pointer, which refers to a live local.
        let ret = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        let fd = check(ret.into(), || "signalfd".to_string())?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(SignalFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }

    /// The descriptor, for [`poll_readable`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Reads one pending signal (`read(2)` of a `struct signalfd_siginfo`); `None` when none is
    /// pending.
    pub fn take(&self) -> Result<Option<i32>> {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: read writes at most `len` bytes into `info`, which is exactly that large.
        let ret = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::addr_of_mut!(info).cast(),
                len,
            )
        };
        if ret < 0 {
            let e = SysError::last("read(signalfd)");
            if e.errno() == Some(libc::EAGAIN) {
                return Ok(None);
            }
            return Err(e);
        }
        if ret as usize != len {
            return Err(SysError::from_errno(
                "read(signalfd): short read",
                libc::EIO,
            ));
        }
        Ok(Some(info.ssi_signo as i32))
    }
}

/// `poll(2)` for readability of `fds` for at most `timeout`; returns, per fd, whether it is
/// readable (or hung up). Retries on `EINTR` with the time left.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<Vec<bool>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = i32::try_from(
            left.as_millis()
                .saturating_add(u128::from(!left.subsec_nanos().is_multiple_of(1_000_000))),
        )
        .unwrap_or(i32::MAX);
        // SAFETY: the pointer and length describe `pfds`, a live vector of pollfd structs that
        // poll only reads and writes within.
        let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if ret < 0 {
            let e = SysError::last("poll");
            if e.errno() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(pfds
            .iter()
            .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process;

    #[test]
    fn a_blocked_signal_makes_the_signalfd_readable() {
        // SIGURG: ignored by default, so nothing else in the test process cares about it.
        let old = process::block_signals(&[libc::SIGURG]).unwrap();
        let sfd = SignalFd::new(&[libc::SIGURG]).unwrap();
        assert_eq!(sfd.take().unwrap(), None);
        let r = poll_readable(&[sfd.as_fd()], Duration::from_millis(10)).unwrap();
        assert_eq!(r, vec![false]);
        // The thread's own pending set: signalfd reads the calling thread's signals.
        let tid = this_thread_id();
        process::tgkill(std::process::id() as i32, tid, libc::SIGURG).unwrap();
        let r = poll_readable(&[sfd.as_fd()], Duration::from_secs(5)).unwrap();
        assert_eq!(r, vec![true]);
        assert_eq!(sfd.take().unwrap(), Some(libc::SIGURG));
        assert_eq!(sfd.take().unwrap(), None);
        process::restore_sigmask(&old).unwrap();
    }

    fn this_thread_id() -> i32 {
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .expect("/proc/thread-self")
    }
}
