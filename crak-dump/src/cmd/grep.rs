//! `crak-dump grep IMAGE PATTERN`: search the stored pages of processes for text, hex bytes
//! (`-x`) or a byte regex (`-e`), optionally only in some VMAs or an address range.
//!
//! Only stored pages are searched (zero pages and unrecorded pages hold nothing to find).
//! Contiguous stored runs inside one VMA are searched as one block, so a match may cross a
//! run boundary but not a VMA boundary. Exit 0 with matches, 1 without.

use crate::cli::GrepArgs;
use crate::view::Style;
use crate::{EXIT_NO, EXIT_OK};
use anyhow::{anyhow, bail, Context as _};
use crak_format::image::Process;
use crak_format::record::vma::Vma;
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;
use std::borrow::Cow;
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

/// Searches `p`: the selected VMAs, clipped to `span`, through its stored runs.
pub(crate) fn search_process(
    p: &Process<'_>,
    re: &Regex,
    select: &dyn Fn(usize, &Vma) -> bool,
    span: (u64, u64),
    limit: u64,
    found: &mut Vec<Match>,
) {
    let mut runs: Vec<(u64, &[u8])> = p
        .pages
        .iter()
        .filter(|r| !r.data.is_empty())
        .map(|r| (r.addr, r.data.as_bytes()))
        .collect();
    runs.sort_unstable_by_key(|r| r.0);
    let mut vmas: Vec<(usize, &Vma)> = p
        .vmas
        .iter()
        .enumerate()
        .filter(|(i, v)| select(*i, v))
        .collect();
    vmas.sort_unstable_by_key(|(_, v)| v.start);
    for (vi, v) in vmas {
        let lo = v.start.max(span.0);
        let hi = v.end.min(span.1);
        if lo >= hi {
            continue;
        }
        // Stored runs overlapping [lo, hi), merged into contiguous blocks.
        let first =
            runs.partition_point(|&(addr, data)| addr.saturating_add(data.len() as u64) <= lo);
        let mut blocks: Vec<(u64, Cow<'_, [u8]>)> = Vec::new();
        for &(addr, data) in runs.get(first..).unwrap_or(&[]) {
            if addr >= hi {
                break;
            }
            let end = addr.saturating_add(data.len() as u64);
            let from = lo.max(addr);
            let to = hi.min(end);
            let Some(part) = usize::try_from(from - addr)
                .ok()
                .zip(usize::try_from(to - addr).ok())
                .and_then(|(f, t)| data.get(f..t))
            else {
                continue;
            };
            match blocks.last_mut() {
                Some((start, bytes)) if start.saturating_add(bytes.len() as u64) == from => {
                    bytes.to_mut().extend_from_slice(part);
                }
                _ => blocks.push((from, Cow::Borrowed(part))),
            }
        }
        for (start, bytes) in &blocks {
            for m in re.find_iter(bytes) {
                if m.is_empty() {
                    continue;
                }
                if found.len() as u64 >= limit {
                    return;
                }
                let shown = m.as_bytes().get(..4096).unwrap_or(m.as_bytes());
                found.push(Match {
                    pid: p.pid(),
                    addr: start.saturating_add(m.start() as u64),
                    vma: vi,
                    perms: v.perms(),
                    path: crate::view::names::text(&v.path),
                    len: m.len(),
                    hex: crak_format::bytes::to_hex(shown),
                });
            }
        }
    }
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
    let bytes = match meta {
        Some(_) => Vec::new(),
        None => super::load(&args.image)?,
    };
    let image = &match meta {
        Some(m) => m,
        None => super::open(&args.image, &bytes)?,
    };
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
            search_process(p, &re, &select, span, limit, &mut found);
        }
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
