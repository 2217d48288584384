//! Discovery and parsing: every YAML document under `pipelines/`, `stacks/`
//! and `deployments/`, checked against its kind's schema and turned into
//! typed specs. Problems are collected, never thrown, so one pass reports all.

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use super::schema::{self, Kind};
use super::source::{FileText, Source};
use super::types::{API_VERSION, Deployment, Pipeline, Stack};
use super::yaml::{self, Node, Span};
use crate::diagnostic::{Diagnostic, Report};
use crate::error::{Error, SpecError};
use crate::suggest::did_you_mean;

/// Directories runner reads specs from, relative to the repo root.
pub const PIPELINES_DIR: &str = "pipelines";
pub const STACKS_DIR: &str = "stacks";
pub const DEPLOYMENTS_DIR: &str = "deployments";

/// A typed spec with the file and YAML tree it came from, so later checks can
/// point at the line of any field.
#[derive(Debug, Clone)]
pub struct Document<T> {
    pub spec: T,
    /// Repo-relative path with `/` separators.
    pub file: String,
    /// Which YAML document of the file (they are separated by `---`) this is.
    pub index: usize,
    pub text: Arc<str>,
    /// The YAML tree; parsed again from `text` on first use when the spec
    /// came from the snapshot of a valid repository.
    node: OnceLock<Node>,
    /// True when problems were already reported for this document and it was
    /// read only by dropping unknown fields: check it, but never use it.
    pub recovered: bool,
}

impl<T> Document<T> {
    /// A document whose tree is parsed only if a position is asked for.
    pub fn new(spec: T, file: String, index: usize, text: Arc<str>) -> Document<T> {
        Document {
            spec,
            file,
            index,
            text,
            node: OnceLock::new(),
            recovered: false,
        }
    }

    /// The document's YAML tree, for positions.
    pub fn node(&self) -> &Node {
        self.node.get_or_init(|| {
            yaml::parse_documents(&self.text)
                .ok()
                .and_then(|docs| docs.into_iter().nth(self.index))
                .unwrap_or_default()
        })
    }

    /// The span of the node at `path` (a key's own span when `key` is true).
    pub fn span(&self, path: &[&str], key: bool) -> Span {
        self.node().locate(path, key).span
    }

    /// A diagnostic in this document's file.
    pub fn error(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file.clone(), Some(span), message)
    }
}

/// Every spec document that parsed and matched its schema.
#[derive(Debug, Default)]
pub struct Specs {
    pub pipelines: Vec<Document<Pipeline>>,
    pub stacks: Vec<Document<Stack>>,
    pub deployments: Vec<Document<Deployment>>,
}

/// A spec file's text and the directory it was found in.
pub struct SpecFile {
    pub path: String,
    pub dir: &'static str,
    pub text: Arc<str>,
}

/// Reads every spec file of `source`. Files that cannot be read are problems
/// in the report; only failures to read the source at all are errors.
pub fn read(source: &Source, report: &mut Report) -> Result<Vec<SpecFile>, Error> {
    let dirs = [PIPELINES_DIR, STACKS_DIR, DEPLOYMENTS_DIR];
    if !dirs.iter().any(|dir| source.has_dir(dir)) {
        return Err(SpecError::NoSpecDirs {
            location: source.describe(),
        }
        .into());
    }
    let mut files = Vec::new();
    for dir in dirs {
        for file in source.yaml_files(dir)? {
            let problem = match source.read(&file) {
                Ok(FileText::Text(text)) => {
                    let text: Arc<str> = Arc::from(text);
                    report.add_source(&file, text.clone());
                    files.push(SpecFile {
                        path: file,
                        dir,
                        text,
                    });
                    continue;
                }
                Ok(FileText::NotUtf8) => Diagnostic::new(&file, None, "file is not valid UTF-8")
                    .with_help("save it as UTF-8 text"),
                Ok(FileText::Symlink) => Diagnostic::new(&file, None, "file is a symbolic link")
                    .with_help("specs read from a commit are not followed through links: commit the file itself"),
                Err(Error::Io { source, .. }) => Diagnostic::new(&file, None, format!("cannot read the file: {source}"))
                    .with_help("make it a readable YAML file, or rename it so it does not end in .yaml"),
                Err(err) => Diagnostic::new(&file, None, format!("cannot read the file: {err}"))
                    .with_help("make it a readable YAML file, or rename it so it does not end in .yaml"),
            };
            report.push(problem);
        }
    }
    Ok(files)
}

/// Parses the files and checks each document against its kind's schema.
pub fn parse(files: &[SpecFile], report: &mut Report) -> Specs {
    let mut specs = Specs::default();
    for file in files {
        parse_file(&file.path, file.text.clone(), file.dir, &mut specs, report);
    }
    specs
}

fn parse_file(file: &str, text: Arc<str>, dir: &str, specs: &mut Specs, report: &mut Report) {
    let docs = match yaml::parse_documents(&text) {
        Ok(docs) => docs,
        Err(err) => {
            let mut diagnostic =
                Diagnostic::new(file, err.span, format!("invalid YAML: {}", err.message));
            diagnostic.help = err.help;
            report.push(diagnostic);
            return;
        }
    };
    for (index, node) in docs.into_iter().enumerate() {
        let Some(kind) = document_kind(file, &node, report) else {
            continue;
        };
        if !kind_belongs_in(kind, dir) {
            report.push(
                Diagnostic::new(file, Some(node.locate(&["kind"], false).span), format!("a {kind} does not belong in `{dir}/`"))
                    .with_help(match kind {
                        Kind::Deployment => "Deployment files are written by runner under deployments/STACK/SERVICE.yaml",
                        _ => "put pipelines in pipelines/ and stacks in stacks/; deployments/ holds only what runner writes",
                    }),
            );
            continue;
        }
        let doc = (file, index, node, text.clone());
        match kind {
            Kind::Pipeline => push_typed(kind, doc, &mut specs.pipelines, report),
            Kind::Stack => push_typed(kind, doc, &mut specs.stacks, report),
            Kind::Deployment => push_typed(kind, doc, &mut specs.deployments, report),
        }
    }
}

fn kind_belongs_in(kind: Kind, dir: &str) -> bool {
    match kind {
        Kind::Pipeline | Kind::Stack => dir == PIPELINES_DIR || dir == STACKS_DIR,
        Kind::Deployment => dir == DEPLOYMENTS_DIR,
    }
}

/// Reads `apiVersion` and `kind` first, so a wrong one gets its own clear
/// message instead of a pile of schema errors.
fn document_kind(file: &str, node: &Node, report: &mut Report) -> Option<Kind> {
    if !matches!(node.value, yaml::Value::Map(_)) {
        report.push(
            Diagnostic::new(
                file,
                Some(node.span),
                format!(
                    "a spec document must be a mapping, found {}",
                    node.type_name()
                ),
            )
            .with_help("start the document with `apiVersion: runner/v1` and `kind: Pipeline`"),
        );
        return None;
    }
    let mut ok = true;
    match node.get("apiVersion") {
        None => {
            report.push(
                Diagnostic::new(file, Some(node.span), "missing `apiVersion`").with_help(format!(
                    "add `apiVersion: {API_VERSION}` at the top of the document"
                )),
            );
            ok = false;
        }
        Some(version) if version.as_str() != Some(API_VERSION) => {
            let found = version
                .scalar_text()
                .unwrap_or_else(|| version.type_name().to_string());
            let help = if found.starts_with("runner/") {
                format!(
                    "this runner reads `{API_VERSION}`; a newer runner may read `{found}`: upgrade runner, or write the spec for `{API_VERSION}`"
                )
            } else {
                format!("use `apiVersion: {API_VERSION}`")
            };
            report.push(
                Diagnostic::new(
                    file,
                    Some(version.span),
                    format!("unknown apiVersion `{found}`"),
                )
                .with_label("unknown apiVersion")
                .with_help(help),
            );
            ok = false;
        }
        Some(_) => {}
    }
    let kind = match node.get("kind") {
        None => {
            report.push(
                Diagnostic::new(file, Some(node.span), "missing `kind`")
                    .with_help("add `kind: Pipeline`, `kind: Stack` or `kind: Deployment`"),
            );
            None
        }
        Some(kind_node) => {
            let found = kind_node.scalar_text().unwrap_or_default();
            match Kind::ALL.into_iter().find(|k| k.name() == found) {
                Some(kind) => Some(kind),
                None => {
                    let names = Kind::ALL.map(Kind::name);
                    let help = match did_you_mean(&found, names) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => "runner reads `Pipeline`, `Stack` and `Deployment`".to_string(),
                    };
                    report.push(
                        Diagnostic::new(
                            file,
                            Some(kind_node.span),
                            format!("unknown kind `{found}`"),
                        )
                        .with_label("unknown kind")
                        .with_help(help),
                    );
                    None
                }
            }
        }
    };
    if ok { kind } else { None }
}

fn push_typed<T: DeserializeOwned>(
    kind: Kind,
    (file, index, node, text): (&str, usize, Node, Arc<str>),
    out: &mut Vec<Document<T>>,
    report: &mut Report,
) {
    let mut json = node.to_json();
    let problems = schema::check(kind, &node, &json);
    // Problems whose field can be dropped (an unknown field, an optional
    // value of the wrong type) do not stop the semantic checks: drop them
    // and go on, so one pass reports a typo'd key and a wrong reference.
    let recoverable = problems.iter().all(|p| p.removable.is_some());
    let recovered = !problems.is_empty();
    for problem in problems {
        if let Some(path) = &problem.removable {
            remove_path(&mut json, path);
        }
        let mut diagnostic = Diagnostic::new(file, Some(problem.span), problem.message);
        diagnostic.label = problem.label;
        diagnostic.help = problem.help;
        report.push(diagnostic);
    }
    if !recoverable || (recovered && !schema::check(kind, &node, &json).is_empty()) {
        return;
    }
    match serde_json::from_value::<T>(json) {
        Ok(spec) => out.push(Document {
            spec,
            file: file.to_string(),
            index,
            text,
            node: OnceLock::from(node),
            recovered,
        }),
        // The schema and the types are generated from one another, so this
        // is rare (e.g. a number out of range for its Rust type).
        Err(err) => report.push(Diagnostic::new(
            file,
            Some(node.span),
            format!("invalid {kind}: {err}"),
        )),
    }
}

fn remove_path(json: &mut serde_json::Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = json;
    for segment in parents {
        let next = match current {
            serde_json::Value::Object(map) => map.get_mut(segment),
            serde_json::Value::Array(items) => {
                segment.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            }
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    if let serde_json::Value::Object(map) = current {
        map.shift_remove(last);
    }
}
