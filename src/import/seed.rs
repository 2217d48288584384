//! dvc.lock carried into runner.lock: a stage whose command, params, deps
//! and outputs are what dvc.lock records (md5s checked as DVC 3 computes
//! them) is recorded as having run, with runner's blake3 hashes of the same
//! files, so the first `runner run` does not redo DVC's work. Every other
//! stage says why it will rerun once.

use std::path::Path;

use super::dvc::{Origin, join_repo};
use super::dvc_lock::{self, LockFile, LockStage};
use crate::cache::Cache;
use crate::cache::lock::StepLock;
use crate::error::Error;
use crate::plan::{Plan, PlanOptions};
use crate::spec::Loaded;

/// What became of each step.
#[derive(Debug, Default)]
pub struct Seeded {
    /// Steps recorded in runner.lock as up to date.
    pub carried: Vec<String>,
    /// Steps that run once, and why.
    pub reruns: Vec<(String, String)>,
}

/// Records, for each step of `pipeline` whose DVC stage matches the work
/// tree, an entry in runner.lock (and its outputs in the store). `loaded`
/// is the work tree's specs, the imported pipeline among them.
pub fn seed(
    root: &Path,
    loaded: &Loaded,
    pipeline: &str,
    origins: &[Origin],
    lock: &LockFile,
) -> Result<Seeded, Error> {
    let plan = Plan::build(loaded, root, Some(pipeline), &PlanOptions::default())?;
    crate::cache::init_state_dir(root);
    let cache = Cache::open(root, false)?.with_store(root, plan.store_dir.as_deref());
    let mut seeded = Seeded::default();
    for step in &plan.steps {
        let origin = origins.iter().find(|o| o.step == step.name);
        let stage = origin.and_then(|o| lock.stages.get(&o.stage).map(|s| (o, s)));
        let why = match stage {
            None => Some("not in dvc.lock".to_string()),
            Some((origin, stage)) => mismatch(root, origin, stage, step),
        };
        if let Some(why) = why {
            seeded.reruns.push((step.name.clone(), why));
            continue;
        }
        let entry = StepLock {
            command: step.command.clone(),
            env: step.key_env.clone(),
            params: step.params.clone(),
            deps: cache.hash_deps(&step.deps)?,
            checks: step.checks.clone(),
            ..StepLock::default()
        };
        let outputs = step
            .outputs
            .iter()
            .map(|(_, path)| (path.as_str(), !step.uncached.contains(path)));
        cache.record(
            &plan.pipeline,
            &step.name,
            outputs,
            step.metrics.as_deref(),
            entry,
        )?;
        seeded.carried.push(step.name.clone());
    }
    cache.finish(&plan.pipeline, plan.steps.iter().map(|s| s.name.as_str()))?;
    Ok(seeded)
}

/// Why a stage's dvc.lock entry does not describe the work tree and the
/// step runner will run, or `None` when it does.
fn mismatch(
    root: &Path,
    origin: &Origin,
    stage: &LockStage,
    step: &crate::plan::PlannedStep,
) -> Option<String> {
    for (file, values) in &stage.params {
        let path = join_repo(&origin.wdir, &[file]).unwrap_or_default();
        let now: Option<serde_json::Value> = std::fs::read_to_string(root.join(&path))
            .ok()
            .and_then(|text| serde_saphyr::from_str(&text).ok());
        for (key, was) in values {
            let current = now
                .as_ref()
                .and_then(|doc| key.split('.').try_fold(doc, |value, part| value.get(part)));
            if current != Some(was) {
                return Some(format!("param {key} of {path} changed since dvc.lock"));
            }
        }
    }
    // After the params: a param in `${}` changes the command too.
    if stage.cmd != origin.cmd {
        return Some("its command in dvc.yaml changed since dvc.lock".to_string());
    }
    let recorded = |entries: &[dvc_lock::LockEntry]| -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| join_repo(&origin.wdir, &[&e.path]).ok())
            .collect()
    };
    let (deps, outs) = (recorded(&stage.deps), recorded(&stage.outs));
    let declared = step.deps.iter().filter(|d| !deps.contains(d)).chain(
        step.outputs
            .iter()
            .map(|(_, p)| p)
            .filter(|p| !outs.contains(p)),
    );
    if let Some(path) = declared.into_iter().next() {
        return Some(format!("{path} is not in its dvc.lock entry"));
    }
    let base = root.join(&origin.wdir);
    for entry in stage.deps.iter().chain(&stage.outs) {
        if let Some(why) = dvc_lock::compare_entry(&base, entry).reason() {
            return Some(why.to_string());
        }
    }
    None
}
