//! The model as JSON (`crak-dump IMAGE --json`).

use crak_format::image::Image;
use std::io::{self, Write};

/// Writes `image` as pretty JSON, with page data (base64) only when `pages` is set.
pub fn model(out: &mut dyn Write, image: &Image<'_>, pages: bool) -> io::Result<()> {
    let value = to_json(image, pages);
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}

/// The JSON form of the model.
pub fn to_json(image: &Image<'_>, pages: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(image).unwrap_or(serde_json::Value::Null);
    if !pages {
        if let Some(procs) = v.get_mut("processes").and_then(|p| p.as_array_mut()) {
            for p in procs {
                if let Some(runs) = p.get_mut("pages").and_then(|r| r.as_array_mut()) {
                    for r in runs {
                        if let Some(o) = r.as_object_mut() {
                            o.remove("data");
                        }
                    }
                }
            }
        }
    }
    v
}
