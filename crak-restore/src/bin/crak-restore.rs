//! `crak-restore IMAGE`: recreate a checkpointed process with its PID, as a child of this
//! command, and wait for it (exit with its status, or 128 + the signal that ended it).
//!
//! Exit codes before the process runs: 1 when the image is invalid (a parse error, a validator
//! error, a validator warning without `--force`, or with `--verify` a missing or broken
//! signature), 2 for any other error.
//!
//! Safety (README, "Restore safety"): crak-restore refuses to run set-user-ID or set-group-ID;
//! every image is validated before anything is created, and `--force` accepts warnings, never
//! errors; the image's credentials must be ones this user may give; every path the image names
//! is opened with the image's filesystem identity and without following symbolic links.
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
                  shows those mappings as the image file in /proc/PID/maps. The CRCs of the \
                  mapped pages are checked as soon as the process runs: a damaged page run then \
                  kills it and the restore fails (exit status 1), naming the record.\n\n\
                  Safety: the image is validated first; errors always refuse it, warnings unless \
                  --force. With --verify, an unsigned image or one altered since it was signed is \
                  refused, naming the first record that differs. An unprivileged user restores \
                  only images with its own credentials; every file the image names is opened \
                  with the image's filesystem identity and never through a symbolic link."
)]
struct Cli {
    /// Image file, or `-` for standard input.
    image: String,
    /// Print the restored PID on stdout and exit once the process runs, leaving it running.
    #[arg(long)]
    detach: bool,
    /// Allow another PID when the saved one is taken (for a tree: give each process whose PID
    /// is taken another; the tree keeps its shape, groups and sessions).
    #[arg(long)]
    new_pid: bool,
    /// Connect fd N, a pipe whose other end was outside the captured processes, to this
    /// command's own fd N (a pipe) instead of closing that end; repeatable. The bytes that were
    /// buffered in the old pipe stay in it.
    #[arg(long = "external-pipe", value_name = "N")]
    external_pipes: Vec<i32>,
    /// Keep the process in this terminal's session and process group, like a shell job, and
    /// give its terminal fds this terminal.
    #[arg(long)]
    shell_job: bool,
    /// When a SysV IPC object of the image (shared memory segment, semaphore set, message
    /// queue) still exists with its id and key (its processes were killed at capture, it was
    /// not), remove it and recreate it from the image instead of refusing the restore.
    #[arg(long)]
    ipc_replace: bool,
    /// Restore established TCP connections reset instead of connected, for when the peer is
    /// gone: the program's next call on them fails with ECONNRESET.
    #[arg(long)]
    tcp_close: bool,
    /// Print the summary as JSON on stderr.
    #[arg(long)]
    json: bool,
    /// Map stored pages of private anonymous memory from the image file instead of copying
    /// them (a regular file only); the image must stay in place while the process lives.
    #[arg(long)]
    lazy: bool,
    /// Restore only an image signed by this public key (as written by `crak-dump keygen`):
    /// an unsigned image, or one altered since, is refused naming the first record that
    /// differs.
    #[arg(long, value_name = "PUBKEY")]
    verify: Option<std::path::PathBuf>,
    /// Restore an image although the validator warns about it (errors are never overridden).
    #[arg(long)]
    force: bool,
    /// A Unix socket of the image connected to a socket outside the image, named PATH (or
    /// `@NAME` for an abstract name), is connected to PATH again; without it such a socket
    /// refuses the restore, naming its peer. Repeatable.
    #[arg(long, value_name = "PATH")]
    external_unix: Vec<std::path::PathBuf>,
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

/// `--verify PUBKEY`: the image must carry a valid signature by the key (crak-format's
/// `auth::verify`, the check `crak-dump validate --verify` makes).
fn verify_signature(key_path: &std::path::Path, data: &[u8]) -> Result<(), (String, u8)> {
    let text = std::fs::read_to_string(key_path).map_err(|e| {
        (
            format!("{}: cannot read the key: {e}", key_path.display()),
            2,
        )
    })?;
    let key = crak_format::auth::PublicKey::parse_hex(&text).map_err(|e| {
        (
            format!("{}: not a crak public key: {e}", key_path.display()),
            2,
        )
    })?;
    crak_format::auth::verify(data, &key)
        .map(drop)
        .map_err(|e| (format!("the image is not verified: {e}"), 1))
}

/// The validator's verdict: every error refuses the image; warnings refuse it unless `force`.
fn check_findings(parsed: &crak_format::Parsed<'_>, force: bool) -> Result<(), String> {
    let report = crak_format::validate::validate_metadata(&parsed.image, Some(&parsed.layout));
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if let Some(f) = report.errors().next() {
        return Err(format!(
            "invalid image: {f} ({} error{} in total; --force never overrides errors)",
            report.errors,
            plural(report.errors)
        ));
    }
    if !force {
        if let Some(f) = report.warnings().next() {
            return Err(format!(
                "the validator warns about the image: {f} ({} warning{} in total); restore with --force to accept warnings",
                report.warnings,
                plural(report.warnings)
            ));
        }
    }
    Ok(())
}

/// `--lazy` maps the image file into the restored process, which could then read more of the
/// file than its own pages (`mremap` grows a file mapping forward): allowed only when every
/// process's user may read the image file itself. The file is opened by its path with that
/// user's filesystem identity and compared with the one mapped.
fn check_lazy(
    path: &str,
    file: &std::fs::File,
    image: &crak_format::Image<'_>,
) -> Result<(), String> {
    use crak_restore::sys::fsid;
    use std::os::unix::fs::MetadataExt;
    let mapped = file.metadata().map_err(|e| format!("fstat {path}: {e}"))?;
    let own = fsid::current().map_err(|e| format!("reading the filesystem identity: {e}"))?;
    for p in &image.processes {
        let Some(cr) = p.creds.as_ref() else { continue };
        let id = restore::creds::fs_identity(cr);
        if id == own {
            continue;
        }
        fsid::enter(&id).map_err(|e| format!("taking on fsuid {}: {e}", cr.fsuid))?;
        let opened =
            crak_restore::sys::openat2::open_no_symlinks(path.as_bytes(), libc::O_RDONLY, 0);
        fsid::enter(&own).map_err(|e| format!("restoring the filesystem identity: {e}"))?;
        let same = opened
            .ok()
            .and_then(|fd| std::fs::File::from(fd).metadata().ok())
            .is_some_and(|m| m.dev() == mapped.dev() && m.ino() == mapped.ino());
        if !same {
            return Err(format!(
                "--lazy would map {path} into a process of uid {}, who may not read it; restore without --lazy",
                cr.fsuid
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let t0 = std::time::Instant::now();
    let cli = Cli::parse();
    if crak_restore::sys::fsid::is_setid() {
        // Whoever runs it would get crak-restore's privileges to give any credentials.
        return report(
            cli.json,
            "refused",
            "crak-restore refuses to run set-user-ID, set-group-ID or with file capabilities; run it as root or as the image's user",
            2,
        );
    }
    let source = match open_image(&cli.image) {
        Ok(d) => d,
        Err(e) => return report(cli.json, "io", &format!("{e:#}"), 2),
    };
    if cli.lazy && !matches!(source, Source::Mapped(..)) {
        let msg = format!("--lazy needs a regular image file, not {}", cli.image);
        return report(cli.json, "usage", &msg, 2);
    }
    if let Some(key) = &cli.verify {
        if let Err((msg, code)) = verify_signature(key, source.bytes()) {
            let kind = if code == 1 { "unverified" } else { "io" };
            return report(cli.json, kind, &format!("{}: {msg}", cli.image), code);
        }
    }
    // PAGES CRCs are checked later, by reading the file again (see ImageFile), when the image
    // is a file; in full here otherwise.
    let parsed = match &source {
        Source::Mapped(..) => crak_format::read::parse_deferring_page_crcs(source.bytes()),
        Source::Read(_) => crak_format::read::parse(source.bytes()).map(|p| (p, Vec::new())),
    };
    let (parsed, unchecked) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("invalid image {}: {e}", cli.image);
            return report(cli.json, "invalid", &msg, 1);
        }
    };
    if let Err(msg) = check_findings(&parsed, cli.force) {
        return report(cli.json, "invalid", &format!("{}: {msg}", cli.image), 1);
    }
    if let (true, Source::Mapped(file, _)) = (cli.lazy, &source) {
        if let Err(msg) = check_lazy(&cli.image, file, &parsed.image) {
            return report(cli.json, "refused", &msg, 2);
        }
    }
    let options = Options {
        new_pid: cli.new_pid,
        shell_job: cli.shell_job,
        external_unix: cli
            .external_unix
            .iter()
            .map(|p| {
                use std::os::unix::ffi::OsStrExt;
                restore::unix_socket::external_name(p.as_os_str().as_bytes())
            })
            .collect(),
        external_pipes: cli.external_pipes.clone(),
        ipc_replace: cli.ipc_replace,
        tcp_close: cli.tcp_close,
    };
    if !cli.detach {
        // Forwarded to the process while waiting for it, like a shell's foreground job.
        if let Err(e) = restore::block_forwarded_signals() {
            return report(cli.json, "failed", &e.to_string(), 2);
        }
    }
    let result = match &source {
        Source::Mapped(file, map) => ImageFile::new(file, map.as_bytes(), unchecked, cli.lazy)
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
            if let Some(kb) = crak_restore::procfs::own_peak_rss_kb() {
                m.insert("peak_rss_kb".into(), kb.into());
            }
        }
        eprintln!("{v}");
    } else {
        eprintln!(
            "crak-restore: restored pid {}{}{}: {} pages ({}{}), {} VMAs, {} fds; running after {:.1} ms, restore {:.1} ms, total {:.1} ms",
            summary.pid,
            if summary.same_pid { "" } else { " (new pid)" },
            match summary.processes {
                0 | 1 => String::new(),
                n => format!(" and {} descendant{}", n - 1, if n > 2 { "s" } else { "" }),
            },
            summary.pages,
            human_bytes(summary.bytes),
            if summary.lazy_bytes != 0 {
                format!(", {} mapped lazily", human_bytes(summary.lazy_bytes))
            } else {
                String::new()
            },
            summary.vmas,
            summary.fds,
            summary.running.as_secs_f64() * 1000.0,
            summary.elapsed.as_secs_f64() * 1000.0,
            total_ms
        );
        let moved: Vec<String> = summary
            .pids
            .iter()
            .filter(|(saved, live)| i64::from(*saved) != i64::from(*live))
            .map(|(saved, live)| format!("{saved} -> {live}"))
            .collect();
        if !moved.is_empty() {
            eprintln!("crak-restore: new PIDs: {}", moved.join(", "));
        }
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
