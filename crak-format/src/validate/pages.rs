//! PAGES and ZERO_PAGES rules: aligned, non-empty runs inside one VMA of their process, not
//! overlapping each other, page data aligned in the file, no all-zero page stored, no page
//! stored for kernel-provided mappings (`spec/crak-format.md#pages`, `#zero-pages`).

use super::vma::{containing, Span};
use super::{overlaps, run_end, At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::RECORD_HEADER_LEN;

/// One run for the overlap sweep.
#[derive(Clone, Copy, Debug)]
struct Run {
    kind: u16,
    index: usize,
}

impl Run {
    fn name(self) -> &'static str {
        if self.kind == kind::PAGES {
            "PAGES"
        } else {
            "ZERO_PAGES"
        }
    }
}

pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>, vmas: &[Span]) {
    let Some(ps) = cx.page_size else {
        return; // reported as bad-page-size; nothing can be said about pages
    };
    let pid = p.pid();
    let mut ranges: Vec<(u64, u64, Run)> =
        Vec::with_capacity(p.pages.len().saturating_add(p.zero_runs.len()));
    let runs = p
        .pages
        .iter()
        .enumerate()
        .map(|(i, r)| (kind::PAGES, i, r.addr, r.nr_pages))
        .chain(
            p.zero_runs
                .iter()
                .enumerate()
                .map(|(i, r)| (kind::ZERO_PAGES, i, r.addr, r.nr_pages)),
        );
    for (k, i, addr, nr) in runs {
        let at = At::proc(k, pid, i);
        let name = if k == kind::PAGES {
            "PAGES"
        } else {
            "ZERO_PAGES"
        };
        if nr == 0 {
            cx.error(
                "pages-empty",
                at,
                Field::At("nr_pages", 16),
                format!("{name} run at 0x{addr:x} has no pages"),
            );
            continue;
        }
        if addr % ps != 0 {
            cx.error(
                "pages-unaligned",
                at,
                Field::At("addr", 8),
                format!("addr 0x{addr:x} is not a multiple of the page size {ps}"),
            );
        }
        let Some(end) = run_end(addr, nr, ps) else {
            cx.error(
                "pages-outside-vma",
                at,
                Field::At("nr_pages", 16),
                format!("{nr} pages from 0x{addr:x} run past the end of the address space"),
            );
            continue;
        };
        match containing(vmas, addr, end) {
            None => cx.error(
                "pages-outside-vma",
                at,
                Field::At("addr", 8),
                format!("{name} run 0x{addr:x}-0x{end:x} is not inside one VMA of process {pid}"),
            ),
            Some(v) if k == kind::PAGES && v.kind.is_special() => cx.warn(
                "pages-in-special-mapping",
                at,
                Field::At("addr", 8),
                format!(
                    "pages stored for VMA #{} ({:?}) whose contents the kernel provides",
                    v.index, v.kind
                ),
            ),
            Some(v) if k == kind::PAGES && v.kind == crate::record::vma::VmaKind::SysvShm => cx
                .warn(
                    "pages-in-sysv-shm",
                    at,
                    Field::At("addr", 8),
                    format!(
                        "pages stored for VMA #{} (SysV shared memory), whose contents are its SHM record's",
                        v.index
                    ),
                ),
            Some(_) => {}
        }
        ranges.push((addr, end, Run { kind: k, index: i }));
    }

    for (i, r) in p.pages.iter().enumerate() {
        check_data(cx, pid, i, r.nr_pages, r.data.as_bytes(), ps);
    }

    for (a, b) in overlaps(&mut ranges) {
        cx.error(
            "pages-overlap",
            At::proc(b.kind, pid, b.index),
            Field::At("addr", 8),
            format!(
                "{} #{} overlaps {} #{}",
                b.name(),
                b.index,
                a.name(),
                a.index
            ),
        );
    }
}

/// Page data of PAGES #`i`: its length (when held), no all-zero page, and its place in the file.
fn check_data(cx: &mut Cx<'_, '_>, pid: u32, i: usize, nr: u64, data: &[u8], ps: u64) {
    let at = At::proc(kind::PAGES, pid, i);
    let want = nr.checked_mul(ps);
    // A model read from a stream holds no page data: only the file layout can be checked.
    if !data.is_empty() {
        if want != Some(data.len() as u64) {
            cx.error(
                "pages-data-length",
                at,
                Field::At("data", 28),
                format!("{} bytes of data for {nr} pages of {ps} bytes", data.len()),
            );
        } else if cx.page_contents {
            let chunk = usize::try_from(ps).unwrap_or(usize::MAX);
            let zero: Vec<usize> = data
                .chunks(chunk)
                .enumerate()
                .filter(|(_, page)| page.iter().all(|&b| b == 0))
                .map(|(n, _)| n)
                .collect();
            if let Some(&first) = zero.first() {
                cx.warn(
                    "zero-page-stored",
                    at,
                    Field::At("data", 28),
                    format!(
                        "{} of {nr} stored pages are all zeros (first: page {first}); \
                         they belong in ZERO_PAGES",
                        zero.len()
                    ),
                );
            }
        }
    }
    let Some(span) = cx.span(at) else {
        return;
    };
    let Some(want) = want else {
        return;
    };
    // length = data_offset + nr_pages × page_size, so data starts `length - want` into the
    // payload.
    let start = span
        .length
        .checked_sub(want)
        .and_then(|d| d.checked_add(RECORD_HEADER_LEN as u64))
        .and_then(|d| d.checked_add(span.offset));
    match start {
        None => cx.error(
            "pages-data-length",
            at,
            Field::At("data_offset", 24),
            format!(
                "payload of {} bytes cannot hold {nr} pages of {ps} bytes",
                span.length
            ),
        ),
        Some(start) if start % ps != 0 => cx.error(
            "pages-data-unaligned",
            at,
            Field::At("data_offset", 24),
            format!("page data starts at file offset 0x{start:x}, not a multiple of {ps}"),
        ),
        Some(_) => {}
    }
}
