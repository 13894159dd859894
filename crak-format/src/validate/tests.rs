//! One test per rule: a valid model, broken in one place, gives exactly that finding.

use super::*;
use crate::bytes::{Blob, ByteString};
use crate::image::{Process, Version};
use crate::read::RecordSpan;
use crate::record::creds::Creds;
use crate::record::fd::{Fd, FdKind};
use crate::record::header::{Header, SpecialMapping, ARCH_X86_64};
use crate::record::mm::Mm;
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::pipe_data::PipeData;
use crate::record::process::ProcessRecord;
use crate::record::rlimits::{Rlimit, Rlimits};
use crate::record::sigactions::{SigAction, SigActions};
use crate::record::sigqueue::SigQueue;
use crate::record::thread::Thread;
use crate::record::vma::{Vma, VmaKind, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::record::xsave::Xsave;

const PS: u64 = 4096;
const XSAVE_SIZE: u32 = 832;
const HEAP: u64 = 0x60_0000;

fn vma(pid: u32, kind: VmaKind, start: u64, end: u64, prot: u32, path: &str) -> Vma {
    Vma {
        pid,
        kind,
        start,
        end,
        prot,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: if kind == VmaKind::File { 0x803 } else { 0 },
        ino: if kind == VmaKind::File { 1234 } else { 0 },
        size: 0,
        mtime_ns: 0,
        path: path.into(),
    }
}

fn fd(pid: u32, n: u32, kind: FdKind, path: &str, ino: u64) -> Fd<'static> {
    Fd {
        pid,
        fd: n,
        fd_flags: 0,
        kind,
        open_flags: 2,
        pos: 0,
        dev: 0,
        ino,
        rdev: 0,
        size: 0,
        mtime_ns: 0,
        mode: 0o100644,
        deleted: false,
        path: path.into(),
        contents: Blob::default(),
        description: 0,
    }
}

fn process(pid: u32, ppid: u32, tids: &[u32]) -> Process<'static> {
    let mut p = Process::new(ProcessRecord {
        pid,
        ppid,
        pgid: pid,
        sid: pid,
        comm: "app".into(),
        exe: "/usr/bin/app".into(),
        cwd: "/home/user".into(),
        root: "/".into(),
        cmdline: ByteString(b"app\0--serve\0".to_vec()),
        environ: ByteString(b"HOME=/home/user\0".to_vec()),
        tids: tids.to_vec(),
        ..ProcessRecord::default()
    });
    p.creds = Some(Creds {
        pid,
        uid: 1000,
        euid: 1000,
        suid: 1000,
        fsuid: 1000,
        gid: 1000,
        egid: 1000,
        sgid: 1000,
        fsgid: 1000,
        groups: vec![1000, 27],
        ..Creds::default()
    });
    p.mm = Some(Mm {
        pid,
        start_code: 0x40_0000,
        end_code: 0x40_1000,
        start_data: 0x40_1000,
        end_data: 0x40_1000,
        start_brk: HEAP,
        brk: HEAP + 0x2100,
        start_stack: 0x7ffc_0002_0000,
        arg_start: 0x7ffc_0002_0100,
        arg_end: 0x7ffc_0002_0110,
        env_start: 0x7ffc_0002_0110,
        env_end: 0x7ffc_0002_0200,
        auxv: vec![(6, PS)],
    });
    p.rlimits = Some(Rlimits {
        pid,
        limits: vec![
            Rlimit {
                resource: 7,
                cur: 1024,
                max: 4096,
            },
            Rlimit {
                resource: 3,
                cur: 8 << 20,
                max: u64::MAX,
            },
        ],
    });
    p.sigactions = Some(SigActions {
        pid,
        actions: vec![
            SigAction {
                signo: 10,
                handler: 0x40_0100,
                flags: 0x0400_0000,
                restorer: 0x40_0200,
                mask: 0,
            },
            SigAction {
                signo: 13,
                handler: 1,
                ..SigAction::default()
            },
        ],
    });
    for &tid in tids {
        p.threads.push(Thread {
            pid,
            tid,
            ..Thread::default()
        });
        p.xsaves.push(Xsave {
            pid,
            tid,
            xstate_bv: 0x3,
            area: Blob::from(vec![0u8; XSAVE_SIZE as usize]),
        });
    }
    p.vmas = vec![
        vma(
            pid,
            VmaKind::File,
            0x40_0000,
            0x40_1000,
            PROT_READ | PROT_EXEC,
            "/usr/bin/app",
        ),
        vma(
            pid,
            VmaKind::Heap,
            HEAP,
            HEAP + 0x3000,
            PROT_READ | PROT_WRITE,
            "[heap]",
        ),
        vma(
            pid,
            VmaKind::Anon,
            0x7f00_0000_0000,
            0x7f00_0001_0000,
            PROT_READ | PROT_WRITE,
            "",
        ),
        vma(
            pid,
            VmaKind::Stack,
            0x7ffc_0000_0000,
            0x7ffc_0002_1000,
            PROT_READ | PROT_WRITE,
            "[stack]",
        ),
        vma(
            pid,
            VmaKind::Vvar,
            0x7ffd_0000_0000,
            0x7ffd_0000_4000,
            PROT_READ,
            "[vvar]",
        ),
        vma(
            pid,
            VmaKind::Vdso,
            0x7ffd_0000_4000,
            0x7ffd_0000_6000,
            PROT_READ | PROT_EXEC,
            "[vdso]",
        ),
    ];
    p.pages = vec![PageRun {
        pid,
        addr: HEAP,
        nr_pages: 2,
        data: Blob::from(vec![0x5a; 2 * PS as usize]),
    }];
    p.zero_runs = vec![ZeroRun {
        pid,
        addr: HEAP + 2 * PS,
        nr_pages: 1,
    }];
    p.fds = vec![
        fd(pid, 0, FdKind::Tty, "/dev/pts/0", 3),
        fd(pid, 1, FdKind::Pipe, "pipe:[5000]", 5000),
        fd(pid, 3, FdKind::Reg, "/tmp/log", 77),
    ];
    p
}

fn good() -> Image<'static> {
    Image {
        version: Version { major: 1, minor: 0 },
        flags: 0,
        header: Header {
            arch: ARCH_X86_64,
            page_size: PS as u32,
            capture_time_ns: 1_700_000_000_000_000_000,
            xsave_features: 0x7,
            xsave_size: XSAVE_SIZE,
            kernel_release: "6.18.0".into(),
            hostname: "box".into(),
            tool_version: "crak 0.1.0".into(),
            special_mappings: vec![
                SpecialMapping {
                    kind: VmaKind::Vvar,
                    start: 0x7ffd_0000_0000,
                    end: 0x7ffd_0000_4000,
                },
                SpecialMapping {
                    kind: VmaKind::Vdso,
                    start: 0x7ffd_0000_4000,
                    end: 0x7ffd_0000_6000,
                },
            ],
        },
        processes: vec![process(100, 1, &[100, 101]), process(200, 100, &[200])],
        pipes: vec![PipeData {
            pipe_id: 5000,
            capacity: 65536,
            data: Blob::from(b"hello".to_vec()),
        }],
        notes: Vec::new(),
        scm: Vec::new(),
        shm_segments: Vec::new(),
        sem_sets: Vec::new(),
        msg_queues: Vec::new(),
        auth: None,
        unknown: Vec::new(),
        extras: Vec::new(),
    }
}

fn p0<'a>(img: &'a mut Image<'static>) -> &'a mut Process<'static> {
    &mut img.processes[0]
}

/// Validates `img` and checks that it has a finding `code` of `severity`, and that every
/// finding has that code (the model is broken in one place only).
#[track_caller]
fn expect(img: &Image<'_>, code: &str, severity: Severity) -> Finding {
    let report = validate(img, None);
    let found: Vec<&Finding> = report.findings.iter().filter(|f| f.code == code).collect();
    assert!(!found.is_empty(), "no {code} finding in {report:#?}");
    assert!(
        report.findings.iter().all(|f| f.code == code),
        "other findings besides {code}: {report:#?}"
    );
    assert_eq!(found[0].severity, severity, "{:#?}", found[0]);
    assert_eq!(report.is_valid(), severity == Severity::Warning);
    found[0].clone()
}

#[test]
fn good_image_has_no_findings() {
    let report = validate(&good(), None);
    assert!(report.findings.is_empty(), "{report:#?}");
    assert!(report.valid && report.is_valid());
    assert_eq!((report.errors, report.warnings), (0, 0));
}

#[test]
fn stream_model_without_page_data_is_valid() {
    let mut img = good();
    for p in &mut img.processes {
        for r in &mut p.pages {
            r.data = Blob::default();
        }
    }
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");
}

// --- VMAs ---

#[test]
fn vma_unsorted() {
    let mut img = good();
    p0(&mut img).vmas.swap(0, 1);
    let f = expect(&img, "vma-unsorted", Severity::Error);
    assert_eq!(
        (f.record, f.pid, f.index, f.field),
        ("VMA", Some(100), Some(1), "start")
    );
}

#[test]
fn vma_overlap() {
    let mut img = good();
    p0(&mut img).vmas[2].end = 0x7ffc_0000_1000; // runs into the stack
    let f = expect(&img, "vma-overlap", Severity::Error);
    assert_eq!(f.index, Some(3));
}

#[test]
fn vma_overlap_not_adjacent_is_found() {
    // A long VMA overlapping one that is not its neighbour in sorted order.
    let mut img = good();
    let p = p0(&mut img);
    p.vmas.truncate(3);
    p.vmas[0].end = 0x7f00_0000_1000; // covers the heap and the start of the anon VMA
    p.pages.clear();
    p.zero_runs.clear();
    p.mm.as_mut().unwrap().brk = HEAP;
    let report = validate(&img, None);
    let overlaps: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "vma-overlap")
        .map(|f| f.index)
        .collect();
    assert_eq!(overlaps, vec![Some(1), Some(2)], "{report:#?}");
}

#[test]
fn vma_unaligned() {
    let mut img = good();
    p0(&mut img).vmas[2].start += 0x10;
    let f = expect(&img, "vma-unaligned", Severity::Error);
    assert_eq!(f.field, "start");
}

#[test]
fn vma_empty() {
    let mut img = good();
    let v = &mut p0(&mut img).vmas[2];
    v.end = v.start;
    expect(&img, "vma-empty", Severity::Error);
}

#[test]
fn vma_without_private_or_shared() {
    let mut img = good();
    p0(&mut img).vmas[2].flags = MAP_SHARED | MAP_PRIVATE;
    expect(&img, "vma-bad-flags", Severity::Error);
    p0(&mut img).vmas[2].flags = 0;
    expect(&img, "vma-bad-flags", Severity::Error);
}

#[test]
fn file_mapping_relative_path() {
    let mut img = good();
    p0(&mut img).vmas[0].path = "usr/bin/app".into();
    let f = expect(&img, "path-not-absolute", Severity::Warning);
    assert_eq!(f.record, "VMA");
}

#[test]
fn process_without_vmas() {
    let mut img = good();
    let p = p0(&mut img);
    p.vmas.clear();
    p.pages.clear();
    p.zero_runs.clear();
    p.mm.as_mut().unwrap().brk = HEAP;
    let f = expect(&img, "no-vmas", Severity::Warning);
    assert_eq!(f.record, "PROCESS");
}

// --- pages ---

#[test]
fn pages_outside_vma() {
    let mut img = good();
    p0(&mut img).pages[0].addr = 0x10_0000;
    expect(&img, "pages-outside-vma", Severity::Error);
}

#[test]
fn pages_straddling_two_vmas() {
    let mut img = good();
    // The VVAR and VDSO VMAs are adjacent; a zero run across both lies in neither.
    p0(&mut img).zero_runs[0] = ZeroRun {
        pid: 100,
        addr: 0x7ffd_0000_3000,
        nr_pages: 2,
    };
    expect(&img, "pages-outside-vma", Severity::Error);
}

#[test]
fn zero_run_outside_vma() {
    let mut img = good();
    p0(&mut img).zero_runs[0].addr = 0x1000;
    let f = expect(&img, "pages-outside-vma", Severity::Error);
    assert_eq!(f.record, "ZERO_PAGES");
}

#[test]
fn pages_overlap_zero_run() {
    let mut img = good();
    p0(&mut img).zero_runs[0].addr = HEAP + PS;
    let f = expect(&img, "pages-overlap", Severity::Error);
    assert_eq!(f.record, "ZERO_PAGES");
}

#[test]
fn pages_overlap_pages() {
    let mut img = good();
    let p = p0(&mut img);
    let mut second = p.pages[0].clone();
    second.addr = HEAP + PS;
    second.nr_pages = 1;
    second.data = Blob::from(vec![1u8; PS as usize]);
    p.pages.push(second);
    p.zero_runs.clear();
    let f = expect(&img, "pages-overlap", Severity::Error);
    assert_eq!((f.record, f.index), ("PAGES", Some(1)));
}

#[test]
fn pages_unaligned_and_empty() {
    let mut img = good();
    let p = p0(&mut img);
    p.zero_runs[0].addr += 8;
    p.vmas[1].end += PS; // keep the shifted run inside the heap
    expect(&img, "pages-unaligned", Severity::Error);
    let mut img = good();
    p0(&mut img).zero_runs[0].nr_pages = 0;
    expect(&img, "pages-empty", Severity::Error);
}

#[test]
fn pages_running_off_the_address_space() {
    let mut img = good();
    p0(&mut img).zero_runs[0].nr_pages = u64::MAX / 2;
    expect(&img, "pages-outside-vma", Severity::Error);
}

#[test]
fn pages_data_length() {
    let mut img = good();
    p0(&mut img).pages[0].data = Blob::from(vec![1u8; 100]);
    expect(&img, "pages-data-length", Severity::Error);
}

#[test]
fn stored_zero_page() {
    let mut img = good();
    let mut data = vec![7u8; 2 * PS as usize];
    data[PS as usize..].fill(0);
    p0(&mut img).pages[0].data = Blob::from(data);
    let f = expect(&img, "zero-page-stored", Severity::Warning);
    assert!(f.message.contains("page 1"), "{}", f.message);
    // The restorer's validation reads no page data, and this is the only rule that does.
    let r = super::validate_metadata(&img, None);
    assert!(!r.has("zero-page-stored"));
    assert_eq!(
        r.findings.len() + 1,
        super::validate(&img, None).findings.len()
    );
}

#[test]
fn pages_in_vdso() {
    let mut img = good();
    p0(&mut img).pages.push(PageRun {
        pid: 100,
        addr: 0x7ffd_0000_4000,
        nr_pages: 1,
        data: Blob::from(vec![0xccu8; PS as usize]),
    });
    expect(&img, "pages-in-special-mapping", Severity::Warning);
}

fn layout_with_pages(page_record_offset: u64, data_offset: u64) -> Layout {
    Layout::new(vec![
        RecordSpan {
            kind: kind::VMA,
            flags: 1,
            offset: 0x300,
            length: 100,
            pid: Some(100),
            index: 2,
        },
        RecordSpan {
            kind: kind::PAGES,
            flags: 1,
            offset: page_record_offset,
            length: data_offset + 2 * PS,
            pid: Some(100),
            index: 0,
        },
    ])
}

#[test]
fn page_data_aligned_in_file() {
    // Header at 0xfd4: payload at 0xfe4, data_offset 28 puts data at 0x1000.
    let layout = layout_with_pages(0xfd4, 28);
    let report = validate(&good(), Some(&layout));
    assert!(report.findings.is_empty(), "{report:#?}");
}

#[test]
fn page_data_not_aligned_in_file() {
    let layout = layout_with_pages(0xfd4, 48);
    let report = validate(&good(), Some(&layout));
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    let f = &report.findings[0];
    assert_eq!(f.code, "pages-data-unaligned");
    assert_eq!(f.field, "data_offset");
    assert_eq!(f.offset, Some(0xfd4 + 16 + 24));
}

#[test]
fn offsets_point_at_the_field() {
    let mut img = good();
    p0(&mut img).vmas[2].start += 0x10;
    let layout = layout_with_pages(0xfd4, 28);
    let report = validate(&img, Some(&layout));
    let f = report
        .findings
        .iter()
        .find(|f| f.code == "vma-unaligned")
        .expect("vma-unaligned");
    assert_eq!(f.offset, Some(0x300 + 16 + 8));
}

// --- processes and threads ---

#[test]
fn duplicate_tid() {
    let mut img = good();
    let p = p0(&mut img);
    p.process.tids.push(101);
    expect(&img, "duplicate-tid", Severity::Error);
}

#[test]
fn tid_shared_between_processes() {
    let mut img = good();
    let p = &mut img.processes[1];
    p.process.tids.push(101);
    let mut t = p.threads[0].clone();
    t.tid = 101;
    p.threads.push(t);
    let mut x = p.xsaves[0].clone();
    x.tid = 101;
    p.xsaves.push(x);
    let f = expect(&img, "duplicate-tid", Severity::Error);
    assert_eq!(f.pid, Some(200));
    assert!(f.message.contains("process 100"), "{}", f.message);
}

#[test]
fn duplicate_pid() {
    let mut img = good();
    let mut twin = img.processes[1].clone();
    twin.process.tids = vec![200];
    img.processes.push(twin);
    let report = validate(&img, None);
    assert!(report.has("duplicate-pid"), "{report:#?}");
}

#[test]
fn first_tid_not_pid() {
    let mut img = good();
    p0(&mut img).process.tids.swap(0, 1);
    let f = expect(&img, "leader-not-first", Severity::Error);
    assert_eq!(f.field, "tids");
}

#[test]
fn no_tids() {
    let mut img = good();
    let p = p0(&mut img);
    p.process.tids.clear();
    p.threads.clear();
    p.xsaves.clear();
    expect(&img, "no-threads", Severity::Error);
}

#[test]
fn thread_without_xsave() {
    let mut img = good();
    p0(&mut img).xsaves.pop();
    let f = expect(&img, "missing-xsave", Severity::Error);
    assert_eq!((f.record, f.index), ("THREAD", Some(1)));
}

#[test]
fn listed_tid_without_thread() {
    let mut img = good();
    let p = p0(&mut img);
    p.threads.pop();
    p.xsaves.pop();
    expect(&img, "missing-thread", Severity::Error);
}

#[test]
fn thread_not_listed_and_orphan_xsave() {
    let mut img = good();
    let p = p0(&mut img);
    p.process.tids.pop();
    expect(&img, "thread-not-listed", Severity::Error);
    let mut img = good();
    p0(&mut img).xsaves[1].tid = 999;
    let report = validate(&img, None);
    assert!(
        report.has("orphan-xsave") && report.has("missing-xsave"),
        "{report:#?}"
    );
}

#[test]
fn duplicate_thread_and_xsave() {
    let mut img = good();
    let p = p0(&mut img);
    let t = p.threads[0].clone();
    p.threads.push(t);
    expect(&img, "duplicate-thread", Severity::Error);
    let mut img = good();
    let p = p0(&mut img);
    let x = p.xsaves[0].clone();
    p.xsaves.push(x);
    expect(&img, "duplicate-xsave", Severity::Error);
}

#[test]
fn xsave_size_differs() {
    let mut img = good();
    p0(&mut img).xsaves[0].area = Blob::from(vec![0u8; 512]);
    let f = expect(&img, "xsave-size", Severity::Error);
    assert_eq!(f.field, "area");
}

#[test]
fn xstate_bv_outside_features() {
    let mut img = good();
    p0(&mut img).xsaves[0].xstate_bv = 0xe7;
    let f = expect(&img, "xsave-features", Severity::Error);
    assert!(f.message.contains("0xe0"), "{}", f.message);
}

#[test]
fn missing_creds_and_mm() {
    let mut img = good();
    p0(&mut img).creds = None;
    let f = expect(&img, "missing-creds", Severity::Error);
    assert_eq!(f.record, "PROCESS");
    let mut img = good();
    p0(&mut img).mm = None;
    expect(&img, "missing-mm", Severity::Error);
}

#[test]
fn ppid_cycle() {
    let mut img = good();
    img.processes[0].process.ppid = 200;
    let report = validate(&img, None);
    let cycles: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "ppid-cycle")
        .collect();
    assert_eq!(cycles.len(), 1, "{report:#?}");
    assert!(
        cycles[0].message.contains("100 -> 200 -> 100"),
        "{}",
        cycles[0].message
    );
    assert_eq!(report.findings.len(), 1);
}

#[test]
fn ppid_self_loop() {
    let mut img = good();
    img.processes[1].process.ppid = 200;
    expect(&img, "ppid-cycle", Severity::Error);
}

#[test]
fn long_chain_is_not_a_cycle_and_is_fast() {
    // 20000 processes in one chain: a quadratic walk would take seconds.
    let mut img = good();
    let template = img.processes[1].clone();
    img.processes.truncate(1);
    for pid in 1000..21000u32 {
        let mut p = template.clone();
        p.process.pid = pid;
        p.process.ppid = if pid == 1000 { 100 } else { pid - 1 };
        p.process.tids = vec![pid];
        for r in p.threads.iter_mut() {
            r.pid = pid;
            r.tid = pid;
        }
        for r in p.xsaves.iter_mut() {
            r.pid = pid;
            r.tid = pid;
        }
        p.creds.as_mut().unwrap().pid = pid;
        p.mm.as_mut().unwrap().pid = pid;
        p.rlimits.as_mut().unwrap().pid = pid;
        p.sigactions.as_mut().unwrap().pid = pid;
        for v in p.vmas.iter_mut() {
            v.pid = pid;
        }
        for r in p.pages.iter_mut() {
            r.pid = pid;
        }
        for r in p.zero_runs.iter_mut() {
            r.pid = pid;
        }
        for f in p.fds.iter_mut() {
            f.pid = pid;
        }
        img.processes.push(p);
    }
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{:#?}", report.findings.first());
}

#[test]
fn many_vmas_and_runs_are_fast() {
    // 200000 VMAs and 200000 runs: any quadratic pass would take many minutes.
    const N: u64 = 200_000;
    let mut img = good();
    let p = p0(&mut img);
    let base = 0x1000_0000_0000u64;
    p.vmas = (0..N)
        .map(|i| {
            let start = base + i * 2 * PS;
            vma(100, VmaKind::Anon, start, start + 2 * PS, PROT_READ, "")
        })
        .collect();
    p.vmas.push(vma(
        100,
        VmaKind::Heap,
        HEAP,
        HEAP + 0x3000,
        PROT_READ,
        "[heap]",
    ));
    p.vmas.sort_by_key(|v| v.start);
    p.pages.clear();
    p.zero_runs = (0..N)
        .map(|i| ZeroRun {
            pid: 100,
            addr: base + i * 2 * PS + PS,
            nr_pages: 1,
        })
        .collect();
    let started = std::time::Instant::now();
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{:#?}", report.findings.first());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn record_filed_under_wrong_pid() {
    let mut img = good();
    p0(&mut img).fds[2].pid = 200;
    let f = expect(&img, "pid-mismatch", Severity::Error);
    assert_eq!((f.record, f.index), ("FD", Some(2)));
}

// --- fds and pipes ---

#[test]
fn duplicate_fd() {
    let mut img = good();
    p0(&mut img).fds[2].fd = 0;
    let f = expect(&img, "duplicate-fd", Severity::Error);
    assert_eq!((f.record, f.index, f.field), ("FD", Some(2), "fd"));
}

#[test]
fn pipe_fd_without_pipe_data() {
    let mut img = good();
    img.pipes.clear();
    let report = validate(&img, None);
    // Both processes hold an end of pipe 5000.
    assert_eq!(report.findings.len(), 2, "{report:#?}");
    assert!(report
        .findings
        .iter()
        .all(|f| f.code == "pipe-data-missing"));
}

#[test]
fn fifo_without_pipe_data() {
    let mut img = good();
    p0(&mut img)
        .fds
        .push(fd(100, 7, FdKind::Fifo, "/run/fifo", 6000));
    expect(&img, "pipe-data-missing", Severity::Error);
}

#[test]
fn pipe_data_nobody_uses() {
    let mut img = good();
    img.pipes.push(PipeData {
        pipe_id: 42,
        capacity: 4096,
        data: Blob::default(),
    });
    let f = expect(&img, "orphan-pipe-data", Severity::Warning);
    assert_eq!((f.record, f.pid, f.index), ("PIPE_DATA", None, Some(1)));
}

#[test]
fn pipe_data_duplicate_and_over_capacity() {
    let mut img = good();
    let again = img.pipes[0].clone();
    img.pipes.push(again);
    expect(&img, "duplicate-pipe-data", Severity::Error);
    let mut img = good();
    img.pipes[0].capacity = 2;
    expect(&img, "pipe-data-over-capacity", Severity::Error);
}

#[test]
fn fd_relative_path() {
    let mut img = good();
    p0(&mut img).fds[2].path = "tmp/log".into();
    let f = expect(&img, "path-not-absolute", Severity::Warning);
    assert_eq!(f.record, "FD");
}

#[test]
fn fd_contents_rules() {
    let mut img = good();
    p0(&mut img).fds[2].contents = Blob::from(b"data".to_vec());
    let f = expect(&img, "contents-not-deleted", Severity::Error);
    assert_eq!(f.field, "contents");
    let mut img = good();
    p0(&mut img).fds[0].deleted = true;
    expect(&img, "deleted-not-regular", Severity::Error);
}

#[test]
fn a_zombie_needs_only_its_process_record() {
    use crate::record::process::PROCESS_ZOMBIE;
    let mut img = good();
    let mut z = Process::new(ProcessRecord {
        pid: 300,
        ppid: 100,
        pgid: 100,
        sid: 100,
        flags: PROCESS_ZOMBIE | (7 << 8) << 16,
        comm: "worker".into(),
        tids: vec![300],
        ..ProcessRecord::default()
    });
    img.processes.push(z.clone());
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");
    assert!(z.process.is_zombie());
    assert_eq!(z.process.wait_status(), 7 << 8);
    // The same record without the flag is a process missing everything.
    z.process.flags = 0;
    img.processes.pop();
    img.processes.push(z);
    let report = validate(&img, None);
    for code in ["missing-creds", "missing-mm", "missing-thread", "no-vmas"] {
        assert!(
            report.findings.iter().any(|f| f.code == code),
            "{code}: {report:#?}"
        );
    }
}

#[test]
fn anonymous_fd_state_rules() {
    use crate::record::fd::{EpollEntry, FdState};
    let state = |img: &mut Image<'static>, n: u32, kind: FdKind, st: &FdState, ino: u64| {
        let mut f = fd(100, n, kind, "anon_inode:[x]", ino);
        f.contents = Blob::from(st.encode());
        p0(img).fds.push(f);
    };
    // A well-formed eventfd, epoll and socket pair: no finding (not even a relative path).
    let mut img = good();
    let ev = FdState::Eventfd { count: 1, flags: 0 };
    state(&mut img, 20, FdKind::Eventfd, &ev, 0);
    let ep = FdState::Epoll(vec![EpollEntry {
        fd: 20,
        events: 1,
        data: 9,
    }]);
    state(&mut img, 21, FdKind::Epoll, &ep, 0);
    let end = |peer| FdState::Unix {
        sock_type: 1,
        peer,
        queue: vec![b"x".to_vec()],
    };
    state(&mut img, 22, FdKind::Unix, &end(501), 500);
    state(&mut img, 23, FdKind::Unix, &end(500), 501);
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");

    let mut bad = img.clone();
    p0(&mut bad).fds.retain(|f| f.fd != 20);
    expect(&bad, "epoll-target-missing", Severity::Error);
    let mut bad = img.clone();
    p0(&mut bad).fds.retain(|f| f.fd != 23);
    expect(&bad, "unix-peer-missing", Severity::Error);
    let mut bad = img;
    if let Some(f) = p0(&mut bad).fds.iter_mut().find(|f| f.fd == 20) {
        f.contents = Blob::from(vec![0u8; 11]);
    }
    let f = expect(&bad, "bad-fd-state", Severity::Error);
    assert_eq!(f.field, "contents");
}

#[test]
fn unix_socket_state_rules() {
    use crate::record::fd::{
        FdState, UnixPending, UnixSocket, UNIX_CONNECTED, UNIX_LISTENING, UNIX_NAME_GONE,
        UNIX_PEER_CLOSED, UNIX_PEER_EXTERNAL,
    };
    let put = |img: &mut Image<'static>, n: u32, ino: u64, s: UnixSocket| {
        let mut f = fd(100, n, FdKind::UnixSocket, "socket:[1]", ino);
        f.contents = Blob::from(FdState::UnixSocket(s).encode());
        p0(img).fds.push(f);
    };
    let listener = UnixSocket {
        sock_type: 1,
        state: UNIX_LISTENING,
        backlog: 4,
        name: b"/run/s".to_vec(),
        pending: vec![UnixPending {
            ino: 700,
            client: 702,
            queue: vec![],
        }],
        ..UnixSocket::default()
    };
    let conn = |peer: u64, name: &[u8], peer_name: &[u8]| UnixSocket {
        sock_type: 1,
        state: UNIX_CONNECTED,
        peer,
        name: name.to_vec(),
        peer_name: peer_name.to_vec(),
        ..UnixSocket::default()
    };
    // A listener, an accepted connection, its client, a pending client and a socket connected
    // outside the image: no finding.
    let mut img = good();
    put(&mut img, 20, 600, listener.clone());
    put(&mut img, 21, 601, conn(603, b"/run/s", b""));
    put(&mut img, 22, 603, conn(601, b"", b"/run/s"));
    put(&mut img, 23, 702, conn(700, b"", b"/run/s"));
    let mut ext = conn(9999, b"", b"/run/log");
    ext.flags = UNIX_PEER_EXTERNAL;
    put(&mut img, 24, 704, ext);
    let mut closed = conn(0, b"/run/s", b"");
    closed.flags = UNIX_PEER_CLOSED;
    put(&mut img, 25, 705, closed);
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");

    let mut bad = img.clone();
    p0(&mut bad).fds.retain(|f| f.fd != 23);
    let f = expect(&bad, "unix-peer-missing", Severity::Error);
    assert_eq!(f.field, "contents");
    let mut bad = img.clone();
    p0(&mut bad).fds.retain(|f| f.fd != 22);
    expect(&bad, "unix-peer-missing", Severity::Error);
    for broken in [
        UnixSocket {
            sock_type: 2,
            ..listener.clone()
        },
        UnixSocket {
            name: vec![],
            ..listener.clone()
        },
        UnixSocket {
            state: UNIX_CONNECTED,
            peer: 0,
            pending: vec![],
            ..listener.clone()
        },
        UnixSocket {
            flags: UNIX_NAME_GONE,
            ..conn(603, b"\0abstract", b"")
        },
        UnixSocket {
            flags: UNIX_PEER_EXTERNAL,
            ..conn(9999, b"", b"")
        },
        UnixSocket {
            flags: UNIX_PEER_CLOSED,
            ..conn(603, b"", b"")
        },
    ] {
        let mut bad = img.clone();
        put(&mut bad, 30, 800, broken.clone());
        assert!(
            validate(&bad, None)
                .findings
                .iter()
                .any(|f| f.severity == Severity::Error
                    && matches!(f.code, "bad-unix-socket" | "unix-peer-missing")),
            "{broken:?}"
        );
    }
}

#[test]
fn tcp_and_udp_endpoint_rules() {
    use crate::record::fd::{
        FdState, InetAddr, TcpConn, TcpState, UdpState, AF_INET, TCP_ESTABLISHED, TCP_LISTEN,
    };
    let mut lo = [0u8; 16];
    lo[..4].copy_from_slice(&[127, 0, 0, 1]);
    let tcp = |state, local_port, remote_port| {
        FdState::Tcp(Box::new(TcpState {
            addr: InetAddr {
                family: AF_INET,
                local: lo,
                remote: lo,
                local_port,
                remote_port,
            },
            state,
            sockopts: 0,
            keepidle: 0,
            keepintvl: 0,
            keepcnt: 0,
            rcvbuf: 0,
            sndbuf: 0,
            backlog: 4,
            conn: TcpConn {
                snd_seq: 1,
                rcv_seq: 2,
                mss: 1460,
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
                send_queue: vec![],
                recv_queue: b"q".to_vec(),
            },
        }))
    };
    let udp = FdState::Udp(UdpState {
        addr: InetAddr {
            family: AF_INET,
            local: lo,
            remote: [0; 16],
            local_port: 53,
            remote_port: 0,
        },
        sockopts: 0,
        rcvbuf: 0,
        sndbuf: 0,
        dropped: 2,
    });
    let with = |states: &[(FdKind, FdState)]| {
        let mut img = good();
        for (i, (kind, st)) in states.iter().enumerate() {
            let mut f = fd(100, 30 + i as u32, *kind, "socket:[1]", 900 + i as u64);
            f.contents = Blob::from(st.encode());
            p0(&mut img).fds.push(f);
        }
        img
    };
    let img = with(&[
        (FdKind::Tcp, tcp(TCP_LISTEN, 80, 0)),
        (FdKind::Tcp, tcp(TCP_ESTABLISHED, 80, 5000)),
        (FdKind::Udp, udp),
    ]);
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");
    expect(
        &with(&[(FdKind::Tcp, tcp(TCP_LISTEN, 0, 0))]),
        "inet-endpoint-missing",
        Severity::Error,
    );
    let f = expect(
        &with(&[(FdKind::Tcp, tcp(TCP_ESTABLISHED, 80, 0))]),
        "inet-endpoint-missing",
        Severity::Error,
    );
    assert_eq!(f.field, "contents");
    let mut bad = with(&[(FdKind::Tcp, tcp(TCP_LISTEN, 80, 0))]);
    if let Some(f) = p0(&mut bad).fds.iter_mut().find(|f| f.fd == 30) {
        let mut b = f.contents.as_bytes().to_vec();
        b[2] = 2; // SYN_SENT
        f.contents = Blob::from(b);
    }
    expect(&bad, "bad-fd-state", Severity::Error);
}

#[test]
fn fd_number_too_large() {
    let mut img = good();
    p0(&mut img).fds[2].fd = 1 << 20;
    expect(&img, "bad-fd", Severity::Error);
}

// --- mm ---

#[test]
fn brk_outside_heap() {
    let mut img = good();
    p0(&mut img).mm.as_mut().unwrap().brk = HEAP + 0x10_0000;
    let f = expect(&img, "brk-outside-heap", Severity::Error);
    assert_eq!((f.record, f.field), ("MM", "brk"));
}

#[test]
fn brk_below_start_brk() {
    let mut img = good();
    p0(&mut img).mm.as_mut().unwrap().brk = HEAP - 1;
    expect(&img, "brk-outside-heap", Severity::Error);
}

#[test]
fn brk_without_heap_mapping() {
    let mut img = good();
    let p = p0(&mut img);
    p.vmas.remove(1);
    p.pages.clear();
    p.zero_runs.clear();
    expect(&img, "brk-outside-heap", Severity::Error);
    // An unused heap (brk == start_brk) needs no mapping.
    p0(&mut img).mm.as_mut().unwrap().brk = HEAP;
    assert!(validate(&img, None).findings.is_empty());
}

#[test]
fn mm_pairs_out_of_order() {
    let mut img = good();
    let mm = p0(&mut img).mm.as_mut().unwrap();
    mm.arg_end = mm.arg_start - 1;
    let f = expect(&img, "mm-range-order", Severity::Error);
    assert_eq!(f.field, "arg_start");
}

// --- signals and limits ---

#[test]
fn signo_out_of_range() {
    for bad in [0, 65, u32::MAX] {
        let mut img = good();
        p0(&mut img).sigactions.as_mut().unwrap().actions[1].signo = bad;
        let f = expect(&img, "signo-out-of-range", Severity::Error);
        assert_eq!(f.field, "signo");
    }
}

#[test]
fn signo_duplicated() {
    let mut img = good();
    p0(&mut img).sigactions.as_mut().unwrap().actions[1].signo = 10;
    expect(&img, "duplicate-signo", Severity::Error);
}

#[test]
fn sigkill_handler() {
    let mut img = good();
    p0(&mut img).sigactions.as_mut().unwrap().actions[1].signo = 9;
    expect(&img, "uncatchable-signal", Severity::Warning);
}

#[test]
fn rlimit_rules() {
    let mut img = good();
    p0(&mut img).rlimits.as_mut().unwrap().limits[0].resource = 16;
    expect(&img, "bad-rlimit", Severity::Error);
    let mut img = good();
    p0(&mut img).rlimits.as_mut().unwrap().limits[1].resource = 7;
    expect(&img, "duplicate-rlimit", Severity::Error);
    let mut img = good();
    p0(&mut img).rlimits.as_mut().unwrap().limits[0].cur = 5000;
    let f = expect(&img, "rlimit-cur-above-max", Severity::Error);
    assert_eq!(f.field, "cur");
}

#[test]
fn sigqueue_rules() {
    let mut info = vec![0u8; 128];
    info[0] = 10;
    let mut img = good();
    p0(&mut img).sigqueues.push(SigQueue {
        pid: 100,
        tid: 0,
        siginfos: vec![Blob::from(info.clone())],
    });
    assert!(validate(&img, None).findings.is_empty());
    p0(&mut img).sigqueues[0].tid = 555;
    expect(&img, "sigqueue-unknown-thread", Severity::Error);
    p0(&mut img).sigqueues[0].tid = 101;
    info[0] = 0;
    p0(&mut img).sigqueues[0].siginfos[0] = Blob::from(info);
    expect(&img, "bad-signo", Severity::Error);
    p0(&mut img).sigqueues[0].siginfos[0] = Blob::from(vec![1u8; 3]);
    expect(&img, "siginfo-size", Severity::Error);
}

// --- header ---

#[test]
fn bad_page_size_skips_page_checks() {
    let mut img = good();
    img.header.page_size = 5000;
    let f = expect(&img, "bad-page-size", Severity::Error);
    assert_eq!(f.field, "page_size");
    img.header.page_size = 0;
    expect(&img, "bad-page-size", Severity::Error);
}

#[test]
fn special_mapping_rules() {
    let mut img = good();
    img.header.special_mappings[1].start = 0x7ffd_0000_2000;
    expect(&img, "bad-special-mapping", Severity::Error);
    let mut img = good();
    img.header.special_mappings[0].kind = VmaKind::Anon;
    expect(&img, "bad-special-mapping", Severity::Error);
}

#[test]
fn unsupported_arch() {
    let mut img = good();
    img.header.arch = 3;
    expect(&img, "unsupported-arch", Severity::Error);
}

#[test]
fn xsave_size_too_large() {
    let mut img = good();
    img.header.xsave_size = 70000;
    let report = validate(&img, None);
    assert!(
        report.has("bad-xsave-size") && report.has("xsave-size"),
        "{report:#?}"
    );
}

#[test]
fn findings_serialize() {
    let mut img = good();
    p0(&mut img).fds[2].fd = 0;
    let v = serde_json::to_value(validate(&img, None)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["findings"][0]["severity"], "error");
    assert_eq!(v["findings"][0]["code"], "duplicate-fd");
    assert_eq!(v["findings"][0]["record"], "FD");
}

#[test]
fn display_names_everything() {
    let mut img = good();
    p0(&mut img).fds[2].fd = 0;
    let report = validate(&img, None);
    let s = report.findings[0].to_string();
    assert!(
        s.starts_with("error[duplicate-fd]: FD#2 pid 100 .fd: "),
        "{s}"
    );
}

// --- with a real layout ---

#[test]
fn written_image_validates_clean_with_its_layout() {
    let img = good();
    let bytes = crate::write::to_vec(&img).expect("write");
    let parsed = crate::read::parse(&bytes).expect("parse");
    let report = validate(&parsed.image, Some(&parsed.layout));
    assert!(report.findings.is_empty(), "{report:#?}");
}

#[test]
fn offsets_from_a_real_layout_point_at_the_bytes() {
    let mut img = good();
    // Findings in fixed fields and in variable-length ones (tids follow six byte strings).
    p0(&mut img).fds[2].fd = 0;
    p0(&mut img).process.tids = vec![100, 101, 101];
    let rl = &mut p0(&mut img).rlimits.as_mut().unwrap().limits[1];
    rl.cur = 9;
    rl.max = 8;
    let bytes = crate::write::to_vec(&img).expect("write");
    let parsed = crate::read::parse(&bytes).expect("parse");
    let report = validate(&parsed.image, Some(&parsed.layout));
    let at = |code: &str| -> usize {
        let f = report
            .findings
            .iter()
            .find(|f| f.code == code)
            .unwrap_or_else(|| panic!("no {code}: {report:#?}"));
        f.offset.expect("offset") as usize
    };
    let u32_at = |off: usize| u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
    let u64_at = |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
    assert_eq!(u32_at(at("duplicate-fd")), 0);
    let tid = at("duplicate-tid");
    assert_eq!(u32_at(tid), 101);
    assert_eq!(u32_at(tid - 4), 101, "the one before is the first 101");
    assert_eq!(u64_at(at("rlimit-cur-above-max")), 9);
}

#[test]
fn stream_model_validates_like_the_slice_model() {
    let mut img = good();
    p0(&mut img).zero_runs[0].addr = HEAP + PS; // overlaps the stored run
    let bytes = crate::write::to_vec(&img).expect("write");
    let parsed = crate::read::parse(&bytes).expect("parse");
    let streamed = crate::read::read_stream_metadata(&bytes[..]).expect("stream");
    assert!(streamed.image.processes[0].pages[0].data.is_empty());
    let a = validate(&parsed.image, Some(&parsed.layout));
    let b = validate(&streamed.image, Some(&streamed.layout));
    assert!(a.has("pages-overlap"));
    assert_eq!(a, b);
}

#[test]
fn missing_thread_points_at_its_tid() {
    let mut img = good();
    p0(&mut img).process.tids.push(555);
    let bytes = crate::write::to_vec(&img).expect("write");
    let parsed = crate::read::parse(&bytes).expect("parse");
    let report = validate(&parsed.image, Some(&parsed.layout));
    let f = report
        .findings
        .iter()
        .find(|f| f.code == "missing-thread")
        .expect("missing-thread");
    let off = f.offset.expect("offset") as usize;
    assert_eq!(bytes[off..off + 4], 555u32.to_le_bytes());
}

// --- no panics, whatever the model holds ---

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Structurally valid images: validation of the written and parsed image agrees with
        /// validation of the model, and every offset lies inside the file.
        #[test]
        fn parsed_and_model_agree(img in crate::arbitrary::image()) {
            let bytes = crate::write::to_vec(&img).expect("write");
            let parsed = crate::read::parse(&bytes).expect("parse");
            let with = validate(&parsed.image, Some(&parsed.layout));
            let without = validate(&img, None);
            let strip = |r: &Report| -> Vec<Finding> {
                r.findings.iter().cloned().map(|f| Finding { offset: None, ..f }).collect()
            };
            prop_assert_eq!(strip(&with), strip(&without));
            for f in &with.findings {
                let off = f.offset.expect("a parsed image has offsets");
                prop_assert!(off < bytes.len() as u64, "{:?}", f);
            }
        }

        /// Hostile numbers anywhere: no panic, no overflow.
        #[test]
        fn extreme_values_do_not_panic(
            page_size in prop_oneof![Just(0u32), Just(1), Just(4096), Just(65536), any::<u32>()],
            vmas in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..8),
            runs in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<bool>()), 0..8),
            brk in any::<u64>(),
            signos in proptest::collection::vec(any::<u32>(), 0..4),
            xsave_size in any::<u32>(),
            ppid in any::<u32>(),
            fds in proptest::collection::vec(any::<u32>(), 0..4),
        ) {
            let mut img = good();
            img.header.page_size = page_size;
            img.header.xsave_size = xsave_size;
            img.processes[1].process.ppid = ppid;
            let p = p0(&mut img);
            p.vmas = vmas
                .iter()
                .map(|&(s, e, f)| Vma { start: s, end: e, flags: f, ..p.vmas[0].clone() })
                .collect();
            p.pages.clear();
            p.zero_runs.clear();
            for &(addr, nr, stored) in &runs {
                if stored {
                    p.pages.push(PageRun { pid: 100, addr, nr_pages: nr, data: Blob::from(vec![1u8; 64]) });
                } else {
                    p.zero_runs.push(ZeroRun { pid: 100, addr, nr_pages: nr });
                }
            }
            p.mm.as_mut().unwrap().brk = brk;
            p.sigactions.as_mut().unwrap().actions = signos
                .iter()
                .map(|&signo| SigAction { signo, ..SigAction::default() })
                .collect();
            for (i, &n) in fds.iter().enumerate() {
                if let Some(f) = p.fds.get_mut(i) {
                    f.fd = n;
                }
            }
            let report = validate(&img, None);
            prop_assert_eq!(report.errors + report.warnings, report.findings.len());
        }
    }
}

#[test]
fn inotify_and_memfd_state_rules() {
    use crate::record::fd::{FdState, InotifyWatch, MFD_ALLOW_SEALING};
    let mut img = good();
    let mut ino = fd(100, 30, FdKind::Inotify, "anon_inode:inotify", 0);
    let watch = |path: &str| InotifyWatch {
        wd: 1,
        mask: 0x100,
        dev: 0x803,
        ino: 7,
        path: path.as_bytes().to_vec(),
    };
    ino.contents = Blob::from(FdState::Inotify(vec![watch("/srv")]).encode());
    let mut mem = fd(100, 31, FdKind::Memfd, "/memfd:x (deleted)", 77);
    let memfd = |flags, seals| FdState::Memfd {
        flags,
        seals,
        size: 10,
        name: b"x".to_vec(),
        extents: vec![],
    };
    mem.contents = Blob::from(memfd(MFD_ALLOW_SEALING, 0x6).encode());
    p0(&mut img).fds.extend([ino, mem]);
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");

    let mut bad = img.clone();
    p0(&mut bad).fds[3].contents = Blob::from(FdState::Inotify(vec![watch("srv")]).encode());
    expect(&bad, "path-not-absolute", Severity::Warning);
    let mut bad = img.clone();
    p0(&mut bad).fds[4].contents = Blob::from(memfd(0, 0x100).encode());
    expect(&bad, "bad-fd-state", Severity::Error);
    let mut bad = img;
    p0(&mut bad).fds[4].contents = Blob::from(vec![0u8; 15]);
    expect(&bad, "bad-fd-state", Severity::Error);
}

#[test]
fn timers_rules() {
    use crate::record::timers::{Itimer, Notify, PosixTimer, Timers, Which};
    let posix = |id, notify, signo, tid| PosixTimer {
        id,
        clockid: 1,
        notify,
        signo,
        tid,
        overrun: 0,
        sigval: 0,
        value_ns: 0,
        interval_ns: 0,
    };
    let mut img = good();
    p0(&mut img).timers = Some(Timers {
        pid: 100,
        itimers: vec![Itimer {
            which: Which::Real,
            value_ns: 5,
            interval_ns: 10,
        }],
        posix: vec![
            posix(0, Notify::Signal, 14, 0),
            posix(3, Notify::ThreadId, 10, 101),
            posix(4, Notify::None, 0, 0),
        ],
    });
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");
    let t = |img: &mut Image<'static>| p0(img).timers.as_mut().unwrap().clone();
    let set = |img: &mut Image<'static>, v: Timers| p0(img).timers = Some(v);

    let mut bad = img.clone();
    let mut v = t(&mut bad);
    v.itimers.push(v.itimers[0]);
    set(&mut bad, v);
    expect(&bad, "duplicate-itimer", Severity::Error);
    let mut bad = img.clone();
    let mut v = t(&mut bad);
    v.itimers[0].value_ns = 0;
    set(&mut bad, v);
    expect(&bad, "itimer-disarmed", Severity::Error);
    let mut bad = img.clone();
    let mut v = t(&mut bad);
    v.posix[1].id = 0;
    set(&mut bad, v);
    expect(&bad, "duplicate-timer-id", Severity::Error);
    let mut bad = img.clone();
    let mut v = t(&mut bad);
    v.posix[0].signo = 65;
    set(&mut bad, v);
    let f = expect(&bad, "signo-out-of-range", Severity::Error);
    assert_eq!(f.field, "posix.signo");
    let mut bad = img.clone();
    let mut v = t(&mut bad);
    v.posix[1].tid = 555;
    set(&mut bad, v);
    expect(&bad, "timer-thread-missing", Severity::Error);
    let mut bad = img;
    let mut v = t(&mut bad);
    v.pid = 200;
    set(&mut bad, v);
    expect(&bad, "pid-mismatch", Severity::Error);
}

#[test]
fn locks_rules() {
    use crate::record::locks::{Lock, LockKind, LockType, Locks};
    let mut img = good();
    let have = p0(&mut img).fds[0].fd;
    let lock = |kind, start, len| Lock {
        fd: have,
        kind,
        lock_type: LockType::Write,
        start,
        len,
    };
    p0(&mut img).locks = Some(Locks {
        pid: 100,
        locks: vec![lock(LockKind::Flock, 0, 0), lock(LockKind::Posix, 10, 10)],
    });
    let report = validate(&img, None);
    assert!(report.findings.is_empty(), "{report:#?}");
    let mut bad = img.clone();
    p0(&mut bad).locks.as_mut().unwrap().locks[0].fd = 999;
    let f = expect(&bad, "lock-fd-missing", Severity::Error);
    assert_eq!(f.field, "locks.fd");
    let mut bad = img.clone();
    p0(&mut bad).locks.as_mut().unwrap().locks[0].len = 5;
    expect(&bad, "bad-lock-range", Severity::Error);
    let mut bad = img;
    p0(&mut bad).locks.as_mut().unwrap().locks[1].start = u64::MAX - 2;
    expect(&bad, "bad-lock-range", Severity::Error);
}

/// `good()` with a 2-page shared memory segment 9 attached at 0x7e00_0000_0000 by process 100,
/// a semaphore set and a message queue.
fn with_ipc() -> Image<'static> {
    use crate::record::ipc::IpcPerm;
    use crate::record::msg::{Message, MsgQueue};
    use crate::record::sem::{Sem, SemSet};
    use crate::record::shm::Shm;
    let mut img = good();
    let perm = |id, key| IpcPerm {
        id,
        key,
        mode: 0o600,
        ..IpcPerm::default()
    };
    img.shm_segments.push(Shm {
        perm: perm(9, 0x1234),
        size: 2 * PS - 100,
        cpid: 100,
        lpid: 100,
        data: Blob::from(b"data".to_vec()),
    });
    img.sem_sets.push(SemSet {
        perm: perm(3, 0x1234),
        sems: vec![Sem { value: 1, pid: 100 }; 2],
    });
    img.msg_queues.push(MsgQueue {
        perm: perm(4, 0),
        qbytes: 16,
        lspid: 100,
        lrpid: 0,
        messages: vec![Message {
            mtype: 1,
            text: Blob::from(b"hello".to_vec()),
        }],
    });
    let mut v = vma(
        100,
        VmaKind::SysvShm,
        0x7e00_0000_0000,
        0x7e00_0000_2000,
        PROT_READ | PROT_WRITE,
        "/SYSV00001234",
    );
    v.flags = MAP_SHARED;
    v.ino = 9;
    let p = p0(&mut img);
    let at = p.vmas.partition_point(|w| w.start < v.start);
    p.vmas.insert(at, v);
    img
}

fn shm_vma<'a>(img: &'a mut Image<'static>) -> &'a mut Vma {
    p0(img)
        .vmas
        .iter_mut()
        .find(|v| v.kind == VmaKind::SysvShm)
        .expect("the SYSV_SHM VMA")
}

#[test]
fn ipc_objects_are_valid() {
    let report = validate(&with_ipc(), None);
    assert!(report.findings.is_empty(), "{report:#?}");
}

#[test]
fn sysv_shm_mapping_names_a_segment() {
    let mut img = with_ipc();
    img.shm_segments[0].perm.id = 10;
    let f = expect(&img, "shm-missing", Severity::Error);
    assert_eq!((f.record, f.pid, f.field), ("VMA", Some(100), "ino"));
    let mut img = with_ipc();
    shm_vma(&mut img).pgoff = PS;
    expect(&img, "vma-outside-shm", Severity::Error);
    let mut img = with_ipc();
    shm_vma(&mut img).flags = MAP_PRIVATE;
    expect(&img, "sysv-shm-not-shared", Severity::Error);
}

#[test]
fn ipc_ids_and_keys_are_unique() {
    let mut img = with_ipc();
    let again = img.msg_queues[0].clone();
    img.msg_queues.push(again);
    let f = expect(&img, "duplicate-ipc-id", Severity::Error);
    assert_eq!((f.record, f.index, f.field), ("MSG", Some(1), "id"));
    let mut img = with_ipc();
    let mut other = img.sem_sets[0].clone();
    other.perm.id = 8;
    img.sem_sets.push(other);
    expect(&img, "duplicate-ipc-key", Severity::Error);
    let mut img = with_ipc();
    img.sem_sets[0].perm.id = 1 << 31;
    expect(&img, "bad-ipc-id", Severity::Error);
}

#[test]
fn ipc_values_in_their_domains() {
    let mut img = with_ipc();
    img.sem_sets[0].sems[1].value = 40000;
    let f = expect(&img, "bad-sem-value", Severity::Error);
    assert_eq!((f.record, f.field), ("SEM", "sems.value"));
    let mut img = with_ipc();
    img.msg_queues[0].messages[0].mtype = 0;
    expect(&img, "bad-msg-type", Severity::Error);
    let mut img = with_ipc();
    img.msg_queues[0].qbytes = 4;
    expect(&img, "msg-over-qbytes", Severity::Error);
    let mut img = with_ipc();
    img.shm_segments[0].size = 2;
    let report = validate(&img, None);
    assert!(report.has("shm-data-over-size") && report.has("vma-outside-shm"));
    let mut img = with_ipc();
    img.shm_segments[0].size = 0;
    img.shm_segments[0].data = Blob::default();
    let report = validate(&img, None);
    assert!(report.has("bad-shm-size"));
}

#[test]
fn pages_in_a_sysv_shm_mapping_are_a_warning() {
    let mut img = with_ipc();
    p0(&mut img).pages.push(PageRun {
        pid: 100,
        addr: 0x7e00_0000_0000,
        nr_pages: 1,
        data: Blob::from(vec![1u8; PS as usize]),
    });
    let f = expect(&img, "pages-in-sysv-shm", Severity::Warning);
    assert_eq!((f.record, f.field), ("PAGES", "addr"));
}

/// `good()` with a connected Unix pair (fds 10 and 11 of process 100, a message queued on
/// each end) and an SCM record passing an eventfd and credentials with the message on
/// inode 900.
fn with_scm() -> Image<'static> {
    use crate::record::fd::FdState;
    use crate::record::scm::{Scm, SCM_CREDENTIALS};
    let mut img = good();
    for (n, ino, peer) in [(10, 900u64, 901u64), (11, 901, 900)] {
        let mut f = fd(100, n, FdKind::Unix, "socket:", ino);
        f.contents = Blob::from(
            FdState::Unix {
                sock_type: 1,
                peer,
                queue: vec![b"x".to_vec()],
            }
            .encode(),
        );
        p0(&mut img).fds.push(f);
    }
    let mut ev = fd(0, 0, FdKind::Eventfd, "anon_inode:[eventfd]", 0);
    ev.contents = Blob::from(FdState::Eventfd { count: 3, flags: 0 }.encode());
    img.scm.push(Scm {
        socket: 900,
        message: 0,
        flags: SCM_CREDENTIALS,
        pid: 100,
        uid: 0,
        gid: 0,
        files: vec![ev],
    });
    img
}

#[test]
fn scm_records_name_a_queued_message_once() {
    let img = with_scm();
    let r = validate(&img, None);
    assert!(r.is_valid(), "{:?}", r.findings);
    let mut img = with_scm();
    img.scm[0].socket = 5;
    expect(&img, "scm-socket-missing", Severity::Error);
    let mut img = with_scm();
    img.scm[0].message = 1;
    let f = expect(&img, "scm-message-out-of-range", Severity::Error);
    assert_eq!((f.record, f.field), ("SCM", "message"));
    let mut img = with_scm();
    img.scm.push(img.scm[0].clone());
    expect(&img, "duplicate-scm", Severity::Error);
    let mut img = with_scm();
    img.scm[0].flags = 0;
    expect(&img, "bad-scm-credentials", Severity::Error);
    img.scm[0].files.clear();
    img.scm[0].pid = 0;
    expect(&img, "scm-empty", Severity::Error);
}

#[test]
fn scm_files_are_fd_layouts_that_can_travel() {
    use crate::record::fd::{EpollEntry, FdState};
    let mut img = with_scm();
    img.scm[0].files[0].fd = 3;
    let f = expect(&img, "bad-scm-file", Severity::Error);
    assert_eq!(f.field, "files.pid");
    let mut img = with_scm();
    img.scm[0].files[0].contents = Blob::from(vec![1u8, 2]);
    let f = expect(&img, "bad-fd-state", Severity::Error);
    assert_eq!((f.record, f.field), ("SCM", "files.contents"));
    let mut img = with_scm();
    let mut ep = fd(0, 1, FdKind::Epoll, "anon_inode:[eventpoll]", 0);
    ep.contents = Blob::from(
        FdState::Epoll(vec![EpollEntry {
            fd: 0,
            events: 1,
            data: 0,
        }])
        .encode(),
    );
    img.scm[0].files.push(ep);
    let f = expect(&img, "bad-scm-file", Severity::Error);
    assert_eq!(f.field, "files.kind");
    let mut img = with_scm();
    img.scm[0].files[0] = fd(0, 0, FdKind::Pipe, "pipe:[7000]", 7000);
    expect(&img, "pipe-data-missing", Severity::Error);
    // A socket in flight whose own queue has files in flight.
    let mut img = with_scm();
    let mut s = img.process(100).unwrap().fds.last().unwrap().clone();
    (s.pid, s.fd) = (0, 1);
    p0(&mut img).fds.pop();
    img.scm[0].files.push(s);
    img.scm.push(crate::record::scm::Scm {
        socket: 901,
        message: 0,
        flags: crate::record::scm::SCM_CREDENTIALS,
        ..Default::default()
    });
    let r = validate(&img, None);
    assert!(!r.has("unix-peer-missing"), "{:?}", r.findings);
    assert!(r.has("bad-scm-file") && r.has("scm-socket-missing"));
}
