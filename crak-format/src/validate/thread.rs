//! THREAD, XSAVE and SIGQUEUE rules: one THREAD and one XSAVE per listed tid, XSAVE areas that
//! match HEADER, signal queues of known threads holding real signals
//! (`spec/crak-format.md#thread`, `#xsave`, `#sigqueue`).

use super::process::tid_offset;
use super::{At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::record::sigqueue::SIGINFO_SIZE;
use std::collections::{HashMap, HashSet};

pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>) {
    let pid = p.pid();
    let listed: HashSet<u32> = p.process.tids.iter().copied().collect();

    let mut threads: HashMap<u32, usize> = HashMap::with_capacity(p.threads.len());
    for (i, t) in p.threads.iter().enumerate() {
        let at = At::proc(kind::THREAD, pid, i);
        if let Some(first) = threads.insert(t.tid, i) {
            threads.insert(t.tid, first);
            cx.error(
                "duplicate-thread",
                at,
                Field::At("tid", 4),
                format!(
                    "tid {} has a second THREAD record (first is #{first})",
                    t.tid
                ),
            );
        }
        if !listed.contains(&t.tid) {
            cx.error(
                "thread-not-listed",
                at,
                Field::At("tid", 4),
                format!("tid {} is not in process {pid}'s tids", t.tid),
            );
        }
    }

    let features = cx.image.header.xsave_features;
    let size = cx.image.header.xsave_size;
    let mut xsaves: HashMap<u32, usize> = HashMap::with_capacity(p.xsaves.len());
    for (i, x) in p.xsaves.iter().enumerate() {
        let at = At::proc(kind::XSAVE, pid, i);
        if let Some(first) = xsaves.insert(x.tid, i) {
            xsaves.insert(x.tid, first);
            cx.error(
                "duplicate-xsave",
                at,
                Field::At("tid", 4),
                format!(
                    "tid {} has a second XSAVE record (first is #{first})",
                    x.tid
                ),
            );
        }
        if !threads.contains_key(&x.tid) {
            cx.error(
                "orphan-xsave",
                at,
                Field::At("tid", 4),
                format!("XSAVE for tid {} which has no THREAD record", x.tid),
            );
        }
        if x.area.len() as u64 != u64::from(size) {
            cx.error(
                "xsave-size",
                at,
                Field::At("area", 16),
                format!(
                    "XSAVE area is {} bytes, HEADER xsave_size is {size}",
                    x.area.len()
                ),
            );
        }
        let extra = x.xstate_bv & !features;
        if extra != 0 {
            cx.error(
                "xsave-features",
                at,
                Field::At("xstate_bv", 8),
                format!(
                    "xstate_bv 0x{:x} has bits 0x{extra:x} outside HEADER xsave_features 0x{features:x}",
                    x.xstate_bv
                ),
            );
        }
    }

    for (i, t) in p.threads.iter().enumerate() {
        if !xsaves.contains_key(&t.tid) {
            cx.error(
                "missing-xsave",
                At::proc(kind::THREAD, pid, i),
                Field::At("tid", 4),
                format!("thread {} has no XSAVE record", t.tid),
            );
        }
    }
    for (i, &tid) in p.process.tids.iter().enumerate() {
        if !threads.contains_key(&tid) && !p.process.is_zombie() {
            cx.error(
                "missing-thread",
                At::once(kind::PROCESS, pid),
                Field::At("tids", tid_offset(&p.process, i)),
                format!("tids[{i}] = {tid} has no THREAD record"),
            );
        }
    }

    let mut queues: HashMap<u32, usize> = HashMap::new();
    for (i, q) in p.sigqueues.iter().enumerate() {
        let at = At::proc(kind::SIGQUEUE, pid, i);
        if q.tid != 0 && !threads.contains_key(&q.tid) {
            cx.error(
                "sigqueue-unknown-thread",
                at,
                Field::At("tid", 4),
                format!("signal queue of tid {} which has no THREAD record", q.tid),
            );
        }
        if let Some(first) = queues.insert(q.tid, i) {
            queues.insert(q.tid, first);
            cx.warn(
                "duplicate-sigqueue",
                at,
                Field::At("tid", 4),
                format!("a second queue for tid {} (first is #{first})", q.tid),
            );
        }
        for (j, info) in q.siginfos.iter().enumerate() {
            let off = 12u64.saturating_add((j as u64).saturating_mul(SIGINFO_SIZE as u64));
            let bytes = info.as_bytes();
            if bytes.len() != SIGINFO_SIZE {
                cx.error(
                    "siginfo-size",
                    at,
                    Field::At("siginfos", off),
                    format!("siginfo {j} is {} bytes, not {SIGINFO_SIZE}", bytes.len()),
                );
                continue;
            }
            let signo = bytes
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(i32::from_le_bytes)
                .unwrap_or(0);
            if !(1..=64).contains(&signo) {
                cx.error(
                    "bad-signo",
                    at,
                    Field::At("siginfos", off),
                    format!("siginfo {j} has si_signo {signo}, outside 1-64"),
                );
            }
        }
    }
}
