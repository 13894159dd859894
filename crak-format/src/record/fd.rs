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
            _ => return None,
        })
    }
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
    /// Contents of a deleted file.
    pub contents: Blob<'data>,
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
            format!("{k} is not an fd kind (1-5)"),
        );
    };
    let (r, ()) = wire::reserved("reserved", 2)(r2)?;
    let (r, open_flags) = wire::u32f("open_flags")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
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
    wire::put_u32(out, 0);
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
    fn rejects_bad_kind_fd_and_deleted() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        let mut k = b.clone();
        k[12] = 9;
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
