//! Readers of `spec/crak-format.md` §2: the zero-copy slice parser ([`parse`]), the
//! record-level iterator ([`Records`]) and the bounded-memory stream reader ([`StreamReader`],
//! [`read_stream_metadata`]).
//!
//! All three share the per-record parsers of [`crate::record`] and one ordering/integrity
//! checker, so a file and a stream of the same bytes give the same result (§2).
//!
//! Parsing checks framing, bounds, CRCs, ordering (§2.3), END (§2.4) and value domains; the
//! semantic rules of §4 are the validator's.

use crate::error::{Error, ErrorKind};
use crate::image::{Image, Process, RecordExtra, UnknownRecord, Version};
use crate::record::end::End;
use crate::record::header::Header;
use crate::record::pages::{self, PagesHeader};
use crate::record::{fd, kind, vma, Record};
use crate::{
    Blob, FILE_HEADER_LEN, FLAG_CRITICAL, MAGIC, MAX_METADATA_PAYLOAD, RECORD_HEADER_LEN,
    RECORD_TRAILER_LEN,
};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes of record framing around a payload: header and CRC.
const FRAMING: u64 = (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64;

/// Where one record sits in the file and where its content went in the [`Image`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    /// Record kind (§3).
    pub kind: u16,
    /// Record flags (§2.2).
    pub flags: u16,
    /// File offset of the record header.
    pub offset: u64,
    /// Payload length.
    pub length: u64,
    /// The pid the record names, for per-process kinds.
    pub pid: Option<u32>,
    /// Position within the list the record was assembled into: the process's list of that
    /// kind (`threads`, `vmas`, `pages`, ...), or the image's (`pipes`, `notes`); 0 for records
    /// that appear once. Skipped unknown records are counted per kind.
    pub index: usize,
}

impl RecordSpan {
    /// File offset of the byte `payload_off` bytes into the payload.
    pub fn field_offset(&self, payload_off: u64) -> u64 {
        self.offset
            .saturating_add(RECORD_HEADER_LEN as u64)
            .saturating_add(payload_off)
    }

    /// File offset of the payload.
    pub fn payload_offset(&self) -> u64 {
        self.field_offset(0)
    }

    /// File offset just past the record's CRC.
    pub fn end_offset(&self) -> u64 {
        self.offset
            .saturating_add(FRAMING)
            .saturating_add(self.length)
    }

    /// The record's name as the spec spells it, `None` for an unknown kind.
    pub fn name(&self) -> Option<&'static str> {
        kind::name(self.kind)
    }
}

/// The file offsets of every record, in file order, END included.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Every record in file order.
    pub records: Vec<RecordSpan>,
    by_key: HashMap<(u16, Option<u32>, usize), usize>,
}

impl PartialEq for Layout {
    fn eq(&self, other: &Self) -> bool {
        self.records == other.records
    }
}
impl Eq for Layout {}

impl Layout {
    /// A layout of `records`.
    pub fn new(records: Vec<RecordSpan>) -> Self {
        let mut l = Layout::default();
        for r in records {
            l.push(r);
        }
        l
    }

    /// Appends a record.
    pub fn push(&mut self, span: RecordSpan) {
        self.by_key
            .entry((span.kind, span.pid, span.index))
            .or_insert(self.records.len());
        self.records.push(span);
    }

    /// The record of `kind` for `pid` (`None` for image-level kinds) at `index` in its list.
    /// E.g. `find(kind::VMA, Some(42), 3)` is `image.process(42).vmas[3]`.
    pub fn find(&self, kind: u16, pid: Option<u32>, index: usize) -> Option<&RecordSpan> {
        self.by_key
            .get(&(kind, pid, index))
            .and_then(|&i| self.records.get(i))
    }
}

/// A parsed image and where each of its records is in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'data> {
    /// The image.
    pub image: Image<'data>,
    /// Record offsets.
    pub layout: Layout,
    /// The END record as read (its counts and digest agree with the file).
    pub end: End,
}

/// The 16-byte file header (§2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Version.
    pub version: Version,
    /// Flags.
    pub flags: u32,
}

/// Parses the file header at the start of `data` (§2.1): magic (`bad-magic`), major version
/// (`unsupported-version`) and critical flags (`unknown-flag`). Data shorter than 16 bytes is
/// `bad-magic` when what is there already differs from the magic, else `truncated`.
pub fn parse_file_header(data: &[u8]) -> Result<FileHeader, Error> {
    let n = data.len().min(MAGIC.len());
    if data.get(..n) != MAGIC.get(..n) {
        return Err(Error::new(ErrorKind::BadMagic)
            .with_field("magic", 0)
            .with_detail("not a crak image"));
    }
    let Some(h) = data.get(..FILE_HEADER_LEN) else {
        return Err(Error::new(ErrorKind::Truncated)
            .with_field("file header", data.len() as u64)
            .with_detail(format!(
                "the file header is 16 bytes, {} present",
                data.len()
            )));
    };
    let major = u16::from_le_bytes([h[8], h[9]]);
    let minor = u16::from_le_bytes([h[10], h[11]]);
    let flags = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if major != crate::CURRENT_VERSION.major {
        return Err(Error::new(ErrorKind::UnsupportedVersion)
            .with_field("major", 8)
            .with_detail(format!(
                "version {major}.{minor}; this reader implements 1.x"
            )));
    }
    if flags & 0xffff != 0 {
        return Err(Error::new(ErrorKind::UnknownFlag)
            .with_field("flags", 12)
            .with_detail(format!("critical flags {:#06x}", flags & 0xffff)));
    }
    Ok(FileHeader {
        version: Version { major, minor },
        flags,
    })
}

/// One framed record as it is in the file, payload not decoded and CRC not yet verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRecord<'data> {
    /// Record kind.
    pub kind: u16,
    /// Record flags.
    pub flags: u16,
    /// File offset of the record header.
    pub offset: u64,
    /// The payload.
    pub payload: &'data [u8],
    /// The stored CRC.
    pub crc: u32,
    header: [u8; RECORD_HEADER_LEN],
}

impl<'data> RawRecord<'data> {
    /// The 16 record-header bytes as stored (reserved field included).
    pub fn header_bytes(&self) -> &[u8; RECORD_HEADER_LEN] {
        &self.header
    }

    /// Payload length.
    pub fn length(&self) -> u64 {
        self.payload.len() as u64
    }

    /// Whether the CRITICAL flag is set.
    pub fn is_critical(&self) -> bool {
        self.flags & FLAG_CRITICAL != 0
    }

    /// The CRC32C of header and payload (§2.2).
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c_append(crc32c::crc32c(&self.header), self.payload)
    }

    /// Checks the stored CRC (`bad-crc`).
    pub fn verify_crc(&self) -> Result<(), Error> {
        let got = self.computed_crc();
        if got == self.crc {
            return Ok(());
        }
        Err(Error::new(ErrorKind::BadCrc)
            .with_record(self.kind, self.offset)
            .with_field("crc", self.span(None, 0).field_offset(self.length()))
            .with_detail(format!("stored {:#010x}, computed {got:#010x}", self.crc)))
    }

    /// Decodes the payload with its kind's parser (no CRC or ordering check).
    /// `page_size` comes from HEADER (see [`Record::decode`]).
    pub fn decode(&self, page_size: Option<u32>) -> Result<Record<'data>, Error> {
        Record::decode(self.kind, self.payload, page_size)
            .map_err(|e| e.in_record(self.kind, self.offset))
    }

    /// The span of this record with the given pid and list index.
    pub fn span(&self, pid: Option<u32>, index: usize) -> RecordSpan {
        RecordSpan {
            kind: self.kind,
            flags: self.flags,
            offset: self.offset,
            length: self.length(),
            pid,
            index,
        }
    }
}

/// The fields of a 16-byte record header.
#[derive(Clone, Copy)]
struct FrameHeader {
    kind: u16,
    flags: u16,
    length: u64,
    bytes: [u8; RECORD_HEADER_LEN],
}

impl FrameHeader {
    fn new(bytes: [u8; RECORD_HEADER_LEN]) -> Self {
        let [k0, k1, f0, f1, _, _, _, _, l0, l1, l2, l3, l4, l5, l6, l7] = bytes;
        FrameHeader {
            kind: u16::from_le_bytes([k0, k1]),
            flags: u16::from_le_bytes([f0, f1]),
            length: u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]),
            bytes,
        }
    }
}

/// Iterates over the framed records of an image held in memory (§2.2), for listings and
/// hexdumps. It checks only framing: each item is a record whose header, payload and CRC are
/// all present; CRCs, kinds and ordering are the caller's ([`parse`] does all of it). It does
/// not stop at END. After an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Records<'data> {
    data: &'data [u8],
    pos: usize,
    failed: bool,
}

impl<'data> Records<'data> {
    /// Records of `data`, after checking its file header.
    pub fn new(data: &'data [u8]) -> Result<(FileHeader, Self), Error> {
        let fh = parse_file_header(data)?;
        Ok((fh, Records::from_offset(data, FILE_HEADER_LEN)))
    }

    /// Records of `data` starting at file offset `offset` (no file header check).
    pub fn from_offset(data: &'data [u8], offset: usize) -> Self {
        Records {
            data,
            pos: offset,
            failed: false,
        }
    }

    /// File offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn frame(&self) -> Result<(RawRecord<'data>, usize), Error> {
        let at = self.pos as u64;
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(hb) = rest.get(..RECORD_HEADER_LEN) else {
            return Err(Error::new(ErrorKind::Truncated)
                .with_field("record header", at)
                .with_detail(format!(
                    "a record header is 16 bytes, {} remain",
                    rest.len()
                )));
        };
        let mut bytes = [0u8; RECORD_HEADER_LEN];
        bytes.copy_from_slice(hb);
        let h = FrameHeader::new(bytes);
        let available = (rest.len() - RECORD_HEADER_LEN) as u64;
        let fits = h
            .length
            .checked_add(RECORD_TRAILER_LEN as u64)
            .is_some_and(|n| n <= available);
        if !fits {
            return Err(Error::new(ErrorKind::Truncated)
                .with_record(h.kind, at)
                .with_field("length", at + 8)
                .with_detail(format!(
                    "payload of {} bytes and CRC need more than the {available} bytes that remain",
                    h.length
                )));
        }
        // `length + 4 <= available <= usize::MAX`, so these conversions and slices hold.
        let len = h.length as usize;
        let body = rest.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let payload = body.get(..len).unwrap_or_default();
        let crc_bytes = body.get(len..len + RECORD_TRAILER_LEN).unwrap_or_default();
        let crc = match <[u8; 4]>::try_from(crc_bytes) {
            Ok(c) => u32::from_le_bytes(c),
            Err(_) => 0,
        };
        let next = self.pos + RECORD_HEADER_LEN + len + RECORD_TRAILER_LEN;
        Ok((
            RawRecord {
                kind: h.kind,
                flags: h.flags,
                offset: at,
                payload,
                crc,
                header: h.bytes,
            },
            next,
        ))
    }
}

impl<'data> Iterator for Records<'data> {
    type Item = Result<RawRecord<'data>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        match self.frame() {
            Ok((r, next)) => {
                self.pos = next;
                Some(Ok(r))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Per-process ordering state (§2.3).
#[derive(Default)]
struct ProcState {
    creds: bool,
    mm: bool,
    rlimits: bool,
    sigactions: bool,
    timers: bool,
    locks: bool,
    threads: HashSet<u32>,
    xsaves: HashSet<u32>,
    last_vma_start: Option<u64>,
    vmas: usize,
    fds: usize,
}

/// What the ordering check needs of a record.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordKey {
    pub kind: u16,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub vma_start: Option<u64>,
    pub nr_pages: u64,
    pub page_size: Option<u32>,
}

impl RecordKey {
    pub(crate) fn of(r: &Record<'_>) -> Self {
        let mut k = RecordKey {
            kind: r.kind(),
            pid: r.pid(),
            ..RecordKey::default()
        };
        match r {
            Record::Header(h) => k.page_size = Some(h.page_size),
            Record::Thread(t) => k.tid = Some(t.tid),
            Record::Xsave(x) => k.tid = Some(x.tid),
            Record::Vma(v) => k.vma_start = Some(v.start),
            Record::Pages(p) => k.nr_pages = p.nr_pages,
            _ => {}
        }
        k
    }
}

/// The ordering (§2.3) and integrity (§2.4) state shared by every reader and the writer.
pub(crate) struct Tracker {
    digest: u32,
    records: u64,
    pages: u64,
    page_size: Option<u32>,
    procs: HashMap<u32, ProcState>,
    auth: bool,
}

impl Tracker {
    pub(crate) fn new(file_header: &[u8]) -> Self {
        Tracker {
            digest: crc32c::crc32c(file_header),
            records: 0,
            pages: 0,
            page_size: None,
            procs: HashMap::new(),
            auth: false,
        }
    }

    /// The HEADER's page size, once HEADER has been read.
    pub(crate) fn page_size(&self) -> Option<u32> {
        self.page_size
    }

    /// Checks a record's kind and flags before its payload is used: HEADER first (§2.3 rule
    /// 1), no unknown critical record (§2.2). Returns whether the kind is known.
    pub(crate) fn frame(&self, kind: u16, flags: u16, offset: u64) -> Result<bool, Error> {
        if self.page_size.is_none() && kind != kind::HEADER {
            return Err(Error::new(ErrorKind::OrphanRecord)
                .with_record(kind, offset)
                .with_field("kind", offset)
                .with_detail("the first record must be HEADER (§2.3)"));
        }
        if kind::is_known(kind) {
            return Ok(true);
        }
        if flags & FLAG_CRITICAL != 0 {
            return Err(Error::new(ErrorKind::UnknownCriticalRecord)
                .with_record(kind, offset)
                .with_field("flags", offset + 2)
                .with_detail(format!("kind {kind:#06x} is not defined by version 1")));
        }
        Ok(false)
    }

    /// Adds a record other than END to the digest and the counts (§2.4).
    pub(crate) fn account(&mut self, header: &[u8], crc: u32) {
        self.digest = crc32c::crc32c_append(self.digest, header);
        self.digest = crc32c::crc32c_append(self.digest, &crc.to_le_bytes());
        self.records = self.records.saturating_add(1);
    }

    /// Checks the ordering rules of §2.3 for a decoded record at `offset`.
    pub(crate) fn check(&mut self, k: &RecordKey, offset: u64) -> Result<(), Error> {
        let field = |name: &'static str, at: u64, kind: ErrorKind, detail: String| {
            Error::new(kind)
                .with_record(k.kind, offset)
                .with_field(name, offset + RECORD_HEADER_LEN as u64 + at)
                .with_detail(detail)
        };
        if k.kind == kind::HEADER {
            if self.page_size.is_some() {
                return Err(Error::new(ErrorKind::Duplicate)
                    .with_record(k.kind, offset)
                    .with_field("kind", offset)
                    .with_detail("there must be exactly one HEADER (§2.3)"));
            }
            self.page_size = k.page_size;
            return Ok(());
        }
        if k.kind == kind::AUTH {
            if std::mem::replace(&mut self.auth, true) {
                return Err(Error::new(ErrorKind::Duplicate)
                    .with_record(k.kind, offset)
                    .with_field("kind", offset)
                    .with_detail("there must be at most one AUTH (§3.17)"));
            }
            return Ok(());
        }
        if k.kind == kind::PAGES {
            self.pages = self.pages.saturating_add(k.nr_pages);
        }
        let Some(pid) = k.pid else {
            return Ok(());
        };
        if k.kind == kind::PROCESS {
            if self.procs.contains_key(&pid) {
                return Err(field(
                    "pid",
                    0,
                    ErrorKind::Duplicate,
                    format!("a second PROCESS record for pid {pid}"),
                ));
            }
            self.procs.insert(pid, ProcState::default());
            return Ok(());
        }
        let Some(p) = self.procs.get_mut(&pid) else {
            return Err(field(
                "pid",
                0,
                ErrorKind::OrphanRecord,
                format!("no PROCESS record for pid {pid} precedes it"),
            ));
        };
        let once = |seen: &mut bool| {
            if std::mem::replace(seen, true) {
                Err(field(
                    "pid",
                    0,
                    ErrorKind::Duplicate,
                    format!("a second record of this kind for pid {pid}"),
                ))
            } else {
                Ok(())
            }
        };
        let tid_once = |set: &mut HashSet<u32>, tid: Option<u32>| {
            let tid = tid.unwrap_or(0);
            if set.insert(tid) {
                Ok(())
            } else {
                Err(field(
                    "tid",
                    4,
                    ErrorKind::Duplicate,
                    format!("a second record of this kind for pid {pid} tid {tid}"),
                ))
            }
        };
        match k.kind {
            kind::CREDS => once(&mut p.creds),
            kind::MM => once(&mut p.mm),
            kind::RLIMITS => once(&mut p.rlimits),
            kind::SIGACTIONS => once(&mut p.sigactions),
            kind::TIMERS => once(&mut p.timers),
            kind::LOCKS => once(&mut p.locks),
            kind::THREAD => tid_once(&mut p.threads, k.tid),
            kind::XSAVE => tid_once(&mut p.xsaves, k.tid),
            kind::VMA => {
                let start = k.vma_start.unwrap_or(0);
                if p.last_vma_start.is_some_and(|last| start <= last) {
                    return Err(field(
                        "start",
                        8,
                        ErrorKind::BadValue,
                        format!(
                            "VMA records of pid {pid} must be in increasing address order (§2.3)"
                        ),
                    ));
                }
                p.last_vma_start = Some(start);
                p.vmas += 1;
                if p.vmas > vma::MAX_VMAS {
                    return Err(field(
                        "pid",
                        0,
                        ErrorKind::BadValue,
                        format!("pid {pid} has more than {} VMAs", vma::MAX_VMAS),
                    ));
                }
                Ok(())
            }
            kind::FD => {
                p.fds += 1;
                if p.fds > fd::MAX_FDS as usize {
                    return Err(field(
                        "pid",
                        0,
                        ErrorKind::BadValue,
                        format!("pid {pid} has more than {} fds", fd::MAX_FDS),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The END record a writer writes at `offset` after the records seen so far.
    pub(crate) fn end(&self, offset: u64) -> End {
        End {
            record_count: self.records,
            byte_count: offset,
            page_count: self.pages,
            digest: self.digest,
        }
    }

    /// Compares END at `offset` with what was read (§2.4).
    pub(crate) fn check_end(&self, end: &End, offset: u64) -> Result<(), Error> {
        let want = self.end(offset);
        let at = |name: &'static str, off: u64| {
            Error::new(ErrorKind::BadEnd)
                .with_record(kind::END, offset)
                .with_field(name, offset + RECORD_HEADER_LEN as u64 + off)
        };
        if end.record_count != want.record_count {
            return Err(at("record_count", 0).with_detail(format!(
                "END says {}, the file holds {}",
                end.record_count, want.record_count
            )));
        }
        if end.byte_count != want.byte_count {
            return Err(at("byte_count", 8).with_detail(format!(
                "END says {:#x}, END is at {:#x}",
                end.byte_count, want.byte_count
            )));
        }
        if end.page_count != want.page_count {
            return Err(at("page_count", 16).with_detail(format!(
                "END says {}, the file holds {}",
                end.page_count, want.page_count
            )));
        }
        if end.digest != want.digest {
            return Err(Error::new(ErrorKind::BadDigest)
                .with_record(kind::END, offset)
                .with_field("digest", offset + RECORD_HEADER_LEN as u64 + 24)
                .with_detail(format!(
                    "stored {:#010x}, computed {:#010x}",
                    end.digest, want.digest
                )));
        }
        Ok(())
    }
}

/// Assembles checked records into an [`Image`] and a [`Layout`].
pub(crate) struct Builder<'data> {
    version: Version,
    flags: u32,
    header: Option<Header>,
    processes: Vec<Process<'data>>,
    by_pid: HashMap<u32, usize>,
    pipes: Vec<crate::record::pipe_data::PipeData<'data>>,
    notes: Vec<crate::record::note::Note>,
    shm_segments: Vec<crate::record::shm::Shm<'data>>,
    sem_sets: Vec<crate::record::sem::SemSet>,
    msg_queues: Vec<crate::record::msg::MsgQueue<'data>>,
    scm: Vec<crate::record::scm::Scm<'data>>,
    layout: Layout,
    unknown: HashMap<u16, usize>,
    auth: Option<crate::record::auth::Auth>,
    unknown_records: Vec<UnknownRecord<'data>>,
    extras: Vec<RecordExtra<'data>>,
    known: u64,
}

/// The payload bytes of `rec` past the fields this version defines (§5): what follows the
/// bytes its parser read, whose length is that of the record's encoding. Empty for PAGES
/// (whose length its data fixes) and unknown kinds.
pub(crate) fn tail_of<'a>(rec: &Record<'_>, payload: &'a [u8]) -> &'a [u8] {
    if matches!(rec, Record::Pages(_) | Record::Unknown { .. }) {
        return &[];
    }
    // The encoding's length, without copying a large blob: the record (whose blobs borrow the
    // payload, so cloning is cheap) is encoded with the blob emptied, and the blob's length
    // added back.
    let mut known = Vec::new();
    let blob = match rec {
        Record::Fd(f) => {
            let mut g = f.clone();
            let n = std::mem::take(&mut g.contents).len();
            Record::Fd(g).encode(&mut known);
            n
        }
        Record::PipeData(d) => {
            let mut g = d.clone();
            let n = std::mem::take(&mut g.data).len();
            Record::PipeData(g).encode(&mut known);
            n
        }
        Record::Xsave(x) => {
            let mut g = x.clone();
            let n = std::mem::take(&mut g.area).len();
            Record::Xsave(g).encode(&mut known);
            n
        }
        Record::Shm(x) => {
            let mut g = x.clone();
            let n = std::mem::take(&mut g.data).len();
            Record::Shm(g).encode(&mut known);
            n
        }
        _ => {
            rec.encode(&mut known);
            0
        }
    };
    payload
        .get(known.len().saturating_add(blob)..)
        .unwrap_or_default()
}

impl<'data> Builder<'data> {
    pub(crate) fn new(fh: FileHeader) -> Self {
        Builder {
            version: fh.version,
            flags: fh.flags,
            header: None,
            processes: Vec::new(),
            by_pid: HashMap::new(),
            pipes: Vec::new(),
            notes: Vec::new(),
            shm_segments: Vec::new(),
            sem_sets: Vec::new(),
            msg_queues: Vec::new(),
            scm: Vec::new(),
            layout: Layout::default(),
            unknown: HashMap::new(),
            auth: None,
            unknown_records: Vec::new(),
            extras: Vec::new(),
            known: 0,
        }
    }

    /// Keeps a known record's flags and payload tail when a writer would not reproduce them.
    fn extra(&mut self, span: &RecordSpan, extra: Blob<'data>) {
        if span.flags != kind::default_flags(span.kind) || !extra.is_empty() {
            self.extras.push(RecordExtra {
                kind: span.kind,
                pid: span.pid,
                index: span.index,
                flags: span.flags,
                extra,
            });
        }
    }

    fn span(kind: u16, flags: u16, offset: u64, length: u64) -> RecordSpan {
        RecordSpan {
            kind,
            flags,
            offset,
            length,
            pid: None,
            index: 0,
        }
    }

    /// Records a skipped unknown record, keeping it for the model.
    pub(crate) fn skip(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        length: u64,
        payload: Blob<'data>,
    ) {
        let n = self.unknown.entry(kind).or_insert(0);
        let mut s = Self::span(kind, flags, offset, length);
        s.index = *n;
        *n += 1;
        self.layout.push(s);
        self.unknown_records.push(UnknownRecord {
            after: self.known,
            kind,
            flags,
            payload,
        });
    }

    /// Adds a record that [`Tracker::check`] accepted; `extra` is its payload past the fields
    /// this version defines ([`tail_of`]).
    pub(crate) fn add(
        &mut self,
        rec: Record<'data>,
        flags: u16,
        offset: u64,
        length: u64,
        extra: Blob<'data>,
    ) {
        let mut span = Self::span(rec.kind(), flags, offset, length);
        span.pid = rec.pid();
        self.known += 1;
        if let Record::Process(p) = rec {
            self.by_pid.insert(p.pid, self.processes.len());
            self.processes.push(Process::new(p));
            self.extra(&span, extra);
            self.layout.push(span);
            return;
        }
        let proc = span
            .pid
            .and_then(|pid| self.by_pid.get(&pid).copied())
            .and_then(|i| self.processes.get_mut(i));
        fn put<T>(v: &mut Vec<T>, x: T) -> usize {
            v.push(x);
            v.len() - 1
        }
        span.index = match (rec, proc) {
            (Record::Header(h), _) => {
                self.header = Some(h);
                0
            }
            (Record::PipeData(d), _) => put(&mut self.pipes, d),
            (Record::Note(n), _) => put(&mut self.notes, n),
            (Record::Shm(x), _) => put(&mut self.shm_segments, x),
            (Record::Sem(x), _) => put(&mut self.sem_sets, x),
            (Record::Msg(x), _) => put(&mut self.msg_queues, x),
            (Record::Scm(x), _) => put(&mut self.scm, x),
            (Record::Auth(a), _) => {
                self.auth = Some(a);
                0
            }
            (Record::Creds(c), Some(p)) => {
                p.creds = Some(c);
                0
            }
            (Record::Mm(m), Some(p)) => {
                p.mm = Some(m);
                0
            }
            (Record::Rlimits(r), Some(p)) => {
                p.rlimits = Some(r);
                0
            }
            (Record::Sigactions(s), Some(p)) => {
                p.sigactions = Some(s);
                0
            }
            (Record::Timers(t), Some(p)) => {
                p.timers = Some(t);
                0
            }
            (Record::Locks(l), Some(p)) => {
                p.locks = Some(l);
                0
            }
            (Record::Thread(t), Some(p)) => put(&mut p.threads, t),
            (Record::Xsave(x), Some(p)) => put(&mut p.xsaves, x),
            (Record::Sigqueue(q), Some(p)) => put(&mut p.sigqueues, q),
            (Record::Fd(f), Some(p)) => put(&mut p.fds, f),
            (Record::Vma(v), Some(p)) => put(&mut p.vmas, v),
            (Record::Pages(r), Some(p)) => put(&mut p.pages, r),
            (Record::ZeroPages(z), Some(p)) => put(&mut p.zero_runs, z),
            // END is added by `finish`; unknown records by `skip`; per-process records always
            // have their process (the tracker checked it).
            _ => 0,
        };
        self.extra(&span, extra);
        self.layout.push(span);
    }

    pub(crate) fn finish(
        mut self,
        end: End,
        flags: u16,
        offset: u64,
        length: u64,
        extra: Blob<'data>,
    ) -> Result<Parsed<'data>, Error> {
        let span = Self::span(kind::END, flags, offset, length);
        self.extra(&span, extra);
        self.layout.push(span);
        let Some(header) = self.header else {
            return Err(Error::new(ErrorKind::OrphanRecord)
                .with_record(kind::END, offset)
                .with_detail("the image has no HEADER"));
        };
        Ok(Parsed {
            image: Image {
                version: self.version,
                flags: self.flags,
                header,
                processes: self.processes,
                pipes: self.pipes,
                notes: self.notes,
                scm: self.scm,
                shm_segments: self.shm_segments,
                sem_sets: self.sem_sets,
                msg_queues: self.msg_queues,
                auth: self.auth,
                unknown: self.unknown_records,
                extras: self.extras,
            },
            layout: self.layout,
            end,
        })
    }
}

/// Parses a whole image held in memory (`spec/crak-format.md` §2), zero-copy: page data, XSAVE
/// areas, siginfos, file contents and pipe data borrow `data`.
///
/// Checks the file header, every record's framing and CRC, every payload against its kind's
/// parser, the ordering rules of §2.3, END's counts and digest (§2.4) and that nothing follows
/// END. Unknown records without CRITICAL are skipped (they appear in the layout only).
pub fn parse(data: &[u8]) -> Result<Parsed<'_>, Error> {
    parse_inner(data, None)
}

/// [`parse`] that checks every CRC except those of PAGES records, returned instead for the
/// caller to check with [`UncheckedPages::check_at`] before it uses their page data: a
/// restorer that maps stored pages from the file need not read them all first. Everything
/// else, END's digest included (it covers the stored CRCs, not the payloads), is checked.
pub fn parse_deferring_page_crcs(data: &[u8]) -> Result<(Parsed<'_>, Vec<UncheckedPages>), Error> {
    let mut unchecked = Vec::new();
    let parsed = parse_inner(data, Some(&mut unchecked))?;
    Ok((parsed, unchecked))
}

/// A PAGES record whose CRC [`parse_deferring_page_crcs`] left to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncheckedPages {
    /// File offset of the record header.
    pub offset: u64,
    /// Payload length.
    pub length: u64,
    /// The stored CRC.
    pub crc: u32,
    header: [u8; RECORD_HEADER_LEN],
}

impl UncheckedPages {
    /// File offset of the payload.
    pub fn payload_offset(&self) -> u64 {
        self.offset.saturating_add(RECORD_HEADER_LEN as u64)
    }

    /// Checks the CRC over the payload read again with `read_at(offset, buf)`, which must fill
    /// `buf` from that file offset; `buf`'s length is the size of each read. Fails with
    /// `bad-crc` exactly as [`parse`] would, or with the reader's error.
    pub fn check_at(
        &self,
        buf: &mut [u8],
        mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> Result<(), Error> {
        if buf.is_empty() {
            return Err(Error::new(ErrorKind::Io).with_detail("no buffer to read pages into"));
        }
        let mut crc = crc32c::crc32c(&self.header);
        let mut at = self.payload_offset();
        let mut left = self.length;
        while left > 0 {
            let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let chunk = &mut buf[..n];
            read_at(at, chunk).map_err(|e| Error::io(e).with_record(kind::PAGES, self.offset))?;
            crc = crc32c::crc32c_append(crc, chunk);
            at = at.saturating_add(n as u64);
            left -= n as u64;
        }
        if crc == self.crc {
            return Ok(());
        }
        Err(Error::new(ErrorKind::BadCrc)
            .with_record(kind::PAGES, self.offset)
            .with_field("crc", self.payload_offset().saturating_add(self.length))
            .with_detail(format!("stored {:#010x}, computed {crc:#010x}", self.crc)))
    }
}

fn parse_inner<'data>(
    data: &'data [u8],
    mut defer: Option<&mut Vec<UncheckedPages>>,
) -> Result<Parsed<'data>, Error> {
    let (fh, mut records) = Records::new(data)?;
    let mut tracker = Tracker::new(data.get(..FILE_HEADER_LEN).unwrap_or_default());
    let mut builder = Builder::new(fh);
    loop {
        let Some(raw) = records.next() else {
            return Err(Error::new(ErrorKind::Truncated)
                .at(data.len() as u64)
                .with_detail("the file ends without an END record"));
        };
        let raw = raw?;
        match defer.as_deref_mut() {
            Some(list) if raw.kind == kind::PAGES => list.push(UncheckedPages {
                offset: raw.offset,
                length: raw.length(),
                crc: raw.crc,
                header: raw.header,
            }),
            _ => raw.verify_crc()?,
        }
        let known = tracker.frame(raw.kind, raw.flags, raw.offset)?;
        if raw.kind == kind::END {
            let end = crate::record::end::parse(raw.payload)
                .map_err(|e| e.in_record(raw.kind, raw.offset))?;
            tracker.check_end(&end, raw.offset)?;
            let extra = tail_of(&Record::End(end.clone()), raw.payload);
            let after = records.offset();
            if after < data.len() {
                return Err(Error::new(ErrorKind::TrailingData)
                    .at(after as u64)
                    .with_detail(format!(
                        "{} bytes follow the END record",
                        data.len() - after
                    )));
            }
            return builder.finish(end, raw.flags, raw.offset, raw.length(), extra.into());
        }
        tracker.account(raw.header_bytes(), raw.crc);
        if !known {
            builder.skip(
                raw.kind,
                raw.flags,
                raw.offset,
                raw.length(),
                raw.payload.into(),
            );
            continue;
        }
        let rec = raw.decode(tracker.page_size())?;
        tracker.check(&RecordKey::of(&rec), raw.offset)?;
        let extra = tail_of(&rec, raw.payload);
        builder.add(rec, raw.flags, raw.offset, raw.length(), extra.into());
    }
}

/// The header of a PAGES record met by the [`StreamReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPages {
    /// The record's fixed fields.
    pub header: PagesHeader,
    /// The record's place in the file.
    pub span: RecordSpan,
    /// File offset of the first byte of page data.
    pub data_offset: u64,
    /// Bytes of page data (`nr_pages × page_size`).
    pub data_len: u64,
}

/// One item of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
// Items are moved once each; boxing the record would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum StreamItem {
    /// A record other than PAGES, whole and CRC-checked: metadata, FD, PIPE_DATA, a skipped
    /// unknown record ([`Record::Unknown`]) or, last, END.
    Record {
        /// The record's place in the file (`index` is always 0: the stream reader does not
        /// assemble lists).
        span: RecordSpan,
        /// The decoded record.
        record: Record<'static>,
        /// The payload bytes past the fields this version defines (§5); empty for an unknown
        /// kind, whose payload is in [`Record::Unknown`].
        extra: Vec<u8>,
    },
    /// A PAGES record: its fixed fields. Pull the page data with
    /// [`StreamReader::read_page_data`]; its CRC is checked when the data ends.
    Pages(StreamPages),
}

enum StreamState {
    /// Between records.
    Records,
    /// Inside the page data of a PAGES record.
    Pages {
        remaining: u64,
        crc: u32,
        span: RecordSpan,
        header: [u8; RECORD_HEADER_LEN],
        crc_offset: u64,
    },
    /// END has been read.
    Done,
    /// An error was returned; nothing more can be read.
    Failed,
}

/// Reads an image from a non-seekable stream (a pipe, stdin, a socket) with bounded memory
/// (§2.2): each metadata record is held only once read (and at most
/// [`MAX_METADATA_PAYLOAD`] bytes), page data is handed over in caller-sized chunks and never
/// held whole, and nothing is allocated beyond what has been read.
///
/// It runs the same checks as [`parse`]. The fields of a PAGES record and its data are handed
/// out before its CRC can be checked: treat them as provisional until
/// [`StreamReader::read_page_data`] has returned `Ok(0)` (or the next
/// [`StreamReader::next_item`] succeeded).
pub struct StreamReader<R: Read> {
    r: R,
    offset: u64,
    file_header: FileHeader,
    tracker: Tracker,
    state: StreamState,
    scratch: Vec<u8>,
    /// The input's length, once [`StreamReader::skip_page_data`] has asked for it.
    seek_len: Option<u64>,
}

const SKIP_CHUNK: usize = 1 << 16;

impl<R: Read> StreamReader<R> {
    /// Reads and checks the file header (§2.1).
    pub fn new(mut r: R) -> Result<Self, Error> {
        let mut fh = [0u8; FILE_HEADER_LEN];
        let n = read_full(&mut r, &mut fh)?;
        let file_header = parse_file_header(fh.get(..n).unwrap_or_default())?;
        Ok(StreamReader {
            r,
            offset: FILE_HEADER_LEN as u64,
            file_header,
            tracker: Tracker::new(&fh),
            state: StreamState::Records,
            scratch: Vec::new(),
            seek_len: None,
        })
    }

    /// The file header.
    pub fn file_header(&self) -> FileHeader {
        self.file_header
    }

    /// Bytes consumed so far: the file offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The HEADER's page size, once HEADER has been read.
    pub fn page_size(&self) -> Option<u32> {
        self.tracker.page_size()
    }

    /// The next record, or `None` after END. Unread page data of the previous PAGES record is
    /// read, CRC-checked and discarded first.
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, Error> {
        let r = self.next_item_inner();
        if r.is_err() {
            self.state = StreamState::Failed;
        }
        r
    }

    /// Reads page data of the current PAGES record into `buf`; returns the bytes read, 0 when
    /// the record's data is complete and its CRC has been verified (or when there is no current
    /// PAGES record).
    pub fn read_page_data(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let r = self.read_page_data_inner(buf);
        if r.is_err() {
            self.state = StreamState::Failed;
        }
        r
    }

    fn read_page_data_inner(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let StreamState::Pages { remaining, .. } = self.state else {
            return Ok(0);
        };
        if remaining == 0 {
            self.finish_pages()?;
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let Some(dst) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = loop {
            match self.r.read(dst) {
                Ok(0) if want > 0 => {
                    let (kind, at) = match self.state {
                        StreamState::Pages { span, .. } => (span.kind, span.offset),
                        _ => (kind::PAGES, self.offset),
                    };
                    return Err(stream_truncated(kind, at, "its page data"));
                }
                Ok(n) => break n.min(want),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(e).at(self.offset)),
            }
        };
        let got = dst.get(..n).unwrap_or_default();
        if let StreamState::Pages { remaining, crc, .. } = &mut self.state {
            *crc = crc32c::crc32c_append(*crc, got);
            *remaining -= n as u64;
            self.offset += n as u64;
            if *remaining == 0 {
                self.finish_pages()?;
            }
        }
        Ok(n)
    }

    /// Reads and discards what remains of the current PAGES record's data, then checks its CRC.
    fn drain_pages(&mut self) -> Result<(), Error> {
        let mut chunk = std::mem::take(&mut self.scratch);
        chunk.resize(SKIP_CHUNK, 0);
        let result = loop {
            match self.read_page_data_inner(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.scratch = chunk;
        result
    }

    /// Reads the CRC after complete page data and checks it.
    fn finish_pages(&mut self) -> Result<(), Error> {
        let StreamState::Pages {
            crc,
            span,
            header,
            crc_offset,
            ..
        } = self.state
        else {
            return Ok(());
        };
        let stored = self.read_crc(span.kind, span.offset)?;
        if stored != crc {
            return Err(Error::new(ErrorKind::BadCrc)
                .with_record(span.kind, span.offset)
                .with_field("crc", crc_offset)
                .with_detail(format!("stored {stored:#010x}, computed {crc:#010x}")));
        }
        self.tracker.account(&header, stored);
        self.state = StreamState::Records;
        Ok(())
    }

    fn read_crc(&mut self, kind: u16, record_offset: u64) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        let n = read_full(&mut self.r, &mut b)?;
        if n < 4 {
            return Err(stream_truncated(kind, record_offset, "its CRC"));
        }
        self.offset += 4;
        Ok(u32::from_le_bytes(b))
    }

    fn next_item_inner(&mut self) -> Result<Option<StreamItem>, Error> {
        match self.state {
            StreamState::Done => return Ok(None),
            StreamState::Failed => {
                return Err(Error::new(ErrorKind::Io)
                    .at(self.offset)
                    .with_detail("the stream reader already failed"))
            }
            StreamState::Pages { .. } => self.drain_pages()?,
            StreamState::Records => {}
        }
        let at = self.offset;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        let n = read_full(&mut self.r, &mut hb)?;
        if n == 0 {
            return Err(Error::new(ErrorKind::Truncated)
                .at(at)
                .with_detail("the file ends without an END record"));
        }
        if n < RECORD_HEADER_LEN {
            return Err(Error::new(ErrorKind::Truncated)
                .with_field("record header", at)
                .with_detail(format!("a record header is 16 bytes, {n} remain")));
        }
        self.offset += RECORD_HEADER_LEN as u64;
        let h = FrameHeader::new(hb);
        let span = RecordSpan {
            kind: h.kind,
            flags: h.flags,
            offset: at,
            length: h.length,
            pid: None,
            index: 0,
        };
        if kind::is_metadata(h.kind) && h.length > MAX_METADATA_PAYLOAD {
            return Err(Error::new(ErrorKind::TooLarge)
                .with_record(h.kind, at)
                .with_field("length", at + 8)
                .with_detail(format!(
                    "{} bytes; a stream reader accepts metadata records up to {MAX_METADATA_PAYLOAD}",
                    h.length
                )));
        }
        if h.kind == kind::PAGES && h.length >= u64::from(pages::PAGES_HEADER_SIZE) {
            return self.begin_pages(h, span).map(Some);
        }
        // Whole record: read no more than the stream holds, allocating as it arrives.
        let mut payload = Vec::new();
        let got = (&mut self.r)
            .take(h.length)
            .read_to_end(&mut payload)
            .map_err(|e| Error::io(e).with_record(h.kind, at))?;
        self.offset += got as u64;
        if (got as u64) < h.length {
            return Err(Error::new(ErrorKind::Truncated)
                .with_record(h.kind, at)
                .with_field("length", at + 8)
                .with_detail(format!(
                    "payload of {} bytes, the stream ends after {got}",
                    h.length
                )));
        }
        let stored = self.read_crc(h.kind, at)?;
        let raw = RawRecord {
            kind: h.kind,
            flags: h.flags,
            offset: at,
            payload: &payload,
            crc: stored,
            header: hb,
        };
        raw.verify_crc()?;
        let known = self.tracker.frame(h.kind, h.flags, at)?;
        if h.kind == kind::END {
            let rec = raw.decode(None)?;
            if let Record::End(end) = &rec {
                self.tracker.check_end(end, at)?;
            }
            let mut extra = [0u8; 1];
            if read_full(&mut self.r, &mut extra)? != 0 {
                return Err(Error::new(ErrorKind::TrailingData)
                    .at(self.offset)
                    .with_detail("bytes follow the END record"));
            }
            self.state = StreamState::Done;
            let extra = tail_of(&rec, &payload).to_vec();
            return Ok(Some(StreamItem::Record {
                span,
                record: rec.into_owned(),
                extra,
            }));
        }
        self.tracker.account(&hb, stored);
        if !known {
            return Ok(Some(StreamItem::Record {
                span,
                record: Record::Unknown {
                    kind: h.kind,
                    payload: Blob::from(payload),
                },
                extra: Vec::new(),
            }));
        }
        let rec = raw.decode(self.tracker.page_size())?;
        self.tracker.check(&RecordKey::of(&rec), at)?;
        let span = RecordSpan {
            pid: rec.pid(),
            ..span
        };
        let extra = tail_of(&rec, &payload).to_vec();
        Ok(Some(StreamItem::Record {
            span,
            record: rec.into_owned(),
            extra,
        }))
    }

    fn begin_pages(&mut self, h: FrameHeader, span: RecordSpan) -> Result<StreamItem, Error> {
        let at = span.offset;
        let mut fixed = [0u8; pages::PAGES_HEADER_SIZE as usize];
        let n = read_full(&mut self.r, &mut fixed)?;
        self.offset += n as u64;
        if n < fixed.len() {
            return Err(stream_truncated(h.kind, at, "its fixed fields"));
        }
        let mut crc = crc32c::crc32c_append(crc32c::crc32c(&h.bytes), &fixed);
        // The same checks as `parse`, in the same order. A failure is reported only once the
        // rest of the record has been read and its CRC checked, as `parse` would: a damaged
        // record is `bad-crc` (or `truncated`) before it is anything else.
        let checked = self
            .tracker
            .frame(h.kind, h.flags, at)
            .and_then(|_| pages::parse_header(&fixed).map_err(|e| e.in_record(h.kind, at)))
            .and_then(|ph| {
                ph.check_payload_len(h.length, self.tracker.page_size())
                    .map_err(|e| e.in_record(h.kind, at))?;
                let key = RecordKey {
                    kind: kind::PAGES,
                    pid: Some(ph.pid),
                    nr_pages: ph.nr_pages,
                    ..RecordKey::default()
                };
                self.tracker.check(&key, at)?;
                Ok(ph)
            });
        let ph = match checked {
            Ok(ph) => ph,
            Err(e) => {
                let rest = h.length - u64::from(pages::PAGES_HEADER_SIZE);
                return Err(self.confirm(&h, at, crc, rest, e));
            }
        };
        let data_len = h.length - u64::from(ph.data_offset);
        // Padding: read through it, CRC it, keep nothing.
        let pad = u64::from(ph.data_offset - pages::PAGES_HEADER_SIZE);
        if !self.skip_through(pad, &mut crc)? {
            return Err(stream_truncated(h.kind, at, "its padding"));
        }
        let span = RecordSpan {
            pid: Some(ph.pid),
            ..span
        };
        let data_offset = self.offset;
        self.state = StreamState::Pages {
            remaining: data_len,
            crc,
            span,
            header: h.bytes,
            crc_offset: data_offset.saturating_add(data_len),
        };
        Ok(StreamItem::Pages(StreamPages {
            header: ph,
            span,
            data_offset,
            data_len,
        }))
    }

    /// Reads `n` bytes into the CRC without keeping them; false when the stream ends first.
    fn skip_through(&mut self, mut n: u64, crc: &mut u32) -> Result<bool, Error> {
        let mut chunk = std::mem::take(&mut self.scratch);
        chunk.resize(SKIP_CHUNK, 0);
        let mut complete = true;
        while n > 0 {
            let want = chunk.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let dst = chunk.get_mut(..want).unwrap_or_default();
            let got = match read_full(&mut self.r, dst) {
                Ok(got) => got,
                Err(e) => {
                    self.scratch = chunk;
                    return Err(e);
                }
            };
            *crc = crc32c::crc32c_append(*crc, dst.get(..got).unwrap_or_default());
            self.offset += got as u64;
            n -= got as u64;
            if got < want {
                complete = false;
                break;
            }
        }
        self.scratch = chunk;
        Ok(complete)
    }

    /// `err` was found in a record whose remaining `rest` payload bytes are unread: reads them
    /// and the CRC, and returns `truncated` or `bad-crc` if the record is damaged that way,
    /// else `err`. This keeps the stream reader's report equal to [`parse`]'s.
    fn confirm(&mut self, h: &FrameHeader, at: u64, mut crc: u32, rest: u64, err: Error) -> Error {
        match self.skip_through(rest, &mut crc) {
            Ok(true) => {}
            Ok(false) => return stream_truncated(h.kind, at, "its payload"),
            Err(e) => return e,
        }
        let crc_at = self.offset;
        match self.read_crc(h.kind, at) {
            Ok(stored) if stored != crc => Error::new(ErrorKind::BadCrc)
                .with_record(h.kind, at)
                .with_field("crc", crc_at)
                .with_detail(format!("stored {stored:#010x}, computed {crc:#010x}")),
            Ok(_) => err,
            Err(e) => e,
        }
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }
}

/// A stream that ends inside a record whose header promised more (§2.5: `truncated` at the
/// record's `length`).
impl<R: Read + Seek> StreamReader<R> {
    /// Seeks over what remains of the current PAGES record's data and reads its stored CRC
    /// without checking it against the data (which is never read); the record header and the
    /// stored CRC still enter the END digest. Nothing happens outside a PAGES record. Data that
    /// ends early is `truncated`, as when it is read. Position 0 of the input must be the
    /// start of the image (its length is taken once, with `SeekFrom::End`).
    pub fn skip_page_data(&mut self) -> Result<(), Error> {
        let r = self.skip_page_data_inner();
        if r.is_err() {
            self.state = StreamState::Failed;
        }
        r
    }

    fn skip_page_data_inner(&mut self) -> Result<(), Error> {
        let StreamState::Pages {
            remaining,
            span,
            header,
            ..
        } = self.state
        else {
            return Ok(());
        };
        let truncated = || stream_truncated(span.kind, span.offset, "its page data");
        let Ok(delta) = i64::try_from(remaining) else {
            return Err(truncated());
        };
        let Some(target) = self.offset.checked_add(remaining) else {
            return Err(truncated());
        };
        let end = match self.seek_len {
            Some(len) => len,
            None => {
                let io = |e| Error::io(e).at(self.offset);
                let len = self.r.seek(SeekFrom::End(0)).map_err(io)?;
                // Back to where the reader was: position 0 is the start of the image.
                if self.r.seek(SeekFrom::Start(self.offset)).map_err(io)? != self.offset {
                    return Err(truncated());
                }
                self.seek_len = Some(len);
                len
            }
        };
        if end < target {
            return Err(truncated());
        }
        self.r
            .seek(SeekFrom::Current(delta))
            .map_err(|e| Error::io(e).at(self.offset))?;
        self.offset = target;
        let stored = self.read_crc(span.kind, span.offset)?;
        self.tracker.account(&header, stored);
        self.state = StreamState::Records;
        Ok(())
    }
}

fn stream_truncated(kind: u16, record_offset: u64, inside: &str) -> Error {
    Error::new(ErrorKind::Truncated)
        .with_record(kind, record_offset)
        .with_field("length", record_offset + 8)
        .with_detail(format!("the stream ends inside {inside}"))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k.min(rest.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(e)),
        }
    }
    Ok(n)
}

/// Reads a whole image from a stream and builds its [`Image`] and [`Layout`] exactly as
/// [`parse`] does, except that every [`crate::record::pages::PageRun::data`] is left empty
/// (`nr_pages` is kept): page data is read, CRC-checked and dropped, so memory stays bounded by
/// the metadata (§2.2). FD contents and pipe data are kept.
pub fn read_stream_metadata<R: Read>(r: R) -> Result<Parsed<'static>, Error> {
    collect_metadata(StreamReader::new(r)?, |_| Ok(()))
}

/// [`read_stream_metadata`] for a seekable input (an image file): the same model and layout,
/// but the page data of each PAGES record is sought over rather than read, so the time taken
/// depends on the metadata only.
///
/// The CRC of each PAGES record is therefore **not** checked; every other record's CRC is,
/// and so is END's digest, which covers every record header and every stored CRC (PAGES
/// included). A PAGES record whose header or CRC was altered is detected; altered page bytes
/// behind an intact CRC are not: use [`parse`] or [`read_stream_metadata`] to check them.
pub fn read_seekable_metadata<R: Read + Seek>(r: R) -> Result<Parsed<'static>, Error> {
    collect_metadata(StreamReader::new(r)?, StreamReader::skip_page_data)
}

/// Builds the model and layout from a stream reader; `after_pages` is called after each
/// PAGES item (before the next one is read).
fn collect_metadata<R: Read>(
    mut s: StreamReader<R>,
    after_pages: impl Fn(&mut StreamReader<R>) -> Result<(), Error>,
) -> Result<Parsed<'static>, Error> {
    let mut builder = Builder::new(s.file_header());
    loop {
        match s.next_item()? {
            None => {
                return Err(Error::new(ErrorKind::Truncated)
                    .at(s.offset())
                    .with_detail("the stream ends without an END record"))
            }
            Some(StreamItem::Pages(p)) => {
                after_pages(&mut s)?;
                builder.add(
                    Record::Pages(pages::PageRun {
                        pid: p.header.pid,
                        addr: p.header.addr,
                        nr_pages: p.header.nr_pages,
                        data: Blob::default(),
                    }),
                    p.span.flags,
                    p.span.offset,
                    p.span.length,
                    Blob::default(),
                )
            }
            Some(StreamItem::Record {
                span,
                record,
                extra,
            }) => match record {
                Record::End(end) => {
                    return builder.finish(end, span.flags, span.offset, span.length, extra.into())
                }
                Record::Unknown { kind, payload } => {
                    builder.skip(kind, span.flags, span.offset, span.length, payload)
                }
                rec => builder.add(rec, span.flags, span.offset, span.length, extra.into()),
            },
        }
    }
}
