//! Stage 1 of restore: every check that can be made before anything is created.
//!
//! The image is untrusted: this stage checks what the restore relies on (one single-threaded
//! process, registers and XSAVE present, VMAs sorted and disjoint, page runs inside VMAs with
//! the right amount of data, pipes with their data) and that the host can take it (the PID is
//! free, the vDSO has the same size and layout, every file the image maps or holds open is the
//! same file, unchanged). Its result, [`Plan`], also fixes the addresses the later stages use
//! (the trampoline and a free area to move the vDSO through) so that nothing is chosen after
//! the fork.

use super::RestoreError;
use crak_format::record::fd::FdKind;
use crak_format::record::vma::{Vma, VmaKind};
use crak_format::{Image, Process};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Page size this restorer supports (x86_64).
pub const PAGE: u64 = 4096;
/// Bytes of the trampoline area: one code page (`syscall; int3`) and scratch pages for the
/// pointer arguments of remote calls (paths, `prctl_mm_map`, auxv, capabilities).
pub const TRAMPOLINE_LEN: u64 = 16 * PAGE;
/// Highest user address on x86_64 with 4-level paging (exclusive).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// The trampoline code: `syscall` followed by `int3`.
pub const TRAMPOLINE_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
/// Offset in the trampoline's code page of the batch code
/// ([`crate::sys::remote::BATCH_CODE`]).
pub const TRAMPOLINE_BATCH_AT: u64 = 16;

/// How the restore should treat the host.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow another PID when the saved one is taken.
    pub new_pid: bool,
    /// Keep the process in the restorer's session and process group, on its terminal.
    pub shell_job: bool,
    /// Names of Unix sockets outside the image that sockets of the image connected to may be
    /// connected to again (`--external-unix`; a leading NUL for an abstract name).
    pub external_unix: Vec<Vec<u8>>,
    /// Descriptor numbers whose pipe, held at capture with its other end outside the image, is
    /// replaced by the restorer's own descriptor of that number (`--external-pipe N`).
    pub external_pipes: Vec<i32>,
    /// Replace a SysV IPC object that exists with the saved id and key (removing it) instead
    /// of refusing the restore (restore::ipc).
    pub ipc_replace: bool,
    /// Restore established TCP connections reset (the program sees `ECONNRESET`): the peer is
    /// gone.
    pub tcp_close: bool,
}

/// A mapping of this process (`/proc/self/maps`) or of a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Permissions as shown, e.g. `r-xp`.
    pub perms: String,
    /// Path or pseudo-name (`[vdso]`), empty for anonymous memory.
    pub path: String,
}

/// Parses the text of a `/proc/PID/maps` file. Lines that do not parse are skipped.
pub fn parse_maps(text: &str) -> Vec<MapsEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let _offset = parts.next();
        let _dev = parts.next();
        let _ino = parts.next();
        let path = parts.next().unwrap_or("").trim_start().to_string();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        out.push(MapsEntry {
            start,
            end,
            perms: perms.to_string(),
            path,
        });
    }
    out
}

/// Reads and parses `/proc/<pid>/maps` (`pid` may be `"self"`).
pub fn read_maps(pid: &str) -> Result<Vec<MapsEntry>, RestoreError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| RestoreError::failed("read maps", format!("/proc/{pid}/maps: {e}")))?;
    Ok(parse_maps(&text))
}

/// The vDSO-related mappings of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Specials {
    /// `[vdso]`.
    pub vdso: Option<(u64, u64)>,
    /// `[vvar]`.
    pub vvar: Option<(u64, u64)>,
    /// `[vvar_vclock]`.
    pub vvar_vclock: Option<(u64, u64)>,
}

impl Specials {
    /// The special mappings found in a maps listing.
    pub fn from_maps(maps: &[MapsEntry]) -> Self {
        let mut s = Specials::default();
        for m in maps {
            let r = Some((m.start, m.end));
            match m.path.as_str() {
                "[vdso]" => s.vdso = r,
                "[vvar]" => s.vvar = r,
                "[vvar_vclock]" => s.vvar_vclock = r,
                _ => {}
            }
        }
        s
    }

    /// The special mappings among an image's VMAs.
    pub fn from_vmas(vmas: &[Vma]) -> Self {
        let mut s = Specials::default();
        for v in vmas {
            let r = Some((v.start, v.end));
            match v.kind {
                VmaKind::Vdso => s.vdso = r,
                VmaKind::Vvar => s.vvar = r,
                VmaKind::VvarVclock => s.vvar_vclock = r,
                _ => {}
            }
        }
        s
    }

    /// `(name, range)` for each mapping present.
    pub fn list(&self) -> Vec<(&'static str, (u64, u64))> {
        let mut v = Vec::new();
        for (name, r) in [
            ("[vvar]", self.vvar),
            ("[vvar_vclock]", self.vvar_vclock),
            ("[vdso]", self.vdso),
        ] {
            if let Some(r) = r {
                v.push((name, r));
            }
        }
        v
    }

    /// Lowest start and highest end of the mappings present.
    pub fn span(&self) -> Option<(u64, u64)> {
        let l = self.list();
        let lo = l.iter().map(|(_, r)| r.0).min()?;
        let hi = l.iter().map(|(_, r)| r.1).max()?;
        Some((lo, hi))
    }
}

/// Everything the later stages need, decided before the fork.
#[derive(Debug, Clone)]
pub struct Plan {
    /// PID to ask `clone3` for (`None`: any).
    pub want_pid: Option<i32>,
    /// Start of the trampoline area, free in both this process and the image.
    pub trampoline: u64,
    /// Start of a free area (in both layouts) large enough to move the vDSO group through.
    pub special_tmp: u64,
    /// This process's vDSO group, which the child inherits at the same addresses.
    pub host_specials: Specials,
    /// The image's vDSO group.
    pub image_specials: Specials,
    /// Path of the restorer's terminal, for `--shell-job`.
    pub tty_path: Option<Vec<u8>>,
    /// The restorer's options.
    pub options: Options,
    /// Pages stored in the image for the process.
    pub stored_pages: u64,
}

fn invalid(msg: impl Into<String>) -> RestoreError {
    RestoreError::Invalid(msg.into())
}

fn refused(msg: impl Into<String>) -> RestoreError {
    RestoreError::Refused(msg.into())
}

/// Threads: PROCESS.tids lists the leader (the pid) first and every THREAD record exactly
/// once; each thread has one XSAVE area of the header's size.
fn check_threads(image: &Image<'_>, proc: &Process<'_>) -> Result<(), RestoreError> {
    let pid = proc.pid();
    let tids = &proc.process.tids;
    if tids.first() != Some(&pid) {
        return Err(invalid(format!(
            "PROCESS record of {pid}: the first tid is {:?}, expected the pid",
            tids.first()
        )));
    }
    if tids.len() != proc.threads.len() {
        return Err(invalid(format!(
            "process {pid} lists {} tids but has {} THREAD records",
            tids.len(),
            proc.threads.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for &tid in tids {
        if tid == 0 || !seen.insert(tid) {
            return Err(invalid(format!(
                "PROCESS record of {pid}: tid {tid} is zero or listed twice"
            )));
        }
        if !proc.threads.iter().any(|t| t.tid == tid) {
            return Err(invalid(format!(
                "thread {tid} of {pid} has no THREAD record"
            )));
        }
        match proc.xsaves.iter().find(|x| x.tid == tid) {
            Some(x) if x.area.len() == image.header.xsave_size as usize && x.area.len() >= 576 => {}
            Some(x) => {
                return Err(invalid(format!(
                    "XSAVE area of thread {tid} is {} bytes, header says {}",
                    x.area.len(),
                    image.header.xsave_size
                )))
            }
            None => return Err(invalid(format!("thread {tid} has no XSAVE record"))),
        }
    }
    Ok(())
}

/// Structural checks of the image beyond what the parser checked: the shape this restorer
/// needs. The format crate's validator runs first; any error finding refuses the image.
pub fn check_image<'a>(image: &'a Image<'_>) -> Result<&'a Process<'a>, RestoreError> {
    let report = crak_format::validate::validate_metadata(image, None);
    if let Some(f) = report.errors().next() {
        return Err(invalid(format!(
            "{f} ({} error{} in total)",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        )));
    }
    check_structure(image)
}

/// [`check_image`] without the validator: for the processes of a tree, each checked on an
/// image of its own after the whole image was validated (a process of a tree alone can name
/// objects its relatives hold).
pub fn check_structure<'a>(image: &'a Image<'_>) -> Result<&'a Process<'a>, RestoreError> {
    if image.header.arch != crak_format::record::header::ARCH_X86_64 {
        return Err(refused(format!(
            "image is for machine {}, this restorer handles x86_64 (62) only",
            image.header.arch
        )));
    }
    if u64::from(image.header.page_size) != PAGE {
        return Err(refused(format!(
            "image page size is {} bytes, this host uses {PAGE}",
            image.header.page_size
        )));
    }
    let proc = match image.processes.as_slice() {
        [p] => p,
        [] => return Err(invalid("image holds no process")),
        ps => {
            return Err(refused(format!(
                "image holds {} processes; restoring process trees is not supported yet",
                ps.len()
            )))
        }
    };
    let pid = proc.pid();
    check_threads(image, proc)?;
    if proc.mm.is_none() {
        return Err(invalid(format!("process {pid} has no MM record")));
    }
    // VMAs: sorted, disjoint, aligned, inside the user address space.
    let mut prev_end = 0u64;
    for v in &proc.vmas {
        if v.start % PAGE != 0 || v.end % PAGE != 0 || v.start >= v.end {
            return Err(invalid(format!(
                "VMA {:#x}-{:#x} is empty or not page-aligned",
                v.start, v.end
            )));
        }
        if v.start < prev_end {
            return Err(invalid(format!(
                "VMA {:#x}-{:#x} overlaps the previous one or is out of order",
                v.start, v.end
            )));
        }
        if v.kind != VmaKind::Vsyscall && v.end > TASK_SIZE {
            return Err(invalid(format!(
                "VMA {:#x}-{:#x} lies outside the user address space",
                v.start, v.end
            )));
        }
        if v.kind == VmaKind::VvarOther {
            return Err(refused(format!(
                "VMA {:#x}-{:#x} ({}) is a vDSO data mapping this restorer does not know",
                v.start, v.end, v.path
            )));
        }
        prev_end = v.end;
    }
    // Page runs: data of the right size, inside one VMA each.
    for run in &proc.pages {
        let len = run
            .nr_pages
            .checked_mul(PAGE)
            .ok_or_else(|| invalid(format!("PAGES run at {:#x} is too long", run.addr)))?;
        if run.data.len() as u64 != len {
            return Err(invalid(format!(
                "PAGES run at {:#x} holds {} bytes, expected {len}",
                run.addr,
                run.data.len()
            )));
        }
        if !covered(&proc.vmas, run.addr, len) {
            return Err(invalid(format!(
                "PAGES run {:#x}+{len:#x} is not inside the process's VMAs",
                run.addr
            )));
        }
    }
    for run in &proc.zero_runs {
        let len = run
            .nr_pages
            .checked_mul(PAGE)
            .ok_or_else(|| invalid(format!("ZERO_PAGES run at {:#x} is too long", run.addr)))?;
        if !covered(&proc.vmas, run.addr, len) {
            return Err(invalid(format!(
                "ZERO_PAGES run {:#x}+{len:#x} is not inside the process's VMAs",
                run.addr
            )));
        }
    }
    for q in &proc.sigqueues {
        if q.tid != 0 && !proc.process.tids.contains(&q.tid) {
            return Err(invalid(format!("SIGQUEUE names unknown thread {}", q.tid)));
        }
        for si in &q.siginfos {
            if si.len() != crak_format::record::sigqueue::SIGINFO_SIZE {
                return Err(invalid("SIGQUEUE siginfo is not 128 bytes"));
            }
            let b = si.as_bytes();
            let signo = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !(1..=64).contains(&signo) {
                return Err(invalid(format!("SIGQUEUE holds signal number {signo}")));
            }
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                // Neither can be blocked: queued to the child they would act at once.
                return Err(refused(format!(
                    "process {pid} has a pending {}, which cannot be restored",
                    crate::sys::process::signal_name(signo)
                )));
            }
        }
    }
    let mut fds: Vec<u32> = proc.fds.iter().map(|f| f.fd).collect();
    fds.sort_unstable();
    if let Some(w) = fds.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!("fd {} appears twice", w[0])));
    }
    for f in &proc.fds {
        if matches!(f.kind, FdKind::Pipe) && !image.pipes.iter().any(|p| p.pipe_id == f.ino) {
            return Err(invalid(format!(
                "fd {} is a pipe (id {}) without PIPE_DATA",
                f.fd, f.ino
            )));
        }
    }
    Ok(proc)
}

/// Index of the VMA that holds `[addr, addr+len)` entirely.
pub fn vma_of(vmas: &[Vma], addr: u64, len: u64) -> Option<usize> {
    let end = addr.checked_add(len)?;
    let i = vmas.partition_point(|v| v.end <= addr);
    let v = vmas.get(i)?;
    (v.start <= addr && end <= v.end).then_some(i)
}

/// Whether `[addr, addr+len)` is covered by VMAs without a gap. The spec wants every page run
/// inside one VMA; a run over adjacent VMAs is still restorable, so it is accepted here and split
/// when the pages are written.
pub fn covered(vmas: &[Vma], addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut i = vmas.partition_point(|v| v.end <= addr);
    let mut a = addr;
    while a < end {
        match vmas.get(i) {
            Some(v) if v.start <= a => {
                a = v.end;
                i += 1;
            }
            _ => return false,
        }
    }
    true
}

/// Whether the image's device number matches `st_dev` (either the userspace encoding or the
/// kernel's internal `MKDEV(major, minor)` with a 20-bit minor).
pub fn dev_matches(image_dev: u64, st_dev: u64) -> bool {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    image_dev == st_dev || image_dev == (major << 20 | (minor & 0xfffff))
}

fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

fn bytes_path(p: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(p))
}

/// Checks an image path before anything uses it: absolute, without NUL bytes, `.` or `..`
/// components, and shorter than `PATH_MAX`. Paths in an image come from the kernel, which
/// writes them resolved; anything else was made by hand, and its meaning would depend on the
/// restorer's working directory or on symbolic links along the way (README, "Restore safety").
pub fn check_path(what: &str, path: &[u8]) -> Result<(), RestoreError> {
    let shown = String::from_utf8_lossy(path);
    let bad = |why: &str| Err(invalid(format!("{what} {shown:?}: {why}")));
    if !path.starts_with(b"/") {
        return bad("not an absolute path");
    }
    if path.contains(&0) {
        return bad("the path holds a NUL byte");
    }
    if path.len() >= 4096 {
        return bad("the path is longer than PATH_MAX");
    }
    if path.split(|&b| b == b'/').any(|c| c == b"." || c == b"..") {
        return bad("the path has a `.` or `..` component");
    }
    Ok(())
}

/// Opens an image path in this process as the plan's checks need it: `openat2` refusing
/// every symbolic link ([`crate::sys::openat2`]), with the caller's filesystem identity (the
/// image's, see [`make_plan`]). `O_PATH` needs only search permission on the directories.
fn open_checked(what: &str, path: &[u8], flags: i32) -> Result<std::fs::File, RestoreError> {
    let shown = String::from_utf8_lossy(path);
    // openat2 refuses other flags beside O_PATH; a real open must neither block nor take a
    // controlling terminal.
    let flags = if flags & libc::O_PATH != 0 {
        flags
    } else {
        flags | libc::O_NOCTTY | libc::O_NONBLOCK
    };
    crate::sys::openat2::open_no_symlinks(path, flags, 0)
        .map(std::fs::File::from)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(format!(
                    "{what} {shown}: a symbolic link is on the path (the image names resolved paths)"
                ))
            } else {
                refused(format!("{what} {shown}: {e}"))
            }
        })
}

/// Checks that the file at `path` is the one the image saw: same device, inode, size and
/// modification time, and that it opens with `flags` (its access mode) as the image's user.
fn check_same_file(
    what: &str,
    path: &[u8],
    flags: i32,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
) -> Result<(), RestoreError> {
    let shown = String::from_utf8_lossy(path);
    let md = open_checked(what, path, libc::O_PATH)?
        .metadata()
        .map_err(|e| refused(format!("{what} {shown}: {e}")))?;
    if !md.is_file() {
        // Opening anything else (a FIFO, a device) could block or have effects.
        return Err(refused(format!("{what} {shown} is not a regular file")));
    }
    let mut diffs = Vec::new();
    if !dev_matches(dev, md.dev()) || md.ino() != ino {
        diffs.push("it is another file (device/inode differ)".to_string());
    }
    if md.size() != size {
        diffs.push(format!("size {} is now {}", size, md.size()));
    }
    if mtime_ns(&md) != mtime {
        diffs.push("its modification time changed".to_string());
    }
    if !diffs.is_empty() {
        return Err(refused(format!(
            "{what} {shown} changed since the capture: {}",
            diffs.join(", ")
        )));
    }
    // The same file: now whether the image's user may open it so.
    drop(open_checked(what, path, flags)?);
    Ok(())
}

/// Every path check of [`make_plan`], made with the image's filesystem identity (fsuid, fsgid,
/// groups; this thread only, put back when done) so that a file the image's user could not
/// open, or could not even find, is refused here as it would be in the restore child, and
/// the checks reveal nothing about files beyond that user's reach.
fn check_files(proc: &Process<'_>, options: &Options) -> Result<(), RestoreError> {
    let own = crate::sys::fsid::current()
        .map_err(|e| RestoreError::failed("reading the filesystem identity", e.to_string()))?;
    let Some(cr) = proc.creds.as_ref() else {
        return Err(invalid(format!(
            "process {} has no CREDS record",
            proc.pid()
        )));
    };
    crate::sys::fsid::enter(&super::creds::fs_identity(cr)).map_err(|e| {
        refused(format!(
            "cannot take on the image's filesystem identity (fsuid {}, fsgid {}): {e}",
            cr.fsuid, cr.fsgid
        ))
    })?;
    let result = check_files_as_image(proc, options);
    crate::sys::fsid::enter(&own).map_err(|e| {
        RestoreError::failed(
            "restoring crak-restore's filesystem identity",
            e.to_string(),
        )
    })?;
    result
}

fn check_files_as_image(proc: &Process<'_>, options: &Options) -> Result<(), RestoreError> {
    // The working directory, the root and the executable (PR_SET_MM_MAP's exe) must exist.
    let p = &proc.process;
    let cwd =
        open_checked("the working directory", p.cwd.as_bytes(), libc::O_PATH).map_err(|e| {
            refused(format!(
                "{e} (it does not exist on this host or is not reachable)"
            ))
        })?;
    if !cwd.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(refused(format!(
            "the working directory {} is not a directory",
            p.cwd
        )));
    }
    if !p.root.as_bytes().is_empty() {
        let root = open_checked("the root directory", p.root.as_bytes(), libc::O_PATH)?;
        if !root.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(refused(format!(
                "the root directory {} is not a directory",
                p.root
            )));
        }
    }
    let exe = open_checked("the executable", p.exe.as_bytes(), libc::O_PATH).map_err(|e| {
        refused(format!(
            "{e} (it does not exist on this host or is not reachable)"
        ))
    })?;
    if !exe.metadata().is_ok_and(|m| m.is_file()) {
        return Err(refused(format!(
            "the executable {} is not a regular file",
            p.exe
        )));
    }

    // Files: every mapped file and every open regular file must be the one captured.
    for v in &proc.vmas {
        if v.kind == VmaKind::File {
            let rw = v.flags & crak_format::record::vma::MAP_SHARED != 0
                && v.prot & crak_format::record::vma::PROT_WRITE != 0;
            check_same_file(
                "mapped file",
                v.path.as_bytes(),
                if rw { libc::O_RDWR } else { libc::O_RDONLY },
                v.dev,
                v.ino,
                v.size,
                v.mtime_ns,
            )?;
        }
    }
    for f in &proc.fds {
        let shown = f.path.to_string_lossy();
        let access = (f.open_flags as i32) & libc::O_ACCMODE;
        match f.kind {
            FdKind::Reg if !f.deleted => {
                let what = format!("file of fd {}", f.fd);
                let is_dir = f.mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir {
                    // Directories change size and mtime with their entries; identity suffices.
                    let md =
                        open_checked(&what, f.path.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY)?
                            .metadata()
                            .map_err(|e| refused(format!("{what} {shown}: {e}")))?;
                    if !dev_matches(f.dev, md.dev()) || md.ino() != f.ino {
                        return Err(refused(format!("{what} {shown} is another directory now")));
                    }
                } else {
                    check_same_file(
                        &what,
                        f.path.as_bytes(),
                        access,
                        f.dev,
                        f.ino,
                        f.size,
                        f.mtime_ns,
                    )?;
                }
            }
            FdKind::Reg => {
                let path = f.path.as_bytes();
                let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
                let dir = bytes_path(path).parent();
                use std::os::unix::ffi::OsStrExt;
                let dir_ok = dir.is_some_and(|d| {
                    open_checked(
                        "",
                        d.as_os_str().as_bytes(),
                        libc::O_PATH | libc::O_DIRECTORY,
                    )
                    .is_ok()
                });
                if !dir_ok {
                    return Err(refused(format!(
                        "deleted file of fd {} ({shown}): its directory is gone or not reachable",
                        f.fd
                    )));
                }
            }
            FdKind::Chr => {
                let md = open_checked(
                    &format!("device of fd {}", f.fd),
                    f.path.as_bytes(),
                    libc::O_PATH,
                )?
                .metadata()
                .map_err(|e| refused(format!("device of fd {} {shown}: {e}", f.fd)))?;
                if !md.file_type().is_char_device() || !dev_matches(f.rdev, md.rdev()) {
                    return Err(refused(format!(
                        "device of fd {} {shown} is another device now",
                        f.fd
                    )));
                }
            }
            FdKind::Fifo => {
                let md = open_checked(
                    &format!("FIFO of fd {}", f.fd),
                    f.path.as_bytes(),
                    libc::O_PATH,
                )?
                .metadata()
                .map_err(|e| refused(format!("FIFO of fd {} {shown}: {e}", f.fd)))?;
                if !md.file_type().is_fifo() {
                    return Err(refused(format!("fd {} {shown} is no FIFO now", f.fd)));
                }
            }
            FdKind::Tty if !options.shell_job => {
                return Err(refused(format!(
                    "fd {} is the terminal {shown}; restore with --shell-job to attach the process to this terminal",
                    f.fd
                )));
            }
            FdKind::Tty
            | FdKind::Pipe
            | FdKind::Eventfd
            | FdKind::Signalfd
            | FdKind::Timerfd
            | FdKind::Epoll
            | FdKind::Unix
            | FdKind::Memfd
            | FdKind::Tcp
            | FdKind::Udp => {}
            FdKind::Inotify => check_inotify(f)?,
            FdKind::UnixSocket => {}
        }
    }
    super::unix_socket::check(&proc.fds, &options.external_unix).map_err(refused)?;
    Ok(())
}

/// Every path of the image that the restore opens, checked by [`check_path`].
/// Every watched path of an inotify fd is the saved inode (checked again when the child adds
/// the watch).
fn check_inotify(f: &crak_format::record::fd::Fd<'_>) -> Result<(), RestoreError> {
    use crak_format::record::fd::FdState;
    let Ok(Some(FdState::Inotify(watches))) = FdState::decode(f.kind, f.contents.as_bytes()) else {
        return Err(invalid(format!(
            "fd {}: inotify state does not decode",
            f.fd
        )));
    };
    for w in &watches {
        let what = format!("path watched by inotify fd {} (wd {})", f.fd, w.wd);
        check_path(&what, &w.path)?;
        let md = open_checked(&what, &w.path, libc::O_PATH)?
            .metadata()
            .map_err(|e| refused(format!("{what}: {e}")))?;
        if !dev_matches(w.dev, md.dev()) || md.ino() != w.ino {
            return Err(refused(format!(
                "{what} {} is another file now",
                String::from_utf8_lossy(&w.path)
            )));
        }
    }
    Ok(())
}

fn check_paths(proc: &Process<'_>) -> Result<(), RestoreError> {
    let p = &proc.process;
    check_path("the working directory", p.cwd.as_bytes())?;
    check_path("the executable", p.exe.as_bytes())?;
    if !p.root.as_bytes().is_empty() {
        check_path("the root directory", p.root.as_bytes())?;
    }
    for v in &proc.vmas {
        if v.kind == VmaKind::File {
            check_path(
                &format!("mapped file of VMA {:#x}", v.start),
                v.path.as_bytes(),
            )?;
        }
    }
    for f in &proc.fds {
        if matches!(f.kind, FdKind::Reg | FdKind::Chr | FdKind::Fifo) {
            check_path(&format!("file of fd {}", f.fd), f.path.as_bytes())?;
        }
    }
    Ok(())
}

/// Host checks: the PID, the vDSO, the files; then picks the free areas.
pub fn make_plan(
    image: &Image<'_>,
    proc: &Process<'_>,
    options: &Options,
) -> Result<Plan, RestoreError> {
    let pid = proc.pid();
    let pid_i32 = i32::try_from(pid).map_err(|_| invalid(format!("pid {pid} out of range")))?;
    let taken = pid_taken(pid);
    let want_pid = match (taken, options.new_pid) {
        // clone3's set_tid needs CAP_CHECKPOINT_RESTORE: without it, --new-pid means any PID.
        (false, true) if !super::creds::may_checkpoint_restore() => None,
        (false, _) => Some(pid_i32),
        (true, true) => None,
        (true, false) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let zombie = is_zombie(pid);
            return Err(refused(format!(
                "PID {pid} is in use by another process ({}{}); restore with --new-pid to give the process another PID",
                comm.trim(),
                if zombie { ", a zombie its parent has not reaped yet" } else { "" }
            )));
        }
    };

    // Credentials first: an image this restorer may not give its credentials is refused
    // before any of its paths is looked at.
    if let Some(cr) = proc.creds.as_ref() {
        super::creds::check_allowed(cr)?;
    }
    check_paths(proc)?;
    check_files(proc, options)?;

    check_xsave(image, proc)?;

    // Same-kernel restore: the vDSO code and data pages come from this kernel, so the image's
    // must have the same sizes and relative placement as ours.
    let own_maps = read_maps("self")?;
    let host_specials = Specials::from_maps(&own_maps);
    let image_specials = Specials::from_vmas(&proc.vmas);
    for ((name, img), host) in [
        ("[vdso]", image_specials.vdso),
        ("[vvar]", image_specials.vvar),
        ("[vvar_vclock]", image_specials.vvar_vclock),
    ]
    .into_iter()
    .zip([
        host_specials.vdso,
        host_specials.vvar,
        host_specials.vvar_vclock,
    ]) {
        match (img, host) {
            (Some(i), Some(h)) if i.1 - i.0 == h.1 - h.0 => {}
            (Some(i), Some(h)) => {
                return Err(refused(format!(
                    "the image's {name} mapping is {} KiB, this kernel's is {} KiB: restore needs the same kernel",
                    (i.1 - i.0) / 1024,
                    (h.1 - h.0) / 1024
                )))
            }
            (Some(_), None) => {
                return Err(refused(format!(
                    "the image has a {name} mapping, this kernel gives none"
                )))
            }
            (None, Some(_)) if image_specials.vdso.is_some() => {
                return Err(refused(format!(
                    "this kernel has a {name} mapping that the image lacks: restore needs the same kernel"
                )))
            }
            _ => {}
        }
    }
    if let (Some(iv), Some(hv)) = (image_specials.vdso, host_specials.vdso) {
        for (name, i, h) in [
            ("[vvar]", image_specials.vvar, host_specials.vvar),
            (
                "[vvar_vclock]",
                image_specials.vvar_vclock,
                host_specials.vvar_vclock,
            ),
        ] {
            if let (Some(i), Some(h)) = (i, h) {
                if iv.0.wrapping_sub(i.0) != hv.0.wrapping_sub(h.0) {
                    return Err(refused(format!(
                        "the image's {name} lies at another offset from [vdso] than this kernel's"
                    )));
                }
            }
        }
    }

    let tty_path = if options.shell_job {
        find_own_tty()
    } else {
        None
    };
    if options.shell_job && tty_path.is_none() && proc.fds.iter().any(|f| f.kind == FdKind::Tty) {
        return Err(refused(
            "--shell-job: the image holds terminal fds but crak-restore runs on no terminal",
        ));
    }

    // Free areas: in both the image's layout and ours (which the child inherits).
    let mut busy: Vec<(u64, u64)> = proc.vmas.iter().map(|v| (v.start, v.end)).collect();
    busy.extend(own_maps.iter().map(|m| (m.start, m.end)));
    busy.sort_unstable();
    let trampoline = find_free(&busy, TRAMPOLINE_LEN, 0)
        .ok_or_else(|| refused("no free address range for the restore trampoline"))?;
    busy.push((trampoline, trampoline + TRAMPOLINE_LEN));
    busy.sort_unstable();
    let special_len = host_specials.span().map_or(PAGE, |(lo, hi)| hi - lo);
    let special_tmp = find_free(&busy, special_len, trampoline + TRAMPOLINE_LEN)
        .ok_or_else(|| refused("no free address range to move the vDSO through"))?;
    let stored_pages = proc.pages.iter().map(|r| r.nr_pages).sum();
    Ok(Plan {
        want_pid,
        trampoline,
        special_tmp,
        host_specials,
        image_specials,
        tty_path,
        options: options.clone(),
        stored_pages,
    })
}

/// The image's XSAVE state must use only features this CPU has enabled, in an area of this
/// CPU's size (the kernel takes the whole standard-format area).
fn check_xsave(image: &Image<'_>, proc: &Process<'_>) -> Result<(), RestoreError> {
    let Some(xcr0) = crate::sys::cpu::xcr0() else {
        return Err(RestoreError::Refused(
            "this CPU has no XSAVE support enabled".into(),
        ));
    };
    for x in &proc.xsaves {
        let extra = x.xstate_bv & !xcr0;
        if extra != 0 {
            return Err(RestoreError::Refused(format!(
                "thread {} uses XSAVE features {extra:#x} this CPU does not enable (XCR0 {xcr0:#x})",
                x.tid
            )));
        }
    }
    let size = crate::sys::cpu::xsave_size().unwrap_or(0);
    if image.header.xsave_size != size {
        return Err(RestoreError::Refused(format!(
            "the image's XSAVE area is {} bytes, this CPU's is {size}: restore needs the same CPU features",
            image.header.xsave_size
        )));
    }
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether `pid` is in use. A zombie holding it (typically the captured process, killed and
/// about to be reaped by its parent, as in `crak-capture PID -o - | crak-restore -`) is given
/// up to two seconds to go away.
fn pid_taken(pid: u32) -> bool {
    let exists = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    let t0 = std::time::Instant::now();
    while exists() && is_zombie(pid) && t0.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    exists()
}

/// A start address of `len` free bytes (with a 16 MiB margin either side, so no stack guard
/// gap or growing heap is near), searched in 4 GiB steps from 16 TiB upwards, avoiding `busy`
/// (sorted ranges) and anything below `after`.
pub(super) fn find_free(busy: &[(u64, u64)], len: u64, after: u64) -> Option<u64> {
    const MARGIN: u64 = 16 << 20;
    let mut a: u64 = 0x1000_0000_0000;
    while a + len + MARGIN < TASK_SIZE {
        let lo = a - MARGIN;
        let hi = a + len + MARGIN;
        let clash = busy.iter().any(|&(s, e)| s < hi && lo < e);
        if !clash && a >= after {
            return Some(a);
        }
        a += 1 << 32;
    }
    None
}

/// The terminal crak-restore runs on: the target of the first of fds 0, 1, 2 that is a tty.
fn find_own_tty() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    for fd in 0..3 {
        if crate::sys::fdops::is_tty(fd) {
            if let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                return Some(p.as_os_str().as_bytes().to_vec());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse() {
        let t = "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n\
                 7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]\n\
                 400000-401000 r--p 00000000 08:01 1234 /usr/bin/x y\n";
        let m = parse_maps(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, "[heap]");
        assert_eq!(m[1].start, 0x7ffd1000);
        assert_eq!(m[2].path, "/usr/bin/x y");
        assert_eq!(Specials::from_maps(&m).vdso, Some((0x7ffd1000, 0x7ffd3000)));
    }

    #[test]
    fn free_area_avoids_busy() {
        let busy = [(0x1000_0000_0000u64 - 4096, 0x1000_0000_1000u64)];
        let a = find_free(&busy, 65536, 0).unwrap();
        assert_eq!(a, 0x1001_0000_0000);
        let b = find_free(&[], 65536, a + 1).unwrap();
        assert!(b > a);
    }

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
    fn runs_covered_by_adjacent_vmas() {
        let vmas = [
            vma(0x1000, 0x3000),
            vma(0x3000, 0x4000),
            vma(0x6000, 0x8000),
        ];
        assert!(covered(&vmas, 0x1000, 0x2000));
        assert!(covered(&vmas, 0x2000, 0x2000), "over two adjacent VMAs");
        assert!(!covered(&vmas, 0x3000, 0x2000), "into a gap");
        assert!(!covered(&vmas, 0x5000, 0x1000), "in a gap");
        assert!(!covered(&vmas, u64::MAX - 0xfff, 0x2000), "overflow");
        assert_eq!(vma_of(&vmas, 0x6000, 0x2000), Some(2));
        assert_eq!(vma_of(&vmas, 0x2000, 0x2000), None);
    }

    #[test]
    fn image_paths_must_be_absolute_and_plain() {
        assert!(check_path("f", b"/usr/lib/x86_64-linux-gnu/libc.so.6").is_ok());
        assert!(check_path("f", b"/tmp/a..b/.hidden").is_ok());
        for bad in [
            &b"etc/shadow"[..],
            b"",
            b"/tmp/../etc/shadow",
            b"/tmp/..",
            b"/./etc",
            b"/tmp/a\0b",
        ] {
            let e = check_path("f", bad).unwrap_err();
            assert!(matches!(e, RestoreError::Invalid(_)), "{e}");
        }
        let long = [b'/'; 4096];
        assert!(check_path("f", &long).is_err());
    }

    #[test]
    fn dev_encodings() {
        // 8:1 in userspace encoding is 0x801; the kernel's MKDEV is (8 << 20) | 1.
        assert!(dev_matches(0x801, 0x801));
        assert!(dev_matches((8 << 20) | 1, 0x801));
        assert!(!dev_matches(0x802, 0x801));
    }
}
