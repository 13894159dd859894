//! TIMERS record (1.2), `spec/crak-format.md#timers`.

use crate::error::{ErrorKind, FieldError};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most interval timers (`ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`).
pub const MAX_ITIMERS: u32 = 3;
/// Most POSIX timers.
pub const MAX_POSIX_TIMERS: u32 = 65536;
/// Bytes of one interval timer.
pub const ITIMER_SIZE: usize = 24;
/// Bytes of one POSIX timer.
pub const POSIX_TIMER_SIZE: usize = 48;

/// Which interval timer (`setitimer(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Which {
    Real = 0,
    Virtual = 1,
    Prof = 2,
}

impl Which {
    /// The timer for its wire value.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Which::Real,
            1 => Which::Virtual,
            2 => Which::Prof,
            _ => return None,
        })
    }
}

/// How a POSIX timer notifies its expiry (`sigevent.sigev_notify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Notify {
    /// `SIGEV_SIGNAL`: a signal to the process.
    Signal = 0,
    /// `SIGEV_NONE`: nothing.
    None = 1,
    /// `SIGEV_THREAD_ID`: a signal to one thread (`tid`).
    ThreadId = 4,
}

impl Notify {
    /// The notification for its wire value.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Notify::Signal,
            1 => Notify::None,
            4 => Notify::ThreadId,
            _ => return None,
        })
    }
}

/// One armed interval timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itimer {
    /// Which timer.
    pub which: Which,
    /// Time to the next expiry, ns (never 0: a disarmed timer is not recorded).
    pub value_ns: u64,
    /// Period, ns (0: one-shot).
    pub interval_ns: u64,
}

/// One POSIX timer (`timer_create(2)`), armed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// The timer id the process uses.
    pub id: u32,
    /// `CLOCK_*` (as the kernel's `clockid_t` bits).
    pub clockid: u32,
    /// Notification.
    pub notify: Notify,
    /// Signal number (for [`Notify::Signal`] and [`Notify::ThreadId`]).
    pub signo: u32,
    /// Thread notified ([`Notify::ThreadId`]); 0 otherwise.
    pub tid: u32,
    /// Overruns of the last expiry delivered (`timer_getoverrun`).
    pub overrun: u32,
    /// `sigev_value`, delivered in `si_value`.
    pub sigval: u64,
    /// Time to the next expiry, ns (0: disarmed).
    pub value_ns: u64,
    /// Period, ns (0: one-shot).
    pub interval_ns: u64,
}

/// The timers of a process (spec §3.21, 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// PID.
    pub pid: u32,
    /// Armed interval timers.
    pub itimers: Vec<Itimer>,
    /// POSIX timers.
    pub posix: Vec<PosixTimer>,
}

/// Parses a TIMERS payload (`spec/crak-format.md#timers`, §3.21). Rejects more than 3 interval
/// timers or 65536 POSIX timers, an unknown `which` or `notify`.
pub fn parse(payload: &[u8]) -> Result<Timers, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Timers> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, itimers) = wire::list("itimers", MAX_ITIMERS, ITIMER_SIZE, |i| {
        let (r, w) = wire::u32f("itimers.which")(i)?;
        let Some(which) = Which::from_u32(w) else {
            return wire::fail(
                ErrorKind::BadValue,
                "itimers.which",
                i,
                format!("{w} is not an interval timer (0-2)"),
            );
        };
        let (r, ()) = wire::reserved("itimers.reserved", 4)(r)?;
        let (r, value_ns) = wire::u64f("itimers.value_ns")(r)?;
        let (r, interval_ns) = wire::u64f("itimers.interval_ns")(r)?;
        Ok((
            r,
            Itimer {
                which,
                value_ns,
                interval_ns,
            },
        ))
    })(r)?;
    let (r, posix) = wire::list("posix", MAX_POSIX_TIMERS, POSIX_TIMER_SIZE, |i| {
        let (r, id) = wire::u32f("posix.id")(i)?;
        let (r, clockid) = wire::u32f("posix.clockid")(r)?;
        let (r2, n) = wire::u32f("posix.notify")(r)?;
        let Some(notify) = Notify::from_u32(n) else {
            return wire::fail(
                ErrorKind::BadValue,
                "posix.notify",
                r,
                format!("{n} is not a notification (0 signal, 1 none, 4 thread id)"),
            );
        };
        let (r, signo) = wire::u32f("posix.signo")(r2)?;
        let (r, tid) = wire::u32f("posix.tid")(r)?;
        let (r, overrun) = wire::u32f("posix.overrun")(r)?;
        let (r, sigval) = wire::u64f("posix.sigval")(r)?;
        let (r, value_ns) = wire::u64f("posix.value_ns")(r)?;
        let (r, interval_ns) = wire::u64f("posix.interval_ns")(r)?;
        Ok((
            r,
            PosixTimer {
                id,
                clockid,
                notify,
                signo,
                tid,
                overrun,
                sigval,
                value_ns,
                interval_ns,
            },
        ))
    })(r)?;
    Ok((
        r,
        Timers {
            pid,
            itimers,
            posix,
        },
    ))
}

/// Appends the TIMERS payload of `t` (§3.21).
pub fn write(t: &Timers, out: &mut Vec<u8>) {
    wire::put_u32(out, t.pid);
    wire::put_count(out, t.itimers.len());
    for it in &t.itimers {
        wire::put_u32(out, it.which as u32);
        wire::put_u32(out, 0);
        wire::put_u64(out, it.value_ns);
        wire::put_u64(out, it.interval_ns);
    }
    wire::put_count(out, t.posix.len());
    for p in &t.posix {
        for v in [p.id, p.clockid, p.notify as u32, p.signo, p.tid, p.overrun] {
            wire::put_u32(out, v);
        }
        wire::put_u64(out, p.sigval);
        wire::put_u64(out, p.value_ns);
        wire::put_u64(out, p.interval_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Timers {
        Timers {
            pid: 7,
            itimers: vec![Itimer {
                which: Which::Real,
                value_ns: 5,
                interval_ns: 20_000_000,
            }],
            posix: vec![PosixTimer {
                id: 0,
                clockid: 1,
                notify: Notify::Signal,
                signo: 10,
                tid: 0,
                overrun: 0,
                sigval: 42,
                value_ns: 0,
                interval_ns: 0,
            }],
        }
    }

    #[test]
    fn byte_example() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        assert_eq!(b.len(), 4 + 4 + ITIMER_SIZE + 4 + POSIX_TIMER_SIZE);
        assert_eq!(&b[0..12], &[7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..24], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &b[32..48],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&b[48..52], &[10, 0, 0, 0]);
        assert_eq!(parse(&b).unwrap(), example());
    }

    #[test]
    fn rejects_unknown_which_and_notify() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        let mut w = b.clone();
        w[8] = 3;
        let e = parse(&w).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "itimers.which", 8)
        );
        let mut n = b.clone();
        n[44] = 2;
        let e = parse(&n).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "posix.notify", 44)
        );
        let mut c = b.clone();
        c[4] = 4;
        assert_eq!(parse(&c).unwrap_err().field, "itimers");
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert_eq!((e.kind, e.field), (ErrorKind::Truncated, "posix"));
    }

    proptest! {
        #[test]
        fn round_trip(t in crate::arbitrary::timers(1)) {
            let mut b = Vec::new();
            write(&t, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), t);
        }
    }
}
