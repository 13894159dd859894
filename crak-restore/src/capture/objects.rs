//! TIMERS (spec §3.21) and LOCKS (§3.22): interval timers read with remote `getitimer`, POSIX
//! timers from `/proc/PID/timers` with a remote `timer_gettime` each, and the file locks each
//! fd's fdinfo lists (`lock:` lines: the locks held through that open file description, and
//! POSIX locks the process owns set through it). Reading them changes nothing in the target:
//! a capture that leaves it running leaves its locks and timers as they were.

use super::freeze::Frozen;
use super::Error;
use crate::procfs;
use crak_format::record::fd::Fd;
use crak_format::record::locks::{Lock, LockKind, LockType, Locks};
use crak_format::record::timers::{Itimer, Notify, PosixTimer, Timers, Which};

fn ns(sec: u64, sub: u64, per_sec: u64) -> u64 {
    sec.saturating_mul(1_000_000_000)
        .saturating_add(sub.saturating_mul(1_000_000_000 / per_sec))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The timers of the frozen process, or `None` when it has none armed and no POSIX timer.
pub fn timers(frozen: &mut Frozen) -> Result<Option<Timers>, Error> {
    let pid = frozen.pid();
    let s = frozen.scratch(32)?;
    let addr = s.addr();
    let mut itimers = Vec::new();
    for which in [Which::Real, Which::Virtual, Which::Prof] {
        frozen
            .remote()?
            .call(libc::SYS_getitimer, &[which as u64, addr])?;
        // struct itimerval { it_interval, it_value }, each { tv_sec, tv_usec }.
        let b = s.read(0, 32)?;
        let interval_ns = ns(u64_at(&b, 0), u64_at(&b, 8), 1_000_000);
        let value_ns = ns(u64_at(&b, 16), u64_at(&b, 24), 1_000_000);
        if value_ns != 0 {
            itimers.push(Itimer {
                which,
                value_ns,
                interval_ns,
            });
        }
    }
    let text = procfs::read_string(pid, "timers").unwrap_or_default();
    let mut posix = Vec::new();
    for t in parse_timers(&text).map_err(|e| Error::Other(format!("/proc/{pid}/timers: {e}")))? {
        let id = t.id;
        frozen
            .remote()?
            .call(libc::SYS_timer_gettime, &[u64::from(id), addr])?;
        // struct itimerspec { it_interval, it_value }, each { tv_sec, tv_nsec }.
        let b = s.read(0, 32)?;
        let overrun = frozen
            .remote()?
            .call(libc::SYS_timer_getoverrun, &[u64::from(id)])?;
        posix.push(PosixTimer {
            interval_ns: ns(u64_at(&b, 0), u64_at(&b, 8), 1_000_000_000),
            value_ns: ns(u64_at(&b, 16), u64_at(&b, 24), 1_000_000_000),
            overrun: overrun as u32,
            ..t
        });
    }
    s.restore()?;
    if itimers.is_empty() && posix.is_empty() {
        return Ok(None);
    }
    posix.sort_by_key(|t| t.id);
    Ok(Some(Timers {
        pid: pid as u32,
        itimers,
        posix,
    }))
}

/// The POSIX timers `/proc/PID/timers` lists (`ID:`, `signal: SIGNO/SIGVAL`, `notify:
/// KIND/pid.N` or `KIND/tid.N`, `ClockID:`), without their times.
fn parse_timers(text: &str) -> Result<Vec<PosixTimer>, String> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line {line:?}"))?;
        let v = v.trim();
        let bad = || format!("{k} {v:?}");
        if k == "ID" {
            out.push(PosixTimer {
                id: v.parse::<i32>().map_err(|_| bad())? as u32,
                clockid: 0,
                notify: Notify::Signal,
                signo: 0,
                tid: 0,
                overrun: 0,
                sigval: 0,
                value_ns: 0,
                interval_ns: 0,
            });
            continue;
        }
        let t = out.last_mut().ok_or_else(|| format!("{k} before ID"))?;
        match k {
            "signal" => {
                let (n, val) = v.split_once('/').ok_or_else(bad)?;
                t.signo = n.parse().map_err(|_| bad())?;
                t.sigval = u64::from_str_radix(val, 16).map_err(|_| bad())?;
            }
            "notify" => {
                let (how, who) = v.split_once('/').ok_or_else(bad)?;
                let (scope, n) = who.split_once('.').ok_or_else(bad)?;
                t.notify = match (how, scope) {
                    ("none", _) => Notify::None,
                    ("signal", "pid") => Notify::Signal,
                    // A C library's SIGEV_THREAD is a signal to its helper thread.
                    ("signal" | "thread", "tid") => Notify::ThreadId,
                    _ => return Err(bad()),
                };
                if t.notify == Notify::ThreadId {
                    t.tid = n.parse().map_err(|_| bad())?;
                }
            }
            "ClockID" => t.clockid = v.parse::<i32>().map_err(|_| bad())? as u32,
            _ => {}
        }
    }
    Ok(out)
}

/// One `lock:` line of fdinfo: `N: KIND MODE TYPE PID MAJ:MIN:INO START END` (END `EOF` or the
/// last byte).
fn parse_lock(line: &str) -> Result<Option<(LockKind, LockType, u64, u64)>, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    // A lock being waited for ("->") is no lock held: the waiter's call restarts.
    if w.contains(&"->") {
        return Ok(None);
    }
    let at = |i: usize| {
        w.get(i)
            .copied()
            .ok_or_else(|| format!("lock line {line:?}"))
    };
    let kind = match at(1)? {
        "FLOCK" => LockKind::Flock,
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        other => return Err(format!("a {other} lock")),
    };
    let ty = match at(3)? {
        "READ" => LockType::Read,
        "WRITE" => LockType::Write,
        other => return Err(format!("a lock of type {other}")),
    };
    let start: u64 = at(6)?.parse().map_err(|_| format!("lock line {line:?}"))?;
    let len = match at(7)? {
        "EOF" => 0,
        end => end
            .parse::<u64>()
            .ok()
            .and_then(|e| e.checked_sub(start)?.checked_add(1))
            .ok_or_else(|| format!("lock line {line:?}"))?,
    };
    if kind == LockKind::Flock {
        return Ok(Some((kind, ty, 0, 0)));
    }
    Ok(Some((kind, ty, start, len)))
}

/// The locks `pid` holds through its fds (FD records after `description` was set): each lock
/// once, on the lowest fd of the open file description that holds it; POSIX locks, owned by
/// the process, once per file and range.
pub fn locks(pid: i32, fds: &[&Fd<'_>]) -> Result<Option<Locks>, Error> {
    let mut out: Vec<Lock> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut order: Vec<&&Fd<'_>> = fds.iter().collect();
    order.sort_by_key(|f| f.fd);
    for f in order {
        let text = procfs::read_string(pid, &format!("fdinfo/{}", f.fd))?;
        for line in text.lines().filter_map(|l| l.strip_prefix("lock:")) {
            let Some((kind, lock_type, start, len)) =
                parse_lock(line).map_err(|what| Error::UnsupportedFd {
                    pid,
                    fd: f.fd as i32,
                    kind: format!("a file with {what}"),
                    link: f.path.to_string_lossy().into_owned(),
                })?
            else {
                continue;
            };
            // Who owns it: the description (FLOCK, OFD) or the process (POSIX).
            let owner = match kind {
                LockKind::Posix => (0u32, 0u32),
                _ if f.description != 0 => (1, f.description),
                _ => (2, f.fd),
            };
            if seen.insert((
                owner,
                kind as u16,
                lock_type as u16,
                f.dev,
                f.ino,
                start,
                len,
            )) {
                out.push(Lock {
                    fd: f.fd,
                    kind,
                    lock_type,
                    start,
                    len,
                });
            }
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(Locks {
        pid: pid as u32,
        locks: out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_timers_and_lock_lines() {
        let t = "ID: 0\nsignal: 10/0000000000001234\nnotify: signal/pid.7624\nClockID: 1\nID: 3\nsignal: 34/0000000000000000\nnotify: thread/tid.7625\nClockID: 0\n";
        let v = parse_timers(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].id, v[0].signo, v[0].sigval, v[0].notify, v[0].clockid),
            (0, 10, 0x1234, Notify::Signal, 1)
        );
        assert_eq!(
            (v[1].id, v[1].notify, v[1].tid),
            (3, Notify::ThreadId, 7625)
        );
        assert!(parse_timers("signal: 1/0\n").is_err());
        assert_eq!(
            parse_lock("\t1: POSIX  ADVISORY  WRITE 7624 fe:00:10281060 10 19"),
            Ok(Some((LockKind::Posix, LockType::Write, 10, 10)))
        );
        assert_eq!(
            parse_lock("\t1: FLOCK  ADVISORY  READ 7624 fe:00:10281057 0 EOF"),
            Ok(Some((LockKind::Flock, LockType::Read, 0, 0)))
        );
        assert_eq!(
            parse_lock("\t1: OFDLCK ADVISORY  READ -1 fe:00:10281061 0 EOF"),
            Ok(Some((LockKind::Ofd, LockType::Read, 0, 0)))
        );
        assert_eq!(
            parse_lock("\t1: -> POSIX  ADVISORY  WRITE 7 fe:00:1 0 EOF"),
            Ok(None)
        );
        assert!(parse_lock("\t1: LEASE  ACTIVE    READ 7 fe:00:1 0 EOF").is_err());
    }
}
