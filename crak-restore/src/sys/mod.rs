//! The only module with `unsafe`: thin, typed wrappers over Linux system calls.
//!
//! Every wrapper is safe to call, names the system call and its man page in its doc comment,
//! and reports failure as a [`SysError`] that carries the call's name and the `errno`.

pub mod anonfd;
pub mod clone;
pub mod cpu;
pub mod fdops;
pub mod fs;
pub mod fsid;
pub mod inet;
pub mod kcmp;
pub mod mapfile;
pub mod mem;
pub mod objects;
pub mod openat2;
pub mod pidfd;
pub mod prctl;
pub mod process;
pub mod ptrace;
pub mod remote;
pub mod signalfd;
pub mod slots;
pub mod sysvipc;
pub mod unixsock;
pub mod waitid;

use std::io;

/// A process or thread id as the kernel sees it.
pub type Pid = libc::pid_t;

/// A failed system call: which call (and for what), and the `errno` it returned.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct SysError {
    /// The call that failed, e.g. `ptrace(PTRACE_SEIZE, 1234)`.
    pub call: String,
    /// The error the kernel returned.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// An error for `call` with the current thread's `errno`.
    pub fn last(call: impl Into<String>) -> Self {
        SysError {
            call: call.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// An error for `call` with an explicit `errno` value.
    pub fn from_errno(call: impl Into<String>, errno: i32) -> Self {
        SysError {
            call: call.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// An error for `call` from an [`io::Error`].
    pub fn io(call: impl Into<String>, source: io::Error) -> Self {
        SysError {
            call: call.into(),
            source,
        }
    }

    /// The `errno` value, when the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result of a system-call wrapper.
pub type Result<T> = std::result::Result<T, SysError>;

/// Turns a `-1`-on-error return value into a [`Result`], reading `errno` on failure.
fn check(ret: libc::c_long, call: impl FnOnce() -> String) -> Result<libc::c_long> {
    if ret == -1 {
        Err(SysError::last(call()))
    } else {
        Ok(ret)
    }
}
