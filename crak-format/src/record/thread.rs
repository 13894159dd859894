//! THREAD record, `spec/crak-format.md#thread`.

use crate::bytes::ByteString;
use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Bytes of a THREAD payload in versions 1.0 and 1.1, and of one without [`ThreadExt`].
pub const THREAD_SIZE: usize = 288;
/// Largest thread `name` (the kernel's `TASK_COMM_LEN`).
pub const MAX_NAME: u32 = 16;

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
    /// The fields added in 1.2; `None` for a payload that ends after `clear_child_tid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<ThreadExt>,
}

/// THREAD fields added in 1.2 (§3.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadExt {
    /// Head of the robust futex list (`get_robust_list`); 0 when none is registered.
    pub robust_list: u64,
    /// Its length argument (the size of `struct robust_list_head`, 24 on x86_64).
    pub robust_list_len: u64,
    /// The thread's name (`/proc/PID/task/TID/comm`, set with `PR_SET_NAME`).
    pub name: ByteString,
}

/// Parses a THREAD payload (`spec/crak-format.md#thread`, §3.7).
pub fn parse(payload: &[u8]) -> Result<Thread, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Thread> {
    let (mut r, pid) = wire::u32f("pid")(i)?;
    let tid;
    (r, tid) = wire::u32f("tid")(r)?;
    let mut regs = [0u64; 27];
    for (slot, name) in regs.iter_mut().zip(Gpr::NAMES) {
        (r, *slot) = wire::u64f(name)(r)?;
    }
    let (r, blocked) = wire::u64f("blocked")(r)?;
    let (r, pending) = wire::u64f("pending")(r)?;
    let (r, sas_sp) = wire::u64f("sigaltstack_sp")(r)?;
    let (r, sas_size) = wire::u64f("sigaltstack_size")(r)?;
    let (r, sas_flags) = wire::u32f("sigaltstack_flags")(r)?;
    let (r, rseq_len) = wire::u32f("rseq_len")(r)?;
    let (r, rseq_addr) = wire::u64f("rseq_addr")(r)?;
    let (r, rseq_sig) = wire::u32f("rseq_sig")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    let (r, clear_child_tid) = wire::u64f("clear_child_tid")(r)?;
    let (r, ext) = if r.is_empty() {
        (r, None)
    } else {
        let (r, robust_list) = wire::u64f("robust_list")(r)?;
        let (r, robust_list_len) = wire::u64f("robust_list_len")(r)?;
        let (r, name) = wire::bytes("name", MAX_NAME)(r)?;
        (
            r,
            Some(ThreadExt {
                robust_list,
                robust_list_len,
                name: ByteString(name.to_vec()),
            }),
        )
    };
    Ok((
        r,
        Thread {
            pid,
            tid,
            gpr: Gpr::from_array(regs),
            blocked,
            pending,
            sas_sp,
            sas_size,
            sas_flags,
            rseq_len,
            rseq_addr,
            rseq_sig,
            clear_child_tid,
            ext,
        },
    ))
}

/// Appends the THREAD payload of `t` (§3.7).
pub fn write(t: &Thread, out: &mut Vec<u8>) {
    wire::put_u32(out, t.pid);
    wire::put_u32(out, t.tid);
    for v in t.gpr.to_array() {
        wire::put_u64(out, v);
    }
    wire::put_u64(out, t.blocked);
    wire::put_u64(out, t.pending);
    wire::put_u64(out, t.sas_sp);
    wire::put_u64(out, t.sas_size);
    wire::put_u32(out, t.sas_flags);
    wire::put_u32(out, t.rseq_len);
    wire::put_u64(out, t.rseq_addr);
    wire::put_u32(out, t.rseq_sig);
    wire::put_u32(out, 0);
    wire::put_u64(out, t.clear_child_tid);
    if let Some(x) = &t.ext {
        wire::put_u64(out, x.robust_list);
        wire::put_u64(out, x.robust_list_len);
        wire::put_bytes(out, x.name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let mut t = Thread {
            pid: 4,
            tid: 5,
            clear_child_tid: 0xabc,
            ..Thread::default()
        };
        t.gpr.rip = 0x401000;
        t.gpr.gs = 0x2b;
        let mut b = Vec::new();
        write(&t, &mut b);
        assert_eq!(b.len(), THREAD_SIZE);
        assert_eq!(&b[0..8], &[4, 0, 0, 0, 5, 0, 0, 0]);
        // rip is register 16: offset 8 + 16 * 8.
        assert_eq!(&b[136..144], &[0, 0x10, 0x40, 0, 0, 0, 0, 0]);
        assert_eq!(&b[216..224], &[0x2b, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[280..288], &[0xbc, 0x0a, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&b).unwrap(), t);
        let e = parse(&b[..140]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "rip", 136)
        );
    }

    proptest! {
        #[test]
        fn round_trip(t in crate::arbitrary::thread(1, 1)) {
            let mut b = Vec::new();
            write(&t, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), t);
        }
    }
}
