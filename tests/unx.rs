//! Live tests of Unix sockets beyond socketpairs (FD kind UNIX_SOCKET, format 1.2): a server
//! in the tree with its clients (listeners on a path and an abstract name, accepted and
//! pending connections, named datagram sockets), and a socket connected to a listener outside
//! the tree, refused unless `--external-unix` names it.
//!
//! Each program (tests/live/unx_*.c) sets up its sockets, writes `ready`, is captured (which
//! kills it) and restored, and on SIGUSR2 checks its own state and writes `result`.

use crak_tests::{bin, serial, signal, wait_gone, Scratch};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The live tests' scratch directory and processes.
type Run = Scratch;

/// Compiles tests/live/NAME.c and starts it in the scratch directory; waits for `ready`.
fn start(run: &mut Run, name: &str) -> i32 {
    let exe = run.compile(name);
    let pid = run.spawn(&exe, &[]);
    run.wait_file("ready", Duration::from_secs(30));
    // Let the program reach the state it waits in.
    std::thread::sleep(Duration::from_millis(200));
    pid
}

/// `crak-restore --detach ARGS IMAGE`, successful or not; a restored PID is killed at the end.
fn restore(run: &mut Run, img: &Path, args: &[&str]) -> Output {
    let mut a = vec!["--detach"];
    a.extend_from_slice(args);
    let cmd = run.restore_cmd(img, &a);
    let o = run.run(cmd);
    if o.status.success() {
        if let Ok(pid) = String::from_utf8_lossy(&o.stdout).trim().parse() {
            run.pids.push(pid);
        }
    }
    o
}

#[test]
fn unix_socket_server_with_clients_in_the_tree() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-unx-");
    let pid = start(&mut run, "unx_server");
    let img = run.capture(pid, &[]);
    // The image says what it holds.
    let shown = run.dump(&img, &[]);
    for want in [
        "unix_socket",
        "listening (backlog 8, 1 pending)",
        "seqpacket @crak-unx-seq-",
        "[640 0:0]",
        "dgram",
        "2 messages queued",
    ] {
        if !shown.contains(want) {
            run.fail(&format!("crak-dump shows no {want:?}:\n{shown}"));
        }
    }
    // A restore that fails after making the sockets leaves no socket file it created and no
    // process behind.
    for name in ["srv.sock", "dg.sock"] {
        std::fs::remove_file(run.path(name)).expect("the stale socket file");
    }
    let o = run.run(
        Command::new(bin("crak-restore"))
            .env("CRAK_FAULT", "restore-after-fork")
            .arg("--detach")
            .arg(&img),
    );
    if o.status.code() != Some(2) {
        run.fail("CRAK_FAULT=restore-after-fork: the restore must fail");
    }
    for name in ["srv.sock", "dg.sock"] {
        if run.path(name).exists() {
            run.fail(&format!("a failed restore left the socket file {name}"));
        }
    }
    if !wait_gone(pid, Duration::from_secs(5)) {
        run.fail("a failed restore left the process running");
    }
    // The socket file of a socket in use is not taken over.
    let live = std::os::unix::net::UnixListener::bind(run.path("srv.sock")).expect("bind");
    let o = restore(&mut run, &img, &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() || !err.contains("srv.sock") || !err.contains("in use") {
        run.fail("a socket file in use was not refused by name");
    }
    // Once that socket is closed its file is stale, as a killed server leaves it: the restore
    // replaces it.
    drop(live);
    let o = restore(&mut run, &img, &[]);
    if !o.status.success() {
        run.fail("crak-restore failed");
    }
    let restored: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if restored != pid {
        run.fail(&format!("restored as {restored}, captured as {pid}"));
    }
    run.go_and_expect_pass(pid);
}

#[test]
fn socket_connected_outside_the_tree_needs_external_unix() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-unx-");
    let ext = run.path("ext.sock");
    let listener = std::os::unix::net::UnixListener::bind(&ext).expect("bind ext.sock");
    let pid = start(&mut run, "unx_external");
    let (mut first, _) = listener.accept().expect("the program's connection");
    let mut hello = [0u8; 5];
    first.read_exact(&mut hello).expect("hello");
    assert_eq!(&hello, b"hello");
    let img = run.capture(pid, &[]);
    if !run.log.contains("warning: process") || !run.log.contains("--external-unix") {
        run.fail("the capture does not warn about the socket connected outside the tree");
    }
    let shown = run.dump(&img, &[]);
    if !shown.contains("(outside the image)") {
        run.fail(&format!(
            "crak-dump does not show the outside peer:\n{shown}"
        ));
    }

    // Refused without --external-unix, naming the peer, and nothing is left running.
    let o = restore(&mut run, &img, &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() || !err.contains("--external-unix") || !err.contains("ext.sock") {
        run.fail("a socket connected outside the image was not refused by name");
    }
    if Path::new(&format!("/proc/{pid}")).exists() && !wait_gone(pid, Duration::from_secs(5)) {
        run.fail("a refused restore left the process running");
    }

    // Reconnected with it: the listener gets a new connection.
    let ext_arg = ext.to_string_lossy().into_owned();
    let o = restore(&mut run, &img, &["--external-unix", &ext_arg]);
    if !o.status.success() {
        run.fail("crak-restore --external-unix failed");
    }
    listener.set_nonblocking(false).expect("blocking");
    signal(pid, libc::SIGUSR2);
    let (mut again, _) = listener
        .accept()
        .expect("a new connection after the restore");
    again
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 5];
    again
        .read_exact(&mut buf)
        .expect("the restored program writes");
    assert_eq!(&buf, b"again");
    again.write_all(b"ok").expect("answer");
    let r = run.wait_file("result", Duration::from_secs(30));
    if r.trim() != "PASS" {
        run.fail(&format!("program reported: {}", r.trim()));
    }
}

#[test]
fn socket_with_an_epoll_instance_in_flight_is_refused_naming_it() {
    crak_tests::need_root!();
    let _g = serial();
    let mut run = Scratch::new("crak-unx-");
    let pid = start(&mut run, "unx_inflight");
    let img = run.path("image.crak");
    let o = run.run(
        Command::new(bin("crak-capture"))
            .arg(pid.to_string())
            .arg("-o")
            .arg(&img),
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(2)
        || !err.contains("in flight, an epoll instance")
        || !err.contains(&format!("@crak-unx-inflight-{pid}"))
    {
        run.fail("an epoll instance in flight was not refused naming the socket");
    }
    if img.exists() {
        run.fail("a refused capture left an image");
    }
    // The program goes on untouched and still receives the descriptor.
    run.go_and_expect_pass(pid);
}
