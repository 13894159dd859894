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

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serialises the live tests of one test binary (they share PIDs and the CPU).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this process runs with uid 0 (live tests need ptrace, `clone3` with `set_tid`, ...).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `pid` is gone (no /proc entry) or a zombie.
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// Waits up to `timeout` for `pid` to be gone or a zombie; whether it is.
pub fn wait_gone(pid: i32, timeout: std::time::Duration) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < timeout {
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    is_gone(pid)
}
