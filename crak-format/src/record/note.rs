//! NOTE record, `spec/crak-format.md#note`.

use crate::bytes::ByteString;
use serde::{Deserialize, Serialize};

/// A free annotation (spec §3.15); not critical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Key.
    pub key: ByteString,
    /// Value.
    pub value: ByteString,
}
