//! crak-dump: the offline analyzer for crak images.

use std::ffi::OsString;
use std::io::Write;

/// Runs crak-dump with `args` (program name first); returns the exit code.
pub fn run(_args: Vec<OsString>, _out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "crak-dump: not implemented yet");
    2
}
