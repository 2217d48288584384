//! `runner plan` and `runner status`: what a run would do and why; runs nothing.

use std::path::Path;

use super::exit;
use super::run::{PlanArgs, plan};
use crate::error::Error;
use crate::report::plan::{PlanFormat, render_plan};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    let (plan, _) = match plan(root, &args.plan, false)? {
        Ok(planned) => planned,
        Err(code) => return Ok(code),
    };
    print!("{}", render_plan(&plan, args.format));
    Ok(exit::SUCCESS)
}
