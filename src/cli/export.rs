//! `runner export`: a pipeline as an Argo Workflow or a GitLab child pipeline.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::exit;
use crate::error::Error;
use crate::export::argo::{self, ArgoKind};
use crate::export::{DEFAULT_IMAGE, Export, gitlab};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// An Argo Workflows Workflow (or WorkflowTemplate, or CronWorkflow) whose tasks run `runner step`.
    Argo {
        /// The pipeline (optional when the repository has one).
        pipeline: Option<String>,
        #[command(flatten)]
        common: Common,
        /// A WorkflowTemplate (stored in the cluster, submitted by name).
        #[arg(long, conflicts_with = "cron")]
        template: bool,
        /// A CronWorkflow on the pipeline's `on.schedule`.
        #[arg(long)]
        cron: bool,
    },
    /// A GitLab child pipeline with one job per step, `needs:` mirroring the DAG.
    Gitlab {
        /// The pipeline (optional when the repository has one).
        pipeline: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The container image: it must hold the repository and `runner`.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    image: String,
    /// The stack every task runs on (`runner step --stack`): one with an
    /// `s3` artifact store lets tasks on different machines share outputs.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    let (pipeline, common) = match command {
        Command::Argo {
            pipeline, common, ..
        }
        | Command::Gitlab { pipeline, common } => (pipeline, common),
    };
    let (_, loaded) = super::load(root, None)?;
    if !loaded.report.is_empty() {
        super::print_problems(&loaded);
        return Ok(exit::INVALID);
    }
    let (doc, dag) = loaded.pipeline(pipeline.as_deref())?;
    if let Some(stack) = &common.stack {
        crate::plan::choose_stack(&loaded, Some(stack))?;
    }
    let Some(dag) = dag else {
        super::print_problems(&loaded);
        return Ok(exit::INVALID);
    };
    let export = Export {
        pipeline: &doc.spec,
        dag,
        image: &common.image,
        stack: common.stack.as_deref(),
    };
    let text = match command {
        Command::Argo { template, cron, .. } => {
            let kind = match (template, cron) {
                (true, _) => ArgoKind::WorkflowTemplate,
                (_, true) => ArgoKind::CronWorkflow,
                _ => ArgoKind::Workflow,
            };
            argo::render_yaml(&export, kind)?
        }
        Command::Gitlab { .. } => gitlab::render_yaml(&export)?,
    };
    match &common.output {
        Some(path) => crate::files::write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(exit::SUCCESS)
}
