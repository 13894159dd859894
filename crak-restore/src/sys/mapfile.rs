//! A read-only, private mapping of a whole file: the restorer parses and CRC-checks an image in
//! place, without copying its page data into its own memory (mmap(2)).

use super::SysError;
use std::fs::File;
use std::os::fd::AsRawFd;

/// A file mapped `PROT_READ`, `MAP_PRIVATE`, unmapped on drop.
///
/// The bytes are the file's page cache: should another process truncate or rewrite the file
/// while it is mapped, reads see the change (or fault with `SIGBUS` past a truncated end). The
/// restorer holds the file open for the whole restore and checks, before the point of no
/// return, that its size and change time are those it had when mapped.
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Maps the `len` first bytes of `file` (its size at the caller's `fstat`); `len` 0 gives an
    /// empty mapping without a system call. `mmap(2)`.
    pub fn map(file: &File, len: u64) -> Result<Self, SysError> {
        let len = usize::try_from(len).map_err(|_| SysError {
            call: "mmap(image)".into(),
            source: std::io::Error::from_raw_os_error(libc::EFBIG),
        })?;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh mapping chosen by the kernel (address hint null), read-only and
        // private; it aliases no Rust object. The fd is valid for the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last("mmap(image)"));
        }
        // Sequential reading ahead: the parser walks the file once, front to back.
        // SAFETY: advice on the mapping just created; it changes no memory contents.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(MappedFile { ptr, len })
    }

    /// The mapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes owned by `self`, unmapped
        // only in `drop`, so the slice cannot outlive it. This process never writes it.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the mapping created in `map`, unmapped exactly once; no slice from
            // `as_bytes` outlives `self`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
