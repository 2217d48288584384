//! `runner rollback`: serve an earlier Deployment of a service again, and
//! commit it as the state in Git.

use std::path::Path;

use crate::deploy::Deployed;
use crate::error::Error;
use crate::plan::choose_stack;
use crate::promote::short;
use crate::serving::{RollbackRequest, RollbackTo};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service to roll back.
    service: String,
    /// Put back the Deployment of this commit (a sha, tag, `HEAD~2`).
    #[arg(long, value_name = "COMMIT", conflicts_with = "steps")]
    to: Option<String>,
    /// Go back this many models in the Deployment file's history.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    steps: u16,
    /// The stack (default: `local`, or the only one).
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Serve and write the earlier Deployment; do not commit it.
    #[arg(long)]
    no_commit: bool,
    /// Push the commit (also: the stack's `git.push`).
    #[arg(long)]
    push: bool,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        super::print_problems(&loaded);
        return Ok(super::exit::INVALID);
    }
    let stack = choose_stack(&loaded, args.stack.as_deref())?;
    let to = match &args.to {
        Some(commit) => RollbackTo::Commit(commit.clone()),
        None => RollbackTo::Steps(usize::from(args.steps)),
    };
    let done = crate::serving::rollback(&RollbackRequest {
        root,
        loaded: &loaded,
        stack: &stack,
        service: &args.service,
        to,
        commit: !args.no_commit,
        push: args.push,
    })?;
    let how = match done.deployed {
        Deployed::Updated(_) => "now serves",
        Deployed::Started(_) => "started again with",
        Deployed::Unchanged(_) => "already serves",
    };
    println!(
        "{}: {how} {} (was {}) at {}, as deployed in {}; {}",
        args.service,
        short(&done.to.model.digest),
        short(&done.from),
        done.deployed.record().url(),
        done.taken_from.chars().take(12).collect::<String>(),
        done.write_back
    );
    Ok(super::exit::SUCCESS)
}
