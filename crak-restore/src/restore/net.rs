//! TCP and UDP sockets (FD kinds 11 and 12, spec §3.13).
//!
//! The restore child creates each socket with its options ([`open`]). A listening socket is
//! bound (with `SO_REUSEADDR` while binding, as its accepted connections may hold the port
//! already) and listens with its backlog. An established connection is built in repair mode
//! (`TCP_REPAIR`), in this order, each step needing the one before: the sequence numbers
//! of both queues (only settable before the connection exists) minus what is queued, the
//! addresses (`bind` and `connect`, which in repair mode only set the state), the negotiated
//! options and the timestamp clock, the queues (the send queue as sent and unacknowledged: the
//! kernel retransmits what the peer lacks; the receive queue as received), and last the window
//! (checked by the kernel against the received sequence). Nothing is sent meanwhile.
//!
//! The parent turns repair mode off once the whole tree is built, right before the processes
//! run ([`go_live`]), with a window probe that makes the peer answer at once; with
//! `--tcp-close` it resets the connection instead. Then it removes the network locks the
//! capture left ([`unlock`]): from then on the peer's packets reach the new socket. A restore
//! that fails before kills the child, whose sockets, still in repair mode, close silently; the
//! locks stay, and the peer keeps waiting for another attempt.

use super::files::{status_flags, ChildResult};
use super::RestoreError;
use crate::sys::fdops;
use crate::sys::inet::{self, Endpoint};
use crak_format::record::fd::{
    Fd, FdKind, FdState, InetAddr, TcpState, UdpState, SOCKOPT_BROADCAST, SOCKOPT_KEEPALIVE,
    SOCKOPT_NODELAY, SOCKOPT_RCVBUF, SOCKOPT_REUSEADDR, SOCKOPT_REUSEPORT, SOCKOPT_SNDBUF,
    SOCKOPT_V6ONLY, TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE, TCP_ESTABLISHED,
    TCP_LISTEN,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn err(f: &Fd<'_>, what: &str, e: impl std::fmt::Display) -> String {
    format!("fd {} ({}): {what}: {e}", f.fd, f.path)
}

fn local(a: &InetAddr) -> Endpoint {
    Endpoint {
        family: a.family,
        addr: a.local,
        port: a.local_port,
    }
}

fn remote(a: &InetAddr) -> Endpoint {
    Endpoint {
        family: a.family,
        addr: a.remote,
        port: a.remote_port,
    }
}

/// Opens the TCP or UDP socket of `f` (in the restore child).
pub(super) fn open(f: &Fd<'_>) -> ChildResult<OwnedFd> {
    let sock =
        match FdState::decode(f.kind, f.contents.as_bytes()).map_err(|e| err(f, "state", e))? {
            Some(FdState::Tcp(t)) => open_tcp(f, &t)?,
            Some(FdState::Udp(u)) => open_udp(f, &u)?,
            _ => return Err(err(f, "state", "not a TCP or UDP socket")),
        };
    fdops::set_status_flags(sock.as_fd(), status_flags(f.open_flags))
        .map_err(|e| err(f, "F_SETFL", e))?;
    Ok(sock)
}

/// Socket options TCP and UDP share; before `bind` (`IPV6_V6ONLY` and the reuse options
/// matter there).
fn common(
    f: &Fd<'_>,
    s: BorrowedFd<'_>,
    family: u16,
    opts: u32,
    rcv: u32,
    snd: u32,
) -> ChildResult<()> {
    let sol = libc::SOL_SOCKET;
    let set = |level, name, v: bool, what| {
        inet::set_int(s, level, name, i32::from(v)).map_err(|e| err(f, what, e))
    };
    set(
        sol,
        libc::SO_REUSEADDR,
        opts & SOCKOPT_REUSEADDR != 0,
        "SO_REUSEADDR",
    )?;
    set(
        sol,
        libc::SO_REUSEPORT,
        opts & SOCKOPT_REUSEPORT != 0,
        "SO_REUSEPORT",
    )?;
    if i32::from(family) == libc::AF_INET6 {
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            opts & SOCKOPT_V6ONLY != 0,
            "IPV6_V6ONLY",
        )?;
    }
    // The kernel doubles what it is given: half of the value it reported.
    if opts & SOCKOPT_RCVBUF != 0 {
        inet::set_int(s, sol, libc::SO_RCVBUFFORCE, (rcv / 2) as i32)
            .map_err(|e| err(f, "SO_RCVBUFFORCE", e))?;
    }
    if opts & SOCKOPT_SNDBUF != 0 {
        inet::set_int(s, sol, libc::SO_SNDBUFFORCE, (snd / 2) as i32)
            .map_err(|e| err(f, "SO_SNDBUFFORCE", e))?;
    }
    Ok(())
}

fn open_udp(f: &Fd<'_>, u: &UdpState) -> ChildResult<OwnedFd> {
    let sock = inet::socket(u.addr.family, libc::SOCK_DGRAM).map_err(|e| err(f, "socket", e))?;
    let s = sock.as_fd();
    common(f, s, u.addr.family, u.sockopts, u.rcvbuf, u.sndbuf)?;
    inet::set_int(
        s,
        libc::SOL_SOCKET,
        libc::SO_BROADCAST,
        i32::from(u.sockopts & SOCKOPT_BROADCAST != 0),
    )
    .map_err(|e| err(f, "SO_BROADCAST", e))?;
    if u.addr.local_port != 0 {
        inet::bind(s, &local(&u.addr))
            .map_err(|e| err(f, &format!("bind {}", u.addr.show_local()), e))?;
    }
    if u.addr.remote_port != 0 {
        inet::connect(s, &remote(&u.addr))
            .map_err(|e| err(f, &format!("connect {}", u.addr.show_remote()), e))?;
    }
    Ok(sock)
}

fn open_tcp(f: &Fd<'_>, t: &TcpState) -> ChildResult<OwnedFd> {
    let a = &t.addr;
    let sock = inet::socket(a.family, libc::SOCK_STREAM).map_err(|e| err(f, "socket", e))?;
    let s = sock.as_fd();
    let tcp = libc::IPPROTO_TCP;
    let established = t.state == TCP_ESTABLISHED;
    common(f, s, a.family, t.sockopts, t.rcvbuf, t.sndbuf)?;
    // After SO_REUSEADDR: repair mode makes the socket bind whatever holds the port, which
    // setting SO_REUSEADDR would undo.
    if established {
        inet::set_int(s, tcp, inet::TCP_REPAIR, inet::REPAIR_ON)
            .map_err(|e| err(f, "TCP_REPAIR", e))?;
    }
    let set = |level, name, v: u32, what| {
        inet::set_int(s, level, name, v as i32).map_err(|e| err(f, what, e))
    };
    set(
        tcp,
        libc::TCP_NODELAY,
        u32::from(t.sockopts & SOCKOPT_NODELAY != 0),
        "TCP_NODELAY",
    )?;
    for (name, v, what) in [
        (libc::TCP_KEEPIDLE, t.keepidle, "TCP_KEEPIDLE"),
        (libc::TCP_KEEPINTVL, t.keepintvl, "TCP_KEEPINTVL"),
        (libc::TCP_KEEPCNT, t.keepcnt, "TCP_KEEPCNT"),
    ] {
        if v != 0 {
            set(tcp, name, v, what)?;
        }
    }
    set(
        libc::SOL_SOCKET,
        libc::SO_KEEPALIVE,
        u32::from(t.sockopts & SOCKOPT_KEEPALIVE != 0),
        "SO_KEEPALIVE",
    )?;
    if established {
        repair_connection(f, s, t)?;
    } else if t.state == TCP_LISTEN {
        // Its restored connections may hold the port already (repair mode binds regardless).
        set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
        inet::bind(s, &local(a)).map_err(|e| err(f, &format!("bind {}", a.show_local()), e))?;
        inet::listen(s, t.backlog.min(i32::MAX as u32) as i32).map_err(|e| err(f, "listen", e))?;
        set(
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            u32::from(t.sockopts & SOCKOPT_REUSEADDR != 0),
            "SO_REUSEADDR",
        )?;
    } else if a.local_port != 0 {
        inet::bind(s, &local(a)).map_err(|e| err(f, &format!("bind {}", a.show_local()), e))?;
    }
    Ok(sock)
}

/// Fills the queue `TCP_REPAIR_QUEUE` selects, in chunks that shrink when the kernel cannot
/// take one at once.
fn fill(s: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<()> {
    let mut at = 0usize;
    let mut chunk = 64 << 10;
    while at < data.len() {
        let end = at.saturating_add(chunk).min(data.len());
        match inet::send(s, data.get(at..end).unwrap_or(&[])) {
            Ok(0) => return Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
            Ok(n) => at += n,
            Err(e)
                if chunk > 1024
                    && matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EAGAIN)) =>
            {
                chunk /= 2
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn repair_connection(f: &Fd<'_>, s: BorrowedFd<'_>, t: &TcpState) -> ChildResult<()> {
    let tcp = libc::IPPROTO_TCP;
    let a = &t.addr;
    let c = &t.conn;
    let set = |name, v: i32, what| inet::set_int(s, tcp, name, v).map_err(|e| err(f, what, e));
    // Sequence numbers: where each queue starts.
    set(inet::TCP_REPAIR_QUEUE, inet::RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    set(
        inet::TCP_QUEUE_SEQ,
        c.rcv_seq.wrapping_sub(c.recv_queue.len() as u32) as i32,
        "TCP_QUEUE_SEQ (receive)",
    )?;
    set(inet::TCP_REPAIR_QUEUE, inet::SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    set(
        inet::TCP_QUEUE_SEQ,
        c.snd_seq.wrapping_sub(c.send_queue.len() as u32) as i32,
        "TCP_QUEUE_SEQ (send)",
    )?;
    inet::bind(s, &local(a)).map_err(|e| err(f, &format!("bind {}", a.show_local()), e))?;
    inet::connect(s, &remote(a)).map_err(|e| err(f, &format!("connect {}", a.show_remote()), e))?;
    // TCPOPT_MSS 2, TCPOPT_WINDOW 3, TCPOPT_SACK_PERM 4, TCPOPT_TIMESTAMP 8.
    let mut opts = vec![(2u32, c.mss)];
    if c.options & TCPI_OPT_WSCALE != 0 {
        opts.push((3, u32::from(c.snd_wscale) | u32::from(c.rcv_wscale) << 16));
    }
    if c.options & TCPI_OPT_SACK != 0 {
        opts.push((4, 0));
    }
    if c.options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((8, 0));
    }
    inet::set_repair_options(s, &opts).map_err(|e| err(f, "TCP_REPAIR_OPTIONS", e))?;
    if c.options & TCPI_OPT_TIMESTAMPS != 0 {
        set(inet::TCP_TIMESTAMP, c.timestamp as i32, "TCP_TIMESTAMP")?;
    }
    // Room for the queues: a new socket's buffers may be smaller than the captured ones
    // (grown by autotuning).
    let sol = libc::SOL_SOCKET;
    for (len, name, force, cap, what) in [
        (
            c.send_queue.len(),
            libc::SO_SNDBUF,
            libc::SO_SNDBUFFORCE,
            t.sndbuf,
            "SO_SNDBUFFORCE",
        ),
        (
            c.recv_queue.len(),
            libc::SO_RCVBUF,
            libc::SO_RCVBUFFORCE,
            t.rcvbuf,
            "SO_RCVBUFFORCE",
        ),
    ] {
        let cur = inet::get_int(s, sol, name).unwrap_or(0).max(0) as usize;
        let want = (cap as usize).max(len.saturating_mul(2));
        if len > 0 && cur < want {
            inet::set_int(s, sol, force, (want / 2).min(i32::MAX as usize) as i32)
                .map_err(|e| err(f, what, e))?;
        }
    }
    set(inet::TCP_REPAIR_QUEUE, inet::SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    fill(s, &c.send_queue).map_err(|e| err(f, "refilling the send queue", e))?;
    set(inet::TCP_REPAIR_QUEUE, inet::RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    fill(s, &c.recv_queue).map_err(|e| err(f, "refilling the receive queue", e))?;
    set(inet::TCP_REPAIR_QUEUE, inet::NO_QUEUE, "TCP_REPAIR_QUEUE")?;
    inet::set_window(
        s,
        &[c.snd_wl1, c.snd_wnd, c.max_window, c.rcv_wnd, c.rcv_wup],
    )
    .map_err(|e| err(f, "TCP_REPAIR_WINDOW", e))?;
    Ok(())
}

/// The TCP sockets of the image: (pid in the image, fd, inode, state, `sockopts`).
fn tcp_fds<'a>(
    procs: impl Iterator<Item = &'a crak_format::Process<'a>>,
) -> Vec<(u32, u32, u64, u16, u32)> {
    let mut out = Vec::new();
    for p in procs {
        for f in p.fds.iter().filter(|f| f.kind == FdKind::Tcp) {
            if let Ok(Some(FdState::Tcp(t))) = FdState::decode(f.kind, f.contents.as_bytes()) {
                out.push((p.pid(), f.fd, f.ino, t.state, t.sockopts));
            }
        }
    }
    out
}

/// Turns repair mode off on every restored connection (`pids` maps each process of the image
/// to its pid now), or resets it with `tcp_close`: the last step before the processes run.
pub fn go_live(
    procs: &[(&crak_format::Process<'_>, i32)],
    tcp_close: bool,
) -> Result<(), RestoreError> {
    let mut done = std::collections::HashSet::new();
    for (proc, pid) in procs {
        for (_, fd, ino, state, sockopts) in tcp_fds(std::iter::once(*proc)) {
            if state != TCP_ESTABLISHED || !done.insert(ino) {
                continue;
            }
            let fail = |what: &str, e: &dyn std::fmt::Display| {
                RestoreError::failed(
                    "TCP connections",
                    format!("fd {fd} of process {pid}: {what}: {e}"),
                )
            };
            let pfd = crate::sys::pidfd::pidfd_open(*pid).map_err(|e| fail("pidfd_open", &e))?;
            let sock = crate::sys::pidfd::pidfd_getfd(&pfd, fd as i32)
                .map_err(|e| fail("pidfd_getfd", &e))?;
            inet::set_int(
                sock.as_fd(),
                libc::IPPROTO_TCP,
                inet::TCP_REPAIR,
                inet::REPAIR_OFF,
            )
            .map_err(|e| fail("turning TCP repair mode off", &e))?;
            // Leaving repair mode clears SO_REUSEADDR.
            if sockopts & SOCKOPT_REUSEADDR != 0 {
                inet::set_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                    .map_err(|e| fail("SO_REUSEADDR", &e))?;
            }
            if tcp_close {
                inet::disconnect(sock.as_fd()).map_err(|e| fail("resetting (--tcp-close)", &e))?;
            }
        }
    }
    Ok(())
}

/// Removes the network locks of the image's TCP sockets (once the processes run). A lock that
/// cannot be removed is reported: the connection stays blocked.
pub fn unlock<'a>(procs: impl Iterator<Item = &'a crak_format::Process<'a>>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut done = std::collections::HashSet::new();
    for (pid, fd, ino, state, _) in tcp_fds(procs) {
        if (state == TCP_ESTABLISHED || state == TCP_LISTEN) && done.insert(ino) {
            if let Err(e) = crate::netlock::unlock(ino) {
                warnings.push(format!("fd {fd} of process {pid}: {e}"));
            }
        }
    }
    warnings
}
