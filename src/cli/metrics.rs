//! `runner metrics`: the metrics `runner.lock` records, and how they moved
//! against another commit (read from git objects, no checkout).

use std::path::Path;

use clap::Subcommand;

use super::exit;
use crate::cache::lock::{LOCK_FILE, LockFile};
use crate::cache::metrics::compare;
use crate::error::Error;
use crate::metrics::MetricRow;
use crate::report::metrics::render_metrics;
pub use crate::report::plan::PlanFormat as Format;
use crate::spec::Source;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every metric of the work tree's runner.lock (one pipeline's, or all).
    Show {
        pipeline: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The work tree's metrics against those committed at another ref.
    Diff {
        pipeline: Option<String>,
        /// The commit to compare with: a branch, tag or sha.
        #[arg(long, value_name = "REF", default_value = "HEAD")]
        base: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    match command {
        Command::Show { pipeline, format } => {
            let current = LockFile::read(&Source::work_tree(root))?;
            let rows = compare(None, &current, pipeline.as_deref());
            if rows.is_empty() && *format != Format::Json {
                eprintln!(
                    "no metrics in {LOCK_FILE}: a step with `metrics: FILE` records them when it runs"
                );
                return Ok(exit::SUCCESS);
            }
            print!("{}", render_metrics(&rows, *format, None));
        }
        Command::Diff {
            pipeline,
            base,
            format,
        } => print!("{}", diff(root, pipeline.as_deref(), base, *format)?),
    }
    Ok(exit::SUCCESS)
}

/// The work tree's metrics against those committed at `base`, rendered.
pub fn diff(
    root: &Path,
    pipeline: Option<&str>,
    base: &str,
    format: Format,
) -> Result<String, Error> {
    let rows = diff_rows(root, pipeline, base)?;
    Ok(render_metrics(&rows, format, Some((base, "work tree"))))
}

/// The work tree's metrics beside those committed at `base` (fetched first
/// when a shallow CI clone lacks it).
pub fn diff_rows(root: &Path, pipeline: Option<&str>, base: &str) -> Result<Vec<MetricRow>, Error> {
    let old = LockFile::read(&super::commit_source(root, base)?)?;
    let new = LockFile::read(&Source::work_tree(root))?;
    Ok(compare(Some(&old), &new, pipeline))
}
