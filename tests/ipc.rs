//! Live tests of System V IPC (spec §3.18–§3.20): a shared memory segment shared by a process
//! tree and guarded by a semaphore, and a message queue of 100 messages drained after the
//! restore. Each program checks its own state after the restore and writes PASS or FAIL; the
//! objects are removed by the program, or by the test's guard when it fails.

use crak_restore::sys::sysvipc;
use crak_tests::{serial, wait_gone, Scratch};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// A test's scratch directory ([`Scratch`]: its processes and transcript) and the IPC objects
/// to remove once its processes are gone.
struct Case {
    s: Scratch,
    ipc: Ipc,
}

/// IPC objects removed on drop, whether the program removed them already or not.
#[derive(Default)]
struct Ipc {
    shm: Vec<i32>,
    sem: Vec<i32>,
    msg: Vec<i32>,
}

impl Drop for Ipc {
    fn drop(&mut self) {
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

impl Drop for Case {
    fn drop(&mut self) {
        // The assertions of the tests panic without the transcript: show it with the failure.
        if std::thread::panicking() {
            eprintln!("--- transcript ---\n{}", self.s.log);
        }
    }
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
            s: Scratch::new("crak-ipc-"),
            ipc: Ipc::default(),
        }
    }

    /// Compiles tests/live/<name>.c and starts it in the scratch directory; waits for READY and
    /// returns its pid and the words of its "ids" file.
    fn start(&mut self, name: &str, args: &[&str]) -> (i32, Vec<i32>) {
        let exe = self.s.compile(name);
        let pid = self.s.spawn(&exe, args);
        self.wait_file("ready", Duration::from_secs(30));
        let ids: Vec<i32> = self
            .wait_file("ids", Duration::from_secs(30))
            .split_whitespace()
            .map(|w| w.parse().expect("ids"))
            .collect();
        // Let it reach the state it runs in.
        std::thread::sleep(Duration::from_millis(200));
        (pid, ids)
    }

    /// Sends go (SIGUSR2) and waits for the verdict.
    fn go(&self, pid: i32) -> String {
        let _ = std::fs::remove_file(self.path("result"));
        crak_tests::signal(pid, libc::SIGUSR2);
        self.wait_file("result", Duration::from_secs(30))
            .trim()
            .to_string()
    }

    /// Reaps the started program `pid` once it is gone (ended after a capture that left it
    /// running).
    fn reap(&mut self, pid: i32) {
        if let Some(i) = self.s.children.iter().position(|c| c.id() as i32 == pid) {
            let _ = self.s.children.remove(i).wait();
        }
    }

    /// `crak-restore --detach IMAGE` with `extra`; the restored pid (killed at the end), or the
    /// failed output.
    fn restore(&mut self, img: &Path, extra: &[&str]) -> Result<i32, Output> {
        let mut args = vec!["--detach"];
        args.extend_from_slice(extra);
        let cmd = self.s.restore_cmd(img, &args);
        let o = self.s.run(cmd);
        if !o.status.success() {
            return Err(o);
        }
        let pid = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("crak-restore printed a pid");
        self.s.pids.push(pid);
        Ok(pid)
    }

    fn dump_json(&mut self, img: &Path) -> serde_json::Value {
        serde_json::from_str(&self.s.dump(img, &["--json"])).expect("json")
    }
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
    case.ipc.shm.push(shmid);
    case.ipc.sem.push(semid);
    let maps = (sysv_maps(pid), sysv_maps(child));
    assert_eq!(maps.0.len(), 2, "{maps:?}");
    assert_eq!(maps.1.len(), 1, "{maps:?}");
    let img = case.capture(pid, &[]);
    assert!(wait_gone(pid, Duration::from_secs(5)) && wait_gone(child, Duration::from_secs(5)));

    // The image holds the segment, the set and the mappings naming the segment.
    let json = case.dump_json(&img);
    let seg = &json["shm_segments"][0];
    assert_eq!(seg["perm"]["id"], shmid);
    assert_eq!(seg["perm"]["key"], key as u32);
    assert_eq!(seg["size"], 3 * 4096 + 100);
    assert_eq!(json["sem_sets"][0]["perm"]["id"], semid);
    assert_eq!(json["sem_sets"][0]["sems"][1]["value"], 42);
    let table = case.dump(&img, &[]);
    assert!(table.contains("SysV shared memory"), "{table}");
    assert!(table.contains(&format!("{:#010x}", key as u32)), "{table}");
    assert!(table.contains("SysV semaphore sets"), "{table}");

    // The objects outlive their processes: the ids are taken, and the restore says so.
    assert!(shm_exists(shmid) && sem_exists(semid));
    let refused = case.restore(&img, &[]).expect_err("a taken id is refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&format!("segment {shmid}")), "{err}");
    assert!(err.contains("--ipc-replace"), "{err}");
    assert!(
        wait_gone(pid, Duration::from_secs(1)),
        "a refused restore left a process"
    );

    let restored = case
        .restore(&img, &["--ipc-replace"])
        .expect("restore with --ipc-replace");
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
    case.ipc.shm.push(shmid);
    case.ipc.sem.push(semid);
    let maps = (sysv_maps(pid), sysv_maps(child));
    let img = case.capture(pid, &[]);
    assert!(wait_gone(pid, Duration::from_secs(5)) && wait_gone(child, Duration::from_secs(5)));
    let json = case.dump_json(&img);
    let seg = &json["shm_segments"][0];
    assert_eq!(seg["perm"]["key"], 0);
    assert_eq!(
        seg["perm"]["mode"].as_u64().map(|m| m & 0o1000),
        Some(0o1000)
    );
    // Its last process was killed: the segment is gone, the semaphore set is not.
    assert!(!shm_exists(shmid) && sem_exists(semid));
    case.restore(&img, &["--ipc-replace"]).expect("restore");
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
    case.ipc.shm.push(shmid);
    case.ipc.sem.push(semid);
    case.pids.push(child);
    // With a forked snapshot (the default), then without.
    case.capture(pid, &["--leave-running"]);
    let img = case.capture(pid, &["--leave-running", "--no-snapshot"]);
    let json = case.dump_json(&img);
    assert_eq!(json["shm_segments"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["sem_sets"][0]["perm"]["id"], semid);
    // Still three attachments (the capture's own is gone), still counting, same state.
    assert_eq!(case.go(pid), "PASS");
    case.reap(pid);
    assert!(!shm_exists(shmid) && !sem_exists(semid));
}

#[test]
fn msg_queue_of_100_messages_left_intact_by_capture_and_drained_after_restore() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let (pid, ids) = case.start("ipc_msg", &[]);
    let (msqid, key) = (ids[0], ids[1]);
    case.ipc.msg.push(msqid);
    // A capture that leaves the process running takes no message.
    let img = case.capture(pid, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap(pid);
    assert!(!msg_exists(msqid), "the program removed its queue");

    let json = case.dump_json(&img);
    let q = &json["msg_queues"][0];
    assert_eq!(q["perm"]["id"], msqid);
    assert_eq!(q["perm"]["key"], key as u32);
    assert_eq!(q["qbytes"], 8192);
    assert_eq!(q["messages"].as_array().map(Vec::len), Some(100));
    assert_eq!(q["messages"][7]["mtype"], 3);
    let table = case.dump(&img, &[]);
    assert!(table.contains("SysV message queues"), "{table}");

    // The queue is gone: the restore makes it again with its id and messages.
    let restored = case.restore(&img, &[]).expect("restore");
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
    case.ipc.msg.push(msqid);
    let img = case.capture(pid, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap(pid);
    // An injected fault after the fork: the queue made before it goes again.
    let mut cmd = case.restore_cmd(&img, &["--detach"]);
    cmd.env("CRAK_FAULT", "restore-after-fork");
    let o = case.run(cmd);
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
    case.ipc.msg.push(msqid);
    let img = case.capture(pid, &["--leave-running"]);
    assert_eq!(case.go(pid), "PASS");
    case.reap(pid);
    // Another queue takes the key (with another id: ids carry a sequence number).
    let other = sysvipc::msg_get(key, libc::IPC_CREAT | 0o600).expect("msgget");
    case.ipc.msg.push(other);
    assert_ne!(other, msqid);
    for replace in [false, true] {
        let args: &[&str] = if replace { &["--ipc-replace"] } else { &[] };
        let refused = case
            .restore(&img, args)
            .expect_err("a taken key is refused");
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
