//! Process creation for restore: `clone3(2)` with `set_tid`, and the few calls a freshly
//! cloned child needs before it hands itself to its tracer.

use std::io;

/// Which side of a [`clone3_process`] call this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the new child process.
    Child,
    /// In the parent; the child's pid.
    Parent(i32),
}

/// The kernel's `struct clone_args` (linux/sched.h), version 2 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Number of threads of the calling process, from `/proc/self/task`.
fn own_thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Creates a child process like `fork(2)` with `clone3(2)`: no flags, `exit_signal = SIGCHLD`,
/// and, when `pid` is given, `set_tid = [pid]` so that the child gets exactly that PID in the
/// caller's PID namespace (needs `CAP_SYS_ADMIN`; fails with `EEXIST` when the PID is taken).
///
/// The child runs on a copy of the caller's memory. To keep that sound the caller must be
/// single-threaded (no lock can be held by a thread that does not exist in the child); this is
/// checked, and a multi-threaded caller gets an error.
///
/// Man page: clone(2).
pub fn clone3_process(pid: Option<i32>) -> io::Result<Forked> {
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    fork_clone3(args, pid)
}

/// A process that does nothing but hold PID `pid` until it is killed: `clone3(2)` with
/// `set_tid = [pid]` and no exit signal (its end notifies no one; reap it with `waitpid` and
/// `__WALL`), whose child side only waits in `pause(2)`. Needs `CAP_SYS_ADMIN`; `EEXIST` when
/// the PID is taken. The caller must be single-threaded, as for [`clone3_process`].
///
/// Man page: clone(2).
pub fn clone3_stand_in(pid: i32) -> io::Result<i32> {
    match fork_clone3(CloneArgs::default(), Some(pid))? {
        Forked::Child => loop {
            // SAFETY: pause has no preconditions; the child waits here until it is killed.
            unsafe { libc::pause() };
        },
        Forked::Parent(p) => Ok(p),
    }
}

/// `clone3(2)` without `CLONE_VM` (a child on a copy of the caller's memory) with `args`, and
/// `set_tid = [pid]` when `pid` is given. Refuses a multi-threaded caller.
fn fork_clone3(mut args: CloneArgs, pid: Option<i32>) -> io::Result<Forked> {
    if own_thread_count()? != 1 {
        return Err(io::Error::other(
            "clone3 for restore needs a single-threaded caller",
        ));
    }
    let tid_array: [libc::pid_t; 1] = [pid.unwrap_or(0)];
    if pid.is_some() {
        args.set_tid = tid_array.as_ptr() as u64;
        args.set_tid_size = 1;
    }
    // SAFETY: `args` is a valid, fully initialised clone_args of the size passed; `set_tid`
    // points at `tid_array`, which outlives the call. The callers pass no CLONE_VM, so the
    // child gets its own copy of memory, and the caller was checked to be single-threaded, so
    // no lock or allocator state is left inconsistent in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        0 => Ok(Forked::Child),
        n if n > 0 => Ok(Forked::Parent(n as i32)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Ends the calling process at once with `code`, running no destructors or `atexit` handlers
/// and flushing no buffers: `_exit(2)`. The only way a restore child may end.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Stops the calling process with `SIGSTOP` sent to itself (`kill(2)` on `getpid()`), so that
/// its tracer (after `PTRACE_TRACEME`) sees a signal-delivery stop.
pub fn stop_self() -> io::Result<()> {
    // SAFETY: plain system calls on integers.
    let r = unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// New anonymous read+write memory of `len` bytes at exactly `addr`, never replacing a mapping
/// (`MAP_FIXED_NOREPLACE`); `shared` picks `MAP_SHARED` over `MAP_PRIVATE`. Returns its address.
fn map_anon_at(addr: u64, len: usize, shared: bool) -> io::Result<*mut libc::c_void> {
    if addr & 0xfff != 0 || len & 0xfff != 0 || len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let kind = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory in use can
    // be clobbered; the result is checked to be exactly `addr`.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            kind | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if p as u64 != addr {
        // Old kernels ignore MAP_FIXED_NOREPLACE and treat it as a hint.
        // SAFETY: `p` is the mapping just created, of `len` bytes.
        unsafe { libc::munmap(p, len) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(p)
}

/// Maps `len` bytes of new shared anonymous memory at exactly `addr` (read+write). Used by the
/// root of a restored tree for the memory its processes share; the caller never touches it
/// itself.
pub fn map_shared_anon(addr: u64, len: usize) -> io::Result<()> {
    map_anon_at(addr, len, true).map(drop)
}

/// Ends the calling process so that its parent's `waitpid` reports `status`: `_exit` with the
/// code, or death by the signal (default action, no core file). Used to recreate a zombie.
pub fn end_with_status(status: u32) -> ! {
    let sig = (status & 0x7f) as i32;
    if sig == 0 {
        exit_now(((status >> 8) & 0xff) as i32);
    }
    let _ = set_raw_sigaction(sig, &KernelSigaction::default());
    let no_core = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a valid rlimit64 for the call.
    unsafe { libc::setrlimit64(libc::RLIMIT_CORE, &no_core) };
    let bit: u64 = 1u64.checked_shl((sig - 1) as u32).unwrap_or(0);
    // SAFETY: rt_sigprocmask reads 8 bytes from the pointer, valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_UNBLOCK,
            &bit as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    // SAFETY: plain system calls on integers.
    unsafe { libc::kill(libc::getpid(), sig) };
    exit_now(128 + sig)
}

/// Waits, forever, for a tracer to seize the calling process: `pause(2)` in a loop. With every
/// signal blocked nothing but `SIGKILL` or a ptrace stop interrupts it; the tracer replaces the
/// registers before the process runs again.
pub fn wait_for_tracer() -> ! {
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}

/// Moves process `pid` (0: the caller) into process group `pgid` (0: its own pid):
/// `setpgid(2)`.
pub fn set_pgid(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: setpgid takes two integers.
    let r = unsafe { libc::setpgid(pid, pgid) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks every signal that can be blocked in the calling thread: `rt_sigprocmask(2)` with
/// `SIG_SETMASK` and a full set.
pub fn block_all_signals() -> io::Result<()> {
    let all: u64 = !0;
    // SAFETY: the raw syscall reads 8 bytes from `&all`, a valid u64; the old set pointer is
    // NULL.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Adds the signals of `mask` (bit n-1 = signal n) to the calling thread's blocked set:
/// `rt_sigprocmask(2)` with `SIG_BLOCK`.
pub fn block_signals(mask: u64) -> io::Result<()> {
    // SAFETY: the raw syscall reads 8 bytes from `&mask`; the old set pointer is NULL.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A signal taken by [`wait_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenSignal {
    /// Signal number.
    pub signo: i32,
    /// `si_code`: e.g. `SI_USER` (0) from `kill(2)`, `SI_KERNEL` (0x80) for a terminal's
    /// `^C`.
    pub code: i32,
}

/// Waits up to `timeout_ms` for one of the (blocked) signals of `mask` and takes it from the
/// pending set: `rt_sigtimedwait(2)`. `None` on timeout or interruption.
pub fn wait_signal(mask: u64, timeout_ms: u64) -> Option<TakenSignal> {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let mut info = [0u8; 128];
    // SAFETY: the kernel reads the 8-byte set and the timespec, both live locals, and writes
    // at most 128 bytes of siginfo into `info`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &mask as *const u64,
            info.as_mut_ptr(),
            &ts as *const libc::timespec,
            8usize,
        )
    };
    // siginfo_t: si_signo, si_errno, si_code (i32 each).
    let code = i32::from_le_bytes([info[8], info[9], info[10], info[11]]);
    (r > 0).then_some(TakenSignal {
        signo: r as i32,
        code,
    })
}

/// A signal disposition in the kernel's layout (`struct kernel_sigaction` on x86_64:
/// handler, flags, restorer, mask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    /// Handler address, `SIG_DFL` (0) or `SIG_IGN` (1).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked during the handler (bit n-1 = signal n).
    pub mask: u64,
}

impl KernelSigaction {
    /// The 32 bytes the kernel reads, e.g. to pass to a remote `rt_sigaction`.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, v) in
            out.chunks_exact_mut(8)
                .zip([self.handler, self.flags, self.restorer, self.mask])
        {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Sets the disposition of `signo` in the calling process: raw `rt_sigaction(2)` with the
/// kernel's structure, so that any handler address (meaningful only in the restored memory)
/// can be installed. The caller must have blocked the signal (it must not be delivered to a
/// handler address that is not mapped yet).
pub fn set_raw_sigaction(signo: i32, act: &KernelSigaction) -> io::Result<()> {
    let raw: [u64; 4] = [act.handler, act.flags, act.restorer, act.mask];
    // SAFETY: `raw` is the 32-byte kernel_sigaction the syscall reads; the old-action pointer
    // is NULL; sigsetsize is 8 as the kernel requires on x86_64. Installing a handler address
    // does not touch memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo,
            raw.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the calling thread's alternate signal stack: `sigaltstack(2)`.
pub fn set_sigaltstack(sp: u64, size: u64, flags: u32) -> io::Result<()> {
    let ss = libc::stack_t {
        ss_sp: sp as *mut libc::c_void,
        ss_flags: flags as i32,
        ss_size: size as usize,
    };
    // SAFETY: `ss` is a valid stack_t; the kernel only records the address, it does not access
    // the stack memory here. The old-stack pointer is NULL.
    let r = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Queues a signal with the given raw 128-byte `siginfo_t` on the calling process: to the
/// process-wide queue (`rt_sigqueueinfo(2)`) when `thread` is false, else to the calling
/// thread's own queue (`rt_tgsigqueueinfo(2)`). Queuing to oneself is allowed for any
/// `si_code`. The signal should be blocked, or it is delivered at once.
pub fn queue_signal_to_self(signo: i32, siginfo: &[u8; 128], thread: bool) -> io::Result<()> {
    // SAFETY: getpid/gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    // SAFETY: the kernel reads 128 bytes from `siginfo`, a valid array of that size.
    let r = unsafe {
        if thread {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                signo,
                siginfo.as_ptr(),
            )
        } else {
            libc::syscall(libc::SYS_rt_sigqueueinfo, pid, signo, siginfo.as_ptr())
        }
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the address the kernel clears (and futex-wakes) when the calling thread exits:
/// `set_tid_address(2)`. The address is not accessed now.
pub fn set_tid_address(addr: u64) {
    // SAFETY: the kernel only records the pointer; it is written at thread exit with a
    // fault-tolerant store.
    unsafe {
        libc::syscall(libc::SYS_set_tid_address, addr);
    }
}

/// `set_robust_list(2)` for the calling thread: the kernel records the pointer and walks the
/// list, with fault-tolerant accesses, when the thread exits.
pub fn set_robust_list(head: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: the kernel only records the pointer and checks `len`; it reads the list at
    // thread exit with accesses that tolerate faults.
    let ret = unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the file mode creation mask: `umask(2)`.
pub fn set_umask(mask: u32) {
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
}

/// Starts a new session with the caller as leader: `setsid(2)`.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid has no preconditions.
    let r = unsafe { libc::setsid() };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling process a tracee of its parent: `ptrace(PTRACE_TRACEME)`.
pub fn trace_me() -> io::Result<()> {
    // SAFETY: PTRACE_TRACEME ignores the other arguments.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_TRACEME,
            0,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps `len` bytes of fresh anonymous private memory at exactly `addr` in the calling process,
/// failing rather than replacing anything already there (`mmap(2)` with
/// `MAP_FIXED_NOREPLACE`), copies `code` to its start and makes it read+execute
/// (`mprotect(2)`). Used by a restore child to hold the trampoline and scratch area its tracer
/// drives; the caller never jumps there itself.
pub fn map_trampoline(addr: u64, len: usize, code: &[u8]) -> io::Result<()> {
    if code.len() > len {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let p = map_anon_at(addr, len, false)?;
    // SAFETY: `p` is a fresh writable mapping of `len` >= code.len() bytes, owned by us.
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len());
    }
    // SAFETY: only the first page is made executable; the region is ours.
    let r = unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
