//! The assembled image: every record grouped by process (spec §2.3).

use crate::bytes::Blob;
use crate::record::{
    creds::Creds, fd::Fd, header::Header, locks::Locks, mm::Mm, msg::MsgQueue, note::Note,
    pages::PageRun, pages::ZeroRun, pipe_data::PipeData, process::ProcessRecord, rlimits::Rlimits,
    scm::Scm, sem::SemSet, shm::Shm, sigactions::SigActions, sigqueue::SigQueue, thread::Thread,
    timers::Timers, vma::Vma, xsave::Xsave,
};
use serde::{Deserialize, Serialize};

/// Format version of the file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

/// The version this crate writes.
pub const CURRENT_VERSION: Version = Version { major: 1, minor: 3 };

/// A whole checkpoint. Page data borrows from the parsed bytes (`'data`) or is owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image<'data> {
    /// File header version.
    pub version: Version,
    /// File header flags.
    pub flags: u32,
    /// HEADER record.
    pub header: Header,
    /// Processes in file order.
    pub processes: Vec<Process<'data>>,
    /// PIPE_DATA records.
    pub pipes: Vec<PipeData<'data>>,
    /// NOTE records.
    pub notes: Vec<Note>,
    /// SCM records (§3.23, format 1.3): files and credentials in flight with messages queued
    /// on Unix sockets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scm: Vec<Scm<'data>>,
    /// SHM records (§3.18, format 1.2): System V shared memory segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shm_segments: Vec<Shm<'data>>,
    /// SEM records (§3.19, format 1.2): System V semaphore sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sem_sets: Vec<SemSet>,
    /// MSG records (§3.20, format 1.2): System V message queues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msg_queues: Vec<MsgQueue<'data>>,
    /// The AUTH record (§3.17), if the image is signed. Written last before END.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::record::auth::Auth>,
    /// Records of kinds this version does not define (not critical, so skipped by readers,
    /// §2.2), kept with their place so that the image is written back as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<UnknownRecord<'data>>,
    /// Known records whose flags differ from the ones a writer uses or whose payload holds
    /// bytes past the fields this version defines (§5), so that they are written back as they
    /// were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extras: Vec<RecordExtra<'data>>,
}

/// A record of a kind this version does not define, CRITICAL clear (§2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownRecord<'data> {
    /// How many known records (HEADER included, END not) precede it in the file: the writer
    /// writes it once it has written that many.
    pub after: u64,
    /// Record kind.
    pub kind: u16,
    /// Record flags.
    pub flags: u16,
    /// The payload as stored.
    pub payload: Blob<'data>,
}

/// The flags and trailing payload bytes of one known record, when they are not what a
/// writer of this version makes of the model (§2.2, §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordExtra<'data> {
    /// Record kind.
    pub kind: u16,
    /// The pid of a per-process record, `None` for HEADER, PIPE_DATA, NOTE, AUTH, SHM, SEM, MSG,
    /// SCM and END.
    pub pid: Option<u32>,
    /// Position in the list the record is in (as [`crate::read::RecordSpan::index`]): the
    /// process's `threads`, `vmas`, ... or the image's `pipes`, `notes`; 0 for a record that
    /// appears once.
    pub index: usize,
    /// Record flags as stored.
    pub flags: u16,
    /// Payload bytes past the fields this version defines.
    pub extra: Blob<'data>,
}

impl UnknownRecord<'_> {
    /// A copy that does not borrow the parsed bytes.
    pub fn into_owned(self) -> UnknownRecord<'static> {
        UnknownRecord {
            after: self.after,
            kind: self.kind,
            flags: self.flags,
            payload: self.payload.into_owned(),
        }
    }
}

impl RecordExtra<'_> {
    /// A copy that does not borrow the parsed bytes.
    pub fn into_owned(self) -> RecordExtra<'static> {
        RecordExtra {
            kind: self.kind,
            pid: self.pid,
            index: self.index,
            flags: self.flags,
            extra: self.extra.into_owned(),
        }
    }
}

impl<'data> Image<'data> {
    /// An image of version [`CURRENT_VERSION`] with no flags, `header` and nothing else.
    pub fn new(header: Header) -> Self {
        Image {
            version: CURRENT_VERSION,
            flags: 0,
            header,
            processes: Vec::new(),
            pipes: Vec::new(),
            notes: Vec::new(),
            scm: Vec::new(),
            shm_segments: Vec::new(),
            sem_sets: Vec::new(),
            msg_queues: Vec::new(),
            auth: None,
            unknown: Vec::new(),
            extras: Vec::new(),
        }
    }

    /// The process with `pid`.
    pub fn process(&self, pid: u32) -> Option<&Process<'data>> {
        self.processes.iter().find(|p| p.pid() == pid)
    }

    /// The process with `pid`, mutably.
    pub fn process_mut(&mut self, pid: u32) -> Option<&mut Process<'data>> {
        self.processes.iter_mut().find(|p| p.pid() == pid)
    }

    /// A copy that does not borrow the parsed bytes.
    pub fn into_owned(self) -> Image<'static> {
        Image {
            version: self.version,
            flags: self.flags,
            header: self.header,
            processes: self
                .processes
                .into_iter()
                .map(Process::into_owned)
                .collect(),
            pipes: self.pipes.into_iter().map(|p| p.into_owned()).collect(),
            notes: self.notes,
            scm: self.scm.into_iter().map(|s| s.into_owned()).collect(),
            shm_segments: self
                .shm_segments
                .into_iter()
                .map(|s| s.into_owned())
                .collect(),
            sem_sets: self.sem_sets,
            msg_queues: self
                .msg_queues
                .into_iter()
                .map(|q| q.into_owned())
                .collect(),
            auth: self.auth,
            unknown: self.unknown.into_iter().map(|u| u.into_owned()).collect(),
            extras: self.extras.into_iter().map(|x| x.into_owned()).collect(),
        }
    }

    /// Stored pages over all processes.
    pub fn page_count(&self) -> u64 {
        self.processes
            .iter()
            .flat_map(|p| &p.pages)
            .fold(0u64, |n, r| n.saturating_add(r.nr_pages))
    }
}

/// One process and every record that names its pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process<'data> {
    /// PROCESS record.
    pub process: ProcessRecord,
    /// CREDS record, if present.
    pub creds: Option<Creds>,
    /// MM record, if present.
    pub mm: Option<Mm>,
    /// RLIMITS record, if present.
    pub rlimits: Option<Rlimits>,
    /// SIGACTIONS record, if present.
    pub sigactions: Option<SigActions>,
    /// THREAD records.
    pub threads: Vec<Thread>,
    /// XSAVE records.
    pub xsaves: Vec<Xsave<'data>>,
    /// SIGQUEUE records.
    pub sigqueues: Vec<SigQueue<'data>>,
    /// FD records.
    pub fds: Vec<Fd<'data>>,
    /// VMA records, in address order.
    pub vmas: Vec<Vma>,
    /// PAGES records.
    pub pages: Vec<PageRun<'data>>,
    /// ZERO_PAGES records.
    pub zero_runs: Vec<ZeroRun>,
    /// TIMERS record (1.2), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<Timers>,
    /// LOCKS record (1.2), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<Locks>,
}

impl<'data> Process<'data> {
    /// A process with only its PROCESS record.
    pub fn new(process: ProcessRecord) -> Self {
        Process {
            process,
            creds: None,
            mm: None,
            rlimits: None,
            sigactions: None,
            threads: Vec::new(),
            xsaves: Vec::new(),
            sigqueues: Vec::new(),
            fds: Vec::new(),
            vmas: Vec::new(),
            pages: Vec::new(),
            zero_runs: Vec::new(),
            timers: None,
            locks: None,
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// A copy that does not borrow the parsed bytes.
    pub fn into_owned(self) -> Process<'static> {
        Process {
            process: self.process,
            creds: self.creds,
            mm: self.mm,
            rlimits: self.rlimits,
            sigactions: self.sigactions,
            threads: self.threads,
            xsaves: self.xsaves.into_iter().map(|x| x.into_owned()).collect(),
            sigqueues: self.sigqueues.into_iter().map(|q| q.into_owned()).collect(),
            fds: self.fds.into_iter().map(|f| f.into_owned()).collect(),
            vmas: self.vmas,
            pages: self.pages.into_iter().map(|r| r.into_owned()).collect(),
            zero_runs: self.zero_runs,
            timers: self.timers,
            locks: self.locks,
        }
    }
}
