//! Capture: freeze a running process, record its state into a crak image, make the image
//! durable, then kill the process (or resume it with `--leave-running`).
//!
//! The sequence, and why it is in this order:
//!
//! 1. **Preflight** (process untouched): the kernel has what capture needs; the pid exists and is
//!    a live user process not already traced; every fd and mapping is of a
//!    supported kind; the temporary output file can be created. Refusals happen here, so the
//!    target never notices a refused capture.
//! 2. **Freeze** (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`), and check it is still the process
//!    preflight saw (start time). From here on any error resumes the target exactly as it was
//!    (the [`freeze::Frozen`] guard), with its interrupted system call restarted.
//! 3. **Metadata**, while frozen: `/proc`, ptrace and remote system calls (securebits, brk,
//!    sigactions, sigaltstack, tid address). Gathered completely before the first byte is
//!    written, because the format puts every metadata record before the pages (spec §2.3).
//! 4. **Pages**, streamed straight from the frozen target into the writer. With
//!    `--leave-running` a forked snapshot ([`snapshot`]) holds the memory instead: the target is
//!    resumed right after the injected `fork`, and the pages are read from the snapshot child
//!    (without a snapshot, the target is resumed right after its last page was read).
//! 5. **Durability**: a file is written to a temporary name, `fsync`ed, renamed and its
//!    directory `fsync`ed; standard output is flushed.
//! 6. **Kill** (default): only after step 5, so no state is ever lost; a failure anywhere before
//!    leaves the process running and no image behind.
//!
//! With a signing key the image is written through [`crak_format::auth::SigningWriter`], which
//! adds the AUTH record before END. [`supervisor`] repeats forked captures periodically.

mod collect;
pub mod files;
pub mod freeze;
pub mod ipc;
pub mod mm;
pub mod net;
pub mod objects;
pub mod output;
pub mod snapshot;
pub mod supervisor;
pub mod task;
pub mod tree;

use crate::fault;
use crate::kernel::{self, Kernel};
use crate::procfs::{self, ProcError};
use crate::sys::{self, SysError};
use collect::{collect, Metadata};
use crak_format::auth::{SecretKey, SigningWriter};
use crak_format::record::zero_pages::ZeroRun;
use crak_format::{Record, Writer, CURRENT_VERSION};
use freeze::Frozen;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why a capture did not happen. Every variant leaves the target running and untraced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such process.
    #[error("no process with pid {0}")]
    NoSuchProcess(i32),
    /// A zombie has no state left to capture.
    #[error("process {0} is a zombie")]
    Zombie(i32),
    /// Kernel threads have no user space.
    #[error("process {0} is a kernel thread")]
    KernelThread(i32),
    /// Already under a tracer.
    #[error("process {pid} is already traced by process {tracer}")]
    Traced {
        /// Target.
        pid: i32,
        /// Its tracer.
        tracer: u64,
    },
    /// A file descriptor of a kind the image cannot hold.
    #[error("process {pid}: fd {fd} is {kind} ({link}), which crak cannot capture yet")]
    UnsupportedFd {
        /// Target.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// What it is.
        kind: String,
        /// Its `/proc/PID/fd` link.
        link: String,
    },
    /// A mapping of a kind the image cannot hold.
    #[error(
        "process {pid}: the mapping {start:#x}-{end:#x} {what}, which crak cannot capture yet"
    )]
    UnsupportedVma {
        /// Target.
        pid: i32,
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// What it is.
        what: String,
    },
    /// The running kernel lacks a feature.
    #[error(transparent)]
    Kernel(#[from] kernel::Missing),
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A `/proc` file could not be read.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// An injected fault (`CRAK_FAULT`).
    #[error(transparent)]
    Fault(#[from] fault::Injected),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Where the image goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A file, written atomically.
    File(PathBuf),
    /// Standard output (`-o -`).
    Stdout,
}

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The target.
    pub pid: i32,
    /// Where the image goes.
    pub output: Output,
    /// Resume the target afterwards instead of killing it.
    pub leave_running: bool,
    /// Command line to record in a NOTE (`capture.command`), if any.
    pub command: Option<String>,
    /// With `leave_running`: hold the memory in a forked snapshot child and resume the target
    /// right away ([`snapshot`]), instead of copying every page while it is frozen.
    pub snapshot: bool,
    /// Sign the image with this key (an AUTH record, spec §3.17).
    pub sign: Option<SecretKey>,
    /// Capture the target's descendants with it (else a target with children is refused).
    pub tree: bool,
    /// Accept pipes with an end held outside the captured tree (that end is closed after a
    /// restore; each is named in a warning); else such a pipe refuses the capture.
    pub external_pipes: bool,
    /// Which System V IPC objects to record besides the segments the tree maps.
    pub ipc: ipc::IpcScope,
}

impl Options {
    /// Options for capturing `pid` into `output` and killing it; no NOTE, no signature.
    pub fn new(pid: i32, output: Output) -> Options {
        Options {
            pid,
            output,
            leave_running: false,
            command: None,
            snapshot: true,
            sign: None,
            tree: true,
            external_pipes: true,
            ipc: ipc::IpcScope::default(),
        }
    }
}

/// What a capture did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Target.
    pub pid: i32,
    /// Image path, or `-`.
    pub image: String,
    /// Pages stored.
    pub pages: u64,
    /// Pages recorded as zero.
    pub zero_pages: u64,
    /// Image size in bytes.
    pub bytes: u64,
    /// Processes captured (the target and its descendants).
    pub processes: usize,
    /// Mappings.
    pub vmas: usize,
    /// File descriptors.
    pub fds: usize,
    /// Whether the target was left running (else it was killed).
    pub left_running: bool,
    /// How long the target was frozen, ms.
    pub frozen_ms: f64,
    /// Whether the pages came from a forked snapshot child (the target was resumed before
    /// they were read).
    pub forked: bool,
    /// With a forked snapshot: how long the target was frozen a second time, to reap the
    /// snapshot child in it, ms.
    pub reap_frozen_ms: f64,
    /// With a forked snapshot: bytes of pages read while frozen (`MADV_DONTFORK`,
    /// `MADV_WIPEONFORK` and shared anonymous mappings).
    pub pre_read_bytes: u64,
    /// Whether the image carries an AUTH record.
    pub signed: bool,
    /// Things the user should know that did not stop the capture (e.g. why no snapshot was
    /// forked).
    pub warnings: Vec<String>,
    /// Total time, ms.
    pub total_ms: f64,
}

impl Summary {
    /// The one-line human summary.
    pub fn line(&self) -> String {
        format!(
            "captured pid {}{} to {}: {} pages stored ({}), {} zero pages, {} mappings, {} fds, image {}{}; frozen {:.1} ms{}, total {:.1} ms; process {}",
            self.pid,
            match self.processes {
                0 | 1 => String::new(),
                n => format!(" and {} descendant{}", n - 1, if n > 2 { "s" } else { "" }),
            },
            self.image,
            self.pages,
            human_size(self.pages * sys::process::page_size()),
            self.zero_pages,
            self.vmas,
            self.fds,
            human_size(self.bytes),
            if self.signed { ", signed" } else { "" },
            self.frozen_ms,
            if self.forked {
                format!(
                    " (forked snapshot; {:.1} ms more to reap it)",
                    self.reap_frozen_ms
                )
            } else {
                String::new()
            },
            self.total_ms,
            if self.left_running { "left running" } else { "killed" }
        )
    }
}

/// `1.5 MiB` style sizes.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Checks, without touching the process, that `pid` can be captured. Returns its start time,
/// which tells it apart from a later process that reuses the pid.
pub fn preflight(pid: i32) -> Result<u64, Error> {
    preflight_entries(pid).map(|(t, _)| t)
}

/// [`preflight`], also returning the smaps entries it read.
fn preflight_entries(pid: i32) -> Result<(u64, Vec<procfs::MapEntry>), Error> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess(pid));
    }
    if pid == std::process::id() as i32 {
        return Err(Error::Other("crak-capture cannot capture itself".into()));
    }
    let stat = procfs::stat(pid).map_err(|e| {
        if e.is_not_found() {
            Error::NoSuchProcess(pid)
        } else {
            e.into()
        }
    })?;
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(Error::Zombie(pid));
    }
    if stat.flags & procfs::PF_KTHREAD != 0 {
        return Err(Error::KernelThread(pid));
    }
    let status = procfs::status(pid)?;
    let tracer = status.decimal("TracerPid").unwrap_or(0);
    if tracer != 0 {
        return Err(Error::Traced { pid, tracer });
    }
    files::preflight(pid)?;
    let entries = procfs::smaps(pid)?;
    let maps = mm::mappings_of(pid, &entries)?;
    ipc::preflight(pid, &maps)?;
    Ok((stat.starttime, entries))
}

struct WriterSink<'a, W: Write> {
    w: &'a mut Writer<W>,
    pid: u32,
    page_size: u64,
    progress: Progress,
}

/// Progress of the page copy on stderr, only when it is a terminal.
struct Progress {
    on: bool,
    bytes: u64,
    last: Instant,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            on: io::stderr().is_terminal(),
            bytes: 0,
            last: Instant::now(),
        }
    }

    fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.on && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            eprint!("\rcrak-capture: {} of pages copied", human_size(self.bytes));
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

impl<W: Write> mm::PageSink for WriterSink<'_, W> {
    fn pages(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        let nr = data.len() as u64 / self.page_size;
        self.progress.add(data.len() as u64);
        self.w
            .write_pages(self.pid, addr, nr, data)
            .map_err(|e| Error::Io {
                context: "writing page data".into(),
                source: e,
            })?;
        Ok(())
    }

    fn zeros(&mut self, addr: u64, nr_pages: u64) -> Result<(), Error> {
        self.w
            .write_record(&Record::ZeroPages(ZeroRun {
                pid: self.pid,
                addr,
                nr_pages,
            }))
            .map_err(|e| Error::Io {
                context: "writing a ZERO_PAGES record".into(),
                source: e,
            })?;
        Ok(())
    }
}

/// Where the pages come from.
enum Pages<'a> {
    /// The frozen processes themselves.
    Frozen(i32),
    /// Forked snapshot children (and what was read while frozen): the target's, then one per
    /// process of `Metadata::others`, in that order.
    Snapshots(&'a [snapshot::Snapshot]),
}

/// Writes the whole image to `out`, with PAGES records for `pid`; returns the page statistics.
fn write_image<W: Write>(
    pid: i32,
    pages: Pages<'_>,
    meta: &Metadata,
    page_size: u64,
    out: W,
) -> Result<(mm::PageStats, W), Error> {
    let wio = |context: &str| {
        let context = context.to_string();
        move |source| Error::Io { context, source }
    };
    let mut w = Writer::new(out, CURRENT_VERSION, 0).map_err(wio("writing the file header"))?;
    let (notes, meta_recs): (Vec<&Record<'_>>, Vec<&Record<'_>>) = meta
        .records
        .iter()
        .partition(|r| matches!(r, Record::Note(_)));
    for r in meta_recs {
        w.write_record(r).map_err(|e| Error::Io {
            context: format!("writing a {} record", r.name().unwrap_or("?")),
            source: e,
        })?;
    }
    let mut sink = WriterSink {
        w: &mut w,
        pid: pid as u32,
        page_size,
        progress: Progress::new(),
    };
    let mut mid = || fault::point("mid-pages").map_err(Error::from);
    let stats = match pages {
        Pages::Frozen(from) => mm::dump_pages(from, &meta.maps, page_size, &mut sink, &mut mid),
        Pages::Snapshots(snaps) => match snaps.first() {
            Some(snap) => snap.dump_pages(&meta.maps, page_size, &mut sink, &mut mid),
            None => Err(Error::Other("no snapshot of the target".into())),
        },
    };
    let mut stats = stats;
    for (i, (opid, maps)) in meta.others.iter().enumerate() {
        let Ok(total) = stats.as_mut() else { break };
        sink.pid = *opid as u32;
        let more = match pages {
            Pages::Frozen(_) => mm::dump_pages(*opid, maps, page_size, &mut sink, &mut mid),
            Pages::Snapshots(snaps) => match snaps.get(i + 1) {
                Some(snap) => snap.dump_pages(maps, page_size, &mut sink, &mut mid),
                None => Err(Error::Other(format!("no snapshot of process {opid}"))),
            },
        };
        match more {
            Ok(s) => {
                total.stored += s.stored;
                total.zero += s.zero;
            }
            Err(e) => stats = Err(e),
        }
    }
    sink.progress.done();
    let stats = stats?;
    for r in notes {
        w.write_record(r).map_err(wio("writing a NOTE record"))?;
    }
    let out = w.finish().map_err(wio("writing the END record"))?;
    Ok((stats, out))
}

/// [`write_image`], through a [`SigningWriter`] when there is a key.
fn write_maybe_signed<W: Write>(
    pid: i32,
    pages: Pages<'_>,
    meta: &Metadata,
    page_size: u64,
    out: W,
    key: Option<&SecretKey>,
) -> Result<(mm::PageStats, W), Error> {
    match key {
        None => write_image(pid, pages, meta, page_size, out),
        Some(key) => {
            let (stats, sw) = write_image(pid, pages, meta, page_size, SigningWriter::new(out))?;
            let out = sw.finish(key).map_err(|source| Error::Io {
                context: "writing the AUTH record".into(),
                source,
            })?;
            Ok((stats, out))
        }
    }
}

fn pages_of<'a>(
    pid: i32,
    frozen: &Option<Frozen>,
    snaps: &'a [snapshot::Snapshot],
) -> Result<Pages<'a>, Error> {
    match (snaps.is_empty(), frozen) {
        (false, _) => Ok(Pages::Snapshots(snaps)),
        (true, Some(_)) => Ok(Pages::Frozen(pid)),
        (true, None) => Err(Error::Other("the target is no longer frozen".into())),
    }
}

/// A forked snapshot of every frozen process (the target, then `rest` in order), or none: when
/// the kernel refuses one, those already made are ended (while still frozen) and the reason is
/// returned, so that the pages are copied while frozen instead.
fn take_snapshots(
    frozen: &mut Frozen,
    rest: &mut [Frozen],
    meta: &Metadata,
    page_size: u64,
) -> Result<Result<Vec<snapshot::Snapshot>, String>, Error> {
    let mut snaps: Vec<snapshot::Snapshot> = Vec::with_capacity(1 + rest.len());
    let mut outcome = Ok(());
    {
        let targets = std::iter::once((&mut *frozen, &meta.maps))
            .chain(rest.iter_mut().zip(meta.others.iter().map(|(_, m)| m)));
        for (f, maps) in targets {
            match snapshot::take(f, maps, page_size) {
                Ok(Ok(s)) => snaps.push(s),
                Ok(Err(snapshot::Refused(why))) => {
                    outcome = Err(Ok(why));
                    break;
                }
                Err(e) => {
                    outcome = Err(Err(e));
                    break;
                }
            }
        }
    }
    match outcome {
        Ok(()) => Ok(Ok(snaps)),
        Err(why) => {
            // The processes are still frozen: end each child in its frozen parent.
            let all = std::iter::once(frozen).chain(rest.iter_mut());
            for (s, f) in snaps.into_iter().zip(all) {
                s.end_while_frozen(f)?;
            }
            match why {
                Ok(why) => Ok(Err(why)),
                Err(e) => Err(e),
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Captures `opts.pid` into `opts.output`: see the module documentation for the sequence.
pub fn run(opts: &Options) -> Result<Summary, Error> {
    let t0 = Instant::now();
    Kernel::probe().require_capture()?;
    let pid = opts.pid;
    let (starttime, entries) = preflight_entries(pid)?;
    let pipe_warnings = tree::preflight_descendants(pid, opts.tree, opts.external_pipes)?;
    let forking = opts.leave_running && opts.snapshot;
    let page_size = sys::process::page_size();

    // The temporary file is made before the target is touched: an output that cannot be
    // created (missing directory, no permission) refuses the capture without freezing anything.
    let mut tmp = match &opts.output {
        Output::File(path) => Some(output::TempFile::create(path)?),
        Output::Stdout => None,
    };

    let mut frozen = Frozen::freeze(pid)?;
    let (mut rest, zombies) = tree::freeze_descendants(&frozen, opts.tree)?;
    let t_frozen = Instant::now();
    fault::point("after-freeze")?;
    // With a snapshot, the target's mapping flags come from the smaps read above instead of a
    // second smaps read (a walk of every page table) while frozen; the snapshot child checks
    // them afterwards (Snapshot::check_mappings).
    let meta = if forking {
        mm::with_flags_hint(pid, entries, || {
            collect(&mut frozen, &mut rest, &zombies, starttime, page_size, opts)
        })?
    } else {
        drop(entries);
        collect(&mut frozen, &mut rest, &zombies, starttime, page_size, opts)?
    };
    let nvmas = meta.maps.len() + meta.others.iter().map(|(_, m)| m.len()).sum::<usize>();
    let processes = 1 + meta.others.len() + zombies.len();
    let mut warnings = pipe_warnings;
    warnings.extend(collect::external_unix_warnings(&meta.records));
    warnings.extend(meta.warnings.iter().cloned());

    // Forked snapshots hold the memory from here on: the processes are resumed at once.
    let mut snaps = Vec::new();
    let mut frozen_ms = 0.0;
    if forking {
        match take_snapshots(&mut frozen, &mut rest, &meta, page_size)? {
            Ok(s) => snaps = s,
            Err(why) => warnings.push(format!("{why}; the pages were copied while frozen")),
        }
    }
    let mut frozen = Some(frozen);
    if !snaps.is_empty() {
        if let Some(f) = frozen.take() {
            frozen_ms = ms(t_frozen.elapsed());
            // Children first: a parent resumed first could see one still stopped.
            for d in rest.drain(..).rev() {
                d.resume()?;
            }
            f.resume()?;
        }
        for (s, maps) in snaps
            .iter()
            .zip(std::iter::once(&meta.maps).chain(meta.others.iter().map(|(_, m)| m)))
        {
            s.check_mappings(maps)?;
        }
    }
    let pre_read_bytes = snaps.iter().map(|s| s.pre_read_bytes() as u64).sum();
    let forked = !snaps.is_empty();

    // Without a snapshot and with --leave-running, the target is resumed as soon as its last
    // page was read: making the file durable does not need it stopped. Otherwise it stays
    // frozen until it is killed.
    let mut reap_frozen_ms = 0.0;
    let mut after_pages = |frozen: &mut Option<Frozen>,
                           snaps: &mut Vec<snapshot::Snapshot>,
                           rest: &mut Vec<Frozen>|
     -> Result<(), Error> {
        // Every page was read: the snapshot children are no longer needed.
        // The image does not depend on how the child ends: a failure is a warning.
        for s in snaps.drain(..) {
            let child = s.child();
            match s.finish() {
                Ok(f) => reap_frozen_ms = f64::max(reap_frozen_ms, f.frozen_ms),
                Err(e) => warnings.push(format!("ending the snapshot child {child}: {e}")),
            }
        }
        if opts.leave_running {
            if let Some(f) = frozen.take() {
                frozen_ms = ms(t_frozen.elapsed());
                // Children first: a parent resumed first could see one still stopped.
                for d in rest.drain(..).rev() {
                    d.resume()?;
                }
                f.resume()?;
            }
        }
        Ok(())
    };
    let key = opts.sign.as_ref();
    let (stats, bytes, image, published) = match &opts.output {
        Output::File(path) => {
            let mut tmp = tmp
                .take()
                .ok_or_else(|| Error::Other("temporary image file missing".into()))?;
            let file = tmp.file()?;
            let counting = output::Counting {
                inner: BufWriter::with_capacity(1 << 20, file),
                count: 0,
            };
            let (stats, mut counting) = write_maybe_signed(
                pid,
                pages_of(pid, &frozen, &snaps)?,
                &meta,
                page_size,
                counting,
                key,
            )?;
            after_pages(&mut frozen, &mut snaps, &mut rest)?;
            counting.flush().map_err(|e| Error::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })?;
            let bytes = counting.count;
            drop(counting);
            tmp.sync()?;
            fault::point("before-rename")?;
            let dest = tmp.persist()?;
            (stats, bytes, dest.display().to_string(), Some(dest))
        }
        Output::Stdout => {
            let stdout = io::stdout();
            let counting = output::Counting {
                inner: BufWriter::with_capacity(1 << 20, stdout.lock()),
                count: 0,
            };
            let (stats, mut counting) = write_maybe_signed(
                pid,
                pages_of(pid, &frozen, &snaps)?,
                &meta,
                page_size,
                counting,
                key,
            )?;
            after_pages(&mut frozen, &mut snaps, &mut rest)?;
            counting.flush().map_err(|e| Error::Io {
                context: "writing to standard output".into(),
                source: e,
            })?;
            (stats, counting.count, "-".to_string(), None)
        }
    };

    if let Some(f) = frozen {
        let killed = fault::point("before-kill")
            .map_err(Error::from)
            .and_then(|()| {
                frozen_ms = ms(t_frozen.elapsed());
                // Descendants first: each is reaped by its own (still frozen) parent later,
                // or by init.
                for d in rest.drain(..).rev() {
                    d.kill()?;
                }
                f.kill()
            });
        if let Err(e) = killed {
            // The process is still running (the guard resumed it): the image must not exist.
            if let Some(p) = &published {
                output::unpublish(p);
            }
            return Err(e);
        }
    }
    Ok(Summary {
        pid,
        image,
        pages: stats.stored,
        zero_pages: stats.zero,
        bytes,
        processes,
        vmas: nvmas,
        fds: meta.fds,
        left_running: opts.leave_running,
        frozen_ms,
        forked,
        reap_frozen_ms,
        pre_read_bytes,
        signed: key.is_some(),
        warnings,
        total_ms: ms(t0.elapsed()),
    })
}
