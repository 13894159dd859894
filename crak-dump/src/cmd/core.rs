//! `crak-dump core IMAGE -o CORE`: one process of an image as an ELF core file that gdb opens
//! (`gdb EXE CORE`). The ELF layout is in [`crate::view::core`]; this module decides what each
//! `PT_LOAD` holds and streams it.
//!
//! A VMA's segment covers the whole VMA (`p_filesz = p_memsz`) when every byte of it is known:
//! stored pages, zero pages, unrecorded anonymous pages (which read as zero), and unrecorded
//! pages of a file mapping whose file is still the one captured (same dev, inode, size and
//! mtime), read from that file. Otherwise (the file changed or is gone, kernel-provided
//! mappings such as the vDSO) the segment holds no bytes (`p_filesz = 0`), as in a kernel dump
//! of a mapping it does not dump, and debuggers read such memory from the executable.

use crate::cli::CoreArgs;
use crate::cmd::mem::{pieces, Piece};
use crate::source::Source;
use crate::view::core::{self, Segment};
use crate::EXIT_OK;
use anyhow::{anyhow, Context as _};
use crak_format::image::Process;
use crak_format::record::vma::{Vma, VmaKind};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};

/// The file a VMA maps, opened when it is still the file that was captured.
pub fn matching_file(v: &Vma) -> Option<File> {
    if v.kind != VmaKind::File {
        return None;
    }
    let path = std::ffi::OsStr::from_bytes(v.path.as_bytes());
    let f = File::open(path).ok()?;
    let md = f.metadata().ok()?;
    let mtime = md
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec());
    (md.dev() == v.dev && md.ino() == v.ino && md.size() == v.size && mtime == v.mtime_ns)
        .then_some(f)
}

/// Whether an unrecorded page of `v` reads as zero.
fn unrecorded_is_zero(v: &Vma) -> bool {
    matches!(v.kind, VmaKind::Anon | VmaKind::Heap | VmaKind::Stack)
}

/// Writes `[start, end)` of `file` at byte `off` (zeros past its end).
fn copy_from_file(
    out: &mut dyn Write,
    file: &File,
    mut off: u64,
    mut len: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    while len > 0 {
        let n = usize::try_from(len.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        let mut got = 0;
        while got < n {
            let Some(rest) = chunk.get_mut(got..) else {
                break;
            };
            match file.read_at(rest, off + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(tail) = chunk.get_mut(got..) {
            tail.fill(0);
        }
        out.write_all(chunk)?;
        off = off.saturating_add(n as u64);
        len -= n as u64;
    }
    Ok(())
}

fn write_zeros(out: &mut dyn Write, mut len: u64) -> io::Result<()> {
    let zeros = [0u8; 8192];
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        out.write_all(zeros.get(..n).unwrap_or_default())?;
        len -= n as u64;
    }
    Ok(())
}

/// Decides each segment's size and writes the core file of `p` (a process of `src`) to `out`.
/// Stored pages are read from `src` as they are written, and each PAGES run's CRC is checked
/// when its data has been read to its end.
pub fn write_core(out: &mut dyn Write, src: &Source, p: &Process<'_>) -> anyhow::Result<u64> {
    let page_size = u64::from(src.image().header.page_size);
    let vmas = core::sorted_vmas(p);
    let mut files: HashMap<u64, File> = HashMap::new();
    let mut segments = Vec::with_capacity(vmas.len());
    for v in vmas {
        let file = matching_file(v);
        let known = pieces(src, p, v.start, v.end).iter().all(|x| match x {
            Piece::Stored { .. } | Piece::Zero { .. } => true,
            Piece::Unrecorded { vma, .. } => unrecorded_is_zero(vma) || file.is_some(),
            Piece::NotHeld { .. } | Piece::Gap { .. } => false,
        });
        if let Some(f) = file {
            files.insert(v.start, f);
        }
        segments.push(Segment {
            vma: v,
            filesz: if known { v.end - v.start } else { 0 },
        });
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut fill = |s: &Segment<'_>, w: &mut dyn Write| -> io::Result<()> {
        for piece in pieces(src, p, s.vma.start, s.vma.end) {
            match piece {
                Piece::Stored {
                    start,
                    end,
                    run,
                    off,
                } => src
                    .read(p, run, off, off.saturating_add(end - start), &mut |c| {
                        w.write_all(c)
                    })
                    .map_err(crate::source::to_io)?,
                Piece::Zero { start, end } => write_zeros(w, end - start)?,
                Piece::Unrecorded { start, end, vma } => match files.get(&vma.start) {
                    Some(f) if !unrecorded_is_zero(vma) => {
                        let off = vma.pgoff.saturating_add(start - vma.start);
                        copy_from_file(w, f, off, end - start, &mut buf)?
                    }
                    _ => write_zeros(w, end - start)?,
                },
                Piece::NotHeld { start, end } | Piece::Gap { start, end } => {
                    write_zeros(w, end - start)?
                }
            }
        }
        Ok(())
    };
    let size = core::write(out, p, page_size, &segments, &mut fill)?;
    src.verify()?;
    Ok(size)
}

/// Runs the command.
pub fn run(args: &CoreArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let src = Source::open(&args.image)?;
    let image = src.image();
    if image.header.arch != crak_format::record::header::ARCH_X86_64 {
        return Err(anyhow!(
            "the image is for ELF machine {}, not x86_64",
            image.header.arch
        ));
    }
    let p = match args.pid {
        Some(pid) => image
            .process(pid)
            .with_context(|| format!("no process {pid} in the image"))?,
        None => image
            .processes
            .first()
            .context("the image holds no process")?,
    };
    if crate::is_stdin(&args.output) {
        write_core(out, &src, p)?;
    } else {
        super::write_atomically(&args.output, &mut |file| {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            write_core(&mut w, &src, p).with_context(|| {
                format!("{}: cannot write the core file", args.output.display())
            })?;
            w.flush()?;
            Ok(())
        })?;
    }
    Ok(EXIT_OK)
}
