//! The last stage: registers, the blocked mask, and letting go.
//!
//! The trampoline is the only thing left of crak-restore in the child. It is unmapped by a
//! system call executed from the trampoline itself; the child is stopped at that call's exit
//! (the page is gone, but the child is in the kernel), where the saved registers are set (with
//! the syscall-restart fix-up for a new task), then the XSAVE state and the blocked mask, and
//! the child is detached. Returning to user space it resumes exactly where it was captured.

use super::plan::TRAMPOLINE_LEN;
use super::RestoreError;
use crate::sys::ptrace::{self, WaitStatus};
use crak_format::record::thread::Thread;

fn fail(what: &str, e: impl std::fmt::Display) -> RestoreError {
    RestoreError::failed(what, e.to_string())
}

/// Resumes the tracee to its next syscall stop, ignoring nothing: any other stop is an error
/// (every signal is blocked at this point, so none is expected).
fn to_syscall_stop(pid: i32) -> Result<(), RestoreError> {
    ptrace::syscall(pid, 0).map_err(|e| fail("PTRACE_SYSCALL", e))?;
    match ptrace::waitpid(pid).map_err(|e| fail("waitpid", e))? {
        WaitStatus::SyscallStop { .. } => Ok(()),
        other => Err(fail(
            "unmapping the trampoline",
            format!("unexpected stop {other:?}"),
        )),
    }
}

/// Unmaps the trampoline, sets the registers and mask, detaches. `xsave` is the saved XSAVE
/// area. After this returns Ok the process runs on its own: this is the point of no return.
pub fn finish(
    pid: i32,
    trampoline: u64,
    thread: &Thread,
    xsave: &[u8],
) -> Result<(), RestoreError> {
    let mut regs = ptrace::getregs(pid).map_err(|e| fail("PTRACE_GETREGS", e))?;
    regs.rax = libc::SYS_munmap as u64;
    regs.orig_rax = u64::MAX;
    regs.rip = trampoline;
    regs.rdi = trampoline;
    regs.rsi = TRAMPOLINE_LEN;
    ptrace::setregs(pid, &regs).map_err(|e| fail("PTRACE_SETREGS", e))?;
    to_syscall_stop(pid)?; // entry
    to_syscall_stop(pid)?; // exit: the trampoline is gone
    let rax = ptrace::getregs(pid)
        .map_err(|e| fail("PTRACE_GETREGS", e))?
        .rax as i64;
    if rax != 0 {
        return Err(fail(
            "unmapping the trampoline",
            format!("munmap returned {rax}"),
        ));
    }
    ptrace::set_xstate(pid, xsave).map_err(|e| fail("PTRACE_SETREGSET(NT_X86_XSTATE)", e))?;
    let gpr = crate::restart::fixup_for_restore(&thread.gpr);
    ptrace::setregs(pid, &gpr).map_err(|e| fail("PTRACE_SETREGS", e))?;
    super::signals::set_blocked(pid, thread.blocked)?;
    super::fault_point("restore-before-detach")?;
    ptrace::detach(pid, 0).map_err(|e| fail("PTRACE_DETACH", e))
}
