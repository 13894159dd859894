//! `crak-dump IMAGE`: the summary tables, or the model as JSON.

use crate::cli::ShowArgs;
use crate::view::table::{summary, SummaryOptions};
use crate::view::{json, Style};
use crate::EXIT_OK;
use std::io::Write;

/// Runs the command.
pub fn run(args: &ShowArgs, out: &mut dyn Write, style: Style) -> anyhow::Result<i32> {
    let Some(path) = &args.image else {
        anyhow::bail!("no image given");
    };
    let bytes = super::load(path)?;
    let image = super::open(path, &bytes)?;
    if args.json {
        json::model(out, &image, args.pages)?;
    } else {
        let opts = SummaryOptions { env: args.env };
        summary(out, &image, bytes.len() as u64, opts, style)?;
    }
    Ok(EXIT_OK)
}
