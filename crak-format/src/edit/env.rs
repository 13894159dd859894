//! Environment variables (the strings at `env_start..env_end` and the `envp` array on the
//! stack).
//!
//! At exec the kernel puts the environment strings near the top of the stack and an array of
//! pointers to them (`envp`, ended by a NULL, followed by the auxiliary vector) below; libc's
//! `environ` points at that array until the program calls `setenv` or `putenv`. So a change of a
//! variable is made where the program will look: the new block of strings is written over the
//! old one when it fits (the bytes it no longer needs become zeros), or else into a fresh
//! private anonymous mapping below the stack's growth room; every `envp` pointer is rewritten
//! to its string's new place, and MM's `env_start`/`env_end` and PROCESS's `environ` follow. The
//! array cannot grow without moving the auxiliary vector, which libc holds pointers to, so only
//! a variable the process already has can be changed.
//! A pointer the program kept to a string after the changed one (a `getenv` result) would
//! see the shifted bytes; a program that rebuilt its environment with `setenv` does not read
//! the stack's array at all. Both are beyond what an image can tell.

use super::{memory, refused, EditError};
use crate::bytes::ByteString;
use crate::image::Image;

/// How far below `env_start` the `envp` array is searched for.
const ENVP_SEARCH: u64 = 1 << 20;

/// Sets environment variable `key` of process `pid` (or the first process) to `value`.
pub fn set_env(
    image: &mut Image<'_>,
    pid: Option<u32>,
    key: &[u8],
    value: &[u8],
) -> Result<(), EditError> {
    if key.is_empty() || key.contains(&b'=') || key.contains(&0) || value.contains(&0) {
        return refused("--set-env needs KEY=VALUE with a non-empty KEY without '=' or NUL");
    }
    let p = super::select(image, pid)?;
    let pid = p.pid();
    let mm =
        p.mm.as_ref()
            .ok_or_else(|| EditError::Refused(format!("process {pid} has no MM record")))?;
    let (start, end) = (mm.env_start, mm.env_end);
    if end <= start {
        return refused(format!(
            "process {pid} has an empty environment (env_start {start:#x}, env_end {end:#x}); there is no variable to change"
        ));
    }
    if end - start > u64::from(crate::record::process::MAX_ARGS) {
        return refused(format!(
            "the environment of process {pid} spans {} bytes, more than an image holds",
            end - start
        ));
    }
    let old = memory::read_memory(image, Some(pid), start, end - start)?;
    // Entries and their offsets in the block; the last may lack its NUL.
    let mut entries: Vec<(usize, &[u8])> = Vec::new();
    let mut off = 0usize;
    for s in old.split(|&b| b == 0) {
        if off < old.len() {
            entries.push((off, s));
        }
        off = off.saturating_add(s.len()).saturating_add(1);
    }
    if let Some(last) = entries.last() {
        if last.1.is_empty() && last.0 + 1 >= old.len() {
            entries.pop();
        }
    }
    let mut prefix = key.to_vec();
    prefix.push(b'=');
    let Some(idx) = entries.iter().position(|(_, s)| s.starts_with(&prefix)) else {
        return refused(format!(
            "{} is not in the environment of process {pid}; only a variable the process has can be changed (its envp array has no free slot)",
            String::from_utf8_lossy(key)
        ));
    };
    let mut new_block = Vec::with_capacity(old.len());
    let mut new_offsets = Vec::with_capacity(entries.len());
    for (i, (_, s)) in entries.iter().enumerate() {
        new_offsets.push(new_block.len());
        if i == idx {
            new_block.extend_from_slice(&prefix);
            new_block.extend_from_slice(value);
        } else {
            new_block.extend_from_slice(s);
        }
        new_block.push(0);
    }
    // The envp array: the old pointers in order, then NULL.
    let mut pattern = Vec::with_capacity((entries.len() + 1) * 8);
    for (o, _) in &entries {
        pattern.extend_from_slice(&(start + *o as u64).to_le_bytes());
    }
    pattern.extend_from_slice(&0u64.to_le_bytes());
    let p = image.process(pid).ok_or(EditError::NoProcess(pid))?;
    let stack = p
        .vmas
        .iter()
        .find(|v| v.start <= start && start < v.end)
        .ok_or(EditError::Unmapped { pid, addr: start })?;
    let from = start.saturating_sub(ENVP_SEARCH).max(stack.start) & !7;
    let below = memory::read_memory(image, Some(pid), from, start - from)?;
    let found: Vec<usize> = below
        .windows(pattern.len())
        .enumerate()
        .filter(|(i, w)| i % 8 == 0 && *w == pattern.as_slice())
        .map(|(i, _)| i)
        .collect();
    let at = match found.as_slice() {
        [one] => from + *one as u64,
        [] => {
            return refused(format!(
                "the envp array of process {pid} (pointers to its {} environment strings) is not on its stack below {start:#x}",
                entries.len()
            ))
        }
        _ => {
            return refused(format!(
                "the envp array of process {pid} appears {} times on its stack; which one libc uses is unknown",
                found.len()
            ))
        }
    };
    let mut work = image.clone();
    // In place when it fits (the bytes no longer needed become zeros), else in a fresh area.
    let base = if new_block.len() <= old.len() {
        let mut strings = new_block.clone();
        strings.resize(old.len(), 0);
        memory::poke(&mut work, Some(pid), start, &strings)?;
        start
    } else {
        fresh_area(&mut work, pid, new_block.len() as u64)?
    };
    let mut pointers = Vec::with_capacity(pattern.len());
    for o in &new_offsets {
        pointers.extend_from_slice(&(base + *o as u64).to_le_bytes());
    }
    if base != start {
        memory::poke(&mut work, Some(pid), base, &new_block)?;
    }
    memory::poke(&mut work, Some(pid), at, &pointers)?;
    let p = super::select(&mut work, Some(pid))?;
    if let Some(mm) = &mut p.mm {
        mm.env_start = base;
        mm.env_end = base + new_block.len() as u64;
    }
    p.process.environ = ByteString(new_block);
    *image = work;
    Ok(())
}

/// Room the stack keeps below it for growth when RLIMIT_STACK says nothing usable.
const STACK_ROOM: u64 = 8 << 20;
/// Free space left between the fresh area and the stack's growth limit.
const GUARD: u64 = 1 << 20;

/// Adds a private anonymous read-write VMA of at least `len` bytes to process `pid`, in the
/// highest free range below the room its stack may grow into (RLIMIT_STACK, at least 8 MiB,
/// plus 1 MiB), and returns its start. Its pages are unrecorded (zero) until written.
fn fresh_area(image: &mut Image<'_>, pid: u32, len: u64) -> Result<u64, EditError> {
    use crate::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    let ps = u64::from(image.header.page_size).max(4096);
    let p = super::select(image, Some(pid))?;
    let size = len
        .checked_add(ps - 1)
        .map(|l| l & !(ps - 1))
        .ok_or_else(|| EditError::Refused("environment too large".into()))?;
    let stack = p
        .vmas
        .iter()
        .find(|v| v.kind == VmaKind::Stack)
        .map(|v| (v.start, v.end))
        .ok_or_else(|| EditError::Refused(format!("process {pid} has no stack mapping")))?;
    let rlimit = p
        .rlimits
        .as_ref()
        .and_then(|r| r.limits.iter().find(|l| l.resource == 3))
        .map(|l| l.cur)
        .filter(|&c| c <= 1 << 30)
        .unwrap_or(0)
        .max(STACK_ROOM);
    let mut top = stack
        .1
        .saturating_sub(rlimit)
        .saturating_sub(GUARD)
        .min(stack.0)
        & !(ps - 1);
    // Walk down past every VMA that overlaps [top - size, top).
    let mut vmas: Vec<(u64, u64)> = p.vmas.iter().map(|v| (v.start, v.end)).collect();
    vmas.sort();
    loop {
        let Some(lo) = top.checked_sub(size) else {
            return refused(format!(
                "no free range of {size} bytes for the environment of process {pid}"
            ));
        };
        match vmas.iter().rev().find(|&&(s, e)| s < top && lo < e) {
            Some(&(s, _)) => top = s & !(ps - 1),
            None if lo >= 0x10000 => {
                let at = vmas.partition_point(|&(s, _)| s < lo);
                p.vmas.insert(
                    at.min(p.vmas.len()),
                    Vma {
                        pid,
                        kind: VmaKind::Anon,
                        start: lo,
                        end: top,
                        prot: PROT_READ | PROT_WRITE,
                        flags: MAP_PRIVATE,
                        madvise: 0,
                        pgoff: 0,
                        dev: 0,
                        ino: 0,
                        size: 0,
                        mtime_ns: 0,
                        path: ByteString::default(),
                    },
                );
                return Ok(lo);
            }
            None => {
                return refused(format!(
                    "no free range of {size} bytes for the environment of process {pid}"
                ))
            }
        }
    }
}
