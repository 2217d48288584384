//! `runner comment`: the pipeline's report as ONE comment on the pull
//! request or merge request, created the first time and updated after.

use std::path::Path;

use super::exit;
use super::run::{PlanArgs, plan};
use crate::comment::{self, Forge};
use crate::error::Error;
use crate::report::plan::{PlanFormat, render_plan};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline (optional when the repository has one).
    #[arg(long, value_name = "P")]
    pipeline: Option<String>,
    /// The report to post (Markdown; `-` for stdin). Default: the plan, as `runner plan --format markdown` prints it.
    #[arg(long, value_name = "REPORT.md")]
    file: Option<String>,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    // Outside a PR/MR job there is nothing to comment on: say so first.
    let forge = Forge::from_env()?;
    let pipeline: Vec<&str> = args.pipeline.as_deref().into_iter().collect();
    let (plan, _) = match plan(root, &PlanArgs::with(&pipeline), false)? {
        Ok(planned) => planned,
        Err(code) => return Ok(code),
    };
    let report = match args.file.as_deref() {
        None => render_plan(&plan, PlanFormat::Markdown),
        Some(file) => super::read_text(file)?,
    };
    post(&forge, &plan.pipeline, &report, &plan.secret_values)?;
    Ok(exit::SUCCESS)
}

/// Posts `report` as the pipeline's comment (masked: a report a step printed
/// a secret into stays masked on the PR) and says what it did.
pub(super) fn post(
    forge: &Forge,
    pipeline: &str,
    report: &str,
    secrets: &[String],
) -> Result<(), Error> {
    let report = crate::secret::Masker::new(secrets)
        .mask(report)
        .into_owned();
    let upserted = comment::upsert(forge, pipeline, &report)?;
    if let Some(warning) = &upserted.warning {
        eprintln!("warning: {warning}");
    }
    let verb = match upserted.created {
        true => "created",
        false => "updated",
    };
    let id = upserted.id;
    let on = forge.describe();
    eprintln!("{verb} the `{pipeline}` comment ({id}) on {on}");
    Ok(())
}
