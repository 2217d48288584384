//! `runner plan` and `runner status`: what a run would do and why; runs nothing.

use std::path::Path;

use super::exit;
use super::run::{PlanArgs, plan};
use crate::comment::Forge;
use crate::error::Error;
use crate::preview::Preview;
use crate::report::plan::{PlanFormat, render_plan};
use crate::report::preview::render_preview;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// Plan the commit `--head` against this one (a branch, tag or sha),
    /// both read from git objects: spec and params changes, the gate against
    /// production at base, the deployment, the metrics diff.
    #[arg(long, value_name = "REF")]
    base: Option<String>,
    /// With --base: the commit to plan (default: HEAD).
    #[arg(long, value_name = "REF", requires = "base")]
    head: Option<String>,
    /// Also post the plan (as Markdown) as the pipeline's one comment on the PR/MR.
    #[arg(long)]
    comment: bool,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    // Outside a PR/MR job there is nothing to comment on: say so first.
    let forge = args.comment.then(Forge::from_env).transpose()?;
    let Some(base) = &args.base else {
        let (plan, _) = match plan(root, &args.plan, false)? {
            Ok(planned) => planned,
            Err(code) => return Ok(code),
        };
        print!("{}", render_plan(&plan, args.format));
        if let Some(forge) = &forge {
            let report = render_plan(&plan, PlanFormat::Markdown);
            super::comment::post(forge, &plan.pipeline, &report, &plan.secret_values)?;
        }
        return Ok(exit::SUCCESS);
    };
    let base = super::commit_source(root, base)?;
    let head_rev = args.head.as_deref().unwrap_or("HEAD");
    let head = super::commit_source(root, head_rev)?;
    let head_loaded = crate::spec::load(&head)?;
    if !head_loaded.report.is_empty() {
        super::print_problems(&head_loaded);
        return Ok(exit::INVALID);
    }
    let preview = Preview::build(
        root,
        &base,
        &head,
        &head_loaded,
        args.plan.pipeline(),
        args.plan.request().options(false),
        &args.plan.request().selection,
    )?;
    print!("{}", render_preview(&preview, args.format));
    if let Some(forge) = &forge {
        let report = render_preview(&preview, PlanFormat::Markdown);
        super::comment::post(
            forge,
            &preview.plan.pipeline,
            &report,
            &preview.plan.secret_values,
        )?;
    }
    Ok(exit::SUCCESS)
}
