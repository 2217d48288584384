//! `runner params diff`: what a change to `params` or a params file does to
//! the values a run sees, against another commit.

use std::path::Path;

use clap::Subcommand;

use super::exit;
use crate::error::Error;
use crate::plan::pipeline_params;
use crate::preview::{ParamChange, param_changes};
use crate::report::plan::PlanFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Params whose values differ between the work tree and `--base`
    /// (inline defaults with the params files merged over them).
    Diff {
        /// The pipeline (default: every pipeline).
        pipeline: Option<String>,
        /// The commit to compare with: a branch, tag or sha.
        #[arg(long, value_name = "REF", default_value = "HEAD")]
        base: String,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    let Command::Diff {
        pipeline,
        base,
        format,
    } = command;
    let now = crate::spec::load_work_tree(root)?;
    if !now.report.is_empty() {
        super::print_problems(&now);
        return Ok(exit::INVALID);
    }
    if let Some(name) = pipeline {
        // An unknown name is an error with a suggestion, not an empty diff.
        now.pipeline(Some(name))?;
    }
    let then = crate::spec::load(&super::commit_source(root, base)?)?;
    let mut changes: Vec<(String, ParamChange)> = Vec::new();
    for doc in &now.specs.pipelines {
        if pipeline.as_ref().is_some_and(|p| *p != doc.spec.name) {
            continue;
        }
        let current = pipeline_params(&now, doc)?;
        let before = match then.pipeline(Some(&doc.spec.name)) {
            Ok((old, _)) => pipeline_params(&then, old).unwrap_or_default(),
            Err(_) => Default::default(),
        };
        changes.extend(
            param_changes(&before, &current)
                .into_iter()
                .map(|change| (doc.spec.name.clone(), change)),
        );
    }
    let value =
        |v: &Option<serde_json::Value>| v.as_ref().map_or("-".to_string(), |v| v.to_string());
    match format {
        PlanFormat::Json => {
            let rows: Vec<serde_json::Value> = changes
                .iter()
                .map(|(pipeline, c)| serde_json::json!({"pipeline": pipeline, "param": c.param, "base": c.base, "current": c.head}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        PlanFormat::Markdown => {
            println!("| pipeline | param | {base} | work tree |\n|---|---|---|---|");
            for (pipeline, c) in &changes {
                println!(
                    "| {pipeline} | `{}` | {} | {} |",
                    c.param,
                    value(&c.base),
                    value(&c.head)
                );
            }
        }
        PlanFormat::Text if changes.is_empty() => eprintln!("no param changed since {base}"),
        PlanFormat::Text => {
            for (pipeline, c) in &changes {
                println!(
                    "{pipeline}  {}  {} -> {}",
                    c.param,
                    value(&c.base),
                    value(&c.head)
                );
            }
        }
    }
    Ok(exit::SUCCESS)
}
