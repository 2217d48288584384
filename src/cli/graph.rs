//! `runner graph`: a pipeline's DAG as text, Graphviz or Mermaid.

use std::path::Path;

use clap::ValueEnum;

use super::exit;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline (optional when the repository has one).
    pipeline: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Read the specs of this commit instead of the work tree.
    #[arg(long, value_name = "REF")]
    rev: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Dot,
    Mermaid,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    let (_, loaded) = super::load(root, args.rev.as_deref())?;
    let (doc, dag) = loaded.pipeline(args.pipeline.as_deref())?;
    let Some(dag) = dag else {
        super::print_problems(&loaded);
        return Ok(exit::INVALID);
    };
    let name = &doc.spec.name;
    let out = match args.format {
        Format::Text => dag.render_text(name),
        Format::Dot => dag.render_dot(name),
        Format::Mermaid => dag.render_mermaid(),
    };
    print!("{out}");
    Ok(exit::SUCCESS)
}
