//! `crak-dump kernel-profile -o PROFILE.json`: this host as a restore target (spec §6.1).
//!
//! Everything comes from this process itself, without privileges or unsafe code: the kernel
//! release from `/proc/sys/kernel/osrelease`, the page size from `/proc/self/auxv`, the XSAVE
//! layout from CPUID leaf 0xD (`XCR0` is the set of user-state components CPUID reports as
//! supported, which Linux enables in full; its area size is checked against `CPUID.(0xD,0).EBX`,
//! the size for the enabled set), the vDSO and vvar mappings from `/proc/self/maps`, the vDSO's
//! bytes from `/proc/self/mem`, and its exported functions from its dynamic symbol table.

use crate::cli::ProfileArgs;
use crate::EXIT_OK;
use anyhow::{bail, Context as _};
use crak_format::bytes::{Blob, ByteString};
use crak_format::record::header::SpecialMapping;
use crak_format::record::vma::VmaKind;
use crak_format::rewrite::{KernelProfile, VdsoSymbol, XsaveComponent, PROFILE_FORMAT};
use std::io::{Read, Seek, SeekFrom, Write};

fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let r = std::arch::x86_64::__cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// `AT_PAGESZ` from `/proc/self/auxv`.
fn page_size() -> anyhow::Result<u32> {
    let auxv = std::fs::read("/proc/self/auxv").context("/proc/self/auxv")?;
    for pair in auxv.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let k = u64::from_le_bytes(k.try_into().unwrap_or_default());
        let v = u64::from_le_bytes(v.try_into().unwrap_or_default());
        if k == 6 {
            return u32::try_from(v).context("AT_PAGESZ out of range");
        }
    }
    bail!("/proc/self/auxv has no AT_PAGESZ")
}

/// XCR0, the area size for it, and the place of each component ≥ 2.
fn xsave() -> anyhow::Result<(u64, u32, Vec<XsaveComponent>)> {
    if cpuid(1, 0).2 & (1 << 27) == 0 {
        bail!("the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE is clear)");
    }
    let (eax, ebx, _, edx) = cpuid(0xd, 0);
    let features = u64::from(edx) << 32 | u64::from(eax);
    let mut comps = Vec::new();
    let mut end = 576u32;
    for i in 2..63u32 {
        if features & (1u64 << i) == 0 {
            continue;
        }
        let (size, offset, _, _) = cpuid(0xd, i);
        end = end.max(offset.saturating_add(size));
        comps.push(XsaveComponent {
            index: i,
            offset,
            size,
        });
    }
    if end != ebx {
        bail!(
            "CPUID reports components {features:#x} ending at byte {end}, but an enabled area of {ebx} bytes: XCR0 is not the supported set"
        );
    }
    Ok((features, ebx, comps))
}

/// The special mappings of this process, from `/proc/self/maps`.
fn specials() -> anyhow::Result<Vec<SpecialMapping>> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("/proc/self/maps")?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let name = line.split_whitespace().nth(5).unwrap_or("");
        let kind = match name {
            "[vdso]" => VmaKind::Vdso,
            "[vvar]" => VmaKind::Vvar,
            "[vvar_vclock]" => VmaKind::VvarVclock,
            "[vsyscall]" => VmaKind::Vsyscall,
            _ => continue,
        };
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        out.push(SpecialMapping {
            kind,
            start: u64::from_str_radix(s, 16)?,
            end: u64::from_str_radix(e, 16)?,
        });
    }
    Ok(out)
}

/// The exported functions of a vDSO image and their offsets from its start.
pub fn vdso_symbols(image: &[u8]) -> anyhow::Result<Vec<VdsoSymbol>> {
    let elf = goblin::elf::Elf::parse(image).context("the vDSO is not an ELF image")?;
    let base = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|p| p.p_vaddr)
        .min()
        .unwrap_or(0);
    let mut out = Vec::new();
    for sym in elf.dynsyms.iter() {
        if sym.st_type() != goblin::elf::sym::STT_FUNC || sym.st_value == 0 {
            continue;
        }
        let Some(name) = elf.dynstrtab.get_at(sym.st_name) else {
            continue;
        };
        let Some(offset) = sym.st_value.checked_sub(base) else {
            continue;
        };
        if offset >= image.len() as u64 {
            bail!("vDSO symbol {name} lies outside the image");
        }
        out.push(VdsoSymbol {
            name: name.to_string(),
            offset,
            size: sym.st_size,
        });
    }
    out.sort_by(|a, b| (a.offset, &a.name).cmp(&(b.offset, &b.name)));
    out.dedup();
    Ok(out)
}

/// This host's profile.
pub fn host_profile() -> anyhow::Result<KernelProfile> {
    let release = std::fs::read("/proc/sys/kernel/osrelease").context("kernel release")?;
    let release = release.strip_suffix(b"\n").unwrap_or(&release).to_vec();
    let (xsave_features, xsave_size, xsave_components) = xsave()?;
    let special_mappings = specials()?;
    let (vdso, vdso_symbols) = match special_mappings.iter().find(|m| m.kind == VmaKind::Vdso) {
        Some(m) => {
            let len = usize::try_from(m.end - m.start).context("vDSO size")?;
            let mut mem = std::fs::File::open("/proc/self/mem").context("/proc/self/mem")?;
            mem.seek(SeekFrom::Start(m.start))?;
            let mut bytes = vec![0u8; len];
            mem.read_exact(&mut bytes)
                .context("reading the vDSO from /proc/self/mem")?;
            let syms = vdso_symbols(&bytes)?;
            (Some(Blob::from(bytes)), syms)
        }
        None => (None, Vec::new()),
    };
    Ok(KernelProfile {
        format: PROFILE_FORMAT.to_string(),
        kernel_release: ByteString(release),
        page_size: page_size()?,
        xsave_features,
        xsave_size,
        xsave_components,
        special_mappings,
        vdso,
        vdso_symbols,
    })
}

/// Reads a profile file, or this host's profile for `host`.
pub fn load(spec: &std::path::Path) -> anyhow::Result<KernelProfile> {
    if spec.as_os_str() == "host" {
        return host_profile().context("describing this host");
    }
    let text = crate::read_all(spec)
        .with_context(|| format!("{}: cannot read", crate::display_name(spec)))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", crate::display_name(spec)))?;
    KernelProfile::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a kernel profile: {e}", crate::display_name(spec)))
}

/// Runs the command.
pub fn run(args: &ProfileArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let p = host_profile()?;
    let mut text = serde_json::to_string_pretty(&p)?;
    text.push('\n');
    if crate::is_stdin(&args.output) {
        out.write_all(text.as_bytes())?;
    } else {
        super::write_atomically(&args.output, &mut |mut file| {
            file.write_all(text.as_bytes())
                .with_context(|| format!("{}: cannot write", args.output.display()))
        })?;
    }
    Ok(EXIT_OK)
}
