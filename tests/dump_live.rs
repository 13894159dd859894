//! Integration tests: crak-dump on live captures. A small C program (`tests/dump/nested.c`,
//! built with `cc -g -O0`) calls `main -> outer_function -> middle_function -> inner_function`
//! and blocks in `read(2)`; it is captured with `crak-capture --leave-running` and the image is
//! turned into an ELF core file that the real gdb and readelf must read.
//!
//! Needs root (ptrace), `cc`, `gdb`, `readelf` and the workspace binaries
//! (`cargo build --workspace --bins` first).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The nested-call program, compiled once per run.
fn nested_exe() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let exe = dir.path().join("nested");
    if !exe.exists() {
        let src = crak_tests::workspace_root().join("tests/dump/nested.c");
        let out = Command::new("cc")
            .args(["-g", "-O0", "-Wall", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    exe
}

/// The running program: killed and reaped when dropped.
struct Target {
    child: Child,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the program and waits until it is blocked in `read`.
fn start() -> Target {
    let mut child = Command::new(nested_exe())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nested");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read READY");
    assert!(line.starts_with("READY"), "expected READY, got {line:?}");
    let t = Target { child };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", t.child.id())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if state == Some("S") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    t
}

/// Runs a command and returns (status, stdout, stderr), printing everything on failure.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let r = (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    eprintln!(
        "$ {cmd:?}\nexit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        r.0, r.1, r.2
    );
    r
}

/// Captures the program, leaving it running; returns the image path.
fn capture(t: &Target, dir: &Path) -> PathBuf {
    let bin = crak_tests::bin("crak-capture");
    assert!(
        bin.exists(),
        "{} missing: build the workspace binaries",
        bin.display()
    );
    let img = dir.join("nested.crak");
    let (code, _, _) = run(Command::new(bin)
        .arg(t.child.id().to_string())
        .arg("-o")
        .arg(&img)
        .arg("--leave-running"));
    assert_eq!(code, 0, "crak-capture failed");
    img
}

fn crak_dump() -> Command {
    let bin = crak_tests::bin("crak-dump");
    assert!(
        bin.exists(),
        "{} missing: build the workspace binaries",
        bin.display()
    );
    Command::new(bin)
}

/// Positions of `names` in `text`, which must appear in this order.
#[track_caller]
fn assert_in_order(text: &str, names: &[&str]) {
    let mut from = 0;
    for n in names {
        match text.get(from..).and_then(|t| t.find(n)) {
            Some(i) => from += i + n.len(),
            None => panic!("{n:?} missing or out of order in:\n{text}"),
        }
    }
}

#[test]
fn core_file_of_a_live_capture_opens_in_gdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start();
    let img = capture(&t, dir.path());
    let core = dir.path().join("nested.core");
    let (code, _, _) = run(crak_dump().arg("core").arg(&img).arg("-o").arg(&core));
    assert_eq!(code, 0);

    // readelf lists the notes.
    let (code, notes, _) = run(Command::new("readelf").arg("-n").arg(&core));
    assert_eq!(code, 0);
    for n in [
        "NT_PRSTATUS",
        "NT_PRPSINFO",
        "NT_SIGINFO",
        "NT_AUXV",
        "NT_FILE",
        "NT_FPREGSET",
        "NT_X86_XSTATE",
    ] {
        assert!(notes.contains(n), "readelf -n lacks {n}:\n{notes}");
    }
    let (code, headers, _) = run(Command::new("readelf").arg("-lh").arg(&core));
    assert_eq!(code, 0);
    assert!(headers.contains("CORE (Core file)"), "{headers}");
    assert!(headers.contains("LOAD"), "{headers}");

    // gdb: the call chain, a global in the executable's data and a string on the heap.
    let exe = nested_exe();
    let (code, out, err) = run(Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            "bt",
            "-ex",
            "x/s &crak_global_text",
            "-ex",
        ])
        .arg("x/s crak_heap_text")
        .arg(&exe)
        .arg(&core));
    assert_eq!(code, 0, "gdb failed: {err}");
    assert_in_order(
        &out,
        &[
            "inner_function",
            "middle_function",
            "outer_function",
            "main",
        ],
    );
    assert!(out.contains("\"crak global text 5f3a\""), "{out}");
    assert!(out.contains("\"crak heap text 91c7\""), "{out}");
    assert!(out.contains("nested.c:"), "no source lines: {out}");
    drop(t);
}

#[test]
fn core_to_stdout_equals_core_to_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start();
    let img = capture(&t, dir.path());
    drop(t);
    let core = dir.path().join("a.core");
    let (code, _, _) = run(crak_dump().arg("core").arg(&img).arg("-o").arg(&core));
    assert_eq!(code, 0);
    let o = crak_dump()
        .arg("core")
        .arg(&img)
        .args(["-o", "-"])
        .output()
        .expect("crak-dump core -o -");
    assert!(o.status.success());
    assert!(o.stdout == std::fs::read(&core).expect("read core"));
    // A process that is not in the image is an error and writes nothing.
    let none = dir.path().join("none.core");
    let (code, _, err) = run(crak_dump()
        .arg("core")
        .arg(&img)
        .args(["--pid", "1", "-o"])
        .arg(&none));
    assert_eq!(code, 2, "{err}");
    assert!(!none.exists());
}

#[test]
fn backtrace_of_a_live_capture_names_the_nested_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start();
    let pid = t.child.id();
    let img = capture(&t, dir.path());
    drop(t);
    let (code, out, _) = run(crak_dump().arg("backtrace").arg("--color=never").arg(&img));
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("process {pid} (nested), thread {pid}")),
        "{out}"
    );
    assert_in_order(
        &out,
        &[
            "read",
            "inner_function+0x",
            "middle_function+0x",
            "outer_function+0x",
            "main+0x",
            "_start+0x",
        ],
    );
    assert!(!out.contains("unwinding stopped early"), "{out}");
    assert!(!out.contains("stack scan"), "{out}");

    let (code, json, _) = run(crak_dump().arg("backtrace").arg("--json").arg(&img));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let frames = v["threads"][0]["frames"].as_array().expect("frames");
    let names: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    let at = |n: &str| names.iter().position(|x| *x == n);
    let (i, m, o, mn) = (
        at("inner_function").expect("inner_function"),
        at("middle_function").expect("middle_function"),
        at("outer_function").expect("outer_function"),
        at("main").expect("main"),
    );
    assert!(i < m && m < o && o < mn, "{names:?}");
    assert_eq!(frames[0]["how"], "registers");
    assert_eq!(frames[i]["how"], "cfi");
    assert_eq!(v["threads"][0]["complete"], true);
    // The executable's frames point into it.
    let exe = nested_exe();
    assert_eq!(frames[i]["module"].as_str(), exe.to_str());
}

#[test]
fn elf_core_files_are_read_by_the_read_only_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start();
    let pid = t.child.id();
    let img = capture(&t, dir.path());
    // gdb's gcore of the same process, still blocked in the same place.
    let prefix = dir.path().join("gc");
    let (code, _, _) = run(Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string()));
    assert_eq!(code, 0, "gcore failed");
    drop(t);
    let gc = dir.path().join(format!("gc.{pid}"));
    // And crak-dump's own core file of the capture.
    let ours = dir.path().join("ours.core");
    let (code, _, _) = run(crak_dump().arg("core").arg(&img).arg("-o").arg(&ours));
    assert_eq!(code, 0);

    for core in [&gc, &ours] {
        let (code, out, _) = run(crak_dump().arg("--color=never").arg(core));
        assert_eq!(code, 0);
        assert!(out.contains("ELF core file"), "{out}");
        assert!(out.contains(&format!("{pid} nested")), "{out}");
        assert!(out.contains("[stack]"), "{out}");

        let (code, json, _) = run(crak_dump().arg(core).arg("--json"));
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["processes"][0]["process"]["pid"], pid);
        assert_eq!(v["processes"][0]["threads"][0]["tid"], pid);
        assert_eq!(v["processes"][0]["fds"].as_array().map(Vec::len), Some(0));
        assert!(v["notes"][0]["value"]
            .as_str()
            .is_some_and(|s| s.contains("fds")));

        let (code, out, _) = run(crak_dump()
            .args(["grep", "--color=never"])
            .arg(core)
            .arg("crak heap text 91c7"));
        assert_eq!(code, 0, "{out}");
        let (code, out, _) = run(crak_dump().args(["strings", "-n", "12"]).arg(core));
        assert_eq!(code, 0);
        assert!(out.contains("crak heap text 91c7"), "{out}");
        let (code, out, _) = run(crak_dump().args(["backtrace", "--color=never"]).arg(core));
        assert_eq!(code, 0);
        assert_in_order(
            &out,
            &[
                "inner_function",
                "middle_function",
                "outer_function",
                "main",
            ],
        );
        // mem: the heap string's address, from grep's JSON, reads back in a hexdump.
        let (_, json, _) = run(crak_dump()
            .args(["grep", "--json"])
            .arg(core)
            .arg("crak heap text 91c7"));
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let addr = v["matches"][0]["addr"].as_u64().expect("addr");
        let (code, out, _) = run(crak_dump()
            .args(["mem", "--raw"])
            .arg(core)
            .arg(format!("0x{addr:x}+19")));
        assert_eq!(code, 0);
        assert_eq!(out, "crak heap text 91c7");
        // A core file equals itself, and differs from the crak image it is not.
        let (code, _, _) = run(crak_dump().arg("diff").arg(core).arg(core));
        assert_eq!(code, 0);
        let (code, out, _) = run(crak_dump()
            .args(["diff", "--color=never"])
            .arg(&img)
            .arg(core));
        assert_eq!(code, 1);
        assert!(out.contains("creds: present -> absent"), "{out}");
    }
    // Our core holds the captured heap unchanged: no page of the heap differs.
    let (_, out, _) = run(crak_dump().args(["diff", "--json"]).arg(&img).arg(&ours));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let heap_pages_differ = v["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .any(|p| p["kinds"]["bytes"].as_u64().unwrap_or(0) > 0);
    assert!(!heap_pages_differ, "stored bytes differ: {out}");
    // Not a core file: refused with exit 2; validate stays crak-only.
    let (code, _, err) = run(crak_dump().arg(nested_exe()));
    assert_eq!(code, 2);
    assert!(err.contains("not a core file"), "{err}");
}
