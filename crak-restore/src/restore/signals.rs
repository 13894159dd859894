//! Signals. Dispositions, the alternate stack and the queued signals are installed by the child
//! itself in stage 2 (see [`super::fork`]) while it blocks every signal; this module holds the
//! parent's last step, the saved blocked mask, set just before detach so that no signal can be
//! delivered while the registers are not yet the program's.

use super::RestoreError;
use crate::sys::ptrace;

/// The conventional name of a signal, for messages.
pub fn name(signo: i32) -> String {
    crate::sys::process::signal_name(signo)
}

/// Sets the thread's blocked mask (`PTRACE_SETSIGMASK`). `SIGKILL` and `SIGSTOP` cannot be
/// blocked and are left out.
pub fn set_blocked(pid: i32, mask: u64) -> Result<(), RestoreError> {
    let unblockable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
    ptrace::setsigmask(pid, mask & !unblockable)
        .map_err(|e| RestoreError::failed("setting the signal mask", e.to_string()))
}
