//! Live tests of TCP and UDP sockets across a checkpoint: the clients run in this test process,
//! outside the captured tree, on loopback only.

use crak_tests::{bin, is_root, serial, Scratch};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// No lock table of the image's TCP sockets is left in the ruleset.
fn no_locks_left(s: &Scratch, img: &Path) {
    let out = Command::new(bin("crak-dump"))
        .arg(img)
        .arg("--json")
        .output()
        .expect("crak-dump");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crak-dump --json");
    let inos: Vec<u64> = json["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["fds"].as_array().into_iter().flatten())
        .filter(|f| f["kind"] == "tcp")
        .filter_map(|f| f["ino"].as_u64())
        .collect();
    assert!(!inos.is_empty(), "no TCP socket in the image");
    let o = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let text = String::from_utf8_lossy(&o.stdout);
    for ino in inos {
        if text
            .lines()
            .any(|l| l.trim() == format!("table inet crak_tcp_{ino}"))
        {
            s.fail(&format!(
                "the lock of socket {ino} was left behind:\n{text}"
            ));
        }
    }
}

/// Sends numbered lines on `stream` until `stop`, one every millisecond or so, counting them in
/// `sent`.
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

/// A client of an echo server: [`numbered_sender`] on one side of the connection, and the
/// echoes read back on the other, each of which must be the next line.
struct NumberedEcho {
    reader: BufReader<TcpStream>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sender: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    next: u64,
    line: String,
}

impl NumberedEcho {
    /// Starts sending on `client`.
    fn start(client: TcpStream) -> NumberedEcho {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sender = numbered_sender(client.try_clone().unwrap(), stop.clone(), sent.clone());
        NumberedEcho {
            reader: BufReader::new(client),
            stop,
            sent,
            sender: Some(sender),
            next: 0,
            line: String::new(),
        }
    }

    /// Reads `n` echoes, each the next line.
    fn expect(&mut self, n: u64, s: &Scratch) {
        for _ in 0..n {
            self.line.clear();
            if self.reader.read_line(&mut self.line).is_err()
                || self.line != format!("line {}\n", self.next)
            {
                s.fail(&format!("echo {}: got {:?}", self.next, self.line));
            }
            self.next += 1;
        }
    }

    /// Lets `more` lines more be sent, stops the sender and reads every echo left, in order.
    fn finish(mut self, more: u64, s: &Scratch) {
        let target = self.sent.load(Ordering::SeqCst) + more;
        while self.sent.load(Ordering::SeqCst) < target {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(Err(e)) = self.sender.take().map(|h| h.join().unwrap()) {
            s.fail(&format!("the client's sending failed: {e}"));
        }
        let total = self.sent.load(Ordering::SeqCst);
        self.expect(total - self.next, s);
    }
}

/// An echo server on `family` ("4" or "6") with a client connected across a checkpoint; with
/// `fork`, a child shares its listening and UDP sockets.
fn echo_across_checkpoint(family: &str, fork: bool) {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    let args: Vec<&str> = if fork {
        vec![family, "fork"]
    } else {
        vec![family]
    };
    let pid = s.spawn(&prog, &args);
    let ports = s.wait_file("ports", Duration::from_secs(30));
    let mut it = ports.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (tport, uport) = (it.next().unwrap(), it.next().unwrap());
    let host = if family == "6" { "[::1]" } else { "127.0.0.1" };
    let addr: SocketAddr = format!("{host}:{tport}").parse().unwrap();
    let uaddr: SocketAddr = format!("{host}:{uport}").parse().unwrap();

    let connected_udp = || {
        if family == "6" {
            return None;
        }
        // /proc/net/udp: "sl local rem st ...", addresses as hex host-order IPv4:port.
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
        let rem = format!("0100007F:{uport:04X}");
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.get(2) == Some(&rem.as_str()) && w.get(3) == Some(&"01"))
            .and_then(|w| w.get(1).map(|x| x.to_string()))
    };
    let udp_before = connected_udp();
    let client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut echo = NumberedEcho::start(client);
    // Some lines echoed before the capture.
    echo.expect(50, &s);

    // Captured while the client goes on sending (and not reading).
    let img = s.capture(pid, &[]);
    let dump = s.dump(&img, &[]);
    if !dump.contains("ESTABLISHED") || !dump.contains(&format!(":{tport} LISTEN")) {
        s.fail(&format!("crak-dump shows no TCP state:\n{dump}"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let restored = s.restore_detached(&img, &[]);
    assert_eq!(restored, pid);
    no_locks_left(&s, &img);

    // The connected UDP socket is connected again, from the same local port.
    if family != "6" && (udp_before.is_none() || connected_udp() != udp_before) {
        s.fail(&format!(
            "connected UDP socket: before {udp_before:?}, after {:?}",
            connected_udp()
        ));
    }
    // More lines after the restore, then every echo in order.
    echo.finish(200, &s);

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
    echo_across_checkpoint("4", false);
}

#[test]
fn echo_connection_and_listener_across_checkpoint_ipv6() {
    echo_across_checkpoint("6", false);
}

#[test]
fn sockets_shared_by_a_parent_and_its_child_across_checkpoint() {
    echo_across_checkpoint("4", true);
}

/// `--tcp-close`: the peer is gone; the program sees its connection reset.
#[test]
fn tcp_close_restores_connections_reset() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    let pid = s.spawn(&prog, &["4"]);
    let ports = s.wait_file("ports", Duration::from_secs(30));
    let tport: u16 = ports.split_whitespace().next().unwrap().parse().unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    let img = s.capture(pid, &[]);
    // The peer goes away while the connection is locked.
    drop(c);
    s.restore_detached(&img, &["--tcp-close"]);
    let events = s.wait_file("events", Duration::from_secs(30));
    if events.trim() != "error ECONNRESET" {
        s.fail(&format!("the program saw {events:?}"));
    }
    no_locks_left(&s, &img);
    // It still listens.
    let mut again = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    again.write_all(b"y").unwrap();
    again.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y");
}

/// A port free on 127.0.0.1 now (for programs that need one on their command line).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Connects to `port` once something listens there.
fn connect_when_listening(s: &Scratch, port: u16) -> TcpStream {
    let t0 = Instant::now();
    loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            return c;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            s.fail(&format!("nothing listens on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `python3 -m http.server` serving a download that spans the checkpoint: the client reads the
/// start, stops reading (the server blocks with full queues), the server is captured and
/// restored, and the rest arrives intact.
#[test]
fn python_http_server_download_spans_the_checkpoint() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("crak-tcp-");
    // 24 MiB that no compression or repetition could fake: a xorshift stream.
    let mut data = Vec::with_capacity(24 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 24 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(s.path("big.bin"), &data).unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let pid = s.spawn(
        Path::new("python3"),
        &["-m", "http.server", &port_s, "--bind", "127.0.0.1"],
    );
    let mut c = connect_when_listening(&s, port);
    c.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    // The headers and the first MiB.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let body_at = loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            s.fail("the server closed before the body");
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() > i + 4 + (1 << 20) {
                break i + 4;
            }
        }
    };
    let head = String::from_utf8_lossy(&got[..body_at]).into_owned();
    assert!(
        head.contains("200") && head.contains(&format!("Content-Length: {}", data.len())),
        "{head}"
    );
    // The server fills the queues and blocks; then it is captured in the middle.
    std::thread::sleep(Duration::from_millis(300));
    let img = s.capture(pid, &[]);
    let dump = s.dump(&img, &[]);
    if !dump.contains("ESTABLISHED (send") || dump.contains("ESTABLISHED (send 0 B") {
        s.fail(&format!(
            "no connection with a full send queue in the image:\n{dump}"
        ));
    }
    s.restore_detached(&img, &[]);
    no_locks_left(&s, &img);
    c.read_to_end(&mut got)
        .unwrap_or_else(|e| s.fail(&format!("reading the rest: {e}")));
    let body = &got[body_at..];
    if body.len() != data.len() || body != &data[..] {
        let first = body.iter().zip(&data).position(|(a, b)| a != b);
        s.fail(&format!(
            "the download differs: {} bytes of {}, first difference at {first:?}",
            body.len(),
            data.len()
        ));
    }
    // And it serves again.
    let mut again = connect_when_listening(&s, port);
    again.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    again.read_to_end(&mut all).unwrap();
    assert!(all.ends_with(&data[data.len() - 4096..]));
}

/// A `socat` relay between a client and an echo server (neither captured) keeps both of its
/// connections, one accepted and one it made, across the checkpoint.
#[test]
fn socat_relay_across_checkpoint() {
    let _g = serial();
    if !can_run() {
        return;
    }
    assert!(
        Command::new("socat")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "socat is needed: run .ci/setup"
    );
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    s.spawn(&prog, &["4"]);
    let echo_port: u16 = s
        .wait_file("ports", Duration::from_secs(30))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let port = free_port();
    let relay = s.spawn(
        Path::new("socat"),
        &[
            &format!("TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            &format!("TCP4:127.0.0.1:{echo_port}"),
        ],
    );
    let client = connect_when_listening(&s, port);
    let mut echo = NumberedEcho::start(client);
    echo.expect(30, &s);
    let img = s.capture(relay, &[]);
    let dump = s.dump(&img, &[]);
    if dump.matches("ESTABLISHED").count() < 2 {
        s.fail(&format!(
            "the relay's two connections are not in the image:\n{dump}"
        ));
    }
    s.restore_detached(&img, &[]);
    no_locks_left(&s, &img);
    echo.finish(100, &s);
}

/// A capture that fails after the connection was locked and put in repair mode, and one that
/// leaves the process running, give the connection back: repair mode off, no lock left, the
/// echoes go on.
#[test]
fn failed_and_leave_running_captures_give_the_connection_back() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    let pid = s.spawn(&prog, &["4"]);
    let tport: u16 = s
        .wait_file("ports", Duration::from_secs(30))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let round = |c: &mut TcpStream, text: &[u8], s: &Scratch| {
        c.write_all(text).unwrap();
        let mut b = vec![0u8; text.len()];
        if c.read_exact(&mut b).is_err() || b != text {
            s.fail(&format!("no echo of {:?}", String::from_utf8_lossy(text)));
        }
    };
    round(&mut c, b"before\n", &s);
    let img = s.path("running.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&img)
        .arg("--leave-running");
    if !s.run(cmd).status.success() {
        s.fail("crak-capture --leave-running failed");
    }
    no_locks_left(&s, &img);
    round(&mut c, b"after --leave-running\n", &s);
    let failed = s.path("failed.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&failed)
        .env("CRAK_FAULT", "before-kill");
    if s.run(cmd).status.success() {
        s.fail("the capture with an injected fault succeeded");
    }
    assert!(!failed.exists());
    no_locks_left(&s, &img);
    round(&mut c, b"after a failed capture\n", &s);
    let dump = s.dump(&img, &[]);
    if !dump.contains("ESTABLISHED") {
        s.fail(&format!("no connection in the image:\n{dump}"));
    }
    // Leaving repair mode clears SO_REUSEADDR: it was set again.
    let again = s.path("again.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&again)
        .arg("--leave-running");
    if !s.run(cmd).status.success() {
        s.fail("the last crak-capture --leave-running failed");
    }
    let dump = s.dump(&again, &[]);
    if !dump
        .lines()
        .any(|l| l.contains("ESTABLISHED") && l.contains("SO_REUSEADDR"))
    {
        s.fail(&format!("the connection lost SO_REUSEADDR:\n{dump}"));
    }
}

/// crak-dump shows a socket's endpoints, state and queues, and `--json` its kind (vector 018).
#[test]
fn dump_shows_endpoints_state_and_queues() {
    let img = crak_tests::workspace_root().join("spec/vectors/valid/018-tcp-and-udp-sockets.bin");
    let out = Command::new(bin("crak-dump")).arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "127.0.0.1:8080 LISTEN (backlog 128) [SO_REUSEADDR]",
        "127.0.0.1:8080 -> 127.0.0.1:41234 ESTABLISHED (send 16 B, 2 unsent; receive 8 B) \
         [SO_REUSEADDR,SO_KEEPALIVE,TCP_NODELAY]",
        "[::ffff:127.0.0.1]:50000 -> [::ffff:127.0.0.1]:8080 ESTABLISHED",
        "[::1]:5353 (3 queued datagrams dropped) [IPV6_V6ONLY]",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let out = Command::new(bin("crak-dump"))
        .arg(&img)
        .arg("--json")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = json["processes"][0]["fds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tcp").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "udp").count(), 1);
}

/// Sockets in states the image cannot hold are refused at capture, naming process, fd and state,
/// and the process goes on untouched.
#[test]
fn unsupported_tcp_states_are_refused_naming_them() {
    let _g = serial();
    if !can_run() {
        return;
    }
    for (arg, want) in [
        ("pending", "1 connection(s) not yet accepted"),
        ("close_wait", "state CLOSE_WAIT"),
    ] {
        let mut s = Scratch::new("crak-tcp-");
        let prog = s.compile("tcp_refused");
        let pid = s.spawn(&prog, &[arg]);
        s.wait_file("ready", Duration::from_secs(30));
        let img = s.path("image.crak");
        let mut cmd = Command::new(bin("crak-capture"));
        cmd.arg(pid.to_string()).arg("-o").arg(&img);
        let o = s.run(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success()
            || !err.contains(&format!("process {pid}: fd "))
            || !err.contains(want)
        {
            s.fail(&format!("{arg}: expected a refusal naming {want:?}"));
        }
        assert!(!img.exists());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("TracerPid:\t0") && !crak_tests::is_gone(pid),
            "{arg}: the process must go on untraced:\n{status}"
        );
    }
}

/// A network namespace made for one test, deleted at the end.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A connection inside a network namespace (`ip netns`): crak-capture outside it refuses it
/// (the lock would be in the wrong namespace); run inside it, capture and restore keep the
/// connection, with a client in the namespace too.
#[test]
fn connection_inside_a_network_namespace() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let name = format!("crak-tcp-{}", std::process::id());
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ok(&["netns", "add", &name]), "ip netns add");
    let ns = Netns(name);
    assert!(ok(&[
        "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"
    ]));
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    let prog_s = prog.to_string_lossy().into_owned();
    // `ip netns exec` runs the program in its own process.
    let pid = s.spawn(Path::new("ip"), &["netns", "exec", &ns.0, &prog_s, "4"]);
    let tport: u16 = s
        .wait_file("ports", Duration::from_secs(30))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The client's socket is made in the namespace by a thread that enters it.
    let path = format!("/run/netns/{}", ns.0);
    let mut c = std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let f = std::fs::File::open(&path).expect("netns file");
        crak_restore::sys::process::enter_net_namespace(f.as_fd()).expect("setns");
        TcpStream::connect(("127.0.0.1", tport)).expect("connect in the namespace")
    })
    .join()
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let round = |c: &mut TcpStream, text: &[u8], s: &Scratch| {
        c.write_all(text).unwrap();
        let mut b = vec![0u8; text.len()];
        if c.read_exact(&mut b).is_err() || b != text {
            s.fail(&format!("no echo of {:?}", String::from_utf8_lossy(text)));
        }
    };
    round(&mut c, b"one\n", &s);
    let img = s.path("image.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string()).arg("-o").arg(&img);
    let o = s.run(cmd);
    if o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("network namespace") {
        s.fail("a capture from outside the namespace must be refused naming it");
    }
    round(&mut c, b"two\n", &s);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0])
        .arg(bin("crak-capture"))
        .arg(pid.to_string())
        .arg("-o")
        .arg(&img);
    if !s.run(cmd).status.success() {
        s.fail("crak-capture in the namespace failed");
    }
    if let Some(i) = s.children.iter().position(|c| c.id() as i32 == pid) {
        let mut child = s.children.remove(i);
        let _ = child.wait();
    }
    // The client sends while the connection is locked.
    c.write_all(b"three\n").unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0])
        .arg(bin("crak-restore"))
        .arg("--detach")
        .arg(&img);
    let o = s.run(cmd);
    if !o.status.success() {
        s.fail("crak-restore in the namespace failed");
    }
    if let Ok(p) = String::from_utf8_lossy(&o.stdout).trim().parse() {
        s.pids.push(p);
    }
    let mut b = [0u8; 6];
    if c.read_exact(&mut b).is_err() || &b != b"three\n" {
        s.fail("the line sent while locked was not echoed after the restore");
    }
    round(&mut c, b"four\n", &s);
}

/// A restore that fails with the connections built but still in repair mode kills what it
/// made without the peer seeing anything (no reset, the lock stays); the next restore takes
/// the connection over and nothing is lost.
#[test]
fn failed_restore_leaves_the_peer_waiting_for_the_next_one() {
    let _g = serial();
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("crak-tcp-");
    let prog = s.compile("tcp_echo");
    let pid = s.spawn(&prog, &["4"]);
    let tport: u16 = s
        .wait_file("ports", Duration::from_secs(30))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", tport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(b"one\n").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    let img = s.capture(pid, &[]);
    c.write_all(b"two\n").unwrap();
    let mut cmd = Command::new(bin("crak-restore"));
    cmd.arg("--detach")
        .arg(&img)
        .env("CRAK_FAULT", "restore-before-tcp-live");
    let o = s.run(cmd);
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() || !err.contains("restore-before-tcp-live") {
        s.fail("the restore with an injected fault must fail naming it");
    }
    if !crak_tests::wait_gone(pid, Duration::from_secs(5)) {
        s.fail("the half-built process is still there");
    }
    // The peer saw nothing: its connection is open and waits.
    c.set_nonblocking(true).unwrap();
    match c.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => s.fail(&format!("the peer saw {other:?} after a failed restore")),
    }
    c.set_nonblocking(false).unwrap();
    s.restore_detached(&img, &[]);
    no_locks_left(&s, &img);
    c.write_all(b"tri\n").unwrap();
    let mut all = [0u8; 8];
    if c.read_exact(&mut all).is_err() || &all != b"two\ntri\n" {
        s.fail(&format!(
            "after the second restore: {:?}",
            String::from_utf8_lossy(&all)
        ));
    } // The restored connection has its SO_REUSEADDR (leaving repair mode clears it).
    let again = s.path("again.crak");
    let mut cmd = Command::new(bin("crak-capture"));
    cmd.arg(pid.to_string())
        .arg("-o")
        .arg(&again)
        .arg("--leave-running");
    if !s.run(cmd).status.success() {
        s.fail("crak-capture --leave-running of the restored process failed");
    }
    let dump = s.dump(&again, &[]);
    if !dump
        .lines()
        .any(|l| l.contains("ESTABLISHED") && l.contains("SO_REUSEADDR"))
    {
        s.fail(&format!(
            "the restored connection lost SO_REUSEADDR:\n{dump}"
        ));
    }
}
