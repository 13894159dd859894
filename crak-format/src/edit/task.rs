//! Registers and the pid.

use super::{refused, EditError};
use crate::image::Image;
use crate::record::process::MAX_PID;
use crate::record::thread::Gpr;

/// Sets general-purpose register `reg` (a name of [`Gpr::NAMES`]: `rip`, `rax`, `fs_base`, ...)
/// of thread `tid` to `value`. Without `tid`, the thread-group leader of process `pid` (or of
/// the first process). A tid names a thread of any process; with both, it must be a thread of
/// that process.
pub fn set_reg(
    image: &mut Image<'_>,
    pid: Option<u32>,
    tid: Option<u32>,
    reg: &str,
    value: u64,
) -> Result<(), EditError> {
    if !Gpr::NAMES.contains(&reg) {
        return Err(EditError::NoRegister(reg.to_string()));
    }
    let thread = match tid {
        Some(tid) => {
            let procs: Vec<_> = match pid {
                Some(pid) => vec![image.process_mut(pid).ok_or(EditError::NoProcess(pid))?],
                None => image.processes.iter_mut().collect(),
            };
            procs
                .into_iter()
                .flat_map(|p| p.threads.iter_mut())
                .find(|t| t.tid == tid)
                .ok_or(EditError::NoThread(tid))?
        }
        None => {
            let p = super::select(image, pid)?;
            let leader = p.pid();
            p.threads
                .iter_mut()
                .find(|t| t.tid == leader)
                .ok_or(EditError::NoThread(leader))?
        }
    };
    thread.gpr.set(reg, value);
    Ok(())
}

/// Gives process `old` (or the first process) the pid `new`: its PROCESS record (and `pgid`
/// or `sid` where they were the old pid: the process led its group or session), the leader's
/// tid, every record of the process, and the `ppid`, `pgid` and `sid` of the other processes
/// that named the old pid. Refused when `new` is out of range or is already a pid or tid in
/// the image.
pub fn set_pid(image: &mut Image<'_>, old: Option<u32>, new: u32) -> Result<(), EditError> {
    if new == 0 || new > MAX_PID {
        return refused(format!("pid {new} is outside 1..={MAX_PID}"));
    }
    let old = super::select(image, old)?.pid();
    if old == new {
        return Ok(());
    }
    if image
        .processes
        .iter()
        .any(|p| p.pid() == new || p.process.tids.contains(&new))
    {
        return refused(format!("pid {new} is already a pid or tid in the image"));
    }
    let swap = |v: &mut u32| {
        if *v == old {
            *v = new;
        }
    };
    for p in &mut image.processes {
        swap(&mut p.process.ppid);
        swap(&mut p.process.pgid);
        swap(&mut p.process.sid);
        if p.pid() != old {
            continue;
        }
        p.process.pid = new;
        p.process.tids.iter_mut().for_each(swap);
        if let Some(c) = &mut p.creds {
            c.pid = new;
        }
        if let Some(m) = &mut p.mm {
            m.pid = new;
        }
        if let Some(r) = &mut p.rlimits {
            r.pid = new;
        }
        if let Some(s) = &mut p.sigactions {
            s.pid = new;
        }
        if let Some(t) = &mut p.timers {
            t.pid = new;
            for x in &mut t.posix {
                swap(&mut x.tid);
            }
        }
        if let Some(l) = &mut p.locks {
            l.pid = new;
        }
        for t in &mut p.threads {
            t.pid = new;
            swap(&mut t.tid);
        }
        for x in &mut p.xsaves {
            x.pid = new;
            swap(&mut x.tid);
        }
        for q in &mut p.sigqueues {
            q.pid = new;
            swap(&mut q.tid);
        }
        for f in &mut p.fds {
            f.pid = new;
        }
        for v in &mut p.vmas {
            v.pid = new;
        }
        for r in &mut p.pages {
            r.pid = new;
        }
        for z in &mut p.zero_runs {
            z.pid = new;
        }
    }
    // Credentials in flight name the sender by pid (1.3).
    for s in image.scm.iter_mut().filter(|s| s.has_credentials()) {
        swap(&mut s.pid);
    }
    Ok(())
}
