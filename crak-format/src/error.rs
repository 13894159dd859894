//! Errors of the parser and the stream reader, with the error kinds of `spec/crak-format.md` §2.

use crate::record::kind;
use std::fmt;
use std::io;
use std::sync::Arc;

/// What went wrong, as the spec names it (§2.1–§2.4). [`ErrorKind::as_str`] gives the spec's
/// kebab-case spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file does not start with [`crate::MAGIC`] (§2.1).
    #[error("bad-magic")]
    BadMagic,
    /// The file's major version is not 1 (§2.1).
    #[error("unsupported-version")]
    UnsupportedVersion,
    /// The file header sets a critical flag bit this reader does not know (§2.1).
    #[error("unknown-flag")]
    UnknownFlag,
    /// The file, a record or a field ends early, or END is missing (§2.2, §2.4).
    #[error("truncated")]
    Truncated,
    /// A record's CRC32C does not match its header and payload (§2.2).
    #[error("bad-crc")]
    BadCrc,
    /// A stream reader met a metadata record longer than 64 MiB (§2.2).
    #[error("too-large")]
    TooLarge,
    /// A record of an unknown kind has its CRITICAL bit set (§2.2).
    #[error("unknown-critical-record")]
    UnknownCriticalRecord,
    /// A field is outside its stated domain (§2.2).
    #[error("bad-value")]
    BadValue,
    /// A record names a pid whose PROCESS record has not been seen, or HEADER is not first (§2.3).
    #[error("orphan-record")]
    OrphanRecord,
    /// A record that may appear once (per image, process or thread) appears again (§2.3).
    #[error("duplicate")]
    Duplicate,
    /// Bytes follow the END record (§2.3).
    #[error("trailing-data")]
    TrailingData,
    /// END's counts differ from what was read (§2.4).
    #[error("bad-end")]
    BadEnd,
    /// END's digest differs from the one computed (§2.4).
    #[error("bad-digest")]
    BadDigest,
    /// The underlying reader failed (stream reader only; not a property of the image).
    #[error("io")]
    Io,
}

impl ErrorKind {
    /// The spec's kebab-case name of the kind (`bad-crc`, `truncated`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadMagic => "bad-magic",
            ErrorKind::UnsupportedVersion => "unsupported-version",
            ErrorKind::UnknownFlag => "unknown-flag",
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadCrc => "bad-crc",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::UnknownCriticalRecord => "unknown-critical-record",
            ErrorKind::BadValue => "bad-value",
            ErrorKind::OrphanRecord => "orphan-record",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::TrailingData => "trailing-data",
            ErrorKind::BadEnd => "bad-end",
            ErrorKind::BadDigest => "bad-digest",
            ErrorKind::Io => "io",
        }
    }

    /// The kind for its kebab-case name.
    pub fn from_str_opt(s: &str) -> Option<Self> {
        use ErrorKind::*;
        [
            BadMagic,
            UnsupportedVersion,
            UnknownFlag,
            Truncated,
            BadCrc,
            TooLarge,
            UnknownCriticalRecord,
            BadValue,
            OrphanRecord,
            Duplicate,
            TrailingData,
            BadEnd,
            BadDigest,
            Io,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A rejected image: the error kind, the record (kind and file offset of its header), the field
/// and the absolute file offset of that field, when known.
///
/// Displays as `PAGES record at offset 0x2000: field nr_pages at offset 0x2010: truncated`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{}", self.render())]
pub struct Error {
    kind: ErrorKind,
    record: Option<(u16, u64)>,
    field: Option<&'static str>,
    offset: Option<u64>,
    detail: Option<String>,
    #[source]
    io: Option<Arc<io::Error>>,
}

impl Error {
    /// An error of `kind` with no location yet.
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            kind,
            record: None,
            field: None,
            offset: None,
            detail: None,
            io: None,
        }
    }

    /// An error from the underlying reader; an unexpected end of file becomes `truncated`.
    pub fn io(e: io::Error) -> Self {
        let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
            ErrorKind::Truncated
        } else {
            ErrorKind::Io
        };
        Error {
            io: Some(Arc::new(e)),
            ..Error::new(kind)
        }
    }

    /// Sets the record: its kind and the file offset of its record header.
    pub fn with_record(mut self, kind: u16, offset: u64) -> Self {
        self.record = Some((kind, offset));
        self
    }

    /// Sets the field and the file offset where it starts.
    pub fn with_field(mut self, field: &'static str, offset: u64) -> Self {
        self.field = Some(field);
        self.offset = Some(offset);
        self
    }

    /// Sets the file offset without a field name.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Adds a human explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The spec's kebab-case kind (`bad-crc`, `truncated`, ...).
    pub fn kind_str(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The record kind (§3) of the record in error.
    pub fn record_kind(&self) -> Option<u16> {
        self.record.map(|(k, _)| k)
    }

    /// The name of the record kind in error (`PAGES`), or `None` when there is no record or it
    /// is of an unknown kind.
    pub fn record_name(&self) -> Option<&'static str> {
        self.record.and_then(|(k, _)| kind::name(k))
    }

    /// File offset of the record header of the record in error.
    pub fn record_offset(&self) -> Option<u64> {
        self.record.map(|(_, o)| o)
    }

    /// The field in error, as the spec names it.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// Absolute file offset of the field (or of the point of failure).
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// A human explanation, when there is more to say than the kind.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if let Some((k, off)) = self.record {
            match kind::name(k) {
                Some(name) => s.push_str(name),
                None => s.push_str(&format!("record kind {k:#06x}")),
            }
            s.push_str(&format!(" record at offset {off:#x}: "));
        }
        match (self.field, self.offset) {
            (Some(f), Some(o)) => s.push_str(&format!("field {f} at offset {o:#x}: ")),
            (Some(f), None) => s.push_str(&format!("field {f}: ")),
            (None, Some(o)) => s.push_str(&format!("at offset {o:#x}: ")),
            (None, None) => {}
        }
        s.push_str(self.kind.as_str());
        if let Some(d) = &self.detail {
            s.push_str(": ");
            s.push_str(d);
        }
        if let Some(e) = &self.io {
            s.push_str(&format!(" ({e})"));
        }
        s
    }
}

impl PartialEq for Error {
    /// Errors are equal when they say the same thing; the wrapped I/O error is compared by kind.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.record == other.record
            && self.field == other.field
            && self.offset == other.offset
            && self.detail == other.detail
            && self.io.as_ref().map(|e| e.kind()) == other.io.as_ref().map(|e| e.kind())
    }
}

/// A field error inside one record's payload, before the record's place in the file is known.
///
/// `offset` is relative to the start of the payload; [`FieldError::in_record`] turns it into an
/// [`Error`] with absolute offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The kind (`truncated` or `bad-value`).
    pub kind: ErrorKind,
    /// The field, as the spec names it.
    pub field: &'static str,
    /// Offset of the field from the start of the payload.
    pub offset: usize,
    /// A human explanation.
    pub detail: Option<String>,
}

impl FieldError {
    /// The error located in the record of `kind` whose header is at file offset `record_offset`.
    pub fn in_record(self, kind: u16, record_offset: u64) -> Error {
        let payload = record_offset.saturating_add(crate::RECORD_HEADER_LEN as u64);
        let mut e = Error::new(self.kind)
            .with_record(kind, record_offset)
            .with_field(self.field, payload.saturating_add(self.offset as u64));
        e.detail = self.detail;
        e
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field {} at payload offset {:#x}: {}",
            self.field,
            self.offset,
            self.kind.as_str()
        )?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_record_field_and_offsets() {
        let e = Error::new(ErrorKind::Truncated)
            .with_record(kind::PAGES, 0x2000)
            .with_field("nr_pages", 0x2010);
        assert_eq!(
            e.to_string(),
            "PAGES record at offset 0x2000: field nr_pages at offset 0x2010: truncated"
        );
        assert_eq!(e.kind_str(), "truncated");
        assert_eq!(e.record_name(), Some("PAGES"));
    }

    #[test]
    fn unknown_record_kind_is_shown_in_hex() {
        let e = Error::new(ErrorKind::UnknownCriticalRecord).with_record(0x8001, 0x40);
        assert_eq!(
            e.to_string(),
            "record kind 0x8001 record at offset 0x40: unknown-critical-record"
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for k in [
            ErrorKind::BadMagic,
            ErrorKind::UnknownCriticalRecord,
            ErrorKind::BadDigest,
            ErrorKind::TrailingData,
        ] {
            assert_eq!(ErrorKind::from_str_opt(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(ErrorKind::from_str_opt("nope"), None);
    }

    #[test]
    fn eof_becomes_truncated() {
        let e = Error::io(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(e.kind(), ErrorKind::Truncated);
        let e = Error::io(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
