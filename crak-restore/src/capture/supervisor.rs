//! The periodic supervisor (`crak-capture PID --every 30s --keep 5 -o DIR/`): a capture that
//! leaves the target running (a forked snapshot, [`super::snapshot`]) right away and then at
//! every interval, each into a new image in DIR named by its UTC time
//! (`crak-PID-YYYYMMDDTHHMMSS.mmmZ.crak`, so that names sort by time), written atomically like
//! any capture (temporary file, `fsync`, `rename`). After each image, only the newest `keep`
//! images of this PID in DIR are kept; other files are never touched.
//!
//! It stops cleanly when the target exits (its pidfd becomes readable) or on `SIGINT`,
//! `SIGTERM` or `SIGHUP`: those signals are blocked and read from a signalfd, so a capture in
//! progress is always completed (or abandoned with its temporary file removed) first, and no
//! temporary file is left behind. Between captures it sleeps in `poll(2)` on both.
//!
//! Intervals are on a fixed schedule from the start; a capture that takes longer than the
//! interval makes the supervisor skip the ticks it missed, never run captures back to back.

use super::{Error, Output, Summary};
use crate::procfs;
use crate::sys::{pidfd, process, signalfd, Pid};
use crak_format::auth::SecretKey;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The signals that stop the supervisor.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// What to supervise and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Accept pipes with an end outside the target's tree (see [`super::Options`]).
    pub external_pipes: bool,
    /// Which System V IPC objects to record (see [`super::Options`]).
    pub ipc: super::ipc::IpcScope,
    /// The target.
    pub pid: Pid,
    /// Directory of the images (created if missing).
    pub dir: PathBuf,
    /// Time between two captures.
    pub every: Duration,
    /// How many images of this target to keep (at least 1).
    pub keep: usize,
    /// Use forked snapshots (else the pages are copied while frozen).
    pub snapshot: bool,
    /// Sign every image with this key.
    pub sign: Option<SecretKey>,
    /// Command line to record in each image's NOTE.
    pub command: Option<String>,
}

/// Why the supervisor stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Stop {
    /// The target exited.
    TargetExited,
    /// A stop signal (its number) arrived.
    Signal(i32),
}

/// What a supervisor run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Images written.
    pub captures: u64,
    /// Captures that failed (the target still running).
    pub failures: u64,
    /// Why it stopped.
    pub stop: Stop,
    /// The images of this target left in the directory, oldest first.
    pub kept: Vec<PathBuf>,
}

/// Parses an interval: a positive whole number followed by `s`, `m` or `h` (seconds without a
/// unit), e.g. `30s`, `5m`, `1h`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("{text:?}: an interval is a whole number and s, m or h (30s, 5m, 1h)")
    })?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use s, m or h (30s, 5m, 1h)"
            ))
        }
    }
    .ok_or_else(|| format!("{text:?}: interval too long"))?;
    if secs == 0 {
        return Err(format!("{text:?}: the interval must be at least 1s"));
    }
    Ok(Duration::from_secs(secs))
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The image name for `pid` at `time_ns` (nanoseconds since the epoch, UTC).
pub fn image_name(pid: Pid, time_ns: i64) -> String {
    let ms_total = time_ns.div_euclid(1_000_000);
    let secs = ms_total.div_euclid(1000);
    let ms = ms_total.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "crak-{pid}-{y:04}{mo:02}{d:02}T{:02}{:02}{:02}.{ms:03}Z.crak",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Whether `name` is an image name [`image_name`] makes for `pid`.
pub fn is_image_name(name: &str, pid: Pid) -> bool {
    let prefix = format!("crak-{pid}-");
    let Some(stamp) = name
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix("Z.crak"))
    else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 => c == b'T',
            15 => c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The images of `pid` in `dir`, oldest first.
pub fn images(dir: &Path, pid: Pid) -> Result<Vec<PathBuf>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        context: format!("listing {}", dir.display()),
        source,
    })?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_image_name(n, pid))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Of `images` (oldest first), the ones to remove so that the newest `keep` remain.
pub fn to_prune(images: &[PathBuf], keep: usize) -> &[PathBuf] {
    images
        .get(..images.len().saturating_sub(keep))
        .unwrap_or(&[])
}

/// Removes all but the newest `keep` images of `pid` in `dir`; returns the removed paths.
fn prune(dir: &Path, pid: Pid, keep: usize) -> Result<Vec<PathBuf>, Error> {
    let all = images(dir, pid)?;
    let old = to_prune(&all, keep).to_vec();
    for p in &old {
        std::fs::remove_file(p).map_err(|source| Error::Io {
            context: format!("removing the old image {}", p.display()),
            source,
        })?;
    }
    if !old.is_empty() {
        super::output::sync_dir(dir)?;
    }
    Ok(old)
}

fn target_gone(pid: Pid, starttime: u64) -> bool {
    match procfs::stat(pid) {
        Ok(s) => s.starttime != starttime || matches!(s.state, 'Z' | 'X' | 'x'),
        Err(_) => true,
    }
}

/// Blocks the stop signals for the life of the value, then restores the previous mask.
struct Blocked(Option<libc::sigset_t>);

impl Drop for Blocked {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            let _ = process::restore_sigmask(m);
        }
    }
}

/// Runs the supervisor until the target exits or a stop signal arrives; `on_capture` sees the
/// result of every capture as it happens. The first capture failing is an error (nothing was
/// ever captured); later failures are counted and the supervisor carries on.
pub fn run(
    opts: &Options,
    on_capture: &mut dyn FnMut(&Result<Summary, Error>),
) -> Result<Report, Error> {
    if opts.keep == 0 {
        return Err(Error::Other("--keep must be at least 1".into()));
    }
    if opts.every.is_zero() {
        return Err(Error::Other("the interval must be at least 1s".into()));
    }
    let starttime = super::preflight(opts.pid)?;
    std::fs::create_dir_all(&opts.dir).map_err(|source| Error::Io {
        context: format!("creating {}", opts.dir.display()),
        source,
    })?;
    let _blocked = Blocked(Some(process::block_signals(&STOP_SIGNALS)?));
    let sfd = signalfd::SignalFd::new(&STOP_SIGNALS)?;
    let pfd = pidfd::pidfd_open(opts.pid).map_err(|e| match e.errno() {
        Some(libc::ESRCH) => Error::NoSuchProcess(opts.pid),
        _ => Error::Sys(e),
    })?;

    let start = Instant::now();
    let mut tick: u32 = 0;
    let mut captures = 0u64;
    let mut failures = 0u64;
    let stop = loop {
        let name = image_name(opts.pid, process::realtime_ns()?);
        let copts = super::Options {
            pid: opts.pid,
            output: Output::File(opts.dir.join(name)),
            leave_running: true,
            command: opts.command.clone(),
            snapshot: opts.snapshot,
            sign: opts.sign.clone(),
            tree: true,
            external_pipes: opts.external_pipes,
            ipc: opts.ipc,
        };
        let result = super::run(&copts);
        if result.is_err() && target_gone(opts.pid, starttime) {
            break Stop::TargetExited;
        }
        on_capture(&result);
        match result {
            Ok(_) => {
                captures += 1;
                prune(&opts.dir, opts.pid, opts.keep)?;
            }
            Err(e) if captures == 0 && failures == 0 => return Err(e),
            Err(_) => failures += 1,
        }
        // The next tick still ahead of us.
        let now = Instant::now();
        let deadline = loop {
            tick = tick.saturating_add(1);
            let d = opts.every.checked_mul(tick).map(|d| start + d);
            match d {
                Some(d) if d > now => break d,
                Some(_) => continue,
                None => break now + opts.every,
            }
        };
        let mut stopped = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ready = signalfd::poll_readable(&[sfd.as_fd(), pfd.as_fd()], left)?;
            if ready.first() == Some(&true) {
                if let Some(sig) = sfd.take()? {
                    stopped = Some(Stop::Signal(sig));
                    break;
                }
            }
            if ready.get(1) == Some(&true) || target_gone(opts.pid, starttime) {
                stopped = Some(Stop::TargetExited);
                break;
            }
        }
        if let Some(s) = stopped {
            break s;
        }
    };
    Ok(Report {
        captures,
        failures,
        stop,
        kept: images(&opts.dir, opts.pid)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_interval("7").unwrap(), Duration::from_secs(7));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("5d").is_err());
        assert!(parse_interval("1.5s").is_err());
        assert!(parse_interval("s").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("99999999999999999h").is_err());
    }

    #[test]
    fn names_are_utc_times_that_sort() {
        // 2026-11-29 21:33:53.123 UTC
        let t = 1_795_988_033_123_456_789i64;
        assert_eq!(image_name(42, t), "crak-42-20261129T213353.123Z.crak");
        assert_eq!(image_name(7, 0), "crak-7-19700101T000000.000Z.crak");
        // A leap day.
        assert_eq!(
            image_name(1, 951_782_400_000_000_000),
            "crak-1-20000229T000000.000Z.crak"
        );
        assert!(is_image_name(&image_name(42, t), 42));
        assert!(!is_image_name(&image_name(42, t), 4));
        assert!(!is_image_name("crak-42-20261129T213353.123Z.crak.tmp", 42));
        assert!(!is_image_name(
            ".crak-42-20261129T213353.123Z.crak.9.crak-tmp",
            42
        ));
        assert!(!is_image_name("crak-42-2026112xT213353.123Z.crak", 42));
        let a = image_name(42, t);
        let b = image_name(42, t + 1_000_000_000);
        assert!(a < b);
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let v: Vec<PathBuf> = ["a", "b", "c", "d"].iter().map(PathBuf::from).collect();
        assert_eq!(to_prune(&v, 2), &v[..2]);
        assert_eq!(to_prune(&v, 4), &[] as &[PathBuf]);
        assert_eq!(to_prune(&v, 9), &[] as &[PathBuf]);
        assert_eq!(to_prune(&v, 1), &v[..3]);
    }

    #[test]
    fn listing_and_pruning_touch_only_this_targets_images() {
        let dir = std::env::temp_dir().join(format!("crak-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4 {
            std::fs::write(dir.join(image_name(5, i * 1_000_000_000)), b"x").unwrap();
        }
        std::fs::write(dir.join(image_name(6, 0)), b"other target").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
        let removed = prune(&dir, 5, 2).unwrap();
        assert_eq!(removed.len(), 2);
        let left = images(&dir, 5).unwrap();
        assert_eq!(
            left,
            vec![
                dir.join(image_name(5, 2_000_000_000)),
                dir.join(image_name(5, 3_000_000_000))
            ]
        );
        assert!(dir.join(image_name(6, 0)).exists());
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
