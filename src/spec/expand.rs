//! Fan-out: a step with `foreach` or `matrix` becomes one ordinary step per
//! member, named `STEP@...`, before validation. The DAG, the plan, the
//! cache and `runner.lock`, reports, `runner step` and the exports then
//! only ever see plain steps, so fan-out needs no code of its own there.
//!
//! A member keeps its entry (`item`, and `key` for a mapping) for its
//! command, which is rendered with everything else when a run is planned;
//! its paths, `needs`, `workdir` and `env` values are rendered here, from
//! the entry alone, so two members' outputs can be checked for clashes.

use std::collections::HashMap;

use crate::spec::Map;
use minijinja::Value;
use minijinja::value::Serde;
use serde_json::Value as Json;

use super::load::{Document, Specs};
use super::types::{Foreach, Member, Pipeline, Step};
use crate::diagnostic::{Diagnostic, Report};
use crate::template::{Escape, Templates};

/// Separates a member's step from its entry: `train@alpha=0.1`. Step names
/// are identifiers, so no plain step holds one.
pub const SEPARATOR: char = '@';

/// A pipeline expands to at most this many members per step: a matrix grows
/// as the product of its axes, and a typo should not plan a million steps.
pub const MAX_MEMBERS: usize = 10_000;

/// The step `name` was expanded from: `train` for `train@alpha=0.1`, and a
/// plain step's own name.
pub fn group_of(name: &str) -> &str {
    name.split_once(SEPARATOR).map_or(name, |(group, _)| group)
}

/// Expands the fan-out steps of every pipeline in place. A step with a
/// problem is reported and left unexpanded: its document then has problems
/// and never reaches a plan.
pub fn expand(specs: &mut Specs, report: &mut Report) {
    let templates = Templates::new();
    for doc in &mut specs.pipelines {
        if !doc.spec.steps.values().any(|step| step.fans_out()) {
            continue;
        }
        let steps = std::mem::take(&mut doc.spec.steps);
        let mut expanded = Map::with_capacity_and_hasher(steps.len(), Default::default());
        let mut problems = Vec::new();
        for (name, step) in steps {
            if !step.fans_out() {
                expanded.insert(name, step);
                continue;
            }
            match members(doc, &templates, &name, &step) {
                Ok(members) => expanded.extend(
                    members
                        .into_iter()
                        .map(|(name, member)| (name, Box::new(member))),
                ),
                Err(found) => {
                    problems.extend(found);
                    expanded.insert(name, step);
                }
            }
        }
        doc.spec.steps = expanded;
        if !problems.is_empty() {
            doc.recovered = true;
            problems.into_iter().for_each(|d| report.push(d));
        }
    }
}

/// One entry of a fan-out: the text naming its member, and what templates read.
#[derive(Debug, PartialEq)]
struct Entry {
    suffix: String,
    item: Json,
    key: Option<String>,
}

/// The member steps of `step`, in entry order, or every problem found.
fn members(
    doc: &Document<Pipeline>,
    templates: &Templates,
    name: &str,
    step: &Step,
) -> Result<Vec<(String, Step)>, Vec<Diagnostic>> {
    let node = |rest: &[&str], key: bool| {
        let mut path = vec!["steps", name];
        path.extend_from_slice(rest);
        doc.span(&path, key)
    };
    let at = |rest: &[&str]| node(rest, false);
    let mut problems = Vec::new();
    if step.foreach.is_some() && step.matrix.is_some() {
        problems.push(
            doc.error(at(&["matrix"]), format!("step `{name}` has both `foreach` and `matrix`"))
                .with_help("a step fans out one way: named lists under `matrix` (every combination), or the entries under `foreach`"),
        );
    }
    let entries = match (&step.foreach, &step.matrix) {
        (Some(foreach), _) => foreach_entries(foreach),
        (None, Some(matrix)) => matrix_entries(matrix),
        (None, None) => Ok(Vec::new()),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(problem) => {
            let path: Vec<&str> = problem.at.iter().map(String::as_str).collect();
            problems.push(
                doc.error(node(&path, problem.key), problem.message)
                    .with_help(problem.help),
            );
            return Err(problems);
        }
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let member_name = format!("{name}{SEPARATOR}{}", entry.suffix);
        if let Some(first) = seen.get(&member_name) {
            let index = i.to_string();
            let path: &[&str] = match step.foreach.as_deref() {
                Some(Foreach::List(_)) => &["foreach", &index],
                _ => &["matrix"],
            };
            problems.push(
                doc.error(
                    at(path),
                    format!(
                        "step `{name}` expands to `{member_name}` twice (entries {} and {})",
                        first + 1,
                        i + 1
                    ),
                )
                .with_label("duplicate member")
                .with_help("each entry names one member: remove the repeated value (`0.1` and `\"0.1\"` name the same member)"),
            );
            continue;
        }
        seen.insert(member_name.clone(), i);
        match member(templates, name, step, entry) {
            Ok(member) => out.push((member_name, member)),
            Err((field, message)) => {
                let path: Vec<&str> = field.iter().map(String::as_str).collect();
                problems.push(
                    doc.error(at(&path), format!("member `{member_name}`: {message}"))
                        .with_help("a fan-out step's paths, `needs`, `workdir` and `env` read only `item` (and `key` for a mapping `foreach`); its command reads everything"),
                );
                // One bad template fails every member alike: say it once.
                break;
            }
        }
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems),
    }
}

/// A problem with the entries themselves, at a path under the step.
struct EntryProblem {
    at: Vec<String>,
    /// Whether the key at `at` is the problem, rather than its value.
    key: bool,
    message: String,
    help: String,
}

fn foreach_entries(foreach: &Foreach) -> Result<Vec<Entry>, EntryProblem> {
    let named = "write `foreach` as a mapping to name each member yourself, e.g. `foreach: {small: {alpha: 0.1}, large: {alpha: 1}}`";
    match foreach {
        Foreach::List(values) => values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let problem = |message: String| EntryProblem {
                    at: vec!["foreach".to_string(), i.to_string()],
                    key: false,
                    message,
                    help: named.to_string(),
                };
                let suffix = match value {
                    Json::Object(map) if map.is_empty() => {
                        return Err(problem(format!("entry {} of `foreach` is empty", i + 1)));
                    }
                    Json::Object(map) => map
                        .iter()
                        .map(|(k, v)| {
                            let text = scalar_text(v).ok_or_else(|| {
                                problem(format!("`{k}` of entry {} of `foreach` is a {}, so it cannot name the member", i + 1, type_name(v)))
                            })?;
                            Ok(format!("{}={}", name_part(k).map_err(&problem)?, name_part(&text).map_err(&problem)?))
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => {
                        let text = scalar_text(other).ok_or_else(|| {
                            problem(format!(
                                "entry {} of `foreach` is a {}, so it cannot name the member",
                                i + 1,
                                type_name(other)
                            ))
                        })?;
                        name_part(&text).map_err(&problem)?
                    }
                };
                Ok(Entry {
                    suffix,
                    item: value.clone(),
                    key: None,
                })
            })
            .collect(),
        Foreach::Map(map) => map
            .iter()
            .map(|(key, value)| {
                let suffix = name_part(key).map_err(|message| EntryProblem {
                    at: vec!["foreach".to_string(), key.clone()],
                    key: true,
                    message,
                    help: "rename the key: it becomes part of the member's name".to_string(),
                })?;
                Ok(Entry {
                    suffix,
                    item: value.clone(),
                    key: Some(key.clone()),
                })
            })
            .collect(),
    }
}

/// Every combination of the axes, the last axis varying fastest.
fn matrix_entries(
    matrix: &Map<String, super::types::MatrixAxis>,
) -> Result<Vec<Entry>, EntryProblem> {
    let total = matrix
        .values()
        .try_fold(1usize, |n, axis| n.checked_mul(axis.0.len()));
    if total.is_none_or(|n| n > MAX_MEMBERS) {
        let sizes: Vec<String> = matrix.values().map(|a| a.0.len().to_string()).collect();
        return Err(EntryProblem {
            at: vec!["matrix".to_string()],
            key: false,
            message: format!(
                "`matrix` makes {} combinations, more than the {MAX_MEMBERS} runner expands",
                sizes.join(" x ")
            ),
            help: "split the step, or list the combinations you want under `foreach`".to_string(),
        });
    }
    let mut combinations: Vec<Vec<(String, Json, String)>> = vec![Vec::new()];
    for (axis, values) in matrix {
        let texts = values
            .0
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let json = Json::from(value.clone());
                let text = scalar_text(&json).unwrap_or_default();
                name_part(&text)
                    .map(|text| (json, text))
                    .map_err(|message| EntryProblem {
                        at: vec!["matrix".to_string(), axis.clone(), i.to_string()],
                        key: false,
                        message,
                        help: "matrix values name the members: use plain words or numbers, and give longer values to the command through a mapping `foreach`".to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        combinations = combinations
            .into_iter()
            .flat_map(|done| {
                texts.iter().map(move |(json, text)| {
                    let mut next = done.clone();
                    next.push((axis.clone(), json.clone(), text.clone()));
                    next
                })
            })
            .collect();
    }
    Ok(combinations
        .into_iter()
        .map(|combination| Entry {
            suffix: combination
                .iter()
                .map(|(axis, _, text)| format!("{axis}={text}"))
                .collect::<Vec<_>>()
                .join(","),
            item: Json::Object(
                combination
                    .into_iter()
                    .map(|(axis, json, _)| (axis, json))
                    .collect(),
            ),
            key: None,
        })
        .collect())
}

/// A scalar as it names a member: numbers as JSON writes them.
fn scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Null => Some("null".to_string()),
        Json::Array(_) | Json::Object(_) => None,
    }
}

fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Array(_) => "list",
        Json::Object(_) => "mapping",
        _ => "scalar",
    }
}

/// Text that goes into a member's name: it is also a log file name, a
/// command-line argument and, sanitised, a Kubernetes name, so it keeps to
/// characters that are safe in all of them.
fn name_part(text: &str) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
    match text.chars().find(|c| !safe(*c)) {
        None if !text.is_empty() => Ok(text.to_string()),
        None => Err("an empty value cannot name a member".to_string()),
        Some(c) => Err(format!(
            "`{text}` cannot name a member: it holds `{}`; names take letters, digits, `.`, `_`, `+` and `-`",
            c.escape_default()
        )),
    }
}

/// One member: the step with its paths, `needs`, `workdir` and `env` values
/// rendered from the entry. An error names the field (under the step) and says why.
fn member(
    templates: &Templates,
    group: &str,
    step: &Step,
    entry: Entry,
) -> Result<Step, (Vec<String>, String)> {
    let context = match &entry.key {
        Some(key) => minijinja::context! { item => Value::from(Serde(&entry.item)), key => key },
        None => minijinja::context! { item => Value::from(Serde(&entry.item)) },
    };
    let render = |text: &str, at: Vec<String>| {
        templates
            .render(text, Escape::Verbatim, &context)
            .map_err(|e| (at, format!("cannot render `{text}`: {}", e.message)))
    };
    let indexed = |field: &str, i: usize| vec![field.to_string(), i.to_string()];
    let mut member = step.clone();
    member.foreach = None;
    member.matrix = None;
    for (out, output) in &mut member.outputs {
        output.path = render(&output.path, vec!["outputs".to_string(), out.clone()])?;
    }
    if let Some(metrics) = &mut member.metrics {
        *metrics = render(metrics, vec!["metrics".to_string()])?;
    }
    for (i, plot) in member.plots.iter_mut().enumerate() {
        plot.path = render(
            &plot.path,
            vec!["plots".to_string(), i.to_string(), "path".to_string()],
        )?;
    }
    for (i, dep) in member.deps.iter_mut().enumerate() {
        *dep = render(dep, indexed("deps", i))?;
    }
    for (i, need) in member.needs.iter_mut().enumerate() {
        *need = render(need, indexed("needs", i))?;
    }
    if let Some(workdir) = &mut member.workdir {
        *workdir = render(workdir, vec!["workdir".to_string()])?;
    }
    for (name, value) in &mut member.env {
        value.0 = render(&value.0, vec!["env".to_string(), name.clone()])?;
    }
    member.member = Some(Box::new(Member {
        group: group.to_string(),
        item: entry.item,
        key: entry.key,
    }));
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::{MatrixAxis, Scalar};
    use serde_json::json;

    fn suffixes(entries: Result<Vec<Entry>, EntryProblem>) -> Vec<String> {
        match entries {
            Ok(entries) => entries.into_iter().map(|e| e.suffix).collect(),
            Err(problem) => panic!("{}", problem.message),
        }
    }

    #[test]
    fn a_list_of_scalars_names_members_by_value() {
        let foreach = Foreach::List(vec![json!(0.1), json!(1), json!("ridge"), json!(true)]);
        assert_eq!(
            suffixes(foreach_entries(&foreach)),
            ["0.1", "1", "ridge", "true"]
        );
    }

    #[test]
    fn a_list_of_mappings_names_members_by_key_and_value() {
        let foreach = Foreach::List(vec![json!({"lr": 0.1, "depth": 3})]);
        let entries = foreach_entries(&foreach).unwrap_or_default();
        assert_eq!(entries[0].suffix, "lr=0.1,depth=3");
        assert_eq!(entries[0].item, json!({"lr": 0.1, "depth": 3}));
    }

    #[test]
    fn a_mapping_names_members_by_key_and_gives_the_key() {
        let foreach = Foreach::Map(Map::from_iter([(
            "small".to_string(),
            json!({"alpha": 0.1}),
        )]));
        let entries = foreach_entries(&foreach).unwrap_or_default();
        assert_eq!(
            entries,
            [Entry {
                suffix: "small".into(),
                item: json!({"alpha": 0.1}),
                key: Some("small".into())
            }]
        );
    }

    #[test]
    fn a_matrix_is_every_combination_in_declared_order() {
        let axis = |values: Vec<Scalar>| MatrixAxis(values);
        let matrix = Map::from_iter([
            (
                "model".to_string(),
                axis(vec![
                    Scalar::Text("ridge".into()),
                    Scalar::Text("lasso".into()),
                ]),
            ),
            (
                "alpha".to_string(),
                axis(vec![Scalar::Number(1.into()), Scalar::Bool(false)]),
            ),
        ]);
        assert_eq!(
            suffixes(matrix_entries(&matrix)),
            [
                "model=ridge,alpha=1",
                "model=ridge,alpha=false",
                "model=lasso,alpha=1",
                "model=lasso,alpha=false"
            ]
        );
        let entries = matrix_entries(&matrix).unwrap_or_default();
        assert_eq!(entries[1].item, json!({"model": "ridge", "alpha": false}));
    }

    #[test]
    fn values_unsafe_in_names_are_refused() {
        for bad in [json!("a b"), json!("x/y"), json!(""), json!([1, 2])] {
            assert!(
                foreach_entries(&Foreach::List(vec![bad.clone()])).is_err(),
                "{bad}"
            );
        }
        let huge = Map::from_iter((0..5).map(|i| {
            (
                format!("a{i}"),
                MatrixAxis((0..10).map(|n| Scalar::Number(n.into())).collect()),
            )
        }));
        assert!(matrix_entries(&huge).is_err());
    }

    #[test]
    fn members_know_their_group() {
        assert_eq!(group_of("train@alpha=0.1"), "train");
        assert_eq!(group_of("train"), "train");
    }
}
