//! MM rules: ordered address pairs and a program break inside the heap mapping, as
//! `prctl(PR_SET_MM_MAP)` will demand on restore (`spec/crak-format.md#mm`).

use super::{At, Cx, Field};
use crate::image::Process;
use crate::record::kind;
use crate::record::vma::VmaKind;

pub(super) fn check(cx: &mut Cx<'_, '_>, p: &Process<'_>) {
    let Some(mm) = &p.mm else {
        return; // reported as missing-mm
    };
    let pid = p.pid();
    let at = At::once(kind::MM, pid);
    let pairs = [
        ("start_code", 8, mm.start_code, "end_code", mm.end_code),
        ("start_data", 24, mm.start_data, "end_data", mm.end_data),
        ("arg_start", 64, mm.arg_start, "arg_end", mm.arg_end),
        ("env_start", 80, mm.env_start, "env_end", mm.env_end),
    ];
    for (a, off, lo, b, hi) in pairs {
        if lo > hi {
            cx.error(
                "mm-range-order",
                at,
                Field::At(a, off),
                format!("{a} 0x{lo:x} is above {b} 0x{hi:x}"),
            );
        }
    }

    if mm.brk < mm.start_brk {
        cx.error(
            "brk-outside-heap",
            at,
            Field::At("brk", 48),
            format!("brk 0x{:x} is below start_brk 0x{:x}", mm.brk, mm.start_brk),
        );
        return;
    }
    let mut heaps = p.vmas.iter().filter(|v| v.kind == VmaKind::Heap).peekable();
    if heaps.peek().is_none() {
        if mm.brk > mm.start_brk {
            cx.error(
                "brk-outside-heap",
                at,
                Field::At("brk", 48),
                format!(
                    "brk 0x{:x} is past start_brk 0x{:x} but the process has no HEAP mapping",
                    mm.brk, mm.start_brk
                ),
            );
        }
        return;
    }
    if !heaps.any(|v| v.start <= mm.brk && mm.brk <= v.end) {
        cx.error(
            "brk-outside-heap",
            at,
            Field::At("brk", 48),
            format!("brk 0x{:x} is outside every HEAP mapping", mm.brk),
        );
    }
}
