//! END record, `spec/crak-format.md#end`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Bytes of an END payload in version 1.0.
pub const END_SIZE: usize = 32;

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

/// Parses an END payload (`spec/crak-format.md#end`, §3.16). The counts and the digest are
/// compared with the file by the reader (§2.4).
pub fn parse(payload: &[u8]) -> Result<End, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, End> {
    let (r, record_count) = wire::u64f("record_count")(i)?;
    let (r, byte_count) = wire::u64f("byte_count")(r)?;
    let (r, page_count) = wire::u64f("page_count")(r)?;
    let (r, digest) = wire::u32f("digest")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    Ok((
        r,
        End {
            record_count,
            byte_count,
            page_count,
            digest,
        },
    ))
}

/// Appends the END payload of `e` (§3.16).
pub fn write(e: &End, out: &mut Vec<u8>) {
    wire::put_u64(out, e.record_count);
    wire::put_u64(out, e.byte_count);
    wire::put_u64(out, e.page_count);
    wire::put_u32(out, e.digest);
    wire::put_u32(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let e = End {
            record_count: 2,
            byte_count: 0x40,
            page_count: 1,
            digest: 0xdead_beef,
        };
        let mut b = Vec::new();
        write(&e, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            2, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
            0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), e);
        let err = parse(&b[..31]).unwrap_err();
        assert_eq!(
            (err.kind, err.field, err.offset),
            (ErrorKind::Truncated, "reserved", 28)
        );
    }

    proptest! {
        #[test]
        fn round_trip(rc: u64, bc: u64, pc: u64, d: u32) {
            let e = End { record_count: rc, byte_count: bc, page_count: pc, digest: d };
            let mut b = Vec::new();
            write(&e, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), e);
        }
    }
}
