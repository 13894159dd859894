//! Symbols and unwind tables of the ELF files mapped in a process, for `backtrace`.
//!
//! A module is read from disk when the file at its path is still the one captured (same dev,
//! inode and size), else rebuilt from the image's own stored pages of its mappings (which
//! usually hold the ELF and program headers, the dynamic symbols and `.eh_frame`, but not the
//! section headers). From it come the function symbols (`.symtab` and `.dynsym`), the
//! `PT_LOAD` segments (to turn a run-time address into a link-time one) and `.eh_frame` (found
//! through the section headers or through `PT_GNU_EH_FRAME`).

use crate::source::Source as PageSource;
use crak_format::image::Process;
use crak_format::record::vma::{Vma, VmaKind};
use goblin::elf::program_header::{PT_GNU_EH_FRAME, PT_LOAD};
use goblin::elf::Elf;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;

/// Largest ELF file read (from disk or rebuilt from pages).
pub const MAX_MODULE: u64 = 512 << 20;

/// Where a module's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The file on disk, unchanged since the capture.
    Disk,
    /// The image's stored pages of the mapping.
    Image,
    /// Neither gave a usable ELF file.
    None,
}

/// A `PT_LOAD` segment: file offset, link-time address and size in the file.
#[derive(Debug, Clone, Copy)]
struct Load {
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// One mapped ELF file.
#[derive(Debug)]
pub struct Module {
    /// Its path.
    pub path: String,
    /// Where its bytes came from.
    pub source: Source,
    loads: Vec<Load>,
    /// Function symbols by link-time address: (size, name).
    syms: BTreeMap<u64, (u64, String)>,
    /// `.eh_frame` and its link-time address.
    pub eh_frame: Option<(u64, Vec<u8>)>,
}

impl Module {
    /// The link-time address of file offset `off`, when a `PT_LOAD` holds it.
    pub fn offset_to_svma(&self, off: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|l| off >= l.offset && off - l.offset < l.filesz.max(1))
            .map(|l| off - l.offset + l.vaddr)
    }

    /// The function holding link-time address `svma` and the offset into it.
    pub fn symbol(&self, svma: u64) -> Option<(&str, u64)> {
        let (addr, (size, name)) = self.syms.range(..=svma).next_back()?;
        let off = svma - addr;
        // Sized symbols must contain the address; unsized ones are taken within 64 KiB.
        if (*size > 0 && off >= *size) || (*size == 0 && off >= 1 << 16) {
            return None;
        }
        Some((name.as_str(), off))
    }

    /// Whether the module has any symbols.
    pub fn has_symbols(&self) -> bool {
        !self.syms.is_empty()
    }
}

/// Whether the file at `v.path` is still the one mapped (dev, inode and size). A mapping that
/// records no identity (from an ELF core file: all three zero) takes the file at its path.
fn unchanged_on_disk(v: &Vma) -> bool {
    let path = std::ffi::OsStr::from_bytes(v.path.as_bytes());
    let unknown = v.dev == 0 && v.ino == 0 && v.size == 0;
    std::fs::metadata(path).is_ok_and(|md| {
        md.is_file() && (unknown || (md.dev() == v.dev && md.ino() == v.ino && md.size() == v.size))
    })
}

/// The file's bytes rebuilt from the stored pages of every mapping of it in `p`.
fn from_pages(src: &PageSource, p: &Process<'_>, v: &Vma) -> Option<Vec<u8>> {
    let maps: Vec<&Vma> = p
        .vmas
        .iter()
        .filter(|m| m.kind == VmaKind::File && m.path == v.path && m.ino == v.ino)
        .collect();
    let len = maps
        .iter()
        .filter_map(|m| m.pgoff.checked_add(m.end.checked_sub(m.start)?))
        .max()?
        .min(v.size.max(1))
        .min(MAX_MODULE);
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    let mut any = false;
    for m in maps {
        for piece in crate::cmd::mem::pieces(src, p, m.start, m.end) {
            if let crate::cmd::mem::Piece::Stored {
                start,
                end,
                run,
                off: run_off,
            } = piece
            {
                let off = m.pgoff.checked_add(start - m.start)?;
                let Ok(mut off) = usize::try_from(off) else {
                    continue;
                };
                // Only what fits in the module's bytes is read.
                let room = buf.len().saturating_sub(off) as u64;
                let to = run_off.saturating_add((end - start).min(room));
                let read = src.read(p, run, run_off, to, &mut |c| {
                    if let Some(d) = buf.get_mut(off..off + c.len()) {
                        d.copy_from_slice(c);
                        any = true;
                    }
                    off += c.len();
                    Ok(())
                });
                if read.is_err() {
                    return None;
                }
            }
        }
    }
    if !any {
        return None;
    }
    // Section headers are rarely mapped: make the parser rely on program headers only.
    if let Some(sh) = buf.get_mut(0x28..0x30) {
        sh.fill(0); // e_shoff
    }
    if let Some(sh) = buf.get_mut(0x3c..0x40) {
        sh.fill(0); // e_shnum, e_shstrndx
    }
    Some(buf)
}

/// Reads the module mapped by `v`.
pub fn load(src: &PageSource, p: &Process<'_>, v: &Vma) -> Module {
    let path = crate::view::names::text(&v.path);
    let file = std::ffi::OsStr::from_bytes(v.path.as_bytes());
    let small = std::fs::metadata(file).is_ok_and(|md| md.len() <= MAX_MODULE);
    let disk = if unchanged_on_disk(v) && small {
        std::fs::read(file).ok()
    } else {
        None
    };
    let (source, bytes) = match disk {
        Some(b) => (Source::Disk, Some(b)),
        None => match from_pages(src, p, v) {
            Some(b) => (Source::Image, Some(b)),
            None => (Source::None, None),
        },
    };
    let empty = Module {
        path: path.clone(),
        source: Source::None,
        loads: Vec::new(),
        syms: BTreeMap::new(),
        eh_frame: None,
    };
    let Some(bytes) = bytes else {
        return empty;
    };
    let Ok(elf) = Elf::parse(&bytes) else {
        return empty;
    };
    let loads: Vec<Load> = elf
        .program_headers
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .map(|ph| Load {
            offset: ph.p_offset,
            vaddr: ph.p_vaddr,
            filesz: ph.p_filesz,
        })
        .collect();
    let mut syms = BTreeMap::new();
    for (tab, strs) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
        for s in tab.iter() {
            if !s.is_function() || s.st_value == 0 {
                continue;
            }
            if let Some(name) = strs.get_at(s.st_name).filter(|n| !n.is_empty()) {
                // Prefer the first (symtab) name and a sized symbol at an address.
                let e = syms
                    .entry(s.st_value)
                    .or_insert((s.st_size, name.to_string()));
                if e.0 == 0 && s.st_size > 0 {
                    *e = (s.st_size, name.to_string());
                }
            }
        }
    }
    let mut module = Module {
        path,
        source,
        loads,
        syms,
        eh_frame: None,
    };
    let file_range = |off: u64, size: u64| -> Option<Vec<u8>> {
        let a = usize::try_from(off).ok()?;
        let b = usize::try_from(off.checked_add(size)?).ok()?;
        bytes.get(a..b).map(<[u8]>::to_vec)
    };
    let section = elf.section_headers.iter().find(|sh| {
        elf.shdr_strtab.get_at(sh.sh_name) == Some(".eh_frame")
            && sh.sh_type != goblin::elf::section_header::SHT_NOBITS
    });
    module.eh_frame = match section {
        Some(sh) => file_range(sh.sh_offset, sh.sh_size).map(|d| (sh.sh_addr, d)),
        None => elf
            .program_headers
            .iter()
            .find(|ph| ph.p_type == PT_GNU_EH_FRAME)
            .and_then(|ph| {
                eh_frame_from_hdr(&module, &bytes, ph.p_offset, ph.p_vaddr, ph.p_filesz)
            }),
    };
    module
}

/// `.eh_frame` found through `.eh_frame_hdr`: its address is in the header; it runs to the end
/// of the `PT_LOAD` segment holding it.
fn eh_frame_from_hdr(
    m: &Module,
    bytes: &[u8],
    off: u64,
    vaddr: u64,
    size: u64,
) -> Option<(u64, Vec<u8>)> {
    let hdr =
        bytes.get(usize::try_from(off).ok()?..usize::try_from(off.checked_add(size)?).ok()?)?;
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(vaddr);
    let parsed = gimli::EhFrameHdr::new(hdr, gimli::LittleEndian)
        .parse(&bases, 8)
        .ok()?;
    let gimli::Pointer::Direct(addr) = parsed.eh_frame_ptr() else {
        return None;
    };
    let load = m
        .loads
        .iter()
        .find(|l| addr >= l.vaddr && addr - l.vaddr < l.filesz)?;
    let start = addr - load.vaddr + load.offset;
    let end = load.offset.checked_add(load.filesz)?;
    let data = bytes.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)?;
    Some((addr, data.to_vec()))
}
