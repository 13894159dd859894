//! VMA rules: non-empty, page-aligned, sorted and disjoint mappings with one of
//! MAP_SHARED/MAP_PRIVATE, absolute paths for file mappings (`spec/crak-format.md#vma`).

use super::{is_absolute, overlaps, At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::record::vma::{VmaKind, MAP_PRIVATE, MAP_SHARED};

/// Most VMAs a process may have (spec §3.10).
pub const MAX_VMAS: usize = 1 << 20;

/// A usable mapping for the page checks: `[start, end)`, its kind and index.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub start: u64,
    pub end: u64,
    pub kind: VmaKind,
    pub index: usize,
}

/// Checks the VMAs of `p` and returns its non-empty ones sorted by start, for lookups.
pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>) -> Vec<Span> {
    let pid = p.pid();
    if p.vmas.is_empty() && !p.process.is_zombie() {
        cx.warn(
            "no-vmas",
            At::once(kind::PROCESS, pid),
            Field::At("pid", 0),
            format!("process {pid} has no VMA"),
        );
    }
    if p.vmas.len() > MAX_VMAS {
        cx.error(
            "too-many-vmas",
            At::once(kind::PROCESS, pid),
            Field::At("pid", 0),
            format!(
                "process {pid} has {} VMAs, more than {MAX_VMAS}",
                p.vmas.len()
            ),
        );
    }
    let mut spans = Vec::with_capacity(p.vmas.len());
    let mut prev_start: Option<u64> = None;
    for (i, v) in p.vmas.iter().enumerate() {
        let at = At::proc(kind::VMA, pid, i);
        if let Some(prev) = prev_start {
            if v.start < prev {
                cx.error(
                    "vma-unsorted",
                    at,
                    Field::At("start", 8),
                    format!(
                        "VMA 0x{:x} comes after VMA #{} which starts at 0x{prev:x}",
                        v.start,
                        i.saturating_sub(1)
                    ),
                );
            }
        }
        prev_start = Some(v.start);
        if let Some(ps) = cx.page_size {
            for (name, off, addr) in [("start", 8, v.start), ("end", 16, v.end)] {
                if addr % ps != 0 {
                    cx.error(
                        "vma-unaligned",
                        at,
                        Field::At(name, off),
                        format!("{name} 0x{addr:x} is not a multiple of the page size {ps}"),
                    );
                }
            }
        }
        if v.end <= v.start {
            cx.error(
                "vma-empty",
                at,
                Field::At("end", 16),
                format!("VMA 0x{:x}-0x{:x} is empty or inverted", v.start, v.end),
            );
        } else {
            spans.push(Span {
                start: v.start,
                end: v.end,
                kind: v.kind,
                index: i,
            });
        }
        let share = v.flags & (MAP_SHARED | MAP_PRIVATE);
        if share != MAP_SHARED && share != MAP_PRIVATE {
            cx.error(
                "vma-bad-flags",
                at,
                Field::At("flags", 28),
                format!(
                    "flags 0x{:x} must have exactly one of MAP_SHARED and MAP_PRIVATE",
                    v.flags
                ),
            );
        }
        if v.kind == VmaKind::File && !is_absolute(v.path.as_bytes()) {
            cx.warn(
                "path-not-absolute",
                at,
                Field::At("path", 80),
                format!("file mapping path {:?} is not absolute", v.path),
            );
        }
    }

    let mut ranges: Vec<(u64, u64, usize)> =
        spans.iter().map(|s| (s.start, s.end, s.index)).collect();
    for (a, b) in overlaps(&mut ranges) {
        let (Some(va), Some(vb)) = (p.vmas.get(a), p.vmas.get(b)) else {
            continue;
        };
        cx.error(
            "vma-overlap",
            At::proc(kind::VMA, pid, b),
            Field::At("start", 8),
            format!(
                "VMA #{b} 0x{:x}-0x{:x} overlaps VMA #{a} 0x{:x}-0x{:x}",
                vb.start, vb.end, va.start, va.end
            ),
        );
    }
    spans.sort_unstable_by_key(|s| (s.start, s.end));
    spans
}

/// The mapping holding `[start, end)` entirely, if any (binary search over sorted `spans`).
pub(super) fn containing(spans: &[Span], start: u64, end: u64) -> Option<&Span> {
    let i = spans.partition_point(|s| s.start <= start);
    let s = spans.get(i.checked_sub(1)?)?;
    (start >= s.start && end <= s.end).then_some(s)
}
