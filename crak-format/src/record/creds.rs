//! CREDS record, `spec/crak-format.md#creds`.

use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most supplementary groups (`NGROUPS_MAX`).
pub const MAX_GROUPS: u32 = 65536;

/// Credentials of a process (spec §3.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Creds {
    pub pid: u32,
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub securebits: u32,
    pub no_new_privs: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Parses a CREDS payload (`spec/crak-format.md#creds`, §3.3).
///
/// Rejects (`bad-value`) a `no_new_privs` other than 0 or 1 and more than 65536 groups.
pub fn parse(payload: &[u8]) -> Result<Creds, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Creds> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, uid) = wire::u32f("uid")(r)?;
    let (r, euid) = wire::u32f("euid")(r)?;
    let (r, suid) = wire::u32f("suid")(r)?;
    let (r, fsuid) = wire::u32f("fsuid")(r)?;
    let (r, gid) = wire::u32f("gid")(r)?;
    let (r, egid) = wire::u32f("egid")(r)?;
    let (r, sgid) = wire::u32f("sgid")(r)?;
    let (r, fsgid) = wire::u32f("fsgid")(r)?;
    let (r, cap_inheritable) = wire::u64f("cap_inheritable")(r)?;
    let (r, cap_permitted) = wire::u64f("cap_permitted")(r)?;
    let (r, cap_effective) = wire::u64f("cap_effective")(r)?;
    let (r, cap_bounding) = wire::u64f("cap_bounding")(r)?;
    let (r, cap_ambient) = wire::u64f("cap_ambient")(r)?;
    let (r, securebits) = wire::u32f("securebits")(r)?;
    let (r, no_new_privs) = wire::bool32("no_new_privs")(r)?;
    let (r, groups) = wire::list("groups", MAX_GROUPS, 4, wire::u32f("groups"))(r)?;
    Ok((
        r,
        Creds {
            pid,
            uid,
            euid,
            suid,
            fsuid,
            gid,
            egid,
            sgid,
            fsgid,
            cap_inheritable,
            cap_permitted,
            cap_effective,
            cap_bounding,
            cap_ambient,
            securebits,
            no_new_privs: u32::from(no_new_privs),
            groups,
        },
    ))
}

/// Appends the CREDS payload of `c` (§3.3).
pub fn write(c: &Creds, out: &mut Vec<u8>) {
    for v in [
        c.pid, c.uid, c.euid, c.suid, c.fsuid, c.gid, c.egid, c.sgid, c.fsgid,
    ] {
        wire::put_u32(out, v);
    }
    for v in [
        c.cap_inheritable,
        c.cap_permitted,
        c.cap_effective,
        c.cap_bounding,
        c.cap_ambient,
    ] {
        wire::put_u64(out, v);
    }
    wire::put_u32(out, c.securebits);
    wire::put_u32(out, c.no_new_privs);
    wire::put_count(out, c.groups.len());
    for g in &c.groups {
        wire::put_u32(out, *g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let c = Creds {
            pid: 5,
            uid: 1000,
            cap_bounding: 0x1ff_ffff_ffff,
            no_new_privs: 1,
            groups: vec![4, 27],
            ..Creds::default()
        };
        let mut b = Vec::new();
        write(&c, &mut b);
        assert_eq!(b.len(), 84 + 4 + 8);
        assert_eq!(&b[0..8], &[5, 0, 0, 0, 0xe8, 3, 0, 0]);
        assert_eq!(&b[60..68], &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]);
        assert_eq!(&b[80..], &[1, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 27, 0, 0, 0]);
        assert_eq!(parse(&b).unwrap(), c);
    }

    #[test]
    fn rejects_no_new_privs_two() {
        let c = Creds {
            no_new_privs: 2,
            ..Creds::default()
        };
        let mut b = Vec::new();
        write(&c, &mut b);
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "no_new_privs", 80)
        );
    }

    proptest! {
        #[test]
        fn round_trip(c in crate::arbitrary::creds(1)) {
            let mut b = Vec::new();
            write(&c, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), c);
        }
    }
}
