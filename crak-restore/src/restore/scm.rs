//! Files and credentials in flight with queued Unix socket messages (SCM records, spec §3.23,
//! format 1.3).
//!
//! The process that makes a socket refills its queue (its peer sends the saved messages, see
//! [`super::files`] and [`super::unix_socket`]). Before it makes any of its sockets, it opens
//! the files in flight on them ([`InFlight`]) with the same code and the same tables as its
//! own fds, so that a file in flight that is also one of its fds (the same pipe, socket pair or
//! memfd, the same open file description) comes back as the same object. Each message that
//! carried files or credentials is sent again with them (`SCM_RIGHTS`, `SCM_CREDENTIALS`): the
//! kernel ends a read after the bytes carrying files, so each such message stays apart from
//! what follows. On a stream, where a read that reaches bytes carrying files also returns the
//! plain bytes before them (and a capture cannot tell where those end), the files go with the
//! message's last byte, the bytes before it with its credentials alone: a read of the whole
//! message gets them as before, a read that stops short gets them no earlier than it did. The
//! restorer's copies are closed once every socket is made; the files live on in the queues.
//!
//! Credentials: the saved pid is the sender's as the receiver saw it; a process of the image
//! is given its live pid (its own, or another's under `--new-pid` once that one exists), any
//! other pid is sent as saved. The kernel refuses to send a pid no process has (a sender that
//! exited before the capture, a process of the tree not made yet): a stand-in process takes
//! that pid (`clone3` with `set_tid`) while the message is sent, and is killed and reaped
//! right after; the message keeps the pid, as it kept an exited sender's. A socket whose
//! messages carry credentials gets `SO_PASSCRED` again before its queue is refilled.

use super::RestoreError;
use crate::sys::unixsock::{self, Ucred};
use crak_format::record::fd::{Fd, FdKind, FdState};
use crak_format::record::scm::Scm;
use crak_format::Image;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The files (opened by this process) and credentials to send with the saved messages of the
/// sockets this process makes, by (socket inode, message index).
#[derive(Debug, Default)]
pub struct InFlight {
    msgs: HashMap<(u64, usize), (Vec<OwnedFd>, Option<Ucred>)>,
    passcred: HashSet<u64>,
}

impl InFlight {
    /// Adds the ancillary data of message `index` of socket `ino`.
    pub(super) fn insert(
        &mut self,
        ino: u64,
        index: usize,
        fds: Vec<OwnedFd>,
        creds: Option<Ucred>,
    ) {
        if creds.is_some() {
            self.passcred.insert(ino);
        }
        self.msgs.insert((ino, index), (fds, creds));
    }

    /// Before socket `ino`'s queue is refilled through its end `fd`: `SO_PASSCRED` when its
    /// messages carry credentials (the receiver had it at capture).
    pub fn receiver(&self, ino: u64, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.passcred.contains(&ino) {
            unixsock::set_passcred(fd)?;
        }
        Ok(())
    }

    /// Sends message `index` of socket `ino`'s queue from `from` (to its peer, or to the name
    /// `to`), with its files and credentials when it carried some.
    pub fn send(
        &self,
        from: BorrowedFd<'_>,
        ino: u64,
        index: usize,
        data: &[u8],
        stream: bool,
        to: Option<&[u8]>,
    ) -> io::Result<()> {
        match self.msgs.get(&(ino, index)) {
            Some((fds, creds)) => {
                let files: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                // A stream's files go with its last byte (see the module documentation).
                let split = if stream && !files.is_empty() {
                    data.len().saturating_sub(1)
                } else {
                    0
                };
                let (plain, carrying) = data.split_at(split);
                let send = || {
                    if !plain.is_empty() {
                        unixsock::send_ancillary(from, plain, true, &[], *creds, None)?;
                    }
                    unixsock::send_ancillary(from, carrying, stream, &files, *creds, to)
                };
                match (send(), creds) {
                    // No process has the pid (the sender is gone, or is a process of the tree
                    // not made yet): a stand-in holds it while the message is sent. The message
                    // keeps the pid after the stand-in ends, as it kept a sender's that exited.
                    (Err(e), Some(c)) if e.raw_os_error() == Some(libc::ESRCH) => {
                        with_stand_in(c.pid, send)
                    }
                    (r, _) => r,
                }
            }
            None => match to {
                Some(name) => unixsock::send_to(from, data, name),
                None => unixsock::send_all(from, data, stream),
            },
        }
    }
}

/// Runs `f` while a stand-in process holds `pid`, for credentials that name a pid no process
/// has (the kernel refuses to send those); the stand-in is killed and reaped after.
fn with_stand_in(pid: i32, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    use crate::sys::ptrace;
    let h = crate::sys::clone::clone3_stand_in(pid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("its credentials name pid {pid}, which no process has, and no process could take it: {e}"),
        )
    })?;
    let r = f();
    let _ = crate::sys::process::kill(h, libc::SIGKILL);
    loop {
        match ptrace::waitpid(h) {
            Ok(s) if s.is_gone() => break,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    r
}

/// The SCM records whose socket is one of `inos`.
pub fn records_for<'a, 'd>(scm: &'a [Scm<'d>], inos: &HashSet<u64>) -> Vec<&'a Scm<'d>> {
    scm.iter().filter(|s| inos.contains(&s.socket)).collect()
}

/// The live pid to send for a saved one: this process's own (saved as `own`), another
/// process's from `pids` (saved, live), or the saved one.
pub fn live_pid(saved: u32, own: Option<u32>, pids: &[(u32, i32)]) -> i32 {
    if own == Some(saved) && saved != 0 {
        return std::process::id() as i32;
    }
    pids.iter()
        .find(|(s, _)| *s == saved)
        .map_or(saved as i32, |(_, l)| *l)
}

/// Checks, before anything is created, that the restorer can send every SCM record's files
/// and credentials: no other process of the tree holds a memfd in flight (pipes, socket pairs
/// and open file descriptions are shared through the tree's pool), the files are of kinds it
/// recreates in flight, and no socket in flight has a peer whose queue carries files or
/// credentials (it would be refilled before they exist).
pub fn check(
    image: &Image<'_>,
    shared_socks: &[(u64, u64)],
    shared_unix: &[Vec<u64>],
) -> Result<(), RestoreError> {
    if image.scm.is_empty() {
        return Ok(());
    }
    let named: HashSet<u64> = image.scm.iter().map(|s| s.socket).collect();
    for s in &image.scm {
        let at = || {
            format!(
                "the message {} queued on Unix socket {}",
                s.message, s.socket
            )
        };
        let pooled = shared_socks
            .iter()
            .any(|&(a, b)| a == s.socket || b == s.socket)
            || shared_unix.iter().any(|g| g.contains(&s.socket));
        // The process that makes the socket, and so opens the files in flight on it (the
        // root, for the tree's pool).
        let maker = if pooled {
            None
        } else {
            image
                .processes
                .iter()
                .find(|p| p.fds.iter().any(|f| f.ino == s.socket && is_socket(f.kind)))
                .map(|p| p.pid())
        };
        for (j, f) in s.files.iter().enumerate() {
            // Pipes, socket pairs and open file descriptions several processes hold go
            // through the tree's pool; a memfd would be made twice.
            let elsewhere = image
                .processes
                .iter()
                .filter(|p| pooled || Some(p.pid()) != maker)
                .find(|p| {
                    p.fds
                        .iter()
                        .any(|g| f.kind == FdKind::Memfd && g.kind == f.kind && g.ino == f.ino)
                });
            if let Some(p) = elsewhere {
                return Err(RestoreError::Refused(format!(
                    "{} carries, as file {j}, a memfd that process {} holds too: crak restores a memfd in flight only with the process holding its socket",
                    at(),
                    p.pid()
                )));
            }
            if matches!(f.kind, FdKind::Epoll | FdKind::Tcp | FdKind::UnixSocket) {
                return Err(RestoreError::Refused(format!(
                    "{} carries, as file {j}, a {:?} in flight, which crak does not restore",
                    at(),
                    f.kind
                )));
            }
            if let Ok(Some(FdState::Unix { peer, .. })) =
                FdState::decode(f.kind, f.contents.as_bytes())
            {
                if named.contains(&peer) {
                    return Err(RestoreError::Refused(format!(
                        "{} carries a Unix socket whose peer {peer} has files or credentials in flight itself",
                        at()
                    )));
                }
            }
        }
    }
    Ok(())
}

fn is_socket(k: FdKind) -> bool {
    matches!(k, FdKind::Unix | FdKind::UnixSocket)
}

/// The inodes of the UNIX and UNIX_SOCKET fds among `fds`.
pub fn socket_inos(fds: &[Fd<'_>]) -> HashSet<u64> {
    fds.iter()
        .filter(|f| is_socket(f.kind))
        .map(|f| f.ino)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crak_format::record::scm::SCM_CREDENTIALS;
    use crak_format::{Blob, Process};

    fn fd(pid: u32, n: u32, kind: FdKind, ino: u64) -> Fd<'static> {
        Fd {
            pid,
            fd: n,
            fd_flags: 0,
            kind,
            open_flags: 0,
            pos: 0,
            dev: 0,
            ino,
            rdev: 0,
            size: 0,
            mtime_ns: 0,
            mode: 0,
            deleted: false,
            path: "x".into(),
            contents: Blob::default(),
            description: 0,
        }
    }

    fn image() -> Image<'static> {
        let mut img = Image::new(crak_format::record::header::Header {
            arch: 62,
            page_size: 4096,
            capture_time_ns: 0,
            xsave_features: 0,
            xsave_size: 0,
            kernel_release: "k".into(),
            hostname: "h".into(),
            tool_version: "t".into(),
            special_mappings: vec![],
        });
        for pid in [10u32, 11] {
            let mut p = Process::new(crak_format::record::process::ProcessRecord {
                pid,
                tids: vec![pid],
                ..Default::default()
            });
            p.fds.push(fd(pid, 3, FdKind::Unix, 100 + u64::from(pid)));
            img.processes.push(p);
        }
        img.scm.push(Scm {
            socket: 110,
            message: 0,
            flags: SCM_CREDENTIALS,
            pid: 10,
            files: vec![fd(0, 0, FdKind::Pipe, 500)],
            ..Default::default()
        });
        img
    }

    #[test]
    fn a_memfd_in_flight_another_process_holds_is_refused() {
        let mut img = image();
        assert!(check(&img, &[], &[]).is_ok());
        // A pipe end in another process goes through the pool.
        img.processes[1].fds.push(fd(11, 4, FdKind::Pipe, 500));
        assert!(check(&img, &[], &[]).is_ok());
        assert!(check(&img, &[(110, 111)], &[]).is_ok());
        // A memfd: fine in the socket's process, refused in another.
        img.scm[0].files[0].kind = FdKind::Memfd;
        img.processes[0].fds.push(fd(10, 5, FdKind::Memfd, 500));
        assert!(check(&img, &[], &[]).is_ok());
        img.processes[1].fds.push(fd(11, 5, FdKind::Memfd, 500));
        let e = check(&img, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("process 11 holds too"), "{e}");
        // An epoll instance in flight.
        img.processes[1].fds.pop();
        img.scm[0].files[0].kind = FdKind::Epoll;
        assert!(check(&img, &[], &[]).is_err());
    }

    #[test]
    fn credentials_name_live_pids() {
        let me = std::process::id() as i32;
        assert_eq!(live_pid(42, Some(42), &[]), me);
        assert_eq!(live_pid(43, Some(42), &[(43, 7)]), 7);
        assert_eq!(live_pid(44, Some(42), &[(43, 7)]), 44);
        assert_eq!(live_pid(0, Some(0), &[]), 0);
    }
}
