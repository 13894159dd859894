//! PROCESS record, `spec/crak-format.md#process`.

use crate::bytes::ByteString;
use serde::{Deserialize, Serialize};

/// Identity of one process and its place in the tree (spec §3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// PID.
    pub pid: u32,
    /// Parent PID (0 when the parent is outside the image).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Personality.
    pub personality: u32,
    /// umask.
    pub umask: u32,
    /// Reserved flags.
    pub flags: u32,
    /// `comm`.
    pub comm: ByteString,
    /// `/proc/PID/exe` target.
    pub exe: ByteString,
    /// Working directory.
    pub cwd: ByteString,
    /// Root directory.
    pub root: ByteString,
    /// `/proc/PID/cmdline` bytes.
    pub cmdline: ByteString,
    /// `/proc/PID/environ` bytes.
    pub environ: ByteString,
    /// Thread ids, leader first.
    pub tids: Vec<u32>,
}
