//! Freezing the target: `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, and the two ways out: resume it
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

/// A seized, stopped target.
#[derive(Debug)]
pub struct Frozen {
    pid: Pid,
    regs: Gpr,
    group_stopped: bool,
    remote: Option<RemoteSyscall>,
    /// A page mapped in the target for scratch memory when its stack had no room.
    mapped_scratch: Option<u64>,
    attached: bool,
}

impl Frozen {
    /// Seizes `pid` and stops it with `PTRACE_INTERRUPT`. A signal that arrives first is
    /// delivered before the stop, as it would have been anyway.
    pub fn freeze(pid: Pid) -> Result<Frozen, Error> {
        ptrace::seize_default(pid).map_err(|e| match e.errno() {
            Some(libc::ESRCH) => Error::NoSuchProcess(pid),
            Some(libc::EPERM) => Error::Other(format!(
                "cannot trace process {pid}: {e} (already traced, or not permitted)"
            )),
            _ => Error::Sys(e),
        })?;
        let mut f = Frozen {
            pid,
            regs: Gpr::default(),
            group_stopped: false,
            remote: None,
            mapped_scratch: None,
            attached: true,
        };
        ptrace::interrupt(pid)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            let Some(st) = ptrace::waitpid_nohang(pid)? else {
                if Instant::now() > deadline {
                    // Not in a ptrace stop, so it cannot be detached explicitly; the kernel
                    // detaches it when this process exits.
                    f.attached = false;
                    return Err(Error::Other(format!(
                        "process {pid} did not stop within {} s (uninterruptible sleep?)",
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
                    f.group_stopped = signal != libc::SIGTRAP;
                    break;
                }
                WaitStatus::Stopped { signal, .. } => ptrace::cont(pid, signal)?,
                st if st.is_gone() => {
                    f.attached = false;
                    return Err(Error::Other(format!(
                        "process {pid} ended while being frozen ({st:?})"
                    )));
                }
                _ => ptrace::cont(pid, 0)?,
            }
        }
        f.regs = ptrace::getregs(pid)?;
        Ok(f)
    }

    /// The target.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Registers at the stop, as the kernel reported them.
    pub fn regs(&self) -> &Gpr {
        &self.regs
    }

    /// Whether the target was in a group-stop (stopped by `SIGSTOP` & co.) when frozen.
    pub fn group_stopped(&self) -> bool {
        self.group_stopped
    }

    /// The remote-syscall executor (created on first use, with a `syscall` instruction of the
    /// target's vDSO).
    pub fn remote(&mut self) -> Result<&mut RemoteSyscall, Error> {
        if self.remote.is_none() {
            self.remote = Some(RemoteSyscall::with_vdso(self.pid)?);
        }
        self.remote
            .as_mut()
            .ok_or_else(|| Error::Other("remote executor missing".into()))
    }

    /// Scratch memory of `len` bytes (at most a page) in the target for the pointer arguments
    /// of remote calls: below the red zone of its stack, or, when the stack has no room there, a
    /// page mapped for the purpose with a remote `mmap` and unmapped by
    /// [`release_scratch`](Self::release_scratch) (or when the target is resumed).
    pub fn scratch(&mut self, len: usize) -> Result<Scratch, Error> {
        match Scratch::below_red_zone(self.pid, self.regs.rsp, len) {
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
        Ok(Scratch::at(self.pid, addr, len)?)
    }

    /// Unmaps the page [`scratch`](Self::scratch) may have mapped, so that the target's address
    /// space is its own again (before its mappings are read).
    pub fn release_scratch(&mut self) -> Result<(), Error> {
        if let Some(a) = self.mapped_scratch.take() {
            self.remote()?.call(libc::SYS_munmap, &[a, SCRATCH_PAGE])?;
        }
        Ok(())
    }

    /// Signals that arrived during remote calls and were held back (in-flight, pending).
    pub fn deferred_signals(&self) -> &[DeferredSignal] {
        self.remote
            .as_ref()
            .map(|r| r.deferred_signals())
            .unwrap_or(&[])
    }

    /// Resumes the target as it was: registers with the syscall restart applied (if remote
    /// calls ran), held-back signals re-sent, detached.
    pub fn resume(mut self) -> Result<(), Error> {
        self.do_resume()
    }

    fn do_resume(&mut self) -> Result<(), Error> {
        if !self.attached {
            return Ok(());
        }
        let mut first_err: Option<Error> = None;
        if let Err(e) = self.release_scratch() {
            first_err.get_or_insert(e);
        }
        let mut deferred = Vec::new();
        if let Some(mut r) = self.remote.take() {
            // Our remote calls left the thread at a syscall-exit stop with orig_rax/rax of the
            // interrupted call: the kernel will no longer restart it by itself.
            if let Err(e) = ptrace::setregs(self.pid, &restart::fixup_same_task(&self.regs)) {
                first_err.get_or_insert(e.into());
            }
            deferred = r.take_deferred_signals();
        }
        for d in &deferred {
            if let Err(e) = process::tgkill(self.pid, self.pid, d.signo) {
                first_err.get_or_insert(e.into());
            }
        }
        // Detach even when something above failed: a traced, stopped target is the worst outcome.
        match ptrace::detach(self.pid, 0) {
            Ok(()) => self.attached = false,
            Err(e) => {
                first_err.get_or_insert(e.into());
            }
        }
        if !self.attached && self.group_stopped {
            if let Err(e) = process::kill(self.pid, libc::SIGSTOP) {
                first_err.get_or_insert(e.into());
            }
        }
        self.attached = false;
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Kills the target (`SIGKILL`) and waits until it is gone.
    pub fn kill(mut self) -> Result<(), Error> {
        process::kill(self.pid, libc::SIGKILL)?;
        self.attached = false;
        loop {
            match ptrace::waitpid(self.pid) {
                Ok(st) if st.is_gone() => return Ok(()),
                Ok(_) => continue,
                Err(e) if e.errno() == Some(libc::ECHILD) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.attached {
            if let Err(e) = self.do_resume() {
                eprintln!("crak-capture: could not resume process {}: {e}", self.pid);
            }
        }
    }
}
