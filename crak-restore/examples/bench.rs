//! Capture/restore benchmark: for several sizes of touched memory (a mix of random, zero and
//! file-backed pages), measures crak-capture's wall time and the time the program stays frozen,
//! the image size and crak-restore's time, beside baselines measured in the same run:
//! `process_vm_readv` of the same bytes plus a plain write (with fsync) of them to the same
//! filesystem for capture, and reading the image into fresh memory for restore; then the same
//! image restored with `--lazy` (column `lazy`, not compared with a baseline).
//!
//! The capture is `--leave-running`, which forks a copy-on-write snapshot: column `downtime` is
//! the longest gap the program itself saw in its heartbeat (it beats every ~100 µs) around the
//! capture, `frozen` the freeze crak-capture reports (up to the resume after the fork) and
//! `reap` its second, short freeze to reap the snapshot child. `nofork` is the program's
//! downtime for the same capture with `--no-snapshot` (pages copied while frozen).
//!
//! `cargo build --release --bins && cargo run -p crak-restore --release --example bench -- [SIZES_MIB...] [--json PATH]`
//! Prints a table and writes JSON (default `target/bench-engine.json`). Needs root (ptrace).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKLOAD_C: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
struct beat { volatile uint64_t iterations, max_gap_ns, last_ns, ready, reset, checksum; };
static uint64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec; }
int main(int argc, char **argv) {
  size_t mib = strtoull(argv[1], 0, 10), total = mib << 20;
  size_t rnd = total / 2, zero = total / 4, filed = total - rnd - zero;
  int hb = open(argv[2], O_RDWR); struct beat *b = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, hb, 0);
  uint64_t *r = mmap(0, rnd, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  uint64_t x = 88172645463325252ull, sum = 0;
  for (size_t i = 0; i < rnd / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; r[i] = x; sum += x; }
  char *z = mmap(0, zero, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  memset(z, 0, zero);
  int df = open(argv[3], O_RDONLY); char *f = mmap(0, filed, PROT_READ, MAP_PRIVATE, df, 0);
  for (size_t i = 0; i < filed; i += 4096) sum += (unsigned char)f[i];
  b->checksum = sum; b->last_ns = now_ns(); b->ready = 1;
  for (;;) {
    uint64_t t = now_ns(), gap = t - b->last_ns;
    if (b->reset) { b->max_gap_ns = 0; b->reset = 0; } else if (gap > b->max_gap_ns) b->max_gap_ns = gap;
    b->last_ns = t; b->iterations++;
    usleep(100);
  }
}
"#;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Beat {
    iterations: u64,
    max_gap_ns: u64,
    last_ns: u64,
    ready: u64,
    reset: u64,
    checksum: u64,
}

fn read_beat(path: &Path) -> Beat {
    let b = fs::read(path).expect("heartbeat");
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    Beat {
        iterations: w(0),
        max_gap_ns: w(1),
        last_ns: w(2),
        ready: w(3),
        reset: w(4),
        checksum: w(5),
    }
}

fn set_reset(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&1u64.to_le_bytes(), 32).unwrap();
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bench → target/release
    exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    mib: u64,
    touched_bytes: u64,
    base_read_ms: f64,
    base_write_ms: f64,
    capture_ms: f64,
    downtime_ms: f64,
    tool_frozen_ms: f64,
    reap_ms: f64,
    nofork_downtime_ms: f64,
    nofork_capture_ms: f64,
    image_bytes: u64,
    base_restore_ms: f64,
    restore_ms: f64,
    lazy_ms: f64,
}

/// One `crak-capture PID -o IMAGE --leave-running --json EXTRA`: its wall time, the longest
/// heartbeat gap the program saw meanwhile, and crak-capture's JSON summary.
fn capture(
    pid: i32,
    image: &Path,
    hb: &Path,
    extra: &[&str],
) -> (Duration, Duration, serde_json::Value) {
    set_reset(hb);
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    let out = Command::new(bin_dir().join("crak-capture"))
        .arg(pid.to_string())
        .arg("-o")
        .arg(image)
        .args(["--leave-running", "--json"])
        .args(extra)
        .output()
        .expect("crak-capture");
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "crak-capture {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(50));
    let gap = Duration::from_nanos(read_beat(hb).max_gap_ns);
    let summary = serde_json::from_slice(out.stderr.trim_ascii()).expect("crak-capture --json");
    (wall, gap, summary)
}

fn anon_ranges(pid: i32, min: u64) -> Vec<(u64, usize)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let range = it.next().unwrap();
        let perms = it.next().unwrap();
        let inode = it.nth(2).unwrap_or("0");
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if perms.starts_with("rw") && inode == "0" && b - a >= min {
            out.push((a, (b - a) as usize));
        }
    }
    out
}

/// Waits until `pid` is gone (its PID is then free for the next restore).
/// Runs `crak-restore --detach EXTRA IMAGE`, checks the restored workload's heartbeat moves,
/// kills it and returns the restore's wall time.
fn restore_and_check(image: &Path, hb: &Path, extra: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(bin_dir().join("crak-restore"))
        .arg("--detach")
        .args(extra)
        .arg(image)
        .output()
        .expect("crak-restore");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "crak-restore {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let before = read_beat(hb).iterations;
    std::thread::sleep(Duration::from_millis(300));
    let after = read_beat(hb).iterations;
    let _ = Command::new("kill")
        .arg("-9")
        .arg(rpid.to_string())
        .status();
    assert!(
        after > before,
        "workload restored with {extra:?} does not run"
    );
    wait_gone(rpid);
    elapsed
}

fn wait_gone(pid: i32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_one(work: &Path, workload: &Path, mib: u64) -> Row {
    let hb = work.join("beat");
    fs::write(&hb, vec![0u8; 4096]).unwrap();
    let data = work.join("data");
    let filed = (mib << 20) - (mib << 20) / 2 - (mib << 20) / 4;
    {
        let mut f = File::create(&data).unwrap();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = filed;
        while left > 0 {
            for c in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
    let mut child = Command::new(workload)
        .arg(mib.to_string())
        .arg(&hb)
        .arg(&data)
        .stdin(Stdio::null())
        .spawn()
        .expect("start workload");
    let pid = child.id() as i32;
    while read_beat(&hb).ready == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    // Baseline: read the touched anonymous bytes, write them to the same filesystem.
    let ranges = anon_ranges(pid, 1 << 20);
    let touched: usize = ranges.iter().map(|r| r.1).sum();
    let mut buf = vec![0u8; touched];
    let t = Instant::now();
    crak_restore::sys::mem::read_ranges(pid, &ranges, &mut buf).expect("process_vm_readv");
    let base_read = t.elapsed();
    let t = Instant::now();
    {
        let mut f = File::create(work.join("baseline.bin")).unwrap();
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
    }
    let base_write = t.elapsed();
    drop(buf);
    let _ = fs::remove_file(work.join("baseline.bin"));

    // Captures that leave the workload running: first with --no-snapshot (pages copied while
    // frozen), then forked; downtime from its heartbeat. The forked image is restored below.
    let image = work.join("bench.crak");
    let (nofork_capture, nofork_downtime, _) = capture(pid, &image, &hb, &["--no-snapshot"]);
    let (capture, downtime, summary) = capture(pid, &image, &hb, &[]);
    assert_eq!(
        summary["forked"], true,
        "the capture did not fork: {summary}"
    );
    let tool_frozen_ms = summary["frozen_ms"].as_f64().unwrap_or(f64::NAN);
    let reap_ms = summary["reap_frozen_ms"].as_f64().unwrap_or(f64::NAN);
    let _ = child.kill();
    let _ = child.wait();
    let image_bytes = fs::metadata(&image).unwrap().len();
    // The heartbeat file's time as captured: the eager restore's writes change it, and the
    // lazy restore, like any, refuses a mapped file changed since the capture.
    let beat_mtime = fs::metadata(&hb).unwrap().modified().unwrap();

    // Baseline restore: read the image into fresh memory.
    let t = Instant::now();
    {
        let mut f = File::open(&image).unwrap();
        let mut v = Vec::with_capacity(image_bytes as usize);
        f.read_to_end(&mut v).unwrap();
        std::hint::black_box(&v);
    }
    let base_restore = t.elapsed();

    let restore = restore_and_check(&image, &hb, &[]);
    // The same image restored with --lazy; the heartbeat file the restored process wrote through
    // its shared mapping gets its capture-time mtime back, or restore would refuse it as changed.
    fs::OpenOptions::new()
        .write(true)
        .open(&hb)
        .unwrap()
        .set_modified(beat_mtime)
        .unwrap();
    let lazy = restore_and_check(&image, &hb, &["--lazy"]);
    let _ = fs::remove_file(&image);

    Row {
        mib,
        touched_bytes: touched as u64,
        base_read_ms: ms(base_read),
        base_write_ms: ms(base_write),
        capture_ms: ms(capture),
        downtime_ms: ms(downtime),
        tool_frozen_ms,
        reap_ms,
        nofork_downtime_ms: ms(nofork_downtime),
        nofork_capture_ms: ms(nofork_capture),
        image_bytes,
        base_restore_ms: ms(base_restore),
        restore_ms: ms(restore),
        lazy_ms: ms(lazy),
    }
}

fn main() {
    let mut sizes = Vec::new();
    let mut json_path = PathBuf::from("target/bench-engine.json");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--json" {
            json_path = PathBuf::from(args.next().expect("--json PATH"));
        } else if let Ok(n) = a.parse::<u64>() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes = vec![64, 256, 1024];
    }
    let work = std::env::temp_dir().join(format!("crak-bench-{}", std::process::id()));
    fs::create_dir_all(&work).unwrap();
    let src = work.join("workload.c");
    fs::write(&src, WORKLOAD_C).unwrap();
    let workload = work.join("workload");
    let st = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&workload)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success());

    let rows: Vec<Row> = sizes
        .iter()
        .map(|&m| run_one(&work, &workload, m))
        .collect();
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>6} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10}",
        "MiB",
        "read ms",
        "write ms",
        "capture",
        "cap/base",
        "downtime",
        "frozen",
        "reap",
        "nofork",
        "nofork cap",
        "image MiB",
        "base rst",
        "restore",
        "rst/base",
        "lazy",
        "touched"
    );
    let mut json = Vec::new();
    for r in &rows {
        let cap_ratio = r.capture_ms / (r.base_read_ms + r.base_write_ms);
        let rst_ratio = r.restore_ms / r.base_restore_ms;
        println!(
            "{:>6} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>9.1} {:>8.1} {:>6.1} {:>9.1} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>8.2} {:>9.1} {:>10}",
            r.mib,
            r.base_read_ms,
            r.base_write_ms,
            r.capture_ms,
            cap_ratio,
            r.downtime_ms,
            r.tool_frozen_ms,
            r.reap_ms,
            r.nofork_downtime_ms,
            r.nofork_capture_ms,
            r.image_bytes as f64 / (1 << 20) as f64,
            r.base_restore_ms,
            r.restore_ms,
            rst_ratio,
            r.lazy_ms,
            r.touched_bytes
        );
        json.push(serde_json::json!({
            "size_mib": r.mib,
            "touched_anon_bytes": r.touched_bytes,
            "baseline_process_vm_readv_ms": r.base_read_ms,
            "baseline_write_fsync_ms": r.base_write_ms,
            "capture_ms": r.capture_ms,
            "capture_ratio_to_read_plus_write": cap_ratio,
            "downtime_ms": r.downtime_ms,
            "frozen_ms": r.tool_frozen_ms,
            "reap_frozen_ms": r.reap_ms,
            "no_snapshot_downtime_ms": r.nofork_downtime_ms,
            "no_snapshot_capture_ms": r.nofork_capture_ms,
            "image_bytes": r.image_bytes,
            "baseline_read_image_ms": r.base_restore_ms,
            "restore_ms": r.restore_ms,
            "restore_ratio_to_read": rst_ratio,
            "restore_lazy_ms": r.lazy_ms,
        }));
    }
    if let Some(dir) = json_path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(&json_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", json_path.display());
    let _ = fs::remove_dir_all(&work);
}
