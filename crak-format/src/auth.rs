//! Signed images (`spec/crak-format.md#auth`, §3.17): an AUTH record just before END carries
//! an Ed25519 signature over the SHA-256 of every record before it, so a verifier names the
//! first record that differs from what was signed.
//!
//! Signing while writing: wrap the output in a [`SigningWriter`], write the image through it as
//! usual (for example with [`crate::write_image`] or a [`crate::Writer`]) and call
//! [`SigningWriter::finish`]; it holds back the END record, appends AUTH and writes a new END.
//! [`sign`] re-signs an existing image the same way; [`verify`] checks one.
//!
//! Key files (§3.17): the secret key is its 32-byte Ed25519 seed, the public key its 32 bytes,
//! each written as 64 hexadecimal digits and a newline ([`SecretKey::to_hex`],
//! [`PublicKey::parse_hex`]).

use crate::read::Records;
use crate::record::auth::{self as rec, Auth, Entry, ALG_ED25519};
use crate::record::end::{self, End};
use crate::record::kind;
use crate::{FILE_HEADER_LEN, RECORD_HEADER_LEN, RECORD_TRAILER_LEN};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Write};

/// An Ed25519 secret key (its 32-byte seed).
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// An Ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// A key file that is not 64 hexadecimal digits, or a public key that is not a curve point.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

fn parse_hex32(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError(format!(
            "a key is 64 hexadecimal digits, not {} characters",
            t.len()
        )));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = t.get(2 * i..2 * i + 2).unwrap_or("00");
        *o = u8::from_str_radix(pair, 16).map_err(|e| KeyError(e.to_string()))?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SecretKey {
    /// The key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Parses a secret key file (64 hex digits, surrounding white space ignored).
    pub fn parse_hex(text: &str) -> Result<Self, KeyError> {
        Ok(Self::from_seed(parse_hex32(text)?))
    }

    /// The key file's text: 64 hex digits and a newline.
    pub fn to_hex(&self) -> String {
        format!("{}\n", hex(self.0.as_bytes()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(key id {})", hex(&self.public().key_id()))
    }
}

impl PublicKey {
    /// Parses a public key file (64 hex digits).
    pub fn parse_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = parse_hex32(text)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError("not an Ed25519 public key".into()))
    }

    /// The key file's text: 64 hex digits and a newline.
    pub fn to_hex(&self) -> String {
        format!("{}\n", hex(self.0.as_bytes()))
    }

    /// The key id AUTH records: the first 8 bytes of the SHA-256 of the key.
    pub fn key_id(&self) -> [u8; 8] {
        let d = Sha256::digest(self.0.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        id
    }
}

/// The message an AUTH signature covers: the 16-byte file header, then the AUTH payload up to
/// the signature.
fn message(file_header: &[u8], signed_part: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(file_header.len() + signed_part.len());
    m.extend_from_slice(file_header);
    m.extend_from_slice(signed_part);
    m
}

fn frame(kind: u16, flags: u16, payload: &[u8]) -> ([u8; RECORD_HEADER_LEN], u32) {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..2].copy_from_slice(&kind.to_le_bytes());
    h[2..4].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
    (h, crc)
}

enum State {
    FileHeader,
    RecordHeader,
    /// Inside a record (payload and CRC) with this many bytes left.
    Body(u64),
    /// Inside END, which is held back.
    End(u64),
    /// Bytes after END: refused.
    Done,
}

/// A [`Write`] adapter that signs the image written through it (§3.17): it follows the record
/// framing of the bytes it passes on, hashes each record, holds back END, and on
/// [`SigningWriter::finish`] writes an AUTH record and a new END. An existing AUTH record in
/// what is written is dropped (so re-signing replaces the signature).
pub struct SigningWriter<W: Write> {
    w: W,
    state: State,
    /// Bytes of the file header or of a record header gathered so far.
    head: Vec<u8>,
    file_header: Vec<u8>,
    entries: Vec<Entry>,
    hasher: Sha256,
    current: Option<(u16, u16, u64)>,
    /// Whether the record being passed on is an AUTH record that is dropped.
    dropping: bool,
    offset: u64,
    digest: u32,
    records: u64,
    end_payload: Vec<u8>,
}

impl<W: Write> SigningWriter<W> {
    /// Wraps `w`; the image's first byte is the next one written.
    pub fn new(w: W) -> Self {
        SigningWriter {
            w,
            state: State::FileHeader,
            head: Vec::with_capacity(RECORD_HEADER_LEN),
            file_header: Vec::new(),
            entries: Vec::new(),
            hasher: Sha256::new(),
            current: None,
            dropping: false,
            offset: 0,
            digest: 0,
            records: 0,
            end_payload: Vec::new(),
        }
    }

    fn start_record(&mut self) -> io::Result<()> {
        let h: [u8; RECORD_HEADER_LEN] =
            self.head.as_slice().try_into().map_err(io::Error::other)?;
        self.head.clear();
        let kind = u16::from_le_bytes([h[0], h[1]]);
        let flags = u16::from_le_bytes([h[2], h[3]]);
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&h[8..16]);
        let rest = u64::from_le_bytes(len8)
            .checked_add(RECORD_TRAILER_LEN as u64)
            .ok_or_else(|| io::Error::other("record length overflows"))?;
        if kind == kind::END {
            self.state = State::End(rest);
            self.end_payload.clear();
            return Ok(());
        }
        self.dropping = kind == kind::AUTH;
        if !self.dropping {
            self.hasher = Sha256::new();
            self.hasher.update(h);
            self.current = Some((kind, flags, self.offset));
            self.digest = crc32c::crc32c_append(self.digest, &h);
            self.w.write_all(&h)?;
            self.offset += RECORD_HEADER_LEN as u64;
        }
        self.state = State::Body(rest);
        Ok(())
    }

    fn body(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        if self.dropping {
            return Ok(());
        }
        self.hasher.update(data);
        self.w.write_all(data)?;
        self.offset += data.len() as u64;
        if last {
            // The last 4 bytes of the record were its CRC; the digest takes it.
            let (kind, flags, offset) = self.current.take().unwrap_or_default();
            let sha256: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            self.entries.push(Entry {
                kind,
                flags,
                offset,
                sha256,
            });
            self.records += 1;
        }
        Ok(())
    }

    /// Writes the AUTH record signed with `key` and a new END; returns the inner writer.
    /// Fails when no complete image (ending with END) was written through.
    pub fn finish(mut self, key: &SecretKey) -> io::Result<W> {
        if !matches!(self.state, State::Done) {
            return Err(io::Error::other(
                "the image written for signing has no END record",
            ));
        }
        let old_end = end::parse(&self.end_payload)
            .map_err(|e| io::Error::other(format!("the END record does not parse: {e}")))?;
        let key_id = key.public().key_id();
        let mut payload = Vec::new();
        rec::write_signed_part(ALG_ED25519, &key_id, &self.entries, &mut payload);
        let sig = key.0.sign(&message(&self.file_header, &payload));
        payload.extend_from_slice(&sig.to_bytes());
        let (h, crc) = frame(kind::AUTH, 0, &payload);
        self.w.write_all(&h)?;
        self.w.write_all(&payload)?;
        self.w.write_all(&crc.to_le_bytes())?;
        self.digest = crc32c::crc32c_append(self.digest, &h);
        self.digest = crc32c::crc32c_append(self.digest, &crc.to_le_bytes());
        self.offset += (RECORD_HEADER_LEN + RECORD_TRAILER_LEN + payload.len()) as u64;
        let e = End {
            record_count: self.records + 1,
            byte_count: self.offset,
            page_count: old_end.page_count,
            digest: self.digest,
        };
        let mut ep = Vec::new();
        end::write(&e, &mut ep);
        let (h, crc) = frame(kind::END, crate::FLAG_CRITICAL, &ep);
        self.w.write_all(&h)?;
        self.w.write_all(&ep)?;
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> Write for SigningWriter<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            match self.state {
                State::FileHeader | State::RecordHeader => {
                    let want = RECORD_HEADER_LEN.min(FILE_HEADER_LEN) - self.head.len();
                    let take = want.min(buf.len());
                    self.head.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.head.len() == FILE_HEADER_LEN {
                        if matches!(self.state, State::FileHeader) {
                            self.file_header = std::mem::take(&mut self.head);
                            self.digest = crc32c::crc32c(&self.file_header);
                            self.w.write_all(&self.file_header)?;
                            self.offset = FILE_HEADER_LEN as u64;
                            self.state = State::RecordHeader;
                        } else {
                            self.start_record()?;
                        }
                    }
                }
                State::Body(rest) => {
                    let take = usize::try_from(rest).unwrap_or(usize::MAX).min(buf.len());
                    let left = rest - take as u64;
                    if !self.dropping && left < RECORD_TRAILER_LEN as u64 {
                        // The CRC, possibly split across writes: the digest takes the
                        // record's CRC bytes in order.
                        let crc_start = (rest.saturating_sub(RECORD_TRAILER_LEN as u64)) as usize;
                        if let Some(c) = buf.get(crc_start.min(take)..take) {
                            self.digest = crc32c::crc32c_append(self.digest, c);
                        }
                    }
                    self.body(&buf[..take], left == 0)?;
                    buf = &buf[take..];
                    self.state = if left == 0 {
                        State::RecordHeader
                    } else {
                        State::Body(left)
                    };
                }
                State::End(rest) => {
                    let take = usize::try_from(rest).unwrap_or(usize::MAX).min(buf.len());
                    let left = rest - take as u64;
                    // Keep END's payload (without its CRC) to learn the page count.
                    if self.end_payload.len() < end::END_SIZE {
                        let room = end::END_SIZE - self.end_payload.len();
                        self.end_payload.extend_from_slice(&buf[..take.min(room)]);
                    }
                    buf = &buf[take..];
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::End(left)
                    };
                }
                State::Done => return Err(io::Error::other("bytes after END")),
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Signs the image `data`: the same records (an existing AUTH record dropped), then AUTH and
/// a new END. The input's framing is checked as far as signing needs it (file header, record
/// lengths within the file, END last); its CRCs and content are not.
pub fn sign(data: &[u8], key: &SecretKey) -> Result<Vec<u8>, crate::Error> {
    let (_, records) = Records::new(data)?;
    let mut sw = SigningWriter::new(Vec::with_capacity(data.len().saturating_add(1 << 12)));
    let io = |e: io::Error| crate::Error::new(crate::ErrorKind::Io).with_detail(e.to_string());
    sw.write_all(data.get(..FILE_HEADER_LEN).unwrap_or_default())
        .map_err(io)?;
    let mut ended = false;
    for r in records {
        let r = r?;
        sw.write_all(r.header_bytes()).map_err(io)?;
        sw.write_all(r.payload).map_err(io)?;
        sw.write_all(&r.crc.to_le_bytes()).map_err(io)?;
        if r.kind == kind::END {
            ended = true;
            break;
        }
    }
    if !ended {
        return Err(crate::Error::new(crate::ErrorKind::Truncated)
            .with_detail("the image has no END record"));
    }
    sw.finish(key).map_err(io)
}

/// Why an image is not accepted as signed by a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The framing could not be followed to an AUTH record.
    #[error("cannot read the image: {0}")]
    Framing(String),
    /// No AUTH record before END.
    #[error("the image is not signed (no AUTH record before END)")]
    Unsigned,
    /// The AUTH record does not parse.
    #[error("AUTH record at offset {offset}: {detail}")]
    BadAuth {
        /// Offset of the AUTH record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Signed with another key.
    #[error("signed with key id {found}, not {expected} (the key given)")]
    WrongKey {
        /// Key id in AUTH.
        found: String,
        /// Key id of the key given.
        expected: String,
    },
    /// The signature does not verify: the AUTH record was altered.
    #[error(
        "AUTH record at offset {offset}: the signature does not verify (the record was altered)"
    )]
    BadSignature {
        /// Offset of the AUTH record.
        offset: u64,
    },
    /// A record differs from what was signed (or was added or removed).
    #[error("{} record at offset {offset} differs from what was signed ({detail})", name_of(*kind))]
    Mismatch {
        /// Kind of the record in the file.
        kind: u16,
        /// Its offset.
        offset: u64,
        /// What differs.
        detail: String,
    },
    /// A record other than END follows AUTH.
    #[error("{} record at offset {offset} follows AUTH; AUTH must be just before END", name_of(*kind))]
    NotLast {
        /// The kind after AUTH.
        kind: u16,
        /// Its offset.
        offset: u64,
    },
}

fn name_of(k: u16) -> String {
    match k {
        kind::AUTH => "AUTH".into(),
        _ => kind::name(k).map_or_else(|| format!("kind {k:#06x}"), str::to_string),
    }
}

/// What [`verify`] found in a signed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records covered by the signature.
    pub records: usize,
    /// Offset of the AUTH record.
    pub auth_offset: u64,
}

/// Checks that `data` is signed by `key` (§3.17): the AUTH record's signature verifies, and
/// every record before it hashes to its entry (naming the first that does not). Only the
/// framing is read; run the parser as well for everything else.
pub fn verify(data: &[u8], key: &PublicKey) -> Result<Verified, AuthError> {
    let framing = |e: crate::Error| AuthError::Framing(e.to_string());
    let (_, records) = Records::new(data).map_err(framing)?;
    let file_header = data.get(..FILE_HEADER_LEN).unwrap_or_default();
    let mut seen: Vec<Entry> = Vec::new();
    let mut auth: Option<(Auth, u64, Vec<u8>)> = None;
    for r in records {
        let r = r.map_err(framing)?;
        if let Some((_, auth_offset, _)) = &auth {
            if r.kind == kind::END {
                break;
            }
            let _ = auth_offset;
            return Err(AuthError::NotLast {
                kind: r.kind,
                offset: r.offset,
            });
        }
        if r.kind == kind::END {
            return Err(AuthError::Unsigned);
        }
        if r.kind == kind::AUTH {
            let a = rec::parse(r.payload).map_err(|e| AuthError::BadAuth {
                offset: r.offset,
                detail: e.to_string(),
            })?;
            let signed_len = rec::AUTH_FIXED_SIZE + rec::ENTRY_SIZE * a.entries.len();
            let signed = r.payload.get(..signed_len).unwrap_or_default().to_vec();
            auth = Some((a, r.offset, signed));
            continue;
        }
        let mut h = Sha256::new();
        h.update(r.header_bytes());
        h.update(r.payload);
        h.update(r.crc.to_le_bytes());
        seen.push(Entry {
            kind: r.kind,
            flags: r.flags,
            offset: r.offset,
            sha256: h.finalize().into(),
        });
    }
    let Some((a, auth_offset, signed)) = auth else {
        return Err(AuthError::Unsigned);
    };
    if a.algorithm != ALG_ED25519 {
        return Err(AuthError::BadAuth {
            offset: auth_offset,
            detail: format!("algorithm {} is not defined (1 is Ed25519)", a.algorithm),
        });
    }
    if a.key_id != key.key_id() {
        return Err(AuthError::WrongKey {
            found: hex(&a.key_id),
            expected: hex(&key.key_id()),
        });
    }
    let sig = ed25519_dalek::Signature::from_bytes(&a.signature);
    key.0
        .verify_strict(&message(file_header, &signed), &sig)
        .map_err(|_| AuthError::BadSignature {
            offset: auth_offset,
        })?;
    for (i, got) in seen.iter().enumerate() {
        match a.entries.get(i) {
            Some(want) if want == got => {}
            Some(want) => {
                let detail = if want.offset != got.offset || want.kind != got.kind {
                    format!("signed: {} at offset {}", name_of(want.kind), want.offset)
                } else {
                    "SHA-256 differs".into()
                };
                return Err(AuthError::Mismatch {
                    kind: got.kind,
                    offset: got.offset,
                    detail,
                });
            }
            None => {
                return Err(AuthError::Mismatch {
                    kind: got.kind,
                    offset: got.offset,
                    detail: "not signed: a record was added".into(),
                })
            }
        }
    }
    if let Some(missing) = a.entries.get(seen.len()) {
        return Err(AuthError::Mismatch {
            kind: missing.kind,
            offset: missing.offset,
            detail: "signed but missing from the file".into(),
        });
    }
    Ok(Verified {
        records: seen.len(),
        auth_offset,
    })
}
