//! PROCESS record, `spec/crak-format.md#process`.

use crate::bytes::ByteString;
use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Largest pid (`PID_MAX_LIMIT` on 64-bit).
pub const MAX_PID: u32 = 4_194_304;
/// Largest `comm`.
pub const MAX_COMM: u32 = 16;
/// Largest `exe`, `cwd` and `root`.
pub const MAX_PATH: u32 = 4096;
/// Largest `cmdline` and `environ`.
pub const MAX_ARGS: u32 = 16 << 20;
/// Most thread ids.
pub const MAX_TIDS: u32 = 65536;

/// `flags` bit 0: the process is a zombie (1.1); bits 16–31 then hold its wait status.
pub const PROCESS_ZOMBIE: u32 = 1;

/// Identity of one process and its place in the tree (spec §3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// PID.
    pub pid: u32,
    /// Parent PID (0 when the parent is outside the image).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Personality.
    pub personality: u32,
    /// umask.
    pub umask: u32,
    /// Reserved flags.
    pub flags: u32,
    /// `comm`.
    pub comm: ByteString,
    /// `/proc/PID/exe` target.
    pub exe: ByteString,
    /// Working directory.
    pub cwd: ByteString,
    /// Root directory.
    pub root: ByteString,
    /// `/proc/PID/cmdline` bytes.
    pub cmdline: ByteString,
    /// `/proc/PID/environ` bytes.
    pub environ: ByteString,
    /// Thread ids, leader first.
    pub tids: Vec<u32>,
}

impl ProcessRecord {
    /// Whether the process is a zombie its parent has not reaped (spec §3.2, 1.1).
    pub fn is_zombie(&self) -> bool {
        self.flags & PROCESS_ZOMBIE != 0
    }

    /// A zombie's wait status, as `waitpid(2)` reports it.
    pub fn wait_status(&self) -> u32 {
        self.flags >> 16
    }
}

/// Parses a PROCESS payload (`spec/crak-format.md#process`, §3.2).
///
/// Rejects (`bad-value`) a pid outside 1..=4194304, text above its maximum and a tid list that is
/// empty or longer than 65536.
pub fn parse(payload: &[u8]) -> Result<ProcessRecord, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, ProcessRecord> {
    let (r, pid) = wire::checked("pid", wire::u32f("pid"), |v| {
        if (1..=MAX_PID).contains(&v) {
            Ok(())
        } else {
            Err(format!("pid {v} is outside 1..={MAX_PID}"))
        }
    })(i)?;
    let (r, ppid) = wire::u32f("ppid")(r)?;
    let (r, pgid) = wire::u32f("pgid")(r)?;
    let (r, sid) = wire::u32f("sid")(r)?;
    let (r, personality) = wire::u32f("personality")(r)?;
    let (r, umask) = wire::u32f("umask")(r)?;
    let (r, flags) = wire::u32f("flags")(r)?;
    let (r, comm) = wire::bytes("comm", MAX_COMM)(r)?;
    let (r, exe) = wire::bytes("exe", MAX_PATH)(r)?;
    let (r, cwd) = wire::bytes("cwd", MAX_PATH)(r)?;
    let (r, root) = wire::bytes("root", MAX_PATH)(r)?;
    let (r, cmdline) = wire::bytes("cmdline", MAX_ARGS)(r)?;
    let (r, environ) = wire::bytes("environ", MAX_ARGS)(r)?;
    let (r2, tids) = wire::list("tids", MAX_TIDS, 4, wire::u32f("tids"))(r)?;
    if tids.is_empty() {
        return wire::fail(
            crate::error::ErrorKind::BadValue,
            "tids",
            r,
            "a process has at least one thread",
        );
    }
    Ok((
        r2,
        ProcessRecord {
            pid,
            ppid,
            pgid,
            sid,
            personality,
            umask,
            flags,
            comm: comm.into(),
            exe: exe.into(),
            cwd: cwd.into(),
            root: root.into(),
            cmdline: cmdline.into(),
            environ: environ.into(),
            tids,
        },
    ))
}

/// Appends the PROCESS payload of `p` (§3.2).
pub fn write(p: &ProcessRecord, out: &mut Vec<u8>) {
    for v in [
        p.pid,
        p.ppid,
        p.pgid,
        p.sid,
        p.personality,
        p.umask,
        p.flags,
    ] {
        wire::put_u32(out, v);
    }
    for t in [&p.comm, &p.exe, &p.cwd, &p.root, &p.cmdline, &p.environ] {
        wire::put_bytes(out, t.as_bytes());
    }
    wire::put_count(out, p.tids.len());
    for t in &p.tids {
        wire::put_u32(out, *t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    fn example() -> ProcessRecord {
        ProcessRecord {
            pid: 7,
            ppid: 1,
            pgid: 7,
            sid: 7,
            personality: 0,
            umask: 0o22,
            flags: 0,
            comm: "sh".into(),
            exe: "/bin/sh".into(),
            cwd: "/".into(),
            root: "/".into(),
            cmdline: ByteString(b"sh\0".to_vec()),
            environ: ByteString(Vec::new()),
            tids: vec![7],
        }
    }

    #[test]
    fn byte_example() {
        let mut b = Vec::new();
        write(&example(), &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            7, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, // pid ppid pgid sid
            0, 0, 0, 0, 0o22, 0, 0, 0, 0, 0, 0, 0,          // personality umask flags
            2, 0, 0, 0, b's', b'h',                         // comm
            7, 0, 0, 0, b'/', b'b', b'i', b'n', b'/', b's', b'h', // exe
            1, 0, 0, 0, b'/', 1, 0, 0, 0, b'/',             // cwd root
            3, 0, 0, 0, b's', b'h', 0,                      // cmdline
            0, 0, 0, 0,                                     // environ
            1, 0, 0, 0, 7, 0, 0, 0,                         // tids
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), example());
    }

    #[test]
    fn rejects_pid_zero_empty_tids_and_long_comm() {
        let mut b = Vec::new();
        write(
            &ProcessRecord {
                pid: 0,
                ..example()
            },
            &mut b,
        );
        assert_eq!(parse(&b).unwrap_err().field, "pid");
        b.clear();
        write(
            &ProcessRecord {
                tids: vec![],
                ..example()
            },
            &mut b,
        );
        let e = parse(&b).unwrap_err();
        assert_eq!((e.kind, e.field), (ErrorKind::BadValue, "tids"));
        b.clear();
        write(
            &ProcessRecord {
                comm: "x".repeat(17).as_str().into(),
                ..example()
            },
            &mut b,
        );
        let e = parse(&b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "comm", 28)
        );
    }

    proptest! {
        #[test]
        fn round_trip(p in crate::arbitrary::process_record()) {
            let mut b = Vec::new();
            write(&p, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), p);
        }
    }
}
