//! SIGACTIONS record, `spec/crak-format.md#sigactions`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most entries.
pub const MAX_SIGACTIONS: u32 = 64;
/// Bytes of one entry.
pub const SIGACTION_SIZE: usize = 36;

/// Signal dispositions of a process (spec §3.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigActions {
    /// PID.
    pub pid: u32,
    /// One entry per signal.
    pub actions: Vec<SigAction>,
}

/// The disposition of one signal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Signal number, 1–64.
    pub signo: u32,
    /// 0 = SIG_DFL, 1 = SIG_IGN, else the handler's address.
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Parses a SIGACTIONS payload (`spec/crak-format.md#sigactions`, §3.6). Rejects more than 64
/// entries; signal numbers are checked by the validator (§4).
pub fn parse(payload: &[u8]) -> Result<SigActions, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, SigActions> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, actions) = wire::list("actions", MAX_SIGACTIONS, SIGACTION_SIZE, |i| {
        let (i, signo) = wire::u32f("actions.signo")(i)?;
        let (i, handler) = wire::u64f("actions.handler")(i)?;
        let (i, flags) = wire::u64f("actions.flags")(i)?;
        let (i, restorer) = wire::u64f("actions.restorer")(i)?;
        let (i, mask) = wire::u64f("actions.mask")(i)?;
        Ok((
            i,
            SigAction {
                signo,
                handler,
                flags,
                restorer,
                mask,
            },
        ))
    })(r)?;
    Ok((r, SigActions { pid, actions }))
}

/// Appends the SIGACTIONS payload of `s` (§3.6).
pub fn write(s: &SigActions, out: &mut Vec<u8>) {
    wire::put_u32(out, s.pid);
    wire::put_count(out, s.actions.len());
    for a in &s.actions {
        wire::put_u32(out, a.signo);
        wire::put_u64(out, a.handler);
        wire::put_u64(out, a.flags);
        wire::put_u64(out, a.restorer);
        wire::put_u64(out, a.mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let s = SigActions {
            pid: 9,
            actions: vec![SigAction {
                signo: 10,
                handler: 1,
                flags: 0x0400_0000,
                restorer: 0,
                mask: 1 << 9,
            }],
        };
        let mut b = Vec::new();
        write(&s, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            9, 0, 0, 0, 1, 0, 0, 0,
            10, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 4, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 2, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), s);
        let e = parse(&b[..20]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "actions", 4)
        );
    }

    proptest! {
        #[test]
        fn round_trip(s in crate::arbitrary::sigactions(1)) {
            let mut b = Vec::new();
            write(&s, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), s);
        }
    }
}
