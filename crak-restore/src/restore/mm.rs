//! Stage 3 of restore: rebuild the child's address space from outside, with system calls it
//! executes on our behalf through its trampoline page (`syscall; int3`).
//!
//! Order, and why:
//! 1. Unregister the child's inherited rseq area: once crak-restore's memory is gone, the
//!    kernel would fault writing the CPU number there and kill the child.
//! 2. Unmap everything but the trampoline area and the vDSO group: the child's code and data
//!    are crak-restore's, which must not leak into the restored process, and every saved VMA
//!    must find its range free (`MAP_FIXED_NOREPLACE` catches any mistake).
//! 3. Move the vDSO group to its saved addresses (through a free temporary area when the old
//!    and new ranges could overlap): the saved program holds pointers into its vDSO.
//! 4. Attach the SysV shared memory segments at their addresses (first: `shmat` maps a whole
//!    segment, of which parts may be unmapped again). Map every other VMA at its address, writable first when it must be filled; fill stored pages
//!    and the zero pages of private file mappings; then set the saved protection and madvise
//!    bits. Shared file mappings are never written: the file is the truth.
//! 5. `PR_SET_MM_MAP`: the memory descriptor's bounds, auxv and exe, now that every VMA they
//!    point into exists and crak-restore's binary is no longer mapped (the kernel refuses to
//!    change the exe link while the old one is still mapped).

use super::plan::{Plan, PAGE, TASK_SIZE, TRAMPOLINE_BATCH_AT, TRAMPOLINE_LEN};
use super::RestoreError;
use crate::sys::mem;
use crate::sys::prctl::{PrctlMmMap, MAX_AUXV_BYTES, PR_SET_MM, PR_SET_MM_MAP};
use crate::sys::ptrace;
use crate::sys::remote::RemoteSyscall;
use crate::sys::remote::BATCH_ENTRY;
use crak_format::read::UncheckedPages;
use crak_format::record::vma::{
    madv, Vma, VmaKind, MAP_GROWSDOWN, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use crak_format::Process;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Smallest piece of a run a lazy restore maps from the image; smaller ones are copied, which
/// costs less than the remote `mmap` and keeps the number of VMAs down.
const LAZY_MIN: u64 = 256 << 10;

/// Most mappings of the image a lazy restore makes; runs beyond it are read eagerly. Each
/// stored run mapped is a VMA of its own (the file holds record framing between runs), and the
/// kernel's default `vm.max_map_count` is 65530 for the whole process.
const LAZY_MAX_MAPPINGS: u64 = 16384;

/// Smallest piece of a run read with `pread64` in the child: below it, the two ptrace stops of
/// a remote system call cost more than they save, and the piece is written with
/// `process_vm_writev` from the restorer's mapping of the image (the page cache, so still one
/// copy).
const PREAD_MIN: u64 = 1 << 20;

/// Largest `pread64` issued in the child at once; longer pieces are read in several calls (the
/// kernel caps a single read a little under 2 GiB anyway).
const PREAD_CHUNK: u64 = 256 << 20;

/// Size of the reads that check deferred page CRCs: the check holds this much of the image in
/// memory at a time, whatever the image's size.
const CHECK_CHUNK: usize = 1 << 20;

/// Most threads that check page CRCs before a restore ...
const CHECK_THREADS: usize = 4;

/// ... when there are at least this many bytes of page data to read.
const CHECK_PARALLEL_MIN: u64 = 64 << 20;

/// The image file the page data was parsed from, for the restored process to take its pages
/// from itself: `pread64` in the child copies them from the page cache into its memory once,
/// instead of a read into the restorer's memory followed by `process_vm_writev`; with `lazy`,
/// stored runs of private anonymous VMAs are mapped from the file instead (pages fault in on
/// demand, so the image must stay in place for the life of the process).
///
/// The image was parsed with its PAGES CRCs left unchecked
/// ([`crak_format::read::parse_deferring_page_crcs`]); they are checked by reading the file
/// again in small pieces, so the restorer never holds the page data. Without `lazy`, all of
/// them before anything is created ([`ImageFile::check_all`]); with `lazy`, those of copied
/// pages before they are copied, and those of mapped pages once the processes run
/// ([`ImageFile::check_rest`]), a failure then killing them.
///
/// The file is held open from then to the point of no return, and [`ImageFile::unchanged`]
/// checks just before it that the file's device, inode, size and change time are those seen
/// at validation, so that a file rewritten in between is refused.
pub struct ImageFile<'a> {
    file: &'a File,
    bytes: &'a [u8],
    lazy: bool,
    stat: (u64, u64, u64, i64, i64),
    /// The PAGES records not yet checked, in file order, with whether each has been since.
    unchecked: Vec<(UncheckedPages, Cell<bool>)>,
    /// The buffer the checks read into, allocated at the first.
    buf: RefCell<Vec<u8>>,
}

impl<'a> ImageFile<'a> {
    /// `file`, whose whole content is `bytes` (the image was parsed from `bytes`, leaving the
    /// CRCs of `unchecked` to check); `lazy` maps stored pages of private anonymous VMAs from
    /// the file instead of copying them.
    pub fn new(
        file: &'a File,
        bytes: &'a [u8],
        unchecked: Vec<UncheckedPages>,
        lazy: bool,
    ) -> Result<Self, RestoreError> {
        let stat = Self::stat_of(file)?;
        let mut unchecked: Vec<_> = unchecked
            .into_iter()
            .map(|u| (u, Cell::new(false)))
            .collect();
        unchecked.sort_by_key(|(u, _)| u.offset);
        Ok(ImageFile {
            file,
            bytes,
            lazy,
            stat,
            unchecked,
            buf: RefCell::new(Vec::new()),
        })
    }

    fn stat_of(file: &File) -> Result<(u64, u64, u64, i64, i64), RestoreError> {
        let m = file
            .metadata()
            .map_err(|e| RestoreError::failed("fstat(image)", e.to_string()))?;
        Ok((m.dev(), m.ino(), m.size(), m.ctime(), m.ctime_nsec()))
    }

    /// Fails when the file is no longer the one validated (device, inode, size, change time).
    pub fn unchanged(&self) -> Result<(), RestoreError> {
        if Self::stat_of(self.file)? != self.stat {
            return Err(RestoreError::Refused(
                "the image file changed during the restore".into(),
            ));
        }
        Ok(())
    }

    /// Whether stored pages may be mapped from the file (`--lazy`).
    pub fn lazy(&self) -> bool {
        self.lazy
    }

    /// File offset of `data`, a slice of `bytes`; `None` for any other slice.
    fn offset_of(&self, data: &[u8]) -> Option<u64> {
        let off = (data.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize)?;
        if off.checked_add(data.len())? > self.bytes.len() {
            return None;
        }
        u64::try_from(off).ok()
    }

    /// Checks the CRC of every PAGES record not checked yet, on up to [`CHECK_THREADS`] threads
    /// when there is much to read (they are joined before this returns: a restorer must be
    /// single-threaded when it forks).
    pub fn check_all(&self) -> Result<(), RestoreError> {
        let todo: Vec<UncheckedPages> = self
            .unchecked
            .iter()
            .filter(|(_, done)| !done.get())
            .map(|(u, _)| *u)
            .collect();
        let total: u64 = todo.iter().map(|u| u.length).sum();
        let threads = if total < CHECK_PARALLEL_MIN {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(CHECK_THREADS)
        };
        // Contiguous groups of about `total / threads` bytes each, in file order.
        let mut groups: Vec<&[UncheckedPages]> = Vec::with_capacity(threads);
        let (mut start, mut acc) = (0, 0u64);
        for (i, u) in todo.iter().enumerate() {
            acc = acc.saturating_add(u.length);
            let share = total / threads as u64 * (groups.len() as u64 + 1);
            if acc >= share && groups.len() + 1 < threads {
                groups.push(&todo[start..=i]);
                start = i + 1;
            }
        }
        groups.push(&todo[start..]);
        let file = self.file;
        let results: Vec<Result<(), crak_format::Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .iter()
                .map(|g| s.spawn(move || check_pages(file, g)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crak_format::Error::new(crak_format::ErrorKind::Io)
                            .with_detail("a page check thread failed"))
                    })
                })
                .collect()
        });
        // The first damaged record in file order is the one reported.
        for r in results {
            r.map_err(check_error)?;
        }
        for (_, done) in &self.unchecked {
            done.set(true);
        }
        Ok(())
    }

    /// Checks what is left once the processes run: the records whose pages were all mapped
    /// from the file (`--lazy`). On one thread, unlike [`ImageFile::check_all`], and at idle
    /// priority: the processes should keep the CPUs.
    pub fn check_rest(&self) -> Result<(), RestoreError> {
        // At idle priority, so that the check never delays the restored processes; the
        // restorer's own priority comes back after it.
        let was_idle = crate::sys::process::set_idle_priority(true).ok();
        let r = self.check_each(&self.unchecked);
        if was_idle == Some(false) {
            let _ = crate::sys::process::set_idle_priority(false);
        }
        r
    }

    /// Checks the CRC of the PAGES records holding file bytes `at..at + len`, unless checked.
    fn check_range(&self, at: u64, len: u64) -> Result<(), RestoreError> {
        let end = at.saturating_add(len);
        // Records are in file order and do not overlap: those that end after `at`, up to the
        // first that starts at or after `end`.
        let first = self
            .unchecked
            .partition_point(|(u, _)| u.payload_offset().saturating_add(u.length) <= at);
        let rest = self.unchecked.get(first..).unwrap_or_default();
        let n = rest.partition_point(|(u, _)| u.payload_offset() < end);
        self.check_each(rest.get(..n).unwrap_or_default())
    }

    fn check_each(&self, records: &[(UncheckedPages, Cell<bool>)]) -> Result<(), RestoreError> {
        let mut buf = self.buf.borrow_mut();
        for (u, done) in records {
            if done.get() {
                continue;
            }
            if buf.is_empty() {
                buf.resize(CHECK_CHUNK, 0);
            }
            u.check_at(&mut buf, |off, b| self.file.read_exact_at(b, off))
                .map_err(check_error)?;
            done.set(true);
        }
        Ok(())
    }
}

/// Checks the CRCs of `list`, read from `file` in [`CHECK_CHUNK`] pieces.
fn check_pages(file: &File, list: &[UncheckedPages]) -> Result<(), crak_format::Error> {
    let mut buf = vec![0u8; CHECK_CHUNK];
    for u in list {
        u.check_at(&mut buf, |off, b| file.read_exact_at(b, off))?;
    }
    Ok(())
}

/// A failed page check: the image is invalid, unless the file could not be read.
fn check_error(e: crak_format::Error) -> RestoreError {
    match e.kind() {
        crak_format::ErrorKind::Io => RestoreError::failed("reading the image", e.to_string()),
        _ => RestoreError::Invalid(e.to_string()),
    }
}

/// Whether stored pages of `v` may be mapped from the image (`--lazy`): private anonymous
/// memory only. A shared mapping would no longer be shared; a private file mapping would lose
/// the file backing of its unrecorded pages; the heap and the stack stay anonymous for `brk`
/// and stack growth; `MADV_WIPEONFORK` and the huge-page hints apply to anonymous memory only,
/// and a locked VMA faults every page in at once anyway.
fn lazy_mappable(v: &Vma) -> bool {
    v.kind == VmaKind::Anon
        && v.flags & MAP_SHARED == 0
        && v.flags & MAP_GROWSDOWN == 0
        && v.madvise & (madv::WIPEONFORK | madv::HUGEPAGE | madv::NOHUGEPAGE | madv::LOCKED) == 0
}

/// `pread64(fd, addr, len, off)` in the child, repeated until `len` bytes are in.
fn remote_pread(
    r: &mut Remote,
    fd: u64,
    addr: u64,
    len: u64,
    off: u64,
) -> Result<(), RestoreError> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(PREAD_CHUNK);
        let (a, o) = (addr + done, off + done);
        let got = r.call(
            || format!("pread64(image, {a:#x}, {n:#x}, {o:#x})"),
            libc::SYS_pread64,
            &[fd, a, n, o],
        )?;
        if got == 0 || got > n {
            return Err(RestoreError::failed(
                "reading pages",
                format!("pread64 of the image at {o:#x} returned {got} of {n} bytes"),
            ));
        }
        done += got;
    }
    Ok(())
}

/// The child as seen from the parent: its pid, the remote-syscall executor bound to its
/// trampoline, and the scratch pages after the trampoline code.
pub struct Remote {
    /// The child.
    pub pid: i32,
    /// Executor running system calls at the trampoline.
    pub rs: RemoteSyscall,
    /// Start of the trampoline area.
    pub trampoline: u64,
}

impl Remote {
    /// An executor for the stopped child `pid` whose trampoline is at `trampoline`.
    pub fn new(pid: i32, trampoline: u64) -> Self {
        Remote {
            pid,
            rs: RemoteSyscall::new(pid, trampoline),
            trampoline,
        }
    }

    /// Runs a system call in the child; an error names `what`.
    pub fn call(
        &mut self,
        what: impl FnOnce() -> String,
        nr: i64,
        args: &[u64],
    ) -> Result<u64, RestoreError> {
        self.rs
            .call(nr, args)
            .map_err(|e| RestoreError::failed("remote system call", format!("{}: {e}", what())))
    }

    /// Runs `calls` (name for errors, number, arguments) in the child in batches of as many as
    /// the scratch area holds, one resume per batch; returns their results. The first that fails
    /// stops the rest, and the error names it.
    pub fn batch(&mut self, calls: &[(String, i64, [u64; 6])]) -> Result<Vec<u64>, RestoreError> {
        let per = ((TRAMPOLINE_LEN - PAGE) as usize / BATCH_ENTRY).max(1);
        let mut results = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(per) {
            let mut table = Vec::with_capacity(chunk.len() * BATCH_ENTRY);
            for (_, nr, args) in chunk {
                table.extend_from_slice(&nr.to_le_bytes());
                for a in args {
                    table.extend_from_slice(&a.to_le_bytes());
                }
                table.extend_from_slice(&0u64.to_le_bytes());
            }
            let at = self.put(0, &table)?;
            let code = self.trampoline + TRAMPOLINE_BATCH_AT;
            let left = self
                .rs
                .call_batch(code, at, chunk.len() as u64)
                .map_err(|e| RestoreError::failed("remote system calls", e.to_string()))?;
            mem::read(self.pid, at, &mut table)
                .map_err(|e| RestoreError::failed("reading scratch memory", e.to_string()))?;
            let done = chunk.len()
                - usize::try_from(left)
                    .unwrap_or(chunk.len())
                    .min(chunk.len());
            for (i, e) in table.chunks_exact(BATCH_ENTRY).enumerate().take(done + 1) {
                let Some((what, _, _)) = chunk.get(i) else {
                    break;
                };
                let raw = e
                    .get(56..64)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                if i == done {
                    // The one that failed (`left` > 0).
                    let errno = (raw as i64).checked_neg().unwrap_or(0) as i32;
                    return Err(RestoreError::failed(
                        "remote system call",
                        format!("{what}: {}", std::io::Error::from_raw_os_error(errno)),
                    ));
                }
                results.push(raw);
            }
        }
        Ok(results)
    }

    /// Address of the scratch area (the pages after the trampoline code).
    pub fn scratch(&self) -> u64 {
        self.trampoline + PAGE
    }

    /// Writes `data` at `offset` into the scratch area and returns its address in the child.
    pub fn put(&self, offset: u64, data: &[u8]) -> Result<u64, RestoreError> {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > TRAMPOLINE_LEN - PAGE)
        {
            return Err(RestoreError::failed(
                "scratch memory",
                "argument too large".into(),
            ));
        }
        let addr = self.scratch() + offset;
        mem::write(self.pid, addr, data)
            .map_err(|e| RestoreError::failed("writing scratch memory", e.to_string()))?;
        Ok(addr)
    }

    /// `openat(AT_FDCWD, path, flags)` in the child; returns the new fd.
    pub fn open(&mut self, path: &[u8], flags: i32) -> Result<u64, RestoreError> {
        let mut z = path.to_vec();
        z.push(0);
        let a = self.put(0, &z)?;
        let shown = String::from_utf8_lossy(path).into_owned();
        self.call(
            || format!("openat({shown})"),
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as u64,
                a,
                (flags | libc::O_CLOEXEC) as u64,
                0,
            ],
        )
    }

    /// `close(fd)` in the child.
    pub fn close(&mut self, fd: u64) -> Result<(), RestoreError> {
        self.call(|| format!("close({fd})"), libc::SYS_close, &[fd])
            .map(drop)
    }
}

/// Counters for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmStats {
    /// Pages written from the image.
    pub pages: u64,
    /// Bytes written from the image.
    pub bytes: u64,
    /// VMAs created.
    pub vmas: u64,
    /// Bytes of stored pages mapped from the image file rather than copied (`--lazy`).
    pub lazy_bytes: u64,
    /// Mappings of the image file made for them.
    pub lazy_mappings: u64,
}

/// `RSEQ_FLAG_UNREGISTER`.
const RSEQ_FLAG_UNREGISTER: u64 = 1;

/// Step 1: drop the rseq registration the child inherited from crak-restore's glibc.
pub fn unregister_own_rseq(r: &mut Remote) -> Result<(), RestoreError> {
    let cfg = ptrace::get_rseq_configuration(r.pid)
        .map_err(|e| RestoreError::failed("PTRACE_GET_RSEQ_CONFIGURATION", e.to_string()))?;
    if cfg.len == 0 || cfg.addr == 0 {
        return Ok(());
    }
    r.call(
        || "rseq(unregister)".into(),
        libc::SYS_rseq,
        &[
            cfg.addr,
            u64::from(cfg.len),
            RSEQ_FLAG_UNREGISTER,
            u64::from(cfg.sig),
        ],
    )
    .map(drop)
}

/// Steps 2 to 5.
/// With `src`, the child reads (or maps) its stored pages from the image file itself.
pub fn rebuild(
    r: &mut Remote,
    proc: &Process<'_>,
    plan: &Plan,
    src: Option<&ImageFile<'_>>,
) -> Result<MmStats, RestoreError> {
    rebuild_sharing(r, proc, plan, src, &[], &[])
}

/// A shared anonymous memory object of a process tree (spec §3.10: the same `ino` in VMAs of
/// several processes). The root maps it at `temp` before the other processes exist; they
/// inherit that mapping, and each moves the parts it maps into place (`mremap`), so that all
/// share the one object as they did before the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedAnon {
    /// The object's inode at capture.
    pub ino: u64,
    /// Where the root mapped it.
    pub temp: u64,
    /// Its size in bytes (page-aligned).
    pub size: u64,
}

/// [`rebuild`] for a process of a tree whose `shared` objects are mapped at their temporary
/// addresses; `segments` are the (shmid, size) of the image's SysV segments, which exist
/// already (restore::ipc).
pub fn rebuild_sharing(
    r: &mut Remote,
    proc: &Process<'_>,
    plan: &Plan,
    src: Option<&ImageFile<'_>>,
    shared: &[SharedAnon],
    segments: &[(u64, u64)],
) -> Result<MmStats, RestoreError> {
    unmap_all_but_trampoline(r, plan, shared)?;
    move_specials(r, plan)?;
    super::fault_point("restore-mid-mm")?;
    let attached = attach_sysv(r, proc, segments)?;
    let mut stats = map_and_fill(r, proc, src, shared)?;
    stats.vmas += attached;
    // What this process does not map of a shared object goes.
    for s in shared {
        r.call(
            || format!("munmap(shared memory {:#x}+{:#x})", s.temp, s.size),
            libc::SYS_munmap,
            &[s.temp, s.size],
        )?;
    }
    set_mm_map(r, proc)?;
    Ok(stats)
}

/// The shared object `v` is a part of, when it is one the tree shares.
fn shared_of<'s>(shared: &'s [SharedAnon], v: &Vma) -> Option<&'s SharedAnon> {
    if v.kind != VmaKind::Anon || v.flags & MAP_SHARED == 0 || v.ino == 0 {
        return None;
    }
    shared.iter().find(|s| s.ino == v.ino)
}

fn unmap_all_but_trampoline(
    r: &mut Remote,
    plan: &Plan,
    shared: &[SharedAnon],
) -> Result<(), RestoreError> {
    let mut keep: Vec<(u64, u64)> = plan
        .host_specials
        .list()
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    keep.push((plan.trampoline, plan.trampoline + TRAMPOLINE_LEN));
    keep.extend(shared.iter().map(|s| (s.temp, s.temp + s.size)));
    keep.sort_unstable();
    let mut from = 0u64;
    let mut gaps = Vec::new();
    for (s, e) in keep {
        if s > from {
            gaps.push((from, s));
        }
        from = from.max(e);
    }
    if from < TASK_SIZE {
        gaps.push((from, TASK_SIZE));
    }
    for (s, e) in gaps {
        r.call(
            || format!("munmap({s:#x}-{e:#x})"),
            libc::SYS_munmap,
            &[s, e - s],
        )?;
    }
    Ok(())
}

fn mremap_fixed(
    r: &mut Remote,
    name: &str,
    from: u64,
    len: u64,
    to: u64,
) -> Result<(), RestoreError> {
    if from == to {
        return Ok(());
    }
    let got = r.call(
        || format!("mremap({name} {from:#x} -> {to:#x})"),
        libc::SYS_mremap,
        &[
            from,
            len,
            len,
            (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
            to,
        ],
    )?;
    if got != to {
        return Err(RestoreError::failed(
            "moving the vDSO",
            format!("{name} landed at {got:#x}, not {to:#x}"),
        ));
    }
    Ok(())
}

fn move_specials(r: &mut Remote, plan: &Plan) -> Result<(), RestoreError> {
    let host = &plan.host_specials;
    let img = &plan.image_specials;
    if img.vdso.is_none() {
        // The image was taken without a vDSO: the program does not use one.
        for (name, (s, e)) in host.list() {
            r.call(|| format!("munmap({name})"), libc::SYS_munmap, &[s, e - s])?;
        }
        return Ok(());
    }
    type Move<'a> = (&'a str, (u64, u64), (u64, u64));
    let pairs: Vec<Move<'_>> = [
        ("[vvar]", host.vvar, img.vvar),
        ("[vvar_vclock]", host.vvar_vclock, img.vvar_vclock),
        ("[vdso]", host.vdso, img.vdso),
    ]
    .into_iter()
    .filter_map(|(n, h, i)| Some((n, h?, i?)))
    .collect();
    if pairs.iter().all(|(_, h, i)| h.0 == i.0) {
        return Ok(());
    }
    // Through the temporary area first, keeping the relative placement, so that no move can
    // land on a mapping of the group that has not moved yet.
    let base = host.span().map_or(0, |s| s.0);
    for (name, h, _) in &pairs {
        mremap_fixed(r, name, h.0, h.1 - h.0, plan.special_tmp + (h.0 - base))?;
    }
    for (name, h, i) in &pairs {
        mremap_fixed(r, name, plan.special_tmp + (h.0 - base), h.1 - h.0, i.0)?;
    }
    Ok(())
}

/// What each VMA needs written.
#[derive(Default, Clone, Copy)]
struct Needs {
    fill: bool,
}

/// Splits the run of `nr_pages` pages at `addr` over the VMAs it covers: `(vma index, address,
/// offset into the run's data, length)`. Pages outside every VMA are left out (the plan refuses
/// such runs).
fn pieces(vmas: &[Vma], addr: u64, nr_pages: u64) -> Vec<(usize, u64, usize, usize)> {
    let mut out = Vec::new();
    let Some(end) = nr_pages.checked_mul(PAGE).and_then(|l| addr.checked_add(l)) else {
        return out;
    };
    let mut i = vmas.partition_point(|v| v.end <= addr);
    let mut a = addr;
    while a < end {
        let Some(v) = vmas.get(i) else { break };
        if v.start > a {
            break;
        }
        let e = v.end.min(end);
        out.push((i, a, (a - addr) as usize, (e - a) as usize));
        a = e;
        i += 1;
    }
    out
}

/// Maps a shared mapping of a memfd (spec §3.13), when `v` is one: from the memfd an fd of the
/// process holds (the child's own descriptor, in place since stage 2, opened again with the
/// access the mapping needs), so that writes through the mapping are seen through the fd; or,
/// when no fd holds it and no other process of the tree maps it (`tree_shared`), from a new
/// memfd of the same name, filled afterwards with the stored pages like anonymous memory.
/// Returns where the mapping landed, or `None` when `v` is not a memfd mapping this handles.
fn map_memfd(
    r: &mut Remote,
    proc: &Process<'_>,
    v: &Vma,
    prot: u32,
    flags: i32,
    tree_shared: bool,
) -> Result<Option<u64>, RestoreError> {
    use crak_format::record::fd::FdKind;
    if v.kind != VmaKind::Anon || v.flags & MAP_SHARED == 0 || v.ino == 0 {
        return Ok(None);
    }
    let len = v.end - v.start;
    if !v.pgoff.is_multiple_of(PAGE) {
        return Err(RestoreError::Invalid(format!(
            "VMA {:#x}-{:#x}: memfd offset {:#x} is not page-aligned",
            v.start, v.end, v.pgoff
        )));
    }
    let held = proc
        .fds
        .iter()
        .find(|f| f.kind == FdKind::Memfd && f.ino == v.ino);
    let fd = match held {
        Some(f) => {
            let access = if prot & PROT_WRITE != 0 {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            };
            r.open(format!("/proc/self/fd/{}", f.fd).as_bytes(), access)?
        }
        None => {
            let Some(name) = v.path.as_bytes().strip_prefix(b"/memfd:") else {
                return Ok(None);
            };
            if tree_shared {
                return Ok(None);
            }
            let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
            let mut z: Vec<u8> = name.iter().copied().take_while(|&b| b != 0).collect();
            z.push(0);
            let a = r.put(0, &z)?;
            let fd = r.call(
                || format!("memfd_create({})", String::from_utf8_lossy(name)),
                libc::SYS_memfd_create,
                &[a, libc::MFD_CLOEXEC as u64],
            )?;
            let size = v.pgoff.checked_add(len).ok_or_else(|| {
                RestoreError::Invalid(format!("VMA {:#x}: memfd offset overflows", v.start))
            })?;
            r.call(
                || format!("ftruncate(memfd, {size})"),
                libc::SYS_ftruncate,
                &[fd, size],
            )?;
            fd
        }
    };
    let mapped = r.call(
        || format!("mmap({:#x}-{:#x} {} {})", v.start, v.end, v.perms(), v.path),
        libc::SYS_mmap,
        &[
            v.start,
            len,
            u64::from(prot),
            (flags & !libc::MAP_ANONYMOUS) as u64,
            fd,
            v.pgoff,
        ],
    );
    r.close(fd)?;
    mapped.map(Some)
}

/// Step 4a: the SYSV_SHM mappings, before any other mapping so that a segment's whole range is
/// free. The VMAs of one attachment (same shmid, same base address `start - pgoff`) are made by
/// one `shmat` in the child at that base (read-only unless one of them is writable, executable
/// if one is); the parts of the segment none of them covers are unmapped again, and each VMA
/// gets its saved protection and madvise bits. Returns the number of VMAs made.
fn attach_sysv(
    r: &mut Remote,
    proc: &Process<'_>,
    segments: &[(u64, u64)],
) -> Result<u64, RestoreError> {
    let mut groups: Vec<((u64, u64), Vec<&Vma>)> = Vec::new();
    for v in proc.vmas.iter().filter(|v| v.kind == VmaKind::SysvShm) {
        let base = v.start.checked_sub(v.pgoff).ok_or_else(|| {
            RestoreError::Invalid(format!(
                "SysV mapping {:#x}-{:#x}: offset {:#x} is above its address",
                v.start, v.end, v.pgoff
            ))
        })?;
        match groups.iter_mut().find(|(k, _)| *k == (v.ino, base)) {
            Some((_, g)) => g.push(v),
            None => groups.push(((v.ino, base), vec![v])),
        }
    }
    let mut made = 0u64;
    for ((id, base), vmas) in groups {
        let size = segments
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, size)| size.div_ceil(PAGE) * PAGE)
            .ok_or_else(|| {
                RestoreError::Invalid(format!("SysV segment {id} is not in the image"))
            })?;
        let writable = vmas.iter().any(|v| v.prot & PROT_WRITE != 0);
        let exec = vmas.iter().any(|v| v.prot & PROT_EXEC != 0);
        let mut flags = 0u64;
        let mut prot = PROT_READ;
        if writable {
            prot |= PROT_WRITE;
        } else {
            flags |= libc::SHM_RDONLY as u64;
        }
        if exec {
            prot |= PROT_EXEC;
            flags |= libc::SHM_EXEC as u64;
        }
        let got = r.call(
            || format!("shmat({id}, {base:#x}) for {:#x}-{:#x}", base, base + size),
            libc::SYS_shmat,
            &[id, base, flags],
        )?;
        if got != base {
            return Err(RestoreError::failed(
                "attaching SysV shared memory",
                format!("segment {id} landed at {got:#x}, not {base:#x}"),
            ));
        }
        // What no VMA covers goes.
        let mut at = base;
        let mut covered: Vec<(u64, u64)> = vmas.iter().map(|v| (v.start, v.end)).collect();
        covered.sort_unstable();
        covered.push((base + size, base + size));
        for (s, e) in covered {
            if s > at {
                r.call(
                    || format!("munmap({at:#x}-{s:#x}) of SysV segment {id}"),
                    libc::SYS_munmap,
                    &[at, s - at],
                )?;
            }
            at = at.max(e);
        }
        for v in vmas {
            if v.prot != prot {
                r.call(
                    || format!("mprotect({:#x}-{:#x} {})", v.start, v.end, v.perms()),
                    libc::SYS_mprotect,
                    &[v.start, v.end - v.start, u64::from(v.prot)],
                )?;
            }
            apply_madvise(r, v)?;
            made += 1;
        }
    }
    Ok(made)
}

fn is_restorable_mapping(v: &Vma) -> bool {
    !v.kind.is_special() && v.kind != VmaKind::SysvShm
}

fn map_and_fill(
    r: &mut Remote,
    proc: &Process<'_>,
    src: Option<&ImageFile<'_>>,
    tree_shared: &[SharedAnon],
) -> Result<MmStats, RestoreError> {
    let vmas = &proc.vmas;
    let mut needs = vec![Needs::default(); vmas.len()];
    for run in &proc.pages {
        for (i, _, _, _) in pieces(vmas, run.addr, run.nr_pages) {
            if let Some(n) = needs.get_mut(i) {
                n.fill = true;
            }
        }
    }
    for run in &proc.zero_runs {
        for (i, _, _, _) in pieces(vmas, run.addr, run.nr_pages) {
            let private_file = vmas
                .get(i)
                .is_some_and(|v| v.kind == VmaKind::File && v.flags & MAP_SHARED == 0);
            if let (true, Some(n)) = (private_file, needs.get_mut(i)) {
                n.fill = true;
            }
        }
    }
    let mut stats = MmStats::default();
    let mut files: HashMap<(Vec<u8>, bool), u64> = HashMap::new();
    for (v, need) in vmas.iter().zip(&needs) {
        if !is_restorable_mapping(v) {
            continue;
        }
        let shared = v.flags & MAP_SHARED != 0;
        // Never write into a shared file mapping; anything stored for it is ignored.
        let fill = need.fill && !(shared && v.kind == VmaKind::File);
        let prot = if fill { v.prot | PROT_WRITE } else { v.prot };
        let mut flags = libc::MAP_FIXED_NOREPLACE
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        if v.flags & MAP_GROWSDOWN != 0 {
            flags |= libc::MAP_GROWSDOWN;
        }
        let len = v.end - v.start;
        if let Some(got) = map_memfd(r, proc, v, prot, flags, shared_of(tree_shared, v).is_some())?
        {
            if got != v.start {
                return Err(RestoreError::failed(
                    "mapping memory",
                    format!("memfd VMA {:#x} landed at {got:#x}", v.start),
                ));
            }
            stats.vmas += 1;
            continue;
        }
        if let Some(s) = shared_of(tree_shared, v) {
            if v.pgoff % PAGE != 0 || v.pgoff.checked_add(len).is_none_or(|e| e > s.size) {
                return Err(RestoreError::Invalid(format!(
                    "VMA {:#x}-{:#x}: offset {:#x} lies outside the shared memory object {}",
                    v.start, v.end, v.pgoff, v.ino
                )));
            }
            let from = s.temp + v.pgoff;
            let got = r.call(
                || {
                    format!(
                        "mremap(shared memory {from:#x} to {:#x}-{:#x})",
                        v.start, v.end
                    )
                },
                libc::SYS_mremap,
                &[
                    from,
                    len,
                    len,
                    (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                    v.start,
                ],
            )?;
            if got != v.start {
                return Err(RestoreError::failed(
                    "mapping memory",
                    format!("shared VMA {:#x} landed at {got:#x}", v.start),
                ));
            }
            if prot != PROT_READ | PROT_WRITE {
                r.call(
                    || format!("mprotect({:#x}-{:#x})", v.start, v.end),
                    libc::SYS_mprotect,
                    &[v.start, len, u64::from(prot)],
                )?;
            }
            stats.vmas += 1;
            continue;
        }
        let (fd, off) = if v.kind == VmaKind::File {
            if v.pgoff % PAGE != 0 {
                return Err(RestoreError::Invalid(format!(
                    "VMA {:#x}-{:#x}: file offset {:#x} is not page-aligned",
                    v.start, v.end, v.pgoff
                )));
            }
            let rw = shared && v.prot & PROT_WRITE != 0;
            let key = (v.path.as_bytes().to_vec(), rw);
            let fd = match files.get(&key) {
                Some(fd) => *fd,
                None => {
                    let fd = super::files::remote_open(
                        r,
                        v.path.as_bytes(),
                        if rw { libc::O_RDWR } else { libc::O_RDONLY },
                    )?;
                    files.insert(key, fd);
                    fd
                }
            };
            (fd, v.pgoff)
        } else {
            flags |= libc::MAP_ANONYMOUS;
            (u64::MAX, 0)
        };
        let got = r.call(
            || format!("mmap({:#x}-{:#x} {} {})", v.start, v.end, v.perms(), v.path),
            libc::SYS_mmap,
            &[v.start, len, u64::from(prot), flags as u64, fd, off],
        )?;
        if got != v.start {
            return Err(RestoreError::failed(
                "mapping memory",
                format!("VMA {:#x} landed at {got:#x}", v.start),
            ));
        }
        stats.vmas += 1;
    }
    for fd in files.into_values() {
        r.close(fd)?;
    }

    // Fill: stored pages, then zero pages over private file mappings (the file would show
    // through otherwise). From an image file the child reads them itself, through the image
    // opened again by its /proc path (the same open file's inode, whatever its name now); that
    // fd is closed before the next stage (a lazy mapping holds the file by itself).
    let img = match src {
        Some(s) => {
            let path = format!("/proc/{}/fd/{}", std::process::id(), s.file.as_raw_fd());
            // The image is crak-restore's own file: opened with its identity (creds.rs).
            let fd = super::creds::as_restorer(r, |r| r.open(path.as_bytes(), libc::O_RDONLY))?;
            Some((s, fd))
        }
        None => None,
    };
    let filled = fill_pages(r, proc, img, &mut stats);
    if let Some((_, fd)) = img {
        r.close(fd)?;
    }
    filled?;
    let zeros = vec![0u8; 1 << 20];
    for run in &proc.zero_runs {
        for (i, start, _, len) in pieces(vmas, run.addr, run.nr_pages) {
            let Some(v) = vmas.get(i) else { continue };
            if v.kind != VmaKind::File || v.flags & MAP_SHARED != 0 {
                continue;
            }
            let mut addr = start;
            let end = start + len as u64;
            while addr < end {
                let n = (end - addr).min(zeros.len() as u64) as usize;
                let z = zeros.get(..n).unwrap_or(&[]);
                mem::write_ranges(r.pid, &[(addr, n)], z).map_err(|e| {
                    RestoreError::failed("zeroing pages", format!("{addr:#x}+{n:#x}: {e}"))
                })?;
                addr += n as u64;
            }
        }
    }

    // Final protection and madvise bits.
    for (v, need) in vmas.iter().zip(&needs) {
        if !is_restorable_mapping(v) {
            continue;
        }
        let shared_file = v.kind == VmaKind::File && v.flags & MAP_SHARED != 0;
        if need.fill && !shared_file && v.prot & PROT_WRITE == 0 {
            r.call(
                || format!("mprotect({:#x}-{:#x} {})", v.start, v.end, v.perms()),
                libc::SYS_mprotect,
                &[v.start, v.end - v.start, u64::from(v.prot)],
            )?;
        }
        apply_madvise(r, v)?;
    }
    Ok(stats)
}

/// The saved `madvise` bits of `v` (and `mlock`).
fn apply_madvise(r: &mut Remote, v: &Vma) -> Result<(), RestoreError> {
    for (bit, advice, name) in [
        (madv::DONTFORK, libc::MADV_DONTFORK, "MADV_DONTFORK"),
        (madv::WIPEONFORK, libc::MADV_WIPEONFORK, "MADV_WIPEONFORK"),
        (madv::DONTDUMP, libc::MADV_DONTDUMP, "MADV_DONTDUMP"),
        (madv::HUGEPAGE, libc::MADV_HUGEPAGE, "MADV_HUGEPAGE"),
        (madv::NOHUGEPAGE, libc::MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"),
    ] {
        if v.madvise & bit != 0 {
            r.call(
                || format!("madvise({:#x}-{:#x}, {name})", v.start, v.end),
                libc::SYS_madvise,
                &[v.start, v.end - v.start, advice as u64],
            )?;
        }
    }
    if v.madvise & madv::LOCKED != 0 {
        r.call(
            || format!("mlock({:#x}-{:#x})", v.start, v.end),
            libc::SYS_mlock,
            &[v.start, v.end - v.start],
        )?;
    }
    Ok(())
}

/// Writes the stored pages of every restorable VMA but shared file mappings. From an image file
/// (`img`: it and its fd in the child), pieces of at least [`PREAD_MIN`] are read by the child
/// with `pread64` (or, lazily, mapped when at least [`LAZY_MIN`]), smaller ones are written
/// with `process_vm_writev` from the restorer's mapping of the file; without a file, all are
/// written from the parsed image.
fn fill_pages(
    r: &mut Remote,
    proc: &Process<'_>,
    img: Option<(&ImageFile<'_>, u64)>,
    stats: &mut MmStats,
) -> Result<(), RestoreError> {
    let vmas = &proc.vmas;
    let mut maps: Vec<(String, i64, [u64; 6])> = Vec::new();
    for run in &proc.pages {
        let data = run.data.as_bytes();
        for (i, addr, off, len) in pieces(vmas, run.addr, run.nr_pages) {
            let Some(v) = vmas.get(i) else { continue };
            if !is_restorable_mapping(v) || (v.kind == VmaKind::File && v.flags & MAP_SHARED != 0) {
                continue;
            }
            let chunk = off
                .checked_add(len)
                .and_then(|e| data.get(off..e))
                .ok_or_else(|| {
                    RestoreError::Invalid(format!(
                        "PAGES run at {:#x} holds too little data",
                        run.addr
                    ))
                })?;
            let n = len as u64;
            match img {
                Some((file, fd)) => {
                    let at = file.offset_of(chunk).ok_or_else(|| {
                        RestoreError::failed(
                            "reading pages",
                            format!("run at {addr:#x}: page data outside the image file"),
                        )
                    })?;
                    let mapped = file.lazy
                        && n >= LAZY_MIN
                        && lazy_mappable(v)
                        && at % PAGE == 0
                        && stats.lazy_mappings < LAZY_MAX_MAPPINGS;
                    if !mapped {
                        // Copied pages are checked first; mapped ones once the process runs.
                        file.check_range(at, n)?;
                    }
                    if mapped {
                        // The VMA was mapped writable for the fill; the final mprotect below
                        // gives this part the VMA's protection too.
                        // Made together below, in one batch.
                        let prot = u64::from(v.prot | PROT_WRITE);
                        let flags = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
                        maps.push((
                            format!("mmap(image {at:#x} at {addr:#x}+{n:#x})"),
                            libc::SYS_mmap,
                            [addr, n, prot, flags, fd, at],
                        ));
                        stats.lazy_bytes += n;
                        stats.lazy_mappings += 1;
                    } else if n >= PREAD_MIN {
                        remote_pread(r, fd, addr, n, at)?;
                    } else {
                        write_local(r.pid, addr, chunk)?;
                    }
                }
                None => write_local(r.pid, addr, chunk)?,
            }
            stats.pages += n / PAGE;
            stats.bytes += n;
        }
    }
    for ((what, _, args), got) in maps.iter().zip(r.batch(&maps)?) {
        if got != args[0] {
            return Err(RestoreError::failed(
                "mapping pages",
                format!("{what} landed at {got:#x}"),
            ));
        }
    }
    Ok(())
}

/// `process_vm_writev` of `data` at `addr` in the child.
fn write_local(pid: i32, addr: u64, data: &[u8]) -> Result<(), RestoreError> {
    mem::write_ranges(pid, &[(addr, data.len())], data).map_err(|e| {
        RestoreError::failed("writing pages", format!("{addr:#x}+{:#x}: {e}", data.len()))
    })
}

fn set_mm_map(r: &mut Remote, proc: &Process<'_>) -> Result<(), RestoreError> {
    let Some(mm) = proc.mm.as_ref() else {
        return Err(RestoreError::Invalid("process has no MM record".into()));
    };
    let mut auxv = Vec::new();
    for &(k, v) in &mm.auxv {
        auxv.extend_from_slice(&k.to_le_bytes());
        auxv.extend_from_slice(&v.to_le_bytes());
        if k == 0 {
            break;
        }
    }
    if mm.auxv.last().is_none_or(|&(k, _)| k != 0) && !mm.auxv.iter().any(|&(k, _)| k == 0) {
        auxv.extend_from_slice(&[0u8; 16]);
    }
    if auxv.len() > MAX_AUXV_BYTES {
        return Err(RestoreError::Refused(format!(
            "auxv has {} entries, the kernel keeps at most {}",
            auxv.len() / 16,
            MAX_AUXV_BYTES / 16
        )));
    }
    // Changing the exe link needs CAP_CHECKPOINT_RESTORE (creds.rs); an unprivileged restore
    // keeps crak-restore's (exe_fd -1: unchanged).
    let exe_fd = if super::creds::may_checkpoint_restore() {
        super::files::remote_open(r, proc.process.exe.as_bytes(), libc::O_RDONLY)?
    } else {
        u64::from(u32::MAX)
    };
    let auxv_addr = r.put(4096, &auxv)?;
    let map = PrctlMmMap {
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_data: mm.start_data,
        end_data: mm.end_data,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
        arg_end: mm.arg_end,
        env_start: mm.env_start,
        env_end: mm.env_end,
        auxv: auxv_addr,
        auxv_size: auxv.len() as u32,
        exe_fd: exe_fd as u32,
    };
    let map_addr = r.put(8192, &map.to_bytes())?;
    let res = r.call(
        || format!("prctl(PR_SET_MM_MAP, exe {})", proc.process.exe),
        libc::SYS_prctl,
        &[
            PR_SET_MM,
            PR_SET_MM_MAP,
            map_addr,
            PrctlMmMap::SIZE as u64,
            0,
        ],
    );
    if exe_fd != u64::from(u32::MAX) {
        r.close(exe_fd)?;
    }
    res.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64) -> Vma {
        Vma {
            pid: 1,
            kind: VmaKind::Anon,
            start,
            end,
            prot: 3,
            flags: 2,
            madvise: 0,
            pgoff: 0,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            path: Default::default(),
        }
    }

    #[test]
    fn runs_split_at_vma_boundaries() {
        let vmas = [
            vma(0x1000, 0x3000),
            vma(0x3000, 0x4000),
            vma(0x6000, 0x8000),
        ];
        assert_eq!(
            pieces(&vmas, 0x2000, 2),
            vec![(0, 0x2000, 0, 0x1000), (1, 0x3000, 0x1000, 0x1000)]
        );
        assert_eq!(pieces(&vmas, 0x6000, 2), vec![(2, 0x6000, 0, 0x2000)]);
        assert_eq!(pieces(&vmas, 0x5000, 1), vec![]);
        assert_eq!(pieces(&vmas, 0xffff_ffff_ffff_f000, 4), vec![]);
    }
}
