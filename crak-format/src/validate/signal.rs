//! SIGACTIONS and RLIMITS rules: signal numbers 1–64, each once; resources the kernel knows,
//! each once, soft limit not above hard (`spec/crak-format.md#sigactions`, `#rlimits`).

use super::{At, Cx, Field};
use crate::image::Process;
use crate::record::kind;

/// Bytes of one `sigaction` entry.
const SIGACTION_LEN: u64 = 36;
/// Bytes of one `rlimit` entry.
const RLIMIT_LEN: u64 = 20;
/// `RLIM_NLIMITS` on Linux: resources are 0..16.
pub const RLIM_NLIMITS: u32 = 16;
/// Signals whose disposition cannot be changed.
const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

fn entry(base: u64, len: u64, i: usize, field: u64) -> u64 {
    (i as u64)
        .saturating_mul(len)
        .saturating_add(base)
        .saturating_add(field)
}

pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>) {
    let pid = p.pid();
    if let Some(sa) = &p.sigactions {
        let at = At::once(kind::SIGACTIONS, pid);
        let mut seen = [false; 65];
        for (i, a) in sa.actions.iter().enumerate() {
            let off = entry(8, SIGACTION_LEN, i, 0);
            let slot = usize::try_from(a.signo)
                .ok()
                .filter(|s| (1..=64).contains(s));
            let Some(slot) = slot else {
                cx.error(
                    "signo-out-of-range",
                    at,
                    Field::At("signo", off),
                    format!("actions[{i}] has signal number {}, outside 1-64", a.signo),
                );
                continue;
            };
            if let Some(s) = seen.get_mut(slot) {
                if *s {
                    cx.error(
                        "duplicate-signo",
                        at,
                        Field::At("signo", off),
                        format!("actions[{i}]: signal {} appears twice", a.signo),
                    );
                }
                *s = true;
            }
            if (a.signo == SIGKILL || a.signo == SIGSTOP) && a.handler != 0 {
                cx.warn(
                    "uncatchable-signal",
                    at,
                    Field::At("handler", entry(8, SIGACTION_LEN, i, 4)),
                    format!(
                        "signal {} cannot be caught or ignored but has handler 0x{:x}",
                        a.signo, a.handler
                    ),
                );
            }
        }
    }
    if let Some(rl) = &p.rlimits {
        let at = At::once(kind::RLIMITS, pid);
        let mut seen = [false; RLIM_NLIMITS as usize];
        for (i, r) in rl.limits.iter().enumerate() {
            let slot = usize::try_from(r.resource)
                .ok()
                .and_then(|s| seen.get_mut(s));
            match slot {
                None => cx.error(
                    "bad-rlimit",
                    at,
                    Field::At("resource", entry(8, RLIMIT_LEN, i, 0)),
                    format!(
                        "limits[{i}] has resource {}, not below RLIM_NLIMITS ({RLIM_NLIMITS})",
                        r.resource
                    ),
                ),
                Some(s) if *s => cx.error(
                    "duplicate-rlimit",
                    at,
                    Field::At("resource", entry(8, RLIMIT_LEN, i, 0)),
                    format!("limits[{i}]: resource {} appears twice", r.resource),
                ),
                Some(s) => *s = true,
            }
            if r.cur > r.max {
                cx.error(
                    "rlimit-cur-above-max",
                    at,
                    Field::At("cur", entry(8, RLIMIT_LEN, i, 4)),
                    format!(
                        "limits[{i}] (resource {}): soft limit {} above hard limit {}",
                        r.resource, r.cur, r.max
                    ),
                );
            }
        }
    }
}
