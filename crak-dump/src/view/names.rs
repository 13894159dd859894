//! Names for numbers: signals, `SA_*`, `O_*`, `RLIMIT_*`, sizes and times, so that human
//! output says `SIGUSR1` rather than 10.

/// `SIGUSR1`, `SIGRTMIN+3`, `SIGRTMAX`, or the number for anything else.
pub fn signal(signo: u32) -> String {
    crak_format::names::signal(signo)
}

/// The signals of a mask (bit n−1 = signal n), comma-separated, or `-` when empty.
pub fn sigmask(mask: u64) -> String {
    if mask == 0 {
        return "-".to_string();
    }
    if mask == u64::MAX {
        return "all".to_string();
    }
    (1..=64u32)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(signal)
        .collect::<Vec<_>>()
        .join(",")
}

/// A signal handler: `SIG_DFL`, `SIG_IGN` or the address.
pub fn handler(h: u64) -> String {
    match h {
        0 => "SIG_DFL".to_string(),
        1 => "SIG_IGN".to_string(),
        a => format!("0x{a:x}"),
    }
}

const SA_FLAGS: [(u64, &str); 10] = [
    (0x1, "SA_NOCLDSTOP"),
    (0x2, "SA_NOCLDWAIT"),
    (0x4, "SA_SIGINFO"),
    (0x400, "SA_UNSUPPORTED"),
    (0x800, "SA_EXPOSE_TAGBITS"),
    (0x0400_0000, "SA_RESTORER"),
    (0x0800_0000, "SA_ONSTACK"),
    (0x1000_0000, "SA_RESTART"),
    (0x4000_0000, "SA_NODEFER"),
    (0x8000_0000, "SA_RESETHAND"),
];

/// `SA_*` flags, `|`-separated, unknown bits in hex; `-` when none.
pub fn sa_flags(flags: u64) -> String {
    bits(flags, &SA_FLAGS, "-")
}

/// `O_*` bits other than the access mode, as on x86_64.
const O_FLAGS: [(u64, &str); 16] = [
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

/// `O_RDWR|O_APPEND` style open flags.
pub fn open_flags(flags: u32) -> String {
    let mode = match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = bits(u64::from(flags & !3), &O_FLAGS, "");
    if rest.is_empty() {
        mode.to_string()
    } else {
        format!("{mode}|{rest}")
    }
}

/// Names the set bits of `value` from `table` (a name whose bits are all set is used, and
/// its bits are consumed, in table order); leftovers in hex; `none` when nothing is set.
fn bits(value: u64, table: &[(u64, &str)], none: &str) -> String {
    let mut left = value;
    let mut parts: Vec<String> = Vec::new();
    for &(bit, name) in table {
        if bit != 0 && left & bit == bit {
            parts.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("0x{left:x}"));
    }
    if parts.is_empty() {
        none.to_string()
    } else {
        parts.join("|")
    }
}

/// `RLIMIT_NOFILE`, or the number for an unknown resource.
pub fn rlimit(resource: u32) -> String {
    crak_format::names::rlimit(resource)
}

/// A limit value: `unlimited` for `RLIM_INFINITY`.
pub fn rlim_value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

/// madvise bits of a VMA.
const MADV: [(u64, &str); 6] = [
    (1, "dontfork"),
    (2, "wipeonfork"),
    (4, "dontdump"),
    (8, "hugepage"),
    (16, "nohugepage"),
    (32, "locked"),
];

/// Extra VMA flags worth showing: `growsdown`, madvise bits.
pub fn vma_extra(flags: u32, madvise: u32) -> String {
    let mut parts = Vec::new();
    if flags & 0x100 != 0 {
        parts.push("growsdown".to_string());
    }
    let m = bits(u64::from(madvise), &MADV, "");
    if !m.is_empty() {
        parts.push(m.replace('|', ","));
    }
    parts.join(",")
}

/// The kernel's restart codes, for a thread stopped in a system call.
pub fn restart_code(rax: u64) -> Option<&'static str> {
    match rax as i64 {
        -512 => Some("-ERESTARTSYS"),
        -513 => Some("-ERESTARTNOINTR"),
        -514 => Some("-ERESTARTNOHAND"),
        -516 => Some("-ERESTART_RESTARTBLOCK"),
        _ => None,
    }
}

/// Bytes in B, KiB, MiB, GiB or TiB: whole numbers when exact, else one decimal.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scale: u64 = 1;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        unit += 1;
        scale *= 1024;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if bytes.checked_rem(scale) == Some(0) {
        format!("{} {name}", bytes / scale)
    } else {
        format!("{:.1} {name}", bytes as f64 / scale as f64)
    }
}

/// Unix time in nanoseconds as RFC 3339 UTC (`2023-11-14T22:13:20.5Z`).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Text from the image for a terminal: invalid UTF-8 replaced, control characters (which
/// could drive the terminal) escaped.
pub fn text(b: &crak_format::ByteString) -> String {
    clean(&b.to_string_lossy())
}

/// `s` with control characters escaped (`\n`, `\u{1b}`).
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// NUL-separated text (`cmdline`, `environ`) as its parts, with a trailing NUL dropped.
pub fn nul_split(bytes: &[u8]) -> Vec<String> {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|&b| b == 0)
        .map(|p| clean(&String::from_utf8_lossy(p)))
        .collect()
}

/// A command line for people: arguments separated by spaces, quoted when they need it.
pub fn cmdline(bytes: &[u8]) -> String {
    nul_split(bytes)
        .into_iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal(10), "SIGUSR1");
        assert_eq!(signal(31), "SIGSYS");
        assert_eq!(signal(34), "SIGRTMIN+2");
        assert_eq!(signal(64), "SIGRTMAX");
        assert_eq!(signal(0), "signal 0");
        assert_eq!(sigmask(0b101), "SIGHUP,SIGQUIT");
        assert_eq!(rlimit(7), "RLIMIT_NOFILE");
        assert_eq!(rlimit(99), "resource 99");
        assert_eq!(rlim_value(u64::MAX), "unlimited");
        assert_eq!(handler(1), "SIG_IGN");
        assert_eq!(sa_flags(0x1400_0004), "SA_SIGINFO|SA_RESTORER|SA_RESTART");
        assert_eq!(sa_flags(0x20), "0x20");
        assert_eq!(open_flags(0o2002), "O_RDWR|O_APPEND");
        assert_eq!(open_flags(0o2100000), "O_RDONLY|O_LARGEFILE|O_CLOEXEC");
        assert_eq!(open_flags(0o4010001), "O_WRONLY|O_SYNC");
        assert_eq!(restart_code((-512i64) as u64), Some("-ERESTARTSYS"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(132 * 1024), "132 KiB");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        // Extremes do not panic.
        let _ = rfc3339(i64::MIN);
        let _ = rfc3339(i64::MAX);
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            cmdline(b"app\0--port=80\0hello world\0"),
            "app --port=80 'hello world'"
        );
        assert_eq!(cmdline(b""), "");
        assert_eq!(nul_split(b"A=1\0B=2\0"), vec!["A=1", "B=2"]);
        assert_eq!(nul_split(b"A=\x1b[31m\0"), vec!["A=\\u{1b}[31m"]);
        assert_eq!(text(&b"a\nb\xff"[..].into()), "a\\nb\u{fffd}");
    }
}
