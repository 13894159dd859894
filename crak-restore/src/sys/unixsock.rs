//! Unix sockets: what `sock_diag(7)` says about one (type, state, peer, queue length), its
//! queued data read without consuming it (`MSG_PEEK` with `SO_PEEK_OFF`), and `socketpair`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN`.
const UDIAG_SHOW: u32 = 0x04 | 0x10;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;

/// One Unix socket as `sock_diag` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: u8,
    /// `TCP_*`-style state (1 established, 7 close, 10 listen).
    pub state: u8,
    /// Inode of the peer socket (0: none).
    pub peer: u64,
    /// Bytes (stream) or datagrams queued to be read.
    pub rqueue: u32,
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
    let mut buf = vec![0u8; 8192];
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
        match kind {
            UNIX_DIAG_PEER => d.peer = u64::from(rd_u32(b, at + 4)),
            UNIX_DIAG_RQLEN => d.rqueue = rd_u32(b, at + 4),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(d)
}

/// `SO_TYPE` of a socket.
pub fn sock_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the call and sized as the option needs.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
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
    set_peek_off(fd, 0)?;
    let result = peek_all(fd, stream);
    // Back to the default (no peek offset), whatever happened.
    let reset = set_peek_off(fd, -1);
    let out = result?;
    reset?;
    Ok(out)
}

fn peek_all(fd: BorrowedFd<'_>, stream: bool) -> io::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut cmsg = [0u8; 256];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.len();
        // SAFETY: `msg` points at `iov` (into `buf`) and `cmsg`, all valid and writable for
        // their lengths during the call.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            return Err(e);
        }
        if msg.msg_controllen > 0 || msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADMSG));
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let data = buf.get(..n as usize).unwrap_or(&[]).to_vec();
        if stream {
            if n == 0 {
                break;
            }
            match out.first_mut() {
                Some(all) => all.extend_from_slice(&data),
                None => out.push(data),
            }
        } else {
            out.push(data);
        }
    }
    Ok(out)
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
