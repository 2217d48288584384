//! `runner schema`: the JSON Schemas editors use to complete and check specs.

use std::path::PathBuf;

use super::exit;
use crate::error::Error;
use crate::spec::Kind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// pipeline, stack or deployment.
    #[arg(value_name = "KIND", required_unless_present = "write")]
    kind: Option<String>,
    /// Write all schemas into DIR as pipeline.json, stack.json, deployment.json.
    #[arg(long, value_name = "DIR", conflicts_with = "kind")]
    write: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<u8, Error> {
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for kind in Kind::ALL {
            let path = dir.join(file_name(kind));
            std::fs::write(&path, render(kind)).map_err(|source| Error::Io { path, source })?;
        }
        return Ok(exit::SUCCESS);
    }
    let name = args.kind.as_deref().unwrap_or_default();
    let kind = Kind::parse(name).ok_or_else(|| {
        Error::usage(format!(
            "unknown kind `{name}`: use pipeline, stack or deployment"
        ))
    })?;
    print!("{}", render(kind));
    Ok(exit::SUCCESS)
}

/// `pipeline.json` for `Kind::Pipeline`.
pub fn file_name(kind: Kind) -> String {
    format!("{}.json", kind.name().to_lowercase())
}

/// The schema as committed in `schemas/`: pretty JSON with a final newline.
pub fn render(kind: Kind) -> String {
    let mut text = serde_json::to_string_pretty(&kind.schema()).unwrap_or_default();
    text.push('\n');
    text
}
