//! THREAD record, `spec/crak-format.md#thread`.

use serde::{Deserialize, Serialize};

/// x86_64 general-purpose registers in the kernel's `user_regs_struct` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Gpr {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl Gpr {
    /// Register names in storage order.
    pub const NAMES: [&'static str; 27] = [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
        "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
        "es", "fs", "gs",
    ];

    /// The registers in storage order.
    pub fn to_array(&self) -> [u64; 27] {
        [
            self.r15,
            self.r14,
            self.r13,
            self.r12,
            self.rbp,
            self.rbx,
            self.r11,
            self.r10,
            self.r9,
            self.r8,
            self.rax,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.orig_rax,
            self.rip,
            self.cs,
            self.eflags,
            self.rsp,
            self.ss,
            self.fs_base,
            self.gs_base,
            self.ds,
            self.es,
            self.fs,
            self.gs,
        ]
    }

    /// Registers from storage order.
    pub fn from_array(a: [u64; 27]) -> Self {
        let [r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs] =
            a;
        Gpr {
            r15,
            r14,
            r13,
            r12,
            rbp,
            rbx,
            r11,
            r10,
            r9,
            r8,
            rax,
            rcx,
            rdx,
            rsi,
            rdi,
            orig_rax,
            rip,
            cs,
            eflags,
            rsp,
            ss,
            fs_base,
            gs_base,
            ds,
            es,
            fs,
            gs,
        }
    }

    /// A register by name (`rip`, `fs_base`, ...).
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(self.to_array()[i])
    }

    /// Sets a register by name; false when there is no such register.
    pub fn set(&mut self, name: &str, value: u64) -> bool {
        let Some(i) = Self::NAMES.iter().position(|n| *n == name) else {
            return false;
        };
        let mut a = self.to_array();
        a[i] = value;
        *self = Self::from_array(a);
        true
    }
}

/// Per-thread state (spec §3.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// PID of the thread group.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// General-purpose registers.
    pub gpr: Gpr,
    /// Blocked signal mask.
    pub blocked: u64,
    /// Per-thread pending set (informational).
    pub pending: u64,
    /// sigaltstack `ss_sp`.
    pub sas_sp: u64,
    /// sigaltstack `ss_size`.
    pub sas_size: u64,
    /// sigaltstack `ss_flags`.
    pub sas_flags: u32,
    /// rseq area length; 0 when none is registered.
    pub rseq_len: u32,
    /// rseq area address.
    pub rseq_addr: u64,
    /// rseq signature.
    pub rseq_sig: u32,
    /// `clear_child_tid` address.
    pub clear_child_tid: u64,
}
