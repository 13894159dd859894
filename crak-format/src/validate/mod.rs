//! Semantic validation of an assembled image (`spec/crak-format.md` §4).
//!
//! The parser checks framing only; this module checks the rules that make an image restorable
//! and reports every finding with its severity, record, field and (when the [`Layout`] is known)
//! the byte offset of the record or field in the file. Errors make an image unrestorable;
//! warnings do not.
//!
//! The validator never panics, whatever the model holds (models come from untrusted images and
//! from hand-edited JSON), and runs in `O(n log n)` of the number of records: overlaps are found
//! by sorting and sweeping, lookups go through hash maps or binary search. It works on models
//! read from a stream, whose page data is left empty: data-length checks are then skipped and
//! page counts come from `nr_pages`.

mod fd;
mod header;
mod ipc;
mod mm;
mod objects;
mod pages;
mod process;
mod scm;
mod signal;
mod thread;
mod vma;

#[cfg(test)]
mod tests;

use crate::image::Image;
use crate::read::Layout;
use crate::record::kind;
use crate::RECORD_HEADER_LEN;
use serde::Serialize;
use std::fmt;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The image cannot be restored as it is.
    Error,
    /// Suspicious, but restorable.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable kebab-case name of the rule (`vma-overlap`, `duplicate-fd`, ...).
    pub code: &'static str,
    /// Record kind as the spec names it (`VMA`, `PAGES`, ...).
    pub record: &'static str,
    /// The process the record belongs to, if any.
    pub pid: Option<u32>,
    /// Position of the record among the records of its kind (per process, or in the image).
    pub index: Option<usize>,
    /// Field of the record the finding is about.
    pub field: &'static str,
    /// Absolute byte offset of the field in the file (of the list entry, for a field inside a
    /// list); known only when the image was parsed with its layout.
    pub offset: Option<u64>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.record)?;
        if let Some(i) = self.index {
            write!(f, "#{i}")?;
        }
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        write!(f, " .{}", self.field)?;
        if let Some(off) = self.offset {
            write!(f, " @0x{off:x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything the validator found, errors and warnings in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether there is no error finding (warnings allowed).
    pub valid: bool,
    /// Number of error findings.
    pub errors: usize,
    /// Number of warning findings.
    pub warnings: usize,
    /// All findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether the image is restorable: no error findings.
    pub fn is_valid(&self) -> bool {
        self.errors == 0
    }

    /// Error findings.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// Warning findings.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// Whether some finding has this code.
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

/// Checks `image` against the semantic rules of spec §4 (and a few more that make an image
/// unrestorable). With `layout`, findings carry the byte offset of the record or field.
pub fn validate(image: &Image<'_>, layout: Option<&Layout>) -> Report {
    validate_inner(image, layout, true)
}

/// [`validate`] without the only rule that reads page data, `zero-page-stored` (a warning about
/// wasted space, harmless to a restore): what a restorer runs, so that checking an image costs
/// the same whatever the size of its memory.
pub fn validate_metadata(image: &Image<'_>, layout: Option<&Layout>) -> Report {
    validate_inner(image, layout, false)
}

fn validate_inner(image: &Image<'_>, layout: Option<&Layout>, page_contents: bool) -> Report {
    let mut cx = Cx::new(image, layout);
    cx.page_contents = page_contents;
    header::check(&mut cx);
    process::check(&mut cx);
    for p in &image.processes {
        thread::check(&mut cx, p);
        mm::check(&mut cx, p);
        signal::check(&mut cx, p);
        objects::check(&mut cx, p);
        let vmas = vma::check(&mut cx, p);
        pages::check(&mut cx, p, &vmas);
    }
    fd::check(&mut cx);
    scm::check(&mut cx);
    ipc::check(&mut cx);
    let errors = cx
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Report {
        valid: errors == 0,
        errors,
        warnings: cx.findings.len() - errors,
        findings: cx.findings,
    }
}

/// Which record a finding is about: kind, owning pid (as the layout files it) and list index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    kind: u16,
    pid: Option<u32>,
    index: Option<usize>,
}

impl At {
    /// A record of a process (`index` within that process's list of this kind).
    pub(crate) fn proc(kind: u16, pid: u32, index: usize) -> Self {
        At {
            kind,
            pid: Some(pid),
            index: Some(index),
        }
    }
    /// A record that occurs at most once per process (CREDS, MM, ...).
    pub(crate) fn once(kind: u16, pid: u32) -> Self {
        At {
            kind,
            pid: Some(pid),
            index: None,
        }
    }
    /// An image-level record (`index` within the image's list of this kind).
    pub(crate) fn image(kind: u16, index: Option<usize>) -> Self {
        At {
            kind,
            pid: None,
            index,
        }
    }
}

/// A field and where it sits in its record's payload.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    /// The field named, at this payload offset.
    At(&'static str, u64),
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::At(n, _) => n,
        }
    }
}

/// Validation state: the image, its layout, the page size and the findings so far.
pub(crate) struct Cx<'a, 'data> {
    pub(crate) image: &'a Image<'data>,
    layout: Option<&'a Layout>,
    /// The page size when HEADER's is usable (a power of two, 4096..=65536).
    pub(crate) page_size: Option<u64>,
    /// Whether rules that read page data run.
    pub(crate) page_contents: bool,
    findings: Vec<Finding>,
}

impl<'a, 'data> Cx<'a, 'data> {
    fn new(image: &'a Image<'data>, layout: Option<&'a Layout>) -> Self {
        let ps = u64::from(image.header.page_size);
        let page_size = (ps.is_power_of_two() && (4096..=65536).contains(&ps)).then_some(ps);
        Cx {
            image,
            layout,
            page_size,
            page_contents: true,
            findings: Vec::new(),
        }
    }

    /// The layout's span for a record, if known.
    pub(crate) fn span(&self, at: At) -> Option<&'a crate::read::RecordSpan> {
        self.layout?.find(at.kind, at.pid, at.index.unwrap_or(0))
    }

    /// Absolute offset of `field` of the record `at`.
    fn offset(&self, at: At, field: Field) -> Option<u64> {
        let span = self.span(at)?;
        let Field::At(_, off) = field;
        span.offset
            .checked_add(RECORD_HEADER_LEN as u64)?
            .checked_add(off)
    }

    fn push(&mut self, severity: Severity, code: &'static str, at: At, field: Field, msg: String) {
        let offset = self.offset(at, field);
        self.findings.push(Finding {
            severity,
            code,
            record: kind::name(at.kind).unwrap_or("UNKNOWN"),
            pid: at.pid,
            index: at.index,
            field: field.name(),
            offset,
            message: msg,
        });
    }

    /// Records an error.
    pub(crate) fn error(&mut self, code: &'static str, at: At, field: Field, msg: String) {
        self.push(Severity::Error, code, at, field, msg);
    }

    /// Records a warning.
    pub(crate) fn warn(&mut self, code: &'static str, at: At, field: Field, msg: String) {
        self.push(Severity::Warning, code, at, field, msg);
    }
}

/// Length of a `bytes` field on the wire (u32 length prefix + data).
pub(crate) fn bytes_len(b: &[u8]) -> u64 {
    4u64.saturating_add(b.len() as u64)
}

/// Whether `path` is absolute.
pub(crate) fn is_absolute(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
}

/// `[start, start + nr_pages × page_size)` of a run, or `None` on overflow.
pub(crate) fn run_end(addr: u64, nr_pages: u64, page_size: u64) -> Option<u64> {
    nr_pages.checked_mul(page_size)?.checked_add(addr)
}

/// Sorts half-open ranges `(start, end, id)` by start and returns, for each range that begins
/// before an earlier range ends, the pair `(id of that earlier range, id of this range)`.
/// One sort and one sweep: `O(n log n)`.
pub(crate) fn overlaps<T: Copy>(ranges: &mut [(u64, u64, T)]) -> Vec<(T, T)> {
    ranges.sort_unstable_by_key(|r| (r.0, r.1));
    let mut found = Vec::new();
    let mut reach: Option<(u64, T)> = None;
    for &(start, end, id) in ranges.iter() {
        match reach {
            Some((max_end, prev)) if start < max_end => {
                found.push((prev, id));
                if end > max_end {
                    reach = Some((end, id));
                }
            }
            Some((max_end, _)) if end <= max_end => {}
            _ => reach = Some((end, id)),
        }
    }
    found
}
