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
                if b.len() % EPOLL_ENTRY_SIZE != 0 {
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
            FdKind::Reg | FdKind::Pipe | FdKind::Fifo | FdKind::Chr | FdKind::Tty => {
                return Ok(None)
            }
        }))
    }
}

/// A cursor over `contents` whose reads fail, naming what was cut short, instead of panicking.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|e| self.b.get(self.at..e))
            .ok_or_else(|| format!("{what} runs past the end"))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let s = self.take(8, what)?;
        Ok(u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
    }
    fn bytes(&mut self, max: usize, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(format!("{what} is {n} bytes, more than {max}"));
        }
        self.take(n, what)
    }
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
            .bytes(MAX_PATH as usize, &format!("path of {what}"))?
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
    let name = c.bytes(MAX_MEMFD_NAME, "name")?.to_vec();
    let count = c.u32("count")?;
    let mut extents: Vec<MemfdExtent> = Vec::new();
    let mut end = 0u64;
    for i in 0..count {
        let what = format!("extent {i} of {count}");
        let offset = c.u64(&what)?;
        let data = c.bytes(usize::MAX, &what)?;
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
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, fd) = wire::checked("fd", wire::u32f("fd"), |v| {
        if v < MAX_FDS {
            Ok(())
        } else {
            Err(format!("{v} is not below {MAX_FDS}"))
        }
    })(r)?;
    let (r, fd_flags) = wire::u32f("fd_flags")(r)?;
    let (r2, k) = wire::u16f("kind")(r)?;
    let Some(kind) = FdKind::from_u16(k) else {
        return wire::fail(
            ErrorKind::BadValue,
            "kind",
            r,
            format!("{k} is not an fd kind (1-10, 15-16)"),
        );
    };
    let (r, ()) = wire::reserved("reserved", 2)(r2)?;
    let (r, open_flags) = wire::u32f("open_flags")(r)?;
    let (r, description) = wire::u32f("description")(r)?;
    let (r, pos) = wire::u64f("pos")(r)?;
    let (r, dev) = wire::u64f("dev")(r)?;
    let (r, ino) = wire::u64f("ino")(r)?;
    let (r, rdev) = wire::u64f("rdev")(r)?;
    let (r, size) = wire::u64f("size")(r)?;
    let (r, mtime_ns) = wire::i64f("mtime_ns")(r)?;
    let (r, mode) = wire::u32f("mode")(r)?;
    let (r, deleted) = wire::bool32("deleted")(r)?;
    let (r, path) = wire::bytes("path", MAX_PATH)(r)?;
    let (r, contents) = wire::bytes("contents", u32::MAX)(r)?;
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
        k[13] = 0;
        k[12] = 0;
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
        fn round_trip(f in crate::arbitrary::fd(1)) {
            let mut b = Vec::new();
            write(&f, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), f);
        }
    }
}
