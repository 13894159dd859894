//! END record, `spec/crak-format.md#end`.

use serde::{Deserialize, Serialize};

/// The closing record (spec §3.16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Records before END, HEADER included.
    pub record_count: u64,
    /// File offset of END's record header.
    pub byte_count: u64,
    /// Stored pages in the image.
    pub page_count: u64,
    /// Digest over headers and CRCs (spec §2.4).
    pub digest: u32,
}
