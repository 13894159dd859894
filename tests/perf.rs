//! Restore speed paths, live: an image file restored eagerly (pages read by the restored
//! process itself from the file) and lazily (`--lazy`: pages mapped from the file), each
//! checked by the program's own checksum and by what `/proc` shows afterwards; and a page run
//! damaged in the file, which an eager restore refuses before anything runs and a lazy one
//! finds once the process runs, killing it. Timings are the benchmark's
//! (`crak-restore/examples/bench.rs`), not asserted here.
//!
//! Needs root, like tests/live.rs; the tests run one at a time.

use crak_tests::{bin, serial, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Starts tests/live/bigmem.c (64 MiB of data in one run) and captures it, killing it.
/// Returns the image and the program's PID.
fn captured_bigmem(case: &mut Scratch) -> (PathBuf, i32) {
    let prog = case.compile("bigmem");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(30));
    (case.capture(pid, &[]), pid)
}

/// Whether any fd of `pid` is the file `img`.
fn holds_fd_of(pid: i32, img: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == img))
        })
        .unwrap_or(false)
}

/// Bytes of `pid`'s mappings of `img`.
fn mapped_bytes_of(pid: i32, img: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let name = img.to_string_lossy();
    maps.lines()
        .filter(|l| l.ends_with(name.as_ref()))
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

/// Flips one byte near the end of the image's largest page run, or of its smallest (so a
/// second call mends it); returns the file offset of that run's PAGES record.
fn damage_run(case: &Scratch, img: &Path, largest: bool) -> u64 {
    let mut bytes = std::fs::read(img).expect("read image");
    let (at, record) = {
        let (parsed, _) = crak_format::read::parse_deferring_page_crcs(&bytes)
            .unwrap_or_else(|e| case.fail(&e.to_string()));
        let p = &parsed.image.processes[0];
        let (i, run) = p
            .pages
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| {
                if largest {
                    r.nr_pages
                } else {
                    u64::MAX - r.nr_pages
                }
            })
            .expect("a page run");
        let data = run.data.as_bytes();
        let at = data.as_ptr() as usize - bytes.as_ptr() as usize + data.len() - 100;
        let span = parsed
            .layout
            .find(crak_format::record::kind::PAGES, Some(p.pid()), i)
            .expect("span of the run");
        (at, span.offset)
    };
    bytes[at] ^= 0x40;
    std::fs::write(img, &bytes).expect("write image");
    record
}

#[test]
fn eager_restore_from_a_file_keeps_neither_fd_nor_mapping_of_the_image() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Scratch::new("crak-perf-");
    let (img, _) = captured_bigmem(&mut case);
    let pid = case.restore_detached(&img, &[]);
    if holds_fd_of(pid, &img) {
        case.fail("the restored process holds an fd of the image");
    }
    if mapped_bytes_of(pid, &img) != 0 {
        case.fail("an eager restore left mappings of the image");
    }
    case.go_and_expect_pass(pid);
}

#[test]
fn lazy_restore_of_64mib_maps_the_image_and_passes_its_checksum() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Scratch::new("crak-perf-");
    let (img, _) = captured_bigmem(&mut case);
    let pid = case.restore_detached(&img, &["--lazy"]);
    let mapped = mapped_bytes_of(pid, &img);
    // The 64 MiB mapping may share its VMA with a few neighbouring pages of other memory:
    // nearly all of it, not all, is one stored run.
    if mapped < 63 << 20 {
        case.fail(&format!(
            "--lazy mapped {mapped} bytes of the image, expected the 64 MiB run"
        ));
    }
    if holds_fd_of(pid, &img) {
        case.fail("the restored process holds an fd of the image");
    }
    case.go_and_expect_pass(pid);
}

/// Restores the damaged image with `args`: it must fail with exit status 1 and a `bad-crc`
/// error naming the PAGES record, print no PID, and leave no process behind.
fn expect_bad_crc(case: &mut Scratch, img: &Path, pid: i32, record: u64, args: &[&str]) -> String {
    let mut a = vec!["--detach"];
    a.extend_from_slice(args);
    let cmd = case.restore_cmd(img, &a);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(1) {
        case.fail(&format!(
            "{args:?}: a damaged page run did not fail with status 1"
        ));
    }
    let named = format!("PAGES record at offset {record:#x}");
    if !err.contains("bad-crc") || !err.contains(&named) {
        case.fail(&format!(
            "{args:?}: the error does not name `{named}` and bad-crc"
        ));
    }
    if !o.stdout.is_empty() {
        case.fail("a PID was printed");
    }
    // The image keeps the saved PID, free since the capture: nothing may hold it now.
    if !crak_tests::wait_gone(pid, Duration::from_secs(5)) {
        case.pids.push(pid);
        case.fail(&format!(
            "{args:?}: process {pid} is alive after the failed restore"
        ));
    }
    err
}

#[test]
fn a_damaged_page_run_is_refused_eagerly_and_kills_a_lazy_restore() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Scratch::new("crak-perf-");
    let (img, pid) = captured_bigmem(&mut case);
    let record = damage_run(&case, &img, true);
    // Eager: checked before anything is created.
    let err = expect_bad_crc(&mut case, &img, pid, record, &[]);
    if err.contains("killed") {
        case.fail("the eager restore built a process before checking the pages");
    }
    // Lazy: the run is mapped, the process runs, the check finds the damage and kills it.
    let err = expect_bad_crc(&mut case, &img, pid, record, &["--lazy"]);
    if !err.contains(&format!("the restored process {pid} was killed")) {
        case.fail("the lazy restore does not say it killed the restored process");
    }
    damage_run(&case, &img, true);
    // A damaged run that a lazy restore copies (the smallest, far under the size it maps) is
    // found before the process runs: only the half-built process is killed.
    let record = damage_run(&case, &img, false);
    let err = expect_bad_crc(&mut case, &img, pid, record, &["--lazy"]);
    if !err.contains("half-built") {
        case.fail("a damaged copied run was not found before the process ran");
    }
    // The undamaged image restores lazily and passes (the bytes flipped back).
    damage_run(&case, &img, false);
    let pid = case.restore_detached(&img, &["--lazy"]);
    case.go_and_expect_pass(pid);
}

#[test]
fn lazy_restore_from_standard_input_is_refused() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Scratch::new("crak-perf-");
    let (img, _) = captured_bigmem(&mut case);
    let mut cmd = Command::new(bin("crak-restore"));
    cmd.args(["--detach", "--lazy", "-"])
        .stdin(std::fs::File::open(&img).expect("image"));
    let o = case.run(cmd);
    if o.status.code() != Some(2) || !String::from_utf8_lossy(&o.stderr).contains("--lazy") {
        case.fail("--lazy from standard input was not refused with exit status 2");
    }
    if !o.stdout.is_empty() {
        case.fail("a PID was printed");
    }
}
