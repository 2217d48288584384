//! Spec files: their types, where they are read from, and how they are checked.

pub mod direction;
pub mod expand;
pub mod load;
pub mod paths;
pub mod schema;
mod snapshot;
pub mod source;
pub mod types;
pub mod validate;
pub mod yaml;

pub use load::{Document, Specs};
pub use schema::Kind;
pub use source::Source;
pub use types::{Deployment, Map, Pipeline, Stack, Step};

use std::collections::BTreeMap;
use std::path::Path;

use crate::dag::Dag;
use crate::diagnostic::Report;
use crate::error::{Error, SpecError};
use crate::suggest::hint;
use source::FileText;

/// Where deployment state files go: `deployments/<stack>/<service>.yaml`.
pub fn deployment_file(stack: &str, service: &str) -> String {
    format!("deployments/{stack}/{service}.yaml")
}

/// Everything read from one snapshot of a repository, with every problem
/// found in it.
pub struct Loaded {
    pub specs: Specs,
    /// The DAG of each pipeline (same order as `specs.pipelines`); `None`
    /// for a pipeline with problems.
    pub dags: Vec<Option<Dag>>,
    pub report: Report,
    /// The content of every pipeline's `params_files`, by path: read
    /// fresh at every load (the snapshot holds specs, not params).
    pub params_files: BTreeMap<String, serde_json::Value>,
}

/// Loads and validates every spec of `source` in one pass.
pub fn load(source: &Source) -> Result<Loaded, Error> {
    let mut report = Report::default();
    let files = load::read(source, &mut report)?;
    let mut loaded = check(&files, report);
    read_params_files(source, &mut loaded);
    Ok(loaded)
}

/// [`load`] of the work tree at `root`, for commands that run or plan: when
/// no spec file changed since the last load that found no problem, its
/// snapshot is read back instead of checking everything again.
pub fn load_work_tree(root: &Path) -> Result<Loaded, Error> {
    let source = Source::work_tree(root);
    let mut report = Report::default();
    let files = load::read(&source, &mut report)?;
    let key = match report.is_empty() {
        true => snapshot::key(&files),
        false => None,
    };
    if let Some(key) = &key
        && let Some((specs, dags)) = snapshot::read(root, key, &files)
    {
        let mut loaded = Loaded {
            specs,
            dags,
            report,
            params_files: BTreeMap::new(),
        };
        read_params_files(&source, &mut loaded);
        return Ok(loaded);
    }
    let mut loaded = check(&files, report);
    if let Some(key) = &key {
        snapshot::write(root, key, &loaded);
    }
    read_params_files(&source, &mut loaded);
    Ok(loaded)
}

/// The first key, at any depth, that is not a plain name.
fn dotted_key(value: &serde_json::Value) -> Option<String> {
    let map = value.as_object()?;
    map.iter().find_map(|(key, inner)| {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match plain {
            false => Some(key.clone()),
            true => dotted_key(inner),
        }
    })
}

/// Reads every pipeline's `params_files` (YAML or JSON mappings); a file
/// that is missing or not a mapping is a problem at its `params_files` entry.
fn read_params_files(source: &Source, loaded: &mut Loaded) {
    let mut problems = Vec::new();
    for doc in &loaded.specs.pipelines {
        for (i, path) in doc.spec.params_files.iter().enumerate() {
            if loaded.params_files.contains_key(path) {
                continue;
            }
            let read = match paths::normalize(path) {
                Err(problem) => Err(format!("params file `{path}` {}", problem.message())),
                Ok(normal) => match source.read(&normal) {
                    Ok(FileText::Text(text)) if text.trim().is_empty() => {
                        Ok(serde_json::Value::Object(Default::default()))
                    }
                    Ok(FileText::Text(text)) => serde_saphyr::from_str::<serde_json::Value>(&text)
                        .map_err(|e| {
                            format!(
                                "params file `{path}` is not YAML or JSON: {}",
                                e.without_snippet()
                            )
                        })
                        .and_then(|value| match value {
                            // `train.alpha` names a nested key: a key with a
                            // dot in it could never be read.
                            serde_json::Value::Object(_) => match dotted_key(&value) {
                                Some(key) => Err(format!(
                                    "params file `{path}` has the key `{key}`; names are letters, digits, `_` and `-` (nest mappings instead of dotted keys)"
                                )),
                                None => Ok(value),
                            },
                            _ => Err(format!(
                                "params file `{path}` is not a mapping of names to values"
                            )),
                        }),
                    Ok(_) => Err(format!("params file `{path}` is not a text file")),
                    Err(_) => Err(format!(
                        "params file `{path}` does not exist in {}",
                        source.describe()
                    )),
                },
            };
            match read {
                Ok(value) => {
                    loaded.params_files.insert(path.clone(), value);
                }
                Err(message) => {
                    let index = i.to_string();
                    let span = doc.span(&["params_files", &index], false);
                    problems.push(doc.error(span, message).with_help(
                        "params files are repo paths of YAML or JSON mappings, e.g. `params.yaml` holding `train: {alpha: 0.1}`",
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        loaded.report.diagnostics.extend(problems);
        loaded.report.sort();
    }
}

fn check(files: &[load::SpecFile], mut report: Report) -> Loaded {
    let mut specs = load::parse(files, &mut report);
    expand::expand(&mut specs, &mut report);
    let dags = validate::check(&specs, &mut report);
    report.sort();
    Loaded {
        specs,
        dags,
        report,
        params_files: BTreeMap::new(),
    }
}

impl Loaded {
    /// The pipeline called `name`, or the only one when `name` is `None`.
    pub fn pipeline(
        &self,
        name: Option<&str>,
    ) -> Result<(&Document<Pipeline>, Option<&Dag>), Error> {
        let names = || self.specs.pipelines.iter().map(|d| d.spec.name.as_str());
        let index = match name {
            Some(name) => self
                .specs
                .pipelines
                .iter()
                .position(|d| d.spec.name == name)
                .ok_or_else(|| {
                    let help = hint(name, names(), "there are no pipelines under pipelines/");
                    crate::error::NotFound::Pipeline {
                        name: name.to_string(),
                        help,
                    }
                })?,
            None => match self.specs.pipelines.len() {
                0 => {
                    return Err(SpecError::NoPipelines.into());
                }
                1 => 0,
                _ => {
                    return Err(SpecError::PipelineNotNamed {
                        names: names().map(str::to_string).collect(),
                    }
                    .into());
                }
            },
        };
        Ok((&self.specs.pipelines[index], self.dags[index].as_ref()))
    }
}
