//! Where the commands get stored page bytes from: the image's metadata in memory, page data
//! read on demand.
//!
//! [`Source::open`] reads a crak image file's metadata with
//! [`crak_format::read::read_seekable_metadata`] (every metadata record's CRC and END's digest
//! checked, page data sought over), and keeps the file open: the bytes of a PAGES run are read
//! with positional reads (`pread`) in chunks of at most [`CHUNK`] bytes when a command asks for
//! them, so memory stays bounded by the metadata whatever the size of the image. The CRC of a
//! PAGES record is checked as its data is read: reads of a run that go forward from its start
//! extend the CRC as they go, and the record's stored CRC is compared when the data has been
//! read to its end. [`Source::verify`] completes that check for the runs a command touched, so
//! a command checks every run it showed bytes of before it succeeds.
//!
//! Stdin is read whole and parsed with [`crak_format::read::parse`] (every CRC checked); an ELF
//! core file is read whole and its pages stay in the model.

use anyhow::{anyhow, Context as _};
use crak_format::image::{Image, Process};
use crak_format::record::kind;
use crak_format::Blob;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// Largest piece of page data read at once.
pub const CHUNK: usize = 1 << 20;

/// Where one PAGES record is in the input.
#[derive(Clone, Copy, Debug)]
struct RunLoc {
    /// Offset of the record header.
    record: u64,
    /// Payload length.
    length: u64,
    /// Offset of the page data from the start of the payload.
    data_at: u64,
}

/// How far a run's CRC has been computed.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// CRC over the record header and the first `next` payload bytes.
    Partial { crc: u32, next: u64 },
    /// The stored CRC matched.
    Done,
}

/// What holds the page bytes.
enum Backing {
    /// The model's page runs hold their data (ELF core files, models built in memory).
    Model,
    /// The whole input, in memory (stdin); every CRC already checked by the parser.
    Bytes(Vec<u8>),
    /// The image file, read on demand.
    File(File),
}

/// An image's metadata and access to its page data.
pub struct Source {
    image: Image<'static>,
    name: String,
    backing: Backing,
    runs: HashMap<(u32, usize), RunLoc>,
    checks: RefCell<HashMap<(u32, usize), Check>>,
    size: u64,
}

impl Source {
    /// Opens `path` (`-` for stdin): a crak image or an ELF core file.
    pub fn open(path: &Path) -> anyhow::Result<Source> {
        let name = crate::display_name(path);
        if crate::is_stdin(path) {
            let bytes = crate::read_all(path).with_context(|| format!("{name}: cannot read"))?;
            return Source::from_bytes(name, bytes);
        }
        let mut file = File::open(path).with_context(|| format!("{name}: cannot read"))?;
        let mut magic = [0u8; 8];
        let n =
            read_up_to(&mut file, &mut magic).with_context(|| format!("{name}: cannot read"))?;
        if magic.get(..n) != Some(&crak_format::MAGIC[..]) {
            // An ELF core file or something that is no image: the whole-input path names it.
            let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read"))?;
            return Source::from_bytes(name, bytes);
        }
        let size = file
            .metadata()
            .with_context(|| format!("{name}: cannot read"))?
            .len();
        let reader = File::open(path).with_context(|| format!("{name}: cannot read"))?;
        let parsed =
            crak_format::read::read_seekable_metadata(io::BufReader::with_capacity(4096, reader))
                .with_context(|| format!("{name}: not a valid crak image"))?;
        let runs = locate(&parsed.image, &parsed.layout);
        Ok(Source {
            image: parsed.image,
            name,
            backing: Backing::File(file),
            runs,
            checks: RefCell::new(HashMap::new()),
            size,
        })
    }

    /// A source over a whole input held in memory: a crak image (parsed, every CRC checked)
    /// or an ELF core file. `name` names it in messages.
    pub fn from_input(name: String, bytes: Vec<u8>) -> anyhow::Result<Source> {
        Source::from_bytes(name, bytes)
    }

    fn from_bytes(name: String, bytes: Vec<u8>) -> anyhow::Result<Source> {
        let size = bytes.len() as u64;
        if crate::elfcore::is_elf(&bytes) {
            let image = crate::elfcore::image(&bytes)
                .with_context(|| format!("{name}: cannot read the ELF core file"))?
                .into_owned();
            return Ok(Source {
                image,
                name,
                backing: Backing::Model,
                runs: HashMap::new(),
                checks: RefCell::new(HashMap::new()),
                size,
            });
        }
        let parsed = crak_format::read::parse(&bytes)
            .with_context(|| format!("{name}: not a valid crak image"))?;
        let runs = locate(&parsed.image, &parsed.layout);
        let mut image = parsed.image;
        for p in &mut image.processes {
            for r in &mut p.pages {
                r.data = Blob::default();
            }
        }
        let image = image.into_owned();
        // The parser checked every CRC.
        let checks = runs.keys().map(|&k| (k, Check::Done)).collect();
        Ok(Source {
            image,
            name,
            backing: Backing::Bytes(bytes),
            runs,
            checks: RefCell::new(checks),
            size,
        })
    }

    /// A source over a model whose page runs hold their data.
    pub fn from_image(image: Image<'static>) -> Source {
        Source {
            image,
            name: "<image>".to_string(),
            backing: Backing::Model,
            runs: HashMap::new(),
            checks: RefCell::new(HashMap::new()),
            size: 0,
        }
    }

    /// The model. When the page data is read from the input, its page runs hold no data: use
    /// [`Source::read`].
    pub fn image(&self) -> &Image<'static> {
        &self.image
    }

    /// The input's size in bytes (0 for a model built in memory).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The input's name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of page data in run `run` of `p`.
    pub fn run_len(&self, p: &Process<'_>, run: usize) -> u64 {
        let Some(r) = p.pages.get(run) else {
            return 0;
        };
        match self.backing {
            Backing::Model => r.data.len() as u64,
            _ => r
                .nr_pages
                .saturating_mul(u64::from(self.image.header.page_size)),
        }
    }

    /// Calls `f` with the bytes `[from, to)` of the page data of run `run` of `p`, in order, in
    /// pieces of at most [`CHUNK`] bytes. Bytes past the run's end are not given. Reading
    /// forward from the start of a run checks its CRC on the way (see the module doc); a run
    /// whose data has been read to its end with a CRC that differs is an error, and so is any
    /// later read of it.
    pub fn read(
        &self,
        p: &Process<'_>,
        run: usize,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let len = self.run_len(p, run);
        let to = to.min(len);
        if from >= to {
            return Ok(());
        }
        let data = match &self.backing {
            Backing::Model => {
                let bytes = p
                    .pages
                    .get(run)
                    .map(|r| r.data.as_bytes())
                    .unwrap_or_default();
                let (Ok(a), Ok(b)) = (usize::try_from(from), usize::try_from(to)) else {
                    return Ok(());
                };
                for c in bytes.get(a..b).unwrap_or_default().chunks(CHUNK) {
                    f(c)?;
                }
                return Ok(());
            }
            Backing::Bytes(b) => Some(b),
            Backing::File(_) => None,
        };
        let key = (p.pid(), run);
        let loc = *self
            .runs
            .get(&key)
            .ok_or_else(|| anyhow!("PAGES run {run} of pid {} is not in the layout", p.pid()))?;
        let base = loc
            .record
            .saturating_add(crak_format::RECORD_HEADER_LEN as u64)
            .saturating_add(loc.data_at);
        if let Some(bytes) = data {
            let (Ok(a), Ok(b)) = (
                usize::try_from(base.saturating_add(from)),
                usize::try_from(base.saturating_add(to)),
            ) else {
                return Ok(());
            };
            for c in bytes.get(a..b).unwrap_or_default().chunks(CHUNK) {
                f(c)?;
            }
            return Ok(());
        }
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(to - from).unwrap_or(CHUNK))];
        // Bring the CRC up to `from` when it lags behind (data before `from` is read and
        // dropped), then read the wanted bytes, extending the CRC while it follows them.
        let start = loc.data_at.saturating_add(from);
        self.advance(key, loc, start, &mut buf)?;
        let mut pos = from;
        while pos < to {
            let n = usize::try_from(to - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let chunk = buf.get_mut(..n).unwrap_or_default();
            self.pread(chunk, base.saturating_add(pos))?;
            self.extend(key, loc, loc.data_at.saturating_add(pos), chunk)?;
            f(chunk)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// The bytes `[from, to)` of run `run` of `p` as a reader, read as they are asked for.
    pub fn reader<'s, 'p, 'd>(
        &'s self,
        p: &'p Process<'d>,
        run: usize,
        from: u64,
        to: u64,
    ) -> RunReader<'s, 'p, 'd> {
        RunReader {
            src: self,
            p,
            run,
            pos: from,
            end: to.min(self.run_len(p, run)),
        }
    }

    /// Reads `buf.len()` bytes of run `run` of `p` starting `off` bytes into its data; false
    /// when the run does not hold them all.
    pub fn read_exact(
        &self,
        p: &Process<'_>,
        run: usize,
        off: u64,
        buf: &mut [u8],
    ) -> anyhow::Result<bool> {
        let end = off.saturating_add(buf.len() as u64);
        if end > self.run_len(p, run) {
            return Ok(false);
        }
        let mut at = 0usize;
        self.read(p, run, off, end, &mut |c| {
            if let Some(dst) = buf.get_mut(at..at + c.len()) {
                dst.copy_from_slice(c);
            }
            at += c.len();
            Ok(())
        })?;
        Ok(at == buf.len())
    }

    /// Completes the CRC check of every run read so far, reading what remains of each; an
    /// error names the first run whose stored CRC differs.
    pub fn verify(&self) -> anyhow::Result<()> {
        let pending: Vec<((u32, usize), u64)> = {
            let checks = self.checks.borrow();
            let mut v: Vec<((u32, usize), u64)> = checks
                .iter()
                .filter_map(|(&k, c)| match c {
                    Check::Partial { .. } => self.runs.get(&k).map(|l| (k, l.record)),
                    Check::Done => None,
                })
                .collect();
            v.sort_unstable_by_key(|&(_, at)| at);
            v
        };
        let mut buf = Vec::new();
        for (key, _) in pending {
            if let Some(&loc) = self.runs.get(&key) {
                if buf.is_empty() {
                    buf = vec![0u8; CHUNK];
                }
                self.advance(key, loc, loc.length, &mut buf)?;
            }
        }
        Ok(())
    }

    /// Completes the CRC check of the runs of `p` that overlap `[start, end)`.
    pub fn verify_range(&self, p: &Process<'_>, start: u64, end: u64) -> anyhow::Result<()> {
        if !matches!(self.backing, Backing::File(_)) {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (i, r) in p.pages.iter().enumerate() {
            let run_end = r.addr.saturating_add(self.run_len(p, i));
            if r.addr >= end || run_end <= start {
                continue;
            }
            if let Some(&loc) = self.runs.get(&(p.pid(), i)) {
                if buf.is_empty() {
                    buf = vec![0u8; CHUNK];
                }
                self.advance((p.pid(), i), loc, loc.length, &mut buf)?;
            }
        }
        Ok(())
    }

    /// Reads the run's payload from where its CRC stands up to payload offset `upto` (or to
    /// its end and its CRC), extending the CRC.
    fn advance(
        &self,
        key: (u32, usize),
        loc: RunLoc,
        upto: u64,
        buf: &mut [u8],
    ) -> anyhow::Result<()> {
        let mut next = match self.state(key, loc)? {
            Check::Done => return Ok(()),
            Check::Partial { next, .. } => next,
        };
        let upto = upto.min(loc.length);
        let payload = loc
            .record
            .saturating_add(crak_format::RECORD_HEADER_LEN as u64);
        while next < upto {
            let n = usize::try_from(upto - next)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let chunk = buf.get_mut(..n).unwrap_or_default();
            self.pread(chunk, payload.saturating_add(next))?;
            self.extend(key, loc, next, chunk)?;
            next += n as u64;
        }
        if upto == loc.length {
            self.extend(key, loc, loc.length, &[])?;
        }
        Ok(())
    }

    /// The run's check state, starting it (CRC over the record header) on first use.
    fn state(&self, key: (u32, usize), loc: RunLoc) -> anyhow::Result<Check> {
        if let Some(c) = self.checks.borrow().get(&key) {
            return Ok(*c);
        }
        let mut header = [0u8; crak_format::RECORD_HEADER_LEN];
        self.pread(&mut header, loc.record)?;
        let c = Check::Partial {
            crc: crc32c::crc32c(&header),
            next: 0,
        };
        self.checks.borrow_mut().insert(key, c);
        Ok(c)
    }

    /// `bytes` were read at payload offset `at`: extends the CRC when they continue it, and
    /// compares it with the stored CRC once the payload is complete.
    fn extend(&self, key: (u32, usize), loc: RunLoc, at: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let (crc, next) = match self.state(key, loc)? {
            Check::Done => return Ok(()),
            Check::Partial { crc, next } => (crc, next),
        };
        // Bytes that overlap what the CRC has covered extend it by their new part only.
        let end = at.saturating_add(bytes.len() as u64);
        if at > next || end < next {
            return Ok(());
        }
        let skip = usize::try_from(next - at).unwrap_or(usize::MAX);
        let crc = crc32c::crc32c_append(crc, bytes.get(skip..).unwrap_or_default());
        if end < loc.length {
            self.checks
                .borrow_mut()
                .insert(key, Check::Partial { crc, next: end });
            return Ok(());
        }
        let mut stored = [0u8; 4];
        let crc_at = loc
            .record
            .saturating_add(crak_format::RECORD_HEADER_LEN as u64)
            .saturating_add(loc.length);
        self.pread(&mut stored, crc_at)?;
        let stored = u32::from_le_bytes(stored);
        if stored != crc {
            return Err(anyhow!(
                "{}: not a valid crak image: bad-crc in PAGES record at offset {:#x} (pid {}): \
                 stored {stored:#010x}, computed {crc:#010x}",
                self.name,
                loc.record,
                key.0
            ));
        }
        self.checks.borrow_mut().insert(key, Check::Done);
        Ok(())
    }

    /// Fills `buf` from file offset `at`.
    fn pread(&self, buf: &mut [u8], at: u64) -> anyhow::Result<()> {
        let Backing::File(file) = &self.backing else {
            return Err(anyhow!("{}: no file to read", self.name));
        };
        file.read_exact_at(buf, at).with_context(|| {
            format!(
                "{}: cannot read {} bytes at offset {at:#x} (did the file change?)",
                self.name,
                buf.len()
            )
        })
    }
}

/// The bytes `[pos, end)` of one run's data as a [`std::io::Read`] (see [`Source::reader`]).
pub struct RunReader<'s, 'p, 'd> {
    src: &'s Source,
    p: &'p Process<'d>,
    run: usize,
    pos: u64,
    end: u64,
}

impl io::Read for RunReader<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.end.saturating_sub(self.pos));
        if want == 0 {
            return Ok(0);
        }
        let mut got = 0usize;
        self.src
            .read(self.p, self.run, self.pos, self.pos + want, &mut |c| {
                if let Some(dst) = buf.get_mut(got..got + c.len()) {
                    dst.copy_from_slice(c);
                }
                got += c.len();
                Ok(())
            })
            .map_err(to_io)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// An I/O error for a reading error (the I/O error itself when it is one).
pub fn to_io(e: anyhow::Error) -> io::Error {
    match e.downcast::<io::Error>() {
        Ok(io) => io,
        Err(e) => io::Error::other(format!("{e:#}")),
    }
}

/// The place of every PAGES run of `image` in the input, from `layout`.
fn locate(image: &Image<'_>, layout: &crak_format::read::Layout) -> HashMap<(u32, usize), RunLoc> {
    let page_size = u64::from(image.header.page_size);
    let mut runs = HashMap::new();
    for p in &image.processes {
        for (i, r) in p.pages.iter().enumerate() {
            let Some(span) = layout.find(kind::PAGES, Some(p.pid()), i) else {
                continue;
            };
            let data_len = r.nr_pages.saturating_mul(page_size);
            runs.insert(
                (p.pid(), i),
                RunLoc {
                    record: span.offset,
                    length: span.length,
                    data_at: span.length.saturating_sub(data_len),
                },
            );
        }
    }
    runs
}

/// Reads until `buf` is full or the input ends.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match f.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
