//! FD record, `spec/crak-format.md#fd`.

use crate::bytes::{Blob, ByteString};
use serde::{Deserialize, Serialize};

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
