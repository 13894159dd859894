//! Rewriting an image for another kernel or CPU (`spec/crak-format.md` §6): the XSAVE areas
//! for the target CPU's components, the vDSO for the target kernel's, the version for this
//! writer. Whatever cannot be made safe is refused with the reason, and the image is left as
//! it was.

pub mod profile;

pub use profile::{component_name, KernelProfile, VdsoSymbol, XsaveComponent, PROFILE_FORMAT};

use crate::bytes::{Blob, ByteString};
use crate::image::{Image, Process, CURRENT_VERSION};
use crate::record::header::MAX_XSAVE_SIZE;
use crate::record::note::Note;
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::vma::{VmaKind, PROT_EXEC, PROT_READ};

/// Why a rewrite was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RewriteError(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, RewriteError> {
    Err(RewriteError(msg.into()))
}

/// Bytes of the legacy region and the XSAVE header of a standard-format area.
const LEGACY_AND_HEADER: usize = 576;
/// Offset of XSTATE_BV in the area.
const XSTATE_BV_AT: usize = 512;

/// The NOTE key a rewrite adds, with the target's kernel release as its value.
pub const NOTE_KEY: &str = "crak.rewrite.target";

/// Rewrites `image` for the host `target` describes. `source` is the profile of the capture
/// host; it is needed when the XSAVE layout or the vDSO differ (an image holds neither the
/// capture CPU's component offsets nor the capture kernel's vDSO). Returns one line per change.
pub fn rewrite(
    image: &mut Image<'_>,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Result<Vec<String>, RewriteError> {
    let mut work = image.clone();
    let mut done = Vec::new();
    if target.page_size != work.header.page_size {
        return refuse(format!(
            "the image has {}-byte pages, the target {}-byte pages",
            work.header.page_size, target.page_size
        ));
    }
    if work.version != CURRENT_VERSION {
        done.push(format!(
            "version {}.{} -> {}.{}",
            work.version.major, work.version.minor, CURRENT_VERSION.major, CURRENT_VERSION.minor
        ));
        work.version = CURRENT_VERSION;
    }
    done.extend(rewrite_xsave(&mut work, target, source)?);
    let pids: Vec<u32> = work.processes.iter().map(|p| p.pid()).collect();
    for pid in pids {
        let ps = u64::from(work.header.page_size);
        if let Some(p) = work.process_mut(pid) {
            done.extend(rewrite_vdso(p, ps, target, source)?);
        }
    }
    if !done.is_empty() {
        work.notes
            .retain(|n| n.key.as_bytes() != NOTE_KEY.as_bytes());
        work.notes.push(Note {
            key: ByteString::from(NOTE_KEY),
            value: target.kernel_release.clone(),
        });
    }
    *image = work;
    Ok(done)
}

fn rewrite_xsave(
    image: &mut Image<'_>,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Result<Vec<String>, RewriteError> {
    let (have, size) = (image.header.xsave_features, image.header.xsave_size);
    if (have, size) == (target.xsave_features, target.xsave_size) {
        return Ok(Vec::new());
    }
    let Some(src) = source else {
        return refuse(format!(
            "the image's XSAVE layout (features {have:#x}, {size} bytes) differs from the target's \
             ({:#x}, {} bytes); the capture CPU's component offsets are needed: give the capture \
             host's profile with --source",
            target.xsave_features, target.xsave_size
        ));
    };
    if (src.xsave_features, src.xsave_size) != (have, size) {
        return refuse(format!(
            "the source profile's XSAVE layout ({:#x}, {} bytes) is not the image's ({have:#x}, {size} bytes): it describes another CPU",
            src.xsave_features, src.xsave_size
        ));
    }
    let tsize = target.xsave_size as usize;
    if target.xsave_size > MAX_XSAVE_SIZE
        || tsize < LEGACY_AND_HEADER
        || target.xsave_features & 3 != 3
    {
        return refuse(format!(
            "the target's XSAVE layout ({:#x}, {} bytes) is not usable",
            target.xsave_features, target.xsave_size
        ));
    }
    let dropped = have & !target.xsave_features;
    let kept = have & target.xsave_features;
    for p in &image.processes {
        for x in &p.xsaves {
            let mut used = x.xstate_bv & dropped;
            if used & PKRU != 0 && pkru_droppable(x.area.as_bytes(), src) {
                used &= !PKRU;
            }
            if used != 0 {
                let bit = used.trailing_zeros();
                return refuse(format!(
                    "thread {} of process {} holds {} state (XSAVE component {bit}), which the target CPU lacks",
                    x.tid,
                    x.pid,
                    component_name(bit)
                ));
            }
        }
    }
    // Where each kept component ≥ 2 is in both layouts.
    let mut moves = Vec::new();
    for bit in 2..63u32 {
        if kept & (1u64 << bit) == 0 {
            continue;
        }
        let (Some(s), Some(t)) = (src.component(bit), target.component(bit)) else {
            return refuse(format!(
                "a profile does not give the place of {} (XSAVE component {bit})",
                component_name(bit)
            ));
        };
        let fits = |c: XsaveComponent, len: usize| {
            (c.offset as usize)
                .checked_add(c.size as usize)
                .is_some_and(|e| e <= len && c.offset as usize >= LEGACY_AND_HEADER)
        };
        if s.size != t.size || !fits(s, size as usize) || !fits(t, tsize) {
            return refuse(format!(
                "{} (XSAVE component {bit}) has another size or an impossible place on the target",
                component_name(bit)
            ));
        }
        moves.push((bit, s, t));
    }
    let mut n = 0usize;
    for p in &mut image.processes {
        for x in &mut p.xsaves {
            let old = x.area.as_bytes();
            let mut new = vec![0u8; tsize];
            let legacy = old.get(..XSTATE_BV_AT).ok_or_else(|| {
                RewriteError(format!("the XSAVE area of thread {} is too short", x.tid))
            })?;
            new[..XSTATE_BV_AT].copy_from_slice(legacy);
            let bv = x.xstate_bv & target.xsave_features;
            new[XSTATE_BV_AT..XSTATE_BV_AT + 8].copy_from_slice(&bv.to_le_bytes());
            for &(bit, s, t) in &moves {
                if bv & (1u64 << bit) == 0 {
                    continue; // init state: XRSTOR ignores the bytes
                }
                let from = old.get(s.offset as usize..(s.offset + s.size) as usize);
                let to = new.get_mut(t.offset as usize..(t.offset + t.size) as usize);
                match (from, to) {
                    (Some(f), Some(t)) => t.copy_from_slice(f),
                    _ => {
                        return refuse(format!(
                            "the XSAVE area of thread {} is too short for component {bit}",
                            x.tid
                        ))
                    }
                }
            }
            x.xstate_bv = bv;
            x.area = Blob::from(new);
            n += 1;
        }
    }
    image.header.xsave_features = target.xsave_features;
    image.header.xsave_size = target.xsave_size;
    let mut out = vec![format!(
        "XSAVE: features {have:#x} -> {:#x}, {size} -> {} bytes, {n} thread{}",
        target.xsave_features,
        target.xsave_size,
        if n == 1 { "" } else { "s" }
    )];
    for bit in 0..63u32 {
        if dropped & (1u64 << bit) != 0 {
            out.push(format!(
                "XSAVE: dropped {} (component {bit}, unused)",
                component_name(bit)
            ));
        }
    }
    Ok(out)
}

/// XSTATE_BV bit of PKRU.
const PKRU: u64 = 1 << 9;

/// Whether a thread's PKRU may be dropped for a CPU without protection keys: an image records no
/// protection key on any mapping, so every page has key 0, and a PKRU that leaves key 0 readable
/// and writable (its two low bits clear; the kernel's default denies only keys 1–15) restricts
/// nothing the process can reach.
fn pkru_droppable(area: &[u8], src: &KernelProfile) -> bool {
    let Some(c) = src.component(9) else {
        return false;
    };
    let at = c.offset as usize;
    at.checked_add(4)
        .and_then(|e| area.get(at..e))
        .and_then(|b| b.try_into().ok())
        .is_some_and(|b: [u8; 4]| u32::from_le_bytes(b) & 3 == 0)
}

/// `(start, end)` of the first VMA of `kind`.
fn special(p: &Process<'_>, kind: VmaKind) -> Option<(u64, u64)> {
    p.vmas
        .iter()
        .find(|v| v.kind == kind)
        .map(|v| (v.start, v.end))
}

fn target_special(t: &KernelProfile, kind: VmaKind) -> Option<(u64, u64)> {
    t.special_mappings
        .iter()
        .find(|m| m.kind == kind)
        .map(|m| (m.start, m.end))
}

/// Linux x86_64 system call numbers for the vDSO's functions.
fn syscall_for(name: &str) -> Option<Option<u32>> {
    let base = name.strip_prefix("__vdso_").unwrap_or(name);
    Some(match base {
        "clock_gettime" => Some(228),
        "gettimeofday" => Some(96),
        "time" => Some(201),
        "getcpu" => Some(309),
        "clock_getres" => Some(229),
        "getrandom" => Some(318),
        // No enclave can run after a move to another host: -ENOSYS.
        "sgx_enter_enclave" => None,
        _ => return None,
    })
}

/// Whether the process's vDSO needs replacing for `target`, and why.
fn vdso_differs(
    p: &Process<'_>,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Option<String> {
    let iv = special(p, VmaKind::Vdso)?;
    let tv = target_special(target, VmaKind::Vdso);
    let Some(tv) = tv else {
        return Some("the target kernel gives no vDSO".into());
    };
    for (name, kind) in [
        ("[vdso]", VmaKind::Vdso),
        ("[vvar]", VmaKind::Vvar),
        ("[vvar_vclock]", VmaKind::VvarVclock),
    ] {
        let (i, t) = (special(p, kind), target_special(target, kind));
        match (i, t) {
            (None, None) => {}
            (Some(i), Some(t)) => {
                let (il, tl) = (i.1.wrapping_sub(i.0), t.1.wrapping_sub(t.0));
                if il != tl {
                    return Some(format!(
                        "{name} is {} KiB in the image, {} KiB on the target",
                        il / 1024,
                        tl / 1024
                    ));
                }
                if iv.0.wrapping_sub(i.0) != tv.0.wrapping_sub(t.0) {
                    return Some(format!(
                        "{name} lies elsewhere relative to [vdso] on the target"
                    ));
                }
            }
            (Some(_), None) => return Some(format!("the target has no {name}")),
            (None, Some(_)) => return Some(format!("the image has no {name}")),
        }
    }
    if let Some(src) = source {
        if !src.vdso_symbols.is_empty() && !target.vdso_symbols.is_empty() {
            let mut a: Vec<_> = src
                .vdso_symbols
                .iter()
                .map(|s| (&s.name, s.offset))
                .collect();
            let mut b: Vec<_> = target
                .vdso_symbols
                .iter()
                .map(|s| (&s.name, s.offset))
                .collect();
            a.sort();
            b.sort();
            if a != b {
                return Some("the vDSO's functions are at other offsets on the target".into());
            }
        }
    }
    None
}

/// Replaces a vDSO that differs on the target with an anonymous copy of the capture kernel's
/// whose exported functions are system-call stubs (spec §6.3).
fn rewrite_vdso(
    p: &mut Process<'_>,
    ps: u64,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Result<Vec<String>, RewriteError> {
    let pid = p.pid();
    let Some(why) = vdso_differs(p, target, source) else {
        return Ok(Vec::new());
    };
    let Some((start, end)) = special(p, VmaKind::Vdso) else {
        return Ok(Vec::new());
    };
    let src = source.ok_or_else(|| {
        RewriteError(format!(
            "process {pid}: {why}; replacing its vDSO needs the capture kernel's vDSO: give the capture host's profile with --source"
        ))
    })?;
    let code = src.vdso.as_ref().ok_or_else(|| {
        RewriteError(format!(
            "process {pid}: {why}; the source profile holds no vDSO bytes"
        ))
    })?;
    let len = end.saturating_sub(start);
    if code.len() as u64 != len || len == 0 || len & (ps - 1) != 0 {
        return refuse(format!(
            "process {pid}: the source profile's vDSO is {} bytes, the image's [vdso] {len}: it is not the capture kernel's",
            code.len()
        ));
    }
    for t in &p.threads {
        if (start..end).contains(&t.gpr.rip) {
            return refuse(format!(
                "thread {} of process {pid} is stopped inside the vDSO (rip {:#x})",
                t.tid, t.gpr.rip
            ));
        }
    }
    let mut bytes = code.as_bytes().to_vec();
    let mut stubs: Vec<(u64, Vec<u8>, &str)> = Vec::new();
    for s in &src.vdso_symbols {
        let nr = syscall_for(&s.name).ok_or_else(|| {
            RewriteError(format!(
                "process {pid}: the vDSO exports {}, for which no system call stands in",
                s.name
            ))
        })?;
        let stub = match nr {
            // mov eax, nr; syscall; ret
            Some(nr) => {
                let mut v = vec![0xb8];
                v.extend_from_slice(&nr.to_le_bytes());
                v.extend_from_slice(&[0x0f, 0x05, 0xc3]);
                v
            }
            // mov eax, -ENOSYS; ret
            None => {
                let mut v = vec![0xb8];
                v.extend_from_slice(&(-38i32).to_le_bytes());
                v.push(0xc3);
                v
            }
        };
        if !stubs.iter().any(|(o, _, _)| *o == s.offset) {
            stubs.push((s.offset, stub, &s.name));
        }
    }
    stubs.sort_by_key(|s| s.0);
    for w in stubs.windows(2) {
        if let [a, b] = w {
            if a.0 + a.1.len() as u64 > b.0 {
                return refuse(format!(
                    "process {pid}: the vDSO functions {} and {} are too close for stubs",
                    a.2, b.2
                ));
            }
        }
    }
    for (off, stub, name) in &stubs {
        let at = usize::try_from(*off).unwrap_or(usize::MAX);
        match at
            .checked_add(stub.len())
            .and_then(|e| bytes.get_mut(at..e))
        {
            Some(dst) => dst.copy_from_slice(stub),
            None => {
                return refuse(format!(
                    "process {pid}: the vDSO function {name} lies outside the vDSO"
                ))
            }
        }
    }
    // The vvar mappings go (nothing reads them now); the vDSO becomes anonymous memory.
    let gone = |k: VmaKind| matches!(k, VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::VvarOther);
    let dropped: Vec<(u64, u64)> = p
        .vmas
        .iter()
        .filter(|v| gone(v.kind) || v.kind == VmaKind::Vdso)
        .map(|v| (v.start, v.end))
        .collect();
    p.vmas.retain(|v| !gone(v.kind));
    for v in &mut p.vmas {
        if v.kind == VmaKind::Vdso {
            v.kind = VmaKind::Anon;
            v.prot = PROT_READ | PROT_EXEC;
            v.path = ByteString::default();
        }
    }
    let inside = |a: u64| dropped.iter().any(|&(s, e)| s <= a && a < e);
    p.pages.retain(|r| !inside(r.addr));
    p.zero_runs.retain(|z| !inside(z.addr));
    for (i, page) in bytes.chunks(ps as usize).enumerate() {
        let addr = start + i as u64 * ps;
        if page.iter().all(|&b| b == 0) {
            p.zero_runs.push(ZeroRun {
                pid,
                addr,
                nr_pages: 1,
            });
        } else {
            p.pages.push(PageRun {
                pid,
                addr,
                nr_pages: 1,
                data: Blob::from(page.to_vec()),
            });
        }
    }
    p.pages.sort_by_key(|r| r.addr);
    p.zero_runs.sort_by_key(|z| z.addr);
    Ok(vec![format!(
        "process {pid}: {why}; [vdso] {start:#x}-{end:#x} replaced by the capture kernel's with {} system-call stub{}, vvar dropped",
        stubs.len(),
        if stubs.len() == 1 { "" } else { "s" }
    )])
}

#[cfg(test)]
mod tests;
