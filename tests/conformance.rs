//! Conformance of the Rust reader and of the Kaitai mirror (`spec/crak.ksy`) with the spec's test
//! vectors (`spec/vectors/`, described in `spec/vectors/README.md`).
//!
//! - `vectors_are_reproducible`: the committed vectors are exactly what the generator below
//!   makes. `CRAK_UPDATE_VECTORS=1 cargo test -p crak-tests --test conformance` rewrites them.
//! - `valid_vectors_decode_to_their_model`: the Rust parser's decode of every valid vector is its
//!   `.json`.
//! - `invalid_vectors_are_rejected_as_expected`: every invalid vector gives the error kind,
//!   offset, record and field of its `.json`.
//! - `stream_reader_agrees_on_every_vector`: so does the stream reader (its own report where the
//!   `.json` has a `stream` entry), and it decodes valid vectors to the same model.
//! - `writer_agrees_with_independent_framing`: crak-format's writer and this file's framing
//!   code (own CRC32C, padding, END, digest) produce the same bytes.
//! - `kaitai_*`: spec/crak.ksy compiled to Python reads every valid vector, images written by
//!   the Rust writer from generated models and live captures, and `spec/tools/ksy_dump.py`
//!   prints the same model as `crak-dump IMAGE --json --pages` (or crak-format's JSON when
//!   crak-dump is not built); it rejects every invalid vector with the same report. These tests
//!   fail when the Kaitai compiler or the Python runtime is missing, unless CRAK_SKIP_KAITAI=1.
//!
//! The generator builds models with crak-format's types and writes them with crak-format's
//! writer; defects are made by re-framing the written records with the small independent
//! framing code in this file (CRCs, END and page padding recomputed), then breaking one thing.

use crak_format::image::{RecordExtra, UnknownRecord};
use crak_format::read::RecordSpan;
use crak_format::record::creds::Creds;
use crak_format::record::end::End;
use crak_format::record::fd::{Fd, FdKind};
use crak_format::record::header::{Header, SpecialMapping};
use crak_format::record::kind;
use crak_format::record::mm::Mm;
use crak_format::record::note::Note;
use crak_format::record::pages::PageRun;
use crak_format::record::pipe_data::PipeData;
use crak_format::record::process::ProcessRecord;
use crak_format::record::rlimits::{Rlimit, Rlimits};
use crak_format::record::sigactions::{SigAction, SigActions};
use crak_format::record::sigqueue::SigQueue;
use crak_format::record::thread::{Gpr, Thread, ThreadExt, THREAD_SIZE};
use crak_format::record::vma::{Vma, VmaKind};
use crak_format::record::xsave::Xsave;
use crak_format::record::zero_pages::ZeroRun;
use crak_format::{Blob, ByteString, Image, Process, Version, MAGIC};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

// ------------------------------------------------------------------ independent framing

const FILE_HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 16;
const CRC_LEN: usize = 4;
const PAGES_FIXED: usize = 28;

/// One record as framed in a file, payload as written (PAGES padding stripped).
#[derive(Clone, Debug)]
struct RawRecord {
    kind: u16,
    flags: u16,
    payload: Vec<u8>,
    /// Written as is: a PAGES payload keeps its data_offset and gets no padding.
    verbatim: bool,
}

/// An image as a list of records, to be re-framed after editing.
#[derive(Clone, Debug)]
struct RawImage {
    major: u16,
    minor: u16,
    flags: u32,
    /// Every record before END.
    records: Vec<RawRecord>,
    /// Bytes appended to END's payload (fields of a later minor version).
    end_extra: Vec<u8>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl RawImage {
    /// Splits a well-formed image (one the writer made) into its records.
    fn split(b: &[u8]) -> RawImage {
        assert_eq!(&b[..8], &MAGIC);
        let mut records = Vec::new();
        let mut at = FILE_HEADER_LEN;
        loop {
            let kind = le16(b, at);
            let flags = le16(b, at + 2);
            let len = usize::try_from(le64(b, at + 8)).unwrap();
            let p = at + RECORD_HEADER_LEN;
            let mut payload = b[p..p + len].to_vec();
            if kind == kind::END {
                break;
            }
            if kind == kind::PAGES {
                // Keep the fixed fields and the data; padding is recomputed when re-framed.
                let data_offset = le32(&payload, 24) as usize;
                let mut norm = payload[..PAGES_FIXED].to_vec();
                norm.extend_from_slice(&payload[data_offset..]);
                payload = norm;
            }
            records.push(RawRecord {
                kind,
                flags,
                payload,
                verbatim: false,
            });
            at = p + len + CRC_LEN;
        }
        RawImage {
            major: le16(b, 8),
            minor: le16(b, 10),
            flags: le32(b, 12),
            records,
            end_extra: Vec::new(),
        }
    }

    /// HEADER's page size; 4096 when there is no usable HEADER (mutated images).
    fn page_size(&self) -> u64 {
        self.records
            .iter()
            .find(|r| r.kind == kind::HEADER && r.payload.len() >= 8)
            .map(|h| u64::from(le32(&h.payload, 4)))
            .filter(|p| *p != 0)
            .unwrap_or(4096)
    }

    /// Frames the records and a correct END.
    fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(|_| {})
    }

    /// Frames the records, then END after `edit` changed its fields.
    fn to_bytes_with(&self, edit: impl FnOnce(&mut End)) -> Vec<u8> {
        let page_size = self.page_size();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.major.to_le_bytes());
        out.extend_from_slice(&self.minor.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        let mut digest = crc32c(&out);
        let mut page_count = 0u64;
        for r in &self.records {
            let mut payload = r.payload.clone();
            if r.kind == kind::PAGES && payload.len() >= PAGES_FIXED && !r.verbatim {
                let data_start = (out.len() + RECORD_HEADER_LEN + PAGES_FIXED) as u64;
                let pad = (page_size - data_start % page_size) % page_size;
                let data_offset = PAGES_FIXED as u64 + pad;
                payload[24..28].copy_from_slice(&(data_offset as u32).to_le_bytes());
                let data = payload.split_off(PAGES_FIXED);
                payload.resize(data_offset as usize, 0);
                payload.extend_from_slice(&data);
            }
            if r.kind == kind::PAGES && payload.len() >= PAGES_FIXED {
                page_count += le64(&payload, 16);
            }
            let (head, crc) = frame(&mut out, r.kind, r.flags, &payload);
            digest = crc32c_append(digest, &head);
            digest = crc32c_append(digest, &crc.to_le_bytes());
        }
        let mut end = End {
            record_count: self.records.len() as u64,
            byte_count: out.len() as u64,
            page_count,
            digest,
        };
        edit(&mut end);
        let mut p = Vec::new();
        p.extend_from_slice(&end.record_count.to_le_bytes());
        p.extend_from_slice(&end.byte_count.to_le_bytes());
        p.extend_from_slice(&end.page_count.to_le_bytes());
        p.extend_from_slice(&end.digest.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&self.end_extra);
        frame(&mut out, kind::END, 1, &p);
        out
    }

    /// Index of the `n`th record of `kind`.
    fn find(&self, kind: u16, n: usize) -> usize {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == kind)
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no record #{n} of kind {kind:#x}"))
    }

    /// File offset of record `index`'s header in `to_bytes()`'s output.
    fn offset_of(&self, index: usize) -> u64 {
        let bytes = self.to_bytes();
        let mut at = FILE_HEADER_LEN;
        for _ in 0..index {
            at += RECORD_HEADER_LEN + le64(&bytes, at + 8) as usize + CRC_LEN;
        }
        at as u64
    }

    /// File offset of END's record header.
    fn end_offset(&self) -> u64 {
        self.offset_of(self.records.len())
    }
}

/// CRC32C (Castagnoli, reflected, init and xorout 0xFFFFFFFF, spec §2.2) continuing from
/// `crc`, bitwise: an implementation independent of the one crak-format uses.
fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Appends one framed record; returns its 16 header bytes and its CRC.
fn frame(out: &mut Vec<u8>, kind: u16, flags: u16, payload: &[u8]) -> ([u8; 16], u32) {
    let mut head = [0u8; 16];
    head[0..2].copy_from_slice(&kind.to_le_bytes());
    head[2..4].copy_from_slice(&flags.to_le_bytes());
    head[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = crc32c_append(crc32c(&head), payload);
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
    (head, crc)
}

// ------------------------------------------------------------------ models

const PAGE: usize = 4096;
const PID: u32 = 4242;

fn bs(s: &str) -> ByteString {
    ByteString::from(s)
}

fn header() -> Header {
    Header {
        arch: 62,
        page_size: PAGE as u32,
        capture_time_ns: 1_764_000_000_123_456_789,
        xsave_features: 0x2e7,
        xsave_size: 2696,
        kernel_release: bs("6.18.0-crak"),
        hostname: bs("vector-host"),
        tool_version: bs("crak 0.1.0"),
        special_mappings: vec![
            SpecialMapping {
                kind: VmaKind::Vvar,
                start: 0x7fff_f7fb_d000,
                end: 0x7fff_f7fc_1000,
            },
            SpecialMapping {
                kind: VmaKind::Vdso,
                start: 0x7fff_f7fc_1000,
                end: 0x7fff_f7fc_3000,
            },
        ],
    }
}

fn image(processes: Vec<Process<'static>>) -> Image<'static> {
    Image {
        version: Version { major: 1, minor: 0 },
        flags: 0,
        header: header(),
        processes,
        pipes: Vec::new(),
        notes: Vec::new(),
        shm_segments: Vec::new(),
        sem_sets: Vec::new(),
        msg_queues: Vec::new(),
        scm: Vec::new(),
        auth: None,
        unknown: Vec::new(),
        extras: Vec::new(),
    }
}

fn process_record(pid: u32, ppid: u32, tids: Vec<u32>) -> ProcessRecord {
    ProcessRecord {
        pid,
        ppid,
        pgid: pid,
        sid: ppid.max(1),
        personality: 0,
        umask: 0o022,
        flags: 0,
        comm: bs("counter"),
        exe: bs("/usr/bin/counter"),
        cwd: bs("/srv/work"),
        root: bs("/"),
        cmdline: ByteString(b"counter\0--every\x001s\0".to_vec()),
        environ: ByteString(b"HOME=/root\0LANG=C.UTF-8\0".to_vec()),
        tids,
    }
}

fn creds(pid: u32) -> Creds {
    Creds {
        pid,
        uid: 1000,
        euid: 1000,
        suid: 1000,
        fsuid: 1000,
        gid: 100,
        egid: 100,
        sgid: 100,
        fsgid: 100,
        cap_inheritable: 0,
        cap_permitted: 0,
        cap_effective: 0,
        cap_bounding: 0x1ff_ffff_ffff,
        cap_ambient: 0,
        securebits: 0,
        no_new_privs: 1,
        groups: vec![100, 27, 4],
    }
}

fn mm(pid: u32) -> Mm {
    Mm {
        pid,
        start_code: 0x40_0000,
        end_code: 0x40_1000,
        start_data: 0x40_2000,
        end_data: 0x40_3000,
        start_brk: 0x60_0000,
        brk: 0x60_1000,
        start_stack: 0x7fff_ffff_e000,
        arg_start: 0x7fff_ffff_e100,
        arg_end: 0x7fff_ffff_e120,
        env_start: 0x7fff_ffff_e120,
        env_end: 0x7fff_ffff_e140,
        auxv: vec![(6, 4096), (25, 0x7fff_ffff_e200), (0, 0)],
    }
}

fn rlimits(pid: u32) -> Rlimits {
    Rlimits {
        pid,
        limits: vec![
            Rlimit {
                resource: 3,
                cur: 8 << 20,
                max: u64::MAX,
            },
            Rlimit {
                resource: 7,
                cur: 1024,
                max: 524_288,
            },
        ],
    }
}

fn sigactions(pid: u32) -> SigActions {
    SigActions {
        pid,
        actions: vec![
            SigAction {
                signo: 10,
                handler: 0x40_0500,
                flags: 0x0400_0000 | 0x1000_0000,
                restorer: 0x7fff_f7a4_2520,
                mask: 1 << 11,
            },
            SigAction {
                signo: 13,
                handler: 1,
                flags: 0,
                restorer: 0,
                mask: 0,
            },
        ],
    }
}

fn thread(pid: u32, tid: u32) -> Thread {
    let mut a = [0u64; 27];
    for (i, r) in a.iter_mut().enumerate() {
        *r = 0x1111_0000_0000_0000 + (u64::from(tid) << 16) + i as u64;
    }
    let mut gpr = Gpr::from_array(a);
    gpr.rax = (-512i64) as u64;
    gpr.orig_rax = 230;
    gpr.cs = 0x33;
    gpr.ss = 0x2b;
    gpr.eflags = 0x246;
    Thread {
        pid,
        tid,
        gpr,
        blocked: 1 << 9,
        pending: 0,
        sas_sp: 0,
        sas_size: 0,
        sas_flags: 2,
        rseq_len: 32,
        rseq_addr: 0x7fff_f7d8_9fe0,
        rseq_sig: 0x5305_3053,
        clear_child_tid: 0x7fff_f7d8_9a10,
        ext: None,
    }
}

/// The THREAD fields of format 1.2.
fn thread_ext(tid: u32) -> ThreadExt {
    ThreadExt {
        robust_list: 0x7fff_f7d8_9a20,
        robust_list_len: 24,
        name: ByteString(format!("worker-{tid}").into_bytes()),
    }
}

fn xsave(pid: u32, tid: u32, size: usize) -> Xsave<'static> {
    let area: Vec<u8> = (0..size).map(|i| (i * 7 + tid as usize) as u8).collect();
    Xsave {
        pid,
        tid,
        xstate_bv: 0x7,
        area: Blob::from(area),
    }
}

fn siginfo(signo: u32, code: i32) -> Blob<'static> {
    let mut b = vec![0u8; 128];
    b[0..4].copy_from_slice(&signo.to_le_bytes());
    b[8..12].copy_from_slice(&code.to_le_bytes());
    b[16..20].copy_from_slice(&77u32.to_le_bytes());
    Blob::from(b)
}

fn vma(pid: u32, kind: VmaKind, start: u64, pages: u64, prot: u32, path: &str) -> Vma {
    Vma {
        pid,
        kind,
        start,
        end: start + pages * PAGE as u64,
        prot,
        flags: 0x2,
        madvise: 0,
        pgoff: 0,
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
        path: bs(path),
    }
}

fn page_data(pages: usize, seed: u8) -> Blob<'static> {
    Blob::from(
        (0..pages * PAGE)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect::<Vec<u8>>(),
    )
}

fn fd(pid: u32, n: u32, kind: FdKind, path: &str) -> Fd<'static> {
    Fd {
        pid,
        fd: n,
        fd_flags: 0,
        kind,
        open_flags: 0o2,
        pos: 0,
        dev: 0x803,
        ino: 1000 + u64::from(n),
        rdev: 0,
        size: 0,
        mtime_ns: 0,
        mode: 0o100644,
        deleted: false,
        path: bs(path),
        contents: Blob::default(),
        description: 0,
    }
}

/// A process with one record of every per-process kind.
fn full_process(pid: u32, ppid: u32) -> Process<'static> {
    let mut p = Process::new(process_record(pid, ppid, vec![pid]));
    p.creds = Some(creds(pid));
    p.mm = Some(mm(pid));
    p.rlimits = Some(rlimits(pid));
    p.sigactions = Some(sigactions(pid));
    p.threads = vec![thread(pid, pid)];
    p.xsaves = vec![xsave(pid, pid, 2696)];
    p.sigqueues = vec![SigQueue {
        pid,
        tid: 0,
        siginfos: vec![siginfo(10, -1)],
    }];
    let mut file = vma(pid, VmaKind::File, 0x40_0000, 2, 5, "/usr/bin/counter");
    file.dev = 0x803;
    file.ino = 131_077;
    file.size = 8192;
    file.mtime_ns = 1_700_000_000_000_000_000;
    let mut stack = vma(pid, VmaKind::Stack, 0x7fff_fffd_e000, 34, 3, "[stack]");
    stack.flags = 0x2 | 0x100;
    p.vmas = vec![
        file,
        vma(pid, VmaKind::Heap, 0x60_0000, 1, 3, "[heap]"),
        vma(pid, VmaKind::Anon, 0x7fff_f000_0000, 4, 3, ""),
        vma(pid, VmaKind::Vvar, 0x7fff_f7fb_d000, 4, 1, "[vvar]"),
        vma(pid, VmaKind::Vdso, 0x7fff_f7fc_1000, 2, 5, "[vdso]"),
        stack,
    ];
    p.fds = vec![fd(pid, 0, FdKind::Chr, "/dev/null"), {
        let mut f = fd(pid, 1, FdKind::Reg, "/srv/work/out.log");
        f.open_flags = 0o2001;
        f.pos = 12_345;
        f.size = 12_345;
        f.fd_flags = 1;
        f
    }];
    p.pages = vec![
        PageRun {
            pid,
            addr: 0x60_0000,
            nr_pages: 1,
            data: page_data(1, 1),
        },
        PageRun {
            pid,
            addr: 0x7fff_f000_0000,
            nr_pages: 2,
            data: page_data(2, 2),
        },
    ];
    p.zero_runs = vec![ZeroRun {
        pid,
        addr: 0x7fff_f000_2000,
        nr_pages: 2,
    }];
    p
}

/// A process with only its PROCESS record and one VMA.
fn small_process(pid: u32, ppid: u32) -> Process<'static> {
    let mut p = Process::new(process_record(pid, ppid, vec![pid]));
    p.vmas = vec![vma(pid, VmaKind::Anon, 0x10_0000, 1, 3, "")];
    p
}

fn write(image: &Image<'_>) -> Vec<u8> {
    crak_format::write::to_vec(image).expect("the writer accepts the model")
}

// ------------------------------------------------------------------ vectors

/// A valid vector: bytes and the model a reader must decode.
struct Valid {
    name: &'static str,
    covers: &'static str,
    bytes: Vec<u8>,
    model: Image<'static>,
}

/// An invalid vector: bytes and the error a reader must report.
struct Invalid {
    name: &'static str,
    covers: &'static str,
    bytes: Vec<u8>,
    error: &'static str,
    offset: u64,
    record: Option<&'static str>,
    field: Option<&'static str>,
    /// The report of a stream reader when it differs: (error, offset, record, field).
    stream: Option<(
        &'static str,
        u64,
        Option<&'static str>,
        Option<&'static str>,
    )>,
}

fn valid_vectors() -> Vec<Valid> {
    let mut v = Vec::new();
    let mut add = |name, covers, model: Image<'static>, bytes: Option<Vec<u8>>| {
        let bytes = bytes.unwrap_or_else(|| write(&model));
        v.push(Valid {
            name,
            covers,
            bytes,
            model,
        });
    };

    add(
        "001-minimal",
        "HEADER, one PROCESS, END: the smallest image",
        image(vec![Process::new(process_record(1, 0, vec![1]))]),
        None,
    );
    add(
        "002-every-record-kind",
        "one record of every kind of §3 (PROCESS, CREDS, MM, RLIMITS, SIGACTIONS, THREAD, \
         XSAVE, SIGQUEUE, VMA, PAGES, ZERO_PAGES, FD, PIPE_DATA, NOTE)",
        {
            let mut m = image(vec![full_process(PID, 1)]);
            let mut pipe_r = fd(PID, 3, FdKind::Pipe, "pipe:[7001]");
            pipe_r.ino = 7001;
            pipe_r.mode = 0o10600;
            pipe_r.open_flags = 0;
            m.processes[0].fds.push(pipe_r);
            m.pipes.push(PipeData {
                pipe_id: 7001,
                capacity: 65536,
                data: Blob::from(b"queued bytes\n".to_vec()),
            });
            m.notes.push(Note {
                key: bs("capture.command"),
                value: bs("crak-capture 4242 -o vector.crak"),
            });
            m
        },
        None,
    );
    add(
        "003-process-tree",
        "three processes (parent, child, grandchild) with CREDS and MM each",
        {
            let mut procs = Vec::new();
            for (pid, ppid) in [(100, 1), (101, 100), (102, 101)] {
                let mut p = small_process(pid, ppid);
                p.creds = Some(creds(pid));
                p.mm = Some(mm(pid));
                procs.push(p);
            }
            image(procs)
        },
        None,
    );
    add(
        "004-threads",
        "one process with three threads: THREAD and XSAVE per thread, SIGQUEUE per thread \
         and process-wide",
        {
            let tids = vec![PID, PID + 1, PID + 2];
            let mut p = Process::new(process_record(PID, 1, tids.clone()));
            for &t in &tids {
                p.threads.push(thread(PID, t));
                p.xsaves.push(xsave(PID, t, 2696));
            }
            p.sigqueues = vec![
                SigQueue {
                    pid: PID,
                    tid: 0,
                    siginfos: vec![siginfo(34, -1), siginfo(35, -1)],
                },
                SigQueue {
                    pid: PID,
                    tid: PID + 1,
                    siginfos: vec![siginfo(12, 0)],
                },
                SigQueue {
                    pid: PID,
                    tid: PID + 2,
                    siginfos: vec![],
                },
            ];
            image(vec![p])
        },
        None,
    );
    add(
        "005-pipes",
        "a pipe between two processes: PIPE fds with the same ino and its PIPE_DATA; an \
         empty pipe; a FIFO",
        {
            let mut a = small_process(200, 1);
            let mut b = small_process(201, 200);
            let mut w = fd(200, 4, FdKind::Pipe, "pipe:[9001]");
            w.ino = 9001;
            w.open_flags = 0o1;
            let mut r = fd(201, 0, FdKind::Pipe, "pipe:[9001]");
            r.ino = 9001;
            r.open_flags = 0;
            let mut e = fd(201, 5, FdKind::Pipe, "pipe:[9002]");
            e.ino = 9002;
            let mut fifo = fd(201, 6, FdKind::Fifo, "/run/ctl.fifo");
            fifo.ino = 9003;
            fifo.mode = 0o10644;
            a.fds = vec![w];
            b.fds = vec![r, e, fifo];
            let mut m = image(vec![a, b]);
            m.pipes = vec![
                PipeData {
                    pipe_id: 9001,
                    capacity: 65536,
                    data: Blob::from((0u8..=255).collect::<Vec<u8>>()),
                },
                PipeData {
                    pipe_id: 9002,
                    capacity: 4096,
                    data: Blob::default(),
                },
                PipeData {
                    pipe_id: 9003,
                    capacity: 65536,
                    data: Blob::from(b"fifo".to_vec()),
                },
            ];
            m
        },
        None,
    );
    add(
        "006-deleted-file-and-tty",
        "an FD of a deleted file with its contents; a TTY and a CHR fd with rdev",
        {
            let mut p = small_process(300, 1);
            let mut del = fd(300, 7, FdKind::Reg, "/tmp/scratch (deleted)");
            del.deleted = true;
            del.size = 11;
            del.pos = 5;
            del.contents = Blob::from(b"hello world".to_vec());
            let mut tty = fd(300, 2, FdKind::Tty, "/dev/pts/3");
            tty.rdev = 0x8803;
            tty.mode = 0o20620;
            let mut chr = fd(300, 9, FdKind::Chr, "/dev/urandom");
            chr.rdev = 0x109;
            chr.mode = 0o20666;
            p.fds = vec![tty, del, chr];
            image(vec![p])
        },
        None,
    );
    add(
        "007-non-utf8-text",
        "byte strings that are not UTF-8 (JSON {\"hex\": ...}), NULs in cmdline and environ, \
         empty strings",
        {
            let mut p = small_process(400, 1);
            p.process.comm = ByteString(b"caf\xe9".to_vec());
            p.process.exe = ByteString(b"/opt/\xff\xfe/bin".to_vec());
            p.process.cwd = ByteString(Vec::new());
            p.process.cmdline = ByteString(b"a\0\xc3\x28\0".to_vec());
            p.process.environ = ByteString(Vec::new());
            p.vmas[0].path = ByteString(b"/data/\x80.bin".to_vec());
            p.vmas[0].kind = VmaKind::File;
            let mut m = image(vec![p]);
            m.header.hostname = ByteString(b"h\xf0st".to_vec());
            m.notes.push(Note {
                key: ByteString(b"\xff".to_vec()),
                value: ByteString(Vec::new()),
            });
            m
        },
        None,
    );
    add(
        "008-page-runs",
        "PAGES runs of 1 and 3 pages in two processes, ZERO_PAGES runs, page data aligned \
         in the file after records of odd length",
        {
            let mut a = small_process(500, 1);
            a.process.comm = bs("x");
            a.vmas = vec![vma(500, VmaKind::Anon, 0x20_0000, 8, 3, "")];
            a.pages = vec![
                PageRun {
                    pid: 500,
                    addr: 0x20_0000,
                    nr_pages: 3,
                    data: page_data(3, 9),
                },
                PageRun {
                    pid: 500,
                    addr: 0x20_5000,
                    nr_pages: 1,
                    data: page_data(1, 10),
                },
            ];
            a.zero_runs = vec![
                ZeroRun {
                    pid: 500,
                    addr: 0x20_3000,
                    nr_pages: 2,
                },
                ZeroRun {
                    pid: 500,
                    addr: 0x20_7000,
                    nr_pages: 1,
                },
            ];
            let mut b = small_process(501, 500);
            b.vmas = vec![vma(501, VmaKind::Anon, 0x30_0000, 1, 3, "")];
            b.pages = vec![PageRun {
                pid: 501,
                addr: 0x30_0000,
                nr_pages: 1,
                data: page_data(1, 11),
            }];
            image(vec![a, b])
        },
        None,
    );
    add(
        "009-extreme-values",
        "largest values of fields: u64::MAX, negative i64 times, pid 4194304, fd 1048575, \
         16 special mappings, 64 auxv entries, 64 rlimits and sigactions",
        {
            let pid = 4_194_304;
            let mut p = Process::new(process_record(pid, 0, vec![pid]));
            p.process.personality = u32::MAX;
            p.process.flags = u32::MAX;
            let mut m = mm(pid);
            m.auxv = (0..64).map(|i| (i, u64::MAX - i)).collect();
            p.mm = Some(m);
            p.rlimits = Some(Rlimits {
                pid,
                limits: (0..64)
                    .map(|i| Rlimit {
                        resource: i,
                        cur: u64::MAX,
                        max: u64::MAX,
                    })
                    .collect(),
            });
            p.sigactions = Some(SigActions {
                pid,
                actions: (1..=64)
                    .map(|s| SigAction {
                        signo: s,
                        handler: u64::MAX,
                        flags: u64::MAX,
                        restorer: u64::MAX,
                        mask: u64::MAX,
                    })
                    .collect(),
            });
            let mut v = vma(pid, VmaKind::SysvShm, 0x7000_0000, 1, 7, "/SYSV00000000");
            v.flags = 0x1;
            v.madvise = 0x3f;
            v.mtime_ns = i64::MIN;
            v.size = u64::MAX;
            p.vmas = vec![
                v,
                vma(
                    pid,
                    VmaKind::Vsyscall,
                    0xffff_ffff_ff60_0000,
                    1,
                    4,
                    "[vsyscall]",
                ),
            ];
            let mut f = fd(pid, 1_048_575, FdKind::Reg, "/x");
            f.mtime_ns = -1;
            f.pos = u64::MAX;
            f.fd_flags = u32::MAX;
            p.fds = vec![f];
            let mut m = image(vec![p]);
            m.header.capture_time_ns = i64::MIN;
            m.header.xsave_features = u64::MAX;
            m.header.special_mappings = (0..16)
                .map(|i| SpecialMapping {
                    kind: [
                        VmaKind::Vdso,
                        VmaKind::Vvar,
                        VmaKind::VvarVclock,
                        VmaKind::VvarOther,
                        VmaKind::Vsyscall,
                    ][i % 5],
                    start: u64::MAX - 1 - i as u64,
                    end: u64::MAX - i as u64,
                })
                .collect();
            m
        },
        None,
    );
    add(
        "010-page-size-64k",
        "page_size 65536: PAGES data 64 KiB-aligned in the file",
        {
            let mut p = Process::new(process_record(600, 1, vec![600]));
            let mut v = vma(600, VmaKind::Anon, 0x100_0000, 32, 3, "");
            v.end = 0x100_0000 + 2 * 65536;
            p.vmas = vec![v];
            p.pages = vec![PageRun {
                pid: 600,
                addr: 0x100_0000,
                nr_pages: 1,
                data: Blob::from(vec![0xa5u8; 65536]),
            }];
            p.zero_runs = vec![ZeroRun {
                pid: 600,
                addr: 0x101_0000,
                nr_pages: 1,
            }];
            let mut m = image(vec![p]);
            m.header.page_size = 65536;
            m
        },
        None,
    );

    // Vectors made by re-framing a written image (§5 evolution rules).
    let base = {
        let mut m = image(vec![full_process(PID, 1)]);
        // A 1.2 image, so that the 1.2 THREAD fields come before the appended bytes.
        m.version.minor = 2;
        m.processes[0].threads[0].ext = Some(thread_ext(PID));
        m.notes.push(Note {
            key: bs("k"),
            value: bs("v"),
        });
        m
    };
    let raw = RawImage::split(&write(&base));
    // Where each record of `base` goes in the model, in file order (END excluded).
    let spans: Vec<RecordSpan> = {
        let bytes = write(&base);
        let parsed = crak_format::read::parse(&bytes).expect("base parses");
        parsed
            .layout
            .records
            .into_iter()
            .filter(|s| s.kind != kind::END)
            .collect()
    };
    assert_eq!(spans.len(), raw.records.len());
    let extra = |span: &RecordSpan, flags: u16, bytes: Vec<u8>| RecordExtra {
        kind: span.kind,
        pid: span.pid,
        index: span.index,
        flags,
        extra: Blob::from(bytes),
    };

    add(
        "011-unknown-noncritical-records",
        "records of unknown kinds with CRITICAL clear (0x0100, 0x8000, 0xFFFE), empty and \
         not, between known records: skipped (§2.2), kept in the model's `unknown` with the \
         number of known records before each",
        {
            let mut m = base.clone();
            let unknown = |after, kind, flags, payload: Vec<u8>| UnknownRecord {
                after,
                kind,
                flags,
                payload: Blob::from(payload),
            };
            m.unknown = vec![
                unknown(1, 0x8000, 0, Vec::new()),
                unknown(
                    raw.find(kind::VMA, 0) as u64,
                    0x0100,
                    0,
                    b"a future record".to_vec(),
                ),
                unknown(raw.records.len() as u64, 0xfffe, 0xfffe, vec![0xff; 33]),
            ];
            m
        },
        Some({
            let mut r = raw.clone();
            let at = r.find(kind::VMA, 0);
            r.records.insert(
                at,
                RawRecord {
                    kind: 0x0100,
                    flags: 0,
                    payload: b"a future record".to_vec(),
                    verbatim: false,
                },
            );
            r.records.insert(
                1,
                RawRecord {
                    kind: 0x8000,
                    flags: 0,
                    payload: Vec::new(),
                    verbatim: false,
                },
            );
            let n = r.records.len();
            r.records.insert(
                n,
                RawRecord {
                    kind: 0xfffe,
                    flags: 0xfffe,
                    payload: vec![0xff; 33],
                    verbatim: false,
                },
            );
            r.to_bytes()
        }),
    );
    add(
        "012-minor-version-1-7",
        "file header minor version 7: a 1.0 reader accepts it (§2.1, §5)",
        {
            let mut m = base.clone();
            m.version.minor = 7;
            m
        },
        Some({
            let mut r = raw.clone();
            r.minor = 7;
            r.to_bytes()
        }),
    );
    add(
        "013-future-payload-fields",
        "minor version 3 with extra bytes appended to every record's payload, END's included \
         (PAGES excepted, whose length is fixed by its data): ignored (§5)",
        {
            let mut m = base.clone();
            m.version.minor = 3;
            // Each tail, with the record's place, in `extras` (§5).
            for (i, span) in spans.iter().enumerate() {
                if span.kind != kind::PAGES {
                    m.extras.push(extra(
                        span,
                        kind::default_flags(span.kind),
                        vec![0xee; 1 + i % 13],
                    ));
                }
            }
            m.extras.push(RecordExtra {
                kind: kind::END,
                pid: None,
                index: 0,
                flags: kind::default_flags(kind::END),
                extra: Blob::from(vec![0xee; 24]),
            });
            m
        },
        Some({
            let mut r = raw.clone();
            r.minor = 3;
            for (i, rec) in r.records.iter_mut().enumerate() {
                if rec.kind != kind::PAGES {
                    rec.payload.extend_from_slice(&vec![0xee; 1 + i % 13]);
                }
            }
            r.end_extra = vec![0xee; 24];
            r.to_bytes()
        }),
    );
    add(
        "014-advisory-flags",
        "file header advisory flag bits 16-31 all set: ignored (§2.1)",
        {
            let mut m = base.clone();
            m.flags = 0xffff_0000;
            m
        },
        Some({
            let mut r = raw.clone();
            r.flags = 0xffff_0000;
            r.to_bytes()
        }),
    );
    add(
        "015-known-records-not-critical",
        "known records written with CRITICAL clear and reserved flag bits set: not rejected \
         because of their flags (§2.2), kept in the model's `extras`",
        {
            let mut m = base.clone();
            for span in &spans {
                let flags = if span.kind == kind::NOTE { 0xfffe } else { 0 };
                m.extras.push(extra(span, flags, Vec::new()));
            }
            m
        },
        Some({
            let mut r = raw.clone();
            for rec in r.records.iter_mut() {
                rec.flags = if rec.kind == kind::NOTE { 0xfffe } else { 0 };
            }
            r.to_bytes()
        }),
    );
    let key = crak_format::auth::SecretKey::from_seed([7; 32]);
    let signed = crak_format::auth::sign(&write(&base), &key).expect("sign");
    crak_format::auth::verify(&signed, &key.public()).expect("the signature verifies");
    add(
        "016-signed",
        "an image signed with the Ed25519 key whose seed is 32 bytes of 0x07: AUTH (0x0011, \
         not critical, one entry per record) last before END, in the model's `auth` (§3.17)",
        {
            let mut m = base.clone();
            let parsed = crak_format::read::parse(&signed).expect("signed image parses");
            let auth = parsed.image.auth.expect("AUTH decoded");
            assert_eq!(auth.key_id, key.public().key_id());
            assert_eq!(auth.entries.len(), raw.records.len());
            m.auth = Some(auth);
            m
        },
        Some(signed),
    );
    add(
        "017-event-fds-and-unix-sockets",
        "FD kinds 6-10 with their state in `contents` (§3.13): an eventfd in semaphore mode, a \
         signalfd, a periodic timerfd with a pending tick, an epoll instance watching two of \
         them, both ends of a datagram socket pair with queued messages, and a dup of the \
         eventfd sharing its open file description",
        {
            use crak_format::record::fd::{EpollEntry, FdState, EVENTFD_SEMAPHORE};
            let mut m = image(vec![full_process(PID, 1)]);
            let anon = |n: u32, kind: FdKind, path: &str, state: FdState| {
                let mut f = fd(PID, n, kind, path);
                f.dev = 0;
                f.mode = 0o600;
                f.contents = Blob::from(state.encode());
                f
            };
            let fds = &mut m.processes[0].fds;
            fds.push(anon(
                10,
                FdKind::Eventfd,
                "anon_inode:[eventfd]",
                FdState::Eventfd {
                    count: 7,
                    flags: EVENTFD_SEMAPHORE,
                },
            ));
            fds.push(anon(
                11,
                FdKind::Signalfd,
                "anon_inode:[signalfd]",
                FdState::Signalfd { mask: 1 << 9 },
            ));
            fds.push(anon(
                12,
                FdKind::Timerfd,
                "anon_inode:[timerfd]",
                FdState::Timerfd {
                    clockid: 1,
                    settime_flags: 0,
                    value_ns: 12_500_000,
                    interval_ns: 20_000_000,
                    ticks: 1,
                },
            ));
            fds.push(anon(
                13,
                FdKind::Epoll,
                "anon_inode:[eventpoll]",
                FdState::Epoll(vec![
                    EpollEntry {
                        fd: 10,
                        events: 0x8000_0001,
                        data: 0x1111,
                    },
                    EpollEntry {
                        fd: 12,
                        events: 1,
                        data: 0x2222,
                    },
                ]),
            ));
            let mut a = anon(
                14,
                FdKind::Unix,
                "socket:[9100]",
                FdState::Unix {
                    sock_type: 2,
                    peer: 9101,
                    queue: vec![b"a".to_vec(), b"bb".to_vec()],
                },
            );
            a.ino = 9100;
            let mut b = anon(
                15,
                FdKind::Unix,
                "socket:[9101]",
                FdState::Unix {
                    sock_type: 2,
                    peer: 9100,
                    queue: vec![],
                },
            );
            b.ino = 9101;
            fds.push(a);
            fds.push(b);
            // fd 16 is a dup of the eventfd: one open file description (format 1.1).
            let ev = fds.len() - 6;
            fds[ev].description = 1;
            let mut dup = fds[ev].clone();
            dup.fd = 16;
            fds.push(dup);
            m.version = Version { major: 1, minor: 1 };
            m
        },
        None,
    );
    let perm = |id: u32, key: u32, mode: u32| crak_format::record::ipc::IpcPerm {
        id,
        key,
        uid: 1000,
        gid: 100,
        cuid: 1000,
        cgid: 100,
        mode,
    };
    add(
        "020-sysv-shm",
        "SHM (format 1.2, §3.18): a segment of 2 pages and 100 bytes whose first page holds \
         data, attached twice by the process (a read-write SYSV_SHM VMA over the whole segment \
         and a read-only one over its second page, `ino` the shmid, `pgoff` the offset), and a \
         segment removed at capture (`SHM_DEST`, key IPC_PRIVATE) with no data",
        {
            use crak_format::record::shm::Shm;
            let mut m = image(vec![full_process(PID, 1)]);
            let mut rw = vma(
                PID,
                VmaKind::SysvShm,
                0x7fff_e000_0000,
                3,
                3,
                "/SYSV00c0ffee (deleted)",
            );
            rw.flags = 0x1;
            rw.dev = 0;
            rw.ino = 5;
            let mut ro = vma(
                PID,
                VmaKind::SysvShm,
                0x7fff_e100_0000,
                1,
                1,
                "/SYSV00c0ffee (deleted)",
            );
            ro.flags = 0x1;
            ro.dev = 0;
            ro.ino = 5;
            ro.pgoff = PAGE as u64;
            let vmas = &mut m.processes[0].vmas;
            let at = vmas.partition_point(|x| x.start < rw.start);
            vmas.insert(at, ro);
            vmas.insert(at, rw);
            m.shm_segments = vec![
                Shm {
                    perm: perm(5, 0x00c0_ffee, 0o640),
                    size: 2 * PAGE as u64 + 100,
                    cpid: PID,
                    lpid: PID,
                    data: Blob::from((0..PAGE).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
                },
                Shm {
                    perm: perm(6, 0, 0o600 | 0o1000),
                    size: 1,
                    cpid: PID,
                    lpid: 0,
                    data: Blob::default(),
                },
            ];
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "021-sysv-sem",
        "SEM (format 1.2, §3.19): a set of three semaphores with their values and last pids, \
         and a private set of one",
        {
            use crak_format::record::sem::{Sem, SemSet};
            let mut m = image(vec![full_process(PID, 1)]);
            m.sem_sets = vec![
                SemSet {
                    perm: perm(0, 0x1234_5678, 0o666),
                    sems: vec![
                        Sem { value: 1, pid: PID },
                        Sem { value: 0, pid: 0 },
                        Sem {
                            value: 32767,
                            pid: PID,
                        },
                    ],
                },
                SemSet {
                    perm: perm(32769, 0, 0o600),
                    sems: vec![Sem { value: 5, pid: 9 }],
                },
            ];
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "022-sysv-msg",
        "MSG (format 1.2, §3.20): a queue of three messages in order (types 2, 1, 2^63-1; one \
         empty) with its qbytes and last pids, and an empty queue",
        {
            use crak_format::record::msg::{Message, MsgQueue};
            let mut m = image(vec![full_process(PID, 1)]);
            let msg = |mtype, text: &[u8]| Message {
                mtype,
                text: Blob::from(text.to_vec()),
            };
            m.msg_queues = vec![
                MsgQueue {
                    perm: perm(3, 0x0bad_cafe, 0o620),
                    qbytes: 16384,
                    lspid: PID,
                    lrpid: 0,
                    messages: vec![msg(2, b"first"), msg(1, b""), msg(i64::MAX, b"last")],
                },
                MsgQueue {
                    perm: perm(4, 0, 0o600),
                    qbytes: 0,
                    lspid: 0,
                    lrpid: 0,
                    messages: Vec::new(),
                },
            ];
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "018-tcp-and-udp-sockets",
        "FD kinds TCP (11) and UDP (12) with their state in `contents` (§3.13, 1.2): an IPv4 \
         listening socket, an established connection accepted from it with bytes in both \
         queues (two of the sent ones never sent), the same connection's fd shared with a dup \
         (one open file description), an IPv6 socket connected to an IPv4-mapped peer, and a \
         bound IPv6 UDP socket whose queued datagrams were dropped",
        {
            use crak_format::record::fd::{
                FdState, InetAddr, TcpConn, TcpState, UdpState, AF_INET, AF_INET6,
                SOCKOPT_KEEPALIVE, SOCKOPT_NODELAY, SOCKOPT_REUSEADDR, SOCKOPT_V6ONLY,
                TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE, TCP_ESTABLISHED, TCP_LISTEN,
            };
            let mut m = image(vec![full_process(PID, 1)]);
            let sock = |n: u32, kind: FdKind, ino: u64, state: FdState| {
                let mut f = fd(PID, n, kind, &format!("socket:[{ino}]"));
                f.dev = 0;
                f.ino = ino;
                f.mode = 0o140777;
                f.contents = Blob::from(state.encode());
                f
            };
            let v4 = |a: [u8; 4]| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a);
                b
            };
            let conn = |send: &[u8], unsent: u32, recv: &[u8]| TcpConn {
                snd_seq: 0x1000_0000,
                rcv_seq: 0xffff_fff0,
                mss: 65483,
                snd_wscale: 7,
                rcv_wscale: 7,
                options: TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE,
                timestamp: 0x00c0_ffee,
                snd_wl1: 0xffff_ff00,
                snd_wnd: 65536,
                max_window: 65536,
                rcv_wnd: 65483,
                rcv_wup: 0xffff_ffe0,
                unsent,
                send_queue: send.to_vec(),
                recv_queue: recv.to_vec(),
            };
            let idle = conn(&[], 0, &[]);
            let none = TcpConn {
                snd_seq: 0,
                rcv_seq: 0,
                mss: 0,
                snd_wscale: 0,
                rcv_wscale: 0,
                options: 0,
                timestamp: 0,
                snd_wl1: 0,
                snd_wnd: 0,
                max_window: 0,
                rcv_wnd: 0,
                rcv_wup: 0,
                ..idle.clone()
            };
            let tcp = |addr, state, sockopts, backlog, conn| {
                FdState::Tcp(Box::new(TcpState {
                    addr,
                    state,
                    sockopts,
                    keepidle: 7200,
                    keepintvl: 75,
                    keepcnt: 9,
                    rcvbuf: 131072,
                    sndbuf: 2626560,
                    backlog,
                    conn,
                }))
            };
            let lo = v4([127, 0, 0, 1]);
            let fds = &mut m.processes[0].fds;
            fds.push(sock(
                20,
                FdKind::Tcp,
                9200,
                tcp(
                    InetAddr {
                        family: AF_INET,
                        local: lo,
                        remote: [0; 16],
                        local_port: 8080,
                        remote_port: 0,
                    },
                    TCP_LISTEN,
                    SOCKOPT_REUSEADDR,
                    128,
                    none.clone(),
                ),
            ));
            let mut c = sock(
                21,
                FdKind::Tcp,
                9201,
                tcp(
                    InetAddr {
                        family: AF_INET,
                        local: lo,
                        remote: lo,
                        local_port: 8080,
                        remote_port: 41234,
                    },
                    TCP_ESTABLISHED,
                    SOCKOPT_REUSEADDR | SOCKOPT_NODELAY | SOCKOPT_KEEPALIVE,
                    0,
                    conn(b"line 41\nline 42\n", 2, b"line 43\n"),
                ),
            );
            c.description = 1;
            let mut dup = c.clone();
            dup.fd = 22;
            fds.push(c);
            fds.push(dup);
            let mut mapped = [0u8; 16];
            mapped[10] = 0xff;
            mapped[11] = 0xff;
            mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
            fds.push(sock(
                23,
                FdKind::Tcp,
                9202,
                tcp(
                    InetAddr {
                        family: AF_INET6,
                        local: mapped,
                        remote: mapped,
                        local_port: 50000,
                        remote_port: 8080,
                    },
                    TCP_ESTABLISHED,
                    0,
                    0,
                    idle,
                ),
            ));
            let mut one = [0u8; 16];
            one[15] = 1;
            fds.push(sock(
                24,
                FdKind::Udp,
                9203,
                FdState::Udp(UdpState {
                    addr: InetAddr {
                        family: AF_INET6,
                        local: one,
                        remote: [0; 16],
                        local_port: 5353,
                        remote_port: 0,
                    },
                    sockopts: SOCKOPT_V6ONLY,
                    rcvbuf: 212992,
                    sndbuf: 212992,
                    dropped: 3,
                }),
            ));
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "025-memfd-and-its-shared-mapping",
        "FD kind 16 MEMFD (1.2): a sealable memfd with two extents and seals SHRINK and GROW, and a \
         shared ANON mapping of it (its `ino`) that stores no pages (§3.13)",
        {
            use crak_format::record::fd::{FdState, MemfdExtent, MFD_ALLOW_SEALING};
            let mut m = image(vec![full_process(PID, 1)]);
            let p = &mut m.processes[0];
            let mut f = fd(PID, 5, FdKind::Memfd, "/memfd:ring (deleted)");
            f.ino = 4242;
            f.dev = 1;
            f.size = 3 * 4096;
            f.mode = 0o100777;
            f.contents = Blob::from(
                FdState::Memfd {
                    flags: MFD_ALLOW_SEALING,
                    seals: 0x6,
                    size: 3 * 4096,
                    name: b"ring".to_vec(),
                    extents: vec![
                        MemfdExtent {
                            offset: 0,
                            data: b"head".to_vec(),
                        },
                        MemfdExtent {
                            offset: 8192,
                            data: vec![7; 4096],
                        },
                    ],
                }
                .encode(),
            );
            p.fds.push(f);
            let mut map = vma(
                PID,
                VmaKind::Anon,
                0x7fff_f100_0000,
                3,
                3,
                "/memfd:ring (deleted)",
            );
            map.flags = 0x1;
            map.ino = 4242;
            let at = p.vmas.partition_point(|v| v.start < map.start);
            p.vmas.insert(at, map);
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "026-inotify-watches",
        "FD kind 15 INOTIFY (1.2): two watches whose descriptors skip 1 (§3.13)",
        {
            use crak_format::record::fd::{FdState, InotifyWatch};
            let mut m = image(vec![full_process(PID, 1)]);
            let mut f = fd(PID, 6, FdKind::Inotify, "anon_inode:inotify");
            f.dev = 0;
            f.ino = 0;
            f.mode = 0o600;
            f.open_flags = 0o4002;
            f.contents = Blob::from(
                FdState::Inotify(vec![
                    InotifyWatch {
                        wd: 2,
                        mask: 0x100,
                        dev: 0x803,
                        ino: 5001,
                        path: b"/srv/work/in".to_vec(),
                    },
                    InotifyWatch {
                        wd: 3,
                        mask: 0x8000_0300,
                        dev: 0x803,
                        ino: 5002,
                        path: b"/srv/work/spool".to_vec(),
                    },
                ])
                .encode(),
            );
            m.processes[0].fds.push(f);
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "027-timers",
        "TIMERS (0x0015, 1.2): ITIMER_REAL and ITIMER_PROF armed, a periodic POSIX timer with \
         a signal value, a disarmed one and a thread-directed one (§3.21)",
        {
            use crak_format::record::timers::{Itimer, Notify, PosixTimer, Timers, Which};
            let mut m = image(vec![full_process(PID, 1)]);
            let timer = |id, clockid, notify, signo, tid, value_ns, interval_ns| PosixTimer {
                id,
                clockid,
                notify,
                signo,
                tid,
                overrun: 0,
                sigval: 0x5151,
                value_ns,
                interval_ns,
            };
            m.processes[0].timers = Some(Timers {
                pid: PID,
                itimers: vec![
                    Itimer {
                        which: Which::Real,
                        value_ns: 25_000_000,
                        interval_ns: 50_000_000,
                    },
                    Itimer {
                        which: Which::Prof,
                        value_ns: 1_000_000_000,
                        interval_ns: 0,
                    },
                ],
                posix: vec![
                    timer(1, 1, Notify::Signal, 34, 0, 14_000_000, 30_000_000),
                    timer(2, 0, Notify::None, 0, 0, 0, 0),
                    timer(5, 1, Notify::ThreadId, 10, PID, 500_000_000, 0),
                ],
            });
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "028-locks",
        "LOCKS (0x0016, 1.2): an exclusive flock, a POSIX write lock on bytes 10-19 and an OFD \
         read lock to the end of the file, on three regular fds (§3.22)",
        {
            use crak_format::record::locks::{Lock, LockKind, LockType, Locks};
            let mut m = image(vec![full_process(PID, 1)]);
            let p = &mut m.processes[0];
            for (n, name) in [
                (7, "/srv/work/a.lock"),
                (8, "/srv/work/b.db"),
                (9, "/srv/work/c.db"),
            ] {
                p.fds.push(fd(PID, n, FdKind::Reg, name));
            }
            let lock = |fd, kind, lock_type, start, len| Lock {
                fd,
                kind,
                lock_type,
                start,
                len,
            };
            p.locks = Some(Locks {
                pid: PID,
                locks: vec![
                    lock(7, LockKind::Flock, LockType::Write, 0, 0),
                    lock(8, LockKind::Posix, LockType::Write, 10, 10),
                    lock(9, LockKind::Ofd, LockType::Read, 0, 0),
                ],
            });
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "023-unix-sockets-named-and-listening",
        "FD kind 13 UNIX_SOCKET (1.2, §3.13) in a parent and a child: a stream listener on a \
         path (socket file mode 0640) with one connection waiting to be accepted, an accepted \
         connection with bytes queued both ways, a seqpacket listener on an abstract name, a \
         datagram socket bound to a path holding datagrams from an abstract and an unnamed \
         sender, and the unnamed datagram socket connected to it",
        {
            use crak_format::record::fd::{
                FdState, UnixMessage, UnixPending, UnixSocket, UNIX_CONNECTED, UNIX_LISTENING,
            };
            let child = 4243;
            let mut m = image(vec![full_process(PID, 1), full_process(child, PID)]);
            let sock = |pid: u32, n: u32, ino: u64, s: UnixSocket| {
                let mut f = fd(pid, n, FdKind::UnixSocket, &format!("socket:[{ino}]"));
                f.dev = 0;
                f.ino = ino;
                f.mode = 0o140777;
                f.contents = Blob::from(FdState::UnixSocket(s).encode());
                f
            };
            let path = b"/run/app/srv.sock".to_vec();
            let waiting = 9203 | 1 << 63;
            let parent = vec![
                sock(
                    PID,
                    20,
                    9200,
                    UnixSocket {
                        sock_type: 1,
                        state: UNIX_LISTENING,
                        backlog: 8,
                        name_uid: 1000,
                        name_gid: 1000,
                        name_mode: 0o140640,
                        name: path.clone(),
                        pending: vec![UnixPending {
                            ino: waiting,
                            client: 9203,
                            queue: vec![],
                        }],
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    PID,
                    21,
                    9201,
                    UnixSocket {
                        sock_type: 1,
                        state: UNIX_CONNECTED,
                        peer: 9202,
                        name: path.clone(),
                        queue: vec![UnixMessage {
                            sender: vec![],
                            data: b"c1-hello".to_vec(),
                        }],
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    PID,
                    22,
                    9204,
                    UnixSocket {
                        sock_type: 5,
                        state: UNIX_LISTENING,
                        backlog: 4,
                        name: b"\0app-seq".to_vec(),
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    PID,
                    23,
                    9205,
                    UnixSocket {
                        sock_type: 2,
                        name_uid: 1000,
                        name_gid: 1000,
                        name_mode: 0o140755,
                        name: b"/run/app/dg.sock".to_vec(),
                        queue: vec![
                            UnixMessage {
                                sender: b"\0app-dg".to_vec(),
                                data: b"dgram-1".to_vec(),
                            },
                            UnixMessage {
                                sender: vec![],
                                data: b"from-d3".to_vec(),
                            },
                        ],
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    PID,
                    24,
                    9206,
                    UnixSocket {
                        sock_type: 2,
                        state: UNIX_CONNECTED,
                        peer: 9205,
                        peer_name: b"/run/app/dg.sock".to_vec(),
                        ..UnixSocket::default()
                    },
                ),
            ];
            let kid = vec![
                sock(
                    child,
                    3,
                    9202,
                    UnixSocket {
                        sock_type: 1,
                        state: UNIX_CONNECTED,
                        peer: 9201,
                        peer_name: path.clone(),
                        queue: vec![UnixMessage {
                            sender: vec![],
                            data: b"srv-to-c1".to_vec(),
                        }],
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    child,
                    4,
                    9203,
                    UnixSocket {
                        sock_type: 1,
                        state: UNIX_CONNECTED,
                        peer: waiting,
                        peer_name: path,
                        ..UnixSocket::default()
                    },
                ),
                sock(
                    child,
                    5,
                    9207,
                    UnixSocket {
                        sock_type: 2,
                        name: b"\0app-dg".to_vec(),
                        ..UnixSocket::default()
                    },
                ),
            ];
            m.processes[0].fds.extend(parent);
            m.processes[1].fds.extend(kid);
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "024-unix-sockets-external-peer-and-shutdown",
        "FD kind 13 UNIX_SOCKET (1.2, §3.13): a stream socket connected to a listener outside \
         the image (PEER_EXTERNAL, reconnected only on request), a pair made by \
         connect/accept whose client is bound to a path that was unlinked (NAME_GONE) and \
         whose ends were shut down (SHUT_WR on one, SHUT_RD on the other), an accepted socket \
         whose peer closed with bytes left to read (PEER_CLOSED), and an unconnected unnamed \
         stream socket",
        {
            use crak_format::record::fd::{
                FdState, UnixMessage, UnixSocket, UNIX_CONNECTED, UNIX_NAME_GONE, UNIX_PEER_CLOSED,
                UNIX_PEER_EXTERNAL, UNIX_SHUT_RD, UNIX_SHUT_WR,
            };
            let mut m = image(vec![full_process(PID, 1)]);
            let sock = |n: u32, ino: u64, s: UnixSocket| {
                let mut f = fd(PID, n, FdKind::UnixSocket, &format!("socket:[{ino}]"));
                f.dev = 0;
                f.ino = ino;
                f.mode = 0o140777;
                f.contents = Blob::from(FdState::UnixSocket(s).encode());
                f
            };
            let fds = &mut m.processes[0].fds;
            fds.push(sock(
                20,
                9300,
                UnixSocket {
                    sock_type: 1,
                    state: UNIX_CONNECTED,
                    flags: UNIX_PEER_EXTERNAL,
                    peer: 777,
                    peer_name: b"/run/dbus/system_bus_socket".to_vec(),
                    ..UnixSocket::default()
                },
            ));
            fds.push(sock(
                21,
                9301,
                UnixSocket {
                    sock_type: 1,
                    state: UNIX_CONNECTED,
                    flags: UNIX_SHUT_WR | UNIX_NAME_GONE,
                    peer: 9302,
                    name: b"/tmp/client.sock".to_vec(),
                    peer_name: b"\0server".to_vec(),
                    ..UnixSocket::default()
                },
            ));
            fds.push(sock(
                22,
                9302,
                UnixSocket {
                    sock_type: 1,
                    state: UNIX_CONNECTED,
                    flags: UNIX_SHUT_RD,
                    peer: 9301,
                    name: b"\0server".to_vec(),
                    peer_name: b"/tmp/client.sock".to_vec(),
                    queue: vec![UnixMessage {
                        sender: vec![],
                        data: b"last words".to_vec(),
                    }],
                    ..UnixSocket::default()
                },
            ));
            fds.push(sock(
                23,
                9303,
                UnixSocket {
                    sock_type: 1,
                    ..UnixSocket::default()
                },
            ));
            fds.push(sock(
                24,
                9304,
                UnixSocket {
                    sock_type: 1,
                    state: UNIX_CONNECTED,
                    flags: UNIX_PEER_CLOSED | UNIX_SHUT_RD | UNIX_SHUT_WR,
                    name: b"\0server".to_vec(),
                    queue: vec![UnixMessage {
                        sender: vec![],
                        data: b"bye".to_vec(),
                    }],
                    ..UnixSocket::default()
                },
            ));
            m.version = Version { major: 1, minor: 2 };
            m
        },
        None,
    );
    add(
        "029-thread-names-and-robust-lists",
        "THREAD with and without the 1.2 fields (§3.7): a 1.2 thread with its robust list and an \
         empty name next to a thread whose payload ends at `clear_child_tid`",
        {
            let mut p = full_process(PID, 1);
            p.process.tids.push(PID + 1);
            p.threads.push(thread(PID, PID + 1));
            p.xsaves.push(xsave(PID, PID + 1, 2696));
            p.threads[0].ext = Some(ThreadExt {
                name: ByteString(Vec::new()),
                ..thread_ext(PID)
            });
            let mut m = image(vec![p]);
            m.version.minor = 2;
            m
        },
        None,
    );
    add(
        "030-scm-files-and-credentials",
        "SCM (0x0017, 1.3, §3.23): a stream socket pair whose first end holds two messages, the \
         second carrying credentials and three files in flight: the read end of a pipe whose \
         write end the process holds, an eventfd, and a regular file sharing its open file \
         description with an fd of the process",
        scm_image(),
        None,
    );
    v
}

/// A 1.3 image with a socket pair (fds 14, 15), a pipe's write end (fd 5), a regular file
/// (fd 6) and an SCM record passing three files with the second message queued on fd 14.
fn scm_image() -> Image<'static> {
    use crak_format::record::fd::FdState;
    use crak_format::record::scm::{Scm, SCM_CREDENTIALS};
    let mut m = image(vec![full_process(PID, 1)]);
    let anon = |n: u32, kind: FdKind, path: &str, state: FdState| {
        let mut f = fd(PID, n, kind, path);
        f.dev = 0;
        f.mode = 0o600;
        f.contents = Blob::from(state.encode());
        f
    };
    let mut w = fd(PID, 5, FdKind::Pipe, "pipe:[9300]");
    (w.ino, w.dev, w.mode, w.open_flags) = (9300, 0xc, 0o10600, 0o1);
    let mut reg = fd(PID, 6, FdKind::Reg, "/srv/data/log");
    (reg.pos, reg.description) = (4096, 1);
    let mut a = anon(
        14,
        FdKind::Unix,
        "socket:[9200]",
        FdState::Unix {
            sock_type: 1,
            peer: 9201,
            queue: vec![b"hello ".to_vec(), b"files".to_vec()],
        },
    );
    a.ino = 9200;
    let mut b = anon(
        15,
        FdKind::Unix,
        "socket:[9201]",
        FdState::Unix {
            sock_type: 1,
            peer: 9200,
            queue: vec![],
        },
    );
    b.ino = 9201;
    let fds = &mut m.processes[0].fds;
    fds.extend([w.clone(), reg.clone(), a, b]);
    m.pipes.push(PipeData {
        pipe_id: 9300,
        capacity: 65536,
        data: Blob::from(b"queued".to_vec()),
    });
    let in_flight = |n: u32, mut f: Fd<'static>| {
        (f.pid, f.fd, f.fd_flags) = (0, n, 0);
        f
    };
    let mut r = w;
    r.open_flags = 0;
    let ev = anon(
        0,
        FdKind::Eventfd,
        "anon_inode:[eventfd]",
        FdState::Eventfd {
            count: 42,
            flags: 0,
        },
    );
    m.scm.push(Scm {
        socket: 9200,
        message: 1,
        flags: SCM_CREDENTIALS,
        pid: PID,
        uid: 1000,
        gid: 100,
        files: vec![in_flight(0, r), in_flight(1, ev), in_flight(2, reg)],
    });
    m.version = Version { major: 1, minor: 3 };
    m
}

fn invalid_vectors() -> Vec<Invalid> {
    let base = image(vec![full_process(PID, 1)]);
    let written = write(&base);
    let raw = RawImage::split(&written);
    let mut v = Vec::new();
    let mut add = |name,
                   covers,
                   bytes: Vec<u8>,
                   error,
                   offset: u64,
                   record: Option<&'static str>,
                   field: Option<&'static str>| {
        v.push(Invalid {
            name,
            covers,
            bytes,
            error,
            offset,
            record,
            field,
            stream: None,
        })
    };
    let off = |r: &RawImage, k: u16, n: usize| r.offset_of(r.find(k, n));
    let payload = |r: &RawImage, k: u16, n: usize| off(r, k, n) + RECORD_HEADER_LEN as u64;

    add(
        "001-bad-magic",
        "magic differs in its last byte (§2.1)",
        {
            let mut b = written.clone();
            b[7] = 0x1b;
            b
        },
        "bad-magic",
        0,
        None,
        Some("magic"),
    );
    add(
        "002-unsupported-version",
        "major version 2 (§2.1)",
        {
            let mut r = raw.clone();
            r.major = 2;
            r.to_bytes()
        },
        "unsupported-version",
        8,
        None,
        Some("major"),
    );
    add(
        "003-unknown-flag",
        "critical flag bit 0 set in the file header (§2.1)",
        {
            let mut r = raw.clone();
            r.flags = 1;
            r.to_bytes()
        },
        "unknown-flag",
        12,
        None,
        Some("flags"),
    );
    add(
        "004-truncated-file-header",
        "the file ends inside the file header",
        written[..12].to_vec(),
        "truncated",
        12,
        None,
        Some("file header"),
    );
    add(
        "005-truncated-record-header",
        "the file ends inside a record header",
        {
            let at = off(&raw, kind::VMA, 2) as usize;
            written[..at + 10].to_vec()
        },
        "truncated",
        off(&raw, kind::VMA, 2),
        None,
        Some("record header"),
    );
    add(
        "006-truncated-payload",
        "the file ends inside a payload: length exceeds the bytes that remain (§2.2)",
        {
            let at = payload(&raw, kind::FD, 1) as usize;
            written[..at + 20].to_vec()
        },
        "truncated",
        off(&raw, kind::FD, 1) + 8,
        Some("FD"),
        Some("length"),
    );
    add(
        "007-truncated-missing-end",
        "the file ends right after the last record before END (§2.4)",
        written[..raw.end_offset() as usize].to_vec(),
        "truncated",
        raw.end_offset(),
        None,
        None,
    );
    add(
        "008-truncated-field",
        "a ZERO_PAGES payload of 20 bytes, shorter than its fields, with a correct CRC (§2.2)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::ZERO_PAGES, 0);
            r.records[i].payload.truncate(20);
            r.to_bytes()
        },
        "truncated",
        payload(&raw, kind::ZERO_PAGES, 0) + 16,
        Some("ZERO_PAGES"),
        Some("nr_pages"),
    );
    add(
        "009-truncated-list",
        "a CREDS groups count larger than the items present (§2.2)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::CREDS, 0);
            r.records[i].payload[84..88].copy_from_slice(&4u32.to_le_bytes());
            r.to_bytes()
        },
        "truncated",
        payload(&raw, kind::CREDS, 0) + 84,
        Some("CREDS"),
        Some("groups"),
    );
    add(
        "010-bad-crc",
        "one bit of a VMA payload flipped (§2.2)",
        {
            let mut b = written.clone();
            let at = payload(&raw, kind::VMA, 1) as usize + 9;
            b[at] ^= 0x10;
            b
        },
        "bad-crc",
        {
            let i = raw.find(kind::VMA, 1);
            raw.offset_of(i + 1) - CRC_LEN as u64
        },
        Some("VMA"),
        Some("crc"),
    );
    add(
        "011-too-large",
        "a CREDS record whose length is 2^40: past the end of the file (`truncated`), and past \
         the 64 MiB metadata limit of a stream reader (`too-large`, the `stream` report) (§2.2)",
        {
            let mut b = written.clone();
            let at = off(&raw, kind::CREDS, 0) as usize + 8;
            b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            b
        },
        "truncated",
        off(&raw, kind::CREDS, 0) + 8,
        Some("CREDS"),
        Some("length"),
    );
    add(
        "012-unknown-critical-record",
        "a record of unknown kind 0x0100 with CRITICAL set (§2.2)",
        {
            let mut r = raw.clone();
            let at = r.find(kind::VMA, 0);
            r.records.insert(
                at,
                RawRecord {
                    kind: 0x0100,
                    flags: 1,
                    payload: b"must understand".to_vec(),
                    verbatim: false,
                },
            );
            r.to_bytes()
        },
        "unknown-critical-record",
        off(&raw, kind::VMA, 0) + 2,
        None,
        Some("flags"),
    );
    add(
        "013-bad-value-vma-kind",
        "a VMA kind of 11, not in the enum (§3.10)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::VMA, 0);
            r.records[i].payload[4..6].copy_from_slice(&11u16.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::VMA, 0) + 4,
        Some("VMA"),
        Some("kind"),
    );
    add(
        "014-bad-value-fd-kind",
        "an FD kind of 0 (§3.13)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::FD, 0);
            r.records[i].payload[12..14].copy_from_slice(&0u16.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::FD, 0) + 12,
        Some("FD"),
        Some("kind"),
    );
    add(
        "015-bad-value-page-size",
        "HEADER page_size 12288, not a power of two (§3.1)",
        {
            let mut r = raw.clone();
            r.records[0].payload[4..8].copy_from_slice(&12288u32.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::HEADER, 0) + 4,
        Some("HEADER"),
        Some("page_size"),
    );
    add(
        "016-bad-value-count",
        "a PROCESS comm of 17 bytes, above its bound of 16 (§3.2)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::PROCESS, 0);
            let p = &mut r.records[i].payload;
            let n = le32(p, 28) as usize;
            p.splice(32..32 + n, b"seventeen-bytes!!".iter().copied());
            p[28..32].copy_from_slice(&17u32.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::PROCESS, 0) + 28,
        Some("PROCESS"),
        Some("comm"),
    );
    add(
        "017-orphan-record",
        "a VMA naming a pid with no PROCESS record (§2.3)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::VMA, 0);
            r.records[i].payload[0..4].copy_from_slice(&(PID + 1).to_le_bytes());
            r.to_bytes()
        },
        "orphan-record",
        payload(&raw, kind::VMA, 0),
        Some("VMA"),
        Some("pid"),
    );
    add(
        "018-orphan-header-not-first",
        "PROCESS before HEADER (§2.3)",
        {
            let mut r = raw.clone();
            r.records.swap(0, 1);
            r.to_bytes()
        },
        "orphan-record",
        FILE_HEADER_LEN as u64,
        Some("PROCESS"),
        Some("kind"),
    );
    add(
        "019-duplicate-pid",
        "two PROCESS records with the same pid (§2.3)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::PROCESS, 0);
            let p = r.records[i].clone();
            r.records.insert(i + 1, p);
            r.to_bytes()
        },
        "duplicate",
        {
            let mut r = raw.clone();
            let i = r.find(kind::PROCESS, 0);
            let p = r.records[i].clone();
            r.records.insert(i + 1, p);
            r.offset_of(i + 1) + RECORD_HEADER_LEN as u64
        },
        Some("PROCESS"),
        Some("pid"),
    );
    add(
        "020-duplicate-creds",
        "two CREDS records for one process (§2.3)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::CREDS, 0);
            let p = r.records[i].clone();
            r.records.insert(i + 1, p);
            r.to_bytes()
        },
        "duplicate",
        payload(&raw, kind::MM, 0),
        Some("CREDS"),
        Some("pid"),
    );
    add(
        "021-duplicate-thread",
        "two THREAD records for one (pid, tid) (§2.3)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::THREAD, 0);
            let p = r.records[i].clone();
            r.records.insert(i + 1, p);
            r.to_bytes()
        },
        "duplicate",
        payload(&raw, kind::XSAVE, 0) + 4,
        Some("THREAD"),
        Some("tid"),
    );
    add(
        "022-duplicate-header",
        "a second HEADER record (§2.3)",
        {
            let mut r = raw.clone();
            let h = r.records[0].clone();
            r.records.insert(1, h);
            r.to_bytes()
        },
        "duplicate",
        off(&raw, kind::PROCESS, 0),
        Some("HEADER"),
        Some("kind"),
    );
    add(
        "023-trailing-data",
        "one byte after END (§2.3)",
        {
            let mut b = written.clone();
            b.push(0);
            b
        },
        "trailing-data",
        written.len() as u64,
        None,
        None,
    );
    add(
        "024-bad-end-record-count",
        "END record_count one too many, digest correct (§2.4)",
        raw.to_bytes_with(|e| e.record_count += 1),
        "bad-end",
        raw.end_offset() + RECORD_HEADER_LEN as u64,
        Some("END"),
        Some("record_count"),
    );
    add(
        "025-bad-end-page-count",
        "END page_count one too few, digest correct (§2.4)",
        raw.to_bytes_with(|e| e.page_count -= 1),
        "bad-end",
        raw.end_offset() + RECORD_HEADER_LEN as u64 + 16,
        Some("END"),
        Some("page_count"),
    );
    add(
        "026-bad-digest",
        "two FD records swapped (each CRC still correct): only END's digest tells (§2.4)",
        {
            let mut r = raw.clone();
            // The digest of the original order over the records of the swapped order.
            let digest = le32(&written, written.len() - 12);
            let a = r.find(kind::FD, 0);
            r.records.swap(a, a + 1);
            r.to_bytes_with(|e| e.digest = digest)
        },
        "bad-digest",
        raw.end_offset() + RECORD_HEADER_LEN as u64 + 24,
        Some("END"),
        Some("digest"),
    );
    add(
        "027-bad-value-vma-order",
        "two VMA records of one process out of address order (§2.3)",
        {
            let mut r = raw.clone();
            let a = r.find(kind::VMA, 2);
            r.records.swap(a, a + 1);
            r.to_bytes()
        },
        "bad-value",
        {
            // The second of the swapped pair is the first VMA below its predecessor.
            let mut r = raw.clone();
            let a = r.find(kind::VMA, 2);
            r.records.swap(a, a + 1);
            r.offset_of(a + 1) + RECORD_HEADER_LEN as u64 + 8
        },
        Some("VMA"),
        Some("start"),
    );
    // PAGES framing (§3.11): its length is data_offset + nr_pages × page_size exactly.
    let pages_at = raw.find(kind::PAGES, 0);
    let pages_payload = payload(&raw, kind::PAGES, 0);
    let pages_data = {
        let b = &written;
        let at = pages_payload as usize;
        pages_payload + u64::from(le32(b, at + 24))
    };
    add(
        "028-bad-value-pages-length",
        "a PAGES payload 8 bytes longer than data_offset + nr_pages × page_size (§3.11)",
        {
            let mut r = raw.clone();
            r.records[pages_at].payload.extend_from_slice(&[0; 8]);
            r.to_bytes()
        },
        "bad-value",
        pages_data,
        Some("PAGES"),
        Some("data"),
    );
    add(
        "029-truncated-pages-data",
        "a PAGES record of nr_pages 2 holding one page of data (§3.11)",
        {
            let mut r = raw.clone();
            let p = &mut r.records[pages_at].payload;
            let n = le64(p, 16);
            p[16..24].copy_from_slice(&(n + 1).to_le_bytes());
            r.to_bytes_with(|e| e.page_count -= 1)
        },
        "truncated",
        pages_data,
        Some("PAGES"),
        Some("data"),
    );
    add(
        "030-bad-value-pages-empty",
        "a PAGES record of nr_pages 0 (§3.11)",
        {
            let mut r = raw.clone();
            let p = &mut r.records[pages_at].payload;
            p[16..24].copy_from_slice(&0u64.to_le_bytes());
            p.truncate(PAGES_FIXED);
            r.to_bytes()
        },
        "bad-value",
        pages_payload + 16,
        Some("PAGES"),
        Some("nr_pages"),
    );
    add(
        "031-truncated-pages-data-offset",
        "a PAGES data_offset past the end of its payload (§3.11)",
        {
            let mut r = raw.clone();
            let rec = &mut r.records[pages_at];
            rec.verbatim = true;
            rec.payload.truncate(PAGES_FIXED);
            rec.payload[24..28].copy_from_slice(&4096u32.to_le_bytes());
            r.to_bytes()
        },
        "truncated",
        pages_payload + 24,
        Some("PAGES"),
        Some("data_offset"),
    );
    add(
        "032-bad-value-special-mapping-kind",
        "a HEADER special mapping of kind ANON, not a special VMA kind (§3.1)",
        {
            let mut r = raw.clone();
            let p = &mut r.records[0].payload;
            // After the fixed 32 bytes: three `bytes` fields, then the count.
            let mut at = 32;
            for _ in 0..3 {
                at += 4 + le32(p, at) as usize;
            }
            p[at + 4 + 17] = 1;
            r.to_bytes()
        },
        "bad-value",
        {
            let p = &raw.records[0].payload;
            let mut at = 32;
            for _ in 0..3 {
                at += 4 + le32(p, at) as usize;
            }
            payload(&raw, kind::HEADER, 0) + (at + 4 + 17) as u64
        },
        Some("HEADER"),
        Some("special_mappings.kind"),
    );
    add(
        "033-bad-value-no-tids",
        "a PROCESS record with an empty tids list (§3.2)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::PROCESS, 0);
            let p = &mut r.records[i].payload;
            let at = p.len() - 8;
            p.truncate(at);
            p.extend_from_slice(&0u32.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        {
            let i = raw.find(kind::PROCESS, 0);
            payload(&raw, kind::PROCESS, 0) + raw.records[i].payload.len() as u64 - 8
        },
        Some("PROCESS"),
        Some("tids"),
    );
    add(
        "034-bad-value-fd-deleted",
        "an FD deleted field of 2, not 0 or 1 (§3.13)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::FD, 0);
            r.records[i].payload[76..80].copy_from_slice(&2u32.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::FD, 0) + 76,
        Some("FD"),
        Some("deleted"),
    );
    add(
        "035-bad-value-pipe-over-capacity",
        "PIPE_DATA holding more bytes than its capacity (§3.14)",
        {
            let mut r = raw.clone();
            r.records.insert(
                r.find(kind::PAGES, 0),
                RawRecord {
                    kind: kind::PIPE_DATA,
                    flags: 1,
                    payload: {
                        let mut p = Vec::new();
                        p.extend_from_slice(&77u64.to_le_bytes());
                        p.extend_from_slice(&4u32.to_le_bytes());
                        p.extend_from_slice(&0u32.to_le_bytes());
                        p.extend_from_slice(&5u32.to_le_bytes());
                        p.extend_from_slice(b"12345");
                        p
                    },
                    verbatim: false,
                },
            );
            r.to_bytes()
        },
        "bad-value",
        off(&raw, kind::PAGES, 0) + RECORD_HEADER_LEN as u64 + 16,
        Some("PIPE_DATA"),
        Some("data"),
    );
    add(
        "036-bad-value-arch",
        "HEADER arch 183 (aarch64): version 1 images are x86_64 (§3.1)",
        {
            let mut r = raw.clone();
            r.records[0].payload[0..2].copy_from_slice(&183u16.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::HEADER, 0),
        Some("HEADER"),
        Some("arch"),
    );
    add(
        "037-orphan-unknown-before-header",
        "a non-critical record of unknown kind before HEADER: skippable, but HEADER must be the \
         first record (§2.3)",
        {
            let mut r = raw.clone();
            r.records.insert(
                0,
                RawRecord {
                    kind: 0x0100,
                    flags: 0,
                    payload: Vec::new(),
                    verbatim: false,
                },
            );
            r.to_bytes()
        },
        "orphan-record",
        FILE_HEADER_LEN as u64,
        None,
        Some("kind"),
    );
    add(
        "038-truncated-pipe-data",
        "PIPE_DATA whose data length is above its capacity and past its payload: truncated, \
         since a bound that is another field is checked after the contents are taken (§2.5)",
        {
            let mut r = raw.clone();
            r.records.insert(
                r.find(kind::PAGES, 0),
                RawRecord {
                    kind: kind::PIPE_DATA,
                    flags: 1,
                    payload: {
                        let mut p = Vec::new();
                        p.extend_from_slice(&77u64.to_le_bytes());
                        p.extend_from_slice(&4u32.to_le_bytes());
                        p.extend_from_slice(&0u32.to_le_bytes());
                        p.extend_from_slice(&9u32.to_le_bytes());
                        p.extend_from_slice(b"12345");
                        p
                    },
                    verbatim: false,
                },
            );
            r.to_bytes()
        },
        "truncated",
        off(&raw, kind::PAGES, 0) + RECORD_HEADER_LEN as u64 + 16,
        Some("PIPE_DATA"),
        Some("data"),
    );
    // System V IPC records (format 1.2), inserted before the first PAGES record.
    let ipc_record = |kind: u16, payload: Vec<u8>| {
        let mut r = raw.clone();
        r.records.insert(
            r.find(kind::PAGES, 0),
            RawRecord {
                kind,
                flags: 1,
                payload,
                verbatim: false,
            },
        );
        r.to_bytes()
    };
    let ipc_at = off(&raw, kind::PAGES, 0) + RECORD_HEADER_LEN as u64;
    let perm = |id: u32| {
        let mut p = Vec::new();
        for x in [id, 0x1234, 0, 0, 0, 0, 0o600, 0] {
            p.extend_from_slice(&x.to_le_bytes());
        }
        p
    };
    add(
        "111-bad-value-shm-data-over-size",
        "SHM holding 5 bytes of data for a segment of 4 (§3.18)",
        ipc_record(kind::SHM, {
            let mut p = perm(1);
            p.extend_from_slice(&4u64.to_le_bytes());
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(&5u32.to_le_bytes());
            p.extend_from_slice(b"12345");
            p
        }),
        "bad-value",
        ipc_at + 48,
        Some("SHM"),
        Some("data"),
    );
    add(
        "112-bad-value-sem-empty",
        "SEM with no semaphore: a set has at least one (§3.19)",
        ipc_record(kind::SEM, {
            let mut p = perm(2);
            p.extend_from_slice(&0u32.to_le_bytes());
            p
        }),
        "bad-value",
        ipc_at + 32,
        Some("SEM"),
        Some("sems"),
    );
    add(
        "113-truncated-msg-text",
        "MSG whose second message's text runs past the payload: the list's contents do, so it \
         is truncated at its count (§2.5, §3.20)",
        ipc_record(kind::MSG, {
            let mut p = perm(3);
            p.extend_from_slice(&16384u64.to_le_bytes());
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(&2u32.to_le_bytes());
            p.extend_from_slice(&1i64.to_le_bytes());
            p.extend_from_slice(&2u32.to_le_bytes());
            p.extend_from_slice(b"ok");
            p.extend_from_slice(&1i64.to_le_bytes());
            p.extend_from_slice(&9u32.to_le_bytes());
            p.extend_from_slice(b"short");
            p
        }),
        "truncated",
        ipc_at + 48,
        Some("MSG"),
        Some("messages"),
    );
    add(
        "121-bad-value-fd-kind-unallocated",
        "an FD kind of 14, after UNIX_SOCKET (13) and defined by no version (§3.13)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::FD, 0);
            r.records[i].payload[12..14].copy_from_slice(&14u16.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&raw, kind::FD, 0) + 12,
        Some("FD"),
        Some("kind"),
    );
    add(
        "141-truncated-thread-1-2-fields",
        "THREAD with 5 bytes after `clear_child_tid`: the 1.2 fields come all or none, so a \
         partial `robust_list` is truncated (§3.7)",
        {
            let mut r = raw.clone();
            let i = r.find(kind::THREAD, 0);
            assert_eq!(r.records[i].payload.len(), THREAD_SIZE);
            r.records[i].payload.extend_from_slice(&[0x20; 5]);
            r.to_bytes()
        },
        "truncated",
        payload(&raw, kind::THREAD, 0) + THREAD_SIZE as u64,
        Some("THREAD"),
        Some("robust_list"),
    );
    let too_large = v.iter_mut().find(|x| x.name == "011-too-large").unwrap();
    too_large.stream = Some(("too-large", too_large.offset, Some("CREDS"), Some("length")));

    // Format 1.2 records: an image with TIMERS and LOCKS to break.
    let objects = {
        use crak_format::record::locks::{Lock, LockKind, LockType, Locks};
        use crak_format::record::timers::{Itimer, Timers, Which};
        let mut m = image(vec![full_process(PID, 1)]);
        m.version = Version { major: 1, minor: 2 };
        let p = &mut m.processes[0];
        p.timers = Some(Timers {
            pid: PID,
            itimers: vec![Itimer {
                which: Which::Real,
                value_ns: 1,
                interval_ns: 0,
            }],
            posix: vec![],
        });
        p.locks = Some(Locks {
            pid: PID,
            locks: vec![Lock {
                fd: 1,
                kind: LockKind::Posix,
                lock_type: LockType::Read,
                start: 0,
                len: 0,
            }],
        });
        m
    };
    let oraw = RawImage::split(&write(&objects));
    let mut add = |name, covers, bytes, error, offset, record, field| {
        v.push(Invalid {
            name,
            covers,
            bytes,
            error,
            offset,
            record,
            field,
            stream: None,
        })
    };
    add(
        "131-bad-value-lock-kind",
        "a LOCKS entry of kind 4 (§3.22, 1.2)",
        {
            let mut r = oraw.clone();
            let i = r.find(kind::LOCKS, 0);
            r.records[i].payload[12..14].copy_from_slice(&4u16.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&oraw, kind::LOCKS, 0) + 12,
        Some("LOCKS"),
        Some("locks.kind"),
    );
    add(
        "132-bad-value-itimer-which",
        "a TIMERS interval timer with `which` 3 (§3.21, 1.2)",
        {
            let mut r = oraw.clone();
            let i = r.find(kind::TIMERS, 0);
            r.records[i].payload[8..12].copy_from_slice(&3u32.to_le_bytes());
            r.to_bytes()
        },
        "bad-value",
        payload(&oraw, kind::TIMERS, 0) + 8,
        Some("TIMERS"),
        Some("itimers.which"),
    );
    add(
        "133-duplicate-locks",
        "a second LOCKS record for the same pid (§2.3, 1.2)",
        {
            let mut r = oraw.clone();
            let i = r.find(kind::LOCKS, 0);
            let again = r.records[i].clone();
            r.records.insert(i + 1, again);
            r.to_bytes()
        },
        "duplicate",
        {
            let i = oraw.find(kind::LOCKS, 0);
            let next = oraw.offset_of(i + 1);
            next + RECORD_HEADER_LEN as u64
        },
        Some("LOCKS"),
        Some("pid"),
    );
    // Format 1.3: an SCM record to break.
    let sraw = RawImage::split(&write(&scm_image()));
    let spay = payload(&sraw, kind::SCM, 0);
    let mut add = |name, covers, bytes, error, offset, record, field| {
        v.push(Invalid {
            name,
            covers,
            bytes,
            error,
            offset,
            record,
            field,
            stream: None,
        })
    };
    let scm_with = |at: usize, bytes: &[u8]| {
        let mut r = sraw.clone();
        let i = r.find(kind::SCM, 0);
        r.records[i].payload[at..at + bytes.len()].copy_from_slice(bytes);
        r.to_bytes()
    };
    add(
        "151-bad-value-scm-flags",
        "an SCM record with flags bit 1 set, which 1.3 does not define (§3.23)",
        scm_with(12, &3u32.to_le_bytes()),
        "bad-value",
        spay + 12,
        Some("SCM"),
        Some("flags"),
    );
    add(
        "152-bad-value-scm-file-kind",
        "an SCM file in flight of FD kind 14, which no version defines (§3.23, §3.13)",
        scm_with(36 + 12, &14u16.to_le_bytes()),
        "bad-value",
        spay + 36 + 12,
        Some("SCM"),
        Some("files.kind"),
    );
    add(
        "153-bad-value-scm-file-count",
        "an SCM record claiming 254 files, above SCM_MAX_FD (§3.23)",
        scm_with(32, &254u32.to_le_bytes()),
        "bad-value",
        spay + 32,
        Some("SCM"),
        Some("files"),
    );
    add(
        "154-truncated-scm-files",
        "an SCM record whose last file runs past the payload: truncated at the list's count \
         (§2.5, §3.23)",
        {
            let mut r = sraw.clone();
            let i = r.find(kind::SCM, 0);
            r.records[i].payload.pop();
            r.to_bytes()
        },
        "truncated",
        spay + 32,
        Some("SCM"),
        Some("files"),
    );
    v
}

// ------------------------------------------------------------------ files

fn vectors_dir() -> PathBuf {
    crak_tests::workspace_root().join("spec").join("vectors")
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("json");
    s.push('\n');
    s
}

fn valid_json(v: &Valid) -> Value {
    serde_json::to_value(&v.model).expect("model serializes")
}

fn invalid_json(v: &Invalid) -> Value {
    let mut j = json!({
        "error": v.error,
        "offset": v.offset,
        "record": v.record,
        "field": v.field,
    });
    if let Some((error, offset, record, field)) = v.stream {
        j["stream"] = json!({
            "error": error,
            "offset": offset,
            "record": record,
            "field": field,
        });
    }
    j
}

/// Every vector file: (path relative to spec/vectors, contents).
fn all_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut readme = String::from(README_HEAD);
    readme.push_str("\n## Valid\n\n| vector | covers |\n|---|---|\n");
    for v in valid_vectors() {
        files.push((format!("valid/{}.bin", v.name), v.bytes.clone()));
        files.push((
            format!("valid/{}.json", v.name),
            pretty(&valid_json(&v)).into_bytes(),
        ));
        readme.push_str(&format!("| `{}` | {} |\n", v.name, v.covers));
    }
    readme.push_str(
        "\n## Invalid\n\n| vector | error | record | field | offset | covers |\n\
         |---|---|---|---|---|---|\n",
    );
    for v in invalid_vectors() {
        files.push((format!("invalid/{}.bin", v.name), v.bytes.clone()));
        files.push((
            format!("invalid/{}.json", v.name),
            pretty(&invalid_json(&v)).into_bytes(),
        ));
        readme.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {:#x} | {} |\n",
            v.name,
            v.error,
            v.record.unwrap_or("—"),
            v.field.unwrap_or("—"),
            v.offset,
            v.covers
        ));
    }
    files.push(("README.md".to_string(), readme.into_bytes()));
    files
}

const README_HEAD: &str = "\
# crak image test vectors

Generated by `tests/conformance.rs` (`CRAK_UPDATE_VECTORS=1 cargo test -p crak-tests --test \
conformance` rewrites this directory; without it the test fails when a file differs from what the \
generator makes). Do not edit by hand.

- `valid/NNN-name.bin` is an image every reader of format 1.x MUST accept; `valid/NNN-name.json`
  is the model it decodes to, in the JSON form of `crak_format::Image` (serde): byte strings are
  JSON strings when they are UTF-8 and `{\"hex\": ...}` otherwise, page data and other blobs are
  base64, enums are snake_case, absent records are `null`. `crak-dump IMAGE --json --pages`
  prints the same.
- `invalid/NNN-name.bin` is an image every reader MUST reject; `invalid/NNN-name.json` is
  `{\"error\": KIND, \"offset\": N, \"record\": NAME, \"field\": NAME}`: the error kind of
  spec/crak-format.md §2, the absolute file offset the reader reports (the start of the field in
  error; for a record-level error, the record header), the record kind and the field (`null`
  when there is none). When a reader of a stream (which cannot know what remains) must report
  something else, `\"stream\"` holds that report in the same form.

Each vector breaks exactly one rule; the rest of the image is correct (CRCs, END counts and
digest recomputed after the change), so a reader that skips the rule accepts it.
";

fn update_requested() -> bool {
    std::env::var_os("CRAK_UPDATE_VECTORS").is_some_and(|v| v == "1")
}

#[test]
fn vectors_are_reproducible() {
    let dir = vectors_dir();
    let files = all_files();
    if update_requested() {
        for sub in ["valid", "invalid"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            for e in std::fs::read_dir(&d).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for (name, bytes) in &files {
        match std::fs::read(dir.join(name)) {
            Ok(on_disk) if &on_disk == bytes => {}
            Ok(_) => problems.push(format!("{name}: differs from the generator's output")),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    for sub in ["valid", "invalid"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = format!("{sub}/{}", e.unwrap().file_name().to_string_lossy());
            if !files.iter().any(|(n, _)| *n == name) {
                problems.push(format!("{name}: not made by the generator"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "spec/vectors is out of date (CRAK_UPDATE_VECTORS=1 regenerates it):\n{}",
        problems.join("\n")
    );
}

/// (name, bytes, expected JSON) of every committed vector in `sub`.
fn committed(sub: &str) -> Vec<(String, Vec<u8>, Value)> {
    let dir = vectors_dir().join(sub);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".bin").map(str::to_string))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(format!("{n}.bin"))).unwrap();
            let text = std::fs::read_to_string(dir.join(format!("{n}.json")))
                .unwrap_or_else(|e| panic!("{sub}/{n}.json: {e}"));
            let json: Value = serde_json::from_str(&text).unwrap();
            (n, bytes, json)
        })
        .collect()
}

#[test]
fn writer_agrees_with_independent_framing() {
    // Re-framing what crak-format's writer wrote with this file's framing code (its own CRC32C,
    // page padding, END counts and digest) gives the same bytes: the two implementations of
    // §2.2, §2.4 and §3.11 agree.
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 32,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&crak_format::arbitrary::image(), |model| {
            let written = write(&model);
            proptest::prop_assert!(RawImage::split(&written).to_bytes() == written);
            Ok(())
        })
        .unwrap();
    for v in valid_vectors().iter().take(10) {
        let written = write(&v.model);
        assert!(
            RawImage::split(&written).to_bytes() == written,
            "{}: the writer's framing differs from the independent one",
            v.name
        );
    }
}

#[test]
fn there_are_enough_vectors() {
    assert!(committed("valid").len() >= 12);
    assert!(committed("invalid").len() >= 14);
}

#[test]
fn valid_vectors_decode_to_their_model() {
    for (name, bytes, expected) in committed("valid") {
        let parsed = crak_format::read::parse(&bytes)
            .unwrap_or_else(|e| panic!("valid/{name}: rejected: {e}"));
        let got = serde_json::to_value(&parsed.image).unwrap();
        assert_json_eq(&format!("valid/{name}"), &expected, &got);
        // The expected JSON is also a model: it reads back into an equal Image.
        let back: Image<'static> = serde_json::from_value(expected.clone()).unwrap();
        assert_eq!(back, parsed.image, "valid/{name}: JSON -> model");
    }
}

#[test]
fn invalid_vectors_are_rejected_as_expected() {
    let mut problems = Vec::new();
    for (name, bytes, expected) in committed("invalid") {
        match crak_format::read::parse(&bytes) {
            Ok(_) => problems.push(format!("invalid/{name}: accepted")),
            Err(e) => {
                let got = json!({
                    "error": e.kind_str(),
                    "offset": e.offset(),
                    "record": e.record_name(),
                    "field": e.field(),
                });
                let expected = json!({
                    "error": expected["error"],
                    "offset": expected["offset"],
                    "record": expected["record"],
                    "field": expected["field"],
                });
                if got != expected {
                    problems.push(format!(
                        "invalid/{name}: expected {expected}, got {got} ({e})"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn stream_reader_agrees_on_every_vector() {
    let mut problems = Vec::new();
    for (name, bytes, expected) in committed("valid") {
        match crak_format::read::read_stream_metadata(&bytes[..]) {
            Err(e) => problems.push(format!("valid/{name}: stream reader rejects it: {e}")),
            Ok(parsed) => {
                // The stream reader keeps no page data; everything else is the same.
                let mut want = expected.clone();
                for p in want["processes"].as_array_mut().unwrap() {
                    for r in p["pages"].as_array_mut().unwrap() {
                        r["data"] = json!("");
                    }
                }
                let got = serde_json::to_value(&parsed.image).unwrap();
                if got != want {
                    problems.push(format!("valid/{name}: stream reader's model differs"));
                }
            }
        }
    }
    for (name, bytes, expected) in committed("invalid") {
        let want = expected
            .get("stream")
            .cloned()
            .unwrap_or_else(|| expected.clone());
        match crak_format::read::read_stream_metadata(&bytes[..]) {
            Ok(_) => problems.push(format!("invalid/{name}: accepted by the stream reader")),
            Err(e) => {
                let got = json!({
                    "error": e.kind_str(),
                    "offset": e.offset(),
                    "record": e.record_name(),
                    "field": e.field(),
                });
                let want = json!({
                    "error": want["error"],
                    "offset": want["offset"],
                    "record": want["record"],
                    "field": want["field"],
                });
                if got != want {
                    problems.push(format!(
                        "invalid/{name}: stream: expected {want}, got {got} ({e})"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Compares two JSON values and names the first path where they differ.
fn assert_json_eq(what: &str, expected: &Value, got: &Value) {
    fn diff(path: &str, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    match y.get(k) {
                        Some(vb) => {
                            if let Some(d) = diff(&format!("{path}.{k}"), va, vb) {
                                return Some(d);
                            }
                        }
                        None => return Some(format!("{path}.{k}: missing")),
                    }
                }
                y.keys()
                    .find(|k| !x.contains_key(*k))
                    .map(|k| format!("{path}.{k}: unexpected"))
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Some(format!("{path}: {} items, expected {}", y.len(), x.len()));
                }
                x.iter()
                    .zip(y)
                    .enumerate()
                    .find_map(|(i, (va, vb))| diff(&format!("{path}[{i}]"), va, vb))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: expected {a}, got {b}")),
        }
    }
    if let Some(d) = diff("$", expected, got) {
        panic!("{what}: {d}");
    }
}

// ------------------------------------------------------------------ Kaitai

/// What the Kaitai tests run: a Python parser compiled from spec/crak.ksy.
struct Kaitai {
    /// Holds the generated `crak.py`; removed on drop.
    dir: tempfile::TempDir,
}

/// Compiles spec/crak.ksy, or says why it cannot. `None` when CRAK_SKIP_KAITAI=1.
fn kaitai() -> Option<Kaitai> {
    if std::env::var_os("CRAK_SKIP_KAITAI").is_some_and(|v| v == "1") {
        eprintln!("CRAK_SKIP_KAITAI=1: skipping the Kaitai conformance test");
        return None;
    }
    const INSTALL: &str = "install the Kaitai Struct compiler and Python runtime with \
        `npm install -g kaitai-struct-compiler js-yaml && pip install kaitaistruct` \
        (or the JVM kaitai-struct-compiler on PATH), or set CRAK_SKIP_KAITAI=1 to skip this test";
    let py = Command::new("python3")
        .args(["-c", "import kaitaistruct"])
        .output();
    match py {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Python package kaitaistruct is missing ({}): {INSTALL}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 cannot be run ({e}): {INSTALL}"),
    }
    let root = crak_tests::workspace_root();
    let ksy = root.join("spec/crak.ksy");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 temp path").to_string();
    // The JVM compiler's --read-pos --no-auto-read is the npm build's debug mode: fields carry
    // their offsets, which ksy_dump.py uses to name the field an error stops at.
    let jvm = Command::new("kaitai-struct-compiler")
        .args([
            "--read-pos",
            "--no-auto-read",
            "-t",
            "python",
            "--outdir",
            &out,
        ])
        .arg(&ksy)
        .output();
    let compiled = match jvm {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!(
            "kaitai-struct-compiler failed on spec/crak.ksy:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => false,
    };
    if !compiled {
        let o = Command::new("node")
            .arg(root.join("spec/tools/ksc.js"))
            .args(["--debug", "-t", "python", "--outdir", &out])
            .arg(&ksy)
            .output()
            .unwrap_or_else(|e| {
                panic!("neither kaitai-struct-compiler nor node runs ({e}): {INSTALL}")
            });
        assert!(
            o.status.success(),
            "compiling spec/crak.ksy with spec/tools/ksc.js failed: {}{}\n{INSTALL}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(
        dir.path().join("crak.py").exists(),
        "the compiler wrote no crak.py"
    );
    Some(Kaitai { dir })
}

impl Kaitai {
    /// Runs ksy_dump.py; Ok(model JSON) or Err(error JSON).
    fn dump(&self, image: &Path, pages: bool) -> Result<Value, Value> {
        self.dump_with(image, if pages { &["--pages"] } else { &[] })
    }

    /// Runs ksy_dump.py once over many images (`--jsonl`): per image, Ok(model JSON) or
    /// Err(error JSON), in order.
    fn dump_all(&self, images: &[PathBuf], options: &[&str]) -> Vec<Result<Value, Value>> {
        let o = Command::new("python3")
            .arg(crak_tests::workspace_root().join("spec/tools/ksy_dump.py"))
            .arg("--parser-dir")
            .arg(self.dir.path())
            .arg("--jsonl")
            .args(options)
            .args(images)
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "ksy_dump.py --jsonl failed ({}):\n{stdout}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("ksy_dump.py --jsonl prints JSON lines"))
            .collect();
        assert_eq!(lines.len(), images.len(), "one line per image:\n{stdout}");
        images
            .iter()
            .zip(lines)
            .map(|(path, mut line)| {
                assert_eq!(line["image"], json!(path.to_str().unwrap()));
                match line.get_mut("model") {
                    Some(m) => Ok(m.take()),
                    None => Err(line["error"].take()),
                }
            })
            .collect()
    }

    /// Runs ksy_dump.py with extra options.
    fn dump_with(&self, image: &Path, options: &[&str]) -> Result<Value, Value> {
        let mut cmd = Command::new("python3");
        cmd.arg(crak_tests::workspace_root().join("spec/tools/ksy_dump.py"))
            .arg("--parser-dir")
            .arg(self.dir.path())
            .args(options);
        let o = cmd.arg(image).output().expect("python3 runs");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let parse = || -> Value {
            serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!(
                    "ksy_dump.py {}: not JSON ({e}); status {}\nstdout: {stdout}\nstderr: {}",
                    image.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                )
            })
        };
        match o.status.code() {
            Some(0) => Ok(parse()),
            Some(1) => Err(parse()),
            _ => panic!(
                "ksy_dump.py {} failed ({}):\n{stdout}{}",
                image.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
}

/// The reference JSON of an image: `crak-dump IMAGE --json [--pages]` when crak-dump is built,
/// else crak-format's own JSON of the parsed model (`crak_format::to_json`).
fn reference_json(image: &Path, pages: bool) -> Value {
    let dump = crak_tests::bin("crak-dump");
    if dump.exists() {
        let mut cmd = Command::new(&dump);
        cmd.arg(image).arg("--json");
        if pages {
            cmd.arg("--pages");
        }
        let o = cmd.output().expect("crak-dump runs");
        assert!(
            o.status.success(),
            "crak-dump {} --json failed: {}",
            image.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        return serde_json::from_slice(&o.stdout).expect("crak-dump prints JSON");
    }
    let bytes = std::fs::read(image).unwrap();
    let parsed = crak_format::read::parse(&bytes).expect("reference parse");
    crak_format::to_json(&parsed.image, pages)
}

#[test]
fn kaitai_reads_every_valid_vector_like_the_rust_reader() {
    let Some(k) = kaitai() else { return };
    let dir = vectors_dir().join("valid");
    let vectors = committed("valid");
    assert!(!vectors.is_empty());
    let paths: Vec<PathBuf> = vectors
        .iter()
        .map(|(name, _, _)| dir.join(format!("{name}.bin")))
        .collect();
    let full = k.dump_all(&paths, &["--pages"]);
    let elided = k.dump_all(&paths, &[]);
    for (((name, bytes, expected), path), (got, elided)) in
        vectors.iter().zip(&paths).zip(full.into_iter().zip(elided))
    {
        let got = got.unwrap_or_else(|e| panic!("ksy_dump.py rejects valid/{name}: {e}"));
        assert_json_eq(&format!("kaitai valid/{name} vs .json"), expected, &got);
        assert_json_eq(
            &format!("kaitai valid/{name} vs reference --pages"),
            &reference_json(path, true),
            &got,
        );
        // Without --pages, ksy_dump elides blobs as crak_format::to_json(image, false) does.
        let elided = elided.unwrap_or_else(|e| panic!("ksy_dump.py rejects valid/{name}: {e}"));
        let parsed = crak_format::read::parse(bytes).unwrap();
        assert_json_eq(
            &format!("kaitai valid/{name} vs to_json(image, false)"),
            &crak_format::to_json(&parsed.image, false),
            &elided,
        );
    }
    // The text, not only the values, is crak-dump's (sorted keys, raw UTF-8, 2-space indent).
    let dump = crak_tests::bin("crak-dump");
    if dump.exists() {
        for name in [
            "002-every-record-kind",
            "007-non-utf8-text",
            "009-extreme-values",
        ] {
            let path = dir.join(format!("{name}.bin"));
            let ours = Command::new("python3")
                .arg(crak_tests::workspace_root().join("spec/tools/ksy_dump.py"))
                .arg("--parser-dir")
                .arg(k.dir.path())
                .arg(&path)
                .output()
                .unwrap();
            let theirs = Command::new(&dump)
                .arg(&path)
                .arg("--json")
                .output()
                .unwrap();
            assert!(ours.status.success() && theirs.status.success());
            assert!(
                ours.stdout == theirs.stdout,
                "valid/{name}: ksy_dump.py and crak-dump --json print different text"
            );
        }
    }
}

#[test]
fn kaitai_rejects_every_invalid_vector_like_the_rust_reader() {
    let Some(k) = kaitai() else { return };
    let dir = vectors_dir().join("invalid");
    let vectors = committed("invalid");
    let paths: Vec<PathBuf> = vectors
        .iter()
        .map(|(name, _, _)| dir.join(format!("{name}.bin")))
        .collect();
    let report = |v: &Value| {
        json!({
            "error": v["error"],
            "offset": v["offset"],
            "record": v["record"],
            "field": v["field"],
        })
    };
    let mut problems = Vec::new();
    for mode in ["--pages", "--stream"] {
        for ((name, _, expected), got) in vectors.iter().zip(k.dump_all(&paths, &[mode])) {
            // A stream reader's report differs where the vector says so.
            let want = match (mode, expected.get("stream")) {
                ("--stream", Some(stream)) => report(stream),
                _ => report(expected),
            };
            match got {
                Ok(_) => problems.push(format!("invalid/{name}: accepted by ksy_dump.py {mode}")),
                Err(got) if report(&got) != want => problems.push(format!(
                    "invalid/{name} ({mode}): expected {want}, got {}",
                    report(&got)
                )),
                Err(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn kaitai_reads_generated_images_like_the_rust_reader() {
    let Some(k) = kaitai() else { return };
    let scratch = tempfile::tempdir().unwrap();
    // This file's strategy and crak-format's own (`arbitrary` feature).
    let a = kaitai_generated(&k, scratch.path(), "gen", gen::image());
    let b = kaitai_generated(
        &k,
        scratch.path(),
        "arbitrary",
        crak_format::arbitrary::image(),
    );
    assert_eq!((a, b), (8, 8));
}

/// Writes 8 models of `strategy` with the Rust writer and checks that ksy_dump.py reads each
/// back as the model and as the reference reader does. Returns how many were checked.
fn kaitai_generated(
    k: &Kaitai,
    dir: &Path,
    label: &str,
    strategy: impl proptest::strategy::Strategy<Value = Image<'static>>,
) -> usize {
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 8,
        failure_persistence: None,
        ..Default::default()
    });
    let written = std::cell::RefCell::new(Vec::new());
    runner
        .run(&strategy, |model| {
            let mut w = written.borrow_mut();
            let path = dir.join(format!("{label}-{}.crak", w.len()));
            std::fs::write(&path, write(&model)).unwrap();
            w.push((path, serde_json::to_value(&model).unwrap()));
            Ok(())
        })
        .unwrap();
    let written = written.into_inner();
    let paths: Vec<PathBuf> = written.iter().map(|(p, _)| p.clone()).collect();
    for ((path, expected), got) in written.iter().zip(k.dump_all(&paths, &["--pages"])) {
        let got = got.unwrap_or_else(|e| panic!("ksy_dump.py rejects {}: {e}", path.display()));
        assert_json_eq(
            &format!("kaitai {} vs model", path.display()),
            expected,
            &got,
        );
        assert_json_eq(
            &format!("kaitai {} vs reference", path.display()),
            &reference_json(path, true),
            &got,
        );
    }
    written.len()
}

#[test]
fn kaitai_and_rust_agree_on_mutated_images() {
    // Differential test: payload bytes replaced, records relabelled, dropped, repeated or moved
    // (CRCs, END and digest recomputed, so the payload parsers and ordering rules see it), or
    // the file cut short. The Kaitai reader, the Rust slice parser and the Rust stream reader
    // must accept with the same model or reject with the same report.
    let Some(k) = kaitai() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut base = image(vec![full_process(PID, 1), small_process(PID + 1, PID)]);
    base.pipes.push(PipeData {
        pipe_id: 5,
        capacity: 64,
        data: Blob::from(b"abc".to_vec()),
    });
    base.notes.push(Note {
        key: bs("k"),
        value: bs("v"),
    });
    let written = write(&base);
    let raw = RawImage::split(&written);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut images = Vec::new();
    for (i, rec) in raw.records.iter().enumerate() {
        // The fixed fields and the first bytes of variable ones, where parsers decide things.
        let span = rec.payload.len().min(96);
        for _ in 0..16 {
            if span == 0 {
                break;
            }
            let mut r = raw.clone();
            let at = (next() % span as u64) as usize;
            let value = [0u8, 1, 2, 0x7f, 0xff, next() as u8][(next() % 6) as usize];
            r.records[i].payload[at] = value;
            images.push(r.to_bytes());
        }
    }
    // A u32 written over a payload (lengths, counts, enums, pids).
    for (i, rec) in raw.records.iter().enumerate() {
        for _ in 0..6 {
            if rec.payload.len() < 4 {
                break;
            }
            let mut r = raw.clone();
            let at = (next() % (rec.payload.len() as u64 - 3)) as usize;
            let value = [0u32, 1, 17, 4097, 65537, u32::MAX, next() as u32][(next() % 7) as usize];
            r.records[i].payload[at..at + 4].copy_from_slice(&value.to_le_bytes());
            images.push(r.to_bytes());
        }
    }
    // A record relabelled as another kind, known or not: every parser meets foreign payloads.
    let kinds = [
        0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x0008, 0x0009, 0x000a, 0x000b,
        0x000c, 0x000d, 0x000e, 0x0010, 0x00ff, 0x0011, 0x0012, 0x0013, 0x0014, 0x9000,
    ];
    for i in 0..raw.records.len() {
        for _ in 0..3 {
            let mut r = raw.clone();
            r.records[i].kind = kinds[(next() % kinds.len() as u64) as usize];
            r.records[i].flags = (next() % 2) as u16;
            r.records[i].verbatim = true;
            images.push(r.to_bytes());
        }
    }
    // Records removed, repeated or moved: the ordering rules.
    for _ in 0..40 {
        let mut r = raw.clone();
        let n = r.records.len() as u64;
        let i = (next() % n) as usize;
        let j = (next() % n) as usize;
        match next() % 3 {
            0 => {
                r.records.remove(i);
            }
            1 => {
                let rec = r.records[i].clone();
                r.records.insert(j, rec);
            }
            _ => r.records.swap(i, j),
        }
        images.push(r.to_bytes());
    }
    for _ in 0..40 {
        let cut = (next() % written.len() as u64) as usize;
        images.push(written[..cut].to_vec());
    }
    let paths: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = scratch.path().join(format!("mutant-{i}.crak"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let mut problems = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    let mut kinds = std::collections::BTreeMap::new();
    for ((path, bytes), got) in paths
        .iter()
        .zip(&images)
        .zip(k.dump_all(&paths, &["--pages"]))
    {
        let want = match crak_format::read::parse(bytes) {
            Ok(p) => {
                accepted += 1;
                Ok(serde_json::to_value(&p.image).unwrap())
            }
            Err(e) => {
                rejected += 1;
                *kinds.entry(e.kind_str()).or_insert(0) += 1;
                Err(json!({
                    "error": e.kind_str(),
                    "offset": e.offset(),
                    "record": e.record_name(),
                    "field": e.field(),
                }))
            }
        };
        // The stream reader too (§2: seekable file or stream, same result), page data aside.
        let stream = match crak_format::read::read_stream_metadata(&bytes[..]) {
            Ok(p) => Ok(serde_json::to_value(&p.image).unwrap()),
            Err(e) => Err(json!({
                "error": e.kind_str(),
                "offset": e.offset(),
                "record": e.record_name(),
                "field": e.field(),
            })),
        };
        let without_pages = |r: &Result<Value, Value>| {
            let mut r = r.clone();
            if let Ok(m) = &mut r {
                for p in m["processes"].as_array_mut().unwrap() {
                    for run in p["pages"].as_array_mut().unwrap() {
                        run["data"] = json!("");
                    }
                }
            }
            r
        };
        if without_pages(&want) != stream {
            problems.push(format!(
                "{}: slice parser {}, stream reader {}",
                path.display(),
                want.as_ref()
                    .err()
                    .map_or("accepts".into(), Value::to_string),
                stream
                    .as_ref()
                    .err()
                    .map_or("accepts".into(), Value::to_string),
            ));
        }
        let got = got.map_err(|e| {
            json!({
                "error": e["error"],
                "offset": e["offset"],
                "record": e["record"],
                "field": e["field"],
            })
        });
        if got != want {
            let show = |r: &Result<Value, Value>| match r {
                Ok(_) => "accepted".to_string(),
                Err(e) => e.to_string(),
            };
            problems.push(format!(
                "{}: rust {}, kaitai {}",
                path.display(),
                show(&want),
                show(&got)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} mutants differ:\n{}",
        problems.len(),
        images.len(),
        problems.join("\n")
    );
    // Both outcomes are exercised.
    eprintln!(
        "{} mutants: {accepted} accepted, {rejected} rejected {kinds:?}, both readers agree",
        images.len()
    );
    assert!(
        accepted > 10 && rejected > 10,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn kaitai_reads_captured_images_like_crak_dump() {
    let Some(k) = kaitai() else { return };
    let capture = crak_tests::bin("crak-capture");
    assert!(
        capture.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        capture.display()
    );
    let scratch = tempfile::tempdir().unwrap();
    // A small C program and an interpreter with many more mappings and pages. (The capture
    // engine does not take multi-threaded processes yet.)
    let programs: [&[&str]; 2] = [
        &["sleep", "1000"],
        &[
            "python3",
            "-c",
            "import json, zlib, time\n\
             data = [zlib.compress(bytes(range(256)) * i) for i in range(64)]\n\
             print('ready', flush=True); time.sleep(1000)",
        ],
    ];
    for (i, argv) in programs.iter().enumerate() {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the program to capture");
        if argv[0] == "python3" {
            use std::io::BufRead as _;
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready");
        } else {
            // Ready once it runs the program (not the test binary between fork and exec).
            let comm = format!("/proc/{}/comm", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_to_string(&comm)
                .ok()
                .as_deref()
                .map(str::trim)
                != Some(argv[0])
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{argv:?} did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let image = scratch.path().join(format!("captured-{i}.crak"));
        let out = Command::new(&capture)
            .arg(child.id().to_string())
            .arg("-o")
            .arg(&image)
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            out.status.success(),
            "crak-capture {argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = k
            .dump(&image, true)
            .unwrap_or_else(|e| panic!("ksy_dump.py rejects the capture of {argv:?}: {e}"));
        assert!(
            !got["processes"][0]["pages"].as_array().unwrap().is_empty(),
            "the capture of {argv:?} stored no pages"
        );
        assert_json_eq(
            &format!("kaitai capture of {argv:?} vs reference"),
            &reference_json(&image, true),
            &got,
        );
    }
}

/// Proptest strategies for structurally valid models: unique pids, every record naming an
/// existing process, page data of nr_pages × page_size bytes, each text within its bound.
mod gen {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn text(max: usize) -> impl Strategy<Value = ByteString> {
        prop_oneof![
            "[a-z/._-]{0,12}".prop_map(|s| ByteString::from(s.as_str())),
            vec(any::<u8>(), 0..max.min(24)).prop_map(ByteString),
        ]
    }

    fn blob(max: usize) -> impl Strategy<Value = Blob<'static>> {
        vec(any::<u8>(), 0..max).prop_map(Blob::from)
    }

    fn vma_kind() -> impl Strategy<Value = VmaKind> {
        (1u16..=10).prop_map(|v| VmaKind::from_u16(v).unwrap())
    }

    fn special_kind() -> impl Strategy<Value = VmaKind> {
        (5u16..=9).prop_map(|v| VmaKind::from_u16(v).unwrap())
    }

    fn fd_kind() -> impl Strategy<Value = FdKind> {
        (1u16..=5).prop_map(|v| FdKind::from_u16(v).unwrap())
    }

    fn header() -> impl Strategy<Value = Header> {
        (
            any::<i64>(),
            any::<u64>(),
            0u32..=65536,
            text(256),
            text(256),
            text(256),
            vec((special_kind(), any::<u64>(), any::<u64>()), 0..4),
        )
            .prop_map(|(t, xf, xs, k, h, v, sm)| Header {
                arch: 62,
                page_size: PAGE as u32,
                capture_time_ns: t,
                xsave_features: xf,
                xsave_size: xs,
                kernel_release: k,
                hostname: h,
                tool_version: v,
                special_mappings: sm
                    .into_iter()
                    .map(|(kind, start, end)| SpecialMapping { kind, start, end })
                    .collect(),
            })
    }

    fn process(pid: u32) -> impl Strategy<Value = Process<'static>> {
        let ids = (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        );
        let texts = (text(16), text(64), text(64), text(64), text(64), text(64));
        let extra_tids = vec(1u32..4_194_304, 0..3);
        let creds = proptest::option::of((
            any::<[u32; 8]>(),
            any::<[u64; 5]>(),
            vec(any::<u32>(), 0..4),
        ));
        let mm = proptest::option::of((any::<[u64; 11]>(), vec(any::<(u64, u64)>(), 0..5)));
        let rl = proptest::option::of(vec(any::<(u32, u64, u64)>(), 0..4));
        let sa = proptest::option::of(vec((1u32..=64, any::<[u64; 4]>()), 0..4));
        let threads = vec((any::<[u64; 27]>(), any::<[u64; 6]>()), 0..3);
        let sigq = vec((any::<u32>(), 0usize..3), 0..3);
        let vmas = vec(
            (
                vma_kind(),
                1u64..4,
                any::<[u32; 3]>(),
                any::<[u64; 4]>(),
                any::<i64>(),
                text(64),
            ),
            0..4,
        );
        let fds = vec(
            (
                fd_kind(),
                0u32..1_048_576,
                any::<[u32; 3]>(),
                any::<[u64; 5]>(),
                any::<i64>(),
                any::<bool>(),
                text(64),
                blob(40),
            ),
            0..3,
        );
        let pages = vec((1u64..3, any::<u8>()), 0..3);
        let zeros = vec(1u64..5, 0..3);
        (
            ids,
            texts,
            extra_tids,
            creds,
            mm,
            rl,
            sa,
            threads,
            (sigq, vmas, fds, pages, zeros),
        )
            .prop_map(
                move |(
                    ids,
                    t,
                    extra,
                    creds,
                    mm,
                    rl,
                    sa,
                    threads,
                    (sigq, vmas, fds, pages, zeros),
                )| {
                    let mut tids = vec![pid];
                    tids.extend(extra);
                    let mut p = Process::new(ProcessRecord {
                        pid,
                        ppid: ids.0,
                        pgid: ids.1,
                        sid: ids.2,
                        personality: ids.3,
                        umask: ids.4,
                        flags: 0,
                        comm: t.0,
                        exe: t.1,
                        cwd: t.2,
                        root: t.3,
                        cmdline: t.4,
                        environ: t.5,
                        tids: tids.clone(),
                    });
                    p.creds = creds.map(|(u, c, groups)| Creds {
                        pid,
                        uid: u[0],
                        euid: u[1],
                        suid: u[2],
                        fsuid: u[3],
                        gid: u[4],
                        egid: u[5],
                        sgid: u[6],
                        fsgid: u[7],
                        cap_inheritable: c[0],
                        cap_permitted: c[1],
                        cap_effective: c[2],
                        cap_bounding: c[3],
                        cap_ambient: c[4],
                        securebits: u[0] ^ u[1],
                        no_new_privs: u[2] & 1,
                        groups,
                    });
                    p.mm = mm.map(|(a, auxv)| Mm {
                        pid,
                        start_code: a[0],
                        end_code: a[1],
                        start_data: a[2],
                        end_data: a[3],
                        start_brk: a[4],
                        brk: a[5],
                        start_stack: a[6],
                        arg_start: a[7],
                        arg_end: a[8],
                        env_start: a[9],
                        env_end: a[10],
                        auxv,
                    });
                    p.rlimits = rl.map(|l| Rlimits {
                        pid,
                        limits: l
                            .into_iter()
                            .map(|(resource, cur, max)| Rlimit { resource, cur, max })
                            .collect(),
                    });
                    p.sigactions = sa.map(|a| SigActions {
                        pid,
                        actions: a
                            .into_iter()
                            .map(|(signo, v)| SigAction {
                                signo,
                                handler: v[0],
                                flags: v[1],
                                restorer: v[2],
                                mask: v[3],
                            })
                            .collect(),
                    });
                    for (i, (gpr, v)) in threads.into_iter().enumerate() {
                        let tid = tids.get(i).copied().unwrap_or(pid);
                        if p.threads.iter().any(|t: &Thread| t.tid == tid) {
                            continue;
                        }
                        p.threads.push(Thread {
                            pid,
                            tid,
                            gpr: Gpr::from_array(gpr),
                            blocked: v[0],
                            pending: v[1],
                            sas_sp: v[2],
                            sas_size: v[3],
                            sas_flags: v[4] as u32,
                            rseq_len: (v[4] >> 32) as u32,
                            rseq_addr: v[5],
                            rseq_sig: v[5] as u32,
                            clear_child_tid: v[0] ^ v[5],
                            ext: (v[2] % 2 == 0).then(|| ThreadExt {
                                robust_list: v[3],
                                robust_list_len: v[4] & 0xff,
                                name: ByteString(format!("t{tid}").into_bytes()),
                            }),
                        });
                        p.xsaves.push(Xsave {
                            pid,
                            tid,
                            xstate_bv: v[1],
                            area: Blob::from(vec![tid as u8; 64 + i]),
                        });
                    }
                    for (tid, infos) in sigq {
                        p.sigqueues.push(SigQueue {
                            pid,
                            tid,
                            siginfos: (0..infos)
                                .map(|j| siginfo(j as u32 + 1, tid as i32))
                                .collect(),
                        });
                    }
                    let mut addr = 0x10_0000u64;
                    for (kind, n, w, q, mtime, path) in vmas {
                        p.vmas.push(Vma {
                            pid,
                            kind,
                            start: addr,
                            end: addr + n * PAGE as u64,
                            prot: w[0],
                            flags: w[1],
                            madvise: w[2],
                            pgoff: q[0],
                            dev: q[1],
                            ino: q[2],
                            size: q[3],
                            mtime_ns: mtime,
                            path,
                        });
                        addr += (n + 1) * PAGE as u64;
                    }
                    for (kind, n, w, q, mtime, deleted, path, contents) in fds {
                        p.fds.push(Fd {
                            pid,
                            fd: n,
                            fd_flags: w[0],
                            kind,
                            open_flags: w[1],
                            pos: q[0],
                            dev: q[1],
                            ino: q[2],
                            rdev: q[3],
                            size: q[4],
                            mtime_ns: mtime,
                            mode: w[2],
                            deleted,
                            path,
                            contents: if deleted { contents } else { Blob::default() },
                            description: 0,
                        });
                    }
                    for (n, seed) in pages {
                        p.pages.push(PageRun {
                            pid,
                            addr,
                            nr_pages: n,
                            data: page_data(n as usize, seed),
                        });
                        addr += (n + 1) * PAGE as u64;
                    }
                    for n in zeros {
                        p.zero_runs.push(ZeroRun {
                            pid,
                            addr,
                            nr_pages: n,
                        });
                        addr += (n + 1) * PAGE as u64;
                    }
                    p
                },
            )
    }

    pub(super) fn image() -> impl Strategy<Value = Image<'static>> {
        let pids = proptest::sample::subsequence((1u32..40).collect::<Vec<_>>(), 1..4);
        let pipes = vec((any::<u64>(), 16u32..1024, any::<u8>()), 0..3);
        let notes = vec((text(256), text(64)), 0..3);
        (header(), pids, pipes, notes)
            .prop_flat_map(|(h, pids, pipes, notes)| {
                let procs: Vec<_> = pids.into_iter().map(|pid| process(pid * 97)).collect();
                (Just(h), procs, Just(pipes), Just(notes))
            })
            .prop_map(|(header, processes, pipes, notes)| Image {
                version: Version { major: 1, minor: 0 },
                flags: 0,
                header,
                processes,
                pipes: pipes
                    .into_iter()
                    .map(|(pipe_id, capacity, fill)| PipeData {
                        pipe_id,
                        capacity,
                        data: Blob::from(vec![fill; (capacity / 3) as usize]),
                    })
                    .collect(),
                notes: notes
                    .into_iter()
                    .map(|(key, value)| Note { key, value })
                    .collect(),
                shm_segments: Vec::new(),
                sem_sets: Vec::new(),
                msg_queues: Vec::new(),
                scm: Vec::new(),
                auth: None,
                unknown: Vec::new(),
                extras: Vec::new(),
            })
    }
}
