//! `crak-dump encode JSON -o IMAGE`: the JSON model (`crak-dump IMAGE --json --pages`, edited or
//! not) written back as an image with crak-format's writer.
//!
//! The model keeps records of unknown kinds, payload fields of a later minor version, record
//! flags and the AUTH record (`unknown`, `extras`, `auth`), so the JSON of an image encodes
//! back to the same bytes when it is not edited. The writer checks the model against the
//! spec's bounds as it writes, so an edit that breaks the format is refused. The output is written to a temporary file next to IMAGE and renamed
//! over it only once complete, so IMAGE is never left half-written (`-o -` writes stdout).

use crate::cli::EncodeArgs;
use crate::EXIT_OK;
use anyhow::{bail, Context as _};
use std::io::Write;
use std::path::Path;

/// Reads the full JSON form and builds the image, naming the input in errors.
pub fn decode_json(path: &Path, text: &[u8]) -> anyhow::Result<crak_format::Image<'static>> {
    let name = crate::display_name(path);
    let text = std::str::from_utf8(text).with_context(|| format!("{name}: not UTF-8 text"))?;
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{name}: not JSON"))?;
    let elided = value
        .get("processes")
        .and_then(|p| p.as_array())
        .is_some_and(|ps| {
            ps.iter().any(|p| {
                p.get("pages").and_then(|r| r.as_array()).is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r.get("data").is_some_and(|d| d.is_number()))
                })
            })
        });
    if elided {
        bail!("{name}: page data is elided (lengths only); use the output of `--json --pages`");
    }
    // From the text, not the `Value`: a `Value` keeps the last of duplicate keys, and a model
    // with a key given twice is refused rather than silently half-applied.
    crak_format::json::from_json(text).with_context(|| format!("{name}: not a crak image model"))
}

/// Runs the command.
pub fn run(args: &EncodeArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let text = crate::read_all(&args.json)
        .with_context(|| format!("{}: cannot read", crate::display_name(&args.json)))?;
    let image = decode_json(&args.json, &text)?;
    if crate::is_stdin(&args.output) {
        let bytes = crak_format::write::to_vec(&image).context("cannot write the image")?;
        out.write_all(&bytes)?;
    } else {
        super::write_atomically(&args.output, &mut |file| {
            crak_format::write::write_image(&image, file)
                .with_context(|| format!("{}: cannot write the image", args.output.display()))
        })?;
    }
    Ok(EXIT_OK)
}
