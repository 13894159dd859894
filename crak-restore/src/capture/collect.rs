//! Step 3 of a capture: every record but the pages, gathered while the target is frozen.

use super::freeze::Frozen;
use super::{files, mm, objects, task, Error, Options};
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
    in_flight: Vec<files::InFlight>,
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
    let mut in_flight = root.in_flight;
    records.extend(root.records);
    let mut others = Vec::with_capacity(rest.len());
    for f in rest.iter_mut() {
        let p = collect_process(f, None)?;
        records.extend(p.records);
        fds += p.fds;
        in_flight.extend(p.in_flight);
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
    check_unix_peers(&records, &in_flight)?;
    mark_unix_socket_peers(&mut records)?;
    mark_shared_descriptions(&mut records, &mut in_flight)?;
    add_locks(&mut records)?;
    records.extend(pipes.into_iter().map(Record::PipeData));
    // The files in flight after the pipes (spec §2.3); their copies are closed here, once
    // compared with the tree's fds.
    records.extend(in_flight.into_iter().map(|f| Record::Scm(f.scm)));
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
/// image, in the same process or another (`kcmp`), and on the files in flight (compared through
/// the copies this process holds). Pipes and Unix sockets are shared through their inode
/// already; epoll instances keep one description each.
fn mark_shared_descriptions(
    records: &mut [Record<'static>],
    in_flight: &mut [files::InFlight],
) -> Result<(), Error> {
    use crak_format::record::fd::{Fd, FdKind};
    use std::cmp::Ordering;
    use std::os::fd::AsRawFd;
    let shareable = |k: FdKind| {
        matches!(
            k,
            FdKind::Reg
                | FdKind::Chr
                | FdKind::Tty
                | FdKind::Eventfd
                | FdKind::Signalfd
                | FdKind::Timerfd
                | FdKind::Inotify
                | FdKind::Memfd
                | FdKind::Tcp
                | FdKind::Udp
        )
    };
    /// Where an fd is: a record, or file `.1` of in-flight message `.0`.
    #[derive(Clone, Copy)]
    enum Loc {
        Rec(usize),
        Flight(usize, usize),
    }
    let me = std::process::id() as i32;
    // Candidates by (kind, dev, ino): only those can share a description; with the (pid, fd)
    // that kcmp compares.
    /// An fd that may share a description: where it is, and the (pid, fd) kcmp compares.
    type Candidate = (Loc, i32, i32);
    let mut by_file: std::collections::BTreeMap<(u16, u64, u64), Vec<Candidate>> =
        Default::default();
    let mut add = |f: &Fd<'_>, loc: Loc, pid: i32, fd: i32| {
        if shareable(f.kind) {
            by_file
                .entry((f.kind as u16, f.dev, f.ino))
                .or_default()
                .push((loc, pid, fd));
        }
    };
    for (i, r) in records.iter().enumerate() {
        if let Record::Fd(f) = r {
            add(f, Loc::Rec(i), f.pid as i32, f.fd as i32);
        }
    }
    for (i, m) in in_flight.iter().enumerate() {
        for (j, (f, copy)) in m.scm.files.iter().zip(&m.copies).enumerate() {
            add(f, Loc::Flight(i, j), me, copy.as_raw_fd());
        }
    }
    let mut next = 1u32;
    for group in by_file.values().filter(|g| g.len() > 1) {
        // Representatives of the descriptions found so far, with their members.
        let mut descs: Vec<Vec<Candidate>> = Vec::new();
        for &(loc, p, fd) in group {
            let mut placed = false;
            for d in &mut descs {
                let Some(&(_, rp, rfd)) = d.first() else {
                    continue;
                };
                match crate::sys::kcmp::cmp_files(p, fd, rp, rfd) {
                    Ok(Ordering::Equal) => {
                        d.push((loc, p, fd));
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
                descs.push(vec![(loc, p, fd)]);
            }
        }
        for d in descs.into_iter().filter(|d| d.len() > 1) {
            for (loc, _, _) in d {
                let f = match loc {
                    Loc::Rec(i) => match records.get_mut(i) {
                        Some(Record::Fd(f)) => Some(f),
                        _ => None,
                    },
                    Loc::Flight(i, j) => in_flight.get_mut(i).and_then(|m| m.scm.files.get_mut(j)),
                };
                if let Some(f) = f {
                    f.description = next;
                }
            }
            next += 1;
        }
    }
    Ok(())
}

/// Adds each process's LOCKS record after its last FD record (spec §2.3), once the fds know
/// which open file descriptions they share.
fn add_locks(records: &mut Vec<Record<'static>>) -> Result<(), Error> {
    let mut inserts = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let Some(Record::Fd(first)) = records.get(i) else {
            i += 1;
            continue;
        };
        let pid = first.pid;
        let mut j = i;
        while matches!(records.get(j), Some(Record::Fd(f)) if f.pid == pid) {
            j += 1;
        }
        let fds: Vec<&crak_format::record::fd::Fd<'static>> = records
            .get(i..j)
            .unwrap_or(&[])
            .iter()
            .filter_map(|r| match r {
                Record::Fd(f) => Some(f),
                _ => None,
            })
            .collect();
        if let Some(l) = objects::locks(pid as i32, &fds)? {
            inserts.push((j, l));
        }
        i = j;
    }
    for (at, l) in inserts.into_iter().rev() {
        records.insert(at, Record::Locks(l));
    }
    Ok(())
}

/// Every connected Unix socket's peer must be in the image: the pair is restored whole or not
/// at all.
fn check_unix_peers(
    records: &[Record<'static>],
    in_flight: &[files::InFlight],
) -> Result<(), Error> {
    use crak_format::record::fd::{FdKind, FdState};
    // Ends in flight (spec §3.23) are in the image too.
    let flying = || in_flight.iter().flat_map(|m| m.scm.files.iter());
    let held: std::collections::HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Fd(f) if f.kind == FdKind::Unix => Some(f.ino),
            _ => None,
        })
        .chain(flying().filter(|f| f.kind == FdKind::Unix).map(|f| f.ino))
        .collect();
    for (m, f) in in_flight
        .iter()
        .flat_map(|m| m.scm.files.iter().map(move |f| (m, f)))
    {
        if let Ok(Some(FdState::Unix { peer, .. })) = FdState::decode(f.kind, f.contents.as_bytes())
        {
            if !held.contains(&peer) {
                return Err(Error::Other(format!(
                    "a Unix socket in flight on socket inode {} is connected to socket inode {peer}, which no process of the captured tree holds",
                    m.scm.socket
                )));
            }
        }
    }
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

/// Mappings of memfds: one whose memfd an fd of the process holds stores nothing (the FD record
/// holds the contents); one whose memfd no fd holds stores every page of the object it covers.
fn memfd_mappings(
    pid: i32,
    fds: &[crak_format::record::fd::Fd<'static>],
    maps: &mut [mm::Mapping],
) -> Result<(), Error> {
    use crak_format::record::fd::FdKind;
    use crak_format::record::vma::VmaKind;
    for m in maps.iter_mut() {
        let v = &m.vma;
        if v.kind != VmaKind::Anon || !v.path.as_bytes().starts_with(b"/memfd:") {
            continue;
        }
        if fds
            .iter()
            .any(|f| f.kind == FdKind::Memfd && f.ino == v.ino)
        {
            continue;
        }
        let mf = procfs::path(pid, &format!("map_files/{:x}-{:x}", v.start, v.end));
        let size = std::fs::metadata(&mf)
            .map_err(|e| Error::Io {
                context: format!("stat of the memfd mapped at {:#x}", v.start),
                source: e,
            })?
            .len();
        let inside = size.saturating_sub(v.pgoff).div_ceil(4096) * 4096;
        m.policy = mm::PagePolicy::Whole(v.start.saturating_add(inside));
    }
    Ok(())
}

/// UNIX_SOCKET peers: a peer no process of the tree holds (and that is not a connection
/// waiting on a listener of the tree) is outside the image: marked `PEER_EXTERNAL` when it has
/// a name to reconnect to, else refused; a listener's pending client must be in the tree.
fn mark_unix_socket_peers(records: &mut [Record<'static>]) -> Result<(), Error> {
    use crak_format::record::fd::{FdKind, FdState, UNIX_PEER_EXTERNAL};
    use crak_format::Blob;
    let mut held = std::collections::HashSet::new();
    // Connections not yet accepted: their identifier and their listener's name.
    let mut embryos = std::collections::HashMap::new();
    for r in records.iter() {
        let Record::Fd(f) = r else { continue };
        if matches!(f.kind, FdKind::Unix | FdKind::UnixSocket) {
            held.insert(f.ino);
        }
        if let Ok(Some(FdState::UnixSocket(s))) = FdState::decode(f.kind, f.contents.as_bytes()) {
            embryos.extend(s.pending.iter().map(|c| (c.ino, s.name.clone())));
        }
    }
    for r in records.iter_mut() {
        let Record::Fd(f) = r else { continue };
        let Ok(Some(FdState::UnixSocket(mut s))) = FdState::decode(f.kind, f.contents.as_bytes())
        else {
            continue;
        };
        let refuse = |kind: String| Error::UnsupportedFd {
            pid: f.pid as i32,
            fd: f.fd as i32,
            kind,
            link: format!("socket:[{}]", f.ino),
        };
        if let Some(c) = s.pending.iter().find(|c| !held.contains(&c.client)) {
            return Err(refuse(format!(
                "a listening Unix socket ({}) with a pending connection from socket inode {}, which no process of the captured tree holds",
                crate::restore::unix_socket::shown(&s.name),
                c.client
            )));
        }
        if let Some(name) = embryos.get(&s.peer) {
            s.peer_name = name.clone();
            f.contents = Blob::from(FdState::UnixSocket(s).encode());
            continue;
        }
        if s.peer & 1 << 63 != 0 {
            return Err(refuse(
                "a Unix socket whose connection to a listener outside the captured tree is not yet accepted".into(),
            ));
        }
        if s.peer == 0 || held.contains(&s.peer) {
            continue;
        }
        if s.peer_name.is_empty() {
            return Err(refuse(format!(
                "a Unix socket connected to socket inode {} outside the captured tree, which has no name to reconnect to",
                s.peer
            )));
        }
        s.flags |= UNIX_PEER_EXTERNAL;
        f.contents = Blob::from(FdState::UnixSocket(s).encode());
    }
    Ok(())
}

/// One warning per Unix socket connected to a socket outside the captured tree, naming the
/// peer and how to connect to it again at restore.
pub(super) fn external_unix_warnings(records: &[Record<'static>]) -> Vec<String> {
    use crak_format::record::fd::{FdState, UNIX_PEER_EXTERNAL};
    let mut out = Vec::new();
    for r in records {
        let Record::Fd(f) = r else { continue };
        if let Ok(Some(FdState::UnixSocket(s))) = FdState::decode(f.kind, f.contents.as_bytes()) {
            if s.flags & UNIX_PEER_EXTERNAL != 0 {
                let peer = crate::restore::unix_socket::shown(&s.peer_name);
                out.push(format!(
                    "process {}: fd {} is a Unix socket connected to {peer} outside the captured tree; a restore refuses it unless told to connect it there again (crak-restore --external-unix {peer}), and what the peer had sent is not kept",
                    f.pid, f.fd
                ));
            }
        }
    }
    out
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
    let timers = objects::timers(frozen)?;
    // The last remote call needing memory is done: the address space is the target's own again.
    frozen.release_scratch()?;
    let files = files::capture(pid, frozen.net_holds())?;
    let mut maps = mm::mappings(pid)?;
    memfd_mappings(pid, &files.fds, &mut maps)?;
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
    records.extend(timers.map(Record::Timers));
    let nfds = files.fds.len();
    records.extend(files.fds.into_iter().map(Record::Fd));
    records.extend(maps.iter().map(|m| Record::Vma(m.vma.clone())));
    Ok(ProcessMeta {
        records,
        maps,
        fds: nfds,
        pipes: files.pipes,
        in_flight: files.in_flight,
        xsave_size,
    })
}
