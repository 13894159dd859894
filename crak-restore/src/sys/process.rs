//! Process-level calls: signals (`kill(2)`, `tgkill(2)`), resource limits (`prlimit(2)`),
//! `uname(2)`, `personality(2)` and the page size.

use super::{check, Pid, Result, SysError};

/// `kill(2)`.
pub fn kill(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: kill takes two integers.
    let ret = unsafe { libc::kill(pid, sig) };
    check(ret.into(), || format!("kill({pid}, {})", signal_name(sig))).map(drop)
}

/// `setns(2)` of the calling thread into the network namespace `ns` (an open
/// `/proc/PID/ns/net` or `/run/netns/NAME`): what `ip netns exec` does, for one thread.
pub fn enter_net_namespace(ns: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns takes a descriptor, borrowed for the call, and a flag; it changes only the
    // calling thread's namespace, no memory.
    let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    check(ret.into(), || "setns(CLONE_NEWNET)".to_string()).map(drop)
}

/// `sched_setscheduler(2)` of the calling thread: `SCHED_IDLE` when `idle` (it runs only when
/// no other thread wants the CPU), `SCHED_OTHER` otherwise. Returns whether it was idle before.
pub fn set_idle_priority(idle: bool) -> Result<bool> {
    // SAFETY: sched_getscheduler takes a pid (0: the calling thread).
    let before = unsafe { libc::sched_getscheduler(0) };
    check(before.into(), || "sched_getscheduler".to_string())?;
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that lives across the call, which only reads it.
    let ret = unsafe { libc::sched_setscheduler(0, policy, &param) };
    check(ret.into(), || format!("sched_setscheduler({policy})"))?;
    Ok(before == libc::SCHED_IDLE)
}

/// `tgkill(2)`: signal thread `tid` of thread group `tgid`.
pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: tgkill takes three integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::c_long::from(tgid),
            libc::c_long::from(tid),
            libc::c_long::from(sig),
        )
    };
    check(ret, || {
        format!("tgkill({tgid}, {tid}, {})", signal_name(sig))
    })
    .map(drop)
}

/// `get_robust_list(2)` of thread `tid`: the list head's address (0 when none) and its
/// length argument.
pub fn robust_list(tid: Pid) -> Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: head_ptr and len_ptr point to live local 64-bit integers, the sizes of a
    // pointer and a size_t on x86_64, which the kernel writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            libc::c_long::from(tid),
            &mut head as *mut u64,
            &mut len as *mut u64,
        )
    };
    check(ret, || format!("get_robust_list({tid})")).map(|_| (head, len))
}

/// Number of `RLIMIT_*` resources on Linux (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: u32 = 16;

/// `prlimit(2)` read of `resource` of process `pid`: `(soft, hard)`.
pub fn get_rlimit(pid: Pid, resource: u32) -> Result<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: new_limit is NULL (read only); old_limit points to a live local rlimit64.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            libc::c_long::from(pid),
            libc::c_long::from(resource),
            std::ptr::null::<libc::rlimit64>(),
            &mut old as *mut libc::rlimit64,
        )
    };
    check(ret, || format!("prlimit({pid}, {resource})"))?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// `prlimit(2)` write of `resource` of process `pid` (0 = the caller).
pub fn set_rlimit(pid: Pid, resource: u32, cur: u64, max: u64) -> Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: new_limit points to a live local; old_limit is NULL.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            libc::c_long::from(pid),
            libc::c_long::from(resource),
            &new as *const libc::rlimit64,
            std::ptr::null_mut::<libc::rlimit64>(),
        )
    };
    check(ret, || format!("prlimit({pid}, {resource}, set)")).map(drop)
}

/// `uname(2)`: `(release, nodename)`.
pub fn uname() -> Result<(Vec<u8>, Vec<u8>)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct the pointer refers to.
    let ret = unsafe { libc::uname(&mut u) };
    check(ret.into(), || "uname".to_string())?;
    let field = |f: &[libc::c_char]| -> Vec<u8> {
        f.iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect()
    };
    Ok((field(&u.release), field(&u.nodename)))
}

/// `sysconf(_SC_PAGESIZE)` (sysconf(3)).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// `clock_gettime(CLOCK_REALTIME)` in nanoseconds since the epoch.
pub fn realtime_ns() -> Result<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    check(ret.into(), || "clock_gettime".to_string())?;
    ts.tv_sec
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(ts.tv_nsec))
        .ok_or_else(|| SysError::from_errno("clock_gettime", libc::EOVERFLOW))
}

/// The conventional name of signal `sig` (`SIGUSR1`, `SIGRTMIN+3`), or its number.
pub fn signal_name(sig: i32) -> String {
    match u32::try_from(sig) {
        Ok(n @ 1..=64) => crak_format::names::signal(n),
        _ => sig.to_string(),
    }
}

/// `sigprocmask(SIG_BLOCK)` (sigprocmask(2)) of `signals` in the calling thread; returns the
/// previous mask for [`restore_sigmask`].
pub fn block_signals(signals: &[i32]) -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: `set` is initialised; an invalid signal number only makes sigaddset fail.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    // SAFETY: both pointers refer to live sigset_t values of this frame.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if ret != 0 {
        return Err(SysError::from_errno("pthread_sigmask(SIG_BLOCK)", ret));
    }
    Ok(old)
}

/// `sigprocmask(SIG_SETMASK)` back to a mask returned by [`block_signals`]; signals that arrived
/// meanwhile are delivered now.
pub fn restore_sigmask(old: &libc::sigset_t) -> Result<()> {
    // SAFETY: `old` is a valid sigset_t; the old-mask pointer is NULL.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(SysError::from_errno("pthread_sigmask(SIG_SETMASK)", ret));
    }
    Ok(())
}
