//! The threads other than the leader.
//!
//! They are created once the address space is rebuilt, by a `clone3` the leader executes at the
//! trampoline (remote call), with `set_tid` asking for the saved TID (unless `--new-pid`) and the
//! flags of a POSIX thread (`CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
//! CLONE_SYSVSEM`). `PTRACE_O_TRACECLONE` on the leader makes each new thread a tracee that stops
//! before its first user instruction, still on the trampoline. Then, in the new thread (remote
//! calls): the alternate signal stack, `clear_child_tid` and the rseq area, all per-thread kernel
//! state; from the leader: the signals queued for that thread (`rt_tgsigqueueinfo` is allowed
//! with any `si_code` only from inside the thread group). It inherits the leader's mask, which
//! blocks everything until the end.
//!
//! Credentials are per thread too: [`super::creds`] runs in every thread (stage 5). Each thread
//! gets its registers, XSAVE state and mask ([`prepare`]) before the leader leaves the
//! trampoline, and is detached right after the leader ([`detach_all`]).

use super::mm::Remote;
use super::plan::Plan;
use super::RestoreError;
use crate::sys::ptrace::{self, WaitStatus};
use crak_format::record::thread::Thread;
use crak_format::Process;

/// `CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM`.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Size of `struct clone_args` up to and including `set_tid_size` (`CLONE_ARGS_SIZE_VER1`).
const CLONE_ARGS_SIZE: usize = 80;

/// Scratch offsets used while creating threads (the scratch area is shared by all threads).
const ARGS_AT: u64 = 0;
const TID_AT: u64 = 128;
const STACK_T_AT: u64 = 256;
const NAME_AT: u64 = 384;
const SIGINFO_AT: u64 = 512;

/// A thread created in the restored process, stopped under ptrace.
pub struct Created<'i> {
    /// Its TID in the restored process.
    pub tid: i32,
    /// Remote calls in this thread.
    pub remote: Remote,
    /// Its THREAD record.
    pub thread: &'i Thread,
}

fn fail(what: String, e: impl std::fmt::Display) -> RestoreError {
    RestoreError::failed(what, e.to_string())
}

/// `struct clone_args` for a thread with the given `set_tid` array address (0: any TID).
fn clone_args(set_tid: u64) -> [u8; CLONE_ARGS_SIZE] {
    let fields: [u64; 10] = [
        THREAD_FLAGS,
        0, // pidfd
        0, // child_tid
        0, // parent_tid
        0, // exit_signal: a thread has none
        0, // stack: the new thread gets its registers before it runs
        0, // stack_size
        0, // tls: fs_base is part of the registers
        set_tid,
        u64::from(set_tid != 0),
    ];
    let mut b = [0u8; CLONE_ARGS_SIZE];
    for (chunk, v) in b.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Creates every thread of `proc` but the leader, with its per-thread state; `leader` is the
/// leader's executor. On error the threads already created are left for the caller to kill
/// with the whole process ([`super::kill_child`]).
pub fn create<'i>(
    leader: &mut Remote,
    proc: &'i Process<'_>,
    plan: &Plan,
) -> Result<Vec<Created<'i>>, RestoreError> {
    let pid = proc.pid();
    let mut out = Vec::new();
    for &saved_tid in proc.process.tids.iter().filter(|&&t| t != pid) {
        let thread = proc
            .threads
            .iter()
            .find(|t| t.tid == saved_tid)
            .ok_or_else(|| {
                RestoreError::Invalid(format!("thread {saved_tid} has no THREAD record"))
            })?;
        let set_tid = if plan.want_pid.is_some() {
            leader.put(TID_AT, &(saved_tid as i32).to_le_bytes())?
        } else {
            0
        };
        let args = leader.put(ARGS_AT, &clone_args(set_tid))?;
        let tid = leader
            .rs
            .call(libc::SYS_clone3, &[args, CLONE_ARGS_SIZE as u64])
            .map_err(|e| match e.errno() {
                Some(libc::EEXIST) => RestoreError::Refused(format!(
                    "TID {saved_tid} (a thread of process {pid}) is taken; restore with --new-pid to give the threads other TIDs"
                )),
                _ => fail(format!("creating thread {saved_tid} (clone3)"), e),
            })? as i32;
        wait_new_thread(tid)?;
        let mut remote = Remote::new(tid, plan.trampoline);
        thread_state(&mut remote, thread)?;
        queue_signals(leader, proc, saved_tid, tid)?;
        out.push(Created {
            tid,
            remote,
            thread,
        });
    }
    Ok(out)
}

/// Waits for the first stop of a thread created under `PTRACE_O_TRACECLONE`.
fn wait_new_thread(tid: i32) -> Result<(), RestoreError> {
    loop {
        match ptrace::waitpid(tid).map_err(|e| fail(format!("waiting for thread {tid}"), e))? {
            WaitStatus::Stopped { .. } | WaitStatus::Event { .. } => return Ok(()),
            WaitStatus::Continued { .. } => continue,
            other => {
                return Err(fail(
                    format!("thread {tid}"),
                    format!("ended before it could be set up ({other:?})"),
                ))
            }
        }
    }
}

/// The alternate signal stack, `clear_child_tid` and the rseq area, set by the thread itself.
fn thread_state(r: &mut Remote, t: &Thread) -> Result<(), RestoreError> {
    let mut ss = [0u8; 24];
    ss[..8].copy_from_slice(&t.sas_sp.to_le_bytes());
    ss[8..12].copy_from_slice(&(t.sas_flags & !(libc::SS_ONSTACK as u32)).to_le_bytes());
    ss[16..24].copy_from_slice(&t.sas_size.to_le_bytes());
    let a = r.put(STACK_T_AT, &ss)?;
    r.call(
        || {
            format!(
                "sigaltstack({:#x}, {}) in thread {}",
                t.sas_sp, t.sas_size, t.tid
            )
        },
        libc::SYS_sigaltstack,
        &[a, 0],
    )?;
    r.call(
        || {
            format!(
                "set_tid_address({:#x}) in thread {}",
                t.clear_child_tid, t.tid
            )
        },
        libc::SYS_set_tid_address,
        &[t.clear_child_tid],
    )?;
    let (head, len) = super::fork::robust_list(t);
    r.call(
        || format!("set_robust_list({head:#x}, {len}) in thread {}", t.tid),
        libc::SYS_set_robust_list,
        &[head, len],
    )?;
    if let Some(name) = t.ext.as_ref().map(|x| x.name.as_bytes()) {
        let mut buf = [0u8; 16];
        let n = name.len().min(15);
        buf[..n].copy_from_slice(&name[..n]);
        let a = r.put(NAME_AT, &buf)?;
        r.call(
            || format!("prctl(PR_SET_NAME) in thread {}", t.tid),
            libc::SYS_prctl,
            &[libc::PR_SET_NAME as u64, a],
        )?;
    }
    if t.rseq_len != 0 {
        r.call(
            || format!("rseq(register {:#x}) in thread {}", t.rseq_addr, t.tid),
            libc::SYS_rseq,
            &[t.rseq_addr, u64::from(t.rseq_len), 0, u64::from(t.rseq_sig)],
        )?;
    }
    Ok(())
}

/// Queues the signals saved for thread `saved_tid` to its new incarnation `tid`.
fn queue_signals(
    leader: &mut Remote,
    proc: &Process<'_>,
    saved_tid: u32,
    tid: i32,
) -> Result<(), RestoreError> {
    for q in proc.sigqueues.iter().filter(|q| q.tid == saved_tid) {
        for si in &q.siginfos {
            let raw = si.as_bytes();
            if raw.len() != 128 {
                return Err(RestoreError::Invalid(format!(
                    "SIGQUEUE of thread {saved_tid}: a siginfo is {} bytes, not 128",
                    raw.len()
                )));
            }
            let signo = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let a = leader.put(SIGINFO_AT, raw)?;
            leader.call(
                || format!("rt_tgsigqueueinfo({tid}, {})", super::signals::name(signo)),
                libc::SYS_rt_tgsigqueueinfo,
                &[leader.pid as u64, tid as u64, signo as u64, a],
            )?;
        }
    }
    Ok(())
}

/// Registers (with the syscall-restart fix-up for a new task), XSAVE state and blocked mask of
/// a created thread, which stays stopped until [`detach_all`].
pub fn prepare(c: &Created<'_>, xsave: &[u8]) -> Result<(), RestoreError> {
    let tid = c.tid;
    ptrace::set_xstate(tid, xsave).map_err(|e| {
        fail(
            format!("PTRACE_SETREGSET(NT_X86_XSTATE) of thread {tid}"),
            e,
        )
    })?;
    let gpr = crate::restart::fixup_for_restore(&c.thread.gpr);
    ptrace::setregs(tid, &gpr).map_err(|e| fail(format!("PTRACE_SETREGS of thread {tid}"), e))?;
    super::signals::set_blocked(tid, c.thread.blocked)
}

/// Lets every created thread run.
pub fn detach_all(threads: &[Created<'_>]) -> Result<(), RestoreError> {
    for c in threads {
        ptrace::detach(c.tid, 0)
            .map_err(|e| fail(format!("PTRACE_DETACH of thread {}", c.tid), e))?;
    }
    Ok(())
}
