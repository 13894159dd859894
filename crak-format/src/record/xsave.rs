//! XSAVE record, `spec/crak-format.md#xsave`.

use crate::bytes::Blob;
use serde::{Deserialize, Serialize};

/// The extended FPU/vector state of one thread (spec §3.8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xsave<'data> {
    /// PID.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// XSTATE_BV of the area.
    pub xstate_bv: u64,
    /// The XSAVE area, standard format.
    pub area: Blob<'data>,
}
