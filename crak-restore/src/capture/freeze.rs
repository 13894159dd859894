//! Freezing the target: `PTRACE_SEIZE` + `PTRACE_INTERRUPT` of every thread, and the two ways out: resume it
//! exactly as it was ([`Frozen::resume`], also what dropping a [`Frozen`] does, so that a failed
//! capture leaves the target running and untraced) or kill it ([`Frozen::kill`]).

use super::Error;
use crate::restart;
use crate::sys::ptrace::{self, WaitStatus};
use crate::sys::remote::{DeferredSignal, RemoteSyscall, Scratch};
use crate::sys::{process, Pid};
use crak_format::record::thread::Gpr;
use std::time::{Duration, Instant};

/// Size of the scratch page mapped when the stack has no room.
const SCRATCH_PAGE: u64 = 4096;

/// How long a target may take to reach the ptrace stop.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// One seized thread of the target.
#[derive(Debug)]
struct Task {
    tid: Pid,
    /// Registers at the stop, as the kernel reported them.
    regs: Gpr,
    /// Whether the stop was a group-stop (`SIGSTOP` & co.) rather than our interrupt.
    group_stopped: bool,
    /// Its remote-syscall executor, once a remote call ran in it.
    remote: Option<RemoteSyscall>,
    /// Still seized (a thread that never reached its stop cannot be detached explicitly).
    attached: bool,
}

/// A seized target with every thread stopped.
#[derive(Debug)]
pub struct Frozen {
    pid: Pid,
    /// The thread-group leader first, then the other threads in tid order.
    tasks: Vec<Task>,
    /// Address of a `syscall` instruction in the target's vDSO, found on first use.
    syscall_addr: Option<u64>,
    /// A page mapped in the target for scratch memory when a stack had no room.
    mapped_scratch: Option<u64>,
    /// The leader's registers at the stop.
    leader_regs: Gpr,
    /// Sockets the capture put in TCP repair mode or locked: undone before the process runs
    /// again, kept when it is killed.
    net: Vec<super::net::Hold>,
}

fn seize_err(pid: Pid, tid: Pid, e: crate::sys::SysError) -> Error {
    match e.errno() {
        Some(libc::ESRCH) => Error::NoSuchProcess(pid),
        Some(libc::EPERM) => Error::Other(format!(
            "cannot trace process {pid} (thread {tid}): {e} (already traced, or not permitted)"
        )),
        _ => Error::Sys(e),
    }
}

impl Frozen {
    /// Seizes every thread of `pid` and stops each with `PTRACE_INTERRUPT`. A signal that
    /// arrives first is delivered before the stop, as it would have been anyway.
    ///
    /// Threads are listed from `/proc/PID/task` until a listing shows no thread that is not
    /// already stopped: a stopped thread cannot create another, and a thread created by one
    /// that was still running is in the next listing.
    pub fn freeze(pid: Pid) -> Result<Frozen, Error> {
        let mut f = Frozen {
            pid,
            tasks: Vec::new(),
            syscall_addr: None,
            mapped_scratch: None,
            leader_regs: Gpr::default(),
            net: Vec::new(),
        };
        let mut want = vec![pid];
        loop {
            let first = f.tasks.len();
            for tid in want {
                match ptrace::seize_default(tid) {
                    Ok(()) => {}
                    // A thread that ended since the listing; the leader's absence is an error.
                    Err(e) if e.errno() == Some(libc::ESRCH) && tid != pid => continue,
                    Err(e) => return Err(seize_err(pid, tid, e)),
                }
                f.tasks.push(Task {
                    tid,
                    regs: Gpr::default(),
                    group_stopped: false,
                    remote: None,
                    attached: true,
                });
                ptrace::interrupt(tid)?;
            }
            let mut i = first;
            while i < f.tasks.len() {
                if f.wait_stop(i)? {
                    i += 1;
                } else {
                    f.tasks.remove(i);
                }
            }
            if f.tasks.first().map(|t| t.tid) != Some(pid) {
                return Err(Error::Other(format!(
                    "process {pid} ended while being frozen"
                )));
            }
            want = crate::procfs::tids(pid)?
                .into_iter()
                .filter(|t| !f.tasks.iter().any(|k| k.tid == *t))
                .collect();
            if want.is_empty() {
                break;
            }
        }
        for t in &mut f.tasks {
            t.regs = ptrace::getregs(t.tid)?;
        }
        f.leader_regs = f.tasks.first().map(|t| t.regs).unwrap_or_default();
        Ok(f)
    }

    /// Waits for task `i`'s interrupt stop. `Ok(false)`: the thread ended meanwhile.
    fn wait_stop(&mut self, i: usize) -> Result<bool, Error> {
        let pid = self.pid;
        let Some(t) = self.tasks.get_mut(i) else {
            return Ok(false);
        };
        let tid = t.tid;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            let Some(st) = ptrace::waitpid_nohang(tid)? else {
                if Instant::now() > deadline {
                    // Not in a ptrace stop, so it cannot be detached explicitly; the kernel
                    // detaches it when this process exits.
                    t.attached = false;
                    return Err(Error::Other(format!(
                        "process {pid} (thread {tid}) did not stop within {} s (uninterruptible sleep?)",
                        FREEZE_TIMEOUT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
                continue;
            };
            match st {
                WaitStatus::Event {
                    event: ptrace::event::STOP,
                    signal,
                    ..
                } => {
                    t.group_stopped = signal != libc::SIGTRAP;
                    return Ok(true);
                }
                WaitStatus::Stopped { signal, .. } => ptrace::cont(tid, signal)?,
                st if st.is_gone() => {
                    t.attached = false;
                    if tid == pid {
                        return Err(Error::Other(format!(
                            "process {pid} ended while being frozen ({st:?})"
                        )));
                    }
                    return Ok(false);
                }
                _ => ptrace::cont(tid, 0)?,
            }
        }
    }

    fn task(&self, tid: Pid) -> Result<&Task, Error> {
        self.tasks
            .iter()
            .find(|t| t.tid == tid)
            .ok_or_else(|| Error::Other(format!("thread {tid} of {} is not frozen", self.pid)))
    }

    /// The target.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Every frozen thread, the leader first.
    pub fn tids(&self) -> Vec<Pid> {
        self.tasks.iter().map(|t| t.tid).collect()
    }

    /// The leader's registers at the stop, as the kernel reported them.
    pub fn regs(&self) -> &Gpr {
        &self.leader_regs
    }

    /// Registers of thread `tid` at the stop.
    pub fn regs_of(&self, tid: Pid) -> Result<&Gpr, Error> {
        self.task(tid).map(|t| &t.regs)
    }

    /// Whether the target was in a group-stop (stopped by `SIGSTOP` & co.) when frozen.
    pub fn group_stopped(&self) -> bool {
        self.tasks.first().is_some_and(|t| t.group_stopped)
    }

    /// The remote-syscall executor of the leader (created on first use, with a `syscall`
    /// instruction of the target's vDSO).
    pub fn remote(&mut self) -> Result<&mut RemoteSyscall, Error> {
        self.remote_in(self.pid)
    }

    /// The remote-syscall executor of thread `tid`.
    pub fn remote_in(&mut self, tid: Pid) -> Result<&mut RemoteSyscall, Error> {
        let addr = match self.syscall_addr {
            Some(a) => a,
            None => {
                let a = crate::sys::remote::find_syscall_insn(self.pid)?;
                self.syscall_addr = Some(a);
                a
            }
        };
        let pid = self.pid;
        let t = self
            .tasks
            .iter_mut()
            .find(|t| t.tid == tid)
            .ok_or_else(|| Error::Other(format!("thread {tid} of {pid} is not frozen")))?;
        Ok(t.remote
            .get_or_insert_with(|| RemoteSyscall::new(tid, addr)))
    }

    /// Scratch memory of `len` bytes (at most a page) in the target for the pointer arguments
    /// of the leader's remote calls; see [`scratch_in`](Self::scratch_in).
    pub fn scratch(&mut self, len: usize) -> Result<Scratch, Error> {
        self.scratch_in(self.pid, len)
    }

    /// Scratch memory of `len` bytes (at most a page) for remote calls in thread `tid`: below
    /// the red zone of its stack, or, when the stack has no room there, a page mapped for the
    /// purpose with a remote `mmap` and unmapped by [`release_scratch`](Self::release_scratch)
    /// (or when the target is resumed).
    pub fn scratch_in(&mut self, tid: Pid, len: usize) -> Result<Scratch, Error> {
        let rsp = self.regs_of(tid)?.rsp;
        match Scratch::below_red_zone(tid, rsp, len) {
            Ok(s) => return Ok(s),
            Err(_) if len <= SCRATCH_PAGE as usize => {}
            Err(e) => return Err(e.into()),
        }
        let addr = match self.mapped_scratch {
            Some(a) => a,
            None => {
                let a = self.remote()?.call(
                    libc::SYS_mmap,
                    &[
                        0,
                        SCRATCH_PAGE,
                        (libc::PROT_READ | libc::PROT_WRITE) as u64,
                        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                        u64::MAX,
                        0,
                    ],
                )?;
                self.mapped_scratch = Some(a);
                a
            }
        };
        Ok(Scratch::at(tid, addr, len)?)
    }

    /// Unmaps the page [`scratch`](Self::scratch) may have mapped, so that the target's address
    /// space is its own again (before its mappings are read).
    pub fn release_scratch(&mut self) -> Result<(), Error> {
        if let Some(a) = self.mapped_scratch.take() {
            self.remote()?.call(libc::SYS_munmap, &[a, SCRATCH_PAGE])?;
        }
        Ok(())
    }

    /// Signals that arrived during the leader's remote calls and were held back (in-flight,
    /// pending).
    pub fn deferred_signals(&self) -> &[DeferredSignal] {
        self.deferred_signals_of(self.pid)
    }

    /// Signals that arrived during remote calls in thread `tid` and were held back.
    pub fn deferred_signals_of(&self, tid: Pid) -> &[DeferredSignal] {
        self.tasks
            .iter()
            .find(|t| t.tid == tid)
            .and_then(|t| t.remote.as_ref())
            .map(|r| r.deferred_signals())
            .unwrap_or(&[])
    }

    /// Resumes the target as it was: registers with the syscall restart applied (in each
    /// thread where remote calls ran), held-back signals re-sent, every thread detached.
    pub fn resume(mut self) -> Result<(), Error> {
        self.do_resume()
    }

    /// Where the capture records what it changed on the process's sockets.
    pub fn net_holds(&mut self) -> &mut Vec<super::net::Hold> {
        &mut self.net
    }

    fn do_resume(&mut self) -> Result<(), Error> {
        // Repair mode off and locks removed before the process runs again.
        super::net::release(&mut self.net);
        if !self.tasks.iter().any(|t| t.attached) {
            return Ok(());
        }
        let mut first_err: Option<Error> = None;
        if let Err(e) = self.release_scratch() {
            first_err.get_or_insert(e);
        }
        let pid = self.pid;
        let group_stopped = self.group_stopped();
        for t in self.tasks.iter_mut().filter(|t| t.attached) {
            let mut deferred = Vec::new();
            if let Some(mut r) = t.remote.take() {
                // Our remote calls left the thread at a syscall-exit stop with orig_rax/rax of
                // the interrupted call: the kernel will no longer restart it by itself.
                if let Err(e) = ptrace::setregs(t.tid, &restart::fixup_same_task(&t.regs)) {
                    first_err.get_or_insert(e.into());
                }
                deferred = r.take_deferred_signals();
            }
            for d in &deferred {
                if let Err(e) = process::tgkill(pid, t.tid, d.signo) {
                    first_err.get_or_insert(e.into());
                }
            }
            // Detach even when something above failed: a traced, stopped thread is the worst
            // outcome.
            if let Err(e) = ptrace::detach(t.tid, 0) {
                // A thread that ended meanwhile needs no detaching.
                if e.errno() != Some(libc::ESRCH) {
                    first_err.get_or_insert(e.into());
                }
            }
            t.attached = false;
        }
        if group_stopped {
            if let Err(e) = process::kill(pid, libc::SIGSTOP) {
                first_err.get_or_insert(e.into());
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Kills the target (`SIGKILL`) and waits until every thread is gone (the leader last: its
    /// exit is reported only after the other threads').
    pub fn kill(mut self) -> Result<(), Error> {
        process::kill(self.pid, libc::SIGKILL)?;
        // Killed in repair mode, its TCP sockets close silently; their locks wait for the
        // restore.
        super::net::keep(&mut self.net);
        for t in self.tasks.iter_mut().rev() {
            t.attached = false;
            loop {
                match ptrace::waitpid(t.tid) {
                    Ok(st) if st.is_gone() => break,
                    Ok(_) => continue,
                    Err(e) if e.errno() == Some(libc::ECHILD) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.do_resume() {
            eprintln!("crak-capture: could not resume process {}: {e}", self.pid);
        }
    }
}
