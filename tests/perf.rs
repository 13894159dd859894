//! Restore speed paths, live: an image file restored eagerly (pages read by the restored
//! process itself from the file) and lazily (`--lazy`: pages mapped from the file), each
//! checked by the program's own checksum and by what `/proc` shows afterwards. Timings are the
//! benchmark's (`crak-restore/examples/bench.rs`), not asserted here.
//!
//! Needs root, like tests/live.rs; the tests run one at a time.

use crak_tests::{bin, serial};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// 64 MiB of xorshift data in one anonymous mapping (so that it is one stored run), its
/// checksum kept aside; after SIGUSR2 every word is checked.
const BIGMEM_C: &str = r#"
#include "common.h"
static uint64_t xs(uint64_t *s) { uint64_t x = *s; x ^= x << 13; x ^= x >> 7; x ^= x << 17; return *s = x; }
int main(void) {
    size_t len = 64ul << 20;
    uint64_t *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap");
    uint64_t seed = 0x2545f4914f6cdd1dull, sum = 0;
    for (size_t i = 0; i < len / 8; i++) { p[i] = xs(&seed) | 1; sum += p[i] * (i | 1); }
    ready();
    wait_go();
    uint64_t check = 0;
    seed = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < len / 8; i++) {
        uint64_t v = xs(&seed) | 1;
        if (p[i] != v) fail("word %zu is %#llx, expected %#llx", i, (unsigned long long)p[i], (unsigned long long)v);
        check += p[i] * (i | 1);
    }
    if (check != sum) fail("checksum differs");
    pass();
}
"#;

struct Case {
    dir: tempfile::TempDir,
    child: Option<Child>,
    restored: Option<i32>,
    log: String,
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.restored {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::Builder::new()
                .prefix("crak-perf-")
                .tempdir()
                .expect("tempdir"),
            child: None,
            restored: None,
            log: String::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    #[track_caller]
    fn fail(&self, msg: &str) -> ! {
        let err = std::fs::read_to_string(self.path("err.log")).unwrap_or_default();
        panic!(
            "{msg}\n--- transcript ---\n{}\n--- program stderr ---\n{err}",
            self.log
        );
    }

    fn run(&mut self, mut cmd: Command) -> Output {
        let shown = format!("{cmd:?}");
        let o = cmd.output().expect("run command");
        self.log.push_str(&format!(
            "$ {shown}\n  -> {}\n  stdout: {}  stderr: {}\n",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    }

    fn wait_file(&self, name: &str) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(self.path(name)) {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                self.fail(&format!("timed out waiting for {name}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Compiles and starts the 64 MiB program, captures it (killing it) into image.crak.
    fn captured_bigmem(&mut self) -> PathBuf {
        let src = self.path("bigmem.c");
        std::fs::write(&src, BIGMEM_C).expect("write bigmem.c");
        let prog = self.path("bigmem");
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-I"])
            .arg(crak_tests::workspace_root().join("tests/live"))
            .arg("-o")
            .arg(&prog)
            .arg(&src);
        if !self.run(cc).status.success() {
            self.fail("cc bigmem.c failed");
        }
        let child = Command::new(&prog)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path("out.log")).expect("out.log"))
            .stderr(std::fs::File::create(self.path("err.log")).expect("err.log"))
            .spawn()
            .expect("spawn bigmem");
        let pid = child.id();
        self.child = Some(child);
        self.wait_file("ready");
        let img = self.path("image.crak");
        let mut cmd = Command::new(bin("crak-capture"));
        cmd.arg(pid.to_string()).arg("-o").arg(&img);
        if !self.run(cmd).status.success() {
            self.fail("crak-capture failed");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        img
    }

    fn restore(&mut self, img: &Path, extra: &[&str]) -> i32 {
        let mut cmd = Command::new(bin("crak-restore"));
        cmd.arg("--detach").args(extra).arg(img);
        let o = self.run(cmd);
        if !o.status.success() {
            self.fail("crak-restore failed");
        }
        let pid: i32 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail("crak-restore printed no PID"));
        self.restored = Some(pid);
        pid
    }

    fn go_and_expect_pass(&self, pid: i32) {
        let _ = Command::new("kill")
            .arg("-USR2")
            .arg(pid.to_string())
            .status();
        let r = self.wait_file("result");
        if r.trim() != "PASS" {
            self.fail(&format!("program reported: {}", r.trim()));
        }
    }
}

/// Whether any fd of `pid` is the file `img`.
fn holds_fd_of(pid: i32, img: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == img))
        })
        .unwrap_or(false)
}

/// Bytes of `pid`'s mappings of `img`.
fn mapped_bytes_of(pid: i32, img: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let name = img.to_string_lossy();
    maps.lines()
        .filter(|l| l.ends_with(name.as_ref()))
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

#[test]
fn eager_restore_from_a_file_keeps_neither_fd_nor_mapping_of_the_image() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let img = case.captured_bigmem();
    let pid = case.restore(&img, &[]);
    if holds_fd_of(pid, &img) {
        case.fail("the restored process holds an fd of the image");
    }
    if mapped_bytes_of(pid, &img) != 0 {
        case.fail("an eager restore left mappings of the image");
    }
    case.go_and_expect_pass(pid);
}

#[test]
fn lazy_restore_of_64mib_maps_the_image_and_passes_its_checksum() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let img = case.captured_bigmem();
    let pid = case.restore(&img, &["--lazy"]);
    let mapped = mapped_bytes_of(pid, &img);
    // The 64 MiB mapping may share its VMA with a few neighbouring pages of other memory:
    // nearly all of it, not all, is one stored run.
    if mapped < 63 << 20 {
        case.fail(&format!(
            "--lazy mapped {mapped} bytes of the image, expected the 64 MiB run"
        ));
    }
    if holds_fd_of(pid, &img) {
        case.fail("the restored process holds an fd of the image");
    }
    case.go_and_expect_pass(pid);
}

#[test]
fn lazy_restore_from_standard_input_is_refused() {
    crak_tests::need_root!();
    let _g = serial();
    let mut case = Case::new();
    let img = case.captured_bigmem();
    let mut cmd = Command::new(bin("crak-restore"));
    cmd.args(["--detach", "--lazy", "-"])
        .stdin(std::fs::File::open(&img).expect("image"));
    let o = case.run(cmd);
    if o.status.code() != Some(2) || !String::from_utf8_lossy(&o.stderr).contains("--lazy") {
        case.fail("--lazy from standard input was not refused with exit status 2");
    }
    if !o.stdout.is_empty() {
        case.fail("a PID was printed");
    }
}
