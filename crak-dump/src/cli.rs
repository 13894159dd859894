//! Command-line syntax. This is the only module that knows about clap; the commands take the
//! plain structs below.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Inspect and check crak checkpoint images.
#[derive(Debug, Parser)]
#[command(
    name = "crak-dump",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit status: 0 ok, 1 invalid image or no match, 2 error. IMAGE may be `-` for stdin.\n\n\
What is checked: an image file's metadata is read first, with the CRC of every record but \
PAGES and END's digest (which covers every record header and every stored CRC) checked. Page \
data is then read only where a command needs it (mem, grep, strings, diff, core, backtrace, \
--json --pages), with bounded memory, and the CRC of each PAGES record is checked when its \
data is read: a command fails (exit 2) on a run it read whose CRC differs, but does not read \
runs it does not need. `validate` checks every CRC. An image from stdin is read whole and \
every CRC is checked."
)]
pub struct Cli {
    /// What to do; without a command, summarize IMAGE.
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub show: ShowArgs,

    /// When to colour the output (`auto`: only on a terminal, and not when NO_COLOR is set).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

/// `crak-dump IMAGE`: the summary or the JSON model.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The image file, or `-` for stdin.
    #[arg(required = true)]
    pub image: Option<PathBuf>,

    /// Print the model as JSON instead of tables (schema: spec/crak-json.md). Without --pages,
    /// an image file's page data is sought over, not read: the CRCs of PAGES records are not
    /// checked (END's digest, covering every record header and CRC, is); `validate` checks all.
    #[arg(long)]
    pub json: bool,

    /// With --json, include page data (base64), read run by run from an image file; each
    /// PAGES record's CRC is checked as its data is read.
    #[arg(long, requires = "json")]
    pub pages: bool,

    /// Also show each process's environment.
    #[arg(long)]
    pub env: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate images; exit 0 when all are valid, 1 when one is invalid, 2 when one
    /// cannot be read as a crak image at all.
    Validate(ValidateArgs),
    /// Hexdump process memory as the image records it.
    Mem(MemArgs),
    /// Search stored memory for text, bytes (-x) or a regex (-e); exit 1 when nothing matches.
    Grep(GrepArgs),
    /// Turn the JSON model (`--json --pages`, edited or not) back into an image; unedited, the
    /// same bytes as the image it came from (unknown records, later-version fields and AUTH
    /// included).
    Encode(EncodeArgs),
    /// Show what differs between two images; exit 0 when identical, 1 when they differ.
    Diff(DiffArgs),
    /// Printable strings in stored memory, with address and mapping; exit 1 when none.
    Strings(StringsArgs),
    /// Write one process as an ELF core file (for gdb).
    Core(CoreArgs),
    /// The call chain of every thread, symbolised from the mapped ELF files.
    Backtrace(BacktraceArgs),
    /// Edit an image (memory, registers, paths, pid, fds, cwd, environment); OUT is written
    /// only when the result is valid.
    Edit(EditArgs),
    /// Describe this host (kernel, page size, XSAVE layout, vDSO) as JSON for `rewrite`.
    KernelProfile(ProfileArgs),
    /// Make an image restorable on another kernel or CPU (XSAVE, vDSO, version).
    Rewrite(RewriteArgs),
    /// Sign an image with an Ed25519 key (an AUTH record before END).
    Sign(SignArgs),
    /// Make an Ed25519 key pair for `sign` and `validate --verify`.
    Keygen(KeygenArgs),
}

/// `crak-dump kernel-profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The profile to write (replaced only once complete), or `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,
}

/// `crak-dump rewrite`.
#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// The restore host's profile (`kernel-profile`), or `host` for this host.
    #[arg(long, required = true)]
    pub target: PathBuf,

    /// The capture host's profile, or `host`: needed when the XSAVE layout or the vDSO differ.
    #[arg(long)]
    pub source: Option<PathBuf>,

    /// The rewritten image (created only when the rewrite succeeds and is valid), or `-`.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,

    /// Print what was changed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `crak-dump edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// The edited image (created only when every edit succeeds and the result is valid), or
    /// `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,

    /// The process to edit (default: the first in the image).
    #[arg(long)]
    pub pid: Option<u32>,

    /// Write hex bytes into memory at ADDR (`0x601040=2a000000`).
    #[arg(long, value_name = "ADDR=HEX")]
    pub poke: Vec<std::ffi::OsString>,

    /// Write text (no NUL added) into memory at ADDR.
    #[arg(long, value_name = "ADDR=TEXT")]
    pub poke_str: Vec<std::ffi::OsString>,

    /// Set a register (r15 ... gs, rip, fs_base) of thread TID (default: the main thread).
    #[arg(long, value_name = "[TID:]REG=VALUE")]
    pub set_reg: Vec<std::ffi::OsString>,

    /// Replace the path prefix OLD by NEW in file mappings, fds, exe and cwd.
    #[arg(long, value_name = "OLD=NEW")]
    pub map_path: Vec<std::ffi::OsString>,

    /// With --map-path, read device, inode, size and mtime again from the new files.
    #[arg(long, requires = "map_path")]
    pub refresh: bool,

    /// Give the process this pid (applied after every other edit).
    #[arg(long, value_name = "PID")]
    pub set_pid: Option<u32>,

    /// Make fd N /dev/null.
    #[arg(long, value_name = "N")]
    pub drop_fd: Vec<u32>,

    /// Set the working directory.
    #[arg(long, value_name = "DIR")]
    pub set_cwd: Option<std::ffi::OsString>,

    /// Change an environment variable the process has (in memory and in the records).
    #[arg(long, value_name = "K=V")]
    pub set_env: Vec<std::ffi::OsString>,

    /// Print what was changed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `crak-dump backtrace`.
#[derive(Debug, Args)]
pub struct BacktraceArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// Only this process.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Print the frames as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `crak-dump core`.
#[derive(Debug, Args)]
pub struct CoreArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// The core file to write (replaced only once complete), or `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,

    /// The process (default: the first in the image).
    #[arg(long)]
    pub pid: Option<u32>,
}

/// `crak-dump strings`.
#[derive(Debug, Args)]
pub struct StringsArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// Shortest string to show.
    #[arg(short = 'n', long = "min", default_value_t = 4)]
    pub min: usize,

    /// Only this process.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Print the strings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `crak-dump diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first image (`-` for stdin).
    pub a: PathBuf,

    /// The second image (`-` for stdin).
    pub b: PathBuf,

    /// Print the differences as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `crak-dump encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// The JSON model, or `-` for stdin.
    pub json: PathBuf,

    /// The image to write (replaced only once complete), or `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,
}

/// `crak-dump validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Image files; `-` reads stdin without holding page data in memory.
    #[arg(required = true, num_args = 1..)]
    pub images: Vec<PathBuf>,

    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also check against this host what restore needs: referenced files unchanged, PIDs
    /// free, clone3 set_tid, ns_last_pid and ptrace allowed, XSAVE features and vDSO sizes.
    #[arg(long)]
    pub host: bool,

    /// Also require a valid Ed25519 signature (AUTH record) by this public key file; an
    /// unsigned or altered image is refused, naming the first record that differs.
    #[arg(long, value_name = "PUBKEY")]
    pub verify: Option<PathBuf>,
}

/// `crak-dump sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// The secret key file (64 hex digits, as `keygen` writes).
    #[arg(long, required = true)]
    pub key: PathBuf,

    /// The signed image to write (replaced only once complete), or `-` for stdout.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,
}

/// `crak-dump keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The secret key file to write; the public key goes to the same path with `.pub`.
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,

    /// Replace an existing key file.
    #[arg(long)]
    pub force: bool,
}

/// `crak-dump mem`.
#[derive(Debug, Args)]
pub struct MemArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// `ADDR` or `ADDR+LEN` (hex with 0x, else decimal); LEN defaults to 256.
    #[arg(required_unless_present = "vma", conflicts_with = "vma")]
    pub range: Option<String>,

    /// Dump the whole VMA with this index (as listed in the summary).
    #[arg(long)]
    pub vma: Option<usize>,

    /// The process (default: the first in the image).
    #[arg(long)]
    pub pid: Option<u32>,

    /// Write the raw bytes instead of a hexdump.
    #[arg(long)]
    pub raw: bool,
}

/// `crak-dump grep`.
#[derive(Debug, Args)]
pub struct GrepArgs {
    /// The image file, or `-` for stdin.
    pub image: PathBuf,

    /// Text to find (or hex bytes with -x, a regex with -e).
    pub pattern: String,

    /// PATTERN is hex bytes (`deadbeef`, `de ad be ef`).
    #[arg(short = 'x', long = "hex", conflicts_with = "regex")]
    pub hex: bool,

    /// PATTERN is a regular expression over bytes (Rust regex syntax). Stored memory is
    /// searched in 8 MiB windows that overlap by 1 MiB: a match longer than 1 MiB may be cut.
    #[arg(short = 'e', long = "regex")]
    pub regex: bool,

    /// Only this process.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Only the VMA with this index (with --pid, or in the first process).
    #[arg(long)]
    pub vma: Option<usize>,

    /// Only VMAs with these permissions (letters of `rwxsp`, e.g. `rw` or `r-xp`).
    #[arg(long)]
    pub perms: Option<String>,

    /// Only addresses in `START-END` (hex with 0x, else decimal).
    #[arg(long)]
    pub range: Option<String>,

    /// Stop after this many matches.
    #[arg(short = 'm', long)]
    pub max_count: Option<u64>,

    /// Print matches as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given whether stdout is a terminal and the value of NO_COLOR.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = matches!(no_color, Some(v) if !v.is_empty());
                is_terminal && !no_color
            }
        }
    }
}
