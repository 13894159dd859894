//! Shared harness for the integration tests: scratch directories, binary paths and command
//! runners that print the command, stdout and stderr when something fails.

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a workspace binary built by cargo (`crak-dump`, `crak-capture`, `crak-restore`).
///
/// Integration tests in this crate do not get `CARGO_BIN_EXE_*` for other packages, so the
/// binaries are found next to the test executable's `deps/` directory; the test command builds
/// them first (`cargo build --workspace --bins` runs before `cargo test`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    dir.join(name)
}
