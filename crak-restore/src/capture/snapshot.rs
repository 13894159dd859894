//! Forked snapshots: the memory of a capture that leaves the target running, taken in the time a
//! `fork` takes instead of the time a copy of every page takes.
//!
//! While the target is frozen (after every other record was gathered):
//!
//! 1. The pages `fork` does not give a child a copy of are read from the target itself into
//!    memory ([`needs_pre_read`]): `MADV_DONTFORK` mappings (absent in the child),
//!    `MADV_WIPEONFORK` mappings (zero in the child) and shared anonymous mappings (the child
//!    shares them with the target, which keeps writing them; fork does not even copy their page
//!    tables).
//! 2. A `clone` with no flags and a termination signal of 0 is run in the target as a remote
//!    system call, with `PTRACE_O_TRACECLONE` set, so the new process (the *snapshot child*)
//!    starts traced by us and stopped before it ever returns to user space. It holds a
//!    copy-on-write copy of the target's address space as of the freeze.
//! 3. The child closes every file descriptor it inherited (`close_range`, run in it the same
//!    way), so that it holds no extra reference to the target's pipes, sockets and files: a
//!    peer sees end-of-file when the target closes its end, as if the child did not exist.
//!
//! Then the target is resumed, and the image's pages are read from the child
//! ([`Snapshot::dump_pages`]) while the target runs. The child never runs a single instruction
//! of the program: it only executes the two system calls above (from the `syscall` instruction
//! of its vDSO) and is then killed with `SIGKILL` from a ptrace stop.
//!
//! **What the target can observe, and why so little.** The child's termination signal is 0, so
//! its death sends the target no `SIGCHLD`, and it is a "clone child" that `wait`/`waitpid`
//! without `__WALL` or `__WCLONE` do not see at all. Ending it ([`Snapshot::finish`]): it is
//! killed and left to die while the target runs (a zombie ptracee is visible to its tracer
//! only); then the target is frozen again for a moment, the child is reaped by us as its tracer
//! (which makes it a zombie child of the target), reaped in the target with a remote
//! `wait4(child, NULL, __WALL | WNOHANG)`, and only then is the target resumed. So the target
//! never sees a signal, a zombie or a wait status from it. While the image is written, a
//! `wait4(-1, .., __WALL | WNOHANG)` in the target returns 0 instead of `ECHILD` when it has no
//! other children, and `/proc/PID/task/PID/children` lists the child; nothing else shows it.
//! If the target exits while the image is being written, the child is reparented (to init or
//! a subreaper, with `SIGCHLD`) and reaped there once we kill it.
//!
//! Costs: the child's page tables (the `fork`, a few ms at 1 GiB), and one page copy for every
//! page the target writes while the image is being written (charged to the target's memory
//! cgroup). When the kernel refuses the `clone` (`RLIMIT_NPROC`, `pids.max`, strict
//! overcommit), the capture falls back to copying the pages while frozen (`CRAK_FAULT=
//! snapshot-refused` makes it so, for tests).

use super::freeze::Frozen;
use super::mm::{self, Mapping, PagePolicy, PageSink, PageStats};
use super::Error;
use crate::procfs;
use crate::sys::ptrace::{self, options, WaitStatus};
use crate::sys::remote::RemoteSyscall;
use crate::sys::{process, waitid, Pid, SysError};
use crak_format::record::vma::{self, madv};
use std::time::Instant;

/// `__WALL` for `wait4` (`<linux/wait.h>`).
const WALL: u64 = 0x4000_0000;

/// Whether a mapping's pages must be read from the target while it is frozen, because the
/// snapshot child does not hold a private copy of them as of the freeze.
pub fn needs_pre_read(m: &Mapping) -> bool {
    m.policy != PagePolicy::None
        && (m.vma.madvise & (madv::DONTFORK | madv::WIPEONFORK) != 0
            || m.vma.flags & vma::MAP_SHARED != 0)
}

/// One run of pages read while frozen.
#[derive(Debug)]
enum Run {
    /// Stored pages at `addr`: `len` bytes from `offset` of [`PreRead::data`].
    Data {
        addr: u64,
        offset: usize,
        len: usize,
    },
    /// Zero pages.
    Zeros { addr: u64, nr: u64 },
}

impl Run {
    fn addr(&self) -> u64 {
        match *self {
            Run::Data { addr, .. } | Run::Zeros { addr, .. } => addr,
        }
    }
}

/// The pages of the [`needs_pre_read`] mappings, read while frozen, in address order.
#[derive(Debug, Default)]
pub struct PreRead {
    runs: Vec<Run>,
    data: Vec<u8>,
}

impl PageSink for PreRead {
    fn pages(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        self.runs.push(Run::Data {
            addr,
            offset: self.data.len(),
            len: data.len(),
        });
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn zeros(&mut self, addr: u64, nr: u64) -> Result<(), Error> {
        self.runs.push(Run::Zeros { addr, nr });
        Ok(())
    }
}

impl PreRead {
    /// Bytes of page data held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Replays the runs in `[start, end)` into `sink`, starting at run `*next` (runs are in
    /// address order, so one cursor walks them all once).
    fn replay(
        &self,
        start: u64,
        end: u64,
        next: &mut usize,
        page_size: u64,
        sink: &mut dyn PageSink,
        stats: &mut PageStats,
    ) -> Result<(), Error> {
        while let Some(run) = self.runs.get(*next) {
            if run.addr() < start {
                *next += 1;
                continue;
            }
            if run.addr() >= end {
                break;
            }
            match *run {
                Run::Data { addr, offset, len } => {
                    let data = offset
                        .checked_add(len)
                        .and_then(|e| self.data.get(offset..e))
                        .ok_or_else(|| Error::Other("pre-read page run out of bounds".into()))?;
                    sink.pages(addr, data)?;
                    stats.stored += len as u64 / page_size;
                }
                Run::Zeros { addr, nr } => {
                    sink.zeros(addr, nr)?;
                    stats.zero += nr;
                }
            }
            *next += 1;
        }
        Ok(())
    }
}

/// Why no snapshot child could be made; the capture copies the pages while frozen instead.
#[derive(Debug)]
pub struct Refused(pub String);

/// A snapshot child holding the target's memory as of the freeze. Dropping it ends the child
/// (as [`Snapshot::finish`] does, reporting errors on stderr).
#[derive(Debug)]
pub struct Snapshot {
    target: Pid,
    target_starttime: u64,
    /// The child, as our pid namespace numbers it.
    child: Pid,
    /// The child, as the target's pid namespace numbers it (for the `wait4` in the target).
    child_in_target: Pid,
    pre_read: PreRead,
    done: bool,
}

/// What ending a snapshot child took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// How long the target was frozen the second time (to reap the child in it), ms.
    pub frozen_ms: f64,
    /// Whether the child was reaped in the target (false: the target had exited, or could not
    /// be frozen again and the child was left to it as a zombie).
    pub reaped_in_target: bool,
}

/// Finds the target's child that the target's pid namespace calls `nspid`, among the children
/// of its main thread, traced by us: its pid in our namespace.
fn find_child(target: Pid, nspid: Pid) -> Result<Pid, Error> {
    let list = procfs::read_string(target, &format!("task/{target}/children"))?;
    let me = u64::from(std::process::id());
    for pid in list
        .split_whitespace()
        .filter_map(|s| s.parse::<Pid>().ok())
    {
        let Ok(st) = procfs::status(pid) else {
            continue;
        };
        let last = st.decimals("NSpid").ok().and_then(|v| v.last().copied());
        if last == Some(nspid as u32) && st.decimal("TracerPid").ok() == Some(me) {
            return Ok(pid);
        }
    }
    Err(Error::Other(format!(
        "the snapshot child {nspid} of process {target} is not among its children"
    )))
}

/// Waits for the new child's first stop (the `PTRACE_EVENT_STOP` of an auto-attached child).
fn wait_first_stop(child: Pid) -> Result<(), Error> {
    loop {
        match ptrace::waitpid(child)? {
            WaitStatus::Event {
                event: ptrace::event::STOP,
                ..
            } => return Ok(()),
            // A signal sent to the child (e.g. to the whole process group) is suppressed: it
            // must never run a handler of the program.
            WaitStatus::Stopped { .. } => ptrace::cont(child, 0)?,
            st if st.is_gone() => {
                return Err(Error::Other(format!(
                    "the snapshot child {child} ended before its first stop ({st:?})"
                )))
            }
            _ => ptrace::cont(child, 0)?,
        }
    }
}

/// Kills a traced child and reaps it (as its tracer). Afterwards it is a zombie child of its
/// real parent (termination signal 0: no `SIGCHLD`).
fn kill_and_reap(child: Pid) -> Result<(), Error> {
    match process::kill(child, libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(libc::ESRCH) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        match ptrace::waitpid(child) {
            Ok(st) if st.is_gone() => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.errno() == Some(libc::ECHILD) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes a snapshot child of the frozen process: see the module documentation. `maps` are its
/// mappings as recorded in the image. `Ok(Err(Refused))` when the kernel refused the `clone`
/// (or the process has a seccomp filter), so that the caller can fall back to a frozen copy.
pub fn take(
    frozen: &mut Frozen,
    maps: &[Mapping],
    page_size: u64,
) -> Result<Result<Snapshot, Refused>, Error> {
    let target = frozen.pid();
    let target_starttime = procfs::stat(target)?.starttime;
    // `CRAK_FAULT=snapshot-refused`: the kernel's refusal, for the fallback's tests.
    if crate::fault::armed("snapshot-refused") {
        return Ok(Err(Refused(format!(
            "the fork of process {target} for a snapshot was refused (injected fault)"
        ))));
    }
    // A seccomp filter may forbid clone or close_range, or kill the process for trying.
    let seccomp = procfs::status(target)?.decimal("Seccomp").unwrap_or(0);
    if seccomp != 0 {
        return Ok(Err(Refused(format!(
            "process {target} runs under seccomp (mode {seccomp}), which may forbid the fork of a snapshot"
        ))));
    }

    // 1. What fork does not copy, read from the target while frozen.
    let pre_maps: Vec<Mapping> = maps.iter().filter(|m| needs_pre_read(m)).cloned().collect();
    let mut pre_read = PreRead::default();
    if !pre_maps.is_empty() {
        mm::dump_pages(target, &pre_maps, page_size, &mut pre_read, &mut || Ok(()))?;
    }

    // 2. The clone, traced from its first instruction.
    ptrace::setoptions(target, options::TRACESYSGOOD | options::TRACECLONE)?;
    let remote = frozen.remote()?;
    let syscall_addr = remote.syscall_addr();
    // clone(flags = 0: nothing shared, termination signal 0; stack, tids, tls = 0).
    let r = remote.call_raw(libc::SYS_clone, &[0, 0, 0, 0, 0]);
    let reset = ptrace::setoptions(target, options::TRACESYSGOOD);
    let r = r?;
    reset?;
    if (-4095..0).contains(&r) {
        let e = std::io::Error::from_raw_os_error((-r) as i32);
        return Ok(Err(Refused(format!(
            "the kernel refused to fork process {target} for a snapshot ({e})"
        ))));
    }
    let child_in_target = Pid::try_from(r)
        .map_err(|_| Error::Other(format!("clone in process {target} returned {r}")))?;
    let child = find_child(target, child_in_target)?;
    let mut snap = Snapshot {
        target,
        target_starttime,
        child,
        child_in_target,
        pre_read,
        done: false,
    };
    match prepare_child(child, syscall_addr) {
        Ok(()) => Ok(Ok(snap)),
        Err(e) => {
            // The target is still frozen by us: end the child right here.
            snap.done = true;
            if let Err(e2) = kill_and_reap(child).and_then(|()| reap_in(frozen, child_in_target)) {
                eprintln!("crak-capture: ending the snapshot child {child}: {e2}");
            }
            Err(e)
        }
    }
}

/// The new child's first stop; then it is killed if we exit (`PTRACE_O_EXITKILL`: detached, it
/// would run the program's code) and lets go of every inherited file descriptor.
fn prepare_child(child: Pid, syscall_addr: u64) -> Result<(), Error> {
    wait_first_stop(child)?;
    ptrace::setoptions(child, options::TRACESYSGOOD | options::EXITKILL)?;
    let mut in_child = RemoteSyscall::new(child, syscall_addr);
    in_child.call(libc::SYS_close_range, &[0, u64::from(u32::MAX), 0])?;
    Ok(())
}

/// Reaps the zombie `child_in_target` in the frozen target (`wait4` with `__WALL | WNOHANG`).
fn reap_in(frozen: &mut Frozen, child_in_target: Pid) -> Result<(), Error> {
    let target = frozen.pid();
    let r = frozen.remote()?.call_raw(
        libc::SYS_wait4,
        &[child_in_target as u64, 0, WALL | libc::WNOHANG as u64, 0],
    )?;
    if r == i64::from(child_in_target) {
        Ok(())
    } else {
        Err(Error::Sys(SysError::from_errno(
            format!(
                "wait4({child_in_target}) in process {target} to reap the snapshot child (returned {r})"
            ),
            if r < 0 { (-r) as i32 } else { libc::EAGAIN },
        )))
    }
}

impl Snapshot {
    /// The snapshot child (our pid namespace).
    pub fn child(&self) -> Pid {
        self.child
    }

    /// Bytes of page data read while frozen.
    pub fn pre_read_bytes(&self) -> usize {
        self.pre_read.bytes()
    }

    /// Checks the recorded mappings against the snapshot child's, which are the target's as of
    /// the fork: those marked `MADV_DONTFORK` are exactly the ones it lacks, and every other
    /// one has the same range and `madvise` bits (`VM_LOCKED` apart: fork does not copy it).
    /// The flags were read before the target was frozen ([`mm::with_flags_hint`]), and a
    /// `madvise` in between would otherwise go unnoticed.
    pub fn check_mappings(&self, maps: &[Mapping]) -> Result<(), Error> {
        let theirs = procfs::smaps(self.child)?;
        let changed = |what: String| {
            Err(Error::Other(format!(
                "process {} changed its mappings while being captured ({what}); try again",
                self.target
            )))
        };
        let mut kept = 0usize;
        for m in maps {
            let v = &m.vma;
            let other = theirs.iter().find(|e| e.start == v.start);
            if v.madvise & madv::DONTFORK != 0 {
                if other.is_some() {
                    return changed(format!("{:#x} is no longer MADV_DONTFORK", v.start));
                }
                continue;
            }
            kept += 1;
            let Some(e) = other else {
                return changed(format!("{:#x} became MADV_DONTFORK", v.start));
            };
            let bits = mm::madvise_bits(e) & !madv::LOCKED;
            if e.end != v.end || bits != v.madvise & !madv::LOCKED {
                return changed(format!(
                    "{:#x}-{:#x} madvise {:#x} is now {:#x}-{:#x} madvise {bits:#x}",
                    v.start, v.end, v.madvise, e.start, e.end
                ));
            }
        }
        if kept != theirs.len() {
            return changed(format!(
                "{kept} mappings recorded besides MADV_DONTFORK ones, {} in the snapshot",
                theirs.len()
            ));
        }
        Ok(())
    }

    /// Ends the child while its parent is still frozen by `frozen` (a capture that falls back
    /// to a frozen copy): kill, reap, reap in the parent.
    pub fn end_while_frozen(mut self, frozen: &mut Frozen) -> Result<(), Error> {
        self.done = true;
        kill_and_reap(self.child)?;
        reap_in(frozen, self.child_in_target)
    }

    /// Streams the selected pages of `maps` (the image's mappings, in address order) into
    /// `sink`: the pre-read ones from memory, every other one from the snapshot child.
    pub fn dump_pages(
        &self,
        maps: &[Mapping],
        page_size: u64,
        sink: &mut dyn PageSink,
        after_first_batch: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<PageStats, Error> {
        let mut stats = PageStats::default();
        let mut next_run = 0usize;
        let mut i = 0usize;
        while let Some(m) = maps.get(i) {
            if needs_pre_read(m) {
                self.pre_read.replay(
                    m.vma.start,
                    m.vma.end,
                    &mut next_run,
                    page_size,
                    sink,
                    &mut stats,
                )?;
                i += 1;
                continue;
            }
            // The longest stretch of mappings read from the child.
            let mut j = i + 1;
            while maps.get(j).is_some_and(|m| !needs_pre_read(m)) {
                j += 1;
            }
            let group = maps.get(i..j).unwrap_or(&[]);
            let s = mm::dump_pages(self.child, group, page_size, sink, after_first_batch)?;
            stats.stored += s.stored;
            stats.zero += s.zero;
            i = j;
        }
        Ok(stats)
    }

    /// Ends the snapshot child without the target seeing it: kill the child and wait until it
    /// is a zombie (visible to us only, as its tracer), freeze the target, reap the child (now a
    /// zombie of the target's), reap it in the target with a remote `wait4`, resume the target.
    pub fn finish(mut self) -> Result<Finished, Error> {
        self.end()
    }

    fn end(&mut self) -> Result<Finished, Error> {
        if self.done {
            return Ok(Finished::default());
        }
        self.done = true;
        let child = self.child;
        // Is the target still the child's parent? (If it exited, the child was reparented.)
        let parent_alive = procfs::status(child)
            .ok()
            .and_then(|s| s.decimal("PPid").ok())
            == Some(self.target as u64)
            && procfs::stat(self.target)
                .map(|s| s.starttime == self.target_starttime && !matches!(s.state, 'Z' | 'X'))
                .unwrap_or(false);
        if !parent_alive {
            kill_and_reap(child)?;
            return Ok(Finished::default());
        }
        // The child dies (tearing down its copy of the address space takes a while) while the
        // target runs: as a traced zombie it is visible to us only, until we reap it.
        match process::kill(child, libc::SIGKILL) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e.into()),
        }
        waitid::wait_exited_nowait(child)?;
        let t0 = Instant::now();
        let mut frozen = match Frozen::freeze(self.target) {
            Ok(f) => f,
            Err(e) => {
                // The child becomes a zombie the target can only see with __WALL / __WCLONE.
                kill_and_reap(child)?;
                return Err(Error::Other(format!(
                    "could not freeze process {} again to reap the snapshot child {}: {e}",
                    self.target, child
                )));
            }
        };
        let reaped = kill_and_reap(child).and_then(|()| reap_in(&mut frozen, self.child_in_target));
        let resumed = frozen.resume();
        let frozen_ms = t0.elapsed().as_secs_f64() * 1000.0;
        reaped?;
        resumed?;
        Ok(Finished {
            frozen_ms,
            reaped_in_target: true,
        })
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            eprintln!(
                "crak-capture: ending the snapshot child {}: {e}",
                self.child
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crak_format::record::vma::{Vma, VmaKind};

    fn mapping(start: u64, end: u64, flags: u32, madvise: u32, policy: PagePolicy) -> Mapping {
        Mapping {
            vma: Vma {
                pid: 1,
                kind: VmaKind::Anon,
                start,
                end,
                prot: vma::PROT_READ | vma::PROT_WRITE,
                flags,
                madvise,
                pgoff: 0,
                dev: 0,
                ino: 0,
                size: 0,
                mtime_ns: 0,
                path: Default::default(),
            },
            policy,
        }
    }

    #[test]
    fn what_is_read_while_frozen() {
        let p = vma::MAP_PRIVATE;
        let s = vma::MAP_SHARED;
        assert!(!needs_pre_read(&mapping(0, 1, p, 0, PagePolicy::Anon)));
        assert!(needs_pre_read(&mapping(
            0,
            1,
            p,
            madv::DONTFORK,
            PagePolicy::Anon
        )));
        assert!(needs_pre_read(&mapping(
            0,
            1,
            p,
            madv::WIPEONFORK,
            PagePolicy::Anon
        )));
        assert!(needs_pre_read(&mapping(0, 1, s, 0, PagePolicy::Anon)));
        // Shared file mappings store nothing at all.
        assert!(!needs_pre_read(&mapping(0, 1, s, 0, PagePolicy::None)));
        assert!(!needs_pre_read(&mapping(
            0,
            1,
            p,
            madv::HUGEPAGE,
            PagePolicy::PrivateFile
        )));
    }

    #[derive(Default)]
    struct Rec(Vec<(bool, u64, u64)>);
    impl PageSink for Rec {
        fn pages(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
            self.0.push((true, addr, data.len() as u64 / 4096));
            Ok(())
        }
        fn zeros(&mut self, addr: u64, nr: u64) -> Result<(), Error> {
            self.0.push((false, addr, nr));
            Ok(())
        }
    }

    #[test]
    fn pre_read_runs_replay_per_mapping_in_order() {
        let mut pr = PreRead::default();
        pr.pages(0x1000, &[1u8; 8192]).unwrap();
        pr.zeros(0x3000, 1).unwrap();
        pr.pages(0x9000, &[2u8; 4096]).unwrap();
        let mut out = Rec::default();
        let mut stats = PageStats::default();
        let mut next = 0;
        pr.replay(0x1000, 0x4000, &mut next, 4096, &mut out, &mut stats)
            .unwrap();
        assert_eq!(out.0, vec![(true, 0x1000, 2), (false, 0x3000, 1)]);
        assert_eq!(stats, PageStats { stored: 2, zero: 1 });
        // Nothing between the two mappings; the cursor moved past the first one's runs.
        pr.replay(0x4000, 0x8000, &mut next, 4096, &mut out, &mut stats)
            .unwrap();
        assert_eq!(out.0.len(), 2);
        pr.replay(0x8000, 0xa000, &mut next, 4096, &mut out, &mut stats)
            .unwrap();
        assert_eq!(out.0.last(), Some(&(true, 0x9000, 1)));
        assert_eq!(pr.bytes(), 3 * 4096);
    }
}
