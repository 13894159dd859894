//! Parsers for the `/proc/PID/*` files the engine reads (proc(5)): `stat`, `status`, `maps` and
//! `smaps`, `fdinfo`, `auxv`, and `pagemap` entries. The parsing functions take text and are
//! unit-tested; the `read_*` functions do the I/O.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A `/proc` file could not be read or did not parse.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// Reading failed (e.g. the process is gone).
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The contents did not have the expected shape.
    #[error("parsing {path}: {what}")]
    Parse {
        /// The file.
        path: String,
        /// What was wrong.
        what: String,
    },
}

impl ProcError {
    fn parse(path: impl fmt::Display, what: impl Into<String>) -> Self {
        ProcError::Parse {
            path: path.to_string(),
            what: what.into(),
        }
    }

    /// Whether the error means the file (or the process) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProcError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound
            || source.raw_os_error() == Some(libc::ESRCH))
    }
}

/// Result of a `/proc` read.
pub type Result<T> = std::result::Result<T, ProcError>;

/// `/proc/PID/<name>`.
pub fn path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads a whole `/proc` file as bytes.
pub fn read(pid: i32, name: &str) -> Result<Vec<u8>> {
    let p = path(pid, name);
    std::fs::read(&p).map_err(|source| ProcError::Io { path: p, source })
}

/// Reads a whole `/proc` file as text (invalid UTF-8 replaced).
pub fn read_string(pid: i32, name: &str) -> Result<String> {
    read(pid, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads the target of a `/proc` symlink (`exe`, `cwd`, `root`, `fd/N`) as raw bytes.
pub fn readlink(pid: i32, name: &str) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    let p = path(pid, name);
    std::fs::read_link(&p)
        .map(|t| t.into_os_string().into_vec())
        .map_err(|source| ProcError::Io { path: p, source })
}

/// The fields of `/proc/PID/stat` the engine uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// (2) comm, without the parentheses.
    pub comm: Vec<u8>,
    /// (3) state letter.
    pub state: char,
    /// (4) ppid.
    pub ppid: i32,
    /// (5) process group.
    pub pgrp: i32,
    /// (6) session.
    pub session: i32,
    /// (9) `PF_*` flags.
    pub flags: u64,
    /// (20) number of threads.
    pub num_threads: i64,
    /// (22) start time in clock ticks after boot: with the pid, identifies a process.
    /// Exit status as `waitpid` reports it (field 52; a zombie's, 0 for a live process).
    pub exit_code: u32,
    pub starttime: u64,
    /// (26) start_code.
    pub start_code: u64,
    /// (27) end_code.
    pub end_code: u64,
    /// (28) start_stack.
    pub start_stack: u64,
    /// (45) start_data.
    pub start_data: u64,
    /// (46) end_data.
    pub end_data: u64,
    /// (47) start_brk.
    pub start_brk: u64,
    /// (48) arg_start.
    pub arg_start: u64,
    /// (49) arg_end.
    pub arg_end: u64,
    /// (50) env_start.
    pub env_start: u64,
    /// (51) env_end.
    pub env_end: u64,
}

/// `PF_KTHREAD`: the task is a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses `/proc/PID/stat` bytes.
pub fn parse_stat(text: &[u8]) -> std::result::Result<Stat, String> {
    let open = text.iter().position(|&c| c == b'(').ok_or("no '('")?;
    let close = text.iter().rposition(|&c| c == b')').ok_or("no ')'")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let comm = text.get(open + 1..close).unwrap_or(&[]).to_vec();
    let rest = String::from_utf8_lossy(text.get(close + 1..).unwrap_or(&[])).into_owned();
    // fields[0] is field (3).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> std::result::Result<&str, String> {
        f.get(n - 3)
            .copied()
            .ok_or_else(|| format!("missing field {n}"))
    };
    let num = |n: usize| -> std::result::Result<u64, String> {
        let s = field(n)?;
        s.parse::<u64>()
            .or_else(|_| s.parse::<i64>().map(|v| v as u64))
            .map_err(|_| format!("field {n} is not a number: {s:?}"))
    };
    let opt = |n: usize| -> u64 { num(n).unwrap_or(0) };
    Ok(Stat {
        comm,
        state: field(3)?.chars().next().unwrap_or('?'),
        ppid: num(4)? as i32,
        pgrp: num(5)? as i32,
        session: num(6)? as i32,
        flags: num(9)?,
        num_threads: num(20)? as i64,
        starttime: num(22)?,
        exit_code: opt(52) as u32,
        start_code: opt(26),
        end_code: opt(27),
        start_stack: opt(28),
        start_data: opt(45),
        end_data: opt(46),
        start_brk: opt(47),
        arg_start: opt(48),
        arg_end: opt(49),
        env_start: opt(50),
        env_end: opt(51),
    })
}

/// Reads and parses `/proc/PID/stat`.
pub fn stat(pid: i32) -> Result<Stat> {
    let b = read(pid, "stat")?;
    parse_stat(&b).map_err(|w| ProcError::parse(path(pid, "stat").display(), w))
}

/// `/proc/PID/status` as `key → value` (value trimmed).
#[derive(Clone, Debug, Default)]
pub struct Status(pub HashMap<String, String>);

impl Status {
    /// Parses status text.
    pub fn parse(text: &str) -> Status {
        let mut m = HashMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                m.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Status(m)
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The whitespace-separated decimal numbers of `key` (`Uid`, `Gid`, `Groups`).
    pub fn decimals(&self, key: &str) -> std::result::Result<Vec<u32>, String> {
        let v = self.get(key).ok_or_else(|| format!("no {key}"))?;
        v.split_whitespace()
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| format!("{key}: bad number {s:?}"))
            })
            .collect()
    }

    /// A hexadecimal value of `key` (`CapEff`, `SigPnd`, ...).
    pub fn hex(&self, key: &str) -> std::result::Result<u64, String> {
        let v = self.get(key).ok_or_else(|| format!("no {key}"))?;
        u64::from_str_radix(v, 16).map_err(|_| format!("{key}: bad hex {v:?}"))
    }

    /// An octal value of `key` (`Umask`).
    pub fn octal(&self, key: &str) -> std::result::Result<u32, String> {
        let v = self.get(key).ok_or_else(|| format!("no {key}"))?;
        u32::from_str_radix(v, 8).map_err(|_| format!("{key}: bad octal {v:?}"))
    }

    /// A decimal value of `key` (`TracerPid`, `NoNewPrivs`).
    pub fn decimal(&self, key: &str) -> std::result::Result<u64, String> {
        let v = self.get(key).ok_or_else(|| format!("no {key}"))?;
        v.parse::<u64>()
            .map_err(|_| format!("{key}: bad number {v:?}"))
    }
}

/// Reads `/proc/PID/status`.
pub fn status(pid: i32) -> Result<Status> {
    read_string(pid, "status").map(|s| Status::parse(&s))
}

/// The calling process's peak resident set size in KiB (`VmHWM`), for the tools' summaries.
pub fn own_peak_rss_kb() -> Option<u64> {
    let st = status(i32::try_from(std::process::id()).ok()?).ok()?;
    st.get("VmHWM")?.split_whitespace().next()?.parse().ok()
}

/// Reads `/proc/PID/task/TID/status`, the status of one thread.
pub fn task_status(pid: i32, tid: i32) -> Result<Status> {
    read_string(pid, &format!("task/{tid}/status")).map(|s| Status::parse(&s))
}

/// The name of thread `tid` (`/proc/PID/task/TID/comm`, without its newline).
pub fn thread_comm(pid: i32, tid: i32) -> Result<Vec<u8>> {
    let mut name = read(pid, &format!("task/{tid}/comm"))?;
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    Ok(name)
}

/// One mapping from `/proc/PID/maps` or `/proc/PID/smaps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapEntry {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Shared (`s`) rather than private (`p`).
    pub shared: bool,
    /// File offset.
    pub offset: u64,
    /// Device major.
    pub major: u32,
    /// Device minor.
    pub minor: u32,
    /// Inode.
    pub inode: u64,
    /// Path or pseudo-name (`[heap]`, `[vdso]`, ...), as raw bytes; empty for anonymous memory.
    pub path: Vec<u8>,
    /// `VmFlags` mnemonics from smaps (empty when read from maps).
    pub vm_flags: Vec<String>,
}

impl MapEntry {
    /// Whether smaps listed mnemonic `flag` (`gd`, `dc`, `lo`...).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// Parses one `maps` line: `start-end perms offset maj:min inode [path]`.
pub fn parse_map_line(line: &[u8]) -> std::result::Result<MapEntry, String> {
    // Split off the five leading fields; the path is the rest, after leading spaces.
    let mut rest = line;
    let mut fields: Vec<&[u8]> = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
        rest = rest.get(start..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        fields.push(rest.get(..end).unwrap_or(&[]));
        rest = rest.get(end..).unwrap_or(&[]);
    }
    let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
    let path = rest.get(start..).unwrap_or(&[]).to_vec();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let range = text(fields.first().copied().unwrap_or(&[]));
    let (s, e) = range
        .split_once('-')
        .ok_or_else(|| format!("bad range {range:?}"))?;
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| format!("bad hex {s:?}"));
    let perms = text(fields.get(1).copied().unwrap_or(&[]));
    let pb = perms.as_bytes();
    if pb.len() != 4 {
        return Err(format!("bad perms {perms:?}"));
    }
    let dev = text(fields.get(3).copied().unwrap_or(&[]));
    let (maj, min) = dev
        .split_once(':')
        .ok_or_else(|| format!("bad dev {dev:?}"))?;
    let inode = text(fields.get(4).copied().unwrap_or(&[]));
    Ok(MapEntry {
        start: hex(s)?,
        end: hex(e)?,
        read: pb[0] == b'r',
        write: pb[1] == b'w',
        exec: pb[2] == b'x',
        shared: pb[3] == b's',
        offset: hex(&text(fields.get(2).copied().unwrap_or(&[])))?,
        major: u32::from_str_radix(maj, 16).map_err(|_| format!("bad dev {dev:?}"))?,
        minor: u32::from_str_radix(min, 16).map_err(|_| format!("bad dev {dev:?}"))?,
        inode: inode.parse().map_err(|_| format!("bad inode {inode:?}"))?,
        path,
        vm_flags: Vec::new(),
    })
}

fn is_map_header(line: &[u8]) -> bool {
    // "hex-hex " at the start; smaps attribute lines start with "Name:".
    let dash = line.iter().position(|&c| c == b'-');
    match dash {
        Some(d) if d > 0 => line
            .get(..d)
            .is_some_and(|h| h.iter().all(|c| c.is_ascii_hexdigit())),
        _ => false,
    }
}

/// Parses `maps` or `smaps` text; `VmFlags` lines of smaps are attached to their mapping.
pub fn parse_maps(text: &[u8]) -> std::result::Result<Vec<MapEntry>, String> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        if is_map_header(line) {
            out.push(parse_map_line(line)?);
        } else if let Some(rest) = line.strip_prefix(b"VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.vm_flags = String::from_utf8_lossy(rest)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            }
        }
    }
    Ok(out)
}

/// Reads and parses `/proc/PID/smaps` (mappings with their `VmFlags`).
pub fn smaps(pid: i32) -> Result<Vec<MapEntry>> {
    let b = read(pid, "smaps")?;
    parse_maps(&b).map_err(|w| ProcError::parse(path(pid, "smaps").display(), w))
}

/// Reads and parses `/proc/PID/maps`.
pub fn maps(pid: i32) -> Result<Vec<MapEntry>> {
    let b = read(pid, "maps")?;
    parse_maps(&b).map_err(|w| ProcError::parse(path(pid, "maps").display(), w))
}

/// The fields of `/proc/PID/fdinfo/N` the engine uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// File offset.
    pub pos: u64,
    /// `O_*` flags (octal in the file).
    pub flags: u32,
    /// Mount id.
    pub mnt_id: u64,
}

/// Parses fdinfo text.
pub fn parse_fdinfo(text: &str) -> std::result::Result<FdInfo, String> {
    let st = Status::parse(text);
    Ok(FdInfo {
        pos: st.decimal("pos")?,
        flags: st.octal("flags")?,
        mnt_id: st.decimal("mnt_id").unwrap_or(0),
    })
}

/// Reads `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo> {
    let name = format!("fdinfo/{fd}");
    let t = read_string(pid, &name)?;
    parse_fdinfo(&t).map_err(|w| ProcError::parse(path(pid, &name).display(), w))
}

/// The open fd numbers of `pid`, sorted.
pub fn fds(pid: i32) -> Result<Vec<i32>> {
    let p = path(pid, "fd");
    let rd = std::fs::read_dir(&p).map_err(|source| ProcError::Io {
        path: p.clone(),
        source,
    })?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|source| ProcError::Io {
            path: p.clone(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// The thread ids of `pid` (`/proc/PID/task`), sorted.
pub fn tids(pid: i32) -> Result<Vec<i32>> {
    let p = path(pid, "task");
    let rd = std::fs::read_dir(&p).map_err(|source| ProcError::Io {
        path: p.clone(),
        source,
    })?;
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Parses `/proc/PID/auxv`: (key, value) pairs up to, not including, `AT_NULL`.
pub fn parse_auxv(b: &[u8]) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for pair in b.chunks_exact(16) {
        let mut k = [0u8; 8];
        let mut val = [0u8; 8];
        k.copy_from_slice(pair.get(..8).unwrap_or(&[0; 8]));
        val.copy_from_slice(pair.get(8..16).unwrap_or(&[0; 8]));
        let key = u64::from_le_bytes(k);
        if key == 0 {
            break;
        }
        v.push((key, u64::from_le_bytes(val)));
    }
    v
}

/// One `/proc/PID/pagemap` entry (proc(5), `Documentation/admin-guide/mm/pagemap.rst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    /// Bit 63: page present in RAM.
    pub fn present(self) -> bool {
        self.0 >> 63 & 1 == 1
    }
    /// Bit 62: page swapped.
    pub fn swapped(self) -> bool {
        self.0 >> 62 & 1 == 1
    }
    /// Bit 61: page is a file page or shared anonymous.
    pub fn file_or_shared(self) -> bool {
        self.0 >> 61 & 1 == 1
    }
}

/// An open `/proc/PID/pagemap`.
pub struct Pagemap {
    file: std::fs::File,
    page_size: u64,
    pid: i32,
}

impl Pagemap {
    /// Opens `/proc/PID/pagemap`.
    pub fn open(pid: i32, page_size: u64) -> Result<Pagemap> {
        let p = path(pid, "pagemap");
        let file = std::fs::File::open(&p).map_err(|source| ProcError::Io { path: p, source })?;
        Ok(Pagemap {
            file,
            page_size,
            pid,
        })
    }

    /// Entries for the `n` pages starting at page-aligned `addr`, appended to `out`.
    pub fn read(&self, addr: u64, n: usize, out: &mut Vec<PagemapEntry>) -> Result<()> {
        let mut buf = vec![0u8; n.saturating_mul(8)];
        let off = (addr / self.page_size).saturating_mul(8);
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|source| ProcError::Io {
                path: path(self.pid, "pagemap"),
                source,
            })?;
        out.extend(buf.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            PagemapEntry(u64::from_le_bytes(b))
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        // Fields (3)..=(52); field n holds n * 1000 unless set below.
        let mut f: Vec<String> = (3..=52).map(|n| (n * 1000).to_string()).collect();
        let mut set = |n: usize, v: &str| f[n - 3] = v.to_string();
        set(3, "S");
        set(4, "1");
        set(5, "1234");
        set(6, "1234");
        set(7, "-1");
        set(9, "4194560");
        set(20, "1");
        set(28, "140000");
        let s = format!("1234 (a) b (c) {}\n", f.join(" ")).into_bytes();
        let st = parse_stat(&s).unwrap();
        assert_eq!(st.comm, b"a) b (c");
        assert_eq!(st.state, 'S');
        assert_eq!((st.ppid, st.pgrp, st.session), (1, 1234, 1234));
        assert_eq!(st.flags, 4194560);
        assert_eq!(st.num_threads, 1);
        assert_eq!(st.starttime, 22000);
        assert_eq!(
            (st.start_code, st.end_code, st.start_stack),
            (26000, 27000, 140000)
        );
        assert_eq!(
            (st.start_data, st.end_data, st.start_brk),
            (45000, 46000, 47000)
        );
        assert_eq!(
            (st.arg_start, st.arg_end, st.env_start, st.env_end),
            (48000, 49000, 50000, 51000)
        );
        assert!(parse_stat(b"garbage").is_err());
        assert!(parse_stat(b"1 (x) S").is_err());
    }

    #[test]
    fn maps_and_smaps_lines() {
        let text = b"55d0c0a00000-55d0c0a02000 r--p 00001000 fd:01 1234   /usr/bin/my prog\n\
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n\
VmFlags: rd wr mr mw me gd ac\n\
7f0000000000-7f0000001000 rw-s 00000000 00:01 99 /dev/zero (deleted)\n";
        let m = parse_maps(text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].start, 0x55d0c0a00000);
        assert_eq!(m[0].offset, 0x1000);
        assert_eq!((m[0].major, m[0].minor, m[0].inode), (0xfd, 1, 1234));
        assert_eq!(m[0].path, b"/usr/bin/my prog");
        assert!(m[0].read && !m[0].write && !m[0].shared);
        assert_eq!(m[1].path, b"[stack]");
        assert!(m[1].has_flag("gd"));
        assert!(m[2].shared);
        assert_eq!(m[2].path, b"/dev/zero (deleted)");
        assert!(parse_maps(b"12-zz rw-p 0 0:0 0\n").is_err());
        assert!(parse_maps(b"1000-2000 rw 0 0:0 0\n").is_err());
    }

    #[test]
    fn fdinfo_and_status() {
        let fi = parse_fdinfo("pos:\t42\nflags:\t02100002\nmnt_id:\t25\nino:\t7\n").unwrap();
        assert_eq!(fi.pos, 42);
        assert_eq!(fi.flags, 0o2100002);
        let st =
            Status::parse("Uid:\t0\t1\t2\t3\nCapEff:\t000001ffffffffff\nUmask:\t0022\nGroups:\t\n");
        assert_eq!(st.decimals("Uid").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(st.hex("CapEff").unwrap(), 0x1ffffffffff);
        assert_eq!(st.octal("Umask").unwrap(), 0o22);
        assert_eq!(st.decimals("Groups").unwrap(), Vec::<u32>::new());
        assert!(st.hex("Nope").is_err());
    }

    #[test]
    fn auxv_stops_at_null() {
        let mut b = Vec::new();
        for (k, v) in [(6u64, 4096u64), (33, 0x7fff0000), (0, 0), (5, 5)] {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(parse_auxv(&b), vec![(6, 4096), (33, 0x7fff0000)]);
        assert_eq!(parse_auxv(&b[..20]), vec![(6, 4096)]);
    }
}
