//! `runner step PIPELINE STEP`: one step in isolation, as an exported Argo
//! task or GitLab job runs it. It is `runner run --only STEP` without the
//! promotion: the same plan, scheduler, cache and `runner.lock`, so running
//! every step this way in DAG order leaves what one `runner run` leaves.

use std::path::Path;

use clap::ValueEnum;

use super::run;
use crate::error::Error;
use crate::flow::Scope;
use crate::report::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline.
    pipeline: String,
    /// The step to run.
    step: String,
    /// Override a param: `-p alpha=0.5` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The stack to run on (default: `local`, or the only stack, or the built-in local stack).
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Run the step even when it is up to date.
    #[arg(long)]
    force: bool,
    /// Fail instead of waiting when another run holds this checkout.
    #[arg(long)]
    no_wait: bool,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    let format = args
        .format
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| "auto".to_string());
    // `--only=STEP` and `-- PIPELINE`: a name is never read as a flag.
    let only = format!("--only={}", args.step);
    let format = format!("--format={format}");
    let mut argv: Vec<&str> = vec![&only, &format];
    for param in &args.params {
        argv.extend(["-p", param]);
    }
    if let Some(stack) = &args.stack {
        argv.extend(["--stack", stack]);
    }
    if args.force {
        argv.push("--force");
    }
    if args.no_wait {
        argv.push("--no-wait");
    }
    argv.extend(["--", &args.pipeline]);
    run::run_scoped(root, &run::Args::with(&argv), Scope::Step, true)
}
