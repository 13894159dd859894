//! `crak-dump edit IMAGE -o OUT --poke ... --set-reg ...`: edits of an image, written to a new
//! image only when the result passes the validator.
//!
//! The operations come from [`crak_format::edit`]. They are applied in a fixed order whatever
//! the order on the command line: `--map-path` (then `--refresh`), `--set-cwd`, `--drop-fd`,
//! `--set-reg`, `--poke`, `--poke-str`, `--set-env`, and `--set-pid` last, so that `--pid` and
//! the tids of `--set-reg` always name the process as the input image has it. Any refused
//! operation, or a result the validator finds an error in, stops the command before OUT is
//! created; OUT is written through a temporary file and a rename.

use crate::cli::EditArgs;
use crate::EXIT_OK;
use anyhow::{anyhow, bail, Context as _};
use crak_format::edit::{self, FileStat};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `ADDR` as hex with `0x` or decimal.
pub fn parse_u64(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    };
    r.map_err(|_| anyhow!("{s:?} is not a number (hex with 0x, or decimal)"))
}

/// A register value: hex with `0x`, decimal, or a negative decimal (two's complement).
fn parse_value(s: &str) -> anyhow::Result<u64> {
    match s.trim().strip_prefix('-') {
        Some(neg) => neg
            .parse::<i64>()
            .map(|v| v.wrapping_neg() as u64)
            .map_err(|_| anyhow!("{s:?} is not a number")),
        None => parse_u64(s),
    }
}

fn split_eq<'a>(what: &str, arg: &'a OsStr) -> anyhow::Result<(&'a [u8], &'a [u8])> {
    let b = arg.as_bytes();
    let i = b
        .iter()
        .position(|&c| c == b'=')
        .ok_or_else(|| anyhow!("{what} {}: expected ...=...", arg.to_string_lossy()))?;
    Ok((&b[..i], &b[i + 1..]))
}

fn text(b: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(b).map_err(|_| anyhow!("{:?} is not UTF-8", String::from_utf8_lossy(b)))
}

/// `stat(2)` of a path as the image records files.
pub fn file_stat(path: &[u8]) -> Result<FileStat, String> {
    let md = std::fs::metadata(Path::new(OsStr::from_bytes(path))).map_err(|e| e.to_string())?;
    Ok(FileStat::from(&md))
}

/// Applies the operations of `args` to `image`; returns one line per operation done.
pub fn apply(args: &EditArgs, image: &mut crak_format::Image<'_>) -> anyhow::Result<Vec<String>> {
    let pid = args.pid;
    let mut done = Vec::new();
    for m in &args.map_path {
        let (old, new) = split_eq("--map-path", m)?;
        let mut stat = |p: &[u8]| file_stat(p);
        let n = edit::map_path(
            image,
            old,
            new,
            if args.refresh { Some(&mut stat) } else { None },
        )
        .with_context(|| format!("--map-path {}", m.to_string_lossy()))?;
        done.push(format!(
            "map-path {} -> {}: {n} path{}{}",
            String::from_utf8_lossy(old),
            String::from_utf8_lossy(new),
            if n == 1 { "" } else { "s" },
            if args.refresh { ", refreshed" } else { "" }
        ));
    }
    if let Some(dir) = &args.set_cwd {
        edit::set_cwd(image, pid, dir.as_bytes()).context("--set-cwd")?;
        done.push(format!("set-cwd {}", dir.to_string_lossy()));
    }
    if !args.drop_fd.is_empty() {
        let null = file_stat(b"/dev/null").map_err(|e| anyhow!("/dev/null: {e}"))?;
        for &fd in &args.drop_fd {
            edit::drop_fd(image, pid, fd, null).with_context(|| format!("--drop-fd {fd}"))?;
            done.push(format!("drop-fd {fd}: now /dev/null"));
        }
    }
    for r in &args.set_reg {
        let (lhs, value) = split_eq("--set-reg", r)?;
        let lhs = text(lhs)?;
        let (tid, reg) = match lhs.split_once(':') {
            Some((t, reg)) => (
                Some(
                    t.parse::<u32>()
                        .map_err(|_| anyhow!("--set-reg {lhs}: {t:?} is not a tid"))?,
                ),
                reg,
            ),
            None => (None, lhs),
        };
        let v = parse_value(text(value)?).with_context(|| format!("--set-reg {lhs}"))?;
        edit::set_reg(image, pid, tid, reg, v).with_context(|| format!("--set-reg {lhs}"))?;
        done.push(format!("set-reg {lhs} = {v:#x}"));
    }
    let mut pokes: Vec<(u64, Vec<u8>, &str)> = Vec::new();
    for p in &args.poke {
        let (addr, hex) = split_eq("--poke", p)?;
        let addr = parse_u64(text(addr)?)?;
        let hex: String = text(hex)?
            .trim_start_matches("0x")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = crak_format::bytes::from_hex(&hex)
            .ok_or_else(|| anyhow!("--poke {}: not hex bytes", p.to_string_lossy()))?;
        pokes.push((addr, bytes, "poke"));
    }
    for p in &args.poke_str {
        let (addr, s) = split_eq("--poke-str", p)?;
        pokes.push((parse_u64(text(addr)?)?, s.to_vec(), "poke-str"));
    }
    for (addr, bytes, what) in pokes {
        if bytes.is_empty() {
            bail!("--{what} {addr:#x}: nothing to write");
        }
        let n =
            edit::poke(image, pid, addr, &bytes).with_context(|| format!("--{what} {addr:#x}"))?;
        done.push(format!(
            "{what} {} byte{} at {addr:#x}: {n} page{} changed",
            bytes.len(),
            if bytes.len() == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" }
        ));
    }
    for e in &args.set_env {
        let (k, v) = split_eq("--set-env", e)?;
        edit::set_env(image, pid, k, v)
            .with_context(|| format!("--set-env {}", e.to_string_lossy()))?;
        done.push(format!("set-env {}", e.to_string_lossy()));
    }
    if let Some(new) = args.set_pid {
        let old = edit::select(image, pid)?.pid();
        edit::set_pid(image, pid, new).with_context(|| format!("--set-pid {new}"))?;
        done.push(format!("set-pid {old} -> {new}"));
    }
    Ok(done)
}

/// `{"output": PATH, "changes": [...]}` and a newline.
pub(crate) fn print_json(
    out: &mut dyn Write,
    output: &Path,
    changes: &[String],
) -> anyhow::Result<i32> {
    let v = serde_json::json!({
        "output": output.display().to_string(),
        "changes": changes,
    });
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(EXIT_OK)
}

/// Runs the command.
pub fn run(args: &EditArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let bytes = super::load(&args.image)?;
    let parsed = super::parse(&args.image, &bytes)?;
    let name = crate::display_name(&args.image);
    let before = crak_format::validate::validate(&parsed.image, Some(&parsed.layout));
    if !before.is_valid() {
        let first = before
            .errors()
            .next()
            .map(|f| f.to_string())
            .unwrap_or_default();
        bail!(
            "{name}: the image is invalid ({} errors; first: {first}); nothing to edit",
            before.errors
        );
    }
    let mut image = parsed.image;
    let mut done = apply(args, &mut image)?;
    if done.is_empty() {
        bail!("no edit given (see crak-dump edit --help)");
    }
    // This writer writes the fields of its own version only (spec §5).
    let current = crak_format::CURRENT_VERSION;
    if image.version != current {
        done.push(format!(
            "version {}.{} -> {}.{}",
            image.version.major, image.version.minor, current.major, current.minor
        ));
        image.version = current;
    }
    done.extend(super::drop_what_this_version_does_not_write(&mut image));
    super::write_valid_image(&image, &args.output, "edited", out)?;
    if crate::is_stdin(&args.output) {
        return Ok(EXIT_OK);
    }
    if args.json {
        return print_json(out, &args.output, &done);
    }
    for d in &done {
        writeln!(out, "{d}")?;
    }
    writeln!(out, "wrote {}", args.output.display())?;
    Ok(EXIT_OK)
}
