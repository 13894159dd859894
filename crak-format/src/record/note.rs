//! NOTE record, `spec/crak-format.md#note`.

use crate::bytes::ByteString;
use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Largest `key`.
pub const MAX_KEY: u32 = 256;

/// A free annotation (spec §3.15); not critical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Key.
    pub key: ByteString,
    /// Value.
    pub value: ByteString,
}

/// Parses a NOTE payload (`spec/crak-format.md#note`, §3.15). Rejects a key above 256 bytes.
pub fn parse(payload: &[u8]) -> Result<Note, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Note> {
    let (r, key) = wire::bytes("key", MAX_KEY)(i)?;
    let (r, value) = wire::bytes("value", u32::MAX)(r)?;
    Ok((
        r,
        Note {
            key: key.into(),
            value: value.into(),
        },
    ))
}

/// Appends the NOTE payload of `n` (§3.15).
pub fn write(n: &Note, out: &mut Vec<u8>) {
    wire::put_bytes(out, n.key.as_bytes());
    wire::put_bytes(out, n.value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let n = Note {
            key: "cmd".into(),
            value: "x".into(),
        };
        let mut b = Vec::new();
        write(&n, &mut b);
        assert_eq!(b, [3, 0, 0, 0, b'c', b'm', b'd', 1, 0, 0, 0, b'x']);
        assert_eq!(parse(&b).unwrap(), n);
        let e = parse(&b[..9]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "value", 7)
        );
    }

    proptest! {
        #[test]
        fn round_trip(n in crate::arbitrary::note()) {
            let mut b = Vec::new();
            write(&n, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), n);
        }
    }
}
