//! Process and thread state: PROCESS, CREDS, MM, RLIMITS, SIGACTIONS, THREAD, XSAVE and SIGQUEUE
//! (spec §3.2–§3.9), from `/proc`, ptrace and remote system calls in the frozen target.

use super::freeze::Frozen;
use super::Error;
use crate::procfs::{self, Stat, Status};
use crate::sys::process;
use crate::sys::ptrace::{self, SigQueueKind};
use crak_format::record::{
    creds::Creds,
    mm::Mm,
    process::ProcessRecord,
    rlimits::{Rlimit, Rlimits},
    sigactions::{SigAction, SigActions},
    sigqueue::SigQueue,
    thread::{Thread, ThreadExt},
    xsave::Xsave,
};
use crak_format::Blob;

/// `PR_GET_SECUREBITS`.
const PR_GET_SECUREBITS: u64 = 27;
/// `PR_GET_TID_ADDRESS`.
const PR_GET_TID_ADDRESS: u64 = 40;
/// Offset of `XSTATE_BV` in an XSAVE area (the XSAVE header follows the 512-byte legacy area).
const XSTATE_BV_OFFSET: usize = 512;

fn status_err(pid: i32, what: String) -> Error {
    Error::Other(format!("/proc/{pid}/status: {what}"))
}

/// PROCESS (§3.2).
pub fn process_record(
    pid: i32,
    tids: &[i32],
    stat: &Stat,
    status: &Status,
) -> Result<ProcessRecord, Error> {
    let personality = procfs::read_string(pid, "personality")?;
    let personality = u32::from_str_radix(personality.trim(), 16)
        .map_err(|_| Error::Other(format!("/proc/{pid}/personality: {personality:?}")))?;
    Ok(ProcessRecord {
        pid: pid as u32,
        ppid: stat.ppid.max(0) as u32,
        pgid: stat.pgrp.max(0) as u32,
        sid: stat.session.max(0) as u32,
        personality,
        umask: status.octal("Umask").map_err(|w| status_err(pid, w))?,
        flags: 0,
        comm: stat.comm.clone().into(),
        exe: procfs::readlink(pid, "exe")?.into(),
        cwd: procfs::readlink(pid, "cwd")?.into(),
        root: procfs::readlink(pid, "root")?.into(),
        cmdline: procfs::read(pid, "cmdline")?.into(),
        environ: procfs::read(pid, "environ")?.into(),
        tids: tids.iter().map(|&t| t as u32).collect(),
    })
}

/// CREDS (§3.3); securebits via a remote `prctl(PR_GET_SECUREBITS)`.
pub fn creds(frozen: &mut Frozen, status: &Status) -> Result<Creds, Error> {
    let pid = frozen.pid();
    let four = |key: &str| -> Result<[u32; 4], Error> {
        let v = status.decimals(key).map_err(|w| status_err(pid, w))?;
        match v.as_slice() {
            [a, b, c, d] => Ok([*a, *b, *c, *d]),
            _ => Err(status_err(pid, format!("{key}: expected 4 ids"))),
        }
    };
    let hex = |key: &str| status.hex(key).map_err(|w| status_err(pid, w));
    let [uid, euid, suid, fsuid] = four("Uid")?;
    let [gid, egid, sgid, fsgid] = four("Gid")?;
    let securebits = frozen
        .remote()?
        .call(libc::SYS_prctl, &[PR_GET_SECUREBITS])? as u32;
    Ok(Creds {
        pid: pid as u32,
        uid,
        euid,
        suid,
        fsuid,
        gid,
        egid,
        sgid,
        fsgid,
        cap_inheritable: hex("CapInh")?,
        cap_permitted: hex("CapPrm")?,
        cap_effective: hex("CapEff")?,
        cap_bounding: hex("CapBnd")?,
        cap_ambient: hex("CapAmb").unwrap_or(0),
        securebits,
        no_new_privs: status.decimal("NoNewPrivs").unwrap_or(0) as u32,
        groups: status.decimals("Groups").map_err(|w| status_err(pid, w))?,
    })
}

/// MM (§3.4): bounds from `/proc/PID/stat`, `brk` from a remote `brk(0)`, auxv from
/// `/proc/PID/auxv`.
pub fn mm(frozen: &mut Frozen, stat: &Stat) -> Result<Mm, Error> {
    let pid = frozen.pid();
    let brk = frozen.remote()?.call(libc::SYS_brk, &[0])?;
    let auxv = procfs::parse_auxv(&procfs::read(pid, "auxv")?);
    Ok(Mm {
        pid: pid as u32,
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv: auxv.into_iter().take(64).collect(),
    })
}

/// RLIMITS (§3.5): remote `prlimit64(0, resource, NULL, &old)` inside the frozen target.
///
/// Asking from inside rather than with `prlimit(PID, ...)` from outside works whatever the
/// target's uids: the outside call needs matching uids or `CAP_SYS_RESOURCE`, which root may lack.
pub fn rlimits(frozen: &mut Frozen) -> Result<Rlimits, Error> {
    let pid = frozen.pid();
    let s = frozen.scratch(16)?;
    let addr = s.addr();
    let mut limits = Vec::new();
    for resource in 0..process::RLIM_NLIMITS {
        frozen
            .remote()?
            .call(libc::SYS_prlimit64, &[0, u64::from(resource), 0, addr])?;
        let b = s.read(0, 16)?;
        limits.push(Rlimit {
            resource,
            cur: u64_at(&b, 0),
            max: u64_at(&b, 8),
        });
    }
    s.restore()?;
    Ok(Rlimits {
        pid: pid as u32,
        limits,
    })
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// SIGACTIONS (§3.6): remote `rt_sigaction(sig, NULL, &old, 8)` for 1–64 except SIGKILL and
/// SIGSTOP.
pub fn sigactions(frozen: &mut Frozen) -> Result<SigActions, Error> {
    let pid = frozen.pid();
    let s = frozen.scratch(32)?;
    let addr = s.addr();
    let mut actions = Vec::new();
    for sig in 1u32..=64 {
        if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
            continue;
        }
        frozen
            .remote()?
            .call(libc::SYS_rt_sigaction, &[u64::from(sig), 0, addr, 8])?;
        let b = s.read(0, 32)?;
        actions.push(SigAction {
            signo: sig,
            handler: u64_at(&b, 0),
            flags: u64_at(&b, 8),
            restorer: u64_at(&b, 16),
            mask: u64_at(&b, 24),
        });
    }
    s.restore()?;
    Ok(SigActions {
        pid: pid as u32,
        actions,
    })
}

/// THREAD, XSAVE and the thread's SIGQUEUE (§3.7–§3.9) of thread `tid` of the frozen target;
/// `status` is the thread's own `/proc/PID/task/TID/status`.
pub fn thread(
    frozen: &mut Frozen,
    tid: i32,
    status: &Status,
) -> Result<(Thread, Xsave<'static>, Vec<ptrace::SigInfo>), Error> {
    let pid = frozen.pid();
    let gpr = *frozen.regs_of(tid)?;
    // The remote calls come first: a thread stopped in sigsuspend/ppoll/pselect shows the
    // call's temporary mask until it leaves the stop, when the kernel puts the saved mask back
    // (restore_saved_sigmask); the first remote call does that, so the mask read after it is
    // the program's own, which the restarted call will save again.
    let s = frozen.scratch_in(tid, 32)?;
    let addr = s.addr();
    frozen
        .remote_in(tid)?
        .call(libc::SYS_sigaltstack, &[0, addr])?;
    let ss = s.read(0, 24)?;
    frozen
        .remote_in(tid)?
        .call(libc::SYS_prctl, &[PR_GET_TID_ADDRESS, addr])?;
    let ctid = u64_at(&s.read(0, 8)?, 0);
    s.restore()?;

    let blocked = ptrace::getsigmask(tid)?;
    let pending = status.hex("SigPnd").map_err(|w| status_err(pid, w))?;
    let rseq = ptrace::get_rseq_configuration(tid)?;
    let area = ptrace::get_xstate(tid)?;
    let queue = ptrace::peeksiginfo(tid, SigQueueKind::Thread)?;
    let (robust_list, robust_list_len) = process::robust_list(tid)?;
    let name = procfs::thread_comm(pid, tid)?;

    let thread = Thread {
        pid: pid as u32,
        tid: tid as u32,
        gpr,
        blocked,
        pending,
        sas_sp: u64_at(&ss, 0),
        sas_flags: u64_at(&ss, 8) as u32,
        sas_size: u64_at(&ss, 16),
        rseq_len: rseq.len,
        rseq_addr: rseq.addr,
        rseq_sig: rseq.sig,
        clear_child_tid: ctid,
        ext: Some(ThreadExt {
            robust_list,
            robust_list_len,
            name: name.into(),
        }),
    };
    let xsave = Xsave {
        pid: pid as u32,
        tid: tid as u32,
        xstate_bv: u64_at(&area, XSTATE_BV_OFFSET),
        area: Blob::from(area),
    };
    Ok((thread, xsave, queue))
}

/// The process-wide signal queue (§3.9, tid 0).
pub fn shared_queue(pid: i32) -> Result<Vec<ptrace::SigInfo>, Error> {
    Ok(ptrace::peeksiginfo(pid, SigQueueKind::Shared)?)
}

/// A SIGQUEUE record from raw `siginfo_t`s.
pub fn sigqueue(pid: i32, tid: u32, infos: Vec<ptrace::SigInfo>) -> SigQueue<'static> {
    SigQueue {
        pid: pid as u32,
        tid,
        siginfos: infos.into_iter().map(|s| Blob::from(s.to_vec())).collect(),
    }
}
