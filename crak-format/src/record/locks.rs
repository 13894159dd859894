//! LOCKS record (1.2), `spec/crak-format.md#locks`.

use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most locks of one process.
pub const MAX_LOCKS: u32 = 1 << 20;
/// Bytes of one lock.
pub const LOCK_SIZE: usize = 24;

/// Which kind of file lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum LockKind {
    /// `flock(2)`: whole file, owned by the open file description.
    Flock = 1,
    /// `fcntl(F_SETLK)`: a byte range, owned by the process.
    Posix = 2,
    /// `fcntl(F_OFD_SETLK)`: a byte range, owned by the open file description.
    Ofd = 3,
}

impl LockKind {
    /// The kind for its wire value.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => LockKind::Flock,
            2 => LockKind::Posix,
            3 => LockKind::Ofd,
            _ => return None,
        })
    }
}

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum LockType {
    /// `F_RDLCK` / `LOCK_SH`.
    Read = 0,
    /// `F_WRLCK` / `LOCK_EX`.
    Write = 1,
}

impl LockType {
    /// The type for its wire value.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => LockType::Read,
            1 => LockType::Write,
            _ => return None,
        })
    }
}

/// One lock held by the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// An fd of the process on the locked file (for FLOCK and OFD: one whose open file
    /// description owns the lock).
    pub fd: u32,
    /// Kind.
    pub kind: LockKind,
    /// Shared or exclusive.
    #[serde(rename = "type")]
    pub lock_type: LockType,
    /// First byte (0 for FLOCK).
    pub start: u64,
    /// Bytes (0: to the end of the file, whatever its size; 0 for FLOCK).
    pub len: u64,
}

/// The file locks of a process (spec §3.22, 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locks {
    /// PID.
    pub pid: u32,
    /// Locks.
    pub locks: Vec<Lock>,
}

/// Parses a LOCKS payload (`spec/crak-format.md#locks`, §3.22). Rejects more than 2^20 locks, an
/// unknown `kind` or `type`.
pub fn parse(payload: &[u8]) -> Result<Locks, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Locks> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, locks) = wire::list("locks", MAX_LOCKS, LOCK_SIZE, |i| {
        let (r, fd) = wire::u32f("locks.fd")(i)?;
        let (r2, k) = wire::u16f("locks.kind")(r)?;
        let Some(kind) = LockKind::from_u16(k) else {
            return wire::fail(
                ErrorKind::BadValue,
                "locks.kind",
                r,
                format!("{k} is not a lock kind (1-3)"),
            );
        };
        let (r3, t) = wire::u16f("locks.type")(r2)?;
        let Some(lock_type) = LockType::from_u16(t) else {
            return wire::fail(
                ErrorKind::BadValue,
                "locks.type",
                r2,
                format!("{t} is not a lock type (0 read, 1 write)"),
            );
        };
        let (r, start) = wire::u64f("locks.start")(r3)?;
        let (r, len) = wire::u64f("locks.len")(r)?;
        Ok((
            r,
            Lock {
                fd,
                kind,
                lock_type,
                start,
                len,
            },
        ))
    })(r)?;
    Ok((r, Locks { pid, locks }))
}

/// Appends the LOCKS payload of `l` (§3.22).
pub fn write(l: &Locks, out: &mut Vec<u8>) {
    wire::put_u32(out, l.pid);
    wire::put_count(out, l.locks.len());
    for k in &l.locks {
        wire::put_u32(out, k.fd);
        wire::put_u16(out, k.kind as u16);
        wire::put_u16(out, k.lock_type as u16);
        wire::put_u64(out, k.start);
        wire::put_u64(out, k.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let l = Locks {
            pid: 2,
            locks: vec![Lock {
                fd: 3,
                kind: LockKind::Posix,
                lock_type: LockType::Write,
                start: 10,
                len: 0,
            }],
        };
        let mut b = Vec::new();
        write(&l, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            2, 0, 0, 0, 1, 0, 0, 0,
            3, 0, 0, 0, 2, 0, 1, 0,
            10, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), l);
        let mut k = b.clone();
        k[12] = 4;
        let e = parse(&k).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "locks.kind", 12)
        );
        let mut t = b.clone();
        t[14] = 2;
        let e = parse(&t).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "locks.type", 14)
        );
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "locks", 4)
        );
    }

    proptest! {
        #[test]
        fn round_trip(l in crate::arbitrary::locks(1)) {
            let mut b = Vec::new();
            write(&l, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), l);
        }
    }
}
