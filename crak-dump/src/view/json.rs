//! The model as JSON (`crak-dump IMAGE --json`), in crak-format's JSON form
//! (`crak_format::json`).

use crak_format::image::Image;
use std::io::{self, Write};

/// Writes `image` as pretty JSON; blobs (page data, XSAVE areas, ...) are base64 when `pages`
/// is set, and only their lengths otherwise.
pub fn model(out: &mut dyn Write, image: &Image<'_>, pages: bool) -> io::Result<()> {
    let value = crak_format::json::to_json(image, pages);
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}
