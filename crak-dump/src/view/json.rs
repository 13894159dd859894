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

/// [`model`] without page data for a model read by the streaming reader, whose page runs hold
/// no data: each `pages[].data` is the length the run's data has in the image,
/// `nr_pages × page_size`, as [`model`] would give for the fully read image.
pub fn model_without_pages(out: &mut dyn Write, image: &Image<'_>) -> io::Result<()> {
    let mut value = crak_format::json::to_json(image, false);
    let page_size = u64::from(image.header.page_size);
    if let Some(procs) = value
        .get_mut("processes")
        .and_then(serde_json::Value::as_array_mut)
    {
        for (jp, p) in procs.iter_mut().zip(&image.processes) {
            let Some(runs) = jp
                .get_mut("pages")
                .and_then(serde_json::Value::as_array_mut)
            else {
                continue;
            };
            for (jr, r) in runs.iter_mut().zip(&p.pages) {
                if let Some(obj) = jr.as_object_mut() {
                    let len = r.nr_pages.saturating_mul(page_size);
                    obj.insert("data".to_string(), serde_json::Value::from(len));
                }
            }
        }
    }
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}
