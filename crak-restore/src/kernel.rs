//! Kernel feature probing, once at start: each feature the engine needs is checked directly
//! where that is possible without a tracee, otherwise by kernel version, and a missing one gives
//! one clear error naming it.

use crate::sys;
use std::fmt;

/// A kernel release as `(major, minor)`.
pub type Version = (u32, u32);

/// Parses the leading `major.minor` of a release string such as `6.18.0-1-amd64`.
pub fn parse_release(release: &str) -> Option<Version> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A kernel feature the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `PTRACE_SEIZE`/`PTRACE_INTERRUPT` (3.4).
    PtraceSeize,
    /// `PTRACE_GET_SYSCALL_INFO` (5.3).
    PtraceSyscallInfo,
    /// `PTRACE_GET_RSEQ_CONFIGURATION` (5.13).
    PtraceRseqConfig,
    /// `process_vm_readv`/`process_vm_writev` (3.2).
    ProcessVm,
    /// `pidfd_open` + `pidfd_getfd` (5.6).
    PidfdGetfd,
    /// `clone3` with `set_tid` (5.5).
    Clone3SetTid,
    /// `/proc/PID/pagemap`.
    Pagemap,
}

impl Feature {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::PtraceSeize => "ptrace PTRACE_SEIZE/PTRACE_INTERRUPT (Linux 3.4)",
            Feature::PtraceSyscallInfo => "ptrace PTRACE_GET_SYSCALL_INFO (Linux 5.3)",
            Feature::PtraceRseqConfig => "ptrace PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13)",
            Feature::ProcessVm => "process_vm_readv/process_vm_writev (Linux 3.2)",
            Feature::PidfdGetfd => "pidfd_open/pidfd_getfd (Linux 5.6)",
            Feature::Clone3SetTid => "clone3 with set_tid (Linux 5.5)",
            Feature::Pagemap => "/proc/PID/pagemap",
        }
    }

    fn min_version(self) -> Version {
        match self {
            Feature::PtraceSeize => (3, 4),
            Feature::PtraceSyscallInfo => (5, 3),
            Feature::PtraceRseqConfig => (5, 13),
            Feature::ProcessVm => (3, 2),
            Feature::PidfdGetfd => (5, 6),
            Feature::Clone3SetTid => (5, 5),
            Feature::Pagemap => (2, 6),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A required feature is missing.
#[derive(Debug, thiserror::Error)]
#[error("this kernel ({release}) lacks {feature}, which crak needs{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct Missing {
    /// The feature.
    pub feature: Feature,
    /// `uname -r`.
    pub release: String,
    /// What the probe saw.
    pub detail: Option<String>,
}

/// What the running kernel offers.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// Parsed version.
    pub version: Version,
    /// Probe failures, by feature.
    failures: Vec<(Feature, String)>,
}

impl Kernel {
    /// Probes the running kernel once.
    pub fn probe() -> Kernel {
        let release = sys::process::uname()
            .map(|(r, _)| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default();
        let version = parse_release(&release).unwrap_or((0, 0));
        let mut failures = Vec::new();
        // process_vm_readv of our own memory.
        let probe = [0x5au8; 8];
        let mut buf = [0u8; 8];
        let me = std::process::id() as i32;
        match sys::mem::vm_readv(me, &[(probe.as_ptr() as u64, 8)], &mut buf) {
            Ok(8) if buf == probe => {}
            Ok(n) => failures.push((Feature::ProcessVm, format!("short read of {n} bytes"))),
            Err(e) => failures.push((Feature::ProcessVm, e.to_string())),
        }
        // pidfd_open + pidfd_getfd on ourselves (stdin may be closed: use the pidfd itself).
        match sys::pidfd::pidfd_open(me) {
            Ok(pfd) => {
                use std::os::fd::AsRawFd;
                if let Err(e) = sys::pidfd::pidfd_getfd(&pfd, pfd.as_raw_fd()) {
                    failures.push((Feature::PidfdGetfd, e.to_string()));
                }
            }
            Err(e) => failures.push((Feature::PidfdGetfd, e.to_string())),
        }
        if !std::path::Path::new("/proc/self/pagemap").exists() {
            failures.push((Feature::Pagemap, "no /proc/self/pagemap".into()));
        }
        Kernel {
            release,
            version,
            failures,
        }
    }

    /// Checks that `feature` is available.
    pub fn require(&self, feature: Feature) -> Result<(), Missing> {
        if let Some((_, d)) = self.failures.iter().find(|(f, _)| *f == feature) {
            return Err(Missing {
                feature,
                release: self.release.clone(),
                detail: Some(d.clone()),
            });
        }
        if self.version < feature.min_version() {
            return Err(Missing {
                feature,
                release: self.release.clone(),
                detail: None,
            });
        }
        Ok(())
    }

    /// Checks every feature capture needs.
    pub fn require_capture(&self) -> Result<(), Missing> {
        for f in [
            Feature::PtraceSeize,
            Feature::PtraceSyscallInfo,
            Feature::PtraceRseqConfig,
            Feature::ProcessVm,
            Feature::PidfdGetfd,
            Feature::Pagemap,
        ] {
            self.require(f)?;
        }
        Ok(())
    }

    /// Checks every feature restore needs.
    pub fn require_restore(&self) -> Result<(), Missing> {
        for f in [
            Feature::PtraceSeize,
            Feature::PtraceSyscallInfo,
            Feature::PtraceRseqConfig,
            Feature::ProcessVm,
            Feature::Clone3SetTid,
        ] {
            self.require(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_parsing() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0"), Some((5, 4)));
        assert_eq!(parse_release("x"), None);
    }

    #[test]
    fn this_kernel_supports_capture() {
        let k = Kernel::probe();
        k.require_capture().unwrap();
        let old = Kernel {
            release: "4.19.0".into(),
            version: (4, 19),
            failures: vec![],
        };
        let e = old.require_capture().unwrap_err();
        assert!(e.to_string().contains("PTRACE_GET_SYSCALL_INFO"), "{e}");
    }
}
