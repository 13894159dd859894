//! One module per record kind of `spec/crak-format.md` §3.

pub mod auth;
pub mod creds;
pub mod end;
pub mod fd;
pub mod header;
pub mod ipc;
pub mod locks;
pub mod mm;
pub mod msg;
pub mod note;
pub mod pages;
pub mod pipe_data;
pub mod process;
pub mod rlimits;
pub mod scm;
pub mod sem;
pub mod shm;
pub mod sigactions;
pub mod sigqueue;
pub mod thread;
pub mod timers;
pub mod vma;
pub(crate) mod wire;
pub mod xsave;
pub mod zero_pages;

use crate::bytes::Blob;
use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// Record kinds (`spec/crak-format.md` §3).
#[allow(missing_docs)]
pub mod kind {
    pub const HEADER: u16 = 0x0001;
    pub const PROCESS: u16 = 0x0002;
    pub const CREDS: u16 = 0x0003;
    pub const MM: u16 = 0x0004;
    pub const RLIMITS: u16 = 0x0005;
    pub const SIGACTIONS: u16 = 0x0006;
    pub const THREAD: u16 = 0x0007;
    pub const XSAVE: u16 = 0x0008;
    pub const SIGQUEUE: u16 = 0x0009;
    pub const VMA: u16 = 0x000A;
    pub const PAGES: u16 = 0x000B;
    pub const ZERO_PAGES: u16 = 0x000C;
    pub const FD: u16 = 0x000D;
    pub const PIPE_DATA: u16 = 0x000E;
    pub const NOTE: u16 = 0x0010;
    /// AUTH (§3.17), not critical: a reader that does not verify signatures may skip it;
    /// this crate's readers decode it into [`crate::Image::auth`], and
    /// [`crate::auth::verify`] checks it.
    pub const AUTH: u16 = 0x0011;
    /// TIMERS (§3.21, 1.2).
    pub const TIMERS: u16 = 0x0015;
    /// LOCKS (§3.22, 1.2).
    pub const LOCKS: u16 = 0x0016;
    /// SCM (§3.23, 1.3): the files and credentials in flight with a message queued on a Unix
    /// socket.
    pub const SCM: u16 = 0x0017;
    /// SHM (§3.18, format 1.2): a System V shared memory segment.
    pub const SHM: u16 = 0x0012;
    /// SEM (§3.19, format 1.2): a System V semaphore set.
    pub const SEM: u16 = 0x0013;
    /// MSG (§3.20, format 1.2): a System V message queue.
    pub const MSG: u16 = 0x0014;
    pub const END: u16 = 0x00FF;

    /// The record's name as the spec spells it, or `None` for an unknown kind.
    pub fn name(kind: u16) -> Option<&'static str> {
        Some(match kind {
            HEADER => "HEADER",
            PROCESS => "PROCESS",
            CREDS => "CREDS",
            MM => "MM",
            RLIMITS => "RLIMITS",
            SIGACTIONS => "SIGACTIONS",
            THREAD => "THREAD",
            XSAVE => "XSAVE",
            SIGQUEUE => "SIGQUEUE",
            VMA => "VMA",
            PAGES => "PAGES",
            ZERO_PAGES => "ZERO_PAGES",
            FD => "FD",
            PIPE_DATA => "PIPE_DATA",
            NOTE => "NOTE",
            AUTH => "AUTH",
            TIMERS => "TIMERS",
            LOCKS => "LOCKS",
            SCM => "SCM",
            SHM => "SHM",
            SEM => "SEM",
            MSG => "MSG",
            END => "END",
            _ => return None,
        })
    }

    /// Whether this version defines `kind`.
    pub fn is_known(kind: u16) -> bool {
        name(kind).is_some()
    }

    /// The record flags a writer uses for `kind`: [`crate::FLAG_CRITICAL`] for every kind of
    /// this version except NOTE and AUTH (§2.2, §3.17), none for a kind this version does not
    /// define.
    pub fn default_flags(kind: u16) -> u16 {
        if kind == NOTE || kind == AUTH || !is_known(kind) {
            0
        } else {
            crate::FLAG_CRITICAL
        }
    }

    /// Whether a stream reader bounds this kind's payload by
    /// [`crate::MAX_METADATA_PAYLOAD`] (§2.2): every kind except PAGES, FD, PIPE_DATA, SHM,
    /// MSG and (1.3) SCM.
    pub fn is_metadata(kind: u16) -> bool {
        !matches!(kind, PAGES | FD | PIPE_DATA | SHM | MSG | SCM)
    }
}

/// One decoded record of any kind (§3), as the record-level reader yields it.
///
/// Borrowed data (page data, XSAVE areas, file contents) points into the parsed bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Record<'data> {
    Header(header::Header),
    Process(process::ProcessRecord),
    Creds(creds::Creds),
    Mm(mm::Mm),
    Rlimits(rlimits::Rlimits),
    Sigactions(sigactions::SigActions),
    Thread(thread::Thread),
    Xsave(xsave::Xsave<'data>),
    Sigqueue(sigqueue::SigQueue<'data>),
    Vma(vma::Vma),
    Pages(pages::PageRun<'data>),
    ZeroPages(zero_pages::ZeroRun),
    Fd(fd::Fd<'data>),
    PipeData(pipe_data::PipeData<'data>),
    Note(note::Note),
    Auth(auth::Auth),
    Timers(timers::Timers),
    Locks(locks::Locks),
    Scm(scm::Scm<'data>),
    Shm(shm::Shm<'data>),
    Sem(sem::SemSet),
    Msg(msg::MsgQueue<'data>),
    End(end::End),
    /// A record of a kind this version does not define, kept as raw payload.
    Unknown {
        /// The record kind.
        kind: u16,
        /// The payload bytes.
        payload: Blob<'data>,
    },
}

impl<'data> Record<'data> {
    /// Decodes the payload of a record of `kind` with that kind's parser. `page_size` (from
    /// HEADER) is needed to check a PAGES record's length (§3.11); without it the page data is
    /// whatever follows `data_offset`. A kind this version does not define decodes as
    /// [`Record::Unknown`]; whether that is acceptable depends on the CRITICAL bit (§2.2) and is
    /// the caller's decision.
    pub fn decode(
        kind: u16,
        payload: &'data [u8],
        page_size: Option<u32>,
    ) -> Result<Record<'data>, FieldError> {
        Ok(match kind {
            kind::HEADER => Record::Header(header::parse(payload)?),
            kind::PROCESS => Record::Process(process::parse(payload)?),
            kind::CREDS => Record::Creds(creds::parse(payload)?),
            kind::MM => Record::Mm(mm::parse(payload)?),
            kind::RLIMITS => Record::Rlimits(rlimits::parse(payload)?),
            kind::SIGACTIONS => Record::Sigactions(sigactions::parse(payload)?),
            kind::THREAD => Record::Thread(thread::parse(payload)?),
            kind::XSAVE => Record::Xsave(xsave::parse(payload)?),
            kind::SIGQUEUE => Record::Sigqueue(sigqueue::parse(payload)?),
            kind::VMA => Record::Vma(vma::parse(payload)?),
            kind::PAGES => Record::Pages(pages::parse(payload, page_size)?),
            kind::ZERO_PAGES => Record::ZeroPages(zero_pages::parse(payload)?),
            kind::FD => Record::Fd(fd::parse(payload)?),
            kind::PIPE_DATA => Record::PipeData(pipe_data::parse(payload)?),
            kind::NOTE => Record::Note(note::parse(payload)?),
            kind::AUTH => Record::Auth(auth::parse(payload)?),
            kind::TIMERS => Record::Timers(timers::parse(payload)?),
            kind::LOCKS => Record::Locks(locks::parse(payload)?),
            kind::SCM => Record::Scm(scm::parse(payload)?),
            kind::SHM => Record::Shm(shm::parse(payload)?),
            kind::SEM => Record::Sem(sem::parse(payload)?),
            kind::MSG => Record::Msg(msg::parse(payload)?),
            kind::END => Record::End(end::parse(payload)?),
            other => Record::Unknown {
                kind: other,
                payload: payload.into(),
            },
        })
    }

    /// Appends this record's payload. A PAGES record is written with `data_offset` 28 (no
    /// padding); [`crate::write::Writer`] chooses the padding that page-aligns the data.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Header(r) => header::write(r, out),
            Record::Process(r) => process::write(r, out),
            Record::Creds(r) => creds::write(r, out),
            Record::Mm(r) => mm::write(r, out),
            Record::Rlimits(r) => rlimits::write(r, out),
            Record::Sigactions(r) => sigactions::write(r, out),
            Record::Thread(r) => thread::write(r, out),
            Record::Xsave(r) => xsave::write(r, out),
            Record::Sigqueue(r) => sigqueue::write(r, out),
            Record::Vma(r) => vma::write(r, out),
            Record::Pages(r) => pages::write(r, pages::PAGES_HEADER_SIZE, out),
            Record::ZeroPages(r) => zero_pages::write(r, out),
            Record::Fd(r) => fd::write(r, out),
            Record::PipeData(r) => pipe_data::write(r, out),
            Record::Note(r) => note::write(r, out),
            Record::Auth(r) => auth::write(r, out),
            Record::Timers(r) => timers::write(r, out),
            Record::Locks(r) => locks::write(r, out),
            Record::Scm(r) => scm::write(r, out),
            Record::Shm(r) => shm::write(r, out),
            Record::Sem(r) => sem::write(r, out),
            Record::Msg(r) => msg::write(r, out),
            Record::End(r) => end::write(r, out),
            Record::Unknown { payload, .. } => out.extend_from_slice(payload.as_bytes()),
        }
    }

    /// The record kind (§3).
    pub fn kind(&self) -> u16 {
        match self {
            Record::Header(_) => kind::HEADER,
            Record::Process(_) => kind::PROCESS,
            Record::Creds(_) => kind::CREDS,
            Record::Mm(_) => kind::MM,
            Record::Rlimits(_) => kind::RLIMITS,
            Record::Sigactions(_) => kind::SIGACTIONS,
            Record::Thread(_) => kind::THREAD,
            Record::Xsave(_) => kind::XSAVE,
            Record::Sigqueue(_) => kind::SIGQUEUE,
            Record::Vma(_) => kind::VMA,
            Record::Pages(_) => kind::PAGES,
            Record::ZeroPages(_) => kind::ZERO_PAGES,
            Record::Fd(_) => kind::FD,
            Record::PipeData(_) => kind::PIPE_DATA,
            Record::Note(_) => kind::NOTE,
            Record::Auth(_) => kind::AUTH,
            Record::Timers(_) => kind::TIMERS,
            Record::Locks(_) => kind::LOCKS,
            Record::Scm(_) => kind::SCM,
            Record::Shm(_) => kind::SHM,
            Record::Sem(_) => kind::SEM,
            Record::Msg(_) => kind::MSG,
            Record::End(_) => kind::END,
            Record::Unknown { kind, .. } => *kind,
        }
    }

    /// The record's name as the spec spells it (`PAGES`), or `None` for an unknown kind.
    pub fn name(&self) -> Option<&'static str> {
        kind::name(self.kind())
    }

    /// The record flags a writer uses for this record: CRITICAL for every kind of this version
    /// except NOTE and AUTH (§2.2); none for an unknown kind.
    pub fn default_flags(&self) -> u16 {
        kind::default_flags(self.kind())
    }

    /// The pid this record names, for the per-process kinds.
    pub fn pid(&self) -> Option<u32> {
        Some(match self {
            Record::Process(r) => r.pid,
            Record::Creds(r) => r.pid,
            Record::Mm(r) => r.pid,
            Record::Rlimits(r) => r.pid,
            Record::Sigactions(r) => r.pid,
            Record::Thread(r) => r.pid,
            Record::Xsave(r) => r.pid,
            Record::Sigqueue(r) => r.pid,
            Record::Vma(r) => r.pid,
            Record::Pages(r) => r.pid,
            Record::ZeroPages(r) => r.pid,
            Record::Fd(r) => r.pid,
            Record::Timers(r) => r.pid,
            Record::Locks(r) => r.pid,
            _ => return None,
        })
    }

    /// A copy that does not borrow the parsed bytes.
    pub fn into_owned(self) -> Record<'static> {
        match self {
            Record::Header(r) => Record::Header(r),
            Record::Process(r) => Record::Process(r),
            Record::Creds(r) => Record::Creds(r),
            Record::Mm(r) => Record::Mm(r),
            Record::Rlimits(r) => Record::Rlimits(r),
            Record::Sigactions(r) => Record::Sigactions(r),
            Record::Thread(r) => Record::Thread(r),
            Record::Xsave(r) => Record::Xsave(r.into_owned()),
            Record::Sigqueue(r) => Record::Sigqueue(r.into_owned()),
            Record::Vma(r) => Record::Vma(r),
            Record::Pages(r) => Record::Pages(r.into_owned()),
            Record::ZeroPages(r) => Record::ZeroPages(r),
            Record::Fd(r) => Record::Fd(r.into_owned()),
            Record::PipeData(r) => Record::PipeData(r.into_owned()),
            Record::Note(r) => Record::Note(r),
            Record::Auth(r) => Record::Auth(r),
            Record::Timers(r) => Record::Timers(r),
            Record::Locks(r) => Record::Locks(r),
            Record::Scm(r) => Record::Scm(r.into_owned()),
            Record::Shm(r) => Record::Shm(r.into_owned()),
            Record::Sem(r) => Record::Sem(r),
            Record::Msg(r) => Record::Msg(r.into_owned()),
            Record::End(r) => Record::End(r),
            Record::Unknown { kind, payload } => Record::Unknown {
                kind,
                payload: payload.into_owned(),
            },
        }
    }
}
