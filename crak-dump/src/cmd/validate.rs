//! `crak-dump validate IMAGE...`: parse (framing) and validate (semantics) each image.
//!
//! Exit 0 when every image is valid (warnings allowed), 1 when one is invalid (a parse error or
//! an error finding), 2 when one cannot be read as a crak image at all (I/O error, empty input,
//! bad magic). `-` reads stdin through the streaming reader, which never holds page data.

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

/// Checks one input.
pub fn check(path: &Path) -> Outcome {
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
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return unreadable(name, "io", format!("cannot read: {e}")),
        };
        if bytes.is_empty() {
            return unreadable(name, "empty", "empty file".into());
        }
        // The model borrows from `bytes`; only the verdict leaves this block.
        return verdict(name, crak_format::read::parse(&bytes), bytes.len() as u64);
    };
    verdict(name, parsed, read)
}

fn verdict(name: String, parsed: Result<Parsed<'_>, Error>, _len: u64) -> Outcome {
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
            let report = validate(&p.image, Some(&p.layout));
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
    let outcomes: Vec<Outcome> = args.images.iter().map(|p| check(p)).collect();
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
