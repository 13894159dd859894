//! What each fuzz target asserts, as plain functions on bytes.
//!
//! The targets in `fuzz_targets/` are one call each; `tests/hardening.rs` includes this file
//! (`#[path]`) and runs the committed corpus (`spec/vectors/`, `fuzz/regressions/`) through the
//! same functions on stable, so every input that once crashed keeps being checked.
//!
//! Dependencies: `crak-format` (feature `arbitrary`), `crak-dump`, `proptest`.

use crak_format::validate::validate;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str, data: &[u8]) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("crak-fuzz-{}-{}-{tag}", std::process::id(), n));
        std::fs::write(&path, data).expect("write a scratch file");
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs crak-dump in-process with output discarded; returns the exit code, which must be one of
/// the documented three.
fn dump(args: &[&dyn AsRef<std::ffi::OsStr>]) -> i32 {
    let mut argv: Vec<OsString> = vec!["crak-dump".into()];
    argv.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    let shown = format!("{argv:?}");
    let code = crak_dump::run(argv, &mut std::io::sink(), &mut std::io::sink());
    assert!(
        matches!(code, 0..=2),
        "crak-dump {shown} exited with {code}, not 0, 1 or 2"
    );
    code
}

/// `validate`: parse, then validate with and without the layout. The validator must not panic
/// on anything the parser accepts, and an image rewritten by the writer must get the same
/// verdict.
pub fn check_validate(data: &[u8]) {
    let Ok(parsed) = crak_format::parse(data) else {
        return;
    };
    let with_layout = validate(&parsed.image, Some(&parsed.layout));
    let without = validate(&parsed.image, None);
    assert_eq!(with_layout.is_valid(), without.is_valid());
    let again = crak_format::to_vec(&parsed.image).expect("a parsed image writes");
    let reparsed = crak_format::parse(&again).expect("a rewritten image parses");
    let rewritten = validate(&reparsed.image, Some(&reparsed.layout));
    assert_eq!(
        rewritten.is_valid(),
        with_layout.is_valid(),
        "the writer changed the verdict"
    );
}

/// `dump_views`: every read-only crak-dump view on arbitrary bytes. None may panic, each exits
/// 0, 1 or 2; an image that parses is shown by the summary and `--json` and is not called
/// unreadable by `validate`, and one that does not parse is refused by `validate`.
pub fn check_dump_views(data: &[u8]) {
    let image = Scratch::new("image", data);
    let p = image.path();
    let parses = crak_format::parse(data).is_ok();

    let summary = dump(&[&p]);
    let json = dump(&[&"--json", &p]);
    let _ = dump(&[&"--json", &"--pages", &p]);
    let _ = dump(&[&"--env", &p]);
    let valid = dump(&[&"validate", &p]);
    let _ = dump(&[&"validate", &"--json", &p]);
    if parses {
        assert_eq!(summary, 0, "the summary refused an image that parses");
        assert_eq!(json, 0, "--json refused an image that parses");
        assert_ne!(valid, 2, "validate called a parsing image unreadable");
    } else {
        // The summary and --json of a file skip PAGES CRCs (read_seekable_metadata), so only
        // validate must refuse here.
        assert_ne!(valid, 0, "validate accepted an image that does not parse");
    }
    for args in [
        &["mem", "0x400000+64"][..],
        &["mem", "--vma", "0"],
        &["mem", "--vma", "1", "--raw"],
        &["grep", "a"],
        &["grep", "-x", "00ff"],
        &["grep", "-e", "[a-z]{4}", "-m", "8"],
        &["grep", "--json", "--perms", "rw", "x"],
        &["strings"],
        &["strings", "--json", "-n", "8"],
        &["backtrace"],
        &["backtrace", "--json"],
    ] {
        let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&args[0]];
        argv.push(&p);
        for a in &args[1..] {
            argv.push(a);
        }
        dump(&argv);
    }
    let diff = dump(&[&"diff", &p, &p]);
    if parses {
        assert_eq!(diff, 0, "an image differs from itself");
    }
    let _ = dump(&[&"core", &p, &"-o", &"-"]);
}

/// `encode`: `crak-dump encode` on arbitrary text. It must not panic; when it writes an image,
/// that image parses back to exactly the model the JSON describes.
pub fn check_encode(data: &[u8]) {
    let input = Scratch::new("json", data);
    let output = Scratch::new("out", b"");
    let code = dump(&[&"encode", &input.path(), &"-o", &output.path()]);
    let model = std::str::from_utf8(data)
        .ok()
        .and_then(|t| crak_format::from_json(t).ok());
    if code != 0 {
        return;
    }
    let model = model.expect("encode accepted text that from_json refuses");
    let bytes = std::fs::read(output.path()).expect("read the encoded image");
    let parsed = crak_format::parse(&bytes).expect("an encoded image parses");
    assert_eq!(parsed.image, model);
}

/// Reads a little-endian integer of `N` bytes from the front of `input`, zero-padded.
fn take<const N: usize>(input: &mut &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = N.min(input.len());
    let (head, rest) = input.split_at(n);
    buf[..n].copy_from_slice(head);
    *input = rest;
    u64::from_le_bytes(buf)
}

/// `structured`: the first 32 bytes seed a structurally valid image (the crate's proptest
/// strategy), which the writer writes and the parser must read back equal; the remaining
/// bytes are a list of mutations (overwrite a byte, a little-endian u32 or u64 with an
/// extreme value, truncate, duplicate a range), after which the slice parser, the stream
/// reader and the validator must still not panic.
pub fn check_structured(data: &[u8]) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let mut input = data;
    let mut seed = [0u8; 32];
    let n = seed.len().min(input.len());
    seed[..n].copy_from_slice(&input[..n]);
    input = &input[n..];
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let Ok(tree) = crak_format::arbitrary::image().new_tree(&mut runner) else {
        return;
    };
    let image = tree.current();
    let mut bytes = crak_format::to_vec(&image).expect("a generated image writes");
    let parsed = crak_format::parse(&bytes).expect("a generated image parses");
    assert_eq!(parsed.image, image);

    // Record boundaries, so that mutations land on headers as often as on payloads.
    let starts: Vec<usize> = parsed
        .layout
        .records
        .iter()
        .filter_map(|r| usize::try_from(r.offset).ok())
        .collect();
    drop(parsed);

    const EXTREMES: [u64; 8] = [
        0,
        1,
        0x7f,
        0xff,
        0xffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
        u64::MAX - 15,
    ];
    let mut ops = 0;
    while !input.is_empty() && ops < 16 && !bytes.is_empty() {
        ops += 1;
        let op = take::<1>(&mut input);
        let base = if op & 0x80 != 0 && !starts.is_empty() {
            let i = take::<1>(&mut input) as usize % starts.len();
            starts.get(i).copied().unwrap_or(0) + (take::<1>(&mut input) as usize % 32)
        } else {
            take::<4>(&mut input) as usize
        };
        let at = base % bytes.len();
        match op & 0x7 {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = take::<1>(&mut input) as u8;
                }
            }
            1 | 2 => {
                let v = EXTREMES
                    .get(take::<1>(&mut input) as usize % EXTREMES.len())
                    .copied()
                    .unwrap_or(0);
                let width = if op & 0x7 == 1 { 4 } else { 8 };
                for (i, b) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => bytes.truncate(at),
            4 => {
                let len = (take::<2>(&mut input) as usize).min(bytes.len() - at);
                let copy = bytes[at..at + len].to_vec();
                bytes.splice(at..at, copy);
            }
            5 => {
                let len = (take::<2>(&mut input) as usize).min(bytes.len() - at);
                bytes.drain(at..at + len);
            }
            _ => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (op >> 4 & 7);
                }
            }
        }
    }

    let slice = crak_format::parse(&bytes);
    let stream = crak_format::read_stream_metadata(&bytes[..]);
    assert_eq!(
        slice.is_ok(),
        stream.is_ok(),
        "slice parser and stream reader disagree: {:?} / {:?}",
        slice.as_ref().err(),
        stream.as_ref().err()
    );
    if let Ok(parsed) = slice {
        let _ = validate(&parsed.image, Some(&parsed.layout));
        let _ = crak_format::to_json(&parsed.image, true);
    }
}
