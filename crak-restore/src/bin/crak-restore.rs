//! `crak-restore IMAGE`: recreate a checkpointed process with its PID, as a child of this
//! command, and wait for it (exit with its status, or 128 + the signal that ended it).
//!
//! Exit codes before the process runs: 1 when the image is invalid, 2 for any other error.
//!
//! A regular image file is mapped, not read: it is parsed and CRC-checked in place, and the
//! restored process reads its pages from the file itself (or maps them, `--lazy`). Standard
//! input and other non-seekable images are read into memory and written with
//! `process_vm_writev`.

use anyhow::Context as _;
use clap::Parser;
use crak_restore::restore::{self, ImageFile, Options, RestoreError};
use crak_restore::sys::mapfile::MappedFile;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Restore a process from a crak image.
#[derive(Parser, Debug)]
#[command(
    name = "crak-restore",
    version,
    after_help = "Exit status: without --detach, the restored process's own (128 + the signal \
                  that ended it); 0 with --detach once it runs; 1 for an invalid image; 2 for any \
                  other failure (the half-built process is killed).\n\n\
                  --lazy: stored pages of private anonymous memory are mapped from the image file \
                  and fault in when first touched, so the restore takes the same time whatever \
                  the memory size. The image must then stay in place, unmodified and not \
                  truncated, while the restored process lives (replacing it by rename or \
                  deleting it is safe: the mapping holds the old file); the restored process \
                  shows those mappings as the image file in /proc/PID/maps."
)]
struct Cli {
    /// Image file, or `-` for standard input.
    image: String,
    /// Print the restored PID on stdout and exit once the process runs, leaving it running.
    #[arg(long)]
    detach: bool,
    /// Allow another PID when the saved one is taken.
    #[arg(long)]
    new_pid: bool,
    /// Keep the process in this terminal's session and process group, like a shell job, and
    /// give its terminal fds this terminal.
    #[arg(long)]
    shell_job: bool,
    /// Print the summary as JSON on stderr.
    #[arg(long)]
    json: bool,
    /// Map stored pages of private anonymous memory from the image file instead of copying
    /// them (a regular file only); the image must stay in place while the process lives.
    #[arg(long)]
    lazy: bool,
}

/// The image's bytes: a mapping of a regular file, or what was read from anything else.
enum Source {
    Mapped(std::fs::File, MappedFile),
    Read(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(_, m) => m.as_bytes(),
            Source::Read(v) => v,
        }
    }
}

fn open_image(path: &str) -> anyhow::Result<Source> {
    if path != "-" {
        let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        let meta = f.metadata().with_context(|| format!("fstat {path}"))?;
        if meta.is_file() {
            let m = MappedFile::map(&f, meta.len()).with_context(|| format!("mapping {path}"))?;
            return Ok(Source::Mapped(f, m));
        }
    }
    read_image(path).map(Source::Read)
}

fn read_image(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut v)
            .context("reading the image from standard input")?;
        Ok(v)
    } else {
        std::fs::read(path).with_context(|| format!("reading {path}"))
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Reports an error on stderr, as JSON with `--json`; returns the exit code.
fn report(json: bool, kind: &str, msg: &str, code: u8) -> ExitCode {
    if json {
        eprintln!("{}", serde_json::json!({ "error": kind, "message": msg }));
    } else {
        eprintln!("crak-restore: {msg}");
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let t0 = std::time::Instant::now();
    let cli = Cli::parse();
    let source = match open_image(&cli.image) {
        Ok(d) => d,
        Err(e) => return report(cli.json, "io", &format!("{e:#}"), 2),
    };
    if cli.lazy && !matches!(source, Source::Mapped(..)) {
        let msg = format!("--lazy needs a regular image file, not {}", cli.image);
        return report(cli.json, "usage", &msg, 2);
    }
    let parsed = match crak_format::read::parse(source.bytes()) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("invalid image {}: {e}", cli.image);
            return report(cli.json, "invalid", &msg, 1);
        }
    };
    let options = Options {
        new_pid: cli.new_pid,
        shell_job: cli.shell_job,
    };
    if !cli.detach {
        // Forwarded to the process while waiting for it, like a shell's foreground job.
        if let Err(e) = restore::block_forwarded_signals() {
            return report(cli.json, "failed", &e.to_string(), 2);
        }
    }
    let result = match &source {
        Source::Mapped(file, map) => ImageFile::new(file, map.as_bytes(), cli.lazy)
            .and_then(|f| restore::restore_from_file(&parsed.image, &options, &f)),
        Source::Read(_) => restore::restore(&parsed.image, &options),
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let (kind, code) = match e {
                RestoreError::Invalid(_) => ("invalid", 1),
                RestoreError::Refused(_) => ("refused", 2),
                _ => ("failed", 2),
            };
            return report(cli.json, kind, &e.to_string(), code);
        }
    };
    // The image is no longer needed; do not hold its memory while waiting.
    drop(parsed);
    drop(source);
    let total_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if cli.json {
        let mut v = serde_json::to_value(&summary).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("total_ms".into(), total_ms.into());
        }
        eprintln!("{v}");
    } else {
        eprintln!(
            "crak-restore: restored pid {}{}: {} pages ({}{}), {} VMAs, {} fds; restore {:.1} ms, total {:.1} ms",
            summary.pid,
            if summary.same_pid { "" } else { " (new pid)" },
            summary.pages,
            human_bytes(summary.bytes),
            if summary.lazy_bytes != 0 {
                format!(", {} mapped lazily", human_bytes(summary.lazy_bytes))
            } else {
                String::new()
            },
            summary.vmas,
            summary.fds,
            summary.elapsed.as_secs_f64() * 1000.0,
            total_ms
        );
    }
    if cli.detach {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", summary.pid);
        let _ = out.flush();
        return ExitCode::SUCCESS;
    }
    match restore::wait_exit_code(summary.pid, cli.shell_job) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => report(cli.json, "failed", &e.to_string(), 2),
    }
}
