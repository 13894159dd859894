//! Live tests of System V IPC (spec §3.18–§3.20): a shared memory segment shared by a process
//! tree and guarded by a semaphore, and a message queue of 100 messages drained after the
//! restore. Each program checks its own state after the restore and writes PASS or FAIL; the
//! objects are removed by the program, or by the test's guard when it fails.

use crak_restore::sys::sysvipc;
use crak_tests::{bin, serial, wait_gone};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory, the test program and what to clean up: processes and IPC objects.
struct Case {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pids: Vec<i32>,
    shm: Vec<i32>,
    sem: Vec<i32>,
    msg: Vec<i32>,
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.pids {
            crak_tests::signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
        for &id in &self.shm {
            let _ = sysvipc::shm_rmid(id);
        }
        for &id in &self.sem {
            let _ = sysvipc::sem_rmid(id);
        }
        for &id in &self.msg {
            let _ = sysvipc::msg_rmid(id);
        }
    }
}

fn shm_exists(id: i32) -> bool {
    sysvipc::shm_stat(id).is_ok()
}

fn msg_exists(id: i32) -> bool {
    sysvipc::msg_stat(id).is_ok()
}

fn sem_exists(id: i32) -> bool {
    sysvipc::sem_stat(id).is_ok()
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::Builder::new()
                .prefix("crak-ipc-")
                .tempdir()
                .expect("tempdir"),
            child: None,
            pids: Vec::new(),
            shm: Vec::new(),
            sem: Vec::new(),
            msg: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Compiles tests/live/<name>.c and starts it in the scratch directory; waits for READY and
    /// returns its pid and the words of its "ids" file.
    fn start(&mut self, name: &str, args: &[&str]) -> (i32, Vec<i32>) {
        let src = crak_tests::workspace_root()
            .join("tests/live")
            .join(format!("{name}.c"));
        let exe = self.path(name);
        let o = Command::new("cc")
            .args(["-O1", "-g", "-Wall", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("cc");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let child = Command::new(&exe)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        self.child = Some(child);
        self.wait_file("ready");
        let ids: Vec<i32> = self
            .wait_file("ids")
            .split_whitespace()
            .map(|w| w.parse().expect("ids"))
            .collect();
        // Let it reach the state it runs in.
        std::thread::sleep(Duration::from_millis(200));
        (pid, ids)
    }

    fn wait_file(&self, name: &str) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(self.path(name)) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {name}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends go (SIGUSR2) and waits for the verdict.
    fn go(&self, pid: i32) -> String {
        let _ = std::fs::remove_file(self.path("result"));
        crak_tests::signal(pid, libc::SIGUSR2);
        self.wait_file("result").trim().to_string()
    }

    /// Reaps the started program once it is gone (captured and killed, or ended).
    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("run");
    eprintln!(
        "$ {cmd:?}\n  -> {}\n  stdout: {}  stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn capture(pid: i32, img: &Path, extra: &[&str]) {
    let o = run(Command::new(bin("crak-capture"))
        .arg(pid.to_string())
        .arg("-o")
        .arg(img)
        .args(extra));
    assert!(o.status.success(), "crak-capture failed");
}

/// `crak-restore --detach IMAGE` with `extra`; the restored pid, or the failed output.
fn restore(img: &Path, extra: &[&str]) -> Result<i32, Output> {
    let o = run(Command::new(bin("crak-restore"))
        .arg("--detach")
        .args(extra)
        .arg(img));
    if !o.status.success() {
        return Err(o);
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("crak-restore printed a pid"))
}

fn dump(img: &Path, json: bool) -> String {
    let mut cmd = Command::new(bin("crak-dump"));
    cmd.arg(img);
    if json {
        cmd.arg("--json");
    }
    let o = run(&mut cmd);
    assert!(o.status.success(), "crak-dump failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The /SYSV lines of /proc/PID/maps: range, permissions, offset, inode (the shmid), name.
fn sysv_maps(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/SYSV"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", f[0], f[1], f[2], f[4], f[5])
        })
        .collect()
}

#[test]
fn sysv_shm_shared_by_a_tree_and_guarded_by_a_semaphore() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_shm", &[]);
    let (shmid, semid, key, child) = (ids[0], ids[1], ids[2], ids[3]);
    case.shm.push(shmid);
    case.sem.push(semid);
    let maps = (sysv_maps(pid), sysv_maps(child));
    assert_eq!(maps.0.len(), 2, "{maps:?}");
    assert_eq!(maps.1.len(), 1, "{maps:?}");
    let img = case.path("image.crak");
    capture(pid, &img, &[]);
    case.reap();
    assert!(wait_gone(pid, Duration::from_secs(5)) && wait_gone(child, Duration::from_secs(5)));

    // The image holds the segment, the set and the mappings naming the segment.
    let json: serde_json::Value = serde_json::from_str(&dump(&img, true)).expect("json");
    let seg = &json["shm_segments"][0];
    assert_eq!(seg["perm"]["id"], shmid);
    assert_eq!(seg["perm"]["key"], key as u32);
    assert_eq!(seg["size"], 3 * 4096 + 100);
    assert_eq!(json["sem_sets"][0]["perm"]["id"], semid);
    assert_eq!(json["sem_sets"][0]["sems"][1]["value"], 42);
    let table = dump(&img, false);
    assert!(table.contains("SysV shared memory"), "{table}");
    assert!(table.contains(&format!("{:#010x}", key as u32)), "{table}");
    assert!(table.contains("SysV semaphore sets"), "{table}");

    // The objects outlive their processes: the ids are taken, and the restore says so.
    assert!(shm_exists(shmid) && sem_exists(semid));
    let refused = restore(&img, &[]).expect_err("a taken id is refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&format!("segment {shmid}")), "{err}");
    assert!(err.contains("--ipc-replace"), "{err}");
    assert!(
        wait_gone(pid, Duration::from_secs(1)),
        "a refused restore left a process"
    );

    let restored = restore(&img, &["--ipc-replace"]).expect("restore with --ipc-replace");
    case.pids.push(restored);
    assert_eq!(restored, pid);
    case.pids.push(child);
    assert_eq!((sysv_maps(pid), sysv_maps(child)), maps);
    assert_eq!(case.go(pid), "PASS");
    assert!(wait_gone(pid, Duration::from_secs(10)));
    // The program removed both objects.
    assert!(!shm_exists(shmid) && !sem_exists(semid));
}

#[test]
fn a_removed_segment_is_restored_removed_and_goes_with_its_processes() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_shm", &["rmid"]);
    let (shmid, semid, child) = (ids[0], ids[1], ids[3]);
    case.shm.push(shmid);
    case.sem.push(semid);
    let maps = (sysv_maps(pid), sysv_maps(child));
    let img = case.path("image.crak");
    capture(pid, &img, &[]);
    case.reap();
    assert!(wait_gone(pid, Duration::from_secs(5)) && wait_gone(child, Duration::from_secs(5)));
    let json: serde_json::Value = serde_json::from_str(&dump(&img, true)).expect("json");
    let seg = &json["shm_segments"][0];
    assert_eq!(seg["perm"]["key"], 0);
    assert_eq!(
        seg["perm"]["mode"].as_u64().map(|m| m & 0o1000),
        Some(0o1000)
    );
    // Its last process was killed: the segment is gone, the semaphore set is not.
    assert!(!shm_exists(shmid) && sem_exists(semid));
    let restored = restore(&img, &["--ipc-replace"]).expect("restore");
    case.pids.push(restored);
    case.pids.push(child);
    assert_eq!((sysv_maps(pid), sysv_maps(child)), maps);
    assert_eq!(case.go(pid), "PASS");
    assert!(wait_gone(pid, Duration::from_secs(10)));
    assert!(
        !shm_exists(shmid),
        "the removed segment outlived its processes"
    );
}

#[test]
fn a_capture_leaving_the_tree_running_leaves_its_segment_and_semaphores_alone() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_shm", &[]);
    let (shmid, semid, child) = (ids[0], ids[1], ids[3]);
    case.shm.push(shmid);
    case.sem.push(semid);
    case.pids.push(child);
    let img = case.path("image.crak");
    // With a forked snapshot (the default), then without.
    capture(pid, &img, &["--leave-running"]);
    capture(pid, &img, &["--leave-running", "--no-snapshot"]);
    let json: serde_json::Value = serde_json::from_str(&dump(&img, true)).expect("json");
    assert_eq!(json["shm_segments"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["sem_sets"][0]["perm"]["id"], semid);
    // Still three attachments (the capture's own is gone), still counting, same state.
    assert_eq!(case.go(pid), "PASS");
    case.reap();
    assert!(!shm_exists(shmid) && !sem_exists(semid));
}

#[test]
fn msg_queue_of_100_messages_left_intact_by_capture_and_drained_after_restore() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_msg", &[]);
    let (msqid, key) = (ids[0], ids[1]);
    case.msg.push(msqid);
    let img = case.path("image.crak");
    // A capture that leaves the process running takes no message.
    capture(pid, &img, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap();
    assert!(!msg_exists(msqid), "the program removed its queue");

    let json: serde_json::Value = serde_json::from_str(&dump(&img, true)).expect("json");
    let q = &json["msg_queues"][0];
    assert_eq!(q["perm"]["id"], msqid);
    assert_eq!(q["perm"]["key"], key as u32);
    assert_eq!(q["qbytes"], 8192);
    assert_eq!(q["messages"].as_array().map(Vec::len), Some(100));
    assert_eq!(q["messages"][7]["mtype"], 3);
    let table = dump(&img, false);
    assert!(table.contains("SysV message queues"), "{table}");

    // The queue is gone: the restore makes it again with its id and messages.
    let restored = restore(&img, &[]).expect("restore");
    case.pids.push(restored);
    assert_eq!(restored, pid);
    assert!(msg_exists(msqid));
    assert_eq!(case.go(pid), "PASS");
    assert!(wait_gone(pid, Duration::from_secs(10)));
    assert!(!msg_exists(msqid));
}

#[test]
fn a_failed_restore_removes_the_objects_it_made() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_msg", &[]);
    let msqid = ids[0];
    case.msg.push(msqid);
    let img = case.path("image.crak");
    capture(pid, &img, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap();
    // An injected fault after the fork: the queue made before it goes again.
    let o = run(Command::new(bin("crak-restore"))
        .env("CRAK_FAULT", "restore-after-fork")
        .arg("--detach")
        .arg(&img));
    assert!(!o.status.success());
    assert!(wait_gone(pid, Duration::from_secs(5)));
    assert!(
        !msg_exists(msqid),
        "the queue of a failed restore is left behind"
    );
}

#[test]
fn a_key_taken_by_another_object_is_refused_and_left_alone() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_msg", &[]);
    let (msqid, key) = (ids[0], ids[1]);
    case.msg.push(msqid);
    let img = case.path("image.crak");
    capture(pid, &img, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap();
    // Another queue takes the key (with another id: ids carry a sequence number).
    let other = sysvipc::msg_get(key, libc::IPC_CREAT | 0o600).expect("msgget");
    case.msg.push(other);
    assert_ne!(other, msqid);
    for replace in [false, true] {
        let args: &[&str] = if replace { &["--ipc-replace"] } else { &[] };
        let refused = restore(&img, args).expect_err("a taken key is refused");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains(&format!("key {:#010x} is taken by id {other}", key as u32)),
            "{err}"
        );
        assert!(wait_gone(pid, Duration::from_secs(1)));
        assert!(msg_exists(other), "the other queue was touched");
        assert!(!msg_exists(msqid), "the refused restore left its queue");
    }
}
