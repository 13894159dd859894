//! Field-level building blocks shared by the record parsers and writers: nom parsers for the
//! spec's integer, `bytes` and `list<T>` fields (§1) that name the field they fail on, and the
//! matching little-endian writers.
//!
//! Every parser here is total: it never indexes out of bounds and never allocates more than the
//! input can hold.

use crate::error::{ErrorKind, FieldError};
use nom::error::ParseError;
use nom::number::complete::{le_i64, le_u16, le_u32, le_u64, le_u8};
use nom::IResult;

/// Result of a field parser: the rest of the payload and the value.
pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, PErr>;

/// A parse failure located by the number of payload bytes that remained at the failing field.
#[derive(Debug)]
pub(crate) struct PErr {
    kind: ErrorKind,
    field: &'static str,
    remaining: usize,
    detail: Option<String>,
}

impl<'a> ParseError<&'a [u8]> for PErr {
    fn from_error_kind(input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        PErr {
            kind: ErrorKind::Truncated,
            field: "",
            remaining: input.len(),
            detail: None,
        }
    }
    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Fails at the field that starts at `input` with `kind`.
pub(crate) fn fail<'a, T>(
    kind: ErrorKind,
    field: &'static str,
    input: &[u8],
    detail: impl Into<String>,
) -> PResult<'a, T> {
    Err(nom::Err::Failure(PErr {
        kind,
        field,
        remaining: input.len(),
        detail: Some(detail.into()),
    }))
}

fn truncated<'a, T>(field: &'static str, input: &[u8], need: u64) -> PResult<'a, T> {
    fail(
        ErrorKind::Truncated,
        field,
        input,
        format!("needs {need} bytes, {} remain in the payload", input.len()),
    )
}

/// Runs a payload parser and turns its failure into a [`FieldError`] with a payload offset.
/// Bytes left after the known fields are ignored (§2.2, §5).
pub(crate) fn run<'a, T>(
    payload: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> Result<T, FieldError> {
    match parser(payload) {
        Ok((_rest, v)) => Ok(v),
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => Err(FieldError {
            kind: e.kind,
            field: e.field,
            offset: payload.len().saturating_sub(e.remaining),
            detail: e.detail,
        }),
        Err(nom::Err::Incomplete(_)) => Err(FieldError {
            kind: ErrorKind::Truncated,
            field: "",
            offset: payload.len(),
            detail: None,
        }),
    }
}

macro_rules! int_field {
    ($name:ident, $ty:ty, $nom:ident, $size:expr) => {
        /// Parses a little-endian field named `field`.
        pub(crate) fn $name(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, $ty> {
            move |i: &[u8]| match $nom::<&[u8], PErr>(i) {
                Ok(v) => Ok(v),
                Err(_) => truncated(field, i, $size),
            }
        }
    };
}

int_field!(u8f, u8, le_u8, 1);
int_field!(u16f, u16, le_u16, 2);
int_field!(u32f, u32, le_u32, 4);
int_field!(u64f, u64, le_u64, 8);
int_field!(i64f, i64, le_i64, 8);

/// Runs `p` and rejects (`bad-value`, at the field's start) a value for which `ok` returns an
/// explanation.
pub(crate) fn checked<'a, T: Copy>(
    field: &'static str,
    p: impl Fn(&'a [u8]) -> PResult<'a, T>,
    ok: impl Fn(T) -> Result<(), String>,
) -> impl Fn(&'a [u8]) -> PResult<'a, T> {
    move |i: &'a [u8]| {
        let (rest, v) = p(i)?;
        match ok(v) {
            Ok(()) => Ok((rest, v)),
            Err(why) => fail(ErrorKind::BadValue, field, i, why),
        }
    }
}

/// Skips a reserved field of `n` bytes (§1: readers ignore reserved fields).
pub(crate) fn reserved(field: &'static str, n: usize) -> impl Fn(&[u8]) -> PResult<'_, ()> {
    move |i: &[u8]| match i.get(n..) {
        Some(rest) => Ok((rest, ())),
        None => truncated(field, i, n as u64),
    }
}

/// Takes exactly `n` raw bytes.
pub(crate) fn take(field: &'static str, n: u64) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |i: &[u8]| {
        let Ok(n_usize) = usize::try_from(n) else {
            return truncated(field, i, n);
        };
        match (i.get(..n_usize), i.get(n_usize..)) {
            (Some(v), Some(rest)) => Ok((rest, v)),
            _ => truncated(field, i, n),
        }
    }
}

/// A `bool` stored as a `u32` that must be 0 or 1.
pub(crate) fn bool32(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, bool> {
    move |i: &[u8]| {
        let (rest, v) = u32f(field)(i)?;
        match v {
            0 => Ok((rest, false)),
            1 => Ok((rest, true)),
            _ => fail(ErrorKind::BadValue, field, i, format!("{v} is not 0 or 1")),
        }
    }
}

/// A `bytes` field (§1): a `u32` length of at most `max`, then that many bytes.
pub(crate) fn bytes(field: &'static str, max: u32) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |i: &[u8]| {
        let (rest, n) = u32f(field)(i)?;
        if n > max {
            return fail(
                ErrorKind::BadValue,
                field,
                i,
                format!("length {n} exceeds the maximum {max}"),
            );
        }
        match take(field, u64::from(n))(rest) {
            Ok(v) => Ok(v),
            Err(_) => fail(
                ErrorKind::Truncated,
                field,
                i,
                format!(
                    "length {n} runs past the payload ({} bytes remain)",
                    rest.len()
                ),
            ),
        }
    }
}

/// A `list<T>` field (§1): a `u32` count of at most `max`, then that many items of
/// `item_size` bytes each. The count is checked against the bytes that remain before anything
/// is allocated.
pub(crate) fn list<'a, T>(
    field: &'static str,
    max: u32,
    item_size: usize,
    item: impl Fn(&'a [u8]) -> PResult<'a, T>,
) -> impl FnOnce(&'a [u8]) -> PResult<'a, Vec<T>> {
    move |i: &'a [u8]| {
        let (mut rest, n) = u32f(field)(i)?;
        if n > max {
            return fail(
                ErrorKind::BadValue,
                field,
                i,
                format!("count {n} exceeds the maximum {max}"),
            );
        }
        let need = u64::from(n).saturating_mul(item_size as u64);
        if need > rest.len() as u64 {
            return fail(
                ErrorKind::Truncated,
                field,
                i,
                format!(
                    "{n} items of {item_size} bytes run past the payload ({} bytes remain)",
                    rest.len()
                ),
            );
        }
        // Bounded by the bytes present: n * item_size <= rest.len().
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (r, v) = item(rest)?;
            rest = r;
            out.push(v);
        }
        Ok((rest, out))
    }
}

/// Runs `p`; a `truncated` failure anywhere inside is reported at the field that starts at
/// `input` instead: a list of variable-size items whose contents run past the payload is
/// truncated at its count (§2.5).
pub(crate) fn truncated_here<'a, T>(
    field: &'static str,
    p: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> impl FnOnce(&'a [u8]) -> PResult<'a, T> {
    move |input: &'a [u8]| match p(input) {
        Err(nom::Err::Failure(e)) | Err(nom::Err::Error(e)) if e.kind == ErrorKind::Truncated => {
            Err(nom::Err::Failure(PErr {
                kind: ErrorKind::Truncated,
                field,
                remaining: input.len(),
                detail: Some(format!(
                    "the items run past the payload ({}: {})",
                    e.field,
                    e.detail.unwrap_or_default()
                )),
            }))
        }
        other => other,
    }
}

/// Appends a `u8`.
pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
/// Appends a little-endian `u16`.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// Appends a little-endian `u32`.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// Appends a little-endian `u64`.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// Appends a little-endian `i64`.
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// Appends a list count. A count that does not fit a `u32` is written as `u32::MAX`, which
/// no reader accepts for a list this crate writes; the checked writer reports it.
pub(crate) fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}
/// Appends a `bytes` field (§1). Longer than `u32::MAX` bytes cannot be encoded: the length is
/// saturated, so the payload no longer parses back the same, which the checked writer reports.
pub(crate) fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_count(out, v.len());
    out.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_rejects_length_over_max_and_past_end() {
        let mut b = Vec::new();
        put_bytes(&mut b, b"hello");
        assert_eq!(run(&b, bytes("x", 5)).unwrap(), b"hello");
        let e = run(&b, bytes("x", 4)).unwrap_err();
        assert_eq!((e.kind, e.field, e.offset), (ErrorKind::BadValue, "x", 0));
        let e = run(&b[..8], bytes("x", 5)).unwrap_err();
        assert_eq!((e.kind, e.field, e.offset), (ErrorKind::Truncated, "x", 0));
    }

    #[test]
    fn list_checks_count_against_remaining_before_allocating() {
        // count = u32::MAX with a generous maximum must fail without allocating.
        let b = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        let e = run(&b, list("l", u32::MAX, 8, u64f("v"))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Truncated);
        let e = run(&b, list("l", 16, 8, u64f("v"))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadValue);
    }

    #[test]
    fn field_offsets_are_payload_relative() {
        let b = [1, 0, 0, 0, 2, 0];
        let p = |i| {
            let (i, _) = u32f("a")(i)?;
            u32f("b")(i)
        };
        let e = run(&b, p).unwrap_err();
        assert_eq!((e.field, e.offset), ("b", 4));
    }
}
