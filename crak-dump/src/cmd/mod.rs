//! One module per command.

pub mod backtrace;
pub mod core;
pub mod diff;
pub mod edit;
pub mod encode;
pub mod grep;
pub mod mem;
pub mod profile;
pub mod rewrite;
pub mod show;
pub mod sign;
pub mod strings;
pub mod validate;

use anyhow::Context as _;
use crak_format::read::Parsed;
use std::path::Path;

/// Reads and parses a whole image (stdin for `-`), keeping page data. The bytes are returned
/// with the parse so that the model can borrow from them.
pub(crate) fn load(path: &Path) -> anyhow::Result<Vec<u8>> {
    crate::read_all(path).with_context(|| format!("{}: cannot read", crate::display_name(path)))
}

/// Reads `bytes` from `path` as an image: a crak image, or an ELF core file
/// ([`crate::elfcore`]) for the read-only commands.
pub(crate) fn open<'a>(path: &Path, bytes: &'a [u8]) -> anyhow::Result<crak_format::Image<'a>> {
    if crate::elfcore::is_elf(bytes) {
        return crate::elfcore::image(bytes).with_context(|| {
            format!(
                "{}: cannot read the ELF core file",
                crate::display_name(path)
            )
        });
    }
    Ok(parse(path, bytes)?.image)
}

/// Parses `bytes` read from `path`, naming the input in the error.
pub(crate) fn parse<'a>(path: &Path, bytes: &'a [u8]) -> anyhow::Result<Parsed<'a>> {
    crak_format::read::parse(bytes)
        .with_context(|| format!("{}: not a valid crak image", crate::display_name(path)))
}

/// Drops from an image about to be edited or rewritten what the writer of this version does
/// not carry over into a changed image (spec §5): the signature (AUTH, which no longer matches
/// once anything changed), records of unknown kinds, and record tails and flags of another
/// version. Returns what was dropped, in words.
pub(crate) fn drop_what_this_version_does_not_write(
    image: &mut crak_format::Image<'_>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    if image.auth.take().is_some() {
        dropped.push("signature (AUTH) dropped".to_string());
    }
    if !image.unknown.is_empty() {
        dropped.push(format!(
            "{} records of unknown kinds dropped",
            image.unknown.len()
        ));
        image.unknown.clear();
    }
    image.extras.clear();
    dropped
}

/// Writes an edited or rewritten image to `dest` (`-` = `out`), but only when the validator
/// finds no error in it; `what` names the change in the refusal ("edited", "rewritten").
pub(crate) fn write_valid_image(
    image: &crak_format::Image<'_>,
    dest: &Path,
    what: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let report = crak_format::validate::validate(image, None);
    if !report.is_valid() {
        let list: Vec<String> = report.errors().map(|f| format!("  {f}")).collect();
        anyhow::bail!(
            "the {what} image would be invalid; {} not written:\n{}",
            dest.display(),
            list.join("\n")
        );
    }
    if crate::is_stdin(dest) {
        let bytes = crak_format::write::to_vec(image).context("cannot write the image")?;
        out.write_all(&bytes)?;
        return Ok(());
    }
    write_atomically(dest, &mut |file| {
        crak_format::write::write_image(image, file)
            .with_context(|| format!("{}: cannot write the image", dest.display()))
    })
}

/// Creates `dest` through a temporary file in the same directory: `write` fills it, then it is
/// synced and renamed over `dest`. On any error the temporary file is removed and `dest` is
/// untouched.
pub(crate) fn write_atomically(
    dest: &Path,
    write: &mut dyn FnMut(&std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = dest
        .file_name()
        .with_context(|| format!("{}: not a file name", dest.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        write(&file)?;
        file.sync_all()
            .with_context(|| format!("{}: cannot sync", tmp.display()))?;
        std::fs::rename(&tmp, dest)
            .with_context(|| format!("{}: cannot rename into place", dest.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
