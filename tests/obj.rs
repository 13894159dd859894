//! Live tests of the kernel objects of format 1.2: memfds and POSIX shared memory, inotify
//! instances, file locks, interval and POSIX timers. Each program (tests/live/obj_*.c) sets up
//! its objects and says READY; it is captured with the real `crak-capture`, restored with the
//! real `crak-restore --detach`, told to go (SIGUSR2), and checks its own objects. The harness
//! also compares `/proc/PID/maps` and the fd table before and after, and what `crak-dump`
//! shows of the image.

use crak_tests::{bin, serial, wait_gone, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A program of tests/live/obj_*.c running in its scratch directory.
struct Run {
    s: Scratch,
    pid: i32,
}

impl std::ops::Deref for Run {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.s
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.s
    }
}

impl Run {
    /// Compiles and starts tests/live/<name>.c in a scratch directory; waits for READY.
    fn start(name: &str) -> Run {
        let mut s = Scratch::new("crak-obj-");
        let exe = s.compile(name);
        let pid = s.spawn(&exe, &[]);
        s.wait_file("ready", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
        Run { s, pid }
    }

    fn pid(&self) -> i32 {
        self.pid
    }

    fn cmd(&mut self, c: Command) -> std::process::Output {
        self.s.run(c)
    }

    /// Captures the program (killing it unless `extra` says otherwise) into image.crak.
    fn capture(&mut self, extra: &[&str]) -> PathBuf {
        let pid = self.pid;
        self.s.capture(pid, extra)
    }

    fn restore(&mut self, img: &Path) -> i32 {
        self.s.restore_detached(img, &[])
    }

    fn dump(&mut self, img: &Path, json: bool) -> String {
        self.s.dump(img, if json { &["--json"] } else { &[] })
    }
}

/// `/proc/PID/maps` ranges, perms and paths, and the fd table's targets and flags.
fn views(pid: i32) -> (Vec<String>, Vec<String>) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} {} {}",
                w.first().unwrap_or(&""),
                w.get(1).unwrap_or(&""),
                w.get(5..).map(|p| p.join(" ")).unwrap_or_default()
            )
        })
        .collect();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let t = std::fs::read_link(e.path()).unwrap_or_default();
                    // A pipe the test runner passed down is closed by the restore (a warning
                    // of the capture says so); the programs hold none of their own.
                    if t.to_string_lossy().starts_with("pipe:") {
                        return None;
                    }
                    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}"))
                        .unwrap_or_default();
                    let flags = info.lines().find(|l| l.starts_with("flags:")).unwrap_or("");
                    Some(format!("{n} {} {flags}", t.display()))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    (maps, fds)
}

/// Capture, restore with the same pid, same maps and fds, go, PASS; returns the image's dump.
fn round_trip(name: &str) -> (Run, String, String) {
    let mut run = Run::start(name);
    let pid = run.pid();
    let before = views(pid);
    let img = run.capture(&[]);
    let table = run.dump(&img, false);
    let json = run.dump(&img, true);
    let restored = run.restore(&img);
    if restored != pid {
        run.fail(&format!("restored as {restored}, captured as {pid}"));
    }
    let after = views(restored);
    if before != after {
        let mut d = String::new();
        for (b, a) in [(&before.0, &after.0), (&before.1, &after.1)] {
            for l in b.iter().filter(|l| !a.contains(l)) {
                d += &format!("- {l}\n");
            }
            for l in a.iter().filter(|l| !b.contains(l)) {
                d += &format!("+ {l}\n");
            }
        }
        run.fail(&format!("/proc views differ after restore:\n{d}"));
    }
    run.go_and_expect_pass(restored);
    (run, table, json)
}

#[test]
fn memfd_with_seals_only_mapped_memfd_and_posix_shm() {
    crak_tests::need_root!();
    let _g = serial();
    let (run, table, json) = round_trip("obj_memfd");
    for want in [
        "memfd:crak-sealed",
        "F_SEAL_SHRINK|F_SEAL_GROW",
        "sealable",
        "12 KiB",
    ] {
        if !table.contains(want) {
            run.fail(&format!("crak-dump does not show {want:?}:\n{table}"));
        }
    }
    if !json.contains("\"kind\": \"memfd\"") && !json.contains("\"kind\":\"memfd\"") {
        run.fail("crak-dump --json has no memfd fd");
    }
}

#[test]
fn inotify_reports_files_created_after_restore_with_saved_watch_descriptors() {
    crak_tests::need_root!();
    let _g = serial();
    let (run, table, _) = round_trip("obj_inotify");
    if !table.contains("inotify") || !table.contains("IN_CREATE") {
        run.fail(&format!("crak-dump does not show the watches:\n{table}"));
    }
}

#[test]
fn flock_posix_and_ofd_locks_still_held_after_restore() {
    crak_tests::need_root!();
    let _g = serial();
    let (run, table, json) = round_trip("obj_locks");
    for want in ["File locks", "LOCK_EX", "F_WRLCK", "10-19", "ofd"] {
        if !table.contains(want) {
            run.fail(&format!("crak-dump does not show {want:?}:\n{table}"));
        }
    }
    if !json.contains("\"locks\"") {
        run.fail("crak-dump --json has no locks");
    }
}

#[test]
fn capture_leaving_the_process_running_keeps_its_locks() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Run::start("obj_locks");
    let pid = run.pid();
    let img = run.capture(&["--leave-running"]);
    let table = run.dump(&img, false);
    if !table.contains("LOCK_EX") {
        run.fail(&format!("no lock in the image:\n{table}"));
    }
    // The original checks that no other process can take its locks.
    run.go_and_expect_pass(pid);
}

#[test]
fn itimer_and_posix_timers_keep_firing_with_their_periods_and_ids() {
    crak_tests::need_root!();
    let _g = serial();
    let (run, table, json) = round_trip("obj_timers");
    for want in [
        "Timers",
        "ITIMER_REAL",
        "0.05 s",
        "0.03 s",
        "timer 1",
        "CLOCK_MONOTONIC",
    ] {
        if !table.contains(want) {
            run.fail(&format!("crak-dump does not show {want:?}:\n{table}"));
        }
    }
    if !json.contains("\"itimers\"") {
        run.fail("crak-dump --json has no timers");
    }
}

#[test]
fn restore_fails_cleanly_when_another_process_took_a_saved_lock() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Run::start("obj_locks");
    let pid = run.pid();
    let img = run.capture(&[]);
    // Another process takes the flock the image holds before the restore.
    let thief = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(run.path("flocked"))
        .expect("open flocked");
    // flock(LOCK_EX | LOCK_NB).
    thief
        .try_lock()
        .expect("the captured process's lock should be gone with it");
    let mut c = Command::new(bin("crak-restore"));
    c.arg("--detach").arg(&img);
    let o = run.cmd(c);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        run.fail("the restore succeeded without its lock");
    }
    if !err.contains("another process holds a conflicting lock") || !err.contains("flock(") {
        run.fail(&format!("the error does not name the lock: {err}"));
    }
    // Nothing of the half-built process is left.
    if !wait_gone(pid, Duration::from_secs(5)) {
        run.fail("the half-built process is still there");
    }
    drop(thief);
}

#[test]
fn inotify_watch_on_a_replaced_directory_is_refused_before_anything_is_created() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Run::start("obj_inotify");
    let pid = run.pid();
    let img = run.capture(&[]);
    // Renamed away (so that the new directory cannot reuse its inode number) and replaced.
    std::fs::rename(run.path("b"), run.path("b-old")).expect("rename b");
    std::fs::create_dir(run.path("b")).expect("mkdir b");
    let mut c = Command::new(bin("crak-restore"));
    c.arg("--detach").arg(&img);
    let o = run.cmd(c);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        run.fail("the restore watched another directory");
    }
    if !err.contains("watched by inotify fd") || !err.contains("is another file now") {
        run.fail(&format!("the refusal does not name the watch: {err}"));
    }
    if !crak_tests::is_gone(pid) {
        run.fail("a process was created");
    }
}

#[test]
fn memfd_shared_by_a_parent_and_its_child_stays_one_object() {
    crak_tests::need_root!();
    let _g = serial();
    let (run, _, json) = round_trip("obj_memfd_tree");
    if json.matches("\"kind\": \"memfd\"").count() < 2 {
        run.fail("the image does not hold the memfd fd of both processes");
    }
}

#[test]
fn thread_directed_timer_follows_its_thread_to_a_new_pid() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Run::start("obj_timers");
    let pid = run.pid();
    let img = run.capture(&[]);
    // A first restore takes the saved pid and tids; the second gets new ones.
    let first = run.restore(&img);
    if first != pid {
        run.fail(&format!("restored as {first}, captured as {pid}"));
    }
    let mut c = Command::new(bin("crak-restore"));
    c.arg("--detach").arg("--new-pid").arg(&img);
    let o = run.cmd(c);
    if !o.status.success() {
        run.fail("crak-restore --new-pid failed");
    }
    let second: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| run.fail("no pid printed"));
    run.pids.push(second);
    if second == pid {
        run.fail("the second restore got the taken pid");
    }
    let _ = crak_restore::sys::process::kill(first, libc::SIGKILL);
    wait_gone(first, Duration::from_secs(5));
    run.go_and_expect_pass(second);
}
