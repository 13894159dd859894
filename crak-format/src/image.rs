//! The assembled image: every record grouped by process (spec §2.3).

use crate::record::{
    creds::Creds, fd::Fd, header::Header, mm::Mm, note::Note, pages::PageRun, pages::ZeroRun,
    pipe_data::PipeData, process::ProcessRecord, rlimits::Rlimits, sigactions::SigActions,
    sigqueue::SigQueue, thread::Thread, vma::Vma, xsave::Xsave,
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
pub const CURRENT_VERSION: Version = Version { major: 1, minor: 0 };

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
        }
    }
}
