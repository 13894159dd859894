//! One module per command.

pub mod diff;
pub mod encode;
pub mod grep;
pub mod mem;
pub mod show;
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

/// Parses `bytes` read from `path`, naming the input in the error.
pub(crate) fn parse<'a>(path: &Path, bytes: &'a [u8]) -> anyhow::Result<Parsed<'a>> {
    crak_format::read::parse(bytes)
        .with_context(|| format!("{}: not a valid crak image", crate::display_name(path)))
}
