//! `runner push` / `runner pull`: the outputs `runner.lock` records, copied
//! between the local store and the stack's `s3` artifact store (like
//! `dvc push` / `dvc pull`). A pull fills the local store; the next `run`
//! or `step` restores from it instead of recomputing.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::exit;
use crate::cache::remote::Remote;
use crate::cache::{Cache, DEFAULT_STORE};
use crate::error::Error;
use crate::plan::{choose_stack, normalized};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this pipeline's outputs (default: every pipeline in runner.lock).
    pipeline: Option<String>,
    /// The stack whose artifact store to use (default: `local`, or the only one).
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
}

/// Which way to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
}

pub fn run(root: &Path, args: &Args, direction: Direction) -> Result<u8, Error> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        super::print_problems(&loaded);
        return Ok(exit::INVALID);
    }
    let stack = choose_stack(&loaded, args.stack.as_deref())?;
    let remote = Remote::open(&stack.artifact_store)?.ok_or_else(|| {
        Error::usage(format!(
            "stack `{}` keeps its artifacts on this machine: set `artifact_store: {{type: s3, bucket: NAME}}` to share them",
            stack.name
        ))
    })?;
    let cache = Cache::open(root, false)?;
    if direction == Direction::Pull {
        // The entries the tasks of a distributed run of this commit shared
        // (`runner step`): after a pull, this checkout has what the run did.
        let commit = crate::git::head(root).map(|g| g.sha).unwrap_or_default();
        let mut adopted = 0;
        for doc in &loaded.specs.pipelines {
            if args.pipeline.as_ref().is_some_and(|p| *p != doc.spec.name) {
                continue;
            }
            for step in doc.spec.steps.keys() {
                if let Some(entry) = remote.get_entry(&commit, &doc.spec.name, step)?
                    && cache.entry(&doc.spec.name, step).as_ref() != Some(&entry)
                {
                    cache.adopt(&doc.spec.name, step, entry)?;
                    adopted += 1;
                }
            }
        }
        if adopted > 0 {
            cache.recorded()?.save()?;
            eprintln!(
                "{adopted} runner.lock entr{} taken from the steps run for this commit",
                if adopted == 1 { "y" } else { "ies" }
            );
        }
    }
    // `cache: false` outputs are never stored: nothing to push or pull.
    let uncached: HashMap<&str, HashSet<String>> = loaded
        .specs
        .pipelines
        .iter()
        .map(|doc| {
            let paths = doc.spec.steps.values().flat_map(|step| {
                step.outputs
                    .values()
                    .filter(|output| !output.cache)
                    .map(|output| normalized(&output.path))
            });
            (doc.spec.name.as_str(), paths.collect())
        })
        .collect();
    let hashes: Vec<String> = {
        let lock = cache.recorded()?;
        lock.file
            .pipelines
            .iter()
            .filter(|(name, _)| args.pipeline.as_ref().is_none_or(|p| p == *name))
            .flat_map(|(name, pipeline)| {
                pipeline
                    .steps
                    .values()
                    .flat_map(|step| step.outputs.iter())
                    .filter(|(path, _)| {
                        !uncached
                            .get(name.as_str())
                            .is_some_and(|paths| paths.contains(*path))
                    })
                    .map(|(_, digest)| digest.hash.clone())
            })
            .collect()
    };
    let local = root.join(
        stack
            .artifact_store
            .path
            .as_deref()
            .unwrap_or(DEFAULT_STORE),
    );
    let (transfer, verb) = match direction {
        Direction::Push => (remote.push(&local, &hashes)?, "pushed to"),
        Direction::Pull => (remote.pull(&local, &hashes)?, "pulled from"),
    };
    eprintln!(
        "{} object(s) {verb} {}, {} already there",
        transfer.copied,
        remote.url(),
        transfer.present
    );
    if transfer.missing.is_empty() {
        return Ok(exit::SUCCESS);
    }
    let place = match direction {
        Direction::Push => "in the local store (`runner run` builds them)",
        Direction::Pull => "in the remote store (`runner push` where they were built)",
    };
    eprintln!(
        "error: {} output(s) of runner.lock are not {place}: {}",
        transfer.missing.len(),
        transfer
            .missing
            .iter()
            .map(|h| crate::promote::short(h))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(exit::STEP_FAILED)
}
