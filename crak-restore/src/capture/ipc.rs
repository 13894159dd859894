//! System V IPC objects of a capture (spec §3.18–§3.20): the shared memory segments the tree
//! maps, and, depending on [`IpcScope`], semaphore sets and message queues of its IPC
//! namespace. Read while the tree is frozen, without changing them: a segment is copied through
//! a read-only attachment of our own, messages with `msgrcv(MSG_COPY)`, which leaves them
//! queued.

use super::Error;
use crate::sys::sysvipc;
use crak_format::record::ipc::IpcPerm;
use crak_format::record::msg::{Message, MsgQueue};
use crak_format::record::sem::{Sem, SemSet};
use crak_format::record::shm::Shm;
use crak_format::record::vma::VmaKind;
use crak_format::Record;
use std::collections::{BTreeSet, HashSet};

/// Which System V IPC objects a capture records besides the segments the tree maps, which it
/// always records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpcScope {
    /// Only the shared memory segments the tree maps.
    Attached,
    /// Those, and the objects the tree made or used last: a segment whose creator or last
    /// attacher (`shm_cpid`, `shm_lpid`) is a process of the tree, a set with a semaphore whose
    /// last operation (`sempid`) was made by one, a queue whose last sender or receiver
    /// (`lspid`, `lrpid`) is one.
    #[default]
    Tree,
    /// Every segment, set and queue of the IPC namespace.
    All,
}

impl std::str::FromStr for IpcScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "attached" => Ok(IpcScope::Attached),
            "tree" => Ok(IpcScope::Tree),
            "all" => Ok(IpcScope::All),
            _ => Err(format!("{s:?} is not one of attached, tree, all")),
        }
    }
}

/// Most bytes of a segment an image holds (the SHM `data` length is a u32).
const MAX_SHM_DATA: u64 = u32::MAX as u64;

fn sys(e: crate::sys::SysError) -> Error {
    Error::Sys(e)
}

/// The ids in column `col` (0-based) of `/proc/sysvipc/<what>`, with the pids of `pid_cols`.
fn proc_ids(what: &str, pid_cols: &[usize]) -> Result<Vec<(i32, Vec<i32>)>, Error> {
    let path = format!("/proc/sysvipc/{what}");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        context: format!("reading {path}"),
        source: e,
    })?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(id) = cols.get(1).and_then(|c| c.parse::<i32>().ok()) else {
            continue;
        };
        let pids = pid_cols
            .iter()
            .filter_map(|&c| cols.get(c).and_then(|v| v.parse::<i32>().ok()))
            .collect();
        out.push((id, pids));
    }
    Ok(out)
}

fn perm(id: i32, p: &sysvipc::Perm) -> IpcPerm {
    IpcPerm {
        id: id as u32,
        key: p.key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
    }
}

/// Whether `pid` is in our IPC namespace.
fn same_ipc_namespace(pid: i32) -> Result<bool, Error> {
    let ns = |p: String| {
        std::fs::read_link(&p).map_err(|e| Error::Io {
            context: format!("reading {p}"),
            source: e,
        })
    };
    Ok(ns(format!("/proc/{pid}/ns/ipc"))? == ns("/proc/self/ns/ipc".into())?)
}

/// Refuses, before anything is touched, a process of `pid` that maps SysV shared memory of
/// another IPC namespace (its segments could not be read or recreated).
pub fn preflight(pid: i32, maps: &[super::mm::Mapping]) -> Result<(), Error> {
    let Some(m) = maps.iter().find(|m| m.vma.kind == VmaKind::SysvShm) else {
        return Ok(());
    };
    if same_ipc_namespace(pid)? {
        return Ok(());
    }
    Err(Error::UnsupportedVma {
        pid,
        start: m.vma.start,
        end: m.vma.end,
        what: "is SysV shared memory of another IPC namespace".into(),
    })
}

/// The SHM, SEM and MSG records for the processes whose records are `records` (all frozen);
/// warnings for what was left out.
pub fn capture(
    records: &[Record<'static>],
    scope: IpcScope,
) -> Result<(Vec<Record<'static>>, Vec<String>), Error> {
    let pids: HashSet<i32> = records
        .iter()
        .filter_map(|r| match r {
            Record::Process(p) => Some(p.pid as i32),
            _ => None,
        })
        .collect();
    let mut segments: BTreeSet<i32> = BTreeSet::new();
    let mut first_mapper = None;
    for r in records {
        if let Record::Vma(v) = r {
            if v.kind == VmaKind::SysvShm {
                segments.insert(i32::try_from(v.ino).unwrap_or(-1));
                first_mapper.get_or_insert((v.pid as i32, v.start, v.end));
            }
        }
    }
    let mut warnings = Vec::new();
    let root = records.iter().find_map(|r| match r {
        Record::Process(p) => Some(p.pid as i32),
        _ => None,
    });
    let Some(root) = root else {
        return Ok((Vec::new(), warnings));
    };
    if !same_ipc_namespace(root)? {
        if let Some((pid, start, end)) = first_mapper {
            return Err(Error::UnsupportedVma {
                pid,
                start,
                end,
                what: "is SysV shared memory of another IPC namespace".into(),
            });
        }
        if scope != IpcScope::Attached {
            warnings.push(format!(
                "process {root} is in another IPC namespace: its semaphore sets and message queues are not captured"
            ));
        }
        return Ok((Vec::new(), warnings));
    }
    // /proc/sysvipc/shm: key shmid perms size cpid lpid ...
    if scope != IpcScope::Attached {
        for (id, by) in proc_ids("shm", &[4, 5])? {
            if scope == IpcScope::All || by.iter().any(|p| pids.contains(p)) {
                segments.insert(id);
            }
        }
    }
    let mut out = Vec::new();
    for id in segments {
        out.push(Record::Shm(shm(id)?));
    }
    if scope == IpcScope::Attached {
        return Ok((out, warnings));
    }
    for (id, _) in proc_ids("sem", &[])? {
        let set = match sem(id) {
            Ok(s) => s,
            // Removed since the listing.
            Err(Error::Sys(e)) if matches!(e.errno(), Some(libc::EINVAL | libc::EIDRM)) => continue,
            Err(e) => return Err(e),
        };
        if scope == IpcScope::All || set.sems.iter().any(|s| pids.contains(&(s.pid as i32))) {
            out.push(Record::Sem(set));
        }
    }
    // /proc/sysvipc/msg: key msqid perms cbytes qnum lspid lrpid ...
    for (id, used_by) in proc_ids("msg", &[5, 6])? {
        if scope == IpcScope::All || used_by.iter().any(|p| pids.contains(p)) {
            match msg(id) {
                Ok(q) => out.push(Record::Msg(q)),
                Err(Error::Sys(e)) if matches!(e.errno(), Some(libc::EINVAL | libc::EIDRM)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((out, warnings))
}

/// Segment `id` with its contents, trailing zero pages left out.
fn shm(id: i32) -> Result<Shm<'static>, Error> {
    let st = sysvipc::shm_stat(id).map_err(sys)?;
    let page = crate::sys::process::page_size();
    let mut data = Vec::new();
    if st.size > 0 {
        let all = sysvipc::shm_read(id, st.size, st.size as usize).map_err(sys)?;
        let used = all
            .chunks(page as usize)
            .rposition(|c| c.iter().any(|&b| b != 0))
            .map_or(0, |i| ((i as u64 + 1) * page).min(st.size));
        if used > MAX_SHM_DATA {
            return Err(Error::Other(format!(
                "SysV shared memory segment {id} holds {used} bytes of data, more than an image holds ({MAX_SHM_DATA})"
            )));
        }
        data = all;
        data.truncate(used as usize);
    }
    Ok(Shm {
        perm: perm(id, &st.perm),
        size: st.size,
        cpid: st.cpid.max(0) as u32,
        lpid: st.lpid.max(0) as u32,
        data: data.into(),
    })
}

/// Semaphore set `id` with its values.
fn sem(id: i32) -> Result<SemSet, Error> {
    let (p, nsems) = sysvipc::sem_stat(id).map_err(sys)?;
    let values = sysvipc::sem_values(id, nsems as usize).map_err(sys)?;
    let mut sems = Vec::with_capacity(values.len());
    for (n, v) in values.into_iter().enumerate() {
        let pid = sysvipc::sem_pid(id, n as i32).map_err(sys)?;
        sems.push(Sem {
            value: u32::from(v),
            pid: pid.max(0) as u32,
        });
    }
    Ok(SemSet {
        perm: perm(id, &p),
        sems,
    })
}

/// Message queue `id` with its messages, in order, left in the queue.
fn msg(id: i32) -> Result<MsgQueue<'static>, Error> {
    let st = sysvipc::msg_stat(id).map_err(sys)?;
    // No message is longer than the bytes queued (read again if the queue grows meanwhile).
    let max = st.cbytes.min(u32::MAX as u64) as usize;
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    for i in 0..st.qnum {
        let copy = sysvipc::msg_copy(id, i, max, &mut buf).map_err(|e| {
            if e.errno() == Some(libc::ENOSYS) {
                Error::Other(format!(
                    "message queue {id}: reading its messages without taking them (msgrcv MSG_COPY) needs a kernel with CONFIG_CHECKPOINT_RESTORE"
                ))
            } else {
                sys(e)
            }
        })?;
        let Some((mtype, text)) = copy else {
            break;
        };
        messages.push(Message {
            mtype,
            text: text.into(),
        });
    }
    Ok(MsgQueue {
        perm: perm(id, &st.perm),
        qbytes: st.qbytes,
        lspid: st.lspid.max(0) as u32,
        lrpid: st.lrpid.max(0) as u32,
        messages,
    })
}
