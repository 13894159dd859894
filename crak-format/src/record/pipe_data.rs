//! PIPE_DATA record, `spec/crak-format.md#pipe-data`.

use crate::bytes::Blob;
use serde::{Deserialize, Serialize};

/// Bytes buffered in a pipe (spec §3.14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeData<'data> {
    /// Pipe id (the pipe inode).
    pub pipe_id: u64,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Buffered bytes in order.
    pub data: Blob<'data>,
}
