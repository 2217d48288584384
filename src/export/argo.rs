//! Argo Workflows: a `Workflow` (or `WorkflowTemplate`, or a `CronWorkflow`
//! from the pipeline's `on.schedule`) with one DAG task per step. Edges
//! become `depends`, a step's `retries` its `retryStrategy` and its
//! `timeout` the `activeDeadlineSeconds` of its pod.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Export, kube_name, to_yaml};
use crate::error::{Error, ExportError};
use crate::spec::types::Concurrency;

/// Which Argo object to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgoKind {
    /// Submitted once: `argo submit`.
    Workflow,
    /// Stored in the cluster, submitted by name (`--template`).
    WorkflowTemplate,
    /// Submitted on the pipeline's `on.schedule` (`--cron`).
    CronWorkflow,
}

/// The Argo object as JSON.
pub fn render(export: &Export, kind: ArgoKind) -> Result<Value, Error> {
    let pipeline = export.pipeline;
    let entry = kube_name(&pipeline.name);
    let names = task_names(export);
    let mut tasks = Vec::new();
    let mut templates = Vec::new();
    for (step, upstream) in export.steps() {
        let task = &names[step];
        let template = format!("step-{task}");
        let mut entry = json!({"name": task, "template": template});
        if !upstream.is_empty() {
            let depends: Vec<&str> = upstream.iter().map(|u| names[*u].as_str()).collect();
            entry["depends"] = json!(depends.join(" && "));
        }
        tasks.push(entry);
        let mut container = json!({
            "name": template,
            "metadata": {"labels": {"runner.dev/step": kube_name(step)}},
            "container": {
                "image": export.image,
                "command": [export.command(step)[0]],
                "args": export.command(step)[1..],
            },
        });
        let retries = pipeline.steps.get(step).map_or(0, |s| s.retries);
        if retries > 0 {
            // IntOrString: Argo's schema types it as a string.
            container["retryStrategy"] = json!({
                "limit": retries.to_string(),
                "retryPolicy": "Always",
                "backoff": {"duration": "10s", "factor": "2"},
            });
        }
        if let Some(timeout) = export.timeout(step)? {
            container["activeDeadlineSeconds"] = json!(timeout.as_secs().max(1).to_string());
        }
        templates.push(container);
    }
    templates.insert(0, json!({"name": entry, "dag": {"tasks": tasks}}));
    let spec = json!({"entrypoint": entry, "templates": templates});
    let labels = json!({
        "app.kubernetes.io/managed-by": "runner",
        "runner.dev/pipeline": entry,
    });
    let (kind_name, metadata, spec) = match kind {
        ArgoKind::Workflow => (
            "Workflow",
            json!({"generateName": format!("{entry}-"), "labels": labels}),
            spec,
        ),
        ArgoKind::WorkflowTemplate => (
            "WorkflowTemplate",
            json!({"name": entry, "labels": labels}),
            spec,
        ),
        ArgoKind::CronWorkflow => {
            let triggers = pipeline.triggers.clone().unwrap_or_default();
            if triggers.schedule.is_empty() {
                return Err(ExportError::NoSchedule {
                    pipeline: pipeline.name.clone(),
                }
                .into());
            }
            let mut cron = json!({
                "schedules": triggers.schedule,
                "timezone": "UTC",
                "concurrencyPolicy": match triggers.concurrency {
                    Some(Concurrency::Replace) => "Replace",
                    // Queue has no Argo equivalent: a firing during a run waits for none.
                    Some(Concurrency::Queue) => "Allow",
                    Some(Concurrency::Forbid) | None => "Forbid",
                },
                "workflowSpec": spec,
            });
            if let Some(deadline) = triggers.starting_deadline.as_deref() {
                let seconds = humantime::parse_duration(deadline).map_err(|source| {
                    ExportError::BadStartingDeadline {
                        deadline: deadline.to_string(),
                        source,
                    }
                })?;
                cron["startingDeadlineSeconds"] = json!(seconds.as_secs());
            }
            (
                "CronWorkflow",
                json!({"name": entry, "labels": labels}),
                cron,
            )
        }
    };
    Ok(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": kind_name,
        "metadata": metadata,
        "spec": spec,
    }))
}

/// The object as YAML.
pub fn render_yaml(export: &Export, kind: ArgoKind) -> Result<String, Error> {
    to_yaml(
        "Argo workflow",
        &export.pipeline.name,
        &render(export, kind)?,
    )
}

/// Task names by step: Kubernetes-style, unique even when two step names
/// differ only in case or `_`/`-`.
fn task_names<'a>(export: &'a Export) -> BTreeMap<&'a str, String> {
    let mut names = BTreeMap::new();
    let mut taken = std::collections::HashSet::new();
    for step in export.pipeline.steps.keys() {
        let base = kube_name(step);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        names.insert(step.as_str(), name);
    }
    names
}
