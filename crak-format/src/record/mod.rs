//! One module per record kind of `spec/crak-format.md` §3.

pub mod creds;
pub mod end;
pub mod fd;
pub mod header;
pub mod mm;
pub mod note;
pub mod pages;
pub mod pipe_data;
pub mod process;
pub mod rlimits;
pub mod sigactions;
pub mod sigqueue;
pub mod thread;
pub mod vma;
pub mod xsave;

/// Record kinds (`spec/crak-format.md` §3).
#[allow(missing_docs)]
pub mod kind {
    pub const HEADER: u16 = 0x0001;
    pub const PROCESS: u16 = 0x0002;
    pub const CREDS: u16 = 0x0003;
    pub const MM: u16 = 0x0004;
    pub const RLIMITS: u16 = 0x0005;
    pub const SIGACTIONS: u16 = 0x0006;
    pub const THREAD: u16 = 0x0007;
    pub const XSAVE: u16 = 0x0008;
    pub const SIGQUEUE: u16 = 0x0009;
    pub const VMA: u16 = 0x000A;
    pub const PAGES: u16 = 0x000B;
    pub const ZERO_PAGES: u16 = 0x000C;
    pub const FD: u16 = 0x000D;
    pub const PIPE_DATA: u16 = 0x000E;
    pub const NOTE: u16 = 0x0010;
    pub const END: u16 = 0x00FF;

    /// The record's name as the spec spells it, or `None` for an unknown kind.
    pub fn name(kind: u16) -> Option<&'static str> {
        Some(match kind {
            HEADER => "HEADER",
            PROCESS => "PROCESS",
            CREDS => "CREDS",
            MM => "MM",
            RLIMITS => "RLIMITS",
            SIGACTIONS => "SIGACTIONS",
            THREAD => "THREAD",
            XSAVE => "XSAVE",
            SIGQUEUE => "SIGQUEUE",
            VMA => "VMA",
            PAGES => "PAGES",
            ZERO_PAGES => "ZERO_PAGES",
            FD => "FD",
            PIPE_DATA => "PIPE_DATA",
            NOTE => "NOTE",
            END => "END",
            _ => return None,
        })
    }
}
