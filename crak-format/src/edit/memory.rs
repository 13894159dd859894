//! Reading and writing process memory as the image records it (spec §3.10–§3.12).

use super::{refused, EditError};
use crate::bytes::Blob;
use crate::image::{Image, Process};
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::vma::{Vma, VmaKind, MAP_SHARED};
use std::borrow::Cow;

/// Largest read [`read_memory`] serves in one call.
pub const MAX_READ: u64 = 64 << 20;

/// What the image says about one page.
enum Page<'a> {
    /// Stored in a PAGES run.
    Stored(&'a [u8]),
    /// Recorded as zero, or an unrecorded page of anonymous memory (which reads as zero).
    Zero,
}

fn vma_of<'a>(p: &'a Process<'_>, addr: u64) -> Option<&'a Vma> {
    p.vmas.iter().find(|v| v.start <= addr && addr < v.end)
}

fn run_end(addr: u64, nr: u64, ps: u64) -> u64 {
    nr.checked_mul(ps)
        .and_then(|n| addr.checked_add(n))
        .unwrap_or(u64::MAX)
}

/// The contents of the page at `page` (page-aligned) of process `p`.
fn page_of<'a>(p: &'a Process<'_>, ps: u64, page: u64) -> Result<Page<'a>, EditError> {
    let pid = p.pid();
    let vma = vma_of(p, page).ok_or(EditError::Unmapped { pid, addr: page })?;
    for r in &p.pages {
        if r.addr <= page && page < run_end(r.addr, r.nr_pages, ps) {
            let off = usize::try_from(page - r.addr).unwrap_or(usize::MAX);
            let len = usize::try_from(ps).unwrap_or(usize::MAX);
            let data = off
                .checked_add(len)
                .and_then(|end| r.data.as_bytes().get(off..end));
            return match data {
                Some(d) => Ok(Page::Stored(d)),
                None => refused(format!(
                    "the PAGES run at {:#x} of process {pid} holds less data than its {} pages",
                    r.addr, r.nr_pages
                )),
            };
        }
    }
    if p.zero_runs
        .iter()
        .any(|z| z.addr <= page && page < run_end(z.addr, z.nr_pages, ps))
    {
        return Ok(Page::Zero);
    }
    match vma.kind {
        VmaKind::Anon | VmaKind::Heap | VmaKind::Stack if vma.flags & MAP_SHARED == 0 => {
            Ok(Page::Zero)
        }
        _ => refused(format!(
            "page {page:#x} of process {pid} ({} {}) is not in the image: its contents come from {} at restore",
            vma.perms(),
            if vma.path.as_bytes().is_empty() { "[anon]".into() } else { vma.path.to_string_lossy() },
            match vma.kind {
                VmaKind::File => "the file",
                VmaKind::SysvShm => "the shared memory segment",
                _ => "the kernel",
            }
        )),
    }
}

fn page_size(image: &Image<'_>) -> Result<u64, EditError> {
    let ps = u64::from(image.header.page_size);
    if !ps.is_power_of_two() || ps < 4096 {
        return refused(format!("the image's page size {ps} is not usable"));
    }
    Ok(ps)
}

/// Reads `len` bytes of process memory at `addr` (`pid`, or the first process) as the image
/// records them: stored pages, zero pages and unrecorded anonymous pages. A page whose contents
/// the image does not hold (an unrecorded page of a file mapping, vDSO) is an error, as is a
/// read above [`MAX_READ`].
pub fn read_memory(
    image: &Image<'_>,
    pid: Option<u32>,
    addr: u64,
    len: u64,
) -> Result<Vec<u8>, EditError> {
    let ps = page_size(image)?;
    let p = match pid {
        Some(pid) => image.process(pid).ok_or(EditError::NoProcess(pid))?,
        None => image.processes.first().ok_or(EditError::Empty)?,
    };
    if len > MAX_READ {
        return refused(format!("a read of {len} bytes is above {MAX_READ}"));
    }
    let end = addr.checked_add(len).ok_or(EditError::Unmapped {
        pid: p.pid(),
        addr: u64::MAX,
    })?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut at = addr;
    while at < end {
        let page = at & !(ps - 1);
        let in_page = usize::try_from(at - page).unwrap_or(0);
        let take = usize::try_from((end - at).min(ps - (at - page))).unwrap_or(0);
        match page_of(p, ps, page)? {
            Page::Stored(d) => {
                let part = in_page
                    .checked_add(take)
                    .and_then(|e| d.get(in_page..e))
                    .unwrap_or_default();
                out.extend_from_slice(part);
            }
            Page::Zero => out.resize(out.len().saturating_add(take), 0),
        }
        at = at.saturating_add(take as u64);
    }
    Ok(out)
}

/// Writes `bytes` into the memory of process `pid` (or the first process) at `addr`.
///
/// Every page touched must be stored, zero, or an unrecorded page of private anonymous
/// memory (heap, stack, anon); a page of a file mapping the image does not store, a shared or
/// special mapping, or an address outside every VMA is refused. A changed page is stored in a
/// PAGES run of its own (the runs it was part of are split), or in a ZERO_PAGES run when it
/// is all zeros after the edit (§3.11: a zero page is never stored). Pages whose contents do
/// not change are left alone. Returns the number of pages changed.
pub fn poke(
    image: &mut Image<'_>,
    pid: Option<u32>,
    addr: u64,
    bytes: &[u8],
) -> Result<usize, EditError> {
    let ps = page_size(image)?;
    let p = super::select(image, pid)?;
    let pid = p.pid();
    let end = addr
        .checked_add(bytes.len() as u64)
        .ok_or(EditError::Unmapped {
            pid,
            addr: u64::MAX,
        })?;
    // First compute every new page, so that a refusal leaves the image unchanged.
    let mut changes: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut at = addr;
    while at < end {
        let page = at & !(ps - 1);
        let vma = vma_of(p, page).ok_or(EditError::Unmapped { pid, addr: at })?;
        if vma.kind.is_special() || vma.flags & MAP_SHARED != 0 {
            return refused(format!(
                "address {at:#x} is in the {} mapping {:#x}-{:#x} {}; only private memory can be poked",
                if vma.flags & MAP_SHARED != 0 { "shared" } else { "special" },
                vma.start,
                vma.end,
                vma.path
            ));
        }
        let mut data = match page_of(p, ps, page)? {
            Page::Stored(d) => d.to_vec(),
            Page::Zero => vec![0u8; usize::try_from(ps).unwrap_or(0)],
        };
        let in_page = usize::try_from(at - page).unwrap_or(0);
        let take = usize::try_from((end - at).min(ps - (at - page))).unwrap_or(0);
        let src_off = usize::try_from(at - addr).unwrap_or(0);
        let src = src_off
            .checked_add(take)
            .and_then(|e| bytes.get(src_off..e))
            .unwrap_or_default();
        let old = data.clone();
        if let Some(dst) = in_page
            .checked_add(take)
            .and_then(|e| data.get_mut(in_page..e))
        {
            dst.copy_from_slice(src);
        }
        if data != old {
            changes.push((page, data));
        }
        at = at.saturating_add(take as u64);
    }
    let n = changes.len();
    for (page, data) in changes {
        set_page(p, ps, page, data);
    }
    Ok(n)
}

/// `blob[range]`, borrowed when `blob` is.
fn sub_blob<'d>(blob: &Blob<'d>, from: u64, to: u64) -> Blob<'d> {
    let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
        return Blob::default();
    };
    match &blob.0 {
        Cow::Borrowed(s) => Blob(Cow::Borrowed(s.get(from..to).unwrap_or_default())),
        Cow::Owned(v) => Blob::from(v.get(from..to).unwrap_or_default().to_vec()),
    }
}

/// Replaces whatever records page `page` with `data` (stored) or a zero run when it is all
/// zeros, splitting the runs that covered it.
fn set_page(p: &mut Process<'_>, ps: u64, page: u64, data: Vec<u8>) {
    let pid = p.pid();
    let mut pages = Vec::with_capacity(p.pages.len().saturating_add(2));
    for r in std::mem::take(&mut p.pages) {
        let end = run_end(r.addr, r.nr_pages, ps);
        if page < r.addr || page >= end {
            pages.push(r);
            continue;
        }
        let before = (page - r.addr) / ps;
        let after = ((end - page) / ps).saturating_sub(1);
        if before > 0 {
            pages.push(PageRun {
                pid,
                addr: r.addr,
                nr_pages: before,
                data: sub_blob(&r.data, 0, before.saturating_mul(ps)),
            });
        }
        if after > 0 {
            let from = before.saturating_add(1).saturating_mul(ps);
            pages.push(PageRun {
                pid,
                addr: page.saturating_add(ps),
                nr_pages: after,
                data: sub_blob(&r.data, from, from.saturating_add(after.saturating_mul(ps))),
            });
        }
    }
    let mut zeros = Vec::with_capacity(p.zero_runs.len().saturating_add(2));
    for z in std::mem::take(&mut p.zero_runs) {
        let end = run_end(z.addr, z.nr_pages, ps);
        if page < z.addr || page >= end {
            zeros.push(z);
            continue;
        }
        let before = (page - z.addr) / ps;
        let after = ((end - page) / ps).saturating_sub(1);
        if before > 0 {
            zeros.push(ZeroRun {
                pid,
                addr: z.addr,
                nr_pages: before,
            });
        }
        if after > 0 {
            zeros.push(ZeroRun {
                pid,
                addr: page.saturating_add(ps),
                nr_pages: after,
            });
        }
    }
    if data.iter().all(|&b| b == 0) {
        zeros.push(ZeroRun {
            pid,
            addr: page,
            nr_pages: 1,
        });
    } else {
        pages.push(PageRun {
            pid,
            addr: page,
            nr_pages: 1,
            data: Blob::from(data),
        });
    }
    pages.sort_by_key(|r| r.addr);
    zeros.sort_by_key(|z| z.addr);
    // Runs are not merged: stored runs keep borrowing the parsed image, and a merged run
    // could cross from one VMA into the next.
    p.pages = pages;
    p.zero_runs = zeros;
}
