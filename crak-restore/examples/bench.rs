//! Capture/restore benchmark: for several sizes of touched memory (a mix of random, zero and
//! file-backed pages), measures crak-capture's wall time and the time the program stays frozen,
//! the image size and crak-restore's time, beside baselines measured in the same run:
//! `process_vm_readv` of the same bytes plus a plain write (with fsync) of them to the same
//! filesystem for capture, and reading the image into fresh memory for restore; then the same
//! image restored with `--lazy`, compared with the smallest size's lazy restore.
//!
//! The capture is `--leave-running`, which forks a copy-on-write snapshot: column `downtime` is
//! the longest gap the program itself saw in its heartbeat (it beats every ~100 µs) around the
//! capture, `frozen` the freeze crak-capture reports (up to the resume after the fork) and
//! `reap` its second, short freeze to reap the snapshot child. `nofork` is the program's
//! downtime for the same capture with `--no-snapshot` (pages copied while frozen).
//!
//! `restore` and `lazy` run from starting crak-restore until the restored program's heartbeat
//! moves (the program runs again); `lazy all` is crak-restore's wall time with `--lazy`, which
//! checks the CRCs of the mapped pages once the program runs. `img/data` is the image's size
//! over the nonzero bytes the program touched; `rss` columns are the tools' peak resident set
//! sizes (`VmHWM`, MiB) from their `--json` summaries.
//!
//! `cargo build --release --bins && cargo run -p crak-restore --release --example bench -- [SIZES_MIB...] [--runs N] [--json PATH]`
//! Prints a table and writes JSON (default `target/bench-engine.json`); with `--runs N` every
//! figure is the median of N runs. Needs root (ptrace).

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

/// One run's figures for one size, by name (the JSON keys), in table order.
struct Row {
    mib: u64,
    m: Vec<(&'static str, f64)>,
}

impl Row {
    fn get(&self, key: &str) -> f64 {
        self.m
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

/// The median of every figure over several runs of one size.
fn median(runs: &[Row]) -> Row {
    let mut m = Vec::new();
    for (key, _) in &runs[0].m {
        let mut v: Vec<f64> = runs.iter().map(|r| r.get(key)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        m.push((*key, v[v.len() / 2]));
    }
    Row {
        mib: runs[0].mib,
        m,
    }
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

/// What one restore measured.
struct Restored {
    /// From starting crak-restore until the program's heartbeat moved.
    running: Duration,
    /// crak-restore's wall time (with `--lazy`, it checks the mapped pages after the program
    /// runs).
    wall: Duration,
    /// crak-restore's JSON summary.
    summary: serde_json::Value,
}

/// Runs `crak-restore --detach --json EXTRA IMAGE`, times it until the restored workload's
/// heartbeat moves (polled every ~50 µs), checks it keeps beating, and kills it.
fn restore_and_check(image: &Path, hb: &Path, extra: &[&str]) -> Restored {
    let before = read_beat(hb).last_ns;
    let t = Instant::now();
    let child = Command::new(bin_dir().join("crak-restore"))
        .args(["--detach", "--json"])
        .args(extra)
        .arg(image)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crak-restore");
    let mut running = None;
    while t.elapsed() < Duration::from_secs(30) {
        if read_beat(hb).last_ns != before {
            running = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let out = child.wait_with_output().expect("crak-restore");
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "crak-restore {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let running = running.expect("the restored workload never beat");
    let rpid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let summary = serde_json::from_slice(out.stderr.trim_ascii()).expect("crak-restore --json");
    let beats = read_beat(hb).iterations;
    std::thread::sleep(Duration::from_millis(300));
    let after = read_beat(hb).iterations;
    let _ = Command::new("kill")
        .arg("-9")
        .arg(rpid.to_string())
        .status();
    assert!(
        after > beats,
        "workload restored with {extra:?} does not run"
    );
    wait_gone(rpid);
    Restored {
        running,
        wall,
        summary,
    }
}

/// Waits until `pid` is gone (its PID is then free for the next restore).
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

    // Baseline: read the program's writable anonymous memory, write it to the same filesystem.
    let ranges = anon_ranges(pid, 0);
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
    // What an image must hold: the nonzero pages of that memory.
    let nonzero = buf
        .chunks(4096)
        .filter(|p| p.iter().any(|&b| b != 0))
        .count() as u64
        * 4096;
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

    // Each restore refuses a mapped file changed since the capture: the heartbeat file the
    // previous restored process wrote through its shared mapping gets its capture-time mtime
    // back first.
    let reset_mtime = || {
        fs::OpenOptions::new()
            .write(true)
            .open(&hb)
            .unwrap()
            .set_modified(beat_mtime)
            .unwrap()
    };
    let eager = restore_and_check(&image, &hb, &[]);
    reset_mtime();
    let lazy = restore_and_check(&image, &hb, &["--lazy"]);
    reset_mtime();
    let _ = fs::remove_file(&image);

    let kb_to_mib = |v: &serde_json::Value| v["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    Row {
        mib,
        m: vec![
            ("touched_anon_bytes", touched as f64),
            ("nonzero_touched_bytes", nonzero as f64),
            ("baseline_process_vm_readv_ms", ms(base_read)),
            ("baseline_write_fsync_ms", ms(base_write)),
            ("capture_ms", ms(capture)),
            ("downtime_ms", ms(downtime)),
            ("frozen_ms", tool_frozen_ms),
            ("reap_frozen_ms", reap_ms),
            ("no_snapshot_downtime_ms", ms(nofork_downtime)),
            ("no_snapshot_capture_ms", ms(nofork_capture)),
            ("image_bytes", image_bytes as f64),
            ("baseline_read_image_ms", ms(base_restore)),
            ("restore_ms", ms(eager.running)),
            ("restore_wall_ms", ms(eager.wall)),
            ("restore_lazy_ms", ms(lazy.running)),
            ("restore_lazy_wall_ms", ms(lazy.wall)),
            ("capture_peak_rss_mib", kb_to_mib(&summary)),
            ("restore_peak_rss_mib", kb_to_mib(&eager.summary)),
            ("restore_lazy_peak_rss_mib", kb_to_mib(&lazy.summary)),
        ],
    }
}

fn main() {
    let mut sizes = Vec::new();
    let mut json_path = PathBuf::from("target/bench-engine.json");
    let mut runs = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--json" {
            json_path = PathBuf::from(args.next().expect("--json PATH"));
        } else if a == "--runs" {
            runs = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .expect("--runs N (N >= 1)");
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
        .map(|&m| {
            let runs: Vec<Row> = (0..runs).map(|_| run_one(&work, &workload, m)).collect();
            median(&runs)
        })
        .collect();
    // Column, figure, width, decimals; ratios are computed below.
    let cols: &[(&str, &str, usize, usize)] = &[
        ("MiB", "", 5, 0),
        ("read", "baseline_process_vm_readv_ms", 7, 1),
        ("write", "baseline_write_fsync_ms", 7, 1),
        ("capture", "capture_ms", 8, 1),
        ("cap/base", "capture_ratio_to_read_plus_write", 8, 2),
        ("downtime", "downtime_ms", 8, 1),
        ("frozen", "frozen_ms", 7, 1),
        ("reap", "reap_frozen_ms", 5, 1),
        ("nofork", "no_snapshot_downtime_ms", 7, 1),
        ("image MiB", "image_mib", 9, 1),
        ("img/data", "image_ratio_to_nonzero", 8, 4),
        ("base rst", "baseline_read_image_ms", 8, 1),
        ("restore", "restore_ms", 8, 1),
        ("rst/base", "restore_ratio_to_read", 8, 2),
        ("lazy", "restore_lazy_ms", 6, 1),
        ("lazy/64", "restore_lazy_ratio_to_smallest", 7, 2),
        ("lazy all", "restore_lazy_wall_ms", 8, 1),
        ("rss cap", "capture_peak_rss_mib", 7, 1),
        ("rss rst", "restore_peak_rss_mib", 7, 1),
        ("rss lazy", "restore_lazy_peak_rss_mib", 8, 1),
    ];
    let smallest_lazy = rows.first().map_or(f64::NAN, |r| r.get("restore_lazy_ms"));
    let line: Vec<String> = cols.iter().map(|(h, _, w, _)| format!("{h:>w$}")).collect();
    println!("{}", line.join(" "));
    let mut json = Vec::new();
    for r in &rows {
        let mut m = r.m.clone();
        m.push((
            "capture_ratio_to_read_plus_write",
            r.get("capture_ms")
                / (r.get("baseline_process_vm_readv_ms") + r.get("baseline_write_fsync_ms")),
        ));
        m.push(("image_mib", r.get("image_bytes") / (1u64 << 20) as f64));
        m.push((
            "image_ratio_to_nonzero",
            r.get("image_bytes") / r.get("nonzero_touched_bytes"),
        ));
        m.push((
            "restore_ratio_to_read",
            r.get("restore_ms") / r.get("baseline_read_image_ms"),
        ));
        m.push((
            "restore_lazy_ratio_to_smallest",
            r.get("restore_lazy_ms") / smallest_lazy,
        ));
        let full = Row { mib: r.mib, m };
        let line: Vec<String> = cols
            .iter()
            .map(|(_, key, w, d)| {
                if key.is_empty() {
                    format!("{:>w$}", full.mib)
                } else {
                    format!("{:>w$.d$}", full.get(key))
                }
            })
            .collect();
        println!("{}", line.join(" "));
        let mut obj = serde_json::Map::new();
        obj.insert("size_mib".into(), full.mib.into());
        obj.insert("runs".into(), runs.into());
        for (k, v) in &full.m {
            obj.insert((*k).into(), (*v).into());
        }
        json.push(serde_json::Value::Object(obj));
    }
    if let Some(dir) = json_path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(&json_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", json_path.display());
    let _ = fs::remove_dir_all(&work);
}
