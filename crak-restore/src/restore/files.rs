//! File descriptors, recreated by the restore child itself (stage 2, before it stops).
//!
//! The child runs on a copy of crak-restore's memory and descriptor table. It first moves its
//! own helper descriptor (the error pipe) above every number the image uses and closes
//! everything else it inherited, so that no inherited descriptor can leak into the restored
//! program. Then each open file is recreated at a temporary number above the image's range
//! (so that creating one object can never clobber a descriptor already placed: `pipe2` returns
//! two numbers at once), and only when all exist are they moved to their final numbers with
//! `dup3`, which also sets close-on-exec.
//!
//! The child runs with the image's filesystem identity by now ([`super::creds`]), so each open
//! is checked by the kernel against the image's user. Paths were checked by the plan (absolute,
//! no `.` or `..`); they are opened with `openat2` refusing every symbolic link, and a regular
//! file or device is compared with the image once open (device and inode, or device number), so
//! that a file swapped in since the plan's check is refused rather than handed over.

use crate::sys::fdops;
use crak_format::record::fd::{Fd, FdKind, FdState, EVENTFD_SEMAPHORE, FD_CLOEXEC};
use crak_format::record::pipe_data::PipeData;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};

/// `open(2)` flags that only matter at open time and must not be replayed.
const OPEN_TIME_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

/// What went wrong, for the error pipe.
pub type ChildResult<T> = Result<T, String>;

fn err(fd: &Fd<'_>, what: &str, e: impl std::fmt::Display) -> String {
    format!("fd {} ({}): {what}: {e}", fd.fd, fd.path)
}

/// Status flags of the open file description to set with `F_SETFL` (what `open` cannot set
/// reliably, e.g. `O_NONBLOCK` on a pipe end).
pub(super) fn status_flags(open_flags: u32) -> i32 {
    (open_flags as i32) & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME)
}

/// Recreates every fd of the image at its number. `helper` (the error pipe) is moved above the
/// image's range and stays open; it is returned, also with an error, so that the error can still
/// be reported (the caller closes it just before stopping). `tty` is the terminal to use for
/// TTY fds (`--shell-job`).
pub fn restore_fds(
    fds: &[Fd<'_>],
    pipes: &[PipeData<'_>],
    helper: OwnedFd,
    tty: Option<&[u8]>,
) -> Result<OwnedFd, (String, Option<OwnedFd>)> {
    restore_fds_keeping(fds, pipes, helper, tty, &[], &[], &Sockets::default())
}

/// How the UNIX_SOCKET fds of a process are made (spec §3.13, [`super::unix_socket`]).
#[derive(Debug, Default)]
pub struct Sockets<'a> {
    /// Inodes of the sockets the tree's pool holds: placed by [`super::tree::place_shared`],
    /// not made here.
    pub pooled: &'a [u64],
    /// Names outside the image that sockets may connect to again (`--external-unix`).
    pub external: &'a [Vec<u8>],
    /// The image's SCM records (spec §3.23): the files and credentials in flight with queued
    /// messages, sent again by the process that makes their socket ([`super::scm`]).
    pub scm: &'a [crak_format::record::scm::Scm<'a>],
    /// Saved and live pids of the processes of the tree restored so far, for credentials.
    pub pids: &'a [(u32, i32)],
    /// The tree's pool: a file in flight it shares is taken from it.
    pub pool: Option<&'a super::tree::Pool>,
}

/// [`restore_fds`], leaving the inherited descriptors `keep` open too (they must lie above the
/// image's range: the objects a process tree shares, see [`super::tree`]). An fd whose open
/// file description is in `shared` (FD `description`, the object) gets that object instead of
/// a new one: a second listening socket could not bind the same address.
pub fn restore_fds_keeping(
    fds: &[Fd<'_>],
    pipes: &[PipeData<'_>],
    helper: OwnedFd,
    tty: Option<&[u8]>,
    keep: &[RawFd],
    shared: &[(u32, &OwnedFd)],
    sockets: &Sockets<'_>,
) -> Result<OwnedFd, (String, Option<OwnedFd>)> {
    let max_target = fds.iter().map(|f| f.fd as i32).max().unwrap_or(-1);
    let base = max_target.saturating_add(1).max(3);
    // The helper goes above the image's range; temporaries are numbered from there upwards too.
    let moved = match fdops::dup_at_least(helper.as_fd(), base) {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("moving the error pipe above fd {max_target}: {e}");
            return Err((msg, Some(helper)));
        }
    };
    // Close the old number now: dropped later, it could close a restored fd of that number.
    drop(helper);
    let tree = Tree {
        keep,
        shared,
        sockets,
    };
    match place_all(fds, pipes, &moved, base, tty, &tree) {
        Ok(()) => Ok(moved),
        Err(msg) => Err((msg, Some(moved))),
    }
}

/// What a process of a tree inherits for its fds (see [`restore_fds_keeping`]).
struct Tree<'a, 'b> {
    keep: &'a [RawFd],
    shared: &'a [(u32, &'b OwnedFd)],
    sockets: &'a Sockets<'a>,
}

fn place_all(
    fds: &[Fd<'_>],
    pipes: &[PipeData<'_>],
    helper: &OwnedFd,
    base: i32,
    tty: Option<&[u8]>,
    tree: &Tree<'_, '_>,
) -> ChildResult<()> {
    let Tree {
        keep,
        shared,
        sockets,
    } = *tree;
    let helper_no = std::os::fd::AsRawFd::as_raw_fd(helper);
    // Close everything inherited but the helper and `keep`.
    let inherited: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for n in inherited {
        if n != helper_no && !keep.contains(&n) {
            // The listing's own directory fd is already closed: EBADF is fine.
            let _ = fdops::close_inherited(n);
        }
    }

    // Create every object at a temporary number >= base.
    let mut temps: Vec<(u32, bool, OwnedFd)> = Vec::with_capacity(fds.len());
    let mut pipe_ends: HashMap<(u64, bool), OwnedFd> = HashMap::new();
    let mut sock_ends: HashMap<u64, OwnedFd> = HashMap::new();
    let mut memfds: HashMap<u64, OwnedFd> = HashMap::new();
    // Fds sharing an open file description get the one their group opened first.
    let mut descriptions: HashMap<u32, OwnedFd> = HashMap::new();
    // The files in flight on the sockets this process makes (spec §3.23), and every FD layout
    // a socket's peer may be found in.
    let mut mine = super::scm::socket_inos(fds);
    mine.retain(|i| !sockets.pooled.contains(i));
    let scm = super::scm::records_for(sockets.scm, &mine);
    let all: Vec<Fd<'_>> = fds
        .iter()
        .cloned()
        .chain(scm.iter().flat_map(|s| s.files.iter().cloned()))
        .collect();
    let mut make = |f: &Fd<'_>, flight: &super::scm::InFlight| -> ChildResult<OwnedFd> {
        let pooled = shared
            .iter()
            .find(|(d, _)| f.description != 0 && *d == f.description);
        let obj = match (descriptions.get(&f.description), pooled) {
            (Some(o), _) if f.description != 0 => o.try_clone().map_err(|e| err(f, "dup", e))?,
            (_, Some((_, o))) => o.try_clone().map_err(|e| err(f, "dup", e))?,
            _ if f.kind == FdKind::UnixSocket => {
                unix_socket(f, fds, &mut sock_ends, sockets, flight)?
            }
            _ => open_one(
                f,
                &all,
                pipes,
                &mut Objects {
                    pipe_ends: &mut pipe_ends,
                    sock_ends: &mut sock_ends,
                    memfds: &mut memfds,
                    flight,
                },
                tty,
            )?,
        };
        if f.description != 0 && !descriptions.contains_key(&f.description) {
            let keep = obj.try_clone().map_err(|e| err(f, "dup", e))?;
            descriptions.insert(f.description, keep);
        }
        Ok(obj)
    };
    let mut flight = super::scm::InFlight::default();
    let own = fds.first().map(|f| f.pid);
    for s in &scm {
        let mut files = Vec::with_capacity(s.files.len());
        for f in &s.files {
            let pooled = sockets.pool.and_then(|p| p.in_flight_object(f));
            let obj = match pooled {
                Some(o) => o.try_clone().map_err(|e| e.to_string()),
                None => make(f, &super::scm::InFlight::default()),
            }
            .map_err(|e| {
                format!(
                    "a file in flight with message {} of socket {}: {e}",
                    s.message, s.socket
                )
            })?;
            files.push(obj);
        }
        let creds = s.has_credentials().then(|| crate::sys::unixsock::Ucred {
            pid: super::scm::live_pid(s.pid, own, sockets.pids),
            uid: s.uid,
            gid: s.gid,
        });
        flight.insert(s.socket, s.message as usize, files, creds);
    }
    let mut order: Vec<&Fd<'_>> = fds.iter().collect();
    order.sort_by_key(|f| f.fd);
    for f in order {
        let obj = make(f, &flight)?;
        let t = fdops::dup_at_least(obj.as_fd(), base).map_err(|e| err(f, "dup", e))?;
        drop(obj);
        temps.push((f.fd, f.fd_flags & FD_CLOEXEC != 0, t));
    }
    // Every object exists and every queue is refilled: the restorer's copies go before any
    // fd is placed (a copy may sit at a number the image uses).
    drop(flight);
    drop(pipe_ends);
    drop(sock_ends);
    drop(memfds);
    drop(descriptions);
    for (target, cloexec, t) in &temps {
        fdops::place_at(t.as_fd(), *target as RawFd, *cloexec)
            .map_err(|e| format!("fd {target}: dup3: {e}"))?;
    }
    Ok(())
}

/// Objects several fds of a process can name, made once: pipes (by id and end), Unix socket
/// ends and memfds (by inode).
struct Objects<'m> {
    pipe_ends: &'m mut HashMap<(u64, bool), OwnedFd>,
    sock_ends: &'m mut HashMap<u64, OwnedFd>,
    memfds: &'m mut HashMap<u64, OwnedFd>,
    /// Files and credentials to send with the messages of the sockets made here.
    flight: &'m super::scm::InFlight,
}

fn open_one(
    f: &Fd<'_>,
    all: &[Fd<'_>],
    pipes: &[PipeData<'_>],
    objects: &mut Objects<'_>,
    tty: Option<&[u8]>,
) -> ChildResult<OwnedFd> {
    let pipe_ends = &mut *objects.pipe_ends;
    let sock_ends = &mut *objects.sock_ends;
    let flags = (f.open_flags as i32) & !OPEN_TIME_FLAGS & !libc::O_CLOEXEC;
    match f.kind {
        FdKind::Reg if f.deleted => open_deleted(f, flags),
        FdKind::Reg | FdKind::Chr => {
            // O_NONBLOCK while opening: a device must not block the restore; the saved status
            // flags are set right after.
            let fd = open_image_path(f.path.as_bytes(), flags | libc::O_NONBLOCK, 0)
                .map_err(|e| err(f, "open", e))?;
            same_object(f, &fd)?;
            fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
                .map_err(|e| err(f, "F_SETFL", e))?;
            if f.kind == FdKind::Reg && f.mode & libc::S_IFMT != libc::S_IFDIR {
                fdops::seek_to(fd.as_fd(), f.pos).map_err(|e| err(f, "lseek", e))?;
            }
            Ok(fd)
        }
        FdKind::Tty => {
            // `/dev/tty` names the controlling terminal, which a shell job keeps; any other
            // terminal path is replaced by the restorer's own terminal.
            let path = if f.path.as_bytes() == b"/dev/tty" {
                b"/dev/tty".as_slice()
            } else {
                tty.ok_or_else(|| err(f, "terminal", "no terminal to attach to"))?
            };
            // The terminal is crak-restore's own, given by its choice (`--shell-job`): opened
            // with crak-restore's identity, not the image's.
            let fd = crate::sys::fsid::as_effective(|| {
                fdops::open_raw(path, flags | libc::O_NONBLOCK | libc::O_NOCTTY, 0)
            })
            .map_err(|e| err(f, "open terminal", e))?;
            fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
                .map_err(|e| err(f, "F_SETFL", e))?;
            Ok(fd)
        }
        FdKind::Fifo => open_fifo(f, flags, pipes),
        FdKind::Pipe => open_pipe_end(f, pipes, pipe_ends),
        FdKind::Eventfd | FdKind::Signalfd | FdKind::Timerfd | FdKind::Epoll => open_anon(f),
        FdKind::Inotify => open_inotify(f),
        FdKind::Memfd => open_memfd(f, flags, objects.memfds),
        FdKind::Tcp | FdKind::Udp => super::net::open(f),
        FdKind::UnixSocket => Err(err(f, "socket", "shared open file of a Unix socket")),
        FdKind::Unix => {
            if !sock_ends.contains_key(&f.ino) {
                let (mine, peer_ino, peer) = unix_pair(f, all, objects.flight)?;
                sock_ends.insert(f.ino, mine);
                if let Some(p) = peer {
                    sock_ends.insert(peer_ino, p);
                }
            }
            let end = sock_ends
                .get(&f.ino)
                .ok_or_else(|| err(f, "socket", "lost end"))?;
            fdops::set_status_flags(end.as_fd(), status_flags(f.open_flags))
                .map_err(|e| err(f, "F_SETFL", e))?;
            end.try_clone().map_err(|e| err(f, "dup socket", e))
        }
    }
}

/// A UNIX_SOCKET fd: the socket of its group, made with the whole group on the group's first
/// fd ([`super::unix_socket`]); a placeholder for a socket of the tree's pool, which
/// [`super::tree::place_shared`] puts in its place.
fn unix_socket(
    f: &Fd<'_>,
    all: &[Fd<'_>],
    sock_ends: &mut HashMap<u64, OwnedFd>,
    sockets: &Sockets<'_>,
    flight: &super::scm::InFlight,
) -> ChildResult<OwnedFd> {
    use super::unix_socket as us;
    if sockets.pooled.contains(&f.ino) {
        return crate::sys::unixsock::socket(libc::SOCK_STREAM).map_err(|e| err(f, "socket", e));
    }
    if !sock_ends.contains_key(&f.ino) {
        let mine: Vec<&Fd<'_>> = all
            .iter()
            .filter(|g| g.kind == FdKind::UnixSocket && !sockets.pooled.contains(&g.ino))
            .collect();
        let group = us::groups(&mine)
            .into_iter()
            .find(|g| g.contains(&f.ino))
            .unwrap_or_default();
        let made = us::make_group(&group, &mine, sockets.external, flight)
            .map_err(|e| err(f, "Unix socket", e))?;
        sock_ends.extend(made);
    }
    let end = sock_ends
        .get(&f.ino)
        .ok_or_else(|| err(f, "socket", "lost"))?;
    fdops::set_status_flags(end.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    end.try_clone().map_err(|e| err(f, "dup socket", e))
}

/// Opens the object of `f` alone (for a description a process tree shares, see
/// [`super::tree`]).
pub(super) fn open_shared(
    f: &Fd<'_>,
    pipes: &[PipeData<'_>],
    tty: Option<&[u8]>,
) -> ChildResult<OwnedFd> {
    open_one(
        f,
        &[],
        pipes,
        &mut Objects {
            pipe_ends: &mut HashMap::new(),
            sock_ends: &mut HashMap::new(),
            memfds: &mut HashMap::new(),
            flight: &super::scm::InFlight::default(),
        },
        tty,
    )
}

/// The queue and socket type of a Unix socket fd's state.
fn unix_state(f: &Fd<'_>) -> ChildResult<(i32, u64, Vec<Vec<u8>>)> {
    match FdState::decode(f.kind, f.contents.as_bytes()).map_err(|e| err(f, "state", e))? {
        Some(FdState::Unix {
            sock_type,
            peer,
            queue,
        }) => Ok((sock_type as i32, peer, queue)),
        _ => Err(err(f, "state", "not a Unix socket")),
    }
}

/// A connected pair of Unix sockets for `f` and its peer, each holding what was queued on it
/// (data queued on one end is sent from the other). The peer's queue comes from its FD record
/// in `others` (any process's); without one, the peer end is returned with nothing queued for
/// it. Returns (f's end, the peer's inode, the peer's end).
pub(super) fn unix_pair(
    f: &Fd<'_>,
    others: &[Fd<'_>],
    flight: &super::scm::InFlight,
) -> ChildResult<(OwnedFd, u64, Option<OwnedFd>)> {
    use crate::sys::unixsock;
    let (sock_type, peer_ino, queue) = unix_state(f)?;
    let (mine, theirs) = unixsock::socketpair(sock_type).map_err(|e| err(f, "socketpair", e))?;
    let stream = sock_type == libc::SOCK_STREAM;
    flight
        .receiver(f.ino, mine.as_fd())
        .map_err(|e| err(f, "SO_PASSCRED", e))?;
    for (i, m) in queue.iter().enumerate() {
        flight
            .send(theirs.as_fd(), f.ino, i, m, stream, None)
            .map_err(|e| err(f, &format!("refilling the socket's queue (message {i})"), e))?;
    }
    if let Some(p) = others
        .iter()
        .find(|g| g.kind == FdKind::Unix && g.ino == peer_ino)
    {
        let (_, _, pq) = unix_state(p)?;
        flight
            .receiver(peer_ino, theirs.as_fd())
            .map_err(|e| err(p, "SO_PASSCRED", e))?;
        for (i, m) in pq.iter().enumerate() {
            flight
                .send(mine.as_fd(), peer_ino, i, m, stream, None)
                .map_err(|e| err(p, &format!("refilling the socket's queue (message {i})"), e))?;
        }
    }
    Ok((mine, peer_ino, Some(theirs)))
}

/// An eventfd, signalfd, timerfd or (empty) epoll instance with the saved state; epoll
/// registrations are added once every fd is at its number ([`register_epoll`]).
fn open_anon(f: &Fd<'_>) -> ChildResult<OwnedFd> {
    use crate::sys::anonfd;
    let state = FdState::decode(f.kind, f.contents.as_bytes())
        .map_err(|e| err(f, "state", e))?
        .ok_or_else(|| err(f, "state", "missing"))?;
    let fd = match state {
        FdState::Eventfd { count, flags } => anonfd::eventfd(count, flags & EVENTFD_SEMAPHORE != 0)
            .map_err(|e| err(f, "eventfd", e))?,
        FdState::Signalfd { mask } => anonfd::signalfd(mask).map_err(|e| err(f, "signalfd", e))?,
        FdState::Timerfd {
            clockid,
            value_ns,
            interval_ns,
            ticks,
            ..
        } => {
            // A periodic timer that expired and waits for its ticks to be read shows no time
            // left: it goes on one period later.
            let value_ns = if value_ns == 0 { interval_ns } else { value_ns };
            anonfd::timerfd(clockid, value_ns, interval_ns, ticks)
                .map_err(|e| err(f, "timerfd", e))?
        }
        FdState::Epoll(_) => anonfd::epoll().map_err(|e| err(f, "epoll_create1", e))?,
        FdState::Unix { .. }
        | FdState::UnixSocket(_)
        | FdState::Tcp(_)
        | FdState::Udp(_)
        | FdState::Inotify(_)
        | FdState::Memfd { .. } => {
            return Err(err(
                f,
                "state",
                "not an eventfd, signalfd, timerfd or epoll",
            ))
        }
    };
    fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    Ok(fd)
}

/// A memfd (spec §3.13): created with its name and flags, filled with its extents, given its
/// size, then sealed (seals may forbid the writes that come before). Another fd of the process
/// on the same memfd (same inode) opens it again through the first: the same object, its own
/// open file description, as a reopen through `/proc` made it.
fn open_memfd(f: &Fd<'_>, flags: i32, memfds: &mut HashMap<u64, OwnedFd>) -> ChildResult<OwnedFd> {
    use crate::sys::objects;
    use crak_format::record::fd::MFD_HUGETLB;
    use std::os::unix::fs::FileExt;
    if let std::collections::hash_map::Entry::Vacant(slot) = memfds.entry(f.ino) {
        let Some(FdState::Memfd {
            flags: mflags,
            seals,
            size,
            name,
            extents,
        }) = FdState::decode(f.kind, f.contents.as_bytes()).map_err(|e| err(f, "state", e))?
        else {
            return Err(err(f, "state", "not a memfd"));
        };
        if mflags & MFD_HUGETLB != 0 {
            return Err(err(f, "memfd", "hugetlb memfds are not restored"));
        }
        let m = objects::memfd_create(&name, mflags).map_err(|e| err(f, "memfd_create", e))?;
        let file = std::fs::File::from(m.try_clone().map_err(|e| err(f, "dup", e))?);
        file.set_len(size).map_err(|e| err(f, "ftruncate", e))?;
        for e in &extents {
            file.write_all_at(&e.data, e.offset)
                .map_err(|x| err(f, "writing the memfd's contents", x))?;
        }
        // F_SEAL_SEAL is there from the start when sealing was not allowed.
        let seals = if mflags & crak_format::record::fd::MFD_ALLOW_SEALING == 0 {
            0
        } else {
            seals
        };
        if seals != 0 {
            objects::add_seals(m.as_fd(), seals).map_err(|e| err(f, "F_ADD_SEALS", e))?;
        }
        slot.insert(m);
    }
    let m = memfds.get(&f.ino).ok_or_else(|| err(f, "memfd", "lost"))?;
    let me = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(m));
    let fd = fdops::open_raw(me.as_bytes(), flags & !libc::O_CREAT, 0)
        .map_err(|e| err(f, "reopening the memfd", e))?;
    fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    fdops::seek_to(fd.as_fd(), f.pos).map_err(|e| err(f, "lseek", e))?;
    Ok(fd)
}

/// Descriptor numbers an inotify instance may skip to reach a saved watch descriptor.
const MAX_WD_SKIP: u32 = 1 << 16;

/// An inotify instance with its watches at their saved descriptors (spec §3.13). The kernel
/// hands descriptors out in increasing order and does not reuse freed ones soon: a watch that
/// gets a lower number than saved is removed and added again until it gets its own. Removing
/// one queues an `IN_IGNORED` event, so the queue is drained before the instance is handed
/// over (it was empty at capture). Each watched path must still be the saved inode.
fn open_inotify(f: &Fd<'_>) -> ChildResult<OwnedFd> {
    use crate::sys::objects;
    use std::os::unix::fs::MetadataExt;
    let Some(FdState::Inotify(watches)) =
        FdState::decode(f.kind, f.contents.as_bytes()).map_err(|e| err(f, "state", e))?
    else {
        return Err(err(f, "state", "not an inotify instance"));
    };
    let fd = objects::inotify_init(libc::IN_NONBLOCK).map_err(|e| err(f, "inotify_init1", e))?;
    for w in &watches {
        let path = bytes_path(&w.path);
        let shown = path.display();
        let md = std::fs::symlink_metadata(path)
            .map_err(|e| err(f, &format!("watched path {shown}"), e))?;
        if !super::plan::dev_matches(w.dev, md.dev()) || md.ino() != w.ino {
            return Err(err(
                f,
                &format!("watched path {shown}"),
                "another file than the image names is at this path now",
            ));
        }
        loop {
            let got = objects::inotify_add_watch(fd.as_fd(), &w.path, w.mask | libc::IN_DONT_FOLLOW)
                .map_err(|e| err(f, &format!("inotify_add_watch({shown})"), e))?
                as u32;
            if got == w.wd {
                break;
            }
            if got > w.wd || w.wd - got > MAX_WD_SKIP {
                return Err(err(
                    f,
                    &format!("inotify_add_watch({shown})"),
                    format!("got watch descriptor {got}, the image has {}", w.wd),
                ));
            }
            objects::inotify_rm_watch(fd.as_fd(), got as i32)
                .map_err(|e| err(f, "inotify_rm_watch", e))?;
        }
    }
    let mut buf = vec![0u8; 4096];
    loop {
        match std::fs::File::from(fd.try_clone().map_err(|e| err(f, "dup", e))?).read(&mut buf) {
            Ok(n) if n > 0 => continue,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(err(f, "draining IN_IGNORED events", e)),
        }
    }
    fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    Ok(fd)
}

/// Registers the saved fds of every epoll instance, by their final numbers: once every fd,
/// shared pipes included, is in place.
pub(super) fn register_epoll(fds: &[Fd<'_>]) -> ChildResult<()> {
    for f in fds.iter().filter(|f| f.kind == FdKind::Epoll) {
        let Ok(Some(FdState::Epoll(entries))) = FdState::decode(f.kind, f.contents.as_bytes())
        else {
            return Err(err(f, "epoll state", "undecodable"));
        };
        for e in entries {
            crate::sys::anonfd::epoll_add(f.fd as RawFd, e.fd as RawFd, e.events, e.data)
                .map_err(|x| err(f, &format!("epoll_ctl(ADD, fd {})", e.fd), x))?;
        }
    }
    Ok(())
}

/// A deleted-but-open file: recreated from its saved contents at its old path (so that
/// `/proc/PID/fd` shows the same `... (deleted)` name), opened with the saved flags, then
/// unlinked. When that path is taken by a new file, an unnamed `O_TMPFILE` file in the same
/// directory is used instead. The file is created owner-only (`0600`, `O_EXCL`, no symbolic
/// link on the way), filled, reopened through its own descriptor, and only then given the
/// saved permission bits, without set-user-ID, set-group-ID and sticky bits: a restore never
/// leaves a set-ID file behind, even for the moment the file has a name.
fn open_deleted(f: &Fd<'_>, flags: i32) -> ChildResult<OwnedFd> {
    let mode = f.mode & 0o777;
    let path = f.path.as_bytes();
    let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
    let flags = flags & !libc::O_TMPFILE;
    let (w, named) = match open_image_path(path, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600)
    {
        Ok(w) => (w, true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let dir = bytes_path(path)
                .parent()
                .ok_or_else(|| err(f, "deleted file", "no directory"))?;
            use std::os::unix::ffi::OsStrExt;
            let w = open_image_path(
                dir.as_os_str().as_bytes(),
                libc::O_TMPFILE | libc::O_RDWR,
                0o600,
            )
            .map_err(|e| err(f, "O_TMPFILE", e))?;
            (w, false)
        }
        Err(e) => return Err(err(f, "recreating the deleted file", e)),
    };
    let filled = write_all(&w, f.contents.as_bytes());
    // Reopened through the descriptor: the same inode whatever the path names by now.
    let me = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&w));
    let opened = fdops::open_raw(me.as_bytes(), flags, 0);
    if named {
        let _ = std::fs::remove_file(bytes_path(path));
    }
    filled.map_err(|e| err(f, "writing the deleted file's contents", e))?;
    let fd = opened.map_err(|e| err(f, "reopening the deleted file", e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::File::from(w);
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(f, "fchmod", e))?;
    }
    fdops::seek_to(fd.as_fd(), f.pos).map_err(|e| err(f, "lseek", e))?;
    Ok(fd)
}

/// Opens a path the image names: `openat2` refusing every symbolic link on the way
/// ([`crate::sys::openat2`]); see the module doc.
fn open_image_path(path: &[u8], flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    crate::sys::openat2::open_no_symlinks(path, flags, mode).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(
                e.kind(),
                format!("{e}: a symbolic link is on the path, which the image names resolved"),
            )
        } else {
            e
        }
    })
}

/// Checks that an opened regular file or device is the one the image names (device and inode,
/// or device number), so that a file swapped in after the plan's checks is not handed over.
fn same_object(f: &Fd<'_>, fd: &OwnedFd) -> ChildResult<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::File::from(fd.try_clone().map_err(|e| err(f, "dup", e))?)
        .metadata()
        .map_err(|e| err(f, "fstat", e))?;
    let same = match f.kind {
        FdKind::Chr => {
            md.file_type().is_char_device() && super::plan::dev_matches(f.rdev, md.rdev())
        }
        _ => super::plan::dev_matches(f.dev, md.dev()) && md.ino() == f.ino,
    };
    if same {
        Ok(())
    } else {
        Err(err(
            f,
            "open",
            "another file than the image names is at this path now",
        ))
    }
}

fn write_all(fd: &OwnedFd, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.write_all(data)
}

fn bytes_path(p: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(p))
}

/// A FIFO, reopened by path without blocking: a temporary read-write descriptor keeps both
/// sides present while the end is opened, and refills the saved bytes.
fn open_fifo(f: &Fd<'_>, flags: i32, pipes: &[PipeData<'_>]) -> ChildResult<OwnedFd> {
    let path = f.path.as_bytes();
    let rw = open_image_path(path, libc::O_RDWR | libc::O_NONBLOCK, 0)
        .map_err(|e| err(f, "open FIFO", e))?;
    let fd =
        open_image_path(path, flags | libc::O_NONBLOCK, 0).map_err(|e| err(f, "open FIFO", e))?;
    {
        use std::os::unix::fs::FileTypeExt;
        let md = std::fs::File::from(fd.try_clone().map_err(|e| err(f, "dup", e))?)
            .metadata()
            .map_err(|e| err(f, "fstat", e))?;
        if !md.file_type().is_fifo() {
            return Err(err(f, "open FIFO", "no FIFO is at this path now"));
        }
    }
    fdops::set_status_flags(fd.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    if let Some(p) = pipes.iter().find(|p| p.pipe_id == f.ino) {
        if !p.data.is_empty() {
            let _ = fdops::set_pipe_size(rw.as_fd(), p.capacity as i32);
            write_all(&rw, p.data.as_bytes()).map_err(|e| err(f, "refilling FIFO", e))?;
        }
    }
    Ok(fd)
}

/// Gives a new pipe, by its write end `w`, the capacity and the contents saved in `p` (spec
/// §3.14). `err` makes the error of a step from its name and cause.
pub(super) fn refill_pipe(
    w: &OwnedFd,
    p: &PipeData<'_>,
    err: impl Fn(&str, std::io::Error) -> String,
) -> ChildResult<()> {
    if p.capacity > 0 {
        let cap = i32::try_from(p.capacity).unwrap_or(i32::MAX);
        fdops::set_pipe_size(w.as_fd(), cap).map_err(|e| err("F_SETPIPE_SZ", e))?;
    }
    // Non-blocking while refilling: data beyond the capacity must fail, not hang.
    fdops::set_status_flags(w.as_fd(), libc::O_NONBLOCK).map_err(|e| err("F_SETFL", e))?;
    write_all(w, p.data.as_bytes()).map_err(|e| err("refilling pipe", e))?;
    fdops::set_status_flags(w.as_fd(), 0).map_err(|e| err("F_SETFL", e))
}

/// One end of a pipe. Both ends of a pipe (same id) come from one `pipe2`; the first fd that
/// names the pipe creates it, sets its capacity and refills its saved bytes. A second fd on
/// the same end shares the same open file description, as `dup` would have made it.
fn open_pipe_end(
    f: &Fd<'_>,
    pipes: &[PipeData<'_>],
    pipe_ends: &mut HashMap<(u64, bool), OwnedFd>,
) -> ChildResult<OwnedFd> {
    let is_write = (f.open_flags as i32) & libc::O_ACCMODE == libc::O_WRONLY;
    if !pipe_ends.contains_key(&(f.ino, is_write)) {
        let (r, w) = std::io::pipe().map_err(|e| err(f, "pipe2", e))?;
        let r = OwnedFd::from(r);
        let w = OwnedFd::from(w);
        if let Some(p) = pipes.iter().find(|p| p.pipe_id == f.ino) {
            refill_pipe(&w, p, |what, e| err(f, what, e))?;
        }
        pipe_ends.insert((f.ino, false), r);
        pipe_ends.insert((f.ino, true), w);
    }
    // O_NONBLOCK and O_APPEND belong to each end's open file description; the fd naming the
    // end sets them. An end no fd of the image names (held only outside the process) is closed
    // once every fd is placed: a lone read end then sees end-of-file after the saved bytes,
    // a lone write end gets EPIPE.
    let mine = pipe_ends
        .get(&(f.ino, is_write))
        .ok_or_else(|| err(f, "pipe", "lost end"))?;
    fdops::set_status_flags(mine.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    mine.try_clone().map_err(|e| err(f, "dup pipe end", e))
}

/// `openat2(AT_FDCWD, path, flags | O_CLOEXEC)` run by the stopped child (stage 3: mapped files
/// and the exe), refusing every symbolic link on the way like the child's own opens; the child
/// has the image's filesystem identity. Returns the new fd in the child.
pub fn remote_open(
    r: &mut super::mm::Remote,
    path: &[u8],
    flags: i32,
) -> Result<u64, super::RestoreError> {
    use crate::sys::openat2::{open_how_bytes, RESOLVE_STRICT};
    let mut z = path.to_vec();
    z.push(0);
    let how = open_how_bytes(flags | libc::O_CLOEXEC, 0, RESOLVE_STRICT);
    // The path at the start of the scratch area, the open_how after it (8-byte aligned).
    let how_at = (z.len() as u64).div_ceil(8) * 8;
    let a = r.put(0, &z)?;
    let h = r.put(how_at, &how)?;
    let shown = String::from_utf8_lossy(path).into_owned();
    r.call(
        || format!("openat2({shown}, RESOLVE_NO_SYMLINKS)"),
        libc::SYS_openat2,
        &[libc::AT_FDCWD as u64, a, h, how.len() as u64],
    )
}
