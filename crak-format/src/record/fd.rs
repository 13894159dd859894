//! FD record, `spec/crak-format.md#fd`.

use crate::bytes::{Blob, ByteString};
use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Largest `path`.
pub const MAX_PATH: u32 = 4096;
/// Largest descriptor number plus one, and most fds of one process.
pub const MAX_FDS: u32 = 1 << 20;

/// What a file descriptor refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum FdKind {
    Reg = 1,
    Pipe = 2,
    Fifo = 3,
    Chr = 4,
    Tty = 5,
    Eventfd = 6,
    Signalfd = 7,
    Timerfd = 8,
    Epoll = 9,
    Unix = 10,
    Inotify = 15,
    Memfd = 16,
    Tcp = 11,
    Udp = 12,
    /// A Unix socket with a name, a listener, or an end of a connection (1.2).
    UnixSocket = 13,
}

impl FdKind {
    /// The kind for its wire value.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => FdKind::Reg,
            2 => FdKind::Pipe,
            3 => FdKind::Fifo,
            4 => FdKind::Chr,
            5 => FdKind::Tty,
            6 => FdKind::Eventfd,
            7 => FdKind::Signalfd,
            8 => FdKind::Timerfd,
            9 => FdKind::Epoll,
            10 => FdKind::Unix,
            15 => FdKind::Inotify,
            16 => FdKind::Memfd,
            11 => FdKind::Tcp,
            12 => FdKind::Udp,
            13 => FdKind::UnixSocket,
            _ => return None,
        })
    }

    /// Whether the fd is a kernel object with no path, whose state is its `contents`
    /// ([`FdState`]).
    pub fn is_anon(self) -> bool {
        matches!(
            self,
            FdKind::Eventfd
                | FdKind::Signalfd
                | FdKind::Timerfd
                | FdKind::Epoll
                | FdKind::Unix
                | FdKind::Inotify
                | FdKind::Memfd
                | FdKind::Tcp
                | FdKind::Udp
                | FdKind::UnixSocket
        )
    }
}

/// `EFD_SEMAPHORE` in [`FdState::Eventfd`]'s flags.
pub const EVENTFD_SEMAPHORE: u32 = 1;
/// Bytes of one epoll registration in [`FdState::Epoll`]'s encoding.
pub const EPOLL_ENTRY_SIZE: usize = 16;

/// One fd registered in an epoll instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEntry {
    /// The registered descriptor number.
    pub fd: u32,
    /// `EPOLL*` event bits (with `EPOLLET`, `EPOLLONESHOT`, …).
    pub events: u32,
    /// The user data returned with its events.
    pub data: u64,
}

/// Largest memfd name (`memfd_create(2)`: 249 bytes).
pub const MAX_MEMFD_NAME: usize = 249;
/// `MFD_ALLOW_SEALING` in [`FdState::Memfd`]'s flags.
pub const MFD_ALLOW_SEALING: u32 = 2;
/// `MFD_HUGETLB` in [`FdState::Memfd`]'s flags.
pub const MFD_HUGETLB: u32 = 4;
/// The `F_SEAL_*` bits a memfd can carry (SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE, EXEC).
pub const MEMFD_SEALS: u32 = 0x3f;

/// One watch of an inotify instance (spec §3.13, 1.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// Watch descriptor (≥ 1).
    pub wd: u32,
    /// `IN_*` event mask as the kernel keeps it.
    pub mask: u32,
    /// `st_dev` of the watched inode.
    pub dev: u64,
    /// `st_ino` of the watched inode.
    pub ino: u64,
    /// A path of the watched inode at capture.
    pub path: Vec<u8>,
}

/// A run of bytes of a memfd that are not all zero (spec §3.13, 1.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdExtent {
    /// Offset in the object.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Longest Unix socket name (`sun_path`), in bytes.
pub const UNIX_NAME_MAX: usize = 108;

/// [`UnixSocket::state`]: neither listening nor connected.
pub const UNIX_UNCONNECTED: u32 = 0;
/// [`UnixSocket::state`]: listening.
pub const UNIX_LISTENING: u32 = 1;
/// [`UnixSocket::state`]: connected to `peer`.
pub const UNIX_CONNECTED: u32 = 2;

/// [`UnixSocket::flags`]: no more reading (`SHUT_RD`, or the peer's `SHUT_WR`).
pub const UNIX_SHUT_RD: u32 = 1;
/// [`UnixSocket::flags`]: no more writing (`SHUT_WR`, or the peer's `SHUT_RD`).
pub const UNIX_SHUT_WR: u32 = 2;
/// [`UnixSocket::flags`]: the peer is outside the image; `peer_name` is its name.
pub const UNIX_PEER_EXTERNAL: u32 = 4;
/// [`UnixSocket::flags`]: the socket's path name was unlinked (or now names another file).
pub const UNIX_NAME_GONE: u32 = 8;
/// [`UnixSocket::flags`]: connected, but the peer has closed (`peer` is 0): what is queued is
/// read, then end of file.
pub const UNIX_PEER_CLOSED: u32 = 16;
/// [`UnixSocket::flags`] (1.3): `SO_PASSCRED` is set, so every message read on the socket
/// comes with its sender's credentials.
pub const UNIX_PASSCRED: u32 = 32;
/// Every [`UnixSocket::flags`] bit 1.3 defines.
pub const UNIX_FLAGS_KNOWN: u32 = 0x3f;

/// One message queued on a Unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixMessage {
    /// The sender's name as `recvfrom` gives it (empty: unnamed, and always for a stream).
    pub sender: Vec<u8>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A connection waiting on a listener to be accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixPending {
    /// Inode of the not-yet-accepted socket (the listener's end).
    pub ino: u64,
    /// Inode of the connecting socket.
    pub client: u64,
    /// What the client sent that waits to be read once accepted.
    pub queue: Vec<Vec<u8>>,
}

/// A Unix socket beyond an unnamed connected pair: named (a path or an abstract name),
/// listening with its pending connections, or connected to a named peer (spec §3.13, kind 13).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixSocket {
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
    pub sock_type: u32,
    /// [`UNIX_UNCONNECTED`], [`UNIX_LISTENING`] or [`UNIX_CONNECTED`].
    pub state: u32,
    /// `UNIX_SHUT_*`, [`UNIX_PEER_EXTERNAL`], [`UNIX_NAME_GONE`], [`UNIX_PEER_CLOSED`],
    /// [`UNIX_PASSCRED`].
    pub flags: u32,
    /// `listen` backlog (listening sockets; else 0).
    pub backlog: u32,
    /// Inode of the peer (0: none).
    pub peer: u64,
    /// Owner of the socket file of a path name.
    pub name_uid: u32,
    /// Group of the socket file of a path name.
    pub name_gid: u32,
    /// `st_mode` of the socket file of a path name (0 when there is none).
    pub name_mode: u32,
    /// Own name: `sun_path` bytes (a leading NUL for an abstract name); empty: unnamed.
    pub name: Vec<u8>,
    /// The peer's name as `getpeername` gives it.
    pub peer_name: Vec<u8>,
    /// Messages queued to be read (a stream's bytes in one message).
    pub queue: Vec<UnixMessage>,
    /// Connections waiting to be accepted (listening sockets).
    pub pending: Vec<UnixPending>,
}

impl UnixSocket {
    /// Whether `name` is a filesystem path (not abstract, not empty).
    pub fn has_path(&self) -> bool {
        self.name.first().is_some_and(|&b| b != 0)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.sock_type, self.state, self.flags, self.backlog] {
            wire::put_u32(out, v);
        }
        wire::put_u64(out, self.peer);
        for v in [self.name_uid, self.name_gid, self.name_mode] {
            wire::put_u32(out, v);
        }
        wire::put_bytes(out, &self.name);
        wire::put_bytes(out, &self.peer_name);
        wire::put_u32(out, self.queue.len() as u32);
        for m in &self.queue {
            wire::put_bytes(out, &m.sender);
            wire::put_bytes(out, &m.data);
        }
        wire::put_u32(out, self.pending.len() as u32);
        for p in &self.pending {
            wire::put_u64(out, p.ino);
            wire::put_u64(out, p.client);
            wire::put_u32(out, p.queue.len() as u32);
            for m in &p.queue {
                wire::put_bytes(out, m);
            }
        }
    }

    fn decode(b: &[u8]) -> Result<UnixSocket, String> {
        let mut c = Cursor { b, at: 0 };
        let mut s = UnixSocket {
            sock_type: c.u32("sock_type")?,
            state: c.u32("state")?,
            flags: c.u32("flags")?,
            backlog: c.u32("backlog")?,
            peer: c.u64("peer")?,
            name_uid: c.u32("name_uid")?,
            name_gid: c.u32("name_gid")?,
            name_mode: c.u32("name_mode")?,
            ..UnixSocket::default()
        };
        if !matches!(s.sock_type, 1 | 2 | 5) {
            return Err(format!("socket type {}", s.sock_type));
        }
        if s.state > UNIX_CONNECTED {
            return Err(format!("socket state {}", s.state));
        }
        if s.flags & !UNIX_FLAGS_KNOWN != 0 {
            return Err(format!("socket flags {:#x}", s.flags));
        }
        s.name = c.bytes("name", UNIX_NAME_MAX)?.to_vec();
        s.peer_name = c.bytes("peer_name", UNIX_NAME_MAX)?.to_vec();
        let count = c.u32("queue count")?;
        for i in 0..count {
            // Each message takes at least 8 bytes: the loop ends with the bytes present.
            let what = || format!("queued message {i} of {count}");
            let sender = c.bytes(&what(), UNIX_NAME_MAX)?.to_vec();
            let data = c.bytes(&what(), usize::MAX)?.to_vec();
            s.queue.push(UnixMessage { sender, data });
        }
        let count = c.u32("pending count")?;
        for i in 0..count {
            let what = format!("pending connection {i} of {count}");
            let ino = c.u64(&what)?;
            let client = c.u64(&what)?;
            let n = c.u32(&what)?;
            let mut queue = Vec::new();
            for _ in 0..n {
                queue.push(c.bytes(&what, usize::MAX)?.to_vec());
            }
            s.pending.push(UnixPending { ino, client, queue });
        }
        if c.at != b.len() {
            return Err(format!(
                "{} bytes after the pending connections",
                b.len() - c.at
            ));
        }
        Ok(s)
    }
}

/// A bounds-checked reader of a state's bytes.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("{what} runs past the end"))?;
        let s = self.b.get(self.at..end).unwrap_or(&[]);
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let s = self.take(4, what)?;
        Ok(s.try_into().map_or(0, u32::from_le_bytes))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let s = self.take(8, what)?;
        Ok(s.try_into().map_or(0, u64::from_le_bytes))
    }

    fn bytes(&mut self, what: &str, max: usize) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(format!("{what}: {n} bytes, at most {max}"));
        }
        self.take(n, what)
    }
}

/// `AF_INET`, in [`InetAddr::family`].
pub const AF_INET: u16 = 2;
/// `AF_INET6`, in [`InetAddr::family`].
pub const AF_INET6: u16 = 10;

/// `SO_REUSEADDR` in [`TcpState::sockopts`] and [`UdpState::sockopts`].
pub const SOCKOPT_REUSEADDR: u32 = 1;
/// `SO_REUSEPORT`.
pub const SOCKOPT_REUSEPORT: u32 = 2;
/// `SO_KEEPALIVE` (TCP).
pub const SOCKOPT_KEEPALIVE: u32 = 4;
/// `TCP_NODELAY` (TCP).
pub const SOCKOPT_NODELAY: u32 = 8;
/// `IPV6_V6ONLY` (IPv6 sockets).
pub const SOCKOPT_V6ONLY: u32 = 16;
/// `rcvbuf` was set by the program (`SO_RCVBUF`) and is restored.
pub const SOCKOPT_RCVBUF: u32 = 32;
/// `sndbuf` was set by the program (`SO_SNDBUF`) and is restored.
pub const SOCKOPT_SNDBUF: u32 = 64;
/// `SO_BROADCAST` (UDP).
pub const SOCKOPT_BROADCAST: u32 = 128;
/// Every `SOCKOPT_*` bit.
pub const SOCKOPT_ALL: u32 = 255;

/// `TCP_ESTABLISHED` in [`TcpState::state`].
pub const TCP_ESTABLISHED: u16 = 1;
/// `TCP_CLOSE`: not connected, not listening (maybe bound).
pub const TCP_CLOSE: u16 = 7;
/// `TCP_LISTEN`.
pub const TCP_LISTEN: u16 = 10;

/// Timestamps were negotiated, in [`TcpConn::options`].
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
/// Selective acknowledgements were negotiated.
pub const TCPI_OPT_SACK: u8 = 2;
/// Window scaling was negotiated.
pub const TCPI_OPT_WSCALE: u8 = 4;

/// Bytes of the fixed part of [`FdState::Tcp`]'s encoding (before the two queues).
pub const TCP_FIXED_SIZE: usize = 112;
/// Bytes of [`FdState::Udp`]'s encoding.
pub const UDP_SIZE: usize = 56;

/// A family and two endpoints: the socket's own address and its peer's (zero when none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetAddr {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Local address: 4 bytes then 12 zero bytes for IPv4, 16 bytes for IPv6.
    pub local: [u8; 16],
    /// Remote address, laid out as `local`; all zero when not connected.
    pub remote: [u8; 16],
    /// Local port (0: not bound).
    pub local_port: u16,
    /// Remote port (0: not connected).
    pub remote_port: u16,
}

impl InetAddr {
    /// `addr:port` of the local end, `[addr]:port` for IPv6.
    pub fn show_local(&self) -> String {
        show_endpoint(self.family, &self.local, self.local_port)
    }

    /// `addr:port` of the remote end.
    pub fn show_remote(&self) -> String {
        show_endpoint(self.family, &self.remote, self.remote_port)
    }
}

fn show_endpoint(family: u16, a: &[u8; 16], port: u16) -> String {
    if family == AF_INET {
        format!("{}.{}.{}.{}:{port}", a[0], a[1], a[2], a[3])
    } else {
        format!("[{}]:{port}", std::net::Ipv6Addr::from(*a))
    }
}

/// What an established TCP connection needs to go on (TCP_REPAIR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConn {
    /// Sequence number after the last byte queued to send (`write_seq`).
    pub snd_seq: u32,
    /// Sequence number after the last byte received (`rcv_nxt`).
    pub rcv_seq: u32,
    /// Maximum segment size (`TCP_MAXSEG`).
    pub mss: u32,
    /// Window scale the peer announced.
    pub snd_wscale: u8,
    /// Window scale announced to the peer.
    pub rcv_wscale: u8,
    /// `TCPI_OPT_*` bits negotiated.
    pub options: u8,
    /// `TCP_TIMESTAMP` (the timestamp clock as the peer sees it).
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`: `snd_wl1`.
    pub snd_wl1: u32,
    /// `snd_wnd`.
    pub snd_wnd: u32,
    /// `max_window`.
    pub max_window: u32,
    /// `rcv_wnd`.
    pub rcv_wnd: u32,
    /// `rcv_wup`.
    pub rcv_wup: u32,
    /// How many bytes at the end of `send_queue` were not sent yet.
    pub unsent: u32,
    /// Bytes written by the program and not yet acknowledged by the peer, in order.
    pub send_queue: Vec<u8>,
    /// Bytes received and not yet read by the program, in order.
    pub recv_queue: Vec<u8>,
}

/// A TCP socket (kind 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpState {
    /// Endpoints.
    pub addr: InetAddr,
    /// [`TCP_ESTABLISHED`], [`TCP_CLOSE`] or [`TCP_LISTEN`].
    pub state: u16,
    /// `SOCKOPT_*` bits.
    pub sockopts: u32,
    /// `TCP_KEEPIDLE`, s.
    pub keepidle: u32,
    /// `TCP_KEEPINTVL`, s.
    pub keepintvl: u32,
    /// `TCP_KEEPCNT`.
    pub keepcnt: u32,
    /// `SO_RCVBUF` (restored only with [`SOCKOPT_RCVBUF`]).
    pub rcvbuf: u32,
    /// `SO_SNDBUF` (restored only with [`SOCKOPT_SNDBUF`]).
    pub sndbuf: u32,
    /// `listen` backlog (LISTEN only).
    pub backlog: u32,
    /// The connection (all zero unless ESTABLISHED).
    pub conn: TcpConn,
}

/// A UDP socket (kind 12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpState {
    /// Endpoints (remote zero: not connected).
    pub addr: InetAddr,
    /// `SOCKOPT_*` bits.
    pub sockopts: u32,
    /// `SO_RCVBUF` (restored only with [`SOCKOPT_RCVBUF`]).
    pub rcvbuf: u32,
    /// `SO_SNDBUF` (restored only with [`SOCKOPT_SNDBUF`]).
    pub sndbuf: u32,
    /// Datagrams that were queued at capture and are not in the image (informative).
    pub dropped: u32,
}

/// The state of an anonymous-inode fd, stored in FD `contents` (spec §3.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdState {
    /// Counter and flags ([`EVENTFD_SEMAPHORE`]).
    Eventfd {
        /// The counter.
        count: u64,
        /// Flags.
        flags: u32,
    },
    /// The signal set it reads.
    Signalfd {
        /// Bit n−1 for signal n.
        mask: u64,
    },
    /// Clock, timer and expirations not yet read.
    Timerfd {
        /// `CLOCK_*`.
        clockid: u32,
        /// `TFD_TIMER_*` of the last `timerfd_settime`.
        settime_flags: u32,
        /// Time to the next expiry, ns (0: disarmed).
        value_ns: u64,
        /// Period, ns (0: one-shot).
        interval_ns: u64,
        /// Expirations not yet read.
        ticks: u64,
    },
    /// The registered fds.
    Epoll(Vec<EpollEntry>),
    /// One end of a connected pair of Unix sockets (`ino` of the FD is this end's inode).
    Unix {
        /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
        sock_type: u32,
        /// Inode of the other end.
        peer: u64,
        /// What was queued to be read on this end: one entry per message (all the bytes in
        /// one entry for a stream socket).
        queue: Vec<Vec<u8>>,
    },
    /// The watches of an inotify instance, in `wd` order.
    Inotify(Vec<InotifyWatch>),
    /// A memfd: its name, flags, seals, size and the bytes that are not zero.
    Memfd {
        /// `MFD_*` flags it was created with ([`MFD_ALLOW_SEALING`], [`MFD_HUGETLB`]).
        flags: u32,
        /// `F_SEAL_*` bits (`F_GET_SEALS`).
        seals: u32,
        /// Size in bytes.
        size: u64,
        /// The name given to `memfd_create` (without `memfd:`).
        name: Vec<u8>,
        /// Non-zero contents, sorted and disjoint, inside `size`; the rest reads as zeros.
        extents: Vec<MemfdExtent>,
    },
    /// A named, listening or otherwise connected Unix socket (1.2).
    UnixSocket(UnixSocket),
    /// A TCP socket (1.2).
    Tcp(Box<TcpState>),
    /// A UDP socket (1.2).
    Udp(UdpState),
}

/// The endpoints, with `word` (TCP's state, UDP's reserved 0) after the family.
fn put_addr(out: &mut Vec<u8>, a: &InetAddr, word: u16) {
    wire::put_u16(out, a.family);
    wire::put_u16(out, word);
    out.extend_from_slice(&a.local);
    out.extend_from_slice(&a.remote);
    wire::put_u16(out, a.local_port);
    wire::put_u16(out, a.remote_port);
}

/// The endpoints at the start of a TCP or UDP state (40 bytes), or what is wrong with them.
fn get_addr(b: &[u8]) -> Result<(InetAddr, u16), String> {
    let arr = |o: usize| -> [u8; 16] {
        b.get(o..o + 16)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 16])
    };
    let u16_at = |o: usize| -> u16 {
        b.get(o..o + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    };
    let family = u16_at(0);
    if family != AF_INET && family != AF_INET6 {
        return Err(format!("address family {family}"));
    }
    let a = InetAddr {
        family,
        local: arr(4),
        remote: arr(20),
        local_port: u16_at(36),
        remote_port: u16_at(38),
    };
    if family == AF_INET
        && (a.local[4..].iter().any(|&x| x != 0) || a.remote[4..].iter().any(|&x| x != 0))
    {
        return Err("an IPv4 address with nonzero bytes past its 4".into());
    }
    Ok((a, u16_at(2)))
}

impl FdState {
    /// The `contents` bytes of this state.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            FdState::Eventfd { count, flags } => {
                wire::put_u64(&mut out, *count);
                wire::put_u32(&mut out, *flags);
            }
            FdState::Signalfd { mask } => wire::put_u64(&mut out, *mask),
            FdState::Timerfd {
                clockid,
                settime_flags,
                value_ns,
                interval_ns,
                ticks,
            } => {
                wire::put_u32(&mut out, *clockid);
                wire::put_u32(&mut out, *settime_flags);
                wire::put_u64(&mut out, *value_ns);
                wire::put_u64(&mut out, *interval_ns);
                wire::put_u64(&mut out, *ticks);
            }
            FdState::Epoll(entries) => {
                for e in entries {
                    wire::put_u32(&mut out, e.fd);
                    wire::put_u32(&mut out, e.events);
                    wire::put_u64(&mut out, e.data);
                }
            }
            FdState::Unix {
                sock_type,
                peer,
                queue,
            } => {
                wire::put_u32(&mut out, *sock_type);
                wire::put_u64(&mut out, *peer);
                wire::put_u32(&mut out, queue.len() as u32);
                for m in queue {
                    wire::put_u32(&mut out, m.len() as u32);
                    out.extend_from_slice(m);
                }
            }
            FdState::Inotify(watches) => {
                wire::put_u32(&mut out, watches.len() as u32);
                for w in watches {
                    wire::put_u32(&mut out, w.wd);
                    wire::put_u32(&mut out, w.mask);
                    wire::put_u64(&mut out, w.dev);
                    wire::put_u64(&mut out, w.ino);
                    wire::put_bytes(&mut out, &w.path);
                }
            }
            FdState::Memfd {
                flags,
                seals,
                size,
                name,
                extents,
            } => {
                wire::put_u32(&mut out, *flags);
                wire::put_u32(&mut out, *seals);
                wire::put_u64(&mut out, *size);
                wire::put_bytes(&mut out, name);
                wire::put_u32(&mut out, extents.len() as u32);
                for e in extents {
                    wire::put_u64(&mut out, e.offset);
                    wire::put_bytes(&mut out, &e.data);
                }
            }
            FdState::UnixSocket(s) => s.encode(&mut out),
            FdState::Tcp(t) => {
                put_addr(&mut out, &t.addr, t.state);
                for v in [
                    t.sockopts,
                    t.keepidle,
                    t.keepintvl,
                    t.keepcnt,
                    t.rcvbuf,
                    t.sndbuf,
                    t.backlog,
                ] {
                    wire::put_u32(&mut out, v);
                }
                let c = &t.conn;
                for v in [c.snd_seq, c.rcv_seq, c.mss] {
                    wire::put_u32(&mut out, v);
                }
                out.extend_from_slice(&[c.snd_wscale, c.rcv_wscale, c.options, 0]);
                for v in [
                    c.timestamp,
                    c.snd_wl1,
                    c.snd_wnd,
                    c.max_window,
                    c.rcv_wnd,
                    c.rcv_wup,
                    c.unsent,
                ] {
                    wire::put_u32(&mut out, v);
                }
                for q in [&c.send_queue, &c.recv_queue] {
                    wire::put_u32(&mut out, q.len() as u32);
                    out.extend_from_slice(q);
                }
            }
            FdState::Udp(u) => {
                put_addr(&mut out, &u.addr, 0);
                for v in [u.sockopts, u.rcvbuf, u.sndbuf, u.dropped] {
                    wire::put_u32(&mut out, v);
                }
            }
        }
        out
    }

    /// Decodes the `contents` of an fd of `kind`; `Err` says what is wrong (a size that does
    /// not fit the kind), `Ok(None)` for kinds without such state.
    pub fn decode(kind: FdKind, b: &[u8]) -> Result<Option<FdState>, String> {
        let u32_at = |o: usize| -> u32 {
            b.get(o..o + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let u64_at = |o: usize| -> u64 {
            b.get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let want = |n: usize| -> Result<(), String> {
            if b.len() == n {
                Ok(())
            } else {
                Err(format!("{} bytes, expected {n}", b.len()))
            }
        };
        Ok(Some(match kind {
            FdKind::Eventfd => {
                want(12)?;
                FdState::Eventfd {
                    count: u64_at(0),
                    flags: u32_at(8),
                }
            }
            FdKind::Signalfd => {
                want(8)?;
                FdState::Signalfd { mask: u64_at(0) }
            }
            FdKind::Timerfd => {
                want(32)?;
                FdState::Timerfd {
                    clockid: u32_at(0),
                    settime_flags: u32_at(4),
                    value_ns: u64_at(8),
                    interval_ns: u64_at(16),
                    ticks: u64_at(24),
                }
            }
            FdKind::Epoll => {
                if !b.len().is_multiple_of(EPOLL_ENTRY_SIZE) {
                    return Err(format!(
                        "{} bytes, not a multiple of {EPOLL_ENTRY_SIZE}",
                        b.len()
                    ));
                }
                FdState::Epoll(
                    (0..b.len() / EPOLL_ENTRY_SIZE)
                        .map(|i| {
                            let o = i * EPOLL_ENTRY_SIZE;
                            EpollEntry {
                                fd: u32_at(o),
                                events: u32_at(o + 4),
                                data: u64_at(o + 8),
                            }
                        })
                        .collect(),
                )
            }
            FdKind::Unix => {
                if b.len() < 16 {
                    return Err(format!("{} bytes, at least 16 expected", b.len()));
                }
                let sock_type = u32_at(0);
                if !matches!(sock_type, 1 | 2 | 5) {
                    return Err(format!("socket type {sock_type}"));
                }
                let count = u32_at(12) as usize;
                let mut queue = Vec::new();
                let mut at = 16usize;
                for i in 0..count {
                    let len = u32_at(at) as usize;
                    let msg = at
                        .checked_add(4)
                        .and_then(|s| Some((s, s.checked_add(len)?)))
                        .and_then(|(s, e)| b.get(s..e))
                        .ok_or_else(|| format!("message {i} of {count} runs past the end"))?;
                    queue.push(msg.to_vec());
                    at += 4 + len;
                }
                if at != b.len() {
                    return Err(format!("{} bytes after the queued messages", b.len() - at));
                }
                FdState::Unix {
                    sock_type,
                    peer: u64_at(4),
                    queue,
                }
            }
            FdKind::Inotify => decode_inotify(b)?,
            FdKind::Memfd => decode_memfd(b)?,
            FdKind::UnixSocket => FdState::UnixSocket(UnixSocket::decode(b)?),
            FdKind::Tcp => {
                if b.len() < TCP_FIXED_SIZE + 8 {
                    return Err(format!(
                        "{} bytes, at least {} expected",
                        b.len(),
                        TCP_FIXED_SIZE + 8
                    ));
                }
                let (addr, state) = get_addr(b)?;
                if !matches!(state, TCP_ESTABLISHED | TCP_CLOSE | TCP_LISTEN) {
                    return Err(format!("TCP state {state}"));
                }
                let sockopts = u32_at(40);
                if sockopts & !SOCKOPT_ALL != 0 {
                    return Err(format!("socket option bits {sockopts:#x}"));
                }
                let byte = |o: usize| b.get(o).copied().unwrap_or(0);
                if byte(83) != 0 {
                    return Err("nonzero reserved byte 83".into());
                }
                let mut at = TCP_FIXED_SIZE;
                let mut queue = |name: &str| -> Result<Vec<u8>, String> {
                    let len = u32_at(at) as usize;
                    let q = at
                        .checked_add(4)
                        .and_then(|s| Some((s, s.checked_add(len)?)))
                        .and_then(|(s, e)| b.get(s..e))
                        .ok_or_else(|| format!("the {name} queue runs past the end"))?;
                    at += 4 + len;
                    Ok(q.to_vec())
                };
                let send_queue = queue("send")?;
                let recv_queue = queue("receive")?;
                if at != b.len() {
                    return Err(format!("{} bytes after the queues", b.len() - at));
                }
                let unsent = u32_at(108);
                if unsent as usize > send_queue.len() {
                    return Err(format!(
                        "{unsent} unsent bytes in a send queue of {}",
                        send_queue.len()
                    ));
                }
                FdState::Tcp(Box::new(TcpState {
                    addr,
                    state,
                    sockopts,
                    keepidle: u32_at(44),
                    keepintvl: u32_at(48),
                    keepcnt: u32_at(52),
                    rcvbuf: u32_at(56),
                    sndbuf: u32_at(60),
                    backlog: u32_at(64),
                    conn: TcpConn {
                        snd_seq: u32_at(68),
                        rcv_seq: u32_at(72),
                        mss: u32_at(76),
                        snd_wscale: byte(80),
                        rcv_wscale: byte(81),
                        options: byte(82),
                        timestamp: u32_at(84),
                        snd_wl1: u32_at(88),
                        snd_wnd: u32_at(92),
                        max_window: u32_at(96),
                        rcv_wnd: u32_at(100),
                        rcv_wup: u32_at(104),
                        unsent,
                        send_queue,
                        recv_queue,
                    },
                }))
            }
            FdKind::Udp => {
                want(UDP_SIZE)?;
                let (addr, reserved) = get_addr(b)?;
                if reserved != 0 {
                    return Err(format!("reserved field {reserved}"));
                }
                let sockopts = u32_at(40);
                if sockopts & !SOCKOPT_ALL != 0 {
                    return Err(format!("socket option bits {sockopts:#x}"));
                }
                FdState::Udp(UdpState {
                    addr,
                    sockopts,
                    rcvbuf: u32_at(44),
                    sndbuf: u32_at(48),
                    dropped: u32_at(52),
                })
            }
            FdKind::Reg | FdKind::Pipe | FdKind::Fifo | FdKind::Chr | FdKind::Tty => {
                return Ok(None)
            }
        }))
    }
}

impl Cursor<'_> {
    fn end(&self) -> Result<(), String> {
        match self.b.len() - self.at.min(self.b.len()) {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last entry")),
        }
    }
}

fn decode_inotify(b: &[u8]) -> Result<FdState, String> {
    let mut c = Cursor { b, at: 0 };
    let count = c.u32("count")?;
    let mut watches = Vec::new();
    let mut last = 0u32;
    for i in 0..count {
        let what = format!("watch {i} of {count}");
        let wd = c.u32(&what)?;
        if wd <= last {
            return Err(format!(
                "watch descriptor {wd} is not above the previous one ({last})"
            ));
        }
        last = wd;
        let mask = c.u32(&what)?;
        let dev = c.u64(&what)?;
        let ino = c.u64(&what)?;
        let path = c
            .bytes(&format!("path of {what}"), MAX_PATH as usize)?
            .to_vec();
        watches.push(InotifyWatch {
            wd,
            mask,
            dev,
            ino,
            path,
        });
    }
    c.end()?;
    Ok(FdState::Inotify(watches))
}

fn decode_memfd(b: &[u8]) -> Result<FdState, String> {
    let mut c = Cursor { b, at: 0 };
    let flags = c.u32("flags")?;
    let seals = c.u32("seals")?;
    let size = c.u64("size")?;
    let name = c.bytes("name", MAX_MEMFD_NAME)?.to_vec();
    let count = c.u32("count")?;
    let mut extents: Vec<MemfdExtent> = Vec::new();
    let mut end = 0u64;
    for i in 0..count {
        let what = format!("extent {i} of {count}");
        let offset = c.u64(&what)?;
        let data = c.bytes(&what, usize::MAX)?;
        if offset < end {
            return Err(format!(
                "{what} at {offset} overlaps or precedes the previous one"
            ));
        }
        end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| format!("{what} ends past the size {size}"))?;
        extents.push(MemfdExtent {
            offset,
            data: data.to_vec(),
        });
    }
    c.end()?;
    Ok(FdState::Memfd {
        flags,
        seals,
        size,
        name,
        extents,
    })
}

/// `FD_CLOEXEC`.
pub const FD_CLOEXEC: u32 = 1;

/// One open file descriptor (spec §3.13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd<'data> {
    /// PID.
    pub pid: u32,
    /// Descriptor number.
    pub fd: u32,
    /// `FD_*` flags.
    pub fd_flags: u32,
    /// Kind.
    pub kind: FdKind,
    /// `O_*` open flags.
    pub open_flags: u32,
    /// File offset.
    pub pos: u64,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino` (the pipe id for pipes).
    pub ino: u64,
    /// `st_rdev`.
    pub rdev: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime`, ns.
    pub mtime_ns: i64,
    /// `st_mode`.
    pub mode: u32,
    /// Whether the file was deleted while open.
    pub deleted: bool,
    /// Path.
    pub path: ByteString,
    /// Contents of a deleted file; the state of an anonymous-inode fd ([`FdState`]).
    pub contents: Blob<'data>,
    /// Open file description: fds of the image with the same nonzero value share one (and so
    /// its offset and status flags); 0 when no other fd does (spec 1.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub description: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Fd<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> Fd<'static> {
        Fd {
            pid: self.pid,
            fd: self.fd,
            fd_flags: self.fd_flags,
            kind: self.kind,
            open_flags: self.open_flags,
            pos: self.pos,
            dev: self.dev,
            ino: self.ino,
            rdev: self.rdev,
            size: self.size,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
            deleted: self.deleted,
            path: self.path,
            contents: self.contents.into_owned(),
            description: self.description,
        }
    }
}

/// Parses an FD payload (`spec/crak-format.md#fd`, §3.13); `contents` borrows `payload`.
///
/// Rejects (`bad-value`) an fd number of 1048576 or more, an unknown `kind`, a `deleted` other
/// than 0 or 1 and a path above 4096 bytes.
pub fn parse(payload: &[u8]) -> Result<Fd<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Fd<'_>> {
    fields_named(i, &FD_NAMES)
}

/// The field names an FD layout's errors carry: an FD record's own, or (1.3) those of a file
/// in flight in an SCM record (`files.kind`).
pub(crate) struct FdNames {
    pid: &'static str,
    fd: &'static str,
    fd_flags: &'static str,
    kind: &'static str,
    reserved: &'static str,
    open_flags: &'static str,
    description: &'static str,
    pos: &'static str,
    dev: &'static str,
    ino: &'static str,
    rdev: &'static str,
    size: &'static str,
    mtime_ns: &'static str,
    mode: &'static str,
    deleted: &'static str,
    path: &'static str,
    contents: &'static str,
}

const FD_NAMES: FdNames = FdNames {
    pid: "pid",
    fd: "fd",
    fd_flags: "fd_flags",
    kind: "kind",
    reserved: "reserved",
    open_flags: "open_flags",
    description: "description",
    pos: "pos",
    dev: "dev",
    ino: "ino",
    rdev: "rdev",
    size: "size",
    mtime_ns: "mtime_ns",
    mode: "mode",
    deleted: "deleted",
    path: "path",
    contents: "contents",
};

/// The names of a file in flight's fields in an SCM record (1.3).
pub(crate) const SCM_FILE_NAMES: FdNames = FdNames {
    pid: "files.pid",
    fd: "files.fd",
    fd_flags: "files.fd_flags",
    kind: "files.kind",
    reserved: "files.reserved",
    open_flags: "files.open_flags",
    description: "files.description",
    pos: "files.pos",
    dev: "files.dev",
    ino: "files.ino",
    rdev: "files.rdev",
    size: "files.size",
    mtime_ns: "files.mtime_ns",
    mode: "files.mode",
    deleted: "files.deleted",
    path: "files.path",
    contents: "files.contents",
};

/// An FD layout whose errors carry the names `n`.
pub(crate) fn fields_named<'a>(i: &'a [u8], n: &FdNames) -> PResult<'a, Fd<'a>> {
    let (r, pid) = wire::u32f(n.pid)(i)?;
    let (r, fd) = wire::checked(n.fd, wire::u32f(n.fd), |v| {
        if v < MAX_FDS {
            Ok(())
        } else {
            Err(format!("{v} is not below {MAX_FDS}"))
        }
    })(r)?;
    let (r, fd_flags) = wire::u32f(n.fd_flags)(r)?;
    let (r2, k) = wire::u16f(n.kind)(r)?;
    let Some(kind) = FdKind::from_u16(k) else {
        return wire::fail(
            ErrorKind::BadValue,
            n.kind,
            r,
            format!("{k} is not an fd kind (1-13, 15-16)"),
        );
    };
    let (r, ()) = wire::reserved(n.reserved, 2)(r2)?;
    let (r, open_flags) = wire::u32f(n.open_flags)(r)?;
    let (r, description) = wire::u32f(n.description)(r)?;
    let (r, pos) = wire::u64f(n.pos)(r)?;
    let (r, dev) = wire::u64f(n.dev)(r)?;
    let (r, ino) = wire::u64f(n.ino)(r)?;
    let (r, rdev) = wire::u64f(n.rdev)(r)?;
    let (r, size) = wire::u64f(n.size)(r)?;
    let (r, mtime_ns) = wire::i64f(n.mtime_ns)(r)?;
    let (r, mode) = wire::u32f(n.mode)(r)?;
    let (r, deleted) = wire::bool32(n.deleted)(r)?;
    let (r, path) = wire::bytes(n.path, MAX_PATH)(r)?;
    let (r, contents) = wire::bytes(n.contents, u32::MAX)(r)?;
    Ok((
        r,
        Fd {
            pid,
            fd,
            fd_flags,
            kind,
            open_flags,
            pos,
            dev,
            ino,
            rdev,
            size,
            mtime_ns,
            mode,
            deleted,
            path: path.into(),
            contents: contents.into(),
            description,
        },
    ))
}

/// Appends the FD payload of `f` (§3.13).
pub fn write(f: &Fd<'_>, out: &mut Vec<u8>) {
    wire::put_u32(out, f.pid);
    wire::put_u32(out, f.fd);
    wire::put_u32(out, f.fd_flags);
    wire::put_u16(out, f.kind as u16);
    wire::put_u16(out, 0);
    wire::put_u32(out, f.open_flags);
    wire::put_u32(out, f.description);
    for v in [f.pos, f.dev, f.ino, f.rdev, f.size] {
        wire::put_u64(out, v);
    }
    wire::put_i64(out, f.mtime_ns);
    wire::put_u32(out, f.mode);
    wire::put_u32(out, u32::from(f.deleted));
    wire::put_bytes(out, f.path.as_bytes());
    wire::put_bytes(out, f.contents.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Fd<'static> {
        Fd {
            pid: 1,
            fd: 3,
            fd_flags: FD_CLOEXEC,
            kind: FdKind::Reg,
            open_flags: 0o2,
            pos: 5,
            dev: 0x803,
            ino: 42,
            rdev: 0,
            size: 5,
            mtime_ns: 0,
            mode: 0o100644,
            deleted: true,
            path: "/tmp/x (deleted)".into(),
            contents: b"hello".to_vec().into(),
            description: 0,
        }
    }

    #[test]
    fn byte_example() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        assert_eq!(&b[0..16], &[1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[16..24], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[72..80], &[0xa4, 0x81, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[80..84], &[16, 0, 0, 0]);
        assert_eq!(&b[100..], &[5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(parse(&b).unwrap(), example());
    }

    #[test]
    fn anon_state_round_trips_and_sizes_are_checked() {
        let states = [
            (
                FdKind::Eventfd,
                FdState::Eventfd {
                    count: u64::MAX - 1,
                    flags: EVENTFD_SEMAPHORE,
                },
            ),
            (FdKind::Signalfd, FdState::Signalfd { mask: 1 << 9 }),
            (
                FdKind::Timerfd,
                FdState::Timerfd {
                    clockid: 1,
                    settime_flags: 1,
                    value_ns: 5,
                    interval_ns: 20_000_000,
                    ticks: 3,
                },
            ),
            (
                FdKind::Epoll,
                FdState::Epoll(vec![EpollEntry {
                    fd: 7,
                    events: 0x8000_0001,
                    data: 42,
                }]),
            ),
        ];
        for (kind, s) in states {
            let b = s.encode();
            assert_eq!(FdState::decode(kind, &b), Ok(Some(s)));
            assert!(FdState::decode(kind, &b[..b.len() - 1]).is_err());
        }
        assert_eq!(
            FdState::decode(FdKind::Epoll, &[]),
            Ok(Some(FdState::Epoll(vec![])))
        );
        let unix = FdState::Unix {
            sock_type: 2,
            peer: 77,
            queue: vec![b"one".to_vec(), vec![], b"three".to_vec()],
        };
        let b = unix.encode();
        assert_eq!(FdState::decode(FdKind::Unix, &b), Ok(Some(unix)));
        assert!(FdState::decode(FdKind::Unix, &b[..b.len() - 1]).is_err());
        let mut huge = b.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FdState::decode(FdKind::Unix, &huge).is_err());
        assert_eq!(FdState::decode(FdKind::Reg, b"x"), Ok(None));
    }

    fn listener() -> UnixSocket {
        UnixSocket {
            sock_type: 1,
            state: UNIX_LISTENING,
            backlog: 16,
            name_uid: 1000,
            name_gid: 100,
            name_mode: 0o140755,
            name: b"/run/s".to_vec(),
            pending: vec![UnixPending {
                ino: 9,
                client: 10,
                queue: vec![b"hi".to_vec()],
            }],
            ..UnixSocket::default()
        }
    }

    #[test]
    fn unix_socket_byte_layout_and_bounds() {
        let s = FdState::UnixSocket(listener());
        let b = s.encode();
        assert_eq!(&b[0..8], &[1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[12..16], &[16, 0, 0, 0]);
        assert_eq!(&b[36..46], b"\x06\0\0\0/run/s");
        // peer_name (empty), no queued message, one pending connection.
        assert_eq!(&b[46..54], &[0; 8]);
        assert_eq!(&b[54..58], &[1, 0, 0, 0]);
        assert_eq!(b.len(), 58 + 8 + 8 + 4 + 4 + 2);
        assert_eq!(FdState::decode(FdKind::UnixSocket, &b), Ok(Some(s)));
        for cut in 0..b.len() {
            assert!(FdState::decode(FdKind::UnixSocket, &b[..cut]).is_err());
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(FdState::decode(FdKind::UnixSocket, &extra).is_err());
        let mut long = b.clone();
        long[36..40].copy_from_slice(&109u32.to_le_bytes());
        assert!(FdState::decode(FdKind::UnixSocket, &long).is_err());
        let mut many = b.clone();
        many[54..58].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FdState::decode(FdKind::UnixSocket, &many).is_err());
        for (at, v) in [(0usize, 3u32), (4, 3), (8, 0x40)] {
            let mut bad = b.clone();
            bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
            assert!(FdState::decode(FdKind::UnixSocket, &bad).is_err(), "{at}");
        }
        let dgram = FdState::UnixSocket(UnixSocket {
            sock_type: 2,
            state: UNIX_CONNECTED,
            flags: UNIX_SHUT_WR | UNIX_PEER_EXTERNAL,
            peer: 7,
            name: b"\0abstract".to_vec(),
            peer_name: b"/run/log".to_vec(),
            queue: vec![
                UnixMessage {
                    sender: b"\0other".to_vec(),
                    data: b"x".to_vec(),
                },
                UnixMessage::default(),
            ],
            ..UnixSocket::default()
        });
        let b = dgram.encode();
        assert_eq!(FdState::decode(FdKind::UnixSocket, &b), Ok(Some(dgram)));
    }

    /// An established IPv4 connection with both queues.
    pub(crate) fn tcp_example() -> FdState {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[127, 0, 0, 1]);
        FdState::Tcp(Box::new(TcpState {
            addr: InetAddr {
                family: AF_INET,
                local,
                remote: local,
                local_port: 8080,
                remote_port: 41234,
            },
            state: TCP_ESTABLISHED,
            sockopts: SOCKOPT_REUSEADDR | SOCKOPT_NODELAY,
            keepidle: 7200,
            keepintvl: 75,
            keepcnt: 9,
            rcvbuf: 131072,
            sndbuf: 16384,
            backlog: 0,
            conn: TcpConn {
                snd_seq: 0xfffffff0,
                rcv_seq: 77,
                mss: 65483,
                snd_wscale: 7,
                rcv_wscale: 7,
                options: TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE,
                timestamp: 123456,
                snd_wl1: 70,
                snd_wnd: 65536,
                max_window: 65536,
                rcv_wnd: 65536,
                rcv_wup: 77,
                unsent: 2,
                send_queue: b"abc".to_vec(),
                recv_queue: b"line 1\n".to_vec(),
            },
        }))
    }

    #[test]
    fn tcp_and_udp_state() {
        let t = tcp_example();
        let b = t.encode();
        assert_eq!(b.len(), TCP_FIXED_SIZE + 4 + 3 + 4 + 7);
        assert_eq!(&b[0..8], &[2, 0, 1, 0, 127, 0, 0, 1]);
        assert_eq!(&b[36..40], &[0x90, 0x1f, 0x12, 0xa1]);
        assert_eq!(&b[112..119], &[3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(FdState::decode(FdKind::Tcp, &b), Ok(Some(t.clone())));
        assert!(FdState::decode(FdKind::Tcp, &b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[2] = 2; // SYN_SENT
        assert!(FdState::decode(FdKind::Tcp, &bad)
            .unwrap_err()
            .contains("state"));
        let mut bad = b.clone();
        bad[0] = 1;
        assert!(FdState::decode(FdKind::Tcp, &bad)
            .unwrap_err()
            .contains("family"));
        let mut bad = b.clone();
        bad[10] = 1; // past the IPv4 address
        assert!(FdState::decode(FdKind::Tcp, &bad).is_err());
        let mut bad = b.clone();
        bad[108] = 4; // more unsent than queued
        assert!(FdState::decode(FdKind::Tcp, &bad)
            .unwrap_err()
            .contains("unsent"));
        let mut bad = b.clone();
        bad[112..116].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FdState::decode(FdKind::Tcp, &bad).is_err());
        let u = FdState::Udp(UdpState {
            addr: InetAddr {
                family: AF_INET6,
                local: std::net::Ipv6Addr::LOCALHOST.octets(),
                remote: [0; 16],
                local_port: 5353,
                remote_port: 0,
            },
            sockopts: SOCKOPT_V6ONLY | SOCKOPT_BROADCAST,
            rcvbuf: 1,
            sndbuf: 2,
            dropped: 3,
        });
        let b = u.encode();
        assert_eq!(b.len(), UDP_SIZE);
        assert_eq!(FdState::decode(FdKind::Udp, &b), Ok(Some(u)));
        let mut bad = b.clone();
        bad[40] = 0; // unknown option bit
        bad[41] = 1;
        assert!(FdState::decode(FdKind::Udp, &bad).is_err());
        assert!(FdState::decode(FdKind::Udp, &b[..UDP_SIZE - 1]).is_err());
    }

    #[test]
    fn inotify_and_memfd_state_round_trip_and_are_checked() {
        let ino = FdState::Inotify(vec![
            InotifyWatch {
                wd: 1,
                mask: 0x100,
                dev: 0x803,
                ino: 12,
                path: b"/tmp/d".to_vec(),
            },
            InotifyWatch {
                wd: 3,
                mask: 0x2,
                dev: 0x803,
                ino: 13,
                path: b"/tmp/f".to_vec(),
            },
        ]);
        let b = ino.encode();
        assert_eq!(b.len(), 4 + 2 * (24 + 4 + 6));
        assert_eq!(FdState::decode(FdKind::Inotify, &b), Ok(Some(ino)));
        assert!(FdState::decode(FdKind::Inotify, &b[..b.len() - 1]).is_err());
        let mut dup = b.clone();
        dup[38..42].copy_from_slice(&1u32.to_le_bytes());
        assert!(FdState::decode(FdKind::Inotify, &dup).is_err());
        let mut many = b.clone();
        many[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FdState::decode(FdKind::Inotify, &many).is_err());

        let m = FdState::Memfd {
            flags: MFD_ALLOW_SEALING,
            seals: 0x6,
            size: 8192,
            name: b"buf".to_vec(),
            extents: vec![
                MemfdExtent {
                    offset: 0,
                    data: b"hello".to_vec(),
                },
                MemfdExtent {
                    offset: 4096,
                    data: b"x".to_vec(),
                },
            ],
        };
        let b = m.encode();
        assert_eq!(FdState::decode(FdKind::Memfd, &b), Ok(Some(m)));
        assert!(FdState::decode(FdKind::Memfd, &b[..b.len() - 1]).is_err());
        let mut small = b.clone();
        small[8..16].copy_from_slice(&4096u64.to_le_bytes());
        assert!(FdState::decode(FdKind::Memfd, &small).is_err());
        let mut overlap = b.clone();
        let second = 16 + 7 + 4 + 8 + 4 + 5;
        overlap[second..second + 8].copy_from_slice(&2u64.to_le_bytes());
        assert!(FdState::decode(FdKind::Memfd, &overlap).is_err());
        assert!(FdState::decode(FdKind::Memfd, &[]).is_err());
    }

    #[test]
    fn rejects_bad_kind_fd_and_deleted() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        let mut k = b.clone();
        k[12..14].copy_from_slice(&0x7777u16.to_le_bytes());
        assert_eq!(parse(&k).unwrap_err().field, "kind");
        k[12..14].copy_from_slice(&13u16.to_le_bytes());
        assert_eq!(parse(&k).unwrap().kind, FdKind::UnixSocket);
        k[12..14].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(parse(&k).unwrap_err().field, "kind");
        let mut d = b.clone();
        d[76] = 2;
        let e = parse(&d).unwrap_err();
        assert_eq!((e.field, e.offset), ("deleted", 76));
        let mut n = b.clone();
        n[4..8].copy_from_slice(&MAX_FDS.to_le_bytes());
        assert_eq!(parse(&n).unwrap_err().field, "fd");
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "contents", 100)
        );
    }

    proptest! {
        #[test]
        fn unix_socket_state_round_trips(s in crate::arbitrary::unix_socket()) {
            let st = FdState::UnixSocket(s);
            prop_assert_eq!(FdState::decode(FdKind::UnixSocket, &st.encode()), Ok(Some(st)));
        }

        #[test]
        fn inet_state_round_trips((kind, st) in crate::arbitrary::inet_state()) {
            prop_assert_eq!(FdState::decode(kind, &st.encode()), Ok(Some(st)));
        }

        #[test]
        fn round_trip(f in crate::arbitrary::fd(1)) {
            let mut b = Vec::new();
            write(&f, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), f);
        }
    }
}
