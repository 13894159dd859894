//! Each edit on a small valid model: the result says what was asked, the validator accepts it,
//! and a refused edit leaves the image unchanged.

use super::*;
use crate::bytes::{Blob, ByteString};
use crate::image::{Image, Process};
use crate::record::creds::Creds;
use crate::record::fd::{Fd, FdKind};
use crate::record::header::{Header, ARCH_X86_64};
use crate::record::mm::Mm;
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::pipe_data::PipeData;
use crate::record::process::ProcessRecord;
use crate::record::thread::Thread;
use crate::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use crate::record::xsave::Xsave;

const PS: u64 = 4096;
const HEAP: u64 = 0x60_0000;
const STACK: u64 = 0x7ffc_0000_0000;
const STACK_END: u64 = STACK + 2 * PS;
const ENV: &[u8] = b"HOME=/root\0LANG=C\0TERM=xterm\0";

fn vma(kind: VmaKind, start: u64, end: u64, path: &str) -> Vma {
    Vma {
        pid: 100,
        kind,
        start,
        end,
        prot: PROT_READ | PROT_WRITE,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: 0,
        ino: if kind == VmaKind::File { 7 } else { 0 },
        size: 0,
        mtime_ns: 0,
        path: path.into(),
    }
}

/// A process 100 with a file mapping, a 4-page heap (pages 0-1 stored, 2 zero, 3 unrecorded)
/// and a 2-page stack holding the envp array and the environment strings.
pub(crate) fn image() -> Image<'static> {
    let mut img = Image::new(Header {
        arch: ARCH_X86_64,
        page_size: PS as u32,
        capture_time_ns: 0,
        xsave_features: 3,
        xsave_size: 576,
        kernel_release: "6.0".into(),
        hostname: "h".into(),
        tool_version: "t".into(),
        special_mappings: Vec::new(),
    });
    let mut p = Process::new(ProcessRecord {
        pid: 100,
        ppid: 0,
        pgid: 100,
        sid: 1,
        comm: "app".into(),
        exe: "/opt/app/bin/app".into(),
        cwd: "/opt/app".into(),
        root: "/".into(),
        environ: ByteString(ENV.to_vec()),
        tids: vec![100],
        ..ProcessRecord::default()
    });
    let env_start = STACK_END - 64;
    p.creds = Some(Creds {
        pid: 100,
        ..Creds::default()
    });
    p.mm = Some(Mm {
        pid: 100,
        start_brk: HEAP,
        brk: HEAP + 4 * PS,
        start_stack: STACK + PS,
        arg_start: env_start,
        arg_end: env_start,
        env_start,
        env_end: env_start + ENV.len() as u64,
        ..Mm::default()
    });
    p.threads.push(Thread {
        pid: 100,
        tid: 100,
        ..Thread::default()
    });
    p.xsaves.push(Xsave {
        pid: 100,
        tid: 100,
        xstate_bv: 3,
        area: Blob::from(vec![0u8; 576]),
    });
    p.fds.push(Fd {
        pid: 100,
        fd: 3,
        fd_flags: 0,
        kind: FdKind::Pipe,
        open_flags: 1,
        pos: 0,
        dev: 0,
        ino: 555,
        rdev: 0,
        size: 0,
        mtime_ns: 0,
        mode: 0o10600,
        deleted: false,
        path: "pipe:[555]".into(),
        contents: Blob::default(),
        description: 0,
    });
    p.fds.push(Fd {
        fd: 4,
        kind: FdKind::Reg,
        open_flags: 0o2002,
        ino: 9,
        mode: 0o100644,
        path: "/opt/app/data".into(),
        ..p.fds[0].clone()
    });
    p.vmas = vec![
        vma(VmaKind::File, 0x40_0000, 0x40_1000, "/opt/app/bin/app"),
        vma(VmaKind::Heap, HEAP, HEAP + 4 * PS, "[heap]"),
        vma(VmaKind::Stack, STACK, STACK_END, "[stack]"),
    ];
    let mut heap = vec![0u8; 2 * PS as usize];
    heap[0] = 1;
    heap[PS as usize] = 2;
    p.pages.push(PageRun {
        pid: 100,
        addr: HEAP,
        nr_pages: 2,
        data: Blob::from(heap),
    });
    p.zero_runs.push(ZeroRun {
        pid: 100,
        addr: HEAP + 2 * PS,
        nr_pages: 1,
    });
    // Stack: envp array (3 pointers and NULL) in the first page, strings at the end of the second.
    let mut stack = vec![0u8; 2 * PS as usize];
    stack[8..16].copy_from_slice(&1u64.to_le_bytes()); // argc-like word
    let mut off = 0u64;
    for (i, s) in ENV.split(|&b| b == 0).take(3).enumerate() {
        let at = 16 + i * 8;
        stack[at..at + 8].copy_from_slice(&(env_start + off).to_le_bytes());
        off += s.len() as u64 + 1;
    }
    let e = (env_start - STACK) as usize;
    stack[e..e + ENV.len()].copy_from_slice(ENV);
    p.pages.push(PageRun {
        pid: 100,
        addr: STACK,
        nr_pages: 2,
        data: Blob::from(stack),
    });
    img.processes.push(p);
    img.pipes.push(PipeData {
        pipe_id: 555,
        capacity: 65536,
        data: Blob::from(b"abc".to_vec()),
    });
    img
}

pub(crate) fn assert_valid(img: &Image<'_>) {
    let r = crate::validate::validate(img, None);
    assert!(r.is_valid(), "{:#?}", r.findings);
    assert_eq!(r.warnings, 0, "{:#?}", r.findings);
    let bytes = crate::write::to_vec(img).unwrap();
    assert_eq!(crate::read::parse(&bytes).unwrap().image, *img);
}

#[test]
fn the_model_is_valid() {
    assert_valid(&image());
}

#[test]
fn poke_splits_a_stored_run() {
    let mut img = image();
    assert_eq!(poke(&mut img, None, HEAP + PS + 8, b"xyz").unwrap(), 1);
    let got = read_memory(&img, None, HEAP + PS, 12).unwrap();
    assert_eq!(got, b"\x02\0\0\0\0\0\0\0xyz\0");
    assert_eq!(read_memory(&img, None, HEAP, 1).unwrap(), [1]);
    let p = &img.processes[0];
    let heap_runs: Vec<_> = p
        .pages
        .iter()
        .filter(|r| r.addr < STACK)
        .map(|r| (r.addr, r.nr_pages))
        .collect();
    assert_eq!(heap_runs, [(HEAP, 1), (HEAP + PS, 1)]);
    assert_valid(&img);
}

#[test]
fn poke_across_zero_and_unrecorded_pages() {
    let mut img = image();
    let at = HEAP + 3 * PS - 2;
    assert_eq!(poke(&mut img, None, at, b"abcd").unwrap(), 2);
    assert_eq!(read_memory(&img, None, at, 4).unwrap(), b"abcd");
    assert!(img.processes[0]
        .zero_runs
        .iter()
        .all(|z| z.addr != HEAP + 2 * PS));
    assert_valid(&img);
}

#[test]
fn a_page_poked_to_zeros_becomes_a_zero_run() {
    let mut img = image();
    assert_eq!(poke(&mut img, None, HEAP, &[0]).unwrap(), 1);
    let p = &img.processes[0];
    assert!(p
        .zero_runs
        .iter()
        .any(|z| z.addr == HEAP && z.nr_pages == 1));
    assert!(p.pages.iter().all(|r| r.addr != HEAP));
    assert_valid(&img);
}

#[test]
fn an_unchanged_poke_changes_nothing() {
    let mut img = image();
    assert_eq!(poke(&mut img, None, HEAP + 3 * PS, &[0; 16]).unwrap(), 0);
    assert_eq!(img, image());
}

#[test]
fn poke_outside_memory_or_into_the_file_is_refused() {
    let mut img = image();
    assert!(matches!(
        poke(&mut img, None, 0x1000, b"x"),
        Err(EditError::Unmapped {
            pid: 100,
            addr: 0x1000
        })
    ));
    let e = poke(&mut img, None, 0x40_0010, b"x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("comes from the file") || e.contains("come from the file"),
        "{e}"
    );
    // Spilling past the heap's end is refused as a whole.
    assert!(poke(&mut img, None, HEAP + 4 * PS - 1, b"xy").is_err());
    assert!(poke(&mut img, Some(7), HEAP, b"x").is_err());
    assert_eq!(img, image());
}

#[test]
fn set_reg_by_name_and_tid() {
    let mut img = image();
    set_reg(&mut img, None, None, "rip", 0x1234).unwrap();
    set_reg(&mut img, None, Some(100), "fs_base", 7).unwrap();
    let t = &img.processes[0].threads[0];
    assert_eq!((t.gpr.rip, t.gpr.fs_base), (0x1234, 7));
    assert!(matches!(
        set_reg(&mut img, None, None, "xmm0", 1),
        Err(EditError::NoRegister(_))
    ));
    assert!(matches!(
        set_reg(&mut img, None, Some(5), "rax", 1),
        Err(EditError::NoThread(5))
    ));
}

#[test]
fn set_pid_renames_every_record() {
    let mut img = image();
    set_pid(&mut img, None, 4242).unwrap();
    let p = &img.processes[0];
    assert_eq!((p.pid(), p.process.pgid, p.process.sid), (4242, 4242, 1));
    assert_eq!(p.process.tids, [4242]);
    assert_eq!((p.threads[0].tid, p.xsaves[0].tid), (4242, 4242));
    assert!(p.vmas.iter().all(|v| v.pid == 4242));
    assert!(p.pages.iter().all(|r| r.pid == 4242));
    assert_valid(&img);
    assert!(set_pid(&mut img, None, 0).is_err());
    assert!(set_pid(&mut img, None, 5_000_000).is_err());
}

#[test]
fn map_path_rewrites_unix_socket_path_names() {
    use crate::record::fd::{FdState, UnixMessage, UnixSocket};
    let mut img = image();
    let mut f = img.processes[0].fds[0].clone();
    f.fd = 9;
    f.kind = FdKind::UnixSocket;
    f.path = ByteString(b"socket:[5]".to_vec());
    f.ino = 5;
    let state = |name: &[u8], sender: &[u8]| {
        FdState::UnixSocket(UnixSocket {
            sock_type: 2,
            name: name.to_vec(),
            queue: vec![UnixMessage {
                sender: sender.to_vec(),
                data: b"x".to_vec(),
            }],
            ..UnixSocket::default()
        })
    };
    f.contents = Blob::from(state(b"/run/app/dg.sock", b"\0/run/app/abstract").encode());
    img.processes[0].fds.push(f);
    map_path(&mut img, b"/run/app", b"/run/app2", None).unwrap();
    let f = img.processes[0].fds.iter().find(|f| f.fd == 9).unwrap();
    assert_eq!(
        FdState::decode(f.kind, f.contents.as_bytes()),
        Ok(Some(state(b"/run/app2/dg.sock", b"\0/run/app/abstract")))
    );
    // A name that would not fit sun_path is refused, the image unchanged.
    let before = img.clone();
    let long = format!("/{}", "d".repeat(100));
    assert!(map_path(&mut img, b"/run", long.as_bytes(), None).is_err());
    assert_eq!(img, before);
}

#[test]
fn map_path_rewrites_whole_components_and_refreshes() {
    let mut img = image();
    let mut seen = Vec::new();
    let mut stat = |p: &[u8]| {
        seen.push(p.to_vec());
        Ok(FileStat {
            dev: 1,
            ino: 99,
            size: 5,
            mtime_ns: 6,
            mode: 0o100600,
            rdev: 0,
        })
    };
    let n = map_path(&mut img, b"/opt/app", b"/srv/app2", Some(&mut stat)).unwrap();
    assert_eq!(n, 4); // exe, cwd, the mapping, fd 4
    let p = &img.processes[0];
    assert_eq!(p.process.exe.as_bytes(), b"/srv/app2/bin/app");
    assert_eq!(p.process.cwd.as_bytes(), b"/srv/app2");
    assert_eq!(
        (p.vmas[0].path.as_bytes(), p.vmas[0].ino),
        (&b"/srv/app2/bin/app"[..], 99)
    );
    assert_eq!(
        (p.fds[1].path.as_bytes(), p.fds[1].size),
        (&b"/srv/app2/data"[..], 5)
    );
    assert_eq!(seen.len(), 2);
    assert_valid(&img);
    // `/opt/ap` is no whole-component prefix.
    assert!(map_path(&mut img, b"/srv/app", b"/x", None).is_err());
    let mut failing = |_: &[u8]| Err("No such file".to_string());
    let before = img.clone();
    assert!(map_path(&mut img, b"/srv", b"/gone", Some(&mut failing)).is_err());
    assert_eq!(img, before);
}

#[test]
fn drop_fd_makes_dev_null_and_drops_the_orphaned_pipe_data() {
    let mut img = image();
    let null = FileStat {
        dev: 5,
        ino: 4,
        rdev: 0x103,
        size: 0,
        mtime_ns: 1,
        mode: 0o20666,
    };
    drop_fd(&mut img, None, 3, null).unwrap();
    let f = &img.processes[0].fds[0];
    assert_eq!(
        (f.kind, f.rdev, f.path.as_bytes(), f.open_flags),
        (FdKind::Chr, 0x103, &b"/dev/null"[..], 1)
    );
    assert!(img.pipes.is_empty());
    assert_valid(&img);
    assert!(drop_fd(&mut img, None, 9, null).is_err());
}

#[test]
fn set_cwd_needs_an_absolute_path() {
    let mut img = image();
    set_cwd(&mut img, None, b"/tmp").unwrap();
    assert_eq!(img.processes[0].process.cwd.as_bytes(), b"/tmp");
    assert!(set_cwd(&mut img, None, b"tmp").is_err());
}

fn envp(img: &Image<'_>) -> Vec<Vec<u8>> {
    let words = read_memory(img, None, STACK + 16, 32).unwrap();
    words
        .chunks(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .take_while(|&a| a != 0)
        .map(|a| {
            let s = read_memory(img, None, a, 32).unwrap();
            s.split(|&b| b == 0).next().unwrap().to_vec()
        })
        .collect()
}

#[test]
fn set_env_rewrites_strings_pointers_and_records() {
    let mut img = image();
    set_env(&mut img, None, b"HOME", b"/").unwrap();
    let want = b"HOME=/\0LANG=C\0TERM=xterm\0";
    assert_eq!(img.processes[0].process.environ.as_bytes(), want);
    let mm = img.processes[0].mm.clone().unwrap();
    assert_eq!(mm.env_end - mm.env_start, want.len() as u64);
    assert_eq!(
        read_memory(&img, None, mm.env_start, want.len() as u64).unwrap(),
        want
    );
    assert_eq!(envp(&img), [&b"HOME=/"[..], b"LANG=C", b"TERM=xterm"]);
    assert_valid(&img);
    // A value of the same length stays in place.
    set_env(&mut img, None, b"TERM", b"vt100").unwrap();
    assert_eq!(envp(&img), [&b"HOME=/"[..], b"LANG=C", b"TERM=vt100"]);
    assert_eq!(
        img.processes[0].mm.as_ref().unwrap().env_start,
        mm.env_start
    );
    assert_valid(&img);
    // A longer block goes to a fresh mapping below the stack's growth room.
    let vmas = img.processes[0].vmas.len();
    set_env(&mut img, None, b"LANG", b"C.UTF-8").unwrap();
    assert_eq!(envp(&img), [&b"HOME=/"[..], b"LANG=C.UTF-8", b"TERM=vt100"]);
    let p = &img.processes[0];
    let m = p.mm.as_ref().unwrap();
    assert_eq!(p.vmas.len(), vmas + 1);
    assert!(m.env_start < STACK - (8 << 20) && m.env_start & (PS - 1) == 0);
    let block = b"HOME=/\0LANG=C.UTF-8\0TERM=vt100\0";
    assert_eq!(m.env_end - m.env_start, block.len() as u64);
    assert_eq!(
        read_memory(&img, None, m.env_start, block.len() as u64).unwrap(),
        block
    );
    assert_eq!(p.process.environ.as_bytes(), block);
    assert_valid(&img);
    let e = set_env(&mut img, None, b"NEW", b"1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the environment"), "{e}");
    assert!(set_env(&mut img, None, b"A=B", b"1").is_err());
}

mod never_panic {
    //! Edits and rewrites of arbitrary (mostly invalid) models return errors, never panic.
    use super::super::*;
    use crate::rewrite::{rewrite, KernelProfile, XsaveComponent, PROFILE_FORMAT};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn edits_of_arbitrary_images(
            mut img in crate::arbitrary::image(),
            addr in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 1..64),
            pid in any::<u32>(),
            features in any::<u64>(),
            size in 0u32..70000,
            offset in any::<u32>(),
            vdso_end in any::<u64>(),
        ) {
            let first = img.processes.first().map(|p| p.pid());
            let _ = poke(&mut img, None, addr, &data);
            if let Some(p) = img.processes.first() {
                let vma = p.vmas.first().map(|v| v.start);
                if let Some(start) = vma {
                    let _ = poke(&mut img, first, start.wrapping_add(addr % 8192), &data);
                    let _ = read_memory(&img, first, start, 8192);
                }
            }
            let _ = set_env(&mut img, None, b"HOME", b"/x");
            let _ = set_reg(&mut img, None, None, "rip", addr);
            let _ = map_path(&mut img, b"/", b"/y", None);
            let _ = drop_fd(&mut img, None, 0, FileStat::default());
            let _ = set_pid(&mut img, None, pid);
            let target = KernelProfile {
                format: PROFILE_FORMAT.into(),
                kernel_release: "x".into(),
                page_size: img.header.page_size,
                xsave_features: features,
                xsave_size: size,
                xsave_components: vec![XsaveComponent { index: 2, offset, size: 256 }],
                special_mappings: vec![crate::record::header::SpecialMapping {
                    kind: crate::record::vma::VmaKind::Vdso,
                    start: addr,
                    end: vdso_end,
                }],
                vdso: Some(crate::bytes::Blob::from(data.clone())),
                vdso_symbols: vec![crate::rewrite::VdsoSymbol { name: "time".into(), offset: addr, size: 0 }],
            };
            let _ = rewrite(&mut img, &target, Some(&target.clone()));
        }
    }
}

#[test]
fn edits_reach_files_and_credentials_in_flight() {
    use crate::record::fd::FdState;
    use crate::record::scm::{Scm, SCM_CREDENTIALS};
    let mut img = image();
    // A socket pair (fds 7, 8) whose end 7 holds a message passing a file under /srv and the
    // credentials of process 100.
    for (n, ino, peer) in [(7, 70u64, 80u64), (8, 80, 70)] {
        let mut s = img.processes[0].fds[0].clone();
        (s.fd, s.kind, s.ino, s.path) = (n, FdKind::Unix, ino, ByteString(b"socket:".to_vec()));
        s.contents = Blob::from(
            FdState::Unix {
                sock_type: 1,
                peer,
                queue: vec![b"m".to_vec()],
            }
            .encode(),
        );
        img.processes[0].fds.push(s);
    }
    let mut file = img.processes[0].fds[0].clone();
    (file.pid, file.fd, file.kind, file.ino) = (0, 0, FdKind::Reg, 33);
    file.path = ByteString(b"/srv/data/log".to_vec());
    img.scm.push(Scm {
        socket: 70,
        message: 0,
        flags: SCM_CREDENTIALS,
        pid: 100,
        uid: 0,
        gid: 0,
        files: vec![file],
    });
    assert_valid(&img);
    map_path(&mut img, b"/srv", b"/data", None).unwrap();
    assert_eq!(img.scm[0].files[0].path.as_bytes(), b"/data/data/log");
    set_pid(&mut img, None, 4242).unwrap();
    assert_eq!(img.scm[0].pid, 4242);
    assert_valid(&img);
}
