//! `crak-capture PID -o IMAGE [--leave-running] [--sign KEY] [--json]`: checkpoint a running
//! process into a crak image. `crak-capture PID --every 30s --keep 5 -o DIR/`: capture it
//! periodically, leaving it running, until it exits or a signal stops the supervisor.
//! Exit status 0 on success, 2 on any error (the process is then left running).

use clap::Parser;
use crak_format::auth::SecretKey;
use crak_restore::capture::{self, supervisor, Options, Output};
use crak_restore::{procfs, sys};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Checkpoint a running process into a single crak image file.
#[derive(Parser, Debug)]
#[command(name = "crak-capture", version)]
struct Cli {
    /// The process to capture.
    pid: i32,
    /// Image file to write (`-` for standard output). Written atomically: a temporary file in
    /// the same directory, fsync'ed and renamed. With --every: the directory of the images.
    #[arg(short = 'o', long = "output", value_name = "IMAGE|DIR")]
    output: PathBuf,
    /// Resume the process after the capture instead of killing it. Its memory is held by a
    /// forked copy-on-write snapshot, so it is frozen only for the time a fork takes.
    #[arg(long)]
    leave_running: bool,
    /// With --leave-running or --every: copy the pages while the process is frozen instead of
    /// forking a snapshot (longer freeze, no extra memory).
    #[arg(long)]
    no_snapshot: bool,
    /// Refuse a process that has children, instead of capturing it with all its descendants
    /// (the default: the image holds the whole tree, restored with the same PIDs).
    #[arg(long)]
    no_tree: bool,
    /// Refuse pipes whose other end is held by a process outside the captured tree, naming
    /// them. By default they are captured with a warning naming each: after a restore that end
    /// is closed (a reader sees end-of-file after the saved data, a writer gets EPIPE).
    #[arg(long)]
    refuse_external_pipes: bool,
    /// Which System V IPC objects to record: `attached` (only the shared memory segments the
    /// tree maps, which are always recorded), `tree` (also the objects a process of the tree
    /// made or used last: a segment's creator or last attacher, a semaphore's `sempid`, a
    /// queue's last sender or receiver), `all` (every segment, semaphore set and message queue
    /// of the IPC namespace).
    #[arg(long, value_name = "SCOPE", default_value = "tree")]
    ipc: crak_restore::capture::ipc::IpcScope,
    /// Capture periodically, leaving the process running: at start and then every INTERVAL
    /// (`30s`, `5m`, `1h`), into DIR/crak-PID-<UTC time>.crak, until the process exits or
    /// SIGINT/SIGTERM/SIGHUP.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_every)]
    every: Option<Duration>,
    /// With --every: how many images to keep (the newest).
    #[arg(long, value_name = "N", default_value_t = 5, requires = "every")]
    keep: usize,
    /// Sign the image with this secret key file (64 hex digits, as `crak-dump keygen` writes).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Print the summary as JSON on stderr (one line per image with --every).
    #[arg(long)]
    json: bool,
}

fn parse_every(s: &str) -> Result<Duration, String> {
    supervisor::parse_interval(s)
}

fn load_key(path: &Path) -> Result<SecretKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the key: {e}", path.display()))?;
    SecretKey::parse_hex(&text)
        .map_err(|e| format!("{}: not a crak secret key: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sign = match cli.sign.as_deref().map(load_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("crak-capture: error: {e}");
            return ExitCode::from(2);
        }
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // A capture is all or nothing: Ctrl-C and friends wait until the target is killed or
    // resumed cleanly (never left traced with borrowed registers), then take effect.
    let old_mask =
        sys::process::block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT])
            .ok();
    let code = match cli.every {
        Some(every) => supervise(&cli, every, sign, command),
        None => capture_once(&cli, sign, command),
    };
    if let Some(m) = &old_mask {
        let _ = sys::process::restore_sigmask(m);
    }
    code
}

fn capture_once(cli: &Cli, sign: Option<SecretKey>, command: String) -> ExitCode {
    let output = if cli.output.as_os_str() == "-" {
        Output::Stdout
    } else {
        Output::File(cli.output.clone())
    };
    let opts = Options {
        leave_running: cli.leave_running,
        command: Some(command),
        snapshot: !cli.no_snapshot,
        sign,
        tree: !cli.no_tree,
        external_pipes: !cli.refuse_external_pipes,
        ipc: cli.ipc,
        ..Options::new(cli.pid, output)
    };
    let result = capture::run(&opts);
    // Report before a pending signal ends the process.
    report(cli, &result);
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn supervise(cli: &Cli, every: Duration, sign: Option<SecretKey>, command: String) -> ExitCode {
    if cli.output.as_os_str() == "-" {
        eprintln!("crak-capture: error: --every writes image files: -o needs a directory");
        return ExitCode::from(2);
    }
    let opts = supervisor::Options {
        external_pipes: !cli.refuse_external_pipes,
        ipc: cli.ipc,
        pid: cli.pid,
        dir: cli.output.clone(),
        every,
        keep: cli.keep,
        snapshot: !cli.no_snapshot,
        sign,
        command: Some(command),
    };
    match supervisor::run(&opts, &mut |r| report(cli, r)) {
        Ok(rep) => {
            let why = match rep.stop {
                supervisor::Stop::TargetExited => format!("process {} exited", cli.pid),
                supervisor::Stop::Signal(s) => {
                    format!("stopped by {}", sys::process::signal_name(s))
                }
            };
            if cli.json {
                let v = serde_json::json!({
                    "pid": cli.pid,
                    "stopped": why,
                    "captures": rep.captures,
                    "failures": rep.failures,
                    "kept": rep.kept,
                });
                eprintln!("{v}");
            } else {
                eprintln!(
                    "crak-capture: {why}; {} images written, {} failed captures, {} kept in {}",
                    rep.captures,
                    rep.failures,
                    rep.kept.len(),
                    cli.output.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(cli, &Err(e));
            ExitCode::from(2)
        }
    }
}

fn report(cli: &Cli, result: &Result<capture::Summary, capture::Error>) {
    match result {
        Ok(summary) => {
            if cli.json {
                match serde_json::to_value(summary) {
                    Ok(mut v) => {
                        if let (Some(m), Some(kb)) = (v.as_object_mut(), procfs::own_peak_rss_kb())
                        {
                            m.insert("peak_rss_kb".into(), kb.into());
                        }
                        eprintln!("{v}");
                    }
                    Err(e) => eprintln!("crak-capture: {e}"),
                }
            } else {
                eprintln!("crak-capture: {}", summary.line());
                for w in &summary.warnings {
                    eprintln!("crak-capture: warning: {w}");
                }
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
