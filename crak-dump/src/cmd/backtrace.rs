//! `crak-dump backtrace IMAGE`: the call chain of every thread, symbolised from the ELF files
//! mapped in the image ([`crate::view::symbols`]).
//!
//! Each step from a frame to its caller uses, in order: the `.eh_frame` call frame
//! information of the module holding the address (`cfi`), else the frame-pointer chain
//! (`frame pointer`: the saved rbp at [rbp], the return address at [rbp+8]). Memory comes
//! from the image's stored pages. When neither works before the outermost frame (whose CFI
//! marks the return address undefined), the rest of the stack is scanned for words that
//! point into code and resolve to a function; those frames are labelled `stack scan`, since
//! some may be stale values rather than live return addresses.

use crate::cli::BacktraceArgs;
use crate::source::Source;
use crate::view::symbols::{self, Module};
use crate::view::{names, Style};
use crate::EXIT_OK;
use anyhow::Context as _;
use crak_format::image::Process;
use crak_format::record::thread::Thread;
use crak_format::record::vma::{Vma, VmaKind, PROT_EXEC};
use gimli::{CfaRule, EhFrame, LittleEndian, RegisterRule, UnwindContext, UnwindSection as _};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

/// Most frames followed per thread.
const MAX_FRAMES: usize = 256;
/// Most frames found by a stack scan, and bytes of stack scanned.
const MAX_SCANNED: usize = 32;
const SCAN_BYTES: u64 = 256 << 10;

/// DWARF register numbers on x86_64.
const RBP: usize = 6;
const RSP: usize = 7;
const RIP: usize = 16;
/// The registers a callee saves (rbx, rbp, r12–r15): kept across a step unless CFI says where.
const CALLEE_SAVED: [usize; 6] = [3, 6, 12, 13, 14, 15];

/// How a frame was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The thread's registers.
    Registers,
    /// Call frame information.
    Cfi,
    /// The frame-pointer chain.
    FramePointer,
    /// A stack scan: a code address found on the stack.
    StackScan,
}

impl How {
    fn label(self) -> &'static str {
        match self {
            How::Registers => "registers",
            How::Cfi => "cfi",
            How::FramePointer => "frame pointer",
            How::StackScan => "stack scan",
        }
    }
}

/// One frame.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// The code address (the return address for callers).
    pub addr: u64,
    /// The function, when known.
    pub function: Option<String>,
    /// Offset of `addr` in the function.
    pub offset: Option<u64>,
    /// The mapping's path (`[vdso]`, a file).
    pub module: Option<String>,
    /// How the frame was found.
    pub how: How,
}

/// A thread's call chain.
#[derive(Debug, Serialize)]
pub struct ThreadTrace {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// Whether unwinding reached the outermost frame.
    pub complete: bool,
}

/// Stored memory of a process, for reading the stack: 8-byte reads through a one-page cache
/// over the image's page data.
struct Memory<'a, 'd> {
    src: &'a Source,
    p: &'a Process<'d>,
    /// `(address, run index, bytes held)` of each stored run, by address.
    runs: Vec<(u64, usize, u64)>,
    /// The last page read: its address and bytes.
    cache: RefCell<Option<(u64, Vec<u8>)>>,
}

/// Bytes of the read cache.
const CACHE: u64 = 4096;

impl<'a, 'd> Memory<'a, 'd> {
    fn new(src: &'a Source, p: &'a Process<'d>) -> Self {
        let mut runs: Vec<(u64, usize, u64)> = (0..p.pages.len())
            .filter_map(|i| {
                let len = src.run_len(p, i);
                Some((p.pages.get(i)?.addr, i, len)).filter(|_| len > 0)
            })
            .collect();
        runs.sort_unstable_by_key(|r| r.0);
        Memory {
            src,
            p,
            runs,
            cache: RefCell::new(None),
        }
    }

    fn read_u64(&self, addr: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.0 <= addr).checked_sub(1)?;
        let &(start, run, len) = self.runs.get(i)?;
        let off = addr - start;
        if off.checked_add(8)? > len {
            return None;
        }
        let page = off - off % CACHE;
        let page_addr = start + page;
        let within = usize::try_from(off - page).ok()?;
        let mut cache = self.cache.borrow_mut();
        if cache.as_ref().map(|c| c.0) != Some(page_addr) {
            let n = usize::try_from(CACHE.min(len - page)).ok()?;
            let mut buf = vec![0u8; n];
            if !self.src.read_exact(self.p, run, page, &mut buf).ok()? {
                return None;
            }
            *cache = Some((page_addr, buf));
        }
        let bytes = cache.as_ref()?.1.get(within..within.checked_add(8)?);
        match bytes {
            Some(b) => Some(u64::from_le_bytes(b.try_into().ok()?)),
            // The 8 bytes cross the cached page: read them directly.
            None => {
                let mut b = [0u8; 8];
                self.src
                    .read_exact(self.p, run, off, &mut b)
                    .ok()?
                    .then(|| u64::from_le_bytes(b))
            }
        }
    }
}

/// The process's mappings and the modules loaded so far.
struct Space<'a, 'd> {
    src: &'a Source,
    p: &'a Process<'d>,
    vmas: Vec<&'a Vma>,
    modules: HashMap<u64, Module>,
}

impl<'a, 'd> Space<'a, 'd> {
    fn vma(&self, addr: u64) -> Option<&'a Vma> {
        let i = self
            .vmas
            .partition_point(|v| v.start <= addr)
            .checked_sub(1)?;
        self.vmas.get(i).copied().filter(|v| addr < v.end)
    }

    fn is_code(&self, addr: u64) -> bool {
        self.vma(addr).is_some_and(|v| v.prot & PROT_EXEC != 0)
    }

    /// The module mapped at `addr` and the link-time address of `addr` in it.
    fn module(&mut self, addr: u64) -> Option<(&Module, u64)> {
        let v = self.vma(addr).filter(|v| v.kind == VmaKind::File)?;
        // One module per file: keyed by the inode and the first mapping's start.
        let key = self
            .vmas
            .iter()
            .find(|m| m.kind == VmaKind::File && m.path == v.path && m.ino == v.ino)
            .map_or(v.start, |m| m.start);
        let (src, p) = (self.src, self.p);
        let m = self
            .modules
            .entry(key)
            .or_insert_with(|| symbols::load(src, p, v));
        let off = v.pgoff.checked_add(addr - v.start)?;
        let svma = m.offset_to_svma(off)?;
        Some((m, svma))
    }

    fn frame(&mut self, addr: u64, lookup: u64, how: How) -> Frame {
        let path = self.vma(addr).map(|v| names::text(&v.path));
        let (function, offset) = match self.module(lookup) {
            Some((m, svma)) => match m.symbol(svma) {
                Some((name, off)) => (Some(name.to_string()), Some(off + (addr - lookup))),
                None => (None, None),
            },
            None => (None, None),
        };
        Frame {
            addr,
            function,
            offset,
            module: path.filter(|p| !p.is_empty()),
            how,
        }
    }
}

/// Registers by DWARF number (rax..r15, then the return address / rip).
type Regs = [Option<u64>; 17];

fn initial_regs(t: &Thread) -> Regs {
    let g = &t.gpr;
    [
        Some(g.rax),
        Some(g.rdx),
        Some(g.rcx),
        Some(g.rbx),
        Some(g.rsi),
        Some(g.rdi),
        Some(g.rbp),
        Some(g.rsp),
        Some(g.r8),
        Some(g.r9),
        Some(g.r10),
        Some(g.r11),
        Some(g.r12),
        Some(g.r13),
        Some(g.r14),
        Some(g.r15),
        Some(g.rip),
    ]
}

/// What one unwinding step found.
enum Step {
    /// The caller's registers.
    Caller(Box<Regs>, How),
    /// This is the outermost frame.
    Outermost,
}

fn reg(regs: &Regs, n: u16) -> Option<u64> {
    regs.get(usize::from(n)).copied().flatten()
}

/// One step with the CFI of `m`; `None` when it has no entry for `svma`.
fn cfi_step(
    m: &Module,
    svma: u64,
    regs: &Regs,
    mem: &Memory<'_, '_>,
    ctx: &mut UnwindContext<usize>,
) -> Option<Step> {
    let (addr, data) = m.eh_frame.as_ref()?;
    let mut eh = EhFrame::new(data, LittleEndian);
    eh.set_address_size(8);
    let bases = gimli::BaseAddresses::default().set_eh_frame(*addr);
    let row = eh
        .unwind_info_for_address(&bases, ctx, svma, EhFrame::cie_from_offset)
        .ok()?;
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            reg(regs, register.0)?.checked_add_signed(*offset)?
        }
        CfaRule::Expression(_) => return None,
    };
    let rule_value = |rule: RegisterRule<usize>, old: Option<u64>| -> Option<Option<u64>> {
        Some(match rule {
            RegisterRule::Undefined | RegisterRule::SameValue => old,
            RegisterRule::Offset(o) => Some(mem.read_u64(cfa.checked_add_signed(o)?)?),
            RegisterRule::ValOffset(o) => Some(cfa.checked_add_signed(o)?),
            RegisterRule::Register(r) => reg(regs, r.0),
            _ => None,
        })
    };
    let ra_rule = row.register(gimli::X86_64::RA);
    if matches!(ra_rule, RegisterRule::Undefined) {
        return Some(Step::Outermost);
    }
    let mut next: Regs = [None; 17];
    for &r in &CALLEE_SAVED {
        let rule = row.register(gimli::Register(r as u16));
        let old = regs.get(r).copied().flatten();
        if let Some(slot) = next.get_mut(r) {
            *slot = rule_value(rule, old)?;
        }
    }
    next[RSP] = Some(cfa);
    next[RIP] = Some(rule_value(ra_rule, None)??);
    Some(Step::Caller(Box::new(next), How::Cfi))
}

/// One step along the frame-pointer chain.
fn fp_step(regs: &Regs, mem: &Memory<'_, '_>) -> Option<Step> {
    let rbp = regs[RBP].filter(|&v| v != 0 && v % 8 == 0)?;
    let saved = mem.read_u64(rbp)?;
    let ra = mem.read_u64(rbp.checked_add(8)?)?;
    let mut next: Regs = [None; 17];
    for &r in &CALLEE_SAVED {
        next[r] = regs[r];
    }
    next[RBP] = Some(saved);
    next[RSP] = Some(rbp.checked_add(16)?);
    next[RIP] = Some(ra);
    Some(Step::Caller(Box::new(next), How::FramePointer))
}

/// The call chain of `t`.
fn trace(space: &mut Space<'_, '_>, mem: &Memory<'_, '_>, t: &Thread) -> ThreadTrace {
    let mut ctx = UnwindContext::new();
    let mut regs = initial_regs(t);
    let mut frames = vec![space.frame(t.gpr.rip, t.gpr.rip, How::Registers)];
    let mut complete = false;
    while frames.len() < MAX_FRAMES {
        let (Some(pc), Some(sp)) = (regs[RIP], regs[RSP]) else {
            break;
        };
        // A caller's pc is a return address: look up the call instruction before it.
        let lookup = if frames.len() > 1 {
            pc.saturating_sub(1)
        } else {
            pc
        };
        let cfi = match space.module(lookup) {
            Some((m, svma)) => cfi_step(m, svma, &regs, mem, &mut ctx),
            None => None,
        };
        let step = match cfi {
            Some(s) => Some(s),
            None => fp_step(&regs, mem),
        };
        match step {
            Some(Step::Outermost) => {
                complete = true;
                break;
            }
            Some(Step::Caller(next, how)) => {
                let (Some(npc), Some(nsp)) = (next[RIP], next[RSP]) else {
                    break;
                };
                if npc == 0 {
                    complete = true;
                    break;
                }
                if nsp <= sp || !space.is_code(npc) {
                    break;
                }
                frames.push(space.frame(npc, npc.saturating_sub(1), how));
                regs = *next;
            }
            None => break,
        }
    }
    if !complete {
        let from = regs[RSP].unwrap_or(t.gpr.rsp);
        scan(space, mem, from, &mut frames);
    }
    ThreadTrace {
        pid: t.pid,
        tid: t.tid,
        frames,
        complete,
    }
}

/// Appends the code addresses found on the stack above `from` that resolve to a function.
fn scan(space: &mut Space<'_, '_>, mem: &Memory<'_, '_>, from: u64, frames: &mut Vec<Frame>) {
    let Some(stack) = space.vma(from) else {
        return;
    };
    let end = stack.end.min(from.saturating_add(SCAN_BYTES));
    let mut addr = from - from % 8;
    let mut found = 0;
    while addr < end && found < MAX_SCANNED && frames.len() < MAX_FRAMES {
        if let Some(v) = mem.read_u64(addr) {
            if space.is_code(v) {
                let f = space.frame(v, v.saturating_sub(1), How::StackScan);
                if f.function.is_some() {
                    frames.push(f);
                    found += 1;
                }
            }
        }
        addr += 8;
    }
}

/// The call chains of the threads of `p`, a process of `src`.
pub fn process_traces(src: &Source, p: &Process<'_>) -> Vec<ThreadTrace> {
    let mut vmas: Vec<&Vma> = p.vmas.iter().filter(|v| v.start < v.end).collect();
    vmas.sort_unstable_by_key(|v| v.start);
    let mut space = Space {
        src,
        p,
        vmas,
        modules: HashMap::new(),
    };
    let mem = Memory::new(src, p);
    let mut threads: Vec<&Thread> = p.threads.iter().collect();
    threads.sort_by_key(|t| (t.tid != p.pid(), t.tid));
    threads
        .into_iter()
        .map(|t| trace(&mut space, &mem, t))
        .collect()
}

/// Runs the command.
pub fn run(args: &BacktraceArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let src = Source::open(&args.image)?;
    let image = src.image();
    let procs: Vec<&Process<'_>> = match args.pid {
        Some(pid) => vec![image
            .process(pid)
            .with_context(|| format!("no process {pid} in the image"))?],
        None => image.processes.iter().collect(),
    };
    let traces: Vec<(String, Vec<ThreadTrace>)> = procs
        .iter()
        .map(|p| (names::text(&p.process.comm), process_traces(&src, p)))
        .collect();
    // The CRC of every PAGES run read is checked before anything is shown.
    src.verify()?;
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            threads: Vec<&'a ThreadTrace>,
        }
        let o = Out {
            threads: traces.iter().flat_map(|(_, t)| t).collect(),
        };
        serde_json::to_writer_pretty(&mut *out, &o)?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    for (comm, threads) in &traces {
        for t in threads {
            writeln!(
                out,
                "{}",
                style.bold(&format!("process {} ({comm}), thread {}", t.pid, t.tid))
            )?;
            for (i, f) in t.frames.iter().enumerate() {
                let func = match (&f.function, f.offset) {
                    (Some(name), Some(off)) => format!("{}+0x{off:x}", names::clean(name)),
                    (Some(name), None) => names::clean(name),
                    _ => "??".to_string(),
                };
                let module = f.module.as_deref().map(names::clean).unwrap_or_default();
                let how = if f.how == How::Cfi || f.how == How::Registers {
                    String::new()
                } else {
                    format!("  ({})", f.how.label())
                };
                writeln!(
                    out,
                    "  #{i:<2} {} {func}  {}{how}",
                    style.dim(&format!("{:016x}", f.addr)),
                    module,
                )?;
            }
            if !t.complete {
                writeln!(out, "  {}", style.yellow("(unwinding stopped early)"))?;
            }
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crak_format::bytes::Blob;
    use crak_format::record::pages::PageRun;
    use crak_format::record::process::ProcessRecord;
    use crak_format::record::vma::{PROT_READ, PROT_WRITE};

    fn source_of(p: Process<'static>) -> Source {
        let mut image = crak_format::Image::new(crak_format::record::header::Header {
            arch: crak_format::record::header::ARCH_X86_64,
            page_size: 4096,
            capture_time_ns: 0,
            xsave_features: 0,
            xsave_size: 0,
            kernel_release: Default::default(),
            hostname: Default::default(),
            tool_version: Default::default(),
            special_mappings: Vec::new(),
        });
        image.processes.push(p);
        Source::from_image(image)
    }

    fn vma(start: u64, end: u64, prot: u32) -> Vma {
        Vma {
            pid: 7,
            kind: VmaKind::Anon,
            start,
            end,
            prot,
            flags: 2,
            madvise: 0,
            pgoff: 0,
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            path: Default::default(),
        }
    }

    #[test]
    fn frame_pointer_chain_without_modules() {
        const STACK: u64 = 0x7000_0000;
        let mut p = Process::new(ProcessRecord {
            pid: 7,
            ..Default::default()
        });
        p.vmas = vec![
            vma(0x40_0000, 0x40_1000, PROT_READ | PROT_EXEC),
            vma(STACK, STACK + 0x1000, PROT_READ | PROT_WRITE),
        ];
        let mut stack = vec![0u8; 0x1000];
        let mut put = |at: u64, v: u64| {
            let o = (at - STACK) as usize;
            stack[o..o + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(STACK + 0x100, STACK + 0x200);
        put(STACK + 0x108, 0x40_0100);
        put(STACK + 0x200, 0);
        put(STACK + 0x208, 0x40_0200);
        p.pages.push(PageRun {
            pid: 7,
            addr: STACK,
            nr_pages: 1,
            data: Blob::from(stack),
        });
        let mut t = Thread {
            pid: 7,
            tid: 7,
            ..Default::default()
        };
        t.gpr.rip = 0x40_0050;
        t.gpr.rsp = STACK + 0xf0;
        t.gpr.rbp = STACK + 0x100;
        p.threads.push(t);
        let src = source_of(p);
        let traces = process_traces(&src, &src.image().processes[0]);
        let frames: Vec<(u64, How)> = traces[0].frames.iter().map(|f| (f.addr, f.how)).collect();
        assert_eq!(
            frames,
            [
                (0x40_0050, How::Registers),
                (0x40_0100, How::FramePointer),
                (0x40_0200, How::FramePointer)
            ]
        );
        // The chain ends at rbp 0 without an outermost frame's CFI: not complete.
        assert!(!traces[0].complete);
        assert!(traces[0].frames.iter().all(|f| f.function.is_none()));
    }

    #[test]
    fn memory_reads_stay_inside_stored_runs() {
        let mut p = Process::new(ProcessRecord::default());
        p.pages.push(PageRun {
            pid: 0,
            addr: 0x1000,
            nr_pages: 1,
            data: Blob::from(vec![1u8; 4096]),
        });
        let src = source_of(p);
        let m = Memory::new(&src, &src.image().processes[0]);
        assert_eq!(m.read_u64(0x1000), Some(0x0101_0101_0101_0101));
        assert_eq!(m.read_u64(0x1ff8), Some(0x0101_0101_0101_0101));
        assert_eq!(m.read_u64(0x1ff9), None);
        assert_eq!(m.read_u64(0xfff), None);
        assert_eq!(m.read_u64(u64::MAX), None);
    }
}
