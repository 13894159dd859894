//! Restore: recreate a process from a crak image, with its PID, as a child of the caller.
//!
//! The stages, in order (each file explains its own inner order):
//!
//! 1. [`plan`]: check the image and the host; choose the addresses used later. Nothing exists
//!    yet, so a refusal here leaves no trace.
//!    Then [`ipc`]: the image's SysV IPC objects are created with their ids (removed again if
//!    the restore fails), before any process, which attaches them in stage 3.
//! 2. [`fork`]: `clone3` with the saved PID; the child sets up its task state (files, signal
//!    dispositions, queued signals, cwd, umask, session) and stops under ptrace.
//! 3. [`mm`]: the parent rebuilds the child's memory with remote system calls.
//! 4. Task state that needs the new memory or the parent's help: rseq registration at the saved
//!    area, resource limits (`prlimit` from outside: lowering `RLIMIT_NOFILE` or `RLIMIT_AS`
//!    earlier could have failed stages 2 and 3), the root directory (after stage 3, whose paths
//!    are host paths); then the other threads ([`threads`]), while still privileged.
//! 5. [`creds`]: credentials last, in every thread, after everything that needs privilege.
//! 6. [`regs`]: registers, XSAVE state, blocked mask of every thread; detach the leader, then
//!    the other threads. This is the point of no return.
//!
//! Any failure before the point of no return kills the half-built child (and only it) and is
//! reported; the PTRACE_O_EXITKILL option also kills it if crak-restore itself dies.

pub mod creds;
pub mod files;
pub mod fork;
pub mod ipc;
pub mod mm;
pub mod net;
pub mod objects;
pub mod plan;
pub mod regs;
pub mod scm;
pub mod signals;
pub mod threads;
pub mod tree;
pub mod unix_socket;

pub use mm::ImageFile;
pub use plan::Options;

use crate::sys::ptrace;
use crak_format::Image;
use std::time::{Duration, Instant};

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The image is malformed or inconsistent.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// The image is fine but this host or restorer cannot take it (PID taken, file changed,
    /// unsupported feature).
    #[error("{0}")]
    Refused(String),
    /// A step of the restore failed; the half-built process was killed.
    #[error("{stage}: {detail}")]
    Failed {
        /// The step.
        stage: String,
        /// What happened.
        detail: String,
    },
}

impl RestoreError {
    /// A failed step.
    pub fn failed(stage: impl Into<String>, detail: String) -> Self {
        RestoreError::Failed {
            stage: stage.into(),
            detail,
        }
    }
}

/// Fails when `CRAK_FAULT` names this injection point ([`crate::fault`]). Restore points:
/// `restore-in-child` (in the child, after its files are set up), `restore-after-fork`,
/// `restore-mid-mm`, `restore-before-detach`.
pub fn fault_point(name: &str) -> Result<(), RestoreError> {
    crate::fault::point(name).map_err(|e| RestoreError::failed(name, e.to_string()))
}

/// Kills a half-built child and reaps it: its other threads first (traced threads must be
/// reaped by their tracer before the leader's exit is reported), then the leader.
pub fn kill_child(pid: i32) {
    let tids = crate::procfs::tids(pid).unwrap_or_default();
    let _ = crate::sys::process::kill(pid, libc::SIGKILL);
    for tid in tids.into_iter().filter(|&t| t != pid) {
        loop {
            match ptrace::waitpid(tid) {
                Ok(s) if s.is_gone() => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    loop {
        match ptrace::waitpid(pid) {
            Ok(s) if s.is_gone() => break,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
}

/// What was restored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// PID of the restored process.
    pub pid: i32,
    /// Whether it got the PID it had at capture.
    pub same_pid: bool,
    /// Processes restored (the root and its descendants).
    pub processes: usize,
    /// Pages written from the image.
    pub pages: u64,
    /// Bytes written from the image.
    pub bytes: u64,
    /// VMAs created.
    pub vmas: u64,
    /// Of `bytes`, those mapped from the image file instead of copied (`--lazy`).
    pub lazy_bytes: u64,
    /// File descriptors restored.
    pub fds: usize,
    /// Wall time of the restore.
    #[serde(serialize_with = "ser_ms", rename = "time_ms")]
    pub elapsed: Duration,
    /// Time until the processes ran: with `--lazy`, the CRCs of the pages mapped from the image
    /// are checked after it (in `elapsed`).
    #[serde(serialize_with = "ser_ms", rename = "running_ms")]
    pub running: Duration,
    /// For a tree: the saved and the live PID of every process, zombies included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<(u32, i32)>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Restores the single process of `image` as a child of the caller and lets it run.
/// The caller must be single-threaded (the child is a copy of it).
pub fn restore(image: &Image<'_>, options: &Options) -> Result<Summary, RestoreError> {
    restore_inner(image, options, None)
}

/// [`restore`] of an image parsed from a mapping of `file`: the restored process reads its
/// stored pages from the image file itself (one copy, page cache to its memory), or maps them
/// with [`ImageFile`]'s `lazy`. The file must not change before the restore returns (checked
/// before the point of no return); with `lazy`, it must stay in place, unmodified, while the
/// restored process lives.
pub fn restore_from_file(
    image: &Image<'_>,
    options: &Options,
    file: &ImageFile<'_>,
) -> Result<Summary, RestoreError> {
    restore_inner(image, options, Some(file))
}

fn restore_inner(
    image: &Image<'_>,
    options: &Options,
    src: Option<&ImageFile<'_>>,
) -> Result<Summary, RestoreError> {
    let t0 = Instant::now();
    // Stage 1. The kernel first: one clear error naming a missing feature.
    crate::kernel::Kernel::probe()
        .require_restore()
        .map_err(|e| RestoreError::Refused(e.to_string()))?;
    let family = tree::family(image, options)?;
    // Eagerly restored pages are checked before anything is created; lazily mapped ones once
    // the processes run (below).
    if let Some(f) = src.filter(|f| !f.lazy()) {
        f.check_all()?;
    }
    ipc::check(image)?;
    // Stage 1b: the SysV IPC objects, which the processes attach and name by id. Removed again
    // (the guard) if anything below fails.
    let mut objects = ipc::create(image, options.ipc_replace)?;
    let segments: Vec<(u64, u64)> = image
        .shm_segments
        .iter()
        .map(|s| (u64::from(s.perm.id), s.size))
        .collect();
    // Socket files a failed restore must not leave behind: the image's path names that no
    // file holds yet.
    let fresh = unix_socket::absent_paths(family.members.iter().map(|m| m.proc));
    // Stage 2.
    let pid =
        fork::spawn(image, &family).inspect_err(|_| unix_socket::remove_socket_files(&fresh))?;
    match build(&family, pid, src, &segments, &mut objects, options) {
        Ok(mut summary) => {
            objects.keep();
            summary.running = t0.elapsed();
            if let Some(Err(e)) = src.map(ImageFile::check_rest) {
                let who = kill_built(family.members.len() > 1, pid, "restored");
                let note = format!("pages mapped from the image, checked once it ran; {who}");
                return Err(noted(e, &note));
            }
            summary.elapsed = t0.elapsed();
            Ok(summary)
        }
        Err(e) => {
            let what = kill_built(family.members.len() > 1, pid, "half-built");
            unix_socket::remove_socket_files(&fresh);
            Err(noted(e, &what))
        }
    }
}

/// Kills what a restore built under `pid` (the whole tree when it made several processes) and
/// says so: "the `which` process PID was killed".
fn kill_built(tree: bool, pid: i32, which: &str) -> String {
    if tree {
        tree::kill_tree(pid);
        format!("the {which} process tree under {pid} was killed")
    } else {
        kill_child(pid);
        format!("the {which} process {pid} was killed")
    }
}

/// `e` with `note` appended to its message (errors that carry one).
fn noted(e: RestoreError, note: &str) -> RestoreError {
    match e {
        RestoreError::Failed { stage, detail } => RestoreError::Failed {
            stage,
            detail: format!("{detail}; {note}"),
        },
        RestoreError::Invalid(m) => RestoreError::Invalid(format!("{m}; {note}")),
        other => other,
    }
}

/// Stages 3 to 6 on every process of the stopped tree (`root` is the root's pid).
fn build(
    family: &tree::Family<'_>,
    root: i32,
    src: Option<&ImageFile<'_>>,
    segments: &[(u64, u64)],
    objects: &mut ipc::Created,
    options: &Options,
) -> Result<Summary, RestoreError> {
    ptrace::setoptions(
        root,
        ptrace::options::TRACESYSGOOD | ptrace::options::EXITKILL | ptrace::options::TRACECLONE,
    )
    .map_err(|e| RestoreError::failed("PTRACE_SETOPTIONS", e.to_string()))?;
    fault_point("restore-after-fork")?;
    // The other processes wait to be seized, under the PIDs they published.
    let mut live = vec![root];
    for m in family.members.iter().skip(1) {
        let pid = family.live_pid(m.proc.pid()).ok_or_else(|| {
            RestoreError::failed(
                "seizing the processes",
                format!("process {} did not publish its PID", m.proc.pid()),
            )
        })?;
        tree::seize(pid)?;
        live.push(pid);
    }
    let mut ready = Vec::with_capacity(family.members.len());
    for (m, &pid) in family.members.iter().zip(&live) {
        ready.push(prepare(
            m.proc,
            &m.plan,
            pid,
            src,
            &family.shared_anon,
            segments,
        )?);
    }
    // Every process has attached its segments: those removed at capture are removed again.
    objects.mark_destroyed()?;
    // Stage 6. The pages read from the image file were those whose CRCs were checked only if
    // the file has not changed since.
    if let Some(f) = src {
        f.unchanged()?;
    }
    let mut summary = Summary {
        pid: root,
        same_pid: family
            .members
            .first()
            .is_some_and(|m| m.proc.pid() == root as u32),
        processes: family.members.len(),
        pages: 0,
        bytes: 0,
        lazy_bytes: 0,
        vmas: 0,
        fds: 0,
        elapsed: Duration::ZERO,
        running: Duration::ZERO,
        pids: family.pid_map(),
    };
    // TCP connections leave repair mode right before their processes run.
    let running: Vec<(&crak_format::Process<'_>, i32)> = family
        .members
        .iter()
        .zip(&ready)
        .map(|(m, p)| (m.proc, p.pid))
        .collect();
    fault_point("restore-before-tcp-live")?;
    net::go_live(&running, options.tcp_close)?;
    // Children before their parents: a parent never runs while a child is still stopped.
    for (m, p) in family.members.iter().zip(&ready).rev() {
        finish(m.proc, &m.plan, p)?;
        for (tid, d) in &p.deferred {
            crate::sys::objects::requeue_signal(p.pid, *tid, d.signo, &d.siginfo);
        }
        summary.pages += p.stats.pages;
        summary.bytes += p.stats.bytes;
        summary.lazy_bytes += p.stats.lazy_bytes;
        summary.vmas += p.stats.vmas;
        summary.fds += m.proc.fds.len();
    }
    // The processes run: the peers' packets may reach the new sockets.
    for w in net::unlock(family.members.iter().map(|m| m.proc)) {
        eprintln!("crak-restore: warning: {w}");
    }
    Ok(summary)
}

/// A process with its memory, threads and credentials in place, still stopped.
struct Prepared<'a> {
    pid: i32,
    thread: &'a crak_format::record::thread::Thread,
    others: Vec<threads::Created<'a>>,
    stats: mm::MmStats,
    /// Signals held back during the remote calls, by thread.
    deferred: Vec<(i32, crate::sys::remote::DeferredSignal)>,
}

/// Stages 3 to 5 on the stopped process `pid`.
fn prepare<'a>(
    proc: &'a crak_format::Process<'a>,
    plan: &plan::Plan,
    pid: i32,
    src: Option<&ImageFile<'_>>,
    shared: &[mm::SharedAnon],
    segments: &[(u64, u64)],
) -> Result<Prepared<'a>, RestoreError> {
    let mut r = mm::Remote::new(pid, plan.trampoline);
    // Stage 3.
    mm::unregister_own_rseq(&mut r)?;
    let stats = mm::rebuild_sharing(&mut r, proc, plan, src, shared, segments)?;
    // Stage 4.
    let thread = proc
        .threads
        .iter()
        .find(|t| t.tid == proc.pid())
        .ok_or_else(|| RestoreError::Invalid("no THREAD record for the leader".into()))?;
    if thread.rseq_len != 0 {
        r.call(
            || format!("rseq(register {:#x})", thread.rseq_addr),
            libc::SYS_rseq,
            &[
                thread.rseq_addr,
                u64::from(thread.rseq_len),
                0,
                u64::from(thread.rseq_sig),
            ],
        )?;
    }
    if let Some(rl) = &proc.rlimits {
        for l in &rl.limits {
            crate::sys::process::set_rlimit(pid, l.resource, l.cur, l.max).map_err(|e| {
                let show = |v: u64| {
                    if v == u64::MAX {
                        "unlimited".to_string()
                    } else {
                        v.to_string()
                    }
                };
                RestoreError::failed(
                    "setting resource limits",
                    format!(
                        "{} soft {} hard {}: {e}",
                        rlimit_name(l.resource),
                        show(l.cur),
                        show(l.max)
                    ),
                )
            })?;
        }
    }
    objects::restore_locks(&mut r, proc)?;
    let own_root = std::fs::read_link("/proc/self/root").unwrap_or_default();
    {
        use std::os::unix::ffi::OsStrExt;
        let root = proc.process.root.as_bytes();
        if !root.is_empty() && root != own_root.as_os_str().as_bytes() {
            let mut z = root.to_vec();
            z.push(0);
            let a = r.put(0, &z)?;
            r.call(
                || format!("chroot({})", proc.process.root),
                libc::SYS_chroot,
                &[a],
            )?;
        }
    }
    let mut others = threads::create(&mut r, proc, plan)?;
    // Once every thread exists (a timer may signal one of them), before the credentials
    // (PR_TIMER_CREATE_RESTORE_IDS needs privilege).
    let tids: Vec<(u32, i32)> = std::iter::once((proc.pid(), pid))
        .chain(others.iter().map(|c| (c.thread.tid, c.tid)))
        .collect();
    objects::restore_timers(&mut r, proc, &tids)?;
    // Stage 5.
    if let Some(cr) = &proc.creds {
        creds::restore_creds(&mut r, cr)?;
        for c in &mut others {
            creds::restore_creds(&mut c.remote, cr)?;
        }
    }
    // Signals that arrived during the remote calls (a timer restored above that expired) were
    // held back; they are queued again once the process runs.
    let mut deferred: Vec<(i32, crate::sys::remote::DeferredSignal)> =
        r.rs.take_deferred_signals()
            .into_iter()
            .map(|d| (pid, d))
            .collect();
    for c in &mut others {
        let tid = c.tid;
        deferred.extend(
            c.remote
                .rs
                .take_deferred_signals()
                .into_iter()
                .map(|d| (tid, d)),
        );
    }
    Ok(Prepared {
        pid,
        thread,
        others,
        stats,
        deferred,
    })
}

/// Stage 6 on a prepared process: registers, XSAVE and mask of every thread; the leader is
/// detached, then the other threads.
fn finish(
    proc: &crak_format::Process<'_>,
    plan: &plan::Plan,
    p: &Prepared<'_>,
) -> Result<(), RestoreError> {
    let xsave_of = |tid: u32| {
        proc.xsaves
            .iter()
            .find(|x| x.tid == tid)
            .ok_or_else(|| RestoreError::Invalid(format!("no XSAVE record for thread {tid}")))
    };
    for c in &p.others {
        threads::prepare(c, xsave_of(c.thread.tid)?.area.as_bytes())?;
    }
    regs::finish(
        p.pid,
        plan.trampoline,
        p.thread,
        xsave_of(p.thread.tid)?.area.as_bytes(),
    )?;
    threads::detach_all(&p.others)
}

/// The conventional name of an `RLIMIT_*` resource.
fn rlimit_name(resource: u32) -> String {
    crak_format::names::rlimit(resource)
}

/// Signals crak-restore passes on to the process it waits for, as a shell passes them to its
/// foreground job: `SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGTERM`, `SIGUSR1`, `SIGUSR2`.
const FORWARDED: [i32; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The signals [`wait_exit_code`] takes: those it forwards, and `SIGCHLD`, which wakes it as
/// soon as the child ends.
fn waited_mask() -> u64 {
    FORWARDED
        .iter()
        .chain(&[libc::SIGCHLD])
        .fold(0u64, |m, s| m | 1 << (s - 1))
}

/// Blocks the signals [`wait_exit_code`] forwards (and `SIGCHLD`), so that none ends
/// crak-restore before it waits; call before [`restore`] (the child's own mask is set from the
/// image).
pub fn block_forwarded_signals() -> Result<(), RestoreError> {
    crate::sys::clone::block_signals(waited_mask())
        .map_err(|e| RestoreError::failed("blocking signals", e.to_string()))
}

/// Waits for the restored child to end; returns its exit code, or 128 + the signal that killed
/// it, as a shell would. Signals crak-restore receives meanwhile ([`FORWARDED`], blocked with
/// [`block_forwarded_signals`]) are passed on to the child, except, for a `--shell-job`, those
/// the terminal sent (`^C`, `^\`): the child, in the same foreground process group, got them
/// too.
pub fn wait_exit_code(pid: i32, shell_job: bool) -> Result<i32, RestoreError> {
    let mask = waited_mask();
    loop {
        match ptrace::waitpid_nohang(pid) {
            Ok(Some(ptrace::WaitStatus::Exited { code, .. })) => return Ok(code),
            Ok(Some(ptrace::WaitStatus::Signaled { signal, .. })) => return Ok(128 + signal),
            Ok(_) => {}
            Err(e) => {
                return Err(RestoreError::failed(
                    "waiting for the process",
                    e.to_string(),
                ))
            }
        }
        if let Some(sig) = crate::sys::clone::wait_signal(mask, 100) {
            let from_terminal = sig.code == libc::SI_KERNEL;
            if sig.signo != libc::SIGCHLD && !(shell_job && from_terminal) {
                let _ = crate::sys::process::kill(pid, sig.signo);
            }
        }
    }
}
