//! Step 3 of a capture: every record but the pages, gathered while the target is frozen.

use super::freeze::Frozen;
use super::{files, mm, task, Error, Options};
use crate::procfs;
use crate::sys;
use crak_format::record::header::{Header, ARCH_X86_64};
use crak_format::record::note::Note;
use crak_format::Record;

/// Everything but the pages, gathered while frozen.
pub(super) struct Metadata {
    /// Every record but PAGES, ZERO_PAGES and END, in writing order (NOTEs last).
    pub(super) records: Vec<Record<'static>>,
    /// The target's mappings, for its pages.
    pub(super) maps: Vec<mm::Mapping>,
    /// File descriptors over all processes.
    pub(super) fds: usize,
    /// The target's descendants (spec §2.3 order), with their mappings, for their pages.
    pub(super) others: Vec<(i32, Vec<mm::Mapping>)>,
    /// What the user should know about what was left out.
    pub(super) warnings: Vec<String>,
}

/// The records of one process, its mappings and its pipes' contents.
struct ProcessMeta {
    records: Vec<Record<'static>>,
    maps: Vec<mm::Mapping>,
    fds: usize,
    pipes: Vec<crak_format::record::pipe_data::PipeData<'static>>,
    xsave_size: Option<usize>,
}

fn header(maps: &[mm::Mapping], page_size: u64) -> Result<Header, Error> {
    let (release, hostname) = sys::process::uname()?;
    let xsave_features = sys::cpu::xcr0()
        .ok_or_else(|| Error::Other("this CPU or kernel does not enable XSAVE".into()))?;
    let xsave_size = sys::cpu::xsave_size().unwrap_or(0);
    Ok(Header {
        arch: ARCH_X86_64,
        page_size: page_size as u32,
        capture_time_ns: sys::process::realtime_ns()?,
        xsave_features,
        xsave_size,
        kernel_release: release.into(),
        hostname: hostname.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        special_mappings: mm::special_mappings(maps),
    })
}

/// Gathers the metadata of the frozen target (`starttime` as preflight saw it) and of its
/// frozen descendants `rest`.
pub(super) fn collect(
    frozen: &mut Frozen,
    rest: &mut [Frozen],
    zombies: &[i32],
    starttime: u64,
    page_size: u64,
    opts: &Options,
) -> Result<Metadata, Error> {
    let root = collect_process(frozen, Some(starttime))?;
    let mut hdr = header(&root.maps, page_size)?;
    if let Some(n) = root.xsave_size {
        if n != hdr.xsave_size as usize {
            // The kernel's ptrace XSAVE size is authoritative for the area we store.
            hdr.xsave_size = n as u32;
        }
    }
    let mut records = vec![Record::Header(hdr)];
    let mut fds = root.fds;
    let mut pipes = root.pipes;
    records.extend(root.records);
    let mut others = Vec::with_capacity(rest.len());
    for f in rest.iter_mut() {
        let p = collect_process(f, None)?;
        records.extend(p.records);
        fds += p.fds;
        // A pipe held by several processes is stored once.
        for d in p.pipes {
            if !pipes.iter().any(|q| q.pipe_id == d.pipe_id) {
                pipes.push(d);
            }
        }
        others.push((f.pid(), p.maps));
    }
    for &z in zombies {
        records.push(Record::Process(zombie_record(z)?));
    }
    check_unix_peers(&records)?;
    mark_shared_descriptions(&mut records)?;
    records.extend(pipes.into_iter().map(Record::PipeData));
    // SysV IPC objects after PIPE_DATA (spec §2.3), read while the tree is frozen.
    let (ipc, warnings) = super::ipc::capture(&records, opts.ipc)?;
    records.extend(ipc);
    if let Some(cmd) = &opts.command {
        // NOTEs go last (spec §2.3); kept here and written after the pages.
        records.push(Record::Note(Note {
            key: "capture.command".into(),
            value: cmd.as_str().into(),
        }));
    }
    Ok(Metadata {
        records,
        maps: root.maps,
        fds,
        others,
        warnings,
    })
}

/// The PROCESS record of a zombie: its place in the tree, name and wait status.
fn zombie_record(pid: i32) -> Result<crak_format::record::process::ProcessRecord, Error> {
    use crak_format::record::process::{ProcessRecord, PROCESS_ZOMBIE};
    let stat = procfs::stat(pid)?;
    if stat.state != 'Z' {
        return Err(Error::Other(format!(
            "process {pid} was a zombie and is in state {} now",
            stat.state
        )));
    }
    Ok(ProcessRecord {
        pid: pid as u32,
        ppid: stat.ppid.max(0) as u32,
        pgid: stat.pgrp.max(0) as u32,
        sid: stat.session.max(0) as u32,
        flags: PROCESS_ZOMBIE | (stat.exit_code & 0xffff) << 16,
        comm: stat.comm.clone().into(),
        tids: vec![pid as u32],
        ..ProcessRecord::default()
    })
}

/// Sets FD `description` on the fds that share an open file description with another fd of the
/// image, in the same process or another (`kcmp`). Pipes and Unix sockets are shared through
/// their inode already; epoll instances keep one description each.
fn mark_shared_descriptions(records: &mut [Record<'static>]) -> Result<(), Error> {
    use crak_format::record::fd::FdKind;
    use std::cmp::Ordering;
    let shareable = |k: FdKind| {
        matches!(
            k,
            FdKind::Reg
                | FdKind::Chr
                | FdKind::Tty
                | FdKind::Eventfd
                | FdKind::Signalfd
                | FdKind::Timerfd
                | FdKind::Tcp
                | FdKind::Udp
        )
    };
    // Candidates by (kind, dev, ino): only those can share a description.
    let mut by_file: std::collections::BTreeMap<(u16, u64, u64), Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        if let Record::Fd(f) = r {
            if shareable(f.kind) {
                by_file
                    .entry((f.kind as u16, f.dev, f.ino))
                    .or_default()
                    .push(i);
            }
        }
    }
    let at = |records: &[Record<'static>], i: usize| match records.get(i) {
        Some(Record::Fd(f)) => (f.pid as i32, f.fd as i32),
        _ => (0, -1),
    };
    let mut next = 1u32;
    for group in by_file.values().filter(|g| g.len() > 1) {
        // Representatives of the descriptions found so far, with their members.
        let mut descs: Vec<Vec<usize>> = Vec::new();
        for &i in group {
            let (p, fd) = at(records, i);
            let mut placed = false;
            for d in &mut descs {
                let Some(&rep) = d.first() else { continue };
                let (rp, rfd) = at(records, rep);
                match crate::sys::kcmp::cmp_files(p, fd, rp, rfd) {
                    Ok(Ordering::Equal) => {
                        d.push(i);
                        placed = true;
                        break;
                    }
                    Ok(_) => {}
                    // No kcmp in this kernel: every fd keeps a description of its own.
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(()),
                    Err(e) => {
                        return Err(Error::Io {
                            context: format!("kcmp of fd {fd} of {p} with fd {rfd} of {rp}"),
                            source: e,
                        })
                    }
                }
            }
            if !placed {
                descs.push(vec![i]);
            }
        }
        for d in descs.into_iter().filter(|d| d.len() > 1) {
            for i in d {
                if let Some(Record::Fd(f)) = records.get_mut(i) {
                    f.description = next;
                }
            }
            next += 1;
        }
    }
    Ok(())
}

/// Every connected Unix socket's peer must be in the image: the pair is restored whole or not
/// at all.
fn check_unix_peers(records: &[Record<'static>]) -> Result<(), Error> {
    use crak_format::record::fd::{FdKind, FdState};
    let held: std::collections::HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Fd(f) if f.kind == FdKind::Unix => Some(f.ino),
            _ => None,
        })
        .collect();
    for r in records {
        let Record::Fd(f) = r else { continue };
        if let Ok(Some(FdState::Unix { peer, .. })) = FdState::decode(f.kind, f.contents.as_bytes())
        {
            if !held.contains(&peer) {
                return Err(Error::UnsupportedFd {
                    pid: f.pid as i32,
                    fd: f.fd as i32,
                    kind: format!(
                        "a Unix socket connected to socket inode {peer}, which no process of the captured tree holds"
                    ),
                    link: format!("socket:[{}]", f.ino),
                });
            }
        }
    }
    Ok(())
}

/// The records of one frozen process; `starttime`, when known, tells it from a later process
/// that reused its pid.
fn collect_process(frozen: &mut Frozen, starttime: Option<u64>) -> Result<ProcessMeta, Error> {
    let pid = frozen.pid();
    let stat = procfs::stat(pid)?;
    if starttime.is_some_and(|t| t != stat.starttime) {
        return Err(Error::Other(format!(
            "process {pid} exited and its pid was reused before it could be frozen"
        )));
    }
    let tids = frozen.tids();
    let status = procfs::status(pid)?;
    let process = task::process_record(pid, &tids, &stat, &status)?;
    // creds makes the first remote call, which also puts back a mask saved by an interrupted
    // sigsuspend & co.; task::thread reads the mask after it.
    let creds = task::creds(frozen, &status)?;
    let mm_rec = task::mm(frozen, &stat)?;
    let rlimits = task::rlimits(frozen)?;
    let sigactions = task::sigactions(frozen)?;
    let mut threads = Vec::with_capacity(tids.len());
    for &tid in &tids {
        let tstatus = if tid == pid {
            status.clone()
        } else {
            procfs::task_status(pid, tid)?
        };
        threads.push(task::thread(frozen, tid, &tstatus)?);
    }
    let squeue = task::shared_queue(pid)?;
    // The last remote call needing memory is done: the address space is the target's own again.
    frozen.release_scratch()?;
    let files = files::capture(pid, frozen.net_holds())?;
    let maps = mm::mappings(pid)?;
    let xsave_size = threads.first().map(|(_, x, _)| x.area.len());

    let mut records = vec![
        Record::Process(process),
        Record::Creds(creds),
        Record::Mm(mm_rec),
        Record::Rlimits(rlimits),
        Record::Sigactions(sigactions),
    ];
    let mut queues = Vec::new();
    for (thread, xsave, mut tqueue) in threads {
        let tid = thread.tid;
        // Signals that arrived during our remote calls in this thread were held back: they
        // are pending.
        tqueue.extend(
            frozen
                .deferred_signals_of(tid as i32)
                .iter()
                .map(|d| d.siginfo),
        );
        records.push(Record::Thread(thread));
        records.push(Record::Xsave(xsave));
        if !tqueue.is_empty() {
            queues.push(task::sigqueue(pid, tid, tqueue));
        }
    }
    if !squeue.is_empty() {
        records.push(Record::Sigqueue(task::sigqueue(pid, 0, squeue)));
    }
    records.extend(queues.into_iter().map(Record::Sigqueue));
    let nfds = files.fds.len();
    records.extend(files.fds.into_iter().map(Record::Fd));
    records.extend(maps.iter().map(|m| Record::Vma(m.vma.clone())));
    Ok(ProcessMeta {
        records,
        maps,
        fds: nfds,
        pipes: files.pipes,
        xsave_size,
    })
}
