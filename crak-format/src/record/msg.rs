//! MSG record, `spec/crak-format.md#msg`.

use crate::bytes::Blob;
use crate::error::FieldError;
use crate::record::ipc::{self, IpcPerm};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most messages in one queue record.
pub const MAX_MESSAGES: u32 = 1 << 20;

/// One queued message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'data> {
    /// `mtype`, ≥ 1.
    pub mtype: i64,
    /// `mtext`.
    pub text: Blob<'data>,
}

/// A System V message queue and its messages (spec §3.20, format 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgQueue<'data> {
    /// Id (`msqid`), key and permissions.
    pub perm: IpcPerm,
    /// `msg_qbytes`: the most bytes of text the queue holds.
    pub qbytes: u64,
    /// `msg_lspid`: pid of the last `msgsnd`, informative.
    pub lspid: u32,
    /// `msg_lrpid`: pid of the last `msgrcv`, informative.
    pub lrpid: u32,
    /// The queued messages, in queue order.
    pub messages: Vec<Message<'data>>,
}

impl MsgQueue<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> MsgQueue<'static> {
        MsgQueue {
            perm: self.perm,
            qbytes: self.qbytes,
            lspid: self.lspid,
            lrpid: self.lrpid,
            messages: self
                .messages
                .into_iter()
                .map(|m| Message {
                    mtype: m.mtype,
                    text: m.text.into_owned(),
                })
                .collect(),
        }
    }

    /// Bytes of text queued (`msg_cbytes`).
    pub fn cbytes(&self) -> u64 {
        self.messages
            .iter()
            .fold(0u64, |n, m| n.saturating_add(m.text.len() as u64))
    }
}

/// Parses a MSG payload (`spec/crak-format.md#msg`, §3.20); message texts borrow `payload`.
pub fn parse(payload: &[u8]) -> Result<MsgQueue<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, MsgQueue<'_>> {
    let (r, perm) = ipc::perm(i)?;
    let (r, qbytes) = wire::u64f("qbytes")(r)?;
    let (r, lspid) = wire::u32f("lspid")(r)?;
    let (r, lrpid) = wire::u32f("lrpid")(r)?;
    // A message running past the payload makes the list's contents run past it: `truncated`
    // at the count (§2.5).
    let (r, messages) = wire::truncated_here(
        "messages",
        wire::list("messages", MAX_MESSAGES, 12, |i| {
            let (i, mtype) = wire::i64f("messages.mtype")(i)?;
            let (i, text) = wire::bytes("messages.text", u32::MAX)(i)?;
            Ok((
                i,
                Message {
                    mtype,
                    text: text.into(),
                },
            ))
        }),
    )(r)?;
    Ok((
        r,
        MsgQueue {
            perm,
            qbytes,
            lspid,
            lrpid,
            messages,
        },
    ))
}

/// Appends the MSG payload of `q` (§3.20).
pub fn write(q: &MsgQueue<'_>, out: &mut Vec<u8>) {
    ipc::put_perm(out, &q.perm);
    wire::put_u64(out, q.qbytes);
    wire::put_u32(out, q.lspid);
    wire::put_u32(out, q.lrpid);
    wire::put_count(out, q.messages.len());
    for m in &q.messages {
        wire::put_i64(out, m.mtype);
        wire::put_bytes(out, m.text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn byte_example() {
        let q = MsgQueue {
            perm: IpcPerm {
                id: 1,
                key: 0x10,
                mode: 0o600,
                ..IpcPerm::default()
            },
            qbytes: 16384,
            lspid: 5,
            lrpid: 0,
            messages: vec![Message {
                mtype: 2,
                text: b"ok".to_vec().into(),
            }],
        };
        let mut b = Vec::new();
        write(&q, &mut b);
        #[rustfmt::skip]
        let want: &[u8] = &[
            1, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0,
            0, 0x40, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'o', b'k',
        ];
        assert_eq!(b, want);
        assert_eq!(parse(&b).unwrap(), q);
        assert_eq!(q.cbytes(), 2);
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "messages", 48)
        );
    }

    proptest! {
        #[test]
        fn round_trip(q in crate::arbitrary::msg_queue()) {
            let mut b = Vec::new();
            write(&q, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), q);
        }
    }
}
