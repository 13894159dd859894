//! crak-dump: the offline analyzer for crak images.
//!
//! `main.rs` only calls [`run`]; every command writes to the `out` and `err` it is given, so
//! tests can run the tool in-process. Exit codes: 0 ok, 1 "no" (an invalid image), 2 error.
//! A closed output pipe ends the program quietly.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod elfcore;
pub mod source;
pub mod view;

use clap::Parser;
use std::ffi::OsString;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the answer is no (an invalid image, no match).
pub const EXIT_NO: i32 = 1;
/// Exit code: an error (unreadable input, bad usage).
pub const EXIT_ERROR: i32 = 2;

/// What `--color=auto` looks at.
#[derive(Clone, Debug, Default)]
pub struct Terminal {
    /// Whether the output is a terminal.
    pub is_terminal: bool,
    /// The value of `NO_COLOR`, if set.
    pub no_color: Option<OsString>,
}

impl Terminal {
    /// This process's stdout and environment.
    pub fn from_env() -> Self {
        Terminal {
            is_terminal: io::stdout().is_terminal(),
            no_color: std::env::var_os("NO_COLOR"),
        }
    }
}

/// Runs crak-dump with `args` (program name first); returns the exit code. `out` is taken to
/// be this process's stdout for `--color=auto`.
pub fn run(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    run_in(args, out, err, &Terminal::from_env())
}

/// [`run`], told what the output is.
pub fn run_in(
    args: Vec<OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    term: &Terminal,
) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let to_out = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            let text = e.render().to_string();
            let _ = if to_out {
                out.write_all(text.as_bytes())
            } else {
                err.write_all(text.as_bytes())
            };
            return if to_out { EXIT_OK } else { EXIT_ERROR };
        }
    };
    let style = view::Style {
        color: cli
            .color
            .enabled(term.is_terminal, term.no_color.as_deref()),
    };
    let mut buf = BufWriter::with_capacity(64 * 1024, out);
    let result = match &cli.command {
        Some(cli::Command::Validate(a)) => {
            let verified = a
                .verify
                .as_deref()
                .map(|key| cmd::sign::verify_images(key, &a.images, &mut buf));
            match verified {
                Some(Err(e)) => Err(e),
                Some(Ok(Some(code))) => Ok(code),
                _ => cmd::validate::run(a, &mut buf, style),
            }
        }
        Some(cli::Command::Sign(a)) => cmd::sign::run_sign(a, &mut buf),
        Some(cli::Command::Keygen(a)) => cmd::sign::run_keygen(a, &mut buf),
        Some(cli::Command::Mem(a)) => cmd::mem::run(a, &mut buf, style),
        Some(cli::Command::Grep(a)) => cmd::grep::run(a, &mut buf, style),
        Some(cli::Command::Encode(a)) => cmd::encode::run(a, &mut buf),
        Some(cli::Command::Diff(a)) => cmd::diff::run(a, &mut buf, style),
        Some(cli::Command::Strings(a)) => cmd::strings::run(a, &mut buf, style),
        Some(cli::Command::Core(a)) => cmd::core::run(a, &mut buf),
        Some(cli::Command::Backtrace(a)) => cmd::backtrace::run(a, &mut buf, style),
        Some(cli::Command::Edit(a)) => cmd::edit::run(a, &mut buf),
        Some(cli::Command::KernelProfile(a)) => cmd::profile::run(a, &mut buf),
        Some(cli::Command::Rewrite(a)) => cmd::rewrite::run(a, &mut buf),
        None => cmd::show::run(&cli.show, &mut buf, style),
    };
    let result = result.and_then(|code| {
        buf.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "crak-dump: {e:#}");
            EXIT_ERROR
        }
    }
}

/// Whether the error is (caused by) writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A name for an input in messages: the path, or `<stdin>` for `-`.
pub(crate) fn display_name(path: &Path) -> String {
    if is_stdin(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Whether `path` means stdin.
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads a whole input file (or stdin for `-`).
pub(crate) fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    if is_stdin(path) {
        let mut v = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut v)?;
        Ok(v)
    } else {
        std::fs::read(path)
    }
}
