//! `runner validate`: every spec file checked in one pass.

use std::path::Path;

use clap::ValueEnum;

use super::exit;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How to print problems: `github` emits workflow commands that annotate the PR diff.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Validate the specs of this commit (branch, tag, sha), read from git without a checkout.
    #[arg(long, value_name = "REF")]
    rev: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Github,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    let (source, loaded) = super::load(root, args.rev.as_deref())?;
    let valid = loaded.report.is_empty();
    match args.format {
        Format::Json => println!("{}", loaded.report.render_json()),
        Format::Github => print!("{}", loaded.report.render_github()),
        Format::Text if valid => {
            let specs = &loaded.specs;
            let steps: usize = specs.pipelines.iter().map(|p| p.spec.steps.len()).sum();
            println!(
                "valid: {} pipeline{} ({steps} step{}), {} stack{}, {} deployment{} in {}",
                specs.pipelines.len(),
                plural(specs.pipelines.len()),
                plural(steps),
                specs.stacks.len(),
                plural(specs.stacks.len()),
                specs.deployments.len(),
                plural(specs.deployments.len()),
                source.describe(),
            );
        }
        Format::Text => super::print_problems(&loaded),
    }
    Ok(if valid { exit::SUCCESS } else { exit::INVALID })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
