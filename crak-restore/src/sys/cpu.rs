//! CPU facts for the XSAVE state: `XCR0` (`xgetbv`) and `CPUID` leaf 0xD.

/// CPUID leaf `leaf`, subleaf `sub`: `(eax, ebx, ecx, edx)`.
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU and has no side effects.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Whether the OS enabled XSAVE (`CPUID.1:ECX.OSXSAVE`, bit 27).
pub fn has_osxsave() -> bool {
    cpuid(1, 0).2 & (1 << 27) != 0
}

/// `XCR0`, the enabled XSAVE feature mask, or `None` when the OS did not enable XSAVE.
pub fn xcr0() -> Option<u64> {
    if !has_osxsave() {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX=0 is valid when CPUID reports OSXSAVE (checked above); it reads
    // XCR0 into EDX:EAX and touches nothing else.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// Size of the standard-format XSAVE area for the features enabled in `XCR0`
/// (`CPUID.(EAX=0xD, ECX=0):EBX`), or `None` without XSAVE.
pub fn xsave_size() -> Option<u32> {
    if !has_osxsave() {
        return None;
    }
    Some(cpuid(0xd, 0).1)
}
