//! Conventional names of the numbers the format stores: signal numbers (SIGACTIONS, SIGQUEUE,
//! masks) and `RLIMIT_*` resources (RLIMITS), as Linux on x86_64 defines them.

/// Names of signals 1–31.
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Names of `RLIMIT_*` resources 0–15.
const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// `SIGUSR1`, `SIGRTMIN`, `SIGRTMIN+3`, `SIGRTMAX`, or `signal N` for a number outside 1–64.
pub fn signal(signo: u32) -> String {
    match signo {
        1..=31 => SIGNALS
            .get(signo as usize - 1)
            .map_or_else(|| signo.to_string(), |s| (*s).to_string()),
        32 => "SIGRTMIN".to_string(),
        33..=63 => format!("SIGRTMIN+{}", signo - 32),
        64 => "SIGRTMAX".to_string(),
        _ => format!("signal {signo}"),
    }
}

/// `RLIMIT_NOFILE`, or `resource N` for an unknown resource.
pub fn rlimit(resource: u32) -> String {
    RLIMITS
        .get(resource as usize)
        .map_or_else(|| format!("resource {resource}"), |s| (*s).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_signals_and_limits() {
        assert_eq!(signal(10), "SIGUSR1");
        assert_eq!(signal(31), "SIGSYS");
        assert_eq!(signal(32), "SIGRTMIN");
        assert_eq!(signal(35), "SIGRTMIN+3");
        assert_eq!(signal(64), "SIGRTMAX");
        assert_eq!(signal(0), "signal 0");
        assert_eq!(signal(65), "signal 65");
        assert_eq!(rlimit(7), "RLIMIT_NOFILE");
        assert_eq!(rlimit(15), "RLIMIT_RTTIME");
        assert_eq!(rlimit(16), "resource 16");
    }
}
