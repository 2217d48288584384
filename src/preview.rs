//! A pull request's plan, read from two commits' git objects (no checkout):
//! what changed in the pipeline, what would run and why, the gate against
//! what production serves at the base, the deployment it would make, and
//! the metrics against the base. Nothing from the repository executes:
//! specs are parsed, templates rendered, files hashed, and that is all.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cache::hash::Digest;
use crate::cache::lock::LockFile;
use crate::error::Error;
use crate::gate::{self, Check, GateInput};
use crate::git::GitInfo;
use crate::metrics::MetricRow;
use crate::plan::{Decision, Observed, OutputState, Plan, PlanOptions, PlannedStep, Selection};
use crate::spec::types::Deployment;
use crate::spec::{Loaded, Source};

/// Everything `runner plan --base` reports.
pub struct Preview {
    /// How the two commits are named in the report: `main (1a2b3c4)`.
    pub base: String,
    pub head: String,
    /// Head's plan, decided against head's `runner.lock` and files.
    pub plan: Plan,
    /// Why base has nothing to compare with, when it has not.
    pub base_note: Option<String>,
    pub changes: Vec<StepChange>,
    pub params: Vec<ParamChange>,
    pub gate: Option<GatePreview>,
    pub deploy: Option<DeployPreview>,
    /// Head's recorded metrics against base's (this pipeline's).
    pub metrics: Vec<MetricRow>,
}

/// A step added, removed or changed between base and head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum StepChange {
    Added { step: String },
    Removed { step: String },
    Changed { step: String, what: Vec<String> },
}

/// A pipeline param whose value differs (`None`: the side does not have it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub param: String,
    pub base: Option<serde_json::Value>,
    pub head: Option<serde_json::Value>,
}

/// The gate: its checks, what serves at base, and the outcome when head's
/// recorded metrics are those a run would promote with.
#[derive(Debug, Clone, Serialize)]
pub struct GatePreview {
    pub checks: Vec<String>,
    /// Checks that head adds or drops against base's gate.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub outcome: GateOutcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GateOutcome {
    /// Steps that report metrics would run: the gate is checked after them.
    AfterRun { steps: Vec<String> },
    /// Evaluated with head's recorded metrics.
    Evaluated { promote: bool, checks: Vec<Check> },
    /// A check that cannot be evaluated (a metric nobody reports, ...).
    Error { message: String },
}

/// The deployment a promotion would make.
#[derive(Debug, Clone, Serialize)]
pub struct DeployPreview {
    pub service: String,
    pub stack: String,
    pub model: String,
    /// What serves at base: the Deployment file there.
    pub production: Option<Deployment>,
    /// The candidate's digest when head's runner.lock records the model and
    /// its step would not run; `None`: the run builds it.
    pub candidate: Option<String>,
}

impl Preview {
    /// Plans `pipeline` at `head` (already loaded and valid) against `base`.
    pub fn build(
        root: &Path,
        base: &Source,
        head: &Source,
        head_loaded: &Loaded,
        pipeline: Option<&str>,
        options: PlanOptions,
        selection: &Selection,
    ) -> Result<Preview, Error> {
        let head_options = PlanOptions {
            git: commit_info(head),
            ..options
        };
        let mut plan = Plan::build(head_loaded, root, pipeline, &head_options)?;
        let head_lock = LockFile::read(head)?;
        let at_head = AtCommit {
            source: head,
            lock: &head_lock,
            digests: RefCell::default(),
        };
        plan.decide(&at_head, selection)?;

        let base_loaded = crate::spec::load(base)?;
        let base_lock = LockFile::read(base)?;
        let base_options = PlanOptions {
            git: commit_info(base),
            require_secrets: false,
            params: Vec::new(),
            ..head_options
        };
        let (base_plan, base_note) = if !base_loaded.report.is_empty() {
            let n = base_loaded.report.diagnostics.len();
            (
                None,
                Some(format!(
                    "the specs at {} have {n} problem{}, so spec changes are not shown",
                    base.describe(),
                    if n == 1 { "" } else { "s" }
                )),
            )
        } else if base_loaded.pipeline(Some(&plan.pipeline)).is_err() {
            (
                None,
                Some(format!(
                    "pipeline `{}` is new: {} does not have it",
                    plan.pipeline,
                    base.describe()
                )),
            )
        } else {
            match Plan::build(&base_loaded, root, Some(&plan.pipeline), &base_options) {
                Ok(base_plan) => (Some(base_plan), None),
                Err(err) => (
                    None,
                    Some(format!("cannot plan {}: {err}", base.describe())),
                ),
            }
        };
        let changes = base_plan
            .as_ref()
            .map(|b| step_changes(b, &plan))
            .unwrap_or_default();
        let params = base_plan
            .as_ref()
            .map(|b| param_changes(&b.params, &plan.params))
            .unwrap_or_default();
        let production = plan.promotion.as_ref().and_then(|p| {
            base_loaded
                .specs
                .deployments
                .iter()
                .map(|d| &d.spec)
                .find(|d| d.service == p.spec.service.name && d.stack == plan.stack)
                .cloned()
        });
        let gate = gate_preview(&plan, base_plan.as_ref(), &head_lock, production.as_ref());
        let deploy = plan.promotion.as_ref().map(|p| DeployPreview {
            service: p.spec.service.name.clone(),
            stack: plan.stack.clone(),
            model: p.spec.model.clone(),
            production,
            candidate: candidate(&plan, &head_lock),
        });
        let metrics = crate::metrics::compare(Some(&base_lock), &head_lock, Some(&plan.pipeline));
        Ok(Preview {
            base: base.describe(),
            head: head.describe(),
            plan,
            base_note,
            changes,
            params,
            gate,
            deploy,
            metrics,
        })
    }
}

/// A commit as templates see it (`git.sha`); the work tree reads HEAD.
fn commit_info(source: &Source) -> Option<GitInfo> {
    match source {
        Source::WorkTree { .. } => None,
        Source::Commit { commit, .. } => Some(GitInfo {
            sha: commit.to_string(),
            branch: None,
        }),
    }
}

/// A commit's files and `runner.lock`, as `Plan::decide` compares with.
struct AtCommit<'a> {
    source: &'a Source,
    lock: &'a LockFile,
    /// A dep many steps share is hashed once.
    digests: RefCell<BTreeMap<String, Option<Digest>>>,
}

impl Observed for AtCommit<'_> {
    fn with_lock<R>(&self, f: impl FnOnce(&LockFile) -> R) -> Result<R, Error> {
        Ok(f(self.lock))
    }

    fn digest(&self, path: &str) -> Result<Option<Digest>, Error> {
        if let Some(known) = self.digests.borrow().get(path) {
            return Ok(known.clone());
        }
        let digest = self.source.digest(path)?;
        self.digests
            .borrow_mut()
            .insert(path.to_string(), digest.clone());
        Ok(digest)
    }

    fn missing(&self, path: &str) -> String {
        format!(
            "dep {path} is not committed at {}, so it cannot be compared",
            self.source.describe()
        )
    }

    /// Outputs are built, not committed: one the commit lacks counts as
    /// there (a run restores it from the store); one it has must match.
    fn output(&self, path: &str, recorded: &Digest) -> Result<OutputState, Error> {
        Ok(match self.digest(path)? {
            Some(now) if now.hash != recorded.hash => OutputState::Changed,
            _ => OutputState::Current,
        })
    }
}

fn step_changes(base: &Plan, head: &Plan) -> Vec<StepChange> {
    let mut changes = Vec::new();
    for step in &head.steps {
        match base.steps.iter().find(|b| b.name == step.name) {
            None => changes.push(StepChange::Added {
                step: step.name.clone(),
            }),
            Some(was) => {
                let what = differences(was, step);
                if !what.is_empty() {
                    changes.push(StepChange::Changed {
                        step: step.name.clone(),
                        what,
                    });
                }
            }
        }
    }
    for was in &base.steps {
        if !head.steps.iter().any(|s| s.name == was.name) {
            changes.push(StepChange::Removed {
                step: was.name.clone(),
            });
        }
    }
    changes
}

/// What a person reviewing the change needs to see of one step.
fn differences(was: &PlannedStep, now: &PlannedStep) -> Vec<String> {
    let mut what = Vec::new();
    if was.command != now.command {
        what.push(format!("command `{}` -> `{}`", was.command, now.command));
    }
    let listed = |old: &[String], new: &[String], name: &str, what: &mut Vec<String>| {
        let added: Vec<&str> = new
            .iter()
            .filter(|x| !old.contains(x))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|x| !new.contains(x))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            what.push(format!("{name} added: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            what.push(format!("{name} removed: {}", removed.join(", ")));
        }
    };
    listed(&was.deps, &now.deps, "deps", &mut what);
    let outputs =
        |s: &PlannedStep| -> Vec<String> { s.outputs.iter().map(|o| o.1.clone()).collect() };
    listed(&outputs(was), &outputs(now), "outputs", &mut what);
    let params = |s: &PlannedStep| -> Vec<String> { s.params.keys().cloned().collect() };
    listed(&params(was), &params(now), "params", &mut what);
    if was.key_env != now.key_env {
        what.push("env changed".to_string());
    }
    if was.metrics != now.metrics {
        what.push(format!(
            "metrics file {} -> {}",
            was.metrics.as_deref().unwrap_or("none"),
            now.metrics.as_deref().unwrap_or("none")
        ));
    }
    if was.cache != now.cache {
        what.push(format!("cache {} -> {}", was.cache, now.cache));
    }
    if was.timeout != now.timeout || was.retries != now.retries {
        what.push("timeout or retries changed".to_string());
    }
    what
}

fn param_changes(
    base: &indexmap::IndexMap<String, serde_json::Value>,
    head: &indexmap::IndexMap<String, serde_json::Value>,
) -> Vec<ParamChange> {
    let mut changes: Vec<ParamChange> = head
        .iter()
        .filter(|(name, value)| base.get(*name) != Some(value))
        .map(|(name, value)| ParamChange {
            param: name.clone(),
            base: base.get(name).cloned(),
            head: Some(value.clone()),
        })
        .collect();
    changes.extend(
        base.iter()
            .filter(|(name, _)| !head.contains_key(*name))
            .map(|(name, value)| ParamChange {
                param: name.clone(),
                base: Some(value.clone()),
                head: None,
            }),
    );
    changes
}

fn gate_preview(
    plan: &Plan,
    base_plan: Option<&Plan>,
    head_lock: &LockFile,
    production: Option<&Deployment>,
) -> Option<GatePreview> {
    let promotion = plan.promotion.as_ref()?;
    let checks = promotion.spec.gate.clone();
    let base_checks = base_plan
        .and_then(|b| b.promotion.as_ref())
        .map(|p| p.spec.gate.clone())
        .unwrap_or_default();
    let rerun: Vec<String> = plan
        .steps
        .iter()
        .zip(&plan.decisions)
        .filter(|(step, decision)| {
            step.metrics.is_some() && matches!(decision, Decision::Run { .. })
        })
        .map(|(step, _)| step.name.clone())
        .collect();
    let outcome = if !rerun.is_empty() {
        GateOutcome::AfterRun { steps: rerun }
    } else {
        match crate::promote::run_metrics(plan, head_lock) {
            Err(message) => GateOutcome::Error { message },
            Ok(metrics) => {
                let input = GateInput {
                    metrics: &metrics,
                    params: &plan.params,
                    production,
                    git: plan.git.as_ref(),
                };
                match gate::evaluate(&checks, &input) {
                    Ok(checks) => GateOutcome::Evaluated {
                        promote: checks.iter().all(|c| c.passed),
                        checks,
                    },
                    Err(err) => GateOutcome::Error {
                        message: err.to_string(),
                    },
                }
            }
        }
    };
    Some(GatePreview {
        added: checks
            .iter()
            .filter(|c| !base_checks.contains(c))
            .cloned()
            .collect(),
        removed: base_checks
            .iter()
            .filter(|c| !checks.contains(c))
            .cloned()
            .collect(),
        checks,
        outcome,
    })
}

/// The model head's runner.lock records, when its step would not run.
fn candidate(plan: &Plan, lock: &LockFile) -> Option<String> {
    let promotion = plan.promotion.as_ref()?;
    let index = plan.steps.iter().position(|s| s.name == promotion.step)?;
    if matches!(plan.decisions[index], Decision::Run { .. }) {
        return None;
    }
    lock.pipelines
        .get(&plan.pipeline)?
        .steps
        .get(&promotion.step)?
        .outputs
        .get(&promotion.model_path)
        .map(|d| d.hash.clone())
}
