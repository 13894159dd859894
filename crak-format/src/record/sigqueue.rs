//! SIGQUEUE record, `spec/crak-format.md#sigqueue`.

use crate::bytes::Blob;
use crate::error::FieldError;
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most queued signals in one record.
pub const MAX_SIGINFOS: u32 = 65536;

/// Size of one kernel `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;

/// Pending signals of a thread or of the whole process (spec §3.9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigQueue<'data> {
    /// PID.
    pub pid: u32,
    /// Thread id, or 0 for the process-wide queue.
    pub tid: u32,
    /// `siginfo_t` entries, each [`SIGINFO_SIZE`] bytes.
    pub siginfos: Vec<Blob<'data>>,
}

impl SigQueue<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> SigQueue<'static> {
        SigQueue {
            pid: self.pid,
            tid: self.tid,
            siginfos: self.siginfos.into_iter().map(|b| b.into_owned()).collect(),
        }
    }
}

/// Parses a SIGQUEUE payload (`spec/crak-format.md#sigqueue`, §3.9); each `siginfo_t` borrows
/// `payload`. Rejects more than 65536 entries.
pub fn parse(payload: &[u8]) -> Result<SigQueue<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, SigQueue<'_>> {
    let (r, pid) = wire::u32f("pid")(i)?;
    let (r, tid) = wire::u32f("tid")(r)?;
    let (r, siginfos) = wire::list("siginfos", MAX_SIGINFOS, SIGINFO_SIZE, |i| {
        let (i, s) = wire::take("siginfos", SIGINFO_SIZE as u64)(i)?;
        Ok((i, s.into()))
    })(r)?;
    Ok((r, SigQueue { pid, tid, siginfos }))
}

/// Appends the SIGQUEUE payload of `q` (§3.9). Each entry is written as exactly
/// [`SIGINFO_SIZE`] bytes: a shorter one is zero-padded, a longer one cut.
pub fn write(q: &SigQueue<'_>, out: &mut Vec<u8>) {
    wire::put_u32(out, q.pid);
    wire::put_u32(out, q.tid);
    wire::put_count(out, q.siginfos.len());
    for s in &q.siginfos {
        let b = s.as_bytes();
        let n = b.len().min(SIGINFO_SIZE);
        out.extend_from_slice(b.get(..n).unwrap_or_default());
        out.resize(out.len() + (SIGINFO_SIZE - n), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let mut info = vec![0u8; SIGINFO_SIZE];
        info[0] = 10; // si_signo = SIGUSR1
        let q = SigQueue {
            pid: 3,
            tid: 0,
            siginfos: vec![info.clone().into()],
        };
        let mut b = Vec::new();
        write(&q, &mut b);
        assert_eq!(&b[..12], &[3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[12..], &info[..]);
        assert_eq!(parse(&b).unwrap(), q);
        let e = parse(&b[..100]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "siginfos", 8)
        );
    }

    proptest! {
        #[test]
        fn round_trip(q in crate::arbitrary::sigqueue(1, 0)) {
            let mut b = Vec::new();
            write(&q, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), q);
        }
    }
}
