//! The three spec kinds a repository holds. Field names are the contract:
//! the JSON Schemas in `schemas/` are generated from these types, and the doc
//! comments become the descriptions editors show.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::{Escape, TemplateError, Templates, shell_quote};

/// An insertion-ordered map with a fast hasher: specs are read on every
/// run, and SipHash was a tenth of reading a 1,000-step pipeline back.
pub type Map<K, V> = IndexMap<K, V, foldhash::fast::RandomState>;

/// The only spec version this runner reads.
pub const API_VERSION: &str = "runner/v1";

/// Names of pipelines, stacks and services: used in file paths, comment
/// markers and Kubernetes object names.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// Names of steps, outputs and params: identifiers, so templates can write
/// `steps.NAME.outputs.OUT` and `params.NAME`.
pub const IDENT_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// Environment variable names.
pub const ENV_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// An environment variable's value: YAML `2` or `true` is meant as the text
/// `2` or `true`, as in GitHub Actions' `env:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "Scalar", into = "String")]
#[schemars(with = "Scalar")]
pub struct EnvValue(pub String);

/// A text, number or boolean: an `env` value, or one value of a `matrix` axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl From<Scalar> for serde_json::Value {
    fn from(scalar: Scalar) -> Self {
        match scalar {
            Scalar::Text(s) => s.into(),
            Scalar::Number(n) => n.into(),
            Scalar::Bool(b) => b.into(),
        }
    }
}

impl From<Scalar> for EnvValue {
    fn from(scalar: Scalar) -> Self {
        EnvValue(match scalar {
            Scalar::Text(s) => s,
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        })
    }
}

impl From<EnvValue> for String {
    fn from(value: EnvValue) -> Self {
        value.0
    }
}

/// The name of an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct EnvName(#[schemars(regex(pattern = ENV_PATTERN))] pub String);

/// Spec format versions runner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "runner/v1")]
    V1,
}

/// The `kind` of a pipeline document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PipelineKind {
    Pipeline,
}

/// The `kind` of a stack document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StackKind {
    Stack,
}

/// The `kind` of a deployment document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeploymentKind {
    Deployment,
}

/// A DAG of steps, each a subprocess, plus how its model is promoted and served.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner Pipeline")]
pub struct Pipeline {
    /// The spec format version: `runner/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// `Pipeline`.
    pub kind: PipelineKind,
    /// Unique pipeline name in this repository.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What the pipeline is for, shown in `runner graph` and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameter defaults, read in templates as `params.NAME`; `-p NAME=VALUE` overrides them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": IDENT_PATTERN}))]
    pub params: Map<String, serde_json::Value>,
    /// YAML or JSON files of params (repo paths), merged over `params` in
    /// order, under `-p`: nested keys are read as `params.train.alpha` and
    /// listed by steps as `train.alpha`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params_files: Vec<String>,
    /// Continuous training on drift: an expression over the metrics other
    /// pipelines last recorded, e.g. `monitor.metrics.max_psi > 0.2`.
    /// `runner watch` evaluates it after each run of those pipelines, and
    /// starts this one when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_when: Option<String>,
    /// What starts the pipeline under `runner watch` and in CI.
    #[serde(default, rename = "on", skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Triggers>,
    /// The steps, by name. Order is kept for display; execution order comes from the DAG.
    // Boxed: a `Step` is ~400 bytes, and the map's entries are moved each
    // time it grows while a 1,000-step pipeline is read (~170 page faults of
    // a no-op run, when the entries held the steps themselves).
    #[schemars(extend("propertyNames" = {"pattern": IDENT_PATTERN}), extend("minProperties" = 1))]
    pub steps: Map<String, Box<Step>>,
    /// How a trained model is gated, deployed and served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<Promote>,
}

/// A command: a string runs through `sh -c`; a list runs as argv with no
/// shell; `{commands: [...]}` runs shell commands in order until one fails.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(#[schemars(length(min = 1))] Vec<String>),
    Sequence(Sequence),
}

/// Shell commands run one after another, as DVC runs a `cmd` list: each in
/// its own shell (a `cd` in one does not move the next), stopping at the
/// first that fails.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// The commands, each a template as a `run` string is.
    #[schemars(length(min = 1))]
    pub commands: Vec<String>,
}

impl Command {
    /// Renders a step's or a server's command: a shell string (values
    /// quoted) run by `sh -c`, or an argv list (values as they are). Returns
    /// the argv and the command as a person reads it.
    pub fn render(
        &self,
        templates: &Templates,
        context: &minijinja::Value,
    ) -> Result<(Vec<String>, String), TemplateError> {
        Ok(match self {
            Command::Shell(text) => {
                let rendered = templates.render(text, Escape::Shell, context)?;
                (
                    vec!["sh".to_string(), "-c".to_string(), rendered.clone()],
                    rendered,
                )
            }
            Command::Argv(parts) => {
                let argv = parts
                    .iter()
                    .map(|p| templates.render(p, Escape::Verbatim, context))
                    .collect::<Result<Vec<_>, _>>()?;
                let shown = argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ");
                (argv, shown)
            }
            Command::Sequence(sequence) => {
                let commands = sequence
                    .commands
                    .iter()
                    .map(|c| templates.render(c, Escape::Shell, context))
                    .collect::<Result<Vec<_>, _>>()?;
                // A subshell each, opened and closed on lines of their own so
                // a trailing `# comment` cannot swallow the closing paren.
                let script = commands
                    .iter()
                    .map(|c| format!("(\n{c}\n)"))
                    .collect::<Vec<_>>()
                    .join(" && ");
                (
                    vec!["sh".to_string(), "-c".to_string(), script],
                    commands.join(" && "),
                )
            }
        })
    }

    /// The template strings the command is made of.
    pub fn parts(&self) -> &[String] {
        match self {
            Command::Shell(s) => std::slice::from_ref(s),
            Command::Argv(argv) => argv,
            Command::Sequence(sequence) => &sequence.commands,
        }
    }
}

/// One node of the DAG: a subprocess with declared inputs and outputs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The command, a template: `{{ params.alpha }}`, `{{ outputs.model }}`,
    /// `{{ steps.clean.outputs.data }}`. Interpolated values are shell-quoted.
    pub run: Command,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps that must succeed first (edges are also inferred from templates
    /// and deps). A fan-out step's name means all its members; `STEP@...` one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Files and directories the step reads, relative to the repo root; their contents key the cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    /// Files or directories the step writes, by output name, relative to the
    /// repo root. Each is removed before the step runs (so a stale file never
    /// passes for a fresh one) unless it has `persist: true`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": IDENT_PATTERN}))]
    pub outputs: Map<String, Output>,
    /// The pipeline params this step uses: only these invalidate its cache.
    /// A name may be a whole section (`train`); `{file: F}` is every param
    /// of params file F.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamRef>,
    /// A JSON or YAML file of numbers the step writes; nested keys become dotted names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Expressions over the metrics this step wrote, as in `promote.gate`,
    /// e.g. `metrics.null_rate < 0.01`: a failing one fails the step, so bad
    /// data never reaches the steps after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Working directory relative to the repo root (default: the repo root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Extra environment variables. Numbers and booleans are written as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ENV_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// Environment variables passed through from runner's environment and masked in every log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<EnvName>,
    /// Kill the step (and everything it started) after this long, e.g. `90s`, `10m`, `1h 30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How many times to re-run a failed step, with backoff.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(max = 100))]
    pub retries: u32,
    /// `false` runs the step every time, whatever the cache says (DVC's
    /// `always_changed`); its outputs are still stored.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub cache: bool,
    /// Never run: its outputs are used as they are (restored from the cache
    /// when missing), whatever its deps say, as DVC's `frozen`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub frozen: bool,
    /// Plot data files the step writes (CSV, TSV, JSON or YAML rows), drawn
    /// as line plots in the PR comment and `runner ui`, against the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<Plot>,
    /// Fan-out, as DVC's `foreach`: one member step per entry, each with
    /// its own cache entry, reading the entry as `{{ item }}`. A list names
    /// members by value (`train@0.1`, or `train@lr=0.1,depth=3` for a list
    /// of mappings); a mapping names them by key (`train@small`) and also
    /// gives `{{ key }}`. `run`, `outputs`, `metrics`, `deps`, `needs`,
    /// `workdir` and `env` values may read `item`; outputs must differ per member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<Box<Foreach>>,
    /// Fan-out over every combination of named lists, e.g.
    /// `{model: [ridge, lasso], alpha: [0.1, 1]}` gives four members named
    /// `train@model=ridge,alpha=0.1` ..., each reading `{{ item.model }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"pattern": IDENT_PATTERN}), extend("minProperties" = 1))]
    pub matrix: Option<Box<Map<String, MatrixAxis>>>,
    /// Set by runner on each member of a fan-out: never written in a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub member: Option<Box<Member>>,
}

/// One output: a path, or a path with options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "OutputForm", into = "OutputForm")]
#[schemars(with = "OutputForm")]
pub struct Output {
    pub path: String,
    /// Left in place when the step runs again (a step that appends to it).
    pub persist: bool,
    /// Copied into the artifact store; `false` for outputs that live in
    /// Git (a report) or are too big to keep twice. A missing one cannot
    /// be restored, so its step runs again.
    pub cache: bool,
}

impl Output {
    /// An output with the default options.
    pub fn at(path: impl Into<String>) -> Output {
        Output {
            path: path.into(),
            persist: false,
            cache: true,
        }
    }
}

/// How an output is written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
enum OutputForm {
    /// The path, relative to the repo root.
    Path(String),
    Detailed(OutputOptions),
}

/// An output with options.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OutputOptions {
    /// The path, relative to the repo root.
    path: String,
    /// `true` leaves the output in place when the step runs (default: it is removed first).
    #[serde(default, skip_serializing_if = "is_false")]
    persist: bool,
    /// `false` keeps the output out of the artifact store.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    cache: bool,
}

impl From<OutputForm> for Output {
    fn from(form: OutputForm) -> Self {
        match form {
            OutputForm::Path(path) => Output::at(path),
            OutputForm::Detailed(o) => Output {
                path: o.path,
                persist: o.persist,
                cache: o.cache,
            },
        }
    }
}

impl From<Output> for OutputForm {
    fn from(output: Output) -> Self {
        if !output.persist && output.cache {
            return OutputForm::Path(output.path);
        }
        OutputForm::Detailed(OutputOptions {
            path: output.path,
            persist: output.persist,
            cache: output.cache,
        })
    }
}

/// A param a step's cache depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamRef {
    /// A dotted name: one value (`train.alpha`) or a whole section (`train`).
    Name(String),
    /// Every param a params file defines, as DVC's `{params.yaml: null}`.
    File {
        /// One of the pipeline's `params_files`.
        file: String,
    },
}

/// A plot of a data file a step writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plot {
    /// The data file, relative to the repo root: also an output of the step.
    pub path: String,
    /// The field on the x axis (default: the row number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The fields drawn as lines (default: the last field of a row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub y: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_label: Option<String>,
}

/// The entries a `foreach` fans out over.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Foreach {
    /// One member per value, named by the value (`train@0.1`) or, for a
    /// mapping, by its keys and values (`train@lr=0.1,depth=3`).
    List(#[schemars(length(min = 1))] Vec<serde_json::Value>),
    /// One member per key, named by the key (`train@small`); `item` is the value.
    Map(#[schemars(extend("minProperties" = 1))] Map<String, serde_json::Value>),
}

/// The values of one `matrix` axis.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MatrixAxis(#[schemars(length(min = 1))] pub Vec<Scalar>);

/// What makes a step one member of a fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The step it was expanded from: `train` for `train@alpha=0.1`.
    pub group: String,
    /// The entry, read in templates as `item`.
    pub item: serde_json::Value,
    /// The entry's key when `foreach` is a mapping, read as `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Step {
    /// Whether the step still has to be expanded into members (`foreach`, `matrix`).
    pub fn fans_out(&self) -> bool {
        self.foreach.is_some() || self.matrix.is_some()
    }
}

/// What starts a pipeline without a human.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Cron expressions in UTC (5 fields, or 6 with seconds first), e.g. `0 3 * * 1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<String>,
    /// Globs of repo paths whose changes start a run, e.g. `data/**`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// What a schedule firing does while a run is going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// A firing missed while runner was down still runs at start if it is at most this old, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<String>,
}

/// Policy for a schedule that fires while the pipeline is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Skip the firing.
    Forbid,
    /// Cancel the running run and start a new one.
    Replace,
    /// Run once more after the current run.
    Queue,
}

/// Promotion: the gate a candidate model must pass, and the service that serves it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// The output to deploy, as `STEP.OUTPUT`, e.g. `train.model`.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"))]
    pub model: String,
    /// Expressions that must all hold to promote, over `metrics`, `params`,
    /// `production` (the deployed model, or none) and `git`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate: Vec<String>,
    /// The service that serves the promoted model.
    pub service: Service,
}

/// A model server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name, unique per stack.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// The server command, a template over `model.path`, `model.digest`, `port` and `params`.
    /// Needed by the `process` deployer; the `mlflow` deployer runs `mlflow models serve` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<Command>,
    /// HTTP path answering 200 when the server is ready.
    #[serde(default = "default_health")]
    pub health: String,
    /// HTTP path that takes JSON rows and returns predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict: Option<String>,
    /// Port to serve on (default: a free port, kept across updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// How long the server may take to answer its health check, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    /// A request the predict path answers: a repo path to a JSON file, or
    /// the JSON itself. `runner ui` builds its predict form from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<serde_json::Value>,
}

/// Which components run, store and serve things.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner Stack")]
pub struct Stack {
    /// The spec format version: `runner/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// `Stack`.
    pub kind: StackKind,
    /// Unique stack name in this repository, e.g. `local`, `staging`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What runs the steps.
    #[serde(default)]
    pub orchestrator: Orchestrator,
    /// Where step outputs are cached.
    #[serde(default)]
    pub artifact_store: ArtifactStore,
    /// Where runs, their params, metrics and models are tracked (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_tracker: Option<ExperimentTracker>,
    /// What serves a promoted model.
    #[serde(default)]
    pub model_deployer: ModelDeployer,
    /// How the deployment state is written back to Git.
    #[serde(default)]
    pub git: GitSettings,
    /// Environment variables every step receives from runner's environment,
    /// masked in every log (as a step's own `secrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<EnvName>,
}

impl Stack {
    /// The stack used when a repository defines none: everything local, nothing to install.
    pub fn embedded_local() -> Stack {
        Stack {
            api_version: ApiVersion::V1,
            kind: StackKind::Stack,
            name: "local".to_string(),
            orchestrator: Orchestrator::default(),
            artifact_store: ArtifactStore::default(),
            experiment_tracker: None,
            model_deployer: ModelDeployer::default(),
            git: GitSettings::default(),
            secrets: Vec::new(),
        }
    }
}

/// What runs the steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Orchestrator {
    /// `local`: subprocesses on this machine.
    #[serde(rename = "type", default)]
    pub kind: OrchestratorType,
    /// How many steps run at once (default: the number of cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub parallelism: Option<u32>,
    /// How many run records `.runner/runs` keeps (default 100): when a run
    /// ends, older ones are removed, except those of the models that serve now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_runs: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrchestratorType {
    /// Steps run as subprocesses on this machine.
    #[default]
    Local,
}

/// Where step outputs are cached, content-addressed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactStore {
    /// `local`: a directory on this machine; `s3`: a bucket shared by
    /// machines, with `path` as the local copy.
    #[serde(rename = "type", default)]
    pub kind: ArtifactStoreType,
    /// Directory of the content-addressed store, relative to the repo root (default `.runner/cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where a cluster reads this store, e.g. `s3://bucket/runner-cache` (a copy
    /// or sync of `path`): the `kserve` and `seldon` deployers point a model
    /// server at `URL/objects/AB/CDEF...`, the model's content address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z][a-z0-9+.-]*://"))]
    pub url: Option<String>,
    /// `s3`: the bucket that holds the store (shared by every machine and CI job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `s3`: the key prefix of the store in the bucket, e.g. `runner-cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `s3`: an S3-compatible endpoint (MinIO, Ceph, ...), e.g. `http://127.0.0.1:9000`.
    /// Credentials come from the usual `AWS_*` environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^https?://"))]
    pub endpoint: Option<String>,
    /// `s3`: the bucket's region (default: `AWS_REGION`, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl ArtifactStore {
    /// Where a cluster reads the store: `url`, else `s3://BUCKET/PREFIX` for an `s3` store.
    pub fn cluster_url(&self) -> Option<String> {
        if let Some(url) = &self.url {
            return Some(url.clone());
        }
        let bucket = self
            .bucket
            .as_deref()
            .filter(|_| self.kind == ArtifactStoreType::S3)?;
        Some(match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() => format!("s3://{bucket}/{prefix}"),
            _ => format!("s3://{bucket}"),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStoreType {
    /// A directory on this machine.
    #[default]
    Local,
    /// An S3 bucket (or an S3-compatible server), mirrored by `runner push`
    /// and `runner pull`; `path` stays the local copy.
    S3,
}

/// Where runs are tracked: every run becomes a run of an experiment, with
/// its params, metrics, tags, gate and model; promoted models are
/// registered as versions of a registered model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentTracker {
    /// `mlflow`: an MLflow tracking server, over its REST API.
    #[serde(rename = "type")]
    pub kind: ExperimentTrackerType,
    /// The tracking server, e.g. `http://127.0.0.1:5000`. Credentials come
    /// from `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD`, never from this file.
    #[schemars(regex(pattern = "^https?://"))]
    pub tracking_uri: String,
    /// The experiment runs go to, created when missing (default: the pipeline's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// `false`: an unreachable or failing tracking server is a warning and
    /// the run goes on untracked (default: an error that stops the run).
    #[serde(default = "yes")]
    pub required: bool,
    /// The model registry: which registered model promoted models become
    /// versions of, and the alias that names production.
    #[serde(default)]
    pub registry: ModelRegistry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentTrackerType {
    /// An MLflow tracking server (MLflow 2 or 3, with artifact serving).
    Mlflow,
}

/// How promoted models are registered.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRegistry {
    /// Register each promoted model as a new version and move the alias to it.
    #[serde(default = "yes")]
    pub register: bool,
    /// The registered model's name (default: the service's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The alias that names the production version (aliases, not the deprecated stages).
    #[serde(default = "default_alias")]
    #[schemars(regex(pattern = "^[A-Za-z_][A-Za-z0-9_-]*$"))]
    pub alias: String,
    /// Where the gate's `production` comes from: the committed Deployment
    /// file (`deployment`, the default) or the version the alias names (`registry`).
    #[serde(default)]
    pub production: ProductionSource,
}

impl Default for ModelRegistry {
    fn default() -> Self {
        ModelRegistry {
            register: true,
            model: None,
            alias: default_alias(),
            production: ProductionSource::default(),
        }
    }
}

/// What the gate compares a candidate with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductionSource {
    /// `deployments/STACK/SERVICE.yaml`, as committed.
    #[default]
    Deployment,
    /// The registered model version the registry's alias names, with its run's metrics.
    Registry,
}

/// What serves a promoted model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDeployer {
    /// `process`: the service's `serve` command as a local daemon;
    /// `mlflow`: `mlflow models serve` on the model (an MLflow model
    /// directory); `kserve` or `seldon`: a Kubernetes manifest committed for
    /// Argo CD or Flux to apply.
    #[serde(rename = "type", default)]
    pub kind: ModelDeployerType,
    /// With `type: mlflow`: the `mlflow` executable (default: `mlflow` on PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// Kubernetes namespace of the served model (`kserve`, `seldon`; default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: Option<String>,
    /// Directory of the manifests runner writes and commits, relative to the
    /// repo root, one file per service (default `manifests/STACK`): point the
    /// Argo CD Application or Flux Kustomization at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests_dir: Option<String>,
    /// The model format or server: KServe's `modelFormat.name` (e.g. `sklearn`,
    /// `xgboost`, `onnx`; default `sklearn`), Seldon's `implementation` (e.g.
    /// `SKLEARN_SERVER`; default `SKLEARN_SERVER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// How many model server replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub replicas: Option<u32>,
    /// CPU and memory of each model server, as Kubernetes quantities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// `runner services` also asks the cluster (`kubectl get -o json`) how the
    /// committed manifests are doing; without it they show the committed state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubectl: bool,
}

/// Requests and limits of a model server container (Kubernetes quantities, e.g. `500m`, `1Gi`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Quantities>,
    /// The most the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Quantities>,
}

/// CPU and memory quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    /// CPU, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Memory, e.g. `512Mi` or `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub memory: Option<String>,
}

/// A Kubernetes resource quantity.
pub const QUANTITY_PATTERN: &str = "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelDeployerType {
    /// The service's `serve` command as a local daemon, health-checked.
    #[default]
    Process,
    /// `mlflow models serve --env-manager local` as a local daemon: health
    /// on `/ping`, predictions on `/invocations`.
    Mlflow,
    /// A KServe `InferenceService` (serving.kserve.io/v1beta1), committed to Git.
    Kserve,
    /// A Seldon Core v1 `SeldonDeployment` (machinelearning.seldon.io/v1),
    /// committed to Git. Seldon Core is under the Business Source License
    /// since 2024: prefer `kserve`.
    Seldon,
}

/// How runner writes the deployment state back to Git.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitSettings {
    /// Commit the deployment state after a promotion.
    #[serde(default = "yes")]
    pub commit: bool,
    /// Push the commit.
    #[serde(default)]
    pub push: bool,
    /// Remote to push to.
    #[serde(default = "default_remote")]
    pub remote: String,
    /// Branch to push to (default: the current branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Commit author as `Name <email>` (default: `runner <runner@users.noreply.invalid>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Also commit `runner.lock`.
    #[serde(default)]
    pub commit_lock: bool,
    /// Commit message template over `service`, `model`, `metrics`, `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `push`: the deployment commit goes onto the branch itself.
    /// `pull_request`: onto `runner/deploy/STACK/SERVICE`, proposed to the
    /// branch in one pull (merge) request, for a protected branch.
    #[serde(default)]
    pub mode: WriteBackMode,
    /// The pull or merge request of `mode: pull_request`.
    #[serde(default)]
    pub pull_request: PullRequestSettings,
    /// Sign deployment commits with the key in `RUNNER_GIT_SIGNING_KEY`:
    /// `ssh` (a private key file, as `ssh-keygen -Y sign` takes it) or `gpg`
    /// (a key id or fingerprint in the default keyring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<crate::signing::SignWith>,
}

/// Where a deployment commit goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteBackMode {
    /// Straight onto the branch (`git.push: true` pushes it).
    #[default]
    Push,
    /// Onto its own branch, pushed, and proposed in a pull (merge) request.
    PullRequest,
}

/// The pull request (GitHub) or merge request (GitLab) runner keeps open
/// for a service's deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequestSettings {
    /// `github` or `gitlab` (default: the CI's, else the remote's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::forge::ForgeKind>,
    /// The REST API's base URL (default: `GITHUB_API_URL` / `CI_API_V4_URL`,
    /// else `https://api.github.com` / `https://HOST/api/v4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// `OWNER/NAME` on GitHub; a project id or path on GitLab (default:
    /// `GITHUB_REPOSITORY` / `CI_PROJECT_ID`, else the remote URL's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Merge once the checks pass: GitHub auto-merge, GitLab "merge when
    /// the pipeline succeeds".
    #[serde(default)]
    pub auto_merge: bool,
    /// Labels put on the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Users asked to review (GitHub logins, GitLab usernames).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            commit: true,
            push: false,
            remote: default_remote(),
            branch: None,
            author: None,
            commit_lock: false,
            message: None,
            mode: WriteBackMode::Push,
            pull_request: PullRequestSettings::default(),
            sign: None,
        }
    }
}

/// The deployed state of one service on one stack, written and committed by runner.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner Deployment")]
pub struct Deployment {
    /// The spec format version: `runner/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// `Deployment`.
    pub kind: DeploymentKind,
    /// The service deployed (the file is `deployments/STACK/SERVICE.yaml`).
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub service: String,
    /// The stack it is deployed on.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub stack: String,
    /// The pipeline that trained and promoted the model.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub pipeline: String,
    /// The model being served.
    pub model: DeployedModel,
    /// The metrics the promoted model was measured with.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Every gate check, with its result.
    #[serde(default)]
    pub gate: Vec<GateRecord>,
    /// Where the model came from.
    pub source: DeploymentSource,
    /// The MLflow run and registered model version, when the stack tracks with MLflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowDeployment>,
    /// When it was deployed, RFC 3339 in UTC.
    pub deployed_at: String,
}

/// Where a deployed model is in MLflow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowDeployment {
    /// The tracking server, without credentials.
    pub tracking_uri: String,
    /// The MLflow run of the runner run that trained and promoted the model.
    pub run_id: String,
    /// The registered model, when the model was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_model: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The alias moved to that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// A promoted model: where it was, and its content digest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployedModel {
    /// The model's path in the repo work tree when it was promoted.
    pub path: String,
    /// Content digest, e.g. `blake3:...`.
    #[schemars(regex(pattern = "^[a-z0-9]+:[0-9a-f]+$"))]
    pub digest: String,
}

/// One gate check as it was evaluated at promotion.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRecord {
    /// The expression, as written in the pipeline.
    pub check: String,
    /// Whether it held.
    pub value: bool,
    /// The values the check read, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, serde_json::Value>,
}

/// The commit and run a deployed model came from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSource {
    /// The commit the model was trained on.
    pub commit: String,
    /// The run that trained it.
    pub run: String,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_health() -> String {
    "/health".to_string()
}

fn default_alias() -> String {
    "production".to_string()
}

fn default_remote() -> String {
    "origin".to_string()
}
