//! MM record, `spec/crak-format.md#mm`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most auxv entries.
pub const MAX_AUXV: u32 = 64;

/// The address-space bounds the kernel keeps per process (spec §3.4), as set by `PR_SET_MM_MAP`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Mm {
    pub pid: u32,
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Auxiliary vector as (key, value) pairs.
    pub auxv: Vec<(u64, u64)>,
}

/// Parses an MM payload (`spec/crak-format.md#mm`, §3.4). Rejects more than 64 auxv entries.
pub fn parse(payload: &[u8]) -> Result<Mm, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Mm> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, start_code) = wire::u64f("start_code")(r)?;
    let (r, end_code) = wire::u64f("end_code")(r)?;
    let (r, start_data) = wire::u64f("start_data")(r)?;
    let (r, end_data) = wire::u64f("end_data")(r)?;
    let (r, start_brk) = wire::u64f("start_brk")(r)?;
    let (r, brk) = wire::u64f("brk")(r)?;
    let (r, start_stack) = wire::u64f("start_stack")(r)?;
    let (r, arg_start) = wire::u64f("arg_start")(r)?;
    let (r, arg_end) = wire::u64f("arg_end")(r)?;
    let (r, env_start) = wire::u64f("env_start")(r)?;
    let (r, env_end) = wire::u64f("env_end")(r)?;
    let (r, auxv) = wire::list("auxv", MAX_AUXV, 16, |i| {
        let (i, k) = wire::u64f("auxv.key")(i)?;
        let (i, v) = wire::u64f("auxv.value")(i)?;
        Ok((i, (k, v)))
    })(r)?;
    Ok((
        r,
        Mm {
            pid,
            start_code,
            end_code,
            start_data,
            end_data,
            start_brk,
            brk,
            start_stack,
            arg_start,
            arg_end,
            env_start,
            env_end,
            auxv,
        },
    ))
}

/// Appends the MM payload of `m` (§3.4).
pub fn write(m: &Mm, out: &mut Vec<u8>) {
    wire::put_u32(out, m.pid);
    wire::put_u32(out, 0);
    for v in [
        m.start_code,
        m.end_code,
        m.start_data,
        m.end_data,
        m.start_brk,
        m.brk,
        m.start_stack,
        m.arg_start,
        m.arg_end,
        m.env_start,
        m.env_end,
    ] {
        wire::put_u64(out, v);
    }
    wire::put_count(out, m.auxv.len());
    for (k, v) in &m.auxv {
        wire::put_u64(out, *k);
        wire::put_u64(out, *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let m = Mm {
            pid: 3,
            brk: 0x1000,
            env_end: 0x7fff_0000,
            auxv: vec![(6, 4096)],
            ..Mm::default()
        };
        let mut b = Vec::new();
        write(&m, &mut b);
        assert_eq!(b.len(), 96 + 4 + 16);
        assert_eq!(&b[0..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[48..56], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[88..96], &[0, 0, 0xff, 0x7f, 0, 0, 0, 0]);
        assert_eq!(
            &b[96..],
            &[1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(parse(&b).unwrap(), m);
        let e = parse(&b[..110]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "auxv", 96)
        );
    }

    #[test]
    fn rejects_65_auxv_entries() {
        let m = Mm {
            auxv: vec![(0, 0); 65],
            ..Mm::default()
        };
        let mut b = Vec::new();
        write(&m, &mut b);
        assert_eq!(parse(&b).unwrap_err().kind, ErrorKind::BadValue);
    }

    proptest! {
        #[test]
        fn round_trip(m in crate::arbitrary::mm(1)) {
            let mut b = Vec::new();
            write(&m, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), m);
        }
    }
}
