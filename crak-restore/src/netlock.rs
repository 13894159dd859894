//! The network lock of a captured TCP socket: nftables rules that drop its packets from the
//! moment the capture reads its state until the restored socket has taken over, so that
//! nothing arrives that the image would miss and the kernel answers nothing with a reset in
//! between (the peer only retransmits). One table per socket, `inet crak_tcp_<inode>`, made by
//! the capture and deleted by the restore (or by the capture itself when the process goes on
//! running). Runs `nft(8)`; a host without it cannot capture a TCP socket that is listening or
//! connected.
//!
//! An established connection's table drops the packets of its four-tuple in both directions;
//! a listening socket's drops new connection requests (SYN without ACK) to its address and
//! port, which the client repeats after the restore.

use crak_format::record::fd::{InetAddr, AF_INET};
use std::io::Write;
use std::process::{Command, Stdio};

/// The table of the socket with inode `ino`.
pub fn table(ino: u64) -> String {
    format!("crak_tcp_{ino}")
}

/// An address as nftables matches it: (`ip` or `ip6`, text); `None` for the wildcard.
fn nft_addr(family: u16, a: &[u8; 16]) -> Option<(&'static str, String)> {
    if a.iter().all(|&b| b == 0) {
        return None;
    }
    let v4 = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
    if family == AF_INET {
        return Some(("ip", v4(&a[..4])));
    }
    // An IPv4-mapped address on an IPv6 socket travels as IPv4.
    if a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff {
        return Some(("ip", v4(&a[12..])));
    }
    Some(("ip6", std::net::Ipv6Addr::from(*a).to_string()))
}

/// The nftables script that locks a socket.
pub fn script(ino: u64, a: &InetAddr, listening: bool) -> String {
    let t = table(ino);
    let local = nft_addr(a.family, &a.local);
    let remote = nft_addr(a.family, &a.remote);
    let m = |what: &str, addr: &Option<(&str, String)>| match addr {
        Some((proto, text)) => format!("{proto} {what} {text} "),
        None => String::new(),
    };
    let (input, output) = if listening {
        (
            format!(
                "{}tcp dport {} tcp flags & (syn | ack) == syn drop",
                m("daddr", &local),
                a.local_port
            ),
            None,
        )
    } else {
        (
            format!(
                "{}{}tcp sport {} tcp dport {} drop",
                m("saddr", &remote),
                m("daddr", &local),
                a.remote_port,
                a.local_port
            ),
            Some(format!(
                "{}{}tcp sport {} tcp dport {} drop",
                m("saddr", &local),
                m("daddr", &remote),
                a.local_port,
                a.remote_port
            )),
        )
    };
    let mut s = format!(
        "table inet {t} {{\n  chain input {{\n    type filter hook input priority -150; policy accept;\n    {input}\n  }}\n"
    );
    if let Some(o) = output {
        s.push_str(&format!(
            "  chain output {{\n    type filter hook output priority -150; policy accept;\n    {o}\n  }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running nft (nftables) to lock the connection: {e}"))?;
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        i.write_all(text.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `nft` runs here.
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the lock of the socket with inode `ino` (again: a socket shared by two fds).
pub fn lock(ino: u64, a: &InetAddr, listening: bool) -> Result<(), String> {
    let _ = nft(&["delete", "table", "inet", &table(ino)], None);
    nft(&["-f", "-"], Some(&script(ino, a, listening)))
}

/// Removes the lock of the socket with inode `ino`; a lock that is not there is fine.
pub fn unlock(ino: u64) -> Result<(), String> {
    match nft(&["delete", "table", "inet", &table(ino)], None) {
        Ok(()) => Ok(()),
        Err(e) if e.contains("No such file") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts() {
        let mut l = [0u8; 16];
        l[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&[127, 0, 0, 2]);
        let a = InetAddr {
            family: AF_INET,
            local: l,
            remote: r,
            local_port: 80,
            remote_port: 5000,
        };
        let s = script(7, &a, false);
        assert!(s.contains("table inet crak_tcp_7"));
        assert!(
            s.contains("ip saddr 127.0.0.2 ip daddr 127.0.0.1 tcp sport 5000 tcp dport 80 drop")
        );
        assert!(
            s.contains("ip saddr 127.0.0.1 ip daddr 127.0.0.2 tcp sport 80 tcp dport 5000 drop")
        );
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[10, 0, 0, 1]);
        let w = InetAddr {
            family: crak_format::record::fd::AF_INET6,
            local: [0; 16],
            remote: mapped,
            local_port: 80,
            remote_port: 0,
        };
        let s = script(8, &w, true);
        assert!(s.contains("    tcp dport 80 tcp flags & (syn | ack) == syn drop"));
        assert!(!s.contains("output"));
        assert_eq!(nft_addr(w.family, &mapped), Some(("ip", "10.0.0.1".into())));
    }
}
