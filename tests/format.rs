//! Integration tests of the crak-format codec: write/parse and JSON round trips, every kind of
//! damage an image can suffer (truncation, bit flips, huge lengths, unknown records, broken
//! ordering and END), and agreement between the slice parser and the stream reader.

use crak_format::read::{self, StreamItem, StreamReader};
use crak_format::record::header::{Header, ARCH_X86_64};
use crak_format::record::kind;
use crak_format::record::note::Note;
use crak_format::record::pages::PageRun;
use crak_format::record::process::ProcessRecord;
use crak_format::record::thread::{Thread, ThreadExt};
use crak_format::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_READ};
use crak_format::record::Record;
use crak_format::{
    from_json, parse, read_stream_metadata, to_json, to_vec, Blob, ErrorKind, Image, Parsed,
    Process, Writer, CURRENT_VERSION, FLAG_CRITICAL,
};
use proptest::prelude::*;

const PS: u32 = 4096;

fn header() -> Header {
    Header {
        arch: ARCH_X86_64,
        page_size: PS,
        capture_time_ns: 1_700_000_000_000_000_000,
        xsave_features: 0x7,
        xsave_size: 832,
        kernel_release: "6.18.0".into(),
        hostname: "host".into(),
        tool_version: "crak 0.1.0".into(),
        special_mappings: vec![],
    }
}

fn vma(pid: u32, start: u64, end: u64) -> Vma {
    Vma {
        pid,
        kind: VmaKind::Anon,
        start,
        end,
        prot: PROT_READ,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
        path: "".into(),
    }
}

/// A small valid image: one process with a thread, two VMAs, one page, a note.
fn small_image() -> Image<'static> {
    let mut img = Image::new(header());
    let mut p = Process::new(ProcessRecord {
        pid: 100,
        ppid: 1,
        comm: "sleep".into(),
        tids: vec![100],
        ..ProcessRecord::default()
    });
    p.threads.push(Thread {
        pid: 100,
        tid: 100,
        ..Thread::default()
    });
    p.vmas.push(vma(100, 0x1000, 0x3000));
    p.vmas.push(vma(100, 0x5000, 0x6000));
    let mut data = vec![0u8; PS as usize];
    data[0] = 0x5a;
    data[4095] = 0xa5;
    p.pages.push(PageRun {
        pid: 100,
        addr: 0x1000,
        nr_pages: 1,
        data: data.into(),
    });
    img.processes.push(p);
    img.notes.push(Note {
        key: "cmd".into(),
        value: "crak-capture 100".into(),
    });
    img
}

/// The image with every page run's data emptied, as `read_stream_metadata` gives it.
fn without_page_data(mut img: Image<'_>) -> Image<'_> {
    for p in &mut img.processes {
        for r in &mut p.pages {
            r.data = Blob::default();
        }
    }
    img
}

/// Stream-reads `bytes` through a reader that returns at most 7 bytes per call.
fn stream_metadata(bytes: &[u8]) -> Result<Parsed<'static>, crak_format::Error> {
    read_stream_metadata(Dribble(bytes))
}

/// A reader that hands out data in small, odd-sized pieces, like a pipe.
struct Dribble<'a>(&'a [u8]);

impl std::io::Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(7);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn assert_same_reading(bytes: &[u8]) {
    let slice = parse(bytes);
    let stream = stream_metadata(bytes);
    match (slice, stream) {
        (Ok(a), Ok(b)) => {
            assert_eq!(without_page_data(a.image), b.image);
            assert_eq!(a.layout, b.layout);
            assert_eq!(a.end, b.end);
        }
        (Err(a), Err(b)) => {
            assert_eq!(
                (a.kind(), a.record_offset(), a.field(), a.offset()),
                (b.kind(), b.record_offset(), b.field(), b.offset()),
                "slice: {a}\nstream: {b}"
            );
        }
        (a, b) => panic!("slice and stream disagree: {:?} vs {:?}", a.err(), b.err()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn image_write_parse_is_identity(img in crak_format::arbitrary::image()) {
        let bytes = to_vec(&img).unwrap();
        let parsed = parse(&bytes).unwrap();
        prop_assert_eq!(&parsed.image, &img);
        // Every record is in the layout, in file order, contiguous.
        let mut at = crak_format::FILE_HEADER_LEN as u64;
        for span in &parsed.layout.records {
            prop_assert_eq!(span.offset, at);
            at = span.end_offset();
        }
        prop_assert_eq!(at, bytes.len() as u64);
        // Layout::find points at the record each list entry came from.
        for p in &img.processes {
            for (i, v) in p.vmas.iter().enumerate() {
                let span = parsed.layout.find(kind::VMA, Some(p.pid()), i).unwrap();
                let raw = &bytes[span.payload_offset() as usize..][..span.length as usize];
                prop_assert_eq!(&crak_format::record::vma::parse(raw).unwrap(), v);
            }
        }
    }

    #[test]
    fn image_json_is_identity(img in crak_format::arbitrary::image()) {
        let text = serde_json::to_string(&to_json(&img, true)).unwrap();
        prop_assert_eq!(from_json(&text).unwrap(), img);
    }

    #[test]
    fn stream_reader_agrees_with_slice_parser(img in crak_format::arbitrary::image()) {
        let bytes = to_vec(&img).unwrap();
        assert_same_reading(&bytes);
    }
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = to_vec(&small_image()).unwrap();
    assert!(parse(&bytes).is_ok());
    for n in 0..bytes.len() {
        let e = parse(&bytes[..n]).unwrap_err();
        // Every prefix of a valid image starts like the magic, so it is cut short, not foreign.
        assert_eq!(e.kind(), ErrorKind::Truncated, "cut at {n}: {e}");
        let s = stream_metadata(&bytes[..n]).unwrap_err();
        assert_eq!(
            (s.kind(), s.record_offset(), s.field(), s.offset()),
            (e.kind(), e.record_offset(), e.field(), e.offset()),
            "cut at {n}: slice {e}, stream {s}"
        );
    }
}

#[test]
fn every_bit_flip_is_detected() {
    let bytes = to_vec(&small_image()).unwrap();
    let mut damaged = bytes.clone();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            damaged[i] ^= 1 << bit;
            let e = parse(&damaged);
            assert!(e.is_err(), "flip of bit {bit} at {i:#x} undetected");
            let s = stream_metadata(&damaged);
            assert!(s.is_err(), "stream: flip at {i:#x}");
            let (e, s) = (e.unwrap_err(), s.unwrap_err());
            // The stream reader reports what the slice parser does, except that it cannot know
            // a metadata record's length runs past the end and rejects it as too large (§2.2).
            if s.kind() != ErrorKind::TooLarge {
                assert_eq!(
                    (e.kind(), e.record_offset(), e.field(), e.offset()),
                    (s.kind(), s.record_offset(), s.field(), s.offset()),
                    "flip of bit {bit} at {i:#x}: slice {e}, stream {s}"
                );
            } else {
                assert_eq!(
                    (e.kind(), e.field()),
                    (ErrorKind::Truncated, Some("length"))
                );
            }
            damaged[i] ^= 1 << bit;
        }
    }
}

#[test]
fn huge_lengths_are_rejected_without_allocating() {
    // A HEADER, then one record of each kind whose length is absurd. Had any reader tried to
    // allocate it, the process would abort instead of returning an error.
    for len in [1u64 << 63, u64::MAX, u64::MAX - 3, 1 << 40] {
        for k in [
            kind::NOTE,
            kind::PROCESS,
            kind::PAGES,
            kind::FD,
            kind::PIPE_DATA,
            0x8001,
        ] {
            let mut w = Writer::new(Vec::new(), CURRENT_VERSION, 0).unwrap();
            w.write_record(&Record::Header(header())).unwrap();
            let mut bytes = w.get_ref().clone();
            let at = bytes.len() as u64;
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&FLAG_CRITICAL.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&[0xaa; 64]);
            let e = parse(&bytes).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
            assert_eq!((e.field(), e.offset()), (Some("length"), Some(at + 8)));
            let s = stream_metadata(&bytes).unwrap_err();
            if kind::is_metadata(k) {
                assert_eq!(s.kind(), ErrorKind::TooLarge, "{s}");
            } else {
                assert!(
                    matches!(s.kind(), ErrorKind::Truncated | ErrorKind::BadValue),
                    "{s}"
                );
            }
        }
    }
}

/// An image built record by record: HEADER, PROCESS 100, then `middle`, then END.
fn with_records(middle: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
    let img = small_image();
    let mut w = Writer::new(Vec::new(), CURRENT_VERSION, 0).unwrap();
    w.write_record(&Record::Header(img.header.clone())).unwrap();
    w.write_record(&Record::Process(img.processes[0].process.clone()))
        .unwrap();
    for (k, flags, payload) in middle {
        w.write_raw_record(*k, *flags, payload).unwrap();
    }
    w.finish().unwrap()
}

fn payload(rec: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    rec.encode(&mut out);
    out
}

#[test]
fn unknown_non_critical_record_is_skipped() {
    let plain = with_records(&[]);
    let with_unknown = with_records(&[(0x8001, 0, b"future data".to_vec())]);
    let a = parse(&plain).unwrap();
    let b = parse(&with_unknown).unwrap();
    // Skipped as far as meaning goes: the model is the same but for the record kept, with
    // its place (after HEADER and PROCESS), so that writing the model gives the bytes back.
    let mut kept = b.image.clone();
    let unknown = std::mem::take(&mut kept.unknown);
    assert_eq!(a.image, kept);
    assert_eq!(unknown.len(), 1);
    assert_eq!(
        (unknown[0].after, unknown[0].kind, unknown[0].flags),
        (2, 0x8001, 0)
    );
    assert_eq!(unknown[0].payload.as_bytes(), b"future data");
    assert!(to_vec(&b.image).unwrap() == with_unknown);
    let span = b.layout.find(0x8001, None, 0).unwrap();
    assert_eq!(span.length, 11);
    assert_eq!(span.name(), None);
    assert_same_reading(&with_unknown);
}

#[test]
fn unknown_critical_record_is_rejected() {
    let bytes = with_records(&[(0x8001, FLAG_CRITICAL, b"future data".to_vec())]);
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownCriticalRecord);
    assert_eq!(e.kind_str(), "unknown-critical-record");
    let at = e.record_offset().unwrap();
    assert_eq!((e.field(), e.offset()), (Some("flags"), Some(at + 2)));
    assert_eq!(e.record_name(), None);
    assert_same_reading(&bytes);
}

#[test]
fn known_record_without_critical_bit_is_accepted() {
    let t = Record::Thread(Thread {
        pid: 100,
        tid: 100,
        ..Thread::default()
    });
    let bytes = with_records(&[(kind::THREAD, 0, payload(&t))]);
    let p = parse(&bytes).unwrap();
    assert_eq!(p.image.processes[0].threads.len(), 1);
}

#[test]
fn payload_bytes_past_known_fields_are_ignored() {
    let t = Thread {
        pid: 100,
        tid: 100,
        clear_child_tid: 0x1234,
        ext: Some(ThreadExt {
            robust_list: 0x5678,
            robust_list_len: 24,
            name: "w".into(),
        }),
        ..Thread::default()
    };
    let mut extended = payload(&Record::Thread(t.clone()));
    extended.extend_from_slice(&[0xee; 24]);
    let bytes = with_records(&[(kind::THREAD, FLAG_CRITICAL, extended)]);
    let p = parse(&bytes).unwrap();
    assert_eq!(p.image.processes[0].threads, vec![t]);
    assert_same_reading(&bytes);
}

/// A THREAD of 1.1 (no 1.2 fields) with bytes after it cannot be written: they would read as
/// the 1.2 fields.
#[test]
fn writer_refuses_a_tail_that_would_read_as_fields() {
    use crak_format::image::RecordExtra;
    let mut img = small_image();
    img.processes[0].threads[0].ext = None;
    let pid = img.processes[0].pid();
    img.extras.push(RecordExtra {
        kind: kind::THREAD,
        pid: Some(pid),
        index: 0,
        flags: kind::default_flags(kind::THREAD),
        extra: Blob::from(vec![0xee; 24]),
    });
    let e = to_vec(&img).unwrap_err().to_string();
    assert!(e.contains("would read as fields"), "{e}");
}

fn assert_error(
    bytes: &[u8],
    kind: ErrorKind,
    record: Option<&str>,
    field: Option<&str>,
    payload_off: Option<u64>,
) {
    let e = parse(bytes).unwrap_err();
    assert_eq!(e.kind(), kind, "{e}");
    assert_eq!(e.record_name(), record, "{e}");
    assert_eq!(e.field(), field, "{e}");
    if let (Some(off), Some(rec)) = (payload_off, e.record_offset()) {
        assert_eq!(e.offset(), Some(rec + 16 + off), "{e}");
    }
    assert_same_reading(bytes);
}

#[test]
fn ordering_rules_are_enforced() {
    let creds = payload(&Record::Creds(crak_format::record::creds::Creds {
        pid: 100,
        ..Default::default()
    }));
    assert_error(
        &with_records(&[(kind::CREDS, 1, creds.clone()), (kind::CREDS, 1, creds)]),
        ErrorKind::Duplicate,
        Some("CREDS"),
        Some("pid"),
        Some(0),
    );
    let orphan = payload(&Record::Vma(vma(7, 0x1000, 0x2000)));
    assert_error(
        &with_records(&[(kind::VMA, 1, orphan)]),
        ErrorKind::OrphanRecord,
        Some("VMA"),
        Some("pid"),
        Some(0),
    );
    let hi = payload(&Record::Vma(vma(100, 0x5000, 0x6000)));
    let lo = payload(&Record::Vma(vma(100, 0x1000, 0x2000)));
    assert_error(
        &with_records(&[(kind::VMA, 1, hi.clone()), (kind::VMA, 1, lo)]),
        ErrorKind::BadValue,
        Some("VMA"),
        Some("start"),
        Some(8),
    );
    assert_error(
        &with_records(&[(kind::VMA, 1, hi.clone()), (kind::VMA, 1, hi)]),
        ErrorKind::BadValue,
        Some("VMA"),
        Some("start"),
        Some(8),
    );
    let t = payload(&Record::Thread(Thread {
        pid: 100,
        tid: 101,
        ..Thread::default()
    }));
    assert_error(
        &with_records(&[(kind::THREAD, 1, t.clone()), (kind::THREAD, 1, t)]),
        ErrorKind::Duplicate,
        Some("THREAD"),
        Some("tid"),
        Some(4),
    );
    let proc_again = payload(&Record::Process(small_image().processes[0].process.clone()));
    assert_error(
        &with_records(&[(kind::PROCESS, 1, proc_again)]),
        ErrorKind::Duplicate,
        Some("PROCESS"),
        Some("pid"),
        Some(0),
    );
    let hdr = payload(&Record::Header(header()));
    let bytes = with_records(&[(kind::HEADER, 1, hdr)]);
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Duplicate);
    assert_eq!(e.offset(), e.record_offset());
}

#[test]
fn first_record_must_be_header() {
    let mut w = Writer::new(Vec::new(), CURRENT_VERSION, 0).unwrap();
    let p = small_image().processes[0].process.clone();
    let at = w.write_record(&Record::Process(p)).unwrap();
    let bytes = w.finish().unwrap();
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OrphanRecord);
    assert_eq!(
        (e.record_name(), e.field(), e.offset()),
        (Some("PROCESS"), Some("kind"), Some(at))
    );
    assert_same_reading(&bytes);
    // An image of nothing but END.
    let bytes = Writer::new(Vec::new(), CURRENT_VERSION, 0)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::OrphanRecord);
}

#[test]
fn end_counts_and_digest_are_checked() {
    let img = small_image();
    let mut w = Writer::new(Vec::new(), CURRENT_VERSION, 0).unwrap();
    w.write_record(&Record::Header(img.header.clone())).unwrap();
    let good = w.end();
    let build = |end: crak_format::record::end::End| {
        let mut w = Writer::new(Vec::new(), CURRENT_VERSION, 0).unwrap();
        w.write_record(&Record::Header(img.header.clone())).unwrap();
        w.finish_with_end(&end).unwrap()
    };
    assert!(parse(&build(good.clone())).is_ok());
    let cases = [
        (
            crak_format::record::end::End {
                record_count: 2,
                ..good.clone()
            },
            ErrorKind::BadEnd,
            "record_count",
            0,
        ),
        (
            crak_format::record::end::End {
                byte_count: 0,
                ..good.clone()
            },
            ErrorKind::BadEnd,
            "byte_count",
            8,
        ),
        (
            crak_format::record::end::End {
                page_count: 1,
                ..good.clone()
            },
            ErrorKind::BadEnd,
            "page_count",
            16,
        ),
        (
            crak_format::record::end::End {
                digest: good.digest ^ 1,
                ..good.clone()
            },
            ErrorKind::BadDigest,
            "digest",
            24,
        ),
    ];
    for (end, kind, field, off) in cases {
        assert_error(&build(end), kind, Some("END"), Some(field), Some(off));
    }
}

#[test]
fn trailing_data_and_missing_end() {
    let mut bytes = to_vec(&small_image()).unwrap();
    let len = bytes.len() as u64;
    bytes.push(0);
    let e = parse(&bytes).unwrap_err();
    assert_eq!(
        (e.kind(), e.offset(), e.record_name()),
        (ErrorKind::TrailingData, Some(len), None)
    );
    assert_same_reading(&bytes);
    // Drop END (the last 52 bytes): the image ends between records.
    bytes.truncate(bytes.len() - 1 - 52);
    let e = parse(&bytes).unwrap_err();
    assert_eq!(
        (e.kind(), e.offset(), e.field()),
        (ErrorKind::Truncated, Some(len - 52), None)
    );
}

#[test]
fn file_header_errors() {
    let bytes = to_vec(&small_image()).unwrap();
    let mut b = bytes.clone();
    b[1] = b'X';
    assert_eq!(parse(&b).unwrap_err().kind_str(), "bad-magic");
    let mut b = bytes.clone();
    b[8] = 2;
    let e = parse(&b).unwrap_err();
    assert_eq!((e.kind_str(), e.offset()), ("unsupported-version", Some(8)));
    let mut b = bytes.clone();
    b[12] = 1;
    let e = parse(&b).unwrap_err();
    assert_eq!((e.kind_str(), e.offset()), ("unknown-flag", Some(12)));
    // Unknown advisory flags and a higher minor version are accepted as such, though here the
    // digest, which covers the file header, no longer matches.
    let mut b = bytes.clone();
    b[14] = 1;
    assert_eq!(parse(&b).unwrap_err().kind(), ErrorKind::BadDigest);
    let mut img = small_image();
    img.version.minor = 7;
    img.flags = 1 << 16;
    let bytes = to_vec(&img).unwrap();
    let p = parse(&bytes).unwrap();
    assert_eq!((p.image.version.minor, p.image.flags), (7, 1 << 16));
}

#[test]
fn bad_crc_names_the_record_and_crc_offset() {
    let bytes = to_vec(&small_image()).unwrap();
    let parsed = parse(&bytes).unwrap();
    let span = *parsed.layout.find(kind::THREAD, Some(100), 0).unwrap();
    let mut b = bytes.clone();
    b[span.field_offset(100) as usize] ^= 0x10;
    let e = parse(&b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadCrc);
    assert_eq!(e.record_name(), Some("THREAD"));
    assert_eq!(e.offset(), Some(span.field_offset(span.length)));
    assert!(e.to_string().starts_with(&format!(
        "THREAD record at offset {:#x}: field crc at offset",
        span.offset
    )));
}

#[test]
fn deferred_page_crcs_are_checked_by_the_caller() {
    let bytes = to_vec(&small_image()).unwrap();
    let (parsed, unchecked) = read::parse_deferring_page_crcs(&bytes).unwrap();
    assert_eq!(parsed.image, parse(&bytes).unwrap().image);
    let pages: Vec<_> = parsed
        .layout
        .records
        .iter()
        .filter(|s| s.kind == kind::PAGES)
        .collect();
    assert_eq!(pages.len(), unchecked.len());
    let read_at = |data: &[u8]| {
        let data = data.to_vec();
        move |at: u64, buf: &mut [u8]| {
            let at = at as usize;
            buf.copy_from_slice(&data[at..at + buf.len()]);
            Ok(())
        }
    };
    let mut buf = vec![0u8; 1000]; // not a divisor of the payload: partial last read
    for (span, u) in pages.iter().zip(&unchecked) {
        assert_eq!((u.offset, u.length), (span.offset, span.length));
        u.check_at(&mut buf, read_at(&bytes)).unwrap();
    }
    // A flipped page byte: parse refuses the image, the deferring parse does not, and the
    // caller's check fails exactly as parse did.
    let span = pages[0];
    let mut b = bytes.clone();
    b[span.field_offset(span.length - 1) as usize] ^= 1;
    let whole = parse(&b).unwrap_err();
    assert_eq!(whole.kind(), ErrorKind::BadCrc);
    let (_, unchecked) = read::parse_deferring_page_crcs(&b).unwrap();
    let late = unchecked[0].check_at(&mut buf, read_at(&b)).unwrap_err();
    assert_eq!(late.to_string(), whole.to_string());
    // Other records' CRCs are still checked.
    let thread = *parsed.layout.find(kind::THREAD, Some(100), 0).unwrap();
    let mut b = bytes.clone();
    b[thread.field_offset(8) as usize] ^= 1;
    let e = read::parse_deferring_page_crcs(&b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadCrc);
    assert_eq!(e.record_name(), Some("THREAD"));
}

#[test]
fn page_data_is_aligned_and_borrowed() {
    let bytes = to_vec(&small_image()).unwrap();
    let parsed = parse(&bytes).unwrap();
    let data = parsed.image.processes[0].pages[0].data.as_bytes();
    let at = data.as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(at % PS as usize, 0);
    assert_eq!(&bytes[at..at + PS as usize], data);
}

#[test]
fn stream_reader_hands_out_page_data_in_chunks() {
    let mut img = small_image();
    let mut data = vec![0u8; 3 * PS as usize];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    img.processes[0].pages[0] = PageRun {
        pid: 100,
        addr: 0x1000,
        nr_pages: 3,
        data: data.clone().into(),
    };
    let bytes = to_vec(&img).unwrap();
    let mut r = StreamReader::new(Dribble(&bytes)).unwrap();
    let mut got = Vec::new();
    let mut saw_end = false;
    while let Some(item) = r.next_item().unwrap() {
        match item {
            StreamItem::Pages(p) => {
                assert_eq!(p.data_offset % u64::from(PS), 0);
                assert_eq!(p.data_len, 3 * u64::from(PS));
                let mut buf = [0u8; 1000];
                loop {
                    let n = r.read_page_data(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            StreamItem::Record { record, .. } => saw_end |= matches!(record, Record::End(_)),
        }
    }
    assert!(saw_end);
    assert_eq!(got, data);

    // A damaged page is reported when its record's data ends.
    let parsed = parse(&bytes).unwrap();
    let span = parsed.layout.find(kind::PAGES, Some(100), 0).unwrap();
    let mut bad = bytes.clone();
    bad[span.end_offset() as usize - 100] ^= 1;
    let mut r = StreamReader::new(&bad[..]).unwrap();
    let err = loop {
        match r.next_item() {
            Ok(Some(StreamItem::Pages(_))) => {
                let mut buf = vec![0u8; 1 << 20];
                match r.read_page_data(&mut buf) {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("damage not detected"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::BadCrc);
    assert_eq!(err.record_name(), Some("PAGES"));
}

#[test]
fn record_iterator_lists_every_record() {
    let bytes = to_vec(&small_image()).unwrap();
    let (fh, records) = read::Records::new(&bytes).unwrap();
    assert_eq!(fh.version, CURRENT_VERSION);
    let mut page_size = None;
    let mut kinds = Vec::new();
    for raw in records {
        let raw = raw.unwrap();
        raw.verify_crc().unwrap();
        let rec = raw.decode(page_size).unwrap();
        if let Record::Header(h) = &rec {
            page_size = Some(h.page_size);
        }
        kinds.push(rec.name().unwrap());
    }
    assert_eq!(
        kinds,
        ["HEADER", "PROCESS", "THREAD", "VMA", "VMA", "PAGES", "NOTE", "END"]
    );
}

#[test]
fn writer_refuses_what_the_reader_would_reject() {
    let mut img = small_image();
    img.processes[0].process.comm = "a-very-long-command-name".into();
    assert!(to_vec(&img).is_err());
    let mut img = small_image();
    img.processes[0].vmas.swap(0, 1);
    assert!(to_vec(&img).is_err());
    let mut img = small_image();
    img.processes.push(img.processes[0].clone());
    assert!(to_vec(&img).is_err());
    let mut img = small_image();
    let t = img.processes[0].threads[0].clone();
    img.processes[0].threads.push(t);
    assert!(to_vec(&img).is_err());
    let mut img = small_image();
    img.version.major = 2;
    assert!(to_vec(&img).is_err());
}

/// Adds to `img` extras (flags and payload tails) and unknown records chosen by `picks` and
/// `unknowns`, placed on the records `img` is written as; the result is a model the writer
/// writes and the reader reads back unchanged.
fn with_extras(
    mut img: Image<'static>,
    picks: &[(usize, u16, Vec<u8>)],
    unknowns: &[(usize, u16, u16, Vec<u8>)],
) -> Image<'static> {
    use crak_format::image::{RecordExtra, UnknownRecord};
    let bytes = crak_format::to_vec(&img).unwrap();
    let spans = read::parse(&bytes).unwrap().layout.records;
    let mut chosen: Vec<(usize, RecordExtra<'static>)> = Vec::new();
    for (i, flags, tail) in picks {
        let at = i % spans.len();
        let span = spans[at];
        // A PAGES record's length is fixed by its data; a THREAD without the 1.2 fields ends
        // where they would start, so a tail there would read as them.
        let thread_without_ext = span.kind == kind::THREAD
            && span.pid.is_some_and(|pid| {
                img.processes
                    .iter()
                    .find(|p| p.pid() == pid)
                    .and_then(|p| p.threads.get(span.index))
                    .is_some_and(|t| t.ext.is_none())
            });
        let tail = if span.kind == kind::PAGES || thread_without_ext {
            Vec::new()
        } else {
            tail.clone()
        };
        if chosen.iter().any(|(a, _)| *a == at)
            || (*flags == kind::default_flags(span.kind) && tail.is_empty())
        {
            continue;
        }
        chosen.push((
            at,
            RecordExtra {
                kind: span.kind,
                pid: span.pid,
                index: span.index,
                flags: *flags,
                extra: Blob::from(tail),
            },
        ));
    }
    chosen.sort_by_key(|(a, _)| *a);
    img.extras = chosen.into_iter().map(|(_, x)| x).collect();
    let known = (spans.len() - 1) as u64; // END is not counted
    let mut unknown: Vec<UnknownRecord<'static>> = unknowns
        .iter()
        .map(|(i, k, flags, payload)| UnknownRecord {
            after: 1 + (*i as u64) % known,
            kind: if kind::is_known(*k) { 0x7000 | k } else { *k },
            flags: flags & !crak_format::FLAG_CRITICAL,
            payload: Blob::from(payload.clone()),
        })
        .collect();
    unknown.sort_by_key(|u| u.after);
    img.unknown = unknown;
    img
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// encode(decode(x)) == x: an image with unknown records, record tails and non-default
    /// flags reads back to the same model, which writes the same bytes, also through JSON.
    #[test]
    fn images_with_extras_round_trip_byte_for_byte(
        img in crak_format::arbitrary::image(),
        picks in proptest::collection::vec(
            (any::<usize>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..9)),
            0..6,
        ),
        unknowns in proptest::collection::vec(
            (any::<usize>(), 0x12u16.., any::<u16>(), proptest::collection::vec(any::<u8>(), 0..17)),
            0..4,
        ),
    ) {
        let img = with_extras(img, &picks, &unknowns);
        let bytes = crak_format::to_vec(&img).unwrap();
        let parsed = read::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed.image, &img);
        prop_assert!(crak_format::to_vec(&parsed.image).unwrap() == bytes);
        let streamed = read::read_stream_metadata(&bytes[..]).unwrap();
        prop_assert_eq!(&streamed.image.extras, &img.extras);
        prop_assert_eq!(&streamed.image.unknown, &img.unknown);
        let json = crak_format::to_json(&img, true).to_string();
        let back = crak_format::from_json(&json).unwrap();
        prop_assert!(crak_format::to_vec(&back).unwrap() == bytes);
    }
}

#[test]
fn writer_refuses_unknown_records_it_cannot_write() {
    use crak_format::image::UnknownRecord;
    let mut img = crak_format::Image::new(Header {
        arch: ARCH_X86_64,
        page_size: 4096,
        capture_time_ns: 0,
        xsave_features: 3,
        xsave_size: 512,
        kernel_release: "k".into(),
        hostname: "h".into(),
        tool_version: "t".into(),
        special_mappings: vec![],
    });
    for (kind, flags) in [(kind::VMA, 0), (kind::AUTH, 0), (0x9000, 1)] {
        img.unknown = vec![UnknownRecord {
            after: 1,
            kind,
            flags,
            payload: Blob::default(),
        }];
        let e = crak_format::to_vec(&img).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{kind:#x}");
    }
    img.unknown[0] = UnknownRecord {
        after: 0,
        kind: 0x9000,
        flags: 0,
        payload: Blob::from(b"x".to_vec()),
    };
    // `after: 0` still goes after HEADER: HEADER is first in every image.
    let bytes = crak_format::to_vec(&img).unwrap();
    let parsed = read::parse(&bytes).unwrap().image;
    assert_eq!(parsed.unknown[0].after, 1);
}
