//! Integration tests: the `crak-dump` CLI on images written by crak-format's writer from
//! hand-made models. Golden files live under `tests/golden/`; regenerate them with
//! `CRAK_UPDATE_GOLDEN=1 cargo test -p crak-tests --test dump`.

use crak_format::bytes::{Blob, ByteString};
use crak_format::image::{Image, Process};
use crak_format::record::creds::Creds;
use crak_format::record::fd::{Fd, FdKind, FD_CLOEXEC};
use crak_format::record::header::{Header, SpecialMapping, ARCH_X86_64};
use crak_format::record::mm::Mm;
use crak_format::record::note::Note;
use crak_format::record::pages::{PageRun, ZeroRun};
use crak_format::record::pipe_data::PipeData;
use crak_format::record::process::ProcessRecord;
use crak_format::record::rlimits::{Rlimit, Rlimits};
use crak_format::record::sigactions::{SigAction, SigActions};
use crak_format::record::sigqueue::{SigQueue, SIGINFO_SIZE};
use crak_format::record::thread::{Gpr, Thread};
use crak_format::record::vma::{
    Vma, VmaKind, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use crak_format::record::xsave::Xsave;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A scratch directory and a way to run crak-dump in it.
struct Scratch {
    dir: tempfile::TempDir,
}

/// What a run produced.
struct Run {
    cmd: String,
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Everything about the run, for failure messages.
    fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.code,
            self.stdout(),
            self.stderr
        )
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "wrong exit code\n{}", self.describe());
        self
    }

    #[track_caller]
    fn expect_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn expect_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }
}

fn setup() -> Scratch {
    Scratch {
        dir: tempfile::tempdir().expect("scratch dir"),
    }
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `bytes` to a file in the scratch dir and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write scratch file");
        p
    }

    /// Writes `image` with crak-format's writer.
    fn image(&self, name: &str, image: &Image<'_>) -> PathBuf {
        self.file(name, &write(image))
    }

    fn command(&self, args: &[&OsStr]) -> Command {
        let bin = crak_tests::bin("crak-dump");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first",
            bin.display()
        );
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("NO_COLOR");
        c
    }

    /// Runs crak-dump with `args` and `stdin`.
    fn run_with(&self, args: &[&OsStr], stdin: &[u8], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn crak-dump");
        let mut input = child.stdin.take().expect("stdin");
        let stdin = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            // The tool may exit without reading all of it.
            let _ = input.write_all(&stdin);
        });
        let out = child.wait_with_output().expect("wait crak-dump");
        feeder.join().expect("stdin feeder");
        let cmd = std::iter::once(OsStr::new("crak-dump"))
            .chain(args.iter().copied())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Run {
            cmd,
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&OsStr]) -> Run {
        self.run_with(args, &[], &[])
    }
}

/// `&str` and `&Path` arguments as `&OsStr`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(AsRef::<OsStr>::as_ref(&$a)),*] };
}

fn write(image: &Image<'_>) -> Vec<u8> {
    crak_format::write::to_vec(image).expect("write image")
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites it when CRAK_UPDATE_GOLDEN=1.
#[track_caller]
fn golden(name: &str, actual: &str) {
    let path = crak_tests::workspace_root().join("tests/golden").join(name);
    if std::env::var_os("CRAK_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir golden");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with CRAK_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}\n--- expected ---\n{}\n--- actual ---\n{}\n\
             (CRAK_UPDATE_GOLDEN=1 regenerates it)",
            path.display(),
            first + 1,
            expected,
            actual
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A realistic image: a server (two threads) and a worker child sharing a pipe
// ---------------------------------------------------------------------------------------------

const PS: u64 = 4096;
const XSAVE_SIZE: u32 = 832;
const TEXT: u64 = 0x5555_5555_4000;
const HEAP: u64 = 0x5555_5576_0000;
const ANON: u64 = 0x7f3a_1c00_0000;
const LIBC: u64 = 0x7f3a_1c20_0000;
const STACK: u64 = 0x7ffd_8a1d_e000;
const VVAR: u64 = 0x7ffd_8a3f_0000;
const VDSO: u64 = 0x7ffd_8a3f_4000;
/// A value the server keeps on its heap, found by the mem tests.
const MARKER: &[u8] = b"\xde\xad\xbe\xef crak marker";
const MARKER_ADDR: u64 = HEAP + 0x1010;
/// Pages of patterned data in the anon mapping (enough output to fill a pipe).
const ANON_PAGES: u64 = 48;

fn vma(pid: u32, kind: VmaKind, start: u64, end: u64, prot: u32, path: &str) -> Vma {
    let file = kind == VmaKind::File;
    Vma {
        pid,
        kind,
        start,
        end,
        prot,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: if file { 0x10303 } else { 0 },
        ino: if file { 1_311_021 } else { 0 },
        size: if file { 2_125_328 } else { 0 },
        mtime_ns: if file { 1_690_000_000_000_000_000 } else { 0 },
        path: path.into(),
    }
}

fn thread(pid: u32, tid: u32, rip: u64, in_syscall: bool) -> (Thread, Xsave<'static>) {
    let mut gpr = Gpr {
        rip,
        rsp: STACK + 0x1e58 - u64::from(tid - pid) * 0x100,
        rax: if in_syscall { (-512i64) as u64 } else { 0 },
        orig_rax: if in_syscall { 7 } else { u64::MAX },
        fs_base: 0x7f3a_1c1f_f740 + u64::from(tid - pid) * 0x1000,
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x246,
        ..Gpr::default()
    };
    gpr.rdi = 3;
    let mut area = vec![0u8; XSAVE_SIZE as usize];
    area[0] = 0x7f; // FCW
    area[1] = 0x03;
    area[24] = 0x80; // MXCSR 0x1f80
    area[25] = 0x1f;
    (
        Thread {
            pid,
            tid,
            gpr,
            blocked: 1 << (13 - 1), // SIGPIPE
            ..Thread::default()
        },
        Xsave {
            pid,
            tid,
            xstate_bv: 0x3,
            area: Blob::from(area),
        },
    )
}

fn server() -> Process<'static> {
    let pid = 4242;
    let mut p = Process::new(ProcessRecord {
        pid,
        ppid: 1,
        pgid: pid,
        sid: pid,
        personality: 0,
        umask: 0o022,
        flags: 0,
        comm: "srv".into(),
        exe: "/usr/local/bin/srv".into(),
        cwd: "/var/lib/srv".into(),
        root: "/".into(),
        cmdline: ByteString(b"/usr/local/bin/srv\0--port=8080\0--name\0my server\0".to_vec()),
        environ: ByteString(b"HOME=/var/lib/srv\0LANG=C.UTF-8\0PATH=/usr/bin:/bin\0".to_vec()),
        tids: vec![pid, pid + 1],
    });
    p.creds = Some(Creds {
        pid,
        uid: 1000,
        euid: 1000,
        suid: 1000,
        fsuid: 1000,
        gid: 1000,
        egid: 1000,
        sgid: 1000,
        fsgid: 1000,
        cap_bounding: 0x1ff_ffff_ffff,
        groups: vec![1000, 4, 27],
        ..Creds::default()
    });
    p.mm = Some(Mm {
        pid,
        start_code: TEXT,
        end_code: TEXT + 0x2000,
        start_data: TEXT + 0x3000,
        end_data: TEXT + 0x4000,
        start_brk: HEAP,
        brk: HEAP + 0x21000,
        start_stack: STACK + 0x1f00,
        arg_start: STACK + 0x1f10,
        arg_end: STACK + 0x1f40,
        env_start: STACK + 0x1f40,
        env_end: STACK + 0x1fe0,
        auxv: vec![(6, PS), (25, STACK + 0x1f50), (0, 0)],
    });
    p.rlimits = Some(Rlimits {
        pid,
        limits: vec![
            Rlimit {
                resource: 3,
                cur: 8 << 20,
                max: u64::MAX,
            },
            Rlimit {
                resource: 4,
                cur: 0,
                max: u64::MAX,
            },
            Rlimit {
                resource: 7,
                cur: 1024,
                max: 524_288,
            },
        ],
    });
    p.sigactions = Some(SigActions {
        pid,
        actions: vec![
            SigAction {
                signo: 2,
                handler: TEXT + 0x1230,
                flags: 0x0400_0000 | 0x1000_0000 | 0x4,
                restorer: LIBC + 0x42520,
                mask: 1 << (15 - 1),
            },
            SigAction {
                signo: 10,
                handler: TEXT + 0x1300,
                flags: 0x0400_0000,
                restorer: LIBC + 0x42520,
                mask: 0,
            },
            SigAction {
                signo: 13,
                handler: 1,
                flags: 0,
                restorer: 0,
                mask: 0,
            },
        ],
    });
    for (tid, rip, sys) in [(pid, TEXT + 0x1520, true), (pid + 1, LIBC + 0x91234, false)] {
        let (t, x) = thread(pid, tid, rip, sys);
        p.threads.push(t);
        p.xsaves.push(x);
    }
    p.vmas = vec![
        vma(
            pid,
            VmaKind::File,
            TEXT,
            TEXT + 0x2000,
            PROT_READ | PROT_EXEC,
            "/usr/local/bin/srv",
        ),
        vma(
            pid,
            VmaKind::File,
            TEXT + 0x3000,
            TEXT + 0x4000,
            PROT_READ | PROT_WRITE,
            "/usr/local/bin/srv",
        ),
        vma(
            pid,
            VmaKind::Heap,
            HEAP,
            HEAP + 0x21000,
            PROT_READ | PROT_WRITE,
            "[heap]",
        ),
        vma(
            pid,
            VmaKind::Anon,
            ANON,
            ANON + ANON_PAGES * PS,
            PROT_READ | PROT_WRITE,
            "",
        ),
        vma(
            pid,
            VmaKind::File,
            LIBC,
            LIBC + 0x1c0000,
            PROT_READ | PROT_EXEC,
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ),
        vma(
            pid,
            VmaKind::Stack,
            STACK,
            STACK + 0x21000,
            PROT_READ | PROT_WRITE,
            "[stack]",
        ),
        vma(pid, VmaKind::Vvar, VVAR, VVAR + 0x4000, PROT_READ, "[vvar]"),
        vma(
            pid,
            VmaKind::Vdso,
            VDSO,
            VDSO + 0x2000,
            PROT_READ | PROT_EXEC,
            "[vdso]",
        ),
    ];
    p.vmas[1].pgoff = 0x2000;
    p.vmas[4].pgoff = 0x28000;
    p.vmas[5].flags |= MAP_GROWSDOWN;
    // Data page of the binary, two heap pages (the marker in the second), patterned anon
    // memory, the top of the stack.
    let mut data = vec![0x11u8; PS as usize];
    data[..8].copy_from_slice(b"srv.data");
    let mut heap = vec![0u8; 2 * PS as usize];
    heap[..16].copy_from_slice(b"malloc arena....");
    let m = (MARKER_ADDR - HEAP) as usize;
    heap[m..m + MARKER.len()].copy_from_slice(MARKER);
    let anon: Vec<u8> = (0..ANON_PAGES * PS).map(|i| (i % 251) as u8 | 1).collect();
    let mut stack = vec![0u8; PS as usize];
    stack[0xf10..0xf40].copy_from_slice(b"/usr/local/bin/srv\0--port=8080\0--name\0my server\0");
    p.pages = vec![
        PageRun {
            pid,
            addr: TEXT + 0x3000,
            nr_pages: 1,
            data: Blob::from(data),
        },
        PageRun {
            pid,
            addr: HEAP,
            nr_pages: 2,
            data: Blob::from(heap),
        },
        PageRun {
            pid,
            addr: ANON,
            nr_pages: ANON_PAGES,
            data: Blob::from(anon),
        },
        PageRun {
            pid,
            addr: STACK + 0x20000,
            nr_pages: 1,
            data: Blob::from(stack),
        },
    ];
    p.zero_runs = vec![ZeroRun {
        pid,
        addr: HEAP + 2 * PS,
        nr_pages: 30,
    }];
    let mut fds = vec![
        fd(pid, 0, FdKind::Chr, "/dev/null", 0o2, 0),
        fd(pid, 1, FdKind::Tty, "/dev/pts/3", 0o2002, 0),
        fd(pid, 2, FdKind::Tty, "/dev/pts/3", 0o2002, 0),
        fd(pid, 3, FdKind::Reg, "/var/log/srv.log", 0o102001, 0),
        fd(pid, 4, FdKind::Pipe, "pipe:[88123]", 0o1, 88123),
        fd(pid, 5, FdKind::Reg, "/tmp/srv-cache (deleted)", 0o2, 0),
    ];
    fds[0].rdev = 0x103;
    fds[1].rdev = 0x8803;
    fds[2].rdev = 0x8803;
    fds[3].pos = 18_273;
    fds[3].size = 18_273;
    fds[3].fd_flags = FD_CLOEXEC;
    fds[4].fd_flags = FD_CLOEXEC;
    fds[5].deleted = true;
    fds[5].contents = Blob::from(b"cached state\n".to_vec());
    fds[5].size = 13;
    p.fds = fds;
    // SIGUSR1 queued for the process, SIGTERM for the second thread.
    let siginfo = |signo: u8| {
        let mut info = vec![0u8; SIGINFO_SIZE];
        info[0] = signo;
        Blob::from(info)
    };
    p.sigqueues = vec![
        SigQueue {
            pid,
            tid: 0,
            siginfos: vec![siginfo(10)],
        },
        SigQueue {
            pid,
            tid: pid + 1,
            siginfos: vec![siginfo(15)],
        },
    ];
    p
}

fn fd(pid: u32, n: u32, kind: FdKind, path: &str, flags: u32, ino: u64) -> Fd<'static> {
    Fd {
        pid,
        fd: n,
        fd_flags: 0,
        kind,
        open_flags: flags,
        pos: 0,
        dev: if kind == FdKind::Pipe { 0xd } else { 0x10303 },
        ino: if ino != 0 { ino } else { 1000 + u64::from(n) },
        rdev: 0,
        size: 0,
        mtime_ns: 1_700_000_000_000_000_000,
        mode: match kind {
            FdKind::Reg => 0o100644,
            FdKind::Pipe => 0o10600,
            FdKind::Fifo => 0o10644,
            FdKind::Chr | FdKind::Tty => 0o20620,
            FdKind::Eventfd
            | FdKind::Signalfd
            | FdKind::Timerfd
            | FdKind::Epoll
            | FdKind::Inotify => 0o600,
            FdKind::Unix | FdKind::UnixSocket | FdKind::Tcp | FdKind::Udp => 0o140777,
            FdKind::Memfd => 0o100777,
        },
        deleted: false,
        path: path.into(),
        contents: Blob::default(),
        description: 0,
    }
}

fn worker() -> Process<'static> {
    let pid = 4250;
    let mut p = Process::new(ProcessRecord {
        pid,
        ppid: 4242,
        pgid: 4242,
        sid: 4242,
        umask: 0o022,
        comm: "srv-worker".into(),
        exe: "/usr/local/bin/srv".into(),
        cwd: "/var/lib/srv".into(),
        root: "/".into(),
        cmdline: ByteString(b"srv-worker\0".to_vec()),
        environ: ByteString(b"HOME=/var/lib/srv\0".to_vec()),
        tids: vec![pid],
        ..ProcessRecord::default()
    });
    p.creds = server().creds.map(|c| Creds { pid, ..c });
    p.mm = server().mm.map(|m| Mm {
        pid,
        brk: HEAP,
        ..m
    });
    p.rlimits = server().rlimits.map(|r| Rlimits { pid, ..r });
    let (t, x) = thread(pid, pid, LIBC + 0x11a2b0, true);
    p.threads.push(t);
    p.xsaves.push(x);
    p.vmas = vec![
        vma(
            pid,
            VmaKind::File,
            TEXT,
            TEXT + 0x2000,
            PROT_READ | PROT_EXEC,
            "/usr/local/bin/srv",
        ),
        vma(
            pid,
            VmaKind::Anon,
            ANON,
            ANON + 0x1000,
            PROT_READ | PROT_WRITE,
            "/dev/zero (deleted)",
        ),
        vma(
            pid,
            VmaKind::Stack,
            STACK,
            STACK + 0x21000,
            PROT_READ | PROT_WRITE,
            "[stack]",
        ),
    ];
    p.vmas[1].flags = MAP_SHARED;
    p.fds = vec![fd(pid, 0, FdKind::Pipe, "pipe:[88123]", 0o0, 88123)];
    p
}

fn sample() -> Image<'static> {
    Image {
        version: crak_format::CURRENT_VERSION,
        flags: 0,
        header: Header {
            arch: ARCH_X86_64,
            page_size: PS as u32,
            capture_time_ns: 1_764_442_800_123_456_789,
            xsave_features: 0x7,
            xsave_size: XSAVE_SIZE,
            kernel_release: "6.18.0-crak".into(),
            hostname: "build-07".into(),
            tool_version: "crak 0.1.0".into(),
            special_mappings: vec![
                SpecialMapping {
                    kind: VmaKind::Vvar,
                    start: VVAR,
                    end: VVAR + 0x4000,
                },
                SpecialMapping {
                    kind: VmaKind::Vdso,
                    start: VDSO,
                    end: VDSO + 0x2000,
                },
            ],
        },
        processes: vec![server(), worker()],
        pipes: vec![PipeData {
            pipe_id: 88123,
            capacity: 65536,
            data: Blob::from(b"job 17\njob 18\n".to_vec()),
        }],
        notes: vec![Note {
            key: "capture.command".into(),
            value: "crak-capture --tree 4242".into(),
        }],
        shm_segments: Vec::new(),
        sem_sets: Vec::new(),
        msg_queues: Vec::new(),
        scm: Vec::new(),
        auth: None,
        unknown: Vec::new(),
        extras: Vec::new(),
    }
}

/// The sample with two FD records for fd 3 of the server: parses, but is invalid.
fn duplicate_fd() -> Image<'static> {
    let mut img = sample();
    let mut again = img.processes[0].fds[3].clone();
    again.path = "/var/log/other.log".into();
    img.processes[0].fds.push(again);
    img
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

#[test]
fn summary_golden() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let r = s.run(args!["--color=never", img]);
    r.expect_code(0);
    assert!(r.stderr.is_empty(), "{}", r.describe());
    golden("summary.txt", &r.stdout());
}

#[test]
fn summary_with_env_golden() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let r = s.run(args!["--color=never", "--env", img]);
    r.expect_code(0);
    golden("summary-env.txt", &r.stdout());
}

#[test]
fn summary_names_things() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let r = s.run(args![img, "--color=never"]);
    r.expect_code(0);
    for needle in [
        "x86_64",
        "6.18.0-crak",
        "build-07",
        "2025-11-29T19:00:00.123456789Z",
        "/usr/local/bin/srv --port=8080 --name 'my server'",
        "4242 srv",
        "└── 4250 srv-worker",
        "rw-p",
        "r-xp",
        "132 KiB",
        "SIGUSR1",
        "SIG_IGN",
        "SA_SIGINFO|SA_RESTORER|SA_RESTART",
        "RLIMIT_NOFILE",
        "unlimited",
        "O_RDWR|O_APPEND",
        "O_WRONLY|O_APPEND|O_LARGEFILE",
        "-ERESTARTSYS",
        "deleted, 13 bytes kept",
        "SIGUSR1, SIGTERM (tid 4243)",
    ] {
        r.expect_stdout_contains(needle);
    }
    // The environment only with --env.
    assert!(!r.stdout().contains("LANG=C.UTF-8"), "{}", r.describe());
    s.run(args![img, "--env", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains("LANG=C.UTF-8");
}

#[test]
fn summary_from_stdin_matches_file() {
    let s = setup();
    let bytes = write(&sample());
    let img = s.file("srv.crak", &bytes);
    let from_file = s.run(args!["--color=never", img]);
    let from_stdin = s.run_with(args!["--color=never", "-"], &bytes, &[]);
    from_stdin.expect_code(0);
    assert_eq!(
        from_file.stdout(),
        from_stdin.stdout(),
        "{}",
        from_stdin.describe()
    );
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    // Not a terminal: auto means no colour.
    let auto = s.run(args![img]);
    auto.expect_code(0);
    assert!(!auto.stdout().contains('\x1b'), "{}", auto.describe());
    let always = s.run(args![img, "--color=always"]);
    always.expect_code(0);
    assert!(always.stdout().contains("\x1b["), "{}", always.describe());
    let never = s.run_with(args![img, "--color=never"], &[], &[("NO_COLOR", "1")]);
    assert!(!never.stdout().contains('\x1b'));
}

#[test]
fn no_color_is_honoured_on_a_terminal() {
    // In-process, telling the tool its output is a terminal and what NO_COLOR holds.
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let run = |color: &str, no_color: Option<&str>| {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let args = vec![
            "crak-dump".into(),
            format!("--color={color}").into(),
            img.clone().into_os_string(),
        ];
        let term = crak_dump::Terminal {
            is_terminal: true,
            no_color: no_color.map(Into::into),
        };
        let code = crak_dump::run_in(args, &mut out, &mut err, &term);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        String::from_utf8_lossy(&out).contains("\x1b[")
    };
    assert!(run("auto", None), "a terminal gets colour");
    assert!(!run("auto", Some("1")), "NO_COLOR turns it off");
    assert!(run("auto", Some("")), "an empty NO_COLOR does not");
    assert!(
        run("always", Some("1")),
        "--color=always wins over NO_COLOR"
    );
    assert!(!run("never", None));
}

#[test]
fn summary_of_garbage_is_an_error() {
    let s = setup();
    let junk = s.file("junk", b"this is not an image at all");
    s.run(args![junk])
        .expect_code(2)
        .expect_stderr_contains("bad-magic");
    s.run(args![s.path("missing.crak")])
        .expect_code(2)
        .expect_stderr_contains("cannot read");
}

#[test]
fn usage_errors_exit_2() {
    let s = setup();
    s.run(args![]).expect_code(2);
    s.run(args!["--no-such-flag", "x"]).expect_code(2);
    s.run(args!["--help"])
        .expect_code(0)
        .expect_stdout_contains("validate");
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn json_is_the_model() {
    let s = setup();
    let model = sample();
    let img = s.image("srv.crak", &model);
    let r = s.run(args![img, "--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("stdout is JSON");
    assert_eq!(
        v,
        crak_format::json::to_json(&model, false),
        "{}",
        r.describe()
    );
    assert_eq!(v["processes"][0]["process"]["pid"], 4242);
    // Without --pages, page data is only its length.
    assert_eq!(v["processes"][0]["pages"][1]["data"], 2 * PS);
}

#[test]
fn json_with_pages_round_trips() {
    let s = setup();
    let model = sample();
    let img = s.image("srv.crak", &model);
    let r = s.run(args![img, "--json", "--pages"]);
    r.expect_code(0);
    let text = String::from_utf8(r.stdout.clone()).expect("UTF-8");
    let back = crak_format::json::from_json(&text).expect("JSON converts back to a model");
    assert_eq!(back, model);
    // And the model written again is the same image.
    assert_eq!(write(&back), write(&model));
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_valid_image() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    s.run(args!["validate", img])
        .expect_code(0)
        .expect_stdout_contains("srv.crak: valid");
}

#[test]
fn validate_semantically_invalid_image() {
    let s = setup();
    let img = s.image("dup.crak", &duplicate_fd());
    let r = s.run(args!["validate", img, "--color=never"]);
    r.expect_code(1)
        .expect_stdout_contains("error[duplicate-fd]")
        .expect_stdout_contains("FD#6 pid 4242 field fd at offset 0x")
        .expect_stdout_contains("invalid (1 error");
}

#[test]
fn validate_warnings_do_not_fail() {
    let s = setup();
    let mut model = sample();
    model.processes[0].fds[3].path = "var/log/srv.log".into();
    let img = s.image("warn.crak", &model);
    s.run(args!["validate", img])
        .expect_code(0)
        .expect_stdout_contains("warning[path-not-absolute]")
        .expect_stdout_contains("valid (1 warning)");
}

#[test]
fn validate_garbage_and_empty_are_unreadable() {
    let s = setup();
    let junk = s.file("junk", &[0x42; 100]);
    s.run(args!["validate", junk])
        .expect_code(2)
        .expect_stdout_contains("unreadable");
    let empty = s.file("empty", b"");
    s.run(args!["validate", empty])
        .expect_code(2)
        .expect_stdout_contains("unreadable");
    s.run(args!["validate", s.path("missing")]).expect_code(2);
}

#[test]
fn validate_corrupt_image_is_invalid() {
    let s = setup();
    let mut bytes = write(&sample());
    // Truncated: framing fails, but it is a crak image.
    let cut = s.file("cut.crak", &bytes[..bytes.len() / 2]);
    s.run(args!["validate", cut])
        .expect_code(1)
        .expect_stdout_contains("cut.crak: invalid: ");
    // A flipped byte in the middle: a CRC fails.
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0xff;
    let flipped = s.file("flipped.crak", &bytes);
    s.run(args!["validate", flipped])
        .expect_code(1)
        .expect_stdout_contains("bad-crc");
}

#[test]
fn validate_several_images_exits_with_the_worst() {
    let s = setup();
    let good = s.image("good.crak", &sample());
    let bad = s.image("bad.crak", &duplicate_fd());
    let junk = s.file("junk", b"garbage!garbage!");
    s.run(args!["validate", good, good]).expect_code(0);
    s.run(args!["validate", good, bad]).expect_code(1);
    s.run(args!["validate", bad, junk, good]).expect_code(2);
}

#[test]
fn validate_stdin() {
    let s = setup();
    let good = write(&sample());
    s.run_with(args!["validate", "-"], &good, &[])
        .expect_code(0)
        .expect_stdout_contains("<stdin>: valid");
    s.run_with(args!["validate", "-"], &write(&duplicate_fd()), &[])
        .expect_code(1)
        .expect_stdout_contains("error[duplicate-fd]");
    s.run_with(args!["validate", "-"], b"not an image", &[])
        .expect_code(2);
    s.run_with(args!["validate", "-"], b"", &[])
        .expect_code(2)
        .expect_stdout_contains("empty");
    s.run_with(args!["validate", "-"], &good[..good.len() - 7], &[])
        .expect_code(1);
}

#[test]
fn validate_stdin_and_file_agree() {
    let s = setup();
    let bytes = write(&duplicate_fd());
    let img = s.file("dup.crak", &bytes);
    let json = |r: Run| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
        v["images"][0]["image"] = serde_json::Value::Null;
        v
    };
    let from_file = json(s.run(args!["validate", "--json", img]));
    let from_stdin = json(s.run_with(args!["validate", "--json", "-"], &bytes, &[]));
    assert_eq!(from_file, from_stdin);
}

#[test]
fn validate_json_report() {
    let s = setup();
    let img = s.image("dup.crak", &duplicate_fd());
    let r = s.run(args!["validate", "--json", img]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["valid"], false);
    let image = &v["images"][0];
    assert_eq!(image["status"], "invalid");
    let f = &image["report"]["findings"][0];
    assert_eq!(f["code"], "duplicate-fd");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["record"], "FD");
    assert_eq!(f["pid"], 4242);
    assert_eq!(f["field"], "fd");
    // The offset points at the fd field of the 7th FD record of pid 4242.
    let bytes = std::fs::read(&img).expect("read");
    let off = f["offset"].as_u64().expect("offset") as usize;
    assert_eq!(bytes[off..off + 4], 3u32.to_le_bytes(), "{}", r.describe());

    let junk = s.file("junk", b"\x89CRAK\r\n\x1a\x07\x00");
    let r = s.run(args!["validate", "--json", junk]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["images"][0]["status"], "invalid");
    assert!(v["images"][0]["error"]["kind"].is_string());
}

// ---------------------------------------------------------------------------------------------
// mem
// ---------------------------------------------------------------------------------------------

#[test]
fn mem_hexdumps_a_known_value() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let range = format!("0x{MARKER_ADDR:x}+16");
    let r = s.run(args!["mem", img, range, "--color=never"]);
    r.expect_code(0)
        .expect_stdout_contains(&format!("{MARKER_ADDR:x}"))
        .expect_stdout_contains("de ad be ef 20 63 72 61")
        .expect_stdout_contains("k marker");
}

#[test]
fn mem_raw_writes_the_bytes() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let range = format!("0x{MARKER_ADDR:x}+{}", MARKER.len());
    let r = s.run(args!["mem", img, range, "--raw"]);
    r.expect_code(0);
    assert_eq!(r.stdout, MARKER, "{}", r.describe());
    // Zero pages and unrecorded anonymous memory read as zeros.
    let range = format!("0x{:x}+8192", HEAP + 0x2000);
    let r = s.run(args!["mem", img, range, "--raw"]);
    r.expect_code(0);
    assert_eq!(r.stdout, vec![0u8; 8192]);
    // Unmapped memory has no bytes.
    let r = s.run(args!["mem", img, "0x1000+16", "--raw"]);
    r.expect_code(2).expect_stderr_contains("not mapped");
}

#[test]
fn mem_shows_zero_runs_and_gaps() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    // From the second heap page over the zero run, past the heap's end into unmapped space.
    let range = format!("0x{:x}+0x{:x}", HEAP + PS, 0x21000);
    let r = s.run(args!["mem", img, range, "--color=never"]);
    r.expect_code(0)
        .expect_stdout_contains(&format!(
            "{:x}-{:x} (120 KiB): zero pages (ZERO_PAGES)",
            HEAP + 2 * PS,
            HEAP + 32 * PS
        ))
        .expect_stdout_contains(&format!(
            "{:x}-{:x} (4 KiB): not recorded: reads as zero",
            HEAP + 32 * PS,
            HEAP + 33 * PS
        ))
        .expect_stdout_contains(&format!(
            "{:x}-{:x} (4 KiB): unmapped",
            HEAP + 33 * PS,
            HEAP + 34 * PS
        ));
    // A file page that is not stored is read from the file.
    let r = s.run(args!["mem", img, "--vma", "0"]);
    r.expect_code(0)
        .expect_stdout_contains("not recorded: read from /usr/local/bin/srv");
}

#[test]
fn mem_by_vma_and_pid() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let r = s.run(args!["mem", img, "--vma", "1", "--raw"]);
    r.expect_code(0);
    assert_eq!(r.stdout.len(), PS as usize);
    assert!(r.stdout.starts_with(b"srv.data"));
    // The worker's shared page is not recorded: anonymous, reads as zero.
    let r = s.run(args!["mem", img, "--pid", "4250", "--vma", "1", "--raw"]);
    r.expect_code(0);
    assert_eq!(r.stdout, vec![0u8; PS as usize]);
    s.run(args!["mem", img, "--pid", "1", "0x0"])
        .expect_code(2)
        .expect_stderr_contains("no process 1");
    s.run(args!["mem", img, "--vma", "99"]).expect_code(2);
}

// ---------------------------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_pipe_exits_quietly() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    // The anon VMA's hexdump is far larger than a pipe buffer.
    let mut child = s
        .command(args!["mem", img, "--vma", "3", "--color=never"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

#[test]
fn images_on_disk_are_found_relative_to_the_scratch_dir() {
    // The harness runs in the scratch dir, so a relative path works too.
    let s = setup();
    s.image("rel.crak", &sample());
    s.run(args!["validate", Path::new("rel.crak")])
        .expect_code(0)
        .expect_stdout_contains("rel.crak: valid");
}

// ---------------------------------------------------------------------------------------------
// grep
// ---------------------------------------------------------------------------------------------

#[test]
fn grep_text_hex_and_regex() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    s.run(args!["grep", img, "crak marker", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!(
            "4242 {:x} #2 rw-p [heap]: crak marker",
            MARKER_ADDR + 5
        ));
    s.run(args!["grep", img, "-x", "de ad be ef", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!("4242 {MARKER_ADDR:x} #2"));
    s.run(args![
        "grep",
        img,
        "-e",
        r"srv\.(data|log)",
        "--color=never"
    ])
    .expect_code(0)
    .expect_stdout_contains(&format!(
        "{:x} #1 rw-p /usr/local/bin/srv: srv.data",
        TEXT + 0x3000
    ));
    s.run(args!["grep", img, "no such bytes anywhere"])
        .expect_code(1);
    s.run(args!["grep", img, "-e", "("])
        .expect_code(2)
        .expect_stderr_contains("bad regex");
}

#[test]
fn grep_filters() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    // The marker is in a rw-p heap: excluded by --perms r-x, by another VMA, by a range.
    s.run(args!["grep", img, "crak marker", "--perms", "r-x"])
        .expect_code(1);
    s.run(args!["grep", img, "crak marker", "--perms", "rw"])
        .expect_code(0);
    s.run(args![
        "grep",
        img,
        "crak marker",
        "--pid",
        "4242",
        "--vma",
        "3"
    ])
    .expect_code(1);
    s.run(args![
        "grep",
        img,
        "crak marker",
        "--pid",
        "4242",
        "--vma",
        "2"
    ])
    .expect_code(0);
    s.run(args!["grep", img, "crak marker", "--pid", "4250"])
        .expect_code(1);
    let inside = format!("0x{:x}-0x{:x}", HEAP, HEAP + 0x2000);
    let outside = format!("0x{:x}-0x{:x}", HEAP, MARKER_ADDR + 8);
    s.run(args!["grep", img, "crak marker", "--range", inside])
        .expect_code(0);
    s.run(args!["grep", img, "crak marker", "--range", outside])
        .expect_code(1);
}

#[test]
fn grep_json_and_max_count() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    // Byte 0x03 occurs in every 251-byte cycle of the anon pattern.
    let r = s.run(args!["grep", img, "-x", "03", "--vma", "3", "--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    let n = v["count"].as_u64().expect("count");
    assert!(n > 100, "{}", r.describe());
    assert_eq!(v["matches"][0]["addr"], ANON + 2);
    assert_eq!(v["matches"][0]["hex"], "03");
    let r = s.run(args!["grep", img, "-x", "03", "--json", "-m", "5"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["count"], 5);
}

#[test]
fn control_characters_from_the_image_are_escaped() {
    // Text in an image is untrusted: it must not reach the terminal as escape sequences.
    let s = setup();
    let mut model = sample();
    model.processes[0].process.comm = "evil\x1b[2J".into();
    model.processes[0].fds[3].path = "/tmp/\x1b]0;title\x07".into();
    model.processes[0].process.environ = ByteString(b"X=\x1b[31m\0".to_vec());
    let img = s.image("evil.crak", &model);
    let r = s.run(args![img, "--color=never", "--env"]);
    r.expect_code(0)
        .expect_stdout_contains("evil\\u{1b}[2J")
        .expect_stdout_contains("/tmp/\\u{1b}]0;title\\u{7}")
        .expect_stdout_contains("X=\\u{1b}[31m");
    assert!(!r.stdout.contains(&0x1b), "{}", r.describe());
}

#[test]
fn validate_exit_codes_on_the_spec_vectors() {
    // Every invalid vector is rejected: 2 when it is not a crak image at all, else 1; every
    // valid vector parses (its semantics may still be incomplete, so only "not 2" is asserted).
    let s = setup();
    let dir = crak_tests::workspace_root().join("spec/vectors");
    let mut seen = 0;
    for (sub, check) in [("invalid", true), ("valid", false)] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        for f in files {
            seen += 1;
            let r = s.run(args!["validate", f]);
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if check {
                let want = if name.contains("bad-magic") { 2 } else { 1 };
                r.expect_code(want);
            } else {
                assert_ne!(r.code, 2, "{}", r.describe());
                assert!(
                    !r.stdout().contains("invalid: "),
                    "parse error\n{}",
                    r.describe()
                );
            }
            // The streaming reader agrees with the slice parser on the verdict.
            let bytes = std::fs::read(&f).expect("read vector");
            let streamed = s.run_with(args!["validate", "-"], &bytes, &[]);
            if name.contains("too-large") {
                // A stream cannot know what remains: it reports too-large instead.
                streamed.expect_code(1);
            } else {
                streamed.expect_code(r.code);
            }
        }
    }
    assert!(
        seen > 0 || !dir.exists(),
        "no vectors under {}",
        dir.display()
    );
}

#[test]
fn grep_finds_a_match_across_adjacent_runs() {
    let s = setup();
    let mut model = sample();
    // Split the anon run in two at page 10 and put a marker across the boundary.
    let p = &mut model.processes[0];
    let run = p.pages.remove(2);
    let mut data = run.data.as_bytes().to_vec();
    let cut = 10 * PS as usize;
    data[cut - 3..cut + 3].copy_from_slice(b"SPLIT!");
    let (a, b) = data.split_at(cut);
    p.pages.insert(
        2,
        PageRun {
            pid: run.pid,
            addr: ANON,
            nr_pages: 10,
            data: Blob::from(a.to_vec()),
        },
    );
    p.pages.insert(
        3,
        PageRun {
            pid: run.pid,
            addr: ANON + 10 * PS,
            nr_pages: ANON_PAGES - 10,
            data: Blob::from(b.to_vec()),
        },
    );
    let img = s.image("split.crak", &model);
    s.run(args!["validate", img]).expect_code(0);
    s.run(args!["grep", img, "SPLIT!", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!(
            "4242 {:x} #3 rw-p [anon]: SPLIT!",
            ANON + 10 * PS - 3
        ));
}

// ---------------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------------

/// `crak-dump IMAGE --json --pages` then `crak-dump encode`; returns the bytes written.
fn json_then_encode(s: &Scratch, img: &Path, name: &str) -> Vec<u8> {
    let r = s.run(args![img, "--json", "--pages"]);
    r.expect_code(0);
    let json = s.file(&format!("{name}.json"), &r.stdout);
    let out = s.path(&format!("{name}.out"));
    s.run(args!["encode", json, "-o", out]).expect_code(0);
    std::fs::read(&out).expect("encoded image")
}

#[test]
fn encode_of_the_json_is_the_same_image() {
    let s = setup();
    for (name, model) in [("sample", sample()), ("dupfd", duplicate_fd())] {
        let bytes = write(&model);
        let img = s.file(&format!("{name}.crak"), &bytes);
        assert!(
            json_then_encode(&s, &img, name) == bytes,
            "{name}: encode(decode(x)) != x"
        );
    }
}

#[test]
fn encode_of_the_json_of_every_valid_vector() {
    // Every vector comes back byte for byte: records of unknown kinds, payload fields of a
    // later minor version, non-default record flags and AUTH are in the model.
    let s = setup();
    let dir = crak_tests::workspace_root().join("spec/vectors/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("spec/vectors/valid")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "too few vectors in {}", dir.display());
    for f in &files {
        let stem = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let original = std::fs::read(f).expect("read vector");
        let again = json_then_encode(&s, f, &stem);
        assert!(again == original, "{stem}: encode(decode(x)) != x");
        // From stdin too (the whole-input path of --json --pages).
        let r = s.run_with(args!["-", "--json", "--pages"], &original, &[]);
        r.expect_code(0);
        let from_file = s.run(args![f, "--json", "--pages"]);
        assert!(
            r.stdout == from_file.stdout,
            "{stem}: stdin and file JSON differ"
        );
    }
}

#[test]
fn encode_of_an_edited_model_keeps_unknown_records_and_tails_in_place() {
    // Vector 011 has unknown records after HEADER, before the first VMA and before END; 013
    // has a tail on every record. An edit of a VMA keeps them where they were.
    let s = setup();
    let dir = crak_tests::workspace_root().join("spec/vectors/valid");
    for name in [
        "011-unknown-noncritical-records",
        "013-future-payload-fields",
        "016-signed",
    ] {
        let original = std::fs::read(dir.join(format!("{name}.bin"))).expect("vector");
        let r = s.run_with(args!["-", "--json", "--pages"], &original, &[]);
        r.expect_code(0);
        let mut v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
        v["processes"][0]["vmas"][0]["prot"] = serde_json::json!(1);
        let json = s.file(&format!("{name}.json"), v.to_string().as_bytes());
        let out = s.path(&format!("{name}.out"));
        s.run(args!["encode", json, "-o", out]).expect_code(0);
        let again = std::fs::read(&out).expect("encoded");
        let a = crak_format::read::parse(&original).expect("vector parses");
        let b = crak_format::read::parse(&again).expect("encoded image parses");
        assert_eq!(a.image.unknown, b.image.unknown, "{name}");
        assert_eq!(a.image.extras, b.image.extras, "{name}");
        assert_eq!(a.image.auth, b.image.auth, "{name}");
        assert_eq!(b.image.processes[0].vmas[0].prot, 1);
        // Same length: only the one field changed (and CRCs, digest, signature coverage).
        assert_eq!(a.layout.records.len(), b.layout.records.len(), "{name}");
        for (x, y) in a.layout.records.iter().zip(&b.layout.records) {
            assert_eq!(
                (x.kind, x.flags, x.offset, x.length),
                (y.kind, y.flags, y.offset, y.length),
                "{name}"
            );
        }
    }
}

#[test]
fn encode_applies_an_edit() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let r = s.run(args![img, "--json", "--pages"]);
    let mut v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    v["processes"][0]["process"]["comm"] = "renamed".into();
    v["processes"][0]["threads"][0]["gpr"]["rax"] = 0x1234.into();
    let json = s.file("edited.json", v.to_string().as_bytes());
    let out = s.path("edited.crak");
    s.run(args!["encode", json, "-o", out]).expect_code(0);
    s.run(args!["validate", out]).expect_code(0);
    let bytes = std::fs::read(&out).expect("read");
    let back = crak_format::read::parse(&bytes).expect("parse");
    assert_eq!(back.image.processes[0].process.comm, "renamed".into());
    assert_eq!(back.image.processes[0].threads[0].gpr.rax, 0x1234);
    // From stdin to stdout.
    let r = s.run_with(
        args!["encode", "-", "-o", "-"],
        v.to_string().as_bytes(),
        &[],
    );
    r.expect_code(0);
    assert!(r.stdout == bytes, "stdin/stdout encoding differs");
}

#[test]
fn encode_refuses_elided_json_and_broken_models_without_touching_the_output() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let out = s.file("keep.crak", b"previous contents");
    // Elided page data.
    let r = s.run(args![img, "--json"]);
    let elided = s.file("elided.json", &r.stdout);
    s.run(args!["encode", elided, "-o", out])
        .expect_code(2)
        .expect_stderr_contains("elided");
    // Page data one byte short of nr_pages pages: the writer refuses it midway.
    let r = s.run(args![img, "--json", "--pages"]);
    let mut v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    v["processes"][0]["pages"][1]["data"] = "AAAA".into();
    let broken = s.file("broken.json", v.to_string().as_bytes());
    s.run(args!["encode", broken, "-o", out]).expect_code(2);
    // Not JSON at all.
    let junk = s.file("junk.json", b"{ not json");
    s.run(args!["encode", junk, "-o", out])
        .expect_code(2)
        .expect_stderr_contains("not JSON");
    assert_eq!(std::fs::read(&out).expect("read"), b"previous contents");
    let names: Vec<String> = std::fs::read_dir(s.dir.path())
        .expect("scratch")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "temporary file left behind: {names:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------------

/// The sample after a few things changed: header, process, registers, signal state, fds,
/// pages (bytes and states) and pipe data.
fn sample_changed() -> Image<'static> {
    let mut img = sample();
    img.header.hostname = "build-08".into();
    let p = &mut img.processes[0];
    p.process.comm = "srv2".into();
    p.threads[1].gpr.rip += 0x10;
    p.threads[0].blocked = 1 << (10 - 1);
    if let Some(s) = p.sigactions.as_mut() {
        s.actions[1].handler = 0;
    }
    p.fds[3].open_flags = 0o2;
    p.fds.remove(5);
    p.fds.push(fd(4242, 7, FdKind::Reg, "/etc/hosts", 0, 77));
    let mut info = p.sigqueues[0].siginfos[0].as_bytes().to_vec();
    info[0] = 12;
    p.sigqueues[0].siginfos[0] = Blob::from(info);
    // Anon pages 3, 4 and 20 change; the last two pages of the heap's zero run are dropped.
    let mut anon = p.pages[2].data.as_bytes().to_vec();
    for page in [3usize, 4, 20] {
        anon[page * PS as usize + 7] ^= 0x80;
    }
    p.pages[2].data = Blob::from(anon);
    p.zero_runs[0].nr_pages -= 2;
    img.processes[1].process.cwd = "/srv/other".into();
    img.pipes[0].data = Blob::from(b"job 17\n".to_vec());
    img
}

#[test]
fn diff_golden() {
    let s = setup();
    let a = s.image("a.crak", &sample());
    let b = s.image("b.crak", &sample_changed());
    let r = s.run(args!["diff", "--color=never", a, b]);
    r.expect_code(1);
    golden("diff.txt", &r.stdout());
    let r = s.run(args!["diff", "--json", a, b]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["identical"], false);
    golden("diff.json", &r.stdout());
}

#[test]
fn diff_names_what_changed() {
    let s = setup();
    let a = s.image("a.crak", &sample());
    let b = s.image("b.crak", &sample_changed());
    s.run(args!["diff", "--color=never", a, b])
        .expect_code(1)
        .expect_stdout_contains("~ header: hostname: build-07 -> build-08")
        .expect_stdout_contains("~ process 4242, thread 4242: blocked: SIGPIPE -> SIGUSR1")
        .expect_stdout_contains("~ process 4242, sigqueue (process): signals: SIGUSR1 -> SIGUSR2")
        .expect_stdout_contains("- process 4242, fd 5: reg /tmp/srv-cache (deleted)")
        .expect_stdout_contains("+ process 4242, fd 7: reg /etc/hosts")
        .expect_stdout_contains("O_WRONLY|O_APPEND")
        .expect_stdout_contains("3 pages differ (3 bytes)")
        .expect_stdout_contains(&format!("    {:x}-{:x}", ANON + 3 * PS, ANON + 5 * PS))
        .expect_stdout_contains(&format!("    {:x}-{:x}", ANON + 20 * PS, ANON + 21 * PS))
        .expect_stdout_contains("2 pages differ (2 zero->unrecorded)")
        .expect_stdout_contains("~ process 4250: cwd: /var/lib/srv -> /srv/other");
    // Swapped, the states swap too.
    s.run(args!["diff", "--color=never", b, a])
        .expect_code(1)
        .expect_stdout_contains("2 pages differ (2 unrecorded->zero)")
        .expect_stdout_contains("+ process 4242, fd 5:");
}

#[test]
fn diff_of_equal_images_is_silent_and_exits_0() {
    let s = setup();
    let bytes = write(&sample());
    let a = s.file("a.crak", &bytes);
    let b = s.file("b.crak", &bytes);
    let r = s.run(args!["diff", a, b]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.describe());
    let r = s.run_with(args!["diff", "--json", a, "-"], &bytes, &[]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["identical"], true);
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(0));
    s.run(args!["diff", a, "missing.crak"]).expect_code(2);
    s.run(args!["diff", "-", "-"]).expect_code(2);
}

// ---------------------------------------------------------------------------------------------
// strings
// ---------------------------------------------------------------------------------------------

/// The sample without its patterned anon pages (hundreds of strings).
fn sample_without_anon_pages() -> Image<'static> {
    let mut img = sample();
    img.processes[0].pages.retain(|r| r.addr != ANON);
    img
}

#[test]
fn strings_golden() {
    let s = setup();
    let img = s.image("srv.crak", &sample_without_anon_pages());
    let r = s.run(args!["strings", "--color=never", img]);
    r.expect_code(0);
    golden("strings.txt", &r.stdout());
    let r = s.run(args!["strings", "--json", "-n", "10", img]);
    r.expect_code(0);
    golden("strings.json", &r.stdout());
}

#[test]
fn strings_finds_known_text_with_its_address() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let marker_text = MARKER_ADDR + 4; // after the four bytes 0xde 0xad 0xbe 0xef
    s.run(args!["strings", "--color=never", "-n", "6", img])
        .expect_code(0)
        .expect_stdout_contains(&format!(
            "4242 {marker_text:x} #2 rw-p [heap]:  crak marker"
        ))
        .expect_stdout_contains(&format!(
            "4242 {:x} #5 rw-p [stack]: --port=8080",
            STACK + 0x20f23
        ));
    // A minimum longer than every string finds nothing.
    s.run(args!["strings", "-n", "4096", img]).expect_code(1);
    s.run(args!["strings", "-n", "0", img]).expect_code(2);
    s.run(args!["strings", "--pid", "1", img]).expect_code(2);
    // JSON holds the same strings.
    let r = s.run(args!["strings", "--json", "-n", "6", img]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    let texts: Vec<&str> = v["strings"]
        .as_array()
        .expect("strings")
        .iter()
        .filter_map(|x| x["text"].as_str())
        .collect();
    assert!(texts.contains(&" crak marker"), "{texts:?}");
    assert_eq!(v["count"].as_u64(), Some(texts.len() as u64));
}

// ---------------------------------------------------------------------------------------------
// core
// ---------------------------------------------------------------------------------------------

/// `readelf -lW` LOAD lines of a core file: (vaddr, offset, filesz, memsz).
fn loads(core: &Path) -> Vec<(u64, u64, u64, u64)> {
    let out = Command::new("readelf")
        .arg("-lW")
        .arg(core)
        .output()
        .expect("run readelf (binutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (hex(f[2]), hex(f[1]), hex(f[4]), hex(f[5]))
        })
        .collect()
}

#[test]
fn core_segments_hold_known_bytes_only() {
    let s = setup();
    let img = s.image("srv.crak", &sample());
    let core = s.path("srv.core");
    s.run(args!["core", img, "-o", core]).expect_code(0);
    let bytes = std::fs::read(&core).expect("read core");
    let segs = loads(&core);
    let seg = |addr: u64| {
        *segs
            .iter()
            .find(|x| x.0 == addr)
            .unwrap_or_else(|| panic!("no LOAD at {addr:#x}: {segs:?}"))
    };
    // Anonymous memory: stored, zero and unrecorded pages are all known.
    let (_, off, filesz, memsz) = seg(ANON);
    assert_eq!(filesz, memsz);
    let want: Vec<u8> = (0..64u64).map(|i| (i % 251) as u8 | 1).collect();
    assert_eq!(&bytes[off as usize..off as usize + 64], &want[..]);
    let (_, off, filesz, memsz) = seg(HEAP);
    assert_eq!(filesz, memsz);
    let m = (off + MARKER_ADDR - HEAP) as usize;
    assert_eq!(&bytes[m..m + MARKER.len()], MARKER);
    // The zero run reads as zeros.
    let z = (off + 2 * PS) as usize;
    assert!(bytes[z..z + 30 * PS as usize].iter().all(|&b| b == 0));
    // The executable is not on this machine: its unrecorded pages are left out.
    let (_, _, filesz, memsz) = seg(TEXT);
    assert_eq!(filesz, 0);
    assert!(memsz > 0);
    // The vDSO is provided by the kernel, not recorded.
    assert_eq!(seg(VDSO).2, 0);
    // And the notes are there: one PRSTATUS per thread.
    let out = Command::new("readelf")
        .arg("-n")
        .arg(&core)
        .output()
        .expect("readelf");
    let notes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(notes.matches("NT_PRSTATUS").count(), 2, "{notes}");
    assert_eq!(notes.matches("NT_X86_XSTATE").count(), 2, "{notes}");
    // The core reads back as an image: the same threads and heap bytes.
    s.run(args!["grep", core, "crak marker", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!("4242 {:x}", MARKER_ADDR + 5));
}

#[test]
fn strings_from_stdin_and_across_adjacent_runs() {
    let s = setup();
    let mut model = sample_without_anon_pages();
    // The heap run split in two, with a string across the cut.
    let p = &mut model.processes[0];
    let i = p
        .pages
        .iter()
        .position(|r| r.addr == HEAP)
        .expect("heap run");
    let run = p.pages.remove(i);
    let mut data = run.data.as_bytes().to_vec();
    let cut = PS as usize;
    data[cut - 5..cut + 5].copy_from_slice(b"ACROSS-CUT");
    let (a, b) = data.split_at(cut);
    p.pages.insert(
        i,
        PageRun {
            pid: run.pid,
            addr: HEAP,
            nr_pages: 1,
            data: Blob::from(a.to_vec()),
        },
    );
    p.pages.insert(
        i + 1,
        PageRun {
            pid: run.pid,
            addr: HEAP + PS,
            nr_pages: 1,
            data: Blob::from(b.to_vec()),
        },
    );
    let bytes = write(&model);
    let img = s.file("split.crak", &bytes);
    let from_file = s.run(args!["strings", "--color=never", img]);
    from_file.expect_code(0).expect_stdout_contains(&format!(
        "4242 {:x} #2 rw-p [heap]: ACROSS-CUT",
        HEAP + PS - 5
    ));
    let from_stdin = s.run_with(args!["strings", "--color=never", "-"], &bytes, &[]);
    from_stdin.expect_code(0);
    assert_eq!(from_stdin.stdout(), from_file.stdout());
    // Only one process, and a pid the image does not have.
    let r = s.run(args!["strings", "--color=never", "--pid", "4250", img]);
    assert!(!r.stdout().contains("4242 "), "{}", r.describe());
    s.run(args!["strings", "--pid", "77", img]).expect_code(2);
    // Not an image at all.
    let junk = s.file("junk", b"not an image at all");
    s.run(args!["strings", junk]).expect_code(2);
}

#[test]
fn grep_of_a_file_streams_and_agrees_with_stdin() {
    // A 1.6 MiB run (read in chunks when streamed) with a needle across the 1 MiB mark, a run
    // of repeated letters (overlapping candidates) and a second run right after the first.
    let s = setup();
    let mut model = sample_without_anon_pages();
    let p = &mut model.processes[0];
    let base = ANON;
    let pages = 400u64;
    let mut data = vec![0u8; (pages * PS) as usize];
    let mib = 1 << 20;
    data[mib - 4..mib + 4].copy_from_slice(b"NEEDLE!!");
    data[5000..5007].copy_from_slice(b"aaaaaaa");
    let end = data.len();
    data[end - 3..].copy_from_slice(b"TAI");
    p.vmas[3].end = base + (pages + 1) * PS;
    p.pages.push(PageRun {
        pid: 4242,
        addr: base,
        nr_pages: pages,
        data: Blob::from(data),
    });
    let mut next = vec![0u8; PS as usize];
    next[..2].copy_from_slice(b"LS");
    p.pages.push(PageRun {
        pid: 4242,
        addr: base + pages * PS,
        nr_pages: 1,
        data: Blob::from(next),
    });
    p.pages.sort_by_key(|r| r.addr);
    let bytes = write(&model);
    let img = s.file("big.crak", &bytes);
    s.run(args!["validate", img]).expect_code(0);
    for pat in [
        &["NEEDLE!!"][..],
        &["aa"],
        &["TAILS"],
        &["-x", "00 00 61"],
        &["-x", "0000", "-m", "100"],
        &["crak marker", "--perms", "rw"],
    ] {
        let mut a: Vec<&OsStr> = vec![OsStr::new("grep"), OsStr::new("--json"), img.as_os_str()];
        a.extend(pat.iter().map(OsStr::new));
        let from_file = s.run(&a);
        a[2] = OsStr::new("-");
        let from_stdin = s.run_with(&a, &bytes, &[]);
        assert_eq!(from_file.code, from_stdin.code, "{}", from_file.describe());
        assert_eq!(
            from_file.stdout(),
            from_stdin.stdout(),
            "{pat:?}\n{}",
            from_file.describe()
        );
    }
    s.run(args!["grep", img, "NEEDLE!!", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!("4242 {:x} #3", base + (1 << 20) - 4));
    s.run(args!["grep", img, "TAILS", "--color=never"])
        .expect_code(0)
        .expect_stdout_contains(&format!("4242 {:x} #3", base + pages * PS - 3));
    let r = s.run(args!["grep", "--json", img, "aa"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["count"], 3, "{}", r.describe()); // aa|aa|aa|a: non-overlapping
}

// ---------------------------------------------------------------------------------------------
// validate --host
// ---------------------------------------------------------------------------------------------

/// A PID no process, thread, process group or session uses on this host now.
fn free_pid() -> u32 {
    let mut used = std::collections::HashSet::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        used.insert(pid);
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            if let Some((_, rest)) = stat.rsplit_once(')') {
                used.extend(
                    rest.split_whitespace()
                        .skip(1)
                        .take(3)
                        .filter_map(|f| f.parse::<u32>().ok()),
                );
            }
        }
    }
    (300_000..400_000)
        .rev()
        .find(|p| !used.contains(p) && !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

/// The worker alone, as this host would restore it: a free PID, this test's executable, the
/// scratch dir as working directory, its text mapped from a scratch file that is also open as
/// fd 3, and no special mappings.
fn host_image(s: &Scratch, pid: u32) -> (Image<'static>, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    let data = s.file("data.bin", &[7u8; 8192]);
    let md = std::fs::metadata(&data).expect("stat data.bin");
    let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
    let mut img = sample();
    img.processes = vec![worker()];
    img.header.xsave_features = 0x3;
    img.header.special_mappings.clear();
    let path = data.to_str().expect("utf-8 scratch path");
    let p = &mut img.processes[0];
    p.process.exe = std::env::current_exe()
        .expect("current exe")
        .to_str()
        .expect("utf-8 exe")
        .into();
    p.process.cwd = s.dir.path().to_str().expect("utf-8 dir").into();
    let text = &mut p.vmas[0];
    (text.dev, text.ino, text.size, text.mtime_ns) = (md.dev(), md.ino(), md.size(), mtime);
    text.path = path.into();
    let mut f = fd(p.pid(), 3, FdKind::Reg, path, 0, md.ino());
    (f.dev, f.size, f.mtime_ns) = (md.dev(), md.size(), mtime);
    p.fds.push(f);
    crak_format::edit::set_pid(&mut img, None, pid).expect("set pid");
    (img, data)
}

#[test]
fn validate_host_accepts_an_image_this_host_can_restore() {
    let s = setup();
    let (img, _) = host_image(&s, free_pid());
    let path = s.image("host.crak", &img);
    s.run(args!["validate", path, "--color=never"])
        .expect_code(0);
    let r = s.run(args!["validate", "--host", path, "--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("json");
    assert_eq!(v["valid"], true, "{}", r.describe());
    assert_eq!(v["images"][0]["report"]["errors"], 0, "{}", r.describe());
}

#[test]
fn validate_host_names_a_file_modified_since_the_capture() {
    let s = setup();
    let (img, data) = host_image(&s, free_pid());
    let path = s.image("host.crak", &img);
    // Before the change the image is fine for this host; after it, the same file is refused.
    s.run(args!["validate", "--host", path]).expect_code(0);
    std::fs::write(&data, b"rewritten").expect("modify data.bin");
    let shown = data.display().to_string();
    let r = s.run(args!["validate", "--host", path, "--color=never"]);
    r.expect_code(1)
        .expect_stdout_contains("error[host-file]")
        .expect_stdout_contains(&shown)
        .expect_stdout_contains("size 8192 is now 9");
    // Without --host the image itself is still valid.
    s.run(args!["validate", path]).expect_code(0);
    let r = s.run(args!["validate", "--host", path, "--json"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("json");
    let findings = v["images"][0]["report"]["findings"]
        .as_array()
        .expect("findings")
        .clone();
    let records: Vec<&str> = findings
        .iter()
        .filter(|f| f["code"] == "host-file" && f["severity"] == "error")
        .filter(|f| f["message"].as_str().is_some_and(|m| m.contains(&shown)))
        .filter_map(|f| f["record"].as_str())
        .collect();
    assert!(
        records.contains(&"VMA") && records.contains(&"FD"),
        "{}",
        r.describe()
    );
}

#[test]
fn validate_host_refuses_a_pid_in_use() {
    let s = setup();
    let own = std::process::id();
    let (img, _) = host_image(&s, own);
    let path = s.image("host.crak", &img);
    let r = s.run(args!["validate", "--host", path, "--color=never"]);
    r.expect_code(1)
        .expect_stdout_contains("error[host-pid]")
        .expect_stdout_contains(&format!("PID {own} is in use"));
    s.run(args!["validate", path]).expect_code(0);
}

#[test]
fn validate_host_refuses_a_session_id_in_use() {
    // This test's session leader is alive, and its PID stays allocated while it is.
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat fields");
    let sid: u32 = rest
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.parse().ok())
        .expect("sid");
    if sid == 0 {
        return;
    }
    let s = setup();
    let (img, _) = host_image(&s, sid);
    let path = s.image("host.crak", &img);
    s.run(args!["validate", "--host", path, "--color=never"])
        .expect_code(1)
        .expect_stdout_contains("error[host-pid]");
}

#[test]
fn validate_host_refuses_xsave_features_this_cpu_lacks() {
    let s = setup();
    let (mut img, _) = host_image(&s, free_pid());
    // Bit 62 is reserved in XCR0: no CPU enables it.
    img.header.xsave_features |= 1 << 62;
    let path = s.image("host.crak", &img);
    s.run(args!["validate", "--host", path, "--color=never"])
        .expect_code(1)
        .expect_stdout_contains("error[host-xsave]");
}

// ---------------------------------------------------------------------------------------------
// spec/crak-json.md
// ---------------------------------------------------------------------------------------------

/// The keys (with their types) that the table under `heading` in spec/crak-json.md lists.
fn documented_keys(heading: &str) -> std::collections::BTreeMap<String, String> {
    let doc = std::fs::read_to_string(crak_tests::workspace_root().join("spec/crak-json.md"))
        .expect("spec/crak-json.md");
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(heading)).skip(1);
    let mut keys = std::collections::BTreeMap::new();
    for line in lines.by_ref().take_while(|l| !l.starts_with('#')) {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let key = cells.next().unwrap_or("").trim_end_matches('`');
        let ty = cells.next().unwrap_or("").to_string();
        assert!(keys.insert(key.to_string(), ty).is_none(), "{key} twice");
    }
    assert!(!keys.is_empty(), "no key table under {heading}");
    keys
}

/// Every key path in `v` (arrays as `[]`). A ByteString's `{"hex": ...}` form and the
/// contents of a documented leaf type ("array of ...", "map of ...") are not descended into.
fn json_paths(
    v: &serde_json::Value,
    path: &str,
    doc: &std::collections::BTreeMap<String, String>,
    out: &mut std::collections::BTreeSet<String>,
) {
    let leaf = doc
        .get(path)
        .is_some_and(|t| t.starts_with("array of") || t.starts_with("map of") || t == "ByteString");
    if leaf {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(p.clone());
                json_paths(x, &p, doc, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                json_paths(x, &format!("{path}[]"), doc, out);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn assert_documented(heading: &str, outputs: &[&[u8]]) {
    let doc = documented_keys(heading);
    let mut seen = std::collections::BTreeSet::new();
    for out in outputs {
        let v: serde_json::Value = serde_json::from_slice(out).expect("JSON output");
        json_paths(&v, "", &doc, &mut seen);
    }
    let listed: std::collections::BTreeSet<String> = doc.keys().cloned().collect();
    let undocumented: Vec<_> = seen.difference(&listed).collect();
    let unseen: Vec<_> = listed.difference(&seen).collect();
    assert!(
        undocumented.is_empty() && unseen.is_empty(),
        "{heading}: keys in the output but not in spec/crak-json.md: {undocumented:?}; \
         keys in spec/crak-json.md but not in the output: {unseen:?}"
    );
}

#[test]
fn json_schema_document_lists_every_image_key() {
    let s = setup();
    let vectors = crak_tests::workspace_root().join("spec/vectors/valid");
    let every = vectors.join("002-every-record-kind.bin");
    // Unknown records, record extras and AUTH.
    let unknown = vectors.join("011-unknown-noncritical-records.bin");
    let extras = vectors.join("013-future-payload-fields.bin");
    let signed = vectors.join("016-signed.bin");
    // FD kinds 6-10 and a shared open file description.
    let fds = vectors.join("017-event-fds-and-unix-sockets.bin");
    // Format 1.2 objects: memfd, TIMERS, LOCKS.
    let memfd = vectors.join("025-memfd-and-its-shared-mapping.bin");
    let timers = vectors.join("027-timers.bin");
    let locks = vectors.join("028-locks.bin");
    // System V IPC objects (format 1.2).
    let shm = vectors.join("020-sysv-shm.bin");
    let sem = vectors.join("021-sysv-sem.bin");
    let msg = vectors.join("022-sysv-msg.bin");
    // Files and credentials in flight (format 1.3).
    let scm = vectors.join("030-scm-files-and-credentials.bin");
    let img = s.image("srv.crak", &sample());
    let mut outs = Vec::new();
    for (path, pages) in [
        (&every, true),
        (&img, true),
        (&img, false),
        (&unknown, true),
        (&unknown, false),
        (&extras, true),
        (&signed, true),
        (&fds, true),
        (&memfd, true),
        (&timers, true),
        (&locks, true),
        (&shm, true),
        (&sem, true),
        (&msg, true),
        (&scm, true),
        (&scm, false),
    ] {
        let r = if pages {
            s.run(args![path, "--json", "--pages"])
        } else {
            s.run(args![path, "--json"])
        };
        r.expect_code(0);
        outs.push(r.stdout);
    }
    let outs: Vec<&[u8]> = outs.iter().map(Vec::as_slice).collect();
    assert_documented("### 3.2 Image model keys", &outs);
}

#[test]
fn json_schema_document_lists_every_validate_diff_and_grep_key() {
    let s = setup();
    let good = s.image("srv.crak", &sample());
    let dup = s.image("dup.crak", &duplicate_fd());
    let junk = s.file("junk.crak", b"not an image at all");
    let v1 = s.run(args!["validate", "--json", good, dup]);
    v1.expect_code(1);
    let v2 = s.run(args!["validate", "--json", junk]);
    v2.expect_code(2);
    assert_documented("### 4.1 Validate keys", &[&v1.stdout, &v2.stdout]);

    let b = s.image("b.crak", &sample_changed());
    let d = s.run(args!["diff", "--json", good, b]);
    d.expect_code(1);
    assert_documented("## 5.", &[&d.stdout]);

    let g = s.run(args!["grep", good, "crak marker", "--json"]);
    g.expect_code(0);
    assert_documented("## 6.", &[&g.stdout]);
}

// ---------------------------------------------------------------------------------------------
// Metadata of a seekable image file
// ---------------------------------------------------------------------------------------------

/// The sample written, and the file offsets of its last page-data byte and its CRC.
fn sample_with_pages_offsets() -> (Vec<u8>, usize, usize) {
    let bytes = write(&sample());
    let parsed = crak_format::read::parse(&bytes).expect("sample parses");
    let span = parsed
        .layout
        .records
        .iter()
        .find(|r| r.kind == crak_format::record::kind::PAGES)
        .expect("a PAGES record");
    let crc_at = usize::try_from(span.end_offset()).expect("offset") - 4;
    (bytes, crc_at - 1, crc_at)
}

fn seekable(bytes: &[u8]) -> Result<crak_format::read::Parsed<'static>, crak_format::Error> {
    crak_format::read::read_seekable_metadata(std::io::Cursor::new(bytes.to_vec()))
}

#[test]
fn seekable_metadata_is_the_streamed_model_and_layout() {
    let (bytes, _, _) = sample_with_pages_offsets();
    let sought = seekable(&bytes).expect("seekable read");
    let streamed = crak_format::read::read_stream_metadata(&bytes[..]).expect("stream read");
    assert_eq!(sought.image, streamed.image);
    assert_eq!(sought.layout, streamed.layout);
    assert_eq!(sought.end, streamed.end);
    // The same through a buffered file, as crak-dump reads it.
    let s = setup();
    let path = s.file("srv.crak", &bytes);
    let file = std::fs::File::open(&path).expect("open");
    let from_file =
        crak_format::read::read_seekable_metadata(std::io::BufReader::with_capacity(4096, file))
            .expect("file read");
    assert_eq!(from_file.image, streamed.image);
}

#[test]
fn seekable_metadata_leaves_page_bytes_unchecked_but_not_their_crc() {
    let (bytes, data_at, crc_at) = sample_with_pages_offsets();
    // A page byte changed behind an intact CRC: only a reader of the data sees it.
    let mut data = bytes.clone();
    data[data_at] ^= 0xff;
    assert!(seekable(&data).is_ok());
    let e = crak_format::read::read_stream_metadata(&data[..]).expect_err("bad CRC");
    assert_eq!(e.kind_str(), "bad-crc");
    let s = setup();
    let path = s.file("data.crak", &data);
    s.run(args!["validate", path]).expect_code(1);
    s.run(args![path, "--json"]).expect_code(0);
    // A changed CRC is caught by END's digest.
    let mut crc = bytes.clone();
    crc[crc_at] ^= 0xff;
    let e = seekable(&crc).expect_err("digest mismatch");
    assert!(!e.to_string().is_empty());
    let path = s.file("crc.crak", &crc);
    s.run(args![path, "--json"]).expect_code(2);
    // Cut inside the page data: truncated, as when it is read.
    for cut in [data_at - 100, data_at, crc_at + 2] {
        let e = seekable(&bytes[..cut]).expect_err("truncated");
        assert_eq!(e.kind_str(), "truncated", "cut at {cut}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Page data read from the image file (bounded memory)
// ---------------------------------------------------------------------------------------------

/// The sample image with one anonymous stored run of `pages` pages whose bytes are `fill`,
/// written; returns the model, the bytes and the file offset of that run's page data.
fn image_with_big_run(pages: u64, fill: &dyn Fn(&mut [u8])) -> (Image<'static>, Vec<u8>, u64) {
    let mut model = sample_without_anon_pages();
    let p = &mut model.processes[0];
    let mut data = vec![0u8; (pages * PS) as usize];
    fill(&mut data);
    p.vmas[3].end = ANON + pages * PS;
    p.pages.push(PageRun {
        pid: 4242,
        addr: ANON,
        nr_pages: pages,
        data: Blob::from(data),
    });
    p.pages.sort_by_key(|r| r.addr);
    let bytes = write(&model);
    let parsed = crak_format::read::parse(&bytes).expect("valid image");
    let i = parsed.image.processes[0]
        .pages
        .iter()
        .position(|r| r.addr == ANON)
        .expect("the run");
    let span = parsed
        .layout
        .find(crak_format::record::kind::PAGES, Some(4242), i)
        .expect("its record");
    let data_at = span.payload_offset() + span.length - pages * PS;
    (model, bytes, data_at)
}

#[test]
fn page_data_commands_agree_between_file_and_stdin() {
    // A 1.6 MiB run (several 1 MiB reads, base64 in pieces that are not multiples of 3).
    let s = setup();
    let (_, bytes, _) = image_with_big_run(400, &|d| {
        for (i, b) in d.iter_mut().enumerate() {
            *b = (i % 251) as u8 | 1;
        }
    });
    let img = s.file("big.crak", &bytes);
    let changed = {
        let (_, b, at) = image_with_big_run(400, &|d| {
            for (i, b) in d.iter_mut().enumerate() {
                *b = (i % 251) as u8 | 1;
            }
            d[(300 * PS + 5) as usize] = 0;
        });
        assert_eq!(b[(at + 300 * PS + 5) as usize], 0);
        s.file("changed.crak", &b)
    };
    let range = format!("{:#x}+{:#x}", ANON + 0x1234, 3 * (1 << 20) / 2);
    let cases: Vec<Vec<&OsStr>> = vec![
        args![img, "--json", "--pages"].to_vec(),
        args!["mem", img, range].to_vec(),
        args!["mem", img, "--vma", "3", "--raw"].to_vec(),
        args!["grep", "--json", "-e", img, "[\\x05-\\x07]{3}"].to_vec(),
        args!["backtrace", "--json", img].to_vec(),
        args!["diff", "--json", img, changed].to_vec(),
        args!["diff", "--json", changed, img].to_vec(),
    ];
    for a in cases {
        let from_file = s.run(&a);
        assert!(
            from_file.code == 0 || a[0] == "diff",
            "{}",
            from_file.describe()
        );
        let mut b = a.clone();
        let at = b.iter().position(|x| *x == img.as_os_str()).expect("IMAGE");
        b[at] = OsStr::new("-");
        let from_stdin = s.run_with(&b, &bytes, &[]);
        assert_eq!(from_file.code, from_stdin.code, "{}", from_stdin.describe());
        assert!(
            from_file.stdout == from_stdin.stdout,
            "{}\n---- from stdin ----\n{}",
            from_file.describe(),
            from_stdin.describe()
        );
    }
    // The diff found the one changed page.
    let r = s.run(args!["diff", "--json", img, changed]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(v["pages"][0]["pages"], 1, "{}", r.describe());
    assert_eq!(
        v["pages"][0]["ranges"][0][0],
        ANON + 300 * PS,
        "{}",
        r.describe()
    );
    // core from the file and from stdin: the same file.
    s.run(args!["core", img, "-o", "a.core"]).expect_code(0);
    let r = s.run_with(args!["core", "-", "-o", "b.core"], &bytes, &[]);
    r.expect_code(0);
    assert!(
        std::fs::read(s.path("a.core")).unwrap() == std::fs::read(s.path("b.core")).unwrap(),
        "core files differ"
    );
}

#[test]
fn page_data_commands_check_the_crc_of_each_run_they_read() {
    let s = setup();
    let (model, mut bytes, at) = image_with_big_run(64, &|d| d.fill(0x5a));
    // One byte of page data changed behind an intact CRC: the metadata (and END's digest) are
    // still right, only the PAGES record's CRC says the data is wrong.
    bytes[(at + 40 * PS + 7) as usize] ^= 0xff;
    let bad = s.file("bad.crak", &bytes);
    let good = s.image("good.crak", &model);
    s.run(args!["validate", bad]).expect_code(1);
    let range = format!("{:#x}+16", ANON + 2 * PS);
    for a in [
        args!["mem", bad, range].to_vec(),
        args!["mem", bad, "--vma", "3", "--raw"].to_vec(),
        args![bad, "--json", "--pages"].to_vec(),
        args!["grep", "-e", bad, "Z+"].to_vec(),
        args!["core", bad, "-o", "bad.core"].to_vec(),
        args!["diff", bad, good].to_vec(),
        args!["diff", good, bad].to_vec(),
    ] {
        s.run(&a)
            .expect_code(2)
            .expect_stderr_contains("bad-crc in PAGES record");
    }
    assert!(!s.path("bad.core").exists(), "core wrote a file");
    // A range that reads no stored page of the damaged run does not need its CRC.
    s.run(args!["mem", bad, format!("{MARKER_ADDR:#x}+16")])
        .expect_code(0)
        .expect_stdout_contains("de ad be ef");
}

#[test]
fn grep_regex_reads_large_blocks_in_windows() {
    // A 20 MiB stored block, searched in 8 MiB windows that overlap by 1 MiB: matches right
    // at, across and just before each window's edges, and one 200 KiB long, are all found once.
    const MIB: usize = 1 << 20;
    let planted: Vec<(usize, usize)> = vec![
        (0, 6),
        (7 * MIB - 3, 8),
        (7 * MIB + 10, 6),
        (8 * MIB - 4, 10),
        (11 * MIB, 200 * 1024),
        (14 * MIB - 2, 7),
        (15 * MIB - 300 * 1024, 200 * 1024),
        (15 * MIB + 1, 9),
        (20 * MIB - 6, 6),
    ];
    let plant = planted.clone();
    let (_, bytes, _) = image_with_big_run((20 * MIB) as u64 / PS, &move |d| {
        d.fill(b'.');
        for &(at, len) in &plant {
            let m = &mut d[at..at + len];
            m.fill(b'7');
            m[0] = b'<';
            m[len - 1] = b'>';
        }
    });
    let s = setup();
    let img = s.file("huge.crak", &bytes);
    let r = s.run(args!["grep", "--json", "-e", img, "<7*>"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    let got: Vec<(u64, u64)> = v["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| (m["addr"].as_u64().unwrap(), m["len"].as_u64().unwrap()))
        .collect();
    let mut want: Vec<(u64, u64)> = planted
        .iter()
        .map(|&(at, len)| (ANON + at as u64, len as u64))
        .collect();
    want.sort();
    assert_eq!(got, want, "{}", r.describe());
}

/// Peak RSS in KiB of `crak-dump ARGS`, measured by GNU time; `None` without /usr/bin/time.
fn peak_rss_kib(s: &Scratch, args: &[&OsStr]) -> Option<(u64, Run)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let report = s.path("rss.txt");
    let mut c = Command::new(time);
    c.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(crak_tests::bin("crak-dump"))
        .args(args)
        .current_dir(s.dir.path())
        .stdin(Stdio::null());
    let out = c.output().expect("run crak-dump under time");
    let run = Run {
        cmd: format!("{args:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: Vec::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let kib = std::fs::read_to_string(&report)
        .ok()?
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()?;
    Some((kib, run))
}

#[test]
fn page_data_commands_stay_within_64_mib_on_a_larger_image() {
    // 96 MiB of stored pages in one mapping: a command that held the image (or one run's
    // worth of copies) would pass 64 MiB.
    let s = setup();
    let pages = (96 << 20) / PS;
    let (_, bytes, _) = image_with_big_run(pages, &|d| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for c in d.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
    });
    let img = s.file("big.crak", &bytes);
    drop(bytes);
    let end = format!("{:#x}+0x1000", ANON + pages * PS - PS);
    let cases: Vec<Vec<&OsStr>> = vec![
        args![img, "--json", "--pages"].to_vec(),
        args!["mem", img, "--vma", "3", "--raw"].to_vec(),
        args!["mem", img, end].to_vec(),
        args!["grep", "-e", img, "crak [m]arker"].to_vec(),
        args!["diff", img, img].to_vec(),
        args!["core", img, "-o", "big.core"].to_vec(),
        args!["backtrace", img].to_vec(),
    ];
    for a in cases {
        let Some((kib, run)) = peak_rss_kib(&s, &a) else {
            eprintln!("no /usr/bin/time: peak RSS not measured");
            return;
        };
        assert!(run.code == 0, "{}", run.describe());
        assert!(kib < 64 * 1024, "{a:?}: peak RSS {kib} KiB");
    }
}

#[test]
fn summary_and_diff_show_files_and_credentials_in_flight() {
    let s = setup();
    let v =
        crak_tests::workspace_root().join("spec/vectors/valid/030-scm-files-and-credentials.bin");
    let r = s.run(args![&v]);
    r.expect_code(0);
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    for want in [
        "In flight",
        "9200 (fd 4242:14)",
        "pid 4242 uid 1000 gid 100",
        "pipe:[9300]",
        "[count 42]",
        "/srv/data/log @4096 (shared open file 1)",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let other =
        crak_tests::workspace_root().join("spec/vectors/valid/017-event-fds-and-unix-sockets.bin");
    let r = s.run(args!["diff", &v, &other]);
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        out.contains("in flight on socket 9200 message 1: 3 files"),
        "{out}"
    );
}
