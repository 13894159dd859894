//! File paths, fds and the working directory.

use super::{refused, EditError};
use crate::bytes::{Blob, ByteString};
use crate::image::Image;
use crate::record::fd::FdKind;
use crate::record::process::MAX_PATH;
use crate::record::vma::VmaKind;

/// What a restorer compares of a file (spec §3.10, §3.13), as `stat(2)` gives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStat {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_rdev`.
    pub rdev: u64,
    /// `st_size`.
    pub size: u64,
    /// Modification time in nanoseconds.
    pub mtime_ns: i64,
    /// `st_mode`.
    pub mode: u32,
}

#[cfg(unix)]
impl From<&std::fs::Metadata> for FileStat {
    /// The fields as a capture records them (`mtime_ns` saturates past the year 2262).
    fn from(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            dev: md.dev(),
            ino: md.ino(),
            rdev: md.rdev(),
            size: md.size(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            mode: md.mode(),
        }
    }
}

/// Reads a file's [`FileStat`] by path, or says why it cannot.
pub type StatFn<'a> = &'a mut dyn FnMut(&[u8]) -> Result<FileStat, String>;

/// `path` with the prefix `old` replaced by `new`, when `old` is `path` itself or a leading
/// run of its components (`/a/b` is a prefix of `/a/b/c`, not of `/a/bc`).
fn remap(path: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(old)?;
    if !(rest.is_empty() || rest.starts_with(b"/") || old.ends_with(b"/")) {
        return None;
    }
    let mut out = new.to_vec();
    out.extend_from_slice(rest);
    Some(out)
}

/// The path names a UNIX_SOCKET fd holds (its own, its peer's, its datagrams' senders),
/// remapped (spec §3.13, 1.2); the number changed. A name that would not fit `sun_path` is
/// refused.
fn map_socket_names(
    f: &mut crate::record::fd::Fd<'_>,
    old: &[u8],
    new: &[u8],
) -> Result<usize, EditError> {
    use crate::record::fd::{FdState, UNIX_NAME_MAX};
    let Ok(Some(FdState::UnixSocket(mut s))) = FdState::decode(f.kind, f.contents.as_bytes())
    else {
        return Ok(0);
    };
    let mut n = 0usize;
    let names = std::iter::once(&mut s.name)
        .chain(std::iter::once(&mut s.peer_name))
        .chain(s.queue.iter_mut().map(|m| &mut m.sender));
    for name in names {
        // Abstract names (a leading NUL) are not paths.
        if name.first().is_some_and(|&b| b == 0) {
            continue;
        }
        if let Some(np) = remap(name, old, new) {
            if np.len() >= UNIX_NAME_MAX {
                return refused(format!(
                    "the Unix socket name {} would be longer than {} bytes",
                    String::from_utf8_lossy(&np),
                    UNIX_NAME_MAX - 1
                ));
            }
            *name = np;
            n += 1;
        }
    }
    if n > 0 {
        f.contents = Blob::from(FdState::UnixSocket(s).encode());
    }
    Ok(n)
}

fn checked_path(p: Vec<u8>) -> Result<ByteString, EditError> {
    if p.len() > MAX_PATH as usize {
        return refused(format!(
            "the path {} would be longer than {MAX_PATH} bytes",
            String::from_utf8_lossy(&p)
        ));
    }
    Ok(ByteString(p))
}

/// Replaces the path prefix `old` by `new` (whole components) in every file mapping, every
/// fd (and file in flight) of a file, FIFO or device, every Unix socket's path names, and every process's `exe`
/// and `cwd`. With `stat`, the device,
/// inode, size and modification time of each remapped file mapping and fd (not of deleted
/// files, whose contents are in the image) are read again from the new path, so that a copied
/// file is accepted by the restorer's same-file check; a `stat` error refuses the edit.
/// Returns the number of paths changed; refused when none matched.
pub fn map_path(
    image: &mut Image<'_>,
    old: &[u8],
    new: &[u8],
    mut stat: Option<StatFn<'_>>,
) -> Result<usize, EditError> {
    if old.is_empty() || new.is_empty() {
        return refused("--map-path needs a non-empty OLD and NEW");
    }
    let mut work = image.clone();
    let mut n = 0usize;
    let mut fresh = |path: &[u8]| -> Result<Option<FileStat>, EditError> {
        match stat.as_mut() {
            None => Ok(None),
            Some(f) => f(path)
                .map(Some)
                .map_err(|e| EditError::Refused(format!("{}: {e}", String::from_utf8_lossy(path)))),
        }
    };
    for p in &mut work.processes {
        for field in [&mut p.process.exe, &mut p.process.cwd] {
            if let Some(np) = remap(field.as_bytes(), old, new) {
                *field = checked_path(np)?;
                n += 1;
            }
        }
        for v in &mut p.vmas {
            if v.kind != VmaKind::File {
                continue;
            }
            if let Some(np) = remap(v.path.as_bytes(), old, new) {
                v.path = checked_path(np)?;
                if let Some(st) = fresh(v.path.as_bytes())? {
                    v.dev = st.dev;
                    v.ino = st.ino;
                    v.size = st.size;
                    v.mtime_ns = st.mtime_ns;
                }
                n += 1;
            }
        }
    }
    // Every fd, and (1.3) every file in flight in a Unix socket's queue.
    let all_fds = work
        .processes
        .iter_mut()
        .flat_map(|p| p.fds.iter_mut())
        .chain(work.scm.iter_mut().flat_map(|s| s.files.iter_mut()));
    for f in all_fds {
        if f.kind == FdKind::UnixSocket {
            n += map_socket_names(f, old, new)?;
            continue;
        }
        if f.kind == FdKind::Pipe {
            continue;
        }
        if let Some(np) = remap(f.path.as_bytes(), old, new) {
            f.path = checked_path(np)?;
            if !f.deleted && f.kind != FdKind::Tty {
                if let Some(st) = fresh(f.path.as_bytes())? {
                    f.dev = st.dev;
                    f.ino = st.ino;
                    f.rdev = st.rdev;
                    f.size = st.size;
                    f.mtime_ns = st.mtime_ns;
                    f.mode = st.mode;
                }
            }
            n += 1;
        }
    }
    if n == 0 {
        return refused(format!(
            "no path in the image starts with {}",
            String::from_utf8_lossy(old)
        ));
    }
    *image = work;
    Ok(n)
}

/// Sets the working directory of process `pid` (or the first process) to the absolute path
/// `dir`.
pub fn set_cwd(image: &mut Image<'_>, pid: Option<u32>, dir: &[u8]) -> Result<(), EditError> {
    if !dir.starts_with(b"/") {
        return refused(format!(
            "the working directory {} is not an absolute path",
            String::from_utf8_lossy(dir)
        ));
    }
    let path = checked_path(dir.to_vec())?;
    super::select(image, pid)?.process.cwd = path;
    Ok(())
}

/// Turns fd `fd` of process `pid` (or the first process) into `/dev/null`, a character device
/// described by `null` (the restoring host's `stat("/dev/null")`), keeping its fd flags and
/// access mode. When it was the last end of a pipe in the image, the pipe's PIPE_DATA goes too.
pub fn drop_fd(
    image: &mut Image<'_>,
    pid: Option<u32>,
    fd: u32,
    null: FileStat,
) -> Result<(), EditError> {
    const O_ACCMODE: u32 = 0o3;
    let p = super::select(image, pid)?;
    let pid = p.pid();
    let f = p
        .fds
        .iter_mut()
        .find(|f| f.fd == fd)
        .ok_or_else(|| EditError::Refused(format!("process {pid} has no fd {fd}")))?;
    let pipe = matches!(f.kind, FdKind::Pipe | FdKind::Fifo).then_some(f.ino);
    f.kind = FdKind::Chr;
    f.open_flags &= O_ACCMODE;
    f.pos = 0;
    f.dev = null.dev;
    f.ino = null.ino;
    f.rdev = null.rdev;
    f.size = 0;
    f.mtime_ns = null.mtime_ns;
    f.mode = null.mode;
    f.deleted = false;
    f.path = ByteString::from("/dev/null");
    f.contents = Blob::default();
    if let Some(id) = pipe {
        let used = image
            .processes
            .iter()
            .flat_map(|p| &p.fds)
            .chain(image.scm.iter().flat_map(|s| &s.files))
            .any(|f| matches!(f.kind, FdKind::Pipe | FdKind::Fifo) && f.ino == id);
        if !used {
            image.pipes.retain(|d| d.pipe_id != id);
        }
    }
    Ok(())
}
