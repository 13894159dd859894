//! System V IPC rules: SHM, SEM and MSG records (`spec/crak-format.md#shm`, `#sem`, `#msg`)
//! and the SYSV_SHM mappings that name a segment (`#vma`).

use super::{At, Cx, Field};
use crate::record::ipc::IpcPerm;
use crate::record::kind;
use crate::record::sem::SEMVMX;
use crate::record::vma::{VmaKind, MAP_SHARED};
use std::collections::HashMap;

pub(super) fn check(cx: &mut Cx<'_, '_>) {
    let image = cx.image;
    ids(cx, kind::SHM, image.shm_segments.iter().map(|s| &s.perm));
    ids(cx, kind::SEM, image.sem_sets.iter().map(|s| &s.perm));
    ids(cx, kind::MSG, image.msg_queues.iter().map(|q| &q.perm));

    let mut segments: HashMap<u32, u64> = HashMap::with_capacity(image.shm_segments.len());
    for (i, s) in image.shm_segments.iter().enumerate() {
        segments.entry(s.perm.id).or_insert(s.size);
        let at = At::image(kind::SHM, Some(i));
        if s.size == 0 {
            cx.error(
                "bad-shm-size",
                at,
                Field::At("size", 32),
                format!("shared memory segment {} has size 0", s.perm.id),
            );
        }
        if s.data.len() as u64 > s.size {
            cx.error(
                "shm-data-over-size",
                at,
                Field::At("data", 48),
                format!(
                    "shared memory segment {} holds {} bytes of data, more than its size {}",
                    s.perm.id,
                    s.data.len(),
                    s.size
                ),
            );
        }
    }
    for (i, s) in image.sem_sets.iter().enumerate() {
        let at = At::image(kind::SEM, Some(i));
        for (n, m) in s.sems.iter().enumerate() {
            if m.value > SEMVMX {
                cx.error(
                    "bad-sem-value",
                    at,
                    Field::At("sems.value", 36 + 8 * n as u64),
                    format!(
                        "semaphore {n} of set {} has the value {}, above {SEMVMX}",
                        s.perm.id, m.value
                    ),
                );
            }
        }
    }
    for (i, q) in image.msg_queues.iter().enumerate() {
        let at = At::image(kind::MSG, Some(i));
        let mut off = 52u64;
        for (n, m) in q.messages.iter().enumerate() {
            if m.mtype < 1 {
                cx.error(
                    "bad-msg-type",
                    at,
                    Field::At("messages.mtype", off),
                    format!(
                        "message {n} of queue {} has the type {}; a type is at least 1",
                        q.perm.id, m.mtype
                    ),
                );
            }
            off = off.saturating_add(12).saturating_add(m.text.len() as u64);
        }
        if q.cbytes() > q.qbytes {
            cx.error(
                "msg-over-qbytes",
                at,
                Field::At("qbytes", 32),
                format!(
                    "queue {} holds {} bytes of messages, more than its qbytes {}",
                    q.perm.id,
                    q.cbytes(),
                    q.qbytes
                ),
            );
        }
    }

    // Every SYSV_SHM mapping is a window on a segment of the image: `ino` is its shmid, `pgoff`
    // the offset in it.
    let page = cx.page_size.unwrap_or(1);
    for p in &image.processes {
        let pid = p.pid();
        for (i, v) in p.vmas.iter().enumerate() {
            if v.kind != VmaKind::SysvShm {
                continue;
            }
            let at = At::proc(kind::VMA, pid, i);
            if v.flags & MAP_SHARED == 0 {
                cx.error(
                    "sysv-shm-not-shared",
                    at,
                    Field::At("flags", 28),
                    format!(
                        "SYSV_SHM mapping {:#x}-{:#x} is not MAP_SHARED",
                        v.start, v.end
                    ),
                );
            }
            let Some(&size) = u32::try_from(v.ino).ok().and_then(|id| segments.get(&id)) else {
                cx.error(
                    "shm-missing",
                    at,
                    Field::At("ino", 56),
                    format!(
                        "SYSV_SHM mapping {:#x}-{:#x} names segment {}, which has no SHM record",
                        v.start, v.end, v.ino
                    ),
                );
                continue;
            };
            let rounded = size.div_ceil(page).saturating_mul(page);
            let end = v
                .end
                .checked_sub(v.start)
                .and_then(|len| len.checked_add(v.pgoff));
            if v.pgoff % page != 0 || end.is_none_or(|e| e > rounded) {
                cx.error(
                    "vma-outside-shm",
                    at,
                    Field::At("pgoff", 40),
                    format!(
                        "SYSV_SHM mapping {:#x}-{:#x} at offset {:#x} does not fit in segment {} of {size} bytes",
                        v.start, v.end, v.pgoff, v.ino
                    ),
                );
            }
        }
    }
}

/// Ids unique per kind and below 2^31; nonzero keys unique per kind.
fn ids<'a>(cx: &mut Cx<'_, '_>, k: u16, perms: impl Iterator<Item = &'a IpcPerm>) {
    let mut ids: HashMap<u32, usize> = HashMap::new();
    let mut keys: HashMap<u32, usize> = HashMap::new();
    let name = kind::name(k).unwrap_or("?");
    for (i, p) in perms.enumerate() {
        let at = At::image(k, Some(i));
        if p.id > i32::MAX as u32 {
            cx.error(
                "bad-ipc-id",
                at,
                Field::At("id", 0),
                format!("{name} id {} is above 2^31 - 1", p.id),
            );
        }
        if let Some(&first) = ids.get(&p.id) {
            cx.error(
                "duplicate-ipc-id",
                at,
                Field::At("id", 0),
                format!("{name} id {} is also record #{first}", p.id),
            );
        } else {
            ids.insert(p.id, i);
        }
        if p.key != 0 {
            if let Some(&first) = keys.get(&p.key) {
                cx.error(
                    "duplicate-ipc-key",
                    at,
                    Field::At("key", 4),
                    format!("{name} key {:#010x} is also record #{first}", p.key),
                );
            } else {
                keys.insert(p.key, i);
            }
        }
    }
}
