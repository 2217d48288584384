//! A pull request's plan, read from two commits' git objects (no checkout):
//! what changed in the pipeline, what would run and why, the gate against
//! what production serves at the base, the deployment it would make, and
//! the metrics against the base. Nothing from the repository executes:
//! specs are parsed, templates rendered, files hashed, and that is all.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use git2::{ObjectType, Repository, Tree};

use crate::cache::hash::{Digest, directory_digest};
use crate::cache::lock::LockFile;
use crate::error::{Error, PreviewError};
use crate::gate::{self, Check, GateInput};
use crate::git::GitInfo;
use crate::metrics::MetricRow;
use crate::plan::{
    Decision, Observed, OutputState, Plan, PlanOptions, PlannedStep, Selection, flatten_params,
};
use crate::spec::source::{SYMLINK_MODE, commit_tree, join};
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
    /// Deps whose committed bytes are not what a checkout holds (Git LFS,
    /// CRLF conversion, symlinks out of the repository), by path: assumed
    /// unchanged.
    pub not_compared: BTreeMap<String, String>,
    pub changes: Vec<StepChange>,
    pub params: Vec<ParamChange>,
    pub gate: Option<GatePreview>,
    pub deploy: Option<DeployPreview>,
    /// Head's recorded metrics against base's (this pipeline's).
    pub metrics: Vec<MetricRow>,
    /// Each step's plots, head's data over base's.
    pub plots: Vec<PlotPreview>,
}

/// One plot of the preview: head's data, and base's to draw beneath it.
pub struct PlotPreview {
    pub step: String,
    pub path: String,
    /// Head's data, or why it cannot be drawn (not written yet, malformed).
    pub head: Result<crate::plots::PlotData, String>,
    pub base: Option<crate::plots::PlotData>,
}

/// Reads a plot's data file from a commit (or the work tree).
pub fn plot_at(
    source: &Source,
    plot: &crate::spec::types::Plot,
) -> Result<crate::plots::PlotData, String> {
    let options = crate::plots::PlotOptions {
        x: plot.x.clone(),
        y: plot.y.clone(),
        title: plot.title.clone(),
        x_label: plot.x_label.clone(),
        y_label: plot.y_label.clone(),
    };
    let format = crate::plots::Format::from_path(Path::new(&plot.path))
        .ok_or_else(|| format!("{}: not CSV, TSV, JSON or YAML", plot.path))?;
    match source.read(&plot.path) {
        Ok(crate::spec::source::FileText::Text(text)) => {
            crate::plots::parse(&text, format, &plot.path, &options).map_err(|e| e.to_string())
        }
        Ok(_) => Err(format!("{} is not a text file", plot.path)),
        Err(_) => Err(format!("{} is not in {}", plot.path, source.describe())),
    }
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
        let at_head = AtCommit::new(head, &head_lock, &plan.pipeline)?;
        plan.decide(&at_head, selection)?;
        let not_compared = at_head.not_compared.into_inner();

        let base_loaded = crate::spec::load(base)?;
        let base_lock = LockFile::read(base)?;
        // Base is rendered as head is (same commit info, run id and `-p`
        // overrides), so only what the specs change shows as a change.
        let base_options = PlanOptions {
            run_id: Some(plan.run_id.clone()),
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
        let metrics =
            crate::cache::metrics::compare(Some(&base_lock), &head_lock, Some(&plan.pipeline));
        let plots = plan
            .steps
            .iter()
            .flat_map(|step| step.plots.iter().map(move |plot| (step, plot)))
            .map(|(step, plot)| PlotPreview {
                step: step.name.clone(),
                path: plot.path.clone(),
                head: plot_at(head, plot),
                base: plot_at(base, plot).ok(),
            })
            .collect();
        Ok(Preview {
            base: base.describe(),
            head: head.describe(),
            plan,
            base_note,
            not_compared,
            changes,
            params,
            gate,
            deploy,
            metrics,
            plots,
        })
    }
}

/// A commit as templates see it (`git.sha`).
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
    repo: &'a Repository,
    tree: Tree<'a>,
    /// Where the runner root sits in the git repository.
    prefix: &'a str,
    label: String,
    lock: &'a LockFile,
    pipeline: String,
    /// A dep many steps share is hashed once.
    digests: RefCell<BTreeMap<String, Option<Digest>>>,
    /// Deps whose committed bytes are not what a checkout holds, and why.
    not_compared: RefCell<BTreeMap<String, String>>,
}

/// What a commit says of a path.
enum Committed {
    Found(Digest),
    Missing,
    /// Its committed bytes differ from a checkout's: why.
    Unknown(String),
}

impl<'a> AtCommit<'a> {
    fn new(source: &'a Source, lock: &'a LockFile, pipeline: &str) -> Result<AtCommit<'a>, Error> {
        let Source::Commit {
            repo,
            commit,
            prefix,
            ..
        } = source
        else {
            return Err(PreviewError::NotACommit.into());
        };
        Ok(AtCommit {
            repo,
            tree: commit_tree(repo, *commit)?,
            prefix,
            label: source.describe(),
            lock,
            pipeline: pipeline.to_string(),
            digests: RefCell::default(),
            not_compared: RefCell::default(),
        })
    }

    /// The digest a run computes from a checkout of the commit: files as
    /// checked out, symlinks inside the repository followed.
    fn committed(&self, path: &str, hops: usize) -> Result<Committed, Error> {
        let full = join(self.prefix, path);
        let Ok(entry) = self.tree.get_path(Path::new(&full)) else {
            return Ok(Committed::Missing);
        };
        if entry.filemode() == SYMLINK_MODE {
            return Ok(match self.resolve(path, entry.id(), hops)? {
                Ok(target) => self.committed(&target, hops + 1)?,
                Err(why) => Committed::Unknown(why),
            });
        }
        match entry.kind() {
            Some(ObjectType::Blob) => self.file(path, entry.id()),
            Some(ObjectType::Tree) => self.directory(path, entry.id(), hops),
            _ => Ok(Committed::Unknown("a submodule".to_string())),
        }
    }

    fn file(&self, path: &str, id: git2::Oid) -> Result<Committed, Error> {
        // A filter (Git LFS stores a pointer) or a line-ending conversion
        // makes the checkout differ from the blob.
        let full = join(self.prefix, path);
        let attr = |name: &str| {
            self.repo
                .get_attr(
                    Path::new(&full),
                    name,
                    git2::AttrCheckFlags::INDEX_THEN_FILE,
                )
                .ok()
                .flatten()
                .map(str::to_string)
        };
        if let Some(filter) = attr("filter") {
            let why = match filter.as_str() {
                "lfs" => "stored with Git LFS".to_string(),
                other => format!("stored through the `{other}` filter"),
            };
            return Ok(Committed::Unknown(why));
        }
        if attr("eol").as_deref() == Some("crlf") {
            return Ok(Committed::Unknown(
                "checked out with CRLF line endings".to_string(),
            ));
        }
        let blob = self.repo.find_blob(id).map_err(Error::git("read file"))?;
        Ok(Committed::Found(Digest {
            hash: format!("blake3:{}", blake3::hash(blob.content()).to_hex()),
            size: blob.size() as u64,
        }))
    }

    fn directory(&self, path: &str, id: git2::Oid, hops: usize) -> Result<Committed, Error> {
        let tree = self.repo.find_tree(id).map_err(Error::git("read tree"))?;
        let mut files = Vec::new();
        let mut entries = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let name = String::from_utf8_lossy(entry.name_bytes());
                entries.push((format!("{dir}{name}"), entry.id(), entry.filemode()));
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(Error::git("read tree"))?;
        for (rel, id, mode) in entries {
            let inner = format!("{path}/{rel}");
            let found = if mode != SYMLINK_MODE {
                self.file(&inner, id)?
            } else {
                match self.resolve(&inner, id, hops)? {
                    // On disk, a linked directory's files are listed under
                    // the link's name: not one entry.
                    Ok(target)
                        if self
                            .tree
                            .get_path(Path::new(&join(self.prefix, &target)))
                            .is_ok_and(|e| e.kind() == Some(ObjectType::Tree)) =>
                    {
                        Committed::Unknown("a link to a directory".to_string())
                    }
                    Ok(target) => self.committed(&target, hops + 1)?,
                    Err(why) => Committed::Unknown(why),
                }
            };
            match found {
                Committed::Found(digest) => files.push((rel, digest)),
                Committed::Missing => {
                    return Ok(Committed::Unknown(format!(
                        "a directory with a broken symlink ({inner})"
                    )));
                }
                Committed::Unknown(why) => {
                    return Ok(Committed::Unknown(format!(
                        "a directory where {inner} is {why}"
                    )));
                }
            }
        }
        Ok(Committed::Found(directory_digest(files)))
    }

    /// Where a symlink points, as a repo path; `Err(why)` when a checkout
    /// would leave the repository (or loop).
    fn resolve(
        &self,
        path: &str,
        id: git2::Oid,
        hops: usize,
    ) -> Result<Result<String, String>, Error> {
        let blob = self
            .repo
            .find_blob(id)
            .map_err(Error::git("read symlink"))?;
        let target = String::from_utf8_lossy(blob.content()).into_owned();
        if hops >= 8 {
            return Ok(Err("a symlink loop".to_string()));
        }
        let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let joined = if parent.is_empty() {
            target.clone()
        } else {
            format!("{parent}/{target}")
        };
        match crate::spec::paths::normalize(&joined) {
            Ok(resolved) if !target.starts_with('/') => Ok(Ok(resolved)),
            _ => Ok(Err(format!("a symlink out of the repository ({target})"))),
        }
    }

    /// What `runner.lock` recorded for a path, as some step's dep.
    fn recorded(&self, path: &str) -> Option<Digest> {
        self.lock
            .pipelines
            .get(&self.pipeline)?
            .steps
            .values()
            .find_map(|entry| entry.deps.get(path))
            .cloned()
    }
}

impl Observed for AtCommit<'_> {
    fn with_lock<R>(&self, f: impl FnOnce(&LockFile) -> R) -> Result<R, Error> {
        Ok(f(self.lock))
    }

    /// A dep the commit cannot vouch for counts as unchanged, and is listed
    /// in the preview as not compared.
    fn digest(&self, path: &str) -> Result<Option<Digest>, Error> {
        if let Some(known) = self.digests.borrow().get(path) {
            return Ok(known.clone());
        }
        let digest = match self.committed(path, 0)? {
            Committed::Found(digest) => Some(digest),
            Committed::Missing => None,
            Committed::Unknown(why) => {
                self.not_compared.borrow_mut().insert(path.to_string(), why);
                self.recorded(path)
            }
        };
        self.digests
            .borrow_mut()
            .insert(path.to_string(), digest.clone());
        Ok(digest)
    }

    fn missing(&self, path: &str) -> String {
        format!(
            "dep {path} is not committed at {}, so it cannot be compared",
            self.label
        )
    }

    /// Outputs are built, not committed: one the commit lacks counts as
    /// there (a run restores it from the artifact store, or builds it
    /// again when the store lacks it); one it has must match.
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
    listed(&was.checks, &now.checks, "checks", &mut what);
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
    if was.frozen != now.frozen {
        what.push(format!("frozen {} -> {}", was.frozen, now.frozen));
    }
    listed(&was.persist, &now.persist, "persist", &mut what);
    listed(&was.uncached, &now.uncached, "uncached outputs", &mut what);
    let plots =
        |s: &PlannedStep| -> Vec<String> { s.plots.iter().map(|p| p.path.clone()).collect() };
    listed(&plots(was), &plots(now), "plots", &mut what);
    if was.timeout != now.timeout || was.retries != now.retries {
        what.push("timeout or retries changed".to_string());
    }
    what
}

/// Params (nested ones by dotted name) whose values differ.
pub fn param_changes(
    base: &crate::spec::Map<String, serde_json::Value>,
    head: &crate::spec::Map<String, serde_json::Value>,
) -> Vec<ParamChange> {
    let (base, head) = (flatten_params(base), flatten_params(head));
    let mut names: Vec<&String> = base.keys().chain(head.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| base.get(*name) != head.get(*name))
        .map(|name| ParamChange {
            param: name.clone(),
            base: base.get(name).cloned(),
            head: head.get(name).cloned(),
        })
        .collect()
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
            Err(err) => GateOutcome::Error {
                message: err.to_string(),
            },
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
    lock.step(&plan.pipeline, &promotion.step)?
        .outputs
        .get(&promotion.model_path)
        .map(|d| d.hash.clone())
}
