//! An ELF core file of one process of an image, as the kernel would dump it (`core(5)`), for
//! gdb and other debuggers.
//!
//! Layout: the ELF header, the program headers (one `PT_NOTE`, then one `PT_LOAD` per VMA in
//! address order), the notes, then each segment's bytes, page aligned. Notes, in the kernel's
//! order: for the first thread (the main thread when present) `NT_PRSTATUS`, then the
//! process-wide `NT_PRPSINFO`, `NT_SIGINFO`, `NT_AUXV` and `NT_FILE`, then its `NT_FPREGSET`
//! (the first 512 bytes of the XSAVE area, which are the FXSAVE layout) and `NT_X86_XSTATE`
//! (the whole area); then `NT_PRSTATUS`, `NT_FPREGSET` and `NT_X86_XSTATE` of every other
//! thread. `pr_reg` is `user_regs_struct`, which is crak's GPR order.
//!
//! What each `PT_LOAD` holds is decided by the caller ([`Segment::filesz`]) and written by a
//! callback, so page data can be streamed from the image and from mapped files.

use crak_format::image::Process;
use crak_format::record::thread::Thread;
use crak_format::record::vma::{Vma, VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};
use std::io::{self, Write};

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Note types (`include/uapi/linux/elf.h`).
const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_X86_XSTATE: u32 = 0x202;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;
/// `sizeof(struct elf_prstatus)` and `sizeof(struct elf_prpsinfo)` on x86_64.
const PRSTATUS_SIZE: usize = 336;
const PRPSINFO_SIZE: usize = 136;
/// Where `pr_reg` starts in `elf_prstatus`.
const PR_REG_OFFSET: usize = 112;
/// Bytes of the legacy FXSAVE region at the start of an XSAVE area.
const FXSAVE_SIZE: usize = 512;
/// Largest number of program headers without the `PN_XNUM` extension.
const MAX_PHNUM: usize = 0xfffe;

/// One `PT_LOAD`: a VMA and how many of its bytes the file holds (0 or the whole VMA).
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// The VMA.
    pub vma: &'a Vma,
    /// Bytes of the VMA stored in the core file.
    pub filesz: u64,
}

/// A little-endian byte builder.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn pad_to(&mut self, len: usize) {
        if self.0.len() < len {
            self.0.resize(len, 0);
        }
    }
    /// Zero bytes up to a multiple of `align`.
    fn align(&mut self, align: usize) {
        let rem = self.0.len() % align;
        if rem != 0 {
            self.0.resize(self.0.len() + (align - rem), 0);
        }
    }
}

/// One ELF note: `namesz`, `descsz`, `type`, the name and the descriptor, each padded to 4.
fn note(out: &mut Buf, name: &[u8], kind: u32, desc: &[u8]) {
    out.u32(name.len() as u32 + 1);
    out.u32(desc.len() as u32);
    out.u32(kind);
    out.bytes(name);
    out.u8(0);
    out.align(4);
    out.bytes(desc);
    out.align(4);
}

/// `struct elf_prstatus` of `t`.
fn prstatus(p: &Process<'_>, t: &Thread, fpvalid: bool) -> Vec<u8> {
    let mut b = Buf::default();
    b.pad_to(12); // pr_info: si_signo, si_code, si_errno
    b.u16(0); // pr_cursig: the image records no fatal signal
    b.pad_to(16);
    b.u64(t.pending); // pr_sigpend
    b.u64(t.blocked); // pr_sighold
    b.u32(t.tid);
    b.u32(p.process.ppid);
    b.u32(p.process.pgid);
    b.u32(p.process.sid);
    b.pad_to(PR_REG_OFFSET); // utime, stime, cutime, cstime
    for r in t.gpr.to_array() {
        b.u64(r);
    }
    b.u32(u32::from(fpvalid));
    b.pad_to(PRSTATUS_SIZE);
    b.0
}

/// `struct elf_prpsinfo` of `p`.
fn prpsinfo(p: &Process<'_>) -> Vec<u8> {
    let mut b = Buf::default();
    b.u8(1); // pr_state: sleeping, as a frozen process is
    b.u8(b'S'); // pr_sname
    b.u8(0); // pr_zomb
    b.u8(0); // pr_nice
    b.pad_to(8);
    b.u64(u64::from(p.process.flags)); // pr_flag
    let (uid, gid) = p.creds.as_ref().map_or((0, 0), |c| (c.uid, c.gid));
    b.u32(uid);
    b.u32(gid);
    b.u32(p.process.pid);
    b.u32(p.process.ppid);
    b.u32(p.process.pgid);
    b.u32(p.process.sid);
    let comm = p.process.comm.as_bytes();
    b.bytes(comm.get(..15).unwrap_or(comm));
    b.pad_to(56); // pr_fname[16], NUL-terminated
    let args: Vec<u8> = p
        .process
        .cmdline
        .as_bytes()
        .iter()
        .map(|&c| if c == 0 { b' ' } else { c })
        .collect();
    let args = args.strip_suffix(b" ").unwrap_or(&args);
    b.bytes(args.get(..79).unwrap_or(args));
    b.pad_to(PRPSINFO_SIZE);
    b.0
}

/// `NT_AUXV`: the pairs, ending with `AT_NULL`.
fn auxv(p: &Process<'_>) -> Vec<u8> {
    let mut b = Buf::default();
    let pairs = p.mm.as_ref().map_or(&[][..], |m| &m.auxv[..]);
    for &(k, v) in pairs {
        if k == 0 {
            break;
        }
        b.u64(k);
        b.u64(v);
    }
    b.u64(0);
    b.u64(0);
    b.0
}

/// `NT_FILE`: count, page size, `(start, end, offset in pages)` per file mapping, then names.
fn file_note(p: &Process<'_>, page_size: u64) -> Vec<u8> {
    let files: Vec<&Vma> = sorted_vmas(p)
        .into_iter()
        .filter(|v| v.kind == VmaKind::File)
        .collect();
    let mut b = Buf::default();
    b.u64(files.len() as u64);
    b.u64(page_size);
    for v in &files {
        b.u64(v.start);
        b.u64(v.end);
        b.u64(v.pgoff / page_size.max(1));
    }
    for v in &files {
        let path = v.path.as_bytes();
        b.bytes(path.split(|&c| c == 0).next().unwrap_or(path));
        b.u8(0);
    }
    b.0
}

/// The VMAs of `p` in address order, empty ones left out.
pub fn sorted_vmas<'a>(p: &'a Process<'_>) -> Vec<&'a Vma> {
    let mut v: Vec<&Vma> = p.vmas.iter().filter(|v| v.start < v.end).collect();
    v.sort_by_key(|v| v.start);
    v
}

/// The threads of `p` with the main thread (tid == pid) first.
fn ordered_threads<'a>(p: &'a Process<'_>) -> Vec<&'a Thread> {
    let mut t: Vec<&Thread> = p.threads.iter().collect();
    t.sort_by_key(|t| t.tid != p.pid());
    t
}

/// The note segment of `p`.
pub fn notes(p: &Process<'_>, page_size: u64) -> Vec<u8> {
    let mut out = Buf::default();
    let xsave_of = |tid: u32| {
        p.xsaves
            .iter()
            .find(|x| x.tid == tid)
            .map(|x| x.area.as_bytes())
    };
    let process_notes = |out: &mut Buf| {
        note(out, b"CORE", NT_PRPSINFO, &prpsinfo(p));
        // No fatal signal: an empty siginfo, as for a dump of a live process.
        note(out, b"CORE", NT_SIGINFO, &[0u8; 128]);
        note(out, b"CORE", NT_AUXV, &auxv(p));
        note(out, b"CORE", NT_FILE, &file_note(p, page_size));
    };
    if p.threads.is_empty() {
        process_notes(&mut out);
    }
    for (i, t) in ordered_threads(p).into_iter().enumerate() {
        let area = xsave_of(t.tid).filter(|a| a.len() >= FXSAVE_SIZE);
        note(
            &mut out,
            b"CORE",
            NT_PRSTATUS,
            &prstatus(p, t, area.is_some()),
        );
        if i == 0 {
            process_notes(&mut out);
        }
        if let Some(area) = area {
            note(
                &mut out,
                b"CORE",
                NT_FPREGSET,
                area.get(..FXSAVE_SIZE).unwrap_or(area),
            );
            note(&mut out, b"LINUX", NT_X86_XSTATE, area);
        }
    }
    out.0
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    let a = a.max(1);
    v.checked_add(a - 1).map(|x| x - x % a)
}

fn pflags(v: &Vma) -> u32 {
    let mut f = 0;
    if v.prot & PROT_READ != 0 {
        f |= PF_R;
    }
    if v.prot & PROT_WRITE != 0 {
        f |= PF_W;
    }
    if v.prot & PROT_EXEC != 0 {
        f |= PF_X;
    }
    f
}

/// Writes the core file: headers and notes, then each segment's `filesz` bytes from `fill`
/// (called once per segment with a writer that must receive exactly `filesz` bytes).
/// Returns the file size.
pub fn write(
    out: &mut dyn Write,
    p: &Process<'_>,
    page_size: u64,
    segments: &[Segment<'_>],
    fill: &mut dyn FnMut(&Segment<'_>, &mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    if segments.len() > MAX_PHNUM {
        return Err(bad("too many mappings for an ELF core file"));
    }
    let notes = notes(p, page_size);
    let phnum = segments.len() as u64 + 1;
    let notes_off = EHDR_SIZE + PHDR_SIZE * phnum;
    let notes_end = notes_off + notes.len() as u64;
    let mut offset = align_up(notes_end, page_size).ok_or_else(|| bad("file too large"))?;

    let mut head = Buf::default();
    head.bytes(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    head.pad_to(16);
    head.u16(ET_CORE);
    head.u16(EM_X86_64);
    head.u32(1); // e_version
    head.u64(0); // e_entry
    head.u64(EHDR_SIZE); // e_phoff
    head.u64(0); // e_shoff
    head.u32(0); // e_flags
    head.u16(EHDR_SIZE as u16);
    head.u16(PHDR_SIZE as u16);
    head.u16(phnum as u16);
    head.u16(64); // e_shentsize
    head.u16(0); // e_shnum
    head.u16(0); // e_shstrndx
                 // PT_NOTE.
    head.u32(PT_NOTE);
    head.u32(0);
    head.u64(notes_off);
    head.u64(0);
    head.u64(0);
    head.u64(notes.len() as u64);
    head.u64(0);
    head.u64(4);
    for s in segments {
        let memsz = s.vma.end - s.vma.start;
        head.u32(PT_LOAD);
        head.u32(pflags(s.vma));
        head.u64(if s.filesz > 0 { offset } else { 0 });
        head.u64(s.vma.start);
        head.u64(0);
        head.u64(s.filesz);
        head.u64(memsz);
        head.u64(page_size);
        offset = offset
            .checked_add(s.filesz)
            .ok_or_else(|| bad("file too large"))?;
    }
    head.bytes(&notes);
    let data_start = align_up(notes_end, page_size).ok_or_else(|| bad("file too large"))?;
    head.pad_to(usize::try_from(data_start).map_err(|_| bad("file too large"))?);
    out.write_all(&head.0)?;
    for s in segments.iter().filter(|s| s.filesz > 0) {
        let mut counted = Counted { inner: out, n: 0 };
        fill(s, &mut counted)?;
        if counted.n != s.filesz {
            return Err(io::Error::other(format!(
                "segment at 0x{:x}: {} bytes written, {} expected",
                s.vma.start, counted.n, s.filesz
            )));
        }
    }
    Ok(offset)
}

/// A writer that counts what passes through.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crak_format::record::process::ProcessRecord;
    use crak_format::record::thread::Gpr;

    #[test]
    fn note_framing_pads_name_and_desc() {
        let mut b = Buf::default();
        note(&mut b, b"CORE", 1, &[1, 2, 3]);
        assert_eq!(
            b.0,
            [5, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, b'C', b'O', b'R', b'E', 0, 0, 0, 0, 1, 2, 3, 0]
        );
    }

    #[test]
    fn prstatus_layout() {
        let mut p = Process::new(ProcessRecord {
            pid: 7,
            ppid: 1,
            pgid: 7,
            sid: 7,
            ..Default::default()
        });
        let t = Thread {
            pid: 7,
            tid: 8,
            gpr: Gpr {
                r15: 0x1515,
                rip: 0x4010,
                gs: 0x2b,
                ..Gpr::default()
            },
            blocked: 0x200,
            pending: 0x100,
            ..Default::default()
        };
        p.threads.push(t.clone());
        let b = prstatus(&p, &t, true);
        assert_eq!(b.len(), PRSTATUS_SIZE);
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(u64_at(16), 0x100);
        assert_eq!(u64_at(24), 0x200);
        assert_eq!(u32_at(32), 8);
        assert_eq!(u32_at(36), 1);
        assert_eq!(u64_at(PR_REG_OFFSET), 0x1515);
        assert_eq!(u64_at(PR_REG_OFFSET + 16 * 8), 0x4010);
        assert_eq!(u64_at(PR_REG_OFFSET + 26 * 8), 0x2b);
        assert_eq!(u32_at(328), 1);
        assert_eq!(prpsinfo(&p).len(), PRPSINFO_SIZE);
    }

    #[test]
    fn a_process_without_threads_still_has_its_process_notes() {
        let p = Process::new(ProcessRecord {
            pid: 7,
            ..Default::default()
        });
        let n = notes(&p, 4096);
        let word = |o: usize| u32::from_le_bytes(n[o..o + 4].try_into().unwrap());
        let mut types = Vec::new();
        let mut at = 0usize;
        while at + 12 <= n.len() {
            let (namesz, descsz) = (word(at) as usize, word(at + 4) as usize);
            types.push(word(at + 8));
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
        assert_eq!(types, [NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE]);
    }
}
