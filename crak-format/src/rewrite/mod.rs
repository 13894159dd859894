//! Rewriting an image for another kernel or CPU (`spec/crak-format.md` §6): the XSAVE areas
//! for the target CPU's components, the vDSO for the target kernel's, the version for this
//! writer. Whatever cannot be made safe is refused with the reason, and the image is left as
//! it was.

pub mod profile;
mod vdso;

pub use profile::{component_name, KernelProfile, VdsoSymbol, XsaveComponent, PROFILE_FORMAT};

use crate::bytes::{Blob, ByteString};
use crate::image::{Image, CURRENT_VERSION};
use crate::record::header::MAX_XSAVE_SIZE;
use crate::record::note::Note;

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

/// The NOTE key of a vDSO jump table's plan (spec §6.3): JSON naming, per process, the old and
/// new vDSO and, per exported function, its old address and where it now leads.
pub const VDSO_PLAN_KEY: &str = "crak.rewrite.vdso-plan";

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
    let mut plans = Vec::new();
    let ps = u64::from(work.header.page_size);
    for pid in pids {
        if let Some(p) = work.process_mut(pid) {
            let (lines, plan) = vdso::rewrite_vdso(p, ps, target, source)?;
            done.extend(lines);
            plans.extend(plan);
        }
    }
    if let Some(first) = plans.first() {
        // The header describes the layout the restoring kernel gives (the first process's plan).
        work.header
            .special_mappings
            .retain(|m| !vdso::is_group(m.kind));
        work.header
            .special_mappings
            .extend(first.mappings.iter().cloned());
        work.notes
            .retain(|n| n.key.as_bytes() != VDSO_PLAN_KEY.as_bytes());
        work.notes.push(Note {
            key: ByteString::from(VDSO_PLAN_KEY),
            value: ByteString::from(vdso::plans_json(&plans).as_str()),
        });
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

#[cfg(test)]
mod tests;
