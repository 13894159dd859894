//! `crak-dump strings IMAGE [-n MIN]`: printable strings in stored memory, like strings(1),
//! with the address and mapping of each.
//!
//! A string is a run of at least MIN printable ASCII characters (space to `~`, and tab) in the
//! stored pages of a VMA; contiguous stored runs are read as one block, as `grep` does, so a
//! string may cross a run boundary but not a VMA boundary. Exit 0 when a string was found,
//! 1 when none.

use crate::cli::StringsArgs;
use crate::cmd::grep::{search_process, Match};
use crate::view::{names, Style};
use crate::{EXIT_NO, EXIT_OK};
use anyhow::{bail, Context as _};
use crak_format::image::Process;
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;
use std::io::{Read as _, Write};

/// Longest MIN accepted.
pub const MAX_MIN: usize = 4096;

/// The matcher for strings of at least `min` characters.
pub fn matcher(min: usize) -> anyhow::Result<Regex> {
    if min == 0 || min > MAX_MIN {
        bail!("-n wants 1 to {MAX_MIN}, got {min}");
    }
    RegexBuilder::new(&format!("(?-u)[\\x20-\\x7e\\t]{{{min},}}"))
        .unicode(false)
        .size_limit(1 << 26)
        .build()
        .context("building the matcher")
}

/// One string found.
#[derive(Debug, Serialize)]
pub struct Found {
    /// Process.
    pub pid: u32,
    /// Address of the first character.
    pub addr: u64,
    /// Index of the VMA.
    pub vma: usize,
    /// Its permissions.
    pub perms: String,
    /// Its path or name.
    pub path: String,
    /// Length in bytes.
    pub len: usize,
    /// The text (its first 4096 bytes).
    pub text: String,
}

impl From<Match> for Found {
    fn from(m: Match) -> Self {
        let raw = crak_format::bytes::from_hex(&m.hex).unwrap_or_default();
        Found {
            pid: m.pid,
            addr: m.addr,
            vma: m.vma,
            perms: m.perms,
            path: m.path,
            len: m.len,
            // Printable ASCII only, so this is exact.
            text: String::from_utf8_lossy(&raw).into_owned(),
        }
    }
}

/// A printable run being read.
#[derive(Default)]
struct Pending {
    pid: u32,
    vma: usize,
    start: u64,
    /// The address after its last byte.
    next: u64,
    len: usize,
    /// Its first 4096 bytes.
    text: Vec<u8>,
}

/// Reads a crak image as a stream and collects its strings; page data passes through in
/// chunks and is never held whole, so memory stays bounded by the metadata and the output.
/// Strings cross adjacent stored runs but not gaps, zero runs or VMA boundaries, as with the
/// in-memory search. Returns the strings and the pids met.
fn stream_strings(
    input: impl std::io::Read,
    min: usize,
    only: Option<u32>,
) -> anyhow::Result<(Vec<Found>, Vec<u32>)> {
    use crak_format::read::{StreamItem, StreamReader};
    use crak_format::record::vma::Vma;
    use crak_format::Record;
    use std::collections::HashMap;
    let mut sr = StreamReader::new(input).context("not a valid crak image")?;
    let mut vmas: HashMap<u32, Vec<(usize, Vma)>> = HashMap::new();
    let mut pids = Vec::new();
    let mut found = Vec::new();
    let mut run = Pending::default();
    let flush =
        |run: &mut Pending, found: &mut Vec<Found>, vmas: &HashMap<u32, Vec<(usize, Vma)>>| {
            if run.len >= min {
                let v = vmas
                    .get(&run.pid)
                    .and_then(|l| l.iter().find(|(i, _)| *i == run.vma))
                    .map(|(_, v)| v);
                found.push(Found {
                    pid: run.pid,
                    addr: run.start,
                    vma: run.vma,
                    perms: v.map(Vma::perms).unwrap_or_default(),
                    path: v.map(|v| names::text(&v.path)).unwrap_or_default(),
                    len: run.len,
                    // Printable ASCII only.
                    text: String::from_utf8_lossy(&run.text).into_owned(),
                });
            }
            run.len = 0;
            run.text.clear();
        };
    let mut buf = vec![0u8; 1 << 20];
    while let Some(item) = sr.next_item().context("not a valid crak image")? {
        let sp = match item {
            StreamItem::Record { record, .. } => {
                match record {
                    Record::Process(p) => pids.push(p.pid),
                    Record::Vma(v) => {
                        let list = vmas.entry(v.pid).or_default();
                        list.push((list.len(), v));
                    }
                    _ => {}
                }
                continue;
            }
            StreamItem::Pages(sp) => sp,
        };
        let pid = sp.header.pid;
        if only.is_some_and(|o| o != pid) {
            continue;
        }
        let mut sorted: Vec<(usize, u64, u64)> = vmas
            .get(&pid)
            .map(|l| l.iter().map(|(i, v)| (*i, v.start, v.end)).collect())
            .unwrap_or_default();
        sorted.sort_unstable_by_key(|x| x.1);
        let mut addr = sp.header.addr;
        loop {
            let n = sr
                .read_page_data(&mut buf)
                .context("not a valid crak image")?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            let chunk_end = addr.saturating_add(n as u64);
            let first = sorted.partition_point(|x| x.2 <= addr);
            for &(vi, vstart, vend) in sorted.get(first..).unwrap_or_default() {
                if vstart >= chunk_end {
                    break;
                }
                let lo = addr.max(vstart);
                let hi = chunk_end.min(vend);
                let (Ok(f), Ok(t)) = (usize::try_from(lo - addr), usize::try_from(hi - addr))
                else {
                    continue;
                };
                let Some(part) = chunk.get(f..t) else {
                    continue;
                };
                if run.len > 0 && (run.pid != pid || run.vma != vi || run.next != lo) {
                    flush(&mut run, &mut found, &vmas);
                }
                for (at, &b) in (lo..).zip(part) {
                    if b == b'\t' || (0x20..0x7f).contains(&b) {
                        if run.len == 0 {
                            run.pid = pid;
                            run.vma = vi;
                            run.start = at;
                        }
                        run.len += 1;
                        if run.text.len() < 4096 {
                            run.text.push(b);
                        }
                    } else if run.len > 0 {
                        flush(&mut run, &mut found, &vmas);
                    }
                }
                run.next = hi;
            }
            addr = chunk_end;
        }
    }
    flush(&mut run, &mut found, &vmas);
    Ok((found, pids))
}

/// Whether the input starts like an ELF file (peeked, not consumed).
fn peek_elf(r: &mut impl std::io::BufRead) -> std::io::Result<bool> {
    Ok(crate::elfcore::is_elf(r.fill_buf()?))
}

/// Runs the command.
pub fn run(args: &StringsArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let re = matcher(args.min)?;
    let name = crate::display_name(&args.image);
    let mut input: Box<dyn std::io::BufRead> = if crate::is_stdin(&args.image) {
        Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let f = std::fs::File::open(&args.image).with_context(|| format!("{name}: cannot read"))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    };
    let found: Vec<Found> =
        if peek_elf(&mut input).with_context(|| format!("{name}: cannot read"))? {
            // An ELF core file: read whole and searched in memory.
            let mut bytes = Vec::new();
            input
                .read_to_end(&mut bytes)
                .with_context(|| format!("{name}: cannot read"))?;
            let src = crate::source::Source::from_input(name.clone(), bytes)?;
            let image = src.image();
            let procs: Vec<&Process<'_>> = match args.pid {
                Some(pid) => vec![image
                    .process(pid)
                    .with_context(|| format!("no process {pid} in the image"))?],
                None => image.processes.iter().collect(),
            };
            let mut found: Vec<Match> = Vec::new();
            for p in procs {
                search_process(
                    &src,
                    p,
                    &re,
                    &|_, _| true,
                    (0, u64::MAX),
                    u64::MAX,
                    &mut found,
                )?;
            }
            found.into_iter().map(Found::from).collect()
        } else {
            let (found, pids) = stream_strings(input, args.min, args.pid)
                .with_context(|| format!("{name}: cannot read the image"))?;
            if let Some(pid) = args.pid.filter(|p| !pids.contains(p)) {
                bail!("no process {pid} in the image");
            }
            found
        };
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            count: usize,
            strings: &'a [Found],
        }
        serde_json::to_writer_pretty(
            &mut *out,
            &Out {
                count: found.len(),
                strings: &found,
            },
        )?;
        writeln!(out)?;
    } else {
        for s in &found {
            let more = if s.len > s.text.len() { "..." } else { "" };
            writeln!(
                out,
                "{} {} #{} {} {}: {}{more}",
                s.pid,
                style.dim(&format!("{:x}", s.addr)),
                s.vma,
                s.perms,
                if s.path.is_empty() { "[anon]" } else { &s.path },
                names::clean(&s.text),
            )?;
        }
    }
    Ok(if found.is_empty() { EXIT_NO } else { EXIT_OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_of_at_least_min() {
        let re = matcher(4).unwrap();
        let hay = b"\x00abc\x00abcd\x01hello world\tx\xffzz";
        let got: Vec<&[u8]> = re.find_iter(hay).map(|m| m.as_bytes()).collect();
        assert_eq!(got, [&b"abcd"[..], &b"hello world\tx"[..]]);
        assert!(matcher(0).is_err());
        assert!(matcher(MAX_MIN + 1).is_err());
        assert!(matcher(MAX_MIN).is_ok());
    }
}
