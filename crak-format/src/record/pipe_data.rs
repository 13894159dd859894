//! PIPE_DATA record, `spec/crak-format.md#pipe-data`.

use crate::bytes::Blob;
use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Bytes buffered in a pipe (spec §3.14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeData<'data> {
    /// Pipe id (the pipe inode).
    pub pipe_id: u64,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Buffered bytes in order.
    pub data: Blob<'data>,
}

impl PipeData<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> PipeData<'static> {
        PipeData {
            pipe_id: self.pipe_id,
            capacity: self.capacity,
            data: self.data.into_owned(),
        }
    }
}

/// Parses a PIPE_DATA payload (`spec/crak-format.md#pipe-data`, §3.14); `data` borrows
/// `payload`. Rejects data longer than `capacity` (`bad-value`).
pub fn parse(payload: &[u8]) -> Result<PipeData<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, PipeData<'_>> {
    let (r, pipe_id) = wire::u64f("pipe_id")(i)?;
    let (r, capacity) = wire::u32f("capacity")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r2, data) = wire::bytes("data", u32::MAX)(r)?;
    if data.len() as u64 > u64::from(capacity) {
        return wire::fail(
            ErrorKind::BadValue,
            "data",
            r,
            format!("{} bytes exceed the capacity {capacity}", data.len()),
        );
    }
    Ok((
        r2,
        PipeData {
            pipe_id,
            capacity,
            data: data.into(),
        },
    ))
}

/// Appends the PIPE_DATA payload of `p` (§3.14).
pub fn write(p: &PipeData<'_>, out: &mut Vec<u8>) {
    wire::put_u64(out, p.pipe_id);
    wire::put_u32(out, p.capacity);
    wire::put_u32(out, 0);
    wire::put_bytes(out, p.data.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let p = PipeData {
            pipe_id: 0x1234,
            capacity: 65536,
            data: b"ab".to_vec().into(),
        };
        let mut b = Vec::new();
        write(&p, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'a', b'b',
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), p);
    }

    #[test]
    fn rejects_data_over_capacity() {
        let p = PipeData {
            pipe_id: 1,
            capacity: 1,
            data: b"ab".to_vec().into(),
        };
        let mut b = Vec::new();
        write(&p, &mut b);
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "data", 16)
        );
    }

    proptest! {
        #[test]
        fn round_trip(p in crate::arbitrary::pipe_data()) {
            let mut b = Vec::new();
            write(&p, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), p);
        }
    }
}
