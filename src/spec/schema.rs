//! JSON Schemas of the spec kinds, generated from the Rust types, and the
//! structural validation that uses them. One schema serves three readers:
//! `runner validate`, editors (yaml-language-server) and `runner schema KIND`.

use std::fmt;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::types::{Deployment, Pipeline, Stack};
use super::yaml::{Node, Span};
use crate::suggest::{did_you_mean, synonym};

/// The kinds of document runner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pipeline,
    Stack,
    Deployment,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Pipeline, Kind::Stack, Kind::Deployment];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Pipeline => "Pipeline",
            Kind::Stack => "Stack",
            Kind::Deployment => "Deployment",
        }
    }

    /// Accepts the `kind:` spelling and the lower-case CLI spelling.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }

    /// The schema, as a JSON value; `runner schema` prints it.
    pub fn schema(self) -> Value {
        let generator = schemars::generate::SchemaSettings::draft07().into_generator();
        let schema = match self {
            Kind::Pipeline => generator.into_root_schema_for::<Pipeline>(),
            Kind::Stack => generator.into_root_schema_for::<Stack>(),
            Kind::Deployment => generator.into_root_schema_for::<Deployment>(),
        };
        schema.to_value()
    }

    /// The schema and its compiled validator, built once per process.
    fn compiled(self) -> &'static (Value, Validator) {
        static COMPILED: OnceLock<Vec<(Value, Validator)>> = OnceLock::new();
        let compiled = COMPILED.get_or_init(|| {
            Kind::ALL
                .iter()
                .map(|kind| {
                    let schema = kind.schema();
                    // The schema is generated from our own types: failing to
                    // compile it is a bug in runner, caught by the unit tests.
                    let validator = jsonschema::draft7::new(&schema).unwrap_or_else(|e| {
                        panic!("schema of {} does not compile: {e}", kind.name())
                    });
                    (schema, validator)
                })
                .collect()
        });
        &compiled[self as usize]
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A structural problem in one document.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaProblem {
    pub span: Span,
    pub message: String,
    pub label: Option<String>,
    pub help: Option<String>,
    /// A path whose removal leaves the rest of the document checkable: an
    /// unknown field, or an optional value of the wrong type. The semantic
    /// checks then still run, so one pass reports both kinds of problem.
    pub removable: Option<Vec<String>>,
}

/// Checks a document against its kind's schema and returns every problem,
/// each placed on the YAML node it concerns.
pub fn check(kind: Kind, doc: &Node, json: &Value) -> Vec<SchemaProblem> {
    let (schema, validator) = kind.compiled();
    if validator.is_valid(json) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for error in validator.iter_errors(json) {
        describe(schema, doc, &error, &mut problems);
    }
    problems.dedup();
    problems
}

fn describe(schema: &Value, doc: &Node, error: &ValidationError, out: &mut Vec<SchemaProblem>) {
    let path: Vec<String> = error
        .instance_path()
        .into_iter()
        .map(|segment| match segment {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect();
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let node = doc.locate(&segments, false);
    let here = display_path(&segments);
    let removable = removable_path(&segments);
    let problem = |span: Span, message: String| SchemaProblem {
        span,
        message,
        label: None,
        help: None,
        removable: removable.clone(),
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_properties(schema, &segments);
            for field in unexpected {
                let mut at = segments.clone();
                at.push(field);
                let key = doc.locate(&at, true);
                let mut p = problem(key.span, format!("unknown field `{field}` in {here}"));
                p.label = Some("unknown field".to_string());
                p.removable = Some(at.iter().map(|s| s.to_string()).collect());
                let synonym = synonym(field).filter(|s| known.iter().any(|k| k == s));
                let invisible = field.chars().find(|c| {
                    (c.is_whitespace() && *c != ' ')
                        || c.is_control()
                        || *c == '\u{200b}'
                        || *c == '\u{feff}'
                });
                p.help = Some(match synonym {
                    _ if invisible.is_some() => format!(
                        "the key holds an invisible character (U+{:04X}); delete and retype it",
                        invisible.map_or(0, u32::from)
                    ),
                    Some(ours) => format!("runner calls this `{ours}`"),
                    None => match did_you_mean(field, known.iter().map(String::as_str)) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None if known.is_empty() => "remove it".to_string(),
                        None => format!("expected one of {}", list(&known)),
                    },
                });
                out.push(p);
            }
        }
        ValidationErrorKind::Required { property } => {
            let field = property.as_str().unwrap_or_default();
            // Point at the key that opens the incomplete mapping (`train:`).
            let mut p = problem(
                doc.locate(&segments, true).span,
                format!("missing required field `{field}` in {here}"),
            );
            p.help = field_help(field);
            p.removable = None;
            out.push(p);
        }
        ValidationErrorKind::Type { kind } => {
            let expected = type_names(kind);
            let mut p = problem(
                node.span,
                format!("{here} must be {expected}, found {}", node.type_name()),
            );
            p.label = Some(format!("expected {expected}"));
            p.help = type_help(&segments, node, &expected);
            out.push(p);
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Alternatives whose type matched failed deeper down: those are the
            // problems to report (e.g. `on:` is a mapping, or nothing; an
            // unknown key inside the mapping is the real error).
            let here_path = error.instance_path().as_str();
            let failed_here = |e: &ValidationError| {
                e.instance_path().as_str() == here_path
                    && matches!(
                        e.kind(),
                        ValidationErrorKind::Type { .. }
                            | ValidationErrorKind::Constant { .. }
                            | ValidationErrorKind::Enum { .. }
                    )
            };
            let matched: Vec<&Vec<ValidationError>> = context
                .iter()
                .filter(|branch| !branch.is_empty() && !branch.iter().any(failed_here))
                .collect();
            if let [branch] = matched.as_slice() {
                for e in branch.iter() {
                    describe(schema, doc, e, out);
                }
                return;
            }
            let mut types: Vec<String> = Vec::new();
            let mut options: Vec<String> = Vec::new();
            for e in context.iter().flatten() {
                match e.kind() {
                    ValidationErrorKind::Type { kind } => types.push(type_names(kind)),
                    ValidationErrorKind::Constant { expected_value } => {
                        options.push(plain(expected_value))
                    }
                    ValidationErrorKind::Enum { options: values } => {
                        options.extend(values.as_array().into_iter().flatten().map(plain))
                    }
                    _ => {}
                }
            }
            types.dedup();
            if !options.is_empty() {
                out.push(one_of(node, &here, &options));
                return;
            }
            let message = if types.is_empty() {
                format!("{here} does not match any allowed form")
            } else {
                format!(
                    "{here} must be {}, found {}",
                    either(&types),
                    node.type_name()
                )
            };
            out.push(problem(node.span, message));
        }
        ValidationErrorKind::Enum { options }
        | ValidationErrorKind::Constant {
            expected_value: options,
        } => {
            let options: Vec<String> = match options.as_ref() {
                Value::Array(items) => items.iter().map(plain).collect(),
                other => vec![plain(other)],
            };
            out.push(one_of(node, &here, &options));
        }
        ValidationErrorKind::PropertyNames { error } => {
            let name = plain(error.instance());
            let mut at = segments.clone();
            at.push(&name);
            let key = doc.locate(&at, true);
            let mut p = problem(key.span, format!("`{name}` is not a valid name in {here}"));
            p.help = Some(match name.contains('@') && segments.last() == Some(&"steps") {
                true => "runner names fan-out members `STEP@...` itself: name the step `STEP` and give it `foreach:` or `matrix:`".to_string(),
                false => name_help(&segments),
            });
            p.removable = None;
            out.push(p);
        }
        ValidationErrorKind::Pattern { pattern } => {
            let found = node.scalar_text().unwrap_or_default();
            let mut p = problem(node.span, format!("{here} `{found}` is not valid"));
            p.help = Some(match segments.last() {
                Some(&"model") => {
                    "write the output to deploy as STEP.OUTPUT, e.g. `train.model`".to_string()
                }
                Some(&"digest") => "a digest is ALGORITHM:HEX, e.g. `blake3:ab12...`".to_string(),
                Some(&"tracking_uri") => {
                    "write the tracking server's URL, e.g. `http://127.0.0.1:5000`".to_string()
                }
                Some(&"alias") => {
                    "an alias is a name: letters, digits, `_` and `-`, e.g. `production`"
                        .to_string()
                }
                Some(&"url") => {
                    "write a URL with its scheme, e.g. `s3://bucket/runner-cache`".to_string()
                }
                Some(&"namespace") => {
                    "a Kubernetes namespace: lowercase letters, digits and `-`, e.g. `ml-prod`"
                        .to_string()
                }
                Some(&"cpu") | Some(&"memory") => {
                    "a Kubernetes quantity, e.g. `500m` or `2` CPUs, `512Mi` or `2Gi` of memory"
                        .to_string()
                }
                _ => format!(
                    "it must match `{pattern}`: start with a letter or digit, then letters, digits, `.`, `_` or `-`"
                ),
            });
            out.push(p);
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            out.push(problem(
                node.span,
                format!("{here} must be at least {limit}"),
            ));
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            out.push(problem(
                node.span,
                format!("{here} must be at most {limit}"),
            ));
        }
        ValidationErrorKind::MinProperties { .. } | ValidationErrorKind::MinItems { .. } => {
            out.push(problem(node.span, format!("{here} must not be empty")));
        }
        _ => out.push(problem(node.span, format!("{here}: {error}"))),
    }
}

/// "must be one of ..." with a suggestion for a near miss.
fn one_of(node: &Node, here: &str, options: &[String]) -> SchemaProblem {
    let found = node
        .scalar_text()
        .unwrap_or_else(|| node.type_name().to_string());
    SchemaProblem {
        span: node.span,
        message: format!("{here} must be one of {}, found `{found}`", list(options)),
        label: None,
        help: did_you_mean(&found, options.iter().map(String::as_str))
            .map(|close| format!("did you mean `{close}`?")),
        removable: None,
    }
}

/// `steps.train.deps[0]`, or "the document" at the root.
pub fn display_path(segments: &[&str]) -> String {
    if segments.is_empty() {
        return "the document".to_string();
    }
    let mut out = String::from("`");
    for (i, segment) in segments.iter().enumerate() {
        if segment.parse::<usize>().is_ok() && i > 0 {
            out.push_str(&format!("[{segment}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out.push('`');
    out
}

/// Fields that other parts of a spec refer to: dropping them to go on
/// checking would only produce errors about the references.
const REFERENCED: &[&str] = &[
    "params",
    "outputs",
    "steps",
    "promote",
    "service",
    "model",
    "apiVersion",
    "kind",
    "name",
];

/// What to drop from a document with a problem at `segments` so the rest can
/// still be checked: the field (the whole list, for a list item).
fn removable_path(segments: &[&str]) -> Option<Vec<String>> {
    // Without its `foreach` or `matrix`, a step's `item` would be reported too.
    if let ["steps", _, "foreach" | "matrix", ..] = segments {
        return None;
    }
    let mut path: Vec<&str> = segments.to_vec();
    if path.last().is_some_and(|s| s.parse::<usize>().is_ok()) {
        path.pop();
    }
    let last = path.last()?;
    (!REFERENCED.contains(last)).then(|| path.iter().map(|s| s.to_string()).collect())
}

/// Help for a value of the wrong type that people write for a reason.
fn type_help(segments: &[&str], node: &Node, expected: &str) -> Option<String> {
    let field = segments.last().copied().unwrap_or_default();
    let text = node.scalar_text().unwrap_or_default();
    if matches!(field, "timeout" | "starting_deadline" | "ready_timeout") {
        return Some(format!(
            "write a duration with a unit, e.g. `{text}s` or `{text}m`"
        ));
    }
    if expected == "a boolean"
        && matches!(
            text.to_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n"
        )
    {
        return Some(format!(
            "YAML 1.2 reads `{text}` as text: write `true` or `false`"
        ));
    }
    None
}

fn type_names(kind: &TypeKind) -> String {
    let name = |t: String| match t.as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "an integer".to_string(),
        "null" => "empty".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t.to_string()),
        TypeKind::Multiple(set) => set
            .iter()
            .filter(|t| t.to_string() != "null")
            .map(|t| name(t.to_string()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// "a string, a list or a mapping".
fn either(types: &[String]) -> String {
    match types.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => types.join(""),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn field_help(field: &str) -> Option<String> {
    let help = match field {
        "apiVersion" => "add `apiVersion: runner/v1`",
        "kind" => "add `kind: Pipeline`, `kind: Stack` or `kind: Deployment`",
        "name" => "add a `name:` unique among documents of this kind",
        "run" => {
            "add the command: `run: python3 steps/train.py` (a string runs through sh -c; a list runs as argv)"
        }
        "steps" => "add `steps:`, a mapping from step name to step",
        "model" => "name the output to deploy as STEP.OUTPUT, e.g. `model: train.model`",
        "service" => "add `service:` with at least `name:` and `serve:`",
        "serve" => {
            "add the server command, e.g. `serve: python3 serve.py --model {{ model.path }} --port {{ port }}`"
        }
        _ => return None,
    };
    Some(help.to_string())
}

fn name_help(parent: &[&str]) -> String {
    match parent.last() {
        Some(&"steps") => "step names are identifiers (letters, digits and `_`, not starting with a digit) so templates can write `steps.NAME.outputs.OUT`; use `prepare_data` rather than `prepare-data`".to_string(),
        Some(&"outputs") => "output names are identifiers (letters, digits and `_`) so templates can write `outputs.NAME`".to_string(),
        Some(&"params") => "param names are identifiers (letters, digits and `_`) so templates can write `params.NAME`".to_string(),
        _ => "use letters, digits and `_`".to_string(),
    }
}

/// The property names the schema allows at an instance path, for "did you mean".
fn known_properties(root: &Value, path: &[&str]) -> Vec<String> {
    let mut current = resolve(root, root);
    for segment in path {
        let Some(next) = child_schema(root, current, segment) else {
            return Vec::new();
        };
        current = next;
    }
    object_branches(root, current)
        .into_iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|props| props.keys().cloned())
        .collect()
}

fn child_schema<'a>(root: &'a Value, schema: &'a Value, segment: &str) -> Option<&'a Value> {
    for branch in object_branches(root, schema) {
        if let Some(s) = branch.get("properties").and_then(|p| p.get(segment)) {
            return Some(resolve(root, s));
        }
        if let Some(s) = branch.get("additionalProperties").filter(|s| s.is_object()) {
            return Some(resolve(root, s));
        }
        if let Some(s) = branch.get("items").filter(|s| s.is_object()) {
            return Some(resolve(root, s));
        }
    }
    None
}

/// A schema and the alternatives it offers (`anyOf`/`oneOf`), each resolved.
fn object_branches<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let mut out = vec![schema];
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            out.extend(branches.iter().map(|b| resolve(root, b)));
        }
    }
    out
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .map_or(schema, |target| resolve(root, target)),
        None => schema,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_documents;

    fn problems(kind: Kind, text: &str) -> Vec<SchemaProblem> {
        let doc = parse_documents(text).unwrap().remove(0);
        check(kind, &doc, &doc.to_json())
    }

    #[test]
    fn every_schema_compiles() {
        for kind in Kind::ALL {
            let _ = kind.compiled();
        }
    }

    #[test]
    fn unknown_field_suggests_the_close_one() {
        let p = problems(
            Kind::Pipeline,
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  train:\n    run: x\n    nedds: [a]\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].message, "unknown field `nedds` in `steps.train`");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `needs`?"));
        assert_eq!((p[0].span.line, p[0].span.column), (7, 5));
    }

    #[test]
    fn all_problems_of_a_document_are_reported() {
        let p = problems(
            Kind::Pipeline,
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  a:\n    run: 3\n    retries: two\n  b: {}\n",
        );
        let messages: Vec<_> = p.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages
                .contains(&"`steps.a.run` must be a string, a list or a mapping, found integer"),
            "{messages:?}"
        );
        assert!(
            messages.contains(&"`steps.a.retries` must be an integer, found string"),
            "{messages:?}"
        );
        assert!(
            messages.contains(&"missing required field `run` in `steps.b`"),
            "{messages:?}"
        );
    }

    #[test]
    fn bad_enum_value_lists_the_options() {
        let p = problems(
            Kind::Stack,
            "apiVersion: runner/v1\nkind: Stack\nname: s\nmodel_deployer: {type: proces}\n",
        );
        assert_eq!(
            p[0].message,
            "`model_deployer.type` must be one of `process`, `mlflow`, `kserve`, `seldon`, found `proces`"
        );
        assert_eq!(p[0].help.as_deref(), Some("did you mean `process`?"));
    }

    #[test]
    fn step_names_must_be_identifiers() {
        let p = problems(
            Kind::Pipeline,
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  prepare-data:\n    run: x\n",
        );
        assert_eq!(
            p[0].message,
            "`prepare-data` is not a valid name in `steps`"
        );
        assert_eq!((p[0].span.line, p[0].span.column), (5, 3));
    }
}
