//! Live tests of TCP and UDP sockets across a checkpoint: the clients run in this test process,
//! outside the captured tree, on loopback only.

use crak_tests::{bin, is_root, serial, wait_gone};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A scratch directory, the programs started in it (killed at the end) and a transcript of
/// the commands run, shown when the test fails.
struct Scratch {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    pids: Vec<i32>,
    log: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.pids {
            let _ = crak_restore::sys::process::kill(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
    }
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("crak-tcp-")
                .tempdir()
                .expect("tempdir"),
            children: Vec::new(),
            pids: Vec::new(),
            log: String::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    #[track_caller]
    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n--- transcript ---\n{}", self.log);
    }

    fn run(&mut self, mut cmd: Command) -> Output {
        let shown = format!("{cmd:?}");
        let o = cmd.output().expect("run command");
        self.log.push_str(&format!(
            "$ {shown}\n  -> {}\n  stdout: {}  stderr: {}\n",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    }

    fn compile(&mut self, name: &str) -> PathBuf {
        let src = crak_tests::workspace_root()
            .join("tests/live")
            .join(format!("{name}.c"));
        let out = self.path(name);
        let mut cmd = Command::new("cc");
        cmd.args(["-O1", "-Wall", "-o"]).arg(&out).arg(&src);
        if !self.run(cmd).status.success() {
            self.fail(&format!("cc {name}.c failed"));
        }
        out
    }

    fn spawn(&mut self, program: &Path, args: &[&str]) -> i32 {
        let child = Command::new(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn test program");
        let pid = child.id() as i32;
        self.log.push_str(&format!(
            "spawned {} {args:?} as {pid}\n",
            program.display()
        ));
        self.children.push(child);
        pid
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

    /// crak-capture PID (killing it); the image path.
    fn capture(&mut self, pid: i32) -> PathBuf {
        let img = self.path("image.crak");
        let mut cmd = Command::new(bin("crak-capture"));
        cmd.arg(pid.to_string()).arg("-o").arg(&img);
        if !self.run(cmd).status.success() {
            self.fail("crak-capture failed");
        }
        if let Some(i) = self.children.iter().position(|c| c.id() as i32 == pid) {
            let mut c = self.children.remove(i);
            let _ = c.wait();
        }
        if !wait_gone(pid, Duration::from_secs(5)) {
            self.fail("the captured process is still alive");
        }
        img
    }

    fn restore(&mut self, img: &Path, args: &[&str]) -> i32 {
        let mut cmd = Command::new(bin("crak-restore"));
        cmd.arg("--detach").args(args).arg(img);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-restore failed");
        }
        let pid = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail("crak-restore printed no PID"));
        self.pids.push(pid);
        pid
    }

    fn dump(&mut self, img: &Path) -> String {
        let mut cmd = Command::new(bin("crak-dump"));
        cmd.arg(img);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-dump failed");
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// Whether the host can run these tests: root and `nft` (the capture locks connections with
/// it; .ci/setup installs it).
fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    assert!(
        Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "nft (nftables) is needed to capture TCP connections: run .ci/setup"
    );
    true
}

/// No lock table of crak is left in the ruleset.
fn no_locks_left(s: &Scratch) {
    let o = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let text = String::from_utf8_lossy(&o.stdout);
    if text.contains("crak_tcp_") {
        s.fail(&format!("network locks left behind:\n{text}"));
    }
}

/// Sends numbered lines on `stream` until `stop`, one every millisecond or so; returns how many.
fn numbered_sender(
    mut stream: TcpStream,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            stream.write_all(format!("line {n}\n").as_bytes())?;
            n += 1;
            sent.store(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })
}

/// An echo server on `family` ("4" or "6") with a client connected across a checkpoint.
fn echo_across_checkpoint(family: &str) {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new();
    let prog = s.compile("tcp_echo");
    let pid = s.spawn(&prog, &[family]);
    let ports = s.wait_file("ports");
    let mut it = ports.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (tport, uport) = (it.next().unwrap(), it.next().unwrap());
    let host = if family == "6" { "[::1]" } else { "127.0.0.1" };
    let addr: SocketAddr = format!("{host}:{tport}").parse().unwrap();
    let uaddr: SocketAddr = format!("{host}:{uport}").parse().unwrap();

    let client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = numbered_sender(client.try_clone().unwrap(), stop.clone(), sent.clone());
    let mut reader = BufReader::new(client);
    // Some lines echoed before the capture.
    let mut line = String::new();
    let mut next = 0u64;
    let mut expect_line = |reader: &mut BufReader<TcpStream>, next: &mut u64, s: &Scratch| {
        line.clear();
        if reader.read_line(&mut line).is_err() || line != format!("line {next}\n") {
            s.fail(&format!("echo {next}: got {line:?}"));
        }
        *next += 1;
    };
    for _ in 0..50 {
        expect_line(&mut reader, &mut next, &s);
    }

    // Captured while the client goes on sending (and not reading).
    let img = s.capture(pid);
    let dump = s.dump(&img);
    if !dump.contains("ESTABLISHED") || !dump.contains(&format!(":{tport} LISTEN")) {
        s.fail(&format!("crak-dump shows no TCP state:\n{dump}"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let restored = s.restore(&img, &[]);
    assert_eq!(restored, pid);
    no_locks_left(&s);

    // More lines after the restore, then every echo in order.
    let target = sent.load(Ordering::SeqCst) + 200;
    while sent.load(Ordering::SeqCst) < target {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    if let Err(e) = sender.join().unwrap() {
        s.fail(&format!("the client's sending failed: {e}"));
    }
    let total = sent.load(Ordering::SeqCst);
    while next < total {
        expect_line(&mut reader, &mut next, &s);
    }

    // The listening socket accepts new connections, and the UDP socket echoes.
    let mut second = TcpStream::connect(addr).expect("connect after restore");
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    second.write_all(b"hello\n").unwrap();
    let mut buf = [0u8; 6];
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello\n");
    let bind = if family == "6" {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let u = UdpSocket::bind(bind).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    u.send_to(b"datagram", uaddr).unwrap();
    let mut d = [0u8; 16];
    let (n, from) = u.recv_from(&mut d).unwrap();
    assert_eq!((&d[..n], from), (&b"datagram"[..], uaddr));
}

#[test]
fn echo_connection_and_listener_across_checkpoint_ipv4() {
    echo_across_checkpoint("4");
}

#[test]
fn echo_connection_and_listener_across_checkpoint_ipv6() {
    echo_across_checkpoint("6");
}

/// `--tcp-close`: the peer is gone; the program sees its connection reset.
#[test]
fn tcp_close_restores_connections_reset() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new();
    let prog = s.compile("tcp_echo");
    let pid = s.spawn(&prog, &["4"]);
    let ports = s.wait_file("ports");
    let tport: u16 = ports.split_whitespace().next().unwrap().parse().unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    let img = s.capture(pid);
    // The peer goes away while the connection is locked.
    drop(c);
    s.restore(&img, &["--tcp-close"]);
    let events = s.wait_file("events");
    if events.trim() != "error ECONNRESET" {
        s.fail(&format!("the program saw {events:?}"));
    }
    no_locks_left(&s);
    // It still listens.
    let mut again = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    again.write_all(b"y").unwrap();
    again.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y");
}
