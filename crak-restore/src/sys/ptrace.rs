//! `ptrace(2)` and `waitpid(2)` wrappers for x86_64: seizing, stopping, resuming, registers,
//! signal masks and queues, rseq configuration and typed wait statuses.
//!
//! Every request goes through the raw `ptrace` system call (not the glibc wrapper, whose
//! `PTRACE_PEEK*` convention differs), so the kernel's documented semantics apply as written in
//! `ptrace(2)`.

use super::{check, Pid, Result, SysError};
use crak_format::record::thread::Gpr;

/// Raw `ptrace` request numbers (`<linux/ptrace.h>`, `<asm/ptrace-abi.h>`).
#[allow(missing_docs)]
pub mod req {
    pub const TRACEME: u32 = 0;
    pub const CONT: u32 = 7;
    pub const SINGLESTEP: u32 = 9;
    pub const GETREGS: u32 = 12;
    pub const SETREGS: u32 = 13;
    pub const DETACH: u32 = 17;
    pub const SYSCALL: u32 = 24;
    pub const SETOPTIONS: u32 = 0x4200;
    pub const GETEVENTMSG: u32 = 0x4201;
    pub const GETSIGINFO: u32 = 0x4202;
    pub const SETSIGINFO: u32 = 0x4203;
    pub const GETREGSET: u32 = 0x4204;
    pub const SETREGSET: u32 = 0x4205;
    pub const SEIZE: u32 = 0x4206;
    pub const INTERRUPT: u32 = 0x4207;
    pub const LISTEN: u32 = 0x4208;
    pub const PEEKSIGINFO: u32 = 0x4209;
    pub const GETSIGMASK: u32 = 0x420a;
    pub const SETSIGMASK: u32 = 0x420b;
    pub const GET_SYSCALL_INFO: u32 = 0x420e;
    pub const GET_RSEQ_CONFIGURATION: u32 = 0x420f;
}

/// `PTRACE_O_*` options for [`seize`] and [`setoptions`].
#[allow(missing_docs)]
pub mod options {
    pub const TRACESYSGOOD: u32 = 0x1;
    pub const TRACEFORK: u32 = 0x2;
    pub const TRACEVFORK: u32 = 0x4;
    pub const TRACECLONE: u32 = 0x8;
    pub const TRACEEXEC: u32 = 0x10;
    pub const TRACEVFORKDONE: u32 = 0x20;
    pub const TRACEEXIT: u32 = 0x40;
    pub const TRACESECCOMP: u32 = 0x80;
    pub const EXITKILL: u32 = 0x10_0000;
    pub const SUSPEND_SECCOMP: u32 = 0x20_0000;
}

/// `PTRACE_EVENT_*` values reported in the high byte of a wait status.
#[allow(missing_docs)]
pub mod event {
    pub const FORK: i32 = 1;
    pub const VFORK: i32 = 2;
    pub const CLONE: i32 = 3;
    pub const EXEC: i32 = 4;
    pub const VFORK_DONE: i32 = 5;
    pub const EXIT: i32 = 6;
    pub const SECCOMP: i32 = 7;
    /// Group-stop or `PTRACE_INTERRUPT` stop of a seized tracee.
    pub const STOP: i32 = 128;
}

/// `NT_PRSTATUS`: the general-purpose register set.
pub const NT_PRSTATUS: u32 = 1;
/// `NT_X86_XSTATE`: the XSAVE area.
pub const NT_X86_XSTATE: u32 = 0x202;
/// Size of the kernel's `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// Largest XSAVE area this module reads (the format's bound, spec §3.8).
pub const XSTATE_MAX: usize = 65536;

/// One kernel `siginfo_t`, raw.
pub type SigInfo = [u8; SIGINFO_SIZE];

fn raw(request: u32, pid: Pid, addr: u64, data: u64) -> libc::c_long {
    // SAFETY: the raw ptrace system call takes (request, pid, addr, data); every caller in this
    // module passes for `addr`/`data` either plain integers or pointers to live, writable
    // buffers at least as large as the request writes (documented in ptrace(2) per request).
    unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            libc::c_long::from(request),
            libc::c_long::from(pid),
            addr,
            data,
        )
    }
}

fn ptrace(name: &str, request: u32, pid: Pid, addr: u64, data: u64) -> Result<libc::c_long> {
    check(raw(request, pid, addr, data), || {
        format!("ptrace(PTRACE_{name}, {pid})")
    })
}

/// `PTRACE_SEIZE` (ptrace(2)): attach to `pid` without stopping it, with `opts`
/// ([`options`]). Use [`seize_default`] for the engine's usual options.
pub fn seize(pid: Pid, opts: u32) -> Result<()> {
    ptrace("SEIZE", req::SEIZE, pid, 0, u64::from(opts)).map(drop)
}

/// [`seize`] with `PTRACE_O_TRACESYSGOOD`, so syscall-stops report `SIGTRAP | 0x80`.
pub fn seize_default(pid: Pid) -> Result<()> {
    seize(pid, options::TRACESYSGOOD)
}

/// `PTRACE_INTERRUPT` (ptrace(2)): stop a seized tracee; the stop is reported as
/// [`WaitStatus::Event`] with [`event::STOP`] and `SIGTRAP` (or a group-stop signal).
pub fn interrupt(pid: Pid) -> Result<()> {
    ptrace("INTERRUPT", req::INTERRUPT, pid, 0, 0).map(drop)
}

/// `PTRACE_TRACEME` (ptrace(2)): make the calling process a tracee of its parent.
pub fn traceme() -> Result<()> {
    ptrace("TRACEME", req::TRACEME, 0, 0, 0).map(drop)
}

/// `PTRACE_SETOPTIONS` (ptrace(2)).
pub fn setoptions(pid: Pid, opts: u32) -> Result<()> {
    ptrace("SETOPTIONS", req::SETOPTIONS, pid, 0, u64::from(opts)).map(drop)
}

fn sig_data(sig: i32) -> u64 {
    u64::try_from(sig).unwrap_or(0)
}

/// `PTRACE_CONT` (ptrace(2)): resume, delivering `sig` (0 for none).
pub fn cont(pid: Pid, sig: i32) -> Result<()> {
    ptrace("CONT", req::CONT, pid, 0, sig_data(sig)).map(drop)
}

/// `PTRACE_SYSCALL` (ptrace(2)): resume until the next syscall-entry or -exit stop,
/// delivering `sig` (0 for none).
pub fn syscall(pid: Pid, sig: i32) -> Result<()> {
    ptrace("SYSCALL", req::SYSCALL, pid, 0, sig_data(sig)).map(drop)
}

/// `PTRACE_SINGLESTEP` (ptrace(2)): execute one instruction, delivering `sig` (0 for none).
pub fn singlestep(pid: Pid, sig: i32) -> Result<()> {
    ptrace("SINGLESTEP", req::SINGLESTEP, pid, 0, sig_data(sig)).map(drop)
}

/// `PTRACE_LISTEN` (ptrace(2)): let a group-stopped seized tracee stay stopped but report
/// later events.
pub fn listen(pid: Pid) -> Result<()> {
    ptrace("LISTEN", req::LISTEN, pid, 0, 0).map(drop)
}

/// `PTRACE_DETACH` (ptrace(2)): detach and resume, delivering `sig` (0 for none).
pub fn detach(pid: Pid, sig: i32) -> Result<()> {
    ptrace("DETACH", req::DETACH, pid, 0, sig_data(sig)).map(drop)
}

/// `PTRACE_GETEVENTMSG` (ptrace(2)): the message of the last `PTRACE_EVENT_*` stop.
pub fn geteventmsg(pid: Pid) -> Result<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace(
        "GETEVENTMSG",
        req::GETEVENTMSG,
        pid,
        0,
        std::ptr::addr_of_mut!(msg) as u64,
    )?;
    Ok(msg)
}

/// The kernel's x86_64 `struct user_regs_struct` (`<sys/user.h>`): 27 registers in exactly the
/// order of [`Gpr`] and of the THREAD record (spec §3.7).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs(pub [u64; 27]);

impl From<Gpr> for UserRegs {
    fn from(g: Gpr) -> Self {
        UserRegs(g.to_array())
    }
}

impl From<UserRegs> for Gpr {
    fn from(r: UserRegs) -> Self {
        Gpr::from_array(r.0)
    }
}

/// `PTRACE_GETREGS` (ptrace(2)): the tracee's general-purpose registers.
pub fn getregs(pid: Pid) -> Result<Gpr> {
    let mut regs = UserRegs::default();
    ptrace(
        "GETREGS",
        req::GETREGS,
        pid,
        0,
        std::ptr::addr_of_mut!(regs) as u64,
    )?;
    Ok(regs.into())
}

/// `PTRACE_SETREGS` (ptrace(2)): set the tracee's general-purpose registers.
pub fn setregs(pid: Pid, gpr: &Gpr) -> Result<()> {
    let regs = UserRegs::from(*gpr);
    ptrace(
        "SETREGS",
        req::SETREGS,
        pid,
        0,
        std::ptr::addr_of!(regs) as u64,
    )
    .map(drop)
}

/// `PTRACE_GETREGSET` (ptrace(2)) of register set `nt_type` (e.g. [`NT_X86_XSTATE`]): the
/// bytes the kernel returns, at most `max_len`.
pub fn getregset(pid: Pid, nt_type: u32, max_len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; max_len];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace(
        "GETREGSET",
        req::GETREGSET,
        pid,
        u64::from(nt_type),
        std::ptr::addr_of_mut!(iov) as u64,
    )?;
    buf.truncate(iov.iov_len.min(max_len));
    Ok(buf)
}

/// `PTRACE_SETREGSET` (ptrace(2)) of register set `nt_type` from `data`.
pub fn setregset(pid: Pid, nt_type: u32, data: &[u8]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // The kernel only reads through iov_base for SETREGSET.
    ptrace(
        "SETREGSET",
        req::SETREGSET,
        pid,
        u64::from(nt_type),
        std::ptr::addr_of_mut!(iov) as u64,
    )
    .map(drop)
}

/// The XSAVE area of the tracee (`PTRACE_GETREGSET`, `NT_X86_XSTATE`), standard format, as
/// long as the kernel's XSAVE size for this CPU.
pub fn get_xstate(pid: Pid) -> Result<Vec<u8>> {
    getregset(pid, NT_X86_XSTATE, XSTATE_MAX)
}

/// Sets the XSAVE area of the tracee (`PTRACE_SETREGSET`, `NT_X86_XSTATE`).
pub fn set_xstate(pid: Pid, area: &[u8]) -> Result<()> {
    setregset(pid, NT_X86_XSTATE, area)
}

/// `PTRACE_GETSIGMASK` (ptrace(2)): the blocked signal mask (bit n−1 = signal n).
pub fn getsigmask(pid: Pid) -> Result<u64> {
    let mut mask: u64 = 0;
    ptrace(
        "GETSIGMASK",
        req::GETSIGMASK,
        pid,
        8,
        std::ptr::addr_of_mut!(mask) as u64,
    )?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK` (ptrace(2)): set the blocked signal mask (the kernel ignores
/// SIGKILL and SIGSTOP).
pub fn setsigmask(pid: Pid, mask: u64) -> Result<()> {
    ptrace(
        "SETSIGMASK",
        req::SETSIGMASK,
        pid,
        8,
        std::ptr::addr_of!(mask) as u64,
    )
    .map(drop)
}

/// `PTRACE_GETSIGINFO` (ptrace(2)): the `siginfo_t` of the signal that caused the current
/// signal-delivery-stop.
pub fn getsiginfo(pid: Pid) -> Result<SigInfo> {
    let mut si: SigInfo = [0; SIGINFO_SIZE];
    ptrace(
        "GETSIGINFO",
        req::GETSIGINFO,
        pid,
        0,
        si.as_mut_ptr() as u64,
    )?;
    Ok(si)
}

/// `PTRACE_SETSIGINFO` (ptrace(2)).
pub fn setsiginfo(pid: Pid, si: &SigInfo) -> Result<()> {
    ptrace("SETSIGINFO", req::SETSIGINFO, pid, 0, si.as_ptr() as u64).map(drop)
}

/// Which queue [`peeksiginfo`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigQueueKind {
    /// The thread's own queue.
    Thread,
    /// The process-wide (shared) queue (`PTRACE_PEEKSIGINFO_SHARED`).
    Shared,
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// `PTRACE_PEEKSIGINFO` (ptrace(2)): every queued `siginfo_t` of the thread's or the process's
/// queue, in queue order, without dequeuing them.
pub fn peeksiginfo(pid: Pid, which: SigQueueKind) -> Result<Vec<SigInfo>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; BATCH];
        let args = PeekSigInfoArgs {
            off: out.len() as u64,
            flags: match which {
                SigQueueKind::Thread => 0,
                SigQueueKind::Shared => 1,
            },
            nr: BATCH as i32,
        };
        let n = ptrace(
            "PEEKSIGINFO",
            req::PEEKSIGINFO,
            pid,
            std::ptr::addr_of!(args) as u64,
            buf.as_mut_ptr() as u64,
        )?;
        let n = usize::try_from(n).unwrap_or(0).min(BATCH);
        out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// A thread's registered rseq area (`struct ptrace_rseq_configuration`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    /// Address of the registered `struct rseq` (0: none).
    pub addr: u64,
    /// Registered length (0: none).
    pub len: u32,
    /// Abort signature.
    pub sig: u32,
    /// Flags (currently always 0).
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawRseqConfig {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (ptrace(2), Linux 5.13): the thread's rseq registration.
pub fn get_rseq_configuration(pid: Pid) -> Result<RseqConfig> {
    let mut c = RawRseqConfig::default();
    ptrace(
        "GET_RSEQ_CONFIGURATION",
        req::GET_RSEQ_CONFIGURATION,
        pid,
        std::mem::size_of::<RawRseqConfig>() as u64,
        std::ptr::addr_of_mut!(c) as u64,
    )?;
    Ok(RseqConfig {
        addr: c.rseq_abi_pointer,
        len: c.rseq_abi_size,
        sig: c.signature,
        flags: c.flags,
    })
}

/// What a tracee is doing at a ptrace stop, from `PTRACE_GET_SYSCALL_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallInfo {
    /// Not a syscall stop (e.g. a signal-delivery-stop or an event stop).
    None,
    /// Syscall-entry stop: the number and the six arguments.
    Entry {
        /// System call number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// Syscall-exit stop: the return value.
    Exit {
        /// Return value (negative errno on error).
        rval: i64,
        /// Whether the kernel flags it as an error.
        is_error: bool,
    },
    /// Seccomp stop.
    Seccomp {
        /// System call number.
        nr: u64,
    },
}

/// `PTRACE_GET_SYSCALL_INFO` (ptrace(2), Linux 5.3): which kind of syscall stop the tracee is
/// in, if any.
pub fn get_syscall_info(pid: Pid) -> Result<SyscallInfo> {
    let mut buf = [0u8; 128];
    ptrace(
        "GET_SYSCALL_INFO",
        req::GET_SYSCALL_INFO,
        pid,
        buf.len() as u64,
        buf.as_mut_ptr() as u64,
    )?;
    let u64_at = |off: usize| -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = buf.get(off..off + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    };
    Ok(match buf[0] {
        1 => {
            let mut args = [0u64; 6];
            for (i, a) in args.iter_mut().enumerate() {
                *a = u64_at(32 + 8 * i);
            }
            SyscallInfo::Entry {
                nr: u64_at(24),
                args,
            }
        }
        2 => SyscallInfo::Exit {
            rval: u64_at(24) as i64,
            is_error: buf[32] != 0,
        },
        3 => SyscallInfo::Seccomp { nr: u64_at(24) },
        _ => SyscallInfo::None,
    })
}

/// A decoded `waitpid(2)` status of a traced or child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// The process exited with `code`.
    Exited {
        /// Who.
        pid: Pid,
        /// Exit status.
        code: i32,
    },
    /// The process was killed by `signal`.
    Signaled {
        /// Who.
        pid: Pid,
        /// Terminating signal.
        signal: i32,
        /// Whether it dumped core.
        core: bool,
    },
    /// Signal-delivery-stop: `signal` is about to be delivered (resume with it to deliver it,
    /// with 0 to suppress it).
    Stopped {
        /// Who.
        pid: Pid,
        /// The signal.
        signal: i32,
    },
    /// Syscall-entry or syscall-exit stop (`SIGTRAP | 0x80`, needs `PTRACE_O_TRACESYSGOOD`).
    SyscallStop {
        /// Who.
        pid: Pid,
    },
    /// `PTRACE_EVENT_*` stop. [`event::STOP`] with `SIGTRAP` is a `PTRACE_INTERRUPT` stop; with
    /// `SIGSTOP`/`SIGTSTP`/`SIGTTIN`/`SIGTTOU` it is a group-stop of a seized tracee.
    Event {
        /// Who.
        pid: Pid,
        /// `PTRACE_EVENT_*` value.
        event: i32,
        /// The stop signal.
        signal: i32,
    },
    /// The process was resumed by `SIGCONT` (`WCONTINUED`).
    Continued {
        /// Who.
        pid: Pid,
    },
}

impl WaitStatus {
    /// Decodes a raw `wait` status for `pid`.
    pub fn from_raw(pid: Pid, status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited {
                pid,
                code: libc::WEXITSTATUS(status),
            }
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled {
                pid,
                signal: libc::WTERMSIG(status),
                core: libc::WCOREDUMP(status),
            }
        } else if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let ev = (status >> 16) & 0xffff;
            if ev != 0 {
                WaitStatus::Event {
                    pid,
                    event: ev,
                    signal: sig,
                }
            } else if sig == libc::SIGTRAP | 0x80 {
                WaitStatus::SyscallStop { pid }
            } else {
                WaitStatus::Stopped { pid, signal: sig }
            }
        } else {
            WaitStatus::Continued { pid }
        }
    }

    /// The pid the status is about.
    pub fn pid(&self) -> Pid {
        match *self {
            WaitStatus::Exited { pid, .. }
            | WaitStatus::Signaled { pid, .. }
            | WaitStatus::Stopped { pid, .. }
            | WaitStatus::SyscallStop { pid }
            | WaitStatus::Event { pid, .. }
            | WaitStatus::Continued { pid } => pid,
        }
    }

    /// Whether the process is gone (exited or killed).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            WaitStatus::Exited { .. } | WaitStatus::Signaled { .. }
        )
    }

    /// Whether this is a `PTRACE_INTERRUPT` stop or a group-stop of a seized tracee.
    pub fn is_event_stop(&self) -> bool {
        matches!(
            self,
            WaitStatus::Event {
                event: event::STOP,
                ..
            }
        )
    }
}

fn wait_raw(pid: Pid, flags: i32) -> Result<Option<WaitStatus>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int through the pointer, which points to a live local.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags | libc::__WALL) };
        if ret == -1 {
            let e = SysError::last(format!("waitpid({pid})"));
            if e.errno() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some(WaitStatus::from_raw(ret, status)));
    }
}

/// `waitpid(pid, &status, __WALL)` (waitpid(2)): blocks until `pid` (or any child/tracee for
/// −1) changes state; retries on `EINTR`.
pub fn waitpid(pid: Pid) -> Result<WaitStatus> {
    match wait_raw(pid, 0)? {
        Some(s) => Ok(s),
        None => Err(SysError::from_errno(
            format!("waitpid({pid})"),
            libc::ECHILD,
        )),
    }
}

/// `waitpid(pid, &status, __WALL | WNOHANG)`: `None` when nothing changed state yet.
pub fn waitpid_nohang(pid: Pid) -> Result<Option<WaitStatus>> {
    wait_raw(pid, libc::WNOHANG)
}

/// `waitpid` with extra raw flags (e.g. `WCONTINUED`, `WNOHANG`); `__WALL` is always added.
pub fn waitpid_flags(pid: Pid, flags: i32) -> Result<Option<WaitStatus>> {
    wait_raw(pid, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        assert_eq!(
            WaitStatus::from_raw(5, 3 << 8),
            WaitStatus::Exited { pid: 5, code: 3 }
        );
        assert_eq!(
            WaitStatus::from_raw(5, libc::SIGKILL),
            WaitStatus::Signaled {
                pid: 5,
                signal: libc::SIGKILL,
                core: false
            }
        );
        // Stopped: 0x7f in the low byte, the signal in the next, the event above.
        let stopped = |sig: i32, ev: i32| 0x7f | (sig << 8) | (ev << 16);
        assert_eq!(
            WaitStatus::from_raw(5, stopped(libc::SIGUSR1, 0)),
            WaitStatus::Stopped {
                pid: 5,
                signal: libc::SIGUSR1
            }
        );
        assert_eq!(
            WaitStatus::from_raw(5, stopped(libc::SIGTRAP | 0x80, 0)),
            WaitStatus::SyscallStop { pid: 5 }
        );
        let ev = WaitStatus::from_raw(5, stopped(libc::SIGTRAP, event::STOP));
        assert!(ev.is_event_stop());
        assert_eq!(ev.pid(), 5);
        assert!(!ev.is_gone());
        assert_eq!(
            WaitStatus::from_raw(5, 0xffff),
            WaitStatus::Continued { pid: 5 }
        );
    }

    #[test]
    fn user_regs_round_trip_through_gpr() {
        let mut a = [0u64; 27];
        for (i, v) in a.iter_mut().enumerate() {
            *v = i as u64 * 0x1111;
        }
        let g = Gpr::from(UserRegs(a));
        assert_eq!(g.rip, 16 * 0x1111);
        assert_eq!(g.orig_rax, 15 * 0x1111);
        assert_eq!(UserRegs::from(g).0, a);
        assert_eq!(std::mem::size_of::<UserRegs>(), 27 * 8);
    }
}
