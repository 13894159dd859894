//! Unix sockets: what `sock_diag(7)` says about one (type, state, peer, queue length), its
//! queued data read without consuming it (`MSG_PEEK` with `SO_PEEK_OFF`), and `socketpair`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN`.
const UDIAG_SHOW: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One Unix socket as `sock_diag` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: u8,
    /// `TCP_*`-style state (1 established, 7 close, 10 listen).
    pub state: u8,
    /// Inode of the peer socket (0: none).
    pub peer: u64,
    /// Bytes (stream) or datagrams queued to be read; for a listener, connections waiting.
    pub rqueue: u32,
    /// For a listener, its backlog.
    pub wqueue: u32,
    /// Own address: the `sun_path` bytes (empty: unnamed). A path name's terminating NUL is
    /// not included.
    pub name: Vec<u8>,
    /// Inode of the socket file of a path name (0: none).
    pub vfs_ino: u64,
    /// Device of that file, as the kernel encodes it.
    pub vfs_dev: u32,
    /// Inodes of the connections waiting to be accepted (listeners).
    pub icons: Vec<u64>,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    pub shutdown: u8,
}

/// A name as `sock_diag` or `getsockname` gives it, without a path name's terminating NUL
/// (an abstract name, which starts with NUL, is kept whole).
fn trim_name(raw: &[u8]) -> Vec<u8> {
    match raw.first() {
        Some(0) | None => raw.to_vec(),
        Some(_) => {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            raw.get(..end).unwrap_or(raw).to_vec()
        }
    }
}

fn rd_u16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}

fn rd_u32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// Asks `sock_diag` about the Unix socket with inode `ino`.
pub fn diag(ino: u64) -> io::Result<UnixDiag> {
    let ino32 = u32::try_from(ino).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))?;
    // SAFETY: socket takes three integers.
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // nlmsghdr (16) + unix_diag_req (24).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&ino32.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: `req` is a readable buffer of its length; the kernel is the destination.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let b = buf.get(..n as usize).unwrap_or(&[]);
    let msg_type = rd_u16(b, 4);
    if msg_type == libc::NLMSG_ERROR as u16 {
        let errno = -(rd_u32(b, 16) as i32);
        return Err(io::Error::from_raw_os_error(if errno > 0 {
            errno
        } else {
            libc::EPROTO
        }));
    }
    if msg_type != SOCK_DIAG_BY_FAMILY || b.len() < 32 {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let msg_len = (rd_u32(b, 0) as usize).min(b.len());
    let mut d = UnixDiag {
        sock_type: b.get(17).copied().unwrap_or(0),
        state: b.get(18).copied().unwrap_or(0),
        ..UnixDiag::default()
    };
    // Attributes after unix_diag_msg (16 bytes after the 16-byte header), 4-byte aligned.
    let mut at = 32usize;
    while at + 4 <= msg_len {
        let len = rd_u16(b, at) as usize;
        let kind = rd_u16(b, at + 2);
        if len < 4 {
            break;
        }
        let payload = b.get(at + 4..(at + len).min(msg_len)).unwrap_or(&[]);
        match kind {
            UNIX_DIAG_NAME => d.name = trim_name(payload),
            UNIX_DIAG_VFS => {
                d.vfs_ino = u64::from(rd_u32(payload, 0));
                d.vfs_dev = rd_u32(payload, 4);
            }
            UNIX_DIAG_PEER => d.peer = u64::from(rd_u32(b, at + 4)),
            UNIX_DIAG_ICONS => {
                d.icons = payload
                    .chunks_exact(4)
                    .map(|c| u64::from(rd_u32(c, 0)))
                    .collect();
            }
            UNIX_DIAG_RQLEN => {
                d.rqueue = rd_u32(b, at + 4);
                d.wqueue = rd_u32(b, at + 8);
            }
            UNIX_DIAG_SHUTDOWN => d.shutdown = payload.first().copied().unwrap_or(0),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(d)
}

/// `SO_TYPE` of a socket.
pub fn sock_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    super::inet::get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

fn set_peek_off(fd: BorrowedFd<'_>, off: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is one int, valid for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What is queued to be read on a socket, without consuming it: one entry per datagram
/// (`stream` false) or one entry with every byte (`stream` true). `Err` with `EBADMSG` when
/// ancillary data (passed fds, credentials) is in flight.
pub fn peek_queue(fd: BorrowedFd<'_>, stream: bool) -> io::Result<Vec<Vec<u8>>> {
    let msgs = peek_messages(fd, stream)?;
    if msgs.iter().any(|m| !m.fds.is_empty() || m.creds.is_some()) {
        return Err(io::Error::from_raw_os_error(libc::EBADMSG));
    }
    Ok(msgs.into_iter().map(|m| m.data).collect())
}

/// Credentials of a message (`struct ucred`): pid, uid, gid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ucred {
    /// The sender's pid as the receiver sees it (0: gone or outside its pid namespace).
    pub pid: i32,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// One message queued on a socket, read without consuming it.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The sender's address as `recvfrom` gives it (empty for a stream and for an unnamed
    /// sender; a path name without its terminating NUL).
    pub sender: Vec<u8>,
    /// The bytes.
    pub data: Vec<u8>,
    /// Copies of the files passed with it (`SCM_RIGHTS`), installed in this process
    /// close-on-exec; closed when dropped.
    pub fds: Vec<OwnedFd>,
    /// Its credentials (`SCM_CREDENTIALS`), given only when the socket has `SO_PASSCRED`.
    pub creds: Option<Ucred>,
}

/// [`peek_queue`] with each message's sender and ancillary data: files passed with it are
/// installed in this process (peeking does not take them off the queue) and credentials are
/// given when the socket has `SO_PASSCRED`. A stream's bytes are one message, split where
/// the kernel would end a read: after the bytes that carry files, and where the credentials
/// change. `EMSGSIZE` when a message or its ancillary data does not fit the buffers.
pub fn peek_messages(fd: BorrowedFd<'_>, stream: bool) -> io::Result<Vec<Peeked>> {
    set_peek_off(fd, 0)?;
    let result = peek_all(fd, stream);
    // Back to the default (no peek offset), whatever happened.
    let reset = set_peek_off(fd, -1);
    let out = result?;
    reset?;
    Ok(out)
}

/// Room for the ancillary data of one message: `SCM_MAX_FD` (253) descriptors and a
/// `struct ucred`, with their headers.
const CMSG_SPACE: usize = 2048;

fn peek_all(fd: BorrowedFd<'_>, stream: bool) -> io::Result<Vec<Peeked>> {
    let mut out: Vec<Peeked> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut cmsg = vec![0u64; CMSG_SPACE / 8];
    // The previous chunk of a stream carried files: the next starts a message.
    let mut cut = false;
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) address.
        let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_SPACE;
        // SAFETY: `msg` points at `from`, `iov` (into `buf`) and `cmsg`, all valid and
        // writable for their lengths during the call.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            return Err(e);
        }
        // Take ownership of whatever files arrived before any check can return.
        let (fds, creds) = ancillary(&msg);
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let data = buf.get(..n as usize).unwrap_or(&[]).to_vec();
        if !stream {
            out.push(Peeked {
                sender: addr_name(&from, msg.msg_namelen),
                data,
                fds,
                creds,
            });
            continue;
        }
        if n == 0 {
            break;
        }
        let carries = !fds.is_empty();
        match out.last_mut() {
            Some(last) if !cut && !carries && last.creds == creds => {
                last.data.extend_from_slice(&data)
            }
            _ => out.push(Peeked {
                sender: Vec::new(),
                data,
                fds,
                creds,
            }),
        }
        cut = carries;
    }
    Ok(out)
}

/// The files (`SCM_RIGHTS`) and credentials (`SCM_CREDENTIALS`) in a received message's
/// control buffer; the files become owned here.
fn ancillary(msg: &libc::msghdr) -> (Vec<OwnedFd>, Option<Ucred>) {
    let mut fds = Vec::new();
    let mut creds = None;
    // SAFETY: `msg` was filled by recvmsg: msg_control/msg_controllen describe the control
    // messages the kernel wrote, which the CMSG_* macros walk within those bounds.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` is a control message header inside the buffer (CMSG_FIRSTHDR/NXTHDR).
        let h = unsafe { &*c };
        // SAFETY: CMSG_LEN only computes a length.
        let hdr = unsafe { libc::CMSG_LEN(0) } as usize;
        let len = (h.cmsg_len as usize).saturating_sub(hdr);
        // SAFETY: the data of the control message `c`.
        let data = unsafe { libc::CMSG_DATA(c) };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            for i in 0..len / 4 {
                // SAFETY: `len` bytes of fd numbers follow the header; read unaligned.
                let raw = unsafe { std::ptr::read_unaligned(data.add(i * 4).cast::<i32>()) };
                // SAFETY: the kernel installed this descriptor for us; nobody else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        } else if h.cmsg_level == libc::SOL_SOCKET
            && h.cmsg_type == libc::SCM_CREDENTIALS
            && len >= std::mem::size_of::<libc::ucred>()
        {
            // SAFETY: a struct ucred follows the header; read unaligned.
            let u = unsafe { std::ptr::read_unaligned(data.cast::<libc::ucred>()) };
            creds = Some(Ucred {
                pid: u.pid,
                uid: u.uid,
                gid: u.gid,
            });
        }
        // SAFETY: walks to the next header within the buffer, or null.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    (fds, creds)
}

/// `SO_PASSCRED` of a socket.
pub fn passcred(fd: BorrowedFd<'_>) -> io::Result<bool> {
    super::inet::get_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED).map(|v| v != 0)
}

/// Sets `SO_PASSCRED` (the socket receives its messages' credentials).
pub fn set_passcred(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is one int, valid for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `data` as one message with files (`SCM_RIGHTS`) and credentials (`SCM_CREDENTIALS`)
/// attached (`sendmsg(2)`), to the connected peer or, with `to`, to that name; without
/// blocking. A stream's bytes that do not all go at once are sent on with the credentials but
/// without the files, which the kernel attached to the first part.
pub fn send_ancillary(
    fd: BorrowedFd<'_>,
    data: &[u8],
    stream: bool,
    files: &[BorrowedFd<'_>],
    creds: Option<Ucred>,
    to: Option<&[u8]>,
) -> io::Result<()> {
    let addr = to.map(sockaddr).transpose()?;
    let mut done = 0usize;
    let mut files = files;
    loop {
        let rest = data.get(done..).unwrap_or(&[]);
        done += sendmsg_once(fd, rest, files, creds, addr.as_ref())?;
        files = &[];
        if !stream || done >= data.len() {
            return Ok(());
        }
    }
}

/// One `sendmsg(2)` of `data` with `files` and `creds`; the bytes sent.
fn sendmsg_once(
    fd: BorrowedFd<'_>,
    data: &[u8],
    files: &[BorrowedFd<'_>],
    creds: Option<Ucred>,
    addr: Option<&(libc::sockaddr_un, libc::socklen_t)>,
) -> io::Result<usize> {
    let mut cmsg = vec![0u64; CMSG_SPACE / 8];
    let nfds = files.len();
    let rights_space = if nfds == 0 {
        0
    } else {
        // SAFETY: CMSG_SPACE only computes a length.
        unsafe { libc::CMSG_SPACE((nfds * 4) as u32) as usize }
    };
    let cred_space = if creds.is_some() {
        // SAFETY: as above.
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) as usize }
    } else {
        0
    };
    let control = rights_space + cred_space;
    if control > CMSG_SPACE {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some((a, len)) = addr {
        msg.msg_name = (a as *const libc::sockaddr_un) as *mut libc::c_void;
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if control > 0 {
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = control;
        // SAFETY: the control buffer holds `control` bytes, room for both messages written
        // through the CMSG_* macros, which stay within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            if nfds > 0 && !c.is_null() {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN((nfds * 4) as u32) as usize;
                let d = libc::CMSG_DATA(c);
                for (i, f) in files.iter().enumerate() {
                    std::ptr::write_unaligned(d.add(i * 4).cast::<i32>(), f.as_raw_fd());
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            if let (Some(u), false) = (creds, c.is_null()) {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_CREDENTIALS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::ucred>() as u32) as usize;
                let v = libc::ucred {
                    pid: u.pid,
                    uid: u.uid,
                    gid: u.gid,
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::ucred>(), v);
            }
        }
    }
    // SAFETY: `msg` points at `iov` (over `data`), the optional address and the control
    // buffer, all valid for the call.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `socketpair(AF_UNIX, sock_type | SOCK_CLOEXEC)`.
pub fn socketpair(sock_type: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is writable for the two descriptors the call returns.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            sock_type | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` as one message (one datagram on a datagram socket), without blocking: a queue
/// that no longer fits is an error, not a hang.
pub fn send_all(fd: BorrowedFd<'_>, data: &[u8], stream: bool) -> io::Result<()> {
    let mut done = 0usize;
    loop {
        let rest = data.get(done..).unwrap_or(&[]);
        // SAFETY: `rest` is readable for its length during the call.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        done += n as usize;
        if !stream || done >= data.len() {
            return Ok(());
        }
    }
}

/// The `sun_path` bytes of an address `len` bytes long (empty: unnamed), without a path
/// name's terminating NUL.
fn addr_name(a: &libc::sockaddr_un, len: libc::socklen_t) -> Vec<u8> {
    let n = (len as usize)
        .saturating_sub(std::mem::size_of::<libc::sa_family_t>())
        .min(a.sun_path.len());
    let raw: Vec<u8> = a.sun_path.iter().take(n).map(|&c| c as u8).collect();
    trim_name(&raw)
}

/// A `sockaddr_un` for `name` (`sun_path` bytes; a path without its NUL, which is added; an
/// abstract name with its leading NUL) and its length.
fn sockaddr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid address to fill.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = name.first().is_some_and(|&b| b != 0);
    // A path needs room for its terminating NUL.
    if name.is_empty() || name.len() + usize::from(path) > a.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len() + usize::from(path);
    Ok((a, len as libc::socklen_t))
}

/// `socket(AF_UNIX, sock_type | SOCK_CLOEXEC, 0)`.
pub fn socket(sock_type: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes three integers.
    let s = unsafe { libc::socket(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// `bind(2)` to `name` (see [`sockaddr`]).
pub fn bind(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr(name)?;
    // SAFETY: `a` is a valid sockaddr_un of at least `len` bytes.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `connect(2)` to `name` (see [`sockaddr`]).
pub fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr(name)?;
    // SAFETY: `a` is a valid sockaddr_un of at least `len` bytes.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a socket is bound at the path `name` (a socket file a running program uses, not a
/// stale one): a non-blocking stream `connect` to it succeeds, finds another socket type
/// (`EPROTOTYPE`) or a full backlog (`EAGAIN`); a stale socket file refuses it
/// (`ECONNREFUSED`).
pub fn is_bound(name: &[u8]) -> bool {
    let Ok(s) = socket(libc::SOCK_STREAM | libc::SOCK_NONBLOCK) else {
        return false;
    };
    match connect(s.as_fd(), name) {
        Ok(()) => true,
        Err(e) => matches!(
            e.raw_os_error(),
            Some(libc::EPROTOTYPE | libc::EAGAIN | libc::EINPROGRESS)
        ),
    }
}

/// `listen(2)`; on a listening socket, sets a new backlog.
pub fn listen(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen takes two integers.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `accept4(2)` without blocking, `SOCK_CLOEXEC`.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address and length: the peer's address is not wanted.
    let s = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SOCK_NONBLOCK belongs to the new description; the caller sets the saved status flags.
    Ok(s)
}

/// Sends one datagram to `name` without blocking (`sendto(2)`).
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr(name)?;
    // SAFETY: `data` is readable for its length and `a` a valid address of `len` bytes.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            (&a as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `shutdown(2)` with `how` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`).
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: shutdown takes two integers.
    if unsafe { libc::shutdown(fd.as_raw_fd(), how) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_bind_connect_accept_and_diag() {
        let name = format!("\0crak-unixsock-test-{}", std::process::id()).into_bytes();
        let l = socket(libc::SOCK_STREAM).unwrap();
        bind(l.as_fd(), &name).unwrap();
        listen(l.as_fd(), 3).unwrap();
        let c = socket(libc::SOCK_STREAM).unwrap();
        connect(c.as_fd(), &name).unwrap();
        let lino = std::fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd()))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap();
        let d = diag(lino).unwrap();
        assert_eq!((d.state, d.rqueue, d.wqueue), (10, 1, 3));
        assert_eq!(d.name, name);
        assert_eq!(d.icons.len(), 1);
        let a = accept(l.as_fd()).unwrap();
        send_all(c.as_fd(), b"hello", true).unwrap();
        let q = peek_messages(a.as_fd(), true).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].sender.as_slice(), q[0].data.as_slice()),
            (&b""[..], &b"hello"[..])
        );
        assert!(sockaddr(&[b'x'; 108]).is_err());
        // Files and credentials in flight are peeked, not taken; a stream's message with files
        // stays apart.
        let (a, c) = socketpair(libc::SOCK_STREAM).unwrap();
        set_passcred(a.as_fd()).unwrap();
        let (r, w) = std::io::pipe().unwrap();
        let me = Ucred {
            pid: std::process::id() as i32,
            uid: libc::uid_t::from(std::fs::metadata("/proc/self").unwrap().uid()),
            gid: libc::gid_t::from(std::fs::metadata("/proc/self").unwrap().gid()),
        };
        send_all(c.as_fd(), b"hello", true).unwrap();
        send_ancillary(c.as_fd(), b"fd!", true, &[r.as_fd()], Some(me), None).unwrap();
        send_all(c.as_fd(), b"tail", true).unwrap();
        drop(r);
        for _ in 0..2 {
            let q = peek_messages(a.as_fd(), true).unwrap();
            let got: Vec<(&[u8], usize)> =
                q.iter().map(|m| (m.data.as_slice(), m.fds.len())).collect();
            assert_eq!(got, vec![(&b"hellofd!"[..], 1), (&b"tail"[..], 0)]);
            assert!(q.iter().all(|m| m.creds == Some(me)));
            // The file passed is the pipe: what is written to its write end is read there.
            std::io::Write::write_all(&mut &w, b"x").unwrap();
            let mut b = [0u8; 1];
            std::io::Read::read_exact(
                &mut std::fs::File::from(q[0].fds[0].try_clone().unwrap()),
                &mut b,
            )
            .unwrap();
            assert_eq!(&b, b"x");
        }
        assert!(peek_queue(a.as_fd(), true).is_err());
        assert_eq!(sockaddr(&[b'x'; 107]).unwrap().1, 110);
        assert_eq!(trim_name(b"/tmp/s\0"), b"/tmp/s");
    }
}
