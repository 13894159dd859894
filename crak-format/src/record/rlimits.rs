//! RLIMITS record, `spec/crak-format.md#rlimits`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most limits.
pub const MAX_RLIMITS: u32 = 64;
/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Resource limits of a process (spec §3.5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// PID.
    pub pid: u32,
    /// Limits.
    pub limits: Vec<Rlimit>,
}

/// One resource limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}

/// Parses an RLIMITS payload (`spec/crak-format.md#rlimits`, §3.5). Rejects more than 64 limits.
pub fn parse(payload: &[u8]) -> Result<Rlimits, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Rlimits> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, limits) = wire::list("limits", MAX_RLIMITS, 20, |i| {
        let (i, resource) = wire::u32f("limits.resource")(i)?;
        let (i, cur) = wire::u64f("limits.cur")(i)?;
        let (i, max) = wire::u64f("limits.max")(i)?;
        Ok((i, Rlimit { resource, cur, max }))
    })(r)?;
    Ok((r, Rlimits { pid, limits }))
}

/// Appends the RLIMITS payload of `l` (§3.5).
pub fn write(l: &Rlimits, out: &mut Vec<u8>) {
    wire::put_u32(out, l.pid);
    wire::put_count(out, l.limits.len());
    for r in &l.limits {
        wire::put_u32(out, r.resource);
        wire::put_u64(out, r.cur);
        wire::put_u64(out, r.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let l = Rlimits {
            pid: 2,
            limits: vec![Rlimit {
                resource: 7,
                cur: 1024,
                max: RLIM_INFINITY,
            }],
        };
        let mut b = Vec::new();
        write(&l, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            2, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0,
            0, 4, 0, 0, 0, 0, 0, 0,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), l);
    }

    proptest! {
        #[test]
        fn round_trip(l in crate::arbitrary::rlimits(1)) {
            let mut b = Vec::new();
            write(&l, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), l);
        }
    }
}
