//! The address space: VMA records from `/proc/PID/smaps` (spec §3.10) and page contents
//! selected with `/proc/PID/pagemap` and read with batched `process_vm_readv` (§3.11, §3.12).

use super::Error;
use crate::procfs::{self, MapEntry, Pagemap, PagemapEntry};
use crate::sys::mem;
use crak_format::record::header::SpecialMapping;
use crak_format::record::vma::{self, madv, Vma, VmaKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;

/// Which pages of a mapping are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagePolicy {
    /// Anonymous memory (private or shared): every present or swapped page.
    Anon,
    /// Private file mapping: only the private copies (present or swapped, not file-backed).
    PrivateFile,
    /// Nothing (shared file mappings: the file holds it; vDSO/vvar/vsyscall: the kernel does;
    /// a memfd an fd holds: its FD record does).
    None,
    /// Every page below this address (a memfd only mapped: the pages of the object inside the
    /// mapping and inside the object's size, whether this process touched them or not).
    Whole(u64),
}

/// One mapping to capture.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The VMA record.
    pub vma: Vma,
    /// Which pages to store.
    pub policy: PagePolicy,
}

/// Classifies one `/proc/PID/smaps` entry, or says why it cannot be captured.
pub fn classify(pid: i32, e: &MapEntry) -> Result<(VmaKind, PagePolicy), Error> {
    let p = e.path.as_slice();
    let unsupported = |what: &str| Error::UnsupportedVma {
        pid,
        start: e.start,
        end: e.end,
        what: what.to_string(),
    };
    let shared_policy = if e.shared {
        PagePolicy::None
    } else {
        PagePolicy::PrivateFile
    };
    Ok(match p {
        b"" => (VmaKind::Anon, PagePolicy::Anon),
        b"[heap]" => (VmaKind::Heap, PagePolicy::Anon),
        b"[stack]" => (VmaKind::Stack, PagePolicy::Anon),
        b"[vdso]" => (VmaKind::Vdso, PagePolicy::None),
        b"[vvar]" => (VmaKind::Vvar, PagePolicy::None),
        b"[vvar_vclock]" => (VmaKind::VvarVclock, PagePolicy::None),
        b"[vsyscall]" => (VmaKind::Vsyscall, PagePolicy::None),
        _ if p.starts_with(b"[vvar") => (VmaKind::VvarOther, PagePolicy::None),
        _ if p.starts_with(b"[anon:") || p.starts_with(b"[anon_shmem:") => {
            (VmaKind::Anon, PagePolicy::Anon)
        }
        b"/dev/zero (deleted)" | b"/dev/zero" => (VmaKind::Anon, PagePolicy::Anon),
        // The segment's contents go in its SHM record (capture::ipc), not in PAGES.
        _ if p.starts_with(b"/SYSV") && e.shared => (VmaKind::SysvShm, PagePolicy::None),
        _ if p.starts_with(b"/SYSV") => {
            return Err(unsupported("is a private mapping of SysV shared memory"))
        }
        // A memfd is shared memory (spec §3.13): its contents are in its FD record when an fd
        // holds it (the caller then leaves the policy as is), else its pages are stored.
        _ if p.starts_with(b"/memfd:") && e.shared => (VmaKind::Anon, PagePolicy::None),
        _ if p.starts_with(b"/memfd:") => {
            return Err(unsupported("is a private mapping of a memfd"))
        }
        _ if p.starts_with(b"[") => {
            return Err(unsupported(&format!(
                "is the special mapping {}",
                String::from_utf8_lossy(p)
            )))
        }
        _ if p.ends_with(b" (deleted)") => {
            return Err(unsupported(&format!(
                "maps the deleted file {}",
                String::from_utf8_lossy(p)
            )))
        }
        _ if p.starts_with(b"/") => (VmaKind::File, shared_policy),
        _ => {
            return Err(unsupported(&format!(
                "has an unknown backing {:?}",
                String::from_utf8_lossy(p)
            )))
        }
    })
}

/// The VMA record's `madvise` bits of a smaps entry (its `VmFlags`).
pub fn madvise_bits(e: &MapEntry) -> u32 {
    let mut m = 0;
    for (flag, bit) in [
        ("dc", madv::DONTFORK),
        ("wf", madv::WIPEONFORK),
        ("dd", madv::DONTDUMP),
        ("hg", madv::HUGEPAGE),
        ("nh", madv::NOHUGEPAGE),
        ("lo", madv::LOCKED),
    ] {
        if e.has_flag(flag) {
            m |= bit;
        }
    }
    m
}

thread_local! {
    /// smaps entries of a process read earlier, whose `VmFlags` [`mappings`] uses instead of
    /// reading smaps again (see [`with_flags_hint`]).
    static FLAGS_HINT: std::cell::RefCell<Option<(i32, Vec<MapEntry>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `entries` (the smaps of `pid`, read before it was frozen) as the source of
/// the `VmFlags` that [`mappings`] of `pid` needs, on this thread. smaps walks every page table
/// (about 20 ms per GiB), `maps` does not: with the hint, [`mappings`] reads `maps` and takes
/// each mapping's flags from the entry with the same range, permissions, offset, inode and path
/// (reading smaps after all when one has none). The flags may have changed in between without
/// the range changing (a `madvise` of a whole mapping): the caller must check them afterwards
/// (a forked snapshot checks them against the snapshot child's smaps).
pub fn with_flags_hint<T>(pid: i32, entries: Vec<MapEntry>, f: impl FnOnce() -> T) -> T {
    FLAGS_HINT.with(|h| *h.borrow_mut() = Some((pid, entries)));
    let r = f();
    FLAGS_HINT.with(|h| *h.borrow_mut() = None);
    r
}

/// The mapping entries of `pid` with their `VmFlags`: from smaps, or from maps and the hint.
fn entries(pid: i32) -> Result<Vec<MapEntry>, Error> {
    let hinted = FLAGS_HINT.with(|h| -> Result<Option<Vec<MapEntry>>, Error> {
        let h = h.borrow();
        let Some((_, hint)) = h.as_ref().filter(|(p, _)| *p == pid) else {
            return Ok(None);
        };
        let mut maps = procfs::maps(pid)?;
        for e in &mut maps {
            let same = hint.iter().find(|x| {
                x.start == e.start
                    && x.end == e.end
                    && (x.read, x.write, x.exec, x.shared) == (e.read, e.write, e.exec, e.shared)
                    && x.offset == e.offset
                    && x.inode == e.inode
                    && x.path == e.path
            });
            match same {
                Some(x) => e.vm_flags = x.vm_flags.clone(),
                None => return Ok(None),
            }
        }
        Ok(Some(maps))
    })?;
    match hinted {
        Some(m) => Ok(m),
        None => Ok(procfs::smaps(pid)?),
    }
}

/// Reads the target's mappings and classifies them; an unsupported one is an error naming it.
pub fn mappings(pid: i32) -> Result<Vec<Mapping>, Error> {
    mappings_of(pid, &entries(pid)?)
}

/// Classifies the mapping `entries` (from smaps) of `pid`; an unsupported one is an error
/// naming it.
pub fn mappings_of(pid: i32, entries: &[MapEntry]) -> Result<Vec<Mapping>, Error> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (kind, policy) = classify(pid, e)?;
        let mut prot = 0;
        if e.read {
            prot |= vma::PROT_READ;
        }
        if e.write {
            prot |= vma::PROT_WRITE;
        }
        if e.exec {
            prot |= vma::PROT_EXEC;
        }
        let mut flags = if e.shared {
            vma::MAP_SHARED
        } else {
            vma::MAP_PRIVATE
        };
        if e.has_flag("gd") {
            flags |= vma::MAP_GROWSDOWN;
        }
        let mut v = Vma {
            pid: pid as u32,
            kind,
            start: e.start,
            end: e.end,
            prot,
            flags,
            madvise: madvise_bits(e),
            pgoff: 0,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            path: e.path.clone().into(),
        };
        match kind {
            VmaKind::File => {
                // map_files gives the mapped file itself (even when renamed); the path is the
                // fallback.
                let mf = procfs::path(pid, &format!("map_files/{:x}-{:x}", e.start, e.end));
                let md = std::fs::metadata(&mf)
                    .or_else(|_| std::fs::metadata(std::ffi::OsStr::from_bytes(&e.path)))
                    .map_err(|err| Error::Io {
                        context: format!(
                            "stat of {} mapped at {:#x}",
                            String::from_utf8_lossy(&e.path),
                            e.start
                        ),
                        source: err,
                    })?;
                let ft = md.file_type();
                if ft.is_char_device() || ft.is_block_device() {
                    return Err(Error::UnsupportedVma {
                        pid,
                        start: e.start,
                        end: e.end,
                        what: format!("maps the device {}", String::from_utf8_lossy(&e.path)),
                    });
                }
                v.pgoff = e.offset;
                let st = crak_format::edit::FileStat::from(&md);
                (v.dev, v.ino, v.size, v.mtime_ns) = (st.dev, st.ino, st.size, st.mtime_ns);
            }
            VmaKind::SysvShm => {
                // maps shows the segment's shmid as its inode (spec §3.10).
                v.ino = e.inode;
                v.pgoff = e.offset;
            }
            VmaKind::Anon => {
                if !e.path.starts_with(b"/memfd:") {
                    v.path = Default::default();
                }
                if e.shared {
                    // The shared memory object: mappings of it in other processes of the
                    // tree have the same inode, and the offset says which part this is.
                    v.ino = e.inode;
                    v.pgoff = e.offset;
                }
            }
            _ => {}
        }
        out.push(Mapping { vma: v, policy });
    }
    Ok(out)
}

/// The special mappings (vDSO, vvar, vsyscall) for the HEADER (§3.1).
pub fn special_mappings(maps: &[Mapping]) -> Vec<SpecialMapping> {
    maps.iter()
        .filter(|m| m.vma.kind.is_special())
        .take(16)
        .map(|m| SpecialMapping {
            kind: m.vma.kind,
            start: m.vma.start,
            end: m.vma.end,
        })
        .collect()
}

/// Where page runs go: into an image being written, or into memory.
pub trait PageSink {
    /// `data.len() / page_size` stored pages starting at `addr`.
    fn pages(&mut self, addr: u64, data: &[u8]) -> Result<(), Error>;
    /// `nr` zero pages starting at `addr`.
    fn zeros(&mut self, addr: u64, nr: u64) -> Result<(), Error>;
}

/// What [`dump_pages`] stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages stored in PAGES records.
    pub stored: u64,
    /// Pages recorded as ZERO_PAGES.
    pub zero: u64,
}

/// Bytes read from the target per batch.
const BATCH_BYTES: usize = 8 << 20;
/// Pagemap entries read per call.
const PAGEMAP_CHUNK: u64 = 1 << 14;

fn wanted(policy: PagePolicy, pe: PagemapEntry) -> bool {
    match policy {
        PagePolicy::Anon => pe.present() || pe.swapped(),
        // A private file mapping's page is a private copy when it is anonymous: present and not
        // a file page, or swapped (only anonymous pages are swapped).
        PagePolicy::PrivateFile => (pe.present() && !pe.file_or_shared()) || pe.swapped(),
        PagePolicy::None => false,
        PagePolicy::Whole(_) => true,
    }
}

fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(16)
        .all(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])) == 0)
}

/// Emits one batch: `pages` (addresses, ascending) whose contents are in `buf`, in order. Runs
/// never cross the start of a mapping (`vma_starts`, sorted): a run lies inside one VMA.
fn emit_batch(
    pages: &[u64],
    vma_starts: &[u64],
    buf: &[u8],
    page_size: usize,
    sink: &mut dyn PageSink,
    stats: &mut PageStats,
) -> Result<(), Error> {
    let ps = page_size as u64;
    let mut i = 0;
    while i < pages.len() {
        let zero = is_zero(buf.get(i * page_size..(i + 1) * page_size).unwrap_or(&[]));
        let mut j = i + 1;
        while j < pages.len()
            && pages[j] == pages[j - 1] + ps
            && vma_starts.binary_search(&pages[j]).is_err()
            && is_zero(buf.get(j * page_size..(j + 1) * page_size).unwrap_or(&[])) == zero
        {
            j += 1;
        }
        let n = (j - i) as u64;
        if zero {
            sink.zeros(pages[i], n)?;
            stats.zero += n;
        } else {
            sink.pages(
                pages[i],
                buf.get(i * page_size..j * page_size).unwrap_or(&[]),
            )?;
            stats.stored += n;
        }
        i = j;
    }
    Ok(())
}

/// Reads the selected pages of every mapping, in address order, into `sink`: coalesced runs,
/// all-zero pages as ZERO_PAGES. `after_first_batch` runs once, after the first batch was
/// emitted (the `mid-pages` fault point).
pub fn dump_pages(
    pid: i32,
    maps: &[Mapping],
    page_size: u64,
    sink: &mut dyn PageSink,
    after_first_batch: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<PageStats, Error> {
    let pagemap = Pagemap::open(pid, page_size)?;
    let ps = page_size as usize;
    let per_batch = (BATCH_BYTES / ps).max(1);
    let mut buf = vec![0u8; per_batch * ps];
    let mut stats = PageStats::default();
    let mut batch: Vec<u64> = Vec::with_capacity(per_batch);
    let mut first = true;
    let mut entries = Vec::new();
    let mut vma_starts: Vec<u64> = maps.iter().map(|m| m.vma.start).collect();
    vma_starts.sort_unstable();

    let mut flush = |batch: &mut Vec<u64>, stats: &mut PageStats| -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        // Coalesce adjacent pages into ranges for the read.
        let mut ranges: Vec<(u64, usize)> = Vec::new();
        for &a in batch.iter() {
            match ranges.last_mut() {
                Some((s, l)) if *s + *l as u64 == a => *l += ps,
                _ => ranges.push((a, ps)),
            }
        }
        let len = batch.len() * ps;
        let data = buf.get_mut(..len).unwrap_or(&mut []);
        mem::read_ranges(pid, &ranges, data)?;
        emit_batch(batch, &vma_starts, data, ps, sink, stats)?;
        batch.clear();
        if first {
            first = false;
            after_first_batch()?;
        }
        Ok(())
    };

    for m in maps {
        if m.policy == PagePolicy::None {
            continue;
        }
        let end = match m.policy {
            PagePolicy::Whole(limit) => limit.min(m.vma.end),
            _ => m.vma.end,
        };
        let mut addr = m.vma.start;
        while addr < end {
            let n = ((end - addr) / page_size).min(PAGEMAP_CHUNK);
            if n == 0 {
                break;
            }
            entries.clear();
            pagemap.read(addr, n as usize, &mut entries)?;
            for (k, pe) in entries.iter().enumerate() {
                if wanted(m.policy, *pe) {
                    batch.push(addr + k as u64 * page_size);
                    if batch.len() == per_batch {
                        flush(&mut batch, &mut stats)?;
                    }
                }
            }
            addr += n * page_size;
        }
    }
    flush(&mut batch, &mut stats)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<(bool, u64, u64)>);
    impl PageSink for Rec {
        fn pages(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
            self.0.push((true, addr, data.len() as u64 / 4096));
            Ok(())
        }
        fn zeros(&mut self, addr: u64, nr: u64) -> Result<(), Error> {
            self.0.push((false, addr, nr));
            Ok(())
        }
    }

    #[test]
    fn runs_split_on_zero_and_gaps() {
        let pages = [0x1000, 0x2000, 0x3000, 0x5000, 0x6000];
        let mut buf = vec![0u8; 5 * 4096];
        buf[0] = 1; // page 0x1000 data
        buf[4096 + 7] = 2; // 0x2000 data
                           // 0x3000 zero
        buf[3 * 4096] = 3; // 0x5000 data (gap before)
                           // 0x6000 zero
        let mut r = Rec::default();
        let mut st = PageStats::default();
        emit_batch(&pages, &[0x1000, 0x2000], &buf, 4096, &mut r, &mut st).unwrap();
        assert_eq!(
            r.0,
            vec![
                (true, 0x1000, 1),
                (true, 0x2000, 1),
                (false, 0x3000, 1),
                (true, 0x5000, 1),
                (false, 0x6000, 1)
            ]
        );
        assert_eq!(st, PageStats { stored: 3, zero: 2 });
        // Without a mapping boundary at 0x2000 the two data pages form one run.
        let mut r = Rec::default();
        emit_batch(&pages, &[0x1000], &buf, 4096, &mut r, &mut st).unwrap();
        assert_eq!(r.0[0], (true, 0x1000, 2));
    }

    #[test]
    fn classification() {
        let e = |path: &str, shared: bool| MapEntry {
            start: 0x1000,
            end: 0x2000,
            shared,
            path: path.as_bytes().to_vec(),
            ..MapEntry::default()
        };
        assert_eq!(
            classify(1, &e("", false)).unwrap(),
            (VmaKind::Anon, PagePolicy::Anon)
        );
        assert_eq!(
            classify(1, &e("/dev/zero (deleted)", true)).unwrap().0,
            VmaKind::Anon
        );
        assert_eq!(
            classify(1, &e("/usr/lib/x.so", false)).unwrap(),
            (VmaKind::File, PagePolicy::PrivateFile)
        );
        assert_eq!(
            classify(1, &e("/usr/lib/x.so", true)).unwrap(),
            (VmaKind::File, PagePolicy::None)
        );
        assert_eq!(
            classify(1, &e("[vvar_vclock]", false)).unwrap().0,
            VmaKind::VvarVclock
        );
        assert_eq!(
            classify(1, &e("[vvar_other]", false)).unwrap().0,
            VmaKind::VvarOther
        );
        assert_eq!(
            classify(1, &e("/SYSV00000000 (deleted)", true)).unwrap(),
            (VmaKind::SysvShm, PagePolicy::None)
        );
        let err = classify(1, &e("/SYSV00000000 (deleted)", false)).unwrap_err();
        assert!(err.to_string().contains("SysV"), "{err}");
        assert_eq!(
            classify(1, &e("/memfd:x (deleted)", true)).unwrap(),
            (VmaKind::Anon, PagePolicy::None)
        );
        let err = classify(1, &e("/memfd:x (deleted)", false)).unwrap_err();
        assert!(
            err.to_string().contains("private mapping of a memfd"),
            "{err}"
        );
    }
}
