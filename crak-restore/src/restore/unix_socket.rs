//! Unix sockets of kind UNIX_SOCKET (spec §3.13, 1.2): named sockets, listeners with their
//! pending connections, connections made with `connect`/`accept`, datagram sockets bound to a
//! name, and sockets whose peer is outside the image (reconnected only when the restorer is
//! told to, `--external-unix`).
//!
//! Sockets that name each other (a peer, a pending connection's client, the same name, the
//! sender of a queued datagram) form a *group* and are made together, in one process: by the
//! process holding them all, or by the root into the tree's pool when several processes hold
//! them ([`super::tree`]). A group is made in stages, each needing the previous:
//!
//! 1. every listener and every unconnected socket is created and bound to its name (a stale
//!    socket file at a path name is unlinked first; any other file there is an error), the
//!    socket file getting its saved owner and mode; datagram pairs that are each other's peer
//!    come from `socketpair` and are then bound;
//! 2. each stream or seqpacket connection is made by connecting its client end to a listener of
//!    the other end's name (the real one when the image has it, else a temporary one that is
//!    closed and unlinked right after) and accepting: both ends then have the names they had;
//!    each end's queue is sent from the other end;
//! 3. each listener's pending connections are made again by connecting their clients, in
//!    order, and what the client had sent is sent again;
//!    a socket whose peer closed is connected the same way to a temporary peer, which sends its
//!    queue and closes;
//! 4. sockets connected outside the image are connected to their peer's name;
//! 5. queued datagrams are sent again to their receiver, from the socket bound to the saved
//!    sender name when there is one (the group's, or a temporary one), before any datagram
//!    socket connects (a connected receiver takes datagrams only from its peer); then datagram
//!    sockets connect to their peer's name;
//! 6. shutdowns, names unlinked at capture (`NAME_GONE`), and the listeners' saved backlogs.
//!
//! If a stage fails, the socket files made so far are unlinked and the sockets closed.

use crate::sys::unixsock;
use crak_format::record::fd::{
    Fd, FdKind, FdState, UnixSocket, UNIX_CONNECTED, UNIX_LISTENING, UNIX_NAME_GONE, UNIX_PASSCRED,
    UNIX_PEER_CLOSED, UNIX_PEER_EXTERNAL, UNIX_SHUT_RD, UNIX_SHUT_WR,
};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

/// The decoded state of a UNIX_SOCKET fd (`None` for another kind or a state that does not
/// decode, which the validator reports).
pub fn state(f: &Fd<'_>) -> Option<UnixSocket> {
    if f.kind != FdKind::UnixSocket {
        return None;
    }
    match FdState::decode(f.kind, f.contents.as_bytes()) {
        Ok(Some(FdState::UnixSocket(s))) => Some(s),
        _ => None,
    }
}

/// A name as shown in messages: a path, or `@name` for an abstract one.
pub fn shown(name: &[u8]) -> String {
    match name.split_first() {
        None => "(unnamed)".into(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

/// An `--external-unix` argument as a name: `@name` is abstract, anything else a path.
pub fn external_name(arg: &[u8]) -> Vec<u8> {
    match arg.strip_prefix(b"@") {
        Some(rest) => {
            let mut v = vec![0];
            v.extend_from_slice(rest);
            v
        }
        None => arg.to_vec(),
    }
}

fn bytes_path(b: &[u8]) -> &std::path::Path {
    std::path::Path::new(std::ffi::OsStr::from_bytes(b))
}

/// The groups of UNIX_SOCKET inodes among `fds` that must be made together (see the module
/// documentation), each sorted, in order of their smallest inode.
pub fn groups(fds: &[&Fd<'_>]) -> Vec<Vec<u64>> {
    let socks: BTreeMap<u64, UnixSocket> = fds
        .iter()
        .filter_map(|f| Some((f.ino, state(f)?)))
        .collect();
    let mut parent: BTreeMap<u64, u64> = socks.keys().map(|&i| (i, i)).collect();
    fn root(parent: &BTreeMap<u64, u64>, mut i: u64) -> u64 {
        // Bounded by the number of sockets: every step goes to a smaller inode.
        for _ in 0..=parent.len() {
            match parent.get(&i) {
                Some(&p) if p != i => i = p,
                _ => break,
            }
        }
        i
    }
    let join = |parent: &mut BTreeMap<u64, u64>, a: u64, b: u64| {
        if !parent.contains_key(&a) || !parent.contains_key(&b) {
            return;
        }
        let (ra, rb) = (root(parent, a), root(parent, b));
        if ra != rb {
            parent.insert(ra.max(rb), ra.min(rb));
        }
    };
    let mut by_name: HashMap<&[u8], u64> = HashMap::new();
    for (&ino, s) in &socks {
        if !s.name.is_empty() {
            let first = *by_name.entry(&s.name).or_insert(ino);
            join(&mut parent, first, ino);
        }
    }
    for (&ino, s) in &socks {
        join(&mut parent, ino, s.peer);
        for c in &s.pending {
            join(&mut parent, ino, c.client);
        }
        for m in &s.queue {
            if let Some(&sender) = by_name.get(m.sender.as_slice()) {
                join(&mut parent, ino, sender);
            }
        }
    }
    let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &ino in socks.keys() {
        out.entry(root(&parent, ino)).or_default().push(ino);
    }
    out.into_values().collect()
}

/// Socket files made so far, unlinked if the group cannot be made.
#[derive(Default)]
struct Made {
    socks: HashMap<u64, OwnedFd>,
    paths: Vec<Vec<u8>>,
}

impl Made {
    fn undo(&self) {
        for p in &self.paths {
            unlink_socket_file(p);
        }
    }
}

/// Unlinks `path` if it is a socket file (never another kind of file).
fn unlink_socket_file(path: &[u8]) {
    let p = bytes_path(path);
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(p);
    }
}

/// Binds `fd` to `name`. At a path name, a stale socket file is unlinked first (another kind of
/// file is an error), and the new socket file gets `owner` (uid, gid, mode) when given.
fn bind_name(
    fd: &OwnedFd,
    name: &[u8],
    owner: Option<(u32, u32, u32)>,
    made: &mut Made,
) -> Result<(), String> {
    let is_path = name.first().is_some_and(|&b| b != 0);
    if is_path {
        let p = bytes_path(name);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_socket() => {
                if unixsock::is_bound(name) {
                    return Err(format!(
                        "{} is the socket file of a socket in use: not replaced",
                        shown(name)
                    ));
                }
                std::fs::remove_file(p)
                    .map_err(|e| format!("unlinking the stale socket file {}: {e}", shown(name)))?
            }
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a socket file: not replaced",
                    shown(name)
                ))
            }
            Err(_) => {}
        }
    }
    unixsock::bind(fd.as_fd(), name).map_err(|e| format!("bind({}): {e}", shown(name)))?;
    if is_path {
        made.paths.push(name.to_vec());
        if let Some((uid, gid, mode)) = owner.filter(|o| o.2 != 0) {
            let p = bytes_path(name);
            let md = std::fs::symlink_metadata(p)
                .map_err(|e| format!("stat of {}: {e}", shown(name)))?;
            if (md.uid(), md.gid()) != (uid, gid) {
                std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {uid}:{gid} {}: {e}", shown(name)))?;
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("chmod {:o} {}: {e}", mode & 0o7777, shown(name)))?;
        }
    }
    Ok(())
}

fn owner(s: &UnixSocket) -> Option<(u32, u32, u32)> {
    Some((s.name_uid, s.name_gid, s.name_mode))
}

/// A new socket of `s`'s type bound to `s`'s name (if it has one).
fn named_socket(s: &UnixSocket, made: &mut Made) -> Result<OwnedFd, String> {
    let fd = unixsock::socket(s.sock_type as i32).map_err(|e| format!("socket: {e}"))?;
    if !s.name.is_empty() {
        bind_name(&fd, &s.name, owner(s), made)?;
    }
    Ok(fd)
}

/// Makes the UNIX_SOCKET group `group` (inodes) from the FD records `fds` (any process's; one
/// record per inode is used). `external` lists the names of peers outside the image to
/// reconnect to. Returns every socket of the group by inode.
pub fn make_group(
    group: &[u64],
    fds: &[&Fd<'_>],
    external: &[Vec<u8>],
    flight: &super::scm::InFlight,
) -> Result<HashMap<u64, OwnedFd>, String> {
    let mut made = Made::default();
    match make_stages(group, fds, external, flight, &mut made) {
        Ok(()) => Ok(made.socks),
        Err(e) => {
            made.undo();
            Err(e)
        }
    }
}

fn make_stages(
    group: &[u64],
    fds: &[&Fd<'_>],
    external: &[Vec<u8>],
    flight: &super::scm::InFlight,
    made: &mut Made,
) -> Result<(), String> {
    let mut socks: BTreeMap<u64, (&Fd<'_>, UnixSocket)> = BTreeMap::new();
    for &ino in group {
        let f = fds
            .iter()
            .find(|f| f.ino == ino && f.kind == FdKind::UnixSocket)
            .ok_or_else(|| format!("Unix socket {ino}: no fd holds it"))?;
        let s = state(f).ok_or_else(|| format!("Unix socket {ino}: undecodable state"))?;
        socks.insert(ino, (f, s));
    }
    let err = |ino: u64, s: &UnixSocket, e: String| {
        format!("Unix socket {ino} ({}): {e}", shown(&s.name))
    };
    let is_embryo = |peer: u64| {
        socks
            .values()
            .any(|(_, l)| l.pending.iter().any(|c| c.ino == peer))
    };
    let mutual = |ino: u64, s: &UnixSocket| {
        s.state == UNIX_CONNECTED
            && s.flags & UNIX_PEER_EXTERNAL == 0
            && socks
                .get(&s.peer)
                .is_some_and(|(_, p)| p.state == UNIX_CONNECTED && p.peer == ino)
    };
    let dgram = libc::SOCK_DGRAM as u32;

    // 1. Listeners, unconnected sockets, datagram sockets; socketpairs for datagram pairs.
    for (&ino, (_, s)) in &socks {
        if made.socks.contains_key(&ino) {
            continue;
        }
        if s.state == UNIX_LISTENING {
            let fd = named_socket(s, made).map_err(|e| err(ino, s, e))?;
            let room = u32::try_from(s.pending.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1)
                .max(s.backlog);
            unixsock::listen(fd.as_fd(), room).map_err(|e| err(ino, s, format!("listen: {e}")))?;
            made.socks.insert(ino, fd);
        } else if s.sock_type == dgram && mutual(ino, s) {
            let (a, b) = unixsock::socketpair(dgram as i32)
                .map_err(|e| err(ino, s, format!("socketpair: {e}")))?;
            let (_, p) = socks
                .get(&s.peer)
                .ok_or_else(|| err(ino, s, "peer".into()))?;
            for (fd, st) in [(&a, s), (&b, p)] {
                if !st.name.is_empty() {
                    bind_name(fd, &st.name, owner(st), made).map_err(|e| err(ino, s, e))?;
                }
            }
            made.socks.insert(ino, a);
            made.socks.insert(s.peer, b);
        } else if s.sock_type == dgram || s.state != UNIX_CONNECTED {
            let fd = named_socket(s, made).map_err(|e| err(ino, s, e))?;
            made.socks.insert(ino, fd);
        }
    }

    // 2. Stream and seqpacket connections inside the group.
    for (&ino, (_, s)) in &socks {
        if made.socks.contains_key(&ino)
            || s.sock_type == dgram
            || s.state != UNIX_CONNECTED
            || s.flags & (UNIX_PEER_EXTERNAL | UNIX_PEER_CLOSED) != 0
            || is_embryo(s.peer)
        {
            continue;
        }
        let (_, p) = socks
            .get(&s.peer)
            .ok_or_else(|| err(ino, s, format!("its peer {} is not in the image", s.peer)))?;
        let stream = s.sock_type == libc::SOCK_STREAM as u32;
        let (mine, theirs) = if s.name.is_empty() && p.name.is_empty() {
            unixsock::socketpair(s.sock_type as i32)
                .map_err(|e| err(ino, s, format!("socketpair: {e}")))?
        } else {
            // The accepted end is the named one; with both named, the one a listener of the
            // group shares its name with (either way both ends get their names back).
            let listener_named = |n: &[u8]| {
                socks
                    .values()
                    .any(|(_, l)| l.state == UNIX_LISTENING && l.name == n)
            };
            let i_accepted = !s.name.is_empty() && (p.name.is_empty() || listener_named(&s.name));
            let (acc, cli) = if i_accepted { (s, p) } else { (p, s) };
            let (a, c) = connect_accept(acc, cli, &socks, made).map_err(|e| err(ino, s, e))?;
            if i_accepted {
                (a, c)
            } else {
                (c, a)
            }
        };
        flight
            .receiver(ino, mine.as_fd())
            .and_then(|()| flight.receiver(s.peer, theirs.as_fd()))
            .map_err(|e| err(ino, s, format!("SO_PASSCRED: {e}")))?;
        for (i, m) in s.queue.iter().enumerate() {
            flight
                .send(theirs.as_fd(), ino, i, &m.data, stream, None)
                .map_err(|e| err(ino, s, format!("refilling the queue: {e}")))?;
        }
        for (i, m) in p.queue.iter().enumerate() {
            flight
                .send(mine.as_fd(), s.peer, i, &m.data, stream, None)
                .map_err(|e| err(s.peer, p, format!("refilling the queue: {e}")))?;
        }
        made.socks.insert(ino, mine);
        made.socks.insert(s.peer, theirs);
    }

    // Sockets whose peer closed: connected to a temporary peer (through a listener of their
    // name when they have one, to get it back) that sends their queue and closes.
    for (&ino, (_, s)) in &socks {
        if made.socks.contains_key(&ino) || s.flags & UNIX_PEER_CLOSED == 0 {
            continue;
        }
        let (mine, temp) = if s.name.is_empty() {
            unixsock::socketpair(s.sock_type as i32)
                .map_err(|e| err(ino, s, format!("socketpair: {e}")))?
        } else {
            let temp_peer = UnixSocket {
                sock_type: s.sock_type,
                ..UnixSocket::default()
            };
            connect_accept(s, &temp_peer, &socks, made).map_err(|e| err(ino, s, e))?
        };
        let stream = s.sock_type == libc::SOCK_STREAM as u32;
        flight
            .receiver(ino, mine.as_fd())
            .map_err(|e| err(ino, s, format!("SO_PASSCRED: {e}")))?;
        for (i, m) in s.queue.iter().enumerate() {
            flight
                .send(temp.as_fd(), ino, i, &m.data, stream, None)
                .map_err(|e| err(ino, s, format!("refilling the queue: {e}")))?;
        }
        drop(temp);
        made.socks.insert(ino, mine);
    }

    // 3. Pending connections, in accept order.
    for (&ino, (_, l)) in &socks {
        if l.state != UNIX_LISTENING {
            continue;
        }
        for c in &l.pending {
            let (_, cs) = socks.get(&c.client).ok_or_else(|| {
                err(
                    ino,
                    l,
                    format!("pending client {} is not in the image", c.client),
                )
            })?;
            let fd = named_socket(cs, made).map_err(|e| err(c.client, cs, e))?;
            unixsock::connect(fd.as_fd(), &l.name)
                .map_err(|e| err(c.client, cs, format!("connect({}): {e}", shown(&l.name))))?;
            let stream = cs.sock_type == libc::SOCK_STREAM as u32;
            for m in &c.queue {
                unixsock::send_all(fd.as_fd(), m, stream)
                    .map_err(|e| err(c.client, cs, format!("refilling: {e}")))?;
            }
            made.socks.insert(c.client, fd);
        }
    }

    // 4. Stream and seqpacket sockets connected outside the image.
    for (&ino, (_, s)) in &socks {
        if made.socks.contains_key(&ino) || s.flags & UNIX_PEER_EXTERNAL == 0 {
            continue;
        }
        if !external.contains(&s.peer_name) {
            return Err(err(
                ino,
                s,
                format!(
                    "connected to {} outside the image; restore with --external-unix {} to reconnect",
                    shown(&s.peer_name),
                    external_arg(&s.peer_name)
                ),
            ));
        }
        let fd = named_socket(s, made).map_err(|e| err(ino, s, e))?;
        unixsock::connect(fd.as_fd(), &s.peer_name)
            .map_err(|e| err(ino, s, format!("connect({}): {e}", shown(&s.peer_name))))?;
        made.socks.insert(ino, fd);
    }
    if let Some((&ino, (_, s))) = socks.iter().find(|(i, _)| !made.socks.contains_key(i)) {
        return Err(err(
            ino,
            s,
            "a connection this restorer cannot make again".into(),
        ));
    }

    // 5. Queued datagrams, then datagram connections.
    for (&ino, (_, r)) in &socks {
        if r.sock_type != dgram || r.queue.is_empty() {
            continue;
        }
        let pair = mutual(ino, r);
        if let Some(fd) = made.socks.get(&ino) {
            flight
                .receiver(ino, fd.as_fd())
                .map_err(|e| err(ino, r, format!("SO_PASSCRED: {e}")))?;
        }
        for (i, m) in r.queue.iter().enumerate() {
            send_datagram(ino, r, pair, (i, &m.sender), &m.data, &socks, flight, made)
                .map_err(|e| err(ino, r, format!("refilling the queue: {e}")))?;
        }
    }
    for (&ino, (_, s)) in &socks {
        if s.sock_type != dgram || s.state != UNIX_CONNECTED || mutual(ino, s) {
            continue;
        }
        let to = if s.flags & UNIX_PEER_EXTERNAL != 0 {
            s.peer_name.clone()
        } else {
            let (_, p) = socks
                .get(&s.peer)
                .ok_or_else(|| err(ino, s, format!("its peer {} is not in the image", s.peer)))?;
            p.name.clone()
        };
        let fd = made
            .socks
            .get(&ino)
            .ok_or_else(|| err(ino, s, "lost".into()))?;
        unixsock::connect(fd.as_fd(), &to)
            .map_err(|e| err(ino, s, format!("connect({}): {e}", shown(&to))))?;
    }

    // 6. Shutdowns, names unlinked at capture, backlogs.
    for (&ino, (_, s)) in &socks {
        let fd = made
            .socks
            .get(&ino)
            .ok_or_else(|| err(ino, s, "lost".into()))?;
        let how = match s.flags & (UNIX_SHUT_RD | UNIX_SHUT_WR) {
            0 => None,
            UNIX_SHUT_RD => Some(libc::SHUT_RD),
            UNIX_SHUT_WR => Some(libc::SHUT_WR),
            _ => Some(libc::SHUT_RDWR),
        };
        if let Some(how) = how {
            unixsock::shutdown(fd.as_fd(), how)
                .map_err(|e| err(ino, s, format!("shutdown: {e}")))?;
        }
        if s.state == UNIX_LISTENING {
            unixsock::listen(fd.as_fd(), s.backlog)
                .map_err(|e| err(ino, s, format!("listen: {e}")))?;
        }
        if s.flags & UNIX_PASSCRED != 0 {
            unixsock::set_passcred(fd.as_fd())
                .map_err(|e| err(ino, s, format!("SO_PASSCRED: {e}")))?;
        }
    }
    for (_, s) in socks.values() {
        if s.flags & UNIX_NAME_GONE != 0 && s.has_path() {
            unlink_socket_file(&s.name);
            made.paths.retain(|p| *p != s.name);
        }
    }
    Ok(())
}

/// How to write `name` on the command line (`@name` for an abstract one).
fn external_arg(name: &[u8]) -> String {
    shown(name)
}

/// A connected pair for the accepted end `acc` (named) and its client `cli`: the client is
/// connected to a listener of `acc`'s name (the group's, else a temporary one) and accepted.
/// Returns (accepted end, client end).
fn connect_accept(
    acc: &UnixSocket,
    cli: &UnixSocket,
    socks: &BTreeMap<u64, (&Fd<'_>, UnixSocket)>,
    made: &mut Made,
) -> Result<(OwnedFd, OwnedFd), String> {
    let real = socks
        .iter()
        .find(|(_, (_, l))| l.state == UNIX_LISTENING && l.name == acc.name)
        .map(|(i, _)| *i);
    let listener = match real.and_then(|i| made.socks.get(&i)) {
        Some(l) => l
            .try_clone()
            .map_err(|e| format!("dup of the listener: {e}"))?,
        None => {
            let t = unixsock::socket(acc.sock_type as i32)
                .map_err(|e| format!("socket (temporary listener): {e}"))?;
            bind_name(&t, &acc.name, None, made)?;
            unixsock::listen(t.as_fd(), 1)
                .map_err(|e| format!("listen (temporary listener): {e}"))?;
            t
        }
    };
    let c = named_socket(cli, made)?;
    let connected = unixsock::connect(c.as_fd(), &acc.name)
        .map_err(|e| format!("connect({}): {e}", shown(&acc.name)));
    let accepted = connected
        .and_then(|()| unixsock::accept(listener.as_fd()).map_err(|e| format!("accept: {e}")));
    if real.is_none() && acc.name.first().is_some_and(|&b| b != 0) {
        // The temporary listener's socket file goes with it.
        unlink_socket_file(&acc.name);
        made.paths.retain(|p| *p != acc.name);
    }
    Ok((accepted?, c))
}

/// Sends one saved datagram to the receiver `r` (inode `ino`): from its pair's other end, or
/// from the group's socket bound to `sender`, or from a temporary socket bound to `sender`
/// (unnamed when that name is taken or empty).
#[allow(clippy::too_many_arguments)]
fn send_datagram(
    ino: u64,
    r: &UnixSocket,
    pair: bool,
    (index, sender): (usize, &[u8]),
    data: &[u8],
    socks: &BTreeMap<u64, (&Fd<'_>, UnixSocket)>,
    flight: &super::scm::InFlight,
    made: &mut Made,
) -> Result<(), String> {
    if pair {
        let (_, p) = socks.get(&r.peer).ok_or("peer")?;
        if p.name == sender {
            let fd = made.socks.get(&r.peer).ok_or("lost peer")?;
            return flight
                .send(fd.as_fd(), ino, index, data, false, None)
                .map_err(|e| format!("send: {e}"));
        }
    }
    if r.name.is_empty() {
        return Err(format!(
            "socket {ino} has no name and a datagram from {} that its peer did not send",
            shown(sender)
        ));
    }
    let from = socks
        .iter()
        .find(|(_, (_, s))| !sender.is_empty() && s.name == sender && s.sock_type == r.sock_type)
        .map(|(i, _)| *i);
    if let Some(fd) = from.and_then(|i| made.socks.get(&i)) {
        return flight
            .send(fd.as_fd(), ino, index, data, false, Some(&r.name))
            .map_err(|e| format!("sendto: {e}"));
    }
    let t = unixsock::socket(r.sock_type as i32).map_err(|e| format!("socket: {e}"))?;
    let mut bound_path = false;
    if !sender.is_empty() && unixsock::bind(t.as_fd(), sender).is_ok() {
        bound_path = sender.first().is_some_and(|&b| b != 0);
    }
    let sent = flight
        .send(t.as_fd(), ino, index, data, false, Some(&r.name))
        .map_err(|e| format!("sendto: {e}"));
    if bound_path {
        unlink_socket_file(sender);
    }
    drop(t);
    sent
}

/// The path names of the UNIX_SOCKET fds of `procs` where no file is (the socket files a
/// restore creates anew).
pub fn absent_paths<'a, 'b: 'a>(
    procs: impl Iterator<Item = &'a crak_format::Process<'b>>,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = procs
        .flat_map(|p| p.fds.iter())
        .filter_map(state)
        .filter(|s| s.has_path())
        .map(|s| s.name)
        .filter(|n| std::fs::symlink_metadata(bytes_path(n)).is_err())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Unlinks each of `paths` that is a socket file (after a failed restore: see
/// [`absent_paths`]).
pub fn remove_socket_files(paths: &[Vec<u8>]) {
    for p in paths {
        unlink_socket_file(p);
    }
}

/// The checks a restore makes before its point of no return for the UNIX_SOCKET fds of one
/// process: path names absolute and not taken by another kind of file, and every peer outside
/// the image allowed by `external`.
pub fn check(fds: &[Fd<'_>], external: &[Vec<u8>]) -> Result<(), String> {
    for f in fds.iter().filter(|f| f.kind == FdKind::UnixSocket) {
        let s = state(f).ok_or_else(|| format!("fd {}: undecodable Unix socket state", f.fd))?;
        if s.has_path() {
            if s.name.first() != Some(&b'/') {
                return Err(format!(
                    "fd {} is a Unix socket bound to the relative path {}",
                    f.fd,
                    shown(&s.name)
                ));
            }
            if let Ok(m) = std::fs::symlink_metadata(bytes_path(&s.name)) {
                if !m.file_type().is_socket() {
                    return Err(format!(
                        "fd {}: the Unix socket's path {} is taken by a file that is not a socket",
                        f.fd,
                        shown(&s.name)
                    ));
                }
                if unixsock::is_bound(&s.name) {
                    return Err(format!(
                        "fd {}: the Unix socket's path {} is bound by a socket in use",
                        f.fd,
                        shown(&s.name)
                    ));
                }
            }
        }
        if s.flags & UNIX_PEER_EXTERNAL != 0 && !external.contains(&s.peer_name) {
            return Err(format!(
                "fd {} is a Unix socket connected to {} outside the image; restore with --external-unix {} to reconnect it there",
                f.fd,
                shown(&s.peer_name),
                external_arg(&s.peer_name)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crak_format::record::fd::{UnixMessage, UnixPending};

    fn fd(ino: u64, s: UnixSocket) -> Fd<'static> {
        Fd {
            pid: 1,
            fd: ino as u32,
            fd_flags: 0,
            kind: FdKind::UnixSocket,
            open_flags: 2,
            pos: 0,
            dev: 0,
            ino,
            rdev: 0,
            size: 0,
            mtime_ns: 0,
            mode: 0o140777,
            deleted: false,
            path: "socket:[1]".into(),
            contents: FdState::UnixSocket(s).encode().into(),
            description: 0,
        }
    }

    #[test]
    fn groups_join_peers_names_pending_and_senders() {
        let l = UnixSocket {
            sock_type: 1,
            state: UNIX_LISTENING,
            name: b"\0l".to_vec(),
            pending: vec![UnixPending {
                ino: 99,
                client: 3,
                queue: vec![],
            }],
            ..UnixSocket::default()
        };
        let conn = |peer, name: &[u8]| UnixSocket {
            sock_type: 1,
            state: UNIX_CONNECTED,
            peer,
            name: name.to_vec(),
            ..UnixSocket::default()
        };
        let recv = UnixSocket {
            sock_type: 2,
            name: b"\0r".to_vec(),
            queue: vec![UnixMessage {
                sender: b"\0s".to_vec(),
                data: vec![1],
            }],
            ..UnixSocket::default()
        };
        let send = UnixSocket {
            sock_type: 2,
            name: b"\0s".to_vec(),
            ..UnixSocket::default()
        };
        let fds = [
            fd(1, l),
            fd(2, conn(4, b"\0l")),
            fd(3, conn(99, b"")),
            fd(4, conn(2, b"")),
            fd(5, recv),
            fd(6, send),
            fd(
                7,
                UnixSocket {
                    sock_type: 1,
                    ..UnixSocket::default()
                },
            ),
        ];
        let refs: Vec<&Fd<'_>> = fds.iter().collect();
        assert_eq!(groups(&refs), vec![vec![1, 2, 3, 4], vec![5, 6], vec![7]]);
        assert_eq!(external_name(b"@x"), b"\0x");
        assert_eq!(shown(b"\0x"), "@x");
    }
}
