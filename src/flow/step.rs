//! A step run alone (`runner step`, what an exported Argo task or GitLab
//! job runs): the entries and outputs of the steps it reads come from the
//! artifact store before it, its own go there after it.

use std::path::{Path, PathBuf};

use super::Sink;
use crate::cache::Cache;
use crate::cache::remote::Remote;
use crate::error::Error;
use crate::exec::events::Severity;
use crate::plan::{Decision, Plan};

/// The local store of a plan's stack.
fn store_dir(root: &Path, plan: &Plan) -> PathBuf {
    root.join(
        plan.store_dir
            .as_deref()
            .unwrap_or(crate::cache::DEFAULT_STORE),
    )
}

/// Before a step runs alone on a stack with a remote store: the outputs of
/// the steps it reads from (and its own, which may make it up to date), as
/// `runner.lock` records them, fetched into the local store.
pub(super) fn pull_inputs(
    root: &Path,
    plan: &Plan,
    cache: &Cache,
    remote: &Remote,
) -> Result<(), Error> {
    let mut hashes = Vec::new();
    for (i, decision) in plan.decisions.iter().enumerate() {
        if matches!(decision, Decision::NotSelected) {
            continue;
        }
        for step in plan.steps[i].upstream.iter().copied().chain([i]) {
            if let Some(entry) = cache.entry(&plan.pipeline, &plan.steps[step].name) {
                hashes.extend(entry.outputs.values().map(|d| d.hash.clone()));
            }
        }
    }
    remote.pull(&store_dir(root, plan), &hashes)?;
    Ok(())
}

/// The commit a distributed run's tasks share their entries under.
fn commit_of(plan: &Plan) -> &str {
    plan.git.as_ref().map_or("", |g| g.sha.as_str())
}

/// The runner.lock entries of the steps the selected ones read, as their
/// tasks shared them for this commit; true when one was taken.
pub(super) fn adopt_upstream_entries(
    plan: &Plan,
    cache: &Cache,
    remote: &Remote,
) -> Result<bool, Error> {
    let mut adopted = false;
    let mut upstream: Vec<usize> = plan
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d, Decision::NotSelected))
        .flat_map(|(i, _)| plan.steps[i].upstream.iter().copied())
        .collect();
    upstream.sort_unstable();
    upstream.dedup();
    for u in upstream {
        let name = &plan.steps[u].name;
        if let Some(entry) = remote.get_entry(commit_of(plan), &plan.pipeline, name)?
            && cache.entry(&plan.pipeline, name).as_ref() != Some(&entry)
        {
            cache.adopt(&plan.pipeline, name, entry)?;
            adopted = true;
        }
    }
    Ok(adopted)
}

/// After a step ran alone: its outputs pushed to the remote store, so the
/// next task (on another machine) finds them, and its runner.lock entry
/// shared for this commit. A failed push fails the step.
pub(super) fn push_outputs(
    root: &Path,
    plan: &Plan,
    cache: &Cache,
    remote: &Remote,
    sink: &mut Sink,
) -> bool {
    let mut hashes = Vec::new();
    for (i, decision) in plan.decisions.iter().enumerate() {
        if matches!(decision, Decision::NotSelected) {
            continue;
        }
        let step = &plan.steps[i];
        if let Some(entry) = cache.entry(&plan.pipeline, &step.name) {
            // `cache: false` outputs are never stored: nothing to push.
            hashes.extend(
                entry
                    .outputs
                    .iter()
                    .filter(|(path, _)| !step.uncached.contains(*path))
                    .map(|(_, d)| d.hash.clone()),
            );
        }
    }
    let shared = plan
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d, Decision::NotSelected))
        .filter_map(|(i, _)| {
            let name = &plan.steps[i].name;
            cache.entry(&plan.pipeline, name).map(|entry| (name, entry))
        })
        .try_for_each(|(name, entry)| {
            remote.put_entry(commit_of(plan), &plan.pipeline, name, &entry)
        });
    if let Err(err) = shared {
        sink.notice(
            Severity::Error,
            format!("the step's runner.lock entry was not shared: {err}"),
        );
        return false;
    }
    match remote.push(&store_dir(root, plan), &hashes) {
        Ok(transfer) => {
            sink.notice(
                Severity::Info,
                format!(
                    "pushed {} object(s) to {} ({} already there)",
                    transfer.copied,
                    remote.url(),
                    transfer.present
                ),
            );
            true
        }
        Err(err) => {
            sink.notice(
                Severity::Error,
                format!("the step's outputs were not pushed: {err}"),
            );
            false
        }
    }
}

/// Before a step runs alone: the outputs of the steps it reads from, as
/// `runner.lock` records them, put back from the artifact store (in a fresh
/// checkout, such as an Argo pod, they are not in the work tree).
pub(super) fn restore_inputs(plan: &Plan, cache: &Cache) -> Result<(), Error> {
    for (i, decision) in plan.decisions.iter().enumerate() {
        if !matches!(decision, Decision::Run { .. }) {
            continue;
        }
        for &upstream in &plan.steps[i].upstream {
            if !cache.restore(&plan.pipeline, &plan.steps[upstream].name)? {
                let name = &plan.steps[upstream].name;
                return Err(Error::MissingInput {
                    step: plan.steps[i].name.clone(),
                    upstream: name.clone(),
                    pipeline: plan.pipeline.clone(),
                });
            }
        }
    }
    Ok(())
}
