//! Integration tests: capture. Real processes (small C programs from `tests/capture/`, compiled
//! with `cc`) are captured with the real `crak-capture` binary; the images are parsed and
//! validated, and the processes are checked to be unharmed (running, untraced, and seeing no
//! `EINTR` from the syscalls they were blocked in) whenever the capture leaves them running or
//! fails.
//!
//! Needs root (ptrace) and the workspace binaries (`cargo build --workspace --bins` first).

use crak_format::record::fd::FdKind;
use crak_format::record::vma::VmaKind;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Compiles `tests/capture/<name>.c` once per test run; returns the executable.
fn program(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let exe = dir.path().join(name);
    if !exe.exists() {
        let src = crak_tests::workspace_root().join(format!("tests/capture/{name}.c"));
        let out = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
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

/// A test process: killed and reaped when dropped.
struct Target {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The words after READY.
    ready: Vec<String>,
}

impl Target {
    fn start(name: &str, args: &[&Path]) -> Target {
        let mut child = Command::new(program(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn test program");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read READY");
        assert!(
            line.starts_with("READY"),
            "{name}: expected READY, got {line:?}"
        );
        let ready = line
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        // Let it enter the blocking call it waits in.
        let t = Target {
            child,
            stdout,
            ready,
        };
        t.wait_sleeping();
        t
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_sleeping(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if state(self.pid()) == Some('S') {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything it prints until it exits, and its exit status.
    fn finish(mut self) -> (String, std::process::ExitStatus) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let st = self.child.wait().expect("wait");
        (rest, st)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn state(pid: i32) -> Option<char> {
    let s = proc_status(pid);
    let line = s.lines().find(|l| l.starts_with("State:"))?;
    line.split_whitespace().nth(1)?.chars().next()
}

/// The process is alive, not stopped and not traced.
fn assert_unharmed(pid: i32) {
    let st = proc_status(pid);
    assert!(!st.is_empty(), "process {pid} is gone");
    let tracer = st
        .lines()
        .find(|l| l.starts_with("TracerPid:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string());
    assert_eq!(
        tracer.as_deref(),
        Some("0"),
        "process {pid} is still traced:\n{st}"
    );
    let s = state(pid);
    assert!(
        matches!(s, Some('S') | Some('R') | Some('D')),
        "process {pid} is in state {s:?}"
    );
}

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn capture(pid: i32, out: &Path, extra: &[&str], fault: Option<&str>) -> Run {
    let bin = crak_tests::bin("crak-capture");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.arg(pid.to_string()).arg("-o").arg(out).args(extra);
    cmd.env_remove("CRAK_FAULT");
    if let Some(f) = fault {
        cmd.env("CRAK_FAULT", f);
    }
    let o = cmd.output().expect("run crak-capture");
    let r = Run {
        code: o.status.code(),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    eprintln!("$ {:?}\nexit {:?}\nstderr: {}", cmd, r.code, r.stderr);
    r
}

/// The VMA containing `addr`.
fn vma_at<'a>(p: &'a crak_format::Process<'_>, addr: u64) -> &'a crak_format::record::vma::Vma {
    p.vmas
        .iter()
        .find(|v| v.start <= addr && addr < v.end)
        .unwrap_or_else(|| panic!("no VMA at {addr:#x}"))
}

/// The stored contents of the page at `addr`, if a PAGES record holds it.
fn stored(p: &crak_format::Process<'_>, addr: u64) -> Option<Vec<u8>> {
    p.pages.iter().find_map(|r| {
        let end = r.addr + r.nr_pages * 4096;
        (r.addr <= addr && addr < end).then(|| {
            let off = (addr - r.addr) as usize;
            r.data.as_bytes()[off..off + 4096].to_vec()
        })
    })
}

fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).expect("hex address")
}

fn pat(i: usize) -> u8 {
    (i.wrapping_mul(7).wrapping_add(i >> 12)) as u8
}

/// Starts the sleeper with a stop file and a data file in `dir`.
fn sleeper(dir: &Path) -> (Target, PathBuf) {
    let stop = dir.join("stop");
    let data = dir.join("data.txt");
    (Target::start("sleeper", &[&stop, &data]), stop)
}

/// Tells a sleeper to check its state; returns its verdict line.
fn sleeper_verdict(t: Target, stop: &Path) -> String {
    std::fs::write(stop, b"").expect("create stop file");
    let (out, st) = t.finish();
    assert!(st.success(), "sleeper failed ({st:?}): {out}");
    out
}

#[test]
fn capture_and_kill_writes_a_valid_image_with_the_process_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, _stop) = sleeper(dir.path());
    let pid = t.pid();
    let pattern_addr = parse_hex(&t.ready[0]);
    let zero_addr = parse_hex(&t.ready[1]);
    let (rfd, wfd, ffd): (u32, u32, u32) = (
        t.ready[2].parse().unwrap(),
        t.ready[3].parse().unwrap(),
        t.ready[4].parse().unwrap(),
    );
    let img = dir.path().join("sleeper.crak");
    let r = capture(pid, &img, &[], None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("pages stored"),
        "summary line: {}",
        r.stderr
    );
    // Killed only after the image was durable.
    let st = t.child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");

    let bytes = std::fs::read(&img).expect("image written");
    let parsed = crak_format::parse(&bytes).expect("image parses");
    let report = crak_format::validate::validate(&parsed.image, Some(&parsed.layout));
    assert!(report.is_valid(), "{:#?}", report.findings);
    let image = &parsed.image;
    assert_eq!(image.header.arch, 62);
    assert_eq!(image.header.page_size, 4096);
    assert!(image
        .header
        .special_mappings
        .iter()
        .any(|m| m.kind == VmaKind::Vdso));
    assert_eq!(image.processes.len(), 1);
    let p = &image.processes[0];
    assert_eq!(p.process.pid, pid as u32);
    assert_eq!(p.process.tids, vec![pid as u32]);
    assert_eq!(p.process.comm.as_bytes(), b"sleeper");
    assert!(p
        .process
        .cmdline
        .as_bytes()
        .starts_with(program("sleeper").to_str().unwrap().as_bytes()));
    assert_eq!(p.creds.as_ref().unwrap().euid, 0);
    assert_eq!(p.sigactions.as_ref().unwrap().actions.len(), 62);
    assert!(p.rlimits.as_ref().unwrap().limits.len() >= 16);

    // Registers: stopped inside nanosleep/clock_nanosleep with the restart code.
    assert_eq!(p.threads.len(), 1);
    let g = &p.threads[0].gpr;
    assert!(
        g.orig_rax == 35 || g.orig_rax == 230,
        "orig_rax {}",
        g.orig_rax
    );
    assert_eq!(g.rax as i64, -516, "-ERESTART_RESTARTBLOCK");
    let exec = p
        .vmas
        .iter()
        .find(|v| v.start <= g.rip && g.rip < v.end)
        .expect("rip inside a mapping");
    assert_ne!(exec.prot & 4, 0, "rip in an executable mapping");
    assert!(p
        .vmas
        .iter()
        .any(|v| v.start <= g.rsp && g.rsp < v.end && v.kind == VmaKind::Stack));
    assert_eq!(p.xsaves.len(), 1);
    assert_eq!(p.xsaves[0].area.len(), image.header.xsave_size as usize);

    // Memory: the 8 MiB pattern is stored exactly; the touched 2 MiB of zeros are ZERO_PAGES.
    let v = p
        .vmas
        .iter()
        .find(|v| v.start <= pattern_addr && pattern_addr < v.end)
        .expect("pattern mapping");
    assert_eq!(v.kind, VmaKind::Anon);
    let len = 8usize << 20;
    let mut seen = vec![false; len / 4096];
    for run in &p.pages {
        let data = run.data.as_bytes();
        for k in 0..run.nr_pages as usize {
            let a = run.addr + (k * 4096) as u64;
            if a >= pattern_addr && a < pattern_addr + len as u64 {
                let off = (a - pattern_addr) as usize;
                let page = &data[k * 4096..(k + 1) * 4096];
                for (j, b) in page.iter().enumerate() {
                    assert_eq!(*b, pat(off + j), "pattern byte at {:#x}", a + j as u64);
                }
                seen[off / 4096] = true;
            }
        }
    }
    assert!(seen.iter().all(|s| *s), "every pattern page stored");
    let zero_pages: u64 = p
        .zero_runs
        .iter()
        .filter(|z| z.addr >= zero_addr && z.addr < zero_addr + (2 << 20))
        .map(|z| z.nr_pages)
        .sum();
    assert_eq!(zero_pages, 512, "the touched zero region is ZERO_PAGES");
    assert!(
        !p.pages
            .iter()
            .any(|r| r.addr < zero_addr + (2 << 20) && zero_addr < r.addr + r.nr_pages * 4096),
        "zero pages are never stored"
    );

    // Files: both pipe ends, one PIPE_DATA with the 10000 buffered bytes, the data file at 3.
    let fd = |n: u32| p.fds.iter().find(|f| f.fd == n).expect("fd recorded");
    assert_eq!(fd(rfd).kind, FdKind::Pipe);
    assert_eq!(fd(wfd).kind, FdKind::Pipe);
    assert_eq!(fd(rfd).ino, fd(wfd).ino);
    let pipe = image
        .pipes
        .iter()
        .find(|d| d.pipe_id == fd(rfd).ino)
        .expect("PIPE_DATA");
    // One PIPE_DATA per pipe: as many as distinct pipe ids among the fds.
    let mut ids: Vec<u64> = p
        .fds
        .iter()
        .filter(|f| matches!(f.kind, FdKind::Pipe | FdKind::Fifo))
        .map(|f| f.ino)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(image.pipes.len(), ids.len());
    assert_eq!(pipe.data.len(), 10000);
    assert!(pipe
        .data
        .as_bytes()
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i * 13) as u8));
    assert!(pipe.capacity >= 10000);
    let f = fd(ffd);
    assert_eq!(f.kind, FdKind::Reg);
    assert_eq!(f.pos, 3);
    assert_eq!(
        f.path.as_bytes(),
        dir.path().join("data.txt").to_str().unwrap().as_bytes()
    );
    assert_eq!(f.size, 4 * 4096);
    assert!(!f.deleted);
    assert_eq!(fd(0).kind, FdKind::Pipe, "stdin is the harness's pipe");

    // A deleted, still open file carries its contents.
    let d = fd(t.ready[8].parse().unwrap());
    assert_eq!(d.kind, FdKind::Reg);
    assert!(d.deleted);
    assert!(
        d.path.as_bytes().ends_with(b"data.txt.deleted"),
        "{:?}",
        d.path
    );
    assert_eq!(d.contents.as_bytes(), b"gone but open");
    // /dev/null: a character device, close-on-exec.
    let n = fd(t.ready[9].parse().unwrap());
    assert_eq!(n.kind, FdKind::Chr);
    assert_eq!(n.rdev, libc::makedev(1, 3));
    assert_eq!(n.fd_flags, crak_format::record::fd::FD_CLOEXEC);
    assert_eq!(n.path.as_bytes(), b"/dev/null");
    // A FIFO with buffered bytes.
    let ff = fd(t.ready[10].parse().unwrap());
    assert_eq!(ff.kind, FdKind::Fifo);
    assert!(ff.path.as_bytes().ends_with(b"data.txt.fifo"));
    let fifo = image
        .pipes
        .iter()
        .find(|d| d.pipe_id == ff.ino)
        .expect("PIPE_DATA of the FIFO");
    assert_eq!(fifo.data.as_bytes(), b"fifo!");

    // A PROT_NONE page's data is stored (read through /proc/PID/mem).
    let guard = parse_hex(&t.ready[5]);
    let gv = vma_at(p, guard);
    assert_eq!((gv.kind, gv.prot), (VmaKind::Anon, 0));
    assert_eq!(stored(p, guard), Some(vec![0x5a; 4096]));
    // A private file mapping stores only its private copy.
    let fm = parse_hex(&t.ready[6]);
    let fv = vma_at(p, fm);
    assert_eq!(fv.kind, VmaKind::File);
    assert_eq!(fv.flags & 0x3, crak_format::record::vma::MAP_PRIVATE);
    assert_eq!(fv.path.as_bytes(), f.path.as_bytes());
    assert_eq!((fv.pgoff, fv.ino, fv.size), (0, f.ino, 4 * 4096));
    assert_eq!(stored(p, fm + 4096), Some(vec![0x77; 4096]));
    assert_eq!(stored(p, fm), None, "a clean file page is not stored");
    assert_eq!(stored(p, fm + 2 * 4096), None);
    // Shared anonymous memory is stored, as MAP_SHARED.
    let sh = parse_hex(&t.ready[7]);
    let sv = vma_at(p, sh);
    assert_eq!(sv.kind, VmaKind::Anon);
    assert_eq!(sv.flags & 0x3, crak_format::record::vma::MAP_SHARED);
    assert!(sv.path.as_bytes().is_empty());
    assert_eq!(stored(p, sh + 4096), Some(vec![0x33; 4096]));

    // No temporary file is left next to the image.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("crak-tmp")), "{names:?}");
}

#[test]
fn leave_running_is_invisible_to_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (t, stop) = sleeper(dir.path());
    let pid = t.pid();
    for i in 0..3 {
        let img = dir.path().join(format!("img{i}.crak"));
        let r = capture(pid, &img, &["--leave-running"], None);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stderr.contains("left running"), "{}", r.stderr);
        assert_unharmed(pid);
        let bytes = std::fs::read(&img).unwrap();
        let parsed = crak_format::parse(&bytes).expect("parses");
        assert!(crak_format::validate::validate(&parsed.image, None).is_valid());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its nanosleep rounds never failed or returned early, memory, pipe and file intact.
    assert_eq!(sleeper_verdict(t, &stop).trim(), "PASS");
}

#[test]
fn leave_running_read_on_a_pipe_keeps_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Target::start("reader", &[]);
    let pid = t.pid();
    let r = capture(
        pid,
        &dir.path().join("r.crak"),
        &["--leave-running", "--json"],
        None,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stderr.trim()).expect("JSON summary");
    assert_eq!(v["pid"], pid);
    assert_eq!(v["left_running"], true);
    assert!(v["pages"].as_u64().unwrap() > 0);
    assert_unharmed(pid);
    std::thread::sleep(Duration::from_millis(50));
    assert_unharmed(pid);
    t.child.stdin.as_mut().unwrap().write_all(b"hello").unwrap();
    let (out, st) = t.finish();
    assert!(st.success(), "{out}");
    assert_eq!(out.trim(), "GOT hello");
}

#[test]
fn image_to_stdout() {
    let t = {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = sleeper(dir.path());
        (t, dir)
    };
    let (mut t, _dir) = t;
    let pid = t.pid();
    let r = capture(pid, Path::new("-"), &[], None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let parsed = crak_format::parse(&r.stdout).expect("stdout holds an image");
    assert_eq!(parsed.image.processes[0].process.pid, pid as u32);
    assert!(parsed.end.page_count > 2000);
    let st = t.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
}

#[test]
fn refuses_nonexistent_zombie_and_kernel_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.crak");
    // A pid above pid_max's default range that is not in use.
    let mut free = 4_000_000;
    while Path::new(&format!("/proc/{free}")).exists() {
        free += 1;
    }
    let r = capture(free, &out, &[], None);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains(&format!("no process with pid {free}")),
        "{}",
        r.stderr
    );

    let r = capture(2, &out, &[], None);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("kernel thread"), "{}", r.stderr);

    let mut z = Command::new("true").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(z.id() as i32) != Some('Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = capture(z.id() as i32, &out, &[], None);
    z.wait().unwrap();
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("zombie"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn refuses_a_socket_naming_the_fd_and_leaves_the_process_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.crak");
    let t = Target::start("socket", &[]);
    let fd = &t.ready[0];
    let r = capture(t.pid(), &out, &[], None);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains(&format!("fd {fd} is a socket")),
        "{}",
        r.stderr
    );
    assert_unharmed(t.pid());
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_pipe_to_a_process_outside_the_tree_is_named_and_refused_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.crak");
    // `sleep | cat`: the target's stdout is read by a process outside its tree.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cat");
    let to_cat = cat.stdin.take().unwrap();
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::from(to_cat))
        .spawn()
        .expect("sleep");
    let pid = sleeper.id() as i32;
    std::thread::sleep(Duration::from_millis(100));
    let r = capture(pid, &out, &["--refuse-external-pipes"], None);
    let unharmed = std::panic::catch_unwind(|| assert_unharmed(pid));
    let accepted = capture(pid, &out, &["--leave-running"], None);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = cat.kill();
    let _ = cat.wait();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("fd 1 is a pipe")
            && r.stderr
                .contains(&format!("held by process {} (cat)", cat.id())),
        "the refusal names the fd and the outside holder: {}",
        r.stderr
    );
    assert!(unharmed.is_ok(), "the refused target runs on untraced");
    assert!(!out.exists() || accepted.code == Some(0));
    // By default: captured, with a warning naming the pipe.
    assert_eq!(accepted.code, Some(0), "{}", accepted.stderr);
    assert!(
        accepted.stderr.contains("warning")
            && accepted.stderr.contains("fd 1 is a pipe")
            && accepted.stderr.contains("closed"),
        "{}",
        accepted.stderr
    );
}

/// A python3 with three threads besides its main one, each printing a counter line per tick
/// on its own pipe-free log; returns the child once it said READY.
fn threaded_python() -> Child {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import threading,time\ndef tick():\n    while True: time.sleep(0.001)\nfor _ in range(3): threading.Thread(target=tick,daemon=True).start()\nprint('READY',flush=True)\ntime.sleep(600)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    child
}

fn tids_of(pid: i32) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Every thread of `pid` runs untraced.
fn assert_threads_unharmed(pid: i32) {
    for tid in tids_of(pid) {
        let st =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        assert!(
            st.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["TracerPid:", "0"]),
            "thread {tid} of {pid} is still traced:\n{st}"
        );
    }
}

#[test]
fn multi_threaded_process_is_captured_with_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.crak");
    let mut child = threaded_python();
    let pid = child.id() as i32;
    let tids = tids_of(pid);
    let r = capture(pid, &out, &["--leave-running"], None);
    let after = tids_of(pid);
    assert_threads_unharmed(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(tids.len(), 4, "python3 runs 4 threads");
    assert_eq!(after, tids, "the same threads run after the capture");
    let bytes = std::fs::read(&out).unwrap();
    let img = crak_format::parse(&bytes).expect("image parses");
    let p = &img.image.processes[0];
    let mut listed = p.process.tids.clone();
    assert_eq!(
        listed.first(),
        Some(&(pid as u32)),
        "the leader comes first"
    );
    listed.sort_unstable();
    assert_eq!(listed, tids);
    for tid in &tids {
        let t = p
            .threads
            .iter()
            .find(|t| t.tid == *tid)
            .expect("THREAD per tid");
        assert_ne!(t.gpr.rip, 0, "thread {tid} has registers");
        assert_ne!(t.gpr.fs_base, 0, "thread {tid} has its own TLS");
        assert!(p.xsaves.iter().any(|x| x.tid == *tid), "XSAVE of {tid}");
    }
    let mut fs: Vec<u64> = p.threads.iter().map(|t| t.gpr.fs_base).collect();
    fs.sort_unstable();
    fs.dedup();
    assert_eq!(fs.len(), 4, "each thread has its own fs_base");
}

#[test]
fn failed_capture_of_a_multi_threaded_process_resumes_every_thread() {
    for point in ["after-freeze", "mid-pages"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("f.crak");
        let mut child = threaded_python();
        let pid = child.id() as i32;
        let tids = tids_of(pid);
        let r = capture(pid, &out, &[], Some(point));
        std::thread::sleep(Duration::from_millis(50));
        let states: Vec<String> = tids
            .iter()
            .map(|t| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{t}/stat"))
                    .unwrap_or_default()
                    .rsplit(") ")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(1)
                    .collect()
            })
            .collect();
        assert_threads_unharmed(pid);
        let after = tids_of(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.code, Some(2), "{point}: {}", r.stderr);
        assert_eq!(after, tids, "{point}: every thread still runs");
        assert!(
            states.iter().all(|s| s == "S" || s == "R"),
            "{point}: thread states {states:?}"
        );
        assert!(!out.exists(), "{point}: no image");
    }
}

#[test]
fn injected_faults_leave_the_process_running_and_no_file() {
    for point in ["after-freeze", "mid-pages", "before-rename", "before-kill"] {
        let dir = tempfile::tempdir().unwrap();
        let (t, stop) = sleeper(dir.path());
        let pid = t.pid();
        let out = dir.path().join("f.crak");
        let r = capture(pid, &out, &[], Some(point));
        assert_eq!(r.code, Some(2), "{point}: {}", r.stderr);
        assert!(r.stderr.contains("injected fault"), "{point}: {}", r.stderr);
        assert!(r.stderr.contains(point), "{point}: {}", r.stderr);
        assert_unharmed(pid);
        assert!(!out.exists(), "{point}: no image");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().starts_with("data.txt"))
            .collect();
        assert!(left.is_empty(), "{point}: files left: {left:?}");
        // It keeps working: no EINTR, memory, pipe and file intact.
        assert_eq!(sleeper_verdict(t, &stop).trim(), "PASS", "{point}");
    }
}

#[test]
fn a_failed_write_to_stdout_resumes_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (t, stop) = sleeper(dir.path());
    let pid = t.pid();
    let mut cap = Command::new(crak_tests::bin("crak-capture"))
        .arg(pid.to_string())
        .args(["-o", "-"])
        .env_remove("CRAK_FAULT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crak-capture");
    // Read the file header, then close the pipe: the rest of the image cannot be written.
    let mut out = cap.stdout.take().unwrap();
    let mut head = [0u8; 16];
    out.read_exact(&mut head).unwrap();
    assert_eq!(&head[..8], &crak_format::MAGIC);
    drop(out);
    let o = cap.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert_unharmed(pid);
    assert_eq!(sleeper_verdict(t, &stop).trim(), "PASS");
}

#[test]
fn sigsuspend_keeps_the_original_mask() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start("sigsuspend", &[]);
    let pid = t.pid();
    let img = dir.path().join("s.crak");
    let r = capture(pid, &img, &["--leave-running"], None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_unharmed(pid);
    // The image holds the program's own mask, not sigsuspend's temporary one.
    let bytes = std::fs::read(&img).unwrap();
    let parsed = crak_format::parse(&bytes).unwrap();
    let th = &parsed.image.processes[0].threads[0];
    assert_eq!(th.gpr.orig_rax, libc::SYS_rt_sigsuspend as u64);
    assert_eq!(th.gpr.rax as i64, -514, "-ERESTARTNOHAND");
    assert_eq!(th.blocked, 1 << (libc::SIGUSR1 - 1));
    std::thread::sleep(Duration::from_millis(50));
    send_signal(pid, libc::SIGUSR2);
    let (out, st) = t.finish();
    assert!(st.success(), "{out}");
    assert_eq!(out.trim(), "PASS");
}

/// kill(1), to keep the tests free of unsafe code.
fn send_signal(pid: i32, sig: i32) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(st.success());
}

#[test]
fn no_room_below_the_stack_pointer_uses_a_temporary_page() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start("tinystack", &[]);
    let pid = t.pid();
    let maps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let before = maps();
    let img = dir.path().join("t.crak");
    let r = capture(pid, &img, &["--leave-running"], None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_unharmed(pid);
    assert_eq!(maps(), before, "the temporary page is gone again");
    let bytes = std::fs::read(&img).unwrap();
    let parsed = crak_format::parse(&bytes).unwrap();
    let p = &parsed.image.processes[0];
    assert_eq!(
        p.vmas.len(),
        before.lines().count(),
        "no scratch page in the image"
    );
    let stk = parse_hex(&t.ready[0]);
    assert!(p.threads[0].gpr.rsp >= stk && p.threads[0].gpr.rsp < stk + 4096);
    let (out, st) = t.finish();
    assert!(st.success(), "{out}");
    assert_eq!(out.trim(), "PASS");
}

#[test]
fn pending_signals_are_recorded_and_stay_pending() {
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let t = Target::start("pending", &[&stop]);
    let pid = t.pid();
    let img = dir.path().join("p.crak");
    let r = capture(pid, &img, &["--leave-running"], None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_unharmed(pid);
    let bytes = std::fs::read(&img).unwrap();
    let parsed = crak_format::parse(&bytes).unwrap();
    let p = &parsed.image.processes[0];
    let signo =
        |si: &crak_format::Blob<'_>| i32::from_le_bytes(si.as_bytes()[..4].try_into().unwrap());
    let queue = |tid: u32| -> Vec<i32> {
        p.sigqueues
            .iter()
            .filter(|q| q.tid == tid)
            .flat_map(|q| q.siginfos.iter().map(signo))
            .collect()
    };
    assert_eq!(queue(pid as u32), vec![libc::SIGUSR1], "thread queue");
    let rtmin1 = libc::SIGRTMIN() + 1;
    assert_eq!(queue(0), vec![libc::SIGUSR2, rtmin1], "process queue");
    // The queued value of the real-time signal (si_value at offset 24 of siginfo_t).
    let rt = p
        .sigqueues
        .iter()
        .flat_map(|q| q.siginfos.iter())
        .find(|si| signo(si) == rtmin1)
        .unwrap();
    assert_eq!(
        i32::from_le_bytes(rt.as_bytes()[24..28].try_into().unwrap()),
        4242
    );
    let th = &p.threads[0];
    assert_ne!(th.blocked & (1 << (libc::SIGUSR1 - 1)), 0);
    assert_ne!(th.pending & (1 << (libc::SIGUSR1 - 1)), 0);
    assert_eq!(sleeper_verdict(t, &stop).trim(), "PASS");
}

#[test]
fn refuses_unsupported_fds_and_mappings_naming_them() {
    for (kind, expect) in [
        ("inotify-queued", "events not yet read"),
        (
            "unix-listen",
            "with a connection not yet accepted that has data queued",
        ),
        ("sysv", "is SysV shared memory of another IPC namespace"),
        ("memfd-private", "is a private mapping of a memfd"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.crak");
        let t = Target::start("refuse", &[Path::new(kind)]);
        let r = capture(t.pid(), &out, &[], None);
        assert_eq!(r.code, Some(2), "{kind}: {}", r.stderr);
        let what = &t.ready[0];
        let named = if kind == "sysv" || kind == "memfd-private" {
            format!("mapping 0x{what}-")
        } else {
            format!("fd {what} ")
        };
        assert!(r.stderr.contains(&named), "{kind}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{kind}: {}", r.stderr);
        assert_unharmed(t.pid());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{kind}");
    }
}

#[test]
fn an_output_that_cannot_be_created_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let (t, stop) = sleeper(dir.path());
    let out = dir.path().join("no/such/dir/x.crak");
    let r = capture(t.pid(), &out, &[], None);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("no/such/dir"), "{}", r.stderr);
    assert_unharmed(t.pid());
    assert_eq!(sleeper_verdict(t, &stop).trim(), "PASS");
}
