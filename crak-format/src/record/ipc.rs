//! The fields every System V IPC record starts with (`spec/crak-format.md#sysv-ipc`): the
//! object's id and its `ipc_perm`. SHM, SEM and MSG records share them.

use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Size of the common prefix: id, key, uid, gid, cuid, cgid, mode, reserved.
pub const IPC_HEADER_SIZE: usize = 32;

/// Id, key and permissions of a System V IPC object (spec §3.18).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcPerm {
    /// The object's id (`shmid`, `semid`, `msqid`) in its IPC namespace.
    pub id: u32,
    /// Its key (`key_t`, as the 32 bits of the `int`); 0 is `IPC_PRIVATE`.
    pub key: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid (informative).
    pub cuid: u32,
    /// Creator gid (informative).
    pub cgid: u32,
    /// `ipc_perm.mode`: permission bits 0o777, with SHM's `SHM_DEST` (0o1000) and
    /// `SHM_LOCKED` (0o2000).
    pub mode: u32,
}

/// The permission bits a restorer applies (`IPC_SET`).
pub const PERM_BITS: u32 = 0o777;

/// Parses the 32-byte prefix.
pub(crate) fn perm(i: &[u8]) -> PResult<'_, IpcPerm> {
    let (r, id) = wire::u32f("id")(i)?;
    let (r, key) = wire::u32f("key")(r)?;
    let (r, uid) = wire::u32f("uid")(r)?;
    let (r, gid) = wire::u32f("gid")(r)?;
    let (r, cuid) = wire::u32f("cuid")(r)?;
    let (r, cgid) = wire::u32f("cgid")(r)?;
    let (r, mode) = wire::u32f("mode")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    Ok((
        r,
        IpcPerm {
            id,
            key,
            uid,
            gid,
            cuid,
            cgid,
            mode,
        },
    ))
}

/// Appends the 32-byte prefix.
pub(crate) fn put_perm(out: &mut Vec<u8>, p: &IpcPerm) {
    for v in [p.id, p.key, p.uid, p.gid, p.cuid, p.cgid, p.mode, 0] {
        wire::put_u32(out, v);
    }
}
