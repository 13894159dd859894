//! Where the image goes: a file made durable before anything irreversible happens (temporary
//! file in the same directory, `fsync`, `rename`, `fsync` of the directory), or standard output.

use super::Error;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A temporary file next to its final path; removed when dropped unless persisted.
#[derive(Debug)]
pub struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

fn io_err(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn dir_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl TempFile {
    /// Creates `.<name>.<pid>.crak-tmp` in the directory of `dest` (exclusively, mode 0600).
    pub fn create(dest: &Path) -> Result<TempFile, Error> {
        let name = dest
            .file_name()
            .ok_or_else(|| Error::Other(format!("{}: not a file name", dest.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.crak-tmp", std::process::id()));
        let tmp = dir_of(dest).join(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        Ok(TempFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// The open file.
    pub fn file(&mut self) -> Result<&mut File, Error> {
        self.file
            .as_mut()
            .ok_or_else(|| Error::Other("temporary image file already closed".into()))
    }

    /// Flushes the data to disk (`fsync`).
    pub fn sync(&mut self) -> Result<(), Error> {
        let tmp = self.tmp.display().to_string();
        self.file()?
            .sync_all()
            .map_err(io_err(format!("fsync of {tmp}")))
    }

    /// Renames the file to its destination and syncs the directory; the image is durable after
    /// this returns.
    pub fn persist(mut self) -> Result<PathBuf, Error> {
        self.file = None;
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err(format!(
            "renaming {} to {}",
            self.tmp.display(),
            self.dest.display()
        )))?;
        let dest = std::mem::take(&mut self.dest);
        self.tmp = PathBuf::new();
        sync_dir(&dir_of(&dest))?;
        Ok(dest)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `fsync` of a directory, so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync of directory {}", dir.display())))
}

/// Removes a persisted image again (a capture that failed after the rename) and syncs its
/// directory.
pub fn unpublish(path: &Path) {
    if std::fs::remove_file(path).is_ok() {
        let _ = sync_dir(&dir_of(path));
    }
}

/// Counts the bytes written through it.
pub struct Counting<W: Write> {
    /// The wrapped writer.
    pub inner: W,
    /// Bytes written so far.
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
