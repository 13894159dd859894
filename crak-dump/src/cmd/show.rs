//! `crak-dump IMAGE`: the summary tables, or the model as JSON.
//!
//! Neither the summary nor `--json` without `--pages` needs page data, so a crak image in a
//! file is read with the streaming reader, which checks and drops page data as it goes:
//! memory stays bounded by the metadata however large the image. `--json --pages` of a file
//! reads the page data run by run as it writes it ([`crate::source::Source`]); stdin and ELF
//! core files are read whole.

use crate::cli::ShowArgs;
use crate::view::table::{summary, SummaryOptions};
use crate::view::{json, Style};
use crate::EXIT_OK;
use anyhow::Context as _;
use crak_format::image::Image;
use std::io::{Read as _, Write};
use std::path::Path;

/// Reads the metadata of the crak image at `path` without reading its page data; `None` when
/// the input is stdin or not a crak image (an ELF core file, or garbage left for [`super::open`]
/// to name).
fn metadata_only(path: &Path) -> anyhow::Result<Option<(Image<'static>, u64)>> {
    if crate::is_stdin(path) {
        return Ok(None);
    }
    let name = crate::display_name(path);
    let mut file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    let size = file
        .metadata()
        .with_context(|| format!("{name}: cannot read"))?
        .len();
    let mut magic = [0u8; 8];
    let n = file.read(&mut magic).unwrap_or(0);
    if magic.get(..n) != crak_format::MAGIC.get(..n) || n < magic.len() {
        return Ok(None);
    }
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    // Page data is sought over (its CRCs unchecked; END's digest still covers them): a small
    // buffer, since each seek discards it.
    let parsed =
        crak_format::read::read_seekable_metadata(std::io::BufReader::with_capacity(4096, file))
            .with_context(|| format!("{name}: not a valid crak image"))?;
    Ok(Some((parsed.image, size)))
}

/// Runs the command.
pub fn run(args: &ShowArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let Some(path) = &args.image else {
        anyhow::bail!("no image given");
    };
    let opts = SummaryOptions { env: args.env };
    if !args.pages {
        if let Some((image, size)) = metadata_only(path)? {
            if args.json {
                json::model_without_pages(out, &image)?;
            } else {
                summary(out, &image, size, opts, style)?;
            }
            return Ok(EXIT_OK);
        }
    }
    if args.json && args.pages && !crate::is_stdin(path) {
        let src = crate::source::Source::open(path)?;
        json::model_streaming(out, &src)?;
        return Ok(EXIT_OK);
    }
    let bytes = super::load(path)?;
    let image = super::open(path, &bytes)?;
    if args.json {
        json::model(out, &image, args.pages)?;
    } else {
        summary(out, &image, bytes.len() as u64, opts, style)?;
    }
    Ok(EXIT_OK)
}
