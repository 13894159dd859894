//! The crak checkpoint image format (`spec/crak-format.md`): a typed model, a zero-copy slice
//! parser, a streaming reader, a sequential writer, a validator and a JSON form.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
pub mod auth;
pub mod bytes;
pub mod edit;
pub mod error;
pub mod image;
pub mod json;
pub mod names;
pub mod read;
pub mod record;
pub mod rewrite;
pub mod validate;
pub mod write;

pub use bytes::{Blob, ByteString};
pub use error::{Error, ErrorKind, FieldError};
pub use image::{Image, Process, Version, CURRENT_VERSION};
pub use json::{from_json, to_json};
pub use read::{parse, read_stream_metadata, Layout, Parsed, RecordSpan, StreamReader};
pub use record::Record;
pub use write::{to_vec, write_image, Writer};

/// `\x89CRAK\r\n\x1a`, the first 8 bytes of every image (spec §2.1).
pub const MAGIC: [u8; 8] = [0x89, b'C', b'R', b'A', b'K', b'\r', b'\n', 0x1a];
/// Bytes in the file header.
pub const FILE_HEADER_LEN: usize = 16;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Bytes in a record trailer (the CRC).
pub const RECORD_TRAILER_LEN: usize = 4;
/// The CRITICAL bit of a record's flags.
pub const FLAG_CRITICAL: u16 = 1;
/// Largest metadata payload a stream reader accepts (spec §2.2).
pub const MAX_METADATA_PAYLOAD: u64 = 64 << 20;
