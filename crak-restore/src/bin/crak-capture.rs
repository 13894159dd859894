//! `crak-capture PID -o IMAGE [--leave-running] [--json]`: checkpoint a running process into a
//! crak image. Exit status 0 on success, 2 on any error (the process is then left running).

use clap::Parser;
use crak_restore::capture::{self, Options, Output};
use crak_restore::sys;
use std::path::PathBuf;
use std::process::ExitCode;

/// Checkpoint a running process into a single crak image file.
#[derive(Parser, Debug)]
#[command(name = "crak-capture", version)]
struct Cli {
    /// The process to capture.
    pid: i32,
    /// Image file to write (`-` for standard output). Written atomically: a temporary file in
    /// the same directory, fsync'ed and renamed.
    #[arg(short = 'o', long = "output", value_name = "IMAGE")]
    output: PathBuf,
    /// Resume the process after the capture instead of killing it.
    #[arg(long)]
    leave_running: bool,
    /// Print the summary as JSON on stderr.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = if cli.output.as_os_str() == "-" {
        Output::Stdout
    } else {
        Output::File(cli.output.clone())
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let opts = Options {
        pid: cli.pid,
        output,
        leave_running: cli.leave_running,
        command: Some(command),
    };
    // A capture is all or nothing: Ctrl-C and friends wait until the target is killed or
    // resumed cleanly (never left traced with borrowed registers), then take effect.
    let old_mask =
        sys::process::block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT])
            .ok();
    let result = capture::run(&opts);
    if let Some(m) = &old_mask {
        // Flush the summary before a pending signal ends the process.
        report(&cli, &result);
        let _ = sys::process::restore_sigmask(m);
        return exit_code(&result);
    }
    report(&cli, &result);
    exit_code(&result)
}

fn exit_code(result: &Result<capture::Summary, capture::Error>) -> ExitCode {
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn report(cli: &Cli, result: &Result<capture::Summary, capture::Error>) {
    match result {
        Ok(summary) => {
            if cli.json {
                match serde_json::to_string(&summary) {
                    Ok(s) => eprintln!("{s}"),
                    Err(e) => eprintln!("crak-capture: {e}"),
                }
            } else {
                eprintln!("crak-capture: {}", summary.line());
            }
        }
        Err(e) => {
            if cli.json {
                let v = serde_json::json!({ "pid": cli.pid, "error": e.to_string() });
                eprintln!("{v}");
            } else {
                eprintln!("crak-capture: error: {e}");
            }
        }
    }
}
