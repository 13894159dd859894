//! SIGQUEUE record, `spec/crak-format.md#sigqueue`.

use crate::bytes::Blob;
use serde::{Deserialize, Serialize};

/// Size of one kernel `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;

/// Pending signals of a thread or of the whole process (spec §3.9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigQueue<'data> {
    /// PID.
    pub pid: u32,
    /// Thread id, or 0 for the process-wide queue.
    pub tid: u32,
    /// `siginfo_t` entries, each [`SIGINFO_SIZE`] bytes.
    pub siginfos: Vec<Blob<'data>>,
}
