//! ZERO_PAGES record, `spec/crak-format.md#zero-pages`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

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

/// Parses a ZERO_PAGES payload (`spec/crak-format.md#zero-pages`, §3.12).
pub fn parse(payload: &[u8]) -> Result<ZeroRun, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, ZeroRun> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, addr) = wire::u64f("addr")(r)?;
    let (r, nr_pages) = wire::u64f("nr_pages")(r)?;
    Ok((
        r,
        ZeroRun {
            pid,
            addr,
            nr_pages,
        },
    ))
}

/// Appends the ZERO_PAGES payload of `z` (§3.12).
pub fn write(z: &ZeroRun, out: &mut Vec<u8>) {
    wire::put_u32(out, z.pid);
    wire::put_u32(out, 0);
    wire::put_u64(out, z.addr);
    wire::put_u64(out, z.nr_pages);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let z = ZeroRun {
            pid: 6,
            addr: 0x7000,
            nr_pages: 3,
        };
        let mut b = Vec::new();
        write(&z, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            6, 0, 0, 0, 0, 0, 0, 0, 0, 0x70, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), z);
        let e = parse(&b[..20]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "nr_pages", 16)
        );
    }

    proptest! {
        #[test]
        fn round_trip(z in crate::arbitrary::zero_run(1)) {
            let mut b = Vec::new();
            write(&z, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), z);
        }
    }
}
