//! System V IPC: shared memory segments (`shmget(2)`, `shmat(2)`, `shmctl(2)`), semaphore
//! sets (`semget(2)`, `semctl(2)`) and message queues (`msgget(2)`, `msgsnd(2)`,
//! `msgrcv(2)`, `msgctl(2)`) of the caller's IPC namespace.
//!
//! The control calls are made as raw x86_64 system calls, which always use the kernel's
//! 64-bit structures (`IPC_64`); the structures below mirror them.

use super::{check, Result, SysError};

/// `struct ipc64_perm` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Ipc64Perm {
    key: i32,
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    mode: u16,
    pad1: u16,
    seq: u16,
    pad2: u16,
    unused1: u64,
    unused2: u64,
}

/// `struct shmid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Shmid64Ds {
    perm: Ipc64Perm,
    segsz: u64,
    atime: i64,
    dtime: i64,
    ctime: i64,
    cpid: i32,
    lpid: i32,
    nattch: u64,
    unused4: u64,
    unused5: u64,
}

/// `struct semid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Semid64Ds {
    perm: Ipc64Perm,
    otime: i64,
    unused1: u64,
    ctime: i64,
    unused2: u64,
    nsems: u64,
    unused3: u64,
    unused4: u64,
}

/// `struct msqid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Msqid64Ds {
    perm: Ipc64Perm,
    stime: i64,
    rtime: i64,
    ctime: i64,
    cbytes: u64,
    qnum: u64,
    qbytes: u64,
    lspid: i32,
    lrpid: i32,
    unused4: u64,
    unused5: u64,
}

/// Key, owner, creator and mode of an object (`ipc_perm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perm {
    /// `key_t`.
    pub key: i32,
    /// Owner.
    pub uid: u32,
    /// Owner group.
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    /// Creator group.
    pub cgid: u32,
    /// Mode: permission bits, and `SHM_DEST`/`SHM_LOCKED` for segments.
    pub mode: u32,
}

impl From<Ipc64Perm> for Perm {
    fn from(p: Ipc64Perm) -> Perm {
        Perm {
            key: p.key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: u32::from(p.mode),
        }
    }
}

fn set_perm(uid: u32, gid: u32, mode: u32) -> Ipc64Perm {
    Ipc64Perm {
        uid,
        gid,
        mode: (mode & 0o777) as u16,
        ..Ipc64Perm::default()
    }
}

/// `ctl(id, cmd, buf)` as a raw system call.
fn ctl<T>(nr: libc::c_long, name: &str, id: i32, cmd: i32, buf: *mut T) -> Result<libc::c_long> {
    // SAFETY: `buf` is null or points to a live, writable structure of the kernel's 64-bit
    // layout for `cmd` (the callers pass their own local of the right type).
    let r = unsafe { libc::syscall(nr, id, cmd, buf) };
    check(r, || format!("{name}({id}, {cmd})"))
}

/// A segment's `IPC_STAT` (`shmctl(2)`).
#[derive(Clone, Copy, Debug)]
pub struct ShmStat {
    /// Key and permissions.
    pub perm: Perm,
    /// Size in bytes.
    pub size: u64,
    /// Creator pid.
    pub cpid: i32,
    /// Pid of the last attach or detach.
    pub lpid: i32,
    /// Attachments.
    pub nattch: u64,
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> Result<ShmStat> {
    let mut ds = Shmid64Ds::default();
    ctl(libc::SYS_shmctl, "shmctl", id, libc::IPC_STAT, &mut ds)?;
    Ok(ShmStat {
        perm: ds.perm.into(),
        size: ds.segsz,
        cpid: ds.cpid,
        lpid: ds.lpid,
        nattch: ds.nattch,
    })
}

/// `shmget(key, size, flags)`.
pub fn shm_get(key: i32, size: u64, flags: i32) -> Result<i32> {
    let size = usize::try_from(size).map_err(|_| SysError::from_errno("shmget", libc::EINVAL))?;
    // SAFETY: shmget takes integers only.
    let r = unsafe { libc::shmget(key, size, flags) };
    check(r.into(), || format!("shmget({key:#x}, {size})")).map(|v| v as i32)
}

/// `shmctl(id, IPC_SET)` with owner and permission bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let mut ds = Shmid64Ds {
        perm: set_perm(uid, gid, mode),
        ..Shmid64Ds::default()
    };
    ctl(
        libc::SYS_shmctl,
        "shmctl(IPC_SET)",
        id,
        libc::IPC_SET,
        &mut ds,
    )
    .map(drop)
}

/// `shmctl(id, IPC_RMID)`.
pub fn shm_rmid(id: i32) -> Result<()> {
    ctl::<u8>(
        libc::SYS_shmctl,
        "shmctl(IPC_RMID)",
        id,
        libc::IPC_RMID,
        std::ptr::null_mut(),
    )
    .map(drop)
}

/// A segment attached to this process, detached when dropped (`shmat(2)`, `shmdt(2)`).
struct Attached {
    addr: *mut libc::c_void,
    len: usize,
}

impl Attached {
    fn new(id: i32, size: u64, flags: i32) -> Result<Attached> {
        let len = usize::try_from(size).map_err(|_| SysError::from_errno("shmat", libc::EINVAL))?;
        // SAFETY: a null address lets the kernel choose a free range; nothing of ours is
        // replaced.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(SysError::last(format!("shmat({id})")));
        }
        Ok(Attached { addr, len })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: `addr` is the attachment made in `new`, not detached yet, and no slice of it
        // outlives the borrow that made it.
        unsafe { libc::shmdt(self.addr) };
    }
}

/// The first `len` bytes of segment `id` of `size` bytes (attached read-only for the copy).
pub fn shm_read(id: i32, size: u64, len: usize) -> Result<Vec<u8>> {
    let a = Attached::new(id, size, libc::SHM_RDONLY)?;
    let n = len.min(a.len);
    // SAFETY: the attachment maps `a.len` readable bytes at `a.addr`, and `n <= a.len`.
    let s = unsafe { std::slice::from_raw_parts(a.addr as *const u8, n) };
    Ok(s.to_vec())
}

/// Writes `data` at the start of segment `id` of `size` bytes.
pub fn shm_write(id: i32, size: u64, data: &[u8]) -> Result<()> {
    let a = Attached::new(id, size, 0)?;
    if data.len() > a.len {
        return Err(SysError::from_errno(
            format!("writing segment {id}"),
            libc::EFBIG,
        ));
    }
    // SAFETY: the attachment maps `a.len` writable bytes at `a.addr`, `data.len() <= a.len`,
    // and `data` (our memory) cannot overlap a fresh attachment.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), a.addr as *mut u8, data.len()) };
    Ok(())
}

/// `semctl(id, 0, IPC_STAT)`: permissions and the number of semaphores.
pub fn sem_stat(id: i32) -> Result<(Perm, u64)> {
    let mut ds = Semid64Ds::default();
    sem_ctl(id, 0, libc::IPC_STAT, &mut ds as *mut Semid64Ds as usize)?;
    Ok((ds.perm.into(), ds.nsems))
}

fn sem_ctl(id: i32, num: i32, cmd: i32, arg: usize) -> Result<libc::c_long> {
    // SAFETY: `arg` is an integer or the address of a live buffer of the size `cmd` needs
    // (checked by the callers: a semid64_ds, or `nsems` u16 values).
    let r = unsafe { libc::syscall(libc::SYS_semctl, id, num, cmd, arg) };
    check(r, || format!("semctl({id}, {num}, {cmd})"))
}

/// `semctl(id, 0, GETALL)` for a set of `nsems` semaphores.
pub fn sem_values(id: i32, nsems: usize) -> Result<Vec<u16>> {
    let (_, n) = sem_stat(id)?;
    if n != nsems as u64 {
        return Err(SysError::from_errno(
            format!("semaphore set {id} changed size"),
            libc::EAGAIN,
        ));
    }
    let mut v = vec![0u16; nsems];
    sem_ctl(id, 0, libc::GETALL, v.as_mut_ptr() as usize)?;
    Ok(v)
}

/// `semctl(id, num, GETPID)`: pid of the last operation on semaphore `num`.
pub fn sem_pid(id: i32, num: i32) -> Result<i32> {
    sem_ctl(id, num, libc::GETPID, 0).map(|v| v as i32)
}

/// `semget(key, nsems, flags)`.
pub fn sem_get(key: i32, nsems: i32, flags: i32) -> Result<i32> {
    // SAFETY: semget takes integers only.
    let r = unsafe { libc::semget(key, nsems, flags) };
    check(r.into(), || format!("semget({key:#x}, {nsems})")).map(|v| v as i32)
}

/// `semctl(id, 0, SETALL, values)`; `values` must hold one value per semaphore.
pub fn sem_set_all(id: i32, values: &[u16]) -> Result<()> {
    let (_, n) = sem_stat(id)?;
    if n != values.len() as u64 {
        return Err(SysError::from_errno(
            format!("semctl({id}, SETALL) of {} values", values.len()),
            libc::EINVAL,
        ));
    }
    sem_ctl(id, 0, libc::SETALL, values.as_ptr() as usize).map(drop)
}

/// `semctl(id, 0, IPC_SET)` with owner and permission bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let mut ds = Semid64Ds {
        perm: set_perm(uid, gid, mode),
        ..Semid64Ds::default()
    };
    sem_ctl(id, 0, libc::IPC_SET, &mut ds as *mut Semid64Ds as usize).map(drop)
}

/// `semctl(id, 0, IPC_RMID)`.
pub fn sem_rmid(id: i32) -> Result<()> {
    sem_ctl(id, 0, libc::IPC_RMID, 0).map(drop)
}

/// A queue's `IPC_STAT` (`msgctl(2)`).
#[derive(Clone, Copy, Debug)]
pub struct MsgStat {
    /// Key and permissions.
    pub perm: Perm,
    /// Most bytes the queue holds.
    pub qbytes: u64,
    /// Messages queued.
    pub qnum: u64,
    /// Bytes queued.
    pub cbytes: u64,
    /// Pid of the last `msgsnd`.
    pub lspid: i32,
    /// Pid of the last `msgrcv`.
    pub lrpid: i32,
}

/// `msgctl(id, IPC_STAT)`.
pub fn msg_stat(id: i32) -> Result<MsgStat> {
    let mut ds = Msqid64Ds::default();
    ctl(libc::SYS_msgctl, "msgctl", id, libc::IPC_STAT, &mut ds)?;
    Ok(MsgStat {
        perm: ds.perm.into(),
        qbytes: ds.qbytes,
        qnum: ds.qnum,
        cbytes: ds.cbytes,
        lspid: ds.lspid,
        lrpid: ds.lrpid,
    })
}

/// `msgget(key, flags)`.
pub fn msg_get(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: msgget takes integers only.
    let r = unsafe { libc::msgget(key, flags) };
    check(r.into(), || format!("msgget({key:#x})")).map(|v| v as i32)
}

/// `msgctl(id, IPC_SET)` with owner, permission bits and `msg_qbytes`.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<()> {
    let mut ds = Msqid64Ds {
        perm: set_perm(uid, gid, mode),
        qbytes,
        ..Msqid64Ds::default()
    };
    ctl(
        libc::SYS_msgctl,
        "msgctl(IPC_SET)",
        id,
        libc::IPC_SET,
        &mut ds,
    )
    .map(drop)
}

/// `msgctl(id, IPC_RMID)`.
pub fn msg_rmid(id: i32) -> Result<()> {
    ctl::<u8>(
        libc::SYS_msgctl,
        "msgctl(IPC_RMID)",
        id,
        libc::IPC_RMID,
        std::ptr::null_mut(),
    )
    .map(drop)
}

/// A copy of message number `index` (from 0) of queue `id`, left in the queue
/// (`msgrcv(id, buf, max, index, IPC_NOWAIT | MSG_COPY)`, which needs
/// `CONFIG_CHECKPOINT_RESTORE`); `None` past the last message. `max` bounds its text; `buf` is
/// scratch space, reused from call to call.
pub fn msg_copy(
    id: i32,
    index: u64,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<(i64, Vec<u8>)>> {
    buf.resize(max.saturating_add(8), 0);
    // SAFETY: `buf` holds the 8-byte mtype and `max` bytes of text, as msgrcv is told.
    let r = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr() as *mut libc::c_void,
            max,
            index as libc::c_long,
            libc::IPC_NOWAIT | libc::MSG_COPY,
        )
    };
    if r < 0 {
        let e = SysError::last(format!("msgrcv({id}, MSG_COPY {index})"));
        return if e.errno() == Some(libc::ENOMSG) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let n = r as usize;
    let mut t = [0u8; 8];
    t.copy_from_slice(buf.get(..8).unwrap_or(&[0; 8]));
    let text = buf.get(8..8 + n).unwrap_or_default().to_vec();
    Ok(Some((i64::from_ne_bytes(t), text)))
}

/// `msgsnd(id, {mtype, text}, IPC_NOWAIT)`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> Result<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` holds the 8-byte mtype followed by `text.len()` bytes, as msgsnd is told.
    let r = unsafe {
        libc::msgsnd(
            id,
            buf.as_ptr() as *const libc::c_void,
            text.len(),
            libc::IPC_NOWAIT,
        )
    };
    check(r.into(), || format!("msgsnd({id}, {} bytes)", text.len())).map(drop)
}

/// Opens (creating it) and locks `path` exclusively (`flock(2)`), waiting for another holder;
/// the lock goes with the returned file.
pub fn lock_file(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SysError::io(format!("open({})", path.display()), e))?;
    loop {
        // SAFETY: flock takes a descriptor we own and an integer.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(f);
        }
        let e = SysError::last(format!("flock({})", path.display()));
        if e.errno() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
