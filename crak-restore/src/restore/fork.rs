//! Stage 2 of restore: create the process (`clone3` with the saved PID) and let the child set up,
//! by itself, everything that belongs to the task rather than to its memory; then it stops
//! under ptrace for the parent to rebuild its memory (stage 3).
//!
//! Order inside the child, and why:
//! 1. Block every signal: from here on the child installs handler addresses that are only
//!    meaningful in the restored memory, and queues the saved pending signals; none may be
//!    delivered to crak-restore's code. The final mask is set by the parent just before detach.
//! 2. Personality, session (`setsid` unless `--shell-job`), cwd, umask: plain task state.
//! 3. File descriptors ([`super::files`]): needs the host paths, so before any chroot; done in
//!    the child because file descriptors are the child's own table.
//! 4. Signal dispositions, the alternate stack, queued signals, `clear_child_tid` and the name:
//!    per-task state the kernel keeps outside the address space, so it survives stage 3.
//! 5. Its children, when the image holds a tree ([`super::tree`]): each created with its saved
//!    PID, running this same sequence for its own process.
//! 6. Map the trampoline area at the address the plan chose (free in both layouts), close the
//!    error pipe, then: the root calls `PTRACE_TRACEME` and stops with `SIGSTOP`; any other
//!    process waits to be seized (its parent is the restored program, which must not see a
//!    stopped child).
//!
//! A failure in the child is written to the error pipe and the child exits; the parent reports
//! it. The child never returns into crak-restore's `main`.

use super::files;
use super::plan::{Plan, PAGE, TRAMPOLINE_BATCH_AT, TRAMPOLINE_CODE, TRAMPOLINE_LEN};
use super::tree::{self, Family, Pool};
use super::RestoreError;
use crate::sys::clone::{self, Forked, KernelSigaction};
use crate::sys::prctl;
use crate::sys::remote::BATCH_CODE;
use crak_format::{Image, Process};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// Exit code of a restore child that failed before stopping.
const CHILD_FAILED: i32 = 121;

/// Creates the root of `family` (which creates the rest) and waits until it is stopped and
/// traced by this process and every other process is ready to be seized. Returns its pid.
pub fn spawn(image: &Image<'_>, family: &Family<'_>) -> Result<i32, RestoreError> {
    let root = family
        .members
        .first()
        .ok_or_else(|| RestoreError::Invalid("image holds no process".into()))?;
    let (proc, plan) = (root.proc, &root.plan);
    let (mut reader, writer) =
        std::io::pipe().map_err(|e| RestoreError::failed("pipe", e.to_string()))?;
    let forked = clone::clone3_process(plan.want_pid).map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            RestoreError::Refused(format!(
                "PID {} was taken just now; restore with --new-pid to give the process another PID",
                proc.pid()
            ))
        } else if e.raw_os_error() == Some(libc::EPERM) && plan.want_pid.is_some() {
            RestoreError::Refused(format!(
                "clone3 with set_tid (to get PID {}) needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN: {e}; run as root or restore with --new-pid",
                proc.pid()
            ))
        } else {
            RestoreError::failed("clone3", e.to_string())
        }
    })?;
    match forked {
        Forked::Child => {
            drop(reader);
            run_child(image, family, proc, plan, OwnedFd::from(writer), None)
        }
        Forked::Parent(pid) => {
            drop(writer);
            let status = wait_for_stop(pid)?;
            let mut msg = String::new();
            if family.members.len() > 1 {
                // Every process of the tree holds a copy of the error pipe until it is ready.
                if let Err(e) = read_to_eof(&mut reader, &mut msg) {
                    tree::kill_tree(pid);
                    return Err(RestoreError::failed("preparing the processes", e));
                }
            } else {
                let _ = reader.read_to_string(&mut msg);
            }
            use crate::sys::ptrace::WaitStatus;
            match status {
                WaitStatus::Stopped { signal, .. }
                    if signal == libc::SIGSTOP && !msg.is_empty() =>
                {
                    tree::kill_tree(pid);
                    Err(RestoreError::failed("preparing the processes", msg))
                }
                WaitStatus::Stopped { signal, .. } if signal == libc::SIGSTOP => Ok(pid),
                WaitStatus::Exited { code, .. } => Err(RestoreError::failed(
                    "preparing the process",
                    if msg.is_empty() {
                        format!("the restore child exited with status {code}")
                    } else {
                        msg
                    },
                )),
                other => {
                    super::kill_child(pid);
                    Err(RestoreError::failed(
                        "preparing the process",
                        format!("the restore child stopped unexpectedly: {other:?} {msg}"),
                    ))
                }
            }
        }
    }
}

/// Runs the restore child code for `proc` in a new process and ends it: it never returns.
fn run_child(
    image: &Image<'_>,
    family: &Family<'_>,
    proc: &Process<'_>,
    plan: &Plan,
    errpipe: OwnedFd,
    pool: Option<&Pool>,
) -> ! {
    // First thing: this process's PID, for its descendants and for crak-restore.
    family.publish(proc.pid(), std::process::id() as i32);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_main(image, family, proc, plan, errpipe, pool)
    }));
    match result {
        Ok(Ok(never)) => match never {},
        Ok(Err((msg, Some(fd)))) => {
            let mut f = std::fs::File::from(fd);
            let _ = f.write_all(format!("process {}: {msg}", proc.pid()).as_bytes());
            clone::exit_now(CHILD_FAILED)
        }
        _ => clone::exit_now(CHILD_FAILED + 1),
    }
}

/// Reads the error pipe until every copy is closed, for at most [`CHILD_SETUP_TIMEOUT`].
fn read_to_eof(reader: &mut std::io::PipeReader, msg: &mut String) -> Result<(), String> {
    use std::os::fd::AsFd;
    crate::sys::fdops::set_status_flags(reader.as_fd(), libc::O_NONBLOCK)
        .map_err(|e| format!("error pipe: {e}"))?;
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => msg.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if t0.elapsed() > CHILD_SETUP_TIMEOUT {
                    return Err(format!(
                        "the processes did not finish their setup within {} s",
                        CHILD_SETUP_TIMEOUT.as_secs()
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("error pipe: {e}")),
        }
    }
}

/// How long the child may take to prepare itself before it is considered stuck.
const CHILD_SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the child stops or ends; a child still busy after [`CHILD_SETUP_TIMEOUT`] (e.g.
/// blocked opening a file) is killed and reported with where it was blocked.
fn wait_for_stop(pid: i32) -> Result<crate::sys::ptrace::WaitStatus, RestoreError> {
    let t0 = std::time::Instant::now();
    loop {
        match crate::sys::ptrace::waitpid_nohang(pid) {
            Ok(Some(st)) => return Ok(st),
            Ok(None) => {}
            Err(e) => {
                super::kill_child(pid);
                return Err(RestoreError::failed(
                    "waiting for the restore child",
                    e.to_string(),
                ));
            }
        }
        if t0.elapsed() > CHILD_SETUP_TIMEOUT {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            super::kill_child(pid);
            return Err(RestoreError::failed(
                "preparing the process",
                format!(
                    "the restore child did not finish its setup within {} s (blocked in {wchan}); it was killed",
                    CHILD_SETUP_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// An uninhabited type: `child_main` only returns on error.
enum Never {}

type ChildErr = (String, Option<OwnedFd>);

fn child_main(
    image: &Image<'_>,
    family: &Family<'_>,
    proc: &Process<'_>,
    plan: &Plan,
    errpipe: OwnedFd,
    pool: Option<&Pool>,
) -> Result<Never, ChildErr> {
    let p = &proc.process;
    let is_root = pool.is_none();
    // 1. Nothing may be delivered from now on.
    if let Err(e) = clone::block_all_signals() {
        return Err((format!("blocking signals: {e}"), Some(errpipe)));
    }
    // 1b. The image's filesystem identity, before any path of the image is used (creds.rs).
    if let Err(e) = super::creds::enter_fs_identity(proc.creds.as_ref()) {
        return Err((e, Some(errpipe)));
    }
    // 2. Task attributes.
    if let Err(e) = prctl::set_personality(p.personality) {
        return Err((
            format!("personality({:#x}): {e}", p.personality),
            Some(errpipe),
        ));
    }
    if is_root {
        if !plan.options.shell_job {
            if let Err(e) = clone::new_session() {
                return Err((format!("setsid: {e}"), Some(errpipe)));
            }
        }
    } else if p.sid == p.pid {
        if let Err(e) = clone::new_session() {
            return Err((format!("setsid: {e}"), Some(errpipe)));
        }
    } else if let Some(leader) = tree::group_to_join(family, proc) {
        let me = std::process::id() as i32;
        let g = match tree::live_group(family, p.pid, me, leader) {
            Ok(g) => g,
            Err(e) => return Err((e, Some(errpipe))),
        };
        if let Err(e) = clone::set_pgid(0, g) {
            return Err((format!("setpgid(0, {g}): {e}"), Some(errpipe)));
        }
    }
    {
        use std::os::unix::ffi::OsStrExt;
        let cwd = std::ffi::OsStr::from_bytes(p.cwd.as_bytes());
        if let Err(e) = std::env::set_current_dir(cwd) {
            return Err((format!("chdir({}): {e}", p.cwd), Some(errpipe)));
        }
    }
    clone::set_umask(p.umask);
    // 3. Files; the root makes the pipes the tree shares first.
    let mut made: Option<Pool> = None;
    let pool: &Pool = match pool {
        Some(p) => p,
        None => match tree::make_pool(family, image) {
            Ok(p) => made.insert(p),
            Err(e) => return Err((e, Some(errpipe))),
        },
    };
    let errpipe = files::restore_fds_keeping(
        &proc.fds,
        &image.pipes,
        errpipe,
        plan.tty_path.as_deref(),
        &tree::pool_fds(pool),
        &tree::pool_files(pool),
        &files::Sockets {
            pooled: &tree::pooled_sockets(pool),
            external: &plan.options.external_unix,
            scm: &image.scm,
            pids: &family.pid_map(),
            pool: Some(pool),
        },
    )?;
    if let Err(e) = tree::place_shared(&proc.fds, pool) {
        return Err((e, Some(errpipe)));
    }
    if let Err(e) = files::register_epoll(&proc.fds) {
        return Err((e, Some(errpipe)));
    }
    let errpipe = Some(errpipe);
    let step = |r: std::io::Result<()>,
                what: String,
                fd: &mut Option<OwnedFd>|
     -> Result<(), ChildErr> { r.map_err(|e| (format!("{what}: {e}"), fd.take())) };
    let mut errpipe = errpipe;
    if let Err(e) = super::fault_point("restore-in-child") {
        return Err((e.to_string(), errpipe.take()));
    }
    // 4. Signals and other per-task state.
    for signo in 1..=64i32 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        let act = proc
            .sigactions
            .as_ref()
            .and_then(|s| s.actions.iter().find(|a| a.signo == signo as u32))
            .map(|a| KernelSigaction {
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            })
            .unwrap_or_default();
        step(
            clone::set_raw_sigaction(signo, &act),
            format!("rt_sigaction({})", super::signals::name(signo)),
            &mut errpipe,
        )?;
    }
    let Some(t) = proc.threads.iter().find(|t| t.tid == proc.pid()) else {
        return Err(("no THREAD record for the leader".into(), errpipe.take()));
    };
    step(
        clone::set_sigaltstack(
            t.sas_sp,
            t.sas_size,
            t.sas_flags & !(libc::SS_ONSTACK as u32),
        ),
        format!("sigaltstack({:#x}, {})", t.sas_sp, t.sas_size),
        &mut errpipe,
    )?;
    // The process-wide queue and the leader's; the other threads' are queued by the parent
    // once those threads exist (super::threads).
    for q in proc
        .sigqueues
        .iter()
        .filter(|q| q.tid == 0 || q.tid == proc.pid())
    {
        for si in &q.siginfos {
            let mut raw = [0u8; 128];
            if si.len() != raw.len() {
                return Err(("siginfo is not 128 bytes".into(), errpipe.take()));
            }
            raw.copy_from_slice(si.as_bytes());
            let signo = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            step(
                clone::queue_signal_to_self(signo, &raw, q.tid != 0),
                format!("queueing {}", super::signals::name(signo)),
                &mut errpipe,
            )?;
        }
    }
    clone::set_tid_address(t.clear_child_tid);
    // An image without the 1.2 THREAD fields leaves no robust list: the one this process
    // inherited points into memory that is about to be replaced.
    let (head, len) = robust_list(t);
    step(
        clone::set_robust_list(head, len),
        format!("set_robust_list({head:#x}, {len})"),
        &mut errpipe,
    )?;
    step(
        prctl::set_name(p.comm.as_bytes()),
        "PR_SET_NAME".into(),
        &mut errpipe,
    )?;
    // 5. The children.
    for child in family.children_of(proc.pid()) {
        let c = child.proc;
        let forked = clone::clone3_process(child.plan.want_pid);
        match forked {
            Ok(Forked::Child) => match errpipe.take() {
                Some(fd) => run_child(image, family, c, &child.plan, fd, Some(pool)),
                None => clone::exit_now(CHILD_FAILED + 1),
            },
            Ok(Forked::Parent(cpid)) => {
                family.publish(c.pid(), cpid);
                if let Some(leader) = tree::group_to_join(family, c) {
                    let g = match tree::live_group(family, c.pid(), cpid, leader) {
                        Ok(g) => g,
                        Err(e) => return Err((e, errpipe.take())),
                    };
                    step(
                        clone::set_pgid(cpid, g),
                        format!("setpgid({cpid}, {g})"),
                        &mut errpipe,
                    )?;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err((
                    format!("creating child {}: its PID was taken just now", c.pid()),
                    errpipe.take(),
                ))
            }
            Err(e) => {
                return Err((
                    format!("creating child {} (clone3): {e}", c.pid()),
                    errpipe.take(),
                ))
            }
        }
    }
    // Zombies: created with their PID, they end at once with their wait status and stay until
    // this process reaps them.
    for z in family.zombies_of(proc.pid()) {
        match clone::clone3_process(z.want_pid) {
            Ok(Forked::Child) => clone::end_with_status(z.proc.process.wait_status()),
            Ok(Forked::Parent(zpid)) => family.publish(z.proc.pid(), zpid),
            Err(e) => {
                return Err((
                    format!("recreating the zombie {} (clone3): {e}", z.proc.pid()),
                    errpipe.take(),
                ))
            }
        }
    }
    // Every child holds its copy of the pool: this process needs it no more. (Closed by number:
    // a child's pool is its parent's, seen in the inherited memory.)
    tree::close_pool(pool);
    std::mem::forget(made.take());
    // 6. The trampoline, then hand over to the tracer.
    let mut code = vec![0xccu8; PAGE as usize];
    code[..TRAMPOLINE_CODE.len()].copy_from_slice(&TRAMPOLINE_CODE);
    let batch = TRAMPOLINE_BATCH_AT as usize;
    code[batch..batch + BATCH_CODE.len()].copy_from_slice(&BATCH_CODE);
    step(
        clone::map_trampoline(plan.trampoline, TRAMPOLINE_LEN as usize, &code),
        format!("mapping the trampoline at {:#x}", plan.trampoline),
        &mut errpipe,
    )?;
    if !is_root {
        // Closing the error pipe tells crak-restore this process is ready.
        drop(errpipe.take());
        clone::wait_for_tracer();
    }
    step(clone::trace_me(), "PTRACE_TRACEME".into(), &mut errpipe)?;
    let fd = errpipe.take();
    drop(fd);
    if let Err(e) = clone::stop_self() {
        clone::exit_now(CHILD_FAILED + 2 + (e.raw_os_error().unwrap_or(0) & 1));
    }
    // The tracer replaces every register before it lets the child run; reaching this point
    // means it resumed the child without doing so.
    clone::exit_now(CHILD_FAILED + 4)
}

/// The robust futex list a restored thread registers: the saved one, or none (the length the
/// kernel requires, with a null head) when the image predates the field.
pub(super) fn robust_list(t: &crak_format::record::thread::Thread) -> (u64, u64) {
    match &t.ext {
        Some(x) => (x.robust_list, x.robust_list_len),
        None => (0, ROBUST_LIST_HEAD_SIZE),
    }
}

/// `sizeof(struct robust_list_head)` on x86_64, the only length `set_robust_list` accepts.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;
