//! The model as JSON (`crak-dump IMAGE --json`), in crak-format's JSON form
//! (`crak_format::json`).

use crate::source::Source;
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

/// [`model`] with page data of an image whose page runs are read from `src` as they are
/// written: the same bytes as [`model`] of the fully read image, with memory bounded by the
/// metadata. Each page run's data is base64-encoded chunk by chunk (its CRC checked when its
/// data has been read to the end).
pub fn model_streaming(out: &mut dyn Write, src: &Source) -> anyhow::Result<()> {
    let image = src.image();
    let mut value = crak_format::json::to_json(image, true);
    // A placeholder string that the rest of the document does not contain.
    let plain = serde_json::to_string_pretty(&value)?;
    let mut token = String::from("crak-page-data");
    while plain.contains(&token) {
        token.push('~');
    }
    drop(plain);
    let mut runs = Vec::new();
    if let Some(procs) = value
        .get_mut("processes")
        .and_then(serde_json::Value::as_array_mut)
    {
        for (jp, p) in procs.iter_mut().zip(&image.processes) {
            let Some(list) = jp
                .get_mut("pages")
                .and_then(serde_json::Value::as_array_mut)
            else {
                continue;
            };
            for (i, jr) in list.iter_mut().enumerate().take(p.pages.len()) {
                if let Some(obj) = jr.as_object_mut() {
                    obj.insert("data".to_string(), serde_json::Value::from(token.as_str()));
                    runs.push((p, i));
                }
            }
        }
    }
    let text = serde_json::to_string_pretty(&value)?;
    drop(value);
    let quoted = format!("\"{token}\"");
    let mut rest = text.as_str();
    let mut runs = runs.into_iter();
    while let Some((before, after)) = rest.split_once(quoted.as_str()) {
        out.write_all(before.as_bytes())?;
        let Some((p, i)) = runs.next() else {
            anyhow::bail!("internal error: more page-data placeholders than page runs");
        };
        out.write_all(b"\"")?;
        let mut enc = Base64Stream::default();
        src.read(p, i, 0, src.run_len(p, i), &mut |c| enc.write(out, c))?;
        enc.finish(out)?;
        out.write_all(b"\"")?;
        rest = after;
    }
    out.write_all(rest.as_bytes())?;
    writeln!(out)?;
    src.verify()?;
    Ok(())
}

/// Standard base64 with padding written in pieces: the bytes given across calls encode as
/// they would at once.
#[derive(Default)]
struct Base64Stream {
    carry: Vec<u8>,
    text: String,
}

impl Base64Stream {
    fn write(&mut self, out: &mut dyn Write, mut bytes: &[u8]) -> io::Result<()> {
        use base64::Engine as _;
        while !bytes.is_empty() {
            // Complete the carried group first, then whole groups of 3 bytes.
            if !self.carry.is_empty() {
                let need = 3 - self.carry.len();
                let (take, more) = bytes.split_at(need.min(bytes.len()));
                self.carry.extend_from_slice(take);
                bytes = more;
                if self.carry.len() < 3 {
                    return Ok(());
                }
                self.text.clear();
                base64::engine::general_purpose::STANDARD
                    .encode_string(&self.carry, &mut self.text);
                out.write_all(self.text.as_bytes())?;
                self.carry.clear();
                continue;
            }
            let whole = bytes.len() - bytes.len() % 3;
            let (now, later) = bytes.split_at(whole);
            if !now.is_empty() {
                self.text.clear();
                base64::engine::general_purpose::STANDARD.encode_string(now, &mut self.text);
                out.write_all(self.text.as_bytes())?;
            }
            self.carry.extend_from_slice(later);
            bytes = &[];
        }
        Ok(())
    }

    fn finish(mut self, out: &mut dyn Write) -> io::Result<()> {
        use base64::Engine as _;
        if !self.carry.is_empty() {
            self.text.clear();
            base64::engine::general_purpose::STANDARD.encode_string(&self.carry, &mut self.text);
            out.write_all(self.text.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_in_pieces_is_base64_at_once() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for cut in [1usize, 2, 3, 4, 5, 7, 64, 999] {
            let mut out = Vec::new();
            let mut enc = Base64Stream::default();
            for c in data.chunks(cut) {
                enc.write(&mut out, c).unwrap();
            }
            enc.finish(&mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                base64::engine::general_purpose::STANDARD.encode(&data),
                "pieces of {cut}"
            );
        }
    }
}
