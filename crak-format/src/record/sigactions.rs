//! SIGACTIONS record, `spec/crak-format.md#sigactions`.

use serde::{Deserialize, Serialize};

/// Signal dispositions of a process (spec §3.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigActions {
    /// PID.
    pub pid: u32,
    /// One entry per signal.
    pub actions: Vec<SigAction>,
}

/// The disposition of one signal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Signal number, 1–64.
    pub signo: u32,
    /// 0 = SIG_DFL, 1 = SIG_IGN, else the handler's address.
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}
