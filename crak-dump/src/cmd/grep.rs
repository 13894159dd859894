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
    let bytes = super::load(&args.image)?;
    let image = &super::open(&args.image, &bytes)?;
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
    for p in procs {
        search_process(p, &re, &select, span, limit, &mut found);
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
