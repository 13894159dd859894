//! SCM record (1.3), `spec/crak-format.md#scm`: the ancillary data of one message queued on a
//! Unix socket — the files passed with it (`SCM_RIGHTS`) and its credentials
//! (`SCM_CREDENTIALS`).

use crate::error::FieldError;
use crate::record::fd::{self, Fd};
use crate::record::wire::{self, PResult};
use serde::{Deserialize, Serialize};

/// Most files one message carries (the kernel's `SCM_MAX_FD`).
pub const MAX_SCM_FILES: u32 = 253;
/// Fewest bytes of one file in flight: an FD payload with an empty `path` and `contents`.
pub const SCM_FILE_MIN_SIZE: usize = 88;
/// [`Scm::flags`]: the message carries credentials (`pid`, `uid`, `gid`).
pub const SCM_CREDENTIALS: u32 = 1;
/// Every [`Scm::flags`] bit 1.3 defines.
pub const SCM_FLAGS_KNOWN: u32 = SCM_CREDENTIALS;

/// The ancillary data of one queued message (spec §3.23, 1.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scm<'data> {
    /// Inode of the receiving socket: a UNIX or UNIX_SOCKET fd's `ino`.
    pub socket: u64,
    /// Index of the message in that socket's `queue`.
    pub message: u32,
    /// [`SCM_CREDENTIALS`].
    pub flags: u32,
    /// Credentials: the sender's pid as the receiver sees it (0 without [`SCM_CREDENTIALS`]).
    pub pid: u32,
    /// Credentials: uid.
    pub uid: u32,
    /// Credentials: gid.
    pub gid: u32,
    /// The files passed with the message, in order, each an FD layout with `pid` 0, `fd` its
    /// position in the message and `fd_flags` 0.
    pub files: Vec<Fd<'data>>,
}

impl Scm<'_> {
    /// A copy that does not borrow the image.
    pub fn into_owned(self) -> Scm<'static> {
        Scm {
            socket: self.socket,
            message: self.message,
            flags: self.flags,
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
            files: self.files.into_iter().map(Fd::into_owned).collect(),
        }
    }

    /// Whether the message carries credentials.
    pub fn has_credentials(&self) -> bool {
        self.flags & SCM_CREDENTIALS != 0
    }
}

/// Parses an SCM payload (`spec/crak-format.md#scm`, §3.23); file contents borrow `payload`.
/// Rejects unknown `flags` bits and more than 253 files; each file is checked as an FD payload
/// (§3.13), its fields named `files.kind` and so on.
pub fn parse(payload: &[u8]) -> Result<Scm<'_>, FieldError> {
    wire::run(payload, fields)
}

fn fields(i: &[u8]) -> PResult<'_, Scm<'_>> {
    let (r, socket) = wire::u64f("socket")(i)?;
    let (r, message) = wire::u32f("message")(r)?;
    let (r, flags) = wire::checked("flags", wire::u32f("flags"), |v| {
        if v & !SCM_FLAGS_KNOWN == 0 {
            Ok(())
        } else {
            Err(format!("{v:#x} sets bits 1.3 does not define"))
        }
    })(r)?;
    let (r, pid) = wire::u32f("pid")(r)?;
    let (r, uid) = wire::u32f("uid")(r)?;
    let (r, gid) = wire::u32f("gid")(r)?;
    let (r, ()) = wire::reserved("reserved", 4)(r)?;
    // A file running past the payload makes the list's contents run past it: `truncated` at
    // the count (§2.5); a value out of its domain is reported at its field.
    let (r, files) = wire::truncated_here(
        "files",
        wire::list("files", MAX_SCM_FILES, SCM_FILE_MIN_SIZE, |i| {
            fd::fields_named(i, &fd::SCM_FILE_NAMES)
        }),
    )(r)?;
    Ok((
        r,
        Scm {
            socket,
            message,
            flags,
            pid,
            uid,
            gid,
            files,
        },
    ))
}

/// Appends the SCM payload of `s` (§3.23).
pub fn write(s: &Scm<'_>, out: &mut Vec<u8>) {
    wire::put_u64(out, s.socket);
    for v in [s.message, s.flags, s.pid, s.uid, s.gid, 0] {
        wire::put_u32(out, v);
    }
    wire::put_count(out, s.files.len());
    for f in &s.files {
        fd::write(f, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::record::fd::FdKind;
    use proptest::prelude::*;

    fn eventfd() -> Fd<'static> {
        Fd {
            pid: 0,
            fd: 0,
            fd_flags: 0,
            kind: FdKind::Eventfd,
            open_flags: 2,
            pos: 0,
            dev: 0,
            ino: 0,
            rdev: 0,
            size: 0,
            mtime_ns: 0,
            mode: 0o600,
            deleted: false,
            path: b"anon_inode:[eventfd]".to_vec().into(),
            contents: vec![7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].into(),
            description: 0,
        }
    }

    #[test]
    fn byte_example() {
        let s = Scm {
            socket: 0x1234,
            message: 1,
            flags: SCM_CREDENTIALS,
            pid: 42,
            uid: 1000,
            gid: 100,
            files: vec![eventfd()],
        };
        let mut b = Vec::new();
        write(&s, &mut b);
        #[rustfmt::skip]
        let head: &[u8] = &[
            0x34, 0x12, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 1, 0, 0, 0,
            42, 0, 0, 0, 0xe8, 3, 0, 0,
            100, 0, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0,
        ];
        assert_eq!(&b[..36], head);
        // The file is an FD payload: kind at 36 + 12.
        assert_eq!(&b[48..50], &[6, 0]);
        assert_eq!(b.len(), 36 + 88 + 20 + 12);
        assert_eq!(parse(&b).unwrap(), s);

        let mut f = b.clone();
        f[12] = 2;
        let e = parse(&f).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "flags", 12)
        );
        let mut k = b.clone();
        k[48] = 14;
        let e = parse(&k).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "files.kind", 48)
        );
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::Truncated, "files", 32)
        );
        let mut n = b.clone();
        n[32] = 254;
        let e = parse(&n).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (ErrorKind::BadValue, "files", 32)
        );
    }

    proptest! {
        #[test]
        fn round_trip(s in crate::arbitrary::scm()) {
            let mut b = Vec::new();
            write(&s, &mut b);
            prop_assert_eq!(parse(&b).unwrap(), s);
        }
    }
}
