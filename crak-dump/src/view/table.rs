//! The human summary of an image: comfy-table tables of the header, the process tree and, per
//! process, identity, credentials, threads, memory, fds, signals and limits.

use super::names;
use super::Style;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use crak_format::image::{Image, Process};
use crak_format::record::fd::{FdKind, FdState, FD_CLOEXEC};
use crak_format::record::header::ARCH_X86_64;
use crak_format::record::locks::{LockKind, LockType};
use crak_format::record::timers::{Notify, Which};
use crak_format::record::vma::VmaKind;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

/// What to include in the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct SummaryOptions {
    /// Show each process's environment.
    pub env: bool,
}

/// Writes the summary of `image` (`size` bytes on disk) to `out`.
pub fn summary(
    out: &mut dyn Write,
    image: &Image<'_>,
    size: u64,
    opts: SummaryOptions,
    style: Style,
) -> io::Result<()> {
    title(out, style, "Image")?;
    let mut t = kv_table(style);
    let h = &image.header;
    let arch = if h.arch == ARCH_X86_64 {
        format!("x86_64 ({})", h.arch)
    } else {
        format!("unknown ({})", h.arch)
    };
    let mut flags = String::new();
    if image.flags != 0 {
        flags = format!(", flags 0x{:x}", image.flags);
    }
    let rows = [
        (
            "format",
            format!("{}.{}{flags}", image.version.major, image.version.minor),
        ),
        ("arch", arch),
        ("kernel", names::text(&h.kernel_release)),
        ("host", names::text(&h.hostname)),
        ("tool", names::text(&h.tool_version)),
        ("captured", names::rfc3339(h.capture_time_ns)),
        ("page size", names::size(u64::from(h.page_size))),
        (
            "xsave",
            format!("features 0x{:x}, {} bytes", h.xsave_features, h.xsave_size),
        ),
        (
            "image size",
            format!("{} ({size} bytes)", names::size(size)),
        ),
        ("processes", image.processes.len().to_string()),
    ];
    for (k, v) in rows {
        t.add_row(vec![key_cell(k, style), Cell::new(v)]);
    }
    for m in &h.special_mappings {
        t.add_row(vec![
            key_cell("special mapping", style),
            Cell::new(format!("{} {}", range(m.start, m.end), vma_kind(m.kind))),
        ]);
    }
    writeln!(out, "{t}")?;

    if !image.processes.is_empty() {
        writeln!(out)?;
        title(out, style, "Process tree")?;
        tree(out, image)?;
    }

    for p in &image.processes {
        writeln!(out)?;
        process(out, image, p, opts, style)?;
    }

    if !image.pipes.is_empty() {
        writeln!(out)?;
        title(out, style, "Pipes")?;
        let mut t = table(style, &["pipe id", "capacity", "buffered"]);
        for pd in &image.pipes {
            t.add_row(vec![
                Cell::new(pd.pipe_id),
                Cell::new(names::size(u64::from(pd.capacity))),
                Cell::new(format!("{} bytes", pd.data.len())),
            ]);
        }
        right(&mut t, &[1, 2]);
        writeln!(out, "{t}")?;
    }
    sysv(out, image, style)?;
    in_flight(out, image, style)?;
    if !image.notes.is_empty() {
        writeln!(out)?;
        title(out, style, "Notes")?;
        let mut t = table(style, &["key", "value"]);
        for n in &image.notes {
            t.add_row(vec![names::text(&n.key), names::text(&n.value)]);
        }
        writeln!(out, "{t}")?;
    }
    Ok(())
}

/// A SysV key: `IPC_PRIVATE` or hexadecimal.
fn ipc_key(key: u32) -> String {
    if key == 0 {
        "IPC_PRIVATE".into()
    } else {
        format!("{key:#010x}")
    }
}

/// A SysV mode: `rw-r-----`, with `dest` and `locked` for segments.
fn ipc_mode(mode: u32) -> String {
    let mut s: String = (0..9)
        .map(|i| {
            let bit = 0o400 >> i;
            if mode & bit == 0 {
                '-'
            } else {
                ['r', 'w', 'x'][i % 3]
            }
        })
        .collect();
    if mode & 0o1000 != 0 {
        s.push_str(" dest");
    }
    if mode & 0o2000 != 0 {
        s.push_str(" locked");
    }
    s
}

fn ipc_owner(p: &crak_format::record::ipc::IpcPerm) -> String {
    if (p.uid, p.gid) == (p.cuid, p.cgid) {
        format!("{}:{}", p.uid, p.gid)
    } else {
        format!("{}:{} (creator {}:{})", p.uid, p.gid, p.cuid, p.cgid)
    }
}

/// The System V IPC objects (SHM, SEM, MSG records).
fn sysv(out: &mut dyn Write, image: &Image<'_>, style: Style) -> io::Result<()> {
    if !image.shm_segments.is_empty() {
        writeln!(out)?;
        title(out, style, "SysV shared memory")?;
        let mut t = table(
            style,
            &[
                "shmid",
                "key",
                "mode",
                "owner",
                "size",
                "stored",
                "mapped by",
            ],
        );
        for s in &image.shm_segments {
            let mut by: Vec<String> = image
                .processes
                .iter()
                .filter(|p| {
                    p.vmas
                        .iter()
                        .any(|v| v.kind == VmaKind::SysvShm && v.ino == u64::from(s.perm.id))
                })
                .map(|p| p.pid().to_string())
                .collect();
            if by.is_empty() {
                by.push("-".into());
            }
            t.add_row(vec![
                Cell::new(s.perm.id),
                Cell::new(ipc_key(s.perm.key)),
                Cell::new(ipc_mode(s.perm.mode)),
                Cell::new(ipc_owner(&s.perm)),
                Cell::new(names::size(s.size)),
                Cell::new(names::size(s.data.len() as u64)),
                Cell::new(by.join(", ")),
            ]);
        }
        right(&mut t, &[0, 4, 5]);
        writeln!(out, "{t}")?;
    }
    if !image.sem_sets.is_empty() {
        writeln!(out)?;
        title(out, style, "SysV semaphore sets")?;
        let mut t = table(style, &["semid", "key", "mode", "owner", "nsems", "values"]);
        for s in &image.sem_sets {
            let mut values: Vec<String> = s
                .sems
                .iter()
                .take(16)
                .map(|m| m.value.to_string())
                .collect();
            if s.sems.len() > 16 {
                values.push(format!("… ({} more)", s.sems.len() - 16));
            }
            t.add_row(vec![
                Cell::new(s.perm.id),
                Cell::new(ipc_key(s.perm.key)),
                Cell::new(ipc_mode(s.perm.mode)),
                Cell::new(ipc_owner(&s.perm)),
                Cell::new(s.sems.len()),
                Cell::new(values.join(" ")),
            ]);
        }
        right(&mut t, &[0, 4]);
        writeln!(out, "{t}")?;
    }
    if !image.msg_queues.is_empty() {
        writeln!(out)?;
        title(out, style, "SysV message queues")?;
        let mut t = table(
            style,
            &[
                "msqid", "key", "mode", "owner", "qbytes", "messages", "queued", "types",
            ],
        );
        for q in &image.msg_queues {
            let mut types: Vec<i64> = q.messages.iter().map(|m| m.mtype).collect();
            types.sort_unstable();
            types.dedup();
            let mut shown: Vec<String> = types.iter().take(8).map(|t| t.to_string()).collect();
            if types.len() > 8 {
                shown.push("…".into());
            }
            t.add_row(vec![
                Cell::new(q.perm.id),
                Cell::new(ipc_key(q.perm.key)),
                Cell::new(ipc_mode(q.perm.mode)),
                Cell::new(ipc_owner(&q.perm)),
                Cell::new(names::size(q.qbytes)),
                Cell::new(q.messages.len()),
                Cell::new(names::size(q.cbytes())),
                Cell::new(shown.join(" ")),
            ]);
        }
        right(&mut t, &[0, 4, 5, 6]);
        writeln!(out, "{t}")?;
    }
    Ok(())
}

fn title(out: &mut dyn Write, style: Style, text: &str) -> io::Result<()> {
    writeln!(out, "{}", style.bold(text))
}

fn base_table(style: Style) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    if style.color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t
}

fn table(style: Style, header: &[&str]) -> Table {
    let mut t = base_table(style);
    let cells: Vec<Cell> = header
        .iter()
        .map(|h| {
            let c = Cell::new(h);
            if style.color {
                c.fg(Color::Cyan).add_attribute(Attribute::Bold)
            } else {
                c
            }
        })
        .collect();
    t.set_header(cells);
    t
}

fn kv_table(style: Style) -> Table {
    base_table(style)
}

fn key_cell(k: &str, style: Style) -> Cell {
    let c = Cell::new(k);
    if style.color {
        c.fg(Color::Cyan)
    } else {
        c
    }
}

fn right(t: &mut Table, cols: &[usize]) {
    for &i in cols {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn range(start: u64, end: u64) -> String {
    format!("{start:012x}-{end:012x}")
}

fn vma_kind(k: VmaKind) -> &'static str {
    match k {
        VmaKind::Anon => "anon",
        VmaKind::File => "file",
        VmaKind::Heap => "heap",
        VmaKind::Stack => "stack",
        VmaKind::Vdso => "vdso",
        VmaKind::Vvar => "vvar",
        VmaKind::VvarVclock => "vvar_vclock",
        VmaKind::VvarOther => "vvar_other",
        VmaKind::Vsyscall => "vsyscall",
        VmaKind::SysvShm => "sysv_shm",
    }
}

fn fd_kind(k: FdKind) -> &'static str {
    match k {
        FdKind::Reg => "reg",
        FdKind::Pipe => "pipe",
        FdKind::Fifo => "fifo",
        FdKind::Chr => "chr",
        FdKind::Tty => "tty",
        FdKind::Eventfd => "eventfd",
        FdKind::Signalfd => "signalfd",
        FdKind::Timerfd => "timerfd",
        FdKind::Epoll => "epoll",
        FdKind::Unix => "unix",
        FdKind::Inotify => "inotify",
        FdKind::Memfd => "memfd",
        FdKind::UnixSocket => "unix_socket",
        FdKind::Tcp => "tcp",
        FdKind::Udp => "udp",
    }
}

/// A TCP or UDP socket's endpoints and state: `127.0.0.1:8080 -> 127.0.0.1:41234 ESTABLISHED
/// (send 3 B, 2 unsent; receive 7 B)`.
fn inet_text(f: &crak_format::record::fd::Fd<'_>) -> Option<String> {
    use crak_format::record::fd::{FdState, TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN};
    let opts = |bits: u32| {
        let names = [
            "SO_REUSEADDR",
            "SO_REUSEPORT",
            "SO_KEEPALIVE",
            "TCP_NODELAY",
            "IPV6_V6ONLY",
            "SO_RCVBUF",
            "SO_SNDBUF",
            "SO_BROADCAST",
        ];
        let on: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        if on.is_empty() {
            String::new()
        } else {
            format!(" [{}]", on.join(","))
        }
    };
    match FdState::decode(f.kind, f.contents.as_bytes()).ok()?? {
        FdState::Tcp(t) => {
            let a = &t.addr;
            Some(match t.state {
                TCP_LISTEN => format!(
                    "{} LISTEN (backlog {}){}",
                    a.show_local(),
                    t.backlog,
                    opts(t.sockopts)
                ),
                TCP_ESTABLISHED => format!(
                    "{} -> {} ESTABLISHED (send {} B, {} unsent; receive {} B){}",
                    a.show_local(),
                    a.show_remote(),
                    t.conn.send_queue.len(),
                    t.conn.unsent,
                    t.conn.recv_queue.len(),
                    opts(t.sockopts)
                ),
                TCP_CLOSE if a.local_port != 0 => {
                    format!("{} CLOSE (bound){}", a.show_local(), opts(t.sockopts))
                }
                _ => format!("CLOSE{}", opts(t.sockopts)),
            })
        }
        FdState::Udp(u) => {
            let a = &u.addr;
            let mut s = a.show_local();
            if a.remote_port != 0 {
                s.push_str(&format!(" -> {}", a.show_remote()));
            }
            if u.dropped != 0 {
                s.push_str(&format!(" ({} queued datagrams dropped)", u.dropped));
            }
            s.push_str(&opts(u.sockopts));
            Some(s)
        }
        _ => None,
    }
}

/// A Unix socket's state in a few words: `stream listening /run/s (backlog 16, 1 pending)`,
/// `dgram @name connected to /run/log (external), 2 messages queued (5 B)`.
fn unix_socket(f: &crak_format::record::fd::Fd<'_>) -> String {
    use crak_format::record::fd::{
        FdState, UNIX_CONNECTED, UNIX_LISTENING, UNIX_NAME_GONE, UNIX_PASSCRED, UNIX_PEER_CLOSED,
        UNIX_PEER_EXTERNAL, UNIX_SHUT_RD, UNIX_SHUT_WR,
    };
    let s = match FdState::decode(f.kind, f.contents.as_bytes()) {
        Ok(Some(FdState::UnixSocket(s))) => s,
        Ok(_) => return format!("socket:[{}] (no state)", f.ino),
        Err(e) => return format!("socket:[{}] (bad state: {e})", f.ino),
    };
    let name = |n: &[u8]| match n.split_first() {
        None => "unnamed".to_string(),
        Some((0, rest)) => format!("@{}", names::clean(&String::from_utf8_lossy(rest))),
        Some(_) => names::clean(&String::from_utf8_lossy(n)),
    };
    let ty = match s.sock_type {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "?",
    };
    let mut out = format!("{ty} {}", name(&s.name));
    if s.flags & UNIX_NAME_GONE != 0 {
        out.push_str(" (unlinked)");
    }
    if s.has_path() && s.name_mode != 0 {
        out.push_str(&format!(
            " [{:o} {}:{}]",
            s.name_mode & 0o7777,
            s.name_uid,
            s.name_gid
        ));
    }
    match s.state {
        UNIX_LISTENING => out.push_str(&format!(
            " listening (backlog {}, {} pending)",
            s.backlog,
            s.pending.len()
        )),
        UNIX_CONNECTED if s.flags & UNIX_PEER_CLOSED != 0 => {
            out.push_str(" connected, peer closed");
        }
        UNIX_CONNECTED => {
            out.push_str(&format!(" connected to {}", name(&s.peer_name)));
            if s.flags & UNIX_PEER_EXTERNAL != 0 {
                out.push_str(" (outside the image)");
            } else {
                out.push_str(&format!(" (socket {})", s.peer));
            }
        }
        _ => {}
    }
    let shut: Vec<&str> = [(UNIX_SHUT_RD, "rd"), (UNIX_SHUT_WR, "wr")]
        .iter()
        .filter(|(b, _)| s.flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if !shut.is_empty() {
        out.push_str(&format!(", shut {}", shut.join("+")));
    }
    if s.flags & UNIX_PASSCRED != 0 {
        out.push_str(", SO_PASSCRED");
    }
    if !s.queue.is_empty() {
        let bytes: usize = s.queue.iter().map(|m| m.data.len()).sum();
        out.push_str(&format!(
            ", {} message{} queued ({})",
            s.queue.len(),
            if s.queue.len() == 1 { "" } else { "s" },
            names::size(bytes as u64)
        ));
    }
    out
}

/// The process tree, roots (parent outside the image) first, children indented under their
/// parent in file order. Iterative, so a deep chain cannot overflow the stack; processes caught
/// in a ppid cycle are listed apart.
fn tree(out: &mut dyn Write, image: &Image<'_>) -> io::Result<()> {
    let procs = &image.processes;
    let pids: HashSet<u32> = procs.iter().map(|p| p.pid()).collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let ppid = p.process.ppid;
        if ppid != p.pid() && pids.contains(&ppid) {
            children.entry(ppid).or_default().push(i);
        } else {
            roots.push(i);
        }
    }
    let mut shown = vec![false; procs.len()];
    // Stack of (process index, prefix for its children, connector for itself).
    let mut stack: Vec<(usize, String, String)> = roots
        .iter()
        .rev()
        .map(|&i| (i, String::new(), String::new()))
        .collect();
    while let Some((i, prefix, connector)) = stack.pop() {
        let Some(p) = procs.get(i) else { continue };
        if std::mem::replace(&mut shown[i], true) {
            continue;
        }
        writeln!(out, "{connector}{}", tree_label(p))?;
        let kids = children.get(&p.pid()).map(Vec::as_slice).unwrap_or(&[]);
        for (n, &k) in kids.iter().enumerate().rev() {
            let last = n + 1 == kids.len();
            let conn = format!("{prefix}{}", if last { "└── " } else { "├── " });
            let pre = format!("{prefix}{}", if last { "    " } else { "│   " });
            stack.push((k, pre, conn));
        }
    }
    for (i, p) in procs.iter().enumerate() {
        if !shown.get(i).copied().unwrap_or(true) {
            writeln!(
                out,
                "{} (parent {}: ppid cycle)",
                tree_label(p),
                p.process.ppid
            )?;
        }
    }
    Ok(())
}

fn tree_label(p: &Process<'_>) -> String {
    if p.process.is_zombie() {
        let st = p.process.wait_status();
        let how = if st & 0x7f == 0 {
            format!("exited {}", (st >> 8) & 0xff)
        } else {
            format!("killed by {}", names::signal(st & 0x7f))
        };
        return format!(
            "{} {} [ppid {}, zombie: {how}]",
            p.pid(),
            names::text(&p.process.comm),
            p.process.ppid
        );
    }
    let threads = p.process.tids.len();
    let t = if threads == 1 { "thread" } else { "threads" };
    format!(
        "{} {} [ppid {}, {threads} {t}]",
        p.pid(),
        names::text(&p.process.comm),
        p.process.ppid
    )
}

fn process(
    out: &mut dyn Write,
    image: &Image<'_>,
    p: &Process<'_>,
    opts: SummaryOptions,
    style: Style,
) -> io::Result<()> {
    let r = &p.process;
    title(
        out,
        style,
        &format!("Process {} ({})", r.pid, names::text(&r.comm)),
    )?;
    let mut t = kv_table(style);
    let mut rows: Vec<(&str, String)> = vec![
        ("command line", names::cmdline(r.cmdline.as_bytes())),
        ("exe", names::text(&r.exe)),
        ("cwd", names::text(&r.cwd)),
        ("root", names::text(&r.root)),
        (
            "ppid / pgid / sid",
            format!("{} / {} / {}", r.ppid, r.pgid, r.sid),
        ),
        ("umask", format!("{:04o}", r.umask)),
        ("personality", format!("0x{:x}", r.personality)),
    ];
    match &p.creds {
        Some(c) => {
            rows.push((
                "uid (r/e/s/fs)",
                format!("{} / {} / {} / {}", c.uid, c.euid, c.suid, c.fsuid),
            ));
            rows.push((
                "gid (r/e/s/fs)",
                format!("{} / {} / {} / {}", c.gid, c.egid, c.sgid, c.fsgid),
            ));
            let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
            rows.push((
                "groups",
                if groups.is_empty() {
                    "-".to_string()
                } else {
                    groups.join(", ")
                },
            ));
            rows.push((
                "capabilities",
                format!(
                    "eff 0x{:x}, prm 0x{:x}, inh 0x{:x}, bnd 0x{:x}, amb 0x{:x}",
                    c.cap_effective,
                    c.cap_permitted,
                    c.cap_inheritable,
                    c.cap_bounding,
                    c.cap_ambient
                ),
            ));
            rows.push((
                "securebits / no_new_privs",
                format!("0x{:x} / {}", c.securebits, c.no_new_privs),
            ));
        }
        None => rows.push(("credentials", "missing (no CREDS record)".to_string())),
    }
    if let Some(mm) = &p.mm {
        rows.push(("code", range(mm.start_code, mm.end_code)));
        rows.push(("data", range(mm.start_data, mm.end_data)));
        rows.push(("brk", range(mm.start_brk, mm.brk)));
        rows.push(("stack start", format!("{:012x}", mm.start_stack)));
    }
    let pending = pending_signals(p);
    if !pending.is_empty() {
        rows.push(("pending signals", pending));
    }
    for (k, v) in rows {
        t.add_row(vec![key_cell(k, style), Cell::new(v)]);
    }
    writeln!(out, "{t}")?;

    threads(out, p, style)?;
    memory(out, image, p, style)?;
    fds(out, p, style)?;
    locks(out, p, style)?;
    signals(out, p, style)?;
    timers(out, p, style)?;
    limits(out, p, style)?;
    if opts.env {
        title(out, style, "Environment")?;
        let mut t = table(style, &["variable"]);
        for v in names::nul_split(r.environ.as_bytes()) {
            t.add_row(vec![v]);
        }
        writeln!(out, "{t}")?;
    }
    Ok(())
}

/// Queued signals by `si_signo`, process-wide queue first: `SIGUSR1, SIGTERM (tid 43)`.
fn pending_signals(p: &Process<'_>) -> String {
    let mut parts = Vec::new();
    for q in &p.sigqueues {
        for info in &q.siginfos {
            let signo = info
                .as_bytes()
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes);
            let name = names::signal(signo);
            parts.push(if q.tid == 0 {
                name
            } else {
                format!("{name} (tid {})", q.tid)
            });
        }
    }
    parts.join(", ")
}

fn threads(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    if p.threads.is_empty() {
        return Ok(());
    }
    title(out, style, "Threads")?;
    let mut t = table(
        style,
        &[
            "tid",
            "name",
            "rip",
            "rsp",
            "rax",
            "orig_rax",
            "fs_base",
            "blocked",
            "robust list",
        ],
    );
    for th in &p.threads {
        let g = &th.gpr;
        let rax = match names::restart_code(g.rax) {
            Some(name) => format!("{:x} ({name})", g.rax),
            None => format!("{:x}", g.rax),
        };
        let orig = if g.orig_rax == u64::MAX {
            "-".to_string()
        } else {
            format!("{} (syscall)", g.orig_rax)
        };
        let (name, robust) = match &th.ext {
            Some(x) if x.robust_list == 0 => (x.name.to_string_lossy().into_owned(), "-".into()),
            Some(x) => (
                x.name.to_string_lossy().into_owned(),
                format!("{:x}", x.robust_list),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        t.add_row(vec![
            th.tid.to_string(),
            name,
            format!("{:x}", g.rip),
            format!("{:x}", g.rsp),
            rax,
            orig,
            format!("{:x}", g.fs_base),
            names::sigmask(th.blocked),
            robust,
        ]);
    }
    right(&mut t, &[0]);
    writeln!(out, "{t}")
}

/// Stored and zero page counts per VMA, found by sweeping sorted runs against sorted VMAs.
fn page_counts(p: &Process<'_>, page_size: u64) -> Vec<(u64, u64)> {
    let mut counts = vec![(0u64, 0u64); p.vmas.len()];
    if page_size == 0 {
        return counts;
    }
    let mut order: Vec<usize> = (0..p.vmas.len()).collect();
    order.sort_unstable_by_key(|&i| p.vmas.get(i).map_or(0, |v| v.start));
    let runs = p
        .pages
        .iter()
        .map(|r| (r.addr, r.nr_pages, true))
        .chain(p.zero_runs.iter().map(|r| (r.addr, r.nr_pages, false)));
    for (addr, nr, stored) in runs {
        let end = nr
            .checked_mul(page_size)
            .and_then(|l| l.checked_add(addr))
            .unwrap_or(u64::MAX);
        // First VMA (in address order) that ends after the run starts.
        let first = order.partition_point(|&i| match p.vmas.get(i) {
            Some(v) => v.end <= addr,
            None => true,
        });
        for &i in order.get(first..).unwrap_or(&[]) {
            let Some(v) = p.vmas.get(i) else { break };
            if v.start >= end {
                break;
            }
            let overlap = end.min(v.end).saturating_sub(addr.max(v.start)) / page_size;
            if let Some(c) = counts.get_mut(i) {
                if stored {
                    c.0 = c.0.saturating_add(overlap);
                } else {
                    c.1 = c.1.saturating_add(overlap);
                }
            }
        }
    }
    counts
}

fn memory(out: &mut dyn Write, image: &Image<'_>, p: &Process<'_>, style: Style) -> io::Result<()> {
    if p.vmas.is_empty() {
        return Ok(());
    }
    title(out, style, "Memory")?;
    let mut t = table(
        style,
        &[
            "#", "range", "perms", "size", "kind", "path", "stored", "zero", "flags",
        ],
    );
    let counts = page_counts(p, u64::from(image.header.page_size));
    for (i, v) in p.vmas.iter().enumerate() {
        let (stored, zero) = counts.get(i).copied().unwrap_or_default();
        let mut path = names::text(&v.path);
        if v.kind == VmaKind::File && v.pgoff != 0 {
            path.push_str(&format!(" @0x{:x}", v.pgoff));
        }
        t.add_row(vec![
            i.to_string(),
            range(v.start, v.end),
            v.perms(),
            names::size(v.len()),
            vma_kind(v.kind).to_string(),
            path,
            stored.to_string(),
            zero.to_string(),
            names::vma_extra(v.flags, v.madvise),
        ]);
    }
    right(&mut t, &[0, 3, 6, 7]);
    writeln!(out, "{t}")
}

fn fds(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    if p.fds.is_empty() {
        return Ok(());
    }
    title(out, style, "Files")?;
    let mut t = table(style, &["fd", "kind", "path", "offset", "flags", "cloexec"]);
    for f in &p.fds {
        let path = fd_path(f);
        t.add_row(vec![
            f.fd.to_string(),
            fd_kind(f.kind).to_string(),
            path,
            f.pos.to_string(),
            names::open_flags(f.open_flags),
            if f.fd_flags & FD_CLOEXEC != 0 {
                "yes".to_string()
            } else {
                "no".to_string()
            },
        ]);
    }
    right(&mut t, &[0, 3]);
    writeln!(out, "{t}")
}

/// What the Files table shows as an fd's path: its path with what its state holds.
fn fd_path(f: &crak_format::record::fd::Fd<'_>) -> String {
    let mut path = names::text(&f.path);
    if let Some(text) = inet_text(f) {
        path = text;
    }
    if matches!(f.kind, FdKind::Pipe | FdKind::Fifo) && !path.contains(&f.ino.to_string()) {
        path.push_str(&format!(" (pipe {})", f.ino));
    }
    if f.deleted {
        if let Some(stem) = path.strip_suffix(" (deleted)") {
            path = stem.to_string();
        }
        path.push_str(&format!(" (deleted, {} bytes kept)", f.contents.len()));
    }
    if f.kind == FdKind::UnixSocket {
        path = unix_socket(f);
    }
    if let Some(state) = object_state(f.kind, f.contents.as_bytes()) {
        path.push_str(&state);
    }
    path
}

/// The SCM records (format 1.3): per queued message that carried ancillary data, the socket
/// (and the fds of the image holding it), its credentials and the files in flight.
fn in_flight(out: &mut dyn Write, image: &Image<'_>, style: Style) -> io::Result<()> {
    if image.scm.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    title(out, style, "In flight (SCM_RIGHTS, SCM_CREDENTIALS)")?;
    let mut t = table(style, &["socket", "message", "credentials", "files"]);
    for s in &image.scm {
        let holders: Vec<String> = image
            .processes
            .iter()
            .flat_map(|p| p.fds.iter())
            .filter(|f| f.ino == s.socket && matches!(f.kind, FdKind::Unix | FdKind::UnixSocket))
            .map(|f| format!("{}:{}", f.pid, f.fd))
            .collect();
        let socket = if holders.is_empty() {
            format!("{} (no fd)", s.socket)
        } else {
            format!("{} (fd {})", s.socket, holders.join(", "))
        };
        let creds = if s.has_credentials() {
            format!("pid {} uid {} gid {}", s.pid, s.uid, s.gid)
        } else {
            "-".into()
        };
        let files: Vec<String> = s
            .files
            .iter()
            .map(|f| {
                let mut text = format!("{} {}", fd_kind(f.kind), fd_path(f));
                if let Ok(Some(FdState::Eventfd { count, .. })) =
                    FdState::decode(f.kind, f.contents.as_bytes())
                {
                    text.push_str(&format!(" [count {count}]"));
                }
                if f.kind == FdKind::Reg {
                    text.push_str(&format!(" @{}", f.pos));
                }
                if f.description != 0 {
                    text.push_str(&format!(" (shared open file {})", f.description));
                }
                text
            })
            .collect();
        t.add_row(vec![
            socket,
            format!("#{}", s.message),
            creds,
            if files.is_empty() {
                "-".into()
            } else {
                files.join("; ")
            },
        ]);
    }
    writeln!(out, "{t}")
}

/// What an inotify or memfd fd holds, appended to its path in the Files table.
fn object_state(kind: FdKind, contents: &[u8]) -> Option<String> {
    match FdState::decode(kind, contents) {
        Ok(Some(FdState::Inotify(watches))) => {
            let list: Vec<String> = watches
                .iter()
                .map(|w| {
                    format!(
                        "{}: {} {}",
                        w.wd,
                        names::clean(&String::from_utf8_lossy(&w.path)),
                        in_mask(w.mask)
                    )
                })
                .collect();
            Some(format!(" [watches {}]", list.join("; ")))
        }
        Ok(Some(FdState::Memfd {
            flags,
            seals,
            size,
            extents,
            ..
        })) => {
            let stored: usize = extents.iter().map(|e| e.data.len()).sum();
            let mut s = format!(
                " [{}, {} stored",
                names::size(size),
                names::size(stored as u64)
            );
            if seals != 0 {
                s.push_str(&format!(", seals {}", seal_names(seals)));
            }
            if flags & crak_format::record::fd::MFD_ALLOW_SEALING != 0 {
                s.push_str(", sealable");
            }
            s.push(']');
            Some(s)
        }
        Ok(_) => None,
        Err(why) => {
            matches!(kind, FdKind::Inotify | FdKind::Memfd).then(|| format!(" [bad state: {why}]"))
        }
    }
}

fn in_mask(mask: u32) -> String {
    const BITS: [(u32, &str); 14] = [
        (0x1, "ACCESS"),
        (0x2, "MODIFY"),
        (0x4, "ATTRIB"),
        (0x8, "CLOSE_WRITE"),
        (0x10, "CLOSE_NOWRITE"),
        (0x20, "OPEN"),
        (0x40, "MOVED_FROM"),
        (0x80, "MOVED_TO"),
        (0x100, "CREATE"),
        (0x200, "DELETE"),
        (0x400, "DELETE_SELF"),
        (0x800, "MOVE_SELF"),
        (0x2000_0000, "EXCL_UNLINK"),
        (0x8000_0000, "ONESHOT"),
    ];
    let mut names: Vec<String> = BITS
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| format!("IN_{n}"))
        .collect();
    let rest = BITS.iter().fold(mask, |m, (b, _)| m & !b);
    if rest != 0 {
        names.push(format!("0x{rest:x}"));
    }
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

fn seal_names(seals: u32) -> String {
    const BITS: [(u32, &str); 6] = [
        (0x1, "SEAL"),
        (0x2, "SHRINK"),
        (0x4, "GROW"),
        (0x8, "WRITE"),
        (0x10, "FUTURE_WRITE"),
        (0x20, "EXEC"),
    ];
    let mut names: Vec<String> = BITS
        .iter()
        .filter(|(b, _)| seals & b != 0)
        .map(|(_, n)| format!("F_SEAL_{n}"))
        .collect();
    let rest = BITS.iter().fold(seals, |m, (b, _)| m & !b);
    if rest != 0 {
        names.push(format!("0x{rest:x}"));
    }
    names.join("|")
}

fn locks(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    let Some(l) = &p.locks else {
        return Ok(());
    };
    if l.locks.is_empty() {
        return Ok(());
    }
    title(out, style, "File locks")?;
    let mut t = table(style, &["fd", "kind", "type", "range"]);
    for k in &l.locks {
        let (kind, ty) = match (k.kind, k.lock_type) {
            (LockKind::Flock, LockType::Read) => ("flock", "LOCK_SH"),
            (LockKind::Flock, LockType::Write) => ("flock", "LOCK_EX"),
            (LockKind::Posix, LockType::Read) => ("posix", "F_RDLCK"),
            (LockKind::Posix, LockType::Write) => ("posix", "F_WRLCK"),
            (LockKind::Ofd, LockType::Read) => ("ofd", "F_RDLCK"),
            (LockKind::Ofd, LockType::Write) => ("ofd", "F_WRLCK"),
        };
        let range = match (k.kind, k.len) {
            (LockKind::Flock, _) => "whole file".to_string(),
            (_, 0) => format!("{}-EOF", k.start),
            (_, len) => format!("{}-{}", k.start, k.start.saturating_add(len - 1)),
        };
        t.add_row(vec![
            k.fd.to_string(),
            kind.to_string(),
            ty.to_string(),
            range,
        ]);
    }
    right(&mut t, &[0]);
    writeln!(out, "{t}")
}

fn duration(ns: u64) -> String {
    if ns == 0 {
        return "-".to_string();
    }
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        format!("{s} s")
    } else {
        let digits = format!("{frac:09}");
        format!("{s}.{} s", digits.trim_end_matches('0'))
    }
}

fn clock_name(clockid: u32) -> String {
    match clockid {
        0 => "CLOCK_REALTIME".into(),
        1 => "CLOCK_MONOTONIC".into(),
        2 => "CLOCK_PROCESS_CPUTIME_ID".into(),
        3 => "CLOCK_THREAD_CPUTIME_ID".into(),
        7 => "CLOCK_BOOTTIME".into(),
        8 => "CLOCK_REALTIME_ALARM".into(),
        9 => "CLOCK_BOOTTIME_ALARM".into(),
        11 => "CLOCK_TAI".into(),
        c => format!("clock {}", c as i32),
    }
}

fn timers(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    let Some(tm) = &p.timers else {
        return Ok(());
    };
    if tm.itimers.is_empty() && tm.posix.is_empty() {
        return Ok(());
    }
    title(out, style, "Timers")?;
    let mut t = table(
        style,
        &["timer", "clock", "notify", "next", "period", "overrun"],
    );
    for it in &tm.itimers {
        let (name, clock, sig) = match it.which {
            Which::Real => ("ITIMER_REAL", "CLOCK_REALTIME", names::signal(14)),
            Which::Virtual => ("ITIMER_VIRTUAL", "process user time", names::signal(26)),
            Which::Prof => ("ITIMER_PROF", "process CPU time", names::signal(27)),
        };
        t.add_row(vec![
            name.to_string(),
            clock.to_string(),
            sig,
            duration(it.value_ns),
            duration(it.interval_ns),
            "-".to_string(),
        ]);
    }
    for pt in &tm.posix {
        let notify = match pt.notify {
            Notify::Signal => format!("{} (value {:#x})", names::signal(pt.signo), pt.sigval),
            Notify::None => "none".to_string(),
            Notify::ThreadId => format!(
                "{} to thread {} (value {:#x})",
                names::signal(pt.signo),
                pt.tid,
                pt.sigval
            ),
        };
        t.add_row(vec![
            format!("timer {}", pt.id),
            clock_name(pt.clockid),
            notify,
            duration(pt.value_ns),
            duration(pt.interval_ns),
            pt.overrun.to_string(),
        ]);
    }
    writeln!(out, "{t}")
}

fn signals(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    let Some(sa) = &p.sigactions else {
        return Ok(());
    };
    if sa.actions.is_empty() {
        return Ok(());
    }
    title(out, style, "Signal dispositions")?;
    let mut t = table(style, &["signal", "handler", "flags", "restorer", "mask"]);
    for a in &sa.actions {
        t.add_row(vec![
            names::signal(a.signo),
            names::handler(a.handler),
            names::sa_flags(a.flags),
            if a.restorer == 0 {
                "-".to_string()
            } else {
                format!("0x{:x}", a.restorer)
            },
            names::sigmask(a.mask),
        ]);
    }
    writeln!(out, "{t}")
}

fn limits(out: &mut dyn Write, p: &Process<'_>, style: Style) -> io::Result<()> {
    let Some(rl) = &p.rlimits else {
        return Ok(());
    };
    if rl.limits.is_empty() {
        return Ok(());
    }
    title(out, style, "Resource limits")?;
    let mut t = table(style, &["resource", "soft", "hard"]);
    for l in &rl.limits {
        t.add_row(vec![
            names::rlimit(l.resource),
            names::rlim_value(l.cur),
            names::rlim_value(l.max),
        ]);
    }
    right(&mut t, &[1, 2]);
    writeln!(out, "{t}")
}
