//! AUTH record, `spec/crak-format.md#auth` (§3.17): a signature over the SHA-256 of every
//! record before it. Signing and verification are in [`crate::auth`].

use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// `algorithm`: Ed25519 (RFC 8032) over the signed message of §3.17.
pub const ALG_ED25519: u16 = 1;
/// Bytes of the fixed part before the entries.
pub const AUTH_FIXED_SIZE: usize = 16;
/// Bytes of one entry.
pub const ENTRY_SIZE: usize = 48;
/// Bytes of the signature.
pub const SIGNATURE_SIZE: usize = 64;

/// One signed record: its kind, flags and file offset and the SHA-256 of its bytes (record
/// header, payload and CRC). In JSON the hash is lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Record kind.
    pub kind: u16,
    /// Record flags.
    pub flags: u16,
    /// File offset of the record header.
    pub offset: u64,
    /// SHA-256 of the whole record.
    #[serde(with = "hex_array")]
    pub sha256: [u8; 32],
}

/// The AUTH record (§3.17). In JSON `key_id` and `signature` are lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// [`ALG_ED25519`].
    pub algorithm: u16,
    /// The first 8 bytes of the SHA-256 of the public key.
    #[serde(with = "hex_array")]
    pub key_id: [u8; 8],
    /// Every record before AUTH, in file order.
    pub entries: Vec<Entry>,
    /// The signature over the file header and payload bytes `0..16 + 48 × count`.
    #[serde(with = "hex_array")]
    pub signature: [u8; SIGNATURE_SIZE],
}

/// Fixed-size byte arrays as lowercase hex strings.
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::bytes::to_hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let bytes =
            crate::bytes::from_hex(&text).ok_or_else(|| serde::de::Error::custom("invalid hex"))?;
        <[u8; N]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::custom(format!("{N} bytes of hex expected")))
    }
}

/// Parses an AUTH payload (`spec/crak-format.md#auth`). The entry count is bounded by the
/// payload's length before anything is allocated.
pub fn parse(payload: &[u8]) -> Result<Auth, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Auth> {
    let (r, algorithm) = wire::u16f("algorithm")(i)?;
    let (r, ()) = wire::reserved("reserved", 2)(r)?;
    let (r, key_id) = array::<8>("key_id", r)?;
    // A list is one field named after its contents, at its count (§2.5); the count is
    // bounded by the bytes that remain before anything is allocated.
    let at_count = r;
    let (r, count) = wire::u32f("entries")(r)?;
    let fits = (r.len() / ENTRY_SIZE) as u64;
    if u64::from(count) > fits {
        return wire::fail(
            ErrorKind::Truncated,
            "entries",
            at_count,
            format!("{count} entries do not fit in the payload"),
        );
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut r = r;
    for _ in 0..count {
        let (rest, kind) = wire::u16f("entries.kind")(r)?;
        let (rest, flags) = wire::u16f("entries.flags")(rest)?;
        let (rest, ()) = wire::reserved("entries.reserved", 4)(rest)?;
        let (rest, offset) = wire::u64f("entries.offset")(rest)?;
        let (rest, sha256) = array::<32>("entries.sha256", rest)?;
        entries.push(Entry {
            kind,
            flags,
            offset,
            sha256,
        });
        r = rest;
    }
    let (r, signature) = array::<SIGNATURE_SIZE>("signature", r)?;
    Ok((
        r,
        Auth {
            algorithm,
            key_id,
            entries,
            signature,
        },
    ))
}

/// Takes `N` bytes as an array.
fn array<'a, const N: usize>(field: &'static str, i: &'a [u8]) -> PResult<'a, [u8; N]> {
    let (rest, v) = wire::take(field, N as u64)(i)?;
    let mut a = [0u8; N];
    a.copy_from_slice(v);
    Ok((rest, a))
}

/// Appends the signed part of an AUTH payload (everything before the signature).
pub fn write_signed_part(algorithm: u16, key_id: &[u8; 8], entries: &[Entry], out: &mut Vec<u8>) {
    out.extend_from_slice(&algorithm.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(key_id);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.kind.to_le_bytes());
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.sha256);
    }
}

/// Appends the AUTH payload of `a`.
pub fn write(a: &Auth, out: &mut Vec<u8>) {
    write_signed_part(a.algorithm, &a.key_id, &a.entries, out);
    out.extend_from_slice(&a.signature);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounded_count() {
        let a = Auth {
            algorithm: ALG_ED25519,
            key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            entries: vec![Entry {
                kind: 1,
                flags: 1,
                offset: 16,
                sha256: [0xab; 32],
            }],
            signature: [0x5a; SIGNATURE_SIZE],
        };
        let mut v = Vec::new();
        write(&a, &mut v);
        assert_eq!(v.len(), AUTH_FIXED_SIZE + ENTRY_SIZE + SIGNATURE_SIZE);
        assert_eq!(parse(&v).unwrap(), a);
        // A claimed 2^32 - 1 entries in a one-entry payload is refused, not allocated.
        v[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&v).unwrap_err().field, "entries");
    }
}
