//! Executing system calls inside a ptrace-stopped tracee ("remote syscalls").
//!
//! A [`RemoteSyscall`] is bound to a tracee and to the address of an existing `syscall`
//! instruction (`0f 05`) in it: one found in the tracee's `[vdso]` ([`find_syscall_insn`]), or
//! one the caller placed itself (e.g. a restorer's `syscall; int3` trampoline page). The target's
//! code is never written. One call:
//!
//! 1. saves the registers (`PTRACE_GETREGS`);
//! 2. sets `rax` = number, `rdi, rsi, rdx, r10, r8, r9` = arguments, `rip` = the `syscall`
//!    instruction and `orig_rax` = −1, so that the kernel does no syscall-restart processing on
//!    the way out of the current stop;
//! 3. `PTRACE_SYSCALL` to the syscall-entry stop (checked with `PTRACE_GET_SYSCALL_INFO`), and
//!    again to the syscall-exit stop, where `rax` is the result;
//! 4. restores the saved registers.
//!
//! Afterwards the tracee sits in a syscall-exit stop with its original registers. A thread that
//! was stopped inside an interrupted system call (`rax` = −ERESTART…) no longer gets the kernel's
//! automatic restart once remote calls ran: apply [`crate::restart`] before resuming it.
//!
//! Signals that arrive meanwhile show up as signal-delivery-stops. They are suppressed (not
//! delivered while our call runs, so no handler runs on a borrowed register state) and recorded
//! with their `siginfo_t`; the caller re-delivers them when it resumes the tracee
//! ([`RemoteSyscall::take_deferred_signals`]) or records them as pending in an image.
//! Group-stops and `PTRACE_INTERRUPT` stops met on the way are resumed through.

use super::mem;
use super::ptrace::{self, SigInfo, SyscallInfo, WaitStatus};
use super::{Pid, Result, SysError};

/// The x86_64 `syscall` instruction.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// Bytes of one entry of a batch table ([`RemoteSyscall::call_batch`]): the system call number,
/// six arguments and the result, each a little-endian u64.
pub const BATCH_ENTRY: usize = 64;

/// x86_64 code that runs a batch table: with `rbx` = the table and `r12` = the number of
/// entries, for each entry it loads `rax` and `rdi, rsi, rdx, r10, r8, r9`, executes `syscall`,
/// stores `rax` in the entry's result slot, and stops at the first result in −4095..−1; then
/// `int3`, with `r12` = the entries not done.
pub const BATCH_CODE: [u8; 56] = [
    0x4d, 0x85, 0xe4, // 0: test r12, r12
    0x74, 0x32, // 3: jz 55 (done)
    0x48, 0x8b, 0x03, // 5: mov rax, [rbx]
    0x48, 0x8b, 0x7b, 0x08, // 8: mov rdi, [rbx+8]
    0x48, 0x8b, 0x73, 0x10, // 12: mov rsi, [rbx+16]
    0x48, 0x8b, 0x53, 0x18, // 16: mov rdx, [rbx+24]
    0x4c, 0x8b, 0x53, 0x20, // 20: mov r10, [rbx+32]
    0x4c, 0x8b, 0x43, 0x28, // 24: mov r8, [rbx+40]
    0x4c, 0x8b, 0x4b, 0x30, // 28: mov r9, [rbx+48]
    0x0f, 0x05, // 32: syscall
    0x48, 0x89, 0x43, 0x38, // 34: mov [rbx+56], rax
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // 38: cmp rax, -4095
    0x73, 0x09, // 44: jae 55 (done)
    0x48, 0x83, 0xc3, 0x40, // 46: add rbx, 64
    0x49, 0xff, 0xcc, // 50: dec r12
    0xeb, 0xc9, // 53: jmp 0
    0xcc, // 55: done: int3
];

/// Bytes below the stack pointer that the x86_64 ABI reserves for leaf functions.
pub const RED_ZONE: u64 = 128;

/// A signal that arrived while a remote call ran, and was held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferredSignal {
    /// Signal number.
    pub signo: i32,
    /// Its `siginfo_t`, from `PTRACE_GETSIGINFO`.
    pub siginfo: SigInfo,
}

/// A remote-syscall executor for one stopped tracee.
#[derive(Debug)]
pub struct RemoteSyscall {
    pid: Pid,
    syscall_addr: u64,
    deferred: Vec<DeferredSignal>,
}

impl RemoteSyscall {
    /// An executor for tracee `pid` (which must be in a ptrace stop) using the `syscall`
    /// instruction at `syscall_addr` in its address space.
    pub fn new(pid: Pid, syscall_addr: u64) -> Self {
        RemoteSyscall {
            pid,
            syscall_addr,
            deferred: Vec::new(),
        }
    }

    /// An executor using a `syscall` instruction found in the tracee's `[vdso]`.
    pub fn with_vdso(pid: Pid) -> Result<Self> {
        Ok(Self::new(pid, find_syscall_insn(pid)?))
    }

    /// The tracee.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Address of the `syscall` instruction used.
    pub fn syscall_addr(&self) -> u64 {
        self.syscall_addr
    }

    /// Uses another `syscall` instruction from now on (e.g. after the tracee's vDSO moved).
    pub fn set_syscall_addr(&mut self, addr: u64) {
        self.syscall_addr = addr;
    }

    /// Signals held back so far.
    pub fn deferred_signals(&self) -> &[DeferredSignal] {
        &self.deferred
    }

    /// Takes the signals held back so far; the caller must deliver them (or record them).
    pub fn take_deferred_signals(&mut self) -> Vec<DeferredSignal> {
        std::mem::take(&mut self.deferred)
    }

    /// Runs system call `nr` with up to six `args` in the tracee and returns the raw result
    /// (`rax`; −4095..−1 is a negated `errno`). The tracee's registers are restored afterwards.
    pub fn call_raw(&mut self, nr: i64, args: &[u64]) -> Result<i64> {
        if args.len() > 6 {
            return Err(SysError::from_errno(
                "remote syscall: more than 6 arguments",
                libc::EINVAL,
            ));
        }
        let mut a = [0u64; 6];
        a.get_mut(..args.len())
            .unwrap_or(&mut [])
            .copy_from_slice(args);
        let at = self.syscall_addr;
        self.with_regs(
            |regs| {
                regs.rax = nr as u64;
                regs.orig_rax = u64::MAX;
                regs.rip = at;
                regs.rdi = a[0];
                regs.rsi = a[1];
                regs.rdx = a[2];
                regs.r10 = a[3];
                regs.r8 = a[4];
                regs.r9 = a[5];
            },
            |me| me.run(nr),
        )
    }

    /// Saves the registers, sets them with `set`, resumes the tracee with `run`, and puts the
    /// saved registers back whenever the tracee is still in a stop we can use.
    fn with_regs<T>(
        &mut self,
        set: impl FnOnce(&mut crak_format::record::thread::Gpr),
        run: impl FnOnce(&mut Self) -> std::result::Result<T, RunError>,
    ) -> Result<T> {
        let saved = ptrace::getregs(self.pid)?;
        let mut regs = saved;
        set(&mut regs);
        ptrace::setregs(self.pid, &regs)?;
        let result = run(self);
        let restored = match &result {
            Err(RunError::Gone(_)) => Ok(()),
            _ => ptrace::setregs(self.pid, &saved),
        };
        match result {
            Ok(v) => restored.map(|()| v),
            Err(RunError::Gone(e)) | Err(RunError::Sys(e)) => Err(e),
        }
    }

    /// Like [`call_raw`](Self::call_raw) but turns a negated `errno` into an error naming the
    /// call; returns the non-negative result.
    pub fn call(&mut self, nr: i64, args: &[u64]) -> Result<u64> {
        let r = self.call_raw(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(SysError::from_errno(
                format!("remote syscall {} in {}", syscall_name(nr), self.pid),
                (-r) as i32,
            ));
        }
        Ok(r as u64)
    }

    /// Scratch memory of `len` bytes in the tracee, below the red zone of its current stack
    /// pointer (see [`Scratch::below_red_zone`]).
    pub fn scratch(&self, len: usize) -> Result<Scratch> {
        let regs = ptrace::getregs(self.pid)?;
        Scratch::below_red_zone(self.pid, regs.rsp, len)
    }

    /// Resumes the tracee to the entry and then the exit stop of our system call.
    fn run(&mut self, nr: i64) -> std::result::Result<i64, RunError> {
        self.step(nr, false)?;
        self.step(nr, true)?;
        let regs = ptrace::getregs(self.pid).map_err(RunError::Sys)?;
        Ok(regs.rax as i64)
    }

    fn step(&mut self, nr: i64, exit: bool) -> std::result::Result<(), RunError> {
        let pid = self.pid;
        ptrace::syscall(pid, 0).map_err(RunError::Sys)?;
        loop {
            let st = ptrace::waitpid(pid).map_err(RunError::Sys)?;
            match st {
                WaitStatus::Exited { .. } | WaitStatus::Signaled { .. } => {
                    return Err(RunError::Gone(SysError::from_errno(
                        format!(
                            "remote syscall {} in {pid}: the process ended ({st:?})",
                            syscall_name(nr)
                        ),
                        libc::ESRCH,
                    )));
                }
                WaitStatus::SyscallStop { .. }
                | WaitStatus::Stopped {
                    signal: libc::SIGTRAP,
                    ..
                } => {
                    match ptrace::get_syscall_info(pid).map_err(RunError::Sys)? {
                        SyscallInfo::Entry { nr: got, .. } if !exit => {
                            if got != nr as u64 {
                                return Err(RunError::Sys(SysError::from_errno(
                                    format!(
                                        "remote syscall {} in {pid}: entered syscall {got} instead",
                                        syscall_name(nr)
                                    ),
                                    libc::EPROTO,
                                )));
                            }
                            return Ok(());
                        }
                        SyscallInfo::Exit { .. } if exit => return Ok(()),
                        SyscallInfo::None => {
                            // A real SIGTRAP signal-delivery-stop.
                            self.defer(libc::SIGTRAP).map_err(RunError::Sys)?;
                            ptrace::syscall(pid, 0).map_err(RunError::Sys)?;
                        }
                        other => {
                            return Err(RunError::Sys(SysError::from_errno(
                                format!(
                                    "remote syscall {} in {pid}: unexpected stop {other:?}",
                                    syscall_name(nr)
                                ),
                                libc::EPROTO,
                            )));
                        }
                    }
                }
                WaitStatus::Stopped { signal, .. } => {
                    self.defer(signal).map_err(RunError::Sys)?;
                    ptrace::syscall(pid, 0).map_err(RunError::Sys)?;
                }
                WaitStatus::Event { .. } => {
                    ptrace::syscall(pid, 0).map_err(RunError::Sys)?;
                }
                WaitStatus::Continued { .. } => {}
            }
        }
    }

    /// Runs the system calls of a batch table in the tracee with one resume, through the code
    /// of [`BATCH_CODE`] placed at `code` (the caller's, like a trampoline). The table at
    /// `table` holds `count` entries of [`BATCH_ENTRY`] bytes: number, six arguments, and a
    /// slot the code fills with the result. It stops at the first result that is a negated
    /// `errno`. Returns how many entries were not done (0: all succeeded; otherwise the first
    /// not done is the failed one, its result in its slot). The registers are restored
    /// afterwards; signals that arrive meanwhile are held back as in [`Self::call_raw`].
    pub fn call_batch(&mut self, code: u64, table: u64, count: u64) -> Result<u64> {
        let done = code + BATCH_CODE.len() as u64;
        self.with_regs(
            |regs| {
                regs.rip = code;
                regs.orig_rax = u64::MAX;
                regs.rbx = table;
                regs.r12 = count;
            },
            |me| me.run_batch(done),
        )
    }

    /// Resumes the tracee until the batch code's final `int3` (the stop with `rip` = `done`).
    fn run_batch(&mut self, done: u64) -> std::result::Result<u64, RunError> {
        let pid = self.pid;
        ptrace::cont(pid, 0).map_err(RunError::Sys)?;
        loop {
            let st = ptrace::waitpid(pid).map_err(RunError::Sys)?;
            match st {
                WaitStatus::Exited { .. } | WaitStatus::Signaled { .. } => {
                    return Err(RunError::Gone(SysError::from_errno(
                        format!("remote batch in {pid}: the process ended ({st:?})"),
                        libc::ESRCH,
                    )));
                }
                WaitStatus::Stopped { signal, .. } => {
                    if signal == libc::SIGTRAP {
                        let regs = ptrace::getregs(pid).map_err(RunError::Sys)?;
                        if regs.rip == done {
                            return Ok(regs.r12);
                        }
                    }
                    self.defer(signal).map_err(RunError::Sys)?;
                    ptrace::cont(pid, 0).map_err(RunError::Sys)?;
                }
                WaitStatus::SyscallStop { .. } | WaitStatus::Event { .. } => {
                    ptrace::cont(pid, 0).map_err(RunError::Sys)?;
                }
                WaitStatus::Continued { .. } => {}
            }
        }
    }

    fn defer(&mut self, signo: i32) -> Result<()> {
        let siginfo = ptrace::getsiginfo(self.pid)?;
        self.deferred.push(DeferredSignal { signo, siginfo });
        Ok(())
    }
}

enum RunError {
    /// The tracee died: its registers cannot be restored.
    Gone(SysError),
    Sys(SysError),
}

/// A short name for a system call number, for error messages.
pub fn syscall_name(nr: i64) -> String {
    let name = match nr {
        libc::SYS_read => "read",
        libc::SYS_write => "write",
        libc::SYS_openat => "openat",
        libc::SYS_close => "close",
        libc::SYS_mmap => "mmap",
        libc::SYS_mprotect => "mprotect",
        libc::SYS_munmap => "munmap",
        libc::SYS_mremap => "mremap",
        libc::SYS_madvise => "madvise",
        libc::SYS_brk => "brk",
        libc::SYS_rt_sigaction => "rt_sigaction",
        libc::SYS_rt_sigprocmask => "rt_sigprocmask",
        libc::SYS_sigaltstack => "sigaltstack",
        libc::SYS_prctl => "prctl",
        libc::SYS_arch_prctl => "arch_prctl",
        libc::SYS_rseq => "rseq",
        libc::SYS_set_tid_address => "set_tid_address",
        libc::SYS_rt_sigqueueinfo => "rt_sigqueueinfo",
        libc::SYS_rt_tgsigqueueinfo => "rt_tgsigqueueinfo",
        libc::SYS_setresuid => "setresuid",
        libc::SYS_setresgid => "setresgid",
        libc::SYS_setgroups => "setgroups",
        libc::SYS_capset => "capset",
        libc::SYS_getpid => "getpid",
        _ => return format!("#{nr}"),
    };
    name.to_string()
}

/// Finds a `syscall` instruction (`0f 05`) in the `[vdso]` of process `pid` (read from
/// `/proc/PID/maps` and the process's memory) and returns its address.
pub fn find_syscall_insn(pid: Pid) -> Result<u64> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = std::fs::read_to_string(&maps_path)
        .map_err(|e| SysError::io(format!("read {maps_path}"), e))?;
    for line in maps.lines() {
        if !line.ends_with("[vdso]") {
            continue;
        }
        let range = line.split_whitespace().next().unwrap_or("");
        let (s, e) = range.split_once('-').unwrap_or(("", ""));
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        let len = usize::try_from(end.saturating_sub(start))
            .unwrap_or(0)
            .min(1 << 20);
        let code = mem::read_vec(pid, start, len)?;
        if let Some(off) = code.windows(2).position(|w| w == SYSCALL_INSN) {
            return Ok(start + off as u64);
        }
    }
    Err(SysError::from_errno(
        format!("no syscall instruction found in the [vdso] of {pid}"),
        libc::ENOENT,
    ))
}

/// Borrowed memory in a stopped tracee for the pointer arguments of remote calls. The bytes it
/// covers are saved when it is made and written back by [`Scratch::restore`] (or, best effort,
/// when it is dropped).
#[derive(Debug)]
pub struct Scratch {
    pid: Pid,
    addr: u64,
    saved: Vec<u8>,
    restored: bool,
}

impl Scratch {
    /// Scratch memory at `addr..addr+len` of `pid`; saves the bytes there.
    pub fn at(pid: Pid, addr: u64, len: usize) -> Result<Scratch> {
        let saved = mem::read_vec(pid, addr, len)?;
        Ok(Scratch {
            pid,
            addr,
            saved,
            restored: false,
        })
    }

    /// Scratch memory ending below the 128-byte red zone under stack pointer `rsp`, 64-byte
    /// aligned. The stack must already be mapped there (it normally is: the kernel does not grow
    /// stacks for `/proc/PID/mem` access).
    pub fn below_red_zone(pid: Pid, rsp: u64, len: usize) -> Result<Scratch> {
        let addr = rsp
            .checked_sub(RED_ZONE)
            .and_then(|a| a.checked_sub(len as u64))
            .map(|a| a & !63)
            .ok_or_else(|| SysError::from_errno("scratch memory below the stack", libc::EFAULT))?;
        Self::at(pid, addr, len)
    }

    /// Start address in the tracee.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.saved.len()
    }

    /// Whether the scratch area is empty.
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }

    fn bounds(&self, offset: usize, len: usize) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.saved.len() => Ok(self.addr + offset as u64),
            _ => Err(SysError::from_errno(
                "scratch memory: access out of bounds",
                libc::EINVAL,
            )),
        }
    }

    /// Writes `data` at `offset` into the scratch area.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let a = self.bounds(offset, data.len())?;
        mem::write(self.pid, a, data)
    }

    /// Reads `len` bytes at `offset` of the scratch area.
    pub fn read(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        let a = self.bounds(offset, len)?;
        mem::read_vec(self.pid, a, len)
    }

    /// Writes the saved bytes back.
    pub fn restore(mut self) -> Result<()> {
        self.restored = true;
        mem::write(self.pid, self.addr, &self.saved)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.restored {
            let _ = mem::write(self.pid, self.addr, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ptrace;
    use std::process::{Child, Command};

    /// A stopped, seized `sleep` that is killed when dropped.
    struct Victim(Child);

    impl Victim {
        fn start() -> Victim {
            let child = Command::new("sleep")
                .arg("100")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id() as Pid;
            // Let it enter nanosleep.
            for _ in 0..200 {
                let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if st.contains(") S ") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            ptrace::seize_default(pid).expect("seize");
            ptrace::interrupt(pid).expect("interrupt");
            let st = ptrace::waitpid(pid).expect("wait");
            assert!(st.is_event_stop(), "{st:?}");
            Victim(child)
        }
        fn pid(&self) -> Pid {
            self.0.id() as Pid
        }
    }

    impl Drop for Victim {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn remote_getpid_and_registers_restored() {
        let v = Victim::start();
        let pid = v.pid();
        let before = ptrace::getregs(pid).unwrap();
        let mut r = RemoteSyscall::with_vdso(pid).unwrap();
        assert_eq!(r.call(libc::SYS_getpid, &[]).unwrap(), pid as u64);
        // An error comes back as errno.
        let e = r.call(libc::SYS_close, &[9999]).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EBADF));
        let after = ptrace::getregs(pid).unwrap();
        assert_eq!(before, after);
        // The interrupted nanosleep shows a restart code.
        assert_eq!(
            crate::restart::pending(&before),
            crate::restart::Pending::RestartBlock
        );
    }

    #[test]
    fn scratch_memory_round_trip() {
        let v = Victim::start();
        let pid = v.pid();
        let mut r = RemoteSyscall::with_vdso(pid).unwrap();
        let s = r.scratch(64).unwrap();
        let orig = s.read(0, 64).unwrap();
        // rt_sigaction(SIGUSR1, NULL, &old, 8) writes 32 bytes into scratch.
        s.write(0, &[0xAA; 32]).unwrap();
        r.call(
            libc::SYS_rt_sigaction,
            &[libc::SIGUSR1 as u64, 0, s.addr(), 8],
        )
        .unwrap();
        let old = s.read(0, 32).unwrap();
        assert_eq!(&old[..8], &[0u8; 8], "SIG_DFL handler");
        let addr = s.addr();
        s.restore().unwrap();
        assert_eq!(mem::read_vec(pid, addr, 64).unwrap(), orig);
    }

    #[test]
    fn a_batch_runs_in_order_and_stops_at_the_first_error() {
        let v = Victim::start();
        let pid = v.pid();
        let before = ptrace::getregs(pid).unwrap();
        let mut r = RemoteSyscall::with_vdso(pid).unwrap();
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let page = r
            .call(libc::SYS_mmap, &[0, 8192, prot, flags, u64::MAX, 0])
            .unwrap();
        mem::write(pid, page, &BATCH_CODE).unwrap();
        let table_at = page + 4096;
        let entry = |nr: i64, a0: u64| {
            let mut e = nr.to_le_bytes().to_vec();
            e.extend_from_slice(&a0.to_le_bytes());
            e.extend_from_slice(&[0u8; 40]);
            e.extend_from_slice(&u64::MAX.to_le_bytes());
            assert_eq!(e.len(), BATCH_ENTRY);
            e
        };
        let result = |i: usize| {
            let b = mem::read_vec(pid, table_at + (i * BATCH_ENTRY) as u64 + 56, 8).unwrap();
            u64::from_le_bytes(b.try_into().unwrap())
        };
        // All succeed: nothing is left, every result is filled in.
        let table = [entry(libc::SYS_getpid, 0), entry(libc::SYS_getppid, 0)].concat();
        mem::write(pid, table_at, &table).unwrap();
        crate::sys::process::tgkill(pid, pid, libc::SIGWINCH).unwrap();
        assert_eq!(r.call_batch(page, table_at, 2).unwrap(), 0);
        assert_eq!(result(0), pid as u64);
        assert_eq!(result(1), u64::from(std::process::id()));
        assert_eq!(r.take_deferred_signals().len(), 1, "SIGWINCH held back");
        // The third of four fails: two are left, the failed one's errno is in its slot, and
        // the fourth never ran.
        let table = [
            entry(libc::SYS_getpid, 0),
            entry(libc::SYS_getpid, 0),
            entry(libc::SYS_close, 9999),
            entry(libc::SYS_getpid, 0),
        ]
        .concat();
        mem::write(pid, table_at, &table).unwrap();
        assert_eq!(r.call_batch(page, table_at, 4).unwrap(), 2);
        assert_eq!(result(1), pid as u64);
        assert_eq!(result(2) as i64, -i64::from(libc::EBADF));
        assert_eq!(result(3), u64::MAX);
        assert_eq!(ptrace::getregs(pid).unwrap(), before);
        // And the tracee still takes ordinary remote calls.
        assert_eq!(r.call(libc::SYS_getpid, &[]).unwrap(), pid as u64);
    }

    #[test]
    fn signals_arriving_meanwhile_are_held_back_with_their_siginfo() {
        let v = Victim::start();
        let pid = v.pid();
        let before = ptrace::getregs(pid).unwrap();
        crate::sys::process::tgkill(pid, pid, libc::SIGWINCH).unwrap();
        let mut r = RemoteSyscall::with_vdso(pid).unwrap();
        assert_eq!(r.call(libc::SYS_getpid, &[]).unwrap(), pid as u64);
        let d = r.take_deferred_signals();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].signo, libc::SIGWINCH);
        // si_signo is the first int of siginfo_t.
        assert_eq!(
            i32::from_le_bytes(d[0].siginfo[..4].try_into().unwrap()),
            libc::SIGWINCH
        );
        assert_eq!(ptrace::getregs(pid).unwrap(), before);
        assert!(r.deferred_signals().is_empty());
    }
}
