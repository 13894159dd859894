//! Throughput of the crak-format codec against plain memory baselines measured in the same run.
//!
//! ```text
//! cargo run -p crak-format --release --example format-bench [-- OUT.json]
//! cargo run -p crak-format --release --example format-bench -- emit > image.crak
//! cargo run -p crak-format --release --example format-bench -- validate-stdin < image.crak
//! ```
//!
//! The default mode builds an image of 1 GiB of random page data in memory (`CRAK_BENCH_MIB`
//! changes the size), then times, best of several runs each: `parse` (framing, every CRC,
//! ordering, END digest), `to_vec` (writing it again), a bare CRC32C pass, and two baselines
//! over the same bytes, `memcpy` into a cache-sized buffer and a 64-bit word sum. It then runs
//! itself twice, `emit | validate-stdin`, to stream-validate the same amount of data from a pipe
//! with `read_stream_metadata` and report that process's peak RSS (VmHWM). It prints a table and
//! writes the figures as JSON to OUT.json (default: `target/bench-format.json`).
//!
//! `emit` writes a random image to stdout without holding it; `validate-stdin` stream-reads an
//! image from stdin and prints one JSON line with its size, time and VmHWM.

use crak_format::record::header::{Header, ARCH_X86_64};
use crak_format::record::process::ProcessRecord;
use crak_format::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use crak_format::record::Record;
use crak_format::{parse, read_stream_metadata, to_vec, Writer, CURRENT_VERSION};
use serde_json::json;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PAGE: u32 = 4096;
/// Pages per PAGES record (1 MiB runs).
const RUN_PAGES: u64 = 256;
const RUNS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("emit") => emit(io::stdout().lock(), bench_bytes()),
        Some("validate-stdin") => validate_stdin(),
        out => in_memory(out.map(Into::into)),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
}

fn bench_bytes() -> u64 {
    let mib: u64 = std::env::var("CRAK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    mib.max(1) << 20
}

/// xorshift64*: fast, deterministic, good enough to defeat compression and zero-page tricks.
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

/// Writes an image of one process with `data_bytes` of random page data to `w`, streaming.
fn emit<W: Write>(w: W, data_bytes: u64) -> io::Result<()> {
    let header = Header {
        arch: ARCH_X86_64,
        page_size: PAGE,
        capture_time_ns: 0,
        xsave_features: 0x7,
        xsave_size: 832,
        kernel_release: "bench".into(),
        hostname: "bench".into(),
        tool_version: "crak-format bench".into(),
        special_mappings: vec![],
    };
    let pid = 4242;
    let base = 0x7f00_0000_0000u64;
    let mut w = Writer::new(io::BufWriter::with_capacity(1 << 20, w), CURRENT_VERSION, 0)?;
    w.write_record(&Record::Header(header))?;
    w.write_record(&Record::Process(ProcessRecord {
        pid,
        comm: "bench".into(),
        tids: vec![pid],
        ..ProcessRecord::default()
    }))?;
    w.write_record(&Record::Vma(Vma {
        pid,
        kind: VmaKind::Anon,
        start: base,
        end: base + data_bytes.div_ceil(u64::from(PAGE)) * u64::from(PAGE),
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
    let mut buf = vec![0u8; (RUN_PAGES * u64::from(PAGE)) as usize];
    let total_pages = data_bytes / u64::from(PAGE);
    let mut page = 0;
    while page < total_pages {
        let n = RUN_PAGES.min(total_pages - page);
        let chunk = &mut buf[..(n * u64::from(PAGE)) as usize];
        rng.fill(chunk);
        w.write_pages(pid, base + page * u64::from(PAGE), n, chunk)?;
        page += n;
    }
    w.finish()?.flush()
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Counts bytes that pass through.
struct Counting<R>(R, u64);

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

fn validate_stdin() -> io::Result<()> {
    let start = Instant::now();
    let mut input = Counting(io::stdin().lock(), 0);
    let parsed = read_stream_metadata(&mut input).map_err(io::Error::other)?;
    let secs = start.elapsed().as_secs_f64();
    let out = json!({
        "bytes": input.1,
        "seconds": secs,
        "gib_per_s": input.1 as f64 / secs / (1u64 << 30) as f64,
        "records": parsed.layout.records.len(),
        "pages": parsed.end.page_count,
        "vm_hwm_kib": vm_hwm_kib(),
    });
    println!("{out}");
    Ok(())
}

/// The best of `RUNS` timings of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn gib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

fn in_memory(out: Option<std::path::PathBuf>) -> io::Result<()> {
    let data_bytes = bench_bytes();
    eprintln!(
        "building an image of {} MiB of page data...",
        data_bytes >> 20
    );
    let mut image = Vec::with_capacity((data_bytes + (data_bytes >> 6) + (1 << 20)) as usize);
    emit(&mut image, data_bytes)?;
    let n = image.len() as u64;

    eprintln!("timing...");
    let t_parse = best(|| {
        let p = parse(black_box(&image)).expect("the bench image parses");
        black_box(p.end.page_count);
    });
    let parsed = parse(&image).map_err(io::Error::other)?;
    let t_write = best(|| {
        let v = to_vec(black_box(&parsed.image)).expect("the bench image writes");
        black_box(v);
    });
    // The same write into a buffer whose pages are already faulted in: to_vec's extra cost is
    // the kernel zero-filling fresh memory, which the fresh-memcpy baseline shows too.
    let mut out_buf = vec![1u8; image.len()];
    let t_write_prefaulted = best(|| {
        crak_format::write_image(black_box(&parsed.image), io::Cursor::new(&mut out_buf[..]))
            .expect("the bench image writes");
        black_box(&mut out_buf);
    });
    if out_buf != image {
        return Err(io::Error::other(
            "rewriting the parsed image changed its bytes",
        ));
    }
    drop(out_buf);
    let t_memcpy_fresh = best(|| {
        let v = black_box(&image[..]).to_vec();
        black_box(v);
    });
    let t_crc = best(|| {
        black_box(crc32c::crc32c(black_box(&image)));
    });
    let t_stream = best(|| {
        let p = read_stream_metadata(black_box(&image[..])).expect("the bench image streams");
        black_box(p.end.page_count);
    });
    let mut dst = vec![0u8; 8 << 20];
    let t_memcpy = best(|| {
        for chunk in image.chunks(dst.len()) {
            dst[..chunk.len()].copy_from_slice(black_box(chunk));
            black_box(&mut dst);
        }
    });
    let t_sum = best(|| {
        let mut s = 0u64;
        for w in image.chunks_exact(8) {
            s = s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        black_box(s);
    });

    eprintln!("stream-validating from a pipe in a child process...");
    let stream = stream_child(data_bytes).unwrap_or_else(|e| json!({ "error": e.to_string() }));

    let rows = [
        ("parse (slice, CRC, END)", t_parse),
        ("stream metadata (&[u8])", t_stream),
        ("to_vec (write, CRC)", t_write),
        ("write_image (prefaulted)", t_write_prefaulted),
        ("crc32c alone", t_crc),
        ("baseline: memcpy", t_memcpy),
        ("baseline: u64 sum", t_sum),
        ("baseline: to_vec (fresh)", t_memcpy_fresh),
    ];
    println!(
        "image: {} bytes ({} MiB of page data), best of {RUNS}",
        n,
        data_bytes >> 20
    );
    println!(
        "{:<26} {:>10} {:>10} {:>12}",
        "operation", "ms", "GiB/s", "vs memcpy"
    );
    for (name, d) in rows {
        println!(
            "{:<26} {:>10.1} {:>10.2} {:>11.2}x",
            name,
            d.as_secs_f64() * 1e3,
            gib_s(n, d),
            gib_s(n, d) / gib_s(n, t_memcpy)
        );
    }
    if let Some(s) = stream.get("gib_per_s").and_then(|v| v.as_f64()) {
        println!(
            "{:<26} {:>10.1} {:>10.2} {:>11.2}x   peak RSS {} KiB",
            "stream validate (pipe)*",
            stream["seconds"].as_f64().unwrap_or(0.0) * 1e3,
            s,
            s / gib_s(n, t_memcpy),
            stream["vm_hwm_kib"]
        );
        println!("* child process reading `bench emit` through a pipe: bounded by the producer");
    } else {
        println!("stream validate: {stream}");
    }

    let report = json!({
        "image_bytes": n,
        "page_data_bytes": data_bytes,
        "runs": RUNS,
        "parse": { "seconds": t_parse.as_secs_f64(), "gib_per_s": gib_s(n, t_parse) },
        "stream_read": { "seconds": t_stream.as_secs_f64(), "gib_per_s": gib_s(n, t_stream) },
        "write": { "seconds": t_write.as_secs_f64(), "gib_per_s": gib_s(n, t_write) },
        "write_prefaulted": { "seconds": t_write_prefaulted.as_secs_f64(), "gib_per_s": gib_s(n, t_write_prefaulted) },
        "baseline_memcpy_fresh": { "seconds": t_memcpy_fresh.as_secs_f64(), "gib_per_s": gib_s(n, t_memcpy_fresh) },
        "crc32c": { "seconds": t_crc.as_secs_f64(), "gib_per_s": gib_s(n, t_crc) },
        "baseline_memcpy": { "seconds": t_memcpy.as_secs_f64(), "gib_per_s": gib_s(n, t_memcpy) },
        "baseline_sum": { "seconds": t_sum.as_secs_f64(), "gib_per_s": gib_s(n, t_sum) },
        "parse_vs_memcpy": gib_s(n, t_parse) / gib_s(n, t_memcpy),
        "parse_vs_sum": gib_s(n, t_parse) / gib_s(n, t_sum),
        "write_vs_memcpy": gib_s(n, t_write) / gib_s(n, t_memcpy),
        "stream_validate": stream,
    });
    let path = out.unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-format.json")
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Runs `bench emit | bench validate-stdin` and returns the validator's JSON line.
fn stream_child(data_bytes: u64) -> io::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let mut emit = Command::new(&exe)
        .arg("emit")
        .env("CRAK_BENCH_MIB", (data_bytes >> 20).to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let pipe = emit
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no pipe"))?;
    let validate = Command::new(&exe)
        .arg("validate-stdin")
        .stdin(Stdio::from(pipe))
        .output()?;
    let status = emit.wait()?;
    if !status.success() || !validate.status.success() {
        return Err(io::Error::other(format!(
            "emit {status}, validate {}: {}",
            validate.status,
            String::from_utf8_lossy(&validate.stderr)
        )));
    }
    serde_json::from_slice(&validate.stdout).map_err(io::Error::other)
}
