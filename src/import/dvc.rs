//! dvc.yaml to a runner Pipeline: every stage becomes a step (a `foreach`
//! or `matrix` one a fan-out with DVC's member names), paths become repo
//! paths, and what runner has no field for becomes a comment. What cannot
//! be translated is refused with its line, never dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use super::interpolate::{Member, Place, Rendered, Scope, flatten};
use super::yaml_out::YamlOut;
use crate::diagnostic::{Diagnostic, Report};
use crate::error::{Error, ImportError};
use crate::spec::yaml::{Node, Value as Yaml, parse_documents};

/// What `runner import dvc` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The directory of dvc.yaml, relative to the repository root.
    pub dir: String,
    /// The pipeline's name (default: the directory's name).
    pub name: Option<String>,
}

/// The translated pipeline and where each step came from.
#[derive(Debug)]
pub struct Translation {
    pub name: String,
    /// The pipeline as YAML, comments included.
    pub text: String,
    /// dvc.yaml's path in the repository.
    pub dvc_file: String,
    /// DVC stages (a fan-out counts once).
    pub stages: usize,
    /// What had no runner equivalent, also written as comments.
    pub notes: Vec<String>,
    /// Runner's members by DVC's, for reading dvc.lock.
    pub origins: Vec<Origin>,
}

/// One DVC stage (or fan-out member) as runner names and runs it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The runner step, e.g. `train_model@us`.
    pub step: String,
    /// The DVC stage, e.g. `train-model@us`.
    pub stage: String,
    /// Its commands as DVC resolves them (`dvc.lock` records these).
    pub cmd: Vec<String>,
    /// Its working directory in the repository (`dvc.lock` paths are relative to it).
    pub wdir: String,
}

/// Stage fields runner reads; anything else is refused by name.
const STAGE_FIELDS: &[&str] = &[
    "cmd",
    "wdir",
    "deps",
    "outs",
    "params",
    "metrics",
    "plots",
    "frozen",
    "always_changed",
    "desc",
    "meta",
    "vars",
];

/// A translation, or why there is none.
pub enum Translated {
    Done(Box<Translation>),
    /// What cannot be translated, each with its line in dvc.yaml.
    Refused(Report),
}

/// Reads `DIR/dvc.yaml` (and its params and vars files) and translates it.
pub fn translate(root: &Path, request: &Request) -> Result<Translated, Error> {
    let dir = request.dir.trim_matches('/').trim_start_matches("./");
    let dir = if dir == "." { "" } else { dir };
    let dvc_file = join_repo("", &[dir, "dvc.yaml"]).map_err(Error::usage)?;
    let text =
        std::fs::read_to_string(root.join(&dvc_file)).map_err(|_| ImportError::NoDvcYaml {
            file: dvc_file.clone(),
        })?;
    let mut t = Translator {
        root,
        dir: dir.to_string(),
        file: dvc_file.clone(),
        report: Report::default(),
        notes: Vec::new(),
        params_files: Vec::new(),
        inline_params: serde_json::Map::new(),
        param_values: serde_json::Map::new(),
        vars: serde_json::Map::new(),
        origins: Vec::new(),
        steps: Vec::new(),
        sources: BTreeMap::new(),
    };
    t.report.add_source(&dvc_file, text.as_str().into());
    let doc = match parse_documents(&text) {
        Ok(docs) => docs.into_iter().next().unwrap_or_default(),
        Err(err) => {
            let d = Diagnostic::new(&dvc_file, err.span, err.message);
            t.report.push(d);
            return Ok(t.refused());
        }
    };
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| default_name(root, dir));
    t.read(&doc);
    if !t.report.is_empty() {
        return Ok(t.refused());
    }
    let stages = t.steps.len();
    let text = t.emit(&name);
    Ok(Translated::Done(Box::new(Translation {
        name,
        text,
        dvc_file,
        stages,
        notes: t.notes,
        origins: t.origins,
    })))
}

/// A step as translated, before it is written.
struct Step {
    name: String,
    comments: Vec<String>,
    description: Option<String>,
    run: Value,
    workdir: Option<String>,
    deps: Vec<String>,
    params: Vec<Value>,
    outputs: Vec<(String, Value)>,
    metrics: Option<String>,
    plots: Vec<Value>,
    frozen: bool,
    always: bool,
    foreach: Option<Value>,
}

struct Translator<'a> {
    root: &'a Path,
    dir: String,
    file: String,
    report: Report,
    notes: Vec<String>,
    /// Params files in the order runner merges them.
    params_files: Vec<String>,
    /// `vars` written in dvc.yaml itself.
    inline_params: serde_json::Map<String, Value>,
    /// params.yaml's values: what `${}` reads and tracks.
    param_values: serde_json::Map<String, Value>,
    /// Every `vars` value: read by `${}`, never tracked.
    vars: serde_json::Map<String, Value>,
    origins: Vec<Origin>,
    steps: Vec<Step>,
    /// Which source defined each flattened param, to refuse a clash.
    sources: BTreeMap<String, (String, Value)>,
}

impl Translator<'_> {
    fn refused(&mut self) -> Translated {
        let mut report = std::mem::take(&mut self.report);
        report.sort();
        Translated::Refused(report)
    }

    fn problem(&mut self, node: &Node, message: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let mut d = Diagnostic::new(&self.file, Some(node.span), message);
        if help != "-" {
            d = d.with_help(help);
        }
        self.report.push(d);
    }

    fn read(&mut self, doc: &Node) {
        let Yaml::Map(entries) = &doc.value else {
            self.problem(doc, "dvc.yaml is not a mapping", "it should hold `stages:`");
            return;
        };
        // params.yaml beside dvc.yaml: read by `${}` whether or not a stage lists it.
        let default_params = join_repo(&self.dir, &["params.yaml"]).unwrap_or_default();
        if self.root.join(&default_params).is_file() {
            match self.read_data_file(&default_params) {
                Ok(Value::Object(map)) => {
                    self.add_source(&default_params, &map);
                    self.param_values = map;
                    self.params_files.push(default_params.clone());
                }
                Ok(_) => {}
                Err(message) => self.problem(doc, message, "fix params.yaml"),
            }
        }
        let get = |key: &str| entries.iter().find(|(k, _)| k.as_str() == Some(key));
        if let Some((_, vars)) = get("vars") {
            self.read_vars(vars);
        }
        for (key, value) in entries {
            match key.as_str().unwrap_or_default() {
                "stages" | "vars" | "metrics" | "plots" => {}
                "params" => self.read_top_params(value),
                "artifacts" | "datasets" => {
                    let note = format!(
                        "dvc.yaml `{}` (model registry entries) is not imported: runner's `promote:` block names the model it serves",
                        key.as_str().unwrap_or_default()
                    );
                    self.notes.push(note);
                }
                other => self.problem(
                    key,
                    format!("dvc.yaml has `{other}`, which runner import does not know"),
                    "remove it, or ask for it to be supported",
                ),
            }
        }
        let Some((_, stages)) = get("stages") else {
            self.problem(
                doc,
                "dvc.yaml has no `stages`",
                "a pipeline needs at least one stage",
            );
            return;
        };
        let Yaml::Map(stages) = &stages.value else {
            self.problem(stages, "`stages` must be a mapping of stage names", "-");
            return;
        };
        let mut taken = BTreeSet::new();
        for (name_node, stage) in stages {
            let dvc_name = name_node.as_str().unwrap_or_default().to_string();
            let name = step_name(&dvc_name);
            if !taken.insert(name.clone()) {
                self.problem(
                    name_node,
                    format!("stage `{dvc_name}` would be step `{name}`, the name of another stage"),
                    "rename one of them in dvc.yaml",
                );
                continue;
            }
            if name != dvc_name {
                self.notes.push(format!(
                    "stage `{dvc_name}` is step `{name}`: runner step names are identifiers"
                ));
            }
            self.read_stage(&dvc_name, name, stage);
        }
        if let Some((_, metrics)) = get("metrics") {
            self.attach_top_level(metrics, "metrics");
        }
        if let Some((_, plots)) = get("plots") {
            self.attach_top_level(plots, "plots");
        }
    }

    /// `vars:` entries: a mapping of values, or a file (`file.yaml`, `file.yaml:a,b`).
    fn read_vars(&mut self, vars: &Node) {
        let Yaml::Seq(items) = &vars.value else {
            self.problem(
                vars,
                "`vars` must be a list",
                "write `vars: [{name: value}, file.yaml]`",
            );
            return;
        };
        for item in items {
            match &item.value {
                Yaml::Map(_) => {
                    if let Value::Object(map) = item.to_json() {
                        self.add_source("dvc.yaml `vars`", &map);
                        merge_into(&mut self.vars, &map);
                        merge_into(&mut self.inline_params, &map);
                    }
                }
                Yaml::Str(spec) => {
                    let (file, keys) = match spec.split_once(':') {
                        Some((file, keys)) => (file, Some(keys)),
                        None => (spec.as_str(), None),
                    };
                    let Ok(path) = join_repo(&self.dir, &[file]) else {
                        self.problem(
                            item,
                            format!("vars file `{file}` is outside the repository"),
                            "-",
                        );
                        continue;
                    };
                    match self.read_data_file(&path) {
                        Ok(Value::Object(mut map)) => {
                            if let Some(keys) = keys {
                                let wanted: BTreeSet<&str> =
                                    keys.split(',').map(str::trim).collect();
                                map.retain(|k, _| wanted.contains(k.as_str()));
                                self.notes.push(format!(
                                    "vars `{spec}`: runner reads all of {path}, not only {keys}"
                                ));
                            }
                            self.add_source(&path, &map);
                            merge_into(&mut self.vars, &map);
                            if !self.params_files.contains(&path) {
                                self.params_files.push(path);
                            }
                        }
                        Ok(_) => self.problem(item, format!("{path} is not a mapping"), "-"),
                        Err(message) => {
                            self.problem(item, message, "create the file or fix its path")
                        }
                    }
                }
                _ => self.problem(item, "a `vars` entry is a mapping or a file name", "-"),
            }
        }
    }

    /// Top-level `params:` (files `dvc params diff` reads).
    fn read_top_params(&mut self, params: &Node) {
        let Yaml::Seq(items) = &params.value else {
            self.problem(params, "`params` must be a list of files", "-");
            return;
        };
        for item in items {
            if let Some(file) = item.as_str() {
                self.params_file(item, file, "");
            }
        }
    }

    /// Registers a params file (repo path) and returns it, or reports why not.
    fn params_file(&mut self, node: &Node, file: &str, wdir: &str) -> Option<String> {
        let path = match join_repo(wdir, &[file]) {
            Ok(path) => path,
            Err(message) => {
                self.problem(node, message, "-");
                return None;
            }
        };
        if self.params_files.contains(&path) {
            return Some(path);
        }
        if !(path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")) {
            self.problem(
                node,
                format!("params file {path} is not YAML or JSON, the params runner reads"),
                "convert it to YAML (TOML and Python params files have no runner reader)",
            );
            return None;
        }
        match self.read_data_file(&path) {
            Ok(Value::Object(map)) => {
                self.add_source(&path, &map);
                self.params_files.push(path.clone());
                Some(path)
            }
            Ok(_) => {
                self.problem(node, format!("{path} is not a mapping of params"), "-");
                None
            }
            Err(message) => {
                self.problem(node, message, "create the file, or remove it from `params`");
                None
            }
        }
    }

    fn read_data_file(&self, path: &str) -> Result<Value, String> {
        let text = std::fs::read_to_string(self.root.join(path))
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        serde_saphyr::from_str::<Value>(&text)
            .map_err(|e| format!("{path} is not YAML or JSON: {e}"))
    }

    /// Runner merges params files into one namespace: a param defined by
    /// two of them (with two values) would be read from the later one, so
    /// it is refused.
    fn add_source(&mut self, source: &str, map: &serde_json::Map<String, Value>) {
        let mut flat = Vec::new();
        flatten("", map, &mut flat);
        for (key, value) in flat {
            match self.sources.get(&key) {
                Some((other, was)) if other != source && *was != value => {
                    let message = format!(
                        "param `{key}` is {was} in {other} and {value} in {source}: runner reads params from one namespace"
                    );
                    self.notes.push(format!("refused: {message}"));
                    let d = Diagnostic::new(&self.file, None, message)
                        .with_help("rename it in one of the files");
                    self.report.push(d);
                }
                Some(_) => {}
                None => {
                    self.sources.insert(key, (source.to_string(), value));
                }
            }
        }
    }

    fn read_stage(&mut self, dvc_name: &str, name: String, node: &Node) {
        let Yaml::Map(_) = &node.value else {
            self.problem(node, format!("stage `{dvc_name}` must be a mapping"), "-");
            return;
        };
        let (body, members, foreach) = match (node.get("foreach"), node.get("matrix")) {
            (Some(over), _) => {
                let Some(body) = node.get("do") else {
                    self.problem(
                        node,
                        format!("stage `{dvc_name}` has `foreach` but no `do`"),
                        "-",
                    );
                    return;
                };
                for (key, _) in map_entries(node) {
                    if !matches!(key.as_str(), Some("foreach" | "do")) {
                        self.problem(
                            key,
                            "beside `foreach`, a stage has only `do`",
                            "move it under `do:`",
                        );
                    }
                }
                let Some(members) = self.foreach_members(over) else {
                    return;
                };
                (body, members, true)
            }
            (None, Some(matrix)) => {
                let Some(members) = self.matrix_members(matrix) else {
                    return;
                };
                (node, members, true)
            }
            (None, None) => (node, Vec::new(), false),
        };
        let mut local = serde_json::Map::new();
        let mut step = Step {
            name: name.clone(),
            comments: Vec::new(),
            description: None,
            run: Value::Null,
            workdir: None,
            deps: Vec::new(),
            params: Vec::new(),
            outputs: Vec::new(),
            metrics: None,
            plots: Vec::new(),
            frozen: false,
            always: false,
            foreach: None,
        };
        for (key, value) in map_entries(body) {
            let field = key.as_str().unwrap_or_default();
            if field == "matrix" {
                continue;
            }
            if !STAGE_FIELDS.contains(&field) {
                self.problem(
                    key,
                    format!("stage `{dvc_name}` has `{field}`, which runner import does not know"),
                    format!("remove it; runner reads {}", STAGE_FIELDS.join(", ")),
                );
            }
            if field == "vars" {
                if foreach {
                    self.problem(
                        key,
                        "DVC does not allow stage `vars` with `foreach`/`matrix`",
                        "-",
                    );
                }
                if let Yaml::Seq(items) = &value.value {
                    for item in items {
                        if let Value::Object(map) = item.to_json() {
                            merge_into(&mut local, &map);
                        } else {
                            self.problem(item, "stage `vars` here must be mappings of values", "-");
                        }
                    }
                }
            }
        }
        let (param_values, vars) = (self.param_values.clone(), self.vars.clone());
        let scope = Scope {
            params: &param_values,
            vars: &vars,
            local: &local,
            members: &members,
        };
        // wdir: where the command runs, and what every path is relative to.
        let mut wdir_runner = self.dir.clone();
        let mut wdir_resolved = vec![self.dir.clone(); members.len().max(1)];
        if let Some(wdir) = body.get("wdir")
            && let Some(r) = self.render(&scope, wdir, Place::Path)
        {
            match join_repo(&self.dir, &[&r.runner]) {
                Ok(path) => wdir_runner = path,
                Err(message) => self.problem(wdir, message, "-"),
            }
            for (slot, resolved) in wdir_resolved.iter_mut().zip(&r.resolved) {
                *slot = join_repo(&self.dir, &[resolved]).unwrap_or_default();
            }
            self.note_fixed(&name, &r);
        }
        if !wdir_runner.is_empty() {
            step.workdir = Some(wdir_runner.clone());
        }
        let mut tracked: Vec<String> = Vec::new();
        let mut resolved_cmds: Vec<Vec<String>> = vec![Vec::new(); members.len().max(1)];
        match body.get("cmd") {
            None => self.problem(
                body,
                format!("stage `{dvc_name}` has no `cmd`"),
                "add the command it runs",
            ),
            Some(cmd) => {
                let lines: Vec<&Node> = match &cmd.value {
                    Yaml::Seq(items) => items.iter().collect(),
                    _ => vec![cmd],
                };
                let mut runner_lines = Vec::new();
                for line in &lines {
                    if line.as_str().is_none() {
                        let help = match line.value {
                            Yaml::Map(_) => {
                                "YAML read this command as a mapping (a `: ` in an unquoted command does that): quote the whole command"
                            }
                            _ => "-",
                        };
                        let found = line.type_name();
                        self.problem(
                            line,
                            format!("a `cmd` is a string or a list of strings, found {found}"),
                            help,
                        );
                        continue;
                    }
                    if let Some(r) = self.render(&scope, line, Place::Command) {
                        for (cmds, text) in resolved_cmds.iter_mut().zip(&r.resolved) {
                            cmds.push(text.clone());
                        }
                        tracked.extend(r.tracked.iter().cloned());
                        runner_lines.push(Value::String(r.runner));
                    }
                }
                step.run = match (&cmd.value, runner_lines.len()) {
                    (Yaml::Seq(_), _) => json!({ "commands": runner_lines }),
                    (_, 1) => runner_lines.remove(0),
                    _ => Value::Null,
                };
            }
        }
        if let Some(deps) = body.get("deps") {
            for dep in seq(deps) {
                let Some(text) = dep.as_str() else {
                    self.problem(dep, "a dep is a path", "-");
                    continue;
                };
                if text.contains("://") || text.starts_with("remote:") {
                    self.problem(
                        dep,
                        format!("`{text}` is outside the repository; runner deps are repo paths"),
                        "download it in a stage of its own (e.g. `curl -o data/raw.csv URL`) and depend on the file",
                    );
                    continue;
                }
                if let Some(path) = self.path(&scope, dep, &wdir_runner, &name) {
                    step.deps.push(path);
                }
            }
        }
        for field in ["outs", "metrics", "plots"] {
            let Some(list) = body.get(field) else {
                continue;
            };
            for out in seq(list) {
                self.read_output(&scope, field, out, &wdir_runner, &mut step);
            }
        }
        if let Some(params) = body.get("params") {
            for param in seq(params) {
                self.read_stage_param(param, &wdir_runner, &mut step);
            }
        }
        for key in tracked {
            let value = Value::String(key);
            if !step.params.contains(&value) {
                step.params.push(value);
            }
        }
        if let Some(frozen) = body.get("frozen") {
            step.frozen = matches!(frozen.value, Yaml::Bool(true));
        }
        if let Some(always) = body.get("always_changed") {
            step.always = matches!(always.value, Yaml::Bool(true));
        }
        if let Some(desc) = body.get("desc") {
            step.description = desc.scalar_text();
        }
        if let Some(meta) = body.get("meta") {
            step.comments.push(format!(
                "dvc meta (runner keeps no such field): {}",
                meta.to_json()
            ));
        }
        if foreach {
            step.foreach = Some(Value::Object(
                members
                    .iter()
                    .map(|m| (m.key.clone(), m.item.clone()))
                    .collect(),
            ));
        }
        let names: Vec<(String, String)> = if members.is_empty() {
            vec![(name.clone(), dvc_name.to_string())]
        } else {
            members
                .iter()
                .map(|m| (format!("{name}@{}", m.key), format!("{dvc_name}@{}", m.key)))
                .collect()
        };
        for (((step_name, stage), cmd), wdir) in
            names.into_iter().zip(resolved_cmds).zip(wdir_resolved)
        {
            self.origins.push(Origin {
                step: step_name,
                stage,
                cmd,
                wdir,
            });
        }
        self.steps.push(step);
    }

    fn render(&mut self, scope: &Scope, node: &Node, place: Place) -> Option<Rendered> {
        let text = node.scalar_text()?;
        match scope.render(&text, place) {
            Ok(r) => Some(r),
            Err(message) => {
                self.problem(
                    node,
                    message,
                    "write the value, or a `${name}` from params.yaml or `vars`",
                );
                None
            }
        }
    }

    fn note_fixed(&mut self, step: &str, r: &Rendered) {
        for written in &r.fixed {
            self.notes.push(format!(
                "step `{step}`: `${{{written}}}` in a path was resolved at import; edit the path if the value changes"
            ));
        }
    }

    /// A path relative to the stage's wdir, as a repo path.
    fn path(&mut self, scope: &Scope, node: &Node, wdir: &str, step: &str) -> Option<String> {
        let r = self.render(scope, node, Place::Path)?;
        self.note_fixed(step, &r);
        match join_repo(wdir, &[&r.runner]) {
            Ok(path) => Some(path),
            Err(message) => {
                self.problem(node, message, "-");
                None
            }
        }
    }

    /// An entry of `outs`, `metrics` or `plots`: a path or `{path: {options}}`.
    fn read_output(
        &mut self,
        scope: &Scope,
        field: &str,
        node: &Node,
        wdir: &str,
        step: &mut Step,
    ) {
        let (path_node, options) = match &node.value {
            Yaml::Map(entries) if entries.len() == 1 => (&entries[0].0, Some(&entries[0].1)),
            Yaml::Str(_) => (node, None),
            _ => {
                self.problem(
                    node,
                    format!("a `{field}` entry is a path or `PATH: {{options}}`"),
                    "-",
                );
                return;
            }
        };
        let Some(path) = self.path(scope, path_node, wdir, &step.name) else {
            return;
        };
        let (mut cache, mut persist) = (true, false);
        let mut plot = serde_json::Map::new();
        plot.insert("path".into(), Value::String(path.clone()));
        for (key, value) in options.map(map_entries).unwrap_or_default() {
            let option = key.as_str().unwrap_or_default();
            match option {
                "cache" => cache = !matches!(value.value, Yaml::Bool(false)),
                "persist" => persist = matches!(value.value, Yaml::Bool(true)),
                "desc" => step.comments.push(format!(
                    "{path}: {}",
                    value.scalar_text().unwrap_or_default()
                )),
                "push" | "remote" => step.comments.push(format!(
                    "{path}: dvc `{option}: {}` has no runner equivalent (`runner push` copies every stored output)",
                    value.to_json()
                )),
                "x" | "title" | "x_label" | "y_label" if field == "plots" => {
                    plot.insert(option.into(), value.to_json());
                }
                "y" if field == "plots" => {
                    let y = match value.to_json() {
                        Value::String(s) => vec![Value::String(s)],
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    plot.insert("y".into(), Value::Array(y));
                }
                "template" if field == "plots" => {
                    let template = value.scalar_text().unwrap_or_default();
                    if template != "linear" {
                        step.comments.push(format!(
                            "{path}: dvc plot template `{template}` is drawn as a line plot"
                        ));
                    }
                }
                "type" | "labels" | "meta" => step.comments.push(format!(
                    "{path}: dvc `{option}` is kept only here: {}",
                    value.to_json()
                )),
                other => self.problem(
                    key,
                    format!("`{other}` is not an option of a DVC `{field}` entry runner knows"),
                    "remove it",
                ),
            }
        }
        let mut output = serde_json::Map::new();
        output.insert("path".into(), Value::String(path.clone()));
        if persist {
            output.insert("persist".into(), Value::Bool(true));
        }
        if !cache {
            output.insert("cache".into(), Value::Bool(false));
        }
        let value = match output.len() {
            1 => Value::String(path.clone()),
            _ => Value::Object(output),
        };
        let name = output_name(&path, step.outputs.iter().map(|(n, _)| n.as_str()));
        step.outputs.push((name, value));
        match field {
            "metrics" if step.metrics.is_none() => step.metrics = Some(path),
            "metrics" => step.comments.push(format!(
                "{path}: runner reads one metrics file per step ({}); this one is kept as an output",
                step.metrics.as_deref().unwrap_or_default()
            )),
            "plots" => step.plots.push(Value::Object(plot)),
            _ => {}
        }
    }

    /// A stage's `params` entry: a key of params.yaml, `{file: [keys]}` or `{file: null}`.
    fn read_stage_param(&mut self, node: &Node, wdir: &str, step: &mut Step) {
        match &node.value {
            Yaml::Str(key) => {
                if self.params_file(node, "params.yaml", wdir).is_some() {
                    push_unique(&mut step.params, Value::String(key.clone()));
                }
            }
            Yaml::Map(entries) => {
                for (file_node, keys) in entries {
                    let file = file_node.as_str().unwrap_or_default().to_string();
                    let Some(path) = self.params_file(file_node, &file, wdir) else {
                        continue;
                    };
                    match &keys.value {
                        Yaml::Null => push_unique(&mut step.params, json!({ "file": path })),
                        Yaml::Seq(items) => {
                            for key in items {
                                match key.as_str() {
                                    Some(key) => push_unique(
                                        &mut step.params,
                                        Value::String(key.to_string()),
                                    ),
                                    None => self.problem(key, "a param key is a dotted name", "-"),
                                }
                            }
                        }
                        _ => self.problem(
                            keys,
                            "params of a file are a list of keys, or null for all",
                            "-",
                        ),
                    }
                }
            }
            _ => self.problem(node, "a `params` entry is a key or `FILE: [keys]`", "-"),
        }
    }

    /// DVC's members of a `foreach`: by value for simple lists, by index
    /// when items are composite, by key for a mapping.
    fn foreach_members(&mut self, over: &Node) -> Option<Vec<Member>> {
        let value = match over.as_str() {
            Some(text) if text.trim_start().starts_with("${") => {
                let inner = text
                    .trim()
                    .trim_start_matches("${")
                    .trim_end_matches('}')
                    .trim();
                let found = lookup_dotted(&self.param_values, inner)
                    .or_else(|| lookup_dotted(&self.vars, inner));
                match found {
                    Some(value) => {
                        self.notes.push(format!(
                            "`foreach: {text}` was expanded at import from its current value; edit the step's `foreach` when it changes"
                        ));
                        value.clone()
                    }
                    None => {
                        self.problem(
                            over,
                            format!("`{text}` is not defined in params.yaml or `vars`"),
                            "-",
                        );
                        return None;
                    }
                }
            }
            _ => over.to_json(),
        };
        let members = match value {
            Value::Array(items) => {
                let composite = items.iter().any(|i| i.is_array() || i.is_object());
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| Member {
                        key: if composite {
                            i.to_string()
                        } else {
                            plain_text(&item)
                        },
                        item,
                    })
                    .collect()
            }
            Value::Object(map) => map
                .into_iter()
                .map(|(key, item)| Member { key, item })
                .collect(),
            _ => {
                self.problem(over, "`foreach` is a list or a mapping", "-");
                return None;
            }
        };
        Some(members)
    }

    /// DVC's members of a `matrix`: every combination, named by the values
    /// joined with `-` (`NAMEi` for a composite value).
    fn matrix_members(&mut self, matrix: &Node) -> Option<Vec<Member>> {
        let Value::Object(axes) = matrix.to_json() else {
            self.problem(matrix, "`matrix` is a mapping of lists", "-");
            return None;
        };
        let mut combos: Vec<(Vec<String>, serde_json::Map<String, Value>)> =
            vec![(Vec::new(), serde_json::Map::new())];
        for (axis, values) in axes {
            let values = match values {
                Value::Array(values) => values,
                Value::String(text) if text.starts_with("${") => {
                    let inner = text.trim_start_matches("${").trim_end_matches('}').trim();
                    match lookup_dotted(&self.param_values, inner)
                        .or_else(|| lookup_dotted(&self.vars, inner))
                    {
                        Some(Value::Array(values)) => values.clone(),
                        _ => {
                            self.problem(matrix, format!("matrix axis `{axis}`: `{text}` is not a list in params.yaml or `vars`"), "-");
                            return None;
                        }
                    }
                }
                _ => {
                    self.problem(matrix, format!("matrix axis `{axis}` must be a list"), "-");
                    return None;
                }
            };
            let mut next = Vec::new();
            for (fragments, item) in &combos {
                for (i, value) in values.iter().enumerate() {
                    let mut fragments = fragments.clone();
                    fragments.push(match value.is_array() || value.is_object() {
                        true => format!("{axis}{i}"),
                        false => plain_text(value),
                    });
                    let mut item = item.clone();
                    item.insert(axis.clone(), value.clone());
                    next.push((fragments, item));
                }
            }
            combos = next;
        }
        Some(
            combos
                .into_iter()
                .map(|(fragments, item)| Member {
                    key: fragments.join("-"),
                    item: Value::Object(item),
                })
                .collect(),
        )
    }

    /// Top-level `metrics` and `plots` go to the step that writes the file.
    fn attach_top_level(&mut self, list: &Node, field: &str) {
        for entry in seq(list) {
            let mut plots: Vec<(String, Value)> = Vec::new();
            match (&entry.value, field) {
                (Yaml::Str(path), _) => {
                    let path = join_repo(&self.dir, &[path]).unwrap_or_default();
                    plots.push((path.clone(), json!({ "path": path })));
                }
                (Yaml::Map(entries), "plots") if entries.len() == 1 => {
                    let (id, options) = (&entries[0].0, entries[0].1.to_json());
                    let id = id.as_str().unwrap_or_default();
                    let mut base = serde_json::Map::new();
                    for key in ["x", "title", "x_label", "y_label"] {
                        if let Some(v) = options.get(key) {
                            base.insert(key.into(), v.clone());
                        }
                    }
                    match options.get("y") {
                        Some(Value::Object(files)) => {
                            for (file, fields) in files {
                                let path = join_repo(&self.dir, &[file]).unwrap_or_default();
                                let mut plot = base.clone();
                                plot.insert("path".into(), Value::String(path.clone()));
                                plot.insert("y".into(), as_list(fields));
                                if !plot.contains_key("title") {
                                    plot.insert("title".into(), Value::String(id.to_string()));
                                }
                                plots.push((path, Value::Object(plot)));
                            }
                        }
                        y => {
                            let path = join_repo(&self.dir, &[id]).unwrap_or_default();
                            let mut plot = base.clone();
                            plot.insert("path".into(), Value::String(path.clone()));
                            if let Some(y) = y {
                                plot.insert("y".into(), as_list(y));
                            }
                            plots.push((path, Value::Object(plot)));
                        }
                    }
                }
                _ => {
                    self.problem(
                        entry,
                        format!("a top-level `{field}` entry runner cannot read"),
                        "write a path",
                    );
                    continue;
                }
            }
            for (path, plot) in plots {
                let writer = self.steps.iter_mut().find(|s| {
                    s.outputs.iter().any(|(_, o)| {
                        o.as_str() == Some(&path)
                            || o.get("path").and_then(Value::as_str) == Some(&path)
                    })
                });
                match (writer, field) {
                    (Some(step), "metrics") if step.metrics.is_none() => step.metrics = Some(path),
                    (Some(step), "metrics") => {
                        if step.metrics.as_deref() != Some(path.as_str()) {
                            step.comments.push(format!("{path}: also a metrics file in dvc.yaml; runner reads one per step"));
                        }
                    }
                    (Some(step), _) => {
                        step.plots.retain(|p| p.get("path").and_then(Value::as_str) != Some(&path));
                        step.plots.push(plot);
                    }
                    (None, _) => self.notes.push(format!(
                        "dvc.yaml lists {path} in `{field}`, but no stage writes it: runner reads {field} from the step that writes them"
                    )),
                }
            }
        }
    }

    /// The pipeline as YAML.
    fn emit(&self, name: &str) -> String {
        let mut out = YamlOut::default();
        out.comment(
            0,
            &format!("Imported from {} by `runner import dvc`.", self.file),
        );
        out.comment(
            0,
            "Paths are relative to the repository root; each step runs in its `workdir`.",
        );
        for note in &self.notes {
            out.comment(0, &format!("Note: {note}"));
        }
        out.field(0, "apiVersion", &json!("runner/v1"));
        out.field(0, "kind", &json!("Pipeline"));
        out.field(0, "name", &json!(name));
        if !self.inline_params.is_empty() {
            out.comment(
                0,
                "dvc.yaml `vars`: read by the commands, and tracked only where a step lists them.",
            );
            out.open(0, "params");
            for (key, value) in &self.inline_params {
                out.field(1, key, value);
            }
        }
        if !self.params_files.is_empty() {
            out.field(0, "params_files", &json!(self.params_files));
        }
        out.open(0, "steps");
        for step in &self.steps {
            out.open(1, &step.name);
            for comment in &step.comments {
                out.comment(2, comment);
            }
            if let Some(description) = &step.description {
                out.field(2, "description", &json!(description));
            }
            if let Some(foreach) = &step.foreach {
                out.field(2, "foreach", foreach);
            }
            match &step.run {
                Value::Object(commands) => {
                    out.open(2, "run");
                    out.open(3, "commands");
                    for command in commands
                        .get("commands")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.item(4, command);
                    }
                }
                run => out.field(2, "run", run),
            }
            if let Some(workdir) = &step.workdir {
                out.field(2, "workdir", &json!(workdir));
            }
            if !step.deps.is_empty() {
                out.field(2, "deps", &json!(step.deps));
            }
            if !step.params.is_empty() {
                out.field(2, "params", &Value::Array(step.params.clone()));
            }
            if !step.outputs.is_empty() {
                out.open(2, "outputs");
                for (name, output) in &step.outputs {
                    out.field(3, name, output);
                }
            }
            if let Some(metrics) = &step.metrics {
                out.field(2, "metrics", &json!(metrics));
            }
            if !step.plots.is_empty() {
                out.open(2, "plots");
                for plot in &step.plots {
                    out.item(3, plot);
                }
            }
            if step.frozen {
                out.field(2, "frozen", &json!(true));
            }
            if step.always {
                out.comment(2, "dvc `always_changed: true`");
                out.field(2, "cache", &json!(false));
            }
        }
        out.finish()
    }
}

fn map_entries(node: &Node) -> Vec<(&Node, &Node)> {
    match &node.value {
        Yaml::Map(entries) => entries.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    }
}

fn seq(node: &Node) -> Vec<&Node> {
    match &node.value {
        Yaml::Seq(items) => items.iter().collect(),
        Yaml::Null => Vec::new(),
        _ => vec![node],
    }
}

fn as_list(value: &Value) -> Value {
    match value {
        Value::Array(_) => value.clone(),
        other => Value::Array(vec![other.clone()]),
    }
}

fn push_unique(list: &mut Vec<Value>, value: Value) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// A scalar as DVC names a member after it.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn merge_into(base: &mut serde_json::Map<String, Value>, over: &serde_json::Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge_into(inner, more),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn lookup_dotted<'v>(map: &'v serde_json::Map<String, Value>, dotted: &str) -> Option<&'v Value> {
    let mut parts = dotted.split('.');
    let mut value = map.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A DVC stage name as a runner step name: an identifier.
fn step_name(stage: &str) -> String {
    let mut name: String = stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    {
        name.insert(0, '_');
    }
    name
}

/// An output's name from its file name: `models/model.pkl` is `model`.
fn output_name<'n>(path: &str, taken: impl Iterator<Item = &'n str> + Clone) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    // Template parts name nothing: `model-{{ key }}.txt` is `model`.
    let mut words = String::new();
    let mut rest = file;
    while let Some(open) = rest.find("{{") {
        words.push_str(&rest[..open]);
        words.push(' ');
        rest = rest[open..]
            .find("}}")
            .map_or("", |close| &rest[open + close + 2..]);
    }
    words.push_str(rest);
    let stem = words.split('.').next().unwrap_or_default();
    let base: String = step_name(stem)
        .split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    let base = if base.is_empty() {
        "out".to_string()
    } else {
        base
    };
    let base = match base.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => base,
        _ => format!("out_{base}"),
    };
    // `models/a.json` and `metrics/a.json`: `a` and `metrics_a`.
    let parent = path
        .rsplit('/')
        .nth(1)
        .map(step_name)
        .filter(|p| !p.contains("__"));
    let mut name = base.clone();
    if let Some(parent) = parent.filter(|_| taken.clone().any(|t| t == name)) {
        name = format!("{}_{base}", parent.trim_start_matches('_'));
    }
    let base = name.clone();
    let mut n = 2;
    while taken.clone().any(|t| t == name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// The pipeline name: the directory's name, as runner allows names.
fn default_name(root: &Path, dir: &str) -> String {
    let last = match dir.rsplit('/').next().filter(|d| !d.is_empty()) {
        Some(d) => d.to_string(),
        None => root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    match name.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() => name,
        _ => format!("dvc{name}"),
    }
}

/// `base` joined with `parts` as a repo path (`..` resolved); templates
/// (`{{ item }}`) are kept as segments.
pub fn join_repo(base: &str, parts: &[&str]) -> Result<String, String> {
    let mut out: Vec<&str> = Vec::new();
    for part in std::iter::once(base).chain(parts.iter().copied()) {
        if part.starts_with('/') {
            return Err(format!(
                "`{part}` is absolute; runner paths are inside the repository"
            ));
        }
        for segment in part.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if out.pop().is_none() {
                        return Err(format!("`{part}` leaves the repository"));
                    }
                }
                other => out.push(other),
            }
        }
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(step_name("train-model"), "train_model");
        assert_eq!(step_name("2nd"), "_2nd");
        assert_eq!(output_name("models/model.pkl", [].into_iter()), "model");
        assert_eq!(
            output_name("data/prepared", ["prepared"].into_iter()),
            "data_prepared"
        );
        assert_eq!(output_name("out/{{ item }}.csv", [].into_iter()), "out");
        assert_eq!(output_name("model-{{ key }}.txt", [].into_iter()), "model");
        assert_eq!(output_name("3d.bin", [].into_iter()), "out_3d");
        assert_eq!(
            output_name("prepared", ["prepared"].into_iter()),
            "prepared_2"
        );
        assert_eq!(join_repo("sub", &["../data/x.csv"]).unwrap(), "data/x.csv");
        assert_eq!(join_repo("", &["./a//b"]).unwrap(), "a/b");
        assert!(join_repo("", &["../x"]).is_err());
    }
}
