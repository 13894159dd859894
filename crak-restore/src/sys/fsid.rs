//! The calling thread's filesystem identity: `setfsuid(2)`, `setfsgid(2)` and `setgroups(2)`,
//! made as raw system calls so that they change this thread only (glibc's `setgroups` would
//! change every thread of the process).
//!
//! The kernel checks file permissions against the filesystem uid and gid and the supplementary
//! groups. A restore switches to the image's before it opens any path the image names, so that
//! a root-run restore opens only what the image's user could open. Changing the fsuid from 0 to
//! another uid also drops the file capabilities (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`,
//! `CAP_FOWNER`, ...) from the effective set, and changing it back to 0 raises them again from
//! the permitted set (capabilities(7), "Effect of user ID changes on capabilities").

use std::io;

/// A filesystem identity: the uid and gid permission checks use, and the supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsIdentity {
    /// Filesystem uid.
    pub fsuid: u32,
    /// Filesystem gid.
    pub fsgid: u32,
    /// Supplementary groups, sorted.
    pub groups: Vec<u32>,
}

/// `setfsuid(2)`: returns the previous fsuid (the call reports no error; see [`enter`]).
fn setfsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes an integer and touches no memory.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid as libc::c_long) as u32 }
}

/// `setfsgid(2)`: returns the previous fsgid.
fn setfsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid takes an integer and touches no memory.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid as libc::c_long) as u32 }
}

/// The calling thread's supplementary groups, sorted: `getgroups(2)`.
pub fn groups() -> io::Result<Vec<u32>> {
    // SAFETY: with size 0 getgroups only returns the count and writes nothing.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getgroups,
            0 as libc::c_long,
            std::ptr::null_mut::<u32>(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut v = vec![0u32; usize::try_from(n).unwrap_or(0)];
    // SAFETY: `v` has room for `v.len()` gids, the size passed; the kernel writes at most that.
    let got =
        unsafe { libc::syscall(libc::SYS_getgroups, v.len() as libc::c_long, v.as_mut_ptr()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    v.truncate(usize::try_from(got).unwrap_or(0));
    v.sort_unstable();
    Ok(v)
}

/// `setgroups(2)` for the calling thread only (needs `CAP_SETGID`).
fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: `groups` holds `groups.len()` gids (gid_t is u32 on Linux); the kernel reads
    // exactly that many.
    let r = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            groups.len() as libc::c_long,
            groups.as_ptr(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The calling thread's filesystem identity.
pub fn current() -> io::Result<FsIdentity> {
    // setfsuid(-1) fails and so changes nothing, but returns the current value.
    Ok(FsIdentity {
        fsuid: setfsuid(u32::MAX),
        fsgid: setfsgid(u32::MAX),
        groups: groups()?,
    })
}

/// Makes `id` the calling thread's filesystem identity: the groups (only when they differ,
/// since `setgroups` needs `CAP_SETGID`), then the fsgid and the fsuid, each checked, since
/// `setfsuid`/`setfsgid` report failure only by not changing anything.
pub fn enter(id: &FsIdentity) -> io::Result<()> {
    let mut want = id.groups.clone();
    want.sort_unstable();
    want.dedup();
    if groups()? != want {
        set_groups(&want).map_err(|e| {
            io::Error::new(e.kind(), format!("setgroups({} groups): {e}", want.len()))
        })?;
    }
    setfsgid(id.fsgid);
    if setfsgid(u32::MAX) != id.fsgid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setfsgid({}) was refused", id.fsgid),
        ));
    }
    setfsuid(id.fsuid);
    if setfsuid(u32::MAX) != id.fsuid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setfsuid({}) was refused", id.fsuid),
        ));
    }
    Ok(())
}

/// Runs `f` with the fsuid and fsgid set to the thread's effective uid and gid (the restorer's
/// own identity, groups unchanged), then puts the previous fsuid and fsgid back. For the few
/// opens that are the restorer's own business, not the image's (its terminal for a shell job).
pub fn as_effective<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: geteuid/getegid take no argument and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let old_gid = setfsgid(egid);
    let old_uid = setfsuid(euid);
    let r = f();
    setfsuid(old_uid);
    setfsgid(old_gid);
    r
}

/// The effective uid of the calling thread: `geteuid(2)`.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes no argument and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid of the calling thread: `getegid(2)`.
pub fn egid() -> u32 {
    // SAFETY: getegid takes no argument and cannot fail.
    unsafe { libc::getegid() }
}

/// The calling thread's securebits: `prctl(PR_GET_SECUREBITS)`.
pub fn securebits() -> io::Result<u32> {
    // SAFETY: PR_GET_SECUREBITS takes no pointer argument.
    let r = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    u32::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// Whether this program was started with privileges its caller lacks: set-user-ID or
/// set-group-ID, or file capabilities (`AT_SECURE` in the auxiliary vector, see
/// `getauxval(3)`), or a real id that differs from the effective one.
pub fn is_setid() -> bool {
    // SAFETY: getauxval reads the process's auxiliary vector and cannot fail; the id calls
    // take no argument.
    let (secure, ruid, rgid) = unsafe {
        (
            libc::getauxval(libc::AT_SECURE),
            libc::getuid(),
            libc::getgid(),
        )
    };
    secure != 0 || ruid != euid() || rgid != egid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_identity_enters_as_itself() {
        let me = current().unwrap();
        // Entering the identity one has needs no privilege.
        enter(&me).unwrap();
        assert_eq!(current().unwrap(), me);
    }
}
