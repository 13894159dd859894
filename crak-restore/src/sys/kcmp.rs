//! `kcmp(2)`: whether two processes' descriptors refer to one open file description.

use std::io;

/// `KCMP_FILE`.
const KCMP_FILE: libc::c_long = 0;

/// How fd `fd1` of `pid1` compares with fd `fd2` of `pid2` as open file descriptions: equal, or
/// an arbitrary but consistent order (`kcmp(2)`).
pub fn cmp_files(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> io::Result<std::cmp::Ordering> {
    // SAFETY: kcmp takes five integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1),
            libc::c_long::from(pid2),
            KCMP_FILE,
            libc::c_long::from(fd1),
            libc::c_long::from(fd2),
        )
    };
    match r {
        0 => Ok(std::cmp::Ordering::Equal),
        1 => Ok(std::cmp::Ordering::Less),
        2 => Ok(std::cmp::Ordering::Greater),
        3 => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        _ => Err(io::Error::last_os_error()),
    }
}
