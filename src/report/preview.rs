//! `runner plan --base`: the preview as text, JSON or the Markdown a pull
//! request comment shows.

use serde_json::json;

use super::metrics::render_metrics;
use super::plan::{PlanFormat, plan_json, steps_section};
use crate::preview::{GateOutcome, Preview, StepChange};
use crate::promote::short;

/// The whole preview in one document.
pub fn render_preview(preview: &Preview, format: PlanFormat) -> String {
    if format == PlanFormat::Json {
        let doc = json!({
            "base": preview.base,
            "head": preview.head,
            "base_note": preview.base_note,
            "not_compared": preview.not_compared,
            "plan": plan_json(&preview.plan),
            "changes": preview.changes,
            "params": preview.params,
            "gate": preview.gate,
            "deploy": preview.deploy,
            "metrics": preview.metrics,
            "plots": preview.plots.iter().map(|p| json!({
                "step": p.step,
                "path": p.path,
                "problem": p.head.as_ref().err(),
                "base": p.base.is_some(),
            })).collect::<Vec<_>>(),
        });
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let md = format == PlanFormat::Markdown;
    let code = |s: &str| if md { format!("`{s}`") } else { s.to_string() };
    let mut out = steps_section(&preview.plan, format);
    let heading = |title: &str| {
        if md {
            format!("\n#### {title}\n\n")
        } else {
            format!("\n{title}:\n")
        }
    };
    let item = |line: String| {
        if md {
            format!("- {}\n", line.replace('\n', " "))
        } else {
            format!("  {line}\n")
        }
    };
    out.push_str(&if md {
        format!("\n_{} compared with {}_\n", preview.head, preview.base)
    } else {
        format!("({} compared with {})\n", preview.head, preview.base)
    });
    if let Some(note) = &preview.base_note {
        out.push_str(&item(format!("note: {note}")));
    }

    for (path, why) in &preview.not_compared {
        out.push_str(&item(format!(
            "not compared: {} is {why}; assumed unchanged",
            code(path)
        )));
    }

    out.push_str(&heading("Spec changes"));
    if preview.changes.is_empty() && preview.base_note.is_none() {
        out.push_str(&item("none".to_string()));
    }
    for change in &preview.changes {
        out.push_str(&item(match change {
            StepChange::Added { step } => format!("step {} added", code(step)),
            StepChange::Removed { step } => format!("step {} removed", code(step)),
            StepChange::Changed { step, what } => {
                format!("step {} changed: {}", code(step), what.join("; "))
            }
        }));
    }

    if !preview.params.is_empty() {
        out.push_str(&heading("Params"));
        let value = |v: &Option<serde_json::Value>| {
            v.as_ref().map_or("-".to_string(), |v| code(&v.to_string()))
        };
        for change in &preview.params {
            out.push_str(&item(format!(
                "{}: {} -> {}",
                code(&change.param),
                value(&change.base),
                value(&change.head)
            )));
        }
    }

    if let Some(gate) = &preview.gate {
        out.push_str(&heading("Gate"));
        let production = preview
            .deploy
            .as_ref()
            .and_then(|d| d.production.as_ref())
            .map_or_else(
                || "nothing yet (the first model that passes is promoted)".to_string(),
                |d| {
                    let metrics: Vec<String> =
                        d.metrics.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    format!(
                        "{} ({})",
                        code(short(&d.model.digest)),
                        if metrics.is_empty() {
                            "no metrics".to_string()
                        } else {
                            metrics.join(", ")
                        }
                    )
                },
            );
        out.push_str(&item(format!("production at base: {production}")));
        if gate.checks.is_empty() {
            out.push_str(&item(
                "no checks: every successful run promotes".to_string(),
            ));
        }
        for check in &gate.added {
            out.push_str(&item(format!("check added: {}", code(check))));
        }
        for check in &gate.removed {
            out.push_str(&item(format!("check removed: {}", code(check))));
        }
        match &gate.outcome {
            GateOutcome::AfterRun { steps } => out.push_str(&item(format!(
                "checked after the run: {} would run and report new metrics",
                steps.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ")
            ))),
            GateOutcome::Error { message } => {
                out.push_str(&item(format!("cannot be evaluated: {message}")))
            }
            GateOutcome::Evaluated { promote, checks } => {
                for check in checks {
                    out.push_str(&item(format!(
                        "{} {}: {}",
                        if check.passed { "pass" } else { "FAIL" },
                        code(&check.check),
                        check.shown
                    )));
                }
                out.push_str(&item(format!(
                    "with head's recorded metrics the model {}",
                    if *promote {
                        "would be promoted"
                    } else {
                        "would NOT be promoted"
                    }
                )));
            }
        }
    }

    if let Some(deploy) = &preview.deploy {
        out.push_str(&heading("Deploy"));
        let current = deploy
            .production
            .as_ref()
            .map_or("nothing".to_string(), |d| code(short(&d.model.digest)));
        let candidate = match &deploy.candidate {
            Some(digest)
                if deploy
                    .production
                    .as_ref()
                    .is_some_and(|d| d.model.digest == *digest) =>
            {
                format!(
                    "{} (already serving: nothing to deploy)",
                    code(short(digest))
                )
            }
            Some(digest) => code(short(digest)),
            None => "the model the run builds".to_string(),
        };
        out.push_str(&item(format!(
            "service {} on stack {}: {current} -> {candidate} ({})",
            code(&deploy.service),
            code(&deploy.stack),
            code(&deploy.model)
        )));
    }

    if !preview.metrics.is_empty() {
        out.push_str(&heading("Metrics recorded in runner.lock"));
        if preview.metrics.iter().all(|m| m.delta == Some(0.0)) {
            out.push_str(&item(format!(
                "unchanged: head records the same {} metrics as base",
                preview.metrics.len()
            )));
        } else {
            out.push_str(&render_metrics(
                &preview.metrics,
                format,
                Some(("base", "head")),
            ));
        }
    }
    if !preview.plots.is_empty() {
        out.push_str(&heading("Plots"));
        for plot in &preview.plots {
            match (&plot.head, md) {
                (Ok(data), true) => {
                    let against = match plot.base {
                        Some(_) => format!(" (dashed: {})", preview.base),
                        None => String::new(),
                    };
                    out.push_str(&format!("`{}` of `{}`{against}\n\n", plot.path, plot.step));
                    out.push_str(&crate::plots::mermaid(data, plot.base.as_ref()));
                    out.push('\n');
                }
                (Ok(data), false) => {
                    let points: usize = data.series.iter().map(|s| s.points.len()).sum();
                    out.push_str(&item(format!(
                        "{} of {}: {} series, {points} points{}",
                        plot.path,
                        plot.step,
                        data.series.len(),
                        if plot.base.is_some() {
                            ", base beside it"
                        } else {
                            ""
                        }
                    )));
                }
                (Err(why), _) => out.push_str(&item(format!(
                    "{} of {}: {why}",
                    code(&plot.path),
                    plot.step
                ))),
            }
        }
    }
    out
}
