//! TCP and UDP sockets: addresses, socket options, `TCP_INFO` and the TCP repair interface
//! (`TCP_REPAIR`, `TCP_REPAIR_QUEUE`, `TCP_QUEUE_SEQ`, `TCP_REPAIR_OPTIONS`,
//! `TCP_REPAIR_WINDOW`; see `tcp(7)` and the kernel's `Documentation/networking`), used on a
//! duplicate of the target's socket taken with `pidfd_getfd` at capture and on the new socket
//! at restore.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `TCP_REPAIR`.
pub const TCP_REPAIR: i32 = 19;
/// `TCP_REPAIR_QUEUE`.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// `TCP_QUEUE_SEQ`.
pub const TCP_QUEUE_SEQ: i32 = 21;
/// `TCP_REPAIR_OPTIONS`.
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// `TCP_TIMESTAMP`.
pub const TCP_TIMESTAMP: i32 = 24;
/// `TCP_REPAIR_WINDOW`.
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_REPAIR_ON`.
pub const REPAIR_ON: i32 = 1;
/// `TCP_REPAIR_OFF`: leave repair mode and send a window probe (the peer answers at once).
pub const REPAIR_OFF: i32 = 0;
/// `TCP_RECV_QUEUE`.
pub const RECV_QUEUE: i32 = 1;
/// `TCP_SEND_QUEUE`.
pub const SEND_QUEUE: i32 = 2;
/// `TCP_NO_QUEUE`.
pub const NO_QUEUE: i32 = 0;
/// `SIOCOUTQNSD`: bytes of the send queue not sent yet.
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// `getsockopt` of one `int`: `getsockopt(2)`.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid and sized for one int during the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// `setsockopt` of one `int`: `setsockopt(2)`.
pub fn set_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> io::Result<()> {
    set_bytes(fd, level, name, &v.to_ne_bytes())
}

/// `getsockopt` into `buf`; returns the length the kernel wrote.
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes during the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// `setsockopt` with `value` as the option's bytes.
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is readable for its length during the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An endpoint: family, address (IPv4 in the first 4 bytes) and port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// The address.
    pub addr: [u8; 16],
    /// The port, host order.
    pub port: u16,
}

fn to_sockaddr(e: &Endpoint) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = if i32::from(e.family) == libc::AF_INET {
        // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
        let sin =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = e.port.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([e.addr[0], e.addr[1], e.addr[2], e.addr[3]]);
        std::mem::size_of::<libc::sockaddr_in>()
    } else {
        // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
        let sin6 =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = e.port.to_be();
        sin6.sin6_addr.s6_addr = e.addr;
        std::mem::size_of::<libc::sockaddr_in6>()
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<Endpoint> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (its family says so) into the storage.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
            Some(Endpoint {
                family: libc::AF_INET as u16,
                addr,
                port: u16::from_be(sin.sin_port),
            })
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (its family says so) into the storage.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(Endpoint {
                family: libc::AF_INET6 as u16,
                addr: sin6.sin6_addr.s6_addr,
                port: u16::from_be(sin6.sin6_port),
            })
        }
        _ => None,
    }
}

/// `getsockname(2)` (`peer` false) or `getpeername(2)` (`peer` true); `None` when not connected
/// (`ENOTCONN`) or not an IP socket.
pub fn name(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Option<Endpoint>> {
    // SAFETY: sockaddr_storage is plain data; all zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ss` is writable for `len` bytes during the call.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(from_sockaddr(&ss))
}

/// `socket(family, sock_type | SOCK_CLOEXEC, 0)`.
pub fn socket(family: u16, sock_type: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes three integers.
    let s = unsafe { libc::socket(i32::from(family), sock_type | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// `bind(2)`.
pub fn bind(fd: BorrowedFd<'_>, e: &Endpoint) -> io::Result<()> {
    with_address(fd, e, libc::bind)
}

/// `connect(2)`; on a socket in repair mode it only sets the peer and the state.
pub fn connect(fd: BorrowedFd<'_>, e: &Endpoint) -> io::Result<()> {
    with_address(fd, e, libc::connect)
}

/// Calls `call` (`bind` or `connect`) on `fd` with the socket address of `e`.
fn with_address(
    fd: BorrowedFd<'_>,
    e: &Endpoint,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> io::Result<()> {
    let (ss, len) = to_sockaddr(e);
    // SAFETY: `ss` holds a valid address of `len` bytes, which `call` only reads.
    let r = unsafe {
        call(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `connect(2)` to an `AF_UNSPEC` address: a TCP connection is reset (the peer is sent an RST
/// and the socket's next call fails with `ECONNRESET`).
pub fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr is plain data; all zero with AF_UNSPEC (0) is the unspecified address.
    let sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    // SAFETY: `sa` is a valid address of its size.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes two integers.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.max(0) as u32)
}

/// Bytes queued to be read (`SIOCINQ`).
pub fn inq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Bytes in the send queue, sent or not (`SIOCOUTQ`).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ)
}

/// Bytes of the send queue not sent yet (`SIOCOUTQNSD`).
pub fn outq_unsent(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD)
}

/// `recv(MSG_PEEK | MSG_DONTWAIT)` of up to `len` bytes; in repair mode it reads the queue
/// `TCP_REPAIR_QUEUE` selected, without consuming it.
pub fn peek(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    // SAFETY: `buf` is writable for its length during the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `send(MSG_DONTWAIT | MSG_NOSIGNAL)` of `data`; returns how much was taken. In repair mode it
/// fills the queue `TCP_REPAIR_QUEUE` selected.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length during the call.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// What `TCP_INFO` says that a capture needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `TCP_*` state (1 established, 7 close, 10 listen, ...).
    pub state: u8,
    /// `TCPI_OPT_*` bits.
    pub options: u8,
    /// Window scale the peer announced.
    pub snd_wscale: u8,
    /// Window scale announced to the peer.
    pub rcv_wscale: u8,
    /// On a listening socket: connections waiting to be accepted.
    pub unacked: u32,
    /// On a listening socket: its backlog.
    pub sacked: u32,
}

/// `getsockopt(TCP_INFO)`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    let mut b = [0u8; 32];
    let n = get_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut b)?;
    if n < 32 {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok(TcpInfo {
        state: b[0],
        options: b[5],
        snd_wscale: b[6] & 0xf,
        rcv_wscale: b[6] >> 4,
        unacked: u32_at(24),
        sacked: u32_at(28),
    })
}

/// `struct tcp_repair_window`: `snd_wl1`, `snd_wnd`, `max_window`, `rcv_wnd`, `rcv_wup`.
pub fn get_window(fd: BorrowedFd<'_>) -> io::Result<[u32; 5]> {
    let mut b = [0u8; 20];
    let n = get_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &mut b)?;
    if n != 20 {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let mut w = [0u32; 5];
    for (i, v) in w.iter_mut().enumerate() {
        let o = i * 4;
        *v = u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    }
    Ok(w)
}

/// Sets `TCP_REPAIR_WINDOW` (the socket is in repair mode).
pub fn set_window(fd: BorrowedFd<'_>, w: &[u32; 5]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20);
    for v in w {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &b)
}

/// Sets `TCP_REPAIR_OPTIONS`: (`TCPOPT_*` code, value) pairs as `struct tcp_repair_opt`.
pub fn set_repair_options(fd: BorrowedFd<'_>, opts: &[(u32, u32)]) -> io::Result<()> {
    let mut b = Vec::with_capacity(opts.len() * 8);
    for (code, val) in opts {
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&val.to_ne_bytes());
    }
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &b)
}
