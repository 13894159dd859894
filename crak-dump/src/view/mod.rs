//! Renderings of images and reports: tables, JSON, hexdumps.

pub mod core;
pub mod hexdump;
pub mod json;
pub mod names;
pub mod symbols;
pub mod table;

/// Whether to colour output, and the few colours used outside tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    /// Bold text.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Red text (errors).
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    /// Yellow text (warnings).
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
    /// Green text (success).
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    /// Dim text (addresses, gaps).
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}
