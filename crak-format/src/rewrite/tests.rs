//! Rewrites of a small valid model: XSAVE components kept, moved and dropped; a vDSO replaced
//! by a jump table or stubs; every refusal leaves the image unchanged.

use super::*;
use crate::edit::tests::{assert_valid, image};
use crate::record::header::SpecialMapping;
use crate::record::vma::{Vma, VmaKind, MAP_PRIVATE, PROT_EXEC, PROT_READ};

const VDSO: u64 = 0x7ffd_0000_4000;

/// A CPU with x87, SSE, AVX (at 576) and opmask (at `opmask_at`).
fn cpu(features: u64, size: u32, opmask_at: u32) -> KernelProfile {
    KernelProfile {
        format: PROFILE_FORMAT.into(),
        kernel_release: "6.1".into(),
        page_size: 4096,
        xsave_features: features,
        xsave_size: size,
        xsave_components: vec![
            XsaveComponent {
                index: 2,
                offset: 576,
                size: 256,
            },
            XsaveComponent {
                index: 5,
                offset: opmask_at,
                size: 64,
            },
        ],
        special_mappings: vec![SpecialMapping {
            kind: VmaKind::Vdso,
            start: VDSO,
            end: VDSO + 0x2000,
        }],
        vdso: None,
        vdso_symbols: Vec::new(),
    }
}

/// The test image with XSAVE state of features 0x27 (AVX at 576 filled with 0xaa) and xstate_bv `bv`,
/// and a 2-page vDSO.
fn with_xsave(bv: u64) -> Image<'static> {
    let mut img = image();
    img.header.xsave_features = 0x27;
    img.header.xsave_size = 1152;
    let mut area = vec![0u8; 1152];
    area[0] = 0x7f; // FCW
    area[576..832].fill(0xaa);
    area[1088..1152].fill(0xbb);
    area[512..520].copy_from_slice(&bv.to_le_bytes());
    let x = &mut img.processes[0].xsaves[0];
    x.xstate_bv = bv;
    x.area = Blob::from(area);
    img.processes[0].vmas.push(Vma {
        pid: 100,
        kind: VmaKind::Vdso,
        start: VDSO,
        end: VDSO + 0x2000,
        prot: PROT_READ | PROT_EXEC,
        flags: MAP_PRIVATE,
        madvise: 0,
        pgoff: 0,
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
        path: "[vdso]".into(),
    });
    img
}

#[test]
fn same_host_changes_nothing() {
    let mut img = with_xsave(0x7);
    let before = img.clone();
    let t = cpu(0x27, 1152, 1088);
    assert!(rewrite(&mut img, &t, None).unwrap().is_empty());
    assert_eq!(img, before);
}

#[test]
fn a_component_in_init_state_is_dropped_and_avx_kept() {
    let mut img = with_xsave(0x7);
    let src = cpu(0x27, 1152, 1088);
    let t = cpu(0x7, 832, 0);
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(
        done.iter().any(|d| d.contains("dropped AVX-512 opmask")),
        "{done:?}"
    );
    let x = &img.processes[0].xsaves[0];
    assert_eq!((x.xstate_bv, x.area.len()), (0x7, 832));
    assert_eq!(x.area.as_bytes()[0], 0x7f);
    assert!(x.area.as_bytes()[576..832].iter().all(|&b| b == 0xaa));
    assert_eq!(
        (img.header.xsave_features, img.header.xsave_size),
        (0x7, 832)
    );
    assert!(img
        .notes
        .iter()
        .any(|n| n.key.as_bytes() == NOTE_KEY.as_bytes()));
    assert_valid(&img);
}

#[test]
fn a_component_moves_to_the_targets_offset() {
    // Same features, opmask elsewhere (as between vendors).
    let mut img = with_xsave(0x27);
    let src = cpu(0x27, 1152, 1088);
    let t = cpu(0x27, 896, 832);
    rewrite(&mut img, &t, Some(&src)).unwrap();
    let a = img.processes[0].xsaves[0].area.as_bytes().to_vec();
    assert_eq!(a.len(), 896);
    assert!(a[832..896].iter().all(|&b| b == 0xbb));
    assert_valid(&img);
}

#[test]
fn a_component_in_use_is_refused_by_name() {
    let mut img = with_xsave(0x27);
    let before = img.clone();
    let src = cpu(0x27, 1152, 1088);
    let e = rewrite(&mut img, &cpu(0x7, 832, 0), Some(&src)).unwrap_err();
    assert!(
        e.0.contains("AVX-512 opmask") && e.0.contains("thread 100"),
        "{e}"
    );
    let e = rewrite(&mut img, &cpu(0x7, 832, 0), None).unwrap_err();
    assert!(e.0.contains("--source"), "{e}");
    assert_eq!(img, before);
}

#[test]
fn another_page_size_is_refused() {
    let mut img = with_xsave(0x7);
    let mut t = cpu(0x27, 1152, 1088);
    t.page_size = 16384;
    assert!(rewrite(&mut img, &t, None).is_err());
}

fn sym(name: &str, offset: u64, size: u64) -> VdsoSymbol {
    VdsoSymbol {
        name: name.into(),
        offset,
        size,
    }
}

/// The capture kernel's 2-page vDSO (0xcc filled) with `symbols`.
fn source_with(symbols: Vec<VdsoSymbol>) -> KernelProfile {
    let mut src = cpu(0x27, 1152, 1088);
    let mut code = vec![0xccu8; 0x2000];
    code[..4].copy_from_slice(b"\x7fELF");
    src.vdso = Some(Blob::from(code));
    src.vdso_symbols = symbols;
    src
}

/// Where `img`'s jump at `at` leads: `movabs rax, imm; jmp rax` or `jmp rel32`.
fn jump_target(img: &Image<'_>, at: u64) -> Option<u64> {
    let m = crate::edit::read_memory(img, None, at, 12).ok()?;
    match m.as_slice() {
        [0x48, 0xb8, imm @ .., 0xff, 0xe0] => Some(u64::from_le_bytes(imm.try_into().ok()?)),
        [0xe9, d0, d1, d2, d3, ..] => {
            Some((at as i64 + 5 + i64::from(i32::from_le_bytes([*d0, *d1, *d2, *d3]))) as u64)
        }
        _ => None,
    }
}

fn plan_note(img: &Image<'_>) -> serde_json::Value {
    let n = img
        .notes
        .iter()
        .find(|n| n.key.as_bytes() == VDSO_PLAN_KEY.as_bytes())
        .expect("plan note");
    serde_json::from_slice(n.value.as_bytes()).expect("plan JSON")
}

/// A target kernel with a 3-page vDSO and a 4-page vvar below it.
fn bigger_target(symbols: Vec<VdsoSymbol>) -> KernelProfile {
    let mut t = cpu(0x27, 1152, 1088);
    let base = 0x7fff_1234_0000;
    t.special_mappings = vec![
        SpecialMapping {
            kind: VmaKind::Vvar,
            start: base,
            end: base + 0x4000,
        },
        SpecialMapping {
            kind: VmaKind::Vdso,
            start: base + 0x4000,
            end: base + 0x7000,
        },
    ];
    t.vdso_symbols = symbols;
    t
}

#[test]
fn a_different_vdso_becomes_a_jump_table_to_the_planned_target_vdso() {
    let mut img = with_xsave(0x7);
    let t = bigger_target(vec![
        sym("__vdso_clock_gettime", 0x1200, 0x300),
        sym("clock_gettime", 0x1200, 0x300),
        sym("__vdso_time", 0x1600, 0x40),
    ]);
    // Without the capture kernel's vDSO the rewrite is refused.
    let e = rewrite(&mut img.clone(), &t, None).unwrap_err();
    assert!(
        e.0.contains("[vdso] is 8 KiB in the image, 12 KiB on the target"),
        "{e}"
    );
    let src = source_with(vec![
        sym("__vdso_clock_gettime", 0x100, 0x80),
        sym("clock_gettime", 0x100, 0x80),
        // Only 6 bytes long: a rel32 jump.
        sym("__vdso_time", 0x180, 6),
        // Not on the target: a system-call stub.
        sym("__vdso_getcpu", 0x200, 0x20),
        sym("__vdso_sgx_enter_enclave", 0x1000, 0x40),
    ]);
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(
        done.iter()
            .any(|d| d.contains("jump table (2 jumps, 2 system-call stubs)")),
        "{done:?}"
    );
    let p = &img.processes[0];
    let old = p.vmas.iter().find(|v| v.start == VDSO).unwrap();
    assert_eq!((old.kind, old.prot), (VmaKind::Anon, PROT_READ | PROT_EXEC));
    let nv = p.vmas.iter().find(|v| v.kind == VmaKind::Vdso).unwrap();
    let vv = p.vmas.iter().find(|v| v.kind == VmaKind::Vvar).unwrap();
    assert_eq!((nv.end - nv.start, vv.end - vv.start), (0x3000, 0x4000));
    assert_eq!(nv.start - vv.start, 0x4000);
    for v in &p.vmas {
        if v.start != nv.start && v.start != vv.start {
            assert!(
                v.end + 4096 <= vv.start || v.start >= nv.end + 4096,
                "{v:?}"
            );
        }
    }
    assert_eq!(jump_target(&img, VDSO + 0x100), Some(nv.start + 0x1200));
    assert_eq!(
        crate::edit::read_memory(&img, None, VDSO + 0x180, 1).unwrap(),
        [0xe9]
    );
    assert_eq!(jump_target(&img, VDSO + 0x180), Some(nv.start + 0x1600));
    let mem = crate::edit::read_memory(&img, None, VDSO + 0x200, 8).unwrap();
    assert_eq!(mem, [0xb8, 0x35, 1, 0, 0, 0x0f, 0x05, 0xc3]);
    let mem = crate::edit::read_memory(&img, None, VDSO + 0x1000, 6).unwrap();
    assert_eq!(mem, [0xb8, 0xda, 0xff, 0xff, 0xff, 0xc3]);
    // The header describes the planned layout; the note lists every symbol.
    let mut hs: Vec<_> = img
        .header
        .special_mappings
        .iter()
        .map(|m| (m.kind, m.start, m.end))
        .collect();
    hs.sort_by_key(|m| m.1);
    assert_eq!(
        hs,
        [
            (VmaKind::Vvar, vv.start, vv.end),
            (VmaKind::Vdso, nv.start, nv.end)
        ]
    );
    let note = plan_note(&img);
    let syms = note[0]["symbols"].as_array().unwrap();
    assert_eq!(syms.len(), 5);
    let ct = syms.iter().find(|s| s["name"] == "clock_gettime").unwrap();
    assert_eq!(ct["old"], format!("{:#x}", VDSO + 0x100));
    assert_eq!(ct["new"], format!("{:#x}", nv.start + 0x1200));
    assert_eq!(ct["how"], "movabs");
    assert_valid(&img);
}

#[test]
fn a_vdso_function_too_short_for_any_jump_or_without_equivalent_is_refused() {
    let t = bigger_target(vec![sym("__vdso_time", 0x1600, 0x40)]);
    let mut img = with_xsave(0x7);
    let before = img.clone();
    let src = source_with(vec![sym("__vdso_time", 0x180, 4)]);
    let e = rewrite(&mut img, &t, Some(&src)).unwrap_err();
    assert!(e.0.contains("__vdso_time is 4 bytes"), "{e}");
    let src = source_with(vec![sym("__vdso_future", 0x180, 0x40)]);
    let e = rewrite(&mut img, &t, Some(&src)).unwrap_err();
    assert!(e.0.contains("__vdso_future"), "{e}");
    // A target profile without its functions cannot be jumped to.
    let src = source_with(vec![sym("__vdso_time", 0x180, 0x40)]);
    let e = rewrite(&mut img, &bigger_target(Vec::new()), Some(&src)).unwrap_err();
    assert!(e.0.contains("lists no vDSO functions"), "{e}");
    assert_eq!(img, before);
}

#[test]
fn a_target_without_vdso_gets_system_call_stubs() {
    let mut img = with_xsave(0x7);
    let mut t = cpu(0x27, 1152, 1088);
    t.special_mappings.clear();
    let src = source_with(vec![
        sym("__vdso_clock_gettime", 0x100, 0),
        sym("clock_gettime", 0x100, 0),
        sym("__vdso_time", 0x180, 0),
    ]);
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(
        done.iter().any(|d| d.contains("2 system-call stubs")),
        "{done:?}"
    );
    assert!(img.processes[0]
        .vmas
        .iter()
        .all(|v| v.kind != VmaKind::Vdso));
    let mem = crate::edit::read_memory(&img, None, VDSO + 0x100, 8).unwrap();
    assert_eq!(mem, [0xb8, 228, 0, 0, 0, 0x0f, 0x05, 0xc3]);
    assert_valid(&img);
}

#[test]
fn a_default_pkru_is_dropped_and_a_restrictive_one_refused() {
    let mut src = cpu(0x227, 1152 + 8, 1088);
    src.xsave_components.push(XsaveComponent {
        index: 9,
        offset: 1152,
        size: 8,
    });
    let target = cpu(0x27, 1152, 1088);
    for (pkru, ok) in [(0x5555_5554u32, true), (0x5555_5555u32, false)] {
        let mut img = with_xsave(0x207);
        img.header.xsave_features = 0x227;
        img.header.xsave_size = 1160;
        let x = &mut img.processes[0].xsaves[0];
        let mut area = x.area.as_bytes().to_vec();
        area.resize(1160, 0);
        area[1152..1156].copy_from_slice(&pkru.to_le_bytes());
        x.area = Blob::from(area);
        let r = rewrite(&mut img, &target, Some(&src));
        if ok {
            assert!(r.unwrap().iter().any(|d| d.contains("dropped PKRU")));
            assert_eq!(img.processes[0].xsaves[0].xstate_bv, 0x7);
            assert_valid(&img);
        } else {
            assert!(r.unwrap_err().0.contains("PKRU"));
        }
    }
}

#[test]
fn same_layout_with_moved_functions_also_gets_a_jump_table() {
    let mut img = with_xsave(0x7);
    let src = source_with(vec![sym("__vdso_time", 0x100, 0x40)]);
    let mut t = cpu(0x27, 1152, 1088);
    t.vdso_symbols = vec![sym("__vdso_time", 0x140, 0x40)];
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(done.iter().any(|d| d.contains("other offsets")), "{done:?}");
    let nv = img.processes[0]
        .vmas
        .iter()
        .find(|v| v.kind == VmaKind::Vdso)
        .map(|v| v.start)
        .unwrap();
    assert_ne!(nv, VDSO);
    assert_eq!(jump_target(&img, VDSO + 0x100), Some(nv + 0x140));
    assert_valid(&img);
    // The same offsets: nothing to do.
    let mut img = with_xsave(0x7);
    t.vdso_symbols = src.vdso_symbols.clone();
    assert!(rewrite(&mut img, &t, Some(&src)).unwrap().is_empty());
}

#[test]
fn a_thread_inside_the_vdso_is_refused() {
    let mut img = with_xsave(0x7);
    img.processes[0].threads[0].gpr.rip = VDSO + 0x10;
    let mut t = cpu(0x27, 1152, 1088);
    t.special_mappings.clear();
    let mut src = cpu(0x27, 1152, 1088);
    src.vdso = Some(Blob::from(vec![0x90u8; 0x2000]));
    let e = rewrite(&mut img, &t, Some(&src)).unwrap_err();
    assert!(e.0.contains("inside the vDSO"), "{e}");
}
