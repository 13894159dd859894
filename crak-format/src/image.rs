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
}
