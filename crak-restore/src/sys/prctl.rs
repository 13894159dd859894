//! `prctl(2)` and friends for restore: the `struct prctl_mm_map` given to
//! `prctl(PR_SET_MM, PR_SET_MM_MAP)` (built here as bytes, for a remote call), the thread name,
//! and the execution domain.

use std::io;

/// `PR_SET_MM` (linux/prctl.h).
pub const PR_SET_MM: u64 = 35;
/// `PR_SET_MM_MAP`: set every field of the memory descriptor at once.
pub const PR_SET_MM_MAP: u64 = 14;
/// `PR_SET_SECUREBITS`.
pub const PR_SET_SECUREBITS: u64 = 28;
/// `PR_SET_NO_NEW_PRIVS`.
pub const PR_SET_NO_NEW_PRIVS: u64 = 38;
/// Largest auxv the kernel keeps (`mm->saved_auxv`, `AT_VECTOR_SIZE` = 52 words on x86_64).
pub const MAX_AUXV_BYTES: usize = 52 * 8;

/// The kernel's `struct prctl_mm_map` (linux/prctl.h): the memory descriptor's code, data,
/// heap, stack, argument and environment bounds, the saved auxiliary vector and the new
/// `/proc/PID/exe`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrctlMmMap {
    /// `start_code`.
    pub start_code: u64,
    /// `end_code`.
    pub end_code: u64,
    /// `start_data`.
    pub start_data: u64,
    /// `end_data`.
    pub end_data: u64,
    /// `start_brk`.
    pub start_brk: u64,
    /// `brk`.
    pub brk: u64,
    /// `start_stack`.
    pub start_stack: u64,
    /// `arg_start`.
    pub arg_start: u64,
    /// `arg_end`.
    pub arg_end: u64,
    /// `env_start`.
    pub env_start: u64,
    /// `env_end`.
    pub env_end: u64,
    /// Address (in the target) of the auxv words.
    pub auxv: u64,
    /// Bytes of auxv at `auxv`.
    pub auxv_size: u32,
    /// File descriptor (in the target) of the new executable, or `u32::MAX` to keep it.
    pub exe_fd: u32,
}

impl PrctlMmMap {
    /// Size of the structure, the fourth argument of the prctl.
    pub const SIZE: usize = 104;

    /// The structure's bytes in the kernel's layout.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let words = [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
            self.auxv,
        ];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out[96..100].copy_from_slice(&self.auxv_size.to_le_bytes());
        out[100..104].copy_from_slice(&self.exe_fd.to_le_bytes());
        out
    }
}

/// Sets the calling thread's name (`comm`, at most 15 bytes are kept): `prctl(PR_SET_NAME)`.
pub fn set_name(name: &[u8]) -> io::Result<()> {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name[..n]);
    // SAFETY: `buf` is a NUL-terminated 16-byte buffer the kernel reads.
    let r = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the execution domain of the calling process: `personality(2)`.
pub fn set_personality(persona: u32) -> io::Result<()> {
    // SAFETY: personality takes an integer and has no memory effects.
    let r = unsafe { libc::personality(persona as libc::c_ulong) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm_map_layout() {
        let m = PrctlMmMap {
            start_code: 1,
            env_end: 11,
            auxv: 0x1234,
            auxv_size: 48,
            exe_fd: 7,
            ..Default::default()
        };
        let b = m.to_bytes();
        assert_eq!(&b[0..8], &1u64.to_le_bytes());
        assert_eq!(&b[80..88], &11u64.to_le_bytes());
        assert_eq!(&b[88..96], &0x1234u64.to_le_bytes());
        assert_eq!(&b[96..100], &48u32.to_le_bytes());
        assert_eq!(&b[100..104], &7u32.to_le_bytes());
    }
}
