//! SHM record, `spec/crak-format.md#shm`.

use crate::bytes::Blob;
use crate::error::{ErrorKind, FieldError};
use crate::record::ipc::{self, IpcPerm};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// A System V shared memory segment and its contents (spec §3.18, format 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shm<'data> {
    /// Id (`shmid`), key and permissions.
    pub perm: IpcPerm,
    /// Segment size in bytes (`shm_segsz`), ≥ 1.
    pub size: u64,
    /// Pid of the creator (`shm_cpid`), informative.
    pub cpid: u32,
    /// Pid of the last `shmat`/`shmdt` (`shm_lpid`), informative.
    pub lpid: u32,
    /// The first `data.len()` bytes of the segment (≤ `size`); the rest are zero.
    pub data: Blob<'data>,
}

impl Shm<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> Shm<'static> {
        Shm {
            perm: self.perm,
            size: self.size,
            cpid: self.cpid,
            lpid: self.lpid,
            data: self.data.into_owned(),
        }
    }
}

/// Payload offset of `data`.
pub const DATA_OFFSET: usize = 48;

/// Parses an SHM payload (`spec/crak-format.md#shm`, §3.18); `data` borrows `payload`.
/// Rejects data longer than `size` (`bad-value`).
pub fn parse(payload: &[u8]) -> Result<Shm<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Shm<'_>> {
    let (r, perm) = ipc::perm(i)?;
    let (r, size) = wire::u64f("size")(r)?;
    let (r, cpid) = wire::u32f("cpid")(r)?;
    let (r, lpid) = wire::u32f("lpid")(r)?;
    let (r2, data) = wire::bytes("data", u32::MAX)(r)?;
    if data.len() as u64 > size {
        return wire::fail(
            ErrorKind::BadValue,
            "data",
            r,
            format!("{} bytes exceed the segment size {size}", data.len()),
        );
    }
    Ok((
        r2,
        Shm {
            perm,
            size,
            cpid,
            lpid,
            data: data.into(),
        },
    ))
}

/// Appends the SHM payload of `s` (§3.18).
pub fn write(s: &Shm<'_>, out: &mut Vec<u8>) {
    ipc::put_perm(out, &s.perm);
    wire::put_u64(out, s.size);
    wire::put_u32(out, s.cpid);
    wire::put_u32(out, s.lpid);
    wire::put_bytes(out, s.data.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let s = Shm {
            perm: IpcPerm {
                id: 7,
                key: 0x1234,
                uid: 1000,
                gid: 1000,
                cuid: 0,
                cgid: 0,
                mode: 0o600,
            },
            size: 8192,
            cpid: 42,
            lpid: 43,
            data: b"hi".to_vec().into(),
        };
        let mut b = Vec::new();
        write(&s, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            7, 0, 0, 0, 0x34, 0x12, 0, 0, 0xe8, 3, 0, 0, 0xe8, 3, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0,
            0, 0x20, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 43, 0, 0, 0,
            2, 0, 0, 0, b'h', b'i',
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), s);
        let e = parse(&b[..40]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "cpid", 40)
        );
    }

    #[test]
    fn rejects_data_over_size() {
        let s = Shm {
            size: 1,
            data: b"ab".to_vec().into(),
            ..Shm::default()
        };
        let mut b = Vec::new();
        write(&s, &mut b);
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "data", DATA_OFFSET)
        );
    }

    proptest! {
        #[test]
        fn round_trip(s in crate::arbitrary::shm()) {
            let mut b = Vec::new();
            write(&s, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), s);
        }
    }
}
