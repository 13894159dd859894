//! Shared harness for the integration tests: scratch directories, binary paths and command
//! runners that print the command, stdout and stderr when something fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Returns from the calling test, saying so, unless it runs as root (live tests need ptrace,
/// `clone3` with `set_tid`, ...).
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::is_root() {
            eprintln!("live tests need root; skipped");
            return;
        }
    };
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

/// Sends `sig` to `pid`, ignoring errors (the process may be gone).
pub fn signal(pid: i32, sig: i32) {
    let _ = crak_restore::sys::process::kill(pid, sig);
}

/// A live test's scratch directory, the processes it started (killed when it is dropped) and a
/// transcript of the commands it ran, printed with the program's stderr when the test fails.
pub struct Scratch {
    /// The directory; the test programs run in it.
    pub dir: tempfile::TempDir,
    /// Processes started with [`Scratch::spawn`].
    pub children: Vec<Child>,
    /// Other processes to kill at the end (restored ones).
    pub pids: Vec<i32>,
    /// The transcript.
    pub log: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.pids {
            signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
    }
}

impl Scratch {
    /// A new scratch directory named after `prefix`.
    pub fn new(prefix: &str) -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("tempdir"),
            children: Vec::new(),
            pids: Vec::new(),
            log: String::new(),
        }
    }

    /// `name` in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Fails the test with `msg`, the transcript and the program's stderr.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        let err = std::fs::read_to_string(self.path("err.log")).unwrap_or_default();
        panic!(
            "{msg}\n--- transcript ---\n{}\n--- program stderr ---\n{err}",
            self.log
        );
    }

    /// Compiles tests/live/<name>.c into the scratch directory (`-pthread -lrt`; `-mavx` for
    /// the vector program).
    pub fn compile(&mut self, name: &str) -> PathBuf {
        let src = workspace_root()
            .join("tests/live")
            .join(format!("{name}.c"));
        let out = self.path(name);
        let mut cmd = Command::new("cc");
        cmd.args(["-O1", "-g", "-Wall", "-o"]).arg(&out).arg(&src);
        cmd.args(["-pthread", "-lrt"]);
        if name == "vector" {
            cmd.arg("-mavx");
        }
        let o = cmd.output().expect("run cc");
        if !o.status.success() {
            self.fail(&format!(
                "cc {name}.c failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        out
    }

    /// Starts a program in the scratch directory with stdin from /dev/null and output to
    /// out.log / err.log.
    pub fn spawn(&mut self, program: &Path, args: &[&str]) -> i32 {
        let out = std::fs::File::create(self.path("out.log")).expect("out.log");
        let err = std::fs::File::create(self.path("err.log")).expect("err.log");
        let child = Command::new(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn test program");
        let pid = child.id() as i32;
        let _ = writeln!(self.log, "spawned {} {args:?} as {pid}", program.display());
        self.children.push(child);
        pid
    }

    /// Waits until file `name` exists in the scratch dir; returns its contents.
    pub fn wait_file(&self, name: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(self.path(name)) {
                return s;
            }
            if t0.elapsed() > timeout {
                self.fail(&format!("timed out waiting for {name}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `cmd` to completion and adds it, its status and its output to the transcript.
    pub fn run(&mut self, mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
        let cmd = cmd.borrow_mut();
        let shown = format!("{cmd:?}");
        let o = cmd.output().expect("run command");
        let _ = writeln!(
            self.log,
            "$ {shown}\n  -> {}\n  stdout: {}  stderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Captures `pid` into image.crak with crak-capture; unless `extra` holds
    /// `--leave-running`, checks that the capture killed it and reaps it.
    pub fn capture(&mut self, pid: i32, extra: &[&str]) -> PathBuf {
        let img = self.path("image.crak");
        let mut cmd = Command::new(bin("crak-capture"));
        cmd.arg(pid.to_string()).arg("-o").arg(&img).args(extra);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-capture failed");
        }
        if !extra.contains(&"--leave-running") {
            if let Some(i) = self.children.iter().position(|c| c.id() as i32 == pid) {
                let mut c = self.children.remove(i);
                let _ = c.wait();
            }
            if !wait_gone(pid, Duration::from_secs(5)) {
                self.fail("the captured process is still alive");
            }
        }
        img
    }

    /// `crak-restore ARGS IMAGE`, not run.
    pub fn restore_cmd(&self, img: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("crak-restore"));
        cmd.args(args).arg(img);
        cmd
    }

    /// `crak-restore --detach ARGS IMAGE`, which must succeed; returns the restored PID.
    pub fn restore_detached(&mut self, img: &Path, args: &[&str]) -> i32 {
        let mut a = vec!["--detach"];
        a.extend_from_slice(args);
        let cmd = self.restore_cmd(img, &a);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-restore failed");
        }
        let pid: i32 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail("crak-restore printed no PID"));
        self.pids.push(pid);
        pid
    }

    /// `crak-dump IMAGE ARGS`, which must succeed; its standard output.
    pub fn dump(&mut self, img: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new(bin("crak-dump"));
        cmd.arg(img).args(args);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-dump failed");
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Sends SIGUSR2 ("go") and waits for the program's verdict, which must be PASS.
    pub fn go_and_expect_pass(&mut self, pid: i32) {
        signal(pid, libc::SIGUSR2);
        let r = self.wait_file("result", Duration::from_secs(30));
        if r.trim() != "PASS" {
            self.fail(&format!("program reported: {}", r.trim()));
        }
    }
}
