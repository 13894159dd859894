//! `crak-dump edit`, live: a small C program (below, compiled with `cc -no-pie` so that `nm`
//! gives its globals' addresses) is captured with the real `crak-capture`, the image is edited
//! with the real `crak-dump edit`, restored with `crak-restore --detach`, and the program, told
//! to go (SIGUSR2), reports what it sees: its counter, a message, its pid, cwd and environment,
//! the contents of its open file. `crak-dump diff --json` shows what each edit changed, and a
//! refused edit creates no output file.
//!
//! Like tests/live.rs these need root and run one at a time.

use crak_tests::{bin, serial, signal, Scratch};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The edited program. It counts in `counter` every 5 ms until SIGUSR2, then writes `report`
/// (one `key=value` per line) and `result` (PASS). `jumped` is where `--set-reg rip=` sends it.
const PROGRAM: &str = r#"
#include "common.h"
#include <sys/stat.h>

volatile long counter = 1000;
char message[16] = "original";

__attribute__((force_align_arg_pointer, noreturn, used)) void jumped(void) {
    char buf[64];
    snprintf(buf, sizeof buf, "JUMPED counter=%ld\n", counter);
    write_file("jumped", buf);
    _exit(0);
}

int main(void) {
    int in = open("old/data.txt", O_RDONLY);
    if (in != 3) fail("data.txt is fd %d", in);
    int out = open("out.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out != 4) fail("out.txt is fd %d", out);
    if (write(out, "before\n", 7) != 7) fail("write");
    if (getenv("CRAK_OPMASK") && __builtin_cpu_supports("avx512f"))
        __asm__ volatile(".byte 0xc5, 0xf4, 0x46, 0xc9"); /* kxnorw k1, k1, k1 */
    ready();
    struct timespec d = {0, 5 * 1000 * 1000};
    while (!go) {
        counter++;
        nanosleep(&d, NULL);
    }
    char data[64] = {0};
    ssize_t n = read(in, data, sizeof data - 1);
    if (n < 0) snprintf(data, sizeof data, "read error %d", errno);
    for (char *c = data; *c; c++) if (*c == '\n') *c = ' ';
    int w = write(out, "after\n", 6) == 6;
    char cwd[256] = "";
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
    const char *env = getenv("CRAK_EDIT");
    struct timespec ts = {0, 0};
    int clock_ok = clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0;
    int time_ok = time(NULL) > 1600000000;
    /* Wall-clock readings through glibc's vDSO pointers, resolved at start. */
    struct timespec rt = {0, 0};
    struct timeval tv = {0, 0};
    long rt_ok = clock_gettime(CLOCK_REALTIME, &rt) == 0;
    long tod_ok = gettimeofday(&tv, NULL) == 0;
    struct timespec res = {0, 0};
    long res_ok = clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0;
    char rep[1024];
    snprintf(rep, sizeof rep,
             "counter=%ld\nmessage=%s\npid=%d\ncwd=%s\nenv=%s\nfd3=%s\nwrite4=%d\n"
             "clock=%d\ntime=%d\nrealtime=%ld\ngettimeofday=%ld\nnow=%ld\ngetres=%ld\n",
             counter, message, getpid(), cwd, env ? env : "(unset)", data, w, clock_ok,
             time_ok, rt_ok ? (long)rt.tv_sec : -1L, tod_ok ? (long)tv.tv_sec : -1L,
             (long)time(NULL), res_ok);
    write_file("report", rep);
    pass();
}
"#;

/// One test: the shared scratch harness ([`Scratch`]) and the compiled program.
struct Case {
    s: Scratch,
    prog: PathBuf,
}

impl std::ops::Deref for Case {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.s
    }
}

impl std::ops::DerefMut for Case {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.s
    }
}

impl Case {
    /// Compiles the program and prepares `old/data.txt`.
    fn new() -> Case {
        let s = Scratch::new("crak-edit-");
        let mut case = Case {
            prog: s.path("edited"),
            s,
        };
        let src = case.path("edited.c");
        std::fs::write(&src, PROGRAM).expect("edited.c");
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-g", "-Wall", "-no-pie", "-I"])
            .arg(crak_tests::workspace_root().join("tests/live"))
            .arg("-o")
            .arg(&case.prog)
            .arg(&src);
        let o = case.run(cc);
        if !o.status.success() {
            case.fail("cc failed");
        }
        std::fs::create_dir(case.path("old")).expect("old/");
        std::fs::write(case.path("old/data.txt"), "hello from data\n").expect("data.txt");
        case
    }

    /// The address of a global of the program, from `nm`.
    fn symbol(&mut self, name: &str) -> u64 {
        let mut nm = Command::new("nm");
        nm.arg(&self.prog);
        let o = self.run(nm);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let (addr, _, sym) = (f.next()?, f.next()?, f.next()?);
                (sym == name).then(|| u64::from_str_radix(addr, 16).ok())?
            })
            .unwrap_or_else(|| self.fail(&format!("nm shows no {name}")))
    }

    fn wait_file(&self, name: &str) -> String {
        self.s.wait_file(name, Duration::from_secs(30))
    }

    /// Starts the program (with CRAK_EDIT=original-value), waits for READY, captures it (which
    /// kills it) into image.crak.
    fn start_and_capture(&mut self) -> (i32, PathBuf) {
        self.start_and_capture_with(&[])
    }

    /// [`Case::start_and_capture`] with more environment variables.
    fn start_and_capture_with(&mut self, env: &[(&str, &str)]) -> (i32, PathBuf) {
        let out = std::fs::File::create(self.path("out.log")).expect("out.log");
        let err = std::fs::File::create(self.path("err.log")).expect("err.log");
        let child = Command::new(&self.prog)
            .current_dir(self.dir.path())
            .env("CRAK_EDIT", "original-value")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        self.children.push(child);
        self.wait_file("ready");
        std::thread::sleep(Duration::from_millis(100));
        let img = self.capture(pid, &[]);
        (pid, img)
    }

    /// `crak-dump edit IMAGE -o OUT ARGS...`.
    fn edit(&mut self, img: &Path, out: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("crak-dump"));
        cmd.arg("edit").arg(img).arg("-o").arg(out).args(args);
        self.run(cmd)
    }

    fn edit_ok(&mut self, img: &Path, args: &[&str]) -> PathBuf {
        let out = self.path("edited.crak");
        let o = self.edit(img, &out, args);
        if !o.status.success() || !out.exists() {
            self.fail("crak-dump edit failed");
        }
        let mut v = Command::new(bin("crak-dump"));
        v.arg("validate").arg(&out);
        if !self.run(v).status.success() {
            self.fail("the edited image does not validate");
        }
        out
    }

    /// `crak-dump diff --json A B`.
    fn diff(&mut self, a: &Path, b: &Path) -> Value {
        let mut cmd = Command::new(bin("crak-dump"));
        cmd.arg("diff").arg("--json").arg(a).arg(b);
        let o = self.run(cmd);
        if o.status.code() != Some(1) {
            self.fail("crak-dump diff should find differences (exit 1)");
        }
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| self.fail("diff --json"))
    }

    fn restore(&mut self, img: &Path) -> i32 {
        self.restore_detached(img, &[])
    }

    /// SIGUSR2, PASS, and the report as key → value.
    fn go(&mut self, pid: i32) -> std::collections::BTreeMap<String, String> {
        std::thread::sleep(Duration::from_millis(50));
        signal(pid, libc::SIGUSR2);
        let r = self.wait_file("result");
        if r.trim() != "PASS" {
            self.fail(&format!("program reported: {}", r.trim()));
        }
        let report = self.wait_file("report");
        let _ = writeln!(self.log, "report:\n{report}");
        report
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn changes(diff: &Value) -> Vec<(String, String, String)> {
    diff["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["what"].as_str().unwrap_or("").to_string(),
                        c["field"].as_str().unwrap_or("").to_string(),
                        c["b"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn poke_counter_and_message_then_continue_from_the_poked_value() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let counter = case.symbol("counter");
    let message = case.symbol("message");
    let (_, img) = case.start_and_capture();
    let value: u64 = 5_000_000;
    let hex: String = value
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = case.edit_ok(
        &img,
        &[
            "--poke",
            &format!("{counter:#x}={hex}"),
            "--poke-str",
            &format!("{message:#x}=EDITED!!"),
        ],
    );
    // The diff is exactly the page(s) holding the two globals.
    let d = case.diff(&img, &out);
    if !changes(&d).is_empty() {
        case.fail(&format!("metadata changed: {:?}", changes(&d)));
    }
    let pages: Vec<(u64, u64)> = d["pages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["ranges"].as_array().cloned().unwrap_or_default())
        .map(|r| (r[0].as_u64().unwrap_or(0), r[1].as_u64().unwrap_or(0)))
        .collect();
    let page = |a: u64| a & !4095;
    let mut want = vec![(page(counter), page(counter) + 4096)];
    if page(message) != page(counter) {
        want.push((page(message), page(message) + 4096));
        want.sort();
    }
    if pages != want {
        case.fail(&format!("differing pages {pages:x?}, want {want:x?}"));
    }
    let pid = case.restore(&out);
    let r = case.go(pid);
    let c: u64 = r["counter"].parse().unwrap_or(0);
    if !(value..value + 100_000).contains(&c) {
        case.fail(&format!("counter {c} did not continue from {value}"));
    }
    assert_eq!(r["message"], "EDITED!!");
}

#[test]
fn set_reg_sends_the_program_to_another_function() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let jumped = case.symbol("jumped");
    let (_, img) = case.start_and_capture();
    // orig_rax -1: not inside a system call any more, so no restart moves rip back.
    let out = case.edit_ok(
        &img,
        &[
            "--set-reg",
            &format!("rip={jumped:#x}"),
            "--set-reg",
            "orig_rax=-1",
        ],
    );
    let d = case.diff(&img, &out);
    let fields: Vec<String> = changes(&d).into_iter().map(|c| c.1).collect();
    if fields != ["orig_rax", "rip"] && fields != ["rip", "orig_rax"] {
        case.fail(&format!("diff shows {fields:?}"));
    }
    let _pid = case.restore(&out);
    let j = case.wait_file("jumped");
    if !j.starts_with("JUMPED counter=") {
        case.fail(&format!("jumped wrote {j:?}"));
    }
}

#[test]
fn map_path_after_moving_the_open_file() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    std::fs::rename(case.path("old"), case.path("new")).expect("rename");
    // Unedited, the restore is refused: the file is not where it was.
    let mut cmd = Command::new(bin("crak-restore"));
    cmd.arg("--detach").arg(&img);
    if case.run(cmd).status.success() {
        case.fail("restore of a moved file should be refused");
    }
    let old = case.path("old");
    let new = case.path("new");
    let arg = format!("{}={}", old.display(), new.display());
    let out = case.edit_ok(&img, &["--map-path", &arg]);
    let d = case.diff(&img, &out);
    let want = new.join("data.txt").display().to_string();
    if !changes(&d)
        .iter()
        .any(|c| c.0 == "fd 3" && c.2.contains(&want))
    {
        case.fail(&format!("diff shows {:?}", changes(&d)));
    }
    let pid = case.restore(&out);
    let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap_or_default();
    assert_eq!(link, new.join("data.txt"));
    let r = case.go(pid);
    assert_eq!(r["fd3"], "hello from data ");
}

#[test]
fn map_path_refresh_accepts_a_copied_file() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    std::fs::create_dir(case.path("copy")).expect("copy/");
    std::fs::write(case.path("copy/data.txt"), "a copied file!\n").expect("copy");
    let arg = format!(
        "{}={}",
        case.path("old").display(),
        case.path("copy").display()
    );
    // Without --refresh the copy is another inode: the restorer refuses it.
    let plain = case.edit_ok(&img, &["--map-path", &arg]);
    let mut cmd = Command::new(bin("crak-restore"));
    cmd.arg("--detach").arg(&plain);
    if case.run(cmd).status.success() {
        case.fail("a copied file without --refresh should be refused");
    }
    let out = case.edit_ok(&img, &["--map-path", &arg, "--refresh"]);
    let pid = case.restore(&out);
    let r = case.go(pid);
    assert_eq!(r["fd3"], "a copied file! ");
}

/// A pid no process has, well below pid_max.
fn free_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let start = 20_000 + std::process::id() % 5_000;
    (start..max.min(start + 10_000))
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

#[test]
fn set_pid_restores_under_the_new_pid() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (old, img) = case.start_and_capture();
    let new = free_pid();
    let out = case.edit_ok(&img, &["--set-pid", &new.to_string()]);
    let mut dump = Command::new(bin("crak-dump"));
    dump.arg("--json").arg(&out);
    let o = case.run(dump);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["processes"][0]["process"]["pid"], new);
    assert_eq!(v["processes"][0]["threads"][0]["tid"], new);
    let pid = case.restore(&out);
    if pid != new as i32 {
        case.fail(&format!("restored as {pid}, not {new} (captured as {old})"));
    }
    let r = case.go(pid);
    assert_eq!(r["pid"], new.to_string());
}

#[test]
fn drop_fd_turns_the_output_into_dev_null() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    let out = case.edit_ok(&img, &["--drop-fd", "4"]);
    let d = case.diff(&img, &out);
    if !changes(&d)
        .iter()
        .any(|c| c.0 == "fd 4" && c.2.contains("/dev/null"))
    {
        case.fail(&format!("diff shows {:?}", changes(&d)));
    }
    let pid = case.restore(&out);
    let link = std::fs::read_link(format!("/proc/{pid}/fd/4")).unwrap_or_default();
    assert_eq!(link, Path::new("/dev/null"));
    let r = case.go(pid);
    assert_eq!(r["write4"], "1");
    let text = std::fs::read_to_string(case.path("out.txt")).unwrap_or_default();
    assert_eq!(
        text, "before\n",
        "the write after the restore went to /dev/null"
    );
}

#[test]
fn set_cwd_and_set_env() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    // Relative names keep working: old/ and the report files are reached from the new cwd.
    let other = case.dir.path().join("other");
    std::fs::create_dir(&other).expect("other/");
    std::os::unix::fs::symlink(case.path("old"), other.join("old")).expect("symlink");
    let out = case.edit_ok(
        &img,
        &[
            "--set-cwd",
            other.to_str().unwrap_or_default(),
            "--set-env",
            "CRAK_EDIT=short",
        ],
    );
    let pid = case.restore(&out);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    if !environ.split(|&b| b == 0).any(|e| e == b"CRAK_EDIT=short") {
        case.fail(&format!(
            "/proc/PID/environ: {}",
            String::from_utf8_lossy(&environ)
        ));
    }
    std::thread::sleep(Duration::from_millis(50));
    signal(pid, libc::SIGUSR2);
    let report = {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(other.join("report")) {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                case.fail("no report in the new working directory");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert!(
        report.contains(&format!("cwd={}\n", other.display())),
        "{report}"
    );
    assert!(report.contains("env=short\n"), "{report}");
}

#[test]
fn set_env_to_a_longer_value_moves_the_environment_to_a_fresh_area() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    let long = "a-value-much-longer-than-the-original-one-".repeat(20);
    let out = case.edit_ok(&img, &["--set-env", &format!("CRAK_EDIT={long}")]);
    let pid = case.restore(&out);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let want = format!("CRAK_EDIT={long}");
    if !environ.split(|&b| b == 0).any(|e| e == want.as_bytes()) {
        case.fail(&format!(
            "/proc/PID/environ: {}",
            String::from_utf8_lossy(&environ)
        ));
    }
    let r = case.go(pid);
    assert_eq!(r.get("env").map(String::as_str), Some(long.as_str()));
}

#[test]
fn refused_edits_create_no_output() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    let out = case.path("never.crak");
    for (args, needle) in [
        (vec!["--poke", "0x10=00"], "in no mapping"),
        (vec!["--set-reg", "xmm9=1"], "no register"),
        (vec!["--set-env", "NOT_THERE=1"], "not in the environment"),
        (vec!["--drop-fd", "77"], "no fd 77"),
        (vec!["--map-path", "/nowhere=/x"], "no path"),
        (vec!["--set-pid", "0"], "outside"),
    ] {
        let o = case.edit(&img, &out, &args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        if o.status.code() != Some(2) || !err.contains(needle) {
            case.fail(&format!("{args:?}: want exit 2 and {needle:?}"));
        }
        if out.exists() {
            case.fail(&format!("{args:?} created the output"));
        }
    }
    // A corrupted input is refused too.
    let mut bytes = std::fs::read(&img).expect("image");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let bad = case.path("bad.crak");
    std::fs::write(&bad, bytes).expect("bad.crak");
    let o = case.edit(&bad, &out, &["--set-reg", "rax=1"]);
    if o.status.code() != Some(2) || out.exists() {
        case.fail("a corrupted image must be refused");
    }
}

/// `crak-dump ARGS...`.
fn dump(case: &mut Case, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("crak-dump"));
    cmd.args(args);
    case.run(cmd)
}

/// This host's profile, as JSON.
fn host_profile(case: &mut Case) -> Value {
    let o = dump(case, &["kernel-profile", "-o", "-"]);
    if !o.status.success() {
        case.fail("crak-dump kernel-profile failed");
    }
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| case.fail("profile JSON"))
}

fn write_json(case: &Case, name: &str, v: &Value) -> PathBuf {
    let p = case.path(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).expect("json")).expect("write profile");
    p
}

fn special_sizes(list: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let (s, e) = (
                m["start"].as_u64().unwrap_or(0),
                m["end"].as_u64().unwrap_or(0),
            );
            (
                m["kind"].as_str().unwrap_or("").to_string(),
                e.wrapping_sub(s),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kernel_profile_agrees_with_a_capture_and_rewrite_for_this_host_restores() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    let profile = host_profile(&mut case);
    let o = dump(&mut case, &["--json", img.to_str().unwrap_or_default()]);
    let model: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let h = &model["header"];
    for key in [
        "kernel_release",
        "page_size",
        "xsave_features",
        "xsave_size",
    ] {
        if profile[key] != h[key] {
            case.fail(&format!(
                "{key}: profile {} vs image {}",
                profile[key], h[key]
            ));
        }
    }
    if special_sizes(&profile["special_mappings"]) != special_sizes(&h["special_mappings"]) {
        case.fail("the profile's vDSO/vvar sizes differ from the capture's");
    }
    let vdso_len = profile["vdso"].as_str().map_or(0, |b| b.len() / 4 * 3);
    if vdso_len < 4096 {
        case.fail("the profile holds no vDSO bytes");
    }
    let names: Vec<&str> = profile["vdso_symbols"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"__vdso_clock_gettime"), "{names:?}");
    // For this host there is nothing to change, and the result restores.
    let out = case.path("rewritten.crak");
    let o = dump(
        &mut case,
        &[
            "rewrite",
            img.to_str().unwrap_or_default(),
            "--target",
            "host",
            "-o",
            out.to_str().unwrap_or_default(),
        ],
    );
    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("nothing to change") {
        case.fail("rewrite --target host");
    }
    let pid = case.restore(&out);
    let r = case.go(pid);
    assert_eq!(
        (
            r.get("clock").map(String::as_str),
            r.get("time").map(String::as_str)
        ),
        (Some("1"), Some("1"))
    );
}

/// A vDSO-like shared object: a padding function in front of the five exported functions (each
/// 32 bytes, version LINUX_2.6, with unprefixed aliases), linked like the kernel's vDSO so that
/// file offsets are addresses. Its bytes, padded to whole pages, stand for another kernel's vDSO:
/// three pages where this kernel's has two, its functions at other offsets.
fn fake_vdso(case: &mut Case) -> Vec<u8> {
    const SRC: &str = r#"
#define FN(name, alias, nr) \
    __asm__(".globl " #name "\n.type " #name ",@function\n" #name ":\n" \
            "mov $" #nr ", %eax\nsyscall\nret\n.fill 24,1,0x90\n.size " #name ",.-" #name "\n" \
            ".weak " #alias "\n.set " #alias "," #name "\n");
__asm__(".globl pad\n.type pad,@function\npad:\n.fill 9000,1,0xcc\n.size pad,.-pad\n");
FN(__vdso_gettimeofday, gettimeofday, 96)
FN(__vdso_time, time, 201)
FN(__vdso_clock_getres, clock_getres, 229)
FN(__vdso_getcpu, getcpu, 309)
FN(__vdso_clock_gettime, clock_gettime, 228)
"#;
    const LDS: &str = "SECTIONS {
  . = SIZEOF_HEADERS;
  .hash : { *(.hash) } :text
  .gnu.hash : { *(.gnu.hash) }
  .dynsym : { *(.dynsym) }
  .dynstr : { *(.dynstr) }
  .gnu.version : { *(.gnu.version) }
  .gnu.version_d : { *(.gnu.version_d) }
  .dynamic : { *(.dynamic) } :text :dynamic
  . = ALIGN(16);
  .text : { *(.text*) } :text
  /DISCARD/ : { *(.data*) *(.bss*) *(.note*) *(.eh_frame*) *(.comment) }
}
PHDRS { text PT_LOAD FLAGS(5) FILEHDR PHDRS; dynamic PT_DYNAMIC FLAGS(4); }
";
    const VER: &str = "LINUX_2.6 { global: __vdso_*; clock_gettime; gettimeofday; time; \
                       getcpu; clock_getres; local: *; };\n";
    std::fs::write(case.path("fake.c"), SRC).expect("fake.c");
    std::fs::write(case.path("fake.lds"), LDS).expect("fake.lds");
    std::fs::write(case.path("fake.ver"), VER).expect("fake.ver");
    let mut cc = Command::new("cc");
    cc.args([
        "-shared",
        "-nostdlib",
        "-fPIC",
        "-Wl,--hash-style=both,--build-id=none",
    ])
    .arg(format!("-Wl,-T,{}", case.path("fake.lds").display()))
    .arg(format!(
        "-Wl,--version-script={}",
        case.path("fake.ver").display()
    ))
    .arg("-o")
    .arg(case.path("fake.so"))
    .arg(case.path("fake.c"));
    let o = case.run(cc);
    if !o.status.success() {
        case.fail("cc of the fake vDSO failed");
    }
    let mut bytes = std::fs::read(case.path("fake.so")).expect("fake.so");
    bytes.resize(bytes.len().div_ceil(4096) * 4096, 0);
    bytes
}

/// The symbols of a vDSO image, read with goblin (through `crak-dump`'s reader).
fn symbols_of(case: &Case, vdso: &[u8]) -> Vec<crak_format::rewrite::VdsoSymbol> {
    crak_dump::cmd::profile::vdso_symbols(vdso)
        .unwrap_or_else(|e| case.fail(&format!("vDSO symbols: {e:#}")))
}

/// `(start, end)` of the first VMA of `kind` in the image at `path`, and a reader of its memory.
fn image_vdso(case: &Case, path: &Path) -> (Vec<u8>, (u64, u64)) {
    let bytes = std::fs::read(path).expect("image");
    let vdso = {
        let parsed = crak_format::read::parse(&bytes)
            .unwrap_or_else(|e| case.fail(&format!("parse {}: {e}", path.display())));
        parsed.image.processes[0]
            .vmas
            .iter()
            .find(|v| v.kind == crak_format::record::vma::VmaKind::Vdso)
            .map(|v| (v.start, v.end))
            .unwrap_or_else(|| case.fail("the rewritten image has no [vdso]"))
    };
    (bytes, vdso)
}

/// Where the code at `at` in `image` leads: `movabs rax, imm64; jmp rax` or `jmp rel32`; or
/// `Err` with the bytes.
fn decode_jump(image: &[u8], at: u64) -> Result<u64, Vec<u8>> {
    let parsed = crak_format::read::parse(image).map_err(|_| Vec::new())?;
    let m = crak_format::edit::read_memory(&parsed.image, None, at, 12).map_err(|_| Vec::new())?;
    match m.as_slice() {
        [0x48, 0xb8, imm @ .., 0xff, 0xe0] => {
            Ok(u64::from_le_bytes(imm.try_into().map_err(|_| m.clone())?))
        }
        [0xe9, a, b, c, d, ..] => Ok(at
            .wrapping_add(5)
            .wrapping_add(i64::from(i32::from_le_bytes([*a, *b, *c, *d])) as u64)),
        _ => Err(m),
    }
}

#[test]
fn rewrite_to_another_vdso_builds_a_jump_table_and_back_restores_with_working_clocks() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (_, img) = case.start_and_capture();
    let host_json = host_profile(&mut case);
    let host: crak_format::rewrite::KernelProfile =
        serde_json::from_value(host_json.clone()).unwrap_or_else(|_| case.fail("host profile"));
    let host_vdso = host
        .vdso
        .as_ref()
        .map(|b| b.as_bytes().to_vec())
        .unwrap_or_else(|| case.fail("the host profile holds no vDSO"));
    let host_syms = symbols_of(&case, &host_vdso);
    // Another kernel: this host's profile with the fake vDSO.
    let fake_bytes = fake_vdso(&mut case);
    let fake_syms = symbols_of(&case, &fake_bytes);
    let names: Vec<&str> = fake_syms.iter().map(|s| s.name.as_str()).collect();
    for n in [
        "__vdso_clock_gettime",
        "clock_gettime",
        "__vdso_gettimeofday",
        "__vdso_time",
    ] {
        assert!(names.contains(&n), "fake vDSO exports {names:?}");
    }
    assert_eq!(fake_bytes.len(), host_vdso.len() + 4096);
    let mut fake = host.clone();
    fake.kernel_release = "9.9.9-fake".into();
    for m in &mut fake.special_mappings {
        if m.kind == crak_format::record::vma::VmaKind::Vdso {
            m.end = m.start + fake_bytes.len() as u64;
        }
    }
    fake.vdso = Some(crak_format::bytes::Blob::from(fake_bytes));
    fake.vdso_symbols = fake_syms.clone();
    let fake_path = write_json(
        &case,
        "fake.json",
        &serde_json::to_value(&fake).unwrap_or_default(),
    );
    let old_vdso = image_vdso(&case, &img).1;
    let (img_s, fake_s) = (
        img.to_str().unwrap_or_default().to_string(),
        fake_path.to_str().unwrap_or_default().to_string(),
    );
    let there = case.path("fake.crak");
    let there_s = there.to_str().unwrap_or_default().to_string();
    // Without the capture kernel's vDSO: refused, nothing written.
    let o = dump(
        &mut case,
        &["rewrite", &img_s, "--target", &fake_s, "-o", &there_s],
    );
    if o.status.code() != Some(2)
        || !String::from_utf8_lossy(&o.stderr).contains("--source")
        || there.exists()
    {
        case.fail("a vDSO change without --source must be refused");
    }
    let o = dump(
        &mut case,
        &[
            "rewrite", &img_s, "--target", &fake_s, "--source", "host", "-o", &there_s,
        ],
    );
    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("jump table") {
        case.fail("rewrite to the fake vDSO");
    }
    // Every exported function of the saved vDSO jumps to the fake's at its planned address.
    let (there_bytes, new_vdso) = image_vdso(&case, &there);
    assert_eq!(new_vdso.1 - new_vdso.0, fake_bytes_len(&fake));
    for s in &host_syms {
        let at = old_vdso.0 + s.offset;
        match fake_syms.iter().find(|f| f.name == s.name) {
            Some(f) => {
                let to = decode_jump(&there_bytes, at);
                if to != Ok(new_vdso.0 + f.offset) {
                    case.fail(&format!(
                        "{} at {at:#x} leads to {to:x?}, not {:#x}",
                        s.name,
                        new_vdso.0 + f.offset
                    ));
                }
            }
            // The fake lacks it (getrandom, sgx_enter_enclave): a system-call stub.
            None => {
                let parsed = crak_format::read::parse(&there_bytes).expect("parse");
                let m =
                    crak_format::edit::read_memory(&parsed.image, None, at, 1).unwrap_or_default();
                assert_eq!(m, [0xb8], "{} at {at:#x} is no stub", s.name);
            }
        }
    }
    let plan = {
        let parsed = crak_format::read::parse(&there_bytes).expect("parse");
        parsed
            .image
            .notes
            .iter()
            .find(|n| n.key.as_bytes() == b"crak.rewrite.vdso-plan")
            .map(|n| n.value.as_bytes().to_vec())
            .unwrap_or_else(|| case.fail("no crak.rewrite.vdso-plan note"))
    };
    let plan: Value = serde_json::from_slice(&plan).unwrap_or_else(|_| case.fail("plan JSON"));
    assert_eq!(plan[0]["new_vdso"][0], format!("{:#x}", new_vdso.0));
    // And back to this host: the fake's functions jump to this kernel's vDSO, placed anew.
    let back = case.path("back.crak");
    let back_s = back.to_str().unwrap_or_default().to_string();
    let o = dump(
        &mut case,
        &[
            "rewrite", &there_s, "--target", "host", "--source", &fake_s, "-o", &back_s,
        ],
    );
    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("jump table") {
        case.fail("rewrite back to this host");
    }
    let (_, final_vdso) = image_vdso(&case, &back);
    let pid = case.restore(&back);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let want = format!("{:x}-{:x} r-xp", final_vdso.0, final_vdso.1);
    if !maps
        .lines()
        .any(|l| l.starts_with(&want) && l.ends_with("[vdso]"))
    {
        case.fail(&format!(
            "the restored vDSO is not at the planned {want}:\n{maps}"
        ));
    }
    let r = case.go(pid);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for key in ["realtime", "gettimeofday", "now"] {
        let v: i64 = r.get(key).and_then(|v| v.parse().ok()).unwrap_or(-1);
        if (v - now).abs() > 5 {
            case.fail(&format!(
                "{key} through the jump table is {v}, the wall clock {now}"
            ));
        }
    }
    if (
        r.get("clock").map(String::as_str),
        r.get("getres").map(String::as_str),
    ) != (Some("1"), Some("1"))
    {
        case.fail("clock_gettime(CLOCK_MONOTONIC) or clock_getres failed after the round trip");
    }
}

fn fake_bytes_len(p: &crak_format::rewrite::KernelProfile) -> u64 {
    p.vdso.as_ref().map_or(0, |b| b.len() as u64)
}

#[test]
fn rewrite_for_a_cpu_without_avx512_refuses_a_live_opmask() {
    crak_tests::need_root!();
    let _g = serial();
    let host_has_avx512 = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .contains(" avx512f");
    if !host_has_avx512 {
        eprintln!("no AVX-512 on this host; skipped");
        return;
    }
    let mut case = Case::new();
    let (_, img) = case.start_and_capture_with(&[("CRAK_OPMASK", "1")]);
    let host = host_profile(&mut case);
    let mut target = host.clone();
    target["xsave_features"] = Value::from(0x7u64);
    target["xsave_size"] = Value::from(832u64);
    target["xsave_components"] = serde_json::json!([{"index": 2, "offset": 576, "size": 256}]);
    let target = write_json(&case, "target.json", &target);
    let out = case.path("rewritten.crak");
    let (img_s, target_s, out_s) = (
        img.to_str().unwrap_or_default().to_string(),
        target.to_str().unwrap_or_default().to_string(),
        out.to_str().unwrap_or_default().to_string(),
    );
    let o = dump(
        &mut case,
        &[
            "rewrite", &img_s, "--target", &target_s, "--source", "host", "-o", &out_s,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(2) || !err.contains("AVX-512 opmask") || out.exists() {
        case.fail("an opmask in use must be refused by name, with no output");
    }
}

/// A valid vector image (version 1.7) with a heap page, a thread and a vDSO.
fn vector() -> PathBuf {
    crak_tests::workspace_root().join("spec/vectors/valid/012-minor-version-1-7.bin")
}

fn model(case: &mut Case, img: &Path) -> Value {
    let o = dump(case, &["--json", img.to_str().unwrap_or_default()]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| case.fail("crak-dump --json"))
}

/// A scratch directory for the tests that need no process.
fn offline_case() -> Case {
    Case {
        s: Scratch::new("crak-edit-"),
        prog: PathBuf::new(),
    }
}

#[test]
fn offline_edits_of_a_vector_image() {
    let mut case = offline_case();
    let img = vector();
    let out = case.edit_ok(
        &img,
        &[
            "--poke",
            "0x600010=deadbeef",
            "--set-reg",
            "rip=0x401000",
            "--set-reg",
            "4242:rax=-4",
            "--set-pid",
            "777",
        ],
    );
    let v = model(&mut case, &out);
    assert_eq!(
        v["version"]["minor"],
        crak_format::CURRENT_VERSION.minor,
        "written as this writer's version"
    );
    let p = &v["processes"][0];
    assert_eq!(p["process"]["pid"], 777);
    assert_eq!(p["process"]["pgid"], 777);
    assert_eq!(p["threads"][0]["tid"], 777);
    assert_eq!(p["threads"][0]["gpr"]["rip"], 0x401000);
    assert_eq!(p["threads"][0]["gpr"]["rax"], (-4i64) as u64);
    let o = dump(
        &mut case,
        &[
            "mem",
            out.to_str().unwrap_or_default(),
            "0x600010+4",
            "--raw",
        ],
    );
    assert_eq!(o.stdout, [0xde, 0xad, 0xbe, 0xef]);
}

/// A profile of the vector's capture host.
fn vector_host() -> Value {
    serde_json::json!({
        "format": "crak-kernel-profile/1",
        "kernel_release": "6.18.0-crak",
        "page_size": 4096,
        "xsave_features": 0x2e7,
        "xsave_size": 2696,
        "xsave_components": [],
        "special_mappings": [
            {"kind": "vvar", "start": 0x7fff_f7fb_d000u64, "end": 0x7fff_f7fc_1000u64},
            {"kind": "vdso", "start": 0x7fff_f7fc_1000u64, "end": 0x7fff_f7fc_3000u64}
        ],
        "vdso": null,
        "vdso_symbols": []
    })
}

#[test]
fn offline_rewrite_writes_this_version_and_refuses_what_it_cannot_fix() {
    let mut case = offline_case();
    let img = vector();
    let img_s = img.to_str().unwrap_or_default().to_string();
    let target = write_json(&case, "target.json", &vector_host());
    let out = case.path("out.crak");
    let (t, o) = (
        target.to_str().unwrap_or_default().to_string(),
        out.to_str().unwrap_or_default().to_string(),
    );
    let r = dump(&mut case, &["rewrite", &img_s, "--target", &t, "-o", &o]);
    let now = format!("version 1.7 -> 1.{}", crak_format::CURRENT_VERSION.minor);
    if !r.status.success() || !String::from_utf8_lossy(&r.stdout).contains(&now) {
        case.fail(&format!("rewrite: {now}"));
    }
    let v = model(&mut case, &out);
    assert_eq!(v["version"]["minor"], crak_format::CURRENT_VERSION.minor);
    std::fs::remove_file(&out).expect("rm");
    let refusals: [(&str, Value, &str); 3] = [
        ("page_size", Value::from(16384), "16384-byte pages"),
        ("xsave_features", Value::from(0x7), "--source"),
        ("format", Value::from("other"), "not a kernel profile"),
    ];
    for (key, value, needle) in refusals {
        let mut p = vector_host();
        p[key] = value;
        let t = write_json(&case, "bad.json", &p);
        let t = t.to_str().unwrap_or_default().to_string();
        let r = dump(&mut case, &["rewrite", &img_s, "--target", &t, "-o", &o]);
        if r.status.code() != Some(2)
            || !String::from_utf8_lossy(&r.stderr).contains(needle)
            || out.exists()
        {
            case.fail(&format!("{key}: want exit 2 with {needle:?} and no output"));
        }
    }
}

#[test]
fn offline_edit_and_rewrite_report_changes_as_json() {
    let mut case = offline_case();
    let img = vector();
    let img_s = img.to_str().unwrap_or_default().to_string();
    let out = case.path("out.crak");
    let o = out.to_str().unwrap_or_default().to_string();
    let r = dump(
        &mut case,
        &["edit", &img_s, "-o", &o, "--set-cwd", "/tmp", "--json"],
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap_or_default();
    assert_eq!(
        v["changes"],
        serde_json::json!([
            "set-cwd /tmp",
            format!("version 1.7 -> 1.{}", crak_format::CURRENT_VERSION.minor)
        ])
    );
    assert_eq!(v["output"], o.as_str());
    let target = write_json(&case, "target.json", &vector_host());
    let t = target.to_str().unwrap_or_default().to_string();
    // The edited image has this version already: nothing to change.
    let r = dump(
        &mut case,
        &["rewrite", &o, "--target", &t, "-o", &o, "--json"],
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap_or_default();
    assert_eq!(v["changes"], serde_json::json!([]));
}
