//! Edit operations on an owned [`Image`]: memory pokes, registers, file paths, the pid, fds,
//! the working directory and environment variables.
//!
//! Every operation checks its request against the image and either applies all of it or
//! returns an [`EditError`] and leaves the image as it was. None of them validates the whole
//! image afterwards; `crak-dump edit` runs [`crate::validate::validate`] on the result before
//! writing it. Page data that an edit does not touch stays borrowed from the parsed bytes.

mod env;
mod files;
mod memory;
mod task;

pub use env::set_env;
pub use files::{drop_fd, map_path, set_cwd, FileStat, StatFn};
pub use memory::{poke, read_memory};
pub use task::{set_pid, set_reg};

use crate::image::{Image, Process};

/// Why an edit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The image has no process with this pid.
    #[error("the image has no process {0}")]
    NoProcess(u32),
    /// The image has no process at all.
    #[error("the image has no process")]
    Empty,
    /// No thread with this tid.
    #[error("the image has no thread {0}")]
    NoThread(u32),
    /// The register name is not one of [`crate::record::thread::Gpr::NAMES`].
    #[error("no register {0:?}; registers are {names}", names = crate::record::thread::Gpr::NAMES.join(", "))]
    NoRegister(String),
    /// An address lies in no VMA of the process.
    #[error("address {addr:#x} is in no mapping of process {pid}")]
    Unmapped {
        /// Process.
        pid: u32,
        /// The first unmapped address.
        addr: u64,
    },
    /// The request cannot be carried out safely; the reason says why.
    #[error("{0}")]
    Refused(String),
}

fn refused<T>(msg: impl Into<String>) -> Result<T, EditError> {
    Err(EditError::Refused(msg.into()))
}

/// The process with `pid`, or the first process when `pid` is `None`.
pub fn select<'i, 'd>(
    image: &'i mut Image<'d>,
    pid: Option<u32>,
) -> Result<&'i mut Process<'d>, EditError> {
    match pid {
        Some(pid) => image.process_mut(pid).ok_or(EditError::NoProcess(pid)),
        None => image.processes.first_mut().ok_or(EditError::Empty),
    }
}

#[cfg(test)]
pub(crate) mod tests;
