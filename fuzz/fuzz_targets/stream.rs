//! The stream reader on arbitrary bytes, fed a few bytes per read: it must never panic and must
//! report what the slice parser reports (the same image without page data, or the same error
//! kind, record, field and offset), except that it rejects an overlong metadata record as
//! `too-large` where the slice parser, which knows the file's size, says `truncated`.

#![no_main]

use crak_format::{Blob, ErrorKind};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

struct Dribble<'a>(&'a [u8], usize);

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Vary the piece size so that every field boundary is met mid-read somewhere.
        self.1 = self.1 % 13 + 1;
        let n = buf.len().min(self.0.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let slice = crak_format::parse(data);
    let stream = crak_format::read_stream_metadata(Dribble(data, 0));
    match (slice, stream) {
        (Ok(a), Ok(b)) => {
            let mut image = a.image;
            for p in &mut image.processes {
                for r in &mut p.pages {
                    r.data = Blob::default();
                }
            }
            assert_eq!(image, b.image);
            assert_eq!(a.layout, b.layout);
            assert_eq!(a.end, b.end);
        }
        (Err(a), Err(b)) if b.kind() == ErrorKind::TooLarge => {
            assert_eq!(
                (a.kind(), a.field()),
                (ErrorKind::Truncated, Some("length"))
            );
        }
        (Err(a), Err(b)) => assert_eq!(
            (a.kind(), a.record_offset(), a.field(), a.offset()),
            (b.kind(), b.record_offset(), b.field(), b.offset()),
            "slice: {a}\nstream: {b}"
        ),
        (a, b) => panic!("slice {:?} but stream {:?}", a.err(), b.err()),
    }
});
