//! MM record, `spec/crak-format.md#mm`.

use serde::{Deserialize, Serialize};

/// The address-space bounds the kernel keeps per process (spec §3.4), as set by `PR_SET_MM_MAP`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Mm {
    pub pid: u32,
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Auxiliary vector as (key, value) pairs.
    pub auxv: Vec<(u64, u64)>,
}
