//! Open file descriptors (spec §3.13) and pipe buffers (§3.14).
//!
//! Kinds: regular files (deleted ones with their contents), directories (as REG), pipes, FIFOs,
//! character devices, terminals, eventfd, signalfd, timerfd and epoll instances (their state
//! from `/proc/PID/fdinfo/N`), connected Unix sockets, and TCP and UDP sockets ([`super::net`]). Anything else is refused with the fd number and its kind.
//! Pipe contents are read without consuming them: the pipe is opened through
//! `/proc/PID/fd/N`, `tee(2)`d into a private pipe, and that copy is read.

use super::Error;
use crate::procfs;
use crate::sys::fs as sysfs;
use crak_format::record::fd::{EpollEntry, Fd, FdKind, FdState, EVENTFD_SEMAPHORE, FD_CLOEXEC};
use crak_format::record::pipe_data::PipeData;
use crak_format::Blob;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

/// `O_CLOEXEC` as the kernel spells it in fdinfo flags.
const O_CLOEXEC: u32 = 0o2_000_000;

/// What an fd refers to, from its `/proc/PID/fd/N` link and `stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// A kind the image can hold.
    Supported(FdKind),
    /// Refused, with the kind's name.
    Unsupported(String),
}

/// Whether a character device is a terminal: ttys (major 4), `/dev/tty` & co. (5) and pty
/// slaves (136–143).
fn is_tty_major(major: u32) -> bool {
    major == 4 || major == 5 || (136..=143).contains(&major)
}

fn major(rdev: u64) -> u32 {
    ((rdev >> 8) & 0xfff) as u32 | ((rdev >> 32) & !0xfff) as u32
}

fn minor(rdev: u64) -> u32 {
    (rdev & 0xff) as u32 | ((rdev >> 12) & !0xff) as u32
}

/// Classifies fd `fd` of `pid` from its link text and `stat` of the link.
pub fn classify(pid: i32, fd: i32) -> Result<(Class, Vec<u8>, Option<std::fs::Metadata>), Error> {
    let link = procfs::readlink(pid, &format!("fd/{fd}"))?;
    let text = String::from_utf8_lossy(&link).into_owned();
    if text.starts_with("pipe:[") {
        let md = std::fs::metadata(procfs::path(pid, &format!("fd/{fd}"))).ok();
        return Ok((Class::Supported(FdKind::Pipe), link, md));
    }
    if let Some(ino) = text
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<u64>().ok())
    {
        let md = std::fs::metadata(procfs::path(pid, &format!("fd/{fd}"))).ok();
        return Ok((classify_socket(pid, fd, ino), link, md));
    }
    if let Some(rest) = text.strip_prefix("anon_inode:") {
        let name = rest.trim_start_matches('[').trim_end_matches(']');
        let supported = match name {
            "eventfd" => Some(FdKind::Eventfd),
            "eventpoll" => Some(FdKind::Epoll),
            "signalfd" => Some(FdKind::Signalfd),
            "timerfd" => Some(FdKind::Timerfd),
            "inotify" => Some(FdKind::Inotify),
            _ => None,
        };
        if let Some(k) = supported {
            let md = std::fs::metadata(procfs::path(pid, &format!("fd/{fd}"))).ok();
            return Ok((Class::Supported(k), link, md));
        }
        let kind = match name {
            "pidfd" => "a pidfd".to_string(),
            "io_uring" => "an io_uring".to_string(),
            "fanotify" => "a fanotify instance".to_string(),
            "userfaultfd" => "a userfaultfd".to_string(),
            other => format!("an anonymous inode ({other})"),
        };
        return Ok((Class::Unsupported(kind), link, None));
    }
    if text.starts_with("/memfd:") {
        let md =
            std::fs::metadata(procfs::path(pid, &format!("fd/{fd}"))).map_err(|e| Error::Io {
                context: format!("stat of fd {fd} of process {pid} ({text})"),
                source: e,
            })?;
        // hugetlbfs reports its huge page size as the block size.
        if md.blksize() > 4096 {
            return Ok((Class::Unsupported("a hugetlb memfd".into()), link, None));
        }
        return Ok((Class::Supported(FdKind::Memfd), link, Some(md)));
    }
    if !text.starts_with('/') {
        return Ok((
            Class::Unsupported(format!("an unknown kind of file ({text})")),
            link,
            None,
        ));
    }
    let md = std::fs::metadata(procfs::path(pid, &format!("fd/{fd}"))).map_err(|e| Error::Io {
        context: format!("stat of fd {fd} of process {pid} ({text})"),
        source: e,
    })?;
    let ft = md.mode() & libc::S_IFMT;
    let class = match ft {
        libc::S_IFREG | libc::S_IFDIR => Class::Supported(FdKind::Reg),
        libc::S_IFIFO => Class::Supported(FdKind::Fifo),
        libc::S_IFCHR => {
            let rdev = md.rdev();
            if major(rdev) == 5 && minor(rdev) == 2 {
                Class::Unsupported("a pseudo-terminal master (/dev/ptmx)".into())
            } else if is_tty_major(major(rdev)) {
                Class::Supported(FdKind::Tty)
            } else {
                Class::Supported(FdKind::Chr)
            }
        }
        libc::S_IFBLK => Class::Unsupported("a block device".into()),
        libc::S_IFSOCK => Class::Unsupported("a socket".into()),
        _ => Class::Unsupported(format!("a file of type {ft:#o}")),
    };
    Ok((class, link, Some(md)))
}

/// A socket: an unnamed connected pair of Unix sockets is UNIX; any other Unix socket
/// (named, listening, unconnected, connected to a named peer) is UNIX_SOCKET; a TCP socket
/// (listening, connected or neither) and a UDP socket are supported; anything else is
/// named.
fn classify_socket(pid: i32, fd: i32, ino: u64) -> Class {
    use crate::sys::unixsock::diag;
    match diag(ino) {
        // Not a Unix socket (sock_diag knows it by inode only in its own family).
        Err(_) => {
            let dup = crate::sys::pidfd::pidfd_open(pid)
                .and_then(|p| crate::sys::pidfd::pidfd_getfd(&p, fd));
            match dup.map(|s| super::net::classify(&s)) {
                Ok(Ok(Some(11))) => Class::Supported(FdKind::Tcp),
                Ok(Ok(Some(_))) => Class::Supported(FdKind::Udp),
                Ok(Err(kind)) => Class::Unsupported(kind),
                _ => Class::Unsupported("a socket (not a Unix, TCP or UDP one)".into()),
            }
        }
        Ok(d)
            if !matches!(
                i32::from(d.sock_type),
                libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
            ) =>
        {
            Class::Unsupported(format!("a Unix socket of type {}", d.sock_type))
        }
        Ok(d)
            if d.state != UNIX_LISTEN
                && d.peer != 0
                && d.name.is_empty()
                && diag(d.peer).is_ok_and(|p| p.name.is_empty()) =>
        {
            Class::Supported(FdKind::Unix)
        }
        Ok(_) => Class::Supported(FdKind::UnixSocket),
    }
}

/// `TCP_ESTABLISHED`, the state `sock_diag` gives a connected Unix socket.
const UNIX_ESTABLISHED: u8 = 1;

/// `TCP_LISTEN`, the state `sock_diag` gives a listening Unix socket.
const UNIX_LISTEN: u8 = 10;

/// The state of a connected Unix socket: type, peer and what is queued on it (read without
/// consuming it, through a duplicate taken with `pidfd_getfd`), with the ancillary data in
/// flight.
fn unix_pair_state(pid: i32, fd: i32, ino: u64) -> Result<(FdState, Vec<Ancillary>), Error> {
    use crate::sys::{pidfd, unixsock};
    let d = unixsock::diag(ino).map_err(|e| Error::Io {
        context: format!("sock_diag of fd {fd} of process {pid}"),
        source: e,
    })?;
    let pfd = pidfd::pidfd_open(pid)?;
    let dup = pidfd::pidfd_getfd(&pfd, fd)?;
    let stream = i32::from(d.sock_type) == libc::SOCK_STREAM;
    let peeked = peek(pid, fd, ino, &dup, stream)?;
    let (queue, ancillary) = split_ancillary(peeked);
    Ok((
        FdState::Unix {
            sock_type: u32::from(d.sock_type),
            peer: d.peer,
            queue: queue.into_iter().map(|(_, data)| data).collect(),
        },
        ancillary,
    ))
}

/// The files and credentials in flight with one queued message (spec §3.23): copies of the
/// files, installed in this process, and the credentials a receiver gets.
#[derive(Debug)]
pub struct Ancillary {
    /// Index of the message in the socket's queue.
    pub message: u32,
    /// The files, in order.
    pub fds: Vec<std::os::fd::OwnedFd>,
    /// The credentials (the socket has `SO_PASSCRED`).
    pub creds: Option<crate::sys::unixsock::Ucred>,
}

/// The queue of socket `dup` (fd `fd` of `pid`), read without consuming it.
fn peek(
    pid: i32,
    fd: i32,
    ino: u64,
    dup: &std::os::fd::OwnedFd,
    stream: bool,
) -> Result<Vec<crate::sys::unixsock::Peeked>, Error> {
    crate::sys::unixsock::peek_messages(std::os::fd::AsFd::as_fd(dup), stream).map_err(|e| {
        if e.raw_os_error() == Some(libc::EMSGSIZE) {
            Error::UnsupportedFd {
                pid,
                fd,
                kind: "a Unix socket with a message or ancillary data too large to read".into(),
                link: format!("socket:[{ino}]"),
            }
        } else {
            Error::Io {
                context: format!("reading the queue of socket fd {fd} of process {pid}"),
                source: e,
            }
        }
    })
}

/// Queued messages as (sender, data).
type Queue = Vec<(Vec<u8>, Vec<u8>)>;

/// Messages as (sender, data), and the ancillary data of those that carry some.
fn split_ancillary(peeked: Vec<crate::sys::unixsock::Peeked>) -> (Queue, Vec<Ancillary>) {
    let mut queue = Vec::with_capacity(peeked.len());
    let mut ancillary = Vec::new();
    for (i, m) in peeked.into_iter().enumerate() {
        if !m.fds.is_empty() || m.creds.is_some() {
            ancillary.push(Ancillary {
                message: i as u32,
                fds: m.fds,
                creds: m.creds,
            });
        }
        queue.push((m.sender, m.data));
    }
    (queue, ancillary)
}

/// A name as shown in messages: a path, or `@name` for an abstract one.
fn shown(name: &[u8]) -> String {
    crate::restore::unix_socket::shown(name)
}

/// The state of a UNIX_SOCKET fd: type, state, names, the socket file's owner and mode, the
/// queue (read without consuming it, through a duplicate taken with `pidfd_getfd`) and, for a
/// listener, the connections waiting to be accepted. The peer is marked external later, when
/// the whole tree is known ([`super::collect`]).
fn unix_socket_state(
    pid: i32,
    fd: i32,
    ino: u64,
) -> Result<(crak_format::record::fd::UnixSocket, Vec<Ancillary>), Error> {
    use crate::sys::{pidfd, unixsock};
    use crak_format::record::fd::{
        UnixMessage, UnixPending, UnixSocket, UNIX_CONNECTED, UNIX_LISTENING, UNIX_NAME_GONE,
        UNIX_PASSCRED, UNIX_PEER_CLOSED, UNIX_UNCONNECTED,
    };
    let diag_err = |e| Error::Io {
        context: format!("sock_diag of fd {fd} of process {pid}"),
        source: e,
    };
    let refuse = |kind: String| Error::UnsupportedFd {
        pid,
        fd,
        kind,
        link: format!("socket:[{ino}]"),
    };
    let d = unixsock::diag(ino).map_err(diag_err)?;
    let mut s = UnixSocket {
        sock_type: u32::from(d.sock_type),
        state: if d.state == UNIX_LISTEN {
            UNIX_LISTENING
        } else if d.peer != 0 {
            UNIX_CONNECTED
        } else {
            UNIX_UNCONNECTED
        },
        flags: u32::from(d.shutdown & 3),
        // A datagram socket that another connected to shows ESTABLISHED without a peer, and
        // so does a client whose connection waits to be accepted (its peer has no inode yet)
        // and a socket whose peer closed (which shut both directions).
        peer: if d.peer == 0
            && d.state == UNIX_ESTABLISHED
            && d.shutdown != 3
            && i32::from(d.sock_type) != libc::SOCK_DGRAM
        {
            // Connected to a listener that has not accepted it yet: the peer's name is the
            // listener's, filled in when the tree is known.
            pending_id(ino)
        } else {
            d.peer
        },
        name: d.name.clone(),
        ..UnixSocket::default()
    };
    if s.state == UNIX_UNCONNECTED && s.peer != 0 {
        s.state = UNIX_CONNECTED;
    }
    if s.state == UNIX_UNCONNECTED
        && d.state == UNIX_ESTABLISHED
        && d.shutdown == 3
        && i32::from(d.sock_type) != libc::SOCK_DGRAM
    {
        s.state = UNIX_CONNECTED;
        s.flags |= UNIX_PEER_CLOSED;
    }
    if s.has_path() {
        if s.name.first() != Some(&b'/') {
            return Err(refuse(format!(
                "a Unix socket bound to the relative path {}",
                shown(&s.name)
            )));
        }
        match std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&s.name)) {
            Ok(m) if m.ino() == d.vfs_ino && m.file_type().is_socket() => {
                s.name_uid = m.uid();
                s.name_gid = m.gid();
                s.name_mode = m.mode();
            }
            _ => s.flags |= UNIX_NAME_GONE,
        }
    }
    if d.peer != 0 {
        s.peer_name = unixsock::diag(d.peer).map(|p| p.name).unwrap_or_default();
    }
    // The socket itself (a duplicate; nothing is changed through it).
    let pfd = pidfd::pidfd_open(pid)?;
    let dup = pidfd::pidfd_getfd(&pfd, fd)?;
    if unixsock::passcred(std::os::fd::AsFd::as_fd(&dup)).map_err(|e| Error::Io {
        context: format!("SO_PASSCRED of fd {fd} of process {pid}"),
        source: e,
    })? {
        s.flags |= UNIX_PASSCRED;
    }
    if s.state == UNIX_LISTENING {
        s.backlog = d.wqueue;
        // sock_diag names the clients of the waiting connections (those have no inode yet).
        for &client in &d.icons {
            let c = unixsock::diag(client).map_err(diag_err)?;
            if c.wqueue != 0 {
                return Err(refuse(format!(
                    "a listening Unix socket ({}) with a connection not yet accepted that has data queued (client socket {client})",
                    shown(&s.name)
                )));
            }
            s.pending.push(UnixPending {
                ino: pending_id(client),
                client,
                queue: Vec::new(),
            });
        }
        return Ok((s, Vec::new()));
    }
    let stream = i32::from(d.sock_type) == libc::SOCK_STREAM;
    if s.state == UNIX_UNCONNECTED && i32::from(d.sock_type) != libc::SOCK_DGRAM {
        // Nothing can be queued on an unconnected stream or seqpacket socket.
        return Ok((s, Vec::new()));
    }
    let (queue, ancillary) = split_ancillary(peek(pid, fd, ino, &dup, stream)?);
    s.queue = queue
        .into_iter()
        .map(|(sender, data)| UnixMessage {
            sender: if stream { Vec::new() } else { sender },
            data,
        })
        .collect();
    Ok((s, ancillary))
}

/// The identifier of a connection not yet accepted (which has no inode): its client's inode
/// with bit 63 set (spec §3.13).
fn pending_id(client: u64) -> u64 {
    client | 1 << 63
}

/// Checks every fd of `pid` without touching the process; an unsupported one is an error
/// naming it.
pub fn preflight(pid: i32) -> Result<(), Error> {
    for fd in procfs::fds(pid)? {
        match classify(pid, fd) {
            Ok((Class::Unsupported(kind), link, _)) => {
                return Err(Error::UnsupportedFd {
                    pid,
                    fd,
                    kind,
                    link: String::from_utf8_lossy(&link).into_owned(),
                })
            }
            Ok((Class::Supported(FdKind::Tcp), link, _)) => {
                if let Err(kind) = super::net::preflight(pid, fd) {
                    return Err(Error::UnsupportedFd {
                        pid,
                        fd,
                        kind,
                        link: String::from_utf8_lossy(&link).into_owned(),
                    });
                }
            }
            Ok(_) => {}
            // The fd was closed meanwhile.
            Err(Error::Proc(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Everything about the fds of one process.
#[derive(Debug, Default)]
pub struct Files {
    /// FD records, by fd number.
    pub fds: Vec<Fd<'static>>,
    /// One PIPE_DATA per pipe (or FIFO) id, those in flight included.
    pub pipes: Vec<PipeData<'static>>,
    /// The files and credentials in flight on its Unix sockets.
    pub in_flight: Vec<InFlight>,
}

/// One SCM record (spec §3.23) and the copies of its files, installed in this process by the
/// peek and closed when dropped.
#[derive(Debug)]
pub struct InFlight {
    /// The record.
    pub scm: crak_format::record::scm::Scm<'static>,
    /// The copies, in the order of `scm.files`.
    pub copies: Vec<std::os::fd::OwnedFd>,
}

fn strip_deleted(link: &[u8]) -> (Vec<u8>, bool) {
    const SUFFIX: &[u8] = b" (deleted)";
    match link.strip_suffix(SUFFIX) {
        Some(p) => (p.to_vec(), true),
        None => (link.to_vec(), false),
    }
}

/// Reads the bytes buffered in the pipe behind `/proc/PID/fd/N` without consuming them.
fn pipe_contents(pid: i32, fd: i32) -> Result<(u32, Vec<u8>), Error> {
    let p = procfs::path(pid, &format!("fd/{fd}"));
    let io = |what: &str, e: std::io::Error| Error::Io {
        context: format!("{what} of pipe fd {fd} of process {pid}"),
        source: e,
    };
    // O_NONBLOCK: opening a FIFO/pipe for reading must not wait for a writer.
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .map_err(|e| io("open", e))?;
    let capacity = sysfs::pipe_size(&src)?;
    let queued = sysfs::fionread(&src)?;
    if queued == 0 {
        return Ok((capacity, Vec::new()));
    }
    let (r, w) = sysfs::pipe(libc::O_NONBLOCK)?;
    let mine = sysfs::set_pipe_size(&w, capacity.max(queued as u32))?;
    if (mine as usize) < queued {
        return Err(Error::Other(format!(
            "pipe fd {fd} of process {pid}: {queued} bytes buffered, private copy holds only {mine}"
        )));
    }
    let n = sysfs::tee(&src, &w, queued, libc::SPLICE_F_NONBLOCK)?;
    if n != queued {
        return Err(Error::Other(format!(
            "pipe fd {fd} of process {pid}: copied {n} of {queued} buffered bytes"
        )));
    }
    drop(w);
    let mut data = Vec::with_capacity(queued);
    std::fs::File::from(r)
        .read_to_end(&mut data)
        .map_err(|e| io("read of the private copy", e))?;
    Ok((capacity, data))
}

/// Captures every fd of the (frozen) process `pid`. What the capture changes on its TCP sockets
/// (repair mode, locks) is pushed to `holds`, also when it fails, to be undone or kept
/// ([`super::net`]).
pub fn capture(pid: i32, holds: &mut Vec<super::net::Hold>) -> Result<Files, Error> {
    let mut out = Files::default();
    let mut pipes: BTreeMap<u64, PipeData<'static>> = BTreeMap::new();
    for fd in procfs::fds(pid)? {
        let (rec, ancillary) = describe(pid, fd, holds, &mut pipes, false)?;
        for a in ancillary {
            out.in_flight
                .push(in_flight(pid, &rec, a, holds, &mut pipes)?);
        }
        out.fds.push(rec);
    }
    out.pipes = pipes.into_values().collect();
    Ok(out)
}

/// The files and credentials in flight with one message queued on the socket `sock` (an FD
/// record of `pid`), described like fds of a process (spec §3.23), with the copies kept open
/// so that the tree's fds can be compared with them (`kcmp`). A socket in flight whose own
/// queue has ancillary data, an epoll instance and a TCP socket in flight are refused.
fn in_flight(
    pid: i32,
    sock: &Fd<'static>,
    a: Ancillary,
    holds: &mut Vec<super::net::Hold>,
    pipes: &mut BTreeMap<u64, PipeData<'static>>,
) -> Result<InFlight, Error> {
    use crak_format::record::scm::{Scm, SCM_CREDENTIALS};
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    let named = match FdState::decode(sock.kind, sock.contents.as_bytes()) {
        Ok(Some(FdState::UnixSocket(u))) => format!(" ({})", shown(&u.name)),
        _ => String::new(),
    };
    let mut files = Vec::with_capacity(a.fds.len());
    for (j, copy) in a.fds.iter().enumerate() {
        let described = describe(me, copy.as_raw_fd(), holds, pipes, true).map_err(|e| {
            let what = match e {
                Error::UnsupportedFd { kind, .. } => kind,
                other => other.to_string(),
            };
            Error::UnsupportedFd {
                pid,
                fd: sock.fd as i32,
                kind: format!(
                    "a Unix socket{named} whose queued message {} carries, as file {j} in flight, {what}",
                    a.message
                ),
                link: format!("socket:[{}]", sock.ino),
            }
        })?;
        let (mut f, _) = described;
        (f.pid, f.fd, f.fd_flags) = (0, j as u32, 0);
        files.push(f);
    }
    let creds = a.creds.map(|u| (u.pid.max(0) as u32, u.uid, u.gid));
    let (pid_c, uid, gid) = creds.unwrap_or((0, 0, 0));
    Ok(InFlight {
        scm: Scm {
            socket: sock.ino,
            message: a.message,
            flags: if creds.is_some() { SCM_CREDENTIALS } else { 0 },
            pid: pid_c,
            uid,
            gid,
            files,
        },
        copies: a.fds,
    })
}

/// The FD record of fd `fd` of `pid` (a frozen process, or, with `in_flight`, this process
/// holding a copy of a file in flight), adding a pipe's buffered bytes to `pipes`, with the
/// ancillary data queued on a Unix socket (none `in_flight`: a socket in flight that has some
/// is refused).
fn describe(
    pid: i32,
    fd: i32,
    holds: &mut Vec<super::net::Hold>,
    pipes: &mut BTreeMap<u64, PipeData<'static>>,
    in_flight: bool,
) -> Result<(Fd<'static>, Vec<Ancillary>), Error> {
    let mut ancillary = Vec::new();
    let (class, link, md) = classify(pid, fd)?;
    let kind = match class {
        Class::Supported(k) => k,
        Class::Unsupported(kind) => {
            return Err(Error::UnsupportedFd {
                pid,
                fd,
                kind,
                link: String::from_utf8_lossy(&link).into_owned(),
            })
        }
    };
    let info = procfs::fdinfo(pid, fd)?;
    let md = md.ok_or_else(|| Error::Other(format!("no stat for fd {fd} of {pid}")))?;
    let (stripped, suffix) = match kind {
        FdKind::Pipe => (link.clone(), false),
        _ => strip_deleted(&link),
    };
    // " (deleted)" in the link: the name is gone (the file may still have other links). A
    // file whose real name ends in " (deleted)" is told apart by that name still leading to
    // the same inode.
    let deleted = kind == FdKind::Reg
        && suffix
        && std::fs::metadata(std::ffi::OsStr::from_bytes(&link))
            .map(|m| (m.dev(), m.ino()) != (md.dev(), md.ino()))
            .unwrap_or(true);
    let path = if deleted { stripped } else { link.clone() };
    if deleted && md.is_dir() {
        return Err(Error::UnsupportedFd {
            pid,
            fd,
            kind: "a deleted directory".into(),
            link: String::from_utf8_lossy(&link).into_owned(),
        });
    }
    let st = crak_format::edit::FileStat::from(&md);
    let mut rec = Fd {
        pid: pid as u32,
        fd: fd as u32,
        fd_flags: if info.flags & O_CLOEXEC != 0 {
            FD_CLOEXEC
        } else {
            0
        },
        kind,
        open_flags: info.flags,
        pos: info.pos,
        dev: st.dev,
        ino: st.ino,
        rdev: st.rdev,
        size: st.size,
        mtime_ns: st.mtime_ns,
        mode: st.mode,
        deleted,
        path: path.into(),
        contents: Blob::default(),
        description: 0,
    };
    // What a restore cannot recreate in flight: an epoll instance (its registrations name
    // fds of a process), a TCP socket (repair mode needs the process's fd) and a named or
    // listening Unix socket (made with its group of sockets).
    if in_flight && matches!(kind, FdKind::Epoll | FdKind::Tcp | FdKind::UnixSocket) {
        let what = match kind {
            FdKind::Epoll => "an epoll instance",
            FdKind::Tcp => "a TCP socket",
            _ => "a named, listening or accepted Unix socket",
        };
        return Err(Error::UnsupportedFd {
            pid,
            fd,
            kind: what.into(),
            link: String::from_utf8_lossy(&link).into_owned(),
        });
    }
    if matches!(kind, FdKind::Pipe | FdKind::Fifo) {
        rec.rdev = 0;
        if let std::collections::btree_map::Entry::Vacant(v) = pipes.entry(md.ino()) {
            let (capacity, data) = pipe_contents(pid, fd)?;
            v.insert(PipeData {
                pipe_id: md.ino(),
                capacity,
                data: Blob::from(data),
            });
        }
    }
    if kind == FdKind::Memfd {
        let state = memfd_state(pid, fd, &link)?;
        rec.contents = Blob::from(state.encode());
    } else if kind == FdKind::Inotify {
        let text = procfs::read_string(pid, &format!("fdinfo/{fd}"))?;
        let state = inotify_state(pid, fd, &text)?;
        rec.contents = Blob::from(state.encode());
        rec.dev = 0;
        rec.ino = 0;
    } else if kind == FdKind::UnixSocket {
        let (state, anc) = unix_socket_state(pid, fd, md.ino())?;
        rec.contents = Blob::from(FdState::UnixSocket(state).encode());
        rec.dev = 0;
        ancillary = anc;
    } else if kind == FdKind::Tcp || kind == FdKind::Udp {
        let state = if kind == FdKind::Tcp {
            super::net::tcp_state(pid, fd, md.ino(), holds)?
        } else {
            super::net::udp_state(pid, fd)?
        };
        rec.contents = Blob::from(state.encode());
        rec.dev = 0;
    } else if kind == FdKind::Unix {
        let (state, anc) = unix_pair_state(pid, fd, md.ino())?;
        rec.contents = Blob::from(state.encode());
        rec.dev = 0;
        ancillary = anc;
    } else if kind.is_anon() {
        let text = procfs::read_string(pid, &format!("fdinfo/{fd}"))?;
        let state = anon_state(kind, &text)
            .map_err(|what| Error::Other(format!("fdinfo of fd {fd} of process {pid}: {what}")))?;
        rec.contents = Blob::from(state.encode());
        rec.dev = 0;
        rec.ino = 0;
    }
    if deleted {
        let mut data = Vec::new();
        std::fs::File::open(procfs::path(pid, &format!("fd/{fd}")))
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| Error::Io {
                context: format!("reading deleted file of fd {fd} of process {pid}"),
                source: e,
            })?;
        rec.contents = Blob::from(data);
    }
    if in_flight && !ancillary.is_empty() {
        return Err(Error::UnsupportedFd {
            pid,
            fd,
            kind: "a Unix socket with files or credentials in flight itself".into(),
            link: String::from_utf8_lossy(&link).into_owned(),
        });
    }
    Ok((rec, ancillary))
}

/// Bytes read from a memfd per `read`.
const MEMFD_CHUNK: usize = 1 << 20;
/// Granularity of a memfd's zero runs: whole zero pages are left out of its extents.
const MEMFD_PAGE: usize = 4096;

/// The state of a memfd (spec §3.13): name from the link, seals, size and the pages that are
/// not zero, read through `/proc/PID/fd/N` opened again (read-only, its own open file
/// description: the target's offset is not touched).
fn memfd_state(pid: i32, fd: i32, link: &[u8]) -> Result<FdState, Error> {
    use crak_format::record::fd::{MemfdExtent, MFD_ALLOW_SEALING};
    use std::os::fd::AsFd;
    let io = |what: &str, e: std::io::Error| Error::Io {
        context: format!("{what} of memfd fd {fd} of process {pid}"),
        source: e,
    };
    let name = link.strip_prefix(b"/memfd:").unwrap_or(link);
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name).to_vec();
    let mut file =
        std::fs::File::open(procfs::path(pid, &format!("fd/{fd}"))).map_err(|e| io("open", e))?;
    let seals = crate::sys::objects::get_seals(file.as_fd()).map_err(|e| io("F_GET_SEALS", e))?;
    // A memfd made without MFD_ALLOW_SEALING carries F_SEAL_SEAL alone from the start.
    let flags = if seals == libc::F_SEAL_SEAL as u32 {
        0
    } else {
        MFD_ALLOW_SEALING
    };
    let size = file.metadata().map_err(|e| io("fstat", e))?.len();
    let mut extents: Vec<MemfdExtent> = Vec::new();
    let mut buf = vec![0u8; MEMFD_CHUNK];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        for (i, page) in buf[..n].chunks(MEMFD_PAGE).enumerate() {
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            let off = at + (i * MEMFD_PAGE) as u64;
            match extents.last_mut() {
                Some(e) if e.offset + e.data.len() as u64 == off => e.data.extend_from_slice(page),
                _ => extents.push(MemfdExtent {
                    offset: off,
                    data: page.to_vec(),
                }),
            }
        }
        at += n as u64;
    }
    if at != size {
        return Err(Error::Other(format!(
            "memfd fd {fd} of process {pid}: read {at} bytes of {size}"
        )));
    }
    Ok(FdState::Memfd {
        flags,
        seals,
        size,
        name,
        extents,
    })
}

/// The watches of an inotify instance (spec §3.13) from its fdinfo: each watched inode is
/// opened by its file handle (`open_by_handle_at`, as root) on the filesystem the fdinfo names,
/// and its path read back. An instance with events queued is refused: they would be lost.
fn inotify_state(pid: i32, fd: i32, text: &str) -> Result<FdState, Error> {
    use crak_format::record::fd::InotifyWatch;
    use std::os::fd::AsFd;
    let refuse = |kind: String| Error::UnsupportedFd {
        pid,
        fd,
        kind,
        link: "anon_inode:inotify".into(),
    };
    let pfd = crate::sys::pidfd::pidfd_open(pid)?;
    let dup = crate::sys::pidfd::pidfd_getfd(&pfd, fd)?;
    let queued = sysfs::fionread(&dup)?;
    if queued > 0 {
        return Err(refuse(format!(
            "an inotify instance with {queued} bytes of events not yet read"
        )));
    }
    let mut watches = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("inotify ")) {
        let w = parse_inotify_line(line)
            .ok_or_else(|| Error::Other(format!("fd {fd} of process {pid}: fdinfo {line:?}")))?;
        let mount = mount_of(w.sdev).map_err(|e| {
            refuse(format!(
                "an inotify watch on a filesystem (device {:#x}) not mounted here: {e}",
                w.sdev
            ))
        })?;
        let opened = crate::sys::objects::open_by_handle(mount.as_fd(), w.handle_type, &w.handle)
            .map_err(|e| {
            refuse(format!(
                "an inotify watch (wd {}) whose inode cannot be opened by handle: {e}",
                w.wd
            ))
        })?;
        let md = std::fs::File::from(opened.try_clone().map_err(|e| Error::Io {
            context: "dup".into(),
            source: e,
        })?)
        .metadata()
        .map_err(|e| Error::Io {
            context: format!("fstat of inotify watch {} of fd {fd}", w.wd),
            source: e,
        })?;
        let me = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&opened));
        let path = std::fs::read_link(&me)
            .map_err(|e| Error::Io {
                context: format!("path of inotify watch {} of fd {fd}", w.wd),
                source: e,
            })?
            .into_os_string()
            .into_vec();
        let (_, gone) = strip_deleted(&path);
        if gone || !path.starts_with(b"/") {
            return Err(refuse(format!(
                "an inotify watch (wd {}) on an inode without a path ({})",
                w.wd,
                String::from_utf8_lossy(&path)
            )));
        }
        watches.push(InotifyWatch {
            wd: w.wd,
            mask: w.mask,
            dev: md.dev(),
            ino: md.ino(),
            path,
        });
    }
    watches.sort_by_key(|w| w.wd);
    Ok(FdState::Inotify(watches))
}

/// One `inotify wd:… ino:… sdev:… mask:… ignored_mask:… fhandle-bytes:… fhandle-type:…
/// f_handle:…` fdinfo line.
#[derive(Debug, PartialEq, Eq)]
struct InotifyLine {
    wd: u32,
    sdev: u64,
    mask: u32,
    handle_type: i32,
    handle: Vec<u8>,
}

fn parse_inotify_line(line: &str) -> Option<InotifyLine> {
    let get = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix(':'))
    };
    let hexbytes = get("f_handle")?;
    let handle = (0..hexbytes.len() / 2)
        .map(|i| u8::from_str_radix(hexbytes.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let nbytes = usize::from_str_radix(get("fhandle-bytes")?, 16).ok()?;
    if handle.len() != nbytes {
        return None;
    }
    Some(InotifyLine {
        wd: u32::from_str_radix(get("wd")?, 16).ok()?,
        sdev: u64::from_str_radix(get("sdev")?, 16).ok()?,
        mask: u32::from_str_radix(get("mask")?, 16).ok()?,
        handle_type: i32::from_str_radix(get("fhandle-type")?, 16).ok()?,
        handle,
    })
}

/// A directory on the filesystem whose kernel device number (`MAJOR << 20 | MINOR`, as fdinfo
/// shows it) is `sdev`, from this process's mount table.
fn mount_of(sdev: u64) -> std::io::Result<std::fs::File> {
    let (major, minor) = (sdev >> 20, sdev & 0xfffff);
    let want = format!("{major}:{minor}");
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    for l in table.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(2) == Some(&want.as_str()) {
            if let Some(mp) = f.get(4) {
                let mp = unescape_mount(mp);
                if let Ok(d) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(std::ffi::OsStr::from_bytes(&mp))
                {
                    return Ok(d);
                }
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no mount of device {want}"),
    ))
}

/// A mountinfo path with its `\ooo` escapes decoded.
fn unescape_mount(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The value of `key:` in fdinfo text, trimmed.
fn field<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn hex(text: &str, key: &str) -> Result<u64, String> {
    let v = field(text, key).ok_or_else(|| format!("no {key}"))?;
    u64::from_str_radix(v, 16).map_err(|_| format!("{key} {v:?}"))
}

fn dec(text: &str, key: &str) -> Result<u64, String> {
    let v = field(text, key).ok_or_else(|| format!("no {key}"))?;
    v.parse().map_err(|_| format!("{key} {v:?}"))
}

/// `(sec, nsec)` of a timerfd fdinfo line, in ns.
fn pair_ns(text: &str, key: &str) -> Result<u64, String> {
    let v = field(text, key).ok_or_else(|| format!("no {key}"))?;
    let inner = v.trim_start_matches('(').trim_end_matches(')');
    let (s, n) = inner
        .split_once(',')
        .ok_or_else(|| format!("{key} {v:?}"))?;
    let s: u64 = s.trim().parse().map_err(|_| format!("{key} {v:?}"))?;
    let n: u64 = n.trim().parse().map_err(|_| format!("{key} {v:?}"))?;
    Ok(s.saturating_mul(1_000_000_000).saturating_add(n))
}

/// The state of an eventfd, signalfd, timerfd or epoll fd from its fdinfo text.
pub fn anon_state(kind: FdKind, text: &str) -> Result<FdState, String> {
    Ok(match kind {
        FdKind::Eventfd => FdState::Eventfd {
            count: hex(text, "eventfd-count")?,
            flags: if dec(text, "eventfd-semaphore").unwrap_or(0) != 0 {
                EVENTFD_SEMAPHORE
            } else {
                0
            },
        },
        FdKind::Signalfd => FdState::Signalfd {
            mask: hex(text, "sigmask")?,
        },
        FdKind::Timerfd => {
            let flags = field(text, "settime flags").ok_or("no settime flags")?;
            FdState::Timerfd {
                clockid: dec(text, "clockid")? as u32,
                settime_flags: u32::from_str_radix(flags, 8)
                    .map_err(|_| format!("settime flags {flags:?}"))?,
                value_ns: pair_ns(text, "it_value")?,
                interval_ns: pair_ns(text, "it_interval")?,
                ticks: dec(text, "ticks")?,
            }
        }
        FdKind::Epoll => {
            let mut entries = Vec::new();
            for l in text.lines().filter(|l| l.starts_with("tfd:")) {
                let w: Vec<&str> = l.split_whitespace().collect();
                let get = |key: &str| -> Result<&str, String> {
                    w.iter()
                        .position(|x| *x == key)
                        .and_then(|i| w.get(i + 1).copied())
                        .ok_or_else(|| format!("epoll line without {key} {l:?}"))
                };
                entries.push(EpollEntry {
                    fd: get("tfd:")?.parse().map_err(|_| format!("tfd in {l:?}"))?,
                    events: u32::from_str_radix(get("events:")?, 16)
                        .map_err(|_| format!("events in {l:?}"))?,
                    data: u64::from_str_radix(get("data:")?, 16)
                        .map_err(|_| format!("data in {l:?}"))?,
                });
            }
            FdState::Epoll(entries)
        }
        FdKind::Reg
        | FdKind::Pipe
        | FdKind::Fifo
        | FdKind::Chr
        | FdKind::Tty
        | FdKind::Unix
        | FdKind::Inotify
        | FdKind::Memfd
        | FdKind::UnixSocket
        | FdKind::Tcp
        | FdKind::Udp => return Err(format!("{kind:?} has no fdinfo state")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_fdinfo_parsing() {
        let ev = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t18\neventfd-count:                5\neventfd-id: 1\neventfd-semaphore: 1\n";
        assert_eq!(
            anon_state(FdKind::Eventfd, ev),
            Ok(FdState::Eventfd {
                count: 5,
                flags: EVENTFD_SEMAPHORE
            })
        );
        let tf = "pos:\t0\nflags:\t02\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (1, 500)\nit_interval: (0, 50000000)\n";
        assert_eq!(
            anon_state(FdKind::Timerfd, tf),
            Ok(FdState::Timerfd {
                clockid: 1,
                settime_flags: 1,
                value_ns: 1_000_000_500,
                interval_ns: 50_000_000,
                ticks: 3
            })
        );
        let ep = "pos:\t0\nflags:\t02000002\ntfd:        4 events: 80000019 data:                4  pos:0 ino:cb8aa sdev:f\ntfd:       10 events:       1 data: ffffffffffffffff  pos:0 ino:1 sdev:f\n";
        assert_eq!(
            anon_state(FdKind::Epoll, ep),
            Ok(FdState::Epoll(vec![
                EpollEntry {
                    fd: 4,
                    events: 0x8000_0019,
                    data: 4
                },
                EpollEntry {
                    fd: 10,
                    events: 1,
                    data: u64::MAX
                }
            ]))
        );
        let sf = "pos:\t0\nflags:\t02\nsigmask:\t0000000000000200\n";
        assert_eq!(
            anon_state(FdKind::Signalfd, sf),
            Ok(FdState::Signalfd { mask: 0x200 })
        );
        assert!(anon_state(FdKind::Eventfd, "pos: 0\n").is_err());
    }

    #[test]
    fn inotify_fdinfo_line() {
        let l = "inotify wd:3 ino:2a sdev:800001 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:2a0000006fc3a1e9";
        assert_eq!(
            parse_inotify_line(l),
            Some(InotifyLine {
                wd: 3,
                sdev: 0x80_0001,
                mask: 0x100,
                handle_type: 1,
                handle: vec![0x2a, 0, 0, 0, 0x6f, 0xc3, 0xa1, 0xe9],
            })
        );
        assert_eq!(parse_inotify_line("inotify wd:3 ino:2a"), None);
        assert_eq!(unescape_mount("/a\\040b"), b"/a b".to_vec());
    }

    #[test]
    fn device_numbers() {
        // makedev(136, 3) in the glibc encoding
        let rdev: u64 = (136 << 8) | 3;
        assert_eq!((major(rdev), minor(rdev)), (136, 3));
        assert!(is_tty_major(136));
        assert!(!is_tty_major(1));
        let big: u64 = libc::makedev(259, 70000);
        assert_eq!((major(big), minor(big)), (259, 70000));
    }

    #[test]
    fn deleted_suffix() {
        assert_eq!(
            strip_deleted(b"/tmp/x (deleted)"),
            (b"/tmp/x".to_vec(), true)
        );
        assert_eq!(strip_deleted(b"/tmp/x"), (b"/tmp/x".to_vec(), false));
    }
}
