//! Time and peak memory of the crak-dump commands on a large image, against reading the file.
//!
//! ```text
//! cargo build --release -p crak-dump
//! cargo run -p crak-dump --release --example dump-bench [-- OUT.json]
//! ```
//!
//! Writes an image of one process with 1 GiB of random page data (`CRAK_BENCH_MIB` changes
//! the size; a known string is planted in the last page) to a scratch directory, then runs the
//! real `crak-dump` binary (next to this example's directory) on it: the summary, `--json`,
//! `--json --pages`, `validate` from the file and from a pipe, `grep` (literal and `-e`),
//! `mem` (the whole mapping raw, and 64 KiB hexdumped), `backtrace`, `strings -n 16`, `diff`
//! of the image with itself and `core`. Each run's wall time and peak RSS (the child's
//! `ru_maxrss` from GNU time, else its VmHWM sampled from /proc) is reported with the
//! throughput over the image size. The baseline, in the same run and from the same (warm) page cache, is `cat IMAGE`
//! into /dev/null. It prints a table and writes the figures as JSON to OUT.json (default:
//! `target/bench-dump.json`).

use crak_format::record::header::{Header, ARCH_X86_64};
use crak_format::record::process::ProcessRecord;
use crak_format::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use crak_format::record::Record;
use crak_format::{Writer, CURRENT_VERSION};
use serde_json::json;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
const RUN_PAGES: u64 = 256;
const NEEDLE: &[u8] = b"crak bench needle 7d41";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
}

struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes the image, streaming; returns its size.
fn write_image(path: &Path, data_bytes: u64) -> io::Result<u64> {
    let pid = 4242;
    let base = 0x7f00_0000_0000u64;
    let total_pages = (data_bytes / PAGE).max(1);
    let file = std::fs::File::create(path)?;
    let mut w = Writer::new(
        io::BufWriter::with_capacity(1 << 20, file),
        CURRENT_VERSION,
        0,
    )?;
    w.write_record(&Record::Header(Header {
        arch: ARCH_X86_64,
        page_size: PAGE as u32,
        capture_time_ns: 0,
        xsave_features: 0x7,
        xsave_size: 832,
        kernel_release: "bench".into(),
        hostname: "bench".into(),
        tool_version: "crak-dump bench".into(),
        special_mappings: vec![],
    }))?;
    w.write_record(&Record::Process(ProcessRecord {
        pid,
        comm: "bench".into(),
        tids: vec![pid],
        ..ProcessRecord::default()
    }))?;
    w.write_record(&Record::Creds(crak_format::record::creds::Creds {
        pid,
        ..Default::default()
    }))?;
    w.write_record(&Record::Mm(crak_format::record::mm::Mm {
        pid,
        ..Default::default()
    }))?;
    let mut thread = crak_format::record::thread::Thread {
        pid,
        tid: pid,
        ..Default::default()
    };
    thread.gpr.rip = base;
    thread.gpr.rsp = base + PAGE;
    thread.gpr.cs = 0x33;
    thread.gpr.ss = 0x2b;
    w.write_record(&Record::Thread(thread))?;
    let mut area = vec![0u8; 832];
    area[512] = 0x3; // XSTATE_BV: x87 and SSE
    w.write_record(&Record::Xsave(crak_format::record::xsave::Xsave {
        pid,
        tid: pid,
        xstate_bv: 0x3,
        area: area.into(),
    }))?;
    w.write_record(&Record::Vma(Vma {
        pid,
        kind: VmaKind::Anon,
        start: base,
        end: base + total_pages * PAGE,
        prot: PROT_READ | PROT_WRITE,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
        path: "".into(),
    }))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; (RUN_PAGES * PAGE) as usize];
    let mut page = 0;
    while page < total_pages {
        let n = RUN_PAGES.min(total_pages - page);
        let chunk = &mut buf[..(n * PAGE) as usize];
        rng.fill(chunk);
        if page + n == total_pages {
            let at = chunk.len() - 1024;
            chunk[at..at + NEEDLE.len()].copy_from_slice(NEEDLE);
        }
        w.write_pages(pid, base + page * PAGE, n, chunk)?;
        page += n;
    }
    w.finish()?.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A child's VmHWM in KiB, while it runs.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One measured command.
struct Measure {
    name: String,
    seconds: f64,
    hwm_kib: u64,
    code: i32,
}

/// Runs `cmd` (stdout to /dev/null, stdin from `stdin` when given) and measures its peak
/// RSS: the child's `ru_maxrss` as GNU time reports it (`/usr/bin/time -f %M`) when that is
/// installed, else its VmHWM sampled from /proc every 2 ms while it runs (which can miss a peak
/// just before exit).
fn measure(name: &str, cmd: &mut Command, stdin: Option<&Path>) -> io::Result<Measure> {
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = std::env::temp_dir().join(format!("crak-dump-bench-rss-{}", std::process::id()));
    let mut wrapped;
    let cmd = if gnu_time.exists() {
        wrapped = Command::new(gnu_time);
        wrapped
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        &mut wrapped
    } else {
        cmd
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p)?),
        None => cmd.stdin(Stdio::null()),
    };
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let mut hwm = 0;
    let status = loop {
        if let Some(v) = vm_hwm_kib(child.id()) {
            hwm = hwm.max(v);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let seconds = start.elapsed().as_secs_f64();
    if gnu_time.exists() {
        // Only the measured command's figure: GNU time's own VmHWM is not wanted.
        hwm = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        let _ = std::fs::remove_file(&rss_file);
    }
    Ok(Measure {
        name: name.to_string(),
        seconds,
        hwm_kib: hwm,
        code: status.code().unwrap_or(-1),
    })
}

fn real_main() -> io::Result<()> {
    let out_json: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-dump.json"));
    let mib: u64 = std::env::var("CRAK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let exe = std::env::current_exe()?;
    let dump = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("crak-dump"))
        .filter(|p| p.exists())
        .ok_or_else(|| io::Error::other("crak-dump binary not found: cargo build -p crak-dump"))?;
    let dir = std::env::temp_dir().join(format!("crak-dump-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let img = dir.join("big.crak");
    let t = Instant::now();
    let size = write_image(&img, mib << 20)?;
    eprintln!(
        "bench: wrote {} MiB image in {:.1} s",
        size >> 20,
        t.elapsed().as_secs_f64()
    );
    let core = dir.join("big.core");
    let d = || Command::new(&dump);
    let runs: Vec<(&str, Command, Option<&Path>)> = vec![
        (
            "baseline: cat",
            {
                let mut c = Command::new("cat");
                c.arg(&img);
                c
            },
            None,
        ),
        (
            "summary",
            {
                let mut c = d();
                c.arg(&img);
                c
            },
            None,
        ),
        (
            "--json",
            {
                let mut c = d();
                c.arg(&img).arg("--json");
                c
            },
            None,
        ),
        (
            "--json --pages",
            {
                let mut c = d();
                c.arg(&img).args(["--json", "--pages"]);
                c
            },
            None,
        ),
        (
            "validate FILE",
            {
                let mut c = d();
                c.arg("validate").arg(&img);
                c
            },
            None,
        ),
        (
            "validate - (pipe)",
            {
                let mut c = d();
                c.args(["validate", "-"]);
                c
            },
            Some(img.as_path()),
        ),
        (
            "grep",
            {
                let mut c = d();
                c.arg("grep")
                    .arg(&img)
                    .arg(std::str::from_utf8(NEEDLE).unwrap_or("x"));
                c
            },
            None,
        ),
        (
            "grep -e (regex)",
            {
                let mut c = d();
                c.arg("grep")
                    .arg("-e")
                    .arg(&img)
                    .arg("crak bench needle [0-9a-f]+");
                c
            },
            None,
        ),
        (
            "mem --vma 0 --raw",
            {
                let mut c = d();
                c.arg("mem").arg(&img).args(["--vma", "0", "--raw"]);
                c
            },
            None,
        ),
        (
            "mem (last 64 KiB)",
            {
                let mut c = d();
                let last = 0x7f00_0000_0000u64 + (mib << 20) - (64 << 10);
                c.arg("mem").arg(&img).arg(format!("{last:#x}+0x10000"));
                c
            },
            None,
        ),
        (
            "backtrace",
            {
                let mut c = d();
                c.arg("backtrace").arg(&img);
                c
            },
            None,
        ),
        (
            "strings -n 16",
            {
                let mut c = d();
                c.arg("strings").args(["-n", "16"]).arg(&img);
                c
            },
            None,
        ),
        (
            "diff IMAGE IMAGE",
            {
                let mut c = d();
                c.arg("diff").arg(&img).arg(&img);
                c
            },
            None,
        ),
        (
            "core",
            {
                let mut c = d();
                c.arg("core").arg(&img).arg("-o").arg(&core);
                c
            },
            None,
        ),
    ];
    // Warm the page cache so every command reads from memory, as the baseline does.
    measure("warm-up", Command::new("cat").arg(&img), None)?;
    let mut results = Vec::new();
    for (name, mut cmd, stdin) in runs {
        let m = measure(name, &mut cmd, stdin)?;
        eprintln!("bench: {name}: {:.2} s", m.seconds);
        results.push(m);
    }
    if std::env::var_os("CRAK_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("bench: kept {}", dir.display());
    }

    let gib = size as f64 / (1u64 << 30) as f64;
    println!("image: {:.2} GiB ({size} bytes)", gib);
    println!(
        "{:<22} {:>9} {:>10} {:>12} {:>5}",
        "command", "seconds", "GiB/s", "peak RSS", "exit"
    );
    for m in &results {
        println!(
            "{:<22} {:>9.3} {:>10.2} {:>8} MiB {:>5}",
            m.name,
            m.seconds,
            gib / m.seconds,
            m.hwm_kib / 1024,
            m.code
        );
    }
    let value = json!({
        "image_bytes": size,
        "results": results.iter().map(|m| json!({
            "command": m.name,
            "seconds": m.seconds,
            "gib_per_s": gib / m.seconds,
            "vm_hwm_kib": m.hwm_kib,
            "exit": m.code,
        })).collect::<Vec<_>>(),
    });
    if let Some(parent) = out_json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out_json, serde_json::to_string_pretty(&value)? + "\n")?;
    eprintln!("bench: wrote {}", out_json.display());
    Ok(())
}
