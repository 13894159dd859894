//! TCP and UDP sockets (FD kinds 11 and 12, spec §3.13).
//!
//! Everything is read through a duplicate of the target's socket (`pidfd_getfd`): it is the
//! same socket. A listening socket gives its address, options and backlog; one with
//! connections not yet accepted is refused (they would be lost). An established connection is
//! first locked ([`crate::netlock`]: its packets are dropped, so that nothing arrives after its
//! state is read and no reset answers the peer until the restore), then put in repair mode
//! (`TCP_REPAIR`), which lets its sequence numbers, negotiated options, window and both queues
//! be read without changing them. The socket is left in repair mode in the captured process:
//! killed after the image is durable, it closes silently (no FIN, no RST) and the lock keeps the
//! peer waiting for the restore. A capture that fails, or leaves the process running, turns
//! repair mode off again and removes the lock ([`release`]) before the process runs again.
//!
//! A UDP socket gives its addresses and options; datagrams queued on it are not kept (their
//! number is recorded), as a datagram network may lose them anyway.

use super::Error;
use crate::sys::inet;
use crak_format::record::fd::{
    FdState, InetAddr, TcpConn, TcpState, UdpState, SOCKOPT_BROADCAST, SOCKOPT_KEEPALIVE,
    SOCKOPT_NODELAY, SOCKOPT_REUSEADDR, SOCKOPT_REUSEPORT, SOCKOPT_V6ONLY, TCP_CLOSE,
    TCP_ESTABLISHED, TCP_LISTEN,
};
use std::os::fd::{AsFd, OwnedFd};

/// A socket of the target that the capture changed: in repair mode, locked, or both.
#[derive(Debug)]
pub struct Hold {
    sock: OwnedFd,
    repair: bool,
    lock: Option<u64>,
    /// `SO_REUSEADDR` before repair mode (leaving repair mode clears it).
    reuseaddr: bool,
}

/// Undoes what the capture did to the sockets of `holds` (repair mode off, lock removed):
/// before the process runs again. Errors are reported on stderr; there is nothing else to do.
pub fn release(holds: &mut Vec<Hold>) {
    for h in holds.drain(..) {
        if h.repair {
            if let Err(e) = inet::set_int(
                h.sock.as_fd(),
                libc::IPPROTO_TCP,
                inet::TCP_REPAIR,
                inet::REPAIR_OFF,
            ) {
                eprintln!("crak-capture: turning TCP repair mode off again: {e}");
            }
            if h.reuseaddr {
                if let Err(e) =
                    inet::set_int(h.sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                {
                    eprintln!("crak-capture: setting SO_REUSEADDR again: {e}");
                }
            }
        }
        if let Some(ino) = h.lock {
            if let Err(e) = crate::netlock::unlock(ino) {
                eprintln!("crak-capture: removing the lock of socket {ino}: {e}");
            }
        }
    }
}

/// Forgets the holds without undoing them: the process was killed (its sockets closed
/// silently in repair mode) and the locks wait for the restore.
pub fn keep(holds: &mut Vec<Hold>) {
    holds.clear();
}

/// The TCP state names of `TCP_INFO`.
fn state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "unknown",
    }
}

/// What kind an IP socket is: `Ok(Some(11 or 12))` for TCP and UDP in a state the image holds,
/// `Err(name)` for what is refused, `Ok(None)` when it is no IP socket.
pub fn classify(sock: &OwnedFd) -> Result<Option<u16>, String> {
    let fd = sock.as_fd();
    let domain = inet::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| e.to_string())?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Ok(None);
    }
    let ty = inet::get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| e.to_string())?;
    let proto =
        inet::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| e.to_string())?;
    let fam = if domain == libc::AF_INET {
        "IPv4"
    } else {
        "IPv6"
    };
    match (ty, proto) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) => {
            let info = inet::tcp_info(fd).map_err(|e| e.to_string())?;
            match info.state {
                1 | 7 | 10 => Ok(Some(11)),
                s => Err(format!("a TCP socket in state {}", state_name(s))),
            }
        }
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => Ok(Some(12)),
        (libc::SOCK_RAW, _) => Err(format!("a raw {fam} socket")),
        (libc::SOCK_STREAM, p) if p == libc::IPPROTO_MPTCP => Err("an MPTCP socket".into()),
        (t, p) => Err(format!("an {fam} socket of type {t}, protocol {p}")),
    }
}

fn endpoints(fd: std::os::fd::BorrowedFd<'_>, family: u16) -> std::io::Result<InetAddr> {
    let local = inet::name(fd, false)?.unwrap_or_default();
    let remote = inet::name(fd, true)?.unwrap_or_default();
    Ok(InetAddr {
        family,
        local: local.addr,
        remote: remote.addr,
        local_port: local.port,
        remote_port: remote.port,
    })
}

fn bool_opt(fd: std::os::fd::BorrowedFd<'_>, level: i32, name: i32, bit: u32) -> u32 {
    match inet::get_int(fd, level, name) {
        Ok(v) if v != 0 => bit,
        _ => 0,
    }
}

/// `SOCKOPT_*` bits shared by TCP and UDP.
fn common_opts(fd: std::os::fd::BorrowedFd<'_>, family: u16) -> u32 {
    let mut o = bool_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, SOCKOPT_REUSEADDR)
        | bool_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, SOCKOPT_REUSEPORT);
    if i32::from(family) == libc::AF_INET6 {
        o |= bool_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, SOCKOPT_V6ONLY);
    }
    o
}

fn family_of(sock: &OwnedFd, pid: i32, fd: i32) -> Result<u16, Error> {
    let d = inet::get_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(|e| io(pid, fd, "SO_DOMAIN", e))?;
    Ok(d as u16)
}

fn io(pid: i32, fd: i32, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("{what} of socket fd {fd} of process {pid}"),
        source: e,
    }
}

/// Checks, before the process is touched, that TCP socket `fd` of `pid` can be locked if it
/// needs to be (listening or connected): `nft` is there and the process is in our network
/// namespace. `Err` says why not.
pub fn preflight(pid: i32, fd: i32) -> Result<(), String> {
    use crate::sys::pidfd;
    let sock = pidfd::pidfd_open(pid)
        .and_then(|p| pidfd::pidfd_getfd(&p, fd))
        .map_err(|e| e.to_string())?;
    let info = inet::tcp_info(sock.as_fd()).map_err(|e| e.to_string())?;
    if u16::from(info.state) != TCP_LISTEN && u16::from(info.state) != TCP_ESTABLISHED {
        return Ok(());
    }
    same_netns(pid).map_err(|why| format!("a TCP socket: {why}"))?;
    if !crate::netlock::available() {
        return Err(format!(
            "a {} TCP socket, and nft (nftables), needed to lock it while it is captured, does \
             not run here",
            if u16::from(info.state) == TCP_LISTEN {
                "listening"
            } else {
                "connected"
            }
        ));
    }
    Ok(())
}

/// The state of TCP socket `fd` of the frozen process `pid` (inode `ino`); what the capture
/// changed on it is pushed to `holds`.
pub fn tcp_state(pid: i32, fd: i32, ino: u64, holds: &mut Vec<Hold>) -> Result<FdState, Error> {
    use crate::sys::pidfd;
    let pfd = pidfd::pidfd_open(pid)?;
    let sock = pidfd::pidfd_getfd(&pfd, fd)?;
    let s = sock.as_fd();
    let family = family_of(&sock, pid, fd)?;
    let info = inet::tcp_info(s).map_err(|e| io(pid, fd, "TCP_INFO", e))?;
    let refuse = |kind: String| Error::UnsupportedFd {
        pid,
        fd,
        kind,
        link: format!("socket:[{ino}]"),
    };
    let addr = endpoints(s, family).map_err(|e| io(pid, fd, "addresses", e))?;
    let sockopts = common_opts(s, family)
        | bool_opt(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, SOCKOPT_KEEPALIVE)
        | bool_opt(s, libc::IPPROTO_TCP, libc::TCP_NODELAY, SOCKOPT_NODELAY);
    let int = |level, name| inet::get_int(s, level, name).unwrap_or(0).max(0) as u32;
    let mut st = TcpState {
        addr,
        state: u16::from(info.state),
        sockopts,
        keepidle: int(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        keepintvl: int(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        keepcnt: int(libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF),
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF),
        backlog: 0,
        conn: TcpConn {
            snd_seq: 0,
            rcv_seq: 0,
            mss: 0,
            snd_wscale: 0,
            rcv_wscale: 0,
            options: 0,
            timestamp: 0,
            snd_wl1: 0,
            snd_wnd: 0,
            max_window: 0,
            rcv_wnd: 0,
            rcv_wup: 0,
            unsent: 0,
            send_queue: Vec::new(),
            recv_queue: Vec::new(),
        },
    };
    if st.state == TCP_LISTEN || st.state == TCP_ESTABLISHED {
        same_netns(pid)
            .map_err(|why| refuse(format!("a TCP socket on {}: {why}", addr.show_local())))?;
    }
    match st.state {
        TCP_CLOSE => {}
        TCP_LISTEN => {
            if info.unacked > 0 {
                return Err(refuse(format!(
                    "a listening TCP socket on {} with {} connection(s) not yet accepted",
                    addr.show_local(),
                    info.unacked
                )));
            }
            st.backlog = info.sacked;
            crate::netlock::lock(ino, &addr, true).map_err(Error::Other)?;
            holds.push(Hold {
                sock: sock.try_clone().map_err(|e| io(pid, fd, "dup", e))?,
                repair: false,
                lock: Some(ino),
                reuseaddr: sockopts & SOCKOPT_REUSEADDR != 0,
            });
            // A connection that completed while the lock was being set up.
            let again = inet::tcp_info(s).map_err(|e| io(pid, fd, "TCP_INFO", e))?;
            if again.unacked > 0 {
                return Err(refuse(format!(
                    "a listening TCP socket on {} with {} connection(s) not yet accepted",
                    addr.show_local(),
                    again.unacked
                )));
            }
        }
        TCP_ESTABLISHED => {
            crate::netlock::lock(ino, &addr, false).map_err(Error::Other)?;
            holds.push(Hold {
                sock: sock.try_clone().map_err(|e| io(pid, fd, "dup", e))?,
                repair: false,
                lock: Some(ino),
                reuseaddr: sockopts & SOCKOPT_REUSEADDR != 0,
            });
            inet::set_int(s, libc::IPPROTO_TCP, inet::TCP_REPAIR, inet::REPAIR_ON)
                .map_err(|e| io(pid, fd, "TCP_REPAIR", e))?;
            if let Some(h) = holds.last_mut() {
                h.repair = true;
            }
            st.conn = connection(s).map_err(|e| io(pid, fd, "reading the TCP connection", e))?;
        }
        other => {
            return Err(refuse(format!(
                "a TCP socket in state {}",
                state_name(other as u8)
            )))
        }
    }
    Ok(FdState::Tcp(Box::new(st)))
}

/// Whether `pid` is in crak-capture's network namespace, where the lock ([`crate::netlock`])
/// is installed (and where crak-restore must run to remove it); `Err` says why not.
fn same_netns(pid: i32) -> Result<(), String> {
    let mine = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
    let theirs = crate::procfs::readlink(pid, "ns/net").map_err(|e| e.to_string())?;
    if mine.as_os_str().as_encoded_bytes() == theirs.as_slice() {
        Ok(())
    } else {
        Err(format!(
            "the process is in another network namespace ({}); run crak-capture and \
             crak-restore in it (e.g. with ip netns exec)",
            String::from_utf8_lossy(&theirs)
        ))
    }
}

/// Reads a connection in repair mode: sequence numbers, queues, options, window.
fn connection(s: std::os::fd::BorrowedFd<'_>) -> std::io::Result<TcpConn> {
    let tcp = libc::IPPROTO_TCP;
    let queue = |which: i32| -> std::io::Result<(u32, Vec<u8>)> {
        inet::set_int(s, tcp, inet::TCP_REPAIR_QUEUE, which)?;
        let seq = inet::get_int(s, tcp, inet::TCP_QUEUE_SEQ)? as u32;
        let len = if which == inet::RECV_QUEUE {
            inet::inq(s)?
        } else {
            inet::outq(s)?
        } as usize;
        let data = inet::peek(s, len)?;
        if data.len() != len {
            return Err(std::io::Error::other(format!(
                "{} of {len} queued bytes read",
                data.len()
            )));
        }
        Ok((seq, data))
    };
    let read = (|| {
        let (rcv_seq, recv_queue) = queue(inet::RECV_QUEUE)?;
        let (snd_seq, send_queue) = queue(inet::SEND_QUEUE)?;
        Ok::<_, std::io::Error>((rcv_seq, recv_queue, snd_seq, send_queue))
    })();
    let _ = inet::set_int(s, tcp, inet::TCP_REPAIR_QUEUE, inet::NO_QUEUE);
    let (rcv_seq, recv_queue, snd_seq, send_queue) = read?;
    let unsent = inet::outq_unsent(s)?.min(send_queue.len() as u32);
    let info = inet::tcp_info(s)?;
    let mss = inet::get_int(s, tcp, libc::TCP_MAXSEG)? as u32;
    let timestamp = inet::get_int(s, tcp, inet::TCP_TIMESTAMP)? as u32;
    let w = inet::get_window(s)?;
    Ok(TcpConn {
        snd_seq,
        rcv_seq,
        mss,
        snd_wscale: info.snd_wscale,
        rcv_wscale: info.rcv_wscale,
        options: info.options & 7,
        timestamp,
        snd_wl1: w[0],
        snd_wnd: w[1],
        max_window: w[2],
        rcv_wnd: w[3],
        rcv_wup: w[4],
        unsent,
        send_queue,
        recv_queue,
    })
}

/// The state of UDP socket `fd` of `pid`.
pub fn udp_state(pid: i32, fd: i32) -> Result<FdState, Error> {
    use crate::sys::pidfd;
    let pfd = pidfd::pidfd_open(pid)?;
    let sock = pidfd::pidfd_getfd(&pfd, fd)?;
    let s = sock.as_fd();
    let family = family_of(&sock, pid, fd)?;
    let addr = endpoints(s, family).map_err(|e| io(pid, fd, "addresses", e))?;
    let int = |level, name| inet::get_int(s, level, name).unwrap_or(0).max(0) as u32;
    let dropped = match crate::sys::unixsock::peek_queue(s, false) {
        Ok(q) => q.len() as u32,
        Err(_) => u32::from(inet::inq(s).unwrap_or(0) > 0),
    };
    Ok(FdState::Udp(UdpState {
        addr,
        sockopts: common_opts(s, family)
            | bool_opt(s, libc::SOL_SOCKET, libc::SO_BROADCAST, SOCKOPT_BROADCAST),
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF),
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF),
        dropped,
    }))
}
