//! Process trees: the target and every descendant are captured together (spec §2.3: one
//! PROCESS record each, the tree given by `ppid`).
//!
//! A zombie child (exited, not reaped yet) is kept as one: its PROCESS record only, with its
//! wait status; it is not frozen (there is nothing left to freeze) and has no children.
//!
//! Freezing goes from the top down: a process is frozen before its children are listed, so the
//! listing cannot miss a child forked meanwhile, and every child is frozen before its own
//! children are listed. Every process of the tree is stopped before the first record is
//! gathered, so pipes between them hold still while they are read.

use super::freeze::Frozen;
use super::{preflight, Error};
use crate::procfs;

/// The children of `pid` (from `/proc/PID/task/TID/children` of each of its threads), in pid
/// order.
pub fn children(pid: i32) -> Result<Vec<i32>, Error> {
    let mut out = Vec::new();
    for tid in procfs::tids(pid)? {
        let text = match procfs::read_string(pid, &format!("task/{tid}/children")) {
            Ok(t) => t,
            // A thread that ended since the listing.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Checks every current descendant of `pid` as [`preflight`] checks the target, without
/// touching any; `tree` false refuses a target with children. A pipe of the tree with an end
/// held by a process outside it cannot be restored whole (that end is closed after a restore):
/// with `external_pipes` each is named in a returned warning, without it they refuse the
/// capture.
pub fn preflight_descendants(
    pid: i32,
    tree: bool,
    external_pipes: bool,
) -> Result<Vec<String>, Error> {
    let mut queue = std::collections::VecDeque::from(children(pid)?);
    if !tree && !queue.is_empty() {
        return Err(has_children(pid, queue.make_contiguous()));
    }
    let mut all = vec![pid];
    while let Some(c) = queue.pop_front() {
        if is_zombie(c) {
            continue;
        }
        preflight(c)?;
        all.push(c);
        queue.extend(children(c)?);
    }
    let ends = external_pipe_ends(&all)?;
    let list: Vec<String> = ends
        .iter()
        .map(|(p, fd, ino, holder)| {
            let comm = procfs::read_string(*holder, "comm").unwrap_or_default();
            format!(
                "process {p}: fd {fd} is a pipe (inode {ino}) also held by process {holder} ({}) outside the captured tree",
                comm.trim()
            )
        })
        .collect();
    if external_pipes {
        Ok(list
            .into_iter()
            .zip(&ends)
            .map(|(w, (_, fd, _, _))| {
                format!(
                    "{w}; after a restore that end is closed, unless `crak-restore --external-pipe {fd}` connects it to the restorer's fd {fd}"
                )
            })
            .collect())
    } else if list.is_empty() {
        Ok(Vec::new())
    } else {
        Err(Error::Other(format!(
            "{}; such a pipe cannot be restored whole: capture a tree holding both ends, or leave out --refuse-external-pipes to accept that the restored end is closed",
            list.join("; ")
        )))
    }
}

/// The pipe inode `/proc/PID/fd/N` names, if it is a pipe.
fn pipe_ino(pid: i32, fd: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

/// Pipes of the processes `pids` with an end held by another process: (pid, fd, inode,
/// holder), found by scanning the descriptors of every process this one may inspect.
pub fn external_pipe_ends(pids: &[i32]) -> Result<Vec<(i32, i32, u64, i32)>, Error> {
    let mut ours: std::collections::HashMap<u64, (i32, i32)> = Default::default();
    for &p in pids {
        for fd in procfs::fds(p)? {
            if let Some(ino) = pipe_ino(p, &fd.to_string()) {
                ours.entry(ino).or_insert((p, fd));
            }
        }
    }
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Ok(out);
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Some(other) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if other == me || pids.contains(&other) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{other}/fd")) else {
            continue;
        };
        for f in fds.filter_map(|f| f.ok()) {
            let name = f.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(ino) = pipe_ino(other, name) {
                if let Some(&(p, fd)) = ours.get(&ino) {
                    out.push((p, fd, ino, other));
                    ours.remove(&ino);
                }
            }
        }
    }
    Ok(out)
}

fn has_children(pid: i32, kids: &[i32]) -> Error {
    let list: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
    Error::Other(format!(
        "process {pid} has children ({}); without --no-tree the whole tree is captured",
        list.join(", ")
    ))
}

/// Whether `c` is a zombie (exited, not reaped by its parent yet).
fn is_zombie(c: i32) -> bool {
    procfs::stat(c).is_ok_and(|s| s.state == 'Z')
}

/// Freezes every descendant of the frozen `root`, top down; `tree` false refuses a root with
/// children. Returns them and the zombies among them (not frozen). Dropping the frozen ones
/// resumes them all (as dropping `root` resumes it).
pub fn freeze_descendants(root: &Frozen, tree: bool) -> Result<(Vec<Frozen>, Vec<i32>), Error> {
    let first = children(root.pid())?;
    if !tree && !first.is_empty() {
        return Err(has_children(root.pid(), &first));
    }
    let mut queue: std::collections::VecDeque<(i32, i32)> =
        first.into_iter().map(|c| (root.pid(), c)).collect();
    let mut out: Vec<Frozen> = Vec::new();
    let mut zombies = Vec::new();
    while let Some((parent, c)) = queue.pop_front() {
        if is_zombie(c) {
            zombies.push(c);
            continue;
        }
        let f = match Frozen::freeze(c) {
            Ok(f) => f,
            // A child that ended since the listing: its parent (frozen) has a zombie now.
            Err(Error::NoSuchProcess(_)) => {
                return Err(Error::Other(format!(
                    "process {c}, a child of {parent}, ended while the tree was being frozen"
                )))
            }
            Err(e) => return Err(e),
        };
        queue.extend(children(c)?.into_iter().map(|g| (c, g)));
        out.push(f);
    }
    Ok((out, zombies))
}
