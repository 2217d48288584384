//! The plan as text, JSON or Markdown: what runs, what is up to date, why.

use serde_json::json;

use crate::plan::{Decision, Plan};

/// `--format` of `runner plan` and `runner status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

fn counts(plan: &Plan) -> (usize, usize) {
    let runs = plan
        .decisions
        .iter()
        .filter(|d| matches!(d, Decision::Run { .. }))
        .count();
    (runs, plan.steps.len())
}

fn explain(decision: &Decision) -> (&'static str, String) {
    match decision {
        Decision::Run { reasons } => ("run", reasons.join("; ")),
        Decision::Restore { outputs } => (
            "restore",
            format!("up to date; restore {} from the cache", outputs.join(", ")),
        ),
        Decision::UpToDate => ("up to date", String::new()),
        Decision::Frozen => ("frozen", "never runs (`frozen: true`)".to_string()),
        Decision::NotSelected => ("not selected", String::new()),
    }
}

/// What the run would promote, as one line: the model, the service, the
/// checks, and what serves now.
fn promotion_line(plan: &Plan) -> Option<String> {
    let p = plan.promotion.as_ref()?;
    let production = match &p.production {
        Some(d) if d.source.commit.is_empty() => format!(
            "production: {} (not committed)",
            crate::promote::short(&d.model.digest)
        ),
        Some(d) => format!(
            "production: {} from {}",
            crate::promote::short(&d.model.digest),
            d.source.commit.get(..12).unwrap_or(&d.source.commit)
        ),
        None => "production: none yet".to_string(),
    };
    let gate = match p.spec.gate.is_empty() {
        true => "no gate".to_string(),
        false => format!(
            "if {}",
            p.spec
                .gate
                .iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    Some(format!(
        "then promotes {} to service {} {gate}; {production}",
        p.spec.model, p.spec.service.name
    ))
}

/// The plan rendered for a person or a machine.
pub fn render_plan(plan: &Plan, format: PlanFormat) -> String {
    let mut out = steps_section(plan, format);
    match format {
        PlanFormat::Json => {
            return format!(
                "{}\n",
                serde_json::to_string_pretty(&plan_json(plan)).unwrap_or_default()
            );
        }
        PlanFormat::Text => {
            if let Some(line) = promotion_line(plan) {
                out.push_str(&format!("{line}\n"));
            }
        }
        PlanFormat::Markdown => {
            if let Some(line) = promotion_line(plan) {
                out.push_str(&format!("\n{line}\n"));
            }
        }
    }
    out
}

/// The plan as one JSON document (also part of a preview's).
pub fn plan_json(plan: &Plan) -> serde_json::Value {
    let (runs, _) = counts(plan);
    let steps: Vec<_> = plan
        .steps
        .iter()
        .zip(&plan.decisions)
        .map(|(step, decision)| json!({"step": step.name, "command": step.command, "decision": decision}))
        .collect();
    let promote = plan.promotion.as_ref().map(|p| {
        json!({
            "model": p.spec.model,
            "service": p.spec.service.name,
            "gate": p.spec.gate,
            "production": p.production.as_ref().map(|d| json!({"digest": d.model.digest, "commit": d.source.commit, "metrics": d.metrics})),
        })
    });
    json!({"pipeline": plan.pipeline, "stack": plan.stack, "runs": runs, "steps": steps, "promote": promote})
}

/// The heading and one line per step: what it does and why (text or
/// Markdown; empty for JSON).
pub fn steps_section(plan: &Plan, format: PlanFormat) -> String {
    let (runs, total) = counts(plan);
    match format {
        PlanFormat::Json => String::new(),
        PlanFormat::Text => {
            let width = plan.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
            let mut out = format!("{}: {runs} of {total} steps would run\n", plan.pipeline);
            for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
                let (action, why) = explain(decision);
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                };
                out.push_str(&format!("  {:<width$}  {action}{why}\n", step.name));
            }
            out
        }
        PlanFormat::Markdown => {
            let mut out = format!(
                "### `{}`: {runs} of {total} steps would run\n\n| step | action | why |\n|---|---|---|\n",
                plan.pipeline
            );
            for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
                let (action, why) = explain(decision);
                out.push_str(&format!(
                    "| `{}` | {action} | {} |\n",
                    step.name,
                    why.replace('|', "\\|")
                ));
            }
            out
        }
    }
}
