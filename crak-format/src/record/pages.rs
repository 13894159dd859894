//! PAGES and ZERO_PAGES records, `spec/crak-format.md#pages` and `#zero-pages`.

use crate::bytes::Blob;
use serde::{Deserialize, Serialize};

/// A run of stored pages (spec §3.11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun<'data> {
    /// PID.
    pub pid: u32,
    /// First page's address.
    pub addr: u64,
    /// Number of pages.
    pub nr_pages: u64,
    /// `nr_pages × page_size` bytes; borrowed from the image when parsed from a slice.
    pub data: Blob<'data>,
}

/// A run of pages known to be zero (spec §3.12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroRun {
    /// PID.
    pub pid: u32,
    /// First page's address.
    pub addr: u64,
    /// Number of pages.
    pub nr_pages: u64,
}
