//! Live tests of forked snapshots (`crak-capture --leave-running`), the periodic supervisor
//! (`--every`/`--keep`) and signed captures (`--sign`).
//!
//! The test program (`SNAPMEM_C`, compiled with `cc`) sweeps a generation number through every
//! page of a 16 MiB region without pause, logs each finished sweep (with `getpid()`) to an
//! append-only file, keeps a `MADV_DONTFORK`, a `MADV_WIPEONFORK` and a shared anonymous
//! region with fixed contents, and has a child of its own. The tests check that:
//!
//! - the image holds one point in time although the program rewrote its memory while the image
//!   was being written (the pages hold generation g or g+1, g+1 only as a prefix, where g is
//!   the last finished sweep recorded in the same image);
//! - the three special regions are in the image with their contents, and the restored program
//!   finds them intact;
//! - the snapshot child never ran the program (no log line from another pid, no generation
//!   twice), and the program saw no `SIGCHLD`, no extra child or wait status: its own child is
//!   still the only one, and reaping it gives exactly that child's status, then `ECHILD`;
//! - the supervisor rotates (`--every 1s --keep 2`: two images left, the newest valid and
//!   restorable) and stops cleanly on `SIGTERM` and when the program exits, leaving no
//!   temporary file.
//!
//! Needs root and the workspace binaries (`cargo build --workspace --bins` first).

use crak_tests::{bin, is_gone, is_root, serial, wait_gone, Scratch};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SNAPMEM_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SWEEP_PAGES 4096
#define SMALL_PAGES 16

static volatile uint64_t done_gen;
static volatile sig_atomic_t go_original, go_restored, sigchld;
static volatile uint64_t *sweep;
static unsigned char *dontfork, *wipe, *shared;
static pid_t kid;

static void on_usr2(int s) { (void)s; go_original = 1; }
static void on_usr1(int s) { (void)s; go_restored = 1; }
static void on_chld(int s) { (void)s; sigchld++; }

static void write_file(const char *name, const char *text) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(3);
    if (write(fd, text, strlen(text)) < 0) _exit(3);
    close(fd);
    rename(tmp, name);
}

static void result(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    write_file("result", buf);
    exit(0);
}

static unsigned char *region(int flags, unsigned char base) {
    unsigned char *p = mmap(0, SMALL_PAGES * PAGE, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) _exit(4);
    for (int i = 0; i < SMALL_PAGES; i++) memset(p + i * PAGE, base + i, PAGE);
    return p;
}

static const char *check_regions(void) {
    struct { unsigned char *p; unsigned char base; const char *name; } r[3] = {
        {dontfork, 'D', "MADV_DONTFORK"}, {wipe, 'W', "MADV_WIPEONFORK"}, {shared, 'S', "shared"}};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < SMALL_PAGES; i++)
            for (int j = 0; j < PAGE; j++)
                if (r[k].p[i * PAGE + j] != (unsigned char)(r[k].base + i)) return r[k].name;
    return 0;
}

static void original_checks(void) {
    int st;
    const char *bad = check_regions();
    if (bad) result("FAIL the %s region changed\n", bad);
    if (sigchld != 0) result("FAIL %d SIGCHLD before our own child ended\n", (int)sigchld);
    pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
    if (w != 0) result("FAIL waitpid(-1, WNOHANG|__WALL) gave %d (errno %d) while our child runs\n", (int)w, errno);
    kill(kid, SIGTERM);
    w = waitpid(-1, &st, __WALL);
    if (w != kid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM)
        result("FAIL waitpid(-1) gave %d status %#x, not our child %d killed by SIGTERM\n", (int)w, st, (int)kid);
    w = waitpid(-1, &st, WNOHANG | __WALL);
    if (w != -1 || errno != ECHILD) result("FAIL a second child to reap: %d (errno %d)\n", (int)w, errno);
    for (int i = 0; i < 100 && sigchld == 0; i++) usleep(1000);
    if (sigchld != 1) result("FAIL %d SIGCHLD for one child\n", (int)sigchld);
    result("PASS original %llu\n", (unsigned long long)done_gen);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int log = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log < 0) return 2;
    sweep = mmap(0, SWEEP_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sweep == MAP_FAILED) return 2;
    dontfork = region(MAP_PRIVATE, 'D');
    wipe = region(MAP_PRIVATE, 'W');
    shared = region(MAP_SHARED, 'S');
    if (madvise(dontfork, SMALL_PAGES * PAGE, MADV_DONTFORK)) return 2;
    if (madvise(wipe, SMALL_PAGES * PAGE, MADV_WIPEONFORK)) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr2; sigaction(SIGUSR2, &sa, 0);
    sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_chld; sigaction(SIGCHLD, &sa, 0);
    kid = fork();
    if (kid == 0) { for (;;) pause(); }
    char ready[256];
    snprintf(ready, sizeof ready, "READY %lx %lx %lx %lx %lx %d\n", (unsigned long)sweep,
             (unsigned long)dontfork, (unsigned long)wipe, (unsigned long)shared,
             (unsigned long)&done_gen, (int)kid);
    write_file("ready", ready);
    uint64_t gen = done_gen;
    for (;;) {
        if (go_original) original_checks();
        if (go_restored) {
            const char *bad = check_regions();
            if (bad) result("FAIL restored: the %s region differs\n", bad);
            result("PASS restored %llu\n", (unsigned long long)done_gen);
        }
        gen++;
        for (int i = 0; i < SWEEP_PAGES; i++) sweep[i * (PAGE / 8)] = gen;
        done_gen = gen;
        char line[64];
        int n = snprintf(line, sizeof line, "%ld %llu\n", (long)syscall(SYS_getpid), (unsigned long long)gen);
        if (write(log, line, n) != n) return 5;
        usleep(200);
    }
}
"#;

const PAGE: u64 = 4096;
const SWEEP_PAGES: u64 = 4096;
const SMALL_PAGES: u64 = 16;

/// The scratch directory of one test ([`Scratch`]) and what is particular to this program.
struct Case(Scratch);

impl std::ops::Deref for Case {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl std::ops::DerefMut for Case {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.0
    }
}

/// What the program said when ready.
struct Ready {
    sweep: u64,
    dontfork: u64,
    wipe: u64,
    shared: u64,
    done_gen: u64,
    kid: i32,
}

impl Case {
    fn new() -> Case {
        Case(Scratch::new("crak-snapshot-"))
    }

    fn compile(&mut self) -> PathBuf {
        let src = self.path("snapmem.c");
        std::fs::write(&src, SNAPMEM_C).expect("write snapmem.c");
        let exe = self.path("snapmem");
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("run cc");
        if !o.status.success() {
            self.fail(&format!("cc: {}", String::from_utf8_lossy(&o.stderr)));
        }
        exe
    }

    /// Starts the program in the scratch directory; waits for READY.
    fn start(&mut self) -> (i32, Ready) {
        let exe = self.compile();
        let child = Command::new(&exe)
            .arg(self.path("gen.log"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn snapmem");
        let pid = child.id() as i32;
        let _ = writeln!(self.log, "spawned snapmem as {pid}");
        self.children.push(child);
        let text = self.wait_file("ready", Duration::from_secs(10));
        let w: Vec<&str> = text.split_whitespace().collect();
        let hex = |i: usize| u64::from_str_radix(w.get(i).copied().unwrap_or(""), 16);
        let (Ok(sweep), Ok(dontfork), Ok(wipe), Ok(shared), Ok(done_gen), Some(Ok(kid))) = (
            hex(1),
            hex(2),
            hex(3),
            hex(4),
            hex(5),
            w.get(6).map(|s| s.parse()),
        ) else {
            self.fail(&format!("bad READY line {text:?}"));
        };
        // Its child (and, after a restore, the restored one) is killed at the end.
        self.pids.push(kid);
        // Let it sweep for a while.
        std::thread::sleep(Duration::from_millis(200));
        (
            pid,
            Ready {
                sweep,
                dontfork,
                wipe,
                shared,
                done_gen,
                kid,
            },
        )
    }

    /// Reaps the program after it exited by itself.
    fn reap(&mut self, pid: i32) {
        if let Some(i) = self.children.iter().position(|c| c.id() as i32 == pid) {
            let mut c = self.children.remove(i);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
            self.fail(&format!("process {pid} did not exit"));
        }
    }

    fn kill(&mut self, pid: i32) {
        let _ = crak_restore::sys::process::kill(pid, libc::SIGKILL);
        self.reap(pid);
        if !wait_gone(pid, Duration::from_secs(5)) {
            self.fail(&format!("process {pid} is still there"));
        }
    }

    /// Sends `sig` and waits for the program's verdict (the `result` file, then removed).
    fn verdict(&mut self, pid: i32, sig: i32) -> String {
        let _ = std::fs::remove_file(self.path("result"));
        let _ = crak_restore::sys::process::kill(pid, sig);
        let r = self.wait_file("result", Duration::from_secs(30));
        let _ = std::fs::remove_file(self.path("result"));
        if !r.starts_with("PASS") {
            self.fail(&format!("program {pid} reported: {}", r.trim()));
        }
        r
    }

    /// Puts the append-only log back as the image saw it (size and modification time): the
    /// original kept appending after the capture, and a restore refuses a changed file.
    fn rewind_log(&self, img: &Path) {
        let data = std::fs::read(img).expect("read image");
        let parsed = crak_format::parse(&data).expect("the image parses");
        let fd = parsed
            .image
            .processes
            .iter()
            .flat_map(|p| &p.fds)
            .find(|f| f.path.as_bytes().ends_with(b"/gen.log"))
            .unwrap_or_else(|| self.fail("gen.log is not among the image's fds"));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path("gen.log"))
            .expect("open gen.log");
        f.set_len(fd.size).expect("truncate gen.log");
        let mtime = std::time::UNIX_EPOCH + Duration::from_nanos(fd.mtime_ns.max(0) as u64);
        f.set_modified(mtime).expect("set the mtime of gen.log");
    }

    /// `crak-restore --detach IMAGE` (after [`Case::rewind_log`]); returns the restored pid.
    fn restore(&mut self, img: &Path) -> i32 {
        self.rewind_log(img);
        self.restore_detached(img, &[])
    }
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Every process whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if status_field(p, "PPid:") == pid.to_string() {
            out.push(p);
        }
    }
    out.sort_unstable();
    out
}

/// The pages of one process of an image: address → page bytes (zero pages included).
struct Mem {
    pages: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl Mem {
    fn of(data: &[u8], pid: i32) -> Mem {
        let parsed = crak_format::parse(data).expect("the image parses");
        let p = parsed
            .image
            .process(pid as u32)
            .expect("the process is in the image");
        let mut pages = std::collections::BTreeMap::new();
        for run in &p.pages {
            for (i, chunk) in run.data.as_bytes().chunks(PAGE as usize).enumerate() {
                pages.insert(run.addr + i as u64 * PAGE, chunk.to_vec());
            }
        }
        for z in &p.zero_runs {
            for i in 0..z.nr_pages {
                pages.insert(z.addr + i * PAGE, vec![0; PAGE as usize]);
            }
        }
        Mem { pages }
    }

    fn page(&self, addr: u64) -> Option<&[u8]> {
        self.pages.get(&(addr & !(PAGE - 1))).map(Vec::as_slice)
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let off = (addr % PAGE) as usize;
        let b = self.page(addr)?.get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root");
        return true;
    }
    false
}

#[test]
fn forked_snapshot_is_one_point_in_time_and_invisible_to_the_target() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, ready) = case.start();
    let img = case.path("image.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&img)
        .args(["--leave-running", "--json"]);
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("crak-capture --leave-running failed");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(o.stderr.trim_ascii()).unwrap_or_else(|_| case.fail("no JSON"));
    if summary["forked"] != true || summary["left_running"] != true {
        case.fail("the capture did not use a forked snapshot");
    }
    // DONTFORK + WIPEONFORK + shared: 48 pages read while frozen.
    if summary["pre_read_bytes"] != 3 * SMALL_PAGES * PAGE {
        case.fail("the pre-read regions are not the three special ones");
    }

    // The target runs on, untraced, with its own child as its only child.
    std::thread::sleep(Duration::from_millis(100));
    if status_field(pid, "TracerPid:") != "0" || is_gone(pid) {
        case.fail("the target is traced or gone after the capture");
    }
    if children_of(pid) != vec![ready.kid] {
        case.fail(&format!(
            "the target's children are {:?}, not just its own {}",
            children_of(pid),
            ready.kid
        ));
    }
    if !children_of(ready.kid).is_empty() {
        case.fail("the program's child has children after the capture");
    }
    let tl = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    if tl.split_whitespace().collect::<Vec<_>>() != vec![ready.kid.to_string()] {
        case.fail(&format!("task/{pid}/children lists {tl:?}"));
    }

    // The image is one point in time.
    let data = std::fs::read(&img).expect("read image");
    let mem = Mem::of(&data, pid);
    let g = mem
        .u64_at(ready.done_gen)
        .unwrap_or_else(|| case.fail("done_gen is not in the image"));
    if g < 2 {
        case.fail(&format!(
            "the image's generation is {g}: the program had not run"
        ));
    }
    let mut seen_g = false;
    for i in 0..SWEEP_PAGES {
        let v = mem
            .u64_at(ready.sweep + i * PAGE)
            .unwrap_or_else(|| case.fail(&format!("sweep page {i} is not in the image")));
        // g+1 for a prefix (the sweep in progress at the freeze), g after it.
        let ok = v == g || (v == g + 1 && !seen_g);
        if !ok {
            case.fail(&format!(
                "sweep page {i} holds generation {v}; the image's last finished sweep is {g}: \
                 the pages are not from one point in time"
            ));
        }
        seen_g |= v == g;
    }
    for (base, start, what) in [
        (b'D', ready.dontfork, "MADV_DONTFORK"),
        (b'W', ready.wipe, "MADV_WIPEONFORK"),
        (b'S', ready.shared, "shared anonymous"),
    ] {
        for i in 0..SMALL_PAGES {
            let want = vec![base + i as u8; PAGE as usize];
            if mem.page(start + i * PAGE) != Some(&want[..]) {
                case.fail(&format!(
                    "page {i} of the {what} region is wrong in the image"
                ));
            }
        }
    }

    // The target is unaffected: its own checks of children, SIGCHLD and wait statuses.
    let r = case.verdict(pid, libc::SIGUSR2);
    let _ = writeln!(case.log, "original: {}", r.trim());
    case.reap(pid);

    // The snapshot child never ran the program: every log line is the target's, each
    // generation once and in order.
    let log = std::fs::read_to_string(case.path("gen.log")).expect("gen.log");
    let mut want = 1u64;
    for line in log.lines() {
        let (p, gen) = line.split_once(' ').unwrap_or(("", ""));
        if p != pid.to_string() || gen != want.to_string() {
            case.fail(&format!(
                "log line {line:?}: expected \"{pid} {want}\" (a line by another process or a \
                 generation twice means the snapshot child ran)"
            ));
        }
        want += 1;
    }
    if want <= g + 1 {
        case.fail("the log ends before the image's generation");
    }

    // Restored, the program finds its special regions intact.
    let rpid = case.restore(&img);
    let r = case.verdict(rpid, libc::SIGUSR1);
    let restored_gen: u64 = r
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if restored_gen < g {
        case.fail(&format!(
            "the restored program is at generation {restored_gen}, before the image's {g}"
        ));
    }
    case.kill(rpid);
}

#[test]
fn leave_running_without_snapshot_still_copies_while_frozen() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, ready) = case.start();
    let img = case.path("frozen.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string()).arg("-o").arg(&img).args([
        "--leave-running",
        "--no-snapshot",
        "--json",
    ]);
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("crak-capture --no-snapshot failed");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(o.stderr.trim_ascii()).unwrap_or_else(|_| case.fail("no JSON"));
    if summary["forked"] != false {
        case.fail("--no-snapshot forked");
    }
    let data = std::fs::read(&img).expect("read image");
    let mem = Mem::of(&data, pid);
    let g = mem.u64_at(ready.done_gen).unwrap_or(0);
    for i in 0..SWEEP_PAGES {
        let v = mem.u64_at(ready.sweep + i * PAGE).unwrap_or(0);
        if v != g && v != g + 1 {
            case.fail(&format!("sweep page {i}: generation {v}, image {g}"));
        }
    }
    if children_of(pid) != vec![ready.kid] {
        case.fail("the target's children changed");
    }
    case.verdict(pid, libc::SIGUSR2);
    case.reap(pid);
}

#[test]
fn signed_forked_capture_verifies() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, _) = case.start();
    let key = crak_format::auth::SecretKey::from_seed([7u8; 32]);
    std::fs::write(case.path("key"), key.to_hex()).expect("write key");
    let img = case.path("signed.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&img)
        .arg("--leave-running")
        .arg("--sign")
        .arg(case.path("key"));
    let o = case.run(cmd);
    if !o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("signed") {
        case.fail("crak-capture --sign failed");
    }
    let data = std::fs::read(&img).expect("read image");
    if let Err(e) = crak_format::auth::verify(&data, &key.public()) {
        case.fail(&format!("the signature does not verify: {e}"));
    }
    let other = crak_format::auth::SecretKey::from_seed([8u8; 32]);
    if crak_format::auth::verify(&data, &other.public()).is_ok() {
        case.fail("the image verifies with another key");
    }
    // crak-dump agrees.
    std::fs::write(case.path("key.pub"), key.public().to_hex()).expect("write key.pub");
    let mut cmd = Command::new(bin("crak-dump"));
    cmd.arg("validate")
        .arg("--verify")
        .arg(case.path("key.pub"))
        .arg(&img);
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("crak-dump validate --verify refused the signed image");
    }
    // A bad key file is refused before the process is touched.
    std::fs::write(case.path("bad"), "not a key\n").expect("write bad key");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(case.path("never.crak"))
        .arg("--sign")
        .arg(case.path("bad"));
    let o = case.run(cmd);
    if o.status.code() != Some(2) || case.path("never.crak").exists() || is_gone(pid) {
        case.fail("a bad key file did not refuse the capture cleanly");
    }
    case.kill(pid);
}

#[test]
fn a_refused_fork_falls_back_to_a_frozen_copy() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, ready) = case.start();
    let img = case.path("fallback.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.env("CRAK_FAULT", "snapshot-refused")
        .arg(pid.to_string())
        .arg("-o")
        .arg(&img)
        .args(["--leave-running", "--json"]);
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("crak-capture failed instead of falling back");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(o.stderr.trim_ascii()).unwrap_or_else(|_| case.fail("no JSON"));
    let warned = summary["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w.as_str().unwrap_or("").contains("refused"))
    });
    if summary["forked"] != false || !warned {
        case.fail("no fallback with a warning");
    }
    let data = std::fs::read(&img).expect("read image");
    let mem = Mem::of(&data, pid);
    let g = mem.u64_at(ready.done_gen).unwrap_or(0);
    if (0..SWEEP_PAGES).any(|i| {
        let v = mem.u64_at(ready.sweep + i * PAGE).unwrap_or(0);
        v != g && v != g + 1
    }) {
        case.fail("the frozen copy is not one point in time");
    }
    case.verdict(pid, libc::SIGUSR2);
    case.reap(pid);
}

#[test]
fn a_capture_failing_after_the_fork_leaves_no_child_and_no_image() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, ready) = case.start();
    let img = case.path("never.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.env("CRAK_FAULT", "mid-pages")
        .arg(pid.to_string())
        .arg("-o")
        .arg(&img)
        .arg("--leave-running");
    let o = case.run(cmd);
    if o.status.code() != Some(2) {
        case.fail("the injected fault did not fail the capture");
    }
    let leftovers: Vec<String> = std::fs::read_dir(case.dir.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("never.crak"))
        .collect();
    if !leftovers.is_empty() {
        case.fail(&format!("left behind: {leftovers:?}"));
    }
    if children_of(pid) != vec![ready.kid] || !children_of(ready.kid).is_empty() {
        case.fail("a snapshot child was left behind");
    }
    if status_field(pid, "TracerPid:") != "0" {
        case.fail("the target is still traced");
    }
    // Its own children and wait statuses are as they were.
    case.verdict(pid, libc::SIGUSR2);
    case.reap(pid);
}

/// Files in `dir`: (images of `pid`, everything else).
fn dir_listing(dir: &Path, pid: i32) -> (Vec<String>, Vec<String>) {
    let mut images = Vec::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if crak_restore::capture::supervisor::is_image_name(&n, pid) {
            images.push(n);
        } else {
            other.push(n);
        }
    }
    images.sort();
    other.sort();
    (images, other)
}

fn start_supervisor(case: &mut Case, pid: i32, dir: &Path, keep: &str) -> Child {
    let err = std::fs::File::create(case.path("supervisor.err")).expect("supervisor.err");
    let child = Command::new(bin("crak-capture"))
        .arg(pid.to_string())
        .args(["--every", "1s", "--keep", keep, "-o"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn crak-capture --every");
    let _ = writeln!(
        case.log,
        "supervisor {} --every 1s --keep {keep}",
        child.id()
    );
    child
}

fn wait_exit(case: &mut Case, child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            let err = std::fs::read_to_string(case.path("supervisor.err")).unwrap_or_default();
            let _ = writeln!(case.log, "supervisor exited {st}:\n{err}");
            return st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(case.path("supervisor.err")).unwrap_or_default();
            case.fail(&format!("the supervisor did not stop:\n{err}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn supervisor_rotates_and_stops_on_sigterm() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, ready) = case.start();
    let dir = case.path("images");
    let mut sup = start_supervisor(&mut case, pid, &dir, "2");
    std::thread::sleep(Duration::from_millis(4500));
    let _ = crak_restore::sys::process::kill(sup.id() as i32, libc::SIGTERM);
    let st = wait_exit(&mut case, &mut sup, Duration::from_secs(20));
    let err = std::fs::read_to_string(case.path("supervisor.err")).unwrap_or_default();
    if !st.success() || !err.contains("stopped by SIGTERM") {
        case.fail("the supervisor did not stop cleanly on SIGTERM");
    }
    let written = err.lines().filter(|l| l.contains("captured pid")).count();
    if written < 4 {
        case.fail(&format!("{written} captures in 4.5 s with --every 1s"));
    }
    let (images, other) = dir_listing(&dir, pid);
    if images.len() != 2 || !other.is_empty() {
        case.fail(&format!(
            "--keep 2 left images {images:?} and other files {other:?}"
        ));
    }
    if is_gone(pid) || status_field(pid, "TracerPid:") != "0" {
        case.fail("the target is gone or traced");
    }
    // The newest is valid and restorable.
    let newest = dir.join(images.last().expect("an image"));
    let mut cmd = Command::new(bin("crak-dump"));
    cmd.arg("validate").arg(&newest);
    let o = case.run(cmd);
    if !o.status.success() {
        case.fail("the newest image does not validate");
    }
    // The image holds the tree (the program and its child): both PIDs must be free.
    case.kill(pid);
    let _ = crak_restore::sys::process::kill(ready.kid, libc::SIGKILL);
    if !wait_gone(ready.kid, Duration::from_secs(5)) {
        case.fail("the program's child is still there");
    }
    let rpid = case.restore(&newest);
    case.verdict(rpid, libc::SIGUSR1);
    case.kill(rpid);
}

#[test]
fn supervisor_stops_when_the_target_exits() {
    if skip() {
        return;
    }
    let _g = serial();
    let mut case = Case::new();
    let (pid, _) = case.start();
    let dir = case.path("images");
    let mut sup = start_supervisor(&mut case, pid, &dir, "3");
    std::thread::sleep(Duration::from_millis(1500));
    case.kill(pid);
    let t0 = Instant::now();
    let st = wait_exit(&mut case, &mut sup, Duration::from_secs(10));
    let err = std::fs::read_to_string(case.path("supervisor.err")).unwrap_or_default();
    if !st.success() || !err.contains(&format!("process {pid} exited")) {
        case.fail("the supervisor did not stop cleanly when the target exited");
    }
    if t0.elapsed() > Duration::from_secs(3) {
        case.fail("the supervisor took more than 3 s to notice the exit");
    }
    let (images, other) = dir_listing(&dir, pid);
    if images.is_empty() || images.len() > 3 || !other.is_empty() {
        case.fail(&format!("left images {images:?} and other files {other:?}"));
    }
}
