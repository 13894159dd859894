//! SCM rules (1.3): each record names a queued message of a Unix socket of the image, once;
//! says something; and each file in flight is a valid FD layout of a kind that can travel
//! (`spec/crak-format.md#scm`).

use super::{bytes_len, At, Cx, Field};
use crate::record::fd::{FdKind, FdState};
use crate::record::kind;
use crate::record::scm::SCM_CREDENTIALS;
use std::collections::{HashMap, HashSet};

/// Offset of `files` in an SCM payload.
const FILES_AT: u64 = 32;
/// Bytes of an FD layout before its `path`.
const FD_FIXED: u64 = 80;

pub(super) fn check(cx: &mut Cx<'_, '_>) {
    let image = cx.image;
    // Queue lengths of the image's Unix sockets, by inode.
    let mut queues: HashMap<u64, usize> = HashMap::new();
    for f in image.processes.iter().flat_map(|p| p.fds.iter()) {
        let n = match FdState::decode(f.kind, f.contents.as_bytes()) {
            Ok(Some(FdState::Unix { queue, .. })) => queue.len(),
            Ok(Some(FdState::UnixSocket(s))) => s.queue.len(),
            _ => continue,
        };
        queues.insert(f.ino, n);
    }
    // Every socket inode an fd or a file in flight holds, for the peers of sockets in flight.
    let held: HashSet<u64> = image
        .processes
        .iter()
        .flat_map(|p| p.fds.iter())
        .chain(image.scm.iter().flat_map(|s| s.files.iter()))
        .filter(|f| matches!(f.kind, FdKind::Unix | FdKind::UnixSocket))
        .map(|f| f.ino)
        .collect();
    let named: HashSet<u64> = image.scm.iter().map(|s| s.socket).collect();
    let pipes: HashSet<u64> = image.pipes.iter().map(|p| p.pipe_id).collect();
    let mut seen: HashMap<(u64, u32), usize> = HashMap::new();
    for (i, s) in image.scm.iter().enumerate() {
        let at = At::image(kind::SCM, Some(i));
        match queues.get(&s.socket) {
            None => cx.error(
                "scm-socket-missing",
                at,
                Field::At("socket", 0),
                format!(
                    "socket {} is not the inode of a Unix socket fd of the image",
                    s.socket
                ),
            ),
            Some(&n) if s.message as usize >= n => cx.error(
                "scm-message-out-of-range",
                at,
                Field::At("message", 8),
                format!(
                    "message {} of socket {}, whose queue holds {n}",
                    s.message, s.socket
                ),
            ),
            Some(_) => {}
        }
        if let Some(first) = seen.insert((s.socket, s.message), i) {
            seen.insert((s.socket, s.message), first);
            cx.error(
                "duplicate-scm",
                at,
                Field::At("message", 8),
                format!(
                    "message {} of socket {} has a second SCM record (first is #{first})",
                    s.message, s.socket
                ),
            );
        }
        if s.flags & SCM_CREDENTIALS == 0 {
            if s.files.is_empty() {
                cx.error(
                    "scm-empty",
                    at,
                    Field::At("flags", 12),
                    "neither files nor credentials".into(),
                );
            }
            if (s.pid, s.uid, s.gid) != (0, 0, 0) {
                cx.error(
                    "bad-scm-credentials",
                    at,
                    Field::At("pid", 16),
                    "credentials without the CREDENTIALS flag".into(),
                );
            }
        }
        let mut off = FILES_AT + 4;
        for (j, f) in s.files.iter().enumerate() {
            let path_len = bytes_len(f.path.as_bytes());
            let contents_at = Field::At(
                "files.contents",
                off.saturating_add(FD_FIXED).saturating_add(path_len),
            );
            let bad = |cx: &mut Cx<'_, '_>, field: Field, why: String| {
                cx.error("bad-scm-file", at, field, format!("file {j}: {why}"))
            };
            if f.pid != 0 || f.fd as usize != j || f.fd_flags != 0 {
                bad(
                    cx,
                    Field::At("files.pid", off),
                    format!(
                        "pid {}, fd {}, fd_flags {} (a file in flight has pid 0, fd {j}, fd_flags 0)",
                        f.pid, f.fd, f.fd_flags
                    ),
                );
            }
            if f.deleted && f.kind != FdKind::Reg {
                bad(
                    cx,
                    Field::At("files.deleted", off.saturating_add(76)),
                    format!("{:?} marked deleted (REG only)", f.kind),
                );
            }
            if f.kind.is_anon() {
                match FdState::decode(f.kind, f.contents.as_bytes()) {
                    Err(why) => cx.error(
                        "bad-fd-state",
                        at,
                        contents_at,
                        format!("file {j} ({:?}): its state is {why}", f.kind),
                    ),
                    Ok(Some(FdState::Epoll(_))) => bad(
                        cx,
                        Field::At("files.kind", off.saturating_add(12)),
                        "an epoll instance in flight (its registrations name fds of a process)"
                            .into(),
                    ),
                    Ok(Some(FdState::Unix { peer, .. })) if !held.contains(&peer) => cx.error(
                        "unix-peer-missing",
                        at,
                        contents_at,
                        format!(
                            "file {j} is a Unix socket whose peer (inode {peer}) no fd or file in flight holds"
                        ),
                    ),
                    Ok(_) => {}
                }
                if matches!(f.kind, FdKind::Unix | FdKind::UnixSocket) && named.contains(&f.ino) {
                    bad(
                        cx,
                        Field::At("files.ino", off.saturating_add(40)),
                        format!(
                            "socket {} in flight has files or credentials in flight itself",
                            f.ino
                        ),
                    );
                }
            } else if !f.deleted && !f.contents.is_empty() {
                cx.error(
                    "contents-not-deleted",
                    at,
                    contents_at,
                    format!("file {j} carries contents but is not a deleted file"),
                );
            }
            if matches!(f.kind, FdKind::Pipe | FdKind::Fifo) && !pipes.contains(&f.ino) {
                cx.error(
                    "pipe-data-missing",
                    at,
                    Field::At("files.ino", off.saturating_add(40)),
                    format!(
                        "file {j} is an end of pipe {} which has no PIPE_DATA record",
                        f.ino
                    ),
                );
            }
            off = off
                .saturating_add(FD_FIXED)
                .saturating_add(path_len)
                .saturating_add(bytes_len(f.contents.as_bytes()));
        }
    }
}
