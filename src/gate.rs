//! Promotion gates: `promote.gate` expressions over `metrics` (this run),
//! `params`, `production` (the committed Deployment of the service, or none)
//! and `git`. Every check is kept with the values it read, so a person sees
//! `metrics.mse <= params.max_mse: 1.71 <= 1.9` and not just "false".
//!
//! A check that reads a metric no step reported is an error, never "false":
//! a typo must not silently block (or, negated, allow) every promotion.

use std::collections::BTreeMap;

use minijinja::{Value, context};
use serde::Serialize;

use crate::git::GitInfo;
use crate::spec::Deployment;
use crate::suggest::did_you_mean;
use crate::template::Templates;

/// What a gate reads.
pub struct GateInput<'a> {
    /// This run's metrics, by dotted name.
    pub metrics: &'a BTreeMap<String, f64>,
    pub params: &'a crate::spec::Map<String, serde_json::Value>,
    pub production: Option<&'a Deployment>,
    pub git: Option<&'a GitInfo>,
}

/// One evaluated check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The expression as written.
    pub check: String,
    pub passed: bool,
    /// The expression with the values it read in place of their names:
    /// `1.71 <= 1.9`.
    pub shown: String,
    /// Each value read, by dotted name.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// A check that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gate `{check}`: {message}")]
pub struct GateError {
    pub check: String,
    pub message: String,
}

/// A step's `checks`, over the metrics file it just wrote: the checks as
/// evaluated, and why the step fails when one does not hold (a check that
/// reads a metric the file lacks fails it too).
pub fn check_step(plan: &crate::plan::Plan, index: usize) -> (Vec<Check>, Option<String>) {
    let step = &plan.steps[index];
    if step.checks.is_empty() {
        return (Vec::new(), None);
    }
    let Some(file) = &step.metrics else {
        return (Vec::new(), Some("checks need a `metrics` file".to_string()));
    };
    let metrics = match crate::metrics::read(&plan.root.join(file)) {
        Ok(metrics) => metrics,
        Err(err) => {
            return (
                Vec::new(),
                Some(format!("metrics file `{file}` for the checks: {err}")),
            );
        }
    };
    let input = GateInput {
        metrics: &metrics,
        params: &plan.params,
        production: None,
        git: plan.git.as_ref(),
    };
    match evaluate(&step.checks, &input) {
        Err(err) => (
            Vec::new(),
            Some(format!(
                "check `{}`: {} (metrics from `{file}`)",
                err.check, err.message
            )),
        ),
        Ok(checks) => {
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("`{}` ({})", c.check, c.shown))
                .collect();
            let reason = (!failed.is_empty()).then(|| {
                format!(
                    "check failed: {} (metrics from `{file}`)",
                    failed.join(", ")
                )
            });
            (checks, reason)
        }
    }
}

/// Evaluates every check, in order.
pub fn evaluate(gates: &[String], input: &GateInput) -> Result<Vec<Check>, GateError> {
    let templates = Templates::new();
    let metrics = nest(input.metrics);
    let production = input.production.map(|deployment| {
        let mut value = serde_json::to_value(deployment).unwrap_or_default();
        value["metrics"] = nest(&deployment.metrics);
        value
    });
    let ctx = context! {
        metrics => Value::from(minijinja::value::Serde(&metrics)),
        params => Value::from(minijinja::value::Serde(input.params)),
        production => Value::from(minijinja::value::Serde(&production)),
        git => Value::from(minijinja::value::Serde(input.git)),
    };
    let missing = |name: &str| {
        let metric = name.strip_prefix("metrics.")?;
        lookup(&metrics, metric)
            .is_none()
            .then(|| missing_metric(metric, input.metrics))
    };
    gates
        .iter()
        .map(|check| evaluate_one(&templates, check, &ctx, &missing))
        .collect()
}

/// A pipeline's `retrain_when` (`monitor.metrics.max_psi > 0.2`) over the
/// metrics each pipeline last recorded in `runner.lock`, by pipeline name.
pub fn evaluate_condition(
    expr: &str,
    recorded: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Result<Check, GateError> {
    let templates = Templates::new();
    let nested: serde_json::Map<String, serde_json::Value> = recorded
        .iter()
        .map(|(pipeline, metrics)| {
            (
                pipeline.clone(),
                serde_json::json!({"metrics": nest(metrics)}),
            )
        })
        .collect();
    let root = serde_json::Value::Object(nested);
    let ctx = Value::from(minijinja::value::Serde(&root));
    let missing = |name: &str| {
        let (pipeline, rest) = name.split_once('.')?;
        let Some(metrics) = recorded.get(pipeline) else {
            return Some(format!(
                "it reads `{name}`, but pipeline `{pipeline}` has no metrics in runner.lock yet: run it first"
            ));
        };
        let metric = rest.strip_prefix("metrics.")?;
        lookup(&root[pipeline]["metrics"], metric)
            .is_none()
            .then(|| {
                missing_metric(metric, metrics)
                    .replace("`metrics.", &format!("`{pipeline}.metrics."))
            })
    };
    evaluate_one(&templates, expr, &ctx, &missing)
}

/// One expression: every value it reads must exist (`missing` says why
/// not), and it must give true or false.
fn evaluate_one(
    templates: &Templates,
    check: &str,
    ctx: &Value,
    missing: &dyn Fn(&str) -> Option<String>,
) -> Result<Check, GateError> {
    let fail = |message: String| GateError {
        check: check.to_string(),
        message,
    };
    let references = templates
        .expression_references(check)
        .map_err(|e| fail(e.message))?;
    for name in &references {
        if let Some(message) = missing(name) {
            return Err(fail(message));
        }
    }
    let value = templates
        .evaluate(check, ctx)
        .map_err(|e| fail(e.message))?;
    let mut values = BTreeMap::new();
    for name in &references {
        if let Some(value) = resolve(ctx, name).filter(is_scalar) {
            // "0.1" sorts after every number: the check would pass
            // or fail for a reason nobody wrote.
            if let Some(text) = value.as_str()
                && text.trim().parse::<f64>().is_ok()
            {
                return Err(fail(format!(
                    "it reads `{name}` = \"{text}\", a string; write the number without quotes so it compares as a number"
                )));
            }
            values.insert(
                name.clone(),
                serde_json::to_value(&value).unwrap_or_default(),
            );
        }
    }
    if value.kind() != minijinja::value::ValueKind::Bool {
        return Err(fail(format!(
            "it gives {value}, not true or false; write a comparison such as `metrics.mse <= params.max_mse`"
        )));
    }
    Ok(Check {
        check: check.to_string(),
        passed: value.is_true(),
        shown: substitute(check, ctx),
        values,
    })
}

fn missing_metric(name: &str, metrics: &BTreeMap<String, f64>) -> String {
    if metrics.is_empty() {
        return format!(
            "it reads `metrics.{name}`, but no step reported metrics; give the step that measures the model a `metrics:` file"
        );
    }
    let known = metrics.keys().map(String::as_str);
    let hint = match did_you_mean(name, known.clone()) {
        Some(close) => format!("did you mean `metrics.{close}`?"),
        None => format!(
            "the steps reported: {}",
            known.collect::<Vec<_>>().join(", ")
        ),
    };
    format!("it reads `metrics.{name}`, which no step reported; {hint}")
}

/// `{"test.mse": 1}` as `{"test": {"mse": 1}}`, so `metrics.test.mse` reads it.
fn nest(flat: &BTreeMap<String, f64>) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for (name, value) in flat {
        let mut map = &mut root;
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_string(), number(*value));
                break;
            }
            let entry = map
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !entry.is_object() {
                // `a` and `a.b` both reported: `a` keeps its number.
                break;
            }
            map = entry.as_object_mut().expect("checked above");
        }
    }
    serde_json::Value::Object(root)
}

/// A metric as a JSON number: a count reads as `1500`, not `1500.0`.
fn number(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        serde_json::json!(value as i64)
    } else {
        serde_json::json!(value)
    }
}

fn lookup<'v>(value: &'v serde_json::Value, dotted: &str) -> Option<&'v serde_json::Value> {
    dotted
        .split('.')
        .try_fold(value, |v, part| v.as_object()?.get(part))
}

/// The value at a dotted path of the context, when every step of it exists.
fn resolve(ctx: &Value, dotted: &str) -> Option<Value> {
    dotted.split('.').try_fold(ctx.clone(), |v, part| {
        let next = v.get_attr(part).ok()?;
        (!next.is_undefined()).then_some(next)
    })
}

/// A number, string, boolean or none: what a check shows and records (a
/// whole Deployment would drown the numbers it compared).
fn is_scalar(value: &Value) -> bool {
    !matches!(
        value.kind(),
        minijinja::value::ValueKind::Map
            | minijinja::value::ValueKind::Seq
            | minijinja::value::ValueKind::Iterable
            | minijinja::value::ValueKind::Plain
    )
}

/// A value as it reads inside an expression.
fn show(value: &Value) -> String {
    if value.is_none() || value.is_undefined() {
        "none".to_string()
    } else if let Some(text) = value.as_str() {
        serde_json::to_string(text).unwrap_or_default()
    } else {
        value.to_string()
    }
}

/// The expression with every name that resolves replaced by its value.
/// String literals are left alone.
fn substitute(expr: &str, ctx: &Value) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '"' || c == '\'' {
            out.push(c);
            for (_, d) in chars.by_ref() {
                out.push(d);
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == '.' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let name = expr[start..end].trim_end_matches('.');
            let keyword = matches!(
                name,
                "and" | "or" | "not" | "is" | "in" | "none" | "true" | "false" | "defined"
            );
            // Only dotted names: `production is none` reads better as it is.
            match resolve(ctx, name).filter(is_scalar) {
                Some(value) if !keyword && name.contains('.') => out.push_str(&show(&value)),
                _ => out.push_str(name),
            }
            out.push_str(&expr[start + name.len()..end]);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::{ApiVersion, DeployedModel, DeploymentKind, DeploymentSource};

    fn params() -> crate::spec::Map<String, serde_json::Value> {
        crate::spec::Map::from_iter([("max_mse".to_string(), serde_json::json!(1.9))])
    }

    fn production(mse: f64) -> Deployment {
        Deployment {
            api_version: ApiVersion::V1,
            kind: DeploymentKind::Deployment,
            service: "svc".into(),
            stack: "local".into(),
            pipeline: "p".into(),
            model: DeployedModel {
                path: "build/model.json".into(),
                digest: "blake3:ab".into(),
            },
            metrics: BTreeMap::from([("mse".to_string(), mse)]),
            gate: Vec::new(),
            source: DeploymentSource {
                commit: "a".repeat(40),
                run: "r".into(),
            },
            mlflow: None,
            deployed_at: "2026-11-25T19:00:00Z".into(),
        }
    }

    fn run(gates: &[&str], mse: f64, prod: Option<&Deployment>) -> Result<Vec<Check>, GateError> {
        let metrics = BTreeMap::from([("mse".to_string(), mse), ("test.r2".to_string(), 0.4)]);
        let params = params();
        let gates: Vec<String> = gates.iter().map(|g| g.to_string()).collect();
        evaluate(
            &gates,
            &GateInput {
                metrics: &metrics,
                params: &params,
                production: prod,
                git: None,
            },
        )
    }

    #[test]
    fn a_threshold_shows_the_values_it_compared() {
        let checks = run(&["metrics.mse <= params.max_mse"], 1.71, None).unwrap();
        assert!(checks[0].passed);
        assert_eq!(checks[0].shown, "1.71 <= 1.9");
        assert_eq!(checks[0].values["metrics.mse"], serde_json::json!(1.71));
        assert!(!run(&["metrics.mse <= params.max_mse"], 2.5, None).unwrap()[0].passed);
        assert!(run(&["metrics.test.r2 >= 0.3"], 1.0, None).unwrap()[0].passed);
    }

    #[test]
    fn production_is_none_on_the_first_deployment() {
        let gate = "production is none or metrics.mse <= production.metrics.mse * 1.02";
        let first = run(&[gate], 1.8, None).unwrap();
        assert!(first[0].passed, "{first:?}");
        assert_eq!(
            first[0].shown,
            "production is none or 1.8 <= production.metrics.mse * 1.02"
        );
        let prod = production(1.5);
        assert!(!run(&[gate], 1.8, Some(&prod)).unwrap()[0].passed);
        let better = run(&[gate], 1.4, Some(&prod)).unwrap();
        assert!(better[0].passed);
        assert_eq!(better[0].shown, "production is none or 1.4 <= 1.5 * 1.02");
        assert!(!better[0].values.contains_key("production"));
    }

    #[test]
    fn a_number_written_as_a_string_or_a_non_boolean_check_is_an_error() {
        let metrics = BTreeMap::from([("mse".to_string(), 1.5)]);
        let params =
            crate::spec::Map::from_iter([("max_mse".to_string(), serde_json::json!("0.1"))]);
        let input = GateInput {
            metrics: &metrics,
            params: &params,
            production: None,
            git: None,
        };
        let err = evaluate(&["metrics.mse <= params.max_mse".to_string()], &input).unwrap_err();
        assert!(
            err.message
                .contains("a string; write the number without quotes"),
            "{err}"
        );
        let err = evaluate(&["metrics.mse".to_string()], &input).unwrap_err();
        assert!(err.message.contains("not true or false"), "{err}");
    }

    #[test]
    fn a_missing_metric_is_an_error_not_false() {
        let err = run(&["metrics.msee <= params.max_mse"], 1.0, None).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `metrics.mse`"),
            "{err}"
        );
        let err = run(&["not (metrics.loss > 3)"], 1.0, None).unwrap_err();
        assert!(err.message.contains("metrics.loss"), "{err}");
        let prod = production(1.0);
        let err = run(&["metrics.mse <= production.metrics.r2"], 1.0, Some(&prod)).unwrap_err();
        assert!(err.message.contains("undefined"), "{err}");
    }
}
