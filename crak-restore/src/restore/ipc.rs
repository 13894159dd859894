//! Stage 1b of restore: the System V IPC objects of the image (spec §3.18–§3.20), recreated
//! with their ids before any process exists, since the processes attach the segments while
//! their memory is rebuilt (stage 3) and name the sets and queues by id.
//!
//! Each object is made by writing its id to `/proc/sys/kernel/{shm,sem,msg}_next_id` and then
//! creating it with `IPC_CREAT | IPC_EXCL` and its key; the id obtained is checked. Restores
//! take a lock (`/run/lock/crak-sysvipc.lock`) around this, so that two of them do not race for
//! `*_next_id`; another program creating objects at the same moment can still take the id,
//! which the check turns into a clear failure.
//!
//! An object that exists already with the saved id (the common case after a capture that
//! killed its processes: segments, sets and queues outlive them) is refused, naming it, unless
//! the restore was asked to replace it (`--ipc-replace`) and it has the same key: it is then
//! removed and made again from the image. Objects are only ever replaced, never reused, so
//! the restored processes see exactly the saved contents.
//!
//! If the restore fails, every object made here is removed ([`Created`]'s `Drop`). A segment
//! that was marked for removal at capture (`SHM_DEST`) is marked again once every process has
//! attached it ([`Created::mark_destroyed`]).

use super::RestoreError;
use crate::sys::sysvipc;
use crak_format::record::ipc::{IpcPerm, PERM_BITS};
use crak_format::record::vma::VmaKind;
use crak_format::Image;

/// `SHM_DEST` in a segment's mode.
const SHM_DEST: u32 = 0o1000;

/// Where restores serialise their use of `*_next_id`.
const LOCK: &str = "/run/lock/crak-sysvipc.lock";

/// The kinds of object, for messages and the `*_next_id` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shm,
    Sem,
    Msg,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Shm => "SysV shared memory segment",
            Kind::Sem => "SysV semaphore set",
            Kind::Msg => "SysV message queue",
        }
    }
    fn next_id(self) -> &'static str {
        match self {
            Kind::Shm => "/proc/sys/kernel/shm_next_id",
            Kind::Sem => "/proc/sys/kernel/sem_next_id",
            Kind::Msg => "/proc/sys/kernel/msg_next_id",
        }
    }
    fn rmid(self, id: i32) -> crate::sys::Result<()> {
        match self {
            Kind::Shm => sysvipc::shm_rmid(id),
            Kind::Sem => sysvipc::sem_rmid(id),
            Kind::Msg => sysvipc::msg_rmid(id),
        }
    }
    /// The key of the object with `id`, when there is one.
    fn key_of(self, id: i32) -> Option<i32> {
        match self {
            Kind::Shm => sysvipc::shm_stat(id).ok().map(|s| s.perm.key),
            Kind::Sem => sysvipc::sem_stat(id).ok().map(|(p, _)| p.key),
            Kind::Msg => sysvipc::msg_stat(id).ok().map(|s| s.perm.key),
        }
    }
    /// The id of the object with `key` (nonzero), when there is one.
    fn id_of_key(self, key: i32) -> Option<i32> {
        match self {
            Kind::Shm => sysvipc::shm_get(key, 0, 0).ok(),
            Kind::Sem => sysvipc::sem_get(key, 0, 0).ok(),
            Kind::Msg => sysvipc::msg_get(key, 0).ok(),
        }
    }
}

/// The objects a restore made; removed when dropped unless [`Created::keep`] was called.
#[derive(Debug, Default)]
pub struct Created {
    made: Vec<(Kind, i32)>,
    destroyed: Vec<i32>,
    kept: bool,
}

impl Created {
    /// Whether nothing was made.
    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// Marks for removal the segments that were at capture (`SHM_DEST`): call once every
    /// process has attached them; they go when the last one detaches.
    pub fn mark_destroyed(&mut self) -> Result<(), RestoreError> {
        for id in std::mem::take(&mut self.destroyed) {
            sysvipc::shm_rmid(id).map_err(|e| {
                RestoreError::failed("removing a destroyed SysV segment", e.to_string())
            })?;
        }
        Ok(())
    }

    /// The restore succeeded: the objects stay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for &(kind, id) in self.made.iter().rev() {
            let _ = kind.rmid(id);
        }
    }
}

/// Checks, before anything is made, that every SYSV_SHM mapping names a segment of the image
/// (by `ino`, its shmid) and lies inside it.
pub fn check(image: &Image<'_>) -> Result<(), RestoreError> {
    for p in &image.processes {
        for v in p.vmas.iter().filter(|v| v.kind == VmaKind::SysvShm) {
            let seg = image
                .shm_segments
                .iter()
                .find(|s| u64::from(s.perm.id) == v.ino)
                .ok_or_else(|| {
                    RestoreError::Invalid(format!(
                        "process {}: the SysV mapping {:#x}-{:#x} names segment {}, which the image does not hold",
                        p.pid(),
                        v.start,
                        v.end,
                        v.ino
                    ))
                })?;
            let rounded = seg.size.div_ceil(super::plan::PAGE) * super::plan::PAGE;
            let fits = v
                .pgoff
                .checked_add(v.end - v.start)
                .is_some_and(|e| e <= rounded && v.pgoff % super::plan::PAGE == 0);
            if !fits || v.start < v.pgoff {
                return Err(RestoreError::Invalid(format!(
                    "process {}: the SysV mapping {:#x}-{:#x} at offset {:#x} does not fit segment {} of {} bytes",
                    p.pid(),
                    v.start,
                    v.end,
                    v.pgoff,
                    v.ino,
                    seg.size
                )));
            }
        }
    }
    for s in &image.shm_segments {
        if s.perm.id > i32::MAX as u32 || s.size == 0 {
            return Err(RestoreError::Invalid(format!(
                "SHM record of segment {} has an id or size out of range",
                s.perm.id
            )));
        }
    }
    for s in &image.sem_sets {
        if s.perm.id > i32::MAX as u32 || s.sems.iter().any(|m| m.value > 32767) {
            return Err(RestoreError::Invalid(format!(
                "SEM record of set {} has an id or value out of range",
                s.perm.id
            )));
        }
    }
    for q in &image.msg_queues {
        if q.perm.id > i32::MAX as u32 || q.messages.iter().any(|m| m.mtype < 1) {
            return Err(RestoreError::Invalid(format!(
                "MSG record of queue {} has an id or message type out of range",
                q.perm.id
            )));
        }
    }
    Ok(())
}

/// Recreates every SHM, SEM and MSG object of `image` with its id; with `replace`, an existing
/// object with the same id and key is removed first.
pub fn create(image: &Image<'_>, replace: bool) -> Result<Created, RestoreError> {
    let mut created = Created::default();
    if image.shm_segments.is_empty() && image.sem_sets.is_empty() && image.msg_queues.is_empty() {
        return Ok(created);
    }
    let _lock = sysvipc::lock_file(std::path::Path::new(LOCK))
        .or_else(|_| sysvipc::lock_file(&std::env::temp_dir().join("crak-sysvipc.lock")))
        .map_err(|e| RestoreError::failed("locking SysV IPC ids", e.to_string()))?;
    for s in &image.shm_segments {
        let mut perm = s.perm.clone();
        if perm.mode & SHM_DEST != 0 && perm.key == 0 {
            // A removed segment lost its key, but /proc/PID/maps still names it by the key it
            // was made with: made with that key again (when free), it shows the same name, and
            // loses the key when it is removed again.
            if let Some(k) =
                original_key(image, perm.id).filter(|&k| Kind::Shm.id_of_key(k as i32).is_none())
            {
                perm.key = k;
            }
        }
        let id = make(&mut created, Kind::Shm, &perm, replace, |key, flags| {
            sysvipc::shm_get(key, s.size, flags)
        })?;
        let set = || -> crate::sys::Result<()> {
            sysvipc::shm_write(id, s.size, s.data.as_bytes())?;
            sysvipc::shm_set(id, s.perm.uid, s.perm.gid, s.perm.mode)
        };
        set().map_err(|e| failed(Kind::Shm, id, e))?;
        if s.perm.mode & SHM_DEST != 0 {
            created.destroyed.push(id);
        }
    }
    for s in &image.sem_sets {
        let n = i32::try_from(s.sems.len()).unwrap_or(i32::MAX);
        let id = make(&mut created, Kind::Sem, &s.perm, replace, |key, flags| {
            sysvipc::sem_get(key, n, flags)
        })?;
        let values: Vec<u16> = s.sems.iter().map(|m| m.value as u16).collect();
        let set = || -> crate::sys::Result<()> {
            sysvipc::sem_set_all(id, &values)?;
            sysvipc::sem_set(id, s.perm.uid, s.perm.gid, s.perm.mode)
        };
        set().map_err(|e| failed(Kind::Sem, id, e))?;
    }
    for q in &image.msg_queues {
        let id = make(&mut created, Kind::Msg, &q.perm, replace, sysvipc::msg_get)?;
        let set = || -> crate::sys::Result<()> {
            // qbytes first (root may raise it), so that the messages fit as they did.
            sysvipc::msg_set(id, 0, 0, 0o600, q.qbytes)?;
            for m in &q.messages {
                sysvipc::msg_send(id, m.mtype, m.text.as_bytes())?;
            }
            sysvipc::msg_set(id, q.perm.uid, q.perm.gid, q.perm.mode, q.qbytes)
        };
        set().map_err(|e| failed(Kind::Msg, id, e))?;
    }
    Ok(created)
}

/// The key a mapping of segment `id` is named after (`/SYSV%08x`), if any mapping names one.
fn original_key(image: &Image<'_>, id: u32) -> Option<u32> {
    image
        .processes
        .iter()
        .flat_map(|p| &p.vmas)
        .filter(|v| v.kind == VmaKind::SysvShm && v.ino == u64::from(id))
        .find_map(|v| {
            let hex = v.path.as_bytes().strip_prefix(b"/SYSV")?.get(..8)?;
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
        })
        .filter(|&k| k != 0)
}

fn failed(kind: Kind, id: i32, e: crate::sys::SysError) -> RestoreError {
    RestoreError::failed(format!("restoring {} {id}", kind.name()), e.to_string())
}

/// Makes one object with the saved id and key (`get(key, flags)` creates it); it is recorded in
/// `created` as soon as it exists.
fn make(
    created: &mut Created,
    kind: Kind,
    perm: &IpcPerm,
    replace: bool,
    get: impl Fn(i32, i32) -> crate::sys::Result<i32>,
) -> Result<i32, RestoreError> {
    let id = perm.id as i32;
    let key = perm.key as i32;
    let what = kind.name();
    if let Some(old_key) = kind.key_of(id) {
        if !replace || old_key != key {
            return Err(RestoreError::Refused(format!(
                "{what} {id} (key {key:#010x}) cannot be recreated: id {id} is taken by an existing object with key {old_key:#010x}{}",
                if old_key == key {
                    " (the original, still there: --ipc-replace removes it and recreates it from the image)"
                } else {
                    ""
                }
            )));
        }
        kind.rmid(id).map_err(|e| failed(kind, id, e))?;
    }
    if key != 0 {
        if let Some(other) = kind.id_of_key(key) {
            return Err(RestoreError::Refused(format!(
                "{what} {id} cannot be recreated: its key {key:#010x} is taken by id {other}"
            )));
        }
    }
    std::fs::write(kind.next_id(), id.to_string()).map_err(|e| {
        RestoreError::Refused(format!(
            "{what} {id}: writing {} ({e}); choosing an IPC id needs root and CONFIG_CHECKPOINT_RESTORE",
            kind.next_id()
        ))
    })?;
    let got = get(
        key,
        libc::IPC_CREAT | libc::IPC_EXCL | (perm.mode & PERM_BITS) as i32,
    );
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            // The kernel consumes next_id only on success.
            let _ = std::fs::write(kind.next_id(), "-1");
            return Err(failed(kind, id, e));
        }
    };
    created.made.push((kind, got));
    if got != id {
        let still = if kind == Kind::Shm {
            sysvipc::shm_stat(id)
                .ok()
                .map(|s| {
                    format!(
                        " (the old segment {id} is still attached {} times)",
                        s.nattch
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        return Err(RestoreError::Refused(format!(
            "{what} {id} was recreated as id {got}: the id was taken meanwhile{still}"
        )));
    }
    Ok(id)
}
