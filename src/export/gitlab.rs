//! GitLab CI: a child pipeline (`trigger: include: artifact:`) with one job
//! per step; edges become `needs:`, so GitLab starts each job as soon as
//! the steps it reads from are done, as `runner run` would.

use serde_json::{Map, Value, json};

use super::{Export, to_yaml};
use crate::error::Error;
use crate::template::shell_quote;

/// Top-level keys GitLab reserves: a step with one of these names gets a
/// job named `NAME-step`.
const RESERVED: &[&str] = &[
    "image",
    "services",
    "stages",
    "types",
    "before_script",
    "after_script",
    "variables",
    "cache",
    "include",
    "default",
    "workflow",
    "spec",
    "pages",
];

/// The most retries GitLab allows a job.
const GITLAB_MAX_RETRY: u32 = 2;

/// The job name of a step.
pub fn job_name(step: &str) -> String {
    match RESERVED.contains(&step) {
        true => format!("{step}-step"),
        false => step.to_string(),
    }
}

/// The child pipeline as JSON.
pub fn render(export: &Export) -> Result<Value, Error> {
    let mut root = Map::new();
    // GitLab runs a job's script with the image's entrypoint; runner's
    // image has `runner` there, so the job starts a shell instead.
    root.insert(
        "default".into(),
        json!({"image": {"name": export.image, "entrypoint": [""]}}),
    );
    for (step, upstream) in export.steps() {
        let mut job = json!({
            "script": [export
                .command(step)
                .iter()
                .map(|arg| shell_quote(arg))
                .collect::<Vec<_>>()
                .join(" ")],
            "needs": upstream.iter().map(|u| job_name(u)).collect::<Vec<_>>(),
        });
        let retries = export.pipeline.steps.get(step).map_or(0, |s| s.retries);
        if retries > 0 {
            job["retry"] = json!(retries.min(GITLAB_MAX_RETRY));
        }
        if let Some(timeout) = export.timeout(step)? {
            // `runner step` enforces the step's own timeout too; this one
            // frees the CI runner if the job hangs around it.
            job["timeout"] = json!(format!("{} seconds", timeout.as_secs().max(1)));
        }
        root.insert(job_name(step), job);
    }
    Ok(Value::Object(root))
}

/// The child pipeline as YAML.
pub fn render_yaml(export: &Export) -> Result<String, Error> {
    to_yaml(
        "GitLab child pipeline",
        &export.pipeline.name,
        &render(export)?,
    )
}
