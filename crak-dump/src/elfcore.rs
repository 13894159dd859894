//! ELF core files (a kernel dump, `gcore`, or `crak-dump core`) read into the crak model, so
//! that the read-only commands (summary, `--json`, `mem`, `grep`, `strings`, `diff`,
//! `backtrace`) work on them too.
//!
//! What a core file holds becomes: the process from `NT_PRPSINFO` (pid, parent, group,
//! session, name, arguments), a thread per `NT_PRSTATUS` (registers, blocked and pending
//! signals) with its `NT_X86_XSTATE` area, the auxiliary vector from `NT_AUXV`, a VMA per
//! `PT_LOAD` (named from `NT_FILE` when it maps a file; the one holding the main thread's
//! stack pointer is the stack, the one at `AT_SYSINFO_EHDR` the vDSO) and its bytes as stored
//! pages. A core file has no file descriptors, signal actions, credentials, limits or queued
//! siginfos: those are absent, and a NOTE (`source`) says so. Page data borrows from the file.
//!
//! The file is untrusted: every offset and size is checked against the bytes present.

use anyhow::{bail, Context as _};
use crak_format::bytes::{Blob, ByteString};
use crak_format::image::{Image, Process};
use crak_format::record::header::{Header, ARCH_X86_64};
use crak_format::record::mm::Mm;
use crak_format::record::note::Note;
use crak_format::record::pages::PageRun;
use crak_format::record::process::ProcessRecord;
use crak_format::record::thread::{Gpr, Thread};
use crak_format::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE};
use crak_format::record::xsave::Xsave;
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::Elf;

/// The ELF magic.
pub const MAGIC: &[u8; 4] = b"\x7fELF";
/// Page size assumed for x86_64 cores.
const PAGE_SIZE: u64 = 4096;
const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_X86_XSTATE: u32 = 0x202;
const NT_FILE: u32 = 0x4649_4c45;
const AT_SYSINFO_EHDR: u64 = 33;
/// Bytes of `elf_prstatus` read: up to the end of `pr_reg`.
const PR_REG_OFFSET: usize = 112;
const PR_REG_END: usize = PR_REG_OFFSET + 27 * 8;

/// Whether `bytes` start like an ELF file.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A NUL-terminated string in a fixed field.
fn cstr(b: &[u8]) -> ByteString {
    ByteString(b.split(|&c| c == 0).next().unwrap_or(b).to_vec())
}

/// One `NT_FILE` entry: `[start, end)`, file offset in bytes, path.
struct FileMap {
    start: u64,
    end: u64,
    offset: u64,
    path: Vec<u8>,
}

fn parse_file_note(desc: &[u8]) -> Vec<FileMap> {
    let (Some(count), Some(page)) = (u64_at(desc, 0), u64_at(desc, 8)) else {
        return Vec::new();
    };
    // Each entry takes 24 bytes: the count is bounded by the bytes present.
    let count = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(desc.len() / 24);
    let mut maps = Vec::with_capacity(count);
    let mut names = desc
        .get(16usize.saturating_add(count.saturating_mul(24))..)
        .unwrap_or(&[]);
    for i in 0..count {
        let at = 16 + i * 24;
        let (Some(start), Some(end), Some(pgoff)) = (
            u64_at(desc, at),
            u64_at(desc, at + 8),
            u64_at(desc, at + 16),
        ) else {
            break;
        };
        let len = names.iter().position(|&c| c == 0).unwrap_or(names.len());
        let path = names.get(..len).unwrap_or(&[]).to_vec();
        names = names.get(len.saturating_add(1)..).unwrap_or(&[]);
        maps.push(FileMap {
            start,
            end,
            offset: pgoff.saturating_mul(page),
            path,
        });
    }
    maps
}

/// The protection of the `PT_LOAD` segment at file offset `offset` of the ELF file at `path`
/// (read-only when the file cannot be read).
fn prot_from_file(path: &[u8], offset: u64) -> u32 {
    use std::io::Read as _;
    use std::os::unix::ffi::OsStrExt as _;
    let mut head = Vec::new();
    let read = std::fs::File::open(std::ffi::OsStr::from_bytes(path))
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head));
    if read.is_err() {
        return PROT_READ;
    }
    let Ok(h) = Elf::parse_header(&head) else {
        return PROT_READ;
    };
    let ctx = goblin::container::Ctx::new(
        goblin::container::Container::Big,
        goblin::container::Endian::Little,
    );
    let Ok(phs) = goblin::elf::ProgramHeader::parse(
        &head,
        usize::try_from(h.e_phoff).unwrap_or(usize::MAX),
        usize::from(h.e_phnum),
        ctx,
    ) else {
        return PROT_READ;
    };
    let Some(ph) = phs.iter().find(|ph| {
        ph.p_type == PT_LOAD
            && offset >= ph.p_offset - ph.p_offset % PAGE_SIZE
            && offset < ph.p_offset.saturating_add(ph.p_filesz)
    }) else {
        return PROT_READ;
    };
    let mut prot = 0;
    if ph.p_flags & 4 != 0 {
        prot |= PROT_READ;
    }
    if ph.p_flags & 2 != 0 {
        prot |= PROT_WRITE;
    }
    if ph.p_flags & 1 != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// Reads an x86_64 ELF core file into an image whose page data borrows from `bytes`.
pub fn image(bytes: &[u8]) -> anyhow::Result<Image<'_>> {
    let elf = Elf::parse(bytes).context("not a valid ELF file")?;
    if elf.header.e_type != goblin::elf::header::ET_CORE {
        bail!("an ELF file, but not a core file");
    }
    if elf.header.e_machine != goblin::elf::header::EM_X86_64 || !elf.is_64 || !elf.little_endian {
        bail!("an ELF core file, but not for x86_64");
    }
    let mut threads: Vec<Thread> = Vec::new();
    let mut xsaves: Vec<Xsave<'_>> = Vec::new();
    let mut record = ProcessRecord::default();
    let mut auxv: Vec<(u64, u64)> = Vec::new();
    let mut files: Vec<FileMap> = Vec::new();
    let mut have_psinfo = false;
    if let Some(notes) = elf.iter_note_headers(bytes) {
        for note in notes {
            let Ok(note) = note else {
                break;
            };
            let d = note.desc;
            match note.n_type {
                NT_PRSTATUS if d.len() >= PR_REG_END => {
                    let mut regs = [0u64; 27];
                    for (i, r) in regs.iter_mut().enumerate() {
                        *r = u64_at(d, PR_REG_OFFSET + i * 8).unwrap_or(0);
                    }
                    threads.push(Thread {
                        tid: u32_at(d, 32).unwrap_or(0),
                        gpr: Gpr::from_array(regs),
                        pending: u64_at(d, 16).unwrap_or(0),
                        blocked: u64_at(d, 24).unwrap_or(0),
                        ..Default::default()
                    });
                    if !have_psinfo {
                        record.ppid = u32_at(d, 36).unwrap_or(0);
                        record.pgid = u32_at(d, 40).unwrap_or(0);
                        record.sid = u32_at(d, 44).unwrap_or(0);
                    }
                }
                NT_PRPSINFO if d.len() >= 136 => {
                    have_psinfo = true;
                    record.pid = u32_at(d, 24).unwrap_or(0);
                    record.ppid = u32_at(d, 28).unwrap_or(0);
                    record.pgid = u32_at(d, 32).unwrap_or(0);
                    record.sid = u32_at(d, 36).unwrap_or(0);
                    record.comm = cstr(d.get(40..56).unwrap_or(&[]));
                    let args = cstr(d.get(56..136).unwrap_or(&[]));
                    let mut cmdline: Vec<u8> = args
                        .0
                        .split(|&c| c == b' ')
                        .filter(|a| !a.is_empty())
                        .flat_map(|a| a.iter().copied().chain([0]))
                        .collect();
                    if cmdline.is_empty() {
                        cmdline = Vec::new();
                    }
                    record.cmdline = ByteString(cmdline);
                }
                NT_AUXV => {
                    for pair in d.chunks_exact(16) {
                        let (Some(k), Some(v)) = (u64_at(pair, 0), u64_at(pair, 8)) else {
                            break;
                        };
                        if k == 0 {
                            break;
                        }
                        auxv.push((k, v));
                    }
                }
                NT_FILE => files = parse_file_note(d),
                NT_X86_XSTATE => {
                    // It follows the NT_PRSTATUS of its thread.
                    if let Some(t) = threads.last() {
                        xsaves.push(Xsave {
                            pid: 0,
                            tid: t.tid,
                            xstate_bv: u64_at(d, 512).unwrap_or(0),
                            area: Blob::from(d),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    if record.pid == 0 {
        record.pid = threads.first().map_or(0, |t| t.tid);
    }
    let pid = record.pid;
    record.tids = threads.iter().map(|t| t.tid).collect();
    for t in &mut threads {
        t.pid = pid;
    }
    for x in &mut xsaves {
        x.pid = pid;
    }
    let main_sp = threads
        .iter()
        .find(|t| t.tid == pid)
        .or(threads.first())
        .map(|t| t.gpr.rsp);
    let vdso = auxv
        .iter()
        .find(|(k, _)| *k == AT_SYSINFO_EHDR)
        .map(|(_, v)| *v);
    let entry = auxv.iter().find(|(k, _)| *k == 9).map(|(_, v)| *v);

    let mut p = Process::new(record);
    let mut xsave_size = 0u32;
    let mut xsave_features = 0u64;
    if let Some(x) = xsaves.first() {
        xsave_size = u32::try_from(x.area.len()).unwrap_or(0);
        xsave_features = u64_at(x.area.as_bytes(), 464).unwrap_or(0);
    }
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let start = ph.p_vaddr;
        let Some(end) = start.checked_add(ph.p_memsz) else {
            continue;
        };
        if end <= start {
            continue;
        }
        let mut prot = 0;
        if ph.p_flags & 4 != 0 {
            prot |= PROT_READ;
        }
        if ph.p_flags & 2 != 0 {
            prot |= PROT_WRITE;
        }
        if ph.p_flags & 1 != 0 {
            prot |= PROT_EXEC;
        }
        let file = files.iter().find(|f| f.start <= start && start < f.end);
        let (kind, path, pgoff) = match file {
            Some(f) => (
                VmaKind::File,
                ByteString(f.path.clone()),
                f.offset.saturating_add(start - f.start),
            ),
            None if vdso == Some(start) => (VmaKind::Vdso, "[vdso]".into(), 0),
            None if main_sp.is_some_and(|sp| start <= sp && sp < end) => {
                (VmaKind::Stack, "[stack]".into(), 0)
            }
            None => (VmaKind::Anon, ByteString::default(), 0),
        };
        p.vmas.push(Vma {
            pid,
            kind,
            start,
            end,
            prot,
            flags: MAP_PRIVATE,
            madvise: 0,
            pgoff,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            path,
        });
        let nr_pages = ph.p_filesz.min(ph.p_memsz) / PAGE_SIZE;
        if nr_pages == 0 {
            continue;
        }
        let len = nr_pages * PAGE_SIZE;
        let data = usize::try_from(ph.p_offset)
            .ok()
            .zip(
                ph.p_offset
                    .checked_add(len)
                    .and_then(|e| usize::try_from(e).ok()),
            )
            .and_then(|(a, b)| bytes.get(a..b));
        let Some(data) = data else {
            bail!("segment at 0x{start:x} runs past the end of the file");
        };
        p.pages.push(PageRun {
            pid,
            addr: start,
            nr_pages,
            data: Blob::from(data),
        });
    }
    // File mappings the core has no segment for (gdb's gcore leaves out unmodified read-only
    // ones): VMAs without pages, their protection from the file's own program headers.
    for f in &files {
        if f.end <= f.start || p.vmas.iter().any(|v| v.start < f.end && f.start < v.end) {
            continue;
        }
        p.vmas.push(Vma {
            pid,
            kind: VmaKind::File,
            start: f.start,
            end: f.end,
            prot: prot_from_file(&f.path, f.offset),
            flags: MAP_PRIVATE,
            madvise: 0,
            pgoff: f.offset,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            path: ByteString(f.path.clone()),
        });
    }
    p.vmas.sort_by_key(|v| v.start);
    if let Some(exe) = entry.and_then(|e| files.iter().find(|f| f.start <= e && e < f.end)) {
        p.process.exe = ByteString(exe.path.clone());
    }
    p.threads = threads;
    p.xsaves = xsaves;
    p.mm = Some(Mm {
        pid,
        auxv,
        ..Default::default()
    });
    let mut img = Image::new(Header {
        arch: ARCH_X86_64,
        page_size: PAGE_SIZE as u32,
        capture_time_ns: 0,
        xsave_features,
        xsave_size,
        kernel_release: ByteString::default(),
        hostname: ByteString::default(),
        tool_version: "ELF core file".into(),
        special_mappings: Vec::new(),
    });
    img.processes.push(p);
    img.notes.push(Note {
        key: "source".into(),
        value:
            "ELF core file: fds, signal actions, queued signals, credentials and limits are absent"
                .into(),
    });
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_panic() {
        assert!(image(b"\x7fELF").is_err());
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(MAGIC);
        assert!(image(&b).is_err());
        for n in 0..b.len() {
            let _ = image(&b[..n]);
        }
    }

    #[test]
    fn file_note_counts_are_bounded_by_the_bytes() {
        let mut d = Vec::new();
        d.extend_from_slice(&u64::MAX.to_le_bytes());
        d.extend_from_slice(&4096u64.to_le_bytes());
        for v in [0x1000u64, 0x3000, 2] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(b"/bin/x\0");
        let maps = parse_file_note(&d);
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].offset, 0x2000);
        assert!(parse_file_note(&d[..10]).is_empty());
    }
}
