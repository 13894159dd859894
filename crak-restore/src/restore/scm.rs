//! Files and credentials in flight with queued Unix socket messages (SCM records, spec §3.23,
//! format 1.3).
//!
//! The process that makes a socket refills its queue (its peer sends the saved messages, see
//! [`super::files`] and [`super::unix_socket`]). Before it makes any of its sockets, it opens
//! the files in flight on them ([`InFlight`]) with the same code and the same tables as its
//! own fds, so that a file in flight that is also one of its fds (the same pipe, socket pair or
//! memfd, the same open file description) comes back as the same object. Each message that
//! carried files or credentials is sent again with them (`SCM_RIGHTS`, `SCM_CREDENTIALS`) as
//! one `sendmsg`: the kernel does not merge a stream's data carrying files with what follows,
//! so each stays a message of its own. The restorer's copies are closed once every socket is
//! made; the files live on in the queues.
//!
//! Credentials: the saved pid is the sender's as the receiver saw it; a process of the image
//! is given its live pid (its own, or another's under `--new-pid` once that one exists), any
//! other pid is sent as saved, and the kernel refuses a pid no process has (`ESRCH`: the
//! restore fails naming the message). A socket whose messages carry credentials gets
//! `SO_PASSCRED` again before its queue is refilled.

use super::RestoreError;
use crate::sys::unixsock::{self, Ucred};
use crak_format::record::fd::{FdKind, FdState};
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
                unixsock::send_ancillary(from, data, stream, &files, *creds, to).map_err(
                    |e| match (e.raw_os_error(), creds) {
                        (Some(libc::ESRCH), Some(c)) => io::Error::new(
                            e.kind(),
                            format!("its credentials name pid {}, which no process has", c.pid),
                        ),
                        _ => e,
                    },
                )
            }
            None => match to {
                Some(name) => unixsock::send_to(from, data, name),
                None => unixsock::send_all(from, data, stream),
            },
        }
    }
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
/// and credentials: the socket is made by one process (not shared by several of a tree), the
/// files are of kinds it recreates in flight, and no socket in flight has a peer whose queue
/// carries files or credentials (it would be refilled before they exist).
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
        if shared_socks
            .iter()
            .any(|&(a, b)| a == s.socket || b == s.socket)
            || shared_unix.iter().any(|g| g.contains(&s.socket))
        {
            return Err(RestoreError::Refused(format!(
                "{} carries files or credentials, and the socket is shared by several processes of the tree: crak restores these only on a socket one process holds",
                at()
            )));
        }
        for (j, f) in s.files.iter().enumerate() {
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

/// The inodes of the UNIX and UNIX_SOCKET fds among `fds`.
pub fn socket_inos(fds: &[crak_format::record::fd::Fd<'_>]) -> HashSet<u64> {
    fds.iter()
        .filter(|f| matches!(f.kind, FdKind::Unix | FdKind::UnixSocket))
        .map(|f| f.ino)
        .collect()
}
