//! Checks that need more than a schema: references between steps, paths,
//! templates, expressions, durations, cron, unique names and the DAG itself.
//! Every problem becomes a diagnostic placed on the YAML node it concerns.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use croner::parser::{CronParser, Seconds, Year};

use super::expand::group_of;
use super::load::{DEPLOYMENTS_DIR, Document, Specs};
use super::paths::{self, normalize};
use super::types::{
    ArtifactStoreType, Command, ModelDeployerType, ParamRef, Pipeline, Stack, Step,
};
use super::yaml::{Node, Span};
use crate::dag::{Dag, EdgeReason};
use crate::diagnostic::{Diagnostic, Report};
use crate::suggest::{did_you_mean, hint};
use crate::template::{TemplateError, Templates};

/// Runs every semantic check and returns the DAG of each pipeline that has no
/// problems, in the order the pipelines were loaded.
pub fn check(specs: &Specs, report: &mut Report) -> Vec<Option<Dag>> {
    let templates = Templates::new();
    unique_names(
        "pipeline",
        specs.pipelines.iter().map(|d| (d, d.spec.name.as_str())),
        report,
    );
    unique_names(
        "stack",
        specs.stacks.iter().map(|d| (d, d.spec.name.as_str())),
        report,
    );
    for doc in &specs.stacks {
        if let Some(path) = &doc.spec.artifact_store.path
            && let Err(diagnostic) =
                check_path(doc, doc.span(&["artifact_store", "path"], false), path)
        {
            report.push(*diagnostic);
        }
        stack_components(doc, report);
    }
    for doc in &specs.deployments {
        let stem = format!("{DEPLOYMENTS_DIR}/{}/{}", doc.spec.stack, doc.spec.service);
        let expected = format!("{stem}.yaml");
        if doc.file != expected && doc.file != format!("{stem}.yml") {
            report.push(
                doc.error(doc.span(&["service"], false), format!("this Deployment belongs in `{expected}`"))
                    .with_help("runner finds a service's state by its path: move the file or fix `stack`/`service`"),
            );
        }
    }
    // `serve` is what the `process` deployer runs: needed unless no stack
    // serves with it (`mlflow`, `kserve` and `seldon` bring their own
    // servers; no stack: the built-in local one, process).
    let process_deploys = specs.stacks.is_empty()
        || specs
            .stacks
            .iter()
            .any(|d| d.spec.model_deployer.kind == ModelDeployerType::Process);
    let dags = specs
        .pipelines
        .iter()
        .map(|doc| {
            let (diagnostics, dag) = PipelineCheck::new(doc, &templates).run();
            diagnostics.into_iter().for_each(|d| report.push(d));
            if process_deploys
                && let Some(promote) = &doc.spec.promote
                && promote.service.serve.is_none()
            {
                report.push(
                    doc.error(
                        doc.span(&["promote", "service"], true),
                        "missing required field `serve` in `promote.service`",
                    )
                    .with_help("add the server command, e.g. `serve: python3 serve.py --model {{ model.path }} --port {{ port }}` (stacks that deploy with `mlflow`, `kserve` or `seldon` need none)"),
                );
            }
            dag
        })
        .collect::<Vec<_>>();
    check_retrain_sources(specs, &templates, report);
    dags
}

/// `retrain_when` reads pipelines that exist, and no two pipelines start
/// each other forever.
fn check_retrain_sources(specs: &Specs, templates: &Templates, report: &mut Report) {
    let names: Vec<&str> = specs
        .pipelines
        .iter()
        .map(|d| d.spec.name.as_str())
        .collect();
    let mut reads: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for doc in &specs.pipelines {
        let Some(expr) = &doc.spec.retrain_when else {
            continue;
        };
        let Ok(refs) = templates.expression_references(expr) else {
            continue;
        };
        let span = doc.span(&["retrain_when"], false);
        // Other shapes, and reading itself, are reported with the pipeline.
        let roots = refs.iter().filter_map(|r| {
            let mut parts = r.split('.');
            let root = parts.next()?;
            (parts.next() == Some("metrics") && root != doc.spec.name).then_some(root)
        });
        for root in roots {
            if names.contains(&root) {
                reads
                    .entry(doc.spec.name.as_str())
                    .or_default()
                    .push(root.to_string());
                continue;
            }
            let dashed = names.iter().any(|n| n.contains('-') && n.starts_with(root));
            let help = match dashed {
                true => "a name with `-` reads as a subtraction in an expression: rename the pipeline without `-` (e.g. `customer_satisfaction`) to read its metrics".to_string(),
                false => hint(root, names.iter().copied(), "-"),
            };
            report.push(
                doc.error(
                    span,
                    format!("`retrain_when` reads pipeline `{root}`, which does not exist"),
                )
                .with_help(help),
            );
        }
    }
    // A reader whose sources lead back to it: each would start the other.
    for doc in &specs.pipelines {
        let start = doc.spec.name.as_str();
        let mut stack: Vec<&str> = reads
            .get(start)
            .map(|r| r.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        while let Some(name) = stack.pop() {
            if name == start {
                report.push(
                    doc.error(doc.span(&["retrain_when"], false), format!("`retrain_when` of `{start}` reads a pipeline whose own `retrain_when` leads back to `{start}`: each run would start the other"))
                        .with_help("let a monitor pipeline (without `retrain_when`) measure, and the trainers read it"),
                );
                break;
            }
            if seen.insert(name) {
                stack.extend(
                    reads
                        .get(name)
                        .map(|r| r.iter().map(String::as_str).collect::<Vec<_>>())
                        .unwrap_or_default(),
                );
            }
        }
    }
}

fn unique_names<'a, T: 'a>(
    what: &str,
    docs: impl Iterator<Item = (&'a Document<T>, &'a str)>,
    report: &mut Report,
) {
    let mut seen: HashMap<&str, (&Document<T>, Span)> = HashMap::new();
    for (doc, name) in docs {
        let span = doc.span(&["name"], false);
        match seen.get(name) {
            Some((first, first_span)) => report.push(
                doc.error(span, format!("duplicate {what} name `{name}`"))
                    .with_label("defined again here")
                    .with_help(format!(
                        "`{name}` is already defined at {}:{}; rename one of them",
                        first.file, first_span.line
                    )),
            ),
            None => {
                seen.insert(name, (doc, span));
            }
        }
    }
}

/// What a stack's components need of each other: an `s3` store names its
/// bucket; a `kserve`/`seldon` deployer writes inside the repository and
/// needs an address the cluster reads models from.
fn stack_components(doc: &Document<Stack>, report: &mut Report) {
    let stack = &doc.spec;
    let store = &stack.artifact_store;
    if store.kind == ArtifactStoreType::S3 && store.bucket.is_none() {
        report.push(
            doc.error(
                doc.span(&["artifact_store", "type"], false),
                "an `s3` artifact store needs a `bucket`".to_string(),
            )
            .with_help("add `bucket: NAME` (and `endpoint:` for an S3-compatible server)"),
        );
    }
    let deployer = &stack.model_deployer;
    // Only the Kubernetes deployers write manifests for a cluster.
    if !matches!(
        deployer.kind,
        ModelDeployerType::Kserve | ModelDeployerType::Seldon
    ) {
        return;
    }
    if let Some(dir) = &deployer.manifests_dir
        && let Err(diagnostic) = check_path(
            doc,
            doc.span(&["model_deployer", "manifests_dir"], false),
            dir,
        )
    {
        report.push(*diagnostic);
    }
    // A `url` the schema rejected is reported there already.
    let url_written = doc
        .node()
        .get("artifact_store")
        .and_then(|s| s.get("url"))
        .is_some();
    if store.cluster_url().is_none() && !url_written {
        report.push(
            doc.error(
                doc.span(&["model_deployer", "type"], false),
                "a Kubernetes model deployer needs to know where the cluster reads models".to_string(),
            )
            .with_help("set `artifact_store.url` (e.g. `s3://bucket/runner-cache`), or use an `s3` artifact store"),
        );
    }
}

fn check_path<T>(doc: &Document<T>, span: Span, path: &str) -> Result<String, Box<Diagnostic>> {
    normalize(path).map_err(|problem| {
        Box::new(
            doc.error(span, format!("path `{path}` {}", problem.message()))
                .with_help("paths are relative to the repository root and must stay inside it"),
        )
    })
}

/// A step output's path and the step that writes it.
struct Written<'a> {
    step: &'a str,
    path: String,
    at: Vec<String>,
}

/// An edge found while checking a step: before, after, why, and where.
type Edge<'a> = (&'a str, &'a str, EdgeReason, Span);

/// The checks of one pipeline. Step checks only read shared data and write
/// their own diagnostics and edges, so large pipelines check steps on
/// several threads; the DAG is assembled afterwards.
struct PipelineCheck<'a> {
    doc: &'a Document<Pipeline>,
    templates: &'a Templates,
    diagnostics: Vec<Diagnostic>,
    edges: Vec<Edge<'a>>,
    /// Each step's key and value nodes: finding a node under `steps` must not
    /// scan thousands of siblings. A fan-out member has the nodes of the
    /// step it was expanded from.
    step_nodes: HashMap<&'a str, (&'a Node, &'a Node)>,
    /// The members of each fan-out step, in order, by the step's name.
    groups: HashMap<&'a str, Vec<&'a str>>,
}

const NO_PARAMS: &str = "declare it under `params:` at the top of the pipeline";
const NO_OUTPUTS: &str = "declare it under the step's `outputs:`";

/// What a step's command template can read.
const STEP_ROOTS: &[&str] = &["params", "outputs", "steps", "run", "git", "pipeline"];

/// Below this many steps, threads cost more than they save.
const PARALLEL_STEPS: usize = 512;

impl<'a> PipelineCheck<'a> {
    fn new(doc: &'a Document<Pipeline>, templates: &'a Templates) -> Self {
        let mut step_nodes: HashMap<&'a str, (&'a Node, &'a Node)> =
            match doc.node().get("steps").map(|n| &n.value) {
                Some(super::yaml::Value::Map(entries)) => entries
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?, (k, v))))
                    .collect(),
                _ => HashMap::new(),
            };
        let mut groups: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
        for (name, step) in &doc.spec.steps {
            if let Some(member) = &step.member {
                groups.entry(&member.group).or_default().push(name);
                if let Some(&nodes) = step_nodes.get(member.group.as_str()) {
                    step_nodes.insert(name, nodes);
                }
            }
        }
        PipelineCheck {
            doc,
            templates,
            diagnostics: Vec::new(),
            edges: Vec::new(),
            step_nodes,
            groups,
        }
    }

    /// The members of the fan-out step `name`, if it is one.
    fn members(&self, name: &str) -> Option<&[&'a str]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    /// The node at `at` (see `Node::locate`), found through the step index.
    fn node(&self, at: &[&str], key: bool) -> &'a Node {
        match at {
            ["steps", step, rest @ ..] => match self.step_nodes.get(step) {
                Some((key_node, _)) if rest.is_empty() && key => key_node,
                Some((_, value)) => value.locate(rest, key),
                None => self.doc.node().locate(at, key),
            },
            _ => self.doc.node().locate(at, key),
        }
    }

    fn spec(&self) -> &'a Pipeline {
        &self.doc.spec
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn error(&self, at: &[&str], key: bool, message: impl Into<String>) -> Diagnostic {
        self.doc.error(self.node(at, key).span, message)
    }

    /// Every problem of the pipeline, and its DAG when there are none.
    fn run(mut self) -> (Vec<Diagnostic>, Option<Dag>) {
        self.check_triggers();
        let written = self.check_outputs();
        self.check_steps(&written);
        self.check_promote();
        self.check_retrain_when();
        if !self.groups.is_empty() {
            // Members share their step's nodes: a problem each member has
            // is said once, at the line they were written on.
            let mut seen = HashSet::new();
            self.diagnostics.retain(|d| {
                seen.insert((
                    d.span.map(|s| (s.offset, s.len)),
                    d.label.clone(),
                    d.help.clone(),
                ))
            });
        }
        let mut dag = Dag::new(self.spec().steps.keys().map(String::as_str));
        let mut edge_spans: HashMap<(&str, &str), Span> = HashMap::new();
        for (before, after, reason, span) in std::mem::take(&mut self.edges) {
            edge_spans.entry((before, after)).or_insert(span);
            dag.add_edge(before, after, reason);
        }
        for cycle in dag.cycles() {
            let (last, first) = (&cycle[cycle.len() - 2], &cycle[cycle.len() - 1]);
            let span = edge_spans
                .get(&(last.as_str(), first.as_str()))
                .copied()
                .unwrap_or_else(|| self.node(&["steps", first], true).span);
            let diagnostic = self
                .doc
                .error(span, format!("dependency cycle: {}", cycle.join(" -> ")))
                .with_label("this edge closes the cycle")
                .with_help(
                    "a step cannot depend, even indirectly, on itself: remove one of these edges",
                );
            self.push(diagnostic);
        }
        let valid = self.diagnostics.is_empty() && !self.doc.recovered;
        (self.diagnostics, valid.then_some(dag))
    }

    fn check_steps(&mut self, written: &BTreeMap<String, Written<'a>>) {
        let steps: Vec<(&'a String, &'a Step)> = self
            .spec()
            .steps
            .iter()
            .map(|(name, step)| (name, &**step))
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        if threads < 2 || steps.len() < PARALLEL_STEPS {
            for (name, step) in steps {
                self.check_step(name, step, written);
            }
            return;
        }
        let (doc, templates) = (self.doc, self.templates);
        let results: Vec<(Vec<Diagnostic>, Vec<Edge<'a>>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = steps
                .chunks(steps.len().div_ceil(threads))
                .map(|part| {
                    scope.spawn(move || {
                        let mut worker = PipelineCheck::new(doc, templates);
                        for (name, step) in part {
                            worker.check_step(name, step, written);
                        }
                        (worker.diagnostics, worker.edges)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for (diagnostics, edges) in results {
            self.diagnostics.extend(diagnostics);
            self.edges.extend(edges);
        }
    }

    fn check_triggers(&mut self) {
        let Some(triggers) = &self.spec().triggers else {
            return;
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        for (i, expr) in triggers.schedule.iter().enumerate() {
            let index = i.to_string();
            let fields = expr.split_whitespace().count();
            let problem = if !expr.trim_start().starts_with('@') && fields != 5 && fields != 6 {
                Some(format!("it has {fields} fields"))
            } else {
                parser.parse(expr).err().map(|e| e.to_string())
            };
            if let Some(problem) = problem {
                let d = self
                    .error(&["on", "schedule", &index], false, format!("invalid cron expression `{expr}`: {problem}"))
                    .with_help("write 5 fields, minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7 or SUN-SAT), or 6 with seconds (0-59) first; times are UTC, e.g. `0 3 * * 1` is Mondays at 03:00");
                self.push(d);
            }
        }
        for (i, glob) in triggers.paths.iter().enumerate() {
            let index = i.to_string();
            let at = ["on", "paths", index.as_str()];
            if let Err(problem) = normalize(glob) {
                let d = self
                    .error(&at, false, format!("path `{glob}` {}", problem.message()))
                    .with_help("globs are matched against paths relative to the repository root");
                self.push(d);
            } else if let Err(err) = globset::Glob::new(glob) {
                let d = self
                    .error(&at, false, format!("invalid glob `{glob}`: {}", err.kind()))
                    .with_help(
                        "use `*` within a directory, `**` across directories, e.g. `data/**/*.csv`",
                    );
                self.push(d);
            }
        }
        if let Some(deadline) = &triggers.starting_deadline {
            self.check_duration(&["on", "starting_deadline"], deadline);
        }
    }

    fn check_duration(&mut self, at: &[&str], text: &str) {
        let problem = match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Some("it is zero".to_string()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            let d = self
                .error(at, false, format!("invalid duration `{text}`: {problem}"))
                .with_help("write a number and a unit, e.g. `90s`, `10m`, `1h 30m`");
            self.push(d);
        }
    }

    /// Checks every output and metrics path and returns what each step
    /// writes, keyed by normalised path; two steps writing one path (or one
    /// writing inside the other's output directory) is an error.
    fn check_outputs(&mut self) -> BTreeMap<String, Written<'a>> {
        let mut written: BTreeMap<String, Written<'a>> = BTreeMap::new();
        let spec = self.spec();
        // A fan-out left unexpanded (its problem is reported) has templates for paths.
        for (step_name, step) in spec.steps.iter().filter(|(_, s)| !s.fans_out()) {
            let outputs = step.outputs.iter().map(|(out, output)| {
                (
                    vec![
                        "steps".to_string(),
                        step_name.clone(),
                        "outputs".into(),
                        out.clone(),
                    ],
                    &output.path,
                )
            });
            let metrics = step.metrics.iter().map(|path| {
                (
                    vec!["steps".to_string(), step_name.clone(), "metrics".into()],
                    path,
                )
            });
            for (at, path) in outputs.chain(metrics) {
                let at_refs: Vec<&str> = at.iter().map(String::as_str).collect();
                let Some(normal) = self.path(&at_refs, path) else {
                    continue;
                };
                if normal == "." {
                    let d = self
                        .error(
                            &at_refs,
                            false,
                            format!("output `{path}` is the whole repository"),
                        )
                        .with_help("write outputs to a file or a directory such as `build/`");
                    self.push(d);
                    continue;
                }
                // A step may name one path twice (its metrics file is often
                // one of its outputs); only another step writing there clashes.
                let clash =
                    writers(&written, &normal).find(|other| other.step != step_name.as_str());
                if written.contains_key(&normal) && clash.is_none() {
                    continue;
                }
                if let Some(other) = clash {
                    let other_group = spec
                        .steps
                        .get(other.step)
                        .and_then(|o| o.member.as_ref())
                        .map(|m| m.group.as_str());
                    let group = step
                        .member
                        .as_ref()
                        .map(|m| m.group.as_str())
                        .filter(|g| Some(*g) == other_group);
                    let siblings = group.is_some();
                    let message = if let Some(group) = group {
                        format!(
                            "`{}` is written by two members of step `{group}`: `{}` and `{step_name}`",
                            other.path, other.step
                        )
                    } else if other.path == normal {
                        format!(
                            "`{path}` is written by two steps: `{}` and `{step_name}`",
                            other.step
                        )
                    } else {
                        format!(
                            "output `{path}` of step `{step_name}` overlaps `{}` of step `{}`",
                            other.path, other.step
                        )
                    };
                    let other_line = self
                        .node(
                            &other.at.iter().map(String::as_str).collect::<Vec<_>>(),
                            false,
                        )
                        .span
                        .line;
                    let help = match siblings {
                        true => "template the path with the member's entry so each member writes its own, e.g. `build/{{ item }}/model.json`".to_string(),
                        false => format!(
                            "the other is at {}:{other_line}; give each step its own output paths",
                            self.doc.file
                        ),
                    };
                    let d = self
                        .error(&at_refs, false, message)
                        .with_label("written again here")
                        .with_help(help);
                    self.push(d);
                    continue;
                }
                written.insert(
                    normal.clone(),
                    Written {
                        step: step_name,
                        path: normal,
                        at,
                    },
                );
            }
        }
        written
    }

    fn path(&mut self, at: &[&str], path: &str) -> Option<String> {
        check_path(self.doc, self.node(at, false).span, path)
            .map_err(|d| self.push(*d))
            .ok()
    }

    fn check_step(
        &mut self,
        name: &'a str,
        step: &'a Step,
        written: &BTreeMap<String, Written<'a>>,
    ) {
        let spec = self.spec();
        let steps = || spec.steps.keys().map(String::as_str);
        for (i, need) in step.needs.iter().enumerate() {
            let index = i.to_string();
            let at = ["steps", name, "needs", index.as_str()];
            let span = self.node(&at, false).span;
            let members = self.members(need).map(<[&str]>::to_vec);
            if need == name || need == group_of(name) {
                let whole = match need == name {
                    true => String::new(),
                    false => format!(" (`{need}` is its own fan-out)"),
                };
                let d = self
                    .error(&at, false, format!("step `{name}` needs itself{whole}"))
                    .with_help("remove it from `needs`");
                self.push(d);
            } else if spec.steps.contains_key(need) {
                self.add_edge(need, name, EdgeReason::Needs, span);
            } else if let Some(members) = members {
                for member in members {
                    self.add_edge(member, name, EdgeReason::Needs, span);
                }
            } else if let Some(help) = self
                .members(group_of(need))
                .map(|members| hint(need, members.iter().copied(), "-"))
            {
                let d = self
                    .error(
                        &at,
                        false,
                        format!(
                            "step `{name}` needs `{need}`, which is not a member of step `{}`",
                            group_of(need)
                        ),
                    )
                    .with_label("no such member")
                    .with_help(help);
                self.push(d);
            } else {
                let d = self
                    .error(
                        &at,
                        false,
                        format!(
                            "step `{name}` needs `{need}`, which is not a step of this pipeline"
                        ),
                    )
                    .with_label("no such step")
                    .with_help(hint(need, steps(), "-"));
                self.push(d);
            }
        }
        for (i, param) in step.params.iter().enumerate() {
            let problem = match param {
                ParamRef::Name(param) => self.param_problem(param),
                ParamRef::File { file } => self.params_file_problem(file),
            };
            if let Some((message, help)) = problem {
                let index = i.to_string();
                let d = self
                    .error(&["steps", name, "params", &index], false, message)
                    .with_help(help);
                self.push(d);
            }
        }
        for (i, dep) in step.deps.iter().enumerate().filter(|_| !step.fans_out()) {
            let index = i.to_string();
            let at = ["steps", name, "deps", index.as_str()];
            let Some(normal) = self.path(&at, dep) else {
                continue;
            };
            let producers: Vec<&Written> = writers(written, &normal).collect();
            for producer in producers {
                if producer.step == name {
                    let message = if producer.path == normal {
                        format!("step `{name}` lists its own output `{normal}` in deps")
                    } else if paths::is_inside(&producer.path, &normal) {
                        format!(
                            "`{normal}` in deps contains step `{name}`'s own output `{}`",
                            producer.path
                        )
                    } else {
                        format!(
                            "`{normal}` in deps is inside step `{name}`'s own output `{}`",
                            producer.path
                        )
                    };
                    let d = self.error(&at, false, message).with_help(
                        "a step's outputs are not its inputs: list only what it reads in `deps`",
                    );
                    self.push(d);
                } else {
                    let span = self.node(&at, false).span;
                    self.add_edge(producer.step, name, EdgeReason::Deps(normal.clone()), span);
                }
            }
        }
        if let Some(workdir) = step.workdir.as_ref().filter(|_| !step.fans_out()) {
            self.path(&["steps", name, "workdir"], workdir);
        }
        if let Some(timeout) = &step.timeout {
            self.check_duration(&["steps", name, "timeout"], timeout);
        }
        for key in step.env.keys() {
            if key.starts_with("RUNNER_") {
                let d = self
                    .error(
                        &["steps", name, "env", key],
                        true,
                        format!("`{key}` is set by runner"),
                    )
                    .with_help("names starting with RUNNER_ are reserved; choose another name");
                self.push(d);
            }
        }
        for (i, plot) in step.plots.iter().enumerate().filter(|_| !step.fans_out()) {
            let index = i.to_string();
            let at = ["steps", name, "plots", index.as_str(), "path"];
            let Some(normal) = self.path(&at, &plot.path) else {
                continue;
            };
            let written = step
                .outputs
                .values()
                .map(|o| &o.path)
                .chain(step.metrics.iter())
                .filter_map(|p| normalize(p).ok())
                .any(|p| p == normal || paths::is_inside(&normal, &p));
            if !written {
                let d = self
                    .error(&at, false, format!("plot `{}` is not an output of step `{name}`", plot.path))
                    .with_help("add it to the step's `outputs`: runner keeps plot data with the step's other outputs");
                self.push(d);
            }
        }
        if !step.checks.is_empty() && step.metrics.is_none() {
            let d = self
                .error(
                    &["steps", name, "checks"],
                    true,
                    format!("step `{name}` has checks but writes no metrics for them to read"),
                )
                .with_help("add `metrics: FILE`: the JSON or YAML numbers the step writes, e.g. `metrics: build/data-report.json`");
            self.push(d);
        }
        self.check_expressions(
            &["steps", name, "checks"],
            &step.checks,
            &["metrics", "params"],
            "check",
        );
        let at = ["steps", name, "run"];
        let example = "`{{ params.NAME }}`, `{{ outputs.NAME }}`, `{{ steps.STEP.outputs.NAME }}`, `{{ run.id }}` and `{{ git.sha }}`";
        self.check_command(&step.run, &at, example, |check, path| {
            check.step_reference(name, step, path)
        });
    }

    /// Parses each part of a command as a template and checks what it reads;
    /// `example` is what the help shows when a part does not parse.
    fn check_command(
        &mut self,
        command: &Command,
        at: &[&str],
        example: &str,
        mut check_ref: impl FnMut(&mut Self, &Reference),
    ) {
        for (i, part) in command.parts().iter().enumerate() {
            let index = i.to_string();
            let mut path: Vec<&str> = at.to_vec();
            if matches!(command, Command::Argv(_)) {
                path.push(&index);
            }
            let node = self.node(&path, false);
            match self.templates.references(part) {
                Ok(refs) => {
                    for reference in refs {
                        let r = Reference {
                            span: reference_span(self.doc, node, &reference, true),
                            path: reference,
                        };
                        check_ref(self, &r);
                    }
                }
                Err(err) => {
                    let span = error_span(self.doc, node, part, &err);
                    let d = self
                        .doc
                        .error(span, format!("template does not parse: {}", err.message))
                        .with_help(format!(
                            "close every `{{{{` with `}}}}`; this command can read {example}"
                        ));
                    self.push(d);
                }
            }
        }
    }

    fn step_reference(&mut self, name: &'a str, step: &Step, reference: &Reference) {
        let spec = self.spec();
        let parts: Vec<&str> = reference.path.split('.').collect();
        let unexpanded = step.fans_out();
        let problem: Option<(String, String)> = match parts.as_slice() {
            ["params", param, ..] => self.param_problem(param),
            ["item" | "key", ..] if unexpanded => None,
            ["item", rest @ ..] => match &step.member {
                Some(member) => item_problem(name, &member.item, rest),
                None => Some(not_a_member("item")),
            },
            ["key", ..] => match &step.member {
                Some(member) if member.key.is_some() => None,
                Some(_) => Some((
                    format!("member `{name}` has no `key`"),
                    "`key` is set when `foreach` is a mapping (`foreach: {small: ..., large: ...}`); read the entry as `item`".to_string(),
                )),
                None => Some(not_a_member("key")),
            },
            ["steps", other, rest @ ..] if !spec.steps.contains_key(*other) && self.members(other).is_some() => {
                self.group_reference(name, step, other, rest, reference)
            }
            ["outputs", output, ..] if !step.outputs.contains_key(*output) => Some((
                format!("step `{name}` has no output `{output}`"),
                hint(output, step.outputs.keys().map(String::as_str), NO_OUTPUTS),
            )),
            ["steps", other, rest @ ..] => match spec.steps.get_key_value(*other) {
                None => Some((
                    format!(
                        "`{}` reads step `{other}`, which is not a step of this pipeline",
                        reference.path
                    ),
                    hint(other, spec.steps.keys().map(String::as_str), "-"),
                )),
                Some((other, _)) if other == name => Some((
                    format!("step `{name}` reads its own outputs through `steps.{name}`"),
                    "use `outputs.NAME` for the step's own outputs".to_string(),
                )),
                Some((other, other_step)) => match rest {
                    ["outputs", output, ..] if other_step.outputs.contains_key(*output) => {
                        let reason = EdgeReason::Template((*output).to_string());
                        self.add_edge(other, name, reason, reference.span);
                        None
                    }
                    ["outputs", output, ..] => Some((
                        format!("step `{other}` has no output `{output}`"),
                        hint(
                            output,
                            other_step.outputs.keys().map(String::as_str),
                            NO_OUTPUTS,
                        ),
                    )),
                    _ => Some((
                        format!("`{}` is not something a template can read", reference.path),
                        format!(
                            "read another step's outputs as `steps.{other}.outputs.NAME`, with dots, so runner sees the dependency"
                        ),
                    )),
                },
            },
            ["run", "id"] | ["git", "sha" | "branch"] | ["pipeline"] => None,
            ["run" | "git", ..] => Some((
                format!("`{}` is not known", reference.path),
                "templates can read `run.id`, `git.sha` and `git.branch`".to_string(),
            )),
            ["pipeline", ..] => Some((
                format!("`{}` is not known", reference.path),
                "`pipeline` is the pipeline's name: write `{{ pipeline }}`".to_string(),
            )),
            ["outputs"] | ["params"] | ["steps"] => Some(whole_root(&reference.path)),
            ["outputs", ..] => None,
            [root, ..] => Some(unknown_root(root, STEP_ROOTS, "template")),
            [] => None,
        };
        if let Some((message, help)) = problem {
            let d = self.doc.error(reference.span, message).with_help(help);
            self.push(d);
        }
    }

    /// `steps.GROUP.outputs.NAME` (every member's path) or
    /// `steps.GROUP.members` read by step `name`: an edge from every member.
    fn group_reference(
        &mut self,
        name: &'a str,
        step: &Step,
        group: &str,
        rest: &[&str],
        reference: &Reference,
    ) -> Option<(String, String)> {
        let members = self
            .members(group)
            .map(<[&str]>::to_vec)
            .unwrap_or_default();
        if group == group_of(name) {
            return Some((
                format!("member `{name}` reads its own fan-out through `steps.{group}`"),
                "use `outputs.NAME` for the member's own outputs and `item` for its entry"
                    .to_string(),
            ));
        }
        let reason = match rest {
            ["members", ..] => EdgeReason::Members,
            ["outputs", output, ..] => {
                let first = members.first().and_then(|m| self.spec().steps.get(*m));
                let outputs = first.map(|s| &s.outputs);
                if !outputs.is_some_and(|o| o.contains_key(*output)) {
                    return Some((
                        format!("step `{group}` has no output `{output}`"),
                        hint(
                            output,
                            outputs
                                .into_iter()
                                .flat_map(|o| o.keys().map(String::as_str)),
                            NO_OUTPUTS,
                        ),
                    ));
                }
                if matches!(step.run, Command::Argv(_)) {
                    return Some((
                        format!(
                            "`{}` is every member's path, and a list command takes one argument per element",
                            reference.path
                        ),
                        format!(
                            "write the command as a string, where each path becomes an argument, or loop over `steps.{group}.members`"
                        ),
                    ));
                }
                EdgeReason::Template((*output).to_string())
            }
            _ => {
                return Some((
                    format!("`{}` is not something a template can read", reference.path),
                    format!(
                        "`{group}` fans out: read every member's path as `steps.{group}.outputs.NAME`, or loop over `steps.{group}.members` (each with `name`, `item`, `outputs` and `metrics`)"
                    ),
                ));
            }
        };
        for member in members {
            self.add_edge(member, name, reason.clone(), reference.span);
        }
        None
    }

    /// A whole params file a step depends on must be one the pipeline reads.
    fn params_file_problem(&self, file: &str) -> Option<(String, String)> {
        let files = &self.spec().params_files;
        (!files.iter().any(|f| f == file)).then(|| {
            (
                format!("`{file}` is not one of the pipeline's `params_files`"),
                hint(
                    file,
                    files.iter().map(String::as_str),
                    &format!("add `{file}` to the pipeline's `params_files`"),
                ),
            )
        })
    }

    fn param_problem(&self, param: &str) -> Option<(String, String)> {
        let params = &self.spec().params;
        // Params from files are only known when a run reads the files: the
        // plan checks those (naming the files).
        let top = param.split('.').next().unwrap_or(param);
        let known = params.contains_key(top) || !self.spec().params_files.is_empty();
        (!known).then(|| {
            (
                format!("param `{param}` is not declared in `params`"),
                hint(param, params.keys().map(String::as_str), NO_PARAMS),
            )
        })
    }

    /// Expressions (gates, checks) compile and read only `roots`; a gate
    /// that lets worse models through is an error.
    fn check_expressions(&mut self, at: &[&str], exprs: &[String], roots: &[&str], what: &str) {
        for (i, expr) in exprs.iter().enumerate() {
            let index = i.to_string();
            let mut path = at.to_vec();
            path.push(&index);
            let node = self.node(&path, false);
            match self.templates.expression_references(expr) {
                Ok(refs) => {
                    for reference in refs {
                        let root = reference.split('.').next().unwrap_or_default();
                        let problem = match root {
                            "params" if roots.contains(&"params") => {
                                match reference.split('.').nth(1) {
                                    Some(param) => self.param_problem(param),
                                    None => Some(whole_root("params")),
                                }
                            }
                            root if roots.contains(&root) => None,
                            other => Some(unknown_root(other, roots, "expression")),
                        };
                        if let Some((message, help)) = problem {
                            let span = reference_span(self.doc, node, &reference, false);
                            let d = self.doc.error(span, message).with_help(help);
                            self.push(d);
                        }
                    }
                    if what == "gate"
                        && let Some(fix) = super::direction::direction_problem(expr)
                    {
                        let d = self
                            .doc
                            .error(node.span, "this gate lets worse models through")
                            .with_help(fix);
                        self.push(d);
                    }
                }
                Err(err) => {
                    let span = error_span(self.doc, node, expr, &err);
                    let d = self
                        .doc
                        .error(span, format!("{what} expression does not compile: {}", err.message))
                        .with_help(if expr.contains("{{") {
                            format!("a {what} is a bare expression: drop the `{{{{ }}}}`, e.g. `metrics.mse <= params.max_mse`")
                        } else if expr.contains('=') && !expr.contains("==") && !expr.contains("<=") && !expr.contains(">=") && !expr.contains("!=") {
                            "compare with `==`, not `=`".to_string()
                        } else if what == "gate" {
                            "write a comparison such as `metrics.mse <= params.max_mse` or `production is none or metrics.r2 >= production.metrics.r2`".to_string()
                        } else {
                            "write a comparison such as `metrics.rows >= 1000` or `metrics.null_rate < params.max_null_rate`".to_string()
                        });
                    self.push(d);
                }
            }
        }
    }

    /// `retrain_when` reads `PIPELINE.metrics.NAME` of other pipelines.
    fn check_retrain_when(&mut self) {
        let Some(expr) = &self.spec().retrain_when else {
            return;
        };
        let node = self.node(&["retrain_when"], false);
        match self.templates.expression_references(expr) {
            Ok(refs) => {
                for reference in refs {
                    let parts: Vec<&str> = reference.split('.').collect();
                    let problem = match parts.as_slice() {
                        [pipeline, ..] if *pipeline == self.spec().name => Some((
                            format!("`retrain_when` reads pipeline `{pipeline}` itself"),
                            "it reads the metrics of another pipeline, such as a `monitor` that measures drift".to_string(),
                        )),
                        [_, "metrics", _, ..] => None,
                        _ => Some((
                            format!("`retrain_when` reads `{reference}`"),
                            "it reads other pipelines' metrics: `PIPELINE.metrics.NAME`, e.g. `monitor.metrics.max_psi > 0.2`".to_string(),
                        )),
                    };
                    if let Some((message, help)) = problem {
                        let span = reference_span(self.doc, node, &reference, false);
                        let d = self.doc.error(span, message).with_help(help);
                        self.push(d);
                    }
                }
            }
            Err(err) => {
                let span = error_span(self.doc, node, expr, &err);
                let d = self
                    .doc
                    .error(
                        span,
                        format!("`retrain_when` does not compile: {}", err.message),
                    )
                    .with_help("write a comparison such as `monitor.metrics.max_psi > 0.2`");
                self.push(d);
            }
        }
    }

    fn check_promote(&mut self) {
        let Some(promote) = &self.spec().promote else {
            return;
        };
        let spec = self.spec();
        if let Some((step_name, output)) = promote.model.split_once('.') {
            let problem = match spec.steps.get(step_name) {
                None if self.members(step_name).is_some() => Some((
                    format!(
                        "`promote.model` names step `{step_name}`, which fans out into several models"
                    ),
                    format!(
                        "add a step with `needs: [{step_name}]` that reads `steps.{step_name}.members`, copies the best member's model (by its metrics) to its own output, and promote that output"
                    ),
                )),
                None => Some((
                    format!(
                        "`promote.model` names step `{step_name}`, which is not a step of this pipeline"
                    ),
                    hint(step_name, spec.steps.keys().map(String::as_str), "-"),
                )),
                Some(step) if !step.outputs.contains_key(output) => Some((
                    format!("step `{step_name}` has no output `{output}` to promote"),
                    hint(output, step.outputs.keys().map(String::as_str), NO_OUTPUTS),
                )),
                Some(_) => None,
            };
            if let Some((message, help)) = problem {
                let d = self
                    .error(&["promote", "model"], false, message)
                    .with_help(help);
                self.push(d);
            }
        }
        self.check_expressions(
            &["promote", "gate"],
            &promote.gate,
            &["metrics", "params", "production", "git"],
            "gate",
        );
        let no_command = Command::Argv(Vec::new());
        self.check_command(
            promote.service.serve.as_ref().unwrap_or(&no_command),
            &["promote", "service", "serve"],
            "`{{ model.path }}`, `{{ model.digest }}`, `{{ port }}` and `{{ params.NAME }}`",
            |check, reference| {
                let problem = match reference.path.split('.').collect::<Vec<_>>().as_slice() {
                    ["params", param, ..] => check.param_problem(param),
                    ["model", "path" | "digest"] | ["model"] | ["port"] | ["service", ..] => None,
                    ["model", other, ..] => Some((
                        format!("`model.{other}` is not known"),
                        "the model is `model.path` and `model.digest`".to_string(),
                    )),
                    ["params"] => Some(whole_root("params")),
                    [root, ..] => Some(unknown_root(
                        root,
                        &["model", "port", "params", "service"],
                        "template",
                    )),
                    [] => None,
                };
                if let Some((message, help)) = problem {
                    let d = check.doc.error(reference.span, message).with_help(help);
                    check.push(d);
                }
            },
        );
        if let Some(timeout) = &promote.service.ready_timeout {
            self.check_duration(&["promote", "service", "ready_timeout"], timeout);
        }
        // An update starts the new server on a scratch port first: a server
        // that picks its own port can never be updated in place.
        // No command: the stack's deployer serves the model its own way
        // (`mlflow`), or deploying says that `serve` is missing.
        let serve = promote
            .service
            .serve
            .as_ref()
            .map_or(&[][..], Command::parts);
        let reads_port = serve.is_empty()
            || serve.iter().any(|part| {
                part.contains("$PORT")
                    || part.contains("${PORT}")
                    || self
                        .templates
                        .references(part)
                        .is_ok_and(|refs| refs.contains("port"))
            });
        if !reads_port {
            let d = self
                .error(&["promote", "service", "serve"], false, "the server does not listen on the port runner gives it")
                .with_help("pass `{{ port }}` (or read $PORT): runner picks the port, and checks a new model on a second one before it swaps");
            self.push(d);
        }
        for (field, path) in [
            ("health", Some(&promote.service.health)),
            ("predict", promote.service.predict.as_ref()),
        ] {
            if let Some(path) = path.filter(|p| !p.starts_with('/')) {
                let d = self
                    .error(
                        &["promote", "service", field],
                        false,
                        format!("`{path}` is not an HTTP path"),
                    )
                    .with_help(format!(
                        "write it from the root of the server, e.g. `/{}`",
                        path.trim_start_matches('/')
                    ));
                self.push(d);
            }
        }
    }

    fn add_edge(&mut self, before: &'a str, after: &'a str, reason: EdgeReason, span: Span) {
        self.edges.push((before, after, reason, span));
    }
}

/// `item` or `key` read by a step that does not fan out.
fn not_a_member(root: &str) -> (String, String) {
    (
        format!("unknown variable `{root}`"),
        format!(
            "`{root}` is the entry of a fan-out member: add `foreach:` or `matrix:` to the step"
        ),
    )
}

/// `item.A.B` read by member `name`: the entry must have it, or every run
/// of the member would fail to render.
fn item_problem(name: &str, item: &serde_json::Value, path: &[&str]) -> Option<(String, String)> {
    let mut value = item;
    for (depth, part) in path.iter().enumerate() {
        match value.get(part) {
            Some(inner) => value = inner,
            None => {
                let read = path[..=depth].join(".");
                let keys: Vec<&str> = value
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let help = match keys.is_empty() {
                    true => "this entry is a single value: read it as `{{ item }}`".to_string(),
                    false => hint(part, keys.iter().copied(), "-"),
                };
                return Some((
                    format!("member `{name}` has no `item.{read}` in its entry"),
                    help,
                ));
            }
        }
    }
    None
}

/// A variable path a template reads, and where it is written.
struct Reference {
    path: String,
    span: Span,
}

/// `{{ steps }}`, `{{ params }}` or `{{ outputs }}` whole, or read with
/// `[...]`: runner cannot tell which name is read, so cannot check it or see
/// the dependency.
fn whole_root(root: &str) -> (String, String) {
    let example = match root {
        "steps" => "steps.STEP.outputs.NAME",
        "params" => "params.NAME",
        _ => "outputs.NAME",
    };
    (
        format!("`{root}` is read whole or with `[...]`"),
        format!(
            "read one value with dots, `{example}`, so runner can check it and see the dependency"
        ),
    )
}

fn unknown_root(root: &str, allowed: &[&str], what: &str) -> (String, String) {
    let list = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = match did_you_mean(root, allowed.iter().copied()) {
        Some(close) => format!("did you mean `{close}`? this {what} can read {list}"),
        None => format!("this {what} can read {list}"),
    };
    (format!("unknown variable `{root}`"), help)
}

/// The outputs at `path`, containing it, or inside it.
fn writers<'m, 'a>(
    written: &'m BTreeMap<String, Written<'a>>,
    path: &str,
) -> impl Iterator<Item = &'m Written<'a>> {
    written
        .get(path)
        .into_iter()
        .chain(ancestors(path).filter_map(|a| written.get(a)))
        .chain(descendants(written, path))
}

/// `a/b/c` gives `a/b`, then `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
}

/// Entries of `written` strictly inside directory `dir`.
fn descendants<'m, 'a>(
    written: &'m BTreeMap<String, Written<'a>>,
    dir: &str,
) -> impl Iterator<Item = &'m Written<'a>> {
    let prefix = format!("{dir}/");
    written
        .range(prefix.clone()..)
        .take_while(move |(path, _)| path.starts_with(&prefix))
        .map(|(_, w)| w)
        .filter(move |w| paths::is_inside(&w.path, dir))
}

/// The source text of a scalar node: from its start to its end (or the end
/// of its line when the parser gave no length).
fn raw_text<'t, T>(doc: &'t Document<T>, node: &Node) -> (usize, &'t str) {
    let text: &str = &doc.text;
    let start = node.span.offset.min(text.len());
    let end = if node.span.len > 0 {
        (start + node.span.len).min(text.len())
    } else {
        text[start..].find('\n').map_or(text.len(), |i| start + i)
    };
    (start, &text[start..end])
}

/// Where a variable path is read inside a scalar: the first occurrence of it
/// as a whole name (inside `{{ }}` or `{% %}` for a template, anywhere in a
/// bare expression). Falls back to the scalar itself.
fn reference_span<T>(doc: &Document<T>, node: &Node, path: &str, template: bool) -> Span {
    let (start, raw) = raw_text(doc, node);
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let found = raw.match_indices(path).map(|(i, _)| i).find(|&i| {
        let before = &raw[..i];
        let last_open = before.rfind("{{").max(before.rfind("{%"));
        let inside = !template || last_open > before.rfind("}}").max(before.rfind("%}"));
        let bounded = !before.ends_with(is_name) && !raw[i + path.len()..].starts_with(is_name);
        inside && bounded
    });
    match found {
        Some(i) => span_within(node, raw, start, i, path.len()),
        None => node.span,
    }
}

/// Where a template or expression error is: minijinja's byte offset mapped
/// back into the file by finding the token there. At the end of the input,
/// the last `{{` or `{%` that was never closed is the culprit.
fn error_span<T>(doc: &Document<T>, node: &Node, template: &str, err: &TemplateError) -> Span {
    let (start, raw) = raw_text(doc, node);
    let Some(mut offset) = err.offset else {
        return node.span;
    };
    if offset >= template.trim_end().len() || err.message.contains("end of input") {
        let open = template.rfind("{{").max(template.rfind("{%"));
        if open.is_some() && template.rfind("}}").max(template.rfind("%}")) < open {
            offset = open.unwrap_or(offset);
        }
    }
    let offset = offset.min(template.len());
    let token = template[offset..]
        .split(char::is_whitespace)
        .next()
        .unwrap_or_default();
    if token.is_empty() {
        return node.span;
    }
    // The k-th occurrence in the template is the k-th in the source: block
    // indentation and folding shift offsets, but keep the order.
    let k = template[..offset].matches(token).count();
    let nearest = raw.match_indices(token).map(|(i, _)| i).nth(k).or_else(|| {
        raw.match_indices(token)
            .map(|(i, _)| i)
            .min_by_key(|&i| i.abs_diff(offset))
    });
    match nearest {
        Some(i) => span_within(node, raw, start, i, token.len()),
        None => node.span,
    }
}

/// The span of `raw[at..at + len]`, where `raw` is the source text of `node`
/// starting at byte `start`. Counts only within the node, never the file.
fn span_within(node: &Node, raw: &str, start: usize, at: usize, len: usize) -> Span {
    let before = &raw[..at];
    let (line, column) = match before.rfind('\n') {
        None => (node.span.line, node.span.column + before.chars().count()),
        Some(newline) => (
            node.span.line + before.matches('\n').count(),
            before[newline + 1..].chars().count() + 1,
        ),
    };
    Span {
        line,
        column,
        offset: start + at,
        len,
    }
}
