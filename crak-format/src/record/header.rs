//! HEADER record, `spec/crak-format.md#header`.

use crate::bytes::ByteString;
use crate::error::{ErrorKind, FieldError};
use crate::record::vma::VmaKind;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// ELF `e_machine` for x86_64.
pub const ARCH_X86_64: u16 = 62;

/// Smallest page size an image may declare.
pub const MIN_PAGE_SIZE: u32 = 4096;
/// Largest page size an image may declare.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Largest `xsave_size`.
pub const MAX_XSAVE_SIZE: u32 = 65536;
/// Largest `kernel_release`, `hostname` and `tool_version`.
pub const MAX_TEXT: u32 = 256;
/// Most entries in `special_mappings`.
pub const MAX_SPECIAL_MAPPINGS: u32 = 16;
/// Bytes of one `special_mapping`.
pub const SPECIAL_MAPPING_SIZE: usize = 17;

/// What the image says about the host and the capture (spec §3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// ELF `e_machine` of the captured processes.
    pub arch: u16,
    /// Bytes per page.
    pub page_size: u32,
    /// Unix time of capture, nanoseconds.
    pub capture_time_ns: i64,
    /// The capture CPU's XCR0.
    pub xsave_features: u64,
    /// XSAVE area size for `xsave_features`.
    pub xsave_size: u32,
    /// `uname -r` of the capture host.
    pub kernel_release: ByteString,
    /// Host name of the capture host.
    pub hostname: ByteString,
    /// Version of the tool that wrote the image.
    pub tool_version: ByteString,
    /// The capture host's vDSO/vvar layout.
    pub special_mappings: Vec<SpecialMapping>,
}

/// One vDSO/vvar/vsyscall mapping of the capture host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialMapping {
    /// Which mapping (one of the special VMA kinds).
    pub kind: VmaKind,
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
}

/// Parses a HEADER payload (`spec/crak-format.md#header`, §3.1).
///
/// Rejects (`bad-value`) an `arch` other than x86_64, a `page_size` that is not a power of two
/// in 4096..=65536, an `xsave_size` above 65536, a text field above 256 bytes, more than 16
/// special mappings or one whose kind is not a special VMA kind.
pub fn parse(payload: &[u8]) -> Result<Header, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Header> {
    let (r, arch) = wire::u16f("arch")(i)?;
    if arch != ARCH_X86_64 {
        return wire::fail(
            ErrorKind::BadValue,
            "arch",
            i,
            format!("e_machine {arch} is not x86_64 (62)"),
        );
    }
    let (r, ()) = wire::reserved("reserved", 2)(r)?;
    let (r2, page_size) = wire::u32f("page_size")(r)?;
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return wire::fail(
            ErrorKind::BadValue,
            "page_size",
            r,
            format!("{page_size} is not a power of two between 4096 and 65536"),
        );
    }
    let r = r2;
    let (r, capture_time_ns) = wire::i64f("capture_time_ns")(r)?;
    let (r, xsave_features) = wire::u64f("xsave_features")(r)?;
    let (r2, xsave_size) = wire::u32f("xsave_size")(r)?;
    if xsave_size > MAX_XSAVE_SIZE {
        return wire::fail(
            ErrorKind::BadValue,
            "xsave_size",
            r,
            format!("{xsave_size} exceeds {MAX_XSAVE_SIZE}"),
        );
    }
    let r = r2;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, kernel_release) = wire::bytes("kernel_release", MAX_TEXT)(r)?;
    let (r, hostname) = wire::bytes("hostname", MAX_TEXT)(r)?;
    let (r, tool_version) = wire::bytes("tool_version", MAX_TEXT)(r)?;
    let (r, special_mappings) = wire::list(
        "special_mappings",
        MAX_SPECIAL_MAPPINGS,
        SPECIAL_MAPPING_SIZE,
        special_mapping,
    )(r)?;
    Ok((
        r,
        Header {
            arch,
            page_size,
            capture_time_ns,
            xsave_features,
            xsave_size,
            kernel_release: kernel_release.into(),
            hostname: hostname.into(),
            tool_version: tool_version.into(),
            special_mappings,
        },
    ))
}

fn special_mapping(i: &[u8]) -> PResult<'_, SpecialMapping> {
    let (r, k) = wire::u8f("special_mappings.kind")(i)?;
    let kind = match VmaKind::from_u16(u16::from(k)) {
        Some(kind) if kind.is_special() => kind,
        _ => {
            return wire::fail(
                ErrorKind::BadValue,
                "special_mappings.kind",
                i,
                format!("{k} is not a special VMA kind (5-9)"),
            )
        }
    };
    let (r, start) = wire::u64f("special_mappings.start")(r)?;
    let (r, end) = wire::u64f("special_mappings.end")(r)?;
    Ok((r, SpecialMapping { kind, start, end }))
}

/// Appends the HEADER payload of `h` (§3.1).
pub fn write(h: &Header, out: &mut Vec<u8>) {
    wire::put_u16(out, h.arch);
    wire::put_u16(out, 0);
    wire::put_u32(out, h.page_size);
    wire::put_i64(out, h.capture_time_ns);
    wire::put_u64(out, h.xsave_features);
    wire::put_u32(out, h.xsave_size);
    wire::put_u32(out, 0);
    wire::put_bytes(out, h.kernel_release.as_bytes());
    wire::put_bytes(out, h.hostname.as_bytes());
    wire::put_bytes(out, h.tool_version.as_bytes());
    wire::put_count(out, h.special_mappings.len());
    for m in &h.special_mappings {
        wire::put_u8(out, m.kind as u8);
        wire::put_u64(out, m.start);
        wire::put_u64(out, m.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Header {
        Header {
            arch: ARCH_X86_64,
            page_size: 4096,
            capture_time_ns: 1,
            xsave_features: 7,
            xsave_size: 832,
            kernel_release: "6.1".into(),
            hostname: "h".into(),
            tool_version: "".into(),
            special_mappings: vec![SpecialMapping {
                kind: VmaKind::Vdso,
                start: 0x7000,
                end: 0x9000,
            }],
        }
    }

    #[test]
    fn byte_example() {
        #[rustfmt::skip]
        let bytes: &[u8] = &[
            62, 0, 0, 0, 0x00, 0x10, 0, 0,          // arch, reserved, page_size
            1, 0, 0, 0, 0, 0, 0, 0,                 // capture_time_ns
            7, 0, 0, 0, 0, 0, 0, 0,                 // xsave_features
            0x40, 3, 0, 0, 0, 0, 0, 0,              // xsave_size 832, reserved
            3, 0, 0, 0, b'6', b'.', b'1',           // kernel_release
            1, 0, 0, 0, b'h',                       // hostname
            0, 0, 0, 0,                             // tool_version
            1, 0, 0, 0,                             // special_mappings count
            5, 0, 0x70, 0, 0, 0, 0, 0, 0,           // VDSO, start
            0, 0x90, 0, 0, 0, 0, 0, 0,              // end
        ];
        let mut out = Vec::new();
        write(&example(), &mut out);
        assert_eq!(out, bytes);
        assert_eq!(parse(bytes).unwrap(), example());
    }

    #[test]
    fn rejects_bad_page_size_and_names_it() {
        let mut b = Vec::new();
        write(
            &Header {
                page_size: 5000,
                ..example()
            },
            &mut b,
        );
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "page_size", 4)
        );
    }

    #[test]
    fn rejects_non_special_mapping_kind() {
        let mut h = example();
        h.special_mappings[0].kind = VmaKind::Anon;
        let mut b = Vec::new();
        write(&h, &mut b);
        let e = parse(&b).unwrap_err();
        assert_eq!(e.field, "special_mappings.kind");
    }

    #[test]
    fn every_truncation_is_an_error_and_extra_bytes_are_ignored() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        for n in 0..b.len() {
            assert_eq!(parse(&b[..n]).unwrap_err().kind, ErrorKind::Truncated);
        }
        b.extend_from_slice(&[9; 7]);
        assert_eq!(parse(&b).unwrap(), example());
    }

    proptest! {
        #[test]
        fn round_trip(h in crate::arbitrary::header()) {
            let mut b = Vec::new();
            write(&h, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), h);
        }
    }
}
