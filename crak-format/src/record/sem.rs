//! SEM record, `spec/crak-format.md#sem`.

use crate::error::{ErrorKind, FieldError};
use crate::record::ipc::{self, IpcPerm};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most semaphores in a set (the count of `sems`).
pub const MAX_SEMS: u32 = 65536;

/// Largest semaphore value (`SEMVMX`).
pub const SEMVMX: u32 = 32767;

/// One semaphore of a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sem {
    /// `semval`, ≤ [`SEMVMX`].
    pub value: u32,
    /// `sempid`: pid of the last operation, informative.
    pub pid: u32,
}

/// A System V semaphore set (spec §3.19, format 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemSet {
    /// Id (`semid`), key and permissions.
    pub perm: IpcPerm,
    /// The semaphores, 1 to [`MAX_SEMS`] (`sem_nsems` is their number).
    pub sems: Vec<Sem>,
}

/// Parses a SEM payload (`spec/crak-format.md#sem`, §3.19). Rejects an empty set or one of
/// more than [`MAX_SEMS`] semaphores.
pub fn parse(payload: &[u8]) -> Result<SemSet, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, SemSet> {
    let (r, perm) = ipc::perm(i)?;
    let (r2, sems) = wire::list("sems", MAX_SEMS, 8, |i| {
        let (i, value) = wire::u32f("sems.value")(i)?;
        let (i, pid) = wire::u32f("sems.pid")(i)?;
        Ok((i, Sem { value, pid }))
    })(r)?;
    if sems.is_empty() {
        return wire::fail(
            ErrorKind::BadValue,
            "sems",
            r,
            "a set has at least one semaphore",
        );
    }
    Ok((r2, SemSet { perm, sems }))
}

/// Appends the SEM payload of `s` (§3.19).
pub fn write(s: &SemSet, out: &mut Vec<u8>) {
    ipc::put_perm(out, &s.perm);
    wire::put_count(out, s.sems.len());
    for m in &s.sems {
        wire::put_u32(out, m.value);
        wire::put_u32(out, m.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let s = SemSet {
            perm: IpcPerm {
                id: 3,
                key: 0,
                mode: 0o666,
                ..IpcPerm::default()
            },
            sems: vec![Sem { value: 1, pid: 9 }],
        };
        let mut b = Vec::new();
        write(&s, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0xb6, 1, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), s);
        let e = parse(&b[..40]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "sems", 32)
        );
    }

    #[test]
    fn rejects_an_empty_set() {
        let mut b = Vec::new();
        write(&SemSet::default(), &mut b);
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "sems", 32)
        );
    }

    proptest! {
        #[test]
        fn round_trip(s in crate::arbitrary::sem_set()) {
            let mut b = Vec::new();
            write(&s, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), s);
        }
    }
}
