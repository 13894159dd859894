//! Reading and writing another process's memory: `process_vm_readv(2)`/`process_vm_writev(2)`
//! with many remote iovecs per call, and `/proc/PID/mem` (`proc(5)`) `pread`/`pwrite` as the
//! fallback that also reaches read-only and `PROT_NONE` pages (the kernel uses `FOLL_FORCE`).
//!
//! A *range list* is a slice of `(address, length)` pairs in the target, read into or written
//! from one contiguous local buffer whose length is the sum of the lengths.

use super::{Pid, Result, SysError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

/// Remote iovecs per `process_vm_readv`/`writev` call (the kernel's `UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// Which direction a vm call moves bytes.
#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// One `process_vm_readv`/`process_vm_writev` call over at most [`IOV_MAX`] remote ranges and one
/// local buffer; returns the bytes transferred, which may be fewer than asked (the transfer stops
/// at the first inaccessible page).
fn vm_call(
    pid: Pid,
    dir: Dir,
    local: *mut u8,
    local_len: usize,
    remote: &[(u64, usize)],
) -> Result<usize> {
    let n = remote.len().min(IOV_MAX);
    let riov: Vec<libc::iovec> = remote
        .iter()
        .take(n)
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let liov = libc::iovec {
        iov_base: local.cast(),
        iov_len: local_len,
    };
    let ret = match dir {
        // SAFETY: the local iovec describes `local_len` bytes the caller owns (writable for a
        // read); the remote iovecs are addresses in another process, which the kernel checks.
        Dir::Read => unsafe {
            libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), n as libc::c_ulong, 0)
        },
        // SAFETY: as above; the kernel only reads the local buffer for a write.
        Dir::Write => unsafe {
            libc::process_vm_writev(pid, &liov, 1, riov.as_ptr(), n as libc::c_ulong, 0)
        },
    };
    if ret < 0 {
        let name = match dir {
            Dir::Read => "process_vm_readv",
            Dir::Write => "process_vm_writev",
        };
        return Err(SysError::last(format!("{name}({pid}, {n} ranges)")));
    }
    Ok(ret as usize)
}

fn total_len(remote: &[(u64, usize)]) -> Result<usize> {
    remote
        .iter()
        .try_fold(0usize, |acc, &(_, l)| acc.checked_add(l))
        .ok_or_else(|| SysError::from_errno("memory range list", libc::EOVERFLOW))
}

/// `process_vm_readv(2)` of one batch (≤ [`IOV_MAX`] ranges) into `local` (at least as long as
/// the batch); returns the bytes read, possibly short. Most callers want [`read_ranges`].
pub fn vm_readv(pid: Pid, remote: &[(u64, usize)], local: &mut [u8]) -> Result<usize> {
    let want = total_len(remote.get(..remote.len().min(IOV_MAX)).unwrap_or(&[]))?;
    if local.len() < want {
        return Err(SysError::from_errno(
            "process_vm_readv: local buffer too small",
            libc::EINVAL,
        ));
    }
    vm_call(pid, Dir::Read, local.as_mut_ptr(), want, remote)
}

/// `process_vm_writev(2)` of one batch (≤ [`IOV_MAX`] ranges) from `local`; returns the bytes
/// written, possibly short. Most callers want [`write_ranges`].
pub fn vm_writev(pid: Pid, remote: &[(u64, usize)], local: &[u8]) -> Result<usize> {
    let want = total_len(remote.get(..remote.len().min(IOV_MAX)).unwrap_or(&[]))?;
    if local.len() < want {
        return Err(SysError::from_errno(
            "process_vm_writev: local buffer too small",
            libc::EINVAL,
        ));
    }
    vm_call(pid, Dir::Write, local.as_ptr().cast_mut(), want, remote)
}

/// An open `/proc/PID/mem` (proc(5)): positional reads and writes at target addresses, which also
/// work on pages the target cannot read or write itself.
pub struct ProcMem {
    file: File,
    pid: Pid,
}

impl ProcMem {
    /// Opens `/proc/PID/mem` for reading, or for reading and writing.
    pub fn open(pid: Pid, writable: bool) -> Result<ProcMem> {
        let path = format!("/proc/{pid}/mem");
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| SysError::io(format!("open({path})"), e))?;
        Ok(ProcMem { file, pid })
    }

    /// `pread(2)` loop: fills `buf` from target address `addr`.
    pub fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, addr).map_err(|e| {
            SysError::io(
                format!("pread(/proc/{}/mem, {:#x}, {})", self.pid, addr, buf.len()),
                e,
            )
        })
    }

    /// `pwrite(2)` loop: writes all of `data` at target address `addr`.
    pub fn write_all_at(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, addr).map_err(|e| {
            SysError::io(
                format!(
                    "pwrite(/proc/{}/mem, {:#x}, {})",
                    self.pid,
                    addr,
                    data.len()
                ),
                e,
            )
        })
    }
}

/// Finds where a short transfer of `done` bytes over `remote` stopped: the index of the range and
/// the offset inside it.
fn split_at(remote: &[(u64, usize)], mut done: usize) -> (usize, usize) {
    for (i, &(_, len)) in remote.iter().enumerate() {
        if done < len {
            return (i, done);
        }
        done -= len;
    }
    (remote.len(), 0)
}

fn transfer(
    pid: Pid,
    dir: Dir,
    remote: &[(u64, usize)],
    local: *mut u8,
    local_len: usize,
) -> Result<()> {
    let need = total_len(remote)?;
    if local_len < need {
        return Err(SysError::from_errno(
            "memory transfer: local buffer too small",
            libc::EINVAL,
        ));
    }
    let mut proc_mem: Option<ProcMem> = None;
    let mut off = 0usize; // into local
    let mut rest = remote;
    while !rest.is_empty() {
        let batch = rest.get(..rest.len().min(IOV_MAX)).unwrap_or(rest);
        let batch_len = total_len(batch)?;
        // off + batch_len <= need <= local_len (checked above), so the pointer stays in bounds.
        let done = match vm_call(pid, dir, local.wrapping_add(off), batch_len, batch) {
            Ok(n) => n.min(batch_len),
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::EFAULT)
                        | Some(libc::ENOMEM)
                        | Some(libc::EPERM)
                        | Some(libc::ENOSYS)
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if done < batch_len {
            // Finish this batch through /proc/PID/mem, range by range.
            let pm = match &proc_mem {
                Some(pm) => pm,
                None => proc_mem.insert(ProcMem::open(pid, matches!(dir, Dir::Write))?),
            };
            let (i, inner) = split_at(batch, done);
            let mut loff = off + done;
            for (k, &(addr, len)) in batch.iter().enumerate().skip(i) {
                let skip = if k == i { inner } else { 0 };
                let n = len - skip;
                let a = addr
                    .checked_add(skip as u64)
                    .ok_or_else(|| SysError::from_errno("memory range", libc::EOVERFLOW))?;
                match dir {
                    Dir::Read => {
                        // SAFETY: loff + n <= off + batch_len <= local_len, so the slice lies
                        // inside the caller's exclusive (`&mut`) buffer, which outlives this call
                        // and is not otherwise accessed while the slice lives.
                        let chunk = unsafe { std::slice::from_raw_parts_mut(local.add(loff), n) };
                        pm.read_exact_at(a, chunk)?;
                    }
                    Dir::Write => {
                        // SAFETY: as above, inside the caller's buffer; only read through a
                        // shared slice, as the caller passed a shared `&[u8]`.
                        let chunk =
                            unsafe { std::slice::from_raw_parts(local.add(loff).cast_const(), n) };
                        pm.write_all_at(a, chunk)?;
                    }
                }
                loff += n;
            }
        }
        off += batch_len;
        rest = rest.get(batch.len()..).unwrap_or(&[]);
    }
    Ok(())
}

/// Reads every range of `remote` from process `pid`, in order, into `local` (whose length must be
/// at least the sum of the range lengths), with as few `process_vm_readv(2)` calls as possible
/// ([`IOV_MAX`] ranges each); a range that call cannot read (e.g. a `PROT_NONE` page) is read
/// through `/proc/PID/mem` instead.
pub fn read_ranges(pid: Pid, remote: &[(u64, usize)], local: &mut [u8]) -> Result<()> {
    transfer(pid, Dir::Read, remote, local.as_mut_ptr(), local.len())
}

/// Writes `local` into the ranges of `remote` of process `pid`, in order, with batched
/// `process_vm_writev(2)` calls and `/proc/PID/mem` for what that cannot write (read-only or
/// `PROT_NONE` pages).
pub fn write_ranges(pid: Pid, remote: &[(u64, usize)], local: &[u8]) -> Result<()> {
    transfer(
        pid,
        Dir::Write,
        remote,
        local.as_ptr().cast_mut(),
        local.len(),
    )
}

/// Reads `buf.len()` bytes at `addr` of process `pid` (see [`read_ranges`]).
pub fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    read_ranges(pid, &[(addr, len)], buf)
}

/// Reads `len` bytes at `addr` of process `pid` into a new vector.
pub fn read_vec(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    read(pid, addr, &mut v)?;
    Ok(v)
}

/// Writes `data` at `addr` of process `pid` (see [`write_ranges`]).
pub fn write(pid: Pid, addr: u64, data: &[u8]) -> Result<()> {
    write_ranges(pid, &[(addr, data.len())], data)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(*mut u8, usize);

    impl Map {
        fn new(pages: usize) -> Map {
            let len = pages * 4096;
            // SAFETY: a fresh anonymous private mapping; checked for failure below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Map(p.cast(), len)
        }
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is len bytes, readable and writable, owned by self.
            unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
        }
        fn protect_none(&self, page: usize) {
            // SAFETY: the page lies inside our mapping.
            let r =
                unsafe { libc::mprotect(self.0.add(page * 4096).cast(), 4096, libc::PROT_NONE) };
            assert_eq!(r, 0);
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: unmapping our own mapping, not used after this.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    #[test]
    fn batched_reads_over_iov_max_with_a_prot_none_page() {
        let pages = 2 * IOV_MAX + 10;
        let mut m = Map::new(pages * 2);
        for (i, b) in m.bytes().iter_mut().enumerate() {
            *b = (i / 4096) as u8 ^ (i as u8);
        }
        let expect: Vec<u8> = m.bytes().to_vec();
        // Every other page: more ranges than one call takes; one of them unreadable.
        let base = m.0 as u64;
        let ranges: Vec<(u64, usize)> = (0..pages)
            .map(|k| (base + (2 * k * 4096) as u64, 4096))
            .collect();
        m.protect_none(2 * (IOV_MAX + 3));
        let me = std::process::id() as Pid;
        let mut buf = vec![0u8; pages * 4096];
        read_ranges(me, &ranges, &mut buf).unwrap();
        for (k, chunk) in buf.chunks_exact(4096).enumerate() {
            let off = 2 * k * 4096;
            assert_eq!(chunk, &expect[off..off + 4096], "page {k}");
        }
        // Writing through the same path reaches the PROT_NONE page too.
        let target = base + (2 * (IOV_MAX + 3) * 4096) as u64;
        write(me, target, &[0xEE; 16]).unwrap();
        assert_eq!(read_vec(me, target, 16).unwrap(), vec![0xEE; 16]);
        // A buffer shorter than the ranges is refused, not overrun.
        assert!(read_ranges(me, &ranges, &mut buf[..4096]).is_err());
    }
}
