//! `crak-dump mem IMAGE ADDR[+LEN]` / `--vma N`: a process's memory as the image records it.
//!
//! The range is cut into pieces: stored pages (hexdumped), zero runs, pages the image does not
//! record (which read as zero, come from the backing file or from the kernel, by VMA kind) and
//! gaps where nothing is mapped. `--raw` writes the bytes instead, and refuses a range whose
//! bytes the image does not determine.

use crate::cli::MemArgs;
use crate::source::Source;
use crate::view::{hexdump, names, Style};
use crate::EXIT_OK;
use anyhow::{anyhow, bail, Context as _};
use crak_format::image::Process;
use crak_format::record::vma::{Vma, VmaKind};
use std::io::Write;

/// Bytes shown when only ADDR is given.
pub const DEFAULT_LEN: u64 = 256;

/// One part of the requested range, in address order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Nothing mapped.
    Gap { start: u64, end: u64 },
    /// Bytes stored in a PAGES record: run `run` of the process, from `off` bytes into its
    /// data (read them with [`Source::read`]).
    Stored {
        start: u64,
        end: u64,
        run: usize,
        off: u64,
    },
    /// Pages a ZERO_PAGES record says are zero.
    Zero { start: u64, end: u64 },
    /// Stored pages whose data the input does not hold.
    NotHeld { start: u64, end: u64 },
    /// Mapped but not recorded; what that means depends on the VMA.
    Unrecorded { start: u64, end: u64, vma: &'a Vma },
}

/// Parses `ADDR` or `ADDR+LEN`: hex with a `0x` prefix, otherwise decimal.
pub fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    fn num(s: &str) -> anyhow::Result<u64> {
        let s = s.trim();
        let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
            None => s.replace('_', "").parse(),
        };
        r.map_err(|e| anyhow!("bad number {s:?}: {e}"))
    }
    let (addr, len) = match s.split_once('+') {
        Some((a, l)) => (num(a)?, num(l)?),
        None => (num(s)?, DEFAULT_LEN),
    };
    let end = addr
        .checked_add(len)
        .ok_or_else(|| anyhow!("range {s} runs past the end of the address space"))?;
    Ok((addr, end))
}

/// A stored or zero run, `[start, end)`: for a stored run, its index in the process's runs
/// and how many bytes of data the input holds for it.
struct Run {
    start: u64,
    end: u64,
    stored: Option<(usize, u64)>,
}

/// Cuts `[start, end)` of `p`'s memory into pieces. `O((vmas + runs) log n)` plus the pieces.
/// `p` is a process of `src`'s image.
pub fn pieces<'a>(src: &Source, p: &'a Process<'_>, start: u64, end: u64) -> Vec<Piece<'a>> {
    let page_size = u64::from(src.image().header.page_size);
    let mut vmas: Vec<&Vma> = p.vmas.iter().filter(|v| v.start < v.end).collect();
    vmas.sort_unstable_by_key(|v| v.start);
    let mut runs: Vec<Run> = Vec::with_capacity(p.pages.len() + p.zero_runs.len());
    for (i, r) in p.pages.iter().enumerate() {
        if let Some(e) = run_end(r.addr, r.nr_pages, page_size) {
            runs.push(Run {
                start: r.addr,
                end: e,
                stored: Some((i, src.run_len(p, i))),
            });
        }
    }
    for r in &p.zero_runs {
        if let Some(e) = run_end(r.addr, r.nr_pages, page_size) {
            runs.push(Run {
                start: r.addr,
                end: e,
                stored: None,
            });
        }
    }
    runs.retain(|r| r.start < r.end);
    runs.sort_unstable_by_key(|r| r.start);

    let mut out = Vec::new();
    let mut cur = start;
    while cur < end {
        // The VMA holding `cur`: the last one starting at or before it, if it reaches past it.
        let vi = vmas.partition_point(|v| v.start <= cur);
        let vma = vi
            .checked_sub(1)
            .and_then(|i| vmas.get(i))
            .filter(|v| v.end > cur);
        let Some(vma) = vma else {
            let next = vmas.get(vi).map_or(end, |v| v.start.min(end));
            out.push(Piece::Gap {
                start: cur,
                end: next,
            });
            cur = next;
            continue;
        };
        let vend = vma.end.min(end);
        let ri = runs.partition_point(|r| r.start <= cur);
        let run = ri
            .checked_sub(1)
            .and_then(|i| runs.get(i))
            .filter(|r| r.end > cur);
        match run {
            Some(r) => {
                let stop = r.end.min(vend);
                match r.stored {
                    Some((run, held)) => {
                        let off = cur - r.start;
                        let have = r.start.saturating_add(held).min(stop);
                        if have > cur {
                            out.push(Piece::Stored {
                                start: cur,
                                end: have,
                                run,
                                off,
                            });
                        }
                        if have.max(cur) < stop {
                            // Stored pages whose data is not held (short data).
                            out.push(Piece::NotHeld {
                                start: have.max(cur),
                                end: stop,
                            });
                        }
                    }
                    None => out.push(Piece::Zero {
                        start: cur,
                        end: stop,
                    }),
                }
                cur = stop;
            }
            None => {
                let next = runs.get(ri).map_or(vend, |r| r.start.min(vend));
                out.push(Piece::Unrecorded {
                    start: cur,
                    end: next,
                    vma,
                });
                cur = next;
            }
        }
    }
    out
}

fn run_end(addr: u64, nr: u64, page_size: u64) -> Option<u64> {
    nr.checked_mul(page_size)?.checked_add(addr)
}

/// What an unrecorded page of `vma` holds, in words; `None` when it reads as zero.
fn unrecorded_meaning(vma: &Vma) -> Option<String> {
    match vma.kind {
        VmaKind::Anon | VmaKind::Heap | VmaKind::Stack => None,
        VmaKind::File => Some(format!(
            "not recorded: read from {} at file offset 0x{:x}",
            names::text(&vma.path),
            vma.pgoff
        )),
        VmaKind::SysvShm => Some(format!(
            "not recorded: SysV shared memory {}",
            names::text(&vma.path)
        )),
        _ => Some(format!(
            "provided by the kernel ({})",
            names::text(&vma.path)
        )),
    }
}

/// Runs the command.
pub fn run(args: &MemArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let src = Source::open(&args.image)?;
    let image = src.image();
    let p = match args.pid {
        Some(pid) => image
            .processes
            .iter()
            .find(|p| p.pid() == pid)
            .with_context(|| format!("no process {pid} in the image"))?,
        None => image
            .processes
            .first()
            .context("the image holds no process")?,
    };
    let (start, end) = match (&args.range, args.vma) {
        (_, Some(n)) => {
            let v = p
                .vmas
                .get(n)
                .with_context(|| format!("process {} has no VMA #{n}", p.pid()))?;
            (v.start, v.end)
        }
        (Some(r), None) => parse_range(r)?,
        (None, None) => bail!("give ADDR[+LEN] or --vma N"),
    };
    let pieces = pieces(&src, p, start, end);
    // Every PAGES run shown is read to its end and its CRC checked before anything is written.
    src.verify_range(p, start, end)?;

    if args.raw {
        for piece in &pieces {
            match piece {
                Piece::Stored { .. } | Piece::Zero { .. } => {}
                Piece::Unrecorded { vma, .. } if unrecorded_meaning(vma).is_none() => {}
                Piece::Gap { start, end } => {
                    bail!("0x{start:x}-0x{end:x} is not mapped; no bytes to write")
                }
                Piece::NotHeld { start, end } => {
                    bail!("0x{start:x}-0x{end:x}: stored page data is missing")
                }
                Piece::Unrecorded { start, end, vma } => bail!(
                    "0x{start:x}-0x{end:x} is not in the image ({}); no bytes to write",
                    unrecorded_meaning(vma).unwrap_or_default()
                ),
            }
        }
        let zeros = [0u8; 4096];
        for piece in &pieces {
            match piece {
                Piece::Stored {
                    start,
                    end,
                    run,
                    off,
                } => src.read(p, *run, *off, off.saturating_add(end - start), &mut |c| {
                    out.write_all(c)
                })?,
                Piece::Zero { start, end } | Piece::Unrecorded { start, end, .. } => {
                    let mut left = end.saturating_sub(*start);
                    while left > 0 {
                        let n = left.min(zeros.len() as u64);
                        out.write_all(zeros.get(..n as usize).unwrap_or(&[]))?;
                        left -= n;
                    }
                }
                Piece::Gap { .. } | Piece::NotHeld { .. } => {}
            }
        }
        return Ok(EXIT_OK);
    }

    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "process {} ({}), 0x{start:x}-0x{end:x}",
            p.pid(),
            crate::view::names::text(&p.process.comm)
        ))
    )?;
    for piece in &pieces {
        match piece {
            Piece::Stored {
                start,
                end,
                run,
                off,
            } => {
                let input = src.reader(p, *run, *off, off.saturating_add(end - start));
                hexdump::dump_from(out, *start, input, style)?
            }
            Piece::Zero { start, end } => {
                hexdump::note(out, *start, *end, "zero pages (ZERO_PAGES)", style)?
            }
            Piece::Gap { start, end } => hexdump::note(out, *start, *end, "unmapped", style)?,
            Piece::NotHeld { start, end } => {
                hexdump::note(out, *start, *end, "stored pages, data missing", style)?
            }
            Piece::Unrecorded { start, end, vma } => {
                let what = unrecorded_meaning(vma)
                    .unwrap_or_else(|| "not recorded: reads as zero".to_string());
                hexdump::note(out, *start, *end, &what, style)?
            }
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0x1000").unwrap(), (0x1000, 0x1100));
        assert_eq!(parse_range("0x1000+0x20").unwrap(), (0x1000, 0x1020));
        assert_eq!(parse_range("4096+16").unwrap(), (4096, 4112));
        assert!(parse_range("0xffffffffffffffff+2").is_err());
        assert!(parse_range("zz").is_err());
    }
}
