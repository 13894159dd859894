//! FD and PIPE_DATA rules: unique descriptors, absolute paths, contents only for deleted
//! regular files and as the state of anonymous-inode fds (whose epoll registrations name fds of
//! the process), and one PIPE_DATA per pipe that some fd refers to
//! (`spec/crak-format.md#fd`, `#pipe-data`).

use super::{bytes_len, is_absolute, At, Cx, Field};
use crate::record::fd::{FdKind, FdState, MEMFD_SEALS, MFD_ALLOW_SEALING, MFD_HUGETLB};
use crate::record::kind;
use std::collections::{HashMap, HashSet};

/// Highest fd number plus one (spec §3.13).
pub const MAX_FD: u32 = 1 << 20;

pub(super) fn check(cx: &mut Cx<'_, '_>) {
    let image = cx.image;
    let mut pipes: HashMap<u64, usize> = HashMap::with_capacity(image.pipes.len());
    for (i, pd) in image.pipes.iter().enumerate() {
        let at = At::image(kind::PIPE_DATA, Some(i));
        if let Some(first) = pipes.insert(pd.pipe_id, i) {
            pipes.insert(pd.pipe_id, first);
            cx.error(
                "duplicate-pipe-data",
                at,
                Field::At("pipe_id", 0),
                format!(
                    "pipe {} has a second PIPE_DATA record (first is #{first})",
                    pd.pipe_id
                ),
            );
        }
        if pd.data.len() as u64 > u64::from(pd.capacity) {
            cx.error(
                "pipe-data-over-capacity",
                at,
                Field::At("data", 16),
                format!(
                    "pipe {} buffers {} bytes, more than its capacity {}",
                    pd.pipe_id,
                    pd.data.len(),
                    pd.capacity
                ),
            );
        }
    }

    // Unix sockets of the image (kinds 10 and 13) and the not-yet-accepted ends of listeners'
    // pending connections: (ino -> peer).
    let mut sockets: HashMap<u64, u64> = HashMap::new();
    let mut embryos: HashSet<u64> = HashSet::new();
    // Files in flight (SCM, 1.3) hold sockets too.
    let in_flight = || image.scm.iter().flat_map(|s| s.files.iter());
    for f in image
        .processes
        .iter()
        .flat_map(|p| p.fds.iter())
        .chain(in_flight())
    {
        match f.kind {
            FdKind::Unix | FdKind::UnixSocket => {
                let peer = match FdState::decode(f.kind, f.contents.as_bytes()) {
                    Ok(Some(FdState::Unix { peer, .. })) => peer,
                    Ok(Some(FdState::UnixSocket(s))) => {
                        embryos.extend(s.pending.iter().map(|c| c.ino));
                        s.peer
                    }
                    _ => 0,
                };
                sockets.insert(f.ino, peer);
            }
            _ => {}
        }
    }

    let mut used: HashSet<u64> = HashSet::new();
    for p in &image.processes {
        let pid = p.pid();
        let mut fds: HashMap<u32, usize> = HashMap::with_capacity(p.fds.len());
        if p.fds.len() > MAX_FD as usize {
            cx.error(
                "too-many-fds",
                At::once(kind::PROCESS, pid),
                Field::At("pid", 0),
                format!("process {pid} has {} fds, more than {MAX_FD}", p.fds.len()),
            );
        }
        for (i, f) in p.fds.iter().enumerate() {
            let at = At::proc(kind::FD, pid, i);
            if let Some(first) = fds.insert(f.fd, i) {
                fds.insert(f.fd, first);
                cx.error(
                    "duplicate-fd",
                    at,
                    Field::At("fd", 4),
                    format!("fd {} has a second FD record (first is #{first})", f.fd),
                );
            }
            if f.fd >= MAX_FD {
                cx.error(
                    "bad-fd",
                    at,
                    Field::At("fd", 4),
                    format!("fd {} is not below {MAX_FD}", f.fd),
                );
            }
            if f.kind != FdKind::Pipe && !f.kind.is_anon() && !is_absolute(f.path.as_bytes()) {
                cx.warn(
                    "path-not-absolute",
                    at,
                    Field::At("path", 80),
                    format!("fd {} path {:?} is not absolute", f.fd, f.path),
                );
            }
            if f.deleted && f.kind != FdKind::Reg {
                cx.error(
                    "deleted-not-regular",
                    at,
                    Field::At("deleted", 76),
                    format!("fd {} is {:?} but marked deleted (REG only)", f.fd, f.kind),
                );
            }
            let contents_at = Field::At(
                "contents",
                80u64.saturating_add(bytes_len(f.path.as_bytes())),
            );
            if f.kind.is_anon() {
                match FdState::decode(f.kind, f.contents.as_bytes()) {
                    Err(why) => cx.error(
                        "bad-fd-state",
                        at,
                        contents_at,
                        format!("fd {} ({:?}): its state is {why}", f.fd, f.kind),
                    ),
                    Ok(Some(FdState::Unix { peer, .. })) => {
                        let found = image
                            .processes
                            .iter()
                            .flat_map(|q| q.fds.iter())
                            .chain(in_flight())
                            .any(|g| g.kind == FdKind::Unix && g.ino == peer);
                        if !found {
                            cx.error(
                                "unix-peer-missing",
                                at,
                                contents_at,
                                format!(
                                    "fd {} is a Unix socket whose peer (inode {peer}) no fd of the image holds",
                                    f.fd
                                ),
                            );
                        }
                    }
                    Ok(Some(FdState::UnixSocket(s))) => {
                        for why in unix_socket_findings(&s, &sockets, &embryos) {
                            cx.error(
                                why.0,
                                at,
                                contents_at,
                                format!("fd {} (Unix socket {}): {}", f.fd, f.ino, why.1),
                            );
                        }
                    }
                    Ok(Some(FdState::Tcp(t))) => {
                        use crate::record::fd::{TCP_ESTABLISHED, TCP_LISTEN};
                        let a = &t.addr;
                        let why = if (t.state == TCP_LISTEN || t.state == TCP_ESTABLISHED)
                            && a.local_port == 0
                        {
                            Some("no local port")
                        } else if t.state == TCP_ESTABLISHED && a.remote_port == 0 {
                            Some("no remote port")
                        } else {
                            None
                        };
                        if let Some(why) = why {
                            cx.error(
                                "inet-endpoint-missing",
                                at,
                                contents_at,
                                format!(
                                    "fd {} is a {} TCP socket with {why}",
                                    f.fd,
                                    if t.state == TCP_LISTEN {
                                        "listening"
                                    } else {
                                        "connected"
                                    }
                                ),
                            );
                        }
                    }
                    Ok(Some(FdState::Epoll(entries))) => {
                        for e in entries {
                            if !p.fds.iter().any(|g| g.fd == e.fd) {
                                cx.error(
                                    "epoll-target-missing",
                                    at,
                                    contents_at,
                                    format!(
                                        "epoll fd {} watches fd {}, which process {pid} does not have",
                                        f.fd, e.fd
                                    ),
                                );
                            }
                        }
                    }
                    Ok(Some(FdState::Memfd { seals, flags, .. })) => {
                        if seals & !MEMFD_SEALS != 0
                            || flags & !(MFD_ALLOW_SEALING | MFD_HUGETLB) != 0
                        {
                            cx.error(
                                "bad-fd-state",
                                at,
                                contents_at,
                                format!(
                                    "fd {} is a memfd with unknown flags {flags:#x} or seals {seals:#x}",
                                    f.fd
                                ),
                            );
                        }
                    }
                    Ok(Some(FdState::Inotify(watches))) => {
                        for w in watches.iter().filter(|w| !is_absolute(&w.path)) {
                            cx.warn(
                                "path-not-absolute",
                                at,
                                contents_at,
                                format!(
                                    "fd {} watch {} path {:?} is not absolute",
                                    f.fd,
                                    w.wd,
                                    String::from_utf8_lossy(&w.path)
                                ),
                            );
                        }
                    }
                    Ok(_) => {}
                }
            } else if !f.deleted && !f.contents.is_empty() {
                cx.error(
                    "contents-not-deleted",
                    at,
                    contents_at,
                    format!(
                        "fd {} carries {} bytes of contents but its file is not deleted",
                        f.fd,
                        f.contents.len()
                    ),
                );
            }
            if matches!(f.kind, FdKind::Pipe | FdKind::Fifo) {
                used.insert(f.ino);
                if !pipes.contains_key(&f.ino) {
                    cx.error(
                        "pipe-data-missing",
                        at,
                        Field::At("ino", 40),
                        format!(
                            "fd {} is a {} end of pipe {} which has no PIPE_DATA record",
                            f.fd,
                            if f.kind == FdKind::Pipe {
                                "pipe"
                            } else {
                                "FIFO"
                            },
                            f.ino
                        ),
                    );
                }
            }
        }
    }

    used.extend(
        in_flight()
            .filter(|f| matches!(f.kind, FdKind::Pipe | FdKind::Fifo))
            .map(|f| f.ino),
    );
    for (i, pd) in image.pipes.iter().enumerate() {
        if !used.contains(&pd.pipe_id) {
            cx.warn(
                "orphan-pipe-data",
                At::image(kind::PIPE_DATA, Some(i)),
                Field::At("pipe_id", 0),
                format!("no fd refers to pipe {}", pd.pipe_id),
            );
        }
    }
}

/// What is wrong with the state of a kind 13 Unix socket (spec §3.13): (code, why).
fn unix_socket_findings(
    s: &crate::record::fd::UnixSocket,
    sockets: &HashMap<u64, u64>,
    embryos: &HashSet<u64>,
) -> Vec<(&'static str, String)> {
    use crate::record::fd::{
        UNIX_CONNECTED, UNIX_LISTENING, UNIX_NAME_GONE, UNIX_PEER_CLOSED, UNIX_PEER_EXTERNAL,
    };
    let mut out = Vec::new();
    let mut bad = |why: String| out.push(("bad-unix-socket", why));
    if s.state == UNIX_LISTENING {
        if s.sock_type == 2 {
            bad("a datagram socket cannot listen".into());
        }
        if s.name.is_empty() {
            bad("listening without a name".into());
        }
        if s.peer != 0 || !s.queue.is_empty() {
            bad("listening, yet with a peer or queued messages".into());
        }
    } else if !s.pending.is_empty() {
        bad(format!(
            "{} pending connections on a socket that is not listening",
            s.pending.len()
        ));
    }
    let closed = s.flags & UNIX_PEER_CLOSED != 0;
    if (s.state == UNIX_CONNECTED) != (s.peer != 0 || closed) || (closed && s.peer != 0) {
        bad(format!(
            "state {} with peer inode {}{} (a connected socket has a peer, or one that closed)",
            s.state,
            s.peer,
            if closed { " and PEER_CLOSED" } else { "" }
        ));
    }
    if closed && (s.flags & UNIX_PEER_EXTERNAL != 0 || s.sock_type == 2) {
        bad("PEER_CLOSED on a datagram socket or with PEER_EXTERNAL".into());
    }
    if s.flags & UNIX_NAME_GONE != 0 && !s.has_path() {
        bad("name marked unlinked but it is not a path".into());
    }
    if s.sock_type == 1 && s.queue.iter().any(|m| !m.sender.is_empty()) {
        bad("a stream message with a sender name".into());
    }
    if s.flags & UNIX_PEER_EXTERNAL != 0 {
        if s.peer_name.is_empty() {
            bad("peer outside the image without a name to reconnect to".into());
        }
    } else if s.peer != 0 && !sockets.contains_key(&s.peer) && !embryos.contains(&s.peer) {
        out.push((
            "unix-peer-missing",
            format!(
                "its peer (inode {}) is neither in an fd of the image nor a pending connection",
                s.peer
            ),
        ));
    }
    for c in &s.pending {
        if sockets.get(&c.client) != Some(&c.ino) {
            out.push((
                "unix-peer-missing",
                format!(
                    "pending connection {} names client inode {}, which no fd of the image holds connected to it",
                    c.ino, c.client
                ),
            ));
        }
    }
    out
}
