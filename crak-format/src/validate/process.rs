//! PROCESS rules: unique pids and tids, the leader first, CREDS and MM present, records filed
//! under the right pid, and a process tree without cycles (`spec/crak-format.md#process`).

use super::{bytes_len, At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::record::process::ProcessRecord;
use std::collections::HashMap;

pub(super) fn check(cx: &mut Cx<'_, '_>) {
    let image = cx.image;
    let mut pids: HashMap<u32, usize> = HashMap::with_capacity(image.processes.len());
    let mut tids: HashMap<u32, u32> = HashMap::new();
    for (i, p) in image.processes.iter().enumerate() {
        let pid = p.pid();
        let at = At::once(kind::PROCESS, pid);
        if let Some(first) = pids.insert(pid, i) {
            pids.insert(pid, first);
            cx.error(
                "duplicate-pid",
                at,
                Field::At("pid", 0),
                format!("pid {pid} has a second PROCESS record (process {i}, first {first})"),
            );
        }
        // A zombie has nothing left but its PROCESS record.
        let zombie = p.process.is_zombie();
        if p.creds.is_none() && !zombie {
            cx.error(
                "missing-creds",
                at,
                Field::At("pid", 0),
                format!("process {pid} has no CREDS record"),
            );
        }
        if p.mm.is_none() && !zombie {
            cx.error(
                "missing-mm",
                at,
                Field::At("pid", 0),
                format!("process {pid} has no MM record"),
            );
        }
        check_tids(cx, &p.process, &mut tids);
        check_pids(cx, p);
    }
    check_cycles(cx, &pids);
}

/// Payload offset of `tids[i]`, past the variable-length fields before it.
pub(super) fn tid_offset(p: &ProcessRecord, i: usize) -> u64 {
    let var = [&p.comm, &p.exe, &p.cwd, &p.root, &p.cmdline, &p.environ]
        .iter()
        .fold(28u64, |acc, b| acc.saturating_add(bytes_len(b.as_bytes())));
    var.saturating_add(4)
        .saturating_add((i as u64).saturating_mul(4))
}

fn check_tids(cx: &mut Cx<'_, '_>, p: &ProcessRecord, seen: &mut HashMap<u32, u32>) {
    let pid = p.pid;
    let at = At::once(kind::PROCESS, pid);
    match p.tids.first() {
        None => cx.error(
            "no-threads",
            at,
            Field::At("tids", tid_offset(p, 0).saturating_sub(4)),
            format!("process {pid} lists no thread"),
        ),
        Some(&first) if first != pid => cx.error(
            "leader-not-first",
            at,
            Field::At("tids", tid_offset(p, 0)),
            format!("first tid {first} differs from pid {pid}"),
        ),
        Some(_) => {}
    }
    for (i, &tid) in p.tids.iter().enumerate() {
        if let Some(owner) = seen.insert(tid, pid) {
            seen.insert(tid, owner);
            let whose = if owner == pid {
                "this process".to_string()
            } else {
                format!("process {owner}")
            };
            cx.error(
                "duplicate-tid",
                at,
                Field::At("tids", tid_offset(p, i)),
                format!("tid {tid} (tids[{i}]) is already a thread of {whose}"),
            );
        }
    }
}

/// Every record filed under a process must name its pid (a hand-built or edited model could
/// disagree with itself).
fn check_pids(cx: &mut Cx<'_, '_>, p: &Process<'_>) {
    let pid = p.pid();
    let mut bad: Vec<(At, u32)> = Vec::new();
    if let Some(c) = &p.creds {
        bad.push((At::once(kind::CREDS, pid), c.pid));
    }
    if let Some(m) = &p.mm {
        bad.push((At::once(kind::MM, pid), m.pid));
    }
    if let Some(r) = &p.rlimits {
        bad.push((At::once(kind::RLIMITS, pid), r.pid));
    }
    if let Some(s) = &p.sigactions {
        bad.push((At::once(kind::SIGACTIONS, pid), s.pid));
    }
    if let Some(t) = &p.timers {
        bad.push((At::once(kind::TIMERS, pid), t.pid));
    }
    if let Some(l) = &p.locks {
        bad.push((At::once(kind::LOCKS, pid), l.pid));
    }
    let lists: [(u16, Vec<u32>); 7] = [
        (kind::THREAD, p.threads.iter().map(|r| r.pid).collect()),
        (kind::XSAVE, p.xsaves.iter().map(|r| r.pid).collect()),
        (kind::SIGQUEUE, p.sigqueues.iter().map(|r| r.pid).collect()),
        (kind::FD, p.fds.iter().map(|r| r.pid).collect()),
        (kind::VMA, p.vmas.iter().map(|r| r.pid).collect()),
        (kind::PAGES, p.pages.iter().map(|r| r.pid).collect()),
        (
            kind::ZERO_PAGES,
            p.zero_runs.iter().map(|r| r.pid).collect(),
        ),
    ];
    for (k, list) in lists {
        for (i, rpid) in list.into_iter().enumerate() {
            bad.push((At::proc(k, pid, i), rpid));
        }
    }
    for (at, rpid) in bad {
        if rpid != pid {
            cx.error(
                "pid-mismatch",
                at,
                Field::At("pid", 0),
                format!("record names pid {rpid} but is filed under process {pid}"),
            );
        }
    }
}

/// Finds ppid cycles: each process is walked up its ancestry once (`O(n)` overall).
fn check_cycles(cx: &mut Cx<'_, '_>, pids: &HashMap<u32, usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnPath,
        Done,
    }
    let procs = &cx.image.processes;
    let mut state = vec![State::New; procs.len()];
    let mut cycles: Vec<Vec<u32>> = Vec::new();
    for start in 0..procs.len() {
        let mut path: Vec<usize> = Vec::new();
        let mut cur = Some(start);
        while let Some(i) = cur {
            match state.get(i).copied() {
                Some(State::New) => {}
                Some(State::OnPath) => {
                    // `i` is on the current path: the path from `i` on is a cycle.
                    let from = path.iter().position(|&j| j == i).unwrap_or(0);
                    let members = path
                        .get(from..)
                        .unwrap_or(&[])
                        .iter()
                        .filter_map(|&j| procs.get(j).map(|p| p.pid()))
                        .collect();
                    cycles.push(members);
                    break;
                }
                Some(State::Done) | None => break,
            }
            if let Some(s) = state.get_mut(i) {
                *s = State::OnPath;
            }
            path.push(i);
            cur = procs
                .get(i)
                .and_then(|p| pids.get(&p.process.ppid))
                .copied();
        }
        for j in path {
            if let Some(s) = state.get_mut(j) {
                *s = State::Done;
            }
        }
    }
    for members in cycles {
        let Some(&first) = members.first() else {
            continue;
        };
        let shown: Vec<String> = members.iter().take(8).map(|p| p.to_string()).collect();
        let more = if members.len() > 8 { " ..." } else { "" };
        cx.error(
            "ppid-cycle",
            At::once(kind::PROCESS, first),
            Field::At("ppid", 4),
            format!(
                "parent chain loops: {} -> {first}{more}",
                shown.join(" -> ")
            ),
        );
    }
}
