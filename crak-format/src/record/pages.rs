//! PAGES record, `spec/crak-format.md#pages`. ZERO_PAGES lives in [`super::zero_pages`].

use crate::bytes::Blob;
use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

pub use super::zero_pages::ZeroRun;

/// Bytes of the fixed PAGES fields before the padding (`data_offset` is at least this).
pub const PAGES_HEADER_SIZE: u32 = 28;

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

impl PageRun<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> PageRun<'static> {
        PageRun {
            pid: self.pid,
            addr: self.addr,
            nr_pages: self.nr_pages,
            data: self.data.into_owned(),
        }
    }
}

/// The fixed fields of a PAGES payload, without the page data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagesHeader {
    /// PID.
    pub pid: u32,
    /// First page's address.
    pub addr: u64,
    /// Number of pages (≥ 1).
    pub nr_pages: u64,
    /// Offset of the page data from the start of the payload (≥ 28).
    pub data_offset: u32,
}

impl PagesHeader {
    /// Bytes of page data this record holds for `page_size`, or `None` on overflow.
    pub fn data_len(&self, page_size: u32) -> Option<u64> {
        self.nr_pages.checked_mul(u64::from(page_size))
    }

    /// The payload length this record must have for `page_size` (§3.11), or `None` on overflow.
    pub fn payload_len(&self, page_size: u32) -> Option<u64> {
        self.data_len(page_size)?
            .checked_add(u64::from(self.data_offset))
    }

    /// Checks that a payload of `payload_len` bytes holds this record (§3.11, §2.5): a
    /// `data_offset` past the payload is `truncated` at `data_offset`; with `page_size`, a
    /// payload shorter than `data_offset + nr_pages × page_size` (or a product that overflows)
    /// is `truncated` at `data`, a longer one `bad-value` at `data`.
    pub fn check_payload_len(
        &self,
        payload_len: u64,
        page_size: Option<u32>,
    ) -> Result<(), FieldError> {
        let data_at = self.data_offset as usize;
        if u64::from(self.data_offset) > payload_len {
            return Err(FieldError {
                kind: ErrorKind::Truncated,
                field: "data_offset",
                offset: 24,
                detail: Some(format!(
                    "data_offset {} is past the payload ({payload_len} bytes)",
                    self.data_offset
                )),
            });
        }
        let Some(ps) = page_size else {
            return Ok(());
        };
        let want = self.payload_len(ps);
        if want == Some(payload_len) {
            return Ok(());
        }
        let (kind, want) = match want {
            Some(w) if payload_len > w => (ErrorKind::BadValue, w.to_string()),
            Some(w) => (ErrorKind::Truncated, w.to_string()),
            None => (ErrorKind::Truncated, "more than 2^64".to_string()),
        };
        Err(FieldError {
            kind,
            field: "data",
            offset: data_at,
            detail: Some(format!(
                "payload is {payload_len} bytes, data_offset + nr_pages × page_size is {want}"
            )),
        })
    }
}

/// Parses the fixed fields of a PAGES payload (the first 28 bytes, §3.11).
///
/// Rejects `nr_pages` 0 and `data_offset` below 28 (`bad-value`).
pub fn parse_header(payload: &[u8]) -> Result<PagesHeader, FieldError> {
    wire::run(payload, header_fields)
}

fn header_fields(i: &[u8]) -> PResult<'_, PagesHeader> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, addr) = wire::u64f("addr")(r)?;
    let (r, nr_pages) = wire::checked("nr_pages", wire::u64f("nr_pages"), |n| {
        if n >= 1 {
            Ok(())
        } else {
            Err("a run holds at least one page".into())
        }
    })(r)?;
    let (r, data_offset) = wire::checked("data_offset", wire::u32f("data_offset"), |d| {
        if d >= PAGES_HEADER_SIZE {
            Ok(())
        } else {
            Err(format!("{d} is below {PAGES_HEADER_SIZE}"))
        }
    })(r)?;
    Ok((
        r,
        PagesHeader {
            pid,
            addr,
            nr_pages,
            data_offset,
        },
    ))
}

/// Parses a PAGES payload (`spec/crak-format.md#pages`, §3.11); the page data borrows `payload`.
///
/// With `page_size` (from HEADER) the payload length must equal `data_offset + nr_pages ×
/// page_size`; without it, the data is everything after `data_offset`. Padding bytes are
/// ignored; whether the data is page-aligned in the file is the validator's (§4).
pub fn parse(payload: &[u8], page_size: Option<u32>) -> Result<PageRun<'_>, FieldError> {
    let h = parse_header(payload)?;
    h.check_payload_len(payload.len() as u64, page_size)?;
    let data = payload.get(h.data_offset as usize..).unwrap_or_default();
    Ok(PageRun {
        pid: h.pid,
        addr: h.addr,
        nr_pages: h.nr_pages,
        data: data.into(),
    })
}

/// Appends the fixed fields and the zero padding of a PAGES payload, up to `data_offset`
/// (which must be at least 28; a smaller one is written as given and fails to parse).
pub fn write_header(h: &PagesHeader, out: &mut Vec<u8>) {
    wire::put_u32(out, h.pid);
    wire::put_u32(out, 0);
    wire::put_u64(out, h.addr);
    wire::put_u64(out, h.nr_pages);
    wire::put_u32(out, h.data_offset);
    let pad = h.data_offset.saturating_sub(PAGES_HEADER_SIZE) as usize;
    out.resize(out.len() + pad, 0);
}

/// Appends the whole PAGES payload of `run` with `data_offset` (copies the page data; the
/// [`crate::write::Writer`] writes page data without copying).
pub fn write(run: &PageRun<'_>, data_offset: u32, out: &mut Vec<u8>) {
    write_header(
        &PagesHeader {
            pid: run.pid,
            addr: run.addr,
            nr_pages: run.nr_pages,
            data_offset,
        },
        out,
    );
    out.extend_from_slice(run.data.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let run = PageRun {
            pid: 2,
            addr: 0x1000,
            nr_pages: 1,
            data: vec![7u8; 4096].into(),
        };
        let mut b = Vec::new();
        write(&run, 32, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            2, 0, 0, 0, 0, 0, 0, 0,
            0, 0x10, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0,
            32, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(&b[..32], want);
        assert_eq!(b.len(), 32 + 4096);
        let got = parse(&b, Some(4096)).unwrap();
        assert!(matches!(got.data.0, std::borrow::Cow::Borrowed(_)));
        assert_eq!(got, run);
    }

    #[test]
    fn length_must_match_nr_pages() {
        let run = PageRun {
            pid: 2,
            addr: 0,
            nr_pages: 2,
            data: vec![1u8; 4096].into(),
        };
        let mut b = Vec::new();
        write(&run, 28, &mut b);
        let e = parse(&b, Some(4096)).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "data", 28)
        );
        b.resize(28 + 3 * 4096, 0);
        assert_eq!(parse(&b, Some(4096)).unwrap_err().kind, ErrorKind::BadValue);
    }

    #[test]
    fn rejects_zero_pages_small_offset_and_overflow() {
        let h = PagesHeader {
            pid: 1,
            addr: 0,
            nr_pages: 0,
            data_offset: 28,
        };
        let mut b = Vec::new();
        write_header(&h, &mut b);
        assert_eq!(parse(&b, Some(4096)).unwrap_err().field, "nr_pages");
        b.clear();
        write_header(
            &PagesHeader {
                nr_pages: 1,
                data_offset: 27,
                ..h
            },
            &mut b,
        );
        assert_eq!(parse(&b, Some(4096)).unwrap_err().field, "data_offset");
        b.clear();
        write_header(
            &PagesHeader {
                nr_pages: 1 << 63,
                ..h
            },
            &mut b,
        );
        let e = parse(&b, Some(4096)).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "data", 28)
        );
        b.clear();
        write_header(
            &PagesHeader {
                nr_pages: 1,
                data_offset: 100,
                ..h
            },
            &mut b,
        );
        b.truncate(50);
        assert_eq!(parse(&b, Some(4096)).unwrap_err().field, "data_offset");
    }

    proptest! {
        #[test]
        fn round_trip(run in crate::arbitrary::page_run(1, 4096), pad in 0u32..5000) {
            let mut b = Vec::new();
            write(&run, PAGES_HEADER_SIZE + pad, &mut b);
            prop_assert_eq!(parse(&b, Some(4096)).unwrap(), run);
        }
    }
}
