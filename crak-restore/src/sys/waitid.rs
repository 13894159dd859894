//! `waitid(2)` with `WNOWAIT`: waiting until a child or tracee has exited without reaping it,
//! so that it stays a zombie until the caller chooses to reap it (e.g. while another process
//! that must not see it is stopped).

use super::{Pid, Result, SysError};

/// `waitid(P_PID, pid, WEXITED | WNOWAIT | __WALL)`: blocks until `pid` (a child or tracee of
/// the caller) has exited, and leaves it unreaped. Retries on `EINTR`.
pub fn wait_exited_nowait(pid: Pid) -> Result<()> {
    let id = libc::id_t::try_from(pid)
        .map_err(|_| SysError::from_errno(format!("waitid({pid})"), libc::EINVAL))?;
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t through the pointer, which refers to a live local.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::__WALL,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let e = SysError::last(format!("waitid({pid}, WEXITED | WNOWAIT)"));
        if e.errno() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_child_stays_unreaped() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id() as Pid;
        wait_exited_nowait(pid).unwrap();
        // Still there as a zombie: reaping it now gives its status.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z'));
        assert!(child.wait().unwrap().success());
    }
}
