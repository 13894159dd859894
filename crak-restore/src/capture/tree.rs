//! Process trees: the target and every descendant are captured together (spec §2.3: one
//! PROCESS record each, the tree given by `ppid`).
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
/// touching any; `tree` false refuses a target with children.
pub fn preflight_descendants(pid: i32, tree: bool) -> Result<(), Error> {
    let mut queue = std::collections::VecDeque::from(children(pid)?);
    if !tree && !queue.is_empty() {
        return Err(has_children(pid, queue.make_contiguous()));
    }
    while let Some(c) = queue.pop_front() {
        check_child(pid, c)?;
        preflight(c)?;
        queue.extend(children(c)?);
    }
    Ok(())
}

fn has_children(pid: i32, kids: &[i32]) -> Error {
    let list: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
    Error::Other(format!(
        "process {pid} has children ({}); without --no-tree the whole tree is captured",
        list.join(", ")
    ))
}

/// Refuses a child that is a zombie (nothing left to capture, and its parent still has to
/// reap it).
fn check_child(parent: i32, c: i32) -> Result<(), Error> {
    let stat = match procfs::stat(c) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(Error::Other(format!(
            "process {c}, a child of {parent}, is a zombie its parent has not reaped yet; crak cannot keep zombies yet"
        )));
    }
    Ok(())
}

/// Freezes every descendant of the frozen `root`, top down; `tree` false refuses a root with
/// children. Dropping the result resumes them all (as dropping `root` resumes it).
pub fn freeze_descendants(root: &Frozen, tree: bool) -> Result<Vec<Frozen>, Error> {
    let first = children(root.pid())?;
    if !tree && !first.is_empty() {
        return Err(has_children(root.pid(), &first));
    }
    let mut queue: std::collections::VecDeque<(i32, i32)> =
        first.into_iter().map(|c| (root.pid(), c)).collect();
    let mut out: Vec<Frozen> = Vec::new();
    while let Some((parent, c)) = queue.pop_front() {
        check_child(parent, c)?;
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
    Ok(out)
}
