//! System-call restart: what the kernel would have done with a thread stopped inside an
//! interrupted system call, done by hand.
//!
//! A thread stopped by `PTRACE_INTERRUPT` (or any signal) while blocked in a system call shows
//! `orig_rax` = the call's number and `rax` = one of the kernel-internal codes below. On the way
//! back to user space the kernel normally turns that into a restart (`rip -= 2`, the two bytes of
//! the `syscall` instruction; `rax = orig_rax`), or `EINTR` when a handler without `SA_RESTART`
//! runs. That happens only when it still sees those registers at the signal-handling step; after
//! remote system calls (which set `orig_rax = −1`) or in a new task (restore) it does not, so the
//! engine applies the restart itself:
//!
//! - [`fixup_same_task`]: resuming the SAME task (`--leave-running`, a failed capture); the
//!   kernel's `restart_block` is intact, so `-ERESTART_RESTARTBLOCK` becomes `restart_syscall(2)`.
//! - [`fixup_for_restore`]: a NEW task built from an image has no `restart_block`; calls that use
//!   it are re-issued explicitly (relative sleeps with the remaining time the kernel wrote to the
//!   `rem` argument).
//!
//! Both always leave `orig_rax = −1`, so the kernel itself never restarts a second time.

use crak_format::record::thread::Gpr;

/// `-ERESTARTSYS`: restart unless a handler without `SA_RESTART` runs.
pub const ERESTARTSYS: i64 = -512;
/// `-ERESTARTNOINTR`: always restart.
pub const ERESTARTNOINTR: i64 = -513;
/// `-ERESTARTNOHAND`: restart when no handler runs.
pub const ERESTARTNOHAND: i64 = -514;
/// `-ERESTART_RESTARTBLOCK`: restart through `restart_syscall(2)` and the task's `restart_block`.
pub const ERESTART_RESTARTBLOCK: i64 = -516;

/// `__NR_restart_syscall` on x86_64.
pub const NR_RESTART_SYSCALL: u64 = 219;
/// `__NR_nanosleep` on x86_64.
pub const NR_NANOSLEEP: u64 = 35;
/// `__NR_clock_nanosleep` on x86_64.
pub const NR_CLOCK_NANOSLEEP: u64 = 230;
/// `TIMER_ABSTIME`, the absolute-time flag of `clock_nanosleep(2)`.
pub const TIMER_ABSTIME: u64 = 1;

/// Length of the x86_64 `syscall` instruction.
const SYSCALL_LEN: u64 = 2;

/// How a stopped thread's system call is to be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The thread was not inside an interrupted system call.
    None,
    /// `-ERESTARTSYS`, `-ERESTARTNOINTR` or `-ERESTARTNOHAND`: re-execute the same call.
    Restart,
    /// `-ERESTART_RESTARTBLOCK`: continue through the kernel's `restart_block`.
    RestartBlock,
}

/// Classifies the registers of a stopped thread.
pub fn pending(gpr: &Gpr) -> Pending {
    if (gpr.orig_rax as i64) < 0 {
        return Pending::None;
    }
    match gpr.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => Pending::Restart,
        ERESTART_RESTARTBLOCK => Pending::RestartBlock,
        _ => Pending::None,
    }
}

/// Registers to resume the SAME task with after remote system calls: an interrupted call is
/// re-executed (`rax = orig_rax`, `rip -= 2`), `-ERESTART_RESTARTBLOCK` continues with
/// `restart_syscall(2)`; `orig_rax` is −1 afterwards. Registers of a thread that was not in an
/// interrupted call are returned unchanged except for `orig_rax`.
pub fn fixup_same_task(gpr: &Gpr) -> Gpr {
    let mut g = *gpr;
    match pending(gpr) {
        Pending::None => {}
        Pending::Restart => {
            g.rax = gpr.orig_rax;
            g.rip = gpr.rip.wrapping_sub(SYSCALL_LEN);
        }
        Pending::RestartBlock => {
            g.rax = NR_RESTART_SYSCALL;
            g.rip = gpr.rip.wrapping_sub(SYSCALL_LEN);
        }
    }
    g.orig_rax = u64::MAX;
    g
}

/// Registers for a NEW task restored from an image (no kernel `restart_block`):
///
/// - `-ERESTARTSYS`/`-ERESTARTNOINTR`/`-ERESTARTNOHAND`: the call is re-executed as is.
/// - `-ERESTART_RESTARTBLOCK` from `nanosleep(req, rem)`: re-issued as `nanosleep(rem, rem)`,
///   i.e. with the remaining time the kernel wrote to `rem` (if `rem` is NULL the kernel wrote
///   nothing and the full request is slept again).
/// - `-ERESTART_RESTARTBLOCK` from relative `clock_nanosleep(clk, flags, req, rem)`: re-issued
///   with `req = rem` likewise; an absolute one (`TIMER_ABSTIME`) is re-issued as is.
/// - any other `-ERESTART_RESTARTBLOCK` (`poll`, `futex` waits, ...): re-issued with the original
///   arguments (a relative timeout starts over).
///
/// `orig_rax` is −1 afterwards.
pub fn fixup_for_restore(gpr: &Gpr) -> Gpr {
    let mut g = *gpr;
    match pending(gpr) {
        Pending::None => {}
        Pending::Restart => {
            g.rax = gpr.orig_rax;
            g.rip = gpr.rip.wrapping_sub(SYSCALL_LEN);
        }
        Pending::RestartBlock => {
            g.rax = gpr.orig_rax;
            g.rip = gpr.rip.wrapping_sub(SYSCALL_LEN);
            match gpr.orig_rax {
                NR_NANOSLEEP if gpr.rsi != 0 => g.rdi = gpr.rsi,
                NR_CLOCK_NANOSLEEP if gpr.rsi & TIMER_ABSTIME == 0 && gpr.r10 != 0 => {
                    g.rdx = gpr.r10
                }
                _ => {}
            }
        }
    }
    g.orig_rax = u64::MAX;
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_call(nr: u64, code: i64) -> Gpr {
        Gpr {
            orig_rax: nr,
            rax: code as u64,
            rip: 0x7000_1002,
            rdi: 0x1000,
            rsi: 0x2000,
            rdx: 0x3000,
            r10: 0x4000,
            ..Gpr::default()
        }
    }

    #[test]
    fn not_in_syscall_is_unchanged_but_orig_rax() {
        let g = Gpr {
            orig_rax: u64::MAX,
            rax: 5,
            rip: 10,
            ..Gpr::default()
        };
        assert_eq!(fixup_same_task(&g), g);
        assert_eq!(fixup_for_restore(&g), g);
        // A finished call (rax = result) is not restarted.
        let done = in_call(0, 3);
        let f = fixup_same_task(&done);
        assert_eq!((f.rax, f.rip, f.orig_rax), (3, done.rip, u64::MAX));
    }

    #[test]
    fn erestartsys_reexecutes() {
        for code in [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND] {
            let g = in_call(0, code); // read
            for f in [fixup_same_task(&g), fixup_for_restore(&g)] {
                assert_eq!(f.rax, 0);
                assert_eq!(f.rip, 0x7000_1000);
                assert_eq!(f.orig_rax, u64::MAX);
                assert_eq!((f.rdi, f.rsi, f.rdx), (0x1000, 0x2000, 0x3000));
            }
        }
    }

    #[test]
    fn restartblock_same_task_uses_restart_syscall() {
        let g = in_call(NR_NANOSLEEP, ERESTART_RESTARTBLOCK);
        let f = fixup_same_task(&g);
        assert_eq!(f.rax, NR_RESTART_SYSCALL);
        assert_eq!(f.rip, 0x7000_1000);
        assert_eq!(f.orig_rax, u64::MAX);
    }

    #[test]
    fn restartblock_nanosleep_restore_uses_rem() {
        let g = in_call(NR_NANOSLEEP, ERESTART_RESTARTBLOCK);
        let f = fixup_for_restore(&g);
        assert_eq!(f.rax, NR_NANOSLEEP);
        assert_eq!(f.rdi, 0x2000, "request = rem");
        assert_eq!(f.rsi, 0x2000);
        assert_eq!(f.rip, 0x7000_1000);
        // rem NULL: the original request again.
        let mut g0 = g;
        g0.rsi = 0;
        assert_eq!(fixup_for_restore(&g0).rdi, 0x1000);
    }

    #[test]
    fn restartblock_clock_nanosleep() {
        let mut g = in_call(NR_CLOCK_NANOSLEEP, ERESTART_RESTARTBLOCK);
        g.rsi = 0; // relative
        let f = fixup_for_restore(&g);
        assert_eq!((f.rax, f.rdx, f.r10), (NR_CLOCK_NANOSLEEP, 0x4000, 0x4000));
        g.rsi = TIMER_ABSTIME;
        let f = fixup_for_restore(&g);
        assert_eq!(f.rdx, 0x3000, "absolute sleeps keep their deadline");
    }

    #[test]
    fn restartblock_other_call_keeps_args() {
        let g = in_call(7, ERESTART_RESTARTBLOCK); // poll
        let f = fixup_for_restore(&g);
        assert_eq!((f.rax, f.rdi, f.rsi, f.rdx), (7, 0x1000, 0x2000, 0x3000));
        assert_eq!(f.orig_rax, u64::MAX);
    }
}
