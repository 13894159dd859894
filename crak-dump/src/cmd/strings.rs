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
use std::io::Write;

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

/// Runs the command.
pub fn run(args: &StringsArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let re = matcher(args.min)?;
    let bytes = super::load(&args.image)?;
    let image = &super::open(&args.image, &bytes)?;
    let procs: Vec<&Process<'_>> = match args.pid {
        Some(pid) => vec![image
            .process(pid)
            .with_context(|| format!("no process {pid} in the image"))?],
        None => image.processes.iter().collect(),
    };
    let mut found: Vec<Match> = Vec::new();
    for p in procs {
        search_process(p, &re, &|_, _| true, (0, u64::MAX), u64::MAX, &mut found);
    }
    let found: Vec<Found> = found.into_iter().map(Found::from).collect();
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
