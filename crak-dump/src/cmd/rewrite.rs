//! `crak-dump rewrite IMAGE --target PROFILE.json|host [--source PROFILE.json|host] -o OUT`:
//! the image made restorable on the target host (spec §6), with
//! [`crak_format::rewrite::rewrite`]. OUT is written (through a temporary file and a rename)
//! only when every difference could be made safe and the result passes the validator; anything
//! else is refused with the reason.

use crate::cli::RewriteArgs;
use crate::EXIT_OK;
use anyhow::{bail, Context as _};
use std::io::Write;

/// Runs the command.
pub fn run(args: &RewriteArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
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
        bail!("{name}: the image is invalid ({first})");
    }
    let target = with_symbols(super::profile::load(&args.target)?, &args.target)?;
    let source = match args.source.as_deref() {
        Some(s) => Some(with_symbols(super::profile::load(s)?, s)?),
        None => None,
    };
    let mut image = parsed.image;
    let done = crak_format::rewrite::rewrite(&mut image, &target, source.as_ref())
        .with_context(|| format!("{name}: cannot rewrite for {}", target.kernel_release))?;
    super::drop_what_this_version_does_not_write(&mut image);
    super::write_valid_image(&image, &args.output, "rewritten", out)?;
    if crate::is_stdin(&args.output) {
        return Ok(EXIT_OK);
    }
    if args.json {
        return super::edit::print_json(out, &args.output, &done);
    }
    if done.is_empty() {
        writeln!(out, "nothing to change for {}", target.kernel_release)?;
    }
    for d in &done {
        writeln!(out, "{d}")?;
    }
    writeln!(out, "wrote {}", args.output.display())?;
    Ok(EXIT_OK)
}

/// The profile with its vDSO's exported functions read from the vDSO bytes it holds (the
/// dynamic symbol table, with each function's length), so that the jump table follows the
/// images themselves rather than a list that may have been edited apart from them.
fn with_symbols(
    mut p: crak_format::rewrite::KernelProfile,
    name: &std::path::Path,
) -> anyhow::Result<crak_format::rewrite::KernelProfile> {
    if let Some(code) = &p.vdso {
        p.vdso_symbols = super::profile::vdso_symbols(code.as_bytes())
            .with_context(|| format!("{}: the profile's vDSO", crate::display_name(name)))?;
    }
    Ok(p)
}
