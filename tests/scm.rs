//! Live tests of files and credentials in flight in Unix socket queues (SCM records, format
//! 1.3): a program passes a pipe's read end, a regular file at an offset and an eventfd over a
//! socket pair and a named datagram socket, with credentials, and receives them only after it
//! was captured and restored (tests/live/scm.c checks them itself).

use crak_tests::{serial, Scratch};
use std::time::Duration;

/// Compiles tests/live/NAME.c and starts it in the scratch directory; waits for `ready`.
fn start(run: &mut Scratch, name: &str) -> i32 {
    let exe = run.compile(name);
    let pid = run.spawn(&exe, &[]);
    run.wait_file("ready", Duration::from_secs(30));
    // Let the program reach the state it waits in.
    std::thread::sleep(Duration::from_millis(200));
    pid
}

#[test]
fn files_and_credentials_in_flight_come_back_with_their_messages() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-scm-");
    let pid = start(&mut run, "scm");
    let img = run.capture(pid, &[]);
    // The image holds what was in flight: two stream messages with a file each, credentials
    // on every message of the receivers with SO_PASSCRED, the eventfd on the datagram socket.
    let shown = run.dump(&img, &[]);
    for want in [
        "In flight",
        "pipe",
        "data.txt",
        "eventfd",
        "uid 4242 gid 4343",
    ] {
        if !shown.contains(want) {
            run.fail(&format!("crak-dump shows no {want:?}:\n{shown}"));
        }
    }
    let json = run.dump(&img, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("crak-dump --json");
    let scm = v["scm"].as_array().cloned().unwrap_or_default();
    let files: usize = scm
        .iter()
        .map(|s| s["files"].as_array().map_or(0, |f| f.len()))
        .sum();
    if scm.len() != 5 || files != 3 {
        run.fail(&format!(
            "{} SCM records with {files} files, want 5 with 3:\n{json}",
            scm.len()
        ));
    }
    let restored = run.restore_detached(&img, &[]);
    if restored != pid {
        run.fail(&format!("restored as {restored}, captured as {pid}"));
    }
    run.go_and_expect_pass(pid);
}

#[test]
fn a_capture_that_leaves_the_program_running_leaves_its_queues_whole() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-scm-");
    let pid = start(&mut run, "scm");
    let img = run.capture(pid, &["--leave-running"]);
    if !img.exists() {
        run.fail("no image");
    }
    // Peeking took nothing: the program receives every file and credential it sent.
    run.go_and_expect_pass(pid);
}

#[test]
fn credentials_in_flight_name_the_restored_pid_under_new_pid() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-scm-");
    let exe = run.compile("scm");
    let pid = run.spawn(&exe, &["pair"]);
    run.wait_file("ready", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    // The original keeps running (and its pid): the copy gets another pid, and the
    // credentials the original sent itself must name the copy.
    let img = run.capture(pid, &["--leave-running"]);
    let copy = run.restore_detached(&img, &["--new-pid"]);
    if copy == pid {
        run.fail("--new-pid gave the copy the original's pid");
    }
    run.go_and_expect_pass(copy);
    std::fs::remove_file(run.path("result")).expect("the copy's result");
    run.go_and_expect_pass(pid);
}

/// Starts tests/live/scm_tree.c with `args`, captures it (killing the tree) and restores it.
fn tree_round_trip(run: &mut Scratch, args: &[&str]) {
    let exe = run.compile("scm_tree");
    let pid = run.spawn(&exe, args);
    run.wait_file("ready", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    let img = run.capture(pid, &[]);
    let restored = run.restore_detached(&img, &[]);
    if restored != pid {
        run.fail(&format!("restored as {restored}, captured as {pid}"));
    }
    run.go_and_expect_pass(pid);
}

#[test]
fn files_in_flight_between_processes_of_a_tree_stay_the_objects_they_share() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-scm-");
    tree_round_trip(&mut run, &[]);
}

#[test]
fn credentials_of_a_child_not_yet_restored_name_it() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-scm-");
    // The parent's end is made (and its queue refilled) before the child exists again: a
    // stand-in holds the child's pid while the message is sent.
    tree_round_trip(&mut run, &["creds"]);
}
