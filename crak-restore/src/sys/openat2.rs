//! `openat2(2)` without following symbolic links, for the paths an image names.
//!
//! Paths in an image come from the kernel (`/proc/PID/fd/N`, `/proc/PID/maps`, `exe`, `cwd`),
//! which gives the resolved path of the open file: no component of it is a symbolic link. A
//! symbolic link found on such a path at restore time is therefore not what was captured (or the
//! image was crafted), and following it could open a file the image does not name. These
//! wrappers resolve with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, which fails with `ELOOP`
//! on any symbolic link, the last component included.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `RESOLVE_NO_MAGICLINKS` (linux/openat2.h): no `/proc/PID/fd`-style links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS` (linux/openat2.h): no symbolic link at all, the last component included.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// What the wrappers here resolve with.
pub const RESOLVE_STRICT: u64 = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

/// The kernel's `struct open_how` (linux/openat2.h) as the 24 bytes `openat2` reads: `flags`,
/// `mode` (only with `O_CREAT` or `O_TMPFILE`; the kernel refuses it otherwise) and `resolve`.
/// Also used to build the argument of a remote `openat2` in a restored process.
pub fn open_how_bytes(flags: i32, mode: u32, resolve: u64) -> [u8; 24] {
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let mode = if creates { u64::from(mode & 0o7777) } else { 0 };
    let mut b = [0u8; 24];
    // `flags` is a u64 in open_how; an int's bits are taken as they are (no sign extension).
    let f = u64::from(flags as u32);
    for (i, v) in [f, mode, resolve].into_iter().enumerate() {
        let at = i * 8;
        if let Some(slot) = b.get_mut(at..at + 8) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// Opens `path` relative to the working directory (an absolute path ignores it) with `flags`
/// (`O_CLOEXEC` added) and `mode`, refusing any symbolic link on the way: `openat2(2)` with
/// [`RESOLVE_STRICT`]. A path holding a NUL byte is `EINVAL`.
pub fn open_no_symlinks(path: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = open_how_bytes(flags | libc::O_CLOEXEC, mode, RESOLVE_STRICT);
    // SAFETY: `c` is NUL-terminated and `how` is a 24-byte `struct open_how` (u64 flags, mode,
    // resolve; the kernel copies `size` bytes from it and reads nothing else); both outlive
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            how.as_ptr(),
            how.len(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn open_how_layout() {
        let b = open_how_bytes(libc::O_RDONLY | libc::O_CREAT, 0o100644, RESOLVE_STRICT);
        assert_eq!(&b[..8], &(libc::O_CREAT as u64).to_le_bytes());
        assert_eq!(&b[8..16], &0o644u64.to_le_bytes(), "file type bits dropped");
        assert_eq!(&b[16..], &6u64.to_le_bytes());
        let b = open_how_bytes(libc::O_RDONLY, 0o644, 0);
        assert_eq!(&b[8..16], &[0; 8], "no mode without O_CREAT");
    }

    #[test]
    fn refuses_symlinks_anywhere_on_the_path() {
        let dir = std::env::temp_dir().join(format!("crak-openat2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::fs::write(dir.join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("f", dir.join("real/flink")).unwrap();
        let p = |s: &str| dir.join(s).as_os_str().as_bytes().to_vec();
        assert!(open_no_symlinks(&p("real/f"), libc::O_RDONLY, 0).is_ok());
        for bad in ["link/f", "real/flink"] {
            let e = open_no_symlinks(&p(bad), libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{bad}");
        }
        let e = open_no_symlinks(b"/proc/self/fd/0", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = open_no_symlinks(b"a\0b", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
