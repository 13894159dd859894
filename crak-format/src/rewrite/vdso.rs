//! The vDSO of an image rewritten for a kernel whose vDSO differs (spec §6.3).
//!
//! A saved program holds pointers into its vDSO (glibc resolves them once, at start), so the
//! old addresses must keep working. When the target kernel has a vDSO, the old `[vdso]` becomes
//! anonymous `r-x` memory holding the capture kernel's vDSO with each exported function's entry
//! overwritten by a jump to the same function of the target's vDSO, which the rewrite places
//! (with its vvar mappings, in the target's sizes and relative layout) in a free range of the
//! address space; the restorer puts its own vDSO group there as for any image. A function the
//! target lacks becomes a system-call stub. When the target has no vDSO at all, every exported
//! function becomes a system-call stub.

use super::{refuse, KernelProfile, RewriteError, VdsoSymbol};
use crate::bytes::{Blob, ByteString};
use crate::image::Process;
use crate::record::header::SpecialMapping;
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::vma::{Vma, VmaKind, PROT_EXEC, PROT_READ};

/// Lowest address a plan may use (the usual `vm.mmap_min_addr`).
const LOW: u64 = 0x1_0000;
/// End of the x86_64 user address space (47-bit, less the guard page).
const HIGH: u64 = 0x7fff_ffff_f000;
/// `movabs rax, imm64; jmp rax`.
const ABS_JUMP_LEN: u64 = 12;
/// `jmp rel32`.
const REL_JUMP_LEN: u64 = 5;

/// The mappings the restoring kernel places as one group.
pub(super) fn is_group(kind: VmaKind) -> bool {
    matches!(kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock)
}

fn is_vvar(kind: VmaKind) -> bool {
    matches!(
        kind,
        VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::VvarOther
    )
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

/// Linux x86_64 system call numbers for the vDSO's functions (`None`: answers -ENOSYS).
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

/// The stub standing for `name`, or why there is none.
fn stub_for(pid: u32, name: &str) -> Result<Vec<u8>, RewriteError> {
    let nr = syscall_for(name).ok_or_else(|| {
        RewriteError(format!(
            "process {pid}: the vDSO exports {name}, which the target's vDSO lacks and for which no system call stands in"
        ))
    })?;
    Ok(match nr {
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
    })
}

/// Whether the process's vDSO needs replacing for `target`, and why.
fn vdso_differs(
    p: &Process<'_>,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Option<String> {
    let iv = special(p, VmaKind::Vdso)?;
    let Some(tv) = target_special(target, VmaKind::Vdso) else {
        return Some("the target kernel gives no vDSO".into());
    };
    for (name, kind) in [
        ("[vdso]", VmaKind::Vdso),
        ("[vvar]", VmaKind::Vvar),
        ("[vvar_vclock]", VmaKind::VvarVclock),
    ] {
        match (special(p, kind), target_special(target, kind)) {
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
            let key = |v: &[VdsoSymbol]| {
                let mut a: Vec<(String, u64)> =
                    v.iter().map(|s| (s.name.clone(), s.offset)).collect();
                a.sort();
                a
            };
            if key(&src.vdso_symbols) != key(&target.vdso_symbols) {
                return Some("the vDSO's functions are at other offsets on the target".into());
            }
        }
    }
    None
}

/// One exported function of the saved vDSO and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// Its names (aliases share an entry).
    pub names: Vec<String>,
    /// Its address in the saved process.
    pub old: u64,
    /// Where its jump leads (`None`: a system-call stub).
    pub new: Option<u64>,
    /// `"movabs"`, `"rel32"` or `"syscall"`.
    pub how: &'static str,
}

/// The vDSO placement of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub pid: u32,
    pub old_vdso: (u64, u64),
    /// The planned vDSO group, in the target's sizes and layout.
    pub mappings: Vec<SpecialMapping>,
    pub entries: Vec<Entry>,
}

/// The JSON of the NOTE `crak.rewrite.vdso-plan`.
pub(super) fn plans_json(plans: &[Plan]) -> String {
    let hex = |a: u64| serde_json::Value::from(format!("{a:#x}"));
    let list: Vec<serde_json::Value> = plans
        .iter()
        .map(|p| {
            let new_vdso = p
                .mappings
                .iter()
                .find(|m| m.kind == VmaKind::Vdso)
                .map(|m| (m.start, m.end))
                .unwrap_or_default();
            serde_json::json!({
                "pid": p.pid,
                "old_vdso": [hex(p.old_vdso.0), hex(p.old_vdso.1)],
                "new_vdso": [hex(new_vdso.0), hex(new_vdso.1)],
                "mappings": p.mappings.iter().map(|m| serde_json::json!({
                    "kind": format!("{:?}", m.kind).to_lowercase(),
                    "start": hex(m.start),
                    "end": hex(m.end),
                })).collect::<Vec<_>>(),
                "symbols": p.entries.iter().flat_map(|e| e.names.iter().map(move |n| serde_json::json!({
                    "name": n,
                    "old": hex(e.old),
                    "new": e.new.map(hex),
                    "how": e.how,
                }))).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::Value::from(list).to_string()
}

/// Replaces a vDSO that differs on the target (spec §6.3). Returns the lines of the report and
/// the plan, if a jump table was built.
pub(super) fn rewrite_vdso(
    p: &mut Process<'_>,
    ps: u64,
    target: &KernelProfile,
    source: Option<&KernelProfile>,
) -> Result<(Vec<String>, Option<Plan>), RewriteError> {
    let pid = p.pid();
    let Some(why) = vdso_differs(p, target, source) else {
        return Ok((Vec::new(), None));
    };
    let Some((start, end)) = special(p, VmaKind::Vdso) else {
        return Ok((Vec::new(), None));
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
    if ps == 0 || code.len() as u64 != len || len == 0 || len % ps != 0 {
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
    let planned = match target_special(target, VmaKind::Vdso) {
        Some(tv) => Some(plan_group(p, ps, target, tv, (start, end))?),
        None => None,
    };
    let new_vdso = planned
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.kind == VmaKind::Vdso))
        .map(|m| m.start);
    if new_vdso.is_some() && target.vdso_symbols.is_empty() {
        return refuse(format!(
            "process {pid}: {why}; the target profile lists no vDSO functions to jump to"
        ));
    }
    let entries = patch(pid, &mut bytes, start, &src.vdso_symbols, target, new_vdso)?;
    // The vvar mappings go (the old code reaches the new vDSO only through the jumps); the old
    // vDSO becomes anonymous memory holding the patched bytes.
    let dropped: Vec<(u64, u64)> = p
        .vmas
        .iter()
        .filter(|v| is_vvar(v.kind) || v.kind == VmaKind::Vdso)
        .map(|v| (v.start, v.end))
        .collect();
    let template = p.vmas.iter().find(|v| v.kind == VmaKind::Vdso).cloned();
    p.vmas.retain(|v| !is_vvar(v.kind));
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
    let step = usize::try_from(ps).unwrap_or(usize::MAX);
    let mut addr = start;
    for page in bytes.chunks(step) {
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
        addr = addr.saturating_add(ps);
    }
    p.pages.sort_by_key(|r| r.addr);
    p.zero_runs.sort_by_key(|z| z.addr);
    let count = |how: &str| entries.iter().filter(|e| e.how == how).count();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (stubs, jumps) = (count("syscall"), entries.len() - count("syscall"));
    let (Some(mappings), Some(template), Some(nv)) = (planned, template, new_vdso) else {
        return Ok((
            vec![format!(
                "process {pid}: {why}; [vdso] {start:#x}-{end:#x} replaced by the capture kernel's with {stubs} system-call stub{}, vvar dropped",
                plural(stubs)
            )],
            None,
        ));
    };
    for m in &mappings {
        let (prot, path) = match m.kind {
            VmaKind::Vdso => (PROT_READ | PROT_EXEC, "[vdso]"),
            VmaKind::VvarVclock => (PROT_READ, "[vvar_vclock]"),
            _ => (PROT_READ, "[vvar]"),
        };
        p.vmas.push(Vma {
            kind: m.kind,
            start: m.start,
            end: m.end,
            prot,
            path: ByteString::from(path),
            ..template.clone()
        });
    }
    p.vmas.sort_by_key(|v| v.start);
    let mut lines = vec![format!(
        "process {pid}: {why}; [vdso] {start:#x}-{end:#x} became a jump table ({jumps} jump{}, {stubs} system-call stub{}) to the target's vDSO planned at {nv:#x}",
        plural(jumps),
        plural(stubs)
    )];
    for m in &mappings {
        lines.push(format!(
            "process {pid}: planned {} {:#x}-{:#x}",
            match m.kind {
                VmaKind::Vdso => "[vdso]",
                VmaKind::VvarVclock => "[vvar_vclock]",
                _ => "[vvar]",
            },
            m.start,
            m.end
        ));
    }
    Ok((
        lines,
        Some(Plan {
            pid,
            old_vdso: (start, end),
            mappings,
            entries,
        }),
    ))
}

/// Places the target's vDSO group (its sizes and relative layout) in a free range of the
/// process's address space, a guard page apart from any mapping: the highest room below the
/// saved vDSO group, else the lowest above it.
fn plan_group(
    p: &Process<'_>,
    ps: u64,
    target: &KernelProfile,
    tv: (u64, u64),
    old: (u64, u64),
) -> Result<Vec<SpecialMapping>, RewriteError> {
    let pid = p.pid();
    let mut rel = Vec::new();
    for kind in [VmaKind::Vvar, VmaKind::VvarVclock, VmaKind::Vdso] {
        if let Some((s, e)) = target_special(target, kind) {
            let ok =
                s < e && s % ps == 0 && e % ps == 0 && e - s <= HIGH && s.abs_diff(tv.0) <= HIGH;
            if !ok {
                return refuse(format!(
                    "process {pid}: the target's {kind:?} mapping {s:#x}-{e:#x} is impossible"
                ));
            }
            // Offsets from the target's [vdso], which may be negative.
            rel.push((kind, s.wrapping_sub(tv.0) as i64, (e - s)));
        }
    }
    let lo = rel.iter().map(|r| r.1).min().unwrap_or(0);
    let hi = rel
        .iter()
        .map(|r| r.1.saturating_add(r.2 as i64))
        .max()
        .unwrap_or(0);
    let span = u64::try_from(hi.saturating_sub(lo)).unwrap_or(u64::MAX);
    let mut busy: Vec<(u64, u64)> = p.vmas.iter().map(|v| (v.start, v.end)).collect();
    busy.sort_unstable();
    let need = span.saturating_add(2 * ps);
    // Free gaps between mappings (and the ends of the address space).
    let mut gaps = Vec::new();
    let mut at = LOW;
    for &(s, e) in &busy {
        if s > at {
            gaps.push((at, s.min(HIGH)));
        }
        at = at.max(e);
    }
    if at < HIGH {
        gaps.push((at, HIGH));
    }
    let below = gaps
        .iter()
        .filter(|g| g.1 <= old.0 && g.1.saturating_sub(g.0) >= need)
        .map(|g| (g.1 - ps - span) & !(ps - 1))
        .filter(|&b| b >= LOW + ps)
        .max();
    let above = || {
        gaps.iter()
            .filter(|g| g.0 >= old.1 && g.1.saturating_sub(g.0) >= need)
            .map(|g| g.0 + ps)
            .min()
    };
    let base = below.or_else(above).ok_or_else(|| {
        RewriteError(format!(
            "process {pid}: no free range of {} KiB for the target's vDSO",
            span / 1024
        ))
    })?;
    // base is where `lo` lands.
    let mut out = Vec::new();
    for (kind, off, len) in rel {
        let start = base.wrapping_add(off.wrapping_sub(lo) as u64);
        out.push(SpecialMapping {
            kind,
            start,
            end: start + len,
        });
    }
    Ok(out)
}

/// The bytes of a jump from `from` to `to` that fit in `room`.
fn jump(from: u64, to: u64, room: u64) -> Option<(Vec<u8>, &'static str)> {
    if room >= ABS_JUMP_LEN {
        let mut v = vec![0x48, 0xb8];
        v.extend_from_slice(&to.to_le_bytes());
        v.extend_from_slice(&[0xff, 0xe0]);
        return Some((v, "movabs"));
    }
    if room >= REL_JUMP_LEN {
        let d = i64::try_from(to).ok()? - i64::try_from(from.checked_add(REL_JUMP_LEN)?).ok()?;
        let d = i32::try_from(d).ok()?;
        let mut v = vec![0xe9];
        v.extend_from_slice(&d.to_le_bytes());
        return Some((v, "rel32"));
    }
    None
}

/// Overwrites each exported function's entry in `bytes` (the saved vDSO, mapped at `start`):
/// a jump to the target's function at `new_vdso + offset`, or a system-call stub.
fn patch(
    pid: u32,
    bytes: &mut [u8],
    start: u64,
    symbols: &[VdsoSymbol],
    target: &KernelProfile,
    new_vdso: Option<u64>,
) -> Result<Vec<Entry>, RewriteError> {
    let len = bytes.len() as u64;
    let mut offsets: Vec<u64> = symbols.iter().map(|s| s.offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let mut entries = Vec::new();
    let mut taken: Vec<(u64, u64, String)> = Vec::new();
    for &off in &offsets {
        let names: Vec<&VdsoSymbol> = symbols.iter().filter(|s| s.offset == off).collect();
        let first = names.first().map_or("?", |s| s.name.as_str()).to_string();
        if off >= len {
            return refuse(format!(
                "process {pid}: the vDSO function {first} lies outside the vDSO"
            ));
        }
        // The function's length: its st_size, else up to the next function or the end.
        let next = offsets.iter().copied().find(|&o| o > off).unwrap_or(len);
        let size = names
            .iter()
            .map(|s| s.size)
            .max()
            .filter(|&z| z > 0)
            .unwrap_or(next - off)
            .min(len - off);
        let mut dest = None;
        if let Some(nv) = new_vdso {
            for s in &names {
                if let Some(t) = target.vdso_symbols.iter().find(|t| t.name == s.name) {
                    let to = nv.checked_add(t.offset).ok_or_else(|| {
                        RewriteError(format!(
                            "process {pid}: {} lies beyond the address space",
                            s.name
                        ))
                    })?;
                    if dest.is_some_and(|d| d != to) {
                        return refuse(format!(
                            "process {pid}: the aliases of {first} lead to different functions on the target"
                        ));
                    }
                    dest = Some(to);
                }
            }
        }
        let old = start.saturating_add(off);
        let (code, how) = match dest {
            Some(to) => jump(old, to, size).ok_or_else(|| {
                RewriteError(format!(
                    "process {pid}: the vDSO function {first} is {size} bytes, too short for a jump to {to:#x}"
                ))
            })?,
            None => {
                let mut stub = Err(RewriteError(String::new()));
                for s in &names {
                    stub = stub_for(pid, &s.name);
                    if stub.is_ok() {
                        break;
                    }
                }
                let stub = stub?;
                if (stub.len() as u64) > size {
                    return refuse(format!(
                        "process {pid}: the vDSO function {first} is {size} bytes, too short for a system-call stub"
                    ));
                }
                (stub, "syscall")
            }
        };
        let end = off + code.len() as u64;
        if let Some(t) = taken.iter().find(|t| t.0 < end && off < t.1) {
            return refuse(format!(
                "process {pid}: the vDSO functions {} and {first} are too close to patch",
                t.2
            ));
        }
        let dst = usize::try_from(off)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| bytes.get_mut(a..b))
            .ok_or_else(|| {
                RewriteError(format!(
                    "process {pid}: the vDSO function {first} lies outside the vDSO"
                ))
            })?;
        dst.copy_from_slice(&code);
        taken.push((off, end, first));
        entries.push(Entry {
            names: names.iter().map(|s| s.name.clone()).collect(),
            old,
            new: dest,
            how,
        });
    }
    Ok(entries)
}
