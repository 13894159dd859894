//! Rewrites of a small valid model: XSAVE components kept, moved and dropped; a vDSO replaced
//! by stubs; every refusal leaves the image unchanged.

use super::*;
use crate::edit::tests::{assert_valid, image};
use crate::record::header::SpecialMapping;
use crate::record::vma::{Vma, MAP_PRIVATE};

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

#[test]
fn a_different_vdso_becomes_system_call_stubs() {
    let mut img = with_xsave(0x7);
    let mut t = cpu(0x27, 1152, 1088);
    t.special_mappings[0].end = VDSO + 0x3000;
    // Without the capture kernel's vDSO the rewrite is refused.
    let e = rewrite(&mut img.clone(), &t, None).unwrap_err();
    assert!(
        e.0.contains("[vdso] is 8 KiB in the image, 12 KiB on the target"),
        "{e}"
    );
    let mut src = cpu(0x27, 1152, 1088);
    let mut code = vec![0xccu8; 0x2000];
    code[..4].copy_from_slice(b"\x7fELF");
    src.vdso = Some(Blob::from(code));
    let sym = |name: &str, offset| VdsoSymbol {
        name: name.into(),
        offset,
    };
    src.vdso_symbols = vec![
        sym("__vdso_clock_gettime", 0x100),
        sym("clock_gettime", 0x100),
        sym("__vdso_time", 0x180),
        sym("__vdso_sgx_enter_enclave", 0x1000),
    ];
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(
        done.iter().any(|d| d.contains("3 system-call stubs")),
        "{done:?}"
    );
    let v = img.processes[0]
        .vmas
        .iter()
        .find(|v| v.start == VDSO)
        .unwrap();
    assert_eq!((v.kind, v.prot), (VmaKind::Anon, PROT_READ | PROT_EXEC));
    let mem = crate::edit::read_memory(&img, None, VDSO + 0x100, 8).unwrap();
    assert_eq!(mem, [0xb8, 228, 0, 0, 0, 0x0f, 0x05, 0xc3]);
    let mem = crate::edit::read_memory(&img, None, VDSO + 0x1000, 6).unwrap();
    assert_eq!(mem, [0xb8, 0xda, 0xff, 0xff, 0xff, 0xc3]);
    assert_valid(&img);
    // An export no system call stands for is refused.
    let mut img = with_xsave(0x7);
    src.vdso_symbols.push(sym("__vdso_future", 0x1800));
    let e = rewrite(&mut img, &t, Some(&src)).unwrap_err();
    assert!(e.0.contains("__vdso_future"), "{e}");
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
fn same_layout_with_moved_functions_also_gets_stubs() {
    let mut img = with_xsave(0x7);
    let sym = |name: &str, offset| VdsoSymbol {
        name: name.into(),
        offset,
    };
    let mut src = cpu(0x27, 1152, 1088);
    src.vdso = Some(Blob::from(vec![0x90u8; 0x2000]));
    src.vdso_symbols = vec![sym("__vdso_time", 0x100)];
    let mut t = cpu(0x27, 1152, 1088);
    t.vdso_symbols = vec![sym("__vdso_time", 0x140)];
    let done = rewrite(&mut img, &t, Some(&src)).unwrap();
    assert!(done.iter().any(|d| d.contains("other offsets")), "{done:?}");
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
