//! HEADER record, `spec/crak-format.md#header`.

use crate::bytes::ByteString;
use crate::record::vma::VmaKind;
use serde::{Deserialize, Serialize};

/// ELF `e_machine` for x86_64.
pub const ARCH_X86_64: u16 = 62;

/// What the image says about the host and the capture (spec §3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// ELF `e_machine` of the captured processes.
    pub arch: u16,
    /// Bytes per page.
    pub page_size: u32,
    /// Unix time of capture, nanoseconds.
    pub capture_time_ns: i64,
    /// The capture CPU's XCR0.
    pub xsave_features: u64,
    /// XSAVE area size for `xsave_features`.
    pub xsave_size: u32,
    /// `uname -r` of the capture host.
    pub kernel_release: ByteString,
    /// Host name of the capture host.
    pub hostname: ByteString,
    /// Version of the tool that wrote the image.
    pub tool_version: ByteString,
    /// The capture host's vDSO/vvar layout.
    pub special_mappings: Vec<SpecialMapping>,
}

/// One vDSO/vvar/vsyscall mapping of the capture host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialMapping {
    /// Which mapping (one of the special VMA kinds).
    pub kind: VmaKind,
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
}
