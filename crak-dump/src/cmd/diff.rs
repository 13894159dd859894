//! `crak-dump diff A B`: what differs between two images.
//!
//! Metadata is compared entity by entity, each matched by its identity (a process by pid, a
//! thread by tid, an fd by number, a VMA by start address, a signal action by signal) and
//! described by named fields (`SIGUSR1`, `O_RDWR`, `rw-p`), so that a change reads as
//! `process 4242, thread 4243: rip 0x401000 -> 0x401010`. Memory is compared page by page for
//! every VMA present in both images: a page differs when its state (stored, zero, unrecorded,
//! unmapped) or its stored bytes differ; the result is counted per VMA and kind and given as
//! address ranges. Exit 0 when nothing differs, 1 when something does, 2 on error.

use crate::cli::DiffArgs;
use crate::cmd::mem::{pieces, Piece};
use crate::source::Source;
use crate::view::{names, Style};
use crate::{EXIT_NO, EXIT_OK};
use crak_format::image::{Image, Process};
use crak_format::record::vma::Vma;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

/// One metadata difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The process, when the entity belongs to one.
    pub pid: Option<u32>,
    /// The entity: `header`, `process`, `thread 4243`, `fd 3`, `vma 7f00-7f10`, ...
    pub what: String,
    /// The field; `None` when the whole entity is only in A or only in B.
    pub field: Option<String>,
    /// The value in A (`None`: absent from A).
    pub a: Option<String>,
    /// The value in B (`None`: absent from B).
    pub b: Option<String>,
}

/// Differing pages of one VMA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageDiff {
    /// Process.
    pub pid: u32,
    /// Index of the VMA in B.
    pub vma: usize,
    /// VMA start.
    pub start: u64,
    /// VMA end.
    pub end: u64,
    /// Permissions in B.
    pub perms: String,
    /// Path or name in B.
    pub path: String,
    /// Pages that differ.
    pub pages: u64,
    /// Differing pages by kind: `bytes` (stored in both, different data) or `A->B` states
    /// (`stored->zero`, `unrecorded->stored`, ...).
    pub kinds: BTreeMap<String, u64>,
    /// Differing address ranges, `[start, end)`, merged when adjacent.
    pub ranges: Vec<[u64; 2]>,
}

/// Everything that differs.
#[derive(Debug, Default, Serialize)]
pub struct Diff {
    /// Whether nothing differs.
    pub identical: bool,
    /// Metadata differences in image order.
    pub changes: Vec<Change>,
    /// Page differences per VMA.
    pub pages: Vec<PageDiff>,
}

/// An entity as ordered `(field, value)` pairs, and a one-line summary for when it is only on
/// one side.
struct Described {
    summary: String,
    fields: Vec<(String, String)>,
}

fn hex(v: u64) -> String {
    format!("0x{v:x}")
}

/// FNV-1a, to show that two blobs differ without printing them.
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{} bytes, fnv1a {h:016x}", bytes.len())
}

/// A serde enum's snake_case name.
fn enum_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn f(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

fn header(img: &Image<'_>) -> Described {
    let h = &img.header;
    let mut fields = vec![
        f(
            "version",
            format!("{}.{}", img.version.major, img.version.minor),
        ),
        f("file flags", hex(u64::from(img.flags))),
        f("arch", h.arch.to_string()),
        f("page_size", h.page_size.to_string()),
        f("capture_time", names::rfc3339(h.capture_time_ns)),
        f("xsave_features", hex(h.xsave_features)),
        f("xsave_size", h.xsave_size.to_string()),
        f("kernel_release", names::text(&h.kernel_release)),
        f("hostname", names::text(&h.hostname)),
        f("tool_version", names::text(&h.tool_version)),
    ];
    for m in &h.special_mappings {
        fields.push((
            format!("special mapping {}", enum_name(&m.kind)),
            format!("{:x}-{:x}", m.start, m.end),
        ));
    }
    Described {
        summary: "header".to_string(),
        fields,
    }
}

fn process(p: &Process<'_>) -> Described {
    let r = &p.process;
    let mut fields = vec![
        f("ppid", r.ppid.to_string()),
        f("pgid", r.pgid.to_string()),
        f("sid", r.sid.to_string()),
        f("personality", hex(u64::from(r.personality))),
        f("umask", format!("{:04o}", r.umask)),
        f("flags", hex(u64::from(r.flags))),
        f("comm", names::text(&r.comm)),
        f("exe", names::text(&r.exe)),
        f("cwd", names::text(&r.cwd)),
        f("root", names::text(&r.root)),
        f("cmdline", names::cmdline(r.cmdline.as_bytes())),
        f(
            "tids",
            r.tids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    for var in names::nul_split(r.environ.as_bytes()) {
        let (k, v) = var.split_once('=').unwrap_or((&var, ""));
        fields.push((format!("environ {k}"), v.to_string()));
    }
    fields.push(f(
        "creds",
        if p.creds.is_some() {
            "present"
        } else {
            "absent"
        },
    ));
    if let Some(c) = &p.creds {
        for (k, v) in [
            ("uid", c.uid),
            ("euid", c.euid),
            ("suid", c.suid),
            ("fsuid", c.fsuid),
            ("gid", c.gid),
            ("egid", c.egid),
            ("sgid", c.sgid),
            ("fsgid", c.fsgid),
            ("securebits", c.securebits),
            ("no_new_privs", c.no_new_privs),
        ] {
            fields.push((format!("creds.{k}"), v.to_string()));
        }
        for (k, v) in [
            ("cap_inheritable", c.cap_inheritable),
            ("cap_permitted", c.cap_permitted),
            ("cap_effective", c.cap_effective),
            ("cap_bounding", c.cap_bounding),
            ("cap_ambient", c.cap_ambient),
        ] {
            fields.push((format!("creds.{k}"), hex(v)));
        }
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        fields.push(f("creds.groups", groups.join(",")));
    }
    if let Some(m) = &p.mm {
        for (k, v) in [
            ("start_code", m.start_code),
            ("end_code", m.end_code),
            ("start_data", m.start_data),
            ("end_data", m.end_data),
            ("start_brk", m.start_brk),
            ("brk", m.brk),
            ("start_stack", m.start_stack),
            ("arg_start", m.arg_start),
            ("arg_end", m.arg_end),
            ("env_start", m.env_start),
            ("env_end", m.env_end),
        ] {
            fields.push(f(k, hex(v)));
        }
        for (k, v) in &m.auxv {
            fields.push((format!("auxv {}", auxv_name(*k)), hex(*v)));
        }
    }
    fields.push(f(
        "rlimits",
        if p.rlimits.is_some() {
            "present"
        } else {
            "absent"
        },
    ));
    if let Some(l) = &p.rlimits {
        for r in &l.limits {
            fields.push((
                format!("rlimits.{}", names::rlimit(r.resource)),
                format!("{}/{}", names::rlim_value(r.cur), names::rlim_value(r.max)),
            ));
        }
    }
    if let Some(t) = &p.timers {
        for it in &t.itimers {
            fields.push((
                format!("itimer {:?}", it.which).to_lowercase(),
                format!("next {} ns, period {} ns", it.value_ns, it.interval_ns),
            ));
        }
        for pt in &t.posix {
            fields.push((
                format!("timer {}", pt.id),
                format!(
                    "clock {}, {:?} {} to {} (value {:#x}), next {} ns, period {} ns",
                    pt.clockid as i32,
                    pt.notify,
                    names::signal(pt.signo),
                    pt.tid,
                    pt.sigval,
                    pt.value_ns,
                    pt.interval_ns
                ),
            ));
        }
    }
    if let Some(l) = &p.locks {
        for k in &l.locks {
            fields.push((
                format!("lock {:?} fd {} at {}", k.kind, k.fd, k.start).to_lowercase(),
                format!("{:?}, {} bytes", k.lock_type, k.len).to_lowercase(),
            ));
        }
    }
    Described {
        summary: format!("{} ({})", names::text(&r.comm), r.pid),
        fields,
    }
}

/// `AT_*` names for the auxv keys a reader meets.
fn auxv_name(k: u64) -> String {
    let name = match k {
        3 => "AT_PHDR",
        4 => "AT_PHENT",
        5 => "AT_PHNUM",
        6 => "AT_PAGESZ",
        7 => "AT_BASE",
        8 => "AT_FLAGS",
        9 => "AT_ENTRY",
        11 => "AT_UID",
        12 => "AT_EUID",
        13 => "AT_GID",
        14 => "AT_EGID",
        15 => "AT_PLATFORM",
        16 => "AT_HWCAP",
        17 => "AT_CLKTCK",
        23 => "AT_SECURE",
        24 => "AT_BASE_PLATFORM",
        25 => "AT_RANDOM",
        26 => "AT_HWCAP2",
        31 => "AT_EXECFN",
        33 => "AT_SYSINFO_EHDR",
        51 => "AT_MINSIGSTKSZ",
        _ => return format!("{k}"),
    };
    name.to_string()
}

fn thread(t: &crak_format::record::thread::Thread) -> Described {
    let mut fields: Vec<(String, String)> = crak_format::record::thread::Gpr::NAMES
        .iter()
        .zip(t.gpr.to_array())
        .map(|(n, v)| f(n, hex(v)))
        .collect();
    fields.push(f("blocked", names::sigmask(t.blocked)));
    fields.push(f("pending", names::sigmask(t.pending)));
    fields.push(f(
        "sigaltstack",
        format!(
            "{} +{} flags {}",
            hex(t.sas_sp),
            hex(t.sas_size),
            t.sas_flags
        ),
    ));
    fields.push(f(
        "rseq",
        format!(
            "{} len {} sig {}",
            hex(t.rseq_addr),
            t.rseq_len,
            hex(u64::from(t.rseq_sig))
        ),
    ));
    fields.push(f("clear_child_tid", hex(t.clear_child_tid)));
    Described {
        summary: format!("rip {} rsp {}", hex(t.gpr.rip), hex(t.gpr.rsp)),
        fields,
    }
}

fn xsave(x: &crak_format::record::xsave::Xsave<'_>) -> Described {
    Described {
        summary: format!("{} bytes", x.area.len()),
        fields: vec![
            f("xstate_bv", hex(x.xstate_bv)),
            f("area", digest(x.area.as_bytes())),
        ],
    }
}

fn sigqueue(q: &crak_format::record::sigqueue::SigQueue<'_>) -> Described {
    let signals: Vec<String> = q
        .siginfos
        .iter()
        .map(|s| {
            let signo = s
                .as_bytes()
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes);
            names::signal(signo)
        })
        .collect();
    let all: Vec<u8> = q
        .siginfos
        .iter()
        .flat_map(|s| s.as_bytes().to_vec())
        .collect();
    let list = if signals.is_empty() {
        "-".to_string()
    } else {
        signals.join(",")
    };
    Described {
        summary: list.clone(),
        fields: vec![f("signals", list), f("siginfos", digest(&all))],
    }
}

fn sigaction(a: &crak_format::record::sigactions::SigAction) -> Described {
    let text = format!(
        "{} flags {} mask {}",
        names::handler(a.handler),
        names::sa_flags(a.flags),
        names::sigmask(a.mask)
    );
    Described {
        summary: text.clone(),
        fields: vec![f("action", text), f("restorer", hex(a.restorer))],
    }
}

fn fd(d: &crak_format::record::fd::Fd<'_>) -> Described {
    let mut fields = vec![
        f("kind", enum_name(&d.kind)),
        f(
            "fd_flags",
            if d.fd_flags & crak_format::record::fd::FD_CLOEXEC != 0 {
                "FD_CLOEXEC".to_string()
            } else {
                "-".to_string()
            },
        ),
        f("open_flags", names::open_flags(d.open_flags)),
        f("pos", d.pos.to_string()),
        f("path", names::text(&d.path)),
        f("dev:ino", format!("{}:{}", hex(d.dev), d.ino)),
        f("rdev", hex(d.rdev)),
        f("size", d.size.to_string()),
        f("mtime", names::rfc3339(d.mtime_ns)),
        f("mode", format!("{:o}", d.mode)),
        f("deleted", d.deleted.to_string()),
    ];
    if !d.contents.is_empty() {
        fields.push(f("contents", digest(d.contents.as_bytes())));
    }
    Described {
        summary: format!("{} {}", enum_name(&d.kind), names::text(&d.path)),
        fields,
    }
}

fn vma(v: &Vma) -> Described {
    Described {
        summary: format!(
            "{} {} {}",
            v.perms(),
            enum_name(&v.kind),
            names::text(&v.path)
        ),
        fields: vec![
            f("end", format!("{:x}", v.end)),
            f("perms", v.perms()),
            f("kind", enum_name(&v.kind)),
            f("extra", names::vma_extra(v.flags, v.madvise)),
            f("pgoff", hex(v.pgoff)),
            f("path", names::text(&v.path)),
            f("dev:ino", format!("{}:{}", hex(v.dev), v.ino)),
            f("size", v.size.to_string()),
            f("mtime", names::rfc3339(v.mtime_ns)),
        ],
    }
}

/// Compares the entities of two keyed lists (both in the order they first appear).
fn compare<K: Ord + Clone>(
    out: &mut Vec<Change>,
    pid: Option<u32>,
    a: Vec<(K, String, Described)>,
    b: Vec<(K, String, Described)>,
) {
    let mut order: Vec<(K, String)> = Vec::new();
    let mut am: BTreeMap<K, Described> = BTreeMap::new();
    let mut bm: BTreeMap<K, Described> = BTreeMap::new();
    for (k, name, d) in a {
        if !am.contains_key(&k) {
            order.push((k.clone(), name));
        }
        am.insert(k, d);
    }
    for (k, name, d) in b {
        if !am.contains_key(&k) && !bm.contains_key(&k) {
            order.push((k.clone(), name));
        }
        bm.insert(k, d);
    }
    for (k, what) in order {
        match (am.get(&k), bm.get(&k)) {
            (Some(x), Some(y)) => fields(out, pid, &what, x, y),
            (Some(x), None) => out.push(Change {
                pid,
                what,
                field: None,
                a: Some(x.summary.clone()),
                b: None,
            }),
            (None, Some(y)) => out.push(Change {
                pid,
                what,
                field: None,
                a: None,
                b: Some(y.summary.clone()),
            }),
            (None, None) => {}
        }
    }
}

/// Field-by-field differences of one entity present in both.
fn fields(out: &mut Vec<Change>, pid: Option<u32>, what: &str, a: &Described, b: &Described) {
    let bm: BTreeMap<&str, &str> = b
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let am: BTreeMap<&str, &str> = a
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // A group (`creds`, `rlimits`) present on one side only is one change, not one per field.
    let one_sided: Vec<String> = a
        .fields
        .iter()
        .filter(|(k, v)| v == "absent" && bm.get(k.as_str()) == Some(&"present"))
        .chain(
            b.fields
                .iter()
                .filter(|(k, v)| v == "absent" && am.get(k.as_str()) == Some(&"present")),
        )
        .map(|(k, _)| format!("{k}."))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in a.fields.iter().chain(&b.fields) {
        if !seen.insert(k.as_str()) || one_sided.iter().any(|g| k.starts_with(g.as_str())) {
            continue;
        }
        let (x, y) = (am.get(k.as_str()), bm.get(k.as_str()));
        if x != y {
            out.push(Change {
                pid,
                what: what.to_string(),
                field: Some(k.clone()),
                a: x.map(|s| s.to_string()),
                b: y.map(|s| s.to_string()),
            });
        }
    }
}

/// What one page holds, for comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Stored: run index and the offset of the current address in its data.
    Stored(usize, u64),
    Zero,
    Unrecorded,
    Missing,
    Unmapped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Stored(..) => "stored",
            State::Zero => "zero",
            State::Unrecorded => "unrecorded",
            State::Missing => "missing",
            State::Unmapped => "unmapped",
        }
    }
}

/// The state at `addr` given the piece covering it, and where that piece ends.
fn state_at(piece: &Piece<'_>, addr: u64) -> (State, u64) {
    match piece {
        Piece::Gap { end, .. } => (State::Unmapped, *end),
        Piece::Zero { end, .. } => (State::Zero, *end),
        Piece::NotHeld { end, .. } => (State::Missing, *end),
        Piece::Unrecorded { end, .. } => (State::Unrecorded, *end),
        Piece::Stored {
            start,
            end,
            run,
            off,
        } => (
            State::Stored(*run, off.saturating_add(addr.saturating_sub(*start))),
            *end,
        ),
    }
}

/// Bytes of stored data compared at once.
const COMPARE_CHUNK: u64 = 1 << 20;

/// What [`compare_pages`] found: pages that differ, by kind, and the ranges they form.
type PageChanges = (u64, BTreeMap<String, u64>, Vec<[u64; 2]>);

/// Compares `[start, end)` of two processes page by page, reading stored bytes from their
/// sources in bounded chunks.
fn compare_pages(
    (sa_src, pa): (&Source, &Process<'_>),
    (sb_src, pb): (&Source, &Process<'_>),
    page_size: u64,
    start: u64,
    end: u64,
) -> anyhow::Result<PageChanges> {
    let xa = pieces(sa_src, pa, start, end);
    let xb = pieces(sb_src, pb, start, end);
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut count = 0u64;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    let mut note = |kind: String, from: u64, to: u64, n: u64| {
        count += n;
        *kinds.entry(kind).or_default() += n;
        match ranges.last_mut() {
            Some(r) if r[1] == from => r[1] = to,
            _ => ranges.push([from, to]),
        }
    };
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    let mut cur = start;
    while cur < end {
        let (Some(qa), Some(qb)) = (xa.get(ia), xb.get(ib)) else {
            break;
        };
        let (sa, ea) = state_at(qa, cur);
        let (sb, eb) = state_at(qb, cur);
        let stop = ea.min(eb).min(end);
        if stop <= cur {
            break;
        }
        // Within [cur, stop) both states are uniform; stored bytes are compared per page.
        // Anything else is one answer for the whole span: walking it page by page would take
        // forever on a VMA as large as the address space.
        let (State::Stored(ra, oa), State::Stored(rb, ob)) = (sa, sb) else {
            if sa.name() != sb.name() {
                let n = (stop - cur).div_ceil(page_size.max(1));
                note(format!("{}->{}", sa.name(), sb.name()), cur, stop, n);
            }
            cur = stop;
            if ea <= cur {
                ia += 1;
            }
            if eb <= cur {
                ib += 1;
            }
            continue;
        };
        let mut at = cur;
        while at < stop {
            // A chunk of whole pages (the last one may end at `stop`).
            let chunk_end = at.saturating_add(COMPARE_CHUNK.max(page_size)).min(stop);
            let chunk_end = if chunk_end < stop {
                chunk_end - chunk_end % page_size.max(1)
            } else {
                chunk_end
            };
            let chunk_end = if chunk_end <= at { stop } else { chunk_end };
            let len = usize::try_from(chunk_end - at)?;
            buf_a.resize(len, 0);
            buf_b.resize(len, 0);
            let da = at - cur;
            let got_a = sa_src.read_exact(pa, ra, oa.saturating_add(da), &mut buf_a)?;
            let got_b = sb_src.read_exact(pb, rb, ob.saturating_add(da), &mut buf_b)?;
            let mut page = at;
            while page < chunk_end {
                let next = page
                    .checked_add(page_size)
                    .map_or(chunk_end, |n| (n - n % page_size).min(chunk_end));
                let from = usize::try_from(page - at).unwrap_or(usize::MAX);
                let to = usize::try_from(next - at).unwrap_or(usize::MAX);
                let same = got_a && got_b && buf_a.get(from..to) == buf_b.get(from..to);
                if !same {
                    note("bytes".to_string(), page, next, 1);
                }
                page = next;
            }
            at = chunk_end;
        }
        cur = stop;
        if ea <= cur {
            ia += 1;
        }
        if eb <= cur {
            ib += 1;
        }
    }
    Ok((count, kinds, ranges))
}

/// Compares two images; page data is read from their sources as it is compared.
pub fn diff(sa: &Source, sb: &Source) -> anyhow::Result<Diff> {
    let (a, b) = (sa.image(), sb.image());
    let mut changes = Vec::new();
    fields(&mut changes, None, "header", &header(a), &header(b));
    let procs = |img: &Image<'_>| -> Vec<(u32, String, Described)> {
        img.processes
            .iter()
            .map(|p| (p.pid(), "process".to_string(), process(p)))
            .collect()
    };
    // Processes only on one side first; common ones are compared in detail below.
    let a_pids: Vec<u32> = a.processes.iter().map(Process::pid).collect();
    let b_pids: Vec<u32> = b.processes.iter().map(Process::pid).collect();
    let mut pages = Vec::new();
    let page_size = u64::from(b.header.page_size.max(1));
    for (pid, _, d) in procs(a) {
        if !b_pids.contains(&pid) {
            changes.push(Change {
                pid: Some(pid),
                what: "process".to_string(),
                field: None,
                a: Some(d.summary),
                b: None,
            });
        }
    }
    for (pid, _, d) in procs(b) {
        if !a_pids.contains(&pid) {
            changes.push(Change {
                pid: Some(pid),
                what: "process".to_string(),
                field: None,
                a: None,
                b: Some(d.summary),
            });
        }
    }
    for pb in &b.processes {
        let Some(pa) = a.process(pb.pid()) else {
            continue;
        };
        let pid = Some(pb.pid());
        fields(&mut changes, pid, "process", &process(pa), &process(pb));
        compare(
            &mut changes,
            pid,
            keyed(
                pa.threads
                    .iter()
                    .map(|t| (t.tid, format!("thread {}", t.tid), thread(t))),
            ),
            keyed(
                pb.threads
                    .iter()
                    .map(|t| (t.tid, format!("thread {}", t.tid), thread(t))),
            ),
        );
        compare(
            &mut changes,
            pid,
            keyed(
                pa.xsaves
                    .iter()
                    .map(|x| (x.tid, format!("xsave {}", x.tid), xsave(x))),
            ),
            keyed(
                pb.xsaves
                    .iter()
                    .map(|x| (x.tid, format!("xsave {}", x.tid), xsave(x))),
            ),
        );
        let sq = |p: &Process<'_>| {
            keyed(
                p.sigqueues
                    .iter()
                    .map(|q| (q.tid, queue_name(q.tid), sigqueue(q))),
            )
        };
        compare(&mut changes, pid, sq(pa), sq(pb));
        let acts = |p: &Process<'_>| {
            keyed(p.sigactions.iter().flat_map(|s| &s.actions).map(|x| {
                (
                    x.signo,
                    format!("sigaction {}", names::signal(x.signo)),
                    sigaction(x),
                )
            }))
        };
        compare(&mut changes, pid, acts(pa), acts(pb));
        compare(
            &mut changes,
            pid,
            keyed(pa.fds.iter().map(|d| (d.fd, format!("fd {}", d.fd), fd(d)))),
            keyed(pb.fds.iter().map(|d| (d.fd, format!("fd {}", d.fd), fd(d)))),
        );
        let vmas = |p: &Process<'_>| {
            keyed(
                p.vmas
                    .iter()
                    .map(|v| (v.start, format!("vma {:x}", v.start), vma(v))),
            )
        };
        compare(&mut changes, pid, vmas(pa), vmas(pb));
        // Pages: every VMA of B whose start is also a VMA start in A, over B's extent.
        for (i, vb) in pb.vmas.iter().enumerate() {
            if !pa.vmas.iter().any(|va| va.start == vb.start) || vb.end <= vb.start {
                continue;
            }
            let (count, kinds, ranges) =
                compare_pages((sa, pa), (sb, pb), page_size, vb.start, vb.end)?;
            if count > 0 {
                pages.push(PageDiff {
                    pid: pb.pid(),
                    vma: i,
                    start: vb.start,
                    end: vb.end,
                    perms: vb.perms(),
                    path: names::text(&vb.path),
                    pages: count,
                    kinds,
                    ranges,
                });
            }
        }
    }
    let pipes = |img: &Image<'_>| {
        keyed(img.pipes.iter().map(|p| {
            (
                p.pipe_id,
                format!("pipe {}", p.pipe_id),
                Described {
                    summary: format!("{} bytes", p.data.len()),
                    fields: vec![
                        f("capacity", p.capacity.to_string()),
                        f("data", digest(p.data.as_bytes())),
                    ],
                },
            )
        }))
    };
    compare(&mut changes, None, pipes(a), pipes(b));
    let perm_fields = |p: &crak_format::record::ipc::IpcPerm| {
        vec![
            f("key", format!("{:#010x}", p.key)),
            f("uid", p.uid.to_string()),
            f("gid", p.gid.to_string()),
            f("mode", format!("{:o}", p.mode)),
        ]
    };
    let shm = |img: &Image<'_>| {
        keyed(img.shm_segments.iter().map(|s| {
            let mut fields = perm_fields(&s.perm);
            fields.push(f("size", s.size.to_string()));
            fields.push(f("data", digest(s.data.as_bytes())));
            (
                s.perm.id,
                format!("shm {}", s.perm.id),
                Described {
                    summary: format!("{} bytes", s.size),
                    fields,
                },
            )
        }))
    };
    compare(&mut changes, None, shm(a), shm(b));
    let sem = |img: &Image<'_>| {
        keyed(img.sem_sets.iter().map(|s| {
            let values: Vec<String> = s.sems.iter().map(|m| m.value.to_string()).collect();
            let mut fields = perm_fields(&s.perm);
            fields.push(f("values", values.join(" ")));
            (
                s.perm.id,
                format!("sem {}", s.perm.id),
                Described {
                    summary: format!("{} semaphores", s.sems.len()),
                    fields,
                },
            )
        }))
    };
    compare(&mut changes, None, sem(a), sem(b));
    let msg = |img: &Image<'_>| {
        keyed(img.msg_queues.iter().map(|q| {
            let mut all = Vec::new();
            for m in &q.messages {
                all.extend_from_slice(&m.mtype.to_le_bytes());
                all.extend_from_slice(&(m.text.len() as u64).to_le_bytes());
                all.extend_from_slice(m.text.as_bytes());
            }
            let mut fields = perm_fields(&q.perm);
            fields.push(f("qbytes", q.qbytes.to_string()));
            fields.push(f("messages", digest(&all)));
            (
                q.perm.id,
                format!("msg {}", q.perm.id),
                Described {
                    summary: format!("{} messages", q.messages.len()),
                    fields,
                },
            )
        }))
    };
    compare(&mut changes, None, msg(a), msg(b));
    // Files and credentials in flight (SCM, format 1.3), by socket and message.
    let scm = |img: &Image<'_>| {
        keyed(img.scm.iter().map(|x| {
            let files: Vec<String> = x
                .files
                .iter()
                .map(|g| format!("{:?} {} @{}", g.kind, names::text(&g.path), g.pos))
                .collect();
            let creds = if x.has_credentials() {
                format!("pid {} uid {} gid {}", x.pid, x.uid, x.gid)
            } else {
                "-".into()
            };
            (
                (x.socket, x.message),
                format!("in flight on socket {} message {}", x.socket, x.message),
                Described {
                    summary: format!("{} files, credentials {creds}", x.files.len()),
                    fields: vec![f("credentials", creds), f("files", files.join("; "))],
                },
            )
        }))
    };
    compare(&mut changes, None, scm(a), scm(b));
    let notes = |img: &Image<'_>| {
        keyed(img.notes.iter().map(|n| {
            let key = names::text(&n.key);
            (
                key.clone(),
                format!("note {key}"),
                Described {
                    summary: names::text(&n.value),
                    fields: vec![f("value", names::text(&n.value))],
                },
            )
        }))
    };
    compare(&mut changes, None, notes(a), notes(b));
    Ok(Diff {
        identical: changes.is_empty() && pages.is_empty(),
        changes,
        pages,
    })
}

fn queue_name(tid: u32) -> String {
    if tid == 0 {
        "sigqueue (process)".to_string()
    } else {
        format!("sigqueue {tid}")
    }
}

fn keyed<K>(it: impl Iterator<Item = (K, String, Described)>) -> Vec<(K, String, Described)> {
    it.collect()
}

/// Writes the diff as text.
pub fn render(out: &mut dyn Write, d: &Diff, style: Style) -> std::io::Result<()> {
    for c in &d.changes {
        let scope = match c.pid {
            Some(pid) if c.what == "process" => format!("process {pid}"),
            Some(pid) => format!("process {pid}, {}", c.what),
            None => c.what.clone(),
        };
        match (&c.field, &c.a, &c.b) {
            (None, Some(a), None) => {
                writeln!(out, "{} {scope}: {a}", style.red("-"))?;
            }
            (None, None, Some(b)) => {
                writeln!(out, "{} {scope}: {b}", style.green("+"))?;
            }
            (field, a, b) => {
                let show = |v: &Option<String>| match v {
                    Some(s) => names::clean(s),
                    None => "(absent)".to_string(),
                };
                writeln!(
                    out,
                    "~ {scope}: {}: {} -> {}",
                    field.as_deref().unwrap_or(""),
                    style.red(&show(a)),
                    style.green(&show(b))
                )?;
            }
        }
    }
    for p in &d.pages {
        let kinds: Vec<String> = p.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(
            out,
            "~ process {}, pages of vma #{} {:x}-{:x} {} {}: {} {} ({})",
            p.pid,
            p.vma,
            p.start,
            p.end,
            p.perms,
            if p.path.is_empty() { "[anon]" } else { &p.path },
            p.pages,
            if p.pages == 1 {
                "page differs"
            } else {
                "pages differ"
            },
            kinds.join(", ")
        )?;
        for r in &p.ranges {
            let [s, e] = *r;
            writeln!(out, "    {}", style.dim(&format!("{s:x}-{e:x}")))?;
        }
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: &DiffArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    if crate::is_stdin(&args.a) && crate::is_stdin(&args.b) {
        anyhow::bail!("only one of A and B can be stdin");
    }
    let a = Source::open(&args.a)?;
    let b = Source::open(&args.b)?;
    let d = diff(&a, &b)?;
    // Every PAGES run compared has had its CRC checked before the answer is given.
    a.verify()?;
    b.verify()?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &d)?;
        writeln!(out)?;
    } else {
        render(out, &d, style)?;
    }
    Ok(if d.identical { EXIT_OK } else { EXIT_NO })
}
