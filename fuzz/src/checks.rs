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

/// A little-endian reader over the fuzz input, yielding zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        take::<1>(&mut self.0) as u8
    }
    fn u32(&mut self) -> u32 {
        take::<4>(&mut self.0) as u32
    }
    fn u64(&mut self) -> u64 {
        take::<8>(&mut self.0)
    }
    /// Up to `max` bytes, the length given by the next byte.
    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits `data` into an image and what follows: a u32 length, then that many bytes of image.
/// Bytes that do not parse seed a generated image instead (the crate's proptest strategy), so
/// that both captured-looking and structurally varied images get edited.
fn image_and_rest(data: &[u8]) -> Option<(crak_format::Image<'static>, &[u8])> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut input = data;
    let len = (take::<4>(&mut input) as usize).min(input.len());
    let (bytes, rest) = input.split_at(len);
    if let Ok(parsed) = crak_format::parse(bytes) {
        return Some((parsed.image.into_owned(), rest));
    }
    let mut seed = [0u8; 32];
    let n = seed.len().min(bytes.len());
    seed[..n].copy_from_slice(&bytes[..n]);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let tree = crak_format::arbitrary::image().new_tree(&mut runner).ok()?;
    Some((tree.current(), rest))
}

/// A pid for an edit: one of the image's (by index), none (the first process), or any.
fn pick_pid(image: &crak_format::Image<'_>, inp: &mut Input<'_>) -> Option<u32> {
    let b = inp.u8();
    match b % 4 {
        0 => None,
        3 => Some(inp.u32()),
        _ => image
            .processes
            .get(usize::from(b / 4) % image.processes.len().max(1))
            .map(|p| p.pid()),
    }
}

/// An address near one of the image's VMAs (start or end, plus a small offset), or any.
fn pick_addr(image: &crak_format::Image<'_>, inp: &mut Input<'_>) -> u64 {
    let b = inp.u8();
    let vmas: Vec<&crak_format::record::vma::Vma> =
        image.processes.iter().flat_map(|p| &p.vmas).collect();
    match (b % 4, vmas.is_empty()) {
        (3, _) | (_, true) => inp.u64(),
        (k, false) => {
            let v = vmas[usize::from(inp.u8()) % vmas.len()];
            let base = if k == 2 { v.end } else { v.start };
            let off = u64::from(inp.u8()) * 61;
            if b & 0x80 != 0 {
                base.wrapping_sub(off)
            } else {
                base.wrapping_add(off)
            }
        }
    }
}

/// Checks that a model writes and reads back unchanged.
fn assert_round_trip(image: &crak_format::Image<'_>, what: &str) {
    let Ok(bytes) = crak_format::to_vec(image) else {
        return;
    };
    let parsed = crak_format::parse(&bytes)
        .unwrap_or_else(|e| panic!("{what}: the writer wrote an image the parser refuses: {e}"));
    assert!(
        parsed.image == *image,
        "{what}: the image read back differs from the one written"
    );
}

/// `edit`: an image (see [`image_and_rest`]) and up to 16 edit operations decoded from the
/// rest: `poke`, `set_reg`, `map_path` (with and without a stat function), `set_cwd`,
/// `drop_fd`, `set_pid`, `set_env`, `read_memory`, on chosen or arbitrary pids, addresses,
/// paths and values. No edit may panic; an edit that is refused leaves the image exactly as it
/// was (crak-format's edit contract); a valid image stays one that writes and reads back equal.
pub fn check_edit(data: &[u8]) {
    use crak_format::edit;
    let Some((mut image, rest)) = image_and_rest(data) else {
        return;
    };
    let mut inp = Input(rest);
    let mut ops = 0;
    while !inp.is_empty() && ops < 16 {
        ops += 1;
        let before = image.clone();
        let op = inp.u8();
        let result: Result<(), edit::EditError> = match op % 8 {
            0 => {
                let pid = pick_pid(&image, &mut inp);
                let addr = pick_addr(&image, &mut inp);
                let bytes = inp.bytes(64).to_vec();
                edit::poke(&mut image, pid, addr, &bytes).map(drop)
            }
            1 => {
                let pid = pick_pid(&image, &mut inp);
                let tid = match inp.u8() % 3 {
                    0 => None,
                    1 => pid,
                    _ => Some(inp.u32()),
                };
                let names = crak_format::record::thread::Gpr::NAMES;
                let i = usize::from(inp.u8());
                let reg = names.get(i).copied().unwrap_or("xmm0");
                let value = inp.u64();
                edit::set_reg(&mut image, pid, tid, reg, value)
            }
            2 => {
                let old = inp.bytes(32).to_vec();
                let new = inp.bytes(32).to_vec();
                let stat_mode = inp.u8();
                let stat_value = inp.u64();
                let mut stat = |_: &[u8]| -> Result<edit::FileStat, String> {
                    if stat_mode & 1 == 0 {
                        Err("no such file".into())
                    } else {
                        Ok(edit::FileStat {
                            dev: stat_value,
                            ino: stat_value.rotate_left(7),
                            rdev: 0,
                            size: stat_value >> 3,
                            mtime_ns: stat_value as i64,
                            mode: 0o100644,
                        })
                    }
                };
                let f: Option<edit::StatFn<'_>> = if stat_mode & 2 == 0 {
                    None
                } else {
                    Some(&mut stat)
                };
                edit::map_path(&mut image, &old, &new, f).map(drop)
            }
            3 => {
                let pid = pick_pid(&image, &mut inp);
                let dir = inp.bytes(64).to_vec();
                edit::set_cwd(&mut image, pid, &dir)
            }
            4 => {
                let pid = pick_pid(&image, &mut inp);
                let fd = u32::from(inp.u8() % 8);
                edit::drop_fd(&mut image, pid, fd, edit::FileStat::default())
            }
            5 => {
                let old = pick_pid(&image, &mut inp);
                let new = if inp.u8() & 1 == 0 {
                    u32::from(inp.u8())
                } else {
                    inp.u32()
                };
                edit::set_pid(&mut image, old, new)
            }
            6 => {
                let pid = pick_pid(&image, &mut inp);
                let key = inp.bytes(16).to_vec();
                let value = inp.bytes(200).to_vec();
                edit::set_env(&mut image, pid, &key, &value)
            }
            _ => {
                let pid = pick_pid(&image, &mut inp);
                let addr = pick_addr(&image, &mut inp);
                let len = u64::from(inp.u32() % (1 << 20));
                let read = edit::read_memory(&image, pid, addr, len);
                if let Ok(bytes) = &read {
                    assert_eq!(
                        bytes.len() as u64,
                        len,
                        "read_memory returned another length"
                    );
                }
                read.map(drop)
            }
        };
        if let Err(e) = result {
            assert!(
                image == before,
                "a refused edit (op {}) changed the image: {e}",
                op % 8
            );
        }
    }
    if validate(&image, None).is_valid() {
        assert_round_trip(&image, "an edited valid image");
    }
}

/// A kernel profile from the input: JSON text when it parses as one (the committed seeds are
/// real profiles), else one built from bytes around the image's own header (page size, XSAVE
/// features and size, components, special mappings, vDSO bytes and symbols).
fn profile_from(
    image: &crak_format::Image<'_>,
    text: &[u8],
    inp: &mut Input<'_>,
) -> crak_format::rewrite::KernelProfile {
    use crak_format::record::header::SpecialMapping;
    use crak_format::record::vma::VmaKind;
    use crak_format::rewrite::{KernelProfile, VdsoSymbol, XsaveComponent, PROFILE_FORMAT};
    if let Some(p) = std::str::from_utf8(text)
        .ok()
        .and_then(|t| KernelProfile::from_json(t).ok())
    {
        return p;
    }
    let h = &image.header;
    let flags = inp.u8();
    let xsave_features = if flags & 1 != 0 {
        h.xsave_features ^ (1u64 << (inp.u8() % 64))
    } else {
        h.xsave_features
    };
    let xsave_size = if flags & 2 != 0 {
        u32::from(inp.u8()) * 64 + 512
    } else {
        h.xsave_size
    };
    let mut xsave_components = Vec::new();
    for _ in 0..inp.u8() % 8 {
        xsave_components.push(XsaveComponent {
            index: u32::from(inp.u8() % 20),
            offset: u32::from(inp.u8()) * 64,
            size: u32::from(inp.u8()) * 8,
        });
    }
    let kinds = [
        VmaKind::Vdso,
        VmaKind::Vvar,
        VmaKind::VvarVclock,
        VmaKind::Vsyscall,
    ];
    let mut special_mappings = Vec::new();
    let base = 0x7fff_0000_0000u64.wrapping_add(u64::from(inp.u32()) << 12);
    for i in 0..inp.u8() % 4 {
        let pages = u64::from(inp.u8() % 8) + 1;
        let start = base.wrapping_add(u64::from(i) * 0x10000);
        special_mappings.push(SpecialMapping {
            kind: kinds[usize::from(inp.u8()) % kinds.len()],
            start,
            end: start.wrapping_add(pages << 12),
        });
    }
    let vdso = (flags & 4 != 0).then(|| {
        let n = usize::from(inp.u8() % 3) * 4096 + 4096;
        let mut v = vec![0u8; n];
        let fill = inp.bytes(255);
        for (i, b) in fill.iter().enumerate() {
            if let Some(slot) = v.get_mut(i * 16) {
                *slot = *b;
            }
        }
        crak_format::Blob::from(v)
    });
    let names = [
        "__vdso_clock_gettime",
        "__vdso_gettimeofday",
        "__vdso_time",
        "__vdso_getcpu",
        "__vdso_foo",
    ];
    let mut vdso_symbols = Vec::new();
    for _ in 0..inp.u8() % 6 {
        vdso_symbols.push(VdsoSymbol {
            name: names[usize::from(inp.u8()) % names.len()].to_string(),
            offset: u64::from(inp.u32() % 0x4000),
            size: u64::from(inp.u8()),
        });
    }
    KernelProfile {
        format: PROFILE_FORMAT.to_string(),
        kernel_release: crak_format::ByteString::from("fuzz"),
        page_size: if flags & 8 != 0 {
            4096 << (inp.u8() % 5)
        } else {
            h.page_size
        },
        xsave_features,
        xsave_size,
        xsave_components,
        special_mappings,
        vdso,
        vdso_symbols,
    }
}

/// `rewrite`: an image (see [`image_and_rest`]), then a target profile and optionally a source
/// profile (each a u16 length and that many bytes of JSON, else built from the bytes that
/// follow). `rewrite` must not panic; when it refuses, the image is unchanged; when it
/// succeeds, the header has the target's page size, XSAVE features and size, so does every
/// XSAVE area of an image that was valid, and a valid result writes and reads back equal.
pub fn check_rewrite(data: &[u8]) {
    let Some((mut image, rest)) = image_and_rest(data) else {
        return;
    };
    let mut inp = Input(rest);
    let json = |inp: &mut Input<'_>| -> Vec<u8> {
        let n = (take::<2>(&mut inp.0) as usize).min(inp.0.len());
        let (head, tail) = inp.0.split_at(n);
        inp.0 = tail;
        head.to_vec()
    };
    let target_text = json(&mut inp);
    let target = profile_from(&image, &target_text, &mut inp);
    let source = if inp.u8() & 1 == 1 {
        let text = json(&mut inp);
        Some(profile_from(&image, &text, &mut inp))
    } else {
        None
    };
    let before = image.clone();
    match crak_format::rewrite::rewrite(&mut image, &target, source.as_ref()) {
        Err(e) => assert!(image == before, "a refused rewrite changed the image: {e}"),
        Ok(_) => {
            assert_eq!(image.header.page_size, target.page_size);
            assert_eq!(
                (image.header.xsave_features, image.header.xsave_size),
                (target.xsave_features, target.xsave_size),
                "the header does not describe the target's XSAVE layout"
            );
            // Areas are rebuilt only when the layout changes; a valid image's areas already
            // have its header's size.
            let valid_before = validate(&before, None).is_valid();
            for p in image.processes.iter().filter(|_| valid_before) {
                for x in &p.xsaves {
                    assert_eq!(
                        x.area.len() as u64,
                        u64::from(target.xsave_size),
                        "thread {}: an XSAVE area of another size than the target's",
                        x.tid
                    );
                }
            }
            if validate(&image, None).is_valid() {
                assert_round_trip(&image, "a rewritten valid image");
            }
        }
    }
}

/// `elfcore`: crak-dump reads ELF core files as input. On arbitrary bytes, the core reader
/// must not panic, and the read-only commands that take a core (summary, `--json`, `mem`,
/// `grep`, `strings`, `backtrace`, `diff`) exit 0, 1 or 2; a core the reader accepts is shown
/// by the summary and `--json`, and its model writes as an image that parses back equal.
pub fn check_elfcore(data: &[u8]) {
    let accepted = crak_dump::elfcore::image(data).ok();
    if let Some(image) = &accepted {
        let _ = validate(image, None);
        assert_round_trip(image, "the image read from a core");
    }
    let core = Scratch::new("core", data);
    let p = core.path();
    let summary = dump(&[&p]);
    let json = dump(&[&"--json", &p]);
    if accepted.is_some() {
        assert_eq!(summary, 0, "the summary refused a core the reader accepts");
        assert_eq!(json, 0, "--json refused a core the reader accepts");
    }
    for args in [
        &["mem", "0x400000+64"][..],
        &["mem", "--vma", "0"],
        &["grep", "a"],
        &["grep", "-x", "00ff", "--json"],
        &["strings", "-n", "6"],
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
    let _ = dump(&[&"diff", &p, &p]);
}
