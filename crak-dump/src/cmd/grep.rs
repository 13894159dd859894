//! `crak-dump grep IMAGE PATTERN`: search the stored pages of processes for text, hex bytes
//! (`-x`) or a byte regex (`-e`), optionally only in some VMAs or an address range.
//!
//! Only stored pages are searched (zero pages and unrecorded pages hold nothing to find).
//! Contiguous stored runs inside one VMA are searched as one block, so a match may cross a
//! run boundary but not a VMA boundary. Exit 0 with matches, 1 without.

use crate::cli::GrepArgs;
use crate::cmd::mem::{pieces, Piece};
use crate::source::Source;
use crate::view::Style;
use crate::{EXIT_NO, EXIT_OK};
use anyhow::{anyhow, bail, Context as _};
use crak_format::image::Process;
use crak_format::record::vma::Vma;
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;

/// Bytes of a match shown in text output.
const SHOW: usize = 64;

/// One match.
#[derive(Debug, Serialize)]
pub struct Match {
    /// Process.
    pub pid: u32,
    /// Address of the first matching byte.
    pub addr: u64,
    /// Index of the VMA holding it.
    pub vma: usize,
    /// That VMA's permissions.
    pub perms: String,
    /// That VMA's path or name.
    pub path: String,
    /// Length of the match.
    pub len: usize,
    /// The matching bytes in hex (at most 4096 bytes of them).
    pub hex: String,
}

/// Builds the matcher: the pattern as literal bytes (text or hex) or as a regex.
pub fn matcher(pattern: &str, hex: bool, regex: bool) -> anyhow::Result<Regex> {
    let literal: Vec<u8> = if regex {
        return RegexBuilder::new(pattern)
            .size_limit(1 << 24)
            .build()
            .with_context(|| format!("bad regex {pattern:?}"));
    } else if hex {
        let digits: String = pattern
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let digits = digits.strip_prefix("0x").unwrap_or(&digits).to_string();
        crak_format::bytes::from_hex(&digits)
            .ok_or_else(|| anyhow!("bad hex pattern {pattern:?}"))?
    } else {
        pattern.as_bytes().to_vec()
    };
    if literal.is_empty() {
        bail!("empty pattern");
    }
    let mut re = String::from("(?-u)");
    for b in &literal {
        let _ = write!(re, "\\x{b:02x}");
    }
    RegexBuilder::new(&re)
        .unicode(false)
        .build()
        .context("building the matcher")
}

/// The length of a literal pattern (text, or hex with `-x`); `None` when it is not valid.
fn literal(pattern: &str, hex: bool) -> Option<usize> {
    if hex {
        let digits: String = pattern
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let digits = digits.strip_prefix("0x").unwrap_or(&digits);
        crak_format::bytes::from_hex(digits).map(|b| b.len())
    } else {
        Some(pattern.len())
    }
}

/// The metadata of the crak image file at `path`, read as a stream without page data;
/// `None` when it is not a crak image (an ELF core file, or something [`super::open`] names).
fn metadata_only(path: &std::path::Path) -> anyhow::Result<Option<crak_format::Image<'static>>> {
    use std::io::Read as _;
    let name = crate::display_name(path);
    let mut file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    let mut magic = [0u8; 8];
    let n = file.read(&mut magic).unwrap_or(0);
    if n < magic.len() || magic != crak_format::MAGIC {
        return Ok(None);
    }
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    let parsed =
        crak_format::read::read_stream_metadata(std::io::BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("{name}: not a valid crak image"))?;
    Ok(Some(parsed.image))
}

/// The bytes kept from one stored block for matches that continue into the next chunk.
struct Carry {
    pid: u32,
    vma: usize,
    /// Address of `bytes[0]`.
    start: u64,
    bytes: Vec<u8>,
    /// End of the last match reported in this block (matches do not overlap).
    reported: u64,
}

/// Searches the page data of `pids` in an image stream: `meta` is the same image's metadata.
/// Matches of a literal pattern (`keep` = its length − 1 bytes carried between chunks) cross
/// adjacent stored runs inside a VMA, as in [`search_process`], and come in the same order.
#[allow(clippy::too_many_arguments)]
fn stream_search(
    input: impl std::io::Read,
    meta: &crak_format::Image<'_>,
    pids: &[u32],
    re: &Regex,
    keep: usize,
    select: &dyn Fn(usize, &Vma) -> bool,
    span: (u64, u64),
    limit: u64,
    found: &mut Vec<Match>,
) -> anyhow::Result<()> {
    use crak_format::read::{StreamItem, StreamReader};
    let mut sr = StreamReader::new(input)?;
    let mut carry: Option<Carry> = None;
    let mut buf = vec![0u8; 1 << 20];
    while let Some(item) = sr.next_item()? {
        let StreamItem::Pages(sp) = item else {
            continue;
        };
        let pid = sp.header.pid;
        let Some(p) = meta.process(pid).filter(|_| pids.contains(&pid)) else {
            continue;
        };
        let mut vmas: Vec<(usize, &Vma)> = p
            .vmas
            .iter()
            .enumerate()
            .filter(|(i, v)| select(*i, v))
            .collect();
        vmas.sort_unstable_by_key(|(_, v)| v.start);
        let mut addr = sp.header.addr;
        loop {
            let n = sr.read_page_data(&mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            let chunk_end = addr.saturating_add(n as u64);
            // Each selected VMA's part of the chunk, clipped to the span.
            let first = vmas.partition_point(|(_, v)| v.end <= addr);
            for &(vi, v) in vmas.get(first..).unwrap_or_default() {
                if v.start >= chunk_end {
                    break;
                }
                let lo = addr.max(v.start).max(span.0);
                let hi = chunk_end.min(v.end).min(span.1);
                if lo >= hi {
                    continue;
                }
                let (Ok(f), Ok(t)) = (usize::try_from(lo - addr), usize::try_from(hi - addr))
                else {
                    continue;
                };
                let Some(part) = chunk.get(f..t) else {
                    continue;
                };
                let mut c = match carry.take() {
                    Some(c)
                        if c.pid == pid
                            && c.vma == vi
                            && c.start.saturating_add(c.bytes.len() as u64) == lo =>
                    {
                        c
                    }
                    _ => Carry {
                        pid,
                        vma: vi,
                        start: lo,
                        bytes: Vec::new(),
                        reported: lo,
                    },
                };
                c.bytes.extend_from_slice(part);
                let mut pos =
                    usize::try_from(c.reported.saturating_sub(c.start)).unwrap_or(usize::MAX);
                while pos <= c.bytes.len() {
                    let Some(m) = re.find_at(&c.bytes, pos) else {
                        break;
                    };
                    if m.is_empty() {
                        break;
                    }
                    if found.len() as u64 >= limit {
                        return Ok(());
                    }
                    found.push(Match {
                        pid,
                        addr: c.start.saturating_add(m.start() as u64),
                        vma: vi,
                        perms: v.perms(),
                        path: crate::view::names::text(&v.path),
                        len: m.len(),
                        hex: crak_format::bytes::to_hex(m.as_bytes()),
                    });
                    c.reported = c.start.saturating_add(m.end() as u64);
                    pos = m.end();
                }
                // Keep the last `keep` bytes for a match that continues in the next part.
                let drop = c.bytes.len().saturating_sub(keep);
                c.bytes.drain(..drop);
                c.start = c.start.saturating_add(drop as u64);
                carry = Some(c);
            }
            addr = chunk_end;
        }
    }
    Ok(())
}

/// `START-END`, hex with 0x or decimal.
fn parse_span(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| anyhow!("--range wants START-END, got {s:?}"))?;
    let (start, _) = super::mem::parse_range(a)?;
    let (end, _) = super::mem::parse_range(b)?;
    if end <= start {
        bail!("--range {s}: END must be above START");
    }
    Ok((start, end))
}

/// Whether `perms` (`rw-p`) has every letter of `want` other than `-`.
fn perms_match(perms: &str, want: &str) -> bool {
    want.chars()
        .filter(|&c| c != '-')
        .all(|c| perms.contains(c))
}

/// Bytes of stored memory searched at once by [`search_process`].
pub const WINDOW: u64 = 8 << 20;
/// Longest match [`search_process`] is sure to find whole: consecutive windows overlap by this
/// much, and a match is taken from a window only when it starts before the overlap (or in the
/// block's last window).
pub const OVERLAP: u64 = 1 << 20;

/// One stored piece of a block: `[start, end)` from run `run` at `off` into its data.
#[derive(Clone, Copy)]
struct Part {
    start: u64,
    end: u64,
    run: usize,
    off: u64,
}

/// Reads `[from, from + buf.len())` of a block of contiguous stored parts into `buf`.
fn read_block(
    src: &Source,
    p: &Process<'_>,
    parts: &[Part],
    from: u64,
    buf: &mut [u8],
) -> anyhow::Result<()> {
    let to = from.saturating_add(buf.len() as u64);
    for part in parts {
        let lo = part.start.max(from);
        let hi = part.end.min(to);
        if lo >= hi {
            continue;
        }
        let mut at = usize::try_from(lo - from)?;
        let off = part.off.saturating_add(lo - part.start);
        src.read(p, part.run, off, off.saturating_add(hi - lo), &mut |c| {
            if let Some(d) = buf.get_mut(at..at + c.len()) {
                d.copy_from_slice(c);
            }
            at += c.len();
            Ok(())
        })?;
    }
    Ok(())
}

/// Searches `p`, a process of `src`: the selected VMAs, clipped to `span`, through its stored
/// runs. Contiguous stored runs inside a VMA form one block, searched in windows of
/// [`WINDOW`] bytes that overlap by [`OVERLAP`], so memory stays bounded however large the
/// block; a match longer than [`OVERLAP`] may be cut at a window's end.
pub(crate) fn search_process(
    src: &Source,
    p: &Process<'_>,
    re: &Regex,
    select: &dyn Fn(usize, &Vma) -> bool,
    span: (u64, u64),
    limit: u64,
    found: &mut Vec<Match>,
) -> anyhow::Result<()> {
    let mut vmas: Vec<(usize, &Vma)> = p
        .vmas
        .iter()
        .enumerate()
        .filter(|(i, v)| select(*i, v))
        .collect();
    vmas.sort_unstable_by_key(|(_, v)| v.start);
    let mut buf: Vec<u8> = Vec::new();
    for (vi, v) in vmas {
        let lo = v.start.max(span.0);
        let hi = v.end.min(span.1);
        if lo >= hi {
            continue;
        }
        // Stored parts of [lo, hi), merged into contiguous blocks.
        let mut blocks: Vec<Vec<Part>> = Vec::new();
        for piece in pieces(src, p, lo, hi) {
            let Piece::Stored {
                start,
                end,
                run,
                off,
            } = piece
            else {
                continue;
            };
            let part = Part {
                start,
                end,
                run,
                off,
            };
            match blocks.last_mut() {
                Some(b) if b.last().is_some_and(|l| l.end == start) => b.push(part),
                _ => blocks.push(vec![part]),
            }
        }
        for parts in &blocks {
            let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
                continue;
            };
            let (block_start, block_end) = (first.start, last.end);
            let mut pos = block_start;
            while pos < block_end {
                let window_end = pos.saturating_add(WINDOW).min(block_end);
                let len = usize::try_from(window_end - pos)?;
                buf.resize(len, 0);
                read_block(src, p, parts, pos, &mut buf)?;
                let last_window = window_end == block_end;
                // Matches starting in the overlap are left to the next window.
                let take_below = if last_window {
                    len
                } else {
                    len.saturating_sub(OVERLAP as usize).max(1)
                };
                let mut next = pos.saturating_add(take_below as u64);
                for m in re.find_iter(&buf) {
                    if m.start() >= take_below {
                        break;
                    }
                    if m.is_empty() {
                        continue;
                    }
                    if found.len() as u64 >= limit {
                        return Ok(());
                    }
                    let shown = m.as_bytes().get(..4096).unwrap_or(m.as_bytes());
                    found.push(Match {
                        pid: p.pid(),
                        addr: pos.saturating_add(m.start() as u64),
                        vma: vi,
                        perms: v.perms(),
                        path: crate::view::names::text(&v.path),
                        len: m.len(),
                        hex: crak_format::bytes::to_hex(shown),
                    });
                    next = next.max(pos.saturating_add(m.end() as u64));
                }
                if last_window {
                    break;
                }
                pos = next;
            }
        }
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: &GrepArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let re = matcher(&args.pattern, args.hex, args.regex)?;
    let span = match &args.range {
        Some(r) => parse_span(r)?,
        None => (0, u64::MAX),
    };
    // A literal pattern in an image file is searched in a second, streaming pass over the
    // file after a first pass that reads only the metadata: page data is never held whole.
    // Regexes (whose matches have no length bound), stdin and ELF core files are read whole.
    let literal_len = if args.regex {
        None
    } else {
        literal(&args.pattern, args.hex)
    };
    let meta = match literal_len {
        Some(_) if !crate::is_stdin(&args.image) => metadata_only(&args.image)?,
        _ => None,
    };
    let streaming = meta.is_some();
    // Otherwise page data is read from the file as it is searched ([`Source`]).
    let src = match meta {
        Some(m) => Source::from_image(m),
        None => Source::open(&args.image)?,
    };
    let image = src.image();
    let procs: Vec<&Process<'_>> = match (args.pid, args.vma) {
        (Some(pid), _) => vec![image
            .processes
            .iter()
            .find(|p| p.pid() == pid)
            .with_context(|| format!("no process {pid} in the image"))?],
        (None, Some(_)) => vec![image
            .processes
            .first()
            .context("the image holds no process")?],
        (None, None) => image.processes.iter().collect(),
    };
    if let (Some(n), Some(p)) = (args.vma, procs.first()) {
        if p.vmas.get(n).is_none() {
            bail!("process {} has no VMA #{n}", p.pid());
        }
    }
    let select = |i: usize, v: &Vma| {
        let vma_ok = match args.vma {
            Some(n) => n == i,
            None => true,
        };
        let perms_ok = match args.perms.as_deref() {
            Some(want) => perms_match(&v.perms(), want),
            None => true,
        };
        vma_ok && perms_ok
    };
    let limit = args.max_count.unwrap_or(u64::MAX);
    let mut found = Vec::new();
    if streaming {
        let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
        let file = std::fs::File::open(&args.image)
            .with_context(|| format!("{}: cannot read", crate::display_name(&args.image)))?;
        let keep = literal_len.unwrap_or(1).saturating_sub(1);
        stream_search(
            std::io::BufReader::with_capacity(1 << 20, file),
            image,
            &pids,
            &re,
            keep,
            &select,
            span,
            limit,
            &mut found,
        )
        .with_context(|| {
            format!(
                "{}: not a valid crak image",
                crate::display_name(&args.image)
            )
        })?;
    } else {
        for p in procs {
            search_process(&src, p, &re, &select, span, limit, &mut found)?;
        }
        src.verify()?;
    }

    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            count: usize,
            matches: &'a [Match],
        }
        let o = Out {
            count: found.len(),
            matches: &found,
        };
        serde_json::to_writer_pretty(&mut *out, &o)?;
        writeln!(out)?;
    } else {
        for m in &found {
            let raw = crak_format::bytes::from_hex(&m.hex).unwrap_or_default();
            let shown = raw.get(..SHOW).unwrap_or(&raw);
            let more = if m.len > SHOW { "..." } else { "" };
            writeln!(
                out,
                "{} {} #{} {} {}: {}{more}",
                m.pid,
                style.dim(&format!("{:x}", m.addr)),
                m.vma,
                m.perms,
                if m.path.is_empty() { "[anon]" } else { &m.path },
                style.red(&shown.escape_ascii().to_string()),
            )?;
        }
    }
    Ok(if found.is_empty() { EXIT_NO } else { EXIT_OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let re = matcher("de ad:be ef", true, false).unwrap();
        assert!(re.is_match(b"xx\xde\xad\xbe\xefyy"));
        assert!(matcher("0xdeadbeef", true, false)
            .unwrap()
            .is_match(b"\xde\xad\xbe\xef"));
        assert!(matcher("abc", true, false).is_err());
        let re = matcher("a.b", false, false).unwrap();
        assert!(re.is_match(b"a.b") && !re.is_match(b"axb"));
        let re = matcher("héllo", false, false).unwrap();
        assert!(re.is_match("say héllo".as_bytes()));
        assert!(matcher("a+b", false, true).unwrap().is_match(b"aaab"));
        assert!(matcher("(", false, true).is_err());
        assert!(matcher("", false, false).is_err());
    }

    #[test]
    fn perms_and_spans() {
        assert!(perms_match("rw-p", "rw"));
        assert!(perms_match("rw-p", "rw-p"));
        assert!(!perms_match("r--p", "rw"));
        assert!(perms_match("r-xs", "xs"));
        assert_eq!(parse_span("0x1000-0x2000").unwrap(), (0x1000, 0x2000));
        assert!(parse_span("0x2000-0x1000").is_err());
        assert!(parse_span("0x2000").is_err());
    }
}
