//! The Plan: everything a run will execute, with every command rendered,
//! built from validated specs before anything starts. A template that reads
//! an undefined value or a secret that is not set fails here, not half way
//! through a run.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::spec::Map;
use minijinja::value::{Enumerator, Object, Serde};
use minijinja::{Value, context};

use crate::cache::hash::Digest;
use crate::cache::lock::LockFile;
use crate::error::{Error, PlanError};
use crate::spec::expand::{SEPARATOR, group_of};
use crate::spec::types::{
    ArtifactStore, Deployment, ExperimentTracker, GitSettings, ParamRef, Promote, Stack,
};
use crate::spec::{Document, Loaded, Pipeline};
use crate::suggest::hint;
use crate::template::{Templates, shell_words};

/// One step, ready to run.
pub struct PlannedStep {
    pub name: String,
    /// The command as a person reads it (shell text, or quoted argv).
    pub command: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to runner's environment: declared `env` and secrets (the
    /// `RUNNER_*` variables are added when the step starts: a no-op run of
    /// 1,000 steps would otherwise build 6,000 strings it never uses).
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Declared outputs: name and repo-relative path; each must exist after success.
    pub outputs: Vec<(String, String)>,
    /// Outputs (repo paths) left in place when the step starts (`persist: true`);
    /// the others are removed first.
    pub persist: Vec<String>,
    /// Outputs (repo paths) kept out of the store (`cache: false`).
    pub uncached: Vec<String>,
    /// `frozen: true`: never runs; its outputs are used as they are.
    pub frozen: bool,
    /// Plot data files it writes, drawn in reports.
    pub plots: Vec<crate::spec::types::Plot>,
    /// Indexes (into `Plan::steps`) of the steps that must succeed first.
    pub upstream: Vec<usize>,
    /// What keys the cache: declared deps and upstream outputs (normalised
    /// repo paths, sorted, each once), the listed params' values, the
    /// declared env.
    pub deps: Vec<String>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub key_env: BTreeMap<String, String>,
    /// `cache: false` runs the step every time.
    pub cache: bool,
    /// The step's metrics file, when it writes one.
    pub metrics: Option<String>,
    /// Expressions over those metrics that must hold for it to succeed.
    pub checks: Vec<String>,
}

/// The plan's edges the other way, flat: a list per step would be an
/// allocation per step (and a fan-in's source's list grown a dozen times).
pub struct Dependents {
    /// Step `i`'s dependents are `targets[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    targets: Vec<usize>,
}

impl Dependents {
    /// The positions of the steps that list step `step` upstream, in order.
    pub fn of(&self, step: usize) -> &[usize] {
        &self.targets[self.starts[step]..self.starts[step + 1]]
    }
}

/// Whether a step runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Stale: it runs, for these reasons (`dep data/x.csv changed`, ...).
    Run { reasons: Vec<String> },
    /// Up to date once these outputs are restored from the store.
    Restore { outputs: Vec<String> },
    /// Up to date: nothing to do.
    UpToDate,
    /// `frozen: true`: never runs; its outputs are used as they are.
    Frozen,
    /// Left out by `--only`/`--downstream`.
    NotSelected,
}

pub use crate::git::GitInfo;

/// What the pipeline promotes, and what serves in production now.
#[derive(Debug, Clone)]
pub struct PlannedPromotion {
    pub spec: Promote,
    /// The step and output of `promote.model`, and the output's repo path.
    pub step: String,
    pub output: String,
    pub model_path: String,
    /// The Deployment of this service on this stack in the repository, if any.
    pub production: Option<Deployment>,
    /// The stack: its model deployer serves the model, its artifact store
    /// holds it.
    pub stack: Stack,
    /// How the stack writes the deployment state back to Git.
    pub git: GitSettings,
}

/// What `runner run` will do.
pub struct Plan {
    pub run_id: String,
    pub pipeline: String,
    pub root: PathBuf,
    pub stack: String,
    /// The stack's artifact store directory (default `.runner/cache`).
    pub store_dir: Option<String>,
    /// The stack's artifact store: `runner step` pulls and pushes through
    /// its remote, when it has one.
    pub artifact_store: ArtifactStore,
    pub jobs: usize,
    pub params: Map<String, serde_json::Value>,
    pub git: Option<GitInfo>,
    pub steps: Vec<PlannedStep>,
    /// For each step (same order), whether it runs and why; every step runs
    /// until `decide` has compared it with `runner.lock`.
    pub decisions: Vec<Decision>,
    /// Values of every secret the steps receive, to mask them everywhere.
    pub secret_values: Vec<String>,
    pub promotion: Option<PlannedPromotion>,
    /// The stack's experiment tracker, when it has one.
    pub tracker: Option<ExperimentTracker>,
    /// Which run records outlive this run.
    pub retention: Retention,
}

/// Which run records a repository keeps: the newest `keep`, and those of
/// the runs whose models serve now (their Deployments name them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub serving: Vec<String>,
}

/// Records kept when the stack does not say (`orchestrator.keep_runs`):
/// weeks of a training pipeline's runs, a few megabytes of a big one's.
const DEFAULT_KEEP_RUNS: usize = 100;

/// Choices from the command line.
#[derive(Debug, Default)]
pub struct PlanOptions {
    /// `-p NAME=VALUE`, in order; later ones win.
    pub params: Vec<String>,
    pub stack: Option<String>,
    pub jobs: Option<usize>,
    /// A run executes steps: every secret they declare must be set. A plan
    /// only reads (a pull request from a fork gets no secrets, and may still
    /// be planned).
    pub require_secrets: bool,
    /// The commit the plan is for, when it is not the checkout's HEAD
    /// (`runner plan --base/--head` reads commits, not the work tree).
    pub git: Option<GitInfo>,
    /// The run id templates see (`run.id`), when it must be a given one: a
    /// preview renders base and head alike, so only spec changes differ.
    pub run_id: Option<String>,
}

impl Plan {
    /// Every dep and output path of the plan's steps, each once: what its
    /// decision looks at.
    pub fn observed_paths(&self) -> Vec<String> {
        let mut seen = foldhash::HashSet::default();
        self.steps
            .iter()
            .flat_map(|s| s.deps.iter().chain(s.outputs.iter().map(|(_, path)| path)))
            .filter(|path| seen.insert(path.as_str()))
            .cloned()
            .collect()
    }

    /// A test of whether a step of this plan writes a path: one of its
    /// outputs (or metrics files) is the path, is in it or holds it.
    pub fn writes(&self) -> impl Fn(&str) -> bool + '_ {
        let mut written = foldhash::HashSet::default();
        // The directories a written path is in.
        let mut holding = foldhash::HashSet::default();
        for path in self.steps.iter().flat_map(|s| {
            s.outputs
                .iter()
                .map(|(_, path)| path.as_str())
                .chain(s.metrics.as_deref())
        }) {
            written.insert(path);
            holding.extend(path.match_indices('/').map(|(at, _)| &path[..at]));
        }
        move |path: &str| {
            written.contains(path)
                || holding.contains(path)
                || path
                    .match_indices('/')
                    .any(|(at, _)| written.contains(&path[..at]))
        }
    }

    /// Plans a run of `pipeline` (or the only one). `loaded` must be valid.
    pub fn build(
        loaded: &Loaded,
        root: &Path,
        pipeline: Option<&str>,
        options: &PlanOptions,
    ) -> Result<Plan, Error> {
        let (doc, dag) = loaded.pipeline(pipeline)?;
        let dag = dag.ok_or_else(|| PlanError::InvalidPipeline {
            pipeline: doc.spec.name.clone(),
        })?;
        let stack = choose_stack(loaded, options.stack.as_deref())?;
        let params = merge_params(doc, &loaded.params_files, &options.params)?;
        let jobs = options
            .jobs
            .or(stack.orchestrator.parallelism.map(|n| n as usize))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
        let git = options.git.clone().or_else(|| crate::git::head(root));
        let spec = &doc.spec;

        let templates = Templates::new();
        let shared = Arc::new(SharedContext {
            params: Value::from(Serde(&params)),
            run: context! { id => run_id.clone() },
            git: git
                .as_ref()
                .map_or(Value::from(()), |g| Value::from(Serde(g))),
            pipeline: Value::from(spec.name.as_str()),
        });
        // A template can only read `steps` by naming it: without one, the
        // context need not copy every step's outputs.
        let reads_steps = spec
            .steps
            .values()
            .any(|step| step.run.parts().iter().any(|part| part.contains("steps")));
        let all_outputs: Arc<Map<String, Map<String, String>>> = Arc::new(match reads_steps {
            true => spec
                .steps
                .iter()
                .map(|(name, step)| {
                    let paths = step
                        .outputs
                        .iter()
                        .map(|(k, o)| (k.clone(), o.path.clone()));
                    (name.clone(), paths.collect())
                })
                .collect(),
            false => Map::default(),
        });
        let mut groups: Map<String, Vec<GroupMember>> = Map::default();
        for (name, step) in &spec.steps {
            if let Some(member) = &step.member {
                groups
                    .entry(member.group.clone())
                    .or_default()
                    .push(GroupMember {
                        name: name.clone(),
                        item: member.item.clone(),
                        key: member.key.clone(),
                        metrics: step.metrics.clone(),
                    });
            }
        }
        let groups = Arc::new(groups);
        let outputs_of = |base: &str| {
            Value::from_object(StepsContext {
                outputs: Arc::clone(&all_outputs),
                groups: Arc::clone(&groups),
                base: base.to_string(),
            })
        };
        let root_outputs = outputs_of("");

        let mut secret_names: Vec<(&str, &str)> = stack
            .secrets
            .iter()
            .map(|s| ("stack", s.0.as_str()))
            .collect();
        let secret_values = secret_values(&stack, spec);
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (position, (name, step)) in spec.steps.iter().enumerate() {
            let workdir = step
                .workdir
                .as_deref()
                .map(normalize_dir)
                .unwrap_or_default();
            let steps_value = if workdir.is_empty() {
                root_outputs.clone()
            } else {
                outputs_of(&workdir)
            };
            let member = step.member.as_deref();
            let ctx = Value::from_object(StepContext {
                shared: Arc::clone(&shared),
                outputs: Value::from_object(StepOutputs(
                    step.outputs
                        .iter()
                        .map(|(k, o)| (k.clone(), relative_to(&workdir, &o.path)))
                        .collect(),
                )),
                steps: steps_value,
                item: member.map(|m| Value::from(Serde(&m.item))),
                key: member.and_then(|m| m.key.clone()),
            });
            let (argv, command) =
                step.run
                    .render(&templates, &ctx)
                    .map_err(|e| Error::Template {
                        pipeline: spec.name.clone(),
                        step: name.clone(),
                        message: e.message,
                    })?;
            let mut env: Vec<(String, String)> = step
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            secret_names.extend(step.secrets.iter().map(|s| (name.as_str(), s.0.as_str())));
            for secret in stack.secrets.iter().chain(&step.secrets) {
                if let Some(value) = std::env::var_os(&secret.0) {
                    // A value that is not UTF-8 is masked in its lossy form,
                    // which is how it appears in output.
                    env.push((secret.0.clone(), value.to_string_lossy().into_owned()));
                }
            }
            // The graph's nodes are the steps in this order.
            debug_assert_eq!(dag.len(), spec.steps.len());
            let upstream = dag.upstream_positions(position);
            let mut deps: Vec<String> = step
                .deps
                .iter()
                .filter_map(|d| crate::spec::paths::normalize(d).ok())
                .collect();
            for &up in &upstream {
                if let Some((_, up_step)) = spec.steps.get_index(up) {
                    deps.extend(
                        up_step
                            .outputs
                            .values()
                            .filter_map(|o| crate::spec::paths::normalize(&o.path).ok()),
                    );
                }
            }
            deps.sort();
            deps.dedup();
            let mut key_params = BTreeMap::new();
            for listed in &step.params {
                let names = match listed {
                    ParamRef::Name(listed) => vec![listed.as_str()],
                    // Every key the file defines now, valued as merged (so
                    // `-p` over one of them reruns the step).
                    ParamRef::File { file } => match loaded.params_files.get(file) {
                        Some(serde_json::Value::Object(map)) => {
                            map.keys().map(String::as_str).collect()
                        }
                        _ => Vec::new(),
                    },
                };
                for listed in names {
                    let value = lookup_param(&params, listed).ok_or_else(|| {
                        PlanError::UnknownStepParam {
                            step: name.to_string(),
                            pipeline: spec.name.clone(),
                            param: listed.to_string(),
                            file: doc.file.to_string(),
                            params_files: spec.params_files.clone(),
                            help: hint(
                                listed,
                                flatten_params(&params).keys().map(String::as_str),
                                "add it, or remove it from the step's `params`",
                            ),
                        }
                    })?;
                    key_params.insert(listed.to_string(), value.clone());
                }
            }
            steps.push(PlannedStep {
                deps,
                params: key_params,
                key_env: step
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
                cache: step.cache,
                metrics: step.metrics.as_deref().map(normalized),
                checks: step.checks.clone(),
                name: name.clone(),
                command,
                argv,
                cwd: root.join(&workdir),
                env,
                timeout: step
                    .timeout
                    .as_deref()
                    .and_then(|t| humantime::parse_duration(t).ok()),
                retries: step.retries,
                outputs: step
                    .outputs
                    .iter()
                    .map(|(k, o)| (k.clone(), normalized(&o.path)))
                    .collect(),
                persist: step
                    .outputs
                    .values()
                    .filter(|o| o.persist)
                    .map(|o| normalized(&o.path))
                    .collect(),
                uncached: step
                    .outputs
                    .values()
                    .filter(|o| !o.cache)
                    .map(|o| normalized(&o.path))
                    .collect(),
                frozen: step.frozen,
                plots: step
                    .plots
                    .iter()
                    .map(|plot| crate::spec::types::Plot {
                        path: normalized(&plot.path),
                        ..plot.clone()
                    })
                    .collect(),
                upstream,
            });
        }
        let missing: Vec<String> = secret_names
            .iter()
            .filter(|(_, secret)| std::env::var_os(secret).is_none())
            .map(|(owner, secret)| format!("`{secret}` ({owner})"))
            .collect();
        if options.require_secrets && !missing.is_empty() {
            return Err(PlanError::SecretsNotSet { secrets: missing }.into());
        }
        // The display command is what runner.lock and every log record: a
        // secret interpolated through a param never reaches them.
        let masker = crate::secret::Masker::new(&secret_values);
        for step in &mut steps {
            if let Cow::Owned(masked) = masker.mask(&step.command) {
                step.command = masked;
            }
        }
        let decisions = vec![
            Decision::Run {
                reasons: vec!["not compared with runner.lock".to_string()]
            };
            steps.len()
        ];
        let promotion = spec.promote.as_ref().and_then(|promote| {
            let (step, output) = promote.model.split_once('.')?;
            let path = spec.steps.get(step)?.outputs.get(output)?;
            Some(PlannedPromotion {
                spec: promote.clone(),
                step: step.to_string(),
                output: output.to_string(),
                model_path: normalized(&path.path),
                production: loaded
                    .specs
                    .deployments
                    .iter()
                    .map(|d| &d.spec)
                    .find(|d| d.service == promote.service.name && d.stack == stack.name)
                    .cloned(),
                stack: Stack::clone(&stack),
                git: stack.git.clone(),
            })
        });
        Ok(Plan {
            promotion,
            tracker: stack.experiment_tracker.clone(),
            retention: Retention {
                keep: stack
                    .orchestrator
                    .keep_runs
                    .map_or(DEFAULT_KEEP_RUNS, |n| n as usize),
                serving: loaded
                    .specs
                    .deployments
                    .iter()
                    .map(|d| d.spec.source.run.clone())
                    .collect(),
            },
            decisions,
            run_id,
            pipeline: spec.name.clone(),
            root: root.to_path_buf(),
            stack: stack.name.clone(),
            store_dir: stack.artifact_store.path.clone(),
            artifact_store: stack.artifact_store.clone(),
            jobs,
            params,
            git,
            steps,
            secret_values,
        })
    }
}

/// `steps` in a command's template: `steps.NAME.outputs.KEY`, relative to
/// the step's workdir. Built on lookup: a step's command names one or two
/// other steps, and a whole map per step would cost a 1,000-step pipeline's
/// planning more than everything else together. A fan-out's name gives
/// every member's paths (see `shell_words`) and its `members`.
#[derive(Debug)]
struct StepsContext {
    outputs: Arc<Map<String, Map<String, String>>>,
    groups: Arc<Map<String, Vec<GroupMember>>>,
    base: String,
}

/// What a step's templates read. The parts every step shares are built
/// once: a map of eight entries per step was a sixth of planning 1,000.
#[derive(Debug)]
struct StepContext {
    shared: Arc<SharedContext>,
    outputs: Value,
    steps: Value,
    item: Option<Value>,
    key: Option<String>,
}

#[derive(Debug)]
struct SharedContext {
    params: Value,
    run: Value,
    git: Value,
    pipeline: Value,
}

const STEP_CONTEXT: &[&str] = &[
    "params", "outputs", "steps", "run", "git", "pipeline", "item", "key",
];

impl Object for StepContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "params" => self.shared.params.clone(),
            "outputs" => self.outputs.clone(),
            "steps" => self.steps.clone(),
            "run" => self.shared.run.clone(),
            "git" => self.shared.git.clone(),
            "pipeline" => self.shared.pipeline.clone(),
            // As a map would hold them: `none` outside a fan-out.
            "item" => Value::from(self.item.clone()),
            "key" => Value::from(self.key.clone()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(STEP_CONTEXT)
    }
}

/// `outputs`: the step's own output paths by name, relative to its workdir.
#[derive(Debug)]
struct StepOutputs(Vec<(String, String)>);

impl Object for StepOutputs {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        let (_, path) = self.0.iter().find(|(n, _)| n == name)?;
        Some(Value::from(path.as_str()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .iter()
                .map(|(n, _)| Value::from(n.as_str()))
                .collect(),
        )
    }
}

/// What `steps.GROUP.members` says of one member.
#[derive(Debug)]
struct GroupMember {
    name: String,
    item: serde_json::Value,
    key: Option<String>,
    metrics: Option<String>,
}

impl StepsContext {
    /// A step's outputs by name, relative to the workdir.
    fn outputs(&self, step: &str) -> Option<Map<&str, String>> {
        Some(
            self.outputs
                .get(step)?
                .iter()
                .map(|(k, p)| (k.as_str(), relative_to(&self.base, p)))
                .collect(),
        )
    }

    /// `steps.GROUP`: `outputs` (each every member's paths) and `members`.
    fn group(&self, members: &[GroupMember]) -> Value {
        let per_member: Vec<Map<&str, String>> = members
            .iter()
            .map(|m| self.outputs(&m.name).unwrap_or_default())
            .collect();
        let names = per_member
            .first()
            .map(|o| o.keys().copied().collect::<Vec<_>>());
        let outputs: Map<&str, Value> = names
            .unwrap_or_default()
            .into_iter()
            .map(|out| {
                let paths = per_member.iter().filter_map(|o| o.get(out));
                (out, shell_words(paths.map(String::as_str)))
            })
            .collect();
        let listed: Vec<Value> = members
            .iter()
            .zip(&per_member)
            .map(|(m, outputs)| {
                context! {
                    name => m.name.clone(),
                    item => Value::from(Serde(&m.item)),
                    key => m.key.clone(),
                    outputs => Value::from(Serde(outputs)),
                    metrics => m.metrics.as_deref().map(|p| relative_to(&self.base, p)),
                }
            })
            .collect();
        context! { outputs => Value::from(Serde(outputs)), members => listed }
    }
}

impl Object for StepsContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.outputs(name) {
            Some(outputs) => Some(context! { outputs => Value::from(Serde(outputs)) }),
            None => Some(self.group(self.groups.get(name)?)),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.outputs
                .keys()
                .chain(self.groups.keys())
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// The stack whose deployer manages the services (the local one by
/// default); the embedded default when the specs cannot be read, so
/// services stay manageable while a spec is being fixed.
pub fn stack_or_local(root: &Path, stack: Option<&str>) -> Stack {
    crate::spec::load_work_tree(root)
        .ok()
        .filter(|loaded| loaded.report.is_empty())
        .and_then(|loaded| choose_stack(&loaded, stack).ok().map(|s| Stack::clone(&s)))
        .unwrap_or_else(Stack::embedded_local)
}

/// `--stack NAME`; else a stack called `local`, else the only one, else the
/// built-in local stack (nothing to install).
pub fn choose_stack<'a>(
    loaded: &'a Loaded,
    name: Option<&str>,
) -> Result<std::borrow::Cow<'a, Stack>, Error> {
    let stacks = &loaded.specs.stacks;
    let found = match name {
        Some(name) => Some(stacks.iter().find(|s| s.spec.name == name).ok_or_else(|| {
            let names: Vec<&str> = stacks.iter().map(|s| s.spec.name.as_str()).collect();
            let help = hint(
                name,
                names.iter().copied(),
                "there are no stacks under stacks/",
            );
            Error::from(crate::error::NotFound::Stack {
                name: name.to_string(),
                help,
            })
        })?),
        None => stacks
            .iter()
            .find(|s| s.spec.name == "local")
            .or(if stacks.len() == 1 {
                stacks.first()
            } else {
                None
            }),
    };
    Ok(match found {
        Some(doc) => std::borrow::Cow::Borrowed(&doc.spec),
        None => std::borrow::Cow::Owned(Stack::embedded_local()),
    })
}

/// A pipeline's params as a run without `-p` sees them: inline defaults
/// with its params files merged over them.
pub fn pipeline_params(
    loaded: &Loaded,
    doc: &Document<Pipeline>,
) -> Result<Map<String, serde_json::Value>, Error> {
    merge_params(doc, &loaded.params_files, &[])
}

/// The pipeline's params, its params files merged over them, with
/// `-p NAME=VALUE` overrides; a value reads as a number or boolean when it
/// looks like one (`-p alpha=0.5`).
fn merge_params(
    doc: &Document<Pipeline>,
    files: &BTreeMap<String, serde_json::Value>,
    overrides: &[String],
) -> Result<Map<String, serde_json::Value>, Error> {
    let mut params = doc.spec.params.clone();
    for file in &doc.spec.params_files {
        if let Some(serde_json::Value::Object(map)) = files.get(file) {
            for (key, value) in map {
                match params.get_mut(key) {
                    Some(slot) => merge_value(slot, value),
                    None => {
                        params.insert(key.clone(), value.clone());
                    }
                }
            }
        }
    }
    for item in overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| PlanError::ParamOverrideSyntax { item: item.clone() })?;
        let Some(slot) = lookup_mut(&mut params, key) else {
            let known = flatten_params(&params);
            let none = format!("declare it under `params:` in {}", doc.file);
            let help = hint(key, known.keys().map(String::as_str), &none);
            return Err(PlanError::UnknownParam {
                key: key.to_string(),
                pipeline: doc.spec.name.clone(),
                help,
            }
            .into());
        };
        if slot.is_object() {
            return Err(PlanError::ParamIsMapping {
                key: key.to_string(),
            }
            .into());
        }
        *slot = parse_scalar(value);
    }
    Ok(params)
}

/// `over` merged into `base`: mappings key by key, anything else replaced.
fn merge_value(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(slot) => merge_value(slot, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// The param at a dotted path (`train.alpha`).
pub fn lookup_param<'p>(
    params: &'p Map<String, serde_json::Value>,
    dotted: &str,
) -> Option<&'p serde_json::Value> {
    let mut parts = dotted.split('.');
    let mut value = params.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn lookup_mut<'p>(
    params: &'p mut Map<String, serde_json::Value>,
    dotted: &str,
) -> Option<&'p mut serde_json::Value> {
    let mut parts = dotted.split('.');
    let mut value = params.get_mut(parts.next()?)?;
    for part in parts {
        value = value.as_object_mut()?.get_mut(part)?;
    }
    Some(value)
}

/// Every param by dotted name (nested mappings flattened), for diffs and
/// suggestions.
pub fn flatten_params(
    params: &Map<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    fn walk(
        prefix: &str,
        value: &serde_json::Value,
        out: &mut BTreeMap<String, serde_json::Value>,
    ) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    walk(&format!("{prefix}.{key}"), value, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for (key, value) in params {
        walk(key, value, &mut out);
    }
    out
}

fn parse_scalar(text: &str) -> serde_json::Value {
    if let Ok(i) = text.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return f.into();
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        _ => text.into(),
    }
}

/// `path` (repo-relative) as seen from the repo-relative directory `base`.
fn relative_to(base: &str, path: &str) -> String {
    if base.is_empty() {
        return path.to_string();
    }
    let mut base_parts: Vec<&str> = base.split('/').collect();
    let mut path_parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    while !base_parts.is_empty() && !path_parts.is_empty() && base_parts[0] == path_parts[0] {
        base_parts.remove(0);
        path_parts.remove(0);
    }
    let mut out: Vec<&str> = vec![".."; base_parts.len()];
    out.extend(path_parts);
    out.join("/")
}

/// A spec path as the plan and runner.lock key it; validation has rejected
/// the ones that do not normalise.
pub fn normalized(path: &str) -> String {
    crate::spec::paths::normalize(path).unwrap_or_else(|_| path.to_string())
}

fn normalize_dir(dir: &str) -> String {
    crate::spec::paths::normalize(dir)
        .ok()
        .filter(|d| d != ".")
        .unwrap_or_default()
}

/// A run id that sorts by time: `20261125T223512.123Z-3f9a`.
pub fn new_run_id() -> String {
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{stamp}-{salt:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_working_directory() {
        assert_eq!(relative_to("", "build/model.json"), "build/model.json");
        assert_eq!(
            relative_to("src", "build/model.json"),
            "../build/model.json"
        );
        assert_eq!(
            relative_to("build/sub", "build/model.json"),
            "../model.json"
        );
    }

    /// The plan of a repository whose only file is `pipeline` (YAML).
    fn plan_of(pipeline: &str, options: &PlanOptions) -> Plan {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("pipelines")).unwrap();
        std::fs::write(repo.path().join("pipelines/p.yaml"), pipeline).unwrap();
        let loaded = crate::spec::load_work_tree(repo.path()).unwrap();
        assert!(loaded.report.is_empty(), "{:?}", loaded.report);
        Plan::build(&loaded, repo.path(), None, options).unwrap()
    }

    #[test]
    fn dependents_are_the_upstream_lists_turned_around() {
        // d needs b and c, which both read a's output; e stands alone.
        let plan = plan_of(
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  a:\n    run: \"true\"\n    outputs: {out: a.txt}\n  b:\n    run: \"true\"\n    deps: [a.txt]\n  c:\n    run: \"true\"\n    deps: [a.txt]\n  d:\n    run: \"true\"\n    needs: [c, b]\n  e:\n    run: \"true\"\n",
            &PlanOptions::default(),
        );
        let dependents = plan.dependents();
        let of = |step: usize| dependents.of(step).to_vec();
        assert_eq!(
            (of(0), of(1), of(2), of(3), of(4)),
            (vec![1, 2], vec![3], vec![3], vec![], vec![])
        );
        assert_eq!(plan.order(), vec![0, 4, 1, 2, 3]);
    }

    #[test]
    fn a_command_reads_params_outputs_run_and_pipeline() {
        let options = PlanOptions {
            run_id: Some("r1".into()),
            ..PlanOptions::default()
        };
        let plan = plan_of(
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nparams:\n  alpha: 0.5\nsteps:\n  a:\n    run: \"echo {{ params.alpha }} {{ pipeline }} {{ run.id }} {{ outputs.out }} {{ outputs.log | upper }}{% if params.alpha > 0.1 %} big{% endif %}\"\n    outputs: {out: build/a.txt, log: logs/a.log}\n    workdir: build\n",
            &options,
        );
        assert_eq!(
            plan.steps[0].command,
            "echo 0.5 p r1 a.txt ../LOGS/A.LOG big"
        );
    }

    #[test]
    fn a_plan_writes_its_outputs_what_they_hold_and_what_holds_them() {
        let plan = plan_of(
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  a:\n    run: \"true\"\n    outputs: {out: data/out, csv: data/out.csv}\n    metrics: ./eval/metrics.json\n",
            &PlanOptions::default(),
        );
        let writes = plan.writes();
        // The metrics file is named as the work tree names it.
        for written in [
            "data/out",
            "data/out/x.bin",
            "data",
            "data/out.csv",
            "eval/metrics.json",
        ] {
            assert!(writes(written), "{written}");
        }
        for untouched in [
            "data/ou",
            "data/out-2",
            "data/out.csv2",
            "dat",
            "eval2",
            "src",
        ] {
            assert!(!writes(untouched), "{untouched}");
        }
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_run_id();
        assert!(a < b, "{a} !< {b}");
        assert_eq!(a.len(), "20261125T223512.123Z-3f9a".len(), "{a}");
    }

    #[test]
    fn overrides_read_numbers_and_booleans() {
        assert_eq!(parse_scalar("0.5"), serde_json::json!(0.5));
        assert_eq!(parse_scalar("3"), serde_json::json!(3));
        assert_eq!(parse_scalar("true"), serde_json::json!(true));
        assert_eq!(
            parse_scalar("x; rm -rf ~"),
            serde_json::json!("x; rm -rf ~")
        );
    }
}

/// What `Plan::decide` compares each step with: `runner.lock` and the
/// files, in the work tree (a run, `runner plan`) or in a commit (`runner
/// plan --base`, which must not depend on what is checked out).
pub trait Observed {
    /// Calls `f` with `runner.lock` as recorded, held for the whole decision.
    fn with_lock<R>(&self, f: impl FnOnce(&LockFile) -> R) -> Result<R, Error>;
    /// The digest of a repo path now; `None` when it does not exist.
    fn digest(&self, path: &str) -> Result<Option<Digest>, Error>;
    /// Why a dep that `digest` did not find makes its step run.
    fn missing(&self, path: &str) -> String {
        format!("dep {path} is missing")
    }
    /// Whether an output `runner.lock` records as `recorded` can be used.
    fn output(&self, path: &str, recorded: &Digest) -> Result<OutputState, Error>;
}

/// A run and `runner plan` compare with the work tree and the local store.
impl Observed for crate::cache::Cache {
    fn with_lock<R>(&self, f: impl FnOnce(&LockFile) -> R) -> Result<R, Error> {
        Ok(f(&self.recorded()?.file))
    }

    fn digest(&self, path: &str) -> Result<Option<Digest>, Error> {
        self.digest_for_decision(path)
    }

    fn output(&self, path: &str, recorded: &Digest) -> Result<OutputState, Error> {
        Ok(match self.digest_for_decision(path)? {
            Some(now) if now == *recorded => OutputState::Current,
            _ if self.stored(recorded) => OutputState::Restorable,
            None => OutputState::Missing,
            Some(_) => OutputState::Changed,
        })
    }
}

/// An output of an up-to-date step, as `Observed` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// There, with the recorded content.
    Current,
    /// Missing or changed, and the artifact store has the recorded content.
    Restorable,
    Missing,
    Changed,
}

/// The values of the secrets a run of `spec` on `stack` gets from this
/// environment (the stack's and the steps' `secrets` that are set, and the
/// tracker's credentials), sorted and without repeats: what everything
/// runner shows is masked with.
pub fn secret_values(stack: &Stack, spec: &Pipeline) -> Vec<String> {
    let names = stack
        .secrets
        .iter()
        .chain(spec.steps.values().flat_map(|step| &step.secrets));
    // A value that is not UTF-8 is masked in its lossy form, which is how
    // it appears in output.
    let mut values: Vec<String> = names
        .filter_map(|secret| std::env::var_os(&secret.0))
        .map(|value| value.to_string_lossy().into_owned())
        .collect();
    if let Some(tracker) = &stack.experiment_tracker {
        values.extend(crate::secret::tracking_credentials(&tracker.tracking_uri));
    }
    values.sort();
    values.dedup();
    values
}

/// [`secret_values`] of a pipeline on the named stack (the default one
/// without a name), with no plan: no command is rendered, nothing decided.
pub fn pipeline_secret_values(
    loaded: &Loaded,
    pipeline: &str,
    stack: Option<&str>,
) -> Result<Vec<String>, Error> {
    let (doc, _) = loaded.pipeline(Some(pipeline))?;
    let stack = choose_stack(loaded, stack)?;
    Ok(secret_values(&stack, &doc.spec))
}

/// Which steps a run covers and whether to ignore the cache.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// `--force`: run every selected step.
    pub force: bool,
    /// `--only STEP`: just these steps.
    pub only: Vec<String>,
    /// `--downstream STEP`: these steps and every step after them.
    pub downstream: Vec<String>,
}

impl Plan {
    /// Compares every step with `runner.lock` and the work tree, in
    /// dependency order, and says whether it runs and why. Writes nothing
    /// but the stat cache.
    pub fn decide(&mut self, seen: &impl Observed, selection: &Selection) -> Result<(), Error> {
        let selected = self.selected(selection)?;
        seen.with_lock(|recorded| self.decide_with(recorded, seen, &selected, selection.force))?
    }

    fn decide_with(
        &mut self,
        recorded: &LockFile,
        seen: &impl Observed,
        selected: &[bool],
        force: bool,
    ) -> Result<(), Error> {
        let n = self.steps.len();
        let mut reruns = vec![false; n];
        // Outputs of steps that will not run, as runner.lock records them:
        // a downstream step compares against those, even before a restore.
        let mut expected: foldhash::HashMap<&str, &crate::cache::hash::Digest> =
            foldhash::HashMap::default();
        let recorded = recorded.pipelines.get(&self.pipeline);
        let recorded_step = |name: &str| recorded.and_then(|p| p.steps.get(name));
        for i in self.order() {
            let step = &self.steps[i];
            if !selected[i] {
                self.decisions[i] = Decision::NotSelected;
                if let Some(entry) = recorded_step(&step.name) {
                    expected.extend(entry.outputs.iter().map(|(p, d)| (p.as_str(), d)));
                }
                continue;
            }
            if step.frozen {
                let entry = recorded_step(&step.name);
                let missing = self.frozen_outputs_missing(i, entry, seen)?;
                self.decisions[i] = if missing.is_empty() {
                    Decision::Frozen
                } else {
                    // Restorable outputs are recorded ones: the steps after
                    // compare with what is restored.
                    if let Some(entry) = entry {
                        expected.extend(entry.outputs.iter().map(|(p, d)| (p.as_str(), d)));
                    }
                    Decision::Restore { outputs: missing }
                };
                continue;
            }
            let mut reasons = Vec::new();
            if force {
                reasons.push("forced (--force)".to_string());
            }
            if !step.cache {
                reasons.push("`cache: false`".to_string());
            }
            // Nothing to compare, nothing to restore: like DVC, such a step
            // is always stale (a notification, a smoke test).
            if step.deps.is_empty() && step.outputs.is_empty() && step.metrics.is_none() {
                reasons.push("no deps or outputs to compare, so it runs every time".to_string());
            }
            let rerunning: Vec<usize> = step
                .upstream
                .iter()
                .copied()
                .filter(|&u| reruns[u])
                .collect();
            for &u in &rerunning {
                reasons.push(format!("upstream {} reruns", self.steps[u].name));
            }
            let rerun_outputs: HashSet<&str> = rerunning
                .iter()
                .flat_map(|&u| self.steps[u].outputs.iter().map(|(_, p)| p.as_str()))
                .collect();
            let mut restore = Vec::new();
            let entry = recorded_step(&step.name);
            match entry {
                None => reasons.push("not in runner.lock yet".to_string()),
                Some(entry) => {
                    if entry.command != step.command {
                        reasons.push("command changed".to_string());
                    }
                    if entry.env != step.key_env {
                        reasons.push("env changed".to_string());
                    }
                    if entry.checks != step.checks {
                        reasons.push("checks changed".to_string());
                    }
                    reasons.extend(param_changes(&entry.params, &step.params));
                    // Both lists are sorted by path, each path once: one
                    // walk side by side pairs them, and finds the recorded
                    // ones now gone.
                    debug_assert!(step.deps.windows(2).all(|w| w[0] < w[1]));
                    let mut recorded_deps = entry.deps.iter().peekable();
                    let mut removed = Vec::new();
                    for path in &step.deps {
                        let mut was = None;
                        while let Some(&(recorded, digest)) = recorded_deps.peek() {
                            if recorded > path {
                                break;
                            }
                            recorded_deps.next();
                            match recorded == path {
                                true => was = Some(digest),
                                false => removed.push(format!("dep {recorded} removed")),
                            }
                        }
                        if rerun_outputs.contains(&path.as_str()) {
                            continue;
                        }
                        let now = match expected.get(path.as_str()) {
                            Some(&digest) => Some(Cow::Borrowed(digest)),
                            None => seen.digest(path)?.map(Cow::Owned),
                        };
                        match (was, now) {
                            (_, None) => reasons.push(seen.missing(path)),
                            (None, Some(_)) => reasons.push(format!("dep {path} added")),
                            (Some(was), Some(now)) if *was != *now => {
                                reasons.push(format!("dep {path} changed"))
                            }
                            _ => {}
                        }
                    }
                    removed.extend(recorded_deps.map(|(path, _)| format!("dep {path} removed")));
                    reasons.extend(removed);
                    if reasons.is_empty() {
                        for (_, path) in &step.outputs {
                            let Some(recorded) = entry.outputs.get(path) else {
                                reasons.push(format!("output {path} is new"));
                                continue;
                            };
                            match seen.output(path, recorded)? {
                                OutputState::Current => {}
                                OutputState::Restorable => restore.push(path.clone()),
                                OutputState::Missing => reasons
                                    .push(format!("output {path} missing (not in the cache)")),
                                OutputState::Changed => reasons
                                    .push(format!("output {path} changed (not in the cache)")),
                            }
                        }
                    }
                }
            }
            self.decisions[i] = if !reasons.is_empty() {
                reruns[i] = true;
                Decision::Run { reasons }
            } else {
                if let Some(entry) = entry {
                    expected.extend(entry.outputs.iter().map(|(p, d)| (p.as_str(), d)));
                }
                if restore.is_empty() {
                    Decision::UpToDate
                } else {
                    Decision::Restore { outputs: restore }
                }
            };
        }
        Ok(())
    }

    /// The outputs of frozen step `i` that are missing but can be restored;
    /// an error names one that is neither there nor in the store, since a
    /// frozen step is never run to make it.
    fn frozen_outputs_missing(
        &self,
        i: usize,
        entry: Option<&crate::cache::lock::StepLock>,
        seen: &impl Observed,
    ) -> Result<Vec<String>, Error> {
        let step = &self.steps[i];
        let mut missing = Vec::new();
        for (_, path) in &step.outputs {
            if seen.digest(path)?.is_some() {
                continue;
            }
            let recorded = entry.and_then(|e| e.outputs.get(path));
            match recorded {
                Some(recorded) if seen.output(path, recorded)? == OutputState::Restorable => {
                    missing.push(path.clone())
                }
                _ => {
                    return Err(PlanError::FrozenOutputMissing {
                        pipeline: self.pipeline.clone(),
                        step: step.name.clone(),
                        path: path.clone(),
                    }
                    .into());
                }
            }
        }
        Ok(missing)
    }

    /// Each step's dependents (the steps listing it upstream), by position.
    pub fn dependents(&self) -> Dependents {
        let mut starts = vec![0; self.steps.len() + 1];
        for step in &self.steps {
            for &up in &step.upstream {
                starts[up + 1] += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut targets = vec![0; starts[self.steps.len()]];
        for (i, step) in self.steps.iter().enumerate() {
            for &up in &step.upstream {
                targets[next[up]] = i;
                next[up] += 1;
            }
        }
        Dependents { starts, targets }
    }

    /// Steps in an order where every step comes after its upstream.
    fn order(&self) -> Vec<usize> {
        let n = self.steps.len();
        let mut waiting: Vec<usize> = self.steps.iter().map(|s| s.upstream.len()).collect();
        let dependents = self.dependents();
        let mut ready: std::collections::VecDeque<usize> =
            (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for &d in dependents.of(i) {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push_back(d);
                }
            }
        }
        order
    }

    fn selected(&self, selection: &Selection) -> Result<Vec<bool>, Error> {
        let n = self.steps.len();
        if selection.only.is_empty() && selection.downstream.is_empty() {
            return Ok(vec![true; n]);
        }
        // A step, or every member of a fan-out by the step's name.
        let indexes = |name: &str| {
            let found: Vec<usize> = (0..n)
                .filter(|&i| {
                    let step = &self.steps[i].name;
                    step == name || (!name.contains(SEPARATOR) && group_of(step) == name)
                })
                .collect();
            match found.is_empty() {
                false => Ok(found),
                true => {
                    let help = hint(name, self.steps.iter().map(|s| s.name.as_str()), "-");
                    Err(Error::from(crate::error::NotFound::Step {
                        pipeline: self.pipeline.clone(),
                        step: name.to_string(),
                        help,
                    }))
                }
            }
        };
        let mut selected = vec![false; n];
        for name in &selection.only {
            for i in indexes(name)? {
                selected[i] = true;
            }
        }
        let mut stack = Vec::new();
        let mut starts = Vec::new();
        for name in &selection.downstream {
            starts.extend(indexes(name)?);
        }
        stack.extend(starts.iter().copied());
        while let Some(i) = stack.pop() {
            if !selected[i] || starts.contains(&i) {
                selected[i] = true;
                stack.extend(
                    (0..n).filter(|&d| self.steps[d].upstream.contains(&i) && !selected[d]),
                );
            }
        }
        Ok(selected)
    }
}

/// `param alpha 0.1 -> 0.5`, for each listed param whose value changed.
fn param_changes(
    recorded: &BTreeMap<String, serde_json::Value>,
    now: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let mut changes = Vec::new();
    for (name, value) in now {
        match recorded.get(name) {
            Some(was) if was == value => {}
            Some(was) => changes.push(format!("param {name} {was} -> {value}")),
            None => changes.push(format!("param {name} added ({value})")),
        }
    }
    for name in recorded.keys().filter(|k| !now.contains_key(*k)) {
        changes.push(format!("param {name} removed"));
    }
    changes
}
