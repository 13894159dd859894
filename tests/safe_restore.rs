//! Safe restore of untrusted images, with a real unprivileged user made by the test.
//!
//! A small program (written below, compiled with `cc`) runs as that user, holding a file of its
//! directory open and a deleted file; it is captured by root with the real `crak-capture`, and
//! then:
//! - the user restores its own image (`--new-pid`: clone3's `set_tid` needs privilege), and so
//!   does root, from an image only root may read;
//! - the user's image edited to claim uid 0, another user or extra capabilities is refused
//!   for the user with a clear error, before anything is created;
//! - root restoring the user's image whose fd path was edited to `/etc/shadow` (with that
//!   file's device, inode, size and time) is refused for permission: the open is the user's;
//! - paths with `..`, relative paths and symbolic links are refused;
//! - an invalid image is refused even with `--force`; a warning-only image is refused without
//!   `--force` and restored with it;
//! - `--verify`: a signed image restores, an unsigned one is refused, a tampered one is refused
//!   naming the record.
//!
//! Every refusal must leave no process of the program behind. The tests need root (useradd,
//! ptrace, `clone3` with `set_tid`) and skip without it; they run one at a time.

use crak_tests::{bin, is_root, serial, wait_gone};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The test program: fd 3 is `data` (read-only), fd 4 a deleted file; after SIGUSR2 it checks
/// both and its uid (argv[1]) and writes PASS or FAIL to `result`.
const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t go;
static void on_go(int s) { (void)s; go = 1; }
static void put(const char *name, const char *text) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(3);
    if (write(fd, text, strlen(text)) < 0) _exit(3);
    close(fd);
    rename(tmp, name);
}
static void fail(const char *why) { char b[128]; snprintf(b, sizeof b, "FAIL: %s\n", why); put("result", b); exit(1); }
int main(int argc, char **argv) {
    unsigned uid = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
    int data = open("data", O_RDONLY);
    if (data != 3) fail("data is not fd 3");
    int del = open("gone", O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (del != 4) fail("gone is not fd 4");
    if (write(del, "deleted-contents", 16) != 16) fail("write gone");
    unlink("gone");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_go;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    put("ready", "READY\n");
    while (!go) { struct timespec t = {0, 10000000}; nanosleep(&t, NULL); }
    char b[64] = {0};
    if (pread(data, b, sizeof b - 1, 0) != 16 || strcmp(b, "hello from data\n")) fail("data");
    memset(b, 0, sizeof b);
    if (pread(del, b, sizeof b - 1, 0) != 16 || strcmp(b, "deleted-contents")) fail("deleted file");
    if (getuid() != uid || geteuid() != uid) fail("uid");
    put("result", "PASS\n");
    return 0;
}
"#;

/// The program's name (its `comm`): with the directory of its case, what finds its leftovers.
const PROG: &str = "crak-sfr-prog";

/// A system user made for the test, deleted when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create(name: &str) -> TestUser {
        let _ = Command::new("userdel").arg(name).output();
        let o = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ])
            .output()
            .expect("run useradd");
        assert!(
            o.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").arg(flag).arg(name).output().expect("id");
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .expect("a numeric id")
        };
        TestUser {
            name: name.to_string(),
            uid: id("-u"),
            gid: id("-g"),
        }
    }

    /// A command run as this user, with no supplementary groups.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // std drops the supplementary groups when it sets the uid as root.
        c.uid(self.uid).gid(self.gid);
        c
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// The scratch directory (owned by the user), the program, its capture and a transcript.
struct Case {
    dir: tempfile::TempDir,
    user: TestUser,
    children: Vec<Child>,
    pids: Vec<i32>,
    log: String,
}

impl Drop for Case {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.pids {
            let _ = crak_restore::sys::process::kill(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
        self.kill_leftovers();
    }
}

impl Case {
    /// Makes the user (one per test, by name), the directory, the program, and runs it as the
    /// user until it is ready; captures it as root. Returns the case and the image path.
    fn setup(user: &str) -> (Case, PathBuf) {
        // Another run of these tests (another checkout, another user of the machine) may be
        // under way: its user and its processes are not this run's.
        let user = TestUser::create(&format!("{user}-{}", std::process::id()));
        let dir = tempfile::Builder::new()
            .prefix("crak-sfr-")
            .tempdir()
            .expect("tempdir");
        let mut case = Case {
            dir,
            user,
            children: Vec::new(),
            pids: Vec::new(),
            log: String::new(),
        };
        let src = case.path("prog.c");
        std::fs::write(&src, PROGRAM).expect("write prog.c");
        let exe = case.path(PROG);
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("run cc");
        if !o.status.success() {
            case.fail(&format!("cc: {}", String::from_utf8_lossy(&o.stderr)));
        }
        std::fs::write(case.path("data"), "hello from data\n").expect("data");
        // Everything the program opens is the user's: it could open it again by itself.
        for name in ["", "data", PROG, "out.log"] {
            let p = case.path(name);
            if !p.exists() {
                std::fs::write(&p, "").expect("create");
            }
            std::os::unix::fs::chown(&p, Some(case.user.uid), Some(case.user.gid)).expect("chown");
        }
        std::fs::set_permissions(case.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(case.path("out.log"))
            .expect("out.log");
        let child = case
            .user
            .command(&exe)
            .arg(case.user.uid.to_string())
            .current_dir(case.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn the program");
        let pid = child.id() as i32;
        case.children.push(child);
        case.wait_file("ready");
        let img = case.path("image.crak");
        let mut cmd = Command::new(bin("crak-capture"));
        cmd.arg(pid.to_string()).arg("-o").arg(&img);
        let o = case.run(cmd);
        if !o.status.success() {
            case.fail("crak-capture failed");
        }
        if let Some(mut c) = case.children.pop() {
            let _ = c.wait();
        }
        if !wait_gone(pid, Duration::from_secs(5)) {
            case.fail("the captured process is still alive");
        }
        // The image as crak-capture wrote it: root's, and only root's to read.
        let mode = std::fs::metadata(&img).expect("image").mode() & 0o777;
        case.note(&format!("image mode {mode:o}"));
        (case, img)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// PIDs of the live processes of this case: named [`PROG`], in its directory (where the
    /// program and every crak-restore run start, and the image's working directory).
    fn program_pids(&self) -> Vec<i32> {
        let dir = std::fs::canonicalize(self.dir.path()).expect("the case's directory");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            if comm.trim() == PROG && cwd.is_ok_and(|c| c == dir) && !crak_tests::is_gone(pid) {
                out.push(pid);
            }
        }
        out
    }

    fn kill_leftovers(&self) {
        for pid in self.program_pids() {
            let _ = crak_restore::sys::process::kill(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
    }

    fn note(&mut self, s: &str) {
        self.log.push_str(s);
        self.log.push('\n');
    }

    #[track_caller]
    fn fail(&self, msg: &str) -> ! {
        let out = std::fs::read_to_string(self.path("out.log")).unwrap_or_default();
        panic!(
            "{msg}\n--- transcript ---\n{}\n--- program output ---\n{out}",
            self.log
        );
    }

    fn wait_file(&self, name: &str) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(self.path(name)) {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                self.fail(&format!("timed out waiting for {name}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn run(&mut self, mut cmd: Command) -> Output {
        let shown = format!("{cmd:?}");
        let o = cmd.output().expect("run command");
        self.note(&format!(
            "$ {shown}\n  -> {}\n  stdout: {}  stderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    }

    /// A copy of the image readable by the user, named `name`.
    fn user_copy(&self, img: &Path, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::copy(img, &p).expect("copy image");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }

    /// `crak-restore --detach ARGS IMAGE`, as the user or as root.
    fn restore(&mut self, as_user: bool, img: &Path, args: &[&str]) -> Output {
        let mut cmd = if as_user {
            self.user.command(&bin("crak-restore"))
        } else {
            Command::new(bin("crak-restore"))
        };
        cmd.arg("--detach").args(args).arg(img);
        cmd.current_dir(self.dir.path());
        self.run(cmd)
    }

    /// Restores and expects the program to run and pass.
    fn restore_and_pass(&mut self, as_user: bool, img: &Path, args: &[&str]) {
        let _ = std::fs::remove_file(self.path("result"));
        let o = self.restore(as_user, img, args);
        if !o.status.success() {
            self.fail("crak-restore failed");
        }
        let pid: i32 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail("crak-restore printed no PID"));
        self.pids.push(pid);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        let want = format!("{0}\t{0}\t{0}\t{0}", self.user.uid);
        if !uid_line.ends_with(&want) {
            self.fail(&format!("restored with {uid_line:?}, not the user's uids"));
        }
        let _ = crak_restore::sys::process::kill(pid, libc::SIGUSR2);
        let r = self.wait_file("result");
        if r.trim() != "PASS" {
            self.fail(&format!("program reported: {}", r.trim()));
        }
        wait_gone(pid, Duration::from_secs(5));
    }

    /// Restores and expects a refusal with `code` whose message holds every one of `words`,
    /// and no process of the program left.
    fn restore_refused(
        &mut self,
        as_user: bool,
        img: &Path,
        args: &[&str],
        code: i32,
        words: &[&str],
    ) {
        let o = self.restore(as_user, img, args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        if o.status.code() != Some(code) {
            self.fail(&format!("expected exit {code}, got {}", o.status));
        }
        for w in words {
            if !err.contains(w) {
                self.fail(&format!("the message does not say {w:?}"));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let left = self.program_pids();
        if !left.is_empty() {
            self.fail(&format!("processes left after a refusal: {left:?}"));
        }
    }

    /// The image with `edit` applied to its model, written as `name` (readable by the user).
    fn edited(
        &self,
        img: &Path,
        name: &str,
        edit: impl FnOnce(&mut crak_format::Image<'_>),
    ) -> PathBuf {
        let bytes = std::fs::read(img).expect("read image");
        let mut parsed = crak_format::parse(&bytes).expect("the captured image parses");
        edit(&mut parsed.image);
        let out = crak_format::write::to_vec(&parsed.image).expect("write the edited image");
        let p = self.path(name);
        std::fs::write(&p, out).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }
}

/// Skips (returns `None`) without root or without useradd.
fn start(user: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Case, PathBuf)> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    if Command::new("useradd").arg("--help").output().is_err() {
        eprintln!("skipped: no useradd");
        return None;
    }
    let guard = serial();
    let (case, img) = Case::setup(user);
    Some((guard, case, img))
}

fn fd_of<'a, 'd>(
    image: &'a mut crak_format::Image<'d>,
    n: u32,
) -> &'a mut crak_format::record::fd::Fd<'d> {
    image.processes[0]
        .fds
        .iter_mut()
        .find(|f| f.fd == n)
        .expect("the fd is in the image")
}

#[test]
fn own_image_restores_as_the_user_and_as_root() {
    let Some((_g, mut case, img)) = start("crak-sfr-own") else {
        return;
    };
    let mine = case.user_copy(&img, "mine.crak");
    case.restore_and_pass(true, &mine, &["--new-pid"]);
    // Root restores from the image only root may read (the restorer reads its own image with
    // its own identity), at the saved PID, and the process still runs as the user.
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    case.restore_and_pass(false, &img, &[]);
    // --lazy maps the image file into the process: only a file its user may read.
    case.restore_refused(false, &img, &["--lazy"], 2, &["--lazy", "may not read"]);
    case.restore_and_pass(false, &mine, &["--lazy"]);
}

#[test]
fn user_restoring_other_credentials_is_refused() {
    let Some((_g, mut case, img)) = start("crak-sfr-creds") else {
        return;
    };
    let uid = case.user.uid;
    let root = case.edited(&img, "root.crak", |i| {
        let c = i.processes[0].creds.as_mut().expect("creds");
        (c.uid, c.euid, c.suid, c.fsuid) = (0, 0, 0, 0);
    });
    case.restore_refused(
        true,
        &root,
        &["--new-pid"],
        2,
        &["credentials", "uid 0", "CAP_SETUID"],
    );
    let other = case.edited(&img, "other.crak", |i| {
        let c = i.processes[0].creds.as_mut().expect("creds");
        c.euid = uid + 1;
        c.gid = 0;
    });
    case.restore_refused(
        true,
        &other,
        &["--new-pid"],
        2,
        &[&format!("euid {}", uid + 1), "gid 0"],
    );
    let caps = case.edited(&img, "caps.crak", |i| {
        let c = i.processes[0].creds.as_mut().expect("creds");
        c.cap_permitted = 1 << 21;
        c.cap_effective = 1 << 21;
    });
    case.restore_refused(true, &caps, &["--new-pid"], 2, &["CAP_SYS_ADMIN"]);
    let groups = case.edited(&img, "groups.crak", |i| {
        i.processes[0].creds.as_mut().expect("creds").groups = vec![0];
    });
    case.restore_refused(true, &groups, &["--new-pid"], 2, &["supplementary groups"]);
    // The unedited image still restores for the user.
    case.restore_and_pass(true, &case.user_copy(&img, "plain.crak"), &["--new-pid"]);
}

#[test]
fn root_restore_opens_files_as_the_image_user() {
    let Some((_g, mut case, img)) = start("crak-sfr-shadow") else {
        return;
    };
    let shadow = std::fs::metadata("/etc/shadow").expect("/etc/shadow");
    // The fd path edited to /etc/shadow, with that file's identity so that only the
    // permission check can refuse it.
    let edited = case.edited(&img, "shadow.crak", |i| {
        let f = fd_of(i, 3);
        f.path = b"/etc/shadow".as_slice().into();
        f.dev = shadow.dev();
        f.ino = shadow.ino();
        f.size = shadow.size();
        f.mtime_ns = shadow.mtime() * 1_000_000_000 + shadow.mtime_nsec();
        f.mode = shadow.mode();
    });
    case.restore_refused(
        false,
        &edited,
        &[],
        2,
        &["/etc/shadow", "Permission denied"],
    );
    // Just the path: another file than the one captured.
    let moved = case.edited(&img, "moved.crak", |i| {
        fd_of(i, 3).path = b"/etc/shadow".as_slice().into();
    });
    case.restore_refused(false, &moved, &[], 2, &["/etc/shadow"]);
    // A mapped file edited likewise.
    let exe = case.path(PROG);
    let exe = exe.to_str().expect("utf-8 path").to_string();
    let mapped = case.edited(&img, "mapped.crak", |i| {
        for v in &mut i.processes[0].vmas {
            if v.path.as_bytes() == exe.as_bytes() {
                v.path = b"/etc/shadow".as_slice().into();
                v.dev = shadow.dev();
                v.ino = shadow.ino();
                v.size = shadow.size();
                v.mtime_ns = shadow.mtime() * 1_000_000_000 + shadow.mtime_nsec();
            }
        }
    });
    case.restore_refused(
        false,
        &mapped,
        &[],
        2,
        &["/etc/shadow", "Permission denied"],
    );
}

#[test]
fn dot_dot_relative_and_symlinked_paths_are_refused() {
    let Some((_g, mut case, img)) = start("crak-sfr-paths") else {
        return;
    };
    let dir = case.dir.path().to_str().expect("utf-8 path").to_string();
    std::fs::create_dir(case.path("sub")).expect("sub");
    let dotdot = case.edited(&img, "dotdot.crak", |i| {
        fd_of(i, 3).path = format!("{dir}/sub/../data").as_bytes().into();
    });
    case.restore_refused(false, &dotdot, &[], 1, &["`..`", "fd 3"]);
    let relative = case.edited(&img, "relative.crak", |i| {
        fd_of(i, 3).path = b"data".as_slice().into();
    });
    case.restore_refused(false, &relative, &["--force"], 1, &["not an absolute path"]);
    let cwd = case.edited(&img, "cwd.crak", |i| {
        i.processes[0].process.cwd = format!("{dir}/sub/..").as_bytes().into();
    });
    case.restore_refused(false, &cwd, &[], 1, &["working directory", "`..`"]);
    // A symbolic link to the very file: the image names resolved paths, so it is refused.
    std::os::unix::fs::symlink(case.path("data"), case.path("link")).expect("symlink");
    let link = case.edited(&img, "link.crak", |i| {
        fd_of(i, 3).path = format!("{dir}/link").as_bytes().into();
    });
    case.restore_refused(false, &link, &[], 2, &["symbolic link"]);
    std::os::unix::fs::symlink(case.dir.path(), case.path("ldir")).expect("symlink");
    let ldir = case.edited(&img, "ldir.crak", |i| {
        fd_of(i, 3).path = format!("{dir}/ldir/data").as_bytes().into();
    });
    case.restore_refused(true, &ldir, &["--new-pid"], 2, &["symbolic link"]);
}

#[test]
fn invalid_refused_warnings_need_force() {
    let Some((_g, mut case, img)) = start("crak-sfr-force") else {
        return;
    };
    // An error (a duplicate fd): refused, --force or not.
    let invalid = case.edited(&img, "invalid.crak", |i| {
        let f = fd_of(i, 3).clone();
        i.processes[0].fds.push(f);
    });
    case.restore_refused(
        true,
        &invalid,
        &["--new-pid"],
        1,
        &["invalid image", "error["],
    );
    case.restore_refused(
        true,
        &invalid,
        &["--new-pid", "--force"],
        1,
        &["never overrides errors"],
    );
    // A warning only (PIPE_DATA no fd uses).
    let warning = case.edited(&img, "warning.crak", |i| {
        i.pipes.push(crak_format::record::pipe_data::PipeData {
            pipe_id: 0xdead_beef,
            capacity: 65536,
            data: crak_format::Blob::from(b"orphan".to_vec()),
        });
    });
    case.restore_refused(
        true,
        &warning,
        &["--new-pid"],
        1,
        &["warning[orphan-pipe-data]", "--force"],
    );
    case.restore_and_pass(true, &warning, &["--new-pid", "--force"]);
}

#[test]
fn verify_accepts_signed_refuses_unsigned_and_tampered() {
    let Some((_g, mut case, img)) = start("crak-sfr-verify") else {
        return;
    };
    let key = crak_format::auth::SecretKey::from_seed([42u8; 32]);
    let pubkey = case.path("key.pub");
    std::fs::write(&pubkey, format!("{}\n", key.public().to_hex())).expect("key");
    let pubkey = pubkey.to_str().expect("utf-8").to_string();
    let plain = std::fs::read(&img).expect("image");
    let signed = crak_format::auth::sign(&plain, &key).expect("sign");
    let signed_path = case.path("signed.crak");
    std::fs::write(&signed_path, &signed).expect("write");
    std::fs::set_permissions(&signed_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let unsigned = case.user_copy(&img, "unsigned.crak");
    case.restore_refused(
        true,
        &unsigned,
        &["--new-pid", "--verify", &pubkey],
        1,
        &["not signed"],
    );

    // CREDS altered after signing (its CRC fixed, so that only the signature can tell).
    let parsed = crak_format::parse(&signed).expect("signed parses");
    let span = parsed
        .layout
        .records
        .iter()
        .find(|r| r.kind == crak_format::record::kind::CREDS)
        .copied()
        .expect("a CREDS record");
    drop(parsed);
    let mut bad = signed.clone();
    let start = span.payload_offset() as usize;
    let len = span.length as usize;
    bad[start + 4..start + 8].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&bad[span.offset as usize..start + len]);
    bad[start + len..start + len + 4].copy_from_slice(&crc.to_le_bytes());
    let bad_path = case.path("tampered.crak");
    std::fs::write(&bad_path, &bad).expect("write");
    std::fs::set_permissions(&bad_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let offset = format!("CREDS record at offset {}", span.offset);
    case.restore_refused(
        false,
        &bad_path,
        &["--verify", &pubkey],
        1,
        &[&offset, "differs"],
    );

    case.restore_and_pass(true, &signed_path, &["--new-pid", "--verify", &pubkey]);
}

/// A deleted file is recreated by the image's user and never with set-ID bits, whatever mode
/// the image claims; root restoring it still runs the program as the user.
#[test]
fn deleted_file_is_the_users_and_never_set_id() {
    let Some((_g, mut case, img)) = start("crak-sfr-setid") else {
        return;
    };
    let edited = case.edited(&img, "setid.crak", |i| {
        let f = fd_of(i, 4);
        assert!(f.deleted, "fd 4 is the deleted file");
        f.mode = 0o100000 | 0o6755;
    });
    let _ = std::fs::remove_file(case.path("result"));
    let o = case.restore(false, &edited, &[]);
    if !o.status.success() {
        case.fail("crak-restore failed");
    }
    let pid: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| case.fail("no PID"));
    case.pids.push(pid);
    let md = std::fs::metadata(format!("/proc/{pid}/fd/4")).expect("stat the deleted file");
    if md.mode() & 0o7777 != 0o755 || md.uid() != case.user.uid {
        case.fail(&format!(
            "the deleted file has mode {:o} and owner {}, want 755 and {}",
            md.mode() & 0o7777,
            md.uid(),
            case.user.uid
        ));
    }
    let _ = crak_restore::sys::process::kill(pid, libc::SIGUSR2);
    if case.wait_file("result").trim() != "PASS" {
        case.fail("the program failed");
    }
}

/// crak-restore installed set-user-ID root would let any user give any credentials: it
/// refuses to run so.
#[test]
fn set_user_id_crak_restore_refuses_to_run() {
    let Some((_g, mut case, img)) = start("crak-sfr-suid") else {
        return;
    };
    let suid = case.path("crak-restore-suid");
    std::fs::copy(bin("crak-restore"), &suid).expect("copy crak-restore");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let mine = case.user_copy(&img, "mine.crak");
    let mut cmd = case.user.command(&suid);
    cmd.args(["--detach", "--new-pid"]).arg(&mine);
    let o = case.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(2) || !err.contains("set-user-ID") {
        case.fail("a set-user-ID crak-restore ran");
    }
    if !case.program_pids().is_empty() {
        case.fail("a process was restored");
    }
}
