//! HEADER rules: a usable page size and XSAVE size, a sane special-mapping table
//! (`spec/crak-format.md#header`).

use super::{bytes_len, overlaps, At, Cx, Field};
use crate::record::header::ARCH_X86_64;
use crate::record::kind;

pub(super) fn check(cx: &mut Cx<'_, '_>) {
    let h = &cx.image.header;
    let at = At::image(kind::HEADER, None);
    if h.arch != ARCH_X86_64 {
        cx.error(
            "unsupported-arch",
            at,
            Field::At("arch", 0),
            format!("arch {} is not x86_64 ({ARCH_X86_64})", h.arch),
        );
    }
    if cx.page_size.is_none() {
        cx.error(
            "bad-page-size",
            at,
            Field::At("page_size", 4),
            format!(
                "page_size {} is not a power of two between 4096 and 65536; page checks skipped",
                h.page_size
            ),
        );
    }
    if h.xsave_size > 65536 {
        cx.error(
            "bad-xsave-size",
            at,
            Field::At("xsave_size", 24),
            format!("xsave_size {} exceeds 65536", h.xsave_size),
        );
    }
    // special_mappings[i] (17 bytes each) follows three byte strings and the list count.
    let list = [&h.kernel_release, &h.hostname, &h.tool_version]
        .iter()
        .fold(32u64, |acc, b| acc.saturating_add(bytes_len(b.as_bytes())));
    let entry = |i: usize| {
        list.saturating_add(4)
            .saturating_add((i as u64).saturating_mul(17))
    };
    let mut specials: Vec<(u64, u64, usize)> = Vec::with_capacity(h.special_mappings.len());
    for (i, m) in h.special_mappings.iter().enumerate() {
        if !m.kind.is_special() {
            cx.error(
                "bad-special-mapping",
                at,
                Field::At("special_mappings", entry(i)),
                format!(
                    "special mapping {i} has kind {:?}, not a vDSO/vvar/vsyscall kind",
                    m.kind
                ),
            );
        }
        if m.end <= m.start {
            cx.error(
                "bad-special-mapping",
                at,
                Field::At("special_mappings", entry(i).saturating_add(1)),
                format!(
                    "special mapping {i} is empty or inverted: 0x{:x}-0x{:x}",
                    m.start, m.end
                ),
            );
        } else {
            specials.push((m.start, m.end, i));
        }
    }
    for (a, b) in overlaps(&mut specials) {
        cx.error(
            "bad-special-mapping",
            at,
            Field::At("special_mappings", entry(b).saturating_add(1)),
            format!("special mappings {a} and {b} overlap"),
        );
    }
}
