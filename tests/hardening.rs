//! Hardening: the fuzz targets' assertions on the committed corpus, fuzz regressions as byte
//! literals, and resource bounds on hostile images.
//!
//! - Every `.bin` under `spec/vectors/` and every file under `fuzz/regressions/<target>/` runs
//!   through the same functions the fuzz targets call (`fuzz/src/checks.rs`, included here), so
//!   the stable test run keeps checking what the fuzzers once found (edit and rewrite take a
//!   length-prefixed image followed by operations or profiles; elfcore takes ELF core files).
//! - Hostile images (lengths near 2^64, list counts of 2^32 - 1, page runs past the end of the
//!   address space, heavily overlapping VMAs and page runs, cycles in the process tree) go
//!   through `crak-dump IMAGE`, `--json`, `validate`, `mem` and `grep` as separate processes
//!   under an address-space limit (`prlimit --as`) of the binary's own baseline plus
//!   max(2 × input size, 64 MiB); each must finish within a few seconds, exit 0, 1 or 2 (never
//!   a signal), and say why when it refuses.

#[path = "../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use crak_format::image::{Image, Process};
use crak_format::record::pages::PageRun;
use crak_format::record::vma::Vma;
use crak_format::record::zero_pages::ZeroRun;
use crak_format::Blob;
use crak_tests::{bin, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn files_under(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn vectors(ext: &str) -> Vec<PathBuf> {
    let v = files_under(&workspace_root().join("spec/vectors"), Some(ext));
    assert!(!v.is_empty(), "no spec vectors found");
    v
}

fn regressions(target: &str) -> Vec<PathBuf> {
    files_under(
        &workspace_root().join("fuzz/regressions").join(target),
        None,
    )
}

fn each(paths: &[PathBuf], check: fn(&[u8])) {
    for p in paths {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(|| check(&data));
        if let Err(e) = r {
            eprintln!("failing input: {}", p.display());
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn corpus_validate() {
    each(&vectors("bin"), checks::check_validate);
    each(&regressions("validate"), checks::check_validate);
}

#[test]
fn corpus_dump_views() {
    each(&vectors("bin"), checks::check_dump_views);
    each(&regressions("dump_views"), checks::check_dump_views);
}

#[test]
fn corpus_edit() {
    each(&vectors("bin"), checks::check_edit);
    each(&regressions("edit"), checks::check_edit);
}

#[test]
fn corpus_rewrite() {
    each(&vectors("bin"), checks::check_rewrite);
    each(&regressions("rewrite"), checks::check_rewrite);
}

#[test]
fn corpus_elfcore() {
    each(&vectors("bin"), checks::check_elfcore);
    let cores = regressions("elfcore");
    assert!(!cores.is_empty(), "no committed ELF cores");
    each(&cores, checks::check_elfcore);
}

#[test]
fn corpus_encode() {
    each(&vectors("json"), checks::check_encode);
    each(&regressions("encode"), checks::check_encode);
}

#[test]
fn corpus_structured() {
    // The vectors as seeds and mutation lists, then the regressions.
    each(&vectors("bin"), checks::check_structured);
    each(&regressions("structured"), checks::check_structured);
    for seed in 0u8..=255 {
        let mut input = vec![seed; 32];
        input.extend((0..64u8).map(|i| i.wrapping_mul(seed).wrapping_add(i)));
        checks::check_structured(&input);
    }
}

#[test]
fn corpus_parse_stream_json_regressions() {
    each(&regressions("parse"), checks::check_validate);
    each(&regressions("stream"), checks::check_validate);
    each(&regressions("json"), checks::check_encode);
}

// ---------------------------------------------------------------------------------------------
// Resource bounds.

const MIB: u64 = 1 << 20;
/// How long any one command may take on a hostile image.
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// The result of one bounded run.
struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    shown: String,
}

fn run_limited(as_bytes: u64, args: &[&str], image: &Path) -> Run {
    // `timeout` ends a run that hangs, so that the test reports it rather than waiting.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "20", "prlimit"])
        .arg(format!("--as={as_bytes}"))
        .arg("--")
        .arg(bin("crak-dump"));
    let mut shown = format!("prlimit --as={as_bytes} -- crak-dump");
    for a in args {
        if *a == "IMAGE" {
            cmd.arg(image);
            shown.push_str(&format!(" {}", image.display()));
        } else {
            cmd.arg(a);
            shown.push_str(&format!(" {a}"));
        }
    }
    let start = Instant::now();
    let out = cmd
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run prlimit (util-linux)");
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
        shown,
    }
}

/// The least address-space limit (to 4 MiB) under which crak-dump summarizes and validates a
/// small valid image: the binary's baseline (code, libraries, stacks, allocator arenas).
fn baseline() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let image = workspace_root().join("spec/vectors/valid/002-every-record-kind.bin");
        let ok = |limit: u64| {
            ["IMAGE", "validate"].iter().all(|first| {
                let args: &[&str] = if *first == "IMAGE" {
                    &["IMAGE"]
                } else {
                    &["validate", "IMAGE"]
                };
                run_limited(limit, args, &image).code == Some(0)
            })
        };
        let (mut lo, mut hi) = (0u64, 1024 * MIB);
        assert!(ok(hi), "crak-dump fails on a valid image even with 1 GiB");
        while hi - lo > 4 * MIB {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    })
}

/// The commands every hostile image goes through.
const COMMANDS: &[&[&str]] = &[
    &["IMAGE"],
    &["--json", "IMAGE"],
    &["validate", "IMAGE"],
    &["mem", "IMAGE", "0x10000+256"],
    &["grep", "IMAGE", "needle"],
    &["grep", "-x", "IMAGE", "00"],
];

/// Runs every command on `bytes` under the limit; `parses` says whether the slice parser
/// accepts the image, in which case the summary must succeed and validate must refuse (these
/// images are all semantically broken), and otherwise each command must refuse naming why.
fn assert_bounded(name: &str, bytes: &[u8]) {
    assert_bounded_with(name, bytes, true);
}

/// [`assert_bounded`]; `semantically_broken` says whether validate must refuse an image that
/// parses.
fn assert_bounded_with(name: &str, bytes: &[u8], semantically_broken: bool) {
    let dir = tempfile::tempdir().expect("scratch dir");
    let image = dir.path().join(format!("{name}.crak"));
    std::fs::write(&image, bytes).expect("write image");
    let size = bytes.len() as u64;
    let limit = baseline() + (2 * size).max(64 * MIB);
    let parses = crak_format::parse(bytes).is_ok();
    for args in COMMANDS {
        let r = run_limited(limit, args, &image);
        let ctx = format!(
            "{name}: {} -> {:?} in {:?}\nstderr: {}",
            r.shown, r.code, r.elapsed, r.stderr
        );
        assert!(r.elapsed < TIME_LIMIT, "too slow: {ctx}");
        let code = r
            .code
            .unwrap_or_else(|| panic!("killed by a signal: {ctx}"));
        assert!(matches!(code, 0..=2), "odd exit code: {ctx}");
        if parses {
            if semantically_broken && args.first() == Some(&"validate") {
                assert_eq!(code, 1, "validate accepted a hostile image: {ctx}");
            }
            if args.first() == Some(&"IMAGE") || args.first() == Some(&"--json") {
                assert_eq!(code, 0, "a parsing image was not shown: {ctx}");
            }
        } else {
            assert_ne!(code, 0, "a broken image was accepted: {ctx}");
            assert!(
                r.stderr.contains("offset") || args.first() == Some(&"validate"),
                "refusal does not say where: {ctx}"
            );
        }
    }
}

fn file_header() -> Vec<u8> {
    let mut v = crak_format::MAGIC.to_vec();
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

fn base_image() -> Image<'static> {
    let bytes =
        std::fs::read(workspace_root().join("spec/vectors/valid/002-every-record-kind.bin"))
            .expect("vector 002");
    crak_format::parse(&bytes)
        .expect("vector 002 parses")
        .image
        .into_owned()
}

fn vma(pid: u32, start: u64, end: u64) -> Vma {
    let mut v = base_image()
        .processes
        .iter()
        .flat_map(|p| p.vmas.iter())
        .next()
        .cloned()
        .expect("vector 002 has a VMA");
    v.pid = pid;
    v.start = start;
    v.end = end;
    v.pgoff = 0;
    v
}

#[test]
fn bounded_length_near_2_pow_64() {
    for length in [
        u64::MAX,
        u64::MAX - 3,
        u64::MAX - 19,
        1 << 63,
        (1 << 32) + 7,
    ] {
        for kind in [0x0001u16, 0x000B, 0x000D, 0x000E, 0x0010, 0x7777] {
            let mut v = file_header();
            v.extend_from_slice(&kind.to_le_bytes());
            v.extend_from_slice(&1u16.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&length.to_le_bytes());
            v.extend_from_slice(&[0u8; 64]);
            assert!(crak_format::parse(&v).is_err());
            assert_bounded(&format!("length-{length:x}-kind-{kind:x}"), &v);
        }
    }
}

/// Every u32 in the first 32 bytes of every record's payload of vector 002 set to 2^32 - 1
/// (a claimed 4 billion list items, tids, VMAs...), with the record's CRC fixed so the
/// parser reaches the payload.
#[test]
fn bounded_counts_of_2_pow_32() {
    let bytes =
        std::fs::read(workspace_root().join("spec/vectors/valid/002-every-record-kind.bin"))
            .expect("vector 002");
    let parsed = crak_format::parse(&bytes).expect("vector 002 parses");
    let spans = parsed.layout.records.clone();
    let mut n = 0;
    for span in &spans {
        let start = span.payload_offset() as usize;
        let len = span.length as usize;
        for at in (0..len.min(32)).step_by(4).filter(|o| o + 4 <= len) {
            let mut v = bytes.clone();
            v[start + at..start + at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            let hdr = span.offset as usize;
            let crc = crc32c::crc32c(&v[hdr..start + len]);
            v[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
            checks::check_dump_views(&v);
            // Some of these u32s are values, not counts (an rlimit of 2^32 - 1 is fine).
            assert_bounded_with(
                &format!(
                    "count-{}-{:x}-{at}",
                    span.name().unwrap_or("?"),
                    span.offset
                ),
                &v,
                false,
            );
            n += 1;
        }
    }
    assert!(n > 40, "only {n} mutants");
}

/// A page run at the last page of the address space (its end wraps), a zero run of 2^52 pages,
/// a VMA to the top of the address space, a page run past every VMA.
#[test]
fn bounded_page_maps_past_the_end() {
    let mut image = base_image();
    let p = image.processes.first_mut().expect("a process");
    let pid = p.pid();
    let page = vec![0x41u8; 4096];
    p.vmas = vec![vma(pid, 0x10000, 0x20000), vma(pid, 0x30000, !0xfff)];
    p.pages = vec![
        PageRun {
            pid,
            addr: !0xfff,
            nr_pages: 1,
            data: Blob::from(page.clone()),
        },
        PageRun {
            pid,
            addr: 0x7000_0000_0000,
            nr_pages: 1,
            data: Blob::from(page),
        },
    ];
    p.zero_runs = vec![ZeroRun {
        pid,
        addr: 0x10000,
        nr_pages: 1 << 52,
    }];
    let bytes = crak_format::to_vec(&image).expect("writes");
    assert_bounded("pages-past-the-end", &bytes);
    checks::check_dump_views(&bytes);
}

/// 4 000 VMAs each covering most of the address space, 1 000 page runs of the same page and
/// 1 000 zero runs of 2^30 pages over it.
#[test]
fn bounded_overlapping_ranges() {
    let mut image = base_image();
    let p = image.processes.first_mut().expect("a process");
    let pid = p.pid();
    p.vmas = (0..4_000u64)
        .map(|i| vma(pid, 0x10000 + (i << 12), 0x7fff_ffff_f000))
        .collect();
    p.pages = (0..1_000)
        .map(|_| PageRun {
            pid,
            addr: 0x20000,
            nr_pages: 1,
            data: Blob::from(vec![0x42u8; 4096]),
        })
        .collect();
    p.zero_runs = (0..1_000)
        .map(|_| ZeroRun {
            pid,
            addr: 0x10000,
            nr_pages: 1 << 30,
        })
        .collect();
    let bytes = crak_format::to_vec(&image).expect("writes");
    assert_bounded("overlapping-ranges", &bytes);
}

/// Processes that are each other's parents, one its own parent, a parent chain 1 000 deep.
#[test]
fn bounded_process_tree_cycles() {
    let base = base_image();
    let template: Process<'static> = base.processes.first().cloned().expect("a process");
    let mut image = base.clone();
    let mk = |pid: u32, ppid: u32| {
        let mut p = Process::new(template.process.clone());
        p.process.pid = pid;
        p.process.ppid = ppid;
        p.process.tids = vec![pid];
        p
    };
    image.processes = vec![mk(100, 200), mk(200, 100), mk(300, 300)];
    image
        .processes
        .extend((0..1000u32).map(|i| mk(1000 + i, 1001 + i)));
    image.processes.push(mk(2000, 1000));
    let bytes = crak_format::to_vec(&image).expect("writes");
    assert_bounded("process-tree-cycles", &bytes);
    checks::check_dump_views(&bytes);
}

// ---------------------------------------------------------------------------------------------
// Fuzz regressions, named after what broke.

/// `encode` went through a `serde_json::Value`, which keeps the last of duplicate keys, so a
/// model with `"pages": null, ..., "pages": []` was encoded while the model reader refuses it.
#[test]
fn regression_encode_refuses_duplicate_keys() {
    let text = br#"{"flags":0,"flags":0,"header":{"arch":62,"capture_time_ns":0,"hostname":"h",
"kernel_release":"k","page_size":4096,"special_mappings":[],"tool_version":"t",
"xsave_features":0,"xsave_size":0},"notes":[],"pipes":[],"processes":[],
"version":{"major":1,"minor":0}}"#;
    assert!(crak_format::from_json(std::str::from_utf8(text).unwrap()).is_err());
    let dir = tempfile::tempdir().expect("scratch dir");
    let input = dir.path().join("dup.json");
    let output = dir.path().join("out.crak");
    std::fs::write(&input, text).expect("write");
    let mut err = Vec::new();
    let code = crak_dump::run(
        vec![
            "crak-dump".into(),
            "encode".into(),
            input.clone().into(),
            "-o".into(),
            output.clone().into(),
        ],
        &mut std::io::sink(),
        &mut err,
    );
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("duplicate field"), "{err}");
    assert!(!output.exists());
    checks::check_encode(text);
}

// ---------------------------------------------------------------------------------------------
// Signed images (§3.17).

fn test_key() -> crak_format::auth::SecretKey {
    crak_format::auth::SecretKey::from_seed([7u8; 32])
}

/// Every record of a signed vector 002, one byte of its payload flipped and its CRC fixed (so
/// only the signature can tell): verification names that record, by kind and offset.
#[test]
fn signature_names_the_altered_record_of_every_kind() {
    use crak_format::auth::{sign, verify, AuthError};
    let bytes =
        std::fs::read(workspace_root().join("spec/vectors/valid/002-every-record-kind.bin"))
            .expect("vector 002");
    let key = test_key();
    let signed = sign(&bytes, &key).expect("signs");
    let parsed = crak_format::parse(&signed).expect("a signed image parses with a 1.0 reader");
    // The model holds the AUTH record (`auth`); nothing else changes.
    assert!(parsed.image.auth.is_some());
    assert_eq!(
        crak_format::Image {
            auth: None,
            ..parsed.image.clone()
        },
        crak_format::parse(&bytes).expect("parses").image,
        "signing changed the model"
    );
    let ok = verify(&signed, &key.public()).expect("verifies");
    let spans: Vec<_> = parsed
        .layout
        .records
        .iter()
        .filter(|s| s.kind != crak_format::record::kind::END)
        .cloned()
        .collect();
    assert_eq!(
        ok.records + 1,
        spans.len(),
        "every record but AUTH and END is signed"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for span in &spans {
        let start = span.payload_offset() as usize;
        let len = span.length as usize;
        if len == 0 {
            continue;
        }
        let mut v = signed.clone();
        v[start + len / 2] ^= 0x01;
        let crc = crc32c::crc32c(&v[span.offset as usize..start + len]);
        v[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
        let err = verify(&v, &key.public()).expect_err("an altered image is refused");
        if span.kind == crak_format::record::kind::AUTH {
            assert!(
                matches!(err, AuthError::BadSignature { offset } if offset == span.offset)
                    || matches!(err, AuthError::BadAuth { offset, .. } if offset == span.offset)
                    || matches!(err, AuthError::WrongKey { .. }),
                "AUTH altered: {err}"
            );
        } else {
            match &err {
                AuthError::Mismatch { kind, offset, .. } => {
                    assert_eq!((*kind, *offset), (span.kind, span.offset), "{err}");
                }
                other => panic!("record {:?} at {}: {other}", span.name(), span.offset),
            }
            let msg = err.to_string();
            assert!(msg.contains(&format!("offset {}", span.offset)), "{msg}");
        }
        kinds.insert(span.kind);
    }
    assert!(kinds.len() >= 15, "only {} kinds covered", kinds.len());
}

#[test]
fn signature_refuses_unsigned_and_other_keys() {
    use crak_format::auth::{sign, verify, AuthError, SecretKey};
    let bytes =
        std::fs::read(workspace_root().join("spec/vectors/valid/002-every-record-kind.bin"))
            .expect("vector 002");
    let key = test_key();
    assert_eq!(verify(&bytes, &key.public()), Err(AuthError::Unsigned));
    let signed = sign(&bytes, &key).expect("signs");
    let other = SecretKey::from_seed([8u8; 32]);
    assert!(matches!(
        verify(&signed, &other.public()),
        Err(AuthError::WrongKey { .. })
    ));
    // Re-signing replaces the AUTH record instead of adding a second one.
    let again = sign(&signed, &other).expect("re-signs");
    assert_eq!(again.len(), signed.len());
    verify(&again, &other.public()).expect("verifies with the new key");
    // Writing through the SigningWriter gives the same bytes as signing afterwards.
    let image = crak_format::parse(&bytes).expect("parses").image;
    let mut sw = crak_format::auth::SigningWriter::new(Vec::new());
    crak_format::write_image(&image, &mut sw).expect("writes");
    let streamed = sw.finish(&key).expect("finishes");
    let rewritten = crak_format::to_vec(&image).expect("writes");
    assert_eq!(streamed, sign(&rewritten, &key).expect("signs"));
}

#[test]
fn cli_keygen_sign_and_verify() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let key = dir.path().join("key");
    let signed = dir.path().join("signed.crak");
    let image = workspace_root().join("spec/vectors/valid/002-every-record-kind.bin");
    let run = |args: &[&std::ffi::OsStr]| {
        let mut argv: Vec<std::ffi::OsString> = vec!["crak-dump".into()];
        argv.extend(args.iter().map(|a| a.to_os_string()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crak_dump::run(argv, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    };
    let (code, _, err) = run(&["keygen".as_ref(), "-o".as_ref(), key.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let public = dir.path().join("key.pub");
    assert_eq!(std::fs::read_to_string(&public).unwrap().trim().len(), 64);
    let (code, _, err) = run(&[
        "sign".as_ref(),
        image.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "-o".as_ref(),
        signed.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let verify = |path: &Path| {
        run(&[
            "validate".as_ref(),
            "--verify".as_ref(),
            public.as_os_str(),
            path.as_os_str(),
        ])
    };
    let (code, out, err) = verify(&signed);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = verify(&image);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not signed"), "{out}");
    // Alter the PROCESS record's payload and fix its CRC.
    let mut bytes = std::fs::read(&signed).unwrap();
    let parsed = crak_format::parse(&bytes).unwrap();
    let span = parsed
        .layout
        .records
        .iter()
        .find(|s| s.kind == crak_format::record::kind::PROCESS)
        .cloned()
        .unwrap();
    drop(parsed);
    let start = span.payload_offset() as usize;
    let len = span.length as usize;
    bytes[start + 8] ^= 0x02;
    let crc = crc32c::crc32c(&bytes[span.offset as usize..start + len]);
    bytes[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
    let tampered = dir.path().join("tampered.crak");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, out, _) = verify(&tampered);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("PROCESS record at offset {}", span.offset)),
        "{out}"
    );
}
