//! VMA record, `spec/crak-format.md#vma`.

use crate::bytes::ByteString;
use serde::{Deserialize, Serialize};

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
