//! `crak-dump validate IMAGE...`: parse (framing) and validate (semantics) each image.
//!
//! Exit 0 when every image is valid (warnings allowed), 1 when one is invalid (a parse error or
//! an error finding), 2 when one cannot be read as a crak image at all (I/O error, empty input,
//! bad magic). Files and stdin (`-`) are read through the streaming reader, which checks every
//! CRC and the END digest but never holds page data: memory is bounded by the metadata.

use crate::cli::ValidateArgs;
use crate::view::Style;
use crate::{display_name, is_stdin, EXIT_ERROR, EXIT_NO, EXIT_OK};
use crak_format::error::{Error, ErrorKind};
use crak_format::read::Parsed;
use crak_format::validate::{validate, Report, Severity};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::Path;

/// The verdict on one input.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The input as given (`<stdin>` for `-`).
    pub image: String,
    /// `valid`, `invalid` or `unreadable`.
    pub status: &'static str,
    /// Whether the image is valid.
    pub valid: bool,
    /// Why the parser rejected the image, or why it could not be read.
    pub error: Option<ParseError>,
    /// The validator's report, when the image parsed.
    pub report: Option<Report>,
}

/// A parse or read error, located.
#[derive(Debug, Serialize)]
pub struct ParseError {
    /// The spec's error kind (`bad-crc`, `truncated`, ...), or `io` / `empty`.
    pub kind: &'static str,
    /// Record kind name, when known.
    pub record: Option<&'static str>,
    /// File offset of that record's header.
    pub record_offset: Option<u64>,
    /// Field name, when known.
    pub field: Option<&'static str>,
    /// File offset of the field or point of failure.
    pub offset: Option<u64>,
    /// The whole message.
    pub message: String,
}

impl ParseError {
    fn from_error(e: &Error) -> Self {
        ParseError {
            kind: e.kind_str(),
            record: e.record_name(),
            record_offset: e.record_offset(),
            field: e.field(),
            offset: e.offset(),
            message: e.to_string(),
        }
    }

    fn plain(kind: &'static str, message: String) -> Self {
        ParseError {
            kind,
            record: None,
            record_offset: None,
            field: None,
            offset: None,
            message,
        }
    }
}

/// Everything `--json` prints.
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    valid: bool,
    images: &'a [Outcome],
}

/// Counts the bytes a reader yields, to tell an empty stream from a truncated one.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n = self.n.saturating_add(n as u64);
        Ok(n)
    }
}

/// Checks one input; with `host`, also against this host ([`host`]).
pub fn check(path: &Path, host: bool) -> Outcome {
    let name = display_name(path);
    let (parsed, read) = if is_stdin(path) {
        let mut r = Counting {
            inner: io::stdin().lock(),
            n: 0,
        };
        let parsed = crak_format::read::read_stream_metadata(&mut r);
        match parsed {
            Err(_) if r.n == 0 => return unreadable(name, "empty", "empty input".into()),
            p => (p, r.n),
        }
    } else {
        // Streamed, with bounded memory: every CRC is checked, page data is never held.
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return unreadable(name, "io", format!("cannot read: {e}")),
        };
        let mut r = Counting {
            inner: io::BufReader::with_capacity(1 << 20, file),
            n: 0,
        };
        let parsed = crak_format::read::read_stream_metadata(&mut r);
        match parsed {
            Err(_) if r.n == 0 => return unreadable(name, "empty", "empty file".into()),
            p => (p, r.n),
        }
    };
    verdict(name, parsed, read, host)
}

fn verdict(name: String, parsed: Result<Parsed<'_>, Error>, _len: u64, host: bool) -> Outcome {
    match parsed {
        Err(e) => {
            let unreadable = matches!(e.kind(), ErrorKind::BadMagic | ErrorKind::Io);
            Outcome {
                image: name,
                status: if unreadable { "unreadable" } else { "invalid" },
                valid: false,
                error: Some(ParseError::from_error(&e)),
                report: None,
            }
        }
        Ok(p) => {
            let mut report = validate(&p.image, Some(&p.layout));
            if host {
                host::check(&p.image, &mut report);
            }
            let valid = report.is_valid();
            Outcome {
                image: name,
                status: if valid { "valid" } else { "invalid" },
                valid,
                error: None,
                report: Some(report),
            }
        }
    }
}

fn unreadable(image: String, kind: &'static str, message: String) -> Outcome {
    Outcome {
        image,
        status: "unreadable",
        valid: false,
        error: Some(ParseError::plain(kind, message)),
        report: None,
    }
}

/// The exit code for a set of outcomes.
pub fn exit_code(outcomes: &[Outcome]) -> i32 {
    if outcomes.iter().any(|o| o.status == "unreadable") {
        EXIT_ERROR
    } else if outcomes.iter().any(|o| !o.valid) {
        EXIT_NO
    } else {
        EXIT_OK
    }
}

/// Runs the command.
pub fn run(args: &ValidateArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let outcomes: Vec<Outcome> = args.images.iter().map(|p| check(p, args.host)).collect();
    if args.json {
        let all = JsonOut {
            valid: outcomes.iter().all(|o| o.valid),
            images: &outcomes,
        };
        serde_json::to_writer_pretty(&mut *out, &all)?;
        writeln!(out)?;
    } else {
        for o in &outcomes {
            print(out, o, style)?;
        }
    }
    Ok(exit_code(&outcomes))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn print(out: &mut dyn Write, o: &Outcome, style: Style) -> io::Result<()> {
    if let Some(r) = &o.report {
        for f in &r.findings {
            let sev = match f.severity {
                Severity::Error => style.red("error"),
                Severity::Warning => style.yellow("warning"),
            };
            let mut at = f.record.to_string();
            if let Some(i) = f.index {
                at.push_str(&format!("#{i}"));
            }
            if let Some(pid) = f.pid {
                at.push_str(&format!(" pid {pid}"));
            }
            at.push_str(&format!(" field {}", f.field));
            if let Some(off) = f.offset {
                at.push_str(&format!(" at offset 0x{off:x}"));
            }
            writeln!(out, "{}: {sev}[{}]: {at}: {}", o.image, f.code, f.message)?;
        }
    }
    let line = match (&o.error, &o.report) {
        (Some(e), _) => format!("{}: {}: {}", o.image, o.status, e.message),
        (None, Some(r)) if r.is_valid() && r.warnings == 0 => format!("{}: valid", o.image),
        (None, Some(r)) if r.is_valid() => {
            format!("{}: valid ({})", o.image, plural(r.warnings, "warning"))
        }
        (None, Some(r)) => format!(
            "{}: invalid ({}, {})",
            o.image,
            plural(r.errors, "error"),
            plural(r.warnings, "warning")
        ),
        (None, None) => format!("{}: {}", o.image, o.status),
    };
    let line = match o.status {
        "valid" => style.green(&line),
        "invalid" => style.red(&line),
        _ => style.bold(&line),
    };
    writeln!(out, "{line}")
}

/// Checks of an image against this host (`validate --host`): what restore would refuse here.
///
/// Findings use the codes `host-file` (a referenced file is missing or changed), `host-pid` (a
/// PID or thread ID is taken), `host-clone3`, `host-ns-last-pid`, `host-ptrace` (a kernel
/// feature restore needs is unavailable to this user), `host-xsave` (the image uses XSAVE
/// components this CPU does not enable), `host-vdso` (the kernel's vDSO/vvar mappings have
/// other sizes) and `host-probe` (this host could not be examined). All are errors.
pub mod host {
    use crak_format::image::{Image, Process};
    use crak_format::record::fd::FdKind;
    use crak_format::record::vma::VmaKind;
    use crak_format::validate::{Finding, Report, Severity};
    use std::collections::HashSet;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    /// `CAP_SYS_ADMIN`.
    const CAP_SYS_ADMIN: u32 = 21;
    /// `CAP_CHECKPOINT_RESTORE`.
    const CAP_CHECKPOINT_RESTORE: u32 = 40;

    fn finding(
        code: &'static str,
        record: &'static str,
        pid: Option<u32>,
        index: Option<usize>,
        field: &'static str,
        message: String,
    ) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            record,
            pid,
            index,
            field,
            offset: None,
            message,
        }
    }

    /// Adds the host findings for `image` to `report`, keeping its counts right.
    pub fn check(image: &Image<'_>, report: &mut Report) {
        let mut found = Vec::new();
        features(&mut found);
        cpu_and_vdso(image, &mut found);
        let taken = Taken::scan();
        for p in &image.processes {
            pids(p, &taken, &mut found);
            files(p, &mut found);
        }
        for f in found {
            match f.severity {
                Severity::Error => report.errors = report.errors.saturating_add(1),
                Severity::Warning => report.warnings = report.warnings.saturating_add(1),
            }
            report.findings.push(f);
        }
        report.valid = report.errors == 0;
    }

    /// `Uid:` (effective) and `CapEff:` of this process.
    fn creds() -> Option<(u32, u64)> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut euid = None;
        let mut caps = None;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("Uid:") {
                euid = v.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            } else if let Some(v) = line.strip_prefix("CapEff:") {
                caps = u64::from_str_radix(v.trim(), 16).ok();
            }
        }
        Some((euid?, caps?))
    }

    fn features(found: &mut Vec<Finding>) {
        let (euid, caps) = creds().unwrap_or((u32::MAX, 0));
        let root = euid == 0;
        let has = |cap: u32| caps & (1u64 << cap) != 0;
        if !root && !has(CAP_SYS_ADMIN) && !has(CAP_CHECKPOINT_RESTORE) {
            found.push(finding(
                "host-clone3",
                "PROCESS",
                None,
                None,
                "pid",
                "clone3 with set_tid needs root, CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, which this user lacks".into(),
            ));
        }
        if !Path::new("/proc/sys/kernel/ns_last_pid").exists() {
            found.push(finding(
                "host-ns-last-pid",
                "PROCESS",
                None,
                None,
                "pid",
                "/proc/sys/kernel/ns_last_pid is missing (kernel without checkpoint/restore support)".into(),
            ));
        }
        if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
            let scope: u32 = s.trim().parse().unwrap_or(u32::MAX);
            if scope > 1 && !root {
                found.push(finding(
                    "host-ptrace",
                    "PROCESS",
                    None,
                    None,
                    "pid",
                    format!("ptrace is restricted (kernel.yama.ptrace_scope = {}) and this user is not root", s.trim()),
                ));
            }
        }
    }

    fn cpu_and_vdso(image: &Image<'_>, found: &mut Vec<Finding>) {
        let host = match crate::cmd::profile::host_profile() {
            Ok(h) => h,
            Err(e) => {
                found.push(finding(
                    "host-probe",
                    "HEADER",
                    None,
                    None,
                    "xsave_features",
                    format!("cannot describe this host: {e:#}"),
                ));
                return;
            }
        };
        let extra = image.header.xsave_features & !host.xsave_features;
        if extra != 0 {
            found.push(finding(
                "host-xsave",
                "HEADER",
                None,
                None,
                "xsave_features",
                format!(
                    "the image uses XSAVE components {extra:#x} that this CPU does not enable (XCR0 {:#x})",
                    host.xsave_features
                ),
            ));
        }
        let host_len = |kind: VmaKind| {
            host.special_mappings
                .iter()
                .find(|m| m.kind == kind)
                .map(|m| m.end.saturating_sub(m.start))
        };
        for p in &image.processes {
            for (i, v) in p.vmas.iter().enumerate() {
                let name = match v.kind {
                    VmaKind::Vdso => "[vdso]",
                    VmaKind::Vvar => "[vvar]",
                    VmaKind::VvarVclock => "[vvar_vclock]",
                    _ => continue,
                };
                let message = match host_len(v.kind) {
                    Some(h) if h == v.len() => continue,
                    Some(h) => format!(
                        "the image's {name} is {} bytes, this kernel's is {h} bytes: restore needs the same kernel",
                        v.len()
                    ),
                    None => format!("the image has a {name} mapping, this kernel gives none"),
                };
                found.push(finding(
                    "host-vdso",
                    "VMA",
                    Some(p.pid()),
                    Some(i),
                    "end",
                    message,
                ));
            }
        }
    }

    /// The IDs in use on this host: every process and thread, and every process group and
    /// session ID of a live process (the kernel keeps such a PID allocated).
    struct Taken {
        ids: HashSet<u32>,
    }

    impl Taken {
        fn scan() -> Self {
            let mut ids = HashSet::new();
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return Taken { ids };
            };
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                ids.insert(pid);
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                // Fields after the command's closing parenthesis: state ppid pgrp session ...
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    continue;
                };
                for f in rest.split_whitespace().skip(2).take(2) {
                    if let Ok(id) = f.parse::<u32>() {
                        ids.insert(id);
                    }
                }
            }
            Taken { ids }
        }

        fn has(&self, id: u32) -> bool {
            // Threads are not listed in /proc but can be looked up there.
            self.ids.contains(&id) || Path::new(&format!("/proc/{id}")).exists()
        }
    }

    fn pids(p: &Process<'_>, taken: &Taken, found: &mut Vec<Finding>) {
        let pid = p.pid();
        if taken.has(pid) {
            found.push(finding(
                "host-pid",
                "PROCESS",
                Some(pid),
                None,
                "pid",
                format!("PID {pid} is in use on this host (by a process, thread, process group or session)"),
            ));
        }
        for &tid in p.process.tids.iter().filter(|&&t| t != pid) {
            if taken.has(tid) {
                found.push(finding(
                    "host-pid",
                    "PROCESS",
                    Some(pid),
                    None,
                    "tids",
                    format!("thread ID {tid} is in use on this host"),
                ));
            }
        }
    }

    /// Whether the image's device number is `st_dev` (as userspace encodes it, or as the
    /// kernel's `MKDEV` with a 20-bit minor).
    fn same_dev(image_dev: u64, st_dev: u64) -> bool {
        let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
        let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
        image_dev == st_dev || image_dev == (major << 20 | (minor & 0xfffff))
    }

    /// What differs between the file at `path` and the identity the image recorded; `Err`
    /// when it cannot be examined.
    fn differences(
        path: &[u8],
        dev: u64,
        ino: u64,
        size: Option<u64>,
        mtime_ns: Option<i64>,
    ) -> Result<Vec<String>, String> {
        let md = std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(path)))
            .map_err(|e| e.to_string())?;
        let mut d = Vec::new();
        if !same_dev(dev, md.dev()) || md.ino() != ino {
            d.push("it is another file (device/inode differ)".to_string());
        }
        if let Some(size) = size.filter(|&s| s != md.size()) {
            d.push(format!("size {size} is now {}", md.size()));
        }
        let mtime = md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec());
        if mtime_ns.is_some_and(|m| m != mtime) {
            d.push("its modification time changed".to_string());
        }
        Ok(d)
    }

    fn file_finding(
        pid: u32,
        record: &'static str,
        index: usize,
        what: String,
        path: &[u8],
        r: Result<Vec<String>, String>,
    ) -> Option<Finding> {
        let shown = String::from_utf8_lossy(path);
        let message = match r {
            Ok(d) if d.is_empty() => return None,
            Ok(d) => format!("{what} {shown} changed since the capture: {}", d.join(", ")),
            Err(e) => format!("{what} {shown}: {e}"),
        };
        Some(finding(
            "host-file",
            record,
            Some(pid),
            Some(index),
            "path",
            message,
        ))
    }

    fn files(p: &Process<'_>, found: &mut Vec<Finding>) {
        let pid = p.pid();
        let exe = p.process.exe.as_bytes();
        if !exe.is_empty() && !Path::new(std::ffi::OsStr::from_bytes(exe)).is_file() {
            found.push(finding(
                "host-file",
                "PROCESS",
                Some(pid),
                None,
                "exe",
                format!(
                    "the executable {} does not exist on this host",
                    p.process.exe
                ),
            ));
        }
        let cwd = p.process.cwd.as_bytes();
        if !cwd.is_empty() && !Path::new(std::ffi::OsStr::from_bytes(cwd)).is_dir() {
            found.push(finding(
                "host-file",
                "PROCESS",
                Some(pid),
                None,
                "cwd",
                format!(
                    "the working directory {} does not exist on this host",
                    p.process.cwd
                ),
            ));
        }
        for (i, v) in p.vmas.iter().enumerate() {
            if v.kind != VmaKind::File {
                continue;
            }
            let path = v.path.as_bytes();
            let r = differences(path, v.dev, v.ino, Some(v.size), Some(v.mtime_ns));
            found.extend(file_finding(pid, "VMA", i, "mapped file".into(), path, r));
        }
        for (i, f) in p.fds.iter().enumerate() {
            if f.kind != FdKind::Reg || f.deleted {
                continue;
            }
            let path = f.path.as_bytes();
            // A directory's size and mtime change with its entries; its identity suffices.
            let dir = f.mode & 0o170000 == 0o040000;
            let (size, mtime) = if dir {
                (None, None)
            } else {
                (Some(f.size), Some(f.mtime_ns))
            };
            let r = differences(path, f.dev, f.ino, size, mtime);
            found.extend(file_finding(
                pid,
                "FD",
                i,
                format!("file of fd {}", f.fd),
                path,
                r,
            ));
        }
    }
}
