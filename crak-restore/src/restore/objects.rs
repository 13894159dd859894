//! Stage 4 (after the memory, before the credentials): the file locks of LOCKS (spec §3.22) and
//! the timers of TIMERS (§3.21), by remote calls in the restored process itself, so that a POSIX
//! lock is owned by it and each timer is its own.
//!
//! Locks come after the memory because stage 3 opens and closes mapped files in the process,
//! and closing any fd of a file drops the process's POSIX locks on it. Timers come after the
//! other threads (a timer may signal one of them) and last: one
//! that expires while the process is still being built is a signal held back by the remote
//! calls ([`crate::sys::remote`]) and queued again once the process runs.

use super::mm::Remote;
use super::RestoreError;
use crak_format::record::locks::{LockKind, LockType};
use crak_format::record::timers::Notify;
use crak_format::Process;

/// `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.13): `timer_create` takes the id it is given.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
/// `F_OFD_SETLK`.
const F_OFD_SETLK: u64 = 37;

/// Takes every lock of LOCKS again, without waiting: a lock another process took meanwhile
/// fails the restore, naming the fd and the range.
pub fn restore_locks(r: &mut Remote, proc: &Process<'_>) -> Result<(), RestoreError> {
    let Some(locks) = &proc.locks else {
        return Ok(());
    };
    for l in &locks.locks {
        let fd = u64::from(l.fd);
        let what = || {
            let ty = match l.lock_type {
                LockType::Read => "read",
                LockType::Write => "write",
            };
            match l.kind {
                LockKind::Flock => format!("flock({fd}, {ty})"),
                LockKind::Posix | LockKind::Ofd => format!(
                    "{} {ty} lock on fd {fd} at {}+{}",
                    if l.kind == LockKind::Posix {
                        "POSIX"
                    } else {
                        "OFD"
                    },
                    l.start,
                    l.len
                ),
            }
        };
        let result = match l.kind {
            LockKind::Flock => {
                let op = match l.lock_type {
                    LockType::Read => libc::LOCK_SH,
                    LockType::Write => libc::LOCK_EX,
                } | libc::LOCK_NB;
                r.rs.call(libc::SYS_flock, &[fd, op as u64])
            }
            LockKind::Posix | LockKind::Ofd => {
                // struct flock { short l_type, l_whence; off_t l_start, l_len; pid_t l_pid; }
                let mut fl = [0u8; 32];
                let ty = match l.lock_type {
                    LockType::Read => libc::F_RDLCK,
                    LockType::Write => libc::F_WRLCK,
                } as i16;
                fl[0..2].copy_from_slice(&ty.to_le_bytes());
                fl[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_le_bytes());
                fl[8..16].copy_from_slice(&l.start.to_le_bytes());
                fl[16..24].copy_from_slice(&l.len.to_le_bytes());
                let a = r.put(0, &fl)?;
                let cmd = if l.kind == LockKind::Posix {
                    libc::F_SETLK as u64
                } else {
                    F_OFD_SETLK
                };
                r.rs.call(libc::SYS_fcntl, &[fd, cmd, a])
            }
        };
        result.map_err(|e| {
            let held = matches!(e.errno(), Some(libc::EAGAIN) | Some(libc::EACCES));
            RestoreError::failed(
                "taking file locks",
                if held {
                    format!("{}: another process holds a conflicting lock now", what())
                } else {
                    format!("{}: {e}", what())
                },
            )
        })?;
    }
    Ok(())
}

fn timespec(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..16].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    b
}

/// Recreates the POSIX timers with their ids (`PR_TIMER_CREATE_RESTORE_IDS`; without it, only
/// when the kernel's own numbering gives the same ids), arms them and the interval timers to
/// expire as long after now as they had left at capture. `tids` maps each saved thread id to
/// the restored thread's (they differ with `--new-pid`).
pub fn restore_timers(
    r: &mut Remote,
    proc: &Process<'_>,
    tids: &[(u32, i32)],
) -> Result<(), RestoreError> {
    let Some(t) = &proc.timers else {
        return Ok(());
    };
    let pid = proc.pid();
    if !t.posix.is_empty() {
        let by_id = r.call(
            || "prctl(PR_TIMER_CREATE_RESTORE_IDS, on)".into(),
            libc::SYS_prctl,
            &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
        );
        let by_id = by_id.is_ok();
        let mut timers: Vec<_> = t.posix.iter().collect();
        timers.sort_by_key(|p| p.id);
        for p in timers {
            // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4), then the
            // union whose first member is the thread id; 64 bytes in all.
            let mut sev = [0u8; 64];
            sev[0..8].copy_from_slice(&p.sigval.to_le_bytes());
            sev[8..12].copy_from_slice(&p.signo.to_le_bytes());
            sev[12..16].copy_from_slice(&(p.notify as u32).to_le_bytes());
            if p.notify == Notify::ThreadId {
                let tid = tids
                    .iter()
                    .find(|(saved, _)| *saved == p.tid)
                    .map(|&(_, now)| now)
                    .ok_or_else(|| {
                        RestoreError::Invalid(format!(
                            "process {pid}: POSIX timer {} signals thread {}, which it does not have",
                            p.id, p.tid
                        ))
                    })?;
                sev[16..20].copy_from_slice(&tid.to_le_bytes());
            }
            let sev_at = r.put(0, &sev)?;
            let id_at = r.put(64, &p.id.to_le_bytes())?;
            r.call(
                || format!("timer_create(clock {}, timer {})", p.clockid as i32, p.id),
                libc::SYS_timer_create,
                &[u64::from(p.clockid), sev_at, id_at],
            )?;
            let mut got = [0u8; 4];
            crate::sys::mem::read(r.pid, id_at, &mut got)
                .map_err(|e| RestoreError::failed("reading the timer id", e.to_string()))?;
            let got = u32::from_le_bytes(got);
            if got != p.id {
                return Err(RestoreError::Refused(format!(
                    "process {pid}: POSIX timer {} came back as timer {got}{}",
                    p.id,
                    if by_id {
                        ""
                    } else {
                        " (this kernel lacks PR_TIMER_CREATE_RESTORE_IDS, Linux 6.13)"
                    }
                )));
            }
            if p.value_ns != 0 {
                let mut its = [0u8; 32];
                its[0..16].copy_from_slice(&timespec(p.interval_ns));
                its[16..32].copy_from_slice(&timespec(p.value_ns));
                let a = r.put(0, &its)?;
                r.call(
                    || format!("timer_settime(timer {})", p.id),
                    libc::SYS_timer_settime,
                    &[u64::from(p.id), 0, a, 0],
                )?;
            }
        }
        if by_id {
            r.call(
                || "prctl(PR_TIMER_CREATE_RESTORE_IDS, off)".into(),
                libc::SYS_prctl,
                &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
            )?;
        }
    }
    for it in &t.itimers {
        // struct itimerval { it_interval, it_value }, each { tv_sec, tv_usec }; a value that
        // rounds down to 0 µs would disarm the timer.
        let usec = |ns: u64| -> [u8; 16] {
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
            b[8..16].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
            b
        };
        let mut itv = [0u8; 32];
        itv[0..16].copy_from_slice(&usec(it.interval_ns));
        itv[16..32].copy_from_slice(&usec(it.value_ns.max(1000)));
        let a = r.put(0, &itv)?;
        r.call(
            || format!("setitimer({:?})", it.which),
            libc::SYS_setitimer,
            &[it.which as u64, a, 0],
        )?;
    }
    Ok(())
}
