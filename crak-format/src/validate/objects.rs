//! TIMERS and LOCKS rules (1.2): each interval timer once, POSIX timer ids unique, signals
//! 1–64, a thread-targeted timer naming a thread of the process; each lock naming an fd of the
//! process, FLOCK locks covering the whole file, ranges that do not overflow
//! (`spec/crak-format.md#timers`, `#locks`).

use super::{At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::record::locks::{LockKind, LOCK_SIZE};
use crate::record::timers::{Notify, ITIMER_SIZE, POSIX_TIMER_SIZE};
use std::collections::HashSet;

fn entry(base: u64, len: usize, i: usize, field: u64) -> u64 {
    (i as u64)
        .saturating_mul(len as u64)
        .saturating_add(base)
        .saturating_add(field)
}

pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>) {
    let pid = p.pid();
    if let Some(t) = &p.timers {
        let at = At::once(kind::TIMERS, pid);
        let mut which = HashSet::new();
        for (i, it) in t.itimers.iter().enumerate() {
            let off = entry(8, ITIMER_SIZE, i, 0);
            if !which.insert(it.which) {
                cx.error(
                    "duplicate-itimer",
                    at,
                    Field::At("itimers.which", off),
                    format!("interval timer {:?} appears twice", it.which),
                );
            }
            if it.value_ns == 0 {
                cx.error(
                    "itimer-disarmed",
                    at,
                    Field::At("itimers.value_ns", off.saturating_add(8)),
                    format!(
                        "interval timer {:?} has no time left (a disarmed timer is not recorded)",
                        it.which
                    ),
                );
            }
        }
        let base = entry(12, ITIMER_SIZE, t.itimers.len(), 0);
        let mut ids = HashSet::new();
        for (i, pt) in t.posix.iter().enumerate() {
            let off = entry(base, POSIX_TIMER_SIZE, i, 0);
            if !ids.insert(pt.id) {
                cx.error(
                    "duplicate-timer-id",
                    at,
                    Field::At("posix.id", off),
                    format!("POSIX timer id {} appears twice", pt.id),
                );
            }
            if pt.notify != Notify::None && !(1..=64).contains(&pt.signo) {
                cx.error(
                    "signo-out-of-range",
                    at,
                    Field::At("posix.signo", off.saturating_add(12)),
                    format!("POSIX timer {} signals {}, outside 1-64", pt.id, pt.signo),
                );
            }
            if pt.notify == Notify::ThreadId && !p.process.tids.contains(&pt.tid) {
                cx.error(
                    "timer-thread-missing",
                    at,
                    Field::At("posix.tid", off.saturating_add(16)),
                    format!(
                        "POSIX timer {} signals thread {}, which process {pid} does not have",
                        pt.id, pt.tid
                    ),
                );
            }
        }
    }
    if let Some(l) = &p.locks {
        let at = At::once(kind::LOCKS, pid);
        for (i, k) in l.locks.iter().enumerate() {
            let off = entry(8, LOCK_SIZE, i, 0);
            if !p.fds.iter().any(|f| f.fd == k.fd) {
                cx.error(
                    "lock-fd-missing",
                    at,
                    Field::At("locks.fd", off),
                    format!(
                        "locks[{i}] is held through fd {}, which process {pid} does not have",
                        k.fd
                    ),
                );
            }
            if k.kind == LockKind::Flock && (k.start != 0 || k.len != 0) {
                cx.error(
                    "bad-lock-range",
                    at,
                    Field::At("locks.start", off.saturating_add(8)),
                    format!("locks[{i}] is a flock lock with a byte range"),
                );
            }
            let last = k.start.checked_add(k.len.saturating_sub(1));
            if k.start > i64::MAX as u64 || last.is_none_or(|e| e > i64::MAX as u64) {
                cx.error(
                    "bad-lock-range",
                    at,
                    Field::At("locks.start", off.saturating_add(8)),
                    format!(
                        "locks[{i}] covers {}+{}, beyond the largest file offset",
                        k.start, k.len
                    ),
                );
            }
        }
    }
}
