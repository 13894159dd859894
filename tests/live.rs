//! Live checkpoint/restore tests, ZDTM style: a small program (tests/live/*.c, compiled with
//! `cc`) sets up some state and says READY; it is captured with the real `crak-capture` (which
//! kills it), restored with the real `crak-restore --detach`, then told to go (SIGUSR2), checks
//! its own state and writes PASS or FAIL. The harness also compares `/proc/PID/maps` and the fd
//! table before and after, and checks the error paths (corrupted image, injected faults, a taken
//! PID) leave nothing behind.
//!
//! The tests need root (ptrace, `clone3` with `set_tid`, `PR_SET_MM_MAP`) and run one at a time
//! (they share PIDs and the CPU).

use crak_tests::{bin, is_gone, serial, signal, wait_gone};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One mapping, as compared before and after: range, perms, path.
type MapLine = (u64, u64, String, String);

/// `/proc/PID/maps` with adjacent entries of equal perms and path merged (the kernel may merge
/// or split VMAs differently after a restore without any visible difference).
fn maps_of(pid: i32) -> Vec<MapLine> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut out: Vec<MapLine> = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let range = it.next().unwrap_or("");
        let perms = it.next().unwrap_or("").to_string();
        let path = it.nth(3).unwrap_or("").trim().to_string();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let s = u64::from_str_radix(s, 16).unwrap_or(0);
        let e = u64::from_str_radix(e, 16).unwrap_or(0);
        if let Some(last) = out.last_mut() {
            if last.1 == s && last.2 == perms && last.3 == path {
                last.1 = e;
                continue;
            }
        }
        out.push((s, e, perms, path));
    }
    out
}

/// fd number → (target, flags, pos), with pipe inode numbers elided.
fn fds_of(pid: i32) -> BTreeMap<i32, (String, String, String)> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let target = std::fs::read_link(e.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Pipes and sockets are new objects after a restore: their inode numbers differ.
        let target = if target.starts_with("pipe:[") {
            "pipe".to_string()
        } else if target.starts_with("socket:[") {
            "socket".to_string()
        } else {
            target
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        out.insert(n, (target, field("flags:"), field("pos:")));
    }
    out
}

/// The live tests' scratch directory and processes (`crak_tests::Scratch`).
type Case = crak_tests::Scratch;

/// Lines of /proc/PID/status that a restore must keep.
const STATUS_KEYS: [&str; 15] = [
    "Name:",
    "Umask:",
    "Uid:",
    "Gid:",
    "Groups:",
    "SigBlk:",
    "SigIgn:",
    "SigCgt:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Tgid:",
];

/// A snapshot of what the harness compares before and after.
struct Views {
    maps: Vec<MapLine>,
    fds: BTreeMap<i32, (String, String, String)>,
    /// cmdline, environ, exe, cwd, root, limits, personality, and the kept status lines.
    task: BTreeMap<String, String>,
}

impl Views {
    fn of(pid: i32) -> Views {
        let mut task = BTreeMap::new();
        for f in ["cmdline", "environ", "limits", "personality"] {
            let v = std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            task.insert(f.to_string(), String::from_utf8_lossy(&v).into_owned());
        }
        for l in ["exe", "cwd", "root"] {
            let v = std::fs::read_link(format!("/proc/{pid}/{l}")).unwrap_or_default();
            task.insert(l.to_string(), v.to_string_lossy().into_owned());
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for line in status.lines() {
            if STATUS_KEYS.iter().any(|k| line.starts_with(k)) {
                let (k, v) = line.split_once(':').unwrap_or((line, ""));
                task.insert(k.to_string(), v.trim().to_string());
            }
        }
        // Every thread: its TID, and the per-thread credentials, mask and name.
        let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        tids.sort_unstable();
        task.insert("tids".into(), format!("{tids:?}"));
        for tid in tids.into_iter().filter(|&t| t != pid) {
            let st = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                .unwrap_or_default();
            for line in st.lines() {
                if STATUS_KEYS.iter().any(|k| line.starts_with(k)) {
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    task.insert(format!("thread {tid} {k}"), v.trim().to_string());
                }
            }
        }
        Views {
            maps: maps_of(pid),
            fds: fds_of(pid),
            task,
        }
    }

    /// The views of a busy program, without what it changes by itself from one moment to the
    /// next: file offsets, the blocked mask (bash blocks signals around critical sections), and
    /// fds it holds only briefly (a log file opened for each line): three snapshots 30 ms
    /// apart, keeping the fds all three show alike.
    fn of_busy(pid: i32) -> Views {
        let mut v = Views::of(pid);
        v.task.retain(|k, _| !k.ends_with("SigBlk"));
        for f in v.fds.values_mut() {
            f.2.clear();
        }
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(30));
            let again = fds_of(pid);
            v.fds
                .retain(|n, f| again.get(n).is_some_and(|g| g.0 == f.0 && g.1 == f.1));
        }
        v
    }

    fn assert_same(&self, after: &Views, case: &Case) {
        if self.maps != after.maps {
            let mut d = String::new();
            for m in &self.maps {
                if !after.maps.contains(m) {
                    let _ = writeln!(d, "- {:x}-{:x} {} {}", m.0, m.1, m.2, m.3);
                }
            }
            for m in &after.maps {
                if !self.maps.contains(m) {
                    let _ = writeln!(d, "+ {:x}-{:x} {} {}", m.0, m.1, m.2, m.3);
                }
            }
            case.fail(&format!("/proc/PID/maps differ after restore:\n{d}"));
        }
        for (k, v) in &self.task {
            let a = after.task.get(k).map(String::as_str).unwrap_or("<missing>");
            if v != a {
                case.fail(&format!(
                    "{k} differs after restore:\nbefore {v:?}\nafter  {a:?}"
                ));
            }
        }
        if self.fds != after.fds {
            case.fail(&format!(
                "fds differ after restore:\nbefore {:?}\nafter  {:?}",
                self.fds, after.fds
            ));
        }
    }
}

/// The common ZDTM flow: compile, start, READY, capture, restore with the same PID, compare
/// the /proc views, `before_go`, SIGUSR2, PASS.
fn zdtm(name: &str, args: &[&str], setup: impl FnOnce(&Path), before_go: impl FnOnce(i32)) -> Case {
    let mut case = Case::new("crak-live-");
    let prog = case.compile(name);
    setup(case.dir.path());
    let pid = case.spawn(&prog, args);
    case.wait_file("ready", Duration::from_secs(20));
    // Let the program reach the state it waits in.
    std::thread::sleep(Duration::from_millis(200));
    let before = Views::of(pid);
    let img = case.capture(pid, &[]);
    let restored = case.restore_detached(&img, &[]);
    if restored != pid {
        case.fail(&format!("restored as PID {restored}, captured as {pid}"));
    }
    let after = Views::of(restored);
    before.assert_same(&after, &case);
    before_go(restored);
    case.go_and_expect_pass(restored);
    case
}

#[test]
fn counter_appends_without_gap_or_repeat() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("counter");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let before = Views::of_busy(pid);
    let img = case.capture(pid, &[]);
    let at_capture = std::fs::read_to_string(case.path("counter.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid, "same PID");
    before.assert_same(&Views::of_busy(restored), &case);
    std::thread::sleep(Duration::from_millis(300));
    case.go_and_expect_pass(restored);
    let text = std::fs::read_to_string(case.path("counter.log")).unwrap_or_default();
    let nums: Vec<i64> = text.lines().map(|l| l.parse().unwrap_or(-1)).collect();
    for (i, n) in nums.iter().enumerate() {
        if *n != i as i64 {
            case.fail(&format!("line {i} of counter.log is {n}"));
        }
    }
    if nums.len() <= at_capture + 5 {
        case.fail(&format!(
            "the counter did not go on after restore ({} lines at capture, {} now)",
            at_capture,
            nums.len()
        ));
    }
}

#[test]
fn memory_64mib_checksum() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm("memory", &["64"], |_| {}, |_| {});
}

#[test]
fn memory_256mib_random() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm("memory", &["256", "random"], |_| {}, |_| {});
}

#[test]
fn vector_registers_survive() {
    crak_tests::need_root!();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpuinfo.contains(" avx") {
        eprintln!("no AVX on this CPU; skipped");
        return;
    }
    let _g = serial();
    zdtm("vector", &[], |_| {}, |_| {});
}

#[test]
fn signal_handlers_masks_and_pending_signals() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm(
        "signals",
        &[],
        |_| {},
        |pid| {
            signal(pid, libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(100));
        },
    );
}

#[test]
fn credentials_of_an_unprivileged_process() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm(
        "creds",
        &[],
        |dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            // The restore opens the program's files as its (unprivileged) user.
            for log in ["out.log", "err.log"] {
                let p = dir.join(log);
                std::fs::write(&p, "").expect("create log");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))
                    .expect("chmod");
            }
        },
        |_| {},
    );
}

/// The credential stage without depending on capture: a root program's image is edited to
/// unprivileged credentials, and the restored process must have exactly those.
#[test]
fn credentials_from_an_edited_image() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(case.dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        // The restore opens the program's files as the edited (unprivileged) user.
        for log in ["out.log", "err.log"] {
            std::fs::set_permissions(case.path(log), std::fs::Permissions::from_mode(0o666))
                .expect("chmod");
        }
    }
    let data = std::fs::read(&img).expect("image");
    let mut image = crak_format::read::parse(&data).expect("parse").image;
    let cr = image.processes[0].creds.as_mut().expect("CREDS");
    (cr.uid, cr.euid, cr.suid, cr.fsuid) = (1000, 1001, 1002, 1001);
    (cr.gid, cr.egid, cr.sgid, cr.fsgid) = (2000, 2001, 2002, 2001);
    cr.groups = vec![3000, 3001];
    cr.cap_effective = 0;
    cr.cap_permitted = 0;
    cr.cap_inheritable = 0;
    cr.cap_ambient = 0;
    cr.no_new_privs = 1;
    let edited = case.path("creds.crak");
    std::fs::write(&edited, crak_format::write::to_vec(&image).expect("encode")).expect("write");
    let restored = case.restore_detached(&edited, &[]);
    assert_eq!(restored, pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    for (k, want) in [
        ("Uid:", "1000 1001 1002 1001"),
        ("Gid:", "2000 2001 2002 2001"),
        ("Groups:", "3000 3001"),
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
    ] {
        if field(k) != want {
            case.fail(&format!("{k} is {:?}, want {want:?}", field(k)));
        }
    }
    case.go_and_expect_pass(restored);
}

/// A root directory other than the restorer's is entered with chroot after the memory is
/// rebuilt (whose paths are host paths); the working directory stays where it was.
#[test]
fn root_directory_from_an_edited_image() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    let root = case.path("newroot");
    std::fs::create_dir(&root).expect("mkdir");
    let data = std::fs::read(&img).expect("image");
    let mut image = crak_format::read::parse(&data).expect("parse").image;
    image.processes[0].process.root = root.to_string_lossy().as_ref().into();
    let edited = case.path("root.crak");
    std::fs::write(&edited, crak_format::write::to_vec(&image).expect("encode")).expect("write");
    let restored = case.restore_detached(&edited, &[]);
    assert_eq!(restored, pid);
    let seen = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
    if seen != root {
        case.fail(&format!(
            "root is {}, want {}",
            seen.display(),
            root.display()
        ));
    }
    case.go_and_expect_pass(restored);
}

#[test]
fn nanosleep_sleeps_only_the_remaining_time() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("sleeper");
    let pid = case.spawn(&prog, &["6"]);
    case.wait_file("ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    let img = case.capture(pid, &[]);
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    let r = case.wait_file("result", Duration::from_secs(30));
    if r.trim() != "PASS" {
        case.fail(&format!("program reported: {}", r.trim()));
    }
    let slept: f64 = case
        .wait_file("slept", Duration::from_secs(1))
        .trim()
        .trim_start_matches("slept ")
        .parse()
        .unwrap_or(0.0);
    // Re-sleeping the full 6 s after the 2.5 s before capture would take at least 8.5 s.
    if !(5.99..7.5).contains(&slept) {
        case.fail(&format!("nanosleep(6 s) took {slept} s"));
    }
}

#[test]
fn pipes_blocked_read_and_buffered_data() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm("pipes", &[], |_| {}, |_| {});
}

#[test]
fn files_offsets_flags_and_deleted_file() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm(
        "files",
        &[],
        |dir| std::fs::write(dir.join("input.txt"), "ABCDEFGHIJ").expect("input.txt"),
        |_| {},
    );
}

#[test]
fn deleted_file_whose_name_was_taken_again() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("files");
    std::fs::write(case.path("input.txt"), "ABCDEFGHIJ").expect("input.txt");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    let img = case.capture(pid, &[]);
    // A new file now has the deleted file's name: the restore must not touch it and still give
    // the program its old, deleted contents.
    std::fs::write(case.path("gone.txt"), "new file").expect("gone.txt");
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    case.go_and_expect_pass(restored);
    let now = std::fs::read_to_string(case.path("gone.txt")).unwrap_or_default();
    if now != "new file" {
        case.fail("the file that took the deleted file's name was changed");
    }
}

#[test]
fn heap_file_mappings_and_guard_pages() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm(
        "mappings",
        &[],
        |dir| {
            let p: Vec<u8> = (0..65536u32).map(|i| (i / 7) as u8).collect();
            let s: Vec<u8> = (0..65536u32).map(|i| (i / 13) as u8).collect();
            std::fs::write(dir.join("private.bin"), p).expect("private.bin");
            std::fs::write(dir.join("shared.bin"), s).expect("shared.bin");
        },
        |_| {},
    );
}

#[test]
fn taken_pid_needs_new_pid() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("memory");
    let pid = case.spawn(&prog, &["8"]);
    case.wait_file("ready", Duration::from_secs(20));
    let img = case.capture(pid, &["--leave-running"]);
    // The original still runs with the PID.
    let cmd = case.restore_cmd(&img, &["--detach"]);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(2) || !err.contains("--new-pid") || !err.contains(&pid.to_string()) {
        case.fail("a taken PID must be refused with a message naming it and --new-pid");
    }
    let cmd = case.restore_cmd(&img, &["--detach", "--json"]);
    let o = case.run(cmd);
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap_or_default();
    if o.status.code() != Some(2) || v["error"] != "refused" {
        case.fail("with --json the refusal must be a JSON object of kind \"refused\"");
    }
    let restored = case.restore_detached(&img, &["--new-pid"]);
    if restored == pid || is_gone(pid) {
        case.fail("--new-pid must restore beside the original under another PID");
    }
    case.go_and_expect_pass(restored);
}

#[test]
fn unmodified_sleep_finishes_with_status_zero() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let t0 = Instant::now();
    let pid = case.spawn(Path::new("/bin/sleep"), &["3"]);
    std::thread::sleep(Duration::from_millis(1000));
    let before = Views::of(pid);
    let img = case.capture(pid, &[]);
    let mut cmd = case.restore_cmd(&img, &[]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crak-restore");
    // While crak-restore waits for it, the process runs with its PID.
    std::thread::sleep(Duration::from_millis(300));
    let after = Views::of(pid);
    let o = child.wait_with_output().expect("wait crak-restore");
    let _ = writeln!(
        case.log,
        "crak-restore (waiting): {} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    before.assert_same(&after, &case);
    if o.status.code() != Some(0) {
        case.fail("restored sleep did not exit with status 0");
    }
    let took = t0.elapsed().as_secs_f64();
    if !(2.9..5.0).contains(&took) {
        case.fail(&format!("sleep 3 took {took} s across the checkpoint"));
    }
}

#[test]
fn shell_job_on_a_terminal() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("tty");
    let dir = case.dir.path().to_path_buf();
    // Everything runs inside one pseudo-terminal made by script(1): the program, its capture
    // and its restore, as a user would from a shell.
    let steps = format!(
        "cd {dir}\n\
         {prog} 0<&1 & P=$!\n\
         for i in $(seq 400); do [ -f ready ] && break; sleep 0.05; done; sleep 0.2\n\
         {cap} $P -o img.crak 2> capture.err || exit 3\n\
         wait $P\n\
         if {rest} --detach img.crak 2> plain.err; then echo restored-without-shell-job; fi\n\
         {rest} --shell-job --detach img.crak > restored.pid 2> shell.err || exit 4\n\
         kill -USR2 $(cat restored.pid)\n\
         for i in $(seq 400); do [ -f result ] && break; sleep 0.05; done\n",
        dir = dir.display(),
        prog = prog.display(),
        cap = bin("crak-capture").display(),
        rest = bin("crak-restore").display(),
    );
    std::fs::write(dir.join("steps.sh"), steps).expect("steps.sh");
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "script", "-qec", "bash steps.sh", "/dev/null"])
        .current_dir(&dir)
        .stdin(Stdio::null());
    let o = case.run(cmd);
    if let Some(pid) = std::fs::read_to_string(dir.join("restored.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        case.pids.push(pid);
    }
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    let _ = writeln!(
        case.log,
        "capture.err: {}\nplain.err: {}\nshell.err: {}",
        read("capture.err"),
        read("plain.err"),
        read("shell.err")
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if out.contains("restored-without-shell-job") || !read("plain.err").contains("--shell-job") {
        case.fail("a terminal fd without --shell-job must be refused, naming --shell-job");
    }
    if read("result").trim() != "PASS" {
        case.fail(&format!("program reported: {}", read("result").trim()));
    }
    if !out.contains("tty-ok") {
        case.fail("the restored program's write to the terminal did not arrive");
    }
}

/// Runs a looping interpreter that appends 0, 1, 2... to `log`, checkpoints it, restores it,
/// and checks the numbers go on without gap or repeat.
fn interpreter_loop(program: &str, args: &[&str], log: &str, setup: impl FnOnce(&Path)) {
    let mut case = Case::new("crak-live-");
    setup(case.dir.path());
    let pid = case.spawn(Path::new(program), args);
    let t0 = Instant::now();
    while std::fs::read_to_string(case.path(log))
        .unwrap_or_default()
        .lines()
        .count()
        < 5
    {
        if t0.elapsed() > Duration::from_secs(20) {
            case.fail("the loop never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = Views::of_busy(pid);
    let img = case.capture(pid, &[]);
    let at_capture = std::fs::read_to_string(case.path(log))
        .unwrap_or_default()
        .lines()
        .count();
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    before.assert_same(&Views::of_busy(restored), &case);
    std::thread::sleep(Duration::from_millis(500));
    signal(restored, libc::SIGKILL);
    wait_gone(restored, Duration::from_secs(5));
    let text = std::fs::read_to_string(case.path(log)).unwrap_or_default();
    let nums: Vec<i64> = text
        .lines()
        .map(|l| l.trim().parse().unwrap_or(-1))
        .collect();
    for (i, n) in nums.iter().enumerate() {
        // The last line may be cut short by SIGKILL.
        if *n != i as i64 && i + 1 != nums.len() {
            case.fail(&format!("line {i} of {log} is {n}"));
        }
    }
    if nums.len() <= at_capture + 3 {
        case.fail(&format!(
            "the loop did not go on after restore ({at_capture} lines at capture, {} now)",
            nums.len()
        ));
    }
}

#[test]
fn python_loop() {
    crak_tests::need_root!();
    let _g = serial();
    interpreter_loop(
        "python3",
        &[
            "-c",
            "import time\ni = 0\nwhile True:\n    with open('py.log', 'a') as f:\n        f.write(f'{i}\\n')\n    i += 1\n    time.sleep(0.02)\n",
        ],
        "py.log",
        |_| {},
    );
}

#[test]
fn bash_loop() {
    crak_tests::need_root!();
    let _g = serial();
    interpreter_loop(
        "bash",
        &[
            "-c",
            "exec 3<>fifo; i=0; while :; do echo $i >> bash.log; i=$((i+1)); read -t 0.02 -u 3; done",
        ],
        "bash.log",
        |dir| {
            let st = Command::new("mkfifo")
                .arg(dir.join("fifo"))
                .status()
                .expect("mkfifo");
            assert!(st.success());
        },
    );
}

#[test]
fn restore_from_stdin_with_json_summary() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    let mut cmd = case.restore_cmd(Path::new("-"), &["--detach", "--json"]);
    cmd.stdin(std::fs::File::open(&img).expect("image"));
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("crak-restore - failed");
    }
    let restored: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    case.pids.push(restored);
    assert_eq!(restored, pid);
    let v: serde_json::Value = serde_json::from_slice(&o.stderr)
        .unwrap_or_else(|e| case.fail(&format!("--json summary does not parse: {e}")));
    if v["pid"] != pid || !v["same_pid"].as_bool().unwrap_or(false) {
        case.fail("--json summary names another pid");
    }
    if v["pages"].as_u64().unwrap_or(0) < 8 * 256 / 2
        || v["bytes"].as_u64() != v["pages"].as_u64().map(|p| p * 4096)
    {
        case.fail("--json summary: pages/bytes do not fit an 8 MiB program");
    }
    if !v["time_ms"].is_number() || !v["total_ms"].is_number() {
        case.fail("--json summary lacks its times");
    }
    case.go_and_expect_pass(restored);
}

#[test]
fn capture_piped_into_restore() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("memory");
    let pid = case.spawn(&prog, &["16"]);
    case.wait_file("ready", Duration::from_secs(20));
    // Reap the original as soon as the capture kills it, as a shell would.
    let mut original = case.children.pop().expect("child");
    let reaper = std::thread::spawn(move || original.wait());
    let mut capture = Command::new(bin("crak-capture"))
        .arg(pid.to_string())
        .args(["-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crak-capture");
    let pipe = capture.stdout.take().expect("stdout");
    let restore = Command::new(bin("crak-restore"))
        .args(["--detach", "-"])
        .stdin(pipe)
        .output()
        .expect("crak-restore");
    let cap = capture.wait_with_output().expect("wait crak-capture");
    let _ = reaper.join();
    let _ = writeln!(
        case.log,
        "crak-capture -o -: {} {}\ncrak-restore -: {} {} {}",
        cap.status,
        String::from_utf8_lossy(&cap.stderr),
        restore.status,
        String::from_utf8_lossy(&restore.stdout),
        String::from_utf8_lossy(&restore.stderr)
    );
    let restored: i32 = String::from_utf8_lossy(&restore.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if restored > 0 {
        case.pids.push(restored);
    }
    if !cap.status.success() || !restore.status.success() || restored != pid {
        case.fail("crak-capture -o - | crak-restore - must restore the process with its PID");
    }
    case.go_and_expect_pass(restored);
}

#[test]
fn waiting_restore_forwards_signals_and_exits_with_128_plus_signal() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let pid = case.spawn(Path::new("/bin/sleep"), &["100"]);
    std::thread::sleep(Duration::from_millis(300));
    let img = case.capture(pid, &[]);
    let mut cmd = case.restore_cmd(&img, &[]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crak-restore");
    case.pids.push(pid);
    let t0 = Instant::now();
    while is_gone(pid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SIGTERM to crak-restore is passed on to the process it waits for.
    signal(child.id() as i32, libc::SIGTERM);
    let o = child.wait_with_output().expect("wait crak-restore");
    let _ = writeln!(
        case.log,
        "crak-restore: {} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.code() != Some(128 + libc::SIGTERM) {
        case.fail("crak-restore must exit with 128 + the signal that ended the process");
    }
}

/// A captured memory program, for the error-path tests.
fn captured_memory_program() -> (Case, i32, PathBuf) {
    let mut case = Case::new("crak-live-");
    let prog = case.compile("memory");
    let pid = case.spawn(&prog, &["8"]);
    case.wait_file("ready", Duration::from_secs(20));
    let img = case.capture(pid, &[]);
    (case, pid, img)
}

#[test]
fn corrupted_image_is_refused_before_anything_is_created() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    let mut bytes = std::fs::read(&img).expect("image");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = case.path("bad.crak");
    std::fs::write(&bad, &bytes).expect("write bad image");
    let cmd = case.restore_cmd(&bad, &["--detach"]);
    let o = case.run(cmd);
    if o.status.code() != Some(1) {
        case.fail("a corrupted image must be refused with exit status 1");
    }
    if !String::from_utf8_lossy(&o.stderr).contains("invalid image") {
        case.fail("the refusal must say the image is invalid");
    }
    if !is_gone(pid) {
        case.fail("a process was created for a corrupted image");
    }
    // Nothing was lost: the good image still restores.
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    case.go_and_expect_pass(restored);
}

#[test]
fn injected_faults_kill_only_the_half_built_process() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    for point in [
        "restore-in-child",
        "restore-after-fork",
        "restore-mid-mm",
        "restore-before-detach",
    ] {
        let mut cmd = case.restore_cmd(&img, &["--detach"]);
        cmd.env("CRAK_FAULT", point);
        let o = case.run(cmd);
        if o.status.code() != Some(2) {
            case.fail(&format!(
                "CRAK_FAULT={point}: crak-restore must fail with status 2"
            ));
        }
        if !String::from_utf8_lossy(&o.stderr).contains(point) {
            case.fail(&format!(
                "CRAK_FAULT={point}: the error must name the point"
            ));
        }
        if !wait_gone(pid, Duration::from_secs(2)) {
            case.fail(&format!(
                "CRAK_FAULT={point}: the half-built process survived"
            ));
        }
        if !Path::new(&img).exists() {
            case.fail("the image disappeared");
        }
    }
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    case.go_and_expect_pass(restored);
}

#[test]
fn changed_file_is_refused_naming_it() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("files");
    std::fs::write(case.path("input.txt"), "ABCDEFGHIJ").expect("input.txt");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    let img = case.capture(pid, &[]);
    std::fs::write(case.path("input.txt"), "ABCDEFGHIJKL").expect("input.txt");
    let cmd = case.restore_cmd(&img, &["--detach"]);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(2) || !err.contains("input.txt") || !err.contains("changed") {
        case.fail("a changed file must be refused with a message naming it");
    }
    if !is_gone(pid) {
        case.fail("a process was created although a file changed");
    }
}

/// Writes a modified copy of a captured image and checks crak-restore refuses it with exit
/// status `code` and a message containing `needle`, creating no process.
fn refused_after_edit(
    code: i32,
    case: &mut Case,
    pid: i32,
    img: &Path,
    name: &str,
    needle: &str,
    edit: impl FnOnce(&mut crak_format::Image<'_>),
) {
    let data = std::fs::read(img).expect("image");
    let mut image = crak_format::read::parse(&data).expect("parse").image;
    edit(&mut image);
    let bad = case.path(name);
    std::fs::write(&bad, crak_format::write::to_vec(&image).expect("encode")).expect("write");
    let cmd = case.restore_cmd(&bad, &["--detach"]);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(code) || !err.contains(needle) {
        case.fail(&format!(
            "{name}: expected a refusal (status {code}) naming {needle:?}"
        ));
    }
    if !is_gone(pid) {
        case.fail(&format!("{name}: a process was created"));
    }
}

#[test]
fn host_mismatches_are_refused_before_forking() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img) = captured_memory_program();
    use crak_format::record::vma::VmaKind;
    refused_after_edit(2, &mut case, pid, &img, "vdso.crak", "[vdso]", |im| {
        let p = &mut im.processes[0];
        let v = p
            .vmas
            .iter_mut()
            .find(|v| v.kind == VmaKind::Vdso)
            .expect("vdso");
        v.end -= 4096;
    });
    refused_after_edit(
        2,
        &mut case,
        pid,
        &img,
        "xsave.crak",
        "XSAVE features",
        |im| {
            im.header.xsave_features |= 1 << 62;
            im.processes[0].xsaves[0].xstate_bv |= 1 << 62;
        },
    );
    // A failure inside the child (here: /dev/null cannot be opened as a directory) reaches
    // crak-restore through the child's error pipe, naming the fd.
    refused_after_edit(
        2,
        &mut case,
        pid,
        &img,
        "fd.crak",
        "fd 0 (/dev/null): open",
        |im| {
            let f = im.processes[0]
                .fds
                .iter_mut()
                .find(|f| f.fd == 0)
                .expect("fd 0");
            f.open_flags |= libc::O_DIRECTORY as u32;
        },
    );
    // A limit the kernel refuses (RLIMIT_NOFILE above fs.nr_open, even with privilege) fails
    // the restore, naming the limit; the half-built process is killed.
    refused_after_edit(
        2,
        &mut case,
        pid,
        &img,
        "rlimit.crak",
        "RLIMIT_NOFILE",
        |im| {
            let rl = im.processes[0].rlimits.as_mut().expect("RLIMITS");
            let l = rl
                .limits
                .iter_mut()
                .find(|l| l.resource == 7)
                .expect("RLIMIT_NOFILE");
            l.max = 1 << 40;
            l.cur = 1024;
        },
    );
    // Well-framed but semantically invalid: two VMAs overlap (the validator's finding).
    refused_after_edit(
        1,
        &mut case,
        pid,
        &img,
        "overlap.crak",
        "invalid image",
        |im| {
            let p = &mut im.processes[0];
            let i = p.vmas.len() / 2;
            p.vmas[i].end = p.vmas[i + 1].start + 4096;
        },
    );
    // The untouched image still restores.
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    case.go_and_expect_pass(restored);
}

/// A captured threads program (12 threads), for the error-path tests.
fn captured_threads_program() -> (Case, i32, PathBuf, Vec<u32>) {
    let mut case = Case::new("crak-live-");
    let prog = case.compile("threads");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    let img = case.capture(pid, &[]);
    let data = std::fs::read(&img).expect("image");
    let tids = crak_format::read::parse(&data)
        .expect("parse")
        .image
        .processes[0]
        .process
        .tids
        .clone();
    (case, pid, img, tids)
}

#[test]
fn failed_multi_threaded_restore_leaves_no_thread_behind() {
    crak_tests::need_root!();
    let _g = serial();
    let (mut case, pid, img, tids) = captured_threads_program();
    assert_eq!(tids.len(), 12, "the program runs 12 threads");
    // A failure once every thread exists kills them all with the process.
    for point in ["restore-before-detach", "restore-mid-mm"] {
        let mut cmd = case.restore_cmd(&img, &["--detach"]);
        cmd.env("CRAK_FAULT", point);
        let o = case.run(cmd);
        if o.status.code() != Some(2) || !String::from_utf8_lossy(&o.stderr).contains(point) {
            case.fail(&format!(
                "CRAK_FAULT={point}: crak-restore must fail naming it"
            ));
        }
        if let Some(t) = tids.iter().find(|&&t| !is_gone(t as i32)) {
            case.fail(&format!(
                "CRAK_FAULT={point}: thread {t} survived a failed restore"
            ));
        }
    }
    // A thread whose TID is taken (here by this test process) refuses the restore; the threads
    // already made are killed with the process.
    let data = std::fs::read(&img).expect("image");
    let mut parsed = crak_format::read::parse(&data).expect("parse").image;
    let taken = std::process::id();
    let last = parsed.processes[0].process.tids.len() - 1;
    let old = parsed.processes[0].process.tids[last];
    parsed.processes[0].process.tids[last] = taken;
    for t in &mut parsed.processes[0].threads {
        if t.tid == old {
            t.tid = taken;
        }
    }
    for x in &mut parsed.processes[0].xsaves {
        if x.tid == old {
            x.tid = taken;
        }
    }
    for q in &mut parsed.processes[0].sigqueues {
        if q.tid == old {
            q.tid = taken;
        }
    }
    let bad = case.path("taken.crak");
    std::fs::write(&bad, crak_format::write::to_vec(&parsed).expect("encode")).expect("write");
    let cmd = case.restore_cmd(&bad, &["--detach"]);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() || !err.contains(&format!("TID {taken}")) || !err.contains("taken") {
        case.fail("a taken TID must be refused naming it");
    }
    if let Some(t) = tids.iter().find(|&&t| t != old && !is_gone(t as i32)) {
        case.fail(&format!("thread {t} survived a refused restore"));
    }
    // Nothing was lost: the good image still restores, every thread with its TID.
    let restored = case.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    let mut now: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    now.sort_unstable();
    let mut want = tids.clone();
    want.sort_unstable();
    assert_eq!(now, want, "every thread has its TID again");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The checks that run before anything is created take any structurally valid model
    /// without panicking (images are untrusted), and refuse or plan without side effects.
    #[test]
    fn pre_fork_checks_never_panic(image in crak_format::arbitrary::image()) {
        use crak_restore::restore::plan;
        if let Ok(proc) = plan::check_image(&image) {
            let options = plan::Options { new_pid: true, ..Default::default() };
            let _ = plan::make_plan(&image, proc, &options);
        }
        // The same for trees: the per-process checks, the shared pipes, sockets and memory.
        let options = plan::Options::default();
        let _ = crak_restore::restore::tree::family(&image, &options);
    }
}

#[test]
fn threads_counters_condvar_sleep_and_per_thread_state() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm("threads", &[], |_| {}, |_| {});
}

/// A log of consecutive numbers written by several threads in turn, under a lock.
const PY_THREADS: &str = "\
import threading, time
lock = threading.Lock()
n = [0]
def work():
    while True:
        with lock:
            with open('py.log', 'a') as f:
                f.write(f'{n[0]}\\n')
            n[0] += 1
        time.sleep(0.005)
for _ in range(4):
    threading.Thread(target=work, daemon=True).start()
threading.Event().wait()
";

#[test]
fn python_threads() {
    crak_tests::need_root!();
    let _g = serial();
    interpreter_loop("python3", &["-c", PY_THREADS], "py.log", |_| {});
}

/// The same with Rust's std threads, a Mutex and a channel.
const RUST_THREADS: &str = r#"
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
fn main() {
    let log = Arc::new(Mutex::new((0u64, std::fs::OpenOptions::new().create(true).append(true).open("rs.log").unwrap())));
    let (tx, rx) = mpsc::channel::<u64>();
    for _ in 0..4 {
        let log = Arc::clone(&log);
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let n = {
                let mut g = log.lock().unwrap();
                let n = g.0;
                writeln!(g.1, "{n}").unwrap();
                g.0 += 1;
                n
            };
            tx.send(n).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        });
    }
    let mut last = None;
    for n in rx {
        if let Some(l) = last {
            assert!(n > l || n + 8 > l, "out of order");
        }
        last = Some(n);
    }
}
"#;

#[test]
fn rust_std_threads() {
    crak_tests::need_root!();
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("threads.rs");
    let exe = dir.path().join("rust-threads");
    std::fs::write(&src, RUST_THREADS).expect("write source");
    let o = Command::new("rustc")
        .args(["-O", "--edition", "2021", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        o.status.success(),
        "rustc failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    interpreter_loop(exe.to_str().expect("utf-8 path"), &[], "rs.log", |_| {});
}

/// The children of `pid`, from `/proc/PID/task/PID/children`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn ppid_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(") ")
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn process_tree_pipeline_shared_memory_groups_and_sessions() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("tree");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let kids = children_of(pid);
    if kids.len() != 4 {
        case.fail(&format!("the parent has children {kids:?}, expected 4"));
    }
    let zombie = |k: i32| {
        std::fs::read_to_string(format!("/proc/{k}/stat"))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
    };
    let zombies: Vec<i32> = kids.iter().copied().filter(|&k| zombie(k)).collect();
    if zombies.len() != 1 {
        case.fail(&format!(
            "zombies among the children: {zombies:?}, expected one"
        ));
    }
    let before = Views::of_busy(pid);
    let kid_views: Vec<Views> = kids.iter().map(|&k| Views::of_busy(k)).collect();
    let img = case.capture(pid, &[]);
    for &k in &kids {
        if !wait_gone(k, Duration::from_secs(5)) {
            case.fail(&format!("child {k} survived the capture"));
        }
    }
    let restored = case.restore_detached(&img, &[]);
    case.pids.extend(kids.iter().copied());
    assert_eq!(restored, pid);
    if children_of(pid) != kids {
        case.fail(&format!(
            "children after restore {:?}, before {kids:?}",
            children_of(pid)
        ));
    }
    for (&k, v) in kids.iter().zip(&kid_views) {
        if ppid_of(k) != Some(pid) {
            case.fail(&format!("child {k} has parent {:?}", ppid_of(k)));
        }
        if zombies.contains(&k) {
            if !zombie(k) {
                case.fail(&format!("child {k} is no zombie after the restore"));
            }
        } else {
            v.assert_same(&Views::of_busy(k), &case);
        }
    }
    before.assert_same(&Views::of_busy(restored), &case);
    std::thread::sleep(Duration::from_millis(300));
    case.go_and_expect_pass(restored);
}

/// `--new-pid` on a tree whose PIDs are all taken (the original keeps running): every process,
/// the zombie included, gets a new PID, and the tree keeps its shape, group, session and wait
/// statuses, which the program checks with the PIDs it sees after the restore.
#[test]
fn process_tree_restored_under_new_pids() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("family");
    let pid = case.spawn(&prog, &[]);
    case.wait_file("ready", Duration::from_secs(20));
    let kids = children_of(pid);
    if kids.len() != 4 {
        case.fail(&format!("the parent has children {kids:?}, expected 4"));
    }
    case.pids.extend(kids.iter().copied());
    let img = case.capture(pid, &["--leave-running"]);
    // Every PID of the image is taken: without --new-pid the restore is refused, and nothing
    // of it is left behind.
    let cmd = case.restore_cmd(&img, &["--detach"]);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() || !err.contains("--new-pid") {
        case.fail("a restore onto taken PIDs was not refused with a hint to --new-pid");
    }
    if children_of(pid) != kids {
        case.fail("the refused restore changed the original tree");
    }
    let restored = case.restore_detached(&img, &["--new-pid"]);
    let new_kids = children_of(restored);
    case.pids.extend(new_kids.iter().copied());
    if restored == pid || new_kids.len() != 4 || new_kids.iter().any(|k| kids.contains(k)) {
        case.fail(&format!(
            "restored as {restored} with children {new_kids:?}; the original is {pid} with {kids:?}"
        ));
    }
    for &k in &new_kids {
        if ppid_of(k) != Some(restored) {
            case.fail(&format!("child {k} has parent {:?}", ppid_of(k)));
        }
    }
    if children_of(pid) != kids {
        case.fail("the original tree changed");
    }
    case.go_and_expect_pass(restored);
}

/// Reads numbered lines from `r` while they continue `*last`; returns how many it read before
/// the end of file.
fn read_numbered(r: &mut impl std::io::BufRead, last: &mut i64, case: &Case) -> usize {
    let mut n = 0;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return n,
            Ok(_) => {}
            Err(e) => case.fail(&format!("reading the pipe: {e}")),
        }
        let v: i64 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| case.fail(&format!("not a number: {line:?}")));
        if v != *last + 1 {
            case.fail(&format!("line {v} follows line {}", *last));
        }
        *last = v;
        n += 1;
    }
}

/// A program writing numbered lines into a pipe the test reads: captured (killed), the old
/// pipe drained to its end, then restored with `--external-pipe 1` onto a new pipe of
/// crak-restore's: the lines go on from the next number to the last, none lost or repeated.
#[test]
fn external_pipe_reconnected_to_the_restorer() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new("crak-live-");
    let prog = case.compile("lines");
    let mut child = Command::new(&prog)
        .current_dir(case.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lines");
    let pid = child.id() as i32;
    case.pids.push(pid);
    let mut old = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut last = -1i64;
    let mut line = String::new();
    while last < 100 {
        line.clear();
        if std::io::BufRead::read_line(&mut old, &mut line).unwrap_or(0) == 0 {
            case.fail("the program ended early");
        }
        last += 1;
        if line.trim() != last.to_string() {
            case.fail(&format!("line {line:?}, expected {last}"));
        }
    }
    let img = case.capture(pid, &[]);
    // What the old pipe held at the kill is still there for its reader.
    read_numbered(&mut old, &mut last, &case);
    let _ = child.wait();
    let mut cmd = case.restore_cmd(&img, &["--external-pipe", "1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut r = cmd.spawn().expect("spawn crak-restore");
    let mut new = std::io::BufReader::new(r.stdout.take().expect("stdout"));
    let got = read_numbered(&mut new, &mut last, &case);
    let status = r.wait().expect("wait crak-restore");
    if !status.success() || last != 2999 || got == 0 {
        let mut err = String::new();
        if let Some(mut e) = r.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        case.fail(&format!(
            "crak-restore {status}, {got} lines after the restore ending at {last}: {err}"
        ));
    }
}

#[test]
fn shell_pipeline_checkpointed_midway() {
    crak_tests::need_root!();
    let _g = serial();
    const PIPELINE: &str = "seq 1 30000000 | gzip -1 | wc -c";
    let o = Command::new("bash")
        .args(["-c", PIPELINE])
        .output()
        .expect("run the pipeline");
    let expected = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        !expected.is_empty(),
        "the uninterrupted pipeline printed nothing"
    );
    let mut case = Case::new("crak-live-");
    let script = format!("{PIPELINE} > wc.out");
    let pid = case.spawn(Path::new("bash"), &["-c", &script]);
    let t0 = Instant::now();
    while children_of(pid).len() < 3 {
        if t0.elapsed() > Duration::from_secs(10) {
            case.fail("the pipeline never started");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(700));
    let kids = children_of(pid);
    let img = case.capture(pid, &[]);
    for &k in &kids {
        if !wait_gone(k, Duration::from_secs(5)) {
            case.fail(&format!("pipeline process {k} survived the capture"));
        }
    }
    if std::fs::metadata(case.path("wc.out")).map_or(0, |m| m.len()) != 0 {
        case.fail("the pipeline had finished before the capture");
    }
    let restored = case.restore_detached(&img, &[]);
    case.pids.extend(kids.iter().copied());
    assert_eq!(restored, pid);
    let t0 = Instant::now();
    let got = loop {
        let s = std::fs::read_to_string(case.path("wc.out")).unwrap_or_default();
        if s.ends_with('\n') {
            break s.trim().to_string();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            case.fail("the restored pipeline did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if got != expected {
        case.fail(&format!(
            "the restored pipeline printed {got}, an uninterrupted run {expected}"
        ));
    }
}

#[test]
fn event_loop_epoll_eventfd_timerfd_signalfd() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm(
        "events",
        &[],
        |_| {},
        |pid| {
            // Arrives through the signalfd of the restored process.
            signal(pid, libc::SIGUSR1);
        },
    );
}

#[test]
fn unix_socket_pairs_with_queued_data_in_a_tree() {
    crak_tests::need_root!();
    let _g = serial();
    zdtm("sockets", &[], |_| {}, |_| {});
}
