//! XSAVE record, `spec/crak-format.md#xsave`.

use crate::bytes::Blob;
use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Largest XSAVE area.
pub const MAX_AREA: u32 = 65536;

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

impl Xsave<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> Xsave<'static> {
        Xsave {
            pid: self.pid,
            tid: self.tid,
            xstate_bv: self.xstate_bv,
            area: self.area.into_owned(),
        }
    }
}

/// Parses an XSAVE payload (`spec/crak-format.md#xsave`, §3.8); the area borrows `payload`.
/// Rejects an area above 65536 bytes; its agreement with HEADER is checked by the validator.
pub fn parse(payload: &[u8]) -> Result<Xsave<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Xsave<'_>> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, tid) = wire::u32f("tid")(r)?;
    let (r, xstate_bv) = wire::u64f("xstate_bv")(r)?;
    let (r, area) = wire::bytes("area", MAX_AREA)(r)?;
    Ok((
        r,
        Xsave {
            pid,
            tid,
            xstate_bv,
            area: area.into(),
        },
    ))
}

/// Appends the XSAVE payload of `x` (§3.8).
pub fn write(x: &Xsave<'_>, out: &mut Vec<u8>) {
    wire::put_u32(out, x.pid);
    wire::put_u32(out, x.tid);
    wire::put_u64(out, x.xstate_bv);
    wire::put_bytes(out, x.area.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let x = Xsave {
            pid: 1,
            tid: 2,
            xstate_bv: 3,
            area: vec![0xaa, 0xbb].into(),
        };
        let mut b = Vec::new();
        write(&x, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0xaa, 0xbb];
        assert_eq!(b, want);
        let got = parse(&b).unwrap();
        assert!(matches!(got.area.0, std::borrow::Cow::Borrowed(_)));
        assert_eq!(got, x);
    }

    proptest! {
        #[test]
        fn round_trip(x in crate::arbitrary::xsave(1, 1, 64)) {
            let mut b = Vec::new();
            write(&x, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), x);
        }
    }
}
