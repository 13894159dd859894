//! VMA record, `spec/crak-format.md#vma`.

use crate::bytes::ByteString;
use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Largest `path`.
pub const MAX_PATH: u32 = 4096;
/// Most VMAs of one process.
pub const MAX_VMAS: usize = 1 << 20;

/// What backs a mapping (spec §3.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum VmaKind {
    Anon = 1,
    File = 2,
    Heap = 3,
    Stack = 4,
    Vdso = 5,
    Vvar = 6,
    VvarVclock = 7,
    VvarOther = 8,
    Vsyscall = 9,
    SysvShm = 10,
}

impl VmaKind {
    /// The kind for its wire value.
    pub fn from_u16(v: u16) -> Option<Self> {
        use VmaKind::*;
        Some(match v {
            1 => Anon,
            2 => File,
            3 => Heap,
            4 => Stack,
            5 => Vdso,
            6 => Vvar,
            7 => VvarVclock,
            8 => VvarOther,
            9 => Vsyscall,
            10 => SysvShm,
            _ => return None,
        })
    }

    /// Whether the kernel provides this mapping's contents (vDSO, vvar, vsyscall).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            VmaKind::Vdso
                | VmaKind::Vvar
                | VmaKind::VvarVclock
                | VmaKind::VvarOther
                | VmaKind::Vsyscall
        )
    }
}

/// `PROT_READ`.
pub const PROT_READ: u32 = 1;
/// `PROT_WRITE`.
pub const PROT_WRITE: u32 = 2;
/// `PROT_EXEC`.
pub const PROT_EXEC: u32 = 4;
/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x1;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x2;
/// `MAP_GROWSDOWN`.
pub const MAP_GROWSDOWN: u32 = 0x100;

/// madvise bits of [`Vma::madvise`].
#[allow(missing_docs)]
pub mod madv {
    pub const DONTFORK: u32 = 1 << 0;
    pub const WIPEONFORK: u32 = 1 << 1;
    pub const DONTDUMP: u32 = 1 << 2;
    pub const HUGEPAGE: u32 = 1 << 3;
    pub const NOHUGEPAGE: u32 = 1 << 4;
    pub const LOCKED: u32 = 1 << 5;
}

/// One mapping of a process's address space (spec §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// PID.
    pub pid: u32,
    /// Backing.
    pub kind: VmaKind,
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_*` bits.
    pub flags: u32,
    /// [`madv`] bits.
    pub madvise: u32,
    /// File offset in bytes.
    pub pgoff: u64,
    /// Backing file's device.
    pub dev: u64,
    /// Backing file's inode.
    pub ino: u64,
    /// Backing file's size at capture.
    pub size: u64,
    /// Backing file's mtime, ns.
    pub mtime_ns: i64,
    /// Path or special name.
    pub path: ByteString,
}

impl Vma {
    /// `rw-p` style permissions as in `/proc/PID/maps`.
    pub fn perms(&self) -> String {
        let mut s = String::with_capacity(4);
        s.push(if self.prot & PROT_READ != 0 { 'r' } else { '-' });
        s.push(if self.prot & PROT_WRITE != 0 {
            'w'
        } else {
            '-'
        });
        s.push(if self.prot & PROT_EXEC != 0 { 'x' } else { '-' });
        s.push(if self.flags & MAP_SHARED != 0 {
            's'
        } else {
            'p'
        });
        s
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the mapping is empty (invalid in an image).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Parses a VMA payload (`spec/crak-format.md#vma`, §3.10).
///
/// Rejects (`bad-value`) an unknown `kind` and a path above 4096 bytes. Alignment, emptiness and
/// overlap are the validator's (§4).
pub fn parse(payload: &[u8]) -> Result<Vma, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Vma> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r2, k) = wire::u16f("kind")(r)?;
    let Some(kind) = VmaKind::from_u16(k) else {
        return wire::fail(
            ErrorKind::BadValue,
            "kind",
            r,
            format!("{k} is not a VMA kind (1-10)"),
        );
    };
    let (r, ()) = wire::reserved("reserved", 2)(r2)?;
    let (r, start) = wire::u64f("start")(r)?;
    let (r, end) = wire::u64f("end")(r)?;
    let (r, prot) = wire::u32f("prot")(r)?;
    let (r, flags) = wire::u32f("flags")(r)?;
    let (r, madvise) = wire::u32f("madvise")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, pgoff) = wire::u64f("pgoff")(r)?;
    let (r, dev) = wire::u64f("dev")(r)?;
    let (r, ino) = wire::u64f("ino")(r)?;
    let (r, size) = wire::u64f("size")(r)?;
    let (r, mtime_ns) = wire::i64f("mtime_ns")(r)?;
    let (r, path) = wire::bytes("path", MAX_PATH)(r)?;
    Ok((
        r,
        Vma {
            pid,
            kind,
            start,
            end,
            prot,
            flags,
            madvise,
            pgoff,
            dev,
            ino,
            size,
            mtime_ns,
            path: path.into(),
        },
    ))
}

/// Appends the VMA payload of `v` (§3.10).
pub fn write(v: &Vma, out: &mut Vec<u8>) {
    wire::put_u32(out, v.pid);
    wire::put_u16(out, v.kind as u16);
    wire::put_u16(out, 0);
    wire::put_u64(out, v.start);
    wire::put_u64(out, v.end);
    wire::put_u32(out, v.prot);
    wire::put_u32(out, v.flags);
    wire::put_u32(out, v.madvise);
    wire::put_u32(out, 0);
    wire::put_u64(out, v.pgoff);
    wire::put_u64(out, v.dev);
    wire::put_u64(out, v.ino);
    wire::put_u64(out, v.size);
    wire::put_i64(out, v.mtime_ns);
    wire::put_bytes(out, v.path.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Vma {
        Vma {
            pid: 1,
            kind: VmaKind::Heap,
            start: 0x1000,
            end: 0x3000,
            prot: PROT_READ | PROT_WRITE,
            flags: MAP_PRIVATE,
            madvise: 0,
            pgoff: 0,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: -1,
            path: "[heap]".into(),
        }
    }

    #[test]
    fn byte_example() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            1, 0, 0, 0, 3, 0, 0, 0,                 // pid, kind HEAP, reserved
            0, 0x10, 0, 0, 0, 0, 0, 0,              // start
            0, 0x30, 0, 0, 0, 0, 0, 0,              // end
            3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // prot flags madvise reserved
            0, 0, 0, 0, 0, 0, 0, 0,                 // pgoff
            0, 0, 0, 0, 0, 0, 0, 0,                 // dev
            0, 0, 0, 0, 0, 0, 0, 0,                 // ino
            0, 0, 0, 0, 0, 0, 0, 0,                 // size
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // mtime_ns
            6, 0, 0, 0, b'[', b'h', b'e', b'a', b'p', b']',
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), example());
    }

    #[test]
    fn rejects_unknown_kind_at_its_offset() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        b[4] = 11;
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "kind", 4)
        );
    }

    proptest! {
        #[test]
        fn round_trip(v in crate::arbitrary::vma(1)) {
            let mut b = Vec::new();
            write(&v, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), v);
        }
    }
}
