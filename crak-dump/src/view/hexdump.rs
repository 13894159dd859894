//! Hexdumps of recorded memory (through the hexyl library) and one-line notes for the parts
//! that hold no bytes: zero runs, unrecorded pages, unmapped gaps.

use super::names;
use super::Style;
use hexyl::{BorderStyle, PrinterBuilder};
use std::io::{self, Write};

/// Hexdumps `bytes`, labelling each line with its address (`addr` for the first byte).
pub fn dump(out: &mut dyn Write, addr: u64, bytes: &[u8], style: Style) -> io::Result<()> {
    dump_from(out, addr, bytes, style)
}

/// [`dump`] of the bytes `input` gives, read as the dump goes.
pub fn dump_from(
    out: &mut dyn Write,
    addr: u64,
    input: impl io::Read,
    style: Style,
) -> io::Result<()> {
    let mut w: &mut dyn Write = out;
    let mut printer = PrinterBuilder::new(&mut w)
        .show_color(style.color)
        .with_border_style(BorderStyle::None)
        .enable_squeezing(true)
        .num_panels(2)
        .build();
    printer.display_offset(addr);
    printer.print_all(input)
}

/// A line for a range that has no bytes to show: `start-end (size): what`.
pub fn note(out: &mut dyn Write, start: u64, end: u64, what: &str, style: Style) -> io::Result<()> {
    let text = format!(
        "{start:x}-{end:x} ({}): {what}",
        names::size(end.saturating_sub(start))
    );
    writeln!(out, "{}", style.dim(&text))
}
