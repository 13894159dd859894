//! RLIMITS record, `spec/crak-format.md#rlimits`.

use serde::{Deserialize, Serialize};

/// Resource limits of a process (spec §3.5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// PID.
    pub pid: u32,
    /// Limits.
    pub limits: Vec<Rlimit>,
}

/// One resource limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}
