//! The sequential writer of `spec/crak-format.md` §2: file header, records with their CRC,
//! page-aligned PAGES data (§3.11) and END with counts and digest (§2.4). It never seeks, so
//! an image can be written to a pipe.
//!
//! [`Writer`] is the low-level interface (raw records for tests and fuzzers, streamed page
//! data for the capture engine); [`write_image`] and [`to_vec`] write a whole [`Image`].

use crate::bytes::Blob;
use crate::error::FieldError;
use crate::image::{Image, Process, RecordExtra, UnknownRecord, Version};
use crate::read::{RecordKey, Tracker};
use crate::record::end::{self, End};
use crate::record::pages::{PagesHeader, PAGES_HEADER_SIZE};
use crate::record::{
    auth, creds, fd, header, kind, locks, mm, msg, note, pages, pipe_data, process, rlimits, scm,
    sem, shm, sigactions, sigqueue, thread, timers, vma, xsave, zero_pages, Record,
};
use crate::{FILE_HEADER_LEN, MAGIC, RECORD_HEADER_LEN};
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// Writes an image record by record, tracking the file offset, the record and page counts and
/// the END digest.
///
/// Page data is never copied: [`Writer::write_pages`] writes the caller's slice straight
/// through, and [`Writer::begin_pages`] lets the caller stream it in pieces. Wrap an unbuffered
/// `W` (a `File`) in a [`BufWriter`] for the many small metadata records.
pub struct Writer<W: Write> {
    w: W,
    offset: u64,
    digest: u32,
    records: u64,
    pages: u64,
    page_size: Option<u32>,
    scratch: Vec<u8>,
    open_pages: bool,
}

impl<W: Write> Writer<W> {
    /// Starts an image: writes the 16-byte file header (§2.1) with `version` and `flags` as
    /// given.
    pub fn new(mut w: W, version: Version, flags: u32) -> io::Result<Self> {
        let mut fh = [0u8; FILE_HEADER_LEN];
        fh[..8].copy_from_slice(&MAGIC);
        fh[8..10].copy_from_slice(&version.major.to_le_bytes());
        fh[10..12].copy_from_slice(&version.minor.to_le_bytes());
        fh[12..16].copy_from_slice(&flags.to_le_bytes());
        w.write_all(&fh)?;
        Ok(Writer {
            w,
            offset: FILE_HEADER_LEN as u64,
            digest: crc32c::crc32c(&fh),
            records: 0,
            pages: 0,
            page_size: None,
            scratch: Vec::new(),
            open_pages: false,
        })
    }

    /// File offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The page size, learnt from the HEADER written (or set with [`Writer::set_page_size`]).
    pub fn page_size(&self) -> Option<u32> {
        self.page_size
    }

    /// Sets the page size used to size and align PAGES records, e.g. after writing a raw HEADER
    /// that does not parse.
    pub fn set_page_size(&mut self, page_size: u32) {
        self.page_size = Some(page_size);
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// The END record [`Writer::finish`] would write now.
    pub fn end(&self) -> End {
        End {
            record_count: self.records,
            byte_count: self.offset,
            page_count: self.pages,
            digest: self.digest,
        }
    }

    fn ready(&self) -> io::Result<()> {
        if self.open_pages {
            return Err(io::Error::other(
                "a PAGES record begun with begin_pages was not finished",
            ));
        }
        Ok(())
    }

    fn record_header(kind: u16, flags: u16, length: u64) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..2].copy_from_slice(&kind.to_le_bytes());
        h[2..4].copy_from_slice(&flags.to_le_bytes());
        h[8..16].copy_from_slice(&length.to_le_bytes());
        h
    }

    /// Counts a complete record in END's counts and digest.
    fn account(&mut self, header: &[u8; RECORD_HEADER_LEN], crc: u32, len: u64) {
        self.digest = crc32c::crc32c_append(self.digest, header);
        self.digest = crc32c::crc32c_append(self.digest, &crc.to_le_bytes());
        self.records += 1;
        self.offset += (RECORD_HEADER_LEN + 4) as u64 + len;
    }

    /// Writes a record with `kind`, `flags` and `payload` exactly as given, with its CRC; no
    /// check of any kind. Returns the record's file offset. For tests and fuzzers that build
    /// broken images; also learns the page size from a HEADER payload that parses.
    pub fn write_raw_record(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<u64> {
        self.ready()?;
        let at = self.offset;
        let h = Self::record_header(kind, flags, payload.len() as u64);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
        self.w.write_all(&h)?;
        self.w.write_all(payload)?;
        self.w.write_all(&crc.to_le_bytes())?;
        if kind == kind::HEADER {
            if let Ok(hd) = header::parse(payload) {
                self.page_size = Some(hd.page_size);
            }
        }
        self.account(&h, crc, payload.len() as u64);
        Ok(at)
    }

    /// Encodes a payload with `enc` into the scratch buffer, checks with `same` that it parses
    /// back to the same value, and writes it with the kind's default flags.
    fn write_checked(
        &mut self,
        kind: u16,
        enc: impl FnOnce(&mut Vec<u8>),
        same: impl FnOnce(&[u8]) -> Result<bool, FieldError>,
    ) -> io::Result<u64> {
        self.write_checked_as(kind, kind::default_flags(kind), &[], enc, same)
    }

    /// [`Writer::write_checked`] with `flags` and `extra` bytes appended to the payload (§5: a
    /// reader ignores them, which the check confirms).
    fn write_checked_as(
        &mut self,
        kind: u16,
        flags: u16,
        extra: &[u8],
        enc: impl FnOnce(&mut Vec<u8>),
        same: impl FnOnce(&[u8]) -> Result<bool, FieldError>,
    ) -> io::Result<u64> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        enc(&mut buf);
        let name = kind::name(kind).unwrap_or("unknown");
        // The check reads the payload with its extra bytes, as a reader will: bytes that
        // would read as fields of this version (a THREAD tail where the 1.2 fields go) are
        // refused rather than written to mean something else.
        buf.extend_from_slice(extra);
        let checked = match same(&buf) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) if !extra.is_empty() => Err(invalid(format!(
                "{name} record cannot be written with {} extra bytes: they would read as \
                 fields this version defines",
                extra.len()
            ))),
            Ok(false) => Err(invalid(format!(
                "{name} record cannot be encoded: it does not read back the same \
                 (a length above u32::MAX?)"
            ))),
            Err(e) => Err(invalid(format!("{name} record cannot be written: {e}"))),
        };
        let r = checked.and_then(|()| self.write_raw_record(kind, flags, &buf));
        self.scratch = buf;
        r
    }

    /// Writes one record with its kind's default flags (§2.2) after checking that it
    /// encodes within the spec's bounds and domains (`InvalidInput` otherwise): what this
    /// writes, [`crate::read::parse`] reads back the same. A PAGES record goes through
    /// [`Writer::write_pages`]; END is written by [`Writer::finish`] (`InvalidInput` here).
    /// Returns the record's file offset.
    pub fn write_record(&mut self, rec: &Record<'_>) -> io::Result<u64> {
        match rec {
            Record::Pages(r) => self.write_pages(r.pid, r.addr, r.nr_pages, r.data.as_bytes()),
            Record::End(_) => Err(invalid("END is written by Writer::finish")),
            Record::Unknown { kind, payload } => {
                self.write_raw_record(*kind, 0, payload.as_bytes())
            }
            _ => {
                let ps = self.page_size;
                let kind = rec.kind();
                self.write_checked(
                    kind,
                    |out| rec.encode(out),
                    |p| Ok(Record::decode(kind, p, ps)? == *rec),
                )
            }
        }
    }

    fn pages_header(&self, pid: u32, addr: u64, nr_pages: u64) -> io::Result<(PagesHeader, u64)> {
        self.ready()?;
        let Some(ps) = self.page_size else {
            return Err(invalid("PAGES before HEADER: the page size is not known"));
        };
        if nr_pages == 0 {
            return Err(invalid("a PAGES record holds at least one page"));
        }
        let data_len = nr_pages
            .checked_mul(u64::from(ps))
            .ok_or_else(|| invalid("nr_pages × page_size overflows"))?;
        // Page data starts at offset + 16 + data_offset, which must be a multiple of the page
        // size (§3.11).
        let ps64 = u64::from(ps.max(1));
        let unaligned =
            (self.offset + RECORD_HEADER_LEN as u64 + u64::from(PAGES_HEADER_SIZE)) % ps64;
        let pad = (ps64 - unaligned) % ps64;
        let data_offset = PAGES_HEADER_SIZE + pad as u32;
        Ok((
            PagesHeader {
                pid,
                addr,
                nr_pages,
                data_offset,
            },
            data_len,
        ))
    }

    /// Writes a PAGES record whose data is `data` (exactly `nr_pages × page_size` bytes,
    /// `InvalidInput` otherwise), padding it so that the data starts page-aligned in the file
    /// (§3.11). The data is written straight from `data`, not copied. Returns the record's
    /// file offset.
    pub fn write_pages(
        &mut self,
        pid: u32,
        addr: u64,
        nr_pages: u64,
        data: &[u8],
    ) -> io::Result<u64> {
        let (ph, data_len) = self.pages_header(pid, addr, nr_pages)?;
        if data.len() as u64 != data_len {
            return Err(invalid(format!(
                "PAGES of {nr_pages} pages needs {data_len} bytes of data, got {}",
                data.len()
            )));
        }
        let mut pw = self.start_pages(ph, data_len, kind::default_flags(kind::PAGES))?;
        pw.write_all(data)?;
        pw.finish()
    }

    /// Begins a PAGES record of `nr_pages` pages whose data the caller then writes through the
    /// returned [`PageWriter`] in as many pieces as it likes, then [`PageWriter::finish`]es.
    /// Until then no other record can be written.
    pub fn begin_pages(
        &mut self,
        pid: u32,
        addr: u64,
        nr_pages: u64,
    ) -> io::Result<PageWriter<'_, W>> {
        let (ph, data_len) = self.pages_header(pid, addr, nr_pages)?;
        self.start_pages(ph, data_len, kind::default_flags(kind::PAGES))
    }

    fn start_pages(
        &mut self,
        ph: PagesHeader,
        data_len: u64,
        flags: u16,
    ) -> io::Result<PageWriter<'_, W>> {
        let at = self.offset;
        let length = u64::from(ph.data_offset) + data_len;
        let h = Self::record_header(kind::PAGES, flags, length);
        self.scratch.clear();
        pages::write_header(&ph, &mut self.scratch);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h), &self.scratch);
        self.w.write_all(&h)?;
        self.w.write_all(&self.scratch)?;
        self.open_pages = true;
        Ok(PageWriter {
            w: self,
            at,
            header: h,
            length,
            remaining: data_len,
            nr_pages: ph.nr_pages,
            crc,
        })
    }

    /// Writes END with the counts and digest of everything written (§2.4), flushes, and gives
    /// back the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        let end = self.end();
        self.finish_with_end(&end)
    }

    /// Writes `end` as given (for tests that need a wrong END), flushes, and gives back the
    /// underlying writer.
    pub fn finish_with_end(self, end: &End) -> io::Result<W> {
        self.finish_end_as(end, kind::default_flags(kind::END), &[])
    }

    /// Writes `end` with `flags` and `extra` bytes after its fields, flushes, and gives back
    /// the underlying writer.
    fn finish_end_as(mut self, end: &End, flags: u16, extra: &[u8]) -> io::Result<W> {
        self.ready()?;
        let mut payload = Vec::with_capacity(end::END_SIZE + extra.len());
        end::write(end, &mut payload);
        payload.extend_from_slice(extra);
        let h = Self::record_header(kind::END, flags, payload.len() as u64);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h), &payload);
        self.w.write_all(&h)?;
        self.w.write_all(&payload)?;
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// The data of one PAGES record being written (see [`Writer::begin_pages`]). Writing more than
/// the record holds is an `InvalidInput` error.
pub struct PageWriter<'a, W: Write> {
    w: &'a mut Writer<W>,
    at: u64,
    header: [u8; RECORD_HEADER_LEN],
    length: u64,
    remaining: u64,
    nr_pages: u64,
    crc: u32,
}

impl<W: Write> PageWriter<'_, W> {
    /// Bytes of page data still to write.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Ends the record: checks all its data was written, writes the CRC. Returns the record's
    /// file offset.
    pub fn finish(self) -> io::Result<u64> {
        if self.remaining != 0 {
            return Err(invalid(format!(
                "PAGES record ended with {} bytes of page data missing",
                self.remaining
            )));
        }
        self.w.w.write_all(&self.crc.to_le_bytes())?;
        self.w.open_pages = false;
        self.w.pages += self.nr_pages;
        self.w.account(&self.header, self.crc, self.length);
        Ok(self.at)
    }
}

impl<W: Write> Write for PageWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining {
            return Err(invalid(format!(
                "{} bytes of page data offered, {} remain in the record",
                buf.len(),
                self.remaining
            )));
        }
        let n = self.w.w.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.crc = crc32c::crc32c_append(self.crc, done);
        self.remaining -= done.len() as u64;
        Ok(done.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(invalid(format!(
                "{} bytes of page data offered, {} remain in the record",
                buf.len(),
                self.remaining
            )));
        }
        self.w.w.write_all(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.w.flush()
    }
}

/// Writes `image` in the order of §2.3: HEADER; per process PROCESS, CREDS, MM, RLIMITS,
/// SIGACTIONS, THREADs, XSAVEs, SIGQUEUEs, FDs, VMAs; PIPE_DATA; SCM; SHM, SEM, MSG; per process PAGES and
/// ZERO_PAGES merged by address; NOTEs; END. Lists are written in model order (not sorted).
///
/// The image is checked as it is written (`InvalidInput`): major version 1 and no critical
/// file flag, every record within the spec's bounds and domains, every record of a process
/// naming its pid, the ordering rules of §2.3, page data of exactly `nr_pages × page_size`
/// bytes. So what this writes, [`crate::read::parse`] reads back equal to `image`. On error
/// the output is incomplete.
pub fn write_image<W: Write>(image: &Image<'_>, w: W) -> io::Result<()> {
    write_unbuffered(image, BufWriter::with_capacity(1 << 20, w))?;
    Ok(())
}

/// [`write_image`] into a new `Vec`.
pub fn to_vec(image: &Image<'_>) -> io::Result<Vec<u8>> {
    // A hint bounded by the page data that exists (never by counts the image merely claims);
    // padding and metadata grow the Vec as needed.
    let data: usize = image
        .processes
        .iter()
        .flat_map(|p| &p.pages)
        .fold(0usize, |n, r| n.saturating_add(r.data.len()));
    write_unbuffered(image, Vec::with_capacity(data.saturating_add(1 << 16)))
}

fn write_unbuffered<W: Write>(image: &Image<'_>, w: W) -> io::Result<W> {
    if image.version.major != crate::CURRENT_VERSION.major {
        return Err(invalid(format!(
            "this writer writes major version 1, not {}",
            image.version.major
        )));
    }
    if image.flags & 0xffff != 0 {
        return Err(invalid("critical file flags are not defined by version 1"));
    }
    let mut extras = HashMap::new();
    for x in &image.extras {
        if extras.insert((x.kind, x.pid, x.index), x).is_some() {
            return Err(invalid(format!(
                "two extras for the {} record of pid {:?} at index {}",
                kind::name(x.kind).unwrap_or("?"),
                x.pid,
                x.index
            )));
        }
        if !kind::is_known(x.kind) {
            return Err(invalid(format!(
                "extras name kind {:#06x}, which this version does not define",
                x.kind
            )));
        }
        // A reader records an extra only when it differs from the defaults: one that does not
        // would not read back.
        if x.flags == kind::default_flags(x.kind) && x.extra.is_empty() {
            return Err(invalid(format!(
                "an extra for the {} record of pid {:?} at index {} with the default flags and no bytes",
                kind::name(x.kind).unwrap_or("?"),
                x.pid,
                x.index
            )));
        }
    }
    let mut unknown: Vec<&UnknownRecord<'_>> = image.unknown.iter().collect();
    unknown.sort_by_key(|u| u.after);
    for u in &unknown {
        if kind::is_known(u.kind) {
            return Err(invalid(format!(
                "an unknown record of kind {:#06x}, which this version defines",
                u.kind
            )));
        }
        if u.flags & crate::FLAG_CRITICAL != 0 {
            return Err(invalid(format!(
                "an unknown record of kind {:#06x} with CRITICAL set: no reader would accept the image",
                u.kind
            )));
        }
    }
    let mut iw = ImageWriter {
        w: Writer::new(w, image.version, image.flags)?,
        tracker: Tracker::new(&[]),
        extras,
        used: std::collections::HashSet::new(),
        counts: HashMap::new(),
        unknown: unknown.into_iter().peekable(),
        known: 0,
    };
    let h = &image.header;
    iw.put(
        RecordKey {
            kind: kind::HEADER,
            page_size: Some(h.page_size),
            ..RecordKey::default()
        },
        |o| header::write(h, o),
        |p| Ok(header::parse(p)? == *h),
    )?;
    for p in &image.processes {
        iw.process_metadata(p)?;
    }
    for d in &image.pipes {
        iw.put(
            RecordKey {
                kind: kind::PIPE_DATA,
                ..RecordKey::default()
            },
            |o| pipe_data::write(d, o),
            |b| Ok(pipe_data::parse(b)? == *d),
        )?;
    }
    for x in &image.scm {
        iw.put(
            RecordKey {
                kind: kind::SCM,
                ..RecordKey::default()
            },
            |o| scm::write(x, o),
            |b| Ok(scm::parse(b)? == *x),
        )?;
    }
    for x in &image.shm_segments {
        iw.put(
            RecordKey {
                kind: kind::SHM,
                ..RecordKey::default()
            },
            |o| shm::write(x, o),
            |b| Ok(shm::parse(b)? == *x),
        )?;
    }
    for x in &image.sem_sets {
        iw.put(
            RecordKey {
                kind: kind::SEM,
                ..RecordKey::default()
            },
            |o| sem::write(x, o),
            |b| Ok(sem::parse(b)? == *x),
        )?;
    }
    for x in &image.msg_queues {
        iw.put(
            RecordKey {
                kind: kind::MSG,
                ..RecordKey::default()
            },
            |o| msg::write(x, o),
            |b| Ok(msg::parse(b)? == *x),
        )?;
    }
    for p in &image.processes {
        iw.process_pages(p)?;
    }
    for n in &image.notes {
        iw.put(
            RecordKey {
                kind: kind::NOTE,
                ..RecordKey::default()
            },
            |o| note::write(n, o),
            |b| Ok(note::parse(b)? == *n),
        )?;
    }
    if let Some(a) = &image.auth {
        iw.put(
            RecordKey {
                kind: kind::AUTH,
                ..RecordKey::default()
            },
            |o| auth::write(a, o),
            |b| Ok(auth::parse(b)? == *a),
        )?;
    }
    // An unknown record placed after more known records than the image has would read back
    // elsewhere: refuse it.
    if let Some(u) = iw.unknown.peek().filter(|u| u.after > iw.known) {
        return Err(invalid(format!(
            "an unknown record of kind {:#06x} placed after {} known records; the image has {}",
            u.kind, u.after, iw.known
        )));
    }
    iw.unknown_until(u64::MAX)?;
    // An extra for a record the image does not have would be lost: refuse it.
    if let Some(k) = iw
        .extras
        .keys()
        .filter(|k| k.0 != kind::END && !iw.used.contains(*k))
        .min()
    {
        return Err(invalid(format!(
            "extras name the {} record #{} of pid {:?}, which the image does not have",
            kind::name(k.0).unwrap_or("?"),
            k.2,
            k.1
        )));
    }
    let end = iw.w.end();
    match iw.extras.get(&(kind::END, None, 0)) {
        Some(x) => iw.w.finish_end_as(&end, x.flags, x.extra.as_bytes()),
        None => iw.w.finish(),
    }
}

struct ImageWriter<'i, W: Write> {
    w: Writer<W>,
    tracker: Tracker,
    /// Flags and payload tails of known records, by (kind, pid, index).
    extras: HashMap<(u16, Option<u32>, usize), &'i RecordExtra<'i>>,
    /// The extras applied so far.
    used: std::collections::HashSet<(u16, Option<u32>, usize)>,
    /// Records written so far per (kind, pid): the index of the next one.
    counts: HashMap<(u16, Option<u32>), usize>,
    /// Unknown records still to write, by `after`.
    unknown: std::iter::Peekable<std::vec::IntoIter<&'i UnknownRecord<'i>>>,
    /// Known records written so far.
    known: u64,
}

impl<W: Write> ImageWriter<'_, W> {
    fn put(
        &mut self,
        key: RecordKey,
        enc: impl FnOnce(&mut Vec<u8>),
        same: impl FnOnce(&[u8]) -> Result<bool, FieldError>,
    ) -> io::Result<()> {
        self.order(&key)?;
        let (flags, extra) = self.next_extra(&key);
        self.w
            .write_checked_as(key.kind, flags, extra.as_bytes(), enc, same)?;
        self.known += 1;
        Ok(())
    }

    /// The flags and payload tail of the next record of `key`'s kind and pid.
    fn next_extra(&mut self, key: &RecordKey) -> (u16, Blob<'static>) {
        let pid = if key.kind == kind::HEADER || key.kind == kind::AUTH {
            None
        } else {
            key.pid
        };
        let n = self.counts.entry((key.kind, pid)).or_insert(0);
        let index = *n;
        *n += 1;
        match self.extras.get(&(key.kind, pid, index)) {
            Some(x) => {
                self.used.insert((key.kind, pid, index));
                (x.flags, Blob::from(x.extra.as_bytes().to_vec()))
            }
            None => (kind::default_flags(key.kind), Blob::default()),
        }
    }

    /// Writes the unknown records to be placed after at most `known` known records (all of
    /// them for `u64::MAX`); none before HEADER.
    fn unknown_until(&mut self, known: u64) -> io::Result<()> {
        if self.known == 0 {
            return Ok(());
        }
        while let Some(u) = self.unknown.next_if(|u| u.after <= known) {
            self.w
                .write_raw_record(u.kind, u.flags, u.payload.as_bytes())?;
        }
        Ok(())
    }

    fn order(&mut self, key: &RecordKey) -> io::Result<()> {
        self.unknown_until(self.known)?;
        let at = self.w.offset();
        self.tracker
            .frame(key.kind, kind::default_flags(key.kind), at)
            .and_then(|_| self.tracker.check(key, at))
            .map_err(|e| invalid(e.to_string()))
    }

    fn process_metadata(&mut self, p: &Process<'_>) -> io::Result<()> {
        let pid = p.pid();
        let same_pid = |kind: u16, rec_pid: u32| {
            if rec_pid == pid {
                Ok(())
            } else {
                Err(invalid(format!(
                    "a {} record in process {pid} names pid {rec_pid}",
                    kind::name(kind).unwrap_or("?")
                )))
            }
        };
        let key = |kind: u16| RecordKey {
            kind,
            pid: Some(pid),
            ..RecordKey::default()
        };
        let pr = &p.process;
        self.put(
            key(kind::PROCESS),
            |o| process::write(pr, o),
            |b| Ok(process::parse(b)? == *pr),
        )?;
        if let Some(c) = &p.creds {
            same_pid(kind::CREDS, c.pid)?;
            self.put(
                key(kind::CREDS),
                |o| creds::write(c, o),
                |b| Ok(creds::parse(b)? == *c),
            )?;
        }
        if let Some(m) = &p.mm {
            same_pid(kind::MM, m.pid)?;
            self.put(
                key(kind::MM),
                |o| mm::write(m, o),
                |b| Ok(mm::parse(b)? == *m),
            )?;
        }
        if let Some(r) = &p.rlimits {
            same_pid(kind::RLIMITS, r.pid)?;
            self.put(
                key(kind::RLIMITS),
                |o| rlimits::write(r, o),
                |b| Ok(rlimits::parse(b)? == *r),
            )?;
        }
        if let Some(s) = &p.sigactions {
            same_pid(kind::SIGACTIONS, s.pid)?;
            self.put(
                key(kind::SIGACTIONS),
                |o| sigactions::write(s, o),
                |b| Ok(sigactions::parse(b)? == *s),
            )?;
        }
        for t in &p.threads {
            same_pid(kind::THREAD, t.pid)?;
            let k = RecordKey {
                tid: Some(t.tid),
                ..key(kind::THREAD)
            };
            self.put(k, |o| thread::write(t, o), |b| Ok(thread::parse(b)? == *t))?;
        }
        for x in &p.xsaves {
            same_pid(kind::XSAVE, x.pid)?;
            let k = RecordKey {
                tid: Some(x.tid),
                ..key(kind::XSAVE)
            };
            self.put(k, |o| xsave::write(x, o), |b| Ok(xsave::parse(b)? == *x))?;
        }
        for q in &p.sigqueues {
            same_pid(kind::SIGQUEUE, q.pid)?;
            self.put(
                key(kind::SIGQUEUE),
                |o| sigqueue::write(q, o),
                |b| Ok(sigqueue::parse(b)? == *q),
            )?;
        }
        if let Some(t) = &p.timers {
            same_pid(kind::TIMERS, t.pid)?;
            self.put(
                key(kind::TIMERS),
                |o| timers::write(t, o),
                |b| Ok(timers::parse(b)? == *t),
            )?;
        }
        for f in &p.fds {
            same_pid(kind::FD, f.pid)?;
            self.put(
                key(kind::FD),
                |o| fd::write(f, o),
                |b| Ok(fd::parse(b)? == *f),
            )?;
        }
        if let Some(l) = &p.locks {
            same_pid(kind::LOCKS, l.pid)?;
            self.put(
                key(kind::LOCKS),
                |o| locks::write(l, o),
                |b| Ok(locks::parse(b)? == *l),
            )?;
        }
        for v in &p.vmas {
            same_pid(kind::VMA, v.pid)?;
            let k = RecordKey {
                vma_start: Some(v.start),
                ..key(kind::VMA)
            };
            self.put(k, |o| vma::write(v, o), |b| Ok(vma::parse(b)? == *v))?;
        }
        Ok(())
    }

    fn process_pages(&mut self, p: &Process<'_>) -> io::Result<()> {
        let pid = p.pid();
        let mut runs = p.pages.iter().peekable();
        let mut zeros = p.zero_runs.iter().peekable();
        loop {
            let take_pages = match (runs.peek(), zeros.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(r), Some(z)) => r.addr <= z.addr,
            };
            if take_pages {
                let Some(r) = runs.next() else { continue };
                if r.pid != pid {
                    return Err(invalid(format!(
                        "a PAGES record in process {pid} names pid {}",
                        r.pid
                    )));
                }
                let key = RecordKey {
                    kind: kind::PAGES,
                    pid: Some(pid),
                    nr_pages: r.nr_pages,
                    ..RecordKey::default()
                };
                self.order(&key)?;
                let (flags, _) = self.next_extra(&key);
                let (ph, data_len) = self.w.pages_header(r.pid, r.addr, r.nr_pages)?;
                if r.data.len() as u64 != data_len {
                    return Err(invalid(format!(
                        "PAGES of {} pages needs {data_len} bytes of data, got {}",
                        r.nr_pages,
                        r.data.len()
                    )));
                }
                let mut pw = self.w.start_pages(ph, data_len, flags)?;
                pw.write_all(r.data.as_bytes())?;
                pw.finish()?;
                self.known += 1;
            } else {
                let Some(z) = zeros.next() else { continue };
                if z.pid != pid {
                    return Err(invalid(format!(
                        "a ZERO_PAGES record in process {pid} names pid {}",
                        z.pid
                    )));
                }
                self.put(
                    RecordKey {
                        kind: kind::ZERO_PAGES,
                        pid: Some(pid),
                        ..RecordKey::default()
                    },
                    |o| zero_pages::write(z, o),
                    |b| Ok(zero_pages::parse(b)? == *z),
                )?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::parse;
    use crate::record::header::{Header, ARCH_X86_64};
    use crate::record::pages::PageRun;
    use crate::record::process::ProcessRecord;
    use proptest::prelude::*;

    fn small() -> Image<'static> {
        let mut img = Image::new(Header {
            arch: ARCH_X86_64,
            page_size: 4096,
            capture_time_ns: 0,
            xsave_features: 3,
            xsave_size: 512,
            kernel_release: "6.18".into(),
            hostname: "h".into(),
            tool_version: "t".into(),
            special_mappings: vec![],
        });
        let mut p = Process::new(ProcessRecord {
            pid: 10,
            tids: vec![10],
            ..ProcessRecord::default()
        });
        p.pages.push(PageRun {
            pid: 10,
            addr: 0x1000,
            nr_pages: 2,
            data: vec![0xab; 8192].into(),
        });
        img.processes.push(p);
        img
    }

    #[test]
    fn page_data_is_page_aligned_and_round_trips() {
        let img = small();
        let bytes = to_vec(&img).unwrap();
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.image, img);
        let span = parsed.layout.find(kind::PAGES, Some(10), 0).unwrap();
        let data = &parsed.image.processes[0].pages[0].data;
        let data_at = data.as_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(data_at % 4096, 0);
        assert!(data_at as u64 > span.payload_offset());
        assert_eq!(parsed.end.page_count, 2);
        assert_eq!(parsed.end.record_count, 3);
    }

    #[test]
    fn rejects_record_of_another_pid_and_short_page_data() {
        let mut img = small();
        img.processes[0].pages[0].pid = 11;
        assert_eq!(
            to_vec(&img).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let mut img = small();
        img.processes[0].pages[0].data = vec![1u8; 100].into();
        assert_eq!(
            to_vec(&img).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let mut img = small();
        img.header.page_size = 1000;
        assert_eq!(
            to_vec(&img).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn streamed_pages_equal_slice_pages() {
        let img = small();
        let whole = to_vec(&img).unwrap();
        let mut w = Writer::new(Vec::new(), img.version, 0).unwrap();
        w.write_record(&Record::Header(img.header.clone())).unwrap();
        w.write_record(&Record::Process(img.processes[0].process.clone()))
            .unwrap();
        let mut pw = w.begin_pages(10, 0x1000, 2).unwrap();
        for chunk in img.processes[0].pages[0].data.as_bytes().chunks(1000) {
            pw.write_all(chunk).unwrap();
        }
        assert!(pw.write_all(&[0]).is_err());
        pw.finish().unwrap();
        assert_eq!(w.finish().unwrap(), whole);
    }

    #[test]
    fn unfinished_pages_block_further_records() {
        let img = small();
        let mut w = Writer::new(Vec::new(), img.version, 0).unwrap();
        w.write_record(&Record::Header(img.header.clone())).unwrap();
        let pw = w.begin_pages(10, 0x1000, 1).unwrap();
        assert!(pw.finish().is_err());
        assert!(w.write_raw_record(kind::NOTE, 0, &[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn image_round_trips(img in crate::arbitrary::image()) {
            let bytes = to_vec(&img).unwrap();
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.image, img);
        }
    }
}
